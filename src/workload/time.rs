//! Simulated time: integer nanoseconds from the start of a replication.
//!
//! The simulator never reads the wall clock; only the traffic engine does. Integer time makes
//! event order exact and the same on every machine.
//!
//! Time ends at [`SimTime::END`], 2^62 ns (about 146 years): conversions and sums saturate
//! there, never wrap. Validation keeps every configured span within
//! [`crate::limits::MAX_SIM_SECONDS`] (10 years), so only random draws from long-tailed
//! distributions or growing retry backoffs reach the end; an event there still happens, in
//! order, and a run always finishes.

use std::fmt;

/// An instant (or a span) of simulated time in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SimTime(u64);

impl SimTime {
    pub const ZERO: Self = Self(0);
    /// The end of simulated time: 2^62 ns. Half of what a `u64` holds, so that the sum of two
    /// times never wraps before it saturates.
    pub const END: Self = Self(1 << 62);
    const PER_SECOND: f64 = 1e9;

    /// Seconds → nanoseconds, rounded; negative or NaN inputs give zero and anything past
    /// [`Self::END`] (infinity included) saturates there.
    pub fn from_secs_f64(seconds: f64) -> Self {
        // Round half up; the cast saturates (negative and NaN → 0), and avoids a libm call.
        Self(((seconds * Self::PER_SECOND + 0.5) as u64).min(Self::END.0))
    }

    /// Nanoseconds, saturating at [`Self::END`].
    pub fn from_nanos(nanos: u64) -> Self {
        Self(nanos.min(Self::END.0))
    }

    pub fn as_nanos(self) -> u64 {
        self.0
    }

    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / Self::PER_SECOND
    }

    /// `self + span`, saturating at [`Self::END`].
    pub fn after(self, span: SimTime) -> Self {
        Self(self.0.saturating_add(span.0).min(Self::END.0))
    }

    /// The span from `earlier` to `self` (zero if `earlier` is later).
    pub fn since(self, earlier: SimTime) -> SimTime {
        Self(self.0.saturating_sub(earlier.0))
    }
}

// Eight of the longest spans a scenario may configure (warm-up, horizon, holding, linger,
// handshake, backoff, …) add up to less than the end of time: validated runs never reach it
// but by random draws.
const _: () = assert!(crate::limits::MAX_SIM_SECONDS * 1e9 * 8.0 < SimTime::END.0 as f64);

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
        for huge in [1e300, f64::INFINITY, 1e10 * 365.0 * 86400.0] {
            assert_eq!(SimTime::from_secs_f64(huge), SimTime::END, "{huge}");
        }
        assert_eq!(SimTime::from_nanos(u64::MAX), SimTime::END);
        assert_eq!(SimTime::END.after(SimTime::END), SimTime::END);
        assert_eq!(
            SimTime::from_nanos(u64::MAX)
                .after(SimTime::from_nanos(5))
                .as_nanos(),
            1 << 62
        );
        assert_eq!(
            SimTime::from_nanos(3).since(SimTime::from_nanos(5)),
            SimTime::ZERO
        );
    }
}
