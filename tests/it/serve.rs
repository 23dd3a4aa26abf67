//! `udprange serve` and `udprange blast --server`: the emulator alone in one process, the
//! clients in another, on loopback (ports 64100-64600, above the ephemeral range).

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

fn udprange(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_udprange"))
        .args(args)
        .output()
        .unwrap()
}

/// `serve` with `args`, once it says it listens; its stdout lines follow.
fn serve(args: &[&str]) -> (Child, std::io::Lines<BufReader<ChildStdout>>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_udprange"))
        .arg("serve")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().expect("serve says it listens").unwrap();
    (child, lines, first)
}

fn sigint(child: &Child) {
    // SAFETY: kill only signals the child we spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
}

#[test]
fn blast_against_a_server_of_its_own_tests_the_path_between_them() {
    let (mut server, lines, first) = serve(&[
        "--os",
        "windows",
        "--listen",
        "127.0.0.1:64511",
        "--key",
        "s3cret",
        "--base-port",
        "64101",
        "--max-port",
        "64400",
        "--occupied",
        "64103",
    ]);
    assert!(
        first.starts_with("udprange serve: windows server")
            && first.contains(
                "on 127.0.0.1:64511 (--listen 127.0.0.1:64511, as given), UDP 64101-64400"
            ),
        "{first}"
    );

    // A burst: the server described its ports, so the model predicts them (64103 skipped).
    let burst = udprange(&[
        "blast",
        "--server",
        "127.0.0.1:64511",
        "--key",
        "s3cret",
        "--clients",
        "6",
        "--duration",
        "1s",
        "--format",
        "json",
    ]);
    assert_eq!(
        burst.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&burst.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&burst.stdout).unwrap();
    assert_eq!(report["backend"], "remote");
    assert_eq!(report["agreement"]["agree"], 6, "{report:#}");
    let ports: Vec<u64> = report["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["port"].as_u64().unwrap())
        .collect();
    assert_eq!(ports, [64101, 64102, 64104, 64105, 64106, 64107]);
    assert!(report["sessions"][0]["received"].as_u64().unwrap() > 0);
    assert!(
        report["notes"][0]
            .as_str()
            .unwrap()
            .contains("the path between this host and the server at 127.0.0.1:64511"),
        "{report:#}"
    );

    // A replay of a scenario's load against it: 100 % agreement.
    let replay = udprange(&[
        "blast",
        "scenarios/trace-replay.toml",
        "--server",
        "127.0.0.1:64511",
        "--key",
        "s3cret",
        "--sessions",
        "20",
        "--time-scale",
        "400",
        "--format",
        "json",
    ]);
    let report: serde_json::Value = serde_json::from_slice(&replay.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&replay.stderr)));
    assert_eq!(report["agreement"]["disagree"], 0, "{report:#}");
    assert_eq!(report["counts"]["sessions"], 20);

    // The wrong key gets nothing, not even the server's description.
    let wrong = udprange(&[
        "blast",
        "--server",
        "127.0.0.1:64511",
        "--key",
        "guess",
        "--clients",
        "1",
    ]);
    assert_eq!(wrong.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("did not accept the key"),
        "{}",
        String::from_utf8_lossy(&wrong.stderr)
    );

    // Ctrl-C ends the server cleanly within a second, after a line per session.
    let asked = Instant::now();
    sigint(&server);
    let status = server.wait().unwrap();
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(status.code(), Some(0));
    let lines: Vec<String> = lines.map(Result::unwrap).collect();
    let opened = lines.iter().filter(|l| l.contains(" opened: ")).count();
    let closed = lines.iter().filter(|l| l.contains(" closed: ")).count();
    assert_eq!((opened, closed), (26, 26), "{lines:#?}");
    assert!(
        lines
            .last()
            .unwrap()
            .starts_with("udprange serve: stopped (interrupted (Ctrl-C))"),
        "{lines:#?}"
    );
}

#[test]
fn serve_writes_json_lines_and_ends_on_its_own() {
    let (mut server, lines, first) = serve(&[
        "--os",
        "macos",
        "--listen",
        "127.0.0.1:64521",
        "--base-port",
        "64501",
        "--duration",
        "2s",
        "--format",
        "json",
    ]);
    let listening: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(listening["event"], "listening");
    // The run's first JSON line carries its provenance, as every JSON report does.
    assert_eq!(listening["udprange_version"], env!("CARGO_PKG_VERSION"));
    assert!(
        listening["command_line"]
            .as_str()
            .unwrap()
            .starts_with("udprange serve "),
        "{listening}"
    );
    assert!(listening["started_at"].as_str().unwrap().ends_with('Z'));
    let key = listening["key"]
        .as_str()
        .expect("a random key, printed")
        .to_string();
    assert_eq!(key.len(), 16);
    let run = udprange(&[
        "blast",
        "--server",
        "127.0.0.1:64521",
        "--key",
        &key,
        "--clients",
        "2",
        "--accounts",
        "1",
        "--duration",
        "0.5s",
    ]);
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    // One account on macOS: both sessions share one port.
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert_eq!(stdout.matches(" 64501  ok ").count(), 2, "{stdout}");
    assert_eq!(server.wait().unwrap().code(), Some(0));
    let events: Vec<serde_json::Value> = lines
        .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds.iter().filter(|&&k| k == "opened").count(),
        2,
        "{kinds:?}"
    );
    assert_eq!(*kinds.last().unwrap(), "stopped");
    assert_eq!(events.last().unwrap()["why"], "--duration is over");
}

/// The control port follows the OS (the seed: TCP/33001 for a Windows server, SSH's 22
/// for the others) unless --ssh-port or --listen says otherwise; the first line says why.
#[test]
fn the_control_port_is_chosen_by_os_and_explained() {
    let (mut child, _, first) = serve(&["--os", "macos", "--ssh-port", "64512", "--key", "k"]);
    assert!(
        first.contains("on 127.0.0.1:64512 (--ssh-port 64512, as given)"),
        "{first}"
    );
    sigint(&child);
    assert!(child.wait().unwrap().success());
    let output = udprange(&[
        "serve",
        "--listen",
        "127.0.0.1:64513",
        "--ssh-port",
        "64514",
    ]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--ssh-port"), "{stderr}");
    // The OS's own default, on a port that is free here (a root test machine rarely runs
    // anything on 33001; when it does, the error names the address instead).
    let output = udprange(&[
        "serve",
        "--os",
        "windows",
        "--duration",
        "0.2s",
        "--format",
        "json",
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.success() {
        let first: serde_json::Value =
            serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
        assert_eq!(first["control"], "127.0.0.1:33001");
        assert!(
            first["control_why"]
                .as_str()
                .unwrap()
                .starts_with("a Windows server's default control port (TCP/33001)"),
            "{first}"
        );
    } else {
        assert!(stderr.contains("127.0.0.1:33001"), "{stderr}");
    }
}
