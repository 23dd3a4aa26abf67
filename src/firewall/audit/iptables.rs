//! iptables-save text into the evaluator's model: each table's built-in chains on their
//! hooks at iptables' priorities, user chains, and the matches of every `-A` line.

use std::net::Ipv4Addr;

use super::{Action, Base, Chain, Field, Hook, Match, Rule, Ruleset, Values};

/// The hook and priority of a table's built-in chain, as iptables-nft registers them.
fn builtin(table: &str, chain: &str) -> Option<(Hook, i32)> {
    let hook = Hook::parse(chain)?;
    let priority = match (table, hook) {
        ("raw", Hook::Prerouting | Hook::Output) => -300,
        ("mangle", _) => -150,
        ("nat", Hook::Prerouting | Hook::Output) => -100,
        ("nat", Hook::Input | Hook::Postrouting) => 100,
        ("filter", Hook::Input | Hook::Forward | Hook::Output) => 0,
        ("security", Hook::Input | Hook::Forward | Hook::Output) => 50,
        _ => return None,
    };
    Some((hook, priority))
}

/// Splits a line into words, honouring double quotes (`--comment "a b"`).
fn words(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    let mut any = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            '\\' if quoted => {
                if let Some(next) = chars.next() {
                    word.push(next);
                }
            }
            c if c.is_whitespace() && !quoted => {
                if any || !word.is_empty() {
                    out.push(std::mem::take(&mut word));
                    any = false;
                }
            }
            c => word.push(c),
        }
    }
    if quoted {
        return Err("an unterminated quote".into());
    }
    if any || !word.is_empty() {
        out.push(word);
    }
    Ok(out)
}

/// Reads iptables-save output; errors name the line.
pub fn parse(text: &str) -> Result<Ruleset, String> {
    let mut ruleset = Ruleset::default();
    let mut table: Option<String> = None;
    for (number, line) in text.lines().enumerate() {
        let number = number + 1;
        let line = line.trim();
        let at = |why: String| format!("line {number}: {why}");
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('*') {
            if !matches!(name, "filter" | "raw" | "mangle" | "nat" | "security") {
                return Err(at(format!("unknown table *{name}")));
            }
            table = Some(name.to_string());
            continue;
        }
        if line == "COMMIT" {
            table = None;
            continue;
        }
        let Some(current) = table.clone() else {
            return Err(at(
                "a chain or rule outside a table (`*filter` … `COMMIT`)".into()
            ));
        };
        let key = format!("ip {current}");
        if let Some(rest) = line.strip_prefix(':') {
            let mut parts = rest.split_whitespace();
            let (Some(name), Some(policy)) = (parts.next(), parts.next()) else {
                return Err(at(format!(
                    "`{line}` is not `:CHAIN POLICY [packets:bytes]`"
                )));
            };
            let base = match builtin(&current, name) {
                Some((hook, priority)) => Some(Base {
                    hook,
                    priority,
                    policy_accept: policy != "DROP",
                }),
                None if policy == "-" => None,
                None => {
                    return Err(at(format!(
                        "{name} is not a built-in chain of table {current} but has policy {policy}"
                    )));
                }
            };
            if ruleset.chain(&key, name).is_none() {
                ruleset.chains.push(Chain {
                    table: key,
                    name: name.to_string(),
                    base,
                    rules: Vec::new(),
                });
            }
            continue;
        }
        let words = words(line).map_err(at)?;
        let (Some(command), Some(chain_name)) = (words.first(), words.get(1)) else {
            return Err(at(format!("`{line}` is not a rule")));
        };
        if command != "-A" && command != "--append" {
            return Err(at(format!(
                "`{command}`: iptables-save writes only `-A CHAIN …` rules"
            )));
        }
        let Some(index) = ruleset
            .chains
            .iter()
            .position(|c| c.table == key && c.name == *chain_name)
        else {
            return Err(at(format!(
                "chain {chain_name} is not declared in table {current} (`:{chain_name} …`)"
            )));
        };
        let place = format!(
            "table {current}, chain {chain_name}, rule {}",
            ruleset.chains[index].rules.len() + 1
        );
        let rule = read_rule(place, &words[2..]).map_err(at)?;
        ruleset.chains[index].rules.push(rule);
    }
    if let Some(open) = table {
        return Err(format!("table *{open} has no COMMIT"));
    }
    Ok(ruleset)
}

fn port_values(text: &str) -> Option<Values> {
    let mut all = Values::default();
    for part in text.split(',') {
        let (lo, hi) = match part.split_once(':') {
            Some((lo, hi)) => (
                if lo.is_empty() { 0 } else { lo.parse().ok()? },
                if hi.is_empty() {
                    65535
                } else {
                    hi.parse().ok()?
                },
            ),
            None => {
                let n = super::service_port(part)?;
                (n, n)
            }
        };
        all.extend(Values::range(lo, hi));
    }
    Some(all)
}

fn address_values(text: &str) -> Option<Values> {
    let mut all = Values::default();
    for part in text.split(',') {
        let (addr, len) = match part.split_once('/') {
            Some((addr, mask)) => {
                let len = match mask.parse::<u8>() {
                    Ok(len) if len <= 32 => len,
                    _ => {
                        let m: Ipv4Addr = mask.parse().ok()?;
                        u32::from(m).count_ones() as u8
                    }
                };
                (addr.parse::<Ipv4Addr>().ok()?, len)
            }
            None => (part.parse::<Ipv4Addr>().ok()?, 32),
        };
        all.extend(Values::prefix(addr, len));
    }
    Some(all)
}

