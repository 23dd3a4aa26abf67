//! Packet-level validation: a server emulator and many clients push paced FASP-like traffic
//! through the client's firewall, and the report says which sessions got through.
//!
//! The `loopback` backend runs everything on 127.0.0.1 in this process: real TCP and UDP
//! sockets, the client firewall modelled in process ([`OutboundFilter`]). Only this module
//! touches the wall clock. Every run is bounded: in time (duration + handshake timeout +
//! a drain), in datagrams per session, in sessions; Ctrl-C (the `stop` signal) ends sending
//! at once, drains, and still reports.

pub mod capture;
pub mod client;
pub mod delay;
pub mod netns;
pub mod pacing;
pub mod receiver;
pub mod server;

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;

use crate::firewall::model::OutboundFilter;
use crate::firewall::rules::{self, RuleSet, Syntax};
use crate::firewall::{Peer, Requirements, Side};
use crate::model::{
    AllocatorConfig, Port, PortAllocator, PortRange, ServerOs, SessionRef, SharingRule,
};
use crate::scenario::Scenario;
pub use crate::scenario::Start;
use capture::Capture;
use client::{ClientOutcome, ClientParams, ClientReport};
use netns::{Mechanisms, TestHosts, WanPath};
use server::{Server, ServerOptions, ServerRecord, ServerSession};

pub use crate::limits::{MAX_CLIENTS, MAX_DATAGRAMS_PER_SESSION, MAX_DURATION};

/// A blast run.
#[derive(Debug, Clone, PartialEq)]
pub struct BlastConfig {
    pub os: ServerOs,
    pub udp_port_reuse: bool,
    pub base_port: Port,
    pub max_port: Port,
    pub occupied: BTreeSet<Port>,
    /// The client firewall's outbound UDP range; `None` = everything passes.
    pub allowed: Option<PortRange>,
    pub clients: u32,
    pub accounts: u32,
    /// Target rate per session in bit/s; 0 = as fast as the socket takes it.
    pub rate_bps: u64,
    /// Datagram size in bytes (header included).
    pub datagram: u16,
    pub duration: Duration,
    pub start: Start,
    /// TCP control ("SSH") port on 127.0.0.1; 0 picks a free one.
    pub control_port: Port,
    pub handshake_timeout: Duration,
    pub max_datagrams: u64,
    /// Keep at most this many frames for `--pcap`; 0 = no capture.
    pub pcap_limit: u64,
    pub backend: Backend,
}

/// Where the packets flow.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Backend {
    /// 127.0.0.1, the client firewall modelled in process.
    #[default]
    Loopback,
    /// Two network namespaces, a veth pair, real nftables, and this WAN path.
    Netns(WanPath),
}

impl BlastConfig {
    pub fn rule(&self) -> SharingRule {
        SharingRule::for_os(self.os, self.udp_port_reuse)
    }

    /// The run a scenario describes: its server, its client range, its `[traffic]`.
    /// Clients belong to the workload's accounts round-robin where accounts decide ports
    /// (macOS, FreeBSD); elsewhere every client is its own account.
    pub fn from_scenario(scenario: &Scenario) -> Self {
        let server = &scenario.server;
        let traffic = &scenario.traffic;
        let accounts = match scenario.rule() {
            SharingRule::PerAccount => {
                u32::try_from(scenario.workload.accounts).unwrap_or(u32::MAX)
            }
            _ => traffic.clients,
        };
        Self {
            os: server.os,
            udp_port_reuse: server.udp_port_reuse,
            base_port: server.base_port,
            max_port: server.max_port,
            occupied: server.occupied.clone(),
            allowed: scenario.client.allowed,
            clients: traffic.clients,
            accounts,
            rate_bps: traffic.rate.bits_per_second() as u64,
            datagram: traffic.datagram,
            duration: wall_clock(traffic.duration, MAX_DURATION),
            start: traffic.start,
            control_port: traffic.control_port,
            handshake_timeout: wall_clock(
                scenario.workload.handshake_timeout,
                crate::limits::MAX_HANDSHAKE_TIMEOUT,
            ),
            max_datagrams: MAX_DATAGRAMS_PER_SESSION,
            pcap_limit: 0,
            backend: Backend::Loopback,
        }
    }

