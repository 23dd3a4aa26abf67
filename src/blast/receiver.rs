//! The server's receiving side of one UDP port, as a state machine: datagrams and the time
//! in, replies out. No sockets and no clock: `server.rs` moves the bytes.
//!
//! Only sessions the control connection registered on this port exist here. A datagram is
//! taken only with its session's token, from the IP address of the session's control
//! connection, and, once the first one has fixed it, from the session's UDP port; anything
//! else is counted in [`PortReceiver::rejected`] and changes nothing. What a session costs
//! grows with the gaps it has seen ([`ReceivedSet`], at most [`MAX_GAPS`] of them), never with
//! the sequence numbers a datagram claims; claims of how much was sent are checked against
//! what the session could have sent.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;

use super::requests::Requests;
use crate::model::Port;
use crate::wire::fasp::{self, MAX_NACK_RANGES, Message, ReceiverStats, Repr, SeqRange, flags};

/// Distinct datagrams between two acknowledgements of a session's path.
pub const ACK_EVERY: u64 = 128;
/// An acknowledgement at least this often while data arrives (timed acknowledgements: the
/// sender's rate control reads a delay sample from each).
pub const ACK_INTERVAL: Duration = Duration::from_millis(10);
/// Most separate runs of received sequence numbers one session keeps; a datagram that would
/// open one more is dropped (the sender retransmits it when asked).
pub const MAX_GAPS: usize = 4096;
/// Slack on the rate a session asked for when its claims are checked: pacing bursts and
/// retransmissions stay well inside it, a forged or absurd count does not.
const RATE_SLACK: u64 = 2;
/// Datagrams any session may be ahead of its rate (a paced sender's first burst).
const BURST: u64 = 1024;
/// The time any session may be ahead of its registration (clock and scheduling slack).
const TIME_SLACK: Duration = Duration::from_secs(1);

/// What a session's control connection tells the port's receiver.
#[derive(Debug, Clone)]
pub struct Registration {
    /// The id the server assigned.
    pub session: u32,
    /// The session's secret, sent in PORT.
    pub token: u64,
    /// The IP address of the session's control connection.
    pub peer_ip: IpAddr,
    /// Target rate from HELLO, bit/s; 0 = unpaced.
    pub rate_bps: u64,
    /// Datagram size from HELLO: the IP packet, headers included.
    pub datagram: u16,
    /// When the session was granted, since the run's epoch.
    pub registered_at: Duration,
    /// Distinct datagrams received so far, for the control connection's STATUS.
    pub progress: Arc<AtomicU64>,
}

/// What the server saw of one session.
#[derive(Debug, Clone)]
pub struct ServerSession {
    pub port: Port,
    pub stats: ReceiverStats,
    /// Datagrams the client said it sent (from DONE), if it said and the claim was possible.
    pub sent: Option<u64>,
    /// Datagrams received more than once.
    pub duplicates: u64,
    /// First to last data arrival.
    pub active: Duration,
    /// One-way latency in microseconds, once a datagram arrived.
    pub latency_us: Option<Histogram<u32>>,
}

/// A reply the receiver wants sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub to: SocketAddr,
    pub repr: Repr,
}

/// The sequence numbers one session received: disjoint runs `start..end`, merged as they
/// touch. Memory is bounded by [`MAX_GAPS`] whatever sequence numbers arrive.
#[derive(Debug, Clone, Default)]
pub struct ReceivedSet {
    runs: BTreeMap<u64, u64>,
    distinct: u64,
}

/// What [`ReceivedSet::insert`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    Fresh,
    Duplicate,
    /// It would have opened a run past [`MAX_GAPS`]: not taken.
    Full,
}

impl ReceivedSet {
    /// Distinct sequence numbers held.
    pub fn len(&self) -> u64 {
        self.distinct
    }

    pub fn is_empty(&self) -> bool {
        self.distinct == 0
    }

    /// Separate runs held (at most [`MAX_GAPS`]).
    pub fn runs(&self) -> usize {
        self.runs.len()
    }

