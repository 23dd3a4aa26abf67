//! Sized transfers and rate control through the kernel path: complete delivery through
//! loss, delay-based sessions sharing a bottleneck, and the flags' bounds. Root and the netns
//! tools, or a loud skip (a failure under CI).

use crate::blast_netns::kernel_path;
use crate::common::{json_of, udprange};

fn jain(shares: &[f64]) -> f64 {
    let sum: f64 = shares.iter().sum();
    sum * sum / (shares.len() as f64 * shares.iter().map(|s| s * s).sum::<f64>())
}

/// Two 1 MB transfers through 10 % loss each way and 10 ms of delay: every datagram
/// arrives, what was lost is sent again about once, and nearly nothing twice.
#[test]
fn sized_transfers_complete_through_loss() {
    let Some(_namespaces) = kernel_path() else {
        return;
    };
    let output = udprange(&[
        "blast",
        "--backend",
        "netns",
        "--loss",
        "10%",
        "--delay",
        "10ms",
        "--clients",
        "2",
        "--rate",
        "10Mbps",
        "--size",
        "1MB",
        "--format",
        "json",
    ]);
    assert_eq!(output.status.code(), Some(0));
    let report = json_of(&output);
    let notes = report["notes"].to_string();
    assert!(
        !notes.contains("fragmented"),
        "the default 1492-byte datagrams fit: {notes}"
    );
    for s in report["sessions"].as_array().unwrap() {
        assert_eq!(s["complete"], true, "{s}");
        let (sent, retransmitted) = (
            s["sent"].as_f64().unwrap(),
            s["retransmitted"].as_f64().unwrap(),
        );
        let received = s["received"].as_f64().unwrap();
        assert!(s["bytes"].as_u64().unwrap() >= 1_000_000, "{s}");
        assert_eq!(received, sent, "every datagram, once: {s}");
        // 10 % lost, and 10 % of the retransmissions: about 11 % sent again.
        assert!(retransmitted / sent < 0.2, "{s}");
        assert!(s["duplicates"].as_f64().unwrap() / received < 0.01, "{s}");
        let completion = s["completion_s"].as_f64().unwrap();
        assert!(completion > 0.7 && completion < 5.0, "{s}");
        assert!(s["goodput_bps"].as_f64().unwrap() > 6e6, "{s}");
        // The fixed policy keeps new data at the target rate and sends what is asked again
        // on top: every datagram left once by sent × 1492 B × 8 / 10 Mbit/s.
        let sent_once = s["sent_once_s"].as_f64().unwrap();
        let at_rate = sent * 1492.0 * 8.0 / 10e6;
        assert!(
            sent_once > at_rate * 0.97 && sent_once < at_rate * 1.04,
            "new data at {:.3} Mbit/s, not 10: {s}",
            sent * 1492.0 * 8.0 / sent_once / 1e6
        );
        assert!(completion > sent_once, "{s}");
    }
    // The run ends with its transfers, not at their deadline (8.2 s for 1 MB at 10 Mbit/s).
    let last = report["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["completion_s"].as_f64().unwrap())
        .fold(0.0, f64::max);
    let elapsed = report["elapsed_s"].as_f64().unwrap();
    // (Waiting for the deadline would take at least 8.2 s; setting up the namespaces on a
    // busy machine takes a second or two of its own.)
    assert!(elapsed < 8.0, "{elapsed} s for transfers done by {last} s");
    assert!(
        report["load_description"]
            .as_str()
            .unwrap()
            .contains("delivering 1000000 bytes (0.837 s at the rate, deadline 8.2 s)"),
        "{}",
        report["load_description"]
    );
}

/// Four fair sessions, 20 Mbit/s each at most, on a 40 Mbit/s bottleneck: they share it
/// evenly and use most of it; each reports its rate over time and its queuing delay.
#[test]
fn fair_sessions_share_a_bottleneck() {
    let Some(_namespaces) = kernel_path() else {
        return;
    };
    let plot = crate::common::TempFile::new("rates.svg", "");
    let output = udprange(&[
        "blast",
        "--backend",
        "netns",
        "--bandwidth",
        "40Mbit",
        "--clients",
        "4",
        "--rate",
        "20Mbps",
        "--policy",
        "fair",
        "--min-rate",
        "1Mbps",
        "--size",
        "3MB",
        "--datagram",
        "1492B",
        "--format",
        "json",
        "--plot",
        plot.path(),
    ]);
    assert_eq!(output.status.code(), Some(0));
    let report = json_of(&output);
    assert_eq!(report["policy"], "fair");
    let sessions = report["sessions"].as_array().unwrap();
    let goodput: Vec<f64> = sessions
        .iter()
        .map(|s| s["goodput_bps"].as_f64().unwrap())
        .collect();
    let total: f64 = goodput.iter().sum();
    assert!(jain(&goodput) > 0.95, "{goodput:?}");
    assert!(total > 30e6, "the bottleneck is used: {goodput:?}");
    for s in sessions {
        assert_eq!(s["complete"], true, "{s}");
        let rates = s["rate_bps"].as_array().unwrap();
        assert!(rates.len() > 5, "{s}");
        for point in rates {
            let bps = point[1].as_f64().unwrap();
            assert!((1e6..=20e6).contains(&bps), "{point}");
        }
        assert!(s["queuing_delay_us"]["p99"].as_u64().is_some(), "{s}");
    }
    let svg = std::fs::read_to_string(&plot.0).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("pacing rate of each session (policy fair)"));
    assert!(svg.matches("<polyline").count() >= 4, "a line per session");
}

