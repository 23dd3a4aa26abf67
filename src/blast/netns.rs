//! Test hosts for the `netns` backend: three network namespaces, client — router — server,
//! joined by two veth pairs with addresses from the benchmarking range 198.18.0.0/15, the
//! router forwarding. Real nftables rulesets on the hosts (or the user's own ruleset where
//! they ask), and the WAN path's impairments on the router, for every protocol.
//!
//! Everything is created with `ip`, `nft` and `tc` (iproute2, nftables) and removed when the
//! [`TestHosts`] value is dropped — at the end, on error, on panic (unwinding) and after
//! Ctrl-C, which ends a run normally. A run killed outright leaves namespaces named
//! `udprange-<pid>-<run>-client`, `-router` and `-server`; the next run finds those whose process is
//! gone, or whose pid a newer process has taken, and removes them ([`remove_leftovers`]).
//!
//! The emulator and the clients enter their namespaces with `setns(2)` on threads of their
//! own ([`enter`]); threads those threads start (tokio's workers) inherit the namespace.

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::delay::{self, DelayLine, DelayStats};
pub use crate::firewall::ruleset::Host;
use crate::firewall::ruleset::{RulesetError, UserRuleset};

/// Every namespace this tool creates starts with this.
pub const PREFIX: &str = "udprange-";
/// Where `ip netns` keeps its namespaces, one file each, made when the namespace is.
const NETNS_DIR: &str = "/var/run/netns";
/// Addresses, all from the benchmarking range 198.18.0.0/15 (RFC 2544): the client's side of
/// the router is 198.18.0.0/24, the server's 198.19.0.0/24.
pub const CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
pub const ROUTER_CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 254);
pub const ROUTER_SERVER_ADDR: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 254);
pub const SERVER_ADDR: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 1);
/// The veths' MTU, as on most real paths.
pub const PATH_MTU: u16 = 1500;
/// Each side's subnet: room for the client groups' own addresses.
pub const PREFIX_LEN: u8 = 24;
/// The client side's subnet, where every client (group) address is.
pub const CLIENT_NET: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 0);
/// The priorities of the chains that count each host's packets before and after every
/// other chain of its hook (a firewall under test may use any priority in between).
const COUNT_BEFORE_PRIORITY: i32 = -30_000;
const COUNT_AFTER_PRIORITY: i32 = 30_000;
/// The priority of the router's WAN loss chain: after any firewall under test, and after
/// the counters that tell what that firewall dropped.
pub const LOSS_PRIORITY: i32 = 30_100;
/// The table of the flow counters, on every host.
const COUNT_TABLE: &str = "udprange_count";
/// The table of `audit --confirm`'s probe counters.
const PROBE_TABLE: &str = "udprange_probe";
/// Most flows each counting set holds.
pub const COUNTED_FLOWS: u32 = 65_536;
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
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, schemars::JsonSchema)]
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
    for tool in ["ip", "nft", "tc", "iptables", "ethtool"] {
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
            "{} (install iproute2, nftables, iptables and ethtool; run as root)",
            missing.join(", ")
        )))
    }
}

/// The owner's pid in a name this tool gives its namespaces, exactly
/// `udprange-<pid>-<run>-client`, `-router`, `-server` or `-audit`; `None` for any other name,
/// which cleanup never touches.
pub fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX)?;
    let rest = rest
        .strip_suffix("-client")
        .or_else(|| rest.strip_suffix("-router"))
        .or_else(|| rest.strip_suffix("-server"))
        .or_else(|| rest.strip_suffix("-audit"))?;
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

/// The client, the router and the server namespace, joined by two veth pairs; removed on
/// drop (the delay line first).
pub struct TestHosts {
    pub client_ns: String,
    pub router_ns: String,
    pub server_ns: String,
    /// The client's interface, and the router's toward the client.
    client_if: String,
    router_client_if: String,
    /// The router's interface toward the server, and the server's.
    router_server_if: String,
    server_if: String,
    pub mechanisms: Mechanisms,
    /// The router's delay line, while it runs.
    delay_line: Option<DelayLine>,
}

impl std::fmt::Debug for TestHosts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestHosts")
            .field("client_ns", &self.client_ns)
            .field("router_ns", &self.router_ns)
            .field("server_ns", &self.server_ns)
            .finish_non_exhaustive()
    }
}

