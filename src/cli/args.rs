//! The clap definitions: every flag, its help text, default and example. Completions and the
//! man pages are generated from these same definitions.
// The doc comments are the command line's help text: `[expect]`, `[server]` name sections of
// a scenario file, not items.
#![allow(rustdoc::broken_intra_doc_links)]

use std::collections::BTreeSet;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum, ValueHint};

use super::choices::{Choice, CommandName};

use crate::blast::Size;
use crate::blast::netns::WanPath;
use crate::blast::rate::Policy;
use crate::firewall::rules::Syntax;
use crate::firewall::ruleset::{Host, UserRuleset};
use crate::firewall::{Peer, Side};
use crate::limits;
use crate::model::{Port, PortRange, ServerOs, parse_port};
use crate::plan::logsize::LogSide;
use crate::report::Format;
use crate::scenario::Start;
use crate::sim::Shard;
use crate::units::{Bitrate, ByteSize, Duration, Probability, Rate, parse_non_negative};

/// Exact UDP port ranges for FASP-style transfer servers, and the firewall rules for them.
#[derive(Debug, Parser)]
#[command(
    name = "udprange",
    version,
    about,
    long_about = "Exact UDP port ranges for FASP-style transfer servers.\n\n\
        A transfer server hands out UDP ports incrementally from 33001. Windows servers give \
        every concurrent session its own port, macOS and FreeBSD one per user account, linux \
        one for all (unless port reuse is off). udprange tells you the exact range your \
        client and server firewalls must open, and writes the rules.",
    after_help = "Exit codes: 0 success, 1 a check failed, 2 bad input, 3 blast was \
        inconclusive, 130 blast was interrupted.\n\
        Example: udprange plan --os windows --concurrent 10"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The UDP range, control port and firewall openings for a server and workload.
    ///
    /// Fixed workload (the vendor's rule): --concurrent N. Random load: --offered-load A, or
    /// --arrival-rate R with --mean-duration D, sized to --target-blocking.
    Plan(PlanArgs),
    /// Firewall rules to paste, for the same flags as `plan`.
    Rules(RulesArgs),
    /// Simulate a scenario file: blocking for every range size with 95% intervals, the range
    /// to open for the target blocking, peak ports, occupancy.
    ///
    /// Without a file it runs the embedded seed example (windows, 10 concurrent transfers).
    /// The format of scenario files is in scenarios/README.md.
    Simulate(SimulateArgs),
    /// Run the [expect] section of every scenario and report one line each; exit 1 if any fails.
    Check(CheckArgs),
    /// Replay a scenario's load with real FASP-like packets through the client's firewall and
    /// report, session by session, what got through beside what the model predicts: exit 0
    /// when the range is sufficient, 1 when not, 3 when sessions failed only for reasons that
    /// are not the range's (inconclusive), 130 after Ctrl-C.
    ///
    /// Without a file it replays the embedded seed example (windows, 10 concurrent transfers,
    /// 33001-33010). --clients, --start, --duration or --accounts run a burst of identical
    /// transfers instead. Flags override the scenario's [server], [client] and [traffic].
    Blast(BlastArgs),
    /// Run the transfer-server emulator alone, for `udprange blast --server` on another host:
    /// many clients at once, a line per session, Ctrl-C ends it (exit 0).
    ///
    /// Example: udprange serve --os windows --listen 0.0.0.0:33001 --key s3cret
    Serve(ServeArgs),
    /// Which UDP ports (and the TCP control port) a firewall ruleset passes from client to
    /// server, without a packet: `passes`, `missing` (needed, dropped: too narrow) and `extra`
    /// (passed, not needed: a security finding) against what the plan flags (or a scenario)
    /// need. Exit 0 when sufficient, 1 when something needed is dropped, 3 when what decides
    /// it cannot be told statically (the report names it).
    ///
    /// Example: udprange audit corp.nft --at router --os windows --concurrent 10
    Audit(AuditArgs),
    /// Run any command through the netns backend's path: client — router — server, with
    /// the router's delay, jitter, loss, bandwidth and firewall. COMMAND runs in the client
    /// namespace (the server is 198.19.0.1, in $UDPRANGE_SERVER), --server-exec in the
    /// server's; both are stopped and everything removed at the end, on error and Ctrl-C.
    /// Exit: the command's, 124 when --duration ran out, 130 after Ctrl-C.
    ///
    /// Example: udprange path --delay 25ms --server-exec 'iperf3 -s -1' -- iperf3 -c 198.19.0.1
    Path(PathArgs),
    /// Combine shard files written by `simulate --shard I/N --out FILE` into the result of
    /// one whole run.
    Merge(MergeArgs),
    /// Shell completion script on stdout (bash, zsh, fish, elvish, powershell).
    Completions {
        /// Shell to generate for, e.g. `udprange completions bash > /etc/bash_completion.d/udprange`.
        shell: clap_complete::Shell,
    },
    /// Man pages (roff): udprange's own on stdout, or a command's, or all of them into a
    /// directory, e.g. `udprange man plan | man -l -`.
    Man(ManArgs),
    /// The JSON Schema of a command's `--format json` report (plan, simulate, merge, blast,
    /// audit), generated from the report's types; the same files are in `schemas/`.
    Schema(SchemaArgs),
}

#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// The command whose report to describe: plan, simulate, merge, blast or audit.
    /// Example: udprange schema plan
    #[arg(value_name = "COMMAND", value_parser = ["plan", "simulate", "merge", "blast", "audit"])]
    pub command: String,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// The command whose page to print, udprange-COMMAND(1); udprange(1) when omitted.
    /// Example: udprange man plan > udprange-plan.1
    #[arg(value_name = "COMMAND", value_parser = CommandName, conflicts_with = "dir")]
    pub command: Option<String>,

    /// Write every page, udprange.1 and udprange-COMMAND.1 for each command, into DIR (made
    /// if missing) instead of printing one; none by default.
    /// Example: --dir /usr/local/share/man/man1
    #[arg(long, allow_hyphen_values = true, value_name = "DIR", value_hint = ValueHint::DirPath)]
    pub dir: Option<PathBuf>,
}

