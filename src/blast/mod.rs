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
pub mod probe;
pub mod rate;
pub mod receiver;
pub mod replay;
pub mod requests;
pub mod sender;
pub mod server;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;

use crate::firewall::model::OutboundFilter;
use crate::firewall::rules::{self, RuleSet, Syntax};
use crate::firewall::ruleset::{RulesetError, UserRuleset};
use crate::firewall::{Peer, Requirements, Side};
use crate::model::{AllocatorConfig, Port, PortRange, SharingRule};
pub use crate::scenario::Start;
use crate::scenario::{Scenario, ServerConfig, Stop};
use crate::sim::{Counts, Decision};
use crate::wire::control::LatencyUs;
use crate::workload::{Load, SimTime};
use capture::Capture;
use client::ClientOutcome;
use delay::DelayStats;
use netns::{Host, Mechanisms, TestHosts, WanPath};
pub use replay::{Board, Schedule};
use replay::{ClientSide, Driver, Row};
use server::{Server, ServerOptions, ServerRecord};
use std::sync::atomic::Ordering;

pub use crate::limits::{MAX_CLIENTS, MAX_DATAGRAMS_PER_SESSION, MAX_DURATION};

/// A blast run.
#[derive(Debug, Clone, PartialEq)]
pub struct BlastConfig {
    /// The transfer server: OS rule, base port, cap, occupied ports.
    pub server: ServerConfig,
    /// The client firewall's outbound UDP range; `None` = everything passes.
    pub allowed: Option<PortRange>,
    /// The scenario whose `[workload]` is replayed (its client groups included); `None`: a
    /// burst of `clients` identical transfers, started as `start` says.
    pub replay: Option<Box<Scenario>>,
    pub clients: u32,
    pub accounts: u32,
    /// Target rate per session in bit/s; 0 = as fast as the socket takes it.
    pub rate_bps: u64,
    /// Datagram size in bytes: the IP packet, headers included.
    pub datagram: u16,
    /// How long each transfer of a burst sends.
    pub duration: Duration,
    pub start: Start,
    /// TCP control ("SSH") port on 127.0.0.1; 0 picks a free one.
    pub control_port: Port,
    /// In model time: compressed by the time scale like every other span of the load.
    pub handshake_timeout: Duration,
    pub max_datagrams: u64,
    /// Keep at most this many frames for `--pcap`; 0 = no capture.
    pub pcap_limit: u64,
    pub backend: Backend,
    /// Model seconds per wall second; `None`: 1 for a burst, and for a replay the fastest
    /// that fits [`REPLAY_BUDGET`] within the resolution.
    pub time_scale: Option<f64>,
    /// At most this many sessions of a replay (whole transfers).
    pub sessions: Option<u64>,
    /// Interval reports every so often.
    pub interval: Option<Duration>,
    /// netns only: the user's own ruleset and where it goes; it replaces udprange's rules,
    /// and the range under test is whatever it passes.
    pub ruleset: Option<RulesetAt>,
    /// How sessions choose their rate: `rate_bps` is the ceiling, `min_rate_bps` the floor.
    pub policy: rate::Policy,
    pub min_rate_bps: u64,
    /// Sized transfers delivered completely; with `Bytes`, `duration` is each one's
    /// deadline.
    pub size: Option<Size>,
}

pub use crate::workload::spec::TransferSize as Size;

impl Size {
    /// A sized transfer's deadline: four times what `bytes` take at `rate_bps`, plus 5 s,
    /// at most a run's longest ([`MAX_DURATION`]); a minute when unpaced.
    pub fn deadline(bytes: u64, rate_bps: u64) -> Duration {
        if rate_bps == 0 {
            return Duration::from_secs(60).min(MAX_DURATION);
        }
        let at_rate = bytes as f64 * 8.0 / rate_bps as f64;
        Duration::from_secs_f64(at_rate * 4.0 + 5.0).min(MAX_DURATION)
    }
}

/// A user's ruleset and the host that carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulesetAt {
    pub ruleset: UserRuleset,
    pub at: Host,
}

/// Where the packets flow.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Backend {
    /// 127.0.0.1, the client firewall modelled in process.
    #[default]
    Loopback,
    /// Two network namespaces, a veth pair, real nftables, and this WAN path.
    Netns(WanPath),
    /// Only the clients run here; the server is `udprange serve` at `control`, and the path
    /// between the two hosts — the user's own network and firewalls — is under test.
    Remote { control: SocketAddr, key: u64 },
}

/// The wall time a replay aims for when no time scale is given.
pub const REPLAY_BUDGET: Duration = Duration::from_secs(20);
/// Sessions a replay runs at most when `--sessions` is not given.
pub const DEFAULT_REPLAY_SESSIONS: u64 = 1000;

impl BlastConfig {
    pub fn rule(&self) -> SharingRule {
        self.server.rule()
    }

    /// The run a scenario describes: its server, its client range, and its load — the
    /// `[workload]` replayed, or a burst when `[traffic]` sets `start` or `clients`.
    /// Burst clients belong to the workload's accounts round-robin where accounts decide
    /// ports (macOS, FreeBSD); elsewhere every client is its own account.
    pub fn from_scenario(scenario: &Scenario) -> Self {
        let traffic = &scenario.traffic;
        let accounts = match scenario.rule() {
            SharingRule::PerAccount => {
                u32::try_from(scenario.workload.accounts).unwrap_or(u32::MAX)
            }
            _ => traffic.clients,
        };
        Self {
            server: scenario.server.clone(),
            allowed: scenario.client.allowed,
            replay: traffic.start.is_none().then(|| Box::new(scenario.clone())),
            clients: traffic.clients,
            accounts,
            rate_bps: traffic.rate.bits_per_second() as u64,
            datagram: traffic.datagram,
            duration: wall_clock(traffic.duration, MAX_DURATION),
            start: traffic.start.unwrap_or(Start::Together),
            control_port: traffic.control_port,
            handshake_timeout: wall_clock(
                scenario.workload.handshake_timeout,
                crate::limits::MAX_HANDSHAKE_TIMEOUT,
            ),
            max_datagrams: MAX_DATAGRAMS_PER_SESSION,
            pcap_limit: 0,
            backend: Backend::Loopback,
            time_scale: None,
            sessions: None,
            interval: None,
            ruleset: None,
            policy: traffic.policy,
            min_rate_bps: traffic.min_rate.map_or(0, |r| r.bits_per_second() as u64),
            size: traffic.size,
        }
    }

    /// The server's allocator for this run: its rule, base port, cap and occupied ports.
    pub fn allocator(&self) -> AllocatorConfig {
        self.server.allocator()
    }

    /// The seed's example: windows, 10 concurrent transfers, 33001-33010 allowed.
    pub fn seed_example() -> Self {
        Self::from_scenario(&Scenario::seed_example())
    }

    /// How long a burst's session holds its port in the model: its sending time; for a
    /// sized transfer at a rate, what its datagrams take at that rate (its deadline,
    /// `duration`, bounds the real transfer, and the replay waits for the real end before
    /// the model's clock goes on, so nothing overtakes it).
    pub fn holding(&self) -> Duration {
        match self.size {
            Some(Size::Bytes(bytes)) if self.rate_bps > 0 => {
                let data = crate::wire::fasp::data_bytes(self.datagram).max(1) as u64;
                let bits = bytes.div_ceil(data).max(1) as f64 * f64::from(self.datagram) * 8.0;
                Duration::from_secs_f64(bits / self.rate_bps as f64).min(self.duration)
            }
            _ => self.duration,
        }
    }

    /// The shortest scaled handshake timeout this run can resolve: [`replay::RESOLUTION`]
    /// plus two round trips of the WAN delay.
    pub fn resolution(&self) -> Duration {
        let wan = match self.backend {
            Backend::Netns(path) => {
                (path.delay.unwrap_or_default() + path.jitter.unwrap_or_default()) * 4
            }
            Backend::Loopback | Backend::Remote { .. } => Duration::ZERO,
        };
        replay::RESOLUTION + wan
    }