    /// The server's allocator for this run: its rule, base port, cap and occupied ports.
    pub fn allocator(&self) -> AllocatorConfig {
        AllocatorConfig::new(self.rule(), self.base_port)
            .with_max_port(self.max_port)
            .with_occupied(self.occupied.iter().copied())
    }

    /// The smallest client range this run's load needs, as the model hands out ports: every
    /// client's session open at once (they start together, or staggered within the first
    /// half of a sending time each of them spans), on the server's allocator. `None` when the
    /// server's cap cannot fit them: no client range helps then.
    pub fn required_range(&self) -> Option<PortRange> {
        let mut allocator = PortAllocator::new(self.allocator()).ok()?;
        let accounts = self.accounts.max(1);
        let mut highest = None;
        for i in 0..self.clients.min(MAX_CLIENTS) {
            let session = SessionRef {
                session: u64::from(i),
                account: u64::from(i % accounts),
            };
            highest = highest.max(Some(allocator.open(session).ok()?));
        }
        PortRange::new(self.base_port, highest?).ok()
    }

    /// The seed's example: windows, 10 clients, 33001-33010 allowed.
    pub fn seed_example() -> Self {
        Self::from_scenario(&Scenario::seed_example())
    }
}

/// A scenario's duration on the wall clock, at most `limit`. Validation already keeps
/// scenario values within the limits; this keeps a hand-built `Scenario` from panicking.
fn wall_clock(duration: crate::units::Duration, limit: Duration) -> Duration {
    Duration::try_from_secs_f64(duration.as_secs_f64()).map_or(limit, |d| d.min(limit))
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Latency {
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
}

/// How a session ended, as reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    /// error 15: the client firewall dropped the path.
    Blocked,
    /// The server had no port (or would not serve the request).
    Refused,
    /// Not the firewall's doing: the control connection failed or was too slow, or the
    /// server received the data but its acknowledgements did not come back in time.
    Failed,
    /// The run was interrupted before the session proved or disproved its path.
    Interrupted,
}

impl Outcome {
    /// The outcome as the report spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Blocked => "blocked",
            Self::Refused => "refused",
            Self::Failed => "failed",
            Self::Interrupted => "interrupted",
        }
    }
}

/// One session in the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionResult {
    /// The client's number in the run, from 1.
    pub id: u32,
    /// The session id the server assigned, once it granted one.
    pub session: Option<u32>,
    pub account: u32,
    pub port: Option<Port>,
    pub outcome: Outcome,
    /// Why, in the client's words, when not ok.
    pub error: Option<String>,
    pub goodput_bps: f64,
    pub sent: u64,
    pub received: u64,
    pub lost: u64,
    pub retransmitted: u64,
    pub filtered: u64,
    /// Datagrams the server received more than once.
    pub duplicates: u64,
    /// Datagrams at the client's socket that were not its server's replies to its session.
    pub rejected: u64,
    pub handshake_ms: Option<f64>,
    pub latency_us: Option<Latency>,
}

/// What a run concluded about the range under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Every session got through.
    Sufficient,
    /// The firewall blocked sessions (error 15), or the server ran out of ports.
    Insufficient,
    /// Sessions failed for reasons that are not the range's (control connections, load,
    /// an interrupted run) and nothing else failed: no verdict either way.
    Inconclusive,
}

