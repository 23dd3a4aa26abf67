//! The WAN path's delay line on the router: protocol-agnostic, so the TCP control
//! connection, udprange's UDP and any other tool's traffic (iperf3, ping) wait alike.
//!
//! This kernel has no netem. Instead the router's `raw` PREROUTING chain hands every packet
//! to NFQUEUE (`iptables -t raw -I PREROUTING -j NFQUEUE --queue-num N --queue-bypass`), and
//! one thread in the router namespace holds each packet's verdict until it is due: the
//! one-way delay, ± uniform jitter, in order per direction (a packet never overtakes the one
//! before it on the same interface, as the emulator's old delay line did).
//!
//! Traps, each handled here:
//! - The kernel queue's maximum length must exceed rate × delay, or it drops (default 1024):
//!   the caller sizes it from the load.
//! - With `--queue-bypass`, a delay process that is gone silently removes the delay: the
//!   thread records whether it ran to the end, and [`queue_status`] reads the kernel's own
//!   view (`/proc/net/netfilter/nfnetlink_queue`: bound port id, drops) for the report.
//! - The `nfq` crate does not expose its socket; `netlink_fd` finds it among this
//!   process's descriptors, so the thread can sleep in `ppoll` until a packet arrives or one
//!   is due, and can enlarge the socket's receive buffer (a lost netlink message is a packet
//!   that never gets its verdict).

use std::collections::VecDeque;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::{RngExt, SeedableRng};

use super::netns::{self, NetnsError};

/// The NFQUEUE number the router's delay line binds (queues are per namespace).
pub const QUEUE_NUM: u16 = 7;
/// The receive buffer asked for the queue's netlink socket.
const RECEIVE_BUFFER: libc::c_int = 16 << 20;
/// Longest sleep between looks at the stop flag.
const IDLE_WAKE: Duration = Duration::from_millis(20);

/// What the delay line did over a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct DelayStats {
    /// Packets it held and released.
    pub packets: u64,
    /// Most packets held at once.
    pub held_max: u64,
    /// Whether it ran until the end of the run; `false` means packets passed undelayed from
    /// the moment it stopped (the queue's bypass).
    pub ran_to_end: bool,
    /// Why it stopped early, when it did.
    pub stopped: Option<String>,
    /// The kernel queue's maximum length.
    pub queue_max_len: u32,
    /// From the kernel at the end: packets dropped because the queue was full, and because
    /// the netlink message could not reach the delay line.
    pub queue_dropped: u64,
    pub user_dropped: u64,
}

impl DelayStats {
    /// In words: what it held, and whether the kernel's queue or the line itself failed.
    pub fn describe(&self) -> String {
        let stopped = if self.ran_to_end {
            String::new()
        } else {
            format!(
                "; STOPPED EARLY ({}): packets passed undelayed after that",
                self.stopped.as_deref().unwrap_or("no reason given")
            )
        };
        format!(
            "held {} packets, at most {} at once; kernel queue drops {} full, {} undelivered{stopped}",
            self.packets, self.held_max, self.queue_dropped, self.user_dropped
        )
    }
}

/// One packet waiting for its verdict.
struct Held {
    due: Instant,
    message: nfq::Message,
}

/// The running delay line; [`DelayLine::finish`] stops it and says what it did.
pub struct DelayLine {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<DelayStats>>,
    packets: Arc<AtomicU64>,
    namespace: String,
}

impl DelayLine {
    /// Starts the line's thread in namespace `namespace`, bound to [`QUEUE_NUM`]; returns
    /// once it is bound, so the NFQUEUE rule may go in.
    pub fn start(
        namespace: &str,
        delay: Duration,
        jitter: Duration,
        queue_max_len: u32,
    ) -> Result<Self, NetnsError> {
        let stop = Arc::new(AtomicBool::new(false));
        let packets = Arc::new(AtomicU64::new(0));
        let (ready, bound) = std::sync::mpsc::channel::<Result<(), String>>();
        let (ns, flag, count) = (
            namespace.to_string(),
            Arc::clone(&stop),
            Arc::clone(&packets),
        );
        let thread = std::thread::Builder::new()
            .name("udprange-delay".into())
            .spawn(move || {
                let mut stats = DelayStats {
                    queue_max_len,
                    ..DelayStats::default()
                };
                let setup = netns::enter(&ns)
                    .map_err(|e| e.to_string())
                    .and_then(|()| open(queue_max_len));
                let (mut queue, fd) = match setup {
                    Ok(opened) => {
                        let _ = ready.send(Ok(()));
                        opened
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e.clone()));
                        stats.stopped = Some(e);
                        return stats;
                    }
                };
                let outcome = hold(&mut queue, fd, delay, jitter, &flag, &count, &mut stats);
                stats.packets = count.load(Ordering::Relaxed);
                match outcome {
                    Ok(()) => stats.ran_to_end = true,
                    Err(e) => stats.stopped = Some(e),
                }
                let _ = queue.unbind(QUEUE_NUM);
                stats
            })
            .map_err(|e| NetnsError::Command {
                command: "start the delay line's thread".into(),
                stderr: e.to_string(),
            })?;
        let error = |stderr: String| NetnsError::Command {
            command: format!("bind NFQUEUE {QUEUE_NUM} in {namespace}"),
            stderr,
        };
        match bound.recv_timeout(Duration::from_secs(5)) {
            Ok(Ok(())) => Ok(Self {
                stop,
                thread: Some(thread),
                packets,
                namespace: namespace.to_string(),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(error(e))
            }
            Err(_) => {
                stop.store(true, Ordering::Relaxed);
                Err(error("the delay line did not bind within 5 s".into()))
            }
        }
    }

    /// Packets released so far.
    pub fn packets(&self) -> u64 {
        self.packets.load(Ordering::Relaxed)
    }

    /// Stops the line (held packets leave at once) and returns what it did, with the
    /// kernel's own drop counts.
    pub fn finish(mut self) -> DelayStats {
        // The kernel forgets a queue's counters when the line unbinds: read them first.
        let status = queue_status(&self.namespace);
        self.stop.store(true, Ordering::Relaxed);
        let mut stats = self
            .thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_else(|| DelayStats {
                stopped: Some("the delay line's thread panicked".into()),
                ..DelayStats::default()
            });
        match status {
            Some(status) => {
                stats.queue_dropped = status.queue_dropped;
                stats.user_dropped = status.user_dropped;
            }
            // Nobody bound to the queue: with its bypass, packets passed undelayed.
            None if stats.ran_to_end => {
                stats.ran_to_end = false;
                stats.stopped = Some("the kernel shows no process bound to the queue".into());
            }
            None => {}
        }
        stats
    }
}