    /// What the engine runs, at which time scale; an error when the time scale asked for
    /// is finer than the run can resolve, or the load is one blast cannot replay.
    pub fn schedule(&self) -> Result<Schedule, BlastError> {
        let base = self
            .replay
            .as_deref()
            .cloned()
            .unwrap_or_else(Scenario::seed_example);
        let mut scenario = base;
        scenario.server = self.server.clone();
        scenario.client.allowed = self.allowed;
        scenario.workload.handshake_timeout =
            crate::units::Duration::from_secs_f64(self.handshake_timeout.as_secs_f64());
        let handshake = self.handshake_timeout.as_secs_f64();
        let finest = handshake / self.resolution().as_secs_f64();
        if let Some(scale) = self.time_scale
            && scale > 1.0
            && scale > finest
        {
            return Err(BlastError::TimeScale(format!(
                "{scale} would make the handshake timeout ({handshake}s of the model) {:.0} ms \
                 on the wall clock, shorter than the {} ms this run needs to prove a path \
                 (control handshake, first datagram, its acknowledgement); at most {:.1} here",
                handshake / scale * 1e3,
                self.resolution().as_millis(),
                finest.max(1.0)
            )));
        }
        if self.replay.is_none() {
            let clients = self.clients.min(MAX_CLIENTS);
            scenario.client.groups.clear();
            scenario.workload.accounts = u64::from(self.accounts.max(1));
            let holding = SimTime::from_secs_f64(self.holding().as_secs_f64());
            let load = match self.start {
                Start::Together => Load::Together { clients, holding },
                Start::Staggered => Load::Staggered {
                    clients,
                    holding,
                    spacing: SimTime::from_nanos(
                        (self.holding() / 2).as_nanos() as u64 / u64::from(clients.max(1)),
                    ),
                },
            };
            return Ok(Schedule {
                scenario,
                load,
                scale: self.time_scale.unwrap_or(1.0),
                capped: None,
            });
        }
        if scenario.server.linger.is_some() {
            return Err(BlastError::TimeScale(
                "server.linger: the emulator does not keep ports after a session yet; \
                 `simulate` models it, `blast` cannot replay it"
                    .into(),
            ));
        }
        // Replication 0 from its first arrival: the warm-up is replayed and counted.
        scenario.workload.warmup = None;
        let per_transfer = u64::from(scenario.workload.sessions_per_transfer.max(1));
        let cap = self
            .sessions
            .unwrap_or(DEFAULT_REPLAY_SESSIONS)
            .min(crate::limits::MAX_REPLAY_SESSIONS);
        let transfers = (cap / per_transfer).max(1);
        let more = match scenario.workload.stop {
            Stop::Sessions(n) => n > transfers,
            Stop::Horizon(_) => true,
        };
        scenario.workload.stop = match scenario.workload.stop {
            Stop::Sessions(n) => Stop::Sessions(n.min(transfers)),
            horizon => horizon,
        };
        let mut schedule = Schedule {
            scenario,
            load: Load::Scenario,
            scale: 1.0,
            capped: None,
        };
        let (_, attempts) = schedule.predict();
        // Transfer start times in start order; the sessions cap applies to a horizon too.
        let mut starts: Vec<SimTime> = Vec::new();
        for a in attempts.iter().filter(|a| a.attempt == 1) {
            if starts.len() as u64 == a.transfer {
                starts.push(a.at);
            }
        }
        // When the first n transfers are all over: the latest end of any of their attempts
        // (the run lasts until then, not until the last start).
        let mut ends = vec![0.0f64; starts.len()];
        for a in &attempts {
            if let Some(end) = ends.get_mut(a.transfer as usize) {
                *end = end.max(a.at.as_secs_f64() + a.holding.as_secs_f64());
            }
        }
        let over_by: Vec<f64> = ends
            .iter()
            .scan(0.0f64, |latest, &end| {
                *latest = latest.max(end);
                Some(*latest)
            })
            .collect();
        // A trace may hold fewer; the cap cut only when it was reached.
        let capped_by_sessions = more && starts.len() as u64 >= transfers;
        starts.truncate(transfers as usize);
        let span = over_by
            .get(starts.len().saturating_sub(1))
            .copied()
            .unwrap_or(0.0);
        let scale = match self.time_scale {
            Some(scale) => scale,
            None => (span / REPLAY_BUDGET.as_secs_f64()).clamp(1.0, finest.max(1.0)),
        };
        let within = scale * REPLAY_BUDGET.as_secs_f64();
        let keep = if self.time_scale.is_none() {
            over_by
                .iter()
                .take(starts.len())
                .take_while(|&&end| end <= within)
                .count()
        } else {
            starts.len()
        };
        schedule.scenario.workload.stop = Stop::Sessions(keep.max(1) as u64);
        schedule.scale = scale;
        schedule.capped = if keep < starts.len() {
            Some(format!(
                "the first {keep} of {}{} transfers: what fits the {} s wall-time budget at \
                 {}x, the finest time scale this run resolves; --time-scale and --sessions \
                 change this",
                starts.len(),
                if capped_by_sessions { "+" } else { "" },
                REPLAY_BUDGET.as_secs(),
                (scale * 100.0).round() / 100.0
            ))
        } else if capped_by_sessions {
            Some(format!(
                "the first {} transfers ({}); --sessions changes this",
                starts.len(),
                if self.sessions.is_some() {
                    "--sessions".to_string()
                } else {
                    format!("at most {DEFAULT_REPLAY_SESSIONS} sessions by default")
                }
            ))
        } else {
            None
        };
        Ok(schedule)
    }
}

/// A scenario's duration on the wall clock, at most `limit`. Validation already keeps
/// scenario values within the limits; this keeps a hand-built `Scenario` from panicking.
fn wall_clock(duration: crate::units::Duration, limit: Duration) -> Duration {
    Duration::try_from_secs_f64(duration.as_secs_f64()).map_or(limit, |d| d.min(limit))
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Latency {
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
}

/// How a session ended, as reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
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

/// What the model decided for a session, as the report spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Predicted {
    pub outcome: Outcome,
    pub port: Option<Port>,
}

impl From<Decision> for Predicted {
    fn from(decision: Decision) -> Self {
        let outcome = match decision {
            Decision::Passed { .. } => Outcome::Ok,
            Decision::Blocked { .. } => Outcome::Blocked,
            Decision::Refused => Outcome::Refused,
        };
        Self {
            outcome,
            port: decision.port(),
        }
    }
}

/// One session (one attempt of it) in the report.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct SessionResult {
    /// The attempt's number in the run, from 1, in start order.
    pub id: u32,
    /// The session id the server assigned, once it granted one.
    pub session: Option<u32>,
    /// The transfer it belongs to, from 1 (a multi-session transfer has several sessions).
    pub transfer: u64,
    /// 1 for a first attempt, 2 for the first retry…
    pub attempt: u32,
    pub account: u32,
    /// The client group (`default`: the clients on the range under test).
    pub group: String,
    /// When the model starts it, and how long it holds its port when it passes (model
    /// seconds; divide by the time scale for the wall clock).
    pub start_s: f64,
    pub holding_s: f64,
    pub port: Option<Port>,
    pub outcome: Outcome,
    /// What the model says for it.
    pub predicted: Predicted,
    /// Outcome and port as predicted.
    pub agree: bool,
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
    /// HELLO to PORT plus first datagram to its acknowledgement: two round trips.
    pub handshake_ms: Option<f64>,
    pub latency_us: Option<Latency>,
    /// A delay-based policy's pacing rate over time: `[seconds since sending began, bit/s]`
    /// every 100 ms (empty for `fixed`, whose rate is the target throughout).
    pub rate_bps: Vec<[f64; 2]>,
    /// A delay-based policy's queuing-delay estimates.
    pub queuing_delay_us: Option<Latency>,
    /// A sized transfer: whether the receiver got every datagram by the deadline, and when
    /// (seconds since sending began); `None` for a session that sends for a time.
    pub complete: Option<bool>,
    pub completion_s: Option<f64>,
    /// A sized transfer: when every datagram had left once (seconds since sending began);
    /// the rest of `completion_s` is the tail spent recovering the last losses.
    pub sent_once_s: Option<f64>,
    /// Payload bytes the receiver got (distinct datagrams).
    pub bytes: u64,
}

/// Sessions whose outcome and port were what the model predicted, and the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, schemars::JsonSchema)]
pub struct Agreement {
    pub agree: u32,
    pub disagree: u32,
}

/// A session the packets and the model disagree on, and why.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Disagreement {
    pub id: u32,
    pub predicted: Predicted,
    pub outcome: Outcome,
    pub port: Option<Port>,
    pub cause: String,
}

/// One interval report (`--interval`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Interval {
    /// Wall seconds from the start of the run to the end of the interval.
    pub t: f64,
    /// Datagrams sent per second over the interval, all sessions.
    pub datagrams_per_second: f64,
    /// Payload acknowledged by the receivers, bit/s over the interval.
    pub goodput_bps: f64,
    pub active: u64,
    pub ok: u64,
    pub failed: u64,
}

