//! The command line: parses flags, calls the engines, prints. The only module that reads
//! flags or writes to stdout/stderr.
//!
//! Exit codes: [`EXIT_OK`] 0, [`EXIT_FAILED`] 1 (a check or verdict failed, or output could not
//! be written), [`EXIT_USAGE`] 2 (bad input: one line on stderr naming the flag, nothing on
//! stdout), [`EXIT_INCONCLUSIVE`] 3 (`blast`: sessions failed only for reasons that are not
//! the range's, so no verdict), [`EXIT_INTERRUPTED`] 130 (`blast` interrupted by Ctrl-C; the
//! report covers the run until then).

mod args;
mod audit;
mod blast;
mod choices;
mod man;
mod output;
mod path;
pub mod schema;
mod serve;
mod simulate;

use std::ffi::OsString;
use std::io::{self, Write};

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};

pub use args::{
    BackendName, BlastArgs, CheckArgs, Cli, Command, ManArgs, MergeArgs, PeerArg, PlanArgs,
    RulesArgs, SimulateArgs, SizingArgs, ThreadsArg,
};
pub use output::OutputFile;

use crate::firewall::rules::{self, RuleSet};
use crate::firewall::{Requirements, Side};
use crate::model::{PortRange, ServerOs};
use crate::plan::{self, Demand, Field, PlanError, ServerSpec, Transfers};
use crate::report::{Export, PlanReport, Stochastic, TableRow};

pub const EXIT_OK: i32 = 0;
pub const EXIT_FAILED: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_INCONCLUSIVE: i32 = 3;
/// 128 + SIGINT, as shells report a command Ctrl-C ended.
pub const EXIT_INTERRUPTED: i32 = 130;

/// Bad input, as one line: the flag and value at fault and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

impl UsageError {
    fn flag(flag: &str, value: &str, message: impl std::fmt::Display) -> Self {
        if value.is_empty() {
            Self(format!("{flag}: {message}"))
        } else {
            Self(format!("{flag} {value}: {message}"))
        }
    }
}

/// Runs the command line `args` (program name first), writing to `out` and `err`, and
/// returns the exit code. Output is built in full before anything is written.
pub fn run<I, T>(args: I, out: &mut dyn Write, err: &mut dyn Write) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => return clap_error(e, out, err),
    };
    let words: Vec<String> = args
        .iter()
        .enumerate()
        .map(|(i, a)| match i {
            // The program as users name it, wherever it was started from.
            0 => "udprange".to_string(),
            _ => a.to_string_lossy().into_owned(),
        })
        .collect();
    crate::report::Provenance::install(Some(crate::report::Provenance::of(&words)));
    match execute(&cli.command) {
        Ok(outcome) => {
            if let Err(e) = output::write_all(&outcome.files) {
                let _ = writeln!(err, "udprange: error: {e}");
                return EXIT_FAILED;
            }
            write_stdout(&outcome, out, err)
        }
        Err(usage) => {
            let _ = writeln!(err, "udprange: error: {usage}");
            EXIT_USAGE
        }
    }
}

/// What a command produced: stdout, files to write (all or none) and the exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Outcome {
    stdout: String,
    files: Vec<OutputFile>,
    code: i32,
}

impl Outcome {
    fn text(stdout: String) -> Self {
        Self {
            stdout,
            files: Vec::new(),
            code: EXIT_OK,
        }
    }
}

fn write_stdout(outcome: &Outcome, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    match out
        .write_all(outcome.stdout.as_bytes())
        .and_then(|()| out.flush())
    {
        Ok(()) => outcome.code,
        // A closed pipe (`udprange … | head`) is the reader's choice, not a failure.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => outcome.code,
        Err(e) => {
            let _ = writeln!(err, "udprange: error: writing output: {e}");
            EXIT_FAILED
        }
    }
}

/// Help and version go to stdout with exit 0; every parse error becomes one line.
fn clap_error(e: clap::Error, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = write!(out, "{}", e.render());
            EXIT_OK
        }
        // `udprange` alone: a reminder, not the full help.
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = write!(err, "{}", short_usage());
            EXIT_USAGE
        }
        _ => {
            let _ = writeln!(
                err,
                "udprange: {}",
                first_paragraph(&e.render().to_string())
            );
            EXIT_USAGE
        }
    }
}