/// The server, the workload and the openings: shared by `plan` and `rules`.
#[derive(Debug, Args)]
pub struct SizingArgs {
    /// Server OS: windows, macos, freebsd or linux. Decides which sessions share a port.
    /// Example: --os macos
    #[arg(long, allow_hyphen_values = true, default_value = "windows", value_parser = Choice::all(parse_os))]
    pub os: ServerOs,

    /// First UDP port the server hands out. Example: --base-port 33001
    #[arg(long, allow_hyphen_values = true, value_name = "PORT", default_value = "33001", value_parser = parse_port_flag)]
    pub base_port: Port,

    /// Highest UDP port the server may hand out (server cap); none by default.
    /// Example: --max-port 33100
    #[arg(long, allow_hyphen_values = true, value_name = "PORT", value_parser = parse_port_flag)]
    pub max_port: Option<Port>,

    /// Transfers running at once (the vendor's example is 10). Example: --concurrent 25
    #[arg(
        long,
        allow_hyphen_values = true,
        value_name = "N",
        default_value = "10",
        conflicts_with_all = ["offered_load", "arrival_rate"]
    )]
    pub concurrent: u64,

    /// Sessions each transfer is split into (multi-session transfers).
    /// Example: --sessions-per-transfer 4
    #[arg(
        long,
        allow_hyphen_values = true,
        value_name = "K",
        default_value = "1"
    )]
    pub sessions_per_transfer: u64,

    /// User accounts the transfers run under (matters on macOS/FreeBSD); default: every
    /// transfer may be its own account (worst case). Example: --accounts 3
    #[arg(long, allow_hyphen_values = true, value_name = "N")]
    pub accounts: Option<u64>,

    /// UDP ports other services hold on the server, as ports and ranges, comma separated;
    /// none by default. Example: --occupied 33004,33007-33009
    #[arg(long, allow_hyphen_values = true, value_name = "PORTS", value_parser = parse_port_list)]
    pub occupied: Vec<Vec<Port>>,

    /// Linux server with udp_port_reuse = false: one port per session (default: reuse on,
    /// all sessions share one port). Example: --os linux --no-udp-port-reuse
    #[arg(long)]
    pub no_udp_port_reuse: bool,

    /// TCP control port (SSH) the client connects to (default by --os: 33001 for windows,
    /// the vendor's; 22, SSH's, for the others). Example: --ssh-port 33001
    #[arg(long, allow_hyphen_values = true, value_name = "PORT", value_parser = parse_port_flag)]
    pub ssh_port: Option<Port>,

    /// Also open the Vlink UDP port 55001 (multicast between servers). Off by default.
    /// Example: --vlink
    #[arg(long)]
    pub vlink: bool,

    /// Random load in Erlang (mean transfers in progress), instead of --concurrent; none by
    /// default (a fixed workload). Example: --offered-load 10
    #[arg(long, allow_hyphen_values = true, value_name = "ERLANG", value_parser = parse_load, conflicts_with = "arrival_rate")]
    pub offered_load: Option<f64>,

    /// Transfer arrival rate, with --mean-duration, instead of --offered-load; none by
    /// default. Example: --arrival-rate 120/h
    #[arg(long, allow_hyphen_values = true, value_name = "RATE", value_parser = parse_rate, requires = "mean_duration")]
    pub arrival_rate: Option<Rate>,

    /// Mean transfer duration, with --arrival-rate; none by default.
    /// Example: --mean-duration 4m
    #[arg(long, allow_hyphen_values = true, value_name = "DURATION", value_parser = parse_duration, requires = "arrival_rate")]
    pub mean_duration: Option<Duration>,

    /// Largest acceptable probability that a transfer is blocked (random load).
    /// Example: --target-blocking 0.1%
    #[arg(long, allow_hyphen_values = true, value_name = "P", default_value = "0.001", value_parser = parse_probability)]
    pub target_blocking: Probability,

    /// Size from the server's own transfer logs instead of --concurrent or a load: the
    /// transfer log (aspera-scp-transfer.log) or its syslog form, any number of files; the
    /// peak of ports the OS rule needed at once for the sessions they show. None by default.
    /// Example: --from-log /var/log/aspera-scp-transfer.log
    #[arg(long, value_name = "FILE", num_args = 1.., conflicts_with_all = ["concurrent", "offered_load", "arrival_rate", "mean_duration", "accounts", "sessions_per_transfer"])]
    pub from_log: Vec<PathBuf>,

    /// With --from-log: headroom on top of the log's peak, 0%-1000% (default 0%).
    /// Example: --growth 30%
    #[arg(long, allow_hyphen_values = true, value_name = "PCT", value_parser = parse_growth, requires = "from_log")]
    pub growth: Option<f64>,

    /// With --from-log: which end the transfer server is, server (local= is its UDP port)
    /// or client (peer= is); detected from the ports by default. Example: --log-side client
    #[arg(long, allow_hyphen_values = true, value_name = "SIDE", value_parser = Choice::all(parse_log_side), requires = "from_log")]
    pub log_side: Option<LogSide>,

    /// With --from-log: the year a syslog-form log starts in, 1970-9999 (default: from the
    /// file's modification time, counted back over the year wraps). Example: --log-year 2025
    #[arg(long, allow_hyphen_values = true, value_name = "YEAR", value_parser = clap::value_parser!(i32).range(1970..=9999), requires = "from_log")]
    pub log_year: Option<i32>,

    /// With --from-log: malformed or unmatched session lines are an error (exit 2) instead
    /// of counted and named. Off by default. Example: --strict
    #[arg(long, requires = "from_log")]
    pub strict: bool,

    /// A finite number of clients (Engset) instead of an unlimited population (Erlang-B,
    /// the default); random load only. Example: --sources 50
    #[arg(long, allow_hyphen_values = true, value_name = "M")]
    pub sources: Option<u64>,
}

