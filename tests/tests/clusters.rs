//! Clusters end to end: a template becomes a Ready 3+3 cluster of emulated machines (config
//! applied in maintenance mode, install and reboot, etcd bootstrapped once, members tracked),
//! survives a droverd restart mid-way, scales a worker down (reset, back in the pool), and is
//! deleted (every machine available again, secrets gone). Secrets are ciphertext at rest.

use std::collections::BTreeMap;
use std::time::Duration;

use drover_client::ClientError;
use drover_e2e::{
    TestDrover, eventually, kubeconfig_through_tunnel, kubectl, machines_where, spawn_fleet,
};
use drover_emu::CancellationToken;
use drover_model::{Cluster, ClusterMachinePhase, ClusterSpec, ConfigPatch, MachineClassSpec};

const LIMIT: Duration = Duration::from_secs(180);

fn template(cluster: &str, control_planes: &[String], workers: usize) -> String {
    format!(
        r#"kind: Cluster
name: {cluster}
talos: {{ version: v1.13.0 }}
kubernetes: {{ version: v1.33.1 }}
patches:
  - name: ntp
    inline: {{ machine: {{ time: {{ servers: [time.cloudflare.com] }} }} }}
---
kind: ControlPlane
machines: [{}]
---
kind: Workers
name: workers
machineClass: {{ name: workers, size: {workers} }}
deleteStrategy: {{ type: rolling, maxParallelism: 1 }}
"#,
        control_planes.join(", ")
    )
}

fn parse(text: &str) -> ClusterSpec {
    drover_template::parse(text, &|path| Err(format!("no files here: {path}")))
        .expect("the template is valid")
}

async fn cluster_where(
    drover: &TestDrover,
    name: &str,
    what: &str,
    ok: impl Fn(&Cluster) -> bool,
) -> Cluster {
    let client = drover.client();
    eventually(what, LIMIT, || {
        let client = client.clone();
        let ok = &ok;
        async move {
            let cluster = client.get_cluster(name).await.ok()?;
            ok(&cluster).then_some(cluster)
        }
    })
    .await
}

/// Waits for six machines in maintenance, labels the last three `role=worker` and makes the
/// `workers` class of available ones; returns the machine ids.
async fn pool_with_a_worker_class(drover: &TestDrover) -> Vec<String> {
    let client = drover.client();
    let machines = machines_where(drover, "6 machines in maintenance with facts", |all| {
        all.len() == 6
            && all.iter().all(|m| {
                m.connected && m.facts.is_some() && m.stage.as_deref() == Some("maintenance")
            })
    })
    .await;
    let ids: Vec<String> = machines.iter().map(|m| m.id.to_string()).collect();
    for id in &ids[3..] {
        client
            .set_machine_labels(id, &BTreeMap::from([("role".into(), "worker".into())]))
            .await
            .unwrap();
    }
    client
        .put_machine_class(&MachineClassSpec {
            name: "workers".into(),
            selectors: vec!["role=worker, drover.dev/available".into()],
        })
        .await
        .unwrap();
    ids
}

