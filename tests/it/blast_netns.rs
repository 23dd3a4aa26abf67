//! The real kernel path: network namespaces, a veth pair, nftables and tc. These tests need
//! root, `ip`, `nft` and `tc`; without them they say so loudly and skip, and under CI
//! (`CI=true`) that skip is a failure, because CI runs as root and installs the tools.
//! Every run has namespaces of its own, so the tests run in parallel on the same ports.

use std::path::Path;
use std::process::Command;
use std::sync::MutexGuard;
use std::time::Duration;

use udprange::blast::netns::{self, TestHosts, WanPath};
use udprange::blast::{Backend, BlastConfig, BlastReport, Outcome};
use udprange::scenario::{SEED_EXAMPLE, Scenario};
use udprange::sim::{Context, Options, simulate, summarize};

/// The kernel path, to this test alone among those that make namespaces, if it can run here;
/// otherwise explains and skips (fails under CI).
pub fn kernel_path() -> Option<MutexGuard<'static, ()>> {
    match netns::check_requirements() {
        Ok(()) => Some(crate::common::namespaces()),
        Err(e) => {
            crate::common::skip(&e.to_string());
            None
        }
    }
}

use crate::common::run_blast as run;

/// The seed example with two clients too many, short.
fn seed_with_twelve(backend: Backend) -> BlastConfig {
    BlastConfig {
        clients: 12,
        accounts: 12,
        duration: Duration::from_millis(1500),
        handshake_timeout: Duration::from_secs(1),
        backend,
        replay: None,
        ..BlastConfig::seed_example()
    }
}

/// Which ports passed and which were blocked (session ids may meet ports in another order).
fn shape(report: &BlastReport) -> (Vec<u16>, Vec<u16>) {
    let ports = |outcome| {
        let mut p: Vec<u16> = report
            .sessions
            .iter()
            .filter(|s| s.outcome == outcome)
            .filter_map(|s| s.port)
            .collect();
        p.sort();
        p
    };
    (ports(Outcome::Ok), ports(Outcome::Blocked))
}

/// The run's namespaces (and with them its veth pair) are gone.
fn assert_gone(report: &BlastReport) {
    let kernel = report
        .kernel
        .as_ref()
        .expect("netns reports its namespaces");
    for name in [
        &kernel.client_namespace,
        &kernel.router_namespace,
        &kernel.server_namespace,
    ] {
        assert!(!netns::exists(name), "{name} was left behind");
    }
}

/// The real ruleset lets exactly the sessions through that the model does, on the ports
/// `simulate` predicts for the closed case.
#[test]
fn netns_agrees_with_loopback_and_simulate() {
    let Some(_namespaces) = kernel_path() else {
        return;
    };
    let loopback = run(&seed_with_twelve(Backend::Loopback));
    // Datagrams larger than the path's MTU are fragmented: the verdict holds, the report says.
    let kernel = run(&BlastConfig {
        datagram: 1600,
        ..seed_with_twelve(Backend::Netns(WanPath::default()))
    });
    assert_eq!(shape(&loopback), shape(&kernel), "{kernel:#?}");
    assert_eq!(
        shape(&kernel),
        ((33001..=33010).collect(), vec![33011, 33012])
    );
    assert_eq!(loopback.verdict.summary, kernel.verdict.summary);
    for s in kernel
        .sessions
        .iter()
        .filter(|s| s.outcome == Outcome::Blocked)
    {
        // nftables dropped them on the output hook: the kernel's counters say how many.
        assert!(s.filtered > 0 && s.received == 0, "{s:?}");
    }
    // (The default 1492-byte datagrams fit: tests/it/transfer.rs.)
    assert!(
        kernel
            .notes
            .iter()
            .any(|n| n.starts_with("1600-byte datagrams are more than this path's 1500-byte MTU")),
        "{:?}",
        kernel.notes
    );
    let drops = kernel.kernel.as_ref().unwrap().dropped_packets;
    let filtered: u64 = kernel.sessions.iter().map(|s| s.filtered).sum();
    assert_eq!(
        (drops.client, drops.router, drops.server),
        (filtered, 0, 0),
        "every drop is the client ruleset's, and is some session's"
    );
    let kernel_path = kernel
        .kernel
        .as_ref()
        .expect("netns reports its kernel path");
    assert!(
        kernel_path
            .client_ruleset
            .contains("udp dport != { 33001-33010 } drop")
    );

    // The same closed workload, simulated: 12 transfers always running.
    let text = SEED_EXAMPLE.replace("concurrent = 10", "concurrent = 12");
    let scenario = Scenario::parse(&text, Path::new("seed-12.toml")).unwrap();
    let summary = summarize(
        Context::of(&scenario),
        &simulate(&scenario, Options::default()).unwrap(),
    );
    let predicted = summary.recommended.expect("a recommendation");
    let required = kernel.verdict.required.expect("ports were handed out");
    assert_eq!(
        (predicted.first, predicted.last),
        (required.first(), required.last())
    );
    assert_gone(&kernel);
}