/// What a run concluded about the range under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
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
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Verdict {
    pub status: Status,
    pub sufficient: bool,
    pub allowed: Option<PortRange>,
    /// The smallest range with which the model passes every session of this load, found as
    /// `simulate` finds it (one run per candidate size on the same random stream); `None`
    /// when the server's cap refuses sessions whatever the client allows.
    /// In JSON `udp_range`, as `plan` and `simulate` name the range to open.
    #[serde(rename = "udp_range")]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, schemars::JsonSchema)]
pub struct Rejected {
    /// At the server: unknown sessions, wrong tokens, strangers, impossible claims, HELLOs
    /// without the run's key, control connections that never spoke.
    pub server: u64,
    /// At the clients' sockets: anything but their own server's replies.
    pub clients: u64,
    pub total: u64,
}

/// What a run is about to do; printed before the first packet.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Header {
    pub backend: &'static str,
    pub os: &'static str,
    /// The sharing rule's code (`per-session`, `per-account`, `shared`) and in words.
    pub sharing: &'static str,
    pub sharing_description: &'static str,
    /// The scenario whose workload is replayed, when one is.
    pub scenario: Option<String>,
    /// `workload` (the scenario's, replayed), `together` or `staggered`.
    pub load: &'static str,
    /// What the load is, in words.
    pub load_description: String,
    /// Transfers and sessions (attempts included) the model starts.
    pub transfers: u64,
    pub planned_sessions: u64,
    /// Model seconds per wall second.
    pub time_scale: f64,
    /// Model seconds from the first arrival to the last session's end.
    pub model_s: f64,
    /// The same on the wall clock: how long the run should take.
    pub expected_s: f64,
    /// The shortest scaled handshake timeout the run can resolve.
    pub resolution_ms: f64,
    /// Sessions capped (`--sessions`, or the wall-time budget of a replay), in words.
    pub capped: Option<String>,
    pub rate_bps: u64,
    pub datagram: u16,
    pub allowed: Option<PortRange>,
    /// Client groups behind ranges of their own: name and range.
    pub groups: Vec<GroupRange>,
    /// The user's ruleset under test (netns `--ruleset`), in words; it replaces `allowed`.
    pub ruleset: Option<String>,
    /// How sessions choose their rate (`rate_bps` is the ceiling unless `fixed`).
    pub policy: rate::Policy,
    pub min_rate_bps: u64,
}

/// A client group and its outbound range.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct GroupRange {
    pub name: String,
    pub allowed: PortRange,
}

/// Everything a run measured.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct BlastReport {
    #[serde(flatten)]
    pub header: Header,
    pub sessions: Vec<SessionResult>,
    /// What the packets showed, counted as `simulate` counts.
    pub counts: Counts,
    /// What the model predicted for the same sessions.
    pub predicted_counts: Counts,
    pub agreement: Agreement,
    pub disagreements: Vec<Disagreement>,
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
    /// `--interval` reports.
    pub intervals: Vec<Interval>,
    /// Things the run did along the way (leftovers removed, ports skipped).
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
    /// The load cannot be run as asked (a time scale finer than the run resolves…).
    #[error("{0}")]
    TimeScale(String),
    /// The user's ruleset does not load.
    #[error(transparent)]
    Ruleset(#[from] RulesetError),
}

/// What the model says before any packet: the schedule, the header, the required range.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub schedule: Schedule,
    pub header: Header,
    pub required: Option<PortRange>,
    /// Every attempt the model makes: what the run will do, session by session.
    pub planned: Vec<crate::sim::Attempt>,
    /// Most sessions open at once.
    pub concurrent: u64,
}

/// Plans a run: the schedule, what it will take, and the range its load needs.
pub fn prepare(config: &BlastConfig) -> Result<Prepared, BlastError> {
    if let Backend::Netns(_) = config.backend {
        netns::check_requirements()?;
    }
    let schedule = config.schedule()?;
    let (record, attempts) = schedule.predict();
    let transfers = attempts.iter().map(|a| a.transfer + 1).max().unwrap_or(0);
    let model_s = record.counts.duration_s;
    let expected = model_s / schedule.scale;
    if expected > MAX_DURATION.as_secs_f64() {
        return Err(BlastError::TimeScale(format!(
            "this load would take {expected:.0} s on the wall clock ({model_s:.0} s of the \
             model at {}x), more than the {} s a run may take; raise --time-scale or lower \
             --sessions",
            schedule.scale,
            MAX_DURATION.as_secs()
        )));
    }
    let handshake =
        SimTime::from_secs_f64(schedule.scenario.workload.handshake_timeout.as_secs_f64());
    let concurrent = most_at_once(&attempts, handshake);
    if concurrent > u64::from(MAX_CLIENTS) {
        return Err(BlastError::TimeScale(format!(
            "this load has {concurrent} sessions open at once, more than the {MAX_CLIENTS} a \
             run may hold; lower --sessions or use a scenario with less concurrency"
        )));
    }
    let scenario = &schedule.scenario;
    let (load, load_description) = match schedule.load {
        Load::Scenario => (
            "workload",
            format!(
                "the {} workload of '{}', replication 0 (seed {}), from its first arrival",
                scenario.workload.arrivals.name(),
                scenario.name,
                scenario.seed
            ),
        ),
        Load::Together { clients, .. } => (
            "together",
            format!(
                "{clients} transfers at once over {} accounts, each {}",
                config.accounts.max(1),
                burst_transfer(config)
            ),
        ),
        Load::Staggered { clients, .. } => (
            "staggered",
            format!(
                "{clients} transfers over {} accounts, started evenly over {} s, each {}",
                config.accounts.max(1),
                crate::units::trim(config.holding().as_secs_f64() / 2.0),
                burst_transfer(config)
            ),
        ),
    };
    let capped = schedule.capped.clone();
    let header = Header {
        backend: match config.backend {
            Backend::Loopback => "loopback",
            Backend::Netns(_) => "netns",
            Backend::Remote { .. } => "remote",
        },
        os: config.server.os.name(),
        sharing: config.rule().code(),
        sharing_description: config.rule().describe(),
        scenario: config.replay.as_ref().map(|s| s.name.clone()),
        load,
        load_description,
        transfers,
        planned_sessions: attempts.len() as u64,
        time_scale: schedule.scale,
        model_s,
        expected_s: model_s / schedule.scale,
        resolution_ms: config.resolution().as_secs_f64() * 1e3,
        capped,
        rate_bps: config.rate_bps,
        datagram: config.datagram,
        allowed: config.allowed,
        groups: scenario
            .client
            .groups
            .iter()
            .map(|g| GroupRange {
                name: g.name.clone(),
                allowed: g.allowed,
            })
            .collect(),
        policy: config.policy,
        min_rate_bps: config.min_rate_bps,
        ruleset: config.ruleset.as_ref().map(|r| {
            format!(
                "your ruleset {} ({}) at the {} ({} hook)",
                r.ruleset.path,
                r.ruleset.format.name(),
                r.at.name(),
                r.at.hook()
            )
        }),
    };
    let required = replay::smallest_sufficient(&schedule);
    Ok(Prepared {
        schedule,
        header,
        required,
        planned: attempts,
        concurrent,
    })
}

/// The most sessions the model has open at once: each attempt holds its port from its
/// start for its holding time (passed) or the handshake timeout (blocked).
fn most_at_once(attempts: &[crate::sim::Attempt], handshake: SimTime) -> u64 {
    let mut edges: Vec<(SimTime, i8)> = Vec::with_capacity(attempts.len() * 2);
    for a in attempts {
        let held = match a.decision {
            Decision::Passed { .. } => a.holding,
            Decision::Blocked { .. } => handshake,
            Decision::Refused => continue,
        };
        edges.push((a.at, 1));
        edges.push((a.at.after(held), -1));
    }
    // Ends before starts at one instant, as the engine orders them.
    edges.sort_unstable();
    let (mut open, mut most) = (0i64, 0i64);
    for (_, step) in edges {
        open += i64::from(step);
        most = most.max(open);
    }
    most as u64
}

fn latency(latency: LatencyUs) -> Latency {
    Latency {
        p50: u64::from(latency.p50),
        p99: u64::from(latency.p99),
        max: u64::from(latency.max),
    }
}

fn group_name(scenario: &Scenario, group: usize) -> String {
    match group {
        0 => "default".to_string(),
        g => scenario
            .client
            .groups
            .get(g - 1)
            .map_or_else(|| format!("group {g}"), |g| g.name.clone()),
    }
}

