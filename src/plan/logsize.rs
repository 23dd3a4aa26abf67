//! Sizing from what a server's transfer log shows: every logged session is replayed, in the
//! log's order, through the first-fit [`PortAllocator`] under the server OS's sharing rule.
//! The most ports held at once is what the range needed then; with growth it is what to
//! open. When the log carries the server's UDP port for each session (`local=` in a
//! server's log, `peer=` in a client's), the port the model hands each session is compared
//! with the port the real server handed it: a check of the model against the real server.

use std::collections::HashMap;
use std::net::IpAddr;

use serde::Serialize;

use crate::model::{AllocatorConfig, Port, PortAllocator, SessionRef};
use crate::scenario::translog::{Ending, LoggedSession};

use super::ServerSpec;

/// Which end of the log's sessions is the transfer server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogSide {
    /// A server's log: `local=` is the server's UDP port.
    Server,
    /// A client's log: `peer=` is the server's UDP port.
    Client,
}

impl LogSide {
    pub fn name(self) -> &'static str {
        match self {
            Self::Server => "server",
            Self::Client => "client",
        }
    }
}

/// Sessions disagreements named in a report.
pub const NAMED_DISAGREEMENTS: usize = 10;

/// One server's load in the log.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct ServerLoad {
    /// The server's address (from the side that is the server's), when known.
    pub address: Option<IpAddr>,
    pub sessions: u64,
    /// Most sessions running at once, and most ports the model held at once for them.
    pub peak_sessions: u64,
    pub peak_ports: u64,
    /// When the ports peaked (seconds since the Unix epoch, the log's clock).
    pub peak_at: f64,
}

/// A session whose real port is not the one the model hands it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct PortDisagreement {
    pub uuid: String,
    pub file: String,
    pub line: u64,
    pub real: Port,
    pub model: Option<Port>,
}

/// The model's ports against the real server's, session by session.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct PortComparison {
    pub side: LogSide,
    /// How the side was chosen: given, or detected and why.
    pub side_why: String,
    pub compared: u64,
    pub agree: u64,
    pub disagree: u64,
    pub first: Vec<PortDisagreement>,
    /// Ports below the highest the real server handed out that it never handed out, and
    /// that the model does not know as occupied: most likely held by another service
    /// (`--occupied`), which makes the model hand out lower ports than the server did.
    pub never_used: Vec<Port>,
}

/// What the log says about the ports needed.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct LogSizing {
    pub sessions: u64,
    pub failed: u64,
    /// Failed with error 15 (the UDP data timeout: often a firewall range too narrow).
    pub error_15: u64,
    /// Sessions whose log names no user: each counted as an account of its own (the worst
    /// case where accounts share ports).
    pub without_user: u64,
    pub first_start: f64,
    pub last_stop: f64,
    /// Per server address (one entry when the server's side is unknown).
    pub servers: Vec<ServerLoad>,
    /// The most ports any one server held at once: the range the log needed.
    pub peak_ports: u64,
    /// Sessions the model's server could not give a port (its cap).
    pub refused: u64,
    pub comparison: Option<PortComparison>,
    /// Why there is no comparison, when there is none.
    pub no_comparison: Option<String>,
}

