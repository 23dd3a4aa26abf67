//! Every limit on input, defined once.
//!
//! Flags and scenario keys are checked against the same constants, so a value refused on the
//! command line is refused in a file too; the error names the flag (`--duration 1e9s: …`) or
//! the key (`busy.toml:12:8: traffic.duration: …`). Together the limits keep every run finite
//! in time and memory, whatever the input: a blast run ends within its sending time, the
//! handshake timeout twice and a drain; a simulation within its sessions; no input file is
//! read past its size cap.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

// --- blast: wall-clock traffic -------------------------------------------------------------

/// Most clients one blast run starts, and most accounts they belong to: 4096
/// (`--clients`, `--accounts`, `traffic.clients`).
pub const MAX_CLIENTS: u32 = 4096;
/// Most sessions `blast` replays from a scenario's workload (`--sessions`).
pub const MAX_REPLAY_SESSIONS: u64 = 100_000;
/// Most `--interval` reports one run keeps.
pub const MAX_INTERVALS: usize = 100_000;
/// Most model seconds per wall second (`--time-scale`).
pub const MAX_TIME_SCALE: f64 = 1e6;
/// Longest sending time of one blast run: 600 s (`--duration`, `traffic.duration`).
pub const MAX_DURATION: Duration = Duration::from_secs(600);
/// Longest handshake timeout: 600 s (`--handshake-timeout`, `workload.handshake_timeout`).
/// The vendor's client gives up after about 20 s; a blast run waits at most twice this.
pub const MAX_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(600);
/// Most datagrams one session sends, new and retransmitted: 50 million.
pub const MAX_DATAGRAMS_PER_SESSION: u64 = 50_000_000;
/// The most payload one sized transfer (`--size`) delivers.
pub const MAX_TRANSFER_BYTES: u64 = 16 << 30;
/// Highest bit rate, in bit/s: 100 Gbit/s (`--rate`, `--bandwidth`, `traffic.rate`).
pub const MAX_BITRATE_BPS: f64 = 100e9;
/// Longest one-way WAN delay and jitter: 10 s (`--delay`, `--jitter`).
pub const MAX_WAN_DELAY: Duration = Duration::from_secs(10);
/// Smallest datagram: IPv4 and UDP headers and the 36-byte FASP-like header
/// (`--datagram`, `traffic.datagram`; a datagram's size counts its IP packet).
pub const MIN_DATAGRAM: u16 = crate::wire::fasp::MIN_DATAGRAM as u16;
/// Largest datagram: 65 535 bytes, one IPv4 packet.
pub const MAX_DATAGRAM: u16 = crate::wire::fasp::MAX_DATAGRAM as u16;
/// Most frames a pcap capture keeps: 1 000 000 (`--pcap-limit`).
pub const MAX_PCAP_FRAMES: u64 = 1_000_000;
/// Most memory a pcap capture may hold: 1 GiB, counted as `--pcap-limit` × (datagram size +
/// [`CAPTURE_FRAME_OVERHEAD`]).
pub const MAX_CAPTURE_BYTES: u64 = 1 << 30;
/// Bytes a captured frame adds to its datagram: Ethernet (14), IPv4 (20), UDP (8) headers
/// and the pcap record header (16).
pub const CAPTURE_FRAME_OVERHEAD: u64 = 14 + 20 + 8 + 16;

// --- simulate: simulated time ----------------------------------------------------------------

/// Most replications of one run: 100 000 (`--replications`, `workload.replications`).
pub const MAX_REPLICATIONS: u32 = 100_000;
/// Most transfers one replication starts: 10^10 (`--sessions`, `workload.sessions`, and what
/// a `horizon` or a `warmup` holds at the scenario's load).
pub const MAX_SESSIONS: u64 = 10_000_000_000;
/// Most sources of a closed workload: 1 000 000 (`workload.concurrent`).
pub const MAX_CONCURRENT: u64 = 1_000_000;
/// Most sessions per transfer: 64 (`workload.sessions_per_transfer`).
pub const MAX_SESSIONS_PER_TRANSFER: u32 = 64;
/// Most attempts of one session, the first included: 100 (`workload.retry.attempts`).
pub const MAX_RETRY_ATTEMPTS: u32 = 100;
/// Largest growth of the retry backoff: 100 (`workload.retry.multiplier`).
pub const MAX_RETRY_MULTIPLIER: f64 = 100.0;
/// Longest span of simulated time a scenario may give, in seconds: 10 years of 365 days
/// (`horizon`, `warmup`, holding and think times, `linger`, `retry.backoff`, `profile.step`,
/// trace starts and durations). The simulator's clock runs far beyond (see `sim::SimTime`),
/// so sums of these never reach its end.
pub const MAX_SIM_SECONDS: f64 = 10.0 * 365.0 * 86400.0;
/// [`MAX_SIM_SECONDS`] as errors say it.
pub const MAX_SIM_TEXT: &str = "87600h (10 years of simulated time)";
/// Shortest positive span of simulated time, in seconds: 1 ns, the simulator's resolution.
/// A holding time below it would end sessions at the instant they start.
pub const MIN_SIM_SECONDS: f64 = 1e-9;
/// Highest arrival rate, per second: 10^9, one per nanosecond (`workload.rate`,
/// `workload.profile.rates`).
pub const MAX_ARRIVAL_RATE: f64 = 1e9;
/// Lowest positive arrival rate, per second: one per [`MAX_SIM_SECONDS`].
pub const MIN_ARRIVAL_RATE: f64 = 1.0 / MAX_SIM_SECONDS;
/// Most sessions a trace file may hold: 10 million.
pub const MAX_TRACE_SESSIONS: usize = 10_000_000;
/// Most worker threads: 1024 (`--threads`).
pub const MAX_THREADS: usize = 1024;

