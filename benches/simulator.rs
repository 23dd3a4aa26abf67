//! Simulator throughput: sessions per second on one core for the per-session rule
//! (Poisson arrivals, exponential holding, 10 Erlang), every range size counted; 10
//! replications of 100 000 sessions, as a scenario would run them (replication 0 also
//! records ports held over time for the plot).
//!
//! `cargo bench --bench simulator`

use std::path::Path;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use udprange::scenario::Scenario;
use udprange::sim::{Options, simulate};

const REPLICATIONS: u64 = 10;

fn scenario(os: &str, accounts: &str, sessions: u64) -> Scenario {
    let text = format!(
        "name = \"bench\"\nseed = 1\n[server]\nos = \"{os}\"\n[workload]\narrivals = \"poisson\"\n\
         rate = \"10/s\"\nholding = {{ dist = \"exponential\", mean = \"1s\" }}\n{accounts}\
         sessions = {sessions}\nreplications = {REPLICATIONS}\n"
    );
    Scenario::parse(&text, Path::new("bench.toml")).expect("bench scenario is valid")
}

fn per_session(c: &mut Criterion) {
    let mut group = c.benchmark_group("simulate_one_core");
    group.sample_size(10);
    let sessions = 100_000;
    let options = Options {
        threads: Some(1),
        ..Options::default()
    };
    for (name, os, accounts) in [
        ("per-session 10 Erlang (one pass)", "windows", ""),
        (
            "per-account 10 Erlang, 20 accounts (explicit)",
            "macos",
            "accounts = 20\n",
        ),
    ] {
        let s = scenario(os, accounts, sessions);
        group.throughput(Throughput::Elements(sessions * REPLICATIONS));
        group.bench_with_input(
            BenchmarkId::new(name, sessions * REPLICATIONS),
            &s,
            |b, s| b.iter(|| simulate(s, options).expect("pool starts")),
        );
    }
    group.finish();
}

criterion_group!(benches, per_session);
criterion_main!(benches);
