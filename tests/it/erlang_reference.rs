//! Erlang-B against values computed independently (tests/data/erlang_b_reference.py:
//! 60-digit decimal arithmetic, inverse recurrence) and against published tables.

use udprange::plan::erlang::{LossModel, erlang_b};

#[test]
fn erlang_b_matches_the_high_precision_reference() {
    let data = include_str!("../data/erlang_b_reference.csv");
    let mut checked = 0;
    for line in data.lines().skip(1) {
        let fields: Vec<&str> = line.split(',').collect();
        let n: u64 = fields[0].parse().unwrap();
        let load: f64 = fields[1].parse().unwrap();
        // Values below f64's range parse to 0; ours must underflow to (near) 0 as well.
        let want: f64 = fields[2].parse().unwrap();
        let got = erlang_b(n, load);
        assert!(
            got.is_finite() && (0.0..=1.0).contains(&got),
            "B({n},{load}) = {got}"
        );
        if want > 1e-290 {
            let relative = (got - want).abs() / want;
            assert!(relative < 1e-9, "B({n},{load}) = {got}, reference {want}");
        } else {
            assert!(got < 1e-280, "B({n},{load}) = {got}, reference {want}");
        }
        checked += 1;
    }
    assert_eq!(checked, 66);
}

#[test]
fn published_erlang_b_table() {
    // Standard Erlang-B tables: 10 Erlang needs 18 trunks at 1 % and 21 at 0.1 %;
    // 100 Erlang needs 117 at 1 %.
    let ten = LossModel::erlang_b(10.0);
    assert_eq!(ten.ports_for(0.01, 1000), Some(18));
    assert_eq!(ten.ports_for(0.001, 1000), Some(21));
    assert_eq!(LossModel::erlang_b(100.0).ports_for(0.01, 1000), Some(117));
}

#[test]
fn inverse_is_the_smallest_n() {
    for load in [0.1, 1.0, 7.3, 10.0, 55.5, 1000.0, 100_000.0] {
        for target in [0.1, 0.01, 0.001, 1e-6] {
            let n = LossModel::erlang_b(load)
                .ports_for(target, 200_000)
                .unwrap();
            assert!(erlang_b(n, load) <= target);
            if n > 0 {
                assert!(
                    erlang_b(n - 1, load) > target,
                    "A={load} target={target} n={n}"
                );
            }
        }
    }
}
