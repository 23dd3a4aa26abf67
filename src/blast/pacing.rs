//! Pacing: an incremental token bucket. Tokens (datagrams) accrue at the current rate since
//! the last look, up to one batch ([`Pacer::MAX_BATCH`]); a sender sends what the bucket
//! holds and sleeps until the next token is due. The rate may change at any moment (a rate
//! controller's decision): what accrued until then accrued at the old rate, what follows at
//! the new one, so a change never creates or forgives a backlog. A sender that fell behind
//! catches up by at most one batch: it never bursts its whole backlog.

use std::time::Duration;

#[derive(Debug, Clone, Copy)]
pub struct Pacer {
    /// Datagrams per second; `None` sends as fast as the socket takes them.
    per_second: Option<f64>,
    /// Bits in one datagram, to turn a rate in bit/s into datagrams per second.
    datagram_bits: f64,
    /// Datagrams that may leave now (fractions accrue).
    tokens: f64,
    /// When `tokens` was last brought up to date, since the start.
    updated: Duration,
}

impl Pacer {
    pub const MAX_BATCH: u64 = 64;

    /// `rate_bps` bits per second of `datagram`-byte datagrams; 0 = unpaced. The first
    /// datagram may leave at once.
    pub fn new(rate_bps: u64, datagram: u16) -> Self {
        let datagram_bits = f64::from(datagram.max(1)) * 8.0;
        Self {
            per_second: (rate_bps > 0).then(|| rate_bps as f64 / datagram_bits),
            datagram_bits,
            tokens: 1.0,
            updated: Duration::ZERO,
        }
    }

    /// Brings the bucket up to `now` at the current rate.
    fn refill(&mut self, now: Duration) {
        if let Some(rate) = self.per_second
            && now > self.updated
        {
            let accrued = (now - self.updated).as_secs_f64() * rate;
            self.tokens = (self.tokens + accrued).min(Self::MAX_BATCH as f64);
        }
        self.updated = self.updated.max(now);
    }

    /// From `now` on, `rate_bps` (0 = unpaced).
    pub fn set_rate(&mut self, rate_bps: u64, now: Duration) {
        self.refill(now);
        self.per_second = (rate_bps > 0).then(|| rate_bps as f64 / self.datagram_bits);
    }

    /// The rate now, bit/s (0 = unpaced).
    pub fn rate_bps(&self) -> u64 {
        self.per_second
            .map_or(0, |rate| (rate * self.datagram_bits).round() as u64)
    }

    /// Datagrams to send now, `now` after the start.
    pub fn due(&mut self, now: Duration) -> u64 {
        match self.per_second {
            None => Self::MAX_BATCH,
            Some(_) => {
                self.refill(now);
                self.tokens.floor() as u64
            }
        }
    }

    /// `count` datagrams left.
    pub fn sent(&mut self, count: u64) {
        if self.per_second.is_some() {
            self.tokens -= count as f64;
        }
    }

    /// When the next datagram is due, measured from the start.
    pub fn next_due(&self) -> Duration {
        match self.per_second {
            None => Duration::ZERO,
            Some(_) if self.tokens >= 1.0 => self.updated,
            Some(rate) => self.updated + Duration::from_secs_f64((1.0 - self.tokens) / rate),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends whatever is due every `step` until `until`, from `from`; how many left.
    fn drive(pacer: &mut Pacer, from: Duration, until: Duration, step: Duration) -> u64 {
        let mut now = from;
        let mut total = 0;
        while now < until {
            let due = pacer.due(now);
            pacer.sent(due);
            total += due;
            now += step;
        }
        total
    }

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
        // One second of regular looks sends one second's worth.
        let mut pacer = Pacer::new(10_000_000, 1250);
        let sent = drive(
            &mut pacer,
            Duration::ZERO,
            Duration::from_secs(1),
            Duration::from_micros(700),
        );
        assert!((999..=1001).contains(&sent), "{sent}");
    }

    /// A rate change applies from the moment it is made: no burst for the time before it
    /// at the new rate (the old pacer computed what was owed since the start at the current
    /// rate, and doubled the rate into a 1000-datagram burst).
    #[test]
    fn a_rate_change_neither_bursts_nor_forgives() {
        let mut pacer = Pacer::new(10_000_000, 1250);
        let step = Duration::from_micros(250);
        let first = drive(&mut pacer, Duration::ZERO, Duration::from_secs(1), step);
        assert!((999..=1001).contains(&first), "{first}");
        pacer.set_rate(20_000_000, Duration::from_secs(1));
        assert_eq!(pacer.rate_bps(), 20_000_000);
        assert!(
            pacer.due(Duration::from_secs(1)) <= 2,
            "no burst at the change"
        );
        let second = drive(
            &mut pacer,
            Duration::from_secs(1),
            Duration::from_secs(2),
            step,
        );
        assert!((1998..=2002).contains(&second), "{second}");
        // Down to 2 Mbit/s: 200 in the next second, not a pause to "pay back".
        pacer.set_rate(2_000_000, Duration::from_secs(2));
        let third = drive(
            &mut pacer,
            Duration::from_secs(2),
            Duration::from_secs(3),
            step,
        );
        assert!((199..=201).contains(&third), "{third}");
        // Unpaced and back.
        pacer.set_rate(0, Duration::from_secs(3));
        assert_eq!(pacer.due(Duration::from_secs(3)), Pacer::MAX_BATCH);
        assert_eq!(pacer.next_due(), Duration::ZERO);
    }
}
