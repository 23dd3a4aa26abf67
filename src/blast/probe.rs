//! `udprange audit --confirm`: the kernel's own answer for a ruleset. The ruleset goes
//! into the test hosts where the audit placed it; one UDP datagram to every destination
//! port and one TCP connection attempt to the control port leave the client, and counters
//! where packets leave the client and where they arrive at the server say which got
//! through. Nothing listens: a probe's arrival is its answer.

use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use super::BlastError;
use super::netns::{self, Host, TestHosts};
use crate::firewall::ruleset::UserRuleset;
use crate::model::{Port, PortRange};

/// Probes sent back to back before a pause, and the pause: slow enough that no queue on
/// the path overflows, so a probe that does not arrive was dropped by the ruleset.
const BURST: usize = 64;
const PAUSE: Duration = Duration::from_micros(300);
/// Rounds for probes that did not arrive (a second look rules out a lost packet).
const ROUNDS: usize = 2;

/// What the kernel did with the probes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelAnswer {
    /// UDP destination ports whose probe arrived.
    pub passes: Vec<PortRange>,
    /// Whether the TCP connection attempt to the control port arrived.
    pub control_passes: bool,
    /// Ports whose probe never left the client (not an answer about them).
    pub unsent: Vec<PortRange>,
}

/// Loads `ruleset` at `at` in fresh test hosts and probes every UDP port and the control
/// port from `client` to `server`.
pub fn probe(
    ruleset: &UserRuleset,
    at: Host,
    client: Ipv4Addr,
    server: Ipv4Addr,
    control_port: Port,
) -> Result<KernelAnswer, BlastError> {
    netns::check_requirements()?;
    let _ = netns::remove_leftovers();
    let hosts = TestHosts::create()?;
    hosts.add_addresses(client, server)?;
    hosts.load_user_ruleset(at, ruleset)?;
    hosts.count_probes(server, at)?;
    let client_ns = hosts.client_ns.clone();
    let mut pending: Vec<Port> = (1..=Port::MAX).collect();
    let mut sent_any = std::collections::BTreeSet::new();
    let mut arrived = std::collections::BTreeSet::new();
    let mut control_passes = false;
    for round in 0..ROUNDS {
        let ports = pending.clone();
        let ns = client_ns.clone();
        let first = round == 0;
        std::thread::spawn(move || -> Result<(), String> {
            netns::enter(&ns).map_err(|e| e.to_string())?;
            let socket = UdpSocket::bind((client, 0)).map_err(|e| e.to_string())?;
            for chunk in ports.chunks(BURST) {
                for &port in chunk {
                    // A firewall on the client's output hook answers EPERM: counted there.
                    let _ = socket.send_to(b"udprange audit probe", (server, port));
                }
                std::thread::sleep(PAUSE);
            }
            if first {
                let to = SocketAddr::from((server, control_port));
                let _ = TcpStream::connect_timeout(&to, Duration::from_millis(500));
            }
            Ok(())
        })
        .join()
        .map_err(|_| BlastError::Server("the probe thread panicked".into()))?
        .map_err(BlastError::Server)?;
        std::thread::sleep(Duration::from_millis(200));
        let (sent, got) = hosts.probes()?;
        for (tcp, port) in sent {
            if !tcp {
                sent_any.insert(port);
            }
        }
        for (tcp, port) in got {
            if tcp {
                control_passes |= port == control_port;
            } else {
                arrived.insert(port);
            }
        }
        pending.retain(|p| !arrived.contains(p));
        if pending.is_empty() {
            break;
        }
    }
    drop(hosts);
    Ok(KernelAnswer {
        passes: PortRange::covering(arrived.iter().copied()),
        control_passes,
        unsent: PortRange::covering((1..=Port::MAX).filter(|p| !sent_any.contains(p))),
    })
}
