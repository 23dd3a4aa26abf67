//! The load on the wall clock: the simulator's engine, driven by real sessions.
//!
//! `blast` does not restate the load. It runs the very engine `simulate` runs
//! ([`crate::sim::run_observed`]) on replication 0's random stream, with an [`Observer`] that
//! turns the engine's events into real sessions:
//! - before each event the driver waits until the wall clock reaches the event's model time
//!   divided by the time scale;
//! - an attempt starts a real client (HELLO over TCP) and waits for the server's PORT or
//!   REFUSED before the engine goes on, so the server hands out ports in the model's order;
//! - the end of a session waits until its client has finished and the server has confirmed
//!   the release (FINAL), so an arrival the model schedules after a release finds the port
//!   free, however close together the two are; a client that finished early keeps its port
//!   until the model ends it, so no release overtakes an earlier arrival either;
//! - the sessions that start at one instant all get their ports before any of them sends,
//!   so a burst of thousands does not handshake against its own traffic.
//!
//! The engine decides what happens next (retries, a closed source's next transfer) from the
//! model's outcome, so the run follows the model's schedule and a disagreement stays one
//! session's: every later session is still compared like for like. What the model decided
//! for each attempt is its *prediction*; what the packets showed is its *outcome*.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::capture::Capture;
use super::client::{self, ClientOutcome, ClientParams, ClientReport, Hooks, Meter};
use crate::firewall::model::OutboundFilter;
use crate::model::Port;
use crate::scenario::Scenario;
use crate::sim::{Attempt, Decision, Observer, RunRecord, RunSpec, replication_rng};
use crate::workload::{Load, SimTime};

/// The shortest scaled handshake timeout a run can resolve on loopback: a control handshake,
/// a first datagram and its acknowledgement, with room for a busy machine.
pub const RESOLUTION: Duration = Duration::from_millis(25);

/// What runs once a run is set up, just before its first packet.
pub type OnStart = Box<dyn FnOnce() + Send>;

/// Live counts of a run, for a status line and interval reports.
#[derive(Default)]
pub struct Board {
    pub meter: Arc<Meter>,
    /// Sessions started and not yet finished.
    pub active: AtomicU64,
    pub ok: AtomicU64,
    /// Sessions that ended any other way than ok.
    pub failed: AtomicU64,
    /// Called once everything that can fail before the traffic has not (the emulator
    /// listens, the namespaces exist): the CLI prints the header there.
    pub on_start: std::sync::Mutex<Option<OnStart>>,
}

impl Board {
    /// A board that calls `on_start` just before the first packet.
    pub fn with_start(on_start: OnStart) -> Self {
        Self {
            on_start: std::sync::Mutex::new(Some(on_start)),
            ..Self::default()
        }
    }

    /// The run is set up: the first packet comes next.
    pub fn started(&self) {
        let taken = self
            .on_start
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(on_start) = taken {
            on_start();
        }
    }
}

impl std::fmt::Debug for Board {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Board")
            .field("meter", &self.meter)
            .field("active", &self.active)
            .field("ok", &self.ok)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

/// What the engine runs and how fast: the scenario (its server, client ranges and workload),
/// the generator, and the time scale (model seconds per wall second).
#[derive(Debug, Clone)]
pub struct Schedule {
    pub scenario: Scenario,
    pub load: Load,
    pub scale: f64,
    /// How the load was cut short, in words (a session cap or the wall-time budget).
    pub capped: Option<String>,
}

impl Schedule {
    /// A model time on the wall clock.
    pub fn wall(&self, at: SimTime) -> Duration {
        Duration::try_from_secs_f64(at.as_secs_f64() / self.scale).unwrap_or(Duration::MAX)
    }