impl SizingArgs {
    pub fn occupied(&self) -> BTreeSet<Port> {
        self.occupied.iter().flatten().copied().collect()
    }

    /// Random load in Erlang, if the random-load flags were given.
    pub fn offered_load(&self) -> Option<f64> {
        self.offered_load
            .or_else(|| Some(self.arrival_rate?.per_second() * self.mean_duration?.as_secs_f64()))
    }
}

/// Reports written to files beside the one on stdout (as hyperfine's `--export-json`): one
/// run gives both the readable report and the data.
#[derive(Debug, Args, Default)]
pub struct ExportArgs {
    /// Also write the JSON report to FILE, whatever --format prints; none by default.
    /// Example: --export-json report.json
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub export_json: Option<PathBuf>,

    /// Also write the CSV table to FILE, whatever --format prints; none by default.
    /// Example: --export-csv table.csv
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub export_csv: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub export: ExportArgs,

    #[command(flatten)]
    pub sizing: SizingArgs,

    /// Output format: text, json (one object) or csv (the table). Example: --format json
    #[arg(long, allow_hyphen_values = true, default_value = "text", value_parser = Choice::all(parse_format))]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct RulesArgs {
    #[command(flatten)]
    pub sizing: SizingArgs,

    /// Rule syntax: nftables, iptables (restore format), powershell (New-NetFirewallRule)
    /// or pf. Example: --syntax iptables
    #[arg(long, allow_hyphen_values = true, default_value = "nftables", value_parser = Choice::all(parse_syntax))]
    pub syntax: Syntax,

    /// Whose firewall: client (outbound to the server) or server (inbound from clients).
    /// Example: --side server
    #[arg(long, allow_hyphen_values = true, default_value = "client", value_parser = Choice::all(parse_side))]
    pub side: Side,

    /// Restrict the rules to this address or network: the server on the client side, the
    /// clients on the server side; `any` for no restriction. Any by default, but
    /// --default-drop needs it given: `any` there drops UDP outside the openings to and from
    /// every host, DNS, NTP and DHCP included. Example: --peer 198.51.100.7
    #[arg(long, allow_hyphen_values = true, value_name = "ADDR[/PREFIX]|any", value_parser = parse_peer)]
    pub peer: Option<PeerArg>,

    /// Also drop UDP outside the openings, to the peer; needs --peer (`--peer any` to drop
    /// it for every host). Off by default: the rules only allow, for merging into an
    /// existing policy. Example: --default-drop --peer 198.51.100.7
    #[arg(long)]
    pub default_drop: bool,
}

#[derive(Debug, Args)]
pub struct SimulateArgs {
    #[command(flatten)]
    pub export: ExportArgs,

    /// Scenario file (TOML); the embedded seed example when omitted.
    /// Example: udprange simulate scenarios/busy-hour-enterprise.toml
    #[arg(value_name = "SCENARIO")]
    pub scenario: Option<PathBuf>,

    /// Output format: text, json (one object) or csv (the blocking table). Example: --format json
    #[arg(long, allow_hyphen_values = true, default_value = "text", value_parser = Choice::all(parse_format))]
    pub format: Format,

    /// Also write an SVG plot: blocking by range size (log scale) and ports held over time;
    /// none by default. Example: --plot blocking.svg
    #[arg(long, allow_hyphen_values = true, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,

    /// Override the scenario's seed (default: the file's). Example: --seed 7
    #[arg(long, allow_hyphen_values = true, value_name = "N")]
    pub seed: Option<u64>,

    /// Override the number of replications, 1-100000 (default: the file's).
    /// Example: --replications 40
    #[arg(long, allow_hyphen_values = true, value_name = "N", value_parser = parse_replications)]
    pub replications: Option<u32>,

    /// Override the length of each replication, in transfers, 1-10000000000 (default: the
    /// file's). Example: --sessions 1000000
    #[arg(long, allow_hyphen_values = true, value_name = "N", value_parser = parse_sessions)]
    pub sessions: Option<u64>,

    /// Override the clients' allowed range (default: the file's [client].allowed).
    /// Example: --allowed 33001-33020
    #[arg(long, allow_hyphen_values = true, value_name = "RANGE", value_parser = parse_range)]
    pub allowed: Option<PortRange>,

    /// Override the target blocking for the recommended range (default: the file's
    /// [plan].target_blocking, else 0.001). Example: --target-blocking 0.1%
    #[arg(long, allow_hyphen_values = true, value_name = "P", value_parser = parse_probability)]
    pub target_blocking: Option<Probability>,

    #[command(flatten)]
    pub threads: ThreadsArg,

    /// Run only slice I of N of the replications (0-based; the whole run by default) and
    /// write it with --out; combine the slices with `udprange merge`.
    /// Example: --shard 0/4 --out part-0.json
    #[arg(long, allow_hyphen_values = true, value_name = "I/N", requires = "out", value_parser = parse_shard)]
    pub shard: Option<Shard>,

    /// Write the raw per-replication results (a shard file for `udprange merge`); none by
    /// default. Example: --out part-0.json
    #[arg(long, allow_hyphen_values = true, value_name = "FILE.json")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ThreadsArg {
    /// Worker threads; all cores by default. Results do not depend on it.
    /// Example: --threads 1
    #[arg(long, allow_hyphen_values = true, value_name = "N", value_parser = parse_threads)]
    pub threads: Option<usize>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Scenario files or directories of them (*.toml). Default: scenarios.
    /// Example: udprange check scenarios/ my-site.toml
    #[arg(value_name = "PATH", default_value = "scenarios")]
    pub paths: Vec<PathBuf>,

    #[command(flatten)]
    pub threads: ThreadsArg,
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    #[command(flatten)]
    pub export: ExportArgs,

