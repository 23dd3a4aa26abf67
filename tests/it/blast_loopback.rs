//! `blast` on loopback: real sockets, the client firewall modelled in process. Each test uses
//! its own base port, above the kernel's ephemeral range (32768-60999), so that they run in
//! parallel and no other socket on the machine takes a port the server hands out.

use std::time::Duration;

use udprange::blast::{BlastConfig, BlastReport, Outcome, Status};
use udprange::model::{PortRange, ServerOs};
use udprange::scenario::ServerConfig;

use crate::common::run_blast as run;

fn config(os: ServerOs, base: u16, allowed_ports: u64, clients: u32, accounts: u32) -> BlastConfig {
    let seed = BlastConfig::seed_example();
    BlastConfig {
        server: ServerConfig {
            os,
            base_port: base,
            ..seed.server.clone()
        },
        replay: None,
        allowed: Some(PortRange::from_count(base, allowed_ports).unwrap()),
        clients,
        accounts,
        duration: Duration::from_millis(1500),
        handshake_timeout: Duration::from_secs(1),
        ..seed
    }
}

fn outcomes(report: &BlastReport) -> (usize, usize) {
    let ok = report
        .sessions
        .iter()
        .filter(|s| s.outcome == Outcome::Ok)
        .count();
    let blocked = report
        .sessions
        .iter()
        .filter(|s| s.outcome == Outcome::Blocked)
        .count();
    (ok, blocked)
}

/// The seed's example on the wire: 12 clients on windows, 10 ports open → 10 ok, 2 blocked.
#[test]
fn windows_twelve_clients_ten_ports() {
    let report = run(&config(ServerOs::Windows, 61001, 10, 12, 12));
    assert_eq!(outcomes(&report), (10, 2), "{report:#?}");
    let mut ports: Vec<u16> = report.sessions.iter().filter_map(|s| s.port).collect();
    ports.sort();
    assert_eq!(ports, (61001..=61012).collect::<Vec<_>>());
    for s in &report.sessions {
        match s.outcome {
            Outcome::Ok => {
                assert!(s.port.unwrap() <= 61010);
                assert!(s.received > 0 && s.goodput_bps > 1e6, "{s:?}");
                assert!(s.latency_us.is_some());
            }
            _ => {
                assert!(s.port.unwrap() > 61010);
                assert_eq!(s.received, 0);
                assert!(s.filtered > 0);
                assert_eq!(
                    s.error.as_deref(),
                    Some("error 15: Timeout establishing UDP connection")
                );
            }
        }
    }
    assert!(!report.verdict.sufficient);
    assert_eq!(report.verdict.required, PortRange::new(61001, 61012).ok());
    assert_eq!(
        report.verdict.summary,
        "insufficient: 2 of 12 sessions failed (2 blocked (error 15)); the smallest sufficient range is 61001-61012"
    );
}

/// macOS shares per account: 12 clients over 3 accounts pass with 3 ports.
#[test]
fn macos_twelve_clients_three_accounts_three_ports() {
    let report = run(&config(ServerOs::Macos, 61101, 3, 12, 3));
    assert_eq!(outcomes(&report), (12, 0), "{report:#?}");
    let ports: std::collections::BTreeSet<u16> =
        report.sessions.iter().filter_map(|s| s.port).collect();
    assert_eq!(
        ports.into_iter().collect::<Vec<_>>(),
        vec![61101, 61102, 61103]
    );
    assert!(report.verdict.sufficient, "{}", report.verdict.summary);
}

/// linux with port reuse: every session on one port, told apart by session id.
#[test]
fn linux_shares_one_port() {
    let report = run(&config(ServerOs::Linux, 61201, 1, 8, 8));
    assert_eq!(outcomes(&report), (8, 0), "{report:#?}");
    assert!(report.sessions.iter().all(|s| s.port == Some(61201)));
    // One socket for all: loss stays small even when other tests load the machine.
    assert!(
        report
            .sessions
            .iter()
            .all(|s| s.received > 0 && s.lost * 100 <= s.sent),
        "{report:#?}"
    );
    assert_eq!(report.verdict.summary, "range 61201 is sufficient");
}

/// A server cap refuses sessions at once; no client range fixes that, and the verdict says so.
#[test]
fn server_cap_refuses() {
    let mut cfg = config(ServerOs::Windows, 61301, 10, 5, 5);
    cfg.server.max_port = 61303;
    let report = run(&cfg);
    let refused: Vec<_> = report
        .sessions
        .iter()
        .filter(|s| s.outcome == Outcome::Refused)
        .collect();
    assert_eq!((outcomes(&report).0, refused.len()), (3, 2), "{report:#?}");
    assert!(refused.iter().all(|s| s.port.is_none()));
    assert_eq!(
        refused[0].error.as_deref(),
        Some("refused: no free UDP port on the server")
    );
    assert!(
        report.verdict.summary.contains("2 refused by the server"),
        "{}",
        report.verdict.summary
    );
    assert!(
        report.verdict.summary.contains("no client range fixes"),
        "{}",
        report.verdict.summary
    );
}