    pub fn insert(&mut self, sequence: u64) -> Mark {
        let Some(after) = sequence.checked_add(1) else {
            return Mark::Full;
        };
        let before = self
            .runs
            .range(..=sequence)
            .next_back()
            .map(|(&s, &e)| (s, e));
        if let Some((_, end)) = before
            && sequence < end
        {
            return Mark::Duplicate;
        }
        let next = self.runs.get_key_value(&after).map(|(&s, &e)| (s, e));
        match (before, next) {
            (Some((start, end)), Some((_, next_end))) if end == sequence => {
                self.runs.remove(&after);
                self.runs.insert(start, next_end);
            }
            (Some((start, end)), _) if end == sequence => {
                self.runs.insert(start, after);
            }
            (_, Some((_, next_end))) => {
                self.runs.remove(&after);
                self.runs.insert(sequence, next_end);
            }
            _ => {
                if self.runs.len() >= MAX_GAPS {
                    return Mark::Full;
                }
                self.runs.insert(sequence, after);
            }
        }
        self.distinct += 1;
        Mark::Fresh
    }

    /// Sequence numbers below `end` not held, as at most `limit` ranges.
    pub fn missing(&self, end: u64, limit: usize) -> Vec<SeqRange> {
        let mut ranges = Vec::new();
        let push = |mut first: u64, last: u64, ranges: &mut Vec<SeqRange>| {
            while first < last && ranges.len() < limit {
                let count = u32::try_from(last - first).unwrap_or(u32::MAX);
                ranges.push(SeqRange { first, count });
                first += u64::from(count);
            }
        };
        let mut cursor = 0u64;
        for (&start, &stop) in &self.runs {
            if cursor >= end || ranges.len() >= limit {
                break;
            }
            push(cursor, start.min(end), &mut ranges);
            cursor = stop;
        }
        push(cursor, end, &mut ranges);
        ranges
    }
}

/// One registered session as the receiver tracks it.
struct Receiving {
    registration: Registration,
    /// Fixed by the first datagram that passed every check.
    peer: Option<SocketAddr>,
    received: ReceivedSet,
    stats: ReceiverStats,
    sent: Option<u64>,
    duplicates: u64,
    first: Option<Duration>,
    last: Option<Duration>,
    /// Made with the first datagram (a session that never sends costs no histogram), and
    /// grown only as far as the latencies seen: thousands of sessions stay small.
    latency_us: Option<Histogram<u32>>,
    /// What is missing, and when it may be asked for (again).
    requests: Requests,
    last_ack: Option<Duration>,
}

impl Receiving {
    fn new(registration: Registration) -> Self {
        Self {
            registration,
            peer: None,
            received: ReceivedSet::default(),
            stats: ReceiverStats::default(),
            sent: None,
            duplicates: 0,
            first: None,
            last: None,
            latency_us: None,
            requests: Requests::default(),
            last_ack: None,
        }
    }

    /// The most datagrams this session can have sent by `now`: its rate (with slack) over
    /// the time since it was granted, and never more than the run allows.
    fn could_have_sent(&self, now: Duration, max_datagrams: u64) -> u64 {
        let registration = &self.registration;
        if registration.rate_bps == 0 {
            return max_datagrams;
        }
        let elapsed = now.saturating_sub(registration.registered_at) + TIME_SLACK;
        let bits = u128::from(registration.rate_bps) * elapsed.as_nanos() / 1_000_000_000;
        let datagrams = bits / (u128::from(registration.datagram.max(1)) * 8);
        let limit = datagrams
            .saturating_mul(u128::from(RATE_SLACK))
            .saturating_add(u128::from(BURST));
        u64::try_from(limit).unwrap_or(u64::MAX).min(max_datagrams)
    }

    fn finish(self, port: Port) -> ServerSession {
        let active = match (self.first, self.last) {
            (Some(first), Some(last)) => last.saturating_sub(first),
            _ => Duration::ZERO,
        };
        ServerSession {
            port,
            stats: self.stats,
            sent: self.sent,
            duplicates: self.duplicates,
            active,
            latency_us: self.latency_us,
        }
    }
}

/// The receiver of one UDP port.
pub struct PortReceiver {
    port: Port,
    max_datagrams: u64,
    sessions: HashMap<u32, Receiving>,
    rejected: u64,
}

impl PortReceiver {
    /// A receiver for `port`; no session may use sequence numbers at or above `max_datagrams`.
    pub fn new(port: Port, max_datagrams: u64) -> Self {
        Self {
            port,
            max_datagrams,
            sessions: HashMap::new(),
            rejected: 0,
        }
    }

