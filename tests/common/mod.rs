//! Helpers shared by the blast test files.

use udprange::blast::{self, BlastConfig, BlastReport};

/// Runs `config` to its end on a two-worker runtime, as the CLI would.
pub fn run_blast(config: &BlastConfig) -> BlastReport {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    runtime.block_on(blast::run(config, stopped)).unwrap().0
}
