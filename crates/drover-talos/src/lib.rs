//! Talos machine API support for Drover.
//!
//! - [`apid`]: an emulated Talos machine API server in maintenance mode (self-signed TLS, no
//!   client certificate), servable on any stream of connections (e.g. a userspace TCP stack
//!   inside a WireGuard tunnel).
//! - [`client`]: the channel droverd uses to reach a node's apid in maintenance mode (TLS
//!   without server verification, no client certificate) over any dialer, plus typed helpers.
//! - [`events`]: decoding (and, for the emulator, encoding) of the `machine.*Event` messages a
//!   node publishes to the event sink.
//! - [`kmsg`]: the JSON-lines kernel log format a node streams to `talos.logging.kernel`.
//!
//! The generated protobuf types live in [`drover_proto::talos`], re-exported as [`proto`].

pub mod apid;
pub mod client;
pub mod events;
pub mod facts;
pub mod kmsg;

pub use drover_proto::talos as proto;
pub use facts::{DiskFact, MachineFacts};

/// Port of the Talos machine API (apid) on a node's tunnel address.
pub const APID_PORT: u16 = 50000;
/// Default port of the event sink on the server's tunnel address (`talos.events.sink`).
pub const EVENT_SINK_PORT: u16 = 8090;
/// Default port of the kernel log receiver on the server's tunnel address
/// (`talos.logging.kernel`).
pub const KMSG_PORT: u16 = 8092;