/// Whether the range under test is enough.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    pub status: Status,
    pub sufficient: bool,
    pub allowed: Option<PortRange>,
    /// The smallest range this run's load needs, as the model hands out ports
    /// ([`BlastConfig::required_range`]); `None` when the server's cap cannot fit it.
    #[serde(serialize_with = "first_last")]
    pub required: Option<PortRange>,
    /// Sessions that did not end ok, whatever the reason.
    pub failed: u32,
    pub blocked: u32,
    pub refused: u32,
    /// Failures that are not the range's: control connections, load, lost acknowledgements.
    pub other: u32,
    pub interrupted: u32,
    pub sessions: u32,
    /// One sentence for people.
    pub summary: String,
}

/// Datagrams and control frames dropped because they were not a session's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Rejected {
    /// At the server: unknown sessions, wrong tokens, strangers, impossible claims, HELLOs
    /// without the run's key, control connections that never spoke.
    pub server: u64,
    /// At the clients' sockets: anything but their own server's replies.
    pub clients: u64,
    pub total: u64,
}

/// Everything a run measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BlastReport {
    pub backend: &'static str,
    pub os: &'static str,
    pub sharing: &'static str,
    pub clients: u32,
    pub accounts: u32,
    pub rate_bps: u64,
    pub datagram: u16,
    pub duration_s: f64,
    pub start: Start,
    pub sessions: Vec<SessionResult>,
    pub verdict: Verdict,
    /// Distinct data datagrams the server received, all sessions.
    pub received_datagrams: u64,
    pub elapsed_s: f64,
    pub received_per_second: f64,
    pub goodput_bps: f64,
    /// Ctrl-C ended the run early; the report covers what happened until then.
    pub interrupted: bool,
    /// What was dropped because it was not a session's own; it changed no outcome.
    pub rejected: Rejected,
    pub pcap_frames: u64,
    /// The kernel path of the netns backend: ruleset in force, impairment mechanisms.
    pub kernel: Option<KernelPath>,
    /// Things the run did along the way (leftovers removed).
    pub notes: Vec<String>,
}

