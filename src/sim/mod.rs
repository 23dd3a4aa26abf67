//! The discrete-event simulator: blocking for every candidate range size, with confidence
//! intervals, and the range to open for a target blocking.
//!
//! ## What runs
//! Each replication has its own random stream, derived from (seed, replication index), so a
//! result never depends on the number of threads or on how replications are sharded.
//! Per replication:
//! 1. the **unconstrained** run: the client lets everything through. Its highest port `P` is
//!    the replication's peak port; with any range of `P` or more ports from the base nothing
//!    the default clients do can fail on the firewall, so those sizes need no further run.
//! 2. the **candidate** sizes `n < P`, by one of two [`Method`]s:
//!    - [`Method::OnePass`]: with first fit, ports `base .. base+n-1` form an `n`-port loss
//!      system whatever happens above them, *when* each session is its own key, arrivals do
//!      not depend on outcomes (open workloads) and nobody retries. Then a session fails with
//!      `n` ports exactly when the unconstrained run gave it a port beyond them, so one run
//!      answers every `n` (tests check this against explicit runs on the same stream).
//!    - [`Method::Explicit`]: otherwise (per-account or shared keys, retries, closed
//!      workloads, client groups) one run per `n`, all exact.
//! 3. the **as configured** run, when the scenario sets `[client].allowed` or groups.
//!
//! Replications (and candidate runs) run in parallel with rayon; results are put back in
//! replication order before anything is summed.

mod engine;
pub mod fingerprint;
pub mod part;
mod queue;
mod series;
mod summary;

use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

pub use crate::workload::{SimRng, SimTime, replication_rng};
pub use engine::{
    Attempt, Decision, Observer, RunCounts, RunRecord, RunSpec, Tally, run, run_observed,
};
pub use fingerprint::{Fingerprint, fingerprint};
pub use part::{MergeError, PART_FORMAT, Part, PartError, merge};
pub use queue::{EventQueue, InThePast};
pub use series::OccupancySeries;
pub use summary::{
    BlockingPoint, Configured, Context, Counts, GroupResult, PeakPort, PortUse, Recommended,
    Summary, summarize,
};

use crate::model::{Port, PortRange, SharingRule};
use crate::scenario::Scenario;

/// How candidate range sizes are evaluated; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    OnePass,
    Explicit,
}

impl Method {
    /// The method a scenario allows, and why.
    pub fn for_scenario(scenario: &Scenario) -> (Self, &'static str) {
        let explicit = |why| (Self::Explicit, why);
        if scenario.rule() != SharingRule::PerSession {
            return explicit(
                "sessions share ports by key, so a blocked key changes who fits below it",
            );
        }
        if !scenario.workload.arrivals.is_open() {
            return explicit(
                "closed workload: when a session ends depends on whether it was blocked",
            );
        }
        if scenario.workload.retry.is_some_and(|r| r.attempts > 1) {
            return explicit("retries: blocked sessions come back");
        }
        if !scenario.client.groups.is_empty() {
            return explicit("client groups with ranges of their own");
        }
        (
            Self::OnePass,
            "per-session ports, open arrivals, no retries: one pass answers every range size",
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::OnePass => "one-pass",
            Self::Explicit => "explicit",
        }
    }
}

/// Which slice of the replications to run: `index` of `count` (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    pub const WHOLE: Self = Self { index: 0, count: 1 };

    /// The replications of this shard: a contiguous slice, shards differing by at most one.
    pub fn replications(self, total: u32) -> std::ops::Range<u32> {
        let bound =
            |i: u32| (u64::from(total) * u64::from(i) / u64::from(self.count.max(1))) as u32;
        bound(self.index)..bound(self.index + 1)
    }
}

/// Why a shard was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a shard (expected I/N with 0 <= I < N, e.g. 0/4)")]
pub struct BadShard(pub String);

impl std::str::FromStr for Shard {
    type Err = BadShard;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || BadShard(text.to_string());
        let (i, n) = text.split_once('/').ok_or_else(bad)?;
        let index: u32 = i.trim().parse().map_err(|_| bad())?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Self { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Everything one replication contributes; merging shards is concatenating these.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ReplicationResult {
    pub replication: u32,
    /// Highest port of the unconstrained run (0 if no port was handed out).
    pub peak_port: Port,
    /// Default-group sessions and failures with `n` ports from the base, `n = 1 ..= len`;
    /// larger ranges behave as the unconstrained run (`unconstrained.groups[0]`).
    pub curve: Vec<Tally>,
    pub unconstrained: RunCounts,
    pub configured: Option<RunCounts>,
    /// Held ports over time (replication 0 only), from the as-configured run if any.
    pub series: Option<OccupancySeries>,
}

impl ReplicationResult {
    /// Default-group outcome with `ports` ports from the base.
    pub fn with_ports(&self, ports: usize) -> Tally {
        match ports.checked_sub(1).and_then(|i| self.curve.get(i)) {
            Some(t) => *t,
            None if ports == 0 => Tally {
                sessions: self.unconstrained.groups[0].sessions,
                failed: self.unconstrained.groups[0].sessions,
            },
            None => self.unconstrained.groups[0],
        }
    }
}

/// Progress of a run: tasks (simulation runs) done of those known so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub done: u64,
    pub total: u64,
}

/// How to run: which shard, how many threads (`None` = all cores), and whom to tell.
#[derive(Clone, Copy)]
pub struct Options<'a> {
    pub shard: Shard,
    pub threads: Option<usize>,
    pub progress: Option<&'a (dyn Fn(Progress) + Sync)>,
}