    /// Runs the model alone (no packets): what it predicts, attempt by attempt.
    pub fn predict(&self) -> (RunRecord, Vec<Attempt>) {
        let mut recorder = Recorder::default();
        let record = crate::sim::run_observed(
            &self.scenario,
            self.load,
            RunSpec {
                allowed: self.scenario.client.allowed,
                series: false,
            },
            replication_rng(self.scenario.seed, 0),
            &mut recorder,
        );
        (record, recorder.attempts)
    }
}

/// Keeps every attempt the engine makes.
#[derive(Default)]
pub struct Recorder {
    pub attempts: Vec<Attempt>,
}

impl Observer for Recorder {
    fn attempt(&mut self, attempt: &Attempt) {
        self.attempts.push(*attempt);
    }
}

/// One attempt of the run: the model's decision and, once it finished, the client's report.
#[derive(Debug)]
pub struct Row {
    pub attempt: Attempt,
    pub report: ClientReport,
}

/// How the clients reach the server.
pub struct ClientSide {
    pub control: std::net::SocketAddr,
    /// The address each client group sends from (index 0: the default group).
    pub addresses: Vec<std::net::Ipv4Addr>,
    /// Each client group's outbound filter on loopback (pass-all on netns, where the
    /// kernel's ruleset filters).
    pub filters: Vec<Arc<OutboundFilter>>,
    pub capture: Option<Arc<Capture>>,
    pub key: u64,
    pub rate_bps: u64,
    pub datagram: u16,
    pub max_datagrams: u64,
    pub policy: super::rate::Policy,
    pub min_rate_bps: u64,
    /// Sized transfers, delivered completely (`None`: each session sends for its time).
    pub size: Option<super::Size>,
    /// A burst's sized transfers end by this deadline (the model holds them for what they
    /// take at the rate).
    pub deadline: Duration,
}

/// A session whose client runs.
struct Running {
    attempt: Attempt,
    index: u32,
    /// Fired when the model ends the session: only then does the client release its port.
    release: oneshot::Sender<()>,
    task: JoinHandle<ClientReport>,
}

/// The observer that runs real sessions; see the module docs.
pub struct Driver {
    handle: Handle,
    schedule: Schedule,
    side: ClientSide,
    handshake: SimTime,
    epoch: Instant,
    stop: watch::Receiver<bool>,
    board: Arc<Board>,
    running: HashMap<u64, Running>,
    /// Sessions granted at the current instant, waiting to send until it is over.
    waiting: Vec<oneshot::Sender<()>>,
    /// The model time of the last attempt.
    instant: SimTime,
    rows: Vec<Row>,
    interrupted: bool,
}

impl Driver {
    pub fn new(
        handle: Handle,
        schedule: Schedule,
        side: ClientSide,
        stop: watch::Receiver<bool>,
        board: Arc<Board>,
    ) -> Self {
        let handshake =
            SimTime::from_secs_f64(schedule.scenario.workload.handshake_timeout.as_secs_f64());
        Self {
            handle,
            schedule,
            side,
            handshake,
            epoch: Instant::now(),
            stop,
            board,
            running: HashMap::new(),
            waiting: Vec::new(),
            instant: SimTime::ZERO,
            rows: Vec::new(),
            interrupted: false,
        }
    }

    /// Runs the schedule to its end (or until interrupted) and returns every attempt.
    pub fn run(mut self) -> (RunRecord, Vec<Row>, bool) {
        self.board.started();
        self.epoch = Instant::now();
        let schedule = self.schedule.clone();
        let record = crate::sim::run_observed(
            &schedule.scenario,
            schedule.load,
            RunSpec {
                allowed: schedule.scenario.client.allowed,
                series: false,
            },
            replication_rng(schedule.scenario.seed, 0),
            &mut self,
        );
        self.go();
        // Interrupted: whatever still runs has been told to stop and drains quickly.
        let mut left: Vec<u64> = self.running.keys().copied().collect();
        left.sort_unstable();
        for session in left {
            self.finish(session);
        }
        self.rows
            .sort_by_key(|row| (row.attempt.at, row.report.index));
        let interrupted = self.interrupted || *self.stop.borrow();
        (record, self.rows, interrupted)
    }

    /// The sessions granted at the instant just over start sending.
    fn go(&mut self) {
        for go in self.waiting.drain(..) {
            let _ = go.send(());
        }
    }

    fn finish(&mut self, session: u64) {
        self.go();
        if let Some(Running {
            attempt,
            index,
            release,
            task,
        }) = self.running.remove(&session)
        {
            let _ = release.send(());
            let report = self
                .handle
                .block_on(task)
                .unwrap_or_else(|_| lost(index, &attempt));
            self.record(attempt, report);
        }
    }

