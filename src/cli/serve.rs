//! `serve`: the transfer-server emulator alone, for `blast --server` on another host.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use super::args::ServeArgs;
use super::{EXIT_OK, Outcome, UsageError};
use crate::blast::server::{self, Server, ServerOptions, SessionEvent};
use crate::model::{Server as ServerDescription, ServerOs};
use crate::report::Format;
use crate::scenario::Scenario;
use crate::wire::control::FinalStats;

/// The server the flags and the scenario describe.
fn description(args: &ServeArgs) -> Result<ServerDescription, UsageError> {
    let mut server = match &args.scenario {
        Some(path) => {
            Scenario::load(path)
                .map_err(|e| UsageError(e.to_string()))?
                .server
        }
        None => ServerDescription::new(ServerOs::Windows),
    };
    if let Some(os) = args.os {
        server.os = os;
    }
    if let Some(base) = args.base_port {
        server.base_port = base;
    }
    if let Some(max) = args.max_port {
        server.max_port = max;
    }
    if !args.occupied.is_empty() {
        server.occupied = args.occupied();
    }
    if args.no_udp_port_reuse {
        server.udp_port_reuse = false;
    }
    if server.max_port < server.base_port {
        return Err(UsageError::flag(
            "--max-port",
            &server.max_port.to_string(),
            format!("is below the base port {}", server.base_port),
        ));
    }
    if server.linger.is_some() {
        return Err(UsageError(
            "server.linger: the emulator does not keep ports after a session yet".into(),
        ));
    }
    Ok(server)
}

fn line(format: Format, text: String, json: serde_json::Value) {
    let mut out = std::io::stdout();
    let _ = match format {
        Format::Json => writeln!(out, "{json}"),
        _ => writeln!(out, "{text}"),
    };
    let _ = out.flush();
}

fn event_line(format: Format, event: &SessionEvent) {
    match event {
        SessionEvent::Opened {
            session,
            account,
            port,
            peer,
        } => line(
            format,
            format!("session {session} opened: account {account}, UDP port {port}, client {peer}"),
            serde_json::json!({"event": "opened", "session": session, "account": account,
                "port": port, "client": peer.to_string()}),
        ),
        SessionEvent::Refused {
            account,
            peer,
            reason,
        } => line(
            format,
            format!("refused a session of account {account} from {peer}: {reason}"),
            serde_json::json!({"event": "refused", "account": account,
                "client": peer.to_string(), "reason": reason.to_string()}),
        ),
        SessionEvent::Closed {
            session,
            port,
            stats:
                FinalStats {
                    received,
                    duplicates,
                    latency,
                },
        } => line(
            format,
            format!(
                "session {session} closed: UDP port {port}, {received} datagrams received, \
                 {duplicates} twice{}",
                latency.map_or(String::new(), |l| format!(
                    ", latency p50/p99/max {}/{}/{} us",
                    l.p50, l.p99, l.max
                ))
            ),
            serde_json::json!({"event": "closed", "session": session, "port": port,
                "received": received, "duplicates": duplicates,
                "latency_us": latency.map(|l| serde_json::json!({"p50": l.p50, "p99": l.p99, "max": l.max}))}),
        ),
    }
}

pub(super) fn serve(args: &ServeArgs) -> Result<Outcome, UsageError> {
    let description = description(args)?;
    let control = crate::model::ControlPort::for_os(description.os, args.ssh_port);
    let (listen, control_why) = match args.listen {
        Some(listen) => (listen, format!("--listen {listen}, as given")),
        None => (
            SocketAddrV4::new(Ipv4Addr::LOCALHOST, control.port),
            control.why,
        ),
    };
    let (key, chosen) = match args.key {
        Some(key) => (key, true),
        None => (server::new_secret(), false),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| UsageError(format!("cannot start the emulator: {e}")))?;
    let mut interrupt = runtime
        .block_on(async {
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        })
        .map_err(|e| UsageError(format!("cannot watch for Ctrl-C: {e}")))?;
    crate::blast::raise_descriptor_limit();
    let (events, mut incoming) = tokio::sync::mpsc::unbounded_channel();
    let options = ServerOptions {
        max_sessions: args.max_sessions,
        describe: Some(description.clone()),
        events: Some(events),
        ..ServerOptions::new(*listen.ip(), key)
    };
    let format = args.format;
    let ended = runtime.block_on(async {
        let server = Server::start(description.allocator(), listen.port(), options, None)
            .await
            .map_err(|e| UsageError::flag("--listen", &listen.to_string(), e.to_string()))?;
        let udp = format!("{}-{}", description.base_port, description.max_port);
        line(
            format,
            format!(
                "udprange serve: {} server ({}) on {} ({}), UDP {udp}, at most {} sessions, key {}",
                description.os,
                description.rule().describe(),
                server.control_addr(),
                control_why,
                args.max_sessions,
                if chosen {
                    "as given".to_string()
                } else {
                    format!("{key:016x}")
                }
            ),
            {
                let mut event = serde_json::json!({"event": "listening", "os": description.os.name(),
                    "control": server.control_addr().to_string(), "control_why": control_why, "udp": udp,
                    "max_sessions": args.max_sessions,
                    "key": if chosen { None } else { Some(format!("{key:016x}")) }});
                // The first line of the run carries its provenance, as every JSON report does.
                if let (Some(provenance), Some(object)) =
                    (crate::report::Provenance::current(), event.as_object_mut())
                {
                    provenance.insert_into(object);
                }
                event
            },
        );
        let deadline = args
            .duration
            .and_then(|d| Duration::try_from_secs_f64(d.as_secs_f64()).ok())
            .map(|d| tokio::time::Instant::now() + d);
        let idle = Duration::try_from_secs_f64(args.idle_timeout.as_secs_f64())
            .unwrap_or(crate::limits::MAX_DURATION);
        let why = loop {
            let until = deadline.unwrap_or_else(|| tokio::time::Instant::now() + idle * 2);
            tokio::select! {
                event = incoming.recv() => match event {
                    Some(event) => event_line(format, &event),
                    None => break "the emulator stopped",
                },
                () = tokio::time::sleep(idle) => break "idle timeout",
                () = tokio::time::sleep_until(until) => break "--duration is over",
                _ = interrupt.recv() => break "interrupted (Ctrl-C)",
            }
        };
        let record = server.shutdown().await;
        while let Ok(event) = incoming.try_recv() {
            event_line(format, &event);
        }
        Ok::<_, UsageError>((why, record.rejected))
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    let (why, rejected) = ended?;
    line(
        format,
        format!(
            "udprange serve: stopped ({why}); rejected {rejected} datagrams and control frames \
             that were not a session's own"
        ),
        serde_json::json!({"event": "stopped", "why": why, "rejected": rejected}),
    );
    Ok(Outcome {
        stdout: String::new(),
        files: Vec::new(),
        code: EXIT_OK,
    })
}
