//! Wire formats: the FASP-like datagram ([`fasp`]) and the control frames of its handshake
//! ([`control`]). The wire is the only thing a client and a server share.
//!
//! ## Who may speak for a session
//! The protocol is designed as if it met the open internet, because a verdict that a forged
//! datagram can flip is worse than none. Everything below is checked by the receiving side;
//! what fails a check is dropped and counted (`rejected` in the report) and never changes an
//! outcome.
//!
//! 1. **The control connection is authenticated.** HELLO carries the run's `key` (for a
//!    local run a random 64-bit value both sides get from the run; across hosts the value the
//!    user gives to `serve` and to the client, as the vendor's SSH login is). A HELLO with
//!    another key is refused before any port is allocated. Connections that do not finish
//!    their HELLO in time are closed, and the oldest is evicted when too many are pending,
//!    so a slow or silent peer cannot hold the control port.
//! 2. **The server names the session.** PORT carries a session id the server assigns (unique
//!    within the server's life) and a random 64-bit `token`. Neither comes from the client,
//!    so no client can claim another's session.
//! 3. **Every datagram carries `(session, token)`.** The server accepts a datagram on a
//!    port only for a session registered on that port, with its token, from the IP address
//!    of the session's control connection; the first such datagram fixes the peer's UDP port,
//!    and any other source is rejected from then on. A client accepts a reply only from its
//!    server's address and granted port, with its session id and token.
//! 4. **Claims are checked against what happened.** A DONE's `sent` cannot exceed what the
//!    session could have sent at its rate and the run's limit; the receiver's state for a
//!    session grows with the gaps it has seen, never with the sequence numbers a datagram
//!    claims, and has a fixed ceiling.
//!
//! 5. **What a client reports comes over its own control connection.** The receiver's
//!    counters and latency reach the client in FINAL, the server's answer to the client's
//!    BYE on the session's TCP connection; acknowledgements on UDP only prove the path. A
//!    datagram cannot forge a session's final counts.
//!
//! ## A transfer on the wire
//! After PORT, the client sends DATA with sequence numbers from 0, paced at its rate. A
//! datagram's size (HELLO's `datagram`) counts the IP packet, IP and UDP headers included,
//! as the vendor's datagram size ("MTU") does: 1492 bytes by default, 1464 of UDP payload.
//!
//! - **ACK** (receiver → sender): the first DATA is acknowledged at once (flag `HANDSHAKE`:
//!   the path is proven), then every 128th and at least every 10 ms while DATA flows. Each
//!   carries the receiver's counters (`received` distinct datagrams, `missing`,
//!   `next_expected`, `bytes`) and echoes the send time of the newest DATA it answers; with
//!   the ACK's own send time that is a one-way delay sample for delay-based rate control.
//! - **NACK** (receiver → sender): ranges of missing sequence numbers. A range is asked for
//!   when its gap shows (a later sequence number arrived, or a DONE said how many were
//!   sent), and asked again only after a measured round trip without it (three times at
//!   that interval, then doubling); never more than the receiver tracks (4096 per session).
//! - The sender answers each NACK once per sequence number: a number already queued for
//!   retransmission is not queued twice, and numbers it never sent are ignored. A sized
//!   transfer sends nothing blindly: after every datagram left once, it sends only what is
//!   asked for.
//! - **DONE** (sender → receiver): `sent` and `retransmitted`. A sized transfer sends one
//!   every 10 ms once every datagram left once; the receiver answers with the requests due
//!   and an ACK. The transfer is complete when an ACK's `received` reaches the size in
//!   datagrams. A transfer that sends for a time sends DONE at its end, until an ACK with
//!   flag `FINAL` (the receiver's last counts) comes back.
//! - **BYE / FINAL** (control connection): the receiver's final counts and latency.
//!
//! Tokens protect against peers that can send but not read the session's traffic (anyone on
//! the same host or path without capture rights). A `--pcap` file holds tokens; it is a
//! record of a finished run, whose tokens are dead.

pub mod control;
pub mod fasp;

/// Protocol version carried by every datagram and frame. Version 2 added the session
/// token, the run key and server-assigned session ids; version 3 the BYE/FINAL exchange
/// (60-byte control frames) and send timestamps on the real-time clock; version 4 the
/// echoed send time in ACK (a one-way delay sample and a round trip per acknowledgement,
/// for delay-based rate control).
pub const VERSION: u8 = 4;

/// Now on the clock that send timestamps use: the real-time clock, since the Unix epoch.
/// Sender and receiver read it independently (no shared epoch), so one-way latency is as
/// exact as the two hosts' clocks agree; on one machine, exactly.
pub fn clock_now() -> std::time::Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

/// Why bytes are not a valid datagram or frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("{len} bytes is shorter than the {need}-byte header")]
    Truncated { len: usize, need: usize },
    #[error("unknown version {0}")]
    Version(u8),
    #[error("unknown kind {0}")]
    Kind(u8),
    #[error("unknown flags {0:#06x}")]
    Flags(u16),
    #[error("unknown code {0}")]
    Code(u16),
    #[error("payload length {claimed} but {available} bytes follow the header")]
    PayloadLength { claimed: usize, available: usize },
    #[error("a {kind} payload must be {expected} bytes, not {got}")]
    PayloadShape {
        kind: &'static str,
        expected: &'static str,
        got: usize,
    },
    #[error("buffer of {len} bytes cannot hold {need}")]
    BufferTooSmall { len: usize, need: usize },
}

/// A big-endian `u64` at `at`; the caller has checked the length.
fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_be_bytes(word)
}

/// A big-endian `u32` at `at`; the caller has checked the length.
fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_be_bytes(word)
}
