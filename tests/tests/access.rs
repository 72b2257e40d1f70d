//! Access end to end: roles on representative operations over REST and gRPC, service accounts
//! and their keys (shown once, hashed, revoked or expired = refused at the next request, last
//! use), and per-cluster grants.

use drover_client::{Client, ClientError};
use drover_e2e::{TestDrover, machines_where, spawn_fleet};
use drover_emu::CancellationToken;
use drover_model::{
    ClusterSpec, CreateJoinToken, CreateServiceAccount, GrantClusterRole, GrantTarget, InviteUser,
    IssuedServiceAccountKey, Role, StartUpgrade, UpgradeKind,
};
use drover_proto::drover::v1 as pb;
use tonic::Code;

fn spec(name: &str) -> ClusterSpec {
    let text = format!(
        "kind: Cluster\nname: {name}\ntalos: {{ version: v1.13.0 }}\n\
         kubernetes: {{ version: v1.33.1 }}\n---\nkind: ControlPlane\nmachines: [{name}-cp]\n"
    );
    drover_template::parse(&text, &|path| Err(format!("no files here: {path}")))
        .expect("the template is valid")
}

/// The same spec with one more cluster-scope patch: a change an Operator may make.
fn changed(name: &str) -> ClusterSpec {
    let mut s = spec(name);
    s.patches.push(drover_model::ConfigPatch {
        name: "ntp".into(),
        weight: 0,
        content: "machine:\n  time:\n    disabled: false\n".into(),
    });
    s
}

fn status_of(err: ClientError) -> (u16, String) {
    match err {
        ClientError::Api { problem } => (problem.status, problem.detail),
        other => panic!("expected a problem response, got {other}"),
    }
}

async fn service_account(drover: &TestDrover, name: &str, role: Role) -> IssuedServiceAccountKey {
    drover
        .client()
        .create_service_account(&CreateServiceAccount {
            name: name.into(),
            role,
            expires_at: None,
        })
        .await
        .expect("service account created")
}

fn client_with(drover: &TestDrover, secret: &str) -> Client {
    Client::new(&drover.http_url(), Some(secret.to_owned())).unwrap()
}

fn with_bearer<T>(token: &str, msg: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    req
}

