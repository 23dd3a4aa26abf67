//! From per-replication results to the answer: blocking per range size with confidence
//! intervals, the recommended range, peak ports, occupancy and counts.
//!
//! [`summarize`] is the only way to a [`Summary`], whether the replications ran here or in
//! shards merged later, so a merged result is the single-run result byte for byte.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::{Method, ReplicationResult, RunCounts};
use crate::model::{Port, PortRange};
use crate::scenario::{Arrivals, Scenario};
use crate::stats::blocking_estimate;

/// What a summary needs to know of its scenario; stored in shard files so that `merge`
/// needs nothing else.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Context {
    pub scenario: String,
    pub file: String,
    pub os: String,
    /// The sharing rule's code (`per-session`, `per-account`, `shared`) and in words.
    pub sharing: String,
    #[serde(default)]
    pub sharing_description: String,
    pub method: Method,
    pub method_reason: String,
    pub seed: u64,
    pub replications: u32,
    pub base_port: Port,
    pub target_blocking: f64,
    pub allowed: Option<PortRange>,
    pub groups: Vec<(String, PortRange)>,
    pub sessions_per_transfer: u32,
    /// A replayed trace: every replication is the same, so blocking is a count, not an
    /// estimate, and its interval is the point itself.
    pub replayed: bool,
    /// What reading the scenario's inputs left out (a transfer log's unusable lines).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub input_notes: Vec<String>,
}

impl Context {
    pub fn of(scenario: &Scenario) -> Self {
        let (method, reason) = Method::for_scenario(scenario);
        Self {
            scenario: scenario.name.clone(),
            file: scenario.file.display().to_string(),
            os: scenario.server.os.name().to_string(),
            sharing: scenario.rule().code().to_string(),
            sharing_description: scenario.rule().describe().to_string(),
            method,
            method_reason: reason.to_string(),
            seed: scenario.seed,
            replications: scenario.workload.replications,
            base_port: scenario.server.base_port,
            target_blocking: scenario.target_blocking.value(),
            allowed: scenario.client.allowed,
            groups: scenario
                .client
                .groups
                .iter()
                .map(|g| (g.name.clone(), g.allowed))
                .collect(),
            sessions_per_transfer: scenario.workload.sessions_per_transfer,
            replayed: matches!(scenario.workload.arrivals, Arrivals::Trace { .. }),
            input_notes: scenario.notes.clone(),
        }
    }
}

/// Ports held over simulated time: bin `i` covers `[i × bin_s, (i + 1) × bin_s)` seconds
/// from the start, and holds the time-weighted mean of ports held in it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Occupancy {
    pub bin_s: f64,
    /// When the last bin ends (the run's end, within the last bin).
    pub end_s: f64,
    pub mean_ports_held: Vec<f64>,
}

impl Occupancy {
    fn of(series: &crate::sim::OccupancySeries) -> Self {
        let points: Vec<(f64, f64)> = series.points().collect();
        let bin_s = match points.as_slice() {
            [(a, _), (b, _), ..] => b - a,
            _ => crate::sim::series::OccupancySeries::FIRST_WIDTH_S,
        };
        Self {
            bin_s,
            end_s: series.end_s(),
            mean_ports_held: points.into_iter().map(|(_, mean)| mean).collect(),
        }
    }

    /// `(bin start in seconds, mean ports held)`.
    pub fn points(&self) -> impl Iterator<Item = (f64, f64)> + '_ {
        self.mean_ports_held
            .iter()
            .enumerate()
            .map(|(i, &mean)| (i as f64 * self.bin_s, mean))
    }

    pub fn is_empty(&self) -> bool {
        self.mean_ports_held.is_empty()
    }
}

/// Blocking with `ports` ports from the base.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct BlockingPoint {
    pub ports: u64,
    pub range: PortRange,
    /// The blocking probability with this many ports (`blocking`, as `plan`'s table says).
    #[serde(rename = "blocking")]
    pub probability: f64,
    pub ci95: [f64; 2],
    pub sessions: u64,
    pub failed: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Recommended {
    pub first: Port,
    pub last: Port,
    pub ports: u64,
}

