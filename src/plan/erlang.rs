//! Loss formulas for random load: Erlang-B, Engset, and the per-account analogue for BSD
//! servers. Each model gives its **blocking curve** `B(0), B(1), B(2), …` — the probability a
//! new transfer is blocked with `n` ports — computed by a recurrence that costs O(1) per port,
//! never overflows and never produces NaN: every step has the form `B = 1 / (1 + n / x)`,
//! which is 0 for `x = 0` and 1 for `x = ∞`. One general inverse ([`LossModel::ports_for`])
//! walks the curve to the first `n` with `B(n) <= target`.
//!
//! # The models
//! - **Erlang-B** `B(n, A)`: Poisson arrivals, offered load `A` Erlang (arrival rate × mean
//!   duration), blocked transfers lost. Insensitive to the holding-time distribution.
//!   Recurrence `B(n) = A·B(n−1) / (n + A·B(n−1))`, `B(0) = 1`.
//! - **Engset** (finite population of `M` clients): each client alternates idle
//!   (exponential) and transferring (any distribution). Offered load per client
//!   `α = A / M` is the share of time a client would transfer if never blocked (Iversen,
//!   *Teletraffic Engineering*, ch. 8), so the intensity of an idle client is `β = α / (1 − α)`
//!   and needs `A < M`. The blocking a transfer sees is the call congestion, the time
//!   congestion of `M − 1` clients: `E(n) = (M−n+1)β·E(n−1) / (n + (M−n+1)β·E(n−1))`.
//! - **Per account** (macOS, FreeBSD): a port is held by an *account* while any of its
//!   sessions is active. With Poisson arrivals spread evenly over `K` accounts, each account
//!   is an M/G/∞ queue of load `a = A / K`: idle periods are exponential and busy periods have
//!   mean `(eᵃ − 1) / λₖ`, so an account is an Engset source with `β = eᵃ − 1`. Engset is
//!   insensitive to the busy-period distribution, so with `p(n)` the Engset time congestion of
//!   `K` accounts, a session is blocked only when it arrives for an idle account while all `n`
//!   ports are held: `B(n) = p(n) · (K − n) / K`. The approximation is in the inputs: every
//!   account equally busy, and a blocked session does not make its account come back sooner.
//! - **Shared port** (linux with port reuse): one port carries everything; `B(n ≥ 1) = 0`.
//!
//! A multi-session transfer of `k` sessions needs `k` ports on a per-session server; it is
//! modelled as all-or-nothing, so `B(n)` with `k` ports per transfer is `B(⌊n / k⌋)` of the
//! underlying model.
//!
//! ```
//! use udprange::plan::erlang::{erlang_b, LossModel};
//! assert!((erlang_b(10, 10.0) - 0.214_582).abs() < 1e-6);
//! let model = LossModel::erlang_b(10.0);
//! assert_eq!(model.ports_for(0.001, 65_535), Some(21)); // 10 Erlang at 0.1 % blocking
//! ```

/// Erlang-B blocking with `n` servers and offered load `load` (Erlang, finite, >= 0).
pub fn erlang_b(n: u64, load: f64) -> f64 {
    LossModel::erlang_b(load).blocking(n)
}

/// Engset time congestion over `sources` sources of idle intensity `beta`, as a curve over n.
fn engset_time_congestion(sources: u64, beta: f64) -> impl Iterator<Item = f64> {
    let mut e = 1.0_f64;
    (0..).map(move |n: u64| {
        if n > 0 {
            e = if n > sources {
                0.0
            } else {
                step((sources - n + 1) as f64 * beta * e, n)
            };
        }
        e
    })
}

/// `x / (n + x)` written as `1 / (1 + n / x)`, exact at `x = 0` and `x = ∞`.
fn step(x: f64, n: u64) -> f64 {
    1.0 / (1.0 + n as f64 / x)
}

/// A loss model of how port demand arrives; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LossModel {
    /// Poisson arrivals, offered load in Erlang.
    ErlangB { load: f64 },
    /// `sources` clients offering `load` Erlang in total (`load < sources`).
    Engset { sources: u64, load: f64 },
    /// Poisson arrivals of `load` Erlang spread over `accounts` accounts sharing per account.
    PerAccount { accounts: u64, load: f64 },
    /// Everything shares one port.
    SharedPort,
    /// Each unit of demand takes `ports_per_transfer` ports of `inner` at once.
    MultiSession {
        inner: SingleSession,
        ports_per_transfer: u64,
    },
}