/// Delay, jitter, loss and bandwidth live on the router and the report says how; loss brings
/// retransmissions, delay latency and a handshake of two round trips.
#[test]
fn wan_path_is_exercised_for_real() {
    let Some(_namespaces) = kernel_path() else {
        return;
    };
    let path = WanPath {
        delay: Some(Duration::from_millis(20)),
        jitter: Some(Duration::from_millis(2)),
        loss: Some(0.01),
        bandwidth_bps: Some(200_000_000),
    };
    let config = BlastConfig {
        clients: 4,
        accounts: 4,
        duration: Duration::from_secs(2),
        handshake_timeout: Duration::from_secs(2),
        backend: Backend::Netns(path),
        replay: None,
        ..BlastConfig::seed_example()
    };
    let report = run(&config);
    assert!(report.verdict.sufficient, "{}", report.verdict.summary);
    let mechanisms = &report.kernel.as_ref().unwrap().mechanisms;
    assert!(
        mechanisms
            .loss
            .as_deref()
            .unwrap()
            .starts_with("nftables numgen random drop")
    );
    assert!(
        mechanisms
            .bandwidth
            .as_deref()
            .unwrap()
            .starts_with("tbf qdisc")
    );
    let delay = mechanisms.delay.as_deref().unwrap();
    assert!(
        delay.starts_with("NFQUEUE delay line on the router"),
        "{delay}"
    );
    let line = report.kernel.as_ref().unwrap().delay_line.clone().unwrap();
    assert!(line.ran_to_end && line.packets > 1000, "{line:?}");
    assert_eq!((line.queue_dropped, line.user_dropped), (0, 0), "{line:?}");
    let retransmitted: u64 = report.sessions.iter().map(|s| s.retransmitted).sum();
    assert!(retransmitted > 0, "1 % loss should cause retransmissions");
    for s in &report.sessions {
        let latency = s.latency_us.expect("latency measured");
        assert!(latency.p50 >= 18_000 && latency.p50 < 60_000, "{s:?}");
        assert!(
            s.handshake_ms.unwrap() >= 72.0,
            "two round trips are at least 4 x 18 ms: {s:?}"
        );
    }
    assert_gone(&report);
}

/// Namespaces and veth go when a run fails midway (here: a ruleset the kernel refuses) and
/// when it panics; a leftover of a crashed run is removed by name with a message.
#[test]
fn nothing_is_left_behind() {
    let Some(_namespaces) = kernel_path() else {
        return;
    };
    let mut hosts = TestHosts::create().unwrap();
    let names = [
        hosts.client_ns.clone(),
        hosts.router_ns.clone(),
        hosts.server_ns.clone(),
    ];
    assert!(names.iter().all(|n| netns::exists(n)));
    // A delay line runs on the router when the run fails.
    let delayed = WanPath {
        delay: Some(Duration::from_millis(5)),
        ..WanPath::default()
    };
    hosts.impair(&delayed, 4096).unwrap();
    let failed = hosts.load_rules(
        &hosts.client_ns,
        "table inet broken { chain nope { bogus } }",
    );
    assert!(failed.is_err());
    drop(hosts);
    assert!(names.iter().all(|n| !netns::exists(n)), "{names:?}");

    let panicked = std::panic::catch_unwind(|| {
        let hosts = TestHosts::create().unwrap();
        let name = hosts.client_ns.clone();
        panic!("midway: {name}");
    });
    let message = panicked.unwrap_err();
    let name = message
        .downcast_ref::<String>()
        .and_then(|m| m.strip_prefix("midway: "))
        .unwrap()
        .to_string();
    assert!(!netns::exists(&name), "{name} survived a panic");

    // A crashed run (a pid that cannot exist) left a namespace behind.
    let stale = format!("{}4194999-0-client", netns::PREFIX);
    assert!(
        Command::new("ip")
            .args(["netns", "add", &stale])
            .status()
            .unwrap()
            .success()
    );
    let removed = netns::remove_leftovers();
    assert!(removed.iter().any(|m| m.contains(&stale)), "{removed:?}");
    assert!(!netns::exists(&stale), "{stale} survived: {removed:?}");
}

/// Without the tools, one clear line says what is missing.
#[test]
fn missing_tools_are_named() {
    let output = Command::new(env!("CARGO_BIN_EXE_udprange"))
        .args(["blast", "--backend", "netns"])
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("`ip`") && stderr.contains("`nft`"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());
}

/// SIGINT 30 ms into a netns run whose sessions the ruleset partly blocks, with a 60 s
/// handshake timeout: the run ends within 2 s with the report so far and exit 130, nobody
/// is called blocked for a timeout nobody waited out, and nothing is left behind.
#[test]
fn an_early_interrupt_ends_within_two_seconds() {
    let Some(_namespaces) = kernel_path() else {
        return;
    };
    let (output, took) = crate::common::interrupted(
        &[
            "blast",
            "--backend",
            "netns",
            "--clients",
            "8",
            "--allowed",
            "33001-33004",
            "--handshake-timeout",
            "60s",
            "--format",
            "json",
        ],
        Duration::from_millis(30),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(took < Duration::from_secs(2), "took {took:?} after SIGINT");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("no report ({e}): {stderr}"));
    assert_eq!(report["interrupted"], true);
    let sessions = report["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 8, "{report:#}");
    assert!(
        sessions.iter().all(|s| s["outcome"] != "blocked"),
        "{report:#}"
    );
    assert_ne!(report["verdict"]["status"], "insufficient");
    for name in [
        &report["kernel"]["client_namespace"],
        &report["kernel"]["server_namespace"],
    ] {
        let name = name.as_str().unwrap();
        assert!(!netns::exists(name), "{name} was left behind");
    }
}
