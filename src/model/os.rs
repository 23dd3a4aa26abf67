//! Server operating systems and the rule that decides which concurrent transfer sessions
//! may share one UDP port (DESIGN.md, "Port-sharing rules").
//!
//! | server OS | who shares a port | key of a port |
//! |---|---|---|
//! | windows | nobody | the session |
//! | macos, freebsd | sessions of one user account (SO_REUSEPORT is per user) | the account |
//! | linux, `udp_port_reuse = true` (default) | every session | one shared key |
//! | linux, `udp_port_reuse = false` | nobody | the session |
//!
//! ```
//! use udprange::model::{PortKey, ServerOs, SessionRef, SharingRule};
//! let rule = SharingRule::for_os(ServerOs::Macos, true);
//! assert_eq!(rule, SharingRule::PerAccount);
//! assert_eq!(rule.key(SessionRef { session: 7, account: 2 }), PortKey::Account(2));
//! ```

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// The transfer server's operating system.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ServerOs {
    Windows,
    Macos,
    Freebsd,
    Linux,
}

impl ServerOs {
    pub const ALL: [ServerOs; 4] = [Self::Windows, Self::Macos, Self::Freebsd, Self::Linux];

    pub fn name(self) -> &'static str {
        match self {
            Self::Windows => "windows",
            Self::Macos => "macos",
            Self::Freebsd => "freebsd",
            Self::Linux => "linux",
        }
    }
}

impl fmt::Display for ServerOs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// SSH's port: the control port of a server other than Windows, unless configured otherwise.
pub const SSH_PORT: u16 = 22;
/// The vendor's control port: a Windows server's default, and the one the vendor recommends
/// instead of SSH's 22 on the others.
pub const VENDOR_CONTROL_PORT: u16 = 33001;

/// The TCP control port a client connects to, and why that one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct ControlPort {
    pub port: u16,
    pub why: String,
}

impl ControlPort {
    /// The port `given` (`--ssh-port`), else the OS's default: "TCP/33001 by default, when
    /// connecting to a Windows server, or on another non-default port for other server
    /// operating systems" (the seed), SSH's 22 on those.
    pub fn for_os(os: ServerOs, given: Option<u16>) -> Self {
        match given {
            Some(port) => Self {
                port,
                why: format!("--ssh-port {port}, as given"),
            },
            None if os == ServerOs::Windows => Self {
                port: VENDOR_CONTROL_PORT,
                why: format!(
                    "a Windows server's default control port (TCP/{VENDOR_CONTROL_PORT}); \
                     --ssh-port changes it"
                ),
            },
            None => Self {
                port: SSH_PORT,
                why: format!(
                    "SSH (TCP/{SSH_PORT}), a {os} server's default; the vendor recommends \
                     {VENDOR_CONTROL_PORT} (--ssh-port {VENDOR_CONTROL_PORT} if the server \
                     listens there)"
                ),
            },
        }
    }
}

/// An OS name that is not one of windows, macos, freebsd, linux.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown server OS '{0}' (expected windows, macos, freebsd or linux)")]
pub struct UnknownOs(pub String);

impl FromStr for ServerOs {
    type Err = UnknownOs;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|os| os.name().eq_ignore_ascii_case(text.trim()))
            .ok_or_else(|| UnknownOs(text.to_string()))
    }
}

/// Which concurrent sessions may share one UDP port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SharingRule {
    /// Every session binds its own port (windows; linux without port reuse).
    PerSession,
    /// Sessions of one user account share a port (macOS, FreeBSD).
    PerAccount,
    /// All sessions share one port (linux and other Unix with `udp_port_reuse`).
    Shared,
}

impl SharingRule {
    /// The rule of a server OS. `udp_port_reuse` matters on linux only (vendor default: true).
    pub fn for_os(os: ServerOs, udp_port_reuse: bool) -> Self {
        match os {
            ServerOs::Windows => Self::PerSession,
            ServerOs::Macos | ServerOs::Freebsd => Self::PerAccount,
            ServerOs::Linux if udp_port_reuse => Self::Shared,
            ServerOs::Linux => Self::PerSession,
        }
    }

    /// The key under which a session holds its port.
    pub fn key(self, session: SessionRef) -> PortKey {
        match self {
            Self::PerSession => PortKey::Session(session.session),
            Self::PerAccount => PortKey::Account(session.account),
            Self::Shared => PortKey::Shared,
        }
    }

    /// The rule's code, as JSON gives it: `per-session`, `per-account` or `shared`.
    pub fn code(self) -> &'static str {
        match self {
            Self::PerSession => "per-session",
            Self::PerAccount => "per-account",
            Self::Shared => "shared",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Self::PerSession => "every concurrent session binds its own UDP port",
            Self::PerAccount => "sessions of one user account share a UDP port",
            Self::Shared => "all sessions share one UDP port",
        }
    }
}

/// Identifies a transfer session.
pub type SessionId = u64;
/// Identifies a user account on the server.
pub type AccountId = u64;

/// A transfer session as the allocator sees it: who it is and whose account it runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionRef {
    pub session: SessionId,
    pub account: AccountId,
}

/// What a UDP port is held by: sessions with the same key share a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PortKey {
    Session(SessionId),
    Account(AccountId),
    Shared,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_per_os() {
        assert_eq!(
            SharingRule::for_os(ServerOs::Windows, true),
            SharingRule::PerSession
        );
        assert_eq!(
            SharingRule::for_os(ServerOs::Freebsd, false),
            SharingRule::PerAccount
        );
        assert_eq!(
            SharingRule::for_os(ServerOs::Linux, true),
            SharingRule::Shared
        );
        assert_eq!(
            SharingRule::for_os(ServerOs::Linux, false),
            SharingRule::PerSession
        );
    }

    #[test]
    fn keys() {
        let s = SessionRef {
            session: 5,
            account: 9,
        };
        assert_eq!(SharingRule::PerSession.key(s), PortKey::Session(5));
        assert_eq!(SharingRule::PerAccount.key(s), PortKey::Account(9));
        assert_eq!(SharingRule::Shared.key(s), PortKey::Shared);
    }

    #[test]
    fn parses_os_names() {
        assert_eq!("Windows".parse(), Ok(ServerOs::Windows));
        assert_eq!("macos".parse(), Ok(ServerOs::Macos));
        assert!("solaris".parse::<ServerOs>().is_err());
        for os in ServerOs::ALL {
            assert_eq!(os.to_string().parse(), Ok(os));
        }
    }

    #[test]
    fn the_control_port_follows_the_os_unless_given() {
        assert_eq!(ControlPort::for_os(ServerOs::Windows, None).port, 33001);
        for os in [ServerOs::Macos, ServerOs::Freebsd, ServerOs::Linux] {
            let control = ControlPort::for_os(os, None);
            assert_eq!(control.port, 22);
            assert!(control.why.contains(os.name()), "{control:?}");
        }
        let given = ControlPort::for_os(ServerOs::Windows, Some(2222));
        assert_eq!(given.port, 2222);
        assert_eq!(given.why, "--ssh-port 2222, as given");
    }
}
