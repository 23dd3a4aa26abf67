//! Transfer logs: the sessions a FASP server (or client) really ran, read from its own log.
//!
//! Two public forms, told apart per line:
//! - the transfer log (`aspera-scp-transfer.log`):
//!   `2020-08-21 19:32:07.730 [112c-00001cf0] LOG FASP Session Start uuid=… op=send
//!   status=started … local=IP:PORT peer=IP:PORT tcp_port=22 …`
//! - syslog: `Jan 26 18:44:54 host ascp[1894]: LOG FASP Session Start uuid=… user="root" …`
//!   (no year: `--log-year`, else the file's modification time, with a year wrap where the
//!   month goes backwards).
//!
//! A session is joined by `uuid` from `Session Start` (start time, `local=`, `peer=`, and
//! `user=` in older versions), `Session Params` (`user=`, `userid=` in newer ones) and
//! `Session Stop` (stop time, `status=success|failed`, `errcode=`, `errstr=`). Transfer
//! Start/Stop lines are per file and every other line is not a session: they are ignored.
//! Malformed session lines (a cut line, no uuid, a time that does not parse) and unmatched
//! ones (a Start without Stop, a Stop without Start) are counted and the first few named by
//! file and line. Files stream line by line with a line-length and a size cap; memory grows
//! with the sessions open at once, never with the file.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use crate::units::format_utc;
use crate::units::{days_from_civil, year_of};

/// Largest log file read: 16 GiB (months of a busy server's log).
pub const MAX_LOG_BYTES: u64 = 16 << 30;
/// Longest line kept; the rest of a longer line is skipped (and the line is malformed).
pub const MAX_LINE_BYTES: usize = 64 << 10;
/// Most sessions read from all files together.
pub const MAX_LOG_SESSIONS: usize = crate::limits::MAX_TRACE_SESSIONS;
/// Lines named in a report for each kind of problem.
pub const NAMED_ISSUES: usize = 5;

/// How a session ended, from its Stop line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase", tag = "status")]
pub enum Ending {
    Success,
    Failed {
        code: Option<u32>,
        message: Option<String>,
    },
    /// Any other status the log gives (cancelled, …).
    Other {
        text: String,
    },
}

/// One session from the log.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedSession {
    pub uuid: String,
    /// Seconds since the Unix epoch (UTC as written; the log's own clock).
    pub start: f64,
    pub stop: f64,
    /// The account: `user=`, else `userid=`; `None` when the log names neither.
    pub user: Option<String>,
    pub local: Option<SocketAddr>,
    pub peer: Option<SocketAddr>,
    pub ending: Ending,
    /// Where its Start line is: the file's index in the list, and the 1-based line.
    pub file: usize,
    pub line: u64,
}

/// A line that is not a usable part of a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Issue {
    pub file: String,
    pub line: u64,
    pub why: String,
}

/// Problems found, counted, with the first few named.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Issues {
    pub malformed: u64,
    pub unmatched: u64,
    pub first: Vec<Issue>,
}

impl Issues {
    fn add(&mut self, kind: IssueKind, file: &Path, line: u64, why: String) {
        match kind {
            IssueKind::Malformed => self.malformed += 1,
            IssueKind::Unmatched => self.unmatched += 1,
        }
        if self.first.len() < NAMED_ISSUES * 2 {
            self.first.push(Issue {
                file: file.display().to_string(),
                line,
                why,
            });
        }
    }

    pub fn total(&self) -> u64 {
        self.malformed + self.unmatched
    }
}

#[derive(Clone, Copy)]
enum IssueKind {
    Malformed,
    Unmatched,
}

/// What the logs hold.
#[derive(Debug, Clone, Default)]
pub struct TransferLog {
    pub files: Vec<PathBuf>,
    /// Complete sessions (Start and Stop), in order of start (ties: the log's order).
    pub sessions: Vec<LoggedSession>,
    pub issues: Issues,
    /// Lines read, and lines that were FASP session lines.
    pub lines: u64,
    pub session_lines: u64,
}

/// How to read the logs.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadOptions {
    /// The year a syslog-form file starts in; `None`: the year its modification time ends
    /// in, counted back over the year wraps in the file.
    pub year: Option<i32>,
}

/// Why logs cannot be read at all.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("{file}: {message}")]
    File { file: String, message: String },
    #[error("{file}: no FASP session lines (expected lines with 'LOG FASP Session Start')")]
    NoSessions { file: String },
}