/// The run could not start.
#[derive(Debug, thiserror::Error)]
pub enum BlastError {
    #[error(transparent)]
    Listen(#[from] server::ListenError),
    #[error(transparent)]
    Netns(#[from] netns::NetnsError),
    #[error("invalid server: {0}")]
    Server(String),
}

/// A range as `{"first": …, "last": …}` in JSON.
fn first_last<S: serde::Serializer>(
    range: &Option<PortRange>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Bounds {
        first: Port,
        last: Port,
    }
    range
        .map(|r| Bounds {
            first: r.first(),
            last: r.last(),
        })
        .serialize(serializer)
}

fn latency(histogram: &hdrhistogram::Histogram<u32>) -> Option<Latency> {
    (!histogram.is_empty()).then(|| Latency {
        p50: histogram.value_at_quantile(0.5),
        p99: histogram.value_at_quantile(0.99),
        max: histogram.max(),
    })
}

fn session_result(
    client: ClientReport,
    server: Option<&ServerSession>,
    duration: Duration,
) -> SessionResult {
    let (outcome, error) = match &client.outcome {
        ClientOutcome::Ok => (Outcome::Ok, None),
        ClientOutcome::Blocked => (
            Outcome::Blocked,
            Some("error 15: Timeout establishing UDP connection".to_string()),
        ),
        ClientOutcome::Unacknowledged { received } => (
            Outcome::Failed,
            Some(format!(
                "the server received {received} datagrams, but no acknowledgement came back \
                 within the handshake timeout: not the range's doing"
            )),
        ),
        ClientOutcome::Refused(reason) => (Outcome::Refused, Some(format!("refused: {reason}"))),
        ClientOutcome::ControlFailed(why) => (Outcome::Failed, Some(why.clone())),
        ClientOutcome::Interrupted => (
            Outcome::Interrupted,
            Some("interrupted before the path was proven".to_string()),
        ),
    };
    let stats = server.map(|s| s.stats).unwrap_or_default();
    let active = server.map_or(Duration::ZERO, |s| s.active);
    let span = if active.is_zero() { duration } else { active };
    let goodput_bps = if span.is_zero() {
        0.0
    } else {
        stats.bytes as f64 * 8.0 / span.as_secs_f64()
    };
    let lost = client.sent.saturating_sub(stats.received);
    SessionResult {
        id: client.index,
        session: client.session,
        account: client.account,
        port: client.port,
        outcome,
        error,
        goodput_bps,
        sent: client.sent,
        received: stats.received,
        lost,
        retransmitted: client.retransmitted,
        filtered: client.filtered,
        duplicates: server.map_or(0, |s| s.duplicates),
        rejected: client.rejected,
        handshake_ms: client.handshake.map(|d| d.as_secs_f64() * 1e3),
        latency_us: server.and_then(|s| s.latency_us.as_ref()).and_then(latency),
    }
}

/// The verdict on `sessions`; `foreign_ports` are ports another process on the test machine
/// held, which the emulator had to skip.
fn verdict(config: &BlastConfig, sessions: &[SessionResult], foreign_ports: &[Port]) -> Verdict {
    let count = |outcome| sessions.iter().filter(|s| s.outcome == outcome).count() as u32;
    let (blocked, refused) = (count(Outcome::Blocked), count(Outcome::Refused));
    let (other, interrupted) = (count(Outcome::Failed), count(Outcome::Interrupted));
    let failed = blocked + refused + other + interrupted;
    let required = config.required_range();
    let allowed = config.allowed;
    let shown = |r: Option<PortRange>| r.map_or("every port".to_string(), |r| r.to_string());
    let mut why = Vec::new();
    for (n, what) in [
        (blocked, "blocked (error 15)"),
        (refused, "refused by the server"),
        (other, "failed for reasons that are not the range's"),
        (interrupted, "interrupted"),
    ] {
        if n > 0 {
            why.push(format!("{n} {what}"));
        }
    }
    let why = why.join(", ");
    let total = sessions.len();
    let (status, summary) = if failed == 0 {
        (
            Status::Sufficient,
            format!("range {} is sufficient", shown(allowed)),
        )
    } else if (blocked > 0 || refused > 0) && !foreign_ports.is_empty() {
        let ports: Vec<String> = foreign_ports.iter().map(Port::to_string).collect();
        (
            Status::Inconclusive,
            format!(
                "inconclusive: {failed} of {total} sessions failed ({why}), but port(s) {} \
                 are held by another process on this machine, not by your server, and the \
                 emulator had to skip them; free them (or choose a --base-port where nothing \
                 listens) and run again",
                ports.join(", ")
            ),
        )
    } else if blocked > 0 || refused > 0 {
        let covered =
            |r: PortRange| allowed.is_none_or(|a| a.contains(r.first()) && a.contains(r.last()));
        let fix = match (refused, required) {
            (0, Some(r)) if covered(r) => format!(
                "; the range covers the {r} this load needs, so something else on the path \
                 drops the UDP data"
            ),
            (0, Some(r)) => format!("; the smallest sufficient range is {r}"),
            _ => "; the server ran out of ports, which no client range fixes".to_string(),
        };
        (
            Status::Insufficient,
            format!("insufficient: {failed} of {total} sessions failed ({why}){fix}"),
        )
    } else {
        (
            Status::Inconclusive,
            format!(
                "inconclusive: {failed} of {total} sessions failed ({why}); no session was \
                 blocked, so this run says nothing against range {}{}",
                shown(allowed),
                if other > 0 {
                    "; such failures come from load or the control path: try fewer clients \
                     or a lower rate"
                } else {
                    ""
                }
            ),
        )
    };
    Verdict {
        status,
        sufficient: status == Status::Sufficient,
        allowed,
        required,
        failed,
        blocked,
        refused,
        other,
        interrupted,
        sessions: total as u32,
        summary,
    }
}

/// Everything one side of a run needs to know, whichever backend carries it.
struct Setup {
    epoch: Instant,
    capture: Option<Arc<Capture>>,
    allocator: AllocatorConfig,
    /// The run's credential: the clients' HELLO carries it, the emulator checks it.
    key: u64,
}

impl Setup {
    fn new(config: &BlastConfig) -> Self {
        Self {
            epoch: Instant::now(),
            capture: (config.pcap_limit > 0).then(|| Arc::new(Capture::new(config.pcap_limit))),
            allocator: config.allocator(),
            key: server::new_secret(),
        }
    }
}

/// Where the clients run and what they share.
struct ClientSide {
    control: SocketAddr,
    address: Ipv4Addr,
    delay: Option<(Duration, Duration)>,
    filter: Arc<OutboundFilter>,
    epoch: Instant,
    capture: Option<Arc<Capture>>,
    key: u64,
}

/// Starts every client (together or staggered) and waits for all of them. A client whose
/// turn has not come when the run is interrupted is reported interrupted.
async fn run_clients(
    config: &BlastConfig,
    side: ClientSide,
    stop: watch::Receiver<bool>,
) -> Vec<ClientReport> {
    let clients = config.clients.min(MAX_CLIENTS);
    let accounts = config.accounts.max(1);
    let stagger = match config.start {
        Start::Together => Duration::ZERO,
        Start::Staggered => (config.duration / 2) / clients.max(1),
    };
    let mut tasks = Vec::new();
    for i in 0..clients {
        let params = ClientParams {
            index: i + 1,
            account: i % accounts,
            control: side.control,
            key: side.key,
            rate_bps: config.rate_bps,
            datagram: config.datagram,
            duration: config.duration.min(MAX_DURATION),
            handshake_timeout: config.handshake_timeout,
            max_datagrams: config.max_datagrams.min(MAX_DATAGRAMS_PER_SESSION),
            address: side.address,
            delay: side.delay,
        };
        let filter = Arc::clone(&side.filter);
        let mut stop = stop.clone();
        let capture = side.capture.clone();
        let epoch = side.epoch;
        let wait = stagger * i;
        tasks.push(tokio::spawn(async move {
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = client::stopped(&mut stop) => {
                    return ClientReport::unstarted(&params, ClientOutcome::Interrupted);
                }
            }
            client::run(params, filter, epoch, stop, capture).await
        }));
    }
    let mut reports = Vec::new();
    for task in tasks {
        if let Ok(report) = task.await {
            reports.push(report);
        }
    }
    reports
}

/// What the netns backend adds to a report.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct KernelPath {
    /// The nftables ruleset that was in force in the client namespace.
    pub client_ruleset: String,
    /// The server's inbound ruleset, in force in the server namespace.
    pub server_ruleset: String,
    /// Which mechanism carried each impairment of the WAN path.
    pub mechanisms: Mechanisms,
    pub client_namespace: String,
    pub server_namespace: String,
}

