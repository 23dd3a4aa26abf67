//! Drives the built `udprange` binary as a user would.

use std::process::{Command, Output};

fn udprange(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_udprange"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

fn json(args: &[&str]) -> serde_json::Value {
    let output = udprange(args);
    assert!(output.status.success(), "{args:?}: {}", stderr(&output));
    serde_json::from_slice(&output.stdout).expect("one JSON object")
}

fn range_of(value: &serde_json::Value) -> (u64, u64) {
    (
        value["udp_range"]["first"].as_u64().unwrap(),
        value["udp_range"]["last"].as_u64().unwrap(),
    )
}

#[test]
fn seed_example_text() {
    let output = udprange(&["plan", "--os", "windows", "--concurrent", "10"]);
    assert!(output.status.success());
    let text = stdout(&output);
    assert!(text.contains("UDP 33001-33010"), "{text}");
    assert!(text.contains("TCP 33001"), "{text}");
    assert!(stderr(&output).is_empty());
}

#[test]
fn embedded_default_is_the_seed_example() {
    let value = json(&["plan", "--format", "json"]);
    assert_eq!(value["os"], "windows");
    assert_eq!(range_of(&value), (33001, 33010));
}

#[test]
fn json_plan_per_os() {
    for (args, ports, range) in [
        (
            &["--os", "windows", "--concurrent", "10"][..],
            10,
            (33001, 33010),
        ),
        (
            &["--os", "macos", "--concurrent", "10", "--accounts", "3"],
            3,
            (33001, 33003),
        ),
        (&["--os", "freebsd", "--concurrent", "4"], 4, (33001, 33004)),
        (&["--os", "linux", "--concurrent", "50"], 1, (33001, 33001)),
        (
            &[
                "--os",
                "linux",
                "--no-udp-port-reuse",
                "--concurrent",
                "5",
                "--sessions-per-transfer",
                "2",
            ],
            10,
            (33001, 33010),
        ),
        (
            &["--concurrent", "10", "--occupied", "33004,33007"],
            10,
            (33001, 33012),
        ),
        (
            &["--concurrent", "3", "--base-port", "40000"],
            3,
            (40000, 40002),
        ),
    ] {
        let value = json(&[&["plan", "--format", "json"], args].concat());
        assert_eq!(value["ports_needed"], ports, "{args:?}");
        assert_eq!(range_of(&value), range, "{args:?}");
        // The seed's control port: 33001 for a Windows server (the default OS), SSH's 22 else.
        // udp_port_reuse is a Linux server's setting: the others have none to report.
        assert_eq!(
            value.get("udp_port_reuse").is_some(),
            value["os"] == "linux",
            "{value}"
        );
        let windows = value["os"] == "windows";
        assert_eq!(
            value["tcp_control_port"],
            if windows { 33001 } else { 22 },
            "{args:?}"
        );
        assert!(
            value["tcp_control_port_why"]
                .as_str()
                .unwrap()
                .starts_with(if windows {
                    "a Windows server's default"
                } else {
                    "SSH (TCP/22)"
                }),
            "{value}"
        );
    }
}

#[test]
fn json_stochastic_plan() {
    let value = json(&[
        "plan",
        "--format",
        "json",
        "--arrival-rate",
        "150/h",
        "--mean-duration",
        "4m",
    ]);
    assert_eq!(value["offered_load"], 10.0);
    assert_eq!(value["target_blocking"], 0.001);
    assert_eq!(value["ports_needed"], 21);
    assert_eq!(range_of(&value), (33001, 33021));
    let blocking = value["blocking"].as_f64().unwrap();
    assert!(blocking > 0.0 && blocking <= 0.001);
    let table = value["table"].as_array().unwrap();
    assert!(table.iter().any(|row| row["ports"] == 21));
    let blockings: Vec<f64> = table
        .iter()
        .map(|r| r["blocking"].as_f64().unwrap())
        .collect();
    assert!(
        blockings.windows(2).all(|w| w[0] >= w[1]),
        "blocking falls with ports"
    );

    let engset = json(&[
        "plan",
        "--format",
        "json",
        "--offered-load",
        "10",
        "--sources",
        "20",
    ]);
    assert!(
        engset["ports_needed"].as_u64().unwrap() < 21,
        "a finite population needs fewer"
    );
}

#[test]
fn csv_table() {
    let output = udprange(&["plan", "--format", "csv", "--offered-load", "10"]);
    let text = stdout(&output);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("ports,blocking"));
    assert!(lines.any(|l| l.starts_with("21,0.000889")), "{text}");
}

