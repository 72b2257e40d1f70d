//! A userspace TCP/IPv6 stack: one smoltcp `Interface` over a packet queue, owned by one task.
//!
//! IP packets that WireGuard decrypted are queued with [`Stack::deliver`]; the task feeds them to
//! smoltcp, polls it, and hands every packet smoltcp wants to send to an *egress* function (which
//! encrypts it for the right peer). The task sleeps until smoltcp's next deadline
//! (`poll_delay`), a new packet, or socket activity from a [`TunnelStream`]; it never busy-polls.
//!
//! Listening sockets have a real backlog: for every new SYN to a listened port a fresh smoltcp
//! socket is put in `LISTEN` just before the SYN is processed, so many peers can connect at once.
//! Dropped streams close gracefully (FIN after queued data) and are reaped once closed.
//!
//! Two smoltcp 0.14 behaviours are worked around here, both of which otherwise stall a transfer
//! until a retransmission or zero-window-probe timeout (seconds, doubling): pure window updates
//! are ignored in LAST-ACK (see `Inner::close_gracefully`), and a receiver with a zero window
//! drops ACKs whose sequence number lies past its window (see `Inner::fix_outbound`).

use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::io;
use std::net::{Ipv6Addr, SocketAddrV6};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};

use futures::Stream;
use parking_lot::Mutex;
use smoltcp::iface::{Config, Interface, PollResult, SocketHandle, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::socket::tcp;
use smoltcp::time::{Duration as SmolDuration, Instant as SmolInstant};
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, IpEndpoint, IpListenEndpoint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::packet;

/// Pending (not yet accepted) connections per listener.
const BACKLOG: usize = 128;
/// Decrypted packets waiting for the stack task; more are dropped (TCP retransmits).
const MAX_INBOUND: usize = 4096;
/// Packets fed to smoltcp per round, so the stack lock is never held for long.
const MAX_BATCH: usize = 256;
/// Idle connections probe their peer this often...
const KEEP_ALIVE: SmolDuration = SmolDuration::from_secs(20);
/// ...and are aborted after this long without hearing from it (also bounds connect attempts).
const TIMEOUT: SmolDuration = SmolDuration::from_secs(60);
/// A dropped stream that has not finished closing by then is aborted.
const ORPHAN_LINGER: SmolDuration = SmolDuration::from_secs(60);
/// Longest sleep when smoltcp has no deadline.
const IDLE_WAIT: std::time::Duration = std::time::Duration::from_secs(60);
const EPHEMERAL_PORTS: std::ops::RangeInclusive<u16> = 49152..=65535;

/// Where the stack's outbound IP packets go.
pub(crate) type Egress = Box<dyn Fn(&[u8]) + Send + Sync>;

/// Handle to a running stack. Dropping it stops the task without waiting; [`Stack::shutdown`]
/// waits.
pub(crate) struct Stack {
    shared: Arc<Shared>,
    task: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    address: Ipv6Addr,
    buffer_size: usize,
    inner: Mutex<Inner>,
    inbound: Mutex<VecDeque<Vec<u8>>>,
    wake: Notify,
    closing: AtomicBool,
    dropped_inbound: AtomicU64,
    rounds: AtomicU64,
}

struct Inner {
    iface: Interface,
    sockets: SocketSet<'static>,
    device: QueueDevice,
    listeners: HashMap<u16, ListenerSlot>,
    orphans: Vec<(SocketHandle, SmolInstant)>,
    /// Per connection (local port, remote address, remote port): the peer's last ACK number
    /// and window, to keep our pure ACKs acceptable while the peer's window is closed.
    peer_windows: HashMap<(u16, Ipv6Addr, u16), (u32, u16)>,
    /// Closes waiting for the peer to acknowledge everything we sent (see `close_gracefully`).
    pending_close: Vec<SocketHandle>,
    next_port: u16,
    next_generation: u64,
    closed: bool,
}

struct ListenerSlot {
    generation: u64,
    /// Sockets created for incoming SYNs, not yet established.
    embryonic: Vec<SocketHandle>,
    /// Established, waiting for `accept`.
    ready: VecDeque<SocketHandle>,
    notify: Arc<Notify>,
}

impl Stack {
    /// Starts the stack task for `address`, with `buffer_size` bytes per TCP direction.
    pub(crate) fn start(
        address: Ipv6Addr,
        mtu: usize,
        buffer_size: usize,
        egress: Egress,
    ) -> Stack {
        let mut device = QueueDevice {
            rx: VecDeque::new(),
            tx: Vec::new(),
            mtu,
        };
        let mut config = Config::new(HardwareAddress::Ip);
        config.random_seed = rand::random();
        let mut iface = Interface::new(config, &mut device, SmolInstant::now());
        iface.update_ip_addrs(|addrs| {
            let _ = addrs.push(IpCidr::new(IpAddress::from(address), 128));
        });
        // Everything else is reached through the tunnel; with medium IP the gateway is nominal.
        let _ = iface.routes_mut().add_default_ipv6_route(address);
        let buffer_size = buffer_size.max(1024);
        let shared = Arc::new(Shared {
            address,
            buffer_size,
            inner: Mutex::new(Inner {
                iface,
                sockets: SocketSet::new(Vec::new()),
                device,
                listeners: HashMap::new(),
                orphans: Vec::new(),
                peer_windows: HashMap::new(),
                pending_close: Vec::new(),
                next_port: *EPHEMERAL_PORTS.start()
                    + rand::random::<u16>() % (EPHEMERAL_PORTS.end() - EPHEMERAL_PORTS.start()),
                next_generation: 0,
                closed: false,
            }),
            inbound: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
            closing: AtomicBool::new(false),
            dropped_inbound: AtomicU64::new(0),
            rounds: AtomicU64::new(0),
        });
        let task = tokio::spawn(run(shared.clone(), egress));
        Stack {
            shared,
            task: Mutex::new(Some(task)),
        }
    }

    /// Queues a decrypted IP packet for the stack. Returns false if it was dropped.
    pub(crate) fn deliver(&self, packet: Vec<u8>) -> bool {
        {
            let mut inbound = self.shared.inbound.lock();
            if inbound.len() >= MAX_INBOUND {
                self.shared.dropped_inbound.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            inbound.push_back(packet);
        }
        self.shared.wake.notify_one();
        true
    }

    /// Packets dropped because the stack was too far behind.
    pub(crate) fn dropped_inbound(&self) -> u64 {
        self.shared.dropped_inbound.load(Ordering::Relaxed)
    }

    /// How many rounds the stack task has run.
    pub(crate) fn rounds(&self) -> u64 {
        self.shared.rounds.load(Ordering::Relaxed)
    }

    /// Listens on `port` (0 = any free port) of the stack's address.
    pub(crate) fn listen(&self, port: u16) -> io::Result<TunnelListener> {
        let shared = &self.shared;
        let mut inner = shared.inner.lock();
        if inner.closed {
            return Err(closed_error());
        }
        let port = if port == 0 {
            inner.free_port(None)?
        } else {
            port
        };
        if inner.listeners.contains_key(&port) {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("port {port} is already listened on in the tunnel"),
            ));
        }
        inner.next_generation += 1;
        let generation = inner.next_generation;
        let notify = Arc::new(Notify::new());
        inner.listeners.insert(
            port,
            ListenerSlot {
                generation,
                embryonic: Vec::new(),
                ready: VecDeque::new(),
                notify: notify.clone(),
            },
        );
        Ok(TunnelListener {
            shared: shared.clone(),
            local: SocketAddrV6::new(shared.address, port, 0, 0),
            generation,
            notify,
        })
    }

    /// Opens a TCP connection to `remote` through the tunnel.
    pub(crate) async fn connect(&self, remote: SocketAddrV6) -> io::Result<TunnelStream> {
        let shared = &self.shared;
        let stream = {
            let mut inner = shared.inner.lock();
            if inner.closed {
                return Err(closed_error());
            }
            let port = inner.free_port(Some(remote))?;
            let local = SocketAddrV6::new(shared.address, port, 0, 0);
            let mut socket = new_socket(shared.buffer_size);
            socket
                .connect(
                    inner.iface.context(),
                    IpEndpoint::from(remote),
                    IpListenEndpoint::from(local),
                )
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
            let handle = inner.sockets.add(socket);
            TunnelStream::new(shared.clone(), handle, local, remote)
        };
        shared.wake.notify_one();
        poll_fn(|cx| stream.poll_established(cx)).await?;
        Ok(stream)
    }

    /// Aborts every connection with `remote` (its machine is gone or was re-keyed).
    pub(crate) fn abort_remote(&self, remote: Ipv6Addr) {
        let mut inner = self.shared.inner.lock();
        let remote = IpAddress::from(remote);
        let mut aborted = false;
        for (_, socket) in inner.sockets.iter_mut() {
            #[allow(irrefutable_let_patterns)]
            if let smoltcp::socket::Socket::Tcp(tcp) = socket
                && tcp.remote_endpoint().is_some_and(|ep| ep.addr == remote)
            {
                tcp.abort();
                aborted = true;
            }
        }
        drop(inner);
        if aborted {
            self.shared.wake.notify_one();
        }
    }

    /// Stops the stack: every connection is reset, listeners stop accepting, the task ends.
    pub(crate) async fn shutdown(&self) {
        self.shared.begin_close();
        let task = self.task.lock().take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.shared.begin_close();
    }
}

