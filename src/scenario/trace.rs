//! Session traces: a CSV file with the header `start,duration,account` (and optionally
//! `group`), one session per line. Times are durations with a unit (`90s`, `1.5h`) or plain
//! seconds. Lines may come in any order; they are replayed sorted by start (stable).
//!
//! ```text
//! start,duration,account
//! 0s,12m,alice
//! 4.5,90s,bob
//! ```

use crate::workload::spec::TraceRecord;
use std::collections::HashMap;
use std::path::Path;

use super::ScenarioError;
use crate::limits::{self, MAX_SIM_SECONDS, MAX_SIM_TEXT, MAX_TRACE_BYTES, MAX_TRACE_SESSIONS};
use crate::units::{Duration, parse_non_negative};

fn seconds(text: &str) -> Option<f64> {
    parse_non_negative(text)
        .ok()
        .or_else(|| text.parse::<Duration>().ok().map(|d| d.as_secs_f64()))
}

/// Reads a trace; errors name the CSV file, line and column. An unreadable file is an error
/// with line 0 (the scenario names the key that points at it).
pub fn read(path: &Path) -> Result<Vec<TraceRecord>, ScenarioError> {
    let error = |line: usize, column: usize, key: &str, message: String| ScenarioError {
        file: path.to_path_buf(),
        line,
        column,
        key: key.to_string(),
        message,
    };
    let text = limits::read_text(path, MAX_TRACE_BYTES, "trace")
        .map_err(|e| error(0, 0, "", e.to_string()))?;
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'));
    let Some((header_line, header)) = lines.next() else {
        return Err(error(
            1,
            1,
            "",
            "empty trace: expected the header start,duration,account".into(),
        ));
    };
    let columns: Vec<&str> = header.split(',').map(str::trim).collect();
    let index = |name: &str| columns.iter().position(|c| *c == name);
    let (Some(start_at), Some(duration_at), Some(account_at)) =
        (index("start"), index("duration"), index("account"))
    else {
        return Err(error(
            header_line + 1,
            1,
            "",
            format!("header '{header}' must name start, duration and account"),
        ));
    };
    let group_at = index("group");
    if let Some(unknown) = columns
        .iter()
        .find(|c| !["start", "duration", "account", "group"].contains(c))
    {
        return Err(error(
            header_line + 1,
            1,
            unknown,
            "unknown column (expected start, duration, account, group)".into(),
        ));
    }
    let mut accounts: HashMap<String, u64> = HashMap::new();
    let mut records = Vec::new();
    for (number, line) in lines {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() != columns.len() {
            return Err(error(
                number + 1,
                1,
                "",
                format!("{} fields, the header has {}", fields.len(), columns.len()),
            ));
        }
        let column_of = |i: usize| line.split(',').take(i).map(|f| f.len() + 1).sum::<usize>() + 1;
        let time = |i: usize, name: &str| {
            let at = |message: String| error(number + 1, column_of(i), name, message);
            let value = seconds(fields[i]).ok_or_else(|| {
                at(format!(
                    "'{}' is not a time (examples: 90s, 1.5h, 12.5)",
                    fields[i]
                ))
            })?;
            if value > MAX_SIM_SECONDS {
                return Err(at(format!("'{}' is above {MAX_SIM_TEXT}", fields[i])));
            }
            Ok(value)
        };
        let start = time(start_at, "start")?;
        let duration = time(duration_at, "duration")?;
        if duration <= 0.0 {
            return Err(error(
                number + 1,
                column_of(duration_at),
                "duration",
                "must be above 0".into(),
            ));
        }
        let next_account = accounts.len() as u64;
        let account = *accounts
            .entry(fields[account_at].to_string())
            .or_insert(next_account);
        let group = group_at
            .map(|i| fields[i].to_string())
            .filter(|g| !g.is_empty());
        records.push(TraceRecord {
            start,
            duration,
            account,
            group,
        });
        if records.len() > MAX_TRACE_SESSIONS {
            return Err(error(
                number + 1,
                1,
                "",
                format!("more than {MAX_TRACE_SESSIONS} sessions"),
            ));
        }
    }
    if records.is_empty() {
        return Err(error(
            header_line + 1,
            1,
            "",
            "empty trace: no sessions after the header".into(),
        ));
    }
    records.sort_by(|a, b| a.start.total_cmp(&b.start));
    Ok(records)
}
