//! The server side: one WireGuard key, many peers, one userspace TCP/IP stack.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::SystemTime;

use boringtun::noise::handshake::parse_handshake_anon;
use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::{Packet, Tunn, TunnResult};
use boringtun::x25519;
use bytes::Bytes;
use drover_siderolink::TUNNEL_MTU;
use drover_siderolink::keys::{KeyPair, PublicKey};
use parking_lot::{Mutex, RwLock};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::stack::{Stack, TunnelListener, TunnelStream};
use crate::udp::UdpCarrier;
use crate::{DEFAULT_HUB_TCP_BUFFER, MAX_DATAGRAM, SCRATCH, TIMER_TICK, packet};

/// Handshake messages per second (all peers together) before cookies are demanded. An
/// initiation is counted twice (the hub's own check, then the peer's `Tunn`).
const HANDSHAKE_RATE_LIMIT: u64 = 200;
/// Peer indices are 24 bits; `Tunn` uses the low 8 bits for sessions.
const INDEX_MASK: u32 = 0x00ff_ffff;
/// WireGuard message type of a cookie reply.
const COOKIE_REPLY: u8 = 3;

/// Where a peer's WireGuard datagrams go: a UDP address, or a channel feeding another carrier
/// (a WireGuard-over-gRPC stream).
#[derive(Clone, Debug)]
pub enum PeerEndpoint {
    Udp(SocketAddr),
    Channel(mpsc::Sender<Bytes>),
}

impl PeerEndpoint {
    fn same_as(&self, other: &PeerEndpoint) -> bool {
        match (self, other) {
            (PeerEndpoint::Udp(a), PeerEndpoint::Udp(b)) => a == b,
            (PeerEndpoint::Channel(a), PeerEndpoint::Channel(b)) => a.same_channel(b),
            _ => false,
        }
    }

    /// The source address the cookie mechanism binds to. A channel carrier is authenticated by
    /// its own transport, so all channels share one nominal address.
    fn cookie_address(&self) -> IpAddr {
        match self {
            PeerEndpoint::Udp(addr) => addr.ip(),
            PeerEndpoint::Channel(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        }
    }
}

impl fmt::Display for PeerEndpoint {
    /// `udp:ADDR` or `channel`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerEndpoint::Udp(addr) => write!(f, "udp:{addr}"),
            PeerEndpoint::Channel(_) => f.write_str("channel"),
        }
    }
}

/// How the hub is set up.
#[derive(Debug, Clone)]
pub struct HubConfig {
    pub key: KeyPair,
    /// The server's tunnel address (`::1` of the SideroLink prefix).
    pub server_address: Ipv6Addr,
    /// Where to bind the WireGuard UDP socket; `None` = no UDP socket, carriers only.
    pub udp_bind: Option<SocketAddr>,
    /// Per-direction buffer of each TCP connection in the tunnel.
    pub tcp_buffer_size: usize,
}

impl HubConfig {
    /// No UDP socket and the default 64 KiB TCP buffers.
    pub fn new(key: KeyPair, server_address: Ipv6Addr) -> HubConfig {
        HubConfig {
            key,
            server_address,
            udp_bind: None,
            tcp_buffer_size: DEFAULT_HUB_TCP_BUFFER,
        }
    }
}

/// What the hub knows about one peer.
#[derive(Debug, Clone)]
pub struct PeerStatus {
    pub public_key: PublicKey,
    /// When the current WireGuard session was established.
    pub last_handshake: Option<SystemTime>,
    /// When the last authenticated datagram (keepalives included) arrived: liveness.
    pub last_received: Option<SystemTime>,
    /// Where the last authenticated datagram came from (replies go there).
    pub endpoint: Option<PeerEndpoint>,
    /// Decrypted bytes received from the peer since it was (re)added.
    pub rx_bytes: u64,
    /// Bytes sent to the peer (before encryption).
    pub tx_bytes: u64,
}