impl Shared {
    fn begin_close(&self) {
        if self.closing.swap(true, Ordering::AcqRel) {
            return;
        }
        let notifies: Vec<Arc<Notify>> = {
            let mut inner = self.inner.lock();
            inner.closed = true;
            inner.listeners.values().map(|l| l.notify.clone()).collect()
        };
        for notify in notifies {
            notify.notify_waiters();
        }
        self.wake.notify_one();
    }
}

fn closed_error() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "the tunnel is shut down")
}

fn new_socket(buffer_size: usize) -> tcp::Socket<'static> {
    let mut socket = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0u8; buffer_size]),
        tcp::SocketBuffer::new(vec![0u8; buffer_size]),
    );
    socket.set_nagle_enabled(false);
    socket.set_keep_alive(Some(KEEP_ALIVE));
    socket.set_timeout(Some(TIMEOUT));
    socket
}

fn to_v6(endpoint: IpEndpoint) -> SocketAddrV6 {
    #[allow(unreachable_patterns)]
    let ip = match endpoint.addr {
        IpAddress::Ipv6(a) => a,
        _ => Ipv6Addr::UNSPECIFIED,
    };
    SocketAddrV6::new(ip, endpoint.port, 0, 0)
}

async fn run(shared: Arc<Shared>, egress: Egress) {
    let mut batch: VecDeque<Vec<u8>> = VecDeque::new();
    let mut out: Vec<Vec<u8>> = Vec::new();
    loop {
        shared.rounds.fetch_add(1, Ordering::Relaxed);
        let closing = shared.closing.load(Ordering::Acquire);
        batch.append(&mut shared.inbound.lock());
        let received = !batch.is_empty();
        let delay = {
            let mut inner = shared.inner.lock();
            let now = SmolInstant::now();
            if closing {
                batch.clear();
                for (_, socket) in inner.sockets.iter_mut() {
                    #[allow(irrefutable_let_patterns)]
                    if let smoltcp::socket::Socket::Tcp(tcp) = socket {
                        tcp.abort();
                    }
                }
            }
            for packet in batch.drain(..batch.len().min(MAX_BATCH)) {
                inner.ingress(now, &shared, packet);
            }
            inner.scan_listeners();
            inner.run_pending_closes();
            inner.egress(now);
            inner.reap(now);
            inner.fix_outbound();
            out.append(&mut inner.device.tx);
            if closing {
                None
            } else {
                let inner = &mut *inner;
                Some(inner.iface.poll_delay(now, &inner.sockets))
            }
        };
        let sent = !out.is_empty();
        for packet in out.drain(..) {
            egress(&packet);
        }
        let Some(delay) = delay else { break };
        let wait = match delay {
            _ if !batch.is_empty() => {
                // More packets are waiting; let the readers and writers run first.
                tokio::task::yield_now().await;
                continue;
            }
            Some(d) if d == SmolDuration::ZERO => {
                if sent || received {
                    tokio::task::yield_now().await;
                    continue;
                }
                // smoltcp wants attention but produced nothing: do not spin.
                std::time::Duration::from_millis(1)
            }
            Some(d) => std::time::Duration::from(d).min(IDLE_WAIT),
            None => IDLE_WAIT,
        };
        tokio::select! {
            _ = shared.wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
    // Nothing will reap sockets any more; wake every waiter so it sees the reset.
    let mut inner = shared.inner.lock();
    for (_, socket) in inner.sockets.iter_mut() {
        #[allow(irrefutable_let_patterns)]
        if let smoltcp::socket::Socket::Tcp(tcp) = socket {
            tcp.abort();
        }
    }
}

impl Inner {
    fn ingress(&mut self, now: SmolInstant, shared: &Shared, packet: Vec<u8>) {
        if !self.admit(shared, &packet) {
            return;
        }
        if let Some(segment) = packet::tcp_segment(&packet)
            && segment.flags & packet::TCP_ACK != 0
        {
            self.peer_windows.insert(
                (segment.dst_port, segment.src, segment.src_port),
                (segment.ack, segment.window),
            );
        }
        self.device.rx.push_back(packet);
        self.iface
            .poll_ingress_single(now, &mut self.device, &mut self.sockets);
        self.device.rx.clear();
    }

    /// Prepares a listening socket for a new SYN to a listened port; false = drop the packet.
    fn admit(&mut self, shared: &Shared, packet: &[u8]) -> bool {
        let Some(syn) = packet::tcp_syn(packet) else {
            return true;
        };
        let Some(slot) = self.listeners.get_mut(&syn.dst_port) else {
            return true; // smoltcp answers with RST: connection refused
        };
        let from = IpEndpoint::new(IpAddress::from(syn.src), syn.src_port);
        for handle in slot.embryonic.iter().chain(slot.ready.iter()) {
            let socket = self.sockets.get::<tcp::Socket>(*handle);
            if socket.state() == tcp::State::Listen || socket.remote_endpoint() == Some(from) {
                return true;
            }
        }
        if slot.embryonic.len() + slot.ready.len() >= BACKLOG {
            return false;
        }
        let mut socket = new_socket(shared.buffer_size);
        let endpoint = IpListenEndpoint {
            addr: Some(IpAddress::from(shared.address)),
            port: syn.dst_port,
        };
        if socket.listen(endpoint).is_err() {
            return false;
        }
        slot.embryonic.push(self.sockets.add(socket));
        true
    }

    /// Sends FIN after queued data, like `close()`, except in CLOSE-WAIT with data still unacked:
    /// there the FIN waits until the peer acknowledged everything, because smoltcp drops pure
    /// window updates in LAST-ACK (it treats them as duplicate ACKs), which would stall the
    /// rest of the data until a zero-window probe.
    fn close_gracefully(&mut self, handle: SocketHandle) {
        let socket = self.sockets.get_mut::<tcp::Socket>(handle);
        if socket.state() == tcp::State::CloseWait && socket.send_queue() > 0 {
            if !self.pending_close.contains(&handle) {
                self.pending_close.push(handle);
            }
        } else {
            socket.close();
        }
    }

    fn run_pending_closes(&mut self) {
        let sockets = &mut self.sockets;
        self.pending_close.retain(|&handle| {
            let socket = sockets.get_mut::<tcp::Socket>(handle);
            if socket.state() == tcp::State::CloseWait && socket.send_queue() > 0 {
                true
            } else {
                socket.close();
                false
            }
        });
    }

    /// Keeps pure ACKs acceptable to a peer whose receive window is closed.
    ///
    /// A sender may have sent past a peer's window (smoltcp's scaled windows can shrink by a
    /// byte, and segments get lost), so its next sequence number is beyond what the peer will
    /// accept; a receiver with a zero window then drops the whole segment, ACK included (RFC
    /// 9293 checks the sequence number first). If both ends are blocked writing, neither hears
    /// the other's ACKs until a retransmission timeout. Like Linux (`tcp_acceptable_seq`), we
    /// send pure ACKs with a sequence number no further than the peer's window allows.
    fn fix_outbound(&mut self) {
        if self.peer_windows.is_empty() {
            return;
        }
        for out in &mut self.device.tx {
            let Some(segment) = packet::tcp_segment(out) else {
                continue;
            };
            if segment.payload_len != 0
                || segment.flags & packet::TCP_ACK == 0
                || segment.flags & packet::TCP_CONTROL != 0
            {
                continue;
            }
            let key = (segment.src_port, segment.dst, segment.dst_port);
            if let Some(&(peer_ack, 0)) = self.peer_windows.get(&key)
                && (segment.seq.wrapping_sub(peer_ack) as i32) > 0
            {
                packet::set_tcp_seq(out, peer_ack);
            }
        }
    }

    fn egress(&mut self, now: SmolInstant) {
        // Bounded: each round dispatches at least one packet or ends.
        for _ in 0..10_000 {
            if let PollResult::None =
                self.iface
                    .poll_egress(now, &mut self.device, &mut self.sockets)
            {
                break;
            }
        }
    }

    fn scan_listeners(&mut self) {
        for slot in self.listeners.values_mut() {
            let mut i = 0;
            while i < slot.embryonic.len() {
                let handle = slot.embryonic[i];
                match self.sockets.get::<tcp::Socket>(handle).state() {
                    tcp::State::Listen | tcp::State::SynReceived => i += 1,
                    tcp::State::Closed | tcp::State::TimeWait => {
                        slot.embryonic.swap_remove(i);
                        self.sockets.remove(handle);
                    }
                    _ => {
                        slot.embryonic.swap_remove(i);
                        slot.ready.push_back(handle);
                        slot.notify.notify_one();
                    }
                }
            }
        }
    }

    fn reap(&mut self, now: SmolInstant) {
        if self.peer_windows.len() > 2 * self.sockets.iter().count() + 64 {
            let live: std::collections::HashSet<(u16, Ipv6Addr, u16)> = self
                .sockets
                .iter()
                .filter_map(|(_, socket)| {
                    #[allow(irrefutable_let_patterns)]
                    let smoltcp::socket::Socket::Tcp(tcp) = socket else {
                        return None;
                    };
                    let local = tcp.local_endpoint()?;
                    let remote = to_v6(tcp.remote_endpoint()?);
                    Some((local.port, *remote.ip(), remote.port()))
                })
                .collect();
            self.peer_windows.retain(|key, _| live.contains(key));
        }
        let sockets = &mut self.sockets;
        self.orphans.retain(|(handle, since)| {
            let socket = sockets.get_mut::<tcp::Socket>(*handle);
            match socket.state() {
                tcp::State::Closed | tcp::State::TimeWait => {
                    sockets.remove(*handle);
                    false
                }
                _ => {
                    if now - *since > ORPHAN_LINGER {
                        socket.abort();
                    }
                    true
                }
            }
        });
    }

    /// A local port not used by any socket (for `remote`, if given) nor any listener.
    fn free_port(&mut self, remote: Option<SocketAddrV6>) -> io::Result<u16> {
        let span = u32::from(EPHEMERAL_PORTS.end() - EPHEMERAL_PORTS.start()) + 1;
        for _ in 0..span {
            let port = self.next_port;
            self.next_port = if port >= *EPHEMERAL_PORTS.end() {
                *EPHEMERAL_PORTS.start()
            } else {
                port + 1
            };
            if self.listeners.contains_key(&port) {
                continue;
            }
            let taken = self.sockets.iter().any(|(_, socket)| {
                #[allow(irrefutable_let_patterns)]
                let smoltcp::socket::Socket::Tcp(tcp) = socket else {
                    return false;
                };
                let local = tcp.local_endpoint().map(|ep| ep.port);
                let listen = tcp.listen_endpoint().port;
                match remote {
                    Some(remote) => {
                        local == Some(port)
                            && tcp.remote_endpoint() == Some(IpEndpoint::from(remote))
                            || listen == port
                    }
                    None => local == Some(port) || listen == port,
                }
            });
            if !taken {
                return Ok(port);
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "no free local port in the tunnel",
        ))
    }
}

/// A packet device over two queues: smoltcp reads `rx`, writes `tx`.
struct QueueDevice {
    rx: VecDeque<Vec<u8>>,
    tx: Vec<Vec<u8>>,
    mtu: usize,
}

struct QueueRxToken(Vec<u8>);

impl RxToken for QueueRxToken {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        f(&self.0)
    }
}

struct QueueTxToken<'a>(&'a mut Vec<Vec<u8>>);

