//! The node side: one WireGuard peer (the server), one small TCP/IP stack on the node address.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};

use boringtun::noise::errors::WireGuardError;
use boringtun::noise::{Tunn, TunnResult};
use boringtun::x25519;
use bytes::Bytes;
use drover_siderolink::TUNNEL_MTU;
use drover_siderolink::keys::{KeyPair, PublicKey};
use parking_lot::Mutex;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::stack::{Stack, TunnelListener, TunnelStream};
use crate::udp::UdpCarrier;
use crate::{
    DEFAULT_NODE_TCP_BUFFER, DEFAULT_PERSISTENT_KEEPALIVE, MAX_DATAGRAM, SCRATCH, TIMER_TICK,
    packet,
};

/// How a node reaches the server.
pub enum NodeEndpoint {
    /// WireGuard over UDP to this server endpoint.
    Udp(SocketAddr),
    /// WireGuard datagrams handed to another carrier (a gRPC stream): `outgoing` takes the
    /// datagrams to send, `incoming` yields the datagrams received.
    Channel {
        outgoing: mpsc::Sender<Bytes>,
        incoming: mpsc::Receiver<Bytes>,
    },
}

impl fmt::Debug for NodeEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeEndpoint::Udp(addr) => write!(f, "Udp({addr})"),
            NodeEndpoint::Channel { .. } => f.write_str("Channel"),
        }
    }
}

/// How a node link is set up.
#[derive(Debug)]
pub struct NodeConfig {
    pub key: KeyPair,
    /// The node's tunnel address (from `ProvisionResponse.node_address_prefix`).
    pub address: Ipv6Addr,
    pub server_public_key: PublicKey,
    pub server_address: Ipv6Addr,
    pub endpoint: NodeEndpoint,
    /// Zero disables it. Talos uses 25 s.
    pub persistent_keepalive: Duration,
    /// Per-direction buffer of each TCP connection.
    pub tcp_buffer_size: usize,
}

impl NodeConfig {
    /// Keepalive 25 s and 16 KiB TCP buffers.
    pub fn new(
        key: KeyPair,
        address: Ipv6Addr,
        server_public_key: PublicKey,
        server_address: Ipv6Addr,
        endpoint: NodeEndpoint,
    ) -> NodeConfig {
        NodeConfig {
            key,
            address,
            server_public_key,
            server_address,
            endpoint,
            persistent_keepalive: DEFAULT_PERSISTENT_KEEPALIVE,
            tcp_buffer_size: DEFAULT_NODE_TCP_BUFFER,
        }
    }
}

/// A node's WireGuard link to the server, with a TCP/IP stack on the node's tunnel address.
///
/// A cheap handle (`Arc` inside). Two tasks: the TCP/IP stack, and one loop that receives
/// datagrams and ticks the WireGuard timers every [`TIMER_TICK`]. Dropping the last handle
/// stops them; [`NodeLink::shutdown`] does so and waits.
#[derive(Clone)]
pub struct NodeLink {
    core: Arc<NodeCore>,
}

struct NodeCore {
    address: Ipv6Addr,
    server_address: Ipv6Addr,
    public_key: PublicKey,
    wg: Mutex<NodeWireGuard>,
    carrier: Carrier,
    keepalive: Option<Duration>,
    stack: Stack,
    cancel: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    runtime: tokio::runtime::Handle,
}

struct NodeWireGuard {
    tunn: Tunn,
    /// Last time a handshake was started because the previous attempts had expired.
    last_restart: Instant,
}

enum Carrier {
    Udp {
        target: Mutex<UdpTarget>,
        rebound: Arc<Notify>,
    },
    Channel {
        outgoing: mpsc::Sender<Bytes>,
    },
}

struct UdpTarget {
    socket: Arc<UdpCarrier>,
    endpoint: SocketAddr,
}

fn wildcard_for(endpoint: SocketAddr) -> SocketAddr {
    match endpoint {
        SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
    }
}