/// Why datagrams and packets were dropped, and how many moved. All counts since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HubCounters {
    /// A handshake from a key that is not a peer, or a message for an index no peer owns.
    pub dropped_unknown_peer: u64,
    /// A decrypted packet whose source is not the sending peer's tunnel address.
    pub dropped_spoofed_source: u64,
    /// A decrypted packet not addressed to the server (e.g. to another machine).
    pub dropped_not_for_server: u64,
    /// Malformed datagrams and those failing WireGuard authentication (bad MAC, replay, ...).
    pub dropped_invalid: u64,
    /// Outbound packets to an address with no peer, or to a peer with no known endpoint yet.
    pub dropped_no_route: u64,
    /// Datagrams the carrier could not take (UDP send error, channel full or closed).
    pub dropped_send_failed: u64,
    /// Decrypted packets dropped because the TCP/IP stack was overloaded.
    pub dropped_stack_overload: u64,
    /// Cookie replies sent because handshakes arrived faster than the rate limit.
    pub cookie_replies: u64,
    /// Rounds of the TCP/IP stack task (diagnostics: grows with traffic, not with idle time).
    pub stack_rounds: u64,
    pub rx_datagrams: u64,
    pub tx_datagrams: u64,
}

#[derive(Default)]
struct Counters {
    dropped_unknown_peer: AtomicU64,
    dropped_spoofed_source: AtomicU64,
    dropped_not_for_server: AtomicU64,
    dropped_invalid: AtomicU64,
    dropped_no_route: AtomicU64,
    dropped_send_failed: AtomicU64,
    cookie_replies: AtomicU64,
    rx_datagrams: AtomicU64,
    tx_datagrams: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// The server side of SideroLink tunnels.
///
/// `Hub` is a cheap handle (`Arc` inside): clone it freely. Tasks: one UDP receive loop (if a
/// UDP socket is bound), one timer task for all peers, one TCP/IP stack task. Dropping the last
/// handle stops them; [`Hub::shutdown`] does so and waits.
#[derive(Clone)]
pub struct Hub {
    core: Arc<HubCore>,
}

struct HubCore {
    secret: x25519::StaticSecret,
    public: x25519::PublicKey,
    server_address: Ipv6Addr,
    udp: Option<Arc<UdpCarrier>>,
    rate_limiter: Arc<RateLimiter>,
    peers: RwLock<PeerTable>,
    counters: Counters,
    stack: Stack,
    cancel: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

#[derive(Default)]
struct PeerTable {
    by_key: HashMap<[u8; 32], Arc<Peer>>,
    by_address: HashMap<Ipv6Addr, Arc<Peer>>,
    by_index: HashMap<u32, Arc<Peer>>,
    next_index: u32,
}

struct Peer {
    index: u32,
    public_key: PublicKey,
    address: Ipv6Addr,
    state: Mutex<PeerState>,
}

struct PeerState {
    tunn: Tunn,
    endpoint: Option<PeerEndpoint>,
    /// When the last authenticated datagram (data, keepalive or handshake) arrived.
    last_received: Option<SystemTime>,
}

impl Hub {
    /// Binds the UDP socket (if asked) and starts the hub's tasks.
    pub async fn start(config: HubConfig) -> io::Result<Hub> {
        let udp = match config.udp_bind {
            Some(addr) => Some(Arc::new(UdpCarrier::bind(addr)?)),
            None => None,
        };
        let secret = x25519::StaticSecret::from(config.key.secret_bytes());
        let public = x25519::PublicKey::from(&secret);
        let cancel = CancellationToken::new();
        let core = Arc::new_cyclic(|weak: &Weak<HubCore>| {
            let egress_core = weak.clone();
            let egress = Box::new(move |packet: &[u8]| {
                if let Some(core) = egress_core.upgrade() {
                    core.route_outbound(packet);
                }
            });
            HubCore {
                rate_limiter: Arc::new(RateLimiter::new(&public, HANDSHAKE_RATE_LIMIT)),
                secret,
                public,
                server_address: config.server_address,
                udp: udp.clone(),
                peers: RwLock::new(PeerTable {
                    next_index: rand::random::<u32>() & INDEX_MASK,
                    ..PeerTable::default()
                }),
                counters: Counters::default(),
                stack: Stack::start(
                    config.server_address,
                    TUNNEL_MTU,
                    config.tcp_buffer_size,
                    egress,
                ),
                cancel: cancel.clone(),
                tasks: Mutex::new(Vec::new()),
            }
        });
        let weak = Arc::downgrade(&core);
        let mut tasks = vec![tokio::spawn(timer_loop(weak.clone(), cancel.clone()))];
        if let Some(udp) = udp {
            tasks.push(tokio::spawn(udp_loop(udp, weak, cancel)));
        }
        *core.tasks.lock() = tasks;
        tracing::info!(
            public_key = %config.key.public(),
            server_address = %config.server_address,
            udp = ?core.udp.as_ref().and_then(|u| u.local_addr().ok()),
            "tunnel hub started"
        );
        Ok(Hub { core })
    }