/// A report row from the model's attempt and the client's report: only what crossed the
/// wire (PORT, acknowledgements, FINAL) and what the client counted itself.
fn session_result(row: &Row, scenario: &Scenario, datagram: u16) -> SessionResult {
    let client = &row.report;
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
    let final_frame = client.final_frame;
    let received = final_frame.map_or_else(
        || client.final_stats.map_or(0, |s| s.received),
        |f| f.received,
    );
    let payload = crate::wire::fasp::data_bytes(datagram) as u64;
    // A sized transfer's goodput is over its completion time; otherwise over its sending.
    let span = client.completed.unwrap_or(client.sending);
    let goodput_bps = if span.is_zero() {
        0.0
    } else {
        (received * payload) as f64 * 8.0 / span.as_secs_f64()
    };
    let predicted = Predicted::from(row.attempt.decision);
    SessionResult {
        id: client.index,
        session: client.session,
        transfer: row.attempt.transfer + 1,
        attempt: row.attempt.attempt,
        account: client.account,
        group: group_name(scenario, row.attempt.group),
        start_s: row.attempt.at.as_secs_f64(),
        holding_s: row.attempt.holding.as_secs_f64(),
        port: client.port,
        outcome,
        predicted,
        agree: predicted.outcome == outcome && predicted.port == client.port,
        error,
        goodput_bps,
        sent: client.sent,
        received,
        lost: client.sent.saturating_sub(received),
        retransmitted: client.retransmitted,
        filtered: client.filtered,
        duplicates: final_frame.map_or(0, |f| f.duplicates),
        rejected: client.rejected,
        handshake_ms: client.handshake.map(|d| d.as_secs_f64() * 1e3),
        latency_us: final_frame.and_then(|f| f.latency).map(latency),
        rate_bps: if client.queuing_us.is_some() {
            client.rates.iter().map(|&(t, r)| [t, r as f64]).collect()
        } else {
            Vec::new()
        },
        complete: client.total.map(|_| client.completed.is_some()),
        completion_s: client.completed.map(|d| d.as_secs_f64()),
        sent_once_s: client.sent_once.map(|d| d.as_secs_f64()),
        bytes: received * payload,
        queuing_delay_us: client.queuing_us.as_ref().map(|h| Latency {
            p50: h.value_at_quantile(0.5),
            p99: h.value_at_quantile(0.99),
            max: h.max(),
        }),
    }
}

/// Why a session's outcome or port is not what the model predicted.
fn cause(s: &SessionResult, foreign_ports: &[Port], allowed: Option<PortRange>) -> String {
    let p = s.predicted;
    let shown = |port: Option<Port>| port.map_or("none".to_string(), |p| p.to_string());
    if p.port != s.port && s.port.is_some() && p.port.is_some() {
        let skipped: Vec<String> = foreign_ports
            .iter()
            .filter(|&&f| p.port.is_some_and(|m| f <= m.max(s.port.unwrap_or(0))))
            .map(Port::to_string)
            .collect();
        if !skipped.is_empty() {
            return format!(
                "the server handed out port {} where the model hands out {}: port(s) {} are \
                 held by another process on this machine and were skipped",
                shown(s.port),
                shown(p.port),
                skipped.join(", ")
            );
        }
        return format!(
            "the server handed out port {} where the model hands out {}",
            shown(s.port),
            shown(p.port)
        );
    }
    match (p.outcome, s.outcome) {
        (Outcome::Ok, Outcome::Blocked) => format!(
            "the model passes port {} but its datagrams never arrived: something on the path \
             other than the range under test drops them",
            shown(s.port)
        ),
        (Outcome::Blocked, Outcome::Ok) => format!(
            "port {} is outside the range under test ({}), yet the datagrams got through: \
             the firewall passes more than that range",
            shown(s.port),
            allowed.map_or("every port".to_string(), |r| r.to_string())
        ),
        (Outcome::Refused, _) => format!(
            "the model has no free port for it, but the server granted {}",
            shown(s.port)
        ),
        (_, Outcome::Refused) => format!(
            "the server refused it ({}), where the model hands out port {}",
            s.error.as_deref().unwrap_or("refused"),
            shown(p.port)
        ),
        (_, Outcome::Interrupted) => "the run was interrupted".to_string(),
        (_, Outcome::Failed) => format!(
            "not the range's doing: {}",
            s.error.as_deref().unwrap_or("the session failed")
        ),
        _ => "outcome differs".to_string(),
    }
}

/// What the packets showed, counted as `simulate` counts (`counts` in its JSON).
fn counts(sessions: &[SessionResult], outcome: impl Fn(&SessionResult) -> Outcome) -> Counts {
    use std::collections::BTreeMap;
    let mut counts = Counts::default();
    for s in sessions {
        match outcome(s) {
            Outcome::Blocked => counts.blocked += 1,
            Outcome::Refused => counts.refused += 1,
            _ => {}
        }
        if s.attempt > 1 {
            counts.retried += 1;
        }
    }
    // The last attempt of a session decides it, and a transfer fails with any of its
    // sessions. A retry belongs to the transfer's first session still failed: the sessions
    // of one transfer are alike, so which one it is does not change a count.
    let mut sessions_of: BTreeMap<u64, Vec<Outcome>> = BTreeMap::new();
    let mut open: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for s in sessions {
        let list = sessions_of.entry(s.transfer).or_default();
        let slots = open.entry(s.transfer).or_default();
        let o = outcome(s);
        if s.attempt == 1 {
            slots.push(list.len());
            list.push(o);
        } else if let Some(&slot) = slots
            .iter()
            .find(|&&slot| list[slot] != Outcome::Ok && list[slot] != Outcome::Interrupted)
        {
            list[slot] = o;
        }
    }
    for list in sessions_of.values() {
        counts.transfers += 1;
        let failed = list.iter().filter(|&&o| o != Outcome::Ok).count() as u64;
        counts.sessions += list.len() as u64;
        counts.failed += failed;
        counts.ok += list.len() as u64 - failed;
        if failed > 0 {
            counts.transfers_failed += 1;
        }
    }
    counts
}