impl NodeLink {
    /// Starts the link: binds a UDP socket (for a UDP endpoint) and sends the first handshake.
    pub async fn start(config: NodeConfig) -> io::Result<NodeLink> {
        let secret = x25519::StaticSecret::from(config.key.secret_bytes());
        let keepalive =
            (!config.persistent_keepalive.is_zero()).then_some(config.persistent_keepalive);
        let keepalive_secs = keepalive.map(|k| k.as_secs().clamp(1, u64::from(u16::MAX)) as u16);
        let tunn = Tunn::new(
            secret,
            x25519::PublicKey::from(*config.server_public_key.as_bytes()),
            None,
            keepalive_secs,
            rand::random::<u32>() & 0x00ff_ffff,
            None,
        );
        let (carrier, incoming) = match config.endpoint {
            NodeEndpoint::Udp(endpoint) => {
                let socket = UdpCarrier::bind(wildcard_for(endpoint))?;
                let carrier = Carrier::Udp {
                    target: Mutex::new(UdpTarget {
                        socket: Arc::new(socket),
                        endpoint,
                    }),
                    rebound: Arc::new(Notify::new()),
                };
                (carrier, None)
            }
            NodeEndpoint::Channel { outgoing, incoming } => {
                (Carrier::Channel { outgoing }, Some(incoming))
            }
        };
        let cancel = CancellationToken::new();
        let core = Arc::new_cyclic(|weak: &Weak<NodeCore>| {
            let egress_core = weak.clone();
            let egress = Box::new(move |packet: &[u8]| {
                if let Some(core) = egress_core.upgrade() {
                    core.outbound(packet);
                }
            });
            NodeCore {
                address: config.address,
                server_address: config.server_address,
                public_key: config.key.public(),
                wg: Mutex::new(NodeWireGuard {
                    tunn,
                    last_restart: Instant::now(),
                }),
                carrier,
                keepalive,
                stack: Stack::start(config.address, TUNNEL_MTU, config.tcp_buffer_size, egress),
                cancel: cancel.clone(),
                tasks: Mutex::new(Vec::new()),
                runtime: tokio::runtime::Handle::current(),
            }
        });
        let weak = Arc::downgrade(&core);
        let task = match (&core.carrier, incoming) {
            (Carrier::Udp { rebound, .. }, _) => {
                tokio::spawn(udp_loop(weak, rebound.clone(), cancel))
            }
            (Carrier::Channel { .. }, incoming) => {
                tokio::spawn(channel_loop(weak, incoming, cancel))
            }
        };
        core.tasks.lock().push(task);
        core.initiate(false);
        Ok(NodeLink { core })
    }

    /// The node's tunnel address.
    pub fn address(&self) -> Ipv6Addr {
        self.core.address
    }

    pub fn public_key(&self) -> PublicKey {
        self.core.public_key
    }

    /// When the current WireGuard session with the server was established.
    pub fn last_handshake(&self) -> Option<SystemTime> {
        let wg = self.core.wg.lock();
        wg.tunn
            .time_since_last_handshake()
            .and_then(|d| SystemTime::now().checked_sub(d))
    }

    /// Starts a new handshake with the server now (a session is renewed every two minutes by
    /// itself; a node checking handshakes more often than that renews it sooner).
    pub fn rehandshake(&self) {
        self.core.initiate(true);
    }

    /// Moves to another server endpoint (Talos does so when handshakes get stale) and starts a
    /// handshake there. Ignored for a channel carrier.
    pub fn set_udp_endpoint(&self, endpoint: SocketAddr) {
        let Carrier::Udp { target, rebound } = &self.core.carrier else {
            tracing::warn!(%endpoint, "set_udp_endpoint on a link carried by a channel: ignored");
            return;
        };
        {
            let mut target = target.lock();
            let same_family = target
                .socket
                .local_addr()
                .is_ok_and(|local| local.is_ipv4() == endpoint.is_ipv4());
            if !same_family {
                match self.core.bind_udp(wildcard_for(endpoint)) {
                    Ok(socket) => {
                        target.socket = Arc::new(socket);
                        rebound.notify_one();
                    }
                    Err(e) => {
                        tracing::warn!(%endpoint, error = %e, "cannot bind a UDP socket for the new endpoint");
                    }
                }
            }
            target.endpoint = endpoint;
        }
        self.core.initiate(true);
    }

    /// Listens on `[node address]:port` inside the tunnel (Talos apid: 50000).
    pub async fn listen(&self, port: u16) -> io::Result<TunnelListener> {
        self.core.stack.listen(port)
    }

    /// Opens a TCP connection through the tunnel, e.g. to `[server]:8090`.
    pub async fn connect(&self, server: SocketAddrV6) -> io::Result<TunnelStream> {
        self.core.stack.connect(server).await
    }

    /// Stops the link's tasks and resets its connections.
    pub async fn shutdown(&self) {
        crate::stop_tasks(&self.core.cancel, &self.core.stack, &self.core.tasks).await;
    }
}

impl fmt::Debug for NodeLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeLink")
            .field("address", &self.core.address)
            .field("public_key", &self.core.public_key)
            .finish_non_exhaustive()
    }
}

impl Drop for NodeCore {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl NodeCore {
    fn bind_udp(&self, addr: SocketAddr) -> io::Result<UdpCarrier> {
        let _guard = self.runtime.enter();
        UdpCarrier::bind(addr)
    }

    fn send(&self, datagram: &[u8]) {
        match &self.carrier {
            Carrier::Udp { target, .. } => {
                let target = target.lock();
                if let Err(e) = target.socket.send_to(datagram, target.endpoint) {
                    tracing::trace!(error = %e, "node datagram not sent");
                }
            }
            Carrier::Channel { outgoing } => {
                if outgoing.try_send(Bytes::copy_from_slice(datagram)).is_err() {
                    tracing::trace!("node datagram not sent: carrier full or gone");
                }
            }
        }
    }

