//! The blast report: a per-session table, totals and the verdict.

use std::fmt::Write as _;

use super::Export;
use crate::blast::{BlastReport, Header, SessionResult};
use crate::model::PortRange;

/// A bit rate for people.
pub fn rate(bps: f64) -> String {
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

/// What the run is about to do: printed before the first packet.
pub fn header_text(h: &Header) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "blast      {} backend, {} server: {}",
        h.backend, h.os, h.sharing_description
    );
    let _ = writeln!(out, "load       {}", h.load_description);
    let _ = writeln!(
        out,
        "sessions   {} in {} transfers, {} each, {}-byte datagrams",
        h.planned_sessions,
        h.transfers,
        match (h.rate_bps, h.policy) {
            (0, _) => "unpaced".to_string(),
            (bps, crate::blast::rate::Policy::Fixed) => rate(bps as f64),
            (bps, policy) => format!(
                "policy {}, at most {} and at least {}",
                policy.name(),
                rate(bps as f64),
                rate(h.min_rate_bps.max(bps / 100) as f64)
            ),
        },
        h.datagram
    );
    if let Some(capped) = &h.capped {
        let _ = writeln!(out, "replaying  {capped}");
    }
    let _ = writeln!(
        out,
        "time       {:.1} s of the model at {}x: about {:.1} s (resolution {:.0} ms)",
        h.model_s,
        crate::units::trim(h.time_scale),
        h.expected_s,
        h.resolution_ms
    );
    let allowed = h
        .allowed
        .map_or("every UDP port".to_string(), |r| format!("UDP {r}"));
    let enforced = match h.backend {
        "netns" => "nftables in the client namespace",
        "remote" => "as the model assumes; the real path to the server decides",
        _ => "modelled in process",
    };
    match &h.ruleset {
        Some(ruleset) => {
            let _ = writeln!(
                out,
                "firewall   {ruleset}: the range under test is whatever it passes"
            );
        }
        None => {
            let _ = writeln!(
                out,
                "firewall   the client allows outbound {allowed} ({enforced})"
            );
        }
    }
    for (i, g) in h.groups.iter().enumerate() {
        let how = if h.backend == "netns" {
            format!("nftables, from {}", crate::blast::netns::group_addr(i + 1))
        } else {
            "modelled in process".to_string()
        };
        let _ = writeln!(
            out,
            "group      {} allows outbound UDP {} ({how})",
            g.name, g.allowed
        );
    }
    out
}

/// Sized transfers and delay-based rate control, summed over the sessions: completion,
/// goodput, redundant data, retransmissions, queuing delay.
fn transfer_lines(out: &mut String, r: &BlastReport) {
    let sized: Vec<&SessionResult> = r.sessions.iter().filter(|s| s.complete.is_some()).collect();
    if !sized.is_empty() {
        let complete = sized.iter().filter(|s| s.complete == Some(true)).count();
        let mut goodput: Vec<f64> = sized.iter().map(|s| s.goodput_bps).collect();
        goodput.sort_by(f64::total_cmp);
        let received: u64 = sized.iter().map(|s| s.received).sum();
        let duplicates: u64 = sized.iter().map(|s| s.duplicates).sum();
        let sent: u64 = sized.iter().map(|s| s.sent + s.retransmitted).sum();
        let again: u64 = sized.iter().map(|s| s.retransmitted).sum();
        let share = |part: u64, whole: u64| 100.0 * part as f64 / whole.max(1) as f64;
        // The tail: from the moment every datagram had left once to completion.
        let tail = sized
            .iter()
            .filter_map(|s| Some(s.completion_s? - s.sent_once_s?))
            .fold(None, |worst: Option<f64>, t| {
                Some(worst.map_or(t, |w| w.max(t)))
            });
        let _ = writeln!(
            out,
            "transfers  {complete} of {} complete; goodput {} to {} (median {}); redundant \
             data {:.2} % of received; {:.1} % of what was sent was sent again{}",
            sized.len(),
            rate(goodput[0]),
            rate(goodput[goodput.len() - 1]),
            rate(goodput[goodput.len() / 2]),
            share(duplicates, received),
            share(again, sent),
            tail.map_or(String::new(), |t| format!(
                "; the last losses took up to {t:.2} s after every datagram left once"
            ))
        );
    }
    let queuing: Vec<u64> = r
        .sessions
        .iter()
        .filter_map(|s| s.queuing_delay_us.map(|q| q.p99))
        .collect();
    if let Some(worst) = queuing.iter().max() {
        let _ = writeln!(
            out,
            "queuing    the rate controllers' queuing-delay estimates: p99 up to {:.1} ms",
            *worst as f64 / 1000.0
        );
    }
}