    /// Shard files from `simulate --shard I/N --out FILE`, all of one scenario.
    /// Example: udprange merge part-*.json
    #[arg(value_name = "PART", required = true)]
    pub parts: Vec<PathBuf>,

    /// Output format: text, json (one object) or csv (the blocking table). Example: --format json
    #[arg(long, allow_hyphen_values = true, default_value = "text", value_parser = Choice::all(parse_format))]
    pub format: Format,

    /// Also write an SVG plot, as `simulate --plot`; none by default. Example: --plot blocking.svg
    #[arg(long, allow_hyphen_values = true, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BlastArgs {
    #[command(flatten)]
    pub export: ExportArgs,

    /// Scenario file (TOML) whose [workload] is replayed with real packets (replication 0 of
    /// `simulate`'s random stream); the embedded seed example when omitted.
    /// Example: udprange blast scenarios/macos-accounts.toml
    #[arg(value_name = "SCENARIO")]
    pub scenario: Option<PathBuf>,

    /// Model seconds per wall second of a replay: 60 runs an hour of the workload in a
    /// minute. At most the handshake timeout over the run's resolution (25 ms on loopback).
    /// (default: the fastest that fits a 20 s run within that bound; 1 for a burst).
    /// Example: --time-scale 60
    #[arg(long, allow_hyphen_values = true, value_name = "F", value_parser = parse_time_scale)]
    pub time_scale: Option<f64>,

    /// Replay at most this many sessions (whole transfers), 1-100000 (default: the
    /// scenario's, at most 1000, and what fits the 20 s budget). Example: --sessions 200
    #[arg(long, allow_hyphen_values = true, value_name = "N", value_parser = parse_replay_sessions)]
    pub sessions: Option<u64>,

    /// Run only the clients, against `udprange serve` on HOST[:PORT] (default port 22): the
    /// path between the two hosts is under test. The server describes its OS rule and ports;
    /// none by default (the emulator runs here). Example: --server 203.0.113.7:33001
    #[arg(long, allow_hyphen_values = true, value_name = "HOST[:PORT]")]
    pub server: Option<String>,

    /// With --server: the key `udprange serve` printed or was given (16 hex digits, or any
    /// text both sides share); none by default. Example: --key s3cret
    #[arg(long, allow_hyphen_values = true, value_name = "KEY", value_parser = parse_key, requires = "server")]
    pub key: Option<u64>,

    /// Interval reports every D while the run goes (like iperf3 -i): a text line each, and
    /// `intervals` in JSON; none by default. Example: --interval 1s
    #[arg(long, allow_hyphen_values = true, value_name = "D", value_parser = parse_interval)]
    pub interval: Option<Duration>,

    /// The client firewall's outbound UDP range (default: the file's [client].allowed).
    /// Example: --allowed 33001-33010
    #[arg(long, allow_hyphen_values = true, value_name = "RANGE", value_parser = parse_range)]
    pub allowed: Option<PortRange>,

    /// Instead of the workload, a burst of N identical transfers, 1-4096 (together unless
    /// --start says; default: the file's [traffic].clients). Example: --clients 12
    #[arg(long, allow_hyphen_values = true, value_name = "N", value_parser = parse_clients)]
    pub clients: Option<u32>,

    /// A burst's clients belong to this many accounts, round-robin; asks for a burst
    /// (default: the file's accounts on macOS/FreeBSD, else one per client). Example: --accounts 3
    #[arg(long, allow_hyphen_values = true, value_name = "N", value_parser = parse_clients)]
    pub accounts: Option<u32>,

    /// Target rate per session, 0 for unpaced (default: the file's, else 10Mbps); with a
    /// delay-based --policy, the ceiling. Example: --rate 50Mbps
    #[arg(long, allow_hyphen_values = true, value_name = "RATE", value_parser = parse_bitrate)]
    pub rate: Option<Bitrate>,

    /// How a session chooses its rate: fixed (new data at the target rate whatever
    /// happens), fair (delay-based: up while the path's queue is below a 20 ms target, down
    /// in proportion above it), high (a 40 ms target, faster: more than a fair share) or low
    /// (5 ms, slower: yields to other traffic); default: the file's, else fixed.
    /// Example: --policy fair
    #[arg(long, allow_hyphen_values = true, value_parser = Choice::all(parse_policy))]
    pub policy: Option<Policy>,

    /// Deliver each transfer completely: BYTES of payload per session (e.g. 6MB), or
    /// `holding`: what each session's holding time carries at --rate (a replayed load).
    /// Missing datagrams are asked for again until the receiver holds them all. With BYTES,
    /// --duration is each transfer's deadline (default: four times the time at --rate, plus
    /// 5 s); default: the file's, else none (sessions send for their time).
    /// Example: --size 6MB
    #[arg(long, allow_hyphen_values = true, value_name = "BYTES|holding", value_parser = parse_size)]
    pub size: Option<Size>,

    /// The least rate a delay-based --policy slows to (default: the file's, else 1 % of
    /// --rate).
    /// Example: --min-rate 1Mbps
    #[arg(long, allow_hyphen_values = true, value_name = "RATE", value_parser = parse_bitrate)]
    pub min_rate: Option<Bitrate>,

    /// How long each client of a burst sends, at most 600s; asks for a burst instead of the
    /// workload (default: the file's [traffic].duration, else 5s). Example: --duration 10s
    #[arg(long, allow_hyphen_values = true, value_name = "DURATION", value_parser = parse_sending_time)]
    pub duration: Option<Duration>,

    /// Instead of the workload, a burst of --clients transfers started together or
    /// staggered over the first half of --duration (default: the file's [traffic].start;
    /// without one blast replays [workload]). Example: --start staggered
    #[arg(long, allow_hyphen_values = true, value_name = "WHEN", value_parser = Choice::all(parse_start))]
    pub start: Option<Start>,

