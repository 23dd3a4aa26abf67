//! What the firewalls must let through, and the rules that say it.
//!
//! [`Requirements`] lists the openings a FASP-style transfer needs — the TCP control port,
//! the UDP data range, the Vlink UDP port when Vlinks are used — each with the direction it
//! has on the client side (outbound to the server) and on the server side (inbound from
//! clients). [`rules`] renders them for nftables, iptables, Windows PowerShell and pf.
//!
//! ```
//! use udprange::firewall::{Requirements, Side};
//! use udprange::model::PortRange;
//! let req = Requirements::new(22, "33001-33010".parse().unwrap(), false);
//! let client = req.openings(Side::Client);
//! assert_eq!(client.len(), 2);
//! assert_eq!(client[1].ports.to_string(), "33001-33010");
//! ```

pub mod audit;
pub mod model;
pub mod rules;
pub mod ruleset;

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::Serialize;

use crate::model::{Port, PortRange};

/// The vendor's default Vlink UDP port (multicast between servers).
pub const VLINK_PORT: Port = 55001;
pub use crate::model::{SSH_PORT, VENDOR_CONTROL_PORT};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        }
    }
}

/// Which machine's firewall a rule set is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Client,
    Server,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Inbound,
    Outbound,
}

impl Side {
    pub fn name(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Server => "server",
        }
    }
}

impl Direction {
    pub fn name(self) -> &'static str {
        match self {
            Self::Inbound => "inbound",
            Self::Outbound => "outbound",
        }
    }
}

/// One opening a firewall must allow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Opening {
    pub protocol: Protocol,
    pub direction: Direction,
    /// Destination ports: the server's ports, in both directions.
    pub ports: PortRange,
    pub purpose: &'static str,
}

/// The openings a transfer needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Requirements {
    pub tcp_control_port: Port,
    pub udp_range: PortRange,
    pub vlink_port: Option<Port>,
}

impl Requirements {
    pub fn new(tcp_control_port: Port, udp_range: PortRange, vlink: bool) -> Self {
        Self {
            tcp_control_port,
            udp_range,
            vlink_port: vlink.then_some(VLINK_PORT),
        }
    }

    /// The openings on one side. The client connects out to the server's control port and
    /// sends data out to the range; the server takes both in. Vlink traffic flows between
    /// servers only, so it is on the server side.
    pub fn openings(&self, side: Side) -> Vec<Opening> {
        let direction = match side {
            Side::Client => Direction::Outbound,
            Side::Server => Direction::Inbound,
        };
        let control = PortRange::single(self.tcp_control_port)
            .expect("control port is validated to be 1-65535");
        let mut openings = vec![
            Opening {
                protocol: Protocol::Tcp,
                direction,
                ports: control,
                purpose: "FASP control (SSH)",
            },
            Opening {
                protocol: Protocol::Udp,
                direction,
                ports: self.udp_range,
                purpose: "FASP data",
            },
        ];
        if let (Side::Server, Some(vlink)) = (side, self.vlink_port) {
            openings.push(Opening {
                protocol: Protocol::Udp,
                direction: Direction::Inbound,
                ports: PortRange::single(vlink).expect("Vlink port is 55001"),
                purpose: "Vlink multicast",
            });
        }
        openings
    }
}

/// An address or network (`198.51.100.7`, `203.0.113.0/24`, `2001:db8::/32`) that rules are
/// restricted to: the server for client rules, the clients for server rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Peer {
    /// One host.
    pub fn host(addr: IpAddr) -> Self {
        Self {
            addr,
            prefix: Self::max_prefix(addr),
        }
    }

    pub fn is_ipv6(&self) -> bool {
        self.addr.is_ipv6()
    }

    fn max_prefix(addr: IpAddr) -> u8 {
        if addr.is_ipv4() { 32 } else { 128 }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not an IP address or network (examples: 198.51.100.7, 203.0.113.0/24)")]
pub struct BadPeer(pub String);

impl FromStr for Peer {
    type Err = BadPeer;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || BadPeer(text.to_string());
        let (addr, prefix) = match text.trim().split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text.trim(), None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| error())?;
        let max = Self::max_prefix(addr);
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(error)?,
            None => max,
        };
        Ok(Self { addr, prefix })
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix == Self::max_prefix(self.addr) {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.prefix)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_and_server_openings() {
        let req = Requirements::new(33001, "33001-33010".parse().unwrap(), true);
        let client = req.openings(Side::Client);
        assert!(client.iter().all(|o| o.direction == Direction::Outbound));
        assert_eq!(client.len(), 2, "Vlink is server to server");
        let server = req.openings(Side::Server);
        assert!(server.iter().all(|o| o.direction == Direction::Inbound));
        assert_eq!(server[2].ports.to_string(), "55001");
    }

    #[test]
    fn peers() {
        assert_eq!(
            "198.51.100.7".parse::<Peer>().unwrap().to_string(),
            "198.51.100.7"
        );
        assert_eq!("203.0.113.0/24".parse::<Peer>().unwrap().prefix, 24);
        assert!("2001:db8::/32".parse::<Peer>().unwrap().is_ipv6());
        for bad in ["", "10.0.0.0/33", "host.example", "1.2.3.4/", "::/129"] {
            assert!(bad.parse::<Peer>().is_err(), "{bad}");
        }
    }
}
