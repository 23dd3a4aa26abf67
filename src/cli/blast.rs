//! `blast`: a scenario (or the seed example) with flag overrides, run on loopback.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::args::BackendName;
use super::args::BlastArgs;
use super::output::{self, OutputFile};
use super::{EXIT_FAILED, EXIT_INCONCLUSIVE, EXIT_INTERRUPTED, EXIT_OK, Outcome, UsageError};
use crate::blast::{self, Backend, BlastConfig, Board, Status};
use crate::limits;
use crate::report::Export;
use crate::scenario::Scenario;

/// Extra time beyond sending and the handshake timeout before the run is cut off.
const DRAIN: Duration = Duration::from_secs(30);

fn config(args: &BlastArgs) -> Result<BlastConfig, UsageError> {
    let scenario = match &args.scenario {
        Some(path) => Scenario::load(path).map_err(|e| UsageError(e.to_string()))?,
        None => Scenario::seed_example(),
    };
    let mut config = BlastConfig::from_scenario(&scenario);
    let remote = match &args.server {
        Some(server) => {
            remote_conflicts(args)?;
            Some(describe_remote(server, args)?)
        }
        None => None,
    };
    if let Some((control, key, described)) = remote {
        config.server = described;
        config.backend = Backend::Remote { control, key };
        if let Some(replay) = config.replay.as_mut() {
            replay.server = config.server.clone();
        }
        // A scenario's client range for another server's ports says nothing here.
        if config
            .allowed
            .is_some_and(|r| config.server.unreachable(r).is_some())
        {
            config.allowed = None;
        }
    }
    // Flag parsers keep durations within crate::limits; saturate rather than panic anyway.
    let seconds = |d: crate::units::Duration| {
        Duration::try_from_secs_f64(d.as_secs_f64()).unwrap_or(Duration::MAX)
    };
    if let Some(range) = args.allowed {
        config.allowed = Some(range);
    }
    if let Some(clients) = args.clients {
        if config.accounts == config.clients {
            config.accounts = clients;
        }
        config.clients = clients;
        config.replay = None;
    }
    if let Some(accounts) = args.accounts {
        config.accounts = accounts;
    }
    if let Some(rate) = args.rate {
        config.rate_bps = rate.bits_per_second() as u64;
    }
    if let Some(policy) = args.policy {
        config.policy = policy;
    }
    if let Some(size) = args.size.or(config.size) {
        if size == crate::blast::Size::Holding && config.rate_bps == 0 {
            return Err(UsageError::flag(
                "--size",
                "holding",
                "is what a holding time carries at --rate: give a --rate (unpaced has none)",
            ));
        }
        config.size = Some(size);
        if let (crate::blast::Size::Bytes(bytes), None) = (size, args.duration) {
            config.duration = crate::blast::Size::deadline(bytes, config.rate_bps);
        }
    }
    if config.policy != crate::blast::rate::Policy::Fixed && config.rate_bps == 0 {
        return Err(UsageError::flag(
            "--policy",
            config.policy.name(),
            "adapts the rate below a ceiling: give --rate (unpaced has none)",
        ));
    }
    if let Some(min) = args.min_rate {
        let min = min.bits_per_second() as u64;
        if min > config.rate_bps {
            return Err(UsageError::flag(
                "--min-rate",
                &args.min_rate.map_or(String::new(), |m| m.to_string()),
                "is above --rate, the ceiling",
            ));
        }
        config.min_rate_bps = min;
    }
    if let Some(duration) = args.duration {
        config.duration = seconds(duration);
    }
    if let Some(start) = args.start {
        config.start = start;
        config.replay = None;
    }
    // Any flag that shapes a burst asks for one instead of the workload.
    if args.duration.is_some() || args.accounts.is_some() {
        config.replay = None;
    }
    if config.replay.is_none() && args.sessions.is_some() {
        return Err(UsageError::flag(
            "--sessions",
            "",
            "caps a replay of the scenario's [workload]; a burst (--clients, --start, \
             --duration or --accounts) has --clients instead",
        ));
    }
    config.time_scale = args.time_scale;
    config.sessions = args.sessions;
    config.interval = args.interval.map(seconds);
    if let Some(base) = args.base_port {
        if base > config.server.max_port {
            return Err(UsageError::flag(
                "--base-port",
                &base.to_string(),
                format!("is above the server's max_port {}", config.server.max_port),
            ));
        }
        config.server.base_port = base;
    }
    // As `[client].allowed` in a file: a range no session could pass is bad input.
    if let Some(range) = args.allowed {
        if let Some(why) = config.server.unreachable(range) {
            return Err(UsageError::flag("--allowed", &range.to_string(), why));
        }
    }
    if let Some(port) = args.control_port {
        config.control_port = port;
    }
    if let Some(datagram) = args.datagram {
        config.datagram = datagram;
    }
    if let Some(timeout) = args.handshake_timeout {
        config.handshake_timeout = seconds(timeout);
    }
    if args.pcap.is_some() {
        config.pcap_limit = args.pcap_limit.max(1);
        let frame = u64::from(config.datagram) + limits::CAPTURE_FRAME_OVERHEAD;
        if config.pcap_limit.saturating_mul(frame) > limits::MAX_CAPTURE_BYTES {
            return Err(UsageError::flag(
                "--pcap-limit",
                &args.pcap_limit.to_string(),
                format!(
                    "{} frames of {frame} bytes ({}B datagrams) exceed the {} a capture may hold; \
                     lower --pcap-limit or --datagram",
                    config.pcap_limit,
                    config.datagram,
                    limits::size_text(limits::MAX_CAPTURE_BYTES)
                ),
            ));
        }
    }
    if matches!(config.backend, Backend::Remote { .. }) {
        return Ok(config);
    }
    if args.backend == BackendName::Loopback
        && let Some(flag) = args.wan.shapes()
    {
        return Err(UsageError::flag(
            flag,
            "",
            "shapes the path of --backend netns; loopback has none (add --backend netns)",
        ));
    }
    if let Some((ruleset, at)) = args.wan.ruleset()? {
        if args.allowed.is_some() {
            return Err(UsageError::flag(
                "--allowed",
                "",
                "with --ruleset, your ruleset decides what passes; drop --allowed",
            ));
        }
        config.ruleset = Some(blast::RulesetAt { ruleset, at });
        // The range under test is whatever the ruleset passes: the model passes everything.
        config.allowed = None;
    }
    config.backend = match args.backend {
        BackendName::Netns => Backend::Netns(args.wan.path()),
        BackendName::Loopback => Backend::Loopback,
    };
    Ok(config)
}