#[test]
fn rules_in_every_syntax() {
    for (syntax, needle) in [
        ("nftables", "udp dport 33001-33010 accept"),
        ("iptables", "--dport 33001:33010"),
        ("powershell", "-RemotePort 33001-33010"),
        ("pf", "port 33001:33010"),
    ] {
        let output = udprange(&["rules", "--syntax", syntax]);
        assert!(output.status.success(), "{syntax}");
        assert!(
            stdout(&output).contains(needle),
            "{syntax}: {}",
            stdout(&output)
        );
    }
    let server = stdout(&udprange(&[
        "rules",
        "--side",
        "server",
        "--syntax",
        "powershell",
        "--vlink",
    ]));
    assert!(
        server.contains("-Direction Inbound") && server.contains("-LocalPort 55001"),
        "{server}"
    );
}

/// `--default-drop` alone would drop DNS, NTP and DHCP with every other UDP: refused in one
/// line. `--peer any` asks for exactly that and gets it, with no address in the rules.
#[test]
fn default_drop_needs_a_peer_or_any() {
    for syntax in ["nftables", "iptables", "powershell", "pf"] {
        for side in ["client", "server"] {
            let args = [
                "rules",
                "--syntax",
                syntax,
                "--side",
                side,
                "--default-drop",
            ];
            let refused = udprange(&args);
            let err = stderr(&refused);
            assert_eq!(refused.status.code(), Some(2), "{args:?}: {err}");
            assert!(refused.stdout.is_empty(), "{args:?}");
            assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
            assert!(
                err.contains("--default-drop") && err.contains("--peer any"),
                "{args:?}: {err}"
            );
            assert!(err.contains("DNS"), "{args:?}: {err}");
            let any = udprange(&[&args[..], &["--peer", "any"]].concat());
            assert!(
                any.status.success(),
                "{args:?} --peer any: {}",
                stderr(&any)
            );
        }
    }
    let drop_for = |syntax: &str| {
        stdout(&udprange(&[
            "rules",
            "--syntax",
            syntax,
            "--default-drop",
            "--peer",
            "any",
        ]))
    };
    let nft = drop_for("nftables");
    assert!(
        nft.contains("\t\tudp dport != { 33001-33010 } drop"),
        "{nft}"
    );
    assert!(!nft.contains("daddr"), "{nft}");
    let iptables = drop_for("iptables");
    assert!(
        iptables.contains(
            "-A UDPRANGE-CLIENT -p udp -m comment --comment \"UDP outside the FASP openings\" -j DROP"
        ),
        "{iptables}"
    );
    assert!(drop_for("pf").contains("block drop out quick proto udp from any to any"));
    // Without --default-drop, `any` is what no --peer means.
    assert_eq!(
        stdout(&udprange(&["rules", "--peer", "any"])),
        stdout(&udprange(&["rules"]))
    );
}

#[test]
fn completions_and_man_page_come_from_the_flags() {
    for shell in ["bash", "zsh", "fish"] {
        let output = udprange(&["completions", shell]);
        assert!(output.status.success(), "{shell}");
        let text = stdout(&output);
        assert!(
            text.contains("--concurrent") && text.contains("--no-udp-port-reuse"),
            "{shell}"
        );
    }
    let man = stdout(&udprange(&["man"]));
    assert!(man.contains(".TH udprange"), "{man}");
}

