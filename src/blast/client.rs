//! One transfer client: handshake over TCP, then paced DATA over UDP through the client's
//! firewall, retransmissions on NACK, and DONE.
//!
//! No acknowledgement of the first datagram within the handshake timeout fails the session
//! as the real client does ("error 15: Timeout establishing UDP connection"): that is what a
//! client firewall that drops the server's port looks like from the client.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::watch;

use super::capture::Capture;
use super::delay::DelayLine;
use super::pacing::Pacer;
use crate::firewall::model::OutboundFilter;
use crate::model::Port;
use crate::wire::fasp::{
    self, CONTROL_LEN, ControlRepr, MAX_DATAGRAM, Message, ReceiverStats, RefusedReason, Repr,
    flags,
};

/// The clients' address: another loopback address than the server's, so that a client's
/// ephemeral UDP port never takes a port the server is about to hand out (on one machine
/// both would otherwise share one port space; on a real network they are different hosts).
pub const CLIENT_HOST: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// What one client does.
#[derive(Debug, Clone, Copy)]
pub struct ClientParams {
    pub session: u32,
    pub account: u32,
    pub control: SocketAddr,
    pub rate_bps: u64,
    pub datagram: u16,
    /// How long to send data.
    pub duration: Duration,
    pub handshake_timeout: Duration,
    /// Most datagrams (new and retransmitted) this session may send.
    pub max_datagrams: u64,
    /// The address the client sends from ([`CLIENT_HOST`] on loopback).
    pub address: Ipv4Addr,
    /// One-way delay and jitter the client adds when the kernel cannot (no netem).
    pub delay: Option<(Duration, Duration)>,
}

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientOutcome {
    Ok,
    /// error 15: no acknowledgement of the first datagram (the firewall dropped the path).
    Blocked,
    /// The server said no.
    Refused(RefusedReason),
    /// The control connection failed (the server is not there, or went away).
    ControlFailed(String),
}

/// What the client measured.
#[derive(Debug, Clone)]
pub struct ClientReport {
    pub session: u32,
    pub account: u32,
    pub port: Option<Port>,
    pub outcome: ClientOutcome,
    /// Datagrams that left the client, new ones only.
    pub sent: u64,
    pub retransmitted: u64,
    /// Datagrams the client firewall dropped.
    pub filtered: u64,
    pub handshake: Option<Duration>,
    /// The receiver's final counters, if they arrived.
    pub final_stats: Option<ReceiverStats>,
}

impl ClientReport {
    fn new(params: &ClientParams) -> Self {
        Self {
            session: params.session,
            account: params.account,
            port: None,
            outcome: ClientOutcome::Ok,
            sent: 0,
            retransmitted: 0,
            filtered: 0,
            handshake: None,
            final_stats: None,
        }
    }
}

/// Runs one session to its end (or until `stop` turns true, then finishes cleanly).
pub async fn run(
    params: ClientParams,
    filter: Arc<OutboundFilter>,
    epoch: Instant,
    mut stop: watch::Receiver<bool>,
    capture: Option<Arc<Capture>>,
) -> ClientReport {
    let mut report = ClientReport::new(&params);
    let control = tokio::time::timeout(params.handshake_timeout, handshake(&params)).await;
    let (stream, port) = match control {
        Err(_) => {
            report.outcome = ClientOutcome::ControlFailed("control handshake timed out".into());
            return report;
        }
        Ok(Err(e)) => {
            report.outcome = e;
            return report;
        }
        Ok(Ok(answer)) => answer,
    };
    report.port = Some(port);
    let socket = match UdpSocket::bind((params.address, 0)).await {
        Ok(s) => s,
        Err(e) => {
            report.outcome = ClientOutcome::ControlFailed(format!("UDP socket: {e}"));
            return report;
        }
    };
    let server = SocketAddr::new(params.control.ip(), port);
    let socket = Arc::new(socket);
    let mut sender = Sender {
        delay: params
            .delay
            .map(|(delay, jitter)| DelayLine::spawn(Arc::clone(&socket), delay, jitter)),
        socket,
        server,
        local: None,
        filter,
        capture,
        epoch,
        buffer: vec![0u8; usize::from(params.datagram)],
        params,
    };
    sender.local = sender.socket.local_addr().ok();
    sender.transfer(&mut report, &mut stop).await;
    if let Some(line) = &sender.delay {
        report.filtered += line.filtered.load(std::sync::atomic::Ordering::Relaxed);
    }
    // Closing the control connection ends the session at the server.
    drop(stream);
    report
}

