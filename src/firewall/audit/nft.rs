//! nftables JSON (`nft -j list ruleset`) into the evaluator's model.

use std::net::Ipv4Addr;

use serde_json::Value as Json;

use super::{Action, Base, Chain, Field, Hook, Match, Rule, Ruleset, Values};

/// Reads `nft -j list ruleset` output. An error only when it is not that JSON at all;
/// what it cannot model is named in the rules (unknown matches) or in `skipped`.
pub fn parse(json: &str) -> Result<Ruleset, String> {
    let root: Json = serde_json::from_str(json).map_err(|e| format!("not JSON: {e}"))?;
    let Some(items) = root.get("nftables").and_then(Json::as_array) else {
        return Err("no \"nftables\" array: not the output of `nft -j list ruleset`".into());
    };
    let mut ruleset = Ruleset::default();
    let mut sets: Vec<(String, String, Json)> = Vec::new();
    for item in items {
        if let Some(set) = item.get("set").or_else(|| item.get("map")) {
            sets.push((table_of(set), text(set, "name"), set.clone()));
        }
    }
    let family_ok = |f: &str| matches!(f, "ip" | "inet");
    for item in items {
        if let Some(table) = item.get("table") {
            let family = text(table, "family");
            if !family_ok(&family) {
                ruleset.skipped.push(format!(
                    "table {family} {}: {}",
                    text(table, "name"),
                    match family.as_str() {
                        "ip6" => "IPv6 only, not this IPv4 path",
                        "netdev" => "netdev (a device's ingress), not evaluated",
                        _ => "not an IPv4 family, not evaluated",
                    }
                ));
            }
        }
        if let Some(chain) = item.get("chain") {
            if !family_ok(&text(chain, "family")) {
                continue;
            }
            let base = match chain.get("hook").and_then(Json::as_str) {
                Some(hook) => match Hook::parse(hook) {
                    Some(hook) => Some(Base {
                        hook,
                        priority: priority(chain.get("prio")),
                        policy_accept: chain.get("policy").and_then(Json::as_str) != Some("drop"),
                    }),
                    None => {
                        ruleset.skipped.push(format!(
                            "chain {}: unknown hook {hook}",
                            text(chain, "name")
                        ));
                        continue;
                    }
                },
                None => None,
            };
            ruleset.chains.push(Chain {
                table: table_of(chain),
                name: text(chain, "name"),
                base,
                rules: Vec::new(),
            });
        }
    }
    for item in items {
        let Some(rule) = item.get("rule") else {
            continue;
        };
        if !family_ok(&text(rule, "family")) {
            continue;
        }
        let (table, chain_name) = (table_of(rule), text(rule, "chain"));
        let Some(chain) = ruleset
            .chains
            .iter_mut()
            .find(|c| c.table == table && c.name == chain_name)
        else {
            continue;
        };
        let place = format!(
            "table {table}, chain {chain_name}, rule {}",
            chain.rules.len() + 1
        );
        let exprs = rule
            .get("expr")
            .and_then(Json::as_array)
            .cloned()
            .unwrap_or_default();
        let sets_here: Vec<&(String, String, Json)> =
            sets.iter().filter(|(t, _, _)| *t == table).collect();
        chain.rules.push(read_rule(place, &exprs, &sets_here));
    }
    Ok(ruleset)
}

fn text(object: &Json, key: &str) -> String {
    object
        .get(key)
        .and_then(Json::as_str)
        .unwrap_or_default()
        .to_string()
}

fn table_of(object: &Json) -> String {
    format!("{} {}", text(object, "family"), text(object, "table"))
        .replace("  ", " ")
        .trim()
        .to_string()
}

fn priority(value: Option<&Json>) -> i32 {
    match value {
        Some(Json::Number(n)) => n
            .as_i64()
            .unwrap_or(0)
            .clamp(i32::MIN.into(), i32::MAX.into()) as i32,
        Some(Json::String(name)) => match name.as_str() {
            "raw" => -300,
            "mangle" => -150,
            "dstnat" => -100,
            "filter" => 0,
            "security" => 50,
            "srcnat" => 100,
            _ => 0,
        },
        _ => 0,
    }
}

/// A compact text of a JSON expression, for the report.
fn shown(value: &Json) -> String {
    let s = value.to_string();
    if s.len() > 120 {
        format!(
            "{}…",
            &s[..s.char_indices().nth(117).map_or(s.len(), |(i, _)| i)]
        )
    } else {
        s
    }
}