    /// Where the WireGuard UDP socket is bound, if there is one.
    pub fn udp_local_addr(&self) -> Option<SocketAddr> {
        self.core.udp.as_ref().and_then(|u| u.local_addr().ok())
    }

    /// The server's WireGuard public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey::from(self.core.public.to_bytes())
    }

    /// The server's tunnel address.
    pub fn server_address(&self) -> Ipv6Addr {
        self.core.server_address
    }

    /// Adds or replaces the peer that owns `address` (a re-provisioned machine has a new key,
    /// same address). The same key at the same address is left alone (sessions survive); a new
    /// key gets a fresh WireGuard state and the old key's sessions and TCP connections end.
    pub fn upsert_peer(&self, public_key: PublicKey, address: Ipv6Addr) {
        let core = &self.core;
        let mut replaced = None;
        {
            let mut peers = core.peers.write();
            if let Some(existing) = peers.by_address.get(&address)
                && existing.public_key == public_key
            {
                return;
            }
            // A key belongs to one address only.
            if let Some(old) = peers.by_key.get(public_key.as_bytes()).cloned() {
                peers.remove(&old);
                replaced = Some(old.address);
            }
            if let Some(old) = peers.by_address.get(&address).cloned() {
                peers.remove(&old);
                replaced = Some(address);
            }
            let index = peers.allocate_index();
            let tunn = Tunn::new(
                core.secret.clone(),
                x25519::PublicKey::from(*public_key.as_bytes()),
                None,
                None,
                index,
                Some(core.rate_limiter.clone()),
            );
            let peer = Arc::new(Peer {
                index,
                public_key,
                address,
                state: Mutex::new(PeerState {
                    tunn,
                    endpoint: None,
                    last_received: None,
                }),
            });
            peers.by_key.insert(*public_key.as_bytes(), peer.clone());
            peers.by_address.insert(address, peer.clone());
            peers.by_index.insert(index, peer);
        }
        if let Some(address) = replaced {
            core.stack.abort_remote(address);
        }
        tracing::debug!(%public_key, %address, "tunnel peer set");
    }

    /// Forgets the peer owning `address`; its sessions and TCP connections end.
    pub fn remove_peer(&self, address: Ipv6Addr) {
        let removed = {
            let mut peers = self.core.peers.write();
            match peers.by_address.get(&address).cloned() {
                Some(peer) => {
                    peers.remove(&peer);
                    true
                }
                None => false,
            }
        };
        if removed {
            self.core.stack.abort_remote(address);
            tracing::debug!(%address, "tunnel peer removed");
        }
    }