fn exec(namespace: &str, args: &[&str], stdin: Option<&str>) -> Result<String, NetnsError> {
    run(
        Command::new("ip")
            .args(["netns", "exec", namespace])
            .args(args),
        stdin,
    )
}

impl TestHosts {
    /// Creates the three namespaces, the two veth pairs, addresses and routes, forwarding
    /// on the router, offloads off everywhere (per-packet loss and delay must see packets,
    /// not 64 KB GSO bursts), loopback up in each.
    pub fn create() -> Result<Self, NetnsError> {
        let pid = std::process::id();
        let run = RUNS.fetch_add(1, Ordering::Relaxed);
        // Interface names have at most 15 bytes.
        let tag = format!("{:x}", (u64::from(pid) << 8) | u64::from(run & 0xff));
        let hosts = Self {
            client_ns: format!("{PREFIX}{pid}-{run}-client"),
            router_ns: format!("{PREFIX}{pid}-{run}-router"),
            server_ns: format!("{PREFIX}{pid}-{run}-server"),
            client_if: format!("urc{tag}"),
            router_client_if: format!("urrc{tag}"),
            router_server_if: format!("urrs{tag}"),
            server_if: format!("urs{tag}"),
            mechanisms: Mechanisms::default(),
            delay_line: None,
        };
        // From here on, dropping `hosts` removes whatever exists.
        for ns in [&hosts.server_ns, &hosts.router_ns, &hosts.client_ns] {
            ip(&["netns", "add", ns])?;
        }
        for (ns, dev, router_dev) in [
            (&hosts.client_ns, &hosts.client_if, &hosts.router_client_if),
            (&hosts.server_ns, &hosts.server_if, &hosts.router_server_if),
        ] {
            ip(&[
                "link",
                "add",
                dev,
                "netns",
                ns,
                "type",
                "veth",
                "peer",
                "name",
                router_dev,
                "netns",
                &hosts.router_ns,
            ])?;
        }
        let prefix = PREFIX_LEN.to_string();
        for (ns, dev, addr) in [
            (&hosts.client_ns, &hosts.client_if, CLIENT_ADDR),
            (
                &hosts.router_ns,
                &hosts.router_client_if,
                ROUTER_CLIENT_ADDR,
            ),
            (
                &hosts.router_ns,
                &hosts.router_server_if,
                ROUTER_SERVER_ADDR,
            ),
            (&hosts.server_ns, &hosts.server_if, SERVER_ADDR),
        ] {
            let cidr = format!("{addr}/{prefix}");
            ip(&["-n", ns, "addr", "add", &cidr, "dev", dev])?;
            exec(
                ns,
                &[
                    "ethtool", "-K", dev, "tso", "off", "gso", "off", "gro", "off",
                ],
                None,
            )?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        for (ns, via) in [
            (&hosts.client_ns, ROUTER_CLIENT_ADDR),
            (&hosts.server_ns, ROUTER_SERVER_ADDR),
        ] {
            ip(&["-n", ns, "route", "add", "default", "via", &via.to_string()])?;
        }
        exec(
            &hosts.router_ns,
            &["sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"],
            None,
        )?;
        Ok(hosts)
    }

    /// The namespace of `host`.
    pub fn namespace(&self, host: Host) -> &str {
        match host {
            Host::Client => &self.client_ns,
            Host::Router => &self.router_ns,
            Host::Server => &self.server_ns,
        }
    }

    /// Gives the client namespace one more address (a client group's own).
    pub fn add_client_address(&self, addr: Ipv4Addr) -> Result<(), NetnsError> {
        self.add_address(Host::Client, addr, PREFIX_LEN)
    }

    /// Gives the client's or the server's interface one more address.
    fn add_address(&self, host: Host, addr: Ipv4Addr, prefix: u8) -> Result<(), NetnsError> {
        let dev = match host {
            Host::Server => &self.server_if,
            _ => &self.client_if,
        };
        let cidr = format!("{addr}/{prefix}");
        ip(&["-n", self.namespace(host), "addr", "add", &cidr, "dev", dev]).map(|_| ())
    }

    /// Loads an nftables ruleset into one of the namespaces, atomically (`nft -f`).
    pub fn load_rules(&self, namespace: &str, ruleset: &str) -> Result<(), NetnsError> {
        exec(namespace, &["nft", "-f", "-"], Some(ruleset)).map(|_| ())
    }

    /// Runs a command in one of the namespaces; its standard output.
    pub fn exec(
        &self,
        host: Host,
        args: &[&str],
        stdin: Option<&str>,
    ) -> Result<String, NetnsError> {
        exec(self.namespace(host), args, stdin)
    }

    /// Puts the WAN path's impairments on the router, for every protocol where the
    /// mechanism allows: delay and jitter from the NFQUEUE delay line, bandwidth from tbf on
    /// both of the router's interfaces, loss (TCP and UDP) from nftables in its forward hook
    /// after any firewall under test. `queue_max_len` sizes the delay line's kernel queue.
    pub fn impair(&mut self, path: &WanPath, queue_max_len: u32) -> Result<(), NetnsError> {
        if let Some(loss) = path.loss.filter(|l| *l > 0.0) {
            // Per million: `numgen random mod 1000000 < n` drops n in a million, each way.
            let per_million = (loss * 1e6).round().clamp(0.0, 1e6) as u64;
            let rules = format!(
                "table inet udprange_wan {{\n\tchain forward {{\n\t\ttype filter hook forward priority {LOSS_PRIORITY}; policy accept;\n\t\tmeta l4proto {{ tcp, udp }} numgen random mod 1000000 < {per_million} drop comment \"WAN loss\"\n\t}}\n}}\n"
            );
            self.load_rules(&self.router_ns, &rules)?;
            self.mechanisms.loss = Some(format!(
                "nftables numgen random drop on the router, TCP and UDP, {per_million} per million each way"
            ));
        }
        let delay = path.delay.unwrap_or_default();
        let jitter = path.jitter.unwrap_or_default();
        if !delay.is_zero() || !jitter.is_zero() {
            let line = DelayLine::start(&self.router_ns, delay, jitter, queue_max_len)?;
            self.delay_line = Some(line);
            let queue = delay::QUEUE_NUM.to_string();
            exec(
                &self.router_ns,
                &[
                    "iptables",
                    "-t",
                    "raw",
                    "-I",
                    "PREROUTING",
                    "1",
                    "-j",
                    "NFQUEUE",
                    "--queue-num",
                    &queue,
                    "--queue-bypass",
                ],
                None,
            )?;
            self.mechanisms.delay = Some(format!(
                "NFQUEUE delay line on the router, every protocol, both directions (queue {queue}, \
                 at most {queue_max_len} packets held)"
            ));
        }
        if let Some(bps) = path.bandwidth_bps.filter(|b| *b > 0) {
            for dev in [&self.router_client_if, &self.router_server_if] {
                let rate = format!("{bps}bit");
                run(
                    Command::new("tc").args([
                        "-n",
                        &self.router_ns,
                        "qdisc",
                        "add",
                        "dev",
                        dev,
                        "root",
                        "tbf",
                        "rate",
                        &rate,
                        "burst",
                        "64kb",
                        "latency",
                        "100ms",
                    ]),
                    None,
                )?;
            }
            self.mechanisms.bandwidth = Some(format!(
                "tbf qdisc at {bps} bit/s on both of the router's interfaces"
            ));
        }
        Ok(())
    }

    /// Checks the user's ruleset in the namespace of `host` (`nft -c`, `iptables-restore
    /// --test`), then loads it there; the tool's own message when either refuses it.
    pub fn load_user_ruleset(&self, host: Host, ruleset: &UserRuleset) -> Result<(), RulesetError> {
        let refused = |command: &[&str], e: NetnsError| RulesetError::Refused {
            path: ruleset.path.clone(),
            tool: command.join(" "),
            // The tools read the file from stdin: name it as the user does.
            message: match e {
                NetnsError::Command { stderr, .. } => stderr.replace("/dev/stdin", &ruleset.path),
                other => other.to_string(),
            },
        };
        for command in [
            ruleset.format.check_command(),
            ruleset.format.load_command(),
        ] {
            self.exec(host, command, Some(&ruleset.text))
                .map_err(|e| refused(command, e))?;
        }
        Ok(())
    }

    /// Counts every client-to-server packet (TCP and UDP) on each host twice, per flow: in a
    /// chain before every other chain of the host's hook and in one after all of them. What
    /// the first saw and the second did not, a firewall on that host dropped: read from the
    /// kernel's counters, never guessed. Loaded after any ruleset under test (which may
    /// `flush ruleset`).
    pub fn count_flows(&self) -> Result<(), NetnsError> {
        for host in [Host::Client, Host::Router, Host::Server] {
            self.load_rules(self.namespace(host), &counting_table(host))?;
        }
        Ok(())
    }

    /// What the firewalls dropped, per host and flow, from the counters [`count_flows`]
    /// installed.
    ///
    /// [`count_flows`]: Self::count_flows
    pub fn dropped(&self) -> Result<Vec<Dropped>, NetnsError> {
        let mut drops = Vec::new();
        for host in [Host::Client, Host::Router, Host::Server] {
            let read = |set: &str| -> Result<Vec<(Flow, u64)>, NetnsError> {
                let json = self.exec(
                    host,
                    &["nft", "-j", "list", "set", "inet", COUNT_TABLE, set],
                    None,
                )?;
                Ok(parse_flow_counters(&json))
            };
            let before = read("before")?;
            let after: std::collections::HashMap<Flow, u64> = read("after")?.into_iter().collect();
            for (flow, seen) in before {
                let passed = after.get(&flow).copied().unwrap_or(0);
                if seen > passed {
                    drops.push(Dropped {
                        host,
                        flow,
                        packets: seen - passed,
                    });
                }
            }
        }
        drops.sort_by_key(|d| (d.host.name(), d.flow));
        Ok(drops)
    }

    /// Lets the client send from `client` and the server receive on `server` as well as on
    /// the test addresses, routed through the router (for a ruleset written for them).
    pub fn add_addresses(&self, client: Ipv4Addr, server: Ipv4Addr) -> Result<(), NetnsError> {
        if client != CLIENT_ADDR {
            self.add_address(Host::Client, client, 32)?;
            let c = format!("{client}/32");
            ip(&[
                "-n",
                &self.router_ns,
                "route",
                "add",
                &c,
                "via",
                &CLIENT_ADDR.to_string(),
            ])?;
        }
        if server != SERVER_ADDR {
            let s = format!("{server}/32");
            ip(&[
                "-n",
                &self.server_ns,
                "addr",
                "add",
                &s,
                "dev",
                &self.server_if,
            ])?;
            ip(&[
                "-n",
                &self.router_ns,
                "route",
                "add",
                &s,
                "via",
                &SERVER_ADDR.to_string(),
            ])?;
        }
        Ok(())
    }

    /// Counts probes to `server` by protocol and destination port where they leave (the
    /// client's output hook, before all else) and where they arrive (the server's
    /// prerouting before all else, or its input after all else when the firewall under
    /// test is the server's own).
    pub fn count_probes(&self, server: Ipv4Addr, firewall: Host) -> Result<(), NetnsError> {
        let table = |set: &str, hook: &str, priority: i32| {
            format!(
                "table inet {PROBE_TABLE} {{\n\tset {set} {{\n\t\ttype inet_proto . inet_service\n\t\tsize 131072\n\t\tflags dynamic\n\t\tcounter\n\t}}\n\tchain {set} {{\n\t\ttype filter hook {hook} priority {priority}; policy accept;\n\t\tip daddr {server} meta l4proto {{ tcp, udp }} update @{set} {{ meta l4proto . th dport }}\n\t}}\n}}\n"
            )
        };
        self.load_rules(
            &self.client_ns,
            &table("sent", "output", COUNT_BEFORE_PRIORITY),
        )?;
        let arrival = match firewall {
            Host::Server => table("arrived", "input", COUNT_AFTER_PRIORITY),
            _ => table("arrived", "prerouting", COUNT_BEFORE_PRIORITY),
        };
        self.load_rules(&self.server_ns, &arrival)
    }

    /// The (protocol is TCP, destination port) pairs [`count_probes`] saw leave and arrive.
    ///
    /// [`count_probes`]: Self::count_probes
    pub fn probes(&self) -> Result<(Vec<Probe>, Vec<Probe>), NetnsError> {
        let read = |host: Host, set: &str| -> Result<Vec<Probe>, NetnsError> {
            let json = self.exec(
                host,
                &["nft", "-j", "list", "set", "inet", PROBE_TABLE, set],
                None,
            )?;
            Ok(parse_probe_counters(&json))
        };
        Ok((read(Host::Client, "sent")?, read(Host::Server, "arrived")?))
    }

    /// Stops the delay line, if one runs, and says what it did.
    pub fn finish_delay(&mut self) -> Option<DelayStats> {
        self.delay_line.take().map(DelayLine::finish)
    }
}

/// One client-to-server flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Flow {
    pub tcp: bool,
    pub source: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
}