/// The verdict on `sessions`; `foreign_ports` are ports another process on the test machine
/// held, which the emulator had to skip.
fn verdict(
    allowed: Option<PortRange>,
    required: Option<PortRange>,
    sessions: &[SessionResult],
    foreign_ports: &[Port],
) -> Verdict {
    let count = |outcome| sessions.iter().filter(|s| s.outcome == outcome).count() as u32;
    let (blocked, refused) = (count(Outcome::Blocked), count(Outcome::Refused));
    let (other, interrupted) = (count(Outcome::Failed), count(Outcome::Interrupted));
    let failed = blocked + refused + other + interrupted;
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
        // Client groups behind ranges of their own fail on their own ranges, not this one.
        let mut groups: Vec<&str> = sessions
            .iter()
            .filter(|s| s.outcome == Outcome::Blocked && s.group != "default")
            .map(|s| s.group.as_str())
            .collect();
        groups.sort_unstable();
        groups.dedup();
        let default_blocked = sessions
            .iter()
            .any(|s| s.outcome == Outcome::Blocked && s.group == "default");
        let fix = match (refused, required) {
            (0, _) if !default_blocked && !groups.is_empty() => format!(
                "; every blocked session is in client group(s) {} behind a range of its own, \
                 while range {} passed every session of its own clients",
                groups.join(", "),
                shown(allowed)
            ),
            (0, Some(r)) if covered(r) => format!(
                "; the range covers the {r} this load needs, so something else on the path \
                 drops the UDP data"
            ),
            (0, Some(r)) => format!("; the smallest sufficient range is {r}"),
            (_, Some(r)) if blocked > 0 => format!(
                "; the smallest sufficient range is {r}, and the server ran out of ports, \
                 which no client range fixes"
            ),
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

/// The verdict on a user's ruleset: it names what the ruleset dropped (kernel counters)
/// beside what the load needs.
fn ruleset_verdict(
    verdict: &mut Verdict,
    ruleset: &RulesetReport,
    control_port: Port,
    required: Option<PortRange>,
) {
    let needs = required.map_or_else(
        || "more ports than the server hands out".to_string(),
        |r| r.to_string(),
    );
    let at = format!("your ruleset ({}, at the {})", ruleset.file, ruleset.at);
    let (failed, total) = (verdict.failed, verdict.sessions);
    let dropped = PortRange::list(ruleset.dropped.iter().flat_map(PortRange::ports));
    if !ruleset.dropped.is_empty() {
        verdict.status = Status::Insufficient;
        verdict.summary = format!(
            "insufficient: {at} drops {dropped}; this load needs {needs} ({failed} of {total} \
             sessions failed, {} blocked)",
            verdict.blocked
        );
    } else if ruleset.control_dropped > 0 {
        verdict.status = Status::Insufficient;
        verdict.summary = format!(
            "insufficient: {at} drops the control connection (TCP {control_port}, {} packets); \
             this load needs it and UDP {needs} ({failed} of {total} sessions failed)",
            ruleset.control_dropped
        );
    } else if verdict.status == Status::Sufficient {
        verdict.summary =
            format!("{at} passes every session of this load, which needs UDP {needs}");
    } else {
        verdict.summary = format!(
            "{at} dropped nothing this load sent (it needs UDP {needs}); {}",
            verdict.summary
        );
    }
    verdict.sufficient = verdict.status == Status::Sufficient;
}

/// What the netns backend adds to a report.
#[derive(Debug, Clone, PartialEq, Default, Serialize, schemars::JsonSchema)]
pub struct KernelPath {
    /// The nftables ruleset that was in force in the client namespace.
    pub client_ruleset: String,
    /// The server's inbound ruleset, in force in the server namespace.
    pub server_ruleset: String,
    /// Which mechanism carried each impairment of the WAN path.
    pub mechanisms: Mechanisms,
    pub client_namespace: String,
    pub router_namespace: String,
    pub server_namespace: String,
    /// What the router's delay line did, when the path has a delay.
    pub delay_line: Option<DelayStats>,
    /// Client-to-server packets each host's firewall dropped (kernel counters).
    pub dropped_packets: HostDrops,
    /// The user's ruleset, when one was under test.
    pub ruleset: Option<RulesetReport>,
}

/// Packets dropped on each host, from the kernel's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, schemars::JsonSchema)]
pub struct HostDrops {
    pub client: u64,
    pub router: u64,
    pub server: u64,
}

/// The user's ruleset under test, and what it did to this load.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct RulesetReport {
    pub file: String,
    pub format: crate::firewall::ruleset::Format,
    /// `client`, `router` or `server`.
    pub at: &'static str,
    /// UDP destination ports it dropped datagrams to (kernel counters).
    pub dropped: Vec<PortRange>,
    pub dropped_datagrams: u64,
    /// Packets of the TCP control connection it dropped.
    pub control_dropped: u64,
}

/// What the kernel saw on a netns run: drops per flow, and the user's ruleset's part.
struct KernelDrops {
    flows: Vec<netns::Dropped>,
    ruleset: Option<RulesetReport>,
    control_port: Port,
}

/// What a run's two sides gave back.
struct Outcomes {
    rows: Vec<Row>,
    interrupted: bool,
    server: ServerRecord,
    intervals: Vec<Interval>,
    elapsed: Duration,
    /// netns: what the kernel's counters say each host dropped.
    kernel: Option<KernelDrops>,
}

fn assemble(
    config: &BlastConfig,
    prepared: &Prepared,
    outcomes: Outcomes,
    pcap: Option<(Vec<u8>, u64)>,
) -> (BlastReport, Option<Vec<u8>>) {
    let Outcomes {
        mut rows,
        interrupted,
        server,
        intervals,
        elapsed,
        kernel,
    } = outcomes;
    let scenario = &prepared.schedule.scenario;
    if interrupted {
        // What the run never got to is reported, not dropped.
        let missing = replay::unstarted(&prepared.planned, &rows);
        rows.extend(missing);
    }
    let mut sessions: Vec<SessionResult> = rows
        .iter()
        .map(|row| session_result(row, scenario, config.datagram))
        .collect();
    // On the kernel path, what a session's firewalls dropped is the kernel's count for its
    // flow, wherever on the path it was dropped.
    // Each UDP flow's drops, in all and by the user's ruleset: one pass over the counters,
    // then one lookup per session.
    let mut ruleset_drops: std::collections::HashMap<u32, u64> = std::collections::HashMap::new();
    if let Some(kernel) = &kernel {
        let ruleset_at = kernel.ruleset.as_ref().map(|r| r.at);
        let mut by_flow: std::collections::HashMap<(Ipv4Addr, u16, u16), (u64, u64)> =
            std::collections::HashMap::new();
        for d in kernel.flows.iter().filter(|d| !d.flow.tcp) {
            let entry = by_flow
                .entry((d.flow.source, d.flow.sport, d.flow.dport))
                .or_default();
            entry.0 += d.packets;
            if ruleset_at == Some(d.host.name()) {
                entry.1 += d.packets;
            }
        }
        for (row, session) in rows.iter().zip(&mut sessions) {
            let (Some(SocketAddr::V4(local)), Some(port)) = (row.report.local, session.port) else {
                continue;
            };
            let (all, by_ruleset) = by_flow
                .get(&(*local.ip(), local.port(), port))
                .copied()
                .unwrap_or_default();
            session.filtered = all;
            if by_ruleset > 0 {
                ruleset_drops.insert(session.id, by_ruleset);
            }
        }
    }
    let disagreements: Vec<Disagreement> = sessions
        .iter()
        .filter(|s| !s.agree)
        .map(|s| Disagreement {
            id: s.id,
            predicted: s.predicted,
            outcome: s.outcome,
            port: s.port,
            cause: match (
                ruleset_drops.get(&s.id),
                kernel.as_ref().and_then(|k| k.ruleset.as_ref()),
            ) {
                (Some(n), Some(r)) if s.outcome == Outcome::Blocked => format!(
                    "your ruleset at the {} dropped {n} of its datagrams to port {} (kernel \
                     counters)",
                    r.at,
                    s.port.map_or("none".into(), |p| p.to_string())
                ),
                _ => cause(s, &server.foreign_ports, config.allowed),
            },
        })
        .collect();
    let agreement = Agreement {
        agree: (sessions.len() - disagreements.len()) as u32,
        disagree: disagreements.len() as u32,
    };
    let received_datagrams: u64 = sessions.iter().map(|s| s.received).sum();
    let payload = crate::wire::fasp::data_bytes(config.datagram) as u64;
    // Payload delivered over the run's wall time (sessions of a replay come and go).
    let goodput_bps = (received_datagrams * payload) as f64 * 8.0 / elapsed.as_secs_f64().max(1e-9);
    let verdict = verdict(
        config.allowed,
        prepared.required,
        &sessions,
        &server.foreign_ports,
    );
    let mut verdict = verdict;
    if let Some(r) = kernel
        .as_ref()
        .and_then(|k| k.ruleset.as_ref().map(|r| (r, k.control_port)))
    {
        ruleset_verdict(&mut verdict, r.0, r.1, prepared.required);
    }
    if agreement.disagree > 0 {
        verdict.summary.push_str(&format!(
            "; {} of {} sessions did not do what the model predicts (see agreement)",
            agreement.disagree,
            sessions.len()
        ));
    }
    let client_rejected = sessions.iter().map(|s| s.rejected).sum::<u64>();
    let report = BlastReport {
        header: prepared.header.clone(),
        counts: counts(&sessions, |s| s.outcome),
        predicted_counts: counts(&sessions, |s| s.predicted.outcome),
        agreement,
        disagreements,
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
        pcap_frames: pcap.as_ref().map_or(0, |(_, frames)| *frames),
        kernel: None,
        intervals,
        notes: server
            .foreign_ports
            .iter()
            .map(|port| {
                format!(
                    "port {port} is held by another process on this machine; the emulator \
                     skipped it, as a server would"
                )
            })
            .chain(config.replay.iter().flat_map(|s| s.notes.iter().cloned()))
            .collect(),
        sessions,
    };
    (report, pcap.map(|(bytes, _)| bytes))
}

/// Samples the board every `every` until `done`; an interval report each time.
async fn sample_intervals(
    board: Arc<Board>,
    every: Duration,
    mut done: watch::Receiver<bool>,
) -> Vec<Interval> {
    let start = Instant::now();
    let mut intervals = Vec::new();
    let (mut sent, mut bytes) = (0u64, 0u64);
    let mut last = start;
    let mut tick = tokio::time::interval_at((start + every).into(), every);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = done.wait_for(|&d| d) => break,
        }
        let now = Instant::now();
        let span = (now - last).as_secs_f64().max(1e-9);
        let (s, b) = (
            board.meter.sent.load(Ordering::Relaxed),
            board.meter.delivered_bytes.load(Ordering::Relaxed),
        );
        intervals.push(Interval {
            t: (now - start).as_secs_f64(),
            datagrams_per_second: (s - sent) as f64 / span,
            goodput_bps: (b - bytes) as f64 * 8.0 / span,
            active: board.active.load(Ordering::Relaxed),
            ok: board.ok.load(Ordering::Relaxed),
            failed: board.failed.load(Ordering::Relaxed),
        });
        (sent, bytes, last) = (s, b, now);
        if intervals.len() >= crate::limits::MAX_INTERVALS {
            break;
        }
    }
    intervals
}

/// Runs the clients of `prepared` on `handle`'s runtime, from this (blocking) thread.
fn drive(
    handle: tokio::runtime::Handle,
    prepared: &Prepared,
    side: ClientSide,
    stop: watch::Receiver<bool>,
    board: Arc<Board>,
) -> (Vec<Row>, bool) {
    let driver = Driver::new(handle, prepared.schedule.clone(), side, stop, board);
    let (_, rows, interrupted) = driver.run();
    (rows, interrupted)
}

/// Runs `config` on its backend; `stop` turning true ends it early (Ctrl-C). `board` shows
/// live counts. Returns the report and, with `pcap_limit`, the capture's bytes.
pub async fn run(
    config: &BlastConfig,
    prepared: &Prepared,
    stop: watch::Receiver<bool>,
    board: Arc<Board>,
) -> Result<(BlastReport, Option<Vec<u8>>), BlastError> {
    raise_descriptor_limit();
    match config.backend {
        Backend::Loopback => run_loopback(config, prepared, stop, board).await,
        Backend::Netns(path) => run_netns(config, prepared, path, stop, board).await,
        Backend::Remote { control, key } => {
            run_remote(config, prepared, control, key, stop, board).await
        }
    }
}

/// Prepares and runs `config` without a status line: for tests and benches.
pub async fn run_simple(
    config: &BlastConfig,
    stop: watch::Receiver<bool>,
) -> Result<(BlastReport, Option<Vec<u8>>), BlastError> {
    let prepared = prepare(config)?;
    run(config, &prepared, stop, Arc::new(Board::default())).await
}

