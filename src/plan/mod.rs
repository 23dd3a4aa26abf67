//! Range planning: how many UDP ports a server hands out, and exactly which.
//!
//! - [`size`]: the seed's deterministic rule for a fixed number of concurrent transfers.
//! - [`plan_capacity`]: random load, sized to a target blocking with the loss models of
//!   [`erlang`].
//!
//! Both turn a number of ports into a range the same way, [`range_for`]: the ports the
//! first-fit [`PortAllocator`] hands to that many keys held at once, so occupied ports inside
//! the range push its end further and a server cap is honoured.
//!
//! ```
//! use udprange::model::ServerOs;
//! use udprange::plan::{size, ServerSpec, Transfers};
//! let sizing = size(&ServerSpec::new(ServerOs::Windows), &Transfers::concurrent(10)).unwrap();
//! assert_eq!(sizing.udp_range.to_string(), "33001-33010");
//!
//! let mut server = ServerSpec::new(ServerOs::Windows);
//! server.occupied.extend([33004, 33007]);
//! let sizing = size(&server, &Transfers::concurrent(10)).unwrap();
//! assert_eq!(sizing.udp_range.to_string(), "33001-33012");
//! ```

pub mod erlang;
pub mod logsize;

use std::fmt;

use crate::model::{AllocatorConfig, Port, PortAllocator, PortRange, SessionRef, SharingRule};
use erlang::{LossModel, SingleSession};

/// The transfer server `plan` sizes for: the one description of a server.
pub use crate::model::Server as ServerSpec;

/// An allocator that counts ports for `server`: one key per port (the sharing rule is applied
/// by the caller, who turns sessions into keys), its base, cap and occupied ports.
fn counting_allocator(server: &ServerSpec) -> Result<PortAllocator, PlanError> {
    let config = AllocatorConfig::new(SharingRule::PerSession, server.base_port)
        .with_occupied(server.occupied.iter().copied())
        .with_max_port(server.max_port);
    PortAllocator::new(config).map_err(|e| PlanError::Invalid {
        field: Field::MaxPort,
        reason: e.to_string(),
    })
}

/// A fixed concurrent workload (the seed's "10 concurrent connections").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transfers {
    /// Transfers running at once.
    pub concurrent: u64,
    /// Sessions each transfer is split into (multi-session); default 1.
    pub sessions_per_transfer: u64,
    /// User accounts the transfers run under; `None` = each may be its own (worst case).
    pub accounts: Option<u64>,
}

impl Transfers {
    pub fn concurrent(concurrent: u64) -> Self {
        Self {
            concurrent,
            sessions_per_transfer: 1,
            accounts: None,
        }
    }
}

/// The input a [`PlanError`] blames; the CLI turns it into a flag, scenarios into a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    BasePort,
    MaxPort,
    Occupied,
    Concurrent,
    SessionsPerTransfer,
    Accounts,
    Sources,
    OfferedLoad,
    TargetBlocking,
}

impl Field {
    /// The name used for this input in flags and scenario keys (kebab-case).
    pub fn name(self) -> &'static str {
        match self {
            Self::BasePort => "base-port",
            Self::MaxPort => "max-port",
            Self::Occupied => "occupied",
            Self::Concurrent => "concurrent",
            Self::SessionsPerTransfer => "sessions-per-transfer",
            Self::Accounts => "accounts",
            Self::Sources => "sources",
            Self::OfferedLoad => "offered-load",
            Self::TargetBlocking => "target-blocking",
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a plan cannot be made; [`PlanError::field`] names the input at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    #[error("{reason}")]
    Invalid { field: Field, reason: String },
    #[error(
        "{needed} ports are needed but only {available} are free in {first}-{last}{why}",
        why = if *.occupied > 0 { format!(" ({} occupied by other services)", occupied) } else { String::new() }
    )]
    NotEnoughPorts {
        field: Field,
        needed: u64,
        available: u64,
        first: Port,
        last: Port,
        occupied: u64,
    },
}

impl PlanError {
    pub fn field(&self) -> Field {
        match self {
            Self::Invalid { field, .. } | Self::NotEnoughPorts { field, .. } => *field,
        }
    }

    fn invalid(field: Field, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            reason: reason.into(),
        }
    }
}

