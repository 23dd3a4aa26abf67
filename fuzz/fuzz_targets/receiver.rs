//! The server's receiver under any sequence of datagrams from any source: it must never
//! panic, never hold more than its bound, reply only to a registered session's own peer with
//! that session's id and token, and count every datagram it does not take as rejected.
//! Run: `cargo fuzz run receiver` (see README, "Fuzzing").
//!
//! Input: records of `[source, time step, length, bytes…]`. The source byte picks one of
//! four addresses; its high bit stamps the datagram with a registered session's real token
//! (so the fuzzer reaches deep states, not only the token check).
#![no_main]

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use udprange::blast::receiver::{MAX_GAPS, PortReceiver, Registration};
use udprange::wire::fasp::{self, HEADER_LEN};

const SESSIONS: u32 = 3;

fn token(session: u32) -> u64 {
    0x9e37_79b9_7f4a_7c15u64.wrapping_mul(u64::from(session))
}

fuzz_target!(|data: &[u8]| {
    let peer_ip = Ipv4Addr::new(127, 0, 0, 2);
    let sources = [
        SocketAddr::from((peer_ip, 40_000)),
        SocketAddr::from((peer_ip, 40_001)),
        SocketAddr::from((Ipv4Addr::LOCALHOST, 40_000)),
        SocketAddr::from((Ipv4Addr::new(198, 18, 0, 2), 40_000)),
    ];
    let mut receiver = PortReceiver::new(33_001, 50_000_000);
    for session in 1..=SESSIONS {
        receiver.register(Registration {
            session,
            token: token(session),
            peer_ip: peer_ip.into(),
            rate_bps: if session == 3 { 10_000_000 } else { 0 },
            datagram: 1_000,
            registered_at: Duration::ZERO,
            progress: Arc::new(AtomicU64::new(0)),
        });
    }
    let mut now = Duration::ZERO;
    let mut replies = Vec::new();
    let mut rest = data;
    let mut datagrams = 0u64;
    while rest.len() >= 4 {
        let source = rest[0];
        now += Duration::from_micros(u64::from(rest[1]) * 100);
        let len = usize::from(u16::from_be_bytes([rest[2], rest[3]])).min(rest.len() - 4);
        let mut bytes = rest[4..4 + len].to_vec();
        rest = &rest[4 + len..];
        if source & 0x80 != 0 && bytes.len() >= HEADER_LEN {
            let session = 1 + u32::from(source >> 2 & 0x3) % SESSIONS;
            bytes[4..8].copy_from_slice(&session.to_be_bytes());
            bytes[8..16].copy_from_slice(&token(session).to_be_bytes());
        }
        let from = sources[usize::from(source & 0x3)];
        let before = receiver.rejected();
        receiver.on_datagram(from, &bytes, now, &mut replies);
        datagrams += 1;
        let rejected = receiver.rejected() > before;
        assert!(!rejected || replies.is_empty(), "a rejected datagram was answered");
        for reply in replies.drain(..) {
            assert_eq!(reply.to, from);
            assert_eq!(reply.to.ip(), std::net::IpAddr::V4(peer_ip));
            assert_eq!(reply.repr.token, token(reply.repr.session));
            let mut wire = vec![0u8; reply.repr.buffer_len()];
            let n = reply.repr.emit(&mut wire).expect("replies emit");
            assert_eq!(fasp::parse(&wire[..n]).expect("replies parse"), reply.repr);
        }
        assert!(receiver.runs_held() <= MAX_GAPS * SESSIONS as usize);
    }
    assert!(receiver.rejected() <= datagrams);
    for (_, session) in receiver.finish() {
        let stats = session.stats;
        assert!(stats.received <= stats.next_expected);
        assert!(stats.missing <= stats.next_expected);
    }
});
