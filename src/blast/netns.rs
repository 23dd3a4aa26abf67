//! Test hosts for the `netns` backend: a client and a server network namespace joined by a
//! veth pair, addresses from the benchmarking range 198.18.0.0/15, real nftables rulesets on
//! both hosts, and the WAN path's impairments from the kernel where it has them.
//!
//! Everything is created with `ip`, `nft` and `tc` (iproute2, nftables) and removed when the
//! [`TestHosts`] value is dropped — at the end, on error, on panic (unwinding) and after
//! Ctrl-C, which ends a run normally. A run killed outright leaves namespaces named
//! `udprange-<pid>-<run>-client` and `-server`; the next run finds those whose process is
//! gone, or whose pid a newer process has taken, and removes them ([`remove_leftovers`]).
//!
//! The emulator and the clients enter their namespaces with `setns(2)` on threads of their
//! own ([`enter`]); threads those threads start (tokio's workers) inherit the namespace.

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Every namespace this tool creates starts with this.
pub const PREFIX: &str = "udprange-";
/// Where `ip netns` keeps its namespaces, one file each, made when the namespace is.
const NETNS_DIR: &str = "/var/run/netns";
/// The server's and the client's addresses on the veth pair (RFC 2544 benchmarking range).
pub const SERVER_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// The test hosts' subnet: room for the client groups' own addresses.
pub const PREFIX_LEN: u8 = 24;
/// Most client groups the client namespace gives addresses of their own.
pub const MAX_GROUP_ADDRESSES: usize = 200;

/// The address client group `group` (from 1) sends from in the client namespace.
pub fn group_addr(group: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, 10 + group.min(MAX_GROUP_ADDRESSES) as u8)
}

static RUNS: AtomicU32 = AtomicU32::new(0);

/// Why test hosts could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetnsError {
    #[error("blast --backend netns needs {0}")]
    Missing(String),
    #[error("`{command}` failed: {stderr}")]
    Command { command: String, stderr: String },
    #[error("cannot enter network namespace {name}: {reason}")]
    Enter { name: String, reason: String },
}

/// The WAN path between client and server.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct WanPath {
    pub delay: Option<Duration>,
    pub jitter: Option<Duration>,
    /// Fraction of datagrams lost, each direction.
    pub loss: Option<f64>,
    pub bandwidth_bps: Option<u64>,
}

/// Which mechanism carries each impairment, for the report.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct Mechanisms {
    pub delay: Option<String>,
    pub loss: Option<String>,
    pub bandwidth: Option<String>,
}

fn run(command: &mut Command, stdin: Option<&str>) -> Result<String, NetnsError> {
    let shown = format!("{command:?}").replace('"', "");
    let mut child = command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| NetnsError::Command {
            command: shown.clone(),
            stderr: e.to_string(),
        })?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let _ = pipe.write_all(text.as_bytes());
    }
    let output = child.wait_with_output().map_err(|e| NetnsError::Command {
        command: shown.clone(),
        stderr: e.to_string(),
    })?;
    if !output.status.success() {
        return Err(NetnsError::Command {
            command: shown,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn ip(args: &[&str]) -> Result<String, NetnsError> {
    run(Command::new("ip").args(args), None)
}

/// Checks for root, `ip` and `nft`; the error names everything missing.
pub fn check_requirements() -> Result<(), NetnsError> {
    let mut missing = Vec::new();
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        missing.push("root".to_string());
    }
    for tool in ["ip", "nft", "tc"] {
        let found = Command::new(tool)
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !found {
            missing.push(format!("`{tool}`"));
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(NetnsError::Missing(format!(
            "{} (install iproute2 and nftables, run as root)",
            missing.join(", ")
        )))
    }
}

/// The owner's pid in a name this tool gives its namespaces, exactly
/// `udprange-<pid>-<run>-client` or `udprange-<pid>-<run>-server`; `None` for any other name,
/// which cleanup never touches.
pub fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX)?;
    let rest = rest
        .strip_suffix("-client")
        .or_else(|| rest.strip_suffix("-server"))?;
    let (pid, run) = rest.split_once('-')?;
    let number = |text: &str| {
        (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
            .then(|| text.parse::<u32>().ok())
            .flatten()
    };
    number(run)?;
    number(pid)
}

/// Why a namespace's owner is certainly gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerGone {
    /// No process has the pid.
    NoProcess,
    /// The process with the pid started after the namespace was made: the pid was reused
    /// (the owner made the namespace, so it started first).
    Reused,
    /// The pid is 1, the init process, which is never a run of this tool unless it is this
    /// one (a container's entry point).
    Init,
}

impl std::fmt::Display for OwnerGone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::NoProcess => "its process is gone",
            Self::Reused => "its pid now belongs to a newer process",
            Self::Init => "its pid is 1, the init process",
        })
    }
}