async fn me(drover: &TestDrover, secret: &str) -> (u16, serde_json::Value) {
    let response = reqwest::Client::new()
        .get(format!("{}/api/v1/me", drover.http_url()))
        .bearer_auth(secret)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

fn join_token(name: &str) -> CreateJoinToken {
    CreateJoinToken {
        name: name.into(),
        expires_at: None,
        make_default: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_may_do_what_it_should_and_nothing_more_over_rest_and_grpc() {
    let drover = TestDrover::start().await;
    let admin = drover.client();
    // One real machine, joined through an emulated node.
    let token = drover.join_token("rack").await;
    let cancel = CancellationToken::new();
    let running = spawn_fleet(
        drover.fleet(&token.secret, 1, "access", "v1.13.0"),
        cancel.clone(),
    );
    let machine = machines_where(&drover, "one machine joined", |all| all.len() == 1).await[0]
        .id
        .to_string();
    admin.create_cluster(&spec("lab")).await.unwrap();

    let reader = client_with(
        &drover,
        &service_account(&drover, "r", Role::Reader).await.secret,
    );
    let operator = client_with(
        &drover,
        &service_account(&drover, "o", Role::Operator).await.secret,
    );
    let admin_key = service_account(&drover, "a", Role::Admin).await.secret;
    let admin_sa = client_with(&drover, &admin_key);
    let labels = [("zone".to_owned(), "a".to_owned())].into_iter().collect();

    // Reader: reads, changes nothing.
    assert_eq!(reader.all_machines().await.unwrap().len(), 1);
    assert_eq!(reader.list_clusters().await.unwrap().len(), 1);
    reader.get_cluster("lab").await.unwrap();
    reader.list_join_tokens().await.unwrap();
    for (what, err) in [
        (
            "create a join token",
            reader
                .create_join_token(&join_token("x"))
                .await
                .unwrap_err(),
        ),
        (
            "create a cluster",
            reader.create_cluster(&spec("new")).await.unwrap_err(),
        ),
        (
            "change a cluster",
            reader.update_cluster(&changed("lab")).await.unwrap_err(),
        ),
        (
            "label a machine",
            reader
                .set_machine_labels(&machine, &labels)
                .await
                .unwrap_err(),
        ),
        (
            "list service accounts",
            reader.list_service_accounts().await.unwrap_err(),
        ),
    ] {
        let (status, detail) = status_of(err);
        assert_eq!(status, 403, "a Reader may not {what}: {detail}");
        assert!(detail.contains("reader"), "{detail}");
    }

    // Operator: changes machines and clusters, but not users, service accounts or tokens.
    let labelled = operator
        .set_machine_labels(&machine, &labels)
        .await
        .unwrap();
    assert_eq!(labelled.labels.get("zone").map(String::as_str), Some("a"));
    operator.create_cluster(&spec("ops")).await.unwrap();
    let updated = operator.update_cluster(&changed("lab")).await.unwrap();
    assert_eq!(updated.spec.patches.len(), 1);
    operator.delete_cluster("ops").await.unwrap();
    for (what, err) in [
        (
            "create a join token",
            operator
                .create_join_token(&join_token("x"))
                .await
                .unwrap_err(),
        ),
        (
            "list service accounts",
            operator.list_service_accounts().await.unwrap_err(),
        ),
        (
            "create a service account",
            operator
                .create_service_account(&CreateServiceAccount {
                    name: "more".into(),
                    role: Role::Admin,
                    expires_at: None,
                })
                .await
                .unwrap_err(),
        ),
        ("list users", operator.list_users().await.unwrap_err()),
        (
            "invite a user",
            operator
                .invite_user(&InviteUser {
                    email: "x@example.com".into(),
                    role: Role::Admin,
                })
                .await
                .unwrap_err(),
        ),
        (
            "grant a cluster role",
            operator
                .grant_cluster_role(
                    "lab",
                    &GrantClusterRole {
                        user: None,
                        service_account: Some("o".into()),
                        role: Role::Admin,
                    },
                )
                .await
                .unwrap_err(),
        ),
    ] {
        let (status, detail) = status_of(err);
        assert_eq!(status, 403, "an Operator may not {what}: {detail}");
        assert!(detail.contains("admin role"), "{detail}");
    }

    // Admin (a service account too): all of it.
    admin_sa.create_join_token(&join_token("x")).await.unwrap();
    let names: Vec<String> = admin_sa
        .list_service_accounts()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.name)
        .collect();
    assert_eq!(names, ["a", "o", "r"]);
    admin_sa
        .invite_user(&InviteUser {
            email: "Ann@Example.com".into(),
            role: Role::Operator,
        })
        .await
        .unwrap();
    let users = admin_sa.list_users().await.unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].email, "ann@example.com");

    // The principal of a request with a key names the service account.
    let (status, body) = me(&drover, &admin_key).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["principal"]["kind"], "serviceAccount");
    assert_eq!(body["principal"]["name"], "a");
    assert_eq!(body["role"], "admin");

    // gRPC: the same checks, from the same service layer.
    let channel = tonic::transport::Endpoint::from_shared(drover.http_url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut access = pb::access_service_client::AccessServiceClient::new(channel.clone());
    let mut clusters = pb::cluster_service_client::ClusterServiceClient::new(channel);
    let reader_key = {
        let mut keys = access
            .create_service_account(with_bearer(
                &admin_key,
                pb::CreateServiceAccountRequest {
                    name: "grpc-reader".into(),
                    role: "reader".into(),
                    expires_at: None,
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert!(keys.secret.starts_with("drs_"));
        std::mem::take(&mut keys.secret)
    };
    let denied = access
        .list_service_accounts(with_bearer(&reader_key, pb::ListServiceAccountsRequest {}))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    let denied = clusters
        .delete_cluster(with_bearer(
            &reader_key,
            pb::ClusterRef { name: "lab".into() },
        ))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    let listed = clusters
        .list_clusters(with_bearer(&reader_key, pb::ListClustersRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.clusters.len(), 1);
    let bad_role = access
        .invite_user(with_bearer(
            &admin_key,
            pb::InviteUserRequest {
                email: "b@example.com".into(),
                role: "root".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(bad_role.code(), Code::InvalidArgument);
    assert!(bad_role.message().contains("\"root\""), "{bad_role:?}");
    let listed = access
        .list_service_accounts(with_bearer(&admin_key, pb::ListServiceAccountsRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.service_accounts.len(), 4);

    cancel.cancel();
    running.await.unwrap();
    drover.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_account_keys_are_shown_once_hashed_revocable_expiring_and_record_last_use() {
    let drover = TestDrover::start().await;
    let admin = drover.client();
    let first = service_account(&drover, "ci", Role::Operator).await;
    assert!(first.secret.starts_with("drs_"), "{}", first.secret);
    assert_eq!(first.service_account.keys.len(), 1);
    assert_eq!(first.service_account.keys[0].last_used_at, None);

    // Stored as SHA-256 only; never returned again.
    let (hashed, plain): (bool, bool) = sqlx::query_as(
        "SELECT bool_and(secret_hash = sha256(convert_to($1, 'UTF8'))),
                bool_or(k::text LIKE '%' || $1 || '%')
         FROM service_account_keys k",
    )
    .bind(&first.secret)
    .fetch_one(drover.pool())
    .await
    .unwrap();
    assert!(hashed && !plain);
    let listed = reqwest::Client::new()
        .get(format!("{}/api/v1/serviceaccounts", drover.http_url()))
        .bearer_auth(drover.admin_token())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        listed.contains("\"ci\"") && !listed.contains(&first.secret),
        "{listed}"
    );

    // A name is unique; an expiry in the past is refused.
    let (status, detail) = status_of(
        admin
            .create_service_account(&CreateServiceAccount {
                name: "ci".into(),
                role: Role::Reader,
                expires_at: None,
            })
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 409, "{detail}");
    assert!(detail.contains("\"ci\""), "{detail}");
    let (status, detail) = status_of(
        admin
            .create_service_account(&CreateServiceAccount {
                name: "old".into(),
                role: Role::Reader,
                expires_at: Some(chrono::Utc::now() - chrono::Duration::hours(1)),
            })
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 422, "{detail}");

    // Use records the last use.
    let ci = client_with(&drover, &first.secret);
    ci.all_machines().await.unwrap();
    let account = admin.get_service_account("ci").await.unwrap();
    assert!(account.keys[0].last_used_at.is_some(), "{account:?}");

    // A second key; revoking the first refuses it at the next request, the second still works.
    let second = admin.create_service_account_key("ci", None).await.unwrap();
    assert_ne!(second.secret, first.secret);
    assert_eq!(second.service_account.keys.len(), 2);
    let revoked = admin
        .revoke_service_account_key("ci", &first.key.id.to_string())
        .await
        .unwrap();
    assert!(
        revoked
            .keys
            .iter()
            .any(|k| k.id == first.key.id && k.revoked_at.is_some())
    );
    let (status, detail) = status_of(ci.all_machines().await.unwrap_err());
    assert_eq!(status, 401, "{detail}");
    assert!(detail.contains("revoked"), "{detail}");
    let ci2 = client_with(&drover, &second.secret);
    ci2.all_machines().await.unwrap();

    // An expired account: every key refused.
    sqlx::query(
        "UPDATE service_accounts SET expires_at = now() - interval '1 second' WHERE name = 'ci'",
    )
    .execute(drover.pool())
    .await
    .unwrap();
    let (status, detail) = status_of(ci2.all_machines().await.unwrap_err());
    assert_eq!(status, 401, "{detail}");
    assert!(detail.contains("expired"), "{detail}");
    assert!(admin.get_service_account("ci").await.unwrap().expired);

    // Revoking the account refuses its keys at once and forgets it.
    let third = service_account(&drover, "deploy", Role::Reader).await;
    let deploy = client_with(&drover, &third.secret);
    deploy.all_machines().await.unwrap();
    admin.revoke_service_account("deploy").await.unwrap();
    let (status, _) = status_of(deploy.all_machines().await.unwrap_err());
    assert_eq!(status, 401);
    let (status, _) = status_of(admin.get_service_account("deploy").await.unwrap_err());
    assert_eq!(status, 404);

    // A tampered key is refused like an unknown one.
    let mut tampered = second.secret.clone();
    tampered.pop();
    tampered.push(if second.secret.ends_with('a') {
        'b'
    } else {
        'a'
    });
    let (status, _) = status_of(
        client_with(&drover, &tampered)
            .all_machines()
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 401);
    drover.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_grant_lets_a_reader_operate_that_cluster_only() {
    let drover = TestDrover::start().await;
    let admin = drover.client();
    admin.create_cluster(&spec("lab")).await.unwrap();
    admin.create_cluster(&spec("prod")).await.unwrap();
    let key = service_account(&drover, "deployer", Role::Reader).await;
    let deployer = client_with(&drover, &key.secret);

    let (status, detail) = status_of(deployer.update_cluster(&changed("lab")).await.unwrap_err());
    assert_eq!(status, 403, "{detail}");
    assert!(detail.contains("cluster \"lab\""), "{detail}");

    let grant = GrantClusterRole {
        user: None,
        service_account: Some("deployer".into()),
        role: Role::Operator,
    };
    let granted = admin.grant_cluster_role("lab", &grant).await.unwrap();
    assert_eq!(granted.role, Role::Operator);
    assert_eq!(granted.service_account.as_deref(), Some("deployer"));

    // On lab it operates: changes the spec, starts an upgrade (dry run), pauses nothing else.
    let updated = deployer.update_cluster(&changed("lab")).await.unwrap();
    assert_eq!(updated.spec.patches.len(), 1);
    deployer
        .start_upgrade(
            "lab",
            &StartUpgrade {
                kind: UpgradeKind::Talos,
                version: "1.13.1".into(),
                dry_run: true,
            },
        )
        .await
        .unwrap();
    // Everywhere else it is still a Reader.
    let (status, detail) = status_of(deployer.update_cluster(&changed("prod")).await.unwrap_err());
    assert_eq!(status, 403, "{detail}");
    let (status, _) = status_of(deployer.create_cluster(&spec("new")).await.unwrap_err());
    assert_eq!(status, 403);
    let (status, _) = status_of(deployer.delete_cluster("prod").await.unwrap_err());
    assert_eq!(status, 403);
    let (status, _) = status_of(
        deployer
            .create_join_token(&join_token("x"))
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 403);

    // Grants to users (invited ones too), listed per cluster; exactly one grantee; known cluster.
    admin
        .invite_user(&InviteUser {
            email: "ann@example.com".into(),
            role: Role::Reader,
        })
        .await
        .unwrap();
    admin
        .grant_cluster_role(
            "lab",
            &GrantClusterRole {
                user: Some("ANN@example.com".into()),
                service_account: None,
                role: Role::Admin,
            },
        )
        .await
        .unwrap();
    let grants = admin.list_cluster_grants("lab").await.unwrap();
    assert_eq!(grants.len(), 2, "{grants:?}");
    assert_eq!(grants[0].user.as_deref(), Some("ann@example.com"));
    assert_eq!(grants[0].role, Role::Admin);
    assert_eq!(grants[1].service_account.as_deref(), Some("deployer"));
    assert!(admin.list_cluster_grants("prod").await.unwrap().is_empty());
    let (status, detail) = status_of(
        admin
            .grant_cluster_role(
                "lab",
                &GrantClusterRole {
                    user: Some("ann@example.com".into()),
                    service_account: Some("deployer".into()),
                    role: Role::Admin,
                },
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 422, "{detail}");
    let (status, _) = status_of(admin.grant_cluster_role("nope", &grant).await.unwrap_err());
    assert_eq!(status, 404);

    // Revoked: a Reader on lab again, at the next request.
    admin
        .revoke_cluster_grant(
            "lab",
            &GrantTarget {
                user: None,
                service_account: Some("deployer".into()),
            },
        )
        .await
        .unwrap();
    let (status, _) = status_of(deployer.update_cluster(&changed("lab")).await.unwrap_err());
    assert_eq!(status, 403);
    let (status, _) = status_of(
        admin
            .revoke_cluster_grant(
                "lab",
                &GrantTarget {
                    user: None,
                    service_account: Some("deployer".into()),
                },
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 404);
    drover.stop().await;
}