#[test]
fn every_flag_documents_default_and_example() {
    for command in [
        "plan", "rules", "simulate", "check", "merge", "blast", "man",
    ] {
        let help = stdout(&udprange(&[command, "--help"]));
        // Each flag's block: from its line (indented less than the help text) to the next.
        let mut blocks: Vec<String> = Vec::new();
        for line in help.lines() {
            let indent = line.len() - line.trim_start().len();
            if (2..=6).contains(&indent) && line.trim_start().starts_with('-') {
                blocks.push(String::new());
            }
            if let Some(block) = blocks.last_mut() {
                block.push_str(line);
                block.push('\n');
            }
        }
        assert!(blocks.len() >= 2, "{help}");
        for block in blocks {
            if block.trim_start().starts_with("-h, --help") {
                continue;
            }
            assert!(block.contains("Example:"), "no example in: {block}");
            let optional = block.contains("default")
                || block.contains("none by default")
                || block.contains("Off by default")
                || block.contains("Any by default");
            assert!(
                optional || block.contains("[default:"),
                "no default in: {block}"
            );
        }
    }
}

#[test]
fn bad_input_exit_2_one_line_no_stdout() {
    for args in [
        &["plan", "--os", "beos"][..],
        &["plan", "--base-port", "0"],
        &["plan", "--ssh-port", "70000"],
        &["plan", "--concurrent", "40000"],
        &["plan", "--occupied", "33001-65535"],
        &["plan", "--offered-load", "-3"],
        &["plan", "--offered-load", "nan"],
        &["plan", "--offered-load", "10", "--target-blocking", "0"],
        &["plan", "--offered-load", "10", "--sources", "5"],
        &["plan", "--sources", "5"],
        &["plan", "--concurrent", "10", "--offered-load", "3"],
        &["plan", "--os", "macos", "--no-udp-port-reuse"],
        &["plan", "--max-port", "33000"],
        &["plan", "--arrival-rate", "-2/s", "--mean-duration", "4m"],
        &["rules", "--side", "middle"],
    ] {
        let output = udprange(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(output.stdout.is_empty(), "{args:?}");
        let err = stderr(&output);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        let flag = args.iter().rev().find(|a| a.starts_with("--")).unwrap();
        let flag_named = args
            .iter()
            .filter(|a| a.starts_with("--"))
            .any(|f| err.contains(f));
        assert!(flag_named, "{args:?} (last flag {flag}): {err}");
    }
}

#[test]
fn a_flag_missing_its_partner_is_named() {
    let output = udprange(&["plan", "--mean-duration", "4m"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("--arrival-rate"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn closed_stdout_is_not_an_error() {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_udprange"))
        .args(["completions", "bash"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let status = child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// Every JSON report starts with its provenance, one line per key, and the command line
/// reads back as a shell would take it.
#[test]
fn every_json_report_starts_with_its_provenance() {
    let dir = std::env::temp_dir().join(format!("udprange-provenance-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let part = dir.join("part-0.json");
    let part = part.to_str().unwrap();
    let simulate_out = udprange(&[
        "simulate",
        "scenarios/seed-windows-10.toml",
        "--replications",
        "2",
        "--shard",
        "0/1",
        "--out",
        part,
    ]);
    assert!(simulate_out.status.success());
    for args in [
        vec!["plan", "--format", "json", "--occupied", "33004,33007"],
        vec![
            "simulate",
            "scenarios/seed-windows-10.toml",
            "--replications",
            "2",
            "--format",
            "json",
        ],
        vec!["merge", part, "--format", "json"],
        vec![
            "audit",
            "tests/data/rulesets/corp.rules",
            "--format",
            "json",
        ],
        vec![
            "plan",
            "--from-log",
            "tests/data/logs/aspera-scp-transfer.log",
            "--format",
            "json",
        ],
        vec![
            "blast",
            "--clients",
            "1",
            "--duration",
            "0.3s",
            "--base-port",
            "64801",
            "--allowed",
            "64801-64802",
            "--format",
            "json",
        ],
    ] {
        let output = udprange(&args);
        let stdout = String::from_utf8_lossy(&output.stdout);
        let lines: Vec<&str> = stdout.lines().take(4).collect();
        assert_eq!(lines[0], "{", "{args:?}");
        assert_eq!(
            lines[1],
            format!("  \"udprange_version\": \"{}\",", env!("CARGO_PKG_VERSION")),
            "{args:?}"
        );
        assert_eq!(
            lines[2],
            format!("  \"command_line\": \"udprange {}\",", args.join(" ")),
            "{args:?}"
        );
        let started = lines[3].trim_start_matches("  \"started_at\": \"");
        assert!(
            started.len() == "2026-11-26T05:00:57Z\",".len() && started.ends_with("Z\","),
            "{args:?}: {}",
            lines[3]
        );
        let value: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert!(value["started_at"].as_str().unwrap().starts_with("20"));
    }
    // A word a shell would split is quoted.
    let value = json(&[
        "plan",
        "--format",
        "json",
        "--from-log",
        "tests/data/logs/aspera-scp-transfer.log",
        "--growth",
        "30%",
    ]);
    assert!(
        value["command_line"]
            .as_str()
            .unwrap()
            .ends_with("--growth 30%")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `--export-json` and `--export-csv` write the data beside the report on stdout, for every
/// command with a report; a path that cannot be written is one error before the run.
#[test]
fn exports_sit_beside_the_report() {
    let dir = std::env::temp_dir().join(format!("udprange-export-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let (json_file, csv_file) = (path("r.json"), path("r.csv"));
    for (args, csv_header) in [
        (
            vec!["plan", "--concurrent", "12"],
            "os,ports_needed,first,last,tcp_control_port",
        ),
        (
            vec![
                "simulate",
                "scenarios/seed-windows-10.toml",
                "--replications",
                "2",
            ],
            "ports,first,last,blocking,ci95_lo,ci95_hi,sessions,failed",
        ),
        (
            vec!["audit", "tests/data/rulesets/corp.rules", "--iif", "eth0"],
            "fate,first,last,ports,needed,why",
        ),
        (
            vec![
                "blast",
                "--clients",
                "1",
                "--duration",
                "0.3s",
                "--base-port",
                "64811",
                "--allowed",
                "64811-64812",
            ],
            "id,",
        ),
    ] {
        let mut full = args.clone();
        full.extend(["--export-json", &json_file, "--export-csv", &csv_file]);
        let output = udprange(&full);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            !stdout.starts_with('{') && !stdout.is_empty(),
            "{args:?}: the text report stays on stdout"
        );
        let exported: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json_file).unwrap()).unwrap();
        assert_eq!(
            exported["command_line"],
            format!("udprange {}", full.join(" "))
        );
        let csv = std::fs::read_to_string(&csv_file).unwrap();
        assert!(csv.starts_with(csv_header), "{args:?}: {csv}");
        std::fs::remove_file(&json_file).unwrap();
        std::fs::remove_file(&csv_file).unwrap();
    }
    let exported_plan = udprange(&["plan", "--export-json", &json_file]);
    assert!(exported_plan.status.success());
    let plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json_file).unwrap()).unwrap();
    assert_eq!(plan["udp_range"]["ports"], 10);
    // Unwritable: one error naming the flag, nothing on stdout.
    for args in [
        vec!["plan", "--export-json", "/no/such/dir/r.json"],
        vec![
            "simulate",
            "scenarios/seed-windows-10.toml",
            "--export-csv",
            "/no/such/dir/r.csv",
        ],
    ] {
        let output = udprange(&args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(output.stdout.is_empty());
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("--export-"),
            "{args:?}"
        );
    }
    let output = udprange(&[
        "simulate",
        "scenarios/seed-windows-10.toml",
        "--shard",
        "0/2",
        "--out",
        &path("p.json"),
        "--export-json",
        &json_file,
    ]);
    assert_eq!(output.status.code(), Some(2));
    std::fs::remove_dir_all(&dir).unwrap();
}
