//! Traffic speed on loopback, next to iperf3 measured in the same run.
//!
//! - `codec`: emitting and parsing one 1472-byte DATA datagram.
//! - `loopback_receive_1472B`: time to *receive* one million 1472-byte datagrams (criterion's
//!   throughput is received datagrams per second): `udprange blast` with 64 unpaced sessions
//!   on 64 ports on loopback and (as root, with the netns tools) through the client — router
//!   — server namespaces, without and with the router's 25 ms delay line, and `iperf3 -u -b 0
//!   -l 1472 -P 4` on loopback and through the delay line, on the same machine in the same
//!   run (the delay line's capacity in packets per second).
//!   Each run also prints its loss.
//!
//! - `scale_4096_sessions`: `udprange blast` (the binary, a fresh process per run) with 4096
//!   sessions at once at 0.5 Mbit/s each for 5 s (about 171 000 datagrams/s, half of what
//!   loopback carries here) through the whole path: 4096 handshakes in the model's order,
//!   the data, 4096 releases. Each run prints its elapsed time, the share of the offered
//!   datagrams delivered, and the largest peak RSS of the runs so far.
//!
//! `cargo bench --bench blast` (needs iperf3 for the comparison; it says so when missing);
//! `cargo bench --bench blast -- scale` for the scale run alone.

use std::hint::black_box;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use udprange::blast::netns::WanPath;
use udprange::blast::{self, Backend, BlastConfig};
use udprange::model::{PortRange, ServerOs};
use udprange::scenario::ServerConfig;
use udprange::wire::fasp::{self, Message, Repr};

const DATAGRAM: usize = 1472;
/// The IP packet of such a datagram: udprange's `--datagram` counts it.
const PACKET: u16 = (DATAGRAM + fasp::IP_UDP_HEADERS) as u16;
/// Datagrams one measured unit stands for.
const UNIT: u64 = 1_000_000;
const RUN: Duration = Duration::from_secs(1);

fn codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Elements(1));
    let repr = Repr {
        session: 7,
        token: 0x5eed,
        sequence: 123_456,
        send_ns: 99,
        message: Message::Data {
            payload_len: (DATAGRAM - fasp::HEADER_LEN) as u16,
        },
    };
    let mut buffer = vec![0u8; DATAGRAM];
    group.bench_function("emit DATA 1472B", |b| {
        b.iter(|| black_box(&repr).emit(black_box(&mut buffer)).unwrap())
    });
    repr.emit(&mut buffer).unwrap();
    group.bench_function("parse DATA 1472B", |b| {
        b.iter(|| fasp::parse(black_box(&buffer)).unwrap())
    });
    group.finish();
}

/// The server's receiver per datagram (parse, checks, record, acknowledgement every 128th):
/// in order, and with every tenth datagram missing (a NACK and a new run each time).
fn receiver(c: &mut Criterion) {
    use std::net::{Ipv4Addr, SocketAddr};
    use std::sync::Arc;
    use std::sync::atomic::AtomicU64;
    use udprange::blast::receiver::{PortReceiver, Registration};

    let mut group = c.benchmark_group("receiver");
    group.throughput(Throughput::Elements(1));
    let peer = SocketAddr::from((Ipv4Addr::new(127, 0, 0, 2), 40_000));
    for (name, step) in [("in order", 1u64), ("every tenth lost", 10)] {
        group.bench_function(name, |b| {
            let mut receiver = PortReceiver::new(62_001, u64::MAX);
            receiver.register(Registration {
                session: 7,
                token: 0x5eed,
                peer_ip: peer.ip(),
                rate_bps: 0,
                datagram: PACKET,
                registered_at: Duration::ZERO,
                progress: Arc::new(AtomicU64::new(0)),
            });
            let mut buffer = vec![0u8; DATAGRAM];
            let mut replies = Vec::new();
            let mut sequence = 0u64;
            b.iter(|| {
                sequence += 1;
                if step > 1 && sequence % step == 0 {
                    sequence += 1;
                }
                let repr = Repr {
                    session: 7,
                    token: 0x5eed,
                    sequence,
                    send_ns: 0,
                    message: Message::Data {
                        payload_len: (DATAGRAM - fasp::HEADER_LEN) as u16,
                    },
                };
                repr.emit(&mut buffer).unwrap();
                receiver.on_datagram(
                    peer,
                    black_box(&buffer),
                    Duration::from_secs(1),
                    &mut replies,
                );
                replies.clear();
            })
        });
    }
    group.finish();
}

