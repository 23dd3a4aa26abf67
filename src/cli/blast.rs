//! `blast`: a scenario (or the seed example) with flag overrides, run on loopback.

use std::time::Duration;

use super::args::BackendName;
use super::args::BlastArgs;
use super::output::{self, OutputFile};
use super::{EXIT_FAILED, EXIT_INCONCLUSIVE, EXIT_INTERRUPTED, EXIT_OK, Outcome, UsageError};
use crate::blast::netns::WanPath;
use crate::blast::{self, Backend, BlastConfig, Status};
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
    }
    if let Some(accounts) = args.accounts {
        config.accounts = accounts;
    }
    if let Some(rate) = args.rate {
        config.rate_bps = rate.bits_per_second() as u64;
    }
    if let Some(duration) = args.duration {
        config.duration = seconds(duration);
    }
    if let Some(start) = args.start {
        config.start = start;
    }
    if let Some(base) = args.base_port {
        if base > config.max_port {
            return Err(UsageError::flag(
                "--base-port",
                &base.to_string(),
                format!("is above the server's max_port {}", config.max_port),
            ));
        }
        config.base_port = base;
    }
    // As `[client].allowed` in a file: a range no session could pass is bad input.
    if let Some(range) = args.allowed {
        let server = crate::scenario::ServerConfig {
            base_port: config.base_port,
            ..scenario.server.clone()
        };
        if let Some(why) = server.unreachable(range) {
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
    let wan = WanPath {
        delay: args.delay.map(seconds),
        jitter: args.jitter.map(seconds),
        loss: args.loss.map(|p| p.value()),
        bandwidth_bps: args.bandwidth.map(|b| b.bits_per_second() as u64),
    };
    config.backend = match args.backend {
        BackendName::Netns => Backend::Netns(wan),
        BackendName::Loopback => {
            let given = [
                ("--delay", args.delay.is_some()),
                ("--jitter", args.jitter.is_some()),
                ("--loss", args.loss.is_some()),
                ("--bandwidth", args.bandwidth.is_some()),
            ];
            if let Some((flag, _)) = given.iter().find(|(_, set)| *set) {
                return Err(UsageError::flag(
                    flag,
                    "",
                    "shapes the WAN path of --backend netns; loopback has none",
                ));
            }
            Backend::Loopback
        }
    };
    Ok(config)
}

pub(super) fn blast(args: &BlastArgs) -> Result<Outcome, UsageError> {
    let config = config(args)?;
    output::preflight(&[("--pcap", args.pcap.as_deref())])?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| UsageError(format!("cannot start the traffic engine: {e}")))?;
    let limit = config.duration + config.handshake_timeout * 2 + DRAIN;
    let result = runtime.block_on(async {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        // Ctrl-C stops the senders; the run drains and still reports.
        let interrupt = tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                let _ = stop.send(true);
            }
        });
        let run = tokio::time::timeout(limit, blast::run(&config, stopped)).await;
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
    if let (Some(path), Some(bytes)) = (&args.pcap, pcap) {
        files.push(OutputFile {
            flag: "--pcap",
            path: path.clone(),
            contents: bytes,
        });
    }
    Ok(Outcome {
        stdout: report.render(args.format),
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
