//! Regression checks: a scenario's `[expect]` against its simulated [`Summary`].

use std::fmt;

use crate::model::PortRange;
use crate::scenario::Scenario;
use crate::sim::Summary;

/// One expectation and what the simulation gave.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// The `[expect]` key.
    pub key: &'static str,
    pub expected: String,
    pub got: String,
    pub pass: bool,
}

/// `ports_needed 10` when it passes, `ports_needed 11 (expected 10)` when not.
impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.key, self.got)?;
        if !self.pass {
            write!(f, " (expected {})", self.expected)?;
        }
        Ok(())
    }
}

/// Compares every expectation the scenario sets. An empty `[expect]` gives one failing
/// finding: a regression file that checks nothing should not pass quietly.
pub fn verify(scenario: &Scenario, summary: &Summary) -> Vec<Finding> {
    let expect = &scenario.expect;
    let mut findings = Vec::new();
    let recommended = summary.recommended.as_ref();
    let shown = |v: Option<String>| v.unwrap_or_else(|| "none".to_string());
    if let Some(want) = expect.ports_needed {
        let got = recommended.map(|r| r.ports);
        findings.push(Finding {
            key: "ports_needed",
            expected: want.to_string(),
            got: shown(got.map(|n| n.to_string())),
            pass: got == Some(want),
        });
    }
    if let Some(want) = expect.range {
        let got = recommended
            .and_then(|r| PortRange::new(r.first, r.last).ok())
            .map(|r| r.to_string());
        findings.push(Finding {
            key: "range",
            expected: want.to_string(),
            got: shown(got),
            pass: recommended.is_some_and(|r| (r.first, r.last) == (want.first(), want.last())),
        });
    }
    if let Some(want) = expect.peak_port {
        let got = summary.peak_port.as_ref().map(|p| p.max);
        findings.push(Finding {
            key: "peak_port",
            expected: want.to_string(),
            got: shown(got.map(|p| p.to_string())),
            pass: got == Some(want),
        });
    }
    if let Some(want) = expect.max_blocking {
        let got = summary.configured.as_ref().map(|c| c.blocking);
        findings.push(Finding {
            key: "max_blocking",
            expected: format!("<= {want}"),
            got: shown(got.map(|b| format!("{b:.6}"))),
            pass: got.is_some_and(|b| b <= want),
        });
    }
    if findings.is_empty() {
        findings.push(Finding {
            key: "expect",
            expected: "at least one expectation".to_string(),
            got: "none".to_string(),
            pass: false,
        });
    }
    findings
}
