//! The simulator against explicit runs, the loss formulas and the seed's example.
//! Each test runs in well under a few seconds.

use std::path::Path;

use udprange::model::PortRange;
use udprange::plan::erlang::LossModel;
use udprange::scenario::Scenario;
use udprange::sim::{
    BlockingPoint, Context, Method, Options, RunSpec, Shard, Summary, replication_rng, run,
    simulate, summarize,
};

fn scenario(text: &str) -> Scenario {
    Scenario::parse(text, Path::new("test.toml")).unwrap_or_else(|e| panic!("{e}"))
}

fn summary(s: &Scenario) -> Summary {
    summarize(Context::of(s), &simulate(s, Options::default()).unwrap())
}

fn poisson(
    os: &str,
    extra_server: &str,
    holding: &str,
    sessions: u64,
    replications: u32,
) -> Scenario {
    scenario(&format!(
        "name = \"t\"\nseed = 7\n[server]\nos = \"{os}\"\n{extra_server}\n[workload]\narrivals = \"poisson\"\n\
         rate = \"10/s\"\nholding = {holding}\nwarmup = \"30s\"\nsessions = {sessions}\nreplications = {replications}\n"
    ))
}

/// Checks simulated blocking against a formula, for every point above `floor`: each must lie
/// within 99.9 % bounds (the 95 % interval stretched by 3.29 / 1.96, so twenty points at once
/// still pass by chance only if the formula is right), and at least 75 % of them inside the
/// 95 % interval itself (points on one curve share a random stream, so they stray
/// together more often than independent ones would). Returns the number of points checked.
fn assert_agrees(
    label: &str,
    points: &[BlockingPoint],
    exact: impl Fn(u64) -> f64,
    floor: f64,
) -> usize {
    let stretch = 3.29 / 1.96;
    let checked: Vec<_> = points.iter().filter(|p| p.probability > floor).collect();
    let mut inside = 0;
    for point in &checked {
        let (p, [lo, hi]) = (point.probability, point.ci95);
        let want = exact(point.ports);
        let (wide_lo, wide_hi) = (p - (p - lo) * stretch, p + (hi - p) * stretch);
        assert!(
            wide_lo <= want && want <= wide_hi,
            "{label}: n={} simulated {p:.5} [{lo:.5}, {hi:.5}], formula {want:.5}",
            point.ports
        );
        inside += usize::from(lo <= want && want <= hi);
    }
    assert!(
        inside * 4 >= checked.len() * 3,
        "{label}: only {inside} of {} points inside their 95 % interval",
        checked.len()
    );
    checked.len()
}

const EXPONENTIAL_1S: &str = "{ dist = \"exponential\", mean = \"1s\" }";
const LOGNORMAL_1S: &str = "{ dist = \"lognormal\", mean = \"1s\", sd = \"2s\" }";

/// The one-pass shortcut must give, for every n, exactly the failures of a run whose client
/// allows only n ports — on the same random stream.
#[test]
fn one_pass_equals_explicit_runs_on_the_same_stream() {
    for (extra, holding) in [
        ("", EXPONENTIAL_1S),
        (
            "occupied = [33003, 33006]\nlinger = \"300ms\"",
            LOGNORMAL_1S,
        ),
        ("max_port = 33012", EXPONENTIAL_1S),
        ("", "{ dist = \"fixed\", mean = \"1s\" }"),
    ] {
        let s = poisson("windows", extra, holding, 20_000, 2);
        assert_eq!(Method::for_scenario(&s).0, Method::OnePass);
        let results = simulate(&s, Options::default()).unwrap();
        for result in &results {
            let slots = usize::from(result.peak_port - s.server.base_port) + 1;
            for n in 1..=slots + 1 {
                let range = PortRange::from_count(s.server.base_port, n as u64).unwrap();
                let explicit = run(
                    &s,
                    RunSpec {
                        allowed: Some(range),
                        series: false,
                    },
                    replication_rng(s.seed, result.replication),
                );
                assert_eq!(
                    result.with_ports(n),
                    explicit.counts.groups[0],
                    "{extra} {holding}: replication {} with {n} ports",
                    result.replication
                );
            }
        }
    }
}

/// Blocking for 10 Erlang matches Erlang-B within the confidence interval, with exponential
/// and with lognormal holding (Erlang-B is insensitive to the holding-time distribution).
#[test]
fn ten_erlang_matches_erlang_b() {
    for holding in [EXPONENTIAL_1S, LOGNORMAL_1S] {
        let s = poisson("windows", "", holding, 200_000, 10);
        let result = summary(&s);
        let model = LossModel::erlang_b(10.0);
        let checked = assert_agrees(holding, &result.blocking, |n| model.blocking(n), 1e-3);
        assert!(checked >= 15, "{checked} points checked");
        // Published: 10 E needs 18 ports at 1 % and 21 at 0.1 %; the simulated recommendation
        // (upper bound <= 0.1 %) lands at or just above the formula.
        let recommended = result.recommended.expect("a range is recommended").ports;
        assert!((21..=23).contains(&recommended), "{recommended}");
    }
}

