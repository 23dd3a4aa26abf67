//! The server's UDP port allocator (DESIGN.md, "Port-sharing rules").
//!
//! A new key takes the **lowest free port `>= base`** (first fit). A port is free when no key
//! holds it, no other local service occupies it, and it is `<= max_port`. Sessions with the
//! same [`PortKey`] (see [`SharingRule`]) share their key's port; the key keeps it while any of
//! its sessions is open and gives it back when the last one closes — at once, or, with
//! linger, only when the caller expires it later. The allocator has no clock: whoever owns
//! time (the simulator, the traffic engine) schedules the expiry and calls
//! [`PortAllocator::expire`] with the ticket it was given.
//!
//! Every operation costs O(1) expected for the key lookup plus O(log64 ports) for the first
//! fit ([`FirstFitSet`]), whatever happened before.
//!
//! ```
//! use udprange::model::{AllocatorConfig, PortAllocator, ServerOs, SessionRef, SharingRule};
//! let config = AllocatorConfig::new(SharingRule::for_os(ServerOs::Windows, true), 33001)
//!     .with_occupied([33002]);
//! let mut ports = PortAllocator::new(config).unwrap();
//! let a = ports.open(SessionRef { session: 1, account: 1 }).unwrap();
//! let b = ports.open(SessionRef { session: 2, account: 1 }).unwrap();
//! assert_eq!((a, b), (33001, 33003)); // 33002 is used by another service
//! ports.close(SessionRef { session: 1, account: 1 }).unwrap();
//! assert_eq!(ports.open(SessionRef { session: 3, account: 1 }).unwrap(), 33001);
//! ```

use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use super::first_fit::FirstFitSet;
use super::os::{PortKey, SessionRef, SharingRule};
use super::range::{MAX_PORT, Port};

/// How the allocator is set up. Defaults: base 33001, no cap (65535), nothing occupied,
/// no linger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocatorConfig {
    pub rule: SharingRule,
    /// First port handed out (vendor default 33001).
    pub base: Port,
    /// Highest port the server may hand out; beyond it a session is refused.
    pub max_port: Port,
    /// Ports other local services hold; never handed out.
    pub occupied: BTreeSet<Port>,
    /// When true, a key whose last session closes keeps its port until [`PortAllocator::expire`].
    pub linger: bool,
}

impl AllocatorConfig {
    /// Vendor base port.
    pub const DEFAULT_BASE: Port = 33001;

    pub fn new(rule: SharingRule, base: Port) -> Self {
        Self {
            rule,
            base,
            max_port: MAX_PORT,
            occupied: BTreeSet::new(),
            linger: false,
        }
    }

    pub fn with_max_port(mut self, max_port: Port) -> Self {
        self.max_port = max_port;
        self
    }

    pub fn with_occupied(mut self, occupied: impl IntoIterator<Item = Port>) -> Self {
        self.occupied.extend(occupied);
        self
    }

    pub fn with_linger(mut self, linger: bool) -> Self {
        self.linger = linger;
        self
    }
}

/// Why a configuration or an operation was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    #[error("base port 0 is not usable")]
    BasePortZero,
    #[error("max port {max_port} is below base port {base}")]
    CapBelowBase { base: Port, max_port: Port },
    /// The server has no free port: it refuses the session at once (socket set-up error).
    #[error("no free UDP port in {first}-{last}: session refused")]
    NoFreePort { first: Port, last: Port },
    #[error("{0:?} holds no port")]
    NotHeld(PortKey),
}

/// What closing a session did to its key's port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// Other sessions of the key still use the port.
    StillShared { port: Port },
    /// The port is free again.
    Freed { port: Port },
    /// The key keeps the port until [`PortAllocator::expire`] is called with this ticket.
    Lingering { port: Port, ticket: u64 },
}

#[derive(Debug, Clone, Copy)]
struct Holding {
    port: Port,
    sessions: u64,
    /// Set while the key has no session and lingers; identifies this linger period.
    linger_ticket: Option<u64>,
}

/// Hashes port keys (two small integers) with one multiply per word, in the manner of
/// rustc's FxHash: far cheaper than SipHash, and keys are not attacker-controlled. Nothing
/// iterates the map, so its order never reaches a result.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeyHasher(u64);

impl KeyHasher {
    const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;
}

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(Self::SEED);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type KeyMap<V> = HashMap<PortKey, V, BuildHasherDefault<KeyHasher>>;

/// Hands out UDP ports by first fit, keyed by the sharing rule. See the module docs.
#[derive(Debug, Clone)]
pub struct PortAllocator {
    config: AllocatorConfig,
    /// Slot `i` is port `base + i`; occupied ports are never free.
    free: FirstFitSet,
    holdings: KeyMap<Holding>,
    next_ticket: u64,
}