/// Each session's account number: by user name in order of first appearance; a session
/// whose log names no user is an account of its own (the worst case where accounts share
/// ports).
pub fn accounts(sessions: &[LoggedSession]) -> Vec<u64> {
    let mut numbers: HashMap<&str, u64> = HashMap::new();
    let mut next = 0u64;
    let mut new = || {
        next += 1;
        next - 1
    };
    sessions
        .iter()
        .map(|s| match s.user.as_deref() {
            Some(user) => *numbers.entry(user).or_insert_with(&mut new),
            None => new(),
        })
        .collect()
}

/// The sessions as a trace to replay: start from the first start, duration (at least
/// 1 ms), the account as [`accounts`] numbers it.
pub fn to_trace(log: &TransferLog) -> Vec<crate::workload::spec::TraceRecord> {
    let first = log
        .sessions
        .iter()
        .map(|s| s.start)
        .fold(f64::INFINITY, f64::min);
    log.sessions
        .iter()
        .zip(accounts(&log.sessions))
        .map(|(s, account)| crate::workload::spec::TraceRecord {
            start: s.start - first,
            duration: (s.stop - s.start).max(0.001),
            account,
            group: None,
        })
        .collect()
}

/// One line on what a log gave and left out, for a report's notes.
pub fn summary(log: &TransferLog) -> String {
    let mut text = format!(
        "{}: {} sessions from the transfer log",
        log.files
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        log.sessions.len()
    );
    if log.issues.total() > 0 {
        text.push_str(&format!(
            "; {} malformed and {} unmatched session lines left out",
            log.issues.malformed, log.issues.unmatched
        ));
        if let Some(first) = log.issues.first.first() {
            text.push_str(&format!(" (first: line {}: {})", first.line, first.why));
        }
    }
    text
}

/// Whether these first bytes look like a transfer log (for a scenario's `trace`).
pub fn looks_like(head: &[u8]) -> bool {
    let text = String::from_utf8_lossy(head);
    text.lines()
        .take(200)
        .any(|l| l.contains("LOG FASP Session "))
}

/// A date and time as written, before the year is known (syslog) or with it.
#[derive(Debug, Clone, Copy)]
struct Stamp {
    /// The year if the line gives one, else the count of year wraps before this line.
    year: YearOf,
    month: u32,
    day: u32,
    seconds: f64,
}

#[derive(Debug, Clone, Copy)]
enum YearOf {
    Given(i32),
    Wraps(i32),
}

/// A session with its Start and Stop, before the year of a syslog file is known.
struct Found {
    start: Stamp,
    stop: Stamp,
    partial: Partial,
    ending: Ending,
    file: usize,
    uuid: String,
}

/// A session's parts as they are found.
#[derive(Debug, Default)]
struct Partial {
    start: Option<(Stamp, u64)>,
    user: Option<String>,
    userid: Option<String>,
    local: Option<SocketAddr>,
    peer: Option<SocketAddr>,
}

