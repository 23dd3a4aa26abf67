//! Confidence intervals for blocking probabilities.
//!
//! A simulated blocking probability gets the **wider of two 95 % intervals**:
//! - Student's t over the replications' own ratios (catches variation between replications,
//!   which sessions within one replication, being correlated, hide);
//! - the Wilson score interval on the pooled counts (stays honest when few or no sessions
//!   failed, where the t-interval collapses to a point).
//!
//! Taking the union errs towards a wider range, which is the safe side for a firewall.

/// 0.975 quantile of Student's t for `df` degrees of freedom (exact table to 30, then the
/// Cornish–Fisher expansion, within 1e-4).
pub fn t_quantile_975(df: u64) -> f64 {
    const TABLE: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::INFINITY,
        1..=30 => TABLE[df as usize - 1],
        _ => {
            let z = Z_975;
            let n = df as f64;
            let z3 = z * z * z;
            let z5 = z3 * z * z;
            z + (z3 + z) / (4.0 * n) + (5.0 * z5 + 16.0 * z3 + 3.0 * z) / (96.0 * n * n)
        }
    }
}

/// 0.975 quantile of the standard normal.
pub const Z_975: f64 = 1.959_963_984_540_054;

/// Wilson score interval for `failed` of `trials` at 95 %; `[0, 1]` without trials.
pub fn wilson(failed: u64, trials: u64) -> [f64; 2] {
    if trials == 0 {
        return [0.0, 1.0];
    }
    let n = trials as f64;
    let p = failed as f64 / n;
    let z2 = Z_975 * Z_975;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = Z_975 / (1.0 + z2 / n) * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    // The bounds are exactly 0 and 1 at the extremes; rounding would leave crumbs.
    let lo = if failed == 0 {
        0.0
    } else {
        (centre - half).max(0.0)
    };
    let hi = if failed >= trials {
        1.0
    } else {
        (centre + half).min(1.0)
    };
    [lo, hi]
}

/// Student's t interval for the mean of `samples` at 95 %; `None` with fewer than two.
pub fn t_interval(samples: &[f64]) -> Option<[f64; 2]> {
    let n = samples.len();
    if n < 2 {
        return None;
    }
    let mean = samples.iter().sum::<f64>() / n as f64;
    let variance = samples.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    let half = t_quantile_975(n as u64 - 1) * (variance / n as f64).sqrt();
    Some([mean - half, mean + half])
}

/// A blocking estimate from per-replication `(trials, failed)` counts: the pooled ratio and
/// the union of the t and Wilson intervals (see the module docs), clamped to `[0, 1]`.
pub fn blocking_estimate(per_replication: &[(u64, u64)]) -> (f64, [f64; 2]) {
    let (trials, failed) = per_replication
        .iter()
        .fold((0, 0), |(t, f), &(rt, rf)| (t + rt, f + rf));
    let probability = if trials == 0 {
        0.0
    } else {
        failed as f64 / trials as f64
    };
    let ratios: Vec<f64> = per_replication
        .iter()
        .filter(|(t, _)| *t > 0)
        .map(|&(t, f)| f as f64 / t as f64)
        .collect();
    let [mut lo, mut hi] = wilson(failed, trials);
    if let Some([t_lo, t_hi]) = t_interval(&ratios) {
        lo = lo.min(t_lo);
        hi = hi.max(t_hi);
    }
    (probability, [lo.clamp(0.0, 1.0), hi.clamp(0.0, 1.0)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_quantiles_match_tables() {
        assert_eq!(t_quantile_975(1), 12.706);
        assert_eq!(t_quantile_975(9), 2.262);
        // Published: df 40 → 2.021, 60 → 2.000, 120 → 1.980.
        for (df, want) in [(40, 2.021), (60, 2.000), (120, 1.980)] {
            assert!((t_quantile_975(df) - want).abs() < 1e-3, "df {df}");
        }
        assert!((t_quantile_975(1_000_000) - Z_975).abs() < 1e-5);
    }

    #[test]
    fn wilson_matches_a_worked_example() {
        // 0 of 1000: upper bound ≈ 3.83 / 1000 (the "rule of three" is 3/1000).
        let [lo, hi] = wilson(0, 1000);
        assert_eq!(lo, 0.0);
        assert!((hi - 0.003_826).abs() < 1e-5, "{hi}");
        // 10 of 100: [0.0552, 0.1744].
        let [lo, hi] = wilson(10, 100);
        assert!(
            (lo - 0.0552).abs() < 1e-4 && (hi - 0.1744).abs() < 1e-4,
            "{lo} {hi}"
        );
    }

    #[test]
    fn estimate_covers_both_intervals() {
        let (p, [lo, hi]) = blocking_estimate(&[(1000, 10), (1000, 30)]);
        assert_eq!(p, 0.02);
        let t = t_interval(&[0.01, 0.03]).unwrap();
        let w = wilson(40, 2000);
        assert_eq!(lo, t[0].min(w[0]).max(0.0));
        assert_eq!(hi, t[1].max(w[1]));
        assert_eq!(blocking_estimate(&[]), (0.0, [0.0, 1.0]));
    }
}
