//! One replication of a scenario as a next-event simulation.
//!
//! Events: a session arrives (open workloads) or a source starts one (closed); the server
//! gives it a port by the OS rule through a [`PortTable`]; the client firewall passes it when
//! the port is inside its group's allowed range. A passing session holds the port for its
//! holding time. A blocked one holds it for the handshake timeout, then fails (error 15) or
//! retries after its backoff. A refused one (no free port up to the server's cap) holds
//! nothing and fails or retries at once. When a key's last session ends, its port is freed,
//! or lingers and is freed later.
//!
//! Memory is bounded by the sessions in flight, never by the sessions simulated.

use std::collections::BTreeSet;

use super::queue::EventQueue;
use super::series::OccupancySeries;
use crate::model::{Closed, FirstFitSet, Port, PortAllocator, PortKey, PortRange, SharingRule};
use crate::scenario::Scenario;
use crate::workload::{Arrival, GroupIndex, Load, SimRng, SimTime, Stream};

/// What the model decided for one attempt of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The server handed out `port` and the client's range passes it.
    Passed { port: Port },
    /// The server handed out `port`, outside the client's range: the session holds it for
    /// the handshake timeout and fails (error 15).
    Blocked { port: Port },
    /// No free port up to the server's cap.
    Refused,
}

impl Decision {
    pub fn port(self) -> Option<Port> {
        match self {
            Self::Passed { port } | Self::Blocked { port } => Some(port),
            Self::Refused => None,
        }
    }
}

/// One attempt of one session, as the engine makes it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Attempt {
    /// The session, numbered in the order sessions are created (from 0).
    pub session: u64,
    /// Its transfer, numbered in start order (from 0).
    pub transfer: u64,
    /// 1 for the first attempt, 2 for the first retry…
    pub attempt: u32,
    pub account: u64,
    pub group: GroupIndex,
    pub at: SimTime,
    /// How long it holds its port when it passes.
    pub holding: SimTime,
    pub decision: Decision,
    /// Started after the warm-up.
    pub counted: bool,
}

/// Watches (and paces) a run. The simulator's is `()`: it does nothing and costs nothing.
/// `blast` runs real sessions from it, on the wall clock.
pub trait Observer {
    /// The next event is at `at`; `false` ends the run there (interrupted).
    fn advance(&mut self, _at: SimTime) -> bool {
        true
    }
    /// An attempt was made (the decision is the model's).
    fn attempt(&mut self, _attempt: &Attempt) {}
    /// The attempt of `session` that held a port ended at `at` (passed: its holding time
    /// is over; blocked: its handshake timeout is).
    fn ended(&mut self, _session: u64, _at: SimTime) {}
    /// A lingering port was freed.
    fn expired(&mut self, _port: Port, _at: SimTime) {}
}

impl Observer for () {}

/// How the server's ports are handed out: the general allocator, or — for the per-session
/// rule, where every key is new — the first-fit index alone (no key map).
pub trait PortTable {
    /// The port for one more session of `key`, or `None` when the server has none free.
    fn acquire(&mut self, key: PortKey) -> Option<Port>;
    /// One session of `key` on `port` ended.
    fn release(&mut self, key: PortKey, port: Port) -> Closed;
    /// A linger period ended; returns the port if it was freed.
    fn expire(&mut self, key: PortKey, port: Port, ticket: u64) -> Option<Port>;
    /// Ports held (by sessions or lingering).
    fn held(&self) -> usize;
}

impl PortTable for PortAllocator {
    fn acquire(&mut self, key: PortKey) -> Option<Port> {
        PortAllocator::acquire(self, key).ok()
    }

    fn release(&mut self, key: PortKey, port: Port) -> Closed {
        PortAllocator::release(self, key).unwrap_or(Closed::Freed { port })
    }

    fn expire(&mut self, key: PortKey, _port: Port, ticket: u64) -> Option<Port> {
        PortAllocator::expire(self, key, ticket)
    }

    fn held(&self) -> usize {
        self.held_ports()
    }
}

/// Ports for the per-session rule: each session is its own key, so its port is all there is
/// to remember, and the session record keeps it.
pub struct SessionPorts {
    free: FirstFitSet,
    base: Port,
    held: usize,
    linger: bool,
}

impl SessionPorts {
    pub fn new(base: Port, max_port: Port, occupied: &BTreeSet<Port>, linger: bool) -> Self {
        let mut free = FirstFitSet::all_free(usize::from(max_port - base) + 1);
        for &port in occupied.range(base..=max_port) {
            free.take(usize::from(port - base));
        }
        Self {
            free,
            base,
            held: 0,
            linger,
        }
    }
}

