//! The transfer-server emulator: it moves bytes; what they mean is decided by the control
//! handshake here and by the port's [`PortReceiver`].
//!
//! A TCP control listener (the "SSH" port) takes one HELLO per connection. A HELLO with the
//! run's key gets a session id the server assigns, a random token, and a UDP port from the
//! same [`PortAllocator`] `plan` and `simulate` use; the server binds that port, registers
//! the session with the port's receiver and answers PORT — or REFUSED when the key is wrong,
//! the request absurd, the server full or no port free. The session lasts as long as its
//! control connection, which also answers QUERY with how much of the session arrived. When
//! the client closes it, the key gives its port back and the port's socket closes with its
//! last key.
//!
//! The control port cannot be held by peers that never speak: a connection has
//! [`HELLO_TIMEOUT`] to send its HELLO, and past [`pending_limit`] connections waiting for
//! one (or when the process runs out of descriptors), the oldest is closed. The limit leaves
//! room for every client a run may start, so a burst of real clients loses none.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{AbortHandle, JoinHandle};

use super::capture::Capture;
pub use super::receiver::ServerSession;
use super::receiver::{PortReceiver, Registration, Reply};
use crate::limits::{MAX_CLIENTS, MAX_DATAGRAMS_PER_SESSION};
use crate::model::{AllocatorConfig, Closed, Port, PortAllocator, PortKey, SessionRef};
use crate::wire::control::{self, CONTROL_LEN, ControlRepr, FinalStats, LatencyUs, RefusedReason};
use crate::wire::fasp::{self, MAX_DATAGRAM};

/// Time a control connection has to send its HELLO.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Control connections waiting for their HELLO at once, at most: room for every client a
/// run may start and as many strangers again as [`STRANGERS`].
pub const MAX_PENDING: usize = MAX_CLIENTS as usize + STRANGERS;
/// Connections beyond a run's clients that may wait for their HELLO.
pub const STRANGERS: usize = 256;

/// Connections that may wait for their HELLO here: [`MAX_PENDING`], or a quarter of the
/// process's descriptor limit when that is lower (each session needs descriptors of its own).
pub fn pending_limit() -> usize {
    let quarter = super::descriptor_limits().map_or(MAX_PENDING, |(soft, _)| {
        usize::try_from(soft / 4).unwrap_or(usize::MAX)
    });
    quarter.clamp(16, MAX_PENDING)
}

/// How the emulator runs.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// The address it listens on (127.0.0.1 on loopback, 198.19.0.1 in its namespace).
    pub address: Ipv4Addr,
    /// Highest sequence number a session may use (bounds what a session can claim).
    pub max_datagrams: u64,
    /// The run's credential: a HELLO must carry it.
    pub key: u64,
    /// Most sessions at once.
    pub max_sessions: u32,
    /// What the server answers a DESCRIBE with (its OS rule and port limits); `None`: it
    /// refuses to describe itself.
    pub describe: Option<crate::model::Server>,
    /// Where to report each session's start and end (`udprange serve` prints them).
    pub events: Option<mpsc::UnboundedSender<SessionEvent>>,
}

/// A session starting or ending at the server, for a log line.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionEvent {
    Opened {
        session: u32,
        account: u32,
        port: Port,
        peer: SocketAddr,
    },
    Refused {
        account: u32,
        peer: SocketAddr,
        reason: RefusedReason,
    },
    Closed {
        session: u32,
        port: Port,
        stats: FinalStats,
    },
}

impl ServerOptions {
    /// An emulator on `address` for a run with this key, at the run's limits.
    pub fn new(address: Ipv4Addr, key: u64) -> Self {
        Self {
            address,
            max_datagrams: MAX_DATAGRAMS_PER_SESSION,
            key,
            max_sessions: MAX_CLIENTS,
            describe: None,
            events: None,
        }
    }
}

/// What the server saw, all sessions.
#[derive(Debug, Default)]
pub struct ServerRecord {
    pub sessions: HashMap<u32, ServerSession>,
    /// Datagrams and control frames dropped because they were not a session's own.
    pub rejected: u64,
    /// Ports another process on this machine held: the emulator skipped them.
    pub foreign_ports: Vec<Port>,
}