async fn handshake(params: &ClientParams) -> Result<(TcpStream, Port), ClientOutcome> {
    let failed = |e: std::io::Error| ClientOutcome::ControlFailed(e.to_string());
    let mut stream = TcpStream::connect(params.control).await.map_err(failed)?;
    let hello = ControlRepr::Hello {
        session: params.session,
        account: params.account,
        datagram: params.datagram,
        rate_bps: params.rate_bps,
    };
    stream.write_all(&hello.to_bytes()).await.map_err(failed)?;
    let mut frame = [0u8; CONTROL_LEN];
    stream.read_exact(&mut frame).await.map_err(failed)?;
    match fasp::parse_control(&frame) {
        Ok(ControlRepr::Port { port, .. }) => Ok((stream, port)),
        Ok(ControlRepr::Refused { reason, .. }) => Err(ClientOutcome::Refused(reason)),
        Ok(other) => Err(ClientOutcome::ControlFailed(format!(
            "unexpected {other:?}"
        ))),
        Err(e) => Err(ClientOutcome::ControlFailed(e.to_string())),
    }
}

struct Sender {
    socket: Arc<UdpSocket>,
    /// Set when the client adds the WAN delay itself.
    delay: Option<DelayLine>,
    server: SocketAddr,
    local: Option<SocketAddr>,
    filter: Arc<OutboundFilter>,
    capture: Option<Arc<Capture>>,
    epoch: Instant,
    buffer: Vec<u8>,
    params: ClientParams,
}