impl Default for Options<'_> {
    fn default() -> Self {
        Self {
            shard: Shard::WHOLE,
            threads: None,
            progress: None,
        }
    }
}

/// The thread pool could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot start {threads} worker threads: {source}")]
pub struct PoolError {
    threads: usize,
    source: rayon::ThreadPoolBuildError,
}

fn spec(allowed: Option<PortRange>, series: bool) -> RunSpec {
    RunSpec { allowed, series }
}

/// Runs this shard's replications of `scenario`, in replication order.
pub fn simulate(
    scenario: &Scenario,
    options: Options,
) -> Result<Vec<ReplicationResult>, PoolError> {
    let threads = options.threads.unwrap_or(0);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|source| PoolError { threads, source })?;
    Ok(pool.install(|| simulate_in_pool(scenario, options)))
}

fn simulate_in_pool(scenario: &Scenario, options: Options) -> Vec<ReplicationResult> {
    let (method, _) = Method::for_scenario(scenario);
    let reps: Vec<u32> = options
        .shard
        .replications(scenario.workload.replications)
        .collect();
    let base = scenario.server.base_port;
    let needs_configured = scenario.client.allowed.is_some() || !scenario.client.groups.is_empty();
    let done = AtomicU64::new(0);
    let total = AtomicU64::new(reps.len() as u64);
    let tick = || {
        let done = done.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(report) = options.progress {
            report(Progress {
                done,
                total: total.load(Ordering::Relaxed),
            });
        }
    };
    let seed = scenario.seed;

    // Phase 1: unconstrained and as-configured runs.
    let first: Vec<(RunRecord, Option<RunRecord>)> = reps
        .par_iter()
        .map(|&rep| {
            let series = rep == 0;
            let unconstrained = run(
                scenario,
                spec(None, series && !needs_configured),
                replication_rng(seed, rep),
            );
            let configured = needs_configured.then(|| {
                run(
                    scenario,
                    spec(scenario.client.allowed, series),
                    replication_rng(seed, rep),
                )
            });
            tick();
            (unconstrained, configured)
        })
        .collect();

    // Phase 2: the candidate sizes below each replication's peak.
    let peak_slots = |r: &RunRecord| match r.peak_port {
        0 => 0,
        p => usize::from(p - base) + 1,
    };
    let curves: Vec<Vec<Tally>> = match method {
        Method::OnePass => first
            .iter()
            .map(|(u, _)| {
                (1..peak_slots(u))
                    .map(|n| Tally {
                        sessions: u.counts.groups[0].sessions,
                        failed: u.failed_if_limited(n),
                    })
                    .collect()
            })
            .collect(),
        Method::Explicit => {
            let tasks: Vec<(usize, usize)> = first
                .iter()
                .enumerate()
                .flat_map(|(i, (u, _))| (1..peak_slots(u)).map(move |n| (i, n)))
                .collect();
            total.fetch_add(tasks.len() as u64, Ordering::Relaxed);
            let tallies: Vec<Tally> = tasks
                .par_iter()
                .map(|&(i, n)| {
                    let range =
                        PortRange::from_count(base, n as u64).expect("n is below the peak slot");
                    let record = run(
                        scenario,
                        spec(Some(range), false),
                        replication_rng(seed, reps[i]),
                    );
                    tick();
                    record.counts.groups[0]
                })
                .collect();
            let mut curves = vec![Vec::new(); first.len()];
            for (&(i, _), tally) in tasks.iter().zip(tallies) {
                curves[i].push(tally);
            }
            curves
        }
    };

    reps.iter()
        .zip(first)
        .zip(curves)
        .map(
            |((&replication, (mut unconstrained, mut configured)), curve)| {
                let series = match &mut configured {
                    Some(c) => c.series.take(),
                    None => unconstrained.series.take(),
                };
                ReplicationResult {
                    replication,
                    peak_port: unconstrained.peak_port,
                    curve,
                    unconstrained: unconstrained.counts,
                    configured: configured.map(|c| c.counts),
                    series,
                }
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_every_replication_once() {
        for total in [1, 7, 10, 64] {
            for count in 1..=9 {
                let all: Vec<u32> = (0..count)
                    .flat_map(|index| Shard { index, count }.replications(total))
                    .collect();
                assert_eq!(all, (0..total).collect::<Vec<_>>(), "{total} in {count}");
            }
        }
        assert!("3/3".parse::<Shard>().is_err());
        assert!("1/0".parse::<Shard>().is_err());
        assert_eq!(
            "1/4".parse::<Shard>().unwrap(),
            Shard { index: 1, count: 4 }
        );
    }

    /// Past what validation allows (a scenario built in code): times beyond the end of the
    /// clock saturate there and the run still ends, its occupancy series included.
    #[test]
    fn a_run_past_the_end_of_time_still_ends() {
        use crate::scenario::{Holding, Retry, Stop};
        use crate::units::Duration;
        let mut scenario = Scenario::seed_example();
        let forever = Duration::from_secs_f64(1e300);
        scenario.workload.holding = Holding::Exponential { mean: forever };
        scenario.workload.stop = Stop::Sessions(200);
        scenario.workload.replications = 2;
        scenario.workload.retry = Some(Retry {
            attempts: 5,
            backoff: forever,
            multiplier: 100.0,
        });
        scenario.server.linger = Some(forever);
        let results = simulate(&scenario, Options::default()).unwrap();
        let counts = &results[0].unconstrained;
        assert_eq!(counts.transfers, 200);
        assert!(counts.duration_s <= SimTime::END.as_secs_f64());
        let summary = summarize(Context::of(&scenario), &results);
        assert!(summary.mean_ports_held.is_finite());
        assert!(!summary.occupancy.is_empty());
    }
}
