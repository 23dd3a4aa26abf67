use super::*;

const CORP_JSON: &str = include_str!("../../../tests/data/rulesets/corp.json");
const CORP_RULES: &str = include_str!("../../../tests/data/rulesets/corp.rules");

fn packet(iif: Option<&str>) -> Packet {
    Packet {
        tcp: false,
        saddr: Ipv4Addr::new(198, 18, 0, 2),
        daddr: Ipv4Addr::new(198, 19, 0, 1),
        dport: 0,
        in_iface: iif.map(str::to_string),
        out_iface: None,
    }
}

fn ranges(text: &str) -> Vec<PortRange> {
    text.split(',').map(|r| r.trim().parse().unwrap()).collect()
}

/// Both formats of the same corporate policy give the same answer: sets, ranges, a verdict
/// map, a jump whose chain returns for one port, an undecidable rate limit, a prefix match
/// negated, conntrack state, an interface rule decided by --iif.
#[test]
fn both_formats_of_one_policy_agree_port_by_port() {
    let nft = nft::parse(CORP_JSON).unwrap();
    let ipt = iptables::parse(CORP_RULES).unwrap();
    assert_eq!(nft.skipped, ["table ip6 v6: IPv6 only, not this IPv4 path"]);
    for ruleset in [&nft, &ipt] {
        let a = audit(
            ruleset,
            Host::Router,
            &packet(Some("eth0")),
            "33001-33010".parse().unwrap(),
            22,
        )
        .unwrap();
        assert_eq!(
            a.passes,
            ranges("33001-33008, 33020, 40000, 50000-50004, 50006-50010")
        );
        assert_eq!(a.missing, ranges("33009-33010"));
        assert_eq!(a.extra, ranges("33020, 40000, 50000-50004, 50006-50010"));
        assert_eq!(a.control, Fate::Passes);
        assert_eq!(a.undecided.len(), 1, "{:?}", a.undecided);
        let (range, why) = &a.undecided[0];
        assert_eq!(*range, PortRange::single(60000).unwrap());
        assert!(why.iter().any(|w| w.contains("limit")), "{why:?}");
        // On the client or the server, this forward-only policy passes everything.
        let everywhere = audit(
            ruleset,
            Host::Client,
            &packet(None),
            "33001-33010".parse().unwrap(),
            22,
        )
        .unwrap();
        assert_eq!(everywhere.passes, ranges("1-65535"));
        assert!(everywhere.missing.is_empty());
    }
}

/// An interface match nobody named is undecided, never assumed; from outside the corporate
/// network, nothing passes.
#[test]
fn what_cannot_be_decided_is_named_and_sources_matter() {
    let nft = nft::parse(CORP_JSON).unwrap();
    let a = audit(
        &nft,
        Host::Router,
        &packet(None),
        "33001-33010".parse().unwrap(),
        22,
    )
    .unwrap();
    assert!(a.passes.is_empty(), "{:?}", a.passes);
    let needed: Vec<_> = a
        .undecided
        .iter()
        .filter(|(r, _)| r.contains(33001))
        .collect();
    assert_eq!(needed.len(), 1);
    assert!(
        needed[0]
            .1
            .iter()
            .any(|w| w.contains("the input interface (give --iif)")),
        "{:?}",
        needed[0].1
    );
    assert!(matches!(a.control, Fate::Undecided(_)));
    let outsider = Packet {
        saddr: Ipv4Addr::new(203, 0, 113, 9),
        ..packet(Some("eth0"))
    };
    let a = audit(
        &nft,
        Host::Router,
        &outsider,
        "33001-33010".parse().unwrap(),
        22,
    )
    .unwrap();
    assert!(a.passes.is_empty() && a.undecided.is_empty());
    assert_eq!(a.missing, ranges("33001-33010"));
    assert_eq!(a.control, Fate::Dropped);
}

