//! The receiver's retransmission requests, as a state machine with no socket and no clock,
//! after the public description of FASP: the receiver notices gaps, keeps a request per
//! missing datagram with the time it may be asked for (again), and repeats a request only
//! after a measured round trip has passed without the datagram — never blindly. The round
//! trip is measured from requests answered the first time (Karn: a datagram asked for twice
//! says nothing about which request it answers), so it includes the time a request waits in
//! the sender's queue; until one is, twice the one-way delay of the data stands in. The wait
//! before a repeat is the round trip plus one deviation (RFC 6298 has four; a receiver
//! that asks too late costs the transfer its tail). Random loss needs a few repeats of a
//! request now and then (at 10 % loss each way one round in five fails), so the first three
//! repeats wait one such interval each; from the fourth on the wait doubles, so a sender
//! that falls behind, or a path that is gone, is not buried in repeats.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::wire::fasp::SeqRange;

/// Most missing datagrams one session tracks (its memory is bounded whatever a sender
/// claims); beyond, the newest gaps wait until older ones are filled, and the sender's DONE
/// polls bring them in (see the receiver).
pub const MAX_TRACKED: usize = 4_096;
/// The shortest wait before a repeat (scheduling noise on a path without delay).
const MIN_REPEAT: Duration = Duration::from_millis(2);
/// The longest wait before a repeat, however often it was repeated.
const MAX_REPEAT: Duration = Duration::from_secs(2);
/// Repeats of one request that wait one repeat interval each; later ones wait twice as long
/// as the one before.
const STEADY_REPEATS: u32 = 3;
/// The round trip assumed before anything was measured.
const INITIAL_RTT: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Request {
    /// When it was last asked for; `None`: not yet.
    asked: Option<Duration>,
    times: u32,
}

/// What a session's receiver still wants, and when it may ask.
#[derive(Debug, Clone, Default)]
pub struct Requests {
    pending: BTreeMap<u64, Request>,
    /// Smoothed round trip from answered first requests, and its mean deviation.
    srtt: Option<Duration>,
    rttvar: Duration,
    /// Twice the latest one-way delay of the data: the round trip until one is measured.
    estimate: Option<Duration>,
    /// Requests sent, in all, and repeats among them.
    pub asked: u64,
    pub repeated: u64,
    /// No request falls due before this: `due` returns at once until then, so a session's
    /// datagrams cost no scan of what it is missing.
    quiet_until: Duration,
}

impl Requests {
    /// Datagrams still missing.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// The round trip it waits on: measured, else estimated, else assumed.
    pub fn rtt(&self) -> Duration {
        self.srtt.or(self.estimate).unwrap_or(INITIAL_RTT)
    }

    /// How long a request waits before it is repeated the first time: the round trip and
    /// one deviation (half a round trip more before any measurement).
    pub fn repeat_after(&self) -> Duration {
        let wait = match self.srtt {
            Some(srtt) => srtt + self.rttvar,
            None => self.rtt().mul_f64(1.5),
        };
        wait.clamp(MIN_REPEAT, MAX_REPEAT)
    }

    /// The wait after a request asked `times` times: doubled with each repeat after the third.
    fn wait(&self, times: u32) -> Duration {
        let doubling = 1u32 << times.saturating_sub(STEADY_REPEATS).min(10);
        (self.repeat_after() * doubling).min(MAX_REPEAT)
    }

    /// A data datagram's one-way delay (for the estimate before a measurement).
    pub fn on_one_way(&mut self, one_way: Duration) {
        self.estimate = Some(one_way * 2);
    }

    /// Sequence numbers `first..first+count` are missing (a gap was seen); those already
    /// tracked keep their state.
    pub fn on_gap(&mut self, first: u64, count: u64) {
        for sequence in first..first.saturating_add(count) {
            if self.pending.len() >= MAX_TRACKED {
                return;
            }
            self.pending.entry(sequence).or_insert(Request {
                asked: None,
                times: 0,
            });
            self.quiet_until = Duration::ZERO;
        }
    }

    /// `sequence` arrived at `now`: no longer wanted; if it answers a first request, the
    /// round trip is measured.
    pub fn on_received(&mut self, sequence: u64, now: Duration) {
        if let Some(request) = self.pending.remove(&sequence)
            && request.times == 1
            && let Some(asked) = request.asked
        {
            let sample = now.saturating_sub(asked);
            match self.srtt {
                None => {
                    self.srtt = Some(sample);
                    self.rttvar = sample / 2;
                }
                Some(srtt) => {
                    let deviation = srtt.abs_diff(sample);
                    self.rttvar = self.rttvar.mul_f64(0.75) + deviation.mul_f64(0.25);
                    self.srtt = Some(srtt.mul_f64(0.875) + sample.mul_f64(0.125));
                }
            }
        }
    }