fn assemble(
    config: &BlastConfig,
    backend: &'static str,
    clients: Vec<ClientReport>,
    server: &ServerRecord,
    setup: &Setup,
    interrupted: bool,
) -> (BlastReport, Option<Vec<u8>>) {
    let elapsed = setup.epoch.elapsed();
    let client_rejected = clients.iter().map(|c| c.rejected).sum::<u64>();
    let sessions: Vec<SessionResult> = clients
        .into_iter()
        .map(|c| {
            let seen = c.session.and_then(|id| server.sessions.get(&id));
            session_result(c, seen, config.duration)
        })
        .collect();
    let received_datagrams: u64 = sessions.iter().map(|s| s.received).sum();
    let goodput_bps = sessions.iter().map(|s| s.goodput_bps).sum();
    let verdict = verdict(config, &sessions, &server.foreign_ports);
    let pcap_frames = setup.capture.as_ref().map_or(0, |c| c.frames());
    let pcap = setup.capture.as_ref().map(|c| c.take_bytes());
    let report = BlastReport {
        backend,
        os: config.os.name(),
        sharing: config.rule().describe(),
        clients: config.clients.min(MAX_CLIENTS),
        accounts: config.accounts.max(1),
        rate_bps: config.rate_bps,
        datagram: config.datagram,
        duration_s: config.duration.as_secs_f64(),
        start: config.start,
        sessions,
        verdict,
        received_datagrams,
        elapsed_s: elapsed.as_secs_f64(),
        received_per_second: received_datagrams as f64 / elapsed.as_secs_f64().max(1e-9),
        goodput_bps,
        interrupted,
        rejected: Rejected {
            server: server.rejected,
            clients: client_rejected,
            total: server.rejected + client_rejected,
        },
        pcap_frames,
        kernel: None,
        notes: server
            .foreign_ports
            .iter()
            .map(|port| {
                format!(
                    "port {port} is held by another process on this machine; the emulator \
                     skipped it, as a server would"
                )
            })
            .collect(),
    };
    (report, pcap)
}