/// Whether the owner of a namespace of ours is gone: `pid` from its name, `own_pid` this
/// process's, `created` when the namespace was made, `started` when the process that now
/// has `pid` started (`None`: no such process). `None` when the owner may still run.
///
/// Start times from /proc are never later than the truth (boot time is whole seconds,
/// rounded down), so a live owner is never taken for a newer process.
pub fn owner_gone(
    pid: u32,
    own_pid: u32,
    created: SystemTime,
    started: Option<SystemTime>,
) -> Option<OwnerGone> {
    match started {
        None => Some(OwnerGone::NoProcess),
        Some(_) if pid == 1 && own_pid != 1 => Some(OwnerGone::Init),
        Some(started) if started > created => Some(OwnerGone::Reused),
        Some(_) => None,
    }
}

/// When the process `pid` started, from /proc/PID/stat (field 22, clock ticks after boot)
/// and the boot time in /proc/stat; `None` if that cannot be read.
fn process_started(pid: u32) -> Option<SystemTime> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 2, the command name, may hold spaces and parentheses: count after its `)`.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let ticks: u64 = after_name.split_whitespace().nth(22 - 3)?.parse().ok()?;
    let boot: u64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) })
        .ok()
        .filter(|&hz| hz > 0)?;
    let since_boot =
        Duration::from_secs(ticks / hz) + Duration::from_nanos((ticks % hz) * 1_000_000_000 / hz);
    Some(UNIX_EPOCH + Duration::from_secs(boot) + since_boot)
}

/// Namespaces left by runs whose process is gone (or whose pid now belongs to a newer
/// process); removes them and says so for each. Names not of this tool's exact pattern, and
/// namespaces whose owner may still run, are left alone.
pub fn remove_leftovers() -> Vec<String> {
    let Ok(list) = ip(&["netns", "list"]) else {
        return Vec::new();
    };
    let own_pid = std::process::id();
    let mut removed = Vec::new();
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(pid) = owner_pid(name) else {
            continue;
        };
        let Ok(created) =
            std::fs::metadata(format!("{NETNS_DIR}/{name}")).and_then(|m| m.modified())
        else {
            continue;
        };
        let started = if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            // A process that exists but whose start cannot be read may be the owner.
            let Some(started) = process_started(pid) else {
                continue;
            };
            Some(started)
        } else {
            None
        };
        let Some(why) = owner_gone(pid, own_pid, created, started) else {
            continue;
        };
        if ip(&["netns", "del", name]).is_ok() {
            removed.push(format!(
                "removed network namespace {name} left by an earlier run ({why})"
            ));
        }
    }
    removed
}

/// A client and a server namespace joined by a veth pair; removed on drop.
#[derive(Debug)]
pub struct TestHosts {
    pub client_ns: String,
    pub server_ns: String,
    client_if: String,
    server_if: String,
    pub mechanisms: Mechanisms,
}

