//! Scenario files: TOML → a validated [`Scenario`] (format documented in `scenarios/README.md`).
//!
//! Reading happens in two steps. Serde reads the text into `raw` structs that mirror the file
//! (unknown keys are errors, unit strings parse into unit types, every value keeps its
//! position); `raw::validate` then checks what a single key cannot say alone (a cap below
//! the base port, `closed` without `concurrent`, a lognormal without `sd`…). Every error is one
//! [`ScenarioError`] naming the file, line, column and key path:
//!
//! ```text
//! scenarios/busy.toml:12:8: workload.rate: '10/x' is not a rate (examples: 120/h, 2/s, 10/min)
//! ```
//!
//! ```
//! use udprange::scenario::Scenario;
//! let text = r#"
//! name = "seed-windows-10"
//! [server]
//! os = "windows"
//! [workload]
//! arrivals = "closed"
//! concurrent = 10
//! holding = { dist = "exponential", mean = "10m" }
//! sessions = 1000
//! "#;
//! let scenario = Scenario::parse(text, "seed.toml".as_ref()).unwrap();
//! assert_eq!(scenario.server.base_port, 33001);
//! ```

mod raw;
mod trace;
pub mod translog;

use std::fmt;
use std::path::{Path, PathBuf};

use crate::model::{Port, PortRange, SharingRule};
use crate::units::Probability;

pub use crate::workload::spec::{
    Arrivals, ClientGroup, Holding, Policy, Retry, Start, Stop, TraceRecord, Traffic, TransferSize,
    Workload,
};

/// The embedded default: the seed's example (windows, 10 concurrent transfers).
pub const SEED_EXAMPLE: &str = include_str!("../../scenarios/seed-windows-10.toml");
/// The name the embedded default reports as its file.
pub const SEED_EXAMPLE_PATH: &str = "scenarios/seed-windows-10.toml";

/// One error in a scenario file: where it is, which key, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ScenarioError {
    pub file: PathBuf,
    /// 1-based line and column; 0 when the error has no position (the file is unreadable).
    pub line: usize,
    pub column: usize,
    /// Dotted key path such as `workload.holding.mean`; empty for a syntax error.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// A scenario's `[server]`: the one description of a server ([`crate::model::Server`]).
pub use crate::model::Server as ServerConfig;

/// The clients: the range under test, and groups with ranges of their own.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClientConfig {
    /// Outbound UDP range of the clients not in a group; `None` = everything allowed.
    pub allowed: Option<PortRange>,
    pub groups: Vec<ClientGroup>,
}

/// What `udprange check` compares.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Expect {
    /// Ports in the recommended range at `[plan].target_blocking`.
    pub ports_needed: Option<u64>,
    /// Blocking at `[client].allowed` is at most this.
    pub max_blocking: Option<f64>,
    /// The recommended range, exactly.
    pub range: Option<PortRange>,
    /// The highest port any replication used.
    pub peak_port: Option<Port>,
}

impl Expect {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// A validated scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub name: String,
    pub description: Option<String>,
    pub seed: u64,
    pub server: ServerConfig,
    pub client: ClientConfig,
    pub workload: Workload,
    pub expect: Expect,
    pub traffic: Traffic,
    pub target_blocking: Probability,
    /// The file it was read from, as given.
    pub file: PathBuf,
    /// What reading it noticed and left out (a transfer log's unusable lines).
    pub notes: Vec<String>,
}