/// Runs `config` on its backend; `stop` turning true ends it early (Ctrl-C). Returns the
/// report and, with `pcap_limit`, the capture's bytes.
pub async fn run(
    config: &BlastConfig,
    stop: watch::Receiver<bool>,
) -> Result<(BlastReport, Option<Vec<u8>>), BlastError> {
    raise_descriptor_limit();
    match config.backend {
        Backend::Loopback => run_loopback(config, stop).await,
        Backend::Netns(path) => run_netns(config, path, stop).await,
    }
}

async fn run_loopback(
    config: &BlastConfig,
    stop: watch::Receiver<bool>,
) -> Result<(BlastReport, Option<Vec<u8>>), BlastError> {
    let setup = Setup::new(config);
    let options = ServerOptions {
        max_datagrams: config.max_datagrams,
        ..ServerOptions::new(Ipv4Addr::LOCALHOST, setup.key)
    };
    let server = Server::start(
        setup.allocator.clone(),
        config.control_port,
        setup.epoch,
        options,
        setup.capture.clone(),
    )
    .await?;
    let filter = Arc::new(OutboundFilter::new(config.allowed));
    let side = ClientSide {
        control: server.control_addr(),
        address: client::CLIENT_HOST,
        delay: None,
        filter,
        epoch: setup.epoch,
        capture: setup.capture.clone(),
        key: setup.key,
    };
    let clients = run_clients(config, side, stop.clone()).await;
    let seen = server.shutdown().await;
    let interrupted = *stop.borrow();
    Ok(assemble(
        config,
        "loopback",
        clients,
        &seen,
        &setup,
        interrupted,
    ))
}

/// The process's descriptor limits (soft, hard), if the system says.
pub(crate) fn descriptor_limits() -> Option<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we pass.
    let known = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    known.then_some((limit.rlim_cur, limit.rlim_max))
}

/// Every session holds a few descriptors (control connection, UDP sockets, the server's
/// side): the soft limit goes up to the hard one, as a server would be configured, so that
/// a large run is not cut short by a shell's default of 1024.
fn raise_descriptor_limit() {
    if let Some((soft, hard)) = descriptor_limits()
        && soft < hard
    {
        let raised = libc::rlimit {
            rlim_cur: hard,
            rlim_max: hard,
        };
        // SAFETY: setrlimit only reads the struct we pass.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) };
    }
}

/// A host's firewall for this run as `udprange rules --syntax nftables --side SIDE
/// --default-drop --peer OTHER-HOST` prints it: the same code path.
pub fn ruleset(config: &BlastConfig, control_port: Port, side: Side) -> Result<String, BlastError> {
    let udp = config
        .allowed
        .or_else(|| PortRange::new(config.base_port, config.max_port).ok())
        .ok_or_else(|| BlastError::Server("no UDP range to allow".into()))?;
    let (peer, role) = match side {
        Side::Client => (netns::SERVER_ADDR, "client firewall, outbound to"),
        Side::Server => (netns::CLIENT_ADDR, "server firewall, inbound from"),
    };
    let openings = Requirements::new(control_port, udp, false).openings(side);
    let mut set = RuleSet::new(side, openings);
    set.peer = Some(Peer::host(IpAddr::V4(peer)));
    set.default_drop = true;
    set.header = vec![format!(
        "udprange blast --backend netns: {role} {peer}, UDP {udp}"
    )];
    rules::render(&set, Syntax::Nftables).map_err(|e| BlastError::Server(e.to_string()))
}