impl PortTable for SessionPorts {
    fn acquire(&mut self, _key: PortKey) -> Option<Port> {
        let slot = self.free.take_first_free_from(0)?;
        self.held += 1;
        Some(self.base + slot as Port)
    }

    fn release(&mut self, _key: PortKey, port: Port) -> Closed {
        if self.linger {
            return Closed::Lingering { port, ticket: 0 };
        }
        self.free.set_free(usize::from(port - self.base));
        self.held -= 1;
        Closed::Freed { port }
    }

    fn expire(&mut self, _key: PortKey, port: Port, _ticket: u64) -> Option<Port> {
        self.free.set_free(usize::from(port - self.base));
        self.held -= 1;
        Some(port)
    }

    fn held(&self) -> usize {
        self.held
    }
}

/// Sessions and failures of one client group.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
pub struct Tally {
    pub sessions: u64,
    pub failed: u64,
}

/// The counts of one run, as kept per replication (and in shard files).
#[derive(
    Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
pub struct RunCounts {
    /// Sessions started (first attempts).
    pub sessions: u64,
    /// Sessions that finally failed (blocked or refused on their last attempt).
    pub failed: u64,
    /// Attempts the client firewall dropped (the session held a port for the handshake timeout).
    pub blocked: u64,
    /// Attempts the server refused (no free port up to its cap).
    pub refused: u64,
    /// Attempts made after a failure.
    pub retried: u64,
    /// Per client group, index 0 = the clients on `[client].allowed`.
    pub groups: Vec<Tally>,
    /// Transfers started (one per arrival; each opens `sessions_per_transfer` sessions).
    pub transfers: u64,
    /// Transfers with at least one session that finally failed.
    pub transfers_failed: u64,
    /// ∫ held ports dt, in port-seconds.
    pub port_seconds: f64,
    /// Simulated seconds from the end of the warm-up to the last event.
    pub duration_s: f64,
    /// Seconds each server slot (port − base) was held.
    pub slot_busy: Vec<f64>,
}

/// What one run measured: its counts, and what the sweep over range sizes reads off it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunRecord {
    pub counts: RunCounts,
    /// First attempts by the server slot they got (port − base); refused ones are not here.
    pub first_slots: Vec<u64>,
    /// First attempts refused by the server.
    pub first_refused: u64,
    /// Highest port handed out (0 when none was).
    pub peak_port: Port,
    pub series: Option<OccupancySeries>,
}

impl RunRecord {
    /// Failures of the default group had its range been `ports` ports from the base —
    /// valid only for runs where that is exact (see `sweep`).
    pub fn failed_if_limited(&self, ports: usize) -> u64 {
        self.first_refused + self.first_slots.iter().skip(ports).sum::<u64>()
    }
}

/// What a run may vary: the default group's range (`None` = everything passes).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunSpec {
    pub allowed: Option<PortRange>,
    /// Record held ports over time (for plots).
    pub series: bool,
}

/// Records addressed by a `u32` index that stays put; freed slots are reused, so memory
/// follows what is in flight, not what has passed.
#[derive(Debug)]
struct Slab<T> {
    items: Vec<T>,
    vacant: Vec<u32>,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Self {
            items: Vec::new(),
            vacant: Vec::new(),
        }
    }
}

impl<T> Slab<T> {
    fn insert(&mut self, item: T) -> u32 {
        match self.vacant.pop() {
            Some(slot) => {
                self.items[slot as usize] = item;
                slot
            }
            None => {
                self.items.push(item);
                (self.items.len() - 1) as u32
            }
        }
    }

    /// Frees `slot` for reuse; its record stays readable until then.
    fn free(&mut self, slot: u32) {
        self.vacant.push(slot);
    }
}

impl<T> std::ops::Index<u32> for Slab<T> {
    type Output = T;

    fn index(&self, slot: u32) -> &T {
        &self.items[slot as usize]
    }
}

impl<T> std::ops::IndexMut<u32> for Slab<T> {
    fn index_mut(&mut self, slot: u32) -> &mut T {
        &mut self.items[slot as usize]
    }
}

/// Kept to 8 bytes: the event heap moves these around on every step.
#[derive(Debug, Clone, Copy)]
enum Event {
    Arrival,
    SourceStart {
        source: u32,
    },
    End {
        session: u32,
    },
    Retry {
        session: u32,
    },
    /// A linger period ends; the index is into `Engine::lingering`.
    Expire {
        linger: u32,
    },
}

/// A key whose port lingers after its last session.
#[derive(Debug, Clone, Copy)]
struct Linger {
    key: PortKey,
    port: Port,
    ticket: u64,
}

