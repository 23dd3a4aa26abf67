//! Pacing: how many datagrams a sender may have sent by now at its target rate.
//!
//! A token bucket measured from the start of sending: at `elapsed` the sender is owed
//! `elapsed × rate / datagram bits` datagrams in all. It sends what it owes in one batch (at
//! most [`Pacer::MAX_BATCH`]) and sleeps until the next one is due, so high rates cost few
//! wake-ups and the average rate is exact. A sender that fell behind catches up by at most
//! one batch: it never bursts its whole backlog.

use std::time::Duration;

#[derive(Debug, Clone, Copy)]
pub struct Pacer {
    /// Datagrams per second; `None` sends as fast as the socket takes them.
    per_second: Option<f64>,
    sent: u64,
}

impl Pacer {
    pub const MAX_BATCH: u64 = 64;

    /// `rate_bps` bits per second of `datagram`-byte datagrams; 0 = unpaced.
    pub fn new(rate_bps: u64, datagram: u16) -> Self {
        let bits = f64::from(datagram.max(1)) * 8.0;
        Self {
            per_second: (rate_bps > 0).then(|| rate_bps as f64 / bits),
            sent: 0,
        }
    }

    /// Datagrams to send now, `elapsed` after the start.
    pub fn due(&self, elapsed: Duration) -> u64 {
        match self.per_second {
            None => Self::MAX_BATCH,
            Some(rate) => {
                let owed = (elapsed.as_secs_f64() * rate) as u64 + 1;
                owed.saturating_sub(self.sent).min(Self::MAX_BATCH)
            }
        }
    }

    pub fn sent(&mut self, count: u64) {
        self.sent += count;
    }

    /// When the next datagram is due, measured from the start.
    pub fn next_due(&self) -> Duration {
        match self.per_second {
            None => Duration::ZERO,
            Some(rate) => Duration::from_secs_f64(self.sent as f64 / rate),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_average_rate_and_batches() {
        // 10 Mbit/s of 1250-byte datagrams = 1000 per second.
        let mut pacer = Pacer::new(10_000_000, 1250);
        assert_eq!(pacer.due(Duration::ZERO), 1);
        pacer.sent(1);
        assert_eq!(pacer.due(Duration::from_micros(500)), 0);
        assert_eq!(pacer.next_due(), Duration::from_millis(1));
        assert_eq!(pacer.due(Duration::from_millis(10)), 10);
        pacer.sent(10);
        // Far behind: one batch, not the whole backlog.
        assert_eq!(pacer.due(Duration::from_secs(10)), Pacer::MAX_BATCH);
        assert_eq!(Pacer::new(0, 1492).due(Duration::ZERO), Pacer::MAX_BATCH);
    }
}
