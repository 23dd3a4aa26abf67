//! The report of `udprange plan`.

use std::fmt::Write;

use serde::Serialize;

use super::Export;
use crate::firewall::{Opening, Requirements, Side};
use crate::model::{Port, PortRange, ServerOs, SharingRule};
use crate::plan::logsize::LogSizing;
use crate::scenario::translog::{Issues, format_utc};

/// A range as every JSON gives it: `{first, last, ports}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct UdpRange {
    pub first: Port,
    pub last: Port,
    pub ports: u32,
}

impl UdpRange {
    pub fn range(&self) -> PortRange {
        PortRange::new(self.first, self.last).expect("built from a PortRange")
    }
}

impl From<PortRange> for UdpRange {
    fn from(range: PortRange) -> Self {
        Self {
            first: range.first(),
            last: range.last(),
            ports: range.len(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, schemars::JsonSchema)]
pub struct TableRow {
    pub ports: u64,
    pub blocking: f64,
}

/// The random-load part of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Stochastic {
    /// Which loss model was used (erlang-b, engset, per-account, shared-port, multi-session).
    pub model: String,
    pub offered_load: f64,
    pub target_blocking: f64,
    /// Blocking with `ports_needed` ports.
    pub blocking: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sources: Option<u64>,
    pub table: Vec<TableRow>,
}

/// What `plan` answers: the range, the control port, and where they must be opened.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct PlanReport {
    pub os: ServerOs,
    /// The sharing rule's code (`per-session`, `per-account`, `shared`) and in words.
    pub sharing: SharingRule,
    pub sharing_description: &'static str,
    /// A Linux server's `udp_port_reuse` setting (absent for the others, which have none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub udp_port_reuse: Option<bool>,
    pub base_port: Port,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrent: Option<u64>,
    pub sessions_per_transfer: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accounts: Option<u64>,
    pub ports_needed: u64,
    pub udp_range: UdpRange,
    pub occupied_in_range: Vec<Port>,
    pub tcp_control_port: Port,
    /// Why that control port (the OS's default, or `--ssh-port`).
    pub tcp_control_port_why: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vlink_port: Option<Port>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub stochastic: Option<Stochastic>,
    pub client_openings: Vec<Opening>,
    pub server_openings: Vec<Opening>,
    /// Sized from transfer logs (`--from-log`): what they show.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<LogReport>,
}

/// What the transfer logs showed, and how the range follows from them.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct LogReport {
    pub files: Vec<String>,
    pub lines: u64,
    pub session_lines: u64,
    /// Lines that were not usable parts of a session, counted, the first few named.
    pub issues: Issues,
    /// Headroom on top of the peak (a fraction: 0.3 is 30 %).
    pub growth: f64,
    #[serde(flatten)]
    pub sizing: LogSizing,
}

impl PlanReport {
    /// The firewall openings of the plan on both sides.
    pub fn with_openings(mut self, requirements: &Requirements) -> Self {
        self.client_openings = requirements.openings(Side::Client);
        self.server_openings = requirements.openings(Side::Server);
        self
    }
}

