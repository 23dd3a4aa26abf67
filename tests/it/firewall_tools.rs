//! The rules `udprange rules` prints load in the real tools: `nft -c -f` (nftables) and
//! `iptables-restore --test` (iptables); loaded again and again, in a network namespace of
//! the test's own, with the command their header prints, they leave exactly what one load
//! leaves. Without root or the tools these tests say so loudly and skip; under CI
//! (`CI=true`) a skip is a failure, because CI installs them.

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

use crate::common::{TestNamespace as Namespace, is_root, skip};

/// The tool's path if it can be used here; otherwise explains and skips (fails under CI).
fn tool(name: &str) -> Option<&str> {
    let found = Command::new(name).arg("--version").output().is_ok();
    match (found, is_root()) {
        (true, true) => Some(name),
        (false, _) => skip(&format!("`{name}` is not installed")).then_some(name),
        (true, false) => skip(&format!(
            "`{name}` needs root to check rules against the kernel"
        ))
        .then_some(name),
    }
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

/// Loads `text` in `ns` as its header says (`# Load with: …FILE…`).
fn load_as_the_header_says(ns: &Namespace, name: &str, text: &str) {
    let command = text
        .lines()
        .find_map(|l| l.strip_prefix("# Load with: "))
        .unwrap_or_else(|| panic!("no load command in:\n{text}"));
    let path = temp_file(name, text);
    ns.sh(&command.replace("FILE", path.to_str().unwrap()));
    std::fs::remove_file(&path).unwrap();
}

/// Loading the rules three times (the last time for a wider range) leaves exactly what
/// loading the last version once leaves: `show` lists the state in the namespace.
fn loaded_again_replaces(syntax: &str, show: &str) {
    for side in ["client", "server"] {
        let rules = |concurrent: &str| {
            udprange(&[
                "rules",
                "--syntax",
                syntax,
                "--side",
                side,
                "--peer",
                "198.51.100.0/24",
                "--default-drop",
                "--concurrent",
                concurrent,
            ])
        };
        let (first, last) = (rules("10"), rules("12"));
        let again = Namespace::create(&format!(
            "udprange-test-{}-{syntax}-{side}-again",
            std::process::id()
        ));
        for text in [&first, &first, &last] {
            load_as_the_header_says(&again, &format!("{side}.{syntax}"), text);
        }
        let once = Namespace::create(&format!(
            "udprange-test-{}-{syntax}-{side}-once",
            std::process::id()
        ));
        load_as_the_header_says(&once, &format!("{side}.{syntax}"), &last);
        let (after_three, after_one) = (again.sh(show), once.sh(show));
        assert!(after_one.contains("33012"), "{after_one}");
        assert_eq!(
            after_three, after_one,
            "{side} {syntax} rules loaded three times differ from one load"
        );
    }
}

#[test]
fn iptables_rules_loaded_again_leave_one_jump() {
    if tool("iptables-restore").is_none() || tool("ip").is_none() {
        return;
    }
    loaded_again_replaces("iptables", "iptables -S");
    // And in so many words: one jump to each chain.
    let ns = Namespace::create(&format!(
        "udprange-test-{}-iptables-jumps",
        std::process::id()
    ));
    let text = udprange(&["rules", "--syntax", "iptables"]);
    for _ in 0..3 {
        load_as_the_header_says(&ns, "jumps.ipt", &text);
    }
    let listed = ns.sh("iptables -S OUTPUT");
    let jumps = listed
        .lines()
        .filter(|l| *l == "-A OUTPUT -j UDPRANGE-CLIENT")
        .count();
    assert_eq!(jumps, 1, "{listed}");
}

#[test]
fn nftables_rules_loaded_again_leave_one_table() {
    if tool("nft").is_none() || tool("ip").is_none() {
        return;
    }
    loaded_again_replaces("nftables", "nft list ruleset");
}
