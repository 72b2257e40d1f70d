//! One emulated machine against a real gRPC server.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{BAD_TOKEN, FakeControlPlane, Options, PRIMARY_FIRST};
use drover_emu::{
    CancellationToken, DEFAULT_TALOS_VERSION, EmulatedMachine, JoinUrl, MachineIdentity,
    ProvisionError, RetryPolicy,
};
use drover_proto::sidero::link::ProvisionRequest;
use tonic::Code;

fn machine(index: usize) -> EmulatedMachine {
    EmulatedMachine::new(
        MachineIdentity::derive("provision-tests", index),
        DEFAULT_TALOS_VERSION,
    )
}

fn fast(max_attempts: Option<usize>) -> RetryPolicy {
    RetryPolicy {
        min_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(40),
        max_attempts,
    }
}

#[test]
fn identities_are_stable_and_distinct() {
    let a = MachineIdentity::derive("seed", 0);
    assert_eq!(a, MachineIdentity::derive("seed", 0));
    assert_eq!(a.uuid, uuid_v5_shape(&a.uuid));

    let ids: Vec<_> = (0..1000)
        .map(|i| MachineIdentity::derive("seed", i))
        .collect();
    let uuids: HashSet<_> = ids.iter().map(|id| &id.uuid).collect();
    let tokens: HashSet<_> = ids.iter().map(|id| &id.unique_token).collect();
    assert_eq!((uuids.len(), tokens.len()), (1000, 1000));
    assert_ne!(MachineIdentity::derive("other seed", 0), a);
}

/// Lower-case, hyphenated, version 5.
fn uuid_v5_shape(uuid: &str) -> String {
    let parsed = uuid::Uuid::parse_str(uuid).unwrap();
    assert_eq!(parsed.get_version_num(), 5);
    parsed.hyphenated().to_string()
}

#[tokio::test]
async fn provision_sends_the_fields_a_talos_node_sends() {
    let fake = FakeControlPlane::start().await;
    let mut m = machine(0);
    let provisioned = m.provision(&fake.api("tok.en")).await.unwrap().clone();

    let sent = fake.requests();
    assert_eq!(
        sent,
        [ProvisionRequest {
            node_uuid: m.identity().uuid.clone(),
            node_public_key: m.public_key().to_base64(),
            join_token: Some("tok.en".into()),
            node_unique_token: Some(m.identity().unique_token.clone()),
            talos_version: Some("v1.13.8".into()),
            wireguard_over_grpc: Some(false),
        }]
    );
    assert_eq!(m.provisioned(), Some(&provisioned));
    assert_eq!(provisioned.server_public_key, fake.server_public_key());
    assert_eq!(provisioned.server_address, fake.server_address());
    assert_eq!(provisioned.prefix_len, 64);
    assert_eq!(provisioned.grpc_peer_addr_port, None);

    // No token in the URL: no join_token; the tunnel flag comes from the URL.
    let api = JoinUrl::parse(&format!("grpc://{}?grpc_tunnel=true", fake.addr)).unwrap();
    let mut other = EmulatedMachine::new(MachineIdentity::derive("provision-tests", 1), "v1.12.0");
    other.provision(&api).await.unwrap();
    let sent = fake.requests().pop().unwrap();
    assert_eq!(sent.join_token, None);
    assert_eq!(sent.wireguard_over_grpc, Some(true));
    assert_eq!(sent.talos_version.as_deref(), Some("v1.12.0"));
}

#[tokio::test]
async fn endpoints_come_back_primary_first() {
    let fake = FakeControlPlane::start().await;
    let mut m = machine(0);
    let provisioned = m.provision(&fake.api("t")).await.unwrap();
    assert_eq!(provisioned.server_endpoints, PRIMARY_FIRST);
}

