//! Held ports over simulated time, for plots: time-weighted means in at most
//! [`OccupancySeries::BUCKETS`] equal buckets. When time runs past the last bucket, pairs of
//! buckets merge and the width doubles, so memory stays fixed however long the run.

use serde::{Deserialize, Serialize};

use crate::workload::SimTime;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct OccupancySeries {
    /// Width of one bucket: `2^width_shift` nanoseconds (a shift, not a division, per event).
    width_shift: u32,
    /// ∫ held ports dt within each bucket, in port-nanoseconds.
    area: Vec<f64>,
    /// The latest time added, in nanoseconds: the last bucket ends here, so its mean is
    /// over the time it covers, not its whole width (0 in shard files written before).
    #[serde(default)]
    end: u64,
}

/// Width of the buckets before any doubling: 2^20 ns ≈ 1 ms.
const FIRST_SHIFT: u32 = 20;

impl Default for OccupancySeries {
    fn default() -> Self {
        Self {
            width_shift: FIRST_SHIFT,
            area: Vec::new(),
            end: 0,
        }
    }
}

impl OccupancySeries {
    pub const BUCKETS: usize = 256;
    /// Width of a bucket, in seconds, while a series has never doubled it: the width of a
    /// series of one point.
    pub const FIRST_WIDTH_S: f64 = (1u64 << FIRST_SHIFT) as f64 / 1e9;

    /// `held` ports were held from `from` to `to`.
    pub fn add(&mut self, from: SimTime, to: SimTime, held: usize) {
        self.add_nanos(from.as_nanos(), to.as_nanos(), held);
    }

    fn add_nanos(&mut self, from: u64, to: u64, held: usize) {
        let (mut t, end) = (from, to);
        if end <= t {
            return;
        }
        self.end = self.end.max(end);
        // At most 56 doublings: 256 buckets of 2^56 ns cover every u64.
        while (end - 1) >> self.width_shift >= Self::BUCKETS as u64 {
            self.coarsen();
        }
        let bucket = (t >> self.width_shift) as usize;
        // Most spans fall inside one bucket.
        if let Some(area) = self.area.get_mut(bucket)
            && (end - 1) >> self.width_shift == bucket as u64
        {
            *area += held as f64 * (end - t) as f64;
            return;
        }
        while t < end {
            let bucket = (t >> self.width_shift) as usize;
            // In u128: the last bucket of a u64 clock ends at 2^64.
            let bucket_end = (bucket as u128 + 1) << self.width_shift;
            let until = end.min(u64::try_from(bucket_end).unwrap_or(u64::MAX));
            if self.area.len() <= bucket {
                self.area.resize(bucket + 1, 0.0);
            }
            self.area[bucket] += held as f64 * (until - t) as f64;
            t = until;
        }
    }

    /// Why this series could not come from a run (it was read from a shard file), if so.
    pub fn check(&self) -> Result<(), String> {
        if self.width_shift > 56 {
            return Err(format!(
                "bucket width 2^{} ns is beyond the clock",
                self.width_shift
            ));
        }
        if self.area.len() > Self::BUCKETS {
            return Err(format!("more than {} buckets", Self::BUCKETS));
        }
        let width = (1u64 << self.width_shift) as f64;
        // A bucket holds at most every port for its whole width.
        if let Some(bad) = self
            .area
            .iter()
            .find(|a| !(a.is_finite() && (0.0..=width * 65536.0).contains(*a)))
        {
            return Err(format!("{bad} is not an area of held ports over time"));
        }
        if u128::from(self.end) > (self.area.len() as u128) << self.width_shift {
            return Err(format!("it ends at {} ns, past its last bucket", self.end));
        }
        Ok(())
    }

    fn coarsen(&mut self) {
        self.area = self.area.chunks(2).map(|pair| pair.iter().sum()).collect();
        self.width_shift += 1;
    }

    /// `(bucket start in seconds, mean held ports in the bucket)`; the last bucket's mean is
    /// over the time it covers up to the end.
    pub fn points(&self) -> impl Iterator<Item = (f64, f64)> + '_ {
        let width = (1u64 << self.width_shift) as f64;
        let last = self.area.len().saturating_sub(1);
        self.area.iter().enumerate().map(move |(i, area)| {
            let start = i as f64 * width;
            let covered = match (i == last, self.end) {
                (true, end) if end as f64 > start => (end as f64 - start).min(width),
                _ => width,
            };
            (start / 1e9, area / covered)
        })
    }

    /// When the series ends, in seconds (the latest time added).
    pub fn end_s(&self) -> f64 {
        self.end as f64 / 1e9
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_bucket_is_a_mean_over_the_time_it_covers() {
        // 10 ports held for 1.5 buckets: both means are 10, not 10 and 5.
        let mut series = OccupancySeries::default();
        let width = 1u64 << FIRST_SHIFT;
        series.add_nanos(0, width + width / 2, 10);
        let means: Vec<f64> = series.points().map(|(_, mean)| mean).collect();
        assert_eq!(means, [10.0, 10.0]);
        assert!(series.check().is_ok());
        let mut forged = series.clone();
        forged.end = 3 * width;
        assert!(forged.check().is_err());
    }

    #[test]
    fn keeps_the_time_weighted_mean_while_coarsening() {
        let mut series = OccupancySeries::default();
        let s = |secs: f64| SimTime::from_secs_f64(secs);
        series.add(s(0.0), s(10.0), 2);
        series.add(s(10.0), s(1000.0), 4);
        assert!(series.area.len() <= OccupancySeries::BUCKETS);
        let total: f64 = series.area.iter().sum::<f64>() / 1e9;
        assert!((total - (20.0 + 3960.0)).abs() < 1e-6, "{total}");
        let (_, first) = series.points().next().unwrap();
        assert!((2.0..=4.0).contains(&first));
        assert_eq!(series.check(), Ok(()));
    }

    #[test]
    fn reaches_the_end_of_a_u64_clock() {
        let mut series = OccupancySeries::default();
        series.add(SimTime::ZERO, SimTime::from_secs_f64(1.0), 1);
        // Past 2^63 ns and up to the last nanosecond a u64 holds: no overflow, no endless loop.
        let late = OccupancySeries {
            width_shift: 20,
            area: Vec::new(),
            end: 0,
        };
        for mut s in [series, late] {
            s.add(SimTime::from_secs_f64(1.0), SimTime::END, 2);
            s.add_nanos(1 << 63, u64::MAX, 3);
            assert!(s.area.len() <= OccupancySeries::BUCKETS);
            assert_eq!(s.check(), Ok(()));
        }
    }
}
