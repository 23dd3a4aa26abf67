//! Helpers shared by the test files (each uses some of them).
#![allow(dead_code)]

use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use udprange::blast::{self, BlastConfig, BlastReport};

/// Runs `config` to its end on a two-worker runtime, as the CLI would.
pub fn run_blast(config: &BlastConfig) -> BlastReport {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    runtime
        .block_on(blast::run_simple(config, stopped))
        .unwrap()
        .0
}

/// Says loudly that a test cannot run here, and skips it (returns false). Under CI
/// (`CI=true`) that is a failure instead, because `.ci/run` installs every tool and runs as
/// root.
pub fn skip(problem: &str) -> bool {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    assert!(
        !ci,
        "CI=true but {problem}: .ci/run must install it and run as root"
    );
    eprintln!("SKIPPED (not a pass): {problem}");
    false
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A network namespace a test made, deleted when dropped, also when the test fails.
pub struct TestNamespace(pub String);

impl TestNamespace {
    /// Makes `name` (removing a stale one of that name first).
    pub fn create(name: &str) -> Self {
        let _ = Command::new("ip").args(["netns", "del", name]).output();
        let added = Command::new("ip")
            .args(["netns", "add", name])
            .output()
            .unwrap();
        assert!(
            added.status.success(),
            "ip netns add {name}: {}",
            String::from_utf8_lossy(&added.stderr)
        );
        Self(name.to_string())
    }

    /// Runs a shell command line inside the namespace; its stdout. Fails the test if the
    /// command fails.
    pub fn sh(&self, line: &str) -> String {
        let output = Command::new("ip")
            .args(["netns", "exec", &self.0, "sh", "-c", line])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "in {}: {line}\n{}",
            self.0,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

/// Held by every test that makes network namespaces or runs a cleanup of leftovers: a run's
/// cleanup would otherwise race the cleanup test for the leftovers it plants.
pub fn namespaces() -> MutexGuard<'static, ()> {
    static NAMESPACES: Mutex<()> = Mutex::new(());
    NAMESPACES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Sends SIGINT to a running `udprange` after `after` and returns its output and how long
/// it took to end after the signal.
pub fn interrupted(args: &[&str], after: Duration) -> (Output, Duration) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_udprange"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    std::thread::sleep(after);
    let started = Instant::now();
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    loop {
        if child.try_wait().unwrap().is_some() {
            let elapsed = started.elapsed();
            return (child.wait_with_output().unwrap(), elapsed);
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "udprange did not stop within 10 s of Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs the binary with `args` to its end.
pub fn udprange(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_udprange"))
        .args(args)
        .output()
        .unwrap()
}

/// The JSON on a run's stdout; fails the test with its stderr when there is none.
pub fn json_of(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON on stdout ({e}): {}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// A file in the temporary directory, named for this process, removed when dropped.
pub struct TempFile(pub std::path::PathBuf);

impl TempFile {
    pub fn new(name: &str, text: &str) -> Self {
        let path = std::env::temp_dir().join(format!("udprange-{}-{name}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        Self(path)
    }

    pub fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The network namespaces that exist now, as `ip netns list` prints them.
pub fn netns_list() -> String {
    let output = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A JSON report without its provenance (the first three keys: `udprange_version`,
/// `command_line`, `started_at`, one line each): the result, to compare byte for byte.
pub fn result_of(json: &[u8]) -> String {
    let text = String::from_utf8_lossy(json);
    let mut lines = text.split_inclusive('\n');
    let first = lines.next().unwrap_or_default();
    let provenance: Vec<&str> = lines.by_ref().take(3).collect();
    assert!(
        provenance.len() == 3
            && provenance[0].starts_with("  \"udprange_version\": ")
            && provenance[1].starts_with("  \"command_line\": ")
            && provenance[2].starts_with("  \"started_at\": "),
        "no provenance in {text}"
    );
    first.to_string() + &lines.collect::<String>()
}
