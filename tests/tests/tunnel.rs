//! The tunnel data plane end to end: emulated machines bring up userspace WireGuard to droverd,
//! droverd reads their facts through the tunnel, receives their events and kernel logs, and
//! tracks liveness.

use std::time::Duration;

use drover_e2e::{Extra, TestDrover, eventually, machines_where, spawn_fleet};
use drover_emu::{CancellationToken, Fleet};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_machines_connect_report_and_log_then_disconnect_and_return() {
    let drover = TestDrover::start().await;
    let token = drover.join_token("lab").await;
    let fleet = drover.fleet(&token.secret, 50, "tunnel", "v1.12.6");
    let cancel = CancellationToken::new();
    let running = spawn_fleet(fleet, cancel.clone());

    let machines = machines_where(
        &drover,
        "50 connected machines with facts and stage",
        |all| {
            all.len() == 50
                && all.iter().all(|m| {
                    m.connected
                        && m.facts.is_some()
                        && m.stage.as_deref() == Some("maintenance")
                        && m.ready
                })
        },
    )
    .await;
    for m in &machines {
        let facts = m.facts.as_ref().unwrap();
        // Read through the tunnel from the machine's own Talos API (Version, Disks).
        assert_eq!(facts.talos_version, "v1.12.6");
        assert_eq!(m.talos_version, "v1.12.6");
        assert_eq!(facts.arch, "amd64");
        assert!(facts.hostname.starts_with("talos-"));
        assert!(
            facts
                .disks
                .iter()
                .any(|d| d.system_disk && d.device_name == "/dev/sda")
        );
        assert!(m.last_seen_at.is_some());
    }

    // Version through the tunnel, called directly through droverd's machine API channels.
    let api = drover.server().dataplane().machine_api();
    let address = machines[7].address.parse().unwrap();
    let version = drover_talos::client::version(&api.maintenance(address))
        .await
        .unwrap();
    assert_eq!(version.tag, "v1.12.6");

    // Kernel logs arrived, in order.
    let client = drover.client();
    let id = machines[3].id.to_string();
    let logs = eventually("boot log lines", Duration::from_secs(60), || {
        let (client, id) = (client.clone(), id.clone());
        async move {
            let page = client.machine_logs(&id, None, None).await.ok()?;
            (page.lines.len() >= 20).then_some(page)
        }
    })
    .await;
    assert!(logs.lines[0].message.starts_with("Linux version"));
    assert!(logs.lines.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(logs.lines[0].facility.as_deref(), Some("kern"));
    let none_after = client
        .machine_logs(&id, Some(logs.after), None)
        .await
        .unwrap();
    assert!(none_after.lines.is_empty());
    assert_eq!(none_after.after, logs.after);

    // Stop the emulator: every machine becomes disconnected.
    cancel.cancel();
    let fleet = running.await.unwrap();
    machines_where(&drover, "all machines disconnected", |all| {
        all.iter().all(|m| !m.connected)
    })
    .await;

    // Start it again: connected again, same addresses.
    let cancel = CancellationToken::new();
    let running = spawn_fleet(fleet, cancel.clone());
    let again = machines_where(&drover, "all machines connected again", |all| {
        all.len() == 50 && all.iter().all(|m| m.connected)
    })
    .await;
    let mut before: Vec<_> = machines
        .iter()
        .map(|m| (m.id.to_string(), m.address.clone()))
        .collect();
    let mut after: Vec<_> = again
        .iter()
        .map(|m| (m.id.to_string(), m.address.clone()))
        .collect();
    before.sort();
    after.sort();
    assert_eq!(before, after);
    cancel.cancel();
    running.await.unwrap();
    drover.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wireguard_over_grpc_works_when_udp_is_unreachable() {
    // The advertised UDP endpoint goes nowhere: only the gRPC carrier can work.
    let drover = TestDrover::start_with(Extra {
        advertised_wireguard_endpoints: vec!["127.0.0.1:9".into()],
        ..Extra::default()
    })
    .await;
    let token = drover.join_token("grpc").await;
    let mut fleet = drover.fleet(&token.secret, 3, "carrier", "v1.13.8");
    let mut config = fleet.config().clone();
    config.api.grpc_tunnel = true;
    fleet = Fleet::new(config);
    let cancel = CancellationToken::new();
    let running = spawn_fleet(fleet, cancel.clone());
    let machines = machines_where(&drover, "3 machines connected over gRPC", |all| {
        all.len() == 3
            && all
                .iter()
                .all(|m| m.connected && m.wireguard_over_grpc && m.facts.is_some())
    })
    .await;
    assert!(
        machines
            .iter()
            .all(|m| m.stage.as_deref() == Some("maintenance"))
    );
    let hub = drover.server().dataplane().hub();
    assert!(
        hub.udp_local_addr().is_some(),
        "the UDP endpoint exists; the machines just cannot reach it"
    );
    cancel.cancel();
    running.await.unwrap();
    drover.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_for_an_unknown_virtual_peer_is_refused() {
    use drover_proto::sidero::link::PeerPacket;
    use drover_proto::sidero::link::wire_guard_over_grpc_service_client::WireGuardOverGrpcServiceClient;

    let drover = TestDrover::start().await;
    let mut client = WireGuardOverGrpcServiceClient::new(drover.machine_api_channel().await);
    let mut request = tonic::Request::new(tokio_stream::iter(Vec::<PeerPacket>::new()));
    request.metadata_mut().insert(
        "x-siderolink-ipv6-addr",
        "[fdae:41e4:649b:9304::77]:50889".parse().unwrap(),
    );
    let status = client.create_stream(request).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    assert_eq!(status.message(), "peer not allowed");
    drover.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_keys_and_spoofed_sources_are_dropped() {
    use std::net::SocketAddrV6;

    use drover_siderolink::addressing::AddressPlan;
    use drover_siderolink::keys::KeyPair;
    use drover_tunnel::{NodeConfig, NodeEndpoint, NodeLink};

    let drover = TestDrover::start().await;
    let hub = drover.server().dataplane().hub().clone();
    let udp = hub.udp_local_addr().unwrap();
    let plan = AddressPlan::default();
    let sink = SocketAddrV6::new(
        plan.server_address(),
        drover_siderolink::EVENT_SINK_PORT,
        0,
        0,
    );
    let link_with = |key: KeyPair, address| NodeConfig {
        key,
        address,
        server_public_key: hub.public_key(),
        server_address: plan.server_address(),
        endpoint: NodeEndpoint::Udp(udp),
        persistent_keepalive: Duration::from_secs(1),
        tcp_buffer_size: 16 * 1024,
    };

    // A key droverd never provisioned.
    let before = hub.counters();
    let stranger = NodeLink::start(link_with(
        KeyPair::generate(),
        plan.siderolink.address(0x5555),
    ))
    .await
    .unwrap();
    let attempt = tokio::spawn({
        let stranger = std::sync::Arc::new(stranger);
        async move { stranger.connect(sink).await.is_ok() }
    });
    eventually(
        "the stranger's handshakes to be dropped",
        Duration::from_secs(30),
        || {
            let hub = hub.clone();
            async move {
                (hub.counters().dropped_unknown_peer > before.dropped_unknown_peer).then_some(())
            }
        },
    )
    .await;
    attempt.abort();

    // A provisioned machine's key, but packets from another address of the prefix.
    let token = drover.join_token("spoof").await;
    let mut machine = drover_emu::EmulatedMachine::new(
        drover_emu::MachineIdentity::derive("spoof", 0),
        "v1.13.8",
    );
    let real = machine
        .provision(&drover.join_url(&token.secret))
        .await
        .unwrap()
        .node_address;
    let spoofed = plan.siderolink.address(0x6666);
    assert_ne!(real, spoofed);
    let before = hub.counters();
    let liar = std::sync::Arc::new(
        NodeLink::start(link_with(machine.keys().clone(), spoofed))
            .await
            .unwrap(),
    );
    let attempt = tokio::spawn({
        let liar = liar.clone();
        async move { liar.connect(sink).await.is_ok() }
    });
    eventually(
        "the spoofed packets to be dropped",
        Duration::from_secs(30),
        || {
            let hub = hub.clone();
            async move {
                (hub.counters().dropped_spoofed_source > before.dropped_spoofed_source)
                    .then_some(())
            }
        },
    )
    .await;
    assert!(
        liar.last_handshake().is_some(),
        "WireGuard itself accepted the key"
    );
    attempt.abort();
    drover.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_machine_closes_its_tunnel() {
    let drover = TestDrover::start().await;
    let token = drover.join_token("lab").await;
    let fleet = drover.fleet(&token.secret, 2, "delete", "v1.13.8");
    let cancel = CancellationToken::new();
    let running = spawn_fleet(fleet, cancel.clone());
    let machines = machines_where(&drover, "2 connected machines", |all| {
        all.len() == 2 && all.iter().all(|m| m.connected)
    })
    .await;
    let hub = drover.server().dataplane().hub();
    let gone = &machines[0];
    let address: std::net::Ipv6Addr = gone.address.parse().unwrap();
    assert!(hub.peer_status(address).is_some());

    let reader =
        drover_client::Client::new(&drover.http_url(), Some(drover.admin_token().into())).unwrap();
    reader.delete_machine(gone.id.as_str()).await.unwrap();
    assert!(
        hub.peer_status(address).is_none(),
        "the peer is removed at once"
    );
    let err = reader.get_machine(gone.id.as_str()).await.unwrap_err();
    assert_eq!(err.status(), Some(404));
    let err = reader.delete_machine(gone.id.as_str()).await.unwrap_err();
    assert_eq!(err.status(), Some(404));
    // The other machine is untouched.
    assert!(
        hub.peer_status(machines[1].address.parse().unwrap())
            .is_some()
    );
    cancel.cancel();
    running.await.unwrap();
    drover.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_stream_for_the_same_peer_replaces_the_first() {
    use drover_proto::sidero::link::PeerPacket;
    use drover_proto::sidero::link::wire_guard_over_grpc_service_client::WireGuardOverGrpcServiceClient;

    let drover = TestDrover::start().await;
    let token = drover.join_token("grpc").await;
    let mut url = drover.join_url(&token.secret);
    url.grpc_tunnel = true;
    let mut machine = drover_emu::EmulatedMachine::new(
        drover_emu::MachineIdentity::derive("replace", 0),
        "v1.13.8",
    );
    let peer = machine
        .provision(&url)
        .await
        .unwrap()
        .grpc_peer_addr_port
        .clone()
        .unwrap();

    let open = |peer: String| {
        let drover = &drover;
        async move {
            // The request stream stays open (its sender is returned) so only the server can end it.
            let (tx, rx) = tokio::sync::mpsc::channel::<PeerPacket>(1);
            let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
            request
                .metadata_mut()
                .insert("x-siderolink-ipv6-addr", peer.parse().unwrap());
            let replies = WireGuardOverGrpcServiceClient::new(drover.machine_api_channel().await)
                .create_stream(request)
                .await
                .expect("a provisioned peer may open a stream")
                .into_inner();
            (tx, replies)
        }
    };
    let (_first_tx, mut first) = open(peer.clone()).await;
    let (_second_tx, _second) = open(peer).await;
    let ended = tokio::time::timeout(Duration::from_secs(30), first.message())
        .await
        .expect("the first stream ends");
    let status = ended.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Aborted);
    assert_eq!(status.message(), "peer replaced");
    drover.stop().await;
}
