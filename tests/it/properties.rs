//! Property tests: the allocator's invariants, the sizing rule, and no panic on any input.

use std::collections::HashMap;

use proptest::prelude::*;
use udprange::model::{
    AllocatorConfig, Closed, Port, PortAllocator, PortKey, PortRange, ServerOs, SessionRef,
    SharingRule,
};
use udprange::plan::{ServerSpec, Transfers, size};

#[derive(Debug, Clone)]
enum Op {
    Open {
        account: u64,
    },
    /// Close the i-th open session (modulo the number open).
    Close(usize),
    /// Expire the i-th lingering key.
    Expire(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u64..6).prop_map(|account| Op::Open { account }),
        2 => any::<usize>().prop_map(Op::Close),
        1 => any::<usize>().prop_map(Op::Expire),
    ]
}

fn rule() -> impl Strategy<Value = SharingRule> {
    prop_oneof![
        Just(SharingRule::PerSession),
        Just(SharingRule::PerAccount),
        Just(SharingRule::Shared),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// No port is ever held by two keys at once, every key keeps one port while it holds
    /// one, and with first fit the highest port in use never exceeds the peak number of
    /// keys held at once plus the occupied ports below it.
    #[test]
    fn allocator_invariants(
        rule in rule(),
        base in 33001u16..33010,
        cap_extra in proptest::option::of(0u16..40),
        occupied in proptest::collection::btree_set(33001u16..33060, 0..12),
        linger in any::<bool>(),
        ops in proptest::collection::vec(op(), 1..400),
    ) {
        let mut config = AllocatorConfig::new(rule, base)
            .with_occupied(occupied.iter().copied())
            .with_linger(linger);
        if let Some(extra) = cap_extra {
            config = config.with_max_port(base + extra);
        }
        let mut ports = PortAllocator::new(config).unwrap();
        let mut open: Vec<SessionRef> = Vec::new();
        let mut lingering: Vec<(PortKey, u64)> = Vec::new();
        let mut holder_of: HashMap<Port, PortKey> = HashMap::new();
        let mut next_session = 0;
        let mut peak_keys = 0;
        for op in ops {
            match op {
                Op::Open { account } => {
                    let session = SessionRef { session: next_session, account };
                    next_session += 1;
                    let key = rule.key(session);
                    match ports.open(session) {
                        Ok(port) => {
                            prop_assert!(port >= base && !occupied.contains(&port));
                            if let Some(cap) = cap_extra { prop_assert!(port <= base + cap); }
                            let holder = *holder_of.entry(port).or_insert(key);
                            prop_assert_eq!(holder, key, "port {} held by two keys", port);
                            lingering.retain(|(k, _)| *k != key);
                            open.push(session);
                        }
                        Err(_) => {
                            // Refused only when every allowed port is taken.
                            prop_assert!(ports.port_of(key).is_none());
                            prop_assert_eq!(ports.free_ports(), 0);
                        }
                    }
                }
                Op::Close(i) if !open.is_empty() => {
                    let session = open.swap_remove(i % open.len());
                    let key = rule.key(session);
                    match ports.close(session).unwrap() {
                        Closed::StillShared { port } => prop_assert_eq!(holder_of[&port], key),
                        Closed::Freed { port } => { holder_of.remove(&port); }
                        Closed::Lingering { ticket, .. } => lingering.push((key, ticket)),
                    }
                }
                Op::Expire(i) if !lingering.is_empty() => {
                    let (key, ticket) = lingering.swap_remove(i % lingering.len());
                    let port = ports.expire(key, ticket).expect("ticket is current");
                    prop_assert_eq!(holder_of.remove(&port), Some(key));
                }
                _ => {}
            }
            prop_assert_eq!(ports.held_ports(), holder_of.len());
            peak_keys = peak_keys.max(holder_of.len());
            if let Some(&highest) = holder_of.keys().max() {
                let occupied_below = occupied.range(base..highest).count();
                prop_assert!(
                    usize::from(highest - base) < peak_keys + occupied_below,
                    "highest {} with peak {} and {} occupied below", highest, peak_keys, occupied_below
                );
            }
        }
    }

    /// The deterministic range holds exactly the ports needed plus the occupied ports inside.
    #[test]
    fn sized_range_skips_exactly_the_occupied(
        os in prop_oneof![Just(ServerOs::Windows), Just(ServerOs::Macos), Just(ServerOs::Linux)],
        concurrent in 1u64..200,
        sessions in 1u64..5,
        accounts in proptest::option::of(1u64..50),
        occupied in proptest::collection::btree_set(33001u16..33300, 0..30),
    ) {
        let mut server = ServerSpec::new(os);
        server.occupied = occupied.clone();
        let transfers = Transfers { concurrent, sessions_per_transfer: sessions, accounts };
        let sizing = size(&server, &transfers).unwrap();
        let inside = occupied.range(sizing.udp_range.first()..=sizing.udp_range.last()).count();
        prop_assert_eq!(u64::from(sizing.udp_range.len()), sizing.ports_needed + inside as u64);
        prop_assert!(!occupied.contains(&sizing.udp_range.first()));
        prop_assert!(!occupied.contains(&sizing.udp_range.last()));
        let expected = match os {
            ServerOs::Windows => concurrent * sessions,
            ServerOs::Linux => 1,
            _ => accounts.map_or(concurrent, |a| a.min(concurrent)),
        };
        prop_assert_eq!(sizing.ports_needed, expected);
    }

    #[test]
    fn port_ranges_round_trip(first in 1u16.., len in 0u16..) {
        let last = first.saturating_add(len);
        let range = PortRange::new(first, last).unwrap();
        prop_assert_eq!(range.to_string().parse::<PortRange>().unwrap(), range);
        prop_assert_eq!(range.len(), u32::from(last - first) + 1);
    }

    #[test]
    fn parsers_never_panic(text in ".{0,24}") {
        let _ = text.parse::<PortRange>();
        let _ = text.parse::<ServerOs>();
        let _ = text.parse::<udprange::units::Duration>();
        let _ = text.parse::<udprange::units::Rate>();
        let _ = text.parse::<udprange::units::Probability>();
        let _ = text.parse::<udprange::firewall::Peer>();
    }

    /// Any command line: no panic; bad input is exit 2, one line on stderr, nothing on stdout.
    #[test]
    fn cli_never_panics(args in proptest::collection::vec(cli_arg(), 0..8)) {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let argv: Vec<String> = std::iter::once("udprange".to_string()).chain(args.clone()).collect();
        let code = udprange::cli::run(argv, &mut out, &mut err);
        let stderr = String::from_utf8_lossy(&err);
        prop_assert!(code == 0 || code == 2, "{:?} exited {}", args, code);
        let is_plan_or_rules = matches!(args.first().map(String::as_str), Some("plan" | "rules"));
        if code == 2 && is_plan_or_rules {
            prop_assert!(out.is_empty(), "{:?} wrote stdout", args);
            prop_assert_eq!(stderr.lines().count(), 1, "{:?}: {}", args, stderr);
        }
        if code == 0 {
            prop_assert!(stderr.is_empty());
        }
    }
}

fn cli_arg() -> impl Strategy<Value = String> {
    let words = [
        "plan",
        "rules",
        "--os",
        "windows",
        "macos",
        "linux",
        "freebsd",
        "--concurrent",
        "--base-port",
        "--max-port",
        "--accounts",
        "--occupied",
        "--sessions-per-transfer",
        "--no-udp-port-reuse",
        "--ssh-port",
        "--vlink",
        "--offered-load",
        "--arrival-rate",
        "--mean-duration",
        "--target-blocking",
        "--sources",
        "--format",
        "json",
        "csv",
        "--syntax",
        "pf",
        "iptables",
        "powershell",
        "--side",
        "server",
        "--peer",
        "any",
        "--default-drop",
        "0",
        "1",
        "3",
        "10",
        "65535",
        "65536",
        "33001-33010",
        "-5",
        "NaN",
        "1e9",
        "120/h",
        "4m",
        "0.1%",
        "198.51.100.7",
        "2001:db8::/32",
    ];
    prop_oneof![
        4 => proptest::sample::select(words.to_vec()).prop_map(str::to_string),
        1 => "[ -~]{0,12}",
        1 => (0u64..100_000).prop_map(|n| n.to_string()),
    ]
}
