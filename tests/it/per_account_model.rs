//! The per-account loss model (macOS/FreeBSD) against a direct simulation that uses the real
//! `PortAllocator`: Poisson arrivals spread evenly over K accounts, n ports, blocked sessions
//! lost. The formula claims insensitivity to the holding-time distribution, so it is checked
//! with exponential and with fixed holding times.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use udprange::model::{AllocatorConfig, PortAllocator, SessionRef, SharingRule};
use udprange::plan::erlang::LossModel;

struct Rng(u64);

impl Rng {
    /// Uniform in (0, 1), from xorshift64*.
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        ((x >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn exponential(&mut self, mean: f64) -> f64 {
        -mean * self.uniform().ln()
    }
}

/// Fraction of sessions blocked; `fixed` selects fixed instead of exponential holding.
fn simulate(accounts: u64, load: f64, ports: u16, fixed: bool, sessions: u64) -> f64 {
    let config = AllocatorConfig::new(SharingRule::PerAccount, 33001).with_max_port(33000 + ports);
    let mut allocator = PortAllocator::new(config).unwrap();
    let mut rng = Rng(0x0123_4567_89AB_CDEF);
    let mean_holding = 1.0;
    let arrival_rate = load / mean_holding;
    // Departures: (time in ns, session, account), earliest first.
    let mut departures: BinaryHeap<Reverse<(u64, u64, u64)>> = BinaryHeap::new();
    let mut now = 0.0;
    let (mut blocked, mut counted) = (0u64, 0u64);
    let warm_up = sessions / 10;
    for session in 0..sessions + warm_up {
        now += rng.exponential(1.0 / arrival_rate);
        let now_ns = (now * 1e9) as u64;
        while let Some(&Reverse((at, s, a))) = departures.peek() {
            if at > now_ns {
                break;
            }
            departures.pop();
            allocator
                .close(SessionRef {
                    session: s,
                    account: a,
                })
                .unwrap();
        }
        let account = (rng.uniform() * accounts as f64) as u64 % accounts;
        let session_ref = SessionRef { session, account };
        let ok = allocator.open(session_ref).is_ok();
        if session >= warm_up {
            counted += 1;
            blocked += u64::from(!ok);
        }
        if ok {
            let holding = if fixed {
                mean_holding
            } else {
                rng.exponential(mean_holding)
            };
            departures.push(Reverse((
                (now + holding).mul_add(1e9, 0.0) as u64,
                session,
                account,
            )));
        }
    }
    blocked as f64 / counted as f64
}

#[test]
fn per_account_formula_matches_simulation() {
    for (accounts, load, ports) in [(5u64, 4.0, 3u16), (12, 6.0, 5), (3, 1.0, 1)] {
        let formula = LossModel::PerAccount { accounts, load }.blocking(u64::from(ports));
        for fixed in [false, true] {
            let simulated = simulate(accounts, load, ports, fixed, 300_000);
            let relative = (simulated - formula).abs() / formula;
            eprintln!(
                "K={accounts} A={load} n={ports} fixed={fixed}: simulated {simulated:.4}, formula {formula:.4}"
            );
            assert!(
                relative < 0.05,
                "K={accounts} A={load} n={ports} fixed={fixed}: simulated {simulated:.4}, formula {formula:.4}"
            );
        }
    }
}
