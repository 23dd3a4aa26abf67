//! Shard files: the raw per-replication results of one slice of a run, and merging slices
//! back into exactly the result of one run.
//!
//! A shard file is one JSON object: a format tag, the run's [`Fingerprint`], the scenario's
//! [`Context`], the shard and its [`ReplicationResult`]s. Floating-point values round-trip
//! exactly through JSON (serde_json's `float_roundtrip`), and
//! [`summarize`](super::summarize) sorts by replication, so the merged summary equals the
//! single-run summary byte for byte.
//!
//! A shard file comes from outside: [`parse`] refuses what no run writes (a peak port below
//! the base, more failures than sessions, negative or endless times, counts beyond the
//! limits), so that merging and summarising what it accepts cannot panic or overflow.

use serde::{Deserialize, Serialize};

use super::fingerprint::{self, Fingerprint};
use super::{Context, ReplicationResult, RunCounts, Shard, Tally};
use crate::limits::{
    MAX_REPLICATIONS, MAX_RETRY_ATTEMPTS, MAX_SESSIONS, MAX_SESSIONS_PER_TRANSFER,
};
use crate::model::Port;
use crate::workload::SimTime;

/// The format tag; a file with another tag is refused.
pub const PART_FORMAT: &str = "udprange-part/2";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Part {
    pub format: String,
    /// Everything that shaped the result (see [`fingerprint`]).
    pub fingerprint: Fingerprint,
    pub context: Context,
    pub shard: Shard,
    pub results: Vec<ReplicationResult>,
}

impl Part {
    pub fn new(
        fingerprint: Fingerprint,
        context: Context,
        shard: Shard,
        results: Vec<ReplicationResult>,
    ) -> Self {
        Self {
            format: PART_FORMAT.to_string(),
            fingerprint,
            context,
            shard,
            results,
        }
    }
}

/// Why a shard file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PartError {
    /// Not JSON of the shard's shape; `line` and `column` are 1-based.
    #[error("{line}:{column}: not a udprange shard file: {message}")]
    Json {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("not a udprange shard file (format '{found}', expected '{PART_FORMAT}')")]
    Format { found: String },
    /// A value no run writes, at a JSON path such as `results[3].unconstrained.failed`.
    #[error("{at}: {message}")]
    Impossible { at: String, message: String },
}

/// Reads a shard file's text: JSON of the right shape, the right format, possible values.
pub fn parse(text: &str) -> Result<Part, PartError> {
    let part: Part = serde_json::from_str(text).map_err(|e| PartError::Json {
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })?;
    if part.format != PART_FORMAT {
        return Err(PartError::Format {
            found: part.format.chars().take(40).collect(),
        });
    }
    check(&part).map_err(|(at, message)| PartError::Impossible { at, message })?;
    Ok(part)
}

/// Most sessions one replication counts: every transfer it may start, each fully split.
const MAX_RUN_SESSIONS: u64 = MAX_SESSIONS * MAX_SESSIONS_PER_TRANSFER as u64;
/// Most attempts one replication counts (blocked, refused, retried).
const MAX_RUN_ATTEMPTS: u64 = MAX_RUN_SESSIONS * MAX_RETRY_ATTEMPTS as u64;

type Found = (String, String);

fn impossible(at: impl Into<String>, message: impl Into<String>) -> Found {
    (at.into(), message.into())
}

fn at_most(at: &str, value: u64, max: u64, what: &str) -> Result<(), Found> {
    if value > max {
        return Err(impossible(at, format!("{value} is more than {what} {max}")));
    }
    Ok(())
}

/// A time in seconds a run can measure: finite, not negative, within `max`.
fn time(at: &str, seconds: f64, max: f64) -> Result<(), Found> {
    if !(seconds.is_finite() && (0.0..=max).contains(&seconds)) {
        return Err(impossible(
            at,
            format!("{seconds:?} is not a time a run measures (0 to {max:e} s)"),
        ));
    }
    Ok(())
}

fn tally(at: &str, t: &Tally) -> Result<(), Found> {
    at_most(
        &format!("{at}.sessions"),
        t.sessions,
        MAX_RUN_SESSIONS,
        "the most a replication starts,",
    )?;
    at_most(&format!("{at}.failed"), t.failed, t.sessions, "sessions")
}

