//! One transfer client: handshake over TCP, then paced DATA over UDP through the client's
//! firewall, retransmissions on NACK, and DONE.
//!
//! No acknowledgement of the first datagram within the handshake timeout fails the session
//! as the real client does ("error 15: Timeout establishing UDP connection"): that is what a
//! client firewall that drops the server's port looks like from the client. Before calling
//! it blocked, the client asks the server over the control connection whether anything
//! arrived (QUERY): a busy machine that acknowledged late is not a firewall that dropped.
//! Only replies from the session's own server, with its session id and token, count.
//!
//! A session ends with BYE over the control connection; the server releases the port and
//! answers FINAL with the receiver's counters and latency. The client's report is built from
//! what crossed the wire and nothing else, so a server on another host reports the same way.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};
use tokio::sync::{oneshot, watch};

use super::capture::Capture;
use super::pacing::Pacer;
use super::rate::{Policy, RateController};
use super::sender::{Heard, SenderState};
use crate::firewall::model::OutboundFilter;
use crate::model::Port;
use crate::wire::control::{self, CONTROL_LEN, ControlRepr, RefusedReason};
use crate::wire::fasp::{self, Message, ReceiverStats, Repr};
use hdrhistogram::Histogram;

/// The clients' address: another loopback address than the server's, so that a client's
/// ephemeral UDP port never takes a port the server is about to hand out (on one machine
/// both would otherwise share one port space; on a real network they are different hosts).
pub const CLIENT_HOST: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
/// How long a client waits for the server's answer to QUERY.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a client still waits for its final statistics once the run is interrupted.
pub const INTERRUPTED_DRAIN: Duration = Duration::from_millis(300);

/// What one client does.
#[derive(Debug, Clone, Copy)]
pub struct ClientParams {
    /// The client's number in the run, from 1.
    pub index: u32,
    pub account: u32,
    pub control: SocketAddr,
    /// The run's credential for HELLO.
    pub key: u64,
    pub rate_bps: u64,
    pub datagram: u16,
    /// How long to send data once the server granted the port.
    pub duration: Duration,
    pub handshake_timeout: Duration,
    /// Most datagrams (new and retransmitted) this session may send.
    pub max_datagrams: u64,
    /// The address the client sends from, on TCP and UDP ([`CLIENT_HOST`] on loopback).
    pub address: Ipv4Addr,
    /// How the session chooses its rate: `rate_bps` is the ceiling, this the floor.
    pub policy: Policy,
    pub min_rate_bps: u64,
    /// A sized transfer: deliver this many payload bytes completely, with `duration` as the
    /// deadline; `None`: send for `duration`.
    pub size_bytes: Option<u64>,
}

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientOutcome {
    Ok,
    /// error 15: no acknowledgement of the first datagram, and the server confirms over the
    /// control connection that none of the session's datagrams arrived.
    Blocked,
    /// No acknowledgement in time, but the server received this many datagrams: the way out
    /// works; the acknowledgements were late or did not come back.
    Unacknowledged {
        received: u64,
    },
    /// The server said no.
    Refused(RefusedReason),
    /// The control connection failed (the server is not there, went away, or was too slow).
    ControlFailed(String),
    /// The run was interrupted before the session proved or disproved its path.
    Interrupted,
}

/// Live totals of every client of a run, for a status line and interval reports.
#[derive(Debug, Default)]
pub struct Meter {
    /// Datagrams sent, new and retransmitted.
    pub sent: std::sync::atomic::AtomicU64,
    /// Distinct datagrams the receivers acknowledged.
    pub delivered: std::sync::atomic::AtomicU64,
    /// Payload bytes the receivers acknowledged.
    pub delivered_bytes: std::sync::atomic::AtomicU64,
}

/// The server's FINAL answer: what its receiver counted for the session.
pub use crate::wire::control::FinalStats;

/// What the client learned from the handshake: the port, or why there is none.
pub type GrantResult = Result<Port, ClientOutcome>;

