//! `udprange blast` as a user runs it: the embedded default, the seed example with two clients
//! too many, a pcap that tshark reads, and bad input. Ports 61601+ keep clear of other tests.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

fn udprange(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_udprange"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("udprange-blast-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// tshark if it is installed; otherwise says so loudly and skips (fails under CI).
fn tshark() -> Option<&'static str> {
    if Command::new("tshark").arg("--version").output().is_ok() {
        return Some("tshark");
    }
    crate::common::skip("`tshark` is not installed").then_some("tshark")
}

#[test]
fn no_arguments_runs_the_seed_example() {
    let output = udprange(&["blast", "--duration", "1s"]);
    let stdout = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}{}",
        text(&output.stderr)
    );
    assert!(
        stdout.contains("verdict: range 33001-33010 is sufficient"),
        "{stdout}"
    );
    // The outcome column of the session table (the predicted column follows it).
    let ok = stdout
        .lines()
        .filter(|l| l.split_whitespace().nth(5) == Some("ok"))
        .count();
    assert_eq!(ok, 10, "{stdout}");
}

#[test]
fn two_clients_too_many_fail_with_error_15_and_tshark_sees_the_traffic() {
    let dir = scratch("pcap");
    let pcap = dir.join("seed.pcap");
    let output = udprange(&[
        "blast",
        "--clients",
        "12",
        "--base-port",
        "61601",
        "--allowed",
        "61601-61610",
        "--duration",
        "1s",
        "--handshake-timeout",
        "1s",
        "--pcap",
        pcap.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["verdict"]["sufficient"], false);
    assert_eq!(report["verdict"]["udp_range"]["first"], 61601);
    assert_eq!(report["verdict"]["udp_range"]["last"], 61612);
    let sessions = report["sessions"].as_array().unwrap();
    let mut sent_to: BTreeMap<u64, u64> = BTreeMap::new();
    for s in sessions {
        let port = s["port"].as_u64().unwrap();
        let ok = port <= 61610;
        assert_eq!(s["outcome"], if ok { "ok" } else { "blocked" }, "{s}");
        for key in ["id", "account", "goodput_bps", "lost", "retransmitted"] {
            assert!(!s[key].is_null(), "{key} in {s}");
        }
        if ok {
            assert!(
                s["latency_us"]["p99"].as_u64().unwrap()
                    >= s["latency_us"]["p50"].as_u64().unwrap()
            );
            sent_to.insert(
                port,
                s["sent"].as_u64().unwrap() + s["retransmitted"].as_u64().unwrap(),
            );
        }
    }
    let frames = report["pcap_frames"].as_u64().unwrap();
    assert!(frames > 0);

    let Some(tshark) = tshark() else { return };
    let fields = Command::new(tshark)
        .args([
            "-r",
            pcap.to_str().unwrap(),
            "-o",
            "udp.check_checksum:TRUE",
            "-o",
            "ip.check_checksum:TRUE",
        ])
        .args([
            "-T",
            "fields",
            "-e",
            "udp.dstport",
            "-e",
            "udp.checksum.status",
            "-e",
            "ip.checksum.status",
        ])
        .output()
        .expect("tshark runs");
    assert!(fields.status.success(), "{}", text(&fields.stderr));
    let lines = text(&fields.stdout);
    let mut seen: BTreeMap<u64, u64> = BTreeMap::new();
    let mut total = 0;
    for line in lines.lines() {
        let columns: Vec<&str> = line.split('\t').collect();
        assert_eq!(columns.len(), 3, "{line}");
        // 1 = "Good" in Wireshark's checksum status (0 bad, 2 unverified).
        assert_eq!(&columns[1..], &["1", "1"], "bad checksum: {line}");
        *seen.entry(columns[0].parse().unwrap()).or_default() += 1;
        total += 1;
    }
    assert_eq!(total, frames, "tshark read every frame");
    for (port, datagrams) in &sent_to {
        // DATA (new and retransmitted) plus one or a few DONEs.
        let got = seen.get(port).copied().unwrap_or(0);
        assert!(
            got > *datagrams && got <= datagrams + 50,
            "port {port}: {got} frames for {datagrams} datagrams"
        );
    }
    assert!(
        !seen.contains_key(&61611) && !seen.contains_key(&61612),
        "the firewall let blocked traffic out: {seen:?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_input_is_exit_2_and_writes_nothing() {
    let dir = scratch("bad");
    let pcap = dir.join("x.pcap");
    let pcap = pcap.to_str().unwrap();
    for (args, want) in [
        (vec!["blast", "--clients", "0", "--pcap", pcap], "--clients"),
        (vec!["blast", "--rate", "fast", "--pcap", pcap], "--rate"),
        (
            vec!["blast", "--datagram", "10B", "--pcap", pcap],
            "--datagram",
        ),
        (
            vec!["blast", "--duration", "2h", "--pcap", pcap],
            "--duration",
        ),
        (vec!["blast", "--start", "later", "--pcap", pcap], "--start"),
        (
            vec!["blast", "no-such.toml", "--pcap", pcap],
            "no-such.toml: cannot read",
        ),
    ] {
        let output = udprange(&args);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
        assert!(output.stdout.is_empty());
    }
    assert!(std::fs::read_dir(&dir).unwrap().next().is_none());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Ctrl-C stops the senders, drains and still prints the report of what happened: every
/// session had proven its port, so the verdict stands, and the exit code says interrupted.
#[test]
fn interrupt_drains_and_reports() {
    let (output, took) = crate::common::interrupted(
        &[
            "blast",
            "--duration",
            "60s",
            "--base-port",
            "61701",
            "--allowed",
            "61701-61710",
        ],
        Duration::from_millis(1500),
    );
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("INTERRUPTED"),
        "{stdout}{}",
        text(&output.stderr)
    );
    assert!(
        stdout.contains("verdict: range 61701-61710 is sufficient"),
        "{stdout}"
    );
    assert_eq!(output.status.code(), Some(130));
    assert!(took < Duration::from_secs(2), "took {took:?} after SIGINT");
}

/// Ctrl-C right after the start, with a long handshake timeout and sessions the firewall
/// blocks: nobody waits out the timeout, and nobody is called blocked for it.
#[test]
fn an_early_interrupt_is_not_a_blocked_range() {
    let (output, took) = crate::common::interrupted(
        &[
            "blast",
            "--clients",
            "8",
            "--handshake-timeout",
            "60s",
            "--base-port",
            "61901",
            "--allowed",
            "61901-61904",
            "--format",
            "json",
        ],
        Duration::from_millis(30),
    );
    assert_eq!(output.status.code(), Some(130), "{}", text(&output.stderr));
    assert!(took < Duration::from_secs(2), "took {took:?} after SIGINT");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["interrupted"], true);
    let outcomes: Vec<&str> = report["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes.len(), 8);
    assert!(!outcomes.contains(&"blocked"), "{outcomes:?}");
    assert!(outcomes.contains(&"interrupted"), "{outcomes:?}");
    assert_ne!(report["verdict"]["status"], "insufficient");
}

/// Scenario keys meet the limits flags do (a handshake timeout of 1e20s once panicked, 1e9s
/// ran for decades), and an output that cannot be written stops the run before it starts:
/// exit 2, one line naming the key or flag, nothing on stdout, nothing written.
#[test]
fn absurd_blast_input_is_one_error_before_the_run() {
    let dir = scratch("absurd");
    let seed = udprange::scenario::SEED_EXAMPLE;
    let mut cases = Vec::new();
    for value in ["1e20s", "1e19s", "1e9s", "601s"] {
        let file = format!("handshake-{value}.toml");
        let contents = seed.replace(
            "handshake_timeout = \"20s\"",
            &format!("handshake_timeout = \"{value}\""),
        );
        std::fs::write(dir.join(&file), contents).unwrap();
        cases.push((
            vec!["blast".to_string(), file.clone()],
            format!("{file}:21:21: workload.handshake_timeout: must be at most 600s"),
        ));
    }
    std::fs::write(
        dir.join("rate.toml"),
        seed.replace("rate = \"10Mbps\"", "rate = \"1e3Gbps\""),
    )
    .unwrap();
    cases.push((
        vec!["blast".into(), "rate.toml".into()],
        "rate.toml:36:8: traffic.rate: must be at most 100Gbps".into(),
    ));
    let pcap = dir.join("x.pcap").to_str().unwrap().to_string();
    let missing = dir.join("nodir/x.pcap").to_str().unwrap().to_string();
    for (args, want) in [
        (
            vec!["--pcap", &pcap, "--pcap-limit", "2000000"],
            "--pcap-limit",
        ),
        (
            vec![
                "--pcap",
                &pcap,
                "--pcap-limit",
                "100000",
                "--datagram",
                "65535B",
            ],
            "--pcap-limit 100000: 100000 frames of 65593 bytes (65535B datagrams) exceed the 1 GiB a capture may hold",
        ),
        (vec!["--pcap", &missing], "--pcap"),
        (vec!["--handshake-timeout", "1e9s"], "--handshake-timeout"),
        (
            vec!["--allowed", "100-200"],
            "--allowed 100-200: lies outside the ports the server hands out (33001-65535)",
        ),
    ] {
        let mut full = vec!["blast".to_string()];
        full.extend(args.iter().map(|a| a.to_string()));
        let want = if want == "--pcap" {
            format!("--pcap {missing}: directory")
        } else {
            want.to_string()
        };
        cases.push((full, want));
    }
    for (args, want) in cases {
        let output = Command::new(env!("CARGO_BIN_EXE_udprange"))
            .args(&args)
            .current_dir(&dir)
            .output()
            .expect("the binary runs");
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(&want), "{args:?}: got {stderr}want {want}");
        assert!(output.stdout.is_empty(), "{args:?}");
    }
    assert!(!dir.join("x.pcap").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A control port already in use is found while setting up: one error, exit 2, and not a
/// line of the report (the header waits until the run is set up).
#[test]
fn a_busy_control_port_is_one_error_and_no_header() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port().to_string();
    let output = udprange(&[
        "blast",
        "--clients",
        "2",
        "--duration",
        "1s",
        "--control-port",
        &port,
    ]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on control port {port}")),
        "{stderr}"
    );
    assert!(output.stdout.is_empty(), "{}", text(&output.stdout));
}