    /// Handles a datagram that arrived on another carrier (a gRPC stream); replies for that
    /// peer then go to `from`.
    pub fn receive_datagram(&self, datagram: &[u8], from: PeerEndpoint) {
        if self.core.cancel.is_cancelled() {
            return;
        }
        thread_local! {
            static SCRATCH_BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; SCRATCH]);
        }
        SCRATCH_BUF.with(|scratch| match scratch.try_borrow_mut() {
            Ok(mut scratch) => self.core.handle_datagram(datagram, from, &mut scratch),
            Err(_) => self
                .core
                .handle_datagram(datagram, from, &mut vec![0u8; SCRATCH]),
        });
    }

    pub fn peer_status(&self, address: Ipv6Addr) -> Option<PeerStatus> {
        let peer = self.core.peers.read().by_address.get(&address).cloned()?;
        Some(peer.status())
    }

    pub fn peer_statuses(&self) -> Vec<(Ipv6Addr, PeerStatus)> {
        let peers: Vec<Arc<Peer>> = self
            .core
            .peers
            .read()
            .by_address
            .values()
            .cloned()
            .collect();
        peers
            .into_iter()
            .map(|peer| (peer.address, peer.status()))
            .collect()
    }

    pub fn counters(&self) -> HubCounters {
        let c = &self.core.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        HubCounters {
            dropped_unknown_peer: get(&c.dropped_unknown_peer),
            dropped_spoofed_source: get(&c.dropped_spoofed_source),
            dropped_not_for_server: get(&c.dropped_not_for_server),
            dropped_invalid: get(&c.dropped_invalid),
            dropped_no_route: get(&c.dropped_no_route),
            dropped_send_failed: get(&c.dropped_send_failed),
            dropped_stack_overload: self.core.stack.dropped_inbound(),
            cookie_replies: get(&c.cookie_replies),
            stack_rounds: self.core.stack.rounds(),
            rx_datagrams: get(&c.rx_datagrams),
            tx_datagrams: get(&c.tx_datagrams),
        }
    }

    /// Listens on `[server_address]:port` inside the tunnel (0 = any free port).
    pub async fn listen(&self, port: u16) -> io::Result<TunnelListener> {
        self.core.stack.listen(port)
    }

    /// Opens a TCP connection to a machine, e.g. `[machine address]:50000`.
    pub async fn connect(&self, peer: SocketAddrV6) -> io::Result<TunnelStream> {
        self.core.stack.connect(peer).await
    }

    /// Stops every task and resets every tunnel connection; listeners stop accepting and
    /// datagrams are ignored from then on. The UDP port is released when the last handle drops.
    pub async fn shutdown(&self) {
        crate::stop_tasks(&self.core.cancel, &self.core.stack, &self.core.tasks).await;
    }
}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub")
            .field("public_key", &self.public_key())
            .field("server_address", &self.core.server_address)
            .field("udp", &self.udp_local_addr())
            .finish_non_exhaustive()
    }
}

impl Drop for HubCore {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl PeerTable {
    fn remove(&mut self, peer: &Arc<Peer>) {
        self.by_key.remove(peer.public_key.as_bytes());
        self.by_address.remove(&peer.address);
        self.by_index.remove(&peer.index);
    }

    fn allocate_index(&mut self) -> u32 {
        loop {
            self.next_index = (self.next_index + 1) & INDEX_MASK;
            if self.next_index != 0 && !self.by_index.contains_key(&self.next_index) {
                return self.next_index;
            }
        }
    }
}

impl Peer {
    fn status(&self) -> PeerStatus {
        let state = self.state.lock();
        let (since, tx, rx, _, _) = state.tunn.stats();
        PeerStatus {
            public_key: self.public_key,
            last_handshake: since.and_then(|d| SystemTime::now().checked_sub(d)),
            last_received: state.last_received,
            endpoint: state.endpoint.clone(),
            rx_bytes: rx as u64,
            tx_bytes: tx as u64,
        }
    }
}

impl HubCore {
    fn send(&self, endpoint: &PeerEndpoint, datagram: &[u8]) {
        let sent = match endpoint {
            PeerEndpoint::Udp(addr) => match &self.udp {
                Some(udp) => udp.send_to(datagram, *addr).is_ok(),
                None => false,
            },
            PeerEndpoint::Channel(tx) => tx.try_send(Bytes::copy_from_slice(datagram)).is_ok(),
        };
        if sent {
            bump(&self.counters.tx_datagrams);
        } else {
            bump(&self.counters.dropped_send_failed);
        }
    }