/// Packets of a flow a host's firewall dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dropped {
    pub host: Host,
    pub flow: Flow,
    pub packets: u64,
}

/// The nftables table that counts a host's client-to-server flows before and after every
/// other chain of its hook.
pub fn counting_table(host: Host) -> String {
    let hook = host.hook();
    let key = "meta l4proto . ip saddr . th sport . th dport";
    let set = |name: &str| {
        format!(
            "\tset {name} {{\n\t\ttype inet_proto . ipv4_addr . inet_service . inet_service\n\t\tsize {COUNTED_FLOWS}\n\t\tflags dynamic\n\t\tcounter\n\t}}\n"
        )
    };
    let chain = |name: &str, priority: i32| {
        format!(
            "\tchain {name} {{\n\t\ttype filter hook {hook} priority {priority}; policy accept;\n\t\tip daddr {SERVER_ADDR} meta l4proto {{ tcp, udp }} update @{name} {{ {key} }}\n\t}}\n"
        )
    };
    format!(
        "table inet {COUNT_TABLE} {{\n{}{}{}{}}}\n",
        set("before"),
        set("after"),
        chain("before", COUNT_BEFORE_PRIORITY),
        chain("after", COUNT_AFTER_PRIORITY)
    )
}

/// A probe: whether it is TCP, and its destination port.
pub type Probe = (bool, u16);