fn openings_line(openings: &[Opening]) -> String {
    openings
        .iter()
        .map(|o| format!("{} {}", o.protocol.name().to_uppercase(), o.ports))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Export for PlanReport {
    fn text(&self) -> String {
        let mut out = String::new();
        let w = &mut out;
        let workload = match (&self.stochastic, self.concurrent) {
            (Some(s), _) => format!(
                "{} Erlang offered, target blocking {}",
                s.offered_load, s.target_blocking
            ),
            (None, Some(c)) => format!("{c} concurrent transfers"),
            (None, None) => match &self.log {
                Some(log) => format!(
                    "{} sessions in {} log file{} ({} to {} UTC)",
                    log.sizing.sessions,
                    log.files.len(),
                    if log.files.len() == 1 { "" } else { "s" },
                    format_utc(log.sizing.first_start),
                    format_utc(log.sizing.last_stop)
                ),
                None => String::new(),
            },
        };
        writeln!(w, "udprange plan: {} server, {workload}", self.os).unwrap();
        writeln!(w, "  port sharing   {}", self.sharing.describe()).unwrap();
        if self.sessions_per_transfer > 1 {
            writeln!(
                w,
                "  sessions       {} per transfer",
                self.sessions_per_transfer
            )
            .unwrap();
        }
        if let Some(accounts) = self.accounts {
            writeln!(w, "  accounts       {accounts}").unwrap();
        }
        if let Some(log) = &self.log {
            log_lines(w, log, self.ports_needed);
        }
        writeln!(w, "  ports needed   {}", self.ports_needed).unwrap();
        if let Some(s) = &self.stochastic {
            let sources = s
                .sources
                .map(|m| format!(", {m} clients"))
                .unwrap_or_default();
            writeln!(w, "  model          {}{sources}", s.model).unwrap();
            writeln!(
                w,
                "  blocking       {:.3e} with {} ports (target {})",
                s.blocking, self.ports_needed, s.target_blocking
            )
            .unwrap();
        }
        writeln!(w).unwrap();
        let range = self.udp_range.range();
        writeln!(
            w,
            "  UDP {range:<13} data, handed out from {}",
            self.base_port
        )
        .unwrap();
        if !self.occupied_in_range.is_empty() {
            writeln!(
                w,
                "                    includes {} used by other services (skipped by the server)",
                PortRange::list(self.occupied_in_range.iter().copied())
            )
            .unwrap();
        }
        writeln!(
            w,
            "  TCP {:<13} control: {}",
            self.tcp_control_port, self.tcp_control_port_why
        )
        .unwrap();
        if let Some(vlink) = self.vlink_port {
            writeln!(w, "  UDP {vlink:<13} Vlink multicast (server side)").unwrap();
        }
        writeln!(w).unwrap();
        writeln!(
            w,
            "client firewall, outbound: {}",
            openings_line(&self.client_openings)
        )
        .unwrap();
        writeln!(
            w,
            "server firewall, inbound:  {}",
            openings_line(&self.server_openings)
        )
        .unwrap();
        if let Some(s) = &self.stochastic {
            writeln!(w, "\n  ports  blocking").unwrap();
            for row in &s.table {
                let mark = if row.ports == self.ports_needed {
                    "  <- needed"
                } else {
                    ""
                };
                writeln!(w, "  {:>5}  {:.3e}{mark}", row.ports, row.blocking).unwrap();
            }
        }
        out
    }

    fn csv(&self) -> String {
        let mut out = String::new();
        match &self.stochastic {
            Some(s) => {
                out.push_str("ports,blocking\n");
                for row in &s.table {
                    writeln!(out, "{},{}", row.ports, row.blocking).unwrap();
                }
            }
            None => {
                out.push_str("os,ports_needed,first,last,tcp_control_port\n");
                writeln!(
                    out,
                    "{},{},{},{},{}",
                    self.os,
                    self.ports_needed,
                    self.udp_range.first,
                    self.udp_range.last,
                    self.tcp_control_port
                )
                .unwrap();
            }
        }
        out
    }
}

/// The log's part of the text report: the peak, growth, the model against the real server,
/// and the lines that were not usable.
fn log_lines(w: &mut String, log: &LogReport, ports_needed: u64) {
    let s = &log.sizing;
    let peak = s.servers.iter().max_by_key(|l| l.peak_ports);
    if let Some(peak) = peak {
        let server = peak
            .address
            .map(|a| format!(" at server {a}"))
            .unwrap_or_default();
        writeln!(
            w,
            "  from the log   at most {} port{} held at once{server} ({} sessions running), \
             {} UTC",
            peak.peak_ports,
            if peak.peak_ports == 1 { "" } else { "s" },
            peak.peak_sessions,
            format_utc(peak.peak_at)
        )
        .unwrap();
    }
    if s.servers.len() > 1 {
        writeln!(
            w,
            "                 {} servers: sized for the busiest",
            s.servers.len()
        )
        .unwrap();
    }
    if s.failed > 0 {
        writeln!(
            w,
            "  failed         {} of {} sessions, {} with error 15 (the UDP data timeout: a \
             firewall range too narrow, among other causes)",
            s.failed, s.sessions, s.error_15
        )
        .unwrap();
    }
    if s.without_user > 0 {
        writeln!(
            w,
            "  accounts       {} sessions name no user: each counted as an account of its own",
            s.without_user
        )
        .unwrap();
    }
    if log.growth > 0.0 {
        writeln!(
            w,
            "  growth         {}% on top: {} -> {ports_needed} ports",
            crate::units::trim(log.growth * 100.0),
            s.peak_ports
        )
        .unwrap();
    }
    match (&s.comparison, &s.no_comparison) {
        (Some(c), _) => {
            writeln!(
                w,
                "  model check    {} of {} sessions got the port the model hands out ({}'s log, {})",
                c.agree,
                c.compared,
                c.side.name(),
                c.side_why
            )
            .unwrap();
            if c.disagree > 0 && !c.never_used.is_empty() {
                let ports = PortRange::list(c.never_used.iter().copied());
                writeln!(
                    w,
                    "                 the server never handed out {ports} though it went higher: \
                     another service may hold {}; if so, give --occupied {ports}",
                    if c.never_used.len() == 1 {
                        "it"
                    } else {
                        "them"
                    }
                )
                .unwrap();
            }
            for d in &c.first {
                writeln!(
                    w,
                    "                 uuid={} ({}:{}): the server gave {}, the model {}",
                    d.uuid,
                    d.file,
                    d.line,
                    d.real,
                    d.model.map_or("none".to_string(), |p| p.to_string())
                )
                .unwrap();
            }
        }
        (None, Some(why)) => writeln!(w, "  model check    not done: {why}").unwrap(),
        (None, None) => {}
    }
    if log.issues.total() > 0 {
        writeln!(
            w,
            "  log lines      {} malformed, {} unmatched (--strict makes them an error):",
            log.issues.malformed, log.issues.unmatched
        )
        .unwrap();
        for issue in &log.issues.first {
            writeln!(
                w,
                "                 {}:{}: {}",
                issue.file, issue.line, issue.why
            )
            .unwrap();
        }
    }
}