/// The models a multi-session transfer can wrap.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SingleSession {
    ErlangB { load: f64 },
    Engset { sources: u64, load: f64 },
}

impl LossModel {
    pub fn erlang_b(load: f64) -> Self {
        Self::ErlangB { load }
    }

    /// The blocking curve `B(0), B(1), …`, one value per number of ports.
    pub fn curve(&self) -> Box<dyn Iterator<Item = f64>> {
        match *self {
            Self::ErlangB { load } => Box::new(erlang_b_curve(load)),
            Self::Engset { sources, load } => Box::new(engset_call_congestion(sources, load)),
            Self::PerAccount { accounts, load } => {
                let accounts = accounts.max(1);
                let beta = (load / accounts as f64).exp_m1();
                let share_idle = move |n: u64| accounts.saturating_sub(n) as f64 / accounts as f64;
                Box::new(
                    engset_time_congestion(accounts, beta)
                        .zip(0..)
                        .map(move |(p, n)| p * share_idle(n)),
                )
            }
            Self::SharedPort => Box::new(std::iter::once(1.0).chain(std::iter::repeat(0.0))),
            Self::MultiSession {
                inner,
                ports_per_transfer,
            } => {
                let inner = Self::from(inner);
                let k = ports_per_transfer.max(1) as usize;
                Box::new(inner.curve().flat_map(move |b| std::iter::repeat_n(b, k)))
            }
        }
    }

    /// Blocking probability with `ports` ports.
    pub fn blocking(&self, ports: u64) -> f64 {
        self.curve()
            .nth(usize::try_from(ports).unwrap_or(usize::MAX))
            .unwrap_or(0.0)
    }

    /// The smallest number of ports, at most `max_ports`, whose blocking is at most `target`;
    /// `None` when even `max_ports` ports block more (or the inputs are not numbers).
    pub fn ports_for(&self, target: f64, max_ports: u64) -> Option<u64> {
        let steps = usize::try_from(max_ports)
            .unwrap_or(usize::MAX)
            .saturating_add(1);
        self.curve()
            .take(steps)
            .position(|b| b <= target)
            .map(|n| n as u64)
    }

    /// `(ports, blocking)` for `ports` in `range`, in one pass over the curve.
    pub fn table(&self, range: std::ops::RangeInclusive<u64>) -> Vec<(u64, f64)> {
        let (first, last) = (*range.start(), *range.end());
        self.curve()
            .zip(0u64..)
            .skip_while(|&(_, n)| n < first)
            .take_while(|&(_, n)| n <= last)
            .map(|(b, n)| (n, b))
            .collect()
    }
}

impl From<SingleSession> for LossModel {
    fn from(single: SingleSession) -> Self {
        match single {
            SingleSession::ErlangB { load } => Self::ErlangB { load },
            SingleSession::Engset { sources, load } => Self::Engset { sources, load },
        }
    }
}

impl std::fmt::Display for LossModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ErlangB { .. } => f.write_str("erlang-b"),
            Self::Engset { .. } => f.write_str("engset"),
            Self::PerAccount { .. } => f.write_str("per-account engset"),
            Self::SharedPort => f.write_str("shared port"),
            Self::MultiSession {
                inner,
                ports_per_transfer,
            } => {
                let inner = match inner {
                    SingleSession::ErlangB { .. } => "erlang-b",
                    SingleSession::Engset { .. } => "engset",
                };
                write!(f, "{inner}, {ports_per_transfer} ports per transfer")
            }
        }
    }
}

fn erlang_b_curve(load: f64) -> impl Iterator<Item = f64> {
    let mut b = 1.0_f64;
    (0..).map(move |n: u64| {
        if n > 0 {
            b = step(load * b, n);
        }
        b
    })
}