/// What the client measured.
#[derive(Debug, Clone)]
pub struct ClientReport {
    pub index: u32,
    /// The id the server assigned, once it granted the session.
    pub session: Option<u32>,
    pub account: u32,
    pub port: Option<Port>,
    pub outcome: ClientOutcome,
    /// Datagrams that left the client, new ones only.
    pub sent: u64,
    pub retransmitted: u64,
    /// Datagrams the client firewall dropped.
    pub filtered: u64,
    /// Datagrams that reached the client's socket but were not its server's replies to its
    /// session (another source, another session, a wrong token, garbage).
    pub rejected: u64,
    /// The control exchange (HELLO to PORT) plus the first datagram to its
    /// acknowledgement: two round trips of the path.
    pub handshake: Option<Duration>,
    /// The receiver's final counters, if they arrived.
    pub final_stats: Option<ReceiverStats>,
    /// The server's FINAL frame: the port is released and these are its counts.
    pub final_frame: Option<FinalStats>,
    /// From the grant to the last datagram sent.
    pub sending: Duration,
    /// The address the session's UDP data left from (its flow, for kernel counters).
    pub local: Option<SocketAddr>,
    /// The pacing rate over time: (seconds since sending began, bit/s), at most one
    /// sample per [`RATE_SAMPLE`], at most [`MAX_RATE_SAMPLES`].
    pub rates: Vec<(f64, u64)>,
    /// The rate controller's queuing-delay estimates, µs (delay-based policies).
    pub queuing_us: Option<Histogram<u32>>,
    /// A sized transfer's datagrams, and when (since sending began) the receiver held them
    /// all; `None` when it did not by the deadline.
    pub total: Option<u64>,
    pub completed: Option<Duration>,
    /// When (since sending began) a sized transfer's every datagram had left once.
    pub sent_once: Option<Duration>,
}

/// How often a sized transfer's sender says DONE while it waits for the last datagrams.
const SIZED_POLL: Duration = Duration::from_millis(10);

/// How often the rate over time is sampled, and most samples a session keeps.
pub const RATE_SAMPLE: Duration = Duration::from_millis(100);
pub const MAX_RATE_SAMPLES: usize = 6_000;

impl ClientReport {
    /// A session that has not started, ended with `outcome`.
    pub fn unstarted(params: &ClientParams, outcome: ClientOutcome) -> Self {
        Self::never_started(params.index, params.account, outcome)
    }

    /// Session number `index` of `account`, which never started, ended with `outcome`.
    pub fn never_started(index: u32, account: u32, outcome: ClientOutcome) -> Self {
        Self {
            index,
            session: None,
            account,
            port: None,
            outcome,
            sent: 0,
            retransmitted: 0,
            filtered: 0,
            rejected: 0,
            handshake: None,
            final_stats: None,
            final_frame: None,
            sending: Duration::ZERO,
            local: None,
            rates: Vec::new(),
            queuing_us: None,
            total: None,
            completed: None,
            sent_once: None,
        }
    }
}

/// What a client shares with whoever runs it: a live meter, where to say what the
/// handshake gave (as soon as it is known), and when it may release its port.
#[derive(Default)]
pub struct Hooks {
    pub meter: Option<Arc<Meter>>,
    pub granted: Option<oneshot::Sender<GrantResult>>,
    /// When set, the session keeps its port (and its control connection) after sending until
    /// this fires (or is dropped, or the run is interrupted): a driver that keeps the
    /// model's order releases ports in that order, whichever client finished first.
    pub release: Option<oneshot::Receiver<()>>,
    /// When set, the session waits after its grant until this fires (or is dropped) before
    /// it sends: the sessions of one instant all get their ports first, then send together,
    /// so that the last handshakes of a large burst do not compete with the first data.
    pub go: Option<oneshot::Receiver<()>>,
}

