//! `udprange simulate`, `check` and `merge` driven as a user would, from a clean directory.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn udprange_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_udprange"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the binary runs")
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn udprange(args: &[&str]) -> Output {
    udprange_in(&repo(), args)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// A fresh empty directory for one test's files.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("udprange-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn simulate_without_a_file_runs_the_seed_example() {
    let output = udprange_in(&scratch("default"), &["simulate"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(stdout.contains("open 33001-33010 (10 ports)"), "{stdout}");
    assert!(stdout.contains("seed-windows-10"), "{stdout}");
}

#[test]
fn json_has_the_documented_keys() {
    let output = udprange(&[
        "simulate",
        "scenarios/linux-no-reuse-poisson.toml",
        "--format",
        "json",
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON object");
    let first = &value["blocking"][0];
    assert_eq!(first["ports"], 1);
    assert!(first["blocking"].as_f64().unwrap() > 0.5);
    assert_eq!(first["ci95"].as_array().unwrap().len(), 2);
    assert_eq!(value["udp_range"]["first"], 33001);
    assert_eq!(value["udp_range"]["last"], 33021);
    // One vocabulary: counts carry the number; `sessions` would be a list elsewhere.
    assert_eq!(value["counts"]["sessions"], 2_000_000);
    assert!(value.get("sessions").is_none());
    assert_eq!(value["sharing"], "per-session");
    assert_eq!(
        value["allowed"]["ports"], 18,
        "a range is {{first, last, ports}}"
    );
    assert_eq!(first["range"]["ports"], 1);
    let occupancy = &value["occupancy"];
    assert!(occupancy["bin_s"].as_f64().unwrap() > 0.0, "{occupancy}");
    assert!(!occupancy["mean_ports_held"].as_array().unwrap().is_empty());
    assert!(value["peak_port"]["max"].as_u64().unwrap() > 33021);
    for key in ["p50", "p99", "p99_9"] {
        assert!(value["peak_port"][key].is_u64(), "{key}");
    }
}

#[test]
fn csv_is_the_blocking_table() {
    let output = udprange(&[
        "simulate",
        "scenarios/macos-accounts.toml",
        "--format",
        "csv",
    ]);
    let stdout = text(&output.stdout);
    let mut lines = stdout.lines();
    assert_eq!(
        lines.next(),
        Some("ports,first,last,blocking,ci95_lo,ci95_hi,sessions,failed")
    );
    assert_eq!(lines.count(), 3, "{stdout}");
}

#[test]
fn thread_count_does_not_change_the_result() {
    let run = |threads: &str| {
        let output = udprange(&[
            "simulate",
            "scenarios/retries.toml",
            "--format",
            "json",
            "--threads",
            threads,
        ]);
        assert!(output.status.success());
        crate::common::result_of(&output.stdout)
    };
    assert_eq!(run("1"), run("2"));
}

#[test]
fn shards_merge_into_the_single_run_and_plot() {
    let dir = scratch("shards");
    let scenario = repo().join("scenarios/partners-narrow-range.toml");
    let scenario = scenario.to_str().unwrap();
    for i in 0..3 {
        let shard = format!("{i}/3");
        let out = format!("part-{i}.json");
        let output = udprange_in(
            &dir,
            &["simulate", scenario, "--shard", &shard, "--out", &out],
        );
        assert!(output.status.success(), "{}", text(&output.stderr));
        assert!(
            text(&output.stdout).starts_with(&format!("shard {shard} of partners-narrow-range"))
        );
    }
    let merged = udprange_in(
        &dir,
        &[
            "merge",
            "part-2.json",
            "part-0.json",
            "part-1.json",
            "--format",
            "json",
            "--plot",
            "merged.svg",
        ],
    );
    assert!(merged.status.success(), "{}", text(&merged.stderr));
    let whole = udprange_in(&dir, &["simulate", scenario, "--format", "json"]);
    assert_eq!(
        crate::common::result_of(&merged.stdout),
        crate::common::result_of(&whole.stdout)
    );
    let svg = fs::read_to_string(dir.join("merged.svg")).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("blocking by client range size"),
        "{}",
        &svg[..200]
    );

    let missing = udprange_in(&dir, &["merge", "part-0.json", "part-2.json"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        text(&missing.stderr).contains("replications missing"),
        "{}",
        text(&missing.stderr)
    );
    let twice = udprange_in(
        &dir,
        &[
            "merge",
            "part-0.json",
            "part-1.json",
            "part-1.json",
            "part-2.json",
        ],
    );
    assert_eq!(twice.status.code(), Some(2));
    assert!(
        text(&twice.stderr).contains("part-1.json: replication"),
        "{}",
        text(&twice.stderr)
    );
    fs::write(dir.join("junk.json"), "{\"format\": 3").unwrap();
    let junk = udprange_in(&dir, &["merge", "junk.json"]);
    assert_eq!(junk.status.code(), Some(2));
    assert!(
        text(&junk.stderr).contains("junk.json:1:"),
        "{}",
        text(&junk.stderr)
    );
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn check_passes_the_shipped_scenarios() {
    let output = udprange(&["check", "scenarios/"]);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines.len() >= 9, "{stdout}");
    assert!(
        lines[..lines.len() - 1]
            .iter()
            .all(|l| l.starts_with("PASS ")),
        "{stdout}"
    );
    assert_eq!(
        *lines.last().unwrap(),
        format!("{} passed, 0 failed", lines.len() - 1)
    );
}

#[test]
fn check_fails_a_moved_result() {
    let dir = scratch("check");
    let wrong = udprange::scenario::SEED_EXAMPLE.replace("ports_needed = 10", "ports_needed = 9");
    fs::write(dir.join("wrong.toml"), wrong).unwrap();
    fs::write(dir.join("right.toml"), udprange::scenario::SEED_EXAMPLE).unwrap();
    let output = udprange_in(&dir, &["check", "."]);
    assert_eq!(output.status.code(), Some(1));
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("FAIL seed-windows-10 (./wrong.toml): ports_needed 10 (expected 9)"),
        "{stdout}"
    );
    assert!(stdout.ends_with("1 passed, 1 failed\n"), "{stdout}");
    fs::remove_dir_all(&dir).unwrap();
}

/// Bad scenario files: exit 2, one line naming the file, line and key, and no output files.
#[test]
fn bad_scenarios_exit_2_naming_file_line_and_key() {
    let dir = scratch("bad");
    let seed = udprange::scenario::SEED_EXAMPLE;
    let cases = [
        ("malformed.toml", seed.replace("[workload]", "[workload"), "malformed.toml:15:10: "),
        (
            "units.toml",
            seed.replace("mean = \"10m\"", "mean = \"10 parsecs\""),
            "units.toml:18:42: workload.holding.mean: '10 parsecs' is not a duration",
        ),
        (
            "negative.toml",
            seed.replace("arrivals = \"closed\"\nconcurrent = 10", "arrivals = \"poisson\"\nrate = \"-3/s\""),
            "negative.toml:17:8: workload.rate: '-3/s' is not a rate",
        ),
        (
            "range.toml",
            seed.replace("allowed = \"33001-33010\"", "allowed = \"33010-33001\""),
            "range.toml:13:11: client.allowed: range 33010-33001 is reversed",
        ),
        (
            "below.toml",
            seed.replace("allowed = \"33001-33010\"", "allowed = \"1000-2000\""),
            "below.toml:13:11: client.allowed: range 1000-2000 lies outside the ports the server hands out",
        ),
        (
            "trace.toml",
            "name = \"t\"\n[server]\nos = \"macos\"\n[workload]\narrivals = \"trace\"\ntrace = \"empty.csv\"\n".to_string(),
            "empty.csv:1:1: empty trace",
        ),
        (
            "unknown.toml",
            seed.replace("seed = 42", "seed = 42\nsed = 1"),
            "unknown.toml:7:1: sed: unknown field `sed`",
        ),
    ];
    fs::write(dir.join("empty.csv"), "start,duration,account\n").unwrap();
    for (file, contents, want) in cases {
        fs::write(dir.join(file), contents).unwrap();
        for args in [
            vec!["simulate", file, "--plot", "out.svg", "--out", "out.json"],
            vec!["check", file],
        ] {
            let output = udprange_in(&dir, &args);
            let stderr = text(&output.stderr);
            assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
            assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
            assert!(stderr.contains(want), "{args:?}: got {stderr}want {want}");
            assert!(output.stdout.is_empty(), "{args:?}");
        }
    }
    let left = files_in(&dir);
    assert!(
        !left
            .iter()
            .any(|f| f.starts_with("out") || f.starts_with('.')),
        "{left:?}"
    );
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_flags_exit_2() {
    for (args, want) in [
        (
            &["simulate", "--shard", "3/3", "--out", "x.json"][..],
            "--shard",
        ),
        (&["simulate", "--shard", "0/2"][..], "--out"),
        (&["simulate", "--threads", "0"][..], "--threads"),
        (&["simulate", "--replications", "0"][..], "--replications"),
        (
            &["simulate", "--allowed", "100-200"][..],
            "--allowed 100-200",
        ),
        (
            &["simulate", "no-such-file.toml"][..],
            "no-such-file.toml: cannot read",
        ),
        (&["merge"][..], "PART"),
    ] {
        let output = udprange(args);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
    }
}

/// Runs the binary in `dir` like `udprange_in`, but fails the test instead of hanging when it
/// does not finish within a minute.
fn udprange_within(dir: &Path, args: &[&str]) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_udprange"))
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let pid = child.id();
    let (done, wait) = std::sync::mpsc::channel();
    std::thread::spawn(move || done.send(child.wait_with_output()));
    match wait.recv_timeout(std::time::Duration::from_secs(60)) {
        Ok(output) => output.expect("the binary runs"),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("{args:?} did not finish within 60 s");
        }
    }
}

/// Exit 2, exactly one line on stderr containing `want`, nothing on stdout.
fn assert_usage_error(output: &Output, args: &[&str], want: &str) {
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
    assert!(
        stderr.starts_with("udprange: error: ") && stderr.contains(want),
        "{args:?}: got {stderr}want {want}"
    );
    assert!(
        output.stdout.is_empty(),
        "{args:?}: {}",
        text(&output.stdout)
    );
}

/// Values no run can finish with end in one error naming file, line, column and key, from
/// `simulate` and `check` alike: no panic (float to time), no endless loop (time past 2^63 ns,
/// a warm-up that never ends).
#[test]
fn absurd_scenario_values_end_in_one_error() {
    let dir = scratch("absurd");
    let seed = udprange::scenario::SEED_EXAMPLE;
    let poisson = "name = \"p\"\n[server]\nos = \"windows\"\n[workload]\narrivals = \"poisson\"\nrate = \"10/s\"\nholding = { dist = \"exponential\", mean = \"1s\" }\nsessions = 100\n";
    let trace = "name = \"t\"\n[server]\nos = \"windows\"\n[workload]\narrivals = \"trace\"\ntrace = \"t.csv\"\n";
    fs::write(
        dir.join("t.csv"),
        "start,duration,account\n0s,1s,b\n1e308h,1e308h,a\n",
    )
    .unwrap();
    fs::write(dir.join("far.csv"), "start,duration,account\n1e17h,1s,a\n").unwrap();
    let ten_years = "must be at most 87600h (10 years of simulated time)";
    let cases = [
        (
            "holding.toml",
            seed.replace("mean = \"10m\"", "mean = \"1753200h\""),
            format!("holding.toml:18:42: workload.holding.mean: {ten_years}"),
        ),
        (
            "linger.toml",
            poisson.replace("os = \"windows\"", "os = \"windows\"\nlinger = \"1e308h\""),
            "linger.toml:4:10: server.linger: '1e308h' is not a duration".to_string(),
        ),
        (
            "linger-far.toml",
            poisson.replace("os = \"windows\"", "os = \"windows\"\nlinger = \"1e17h\""),
            format!("linger-far.toml:4:10: server.linger: {ten_years}"),
        ),
        (
            "warmup.toml",
            poisson.replace("sessions = 100", "sessions = 100\nwarmup = \"1e308h\""),
            "warmup.toml:9:10: workload.warmup: '1e308h' is not a duration".to_string(),
        ),
        (
            "warmup-long.toml",
            poisson
                .replace(
                    "sessions = 100",
                    "sessions = 100\nwarmup = \"87600h\"\nrate = \"1000/s\"",
                )
                .replace("rate = \"10/s\"\n", ""),
            "warmup-long.toml:8:10: workload.warmup: about 3.2e11 sessions during the warm-up"
                .to_string(),
        ),
        (
            "trace.toml",
            trace.to_string(),
            "t.csv:3:1: start: '1e308h' is not a time".to_string(),
        ),
        (
            "far.toml",
            trace.replace("t.csv", "far.csv"),
            "far.csv:2:1: start: '1e17h' is above 87600h".to_string(),
        ),
        (
            "instant.toml",
            seed.replace(
                "dist = \"exponential\", mean = \"10m\"",
                "dist = \"fixed\", mean = \"0.1ns\"",
            )
            .replace("sessions = 20000", "horizon = \"1s\""),
            "instant.toml:18:36: workload.holding.mean: must be at least 1ns".to_string(),
        ),
        (
            "sparse.toml",
            poisson.replace(
                "arrivals = \"poisson\"\nrate = \"10/s\"",
                "arrivals = \"profile\"\nprofile = { step = \"1ns\", rates = [\"1e-300/s\"] }",
            ),
            "sparse.toml:6:35: workload.profile.rates[0]: must be at least one per 87600h"
                .to_string(),
        ),
        (
            "handshake.toml",
            seed.replace(
                "handshake_timeout = \"20s\"",
                "handshake_timeout = \"1e20s\"",
            ),
            "handshake.toml:21:21: workload.handshake_timeout: must be at most 600s".to_string(),
        ),
    ];
    for (file, contents, want) in &cases {
        fs::write(dir.join(file), contents).unwrap();
        for args in [vec!["simulate", file], vec!["check", file]] {
            assert_usage_error(&udprange_within(&dir, &args), &args, want);
        }
    }
    fs::remove_dir_all(&dir).unwrap();
}

/// `/dev/zero` and a 2 GB sparse file as scenario, trace or shard: one error naming the file
/// after reading at most its size cap, never an exhausted memory.
#[test]
fn huge_inputs_are_refused_naming_the_file() {
    let dir = scratch("huge");
    let sparse = dir.join("sparse");
    fs::File::create(&sparse).unwrap().set_len(2 << 30).unwrap();
    let sparse = sparse.to_str().unwrap();
    let trace = |path: &str| {
        format!(
            "name = \"t\"\n[server]\nos = \"windows\"\n[workload]\narrivals = \"trace\"\ntrace = \"{path}\"\n"
        )
    };
    fs::write(dir.join("zero-trace.toml"), trace("/dev/zero")).unwrap();
    fs::write(dir.join("sparse-trace.toml"), trace(sparse)).unwrap();
    let scenario = "larger than 1 MiB, the most a scenario file may hold";
    let shard = "larger than 64 MiB, the most a shard file may hold";
    let cases = [
        (vec!["simulate", "/dev/zero"], format!("/dev/zero: {scenario}")),
        (vec!["check", "/dev/zero"], format!("/dev/zero: {scenario}")),
        (vec!["merge", "/dev/zero"], format!("/dev/zero: {shard}")),
        (vec!["simulate", sparse], format!("{sparse}: {scenario}")),
        (vec!["merge", sparse], format!("{sparse}: {shard}")),
        (
            vec!["simulate", "zero-trace.toml"],
            "zero-trace.toml:6:9: workload.trace: /dev/zero: larger than 64 MiB, the most a trace file may hold".to_string(),
        ),
        (
            vec!["check", "sparse-trace.toml"],
            format!("workload.trace: {sparse}: larger than 64 MiB"),
        ),
    ];
    for (args, want) in &cases {
        assert_usage_error(&udprange_within(&dir, args), args, want);
    }
    fs::remove_dir_all(&dir).unwrap();
}

/// `simulate … --shard I/N --out` for every shard, then `merge`, as JSON.
fn merged_and_whole(dir: &Path, scenario: &str, extra: &[&str], shards: u32) -> (String, String) {
    let mut parts = Vec::new();
    for i in 0..shards {
        let shard = format!("{i}/{shards}");
        let out = format!("part-{i}.json");
        let args = [
            &["simulate", scenario, "--shard", &shard, "--out", &out],
            extra,
        ]
        .concat();
        let output = udprange_in(dir, &args);
        assert!(
            output.status.success(),
            "{args:?}: {}",
            text(&output.stderr)
        );
        parts.push(out);
    }
    let mut args = vec!["merge", "--format", "json"];
    args.extend(parts.iter().map(String::as_str));
    let merged = udprange_in(dir, &args);
    assert!(
        merged.status.success(),
        "{args:?}: {}",
        text(&merged.stderr)
    );
    let whole = udprange_in(
        dir,
        &[&["simulate", scenario, "--format", "json"], extra].concat(),
    );
    assert!(whole.status.success(), "{}", text(&whole.stderr));
    (
        crate::common::result_of(&merged.stdout),
        crate::common::result_of(&whole.stdout),
    )
}

/// Merged JSON equals the whole run byte for byte, for every shipped scenario (few
/// replications, to stay fast) and for the run whose mean occupancy once came back one ulp
/// off (floats must round-trip through shard files).
#[test]
fn merged_json_equals_the_whole_run_for_every_scenario() {
    let dir = scratch("exact");
    let mut scenarios: Vec<PathBuf> = fs::read_dir(repo().join("scenarios"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    scenarios.sort();
    assert!(scenarios.len() >= 13);
    for scenario in &scenarios {
        let scenario = scenario.to_str().unwrap();
        let extra = ["--replications", "3", "--sessions", "2000", "--seed", "7"];
        let (merged, whole) = merged_and_whole(&dir, scenario, &extra, 2);
        assert_eq!(merged, whole, "{scenario}");
    }
    let scenario = repo().join("scenarios/linux-no-reuse-poisson.toml");
    let extra = ["--replications", "23", "--seed", "7"];
    let (merged, whole) = merged_and_whole(&dir, scenario.to_str().unwrap(), &extra, 1);
    assert!(
        whole.contains("\"mean_ports_held\": 9.962472405193397"),
        "{whole}"
    );
    assert_eq!(merged, whole);
    fs::remove_dir_all(&dir).unwrap();
}

/// Shards of different runs do not merge: exit 2 naming the file and what differs.
#[test]
fn merge_refuses_shards_of_other_runs() {
    let dir = scratch("mismatch");
    let seed = udprange::scenario::SEED_EXAMPLE.replace("sessions = 20000", "sessions = 500");
    fs::write(dir.join("a.toml"), &seed).unwrap();
    fs::write(
        dir.join("b.toml"),
        seed.replace("mean = \"10m\"", "mean = \"11m\""),
    )
    .unwrap();
    let shard = |scenario: &str, i: u32, extra: &[&str], out: &str| {
        let shard = format!("{i}/2");
        let args = [
            &["simulate", scenario, "--shard", &shard, "--out", out],
            extra,
        ]
        .concat();
        let output = udprange_in(&dir, &args);
        assert!(
            output.status.success(),
            "{args:?}: {}",
            text(&output.stderr)
        );
    };
    shard("a.toml", 0, &[], "first.json");
    shard("a.toml", 1, &["--sessions", "400"], "sessions.json");
    shard("a.toml", 1, &["--seed", "9"], "seed.json");
    shard("b.toml", 1, &[], "edited.json");
    shard("a.toml", 1, &["--allowed", "33001-33005"], "allowed.json");
    shard("a.toml", 1, &[], "second.json");
    for (other, want) in [
        (
            "sessions.json",
            "sessions.json: comes from a different run than the first part: the length of a replication (workload.sessions or horizon, --sessions) differs",
        ),
        (
            "seed.json",
            "seed.json: comes from a different run than the first part: the seed (seed, --seed) differs",
        ),
        (
            "edited.json",
            "edited.json: comes from a different run than the first part: the scenario's [workload] differs",
        ),
        (
            "allowed.json",
            "the client range (client.allowed, --allowed) differs",
        ),
    ] {
        let args = ["merge", "first.json", other];
        assert_usage_error(&udprange_in(&dir, &args), &args, want);
    }
    let output = udprange_in(&dir, &["merge", "first.json", "second.json"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    fs::remove_dir_all(&dir).unwrap();
}

/// A change to a shard file's JSON.
type Edit = fn(&mut serde_json::Value);

/// A shard file with values no run writes: exit 2 naming the file and the value, never a
/// panic (an empty `groups` once indexed out of bounds).
#[test]
fn merge_refuses_impossible_values() {
    let dir = scratch("impossible");
    let scenario = repo().join("scenarios/partners-narrow-range.toml");
    let args = [
        "simulate",
        scenario.to_str().unwrap(),
        "--replications",
        "2",
        "--sessions",
        "500",
        "--shard",
        "0/1",
        "--out",
        "good.json",
    ];
    let output = udprange_in(&dir, &args);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let good: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("good.json")).unwrap()).unwrap();
    let cases: [(&str, Edit); 6] = [
        (
            "results[0].unconstrained.groups: 0 groups, the run has 2",
            |v| {
                v["results"][0]["unconstrained"]["groups"] = serde_json::json!([]);
            },
        ),
        (
            "results[1].configured.groups[1].failed: 1000000 is more than sessions",
            |v| {
                v["results"][1]["configured"]["groups"][1]["failed"] = 1_000_000.into();
            },
        ),
        (
            "results[0].unconstrained.duration_s: -5.0 is not a time",
            |v| {
                v["results"][0]["unconstrained"]["duration_s"] = (-5.0).into();
            },
        ),
        (
            "results[1].peak_port: 1 is below the base port 33001",
            |v| {
                v["results"][1]["peak_port"] = 1.into();
            },
        ),
        ("context.replications: 4294967295 is not 1 to 100000", |v| {
            v["context"]["replications"] = u32::MAX.into();
        }),
        (
            "results[0].unconstrained.slot_busy[0]: 1e300 is not a time",
            |v| {
                v["results"][0]["unconstrained"]["slot_busy"][0] = 1e300.into();
            },
        ),
    ];
    for (want, edit) in cases {
        let mut bad = good.clone();
        edit(&mut bad);
        fs::write(dir.join("bad.json"), bad.to_string()).unwrap();
        let args = ["merge", "bad.json"];
        assert_usage_error(
            &udprange_within(&dir, &args),
            &args,
            &format!("bad.json: {want}"),
        );
    }
    fs::remove_dir_all(&dir).unwrap();
}

fn file_type(path: &Path) -> fs::FileType {
    fs::symlink_metadata(path).unwrap().file_type()
}

/// A character device to write to: as root, a node of our own for /dev/null's device
/// (so a regression replaces that node, not the system's); otherwise /dev/null itself,
/// which an unprivileged process cannot replace.
fn null_device(dir: &Path) -> PathBuf {
    let node = dir.join("null");
    let made = Command::new("mknod")
        .args([node.to_str().unwrap(), "c", "1", "3"])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if made {
        node
    } else {
        PathBuf::from("/dev/null")
    }
}

/// Outputs to a character device or a FIFO are written where they are, never replaced by a
/// file of the same name; a symlink is followed and its target replaced.
#[test]
fn outputs_never_clobber_devices_fifos_or_links() {
    use std::os::unix::fs::FileTypeExt;
    let dir = scratch("clobber");
    let null = null_device(&dir);
    let null = null.to_str().unwrap();
    let output = udprange_in(&dir, &["simulate", "--out", null, "--plot", "plot.svg"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        file_type(Path::new(null)).is_char_device(),
        "{null} was replaced"
    );

    let fifo = dir.join("fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    // The reader waits on the FIFO; if the FIFO were replaced it would wait forever, so the
    // test waits for it a minute at most.
    let (read, reader) = std::sync::mpsc::channel();
    {
        let fifo = fifo.clone();
        std::thread::spawn(move || read.send(fs::read(fifo)));
    }
    let output = udprange_within(&dir, &["simulate", "--plot", "fifo"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let svg = reader
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the FIFO's reader got the plot")
        .unwrap();
    assert!(
        svg.starts_with(b"<svg"),
        "{}",
        String::from_utf8_lossy(&svg)
    );
    assert!(file_type(&fifo).is_fifo(), "the FIFO was replaced");

    fs::create_dir(dir.join("real")).unwrap();
    fs::write(dir.join("real/part.json"), "old").unwrap();
    std::os::unix::fs::symlink("real/part.json", dir.join("link.json")).unwrap();
    let output = udprange_in(&dir, &["simulate", "--shard", "0/1", "--out", "link.json"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        file_type(&dir.join("link.json")).is_symlink(),
        "the link was replaced"
    );
    let written = fs::read_to_string(dir.join("real/part.json")).unwrap();
    assert!(
        written.starts_with("{\"format\":\"udprange-part/2\""),
        "{written}"
    );
    assert_eq!(files_in(&dir.join("real")), ["part.json"]);
    fs::remove_dir_all(&dir).unwrap();
}

/// As root, `/dev/full` (a node of our own for it): the write fails with exit 1 and the node
/// stays a device.
#[test]
fn a_full_device_fails_the_write_and_stays_a_device() {
    use std::os::unix::fs::FileTypeExt;
    let dir = scratch("full");
    let full = dir.join("full");
    let made = Command::new("mknod")
        .args([full.to_str().unwrap(), "c", "1", "7"])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !made {
        eprintln!("SKIPPED (not a pass): mknod needs root");
        return;
    }
    let output = udprange_in(&dir, &["simulate", "--out", "full"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("--out full: cannot write: No space left on device"),
        "{}",
        text(&output.stderr)
    );
    assert!(file_type(&full).is_char_device());
    fs::remove_dir_all(&dir).unwrap();
}

/// Output paths that cannot work are errors before the run (exit 2, the flag named), not
/// after it; nothing is written.
#[test]
fn bad_output_paths_fail_before_the_run() {
    use std::os::unix::fs::PermissionsExt;
    let dir = scratch("paths");
    fs::create_dir(dir.join("sub")).unwrap();
    let mut cases = vec![
        (
            vec!["simulate", "--out", "nodir/x.json"],
            "--out nodir/x.json: directory nodir does not exist".to_string(),
        ),
        (
            vec!["simulate", "--out", "a.json", "--plot", "./a.json"],
            "--plot ./a.json: is the same file as --out a.json".to_string(),
        ),
        (
            vec!["simulate", "--plot", "sub"],
            "--plot sub: is a directory".to_string(),
        ),
        (
            vec!["merge", "whatever.json", "--plot", "nodir/m.svg"],
            "--plot nodir/m.svg: directory nodir does not exist".to_string(),
        ),
    ];
    // Root writes anywhere: only an unprivileged run can test a read-only directory.
    let locked = dir.join("locked");
    fs::create_dir(&locked).unwrap();
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o555)).unwrap();
    let root = fs::write(locked.join("probe"), "").is_ok();
    if root {
        eprintln!("SKIPPED (not a pass): a read-only directory, as root");
    } else {
        cases.push((
            vec!["simulate", "--plot", "locked/p.svg"],
            "--plot locked/p.svg: directory locked is not writable".to_string(),
        ));
    }
    for (args, want) in &cases {
        assert_usage_error(&udprange_in(&dir, args), args, want);
    }
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o755)).unwrap();
    let _ = fs::remove_file(locked.join("probe"));
    assert_eq!(files_in(&dir), ["locked", "sub"]);
    fs::remove_dir_all(&dir).unwrap();
}