/// The elements of the sets in `nft -j list set` output: each key's parts (a concatenation)
/// and its packet counter. Anything else is skipped.
fn counted_elements(json: &str) -> Vec<(Vec<serde_json::Value>, u64)> {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(json) else {
        return Vec::new();
    };
    let sets = value["nftables"].as_array().into_iter().flatten();
    sets.filter_map(|o| o["set"]["elem"].as_array())
        .flatten()
        .filter_map(|e| {
            let elem = &e["elem"];
            Some((
                elem["val"]["concat"].as_array()?.clone(),
                elem["counter"]["packets"].as_u64()?,
            ))
        })
        .collect()
}

/// Whether a key part is the protocol TCP (`"tcp"` or 6).
fn is_tcp(part: Option<&serde_json::Value>) -> Option<bool> {
    Some(match part? {
        serde_json::Value::String(p) => p == "tcp",
        v => v.as_u64() == Some(6),
    })
}

fn port(part: Option<&serde_json::Value>) -> Option<u16> {
    part?.as_u64().and_then(|p| u16::try_from(p).ok())
}

/// The probes with packets in `nft -j list set` output of a probe set.
pub fn parse_probe_counters(json: &str) -> Vec<Probe> {
    counted_elements(json)
        .into_iter()
        .filter(|(_, packets)| *packets > 0)
        .filter_map(|(key, _)| Some((is_tcp(key.first())?, port(key.get(1))?)))
        .collect()
}

