//! What a sending session knows, as a state machine with no socket and no clock: which
//! sequence numbers it sent, which the receiver asked for again, whether the path is
//! proven, and what the receiver acknowledged. [`super::client`] drives it with the
//! datagrams that reach its socket and asks it what to send next.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use crate::wire::fasp::{self, Message, ReceiverStats, flags};

/// What one datagram at the client's socket meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heard {
    /// Not its server's reply to its session (another source, session or token, garbage,
    /// or a kind a server never sends): counted, and it changes nothing.
    Rejected,
    /// An acknowledgement. `proved`: the first one that proves the path; `delivered`:
    /// distinct datagrams newly acknowledged; `last`: the receiver's final statistics.
    Ack {
        proved: bool,
        delivered: u64,
        last: bool,
        /// The receiver's clock when it acknowledged, minus the echoed send time of the
        /// datagram it answers: a one-way delay sample (a constant clock offset included).
        one_way_ns: Option<i64>,
    },
    /// A retransmission request (which proves the path as well); `queued` sequence numbers
    /// were added to the retransmission queue.
    Nack { proved: bool, queued: u64 },
}

/// The sender's side of one session; see the module docs.
#[derive(Debug, Clone)]
pub struct SenderState {
    server: SocketAddr,
    session: u32,
    token: u64,
    /// One past the highest new sequence number sent.
    next_sequence: u64,
    retransmit: BTreeSet<u64>,
    proven: bool,
    /// Distinct datagrams the receiver has acknowledged so far.
    acknowledged: u64,
    final_stats: Option<ReceiverStats>,
    /// A sized transfer's datagrams: no new sequence number at or past it.
    total: Option<u64>,
}

impl SenderState {
    /// A session `session` with `token`, granted by the server at `server`.
    pub fn new(server: SocketAddr, session: u32, token: u64) -> Self {
        Self {
            server,
            session,
            token,
            next_sequence: 0,
            retransmit: BTreeSet::new(),
            proven: false,
            acknowledged: 0,
            final_stats: None,
            total: None,
        }
    }

    /// A transfer of `total` datagrams: the sender sends each once, then only what the
    /// receiver asks for again, until the receiver holds them all.
    pub fn sized(mut self, total: u64) -> Self {
        self.total = Some(total);
        self
    }

    /// Whether every datagram of a sized transfer is delivered (the receiver said so).
    pub fn complete(&self) -> bool {
        self.total.is_some_and(|total| self.acknowledged >= total)
    }

    /// Whether a sized transfer has sent every datagram once.
    pub fn sent_once(&self) -> bool {
        self.total.is_some_and(|total| self.next_sequence >= total)
    }

    /// Whether a sized transfer has nothing to send until the receiver asks again.
    pub fn idle(&self) -> bool {
        self.total
            .is_some_and(|total| self.next_sequence >= total && self.retransmit.is_empty())
    }

    /// The next datagram to send: a requested retransmission first, else the next new
    /// sequence number. `(sequence, again)`; `None` when a sized transfer has sent every
    /// datagram and nothing is asked for again.
    pub fn next_to_send(&mut self) -> Option<(u64, bool)> {
        match self.retransmit.pop_first() {
            Some(sequence) => Some((sequence, true)),
            None if self.total.is_some_and(|t| self.next_sequence >= t) => None,
            None => {
                let sequence = self.next_sequence;
                self.next_sequence += 1;
                Some((sequence, false))
            }
        }
    }

    /// Whether a retransmission is owed.
    pub fn owes(&self) -> bool {
        !self.retransmit.is_empty()
    }

    /// A retransmission still owed, if any (the drain before DONE).
    pub fn owed(&mut self) -> Option<u64> {
        self.retransmit.pop_first()
    }

    /// Forgets what is owed (the session's datagram budget is spent).
    pub fn forgive(&mut self) {
        self.retransmit.clear();
    }

    pub fn next_sequence(&self) -> u64 {
        self.next_sequence
    }

    pub fn proven(&self) -> bool {
        self.proven
    }

