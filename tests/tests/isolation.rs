//! Tenant isolation: with tenant B's admin token, walk every REST route of the served OpenAPI
//! document and every gRPC method of the `drover.v1` services (enumerated from the proto
//! files, so new routes and methods are covered without touching this test), aimed at tenant
//! A's objects. Nothing of A may be exposed: reads answer 404 (not 403), lists and counts show
//! none of A's, mutations answer 404 (or create B's own object) and A's stored state is the same
//! afterwards. A machine provisioned with B's join token lands in B.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use bytes::{Buf, BufMut};
use drover_e2e::{TestDrover, fast_retry, no_cancel};
use drover_emu::{EmulatedMachine, MachineIdentity};
use drover_model::{
    CreateServiceAccount, GrantClusterRole, InviteUser, MachineClassSpec, Resource, Role,
};
use prost_types::field_descriptor_proto::Type;
use serde_json::{Value, json};
use tonic::Code;

/// Tenant A's objects, and the strings that would betray them in a response to B.
struct TenantA {
    machines: Vec<String>,
    cluster: String,
    class: String,
    token_name: String,
    token_id: String,
    token_secret: String,
    service_account: String,
    key_id: String,
    user_email: String,
    /// The serial of a talosconfig certificate A issued.
    talos_serial: String,
    /// Ids, addresses and keys B cannot know: never in any successful response to B.
    secrets: Vec<String>,
    /// A's names: never in a successful read by B (B may create objects of the same names).
    names: Vec<String>,
}