struct Shared {
    /// Held while a port is opened (acquired and bound) or closed (released and its
    /// receiver stopped), so that two sessions of one key never race to bind its port.
    port_changes: tokio::sync::Mutex<()>,
    allocator: Mutex<PortAllocator>,
    ports: Mutex<HashMap<Port, PortTask>>,
    results: Mutex<HashMap<u32, ServerSession>>,
    rule_key: Box<dyn Fn(u32, u32) -> PortKey + Send + Sync>,
    next_session: AtomicU32,
    active_sessions: AtomicU32,
    rejected: AtomicU64,
    /// Ports another process on this machine held when the emulator tried to bind them.
    foreign_ports: Mutex<BTreeSet<Port>>,
    /// Control connections whose HELLO has not been read, oldest first.
    pending: Mutex<BTreeMap<u64, Pending>>,
    options: ServerOptions,
    capture: Option<Arc<Capture>>,
}

/// A control connection whose HELLO has not been read yet.
struct Pending {
    task: AbortHandle,
    /// Its task has run and found no complete HELLO: it is waiting on the peer, not on us.
    /// Only such a connection is ever evicted, so a burst of clients whose HELLOs sit
    /// unread while the server is busy loses none of them.
    waiting: bool,
}

/// What a control connection tells its port's receiver.
enum PortEvent {
    Register(Registration),
    /// The session ended; its receiver's record goes back over the channel when there is one.
    Unregister(u32, Option<oneshot::Sender<ServerSession>>),
}