/// Reads every file; sessions of all files together.
pub fn read(paths: &[PathBuf], options: ReadOptions) -> Result<TransferLog, LogError> {
    let mut log = TransferLog {
        files: paths.to_vec(),
        ..TransferLog::default()
    };
    let mut found: Vec<Found> = Vec::new();
    for (index, path) in paths.iter().enumerate() {
        let file_error = |message: String| LogError::File {
            file: path.display().to_string(),
            message,
        };
        let file =
            std::fs::File::open(path).map_err(|e| file_error(format!("cannot read: {e}")))?;
        let metadata = file
            .metadata()
            .map_err(|e| file_error(format!("cannot read: {e}")))?;
        if !metadata.is_file() {
            return Err(file_error("is not a regular file".into()));
        }
        if metadata.len() > MAX_LOG_BYTES {
            return Err(file_error(format!(
                "is {} bytes, more than the {} a log may have",
                metadata.len(),
                crate::limits::size_text(MAX_LOG_BYTES)
            )));
        }
        let end_year = options.year.is_none().then(|| {
            metadata
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(1970, |d| year_of(d.as_secs() as i64))
        });
        let before = found.len();
        let session_lines_before = log.session_lines;
        let wraps = read_one(
            index,
            path,
            file.take(MAX_LOG_BYTES + 1),
            &mut log,
            &mut found,
        )
        .map_err(|e| file_error(format!("cannot read: {e}")))?;
        if log.session_lines == session_lines_before {
            return Err(LogError::NoSessions {
                file: path.display().to_string(),
            });
        }
        // Syslog years: the first line's year is --log-year, or the modification time's
        // year less the wraps the file went through.
        let first_year = options
            .year
            .unwrap_or_else(|| end_year.unwrap_or(1970) - wraps);
        for entry in &mut found[before..] {
            for stamp in [&mut entry.start, &mut entry.stop] {
                if let YearOf::Wraps(n) = stamp.year {
                    stamp.year = YearOf::Given(first_year + n);
                }
            }
        }
    }
    let mut sessions: Vec<LoggedSession> = found
        .into_iter()
        .map(
            |Found {
                 start,
                 stop,
                 partial,
                 ending,
                 file,
                 uuid,
             }| LoggedSession {
                start: epoch_seconds(start),
                stop: epoch_seconds(stop),
                user: partial.user.or(partial.userid),
                local: partial.local,
                peer: partial.peer,
                ending,
                file,
                line: partial.start.map_or(0, |(_, line)| line),
                uuid,
            },
        )
        .collect();
    sessions.sort_by(|a, b| {
        a.start
            .total_cmp(&b.start)
            .then(a.file.cmp(&b.file))
            .then(a.line.cmp(&b.line))
    });
    log.sessions = sessions;
    let order: HashMap<String, usize> = paths
        .iter()
        .enumerate()
        .map(|(i, p)| (p.display().to_string(), i))
        .collect();
    log.issues
        .first
        .sort_by_key(|i| (order.get(&i.file).copied(), i.line));
    Ok(log)
}

/// One file; returns the year wraps seen (syslog form).
fn read_one(
    index: usize,
    path: &Path,
    input: impl Read,
    log: &mut TransferLog,
    found: &mut Vec<Found>,
) -> std::io::Result<i32> {
    let mut reader = BufReader::with_capacity(1 << 16, input);
    let mut buffer = Vec::with_capacity(1024);
    let mut open: HashMap<String, Partial> = HashMap::new();
    let mut number = 0u64;
    let mut wraps = 0i32;
    let mut last_month: Option<u32> = None;
    let mut read_bytes = 0u64;
    loop {
        buffer.clear();
        let (length, cut) = bounded_line(&mut reader, &mut buffer)?;
        if length == 0 {
            break;
        }
        read_bytes += length as u64;
        number += 1;
        log.lines += 1;
        if read_bytes > MAX_LOG_BYTES {
            log.issues.add(
                IssueKind::Malformed,
                path,
                number,
                "the file grew past the size cap while it was read; the rest is ignored".into(),
            );
            break;
        }
        let text = String::from_utf8_lossy(&buffer);
        let Some(at) = text.find("LOG FASP Session ") else {
            continue;
        };
        log.session_lines += 1;
        let rest = &text[at + "LOG FASP Session ".len()..];
        let (kind, fields) = rest.split_once(' ').unwrap_or((rest.trim_end(), ""));
        let malformed = |log: &mut TransferLog, why: String| {
            log.issues.add(IssueKind::Malformed, path, number, why);
        };
        let bound = matches!(kind, "Start" | "Params" | "Stop");
        if cut
            && (bound
                || ["Start", "Params", "Stop"]
                    .iter()
                    .any(|k| k.starts_with(kind)))
        {
            let why = if buffer.len() >= MAX_LINE_BYTES {
                format!("a line longer than {MAX_LINE_BYTES} bytes (cut)")
            } else {
                "a cut line: the file ends inside it".to_string()
            };
            malformed(log, why);
            continue;
        }
        if !bound {
            continue; // Statistics and the like: not the session's bounds.
        }
        let fields = key_values(fields);
        let Some(uuid) = fields.get("uuid").filter(|u| !u.is_empty()) else {
            malformed(log, format!("a Session {kind} line without uuid="));
            continue;
        };
        let uuid = uuid.to_string();
        let stamp = match parse_stamp(&text[..at], last_month, wraps) {
            Ok((stamp, wrapped)) => {
                if wrapped {
                    wraps += 1;
                }
                if let YearOf::Wraps(_) = stamp.year {
                    last_month = Some(stamp.month);
                }
                stamp
            }
            Err(why) => {
                malformed(log, why);
                continue;
            }
        };
        match kind {
            "Start" => {
                let entry = open.entry(uuid.clone()).or_default();
                if entry.start.is_some() {
                    malformed(log, format!("a second Session Start for uuid={uuid}"));
                    continue;
                }
                entry.start = Some((stamp, number));
                entry.local = fields.get("local").and_then(|a| a.parse().ok());
                entry.peer = fields.get("peer").and_then(|a| a.parse().ok());
                if let Some(user) = fields.get("user") {
                    entry.user = Some(user.to_string());
                }
            }
            "Params" => {
                let entry = open.entry(uuid.clone()).or_default();
                if let Some(user) = fields.get("user") {
                    entry.user = Some(user.to_string());
                }
                if let Some(id) = fields.get("userid") {
                    entry.userid = Some(format!("uid {id}"));
                }
            }
            _ => {
                let started = open.remove(&uuid).and_then(|partial| {
                    let (start, _) = partial.start?;
                    Some((partial, start))
                });
                let Some((partial, start)) = started else {
                    log.issues.add(
                        IssueKind::Unmatched,
                        path,
                        number,
                        format!("a Session Stop for uuid={uuid} without its Start"),
                    );
                    continue;
                };
                let ending = match fields.get("status").copied() {
                    Some("success") => Ending::Success,
                    Some("failed") | Some("error") => Ending::Failed {
                        code: fields.get("errcode").and_then(|c| c.parse().ok()),
                        message: fields.get("errstr").map(|s| s.to_string()),
                    },
                    other => Ending::Other {
                        text: other.unwrap_or("none").to_string(),
                    },
                };
                if found.len() >= MAX_LOG_SESSIONS {
                    malformed(
                        log,
                        format!("more than {MAX_LOG_SESSIONS} sessions; the rest is ignored"),
                    );
                    break;
                }
                found.push(Found {
                    start,
                    stop: stamp,
                    partial,
                    ending,
                    file: index,
                    uuid,
                });
            }
        }
        if open.len() > MAX_LOG_SESSIONS {
            malformed(
                log,
                format!("more than {MAX_LOG_SESSIONS} sessions open at once; the rest is ignored"),
            );
            break;
        }
    }
    let mut never_stopped: Vec<(u64, String)> = open
        .into_iter()
        .filter_map(|(uuid, p)| p.start.map(|(_, line)| (line, uuid)))
        .collect();
    never_stopped.sort();
    for (line, uuid) in never_stopped {
        log.issues.add(
            IssueKind::Unmatched,
            path,
            line,
            format!("a Session Start for uuid={uuid} without its Stop (left out)"),
        );
    }
    Ok(wraps)
}