/// Peak port per replication, as percentiles of an HDR histogram.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PeakPort {
    pub p50: Port,
    pub p99: Port,
    pub p99_9: Port,
    pub max: Port,
}

/// How busy one port was: the share of simulated time some key held it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PortUse {
    pub port: Port,
    pub utilisation: f64,
}

/// Session counts, summed over replications.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Counts {
    pub sessions: u64,
    pub ok: u64,
    pub failed: u64,
    /// Attempts the client firewall dropped.
    pub blocked: u64,
    /// Attempts the server refused (no free port up to its cap).
    pub refused: u64,
    pub retried: u64,
    /// Transfers started, and those with at least one failed session.
    pub transfers: u64,
    pub transfers_failed: u64,
}

/// One client group in the as-configured run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct GroupResult {
    pub name: String,
    pub allowed: Option<PortRange>,
    pub sessions: u64,
    pub failed: u64,
    pub blocking: f64,
    pub ci95: [f64; 2],
}

/// The scenario's own client ranges.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Configured {
    /// Blocking of the clients on `[client].allowed` (the default group).
    pub blocking: f64,
    pub ci95: [f64; 2],
    pub groups: Vec<GroupResult>,
}

/// The answer of `udprange simulate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Summary {
    #[serde(flatten)]
    pub context: Context,
    /// Sessions simulated (unconstrained runs, all replications); in JSON as
    /// `counts.sessions` (a session list is what `sessions` means elsewhere).
    #[serde(skip)]
    pub sessions: u64,
    pub blocking: Vec<BlockingPoint>,
    /// The range to open (`udp_range`, as in `plan` and `blast`'s verdict).
    #[serde(rename = "udp_range")]
    pub recommended: Option<Recommended>,
    /// Why there is no recommendation, when there is none.
    pub note: Option<String>,
    pub peak_port: Option<PeakPort>,
    /// Mean ports held at once, time-weighted.
    pub mean_ports_held: f64,
    pub port_use: Vec<PortUse>,
    /// Of the as-configured run (the unconstrained one when the scenario sets no range).
    pub counts: Counts,
    pub configured: Option<Configured>,
    /// Mean ports held over replication 0, in bins of equal width.
    pub occupancy: Occupancy,
}

fn estimate(
    context: &Context,
    per_replication: impl Iterator<Item = (u64, u64)>,
) -> (f64, [f64; 2]) {
    let counts: Vec<(u64, u64)> = per_replication.collect();
    let (p, ci) = blocking_estimate(&counts);
    if context.replayed {
        (p, [p, p])
    } else {
        (p, ci)
    }
}