impl TxToken for QueueTxToken<'_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let mut packet = vec![0u8; len];
        let result = f(&mut packet);
        self.0.push(packet);
        result
    }
}

impl Device for QueueDevice {
    type RxToken<'a>
        = QueueRxToken
    where
        Self: 'a;
    type TxToken<'a>
        = QueueTxToken<'a>
    where
        Self: 'a;

    fn receive(&mut self, _now: SmolInstant) -> Option<(QueueRxToken, QueueTxToken<'_>)> {
        let packet = self.rx.pop_front()?;
        Some((QueueRxToken(packet), QueueTxToken(&mut self.tx)))
    }

    fn transmit(&mut self, _now: SmolInstant) -> Option<QueueTxToken<'_>> {
        Some(QueueTxToken(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = self.mtu;
        caps
    }
}

/// Listens for TCP connections on one port of a tunnel address.
///
/// Up to 128 connections wait to be accepted; further SYNs are dropped (the peer retries).
/// Dropping the listener resets the connections not yet accepted.
pub struct TunnelListener {
    shared: Arc<Shared>,
    local: SocketAddrV6,
    generation: u64,
    notify: Arc<Notify>,
}

impl TunnelListener {
    /// Waits for the next connection. Fails once the hub or link is shut down.
    pub async fn accept(&self) -> io::Result<(TunnelStream, SocketAddrV6)> {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(accepted) = self.try_accept()? {
                return Ok(accepted);
            }
            notified.await;
        }
    }

