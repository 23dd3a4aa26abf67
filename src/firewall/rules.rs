//! Ready-to-paste firewall rules in four syntaxes, from one list of [`Opening`]s.
//!
//! | syntax | what it prints | load with |
//! |---|---|---|
//! | nftables | a table `inet udprange_<side>` that replaces itself atomically | `nft -f FILE` |
//! | iptables | a chain `UDPRANGE-<SIDE>` and one jump to it, restore format | `iptables -D OUTPUT -j UDPRANGE-<SIDE>; iptables-restore --noflush FILE` (INPUT on the server; see below) |
//! | powershell | `New-NetFirewallRule` lines in a group `udprange` | an elevated PowerShell |
//! | pf | `pass … quick` lines | `pfctl -f` (pf.conf or an anchor) |
//!
//! Loading again replaces what an earlier load put there: the nftables table deletes and
//! redefines itself in one transaction; the iptables chain is emptied and refilled, but
//! `iptables-restore` cannot add a jump "unless present", so the printed load command
//! first removes the jump an earlier load added.
//!
//! With `default_drop`, UDP to the peer (or anywhere, without a peer) outside the openings is
//! dropped as well. Windows Firewall lets a block rule win over any allow rule, so there the
//! drop is written as a block of the complement ranges.
//!
//! ```
//! use udprange::firewall::{Requirements, Side};
//! use udprange::firewall::rules::{render, RuleSet, Syntax};
//! let req = Requirements::new(22, "33001-33010".parse().unwrap(), false);
//! let set = RuleSet::new(Side::Client, req.openings(Side::Client));
//! let text = render(&set, Syntax::Nftables).unwrap();
//! assert!(text.contains("udp dport 33001-33010 accept"));
//! ```

use std::fmt::Write;
use std::str::FromStr;

use serde::Serialize;

use super::{Direction, Opening, Peer, Protocol, Side};
use crate::model::{MAX_PORT, PortRange};

/// A firewall rule syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Syntax {
    Nftables,
    Iptables,
    Powershell,
    Pf,
}

impl Syntax {
    pub const ALL: [Syntax; 4] = [Self::Nftables, Self::Iptables, Self::Powershell, Self::Pf];

    pub fn name(self) -> &'static str {
        match self {
            Self::Nftables => "nftables",
            Self::Iptables => "iptables",
            Self::Powershell => "powershell",
            Self::Pf => "pf",
        }
    }
}

impl FromStr for Syntax {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|s| s.name().eq_ignore_ascii_case(text.trim()))
            .ok_or_else(|| format!("unknown syntax '{text}' (nftables, iptables, powershell, pf)"))
    }
}

/// The rules for one side's firewall.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSet {
    pub side: Side,
    pub openings: Vec<Opening>,
    /// Restrict the rules to this server (client side) or these clients (server side).
    pub peer: Option<Peer>,
    /// Drop UDP outside the openings (to the peer, if one is given).
    pub default_drop: bool,
    /// Lines written as a comment at the top (what the rules are for).
    pub header: Vec<String>,
}

impl RuleSet {
    pub fn new(side: Side, openings: Vec<Opening>) -> Self {
        Self {
            side,
            openings,
            peer: None,
            default_drop: false,
            header: Vec::new(),
        }
    }

    fn direction(&self) -> Direction {
        match self.side {
            Side::Client => Direction::Outbound,
            Side::Server => Direction::Inbound,
        }
    }

    fn udp_ranges(&self) -> Vec<PortRange> {
        let mut ranges: Vec<PortRange> = self
            .openings
            .iter()
            .filter(|o| o.protocol == Protocol::Udp)
            .map(|o| o.ports)
            .collect();
        ranges.sort();
        ranges
    }

    /// UDP ports outside every UDP opening, as ranges.
    fn udp_complement(&self) -> Vec<PortRange> {
        let mut gaps = Vec::new();
        let mut next: u32 = 1;
        for range in self.udp_ranges() {
            if u32::from(range.first()) > next {
                gaps.push(PortRange::new(next as u16, range.first() - 1).expect("gap is ordered"));
            }
            next = next.max(u32::from(range.last()) + 1);
        }
        if next <= u32::from(MAX_PORT) {
            gaps.push(PortRange::new(next as u16, MAX_PORT).expect("gap is ordered"));
        }
        gaps
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RulesError {
    #[error(
        "iptables-restore is IPv4 only; for the IPv6 peer {0} use --syntax nftables (or ip6tables)"
    )]
    Ipv6WithIptables(Peer),
}

