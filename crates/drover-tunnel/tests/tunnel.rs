//! Hub and node links over real UDP on 127.0.0.1 (and over channels), real WireGuard crypto.

use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};
use std::time::{Duration, Instant};

use bytes::Bytes;
use drover_siderolink::addressing::AddressPlan;
use drover_siderolink::keys::KeyPair;
use drover_tunnel::{
    Hub, HubConfig, NodeConfig, NodeEndpoint, NodeLink, PeerEndpoint, TunnelListener, TunnelStream,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(10);

fn plan() -> AddressPlan {
    AddressPlan::new("drover-tunnel-tests")
}

fn server_address() -> Ipv6Addr {
    plan().server_address()
}

fn node_address(n: u64) -> Ipv6Addr {
    plan().siderolink.address(0x1000 + n)
}

async fn udp_hub() -> Hub {
    let mut config = HubConfig::new(KeyPair::generate(), server_address());
    config.udp_bind = Some("127.0.0.1:0".parse().unwrap());
    Hub::start(config).await.unwrap()
}

async fn udp_node(hub: &Hub, key: KeyPair, address: Ipv6Addr) -> NodeLink {
    let endpoint = hub.udp_local_addr().expect("hub has a UDP socket");
    NodeLink::start(NodeConfig::new(
        key,
        address,
        hub.public_key(),
        hub.server_address(),
        NodeEndpoint::Udp(endpoint),
    ))
    .await
    .unwrap()
}

/// Waits for a condition with a deadline (there is no event to wait on for these).
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, future)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// Asserts that a connection attempt does not succeed (it is silently dropped by the hub).
async fn assert_cannot_connect(node: &NodeLink, to: SocketAddrV6) {
    match tokio::time::timeout(Duration::from_millis(400), node.connect(to)).await {
        Err(_elapsed) => {}
        Ok(Err(_refused)) => {}
        Ok(Ok(stream)) => panic!("connected to {to} from {}", stream.local_addr()),
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// Serves one echo connection: everything read is written back, then FIN.
fn spawn_echo(listener: TunnelListener) -> tokio::task::JoinHandle<SocketAddrV6> {
    tokio::spawn(async move {
        let (stream, peer) = listener.accept().await.unwrap();
        assert_eq!(stream.peer_addr(), peer);
        let (mut reader, mut writer) = tokio::io::split(stream);
        tokio::io::copy(&mut reader, &mut writer).await.unwrap();
        writer.shutdown().await.unwrap();
        peer
    })
}

/// Sends `len` bytes through an echo connection and checks they all come back.
async fn echo_through(stream: TunnelStream, len: usize) {
    let data = pattern(len);
    let (mut reader, mut writer) = tokio::io::split(stream);
    let sent = data.clone();
    let writer_task = tokio::spawn(async move {
        writer.write_all(&sent).await.unwrap();
        writer.shutdown().await.unwrap();
        writer
    });
    let mut back = Vec::with_capacity(len);
    within("echo", reader.read_to_end(&mut back)).await.unwrap();
    assert_eq!(back.len(), data.len(), "echoed byte count");
    assert!(back == data, "echoed bytes differ");
    writer_task.await.unwrap();
}

/// The hub dials the node's apid port and they exchange a message each way.
async fn hub_reaches_node(hub: &Hub, node: &NodeLink, apid: TunnelListener) {
    let server = tokio::spawn(async move {
        let (mut stream, peer) = apid.accept().await.unwrap();
        let mut hello = [0u8; 5];
        stream.read_exact(&mut hello).await.unwrap();
        assert_eq!(&hello, b"hello");
        stream.write_all(b"world").await.unwrap();
        stream.shutdown().await.unwrap();
        peer
    });
    let target = SocketAddrV6::new(node.address(), 50000, 0, 0);
    let mut stream = within("hub connect", hub.connect(target)).await.unwrap();
    assert_eq!(stream.peer_addr(), target);
    assert_eq!(*stream.local_addr().ip(), hub.server_address());
    stream.write_all(b"hello").await.unwrap();
    let mut reply = Vec::new();
    within("reply", stream.read_to_end(&mut reply))
        .await
        .unwrap();
    assert_eq!(reply, b"world");
    let peer = within("apid accept", server).await.unwrap();
    assert_eq!(*peer.ip(), hub.server_address());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_hub_and_node_carry_tcp_both_ways() {
    let hub = udp_hub().await;
    let key = KeyPair::generate();
    let address = node_address(1);
    hub.upsert_peer(key.public(), address);
    let node = udp_node(&hub, key.clone(), address).await;

    let listener = hub.listen(7000).await.unwrap();
    assert_eq!(
        listener.local_addr(),
        SocketAddrV6::new(server_address(), 7000, 0, 0)
    );
    let echo = spawn_echo(listener);
    let stream = within(
        "node connect",
        node.connect(SocketAddrV6::new(server_address(), 7000, 0, 0)),
    )
    .await
    .unwrap();
    assert_eq!(*stream.local_addr().ip(), address);
    echo_through(stream, 1024 * 1024 + 17).await;
    let peer = echo.await.unwrap();
    assert_eq!(
        *peer.ip(),
        address,
        "the hub sees the node's tunnel address"
    );

    let apid = node.listen(50000).await.unwrap();
    hub_reaches_node(&hub, &node, apid).await;

    eventually("node handshake", || node.last_handshake().is_some()).await;
    let status = hub.peer_status(address).expect("peer status");
    assert_eq!(status.public_key, key.public());
    assert!(status.last_handshake.is_some());
    assert!(status.rx_bytes > 1024 * 1024 && status.tx_bytes > 1024 * 1024);
    match status.endpoint {
        Some(PeerEndpoint::Udp(addr)) => assert!(addr.ip().is_loopback()),
        other => panic!("endpoint {other:?}"),
    }
    assert_eq!(hub.peer_statuses().len(), 1);

    // Idle: the stack task sleeps (smoltcp's next deadline is a keep-alive 20 s away).
    let before = hub.counters().stack_rounds;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let idle_rounds = hub.counters().stack_rounds - before;
    assert!(idle_rounds <= 3, "{idle_rounds} stack rounds while idle");

    let counters = hub.counters();
    assert_eq!(counters.dropped_unknown_peer, 0);
    assert_eq!(counters.dropped_spoofed_source, 0);

    node.shutdown().await;
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_carrier_without_udp() {
    let hub = Hub::start(HubConfig::new(KeyPair::generate(), server_address()))
        .await
        .unwrap();
    assert_eq!(hub.udp_local_addr(), None);
    let key = KeyPair::generate();
    let address = node_address(2);
    hub.upsert_peer(key.public(), address);

    // The "gRPC stream": node -> hub via receive_datagram, hub -> node via a channel.
    let (node_out_tx, mut node_out_rx) = mpsc::channel::<Bytes>(1024);
    let (to_node_tx, to_node_rx) = mpsc::channel::<Bytes>(1024);
    let carrier_hub = hub.clone();
    let carrier = tokio::spawn(async move {
        while let Some(datagram) = node_out_rx.recv().await {
            carrier_hub.receive_datagram(&datagram, PeerEndpoint::Channel(to_node_tx.clone()));
        }
    });
    let node = NodeLink::start(NodeConfig::new(
        key,
        address,
        hub.public_key(),
        server_address(),
        NodeEndpoint::Channel {
            outgoing: node_out_tx,
            incoming: to_node_rx,
        },
    ))
    .await
    .unwrap();

    let echo = spawn_echo(hub.listen(7000).await.unwrap());
    let stream = within(
        "node connect",
        node.connect(SocketAddrV6::new(server_address(), 7000, 0, 0)),
    )
    .await
    .unwrap();
    echo_through(stream, 1024 * 1024).await;
    assert_eq!(*echo.await.unwrap().ip(), address);

    let apid = node.listen(50000).await.unwrap();
    hub_reaches_node(&hub, &node, apid).await;

    eventually("node handshake", || node.last_handshake().is_some()).await;
    let status = hub.peer_status(address).unwrap();
    assert!(status.last_handshake.is_some());
    assert!(matches!(status.endpoint, Some(PeerEndpoint::Channel(_))));
    assert_eq!(status.endpoint.unwrap().to_string(), "channel");

    node.shutdown().await;
    hub.shutdown().await;
    carrier.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_nodes_reach_the_hub_and_back() {
    let hub = udp_hub().await;
    let mut nodes = Vec::new();
    for n in 0..10 {
        let key = KeyPair::generate();
        let address = node_address(100 + n);
        hub.upsert_peer(key.public(), address);
        nodes.push(udp_node(&hub, key, address).await);
    }
    let listener = hub.listen(7001).await.unwrap();

    // All ten connect at once; each says who it is.
    let dials = nodes.iter().map(|node| {
        let node = node.clone();
        tokio::spawn(async move {
            let mut stream = node
                .connect(SocketAddrV6::new(server_address(), 7001, 0, 0))
                .await
                .unwrap();
            stream
                .write_all(node.address().to_string().as_bytes())
                .await
                .unwrap();
            stream.shutdown().await.unwrap();
            let mut rest = Vec::new();
            stream.read_to_end(&mut rest).await.unwrap();
        })
    });
    let dials: Vec<_> = dials.collect();
    let mut seen = Vec::new();
    for _ in 0..nodes.len() {
        let (mut stream, peer) = within("accept", listener.accept()).await.unwrap();
        let mut said = String::new();
        within("read", stream.read_to_string(&mut said))
            .await
            .unwrap();
        assert_eq!(said, peer.ip().to_string(), "source address is the node's");
        seen.push(*peer.ip());
    }
    for dial in dials {
        within("dial", dial).await.unwrap();
    }
    seen.sort();
    let mut expected: Vec<Ipv6Addr> = nodes.iter().map(|n| n.address()).collect();
    expected.sort();
    assert_eq!(seen, expected);

    // And the hub reaches each of them.
    let mut checks = Vec::new();
    for node in &nodes {
        let apid = node.listen(50000).await.unwrap();
        let hub = hub.clone();
        let node = node.clone();
        checks.push(tokio::spawn(async move {
            hub_reaches_node(&hub, &node, apid).await;
        }));
    }
    for check in checks {
        within("hub to node", check).await.unwrap();
    }
    assert_eq!(hub.peer_statuses().len(), 10);
    for node in &nodes {
        node.shutdown().await;
    }
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_key_cannot_connect() {
    let hub = udp_hub().await;
    let _listener = hub.listen(7000).await.unwrap();
    let stranger = udp_node(&hub, KeyPair::generate(), node_address(3)).await;
    eventually("unknown peer drop", || {
        hub.counters().dropped_unknown_peer > 0
    })
    .await;
    assert_cannot_connect(&stranger, SocketAddrV6::new(server_address(), 7000, 0, 0)).await;
    assert!(stranger.last_handshake().is_none());
    assert!(hub.peer_statuses().is_empty());
    stranger.shutdown().await;
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_sources_and_peer_to_peer_packets_are_dropped() {
    let hub = udp_hub().await;
    let _listener = hub.listen(7000).await.unwrap();
    let key_a = KeyPair::generate();
    let address_a = node_address(4);
    hub.upsert_peer(key_a.public(), address_a);
    let key_b = KeyPair::generate();
    let address_b = node_address(5);
    hub.upsert_peer(key_b.public(), address_b);

    // A's key, another address on its stack.
    let spoofer = udp_node(&hub, key_a, node_address(6)).await;
    eventually("spoofer handshake", || spoofer.last_handshake().is_some()).await;
    let attempt = {
        let spoofer = spoofer.clone();
        tokio::spawn(async move {
            spoofer
                .connect(SocketAddrV6::new(server_address(), 7000, 0, 0))
                .await
        })
    };
    eventually("spoofed source drop", || {
        hub.counters().dropped_spoofed_source > 0
    })
    .await;
    assert!(
        tokio::time::timeout(Duration::from_millis(300), attempt)
            .await
            .is_err(),
        "a spoofed connection must not complete"
    );

    // B is legitimate but tries to reach A's address through the hub.
    let node_b = udp_node(&hub, key_b, address_b).await;
    let _apid_b = node_b.listen(50000).await.unwrap();
    assert_cannot_connect(&node_b, SocketAddrV6::new(address_a, 50000, 0, 0)).await;
    eventually("not-for-server drop", || {
        hub.counters().dropped_not_for_server > 0
    })
    .await;
    // B itself still gets through.
    let echo = spawn_echo(hub.listen(7002).await.unwrap());
    let stream = within(
        "b connects",
        node_b.connect(SocketAddrV6::new(server_address(), 7002, 0, 0)),
    )
    .await
    .unwrap();
    echo_through(stream, 4096).await;
    assert_eq!(*echo.await.unwrap().ip(), address_b);

    spoofer.shutdown().await;
    node_b.shutdown().await;
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rekeyed_and_removed_peers_lose_access() {
    let hub = udp_hub().await;
    let listener = hub.listen(7000).await.unwrap();
    let server = SocketAddrV6::new(server_address(), 7000, 0, 0);
    let accept_loop = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                break;
            };
            tokio::spawn(async move {
                let (mut r, mut w) = tokio::io::split(stream);
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    let address = node_address(7);
    let old_key = KeyPair::generate();
    hub.upsert_peer(old_key.public(), address);
    let old_node = udp_node(&hub, old_key.clone(), address).await;
    echo_through(
        within("old connects", old_node.connect(server))
            .await
            .unwrap(),
        1000,
    )
    .await;
    // The same key again changes nothing.
    hub.upsert_peer(old_key.public(), address);
    echo_through(
        within("old again", old_node.connect(server)).await.unwrap(),
        1000,
    )
    .await;

    // Re-provisioned: same address, new key.
    let new_key = KeyPair::generate();
    let before = hub.counters().dropped_unknown_peer;
    hub.upsert_peer(new_key.public(), address);
    assert_cannot_connect(&old_node, server).await;
    eventually("old key dropped", || {
        hub.counters().dropped_unknown_peer > before
    })
    .await;
    let new_node = udp_node(&hub, new_key.clone(), address).await;
    echo_through(
        within("new connects", new_node.connect(server))
            .await
            .unwrap(),
        1000,
    )
    .await;
    assert_eq!(
        hub.peer_status(address).unwrap().public_key,
        new_key.public()
    );

    // Removed: nothing gets through any more.
    let before = hub.counters().dropped_unknown_peer;
    hub.remove_peer(address);
    assert!(hub.peer_status(address).is_none());
    assert_cannot_connect(&new_node, server).await;
    eventually("removed peer dropped", || {
        hub.counters().dropped_unknown_peer > before
    })
    .await;

    old_node.shutdown().await;
    new_node.shutdown().await;
    hub.shutdown().await;
    within("accept loop ends", accept_loop).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_moves_to_another_endpoint_and_listeners_end_on_shutdown() {
    let hub = udp_hub().await;
    let key = KeyPair::generate();
    let address = node_address(8);
    hub.upsert_peer(key.public(), address);
    // First endpoint: a UDP port nobody answers on.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let node = NodeLink::start(NodeConfig::new(
        key,
        address,
        hub.public_key(),
        server_address(),
        NodeEndpoint::Udp(silent.local_addr().unwrap()),
    ))
    .await
    .unwrap();
    assert!(node.last_handshake().is_none());
    node.set_udp_endpoint(hub.udp_local_addr().unwrap());
    eventually("handshake at the new endpoint", || {
        node.last_handshake().is_some()
    })
    .await;

    let listener = hub.listen(7003).await.unwrap();
    assert!(hub.listen(7003).await.is_err(), "port already listened on");
    let incoming = listener.into_incoming();
    hub.shutdown().await;
    use futures::StreamExt;
    let next = within("incoming ends", Box::pin(incoming).next()).await;
    assert!(next.is_none());
    assert!(
        hub.connect(SocketAddrV6::new(address, 1, 0, 0))
            .await
            .is_err()
    );
    node.shutdown().await;
}

/// `TunnelStream` and `TunnelIncoming` fit `tonic::transport::Server::serve_with_incoming`.
#[test]
fn tunnel_streams_fit_tonic() {
    fn io<T>()
    where
        T: tokio::io::AsyncRead
            + tokio::io::AsyncWrite
            + tonic::transport::server::Connected<ConnectInfo = drover_tunnel::TunnelConnectInfo>
            + Unpin
            + Send
            + 'static,
    {
    }
    fn incoming<S, T, E>()
    where
        S: futures::Stream<Item = Result<T, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
    }
    io::<TunnelStream>();
    incoming::<drover_tunnel::TunnelIncoming, TunnelStream, std::io::Error>();
    let _: Option<SocketAddr> = None;
}

#[test]
fn handles_are_shareable_across_tasks() {
    fn send_sync<T: Send + Sync + 'static>() {}
    fn send<T: Send + Unpin + 'static>() {}
    send_sync::<Hub>();
    send_sync::<NodeLink>();
    send_sync::<TunnelListener>();
    send::<TunnelStream>();
    send::<drover_tunnel::TunnelIncoming>();
    fn clone<T: Clone>() {}
    clone::<Hub>();
    clone::<NodeLink>();
    clone::<PeerEndpoint>();
}
