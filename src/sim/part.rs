//! Shard files: the raw per-replication results of one slice of a run, and merging slices
//! back into exactly the result of one run.
//!
//! A shard file is one JSON object: a format tag, the scenario's [`Context`], the shard and
//! its [`ReplicationResult`]s. Floating-point values round-trip exactly through JSON, and
//! [`summarize`](super::summarize) sorts by replication, so the merged summary equals the
//! single-run summary byte for byte.

use serde::{Deserialize, Serialize};

use super::{Context, ReplicationResult, Shard};

/// The format tag; a file with another tag is refused.
pub const PART_FORMAT: &str = "udprange-part/1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Part {
    pub format: String,
    pub context: Context,
    pub shard: Shard,
    pub results: Vec<ReplicationResult>,
}

impl Part {
    pub fn new(context: Context, shard: Shard, results: Vec<ReplicationResult>) -> Self {
        Self {
            format: PART_FORMAT.to_string(),
            context,
            shard,
            results,
        }
    }
}

/// Why parts do not merge; `part` is the index of the part at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MergeError {
    #[error("not a udprange shard file (format '{found}', expected '{PART_FORMAT}')")]
    Format { part: usize, found: String },
    #[error("comes from a different scenario or settings than the first part ({what} differs)")]
    Mismatch { part: usize, what: &'static str },
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

/// Checks that `parts` are slices of one run and together hold every replication once.
pub fn merge(parts: Vec<Part>) -> Result<(Context, Vec<ReplicationResult>), MergeError> {
    let first = parts.first().ok_or(MergeError::Empty)?.context.clone();
    let total = first.replications;
    let mut seen = vec![false; total as usize];
    let mut results = Vec::new();
    for (i, part) in parts.into_iter().enumerate() {
        if part.format != PART_FORMAT {
            return Err(MergeError::Format {
                part: i,
                found: part.format,
            });
        }
        if part.context != first {
            let c = &part.context;
            let what = if c.scenario != first.scenario {
                "scenario name"
            } else if c.seed != first.seed {
                "seed"
            } else if c.replications != first.replications {
                "replications"
            } else {
                "settings"
            };
            return Err(MergeError::Mismatch { part: i, what });
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
    Ok((first, results))
}