/// Combines replication results (any order, each replication once) into the answer.
pub fn summarize(context: Context, results: &[ReplicationResult]) -> Summary {
    let mut results: Vec<&ReplicationResult> = results.iter().collect();
    results.sort_by_key(|r| r.replication);
    let base = context.base_port;
    let slots = |port: Port| {
        if port == 0 {
            0
        } else {
            usize::from(port - base) + 1
        }
    };
    let max_slots = results
        .iter()
        .map(|r| slots(r.peak_port))
        .max()
        .unwrap_or(0);

    let blocking: Vec<BlockingPoint> = (1..=max_slots)
        .filter_map(|n| {
            let range = PortRange::from_count(base, n as u64).ok()?;
            let tallies: Vec<_> = results.iter().map(|r| r.with_ports(n)).collect();
            let (probability, ci95) =
                estimate(&context, tallies.iter().map(|t| (t.sessions, t.failed)));
            Some(BlockingPoint {
                ports: n as u64,
                range,
                probability,
                ci95,
                sessions: tallies.iter().map(|t| t.sessions).sum(),
                failed: tallies.iter().map(|t| t.failed).sum(),
            })
        })
        .collect();
    let target = context.target_blocking;
    let recommended = blocking
        .iter()
        .find(|p| p.ci95[1] <= target)
        .map(|p| Recommended {
            first: p.range.first(),
            last: p.range.last(),
            ports: p.ports,
        });
    let note = match (&recommended, blocking.last()) {
        (Some(_), _) => None,
        (None, None) => Some("no session got a port: nothing to size".to_string()),
        (None, Some(widest)) if widest.probability > target => Some(format!(
            "even with every port the server hands out ({}), {:.4} of sessions fail: the server refuses them (a cap or occupied ports) or they retry into a full server; no client range reaches {target}",
            widest.range, widest.probability
        )),
        (None, Some(widest)) => Some(format!(
            "not enough sessions to show blocking <= {target} with 95% confidence (upper bound {:.2e} at {}); simulate at least {:.0} sessions",
            widest.ci95[1],
            widest.range,
            4.0 / target
        )),
    };

    let peak_port = peak_percentiles(&results);
    // The as-configured run where there is one, else the unconstrained one; borrowed, not copied.
    let runs: Vec<&RunCounts> = results
        .iter()
        .map(|r| r.configured.as_ref().unwrap_or(&r.unconstrained))
        .collect();
    let total_time: f64 = runs.iter().map(|r| r.duration_s).sum();
    let mean_ports_held = if total_time > 0.0 {
        runs.iter().map(|r| r.port_seconds).sum::<f64>() / total_time
    } else {
        0.0
    };
    let busy_slots = runs.iter().map(|r| r.slot_busy.len()).max().unwrap_or(0);
    let port_use = (0..busy_slots)
        .map(|slot| PortUse {
            port: base.saturating_add(slot as Port),
            utilisation: if total_time > 0.0 {
                runs.iter()
                    .filter_map(|r| r.slot_busy.get(slot))
                    .sum::<f64>()
                    / total_time
            } else {
                0.0
            },
        })
        .collect();
    let counts = runs.iter().fold(Counts::default(), |mut c, r| {
        c.sessions += r.sessions;
        c.failed += r.failed;
        c.ok += r.sessions - r.failed;
        c.blocked += r.blocked;
        c.refused += r.refused;
        c.retried += r.retried;
        c.transfers += r.transfers;
        c.transfers_failed += r.transfers_failed;
        c
    });
    let configured = results
        .first()
        .and_then(|r| r.configured.as_ref())
        .map(|_| {
            let group = |g: usize| {
                estimate(
                    &context,
                    results
                        .iter()
                        .filter_map(|r| r.configured.as_ref())
                        .map(|c| c.groups.get(g).map_or((0, 0), |t| (t.sessions, t.failed))),
                )
            };
            let (blocking, ci95) = group(0);
            let names = std::iter::once(("default".to_string(), context.allowed))
                .chain(context.groups.iter().map(|(n, r)| (n.clone(), Some(*r))));
            let groups = names
                .enumerate()
                .map(|(g, (name, allowed))| {
                    let (blocking, ci95) = group(g);
                    let sum = |f: fn(&crate::sim::Tally) -> u64| -> u64 {
                        runs.iter().filter_map(|r| r.groups.get(g)).map(f).sum()
                    };
                    GroupResult {
                        name,
                        allowed,
                        sessions: sum(|t| t.sessions),
                        failed: sum(|t| t.failed),
                        blocking,
                        ci95,
                    }
                })
                .collect();
            Configured {
                blocking,
                ci95,
                groups,
            }
        });
    let occupancy = results
        .first()
        .filter(|r| r.replication == 0)
        .and_then(|r| r.series.as_ref())
        .map(Occupancy::of)
        .unwrap_or_default();
    Summary {
        sessions: results.iter().map(|r| r.unconstrained.sessions).sum(),
        context,
        blocking,
        recommended,
        note,
        peak_port,
        mean_ports_held,
        port_use,
        counts,
        configured,
        occupancy,
    }
}

fn peak_percentiles(results: &[&ReplicationResult]) -> Option<PeakPort> {
    // Five significant figures keep every port number exact.
    let mut histogram = Histogram::<u64>::new_with_bounds(1, u64::from(Port::MAX), 5).ok()?;
    for r in results.iter().filter(|r| r.peak_port > 0) {
        histogram.record(u64::from(r.peak_port)).ok()?;
    }
    if histogram.is_empty() {
        return None;
    }
    let at = |q: f64| histogram.value_at_quantile(q) as Port;
    Some(PeakPort {
        p50: at(0.5),
        p99: at(0.99),
        p99_9: at(0.999),
        max: histogram.max() as Port,
    })
}