    /// First UDP port the server hands out (default: the file's, else 33001).
    /// Example: --base-port 40001
    #[arg(long, allow_hyphen_values = true, value_name = "PORT", value_parser = parse_port_flag)]
    pub base_port: Option<Port>,

    /// TCP control ("SSH") port of the emulator (default: the file's; else with --backend
    /// netns the OS's, 33001 for windows and 22 for the others, and on loopback a free one
    /// on 127.0.0.1; 0 picks a free one). Example: --ssh-port 2222
    #[arg(long, visible_alias = "ssh-port", allow_hyphen_values = true, value_name = "PORT", value_parser = parse_control_port)]
    pub control_port: Option<Port>,

    /// Datagram size: the IP packet, IP and UDP headers included, as the vendor's datagram
    /// size ("MTU") counts it, 64B-65535B (default: the file's, else 1492B, which fits a
    /// 1500-byte MTU). Example: --datagram 1500B
    #[arg(long, allow_hyphen_values = true, value_name = "SIZE", value_parser = parse_datagram)]
    pub datagram: Option<u16>,

    /// How long a session waits for its first datagram's acknowledgement before failing
    /// with error 15 (default: the file's handshake_timeout, else 20s). Example: --handshake-timeout 3s
    #[arg(long, allow_hyphen_values = true, value_name = "DURATION", value_parser = parse_handshake_timeout)]
    pub handshake_timeout: Option<Duration>,

    /// Where the packets flow: loopback (127.0.0.1, the client firewall modelled in process)
    /// or netns (three network namespaces, client — router — server, with the real nftables
    /// rulesets of `udprange rules --default-drop` on client and server, or --ruleset; the
    /// WAN flags shape the router; needs root, ip, nft, tc, iptables, ethtool). Default
    /// loopback. Example: --backend netns
    #[arg(long, allow_hyphen_values = true, default_value = "loopback", value_parser = Choice::all(parse_backend))]
    pub backend: BackendName,

    #[command(flatten)]
    pub wan: WanArgs,

    /// Also draw each session's pacing rate over time as an SVG; none by default.
    /// Example: --plot rates.svg
    #[arg(long, allow_hyphen_values = true, value_name = "FILE")]
    pub plot: Option<PathBuf>,

    /// Also write the traffic as a pcap file (Ethernet/IPv4/UDP); none by default.
    /// Example: --pcap blast.pcap
    #[arg(long, allow_hyphen_values = true, value_name = "FILE")]
    pub pcap: Option<PathBuf>,

    /// Most frames the pcap file keeps, at most 1000000, and at most 1 GiB of frames at the
    /// datagram size (default 10000). Example: --pcap-limit 100000
    #[arg(
        long,
        allow_hyphen_values = true,
        value_name = "N",
        default_value = "10000",
        value_parser = parse_pcap_limit
    )]
    pub pcap_limit: u64,

    /// Output format: text, json (one object) or csv (the session table). Example: --format json
    #[arg(long, allow_hyphen_values = true, default_value = "text", value_parser = Choice::all(parse_format))]
    pub format: Format,
}

/// The netns path: the router's impairments and the firewall under test (`blast --backend
/// netns`, `path`).
#[derive(Debug, Args)]
pub struct WanArgs {
    /// netns: one-way delay of the WAN path, each direction, for every protocol (the
    /// router's NFQUEUE delay line); none by default. Example: --delay 50ms
    #[arg(long, allow_hyphen_values = true, value_name = "DURATION", value_parser = parse_wan_duration)]
    pub delay: Option<Duration>,

    /// netns: jitter of that delay (uniform, ±); none by default. Example: --jitter 5ms
    #[arg(long, allow_hyphen_values = true, value_name = "DURATION", value_parser = parse_wan_duration)]
    pub jitter: Option<Duration>,

    /// netns: packets lost on the path (TCP and UDP: the control connection too), each
    /// direction; none by default.
    /// Example: --loss 0.5%
    #[arg(long, allow_hyphen_values = true, value_name = "P", value_parser = parse_probability)]
    pub loss: Option<Probability>,

    /// netns: bandwidth of the path, each direction; unlimited by default.
    /// Example: --bandwidth 200Mbit
    #[arg(long, allow_hyphen_values = true, value_name = "RATE", value_parser = parse_bitrate)]
    pub bandwidth: Option<Bitrate>,

    /// netns: your own firewall ruleset on the path instead of udprange's rules, an
    /// nftables file (`nft -f`, text or JSON) or iptables-save output, told apart by content
    /// and checked (`nft -c`, `iptables-restore --test`) before it loads. With blast, the
    /// range under test is whatever it passes and the verdict names the ports it dropped
    /// (kernel counters). The hosts: client 198.18.0.2, server 198.19.0.1, router between.
    /// None by default (udprange's own rules on client and server). Example: --ruleset fw.nft
    #[arg(long, allow_hyphen_values = true, value_name = "FILE")]
    pub ruleset: Option<PathBuf>,

    /// Where --ruleset goes: router (forward hook, default), client (output) or server
    /// (input). Example: --ruleset-at client
    #[arg(long, allow_hyphen_values = true, value_name = "HOST", value_parser = Choice::all(parse_host))]
    pub ruleset_at: Option<Host>,
}