/// Renders a rule set in `syntax`.
pub fn render(set: &RuleSet, syntax: Syntax) -> Result<String, RulesError> {
    let mut out = String::new();
    let load_with = match syntax {
        Syntax::Nftables => "nft -f FILE".to_string(),
        Syntax::Iptables => {
            let (builtin, chain) = iptables_chains(set);
            format!("iptables -D {builtin} -j {chain} 2>/dev/null; iptables-restore --noflush FILE")
        }
        Syntax::Powershell => "paste into an elevated PowerShell".to_string(),
        Syntax::Pf => "add to pf.conf (or an anchor) and run pfctl -f".to_string(),
    };
    for line in &set.header {
        writeln!(out, "# {line}").unwrap();
    }
    writeln!(out, "# Load with: {load_with}").unwrap();
    if syntax == Syntax::Iptables {
        // iptables-restore has no "add unless present": each load appends one more jump.
        writeln!(
            out,
            "# (the first command removes the jump an earlier load added; loaded again without \
             it, iptables-restore --noflush replaces the chain but adds a second jump)"
        )
        .unwrap();
    }
    match syntax {
        Syntax::Nftables => nftables(set, &mut out),
        Syntax::Iptables => iptables(set, &mut out)?,
        Syntax::Powershell => powershell(set, &mut out),
        Syntax::Pf => pf(set, &mut out),
    }
    Ok(out)
}

fn nft_ports(range: PortRange) -> String {
    range.to_string()
}

fn nftables(set: &RuleSet, out: &mut String) {
    let table = format!("inet udprange_{}", set.side.name());
    let (hook, addr_dir) = match set.direction() {
        Direction::Outbound => ("output", "daddr"),
        Direction::Inbound => ("input", "saddr"),
    };
    let peer = set
        .peer
        .map(|p| {
            let family = if p.is_ipv6() { "ip6" } else { "ip" };
            format!("{family} {addr_dir} {p} ")
        })
        .unwrap_or_default();
    // Declare, delete and define in one batch: loading replaces an earlier version atomically.
    writeln!(out, "table {table}\ndelete table {table}\ntable {table} {{").unwrap();
    writeln!(out, "\tchain {hook} {{").unwrap();
    writeln!(
        out,
        "\t\ttype filter hook {hook} priority filter; policy accept;"
    )
    .unwrap();
    for o in &set.openings {
        writeln!(
            out,
            "\t\t{peer}{} dport {} accept comment \"{}\"",
            o.protocol.name(),
            nft_ports(o.ports),
            o.purpose
        )
        .unwrap();
    }
    if set.default_drop {
        let allowed: Vec<String> = set.udp_ranges().into_iter().map(nft_ports).collect();
        writeln!(
            out,
            "\t\t{peer}udp dport != {{ {} }} drop comment \"UDP outside the FASP openings\"",
            allowed.join(", ")
        )
        .unwrap();
    }
    writeln!(out, "\t}}\n}}").unwrap();
}

fn iptables_ports(range: PortRange) -> String {
    if range.len() == 1 {
        range.first().to_string()
    } else {
        format!("{}:{}", range.first(), range.last())
    }
}

/// The built-in chain the rules hook into and the chain of their own that holds them.
fn iptables_chains(set: &RuleSet) -> (&'static str, String) {
    let builtin = match set.direction() {
        Direction::Outbound => "OUTPUT",
        Direction::Inbound => "INPUT",
    };
    (
        builtin,
        format!("UDPRANGE-{}", set.side.name().to_uppercase()),
    )
}

/// The chain is declared (`:CHAIN`), which with `--noflush` creates it or empties it, so a
/// new load replaces its rules; the jump to it is one line that every load appends.
fn iptables(set: &RuleSet, out: &mut String) -> Result<(), RulesError> {
    let (builtin, chain) = iptables_chains(set);
    let addr_flag = match set.direction() {
        Direction::Outbound => "-d",
        Direction::Inbound => "-s",
    };
    let peer = match set.peer {
        Some(p) if p.is_ipv6() => return Err(RulesError::Ipv6WithIptables(p)),
        Some(p) => format!("{addr_flag} {}/{} ", p.addr, p.prefix),
        None => String::new(),
    };
    writeln!(out, "*filter\n:{chain} - [0:0]").unwrap();
    for o in &set.openings {
        let proto = o.protocol.name();
        writeln!(
            out,
            "-A {chain} {peer}-p {proto} -m {proto} --dport {} -m comment --comment \"{}\" -j ACCEPT",
            iptables_ports(o.ports),
            o.purpose
        )
        .unwrap();
    }
    if set.default_drop {
        writeln!(
            out,
            "-A {chain} {peer}-p udp -m comment --comment \"UDP outside the FASP openings\" -j DROP"
        )
        .unwrap();
    }
    writeln!(out, "-A {builtin} -j {chain}\nCOMMIT").unwrap();
    Ok(())
}

