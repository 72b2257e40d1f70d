//! Talos OS upgrades of emulated machines, through the tunnel as droverd makes them: the legacy
//! `MachineService.Upgrade` before Talos 1.13, `LifecycleService.Upgrade` from 1.13, the call
//! log, and the injected faults.

mod common;

use std::time::Duration;

use common::cluster::{Running, Secrets, eventually, install, json, run, running, wait};
use common::plane::{TunnelPlane, get, request, within};
use drover_emu::{
    Call, CallRecord, FleetConfig, Lifecycle, MachineType, NodeHandle, Stage, UpgradeFault,
};
use drover_talos::{client, installer_image};
use tonic::Code;

/// A fleet of `n` machines running Talos `version`, with `lifecycle`.
fn fleet(
    plane: &TunnelPlane,
    n: usize,
    seed: &str,
    version: &str,
    lifecycle: Lifecycle,
) -> Running {
    let mut config = FleetConfig::new(plane.api(), n);
    config.seed = seed.into();
    config.talos_version = version.into();
    config.lifecycle = lifecycle;
    run(config)
}

/// One bootstrapped control plane (and `workers` workers) of `secrets`' cluster.
async fn cluster(plane: &TunnelPlane, secrets: &Secrets, fleet: &Running) {
    let configs: Vec<Vec<u8>> = (0..fleet.nodes.len())
        .map(|n| {
            let kind = if n == 0 {
                MachineType::ControlPlane
            } else {
                MachineType::Worker
            };
            secrets.config(kind, "v1.33.1")
        })
        .collect();
    install(plane, &fleet.nodes, &configs).await;
    let apid = secrets.apid(plane, &fleet.nodes[0], "os:admin");
    eventually("apid over mTLS", || client::version(&apid)).await;
    client::bootstrap(&apid).await.unwrap();
}

/// Waits until `node` runs a boot other than `boot_id`, and returns its Talos version.
async fn rebooted(node: &NodeHandle, boot_id: &str) -> String {
    let status = wait(node, "the reboot after the upgrade", |s| {
        s.stage == Stage::Running && s.ready && s.boot_id != boot_id
    })
    .await;
    status.talos_version
}

