//! `udprange audit`: which UDP destination ports (and the TCP control port) a ruleset passes
//! for a packet from client to server, without sending one.
//!
//! Both formats become one model ([`Ruleset`]): chains, some of them base chains on a hook
//! with a priority and a policy, each a list of rules of matches and an action. The
//! evaluator walks the hooks a client-to-server packet meets at the chosen host (client:
//! output, postrouting; router: prerouting, forward, postrouting; server: prerouting,
//! input), each hook's base chains in priority order, following jumps, gotos and returns,
//! until a verdict or the policy. The packet is the first of its flow (conntrack `new`),
//! IPv4, from `client` to `server`, its source port unknown.
//!
//! A match the evaluator cannot decide (a source port, an interface name it was not told, a
//! rate limit, a mark, an expression it does not know) is never taken as true or false: the
//! walk forks and takes both branches. When they end alike the match did not matter; when
//! they do not, the port is *undecided* and the report names the match.

pub mod iptables;
pub mod nft;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use crate::firewall::ruleset::Host;
use crate::model::{Port, PortRange};

/// Most forks one packet's walk may take before its answer is "undecided".
const MAX_PATHS: usize = 256;
/// Most chains deep a walk may go (jumps in a loop end here).
const MAX_DEPTH: usize = 64;

/// Most rule evaluations one audit may make: a hostile ruleset (many rules, many ports,
/// many undecidable matches) ends with an error in bounded time.
pub const MAX_STEPS: u64 = 200_000_000;

/// Rule evaluations spent so far, against a limit.
pub struct Budget {
    steps: std::cell::Cell<u64>,
    limit: u64,
}

impl Budget {
    pub fn new(limit: u64) -> Self {
        Self {
            steps: std::cell::Cell::new(0),
            limit,
        }
    }

    /// Spends one step; false once the limit is passed.
    fn spend(&self) -> bool {
        let n = self.steps.get() + 1;
        self.steps.set(n);
        n <= self.limit
    }

    pub fn exhausted(&self) -> bool {
        self.steps.get() > self.limit
    }
}

/// A port written as a service name (the ones rulesets use for transfers' neighbours), or
/// as a number.
pub fn service_port(name: &str) -> Option<u64> {
    Some(match name {
        "ssh" => 22,
        "domain" => 53,
        "http" => 80,
        "ntp" => 123,
        "https" => 443,
        other => other.parse().ok()?,
    })
}

/// The netfilter hooks, in the order a packet meets them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Hook {
    Ingress,
    Prerouting,
    Input,
    Forward,
    Output,
    Postrouting,
}

impl Hook {
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "ingress" => Self::Ingress,
            "prerouting" => Self::Prerouting,
            "input" => Self::Input,
            "forward" => Self::Forward,
            "output" => Self::Output,
            "postrouting" => Self::Postrouting,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Ingress => "ingress",
            Self::Prerouting => "prerouting",
            Self::Input => "input",
            Self::Forward => "forward",
            Self::Output => "output",
            Self::Postrouting => "postrouting",
        }
    }

    /// The hooks a client-to-server packet meets on `host`, in order.
    pub fn path(host: Host) -> &'static [Hook] {
        match host {
            Host::Client => &[Hook::Output, Hook::Postrouting],
            Host::Router => &[Hook::Prerouting, Hook::Forward, Hook::Postrouting],
            Host::Server => &[Hook::Prerouting, Hook::Input],
        }
    }
}

/// What the packet's field is compared with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// The layer 4 protocol number.
    L4proto,
    Saddr,
    Daddr,
    Sport,
    Dport,
    /// Conntrack state names (`new`, `established`, …).
    CtState,
    InIface,
    OutIface,
    /// The network protocol family (IPv4 is ours; IPv6 matches never do).
    Ipv6,
}

/// A set of values: numeric intervals (ports, protocol numbers, addresses as integers) or
/// names (conntrack states, interfaces; a trailing `*` or `+` is a wildcard).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Values {
    pub ranges: Vec<(u64, u64)>,
    pub names: Vec<String>,
}

impl Values {
    pub fn number(n: u64) -> Self {
        Self::range(n, n)
    }

    pub fn range(lo: u64, hi: u64) -> Self {
        Self {
            ranges: vec![(lo.min(hi), lo.max(hi))],
            names: Vec::new(),
        }
    }

    pub fn name(n: &str) -> Self {
        Self {
            ranges: Vec::new(),
            names: vec![n.to_string()],
        }
    }

