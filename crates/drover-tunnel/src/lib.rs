//! Userspace WireGuard tunnels for SideroLink: no root, no TUN device, no kernel module.
//!
//! A Talos node brings up WireGuard (MTU 1280, one peer = the server, keepalive 25 s) to the
//! server's UDP endpoint, or sends the same datagrams over a gRPC stream when UDP is blocked.
//! This crate terminates those tunnels in the process:
//!
//! - [`Hub`] is the server side: one static key, one optional UDP socket, many peers (machines),
//!   one TCP/IPv6 stack holding the server's tunnel address. Services listen on it
//!   ([`Hub::listen`]: event sink, kernel logs) and the control plane dials machines
//!   ([`Hub::connect`]: apid on `[machine]:50000`).
//! - [`NodeLink`] is the node side (for the emulator): one peer, the server.
//!
//! WireGuard is `boringtun`'s Noise state machine; TCP/IP is `smoltcp`, bridged to tokio by
//! [`TunnelListener`] and [`TunnelStream`] (`AsyncRead + AsyncWrite`, tonic `Connected`).
//!
//! Security rules the hub enforces: datagrams are attributed to peers by WireGuard only
//! (handshake initiations by the static key they carry, everything else by receiver index); a
//! decrypted packet must come from the peer's own tunnel address and be addressed to the server
//! (machines never reach each other); outbound packets go only to the peer owning the
//! destination; endpoints roam to wherever the last authenticated datagram came from.
//!
//! Tasks and cost. A hub runs three tasks whatever its size: the UDP receive loop (decryption),
//! one timer task ticking every peer every [`TIMER_TICK`], and the TCP/IP stack task
//! (encryption of outbound packets). A node link runs two: its stack task, and one loop that
//! receives datagrams and ticks its timers. Nothing busy-polls: the stack sleeps until smoltcp's
//! next deadline or new work. Measured: about 33 KiB of resident memory per idle node link
//! together with its hub peer (a WireGuard `Tunn` is 11 KiB on each side), plus the TCP
//! buffers of each connection (allocated zeroed, resident as they fill).
//!
//! Locking: each peer's WireGuard state has its own mutex; the peer table is a read-mostly
//! `RwLock`; a stack's sockets share one mutex, held for short rounds (at most 256 packets).

mod hub;
mod node;
mod packet;
mod stack;
mod udp;

pub use hub::{Hub, HubConfig, HubCounters, PeerEndpoint, PeerStatus};
pub use node::{NodeConfig, NodeEndpoint, NodeLink};
pub use stack::{TunnelConnectInfo, TunnelIncoming, TunnelListener, TunnelStream};

/// Default per-direction TCP buffer of a hub connection.
pub const DEFAULT_HUB_TCP_BUFFER: usize = 64 * 1024;
/// Default per-direction TCP buffer of a node connection (thousands of nodes share a process).
pub const DEFAULT_NODE_TCP_BUFFER: usize = 16 * 1024;
/// Default persistent keepalive of a node, as Talos configures it.
pub const DEFAULT_PERSISTENT_KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(25);
/// How often WireGuard timers are ticked (one task for all hub peers; one per node link).
pub const TIMER_TICK: std::time::Duration = std::time::Duration::from_millis(500);

/// Largest WireGuard datagram accepted (an MTU-sized packet plus WireGuard overhead, with room).
pub(crate) const MAX_DATAGRAM: usize = 4096;
/// Scratch buffer for one WireGuard operation: big enough for any accepted datagram.
pub(crate) const SCRATCH: usize = MAX_DATAGRAM + 64;

/// Stops a hub's or link's tasks: cancel them, shut the stack down, wait for each task.
pub(crate) async fn stop_tasks(
    cancel: &tokio_util::sync::CancellationToken,
    stack: &stack::Stack,
    tasks: &parking_lot::Mutex<Vec<tokio::task::JoinHandle<()>>>,
) {
    cancel.cancel();
    stack.shutdown().await;
    let tasks = std::mem::take(&mut *tasks.lock());
    for task in tasks {
        let _ = task.await;
    }
}
