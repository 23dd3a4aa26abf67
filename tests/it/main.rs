//! The integration tests, one binary: each module drives the library or the real binary
//! (`CARGO_BIN_EXE_udprange`). One binary links once, so a clean `cargo test` builds far
//! faster than with a binary per file. Tests that need root or a tool say so loudly and skip;
//! under `CI=true` that skip is a failure.

mod audit;
mod blast_cli;
mod blast_loopback;
mod blast_netns;
mod cli;
mod common;
mod erlang_reference;
mod firewall_tools;
mod hostile;
mod logs;
mod netns_cleanup;
mod per_account_model;
mod plots;
mod properties;
mod replay;
mod router;
mod scenario_properties;
mod schemas;
mod serve;
mod shell;
mod simulate_cli;
mod simulator;
mod terminal;
mod transfer;
mod wire_properties;