    /// Datagrams dropped because they were not a registered session's own.
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    /// Runs of received sequence numbers held over all sessions: what the receiver's memory
    /// grows with (at most [`MAX_GAPS`] per registered session).
    pub fn runs_held(&self) -> usize {
        self.sessions.values().map(|s| s.received.runs()).sum()
    }

    pub fn register(&mut self, registration: Registration) {
        self.sessions
            .insert(registration.session, Receiving::new(registration));
    }

    /// Ends a session; what it received, if it was registered here.
    pub fn unregister(&mut self, session: u32) -> Option<ServerSession> {
        let port = self.port;
        self.sessions.remove(&session).map(|s| s.finish(port))
    }

    /// Every session still registered, ended.
    pub fn finish(self) -> Vec<(u32, ServerSession)> {
        let port = self.port;
        self.sessions
            .into_iter()
            .map(|(id, s)| (id, s.finish(port)))
            .collect()
    }

    /// Takes one datagram that arrived from `from` at `now` (since the run's epoch) and
    /// appends the replies it calls for to `replies`.
    pub fn on_datagram(
        &mut self,
        from: SocketAddr,
        bytes: &[u8],
        now: Duration,
        replies: &mut Vec<Reply>,
    ) {
        let max_datagrams = self.max_datagrams;
        let Some((repr, state)) = fasp::parse(bytes)
            .ok()
            .and_then(|repr| self.sessions.get_mut(&repr.session).map(|s| (repr, s)))
        else {
            self.rejected += 1;
            return;
        };
        let own = repr.token == state.registration.token
            && from.ip() == state.registration.peer_ip
            && state.peer.is_none_or(|peer| peer == from);
        let accepted = own
            && match repr.message {
                Message::Data { payload_len } => {
                    on_data(state, &repr, payload_len, from, now, max_datagrams, replies)
                }
                Message::Done { sent, .. } => {
                    on_done(state, sent, repr.send_ns, from, now, max_datagrams, replies)
                }
                Message::Nack { .. } | Message::Ack { .. } => false,
            };
        if accepted {
            state.peer = Some(from);
        } else {
            self.rejected += 1;
        }
    }
}

fn reply(state: &Receiving, to: SocketAddr, now: Duration, message: Message) -> Reply {
    Reply {
        to,
        repr: Repr {
            session: state.registration.session,
            token: state.registration.token,
            sequence: 0,
            send_ns: u64::try_from(now.as_nanos()).unwrap_or(u64::MAX),
            message,
        },
    }
}

/// A DATA datagram of a session's own; false when its claims are impossible.
fn on_data(
    state: &mut Receiving,
    repr: &Repr,
    payload_len: u16,
    from: SocketAddr,
    now: Duration,
    max_datagrams: u64,
    replies: &mut Vec<Reply>,
) -> bool {
    if repr.sequence >= state.could_have_sent(now, max_datagrams) {
        return false;
    }
    // The send time is the peer's word: a time after ours is not a latency.
    let sent_at = Duration::from_nanos(repr.send_ns);
    let one_way = (sent_at <= now).then(|| now - sent_at);
    if let Some(one_way) = one_way {
        state.requests.on_one_way(one_way);
    }
    match state.received.insert(repr.sequence) {
        Mark::Fresh => {}
        Mark::Duplicate => {
            state.duplicates += 1;
            return true;
        }
        Mark::Full => return true,
    }
    state.requests.on_received(repr.sequence, now);
    let first = state.first.is_none();
    state.first.get_or_insert(now);
    state.last = Some(now);
    state.stats.received = state.received.len();
    state.stats.bytes += u64::from(payload_len);
    state
        .registration
        .progress
        .store(state.stats.received, Ordering::Relaxed);
    if let Some(one_way) = one_way {
        let latency = u64::try_from(one_way.as_micros()).unwrap_or(u64::MAX);
        let histogram = state.latency_us.get_or_insert_with(|| {
            // Two significant figures (percentiles within 1 %) keep a histogram to a few
            // KiB, which matters at thousands of sessions; counts up to 2^32 hold the most
            // datagrams a session may send.
            Histogram::new(2).expect("valid precision")
        });
        let _ = histogram.record(latency.max(1));
    }
    let expected = state.stats.next_expected;
    state.stats.next_expected = expected.max(repr.sequence + 1);
    if repr.sequence > expected {
        state.requests.on_gap(expected, repr.sequence - expected);
    }
    // Missing datagrams are asked for when the gap shows, and again only after a measured
    // round trip (never blindly).
    let missing = state.requests.due(now, MAX_NACK_RANGES);
    if !missing.is_empty() {
        replies.push(reply(state, from, now, Message::Nack { missing }));
    }
    // The first datagram is acknowledged, then every ACK_EVERY-th and at least every
    // ACK_INTERVAL, so a lost acknowledgement does not fail a working session and the
    // sender's rate control gets its delay samples.
    let timed = state
        .last_ack
        .is_none_or(|last| now.saturating_sub(last) >= ACK_INTERVAL);
    if first || state.stats.received % ACK_EVERY == 0 || timed {
        state.last_ack = Some(now);
        let ack = Message::Ack {
            flags: flags::HANDSHAKE,
            stats: state.stats,
            echo_ns: repr.send_ns,
        };
        replies.push(reply(state, from, now, ack));
    }
    true
}

