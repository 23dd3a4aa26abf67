//! The blast report: a per-session table, totals and the verdict.

use std::fmt::Write as _;

use super::Export;
use crate::blast::{BlastReport, SessionResult};

fn rate(bps: f64) -> String {
    if bps >= 1e9 {
        format!("{:.2} Gbit/s", bps / 1e9)
    } else if bps >= 1e6 {
        format!("{:.2} Mbit/s", bps / 1e6)
    } else {
        format!("{:.0} kbit/s", bps / 1e3)
    }
}

fn latency(s: &SessionResult) -> String {
    s.latency_us.map_or("-".to_string(), |l| {
        format!("{}/{}/{}", l.p50, l.p99, l.max)
    })
}

impl Export for BlastReport {
    fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "blast      {} backend, {} server: {}",
            self.backend, self.os, self.sharing
        );
        let _ = writeln!(
            out,
            "clients    {} over {} accounts, {} each, {}-byte datagrams, {} s, starting {}",
            self.clients,
            self.accounts,
            if self.rate_bps == 0 {
                "unpaced".to_string()
            } else {
                rate(self.rate_bps as f64)
            },
            self.datagram,
            self.duration_s,
            match self.start {
                crate::scenario::Start::Together => "together",
                crate::scenario::Start::Staggered => "staggered",
            }
        );
        let allowed = self
            .verdict
            .allowed
            .map_or("every UDP port".to_string(), |r| format!("UDP {r}"));
        let enforced = if self.kernel.is_some() {
            "nftables in the client namespace"
        } else {
            "modelled in process"
        };
        let _ = writeln!(
            out,
            "firewall   the client allows outbound {allowed} ({enforced})"
        );
        if let Some(kernel) = &self.kernel {
            let _ = writeln!(
                out,
                "hosts      client namespace {}, server namespace {} (veth, 198.18.0.0/15)",
                kernel.client_namespace, kernel.server_namespace
            );
            let m = &kernel.mechanisms;
            for (what, how) in [
                ("delay", &m.delay),
                ("loss", &m.loss),
                ("bandwidth", &m.bandwidth),
            ] {
                if let Some(how) = how {
                    let _ = writeln!(out, "wan        {what}: {how}");
                }
            }
            for (host, rules) in [
                ("client", &kernel.client_ruleset),
                ("server", &kernel.server_ruleset),
            ] {
                let _ = writeln!(out, "ruleset in force in the {host} namespace:");
                for line in rules.lines() {
                    let _ = writeln!(out, "  | {line}");
                }
            }
        }
        for note in &self.notes {
            let _ = writeln!(out, "note       {note}");
        }
        if self.interrupted {
            let _ = writeln!(
                out,
                "INTERRUPTED: sending stopped early (Ctrl-C); this report covers the run until then"
            );
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "  {:>5} {:>7} {:>6}  {:<11} {:>13} {:>9} {:>9} {:>6} {:>6} {:>8} {:>9}  latency p50/p99/max us",
            "id",
            "account",
            "port",
            "outcome",
            "goodput",
            "sent",
            "received",
            "lost",
            "retx",
            "filtered",
            "handshake"
        );
        for s in &self.sessions {
            let outcome = s.outcome.name();
            let _ = writeln!(
                out,
                "  {:>5} {:>7} {:>6}  {:<11} {:>13} {:>9} {:>9} {:>6} {:>6} {:>8} {:>9}  {}",
                s.id,
                s.account,
                s.port.map_or("-".to_string(), |p| p.to_string()),
                outcome,
                rate(s.goodput_bps),
                s.sent,
                s.received,
                s.lost,
                s.retransmitted,
                s.filtered,
                s.handshake_ms
                    .map_or("-".to_string(), |ms| format!("{ms:.1} ms")),
                latency(s)
            );
        }
        let mut errors: std::collections::BTreeMap<&str, usize> = Default::default();
        for error in self.sessions.iter().filter_map(|s| s.error.as_deref()) {
            *errors.entry(error).or_default() += 1;
        }
        for (error, count) in errors {
            let _ = writeln!(out, "  {count} x {error}");
        }
        let _ = writeln!(
            out,
            "\nreceived {} datagrams in {:.2} s ({:.0}/s), goodput {}",
            self.received_datagrams,
            self.elapsed_s,
            self.received_per_second,
            rate(self.goodput_bps)
        );
        let rejected = &self.rejected;
        let _ = writeln!(
            out,
            "rejected {} datagrams and control frames that were not a session's own \
             (server {}, clients {}); they changed no outcome",
            rejected.total, rejected.server, rejected.clients
        );
        if self.pcap_frames > 0 {
            let _ = writeln!(out, "captured {} frames", self.pcap_frames);
        }
        let _ = writeln!(out, "\nverdict: {}", self.verdict.summary);
        out
    }

    fn csv(&self) -> String {
        let mut out = String::from(
            "id,account,port,outcome,goodput_bps,sent,received,lost,retransmitted,filtered,handshake_ms,latency_p50_us,latency_p99_us,latency_max_us\n",
        );
        for s in &self.sessions {
            let opt = |v: Option<String>| v.unwrap_or_default();
            let _ = writeln!(
                out,
                "{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
                s.id,
                s.account,
                opt(s.port.map(|p| p.to_string())),
                s.outcome.name(),
                s.goodput_bps,
                s.sent,
                s.received,
                s.lost,
                s.retransmitted,
                s.filtered,
                opt(s.handshake_ms.map(|v| v.to_string())),
                opt(s.latency_us.map(|l| l.p50.to_string())),
                opt(s.latency_us.map(|l| l.p99.to_string())),
                opt(s.latency_us.map(|l| l.max.to_string())),
            );
        }
        out
    }
}
