//! One description of a transfer server, whoever asks: `plan` sizes for it, a scenario's
//! `[server]` reads into it, the simulator allocates by it and the emulator serves by it.

use std::collections::BTreeSet;

use super::allocator::AllocatorConfig;
use super::os::{ServerOs, SharingRule};
use super::range::{MAX_PORT, Port, PortRange};
use crate::units::Duration;

/// A transfer server as far as port allocation goes.
#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    pub os: ServerOs,
    /// Linux only: `true` (vendor default) lets all sessions share one port.
    pub udp_port_reuse: bool,
    /// First UDP port handed out (default 33001).
    pub base_port: Port,
    /// Highest UDP port handed out; [`MAX_PORT`] when uncapped.
    pub max_port: Port,
    /// Ports held by other services on the server; never handed out.
    pub occupied: BTreeSet<Port>,
    /// How long a key keeps its port after its last session ends.
    pub linger: Option<Duration>,
}

impl Server {
    /// Vendor defaults: base 33001, port reuse on, no cap, nothing occupied, no linger.
    pub fn new(os: ServerOs) -> Self {
        Self {
            os,
            udp_port_reuse: true,
            base_port: AllocatorConfig::DEFAULT_BASE,
            max_port: MAX_PORT,
            occupied: BTreeSet::new(),
            linger: None,
        }
    }

    /// Which sessions share a port on this server.
    pub fn rule(&self) -> SharingRule {
        SharingRule::for_os(self.os, self.udp_port_reuse)
    }

    /// Whether the server hands out ports only up to a cap below the last port.
    pub fn is_capped(&self) -> bool {
        self.max_port < MAX_PORT
    }

    /// The allocator of this server: its rule, base port, cap, occupied ports and linger.
    pub fn allocator(&self) -> AllocatorConfig {
        AllocatorConfig::new(self.rule(), self.base_port)
            .with_max_port(self.max_port)
            .with_occupied(self.occupied.iter().copied())
            .with_linger(self.linger.is_some())
    }

    /// Why a client allowing only `range` could never pass a session (it shares no port with
    /// what the server hands out); `None` when it could.
    pub fn unreachable(&self, range: PortRange) -> Option<String> {
        (range.last() < self.base_port || range.first() > self.max_port).then(|| {
            format!(
                "lies outside the ports the server hands out ({}-{})",
                self.base_port, self.max_port
            )
        })
    }
}