/// DONE: the sender's count is checked, what is still missing asked for once more, and the
/// final statistics sent. False when the count is impossible.
fn on_done(
    state: &mut Receiving,
    sent: u64,
    send_ns: u64,
    from: SocketAddr,
    now: Duration,
    max_datagrams: u64,
    replies: &mut Vec<Reply>,
) -> bool {
    if sent > state.could_have_sent(now, max_datagrams) {
        return false;
    }
    state.sent = Some(sent);
    let mut stats = state.stats;
    if sent > stats.next_expected {
        // The tail was lost: a gap nothing after it could show.
        state
            .requests
            .on_gap(stats.next_expected, sent - stats.next_expected);
    }
    stats.next_expected = stats.next_expected.max(sent);
    stats.missing = stats.next_expected - stats.received;
    state.stats = stats;
    // Gaps past what the requests could track come in now, as room allows; then what is
    // due (new, or a round trip and its deviations after the last ask).
    if stats.missing > state.requests.len() as u64 {
        for gap in state.received.missing(stats.next_expected, MAX_NACK_RANGES) {
            state.requests.on_gap(gap.first, u64::from(gap.count));
        }
    }
    let missing = state.requests.due(now, MAX_NACK_RANGES);
    if !missing.is_empty() {
        replies.push(reply(state, from, now, Message::Nack { missing }));
    }
    replies.push(reply(
        state,
        from,
        now,
        Message::Ack {
            flags: flags::FINAL,
            stats,
            echo_ns: send_ns,
        },
    ));
    true
}

#[cfg(test)]
mod tests_support {
    use super::*;