fn read_rule(place: String, exprs: &[Json], sets: &[&(String, String, Json)]) -> Rule {
    let mut matches = Vec::new();
    let mut action = Action::Continue;
    for expr in exprs {
        let Some((kind, body)) = expr.as_object().and_then(|o| o.iter().next()) else {
            matches.push(Match::Unknown(shown(expr)));
            continue;
        };
        match kind.as_str() {
            "match" => matches.extend(read_match(body, sets)),
            "accept" => action = Action::Accept,
            "drop" | "reject" => action = Action::Drop,
            "return" => action = Action::Return,
            "continue" => action = Action::Continue,
            "jump" => action = Action::Jump(text(body, "target")),
            "goto" => action = Action::Goto(text(body, "target")),
            "vmap" => {
                let key = body.get("key").cloned().unwrap_or(Json::Null);
                let (field, implied) = field_of(&key);
                let entries = body
                    .get("data")
                    .and_then(|d| match d {
                        Json::String(name) => set_json(name, sets).and_then(|s| s.get("elem")),
                        other => other.get("set"),
                    })
                    .and_then(Json::as_array)
                    .cloned()
                    .unwrap_or_default();
                match field {
                    Some(field) => {
                        matches.extend(implied);
                        let mut map = Vec::new();
                        for entry in entries {
                            let (Some(k), Some(v)) = (entry.get(0), entry.get(1)) else {
                                continue;
                            };
                            let verdict =
                                read_rule(String::new(), std::slice::from_ref(v), sets).action;
                            map.push((values_of(&field, k, sets).unwrap_or_default(), verdict));
                        }
                        action = Action::Map {
                            field,
                            entries: map,
                        };
                    }
                    None => action = Action::Unknown(format!("verdict map on {}", shown(&key))),
                }
            }
            "queue" => action = Action::Unknown("queue to userspace".into()),
            "limit" => matches.push(Match::Unknown(format!(
                "limit rate {}/{}",
                body.get("rate").map_or("?".into(), Json::to_string),
                text(body, "per")
            ))),
            "quota" | "xt" | "synproxy" | "ct count" => {
                matches.push(Match::Unknown(format!("{kind} {}", shown(body))));
            }
            // Statements that are not verdicts: on to the next expression.
            _ => {}
        }
    }
    Rule {
        place,
        matches,
        action,
    }
}

/// The field an expression reads, and the matches it implies (`udp dport` implies UDP).
fn field_of(left: &Json) -> (Option<Field>, Vec<Match>) {
    let is_proto = |p: u64| Match::Is {
        field: Field::L4proto,
        negate: false,
        values: Values::number(p),
    };
    if let Some(p) = left.get("payload") {
        let (protocol, field) = (text(p, "protocol"), text(p, "field"));
        return match (protocol.as_str(), field.as_str()) {
            ("ip", "saddr") => (Some(Field::Saddr), vec![]),
            ("ip", "daddr") => (Some(Field::Daddr), vec![]),
            ("ip", "protocol") => (Some(Field::L4proto), vec![]),
            // An IPv6 header: never this IPv4 packet's, whatever the comparison.
            ("ip6", _) | ("icmpv6", _) => (
                None,
                vec![Match::Is {
                    field: Field::Ipv6,
                    negate: false,
                    values: Values::default(),
                }],
            ),
            ("udp", "dport") => (Some(Field::Dport), vec![is_proto(17)]),
            ("udp", "sport") => (Some(Field::Sport), vec![is_proto(17)]),
            ("tcp", "dport") => (Some(Field::Dport), vec![is_proto(6)]),
            ("tcp", "sport") => (Some(Field::Sport), vec![is_proto(6)]),
            ("th", "dport") => (Some(Field::Dport), vec![]),
            ("th", "sport") => (Some(Field::Sport), vec![]),
            // Other protocols' headers: the packet is UDP or TCP, so they never match.
            ("icmp", _) => (None, vec![is_proto(1)]),
            ("sctp", _) => (None, vec![is_proto(132)]),
            ("dccp", _) => (None, vec![is_proto(33)]),
            ("esp", _) => (None, vec![is_proto(50)]),
            ("ah", _) => (None, vec![is_proto(51)]),
            _ => (None, vec![]),
        };
    }
    if let Some(m) = left.get("meta") {
        return match text(m, "key").as_str() {
            "l4proto" => (Some(Field::L4proto), vec![]),
            "iifname" | "iif" => (Some(Field::InIface), vec![]),
            "oifname" | "oif" => (Some(Field::OutIface), vec![]),
            "nfproto" => (Some(Field::Ipv6), vec![]),
            _ => (None, vec![]),
        };
    }
    if let Some(ct) = left.get("ct")
        && text(ct, "key") == "state"
    {
        return (Some(Field::CtState), vec![]);
    }
    (None, vec![])
}