    pub fn prefix(addr: Ipv4Addr, len: u8) -> Self {
        let a = u64::from(u32::from(addr));
        let size = 1u64 << (32 - u32::from(len.min(32)));
        let lo = a & !(size - 1);
        Self::range(lo, lo + size - 1)
    }

    pub fn extend(&mut self, other: Values) {
        self.ranges.extend(other.ranges);
        self.names.extend(other.names);
    }

    fn contains_number(&self, n: u64) -> bool {
        self.ranges.iter().any(|&(lo, hi)| lo <= n && n <= hi)
    }

    fn contains_name(&self, n: &str) -> bool {
        self.names.iter().any(|pattern| {
            match pattern
                .strip_suffix('*')
                .or_else(|| pattern.strip_suffix('+'))
            {
                Some(stem) => n.starts_with(stem),
                None => pattern == n,
            }
        })
    }
}

/// One condition of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    /// `field` is (or with `negate`, is not) one of `values`.
    Is {
        field: Field,
        negate: bool,
        values: Values,
    },
    /// Something the evaluator cannot decide, as the ruleset says it.
    Unknown(String),
}

/// What a rule does when it matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Accept,
    Drop,
    Jump(String),
    Goto(String),
    Return,
    /// A statement that is not a verdict (counter, log, mark): on to the next rule.
    Continue,
    /// A verdict map: the first entry whose values hold `field` decides; none: continue.
    Map {
        field: Field,
        entries: Vec<(Values, Action)>,
    },
    /// A verdict the evaluator cannot follow (queue to userspace, …).
    Unknown(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Where it is, for the report: `table inet corp, chain forward, rule 3`.
    pub place: String,
    pub matches: Vec<Match>,
    pub action: Action,
}

/// Where a base chain hangs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Base {
    pub hook: Hook,
    pub priority: i32,
    pub policy_accept: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// `inet corp` or `ip filter`: chains are found by name within their table.
    pub table: String,
    pub name: String,
    pub base: Option<Base>,
    pub rules: Vec<Rule>,
}

/// A ruleset as the evaluator sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ruleset {
    pub chains: Vec<Chain>,
    /// Parts it did not evaluate (tables of other families, chains it cannot place), named.
    pub skipped: Vec<String>,
}

/// The packet: the first of a flow from client to server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub tcp: bool,
    pub saddr: Ipv4Addr,
    pub daddr: Ipv4Addr,
    pub dport: Port,
    pub in_iface: Option<String>,
    pub out_iface: Option<String>,
}

/// What became of one packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    Passes,
    Dropped,
    /// Some branch passes and some drops: these matches decide, and the evaluator cannot
    /// tell them.
    Undecided(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tri {
    Yes,
    No,
    Unknown,
}

/// A branch's end: passed this base chain (on to the next), or dropped; and the undecidable
/// matches it assumed along the way.
#[derive(Debug, Clone)]
struct Branch {
    dropped: bool,
    assumed: Vec<String>,
}

/// How a walk through a chain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exit {
    Accept,
    Drop,
    /// End of the chain or a `return`: back to the caller.
    Fell,
}

impl Ruleset {
    fn chain(&self, table: &str, name: &str) -> Option<&Chain> {
        self.chains
            .iter()
            .find(|c| c.table == table && c.name == name)
    }

    /// The base chains on `hooks`, hook by hook, each hook's in priority order.
    fn base_chains(&self, hooks: &[Hook]) -> Vec<&Chain> {
        let mut chains: Vec<&Chain> = self
            .chains
            .iter()
            .filter(|c| c.base.is_some_and(|b| hooks.contains(&b.hook)))
            .collect();
        chains.sort_by_key(|c| {
            let b = c.base.expect("filtered on base");
            (hooks.iter().position(|h| *h == b.hook), b.priority)
        });
        chains
    }

    /// What becomes of `packet` on `host`.
    pub fn fate(&self, host: Host, packet: &Packet) -> Fate {
        self.fate_within(host, packet, &Budget::new(MAX_STEPS))
    }

