//! Property tests for scenario files and the simulator: no input makes them panic, errors
//! always point into the file, the one-pass shortcut equals explicit runs for any per-session
//! scenario, and blocking never rises with more ports when each session is its own key.

use std::path::Path;

use proptest::prelude::*;
use udprange::model::PortRange;
use udprange::scenario::{SEED_EXAMPLE, Scenario};
use udprange::sim::{Context, Method, Options, RunSpec, replication_rng, run, simulate, summarize};

/// Lines of real scenarios, shuffled and mangled, make the nastiest inputs.
fn scenario_text() -> impl Strategy<Value = String> {
    let lines: Vec<String> = SEED_EXAMPLE
        .lines()
        .chain(include_str!("../../scenarios/partners-narrow-range.toml").lines())
        .chain(include_str!("../../scenarios/busy-hour-enterprise.toml").lines())
        .chain(include_str!("../../scenarios/retries.toml").lines())
        .map(str::to_string)
        .collect();
    let line = prop_oneof![
        6 => proptest::sample::select(lines),
        1 => "[a-z_]{1,12} = [-0-9a-z\".%/]{0,10}",
        1 => "[\\[\\]{}=\",.0-9a-z ]{0,20}",
    ];
    proptest::collection::vec(line, 0..30).prop_map(|lines| lines.join("\n"))
}

fn mutate(text: &str, at: usize, replacement: &str) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    let at = at % (chars.len() + 1);
    let end = (at + replacement.len()).min(chars.len());
    chars.splice(at..end, replacement.chars());
    chars.into_iter().collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parsing_never_panics_and_errors_point_into_the_file(text in scenario_text()) {
        if let Err(e) = Scenario::parse(&text, Path::new("p.toml")) {
            let lines = text.lines().count().max(1);
            prop_assert!(e.line >= 1 && e.line <= lines + 1, "line {} of {}: {}", e.line, lines, e);
            prop_assert!(e.column >= 1, "{e}");
            prop_assert_eq!(e.to_string().lines().count(), 1, "{}", e);
        }
    }

    #[test]
    fn mutated_seed_example_never_panics(at in 0usize..2000, replacement in "[-0-9a-z\"=\\[\\]{}., %/]{0,6}") {
        let text = mutate(SEED_EXAMPLE, at, &replacement);
        let _ = Scenario::parse(&text, Path::new("m.toml"));
    }
}

/// A small random per-session scenario: Poisson load, any holding distribution, occupied
/// ports, a cap, linger, transfers of one to three sessions.
fn per_session_scenario() -> impl Strategy<Value = String> {
    (
        1u32..40,
        prop_oneof![
            Just("{ dist = \"exponential\", mean = \"1s\" }"),
            Just("{ dist = \"lognormal\", mean = \"1s\", sd = \"3s\" }"),
            Just("{ dist = \"fixed\", mean = \"1s\" }"),
            Just("{ dist = \"pareto\", mean = \"1s\", shape = 1.5 }"),
        ],
        proptest::collection::btree_set(33001u16..33020, 0..4),
        proptest::option::of(33005u16..33040),
        proptest::option::of(0u32..3000),
        any::<u64>(),
        1u32..4,
    )
        .prop_map(|(rate, holding, occupied, cap, linger_ms, seed, per_transfer)| {
            let occupied: Vec<String> = occupied.iter().map(ToString::to_string).collect();
            let cap = cap.map_or(String::new(), |c| format!("max_port = {}\n", c.max(33021)));
            let linger = linger_ms.map_or(String::new(), |ms| format!("linger = \"{ms}ms\"\n"));
            format!(
                "name = \"prop\"\nseed = {seed}\n[server]\nos = \"windows\"\noccupied = [{}]\n{cap}{linger}\
                 [workload]\narrivals = \"poisson\"\nrate = \"{rate}/s\"\nholding = {holding}\n\
                 sessions_per_transfer = {per_transfer}\nsessions = 1500\nreplications = 2\n",
                occupied.join(", ")
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// The shortcut the per-session rule relies on, for arbitrary scenarios: the failures
    /// read off one unconstrained run equal those of a run whose client allows n ports.
    #[test]
    fn one_pass_equals_explicit_for_any_per_session_scenario(text in per_session_scenario()) {
        let s = Scenario::parse(&text, Path::new("prop.toml")).unwrap();
        prop_assert_eq!(Method::for_scenario(&s).0, Method::OnePass);
        let results = simulate(&s, Options::default()).unwrap();
        for result in &results {
            let slots = usize::from(result.peak_port.saturating_sub(s.server.base_port)) + 1;
            for n in [1, slots / 3, slots / 2, slots - 1, slots, slots + 2] {
                let Ok(range) = PortRange::from_count(s.server.base_port, n.max(1) as u64) else { continue };
                let explicit = run(&s, RunSpec { allowed: Some(range), series: false }, replication_rng(s.seed, result.replication));
                prop_assert_eq!(result.with_ports(n.max(1)), explicit.counts.groups[0], "n = {}", n);
            }
        }
        // More ports never block more, each replication and in the summary.
        let summary = summarize(Context::of(&s), &results);
        for pair in summary.blocking.windows(2) {
            prop_assert!(pair[1].failed <= pair[0].failed, "{:?}", pair);
        }
    }
}