fn set_json<'a>(reference: &str, sets: &[&'a (String, String, Json)]) -> Option<&'a Json> {
    let name = reference.strip_prefix('@')?;
    sets.iter().find(|(_, n, _)| n == name).map(|(_, _, s)| s)
}

/// The values of `right` for `field`; `None` when they cannot be read.
fn values_of(field: &Field, right: &Json, sets: &[&(String, String, Json)]) -> Option<Values> {
    match right {
        Json::Number(n) => Some(Values::number(n.as_u64()?)),
        Json::String(s) if s.starts_with('@') => {
            let set = set_json(s, sets)?;
            values_of(field, set.get("elem").unwrap_or(&Json::Array(vec![])), sets)
        }
        Json::String(s) => scalar(field, s),
        Json::Array(items) => {
            let mut all = Values::default();
            for item in items {
                all.extend(values_of(field, item, sets)?);
            }
            Some(all)
        }
        Json::Object(o) => {
            if let Some(set) = o.get("set") {
                return values_of(field, set, sets);
            }
            if let Some(elem) = o.get("elem") {
                return values_of(field, elem.get("val").unwrap_or(elem), sets);
            }
            if let Some(range) = o.get("range").and_then(Json::as_array) {
                let bound = |i: usize| {
                    let v = values_of(field, range.get(i)?, sets)?;
                    v.ranges.first().map(|r| r.0)
                };
                return Some(Values::range(bound(0)?, bound(1)?));
            }
            if let Some(prefix) = o.get("prefix") {
                let addr: Ipv4Addr = prefix.get("addr")?.as_str()?.parse().ok()?;
                let len = u8::try_from(prefix.get("len")?.as_u64()?).ok()?;
                return Some(Values::prefix(addr, len));
            }
            None
        }
        _ => None,
    }
}

/// One value written as a string: an address, a protocol or service name, a state, an
/// interface, IPv4 or IPv6 for nfproto.
fn scalar(field: &Field, s: &str) -> Option<Values> {
    match field {
        Field::Saddr | Field::Daddr => {
            let addr: Ipv4Addr = s.parse().ok()?;
            Some(Values::number(u64::from(u32::from(addr))))
        }
        Field::L4proto => Some(Values::number(match s {
            "icmp" => 1,
            "tcp" => 6,
            "udp" => 17,
            "dccp" => 33,
            "esp" => 50,
            "ah" => 51,
            "icmpv6" => 58,
            "sctp" => 132,
            "udplite" => 136,
            other => other.parse().ok()?,
        })),
        Field::Sport | Field::Dport => Some(Values::number(super::service_port(s)?)),
        Field::CtState | Field::InIface | Field::OutIface => Some(Values::name(s)),
        Field::Ipv6 => Some(Values::name(s)),
    }
}

fn read_match(body: &Json, sets: &[&(String, String, Json)]) -> Vec<Match> {
    let unknown = || vec![Match::Unknown(shown(body))];
    let (Some(left), Some(right)) = (body.get("left"), body.get("right")) else {
        return unknown();
    };
    let op = body.get("op").and_then(Json::as_str).unwrap_or("==");
    let (field, mut implied) = field_of(left);
    let Some(field) = field else {
        // A header of another protocol: the implied protocol match decides (never true).
        if !implied.is_empty() {
            return implied;
        }
        return unknown();
    };
    if field == Field::Ipv6 {
        // `meta nfproto ipv4` holds for our packet; anything about IPv6 does not.
        let says_ipv4 = right.as_str() == Some("ipv4");
        let holds = says_ipv4 != (op == "!=");
        return vec![Match::Is {
            field: Field::Ipv6,
            negate: holds,
            values: Values::default(),
        }];
    }
    let Some(values) = values_of(&field, right, sets) else {
        return unknown();
    };
    let bound = || values.ranges.first().map(|r| r.0);
    let (negate, values) = match op {
        "==" | "in" => (false, values),
        "!=" => (true, values),
        "<" => match bound() {
            Some(0) => (false, Values::default()),
            Some(n) => (false, Values::range(0, n - 1)),
            None => return unknown(),
        },
        "<=" => match bound() {
            Some(n) => (false, Values::range(0, n)),
            None => return unknown(),
        },
        ">" => match bound() {
            Some(n) => (false, Values::range(n + 1, u64::MAX)),
            None => return unknown(),
        },
        ">=" => match bound() {
            Some(n) => (false, Values::range(n, u64::MAX)),
            None => return unknown(),
        },
        _ => return unknown(),
    };
    implied.push(Match::Is {
        field,
        negate,
        values,
    });
    implied
}
