//! Several droverd replicas on one database: each registers and refreshes a heartbeat, a
//! machine's row names the replica holding its tunnel, a replica that stops takes its machines'
//! connections with it, and one that stops beating is removed by the others.

use std::time::Duration;

use drover_e2e::{Extra, TestDrover, eventually, no_cancel, spawn_fleet};

const LIMIT: Duration = Duration::from_secs(60);

async fn heartbeat(
    drover: &TestDrover,
    replica: uuid::Uuid,
) -> Option<chrono::DateTime<chrono::Utc>> {
    drover_store::replicas::list(drover.pool())
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.id == replica)
        .map(|r| r.heartbeat_at)
}

/// `(connected, tunnel replica)` of every machine.
async fn tunnels(drover: &TestDrover) -> Vec<(bool, Option<uuid::Uuid>)> {
    sqlx::query_as("SELECT connected, tunnel_replica FROM machines ORDER BY id")
        .fetch_all(drover.pool())
        .await
        .unwrap()
}

/// Removes the machine provisioned as `probe`, so the fleet's machines are the only ones.
async fn client_removes_probe(drover: &TestDrover, probe: &drover_emu::Provisioned) {
    let machines = drover.client().all_machines().await.unwrap();
    let address = probe.node_address.to_string();
    let id = machines
        .iter()
        .find(|m| m.address == address)
        .map(|m| m.id.to_string())
        .expect("the probe is in the inventory");
    drover.client().delete_machine(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_record_who_holds_each_tunnel_and_clear_it_when_a_replica_goes() {
    let first = TestDrover::start().await;
    let second = first.start_replica(Extra::default()).await;
    let (a, b) = (
        first.server().service().replica(),
        second.server().service().replica(),
    );
    assert_ne!(a, b);

    // Both are registered, and their heartbeats move on.
    let beat = heartbeat(&first, b)
        .await
        .expect("the second replica is registered");
    assert!(heartbeat(&second, a).await.is_some(), "the first too");
    eventually("a refreshed heartbeat", LIMIT, || async {
        (heartbeat(&first, b).await? > beat).then_some(())
    })
    .await;

    // Both answer machines with the installation's one WireGuard key, their own endpoint first
    // and then the other's, so a machine whose replica goes away moves on to the other.
    let token = second.join_token("lab").await;
    let endpoint = |d: &TestDrover| d.server().service().config().wireguard_endpoints.clone();
    let mut probe = drover_emu::EmulatedMachine::new(
        drover_emu::MachineIdentity::derive("replica-probe", 0),
        drover_emu::DEFAULT_TALOS_VERSION,
    );
    let via_first = probe
        .provision(&first.join_url(&token.secret))
        .await
        .unwrap()
        .clone();
    let via_second = probe
        .provision(&second.join_url(&token.secret))
        .await
        .unwrap()
        .clone();
    assert_eq!(via_first.server_public_key, via_second.server_public_key);
    assert_eq!(
        via_first.server_endpoints,
        [endpoint(&first), endpoint(&second)].concat()
    );
    assert_eq!(
        via_second.server_endpoints,
        [endpoint(&second), endpoint(&first)].concat()
    );
    client_removes_probe(&first, &via_first).await;

    // Their proxies' CAs are the installation's, so a kubeconfig or talosconfig from one works
    // with every replica.
    let config = |d: &TestDrover| d.server().service().config().clone();
    let (a_config, b_config) = (config(&first), config(&second));
    assert_eq!(
        a_config.kube_proxy.unwrap().ca_pem,
        b_config.kube_proxy.unwrap().ca_pem
    );
    assert_eq!(
        a_config.talos_proxy.unwrap().ca.cert_pem,
        b_config.talos_proxy.unwrap().ca.cert_pem
    );

    // Machines that join through the second replica have their tunnels there.
    let cancel = no_cancel();
    let fleet = spawn_fleet(
        second.fleet(&token.secret, 3, "replicas", "v1.12.4"),
        cancel.clone(),
    );
    eventually("three tunnels on the second replica", LIMIT, || async {
        let rows = tunnels(&first).await;
        (rows.len() == 3 && rows.iter().all(|r| *r == (true, Some(b)))).then_some(())
    })
    .await;
    let machines = first.client().all_machines().await.unwrap();
    assert!(
        machines.iter().all(|m| m.connected),
        "the other replica's API agrees"
    );

    // The second replica stops: it leaves, and its machines are disconnected at once.
    second.stop().await;
    assert_eq!(heartbeat(&first, b).await, None, "the stopped replica left");
    assert!(
        tunnels(&first).await.iter().all(|r| *r == (false, None)),
        "no tunnel is left on a stopped replica"
    );

    // A replica that dies without leaving stops beating; the first removes it and disconnects
    // what it held.
    let dead = uuid::Uuid::new_v4();
    sqlx::query("INSERT INTO replicas (id, heartbeat_at) VALUES ($1, now() - interval '1 hour')")
        .bind(dead)
        .execute(first.pool())
        .await
        .unwrap();
    sqlx::query(
        "UPDATE machines SET connected = true, tunnel_replica = $1
          WHERE id = (SELECT min(id) FROM machines)",
    )
    .bind(dead)
    .execute(first.pool())
    .await
    .unwrap();
    eventually("the dead replica removed", LIMIT, || async {
        let rows = tunnels(&first).await;
        (heartbeat(&first, dead).await.is_none() && rows.iter().all(|r| *r == (false, None)))
            .then_some(())
    })
    .await;
    assert!(
        heartbeat(&first, a).await.is_some(),
        "the living replica stays"
    );

    cancel.cancel();
    let _ = fleet.await;
    first.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_from_before_shared_keys_keeps_its_wireguard_key_and_proxy_ca() {
    use secrecy::ExposeSecret;
    let mut drover = TestDrover::start().await;
    // What an older droverd left in its data dir, on a database without installation secrets.
    let legacy_key = drover_emu::KeyPair::generate();
    std::fs::write(
        drover.data_dir().join("wireguard.key"),
        format!("{}\n", legacy_key.secret_base64()),
    )
    .unwrap();
    let legacy_ca =
        drover_pki::generate_service_ca("drover kube proxy CA", chrono::Utc::now()).unwrap();
    let ca_dir = drover.data_dir().join("kube-proxy");
    std::fs::create_dir_all(&ca_dir).unwrap();
    std::fs::write(ca_dir.join("ca.crt"), &legacy_ca.cert_pem).unwrap();
    std::fs::write(ca_dir.join("ca.key"), legacy_ca.key_pem.expose_secret()).unwrap();
    sqlx::query("DELETE FROM installation_secrets")
        .execute(drover.pool())
        .await
        .unwrap();

    drover.restart().await;
    let config = drover.server().service().config().clone();
    assert_eq!(config.server_public_key, legacy_key.public());
    assert_eq!(config.kube_proxy.unwrap().ca_pem, legacy_ca.cert_pem);

    // Adopted into the database: a replica with a fresh data dir answers with the same ones.
    let replica = drover.start_replica(Extra::default()).await;
    let theirs = replica.server().service().config().clone();
    assert_eq!(theirs.server_public_key, legacy_key.public());
    assert_eq!(theirs.kube_proxy.unwrap().ca_pem, legacy_ca.cert_pem);
    replica.stop().await;
    drover.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn machines_tunnelled_over_grpc_move_to_another_replica_when_theirs_stops() {
    let first = TestDrover::start().await;
    let second = first.start_replica(Extra::default()).await;
    let (a, b) = (
        first.server().service().replica(),
        second.server().service().replica(),
    );
    // Through a load balancer that sends them to the second replica.
    let balancer = drover_e2e::LoadBalancer::start(vec![second.server().machine_api_addr()]).await;
    let token = first.join_token("grpc").await;
    let api = drover_emu::JoinUrl::parse(&format!(
        "grpc://{}?jointoken={}&grpc_tunnel=true",
        balancer.addr, token.secret
    ))
    .unwrap();
    let mut config = drover_emu::FleetConfig::new(api, 2);
    config.seed = "grpc-failover".into();
    let cancel = no_cancel();
    let fleet = spawn_fleet(drover_emu::Fleet::new(config), cancel.clone());
    eventually("both tunnels on the second replica", LIMIT, || async {
        let rows = tunnels(&first).await;
        (rows.len() == 2 && rows.iter().all(|r| *r == (true, Some(b)))).then_some(())
    })
    .await;

    // The second stops and the balancer sends new connections to the first: the streams end,
    // the machines provision again through the balancer, and their tunnels come up there.
    balancer.set_backends(vec![first.server().machine_api_addr()]);
    second.stop().await;
    eventually("both tunnels on the first replica", LIMIT, || async {
        let rows = tunnels(&first).await;
        (rows.len() == 2 && rows.iter().all(|r| *r == (true, Some(a)))).then_some(())
    })
    .await;
    let machines = first.client().all_machines().await.unwrap();
    assert!(machines.iter().all(|m| m.connected), "{machines:?}");

    cancel.cancel();
    let _ = fleet.await;
    first.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_last_heard_a_machine_earlier_does_not_take_its_tunnel_back() {
    use drover_service::LivenessChange;
    let first = TestDrover::start().await;
    let second = first.start_replica(Extra::default()).await;
    let (a, b) = (
        first.server().service().replica(),
        second.server().service().replica(),
    );
    let token = second.join_token("moved").await;
    let cancel = no_cancel();
    let fleet = spawn_fleet(
        second.fleet(&token.secret, 1, "moved", "v1.12.4"),
        cancel.clone(),
    );
    eventually("the tunnel on the second replica", LIMIT, || async {
        (tunnels(&first).await == [(true, Some(b))]).then_some(())
    })
    .await;
    let machine = &first.client().all_machines().await.unwrap()[0];
    let address = machine.address.parse().unwrap();
    let heard = |ago: i64| LivenessChange {
        address,
        connected: true,
        last_seen_at: Some(chrono::Utc::now() - chrono::Duration::seconds(ago)),
    };

    // The first still remembers the machine from before it moved: that does not count.
    let service = first.server().service();
    service.record_liveness(&[heard(600)]).await.unwrap();
    assert_eq!(tunnels(&first).await, [(true, Some(b))]);
    // A disconnect the first notices is not the second's either.
    service
        .record_liveness(&[LivenessChange {
            address,
            connected: false,
            last_seen_at: None,
        }])
        .await
        .unwrap();
    assert_eq!(tunnels(&first).await, [(true, Some(b))]);
    // Heard by the first after the second last did: the machine came back to the first.
    service.record_liveness(&[heard(-60)]).await.unwrap();
    assert_eq!(tunnels(&first).await, [(true, Some(a))]);

    cancel.cancel();
    let _ = fleet.await;
    second.stop().await;
    first.stop().await;
}