/// Reads one line into `buffer`, keeping at most [`MAX_LINE_BYTES`]; returns the bytes the
/// line took in the file (0 at the end) and whether it was cut: too long, or the file ends
/// inside it (no newline).
fn bounded_line(reader: &mut impl BufRead, buffer: &mut Vec<u8>) -> std::io::Result<(usize, bool)> {
    let mut taken = 0;
    let mut cut = false;
    loop {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            return Ok((taken, cut || taken > 0));
        }
        let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..=i], true),
            None => (available, false),
        };
        let room = MAX_LINE_BYTES.saturating_sub(buffer.len());
        if chunk.len() > room {
            cut = true;
        }
        buffer.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let used = chunk.len();
        taken += used;
        reader.consume(used);
        if done {
            return Ok((taken, cut));
        }
    }
}

/// `key=value` pairs; a value may be double-quoted (with spaces inside).
fn key_values(text: &str) -> HashMap<&str, &str> {
    let mut out = HashMap::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        let Some(eq) = rest.find('=') else { break };
        let key = rest[..eq].trim();
        let key = key.rsplit(' ').next().unwrap_or(key);
        let after = &rest[eq + 1..];
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.find('"') {
                Some(end) => (&quoted[..end], &quoted[end + 1..]),
                None => (quoted, ""),
            }
        } else {
            match after.find(' ') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after.trim_end(), ""),
            }
        };
        out.entry(key).or_insert(value);
        rest = next.trim_start();
    }
    out
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// The time at the front of a line: `2020-08-21 19:32:07.730 …` or `Jan 26 18:44:54 …`;
/// with whether a syslog month went backwards (a year wrap).
fn parse_stamp(head: &str, last_month: Option<u32>, wraps: i32) -> Result<(Stamp, bool), String> {
    let head = head.trim_start();
    let mut words = head.split_whitespace();
    let (Some(first), Some(second)) = (words.next(), words.next()) else {
        return Err("no time at the start of the line".into());
    };
    let bad = || {
        format!(
            "'{}' is not a time this tool reads",
            head.chars().take(40).collect::<String>().trim_end()
        )
    };
    if let Some(month) = MONTHS.iter().position(|m| *m == first) {
        // Syslog: "Jan 26 18:44:54".
        let day: u32 = second.parse().map_err(|_| bad())?;
        let clock = words.next().ok_or_else(bad)?;
        let seconds = clock_seconds(clock).ok_or_else(bad)?;
        let month = month as u32 + 1;
        if !(1..=31).contains(&day) {
            return Err(bad());
        }
        let wrapped = last_month.is_some_and(|last| month + 6 < last);
        let wraps = wraps + i32::from(wrapped);
        return Ok((
            Stamp {
                year: YearOf::Wraps(wraps),
                month,
                day,
                seconds,
            },
            wrapped,
        ));
    }
    // "2020-08-21 19:32:07.730".
    let mut date = first.split('-');
    let (Some(y), Some(m), Some(d), None) = (date.next(), date.next(), date.next(), date.next())
    else {
        return Err(bad());
    };
    let year: i32 = y.parse().map_err(|_| bad())?;
    let month: u32 = m.parse().map_err(|_| bad())?;
    let day: u32 = d.parse().map_err(|_| bad())?;
    if !(1970..=9999).contains(&year) || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return Err(bad());
    }
    let seconds = clock_seconds(second).ok_or_else(bad)?;
    Ok((
        Stamp {
            year: YearOf::Given(year),
            month,
            day,
            seconds,
        },
        false,
    ))
}