    /// The same, spending from `budget`; once it is spent every walk ends undecided.
    pub fn fate_within(&self, host: Host, packet: &Packet, budget: &Budget) -> Fate {
        let mut branches = vec![Branch {
            dropped: false,
            assumed: Vec::new(),
        }];
        for chain in self.base_chains(Hook::path(host)) {
            let mut next = Vec::new();
            for branch in branches {
                if branch.dropped {
                    next.push(branch);
                    continue;
                }
                let policy_accept = chain.base.is_some_and(|b| b.policy_accept);
                let look = Look { packet, budget };
                for (exit, assumed) in self.walk(chain, &look, branch.assumed, 0) {
                    let dropped = match exit {
                        Exit::Accept => false,
                        Exit::Drop => true,
                        Exit::Fell => !policy_accept,
                    };
                    next.push(Branch { dropped, assumed });
                }
                if next.len() > MAX_PATHS {
                    return Fate::Undecided(vec![format!(
                        "more than {MAX_PATHS} combinations of undecidable matches"
                    )]);
                }
            }
            branches = next;
        }
        let drops = branches.iter().filter(|b| b.dropped).count();
        if drops == 0 {
            Fate::Passes
        } else if drops == branches.len() {
            Fate::Dropped
        } else {
            // A match and its negation are one question: name it once.
            let mut why: Vec<String> = branches
                .into_iter()
                .flat_map(|b| b.assumed)
                .map(|w| w.replacen(": not ", ": ", 1))
                .collect();
            why.sort();
            why.dedup();
            Fate::Undecided(why)
        }
    }

    /// Every way `chain` can end for `packet`, with the matches each way assumed.
    fn walk(
        &self,
        chain: &Chain,
        look: &Look,
        assumed: Vec<String>,
        depth: usize,
    ) -> Vec<(Exit, Vec<String>)> {
        let (packet, budget) = (look.packet, look.budget);
        if depth > MAX_DEPTH {
            let mut assumed = assumed;
            assumed.push(format!(
                "chain {} nests deeper than {MAX_DEPTH} (a loop?)",
                chain.name
            ));
            return vec![(Exit::Accept, assumed.clone()), (Exit::Drop, assumed)];
        }
        // Pending walks: (next rule index, assumptions).
        let mut pending = vec![(0usize, assumed)];
        let mut ends = Vec::new();
        while let Some((start, assumed)) = pending.pop() {
            if ends.len() + pending.len() > MAX_PATHS {
                let mut a = assumed;
                a.push(format!(
                    "more than {MAX_PATHS} combinations of undecidable matches"
                ));
                ends.push((Exit::Accept, a.clone()));
                ends.push((Exit::Drop, a));
                continue;
            }
            let mut index = start;
            let mut assumed = assumed;
            let ended = loop {
                let Some(rule) = chain.rules.get(index) else {
                    break Some(Exit::Fell);
                };
                index += 1;
                if !budget.spend() {
                    let mut a = assumed.clone();
                    a.push(format!(
                        "the evaluation took more than {} steps",
                        budget.limit
                    ));
                    ends.push((Exit::Accept, a.clone()));
                    break Some(Exit::Drop);
                }
                match self.matches(rule, packet) {
                    (Tri::No, _) => continue,
                    (Tri::Unknown, what) => {
                        // The rule may not match: that branch goes on with the next rule.
                        let mut other = assumed.clone();
                        other.push(format!("{}: not {what}", rule.place));
                        pending.push((index, other));
                        assumed.push(format!("{}: {what}", rule.place));
                    }
                    (Tri::Yes, _) => {}
                }
                match self.act(
                    &rule.action,
                    chain,
                    look,
                    &rule.place,
                    assumed.clone(),
                    depth,
                ) {
                    Acted::Continue => continue,
                    Acted::Ends(list) => {
                        let mut resume = Vec::new();
                        for (exit, a) in list {
                            match exit {
                                Some(exit) => ends.push((exit, a)),
                                None => resume.push(a),
                            }
                        }
                        // Branches that came back from a jump go on after this rule.
                        let mut resume = resume.into_iter();
                        match resume.next() {
                            Some(first) => {
                                for a in resume {
                                    pending.push((index, a));
                                }
                                assumed = first;
                                continue;
                            }
                            None => break None,
                        }
                    }
                }
            };
            if let Some(exit) = ended {
                ends.push((exit, assumed));
            }
        }
        ends
    }