    pub fn final_stats(&self) -> Option<ReceiverStats> {
        self.final_stats
    }

    /// Takes a datagram that reached the client's socket from `from`.
    pub fn on_reply(&mut self, from: SocketAddr, bytes: &[u8]) -> Heard {
        let repr = match fasp::parse(bytes) {
            Ok(repr)
                if from == self.server
                    && repr.session == self.session
                    && repr.token == self.token =>
            {
                repr
            }
            _ => return Heard::Rejected,
        };
        match repr.message {
            Message::Ack {
                flags: f,
                stats,
                echo_ns,
            } => {
                let proved = f & flags::HANDSHAKE != 0 && !self.proven;
                self.proven |= proved;
                let delivered = stats.received.saturating_sub(self.acknowledged);
                self.acknowledged = self.acknowledged.max(stats.received);
                let last = f & flags::FINAL != 0;
                if last {
                    self.final_stats = Some(stats);
                }
                let one_way_ns = (echo_ns != 0)
                    .then(|| {
                        i64::try_from(repr.send_ns)
                            .ok()?
                            .checked_sub(i64::try_from(echo_ns).ok()?)
                    })
                    .flatten();
                Heard::Ack {
                    proved,
                    delivered,
                    last,
                    one_way_ns,
                }
            }
            Message::Nack { missing } => {
                let proved = !self.proven;
                self.proven = true;
                let before = self.retransmit.len() as u64;
                for range in missing {
                    let end = range
                        .first
                        .saturating_add(u64::from(range.count))
                        .min(self.next_sequence);
                    // Bounded: a NACK cannot make the client resend more than it sent.
                    for sequence in range.first..end {
                        if self.retransmit.len() as u64 >= self.next_sequence {
                            break;
                        }
                        self.retransmit.insert(sequence);
                    }
                }
                Heard::Nack {
                    proved,
                    queued: self.retransmit.len() as u64 - before,
                }
            }
            Message::Data { .. } | Message::Done { .. } => Heard::Rejected,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::fasp::{Repr, SeqRange};

    const SERVER: &str = "127.0.0.1:33001";

    fn server() -> SocketAddr {
        SERVER.parse().unwrap()
    }

    fn bytes(session: u32, token: u64, message: Message) -> Vec<u8> {
        let repr = Repr {
            session,
            token,
            sequence: 0,
            send_ns: 0,
            message,
        };
        let mut buffer = vec![0u8; repr.buffer_len()];
        let len = repr.emit(&mut buffer).unwrap();
        buffer.truncate(len);
        buffer
    }

    fn ack(flags: u16, received: u64) -> Message {
        Message::Ack {
            flags,
            stats: ReceiverStats {
                received,
                missing: 0,
                next_expected: received,
                bytes: received * 1456,
            },
            echo_ns: 0,
        }
    }

    #[test]
    fn only_its_servers_replies_to_its_session_count() {
        let mut state = SenderState::new(server(), 7, 0xabc);
        let good = bytes(7, 0xabc, ack(flags::HANDSHAKE, 1));
        let other_port: SocketAddr = "127.0.0.1:33002".parse().unwrap();
        for (from, datagram) in [
            (other_port, good.clone()),
            (server(), bytes(8, 0xabc, ack(flags::HANDSHAKE, 1))),
            (server(), bytes(7, 0xabd, ack(flags::HANDSHAKE, 1))),
            (
                server(),
                bytes(
                    7,
                    0xabc,
                    Message::Done {
                        sent: 1,
                        retransmitted: 0,
                    },
                ),
            ),
            (server(), vec![0xff; 40]),
        ] {
            assert_eq!(state.on_reply(from, &datagram), Heard::Rejected);
        }
        assert!(!state.proven(), "nothing forged proves the path");
        assert_eq!(
            state.on_reply(server(), &good),
            Heard::Ack {
                proved: true,
                delivered: 1,
                last: false,
                one_way_ns: None
            }
        );
        assert!(state.proven());
    }

    /// A sized transfer sends each datagram once, then only what is asked for again, and is
    /// complete when the receiver acknowledges them all.
    #[test]
    fn a_sized_transfer_sends_each_datagram_once_then_only_what_is_asked() {
        let mut state = SenderState::new(server(), 1, 2).sized(3);
        let sent: Vec<_> = std::iter::from_fn(|| state.next_to_send()).collect();
        assert_eq!(sent, [(0, false), (1, false), (2, false)]);
        assert!(state.idle() && !state.complete());
        let nack = Message::Nack {
            missing: vec![SeqRange { first: 1, count: 5 }],
        };
        assert!(matches!(
            state.on_reply(server(), &bytes(1, 2, nack)),
            Heard::Nack { queued: 2, .. }
        ));
        assert!(!state.idle());
        assert_eq!(state.next_to_send(), Some((1, true)));
        assert_eq!(state.next_to_send(), Some((2, true)));
        assert_eq!(state.next_to_send(), None, "never past the size");
        state.on_reply(server(), &bytes(1, 2, ack(flags::FINAL, 3)));
        assert!(state.complete());
    }

    /// An acknowledgement's own send time (the receiver's clock) minus the send time it
    /// echoes is a one-way delay sample; without an echo there is none.
    #[test]
    fn acknowledgements_carry_a_one_way_delay_sample() {
        let mut state = SenderState::new(server(), 1, 2);
        let repr = Repr {
            session: 1,
            token: 2,
            sequence: 0,
            send_ns: 1_000_025_000_000,
            message: Message::Ack {
                flags: flags::HANDSHAKE,
                stats: ReceiverStats::default(),
                echo_ns: 1_000_000_000_000,
            },
        };
        let mut buffer = vec![0u8; repr.buffer_len()];
        let len = repr.emit(&mut buffer).unwrap();
        match state.on_reply(server(), &buffer[..len]) {
            Heard::Ack { one_way_ns, .. } => assert_eq!(one_way_ns, Some(25_000_000)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn acknowledgements_count_what_is_new_once_and_keep_the_final_statistics() {
        let mut state = SenderState::new(server(), 1, 2);
        let heard =
            |state: &mut SenderState, f, n| state.on_reply(server(), &bytes(1, 2, ack(f, n)));
        assert_eq!(
            heard(&mut state, flags::HANDSHAKE, 3),
            Heard::Ack {
                proved: true,
                delivered: 3,
                last: false,
                one_way_ns: None
            }
        );
        // A late, smaller count delivers nothing and does not move the count back.
        assert_eq!(
            heard(&mut state, 0, 2),
            Heard::Ack {
                proved: false,
                delivered: 0,
                last: false,
                one_way_ns: None
            }
        );
        assert_eq!(
            heard(&mut state, flags::FINAL, 10),
            Heard::Ack {
                proved: false,
                delivered: 7,
                last: true,
                one_way_ns: None
            }
        );
        assert_eq!(state.final_stats().unwrap().received, 10);
    }

    #[test]
    fn a_nack_queues_only_what_was_sent_and_retransmissions_go_first() {
        let mut state = SenderState::new(server(), 1, 2);
        for expected in 0..5 {
            assert_eq!(state.next_to_send(), Some((expected, false)));
        }
        let nack = Message::Nack {
            missing: vec![
                SeqRange { first: 1, count: 2 },
                // Beyond what was sent, and absurdly long: ignored past next_sequence.
                SeqRange {
                    first: 4,
                    count: u32::MAX,
                },
            ],
        };
        assert_eq!(
            state.on_reply(server(), &bytes(1, 2, nack)),
            Heard::Nack {
                proved: true,
                queued: 3
            }
        );
        assert_eq!(state.next_to_send(), Some((1, true)));
        assert_eq!(state.next_to_send(), Some((2, true)));
        assert_eq!(state.owed(), Some(4));
        assert_eq!(state.owed(), None);
        assert_eq!(state.next_to_send(), Some((5, false)));
    }
}
