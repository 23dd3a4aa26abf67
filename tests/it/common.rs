//! Helpers shared by the test files (each uses some of them).
#![allow(dead_code)]

use std::process::Command;
use std::sync::{Mutex, MutexGuard};

use udprange::blast::{self, BlastConfig, BlastReport};

/// Runs `config` to its end on a two-worker runtime, as the CLI would.
pub fn run_blast(config: &BlastConfig) -> BlastReport {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    runtime.block_on(blast::run(config, stopped)).unwrap().0
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