/// The UDP range a fixed workload needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sizing {
    pub rule: SharingRule,
    pub ports_needed: u64,
    pub udp_range: PortRange,
    /// Occupied ports inside `udp_range`, skipped by the server but inside the rule.
    pub occupied_in_range: Vec<Port>,
}

/// Ports a fixed workload holds at most (the seed's rule):
/// per session: transfers × sessions per transfer; per account: min(transfers, accounts);
/// shared: 1.
pub fn ports_needed(rule: SharingRule, transfers: &Transfers) -> u64 {
    match rule {
        SharingRule::PerSession => transfers
            .concurrent
            .saturating_mul(transfers.sessions_per_transfer),
        SharingRule::PerAccount => transfers
            .accounts
            .map_or(transfers.concurrent, |a| a.min(transfers.concurrent)),
        SharingRule::Shared => 1,
    }
}

/// Deterministic sizing for a fixed number of concurrent transfers.
pub fn size(server: &ServerSpec, transfers: &Transfers) -> Result<Sizing, PlanError> {
    for (field, value) in [
        (Field::Concurrent, Some(transfers.concurrent)),
        (
            Field::SessionsPerTransfer,
            Some(transfers.sessions_per_transfer),
        ),
        (Field::Accounts, transfers.accounts),
    ] {
        if value == Some(0) {
            return Err(PlanError::invalid(
                field,
                format!("{field} must be at least 1"),
            ));
        }
    }
    let rule = server.rule();
    let ports_needed = ports_needed(rule, transfers);
    let udp_range = range_for(server, ports_needed, Field::Concurrent)?;
    Ok(Sizing {
        rule,
        ports_needed,
        udp_range,
        occupied_in_range: occupied_in(server, udp_range),
    })
}

/// The occupied ports inside `range`.
pub fn occupied_in(server: &ServerSpec, range: PortRange) -> Vec<Port> {
    server
        .occupied
        .range(range.first()..=range.last())
        .copied()
        .collect()
}

/// The range holding the ports first fit hands to `ports` keys held at once.
/// `demand` is the input blamed when the ports run out and neither the occupied ports nor
/// the cap are the cause.
pub fn range_for(server: &ServerSpec, ports: u64, demand: Field) -> Result<PortRange, PlanError> {
    let mut allocator = counting_allocator(server)?;
    let available = allocator.free_ports() as u64;
    let last_possible = server.max_port;
    if ports > available {
        let occupied = occupied_in(
            server,
            PortRange::new(server.base_port, last_possible)
                .map_err(|e| PlanError::invalid(Field::BasePort, e.to_string()))?,
        )
        .len() as u64;
        let field = if ports <= available + occupied {
            Field::Occupied
        } else if server.is_capped() {
            Field::MaxPort
        } else {
            demand
        };
        return Err(PlanError::NotEnoughPorts {
            field,
            needed: ports,
            available,
            first: server.base_port,
            last: last_possible,
            occupied,
        });
    }
    let mut first = None;
    let mut last = server.base_port;
    for session in 0..ports.max(1) {
        let port = allocator
            .open(SessionRef {
                session,
                account: session,
            })
            .expect("enough free ports were checked above");
        first.get_or_insert(port);
        last = port;
    }
    Ok(PortRange::new(first.unwrap_or(server.base_port), last)
        .expect("first fit hands out ascending ports"))
}

/// Random load: how port demand arrives (see [`erlang`] for the models).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Demand {
    /// Offered load in Erlang (transfers): arrival rate × mean duration.
    pub offered_load: f64,
    /// A finite number of clients (Engset), if known.
    pub sources: Option<u64>,
    /// Accounts the transfers spread over (macOS/FreeBSD), if known.
    pub accounts: Option<u64>,
    /// Sessions per transfer (multi-session); default 1.
    pub sessions_per_transfer: u64,
}

impl Demand {
    pub fn offered_load(offered_load: f64) -> Self {
        Self {
            offered_load,
            sources: None,
            accounts: None,
            sessions_per_transfer: 1,
        }
    }

