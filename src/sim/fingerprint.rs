//! A shard's fingerprint: everything that shapes a simulation's result, so that `merge`
//! refuses shards of different runs (another `--sessions`, an edited scenario, another seed)
//! and says which item differs.
//!
//! Each item is a canonical text of the validated scenario after the command line's
//! overrides — numbers in seconds, per second or as counts, whatever unit the file used — hashed
//! with 64-bit FNV-1a. The texts are written out by hand from exhaustive destructuring, so a
//! field added to the scenario does not compile until it is placed here. What does not shape
//! the result (description, `[expect]`, `[traffic]`, the file's path) is left out.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::scenario::{
    Arrivals, ClientConfig, ClientGroup, Holding, Retry, Scenario, ServerConfig, Stop, TraceRecord,
    Workload,
};
use crate::units::Duration;

/// 64-bit FNV-1a: tiny, stable across platforms and versions, and enough to tell runs apart
/// (it guards against mistakes, not against forgery).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(OFFSET, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(PRIME))
}

/// The items of a fingerprint, each with what a person should look at when it differs.
pub const ITEMS: [(&str, &str); 9] = [
    ("version", "the udprange version"),
    ("seed", "the seed (seed, --seed)"),
    (
        "replications",
        "the replications (workload.replications, --replications)",
    ),
    (
        "stop",
        "the length of a replication (workload.sessions or horizon, --sessions)",
    ),
    ("allowed", "the client range (client.allowed, --allowed)"),
    (
        "target_blocking",
        "the target blocking (plan.target_blocking, --target-blocking)",
    ),
    ("server", "the scenario's [server]"),
    ("groups", "the scenario's [[client.groups]]"),
    ("workload", "the scenario's [workload]"),
];

/// What a person should look at when item `key` differs.
pub fn describe(key: &str) -> &'static str {
    ITEMS
        .iter()
        .find(|(k, _)| *k == key)
        .map_or("the fingerprint", |(_, what)| what)
}

/// Item → FNV-1a of its canonical text, as 16 hex digits.
pub type Fingerprint = BTreeMap<String, String>;

fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn holding(out: &mut String, h: &Holding) {
    let _ = match *h {
        Holding::Exponential { mean } => write!(out, "exponential {:?}", seconds(mean)),
        Holding::LogNormal { mean, sd } => {
            write!(out, "lognormal {:?} {:?}", seconds(mean), seconds(sd))
        }
        Holding::Fixed { mean } => write!(out, "fixed {:?}", seconds(mean)),
        Holding::Pareto { mean, shape } => write!(out, "pareto {:?} {shape:?}", seconds(mean)),
    };
}

fn server(s: &ServerConfig) -> String {
    let ServerConfig {
        os,
        udp_port_reuse,
        base_port,
        max_port,
        occupied,
        linger,
    } = s;
    format!(
        "{} reuse={udp_port_reuse} base={base_port} max={max_port} occupied={occupied:?} linger={:?}",
        os.name(),
        linger.map(seconds)
    )
}

fn groups(c: &ClientConfig) -> String {
    let ClientConfig { allowed: _, groups } = c;
    let mut out = String::new();
    for ClientGroup {
        name,
        share,
        allowed,
    } in groups
    {
        let _ = writeln!(out, "{name:?} {share:?} {allowed}");
    }
    out
}

fn workload(w: &Workload) -> String {
    let Workload {
        arrivals,
        holding: hold,
        accounts,
        sessions_per_transfer,
        stop: _,
        warmup,
        replications: _,
        handshake_timeout,
        retry,
    } = w;
    let mut out = String::new();
    match arrivals {
        Arrivals::Poisson { rate } => {
            let _ = write!(out, "poisson {:?}", rate.per_second());
        }
        Arrivals::Profile { step, rates } => {
            let rates: Vec<f64> = rates.iter().map(|r| r.per_second()).collect();
            let _ = write!(out, "profile {:?} {rates:?}", seconds(*step));
        }
        Arrivals::Trace { path: _, records } => {
            // The records, not the file's name: a copy of the trace elsewhere is the same run.
            let _ = write!(out, "trace {}", records.len());
            for TraceRecord {
                start,
                duration,
                account,
                group,
            } in records
            {
                let _ = write!(out, "\n{start:?},{duration:?},{account},{group:?}");
            }
        }
        Arrivals::Closed { concurrent, think } => {
            let _ = write!(out, "closed {concurrent} think=");
            match think {
                Some(t) => holding(&mut out, t),
                None => out.push_str("none"),
            }
        }
    }
    out.push_str("\nholding ");
    holding(&mut out, hold);
    let _ = write!(
        out,
        "\naccounts={accounts} sessions_per_transfer={sessions_per_transfer} warmup={:?} handshake={:?}",
        warmup.map(seconds),
        seconds(*handshake_timeout)
    );
    if let Some(Retry {
        attempts,
        backoff,
        multiplier,
    }) = retry
    {
        let _ = write!(
            out,
            "\nretry {attempts} {:?} {multiplier:?}",
            seconds(*backoff)
        );
    }
    out
}

/// The fingerprint of a run of `scenario` (after overrides).
pub fn fingerprint(scenario: &Scenario) -> Fingerprint {
    let stop = match scenario.workload.stop {
        Stop::Sessions(n) => format!("sessions {n}"),
        Stop::Horizon(h) => format!("horizon {:?}", seconds(h)),
    };
    let texts = [
        (
            "version",
            format!("{} {}", env!("CARGO_PKG_VERSION"), super::PART_FORMAT),
        ),
        ("seed", scenario.seed.to_string()),
        ("replications", scenario.workload.replications.to_string()),
        ("stop", stop),
        ("allowed", format!("{:?}", scenario.client.allowed)),
        (
            "target_blocking",
            format!("{:?}", scenario.target_blocking.value()),
        ),
        ("server", server(&scenario.server)),
        ("groups", groups(&scenario.client)),
        ("workload", workload(&scenario.workload)),
    ];
    texts
        .into_iter()
        .map(|(key, text)| {
            (
                key.to_string(),
                format!("{:016x}", fnv1a64(text.as_bytes())),
            )
        })
        .collect()
}

/// The first item (in [`ITEMS`] order) on which `a` and `b` differ.
pub fn first_difference(a: &Fingerprint, b: &Fingerprint) -> Option<&'static str> {
    if let Some((_, what)) = ITEMS.iter().find(|(key, _)| a.get(*key) != b.get(*key)) {
        return Some(what);
    }
    (a != b).then_some("the fingerprint")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_published_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn every_item_is_present_and_overrides_show() {
        let seed = Scenario::seed_example();
        let base = fingerprint(&seed);
        assert_eq!(base.len(), ITEMS.len());
        assert_eq!(base, fingerprint(&seed.clone()));
        let mut other = seed.clone();
        other.workload.stop = Stop::Sessions(7);
        assert_eq!(
            first_difference(&base, &fingerprint(&other)),
            Some(describe("stop"))
        );
        let mut other = seed.clone();
        other.seed += 1;
        assert_eq!(
            first_difference(&base, &fingerprint(&other)),
            Some(describe("seed"))
        );
        let mut other = seed;
        other.server.occupied.insert(33002);
        assert_eq!(
            first_difference(&base, &fingerprint(&other)),
            Some(describe("server"))
        );
        // The description and the file's path do not shape the result.
        let mut same = Scenario::seed_example();
        same.description = Some("edited".into());
        same.file = "elsewhere.toml".into();
        assert_eq!(first_difference(&base, &fingerprint(&same)), None);
    }
}
