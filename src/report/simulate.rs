//! The simulation report: text, CSV (the blocking table) and JSON (the whole [`Summary`]).

use std::fmt::Write as _;

use super::Export;
use crate::model::PortRange;
use crate::sim::Summary;

/// Probabilities in tables: fixed digits when readable, scientific when tiny.
fn probability(p: f64) -> String {
    if p == 0.0 {
        "0".to_string()
    } else if p >= 1e-3 {
        format!("{p:.5}")
    } else {
        format!("{p:.2e}")
    }
}

fn interval([lo, hi]: [f64; 2]) -> String {
    format!("[{}, {}]", probability(lo), probability(hi))
}

impl Export for Summary {
    fn text(&self) -> String {
        let c = &self.context;
        let mut out = String::new();
        let _ = writeln!(out, "scenario   {} ({})", c.scenario, c.file);
        let _ = writeln!(out, "server     {}: {}", c.os, c.sharing_description);
        let _ = writeln!(out, "method     {}: {}", c.method.name(), c.method_reason);
        let plural = |n: u64, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
        let _ = writeln!(
            out,
            "runs       {}, {}, seed {}",
            plural(u64::from(c.replications), "replication"),
            plural(self.sessions, "session"),
            c.seed
        );
        for note in &c.input_notes {
            let _ = writeln!(out, "input      {note}");
        }
        let _ = writeln!(out);
        match &self.recommended {
            Some(r) => {
                let range =
                    PortRange::new(r.first, r.last).map_or_else(|_| "?".into(), |r| r.to_string());
                let confidence = if c.replayed {
                    "replayed"
                } else {
                    "with 95% confidence"
                };
                let _ = writeln!(
                    out,
                    "open {range} ({}): blocking <= {} {confidence}",
                    plural(r.ports, "port"),
                    c.target_blocking
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "no range recommended: {}",
                    self.note.as_deref().unwrap_or("no data")
                );
            }
        }
        if let Some(peak) = &self.peak_port {
            let _ = writeln!(
                out,
                "peak port per replication: p50 {}, p99 {}, p99.9 {}, max {}",
                peak.p50, peak.p99, peak.p99_9, peak.max
            );
        }
        let _ = writeln!(
            out,
            "mean ports held (time-weighted): {:.3}",
            self.mean_ports_held
        );
        let n = &self.counts;
        let _ = writeln!(
            out,
            "sessions: {} ok, {} failed of {}; attempts: {} blocked by the client firewall, {} refused by the server, {} retries",
            n.ok, n.failed, n.sessions, n.blocked, n.refused, n.retried
        );
        if c.sessions_per_transfer > 1 {
            let _ = writeln!(
                out,
                "transfers of {} sessions: {} of {} had a session fail",
                c.sessions_per_transfer, n.transfers_failed, n.transfers
            );
        }
        if let Some(configured) = &self.configured {
            let _ = writeln!(out, "\nas configured:");
            let _ = writeln!(
                out,
                "  {:<12} {:<13} {:>10} {:>9}  {:<10} 95% CI",
                "clients", "allowed", "sessions", "failed", "blocking"
            );
            for g in &configured.groups {
                let allowed = g.allowed.map_or("any".to_string(), |r| r.to_string());
                let _ = writeln!(
                    out,
                    "  {:<12} {:<13} {:>10} {:>9}  {:<10} {}",
                    g.name,
                    allowed,
                    g.sessions,
                    g.failed,
                    probability(g.blocking),
                    interval(g.ci95)
                );
            }
        }
        let _ = writeln!(out, "\nblocking by range size (clients on client.allowed):");
        let _ = writeln!(
            out,
            "  {:>5}  {:<13} {:<11} {:<24} {:>12}",
            "ports", "range", "blocking", "95% CI", "sessions"
        );
        for p in &self.blocking {
            let mark = match &self.recommended {
                Some(r) if r.ports == p.ports => "  <- recommended",
                _ => "",
            };
            let _ = writeln!(
                out,
                "  {:>5}  {:<13} {:<11} {:<24} {:>12}{mark}",
                p.ports,
                p.range.to_string(),
                probability(p.probability),
                interval(p.ci95),
                p.sessions
            );
        }
        out
    }

    fn csv(&self) -> String {
        let mut out = String::from("ports,first,last,blocking,ci95_lo,ci95_hi,sessions,failed\n");
        for p in &self.blocking {
            let _ = writeln!(
                out,
                "{},{},{},{},{},{},{},{}",
                p.ports,
                p.range.first(),
                p.range.last(),
                p.probability,
                p.ci95[0],
                p.ci95[1],
                p.sessions,
                p.failed
            );
        }
        out
    }
}