/// One blast run: (received datagrams, elapsed, loss fraction, goodput bit/s).
fn blast_once(runtime: &tokio::runtime::Runtime, backend: Backend) -> (u64, Duration, f64, f64) {
    let seed = BlastConfig::seed_example();
    let config = BlastConfig {
        backend,
        server: ServerConfig {
            os: ServerOs::Windows,
            base_port: 62001,
            ..seed.server.clone()
        },
        replay: None,
        allowed: PortRange::new(62001, 62064).ok(),
        clients: 64,
        accounts: 64,
        rate_bps: 0,
        datagram: PACKET,
        duration: RUN,
        handshake_timeout: Duration::from_secs(2),
        ..seed
    };
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let (report, _) = runtime
        .block_on(blast::run_simple(&config, stopped))
        .expect("blast runs");
    let sent: u64 = report.sessions.iter().map(|s| s.sent).sum();
    let received = report.received_datagrams;
    let loss = 1.0 - received as f64 / sent.max(1) as f64;
    (
        received,
        Duration::from_secs_f64(report.elapsed_s),
        loss,
        report.goodput_bps,
    )
}

/// `iperf3` (the command given, with its arguments so far) as a one-shot server on `port`,
/// given a moment to listen; `None` when it cannot start.
fn iperf3_server(mut command: Command, port: u16) -> Option<std::process::Child> {
    let server = command
        .args(["-s", "-1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    std::thread::sleep(Duration::from_millis(300));
    Some(server)
}

/// One iperf3 run: (received datagrams, elapsed, loss fraction), or None without iperf3.
fn iperf3_once(port: u16) -> Option<(u64, Duration, f64)> {
    let mut server = iperf3_server(Command::new("iperf3"), port)?;
    let seconds = RUN.as_secs().max(1).to_string();
    let output = Command::new("iperf3")
        .args([
            "-c",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-u",
            "-b",
            "0",
            "-l",
            "1472",
        ])
        .args(["-P", "4", "-t", &seconds, "--json"])
        .output()
        .ok()?;
    let _ = server.wait();
    iperf3_sum(&output.stdout)
}

/// (received datagrams, elapsed, loss fraction) from an iperf3 UDP client's JSON report.
fn iperf3_sum(json: &[u8]) -> Option<(u64, Duration, f64)> {
    let report: serde_json::Value = serde_json::from_slice(json).ok()?;
    let sum = &report["end"]["sum"];
    let packets = sum["packets"].as_u64()?;
    let lost = sum["lost_packets"].as_u64()?;
    let seconds = sum["seconds"].as_f64()?;
    Some((
        packets - lost,
        Duration::from_secs_f64(seconds),
        lost as f64 / packets.max(1) as f64,
    ))
}

/// Elapsed time scaled to [`UNIT`] received datagrams.
fn per_unit(received: u64, elapsed: Duration) -> Duration {
    elapsed.mul_f64(UNIT as f64 / received.max(1) as f64)
}

fn loopback(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("loopback_receive_1472B");
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_millis(100));
    group.measurement_time(Duration::from_secs(15));
    group.throughput(Throughput::Elements(UNIT));
    let mut backends = vec![("loopback", Backend::Loopback)];
    let kernel = udprange::blast::netns::check_requirements();
    match &kernel {
        Ok(()) => {
            backends.push((
                "netns: client — router — server, nftables",
                Backend::Netns(Default::default()),
            ));
            backends.push((
                "netns + the router's delay line, 25 ms each way",
                Backend::Netns(WanPath {
                    delay: Some(Duration::from_millis(25)),
                    ..WanPath::default()
                }),
            ));
        }
        Err(e) => eprintln!("SKIPPED (not a measurement): {e}"),
    }
    for (name, backend) in backends {
        let label = format!("udprange blast {name}, 64 sessions on 64 ports, unpaced");
        group.bench_function(label, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let (received, elapsed, loss, goodput) = blast_once(&runtime, backend);
                    eprintln!(
                        "  blast {name}: {:.0} datagrams/s received, goodput {:.0} Mbit/s, loss {:.3} %",
                        received as f64 / elapsed.as_secs_f64(),
                        goodput / 1e6,
                        loss * 100.0
                    );
                    total += per_unit(received, elapsed);
                }
                total
            })
        });
    }
    if iperf3_once(5201).is_none() {
        eprintln!("SKIPPED (not a measurement): iperf3 is not installed, no comparison");
    } else {
        bench_iperf3(&mut group, "iperf3 -u -b 0 -l 1472 -P 4", "iperf3", |i| {
            iperf3_once(5202 + (i % 50) as u16)
        });
        if kernel.is_ok() {
            bench_iperf3(
                &mut group,
                "iperf3 -u -b 0 -l 1472 -P 4 through the delay line",
                "iperf3 through the delay line",
                |_| iperf3_path_once(Duration::from_millis(25)),
            );
        }
    }
    group.finish();
}