    pub const CLIENT: SocketAddr =
        SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2)), 40_000);
    pub const TOKEN: u64 = 0x5eed_5eed_5eed_5eed;

    pub fn registered(rate_bps: u64) -> PortReceiver {
        let mut receiver = PortReceiver::new(61_000, 1_000_000);
        receiver.register(Registration {
            session: 7,
            token: TOKEN,
            peer_ip: CLIENT.ip(),
            rate_bps,
            datagram: 1000,
            registered_at: Duration::ZERO,
            progress: Arc::new(AtomicU64::new(0)),
        });
        receiver
    }

    /// A datagram of session 7 sent at `at`.
    pub fn stamped(sequence: u64, at: Duration, message: Message) -> Vec<u8> {
        let repr = Repr {
            session: 7,
            token: TOKEN,
            sequence,
            send_ns: u64::try_from(at.as_nanos()).unwrap(),
            message,
        };
        let mut bytes = vec![0u8; repr.buffer_len()];
        repr.emit(&mut bytes).unwrap();
        bytes
    }

    pub fn datagram(session: u32, token: u64, sequence: u64, message: Message) -> Vec<u8> {
        let repr = Repr {
            session,
            token,
            sequence,
            send_ns: 0,
            message,
        };
        let mut bytes = vec![0u8; repr.buffer_len()];
        repr.emit(&mut bytes).unwrap();
        bytes
    }

    pub fn data(sequence: u64) -> Vec<u8> {
        datagram(7, TOKEN, sequence, Message::Data { payload_len: 964 })
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::*;
    use super::*;

    #[test]
    fn received_set_merges_runs_and_names_the_gaps() {
        let mut set = ReceivedSet::default();
        for s in [0u64, 1, 4, 5, 9, 3, 2] {
            assert_eq!(set.insert(s), Mark::Fresh, "{s}");
        }
        assert_eq!(set.insert(4), Mark::Duplicate);
        assert_eq!((set.len(), set.runs()), (7, 2));
        assert_eq!(
            set.missing(12, 10),
            vec![
                SeqRange { first: 6, count: 3 },
                SeqRange {
                    first: 10,
                    count: 2
                }
            ]
        );
        assert_eq!(set.missing(12, 1).len(), 1);
        assert_eq!(set.insert(u64::MAX), Mark::Full);
    }

    #[test]
    fn received_set_is_bounded_whatever_arrives() {
        let mut set = ReceivedSet::default();
        for s in 0..(MAX_GAPS as u64 + 100) {
            set.insert(s * 2);
        }
        assert_eq!(set.runs(), MAX_GAPS);
        // Filling a gap still works when full.
        assert_eq!(set.insert(1), Mark::Fresh);
        // A gap of 2^64 - 1 sequence numbers is named in a bounded number of ranges.
        let mut far = ReceivedSet::default();
        far.insert(u64::MAX - 1);
        assert_eq!(
            far.missing(u64::MAX, MAX_NACK_RANGES).len(),
            MAX_NACK_RANGES
        );
    }

    #[test]
    fn acknowledges_the_first_datagram_and_asks_for_gaps() {
        let mut receiver = registered(0);
        let mut replies = Vec::new();
        receiver.on_datagram(CLIENT, &data(0), Duration::from_millis(1), &mut replies);
        assert!(matches!(
            replies[0].repr.message,
            Message::Ack {
                flags: flags::HANDSHAKE,
                ..
            }
        ));
        assert_eq!((replies[0].repr.session, replies[0].repr.token), (7, TOKEN));
        replies.clear();
        receiver.on_datagram(CLIENT, &data(5), Duration::from_millis(2), &mut replies);
        assert_eq!(
            replies[0].repr.message,
            Message::Nack {
                missing: vec![SeqRange { first: 1, count: 4 }]
            }
        );
        assert_eq!(receiver.rejected(), 0);
    }

    #[test]
    fn only_the_sessions_own_datagrams_count() {
        let mut receiver = registered(0);
        let mut replies = Vec::new();
        let now = Duration::from_millis(1);
        let stranger = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 40_000);
        let other_port = SocketAddr::new(CLIENT.ip(), 40_001);
        let hostile: [(SocketAddr, Vec<u8>); 6] = [
            (
                CLIENT,
                datagram(8, TOKEN, 0, Message::Data { payload_len: 0 }),
            ),
            (
                CLIENT,
                datagram(7, TOKEN ^ 1, 0, Message::Data { payload_len: 0 }),
            ),
            (stranger, data(0)),
            (CLIENT, b"\x02\x01garbage".to_vec()),
            (
                CLIENT,
                datagram(
                    7,
                    TOKEN,
                    0,
                    Message::Ack {
                        flags: flags::HANDSHAKE,
                        stats: ReceiverStats::default(),
                        echo_ns: 0,
                    },
                ),
            ),
            (CLIENT, data(1_000_000)),
        ];
        for (from, bytes) in &hostile {
            receiver.on_datagram(*from, bytes, now, &mut replies);
        }
        assert!(replies.is_empty(), "{replies:?}");
        assert_eq!(receiver.rejected(), hostile.len() as u64);
        // The first good datagram fixes the peer's port; another port is then a stranger.
        receiver.on_datagram(CLIENT, &data(0), now, &mut replies);
        receiver.on_datagram(other_port, &data(1), now, &mut replies);
        assert_eq!(receiver.rejected(), hostile.len() as u64 + 1);
        let (_, session) = receiver.finish().pop().unwrap();
        assert_eq!(session.stats.received, 1);
    }

    #[test]
    fn claims_are_checked_against_the_rate() {
        // 8 Mbit/s of 1000-byte datagrams: 1000 per second, 2x slack plus a burst.
        let mut receiver = registered(8_000_000);
        let mut replies = Vec::new();
        let now = Duration::from_secs(1);
        let done = |sent| {
            datagram(
                7,
                TOKEN,
                0,
                Message::Done {
                    sent,
                    retransmitted: 0,
                },
            )
        };
        receiver.on_datagram(CLIENT, &done(1u64 << 63), now, &mut replies);
        receiver.on_datagram(CLIENT, &data(100_000), now, &mut replies);
        assert_eq!(receiver.rejected(), 2);
        assert!(replies.is_empty());
        receiver.on_datagram(CLIENT, &data(0), now, &mut replies);
        receiver.on_datagram(CLIENT, &done(3000), now, &mut replies);
        assert_eq!(receiver.rejected(), 2);
        let Some(Reply {
            repr:
                Repr {
                    message:
                        Message::Ack {
                            flags: f, stats, ..
                        },
                    ..
                },
            ..
        }) = replies.last()
        else {
            panic!("{replies:?}")
        };
        assert_eq!(*f, flags::FINAL);
        assert_eq!(
            (stats.received, stats.missing, stats.next_expected),
            (1, 2999, 3000)
        );
    }
}

