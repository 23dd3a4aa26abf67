//! `udprange audit`: the static answer for rulesets too narrow, too wide and undecidable,
//! in both formats, hostile files, and `--confirm` against the kernel (root).

use crate::blast_netns::kernel_path;
use crate::common::{TempFile, json_of as json, udprange};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/rulesets");

fn ranges(value: &serde_json::Value) -> Vec<(u64, u64)> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["first"].as_u64().unwrap(), r["last"].as_u64().unwrap()))
        .collect()
}

/// Too narrow: the corporate policy drops 33009-33010 of the seed's 33001-33010 (exit 1),
/// and passes 12 ports the load does not need; its rate-limited rule is named, not guessed.
#[test]
fn too_narrow_is_missing_and_exit_1() {
    let file = format!("{DATA}/corp.rules");
    let output = udprange(&["audit", &file, "--iif", "eth0", "--format", "json"]);
    assert_eq!(output.status.code(), Some(1));
    let r = json(&output);
    assert_eq!(r["sufficient"], false);
    assert_eq!(r["format"], "iptables-save");
    assert_eq!(
        (
            r["udp_range"]["first"].as_u64(),
            r["udp_range"]["last"].as_u64()
        ),
        (Some(33001), Some(33010))
    );
    assert_eq!(ranges(&r["missing"]), [(33009, 33010)]);
    assert_eq!(
        ranges(&r["passes"]),
        [
            (33001, 33008),
            (33020, 33020),
            (40000, 40000),
            (50000, 50004),
            (50006, 50010)
        ]
    );
    assert_eq!(
        ranges(&r["extra"]),
        [
            (33020, 33020),
            (40000, 40000),
            (50000, 50004),
            (50006, 50010)
        ]
    );
    assert_eq!(r["control"], "passes");
    let undecided = r["undecided"].as_array().unwrap();
    assert_eq!(undecided.len(), 1, "{r:#}");
    assert_eq!(undecided[0]["first"], 60000);
    assert!(
        undecided[0]["why"][0]
            .as_str()
            .unwrap()
            .contains("--limit 10/sec")
    );
    assert!(
        r["summary"]
            .as_str()
            .unwrap()
            .starts_with("insufficient: the ruleset drops UDP 33009-33010; this load needs UDP 33001-33010 and TCP 33001")
    );
    // The text report says the same.
    let text = udprange(&["audit", &file, "--iif", "eth0"]);
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.contains("missing    UDP 33009-33010"), "{text}");
    assert!(
        text.contains("extra      UDP 33020,40000,50000-50004,50006-50010"),
        "{text}"
    );
}