/// `HH:MM:SS[.fff]` in seconds of the day.
fn clock_seconds(text: &str) -> Option<f64> {
    let mut parts = text.split(':');
    let (h, m, s) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    let s: f64 = s.parse().ok()?;
    (h < 24 && m < 60 && (0.0..61.0).contains(&s) && s.is_finite())
        .then(|| f64::from(h * 3600 + m * 60) + s)
}

fn epoch_seconds(stamp: Stamp) -> f64 {
    let year = match stamp.year {
        YearOf::Given(y) | YearOf::Wraps(y) => y,
    };
    days_from_civil(year, stamp.month, stamp.day) as f64 * 86_400.0 + stamp.seconds
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::civil_from_days;

    fn write(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("udprange-translog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    const TRANSFER_LOG: &str = "\
2020-08-21 19:32:07.730 [112c-00001cf0] LOG FASP Session Start uuid=aaa op=send status=started source=D:/x.mov dest=/y source_prefix=- local=10.0.0.9:50001 peer=10.0.0.5:33001 tcp_port=22 os=\"Microsoft Windows 10 \" ver=3.9.6
2020-08-21 19:32:07.730 [112c-00001cf0] LOG FASP Session Params uuid=aaa userid=0 user=\"alice\" targetrate=300000000 minrate=0 rate_policy=fair cipher=aes-128-cfb
2020-08-21 19:32:08.100 [112c-00001cf0] LOG FASP Transfer Start uuid=aaa file=\"D:/x.mov\"
2020-08-21 19:32:09.000 [112c-00001d00] LOG FASP Session Start uuid=bbb op=send status=started local=10.0.0.9:50002 peer=10.0.0.5:33002 tcp_port=22
2020-08-21 19:33:07.730 [112c-00001cf0] LOG FASP Session Stop uuid=aaa op=send status=success source=D:/x.mov
2020-08-21 19:34:00.000 [112c-00001d00] LOG FASP Session Stop uuid=bbb op=send status=failed errcode=15 errstr=\"Data transfer timeout\"
2020-08-21 19:35:00.000 [112c-00001d00] LOG FASP Session Stop uuid=ccc op=send status=success
2020-08-21 19:35:00.000 [112c-00001d00] LOG FASP Session Start uuid=ddd op=send local=10.0.0.9:50003 peer=10.0.0.5:33001
2020-08-21 19:35:0
";

    #[test]
    fn the_transfer_log_joins_sessions_by_uuid() {
        let path = write("scp.log", TRANSFER_LOG);
        let log = read(std::slice::from_ref(&path), ReadOptions::default()).unwrap();
        assert_eq!(log.sessions.len(), 2);
        let a = &log.sessions[0];
        assert_eq!(a.uuid, "aaa");
        assert_eq!(a.user.as_deref(), Some("alice"));
        assert_eq!(a.stop - a.start, 60.0);
        assert_eq!(a.peer, Some("10.0.0.5:33001".parse().unwrap()));
        assert_eq!(a.ending, Ending::Success);
        assert_eq!(a.line, 1);
        // 2020-08-21 19:32:07.730 UTC.
        assert!((a.start - 1_598_038_327.73).abs() < 1e-6, "{}", a.start);
        let b = &log.sessions[1];
        assert_eq!(b.user, None);
        assert_eq!(
            b.ending,
            Ending::Failed {
                code: Some(15),
                message: Some("Data transfer timeout".into())
            }
        );
        // A Stop without Start (ccc), a Start without Stop (ddd): unmatched, named; the
        // cut last line is not a session line at all.
        assert_eq!((log.issues.unmatched, log.issues.malformed), (2, 0));
        let named: Vec<u64> = log.issues.first.iter().map(|i| i.line).collect();
        assert_eq!(named, [7, 8]);
        assert!(
            log.issues.first[1]
                .why
                .contains("uuid=ddd without its Stop")
        );
    }

    #[test]
    fn syslog_takes_the_year_given_and_wraps() {
        let text = "\
Dec 31 23:59:50 host ascp[1894]: LOG FASP Session Start uuid=s1 user=\"root\" local=10.0.0.5:33001 peer=10.0.0.9:40000
Jan  1 00:00:10 host ascp[1894]: LOG FASP Session Stop uuid=s1 status=success
Jan  1 00:00:11 host ascp[1895]: LOG FASP Session Start uuid=s2 user=\"bob\"
Jan  1 00:00:1x host ascp[1895]: LOG FASP Session Stop uuid=s2 status=success
";
        let path = write("syslog", text);
        let log = read(
            std::slice::from_ref(&path),
            ReadOptions { year: Some(2025) },
        )
        .unwrap();
        assert_eq!(log.sessions.len(), 1);
        let s = &log.sessions[0];
        assert_eq!(s.user.as_deref(), Some("root"));
        // Across midnight of the new year: 20 s, not minus a year.
        assert_eq!(s.stop - s.start, 20.0);
        assert_eq!(year_of(s.start as i64), 2025);
        assert_eq!(year_of(s.stop as i64), 2026);
        assert_eq!((log.issues.malformed, log.issues.unmatched), (1, 1));
        // Named in the file's order: the Start without Stop (line 3), the bad time (4).
        assert_eq!(log.issues.first[0].line, 3);
        assert_eq!(log.issues.first[1].line, 4);
        assert!(
            log.issues.first[1].why.contains("is not a time"),
            "{:?}",
            log.issues
        );
    }

    #[test]
    fn hostile_input_is_bounded() {
        // A 200 KB line, binary noise and a file without sessions.
        let long = format!(
            "2020-01-01 00:00:00.000 [1] LOG FASP Session Start uuid=x {}\n",
            "a".repeat(200_000)
        );
        let path = write("long.log", &long);
        let log = read(std::slice::from_ref(&path), ReadOptions::default()).unwrap();
        assert_eq!(log.issues.malformed, 1);
        assert!(log.issues.first[0].why.contains("longer than"));
        let noise = write("noise.log", "\u{0}\u{1}garbage\nmore garbage\n");
        let error = read(&[noise], ReadOptions::default()).unwrap_err();
        assert!(
            error.to_string().contains("no FASP session lines"),
            "{error}"
        );
        let missing = read(&[PathBuf::from("/no/such.log")], ReadOptions::default()).unwrap_err();
        assert!(
            missing.to_string().starts_with("/no/such.log: cannot read"),
            "{missing}"
        );
    }

    #[test]
    fn civil_dates_round_trip() {
        for (y, m, d) in [(1970, 1, 1), (2000, 2, 29), (2024, 12, 31), (2100, 3, 1)] {
            let days = days_from_civil(y, m, d);
            assert_eq!(year_of(days * 86_400), y);
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2020, 8, 21), 18_495);
        assert_eq!(format_utc(1_598_038_327.73), "2020-08-21 19:32:07");
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
        assert!(looks_like(TRANSFER_LOG.as_bytes()));
        assert!(!looks_like(b"start,duration,account\n0,1,a\n"));
    }
}