#[derive(Debug, Clone, Copy)]
struct Session {
    /// The session's number ([`Attempt::session`]).
    id: u64,
    account: u64,
    key: PortKey,
    port: Port,
    passed: bool,
    group: GroupIndex,
    attempt: u32,
    holding: SimTime,
    /// Index into `Engine::transfers`.
    transfer: u32,
    /// Started after the warm-up: its outcome is counted.
    counted: bool,
}

/// A transfer: `sessions_per_transfer` sessions opened at once by one client.
#[derive(Debug, Clone, Copy)]
struct Transfer {
    id: u64,
    /// Sessions not yet over.
    remaining: u32,
    /// Some session of it finally failed.
    failed: bool,
    /// The closed-workload source that started it.
    source: Option<u32>,
    counted: bool,
    /// How long its source waits after it before thinking (see `failed`).
    wait: SimTime,
}

struct Engine<'a, 'o, P, O> {
    scenario: &'a Scenario,
    workload: Stream<'a>,
    observer: &'o mut O,
    next_transfer: u64,
    spec: RunSpec,
    ports: P,
    queue: EventQueue<Event>,
    sessions: Slab<Session>,
    lingering: Slab<Linger>,
    transfers: Slab<Transfer>,
    sessions_per_transfer: u32,
    next_id: u64,
    /// Counted transfers (arrivals) started so far.
    started: u64,
    warmup: SimTime,
    record: RunRecord,
    last_change: SimTime,
    taken_at: Vec<SimTime>,
    /// Integer accumulators (exact, and cheaper than floating point on every event).
    port_nanos: u128,
    slot_busy_nanos: Vec<u64>,
    handshake: SimTime,
    rng: SimRng,
    /// Copied out of the scenario: read on every event.
    rule: SharingRule,
    base: Port,
}

/// Runs one replication on the given random stream (derive it with `replication_rng`).
pub fn run(scenario: &Scenario, spec: RunSpec, rng: SimRng) -> RunRecord {
    run_observed(scenario, Load::Scenario, spec, rng, &mut ())
}

/// Runs one replication of `load`, telling `observer` every attempt and end as it happens.
pub fn run_observed<O: Observer>(
    scenario: &Scenario,
    load: Load,
    spec: RunSpec,
    rng: SimRng,
    observer: &mut O,
) -> RunRecord {
    let server = &scenario.server;
    let linger = server.linger.is_some();
    let workload = Stream::new(&scenario.workload, &scenario.client.groups, load);
    if scenario.rule() == SharingRule::PerSession {
        let ports = SessionPorts::new(server.base_port, server.max_port, &server.occupied, linger);
        Engine::new(scenario, workload, spec, ports, rng, observer).run()
    } else {
        let ports =
            PortAllocator::new(server.allocator()).expect("validated scenario has a valid server");
        Engine::new(scenario, workload, spec, ports, rng, observer).run()
    }
}

impl<'a, 'o, P: PortTable, O: Observer> Engine<'a, 'o, P, O> {
    fn new(
        scenario: &'a Scenario,
        workload: Stream<'a>,
        spec: RunSpec,
        ports: P,
        rng: SimRng,
        observer: &'o mut O,
    ) -> Self {
        Self {
            scenario,
            sessions_per_transfer: workload.sessions_per_transfer(),
            warmup: workload.warmup(),
            handshake: workload.handshake(),
            workload,
            observer,
            next_transfer: 0,
            spec,
            ports,
            queue: EventQueue::default(),
            sessions: Slab::default(),
            lingering: Slab::default(),
            transfers: Slab::default(),
            next_id: 0,
            started: 0,
            record: RunRecord {
                counts: RunCounts {
                    groups: vec![Tally::default(); scenario.client.groups.len() + 1],
                    ..RunCounts::default()
                },
                series: spec.series.then(OccupancySeries::default),
                ..RunRecord::default()
            },
            last_change: SimTime::ZERO,
            taken_at: Vec::new(),
            port_nanos: 0,
            slot_busy_nanos: Vec::new(),
            rng,
            rule: scenario.rule(),
            base: scenario.server.base_port,
        }
    }