fn powershell(set: &RuleSet, out: &mut String) {
    let (direction, port_param) = match set.direction() {
        Direction::Outbound => ("Outbound", "RemotePort"),
        Direction::Inbound => ("Inbound", "LocalPort"),
    };
    let peer = set
        .peer
        .map(|p| format!(" -RemoteAddress {p}"))
        .unwrap_or_default();
    let rule = |out: &mut String, name: String, action: &str, proto: &str, ports: String| {
        writeln!(
            out,
            "New-NetFirewallRule -DisplayName '{name}' -Group 'udprange' -Direction {direction} \
             -Action {action} -Protocol {proto} -{port_param} {ports}{peer}"
        )
        .unwrap();
    };
    for o in &set.openings {
        let proto = o.protocol.name().to_uppercase();
        rule(
            out,
            format!("udprange {} ({proto} {})", o.purpose, o.ports),
            "Allow",
            &proto,
            o.ports.to_string(),
        );
    }
    if set.default_drop {
        // A block rule beats every allow rule in Windows Firewall: block the complement.
        let gaps: Vec<String> = set.udp_complement().iter().map(|r| r.to_string()).collect();
        if !gaps.is_empty() {
            rule(
                out,
                "udprange UDP outside the FASP openings".to_string(),
                "Block",
                "UDP",
                gaps.join(","),
            );
        }
    }
}

fn pf(set: &RuleSet, out: &mut String) {
    let dir = match set.direction() {
        Direction::Outbound => "out",
        Direction::Inbound => "in",
    };
    let peer = set.peer.map_or("any".to_string(), |p| p.to_string());
    let (from, to) = match set.direction() {
        Direction::Outbound => ("any".to_string(), peer),
        Direction::Inbound => (peer, "any".to_string()),
    };
    for o in &set.openings {
        let ports = if o.ports.len() == 1 {
            o.ports.first().to_string()
        } else {
            format!("{}:{}", o.ports.first(), o.ports.last())
        };
        writeln!(
            out,
            "pass {dir} quick proto {} from {from} to {to} port {ports} keep state label \"udprange {}\"",
            o.protocol.name(),
            o.purpose
        )
        .unwrap();
    }
    if set.default_drop {
        writeln!(
            out,
            "block drop {dir} quick proto udp from {from} to {to} label \"udprange UDP outside the FASP openings\""
        )
        .unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::Requirements;

    fn set(side: Side, vlink: bool) -> RuleSet {
        let req = Requirements::new(33001, "33001-33010".parse().unwrap(), vlink);
        RuleSet::new(side, req.openings(side))
    }

    #[test]
    fn nftables_client() {
        let text = render(&set(Side::Client, false), Syntax::Nftables).unwrap();
        let body: Vec<&str> = text.lines().skip(1).collect();
        assert_eq!(
            body,
            [
                "table inet udprange_client",
                "delete table inet udprange_client",
                "table inet udprange_client {",
                "\tchain output {",
                "\t\ttype filter hook output priority filter; policy accept;",
                "\t\ttcp dport 33001 accept comment \"FASP control (SSH)\"",
                "\t\tudp dport 33001-33010 accept comment \"FASP data\"",
                "\t}",
                "}",
            ]
        );
    }

    #[test]
    fn iptables_server_with_peer_and_drop() {
        let mut s = set(Side::Server, true);
        s.peer = Some("203.0.113.0/24".parse().unwrap());
        s.default_drop = true;
        let text = render(&s, Syntax::Iptables).unwrap();
        assert!(text.contains(
            "-A UDPRANGE-SERVER -s 203.0.113.0/24 -p udp -m udp --dport 33001:33010 -m comment --comment \"FASP data\" -j ACCEPT"
        ));
        assert!(text.contains("--dport 55001"));
        assert!(text.contains("-A INPUT -j UDPRANGE-SERVER\nCOMMIT\n"));
        // Loading again must not add a second jump: the load command removes the first.
        assert!(text.contains(
            "# Load with: iptables -D INPUT -j UDPRANGE-SERVER 2>/dev/null; iptables-restore --noflush FILE\n"
        ));
        s.peer = Some("2001:db8::1".parse().unwrap());
        assert!(render(&s, Syntax::Iptables).is_err());
    }

    #[test]
    fn powershell_blocks_the_complement() {
        let mut s = set(Side::Client, false);
        s.default_drop = true;
        let text = render(&s, Syntax::Powershell).unwrap();
        assert!(text.contains(
            "New-NetFirewallRule -DisplayName 'udprange FASP data (UDP 33001-33010)' -Group 'udprange' -Direction Outbound -Action Allow -Protocol UDP -RemotePort 33001-33010"
        ));
        assert!(text.contains("-Action Block -Protocol UDP -RemotePort 1-33000,33011-65535"));
    }

    #[test]
    fn pf_server() {
        let mut s = set(Side::Server, false);
        s.peer = Some("198.51.100.7".parse().unwrap());
        let text = render(&s, Syntax::Pf).unwrap();
        assert!(text.contains(
            "pass in quick proto udp from 198.51.100.7 to any port 33001:33010 keep state label \"udprange FASP data\""
        ));
    }

    #[test]
    fn complement_covers_everything_else() {
        let s = set(Side::Server, true);
        let gaps: Vec<String> = s.udp_complement().iter().map(|r| r.to_string()).collect();
        assert_eq!(gaps, ["1-33000", "33011-55000", "55002-65535"]);
    }
}
