//! `blast SCENARIO` replays the scenario's own load with real packets, and every session's
//! outcome and port is compared with what the model (`simulate`'s engine, replication 0)
//! predicts. Loopback runs move every port of a scenario up by a fixed offset (base, cap,
//! occupied ports, every client range: the model is the same), above the kernel's ephemeral
//! range (32768-60999), so that no other socket on the machine holds a port the emulator
//! needs; parallel tests use different offsets.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use udprange::blast::{self, Backend, BlastConfig, BlastReport, Outcome, Status};
use udprange::model::{Port, PortRange};
use udprange::scenario::Scenario;

use crate::common::run_blast as run;

/// `scenario` with every port moved up by `offset`.
fn shifted(path: &str, offset: Port) -> Scenario {
    let mut s = Scenario::load(Path::new(path)).unwrap();
    let up = |p: Port| p + offset;
    let range = |r: PortRange| PortRange::new(up(r.first()), up(r.last())).unwrap();
    s.server.base_port = up(s.server.base_port);
    if s.server.max_port != 65535 {
        s.server.max_port = up(s.server.max_port);
    }
    s.server.occupied = s.server.occupied.iter().map(|&p| up(p)).collect();
    s.client.allowed = s.client.allowed.map(range);
    for g in &mut s.client.groups {
        g.allowed = range(g.allowed);
    }
    s
}

/// The replay of `scenario`, at most `sessions` sessions, as fast as the run resolves, and
/// cut further until it takes a few seconds.
fn quick(scenario: &Scenario, sessions: u64, backend: Backend) -> BlastConfig {
    let mut config = BlastConfig {
        sessions: Some(sessions),
        backend,
        ..BlastConfig::from_scenario(scenario)
    };
    let finest = config.handshake_timeout.as_secs_f64() / config.resolution().as_secs_f64();
    config.time_scale = Some(finest.max(1.0));
    while blast::prepare(&config).unwrap().header.expected_s > 3.0 && config.sessions > Some(4) {
        config.sessions = config.sessions.map(|n| n / 2);
    }
    config
}

fn assert_agrees(name: &str, report: &BlastReport) {
    let listed: Vec<String> = report
        .disagreements
        .iter()
        .map(|d| format!("session {}: {}", d.id, d.cause))
        .collect();
    assert_eq!(
        report.agreement.disagree,
        0,
        "{name}: {} of {} disagree:\n{}",
        report.agreement.disagree,
        report.sessions.len(),
        listed.join("\n")
    );
    assert_eq!(report.counts, report.predicted_counts, "{name}");
    assert!(!report.sessions.is_empty(), "{name}");
}