/// The machine's one upgrade record, once over.
async fn finished_upgrade(fleet: &Running, node: &NodeHandle) -> CallRecord {
    let records = within(
        "the upgrade's record to finish",
        fleet.calls().wait_until(|records| {
            records
                .iter()
                .any(|r| r.uuid == node.uuid() && r.is_accepted_upgrade() && r.finished.is_some())
        }),
    )
    .await;
    let upgrades: Vec<CallRecord> = records
        .into_iter()
        .filter(|r| r.uuid == node.uuid() && r.is_accepted_upgrade())
        .collect();
    assert_eq!(upgrades.len(), 1, "{upgrades:?}");
    upgrades.into_iter().next().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1_12_node_upgrades_through_the_legacy_call() {
    let plane = TunnelPlane::start().await;
    let fleet = fleet(&plane, 2, "upgrade-legacy", "v1.12.4", Lifecycle::INSTANT);
    let secrets = Secrets::generate("legacy");
    cluster(&plane, &secrets, &fleet).await;
    let (cp, worker) = (&fleet.nodes[0], &fleet.nodes[1]);
    let image = installer_image("1.13.2");

    // Only an admin upgrades (Talos's rule for both calls); a 1.12 node has no LifecycleService.
    for role in ["os:reader", "os:operator"] {
        let err = client::upgrade(&secrets.apid(&plane, cp, role), &image)
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{role}");
    }
    let admin = secrets.apid(&plane, cp, "os:admin");
    let err = client::lifecycle_upgrade(&admin, &image).await.unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);
    // Two minors ahead is too far.
    let err = client::upgrade(&admin, &installer_image("1.15.0"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);

    // The control plane, then the worker, each by the call its version serves.
    for node in [cp, worker] {
        let before = node.status();
        let apid = secrets.apid(&plane, node, "os:admin");
        client::upgrade_for(&apid, &before.talos_version, &image)
            .await
            .unwrap();
        assert_eq!(rebooted(node, &before.boot_id).await, "v1.13.2");
        let version = eventually("Version after the upgrade", || client::version(&apid)).await;
        assert_eq!(version.tag, "v1.13.2");
        let stages = plane
            .stages_until(before.address.unwrap(), |s| {
                s.contains(&Stage::Upgrading) && s.ends_with(&[Stage::Running])
            })
            .await;
        let upgrading = stages.iter().rposition(|s| *s == Stage::Upgrading).unwrap();
        assert_eq!(
            &stages[upgrading..],
            [
                Stage::Upgrading,
                Stage::Rebooting,
                Stage::Booting,
                Stage::Running
            ]
        );
    }

    // The log: each machine upgraded once, by the legacy call, one after the other.
    let cp_upgrade = finished_upgrade(&fleet, cp).await;
    let worker_upgrade = finished_upgrade(&fleet, worker).await;
    assert_eq!(
        cp_upgrade.call,
        Call::Upgrade {
            image: image.clone()
        }
    );
    assert_eq!(cp_upgrade.call.upgrade_version().as_deref(), Some("1.13.2"));
    assert!(cp_upgrade.finished.unwrap() >= cp_upgrade.started);
    assert!(!cp_upgrade.overlaps(&worker_upgrade));
    assert!(cp_upgrade.seq < worker_upgrade.seq);
    let names: Vec<&str> = fleet
        .calls()
        .records()
        .iter()
        .map(|r| r.call.name())
        .collect();
    assert_eq!(
        names,
        [
            "ApplyConfiguration",
            "ApplyConfiguration",
            "Bootstrap",
            "Upgrade",
            "Upgrade",
            "Upgrade"
        ],
        "refused calls are recorded too (role refusals never reach the machine)"
    );

    // The Kubernetes node reports the new OS.
    let master = secrets.kube_client("drover", &["system:masters"]);
    let request = get(&format!("/api/v1/nodes/{}", worker.hostname()), &[]);
    let address = cp.status().address.unwrap();
    let (_, body) = eventually("the Kubernetes API", || {
        plane.kube(address, &secrets.kubernetes_ca, Some(&master), &request)
    })
    .await;
    assert_eq!(
        json(&body)["status"]["nodeInfo"]["osImage"],
        "Talos (v1.13.2)"
    );

    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1_13_node_upgrades_through_the_lifecycle_service() {
    let plane = TunnelPlane::start().await;
    let fleet = fleet(
        &plane,
        1,
        "upgrade-lifecycle",
        "v1.13.8",
        Lifecycle::INSTANT,
    );
    let secrets = Secrets::generate("lifecycle");
    cluster(&plane, &secrets, &fleet).await;
    let node = &fleet.nodes[0];
    let before = running(node).await;
    let image = installer_image("1.14.1");

    let reader = secrets.apid(&plane, node, "os:reader");
    let err = client::lifecycle_upgrade(&reader, &image)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    let admin = secrets.apid(&plane, node, "os:admin");
    client::upgrade_for(&admin, "v1.13.8", &image)
        .await
        .unwrap();
    assert_eq!(rebooted(node, &before.boot_id).await, "v1.14.1");
    let record = finished_upgrade(&fleet, node).await;
    assert_eq!(record.call, Call::LifecycleUpgrade { image });
    assert_eq!(record.call.name(), "LifecycleService.Upgrade");

    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_faults_fail_fall_back_and_hang() {
    let plane = TunnelPlane::start().await;
    let fleet = fleet(&plane, 1, "upgrade-faults", "v1.13.8", Lifecycle::INSTANT);
    let secrets = Secrets::generate("faults");
    cluster(&plane, &secrets, &fleet).await;
    let node = &fleet.nodes[0];
    let apid = || secrets.apid(&plane, node, "os:admin");
    let image = installer_image("1.14.0");

    // Fail: the call fails, nothing changes.
    let before = running(node).await;
    node.set_upgrade_fault(Some(UpgradeFault::Fail));
    assert_eq!(node.upgrade_fault(), Some(UpgradeFault::Fail));
    let err = client::lifecycle_upgrade(&apid(), &image)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Aborted);
    assert!(err.message().contains("failed to pull"), "{err}");
    let err = client::upgrade(&apid(), &image).await.unwrap_err();
    assert!(
        err.message().contains("error validating installer image"),
        "{err}"
    );
    let after = node.status();
    assert_eq!(
        (after.stage, after.boot_id.as_str()),
        (Stage::Running, before.boot_id.as_str())
    );
    assert_eq!(client::version(&apid()).await.unwrap().tag, "v1.13.8");
    let failed = fleet.calls().of(node.uuid());
    assert!(
        failed
            .iter()
            .rev()
            .take(2)
            .all(|r| r.error.is_some() && r.finished.is_some())
    );

    // BootBackToOld: installs, reboots, and comes back on the old version.
    node.set_upgrade_fault(Some(UpgradeFault::BootBackToOld));
    client::lifecycle_upgrade(&apid(), &image).await.unwrap();
    assert_eq!(rebooted(node, &before.boot_id).await, "v1.13.8");
    let channel = apid();
    let version = eventually("Version after the fallback", || client::version(&channel)).await;
    assert_eq!(version.tag, "v1.13.8");
    let record = finished_upgrade(&fleet, node).await;
    assert!(record.error.is_none(), "the node itself reports success");

    // Hang: accepted, `upgrading`, and nothing more until the fault is cleared.
    node.set_upgrade_fault(Some(UpgradeFault::Hang));
    let before = running(node).await;
    let hanging = tokio::spawn({
        let apid = apid();
        let image = image.clone();
        async move { client::lifecycle_upgrade(&apid, &image).await }
    });
    wait(node, "upgrading", |s| s.stage == Stage::Upgrading).await;
    // Without the fault the instant upgrade would be over long before this second call.
    let err = client::upgrade(&apid(), &image).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert_eq!(err.message(), "the machine is upgrading");
    let status = node.status();
    assert_eq!(
        (status.stage, status.boot_id.as_str()),
        (Stage::Upgrading, before.boot_id.as_str())
    );
    assert!(!hanging.is_finished());
    let uuid = node.uuid().to_owned();
    let pending = |records: &[CallRecord]| {
        records
            .iter()
            .filter(|r| r.uuid == uuid && r.is_accepted_upgrade() && r.finished.is_none())
            .count()
    };
    assert_eq!(pending(&fleet.calls().records()), 1);

    node.set_upgrade_fault(None);
    within("the cleared upgrade", hanging)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rebooted(node, &before.boot_id).await, "v1.14.0");
    within(
        "the record to finish",
        fleet.calls().wait_until(|r| pending(r) == 0),
    )
    .await;

    // A machine stopped while its upgrade hangs stops; the upgrade never finishes.
    node.set_upgrade_fault(Some(UpgradeFault::Hang));
    let apid = secrets.apid(&plane, node, "os:admin");
    eventually("apid after the upgrade", || client::version(&apid)).await;
    client::upgrade(&apid, &installer_image("1.14.1"))
        .await
        .unwrap();
    wait(node, "upgrading", |s| s.stage == Stage::Upgrading).await;
    let calls = fleet.calls().clone();
    fleet.stop().await;
    assert_eq!(pending(&calls.records()), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_plane_upgrades_only_while_etcd_is_healthy() {
    let plane = TunnelPlane::start().await;
    // Upgrades take long enough to try the next control plane meanwhile.
    let lifecycle = Lifecycle {
        upgrade: Duration::from_secs(3600),
        ..Lifecycle::INSTANT
    };
    let fleet = fleet(&plane, 3, "upgrade-etcd", "v1.13.8", lifecycle);
    let secrets = Secrets::generate("etcd");
    let config = secrets.config(MachineType::ControlPlane, "v1.33.1");
    let configs = vec![config; 3];
    install(&plane, &fleet.nodes, &configs).await;
    let apid = |n: usize| secrets.apid(&plane, &fleet.nodes[n], "os:admin");
    let first = apid(0);
    eventually("apid over mTLS", || client::version(&first)).await;
    client::bootstrap(&first).await.unwrap();
    within(
        "three etcd members",
        fleet
            .clusters
            .wait_until(|r| r.etcd_members(&secrets.cluster_id).len() == 3),
    )
    .await;
    let image = installer_image("1.13.9");

    client::upgrade(&first, &image).await.unwrap();
    let upgrading = fleet.nodes[0].hostname().to_owned();
    within(
        "the first control plane to stop its services",
        fleet.clusters.wait_until(|r| {
            let ready = r.ready_node_names(&secrets.cluster_id);
            ready.len() == 2 && !ready.contains(&upgrading)
        }),
    )
    .await;
    assert_eq!(fleet.nodes[0].status().stage, Stage::Upgrading);
    for upgrade in [
        client::upgrade(&apid(1), &image).await,
        client::lifecycle_upgrade(&apid(2), &image).await,
    ] {
        let err = upgrade.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition);
        assert!(err.message().contains("is not healthy"), "{err}");
    }

    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_components_follow_the_applied_configuration() {
    let plane = TunnelPlane::start().await;
    let fleet = fleet(&plane, 2, "components", "v1.13.8", Lifecycle::INSTANT);
    let secrets = Secrets::generate("components");
    cluster(&plane, &secrets, &fleet).await;
    let (cp, worker) = (&fleet.nodes[0], &fleet.nodes[1]);
    let address = cp.status().address.unwrap();
    let master = secrets.kube_client("drover", &["system:masters"]);
    let kube = |path: String| {
        let master = master.clone();
        let ca = secrets.kubernetes_ca.clone();
        let plane = &plane;
        async move {
            let request = get(&path, &[]);
            let (code, body) = eventually("the Kubernetes API", || {
                plane.kube(address, &ca, Some(&master), &request)
            })
            .await;
            assert_eq!(code, 200, "{body}");
            json(&body)
        }
    };
    let pods_path = "/api/v1/namespaces/kube-system/pods".to_owned();
    // name -> (image, ready)
    let images = |list: &serde_json::Value| -> Vec<(String, String, bool)> {
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|pod| {
                (
                    pod["metadata"]["name"].as_str().unwrap().to_owned(),
                    pod["spec"]["containers"][0]["image"]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                    pod["status"]["phase"] == "Running"
                        && pod["status"]["conditions"][0]["type"] == "Ready"
                        && pod["status"]["conditions"][0]["status"] == "True",
                )
            })
            .collect()
    };
    let image_of = |pods: &[(String, String, bool)], name: &str| {
        pods.iter()
            .find(|(n, _, _)| n.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in {pods:?}"))
            .1
            .clone()
    };

    let pods = images(&kube(pods_path.clone()).await);
    let (h_cp, h_worker) = (cp.hostname(), worker.hostname());
    assert_eq!(pods.len(), 3 + 2 + 2, "{pods:?}");
    assert!(pods.iter().all(|(_, _, ready)| *ready), "{pods:?}");
    for (name, image) in [
        (
            format!("kube-apiserver-{h_cp}"),
            "registry.k8s.io/kube-apiserver:v1.33.1",
        ),
        (
            format!("kube-controller-manager-{h_cp}"),
            "registry.k8s.io/kube-controller-manager:v1.33.1",
        ),
        (
            format!("kube-scheduler-{h_cp}"),
            "registry.k8s.io/kube-scheduler:v1.33.1",
        ),
        (
            format!("kube-proxy-{h_cp}"),
            "registry.k8s.io/kube-proxy:v1.33.1",
        ),
        (
            format!("kube-proxy-{h_worker}"),
            "registry.k8s.io/kube-proxy:v1.33.1",
        ),
        ("coredns-".to_owned(), drover_emu::DEFAULT_COREDNS_IMAGE),
    ] {
        assert_eq!(image_of(&pods, &name), image);
    }
    assert_eq!(kube("/version".into()).await["gitVersion"], "v1.33.1");

    // The control plane's configuration moves to 1.34 with a newer CoreDNS, without a reboot.
    let boot = cp.status().boot_id;
    let coredns = "registry.k8s.io/coredns/coredns:v1.12.1";
    let config = secrets.config_with(
        MachineType::ControlPlane,
        "v1.34.0",
        &format!("  coreDNS:\n    image: {coredns}\n"),
    );
    let admin = secrets.apid(&plane, cp, "os:admin");
    client::apply_configuration(&admin, &config, drover_talos::ApplyMode::Auto)
        .await
        .unwrap();
    assert_eq!(cp.status().boot_id, boot);
    assert_eq!(kube("/version".into()).await["gitVersion"], "v1.34.0");
    let pods = images(&kube(pods_path.clone()).await);
    assert_eq!(
        image_of(&pods, &format!("kube-scheduler-{h_cp}")),
        "registry.k8s.io/kube-scheduler:v1.34.0"
    );
    // As on Talos, the bootstrap manifests are not re-applied: the add-ons stay until their
    // objects are patched through the API.
    assert_eq!(
        image_of(&pods, &format!("kube-proxy-{h_worker}")),
        "registry.k8s.io/kube-proxy:v1.33.1"
    );
    assert_eq!(
        image_of(&pods, "coredns-"),
        drover_emu::DEFAULT_COREDNS_IMAGE
    );
    let patch = |path: &str, container: &str, image: &str| {
        let body = serde_json::json!({"spec": {"template": {"spec": {"containers": [
            {"name": container, "image": image}
        ]}}}})
        .to_string();
        request(
            "PATCH",
            path,
            &[("Content-Type", "application/strategic-merge-patch+json")],
            &body,
        )
    };
    let apps = "/apis/apps/v1/namespaces/kube-system";
    for (path, container, image) in [
        (
            format!("{apps}/daemonsets/kube-proxy"),
            "kube-proxy",
            "registry.k8s.io/kube-proxy:v1.34.0",
        ),
        (format!("{apps}/deployments/coredns"), "coredns", coredns),
    ] {
        let (code, body) = plane
            .kube(
                address,
                &secrets.kubernetes_ca,
                Some(&master),
                &patch(&path, container, image),
            )
            .await
            .unwrap();
        assert_eq!(code, 200, "{body}");
        assert_eq!(
            json(&body)["spec"]["template"]["spec"]["containers"][0]["image"],
            image
        );
    }
    let wrong = patch(&format!("{apps}/deployments/coredns"), "dns", coredns);
    let (code, body) = plane
        .kube(address, &secrets.kubernetes_ca, Some(&master), &wrong)
        .await
        .unwrap();
    assert_eq!(code, 422, "{body}");
    let pods = images(&kube(pods_path.clone()).await);
    assert_eq!(
        image_of(&pods, &format!("kube-proxy-{h_worker}")),
        "registry.k8s.io/kube-proxy:v1.34.0"
    );
    assert_eq!(image_of(&pods, "coredns-"), coredns);
    let node = kube(format!("/api/v1/nodes/{h_worker}")).await;
    assert_eq!(
        node["status"]["nodeInfo"]["kubeletVersion"], "v1.33.1",
        "the worker's kubelet waits"
    );

    // The worker's kubelet follows its own configuration.
    let worker_apid = secrets.apid(&plane, worker, "os:admin");
    let config = secrets.config(MachineType::Worker, "v1.34.0");
    client::apply_configuration(&worker_apid, &config, drover_talos::ApplyMode::NoReboot)
        .await
        .unwrap();
    let node = kube(format!("/api/v1/nodes/{h_worker}")).await;
    assert_eq!(node["status"]["nodeInfo"]["kubeletVersion"], "v1.34.0");

    // One pod, and pods as kubectl asks for them.
    let pod = kube(format!("{pods_path}/kube-apiserver-{h_cp}")).await;
    assert_eq!(pod["kind"], "Pod");
    assert_eq!(pod["spec"]["nodeName"], h_cp);
    let (code, body) = plane
        .kube(
            address,
            &secrets.kubernetes_ca,
            Some(&master),
            &get(
                &pods_path,
                &[(
                    "Accept",
                    "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
                )],
            ),
        )
        .await
        .unwrap();
    assert_eq!(code, 200);
    let table = json(&body);
    assert_eq!(table["kind"], "Table");
    assert_eq!(table["columnDefinitions"][1]["name"], "Ready");
    assert_eq!(table["rows"].as_array().unwrap().len(), 7);
    assert_eq!(table["rows"][0]["cells"][1], "1/1");
    let other = kube("/api/v1/namespaces/default/pods".into()).await;
    assert!(other["items"].as_array().unwrap().is_empty());
    let dns = kube(format!("{pods_path}?labelSelector=k8s-app%3Dkube-dns")).await;
    assert_eq!(dns["items"].as_array().unwrap().len(), 2);
    let on_worker = images(
        &kube(format!(
            "/api/v1/pods?fieldSelector=spec.nodeName%3D{h_worker}"
        ))
        .await,
    );
    assert!(
        on_worker
            .iter()
            .any(|(name, _, _)| name == &format!("kube-proxy-{h_worker}"))
    );
    assert!(
        on_worker
            .iter()
            .all(|(name, _, _)| !name.starts_with("kube-apiserver"))
    );

    // The log has the applied versions.
    let applied: Vec<String> = fleet
        .calls()
        .records()
        .into_iter()
        .filter_map(|r| match r.call {
            Call::ApplyConfiguration {
                kubernetes: Some(k),
                ..
            } => Some(k.api_server),
            _ => None,
        })
        .collect();
    assert_eq!(
        applied.last().unwrap(),
        "registry.k8s.io/kube-apiserver:v1.34.0"
    );

    fleet.stop().await;
}
