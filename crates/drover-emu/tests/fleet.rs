//! Fleets of emulated machines against a real gRPC server.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{BAD_TOKEN, FakeControlPlane, Options};
use drover_emu::{
    CancellationToken, Fleet, FleetConfig, MachineIdentity, ProvisionError, RetryPolicy,
};
use tonic::Code;

fn fast(max_attempts: Option<usize>) -> RetryPolicy {
    RetryPolicy {
        min_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(40),
        max_attempts,
    }
}

/// A safety net so a broken bound hangs no test run; never used to wait for something.
async fn within_10s<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .expect("took over 10 s")
}

#[tokio::test]
async fn a_fleet_of_20_provisions_all_with_distinct_addresses() {
    let fake = FakeControlPlane::start().await;
    let mut fleet = Fleet::new(FleetConfig {
        seed: "fleet-tests".into(),
        ..FleetConfig::new(fake.api("t"), 20)
    });
    let mut reported = Vec::new();
    within_10s(
        fleet.provision_all_reporting(&fast(None), &CancellationToken::new(), |m| {
            reported.push(m.identity().uuid.clone())
        }),
    )
    .await
    .unwrap();

    let machines = fleet.machines();
    assert_eq!(machines.len(), 20);
    for (index, m) in machines.iter().enumerate() {
        assert_eq!(m.identity(), &MachineIdentity::derive("fleet-tests", index));
    }
    let addresses: HashSet<_> = machines
        .iter()
        .map(|m| m.provisioned().unwrap().node_address)
        .collect();
    assert_eq!(addresses.len(), 20);
    assert_eq!(
        reported.iter().collect::<HashSet<_>>().len(),
        20,
        "each machine reported once"
    );
    assert_eq!(fake.requests().len(), 20);
    assert_eq!(
        fake.connections(),
        1,
        "the machines share one HTTP/2 connection"
    );
}

#[tokio::test]
async fn a_fleet_bounds_the_calls_in_flight() {
    // The fake holds calls until 4 are in flight, so exactly 4 must be, never more.
    let fake = FakeControlPlane::start_with(Options {
        hold_until_in_flight: Some(4),
        ..Options::default()
    })
    .await;
    let mut fleet = Fleet::new(FleetConfig {
        concurrency: 4,
        ..FleetConfig::new(fake.api("t"), 20)
    });
    within_10s(fleet.provision_all(&fast(None), &CancellationToken::new()))
        .await
        .unwrap();
    assert_eq!(fake.max_in_flight(), 4);
    assert!(fleet.machines().iter().all(|m| m.provisioned().is_some()));
}

#[tokio::test]
async fn a_fleet_retries_until_the_server_recovers() {
    let fake = FakeControlPlane::start_with(Options {
        unavailable_first: 5,
        ..Options::default()
    })
    .await;
    let mut fleet = Fleet::new(FleetConfig::new(fake.api("t"), 10));
    within_10s(fleet.provision_all(&fast(None), &CancellationToken::new()))
        .await
        .unwrap();
    assert_eq!(fake.requests().len(), 15);
    assert!(fleet.machines().iter().all(|m| m.provisioned().is_some()));
}

#[tokio::test]
async fn a_fleet_reboots_and_provisions_again_with_new_keys() {
    let fake = FakeControlPlane::start().await;
    let mut fleet = Fleet::new(FleetConfig::new(fake.api("t"), 5));
    let cancel = CancellationToken::new();
    within_10s(fleet.provision_all(&fast(None), &cancel))
        .await
        .unwrap();
    let before: Vec<_> = fleet
        .machines()
        .iter()
        .map(|m| (m.public_key(), m.provisioned().unwrap().node_address))
        .collect();

    fleet.reboot_all();
    assert!(fleet.machines().iter().all(|m| m.provisioned().is_none()));
    within_10s(fleet.provision_all(&fast(None), &cancel))
        .await
        .unwrap();

    for (m, (key, address)) in fleet.machines().iter().zip(before) {
        assert_ne!(m.public_key(), key);
        assert_eq!(m.provisioned().unwrap().node_address, address);
    }
    assert_eq!(fake.requests().len(), 10);

    // Everything joined: nothing more to do.
    within_10s(fleet.provision_all(&fast(None), &cancel))
        .await
        .unwrap();
    assert_eq!(fake.requests().len(), 10);
}

#[tokio::test]
async fn a_fleet_stops_at_the_first_machine_that_gives_up() {
    let fake = FakeControlPlane::start().await;
    let mut fleet = Fleet::new(FleetConfig::new(fake.api(BAD_TOKEN), 3));
    let err = within_10s(fleet.provision_all(&fast(Some(1)), &CancellationToken::new()))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ProvisionError::Rejected(s) if s.code() == Code::PermissionDenied),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_fleet_stops_on_cancel() {
    let fake = FakeControlPlane::start().await;
    let mut fleet = Fleet::new(FleetConfig::new(fake.api(BAD_TOKEN), 3));
    let cancel = CancellationToken::new();
    let policy = fast(None);
    let (result, ()) = tokio::join!(within_10s(fleet.provision_all(&policy, &cancel)), async {
        fake.wait_for_requests(6).await;
        cancel.cancel();
    });
    assert!(
        matches!(result, Err(ProvisionError::Cancelled)),
        "{result:?}"
    );
}