/// Runs the clients of `prepared` on this runtime (the driver on a blocking thread), with
/// interval reports when asked for.
async fn drive_here(
    config: &BlastConfig,
    prepared: &Prepared,
    side: ClientSide,
    stop: &watch::Receiver<bool>,
    board: Arc<Board>,
) -> Result<(Vec<Row>, bool, Vec<Interval>), BlastError> {
    let (sampler, sampled) = start_intervals(config, &board);
    let handle = tokio::runtime::Handle::current();
    let plan = prepared.clone();
    let driver_stop = stop.clone();
    let (rows, interrupted) =
        tokio::task::spawn_blocking(move || drive(handle, &plan, side, driver_stop, board))
            .await
            .map_err(|e| BlastError::Server(format!("the driver failed: {e}")))?;
    let intervals = end_intervals(sampler, sampled).await;
    Ok((rows, interrupted, intervals))
}

/// The clients of a run against `control`: the run's key, rate, datagram size and limits;
/// What each session of a burst does: sends for a time, or delivers a size by a deadline.
fn burst_transfer(config: &BlastConfig) -> String {
    let holding = crate::units::trim(config.holding().as_secs_f64());
    let deadline = crate::units::trim(config.duration.as_secs_f64());
    match config.size {
        Some(Size::Bytes(bytes)) if config.holding() < config.duration => {
            format!("delivering {bytes} bytes ({holding} s at the rate, deadline {deadline} s)")
        }
        Some(Size::Bytes(bytes)) => format!("delivering {bytes} bytes (deadline {deadline} s)"),
        _ => format!("sending {holding} s"),
    }
}

/// `groups` client groups beside the default one, all sending from any local address
/// through filters that pass everything (where the firewall is not modelled in process).
fn client_side(
    config: &BlastConfig,
    control: SocketAddr,
    key: u64,
    capture: Option<Arc<Capture>>,
    groups: usize,
) -> ClientSide {
    ClientSide {
        control,
        addresses: vec![Ipv4Addr::UNSPECIFIED; groups + 1],
        filters: (0..=groups)
            .map(|_| Arc::new(OutboundFilter::new(None)))
            .collect(),
        capture,
        key,
        rate_bps: config.rate_bps,
        datagram: config.datagram,
        max_datagrams: config.max_datagrams.min(MAX_DATAGRAMS_PER_SESSION),
        policy: config.policy,
        min_rate_bps: config.min_rate_bps,
        size: config.size,
        deadline: config.duration,
    }
}

/// Each client group's outbound filter on loopback: the range under test for the default
/// group, each group's own range for the others.
fn group_filters(prepared: &Prepared, allowed: Option<PortRange>) -> Vec<Arc<OutboundFilter>> {
    std::iter::once(allowed)
        .chain(
            prepared
                .schedule
                .scenario
                .client
                .groups
                .iter()
                .map(|g| Some(g.allowed)),
        )
        .map(|range| Arc::new(OutboundFilter::new(range)))
        .collect()
}

/// Starts the interval sampler when asked for; returns its handle and the signal to end it.
fn start_intervals(
    config: &BlastConfig,
    board: &Arc<Board>,
) -> (
    Option<tokio::task::JoinHandle<Vec<Interval>>>,
    watch::Sender<bool>,
) {
    let (done, finished) = watch::channel(false);
    let task = config
        .interval
        .map(|every| tokio::spawn(sample_intervals(Arc::clone(board), every, finished)));
    (task, done)
}

async fn end_intervals(
    task: Option<tokio::task::JoinHandle<Vec<Interval>>>,
    done: watch::Sender<bool>,
) -> Vec<Interval> {
    let _ = done.send(true);
    match task {
        Some(task) => task.await.unwrap_or_default(),
        None => Vec::new(),
    }
}

async fn run_loopback(
    config: &BlastConfig,
    prepared: &Prepared,
    stop: watch::Receiver<bool>,
    board: Arc<Board>,
) -> Result<(BlastReport, Option<Vec<u8>>), BlastError> {
    let started = Instant::now();
    let (capture, server_capture) = captures(config);
    let key = server::new_secret();
    let options = ServerOptions {
        max_datagrams: config.max_datagrams,
        ..ServerOptions::new(Ipv4Addr::LOCALHOST, key)
    };
    let server = Server::start(
        config.allocator(),
        config.control_port,
        options,
        server_capture.clone(),
    )
    .await?;
    let filters = group_filters(prepared, config.allowed);
    let groups = filters.len() - 1;
    let side = ClientSide {
        addresses: vec![client::CLIENT_HOST; filters.len()],
        filters,
        ..client_side(config, server.control_addr(), key, capture.clone(), groups)
    };
    let (rows, interrupted, intervals) = drive_here(config, prepared, side, &stop, board).await?;
    let seen = server.shutdown().await;
    let outcomes = Outcomes {
        rows,
        interrupted: interrupted || *stop.borrow(),
        server: seen,
        intervals,
        elapsed: started.elapsed(),
        kernel: None,
    };
    let pcap = merged(config, capture, server_capture);
    Ok(assemble(config, prepared, outcomes, pcap))
}

/// The clients' capture and the server's, each its own, when `--pcap` asks for one.
type Captures = (Option<Arc<Capture>>, Option<Arc<Capture>>);

fn captures(config: &BlastConfig) -> Captures {
    let one = || (config.pcap_limit > 0).then(|| Arc::new(Capture::new(config.pcap_limit)));
    (one(), one())
}

/// The two sides' captures as one file, frames in time order.
fn merged(
    config: &BlastConfig,
    client: Option<Arc<Capture>>,
    server: Option<Arc<Capture>>,
) -> Option<(Vec<u8>, u64)> {
    let parts: Vec<Vec<u8>> = [client, server]
        .into_iter()
        .flatten()
        .map(|c| c.take_bytes())
        .collect();
    (!parts.is_empty()).then(|| capture::merge(&parts, config.pcap_limit))
}

/// Only the clients, against `udprange serve` at `control`: the path between the hosts is
/// under test, so no filter runs in this process and every port the path passes passes.
async fn run_remote(
    config: &BlastConfig,
    prepared: &Prepared,
    control: SocketAddr,
    key: u64,
    stop: watch::Receiver<bool>,
    board: Arc<Board>,
) -> Result<(BlastReport, Option<Vec<u8>>), BlastError> {
    let started = Instant::now();
    let (capture, _) = captures(config);
    let groups = prepared.schedule.scenario.client.groups.len();
    let side = client_side(config, control, key, capture.clone(), groups);
    let (rows, interrupted, intervals) = drive_here(config, prepared, side, &stop, board).await?;
    let outcomes = Outcomes {
        rows,
        interrupted: interrupted || *stop.borrow(),
        server: ServerRecord::default(),
        intervals,
        elapsed: started.elapsed(),
        kernel: None,
    };
    let pcap = merged(config, capture, None);
    let (mut report, pcap) = assemble(config, prepared, outcomes, pcap);
    report.notes.push(format!(
        "the path between this host and the server at {control} was under test: nothing \
         filtered here, so what passed is what that path passes; the server's own counters \
         of rejected datagrams stay there"
    ));
    Ok((report, pcap))
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
pub fn raise_descriptor_limit() {
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
/// --default-drop --peer OTHER-HOST` prints it: the same code path. Client groups with
/// ranges of their own (`groups`: each one's source address and range) get rules of their
/// own at the top of the client's chain, and the server takes them in from the test subnet.
pub fn ruleset(
    config: &BlastConfig,
    control_port: Port,
    side: Side,
    groups: &[(Ipv4Addr, &crate::scenario::ClientGroup)],
) -> Result<String, BlastError> {
    let udp = config
        .allowed
        .or_else(|| PortRange::new(config.server.base_port, config.server.max_port).ok())
        .ok_or_else(|| BlastError::Server("no UDP range to allow".into()))?;
    let (peer, role) = match side {
        Side::Client => (
            Peer::host(IpAddr::V4(netns::SERVER_ADDR)),
            "client firewall, outbound to",
        ),
        Side::Server if groups.is_empty() => (
            Peer::host(IpAddr::V4(netns::CLIENT_ADDR)),
            "server firewall, inbound from",
        ),
        Side::Server => (
            Peer {
                addr: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 0)),
                prefix: netns::PREFIX_LEN,
            },
            "server firewall, inbound from",
        ),
    };
    let openings = Requirements::new(control_port, udp, false).openings(side);
    let mut set = RuleSet::new(side, openings);
    set.peer = Some(peer);
    set.default_drop = true;
    let shown = if peer.prefix == 32 {
        peer.addr.to_string()
    } else {
        format!("{}/{}", peer.addr, peer.prefix)
    };
    set.header = vec![format!(
        "udprange blast --backend netns: {role} {shown}, UDP {udp}"
    )];
    let text =
        rules::render(&set, Syntax::Nftables).map_err(|e| BlastError::Server(e.to_string()))?;
    if side == Side::Server || groups.is_empty() {
        return Ok(text);
    }
    // Each group decides its own UDP first: the first verdict in a chain wins.
    let mut own = String::new();
    for (addr, group) in groups {
        let name: String = group
            .name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let r = group.allowed;
        let ports = if r.first() == r.last() {
            r.first().to_string()
        } else {
            format!("{}-{}", r.first(), r.last())
        };
        own.push_str(&format!(
            "\t\tip saddr {addr} ip daddr {} udp dport {ports} accept comment \"FASP data, client group {name}\"\n\
             \t\tip saddr {addr} meta l4proto udp drop comment \"UDP outside client group {name}'s openings\"\n",
            netns::SERVER_ADDR
        ));
    }
    let mut out = String::new();
    let mut placed = false;
    for line in text.lines() {
        out.push_str(line);
        out.push('\n');
        if !placed && line.contains("type filter hook output") {
            out.push_str(&own);
            placed = true;
        }
    }
    if !placed {
        return Err(BlastError::Server(
            "the client ruleset has no output chain for the client groups' rules".into(),
        ));
    }
    Ok(out)
}

