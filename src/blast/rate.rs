//! Rate control behind one trait, as state machines with no socket and no clock: the
//! sender feeds each acknowledgement's one-way delay sample and the time, and asks for the
//! rate to pace at.
//!
//! - [`Policy::Fixed`]: the target rate whatever happens (what every session did before).
//! - [`Policy::Fair`], [`Policy::High`], [`Policy::Low`]: delay-based, after LEDBAT (RFC
//!   6817) turned into a rate. The *queuing delay* is the current one-way delay (the least of
//!   the last few samples, against noise) minus the *base delay* (the least seen over the
//!   last minutes: the path without queues). Below the target queue the rate rises, above it
//!   it falls, in proportion to how far off target it is; `--rate` is the ceiling and
//!   `--min-rate` the floor. A constant offset between the two hosts' clocks cancels out
//!   (both delays carry it). `high` aims at a longer queue and moves faster (it takes more
//!   than a fair share next to `fair` flows), `low` at a short one and moves slower (it
//!   yields to other traffic).

use std::collections::VecDeque;
use std::time::Duration;

pub use crate::workload::spec::Policy;

/// The controller for `policy` between `min_bps` and `max_bps`. A delay-based controller
/// never goes below 1 % of the ceiling (a rate of 0 would mean unpaced).
pub fn controller(policy: Policy, max_bps: u64, min_bps: u64) -> Box<dyn RateController> {
    let min_bps = min_bps.max(max_bps / 100).max(1).min(max_bps);
    match policy {
        Policy::Fixed => Box::new(Fixed(max_bps)),
        Policy::Fair => Box::new(Ledbat::new(
            max_bps,
            min_bps,
            Duration::from_millis(20),
            1.0,
        )),
        Policy::High => Box::new(Ledbat::new(
            max_bps,
            min_bps,
            Duration::from_millis(40),
            2.0,
        )),
        Policy::Low => Box::new(Ledbat::new(max_bps, min_bps, Duration::from_millis(5), 0.5)),
    }
}

/// A session's rate controller.
pub trait RateController: Send {
    /// The rate to pace at now, bit/s.
    fn rate_bps(&self) -> u64;
    /// An acknowledgement's one-way delay sample (receiver's arrival time minus the send
    /// stamp it echoes, in ns; any constant clock offset included), at `now` since the start.
    fn on_delay(&mut self, one_way_ns: i64, now: Duration);
    /// The queuing delay it last estimated, if it estimates one.
    fn queuing_delay(&self) -> Option<Duration>;
}

/// The target rate, whatever happens.
#[derive(Debug, Clone, Copy)]
pub struct Fixed(pub u64);

impl RateController for Fixed {
    fn rate_bps(&self) -> u64 {
        self.0
    }

    fn on_delay(&mut self, _: i64, _: Duration) {}

    fn queuing_delay(&self) -> Option<Duration> {
        None
    }
}

/// Samples the current delay is the least of (noise filter; each one more is one more
/// acknowledgement interval before a growing queue is seen).
const CURRENT_SAMPLES: usize = 2;
/// The base delay is the least of the last [`BASE_BUCKETS`] buckets of [`BASE_BUCKET`] each.
const BASE_BUCKET: Duration = Duration::from_secs(60);
const BASE_BUCKETS: usize = 10;
/// At full speed (gain 1, no queue at all) the rate climbs from nothing to the ceiling in
/// this long.
const RAMP: Duration = Duration::from_secs(1);
/// The longest step one sample may move the rate over (a session silent for a while does
/// not leap).
const MAX_STEP: Duration = Duration::from_millis(100);
/// Above the target the rate falls in proportion to itself and to how far off target it is:
/// at twice the target queue, by this fraction per second.
const DECREASE_PER_SECOND: f64 = 1.0;
/// The most it falls in one step.
const MAX_DECREASE_STEP: f64 = 0.25;

/// Delay-based rate control after LEDBAT.
#[derive(Debug, Clone)]
pub struct Ledbat {
    max_bps: f64,
    min_bps: f64,
    rate: f64,
    target: Duration,
    gain: f64,
    /// The least delay of each bucket, newest last, with the bucket's start.
    base: VecDeque<(Duration, i64)>,
    current: VecDeque<i64>,
    last: Option<Duration>,
    queuing: Option<Duration>,
}

impl Ledbat {
    /// Starts at an eighth of the ceiling (never below the floor).
    pub fn new(max_bps: u64, min_bps: u64, target: Duration, gain: f64) -> Self {
        let (max, min) = (max_bps as f64, (min_bps as f64).min(max_bps as f64));
        Self {
            max_bps: max,
            min_bps: min,
            rate: (max / 8.0).max(min),
            target,
            gain,
            base: VecDeque::new(),
            current: VecDeque::new(),
            last: None,
            queuing: None,
        }
    }

    fn base_delay(&self) -> Option<i64> {
        self.base.iter().map(|&(_, d)| d).min()
    }
}