/// Too wide: a ruleset that passes 33001-34000 is sufficient for 33001-33010 (exit 0) and
/// says which 990 ports are extra; the same on the server's input hook, where a forward-only
/// policy would pass everything.
#[test]
fn too_wide_is_extra_and_a_finding() {
    let wide = TempFile::new(
        "wide.rules",
        "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n-A FORWARD -p tcp --dport 33001 -j ACCEPT\n-A FORWARD -p udp --dport 33001:34000 -j ACCEPT\n-A INPUT -p tcp --dport 33001 -j ACCEPT\n-A INPUT -s 198.18.0.0/16 -p udp -m multiport --dports 33001:33010 -j ACCEPT\nCOMMIT\n",
    );
    let output = udprange(&["audit", wide.path(), "--format", "json"]);
    assert_eq!(output.status.code(), Some(0));
    let r = json(&output);
    assert_eq!(r["sufficient"], true);
    assert_eq!(ranges(&r["missing"]), []);
    assert_eq!(ranges(&r["extra"]), [(33011, 34000)]);
    assert!(
        r["summary"]
            .as_str()
            .unwrap()
            .contains("it also passes 990 port(s)")
    );
    // On the server, the input chain is exact.
    let output = udprange(&["audit", wide.path(), "--at", "server", "--format", "json"]);
    assert_eq!(output.status.code(), Some(0));
    let r = json(&output);
    assert_eq!(ranges(&r["passes"]), [(33001, 33010)]);
    assert_eq!(ranges(&r["extra"]), []);
    // More transfers than it opens: 12 on windows need 33001-33012.
    let output = udprange(&[
        "audit",
        wide.path(),
        "--at",
        "server",
        "--concurrent",
        "12",
        "--format",
        "json",
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(ranges(&json(&output)["missing"]), [(33011, 33012)]);
}

/// A match the evaluator cannot decide is named, never taken as accept or drop: exit 3.
#[test]
fn undecidable_matches_are_named_and_exit_3() {
    let by_interface = TempFile::new(
        "iface.rules",
        "*filter\n:FORWARD DROP [0:0]\n-A FORWARD -i eth0 -p tcp --dport 33001 -j ACCEPT\n-A FORWARD -i eth0 -p udp --dport 33001:33010 -j ACCEPT\nCOMMIT\n",
    );
    let output = udprange(&["audit", by_interface.path(), "--format", "json"]);
    assert_eq!(output.status.code(), Some(3));
    let r = json(&output);
    assert_eq!(r["control"], "undecided");
    assert!(r["summary"].as_str().unwrap().starts_with("undecided:"));
    let why = r["undecided"][0]["why"][0].as_str().unwrap();
    assert!(why.contains("the input interface (give --iif)"), "{why}");
    // Told the interface, it is decided.
    let output = udprange(&["audit", by_interface.path(), "--iif", "eth0"]);
    assert_eq!(output.status.code(), Some(0));
    let output = udprange(&["audit", by_interface.path(), "--iif", "eth1"]);
    assert_eq!(output.status.code(), Some(1));
}

/// Hostile or absurd files: one clear error naming the file (and line), exit 2, no output.
#[test]
fn hostile_rulesets_are_one_error() {
    let cases = [
        ("garbage.txt", "hello world\n", "begins neither"),
        ("empty.rules", "", "empty"),
        (
            "cut.rules",
            "*filter\n:FORWARD DROP [0:0]\n-A FORWARD -p udp --dport 1 -j ACCEPT\n",
            "no COMMIT",
        ),
        (
            "undeclared.rules",
            "*filter\n-A NOPE -j ACCEPT\nCOMMIT\n",
            "line 2: chain NOPE",
        ),
        (
            "quote.rules",
            "*filter\n:FORWARD DROP [0:0]\n-A FORWARD -m comment --comment \"x -j ACCEPT\nCOMMIT\n",
            "line 3: an unterminated quote",
        ),
        ("notnft.json", "{\"hello\": 1}", "no \"nftables\" array"),
        ("broken.json", "{\"nftables\": [", "not JSON"),
    ];
    for (name, text, expect) in cases {
        let file = TempFile::new(name, text);
        let output = udprange(&["audit", file.path()]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{name}: {stderr}");
        assert!(
            stderr.contains(file.path()) && stderr.contains(expect),
            "{name}: {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(output.stdout.is_empty());
    }
    let output = udprange(&["audit", "/nonexistent/fw.nft"]);
    assert_eq!(output.status.code(), Some(2));
}

/// The kernel agrees with the static answer on the tests' rulesets, in both formats and at
/// each host, and nothing is left behind.
#[test]
fn confirm_agrees_with_the_kernel() {
    let Some(_namespaces) = kernel_path() else {
        return;
    };
    let before = crate::common::netns_list();
    let wide = TempFile::new(
        "wide-confirm.rules",
        "*filter\n:INPUT DROP [0:0]\n-A INPUT -p tcp --dport 33001 -j ACCEPT\n-A INPUT -s 198.18.0.0/16 -p udp -m multiport --dports 33001:33008,40000:40100 -j ACCEPT\nCOMMIT\n",
    );
    let corp_nft = format!("{DATA}/corp.nft");
    let corp_json = format!("{DATA}/corp.json");
    for (file, at) in [
        (corp_nft.as_str(), "router"),
        (corp_json.as_str(), "router"),
        (wide.path(), "server"),
    ] {
        let output = udprange(&["audit", file, "--at", at, "--confirm", "--format", "json"]);
        let r = json(&output);
        assert_eq!(r["confirm"]["agree"], true, "{file}: {r:#}");
        assert_eq!(output.status.code(), Some(1), "both too narrow: {file}");
        assert_eq!(r["confirm"]["unsent"], serde_json::json!([]));
    }
    let after = crate::common::netns_list();
    assert_eq!(before, after, "namespaces left behind");
}