async fn run_netns(
    config: &BlastConfig,
    prepared: &Prepared,
    path: WanPath,
    stop: watch::Receiver<bool>,
    board: Arc<Board>,
) -> Result<(BlastReport, Option<Vec<u8>>), BlastError> {
    let groups = &prepared.schedule.scenario.client.groups;
    if groups.len() > netns::MAX_GROUP_ADDRESSES {
        return Err(BlastError::TimeScale(format!(
            "client.groups: the netns backend gives each group an address of its own, at \
             most {}; this scenario has {}",
            netns::MAX_GROUP_ADDRESSES,
            groups.len()
        )));
    }
    if config.ruleset.is_some() && !groups.is_empty() {
        return Err(BlastError::TimeScale(
            "client.groups: a group's range is a rule of udprange's own; with --ruleset your \
             ruleset alone decides what passes (remove the groups, or test without --ruleset)"
                .into(),
        ));
    }
    let group_hosts: Vec<(Ipv4Addr, &crate::scenario::ClientGroup)> = groups
        .iter()
        .enumerate()
        .map(|(i, g)| (netns::group_addr(i + 1), g))
        .collect();
    let started = Instant::now();
    netns::check_requirements()?;
    let notes = netns::remove_leftovers();
    let mut hosts = TestHosts::create()?;
    let control_port = match config.control_port {
        0 => crate::model::ControlPort::for_os(config.server.os, None).port,
        port => port,
    };
    for (addr, _) in &group_hosts {
        hosts.add_client_address(*addr)?;
    }
    // The firewalls under test: the user's ruleset where they put it, or udprange's own
    // rules on the client and the server. The counters go in after (a ruleset may flush).
    let (client_ruleset, server_ruleset) = match &config.ruleset {
        Some(user) => {
            hosts.load_user_ruleset(user.at, &user.ruleset)?;
            (String::new(), String::new())
        }
        None => {
            let client = ruleset(config, control_port, Side::Client, &group_hosts)?;
            hosts.load_rules(&hosts.client_ns, &client)?;
            let server = ruleset(config, control_port, Side::Server, &group_hosts)?;
            hosts.load_rules(&hosts.server_ns, &server)?;
            (client, server)
        }
    };
    hosts.count_flows()?;
    hosts.impair(&path, delay_queue_len(config, prepared, &path))?;
    let (capture, server_capture) = captures(config);
    let key = server::new_secret();

    // The emulator: a thread in the server namespace with a runtime of its own.
    let (ready, ready_rx) = tokio::sync::oneshot::channel::<Result<SocketAddr, String>>();
    let (finish, finished) = tokio::sync::oneshot::channel::<()>();
    let server_ns = hosts.server_ns.clone();
    let options = ServerOptions {
        max_datagrams: config.max_datagrams,
        ..ServerOptions::new(netns::SERVER_ADDR, key)
    };
    let (allocator, emulator_capture) = (config.allocator(), server_capture.clone());
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
            match Server::start(allocator, control_port, options, emulator_capture).await {
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

    // The clients and the driver: a thread in the client namespace; the kernel's rulesets
    // filter them, the in-process filters pass everything.
    let client_ns = hosts.client_ns.clone();
    let side = ClientSide {
        addresses: std::iter::once(netns::CLIENT_ADDR)
            .chain(group_hosts.iter().map(|(addr, _)| *addr))
            .collect(),
        ..client_side(config, control, key, capture.clone(), group_hosts.len())
    };
    let (sampler, sampled) = start_intervals(config, &board);
    let client_stop = stop.clone();
    let plan = prepared.clone();
    let driven = tokio::task::spawn_blocking(move || -> Result<(Vec<Row>, bool), String> {
        netns::enter(&client_ns).map_err(|e| e.to_string())?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let handle = runtime.handle().clone();
        let result = drive(handle, &plan, side, client_stop, board);
        runtime.shutdown_timeout(Duration::from_secs(1));
        Ok(result)
    })
    .await
    .map_err(|e| BlastError::Server(e.to_string()))
    .and_then(|r| r.map_err(BlastError::Server));
    let intervals = end_intervals(sampler, sampled).await;
    let _ = finish.send(());
    let seen = tokio::task::spawn_blocking(move || server_thread.join().unwrap_or_default())
        .await
        .unwrap_or_default();
    let delay_line = hosts.finish_delay();
    let (rows, interrupted) = driven?;
    let flows = hosts.dropped()?;
    let dropped_packets = flows.iter().fold(HostDrops::default(), |mut h, d| {
        match d.host {
            Host::Client => h.client += d.packets,
            Host::Router => h.router += d.packets,
            Host::Server => h.server += d.packets,
        }
        h
    });
    let ruleset_report = config.ruleset.as_ref().map(|user| {
        let at = |d: &&netns::Dropped| d.host == user.at;
        let udp: Vec<&netns::Dropped> = flows.iter().filter(at).filter(|d| !d.flow.tcp).collect();
        RulesetReport {
            file: user.ruleset.path.clone(),
            format: user.ruleset.format,
            at: user.at.name(),
            dropped: PortRange::covering(udp.iter().map(|d| d.flow.dport)),
            dropped_datagrams: udp.iter().map(|d| d.packets).sum(),
            control_dropped: flows
                .iter()
                .filter(at)
                .filter(|d| d.flow.tcp && d.flow.dport == control_port)
                .map(|d| d.packets)
                .sum(),
        }
    });
    let outcomes = Outcomes {
        rows,
        interrupted: interrupted || *stop.borrow(),
        server: seen,
        intervals,
        elapsed: started.elapsed(),
        kernel: Some(KernelDrops {
            flows,
            ruleset: ruleset_report.clone(),
            control_port,
        }),
    };
    let pcap = merged(config, capture, server_capture);
    let (mut report, pcap) = assemble(config, prepared, outcomes, pcap);
    if let Some(line) = &delay_line
        && !line.ran_to_end
    {
        // With the queue's bypass, packets went on undelayed: this was not the path asked for.
        report.verdict.status = Status::Inconclusive;
        report.verdict.sufficient = false;
        report.verdict.summary = format!(
            "inconclusive: the router's delay line stopped during the run ({}), so packets \
             passed undelayed from then on; {}",
            line.stopped.as_deref().unwrap_or("no reason given"),
            report.verdict.summary
        );
    }
    if let Some(line) = &delay_line
        && line.queue_dropped + line.user_dropped > 0
    {
        report.notes.push(format!(
            "the router's delay queue dropped {} packets (full: {}, not delivered to the delay \
             line: {}); they count as WAN loss",
            line.queue_dropped + line.user_dropped,
            line.queue_dropped,
            line.user_dropped
        ));
    }
    report.kernel = Some(KernelPath {
        client_ruleset,
        server_ruleset,
        mechanisms: hosts.mechanisms.clone(),
        client_namespace: hosts.client_ns.clone(),
        router_namespace: hosts.router_ns.clone(),
        server_namespace: hosts.server_ns.clone(),
        delay_line,
        dropped_packets,
        ruleset: ruleset_report,
    });
    report.notes.extend(notes);
    if config.datagram > netns::PATH_MTU {
        report.notes.push(format!(
            "{}-byte datagrams are more than this path's {}-byte MTU: each was fragmented, \
             and a datagram is lost when either fragment is (--datagram {}B at most fits)",
            config.datagram,
            netns::PATH_MTU,
            netns::PATH_MTU,
        ));
    }
    drop(hosts);
    Ok((report, pcap))
}

/// The delay line's kernel queue: room for every packet in flight over the delay, both
/// ways, twice over (the default 1024 drops at a few thousand packets per second).
fn delay_queue_len(config: &BlastConfig, prepared: &Prepared, path: &WanPath) -> u32 {
    let span = path.delay.unwrap_or_default() + path.jitter.unwrap_or_default();
    let per_session = match config.rate_bps {
        0 => 300_000.0,
        bps => bps as f64 / (f64::from(config.datagram) * 8.0),
    };
    let packets =
        (per_session * prepared.concurrent.max(1) as f64 + 1000.0) * span.as_secs_f64() * 2.0 * 2.0;
    packets.clamp(4096.0, f64::from(1u32 << 20)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ServerOs;

    fn session(id: u32, port: Option<Port>, outcome: Outcome) -> SessionResult {
        SessionResult {
            id,
            session: port.map(|_| id),
            transfer: u64::from(id),
            attempt: 1,
            account: id,
            group: "default".into(),
            start_s: 0.0,
            holding_s: 1.0,
            port,
            outcome,
            predicted: Predicted { outcome, port },
            agree: true,
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
            rate_bps: Vec::new(),
            queuing_delay_us: None,
            complete: None,
            completion_s: None,
            sent_once_s: None,
            bytes: 0,
        }
    }

    fn allowed() -> Option<PortRange> {
        PortRange::new(33001, 33002).ok()
    }

    fn burst(os: ServerOs, clients: u32, accounts: u32) -> BlastConfig {
        BlastConfig {
            server: ServerConfig {
                os,
                ..Scenario::seed_example().server
            },
            replay: None,
            clients,
            accounts,
            ..BlastConfig::seed_example()
        }
    }

    #[test]
    fn the_required_range_is_the_models_for_this_load() {
        let range = |c: &BlastConfig| prepare(c).unwrap().required.map(|r| r.to_string());
        assert_eq!(
            range(&burst(ServerOs::Windows, 12, 12)).unwrap(),
            "33001-33012"
        );
        assert_eq!(range(&burst(ServerOs::Linux, 12, 12)).unwrap(), "33001");
        assert_eq!(
            range(&burst(ServerOs::Macos, 12, 3)).unwrap(),
            "33001-33003"
        );
        let mut occupied = burst(ServerOs::Windows, 12, 12);
        occupied.server.occupied = [33004].into();
        assert_eq!(range(&occupied).unwrap(), "33001-33013");
        let mut capped = burst(ServerOs::Windows, 12, 12);
        capped.server.max_port = 33011;
        assert_eq!(range(&capped), None);
        // The example: simulate recommends 33001-33006 for the trace; so does blast,
        // not the highest port of the restricted run.
        let trace = Scenario::load("scenarios/trace-replay.toml".as_ref()).unwrap();
        let config = BlastConfig::from_scenario(&trace);
        assert_eq!(range(&config).unwrap(), "33001-33006");
    }

    #[test]
    fn a_replay_is_replication_zero_of_the_scenario_and_fits_the_budget() {
        let trace = Scenario::load("scenarios/trace-replay.toml".as_ref()).unwrap();
        let config = BlastConfig::from_scenario(&trace);
        let prepared = prepare(&config).unwrap();
        assert_eq!(prepared.header.load, "workload");
        assert_eq!(prepared.header.transfers, 151);
        assert!(prepared.header.expected_s <= REPLAY_BUDGET.as_secs_f64() * 1.1);
        // The model's prediction is simulate's replication 0: 2 of 151 fail on 33001-33005.
        let (record, attempts) = prepared.schedule.predict();
        assert_eq!(record.counts.sessions, 151);
        assert_eq!(record.counts.failed, 2);
        assert_eq!(
            attempts
                .iter()
                .filter(|a| matches!(a.decision, Decision::Blocked { .. }))
                .count(),
            2
        );
        // --sessions caps whole transfers.
        let capped = BlastConfig {
            sessions: Some(20),
            ..config.clone()
        };
        let prepared = prepare(&capped).unwrap();
        assert_eq!(prepared.header.transfers, 20);
        let capped = prepared.header.capped.unwrap();
        assert!(
            capped.contains("first 20 transfers (--sessions)"),
            "{capped}"
        );
        assert!(prepared.header.expected_s <= REPLAY_BUDGET.as_secs_f64() * 1.1);
        // The budget holds the run until its last transfer ends, not until it starts: the
        // example log's first 6 sessions start within 1267 s and end at 3155 s.
        let log = Scenario::parse(
            "name = \"from-log\"\n[server]\nos = \"windows\"\n[workload]\narrivals = \"trace\"\ntrace = \"aspera-scp-transfer.log\"\n",
            "tests/data/logs/from-log.toml".as_ref(),
        )
        .unwrap();
        let capped = BlastConfig {
            sessions: Some(6),
            ..BlastConfig::from_scenario(&log)
        };
        let prepared = prepare(&capped).unwrap();
        assert_eq!(prepared.header.transfers, 6);
        assert!(
            (prepared.header.expected_s - REPLAY_BUDGET.as_secs_f64()).abs() < 0.5,
            "{} s",
            prepared.header.expected_s
        );
    }

    #[test]
    fn a_time_scale_finer_than_the_run_resolves_is_refused_with_the_bound() {
        let seed = BlastConfig {
            time_scale: Some(10_000.0),
            ..BlastConfig::seed_example()
        };
        let Err(BlastError::TimeScale(why)) = prepare(&seed) else {
            panic!("accepted");
        };
        // 20 s of handshake timeout over 25 ms: 800 at most.
        assert!(why.contains("at most 800.0"), "{why}");
        let ok = BlastConfig {
            time_scale: Some(800.0),
            ..seed
        };
        assert_eq!(prepare(&ok).unwrap().schedule.scale, 800.0);
    }

    #[test]
    fn a_run_too_long_or_too_wide_is_refused_before_it_starts() {
        let (_, attempts) = burst(ServerOs::Windows, 12, 12)
            .schedule()
            .unwrap()
            .predict();
        assert_eq!(most_at_once(&attempts, SimTime::from_secs_f64(20.0)), 12);
        let slow = BlastConfig {
            time_scale: Some(0.001),
            ..burst(ServerOs::Windows, 2, 2)
        };
        let Err(BlastError::TimeScale(why)) = prepare(&slow) else {
            panic!("accepted");
        };
        assert!(why.starts_with("this load would take 5000 s"), "{why}");
        let trace = Scenario::load("scenarios/linux-no-reuse-poisson.toml".as_ref()).unwrap();
        let long = BlastConfig {
            sessions: Some(100_000),
            time_scale: Some(10.0),
            ..BlastConfig::from_scenario(&trace)
        };
        assert!(matches!(prepare(&long), Err(BlastError::TimeScale(_))));
    }

    #[test]
    fn counts_follow_simulate_retries_and_multi_session_transfers() {
        let mut first = session(1, Some(33003), Outcome::Blocked);
        first.transfer = 1;
        let mut retry = session(2, Some(33001), Outcome::Ok);
        retry.transfer = 1;
        retry.attempt = 2;
        let mut sibling = session(3, Some(33002), Outcome::Ok);
        sibling.transfer = 1;
        let mut lone = session(4, None, Outcome::Refused);
        lone.transfer = 2;
        let c = counts(&[first, sibling, retry, lone], |s| s.outcome);
        assert_eq!(
            (c.sessions, c.ok, c.failed, c.blocked, c.refused, c.retried),
            (3, 2, 1, 1, 1, 1)
        );
        assert_eq!((c.transfers, c.transfers_failed), (2, 1));
    }

    #[test]
    fn a_disagreement_names_its_cause() {
        let mut s = session(1, Some(33004), Outcome::Ok);
        s.predicted = Predicted {
            outcome: Outcome::Ok,
            port: Some(33003),
        };
        assert!(cause(&s, &[33003], allowed()).contains("33003 are held by another process"));
        let mut blocked = session(2, Some(33002), Outcome::Blocked);
        blocked.predicted.outcome = Outcome::Ok;
        assert!(cause(&blocked, &[], allowed()).contains("something on the path"));
        let mut passed = session(3, Some(33009), Outcome::Ok);
        passed.predicted.outcome = Outcome::Blocked;
        assert!(cause(&passed, &[], allowed()).contains("passes more than that range"));
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
        let required = PortRange::new(33001, 33003).ok();
        let v = verdict(allowed(), required, &overloaded, &[]);
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
        let v = verdict(allowed(), required, &blocked, &[]);
        assert_eq!(v.status, Status::Insufficient);
        assert!(v.summary.contains("1 blocked (error 15)"), "{}", v.summary);
        assert!(
            v.summary
                .contains("smallest sufficient range is 33001-33003"),
            "{}",
            v.summary
        );

        let v = verdict(allowed(), required, &blocked, &[33002]);
        assert_eq!(v.status, Status::Inconclusive);
        assert!(
            v.summary
                .contains("port(s) 33002 are held by another process"),
            "{}",
            v.summary
        );

        let v = verdict(allowed(), required, &[ok], &[]);
        assert_eq!(v.status, Status::Sufficient);
        assert_eq!(v.summary, "range 33001-33002 is sufficient");
    }
}
