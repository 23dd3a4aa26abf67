//! Simulated time: integer nanoseconds from the start of a replication.
//!
//! The simulator never reads the wall clock; only the traffic engine does. Integer time makes
//! event order exact and the same on every machine.

use std::fmt;

/// An instant (or a span) of simulated time in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SimTime(u64);

impl SimTime {
    pub const ZERO: Self = Self(0);
    const PER_SECOND: f64 = 1e9;

    /// Seconds → nanoseconds, rounded; negative or NaN inputs give zero and huge ones saturate.
    pub fn from_secs_f64(seconds: f64) -> Self {
        // Round half up; the cast saturates (negative and NaN → 0), and avoids a libm call.
        Self((seconds * Self::PER_SECOND + 0.5) as u64)
    }

    pub fn from_nanos(nanos: u64) -> Self {
        Self(nanos)
    }

    pub fn as_nanos(self) -> u64 {
        self.0
    }

    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / Self::PER_SECOND
    }

    /// `self + span`, saturating at the end of time.
    pub fn after(self, span: SimTime) -> Self {
        Self(self.0.saturating_add(span.0))
    }

    /// The span from `earlier` to `self` (zero if `earlier` is later).
    pub fn since(self, earlier: SimTime) -> SimTime {
        Self(self.0.saturating_sub(earlier.0))
    }
}

impl fmt::Display for SimTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.6}s", self.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_and_saturates() {
        assert_eq!(SimTime::from_secs_f64(1.5).as_nanos(), 1_500_000_000);
        assert_eq!(SimTime::from_secs_f64(-3.0), SimTime::ZERO);
        assert_eq!(SimTime::from_secs_f64(f64::NAN), SimTime::ZERO);
        assert_eq!(
            SimTime::from_nanos(u64::MAX)
                .after(SimTime::from_nanos(5))
                .as_nanos(),
            u64::MAX
        );
        assert_eq!(
            SimTime::from_nanos(3).since(SimTime::from_nanos(5)),
            SimTime::ZERO
        );
    }
}
