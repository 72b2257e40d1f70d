//! Emulated Talos machines that speak the same wire protocol as a real node.
//!
//! An [`EmulatedMachine`] is one node: a stable [`MachineIdentity`] (SMBIOS UUID and node unique
//! token, derived from a seed and an index) plus the state of its current boot (the WireGuard key
//! a node generates each boot and what the last `Provision` call gave it). A [`Fleet`] runs many
//! of them in one process over one shared HTTP/2 connection, with a bound on the calls in flight.
//!
//! The protocol rules themselves (join URLs, the endpoint-order quirk, key encoding) come from
//! `drover-siderolink`, shared with the server; this crate only adds the I/O a node does.
//!
//! The `drover-emu` binary runs a fleet until SIGINT/SIGTERM (every flag also reads
//! `DROVER_EMU_<FLAG>`):
//!
//! ```text
//! drover-emu --api 'grpc://HOST:PORT?jointoken=TOKEN' --machines 100 [--seed drover-emu]
//!            [--talos-version v1.13.8] [--concurrency 64]
//! ```
//!
//! A running machine ([`Fleet::run`]) brings up its WireGuard tunnel in userspace (UDP, or
//! carried over gRPC with `grpc_tunnel=true`), serves a maintenance-mode Talos API on its tunnel
//! address, publishes its boot events and streams kernel log lines, and follows Talos's
//! reconnect rules ([`NodeBehaviour`]). Installs and upgrades come later.

mod error;
mod fleet;
mod identity;
mod link;
mod machine;
mod node;
mod retry;

pub use error::ProvisionError;
pub use fleet::{DEFAULT_CONCURRENCY, Fleet, FleetConfig};
pub use identity::{DEFAULT_SEED, MachineIdentity};
pub use machine::{DEFAULT_TALOS_VERSION, EmulatedMachine, PROVISION_TIMEOUT, Provisioned};
pub use node::{NodeBehaviour, facts_of};
pub use retry::RetryPolicy;

// What callers need to drive the API without naming the protocol crates themselves.
pub use drover_siderolink::JoinUrl;
pub use drover_siderolink::keys::{KeyPair, PublicKey};
pub use tokio_util::sync::CancellationToken;