/// Unpaced senders overload loopback: the report stays clean and counts what was lost.
#[test]
fn overload_is_reported_not_fatal() {
    let mut cfg = config(ServerOs::Windows, 61401, 64, 64, 64);
    cfg.rate_bps = 0;
    cfg.datagram = 1500;
    cfg.duration = Duration::from_millis(800);
    let report = run(&cfg);
    assert_eq!(outcomes(&report), (64, 0), "{}", report.verdict.summary);
    for s in &report.sessions {
        assert!(
            s.sent > 0 && s.received <= s.sent + s.retransmitted,
            "{s:?}"
        );
        assert_eq!(s.lost, s.sent.saturating_sub(s.received), "{s:?}");
    }
    assert!(report.received_per_second > 0.0);
}

/// A server that takes the data but whose acknowledgements never come back (a busy machine,
/// a return path that drops): the client asks over the control connection, learns that its
/// datagrams arrived, and says so — it does not call the range blocked.
#[test]
fn data_that_arrived_unacknowledged_is_not_blocked() {
    use std::net::Ipv4Addr;
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use udprange::blast::client::{self, ClientOutcome, ClientParams};
    use udprange::firewall::model::OutboundFilter;
    use udprange::wire::control::{self, CONTROL_LEN, ControlRepr};

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let outcome = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .unwrap();
        let data = tokio::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .unwrap();
        let data_port = data.local_addr().unwrap().port();
        let control_addr = listener.local_addr().unwrap();
        // The silent server: grants a port, counts datagrams, answers QUERY, never ACKs.
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut frame = [0u8; CONTROL_LEN];
            stream.read_exact(&mut frame).await.unwrap();
            let grant = ControlRepr::Port {
                session: 5,
                port: data_port,
                token: 77,
            };
            stream.write_all(&grant.to_bytes()).await.unwrap();
            let mut received = 0u64;
            let mut buffer = vec![0u8; 2048];
            loop {
                tokio::select! {
                    Ok(_) = data.recv_from(&mut buffer) => received += 1,
                    read = stream.read_exact(&mut frame) => {
                        if read.is_err() {
                            return;
                        }
                        if let Ok(ControlRepr::Query { session }) = control::parse(&frame) {
                            let status = ControlRepr::Status { session, received };
                            stream.write_all(&status.to_bytes()).await.unwrap();
                        }
                    }
                }
            }
        });
        let params = ClientParams {
            index: 1,
            account: 0,
            control: control_addr,
            key: 1,
            rate_bps: 1_000_000,
            datagram: 1000,
            duration: Duration::from_secs(2),
            handshake_timeout: Duration::from_millis(500),
            max_datagrams: 1000,
            address: Ipv4Addr::LOCALHOST,
            policy: udprange::blast::rate::Policy::Fixed,
            min_rate_bps: 0,
            size_bytes: None,
        };
        let (_stop, stopped) = tokio::sync::watch::channel(false);
        let report = client::run(
            params,
            Arc::new(OutboundFilter::new(None)),
            stopped,
            None,
            client::Hooks::default(),
        )
        .await;
        report.outcome
    });
    assert!(
        matches!(outcome, ClientOutcome::Unacknowledged { received } if received > 0),
        "{outcome:?}"
    );
}

/// A port in the range held by another process on this machine is a fact about the test
/// machine, not the user's server: the emulator skips it, the session pushed past the range
/// fails, and the verdict is inconclusive naming the port — never "insufficient".
#[test]
fn a_port_held_on_the_test_machine_is_not_the_ranges_fault() {
    let squatter = std::net::UdpSocket::bind(("127.0.0.1", 62705)).unwrap();
    let report = run(&config(ServerOs::Windows, 62701, 10, 10, 10));
    drop(squatter);
    let (ok, blocked) = outcomes(&report);
    assert_eq!((ok, blocked), (9, 1), "{report:#?}");
    assert!(report.sessions.iter().all(|s| s.port != Some(62705)));
    assert_eq!(report.verdict.status, Status::Inconclusive);
    assert!(
        report
            .verdict
            .summary
            .contains("port(s) 62705 are held by another process on this machine"),
        "{}",
        report.verdict.summary
    );
    assert!(report.notes.iter().any(|n| n.contains("port 62705")));
}