    fn try_accept(&self) -> io::Result<Option<(TunnelStream, SocketAddrV6)>> {
        let mut inner = self.shared.inner.lock();
        if inner.closed {
            return Err(closed_error());
        }
        let port = self.local.port();
        let Some(slot) = inner
            .listeners
            .get_mut(&port)
            .filter(|slot| slot.generation == self.generation)
        else {
            return Err(closed_error());
        };
        let Some(handle) = slot.ready.pop_front() else {
            return Ok(None);
        };
        if !slot.ready.is_empty() {
            // Let another concurrent acceptor take the next one.
            slot.notify.notify_one();
        }
        let socket = inner.sockets.get::<tcp::Socket>(handle);
        let local = socket.local_endpoint().map(to_v6).unwrap_or(self.local);
        let peer = socket
            .remote_endpoint()
            .map(to_v6)
            .unwrap_or(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, 0, 0, 0));
        drop(inner);
        Ok(Some((
            TunnelStream::new(self.shared.clone(), handle, local, peer),
            peer,
        )))
    }

    /// The tunnel address and port listened on.
    pub fn local_addr(&self) -> SocketAddrV6 {
        self.local
    }

    /// A stream of accepted connections for `tonic::transport::Server::serve_with_incoming`.
    /// It ends when the hub or link shuts down.
    pub fn into_incoming(self) -> TunnelIncoming {
        let stream = futures::stream::unfold(self, |listener| async move {
            match listener.accept().await {
                Ok((stream, _)) => Some((Ok(stream), listener)),
                Err(_) => None,
            }
        });
        TunnelIncoming {
            inner: Box::pin(stream),
        }
    }
}

