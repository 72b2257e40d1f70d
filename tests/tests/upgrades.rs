//! Rolling Talos upgrades end to end, checked against the emulated machines' own record of the
//! calls they received: control planes before workers and never two at once, a droverd restart
//! mid-upgrade upgrades no node twice, a failure stops the rollout, a node that boots back into
//! the old version is caught, and a rollback rolls the same way.

use std::collections::HashSet;
use std::time::Duration;

use drover_client::Client;
use drover_e2e::{TestDrover, eventually, kubeconfig_through_tunnel, kubectl};
use drover_emu::{CallRecord, CancellationToken, Fleet, NodeHandle, UpgradeFault};
use drover_model::{ClusterSpec, StartUpgrade, Upgrade, UpgradeKind, UpgradeState};

const LIMIT: Duration = Duration::from_secs(300);
const FROM: &str = "1.12.4";
const TO: &str = "1.13.0";

/// The clusters' Kubernetes version: one Talos TO supports and 1.14 does not.
const KUBERNETES: &str = "1.31.2";

/// A Ready cluster of `cps` control planes and `workers` workers, on Talos FROM and Kubernetes
/// `kubernetes`.
async fn ready_cluster(
    drover: &TestDrover,
    name: &str,
    kubernetes: &str,
    cps: usize,
    workers: usize,
) -> (
    Vec<NodeHandle>,
    drover_emu::CallLog,
    CancellationToken,
    tokio::task::JoinHandle<Fleet>,
) {
    let ready = drover_e2e::ready_cluster(drover, name, FROM, kubernetes, cps, workers).await;
    (ready.nodes, ready.calls, ready.cancel, ready.running)
}

async fn upgrade_where(
    client: &Client,
    name: &str,
    what: &str,
    ok: impl Fn(&Upgrade) -> bool,
) -> Upgrade {
    eventually(what, LIMIT, || {
        let client = client.clone();
        let ok = &ok;
        async move {
            let u = client.get_upgrade(name).await.ok()?;
            ok(&u).then_some(u)
        }
    })
    .await
}

fn talos(version: &str, dry_run: bool) -> StartUpgrade {
    StartUpgrade {
        kind: UpgradeKind::Talos,
        version: version.into(),
        dry_run,
    }
}