fn run_counts(at: &str, c: &RunCounts, groups: usize, slots: usize) -> Result<(), Found> {
    let end = SimTime::END.as_secs_f64();
    let field = |name: &str| format!("{at}.{name}");
    at_most(
        &field("sessions"),
        c.sessions,
        MAX_RUN_SESSIONS,
        "the most a replication starts,",
    )?;
    at_most(&field("failed"), c.failed, c.sessions, "sessions")?;
    for (name, value) in [
        ("blocked", c.blocked),
        ("refused", c.refused),
        ("retried", c.retried),
    ] {
        at_most(
            &field(name),
            value,
            MAX_RUN_ATTEMPTS,
            "the most attempts a replication makes,",
        )?;
    }
    at_most(
        &field("transfers"),
        c.transfers,
        MAX_SESSIONS,
        "the most a replication starts,",
    )?;
    at_most(
        &field("transfers_failed"),
        c.transfers_failed,
        c.transfers,
        "transfers",
    )?;
    if c.groups.len() != groups {
        return Err(impossible(
            field("groups"),
            format!(
                "{} groups, the run has {groups} (the default group and the scenario's)",
                c.groups.len()
            ),
        ));
    }
    for (g, t) in c.groups.iter().enumerate() {
        tally(&format!("{at}.groups[{g}]"), t)?;
    }
    let (sessions, failed) = c
        .groups
        .iter()
        .fold((0u64, 0u64), |(s, f), t| (s + t.sessions, f + t.failed));
    if (sessions, failed) != (c.sessions, c.failed) {
        return Err(impossible(
            field("groups"),
            format!(
                "the groups count {sessions} sessions and {failed} failed, the run {} and {}",
                c.sessions, c.failed
            ),
        ));
    }
    time(&field("duration_s"), c.duration_s, end)?;
    time(&field("port_seconds"), c.port_seconds, end * 65536.0)?;
    if c.slot_busy.len() > slots {
        return Err(impossible(
            field("slot_busy"),
            format!(
                "{} ports, more than the {slots} from the base port",
                c.slot_busy.len()
            ),
        ));
    }
    for (i, &busy) in c.slot_busy.iter().enumerate() {
        time(&format!("{at}.slot_busy[{i}]"), busy, end)?;
    }
    Ok(())
}

fn check_context(c: &Context) -> Result<(), Found> {
    let field = |name: &str| format!("context.{name}");
    if !(1..=MAX_REPLICATIONS).contains(&c.replications) {
        return Err(impossible(
            field("replications"),
            format!("{} is not 1 to {MAX_REPLICATIONS}", c.replications),
        ));
    }
    if c.base_port == 0 {
        return Err(impossible(field("base_port"), "port 0 is not usable"));
    }
    if !(c.target_blocking > 0.0 && c.target_blocking < 1.0) {
        return Err(impossible(
            field("target_blocking"),
            format!("{} is not strictly between 0 and 1", c.target_blocking),
        ));
    }
    if !(1..=MAX_SESSIONS_PER_TRANSFER).contains(&c.sessions_per_transfer) {
        return Err(impossible(
            field("sessions_per_transfer"),
            format!(
                "{} is not 1 to {MAX_SESSIONS_PER_TRANSFER}",
                c.sessions_per_transfer
            ),
        ));
    }
    Ok(())
}

/// The checks of [`parse`]: `Err((JSON path, what is wrong))`.
fn check(part: &Part) -> Result<(), Found> {
    let c = &part.context;
    check_context(c)?;
    let Shard { index, count } = part.shard;
    if count == 0 || index >= count {
        return Err(impossible(
            "shard",
            format!("{index}/{count} is not a shard (0 <= index < count)"),
        ));
    }
    let base = c.base_port;
    let slots = usize::from(Port::MAX - base) + 1;
    let groups = c.groups.len() + 1;
    let has_configured = c.allowed.is_some() || !c.groups.is_empty();
    for (i, r) in part.results.iter().enumerate() {
        let at = |name: &str| format!("results[{i}].{name}");
        if r.peak_port != 0 && r.peak_port < base {
            return Err(impossible(
                at("peak_port"),
                format!("{} is below the base port {base}", r.peak_port),
            ));
        }
        let peak_slots = match r.peak_port {
            0 => 0,
            p => usize::from(p - base) + 1,
        };
        // One tally per range size below the peak: 1 .. peak_slots - 1 ports.
        if r.curve.len() != peak_slots.saturating_sub(1) {
            return Err(impossible(
                at("curve"),
                format!(
                    "{} range sizes, the peak port {} gives {}",
                    r.curve.len(),
                    r.peak_port,
                    peak_slots.saturating_sub(1)
                ),
            ));
        }
        for (n, t) in r.curve.iter().enumerate() {
            tally(&at(&format!("curve[{n}]")), t)?;
        }
        run_counts(&at("unconstrained"), &r.unconstrained, groups, slots)?;
        match (&r.configured, has_configured) {
            (Some(configured), true) => {
                run_counts(&at("configured"), configured, groups, slots)?;
            }
            (None, false) => {}
            (_, expected) => {
                return Err(impossible(
                    at("configured"),
                    if expected {
                        "missing, and the run has a client range or groups"
                    } else {
                        "present, and the run has no client range or groups"
                    },
                ));
            }
        }
        if let Some(series) = &r.series {
            if r.replication != 0 {
                return Err(impossible(
                    at("series"),
                    "only replication 0 records ports held over time",
                ));
            }
            series
                .check()
                .map_err(|why| impossible(at("series"), why))?;
        }
    }
    Ok(())
}