impl Drop for TunnelListener {
    fn drop(&mut self) {
        let mut inner = self.shared.inner.lock();
        let port = self.local.port();
        if inner
            .listeners
            .get(&port)
            .is_some_and(|slot| slot.generation == self.generation)
            && let Some(slot) = inner.listeners.remove(&port)
        {
            let now = SmolInstant::now();
            for handle in slot.embryonic.into_iter().chain(slot.ready) {
                inner.sockets.get_mut::<tcp::Socket>(handle).abort();
                inner.orphans.push((handle, now));
            }
        }
        drop(inner);
        self.shared.wake.notify_one();
    }
}

impl std::fmt::Debug for TunnelListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunnelListener")
            .field("local", &self.local)
            .finish()
    }
}

/// Accepted connections of a [`TunnelListener`], as a `Stream` of `io::Result<TunnelStream>`.
pub struct TunnelIncoming {
    inner: Pin<Box<dyn Stream<Item = io::Result<TunnelStream>> + Send>>,
}

impl Stream for TunnelIncoming {
    type Item = io::Result<TunnelStream>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

/// A TCP connection inside a tunnel. `AsyncRead + AsyncWrite`; `shutdown()` sends FIN.
/// Dropping it closes gracefully (queued data, then FIN).
pub struct TunnelStream {
    shared: Arc<Shared>,
    handle: SocketHandle,
    local: SocketAddrV6,
    peer: SocketAddrV6,
    write_closed: bool,
}

impl TunnelStream {
    fn new(
        shared: Arc<Shared>,
        handle: SocketHandle,
        local: SocketAddrV6,
        peer: SocketAddrV6,
    ) -> TunnelStream {
        TunnelStream {
            shared,
            handle,
            local,
            peer,
            write_closed: false,
        }
    }