/// Flags that say something about a local path, refused with `--server` before anything
/// connects.
fn remote_conflicts(args: &BlastArgs) -> Result<(), UsageError> {
    if args.backend == BackendName::Netns {
        return Err(UsageError::flag(
            "--backend",
            "netns",
            "runs the server in a namespace here; --server tests the path to another host",
        ));
    }
    let local = [
        ("--base-port", args.base_port.is_some()),
        ("--control-port", args.control_port.is_some()),
    ]
    .into_iter()
    .find_map(|(flag, given)| given.then_some(flag));
    if let Some(flag) = local.or(args.wan.shapes()) {
        return Err(UsageError::flag(
            flag,
            "",
            "does not apply with --server: the server describes its ports, and the real path \
             between the hosts is what is tested",
        ));
    }
    Ok(())
}

/// `--server HOST[:PORT]`: its address, the key, and how it says it hands out ports.
fn describe_remote(
    server: &str,
    args: &BlastArgs,
) -> Result<(std::net::SocketAddr, u64, crate::model::Server), UsageError> {
    use std::net::ToSocketAddrs;
    let bad = |why: String| UsageError::flag("--server", server, why);
    let Some(key) = args.key else {
        return Err(bad(
            "needs --key: the key `udprange serve` printed or was given".to_string(),
        ));
    };
    let with_port = if server.contains(':') {
        server.to_string()
    } else {
        format!("{server}:22")
    };
    let control = with_port
        .to_socket_addrs()
        .map_err(|e| bad(format!("is not a host and port: {e}")))?
        .find(std::net::SocketAddr::is_ipv4)
        .ok_or_else(|| bad("has no IPv4 address".to_string()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| UsageError(format!("cannot start the traffic engine: {e}")))?;
    let described = runtime
        .block_on(crate::blast::client::describe(
            control,
            key,
            Duration::from_secs(5),
        ))
        .map_err(bad)?;
    Ok((control, key, described))
}

/// The status line on a terminal: sessions, datagrams/s, elapsed of expected.
struct StatusLine {
    bar: ProgressBar,
}

impl StatusLine {
    fn new(expected: f64) -> Option<Self> {
        if !std::io::stderr().is_terminal() {
            return None;
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_message(format!("starting, about {expected:.1} s"));
        Some(Self { bar })
    }

    fn update(&self, board: &Board, datagrams_per_second: f64, elapsed: f64, expected: f64) {
        self.bar.set_message(format!(
            "sessions {} active, {} ok, {} failed | {:.0} datagrams/s | {:.1}/{:.1} s",
            board.active.load(Ordering::Relaxed),
            board.ok.load(Ordering::Relaxed),
            board.failed.load(Ordering::Relaxed),
            datagrams_per_second,
            elapsed,
            expected
        ));
        self.bar.tick();
    }
}

/// Watches the board while the run goes: the status line (terminal) and interval lines.
async fn watch_run(
    board: Arc<Board>,
    expected: f64,
    interval: Option<Duration>,
    text_lines: bool,
    mut done: tokio::sync::watch::Receiver<bool>,
) {
    let status = StatusLine::new(expected);
    let started = std::time::Instant::now();
    let tick = Duration::from_millis(250);
    let (mut last_sent, mut last_at) = (0u64, started);
    let (mut window_sent, mut window_bytes, mut window_at) = (0u64, 0u64, started);
    let mut next_interval = interval.map(|every| started + every);
    loop {
        tokio::select! {
            () = tokio::time::sleep(tick) => {}
            _ = done.wait_for(|&d| d) => break,
        }
        let now = std::time::Instant::now();
        let sent = board.meter.sent.load(Ordering::Relaxed);
        let rate = (sent - last_sent) as f64 / (now - last_at).as_secs_f64().max(1e-9);
        (last_sent, last_at) = (sent, now);
        if let Some(status) = &status {
            status.update(&board, rate, (now - started).as_secs_f64(), expected);
        }
        if let (Some(due), Some(every)) = (next_interval, interval)
            && now >= due
        {
            next_interval = Some(due + every);
            let bytes = board.meter.delivered_bytes.load(Ordering::Relaxed);
            let span = (now - window_at).as_secs_f64().max(1e-9);
            if text_lines {
                let line = format!(
                    "[{:7.2} s] {:9.0} datagrams/s  goodput {:>13}  sessions {} active, {} ok, {} failed",
                    (now - started).as_secs_f64(),
                    (sent - window_sent) as f64 / span,
                    crate::report::blast::rate((bytes - window_bytes) as f64 * 8.0 / span),
                    board.active.load(Ordering::Relaxed),
                    board.ok.load(Ordering::Relaxed),
                    board.failed.load(Ordering::Relaxed),
                );
                match &status {
                    Some(status) => status.bar.println(line),
                    None => {
                        let mut out = std::io::stdout();
                        let _ = writeln!(out, "{line}");
                        let _ = out.flush();
                    }
                }
            }
            (window_sent, window_bytes, window_at) = (sent, bytes, now);
        }
    }
    if let Some(status) = status {
        status.bar.finish_and_clear();
    }
}

pub(super) fn blast(args: &BlastArgs) -> Result<Outcome, UsageError> {
    let config = config(args)?;
    output::preflight(
        &[
            ("--pcap", args.pcap.as_deref()),
            ("--plot", args.plot.as_deref()),
        ]
        .into_iter()
        .chain(args.export.paths())
        .collect::<Vec<_>>(),
    )?;
    let prepared = blast::prepare(&config).map_err(|e| match e {
        blast::BlastError::TimeScale(why)
            if why.starts_with("server.linger") || why.starts_with("this load") =>
        {
            UsageError(why)
        }
        blast::BlastError::TimeScale(why) => UsageError::flag(
            "--time-scale",
            &config.time_scale.map_or(String::new(), |f| f.to_string()),
            why,
        ),
        other => UsageError(other.to_string()),
    })?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| UsageError(format!("cannot start the traffic engine: {e}")))?;
    let handshake = config.handshake_timeout.as_secs_f64() / prepared.schedule.scale;
    let limit =
        Duration::from_secs_f64((prepared.header.expected_s * 1.5 + handshake * 2.0).min(1e7))
            + DRAIN;
    // Ctrl-C is ours before anything is printed or sent: it ends the run cleanly (and
    // removes its namespaces) from the first line on.
    let mut interrupt_signal = runtime
        .block_on(async {
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        })
        .map_err(|e| UsageError(format!("cannot watch for Ctrl-C: {e}")))?;
    let text = args.format == crate::report::Format::Text;
    // The header goes out once the run is set up (so a port already in use or a namespace
    // that cannot be made is one error and nothing else), before the first packet.
    let header = text.then(|| crate::report::blast::header_text(&prepared.header));
    let board = Arc::new(Board::with_start(Box::new(move || {
        if let Some(header) = header {
            let mut out = std::io::stdout();
            let _ = write!(out, "{header}");
            let _ = out.flush();
        }
    })));
    let result = runtime.block_on(async {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        // Ctrl-C stops the senders; the run drains and still reports.
        let interrupt = tokio::spawn(async move {
            if interrupt_signal.recv().await.is_some() {
                let _ = stop.send(true);
            }
        });
        let (done, finished) = tokio::sync::watch::channel(false);
        let watcher = tokio::spawn(watch_run(
            Arc::clone(&board),
            prepared.header.expected_s,
            config.interval,
            text,
            finished,
        ));
        let run = tokio::time::timeout(
            limit,
            blast::run(&config, &prepared, stopped, Arc::clone(&board)),
        )
        .await;
        let _ = done.send(true);
        let _ = watcher.await;
        interrupt.abort();
        run
    });
    // Every socket and task belongs to the runtime: dropping it leaves nothing behind.
    runtime.shutdown_timeout(Duration::from_secs(1));
    let (report, pcap) = match result {
        Err(_) => {
            return Err(UsageError(format!(
                "the run did not finish within {limit:?}"
            )));
        }
        Ok(Err(e)) => return Err(UsageError(e.to_string())),
        Ok(Ok(done)) => done,
    };
    let mut files = Vec::new();
    if let Some(path) = &args.plot {
        let svg = crate::report::plot::rates_svg(&report)
            .map_err(|e| UsageError(format!("--plot {}: {e}", path.display())))?;
        files.push(OutputFile {
            flag: "--plot",
            path: path.clone(),
            contents: svg.into_bytes(),
        });
    }
    if let (Some(path), Some(bytes)) = (&args.pcap, pcap) {
        files.push(OutputFile {
            flag: "--pcap",
            path: path.clone(),
            contents: bytes,
        });
    }
    files.extend(args.export.files(&report));
    Ok(Outcome {
        stdout: if text {
            crate::report::blast::body_text(&report)
        } else {
            report.render(args.format)
        },
        files,
        code: if report.interrupted {
            EXIT_INTERRUPTED
        } else {
            match report.verdict.status {
                Status::Sufficient => EXIT_OK,
                Status::Insufficient => EXIT_FAILED,
                Status::Inconclusive => EXIT_INCONCLUSIVE,
            }
        },
    })
}