impl RateController for Ledbat {
    fn rate_bps(&self) -> u64 {
        self.rate.round() as u64
    }

    fn on_delay(&mut self, one_way_ns: i64, now: Duration) {
        match self.base.back_mut() {
            Some((start, least)) if now.saturating_sub(*start) < BASE_BUCKET => {
                *least = (*least).min(one_way_ns);
            }
            _ => {
                self.base.push_back((now, one_way_ns));
                if self.base.len() > BASE_BUCKETS {
                    self.base.pop_front();
                }
            }
        }
        self.current.push_back(one_way_ns);
        if self.current.len() > CURRENT_SAMPLES {
            self.current.pop_front();
        }
        let (Some(base), Some(&current)) = (self.base_delay(), self.current.iter().min()) else {
            return;
        };
        let queuing = Duration::from_nanos(u64::try_from(current - base).unwrap_or(0));
        self.queuing = Some(queuing);
        let step = match self.last {
            Some(last) => now.saturating_sub(last).min(MAX_STEP),
            None => Duration::ZERO,
        };
        self.last = Some(now);
        let target = self.target.as_secs_f64().max(1e-6);
        let off_target = (target - queuing.as_secs_f64()) / target;
        let dt = step.as_secs_f64();
        self.rate = if off_target >= 0.0 {
            // Below target: up, additively, faster the emptier the queue.
            self.rate + self.gain * off_target * self.max_bps * dt / RAMP.as_secs_f64()
        } else {
            // Above: down in proportion to the rate (every flow gives up the same share).
            let fall = (-off_target * self.gain * DECREASE_PER_SECOND * dt).min(MAX_DECREASE_STEP);
            self.rate * (1.0 - fall)
        }
        .clamp(self.min_bps, self.max_bps);
    }