/// Resolves when `stop` turns true; never, if nobody can turn it.
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|&s| s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Runs one session to its end (or until `stop` turns true, then finishes cleanly).
pub async fn run(
    params: ClientParams,
    filter: Arc<OutboundFilter>,
    mut stop: watch::Receiver<bool>,
    capture: Option<Arc<Capture>>,
    mut hooks: Hooks,
) -> ClientReport {
    let mut report = ClientReport::unstarted(&params, ClientOutcome::Ok);
    let control = tokio::select! {
        // The control connection is TCP: it gets at least QUERY_TIMEOUT whatever the time
        // scale made of the handshake timeout (which bounds the UDP path's proof).
        answer = tokio::time::timeout(
            params.handshake_timeout.max(QUERY_TIMEOUT),
            handshake(&params),
        ) => answer,
        () = stopped(&mut stop) => Ok(Err(ClientOutcome::Interrupted)),
    };
    let (stream, grant) = match control {
        Err(_) => {
            report.outcome = ClientOutcome::ControlFailed("control handshake timed out".into());
            if let Some(granted) = hooks.granted.take() {
                let _ = granted.send(Err(report.outcome.clone()));
            }
            return report;
        }
        Ok(Err(e)) => {
            report.outcome = e;
            if let Some(granted) = hooks.granted.take() {
                let _ = granted.send(Err(report.outcome.clone()));
            }
            return report;
        }
        Ok(Ok(answer)) => answer,
    };
    if let Some(granted) = hooks.granted.take() {
        let _ = granted.send(Ok(grant.port));
    }
    report.port = Some(grant.port);
    report.session = Some(grant.session);
    let socket = match UdpSocket::bind((params.address, 0)).await {
        Ok(s) => s,
        Err(e) => {
            report.outcome = ClientOutcome::ControlFailed(format!("UDP socket: {e}"));
            return report;
        }
    };
    let server = SocketAddr::new(params.control.ip(), grant.port);
    let socket = Arc::new(socket);
    let mut sender = Sender {
        socket,
        server,
        grant,
        local: None,
        filter,
        capture,
        meter: hooks.meter,
        buffer: vec![0u8; fasp::udp_payload(params.datagram)],
        control: stream,
        params,
    };
    sender.local = sender.socket.local_addr().ok();
    report.local = sender.local;
    if let Some(go) = hooks.go.take() {
        tokio::select! {
            _ = go => {}
            () = stopped(&mut stop) => {}
        }
    }
    sender.transfer(&mut report, &mut stop).await;
    if let Some(release) = hooks.release.take() {
        tokio::select! {
            _ = release => {}
            () = stopped(&mut stop) => {}
        }
    }
    sender.bye(&mut report, &stop).await;
    report
}