/// A scenario's `[traffic]` sizes the transfers and chooses the policy (loopback: no root
/// needed); a bad key is one error naming the file, line and key.
#[test]
fn a_scenario_sizes_transfers_and_chooses_the_policy() {
    let text = "name = \"sized\"\n[server]\nos = \"windows\"\n[client]\nallowed = \"33001-33010\"\n\
                [workload]\narrivals = \"closed\"\nconcurrent = 2\nholding = { dist = \"exponential\", mean = \"10s\" }\nsessions = 100\n\
                [traffic]\nclients = 2\nrate = \"20Mbps\"\nsize = \"300kB\"\npolicy = \"fair\"\nmin_rate = \"2Mbps\"\ncontrol_port = 0\n";
    let file = crate::common::TempFile::new("sized.toml", text);
    let output = udprange(&["blast", file.path(), "--format", "json"]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = json_of(&output);
    assert_eq!(report["policy"], "fair");
    assert_eq!(report["min_rate_bps"], 2_000_000);
    for s in report["sessions"].as_array().unwrap() {
        assert_eq!(s["complete"], true, "{s}");
        assert!(s["bytes"].as_u64().unwrap() >= 300_000, "{s}");
    }
    let bad =
        crate::common::TempFile::new("bad-policy.toml", &text.replace("\"fair\"", "\"fast\""));
    let output = udprange(&["blast", bad.path()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr.contains(":15:10: traffic.policy: must be fixed, fair, high or low"),
        "{stderr}"
    );
}

/// `--size holding` with a replayed load: each session delivers what its holding time
/// carries at the rate, completely, in about that time, and the replay still agrees with the
/// model session by session (loopback).
#[test]
fn a_replay_sized_by_holding_time_completes() {
    let text = "name = \"holding\"\n[server]\nos = \"windows\"\nbase_port = 36101\n[client]\nallowed = \"36101-36110\"\n\
                [workload]\narrivals = \"closed\"\nconcurrent = 3\nholding = { dist = \"exponential\", mean = \"1s\" }\nsessions = 6\n\
                [traffic]\nrate = \"10Mbps\"\ndatagram = \"1492B\"\n";
    let file = crate::common::TempFile::new("holding.toml", text);
    let output = udprange(&[
        "blast",
        file.path(),
        "--size",
        "holding",
        "--time-scale",
        "1",
        "--format",
        "json",
    ]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = json_of(&output);
    assert_eq!(report["agreement"]["disagree"], 0, "{report:#}");
    let sessions = report["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 6);
    for s in sessions {
        assert_eq!(s["complete"], true, "{s}");
        let holding = s["holding_s"].as_f64().unwrap();
        // Holding time × rate, in whole 1428-byte payloads.
        let expected = holding * 10e6 / 8.0;
        let bytes = s["bytes"].as_f64().unwrap();
        assert!(
            (bytes - expected).abs() <= 1428.0 * 2.0 + expected * 0.01,
            "{s}"
        );
        assert!(s["completion_s"].as_f64().unwrap() < holding + 0.5, "{s}");
    }
}

/// Rate control and sizes that make no sense are refused before anything runs.
#[test]
fn absurd_rate_control_and_sizes_are_usage_errors() {
    for (args, expect) in [
        (vec!["--policy", "fair", "--rate", "0bps"], "--policy fair"),
        (vec!["--policy", "fast"], "unknown policy"),
        (
            vec!["--rate", "10Mbps", "--min-rate", "20Mbps"],
            "--min-rate",
        ),
        (vec!["--size", "0B"], "no data"),
        (vec!["--size", "1TB"], "--size"),
        (vec!["--size", "17GiB"], "more than a transfer may carry"),
    ] {
        let mut all = vec!["blast"];
        all.extend(args.iter().copied());
        let output = udprange(&all);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expect), "{args:?}: {stderr}");
        assert!(output.stdout.is_empty());
    }
}

/// The README's way to share a bottleneck with other traffic: `udprange path` runs `serve`
/// in the server namespace and `blast --server` in the client's, through the router's
/// delay and bandwidth; sized transfers complete and the fair policy measures the queue.
#[test]
fn blast_and_serve_run_through_path() {
    let Some(_namespaces) = kernel_path() else {
        return;
    };
    let exe = env!("CARGO_BIN_EXE_udprange");
    let key = "0123456789abcdef";
    let serve = format!("{exe} serve --listen 198.19.0.1:22 --key {key} --duration 30s");
    let blast = format!(
        "sleep 1; exec {exe} blast --server 198.19.0.1:22 --key {key} --clients 2 \
         --policy fair --rate 20Mbps --size 1MB --format json"
    );
    let output = udprange(&[
        "path",
        "--delay",
        "10ms",
        "--bandwidth",
        "20Mbit",
        "--duration",
        "60s",
        "--server-exec",
        &serve,
        "--",
        "sh",
        "-c",
        &blast,
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("session 2 closed"), "{stderr}");
    let report = json_of(&output);
    let sessions = report["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    for s in sessions {
        assert_eq!(s["complete"], true, "{s}");
        // Two round trips of 2 x 10 ms at least.
        assert!(s["handshake_ms"].as_f64().unwrap() >= 40.0, "{s}");
        assert!(s["queuing_delay_us"]["p50"].as_u64().is_some(), "{s}");
        // Two sessions share 20 Mbit/s: neither gets more than the path.
        assert!(s["goodput_bps"].as_f64().unwrap() < 20e6, "{s}");
    }
}