/// Which side is the server's: `given`, else the side whose ports all lie in the server's
/// base..max range while the other's do not.
pub fn side_of(
    server: &ServerSpec,
    sessions: &[LoggedSession],
    given: Option<LogSide>,
) -> Result<(LogSide, String), String> {
    if let Some(side) = given {
        return Ok((side, format!("--log-side {}, as given", side.name())));
    }
    // The server hands out ports from its base, never more than one per session running
    // at once, and skips occupied ones (some the model may not know of: twice as many, and
    // ten, leave room for them): a client's ephemeral ports lie beyond.
    let most = most_at_once(sessions) * 2 + 10 + server.occupied.len() as u64;
    let last = (u64::from(server.base_port) + most.saturating_sub(1))
        .min(u64::from(server.max_port)) as Port;
    let in_range = |port: Option<Port>| port.is_some_and(|p| p >= server.base_port && p <= last);
    let all = |f: &dyn Fn(&LoggedSession) -> bool| sessions.iter().all(f);
    let local = all(&|s| in_range(s.local.map(|a| a.port())));
    let peer = all(&|s| in_range(s.peer.map(|a| a.port())));
    let range = format!("{}-{last}", server.base_port);
    match (local, peer) {
        (true, false) => Ok((
            LogSide::Server,
            format!("detected: every local= port is in {range}, the server's (a server's log)"),
        )),
        (false, true) => Ok((
            LogSide::Client,
            format!("detected: every peer= port is in {range}, the server's (a client's log)"),
        )),
        (true, true) => Err(format!(
            "both local= and peer= ports are all in {range}: give --log-side server|client"
        )),
        (false, false) => Err(format!(
            "neither local= nor peer= ports are all in {range} (or the log does not give \
             them), the ports a server hands out for this many sessions: give --log-side \
             server|client to compare"
        )),
    }
}

/// The events of `sessions` (indices into it) in the log's order: by time; at one time,
/// stops before starts (a port a session released is free again for the next one the
/// server logged), except a session's own stop, which never comes before its start.
fn events(
    sessions: &[LoggedSession],
    members: impl Iterator<Item = usize>,
) -> Vec<(f64, u8, usize)> {
    let mut events = Vec::new();
    for i in members {
        let s = &sessions[i];
        events.push((s.start, 1, i));
        if s.stop > s.start {
            events.push((s.stop, 0, i));
        } else {
            events.push((s.start, 2, i));
        }
    }
    events.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    events
}

/// Most sessions running at once.
fn most_at_once(sessions: &[LoggedSession]) -> u64 {
    let (mut running, mut most) = (0u64, 0u64);
    for (_, kind, _) in events(sessions, 0..sessions.len()) {
        if kind == 1 {
            running += 1;
            most = most.max(running);
        } else {
            running = running.saturating_sub(1);
        }
    }
    most
}

