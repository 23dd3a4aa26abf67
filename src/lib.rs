//! # udprange
//!
//! Which UDP port range must a firewall open for FASP-style transfers, exactly?
//! A transfer server hands out UDP ports incrementally from 33001; whether concurrent
//! transfers share a port depends on the server's OS. This crate computes the range, sizes it
//! for random load, and writes the firewall rules.
//!
//! ## Map of the modules (arrows point one way: CLI → engines → model)
//! | module | what it holds |
//! |---|---|
//! | [`model`] | [`model::ServerOs`] and its [`model::SharingRule`], [`model::PortRange`], the first-fit [`model::PortAllocator`] |
//! | [`workload`] | who transfers when (arrivals, holding, accounts, groups, retries): clock-free, driven by [`sim`] and [`blast`] |
//! | [`plan`] | deterministic sizing ([`plan::size`]), capacity planning ([`plan::plan_capacity`]) and the loss formulas ([`plan::erlang`]) |
//! | [`firewall`] | the openings a transfer needs ([`firewall::Requirements`]) and rules in four syntaxes ([`firewall::rules`]) |
//! | [`units`] | durations, rates and probabilities as users write them |
//! | [`limits`] | every limit on input (clients, durations, rates, sizes, simulated time, file sizes), defined once for flags and scenario keys alike |
//! | [`report`] | plan reports as text, JSON and CSV |
//! | [`cli`] | the command line: the only place that reads flags or prints |
//!
//! ## In your own regression tests
//! ```
//! use udprange::model::ServerOs;
//! use udprange::plan::{size, ServerSpec, Transfers};
//! // The vendor's example: a Windows server allowing 10 concurrent transfers.
//! let sizing = size(&ServerSpec::new(ServerOs::Windows), &Transfers::concurrent(10)).unwrap();
//! assert_eq!((sizing.udp_range.first(), sizing.udp_range.last()), (33001, 33010));
//! ```

pub mod blast;
pub mod check;
pub mod cli;
pub mod firewall;
pub mod limits;
pub mod model;
pub mod plan;
pub mod report;
pub mod scenario;
pub mod sim;
pub mod stats;
pub mod units;
pub mod wire;
pub mod workload;
