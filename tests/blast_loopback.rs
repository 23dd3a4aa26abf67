//! `blast` on loopback: real sockets, the client firewall modelled in process. Each test uses
//! its own base port, above the kernel's ephemeral range (32768-60999), so that they run in
//! parallel and no other socket on the machine takes a port the server hands out.

use std::time::Duration;

use udprange::blast::{BlastConfig, BlastReport, Outcome};
use udprange::model::{PortRange, ServerOs};

mod common;
use common::run_blast as run;

fn config(os: ServerOs, base: u16, allowed_ports: u64, clients: u32, accounts: u32) -> BlastConfig {
    BlastConfig {
        os,
        base_port: base,
        allowed: Some(PortRange::from_count(base, allowed_ports).unwrap()),
        clients,
        accounts,
        duration: Duration::from_millis(1500),
        handshake_timeout: Duration::from_secs(1),
        ..BlastConfig::seed_example()
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
    cfg.max_port = 61303;
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
    cfg.datagram = 1472;
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

/// Hostile datagrams (old sequence numbers, a send time past the end of time, absurd DONE
/// and NACK fields, garbage) do not bring the receiver down: it still answers afterwards.
#[test]
fn the_server_survives_hostile_datagrams() {
    use std::net::{Ipv4Addr, SocketAddr};
    use std::time::Instant;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use udprange::blast::server::{Server, ServerOptions};
    use udprange::model::{AllocatorConfig, SharingRule};
    use udprange::wire::fasp::{self, ControlRepr, Message, Repr, SeqRange};

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let config = AllocatorConfig::new(SharingRule::PerSession, 61501);
        let limits = ServerOptions {
            address: Ipv4Addr::LOCALHOST,
            max_datagrams: 1000,
            delay: None,
        };
        let server = Server::start(config, 0, Instant::now(), limits, None)
            .await
            .unwrap();
        let mut control = tokio::net::TcpStream::connect(server.control_addr())
            .await
            .unwrap();
        let hello = ControlRepr::Hello {
            session: 9,
            account: 0,
            datagram: 1200,
            rate_bps: 0,
        };
        control.write_all(&hello.to_bytes()).await.unwrap();
        let mut frame = [0u8; fasp::CONTROL_LEN];
        control.read_exact(&mut frame).await.unwrap();
        let Ok(ControlRepr::Port { port, .. }) = fasp::parse_control(&frame) else {
            panic!("no port")
        };
        let socket = tokio::net::UdpSocket::bind((Ipv4Addr::new(127, 0, 0, 2), 0))
            .await
            .unwrap();
        let server_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let datagram = |sequence, send_ns, message| Repr {
            session: 9,
            sequence,
            send_ns,
            message,
        };
        let hostile = [
            datagram(500, u64::MAX, Message::Data { payload_len: 0 }),
            datagram(3, 0, Message::Data { payload_len: 0 }),
            datagram(u64::MAX, 0, Message::Data { payload_len: 0 }),
            datagram(
                0,
                0,
                Message::Done {
                    sent: u64::MAX,
                    retransmitted: u64::MAX,
                },
            ),
            datagram(
                0,
                0,
                Message::Nack {
                    missing: vec![SeqRange {
                        first: u64::MAX,
                        count: u32::MAX,
                    }],
                },
            ),
        ];
        let mut buffer = vec![0u8; 2048];
        for repr in &hostile {
            let len = repr.emit(&mut buffer).unwrap();
            socket.send_to(&buffer[..len], server_addr).await.unwrap();
        }
        socket
            .send_to(b"\x01\x01garbage", server_addr)
            .await
            .unwrap();
        // A fresh session on the same port is still acknowledged.
        let probe = Repr {
            session: 10,
            sequence: 0,
            send_ns: 0,
            message: Message::Data { payload_len: 0 },
        };
        let len = probe.emit(&mut buffer).unwrap();
        let mut acknowledged = false;
        for _ in 0..20 {
            socket.send_to(&buffer[..len], server_addr).await.unwrap();
            let mut reply = vec![0u8; 2048];
            while let Ok(Ok((n, _))) = tokio::time::timeout(
                std::time::Duration::from_millis(100),
                socket.recv_from(&mut reply),
            )
            .await
            {
                if let Ok(Repr {
                    session: 10,
                    message: Message::Ack { .. },
                    ..
                }) = fasp::parse(&reply[..n])
                {
                    acknowledged = true;
                }
            }
            if acknowledged {
                break;
            }
        }
        assert!(acknowledged, "the receiver stopped answering");
        drop(control);
        let seen = server.shutdown().await;
        assert!(seen.contains_key(&9) && seen.contains_key(&10));
    });
}