/// The example: the trace has 7 accounts and 151 sessions; simulate says 2 fail on
/// 33001-33005 and recommends 33001-33006. So does blast, session by session.
#[test]
fn the_trace_replayed_fails_where_simulate_says_and_needs_what_it_recommends() {
    let scenario = shifted("scenarios/trace-replay.toml", 30_000);
    let config = BlastConfig {
        time_scale: Some(800.0),
        ..BlastConfig::from_scenario(&scenario)
    };
    let report = run(&config);
    assert_agrees("trace", &report);
    assert_eq!(report.counts.sessions, 151);
    assert_eq!((report.counts.failed, report.counts.blocked), (2, 2));
    assert_eq!(report.verdict.status, Status::Insufficient);
    assert_eq!(
        report.verdict.required,
        PortRange::new(63_001, 63_006).ok(),
        "{}",
        report.verdict.summary
    );
    let accounts: std::collections::BTreeSet<u32> =
        report.sessions.iter().map(|s| s.account).collect();
    assert_eq!(accounts.len(), 6, "every account of the trace takes part");
    // The same counts `simulate` prints for its one replication.
    let simulate = Command::new(env!("CARGO_BIN_EXE_udprange"))
        .args([
            "simulate",
            "scenarios/trace-replay.toml",
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&simulate.stdout).unwrap();
    let counts = &json["counts"];
    assert_eq!(counts["sessions"], report.counts.sessions, "{counts}");
    assert_eq!(counts["failed"], report.counts.failed, "{counts}");
    assert_eq!(counts["blocked"], report.counts.blocked, "{counts}");
    assert_eq!(
        json["udp_range"]["last"].as_u64().map(|p| p + 30_000),
        report.verdict.required.map(|r| u64::from(r.last())),
        "{json}"
    );
}

/// Every scenario in scenarios/, replayed in part: 100 % agreement with the model.
fn every_scenario(names: &[&str], offset: Port) {
    for name in names {
        let scenario = shifted(&format!("scenarios/{name}.toml"), offset);
        let config = quick(&scenario, 40, Backend::Loopback);
        let started = Instant::now();
        let report = run(&config);
        assert_agrees(name, &report);
        assert!(
            report
                .sessions
                .iter()
                .all(|s| s.outcome != Outcome::Ok || s.received > 0),
            "{name}"
        );
        eprintln!(
            "{name}: {} sessions agree ({:.1} s, {}x)",
            report.sessions.len(),
            started.elapsed().as_secs_f64(),
            report.header.time_scale
        );
    }
}

#[test]
fn closed_loads_and_accounts_agree() {
    every_scenario(
        &[
            "seed-windows-10",
            "seed-windows-12-clients",
            "macos-accounts",
            "linux-shared",
            "occupied-ports",
        ],
        30_200,
    );
}

#[test]
fn open_loads_retries_groups_and_multi_session_transfers_agree() {
    every_scenario(
        &[
            "retries",
            "multi-session-windows",
            "partners-narrow-range",
            "server-cap",
            "freebsd-accounts-poisson",
            "linux-no-reuse-poisson",
            "busy-hour-enterprise",
        ],
        30_400,
    );
}

/// Client groups sit behind their own ranges: partners on 5 ports fail where the model says,
/// while the default range is not blamed for them.
#[test]
fn a_group_behind_its_own_range_fails_on_its_own() {
    let scenario = shifted("scenarios/partners-narrow-range.toml", 30_600);
    let mut config = quick(&scenario, 400, Backend::Loopback);
    config.allowed = PortRange::new(30_600 + 33_001, 30_600 + 33_003).ok();
    let report = run(&config);
    assert_agrees("partners", &report);
    let blocked_groups: std::collections::BTreeSet<&str> = report
        .sessions
        .iter()
        .filter(|s| s.outcome == Outcome::Blocked)
        .map(|s| s.group.as_str())
        .collect();
    assert!(blocked_groups.contains("default"), "{blocked_groups:?}");
}

/// The header goes out before the first packet: it is on stdout while the run goes on.
#[test]
fn the_header_prints_before_the_run() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_udprange"))
        .args([
            "blast",
            "--clients",
            "2",
            "--duration",
            "30s",
            "--base-port",
            "63801",
            "--allowed",
            "63801-63802",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut header = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let last = line.starts_with("firewall");
        header.push(line);
        if last {
            break;
        }
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run had ended: {header:?}"
    );
    assert!(
        header[0].starts_with("blast      loopback backend"),
        "{header:?}"
    );
    assert!(
        header
            .iter()
            .any(|l| l.starts_with("time       30.0 s of the model at 1x")),
        "{header:?}"
    );
    // SAFETY: kill only signals the child we spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
}

/// `--interval` adds interval reports: text lines while the run goes, and `intervals` in
/// JSON with rates that add up to what was sent.
#[test]
fn interval_reports() {
    let output = Command::new(env!("CARGO_BIN_EXE_udprange"))
        .args([
            "blast",
            "--clients",
            "3",
            "--duration",
            "2s",
            "--interval",
            "0.5s",
            "--rate",
            "4Mbps",
            "--base-port",
            "63901",
            "--allowed",
            "63901-63903",
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let intervals = json["intervals"].as_array().unwrap();
    assert!((3..=6).contains(&intervals.len()), "{intervals:?}");
    let mut last = 0.0;
    for i in intervals {
        let t = i["t"].as_f64().unwrap();
        assert!(t > last, "{intervals:?}");
        last = t;
    }
    // 3 sessions at 4 Mbit/s of 1492-byte datagrams: about 1000 datagrams/s in full flow.
    let busy = &intervals[1];
    let rate = busy["datagrams_per_second"].as_f64().unwrap();
    assert!((800.0..1200.0).contains(&rate), "{busy}");
    // Goodput counts what acknowledgements confirmed, which trail the data a little.
    assert!(busy["goodput_bps"].as_f64().unwrap() > 6e6, "{busy}");
    assert_eq!(busy["active"], 3, "{busy}");

    let text = Command::new(env!("CARGO_BIN_EXE_udprange"))
        .args([
            "blast",
            "--clients",
            "2",
            "--duration",
            "1s",
            "--interval",
            "0.5s",
            "--base-port",
            "63911",
            "--allowed",
            "63911-63912",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&text.stdout);
    let lines = stdout
        .lines()
        .filter(|l| l.starts_with('[') && l.contains("datagrams/s"))
        .count();
    assert!(lines >= 1, "{stdout}");
}

/// A time scale finer than the run can resolve is refused before the run, naming the bound.
#[test]
fn a_time_scale_beyond_the_resolution_is_refused() {
    let output = Command::new(env!("CARGO_BIN_EXE_udprange"))
        .args([
            "blast",
            "scenarios/seed-windows-12-clients.toml",
            "--time-scale",
            "1000",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(output.stdout.is_empty());
    // handshake_timeout 5 s over 25 ms: 200 at most.
    assert!(
        stderr.contains("--time-scale 1000:") && stderr.contains("at most 200.0"),
        "{stderr}"
    );
    let output = Command::new(env!("CARGO_BIN_EXE_udprange"))
        .args(["blast", "--clients", "2", "--sessions", "5"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
}

/// On the kernel path too: a trace, a closed load and client groups (each sending from an
/// address of its own through rules of its own) agree with the model session by session,
/// through the real nftables ruleset.
#[test]
fn netns_replays_agree() {
    let Some(_namespaces) = crate::blast_netns::kernel_path() else {
        return;
    };
    for name in [
        "trace-replay",
        "seed-windows-12-clients",
        "partners-narrow-range",
    ] {
        let scenario = Scenario::load(Path::new(&format!("scenarios/{name}.toml"))).unwrap();
        let config = quick(&scenario, 40, Backend::Netns(Default::default()));
        let report = run(&config);
        assert_agrees(name, &report);
        let kernel = report.kernel.as_ref().unwrap();
        if name == "partners-narrow-range" {
            assert!(
                kernel.client_ruleset.contains(
                    "ip saddr 198.18.0.11 ip daddr 198.19.0.1 udp dport 33001-33005 accept"
                ),
                "{}",
                kernel.client_ruleset
            );
            assert!(
                report
                    .sessions
                    .iter()
                    .any(|s| s.group == "partners" && s.outcome == Outcome::Blocked),
                "the partners' own range blocks some of them"
            );
        }
    }
}