    /// Attributes a datagram to a peer (by WireGuard alone), decrypts it and polices the packet.
    fn handle_datagram(&self, datagram: &[u8], from: PeerEndpoint, scratch: &mut [u8]) {
        bump(&self.counters.rx_datagrams);
        if datagram.len() > MAX_DATAGRAM {
            bump(&self.counters.dropped_invalid);
            return;
        }
        let cookie_address = Some(from.cookie_address());
        let peer = match Tunn::parse_incoming_packet(datagram) {
            Err(_) => {
                bump(&self.counters.dropped_invalid);
                return;
            }
            Ok(Packet::HandshakeInit(init)) => {
                // MAC1 and load check before the expensive Diffie-Hellman.
                match self
                    .rate_limiter
                    .verify_packet(cookie_address, datagram, scratch)
                {
                    Ok(_) => {}
                    Err(TunnResult::WriteToNetwork(cookie)) => {
                        bump(&self.counters.cookie_replies);
                        self.send(&from, cookie);
                        return;
                    }
                    Err(_) => {
                        bump(&self.counters.dropped_invalid);
                        return;
                    }
                }
                let half = match parse_handshake_anon(&self.secret, &self.public, &init) {
                    Ok(half) => half,
                    Err(_) => {
                        bump(&self.counters.dropped_invalid);
                        return;
                    }
                };
                match self.peers.read().by_key.get(&half.peer_static_public) {
                    Some(peer) => peer.clone(),
                    None => {
                        bump(&self.counters.dropped_unknown_peer);
                        tracing::debug!(
                            public_key = %PublicKey::from(half.peer_static_public),
                            endpoint = %from,
                            "handshake from an unknown WireGuard key dropped"
                        );
                        return;
                    }
                }
            }
            Ok(Packet::HandshakeResponse(p)) => match self.peer_by_index(p.receiver_idx) {
                Some(peer) => peer,
                None => return,
            },
            Ok(Packet::PacketCookieReply(p)) => match self.peer_by_index(p.receiver_idx) {
                Some(peer) => peer,
                None => return,
            },
            Ok(Packet::PacketData(p)) => match self.peer_by_index(p.receiver_idx) {
                Some(peer) => peer,
                None => return,
            },
        };

        let mut state = peer.state.lock();
        let delivered = match state.tunn.decapsulate(cookie_address, datagram, scratch) {
            TunnResult::Err(_) => {
                bump(&self.counters.dropped_invalid);
                return;
            }
            TunnResult::Done => None,
            TunnResult::WriteToNetwork(reply) if reply.first() == Some(&COOKIE_REPLY) => {
                // Under load: a cookie, not proof that the sender holds the key.
                bump(&self.counters.cookie_replies);
                self.send(&from, reply);
                return;
            }
            TunnResult::WriteToNetwork(reply) => {
                self.send(&from, reply);
                None
            }
            TunnResult::WriteToTunnelV6(packet, _) => Some(packet.to_vec()),
            TunnResult::WriteToTunnelV4(_, _) => {
                bump(&self.counters.dropped_spoofed_source);
                None
            }
        };
        // Authenticated: the peer is alive and roams to where this came from.
        state.last_received = Some(SystemTime::now());
        match &state.endpoint {
            Some(current) if current.same_as(&from) => {}
            _ => state.endpoint = Some(from.clone()),
        }
        // Packets queued while no session existed go out now.
        while let TunnResult::WriteToNetwork(queued) = state.tunn.decapsulate(None, &[], scratch) {
            self.send(&from, queued);
        }
        drop(state);

        if let Some(packet) = delivered {
            match packet::ipv6_addresses(&packet) {
                None => bump(&self.counters.dropped_invalid),
                Some((src, _)) if src != peer.address => {
                    bump(&self.counters.dropped_spoofed_source);
                    tracing::trace!(peer = %peer.address, %src, "spoofed source dropped");
                }
                Some((_, dst)) if dst != self.server_address => {
                    bump(&self.counters.dropped_not_for_server);
                    tracing::trace!(peer = %peer.address, %dst, "packet not for the server dropped");
                }
                Some(_) => {
                    self.stack.deliver(packet);
                }
            }
        }
    }