    /// The remote end: for the hub, the machine's tunnel address.
    pub fn peer_addr(&self) -> SocketAddrV6 {
        self.peer
    }

    pub fn local_addr(&self) -> SocketAddrV6 {
        self.local
    }

    fn poll_established(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut inner = self.shared.inner.lock();
        let socket = inner.sockets.get_mut::<tcp::Socket>(self.handle);
        match socket.state() {
            tcp::State::SynSent | tcp::State::SynReceived => {
                socket.register_send_waker(cx.waker());
                Poll::Pending
            }
            tcp::State::Closed | tcp::State::TimeWait => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!("connection to {} in the tunnel failed", self.peer),
            ))),
            _ => Poll::Ready(Ok(())),
        }
    }
}

impl AsyncRead for TunnelStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let mut inner = this.shared.inner.lock();
        let socket = inner.sockets.get_mut::<tcp::Socket>(this.handle);
        if socket.can_recv() {
            let queued = socket.recv_queue();
            let capacity = socket.recv_capacity();
            let read = socket
                .recv_slice(buf.initialize_unfilled())
                .map_err(|e| io::Error::other(e.to_string()))?;
            drop(inner);
            buf.advance(read);
            // The window may have been small enough that the peer waits for an update.
            if queued * 2 >= capacity {
                this.shared.wake.notify_one();
            }
            return Poll::Ready(Ok(()));
        }
        match socket.state() {
            tcp::State::Established
            | tcp::State::FinWait1
            | tcp::State::FinWait2
            | tcp::State::SynSent
            | tcp::State::SynReceived => {
                socket.register_recv_waker(cx.waker());
                Poll::Pending
            }
            tcp::State::Closed if !this.write_closed => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "tunnel connection reset",
            ))),
            // The peer sent FIN (or both sides closed): end of stream.
            _ => Poll::Ready(Ok(())),
        }
    }
}

