//! Provisioning end to end: emulated Talos machines join a real droverd over real gRPC, with a
//! real PostgreSQL (the private one droverd starts).

use std::collections::{HashMap, HashSet};
use std::net::Ipv6Addr;

use drover_e2e::{Extra, TestDrover, fast_retry, no_cancel};
use drover_emu::{EmulatedMachine, MachineIdentity, ProvisionError};
use drover_siderolink::addressing::AddressPlan;
use drover_siderolink::keys::KeyPair;
use tonic::Code;

fn addresses_by_id(machines: &[drover_model::Machine]) -> HashMap<String, String> {
    machines
        .iter()
        .map(|m| (m.id.to_string(), m.address.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_machines_join_keep_their_addresses_across_restarts_and_reboots() {
    let mut drover = TestDrover::start().await;
    let token = drover.join_token("rack-1").await;
    let mut fleet = drover.fleet(&token.secret, 50, "fifty", "v1.13.8");
    fleet
        .provision_all(&fast_retry(Some(20)), &no_cancel())
        .await
        .expect("all join");

    let listed = drover.client().all_machines().await.unwrap();
    assert_eq!(listed.len(), 50);
    let plan = AddressPlan::default();
    let addresses: HashSet<Ipv6Addr> = listed.iter().map(|m| m.address.parse().unwrap()).collect();
    assert_eq!(addresses.len(), 50, "every machine has its own address");
    assert!(
        addresses
            .iter()
            .all(|a| plan.siderolink.contains(*a) && *a != plan.server_address())
    );
    let before = addresses_by_id(&listed);
    for m in fleet.machines() {
        let provisioned = m.provisioned().unwrap();
        assert_eq!(
            before[&m.identity().uuid],
            provisioned.node_address.to_string()
        );
        assert_eq!(provisioned.server_address, plan.server_address());
        assert_eq!(provisioned.prefix_len, 64);
    }
    for m in &listed {
        assert_eq!(m.talos_version, "v1.13.8");
        assert_eq!(m.join_token_id, Some(token.token.id));
        assert!(!m.connected, "no tunnel exists yet");
    }
    let tokens = drover.client().list_join_tokens().await.unwrap();
    assert_eq!(tokens[0].use_count, 50);
    assert!(tokens[0].last_used_at.is_some());

    // Restart: same machines, same addresses, same server key.
    let server_key = fleet.machines()[0].provisioned().unwrap().server_public_key;
    drover.restart().await;
    let after_restart = drover.client().all_machines().await.unwrap();
    assert_eq!(addresses_by_id(&after_restart), before);

    // Every node reboots with a fresh WireGuard key and provisions again: addresses stay,
    // keys are replaced, nothing is duplicated.
    let old_keys: HashSet<String> = after_restart
        .iter()
        .map(|m| m.wireguard_public_key.clone())
        .collect();
    fleet.reboot_all();
    fleet
        .provision_all(&fast_retry(Some(20)), &no_cancel())
        .await
        .expect("all re-join");
    let after_reboot = drover.client().all_machines().await.unwrap();
    assert_eq!(addresses_by_id(&after_reboot), before);
    for m in fleet.machines() {
        let stored = after_reboot
            .iter()
            .find(|s| s.id.as_str() == m.identity().uuid)
            .unwrap();
        assert_eq!(stored.wireguard_public_key, m.public_key().to_base64());
        assert!(!old_keys.contains(&stored.wireguard_public_key));
        assert!(stored.last_provisioned_at > stored.first_provisioned_at);
        assert_eq!(m.provisioned().unwrap().server_public_key, server_key);
    }
    drover.stop().await;
}

async fn machine_count(drover: &TestDrover) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM machines")
        .fetch_one(drover.pool())
        .await
        .unwrap()
}

async fn provision_once(
    drover: &TestDrover,
    secret: &str,
    seed: &str,
) -> Result<(), ProvisionError> {
    let mut machine = EmulatedMachine::new(MachineIdentity::derive(seed, 0), "v1.13.8");
    machine
        .provision(&drover.join_url(secret))
        .await
        .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_revoked_and_expired_tokens_are_refused_and_store_nothing() {
    let drover = TestDrover::start().await;
    let client = drover.client();
    let good = drover.join_token("good").await;
    let revoked = drover.join_token("revoked").await;
    client.revoke_join_token("revoked").await.unwrap();
    let expired = drover.join_token("expired").await;
    // Let time pass for this token only: its expiry moves into the past.
    sqlx::query(
        "UPDATE join_tokens SET expires_at = now() - interval '1 minute' WHERE name = 'expired'",
    )
    .execute(drover.pool())
    .await
    .unwrap();

    // A well-formed token whose id exists but whose secret is wrong, one with an unknown id,
    // garbage, and none at all.
    let mut wrong_secret = good.secret.clone();
    wrong_secret.replace_range(wrong_secret.len() - 4.., "zzzz");
    let unknown_id =
        "drj_00000000000000000000000000000000_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let cases = [
        (wrong_secret.as_str(), "the join token is not valid"),
        (unknown_id, "the join token is not valid"),
        ("garbage", "the join token is not valid"),
        ("", "a join token is required"),
        (revoked.secret.as_str(), "has been revoked"),
        (expired.secret.as_str(), "expired at"),
    ];
    for (secret, message) in cases {
        let err = provision_once(&drover, secret, "refused")
            .await
            .unwrap_err();
        let ProvisionError::Rejected(status) = &err else {
            panic!("{secret:?}: expected a gRPC rejection, got {err}");
        };
        assert_eq!(
            status.code(),
            Code::PermissionDenied,
            "{secret:?}: {status:?}"
        );
        assert!(
            status.message().contains(message),
            "{secret:?}: {}",
            status.message()
        );
    }
    assert_eq!(
        machine_count(&drover).await,
        0,
        "refused joins leave no row"
    );
    for t in client.list_join_tokens().await.unwrap() {
        assert_eq!(t.use_count, 0, "{} was not used", t.name);
    }

    provision_once(&drover, &good.secret, "accepted")
        .await
        .expect("the good token works");
    assert_eq!(machine_count(&drover).await, 1);
    drover.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_keys_and_identity_theft_are_refused() {
    use drover_proto::sidero::link::ProvisionRequest;
    use drover_proto::sidero::link::provision_service_client::ProvisionServiceClient;

    let drover = TestDrover::start().await;
    let token = drover.join_token("lab").await;
    let mut client = ProvisionServiceClient::new(drover.machine_api_channel().await);
    let request = |uuid: &str, key: String, unique: &str| ProvisionRequest {
        node_uuid: uuid.to_owned(),
        node_public_key: key,
        join_token: Some(token.secret.clone()),
        node_unique_token: Some(unique.to_owned()),
        talos_version: Some("v1.12.4".to_owned()),
        wireguard_over_grpc: Some(false),
    };
    let uuid = "8a2d59f4-1c1e-4d0f-9b55-0a1b2c3d4e5f";

    for bad_key in ["", "not-base64!!", "AAAA", &"A".repeat(44)] {
        let status = client
            .provision(request(uuid, bad_key.to_owned(), "node-a"))
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "{bad_key:?}: {status:?}"
        );
        assert!(
            status.message().starts_with("node_public_key: "),
            "{}",
            status.message()
        );
    }
    assert_eq!(machine_count(&drover).await, 0);

    let first = KeyPair::generate().public().to_base64();
    client
        .provision(request(uuid, first.clone(), "node-a"))
        .await
        .expect("first join");

    // Another node claims the same SMBIOS UUID with a different unique token.
    let status = client
        .provision(request(
            uuid,
            KeyPair::generate().public().to_base64(),
            "node-b",
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
    assert!(
        status
            .message()
            .contains("already registered to a different node"),
        "{}",
        status.message()
    );
    let stored = drover.client().get_machine(uuid).await.unwrap();
    assert_eq!(
        stored.wireguard_public_key, first,
        "the impostor did not replace the key"
    );

    // The same node, after a reboot, is welcome.
    let second = KeyPair::generate().public().to_base64();
    client
        .provision(request(uuid, second.clone(), "node-a"))
        .await
        .expect("same node re-joins");
    assert_eq!(
        drover
            .client()
            .get_machine(uuid)
            .await
            .unwrap()
            .wireguard_public_key,
        second
    );

    // A key already held by another machine is refused.
    let status = client
        .provision(request(
            "0f0e0d0c-1c1e-4d0f-9b55-0a1b2c3d4e5f",
            second,
            "node-c",
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(machine_count(&drover).await, 1);
    drover.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wireguard_over_grpc_gets_a_virtual_peer_address() {
    let drover = TestDrover::start().await;
    let token = drover.join_token("lab").await;
    let mut url = drover.join_url(&token.secret);
    url.grpc_tunnel = true;
    let mut machine = EmulatedMachine::new(MachineIdentity::derive("grpc", 0), "v1.13.8");
    let provisioned = machine.provision(&url).await.unwrap().clone();
    let peer = provisioned
        .grpc_peer_addr_port
        .clone()
        .expect("a virtual peer address");
    let (ip, port) = peer.rsplit_once(':').unwrap();
    let ip: Ipv6Addr = ip
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .unwrap();
    assert!(AddressPlan::default().grpc_tunnel.contains(ip), "{peer}");
    assert_eq!(
        port.parse::<u16>().unwrap(),
        drover_siderolink::GRPC_TUNNEL_PEER_PORT
    );
    assert_eq!(provisioned.server_endpoints, vec![peer.clone()]);

    // The virtual address is kept across boots, like the tunnel address.
    machine.reboot();
    let again = machine.provision(&url).await.unwrap();
    assert_eq!(again.grpc_peer_addr_port.as_deref(), Some(peer.as_str()));
    assert_eq!(again.node_address, provisioned.node_address);
    let stored = drover
        .client()
        .get_machine(&machine.identity().uuid)
        .await
        .unwrap();
    assert!(stored.wireguard_over_grpc);
    drover.stop().await;
}

/// Speaks Provision with messages defined here, independently of `proto/`, from the wire facts
/// (package `sidero.link`, field numbers, the endpoint order quirk), so a renumbered field in our
/// `.proto` files breaks this test.
mod wire {
    use super::*;
    use tonic::codegen::http::uri::PathAndQuery;

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct WireProvisionRequest {
        #[prost(string, tag = "1")]
        pub node_uuid: String,
        #[prost(string, tag = "2")]
        pub node_public_key: String,
        #[prost(string, optional, tag = "3")]
        pub join_token: Option<String>,
        #[prost(string, optional, tag = "4")]
        pub node_unique_token: Option<String>,
        #[prost(string, optional, tag = "5")]
        pub talos_version: Option<String>,
        #[prost(bool, optional, tag = "6")]
        pub wireguard_over_grpc: Option<bool>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct WireProvisionResponse {
        #[prost(string, repeated, tag = "1")]
        pub server_endpoint: Vec<String>,
        #[prost(string, tag = "3")]
        pub server_public_key: String,
        #[prost(string, tag = "4")]
        pub node_address_prefix: String,
        #[prost(string, tag = "5")]
        pub server_address: String,
        #[prost(string, tag = "6")]
        pub grpc_peer_addr_port: String,
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn provision_matches_the_talos_wire_format() {
        let drover = TestDrover::start_with(Extra {
            advertised_wireguard_endpoints: vec![
                "192.0.2.1:50180".into(),
                "198.51.100.1:50180".into(),
            ],
            ..Extra::default()
        })
        .await;
        let token = drover.join_token("wire").await;
        let node_key = KeyPair::generate().public().to_base64();

        let mut grpc = tonic::client::Grpc::new(drover.machine_api_channel().await);
        grpc.ready().await.unwrap();
        let codec =
            tonic_prost::ProstCodec::<WireProvisionRequest, WireProvisionResponse>::default();
        let response = grpc
            .unary(
                tonic::Request::new(WireProvisionRequest {
                    node_uuid: "4C4C4544-0042-3510-8052-B7C04F4E4B32".into(),
                    node_public_key: node_key.clone(),
                    join_token: Some(token.secret.clone()),
                    node_unique_token: Some("abc".into()),
                    talos_version: Some("v1.13.8".into()),
                    wireguard_over_grpc: Some(false),
                }),
                PathAndQuery::from_static("/sidero.link.ProvisionService/Provision"),
                codec,
            )
            .await
            .expect("Provision answers")
            .into_inner();

        // Primary endpoint last on the wire.
        assert_eq!(
            response.server_endpoint,
            vec!["198.51.100.1:50180", "192.0.2.1:50180"]
        );
        assert_eq!(response.server_address, "fdae:41e4:649b:9303::1");
        let (addr, len) = response.node_address_prefix.split_once('/').unwrap();
        assert_eq!(len, "64");
        let addr: Ipv6Addr = addr.parse().unwrap();
        assert!(AddressPlan::default().siderolink.contains(addr));
        assert!(drover_siderolink::addressing::is_siderolink_peer(addr));
        assert_eq!(
            drover_siderolink::keys::PublicKey::from_base64(&response.server_public_key)
                .unwrap()
                .as_bytes()
                .len(),
            32
        );
        assert_eq!(response.grpc_peer_addr_port, "");

        // The machine id is the SMBIOS UUID, lower-cased.
        let m = drover
            .client()
            .get_machine("4c4c4544-0042-3510-8052-b7c04f4e4b32")
            .await
            .unwrap();
        assert_eq!(m.address, addr.to_string());
        assert_eq!(m.wireguard_public_key, node_key);
        drover.stop().await;
    }
}