// --- input files -----------------------------------------------------------------------------

/// Largest scenario file: 1 MiB.
pub const MAX_SCENARIO_BYTES: u64 = 1 << 20;
/// Largest trace file: 64 MiB (about 10 million short lines).
pub const MAX_TRACE_BYTES: u64 = 64 << 20;
/// Largest shard file, read by `merge` and written by `simulate --out`: 64 MiB.
pub const MAX_SHARD_BYTES: u64 = 64 << 20;

// The limits agree with one another: the smallest datagrams fill a full capture within its
// memory bound, and the lowest arrival rate is one per longest span.
const _: () = {
    assert!(MIN_DATAGRAM < MAX_DATAGRAM);
    assert!(MAX_PCAP_FRAMES * (MIN_DATAGRAM as u64 + CAPTURE_FRAME_OVERHEAD) <= MAX_CAPTURE_BYTES);
    assert!(MIN_ARRIVAL_RATE * MAX_SIM_SECONDS <= 1.0 + 1e-12);
};

/// A size in the unit people read: `1 MiB`, `64 MiB`, `1 GiB`, else bytes.
pub fn size_text(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{} GiB", b >> 30),
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b => format!("{b} bytes"),
    }
}

/// Why an input file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read: {0}")]
    Io(#[from] std::io::Error),
    #[error("larger than {}, the most a {kind} file may hold", size_text(*.limit))]
    TooLarge { kind: &'static str, limit: u64 },
    #[error("not a {kind} file: not UTF-8 text")]
    NotText { kind: &'static str },
}

/// Reads the text file at `path` whole, refusing more than `limit` bytes (a 2 GB file, or
/// `/dev/zero`, is an error after at most `limit` bytes, not an exhausted memory). `kind`
/// names the file in errors ("scenario", "trace", "shard").
pub fn read_text(path: &Path, limit: u64, kind: &'static str) -> Result<String, ReadError> {
    let file = std::fs::File::open(path)?;
    let metadata = file.metadata()?;
    if metadata.is_dir() {
        return Err(std::io::Error::new(std::io::ErrorKind::IsADirectory, "is a directory").into());
    }
    // A regular file says its size; devices and pipes are read up to the limit.
    if metadata.is_file() && metadata.len() > limit {
        return Err(ReadError::TooLarge { kind, limit });
    }
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(ReadError::TooLarge { kind, limit });
    }
    String::from_utf8(bytes).map_err(|_| ReadError::NotText { kind })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(size_text(MAX_SCENARIO_BYTES), "1 MiB");
        assert_eq!(size_text(MAX_SHARD_BYTES), "64 MiB");
        assert_eq!(size_text(MAX_CAPTURE_BYTES), "1 GiB");
        assert_eq!(size_text(1500), "1500 bytes");
    }

    #[test]
    fn reading_stops_at_the_limit() {
        let zero = Path::new("/dev/zero");
        if zero.exists() {
            let error = read_text(zero, 1 << 10, "scenario").unwrap_err();
            assert_eq!(
                error.to_string(),
                "larger than 1024 bytes, the most a scenario file may hold"
            );
        }
        let dir = std::env::temp_dir().join(format!("udprange-limits-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("a.txt");
        std::fs::write(&file, "12345").unwrap();
        assert_eq!(read_text(&file, 5, "trace").unwrap(), "12345");
        assert!(matches!(
            read_text(&file, 4, "trace"),
            Err(ReadError::TooLarge { limit: 4, .. })
        ));
        std::fs::write(&file, [0xff, 0xfe]).unwrap();
        assert_eq!(
            read_text(&file, 5, "trace").unwrap_err().to_string(),
            "not a trace file: not UTF-8 text"
        );
        assert!(read_text(&dir, 5, "trace").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_limit_texts_say_the_limits() {
        assert_eq!(MAX_SIM_SECONDS, 87600.0 * 3600.0, "{MAX_SIM_TEXT}");
    }
}
