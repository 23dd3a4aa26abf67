//! Random inputs of a replication: its RNG, holding times and the open arrival stream.
//!
//! Every engine that runs a replication draws from the same [`Workload`] in the same order —
//! per arrival: the gap to it, its holding time, its account, its group — so runs that differ
//! only in the client's range see the same sessions (common random numbers).

use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, Exp, Exp1, LogNormal, Pareto};
use rand_xoshiro::Xoshiro256PlusPlus;

use super::spec::{Arrivals, ClientGroup, Holding, TraceRecord, Workload};
use super::time::SimTime;

/// The generator: xoshiro256++, fully specified, so streams never change with a dependency
/// update or a platform.
pub type SimRng = Xoshiro256PlusPlus;

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The RNG of replication `replication` under `seed`: independent of thread count and of
/// which other replications run.
pub fn replication_rng(seed: u64, replication: u32) -> SimRng {
    SimRng::seed_from_u64(splitmix64(seed ^ splitmix64(u64::from(replication))))
}

/// Draws holding (or think) times.
#[derive(Debug, Clone, Copy)]
pub enum Sampler {
    Exponential(Exp<f64>),
    LogNormal(LogNormal<f64>),
    Fixed(f64),
    Pareto(Pareto<f64>),
}

impl Sampler {
    /// Validated scenarios always give valid parameters; anything else falls back to fixed.
    pub fn new(holding: &Holding) -> Self {
        let mean = holding.mean().as_secs_f64();
        let fixed = Self::Fixed(mean);
        match *holding {
            Holding::Exponential { .. } => Exp::new(1.0 / mean).map_or(fixed, Self::Exponential),
            Holding::Fixed { .. } => fixed,
            Holding::LogNormal { sd, .. } => {
                // Moments of the normal underneath from the mean and sd of the lognormal.
                let cv = sd.as_secs_f64() / mean;
                let sigma2 = cv.mul_add(cv, 1.0).ln();
                LogNormal::new(mean.ln() - sigma2 / 2.0, sigma2.sqrt())
                    .map_or(fixed, Self::LogNormal)
            }
            Holding::Pareto { shape, .. } => {
                Pareto::new(mean * (shape - 1.0) / shape, shape).map_or(fixed, Self::Pareto)
            }
        }
    }

    pub fn sample(&self, rng: &mut SimRng) -> SimTime {
        SimTime::from_secs_f64(match self {
            Self::Exponential(d) => d.sample(rng),
            Self::LogNormal(d) => d.sample(rng),
            Self::Fixed(x) => *x,
            Self::Pareto(d) => d.sample(rng),
        })
    }
}

/// The client group of a session: 0 is the default group, `i + 1` is `groups[i]`.
pub type GroupIndex = usize;

/// Picks a group by share with one uniform draw (none when there are no groups).
#[derive(Debug, Clone)]
pub struct GroupPicker {
    cumulative: Vec<f64>,
}

impl GroupPicker {
    pub fn new(groups: &[ClientGroup]) -> Self {
        let cumulative = groups
            .iter()
            .scan(0.0, |sum, g| {
                *sum += g.share;
                Some(*sum)
            })
            .collect();
        Self { cumulative }
    }

    pub fn pick(&self, rng: &mut SimRng) -> GroupIndex {
        if self.cumulative.is_empty() {
            return 0;
        }
        let u: f64 = rng.random();
        self.cumulative
            .iter()
            .position(|&c| u < c)
            .map_or(0, |i| i + 1)
    }

    /// Deterministic share of sources: source `i` of `n` by where `(i + 0.5) / n` falls.
    pub fn for_source(&self, source: u64, sources: u64) -> GroupIndex {
        let u = (source as f64 + 0.5) / sources as f64;
        self.cumulative
            .iter()
            .position(|&c| u < c)
            .map_or(0, |i| i + 1)
    }
}

/// One arriving session of an open workload.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Arrival {
    pub at: SimTime,
    pub holding: SimTime,
    pub account: u64,
    pub group: GroupIndex,
}

enum Stream<'a> {
    /// Poisson at a constant rate: the mean gap between arrivals, in seconds.
    Constant { mean_gap: f64 },
    /// Rates per second, each for `step` seconds, repeating.
    Piecewise { rates: Vec<f64>, step: f64 },
    Trace {
        records: &'a [TraceRecord],
        next: usize,
    },
}

/// The arrivals of an open workload (poisson, profile, trace), in time order.
pub struct OpenArrivals<'a> {
    stream: Stream<'a>,
    /// Seconds, kept in floating point so gaps do not accumulate rounding.
    clock: f64,
    holding: Sampler,
    accounts: u64,
    groups: GroupPicker,
    group_names: Vec<&'a str>,
}

impl<'a> OpenArrivals<'a> {
    /// `None` for closed workloads.
    pub fn new(workload: &'a Workload, groups: &'a [ClientGroup]) -> Option<Self> {
        let stream = match &workload.arrivals {
            Arrivals::Poisson { rate } => Stream::Constant {
                mean_gap: 1.0 / rate.per_second(),
            },
            Arrivals::Profile { step, rates } => Stream::Piecewise {
                rates: rates.iter().map(|r| r.per_second()).collect(),
                step: step.as_secs_f64(),
            },
            Arrivals::Trace { records, .. } => Stream::Trace { records, next: 0 },
            Arrivals::Closed { .. } => return None,
        };
        Some(Self {
            stream,
            clock: 0.0,
            holding: Sampler::new(&workload.holding),
            accounts: workload.accounts,
            groups: GroupPicker::new(groups),
            group_names: groups.iter().map(|g| g.name.as_str()).collect(),
        })
    }

