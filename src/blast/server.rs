//! The transfer-server emulator.
//!
//! A TCP control listener (the "SSH" port) takes one HELLO per connection, gives the session
//! a UDP port with the same [`PortAllocator`] `plan` and `simulate` use, binds that port
//! (sessions sharing a port are told apart by session id) and answers PORT — or REFUSED when
//! no port is free. The session lasts as long as its control connection: when the client
//! closes it, the key gives its port back, and the port's socket closes with its last key.
//!
//! Each bound port has one receiver task. It acknowledges a session's first datagram (the
//! proof that the UDP path works) and every 128th after it, in case an acknowledgement is
//! lost; it records what arrives, asks for gaps with NACKs, and answers DONE with the final
//! statistics. Its per-session results stay in the emulator for the report.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::capture::Capture;
use super::delay::DelayLine;
use crate::model::{AllocatorConfig, Closed, Port, PortAllocator, PortKey, SessionRef};
use crate::wire::fasp::{
    self, CONTROL_LEN, ControlRepr, MAX_DATAGRAM, MAX_NACK_RANGES, Message, ReceiverStats,
    RefusedReason, Repr, SeqRange, flags,
};

/// Distinct datagrams between two acknowledgements of a session's path.
const ACK_EVERY: u64 = 128;

/// What the server saw of one session.
#[derive(Debug, Clone)]
pub struct ServerSession {
    pub port: Port,
    pub stats: ReceiverStats,
    /// Datagrams the client said it sent (from DONE), if it said.
    pub sent: Option<u64>,
    /// First to last data arrival.
    pub active: Duration,
    /// One-way latency in microseconds.
    pub latency_us: Histogram<u64>,
}

/// A session as the receiver tracks it.
struct Receiving {
    peer: SocketAddr,
    /// Bit `s` set = sequence `s` arrived.
    seen: Vec<u64>,
    stats: ReceiverStats,
    sent: Option<u64>,
    first: Option<Instant>,
    last: Option<Instant>,
    latency_us: Histogram<u64>,
}

impl Receiving {
    fn new(peer: SocketAddr) -> Self {
        Self {
            peer,
            seen: Vec::new(),
            stats: ReceiverStats::default(),
            sent: None,
            first: None,
            last: None,
            latency_us: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
        }
    }

    /// Records `sequence`; returns false for a duplicate.
    fn mark(&mut self, sequence: u64) -> bool {
        let (word, bit) = ((sequence / 64) as usize, sequence % 64);
        if self.seen.len() <= word {
            self.seen.resize(word + 1, 0);
        }
        let fresh = self.seen[word] & (1 << bit) == 0;
        self.seen[word] |= 1 << bit;
        fresh
    }

    fn finish(self, port: Port) -> ServerSession {
        let active = match (self.first, self.last) {
            (Some(first), Some(last)) => last - first,
            _ => Duration::ZERO,
        };
        ServerSession {
            port,
            stats: self.stats,
            sent: self.sent,
            active,
            latency_us: self.latency_us,
        }
    }
}

/// How the emulator runs.
#[derive(Debug, Clone, Copy)]
pub struct ServerOptions {
    /// The address it listens on (127.0.0.1 on loopback, 198.18.0.1 in its namespace).
    pub address: Ipv4Addr,
    /// Highest sequence number a session may use (bounds receiver memory).
    pub max_datagrams: u64,
    /// One-way delay and jitter added to its replies when the kernel cannot (no netem).
    pub delay: Option<(Duration, Duration)>,
}

struct Shared {
    /// Held while a port is opened (acquired and bound) or closed (released and its
    /// receiver stopped), so that two sessions of one key never race to bind its port.
    port_changes: tokio::sync::Mutex<()>,
    allocator: Mutex<PortAllocator>,
    ports: Mutex<HashMap<Port, PortTask>>,
    results: Mutex<HashMap<u32, ServerSession>>,
    rule_key: Box<dyn Fn(u32, u32) -> PortKey + Send + Sync>,
    epoch: Instant,
    options: ServerOptions,
    capture: Option<Arc<Capture>>,
}

