//! Plans and quotas at their boundaries: the hobby plan's 10th machine joins and the 11th is
//! refused with RESOURCE_EXHAUSTED and nothing stored; concurrent joins and cluster creations
//! cannot both take the last place; the usage endpoint counts what the tenant has.

use drover_e2e::{TestDrover, fast_retry, no_cancel};
use drover_emu::{EmulatedMachine, MachineIdentity, ProvisionError};
use drover_model::{ClusterSpec, Resource, TenantUsage};
use drover_proto::drover::v1 as pb;
use tonic::Code;

async fn tenant_id(drover: &TestDrover, name: &str) -> uuid::Uuid {
    sqlx::query_scalar("SELECT id FROM tenants WHERE name = $1")
        .bind(name)
        .fetch_one(drover.pool())
        .await
        .unwrap()
}

async fn machine_rows(drover: &TestDrover, tenant: uuid::Uuid) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM machines WHERE tenant_id = $1")
        .bind(tenant)
        .fetch_one(drover.pool())
        .await
        .unwrap()
}

/// Rows anywhere in the database that name this machine id (every table with a `machine_id`
/// column, plus `machines` itself).
async fn rows_naming_machine(drover: &TestDrover, id: &str) -> i64 {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.columns
         WHERE table_schema = 'public' AND column_name = 'machine_id'",
    )
    .fetch_all(drover.pool())
    .await
    .unwrap();
    let mut total: i64 = sqlx::query_scalar("SELECT count(*) FROM machines WHERE id = $1")
        .bind(id)
        .fetch_one(drover.pool())
        .await
        .unwrap();
    for table in tables {
        let n: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM {table} WHERE machine_id::text = $1"
        ))
        .bind(id)
        .fetch_one(drover.pool())
        .await
        .unwrap();
        total += n;
    }
    total
}

fn refused_for_quota(result: Result<(), ProvisionError>) -> tonic::Status {
    match result {
        Err(ProvisionError::Rejected(status)) => status,
        other => panic!("expected a gRPC refusal, got {other:?}"),
    }
}

async fn provision(drover: &TestDrover, secret: &str, seed: &str) -> Result<(), ProvisionError> {
    let mut machine = EmulatedMachine::new(MachineIdentity::derive(seed, 0), "v1.13.8");
    machine
        .provision(&drover.join_url(secret))
        .await
        .map(|_| ())
}

fn usage(u: &TenantUsage, resource: Resource) -> (u64, Option<u64>) {
    let item = u.item(resource).expect("every resource is reported");
    (item.used, item.limit)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tenth_machine_joins_the_eleventh_is_refused_and_nothing_is_stored() {
    let drover = TestDrover::start().await;
    let (acme, _) = drover.create_tenant("acme", Some("hobby")).await;
    let acme_id = tenant_id(&drover, "acme").await;
    let token = TestDrover::join_token_with(&acme, "rack").await;

    let mut fleet = drover.fleet(&token.secret, 10, "quota", "v1.13.8");
    fleet
        .provision_all(&fast_retry(Some(20)), &no_cancel())
        .await
        .expect("ten machines fit the hobby plan");
    assert_eq!(machine_rows(&drover, acme_id).await, 10);
    assert_eq!(acme.all_machines().await.unwrap().len(), 10);

    let eleventh = MachineIdentity::derive("quota-eleventh", 0);
    let status = refused_for_quota(provision(&drover, &token.secret, "quota-eleventh").await);
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("hobby plan allows 10 machines"),
        "the message names the plan and the limit: {}",
        status.message()
    );
    assert_eq!(machine_rows(&drover, acme_id).await, 10);
    assert_eq!(rows_naming_machine(&drover, &eleventh.uuid).await, 0);
    let tokens = acme.list_join_tokens().await.unwrap();
    assert_eq!(
        tokens[0].use_count, 10,
        "a refused join does not use the token"
    );

    // Known machines provision again (a reboot with a new key) at the limit.
    fleet.reboot_all();
    fleet
        .provision_all(&fast_retry(Some(20)), &no_cancel())
        .await
        .expect("known machines re-provision at the limit");
    assert_eq!(machine_rows(&drover, acme_id).await, 10);

    let tenant = acme.tenant().await.unwrap();
    assert_eq!(tenant.name, "acme");
    assert_eq!(tenant.plan, "hobby");
    assert_eq!(usage(&tenant, Resource::Machines), (10, Some(10)));

    // One place free, four new machines at once: exactly one takes it.
    let gone = fleet.machines()[0].identity().uuid.clone();
    acme.delete_machine(&gone).await.unwrap();
    assert_eq!(machine_rows(&drover, acme_id).await, 9);
    let racers = (0..4).map(|i| {
        let url = drover.join_url(&token.secret);
        tokio::spawn(async move {
            let mut m = EmulatedMachine::new(MachineIdentity::derive("racer", i), "v1.13.8");
            m.provision(&url).await.map(|_| ())
        })
    });
    let mut joined = 0;
    for racer in racers.collect::<Vec<_>>() {
        match racer.await.unwrap() {
            Ok(()) => joined += 1,
            Err(err) => assert_eq!(refused_for_quota(Err(err)).code(), Code::ResourceExhausted),
        }
    }
    assert_eq!(
        joined, 1,
        "exactly one of the concurrent joins takes the last place"
    );
    assert_eq!(machine_rows(&drover, acme_id).await, 10);

    // Another tenant's limit is its own: the default tenant (unlimited) is not affected.
    let default_token = drover.join_token("default").await;
    provision(&drover, &default_token.secret, "default-tenant")
        .await
        .expect("the default tenant has no limits");
    let default = drover.client().tenant().await.unwrap();
    assert_eq!(default.plan, "unlimited");
    assert_eq!(usage(&default, Resource::Machines), (1, None));
    drover.stop().await;
}

