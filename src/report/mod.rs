//! Reports as text, JSON and CSV behind one trait, [`Export`]. Every exporter renders to a
//! `String` first, so a failure never leaves half a report on stdout.

pub mod blast;
mod plan;
pub mod plot;
mod simulate;

pub use plan::{LogReport, PlanReport, Stochastic, TableRow, UdpRange};

use std::str::FromStr;

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Text,
    Json,
    Csv,
}

impl Format {
    pub const NAMES: [&'static str; 3] = ["text", "json", "csv"];
}

impl FromStr for Format {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            "csv" => Ok(Self::Csv),
            _ => Err(format!("unknown format '{text}' (text, json, csv)")),
        }
    }
}

/// Who made a report, and when: the first three keys of every JSON report the command line
/// writes (`udprange_version`, `command_line`, `started_at`), one line each. Everything
/// after them is the result, the same byte for byte for the same inputs and seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    pub command_line: String,
    pub started_at: String,
}

thread_local! {
    static PROVENANCE: std::cell::RefCell<Option<Provenance>> = const { std::cell::RefCell::new(None) };
}

impl Provenance {
    /// This run's provenance: `args` as a shell would take them back, and now.
    pub fn of<S: AsRef<str>>(args: &[S]) -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Self {
            command_line: args
                .iter()
                .map(|a| shell_quoted(a.as_ref()))
                .collect::<Vec<_>>()
                .join(" "),
            started_at: crate::units::rfc3339(now as f64),
        }
    }

    /// Reports rendered on this thread from now on carry it (`None`: they carry none).
    pub fn install(provenance: Option<Provenance>) {
        PROVENANCE.with(|p| *p.borrow_mut() = provenance);
    }

    /// The provenance installed on this thread, if any.
    pub fn current() -> Option<Provenance> {
        PROVENANCE.with(|p| p.borrow().clone())
    }

    /// The three keys, for a JSON object built by hand (a line of JSON lines).
    pub fn insert_into(&self, object: &mut serde_json::Map<String, serde_json::Value>) {
        object.insert("udprange_version".into(), env!("CARGO_PKG_VERSION").into());
        object.insert("command_line".into(), self.command_line.clone().into());
        object.insert("started_at".into(), self.started_at.clone().into());
    }

    /// The three keys as JSON lines (two spaces in, a comma after each).
    fn json_lines(&self) -> String {
        let string = |s: &str| serde_json::to_string(s).expect("strings serialize");
        format!(
            "  \"udprange_version\": {},\n  \"command_line\": {},\n  \"started_at\": {},\n",
            string(env!("CARGO_PKG_VERSION")),
            string(&self.command_line),
            string(&self.started_at)
        )
    }
}

/// `text` as a POSIX shell reads it back: as is when it is plain, else single-quoted.
fn shell_quoted(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,%@+".contains(c));
    if plain {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// Puts the installed provenance's keys first in a pretty-printed JSON object.
pub fn with_provenance(json: String) -> String {
    PROVENANCE.with(|p| match (&*p.borrow(), json.strip_prefix("{\n")) {
        (Some(provenance), Some(rest)) => format!("{{\n{}{rest}", provenance.json_lines()),
        _ => json,
    })
}

/// A report that renders in every [`Format`].
pub trait Export: serde::Serialize {
    /// The readable report.
    fn text(&self) -> String;
    /// The table as CSV, header first.
    fn csv(&self) -> String;

    /// Exactly one JSON object, newline-terminated.
    fn json(&self) -> String {
        let mut text =
            with_provenance(serde_json::to_string_pretty(self).expect("reports serialize"));
        text.push('\n');
        text
    }

    fn render(&self, format: Format) -> String {
        match format {
            Format::Text => self.text(),
            Format::Json => self.json(),
            Format::Csv => self.csv(),
        }
    }
}