impl TestHosts {
    /// Creates the namespaces, the veth pair and the addresses, loopback up in each.
    pub fn create() -> Result<Self, NetnsError> {
        let pid = std::process::id();
        let run = RUNS.fetch_add(1, Ordering::Relaxed);
        // Interface names have at most 15 bytes.
        let tag = format!("{:x}", (u64::from(pid) << 8) | u64::from(run & 0xff));
        let hosts = Self {
            client_ns: format!("{PREFIX}{pid}-{run}-client"),
            server_ns: format!("{PREFIX}{pid}-{run}-server"),
            client_if: format!("urc{tag}"),
            server_if: format!("urs{tag}"),
            mechanisms: Mechanisms::default(),
        };
        // From here on, dropping `hosts` removes whatever exists.
        ip(&["netns", "add", &hosts.server_ns])?;
        ip(&["netns", "add", &hosts.client_ns])?;
        ip(&[
            "link",
            "add",
            &hosts.server_if,
            "netns",
            &hosts.server_ns,
            "type",
            "veth",
            "peer",
            "name",
            &hosts.client_if,
            "netns",
            &hosts.client_ns,
        ])?;
        for (ns, dev, addr) in [
            (&hosts.server_ns, &hosts.server_if, SERVER_ADDR),
            (&hosts.client_ns, &hosts.client_if, CLIENT_ADDR),
        ] {
            let cidr = format!("{addr}/{PREFIX_LEN}");
            ip(&["-n", ns, "addr", "add", &cidr, "dev", dev])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(hosts)
    }

    /// Gives the client namespace one more address (a client group's own).
    pub fn add_client_address(&self, addr: Ipv4Addr) -> Result<(), NetnsError> {
        let cidr = format!("{addr}/{PREFIX_LEN}");
        ip(&[
            "-n",
            &self.client_ns,
            "addr",
            "add",
            &cidr,
            "dev",
            &self.client_if,
        ])
        .map(|_| ())
    }

    /// Loads an nftables ruleset into one of the namespaces, atomically (`nft -f`).
    pub fn load_rules(&self, namespace: &str, ruleset: &str) -> Result<(), NetnsError> {
        run(
            Command::new("ip").args(["netns", "exec", namespace, "nft", "-f", "-"]),
            Some(ruleset),
        )
        .map(|_| ())
    }

    /// Puts the WAN path's impairments where the kernel can carry them. Returns the delay
    /// and jitter the emulator must add itself (when the kernel has no netem).
    pub fn impair(&mut self, path: &WanPath) -> Result<Option<(Duration, Duration)>, NetnsError> {
        if let Some(loss) = path.loss.filter(|l| *l > 0.0) {
            // Per million: `numgen random mod 1000000 < n` drops n in a million, each way.
            let per_million = (loss * 1e6).round().clamp(0.0, 1e6) as u64;
            let rules = format!(
                "table inet udprange_wan {{\n\tchain input {{\n\t\ttype filter hook input priority filter; policy accept;\n\t\tmeta l4proto udp numgen random mod 1000000 < {per_million} drop comment \"WAN loss\"\n\t}}\n}}\n"
            );
            for ns in [&self.client_ns, &self.server_ns] {
                run(
                    Command::new("ip").args(["netns", "exec", ns, "nft", "-f", "-"]),
                    Some(&rules),
                )?;
            }
            self.mechanisms.loss = Some(format!(
                "nftables numgen random drop, {per_million} per million each way"
            ));
        }
        let mut delay_in_emulator = None;
        let delay = path.delay.unwrap_or_default();
        let jitter = path.jitter.unwrap_or_default();
        if !delay.is_zero() || !jitter.is_zero() {
            let netem = |ns: &str, dev: &str| {
                let mut args = vec![
                    "-n".to_string(),
                    ns.into(),
                    "qdisc".into(),
                    "add".into(),
                    "dev".into(),
                    dev.into(),
                ];
                args.extend([
                    "root".into(),
                    "handle".into(),
                    "1:".into(),
                    "netem".into(),
                    "delay".into(),
                ]);
                args.push(format!("{}us", delay.as_micros()));
                if !jitter.is_zero() {
                    args.push(format!("{}us", jitter.as_micros()));
                }
                run(Command::new("tc").args(&args), None)
            };
            match netem(&self.server_ns, &self.server_if)
                .and_then(|_| netem(&self.client_ns, &self.client_if))
            {
                Ok(_) => self.mechanisms.delay = Some("netem qdisc on both veth ends".to_string()),
                Err(_) => {
                    // The kernel has no netem: the emulator delays datagrams itself.
                    let _ = run(
                        Command::new("tc").args([
                            "-n",
                            &self.server_ns,
                            "qdisc",
                            "del",
                            "dev",
                            &self.server_if,
                            "root",
                        ]),
                        None,
                    );
                    self.mechanisms.delay = Some(
                        "in-emulator delay line, both directions (the kernel has no netem)"
                            .to_string(),
                    );
                    delay_in_emulator = Some((delay, jitter));
                }
            }
        }
        if let Some(bps) = path.bandwidth_bps.filter(|b| *b > 0) {
            let parent_netem = self
                .mechanisms
                .delay
                .as_deref()
                .is_some_and(|d| d.starts_with("netem"));
            for (ns, dev) in [
                (&self.server_ns, &self.server_if),
                (&self.client_ns, &self.client_if),
            ] {
                let mut args = vec!["-n", ns, "qdisc", "add", "dev", dev];
                if parent_netem {
                    args.extend(["parent", "1:1", "handle", "10:"]);
                } else {
                    args.push("root");
                }
                let rate = format!("{bps}bit");
                args.extend(["tbf", "rate", &rate, "burst", "64kb", "latency", "100ms"]);
                run(Command::new("tc").args(&args), None)?;
            }
            self.mechanisms.bandwidth = Some(format!("tbf qdisc at {bps} bit/s on both veth ends"));
        }
        Ok(delay_in_emulator)
    }
}

impl Drop for TestHosts {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth end in it, and with it the pair.
        for ns in [&self.client_ns, &self.server_ns] {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

/// Moves the calling thread into network namespace `name` (made by [`TestHosts::create`]).
pub fn enter(name: &str) -> Result<(), NetnsError> {
    use std::os::fd::AsRawFd;
    let error = |reason: String| NetnsError::Enter {
        name: name.to_string(),
        reason,
    };
    let file =
        std::fs::File::open(format!("{NETNS_DIR}/{name}")).map_err(|e| error(e.to_string()))?;
    // SAFETY: the descriptor is open for the duration of the call; setns only changes this
    // thread's network namespace.
    let result = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if result != 0 {
        return Err(error(std::io::Error::last_os_error().to_string()));
    }
    Ok(())
}

/// Whether a namespace of this name exists.
pub fn exists(name: &str) -> bool {
    ip(&["netns", "list"]).is_ok_and(|list| {
        list.lines()
            .any(|l| l.split_whitespace().next() == Some(name))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_pid_reads_only_the_exact_pattern() {
        assert_eq!(owner_pid("udprange-1234-0-client"), Some(1234));
        assert_eq!(owner_pid("udprange-1-17-server"), Some(1));
        for other in [
            "udprange-mine",
            "udprange-1234-client",
            "udprange-1234-0-router",
            "udprange-1234-0-client-x",
            "udprange-1234-0-0-client",
            "udprange--0-client",
            "udprange-1234--client",
            "udprange-+12-0-client",
            "udprange-12a-0-client",
            "udprange-99999999999-0-client",
            "udprange-1234-0-Client",
            "other-1234-0-client",
            "udprange-",
            "",
        ] {
            assert_eq!(owner_pid(other), None, "{other}");
        }
    }

    #[test]
    fn owner_is_gone_when_its_pid_is_free_reused_or_init() {
        let t = |s: u64| UNIX_EPOCH + Duration::from_secs(1_800_000_000 + s);
        let created = t(100);
        // The owner started, then made the namespace: it may still run.
        assert_eq!(owner_gone(4321, 99, created, Some(t(99))), None);
        assert_eq!(owner_gone(4321, 99, created, Some(created)), None);
        assert_eq!(owner_gone(99, 99, created, Some(t(0))), None);
        assert_eq!(
            owner_gone(4321, 99, created, None),
            Some(OwnerGone::NoProcess)
        );
        // The process with that pid is younger than the namespace: not the owner.
        assert_eq!(
            owner_gone(4321, 99, created, Some(t(101))),
            Some(OwnerGone::Reused)
        );
        assert_eq!(
            owner_gone(99, 99, created, Some(t(101))),
            Some(OwnerGone::Reused)
        );
        // Init is older than everything and never a run of ours, unless we are init.
        assert_eq!(
            owner_gone(1, 99, created, Some(t(0))),
            Some(OwnerGone::Init)
        );
        assert_eq!(owner_gone(1, 1, created, Some(t(0))), None);
    }

    #[test]
    fn own_start_time_is_in_the_past() {
        let started = process_started(std::process::id()).expect("/proc is readable");
        assert!(started <= SystemTime::now());
        assert!(SystemTime::now().duration_since(started).unwrap() < Duration::from_secs(3600));
    }
}