async fn cluster_uid(drover: &TestDrover, name: &str) -> uuid::Uuid {
    sqlx::query_scalar("SELECT uid FROM clusters WHERE name = $1")
        .bind(name)
        .fetch_one(drover.pool())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_cluster_becomes_ready_survives_a_restart_scales_down_and_is_deleted() {
    let mut drover = TestDrover::start().await;
    let token = drover.join_token("lab").await;
    let fleet = drover.fleet(&token.secret, 6, "clusters", "v1.13.0");
    let emulated = fleet.clusters().clone();
    let cancel = CancellationToken::new();
    let running = spawn_fleet(fleet, cancel.clone());
    let client = drover.client();

    let ids = pool_with_a_worker_class(&drover).await;
    let (control_planes, workers) = ids.split_at(3);

    // sync: says what it will do, does it, and then has nothing left to do.
    let spec = parse(&template("prod", control_planes, 3));
    let planned = client.sync_cluster(&spec, true).await.unwrap();
    assert!(planned.created && planned.dry_run);
    assert!(
        planned
            .changes
            .iter()
            .any(|c| c.contains("create cluster prod")),
        "{:?}",
        planned.changes
    );
    assert!(
        client.find_cluster("prod").await.unwrap().is_none(),
        "a dry run stores nothing"
    );
    client.sync_cluster(&spec, false).await.unwrap();
    assert_eq!(
        client.sync_cluster(&spec, true).await.unwrap().changes,
        Vec::<String>::new()
    );

    // Restart droverd while machines are being installed: it resumes.
    cluster_where(&drover, "prod", "a machine installing", |c| {
        c.status
            .machines
            .iter()
            .any(|m| m.phase >= ClusterMachinePhase::Installing)
    })
    .await;
    drover.restart().await;
    let client = drover.client();

    let ready = cluster_where(&drover, "prod", "cluster prod Ready", |c| c.status.ready).await;
    assert_eq!(ready.status.machines_total, 6);
    assert_eq!(ready.status.machines_ready, 6);
    assert_eq!(ready.status.etcd_members, 3);
    assert!(ready.status.bootstrapped);
    assert!(
        ready.status.kubernetes_api_ready,
        "the Kubernetes API answers /readyz"
    );
    let roles: Vec<_> = ready
        .status
        .machines
        .iter()
        .map(|m| (m.machine_set.as_str(), m.role))
        .collect();
    assert_eq!(
        roles
            .iter()
            .filter(|(set, _)| *set == "control-planes")
            .count(),
        3
    );
    assert!(ready.status.machines.iter().all(|m| m.config_up_to_date));
    assert_eq!(
        ready
            .status
            .machines
            .iter()
            .filter(|m| m.etcd_member_id.is_some())
            .count(),
        3,
        "every control plane is matched to its etcd member"
    );

    // The config a machine runs, redacted, carries the cluster patch and no private key.
    let view = client
        .machine_config("prod", &control_planes[0])
        .await
        .unwrap();
    assert!(view.up_to_date, "{}", view.diff);
    assert!(view.redacted.contains("time.cloudflare.com"));
    assert!(!view.redacted.contains("PRIVATE KEY"));

    // Secrets are ciphertext at rest: no PEM, no token, no cluster secret in any raw row.
    let bundle = drover.cluster_bundle("prod").await;
    assert_eq!(
        emulated.bootstrap_calls(&bundle.cluster_id),
        1,
        "etcd is bootstrapped exactly once"
    );
    let rows: Vec<(String, Vec<u8>)> =
        sqlx::query_as("SELECT purpose, sealed FROM cluster_secrets")
            .fetch_all(drover.pool())
            .await
            .unwrap();
    assert!(!rows.is_empty());
    let dump: String = sqlx::query_scalar(
        "SELECT string_agg(t::text, E'\\n') FROM (
             SELECT * FROM cluster_secrets UNION ALL SELECT tenant_id, '', '', wrapped_dek, created_at FROM tenant_keys) t",
    )
    .fetch_one(drover.pool())
    .await
    .unwrap();
    use secrecy::ExposeSecret;
    for (_, sealed) in &rows {
        let raw = String::from_utf8_lossy(sealed);
        assert!(!raw.contains("-----BEGIN"));
    }
    for secret in [
        bundle.bootstrap_token.expose_secret(),
        bundle.trustd_token.expose_secret(),
        bundle.cluster_secret.expose_secret(),
        bundle.secretbox_secret.expose_secret(),
    ] {
        assert!(!dump.contains(secret), "a secret is stored in the clear");
        assert!(
            rows.iter()
                .all(|(_, s)| !String::from_utf8_lossy(s).contains(secret))
        );
    }
    assert!(!dump.contains("PRIVATE KEY") && !dump.contains("BEGIN"));

    // Real kubectl lists the cluster's nodes, through a local forwarder into the tunnel.
    let control_plane = client.get_machine(&control_planes[0]).await.unwrap();
    let kubeconfig = kubeconfig_through_tunnel(&drover, &bundle, &control_plane.address).await;
    let nodes = kubectl(&kubeconfig, &["get", "nodes", "-o", "json"]);
    let nodes: serde_json::Value = serde_json::from_str(&nodes).unwrap();
    let items = nodes["items"].as_array().unwrap();
    assert_eq!(items.len(), 6, "{nodes}");
    assert!(
        items
            .iter()
            .all(|n| n["status"]["nodeInfo"]["kubeletVersion"] == "v1.33.1")
    );
    let table = kubectl(&kubeconfig, &["get", "nodes"]);
    assert_eq!(table.matches(" Ready ").count(), 6, "{table}");
    assert_eq!(table.matches("control-plane").count(), 3, "{table}");

    // A config change reaches every running machine except a locked one, whose config then
    // differs from what Drover renders.
    let locked = workers[0].clone();
    let mut changed = spec.clone();
    changed.patches[0].content = "machine:\n  time:\n    servers: [ntp.example.org]\n".into();
    changed.machines.push(drover_model::ClusterMachineSpec {
        id: locked.parse().unwrap(),
        install_disk: None,
        patches: vec![],
        labels: BTreeMap::new(),
        locked: true,
    });
    client.sync_cluster(&changed, false).await.unwrap();
    let client3 = client.clone();
    let (cp0, locked2) = (control_planes[0].clone(), locked.clone());
    eventually("the new config applied to unlocked machines", LIMIT, || {
        let client = client3.clone();
        let cp0 = cp0.clone();
        async move {
            let view = client.machine_config("prod", &cp0).await.ok()?;
            (view.up_to_date && view.redacted.contains("ntp.example.org")).then_some(())
        }
    })
    .await;
    let view = client.machine_config("prod", &locked2).await.unwrap();
    assert!(!view.up_to_date);
    assert!(
        view.diff.contains("+") && view.diff.contains("ntp.example.org"),
        "{}",
        view.diff
    );
    assert!(!view.diff.contains("PRIVATE KEY"));
    let status = client.get_cluster("prod").await.unwrap().status;
    let held = status
        .machines
        .iter()
        .find(|m| m.id.as_str() == locked2)
        .unwrap();
    assert!(held.locked && !held.config_up_to_date, "{held:?}");
    // Unlock again for what follows.
    client.sync_cluster(&spec, false).await.unwrap();

    // export round-trips.
    let exported = drover_template::export(&ready.spec);
    assert_eq!(parse(&exported), ready.spec);

    // Scale the workers down by one: a machine is reset and returns to the pool.
    let smaller = parse(&template("prod", control_planes, 2));
    let changes = client.sync_cluster(&smaller, false).await.unwrap().changes;
    assert_eq!(changes.len(), 1, "{changes:?}");
    let scaled = cluster_where(&drover, "prod", "5 machines, Ready", |c| {
        c.status.ready && c.status.machines_total == 5
    })
    .await;
    let kept: Vec<String> = scaled
        .status
        .machines
        .iter()
        .map(|m| m.id.to_string())
        .collect();
    let released = workers
        .iter()
        .find(|w| !kept.contains(w))
        .expect("a worker left");
    let machine = client.get_machine(released).await.unwrap();
    assert_eq!(machine.cluster, None);
    assert_eq!(machine.stage.as_deref(), Some("maintenance"));
    assert!(machine.labels.contains_key("drover.dev/available"));
    assert_eq!(emulated.bootstrap_calls(&bundle.cluster_id), 1);

    // Let a control plane go: its etcd member is removed first, then it is reset.
    let two_control_planes = parse(&template("prod", &control_planes[..2], 2));
    client
        .sync_cluster(&two_control_planes, false)
        .await
        .unwrap();
    let shrunk = cluster_where(
        &drover,
        "prod",
        "2 control planes, 2 etcd members, Ready",
        |c| c.status.ready && c.status.machines_total == 4 && c.status.etcd_members == 2,
    )
    .await;
    assert!(
        shrunk
            .status
            .machines
            .iter()
            .all(|m| m.id.to_string() != control_planes[2])
    );
    assert_eq!(
        client
            .get_machine(&control_planes[2])
            .await
            .unwrap()
            .cluster,
        None
    );

    // Delete: every machine is reset and available again; the cluster and its secrets go.
    client.delete_cluster("prod").await.unwrap();
    let client2 = client.clone();
    eventually("cluster prod forgotten", LIMIT, || {
        let client = client2.clone();
        async move {
            client
                .find_cluster("prod")
                .await
                .ok()?
                .is_none()
                .then_some(())
        }
    })
    .await;
    machines_where(&drover, "all 6 machines available in maintenance", |all| {
        all.len() == 6
            && all
                .iter()
                .all(|m| m.cluster.is_none() && m.stage.as_deref() == Some("maintenance"))
    })
    .await;
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM cluster_secrets")
        .fetch_one(drover.pool())
        .await
        .unwrap();
    assert_eq!(left, 0);

    cancel.cancel();
    running.await.unwrap();
    drover.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_specs_and_patches_are_refused_with_the_reason_and_nothing_is_stored() {
    let drover = TestDrover::start().await;
    let client = drover.client();
    let mut spec = parse(&template("lab", &["m1".into()], 1));
    spec.workers.clear();

    // A patch touching the cluster's CA.
    spec.patches = vec![ConfigPatch {
        name: "steal-ca".into(),
        weight: 0,
        content: "cluster:\n  ca:\n    crt: Zm9v\n".into(),
    }];
    let err = client.create_cluster(&spec).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("steal-ca") && text.contains("cluster.ca"),
        "{text}"
    );
    assert!(matches!(err, ClientError::Api { ref problem } if problem.status == 422));

    // Kubernetes too new for the Talos version.
    spec.patches.clear();
    spec.kubernetes_version = "1.37.0".into();
    let text = client.create_cluster(&spec).await.unwrap_err().to_string();
    assert!(
        text.contains("kubernetesVersion") && text.contains("1.31.x to 1.36.x"),
        "{text}"
    );

    // A machine class that does not exist.
    spec.kubernetes_version = "1.33.1".into();
    spec.control_plane.machines.clear();
    spec.control_plane.machine_class = Some(drover_model::MachineClassAllocation {
        name: "nope".into(),
        size: drover_model::ClassSize::Count(1),
    });
    let text = client.create_cluster(&spec).await.unwrap_err().to_string();
    assert!(text.contains("\"nope\""), "{text}");
    assert!(
        client.list_clusters().await.unwrap().is_empty(),
        "nothing was stored"
    );

    // A template error names the document and the field.
    let bad = "kind: Cluster\nname: lab\ntalos: { version: v1.13.0 }\nkubernetes: { version: v1.33.1 }\n---\nkind: ControlPlane\nmachines: [m1]\n---\nkind: Workers\nname: w\nmachineClass: { name: c, size: lots }\n";
    let text = drover_template::parse(bad, &|_| Err(String::new()))
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("document 3") && text.contains("machineClass.size"),
        "{text}"
    );
    drover.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_rows_are_bound_to_their_cluster_and_survive_a_key_rotation() {
    let mut drover = TestDrover::start().await;
    let client = drover.client();
    for name in ["one", "two"] {
        let mut spec = parse(&template(name, &[format!("{name}-cp")], 1));
        spec.workers.clear();
        client.create_cluster(&spec).await.unwrap();
    }
    let service = drover.server().service().clone();
    let tenant = service
        .authenticate(Some(drover.admin_token()))
        .await
        .unwrap()
        .tenant();
    let (one, two) = (
        cluster_uid(&drover, "one").await,
        cluster_uid(&drover, "two").await,
    );
    assert!(service.open_bundle(tenant, "one", one).await.is_ok());

    // Copy cluster one's sealed bundle over cluster two's: it does not open as two's.
    sqlx::query(
        "UPDATE cluster_secrets SET sealed = (SELECT sealed FROM cluster_secrets WHERE cluster_name = 'one')
         WHERE cluster_name = 'two'",
    )
    .execute(drover.pool())
    .await
    .unwrap();
    assert!(service.open_bundle(tenant, "two", two).await.is_err());

    // Rotate the key-encryption key while droverd runs: it keeps opening secrets.
    let before = std::fs::read(drover.data_dir().join("master.key")).unwrap();
    let installation_keys: i64 = sqlx::query_scalar("SELECT count(*) FROM installation_secrets")
        .fetch_one(drover.pool())
        .await
        .unwrap();
    // WireGuard, relay, and the CAs of the two proxies and of self-signed HTTPS.
    assert_eq!(installation_keys, 5);
    let rotation = droverd::keys::rotate(&drover.settings()).await.unwrap();
    // The tenant's data key, and the installation's.
    assert_eq!(rotation.rewrapped, 6);
    assert_ne!(rotation.old_id, rotation.new_id);
    assert_ne!(
        std::fs::read(drover.data_dir().join("master.key")).unwrap(),
        before
    );
    assert_eq!(
        std::fs::read(drover.data_dir().join("master.key.previous")).unwrap(),
        before
    );
    let kek_id: String = sqlx::query_scalar("SELECT kek_id FROM tenant_keys")
        .fetch_one(drover.pool())
        .await
        .unwrap();
    assert_eq!(kek_id, rotation.new_id);
    let installation: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT kek_id FROM installation_secrets")
            .fetch_all(drover.pool())
            .await
            .unwrap();
    assert_eq!(installation, std::slice::from_ref(&rotation.new_id));
    let bundle = service.open_bundle(tenant, "one", one).await.unwrap();
    assert!(bundle.os_ca.cert_pem.contains("BEGIN CERTIFICATE"));

    // A restart opens the installation's WireGuard key under the new key-encryption key.
    let wireguard = service.config().server_public_key;
    drover.restart().await;
    assert_eq!(
        drover.server().service().config().server_public_key,
        wireguard
    );
    drover.stop().await;
}

