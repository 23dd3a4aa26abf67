//! A delay line for the WAN path when the kernel has no `netem`: datagrams wait in a queue
//! and leave after the one-way delay (± jitter), in order, from a task of their own. A full
//! queue drops, as a router's would; a send the kernel firewall refuses (EPERM) is counted
//! as filtered.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::{RngExt, SeedableRng};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// Datagrams one line holds at most.
const CAPACITY: usize = 65_536;

/// One direction of the delayed path.
pub struct DelayLine {
    queue: mpsc::Sender<(Instant, Vec<u8>, SocketAddr)>,
    delay: Duration,
    jitter: Duration,
    last_release: Instant,
    rng: rand_xoshiro::Xoshiro256PlusPlus,
    /// Datagrams the queue dropped because it was full.
    pub dropped: u64,
    /// Sends the kernel refused with EPERM (a firewall on the output hook).
    pub filtered: Arc<AtomicU64>,
}

impl DelayLine {
    /// Starts the line's task on the current tokio runtime; it ends when the line is dropped
    /// and its queue has drained.
    pub fn spawn(socket: Arc<UdpSocket>, delay: Duration, jitter: Duration) -> Self {
        let (queue, mut pending) = mpsc::channel::<(Instant, Vec<u8>, SocketAddr)>(CAPACITY);
        let filtered = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&filtered);
        tokio::spawn(async move {
            while let Some((release, bytes, to)) = pending.recv().await {
                tokio::time::sleep_until(release.into()).await;
                if let Err(e) = socket.send_to(&bytes, to).await
                    && e.kind() == std::io::ErrorKind::PermissionDenied
                {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        let seed = Instant::now().elapsed().as_nanos() as u64 ^ u64::from(std::process::id());
        Self {
            queue,
            delay,
            jitter,
            last_release: Instant::now(),
            rng: rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(seed),
            dropped: 0,
            filtered,
        }
    }

    /// Queues `bytes` for `to`; false when the queue was full and the datagram is lost.
    pub fn send(&mut self, bytes: &[u8], to: SocketAddr) -> bool {
        let jitter = if self.jitter.is_zero() {
            0.0
        } else {
            let j = self.jitter.as_secs_f64();
            self.rng.random_range(-j..=j)
        };
        let wait = (self.delay.as_secs_f64() + jitter).max(0.0);
        // In order: a datagram never overtakes the one before it.
        let release = (Instant::now() + Duration::from_secs_f64(wait)).max(self.last_release);
        self.last_release = release;
        let sent = self.queue.try_send((release, bytes.to_vec(), to)).is_ok();
        if !sent {
            self.dropped += 1;
        }
        sent
    }
}