    fn peer_by_index(&self, receiver_idx: u32) -> Option<Arc<Peer>> {
        let peer = self
            .peers
            .read()
            .by_index
            .get(&(receiver_idx >> 8))
            .cloned();
        if peer.is_none() {
            bump(&self.counters.dropped_unknown_peer);
        }
        peer
    }

    /// Encrypts a packet from the stack for the peer owning its destination.
    fn route_outbound(&self, packet: &[u8]) {
        let peer = packet::ipv6_destination(packet)
            .and_then(|dst| self.peers.read().by_address.get(&dst).cloned());
        let Some(peer) = peer else {
            bump(&self.counters.dropped_no_route);
            return;
        };
        let mut scratch = [0u8; TUNNEL_MTU + 256];
        if packet.len() + 32 > scratch.len() {
            bump(&self.counters.dropped_invalid);
            return;
        }
        let mut state = peer.state.lock();
        let PeerState { tunn, endpoint, .. } = &mut *state;
        match tunn.encapsulate(packet, &mut scratch) {
            TunnResult::WriteToNetwork(datagram) => match endpoint {
                Some(endpoint) => self.send(endpoint, datagram),
                None => bump(&self.counters.dropped_no_route),
            },
            TunnResult::Err(e) => {
                tracing::debug!(peer = %peer.address, error = ?e, "encapsulation failed");
            }
            _ => {}
        }
    }

    /// One timer round for every peer that has an endpoint.
    fn tick(&self, scratch: &mut [u8]) {
        self.rate_limiter.reset_count();
        let peers: Vec<Arc<Peer>> = self.peers.read().by_index.values().cloned().collect();
        for peer in peers {
            let mut state = peer.state.lock();
            let PeerState { tunn, endpoint, .. } = &mut *state;
            let Some(endpoint) = endpoint else { continue };
            if let TunnResult::WriteToNetwork(datagram) = tunn.update_timers(scratch) {
                self.send(endpoint, datagram);
            }
        }
    }
}

async fn timer_loop(core: Weak<HubCore>, cancel: CancellationToken) {
    let mut interval = tokio::time::interval(TIMER_TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut scratch = vec![0u8; SCRATCH];
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = interval.tick() => {}
        }
        let Some(core) = core.upgrade() else { break };
        core.tick(&mut scratch);
    }
}

async fn udp_loop(udp: Arc<UdpCarrier>, core: Weak<HubCore>, cancel: CancellationToken) {
    // One byte more than accepted, so oversized datagrams are recognised (and dropped).
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    let mut scratch = vec![0u8; SCRATCH];
    loop {
        let received = tokio::select! {
            _ = cancel.cancelled() => break,
            r = udp.recv_from(&mut buf) => r,
        };
        let Some(core) = core.upgrade() else { break };
        match received {
            Ok((len, from)) => {
                core.handle_datagram(&buf[..len], PeerEndpoint::Udp(from), &mut scratch);
            }
            Err(e) => {
                tracing::debug!(error = %e, "tunnel UDP receive failed");
                drop(core);
                // Back off briefly so a persistent error cannot spin.
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}