/// Why parts do not merge; `part` is the index of the part at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MergeError {
    #[error("not a udprange shard file (format '{found}', expected '{PART_FORMAT}')")]
    Format { part: usize, found: String },
    #[error("comes from a different run than the first part: {what} differs")]
    Mismatch { part: usize, what: String },
    #[error("replication {replication} is also in an earlier part")]
    Duplicate { part: usize, replication: u32 },
    #[error("replication {replication} is outside 0-{last}")]
    OutOfRange {
        part: usize,
        replication: u32,
        last: u32,
    },
    #[error("replications missing: {missing} (merge every shard of the run)")]
    Missing { missing: String },
    #[error("no parts to merge")]
    Empty,
}

impl MergeError {
    /// The part at fault, if one is.
    pub fn part(&self) -> Option<usize> {
        match self {
            Self::Format { part, .. }
            | Self::Mismatch { part, .. }
            | Self::Duplicate { part, .. }
            | Self::OutOfRange { part, .. } => Some(*part),
            Self::Missing { .. } | Self::Empty => None,
        }
    }
}

/// The first field in which two contexts differ, named as in the shard file.
fn context_difference(a: &Context, b: &Context) -> Option<&'static str> {
    let fields = [
        ("the scenario name", a.scenario == b.scenario),
        ("the scenario file", a.file == b.file),
        ("the server OS", a.os == b.os && a.sharing == b.sharing),
        (
            "the method",
            a.method == b.method && a.method_reason == b.method_reason,
        ),
        ("the seed", a.seed == b.seed),
        ("the replications", a.replications == b.replications),
        ("the base port", a.base_port == b.base_port),
        (
            "the target blocking",
            a.target_blocking == b.target_blocking,
        ),
        ("the client range", a.allowed == b.allowed),
        ("the client groups", a.groups == b.groups),
        (
            "the sessions per transfer",
            a.sessions_per_transfer == b.sessions_per_transfer,
        ),
        ("the arrivals", a.replayed == b.replayed),
    ];
    fields.iter().find(|(_, same)| !same).map(|(what, _)| *what)
}

