//! Cleanup of namespaces left by killed `blast --backend netns` runs touches only names of the
//! tool's exact pattern, `udprange-<pid>-<run>-client|server`, whose owner is gone: needs
//! root and `ip`; without them it says so loudly and skips, and under CI (`CI=true`) that
//! skip is a failure. It holds `common::namespaces()`, so no other test's cleanup runs
//! meanwhile.

use std::process::Command;

use udprange::blast::netns;

use crate::common::{TestNamespace, is_root, skip};

/// Root and `ip`, or an explanation and a skip (a failure under CI).
fn can_make_namespaces() -> bool {
    match (Command::new("ip").arg("-V").output().is_ok(), is_root()) {
        (true, true) => true,
        (false, _) => skip("`ip` (iproute2) is not installed"),
        (true, false) => skip("making network namespaces needs root"),
    }
}

#[test]
fn cleanup_removes_only_leftovers_of_its_own_pattern() {
    if !can_make_namespaces() {
        return;
    }
    let _namespaces = crate::common::namespaces();
    let mut made = Vec::new();
    // Not the tool's pattern: someone else's, never touched.
    let foreign = "udprange-mine";
    // The pattern, pid 1: init, which is never a run of this tool.
    let of_init = "udprange-1-0-client";
    // The pattern, this test's pid: the owner runs.
    let live = format!("udprange-{}-4000000-server", std::process::id());
    // The pattern, a pid no process can have (above the kernel's limit): the owner is gone.
    let gone = "udprange-4194999-4000000-client";
    for name in [foreign, of_init, &live, gone] {
        made.push(TestNamespace::create(name));
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