/// Benchmark (`scripts/bench-cluster`): how long a 3+3 cluster takes from `sync` to Ready, with
/// the emulator's install and reboot delays at zero. Prints the figure; asserts only that the
/// cluster got there.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a benchmark: run by scripts/bench-cluster"]
async fn bench_three_plus_three_cluster_ready() {
    let drover = TestDrover::start_with(drover_e2e::Extra {
        reconciler: Some(drover_reconcile::ReconcilerConfig::default()),
        ..Default::default()
    })
    .await;
    let token = drover.join_token("bench").await;
    let mut config = drover.fleet_config(&token.secret, 6, "bench", "v1.13.0");
    config.lifecycle = drover_emu::Lifecycle::INSTANT;
    let cancel = CancellationToken::new();
    let running = spawn_fleet(drover_emu::Fleet::new(config), cancel.clone());
    let client = drover.client();
    let ids = pool_with_a_worker_class(&drover).await;
    let spec = parse(&template("bench", &ids[..3], 3));
    let started = std::time::Instant::now();
    client.sync_cluster(&spec, false).await.unwrap();
    cluster_where(&drover, "bench", "cluster Ready", |c| c.status.ready).await;
    let took = started.elapsed();
    println!(
        "BENCH 3+3 cluster from sync to Ready: {:.2} s",
        took.as_secs_f64()
    );
    cancel.cancel();
    running.await.unwrap();
    drover.stop().await;
}
