//! Cost of one allocator operation with many ports held at once.
//!
//! Each iteration closes a pseudo-randomly chosen held session and opens a new one, so the
//! number of held ports stays constant and first fit has to find the hole just freed.
//! Throughput counts 2 elements (operations) per iteration.
//!
//! `PortAllocator` holds at most 65 535 ports (every port from 1), so the 100 000 point is
//! measured on the index it is built on, `FirstFitSet`, with 100 000 slots held.
//!
//! Run: `cargo bench --bench allocator`

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use udprange::model::{AllocatorConfig, FirstFitSet, PortAllocator, SessionRef, SharingRule};

/// xorshift64: a fixed, cheap stream of choices, identical on every run.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn port_allocator(c: &mut Criterion) {
    let mut group = c.benchmark_group("port_allocator_close_open");
    group.throughput(Throughput::Elements(2));
    for held in [10usize, 1_000, 65_535] {
        let base = if held == 65_535 { 1 } else { 33001 };
        let mut ports =
            PortAllocator::new(AllocatorConfig::new(SharingRule::PerSession, base)).unwrap();
        let mut open: Vec<SessionRef> = (0..held as u64)
            .map(|session| SessionRef {
                session,
                account: 0,
            })
            .collect();
        for s in &open {
            ports.open(*s).unwrap();
        }
        let mut next_session = held as u64;
        let mut rng = 0x2545_F491_4F6C_DD1D_u64;
        group.bench_function(BenchmarkId::from_parameter(held), |b| {
            b.iter(|| {
                let i = (next(&mut rng) % held as u64) as usize;
                ports.close(open[i]).unwrap();
                open[i] = SessionRef {
                    session: next_session,
                    account: 0,
                };
                next_session += 1;
                black_box(ports.open(open[i]).unwrap());
            })
        });
    }
    group.finish();
}

fn first_fit_set(c: &mut Criterion) {
    let mut group = c.benchmark_group("first_fit_set_free_take");
    group.throughput(Throughput::Elements(2));
    for held in [10usize, 1_000, 100_000] {
        let mut set = FirstFitSet::all_free(held + 64);
        for _ in 0..held {
            set.take_first_free_from(0);
        }
        let mut rng = 0x9E37_79B9_7F4A_7C15_u64;
        group.bench_function(BenchmarkId::from_parameter(held), |b| {
            b.iter(|| {
                let slot = (next(&mut rng) % held as u64) as usize;
                set.set_free(slot);
                black_box(set.take_first_free_from(0));
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = port_allocator, first_fit_set
}
criterion_main!(benches);
