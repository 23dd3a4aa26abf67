//! The rules `udprange rules` prints load in the real tools: `nft -c -f` (nftables) and
//! `iptables-restore --test` (iptables). Without root or the tools these tests say so loudly
//! and skip; under CI (`CI=true`) a skip is a failure, because CI installs them.

use std::path::PathBuf;
use std::process::Command;

fn udprange(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_udprange"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// The tool's path if it can be used here; otherwise explains and skips (fails under CI).
fn tool(name: &str) -> Option<&str> {
    let found = Command::new(name).arg("--version").output().is_ok();
    let problem = match (found, is_root()) {
        (false, _) => format!("`{name}` is not installed"),
        (true, false) => format!("`{name}` needs root to check rules against the kernel"),
        (true, true) => return Some(name),
    };
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    assert!(
        !ci,
        "CI=true but {problem}: .ci/run must install it and run as root"
    );
    eprintln!("SKIPPED (not a pass): {problem}");
    None
}

fn temp_file(name: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("udprange-{}-{name}", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs `tool args… FILE` on `text`; returns (success, stderr).
fn check_with(tool: &str, args: &[&str], name: &str, text: &str) -> (bool, String) {
    let path = temp_file(name, text);
    let output = Command::new(tool).args(args).arg(&path).output().unwrap();
    std::fs::remove_file(&path).unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Flag sets covering both sides, peers, drop, Vlink, single ports and every OS rule.
fn variants() -> Vec<Vec<&'static str>> {
    let mut all = Vec::new();
    for side in ["client", "server"] {
        for extra in [
            &[][..],
            &["--peer", "198.51.100.7", "--default-drop"],
            &["--peer", "203.0.113.0/24", "--vlink"],
            &[
                "--os",
                "linux",
                "--ssh-port",
                "33001",
                "--default-drop",
                "--peer",
                "any",
                "--vlink",
            ],
            &["--os", "macos", "--accounts", "3", "--occupied", "33002"],
            &["--offered-load", "10", "--base-port", "40000"],
        ] {
            let mut args = vec!["rules", "--side", side];
            args.extend_from_slice(extra);
            all.push(args);
        }
    }
    all
}

#[test]
fn nftables_rules_load_in_nft() {
    let Some(nft) = tool("nft") else { return };
    let mut cases = variants();
    cases.push(vec!["rules", "--peer", "2001:db8::/32", "--default-drop"]);
    for args in cases {
        let text = udprange(&[&args[..], &["--syntax", "nftables"]].concat());
        let (ok, err) = check_with(nft, &["-c", "-f"], "rules.nft", &text);
        assert!(ok, "{args:?}\n{text}\nnft: {err}");
    }
    // The check can fail: a broken rule is rejected.
    let broken = udprange(&["rules"]).replace("accept", "acept");
    let (ok, _) = check_with(nft, &["-c", "-f"], "broken.nft", &broken);
    assert!(!ok, "nft -c accepted a broken ruleset");
}

#[test]
fn iptables_rules_load_in_iptables_restore() {
    let Some(iptables_restore) = tool("iptables-restore") else {
        return;
    };
    for args in variants() {
        let text = udprange(&[&args[..], &["--syntax", "iptables"]].concat());
        let (ok, err) = check_with(iptables_restore, &["--test"], "rules.ipt", &text);
        assert!(ok, "{args:?}\n{text}\niptables-restore: {err}");
    }
    let broken = udprange(&["rules", "--syntax", "iptables"]).replace("--dport", "--dprot");
    let (ok, _) = check_with(iptables_restore, &["--test"], "broken.ipt", &broken);
    assert!(!ok, "iptables-restore --test accepted a broken ruleset");
}
