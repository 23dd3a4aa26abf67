//! Who transfers when: arrivals (Poisson, a time-of-day profile, a trace, closed sources with
//! think times, or a burst of identical clients together or staggered), holding times,
//! accounts, client groups, multi-session transfers and retries with backoff.
//!
//! A [`Stream`] knows no clock. It yields transfers ([`Arrival`]s: when, for how long, which
//! account and client group) and answers what follows an outcome (the wait before a retry,
//! a closed source's think time). The simulator drives it on simulated time
//! ([`crate::sim`]); `blast` drives the very same engine on the wall clock, compressed by its
//! time scale ([`crate::blast::replay`]). Both draw from one random stream in one order, so
//! replication 0 of `simulate` and a `blast` replay see the same sessions.

mod sample;
pub mod spec;
mod time;

pub use sample::{
    Arrival, GroupIndex, GroupPicker, OpenArrivals, Sampler, SimRng, replication_rng,
};
pub use time::SimTime;

use spec::{Arrivals, ClientGroup, Retry, Stop, Workload};

/// Which generator yields the transfers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Load {
    /// The scenario's own `[workload]`.
    Scenario,
    /// `clients` transfers at once, each holding its port for `holding` (`[traffic] start =
    /// "together"`).
    Together { clients: u32, holding: SimTime },
    /// `clients` transfers, one every `spacing`, each for `holding` (`start = "staggered"`).
    Staggered {
        clients: u32,
        holding: SimTime,
        spacing: SimTime,
    },
}

enum Generator<'a> {
    Open(OpenArrivals<'a>),
    Closed {
        sources: u32,
        think: Option<Sampler>,
    },
    Burst {
        clients: u32,
        next: u32,
        holding: SimTime,
        spacing: SimTime,
    },
}

/// The transfers of one replication, in order; see the module docs.
pub struct Stream<'a> {
    generator: Generator<'a>,
    holding: Sampler,
    groups: GroupPicker,
    accounts: u64,
    sessions_per_transfer: u32,
    retry: Option<Retry>,
    handshake: SimTime,
    stop: Stop,
    warmup: SimTime,
}

impl<'a> Stream<'a> {
    /// The stream of `workload` (with its client `groups`), or of a burst.
    pub fn new(workload: &'a Workload, groups: &'a [ClientGroup], load: Load) -> Self {
        let generator = match load {
            Load::Together { clients, holding } => Generator::Burst {
                clients,
                next: 0,
                holding,
                spacing: SimTime::ZERO,
            },
            Load::Staggered {
                clients,
                holding,
                spacing,
            } => Generator::Burst {
                clients,
                next: 0,
                holding,
                spacing,
            },
            Load::Scenario => match (&workload.arrivals, OpenArrivals::new(workload, groups)) {
                (_, Some(open)) => Generator::Open(open),
                (Arrivals::Closed { concurrent, think }, None) => Generator::Closed {
                    // Validation caps `concurrent` far below u32::MAX.
                    sources: u32::try_from(*concurrent).unwrap_or(u32::MAX),
                    think: think.as_ref().map(Sampler::new),
                },
                (_, None) => unreachable!("OpenArrivals covers every open workload"),
            },
        };
        let burst = matches!(generator, Generator::Burst { .. });
        Self {
            generator,
            holding: Sampler::new(&workload.holding),
            groups: GroupPicker::new(groups),
            accounts: workload.accounts,
            sessions_per_transfer: if burst {
                1
            } else {
                workload.sessions_per_transfer.max(1)
            },
            retry: if burst { None } else { workload.retry },
            handshake: SimTime::from_secs_f64(workload.handshake_timeout.as_secs_f64()),
            stop: if burst {
                Stop::Sessions(u64::MAX)
            } else {
                workload.stop
            },
            warmup: if burst {
                SimTime::ZERO
            } else {
                SimTime::from_secs_f64(workload.warmup.map_or(0.0, |w| w.as_secs_f64()))
            },
        }
    }

    /// Closed sources, all started at time zero (0 for open workloads and bursts).
    pub fn sources(&self) -> u32 {
        match self.generator {
            Generator::Closed { sources, .. } => sources,
            _ => 0,
        }
    }

    /// The next transfer of an open workload or a burst, in time order; `None` when there is
    /// none (a closed workload, an exhausted trace or burst).
    pub fn next_arrival(&mut self, rng: &mut SimRng) -> Option<Arrival> {
        match &mut self.generator {
            Generator::Open(open) => open.next(rng),
            Generator::Burst {
                clients,
                next,
                holding,
                spacing,
            } => {
                if *next >= *clients {
                    return None;
                }
                let i = *next;
                *next += 1;
                Some(Arrival {
                    at: SimTime::from_nanos(spacing.as_nanos().saturating_mul(u64::from(i))),
                    holding: *holding,
                    account: u64::from(i) % self.accounts.max(1),
                    group: 0,
                })
            }
            Generator::Closed { .. } => None,
        }
    }

    /// The next transfer of closed source `source`, starting now: its holding time, account
    /// (`source mod accounts`) and group (a fixed share of the sources).
    pub fn source_transfer(&mut self, source: u32, rng: &mut SimRng) -> Arrival {
        let holding = self.holding.sample(rng);
        let account = u64::from(source) % self.accounts.max(1);
        let group = self
            .groups
            .for_source(u64::from(source), u64::from(self.sources()));
        Arrival {
            at: SimTime::ZERO,
            holding,
            account,
            group,
        }
    }

    /// A closed source's think time after its transfer (zero without one).
    pub fn think(&self, rng: &mut SimRng) -> SimTime {
        match &self.generator {
            Generator::Closed {
                think: Some(think), ..
            } => think.sample(rng),
            _ => SimTime::ZERO,
        }
    }

    /// After `attempts` failed attempts of a session: the wait before the next one, or `None`
    /// when the session gives up.
    pub fn retry_after(&self, attempts: u32) -> Option<SimTime> {
        let retry = self.retry?;
        if attempts >= retry.attempts {
            return None;
        }
        let exponent = i32::try_from(attempts.saturating_sub(1)).unwrap_or(i32::MAX);
        let wait = retry.backoff.as_secs_f64() * retry.multiplier.powi(exponent);
        Some(SimTime::from_secs_f64(wait))
    }

    /// How long a session whose datagrams the client firewall drops holds its port.
    pub fn handshake(&self) -> SimTime {
        self.handshake
    }

    /// Sessions each transfer opens at once.
    pub fn sessions_per_transfer(&self) -> u32 {
        self.sessions_per_transfer
    }

    /// Transfers starting before this are run but not counted.
    pub fn warmup(&self) -> SimTime {
        self.warmup
    }

    /// Whether a transfer may start at `at`, `started` counted ones having started.
    pub fn may_start(&self, started: u64, at: SimTime) -> bool {
        match self.stop {
            Stop::Sessions(n) => started < n,
            Stop::Horizon(h) => at.since(self.warmup).as_secs_f64() <= h.as_secs_f64(),
        }
    }
}
