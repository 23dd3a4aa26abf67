//! `audit`: what a ruleset passes from client to server, against what the load needs,
//! without a packet (and with `--confirm`, what the kernel does with the same ruleset).

use std::fmt::Write as _;

use serde::Serialize;

use super::args::AuditArgs;
use super::{EXIT_FAILED, EXIT_INCONCLUSIVE, EXIT_OK, Outcome, UsageError};
use crate::firewall::audit::{self, Audit, Fate, Hook, Packet, Ruleset};
use crate::firewall::ruleset::{Format as RulesetFormat, UserRuleset};
use crate::model::{Port, PortBounds, PortRange};
use crate::report::Format;

fn bounds(ranges: &[PortRange]) -> Vec<PortBounds> {
    ranges.iter().copied().map(PortBounds::from).collect()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
struct Undecided {
    first: Port,
    last: Port,
    ports: u32,
    /// The matches that decide these ports and that the evaluator cannot tell.
    why: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
struct Disagreement {
    first: Port,
    last: Port,
    ports: u32,
    /// `passes`, `dropped` or `undecided`.
    audit: &'static str,
    kernel: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
struct Confirm {
    agree: bool,
    /// UDP ports whose probe reached the server.
    kernel_passes: Vec<PortBounds>,
    kernel_control: &'static str,
    /// Where the static answer (passes or dropped) and the kernel differ. Undecided ports
    /// are not disagreements: the kernel decides them with the test hosts' interfaces.
    disagreements: Vec<Disagreement>,
    /// Ports whose probe never left the client: no answer about them.
    unsent: Vec<PortBounds>,
}

/// The report, one JSON object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub(super) struct AuditReport {
    ruleset: String,
    format: RulesetFormat,
    at: &'static str,
    /// The hooks evaluated, in order.
    hooks: Vec<&'static str>,
    client_addr: String,
    server_addr: String,
    /// What the load needs: the UDP range (`udp_range`, as every command names the range
    /// to open) and the TCP control port.
    #[serde(rename = "udp_range")]
    needed: PortBounds,
    needed_from: String,
    control_port: Port,
    /// `passes`, `dropped` or `undecided`.
    control: &'static str,
    sufficient: bool,
    passes: Vec<PortBounds>,
    missing: Vec<PortBounds>,
    extra: Vec<PortBounds>,
    undecided: Vec<Undecided>,
    /// Parts of the ruleset not evaluated, and why.
    skipped: Vec<String>,
    confirm: Option<Confirm>,
    summary: String,
}

fn fate_name(fate: &Fate) -> &'static str {
    match fate {
        Fate::Passes => "passes",
        Fate::Dropped => "dropped",
        Fate::Undecided(_) => "undecided",
    }
}

/// The evaluator's model of the file: iptables-save and JSON read directly, nftables text
/// through `nft` in a namespace of its own.
fn model(ruleset: &UserRuleset) -> Result<Ruleset, UsageError> {
    let at = |e: String| UsageError(format!("{}: {e}", ruleset.path));
    match ruleset.format {
        RulesetFormat::IptablesSave => audit::iptables::parse(&ruleset.text).map_err(at),
        RulesetFormat::NftablesJson => audit::nft::parse(&ruleset.text).map_err(at),
        RulesetFormat::Nftables => {
            crate::blast::netns::check_requirements().map_err(|e| {
                UsageError(format!(
                    "{}: reading nftables text takes nft itself, in a namespace: {e}; or give \
                     `nft -j list ruleset` output",
                    ruleset.path
                ))
            })?;
            let json =
                crate::blast::netns::nft_json(ruleset).map_err(|e| UsageError(e.to_string()))?;
            audit::nft::parse(&json).map_err(at)
        }
    }
}

/// What the load needs: the plan flags' range, or what simulate recommends for a scenario.
fn needed(args: &AuditArgs) -> Result<(PortRange, Port, String), UsageError> {
    let Some(path) = &args.scenario else {
        let plan = super::plan_report(&args.sizing)?;
        return Ok((
            plan.udp_range.range(),
            plan.tcp_control_port,
            "the plan flags".into(),
        ));
    };
    let scenario = crate::scenario::Scenario::load(path).map_err(|e| UsageError(e.to_string()))?;
    let result = crate::sim::simulate(&scenario, crate::sim::Options::default())
        .map_err(|e| UsageError(format!("{}: {e}", path.display())))?;
    let summary = crate::sim::summarize(crate::sim::Context::of(&scenario), &result);
    let recommended = summary.recommended.ok_or_else(|| {
        UsageError(format!(
            "{}: no range meets the scenario's target blocking (its server runs out of ports)",
            path.display()
        ))
    })?;
    let range = PortRange::new(recommended.first, recommended.last)
        .map_err(|e| UsageError(e.to_string()))?;
    let control = match scenario.traffic.control_port {
        0 => crate::model::ControlPort::for_os(scenario.server.os, args.sizing.ssh_port).port,
        port => port,
    };
    Ok((
        range,
        control,
        format!("the range simulate recommends for {}", path.display()),
    ))
}

pub(super) fn audit(args: &AuditArgs) -> Result<Outcome, UsageError> {
    super::output::preflight(&args.export.paths())?;
    let ruleset = UserRuleset::read(&args.ruleset).map_err(|e| UsageError(e.to_string()))?;
    let (needed, control_port, needed_from) = needed(args)?;
    let model = model(&ruleset)?;
    let packet = Packet {
        tcp: false,
        saddr: args.client_addr,
        daddr: args.server_addr,
        dport: 0,
        in_iface: args.iif.clone(),
        out_iface: args.oif.clone(),
    };
    let result: Audit = audit::audit(&model, args.at, &packet, needed, control_port)
        .map_err(|e| UsageError(format!("{}: {e}", ruleset.path)))?;
    let undecided_needed = result
        .undecided
        .iter()
        .any(|(r, _)| r.first() <= needed.last() && needed.first() <= r.last());
    let undecided = |p: Port| result.undecided.iter().any(|(r, _)| r.contains(p));
    let dropped_needed = PortRange::covering(
        result
            .missing
            .iter()
            .flat_map(PortRange::ports)
            .filter(|&p| !undecided(p)),
    );
    let control = fate_name(&result.control);
    let sufficient = result.missing.is_empty() && result.control == Fate::Passes;
    let confirm = if args.confirm {
        Some(confirm(&ruleset, args, &result, control_port)?)
    } else {
        None
    };
    let list = |ranges: &[PortRange]| {
        if ranges.is_empty() {
            "none".to_string()
        } else {
            PortRange::list(ranges.iter().flat_map(PortRange::ports))
        }
    };
    let mut summary = if sufficient {
        format!("sufficient: the ruleset passes UDP {needed} and TCP {control_port}")
    } else if !dropped_needed.is_empty() || result.control == Fate::Dropped {
        let mut parts = Vec::new();
        if !dropped_needed.is_empty() {
            parts.push(format!("drops UDP {}", list(&dropped_needed)));
        }
        if result.control == Fate::Dropped {
            parts.push(format!("drops the control connection (TCP {control_port})"));
        }
        format!(
            "insufficient: the ruleset {}; this load needs UDP {needed} and TCP {control_port}",
            parts.join(" and ")
        )
    } else {
        format!(
            "undecided: whether the ruleset passes what this load needs (UDP {needed}, TCP \
             {control_port}) depends on matches the evaluator cannot decide (see undecided)"
        )
    };
    if !result.extra.is_empty() {
        let _ = write!(
            summary,
            "; it also passes {} port(s) the load does not need ({}): wider than needed",
            result.extra.iter().map(|r| u64::from(r.len())).sum::<u64>(),
            list(&result.extra)
        );
    }
    if let Some(c) = &confirm {
        if c.agree {
            summary.push_str("; the kernel agrees (--confirm)");
        } else {
            let _ = write!(
                summary,
                "; the kernel DISAGREES on {} range(s) (see confirm)",
                c.disagreements.len()
            );
        }
    }
    let report = AuditReport {
        ruleset: ruleset.path.clone(),
        format: ruleset.format,
        at: args.at.name(),
        hooks: Hook::path(args.at).iter().map(|h| h.name()).collect(),
        client_addr: args.client_addr.to_string(),
        server_addr: args.server_addr.to_string(),
        needed: needed.into(),
        needed_from,
        control_port,
        control,
        sufficient,
        passes: bounds(&result.passes),
        missing: bounds(&result.missing),
        extra: bounds(&result.extra),
        undecided: result
            .undecided
            .iter()
            .map(|(r, why)| Undecided {
                first: r.first(),
                last: r.last(),
                ports: r.len(),
                why: why.clone(),
            })
            .collect(),
        skipped: model.skipped.clone(),
        confirm,
        summary,
    };
    let code = if !dropped_needed.is_empty() || result.control == Fate::Dropped {
        EXIT_FAILED
    } else if !sufficient || undecided_needed {
        EXIT_INCONCLUSIVE
    } else {
        EXIT_OK
    };
    let code = match &report.confirm {
        Some(c) if !c.agree => EXIT_FAILED.max(code),
        _ => code,
    };
    let json = crate::report::with_provenance(
        serde_json::to_string_pretty(&report).map_err(|e| UsageError(e.to_string()))?,
    ) + "\n";
    let mut files = Vec::new();
    if let Some(path) = &args.export.export_json {
        files.push(super::OutputFile {
            flag: "--export-json",
            path: path.clone(),
            contents: json.clone().into_bytes(),
        });
    }
    if let Some(path) = &args.export.export_csv {
        files.push(super::OutputFile {
            flag: "--export-csv",
            path: path.clone(),
            contents: csv(&report).into_bytes(),
        });
    }
    let stdout = match args.format {
        Format::Json => json,
        _ => text(&report, &list),
    };
    Ok(Outcome {
        stdout,
        files,
        code,
    })
}

/// The audit as a table: one row per range of UDP ports and what the ruleset does to them
/// (`passes` with `needed` true or false, `missing`, `undecided` with why).
fn csv(r: &AuditReport) -> String {
    let mut out = String::from("fate,first,last,ports,needed,why\n");
    let needed = |first: Port, last: Port| first <= r.needed.last && last >= r.needed.first;
    for b in &r.passes {
        let _ = writeln!(
            out,
            "passes,{},{},{},{},",
            b.first,
            b.last,
            b.ports,
            needed(b.first, b.last)
        );
    }
    for b in &r.missing {
        let _ = writeln!(out, "missing,{},{},{},true,", b.first, b.last, b.ports);
    }
    for u in &r.undecided {
        let why = u.why.join("; ").replace('"', "\"\"");
        let overlaps = needed(u.first, u.last);
        let _ = writeln!(
            out,
            "undecided,{},{},{},{overlaps},\"{why}\"",
            u.first, u.last, u.ports
        );
    }
    out
}

fn text(r: &AuditReport, list: &dyn Fn(&[PortRange]) -> String) -> String {
    let ranges =
        |b: &[PortBounds]| -> Vec<PortRange> { b.iter().filter_map(PortBounds::range).collect() };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "ruleset    {} ({}) at the {} ({} hooks)",
        r.ruleset,
        match r.format {
            RulesetFormat::Nftables => "nftables",
            RulesetFormat::NftablesJson => "nftables JSON",
            RulesetFormat::IptablesSave => "iptables-save",
        },
        r.at,
        r.hooks.join(", ")
    );
    let _ = writeln!(
        out,
        "packets    {} -> {}, the first of each flow (conntrack new)",
        r.client_addr, r.server_addr
    );
    let _ = writeln!(
        out,
        "needed     UDP {}-{} ({} ports, {}), TCP {}",
        r.needed.first, r.needed.last, r.needed.ports, r.needed_from, r.control_port
    );
    let _ = writeln!(out, "control    TCP {} {}", r.control_port, r.control);
    let _ = writeln!(out, "passes     UDP {}", list(&ranges(&r.passes)));
    let _ = writeln!(out, "missing    UDP {}", list(&ranges(&r.missing)));
    let _ = writeln!(out, "extra      UDP {}", list(&ranges(&r.extra)));
    for u in &r.undecided {
        let _ = writeln!(
            out,
            "undecided  UDP {}: {}",
            PortRange::new(u.first, u.last).map_or(String::new(), |r| r.to_string()),
            u.why.join("; ")
        );
    }
    for s in &r.skipped {
        let _ = writeln!(out, "skipped    {s}");
    }
    if let Some(c) = &r.confirm {
        let _ = writeln!(
            out,
            "kernel     passes UDP {}, TCP {} {}",
            list(&ranges(&c.kernel_passes)),
            r.control_port,
            c.kernel_control
        );
        for d in &c.disagreements {
            let _ = writeln!(
                out,
                "DISAGREE   UDP {}-{}: audit says {}, the kernel {}",
                d.first, d.last, d.audit, d.kernel
            );
        }
    }
    let _ = writeln!(out, "\n{}", r.summary);
    out
}