fn read_rule(place: String, words: &[String]) -> Result<Rule, String> {
    let mut matches = Vec::new();
    let mut action = Action::Continue;
    let mut i = 0;
    let mut negate = false;
    let arg = |i: usize, option: &str| -> Result<&str, String> {
        words
            .get(i + 1)
            .map(String::as_str)
            .ok_or_else(|| format!("{option} needs a value"))
    };
    while i < words.len() {
        let option = words[i].as_str();
        if option == "!" {
            negate = true;
            i += 1;
            continue;
        }
        let mut is = |field: Field, values: Option<Values>, shown: &str| match values {
            Some(values) => matches.push(Match::Is {
                field,
                negate,
                values,
            }),
            None => matches.push(Match::Unknown(format!("{option} {shown}"))),
        };
        match option {
            "-p" | "--protocol" => {
                let p = arg(i, option)?;
                let number = match p.to_ascii_lowercase().as_str() {
                    "tcp" => Some(6),
                    "udp" => Some(17),
                    "icmp" => Some(1),
                    "sctp" => Some(132),
                    "all" => None,
                    other => Some(other.parse().map_err(|_| format!("unknown protocol {p}"))?),
                };
                if let Some(n) = number {
                    is(Field::L4proto, Some(Values::number(n)), p);
                }
                i += 2;
            }
            "-s" | "--source" | "-d" | "--destination" => {
                let a = arg(i, option)?;
                let field = if option.starts_with("-s") || option == "--source" {
                    Field::Saddr
                } else {
                    Field::Daddr
                };
                is(field, address_values(a), a);
                i += 2;
            }
            "-i" | "--in-interface" | "-o" | "--out-interface" => {
                let name = arg(i, option)?;
                let field = if option == "-i" || option == "--in-interface" {
                    Field::InIface
                } else {
                    Field::OutIface
                };
                is(field, Some(Values::name(name)), name);
                i += 2;
            }
            "-m" | "--match" => {
                i += 2;
            }
            "--dport" | "--destination-port" | "--dports" | "--destination-ports" => {
                let p = arg(i, option)?;
                is(Field::Dport, port_values(p), p);
                i += 2;
            }
            "--sport" | "--source-port" | "--sports" | "--source-ports" => {
                let p = arg(i, option)?;
                is(Field::Sport, port_values(p), p);
                i += 2;
            }
            "--ctstate" | "--state" => {
                let states = arg(i, option)?;
                let mut values = Values::default();
                for s in states.split(',') {
                    values.extend(Values::name(&s.to_ascii_lowercase()));
                }
                is(Field::CtState, Some(values), states);
                i += 2;
            }
            "--comment" => i += 2,
            "-j" | "--jump" | "-g" | "--goto" => {
                let target = arg(i, option)?;
                action = match target {
                    "ACCEPT" => Action::Accept,
                    "DROP" | "REJECT" => Action::Drop,
                    "RETURN" => Action::Return,
                    "LOG" | "NFLOG" | "ULOG" | "MARK" | "CONNMARK" | "CT" | "NOTRACK" | "TRACE"
                    | "TCPMSS" | "DSCP" | "TOS" | "AUDIT" | "CHECKSUM" | "CLASSIFY" | "TTL" => {
                        Action::Continue
                    }
                    // A NAT target ends the nat table's walk for this packet.
                    "SNAT" | "DNAT" | "MASQUERADE" | "REDIRECT" | "NETMAP" => Action::Accept,
                    "QUEUE" | "NFQUEUE" => Action::Unknown("queue to userspace".into()),
                    chain if option.starts_with("-g") || option == "--goto" => {
                        Action::Goto(chain.to_string())
                    }
                    chain => Action::Jump(chain.to_string()),
                };
                // The target's own options follow; none of them is a match.
                i = words.len();
            }
            other => {
                // An option the evaluator does not know, with its values.
                let mut shown = other.to_string();
                i += 1;
                while i < words.len() && !words[i].starts_with('-') && words[i] != "!" {
                    shown.push(' ');
                    shown.push_str(&words[i]);
                    i += 1;
                }
                matches.push(Match::Unknown(if negate {
                    format!("! {shown}")
                } else {
                    shown
                }));
            }
        }
        negate = false;
    }
    Ok(Rule {
        place,
        matches,
        action,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_keep_quoted_text() {
        assert_eq!(
            words(r#"-A X -m comment --comment "a b \"c\"" -j ACCEPT"#).unwrap(),
            [
                "-A",
                "X",
                "-m",
                "comment",
                "--comment",
                "a b \"c\"",
                "-j",
                "ACCEPT"
            ]
        );
        assert!(words("-A X --comment \"open").is_err());
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse("*filter\n:FORWARD DROP [0:0]\n-A NOPE -j ACCEPT\nCOMMIT\n").unwrap_err();
        assert!(e.starts_with("line 3: chain NOPE is not declared"), "{e}");
        let e = parse("-A FORWARD -j ACCEPT\n").unwrap_err();
        assert!(
            e.starts_with("line 1: a chain or rule outside a table"),
            "{e}"
        );
        assert!(parse("*filter\n").unwrap_err().contains("no COMMIT"));
        assert!(
            parse("*bogus\nCOMMIT\n")
                .unwrap_err()
                .contains("unknown table")
        );
    }
}
