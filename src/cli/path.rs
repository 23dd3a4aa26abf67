//! `path`: any command through the netns backend's client — router — server path, so that
//! other tools (iperf3, ping, a real transfer client) meet the same delay, loss, bandwidth
//! and firewall as `blast --backend netns`.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::args::PathArgs;
use super::{EXIT_INTERRUPTED, Outcome, UsageError};
use crate::blast::netns::{self, Host, TestHosts};

/// The exit code when --duration ran out (as `timeout(1)` has it).
pub const EXIT_TIMEOUT: i32 = 124;
/// How long the server command gets to start before the client command runs.
const SERVER_START: Duration = Duration::from_millis(500);

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// SIGINT sets a flag while the path is up (the commands run in process groups of their
/// own, so the terminal's Ctrl-C reaches only this process, which stops them and cleans up).
struct InterruptGuard;

impl InterruptGuard {
    fn install() -> Self {
        INTERRUPTED.store(false, Ordering::Relaxed);
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(
                libc::SIGINT,
                on_interrupt as extern "C" fn(libc::c_int) as libc::sighandler_t,
            );
        }
        Self
    }
}

impl Drop for InterruptGuard {
    fn drop(&mut self) {
        // SAFETY: restoring the default disposition.
        unsafe {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
        }
    }
}

/// A command in a namespace, in a process group of its own; stopped when dropped.
struct Running(Child);

impl Running {
    /// Runs `program` in `namespace`; `quiet_stdout` sends its standard output to this
    /// process's standard error (the server's chatter must not mix with the client's).
    fn spawn(
        namespace: &str,
        program: &str,
        args: &[String],
        quiet_stdout: bool,
    ) -> Result<Self, String> {
        let mut command = Command::new("ip");
        if quiet_stdout {
            use std::os::fd::AsFd;
            let stderr = std::io::stderr()
                .as_fd()
                .try_clone_to_owned()
                .map_err(|e| e.to_string())?;
            command.stdout(std::process::Stdio::from(stderr));
        }
        command
            .args(["netns", "exec", namespace, program])
            .args(args)
            .env("UDPRANGE_SERVER", netns::SERVER_ADDR.to_string())
            .env("UDPRANGE_CLIENT", netns::CLIENT_ADDR.to_string())
            .process_group(0)
            .spawn()
            .map(Self)
            .map_err(|e| format!("cannot run {program}: {e}"))
    }

    /// SIGTERM to its group, SIGKILL a second later if it is still there.
    fn stop(&mut self) {
        if let Ok(Some(_)) = self.0.try_wait() {
            return;
        }
        let group = -(self.0.id() as i32);
        // SAFETY: signalling a process group this process created.
        unsafe { libc::kill(group, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // SAFETY: as above.
        unsafe { libc::kill(group, libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

pub(super) fn path(args: &PathArgs) -> Result<Outcome, UsageError> {
    let wan = args.wan.path();
    let ruleset = args.wan.ruleset()?;
    netns::check_requirements().map_err(|e| UsageError(e.to_string()))?;
    for note in netns::remove_leftovers() {
        eprintln!("udprange: {note}");
    }
    let failed = |e: netns::NetnsError| UsageError(e.to_string());
    let mut hosts = TestHosts::create().map_err(failed)?;
    if let Some((ruleset, at)) = &ruleset {
        hosts
            .load_user_ruleset(*at, ruleset)
            .map_err(|e| UsageError(e.to_string()))?;
    }
    hosts.count_flows().map_err(failed)?;
    // Room for 100k packets/s over the delay, both ways, twice over.
    let span = wan.delay.unwrap_or_default() + wan.jitter.unwrap_or_default();
    let queue = (400_000.0 * span.as_secs_f64()).clamp(4096.0, f64::from(1u32 << 20)) as u32;
    hosts.impair(&wan, queue).map_err(failed)?;
    eprintln!(
        "udprange path: client {} ({}) — router {} — server {} ({})",
        hosts.client_ns,
        netns::CLIENT_ADDR,
        hosts.router_ns,
        hosts.server_ns,
        netns::SERVER_ADDR
    );
    for (what, how) in [
        ("delay", &hosts.mechanisms.delay),
        ("loss", &hosts.mechanisms.loss),
        ("bandwidth", &hosts.mechanisms.bandwidth),
    ] {
        if let Some(how) = how {
            eprintln!("udprange path: {what}: {how}");
        }
    }
    let guard = InterruptGuard::install();
    let mut server = match &args.server_exec {
        Some(line) => {
            let running = Running::spawn(
                &hosts.server_ns,
                "sh",
                &["-c".to_string(), line.clone()],
                true,
            )
            .map_err(UsageError)?;
            std::thread::sleep(SERVER_START);
            Some(running)
        }
        None => None,
    };
    let mut client = Running::spawn(
        &hosts.client_ns,
        &args.command[0],
        &args.command[1..],
        false,
    )
    .map_err(UsageError)?;
    let deadline = Instant::now()
        + Duration::try_from_secs_f64(args.duration.as_secs_f64()).unwrap_or(Duration::MAX);
    let code = loop {
        if let Ok(Some(status)) = client.0.try_wait() {
            break status.code().unwrap_or(1);
        }
        if INTERRUPTED.load(Ordering::Relaxed) {
            client.stop();
            break EXIT_INTERRUPTED;
        }
        if Instant::now() >= deadline {
            client.stop();
            eprintln!(
                "udprange path: the command ran out of --duration {}; stopped",
                args.duration
            );
            break EXIT_TIMEOUT;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    if let Some(server) = server.as_mut() {
        server.stop();
    }
    drop(guard);
    if let Some(line) = hosts.finish_delay() {
        eprintln!("udprange path: delay line {}", line.describe());
    }
    if let Ok(drops) = hosts.dropped() {
        let by = |host: Host| -> u64 {
            drops
                .iter()
                .filter(|d| d.host == host)
                .map(|d| d.packets)
                .sum()
        };
        eprintln!(
            "udprange path: client-to-server packets dropped by firewalls (kernel counters): \
             client {}, router {}, server {}",
            by(Host::Client),
            by(Host::Router),
            by(Host::Server)
        );
    }
    drop(hosts);
    Ok(Outcome {
        stdout: String::new(),
        files: Vec::new(),
        code,
    })
}