    /// The loss model that fits this demand on a server with `rule`.
    pub fn loss_model(&self, rule: SharingRule) -> Result<LossModel, PlanError> {
        let load = self.offered_load;
        if !(load.is_finite() && load >= 0.0) {
            return Err(PlanError::invalid(
                Field::OfferedLoad,
                format!("offered load must be a finite number >= 0 Erlang (got {load})"),
            ));
        }
        for (field, value) in [
            (Field::Sources, self.sources),
            (Field::Accounts, self.accounts),
            (Field::SessionsPerTransfer, Some(self.sessions_per_transfer)),
        ] {
            if value == Some(0) {
                return Err(PlanError::invalid(
                    field,
                    format!("{field} must be at least 1"),
                ));
            }
        }
        if let Some(sources) = self.sources
            && load >= sources as f64
        {
            return Err(PlanError::invalid(
                Field::Sources,
                format!(
                    "{sources} clients cannot offer {load} Erlang: each client carries at most \
                     one transfer, so the offered load must be below the number of sources"
                ),
            ));
        }
        let single = match self.sources {
            Some(sources) => SingleSession::Engset { sources, load },
            None => SingleSession::ErlangB { load },
        };
        Ok(match (rule, self.accounts) {
            (SharingRule::Shared, _) => LossModel::SharedPort,
            (SharingRule::PerAccount, Some(accounts)) => {
                if self.sources.is_some() {
                    return Err(PlanError::invalid(
                        Field::Sources,
                        "sources and accounts cannot both be given for a per-account \
                         server: the accounts are the sources of port demand",
                    ));
                }
                LossModel::PerAccount { accounts, load }
            }
            // Without accounts every transfer may run under its own account (worst case),
            // and the sessions of one transfer share its account's port.
            (SharingRule::PerAccount, None) => single.into(),
            (SharingRule::PerSession, _) => match self.sessions_per_transfer {
                1 => single.into(),
                k => LossModel::MultiSession {
                    inner: single,
                    ports_per_transfer: k,
                },
            },
        })
    }
}

/// A range sized for random load at a target blocking.
#[derive(Debug, Clone, PartialEq)]
pub struct CapacityPlan {
    pub rule: SharingRule,
    pub model: LossModel,
    pub offered_load: f64,
    pub target_blocking: f64,
    pub ports_needed: u64,
    /// Blocking with `ports_needed` ports.
    pub blocking: f64,
    pub udp_range: PortRange,
    pub occupied_in_range: Vec<Port>,
    /// `(ports, blocking)` around the answer.
    pub table: Vec<(u64, f64)>,
}

/// Rows of the table on each side of the answer.
const TABLE_SPAN: u64 = 5;

