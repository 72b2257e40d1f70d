//! The management APIs end to end: REST (problem details, pagination, OpenAPI), the same
//! operations over gRPC, and what is stored for secrets.

use drover_client::{Client, ClientError};
use std::time::Duration;

use drover_e2e::{TestDrover, eventually, fast_retry, no_cancel};
use drover_model::{CreateJoinToken, JoinTokenState};
use drover_proto::drover::v1 as pb;
use tonic::Code;

fn create(name: &str) -> CreateJoinToken {
    CreateJoinToken {
        name: name.to_owned(),
        expires_at: None,
        make_default: false,
    }
}

fn api_status(err: ClientError) -> (u16, String, Option<String>) {
    match err {
        ClientError::Api { problem } => (problem.status, problem.detail, problem.field),
        other => panic!("expected a problem response, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_management_call_needs_a_valid_token() {
    let drover = TestDrover::start().await;
    let (status, detail, _) = api_status(
        drover
            .anonymous_client()
            .list_machines(None, None)
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 401);
    assert!(detail.contains("Authorization: Bearer"), "{detail}");

    // Change the last character to one it is not (a fixed 'x' would be the
    // real token whenever the real one ends in 'x').
    let real = drover.admin_token();
    let last = if real.ends_with('x') { 'y' } else { 'x' };
    let forged = format!("{}{last}", &real[..real.len() - 1]);
    assert_ne!(forged, real);
    let client = Client::new(&drover.http_url(), Some(forged)).unwrap();
    let (status, _, _) = api_status(client.list_join_tokens().await.unwrap_err());
    assert_eq!(status, 401);

    // The token file: the one printed at first start, owner-only.
    use std::os::unix::fs::PermissionsExt;
    let file = drover.data_dir().join("initial-admin-token");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap().trim(),
        drover.admin_token()
    );
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // Health endpoints need no token.
    let http = reqwest_get(&format!("{}/healthz", drover.http_url())).await;
    assert_eq!(http, (200, "ok\n".to_owned()));
    let ready = reqwest_get(&format!("{}/readyz", drover.http_url())).await;
    assert_eq!(ready, (200, "ready\n".to_owned()));
    drover.stop().await;
}

async fn reqwest_get(url: &str) -> (u16, String) {
    let resp = reqwest::get(url).await.expect("droverd answers");
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_token_lifecycle_and_bad_input() {
    let drover = TestDrover::start().await;
    let client = drover.client();

    let first = client.create_join_token(&create("first")).await.unwrap();
    assert!(
        first.token.is_default,
        "the first token becomes the default"
    );
    assert!(first.secret.starts_with("drj_"));
    assert_eq!(first.join.kernel_args.len(), 3);
    assert!(first.join.kernel_args[0].ends_with(&format!("?jointoken={}", first.secret)));
    assert_eq!(
        first.join.kernel_args[1],
        "talos.events.sink=[fdae:41e4:649b:9303::1]:8090"
    );
    assert_eq!(
        first.join.kernel_args[2],
        "talos.logging.kernel=tcp://[fdae:41e4:649b:9303::1]:8092"
    );
    assert!(first.join.join_config.contains("kind: SideroLinkConfig"));

    let second = client
        .create_join_token(&CreateJoinToken {
            make_default: true,
            ..create("second")
        })
        .await
        .unwrap();
    assert!(second.token.is_default);
    let listed = client.list_join_tokens().await.unwrap();
    assert_eq!(listed.iter().filter(|t| t.is_default).count(), 1);
    assert!(
        !listed
            .iter()
            .find(|t| t.name == "first")
            .unwrap()
            .is_default
    );

    // Bad input names the field; duplicates conflict; nothing half-written.
    let (status, detail, field) = api_status(
        client
            .create_join_token(&create("Bad Name"))
            .await
            .unwrap_err(),
    );
    assert_eq!((status, field.as_deref()), (422, Some("name")));
    assert!(detail.contains("\"Bad Name\""), "{detail}");
    let past = CreateJoinToken {
        expires_at: Some(chrono::Utc::now() - chrono::Duration::hours(1)),
        ..create("late")
    };
    let (status, _, field) = api_status(client.create_join_token(&past).await.unwrap_err());
    assert_eq!((status, field.as_deref()), (422, Some("expiresAt")));
    let (status, detail, _) = api_status(
        client
            .create_join_token(&create("first"))
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 409);
    assert!(detail.contains("\"first\""), "{detail}");
    assert_eq!(client.list_join_tokens().await.unwrap().len(), 2);

    // Kernel args can be printed again from the secret, and only for an active token.
    let again = client.join_instructions(&first.secret).await.unwrap();
    assert_eq!(again, first.join);
    let (status, _, field) = api_status(client.join_instructions("drj_nope").await.unwrap_err());
    assert_eq!((status, field.as_deref()), (422, Some("secret")));

    let revoked = client.revoke_join_token("second").await.unwrap();
    assert_eq!(revoked.state, JoinTokenState::Revoked);
    assert!(
        !revoked.is_default,
        "a revoked token stops being the default"
    );
    assert_eq!(
        client
            .revoke_join_token(&revoked.id.to_string())
            .await
            .unwrap()
            .revoked_at,
        revoked.revoked_at
    );
    let (status, _, _) = api_status(client.join_instructions(&second.secret).await.unwrap_err());
    assert_eq!(status, 409);
    let (status, _, _) = api_status(client.make_default_join_token("second").await.unwrap_err());
    assert_eq!(status, 409);
    assert!(
        client
            .make_default_join_token("first")
            .await
            .unwrap()
            .is_default
    );
    let (status, detail, _) = api_status(client.revoke_join_token("missing").await.unwrap_err());
    assert_eq!(status, 404);
    assert!(detail.contains("\"missing\""), "{detail}");

    // Raw rows: no secret is stored, only 32-byte hashes.
    let rows: Vec<(String, Vec<u8>)> = sqlx::query_as("SELECT name, secret_hash FROM join_tokens")
        .fetch_all(drover.pool())
        .await
        .unwrap();
    let dump: Vec<(String,)> = sqlx::query_as("SELECT row_to_json(t)::text FROM join_tokens t")
        .fetch_all(drover.pool())
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    for (text,) in dump {
        assert!(
            !text.contains(&first.secret) && !text.contains(&second.secret[4..]),
            "{text}"
        );
    }
    let api_rows: Vec<(String,)> = sqlx::query_as("SELECT row_to_json(t)::text FROM api_tokens t")
        .fetch_all(drover.pool())
        .await
        .unwrap();
    assert!(
        api_rows
            .iter()
            .all(|(t,)| !t.contains(&drover.admin_token()[4..]))
    );
    drover.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn machines_page_over_rest_and_grpc_alike() {
    let drover = TestDrover::start().await;
    let token = drover.join_token("lab").await;
    let mut fleet = drover.fleet(&token.secret, 23, "pages", "v1.13.8");
    fleet
        .provision_all(&fast_retry(Some(20)), &no_cancel())
        .await
        .unwrap();
    let client = drover.client();

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = client
            .list_machines(Some(5), cursor.as_deref())
            .await
            .unwrap();
        assert!(page.items.len() <= 5);
        pages += 1;
        seen.extend(page.items.into_iter().map(|m| m.id.to_string()));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(pages, 5);
    let mut expected: Vec<String> = fleet
        .machines()
        .iter()
        .map(|m| m.identity().uuid.clone())
        .collect();
    expected.sort();
    assert_eq!(
        seen, expected,
        "pages cover every machine once, in id order"
    );

    for (limit, field) in [(0, "limit"), (1001, "limit")] {
        let (status, _, f) = api_status(client.list_machines(Some(limit), None).await.unwrap_err());
        assert_eq!((status, f.as_deref()), (422, Some(field)));
    }
    let (status, detail, _) = api_status(client.get_machine("no-such-machine").await.unwrap_err());
    assert_eq!(status, 404);
    assert!(detail.contains("no-such-machine"));

    // The same over gRPC, on the HTTP port, with the same token.
    let channel = tonic::transport::Endpoint::from_shared(drover.http_url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = pb::machine_service_client::MachineServiceClient::new(channel.clone());
    let err = grpc
        .list_machines(pb::ListMachinesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let token = drover.admin_token().to_owned();
    let authed = |msg| with_bearer(&token, msg);
    let listed = grpc
        .list_machines(authed(pb::ListMachinesRequest {
            limit: 1000,
            cursor: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    let rest_all = client.all_machines().await.unwrap();
    assert_eq!(listed.machines.len(), 23);
    assert!(listed.next_cursor.is_empty());
    for (g, r) in listed.machines.iter().zip(&rest_all) {
        assert_eq!(
            (g.id.as_str(), g.address.as_str()),
            (r.id.as_str(), r.address.as_str())
        );
        assert_eq!(g.talos_version, r.talos_version);
    }
    let one = grpc
        .get_machine(with_bearer(
            &token,
            pb::GetMachineRequest {
                id: rest_all[3].id.to_string(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(one.address, rest_all[3].address);
    let missing = grpc
        .get_machine(with_bearer(
            &token,
            pb::GetMachineRequest {
                id: "missing".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);

    let mut tokens = pb::join_token_service_client::JoinTokenServiceClient::new(channel);
    let authed = |msg| with_bearer(&token, msg);
    let created = tokens
        .create_join_token(authed(pb::CreateJoinTokenRequest {
            name: "from-grpc".into(),
            expires_at: None,
            make_default: false,
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(created.secret.starts_with("drj_"));
    let bad = tokens
        .create_join_token(authed(pb::CreateJoinTokenRequest {
            name: "Nope".into(),
            expires_at: None,
            make_default: false,
        }))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    let revoked = tokens
        .revoke_join_token(with_bearer(
            &token,
            pb::JoinTokenRef {
                token: "from-grpc".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(revoked.state, "revoked");
    drover.stop().await;
}

fn with_bearer<T>(token: &str, msg: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_is_served_and_matches_the_committed_snapshot() {
    let drover = TestDrover::start().await;
    let (status, body) = reqwest_get(&format!("{}/api/openapi.json", drover.http_url())).await;
    assert_eq!(status, 200);
    let served: serde_json::Value = serde_json::from_str(&body).unwrap();
    for path in [
        "/api/v1/machines",
        "/api/v1/machines/{id}",
        "/api/v1/jointokens",
        "/api/v1/jointokens/{token}/revoke",
        "/api/v1/join-instructions",
    ] {
        assert!(served["paths"].get(path).is_some(), "{path} is documented");
    }
    let snapshot_path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../crates/drover-rest/openapi.json"
    );
    let pretty = serde_json::to_string_pretty(&served).unwrap() + "\n";
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(snapshot_path, &pretty).unwrap();
    }
    let committed = std::fs::read_to_string(snapshot_path)
        .expect("crates/drover-rest/openapi.json exists; run with UPDATE_SNAPSHOTS=1 to create it");
    assert_eq!(
        pretty, committed,
        "the API changed: review it, then run with UPDATE_SNAPSHOTS=1"
    );
    drover.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_and_machine_classes_over_grpc_match_rest() {
    let drover = TestDrover::start().await;
    let client = drover.client();
    let token = drover.admin_token().to_owned();
    let channel = tonic::transport::Endpoint::from_shared(drover.http_url())
        .unwrap()
        .connect()
        .await
        .unwrap();

    let mut classes =
        pb::machine_class_service_client::MachineClassServiceClient::new(channel.clone());
    let bad = classes
        .put_machine_class(with_bearer(
            &token,
            pb::MachineClassSpec {
                name: "small".into(),
                selectors: vec!["cores>lots".into()],
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("not a number"), "{}", bad.message());
    classes
        .put_machine_class(with_bearer(
            &token,
            pb::MachineClassSpec {
                name: "small".into(),
                selectors: vec!["drover.dev/cores<=4".into()],
            },
        ))
        .await
        .unwrap();
    assert_eq!(
        client.list_machine_classes().await.unwrap()[0].selectors,
        ["drover.dev/cores<=4"]
    );

    let mut clusters = pb::cluster_service_client::ClusterServiceClient::new(channel);
    let set = |name: &str, class: Option<&str>| pb::MachineSetSpec {
        name: name.into(),
        machines: if class.is_none() {
            vec!["cp-1".into()]
        } else {
            vec![]
        },
        machine_class: class.map(|c| pb::MachineClassAllocation {
            name: c.into(),
            size: 0,
            unlimited: true,
        }),
        update_strategy: None,
        delete_strategy: None,
        patches: vec![],
    };
    let spec = pb::ClusterSpec {
        name: "grpc".into(),
        talos_version: "v1.13.0".into(),
        kubernetes_version: "1.33.1".into(),
        control_plane: Some(set("control-planes", None)),
        workers: vec![set("small", Some("small"))],
        patches: vec![pb::ConfigPatch {
            name: "ntp".into(),
            weight: 5,
            content: "machine:\n  time:\n    disabled: false\n".into(),
        }],
        machines: vec![],
    };
    let created = clusters
        .create_cluster(with_bearer(&token, spec.clone()))
        .await
        .unwrap()
        .into_inner();
    let created_spec = created.spec.unwrap();
    assert_eq!(
        created_spec.talos_version, "1.13.0",
        "versions are stored without the v"
    );
    let rest = client.get_cluster("grpc").await.unwrap();
    assert_eq!(
        rest.spec.workers[0].machine_class.as_ref().unwrap().size,
        drover_model::ClassSize::Unlimited
    );
    assert_eq!(rest.spec.patches[0].weight, 5);
    // The reconciler finds that the control plane's machine cp-1 does not exist; REST and gRPC
    // report it alike.
    let rest = eventually("cp-1 reported missing", Duration::from_secs(60), || {
        let client = client.clone();
        async move {
            let cluster = client.get_cluster("grpc").await.ok()?;
            (cluster.status.machines_missing == 1).then_some(cluster)
        }
    })
    .await;
    let grpc = clusters
        .get_cluster(with_bearer(
            &token,
            pb::ClusterRef {
                name: "grpc".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        grpc.status.unwrap().machines_missing,
        rest.status.machines_missing
    );

    // Sync with no change says so; a duplicate create conflicts; an unknown one is not found.
    let unchanged = clusters
        .sync_cluster(with_bearer(
            &token,
            pb::SyncClusterRequest {
                spec: Some(created_spec),
                dry_run: true,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(unchanged.changes.is_empty(), "{:?}", unchanged.changes);
    let dup = clusters
        .create_cluster(with_bearer(&token, spec))
        .await
        .unwrap_err();
    assert_eq!(dup.code(), Code::AlreadyExists);
    let missing = clusters
        .get_cluster(with_bearer(
            &token,
            pb::ClusterRef {
                name: "nope".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);

    // Upgrades over gRPC: a dry run plans; a bad kind or a refused target names the problem.
    let plan = clusters
        .start_upgrade(with_bearer(
            &token,
            pb::StartUpgradeRequest {
                cluster: "grpc".into(),
                kind: "talos".into(),
                version: "1.14.0".into(),
                dry_run: true,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(
        plan.id.is_empty() && plan.plan.contains("Talos upgrade to 1.14.0"),
        "{plan:?}"
    );
    let bad = clusters
        .start_upgrade(with_bearer(
            &token,
            pb::StartUpgradeRequest {
                cluster: "grpc".into(),
                kind: "firmware".into(),
                version: "1.14.0".into(),
                dry_run: true,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    let refused = clusters
        .start_upgrade(with_bearer(
            &token,
            pb::StartUpgradeRequest {
                cluster: "grpc".into(),
                kind: "talos".into(),
                version: "1.10.0".into(),
                dry_run: false,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().contains("1.10.0"),
        "{}",
        refused.message()
    );
    let none = clusters
        .get_upgrade(with_bearer(
            &token,
            pb::ClusterRef {
                name: "grpc".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(none.code(), Code::NotFound);

    // A class in use cannot be deleted; deleting the cluster starts its tear-down.
    let in_use = client
        .delete_machine_class("small")
        .await
        .unwrap_err()
        .to_string();
    assert!(in_use.contains("used by cluster \"grpc\""), "{in_use}");
    let deleting = clusters
        .delete_cluster(with_bearer(
            &token,
            pb::ClusterRef {
                name: "grpc".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deleting.status.unwrap().phase, "destroying");
    drover.stop().await;
}