/// The kernel's answer for the same ruleset, and where it differs from the audit's.
fn confirm(
    ruleset: &UserRuleset,
    args: &AuditArgs,
    result: &Audit,
    control_port: Port,
) -> Result<Confirm, UsageError> {
    let kernel = crate::blast::probe::probe(
        ruleset,
        args.at,
        args.client_addr,
        args.server_addr,
        control_port,
    )
    .map_err(|e| UsageError(format!("--confirm: {e}")))?;
    let contains = |ranges: &[PortRange], p: Port| ranges.iter().any(|r| r.contains(p));
    let undecided: Vec<PortRange> = result.undecided.iter().map(|(r, _)| *r).collect();
    let mut disagreements: Vec<Disagreement> = Vec::new();
    let mut run: Option<(Port, Port, &'static str, &'static str)> = None;
    let mut flush = |run: &mut Option<(Port, Port, &'static str, &'static str)>| {
        if let Some((first, last, audit, kernel)) = run.take() {
            disagreements.push(Disagreement {
                first,
                last,
                ports: u32::from(last - first) + 1,
                audit,
                kernel,
            });
        }
    };
    for port in 1..=Port::MAX {
        if contains(&kernel.unsent, port) || contains(&undecided, port) {
            flush(&mut run);
            continue;
        }
        let static_passes = contains(&result.passes, port);
        let kernel_passes = contains(&kernel.passes, port);
        if static_passes == kernel_passes {
            flush(&mut run);
            continue;
        }
        let (audit, kernel) = if static_passes {
            ("passes", "dropped")
        } else {
            ("dropped", "passes")
        };
        match &mut run {
            Some((_, last, a, k)) if *last + 1 == port && *a == audit && *k == kernel => {
                *last = port;
            }
            _ => {
                flush(&mut run);
                run = Some((port, port, audit, kernel));
            }
        }
    }
    flush(&mut run);
    let kernel_control = if kernel.control_passes {
        "passes"
    } else {
        "dropped"
    };
    let control_agrees = matches!(result.control, Fate::Undecided(_))
        || fate_name(&result.control) == kernel_control;
    Ok(Confirm {
        agree: disagreements.is_empty() && control_agrees,
        kernel_passes: bounds(&kernel.passes),
        kernel_control,
        disagreements,
        unsent: bounds(&kernel.unsent),
    })
}