/// Everything after the header: the run's notes, the sessions, agreement and the verdict.
pub fn body_text(r: &BlastReport) -> String {
    let mut out = String::new();
    if let Some(kernel) = &r.kernel {
        let _ = writeln!(
            out,
            "hosts      client {} (198.18.0.2) — router {} — server {} (198.19.0.1), veth pairs",
            kernel.client_namespace, kernel.router_namespace, kernel.server_namespace
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
        if let Some(line) = &kernel.delay_line {
            let _ = writeln!(out, "delay line {}", line.describe());
        }
        let d = kernel.dropped_packets;
        let _ = writeln!(
            out,
            "dropped    by the firewalls, kernel counters: client {}, router {}, server {}",
            d.client, d.router, d.server
        );
        if let Some(user) = &kernel.ruleset {
            let dropped = if user.dropped.is_empty() {
                "no UDP port".to_string()
            } else {
                PortRange::list(user.dropped.iter().flat_map(PortRange::ports))
            };
            let _ = writeln!(
                out,
                "ruleset    {} ({}) at the {}: dropped UDP to {dropped} ({} datagrams), {} \
                 control packets",
                user.file,
                user.format.name(),
                user.at,
                user.dropped_datagrams,
                user.control_dropped
            );
        }
        for (host, rules) in [
            ("client", &kernel.client_ruleset),
            ("server", &kernel.server_ruleset),
        ] {
            if rules.is_empty() {
                continue;
            }
            let _ = writeln!(out, "ruleset in force in the {host} namespace:");
            for line in rules.lines() {
                let _ = writeln!(out, "  | {line}");
            }
        }
    }
    for note in &r.notes {
        let _ = writeln!(out, "note       {note}");
    }
    if r.interrupted {
        let _ = writeln!(
            out,
            "INTERRUPTED: sending stopped early (Ctrl-C); this report covers the run until then"
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "  {:>5} {:>8} {:>7} {:>7} {:>6}  {:<11} {:<17} {:>13} {:>9} {:>9} {:>6} {:>6} {:>9}  latency p50/p99/max us",
        "id",
        "transfer",
        "attempt",
        "account",
        "port",
        "outcome",
        "predicted",
        "goodput",
        "sent",
        "received",
        "lost",
        "retx",
        "handshake"
    );
    for s in &r.sessions {
        let predicted = format!(
            "{} {}{}",
            s.predicted.outcome.name(),
            s.predicted.port.map_or("-".to_string(), |p| p.to_string()),
            if s.agree { "" } else { " (!)" }
        );
        let _ = writeln!(
            out,
            "  {:>5} {:>8} {:>7} {:>7} {:>6}  {:<11} {:<17} {:>13} {:>9} {:>9} {:>6} {:>6} {:>9}  {}",
            s.id,
            s.transfer,
            s.attempt,
            s.account,
            s.port.map_or("-".to_string(), |p| p.to_string()),
            s.outcome.name(),
            predicted,
            rate(s.goodput_bps),
            s.sent,
            s.received,
            s.lost,
            s.retransmitted,
            s.handshake_ms
                .map_or("-".to_string(), |ms| format!("{ms:.1} ms")),
            latency(s)
        );
    }
    let mut errors: std::collections::BTreeMap<&str, usize> = Default::default();
    for error in r.sessions.iter().filter_map(|s| s.error.as_deref()) {
        *errors.entry(error).or_default() += 1;
    }
    for (error, count) in errors {
        let _ = writeln!(out, "  {count} x {error}");
    }
    let c = &r.counts;
    let p = &r.predicted_counts;
    let _ = writeln!(
        out,
        "\ncounts     {} sessions: {} ok, {} failed ({} blocked, {} refused attempts, {} retried); \
         {} transfers, {} failed",
        c.sessions,
        c.ok,
        c.failed,
        c.blocked,
        c.refused,
        c.retried,
        c.transfers,
        c.transfers_failed
    );
    let _ = writeln!(
        out,
        "predicted  {} sessions: {} ok, {} failed ({} blocked, {} refused attempts, {} retried); \
         {} transfers, {} failed",
        p.sessions,
        p.ok,
        p.failed,
        p.blocked,
        p.refused,
        p.retried,
        p.transfers,
        p.transfers_failed
    );
    let total = r.agreement.agree + r.agreement.disagree;
    let _ = writeln!(
        out,
        "agreement  {} of {} sessions as the model predicts ({:.1} %)",
        r.agreement.agree,
        total,
        if total == 0 {
            100.0
        } else {
            f64::from(r.agreement.agree) * 100.0 / f64::from(total)
        }
    );
    for d in &r.disagreements {
        let _ = writeln!(
            out,
            "  session {}: predicted {} {}, got {} {}: {}",
            d.id,
            d.predicted.outcome.name(),
            d.predicted.port.map_or("-".to_string(), |p| p.to_string()),
            d.outcome.name(),
            d.port.map_or("-".to_string(), |p| p.to_string()),
            d.cause
        );
    }
    for i in &r.intervals {
        let _ = writeln!(
            out,
            "interval   {:7.2} s  {:9.0} datagrams/s  goodput {:>13}  {} active, {} ok, {} failed",
            i.t,
            i.datagrams_per_second,
            rate(i.goodput_bps),
            i.active,
            i.ok,
            i.failed
        );
    }
    let _ = writeln!(
        out,
        "\nreceived {} datagrams in {:.2} s ({:.0}/s), goodput {}",
        r.received_datagrams,
        r.elapsed_s,
        r.received_per_second,
        rate(r.goodput_bps)
    );
    transfer_lines(&mut out, r);
    let rejected = &r.rejected;
    let _ = writeln!(
        out,
        "rejected {} datagrams and control frames that were not a session's own \
         (server {}, clients {}); they changed no outcome",
        rejected.total, rejected.server, rejected.clients
    );
    if r.pcap_frames > 0 {
        let _ = writeln!(out, "captured {} frames", r.pcap_frames);
    }
    let _ = writeln!(out, "\nverdict: {}", r.verdict.summary);
    out
}

impl Export for BlastReport {
    fn text(&self) -> String {
        header_text(&self.header) + &body_text(self)
    }

    fn csv(&self) -> String {
        let mut out = String::from(
            "id,transfer,attempt,account,group,start_s,holding_s,port,outcome,predicted,predicted_port,agree,goodput_bps,sent,received,lost,retransmitted,filtered,duplicates,handshake_ms,latency_p50_us,latency_p99_us,latency_max_us\n",
        );
        for s in &self.sessions {
            let opt = |v: Option<String>| v.unwrap_or_default();
            let _ = writeln!(
                out,
                "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
                s.id,
                s.transfer,
                s.attempt,
                s.account,
                s.group,
                s.start_s,
                s.holding_s,
                opt(s.port.map(|p| p.to_string())),
                s.outcome.name(),
                s.predicted.outcome.name(),
                opt(s.predicted.port.map(|p| p.to_string())),
                s.agree,
                s.goodput_bps,
                s.sent,
                s.received,
                s.lost,
                s.retransmitted,
                s.filtered,
                s.duplicates,
                opt(s.handshake_ms.map(|v| v.to_string())),
                opt(s.latency_us.map(|l| l.p50.to_string())),
                opt(s.latency_us.map(|l| l.p99.to_string())),
                opt(s.latency_us.map(|l| l.max.to_string())),
            );
        }
        out
    }
}