impl AsyncWrite for TunnelStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let mut inner = this.shared.inner.lock();
        let socket = inner.sockets.get_mut::<tcp::Socket>(this.handle);
        if !socket.may_send() {
            let kind = match socket.state() {
                tcp::State::SynSent | tcp::State::SynReceived => {
                    socket.register_send_waker(cx.waker());
                    return Poll::Pending;
                }
                tcp::State::Closed if !this.write_closed => io::ErrorKind::ConnectionReset,
                _ => io::ErrorKind::BrokenPipe,
            };
            return Poll::Ready(Err(io::Error::new(kind, "tunnel connection is closed")));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if socket.can_send() {
            let sent = socket
                .send_slice(buf)
                .map_err(|e| io::Error::other(e.to_string()))?;
            drop(inner);
            this.shared.wake.notify_one();
            return Poll::Ready(Ok(sent));
        }
        socket.register_send_waker(cx.waker());
        Poll::Pending
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Like a kernel socket: written data is already queued for transmission.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.write_closed {
            this.write_closed = true;
            this.shared.inner.lock().close_gracefully(this.handle);
            this.shared.wake.notify_one();
        }
        Poll::Ready(Ok(()))
    }
}

impl Drop for TunnelStream {
    fn drop(&mut self) {
        let mut inner = self.shared.inner.lock();
        if inner.closed && self.shared.closing.load(Ordering::Acquire) {
            let socket = inner.sockets.get_mut::<tcp::Socket>(self.handle);
            socket.abort();
        } else {
            inner.close_gracefully(self.handle);
        }
        let now = SmolInstant::now();
        inner.orphans.push((self.handle, now));
        drop(inner);
        self.shared.wake.notify_one();
    }
}

impl std::fmt::Debug for TunnelStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunnelStream")
            .field("local", &self.local)
            .field("peer", &self.peer)
            .finish()
    }
}

/// What `tonic` learns about a connection served from a [`TunnelListener`]: read it with
/// `request.extensions().get::<TunnelConnectInfo>()`. `remote` identifies the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunnelConnectInfo {
    pub remote: SocketAddrV6,
    pub local: SocketAddrV6,
}

impl tonic::transport::server::Connected for TunnelStream {
    type ConnectInfo = TunnelConnectInfo;

    fn connect_info(&self) -> TunnelConnectInfo {
        TunnelConnectInfo {
            remote: self.peer,
            local: self.local,
        }
    }
}