/// What `udprange` with no command prints on stderr: the usage line, the commands and where
/// the help is, in a few lines.
fn short_usage() -> String {
    let mut text = String::from("Usage: udprange <COMMAND> [OPTIONS]\n");
    let mut line = String::from("Commands:");
    for name in choices::CommandName::names() {
        if line.len() + 1 + name.len() > 80 {
            text.push_str(&line);
            text.push('\n');
            line = " ".repeat("Commands:".len());
        }
        line.push(' ');
        line.push_str(&name);
    }
    text.push_str(&line);
    text.push_str(
        "\n'udprange help' says what each command does; 'udprange <COMMAND> --help' lists its \
         flags.\nExample: udprange plan --os windows --concurrent 10\n",
    );
    text
}

/// The first paragraph of a clap message, folded onto one line.
fn first_paragraph(message: &str) -> String {
    message
        .lines()
        .take_while(|line| !line.trim().is_empty())
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ")
}

fn execute(command: &Command) -> Result<Outcome, UsageError> {
    match command {
        Command::Plan(args) => {
            output::preflight(&args.export.paths())?;
            let report = plan_report(&args.sizing)?;
            Ok(Outcome {
                files: args.export.files(&report),
                ..Outcome::text(report.render(args.format))
            })
        }
        Command::Rules(args) => rules_text(args).map(Outcome::text),
        Command::Simulate(args) => simulate::simulate(args),
        Command::Check(args) => simulate::check(args),
        Command::Merge(args) => simulate::merge(args),
        Command::Blast(args) => blast::blast(args),
        Command::Serve(args) => serve::serve(args),
        Command::Audit(args) => audit::audit(args),
        Command::Path(args) => path::path(args),
        Command::Completions { shell } => {
            let mut buffer = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "udprange", &mut buffer);
            Ok(Outcome::text(
                String::from_utf8(buffer).expect("completions are UTF-8"),
            ))
        }
        Command::Man(args) => man::man(args),
        Command::Schema(args) => schema::schema_text(&args.command)
            .map(Outcome::text)
            .ok_or_else(|| UsageError::flag("schema", &args.command, "has no JSON report")),
    }
}

fn server_spec(args: &SizingArgs) -> Result<ServerSpec, UsageError> {
    if args.no_udp_port_reuse && args.os != ServerOs::Linux {
        return Err(UsageError::flag(
            "--no-udp-port-reuse",
            "",
            format!(
                "applies to linux servers only; a {} server never shares ports across accounts \
                 the way linux reuse does",
                args.os
            ),
        ));
    }
    if let Some(max_port) = args.max_port
        && max_port < args.base_port
    {
        return Err(UsageError::flag(
            "--max-port",
            &max_port.to_string(),
            format!("is below --base-port {}", args.base_port),
        ));
    }
    Ok(ServerSpec {
        os: args.os,
        udp_port_reuse: !args.no_udp_port_reuse,
        base_port: args.base_port,
        max_port: args.max_port.unwrap_or(crate::model::MAX_PORT),
        occupied: args.occupied(),
        linger: None,
    })
}

/// Turns a plan error into the flag the user typed (`Field` names are the flag names).
fn blame(args: &SizingArgs, e: PlanError) -> UsageError {
    let field = e.field();
    let shown = |value: Option<u64>| value.map(|v| v.to_string()).unwrap_or_default();
    let value = match field {
        Field::BasePort => args.base_port.to_string(),
        Field::MaxPort => shown(args.max_port.map(u64::from)),
        Field::Occupied => PortRange::list(args.occupied()),
        Field::Concurrent => args.concurrent.to_string(),
        Field::SessionsPerTransfer => args.sessions_per_transfer.to_string(),
        Field::Accounts => shown(args.accounts),
        Field::Sources => shown(args.sources),
        Field::TargetBlocking => args.target_blocking.to_string(),
        Field::OfferedLoad => match (args.offered_load, args.arrival_rate, args.mean_duration) {
            (None, Some(rate), Some(duration)) => {
                let flags = format!("--arrival-rate {rate} --mean-duration");
                return UsageError::flag(&flags, &duration.to_string(), e);
            }
            (load, _, _) => load.map(|l| l.to_string()).unwrap_or_default(),
        },
    };
    UsageError::flag(&format!("--{field}"), &value, e)
}