struct PortTask {
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

/// A running emulator.
pub struct Server {
    control: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

/// The emulator could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on control port {port}: {source}")]
pub struct ListenError {
    port: Port,
    source: std::io::Error,
}

impl Server {
    /// Starts listening on `options.address:control_port` (0 picks a free port).
    pub async fn start(
        config: AllocatorConfig,
        control_port: Port,
        epoch: Instant,
        options: ServerOptions,
        capture: Option<Arc<Capture>>,
    ) -> Result<Self, ListenError> {
        let listener = TcpListener::bind((options.address, control_port))
            .await
            .map_err(|source| ListenError {
                port: control_port,
                source,
            })?;
        let control = listener.local_addr().map_err(|source| ListenError {
            port: control_port,
            source,
        })?;
        let rule = config.rule;
        let allocator = PortAllocator::new(config).map_err(|e| ListenError {
            port: control_port,
            source: std::io::Error::other(e.to_string()),
        })?;
        let shared = Arc::new(Shared {
            port_changes: tokio::sync::Mutex::new(()),
            allocator: Mutex::new(allocator),
            ports: Mutex::new(HashMap::new()),
            results: Mutex::new(HashMap::new()),
            rule_key: Box::new(move |session, account| {
                rule.key(SessionRef {
                    session: u64::from(session),
                    account: u64::from(account),
                })
            }),
            epoch,
            options,
            capture,
        });
        let accept_shared = Arc::clone(&shared);
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve_control(stream, Arc::clone(&accept_shared)));
            }
        });
        Ok(Self {
            control,
            shared,
            accept,
        })
    }

    pub fn control_addr(&self) -> SocketAddr {
        self.control
    }

    /// Stops every task, closes every socket and returns what each session's receiver saw.
    pub async fn shutdown(self) -> HashMap<u32, ServerSession> {
        self.accept.abort();
        // A session closing right now finishes first: its receiver's results land before
        // they are taken.
        let _changing = self.shared.port_changes.lock().await;
        let tasks: Vec<PortTask> = lock(&self.shared.ports).drain().map(|(_, t)| t).collect();
        for task in tasks {
            let _ = task.stop.send(true);
            let _ = task.handle.await;
        }
        std::mem::take(&mut *lock(&self.shared.results))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panicking task must not take the report with it.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One control connection: HELLO in, PORT or REFUSED out, then wait for the client to close.
async fn serve_control(mut stream: TcpStream, shared: Arc<Shared>) {
    let mut frame = [0u8; CONTROL_LEN];
    if stream.read_exact(&mut frame).await.is_err() {
        return;
    }
    let Ok(ControlRepr::Hello {
        session,
        account,
        datagram,
        ..
    }) = fasp::parse_control(&frame)
    else {
        return;
    };
    if usize::from(datagram) < fasp::HEADER_LEN || usize::from(datagram) > MAX_DATAGRAM {
        let refused = ControlRepr::Refused {
            session,
            reason: RefusedReason::BadRequest,
        };
        let _ = stream.write_all(&refused.to_bytes()).await;
        return;
    }
    let key = (shared.rule_key)(session, account);
    let Some(port) = open_port(&shared, key).await else {
        let refused = ControlRepr::Refused {
            session,
            reason: RefusedReason::NoFreePort,
        };
        let _ = stream.write_all(&refused.to_bytes()).await;
        return;
    };
    let answer = ControlRepr::Port { session, port };
    if stream.write_all(&answer.to_bytes()).await.is_ok() {
        // The session lasts until the client closes its control connection.
        let mut rest = [0u8; 64];
        while matches!(stream.read(&mut rest).await, Ok(n) if n > 0) {}
    }
    close_port(&shared, key).await;
}

/// Gives `key` a port and makes sure a receiver listens on it. A port another process
/// holds is kept out of use for the rest of the run, as a server would skip it.
async fn open_port(shared: &Arc<Shared>, key: PortKey) -> Option<Port> {
    let _changing = shared.port_changes.lock().await;
    for _ in 0..64 {
        let port = lock(&shared.allocator).acquire(key).ok()?;
        if lock(&shared.ports).contains_key(&port) {
            return Some(port);
        }
        match bind(shared.options.address, port).await {
            Ok(socket) => {
                let (stop, stopped) = watch::channel(false);
                let handle =
                    tokio::spawn(receive(Arc::new(socket), port, Arc::clone(shared), stopped));
                lock(&shared.ports).insert(port, PortTask { stop, handle });
                return Some(port);
            }
            Err(_) => {
                // Hold the port under a key no session has, then try the next one.
                let mut allocator = lock(&shared.allocator);
                let _ = allocator.release(key);
                let _ = allocator.acquire(PortKey::Session(u64::MAX - u64::from(port)));
            }
        }
    }
    None
}

/// Binds `port`; a port just closed by its previous key may take a moment to come free.
async fn bind(address: Ipv4Addr, port: Port) -> std::io::Result<UdpSocket> {
    let mut last = None;
    for _ in 0..20 {
        match UdpSocket::bind((address, port)).await {
            Ok(socket) => return Ok(socket),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                last = Some(e);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("bind failed")))
}

async fn close_port(shared: &Arc<Shared>, key: PortKey) {
    let _changing = shared.port_changes.lock().await;
    let closed = lock(&shared.allocator).release(key);
    if let Ok(Closed::Freed { port }) = closed {
        let task = lock(&shared.ports).remove(&port);
        if let Some(task) = task {
            let _ = task.stop.send(true);
            let _ = task.handle.await;
        }
    }
}

/// The receiver of one port.
async fn receive(
    socket: Arc<UdpSocket>,
    port: Port,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let mut sessions: HashMap<u32, Receiving> = HashMap::new();
    let mut buffer = vec![0u8; MAX_DATAGRAM];
    let mut reply = vec![0u8; 2048];
    let mut path = Path {
        socket: Arc::clone(&socket),
        delay: shared
            .options
            .delay
            .map(|(delay, jitter)| DelayLine::spawn(Arc::clone(&socket), delay, jitter)),
        local: SocketAddr::from((shared.options.address, port)),
    };
    loop {
        let (len, peer) = tokio::select! {
            received = socket.recv_from(&mut buffer) => match received {
                Ok(r) => r,
                Err(_) => continue,
            },
            _ = stop.changed() => break,
        };
        let now = Instant::now();
        let Ok(repr) = fasp::parse(&buffer[..len]) else {
            continue;
        };
        let state = sessions
            .entry(repr.session)
            .or_insert_with(|| Receiving::new(peer));
        state.peer = peer;
        let answer = match repr.message {
            Message::Data { payload_len } => {
                if repr.sequence >= shared.options.max_datagrams || !state.mark(repr.sequence) {
                    continue;
                }
                let first = state.first.is_none();
                state.first.get_or_insert(now);
                state.last = Some(now);
                state.stats.received += 1;
                state.stats.bytes += u64::from(payload_len);
                // The send time is the peer's word: a time past the end of ours is ignored.
                if let Some(sent_at) = shared.epoch.checked_add(Duration::from_nanos(repr.send_ns))
                {
                    let latency = now.saturating_duration_since(sent_at).as_micros() as u64;
                    let _ = state.latency_us.record(latency.max(1));
                }
                let gap = repr.sequence > state.stats.next_expected;
                let missing = SeqRange {
                    first: state.stats.next_expected,
                    count: u32::try_from(repr.sequence.saturating_sub(state.stats.next_expected))
                        .unwrap_or(u32::MAX),
                };
                state.stats.next_expected = state.stats.next_expected.max(repr.sequence + 1);
                // The first datagram is acknowledged, and every ACK_EVERY-th after it, so a
                // lost acknowledgement does not fail a working session.
                if gap {
                    Some(Message::Nack {
                        missing: vec![missing],
                    })
                } else if first || state.stats.received % ACK_EVERY == 0 {
                    Some(Message::Ack {
                        flags: flags::HANDSHAKE,
                        stats: state.stats,
                    })
                } else {
                    None
                }
            }
            Message::Done { sent, .. } => {
                // No session can have sent more than the run allows.
                let sent = sent.min(shared.options.max_datagrams);
                state.sent = Some(sent);
                let mut stats = state.stats;
                stats.next_expected = stats.next_expected.max(sent);
                stats.missing = stats.next_expected.saturating_sub(stats.received);
                state.stats = stats;
                // Ask once more for what is still missing, then report.
                let missing = missing_ranges(&state.seen, stats.next_expected);
                if !missing.is_empty() {
                    send(
                        &mut path,
                        peer,
                        repr.session,
                        Message::Nack { missing },
                        &mut reply,
                        &shared,
                    )
                    .await;
                }
                Some(Message::Ack {
                    flags: flags::FINAL,
                    stats,
                })
            }
            Message::Nack { .. } | Message::Ack { .. } => None,
        };
        if let Some(message) = answer {
            send(&mut path, peer, repr.session, message, &mut reply, &shared).await;
        }
    }
    let mut results = lock(&shared.results);
    for (session, state) in sessions {
        results.insert(session, state.finish(port));
    }
}

/// Sequence numbers below `end` not marked in `seen`, as ranges (at most one NACK's worth).
fn missing_ranges(seen: &[u64], end: u64) -> Vec<SeqRange> {
    let mut ranges: Vec<SeqRange> = Vec::new();
    let mut sequence = 0;
    while sequence < end {
        let (word, bit) = ((sequence / 64) as usize, sequence % 64);
        let bits = seen.get(word).copied().unwrap_or(0);
        // Whole words received are skipped at once.
        if bit == 0 && bits == u64::MAX {
            sequence += 64;
            continue;
        }
        sequence += 1;
        if bits & (1 << bit) != 0 {
            continue;
        }
        let sequence = sequence - 1;
        if let Some(r) = ranges.last_mut()
            && r.first + u64::from(r.count) == sequence
            && r.count < u32::MAX
        {
            r.count += 1;
            continue;
        }
        if ranges.len() == MAX_NACK_RANGES {
            break;
        }
        ranges.push(SeqRange {
            first: sequence,
            count: 1,
        });
    }
    ranges
}

/// The server's end of the path: its socket, and the delay line when it adds the delay.
struct Path {
    socket: Arc<UdpSocket>,
    delay: Option<DelayLine>,
    local: SocketAddr,
}

async fn send(
    path: &mut Path,
    peer: SocketAddr,
    session: u32,
    message: Message,
    buffer: &mut Vec<u8>,
    shared: &Shared,
) {
    let repr = Repr {
        session,
        sequence: 0,
        send_ns: shared.epoch.elapsed().as_nanos() as u64,
        message,
    };
    if buffer.len() < repr.buffer_len() {
        buffer.resize(repr.buffer_len(), 0);
    }
    if let Ok(len) = repr.emit(buffer) {
        if let Some(capture) = &shared.capture {
            capture.record(path.local, peer, &buffer[..len]);
        }
        match &mut path.delay {
            Some(line) => {
                line.send(&buffer[..len], peer);
            }
            None => {
                let _ = path.socket.send_to(&buffer[..len], peer).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_ranges_merge_and_stop_at_the_limit() {
        let mut seen = vec![0u64; 2];
        for s in [0u64, 1, 4, 5, 9] {
            seen[(s / 64) as usize] |= 1 << (s % 64);
        }
        assert_eq!(
            missing_ranges(&seen, 12),
            vec![
                SeqRange { first: 2, count: 2 },
                SeqRange { first: 6, count: 3 },
                SeqRange {
                    first: 10,
                    count: 2
                }
            ]
        );
        let every_other: Vec<u64> = vec![0x5555_5555_5555_5555; 10];
        assert_eq!(missing_ranges(&every_other, 640).len(), MAX_NACK_RANGES);
    }
}