impl Drop for DelayLine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn open(queue_max_len: u32) -> Result<(nfq::Queue, RawFd), String> {
    let before = netlink_fds();
    let mut queue = nfq::Queue::open().map_err(|e| format!("open the netfilter queue: {e}"))?;
    let fd = netlink_fds()
        .into_iter()
        .find(|fd| !before.contains(fd))
        .ok_or("cannot find the netfilter queue's socket")?;
    let size = RECEIVE_BUFFER;
    // SAFETY: `fd` is the queue's open socket; setsockopt only reads `size`.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&raw const size).cast(),
            std::mem::size_of_val(&size) as libc::socklen_t,
        );
    }
    let step = |what: &str, r: std::io::Result<()>| r.map_err(|e| format!("{what}: {e}"));
    step("bind the queue", queue.bind(QUEUE_NUM))?;
    // Metadata only: the line never reads or changes a payload.
    step("set the copy range", queue.set_copy_range(QUEUE_NUM, 0))?;
    step(
        "set the queue's length",
        queue.set_queue_max_len(QUEUE_NUM, queue_max_len),
    )?;
    // A full queue drops, as a router's would, rather than passing packets undelayed.
    step("set fail-closed", queue.set_fail_open(QUEUE_NUM, false))?;
    queue.set_nonblocking(true);
    Ok((queue, fd))
}

/// This process's netlink sockets of the netfilter family.
fn netlink_fds() -> Vec<RawFd> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<RawFd>().ok())
        .filter(|&fd| {
            let mut protocol: libc::c_int = 0;
            let mut domain: libc::c_int = 0;
            let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            let mut len2 = len;
            // SAFETY: getsockopt writes at most `len` bytes into the integers given.
            unsafe {
                libc::getsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_DOMAIN,
                    (&raw mut domain).cast(),
                    &mut len,
                ) == 0
                    && libc::getsockopt(
                        fd,
                        libc::SOL_SOCKET,
                        libc::SO_PROTOCOL,
                        (&raw mut protocol).cast(),
                        &mut len2,
                    ) == 0
                    && domain == libc::AF_NETLINK
                    && protocol == libc::NETLINK_NETFILTER
            }
        })
        .collect()
}

/// When a packet that arrived at `now` leaves: the delay ± uniform jitter, never before it
/// arrived and never before the previous packet of its direction (`last`).
pub fn due_time(
    now: Instant,
    delay: Duration,
    jitter: Duration,
    last: Option<Instant>,
    rng: &mut impl rand::Rng,
) -> Instant {
    let offset = if jitter.is_zero() {
        0.0
    } else {
        let j = jitter.as_secs_f64();
        rng.random_range(-j..=j)
    };
    let wait = (delay.as_secs_f64() + offset).max(0.0);
    let due = now + Duration::from_secs_f64(wait);
    last.map_or(due, |l| due.max(l))
}