    /// The requests due at `now` (never asked, or asked a repeat interval ago and still
    /// missing), as at most `limit` ranges; they count as asked now.
    pub fn due(&mut self, now: Duration, limit: usize) -> Vec<SeqRange> {
        if now < self.quiet_until || self.pending.is_empty() {
            return Vec::new();
        }
        let waits: Vec<Duration> = (0..=11).map(|times| self.wait(times)).collect();
        let wait = |times: u32| waits[times.min(11) as usize];
        let mut ranges: Vec<SeqRange> = Vec::new();
        let mut earliest = Duration::MAX;
        for (&sequence, request) in self.pending.iter_mut() {
            let next = request.asked.map(|asked| asked + wait(request.times));
            if let Some(next) = next
                && now < next
            {
                earliest = earliest.min(next);
                continue;
            }
            let extends = ranges
                .last()
                .is_some_and(|r| r.first + u64::from(r.count) == sequence && r.count < u32::MAX);
            if extends {
                if let Some(r) = ranges.last_mut() {
                    r.count += 1;
                }
            } else if ranges.len() >= limit {
                // More is due than one NACK carries: the next look goes on.
                earliest = Duration::ZERO;
                break;
            } else {
                ranges.push(SeqRange {
                    first: sequence,
                    count: 1,
                });
            }
            if request.times > 0 {
                self.repeated += 1;
            }
            request.asked = Some(now);
            request.times += 1;
            self.asked += 1;
            earliest = earliest.min(now + wait(request.times));
        }
        self.quiet_until = earliest;
        ranges
    }

    /// When the next request falls due, if any is waiting.
    pub fn next_due(&self) -> Option<Duration> {
        self.pending
            .values()
            .map(|r| r.asked.map_or(Duration::ZERO, |a| a + self.wait(r.times)))
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn gaps_are_asked_for_once_then_after_a_round_trip() {
        let mut r = Requests::default();
        r.on_one_way(ms(25));
        assert_eq!(r.rtt(), ms(50));
        r.on_gap(10, 3);
        r.on_gap(20, 1);
        assert_eq!(
            r.due(ms(0), 10),
            [
                SeqRange {
                    first: 10,
                    count: 3
                },
                SeqRange {
                    first: 20,
                    count: 1
                }
            ]
        );
        // Asked: nothing is due again before 1.5 round trips.
        assert!(r.due(ms(10), 10).is_empty());
        assert!(r.due(ms(74), 10).is_empty());
        assert_eq!(r.next_due(), Some(ms(75)));
        // 11 arrives after 50 ms: a measured round trip (deviation 25 ms): a repeat waits
        // 50 + 25 = 75 ms.
        r.on_received(11, ms(50));
        assert_eq!((r.rtt(), r.repeat_after()), (ms(50), ms(75)));
        assert!(r.due(ms(74), 10).is_empty());
        assert_eq!(
            r.due(ms(75), 10),
            [
                SeqRange {
                    first: 10,
                    count: 1
                },
                SeqRange {
                    first: 12,
                    count: 1
                },
                SeqRange {
                    first: 20,
                    count: 1
                }
            ]
        );
        assert_eq!((r.asked, r.repeated), (7, 3));
        // The second and third repeats wait as long; the fourth twice as long.
        assert!(r.due(ms(149), 10).is_empty());
        assert_eq!(r.due(ms(150), 10).len(), 3);
        assert!(r.due(ms(224), 10).is_empty());
        assert_eq!(r.due(ms(225), 10).len(), 3);
        assert!(r.due(ms(374), 10).is_empty());
        assert_eq!(r.due(ms(375), 10).len(), 3);
        assert_eq!((r.asked, r.repeated), (16, 12));
        // An answer to a repeated request measures nothing (Karn).
        r.on_received(10, ms(380));
        assert_eq!(r.rtt(), ms(50));
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn the_round_trip_is_smoothed_and_bounded_below() {
        let mut r = Requests::default();
        assert_eq!(r.rtt(), INITIAL_RTT);
        for (i, rtt) in [40u64, 40, 40, 120].into_iter().enumerate() {
            let sequence = i as u64;
            r.on_gap(sequence, 1);
            let at = ms(1000 * i as u64);
            r.due(at, 10);
            r.on_received(sequence, at + ms(rtt));
        }
        // 40, then one outlier of 120: 40 * 7/8 + 120 / 8 = 50.
        assert_eq!(r.rtt(), ms(50));
        let mut fast = Requests::default();
        fast.on_one_way(Duration::from_micros(10));
        assert_eq!(fast.repeat_after(), MIN_REPEAT);
    }

    #[test]
    fn requests_are_bounded() {
        let mut r = Requests::default();
        r.on_gap(0, u64::MAX);
        assert_eq!(r.len(), MAX_TRACKED);
        let ranges = r.due(ms(0), 5);
        assert_eq!(
            ranges,
            [SeqRange {
                first: 0,
                count: MAX_TRACKED as u32
            }]
        );
        // Limited ranges: the rest wait for the next look.
        let mut r = Requests::default();
        for s in (0..20).step_by(2) {
            r.on_gap(s, 1);
        }
        assert_eq!(r.due(ms(0), 3).len(), 3);
        assert_eq!(r.due(ms(0), 100).len(), 7);
    }
}