    fn run(mut self) -> RunRecord {
        // The pending arrival of an open workload: drawn one ahead, scheduled as an event.
        let mut pending = self.workload.next_arrival(&mut self.rng);
        if let Some(a) = pending {
            self.schedule_arrival(a.at);
        }
        for source in 0..self.workload.sources() {
            self.queue
                .schedule_in(SimTime::ZERO, Event::SourceStart { source });
        }
        while let Some(at) = self.queue.next_at() {
            if !self.observer.advance(at) {
                break;
            }
            let Some((now, event)) = self.queue.pop() else {
                break;
            };
            self.account_time(now);
            match event {
                Event::Arrival => {
                    let Some(arrival) = pending.take() else {
                        continue;
                    };
                    if !self.workload.may_start(self.started, now) {
                        continue;
                    }
                    self.start_transfer(arrival, None);
                    pending = self.workload.next_arrival(&mut self.rng);
                    if let Some(next) = pending {
                        // A trace may repeat a start time; never schedule into the past.
                        self.schedule_arrival(next.at.since(now));
                    }
                }
                Event::SourceStart { source } => {
                    if !self.workload.may_start(self.started, now) {
                        continue;
                    }
                    let arrival = self.workload.source_transfer(source, &mut self.rng);
                    self.start_transfer(arrival, Some(source));
                }
                Event::End { session } => self.end(session),
                Event::Retry { session } => {
                    if self.sessions[session].counted {
                        self.record.counts.retried += 1;
                    }
                    self.attempt(session);
                }
                Event::Expire { linger } => {
                    let Linger { key, port, ticket } = self.lingering[linger];
                    self.lingering.free(linger);
                    if let Some(port) = self.ports.expire(key, port, ticket) {
                        self.port_freed(port, now);
                        self.observer.expired(port, now);
                    }
                }
            }
        }
        self.record.counts.duration_s = self.queue.now().since(self.warmup).as_secs_f64();
        self.record.counts.port_seconds = self.port_nanos as f64 / 1e9;
        self.record.counts.slot_busy = self
            .slot_busy_nanos
            .iter()
            .map(|&ns| ns as f64 / 1e9)
            .collect();
        self.record
    }

    /// The one pending arrival waits beside the heap (see [`EventQueue::schedule_aside`]).
    fn schedule_arrival(&mut self, delay: SimTime) {
        if let Err(event) = self.queue.schedule_aside(delay, Event::Arrival) {
            self.queue.schedule_in(delay, event);
        }
    }

    /// Adds held-ports × elapsed time since the last event.
    fn account_time(&mut self, now: SimTime) {
        let held = self.ports.held();
        // Occupancy counts from the end of the warm-up.
        let from = self.last_change.max(self.warmup);
        let elapsed = now.since(from);
        if elapsed > SimTime::ZERO {
            self.port_nanos += held as u128 * u128::from(elapsed.as_nanos());
            if let Some(series) = &mut self.record.series {
                series.add(from, now, held);
            }
        }
        self.last_change = now;
    }

    /// Opens a transfer's sessions, one after another at this instant.
    fn start_transfer(&mut self, arrival: Arrival, source: Option<u32>) {
        let Arrival {
            account,
            group,
            holding,
            ..
        } = arrival;
        let counted = self.queue.now() >= self.warmup;
        if counted {
            self.started += 1;
            self.record.counts.transfers += 1;
        }
        let transfer = Transfer {
            id: self.next_transfer,
            remaining: self.sessions_per_transfer,
            failed: false,
            source,
            counted,
            wait: SimTime::ZERO,
        };
        self.next_transfer += 1;
        let transfer = self.transfers.insert(transfer);
        for _ in 0..self.sessions_per_transfer {
            let id = self.new_session(account, group, holding, transfer, counted);
            self.attempt(id);
        }
    }

    fn new_session(
        &mut self,
        account: u64,
        group: GroupIndex,
        holding: SimTime,
        transfer: u32,
        counted: bool,
    ) -> u32 {
        if counted {
            self.record.counts.sessions += 1;
            self.record.counts.groups[group].sessions += 1;
        }
        let id = self.next_id;
        self.next_id += 1;
        let key = self.rule.key(crate::model::SessionRef {
            session: id,
            account,
        });
        let session = Session {
            id,
            account,
            key,
            port: 0,
            passed: false,
            group,
            attempt: 0,
            holding,
            transfer,
            counted,
        };
        self.sessions.insert(session)
    }

    fn allowed(&self, group: GroupIndex) -> Option<PortRange> {
        match group {
            0 => self.spec.allowed,
            g => Some(self.scenario.client.groups[g - 1].allowed),
        }
    }

