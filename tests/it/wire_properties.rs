//! The wire format under arbitrary input: emit → parse round-trips, and no bytes make the
//! parsers panic.

use proptest::prelude::*;
use udprange::wire::control::{self, ControlRepr, RefusedReason};
use udprange::wire::fasp::{self, MAX_NACK_RANGES, Message, ReceiverStats, Repr, SeqRange, flags};

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (0u16..1500).prop_map(|payload_len| Message::Data { payload_len }),
        proptest::collection::vec((any::<u64>(), any::<u32>()), 0..=MAX_NACK_RANGES).prop_map(
            |ranges| Message::Nack {
                missing: ranges
                    .into_iter()
                    .map(|(first, count)| SeqRange { first, count })
                    .collect()
            }
        ),
        (0u16..=flags::ALL, any::<[u64; 5]>()).prop_map(|(f, v)| Message::Ack {
            flags: f,
            stats: ReceiverStats {
                received: v[0],
                missing: v[1],
                next_expected: v[2],
                bytes: v[3]
            },
            echo_ns: v[4],
        }),
        (any::<u64>(), any::<u64>()).prop_map(|(sent, retransmitted)| Message::Done {
            sent,
            retransmitted
        }),
    ]
}

fn control() -> impl Strategy<Value = ControlRepr> {
    prop_oneof![
        (any::<u32>(), any::<u16>(), any::<u64>(), any::<u64>()).prop_map(
            |(account, datagram, rate_bps, key)| ControlRepr::Hello {
                account,
                datagram,
                rate_bps,
                key
            }
        ),
        (any::<u32>(), any::<u16>(), any::<u64>()).prop_map(|(session, port, token)| {
            ControlRepr::Port {
                session,
                port,
                token,
            }
        }),
        prop_oneof![
            Just(RefusedReason::NoFreePort),
            Just(RefusedReason::BadRequest),
            Just(RefusedReason::Unauthorized),
            Just(RefusedReason::Busy)
        ]
        .prop_map(|reason| ControlRepr::Refused { reason }),
        any::<u32>().prop_map(|session| ControlRepr::Query { session }),
        (any::<u32>(), any::<u64>())
            .prop_map(|(session, received)| ControlRepr::Status { session, received }),
    ]
}

proptest! {
    #[test]
    fn datagrams_round_trip(session: u32, token: u64, sequence: u64, send_ns: u64, message in message()) {
        let repr = Repr { session, token, sequence, send_ns, message };
        let mut buffer = vec![0u8; repr.buffer_len()];
        let len = repr.emit(&mut buffer).unwrap();
        prop_assert_eq!(len, buffer.len());
        prop_assert_eq!(fasp::parse(&buffer).unwrap(), repr);
    }

    #[test]
    fn control_frames_round_trip(frame in control()) {
        prop_assert_eq!(control::parse(&frame.to_bytes()).unwrap(), frame);
    }

    #[test]
    fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = fasp::parse(&bytes);
        let _ = control::parse(&bytes);
    }

    /// Valid headers with corrupted fields: still a value or an error, never a panic, and a
    /// parsed payload never claims more bytes than arrived.
    #[test]
    fn corrupted_datagrams_never_panic(message in message(), at in 0usize..64, byte: u8, cut in 0usize..64) {
        let repr = Repr { session: 1, token: 4, sequence: 2, send_ns: 3, message };
        let mut buffer = vec![0u8; repr.buffer_len()];
        repr.emit(&mut buffer).unwrap();
        let at = at % buffer.len();
        buffer[at] = byte;
        buffer.truncate(buffer.len().saturating_sub(cut));
        if let Ok(Repr { message: Message::Data { payload_len }, .. }) = fasp::parse(&buffer) {
            prop_assert!(usize::from(payload_len) + fasp::HEADER_LEN <= buffer.len());
        }
    }
}