/// Reads the transfer logs of `--from-log` and replays their sessions through the model.
fn log_sizing(
    args: &SizingArgs,
    server: &plan::ServerSpec,
) -> Result<crate::report::LogReport, UsageError> {
    use crate::scenario::translog;
    let log = translog::read(
        &args.from_log,
        translog::ReadOptions {
            year: args.log_year,
        },
    )
    .map_err(|e| UsageError::flag("--from-log", "", e))?;
    if args.strict
        && let Some(issue) = log.issues.first.first()
    {
        return Err(UsageError(format!(
            "--strict: {}:{}: {} ({} malformed and {} unmatched session lines in all)",
            issue.file, issue.line, issue.why, log.issues.malformed, log.issues.unmatched
        )));
    }
    if log.sessions.is_empty() {
        return Err(UsageError::flag(
            "--from-log",
            "",
            format!(
                "no session has both its Start and its Stop in {} ({} unmatched, {} malformed)",
                args.from_log
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                log.issues.unmatched,
                log.issues.malformed
            ),
        ));
    }
    let side = plan::logsize::side_of(server, &log.sessions, args.log_side);
    let files: Vec<String> = log.files.iter().map(|p| p.display().to_string()).collect();
    let sizing = plan::logsize::size(server, &log.sessions, side, |i| files[i].clone());
    Ok(crate::report::LogReport {
        files,
        lines: log.lines,
        session_lines: log.session_lines,
        issues: log.issues,
        growth: args.growth.unwrap_or(0.0),
        sizing,
    })
}

/// Plans for the flags: random load when a load is given, else the fixed workload.
fn plan_report(args: &SizingArgs) -> Result<PlanReport, UsageError> {
    let server = server_spec(args)?;
    let control = crate::model::ControlPort::for_os(server.os, args.ssh_port);
    let requirements = |range: PortRange| Requirements::new(control.port, range, args.vlink);
    let base = |ports_needed, udp_range: PortRange, occupied_in_range| PlanReport {
        os: server.os,
        sharing: server.rule(),
        sharing_description: server.rule().describe(),
        udp_port_reuse: (server.os == ServerOs::Linux).then_some(server.udp_port_reuse),
        base_port: server.base_port,
        concurrent: None,
        sessions_per_transfer: args.sessions_per_transfer,
        accounts: args.accounts,
        ports_needed,
        udp_range: udp_range.into(),
        occupied_in_range,
        tcp_control_port: control.port,
        tcp_control_port_why: control.why.clone(),
        vlink_port: args.vlink.then_some(crate::firewall::VLINK_PORT),
        stochastic: None,
        client_openings: Vec::new(),
        server_openings: Vec::new(),
        log: None,
    };
    if !args.from_log.is_empty() {
        let log = log_sizing(args, &server)?;
        let ports =
            ((log.sizing.peak_ports.max(1) as f64) * (1.0 + log.growth) - 1e-9).ceil() as u64;
        let udp_range = plan::range_for(&server, ports, plan::Field::Concurrent).map_err(|e| {
            UsageError::flag(
                "--from-log",
                "",
                format!("the log's peak needs {ports} ports: {e}"),
            )
        })?;
        return Ok(PlanReport {
            accounts: None,
            log: Some(log),
            ..base(ports, udp_range, plan::occupied_in(&server, udp_range))
        }
        .with_openings(&requirements(udp_range)));
    }
    let report = match args.offered_load() {
        Some(offered_load) => {
            let demand = Demand {
                offered_load,
                sources: args.sources,
                accounts: args.accounts,
                sessions_per_transfer: args.sessions_per_transfer,
            };
            let plan = plan::plan_capacity(&server, &demand, args.target_blocking.value())
                .map_err(|e| blame(args, e))?;
            PlanReport {
                stochastic: Some(Stochastic {
                    model: plan.model.to_string(),
                    offered_load,
                    target_blocking: plan.target_blocking,
                    blocking: plan.blocking,
                    sources: args.sources,
                    table: plan
                        .table
                        .iter()
                        .map(|&(ports, blocking)| TableRow { ports, blocking })
                        .collect(),
                }),
                ..base(plan.ports_needed, plan.udp_range, plan.occupied_in_range)
            }
            .with_openings(&requirements(plan.udp_range))
        }
        None => {
            if let Some(sources) = args.sources {
                return Err(UsageError::flag(
                    "--sources",
                    &sources.to_string(),
                    "needs random load (--offered-load, or --arrival-rate with --mean-duration)",
                ));
            }
            let transfers = Transfers {
                concurrent: args.concurrent,
                sessions_per_transfer: args.sessions_per_transfer,
                accounts: args.accounts,
            };
            let sizing = plan::size(&server, &transfers).map_err(|e| blame(args, e))?;
            PlanReport {
                concurrent: Some(args.concurrent),
                ..base(
                    sizing.ports_needed,
                    sizing.udp_range,
                    sizing.occupied_in_range,
                )
            }
            .with_openings(&requirements(sizing.udp_range))
        }
    };
    Ok(report)
}

