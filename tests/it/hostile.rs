//! The attack battery: a peer on the same host sends what it likes to the emulator's ports,
//! the clients' sockets and the control port while `udprange blast` runs. Each test asserts
//! that the verdict and the outcomes are what they are without the attack, that what was
//! dropped is counted as rejected, and, where memory is the target, that it stays bounded.
//! Ports 62201+ keep clear of the other tests (and of the bench's 62001+).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use udprange::wire::control::{self, CONTROL_LEN, ControlRepr, RefusedReason};
use udprange::wire::fasp::{self, Message, ReceiverStats, Repr, SeqRange, flags};

const CLIENT_HOST: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// `udprange blast … --format json` on loopback, running.
struct Run {
    child: Child,
}

impl Run {
    fn start(args: &[&str]) -> Self {
        Self::start_with_files(args, None)
    }

    /// With `files`, the process may hold at most that many descriptors (RLIMIT_NOFILE), as
    /// on a host with a low limit.
    fn start_with_files(args: &[&str], files: Option<u64>) -> Self {
        use std::os::unix::process::CommandExt;
        let mut command = Command::new(env!("CARGO_BIN_EXE_udprange"));
        if let Some(files) = files {
            // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
            unsafe {
                command.pre_exec(move || {
                    let limit = libc::rlimit {
                        rlim_cur: files,
                        rlim_max: files,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        let child = command
            .arg("blast")
            .args(args)
            .args(["--format", "json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary runs");
        Self { child }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory in KiB, from /proc.
    fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// The UDP sockets the run's clients have open on 127.0.0.2.
    fn client_sockets(&self) -> Vec<SocketAddr> {
        let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|dir| {
                dir.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                    .filter_map(|l| {
                        let l = l.to_string_lossy().into_owned();
                        Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
                    })
                    .collect()
            })
            .unwrap_or_default();
        let table = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
        table
            .lines()
            .skip(1)
            .filter_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let (address, port) = fields.get(1)?.split_once(':')?;
                let inode = fields.get(9)?;
                (address == "0200007F" && inodes.iter().any(|i| i == inode)).then(|| {
                    let port = u16::from_str_radix(port, 16).ok()?;
                    Some(SocketAddr::from((CLIENT_HOST, port)))
                })?
            })
            .collect()
    }

    /// Waits for the end; the exit code and the JSON report.
    fn finish(self) -> (i32, serde_json::Value) {
        let output = self.child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        let report = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|e| panic!("no JSON report ({e}); stderr: {stderr}"));
        (output.status.code().unwrap_or(-1), report)
    }
}

/// How much the emulator's memory grows during an attack; at most 16 MiB whatever arrives.
struct Memory {
    before: u64,
    peak: u64,
}

impl Memory {
    const BOUND_KIB: u64 = 16 * 1024;

    /// Starts measuring once the run's sessions are up.
    fn start(run: &Run) -> Self {
        std::thread::sleep(Duration::from_millis(300));
        let before = run.rss_kib();
        assert!(before > 0, "could not read the emulator's memory");
        Self {
            before,
            peak: before,
        }
    }

    fn sample(&mut self, run: &Run) {
        self.peak = self.peak.max(run.rss_kib());
    }

    /// Samples once more and asserts the growth is within the bound.
    fn assert_bounded(&mut self, run: &Run) {
        self.sample(run);
        let growth = self.peak.saturating_sub(self.before);
        eprintln!(
            "RSS before the attack {} KiB, peak {} KiB: +{growth} KiB",
            self.before, self.peak
        );
        assert!(
            growth <= Self::BOUND_KIB,
            "the attack grew the emulator's memory by {growth} KiB"
        );
    }
}

fn outcomes(report: &serde_json::Value) -> Vec<(u64, String)> {
    report["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["port"].as_u64().unwrap_or(0),
                s["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn bytes(repr: &Repr) -> Vec<u8> {
    let mut buffer = vec![0u8; repr.buffer_len()];
    repr.emit(&mut buffer).unwrap();
    buffer
}

fn repr(session: u32, token: u64, sequence: u64, message: Message) -> Repr {
    Repr {
        session,
        token,
        sequence,
        send_ns: 0,
        message,
    }
}

fn forged_ack(session: u32, token: u64) -> Vec<u8> {
    bytes(&repr(
        session,
        token,
        0,
        Message::Ack {
            flags: flags::HANDSHAKE,
            stats: ReceiverStats {
                received: 1,
                missing: 0,
                next_expected: 1,
                bytes: 1000,
            },
            echo_ns: 0,
        },
    ))
}

/// A cheap pseudo-random stream for the attacker (its guesses need no quality).
fn guesses(seed: u64) -> impl Iterator<Item = u64> {
    let mut x = seed | 1;
    std::iter::from_fn(move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        Some(x)
    })
}

fn attacker() -> UdpSocket {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    socket.set_nonblocking(true).unwrap();
    socket
}

/// Four clients on windows, two ports open: two ok, two blocked. Forged acknowledgements
/// (guessed ids, guessed tokens, the handshake flag), NACKs and garbage at the clients'
/// sockets, and ACKs for every small session id at every server port, change nothing: the
/// blocked stay blocked (exit 1), the ok sessions' counts are their own, and all of it is
/// counted as rejected.
#[test]
fn forged_acks_and_garbage_do_not_change_the_verdict() {
    let base = 62201u16;
    let run = Run::start(&[
        "--clients",
        "4",
        "--base-port",
        "62201",
        "--allowed",
        "62201-62202",
        "--duration",
        "3s",
        "--handshake-timeout",
        "2s",
        "--rate",
        "5Mbps",
    ]);
    let mut memory = Memory::start(&run);
    let socket = attacker();
    let mut guess = guesses(0x9e37_79b9);
    let until = Instant::now() + Duration::from_millis(2500);
    let mut sent = 0u64;
    let mut seen_clients = 0;
    while Instant::now() < until {
        let clients = run.client_sockets();
        seen_clients = seen_clients.max(clients.len());
        for to in &clients {
            for session in 1..=8 {
                for token in [0, guess.next().unwrap()] {
                    let _ = socket.send_to(&forged_ack(session, token), to);
                }
                let nack = repr(
                    session,
                    0,
                    0,
                    Message::Nack {
                        missing: vec![SeqRange {
                            first: 0,
                            count: u32::MAX,
                        }],
                    },
                );
                let _ = socket.send_to(&bytes(&nack), to);
            }
            let _ = socket.send_to(b"\x02\x03garbage", to);
            sent += 25;
        }
        for port in base..base + 4 {
            let to = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            for session in 1..=8 {
                let _ = socket.send_to(&forged_ack(session, 0), to);
            }
            let _ = socket.send_to(&[0xff; 64], to);
        }
        memory.sample(&run);
        std::thread::sleep(Duration::from_millis(5));
    }
    memory.assert_bounded(&run);
    let (code, report) = run.finish();
    assert!(seen_clients >= 2, "the attacker found no client socket");
    assert!(sent > 0);
    let mut outcomes = outcomes(&report);
    outcomes.sort();
    assert_eq!(
        outcomes,
        vec![
            (62201, "ok".to_string()),
            (62202, "ok".to_string()),
            (62203, "blocked".to_string()),
            (62204, "blocked".to_string()),
        ],
        "{report:#}"
    );
    assert_eq!(code, 1);
    assert_eq!(report["verdict"]["status"], "insufficient");
    assert!(
        report["rejected"]["clients"].as_u64().unwrap() > 0,
        "{report:#}"
    );
    assert!(
        report["rejected"]["server"].as_u64().unwrap() > 0,
        "{report:#}"
    );
    for session in report["sessions"].as_array().unwrap() {
        if session["outcome"] == "ok" {
            let sent = session["sent"].as_u64().unwrap();
            let received = session["received"].as_u64().unwrap();
            assert!(
                received * 100 >= sent * 99 && received <= sent + 1,
                "{session:#}"
            );
        }
    }
}

/// 10 000 DATA datagrams with fresh session ids (and the real sessions' small ids with
/// guessed tokens) and the largest sequence numbers raise the emulator's memory by at most
/// 16 MB and leave the verdict as it was.
#[test]
fn fresh_sessions_and_huge_sequence_numbers_cost_no_memory() {
    let base = 62301u16;
    let run = Run::start(&[
        "--clients",
        "4",
        "--base-port",
        "62301",
        "--allowed",
        "62301-62304",
        "--duration",
        "4s",
        "--rate",
        "5Mbps",
    ]);
    std::thread::sleep(Duration::from_millis(700));
    let mut memory = Memory::start(&run);
    let socket = attacker();
    let mut guess = guesses(0x1234_5678);
    for i in 0..10_000u32 {
        let session = if i % 10 == 0 { i % 5 } else { 1000 + i };
        let sequence = if i % 2 == 0 { u64::MAX - 1 } else { 49_999_999 };
        let datagram = repr(
            session,
            guess.next().unwrap(),
            sequence,
            Message::Data { payload_len: 16 },
        );
        let port = base + (i % 4) as u16;
        let _ = socket.send_to(&bytes(&datagram), (Ipv4Addr::LOCALHOST, port));
        if i % 1000 == 999 {
            memory.sample(&run);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    memory.assert_bounded(&run);
    let (code, report) = run.finish();
    assert_eq!(code, 0, "{report:#}");
    assert!(
        outcomes(&report).iter().all(|(_, o)| o == "ok"),
        "{report:#}"
    );
    assert!(
        report["rejected"]["server"].as_u64().unwrap() >= 9_000,
        "{report:#}"
    );
}

/// DONE with `sent = 2^63` as fast as one core sends it, at every server port, for every
/// small session id: the clients' sending does not suffer and nothing changes.
#[test]
fn a_done_flood_does_not_slow_the_clients() {
    let base = 62401u16;
    let run = Run::start(&[
        "--clients",
        "4",
        "--base-port",
        "62401",
        "--allowed",
        "62401-62404",
        "--duration",
        "3s",
        "--rate",
        "8Mbps",
        "--datagram",
        "1000B",
    ]);
    let mut memory = Memory::start(&run);
    let socket = attacker();
    let mut guess = guesses(77);
    let until = Instant::now() + Duration::from_millis(2500);
    let mut flood = 0u64;
    while Instant::now() < until {
        for session in 1..=4 {
            let done = repr(
                session,
                guess.next().unwrap(),
                0,
                Message::Done {
                    sent: 1 << 63,
                    retransmitted: 1 << 63,
                },
            );
            let done = bytes(&done);
            for port in base..base + 4 {
                if socket.send_to(&done, (Ipv4Addr::LOCALHOST, port)).is_ok() {
                    flood += 1;
                }
            }
        }
        if flood % 4096 < 16 {
            memory.sample(&run);
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    memory.assert_bounded(&run);
    let (code, report) = run.finish();
    eprintln!("sent {flood} forged DONE datagrams");
    assert!(flood > 2_000, "the flood did not happen: {flood}");
    assert_eq!(code, 0, "{report:#}");
    // 8 Mbit/s of 1000-byte datagrams for 3 s: 3000 each.
    for session in report["sessions"].as_array().unwrap() {
        assert_eq!(session["outcome"], "ok", "{session:#}");
        let sent = session["sent"].as_u64().unwrap();
        assert!(
            sent >= 2_700,
            "a client sent only {sent} of 3000: {session:#}"
        );
    }
    assert!(report["rejected"]["server"].as_u64().unwrap() > 0);
}

/// 600 control connections that send one byte and stall, opened before and while the
/// clients arrive, against an emulator that may hold 512 descriptors: every client still
/// gets its session, and the stalled connections are closed and counted.
#[test]
fn slowloris_on_the_control_port_keeps_no_client_out() {
    let control: SocketAddr = (Ipv4Addr::LOCALHOST, 62599).into();
    let run = Run::start_with_files(
        &[
            "--clients",
            "4",
            "--base-port",
            "62501",
            "--allowed",
            "62501-62504",
            "--control-port",
            "62599",
            "--start",
            "staggered",
            "--duration",
            "4s",
            "--rate",
            "2Mbps",
        ],
        Some(512),
    );
    let mut memory = Memory::start(&run);
    let mut held = Vec::new();
    let until = Instant::now() + Duration::from_secs(3);
    while held.len() < 600 && Instant::now() < until {
        match TcpStream::connect_timeout(&control, Duration::from_millis(200)) {
            Ok(mut stream) => {
                let _ = stream.write_all(&[2]);
                held.push(stream);
            }
            Err(_) => std::thread::sleep(Duration::from_millis(2)),
        }
        if held.len() % 50 == 0 {
            memory.sample(&run);
        }
    }
    memory.assert_bounded(&run);
    let (code, report) = run.finish();
    drop(held);
    assert_eq!(code, 0, "{report:#}");
    assert!(
        outcomes(&report).iter().all(|(_, o)| o == "ok"),
        "{report:#}"
    );
    assert!(
        report["rejected"]["server"].as_u64().unwrap() >= 300,
        "{report:#}"
    );
}

/// Talks to an emulator directly: a legitimate client's HELLO from `from`.
fn hello(control: SocketAddr, key: u64) -> (TcpStream, ControlRepr) {
    let socket = std::net::TcpStream::connect(control).unwrap();
    let mut stream = socket;
    let frame = ControlRepr::Hello {
        account: 0,
        datagram: 1000,
        rate_bps: 0,
        key,
    };
    stream.write_all(&frame.to_bytes()).unwrap();
    let mut answer = [0u8; CONTROL_LEN];
    stream.read_exact(&mut answer).unwrap();
    (stream, control::parse(&answer).unwrap())
}

/// A session's own datagrams replayed to another session's port, or to its own port from
/// another socket, count for nobody; a HELLO without the run's key gets no port and takes
/// none from the clients.
#[test]
fn replays_and_wrong_keys_change_nothing() {
    use udprange::blast::server::{Server, ServerOptions};
    use udprange::model::{AllocatorConfig, SharingRule};

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let key = 0x0123_4567_89ab_cdef;
    let server = runtime
        .block_on(Server::start(
            AllocatorConfig::new(SharingRule::PerSession, 62601),
            0,
            ServerOptions::new(Ipv4Addr::LOCALHOST, key),
            None,
        ))
        .unwrap();
    let control = server.control_addr();
    let (_wrong, refused) = hello(control, key ^ 1);
    assert_eq!(
        refused,
        ControlRepr::Refused {
            reason: RefusedReason::Unauthorized
        }
    );
    let (_a_control, a) = hello(control, key);
    let (_b_control, b) = hello(control, key);
    let (
        ControlRepr::Port {
            session: a_id,
            port: a_port,
            token: a_token,
        },
        ControlRepr::Port {
            session: b_id,
            port: b_port,
            ..
        },
    ) = (a, b)
    else {
        panic!("no ports: {a:?} {b:?}")
    };
    // The refused HELLO took no port: the two clients have the first two.
    assert_eq!((a_port, b_port), (62601, 62602));
    assert_ne!(a_id, b_id);
    // The control connection comes from 127.0.0.1 here, so the datagrams do too.
    let a_socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let other = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let a_server = SocketAddr::from((Ipv4Addr::LOCALHOST, a_port));
    let b_server = SocketAddr::from((Ipv4Addr::LOCALHOST, b_port));
    for sequence in 0..10 {
        let data = bytes(&repr(
            a_id,
            a_token,
            sequence,
            Message::Data { payload_len: 100 },
        ));
        a_socket.send_to(&data, a_server).unwrap();
        std::thread::sleep(Duration::from_millis(2));
        a_socket.send_to(&data, b_server).unwrap();
        other.send_to(&data, a_server).unwrap();
    }
    a_socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut reply = [0u8; 2048];
    let (n, from) = a_socket.recv_from(&mut reply).unwrap();
    assert_eq!(from, a_server);
    let ack = fasp::parse(&reply[..n]).unwrap();
    assert_eq!((ack.session, ack.token), (a_id, a_token));
    std::thread::sleep(Duration::from_millis(100));
    let record = runtime.block_on(server.shutdown());
    assert_eq!(record.sessions[&a_id].stats.received, 10);
    assert_eq!(record.sessions[&b_id].stats.received, 0);
    // 10 replays at B's port, 10 from a stranger at A's port, one HELLO with a wrong key.
    assert_eq!(record.rejected, 21);
}

/// A server that lies in its description (`blast --server` talks to hosts it does not
/// control): no range, more occupied ports than it has, garbage, or silence. Each is one
/// clear error within the bound, never a run on made-up ports and never a hang.
#[test]
fn a_lying_server_description_is_refused_in_bounded_time() {
    use udprange::blast::client::describe;
    use udprange::model::ServerOs;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let server = |base: u16, max: u16, occupied: u32| ControlRepr::Server {
        os: ServerOs::Windows,
        udp_port_reuse: false,
        base_port: base,
        max_port: max,
        max_sessions: 10,
        occupied,
    };
    let lies: Vec<(Vec<u8>, &str)> = vec![
        (
            server(33010, 33001, 0).to_bytes().to_vec(),
            "which is no range",
        ),
        (
            server(33001, 33002, 5).to_bytes().to_vec(),
            "5 of its 2 ports are occupied",
        ),
        (vec![0xff; CONTROL_LEN], "answered garbage"),
        // Says 3 ports are occupied and sends none of them: the time bound ends it.
        (
            server(33001, 33100, 3).to_bytes().to_vec(),
            "did not describe itself within",
        ),
    ];
    for (answer, want) in lies {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let liar = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut frame = [0u8; CONTROL_LEN];
            stream.read_exact(&mut frame).unwrap();
            assert!(matches!(
                control::parse(&frame),
                Ok(ControlRepr::Describe { key: 7 })
            ));
            stream.write_all(&answer).unwrap();
            // Hold the connection open, saying nothing more.
            std::thread::sleep(Duration::from_millis(1500));
        });
        let started = Instant::now();
        let result = runtime.block_on(describe(address, 7, Duration::from_secs(1)));
        let error = result.expect_err("a lie was believed");
        assert!(error.contains(want), "{error}");
        assert!(started.elapsed() < Duration::from_millis(1400), "{error}");
        liar.join().unwrap();
    }
}