struct PortTask {
    events: mpsc::UnboundedSender<PortEvent>,
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
        options: ServerOptions,
        capture: Option<Arc<Capture>>,
    ) -> Result<Self, ListenError> {
        let failed = |source| ListenError {
            port: control_port,
            source,
        };
        let listener = TcpListener::bind((options.address, control_port))
            .await
            .map_err(failed)?;
        let control = listener.local_addr().map_err(failed)?;
        let rule = config.rule;
        let allocator =
            PortAllocator::new(config).map_err(|e| failed(std::io::Error::other(e.to_string())))?;
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
            next_session: AtomicU32::new(1),
            active_sessions: AtomicU32::new(0),
            rejected: AtomicU64::new(0),
            foreign_ports: Mutex::new(BTreeSet::new()),
            pending: Mutex::new(BTreeMap::new()),
            options,
            capture,
        });
        let accept_shared = Arc::clone(&shared);
        let pending_limit = pending_limit();
        let accept = tokio::spawn(async move {
            let mut connections = 0u64;
            loop {
                let (stream, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    // Out of descriptors, or a connection reset before it was taken: the
                    // listener itself is fine; a silent connection makes room.
                    Err(_) => {
                        evict_oldest_waiting(&accept_shared);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                connections += 1;
                let shared = Arc::clone(&accept_shared);
                let mut pending = lock(&accept_shared.pending);
                let task = tokio::spawn(serve_control(stream, peer, connections, shared));
                pending.insert(
                    connections,
                    Pending {
                        task: task.abort_handle(),
                        waiting: false,
                    },
                );
                let full = pending.len() > pending_limit;
                drop(pending);
                if full {
                    evict_oldest_waiting(&accept_shared);
                }
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
    pub async fn shutdown(self) -> ServerRecord {
        self.accept.abort();
        for (_, pending) in std::mem::take(&mut *lock(&self.shared.pending)) {
            pending.task.abort();
        }
        // A session closing right now finishes first: its receiver's results land before
        // they are taken.
        let _changing = self.shared.port_changes.lock().await;
        let tasks: Vec<PortTask> = lock(&self.shared.ports).drain().map(|(_, t)| t).collect();
        for task in tasks {
            let _ = task.stop.send(true);
            let _ = task.handle.await;
        }
        ServerRecord {
            sessions: std::mem::take(&mut *lock(&self.shared.results)),
            rejected: self.shared.rejected.load(Ordering::Relaxed),
            foreign_ports: lock(&self.shared.foreign_ports).iter().copied().collect(),
        }
    }
}

/// Closes the oldest control connection that is waiting on its peer for a HELLO.
fn evict_oldest_waiting(shared: &Shared) {
    let mut pending = lock(&shared.pending);
    let oldest = pending.iter().find(|(_, p)| p.waiting).map(|(&n, _)| n);
    if let Some(evicted) = oldest.and_then(|n| pending.remove(&n)) {
        evicted.task.abort();
        shared.rejected.fetch_add(1, Ordering::Relaxed);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panicking task must not take the report with it.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Tells the client why it gets no session.
async fn refuse(stream: &mut TcpStream, reason: RefusedReason) {
    let _ = stream
        .write_all(&ControlRepr::Refused { reason }.to_bytes())
        .await;
}

/// A HELLO's request, checked; the refusal when it cannot be served.
fn check_hello(shared: &Shared, frame: &[u8]) -> Result<(u32, u16, u64), Option<RefusedReason>> {
    let Ok(ControlRepr::Hello {
        account,
        datagram,
        rate_bps,
        key,
    }) = control::parse(frame)
    else {
        return Err(None);
    };
    if key != shared.options.key {
        return Err(Some(RefusedReason::Unauthorized));
    }
    if !(fasp::MIN_DATAGRAM..=MAX_DATAGRAM).contains(&usize::from(datagram)) {
        return Err(Some(RefusedReason::BadRequest));
    }
    Ok((account, datagram, rate_bps))
}

/// One control connection: HELLO in, PORT or REFUSED out, then QUERYs until the client
/// closes it.
async fn serve_control(mut stream: TcpStream, peer: SocketAddr, number: u64, shared: Arc<Shared>) {
    let mut frame = [0u8; CONTROL_LEN];
    let mut read = 0;
    // What has arrived is taken at once; only a connection still short of its HELLO then
    // waits for its peer, and only then can it be evicted.
    while read < CONTROL_LEN {
        match stream.try_read(&mut frame[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(_) => break,
        }
    }
    if read < CONTROL_LEN
        && let Some(pending) = lock(&shared.pending).get_mut(&number)
    {
        pending.waiting = true;
    }
    let hello = if read < CONTROL_LEN {
        tokio::time::timeout(HELLO_TIMEOUT, stream.read_exact(&mut frame[read..])).await
    } else {
        Ok(Ok(0))
    };
    lock(&shared.pending).remove(&number);
    if !matches!(hello, Ok(Ok(_))) {
        shared.rejected.fetch_add(1, Ordering::Relaxed);
        return;
    }
    if let Ok(ControlRepr::Describe { key }) = control::parse(&frame) {
        describe(&mut stream, &shared, key).await;
        return;
    }
    let (account, datagram, rate_bps) = match check_hello(&shared, &frame) {
        Ok(request) => request,
        Err(reason) => {
            shared.rejected.fetch_add(1, Ordering::Relaxed);
            if let Some(reason) = reason {
                refuse(&mut stream, reason).await;
            }
            return;
        }
    };
    let admitted = shared
        .active_sessions
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < shared.options.max_sessions).then_some(n + 1)
        })
        .is_ok();
    if !admitted {
        report(
            &shared,
            SessionEvent::Refused {
                account,
                peer,
                reason: RefusedReason::Busy,
            },
        );
        refuse(&mut stream, RefusedReason::Busy).await;
        return;
    }
    let session = shared.next_session.fetch_add(1, Ordering::Relaxed);
    let registration = Registration {
        session,
        token: new_secret(),
        peer_ip: peer.ip(),
        rate_bps,
        datagram,
        registered_at: crate::wire::clock_now(),
        progress: Arc::new(AtomicU64::new(0)),
    };
    let token = registration.token;
    let progress = Arc::clone(&registration.progress);
    let key = (shared.rule_key)(session, account);
    match open_port(&shared, key, registration).await {
        Some(port) => {
            report(
                &shared,
                SessionEvent::Opened {
                    session,
                    account,
                    port,
                    peer,
                },
            );
            let answer = ControlRepr::Port {
                session,
                port,
                token,
            };
            let bye = if stream.write_all(&answer.to_bytes()).await.is_ok() {
                answer_queries(&mut stream, session, &progress).await
            } else {
                false
            };
            let (record, recorded) = oneshot::channel();
            close_port(&shared, key, session, bye.then_some(record)).await;
            let record = if bye { recorded.await.ok() } else { None };
            let stats = final_stats(record);
            report(
                &shared,
                SessionEvent::Closed {
                    session,
                    port,
                    stats,
                },
            );
            if bye {
                let _ = stream.write_all(&stats.frame(session).to_bytes()).await;
            }
        }
        None => {
            report(
                &shared,
                SessionEvent::Refused {
                    account,
                    peer,
                    reason: RefusedReason::NoFreePort,
                },
            );
            refuse(&mut stream, RefusedReason::NoFreePort).await;
        }
    }
    shared.active_sessions.fetch_sub(1, Ordering::AcqRel);
}

/// Tells whoever listens about a session.
fn report(shared: &Shared, event: SessionEvent) {
    if let Some(events) = &shared.options.events {
        let _ = events.send(event);
    }
}

/// Answers DESCRIBE: the server's OS rule and port limits, then its occupied ports; a wrong
/// key (or a server that does not describe itself) is refused.
async fn describe(stream: &mut TcpStream, shared: &Shared, key: u64) {
    let Some(server) = shared
        .options
        .describe
        .as_ref()
        .filter(|_| key == shared.options.key)
    else {
        shared.rejected.fetch_add(1, Ordering::Relaxed);
        refuse(stream, RefusedReason::Unauthorized).await;
        return;
    };
    let occupied: Vec<Port> = server.occupied.iter().copied().collect();
    let mut frames = vec![ControlRepr::Server {
        os: server.os,
        udp_port_reuse: server.udp_port_reuse,
        base_port: server.base_port,
        max_port: server.max_port,
        max_sessions: shared.options.max_sessions,
        occupied: occupied.len() as u32,
    }];
    for chunk in occupied.chunks(control::PORTS_PER_FRAME) {
        let mut ports = [0u16; control::PORTS_PER_FRAME];
        ports[..chunk.len()].copy_from_slice(chunk);
        frames.push(ControlRepr::Occupied {
            len: chunk.len() as u8,
            ports,
        });
    }
    for frame in frames {
        if stream.write_all(&frame.to_bytes()).await.is_err() {
            return;
        }
    }
}

/// The session lasts until the client says BYE (true), closes its control connection or
/// sends what is not a QUERY or BYE of its own session (false); each QUERY gets the
/// session's progress.
async fn answer_queries(stream: &mut TcpStream, session: u32, progress: &AtomicU64) -> bool {
    let mut frame = [0u8; CONTROL_LEN];
    while stream.read_exact(&mut frame).await.is_ok() {
        let asked = match control::parse(&frame) {
            Ok(ControlRepr::Bye { session: s }) if s == session => return true,
            Ok(ControlRepr::Query { session: asked }) => asked,
            _ => return false,
        };
        if asked != session {
            return false;
        }
        let status = ControlRepr::Status {
            session,
            received: progress.load(Ordering::Relaxed),
        };
        if stream.write_all(&status.to_bytes()).await.is_err() {
            return false;
        }
    }
    false
}

/// What a FINAL frame says of a session the receiver recorded (all zero without a record).
fn final_stats(record: Option<ServerSession>) -> FinalStats {
    let saturate = |us: u64| u32::try_from(us).unwrap_or(u32::MAX);
    let latency = record
        .as_ref()
        .and_then(|r| r.latency_us.as_ref())
        .filter(|h| !h.is_empty())
        .map(|h| LatencyUs {
            p50: saturate(h.value_at_quantile(0.5)),
            p99: saturate(h.value_at_quantile(0.99)),
            max: saturate(h.max()),
        });
    FinalStats {
        received: record.as_ref().map_or(0, |r| r.stats.received),
        duplicates: record.as_ref().map_or(0, |r| r.duplicates),
        latency,
    }
}

/// A session token or a run key: 64 random bits from the operating system.
pub fn new_secret() -> u64 {
    // Without the OS's randomness (which no supported system lacks), a token from the
    // standard library's randomly keyed hasher is still unguessable from outside.
    getrandom::u64().unwrap_or_else(|_| {
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(Instant::now().elapsed().as_nanos());
        hasher.finish()
    })
}

/// Gives `key` a port, makes sure a receiver listens on it and registers the session there.
/// A port another process holds is kept out of use for the rest of the run, as a server
/// would skip it.
async fn open_port(shared: &Arc<Shared>, key: PortKey, registration: Registration) -> Option<Port> {
    let _changing = shared.port_changes.lock().await;
    for _ in 0..64 {
        let port = lock(&shared.allocator).acquire(key).ok()?;
        if let Some(task) = lock(&shared.ports).get(&port) {
            let _ = task.events.send(PortEvent::Register(registration));
            return Some(port);
        }
        match bind(shared.options.address, port).await {
            Ok(socket) => {
                let (stop, stopped) = watch::channel(false);
                let (events, incoming) = mpsc::unbounded_channel();
                let _ = events.send(PortEvent::Register(registration));
                let handle = tokio::spawn(receive(
                    Arc::new(socket),
                    port,
                    Arc::clone(shared),
                    incoming,
                    stopped,
                ));
                lock(&shared.ports).insert(
                    port,
                    PortTask {
                        events,
                        stop,
                        handle,
                    },
                );
                return Some(port);
            }
            Err(_) => {
                // Another process on this machine holds the port: a fact about the test
                // machine, not the user's server. It stays out of use, and the report says so.
                lock(&shared.allocator).withdraw(key);
                lock(&shared.foreign_ports).insert(port);
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

async fn close_port(
    shared: &Arc<Shared>,
    key: PortKey,
    session: u32,
    record: Option<oneshot::Sender<ServerSession>>,
) {
    let _changing = shared.port_changes.lock().await;
    let closed = lock(&shared.allocator).release(key);
    let port = match closed {
        Ok(
            Closed::Freed { port } | Closed::StillShared { port } | Closed::Lingering { port, .. },
        ) => port,
        _ => return,
    };
    let freed = matches!(closed, Ok(Closed::Freed { .. }));
    let task = {
        let mut ports = lock(&shared.ports);
        if let Some(task) = ports.get(&port) {
            let _ = task.events.send(PortEvent::Unregister(session, record));
        }
        if freed { ports.remove(&port) } else { None }
    };
    if let Some(task) = task {
        let _ = task.stop.send(true);
        let _ = task.handle.await;
    }
}

/// The socket side of one port: datagrams to its [`PortReceiver`], replies back out.
async fn receive(
    socket: Arc<UdpSocket>,
    port: Port,
    shared: Arc<Shared>,
    mut events: mpsc::UnboundedReceiver<PortEvent>,
    mut stop: watch::Receiver<bool>,
) {
    let mut receiver = PortReceiver::new(port, shared.options.max_datagrams);
    let mut buffer = vec![0u8; fasp::MAX_UDP_PAYLOAD];
    let mut replies = Vec::new();
    let mut path = Path {
        socket: Arc::clone(&socket),
        local: SocketAddr::from((shared.options.address, port)),
        wire: vec![0u8; 2048],
    };
    let apply = |receiver: &mut PortReceiver, event| match event {
        PortEvent::Register(registration) => receiver.register(registration),
        PortEvent::Unregister(session, record) => {
            if let Some(result) = receiver.unregister(session) {
                match record {
                    Some(record) => {
                        let _ = record.send(result);
                    }
                    None => {
                        lock(&shared.results).insert(session, result);
                    }
                }
            }
        }
    };
    loop {
        let (len, peer) = tokio::select! {
            received = socket.recv_from(&mut buffer) => match received {
                Ok(r) => r,
                Err(_) => continue,
            },
            Some(event) = events.recv() => {
                apply(&mut receiver, event);
                continue;
            }
            _ = stop.changed() => break,
        };
        // A session registers before its client learns the port: whatever is queued
        // belongs to datagrams that can already be on their way.
        while let Ok(event) = events.try_recv() {
            apply(&mut receiver, event);
        }
        receiver.on_datagram(peer, &buffer[..len], crate::wire::clock_now(), &mut replies);
        for reply in replies.drain(..) {
            path.send(&reply, &shared).await;
        }
    }
    while let Ok(event) = events.try_recv() {
        apply(&mut receiver, event);
    }
    shared
        .rejected
        .fetch_add(receiver.rejected(), Ordering::Relaxed);
    lock(&shared.results).extend(receiver.finish());
}

/// The server's end of the path: its socket.
struct Path {
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    wire: Vec<u8>,
}

impl Path {
    async fn send(&mut self, reply: &Reply, shared: &Shared) {
        let needed = reply.repr.buffer_len();
        if self.wire.len() < needed {
            self.wire.resize(needed, 0);
        }
        let Ok(len) = reply.repr.emit(&mut self.wire) else {
            return;
        };
        let bytes = &self.wire[..len];
        if let Some(capture) = &shared.capture {
            capture.record(self.local, reply.to, bytes);
        }
        let _ = self.socket.send_to(bytes, reply.to).await;
    }
}