    fn queuing_delay(&self) -> Option<Duration> {
        self.queuing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i64 = 1_000_000;

    /// Feeds `samples` one-way delays every `step` from `from`; the time after.
    fn feed(
        c: &mut dyn RateController,
        mut now: Duration,
        step: Duration,
        samples: impl IntoIterator<Item = i64>,
    ) -> Duration {
        for s in samples {
            c.on_delay(s, now);
            now += step;
        }
        now
    }

    #[test]
    fn policies_parse_and_fixed_never_moves() {
        for p in [Policy::Fixed, Policy::High, Policy::Fair, Policy::Low] {
            assert_eq!(Policy::parse(p.name()), Some(p));
        }
        assert_eq!(Policy::parse("fast"), None);
        let mut fixed = controller(Policy::Fixed, 10_000_000, 0);
        feed(
            fixed.as_mut(),
            Duration::ZERO,
            Duration::from_millis(10),
            [25 * MS, 500 * MS],
        );
        assert_eq!(fixed.rate_bps(), 10_000_000);
        assert_eq!(fixed.queuing_delay(), None);
    }

    /// No queue: the rate climbs to the ceiling within about a second and stays there.
    #[test]
    fn without_a_queue_the_rate_climbs_to_the_ceiling() {
        let mut c = Ledbat::new(50_000_000, 1_000_000, Duration::from_millis(20), 1.0);
        assert_eq!(c.rate_bps(), 6_250_000, "starts at an eighth");
        let step = Duration::from_millis(10);
        let now = feed(
            &mut c,
            Duration::ZERO,
            step,
            std::iter::repeat_n(25 * MS, 50),
        );
        assert!(c.rate_bps() > 25_000_000, "{}", c.rate_bps());
        feed(&mut c, now, step, std::iter::repeat_n(25 * MS, 100));
        assert_eq!(c.rate_bps(), 50_000_000);
        assert_eq!(c.queuing_delay(), Some(Duration::ZERO));
    }

    /// A queue above the target brings the rate down to the floor, in proportion, and
    /// never below; the base delay is the path's, whatever the clocks' offset.
    #[test]
    fn above_target_the_rate_falls_to_the_floor() {
        let offset = 3_600_000 * MS; // the receiver's clock an hour ahead
        let mut c = Ledbat::new(50_000_000, 2_000_000, Duration::from_millis(20), 1.0);
        let step = Duration::from_millis(10);
        let now = feed(
            &mut c,
            Duration::ZERO,
            step,
            std::iter::repeat_n(offset + 25 * MS, 100),
        );
        assert_eq!(c.rate_bps(), 50_000_000);
        // 60 ms of queue: three times the target, off_target = -2.
        let now = feed(&mut c, now, step, std::iter::repeat_n(offset + 85 * MS, 10));
        assert_eq!(c.queuing_delay(), Some(Duration::from_millis(60)));
        let after_100ms = c.rate_bps();
        assert!(
            after_100ms < 50_000_000 && after_100ms > 35_000_000,
            "{after_100ms}"
        );
        // Down 2 % per 10 ms sample (in proportion to the rate): the floor within 3 s.
        feed(
            &mut c,
            now,
            step,
            std::iter::repeat_n(offset + 85 * MS, 300),
        );
        assert_eq!(c.rate_bps(), 2_000_000);
    }

    /// Exactly at the target the rate holds.
    #[test]
    fn at_target_the_rate_holds() {
        let mut c = Ledbat::new(50_000_000, 0, Duration::from_millis(20), 1.0);
        let step = Duration::from_millis(10);
        let now = feed(&mut c, Duration::ZERO, step, [25 * MS]);
        // The current delay is the least of the last 4 samples: 20 ms of queue once the
        // 25 ms sample has left the filter.
        let now = feed(&mut c, now, step, std::iter::repeat_n(45 * MS, 4));
        let before = c.rate_bps();
        feed(&mut c, now, step, std::iter::repeat_n(45 * MS, 50));
        assert_eq!(c.queuing_delay(), Some(Duration::from_millis(20)));
        assert_eq!(c.rate_bps(), before);
    }

    /// Jain's fairness index of `shares`.
    fn jain(shares: &[f64]) -> f64 {
        let sum: f64 = shares.iter().sum();
        let squares: f64 = shares.iter().map(|s| s * s).sum();
        sum * sum / (shares.len() as f64 * squares)
    }

    /// A fluid model of one bottleneck: a queue fed by every session's rate and drained at
    /// the capacity; each session sees the path's 25 ms plus the queue's delay. Returns each
    /// session's mean rate over the last `measure` seconds and the largest queue then.
    fn bottleneck(
        controllers: &mut [Box<dyn RateController>],
        capacity_bps: f64,
        seconds: f64,
        measure: f64,
    ) -> (Vec<f64>, Duration) {
        let dt = 0.001;
        let mut queue_bits = 0.0f64;
        let mut sums = vec![0.0; controllers.len()];
        let mut worst = Duration::ZERO;
        let steps = (seconds / dt) as usize;
        for i in 0..steps {
            let now = Duration::from_secs_f64(i as f64 * dt);
            let offered: f64 = controllers.iter().map(|c| c.rate_bps() as f64).sum();
            queue_bits = (queue_bits + (offered - capacity_bps) * dt).max(0.0);
            let queuing = Duration::from_secs_f64(queue_bits / capacity_bps);
            // A sample every 10 ms per session, staggered.
            for (k, c) in controllers.iter_mut().enumerate() {
                if (i + k) % 10 == 0 {
                    c.on_delay(25 * MS + queuing.as_nanos() as i64, now);
                }
                if i as f64 * dt >= seconds - measure {
                    sums[k] += c.rate_bps() as f64 * dt / measure;
                }
            }
            if i as f64 * dt >= seconds - measure {
                worst = worst.max(queuing);
            }
        }
        (sums, worst)
    }

    /// Eight fair sessions with a 50 Mbit/s ceiling each on a 100 Mbit/s bottleneck share it
    /// evenly and fill it, with a queue near the target.
    #[test]
    fn fair_sessions_share_a_bottleneck() {
        let mut sessions: Vec<Box<dyn RateController>> = (0..8)
            .map(|_| controller(Policy::Fair, 50_000_000, 1_000_000))
            .collect();
        let (rates, queue) = bottleneck(&mut sessions, 100e6, 20.0, 10.0);
        let total: f64 = rates.iter().sum();
        assert!(total > 90e6, "the bottleneck is used: {total}");
        assert!(jain(&rates) > 0.99, "{rates:?}");
        assert!(queue < Duration::from_millis(60), "queue {queue:?}");
        // Fixed sessions on the same path do not yield: the queue grows without bound.
        let mut fixed: Vec<Box<dyn RateController>> = (0..8)
            .map(|_| controller(Policy::Fixed, 50_000_000, 0))
            .collect();
        let (_, queue) = bottleneck(&mut fixed, 100e6, 5.0, 1.0);
        assert!(queue > Duration::from_secs(10), "{queue:?}");
    }

    /// `low` yields to `fair`, `high` takes more than `fair`.
    #[test]
    fn low_yields_and_high_takes_more() {
        let mut pair: Vec<Box<dyn RateController>> = vec![
            controller(Policy::Fair, 100_000_000, 0),
            controller(Policy::Low, 100_000_000, 0),
        ];
        let (rates, _) = bottleneck(&mut pair, 100e6, 20.0, 10.0);
        assert!(rates[1] < rates[0] * 0.5, "{rates:?}");
        let mut pair: Vec<Box<dyn RateController>> = vec![
            controller(Policy::Fair, 100_000_000, 0),
            controller(Policy::High, 100_000_000, 0),
        ];
        let (rates, _) = bottleneck(&mut pair, 100e6, 20.0, 10.0);
        assert!(rates[1] > rates[0] * 1.5, "{rates:?}");
    }
}