/// One iperf3 measurement per iteration, scaled to [`UNIT`] received datagrams; `run(i)`
/// runs the i-th.
fn bench_iperf3(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    label: &str,
    run: impl Fn(u64) -> Option<(u64, Duration, f64)>,
) {
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for i in 0..iters {
                let started = Instant::now();
                let Some((received, elapsed, loss)) = run(i) else {
                    return started.elapsed();
                };
                eprintln!(
                    "  {label}: {:.0} datagrams/s received, loss {:.3} %",
                    received as f64 / elapsed.as_secs_f64(),
                    loss * 100.0
                );
                total += per_unit(received, elapsed);
            }
            total
        })
    });
}

/// iperf3 through the netns path with `delay` on the router: as [`iperf3_once`].
fn iperf3_path_once(delay: Duration) -> Option<(u64, Duration, f64)> {
    use udprange::blast::netns::{Host, SERVER_ADDR, TestHosts};
    let said = |what: &str, e: &dyn std::fmt::Display| {
        eprintln!("  iperf3 through the delay line: {what}: {e}");
    };
    let mut hosts = TestHosts::create()
        .map_err(|e| said("test hosts", &e))
        .ok()?;
    let path = WanPath {
        delay: Some(delay),
        ..WanPath::default()
    };
    hosts
        .impair(&path, 1 << 16)
        .map_err(|e| said("impair", &e))
        .ok()?;
    let mut inside = Command::new("ip");
    inside.args(["netns", "exec", &hosts.server_ns, "iperf3"]);
    let mut server = iperf3_server(inside, 5301)?;
    let seconds = RUN.as_secs().max(1).to_string();
    let target = SERVER_ADDR.to_string();
    let output = hosts.exec(
        Host::Client,
        &[
            "iperf3", "-c", &target, "-p", "5301", "-u", "-b", "0", "-l", "1472", "-P", "4", "-t",
            &seconds, "--json",
        ],
        None,
    );
    let _ = server.wait();
    let output = output.map_err(|e| said("iperf3", &e)).ok()?;
    iperf3_sum(output.as_bytes())
}

/// The largest peak resident set size of any child process so far, in MiB.
fn children_peak_rss_mib() -> f64 {
    // SAFETY: getrusage only writes the struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    usage.ru_maxrss as f64 / 1024.0
}

/// 4096 sessions as a user runs them: the `udprange` binary, a fresh process each time (so
/// its peak RSS is the run's own).
fn scale(c: &mut Criterion) {
    let mut group = c.benchmark_group("scale_4096_sessions");
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_millis(100));
    group.measurement_time(Duration::from_secs(70));
    let offered = 4096.0 * 5.0 * 500_000.0 / 8.0 / 1492.0;
    let args = [
        "blast",
        "--clients",
        "4096",
        "--rate",
        "0.5Mbps",
        "--duration",
        "5s",
        "--base-port",
        "40001",
        "--allowed",
        "40001-44096",
        "--format",
        "json",
    ];
    group.bench_function(
        "udprange blast --clients 4096 --rate 0.5Mbps --duration 5s",
        |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let started = Instant::now();
                    let output = Command::new(env!("CARGO_BIN_EXE_udprange"))
                        .args(args)
                        .stderr(Stdio::inherit())
                        .output()
                        .expect("udprange runs");
                    let elapsed = started.elapsed();
                    let report: serde_json::Value =
                        serde_json::from_slice(&output.stdout).expect("a JSON report");
                    let ok = report["sessions"]
                        .as_array()
                        .map_or(0, |s| s.iter().filter(|s| s["outcome"] == "ok").count());
                    eprintln!(
                        "  {ok}/4096 ok, elapsed {:.2} s, delivered {:.1} % of what 5 s offer, \
                     agreement {}/4096, peak RSS {:.0} MiB",
                        elapsed.as_secs_f64(),
                        report["received_datagrams"].as_f64().unwrap_or(0.0) * 100.0 / offered,
                        report["agreement"]["agree"],
                        children_peak_rss_mib()
                    );
                    total += elapsed;
                }
                total
            })
        },
    );
    group.finish();
}

criterion_group!(benches, codec, receiver, loopback, scale);
criterion_main!(benches);
