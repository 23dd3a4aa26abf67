//! `simulate`, `check` and `merge`: scenario files in, summaries, verdicts and shard files out.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::args::{CheckArgs, MergeArgs, SimulateArgs};
use super::output::{self, OutputFile};
use super::{EXIT_FAILED, EXIT_OK, Outcome, UsageError};
use crate::check::verify;
use crate::limits;
use crate::report::{Export, Format, plot};
use crate::scenario::{Scenario, Stop};
use crate::sim::{self, Context, Options, Part, PartError, Progress, Shard, Summary};

/// Runs longer than this get a progress bar (when stderr is a terminal).
const PROGRESS_AFTER: Duration = Duration::from_secs(1);

/// A progress bar on stderr that appears only once a run has taken a second.
struct ProgressReport {
    bar: ProgressBar,
    started: Instant,
    shown: AtomicBool,
    enabled: bool,
}

impl ProgressReport {
    fn new(label: &str) -> Self {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
        bar.set_style(
            ProgressStyle::with_template(
                "{msg} [{bar:40}] {pos}/{len} runs, {elapsed} (eta {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_message(label.to_string());
        Self {
            bar,
            started: Instant::now(),
            shown: AtomicBool::new(false),
            enabled: std::io::stderr().is_terminal(),
        }
    }

    fn update(&self, progress: Progress) {
        if !self.enabled {
            return;
        }
        self.bar.set_length(progress.total);
        self.bar.set_position(progress.done);
        if self.started.elapsed() > PROGRESS_AFTER && !self.shown.swap(true, Ordering::Relaxed) {
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
        }
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

fn load(path: Option<&Path>) -> Result<Scenario, UsageError> {
    match path {
        Some(path) => Scenario::load(path).map_err(|e| UsageError(e.to_string())),
        None => Ok(Scenario::seed_example()),
    }
}

fn apply_overrides(scenario: &mut Scenario, args: &SimulateArgs) -> Result<(), UsageError> {
    if let Some(seed) = args.seed {
        scenario.seed = seed;
    }
    // Flag parsers hold these to the limits scenario keys have (crate::limits).
    if let Some(n) = args.replications {
        scenario.workload.replications = n;
    }
    if let Some(n) = args.sessions {
        scenario.workload.stop = Stop::Sessions(n);
    }
    if let Some(range) = args.allowed {
        if let Some(why) = scenario.server.unreachable(range) {
            return Err(UsageError::flag("--allowed", &range.to_string(), why));
        }
        scenario.client.allowed = Some(range);
    }
    if let Some(target) = args.target_blocking {
        scenario.target_blocking = target;
    }
    Ok(())
}

fn run_scenario(
    scenario: &Scenario,
    shard: Shard,
    threads: Option<usize>,
) -> Result<Vec<sim::ReplicationResult>, UsageError> {
    let progress = ProgressReport::new(&scenario.name);
    let report = |p: Progress| progress.update(p);
    let options = Options {
        shard,
        threads,
        progress: Some(&report),
    };
    let results =
        sim::simulate(scenario, options).map_err(|e| UsageError::flag("--threads", "", e));
    progress.finish();
    results
}

/// The summary in the chosen format, plus the plot file if asked for.
fn summary_outputs(
    summary: &Summary,
    format: Format,
    plot_path: Option<&Path>,
) -> Result<(String, Vec<OutputFile>), UsageError> {
    let mut files = Vec::new();
    if let Some(path) = plot_path {
        let svg = plot::svg(summary)
            .map_err(|e| UsageError(format!("--plot {}: {e}", path.display())))?;
        files.push(OutputFile {
            flag: "--plot",
            path: path.to_path_buf(),
            contents: svg.into_bytes(),
        });
    }
    Ok((summary.render(format), files))
}

pub(super) fn simulate(args: &SimulateArgs) -> Result<Outcome, UsageError> {
    let mut scenario = load(args.scenario.as_deref())?;
    apply_overrides(&mut scenario, args)?;
    let shard = args.shard.unwrap_or(Shard::WHOLE);
    if args.shard.is_some() && args.plot.is_some() {
        return Err(UsageError::flag(
            "--plot",
            "",
            "a shard holds part of the run: plot the merged result (udprange merge --plot)",
        ));
    }
    output::preflight(
        &[
            ("--out", args.out.as_deref()),
            ("--plot", args.plot.as_deref()),
        ]
        .into_iter()
        .chain(args.export.paths())
        .collect::<Vec<_>>(),
    )?;
    if args.shard.is_some()
        && (args.export.export_json.is_some() || args.export.export_csv.is_some())
    {
        return Err(UsageError::flag(
            "--shard",
            "",
            "a shard holds part of the run: export the merged result (udprange merge --export-json)",
        ));
    }
    let results = run_scenario(&scenario, shard, args.threads.threads)?;
    let context = Context::of(&scenario);
    let mut files = Vec::new();
    if let Some(path) = &args.out {
        let part = Part::new(
            sim::fingerprint(&scenario),
            context.clone(),
            shard,
            results.clone(),
        );
        let mut json = serde_json::to_string(&part).expect("parts serialize");
        json.push('\n');
        // What merge would refuse is not written.
        if json.len() as u64 > limits::MAX_SHARD_BYTES {
            return Err(UsageError::flag(
                "--out",
                &path.display().to_string(),
                format!(
                    "the shard would hold {} bytes, more than the {} merge reads: split the run into more --shard slices",
                    json.len(),
                    limits::size_text(limits::MAX_SHARD_BYTES)
                ),
            ));
        }
        files.push(OutputFile {
            flag: "--out",
            path: path.clone(),
            contents: json.into_bytes(),
        });
    }
    if args.shard.is_some() {
        let range = shard.replications(scenario.workload.replications);
        let stdout = format!(
            "shard {shard} of {}: replications {}..{} ({} of {}) written to {}\n",
            scenario.name,
            range.start,
            range.end,
            range.len(),
            scenario.workload.replications,
            args.out
                .as_deref()
                .map_or_else(String::new, |p| p.display().to_string())
        );
        return Ok(Outcome {
            stdout,
            files,
            code: EXIT_OK,
        });
    }
    let summary = sim::summarize(context, &results);
    let (stdout, plot) = summary_outputs(&summary, args.format, args.plot.as_deref())?;
    files.extend(plot);
    files.extend(args.export.files(&summary));
    Ok(Outcome {
        stdout,
        files,
        code: EXIT_OK,
    })
}

pub(super) fn merge(args: &MergeArgs) -> Result<Outcome, UsageError> {
    output::preflight(
        &std::iter::once(("--plot", args.plot.as_deref()))
            .chain(args.export.paths())
            .collect::<Vec<_>>(),
    )?;
    let mut parts = Vec::new();
    for path in &args.parts {
        let text = limits::read_text(path, limits::MAX_SHARD_BYTES, "shard")
            .map_err(|e| UsageError(format!("{}: {e}", path.display())))?;
        // A JSON error carries its own line and column: `part.json:1:7: not a …`.
        let part = sim::part::parse(&text).map_err(|e| match e {
            PartError::Json { .. } => UsageError(format!("{}:{e}", path.display())),
            _ => UsageError(format!("{}: {e}", path.display())),
        })?;
        parts.push(part);
    }
    let (context, results) = sim::merge(parts).map_err(|e| match e.part() {
        Some(i) => UsageError(format!("{}: {e}", args.parts[i].display())),
        None => UsageError(format!("merge: {e}")),
    })?;
    let summary = sim::summarize(context, &results);
    let (stdout, mut files) = summary_outputs(&summary, args.format, args.plot.as_deref())?;
    files.extend(args.export.files(&summary));
    Ok(Outcome {
        stdout,
        files,
        code: EXIT_OK,
    })
}

/// Scenario files named by `paths`: files as given, directories by their `*.toml`, sorted.
fn scenario_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, UsageError> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let entries = std::fs::read_dir(path)
                .map_err(|e| UsageError(format!("{}: cannot read: {e}", path.display())))?;
            let mut found: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect();
            found.sort();
            if found.is_empty() {
                return Err(UsageError(format!(
                    "{}: no scenario files (*.toml)",
                    path.display()
                )));
            }
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

pub(super) fn check(args: &CheckArgs) -> Result<Outcome, UsageError> {
    // Every file is read and validated before anything runs: bad input stops the whole check.
    let scenarios = scenario_files(&args.paths)?
        .iter()
        .map(|path| Scenario::load(path).map_err(|e| UsageError(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let mut stdout = String::new();
    let (mut passed, mut failed) = (0, 0);
    for scenario in &scenarios {
        let results = run_scenario(scenario, Shard::WHOLE, args.threads.threads)?;
        let summary = sim::summarize(Context::of(scenario), &results);
        let findings = verify(scenario, &summary);
        let ok = findings.iter().all(|f| f.pass);
        let details: Vec<String> = findings.iter().map(ToString::to_string).collect();
        let _ = writeln!(
            stdout,
            "{} {} ({}): {}",
            if ok { "PASS" } else { "FAIL" },
            scenario.name,
            scenario.file.display(),
            details.join(", ")
        );
        if ok {
            passed += 1;
        } else {
            failed += 1;
        }
    }
    let _ = writeln!(stdout, "{passed} passed, {failed} failed");
    Ok(Outcome {
        stdout,
        files: Vec::new(),
        code: if failed == 0 { EXIT_OK } else { EXIT_FAILED },
    })
}
