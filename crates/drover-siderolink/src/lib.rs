//! SideroLink, the way a Talos node joins a control plane, as pure functions.
//!
//! Nothing here does I/O, so the server and the emulator share one implementation and every rule
//! is unit-tested: the `siderolink.api` URL forms ([`JoinUrl`]), the kernel arguments and
//! join-config documents printed for a join token ([`join`]), the tunnel address plan
//! ([`addressing`]), the endpoint-order quirk of `ProvisionResponse` ([`endpoints`]) and WireGuard
//! key handling ([`keys`]).

pub mod addressing;
pub mod endpoints;
pub mod join;
pub mod keys;
mod url;

pub use url::{JoinUrl, JoinUrlError, Transport};

/// Port of the event sink (`events.EventSinkService`) on the server's tunnel address.
pub const EVENT_SINK_PORT: u16 = 8090;
/// Port of the kernel log receiver on the server's tunnel address.
pub const KERNEL_LOG_PORT: u16 = 8092;
/// Port of the Talos machine API (apid) on every node.
pub const TALOS_API_PORT: u16 = 50000;
/// Port given to virtual peers in WireGuard-over-gRPC mode.
pub const GRPC_TUNNEL_PEER_PORT: u16 = 50889;
/// Tunnel MTU used by Talos for SideroLink.
pub const TUNNEL_MTU: usize = 1280;