    fn act(
        &self,
        action: &Action,
        chain: &Chain,
        look: &Look,
        place: &str,
        assumed: Vec<String>,
        depth: usize,
    ) -> Acted {
        let packet = look.packet;
        match action {
            Action::Continue => Acted::Continue,
            Action::Accept => Acted::Ends(vec![(Some(Exit::Accept), assumed)]),
            Action::Drop => Acted::Ends(vec![(Some(Exit::Drop), assumed)]),
            Action::Return => Acted::Ends(vec![(Some(Exit::Fell), assumed)]),
            Action::Unknown(what) => {
                let mut a = assumed;
                a.push(format!("{place}: {what}"));
                Acted::Ends(vec![(Some(Exit::Accept), a.clone()), (Some(Exit::Drop), a)])
            }
            Action::Jump(target) | Action::Goto(target) => {
                let goto = matches!(action, Action::Goto(_));
                let Some(callee) = self.chain(&chain.table, target) else {
                    let mut a = assumed;
                    a.push(format!("{place}: chain {target} does not exist"));
                    return Acted::Ends(vec![
                        (Some(Exit::Accept), a.clone()),
                        (Some(Exit::Drop), a),
                    ]);
                };
                let list = self
                    .walk(callee, look, assumed, depth + 1)
                    .into_iter()
                    .map(|(exit, a)| match exit {
                        // A jump's chain falls back to the rule after the jump; a goto's
                        // falls back past the chain that went there.
                        Exit::Fell if goto => (Some(Exit::Fell), a),
                        Exit::Fell => (None, a),
                        other => (Some(other), a),
                    })
                    .collect();
                Acted::Ends(list)
            }
            Action::Map { field, entries } => {
                let key = self.field_values(field, packet);
                let mut a = assumed;
                match key {
                    Key::Known(key) => {
                        for (values, action) in entries {
                            if key.is_in(values) {
                                return self.act(action, chain, look, place, a, depth);
                            }
                        }
                        Acted::Continue
                    }
                    Key::Unknown(what) => {
                        a.push(format!("{place}: verdict map on {what}"));
                        Acted::Ends(vec![(Some(Exit::Accept), a.clone()), (Some(Exit::Drop), a)])
                    }
                }
            }
        }
    }

    fn field_values(&self, field: &Field, packet: &Packet) -> Key {
        match field {
            Field::L4proto => Key::Known(Value::Number(if packet.tcp { 6 } else { 17 })),
            Field::Saddr => Key::Known(Value::Number(u64::from(u32::from(packet.saddr)))),
            Field::Daddr => Key::Known(Value::Number(u64::from(u32::from(packet.daddr)))),
            Field::Dport => Key::Known(Value::Number(u64::from(packet.dport))),
            Field::Sport => Key::Unknown("the source port".into()),
            Field::CtState => Key::Known(Value::Name("new".into())),
            Field::InIface => match &packet.in_iface {
                Some(name) => Key::Known(Value::Name(name.clone())),
                None => Key::Unknown("the input interface (give --iif)".into()),
            },
            Field::OutIface => match &packet.out_iface {
                Some(name) => Key::Known(Value::Name(name.clone())),
                None => Key::Unknown("the output interface (give --oif)".into()),
            },
            Field::Ipv6 => Key::Known(Value::Number(0)),
        }
    }

    /// Whether all of a rule's matches hold; with `Unknown`, what is undecidable.
    fn matches(&self, rule: &Rule, packet: &Packet) -> (Tri, String) {
        let mut unknown = Vec::new();
        for m in &rule.matches {
            match m {
                Match::Unknown(what) => unknown.push(what.clone()),
                Match::Is {
                    field,
                    negate,
                    values,
                } => {
                    if *field == Field::Ipv6 {
                        // An IPv6 match never holds for an IPv4 packet; negated, always.
                        if *negate {
                            continue;
                        }
                        return (Tri::No, String::new());
                    }
                    match self.field_values(field, packet) {
                        Key::Known(value) => {
                            if value.is_in(values) == *negate {
                                return (Tri::No, String::new());
                            }
                        }
                        Key::Unknown(what) => unknown.push(what),
                    }
                }
            }
        }
        if unknown.is_empty() {
            (Tri::Yes, String::new())
        } else {
            (Tri::Unknown, unknown.join(" and "))
        }
    }
}

/// What a walk looks at: the packet, and the budget it spends.
struct Look<'a> {
    packet: &'a Packet,
    budget: &'a Budget,
}

enum Acted {
    Continue,
    /// Ways it ended: `None` is a return to after this rule (a jump's chain fell through).
    Ends(Vec<(Option<Exit>, Vec<String>)>),
}

enum Value {
    Number(u64),
    Name(String),
}

impl Value {
    fn is_in(&self, values: &Values) -> bool {
        match self {
            Self::Number(n) => values.contains_number(*n),
            Self::Name(n) => values.contains_name(n),
        }
    }
}

enum Key {
    Known(Value),
    Unknown(String),
}

