//! The load as a scenario's `[workload]`, `[client.groups]` and `[traffic]` describe it:
//! plain data, validated by [`crate::scenario`], read by [`super::Stream`].

use std::path::PathBuf;

use crate::model::{Port, PortRange};
use crate::units::{Bitrate, Duration, Rate};

/// A set of clients with a fixed outbound range of their own (partners on a narrower range).
#[derive(Debug, Clone, PartialEq)]
pub struct ClientGroup {
    pub name: String,
    /// Fraction of sessions (open arrivals) or of sources (closed) in this group.
    pub share: f64,
    pub allowed: PortRange,
}

/// One replayed session.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceRecord {
    /// Seconds from the start of the trace.
    pub start: f64,
    /// Seconds the session lasts.
    pub duration: f64,
    /// Account number, in order of first appearance (0-based).
    pub account: u64,
    /// Name of the client group, if the trace gives one.
    pub group: Option<String>,
}

/// A holding-time (or think-time) distribution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Holding {
    Exponential {
        mean: Duration,
    },
    LogNormal {
        mean: Duration,
        sd: Duration,
    },
    Fixed {
        mean: Duration,
    },
    /// Pareto with tail index `shape` (> 1, so the mean exists).
    Pareto {
        mean: Duration,
        shape: f64,
    },
}

impl Holding {
    pub fn mean(&self) -> Duration {
        match *self {
            Self::Exponential { mean }
            | Self::LogNormal { mean, .. }
            | Self::Fixed { mean }
            | Self::Pareto { mean, .. } => mean,
        }
    }
}

/// How sessions arrive.
#[derive(Debug, Clone, PartialEq)]
pub enum Arrivals {
    /// Poisson arrivals at a constant rate.
    Poisson { rate: Rate },
    /// Poisson arrivals whose rate steps through `rates`, one per `step`, repeating.
    Profile { step: Duration, rates: Vec<Rate> },
    /// Sessions replayed from a CSV file, sorted by start time.
    Trace {
        path: PathBuf,
        records: Vec<TraceRecord>,
    },
    /// `concurrent` sources; each starts a session, and when it ends (after `think`, if set)
    /// the next one. Without `think` this is the seed's fixed concurrency.
    Closed {
        concurrent: u64,
        think: Option<Holding>,
    },
}

impl Arrivals {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Poisson { .. } => "poisson",
            Self::Profile { .. } => "profile",
            Self::Trace { .. } => "trace",
            Self::Closed { .. } => "closed",
        }
    }

    /// Arrivals that do not depend on what happened to earlier sessions.
    pub fn is_open(&self) -> bool {
        !matches!(self, Self::Closed { .. })
    }
}

/// When a replication stops starting sessions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stop {
    Sessions(u64),
    Horizon(Duration),
}

/// What a client does after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Retry {
    /// Attempts in all, the first included (`1` = never retry).
    pub attempts: u32,
    /// Wait after the first failure.
    pub backoff: Duration,
    /// Each later wait is this many times the one before.
    pub multiplier: f64,
}

/// The load the server sees.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    pub arrivals: Arrivals,
    pub holding: Holding,
    /// Sessions belong to this many accounts, chosen uniformly (closed: source `i` → `i mod accounts`).
    pub accounts: u64,
    /// Sessions each transfer opens at once (multi-session transfers); 1 by default.
    pub sessions_per_transfer: u32,
    pub stop: Stop,
    /// Sessions starting before this are simulated but not counted (the system fills up).
    pub warmup: Option<Duration>,
    pub replications: u32,
    /// How long a session whose port the client firewall drops holds that port.
    pub handshake_timeout: Duration,
    pub retry: Option<Retry>,
}

/// How a blast session chooses its rate (`--policy`, `[traffic] policy`): see
/// `blast::rate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    Fixed,
    High,
    Fair,
    Low,
}

impl Policy {
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text.trim() {
            "fixed" => Self::Fixed,
            "high" => Self::High,
            "fair" => Self::Fair,
            "low" => Self::Low,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Fixed => "fixed",
            Self::High => "high",
            Self::Fair => "fair",
            Self::Low => "low",
        }
    }
}

/// How much a sized transfer delivers (`--size`, `[traffic] size`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferSize {
    /// Every session this many payload bytes.
    Bytes(u64),
    /// Each session what its holding time at the rate carries (a replayed load).
    Holding,
}

/// When blast clients start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Start {
    /// All at once.
    Together,
    /// Spread evenly over the first half of the duration.
    Staggered,
}

impl std::str::FromStr for Start {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim() {
            "together" => Ok(Self::Together),
            "staggered" => Ok(Self::Staggered),
            _ => Err(format!("unknown start '{text}' (together, staggered)")),
        }
    }
}

/// Packet-level traffic for `udprange blast` (`[traffic]`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Traffic {
    /// Clients of a burst; by default the closed workload's `concurrent`, else 10.
    pub clients: u32,
    /// Target rate per session (default 10 Mbit/s, the vendor's default).
    pub rate: Bitrate,
    /// Datagram size: the IP packet, IP and UDP headers included (default 1492 bytes, the
    /// vendor's, fitting a 1500-byte MTU).
    pub datagram: u16,
    /// How long each client of a burst sends (default 5 s).
    pub duration: Duration,
    /// A burst of `clients` identical transfers instead of the workload (`start`, or
    /// `clients`, set in the file); `None`: blast replays `[workload]`.
    pub start: Option<Start>,
    /// TCP control ("SSH") port on 127.0.0.1; 0 picks a free one (default).
    pub control_port: Port,
    /// Sized transfers delivered completely; `None`: each sends for its time (default).
    pub size: Option<TransferSize>,
    /// How sessions choose their rate (default fixed), and the floor of a delay-based one.
    pub policy: Policy,
    pub min_rate: Option<Bitrate>,
}