impl PortAllocator {
    pub fn new(config: AllocatorConfig) -> Result<Self, AllocError> {
        if config.base == 0 {
            return Err(AllocError::BasePortZero);
        }
        if config.max_port < config.base {
            return Err(AllocError::CapBelowBase {
                base: config.base,
                max_port: config.max_port,
            });
        }
        let mut free = FirstFitSet::all_free(usize::from(config.max_port - config.base) + 1);
        for &port in config.occupied.range(config.base..=config.max_port) {
            free.take(usize::from(port - config.base));
        }
        Ok(Self {
            config,
            free,
            holdings: KeyMap::default(),
            next_ticket: 0,
        })
    }

    pub fn config(&self) -> &AllocatorConfig {
        &self.config
    }

    /// Opens a session: joins its key's port, or takes the lowest free port for a new key.
    pub fn open(&mut self, session: SessionRef) -> Result<Port, AllocError> {
        self.acquire(self.config.rule.key(session))
    }

    /// Closes a session opened with [`open`](Self::open).
    pub fn close(&mut self, session: SessionRef) -> Result<Closed, AllocError> {
        self.release(self.config.rule.key(session))
    }

    /// Adds one session to `key`, giving the key a port if it has none.
    pub fn acquire(&mut self, key: PortKey) -> Result<Port, AllocError> {
        if let Some(holding) = self.holdings.get_mut(&key) {
            holding.sessions += 1;
            holding.linger_ticket = None;
            return Ok(holding.port);
        }
        let slot = self
            .free
            .take_first_free_from(0)
            .ok_or(AllocError::NoFreePort {
                first: self.config.base,
                last: self.config.max_port,
            })?;
        let port = self.config.base + slot as Port;
        self.holdings.insert(
            key,
            Holding {
                port,
                sessions: 1,
                linger_ticket: None,
            },
        );
        Ok(port)
    }

    /// Removes one session from `key`; the last one frees the port (or starts its linger).
    pub fn release(&mut self, key: PortKey) -> Result<Closed, AllocError> {
        let holding = match self.holdings.get_mut(&key) {
            Some(h) if h.sessions > 0 => h,
            _ => return Err(AllocError::NotHeld(key)),
        };
        holding.sessions -= 1;
        let port = holding.port;
        if holding.sessions > 0 {
            return Ok(Closed::StillShared { port });
        }
        if self.config.linger {
            let ticket = self.next_ticket;
            self.next_ticket += 1;
            holding.linger_ticket = Some(ticket);
            return Ok(Closed::Lingering { port, ticket });
        }
        self.free_port_of(key, port);
        Ok(Closed::Freed { port })
    }

    /// Ends a linger period: frees the key's port if it is still lingering under `ticket`.
    /// Returns the port freed, or `None` when the key was reused meanwhile (a stale ticket).
    pub fn expire(&mut self, key: PortKey, ticket: u64) -> Option<Port> {
        let holding = self.holdings.get(&key)?;
        if holding.linger_ticket != Some(ticket) {
            return None;
        }
        let port = holding.port;
        self.free_port_of(key, port);
        Some(port)
    }

    fn free_port_of(&mut self, key: PortKey, port: Port) {
        self.holdings.remove(&key);
        self.free.set_free(usize::from(port - self.config.base));
    }

    /// Takes `key`'s port away from it and keeps the port out of use from then on, as if it
    /// had been occupied from the start: for a port found held outside the allocator (another
    /// process on the machine). Returns the port, or `None` when the key held none.
    pub fn withdraw(&mut self, key: PortKey) -> Option<Port> {
        let holding = self.holdings.remove(&key)?;
        self.config.occupied.insert(holding.port);
        Some(holding.port)
    }

    /// The port `key` holds (while open or lingering).
    pub fn port_of(&self, key: PortKey) -> Option<Port> {
        self.holdings.get(&key).map(|h| h.port)
    }

    /// Number of keys holding a port (open or lingering).
    pub fn held_ports(&self) -> usize {
        self.holdings.len()
    }

