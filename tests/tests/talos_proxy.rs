//! The Talos API proxy: a gRPC client built from a talosconfig `drover talosconfig` wrote (its
//! ca, crt and key alone) reaches the emulated nodes through Drover; the caller's role decides
//! the Talos role the node sees; expired, revoked and other tenants' certificates are refused
//! at once; changes are in the audit log.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use drover_e2e::{TestDrover, binary, ready_cluster};
use drover_model::Role;
use drover_talos::proto::machine::RebootRequest;
use drover_talos::proto::machine::machine_service_client::MachineServiceClient;
use serde_yaml_ng::Value;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Request};

/// Runs the real `drover` CLI with the config file `config` (and `TALOSCONFIG`); its stdout, or
/// its stderr as error.
fn drover_cli(config: &Path, talosconfig: &Path, args: &[&str]) -> Result<String, String> {
    let out = std::process::Command::new(binary("drover"))
        .env("DROVER_CONFIG", config)
        .env("TALOSCONFIG", talosconfig)
        .env_remove("DROVER_TOKEN")
        .env_remove("DROVER_ENDPOINT")
        .env_remove("DROVER_CONTEXT")
        .args(args)
        .output()
        .expect("drover runs");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// A talosconfig for `cluster` written by `drover talosconfig --file` through a CLI context
/// with `token`.
fn talosconfig_for(dir: &Path, drover: &TestDrover, name: &str, token: &str) -> PathBuf {
    let config = dir.join(format!("{name}.yaml"));
    let unused = dir.join("unused-talosconfig");
    let url = drover.http_url();
    drover_cli(
        &config,
        &unused,
        &[
            "config",
            "add",
            name,
            "--server",
            &url,
            "--with-token",
            token,
        ],
    )
    .unwrap();
    let file = dir.join(format!("{name}.talosconfig"));
    let written = drover_cli(
        &config,
        &unused,
        &["talosconfig", "prod", "--file", &file.display().to_string()],
    )
    .unwrap();
    assert!(written.contains("written to"), "{written}");
    file
}

/// What a talosconfig's current context holds.
struct Context {
    endpoint: String,
    ca: String,
    crt: String,
    key: String,
}

fn read_talosconfig(path: &Path) -> Context {
    let config: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let name = config["context"].as_str().expect("a current context");
    let context = &config["contexts"][name];
    let decode = |field: &str| {
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(context[field].as_str().unwrap_or_else(|| panic!("{field}")))
                .unwrap(),
        )
        .unwrap()
    };
    Context {
        endpoint: context["endpoints"][0].as_str().unwrap().to_owned(),
        ca: decode("ca"),
        crt: decode("crt"),
        key: decode("key"),
    }
}

/// A gRPC client from the talosconfig alone.
async fn client(path: &Path) -> MachineServiceClient<Channel> {
    let context = read_talosconfig(path);
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&context.ca))
        .identity(Identity::from_pem(&context.crt, &context.key));
    let channel = Endpoint::from_shared(format!("https://{}", context.endpoint))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect_lazy();
    MachineServiceClient::new(channel)
}

fn to<T>(node: Option<&str>, message: T) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(node) = node {
        request.metadata_mut().insert("node", node.parse().unwrap());
    }
    request
}

async fn version_hostname(
    client: &mut MachineServiceClient<Channel>,
    node: Option<&str>,
) -> Result<String, tonic::Status> {
    let response = client.version(to(node, ())).await?.into_inner();
    Ok(response.messages[0]
        .metadata
        .as_ref()
        .unwrap()
        .hostname
        .clone())
}