fn hold(
    queue: &mut nfq::Queue,
    fd: RawFd,
    delay: Duration,
    jitter: Duration,
    stop: &AtomicBool,
    released: &AtomicU64,
    stats: &mut DelayStats,
) -> Result<(), String> {
    let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(0x5eed_de1a);
    // One FIFO per input interface: a direction of the path.
    let mut lines: Vec<(u32, VecDeque<Held>)> = Vec::new();
    let mut held: u64 = 0;
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        loop {
            match queue.recv() {
                Ok(message) => {
                    let now = Instant::now();
                    let indev = message.get_indev();
                    let at = match lines.iter().position(|(dev, _)| *dev == indev) {
                        Some(i) => i,
                        None => {
                            lines.push((indev, VecDeque::new()));
                            lines.len() - 1
                        }
                    };
                    let fifo = &mut lines[at].1;
                    let last = fifo.back().map(|h| h.due);
                    let due = due_time(now, delay, jitter, last, &mut rng);
                    fifo.push_back(Held { due, message });
                    held += 1;
                    stats.held_max = stats.held_max.max(held);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    release_all(queue, &mut lines, released);
                    return Err(format!("receiving from the queue: {e}"));
                }
            }
        }
        let now = Instant::now();
        for (_, fifo) in &mut lines {
            while fifo.front().is_some_and(|h| stopping || h.due <= now) {
                let Some(h) = fifo.pop_front() else { break };
                let mut message = h.message;
                message.set_verdict(nfq::Verdict::Accept);
                held -= 1;
                if let Err(e) = queue.verdict(message) {
                    release_all(queue, &mut lines, released);
                    return Err(format!("giving a verdict: {e}"));
                }
                released.fetch_add(1, Ordering::Relaxed);
            }
        }
        if stopping {
            return Ok(());
        }
        let next = lines
            .iter()
            .filter_map(|(_, f)| f.front())
            .map(|h| h.due)
            .min();
        let wait = next.map_or(IDLE_WAKE, |due| {
            due.saturating_duration_since(Instant::now()).min(IDLE_WAKE)
        });
        let mut poll = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let timeout = libc::timespec {
            tv_sec: wait.as_secs() as libc::time_t,
            tv_nsec: libc::c_long::from(wait.subsec_nanos() as i32),
        };
        // SAFETY: one valid pollfd, a valid timespec, no signal mask.
        unsafe { libc::ppoll(&raw mut poll, 1, &raw const timeout, std::ptr::null()) };
    }
}

fn release_all(queue: &mut nfq::Queue, lines: &mut [(u32, VecDeque<Held>)], released: &AtomicU64) {
    for (_, fifo) in lines.iter_mut() {
        while let Some(h) = fifo.pop_front() {
            let mut message = h.message;
            message.set_verdict(nfq::Verdict::Accept);
            if queue.verdict(message).is_ok() {
                released.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// One queue's line in `/proc/net/netfilter/nfnetlink_queue`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueStatus {
    pub queue: u16,
    /// The netlink port id of the process bound to it.
    pub portid: u32,
    pub waiting: u64,
    pub queue_dropped: u64,
    pub user_dropped: u64,
}

/// Parses the kernel's table: `queue portid waiting copy_mode copy_range queue_dropped
/// user_dropped id_sequence 1`, one line per bound queue.
pub fn parse_queue_status(text: &str, queue: u16) -> Option<QueueStatus> {
    text.lines().find_map(|line| {
        let f: Vec<u64> = line
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()?;
        (f.len() >= 8 && f[0] == u64::from(queue)).then(|| QueueStatus {
            queue,
            portid: f[1] as u32,
            waiting: f[2],
            queue_dropped: f[5],
            user_dropped: f[6],
        })
    })
}

/// The kernel's view of the delay line's queue in `namespace`; `None` when no process is
/// bound to it (the delay is gone) or the table cannot be read.
pub fn queue_status(namespace: &str) -> Option<QueueStatus> {
    let text = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            namespace,
            "cat",
            "/proc/net/netfilter/nfnetlink_queue",
        ])
        .output()
        .ok()?;
    parse_queue_status(&String::from_utf8_lossy(&text.stdout), QUEUE_NUM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_times_keep_order_and_the_delay() {
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(1);
        let start = Instant::now();
        let d = Duration::from_millis(25);
        assert_eq!(
            due_time(start, d, Duration::ZERO, None, &mut rng),
            start + d
        );
        let mut last = None;
        for i in 0..1000u64 {
            let now = start + Duration::from_micros(i * 10);
            let due = due_time(now, d, Duration::from_millis(5), last, &mut rng);
            assert!(
                due >= now + Duration::from_millis(20),
                "never earlier than delay - jitter"
            );
            assert!(last.is_none_or(|l| due >= l), "in order");
            last = Some(due);
        }
        // A jitter larger than the delay never sends a packet back in time.
        let due = due_time(
            start,
            Duration::ZERO,
            Duration::from_millis(5),
            None,
            &mut rng,
        );
        assert!(due >= start);
    }

    #[test]
    fn reads_the_kernel_queue_table() {
        let text = "    0  12345     0 2  65535     0     0        7  1\n    7 4242     3 1      0    11    2      990  1\n";
        let s = parse_queue_status(text, 7).unwrap();
        assert_eq!(
            (s.portid, s.waiting, s.queue_dropped, s.user_dropped),
            (4242, 3, 11, 2)
        );
        assert_eq!(parse_queue_status(text, 9), None);
        assert_eq!(parse_queue_status("garbage here\n", 7), None);
        assert_eq!(parse_queue_status("", 7), None);
    }
}