/// Checks that `parts` are slices of one run and together hold every replication once.
pub fn merge(parts: Vec<Part>) -> Result<(Context, Vec<ReplicationResult>), MergeError> {
    let first = parts.first().ok_or(MergeError::Empty)?;
    let (context, print) = (first.context.clone(), first.fingerprint.clone());
    let total = context.replications.min(MAX_REPLICATIONS);
    let mut seen = vec![false; total as usize];
    let mut results = Vec::new();
    for (i, part) in parts.into_iter().enumerate() {
        if part.format != PART_FORMAT {
            return Err(MergeError::Format {
                part: i,
                found: part.format,
            });
        }
        let what = fingerprint::first_difference(&print, &part.fingerprint)
            .or_else(|| context_difference(&context, &part.context));
        if let Some(what) = what {
            return Err(MergeError::Mismatch {
                part: i,
                what: what.to_string(),
            });
        }
        for result in part.results {
            let r = result.replication;
            let slot = seen.get_mut(r as usize).ok_or(MergeError::OutOfRange {
                part: i,
                replication: r,
                last: total.saturating_sub(1),
            })?;
            if std::mem::replace(slot, true) {
                return Err(MergeError::Duplicate {
                    part: i,
                    replication: r,
                });
            }
            results.push(result);
        }
    }
    let absent: Vec<String> = seen
        .iter()
        .enumerate()
        .filter(|(_, s)| !**s)
        .map(|(r, _)| r.to_string())
        .take(20)
        .collect();
    if !absent.is_empty() {
        return Err(MergeError::Missing {
            missing: absent.join(", "),
        });
    }
    Ok((context, results))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{Scenario, Stop};
    use crate::sim::{Options, simulate};

    /// A small run of `scenario` (3 replications of 2000 transfers) as one shard.
    fn shard_of(mut scenario: Scenario, shard: Shard) -> Part {
        scenario.workload.replications = 3;
        scenario.workload.stop = Stop::Sessions(2000);
        let options = Options {
            shard,
            ..Options::default()
        };
        let results = simulate(&scenario, options).unwrap();
        Part::new(
            fingerprint::fingerprint(&scenario),
            Context::of(&scenario),
            shard,
            results,
        )
    }

    fn scenarios() -> Vec<Scenario> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        files.iter().map(|f| Scenario::load(f).unwrap()).collect()
    }

    /// Every float of a shard (occupancy, port-seconds, per-port busy time) reads back to the
    /// same bits: what `merge` reads is what `simulate` computed.
    #[test]
    fn shard_files_round_trip_exactly() {
        let mut hard = seed_part();
        // Seventeen significant digits: serde_json's default parser misreads both by one ulp.
        hard.results[0].unconstrained.port_seconds = 971_986.371_854_762_9;
        hard.results[0].unconstrained.duration_s = 11_935.154_727_148_345;
        let parts = scenarios()
            .into_iter()
            .map(|scenario| shard_of(scenario, Shard::WHOLE));
        for part in std::iter::once(hard).chain(parts) {
            let text = serde_json::to_string(&part).unwrap();
            let read = parse(&text).unwrap();
            assert_eq!(read, part, "{}", part.context.scenario);
            assert_eq!(serde_json::to_string(&read).unwrap(), text);
        }
    }

    /// A change to a shard file's JSON.
    type Edit = fn(&mut serde_json::Value);

    fn seed_part() -> Part {
        shard_of(Scenario::seed_example(), Shard::WHOLE)
    }

    /// `part` as JSON, edited by `edit`, parsed again.
    fn edited(part: &Part, edit: impl Fn(&mut serde_json::Value)) -> Result<Part, PartError> {
        let mut value = serde_json::to_value(part).unwrap();
        edit(&mut value);
        parse(&value.to_string())
    }

    #[test]
    fn impossible_values_are_refused_with_their_path() {
        let part = seed_part();
        assert!(edited(&part, |_| {}).is_ok());
        let cases: [(&str, Edit); 9] = [
            ("results[0].unconstrained.groups: 0 groups", |v| {
                v["results"][0]["unconstrained"]["groups"] = serde_json::json!([]);
            }),
            (
                "results[1].unconstrained.failed: 99999999 is more than sessions",
                |v| {
                    v["results"][1]["unconstrained"]["failed"] = 99_999_999.into();
                },
            ),
            (
                "results[0].configured.duration_s: -1.0 is not a time",
                |v| {
                    v["results"][0]["configured"]["duration_s"] = (-1.0).into();
                },
            ),
            (
                "results[2].peak_port: 100 is below the base port 33001",
                |v| {
                    v["results"][2]["peak_port"] = 100.into();
                },
            ),
            ("results[0].curve: 0 range sizes", |v| {
                v["results"][0]["curve"] = serde_json::json!([]);
            }),
            ("context.replications: 4000000000 is not 1 to 100000", |v| {
                v["context"]["replications"] = 4_000_000_000u32.into();
            }),
            ("results[0].configured: missing", |v| {
                v["results"][0]["configured"] = serde_json::Value::Null;
            }),
            ("results[1].series: only replication 0", |v| {
                v["results"][1]["series"] = v["results"][0]["series"].clone();
            }),
            ("shard: 1/1 is not a shard", |v| {
                v["shard"]["index"] = 1.into();
            }),
        ];
        for (want, edit) in cases {
            let error = edited(&part, edit).unwrap_err().to_string();
            assert!(error.starts_with(want), "got {error}, want {want}");
        }
        let other = edited(&part, |v| v["format"] = "udprange-part/1".into()).unwrap_err();
        assert!(matches!(other, PartError::Format { .. }), "{other}");
        let json = parse("{\"format\": 3").unwrap_err().to_string();
        assert!(
            json.starts_with("1:12: not a udprange shard file"),
            "{json}"
        );
    }

    #[test]
    fn shards_of_other_runs_are_named() {
        let seed = Scenario::seed_example();
        let first = shard_of(seed.clone(), Shard { index: 0, count: 2 });
        let mut other = seed.clone();
        other.seed = 7;
        let second = shard_of(other, Shard { index: 1, count: 2 });
        let error = merge(vec![first.clone(), second]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "comes from a different run than the first part: the seed (seed, --seed) differs"
        );
        assert_eq!(error.part(), Some(1));
        let mut edited = seed.clone();
        edited.server.occupied.insert(33005);
        let second = shard_of(edited, Shard { index: 1, count: 2 });
        let error = merge(vec![first.clone(), second]).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("the scenario's [server] differs"),
            "{error}"
        );
        let second = shard_of(seed, Shard { index: 1, count: 2 });
        assert!(merge(vec![first, second]).is_ok());
    }
}
