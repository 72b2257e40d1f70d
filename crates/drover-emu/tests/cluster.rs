//! Emulated machines becoming a cluster, driven the way droverd drives real nodes: through a
//! real tunnel hub, with the Talos machine API (maintenance, then mutual TLS) and the
//! Kubernetes API of the control planes.

mod common;

use common::cluster::{HOUR, Secrets, eventually, in_maintenance, json, run_fleet, running, wait};
use common::plane::{TunnelPlane, get, request};
use drover_emu::{MachineType, NodeHandle, Stage};
use drover_pki::kubernetes_client_cert;
use drover_talos::{ApplyMode, client};
use tonic::Code;
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn machines_become_a_cluster() {
    let plane = TunnelPlane::start().await;
    let fleet = run_fleet(&plane, 4, "cluster-tests");
    let secrets = Secrets::generate("emu");
    let (control_planes, worker) = (&fleet.nodes[..3], &fleet.nodes[3]);

    // Maintenance mode: configurations are checked before anything happens.
    let (address, _) = in_maintenance(&plane, &control_planes[0]).await;
    let insecure = plane.maintenance_apid(address);
    let no_type = b"version: v1alpha1\nmachine: {}\ncluster: {}\n";
    let err = client::apply_configuration(&insecure, no_type, ApplyMode::Auto)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(err.message(), "machine.type is required");
    let config = secrets.config(MachineType::ControlPlane, "v1.33.1");
    let other_disk = String::from_utf8(config.clone())
        .unwrap()
        .replace("/dev/sda", "/dev/nvme0n1");
    let err = client::apply_configuration(&insecure, other_disk.as_bytes(), ApplyMode::Auto)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("/dev/nvme0n1"), "{err}");

    // Apply: three control planes and a worker install, reboot, and run.
    let mut before = Vec::new();
    for (n, node) in fleet.nodes.iter().enumerate() {
        let (address, boot_id) = in_maintenance(&plane, node).await;
        let kind = if n < 3 {
            MachineType::ControlPlane
        } else {
            MachineType::Worker
        };
        let applied = client::apply_configuration(
            &plane.maintenance_apid(address),
            &secrets.config(kind, "v1.33.1"),
            ApplyMode::Auto,
        )
        .await
        .unwrap();
        assert_eq!(applied.mode, ApplyMode::Reboot);
        before.push(boot_id);
    }
    for (node, boot_id) in fleet.nodes.iter().zip(&before) {
        let status = running(node).await;
        assert_ne!(&status.boot_id, boot_id, "a reboot starts a new boot");
        let config = status.config.expect("runs the configuration");
        assert_eq!(config.cluster_id, secrets.cluster_id);
        assert_eq!(config.kubelet_version, "v1.33.1");
        // What the sink heard: the first boot, the install, the second boot.
        let stages = plane
            .stages_until(status.address.unwrap(), |s| s.contains(&Stage::Running))
            .await;
        let position = |stage| {
            stages
                .iter()
                .position(|s| *s == stage)
                .unwrap_or_else(|| panic!("{stage} missing from {stages:?}"))
        };
        assert!(
            position(Stage::Maintenance) < position(Stage::Installing)
                && position(Stage::Installing) < position(Stage::Rebooting)
                && position(Stage::Rebooting) < position(Stage::Running),
            "{stages:?}"
        );
    }
    let address = |node: &NodeHandle| node.status().address.unwrap();
    let cp0 = address(&control_planes[0]);

    // apid now wants a client certificate from the cluster's OS CA.
    let err = client::version(&plane.maintenance_apid(cp0))
        .await
        .unwrap_err();
    assert_ne!(err.code(), Code::Ok);
    let admin = secrets.talos_client("os:admin");
    let apid = |node: &NodeHandle| plane.apid(address(node), &secrets.os_ca, &admin);
    let cp0_apid = apid(&control_planes[0]);
    let version = eventually("apid over mTLS", || client::version(&cp0_apid)).await;
    assert_eq!(version.hostname, control_planes[0].hostname());
    assert_eq!(
        client::memory_mib(&apid(&control_planes[0])).await.unwrap(),
        8192
    );
    assert_eq!(
        client::cpu_cores(&apid(&control_planes[0])).await.unwrap(),
        4
    );
    // The worker's certificate came from a control plane (trustd).
    let worker_apid = apid(worker);
    eventually("the worker's apid", || client::version(&worker_apid)).await;

    let reader = plane.apid(cp0, &secrets.os_ca, &secrets.talos_client("os:reader"));
    let err = client::bootstrap(&reader).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(fleet.clusters.bootstrap_calls(&secrets.cluster_id), 0);

    // Bootstrap once; a second time anywhere fails like Talos.
    client::bootstrap(&apid(&control_planes[0])).await.unwrap();
    let err = client::bootstrap(&apid(&control_planes[1]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(err.message(), "etcd data directory is not empty");
    assert_eq!(fleet.clusters.bootstrap_calls(&secrets.cluster_id), 2);

    // The three control planes are etcd members, the bootstrapping one first.
    let members = client::etcd_member_list(&apid(&control_planes[2]))
        .await
        .unwrap();
    let names: Vec<&str> = members.iter().map(|m| m.hostname.as_str()).collect();
    assert_eq!(names.len(), 3);
    assert_eq!(names[0], control_planes[0].hostname());
    for cp in control_planes {
        assert!(names.contains(&cp.hostname()));
    }
    let err = client::etcd_member_list(&apid(worker)).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);

    // Remove one by id: the list shrinks; an unknown id is NOT_FOUND.
    let gone = members
        .iter()
        .find(|m| m.hostname == control_planes[2].hostname())
        .unwrap();
    client::etcd_remove_member_by_id(&apid(&control_planes[0]), gone.id)
        .await
        .unwrap();
    let err = client::etcd_remove_member_by_id(&apid(&control_planes[0]), gone.id)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let members = client::etcd_member_list(&apid(&control_planes[1]))
        .await
        .unwrap();
    assert_eq!(members.len(), 2);
    assert!(members.iter().all(|m| m.id != gone.id));

    // The Kubernetes API of a control plane lists the four nodes.
    let ca = &secrets.kubernetes_ca;
    let master = secrets.kube_client("drover", &["system:masters"]);
    let list_nodes = get("/api/v1/nodes", &[]);
    let (code, body) = eventually("the Kubernetes API", || {
        plane.kube(cp0, ca, Some(&master), &list_nodes)
    })
    .await;
    assert_eq!(code, 200, "{body}");
    let list = json(&body);
    assert_eq!(list["kind"], "NodeList");
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 4);
    for node in &fleet.nodes {
        let item = items
            .iter()
            .find(|i| i["metadata"]["name"] == node.hostname())
            .unwrap_or_else(|| panic!("{} not listed: {body}", node.hostname()));
        assert_eq!(item["status"]["nodeInfo"]["kubeletVersion"], "v1.33.1");
        assert_eq!(item["status"]["nodeInfo"]["bootID"], node.status().boot_id);
        assert_eq!(item["status"]["conditions"][0]["type"], "Ready");
        assert_eq!(item["status"]["conditions"][0]["status"], "True");
        let is_cp = item["metadata"]["labels"]
            .get("node-role.kubernetes.io/control-plane")
            .is_some();
        assert_eq!(is_cp, node.hostname() != worker.hostname());
        assert!(item["metadata"]["creationTimestamp"].is_string());
    }
    let (code, body) = plane
        .kube(
            cp0,
            ca,
            Some(&master),
            &get(&format!("/api/v1/nodes/{}", worker.hostname()), &[]),
        )
        .await
        .unwrap();
    assert_eq!((code, json(&body)["kind"].as_str()), (200, Some("Node")));
    let (code, body) = plane
        .kube(cp0, ca, Some(&master), &get("/api/v1/nodes/nope", &[]))
        .await
        .unwrap();
    assert_eq!(
        (code, json(&body)["reason"].as_str()),
        (404, Some("NotFound"))
    );
    // As kubectl asks for it: a Table.
    let table_accept = [(
        "Accept",
        "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
    )];
    let (code, body) = plane
        .kube(cp0, ca, Some(&master), &get("/api/v1/nodes", &table_accept))
        .await
        .unwrap();
    assert_eq!(code, 200);
    let table = json(&body);
    assert_eq!(table["kind"], "Table");
    assert_eq!(table["columnDefinitions"][1]["name"], "Status");
    let rows = table["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 4);
    assert!(rows.iter().all(|r| r["cells"][1] == "Ready"));
    let (code, body) = plane
        .kube(cp0, ca, None, &get("/version", &[]))
        .await
        .unwrap();
    assert_eq!(
        (code, json(&body)["gitVersion"].as_str()),
        (200, Some("v1.33.1"))
    );

    // Authentication and impersonation.
    let (code, _) = plane
        .kube(cp0, ca, None, &get("/api/v1/nodes", &[]))
        .await
        .unwrap();
    assert_eq!(code, 401);
    let (code, body) = plane
        .kube(cp0, ca, None, &get("/healthz", &[]))
        .await
        .unwrap();
    assert_eq!((code, body.as_str()), (200, "ok"));
    let whoami = request(
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        &[
            ("Impersonate-User", "alice"),
            ("Impersonate-Group", "team-a"),
        ],
        "{}",
    );
    let (code, body) = plane.kube(cp0, ca, Some(&master), &whoami).await.unwrap();
    assert_eq!(code, 201, "{body}");
    let user = &json(&body)["status"]["userInfo"];
    assert_eq!(user["username"], "alice");
    assert_eq!(user["groups"][0], "team-a");
    let plain = secrets.kube_client("bob", &["developers", "testers"]);
    let (code, body) = plane.kube(cp0, ca, Some(&plain), &whoami).await.unwrap();
    assert_eq!(code, 403, "{body}");
    assert_eq!(json(&body)["reason"], "Forbidden");
    let (code, body) = plane
        .kube(
            cp0,
            ca,
            Some(&plain),
            &request(
                "POST",
                "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                &[],
                "{}",
            ),
        )
        .await
        .unwrap();
    assert_eq!(code, 201);
    let groups = &json(&body)["status"]["userInfo"]["groups"];
    assert_eq!(groups[0], "developers");
    assert_eq!(groups[1], "testers");
    // A certificate from another CA is no user.
    let stranger = kubernetes_client_cert(
        &drover_pki::generate_kubernetes_ca("other", chrono::Utc::now()).unwrap(),
        "mallory",
        &["system:masters"],
        HOUR,
    )
    .unwrap();
    let result = plane
        .kube(cp0, ca, Some(&stranger), &get("/api/v1/nodes", &[]))
        .await;
    assert!(!matches!(result, Ok((200, _))), "{result:?}");

    // A configuration applied without a reboot: new kubelet, same boot.
    let worker_boot = worker.status().boot_id;
    let applied = client::apply_configuration(
        &apid(worker),
        &secrets.config(MachineType::Worker, "v1.34.0"),
        ApplyMode::NoReboot,
    )
    .await
    .unwrap();
    assert_eq!(applied.mode, ApplyMode::NoReboot);
    let status = worker.status();
    assert_eq!(status.boot_id, worker_boot);
    assert_eq!(status.config.unwrap().kubelet_version, "v1.34.0");
    let (_, body) = plane
        .kube(
            cp0,
            ca,
            Some(&master),
            &get(&format!("/api/v1/nodes/{}", worker.hostname()), &[]),
        )
        .await
        .unwrap();
    assert_eq!(
        json(&body)["status"]["nodeInfo"]["kubeletVersion"],
        "v1.34.0"
    );
    // The machine type cannot change.
    let err = client::apply_configuration(
        &apid(worker),
        &secrets.config(MachineType::ControlPlane, "v1.34.0"),
        ApplyMode::NoReboot,
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_returns_a_machine_to_maintenance() {
    let plane = TunnelPlane::start().await;
    let fleet = run_fleet(&plane, 1, "reset-tests");
    let secrets = Secrets::generate("reset");
    let node = &fleet.nodes[0];

    let (address, _) = in_maintenance(&plane, node).await;
    client::apply_configuration(
        &plane.maintenance_apid(address),
        &secrets.config(MachineType::ControlPlane, "v1.33.1"),
        ApplyMode::Reboot,
    )
    .await
    .unwrap();
    let configured = running(node).await;
    let admin = secrets.talos_client("os:admin");
    let apid = plane.apid(address, &secrets.os_ca, &admin);
    eventually("apid over mTLS", || client::version(&apid)).await;
    client::bootstrap(&apid).await.unwrap();
    assert_eq!(fleet.clusters.etcd_members(&secrets.cluster_id).len(), 1);
    assert_eq!(fleet.clusters.node_names(&secrets.cluster_id).len(), 1);

    // A reader may not reset.
    let reader = plane.apid(address, &secrets.os_ca, &secrets.talos_client("os:reader"));
    let err = client::reset(&reader, true).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    // A graceful reset leaves etcd, forgets the configuration and reboots into maintenance.
    client::reset(&apid, true).await.unwrap();
    let status = wait(node, "maintenance after the reset", |s| {
        s.stage == Stage::Maintenance && s.ready && s.boot_id != configured.boot_id
    })
    .await;
    assert!(status.config.is_none());
    let stages = plane
        .stages_until(address, |s| {
            s.contains(&Stage::Resetting) && s.ends_with(&[Stage::Maintenance])
        })
        .await;
    let resetting = stages.iter().rposition(|s| *s == Stage::Resetting).unwrap();
    assert_eq!(
        &stages[resetting..],
        [
            Stage::Resetting,
            Stage::Rebooting,
            Stage::Booting,
            Stage::Maintenance
        ]
    );
    assert!(fleet.clusters.etcd_members(&secrets.cluster_id).is_empty());
    assert!(fleet.clusters.node_names(&secrets.cluster_id).is_empty());
    // The insecure maintenance API answers again; the cluster's certificates are no use.
    let insecure = plane.maintenance_apid(address);
    let version = eventually("maintenance apid", || client::version(&insecure)).await;
    assert_eq!(version.hostname, node.hostname());

    // And the machine can be configured again.
    client::apply_configuration(
        &insecure,
        &secrets.config(MachineType::ControlPlane, "v1.33.1"),
        ApplyMode::Auto,
    )
    .await
    .unwrap();
    running(node).await;
    // The cluster was bootstrapped before: the machine joins etcd again when it comes up.
    assert_eq!(fleet.clusters.etcd_members(&secrets.cluster_id).len(), 1);

    fleet.stop().await;
}
