//! The port-allocation model: server OS rules, port ranges and the first-fit allocator.
//! It knows nothing of clocks, sockets, files or flags.

mod allocator;
mod first_fit;
mod os;
mod range;
mod server;

pub use allocator::{AllocError, AllocatorConfig, Closed, PortAllocator};
pub use first_fit::FirstFitSet;
pub use os::{
    AccountId, ControlPort, PortKey, SSH_PORT, ServerOs, SessionId, SessionRef, SharingRule,
    UnknownOs, VENDOR_CONTROL_PORT,
};
pub use range::{MAX_PORT, Port, PortBounds, PortRange, RangeError, parse_port};
pub use server::Server;