    fn record(&mut self, attempt: Attempt, report: ClientReport) {
        let counter = if report.outcome == ClientOutcome::Ok {
            &self.board.ok
        } else {
            &self.board.failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.board.active.fetch_sub(1, Ordering::Relaxed);
        self.rows.push(Row { attempt, report });
    }

    fn params(&self, attempt: &Attempt, index: u32) -> ClientParams {
        let group = attempt
            .group
            .min(self.side.addresses.len().saturating_sub(1));
        let sending = match attempt.decision {
            Decision::Passed { .. } => attempt.holding,
            Decision::Blocked { .. } | Decision::Refused => self.handshake,
        };
        let sending = self.schedule.wall(sending).min(crate::limits::MAX_DURATION);
        // A sized session's deadline is its `duration`.
        let (duration, size_bytes) = match self.side.size {
            None => (sending, None),
            // A burst has its deadline; a replayed session gets its own.
            Some(super::Size::Bytes(bytes)) => match self.schedule.load {
                crate::workload::Load::Scenario => (
                    super::Size::deadline(bytes, self.side.rate_bps),
                    Some(bytes),
                ),
                _ => (self.side.deadline, Some(bytes)),
            },
            Some(super::Size::Holding) => {
                let bytes = (self.side.rate_bps as f64 / 8.0 * sending.as_secs_f64()) as u64;
                (
                    super::Size::deadline(bytes, self.side.rate_bps),
                    Some(bytes),
                )
            }
        };
        ClientParams {
            index,
            account: u32::try_from(attempt.account).unwrap_or(u32::MAX),
            control: self.side.control,
            key: self.side.key,
            rate_bps: self.side.rate_bps,
            datagram: self.side.datagram,
            duration,
            handshake_timeout: self.schedule.wall(self.handshake),
            max_datagrams: self.side.max_datagrams,
            address: self.side.addresses[group],
            policy: self.side.policy,
            min_rate_bps: self.side.min_rate_bps,
            size_bytes,
        }
    }
}

/// The report of a client task that did not come back (it panicked).
fn lost(index: u32, attempt: &Attempt) -> ClientReport {
    ClientReport::never_started(
        index,
        u32::try_from(attempt.account).unwrap_or(u32::MAX),
        ClientOutcome::ControlFailed("the client task failed".into()),
    )
}

/// Rows for the attempts the model planned that an interrupted run never made.
pub fn unstarted(planned: &[Attempt], rows: &[Row]) -> Vec<Row> {
    let made: std::collections::HashSet<(u64, u32)> = rows
        .iter()
        .map(|r| (r.attempt.session, r.attempt.attempt))
        .collect();
    let mut index = rows.iter().map(|r| r.report.index).max().unwrap_or(0);
    planned
        .iter()
        .filter(|a| !made.contains(&(a.session, a.attempt)))
        .map(|a| {
            index += 1;
            Row {
                attempt: *a,
                report: ClientReport::never_started(
                    index,
                    u32::try_from(a.account).unwrap_or(u32::MAX),
                    ClientOutcome::Interrupted,
                ),
            }
        })
        .collect()
}

impl Observer for Driver {
    fn advance(&mut self, at: SimTime) -> bool {
        if at > self.instant {
            self.go();
        }
        let due = self.epoch
            + self
                .schedule
                .wall(at)
                .min(Duration::from_secs(86_400 * 365));
        loop {
            if *self.stop.borrow() {
                self.interrupted = true;
                return false;
            }
            let now = Instant::now();
            if now >= due {
                return true;
            }
            std::thread::sleep((due - now).min(Duration::from_millis(20)));
        }
    }

    fn attempt(&mut self, attempt: &Attempt) {
        let index = (self.rows.len() + self.running.len()) as u32 + 1;
        let params = self.params(attempt, index);
        let group = attempt.group.min(self.side.filters.len().saturating_sub(1));
        let filter = Arc::clone(&self.side.filters[group]);
        let (granted, grant) = oneshot::channel();
        let (release, released) = oneshot::channel();
        let (go, gate) = oneshot::channel();
        self.instant = attempt.at;
        self.waiting.push(go);
        let hooks = Hooks {
            meter: Some(Arc::clone(&self.board.meter)),
            granted: Some(granted),
            release: Some(released),
            go: Some(gate),
        };
        let task = self.handle.spawn(client::run(
            params,
            filter,
            self.stop.clone(),
            self.side.capture.clone(),
            hooks,
        ));
        self.board.active.fetch_add(1, Ordering::Relaxed);
        // The server hands out ports in the order it reads HELLOs: the next attempt waits
        // for this one's answer.
        let answer = grant.blocking_recv();
        let holds_port = matches!(answer, Ok(Ok(_)));
        self.running.insert(
            attempt.session,
            Running {
                attempt: *attempt,
                index,
                release,
                task,
            },
        );
        // The model ends only sessions it gave a port; any other ends here (a session the
        // model refused but the server granted sends until its handshake timeout, then
        // releases).
        if !holds_port || attempt.decision == Decision::Refused {
            self.finish(attempt.session);
        }
    }

    fn ended(&mut self, session: u64, _at: SimTime) {
        self.finish(session);
    }

    fn expired(&mut self, _port: Port, _at: SimTime) {}
}

/// Counts the default group's failed attempts (blocked or refused).
#[derive(Default)]
struct DefaultGroupFailures(u64);

impl Observer for DefaultGroupFailures {
    fn attempt(&mut self, attempt: &Attempt) {
        if attempt.group == 0 && !matches!(attempt.decision, Decision::Passed { .. }) {
            self.0 += 1;
        }
    }
}

/// The smallest range from the base port with which no attempt of the default group fails
/// in this schedule's load, found as `simulate` finds it: one run per candidate size on the
/// same random stream. `None` when the server refuses some even with every port allowed
/// (its cap: no client range helps).
pub fn smallest_sufficient(schedule: &Schedule) -> Option<crate::model::PortRange> {
    let scenario = &schedule.scenario;
    let base = scenario.server.base_port;
    let failures = |allowed| {
        let mut failures = DefaultGroupFailures::default();
        let record = crate::sim::run_observed(
            scenario,
            schedule.load,
            RunSpec {
                allowed,
                series: false,
            },
            replication_rng(scenario.seed, 0),
            &mut failures,
        );
        (failures.0, record.peak_port)
    };
    let (open, peak) = failures(None);
    if open > 0 {
        return None;
    }
    let peak = peak.max(base);
    if scenario.client.groups.is_empty() {
        // With `peak - base` ports the run is the same as with every port until the first
        // session that got `peak` — which it then blocks: the peak is the answer.
        return crate::model::PortRange::new(base, peak).ok();
    }
    (base..=peak)
        .filter_map(|last| crate::model::PortRange::new(base, last).ok())
        .find(|&range| failures(Some(range)).0 == 0)
}