/// The order calls are made in: reads before changes, deletions after other changes, and
/// creations (which may make B's own objects with A's names) last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Read,
    Change,
    Delete,
    Create,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_b_sees_and_changes_nothing_of_tenant_a() {
    let drover = TestDrover::start().await;
    let (alpha, _) = drover.create_tenant("alpha", None).await;
    let (bravo, bravo_token) = drover.create_tenant("bravo", None).await;

    // Tenant A: machines, a join token, a machine class, a cluster.
    let token = TestDrover::join_token_with(&alpha, "alpha-token").await;
    let mut fleet = drover.fleet(&token.secret, 3, "alpha", "v1.13.8");
    fleet
        .provision_all(&fast_retry(Some(20)), &no_cancel())
        .await
        .expect("A's machines join");
    let machines = alpha.all_machines().await.unwrap();
    assert_eq!(machines.len(), 3);
    alpha
        .put_machine_class(&MachineClassSpec {
            name: "alpha-class".into(),
            selectors: vec!["alpha-tier=gold".into()],
        })
        .await
        .unwrap();
    let spec = drover_template::parse(
        "kind: Cluster\nname: alpha-prod\ntalos: { version: v1.13.0 }\n\
         kubernetes: { version: v1.33.1 }\n---\nkind: ControlPlane\nmachines: [ghost-alpha]\n",
        &|path| Err(format!("no files here: {path}")),
    )
    .unwrap();
    let cluster = alpha.create_cluster(&spec).await.unwrap();
    // A service account with a key, an invited user, and grants on the cluster to both.
    let robot = alpha
        .create_service_account(&CreateServiceAccount {
            name: "alpha-robot".into(),
            role: Role::Reader,
            expires_at: None,
        })
        .await
        .unwrap();
    alpha
        .invite_user(&InviteUser {
            email: "ann@alpha.example".into(),
            role: Role::Reader,
        })
        .await
        .unwrap();
    for grant in [
        GrantClusterRole {
            user: Some("ann@alpha.example".into()),
            service_account: None,
            role: Role::Operator,
        },
        GrantClusterRole {
            user: None,
            service_account: Some("alpha-robot".into()),
            role: Role::Operator,
        },
    ] {
        alpha
            .grant_cluster_role(&cluster.spec.name, &grant)
            .await
            .unwrap();
    }
    let alpha_id = tenant_id(&drover, "alpha").await;
    let cluster_uid: String =
        sqlx::query_scalar("SELECT uid::text FROM clusters WHERE tenant_id = $1")
            .bind(alpha_id)
            .fetch_one(drover.pool())
            .await
            .unwrap();
    let mut secrets = vec![
        robot.key.id.to_string(),
        robot.service_account.id.to_string(),
        robot.secret.clone(),
        token.token.id.to_string(),
        alpha_id.to_string(),
        cluster_uid,
    ];
    for m in &machines {
        secrets.extend([
            m.id.to_string(),
            m.address.clone(),
            m.wireguard_public_key.clone(),
        ]);
    }
    let talosconfig = alpha
        .issue_talosconfig(&cluster.spec.name, None)
        .await
        .unwrap();
    let a = TenantA {
        machines: machines.iter().map(|m| m.id.to_string()).collect(),
        cluster: cluster.spec.name.clone(),
        class: "alpha-class".into(),
        token_name: "alpha-token".into(),
        token_id: token.token.id.to_string(),
        token_secret: token.secret.clone(),
        service_account: "alpha-robot".into(),
        key_id: robot.key.id.to_string(),
        user_email: "ann@alpha.example".into(),
        talos_serial: talosconfig.serial,
        secrets,
        names: vec![
            "alpha-prod".into(),
            "alpha-class".into(),
            "alpha-token".into(),
            "alpha-tier".into(),
            "alpha-robot".into(),
            "ann@alpha.example".into(),
        ],
    };

    // A machine provisioned with B's join token lands in B, and only there.
    let bravo_join = TestDrover::join_token_with(&bravo, "bravo-token").await;
    let mut bravo_machine = EmulatedMachine::new(MachineIdentity::derive("bravo", 0), "v1.13.8");
    bravo_machine
        .provision(&drover.join_url(&bravo_join.secret))
        .await
        .expect("B's machine joins");
    let bravo_machines = bravo.all_machines().await.unwrap();
    assert_eq!(bravo_machines.len(), 1);
    assert_eq!(
        bravo_machines[0].id.to_string(),
        bravo_machine.identity().uuid
    );
    assert_eq!(alpha.all_machines().await.unwrap().len(), 3);
    let landed: uuid::Uuid = sqlx::query_scalar("SELECT tenant_id FROM machines WHERE id = $1")
        .bind(&bravo_machine.identity().uuid)
        .fetch_one(drover.pool())
        .await
        .unwrap();
    assert_eq!(landed, tenant_id(&drover, "bravo").await);

    // Counts: B's usage shows only B's own.
    let usage = bravo.tenant().await.unwrap();
    assert_eq!(usage.name, "bravo");
    assert_eq!(usage.item(Resource::Machines).unwrap().used, 1);
    assert_eq!(usage.item(Resource::Clusters).unwrap().used, 0);

    let before = snapshot(&drover, alpha_id, &a.machines).await;

    let mut calls: Vec<(Phase, Call)> = rest_calls(&drover, &alpha, &a).await;
    calls.extend(grpc_calls(&a));
    calls.sort_by_key(|(phase, _)| *phase);
    let (mut rest_count, mut grpc_count) = (0, 0);
    let mut b_owns = HashSet::new();
    let channel = tonic::transport::Endpoint::from_shared(drover.http_url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    for (phase, call) in &calls {
        match call {
            Call::Rest(c) => {
                rest_count += 1;
                check_rest(&drover, &bravo_token, *phase, c, &a, &mut b_owns).await;
            }
            Call::Grpc(c) => {
                grpc_count += 1;
                check_grpc(channel.clone(), &bravo_token, *phase, c, &a, &mut b_owns).await;
            }
        }
    }
    assert!(
        rest_count >= 28,
        "every REST route was called: {rest_count}"
    );
    assert!(
        grpc_count >= 25,
        "every gRPC method was called: {grpc_count}"
    );

    let after = snapshot(&drover, alpha_id, &a.machines).await;
    for (table, rows) in &before {
        assert_eq!(
            Some(rows),
            after.get(table),
            "tenant A's {table} changed while tenant B walked the API"
        );
    }
    assert_eq!(before.len(), after.len());
    // A still sees all of its own.
    assert_eq!(alpha.all_machines().await.unwrap().len(), 3);
    assert_eq!(
        alpha.get_cluster("alpha-prod").await.unwrap().spec,
        cluster.spec
    );
    drover.stop().await;
}

async fn tenant_id(drover: &TestDrover, name: &str) -> uuid::Uuid {
    sqlx::query_scalar("SELECT id FROM tenants WHERE name = $1")
        .bind(name)
        .fetch_one(drover.pool())
        .await
        .unwrap()
}

/// Columns a background task may change on its own (reconciler status, leases, token use
/// times): left out of the comparison.
const VOLATILE: &[(&str, &[&str])] = &[
    (
        "clusters",
        &[
            "phase",
            "ready",
            "machines_missing",
            "last_error",
            "lease_owner",
            "lease_until",
            "updated_at",
            "control_plane_endpoint",
            "etcd_members",
            "kubernetes_api_ready",
        ],
    ),
    ("api_tokens", &["last_used_at"]),
];
/// Append-only logs the reconciler writes for A's cluster while the test runs.
const SKIPPED: &[&str] = &["cluster_events"];

/// Every row of tenant A in every table with a `tenant_id` (found in the catalog, so new tables
/// are covered), plus rows anywhere that name A's machines, as JSON text per table.
async fn snapshot(
    drover: &TestDrover,
    tenant: uuid::Uuid,
    machines: &[String],
) -> BTreeMap<String, String> {
    let tables: Vec<(String, bool)> = sqlx::query_as(
        "SELECT c.table_name::text,
                EXISTS (SELECT 1 FROM information_schema.columns m
                        WHERE m.table_schema = 'public' AND m.table_name = c.table_name
                          AND m.column_name = 'machine_id')
         FROM information_schema.columns c
         WHERE c.table_schema = 'public' AND c.column_name = 'tenant_id'",
    )
    .fetch_all(drover.pool())
    .await
    .unwrap();
    let mut out = BTreeMap::new();
    for (table, has_machine) in tables {
        if SKIPPED.contains(&table.as_str()) {
            continue;
        }
        let volatile = VOLATILE
            .iter()
            .find(|(t, _)| *t == table)
            .map(|(_, cols)| cols.to_vec())
            .unwrap_or_default();
        let mut filter = "t.tenant_id = $1".to_owned();
        if has_machine {
            filter.push_str(" OR t.machine_id = ANY($2)");
        }
        if table == "machines" {
            filter.push_str(" OR t.id = ANY($2)");
        }
        let rows: String = sqlx::query_scalar(&format!(
            "SELECT coalesce(jsonb_agg(r ORDER BY r::text), '[]'::jsonb)::text
             FROM (SELECT to_jsonb(t) - $3::text[] AS r FROM {table} t WHERE {filter}) s"
        ))
        .bind(tenant)
        .bind(machines)
        .bind(&volatile)
        .fetch_one(drover.pool())
        .await
        .unwrap();
        out.insert(table, rows);
    }
    let tenant_row: String =
        sqlx::query_scalar("SELECT to_jsonb(t)::text FROM tenants t WHERE id = $1")
            .bind(tenant)
            .fetch_one(drover.pool())
            .await
            .unwrap();
    out.insert("tenants".into(), tenant_row);
    assert!(out.len() > 8, "tables with tenant data: {:?}", out.keys());
    out
}

enum Call {
    Rest(RestCall),
    Grpc(GrpcCall),
}

struct RestCall {
    method: reqwest::Method,
    template: String,
    path: String,
    body: Option<Value>,
    /// Aimed at one of A's objects by its path.
    targets_a: bool,
    /// Creates or replaces by name: may make B's own object of that name.
    upsert: bool,
}

/// Routes that create or replace by the name in their path: for B they make B's own object.
const REST_UPSERTS: &[(&str, &str)] = &[
    ("PUT", "/api/v1/machineclasses/{name}"),
    ("POST", "/api/v1/clusters/{name}/sync"),
];

async fn rest_calls(
    drover: &TestDrover,
    alpha: &drover_client::Client,
    a: &TenantA,
) -> Vec<(Phase, Call)> {
    let doc: Value = reqwest::get(format!("{}/api/openapi.json", drover.http_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let cluster_spec =
        serde_json::to_value(alpha.get_cluster(&a.cluster).await.unwrap().spec).unwrap();
    let mut calls = Vec::new();
    for (template, ops) in doc["paths"].as_object().expect("paths") {
        for (method, op) in ops.as_object().unwrap() {
            let method: reqwest::Method = method.to_uppercase().parse().unwrap();
            let mut path = template.clone();
            for param in op["parameters"].as_array().into_iter().flatten() {
                if param["in"] != "path" {
                    continue;
                }
                let name = param["name"].as_str().unwrap();
                let value = match (name, template.as_str()) {
                    ("name", t) if t.starts_with("/api/v1/clusters/") => a.cluster.clone(),
                    ("name", t) if t.starts_with("/api/v1/machineclasses/") => a.class.clone(),
                    ("name", t) if t.starts_with("/api/v1/serviceaccounts/") => {
                        a.service_account.clone()
                    }
                    ("account", _) => a.service_account.clone(),
                    ("key", _) => a.key_id.clone(),
                    ("email", _) => a.user_email.clone(),
                    ("serial", _) => a.talos_serial.clone(),
                    ("id", _) => a.machines[0].clone(),
                    ("token", _) if method == reqwest::Method::GET => a.token_name.clone(),
                    ("token", _) => a.token_id.clone(),
                    _ => panic!(
                        "the isolation test does not know how to fill path parameter {name:?} of \
                         {method} {template}: teach it which of tenant A's objects that names"
                    ),
                };
                path = path.replace(&format!("{{{name}}}"), &value);
            }
            let schema = &op["requestBody"]["content"]["application/json"]["schema"];
            let body = (!schema.is_null()).then(|| body_for(schema, &cluster_spec, a));
            let targets_a = path != *template;
            let upsert = REST_UPSERTS
                .iter()
                .any(|(m, t)| *m == method.as_str() && t == template);
            let phase = if method == reqwest::Method::GET {
                Phase::Read
            } else if upsert || !targets_a {
                Phase::Create
            } else if method == reqwest::Method::DELETE {
                Phase::Delete
            } else {
                Phase::Change
            };
            calls.push((
                phase,
                Call::Rest(RestCall {
                    method,
                    template: template.clone(),
                    path,
                    body,
                    targets_a,
                    upsert,
                }),
            ));
        }
    }
    calls
}

/// A request body for `schema`, made of A's values where they fit.
fn body_for(schema: &Value, cluster_spec: &Value, a: &TenantA) -> Value {
    let name = schema["$ref"]
        .as_str()
        .and_then(|r| r.rsplit('/').next())
        .unwrap_or_default();
    match name {
        "ClusterSpec" => cluster_spec.clone(),
        "MachineClassSpec" => json!({"name": a.class, "selectors": ["alpha-tier=gold"]}),
        "Selectors" => json!({"selectors": ["alpha-tier=gold"]}),
        "CreateJoinToken" => json!({"name": a.token_name}),
        "JoinSecret" => json!({"secret": a.token_secret}),
        "StartUpgrade" => json!({"kind": "talos", "version": "v1.13.1"}),
        "UpgradeState" => json!("paused"),
        "CreateServiceAccount" => json!({"name": a.service_account, "role": "reader"}),
        "InviteUser" => json!({"email": a.user_email, "role": "reader"}),
        "SetRole" => json!({"role": "reader"}),
        "GrantClusterRole" => json!({"user": a.user_email, "role": "operator"}),
        _ => match schema["type"].as_str() {
            Some("array") => json!([]),
            Some("object") => json!({"alpha-tier": "silver"}),
            _ => json!({}),
        },
    }
}

/// `b_owns`: A's names that B has since created objects of its own under (a conflict with
/// those is B's own).
async fn check_rest(
    drover: &TestDrover,
    token: &str,
    phase: Phase,
    call: &RestCall,
    a: &TenantA,
    b_owns: &mut HashSet<String>,
) {
    let url = format!("{}{}", drover.http_url(), call.path);
    let mut request = reqwest::Client::new()
        .request(call.method.clone(), &url)
        .bearer_auth(token);
    if let Some(body) = &call.body {
        request = request.json(body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let what = format!("{} {} (route {})", call.method, call.path, call.template);
    let request_text = format!(
        "{} {}",
        call.path,
        call.body.as_ref().map(Value::to_string).unwrap_or_default()
    );
    let own_conflict = status == 409
        && phase == Phase::Create
        && b_owns.iter().any(|n| request_text.contains(n.as_str()));
    assert!(
        own_conflict || (!matches!(status, 401 | 403 | 409) && status < 500),
        "{what}: {status} would tell B about A (or fail): {text}"
    );
    if call.targets_a && !call.upsert {
        assert_eq!(
            status, 404,
            "{what}: A's object must be not found for B: {text}"
        );
    }
    if (200..300).contains(&status) {
        no_leak(&what, &text, &a.secrets);
        if phase == Phase::Read {
            no_leak(&what, &text, &a.names);
        }
        if phase == Phase::Create {
            b_owns.extend(
                a.names
                    .iter()
                    .filter(|n| request_text.contains(n.as_str()))
                    .cloned(),
            );
        }
    }
}

fn no_leak(what: &str, text: &str, markers: &[String]) {
    for marker in markers {
        assert!(
            !text.contains(marker.as_str()),
            "{what}: the response shows tenant A's {marker:?}: {text}"
        );
    }
}

struct GrpcCall {
    service: String,
    method: String,
    request: Vec<u8>,
    targets_a: bool,
}

/// Every method of every `drover.v1` service, with a request whose string fields name A's
/// objects.
fn grpc_calls(a: &TenantA) -> Vec<(Phase, Call)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../proto");
    let mut files: Vec<String> = std::fs::read_dir(root.join("drover/v1"))
        .unwrap()
        .map(|e| format!("drover/v1/{}", e.unwrap().file_name().to_string_lossy()))
        .filter(|f| f.ends_with(".proto"))
        .collect();
    files.sort();
    let set = protox::compile(&files, [&root]).expect("the drover.v1 protos compile");
    let messages: BTreeMap<String, &prost_types::DescriptorProto> = set
        .file
        .iter()
        .flat_map(|f| {
            let package = f.package().to_owned();
            f.message_type
                .iter()
                .map(move |m| (format!(".{package}.{}", m.name()), m))
        })
        .collect();
    let mut calls = Vec::new();
    for file in set.file.iter().filter(|f| f.package() == "drover.v1") {
        for service in &file.service {
            for method in &service.method {
                assert!(
                    !method.client_streaming() && !method.server_streaming(),
                    "{}: the isolation test calls unary methods; teach it streams",
                    method.name()
                );
                let input = messages[method.input_type()];
                let (request, targets_a) = fill_request(service.name(), input, a);
                let name = method.name();
                let phase = if name.starts_with("Get") || name.starts_with("List") {
                    Phase::Read
                } else if name.starts_with("Delete") {
                    Phase::Delete
                } else if ["Create", "Put", "Sync", "Invite"]
                    .iter()
                    .any(|p| name.starts_with(p))
                {
                    Phase::Create
                } else {
                    Phase::Change
                };
                calls.push((
                    phase,
                    Call::Grpc(GrpcCall {
                        service: format!("{}.{}", file.package(), service.name()),
                        method: name.to_owned(),
                        request,
                        targets_a,
                    }),
                ));
            }
        }
    }
    calls
}

/// Encodes `message` with its top-level string fields set from A's objects, by field name.
/// Also says whether the request names one of A's objects.
fn fill_request(
    service: &str,
    message: &prost_types::DescriptorProto,
    a: &TenantA,
) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut targets_a = false;
    for field in &message.field {
        if field.r#type() != Type::String {
            continue;
        }
        let value = match field.name() {
            "name" | "cluster" if service.starts_with("Cluster") => a.cluster.clone(),
            "name" if service.starts_with("MachineClass") => a.class.clone(),
            "name" if service.starts_with("JoinToken") => a.token_name.clone(),
            "name" if service.starts_with("Access") => a.service_account.clone(),
            "service_account" => a.service_account.clone(),
            "key_id" => a.key_id.clone(),
            "email" | "user" => a.user_email.clone(),
            "role" => "reader".into(),
            "token" => a.token_id.clone(),
            "id" | "machine" => a.machines[0].clone(),
            "talos_version" | "version" => "v1.13.1".into(),
            "kubernetes_version" => "1.33.1".into(),
            "kind" => "talos".into(),
            "state" => "paused".into(),
            _ => continue,
        };
        let tag = (u64::try_from(field.number()).unwrap() << 3) | 2;
        prost::encoding::encode_varint(tag, &mut out);
        prost::encoding::encode_varint(value.len() as u64, &mut out);
        out.extend_from_slice(value.as_bytes());
        targets_a |= matches!(
            field.name(),
            "name"
                | "cluster"
                | "token"
                | "id"
                | "machine"
                | "service_account"
                | "key_id"
                | "email"
                | "user"
        );
    }
    (out, targets_a)
}

async fn check_grpc(
    channel: tonic::transport::Channel,
    token: &str,
    phase: Phase,
    call: &GrpcCall,
    a: &TenantA,
    b_owns: &mut HashSet<String>,
) {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let mut request = tonic::Request::new(call.request.clone());
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let path: tonic::codegen::http::uri::PathAndQuery =
        format!("/{}/{}", call.service, call.method)
            .parse()
            .unwrap();
    let what = format!("gRPC {}/{}", call.service, call.method);
    let result = grpc.unary(request, path, RawCodec).await;
    let request_text = String::from_utf8_lossy(&call.request).into_owned();
    match result {
        Ok(response) => {
            assert!(
                !(call.targets_a && phase != Phase::Create),
                "{what}: A's object must be NOT_FOUND for B, not OK"
            );
            let body = response.into_inner();
            let text = String::from_utf8_lossy(&body);
            no_leak(&what, &text, &a.secrets);
            if phase == Phase::Read {
                no_leak(&what, &text, &a.names);
            }
            if phase == Phase::Create {
                b_owns.extend(
                    a.names
                        .iter()
                        .filter(|n| request_text.contains(n.as_str()))
                        .cloned(),
                );
            }
        }
        Err(status) => {
            let code = status.code();
            let own_conflict = code == Code::AlreadyExists
                && phase == Phase::Create
                && b_owns.iter().any(|n| request_text.contains(n.as_str()));
            assert!(
                own_conflict
                    || !matches!(
                        code,
                        Code::PermissionDenied
                            | Code::AlreadyExists
                            | Code::FailedPrecondition
                            | Code::Unauthenticated
                            | Code::Internal
                            | Code::Unknown
                            | Code::Unimplemented
                    ),
                "{what}: {code:?} would tell B about A (or fail): {}",
                status.message()
            );
            if call.targets_a && matches!(phase, Phase::Read | Phase::Delete) {
                assert_eq!(code, Code::NotFound, "{what}: {}", status.message());
            } else if call.targets_a && phase == Phase::Change {
                assert!(
                    matches!(code, Code::NotFound | Code::InvalidArgument),
                    "{what}: {code:?}: {}",
                    status.message()
                );
            }
        }
    }
}

/// Requests and responses as the bytes of their encoded messages.
#[derive(Clone, Copy)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        *self
    }

    fn decoder(&mut self) -> Self::Decoder {
        *self
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}