impl WanArgs {
    /// Whether any flag shapes the path.
    pub fn shapes(&self) -> Option<&'static str> {
        [
            ("--delay", self.delay.is_some()),
            ("--jitter", self.jitter.is_some()),
            ("--loss", self.loss.is_some()),
            ("--bandwidth", self.bandwidth.is_some()),
            ("--ruleset", self.ruleset.is_some()),
            ("--ruleset-at", self.ruleset_at.is_some()),
        ]
        .into_iter()
        .find_map(|(flag, given)| given.then_some(flag))
    }

    /// The router's impairments.
    pub fn path(&self) -> WanPath {
        // Flag parsers keep durations within crate::limits; saturate rather than panic.
        let seconds = |d: Duration| {
            std::time::Duration::try_from_secs_f64(d.as_secs_f64())
                .unwrap_or(std::time::Duration::MAX)
        };
        WanPath {
            delay: self.delay.map(seconds),
            jitter: self.jitter.map(seconds),
            loss: self.loss.map(|p| p.value()),
            bandwidth_bps: self.bandwidth.map(|b| b.bits_per_second() as u64),
        }
    }

    /// The ruleset file, read and recognised, and where it goes.
    pub fn ruleset(&self) -> Result<Option<(UserRuleset, Host)>, super::UsageError> {
        match (&self.ruleset, self.ruleset_at) {
            (None, Some(at)) => Err(super::UsageError(format!(
                "--ruleset-at {}: says where --ruleset goes; give --ruleset FILE too",
                at.name()
            ))),
            (None, None) => Ok(None),
            (Some(path), at) => UserRuleset::read(path)
                .map(|r| Some((r, at.unwrap_or(Host::Router))))
                .map_err(|e| super::UsageError(format!("--ruleset {e}"))),
        }
    }
}

#[derive(Debug, Args)]
pub struct PathArgs {
    #[command(flatten)]
    pub wan: WanArgs,

    /// A shell command run in the server namespace first, stopped at the end; none by
    /// default. Example: --server-exec 'iperf3 -s -1'
    #[arg(long, allow_hyphen_values = true, value_name = "CMD")]
    pub server_exec: Option<String>,

    /// Longest the command may run, at most 600s (default 60s). Example: --duration 30s
    #[arg(long, allow_hyphen_values = true, value_name = "DURATION", default_value = "60s", value_parser = parse_path_duration)]
    pub duration: Duration,

    /// The command to run in the client namespace, after `--`.
    /// Example: -- iperf3 -c 198.19.0.1 -t 5
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

fn parse_path_duration(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d.as_secs_f64() <= 0.0 || d.as_secs_f64() > limits::MAX_DURATION.as_secs_f64() {
        return Err(format!(
            "'{text}' is not between 0 and {} s",
            limits::MAX_DURATION.as_secs()
        ));
    }
    Ok(d)
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(flatten)]
    pub export: ExportArgs,

    /// The ruleset: nftables (`nft -f` text, needs root and nft to read; or `nft -j list
    /// ruleset` JSON) or iptables-save output, told apart by content.
    /// Example: udprange audit /etc/nftables.conf
    #[arg(value_name = "RULESET")]
    pub ruleset: PathBuf,

    /// Where the ruleset sits: client (output and postrouting hooks), router (prerouting,
    /// forward, postrouting; the default) or server (prerouting, input).
    /// Example: --at client
    #[arg(long, allow_hyphen_values = true, value_name = "HOST", default_value = "router", value_parser = Choice::all(parse_host))]
    pub at: Host,

    /// Scenario file: the UDP range it needs is what `simulate` recommends for it, instead of
    /// the plan flags; none by default. Example: --scenario scenarios/office.toml
    #[arg(long, allow_hyphen_values = true, value_name = "FILE")]
    pub scenario: Option<PathBuf>,

    /// The client's address in the packets evaluated. Default 198.18.0.2 (the test client).
    /// Example: --client-addr 10.1.2.3
    #[arg(
        long,
        allow_hyphen_values = true,
        value_name = "ADDR",
        default_value = "198.18.0.2"
    )]
    pub client_addr: std::net::Ipv4Addr,

    /// The server's address. Default 198.19.0.1 (the test server).
    /// Example: --server-addr 203.0.113.10
    #[arg(
        long,
        allow_hyphen_values = true,
        value_name = "ADDR",
        default_value = "198.19.0.1"
    )]
    pub server_addr: std::net::Ipv4Addr,

    /// The interface packets come in on, for rules that match it; none by default (such
    /// rules are undecided). Example: --iif eth0
    #[arg(long, allow_hyphen_values = true, value_name = "NAME")]
    pub iif: Option<String>,

    /// The interface packets leave by; none by default. Example: --oif eth1
    #[arg(long, allow_hyphen_values = true, value_name = "NAME")]
    pub oif: Option<String>,

    /// Also load the ruleset into test namespaces, send a probe to every UDP port and the
    /// control port, and report where the kernel and the static answer disagree (needs
    /// root, ip, nft, iptables, ethtool). Off by default. Example: --confirm
    #[arg(long)]
    pub confirm: bool,

    #[command(flatten)]
    pub sizing: SizingArgs,

    /// Output format: text or json (one object). Example: --format json
    #[arg(long, allow_hyphen_values = true, default_value = "text", value_parser = Choice::only(&[Format::Text, Format::Json], parse_format))]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Scenario file (TOML) whose [server] section describes the server; flags override it.
    /// None by default (a windows server on 33001). Example: udprange serve scenarios/server-cap.toml
    #[arg(value_name = "SCENARIO")]
    pub scenario: Option<PathBuf>,

    /// Server OS: windows, macos, freebsd or linux (default: the file's, else windows).
    /// Example: --os macos
    #[arg(long, allow_hyphen_values = true, value_parser = Choice::all(parse_os))]
    pub os: Option<ServerOs>,

    /// First UDP port handed out (default: the file's, else 33001). Example: --base-port 40001
    #[arg(long, allow_hyphen_values = true, value_name = "PORT", value_parser = parse_port_flag)]
    pub base_port: Option<Port>,

    /// Highest UDP port handed out (default: the file's, else none). Example: --max-port 33100
    #[arg(long, allow_hyphen_values = true, value_name = "PORT", value_parser = parse_port_flag)]
    pub max_port: Option<Port>,

    /// UDP ports other services hold, never handed out (default: the file's, else none).
    /// Example: --occupied 33004,33007-33009
    #[arg(long, allow_hyphen_values = true, value_name = "PORTS", value_parser = parse_port_list)]
    pub occupied: Vec<Vec<Port>>,

    /// Linux with udp_port_reuse = false: one port per session (default: the file's, else
    /// reuse on). Example: --os linux --no-udp-port-reuse
    #[arg(long)]
    pub no_udp_port_reuse: bool,

    /// TCP control address and port to listen on, IPv4 (default: 127.0.0.1 and the OS's
    /// control port: 33001 for windows, 22 otherwise). Example: --listen 0.0.0.0:33001
    #[arg(long, allow_hyphen_values = true, value_name = "ADDR:PORT", value_parser = parse_listen)]
    pub listen: Option<std::net::SocketAddrV4>,

    /// TCP control port on 127.0.0.1 (default by OS: 33001 for windows, 22 otherwise); with
    /// another address, give --listen ADDR:PORT instead. Example: --ssh-port 2222
    #[arg(long, allow_hyphen_values = true, value_name = "PORT", value_parser = parse_port_flag, conflicts_with = "listen")]
    pub ssh_port: Option<Port>,

    /// The key clients must present (16 hex digits, or any text both sides share); default:
    /// a random one, printed at start. Example: --key s3cret
    #[arg(long, allow_hyphen_values = true, value_name = "KEY", value_parser = parse_key)]
    pub key: Option<u64>,

    /// Most sessions at once, 1-4096 (default 4096). Example: --max-sessions 100
    #[arg(long, allow_hyphen_values = true, value_name = "N", default_value = "4096", value_parser = parse_clients)]
    pub max_sessions: u32,

    /// End after this long without a session starting or ending, at most 600s (default
    /// 600s). Example: --idle-timeout 60s
    #[arg(long, allow_hyphen_values = true, value_name = "D", default_value = "600s", value_parser = parse_sending_time)]
    pub idle_timeout: Duration,

    /// End after this long whatever happens, at most 600s; none by default (Ctrl-C or the
    /// idle timeout end it). Example: --duration 5m
    #[arg(long, allow_hyphen_values = true, value_name = "D", value_parser = parse_sending_time)]
    pub duration: Option<Duration>,

    /// Output format: text (a line per session) or json (one JSON object per line); default
    /// text. Example: --format json
    #[arg(long, allow_hyphen_values = true, default_value = "text", value_parser = Choice::only(&[Format::Text, Format::Json], parse_format))]
    pub format: Format,
}