/// Jumps come back, gotos do not, a return in a base chain takes its policy, base chains
/// run in priority order and each must accept.
#[test]
fn jumps_gotos_returns_and_priorities() {
    let text = "\
*filter
:FORWARD ACCEPT [0:0]
:A - [0:0]
:B - [0:0]
-A FORWARD -p udp --dport 1:100 -j A
-A FORWARD -p udp --dport 101:200 -g B
-A FORWARD -p udp --dport 1:300 -j DROP
-A A -p udp --dport 50 -j ACCEPT
-A B -p udp --dport 150 -j DROP
COMMIT
*mangle
:FORWARD ACCEPT [0:0]
-A FORWARD -p udp --dport 7 -j DROP
COMMIT
";
    let r = iptables::parse(text).unwrap();
    let fate = |port| {
        r.fate(
            Host::Router,
            &Packet {
                dport: port,
                ..packet(None)
            },
        )
    };
    assert_eq!(fate(50), Fate::Passes, "accepted in A");
    assert_eq!(fate(51), Fate::Dropped, "A falls back, then the drop");
    assert_eq!(fate(7), Fate::Dropped, "mangle (-150) drops before filter");
    assert_eq!(fate(150), Fate::Dropped, "dropped in B");
    assert_eq!(
        fate(151),
        Fate::Passes,
        "B falls off a goto: the base chain's policy"
    );
    assert_eq!(fate(250), Fate::Dropped);
    assert_eq!(fate(301), Fate::Passes, "the policy");
}

/// A loop of jumps ends as undecided, not as a hang or a stack overflow.
#[test]
fn loops_are_bounded() {
    let text = "*filter\n:FORWARD DROP [0:0]\n:A - [0:0]\n-A FORWARD -j A\n-A A -j A\nCOMMIT\n";
    let r = iptables::parse(text).unwrap();
    match r.fate(
        Host::Router,
        &Packet {
            dport: 1,
            ..packet(None)
        },
    ) {
        Fate::Undecided(why) => assert!(why.iter().any(|w| w.contains("a loop?")), "{why:?}"),
        other => panic!("{other:?}"),
    }
}

/// A ruleset too large to evaluate ends with one error in bounded time, not a hang.
#[test]
fn a_huge_ruleset_is_refused_in_bounded_time() {
    let mut text = String::from("*filter\n:FORWARD DROP [0:0]\n");
    for port in 1..=15_000u32 {
        text.push_str(&format!("-A FORWARD -p udp --dport {} -j LOG\n", port * 4));
    }
    text.push_str("COMMIT\n");
    let r = iptables::parse(&text).unwrap();
    let e = audit(
        &r,
        Host::Router,
        &packet(None),
        "33001-33010".parse().unwrap(),
        22,
    )
    .unwrap_err();
    assert!(e.starts_with("too large to audit: its 15000 rules"), "{e}");
}

mod equivalence {
    use super::*;
    use proptest::prelude::*;

    /// One generated rule: a destination port range (maybe negated), a protocol, an action.
    fn rule() -> impl Strategy<Value = String> {
        (
            1u32..300,
            0u32..40,
            any::<bool>(),
            prop_oneof![Just("udp"), Just("tcp")],
            prop_oneof![
                Just("ACCEPT"),
                Just("DROP"),
                Just("RETURN"),
                Just("SUB"),
                Just("LOG")
            ],
        )
            .prop_map(|(lo, width, negate, proto, target)| {
                let bang = if negate { "! " } else { "" };
                format!("-p {proto} {bang}--dport {lo}:{} -j {target}", lo + width)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Evaluating one port per interval between breakpoints gives exactly what
        /// evaluating every port does.
        #[test]
        fn intervals_agree_with_every_port(
            forward in prop::collection::vec(rule(), 0..8),
            sub in prop::collection::vec(rule(), 0..4),
            policy in prop_oneof![Just("ACCEPT"), Just("DROP")],
        ) {
            let mut text = format!("*filter\n:FORWARD {policy} [0:0]\n:SUB - [0:0]\n");
            for r in &forward {
                text.push_str(&format!("-A FORWARD {r}\n"));
            }
            // No jumps from SUB to itself: the kernel refuses loops.
            for r in sub.iter().map(|r| r.replace("-j SUB", "-j RETURN")) {
                text.push_str(&format!("-A SUB {r}\n"));
            }
            text.push_str("COMMIT\n");
            let ruleset = iptables::parse(&text).unwrap();
            let needed: PortRange = "100-120".parse().unwrap();
            let fast = audit(&ruleset, Host::Router, &packet(None), needed, 22).unwrap();
            let every: Vec<Port> = (1..=Port::MAX)
                .filter(|&p| {
                    ruleset.fate(Host::Router, &Packet { dport: p, ..packet(None) })
                        == Fate::Passes
                })
                .collect();
            prop_assert_eq!(fast.passes, PortRange::covering(every), "{}", text);
        }
    }
}
