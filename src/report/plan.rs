//! The report of `udprange plan`.

use std::fmt::Write;

use serde::Serialize;

use super::Export;
use crate::firewall::{Opening, Requirements, Side};
use crate::model::{Port, PortRange, ServerOs, SharingRule};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct UdpRange {
    pub first: Port,
    pub last: Port,
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
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TableRow {
    pub ports: u64,
    pub blocking: f64,
}

/// The random-load part of a plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanReport {
    pub os: ServerOs,
    pub sharing: SharingRule,
    pub udp_port_reuse: bool,
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
            (None, None) => String::new(),
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