impl ServeArgs {
    pub fn occupied(&self) -> BTreeSet<Port> {
        self.occupied.iter().flatten().copied().collect()
    }
}

/// A shared key: exactly 16 hex digits are the key itself; any other text is hashed
/// (FNV-1a, 64 bits) so that both sides can type the same words.
pub fn parse_key(text: &str) -> Result<u64, String> {
    if text.is_empty() || text.len() > 256 {
        return Err("a key is 1 to 256 characters".to_string());
    }
    if text.len() == 16
        && let Ok(key) = u64::from_str_radix(text, 16)
    {
        return Ok(key);
    }
    Ok(text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    }))
}

fn parse_listen(text: &str) -> Result<std::net::SocketAddrV4, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("'{text}' is not an IPv4 address and port (example: 0.0.0.0:33001)"))
}

/// `blast --backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendName {
    Loopback,
    Netns,
}

/// `--size`: payload bytes per transfer, or `holding`.
fn parse_size(text: &str) -> Result<Size, String> {
    if text.trim() == "holding" {
        return Ok(Size::Holding);
    }
    let size: ByteSize = text.parse().map_err(|e: crate::units::UnitError| {
        format!("{e}, or `holding` (each session's holding time at --rate)")
    })?;
    match size.bytes() {
        0 => Err(format!("'{text}' is no data at all")),
        b if b > limits::MAX_TRANSFER_BYTES => Err(format!(
            "'{text}' is more than a transfer may carry ({})",
            limits::size_text(limits::MAX_TRANSFER_BYTES)
        )),
        b => Ok(Size::Bytes(b)),
    }
}

/// `--policy`.
fn parse_policy(text: &str) -> Result<Policy, String> {
    Policy::parse(text).ok_or_else(|| format!("unknown policy '{text}' (fixed, fair, high, low)"))
}

/// `--ruleset-at`, `audit --at`: a host on the test path.
pub fn parse_host(text: &str) -> Result<Host, String> {
    match text.trim() {
        "client" => Ok(Host::Client),
        "router" => Ok(Host::Router),
        "server" => Ok(Host::Server),
        _ => Err(format!("unknown host '{text}' (client, router, server)")),
    }
}

fn parse_backend(text: &str) -> Result<BackendName, String> {
    match text.trim() {
        "loopback" => Ok(BackendName::Loopback),
        "netns" => Ok(BackendName::Netns),
        _ => Err(format!("unknown backend '{text}' (loopback, netns)")),
    }
}

fn parse_wan_duration(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    let max = limits::MAX_WAN_DELAY;
    if d.as_secs_f64() > max.as_secs_f64() {
        return Err(format!("'{text}' is above {}s", max.as_secs()));
    }
    Ok(d)
}

/// A whole number within `range` (a limit of [`crate::limits`]).
fn count<T>(text: &str, range: std::ops::RangeInclusive<T>) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display,
{
    match text.trim().parse::<T>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(format!(
            "'{text}' is not a count from {} to {}",
            range.start(),
            range.end()
        )),
    }
}

fn parse_clients(text: &str) -> Result<u32, String> {
    count(text, 1..=limits::MAX_CLIENTS)
}

fn parse_bitrate(text: &str) -> Result<Bitrate, String> {
    let rate: Bitrate = text
        .parse()
        .map_err(|e: crate::units::UnitError| e.to_string())?;
    if rate.bits_per_second() > limits::MAX_BITRATE_BPS {
        return Err(format!(
            "'{text}' is above {}Gbps",
            limits::MAX_BITRATE_BPS / 1e9
        ));
    }
    Ok(rate)
}

