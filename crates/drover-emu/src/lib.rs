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
//!            [--install-duration 1s] [--reboot-duration 1s] [--upgrade-duration 2s]
//!            [--upgrade-fault MACHINE=fail|boot-back-to-old|hang]...
//! ```
//!
//! A running machine ([`Fleet::run`]) brings up its WireGuard tunnel in userspace (UDP, or
//! carried over gRPC with `grpc_tunnel=true`), publishes its boot events, streams kernel log
//! lines, and follows Talos's reconnect rules ([`NodeBehaviour`]). On its tunnel address it
//! serves the Talos machine API, and behaves like a node through cluster creation:
//! - in maintenance mode (no configuration), `ApplyConfiguration` installs and reboots it into
//!   the configuration ([`Lifecycle`] says how long that takes); a new boot has a new boot id
//!   and a new WireGuard key, and provisions again;
//! - running a configuration, apid requires mutual TLS with the cluster's OS CA and enforces
//!   Talos's roles; `Bootstrap`, etcd membership and the Kubernetes nodes are shared by the
//!   machines of a cluster through a [`ClusterRegistry`]; control planes serve a minimal
//!   Kubernetes API on port 6443 ([`KUBERNETES_API_PORT`]) once etcd is bootstrapped;
//! - `Reset` forgets the configuration and reboots it into maintenance mode;
//! - `Upgrade` (Talos < 1.13) or `LifecycleService.Upgrade` (from 1.13) installs the installer
//!   image's version and reboots into it; [`UpgradeFault`]s make that fail, fall back to the old
//!   version, or hang;
//! - the Kubernetes API serves the `kube-system` pods with the component images of the applied
//!   configurations ([`KubernetesImages`]), and `/version` from the answering API server.
//!
//! [`NodeHandle`]s ([`Fleet::nodes`]) show each machine's stage, boot id, Talos version and
//! configuration while the fleet runs, and set its upgrade faults; the [`CallLog`] of the
//! registry ([`ClusterRegistry::calls`]) records every mutating call the machines received, with
//! when it started and when what it started was over.

mod call_log;
mod cluster;
mod config;
mod error;
mod events;
mod fleet;
mod identity;
mod kube;
mod link;
mod machine;
mod node;
mod retry;
mod runtime;
mod services;

pub use call_log::{Call, CallLog, CallRecord};
pub use cluster::{ClusterRegistry, HeldActions};
pub use config::{
    DEFAULT_COREDNS_IMAGE, DEFAULT_KUBERNETES_VERSION, KubernetesImages, MachineType, image_tag,
};
pub use error::ProvisionError;
pub use fleet::{DEFAULT_CONCURRENCY, Fleet, FleetConfig};
pub use identity::{DEFAULT_SEED, MachineIdentity};
pub use kube::KUBERNETES_API_PORT;
pub use machine::{DEFAULT_TALOS_VERSION, EmulatedMachine, PROVISION_TIMEOUT, Provisioned};
pub use node::{NodeBehaviour, facts_of};
pub use retry::RetryPolicy;
pub use runtime::{Lifecycle, NodeHandle, NodeStatus, RunningConfig, UpgradeFault};

// What callers need to drive the API without naming the protocol crates themselves.
pub use drover_siderolink::JoinUrl;
pub use drover_siderolink::keys::{KeyPair, PublicKey};
pub use drover_talos::events::Stage;
pub use tokio_util::sync::CancellationToken;