#[tokio::test]
async fn a_reboot_changes_the_key_but_not_the_identity() {
    let fake = FakeControlPlane::start().await;
    let api = fake.api("t");
    let mut m = machine(0);
    let first = m.provision(&api).await.unwrap().clone();
    let first_key = m.public_key();

    m.reboot();
    assert!(m.provisioned().is_none());
    assert_ne!(m.public_key(), first_key);
    let second = m.provision(&api).await.unwrap().clone();

    let [before, after] = <[ProvisionRequest; 2]>::try_from(fake.requests()).unwrap();
    assert_ne!(before.node_public_key, after.node_public_key);
    assert_eq!(after.node_public_key, m.public_key().to_base64());
    assert_eq!(before.node_uuid, after.node_uuid);
    assert_eq!(before.node_unique_token, after.node_unique_token);
    // The fake, like a real control plane, keeps the address of a known machine.
    assert_eq!(first.node_address, second.node_address);
}

#[tokio::test]
async fn permission_denied_is_rejected_without_retry() {
    let fake = FakeControlPlane::start().await;
    let mut m = machine(0);
    let err = m
        .provision_with_retry(
            &fake.api(BAD_TOKEN),
            &fast(Some(1)),
            &CancellationToken::new(),
        )
        .await
        .unwrap_err();
    match &err {
        ProvisionError::Rejected(status) => assert_eq!(status.code(), Code::PermissionDenied),
        other => panic!("expected Rejected, got {other:?}"),
    }
    assert_eq!(err.code(), Some(Code::PermissionDenied));
    assert_eq!(fake.requests().len(), 1, "max_attempts 1 means no retry");
    assert!(m.provisioned().is_none());
}

#[tokio::test]
async fn retry_gives_up_after_max_attempts() {
    let fake = FakeControlPlane::start().await;
    let mut m = machine(0);
    let err = m
        .provision_with_retry(
            &fake.api(BAD_TOKEN),
            &fast(Some(3)),
            &CancellationToken::new(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(Code::PermissionDenied));
    assert_eq!(fake.requests().len(), 3);
}

#[tokio::test]
async fn retry_succeeds_once_the_server_recovers() {
    let fake = FakeControlPlane::start_with(Options {
        unavailable_first: 2,
        ..Options::default()
    })
    .await;
    let mut m = machine(0);
    let provisioned = m
        .provision_with_retry(&fake.api("t"), &fast(None), &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(provisioned.server_endpoints, PRIMARY_FIRST);
    let sent = fake.requests();
    assert_eq!(sent.len(), 3, "two UNAVAILABLE, then success");
    assert!(
        sent.iter()
            .all(|r| r.node_public_key == m.public_key().to_base64()),
        "same boot, same key"
    );
}

#[tokio::test]
async fn cancellation_stops_the_retries() {
    let fake = FakeControlPlane::start().await;
    let mut m = machine(0);
    let cancel = CancellationToken::new();
    let (api, policy) = (fake.api(BAD_TOKEN), fast(None));
    let (result, ()) = tokio::join!(m.provision_with_retry(&api, &policy, &cancel), async {
        fake.wait_for_requests(2).await;
        cancel.cancel();
    });
    assert!(
        matches!(result, Err(ProvisionError::Cancelled)),
        "{result:?}"
    );

    let cancelled = CancellationToken::new();
    cancelled.cancel();
    let result = m
        .provision_with_retry(&fake.api("t"), &fast(None), &cancelled)
        .await;
    assert!(
        matches!(result, Err(ProvisionError::Cancelled)),
        "{result:?}"
    );
}

#[tokio::test]
async fn nothing_listening_is_a_connect_error() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let api = JoinUrl::parse(&format!("grpc://127.0.0.1:{port}?jointoken=t")).unwrap();
    let err = machine(0).provision(&api).await.unwrap_err();
    match err {
        ProvisionError::Connect { endpoint, .. } => {
            assert_eq!(endpoint, format!("http://127.0.0.1:{port}"))
        }
        other => panic!("expected Connect, got {other:?}"),
    }
}
