//! Talos machine API support for Drover.
//!
//! - [`apid`]: an emulated Talos machine API server, in maintenance mode (self-signed TLS, no
//!   client certificate) or configured (mutual TLS against the cluster's OS CA, role-based
//!   access), servable on any stream of connections (e.g. a userspace TCP stack inside a
//!   WireGuard tunnel). What the calls do is up to a [`apid::Machine`].
//! - [`client`]: the channels droverd uses to reach a node's apid over any dialer (maintenance:
//!   TLS without verification; configured: mutual TLS), and typed calls on them.
//! - [`calls`]: what those calls carry, shared by both sides.
//! - [`events`]: decoding (and, for the emulator, encoding) of the `machine.*Event` messages a
//!   node publishes to the event sink.
//! - [`kmsg`]: the JSON-lines kernel log format a node streams to `talos.logging.kernel`.
//! - [`versions`]: Talos versions and installer images (which upgrade call a node serves).
//!
//! The generated protobuf types live in [`drover_proto::talos`], re-exported as [`proto`].

pub mod apid;
pub mod calls;
pub mod client;
pub mod events;
pub mod facts;
pub mod kmsg;
mod tls;
pub mod versions;

pub use apid::Role;
pub use calls::{Applied, ApplyMode, EtcdMember, EtcdStatus, InstallProgress, ResetOptions};
pub use drover_proto::talos as proto;
pub use facts::{DiskFact, MachineFacts};
pub use tls::CredentialsError;
pub use versions::{TalosVersion, installer_image, version_of_installer_image};

/// Port of the Talos machine API (apid) on a node's tunnel address.
pub const APID_PORT: u16 = 50000;
/// Default port of the event sink on the server's tunnel address (`talos.events.sink`).
pub const EVENT_SINK_PORT: u16 = 8090;
/// Default port of the kernel log receiver on the server's tunnel address
/// (`talos.logging.kernel`).
pub const KMSG_PORT: u16 = 8092;
