//! Sizing from transfer logs: `plan --from-log` on a log made from the public format (a
//! Windows server that skipped 33004, two error-15 failures, a session still running when
//! the log was copied and a cut last line), the syslog form with its missing year, a
//! client's log, hostile files, and the log as a scenario's trace.

use crate::common::{TempFile, json_of, udprange};

const LOG: &str = "tests/data/logs/aspera-scp-transfer.log";

fn text(args: &[&str]) -> String {
    let output = udprange(args);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn a_servers_log_sizes_the_range_and_checks_the_model() {
    let out = text(&["plan", "--from-log", LOG, "--os", "windows"]);
    assert!(
        out.starts_with("udprange plan: windows server, 48 sessions in 1 log file (2026-03-02 08:02:44 to 2026-03-02 13:22:53 UTC)"),
        "{out}"
    );
    assert!(
        out.contains("at most 8 ports held at once at server 203.0.113.5 (8 sessions running)"),
        "{out}"
    );
    assert!(out.contains("  ports needed   8\n"), "{out}");
    assert!(out.contains("UDP 33001-33008   data"), "{out}");
    assert!(out.contains("2 of 48 sessions, 2 with error 15"), "{out}");
    // The real server skipped 33004 (another service held it): the model, not told, hands
    // out lower ports than it did, and the check says which and why.
    assert!(out.contains("model check    27 of 48 sessions got the port the model hands out (server's log, detected"), "{out}");
    assert!(
        out.contains("the server never handed out 33004 though it went higher"),
        "{out}"
    );
    assert!(
        out.contains("the server gave 33005, the model 33004"),
        "{out}"
    );
    // The unusable lines, named with their line numbers.
    assert!(out.contains("1 malformed, 1 unmatched"), "{out}");
    assert!(out.contains(&format!("{LOG}:237: a Session Start for uuid=5f0c1d2e-aaaa-4bbb-8ccc-0123456789ab without its Stop")), "{out}");
    assert!(out.contains(&format!("{LOG}:238: a cut line")), "{out}");

    // Told of 33004, the model agrees with the server on every session, and the range the
    // log needed really reaches 33009.
    let out = text(&["plan", "--from-log", LOG, "--occupied", "33004"]);
    assert!(out.contains("model check    48 of 48 sessions"), "{out}");
    assert!(out.contains("UDP 33001-33009   data"), "{out}");
    assert!(
        out.contains("includes 33004 used by other services"),
        "{out}"
    );
}

#[test]
fn growth_json_and_the_os_rule() {
    let output = udprange(&[
        "plan",
        "--from-log",
        LOG,
        "--growth",
        "30%",
        "--format",
        "json",
    ]);
    assert_eq!(output.status.code(), Some(0));
    let v = json_of(&output);
    assert_eq!(v["ports_needed"], 11, "8 x 1.3 rounded up");
    assert_eq!(
        (
            v["udp_range"]["first"].as_u64(),
            v["udp_range"]["last"].as_u64()
        ),
        (Some(33001), Some(33011))
    );
    let log = &v["log"];
    assert_eq!(log["sessions"], 48);
    assert_eq!(log["peak_ports"], 8);
    assert_eq!(log["growth"], 0.3);
    assert_eq!(
        (log["failed"].as_u64(), log["error_15"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(
        (
            log["issues"]["malformed"].as_u64(),
            log["issues"]["unmatched"].as_u64()
        ),
        (Some(1), Some(1))
    );
    assert_eq!(log["comparison"]["side"], "server");
    assert_eq!(log["comparison"]["agree"], 27);
    assert_eq!(log["comparison"]["never_used"], serde_json::json!([33004]));
    assert_eq!(log["servers"][0]["address"], "203.0.113.5");
    // Four users: on macOS a port per account at most; on Linux one port for everybody.
    let mac = json_of(&udprange(&[
        "plan",
        "--from-log",
        LOG,
        "--os",
        "macos",
        "--format",
        "json",
    ]));
    let peak = mac["log"]["peak_ports"].as_u64().unwrap();
    assert!((2..=4).contains(&peak), "{mac}");
    let linux = json_of(&udprange(&[
        "plan",
        "--from-log",
        LOG,
        "--os",
        "linux",
        "--format",
        "json",
    ]));
    assert_eq!(linux["log"]["peak_ports"], 1);
    // `rules` sizes from the same log.
    let rules = text(&["rules", "--from-log", LOG, "--growth", "30%"]);
    assert!(rules.contains("udp dport 33001-33011 accept"), "{rules}");
}

#[test]
fn strict_and_hostile_logs_are_one_error() {
    let output = udprange(&["plan", "--from-log", LOG, "--strict"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("--strict: {LOG}:237: a Session Start")),
        "{stderr}"
    );
    assert!(stderr.contains("1 malformed and 1 unmatched"), "{stderr}");

    let noise = TempFile::new("noise.log", "\u{0}\u{1}\u{2}not a log\n");
    let only_starts = TempFile::new(
        "starts.log",
        "2026-01-01 00:00:00.000 [1] LOG FASP Session Start uuid=a local=10.0.0.1:33001 peer=10.0.0.2:50000\n",
    );
    for (args, want) in [
        (
            vec!["plan", "--from-log", "/no/such.log"],
            "/no/such.log: cannot read",
        ),
        (
            vec!["plan", "--from-log", "/dev/zero"],
            "/dev/zero: is not a regular file",
        ),
        (
            vec!["plan", "--from-log", noise.path()],
            "no FASP session lines",
        ),
        (
            vec!["plan", "--from-log", only_starts.path()],
            "no session has both its Start and its Stop",
        ),
        (
            vec!["plan", "--from-log", LOG, "--growth", "2000%"],
            "--growth",
        ),
        (
            vec!["plan", "--from-log", LOG, "--growth", "30"],
            "--growth",
        ),
        (
            vec!["plan", "--from-log", LOG, "--concurrent", "5"],
            "--concurrent",
        ),
        (vec!["plan", "--growth", "30%"], "--from-log"),
        (
            vec!["plan", "--from-log", LOG, "--log-year", "1800"],
            "--log-year",
        ),
        (
            vec!["plan", "--from-log", LOG, "--log-side", "middle"],
            "--log-side",
        ),
    ] {
        let output = udprange(&args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(output.stdout.is_empty(), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(want), "{args:?}: {stderr}");
    }
}

#[test]
fn syslog_and_a_clients_log() {
    // The syslog form has no year; the log crosses New Year's Eve. A client's log: peer=
    // is the server's port.
    let syslog = TempFile::new(
        "ascp.syslog",
        "Dec 31 23:50:00 host ascp[1]: LOG FASP Session Start uuid=s1 user=\"root\" local=10.0.0.9:50001 peer=10.0.0.5:33001\n\
         Dec 31 23:55:00 host ascp[2]: LOG FASP Session Start uuid=s2 user=\"root\" local=10.0.0.9:50002 peer=10.0.0.5:33002\n\
         Dec 31 23:58:00 host ascp[2]: LOG FASP Session Stop uuid=s2 status=failed errcode=15 errstr=\"Data transfer timeout\"\n\
         Jan  1 00:10:00 host ascp[1]: LOG FASP Session Stop uuid=s1 status=success\n\
         Jan  1 00:11:00 host ascp[3]: LOG FASP Session Start uuid=s3 user=\"root\" local=10.0.0.9:50003 peer=10.0.0.5:33001\n\
         Jan  1 00:12:00 host ascp[3]: LOG FASP Session Stop uuid=s3 status=success\n",
    );
    let output = udprange(&[
        "plan",
        "--from-log",
        syslog.path(),
        "--log-year",
        "2025",
        "--format",
        "json",
    ]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let v = json_of(&output);
    let log = &v["log"];
    assert_eq!(log["sessions"], 3);
    assert_eq!(log["peak_ports"], 2);
    assert_eq!(log["comparison"]["side"], "client");
    assert_eq!(log["comparison"]["agree"], 3);
    // 2025-12-31 23:50:00 UTC, and the last stop 22 minutes later in 2026.
    assert_eq!(log["first_start"], 1_767_225_000.0);
    assert_eq!(log["last_stop"], 1_767_226_320.0);
    let text = text(&["plan", "--from-log", syslog.path(), "--log-year", "2025"]);
    assert!(
        text.contains("(2025-12-31 23:50:00 to 2026-01-01 00:12:00 UTC)"),
        "{text}"
    );
    assert!(text.contains("1 with error 15"), "{text}");
}

#[test]
fn a_log_is_a_trace_simulate_replays() {
    let dir = std::env::temp_dir().join(format!("udprange-logtrace-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(LOG, dir.join("server.log")).unwrap();
    let scenario = dir.join("from-log.toml");
    std::fs::write(
        &scenario,
        "name = \"from-log\"\n[server]\nos = \"windows\"\n[workload]\narrivals = \"trace\"\ntrace = \"server.log\"\n",
    )
    .unwrap();
    let output = udprange(&["simulate", scenario.to_str().unwrap(), "--format", "json"]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let v = json_of(&output);
    // The same peak as plan --from-log: 8 ports.
    assert_eq!(v["udp_range"]["last"], 33008, "{}", v["udp_range"]);
    let notes = v["input_notes"].to_string();
    assert!(
        notes.contains("48 sessions from the transfer log"),
        "{notes}"
    );
    assert!(notes.contains("1 malformed and 1 unmatched"), "{notes}");
    // blast replays the same sessions with real packets, in the model's order.
    let output = udprange(&[
        "blast",
        scenario.to_str().unwrap(),
        "--sessions",
        "6",
        "--time-scale",
        "800",
        "--format",
        "json",
    ]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let v = json_of(&output);
    assert_eq!(v["agreement"]["agree"], 6, "{}", v["agreement"]);
    assert!(
        v["notes"]
            .to_string()
            .contains("48 sessions from the transfer log"),
        "{}",
        v["notes"]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
