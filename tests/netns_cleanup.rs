//! Cleanup of namespaces left by killed `blast --backend netns` runs touches only names of the
//! tool's exact pattern, `udprange-<pid>-<run>-client|server`, whose owner is gone: needs
//! root and `ip`; without them it says so loudly and skips, and under CI (`CI=true`) that
//! skip is a failure. A test binary of its own, so no other test's cleanup runs meanwhile.

use std::process::Command;

use udprange::blast::netns;

/// Root and `ip`, or an explanation and a skip (a failure under CI).
fn can_make_namespaces() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let ip = Command::new("ip").arg("-V").output().is_ok();
    let problem = match (ip, root) {
        (true, true) => return true,
        (false, _) => "`ip` (iproute2) is not installed",
        (true, false) => "making network namespaces needs root",
    };
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    assert!(
        !ci,
        "CI=true but {problem}: .ci/run must install iproute2 and run as root"
    );
    eprintln!("SKIPPED (not a pass): {problem}");
    false
}

/// Namespaces made by the test, deleted when dropped if still there, also on failure.
struct Made(Vec<String>);

impl Made {
    fn add(&mut self, name: &str) {
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
        self.0.push(name.to_string());
    }
}

impl Drop for Made {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", name]).output();
        }
    }
}

#[test]
fn cleanup_removes_only_leftovers_of_its_own_pattern() {
    if !can_make_namespaces() {
        return;
    }
    let mut made = Made(Vec::new());
    // Not the tool's pattern: someone else's, never touched.
    let foreign = "udprange-mine";
    // The pattern, pid 1: init, which is never a run of this tool.
    let of_init = "udprange-1-0-client";
    // The pattern, this test's pid: the owner runs.
    let live = format!("udprange-{}-4000000-server", std::process::id());
    // The pattern, a pid no process can have (above the kernel's limit): the owner is gone.
    let gone = "udprange-4194999-4000000-client";
    for name in [foreign, of_init, &live, gone] {
        made.add(name);
    }

    let removed = netns::remove_leftovers();

    assert!(netns::exists(foreign), "{foreign} was removed: {removed:?}");
    assert!(netns::exists(&live), "{live} was removed: {removed:?}");
    assert!(!netns::exists(of_init), "{of_init} survived: {removed:?}");
    assert!(!netns::exists(gone), "{gone} survived: {removed:?}");
    for (name, why) in [(of_init, "init"), (gone, "gone")] {
        assert!(
            removed.iter().any(|m| m.contains(name) && m.contains(why)),
            "no message for {name}: {removed:?}"
        );
    }
}