/// Replays the sessions through the model's allocator; `side` names the server's end.
pub fn size(
    server: &ServerSpec,
    sessions: &[LoggedSession],
    side: Result<(LogSide, String), String>,
    file_name: impl Fn(usize) -> String,
) -> LogSizing {
    let known = side.as_ref().ok().map(|(side, _)| *side);
    let server_end = move |s: &LoggedSession| match known {
        Some(LogSide::Server) => s.local,
        Some(LogSide::Client) => s.peer,
        None => None,
    };
    // Accounts by name; a session without one is an account of its own.
    let account_of = crate::scenario::translog::accounts(sessions);
    let without_user = sessions.iter().filter(|s| s.user.is_none()).count() as u64;
    // One allocator per server address (sessions to different servers share no ports).
    let mut groups: Vec<(Option<IpAddr>, Vec<usize>)> = Vec::new();
    let mut group_of: HashMap<Option<IpAddr>, usize> = HashMap::new();
    for (i, s) in sessions.iter().enumerate() {
        let address = server_end(s).map(|a| a.ip());
        let g = *group_of.entry(address).or_insert_with(|| {
            groups.push((address, Vec::new()));
            groups.len() - 1
        });
        groups[g].1.push(i);
    }
    let mut model_port: Vec<Option<Port>> = vec![None; sessions.len()];
    let mut servers = Vec::new();
    let mut refused = 0;
    for (address, members) in &groups {
        let config = AllocatorConfig::new(server.rule(), server.base_port)
            .with_occupied(server.occupied.iter().copied())
            .with_max_port(server.max_port);
        let Ok(mut allocator) = PortAllocator::new(config) else {
            continue;
        };
        let (mut running, mut peak_sessions, mut peak_ports, mut peak_at) = (0u64, 0, 0, 0.0);
        for (at, kind, i) in events(sessions, members.iter().copied()) {
            let session = SessionRef {
                session: i as u64,
                account: account_of[i],
            };
            if kind == 1 {
                running += 1;
                peak_sessions = peak_sessions.max(running);
                match allocator.open(session) {
                    Ok(port) => model_port[i] = Some(port),
                    Err(_) => refused += 1,
                }
                let held = allocator.held_ports() as u64;
                if held > peak_ports {
                    peak_ports = held;
                    peak_at = at;
                }
            } else {
                running -= 1;
                if model_port[i].is_some() {
                    let _ = allocator.close(session);
                }
            }
        }
        servers.push(ServerLoad {
            address: *address,
            sessions: members.len() as u64,
            peak_sessions,
            peak_ports,
            peak_at,
        });
    }
    let (comparison, no_comparison) = match side {
        Ok((side, side_why)) => {
            let mut comparison = PortComparison {
                side,
                side_why,
                compared: 0,
                agree: 0,
                disagree: 0,
                first: Vec::new(),
                never_used: Vec::new(),
            };
            let mut used = std::collections::BTreeSet::new();
            for (i, s) in sessions.iter().enumerate() {
                let Some(real) = server_end(s).map(|a| a.port()) else {
                    continue;
                };
                comparison.compared += 1;
                used.insert(real);
                if model_port[i] == Some(real) {
                    comparison.agree += 1;
                } else {
                    comparison.disagree += 1;
                    if comparison.first.len() < NAMED_DISAGREEMENTS {
                        comparison.first.push(PortDisagreement {
                            uuid: s.uuid.clone(),
                            file: file_name(s.file),
                            line: s.line,
                            real,
                            model: model_port[i],
                        });
                    }
                }
            }
            if let Some(&highest) = used.iter().next_back() {
                comparison.never_used = (server.base_port..highest)
                    .filter(|p| !used.contains(p) && !server.occupied.contains(p))
                    .take(1000)
                    .collect();
            }
            (Some(comparison), None)
        }
        Err(why) => (None, Some(why)),
    };
    let failed = sessions
        .iter()
        .filter(|s| matches!(s.ending, Ending::Failed { .. }))
        .count() as u64;
    let error_15 = sessions
        .iter()
        .filter(|s| matches!(s.ending, Ending::Failed { code: Some(15), .. }))
        .count() as u64;
    LogSizing {
        sessions: sessions.len() as u64,
        failed,
        error_15,
        without_user,
        first_start: sessions
            .iter()
            .map(|s| s.start)
            .fold(f64::INFINITY, f64::min),
        last_stop: sessions
            .iter()
            .map(|s| s.stop)
            .fold(f64::NEG_INFINITY, f64::max),
        peak_ports: servers.iter().map(|s| s.peak_ports).max().unwrap_or(0),
        servers,
        refused,
        comparison,
        no_comparison,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ServerOs;

    fn session(uuid: &str, start: f64, stop: f64, user: &str, server_port: Port) -> LoggedSession {
        LoggedSession {
            uuid: uuid.into(),
            start,
            stop,
            user: (!user.is_empty()).then(|| user.to_string()),
            local: Some(format!("10.0.0.5:{server_port}").parse().unwrap()),
            peer: Some("10.0.0.9:51000".parse().unwrap()),
            ending: Ending::Success,
            file: 0,
            line: 1,
        }
    }

    /// Three overlapping sessions of two users, then one after a release.
    fn sessions() -> Vec<LoggedSession> {
        vec![
            session("a", 0.0, 100.0, "alice", 33001),
            session("b", 10.0, 50.0, "bob", 33002),
            session("c", 20.0, 60.0, "alice", 33003),
            // Starts when b stops: a Windows server gives it b's port again.
            session("d", 50.0, 70.0, "carol", 33002),
        ]
    }

    #[test]
    fn a_session_shorter_than_the_logs_clock_ends_after_it_starts() {
        // Start and stop in the same millisecond: its port is released all the same.
        let log: Vec<LoggedSession> = (0..5)
            .map(|i| session(&i.to_string(), f64::from(i), f64::from(i), "", 33001))
            .collect();
        let sizing = size(
            &ServerSpec::new(ServerOs::Windows),
            &log,
            Err(String::new()),
            |_| String::new(),
        );
        assert_eq!((sizing.peak_ports, sizing.servers[0].peak_sessions), (1, 1));
        assert_eq!(most_at_once(&log), 1);
    }

    #[test]
    fn the_peak_follows_the_os_rule() {
        let log = sessions();
        for (os, peak) in [
            (ServerOs::Windows, 3),
            (ServerOs::Macos, 2),
            (ServerOs::Linux, 1),
        ] {
            let server = ServerSpec::new(os);
            let sizing = size(&server, &log, Err("no".into()), |_| "f".into());
            assert_eq!(sizing.peak_ports, peak, "{os}");
            assert_eq!(sizing.servers[0].peak_sessions, 3);
        }
    }

    #[test]
    fn the_model_is_compared_with_the_real_ports() {
        let log = sessions();
        let server = ServerSpec::new(ServerOs::Windows);
        let side = side_of(&server, &log, None);
        assert_eq!(side.as_ref().unwrap().0, LogSide::Server);
        let sizing = size(&server, &log, side, |_| "server.log".into());
        let comparison = sizing.comparison.unwrap();
        assert_eq!((comparison.compared, comparison.agree), (4, 4));
        // A real server that skipped 33002 (another service held it): the model, not told,
        // disagrees for the sessions it placed there, and says which.
        let mut skipped = sessions();
        skipped[1].local = Some("10.0.0.5:33003".parse().unwrap());
        skipped[2].local = Some("10.0.0.5:33004".parse().unwrap());
        skipped[3].local = Some("10.0.0.5:33003".parse().unwrap());
        let sizing = size(&server, &skipped, side_of(&server, &skipped, None), |_| {
            "s".into()
        });
        let comparison = sizing.comparison.unwrap();
        assert_eq!((comparison.agree, comparison.disagree), (1, 3));
        assert_eq!(comparison.first[0].real, 33003);
        assert_eq!(comparison.first[0].model, Some(33002));
        assert_eq!(comparison.never_used, [33002]);
        let mut told = ServerSpec::new(ServerOs::Windows);
        told.occupied.insert(33002);
        let sizing = size(&told, &skipped, side_of(&told, &skipped, None), |_| {
            "s".into()
        });
        assert_eq!(sizing.comparison.unwrap().disagree, 0);
    }

    #[test]
    fn the_side_is_given_or_told_or_refused() {
        let server = ServerSpec::new(ServerOs::Windows);
        let mut log = sessions();
        for s in &mut log {
            std::mem::swap(&mut s.local, &mut s.peer);
        }
        assert_eq!(side_of(&server, &log, None).unwrap().0, LogSide::Client);
        log[0].local = Some("10.0.0.9:33001".parse().unwrap());
        for s in &mut log {
            s.local = Some("10.0.0.9:33001".parse().unwrap());
        }
        assert!(
            side_of(&server, &log, None)
                .unwrap_err()
                .contains("--log-side")
        );
        assert_eq!(
            side_of(&server, &log, Some(LogSide::Client)).unwrap().1,
            "--log-side client, as given"
        );
        let nameless: Vec<LoggedSession> = sessions()
            .into_iter()
            .map(|mut s| {
                s.user = None;
                s
            })
            .collect();
        // Without names every session is its own account: macOS needs as many as Windows.
        let mac = size(
            &ServerSpec::new(ServerOs::Macos),
            &nameless,
            Err(String::new()),
            |_| String::new(),
        );
        assert_eq!((mac.peak_ports, mac.without_user), (3, 4));
    }
}
