//! The commands on a real terminal (a pseudo-terminal, as a user runs them): each finishes and
//! prints its last line, and a run longer than a second shows its progress bar on the way.
//! Every other test pipes stderr, and with stderr a pipe the progress bar never draws: a
//! deadlock between the bar and the rest of the output hides there, so these tests exist.
//! A hang fails after [`TIMEOUT`] with what the terminal showed until then.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use rexpect::error::Error;
use rexpect::process::WaitStatus;
use rexpect::reader::Options;
use rexpect::session::{PtySession, spawn_with_options};

/// Each run here takes a few seconds at most, even on a loaded 2-core machine.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Replications of the busy-hour scenario: a run of a few seconds, well past the one second
/// after which the progress bar appears.
const REPLICATIONS: &str = "8000";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Starts `udprange args…` with stdin, stdout and stderr on a new pseudo-terminal.
fn on_terminal(args: &[&str]) -> PtySession {
    let mut command = Command::new(env!("CARGO_BIN_EXE_udprange"));
    command.args(args).current_dir(repo()).env("TERM", "xterm");
    let timeout = u64::try_from(TIMEOUT.as_millis()).unwrap();
    let mut session = spawn_with_options(command, Options::new().timeout_ms(Some(timeout)))
        .expect("udprange starts on a pseudo-terminal");
    // A test that fails leaves no process behind: SIGTERM, then SIGKILL after 2 s.
    session.process_mut().set_kill_timeout(Some(2000));
    session
}

/// Everything the terminal shows until the program exits, with `\r` removed; the program's
/// exit code. A hang fails the test with the end of what was shown.
fn finish(mut session: PtySession, what: &str) -> (String, i32) {
    let shown = match session.exp_eof() {
        Ok(shown) => shown,
        Err(Error::Timeout { got, .. }) => panic!(
            "`udprange {what}` did not finish within {TIMEOUT:?} on a terminal (a hang); \
             the terminal showed {} bytes, ending: {:?}",
            got.len(),
            end(&got)
        ),
        Err(e) => panic!("`udprange {what}` on a terminal: {e}"),
    };
    let code = match session.process().wait().expect("waitpid") {
        WaitStatus::Exited(_, code) => code,
        other => panic!("`udprange {what}` ended with {other:?}"),
    };
    (shown.replace('\r', ""), code)
}

/// The last line that is not blank.
fn last_line(text: &str) -> &str {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
}

/// Whether the progress bar (`NAME [=====>   ] 12/40 runs, …`) was drawn for scenario `name`.
fn progress_bar_shown(shown: &str, name: &str) -> bool {
    shown.split(&format!("{name} [")).skip(1).any(|after| {
        after
            .split_once("] ")
            .and_then(|(_, rest)| rest.split_once(" runs, "))
            .is_some_and(|(count, _)| {
                count.split_once('/').is_some_and(|(done, total)| {
                    done.parse::<u64>().is_ok() && total.parse::<u64>().is_ok()
                })
            })
    })
}

/// The end of a long text, for failure messages.
fn end(text: &str) -> &str {
    let mut start = text.len().saturating_sub(1500);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

#[test]
fn simulate_finishes_on_a_terminal_and_shows_progress() {
    let args = [
        "simulate",
        "scenarios/busy-hour-enterprise.toml",
        "--replications",
        REPLICATIONS,
    ];
    let started = Instant::now();
    let (shown, code) = finish(on_terminal(&args), &args.join(" "));
    let elapsed = started.elapsed();
    assert_eq!(code, 0, "{}", end(&shown));
    assert!(
        progress_bar_shown(&shown, "busy-hour-enterprise"),
        "no progress bar after {elapsed:?} (raise REPLICATIONS if runs take under a second \
         now):\n{}",
        end(&shown)
    );
    // The report on the terminal ends as the same report through a pipe does.
    let piped = Command::new(env!("CARGO_BIN_EXE_udprange"))
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(piped.status.success());
    // The terminal reader turns each byte into a char; do the same to compare.
    let piped: String = piped.stdout.iter().map(|&b| b as char).collect();
    assert!(!last_line(&piped).is_empty(), "{piped}");
    assert_eq!(last_line(&shown), last_line(&piped), "{}", end(&shown));
}

#[test]
fn check_finishes_on_a_terminal_and_shows_progress() {
    // The seed's closed case, long enough for the bar: its expectations hold every time.
    let seed = std::fs::read_to_string(repo().join("scenarios/seed-windows-10.toml")).unwrap();
    let long = seed.replace("replications = 10\n", "replications = 100\n");
    assert_ne!(seed, long, "the seed scenario's replications moved");
    let dir = std::env::temp_dir().join(format!("udprange-terminal-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("seed-long.toml");
    std::fs::write(&file, long).unwrap();

    let (shown, code) = finish(
        on_terminal(&["check", file.to_str().unwrap()]),
        "check seed-long.toml",
    );
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(code, 0, "{}", end(&shown));
    assert!(
        progress_bar_shown(&shown, "seed-windows-10"),
        "no progress bar:\n{}",
        end(&shown)
    );
    assert_eq!(last_line(&shown), "1 passed, 0 failed", "{}", end(&shown));
}

#[test]
fn blast_finishes_on_a_terminal() {
    // Ports 61801+ keep clear of the other blast tests.
    let args = [
        "blast",
        "--duration",
        "1s",
        "--base-port",
        "61801",
        "--allowed",
        "61801-61810",
    ];
    let (shown, code) = finish(on_terminal(&args), &args.join(" "));
    assert_eq!(code, 0, "{}", end(&shown));
    assert_eq!(
        last_line(&shown),
        "verdict: range 61801-61810 is sufficient",
        "{}",
        end(&shown)
    );
    // The status line ran while the packets flowed: sessions, datagrams/s, elapsed/expected.
    assert!(
        shown.contains("sessions 10 active, 0 ok, 0 failed |")
            && shown.contains("datagrams/s |")
            && shown.contains("/1.0 s"),
        "no status line:\n{}",
        end(&shown)
    );
}