impl Sender {
    /// Sends one datagram through the client firewall; false when the firewall dropped it.
    async fn send(&mut self, repr: &Repr, report: &mut ClientReport) -> bool {
        let Ok(len) = repr.emit(&mut self.buffer) else {
            return false;
        };
        if !self.filter.pass(self.server.port()) {
            report.filtered += 1;
            return false;
        }
        if let (Some(capture), Some(local)) = (&self.capture, self.local) {
            capture.record(local, self.server, &self.buffer[..len]);
        }
        if let Some(line) = &mut self.delay {
            return line.send(&self.buffer[..len], self.server);
        }
        match self.socket.send_to(&self.buffer[..len], self.server).await {
            Ok(_) => true,
            // A kernel firewall on the output hook answers EPERM: the datagram was filtered.
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                report.filtered += 1;
                false
            }
            Err(_) => false,
        }
    }

    fn data(&self, sequence: u64) -> Repr {
        Repr {
            session: self.params.session,
            sequence,
            send_ns: self.epoch.elapsed().as_nanos() as u64,
            message: Message::Data {
                payload_len: self.params.datagram - fasp::HEADER_LEN as u16,
            },
        }
    }

    async fn transfer(&mut self, report: &mut ClientReport, stop: &mut watch::Receiver<bool>) {
        let start = Instant::now();
        let mut pacer = Pacer::new(self.params.rate_bps, self.params.datagram);
        let mut next_sequence = 0u64;
        let mut retransmit: BTreeSet<u64> = BTreeSet::new();
        let mut acked = false;
        let mut incoming = vec![0u8; MAX_DATAGRAM];
        let handshake_deadline = start + self.params.handshake_timeout;
        let sending_until = start + self.params.duration;
        let budget = self.params.max_datagrams;
        let mut stopped = *stop.borrow();

        // Sending phase.
        while !stopped && Instant::now() < sending_until {
            if !acked && Instant::now() >= handshake_deadline {
                report.outcome = ClientOutcome::Blocked;
                return;
            }
            let due = pacer.due(start.elapsed());
            for _ in 0..due {
                let total = report.sent + report.retransmitted;
                if total >= budget {
                    break;
                }
                let (sequence, again) = match retransmit.pop_first() {
                    Some(s) => (s, true),
                    None => (next_sequence, false),
                };
                let repr = self.data(sequence);
                if self.send(&repr, report).await {
                    if again {
                        report.retransmitted += 1;
                    } else {
                        report.sent += 1;
                    }
                }
                if !again {
                    next_sequence += 1;
                }
                pacer.sent(1);
            }
            // Wait for the next datagram's turn, reading replies meanwhile.
            let wake = (start + pacer.next_due())
                .min(sending_until)
                .max(Instant::now());
            let wake = if acked {
                wake
            } else {
                wake.min(handshake_deadline)
            };
            loop {
                tokio::select! {
                    received = self.socket.recv_from(&mut incoming) => {
                        if let Ok((len, _)) = received {
                            self.on_reply(&incoming[..len], report, &mut acked, &mut retransmit, next_sequence, start);
                        }
                    }
                    _ = tokio::time::sleep_until(wake.into()) => break,
                    _ = stop.changed() => { stopped = true; break; }
                }
            }
        }
        if !acked {
            // Data never got through: wait out the handshake timeout as the client would.
            let remaining = handshake_deadline.saturating_duration_since(Instant::now());
            let got_ack = tokio::time::timeout(remaining, async {
                loop {
                    if let Ok((len, _)) = self.socket.recv_from(&mut incoming).await
                        && let Ok(repr) = fasp::parse(&incoming[..len])
                        && matches!(repr.message, Message::Ack { flags: f, .. } if f & flags::HANDSHAKE != 0)
                    {
                        return;
                    }
                }
            })
            .await;
            if got_ack.is_err() {
                report.outcome = ClientOutcome::Blocked;
                return;
            }
        }
        self.finish(report, &mut retransmit, next_sequence, start, &mut incoming)
            .await;
    }

    fn on_reply(
        &self,
        bytes: &[u8],
        report: &mut ClientReport,
        acked: &mut bool,
        retransmit: &mut BTreeSet<u64>,
        next_sequence: u64,
        start: Instant,
    ) {
        let Ok(repr) = fasp::parse(bytes) else {
            return;
        };
        if repr.session != self.params.session {
            return;
        }
        match repr.message {
            Message::Ack { flags: f, stats } => {
                if f & flags::HANDSHAKE != 0 && !*acked {
                    *acked = true;
                    report.handshake = Some(start.elapsed());
                }
                if f & flags::FINAL != 0 {
                    report.final_stats = Some(stats);
                }
            }
            Message::Nack { missing } => {
                // A NACK proves the path as well as an ACK does.
                if !*acked {
                    *acked = true;
                    report.handshake = Some(start.elapsed());
                }
                for range in missing {
                    let end = range
                        .first
                        .saturating_add(u64::from(range.count))
                        .min(next_sequence);
                    // Bounded: a NACK cannot make the client resend more than it sent.
                    for sequence in range.first..end {
                        if retransmit.len() as u64 >= next_sequence {
                            break;
                        }
                        retransmit.insert(sequence);
                    }
                }
            }
            Message::Data { .. } | Message::Done { .. } => {}
        }
    }

    /// DONE until the receiver's final statistics arrive (bounded), resending what it asks for.
    async fn finish(
        &mut self,
        report: &mut ClientReport,
        retransmit: &mut BTreeSet<u64>,
        next_sequence: u64,
        start: Instant,
        incoming: &mut [u8],
    ) {
        let deadline = Instant::now() + self.params.handshake_timeout.min(Duration::from_secs(2));
        let mut acked = true;
        while report.final_stats.is_none() && Instant::now() < deadline {
            while let Some(sequence) = retransmit.pop_first() {
                if report.sent + report.retransmitted >= self.params.max_datagrams {
                    retransmit.clear();
                    break;
                }
                let repr = self.data(sequence);
                if self.send(&repr, report).await {
                    report.retransmitted += 1;
                }
            }
            let done = Repr {
                session: self.params.session,
                sequence: next_sequence,
                send_ns: self.epoch.elapsed().as_nanos() as u64,
                message: Message::Done {
                    sent: next_sequence,
                    retransmitted: report.retransmitted,
                },
            };
            self.send(&done, report).await;
            let wait = Instant::now() + Duration::from_millis(50);
            while Instant::now() < wait && report.final_stats.is_none() {
                let Ok(Ok((len, _))) =
                    tokio::time::timeout_at(wait.into(), self.socket.recv_from(incoming)).await
                else {
                    break;
                };
                let bytes = incoming[..len].to_vec();
                self.on_reply(&bytes, report, &mut acked, retransmit, next_sequence, start);
            }
        }
    }
}