impl Scenario {
    /// Reads (at most [`crate::limits::MAX_SCENARIO_BYTES`]) and validates a scenario file.
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let text = crate::limits::read_text(path, crate::limits::MAX_SCENARIO_BYTES, "scenario")
            .map_err(|e| ScenarioError {
                file: path.to_path_buf(),
                line: 0,
                column: 0,
                key: String::new(),
                message: e.to_string(),
            })?;
        Self::parse(&text, path)
    }

    /// The embedded seed example.
    pub fn seed_example() -> Self {
        Self::parse(SEED_EXAMPLE, SEED_EXAMPLE_PATH.as_ref())
            .expect("the embedded seed example is valid (tested)")
    }

    /// Validates `text`, read from `file` (used in errors and to find a trace file).
    pub fn parse(text: &str, file: &Path) -> Result<Self, ScenarioError> {
        let at = raw::Locator::new(text, file);
        let raw = raw::read(text, &at)?;
        raw::validate(raw, &at)
    }

    pub fn rule(&self) -> SharingRule {
        self.server.rule()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ServerOs;

    fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        Scenario::parse(text, Path::new("t.toml"))
    }

    const MINIMAL: &str = "name = \"t\"\n[server]\nos = \"windows\"\n[workload]\narrivals = \"poisson\"\nrate = \"10/s\"\nholding = { dist = \"exponential\", mean = \"1s\" }\nsessions = 1000\n";

    #[test]
    fn minimal_scenario_takes_defaults() {
        let s = parse(MINIMAL).unwrap();
        assert_eq!(s.server.base_port, 33001);
        assert_eq!(s.server.max_port, 65535);
        assert_eq!(s.workload.replications, 10);
        assert_eq!(s.workload.accounts, 1);
        assert_eq!(s.workload.handshake_timeout.as_secs_f64(), 20.0);
        assert_eq!(s.target_blocking.value(), 0.001);
        assert_eq!(s.seed, 1);
        assert!(s.expect.is_empty());
    }

    #[test]
    fn seed_example_is_valid() {
        let s = Scenario::seed_example();
        assert_eq!(s.server.os, ServerOs::Windows);
        assert_eq!(
            s.workload.arrivals,
            Arrivals::Closed {
                concurrent: 10,
                think: None
            }
        );
    }

    fn error(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_file_line_column_and_key() {
        let bad_unit = MINIMAL.replace("\"10/s\"", "\"10/x\"");
        assert_eq!(
            error(&bad_unit),
            "t.toml:6:8: workload.rate: '10/x' is not a rate (examples: 120/h, 2/s, 10/min)"
        );
        let unknown = MINIMAL.replace("sessions", "sesions");
        let e = error(&unknown);
        assert!(
            e.starts_with("t.toml:8:1: workload.sesions: unknown field `sesions`"),
            "{e}"
        );
        let syntax = MINIMAL.replace("[workload]", "[workload");
        assert!(
            error(&syntax).starts_with("t.toml:4:10: "),
            "{}",
            error(&syntax)
        );
        let negative = MINIMAL.replace("sessions = 1000", "sessions = -5");
        assert!(
            error(&negative).starts_with("t.toml:8:12: workload.sessions: "),
            "{}",
            error(&negative)
        );
    }

    #[test]
    fn cross_key_checks_point_at_the_key() {
        let cap = MINIMAL.replace("os = \"windows\"", "os = \"windows\"\nmax_port = 33000");
        assert_eq!(
            error(&cap),
            "t.toml:4:12: server.max_port: 33000 is below base_port 33001"
        );
        let closed = MINIMAL
            .replace("arrivals = \"poisson\"", "arrivals = \"closed\"")
            .replace("rate = \"10/s\"\n", "");
        assert!(
            error(&closed).contains("workload.arrivals: closed arrivals need `concurrent`"),
            "{}",
            error(&closed)
        );
        let lognormal = MINIMAL.replace("\"exponential\"", "\"lognormal\"");
        assert!(
            error(&lognormal).contains("workload.holding.sd: lognormal holding needs `sd`"),
            "{}",
            error(&lognormal)
        );
        let zero = MINIMAL.replace("\"10/s\"", "\"0/s\"");
        assert!(error(&zero).contains("workload.rate: must be above 0"));
        let macos = MINIMAL.replace("windows", "macos");
        assert!(
            error(&macos).contains("workload.accounts: "),
            "{}",
            error(&macos)
        );
        let allowed = MINIMAL.replace(
            "[workload]",
            "[client]\nallowed = \"33001-32000\"\n[workload]",
        );
        assert!(
            error(&allowed)
                .starts_with("t.toml:5:11: client.allowed: range 33001-32000 is reversed")
        );
        let endless = MINIMAL
            .replace("sessions = 1000", "horizon = \"3000d\"")
            .replace("10/s", "1000/s");
        assert!(
            error(&endless).contains("workload.horizon: about 2.6e11 sessions per replication"),
            "{}",
            error(&endless)
        );
        let both = MINIMAL.replace("sessions = 1000", "sessions = 1000\nhorizon = \"1h\"");
        assert!(error(&both).contains("give `sessions` or `horizon`, not both"));
    }

    /// Values past a limit of `crate::limits` name the key, as any other error.
    #[test]
    fn limits_point_at_the_key() {
        let ten_years = "must be at most 87600h (10 years of simulated time)";
        for (from, to, want) in [
            (
                "mean = \"1s\"",
                "mean = \"1753200h\"",
                format!("t.toml:7:42: workload.holding.mean: {ten_years}"),
            ),
            (
                "mean = \"1s\"",
                "mean = \"0.1ns\"",
                "workload.holding.mean: must be at least 1ns".to_string(),
            ),
            (
                "os = \"windows\"",
                "os = \"windows\"\nlinger = \"1e17h\"",
                format!("t.toml:4:10: server.linger: {ten_years}"),
            ),
            (
                "sessions = 1000",
                "sessions = 1000\nwarmup = \"1e9h\"",
                format!("workload.warmup: {ten_years}"),
            ),
            (
                "rate = \"10/s\"",
                "rate = \"100/s\"\nwarmup = \"87600h\"",
                "workload.warmup: about 3.2e10 sessions during the warm-up".to_string(),
            ),
            (
                "sessions = 1000",
                "sessions = 1000\nhandshake_timeout = \"1e9s\"",
                "t.toml:9:21: workload.handshake_timeout: must be at most 600s".to_string(),
            ),
            (
                "sessions = 1000",
                "sessions = 1000\nretry = { attempts = 2, backoff = \"1e6h\" }",
                format!("workload.retry.backoff: {ten_years}"),
            ),
            (
                "\"10/s\"",
                "\"1e-300/s\"",
                "workload.rate: must be at least one per 87600h".to_string(),
            ),
            (
                "\"10/s\"",
                "\"1e10/s\"",
                "workload.rate: must be at most 1e9/s".to_string(),
            ),
            (
                "sessions = 1000",
                "sessions = 1000\n[traffic]\nrate = \"1e3Gbps\"",
                "t.toml:10:8: traffic.rate: must be at most 100Gbps".to_string(),
            ),
            (
                "sessions = 1000",
                "sessions = 1000\n[traffic]\nduration = \"1e9s\"",
                "traffic.duration: must be above 0 and at most 600s".to_string(),
            ),
        ] {
            let text = MINIMAL.replace(from, to);
            let e = error(&text);
            assert!(e.contains(&want), "{to}: got {e}, want {want}");
        }
        let profile = MINIMAL.replace("\"poisson\"", "\"profile\"").replace(
            "rate = \"10/s\"",
            "profile = { step = \"1ns\", rates = [\"1/s\", \"1e-300/s\"] }",
        );
        assert!(
            error(&profile).contains("workload.profile.rates[1]: must be at least one per"),
            "{}",
            error(&profile)
        );
    }

    #[test]
    fn unreadable_and_oversized_files_are_named() {
        let dir = std::env::temp_dir().join(format!("udprange-scenario-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let big = dir.join("big.toml");
        let file = std::fs::File::create(&big).unwrap();
        // Sparse: two gigabytes that take no disk and must take no memory either.
        file.set_len(2 << 30).unwrap();
        let e = Scenario::load(&big).unwrap_err().to_string();
        assert!(
            e.starts_with(&big.display().to_string())
                && e.ends_with(": larger than 1 MiB, the most a scenario file may hold"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