/// The flows and packet counts in `nft -j list set` output; elements it cannot read are
/// skipped.
pub fn parse_flow_counters(json: &str) -> Vec<(Flow, u64)> {
    counted_elements(json)
        .into_iter()
        .filter_map(|(key, packets)| {
            let flow = Flow {
                tcp: is_tcp(key.first())?,
                source: key.get(1)?.as_str()?.parse().ok()?,
                sport: port(key.get(2))?,
                dport: port(key.get(3))?,
            };
            Some((flow, packets))
        })
        .collect()
}

impl Drop for TestHosts {
    fn drop(&mut self) {
        drop(self.delay_line.take());
        // Deleting a namespace deletes the veth ends in it, and with them the pairs.
        for ns in [&self.client_ns, &self.router_ns, &self.server_ns] {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

/// An nftables ruleset in text as `nft -j list ruleset` prints it: loaded into a namespace of
/// its own (so `include`, `define` and `flush ruleset` mean what nft makes of them), listed,
/// and the namespace removed. Needs root and `nft`.
pub fn nft_json(ruleset: &UserRuleset) -> Result<String, RulesetError> {
    let refused = |tool: &str, e: NetnsError| RulesetError::Refused {
        path: ruleset.path.clone(),
        tool: tool.to_string(),
        message: match e {
            NetnsError::Command { stderr, .. } => stderr.replace("/dev/stdin", &ruleset.path),
            other => other.to_string(),
        },
    };
    let run = RUNS.fetch_add(1, Ordering::Relaxed);
    let scratch = Scratch(format!("{PREFIX}{}-{run}-audit", std::process::id()));
    ip(&["netns", "add", &scratch.0]).map_err(|e| refused("ip netns add", e))?;
    exec(
        &scratch.0,
        ruleset.format.load_command(),
        Some(&ruleset.text),
    )
    .map_err(|e| refused(&ruleset.format.load_command().join(" "), e))?;
    exec(&scratch.0, &["nft", "-j", "list", "ruleset"], None)
        .map_err(|e| refused("nft -j list ruleset", e))
}

/// A namespace removed when dropped.
struct Scratch(String);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.0]);
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
    fn flow_counters_are_read_from_nft_json() {
        let json = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}}, {"set": {"family": "inet", "name": "before", "table": "udprange_count", "type": ["inet_proto", "ipv4_addr", "inet_service", "inet_service"], "elem": [{"elem": {"val": {"concat": ["udp", "198.18.0.2", 40001, 33009]}, "counter": {"packets": 838, "bytes": 1}}}, {"elem": {"val": {"concat": ["tcp", "198.18.0.2", 40002, 22]}, "counter": {"packets": 5, "bytes": 1}}}, {"elem": {"val": {"concat": ["udp", "not an address", 1, 2]}, "counter": {"packets": 1, "bytes": 1}}}, {"elem": {"val": {"concat": ["udp", "198.18.0.2", 70000, 2]}, "counter": {"packets": 1, "bytes": 1}}}]}}]}"#;
        let flows = parse_flow_counters(json);
        assert_eq!(flows.len(), 2, "unreadable elements are skipped: {flows:?}");
        assert_eq!(
            flows[0],
            (
                Flow {
                    tcp: false,
                    source: CLIENT_ADDR,
                    sport: 40001,
                    dport: 33009
                },
                838
            )
        );
        assert!(flows[1].0.tcp && flows[1].0.dport == 22);
        assert!(parse_flow_counters("not json").is_empty());
        let probes = r#"{"nftables": [{"set": {"elem": [{"elem": {"val": {"concat": ["udp", 33001]}, "counter": {"packets": 1}}}, {"elem": {"val": {"concat": ["udp", 33002]}, "counter": {"packets": 0}}}, {"elem": {"val": {"concat": ["tcp", 22]}, "counter": {"packets": 2}}}]}}]}"#;
        assert_eq!(parse_probe_counters(probes), [(false, 33001), (true, 22)]);
    }

    #[test]
    fn counting_chains_come_before_and_after_every_other() {
        let table = counting_table(Host::Router);
        assert!(table.contains("type filter hook forward priority -30000;"));
        assert!(table.contains("type filter hook forward priority 30000;"));
        assert!(table.contains(&format!(
            "ip daddr {SERVER_ADDR} meta l4proto {{ tcp, udp }}"
        )));
        assert!(counting_table(Host::Client).contains("hook output"));
        assert!(counting_table(Host::Server).contains("hook input"));
        const { assert!(COUNT_AFTER_PRIORITY < LOSS_PRIORITY) };
    }

    #[test]
    fn owner_pid_reads_only_the_exact_pattern() {
        assert_eq!(owner_pid("udprange-1234-0-client"), Some(1234));
        assert_eq!(owner_pid("udprange-1-17-server"), Some(1));
        assert_eq!(owner_pid("udprange-77-3-router"), Some(77));
        assert_eq!(owner_pid("udprange-78-0-audit"), Some(78));
        for other in [
            "udprange-mine",
            "udprange-1234-client",
            "udprange-1234-0-switch",
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