/// Accepted upgrade calls, in the order received.
fn upgrades(calls: &[CallRecord]) -> Vec<CallRecord> {
    calls
        .iter()
        .filter(|c| c.is_accepted_upgrade())
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_talos_upgrade_rolls_control_planes_first_survives_a_restart_and_rolls_back() {
    let mut drover = TestDrover::start().await;
    let (nodes, calls, cancel, running) = ready_cluster(&drover, "prod", KUBERNETES, 3, 3).await;
    let client = drover.client();
    let cluster = client.get_cluster("prod").await.unwrap();
    let control_planes: HashSet<String> = cluster
        .status
        .machines
        .iter()
        .filter(|m| m.machine_set == "control-planes")
        .map(|m| m.id.to_string())
        .collect();

    // Refused targets name the rule.
    for (target, rule) in [
        ("1.14.0", "Kubernetes"),
        ("1.11.0", "1.12.4"),
        (FROM, "already"),
    ] {
        let err = client
            .start_upgrade("prod", &talos(target, false))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(rule), "{target}: {err}");
    }

    // The plan: six nodes, control planes first.
    let planned = client
        .start_upgrade("prod", &talos(TO, true))
        .await
        .unwrap();
    assert!(planned.id.is_none());
    let lines: Vec<&str> = planned
        .plan
        .lines()
        .filter(|l| l.contains(" talos "))
        .collect();
    assert_eq!(lines.len(), 6, "{}", planned.plan);
    assert!(
        lines[..3].iter().all(|l| l.contains("control-planes")),
        "{}",
        planned.plan
    );
    assert!(
        upgrades(&calls.records()).is_empty(),
        "a dry run touches nothing"
    );

    // Start, restart droverd while the first node is upgrading, and let it finish.
    client
        .start_upgrade("prod", &talos(TO, false))
        .await
        .unwrap();
    upgrade_where(&client, "prod", "a node upgrading", |u| !u.nodes.is_empty()).await;
    drover.restart().await;
    let client = drover.client();
    let done = upgrade_where(&client, "prod", "the upgrade done", |u| {
        u.state == UpgradeState::Done
    })
    .await;
    assert_eq!(done.nodes.len(), 6);
    assert!(done.nodes.iter().all(|n| n.state == "done"));
    for m in client.all_machines().await.unwrap() {
        assert_eq!(m.talos_version, format!("v{TO}"));
    }
    for node in &nodes {
        assert_eq!(node.status().talos_version, format!("v{TO}"));
    }

    // The machines' own record: one upgrade each; control planes one at a time and before
    // any worker.
    let log = upgrades(&calls.records());
    assert_eq!(log.len(), 6, "{log:#?}");
    assert_eq!(
        log.iter().map(|c| &c.uuid).collect::<HashSet<_>>().len(),
        6,
        "no node twice"
    );
    let (cps, workers): (Vec<_>, Vec<_>) =
        log.iter().partition(|c| control_planes.contains(&c.uuid));
    for (i, a) in cps.iter().enumerate() {
        for b in &cps[i + 1..] {
            assert!(
                !a.overlaps(b),
                "two control planes upgraded at once: {a:?} {b:?}"
            );
        }
    }
    let last_cp = cps.iter().filter_map(|c| c.finished).max().unwrap();
    assert!(
        workers.iter().all(|w| w.started >= last_cp),
        "a worker started before the control planes finished"
    );

    let events: Vec<String> = client
        .cluster_events("prod", 0)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(events.first().map(String::as_str), Some("upgradeStarted"));
    assert_eq!(events.iter().filter(|k| *k == "upgradeNodeDone").count(), 6);
    assert_eq!(events.last().map(String::as_str), Some("upgradeFinished"));

    // Rollback: the previous version, rolled the same way.
    client
        .start_upgrade("prod", &talos(FROM, false))
        .await
        .unwrap();
    upgrade_where(&client, "prod", "the rollback done", |u| {
        u.state == UpgradeState::Done && u.to_version == FROM
    })
    .await;
    assert_eq!(upgrades(&calls.records()).len(), 12);
    for m in client.all_machines().await.unwrap() {
        assert_eq!(m.talos_version, format!("v{FROM}"));
    }
    cancel.cancel();
    running.await.unwrap();
    drover.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_node_stops_the_rollout_and_a_boot_back_to_the_old_version_is_caught() {
    let drover = TestDrover::start().await;
    let (nodes, calls, cancel, running) = ready_cluster(&drover, "lab", KUBERNETES, 1, 2).await;
    let client = drover.client();
    let cluster = client.get_cluster("lab").await.unwrap();
    let cp = cluster
        .status
        .machines
        .iter()
        .find(|m| m.machine_set == "control-planes")
        .unwrap()
        .id
        .to_string();
    let handle = |id: &str| nodes.iter().find(|n| n.uuid() == id).unwrap();

    // The control plane boots back into the old version: caught, and nothing else is touched.
    handle(&cp).set_upgrade_fault(Some(UpgradeFault::BootBackToOld));
    client
        .start_upgrade("lab", &talos(TO, false))
        .await
        .unwrap();
    let failed = upgrade_where(&client, "lab", "the upgrade failed", |u| {
        u.state == UpgradeState::Failed
    })
    .await;
    let error = failed.error.unwrap();
    assert!(
        error.contains(&cp) && error.contains("fell back"),
        "{error}"
    );
    let status = eventually("the cluster Failed", LIMIT, || {
        let client = client.clone();
        async move {
            let status = client.get_cluster("lab").await.ok()?.status;
            (status.phase == drover_model::ClusterPhase::Failed).then_some(status)
        }
    })
    .await;
    assert!(status.last_error.unwrap_or_default().contains("fell back"));
    assert_eq!(
        upgrades(&calls.records()).len(),
        1,
        "no other node was touched"
    );

    // Retry with the fault cleared, but every worker's upgrade call fails: the first failure
    // stops the rollout with the node and the step named, and the other worker is untouched.
    handle(&cp).set_upgrade_fault(None);
    for node in nodes.iter().filter(|n| n.uuid() != cp) {
        node.set_upgrade_fault(Some(UpgradeFault::Fail));
    }
    client
        .start_upgrade("lab", &talos(TO, false))
        .await
        .unwrap();
    let failed = upgrade_where(&client, "lab", "the retry failed", |u| {
        u.state == UpgradeState::Failed
    })
    .await;
    let error = failed.error.unwrap();
    assert!(error.contains("step talos"), "{error}");
    let records = calls.records();
    let tried: Vec<_> = records
        .iter()
        .filter(|c| c.call.upgrade_image().is_some() && c.uuid != cp)
        .collect();
    assert_eq!(
        tried.len(),
        1,
        "the rollout stopped at the first failed worker: {tried:#?}"
    );
    assert!(error.contains(&tried[0].uuid), "{error}");
    assert_eq!(handle(&cp).status().talos_version, format!("v{TO}"));

    // Pause and cancel are refused when nothing runs.
    let err = client
        .set_upgrade_state("lab", UpgradeState::Paused)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("failed"), "{err}");
    cancel.cancel();
    running.await.unwrap();
    drover.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubernetes_upgrade_moves_one_component_at_a_time_through_the_config() {
    let mut drover = TestDrover::start().await;
    let (nodes, calls, cancel, running) = ready_cluster(&drover, "k8s", "1.32.2", 1, 1).await;
    let client = drover.client();
    let kubernetes = |version: &str| StartUpgrade {
        kind: UpgradeKind::Kubernetes,
        version: version.into(),
        dry_run: false,
    };

    // One minor at a time.
    let err = client
        .start_upgrade("k8s", &kubernetes("1.34.0"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("1.32.2") && err.contains("1.34.0"), "{err}");

    let before = calls.records().len();
    client
        .start_upgrade("k8s", &kubernetes("1.33.0"))
        .await
        .unwrap();
    // Restart droverd once the rollout has begun: it resumes where it was.
    upgrade_where(&client, "k8s", "a component upgrading", |u| {
        !u.nodes.is_empty()
    })
    .await;
    drover.restart().await;
    let client = drover.client();
    let done = upgrade_where(&client, "k8s", "the Kubernetes upgrade done", |u| {
        u.state == UpgradeState::Done
    })
    .await;
    // Four steps on the control plane, one (the kubelet) on the worker, then the add-ons.
    assert_eq!(done.nodes.len(), 6, "{:#?}", done.nodes);
    assert!(done.nodes.iter().all(|n| n.state == "done"));
    for node in &nodes {
        let config = node.status().config.expect("configured");
        assert_eq!(config.kubelet_version, "v1.33.0");
    }
    assert!(
        upgrades(&calls.records()).is_empty(),
        "no Talos upgrade, no reboot"
    );

    // The configs the machines received changed one component at a time, control-plane
    // components first, kubelets last.
    let applied: Vec<(String, drover_emu::KubernetesImages)> = calls.records()[before..]
        .iter()
        .filter_map(|c| match &c.call {
            drover_emu::Call::ApplyConfiguration {
                kubernetes: Some(images),
                ..
            } => Some((c.uuid.clone(), images.clone())),
            _ => None,
        })
        .collect();
    let first_new = |pick: fn(&drover_emu::KubernetesImages) -> &str| {
        applied
            .iter()
            .position(|(_, images)| pick(images).ends_with(":v1.33.0"))
            .unwrap_or_else(|| panic!("never moved: {applied:#?}"))
    };
    let api = first_new(|i| &i.api_server);
    let controller = first_new(|i| &i.controller_manager);
    let scheduler = first_new(|i| &i.scheduler);
    let kubelet = first_new(|i| &i.kubelet);
    // The add-ons (bootstrap manifests) come last, configured and patched: every kube-proxy
    // and CoreDNS pod runs the new version's image, none is left behind.
    let proxy = first_new(|i| &i.proxy);
    assert!(
        api < controller && controller < scheduler && scheduler < kubelet && kubelet < proxy,
        "{applied:#?}"
    );
    let coredns = "registry.k8s.io/coredns/coredns:v1.12.0";
    assert!(applied[proxy].1.coredns == coredns, "{applied:#?}");
    let cluster = client.get_cluster("k8s").await.unwrap();
    let cp = (cluster.status.machines.iter())
        .find(|m| m.role == drover_model::MachineRole::ControlPlane)
        .unwrap();
    let address = client.get_machine(cp.id.as_str()).await.unwrap().address;
    let bundle = drover.cluster_bundle("k8s").await;
    let kubeconfig = kubeconfig_through_tunnel(&drover, &bundle, &address).await;
    let pods = kubectl(
        &kubeconfig,
        &[
            "get",
            "pods",
            "-n",
            "kube-system",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name} {.spec.containers[0].image}{\"\\n\"}{end}",
        ],
    );
    let addons: Vec<&str> = pods
        .lines()
        .filter(|l| l.starts_with("kube-proxy-") || l.starts_with("coredns-"))
        .collect();
    assert_eq!(addons.len(), 2 + 2, "{pods}");
    for line in addons {
        let want = if line.starts_with("coredns-") {
            coredns.to_owned()
        } else {
            "registry.k8s.io/kube-proxy:v1.33.0".to_owned()
        };
        assert!(line.ends_with(&format!(" {want}")), "{pods}");
    }
    cancel.cancel();
    running.await.unwrap();
    drover.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_sync_starts_an_upgrade_that_pauses_resumes_and_times_out_on_a_hung_node() {
    let drover = TestDrover::start_with(drover_e2e::Extra {
        reconciler: Some(drover_reconcile::ReconcilerConfig {
            interval: Duration::from_millis(200),
            lease: Duration::from_secs(30),
            upgrade_step_timeout: Duration::from_secs(5),
        }),
        ..Default::default()
    })
    .await;
    let (nodes, calls, cancel, running) = ready_cluster(&drover, "hang", KUBERNETES, 1, 1).await;
    let client = drover.client();
    let cluster = client.get_cluster("hang").await.unwrap();
    let worker = cluster
        .status
        .machines
        .iter()
        .find(|m| m.machine_set != "control-planes")
        .unwrap()
        .id
        .to_string();
    nodes
        .iter()
        .find(|n| n.uuid() == worker)
        .unwrap()
        .set_upgrade_fault(Some(UpgradeFault::Hang));

    // Changing a version in the template starts an upgrade; both at once is refused.
    let mut spec = cluster.spec.clone();
    spec.talos_version = TO.into();
    let both = ClusterSpec {
        kubernetes_version: "1.32.0".into(),
        ..spec.clone()
    };
    let err = client
        .sync_cluster(&both, false)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("one version at a time"), "{err}");
    let changes = client.sync_cluster(&spec, false).await.unwrap().changes;
    assert!(changes.iter().any(|c| c.contains(TO)), "{changes:?}");

    upgrade_where(&client, "hang", "the worker upgrading", |u| {
        u.nodes
            .iter()
            .any(|n| n.machine.as_str() == worker && n.state == "inProgress")
    })
    .await;
    let paused = client
        .set_upgrade_state("hang", UpgradeState::Paused)
        .await
        .unwrap();
    assert_eq!(paused.state, UpgradeState::Paused);
    let resumed = client
        .set_upgrade_state("hang", UpgradeState::Running)
        .await
        .unwrap();
    assert_eq!(resumed.state, UpgradeState::Running);
    let failed = upgrade_where(&client, "hang", "the hung node timed out", |u| {
        u.state == UpgradeState::Failed
    })
    .await;
    let error = failed.error.unwrap();
    assert!(
        error.contains(&worker) && error.contains("timed out"),
        "{error}"
    );
    let hung = calls
        .of(&worker)
        .into_iter()
        .find(|c| c.is_accepted_upgrade())
        .unwrap();
    assert!(hung.finished.is_none(), "the node never came back");
    let kinds: Vec<String> = client
        .cluster_events("hang", 0)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    for kind in [
        "upgradeStarted",
        "upgradePaused",
        "upgradeRunning",
        "upgradeFailed",
    ] {
        assert!(kinds.iter().any(|k| k == kind), "{kind} in {kinds:?}");
    }
    cancel.cancel();
    running.await.unwrap();
    drover.stop().await;
}