fn cluster(name: &str) -> ClusterSpec {
    let text = format!(
        "kind: Cluster\nname: {name}\ntalos: {{ version: v1.13.0 }}\n\
         kubernetes: {{ version: v1.33.1 }}\n---\nkind: ControlPlane\nmachines: [ghost-{name}]\n"
    );
    drover_template::parse(&text, &|path| Err(format!("no files here: {path}")))
        .expect("the template is valid")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_limit_usage_and_plan_changes() {
    let drover = TestDrover::start().await;
    let (acme, acme_token) = drover.create_tenant("acme", None).await;
    let before = acme.tenant().await.unwrap();
    assert_eq!(
        before.plan, "unlimited",
        "single-tenant mode: the default plan is unlimited"
    );
    drover
        .tenant_admin()
        .set_plan("acme", "hobby")
        .await
        .unwrap();
    let acme_id = tenant_id(&drover, "acme").await;

    acme.create_cluster(&cluster("one")).await.unwrap();
    // Two creations at once for the last place: one wins, one is refused.
    let (two_a, two_b) = (cluster("two-a"), cluster("two-b"));
    let (a, b) = tokio::join!(acme.create_cluster(&two_a), acme.create_cluster(&two_b));
    let refused = match (a, b) {
        (Ok(_), Err(e)) | (Err(e), Ok(_)) => e,
        other => panic!("exactly one of two concurrent creations fits: {other:?}"),
    };
    assert_eq!(refused.status(), Some(403), "{refused}");
    let count = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM clusters WHERE tenant_id = $1")
            .bind(acme_id)
            .fetch_one(drover.pool())
            .await
            .unwrap()
    };
    assert_eq!(count().await, 2);

    // REST: 403 with a problem of type quota-exceeded naming plan and limit.
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/clusters", drover.http_url()))
        .bearer_auth(&acme_token)
        .json(&cluster("three"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 403);
    let problem: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        problem["type"], "https://drover.dev/problems/quota-exceeded",
        "{problem}"
    );
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("hobby plan allows 2 clusters"), "{detail}");

    // gRPC: RESOURCE_EXHAUSTED.
    let channel = tonic::transport::Endpoint::from_shared(drover.http_url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = pb::cluster_service_client::ClusterServiceClient::new(channel.clone());
    let mut request = tonic::Request::new(pb::ClusterSpec {
        name: "three".into(),
        talos_version: "v1.13.0".into(),
        kubernetes_version: "1.33.1".into(),
        control_plane: Some(pb::MachineSetSpec {
            name: "control-planes".into(),
            machines: vec!["ghost-three".into()],
            ..Default::default()
        }),
        ..Default::default()
    });
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {acme_token}").parse().unwrap(),
    );
    let status = grpc.create_cluster(request).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("hobby plan"),
        "{}",
        status.message()
    );
    assert_eq!(count().await, 2, "refused creations store nothing");

    let mut tenants = pb::tenant_service_client::TenantServiceClient::new(channel);
    let mut request = tonic::Request::new(pb::GetTenantRequest {});
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {acme_token}").parse().unwrap(),
    );
    let over_grpc = tenants.get_tenant(request).await.unwrap().into_inner();
    assert_eq!(
        (over_grpc.name.as_str(), over_grpc.plan.as_str()),
        ("acme", "hobby")
    );
    let clusters = over_grpc
        .usage
        .iter()
        .find(|u| u.resource == "clusters")
        .unwrap();
    assert_eq!((clusters.used, clusters.limit), (2, Some(2)));

    let usage_now = acme.tenant().await.unwrap();
    assert_eq!(usage(&usage_now, Resource::Clusters), (2, Some(2)));
    assert_eq!(usage(&usage_now, Resource::Machines), (0, Some(10)));
    assert_eq!(usage(&usage_now, Resource::Users), (0, Some(3)));
    assert_eq!(usage(&usage_now, Resource::ServiceAccounts), (0, Some(2)));

    // A larger plan lifts the limit; an unknown plan is refused by name.
    drover
        .tenant_admin()
        .set_plan("acme", "unlimited")
        .await
        .unwrap();
    acme.create_cluster(&cluster("three")).await.unwrap();
    assert_eq!(count().await, 3);
    let err = drover
        .tenant_admin()
        .set_plan("acme", "gold")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no plan \"gold\""), "{err}");

    // The operator's list shows both tenants with their plans.
    let listed = droverd::tenant::execute(&drover.tenant_admin(), &droverd::TenantCommand::List)
        .await
        .unwrap();
    assert!(
        listed.contains("acme") && listed.contains("clusters 3/-") && listed.contains("default"),
        "{listed}"
    );
    drover.stop().await;
}