    fn attempt(&mut self, id: u32) {
        let now = self.queue.now();
        let held_before = self.ports.held();
        let session = self.sessions[id];
        let first = session.attempt == 0;
        self.sessions[id].attempt += 1;
        let Some(port) = self.ports.acquire(session.key) else {
            if session.counted {
                self.record.counts.refused += 1;
            }
            if first && session.counted {
                self.record.first_refused += 1;
            }
            self.observe(id, Decision::Refused);
            self.failed(id, true);
            return;
        };
        let slot = usize::from(port - self.base);
        if self.ports.held() > held_before {
            if self.taken_at.len() <= slot {
                self.taken_at.resize(slot + 1, SimTime::ZERO);
            }
            self.taken_at[slot] = now;
            self.record.peak_port = self.record.peak_port.max(port);
        }
        if first && session.counted {
            if self.record.first_slots.len() <= slot {
                self.record.first_slots.resize(slot + 1, 0);
            }
            self.record.first_slots[slot] += 1;
        }
        let passed = self
            .allowed(session.group)
            .is_none_or(|range| range.contains(port));
        let s = &mut self.sessions[id];
        s.port = port;
        s.passed = passed;
        self.observe(
            id,
            if passed {
                Decision::Passed { port }
            } else {
                Decision::Blocked { port }
            },
        );
        if passed {
            self.queue
                .schedule_in(session.holding, Event::End { session: id });
        } else {
            if session.counted {
                self.record.counts.blocked += 1;
            }
            self.queue
                .schedule_in(self.handshake, Event::End { session: id });
        }
    }

    /// Tells the observer about the attempt just made.
    fn observe(&mut self, id: u32, decision: Decision) {
        let session = self.sessions[id];
        let attempt = Attempt {
            session: session.id,
            transfer: self.transfers[session.transfer].id,
            attempt: session.attempt,
            account: session.account,
            group: session.group,
            at: self.queue.now(),
            holding: session.holding,
            decision,
            counted: session.counted,
        };
        self.observer.attempt(&attempt);
    }

    fn end(&mut self, id: u32) {
        let now = self.queue.now();
        let session = self.sessions[id];
        self.observer.ended(session.id, now);
        match self.ports.release(session.key, session.port) {
            Closed::Freed { port } => self.port_freed(port, now),
            Closed::Lingering { port, ticket } => {
                let linger = self.scenario.server.linger.map_or(0.0, |d| d.as_secs_f64());
                let record = Linger {
                    key: session.key,
                    port,
                    ticket,
                };
                let index = self.lingering.insert(record);
                self.queue.schedule_in(
                    SimTime::from_secs_f64(linger),
                    Event::Expire { linger: index },
                );
            }
            Closed::StillShared { .. } => {}
        }
        if session.passed {
            self.finish(id, SimTime::ZERO);
        } else {
            self.failed(id, false);
        }
    }

    fn port_freed(&mut self, port: Port, now: SimTime) {
        let slot = usize::from(port - self.base);
        if self.slot_busy_nanos.len() <= slot {
            self.slot_busy_nanos.resize(slot + 1, 0);
        }
        let taken = self.taken_at[slot].max(self.warmup);
        // Saturating: ports held until the end of simulated time add up past a u64.
        self.slot_busy_nanos[slot] =
            self.slot_busy_nanos[slot].saturating_add(now.since(taken).as_nanos());
    }

    /// An attempt failed: retry after the backoff, or give up.
    fn failed(&mut self, id: u32, refused: bool) {
        let session = self.sessions[id];
        if let Some(wait) = self.workload.retry_after(session.attempt) {
            self.queue.schedule_in(wait, Event::Retry { session: id });
            return;
        }
        if session.counted {
            self.record.counts.failed += 1;
            self.record.counts.groups[session.group].failed += 1;
        }
        self.transfers[session.transfer].failed = true;
        // A closed source whose session the server refused waits the handshake timeout
        // (as a blocked one did) before it thinks and starts the next.
        let wait = if refused {
            self.handshake
        } else {
            SimTime::ZERO
        };
        self.finish(id, wait);
    }

    /// The session is over. When it was its transfer's last, a closed source starts its next
    /// transfer after its think time.
    fn finish(&mut self, id: u32, wait: SimTime) {
        self.sessions.free(id);
        let index = self.sessions[id].transfer;
        let transfer = &mut self.transfers[index];
        transfer.remaining -= 1;
        transfer.wait = transfer.wait.max(wait);
        if transfer.remaining > 0 {
            return;
        }
        let Transfer {
            failed,
            source,
            counted,
            wait,
            ..
        } = *transfer;
        self.transfers.free(index);
        if counted && failed {
            self.record.counts.transfers_failed += 1;
        }
        if let Some(source) = source {
            let think = self.workload.think(&mut self.rng);
            self.queue
                .schedule_in(wait.after(think), Event::SourceStart { source });
        }
    }
}