/// The control ("SSH") port inside the server namespace when none is asked for.
const NETNS_CONTROL_PORT: Port = 22;

async fn run_netns(
    config: &BlastConfig,
    path: WanPath,
    stop: watch::Receiver<bool>,
) -> Result<(BlastReport, Option<Vec<u8>>), BlastError> {
    netns::check_requirements()?;
    let notes = netns::remove_leftovers();
    let mut hosts = TestHosts::create()?;
    let control_port = match config.control_port {
        0 => NETNS_CONTROL_PORT,
        port => port,
    };
    let client_ruleset = ruleset(config, control_port, Side::Client)?;
    hosts.load_rules(&hosts.client_ns, &client_ruleset)?;
    let server_ruleset = ruleset(config, control_port, Side::Server)?;
    hosts.load_rules(&hosts.server_ns, &server_ruleset)?;
    let emulator_delay = hosts.impair(&path)?;
    let setup = Setup::new(config);

    // The emulator: a thread in the server namespace with a runtime of its own.
    let (ready, ready_rx) = tokio::sync::oneshot::channel::<Result<SocketAddr, String>>();
    let (finish, finished) = tokio::sync::oneshot::channel::<()>();
    let server_ns = hosts.server_ns.clone();
    let options = ServerOptions {
        max_datagrams: config.max_datagrams,
        delay: emulator_delay,
        ..ServerOptions::new(netns::SERVER_ADDR, setup.key)
    };
    let (allocator, epoch, capture) = (setup.allocator.clone(), setup.epoch, setup.capture.clone());
    let server_thread = std::thread::spawn(move || -> ServerRecord {
        let fail = |ready: tokio::sync::oneshot::Sender<_>, e: String| {
            let _ = ready.send(Err(e));
            ServerRecord::default()
        };
        if let Err(e) = netns::enter(&server_ns) {
            return fail(ready, e.to_string());
        }
        let runtime = match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
        {
            Ok(r) => r,
            Err(e) => return fail(ready, e.to_string()),
        };
        runtime.block_on(async move {
            match Server::start(allocator, control_port, epoch, options, capture).await {
                Ok(server) => {
                    let _ = ready.send(Ok(server.control_addr()));
                    let _ = finished.await;
                    server.shutdown().await
                }
                Err(e) => fail(ready, e.to_string()),
            }
        })
    });
    let control = match ready_rx.await {
        Ok(Ok(addr)) => addr,
        Ok(Err(e)) => return Err(BlastError::Server(e)),
        Err(_) => return Err(BlastError::Server("the emulator thread ended".into())),
    };

    // The clients: a thread in the client namespace; the kernel's ruleset filters them.
    let client_ns = hosts.client_ns.clone();
    let client_config = config.clone();
    let side = ClientSide {
        control,
        address: netns::CLIENT_ADDR,
        delay: emulator_delay,
        filter: Arc::new(OutboundFilter::new(None)),
        epoch: setup.epoch,
        capture: setup.capture.clone(),
        key: setup.key,
    };
    let client_stop = stop.clone();
    let clients = tokio::task::spawn_blocking(move || -> Result<Vec<ClientReport>, String> {
        netns::enter(&client_ns).map_err(|e| e.to_string())?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        Ok(runtime.block_on(run_clients(&client_config, side, client_stop)))
    })
    .await
    .map_err(|e| BlastError::Server(e.to_string()))
    .and_then(|r| r.map_err(BlastError::Server));
    let _ = finish.send(());
    let seen = tokio::task::spawn_blocking(move || server_thread.join().unwrap_or_default())
        .await
        .unwrap_or_default();
    let clients = clients?;
    let interrupted = *stop.borrow();
    let (mut report, pcap) = assemble(config, "netns", clients, &seen, &setup, interrupted);
    report.kernel = Some(KernelPath {
        client_ruleset,
        server_ruleset,
        mechanisms: hosts.mechanisms.clone(),
        client_namespace: hosts.client_ns.clone(),
        server_namespace: hosts.server_ns.clone(),
    });
    report.notes.extend(notes);
    drop(hosts);
    Ok((report, pcap))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(id: u32, port: Option<Port>, outcome: Outcome) -> SessionResult {
        SessionResult {
            id,
            session: port.map(|_| id),
            account: id,
            port,
            outcome,
            error: None,
            goodput_bps: 0.0,
            sent: 0,
            received: 0,
            lost: 0,
            retransmitted: 0,
            filtered: 0,
            duplicates: 0,
            rejected: 0,
            handshake_ms: None,
            latency_us: None,
        }
    }

    fn config() -> BlastConfig {
        BlastConfig {
            allowed: PortRange::new(33001, 33002).ok(),
            ..BlastConfig::seed_example()
        }
    }

    #[test]
    fn the_required_range_is_the_models_for_this_load() {
        let twelve = |os| BlastConfig {
            os,
            clients: 12,
            accounts: 12,
            ..BlastConfig::seed_example()
        };
        let range = |c: &BlastConfig| c.required_range().map(|r| r.to_string());
        assert_eq!(range(&twelve(ServerOs::Windows)).unwrap(), "33001-33012");
        assert_eq!(range(&twelve(ServerOs::Linux)).unwrap(), "33001");
        let three_accounts = BlastConfig {
            accounts: 3,
            ..twelve(ServerOs::Macos)
        };
        assert_eq!(range(&three_accounts).unwrap(), "33001-33003");
        let occupied = BlastConfig {
            occupied: [33004].into(),
            ..twelve(ServerOs::Windows)
        };
        assert_eq!(range(&occupied).unwrap(), "33001-33013");
        let capped = BlastConfig {
            max_port: 33011,
            ..twelve(ServerOs::Windows)
        };
        assert_eq!(range(&capped), None);
    }

    #[test]
    fn only_blocked_or_refused_sessions_make_a_range_insufficient() {
        let ok = session(1, Some(33001), Outcome::Ok);
        let overloaded = [
            ok.clone(),
            session(2, None, Outcome::Failed),
            session(3, Some(33002), Outcome::Failed),
            session(4, None, Outcome::Interrupted),
        ];
        let v = verdict(&config(), &overloaded, &[]);
        assert_eq!(v.status, Status::Inconclusive);
        assert!(!v.sufficient);
        assert_eq!((v.failed, v.other, v.interrupted, v.blocked), (3, 2, 1, 0));
        assert!(
            v.summary.starts_with("inconclusive: 3 of 4"),
            "{}",
            v.summary
        );
        assert!(!v.summary.contains("smallest sufficient"), "{}", v.summary);

        let mut blocked = overloaded.to_vec();
        blocked.push(session(5, Some(33003), Outcome::Blocked));
        let v = verdict(&config(), &blocked, &[]);
        assert_eq!(v.status, Status::Insufficient);
        assert!(v.summary.contains("1 blocked (error 15)"), "{}", v.summary);

        let v = verdict(&config(), &blocked, &[33002]);
        assert_eq!(v.status, Status::Inconclusive);
        assert!(
            v.summary
                .contains("port(s) 33002 are held by another process"),
            "{}",
            v.summary
        );

        let v = verdict(&config(), &[ok], &[]);
        assert_eq!(v.status, Status::Sufficient);
        assert_eq!(v.summary, "range 33001-33002 is sufficient");
    }
}