    /// Number of ports a new key could still take.
    pub fn free_ports(&self) -> usize {
        self.free.free_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(session: u64, account: u64) -> SessionRef {
        SessionRef { session, account }
    }

    fn per_session() -> PortAllocator {
        PortAllocator::new(AllocatorConfig::new(SharingRule::PerSession, 33001)).unwrap()
    }

    #[test]
    fn a_withdrawn_port_stays_out_of_use() {
        let mut ports = per_session();
        let key = PortKey::Session(1);
        assert_eq!(ports.acquire(key), Ok(33001));
        assert_eq!(ports.withdraw(key), Some(33001));
        assert_eq!(ports.withdraw(key), None);
        assert!(ports.config().occupied.contains(&33001));
        assert_eq!(ports.acquire(key), Ok(33002));
        assert_eq!(ports.release(key), Ok(Closed::Freed { port: 33002 }));
        assert_eq!(ports.acquire(PortKey::Session(2)), Ok(33002));
    }

    #[test]
    fn hands_out_incrementally_from_base() {
        let mut ports = per_session();
        let got: Vec<Port> = (0..10)
            .map(|i| ports.open(session(i, 0)).unwrap())
            .collect();
        assert_eq!(got, (33001..=33010).collect::<Vec<_>>());
    }

    #[test]
    fn reuses_the_lowest_freed_port() {
        let mut ports = per_session();
        for i in 0..5 {
            ports.open(session(i, 0)).unwrap();
        }
        ports.close(session(3, 0)).unwrap();
        ports.close(session(1, 0)).unwrap();
        assert_eq!(ports.open(session(10, 0)).unwrap(), 33002);
        assert_eq!(ports.open(session(11, 0)).unwrap(), 33004);
        assert_eq!(ports.open(session(12, 0)).unwrap(), 33006);
    }

    #[test]
    fn skips_in_use() {
        let config = AllocatorConfig::new(SharingRule::PerSession, 33001)
            .with_occupied([33001, 33003, 33004, 40000, 1000]);
        let mut ports = PortAllocator::new(config).unwrap();
        let got: Vec<Port> = (0..3).map(|i| ports.open(session(i, 0)).unwrap()).collect();
        assert_eq!(got, [33002, 33005, 33006]);
    }

    #[test]
    fn exhausts_at_the_cap() {
        let config = AllocatorConfig::new(SharingRule::PerSession, 33001).with_max_port(33003);
        let mut ports = PortAllocator::new(config).unwrap();
        for i in 0..3 {
            ports.open(session(i, 0)).unwrap();
        }
        assert_eq!(
            ports.open(session(3, 0)),
            Err(AllocError::NoFreePort {
                first: 33001,
                last: 33003
            })
        );
        ports.close(session(0, 0)).unwrap();
        assert_eq!(ports.open(session(3, 0)), Ok(33001));
    }

    #[test]
    fn exhausts_at_65535() {
        let mut ports =
            PortAllocator::new(AllocatorConfig::new(SharingRule::PerSession, 65534)).unwrap();
        assert_eq!(ports.open(session(0, 0)), Ok(65534));
        assert_eq!(ports.open(session(1, 0)), Ok(65535));
        assert!(ports.open(session(2, 0)).is_err());
    }

    #[test]
    fn accounts_share_on_bsd() {
        let mut ports =
            PortAllocator::new(AllocatorConfig::new(SharingRule::PerAccount, 33001)).unwrap();
        assert_eq!(ports.open(session(1, 7)), Ok(33001));
        assert_eq!(ports.open(session(2, 7)), Ok(33001));
        assert_eq!(ports.open(session(3, 8)), Ok(33002));
        assert_eq!(
            ports.close(session(1, 7)),
            Ok(Closed::StillShared { port: 33001 })
        );
        assert_eq!(
            ports.close(session(2, 7)),
            Ok(Closed::Freed { port: 33001 })
        );
        assert_eq!(ports.open(session(4, 9)), Ok(33001));
    }

    #[test]
    fn linux_reuse_shares_one_port() {
        let mut ports =
            PortAllocator::new(AllocatorConfig::new(SharingRule::Shared, 33001)).unwrap();
        for i in 0..100 {
            assert_eq!(ports.open(session(i, i)), Ok(33001));
        }
        assert_eq!(ports.held_ports(), 1);
    }

    #[test]
    fn linger_keeps_the_port_until_expired() {
        let config = AllocatorConfig::new(SharingRule::PerAccount, 33001).with_linger(true);
        let mut ports = PortAllocator::new(config).unwrap();
        ports.open(session(1, 1)).unwrap();
        let Ok(Closed::Lingering { port, ticket }) = ports.close(session(1, 1)) else {
            panic!("expected linger");
        };
        assert_eq!(port, 33001);
        assert_eq!(
            ports.open(session(2, 2)),
            Ok(33002),
            "lingering port not reused"
        );
        // The account comes back during linger: same port, and the old ticket goes stale.
        assert_eq!(ports.open(session(3, 1)), Ok(33001));
        assert_eq!(ports.expire(PortKey::Account(1), ticket), None);
        let Ok(Closed::Lingering { ticket, .. }) = ports.close(session(3, 1)) else {
            panic!("expected linger");
        };
        assert_eq!(ports.expire(PortKey::Account(1), ticket), Some(33001));
        assert_eq!(ports.open(session(4, 3)), Ok(33001));
    }

    #[test]
    fn closing_what_is_not_open_is_an_error() {
        let mut ports = per_session();
        assert_eq!(
            ports.close(session(1, 1)),
            Err(AllocError::NotHeld(PortKey::Session(1)))
        );
    }

    #[test]
    fn rejects_bad_config() {
        let config = AllocatorConfig::new(SharingRule::PerSession, 33001).with_max_port(33000);
        assert!(matches!(
            PortAllocator::new(config),
            Err(AllocError::CapBelowBase { .. })
        ));
        assert_eq!(
            PortAllocator::new(AllocatorConfig::new(SharingRule::PerSession, 0)).err(),
            Some(AllocError::BasePortZero)
        );
    }
}