/// A sized transfer between the sender's and the receiver's state machines over a lossy,
/// delayed path simulated in memory: every datagram either way is lost with 10 %
/// probability and arrives 25 ms later.
#[cfg(test)]
mod transfer {
    use super::tests_support::*;
    use super::*;
    use crate::blast::sender::{Heard, SenderState};
    use rand::{RngExt, SeedableRng};

    #[test]
    fn a_sized_transfer_completes_through_ten_percent_loss() {
        let server: SocketAddr = "198.19.0.1:61000".parse().unwrap();
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(7);
        let total = 4121u64;
        let mut sender = SenderState::new(server, 7, TOKEN).sized(total);
        let mut receiver = registered(0);
        // (arrival time, to the server?, bytes)
        let mut wire: Vec<(Duration, bool, Vec<u8>)> = Vec::new();
        let delay = Duration::from_millis(25);
        let step = Duration::from_micros(1193); // 838 datagrams/s: 10 Mbit/s of 1492 B
        let mut now = Duration::from_secs(1);
        let mut sent = 0u64;
        let mut retransmitted = 0u64;
        let mut last_done = Duration::ZERO;
        let end = now + Duration::from_secs(30);
        while now < end && !sender.complete() {
            // One datagram per step, or DONE every 10 ms when idle.
            let outgoing = match sender.next_to_send() {
                Some((sequence, again)) => {
                    if again {
                        retransmitted += 1;
                    } else {
                        sent += 1;
                    }
                    Some(stamped(sequence, now, Message::Data { payload_len: 964 }))
                }
                None if now - last_done >= Duration::from_millis(10) => {
                    last_done = now;
                    let next = sender.next_sequence();
                    Some(stamped(
                        next,
                        now,
                        Message::Done {
                            sent: next,
                            retransmitted,
                        },
                    ))
                }
                None => None,
            };
            if let Some(bytes) = outgoing
                && rng.random_range(0.0..1.0) >= 0.1
            {
                wire.push((now + delay, true, bytes));
            }
            // Deliver what is due.
            let (due, later): (Vec<_>, Vec<_>) = wire.drain(..).partition(|(at, _, _)| *at <= now);
            wire = later;
            for (_, to_server, bytes) in due {
                if to_server {
                    let mut replies = Vec::new();
                    receiver.on_datagram(CLIENT, &bytes, now, &mut replies);
                    for reply in replies {
                        let mut buffer = vec![0u8; reply.repr.buffer_len()];
                        let len = reply.repr.emit(&mut buffer).unwrap();
                        buffer.truncate(len);
                        if rng.random_range(0.0..1.0) >= 0.1 {
                            wire.push((now + delay, false, buffer));
                        }
                    }
                } else {
                    assert_ne!(sender.on_reply(server, &bytes), Heard::Rejected);
                }
            }
            now += step;
        }
        let (_, session) = receiver.finish().pop().unwrap();
        assert!(
            sender.complete(),
            "received {} of {total}",
            session.stats.received
        );
        assert_eq!(sent, total);
        // About 10 % of the first pass, and of the retransmissions, are lost.
        assert!(retransmitted < total / 5, "{retransmitted} retransmitted");
        assert!(
            session.duplicates < total / 100,
            "{} duplicates",
            session.duplicates
        );
    }
}