fn rules_text(args: &RulesArgs) -> Result<String, UsageError> {
    if args.default_drop && args.peer.is_none() {
        let (what, ports) = match args.side {
            Side::Client => ("outbound", "DNS, NTP and DHCP with it"),
            Side::Server => ("inbound", "replies to DNS, NTP and DHCP with it"),
        };
        return Err(UsageError::flag(
            "--default-drop",
            "",
            format!(
                "without --peer it drops all other {what} UDP ({ports}); give --peer \
                 ADDR[/PREFIX], or --peer any if that is what you want"
            ),
        ));
    }
    let report = plan_report(&args.sizing)?;
    let openings = match args.side {
        Side::Client => report.client_openings.clone(),
        Side::Server => report.server_openings.clone(),
    };
    let mut set = RuleSet::new(args.side, openings);
    set.peer = args.peer.and_then(PeerArg::peer);
    set.default_drop = args.default_drop;
    let toward = match args.side {
        Side::Client => "outbound to the transfer server",
        Side::Server => "inbound from clients",
    };
    set.header = vec![
        format!(
            "udprange: {} firewall, {toward}, for a {} server ({})",
            args.side.name(),
            report.os,
            report.sharing.describe()
        ),
        format!(
            "UDP {} ({} needed), TCP control port {}",
            report.udp_range.range(),
            if report.ports_needed == 1 {
                "1 port".to_string()
            } else {
                format!("{} ports", report.ports_needed)
            },
            report.tcp_control_port
        ),
        format!("control port: {}", report.tcp_control_port_why),
    ];
    rules::render(&set, args.syntax).map_err(|e| {
        UsageError::flag(
            "--peer",
            &set.peer.map(|p| p.to_string()).unwrap_or_default(),
            e,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_args(args: &[&str]) -> (i32, String, String) {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let code = run(
            std::iter::once("udprange").chain(args.iter().copied()),
            &mut out,
            &mut err,
        );
        (
            code,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn seed_example() {
        let (code, out, err) = run_args(&["plan", "--os", "windows", "--concurrent", "10"]);
        assert_eq!((code, err.as_str()), (0, ""));
        assert!(out.contains("UDP 33001-33010"), "{out}");
        // The seed: "TCP/33001 by default, when connecting to a Windows server".
        assert!(
            out.contains("TCP 33001         control: a Windows server's default"),
            "{out}"
        );
        let (_, out, _) = run_args(&["plan", "--os", "linux"]);
        assert!(out.contains("TCP 22            control: SSH"), "{out}");
        let (_, out, _) = run_args(&["plan", "--ssh-port", "2222"]);
        assert!(
            out.contains("TCP 2222          control: --ssh-port 2222, as given"),
            "{out}"
        );
    }

    #[test]
    fn bad_input_is_one_line_and_exit_2() {
        for args in [
            &["plan", "--os", "solaris"][..],
            &["plan", "--base-port", "0"],
            &["plan", "--base-port", "65536"],
            &["plan", "--base-port", "65530", "--concurrent", "7"],
            &["plan", "--offered-load", "-1"],
            &["plan", "--offered-load", "NaN"],
            &["plan", "--offered-load", "10", "--target-blocking", "1.5"],
            &["plan", "--offered-load", "10", "--concurrent", "5"],
            &["plan", "--os", "windows", "--no-udp-port-reuse"],
            &["plan", "--occupied", "33001-65535"],
            &["plan", "--bogus"],
            &["plan", "--arrival-rate", "2/s"],
            &["rules", "--syntax", "cisco"],
            &["rules", "--syntax", "iptables", "--peer", "2001:db8::1"],
            &["rules", "--default-drop"],
            &[
                "rules",
                "--side",
                "server",
                "--default-drop",
                "--syntax",
                "pf",
            ],
        ] {
            let (code, out, err) = run_args(args);
            assert_eq!(code, 2, "{args:?}: {err}");
            assert!(out.is_empty(), "{args:?} wrote stdout: {out}");
            assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
            assert!(err.starts_with("udprange: error: "), "{args:?}: {err}");
        }
    }

    #[test]
    fn errors_name_the_flag() {
        let (_, _, err) = run_args(&["plan", "--occupied", "33001-65535"]);
        assert!(err.contains("--occupied"), "{err}");
        let (_, _, err) = run_args(&["plan", "--max-port", "33005"]);
        assert!(err.contains("--max-port 33005"), "{err}");
        let (_, _, err) = run_args(&["plan", "--os", "solaris"]);
        assert!(err.contains("--os") && err.contains("solaris"), "{err}");
    }
}