/// The audit of a ruleset against what a load needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audit {
    /// UDP destination ports that pass, that are dropped, and that are undecided (with why).
    pub passes: Vec<PortRange>,
    pub undecided: Vec<(PortRange, Vec<String>)>,
    pub control: Fate,
    /// Needed ports that do not pass (dropped or undecided), and passing ports not needed.
    pub missing: Vec<PortRange>,
    pub extra: Vec<PortRange>,
}

/// Where a UDP destination port's fate can change: every bound of every range a rule or a
/// verdict map tests the destination port against, and the needed range's. Between two
/// of these every test answers alike, so one port speaks for its whole interval.
fn breakpoints(ruleset: &Ruleset, needed: PortRange) -> Vec<u32> {
    let mut points = vec![
        1u32,
        u32::from(needed.first()),
        u32::from(needed.last()) + 1,
    ];
    let mut add = |values: &Values| {
        for &(lo, hi) in &values.ranges {
            points.push(lo.clamp(1, 65536) as u32);
            points.push(hi.saturating_add(1).clamp(1, 65536) as u32);
        }
    };
    for rule in ruleset.chains.iter().flat_map(|c| &c.rules) {
        for m in &rule.matches {
            if let Match::Is {
                field: Field::Dport,
                values,
                ..
            } = m
            {
                add(values);
            }
        }
        let mut actions = vec![&rule.action];
        while let Some(action) = actions.pop() {
            if let Action::Map { field, entries } = action {
                for (values, inner) in entries {
                    if *field == Field::Dport {
                        add(values);
                    }
                    actions.push(inner);
                }
            }
        }
    }
    points.retain(|&p| (1..=65535).contains(&p));
    points.sort_unstable();
    points.dedup();
    points
}

/// Evaluates every UDP destination port and the TCP control port for packets from
/// `template`'s source to its destination on `host`; `needed` is the UDP range the load
/// needs. An error when the ruleset takes more than [`MAX_STEPS`] rule evaluations.
pub fn audit(
    ruleset: &Ruleset,
    host: Host,
    template: &Packet,
    needed: PortRange,
    control_port: Port,
) -> Result<Audit, String> {
    let budget = Budget::new(MAX_STEPS);
    let mut passes = Vec::new();
    let mut undecided: BTreeMap<Vec<String>, Vec<PortRange>> = BTreeMap::new();
    let mut missing = Vec::new();
    let mut extra = Vec::new();
    let points = breakpoints(ruleset, needed);
    for (i, &first) in points.iter().enumerate() {
        let last = points.get(i + 1).map_or(65535, |next| next - 1);
        let (Ok(first), Ok(last)) = (Port::try_from(first), Port::try_from(last)) else {
            continue;
        };
        let Ok(interval) = PortRange::new(first, last) else {
            continue;
        };
        let packet = Packet {
            tcp: false,
            dport: first,
            ..template.clone()
        };
        let fate = ruleset.fate_within(host, &packet, &budget);
        if budget.exhausted() {
            return Err(too_big(ruleset));
        }
        // The needed range's bounds are breakpoints: an interval is all needed or none.
        let needed_here = needed.contains(first);
        match fate {
            Fate::Passes => {
                passes.push(interval);
                if !needed_here {
                    extra.push(interval);
                }
            }
            Fate::Dropped => {
                if needed_here {
                    missing.push(interval);
                }
            }
            Fate::Undecided(why) => {
                undecided.entry(why).or_default().push(interval);
                if needed_here {
                    missing.push(interval);
                }
            }
        }
    }
    let control = ruleset.fate_within(
        host,
        &Packet {
            tcp: true,
            dport: control_port,
            ..template.clone()
        },
        &budget,
    );
    if budget.exhausted() {
        return Err(too_big(ruleset));
    }
    let merge =
        |ranges: Vec<PortRange>| PortRange::covering(ranges.iter().flat_map(PortRange::ports));
    Ok(Audit {
        passes: merge(passes),
        undecided: undecided
            .into_iter()
            .flat_map(|(why, ranges)| merge(ranges).into_iter().map(move |r| (r, why.clone())))
            .collect(),
        control,
        missing: merge(missing),
        extra: merge(extra),
    })
}

fn too_big(ruleset: &Ruleset) -> String {
    format!(
        "too large to audit: its {} rules take more than {MAX_STEPS} rule evaluations over the \
         65535 ports",
        ruleset.chains.iter().map(|c| c.rules.len()).sum::<usize>()
    )
}

#[cfg(test)]
mod tests;