    /// The next session, or `None` when a trace is exhausted.
    pub fn next(&mut self, rng: &mut SimRng) -> Option<Arrival> {
        let replayed = match &mut self.stream {
            Stream::Constant { mean_gap } => {
                let gap: f64 = Exp1.sample(rng);
                self.clock += gap * *mean_gap;
                None
            }
            Stream::Piecewise { rates, step } => {
                self.clock = next_poisson_time(self.clock, rates, *step, rng);
                None
            }
            Stream::Trace { records, next } => {
                let record = records.get(*next)?;
                *next += 1;
                Some(record)
            }
        };
        match replayed {
            None => {
                let holding = self.holding.sample(rng);
                let account = match self.accounts {
                    0 | 1 => 0,
                    n => rng.random_range(0..n),
                };
                let group = self.groups.pick(rng);
                Some(Arrival {
                    at: SimTime::from_secs_f64(self.clock),
                    holding,
                    account,
                    group,
                })
            }
            Some(record) => {
                let group = record
                    .group
                    .as_deref()
                    .and_then(|name| self.group_names.iter().position(|g| *g == name))
                    .map_or(0, |i| i + 1);
                Some(Arrival {
                    at: SimTime::from_secs_f64(record.start),
                    holding: SimTime::from_secs_f64(record.duration),
                    account: record.account,
                    group,
                })
            }
        }
    }
}

/// The next arrival after `now` of a Poisson process whose rate is `rates[i]` during the
/// `i`-th step (cyclic): exact, by spending one unit-exponential of integrated rate.
///
/// Bounded whatever the rates: whole cycles the budget outlasts are skipped at once, so a
/// sparse profile costs at most two cycles of steps per arrival; steps too fine for a float
/// this late fall back to the mean rate; past the end of simulated time the answer is
/// infinity (the clock saturates there).
fn next_poisson_time(now: f64, rates: &[f64], step: f64, rng: &mut SimRng) -> f64 {
    let mut budget: f64 = Exp1.sample(rng);
    let mut t = now;
    let cycle_len = step * rates.len() as f64;
    let cycle_area: f64 = rates.iter().sum::<f64>() * step;
    let end = SimTime::END.as_secs_f64();
    loop {
        if !(t < end && cycle_area > 0.0) {
            return f64::INFINITY;
        }
        if budget > cycle_area {
            // A whole number of cycles passes before the arrival: each spends `cycle_area`.
            let cycles = ((budget - cycle_area) / cycle_area).floor();
            if cycles >= 1.0 {
                t += cycles * cycle_len;
                budget -= cycles * cycle_area;
                continue;
            }
        }
        let index = (t / step).floor();
        let rate = rates[(index as usize) % rates.len()];
        let boundary = (index + 1.0) * step;
        let area = rate * (boundary - t);
        if rate > 0.0 && budget <= area {
            return t + budget / rate;
        }
        budget -= area;
        // Step exactly onto the boundary; guard against a boundary that does not advance.
        let next = if boundary > t { boundary } else { t + step };
        if next <= t {
            // Steps finer than a float resolves this late: spend the rest at the mean rate.
            return t + budget * cycle_len / cycle_area;
        }
        t = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::Duration;

    #[test]
    fn replication_streams_differ_and_repeat() {
        let a: u64 = replication_rng(42, 0).random();
        let b: u64 = replication_rng(42, 1).random();
        assert_ne!(a, b);
        assert_eq!(a, replication_rng(42, 0).random::<u64>());
    }

    #[test]
    fn samplers_have_the_configured_mean() {
        let mean = Duration::from_secs_f64(2.0);
        let sd = Duration::from_secs_f64(3.0);
        for holding in [
            Holding::Exponential { mean },
            Holding::LogNormal { mean, sd },
            Holding::Fixed { mean },
            Holding::Pareto { mean, shape: 3.0 },
        ] {
            let sampler = Sampler::new(&holding);
            let mut rng = replication_rng(7, 0);
            let n = 400_000;
            let total: f64 = (0..n).map(|_| sampler.sample(&mut rng).as_secs_f64()).sum();
            let got = total / n as f64;
            assert!((got - 2.0).abs() < 0.05, "{holding:?}: mean {got}");
        }
    }

    #[test]
    fn sparse_and_fine_profiles_end() {
        let mut rng = replication_rng(3, 0);
        // One arrival per ten years over nanosecond steps: skipped by whole cycles.
        let rare = [1.0 / crate::limits::MAX_SIM_SECONDS, 0.0];
        let t = next_poisson_time(0.0, &rare, 1e-9, &mut rng);
        assert!(t.is_finite() && t > 0.0, "{t}");
        // Nanosecond steps a year in: finer than a float resolves.
        let t = next_poisson_time(3.2e7, &[1.0, 2.0], 1e-9, &mut rng);
        assert!(t > 3.2e7 && t < 3.3e7, "{t}");
        // Past the end of simulated time.
        let t = next_poisson_time(SimTime::END.as_secs_f64(), &[1.0], 1.0, &mut rng);
        assert_eq!(t, f64::INFINITY);
    }

    #[test]
    fn profile_rate_follows_the_steps() {
        // 100/s for one second, then nothing for one second, repeating.
        let rates = [100.0, 0.0];
        let mut rng = replication_rng(1, 0);
        let mut t = 0.0;
        let mut in_quiet_step = 0;
        let mut count = 0;
        while t < 1000.0 {
            t = next_poisson_time(t, &rates, 1.0, &mut rng);
            count += 1;
            if (t.floor() as u64) % 2 == 1 {
                in_quiet_step += 1;
            }
        }
        assert_eq!(in_quiet_step, 0);
        let per_second = count as f64 / 1000.0;
        assert!((per_second - 50.0).abs() < 1.5, "{per_second}");
    }
}