fn serial_of(path: &Path) -> String {
    drover_pki::serial_hex(&read_talosconfig(path).crt).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn talosctl_credentials_reach_the_nodes_as_the_caller_through_the_proxy() {
    let drover = TestDrover::start().await;
    let cluster = ready_cluster(&drover, "prod", "1.13.0", "1.33.1", 1, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let machines = drover.client().all_machines().await.unwrap();
    let hostname = |m: &drover_model::Machine| m.facts.as_ref().unwrap().hostname.clone();
    let (control_plane_id,): (String,) = sqlx::query_as(
        "SELECT machine_id FROM cluster_machines WHERE cluster_name = 'prod' AND role <> 'worker'",
    )
    .fetch_one(drover.pool())
    .await
    .unwrap();
    let control_plane = machines
        .iter()
        .find(|m| m.id.to_string() == control_plane_id)
        .expect("the control plane");
    let worker = machines
        .iter()
        .find(|m| m.id != control_plane.id)
        .expect("a worker");

    // An Admin's talosconfig, merged into $TALOSCONFIG, points at the proxy.
    let admin_cli = dir.path().join("admin.yaml");
    let merged = dir.path().join("talos").join("config");
    drover_cli(
        &admin_cli,
        &merged,
        &[
            "config",
            "add",
            "admin",
            "--server",
            &drover.http_url(),
            "--with-token",
            drover.admin_token(),
        ],
    )
    .unwrap();
    let out = drover_cli(
        &admin_cli,
        &merged,
        &["talosconfig", "prod", "--merge", "--ttl", "1h"],
    )
    .unwrap();
    assert!(out.contains("drover-prod"), "{out}");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&merged).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let context = read_talosconfig(&merged);
    assert_eq!(
        context.endpoint,
        format!("127.0.0.1:{}", drover.server().talos_proxy_addr().port())
    );

    // Version and ServiceList through the proxy: a control plane without `node`, the node
    // named by hostname, machine id or tunnel address otherwise.
    let mut admin = client(&merged).await;
    assert_eq!(
        version_hostname(&mut admin, None).await.unwrap(),
        hostname(control_plane)
    );
    for name in [
        hostname(worker),
        worker.id.to_string(),
        worker.address.clone(),
    ] {
        assert_eq!(
            version_hostname(&mut admin, Some(&name)).await.unwrap(),
            hostname(worker),
            "node {name}"
        );
    }
    let services = admin
        .service_list(to(Some(&hostname(worker)), ()))
        .await
        .unwrap()
        .into_inner();
    let listed = &services.messages[0];
    assert_eq!(listed.metadata.as_ref().unwrap().hostname, hostname(worker));
    assert!(
        listed
            .services
            .iter()
            .any(|s| s.id == "apid" && s.state == "Running"),
        "{listed:?}"
    );
    let missing = version_hostname(&mut admin, Some("not-a-node"))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");

    // A Reader's Reboot is refused by the node itself (os:reader); an Operator's passes the
    // node's role check (the emulator answers that Reboot is not emulated).
    let reader_token = drover.api_token("viewer", Role::Reader).await;
    let reader_file = talosconfig_for(dir.path(), &drover, "viewer", &reader_token);
    let mut reader = client(&reader_file).await;
    assert_eq!(
        version_hostname(&mut reader, None).await.unwrap(),
        hostname(control_plane)
    );
    let refused = reader
        .reboot(to(Some(&hostname(worker)), RebootRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert_eq!(
        refused.message(),
        "not authorized",
        "the node's own refusal"
    );
    let operator_token = drover.api_token("ops", Role::Operator).await;
    let operator_file = talosconfig_for(dir.path(), &drover, "ops", &operator_token);
    let mut operator = client(&operator_file).await;
    let passed = operator
        .reboot(to(Some(&hostname(worker)), RebootRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(passed.code(), Code::Unimplemented, "{passed:?}");
    assert!(
        passed.message().contains("Reboot is not emulated"),
        "{passed:?}"
    );
    // A client cannot raise its role with the impersonation metadata.
    let mut escalate = to(Some(&hostname(worker)), RebootRequest::default());
    escalate
        .metadata_mut()
        .insert("talos-role", "os:admin".parse().unwrap());
    let refused = reader.reboot(escalate).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");

    // The audit log shows the Reboots and the issued talosconfigs; reads are not recorded.
    let log = drover
        .client()
        .audit_log(0, &drover_client::AuditFilter::default())
        .await
        .unwrap();
    assert!(
        log.iter().any(|e| e.actor == "token:viewer"
            && e.action == "talos.Reboot"
            && e.result.contains("PermissionDenied")),
        "{log:#?}"
    );
    assert!(
        log.iter()
            .any(|e| e.actor == "token:ops" && e.action == "talos.Reboot"),
        "{log:#?}"
    );
    assert!(
        log.iter()
            .any(|e| e.actor == "token:ops" && e.action == "talosconfig.issue"),
        "{log:#?}"
    );
    assert!(!log.iter().any(|e| e.action == "talos.Version"), "{log:#?}");

    // A revoked certificate is refused at once.
    let http = reqwest::Client::new();
    let revoked = http
        .delete(format!(
            "{}/api/v1/talosconfig-certs/{}",
            drover.http_url(),
            serial_of(&operator_file)
        ))
        .bearer_auth(drover.admin_token())
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status().as_u16(), 204);
    let refused = version_hostname(&mut operator, None).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    assert!(refused.message().contains("revoked"), "{refused:?}");

    // An expired one too (its expiry in the past, whatever the clock).
    sqlx::query(
        "UPDATE talos_client_certs SET expires_at = now() - interval '1 second' WHERE serial = $1",
    )
    .bind(serial_of(&reader_file))
    .execute(drover.pool())
    .await
    .unwrap();
    let refused = version_hostname(&mut reader, None).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    assert!(refused.message().contains("expired"), "{refused:?}");

    // Another tenant cannot get one for this cluster, and its certificates do not reach it.
    let (bravo, _) = drover.create_tenant("bravo", None).await;
    let err = bravo.issue_talosconfig("prod", None).await.unwrap_err();
    assert!(err.to_string().contains("not found"), "{err}");
    let stolen = talosconfig_for(dir.path(), &drover, "stolen", drover.admin_token());
    sqlx::query(
        "UPDATE talos_client_certs SET
            tenant_id = t.id,
            actor = 'token:initial-admin',
            principal_id = (SELECT a.id FROM api_tokens a WHERE a.tenant_id = t.id LIMIT 1)
         FROM tenants t WHERE t.name = 'bravo' AND serial = $1",
    )
    .bind(serial_of(&stolen))
    .execute(drover.pool())
    .await
    .unwrap();
    let refused = version_hostname(&mut client(&stolen).await, None)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::NotFound, "{refused:?}");

    // Revoking everything of a principal ends its certificates at once.
    let all = http
        .delete(format!("{}/api/v1/talosconfig-certs", drover.http_url()))
        .query(&[("principal", "token:initial-admin")])
        .bearer_auth(drover.admin_token())
        .send()
        .await
        .unwrap();
    assert_eq!(all.status().as_u16(), 200);
    let body: serde_json::Value = all.json().await.unwrap();
    assert!(body["revoked"].as_u64().unwrap() >= 1, "{body}");
    let refused = version_hostname(&mut admin, None).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");

    cluster.stop().await;
    drover.stop().await;
}
