//! The client's firewall, modelled in process for the loopback backend: outbound UDP to a
//! port outside the allowed range is dropped before it leaves, and counted.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::model::{Port, PortRange};

/// An outbound UDP filter: allows destination ports in one range (or all).
#[derive(Debug, Default)]
pub struct OutboundFilter {
    allowed: Option<PortRange>,
    filtered: AtomicU64,
}

impl OutboundFilter {
    /// `None` allows every port.
    pub fn new(allowed: Option<PortRange>) -> Self {
        Self {
            allowed,
            filtered: AtomicU64::new(0),
        }
    }

    pub fn allowed(&self) -> Option<PortRange> {
        self.allowed
    }

    /// Whether a datagram to `port` may leave; a refusal is counted.
    pub fn pass(&self, port: Port) -> bool {
        let pass = self.allowed.is_none_or(|r| r.contains(port));
        if !pass {
            self.filtered.fetch_add(1, Ordering::Relaxed);
        }
        pass
    }

    /// Datagrams dropped so far.
    pub fn filtered(&self) -> u64 {
        self.filtered.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_and_counts_outside_the_range() {
        let filter = OutboundFilter::new(Some("33001-33010".parse().unwrap()));
        assert!(filter.pass(33001) && filter.pass(33010));
        assert!(!filter.pass(33011));
        assert!(!filter.pass(33000));
        assert_eq!(filter.filtered(), 2);
        assert!(OutboundFilter::new(None).pass(1));
    }
}
