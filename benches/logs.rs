//! Reading a server's transfer log and sizing from it (`plan --from-log`): a synthetic log
//! in the public transfer-log format, 100 000 sessions (Start, Params, Statistics and Stop
//! lines, about 93 MB), written once to a temporary file, then read and replayed through the
//! model. Throughput counts bytes of log.
//!
//! Run: `cargo bench --bench logs`

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use udprange::model::ServerOs;
use udprange::plan::ServerSpec;
use udprange::plan::logsize;
use udprange::scenario::translog::{self, ReadOptions};

const SESSIONS: u64 = 100_000;

/// A log of `SESSIONS` sessions arriving every 0.5 s on average and lasting about a
/// minute, in time order, with the server's first-fit ports in `local=`.
fn synthetic_log() -> String {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut events: Vec<(u64, bool, u64)> = Vec::new();
    let mut t = 0u64; // milliseconds
    for i in 0..SESSIONS {
        t += next() % 1000;
        events.push((t, true, i));
        events.push((t + 30_000 + next() % 60_000, false, i));
    }
    events.sort();
    let mut ports: Vec<bool> = Vec::new();
    let mut port_of = vec![0usize; SESSIONS as usize];
    let mut out = String::with_capacity(100 << 20);
    for (at, start, i) in events {
        let (h, m, s, ms) = (
            at / 3_600_000 % 24,
            at / 60_000 % 60,
            at / 1000 % 60,
            at % 1000,
        );
        let day = 1 + at / 86_400_000;
        let stamp = format!("2026-01-{day:02} {h:02}:{m:02}:{s:02}.{ms:03} [1a2c-00001cf0]");
        let uuid = format!("{:016x}-{i:08x}", i.wrapping_mul(0x2545_f491_4f6c_dd1d));
        if start {
            let port = match ports.iter().position(|held| !held) {
                Some(p) => p,
                None => {
                    ports.push(false);
                    ports.len() - 1
                }
            };
            ports[port] = true;
            port_of[i as usize] = port;
            let _ = writeln!(
                out,
                "{stamp} LOG FASP Session Start uuid={uuid} op=recv status=started source=- dest=D:/incoming source_prefix=- local=203.0.113.5:{} peer=198.51.100.7:{} tcp_port=33001 os=\"Microsoft Windows Server 2019 \" ver=4.4.1.104",
                33001 + port,
                49152 + i % 16000
            );
            let _ = writeln!(
                out,
                "{stamp} LOG FASP Session Params uuid={uuid} userid=0 user=\"u{}\" targetrate=100000000 minrate=0 rate_policy=fair cipher=aes-128 resume=2",
                i % 50
            );
            let _ = writeln!(
                out,
                "{stamp} LOG FASP Session Statistics [Sender] id={uuid} delay=64ms rex_delay=72ms solicited_rex=0.01% ave_xmit_rate 299.53Mbps effective=99.99%"
            );
        } else {
            ports[port_of[i as usize]] = false;
            let _ = writeln!(
                out,
                "{stamp} LOG FASP Session Stop uuid={uuid} op=recv status=success source=- dest=D:/incoming files=1 rate=96.43Mbps loss=0.12%"
            );
        }
    }
    out
}

fn read_and_size(c: &mut Criterion) {
    let text = synthetic_log();
    let path = std::env::temp_dir().join(format!("udprange-bench-{}.log", std::process::id()));
    std::fs::write(&path, &text).unwrap();
    let paths = vec![path.clone()];
    let server = ServerSpec::new(ServerOs::Windows);
    // Check once that the model agrees with the log's first-fit ports.
    let log = translog::read(&paths, ReadOptions::default()).unwrap();
    assert_eq!(log.sessions.len() as u64, SESSIONS);
    let side = logsize::side_of(&server, &log.sessions, None);
    let sizing = logsize::size(&server, &log.sessions, side, |_| String::new());
    let comparison = sizing.comparison.as_ref().unwrap();
    assert_eq!(comparison.agree, SESSIONS, "{comparison:?}");
    eprintln!(
        "  log: {} bytes, {} sessions, peak {} ports",
        text.len(),
        SESSIONS,
        sizing.peak_ports
    );
    let mut group = c.benchmark_group("transfer_log");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.bench_function("read_and_size_100k_sessions", |b| {
        b.iter(|| {
            let log = translog::read(black_box(&paths), ReadOptions::default()).unwrap();
            let side = logsize::side_of(&server, &log.sessions, None);
            black_box(logsize::size(&server, &log.sessions, side, |_| {
                String::new()
            }))
        })
    });
    group.finish();
    let _ = std::fs::remove_file(&path);
}

criterion_group!(benches, read_and_size);
criterion_main!(benches);