    /// Sends a handshake initiation now (`force`: even if one is in flight).
    fn initiate(&self, force: bool) {
        let mut scratch = [0u8; 256];
        let mut wg = self.wg.lock();
        if let TunnResult::WriteToNetwork(datagram) =
            wg.tunn.format_handshake_initiation(&mut scratch, force)
        {
            self.send(datagram);
        }
    }

    fn handle_datagram(&self, datagram: &[u8], from: Option<IpAddr>, scratch: &mut [u8]) {
        if datagram.len() > MAX_DATAGRAM {
            return;
        }
        let mut wg = self.wg.lock();
        let delivered = match wg.tunn.decapsulate(from, datagram, scratch) {
            TunnResult::Err(e) => {
                tracing::trace!(error = ?e, "node datagram dropped");
                return;
            }
            TunnResult::Done => None,
            TunnResult::WriteToNetwork(reply) => {
                self.send(reply);
                None
            }
            TunnResult::WriteToTunnelV6(packet, _) => Some(packet.to_vec()),
            TunnResult::WriteToTunnelV4(_, _) => None,
        };
        while let TunnResult::WriteToNetwork(queued) = wg.tunn.decapsulate(None, &[], scratch) {
            self.send(queued);
        }
        drop(wg);
        if let Some(packet) = delivered {
            // AllowedIPs = the server address only; and only packets for this node.
            if packet::ipv6_addresses(&packet) == Some((self.server_address, self.address)) {
                self.stack.deliver(packet);
            } else {
                tracing::trace!("node dropped a packet not from the server or not for it");
            }
        }
    }

    fn outbound(&self, packet: &[u8]) {
        let mut scratch = [0u8; TUNNEL_MTU + 256];
        if packet.len() + 32 > scratch.len() {
            return;
        }
        let mut wg = self.wg.lock();
        if let TunnResult::WriteToNetwork(datagram) = wg.tunn.encapsulate(packet, &mut scratch) {
            self.send(datagram);
        }
    }

    fn tick(&self, scratch: &mut [u8]) {
        let mut wg = self.wg.lock();
        match wg.tunn.update_timers(scratch) {
            TunnResult::WriteToNetwork(datagram) => self.send(datagram),
            TunnResult::Err(WireGuardError::ConnectionExpired) => {
                // Handshakes gave up (server unreachable for 90 s); like the kernel with a
                // persistent keepalive, try again every keepalive interval.
                if let Some(keepalive) = self.keepalive
                    && wg.last_restart.elapsed() >= keepalive
                {
                    wg.last_restart = Instant::now();
                    if let TunnResult::WriteToNetwork(datagram) =
                        wg.tunn.format_handshake_initiation(scratch, false)
                    {
                        self.send(datagram);
                    }
                }
            }
            _ => {}
        }
    }
}

async fn udp_loop(core: Weak<NodeCore>, rebound: Arc<Notify>, cancel: CancellationToken) {
    let mut interval = tokio::time::interval(TIMER_TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // One byte more than accepted, so oversized datagrams are recognised (and dropped).
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    let mut scratch = vec![0u8; SCRATCH];
    loop {
        let socket = {
            let Some(core) = core.upgrade() else { break };
            let Carrier::Udp { target, .. } = &core.carrier else {
                break;
            };
            target.lock().socket.clone()
        };
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = rebound.notified() => continue,
            _ = interval.tick() => {
                let Some(core) = core.upgrade() else { break };
                core.tick(&mut scratch);
            }
            received = socket.recv_from(&mut buf) => {
                let Some(core) = core.upgrade() else { break };
                match received {
                    Ok((len, from)) => core.handle_datagram(&buf[..len], Some(from.ip()), &mut scratch),
                    Err(e) => {
                        tracing::trace!(error = %e, "node UDP receive failed");
                        drop(core);
                        // Back off briefly so a persistent error cannot spin.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        }
    }
}

async fn channel_loop(
    core: Weak<NodeCore>,
    mut incoming: Option<mpsc::Receiver<Bytes>>,
    cancel: CancellationToken,
) {
    let mut interval = tokio::time::interval(TIMER_TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut scratch = vec![0u8; SCRATCH];
    enum Event {
        Stop,
        Tick,
        Datagram(Option<Bytes>),
    }
    loop {
        let next = async {
            match incoming.as_mut() {
                Some(rx) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        let event = tokio::select! {
            _ = cancel.cancelled() => Event::Stop,
            _ = interval.tick() => Event::Tick,
            datagram = next => Event::Datagram(datagram),
        };
        match event {
            Event::Stop => break,
            Event::Tick => {
                let Some(core) = core.upgrade() else { break };
                core.tick(&mut scratch);
            }
            // The carrier is gone; keep the timers running until shutdown.
            Event::Datagram(None) => incoming = None,
            Event::Datagram(Some(datagram)) => {
                let Some(core) = core.upgrade() else { break };
                core.handle_datagram(&datagram, None, &mut scratch);
            }
        }
    }
}