/// Asks the server at `control` how it hands out ports (DESCRIBE), with the run's `key`.
/// Everything it says is checked: a description that makes no sense is an error, not a run.
pub async fn describe(
    control: SocketAddr,
    key: u64,
    timeout: Duration,
) -> Result<crate::model::Server, String> {
    let exchange = async {
        let mut stream = TcpStream::connect(control)
            .await
            .map_err(|e| format!("cannot reach {control}: {e}"))?;
        stream
            .write_all(&ControlRepr::Describe { key }.to_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut frame = [0u8; CONTROL_LEN];
        let mut read = async |stream: &mut TcpStream| {
            stream
                .read_exact(&mut frame)
                .await
                .map_err(|e| format!("{control} closed the connection: {e}"))?;
            control::parse(&frame).map_err(|e| format!("{control} answered garbage: {e}"))
        };
        let (os, udp_port_reuse, base_port, max_port, occupied) = match read(&mut stream).await? {
            ControlRepr::Server {
                os,
                udp_port_reuse,
                base_port,
                max_port,
                occupied,
                ..
            } => (os, udp_port_reuse, base_port, max_port, occupied),
            ControlRepr::Refused { reason } => {
                return Err(format!("{control} refused to describe itself: {reason}"));
            }
            other => return Err(format!("{control} answered {other:?} to DESCRIBE")),
        };
        if base_port == 0 || max_port < base_port {
            return Err(format!(
                "{control} says it hands out ports {base_port}-{max_port}, which is no range"
            ));
        }
        if u64::from(occupied) > u64::from(max_port - base_port) + 1 {
            return Err(format!(
                "{control} says {occupied} of its {} ports are occupied",
                u32::from(max_port - base_port) + 1
            ));
        }
        let mut ports = std::collections::BTreeSet::new();
        while ports.len() < occupied as usize {
            match read(&mut stream).await? {
                ControlRepr::Occupied { len, ports: some } if len > 0 => {
                    ports.extend(some[..usize::from(len)].iter().copied());
                }
                other => return Err(format!("{control} answered {other:?} for occupied ports")),
            }
        }
        Ok(crate::model::Server {
            os,
            udp_port_reuse,
            base_port,
            max_port,
            occupied: ports,
            linger: None,
        })
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("{control} did not describe itself within {timeout:?}"))?
}

/// What the server granted.
#[derive(Debug, Clone, Copy)]
struct Grant {
    session: u32,
    port: Port,
    token: u64,
    /// From the HELLO leaving to the PORT arriving: the control round trip.
    exchange: Duration,
}

async fn handshake(params: &ClientParams) -> Result<(TcpStream, Grant), ClientOutcome> {
    let failed = |e: std::io::Error| ClientOutcome::ControlFailed(e.to_string());
    // From the address the datagrams will come from: the server takes a session's datagrams
    // only from its control connection's address.
    let socket = TcpSocket::new_v4().map_err(failed)?;
    socket
        .bind(SocketAddr::from((params.address, 0)))
        .map_err(failed)?;
    let mut stream = socket.connect(params.control).await.map_err(failed)?;
    let hello = ControlRepr::Hello {
        account: params.account,
        datagram: params.datagram,
        rate_bps: params.rate_bps,
        key: params.key,
    };
    let hello_sent = Instant::now();
    stream.write_all(&hello.to_bytes()).await.map_err(failed)?;
    let mut frame = [0u8; CONTROL_LEN];
    stream.read_exact(&mut frame).await.map_err(failed)?;
    let exchange = hello_sent.elapsed();
    match control::parse(&frame) {
        Ok(ControlRepr::Port {
            session,
            port,
            token,
        }) => Ok((
            stream,
            Grant {
                session,
                port,
                token,
                exchange,
            },
        )),
        Ok(ControlRepr::Refused { reason }) => Err(ClientOutcome::Refused(reason)),
        Ok(other) => Err(ClientOutcome::ControlFailed(format!(
            "unexpected {other:?}"
        ))),
        Err(e) => Err(ClientOutcome::ControlFailed(e.to_string())),
    }
}

struct Sender {
    socket: Arc<UdpSocket>,
    server: SocketAddr,
    grant: Grant,
    local: Option<SocketAddr>,
    filter: Arc<OutboundFilter>,
    capture: Option<Arc<Capture>>,
    meter: Option<Arc<Meter>>,
    buffer: Vec<u8>,
    /// The session's control connection: open for the session's life.
    control: TcpStream,
    params: ClientParams,
}

/// The sender's progress through its session: when it started, and its state machine.
struct Progress {
    start: Instant,
    state: SenderState,
    pacer: Pacer,
    controller: Box<dyn RateController>,
    /// What is asked for again has its own bucket under the fixed policy (at the target
    /// rate): new data keeps the target rate exactly and retransmissions come on top, as
    /// the fixed policy promises. The delay-based policies pace both with one bucket.
    again: Option<Pacer>,
}

impl Progress {
    /// Records the rate now, at most once per [`RATE_SAMPLE`].
    fn sample_rate(&self, report: &mut ClientReport) {
        let t = self.start.elapsed().as_secs_f64();
        let due = report
            .rates
            .last()
            .is_none_or(|&(last, _)| t - last >= RATE_SAMPLE.as_secs_f64());
        if due && report.rates.len() < MAX_RATE_SAMPLES {
            report.rates.push((t, self.pacer.rate_bps()));
        }
    }
}

impl Sender {
    /// Sends one datagram through the client firewall; false when it did not leave.
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
        if let Some(meter) = &self.meter {
            meter
                .sent
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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

    fn datagram(&self, sequence: u64, message: Message) -> Repr {
        Repr {
            session: self.grant.session,
            token: self.grant.token,
            sequence,
            send_ns: u64::try_from(crate::wire::clock_now().as_nanos()).unwrap_or(u64::MAX),
            message,
        }
    }

    /// Sends DATA `sequence` and counts it: sent again (`again`) or new.
    async fn send_data(&mut self, sequence: u64, again: bool, report: &mut ClientReport) {
        let repr = self.data(sequence);
        if self.send(&repr, report).await {
            if again {
                report.retransmitted += 1;
            } else {
                report.sent += 1;
            }
        }
    }

    fn data(&self, sequence: u64) -> Repr {
        let payload_len = fasp::data_bytes(self.params.datagram) as u16;
        self.datagram(sequence, Message::Data { payload_len })
    }

    async fn transfer(&mut self, report: &mut ClientReport, stop: &mut watch::Receiver<bool>) {
        let controller = super::rate::controller(
            self.params.policy,
            self.params.rate_bps,
            self.params.min_rate_bps,
        );
        let payload = (fasp::data_bytes(self.params.datagram) as u64).max(1);
        let total = self
            .params
            .size_bytes
            .map(|bytes| bytes.div_ceil(payload).max(1));
        report.total = total;
        let state = SenderState::new(self.server, self.grant.session, self.grant.token);
        let mut progress = Progress {
            start: Instant::now(),
            state: match total {
                Some(total) => state.sized(total),
                None => state,
            },
            pacer: Pacer::new(controller.rate_bps(), self.params.datagram),
            again: (self.params.policy == Policy::Fixed && total.is_some())
                .then(|| Pacer::new(self.params.rate_bps, self.params.datagram)),
            controller,
        };
        let start = progress.start;
        progress.sample_rate(report);
        // The largest reply a server sends is a full NACK; anything longer is not one of its
        // replies, arrives truncated and is rejected.
        let mut incoming = vec![0u8; fasp::MAX_REPLY];
        let handshake_deadline = start + self.params.handshake_timeout;
        let sending_until = start + self.params.duration;
        let budget = self.params.max_datagrams;
        let mut interrupted = *stop.borrow();

        // Sending phase. A sized transfer stays in it until the receiver holds every
        // datagram: idle, it says DONE every SIZED_POLL, which the receiver answers with
        // what it asks for again (a round trip after it last asked) and its counts.
        let mut last_done: Option<Instant> = None;
        while !interrupted && Instant::now() < sending_until && !progress.state.complete() {
            if !progress.state.proven() && Instant::now() >= handshake_deadline {
                report.outcome = self.confirm_blocked(stop).await;
                return;
            }
            let now = start.elapsed();
            if let Some(again) = progress.again.as_mut() {
                let due = again.due(now);
                let mut sent = 0;
                while sent < due && report.sent + report.retransmitted < budget {
                    let Some(sequence) = progress.state.owed() else {
                        break;
                    };
                    self.send_data(sequence, true, report).await;
                    sent += 1;
                }
                again.sent(sent);
            }
            let due = progress.pacer.due(now);
            for _ in 0..due {
                let total = report.sent + report.retransmitted;
                if total >= budget {
                    break;
                }
                let Some((sequence, again)) = progress.state.next_to_send() else {
                    break;
                };
                self.send_data(sequence, again, report).await;
                progress.pacer.sent(1);
            }
            progress.sample_rate(report);
            // Once every datagram left once, DONE every SIZED_POLL tells the receiver how
            // many there are, so it asks for the last ones lost too (also while
            // retransmissions are still going out).
            let polling = progress.state.sent_once();
            if polling && report.sent_once.is_none() {
                report.sent_once = Some(start.elapsed());
            }
            if polling && last_done.is_none_or(|at| at.elapsed() >= SIZED_POLL) {
                let next = progress.state.next_sequence();
                let done = self.datagram(
                    next,
                    Message::Done {
                        sent: next,
                        retransmitted: report.retransmitted,
                    },
                );
                self.send(&done, report).await;
                last_done = Some(Instant::now());
            }
            // Wait for the next datagram's turn (or the next DONE), reading replies.
            let poll = last_done.filter(|_| polling).map(|at| at + SIZED_POLL);
            let send = match &progress.again {
                _ if progress.state.idle() => None,
                Some(again) if progress.state.owes() => {
                    Some(start + progress.pacer.next_due().min(again.next_due()))
                }
                _ => Some(start + progress.pacer.next_due()),
            };
            let turn = match (send, poll) {
                (Some(send), Some(poll)) => send.min(poll),
                (Some(at), None) | (None, Some(at)) => at,
                (None, None) => start + progress.pacer.next_due(),
            };
            let wake = turn.min(sending_until).max(Instant::now());
            let wake = if progress.state.proven() {
                wake
            } else {
                wake.min(handshake_deadline)
            };
            loop {
                tokio::select! {
                    received = self.socket.recv_from(&mut incoming) => {
                        if let Ok((len, from)) = received {
                            self.on_reply(from, &incoming[..len], report, &mut progress);
                        }
                    }
                    _ = tokio::time::sleep_until(wake.into()) => break,
                    () = stopped(stop) => { interrupted = true; break; }
                }
            }
        }
        report.sending = start.elapsed();
        if !progress.state.proven() {
            if interrupted {
                report.outcome = ClientOutcome::Interrupted;
                return;
            }
            // Data never got an answer: wait out the handshake timeout as the client would.
            let acknowledged = tokio::select! {
                () = self.await_ack(handshake_deadline, &mut incoming, report, &mut progress) => progress.state.proven(),
                () = stopped(stop) => {
                    report.outcome = ClientOutcome::Interrupted;
                    return;
                }
            };
            if !acknowledged {
                report.outcome = self.confirm_blocked(stop).await;
                return;
            }
        }
        self.finish(report, &mut progress, &mut incoming, stop)
            .await;
    }

    /// Ends the session at the server: BYE, then its FINAL (the port is released by then).
    /// Bounded by [`QUERY_TIMEOUT`], or [`INTERRUPTED_DRAIN`] once the run is interrupted.
    async fn bye(&mut self, report: &mut ClientReport, stop: &watch::Receiver<bool>) {
        let session = self.grant.session;
        let wait = if *stop.borrow() {
            INTERRUPTED_DRAIN
        } else {
            QUERY_TIMEOUT
        };
        let control = &mut self.control;
        let exchange = async {
            control
                .write_all(&ControlRepr::Bye { session }.to_bytes())
                .await?;
            let mut frame = [0u8; CONTROL_LEN];
            loop {
                control.read_exact(&mut frame).await?;
                // A STATUS answering an earlier QUERY may still be on its way.
                match control::parse(&frame) {
                    Ok(ControlRepr::Final {
                        session: s,
                        received,
                        duplicates,
                        latency,
                    }) if s == session => {
                        return Ok::<_, std::io::Error>(Some(FinalStats {
                            received,
                            duplicates,
                            latency,
                        }));
                    }
                    Ok(ControlRepr::Status { .. }) => {}
                    _ => return Ok(None),
                }
            }
        };
        if let Ok(Ok(Some(stats))) = tokio::time::timeout(wait, exchange).await {
            report.final_frame = Some(stats);
        }
    }

    /// Reads replies until the path is acknowledged or `deadline` passes.
    async fn await_ack(
        &self,
        deadline: Instant,
        incoming: &mut [u8],
        report: &mut ClientReport,
        progress: &mut Progress,
    ) {
        while !progress.state.proven() {
            match tokio::time::timeout_at(deadline.into(), self.socket.recv_from(incoming)).await {
                Ok(Ok((len, from))) => self.on_reply(from, &incoming[..len], report, progress),
                Ok(Err(_)) => {}
                Err(_) => return,
            }
        }
    }

    /// No acknowledgement came within the handshake timeout: the server says, over the
    /// control connection, whether any of the session's datagrams arrived. None did: the
    /// path is blocked (error 15). Some did: the acknowledgements were the problem, not the
    /// firewall's range.
    async fn confirm_blocked(&mut self, stop: &mut watch::Receiver<bool>) -> ClientOutcome {
        let session = self.grant.session;
        let control = &mut self.control;
        let ask = async {
            control
                .write_all(&ControlRepr::Query { session }.to_bytes())
                .await?;
            let mut frame = [0u8; CONTROL_LEN];
            control.read_exact(&mut frame).await?;
            Ok::<_, std::io::Error>(control::parse(&frame))
        };
        tokio::select! {
            answer = tokio::time::timeout(QUERY_TIMEOUT, ask) => match answer {
                Ok(Ok(Ok(ControlRepr::Status { session: s, received: 0 }))) if s == session => {
                    ClientOutcome::Blocked
                }
                Ok(Ok(Ok(ControlRepr::Status { session: s, received }))) if s == session => {
                    ClientOutcome::Unacknowledged { received }
                }
                Ok(Ok(other)) => ClientOutcome::ControlFailed(format!(
                    "no acknowledgement, and the server's answer to QUERY was {other:?}"
                )),
                Ok(Err(e)) => ClientOutcome::ControlFailed(format!(
                    "no acknowledgement, and the control connection failed: {e}"
                )),
                Err(_) => ClientOutcome::ControlFailed(
                    "no acknowledgement, and the server did not answer QUERY in time".into(),
                ),
            },
            () = stopped(stop) => ClientOutcome::Interrupted,
        }
    }

    /// Takes a datagram that reached the client's socket: the state machine decides what it
    /// means; the report and the meter count it.
    fn on_reply(
        &self,
        from: SocketAddr,
        bytes: &[u8],
        report: &mut ClientReport,
        progress: &mut Progress,
    ) {
        let (proved, delivered) = match progress.state.on_reply(from, bytes) {
            Heard::Rejected => {
                report.rejected += 1;
                return;
            }
            Heard::Ack {
                proved,
                delivered,
                last,
                one_way_ns,
            } => {
                if last {
                    report.final_stats = progress.state.final_stats();
                }
                if report.completed.is_none() && progress.state.complete() {
                    report.completed = Some(progress.start.elapsed());
                }
                if let Some(sample) = one_way_ns {
                    let now = progress.start.elapsed();
                    progress.controller.on_delay(sample, now);
                    progress.pacer.set_rate(progress.controller.rate_bps(), now);
                    if let Some(queuing) = progress.controller.queuing_delay() {
                        let histogram = report
                            .queuing_us
                            .get_or_insert_with(|| Histogram::new(2).expect("valid precision"));
                        let us = u64::try_from(queuing.as_micros()).unwrap_or(u64::MAX);
                        let _ = histogram.record(us.max(1));
                    }
                }
                (proved, delivered)
            }
            Heard::Nack { proved, .. } => (proved, 0),
        };
        if proved {
            // HELLO to PORT, then the first datagram to its acknowledgement: two round
            // trips, without the time the run's own gates held the session between them.
            report.handshake = Some(self.grant.exchange + progress.start.elapsed());
        }
        if let Some(meter) = &self.meter
            && delivered > 0
        {
            let payload = fasp::data_bytes(self.params.datagram) as u64;
            meter
                .delivered
                .fetch_add(delivered, std::sync::atomic::Ordering::Relaxed);
            meter
                .delivered_bytes
                .fetch_add(delivered * payload, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// DONE until the receiver's final statistics arrive (bounded), resending what it asks
    /// for; an interrupted run waits [`INTERRUPTED_DRAIN`] at most. A sized transfer goes on
    /// until the receiver holds every datagram or its deadline passes, with a DONE every
    /// [`SIZED_POLL`] (the receiver repeats a request only a round trip after the last).
    async fn finish(
        &mut self,
        report: &mut ClientReport,
        progress: &mut Progress,
        incoming: &mut [u8],
        stop: &watch::Receiver<bool>,
    ) {
        let sized = report.total.is_some();
        let normal = Instant::now() + self.params.handshake_timeout.min(Duration::from_secs(2));
        let poll = Duration::from_millis(50);
        let drain = |now: Instant| now + INTERRUPTED_DRAIN;
        let mut deadline = if *stop.borrow() {
            drain(Instant::now())
        } else {
            normal
        };
        // A sized transfer that completed wants the final counts too; one that did not is
        // past its deadline.
        let finished = |report: &ClientReport, _: &Progress| report.final_stats.is_some();
        if sized && !progress.state.complete() {
            return;
        }
        while !finished(report, progress) && Instant::now() < deadline {
            while let Some(sequence) = progress.state.owed() {
                if report.sent + report.retransmitted >= self.params.max_datagrams {
                    progress.state.forgive();
                    break;
                }
                let repr = self.data(sequence);
                if self.send(&repr, report).await {
                    report.retransmitted += 1;
                }
            }
            let done = self.datagram(
                progress.state.next_sequence(),
                Message::Done {
                    sent: progress.state.next_sequence(),
                    retransmitted: report.retransmitted,
                },
            );
            self.send(&done, report).await;
            let wait = (Instant::now() + poll).min(deadline);
            while Instant::now() < wait && !finished(report, progress) {
                let Ok(Ok((len, from))) =
                    tokio::time::timeout_at(wait.into(), self.socket.recv_from(incoming)).await
                else {
                    break;
                };
                let bytes = incoming[..len].to_vec();
                self.on_reply(from, &bytes, report, progress);
            }
            if *stop.borrow() {
                deadline = deadline.min(drain(Instant::now()));
            }
        }
    }
}