/// A finite population (closed workload with think time, blocked sources go back to
/// thinking) matches Engset.
#[test]
fn finite_population_matches_engset() {
    // 20 sources, each idle 3 s on average between 1 s sessions: β = 1/3 per idle source.
    let s = scenario(
        "name = \"engset\"\nseed = 3\n[server]\nos = \"windows\"\n[workload]\narrivals = \"closed\"\n\
         concurrent = 20\nthink = { dist = \"exponential\", mean = \"3s\" }\n\
         holding = { dist = \"exponential\", mean = \"1s\" }\nhandshake_timeout = \"0s\"\n\
         warmup = \"60s\"\nsessions = 100000\nreplications = 8\n",
    );
    let result = summary(&s);
    // Offered traffic in the Engset sense: 20 sources × α, α = β / (1 + β) = 0.25.
    let model = LossModel::Engset {
        sources: 20,
        load: 5.0,
    };
    let checked = assert_agrees("engset", &result.blocking, |n| model.blocking(n), 2e-3);
    assert!(checked >= 6, "{checked} points checked");
}

/// The seed's example: 10 transfers always running on windows need exactly 33001-33010.
#[test]
fn closed_ten_concurrent_on_windows_needs_exactly_33001_33010() {
    let s = Scenario::seed_example();
    let result = summary(&s);
    let recommended = result.recommended.expect("a range is recommended");
    assert_eq!((recommended.first, recommended.last), (33001, 33010));
    let peak = result.peak_port.expect("ports were used");
    assert_eq!((peak.p50, peak.max), (33010, 33010));
    // With 9 ports one transfer always fails; with 10 none does.
    let nine = &result.blocking[8];
    assert!(nine.probability > 0.05, "{nine:?}");
    assert_eq!(result.blocking[9].failed, 0);
    let configured = result.configured.expect("the seed sets client.allowed");
    assert_eq!(configured.blocking, 0.0);
}

/// Multi-session transfers: four transfers of three sessions always running on windows take
/// exactly twelve ports; on macOS a transfer's sessions share their account's port.
#[test]
fn multi_session_transfers_take_a_port_per_session_by_the_os_rule() {
    let text = udprange::scenario::SEED_EXAMPLE.replace(
        "concurrent = 10",
        "concurrent = 4\nsessions_per_transfer = 3",
    );
    let windows = summary(&scenario(&text));
    let recommended = windows.recommended.expect("a recommendation");
    assert_eq!((recommended.first, recommended.last), (33001, 33012));
    assert_eq!(windows.counts.sessions, 3 * windows.counts.transfers);
    // With 33001-33010 open, two sessions of some transfer always fail.
    assert!(windows.counts.transfers_failed > 0);
    assert!(windows.counts.transfers_failed <= windows.counts.failed);

    let macos = text.replace("os = \"windows\"", "os = \"macos\"").replace(
        "sessions_per_transfer = 3",
        "sessions_per_transfer = 3\naccounts = 4",
    );
    let macos = summary(&scenario(&macos));
    let recommended = macos.recommended.expect("a recommendation");
    assert_eq!((recommended.first, recommended.last), (33001, 33004));
    assert_eq!(macos.counts.transfers_failed, 0);
}

/// Occupied ports inside the range push the recommended range's end further.
#[test]
fn occupied_ports_shift_the_range() {
    let text = udprange::scenario::SEED_EXAMPLE.replace(
        "base_port = 33001",
        "base_port = 33001\noccupied = [33004, 33007]",
    );
    let s = scenario(&text);
    let result = summary(&s);
    let recommended = result.recommended.expect("a range is recommended");
    assert_eq!((recommended.first, recommended.last), (33001, 33012));
    assert_eq!(recommended.ports, 12);
}

/// The same seed gives the same answer for any number of threads and any sharding.
#[test]
fn results_do_not_depend_on_threads_or_shards() {
    let s = scenario(
        "name = \"mix\"\nseed = 11\n[server]\nos = \"macos\"\nlinger = \"1s\"\n[client]\nallowed = \"33001-33004\"\n\
         [[client.groups]]\nname = \"partners\"\nshare = 0.25\nallowed = \"33001-33002\"\n\
         [workload]\narrivals = \"poisson\"\nrate = \"2/s\"\naccounts = 12\n\
         holding = { dist = \"exponential\", mean = \"2s\" }\nsessions = 3000\nreplications = 5\n\
         retry = { attempts = 3, backoff = \"5s\", multiplier = 2 }\n",
    );
    let with_threads = |threads| {
        let options = Options {
            threads: Some(threads),
            ..Options::default()
        };
        simulate(&s, options).unwrap()
    };
    let one = with_threads(1);
    assert_eq!(one, with_threads(2));
    let mut parts = Vec::new();
    for index in (0..3).rev() {
        let options = Options {
            shard: Shard { index, count: 3 },
            ..Options::default()
        };
        parts.extend(simulate(&s, options).unwrap());
    }
    let whole = serde_json::to_string(&summarize(Context::of(&s), &one)).unwrap();
    let merged = serde_json::to_string(&summarize(Context::of(&s), &parts)).unwrap();
    assert_eq!(whole, merged);
}

/// Per-account sharing (explicit runs) agrees with the per-account loss formula.
#[test]
fn per_account_sharing_matches_its_formula() {
    let s = scenario(
        "name = \"acct\"\nseed = 5\n[server]\nos = \"macos\"\n[workload]\narrivals = \"poisson\"\n\
         rate = \"8/s\"\naccounts = 10\nholding = { dist = \"exponential\", mean = \"1s\" }\n\
         handshake_timeout = \"0s\"\nwarmup = \"30s\"\nsessions = 60000\nreplications = 6\n",
    );
    assert_eq!(Method::for_scenario(&s).0, Method::Explicit);
    let result = summary(&s);
    let model = LossModel::PerAccount {
        accounts: 10,
        load: 8.0,
    };
    let checked = assert_agrees("per-account", &result.blocking, |n| model.blocking(n), 5e-3);
    assert!(checked >= 5, "{checked} points checked");
}
