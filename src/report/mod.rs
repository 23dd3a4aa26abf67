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

/// A report that renders in every [`Format`].
pub trait Export: serde::Serialize {
    /// The readable report.
    fn text(&self) -> String;
    /// The table as CSV, header first.
    fn csv(&self) -> String;

    /// Exactly one JSON object, newline-terminated.
    fn json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("reports serialize");
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