/// A wall-clock duration above 0 and at most `max` (`--duration`, `--handshake-timeout`).
fn parse_blast_duration(text: &str, max: std::time::Duration) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if !(d.as_secs_f64() > 0.0 && d.as_secs_f64() <= max.as_secs_f64()) {
        return Err(format!(
            "'{text}' must be above 0 and at most {}s",
            max.as_secs()
        ));
    }
    Ok(d)
}

fn parse_sending_time(text: &str) -> Result<Duration, String> {
    parse_blast_duration(text, limits::MAX_DURATION)
}

fn parse_handshake_timeout(text: &str) -> Result<Duration, String> {
    parse_blast_duration(text, limits::MAX_HANDSHAKE_TIMEOUT)
}

fn parse_pcap_limit(text: &str) -> Result<u64, String> {
    count(text, 0..=limits::MAX_PCAP_FRAMES)
}

fn parse_replications(text: &str) -> Result<u32, String> {
    count(text, 1..=limits::MAX_REPLICATIONS)
}

fn parse_sessions(text: &str) -> Result<u64, String> {
    count(text, 1..=limits::MAX_SESSIONS)
}

fn parse_time_scale(text: &str) -> Result<f64, String> {
    let scale: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("'{text}' is not a number (example: 60)"))?;
    if !(scale.is_finite() && scale > 0.0 && scale <= limits::MAX_TIME_SCALE) {
        return Err(format!(
            "'{text}' must be above 0 and at most {}",
            limits::MAX_TIME_SCALE
        ));
    }
    Ok(scale)
}

fn parse_replay_sessions(text: &str) -> Result<u64, String> {
    count(text, 1..=limits::MAX_REPLAY_SESSIONS)
}

fn parse_interval(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if !(d.as_secs_f64() >= 0.1 && d.as_secs_f64() <= limits::MAX_DURATION.as_secs_f64()) {
        return Err(format!(
            "'{text}' must be 100ms to {}s",
            limits::MAX_DURATION.as_secs()
        ));
    }
    Ok(d)
}

fn parse_start(text: &str) -> Result<Start, String> {
    text.parse()
}

fn parse_control_port(text: &str) -> Result<Port, String> {
    match text.trim() {
        "0" => Ok(0),
        other => parse_port_flag(other),
    }
}

fn parse_datagram(text: &str) -> Result<u16, String> {
    let size: ByteSize = text
        .parse()
        .map_err(|e: crate::units::UnitError| e.to_string())?;
    let (min, max) = (limits::MIN_DATAGRAM, limits::MAX_DATAGRAM);
    match u16::try_from(size.bytes()) {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!(
            "'{text}' must be {min}B to {max}B (the IP packet, headers included)"
        )),
    }
}

fn parse_range(text: &str) -> Result<PortRange, String> {
    text.parse()
        .map_err(|e: crate::model::RangeError| e.to_string())
}

fn parse_shard(text: &str) -> Result<Shard, String> {
    text.parse()
        .map_err(|e: crate::sim::BadShard| e.to_string())
}

fn parse_threads(text: &str) -> Result<usize, String> {
    count(text, 1..=limits::MAX_THREADS)
}

fn parse_os(text: &str) -> Result<ServerOs, String> {
    text.parse()
        .map_err(|e: crate::model::UnknownOs| e.to_string())
}

fn parse_port_flag(text: &str) -> Result<Port, String> {
    parse_port(text).map_err(|e| e.to_string())
}

fn parse_port_list(text: &str) -> Result<Vec<Port>, String> {
    let mut ports = Vec::new();
    for item in text.split(',') {
        let range: PortRange = item.parse().map_err(|e| format!("'{item}': {e}"))?;
        ports.extend(range.ports());
    }
    Ok(ports)
}

fn parse_load(text: &str) -> Result<f64, String> {
    parse_non_negative(text).map_err(|e| e.to_string())
}

fn parse_rate(text: &str) -> Result<Rate, String> {
    text.parse()
        .map_err(|e: crate::units::UnitError| e.to_string())
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    text.parse()
        .map_err(|e: crate::units::UnitError| e.to_string())
}

fn parse_probability(text: &str) -> Result<Probability, String> {
    text.parse()
        .map_err(|e: crate::units::UnitError| e.to_string())
}

fn parse_format(text: &str) -> Result<Format, String> {
    text.parse()
}

fn parse_syntax(text: &str) -> Result<Syntax, String> {
    text.parse()
}

fn parse_log_side(text: &str) -> Result<LogSide, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "server" => Ok(LogSide::Server),
        "client" => Ok(LogSide::Client),
        _ => Err(format!("unknown log side '{text}' (server, client)")),
    }
}

/// `--growth 30%`: a percentage, 0% to 1000%.
fn parse_growth(text: &str) -> Result<f64, String> {
    let bad = || format!("'{text}' is not a growth (examples: 30%, 0%, 150%)");
    let number = text.trim().strip_suffix('%').ok_or_else(bad)?;
    let value: f64 = number.trim().parse().map_err(|_| bad())?;
    if !(0.0..=1000.0).contains(&value) {
        return Err(format!("'{text}' must be 0% to 1000%"));
    }
    Ok(value / 100.0)
}

fn parse_side(text: &str) -> Result<Side, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "client" => Ok(Side::Client),
        "server" => Ok(Side::Server),
        _ => Err(format!("unknown side '{text}' (client, server)")),
    }
}

/// `rules --peer`: one address or network, or `any`, said on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerArg {
    Any,
    Only(Peer),
}

impl PeerArg {
    /// The restriction, `None` for any peer.
    pub fn peer(self) -> Option<Peer> {
        match self {
            Self::Any => None,
            Self::Only(peer) => Some(peer),
        }
    }
}

fn parse_peer(text: &str) -> Result<PeerArg, String> {
    if text.trim().eq_ignore_ascii_case("any") {
        return Ok(PeerArg::Any);
    }
    text.parse()
        .map(PeerArg::Only)
        .map_err(|e: crate::firewall::BadPeer| e.to_string())
}