/// Sizes the range for random load so that blocking is at most `target_blocking`.
pub fn plan_capacity(
    server: &ServerSpec,
    demand: &Demand,
    target_blocking: f64,
) -> Result<CapacityPlan, PlanError> {
    if !(target_blocking > 0.0 && target_blocking < 1.0) {
        return Err(PlanError::invalid(
            Field::TargetBlocking,
            format!("target blocking must be strictly between 0 and 1 (got {target_blocking})"),
        ));
    }
    let rule = server.rule();
    let model = demand.loss_model(rule)?;
    let available = counting_allocator(server)?.free_ports() as u64;
    let Some(ports_needed) = model.ports_for(target_blocking, available) else {
        // More ports than the server can hand out: let range_for say which input is at fault
        // when some port count would do; otherwise no port space is large enough.
        let all_ports = u64::from(crate::model::MAX_PORT);
        return Err(match model.ports_for(target_blocking, all_ports) {
            Some(needed) => range_for(server, needed, Field::OfferedLoad)
                .expect_err("more ports are needed than are free"),
            None => PlanError::invalid(
                Field::OfferedLoad,
                format!(
                    "even all {all_ports} UDP ports would block more than {target_blocking} \
                     of the transfers"
                ),
            ),
        });
    };
    let ports_needed = ports_needed.max(1);
    let udp_range = range_for(server, ports_needed, Field::OfferedLoad)?;
    let table =
        model.table(ports_needed.saturating_sub(TABLE_SPAN).max(1)..=ports_needed + TABLE_SPAN);
    Ok(CapacityPlan {
        rule,
        model,
        offered_load: demand.offered_load,
        target_blocking,
        ports_needed,
        blocking: model.blocking(ports_needed),
        udp_range,
        occupied_in_range: occupied_in(server, udp_range),
        table,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ServerOs;

    fn server(os: ServerOs) -> ServerSpec {
        ServerSpec::new(os)
    }

    fn range(server: &ServerSpec, transfers: Transfers) -> String {
        size(server, &transfers).unwrap().udp_range.to_string()
    }

    #[test]
    fn seed_example_windows_10_concurrent() {
        assert_eq!(
            range(&server(ServerOs::Windows), Transfers::concurrent(10)),
            "33001-33010"
        );
    }

    #[test]
    fn per_os_rules() {
        let t = Transfers {
            concurrent: 10,
            sessions_per_transfer: 2,
            accounts: Some(3),
        };
        assert_eq!(range(&server(ServerOs::Windows), t), "33001-33020");
        assert_eq!(range(&server(ServerOs::Macos), t), "33001-33003");
        assert_eq!(range(&server(ServerOs::Freebsd), t), "33001-33003");
        assert_eq!(range(&server(ServerOs::Linux), t), "33001");
        let mut no_reuse = server(ServerOs::Linux);
        no_reuse.udp_port_reuse = false;
        assert_eq!(range(&no_reuse, t), "33001-33020");
        // macOS without accounts: every transfer may be its own account.
        assert_eq!(
            range(&server(ServerOs::Macos), Transfers::concurrent(10)),
            "33001-33010"
        );
        // More accounts than transfers: the transfers bound it.
        let many = Transfers {
            accounts: Some(50),
            ..Transfers::concurrent(4)
        };
        assert_eq!(range(&server(ServerOs::Macos), many), "33001-33004");
    }

    #[test]
    fn occupied_ports_push_the_end() {
        let mut s = server(ServerOs::Windows);
        s.occupied.extend([33001, 33004, 33007, 33050]);
        let sizing = size(&s, &Transfers::concurrent(10)).unwrap();
        assert_eq!(sizing.udp_range.to_string(), "33002-33013");
        assert_eq!(sizing.occupied_in_range, [33004, 33007]);
    }

    #[test]
    fn running_out_names_the_cause() {
        let mut s = server(ServerOs::Windows);
        s.base_port = 65530;
        let err = size(&s, &Transfers::concurrent(7)).unwrap_err();
        assert_eq!(err.field(), Field::Concurrent);
        s.occupied.insert(65531);
        let err = size(&s, &Transfers::concurrent(6)).unwrap_err();
        assert_eq!(err.field(), Field::Occupied);
        s.max_port = 65533;
        let err = size(&s, &Transfers::concurrent(5)).unwrap_err();
        assert_eq!(err.field(), Field::MaxPort);
        assert_eq!(
            err.to_string(),
            "5 ports are needed but only 3 are free in 65530-65533 (1 occupied by other services)"
        );
    }

    #[test]
    fn zero_inputs_are_rejected() {
        let err = size(&server(ServerOs::Windows), &Transfers::concurrent(0)).unwrap_err();
        assert_eq!(err.field(), Field::Concurrent);
    }

    #[test]
    fn capacity_plan_for_10_erlang() {
        let plan = plan_capacity(
            &server(ServerOs::Windows),
            &Demand::offered_load(10.0),
            0.001,
        )
        .unwrap();
        assert_eq!(plan.ports_needed, 21);
        assert_eq!(plan.udp_range.to_string(), "33001-33021");
        assert!(plan.blocking <= 0.001);
        assert_eq!(plan.table.first().unwrap().0, 16);
        assert_eq!(plan.table.last().unwrap().0, 26);
        // The answer is the smallest: one port less misses the target.
        let below = plan.table.iter().find(|(n, _)| *n == 20).unwrap().1;
        assert!(below > 0.001);
    }

    #[test]
    fn capacity_plan_rejects_bad_inputs() {
        let s = server(ServerOs::Windows);
        for (demand, target, field) in [
            (Demand::offered_load(f64::NAN), 0.001, Field::OfferedLoad),
            (Demand::offered_load(-1.0), 0.001, Field::OfferedLoad),
            (Demand::offered_load(10.0), 0.0, Field::TargetBlocking),
            (Demand::offered_load(10.0), 1.0, Field::TargetBlocking),
            (
                Demand {
                    sources: Some(10),
                    ..Demand::offered_load(10.0)
                },
                0.001,
                Field::Sources,
            ),
            (Demand::offered_load(1e9), 0.001, Field::OfferedLoad),
        ] {
            let err = plan_capacity(&s, &demand, target).unwrap_err();
            assert_eq!(err.field(), field, "{demand:?} {target}: {err}");
        }
    }
}