fn engset_call_congestion(sources: u64, load: f64) -> impl Iterator<Item = f64> {
    let alpha = load / sources as f64;
    let beta = alpha / (1.0 - alpha);
    // Call congestion = time congestion seen by the other M − 1 clients.
    engset_time_congestion(sources.saturating_sub(1), beta)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// B(n, A) = (A^n / n!) / Σ_{k<=n} A^k / k!, summed directly (small n only).
    fn erlang_b_by_sum(n: u64, load: f64) -> f64 {
        let mut term = 1.0;
        let mut sum = 1.0;
        for k in 1..=n {
            term *= load / k as f64;
            sum += term;
        }
        term / sum
    }

    fn binomial(n: u64, k: u64) -> f64 {
        (0..k).fold(1.0, |acc, i| acc * (n - i) as f64 / (i + 1) as f64)
    }

    #[test]
    fn erlang_b_matches_the_definition() {
        for n in 0..60 {
            for load in [0.0, 0.1, 1.0, 7.5, 10.0, 42.0] {
                let want = erlang_b_by_sum(n, load);
                let got = erlang_b(n, load);
                assert!(
                    (got - want).abs() <= 1e-12 * want.max(1e-300),
                    "B({n},{load})"
                );
            }
        }
    }

    #[test]
    fn engset_matches_the_definition() {
        // Call congestion = C(M-1,n) β^n / Σ_{j<=n} C(M-1,j) β^j.
        for (sources, load) in [(5u64, 2.0), (20, 10.0), (12, 0.5)] {
            let beta = (load / sources as f64) / (1.0 - load / sources as f64);
            let model = LossModel::Engset { sources, load };
            for n in 0..=sources + 2 {
                let term = |j: u64| binomial(sources - 1, j) * beta.powi(j as i32);
                let want = if n >= sources {
                    0.0
                } else {
                    term(n) / (0..=n).map(term).sum::<f64>()
                };
                let got = model.blocking(n);
                assert!((got - want).abs() < 1e-12, "M={sources} A={load} n={n}");
            }
        }
    }

    #[test]
    fn engset_tends_to_erlang_b() {
        let engset = LossModel::Engset {
            sources: 1_000_000,
            load: 10.0,
        };
        assert!((engset.blocking(15) - erlang_b(15, 10.0)).abs() < 1e-5);
    }

    #[test]
    fn per_account_limits() {
        // Many lightly loaded accounts behave like one port per session.
        let many = LossModel::PerAccount {
            accounts: 10_000_000,
            load: 10.0,
        };
        assert!((many.blocking(15) - erlang_b(15, 10.0)).abs() < 1e-5);
        // Never more ports than accounts.
        let few = LossModel::PerAccount {
            accounts: 3,
            load: 50.0,
        };
        assert_eq!(few.ports_for(1e-9, 100), Some(3));
        // Accounts so busy that e^a overflows: still finite.
        let saturated = LossModel::PerAccount {
            accounts: 2,
            load: 1e6,
        };
        assert_eq!(saturated.blocking(1), 0.5);
        assert_eq!(saturated.blocking(2), 0.0);
    }

    #[test]
    fn shared_port_needs_one() {
        assert_eq!(LossModel::SharedPort.ports_for(1e-6, 10), Some(1));
        assert_eq!(LossModel::SharedPort.blocking(0), 1.0);
    }

    #[test]
    fn multi_session_takes_whole_transfers() {
        let model = LossModel::MultiSession {
            inner: SingleSession::ErlangB { load: 10.0 },
            ports_per_transfer: 4,
        };
        assert_eq!(model.ports_for(0.001, 1000), Some(84));
        assert_eq!(model.blocking(87), erlang_b(21, 10.0));
    }

    #[test]
    fn stable_at_extremes() {
        for (n, load) in [
            (100_000u64, 100_000.0),
            (100_000, 1e-9),
            (1, 1e300),
            (100_000, 1e300),
            (0, 0.0),
        ] {
            let b = erlang_b(n, load);
            assert!((0.0..=1.0).contains(&b), "B({n},{load}) = {b}");
        }
        let n = LossModel::erlang_b(100_000.0)
            .ports_for(0.001, 200_000)
            .unwrap();
        assert!((100_000..101_000).contains(&n), "{n}");
        assert_eq!(LossModel::erlang_b(f64::NAN).ports_for(0.001, 1000), None);
        assert_eq!(LossModel::erlang_b(1e300).ports_for(0.001, 1000), None);
    }

    #[test]
    fn table_is_a_window_of_the_curve() {
        let model = LossModel::erlang_b(10.0);
        let table = model.table(19..=23);
        assert_eq!(table.len(), 5);
        assert_eq!(table[2], (21, erlang_b(21, 10.0)));
    }
}
