//! The Kubernetes proxy with the real kubectl: a kubeconfig from `drover kubeconfig` (the CLI as
//! kubectl's credential plugin) lists the emulated cluster's nodes; a Reader reads but cannot
//! change anything; a client's impersonation headers are replaced by Drover's; a revoked
//! credential stops working at once; a cluster of nobody's is 404.

use std::path::Path;
use std::time::Duration;

use drover_e2e::{TestDrover, drover_cli, ready_cluster};
use drover_model::Role;
use serde_json::Value;

/// Runs the real kubectl with `kubeconfig`; its stdout, or its stderr as error.
fn kubectl(kubeconfig: &Path, args: &[&str]) -> Result<String, String> {
    let out = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .expect("kubectl is installed (scripts/install-prereqs --for-tests)");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// A CLI context `name` with `token`, and a kubeconfig for cluster `cluster` written by
/// `drover kubeconfig` through it.
fn kubeconfig_for(
    dir: &Path,
    drover: &TestDrover,
    name: &str,
    token: &str,
    cluster: &str,
) -> std::path::PathBuf {
    let config = dir.join(format!("{name}.yaml"));
    let url = drover.http_url();
    drover_cli(
        &config,
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
    let kubeconfig = dir.join(format!("{name}.kubeconfig"));
    let file = kubeconfig.display().to_string();
    let written = drover_cli(&config, &["kubeconfig", cluster, "--file", &file]).unwrap();
    assert!(written.contains("written to"), "{written}");
    kubeconfig
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_reaches_the_cluster_as_the_caller_through_the_proxy() {
    let drover = TestDrover::start().await;
    let cluster = ready_cluster(&drover, "prod", "1.13.0", "1.33.1", 1, 1).await;
    let dir = tempfile::tempdir().unwrap();

    // An Admin (the initial admin token) lists the nodes with the real kubectl.
    let admin = kubeconfig_for(dir.path(), &drover, "admin", drover.admin_token(), "prod");
    let text = std::fs::read_to_string(&admin).unwrap();
    let proxy = format!(
        "https://127.0.0.1:{}/clusters/prod",
        drover.server().kube_proxy_addr().port()
    );
    assert!(text.contains(&proxy), "{text}");
    assert!(
        !text.contains(drover.admin_token()),
        "a context's token stays in the CLI config"
    );
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&admin).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let nodes: Value =
        serde_json::from_str(&kubectl(&admin, &["get", "nodes", "-o", "json"]).unwrap()).unwrap();
    let names: Vec<&str> = nodes["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{nodes}");
    let table = kubectl(&admin, &["get", "pods", "-n", "kube-system"]).unwrap();
    assert!(table.contains("kube-apiserver-"), "{table}");

    // A watch streams through the proxy: after the list, kubectl prints the watch's events as
    // they arrive on the open connection.
    let mut watch = tokio::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&admin)
        .args(["get", "nodes", "--watch", "-o", "json"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines =
        tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(watch.stdout.take().unwrap()));
    let mut printed = 0;
    let streamed = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.trim() == "\"kind\": \"Node\"," {
                printed += 1;
                if printed == 4 {
                    return;
                }
            }
        }
    })
    .await;
    assert!(
        streamed.is_ok() && printed == 4,
        "2 listed + 2 watched nodes, saw {printed}"
    );
    watch.kill().await.unwrap();

    // The cluster sees the caller, not what the client asks to be.
    let whoami = |kubeconfig: &Path, extra: &[&str]| -> Value {
        let mut args = vec!["auth", "whoami", "-o", "json"];
        args.extend_from_slice(extra);
        serde_json::from_str(&kubectl(kubeconfig, &args).unwrap()).unwrap()
    };
    let me = whoami(&admin, &[]);
    assert_eq!(
        me["status"]["userInfo"]["username"],
        "drover:token:initial-admin"
    );
    let groups = me["status"]["userInfo"]["groups"].to_string();
    assert!(groups.contains("system:masters"), "{groups}");

    // A Reader reads, cannot change anything, and cannot escalate by impersonation.
    let reader_token = drover.api_token("viewer", Role::Reader).await;
    let reader = kubeconfig_for(dir.path(), &drover, "reader", &reader_token, "prod");
    assert!(
        kubectl(&reader, &["get", "nodes"])
            .unwrap()
            .contains("Ready")
    );
    let refused = kubectl(
        &reader,
        &["delete", "pod", "-n", "kube-system", "coredns-x"],
    )
    .unwrap_err();
    assert!(refused.contains("reader role may only read"), "{refused}");
    let escalate = ["--as", "admin", "--as-group", "system:masters"];
    let me = whoami(&reader, &escalate);
    assert_eq!(me["status"]["userInfo"]["username"], "drover:token:viewer");
    let groups = me["status"]["userInfo"]["groups"].to_string();
    assert!(
        groups.contains("drover:readers") && !groups.contains("system:masters"),
        "{groups}"
    );
    let refused = kubectl(
        &reader,
        &[
            "delete",
            "pod",
            "-n",
            "kube-system",
            "x",
            "--as",
            "admin",
            "--as-group",
            "system:masters",
        ],
    )
    .unwrap_err();
    assert!(refused.contains("reader role may only read"), "{refused}");

    // The refused change and the admin's change attempts are in the audit log.
    let log = drover
        .client()
        .audit_log(
            0,
            &drover_client::AuditFilter {
                action: Some("kube.".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(
        log.iter().any(|e| e.actor == "token:viewer"
            && e.action == "kube.delete"
            && e.result.starts_with("denied")),
        "{log:#?}"
    );

    // For automation: a kubeconfig holding a new key of a service account, with a TTL; the key
    // can be revoked at any time, and stops at its expiry.
    drover
        .client()
        .create_service_account(&drover_model::CreateServiceAccount {
            name: "robot".into(),
            role: Role::Reader,
            expires_at: None,
        })
        .await
        .unwrap();
    let admin_config = dir.path().join("admin.yaml");
    let automation = |file: &str| {
        let path = dir.path().join(file);
        let target = path.display().to_string();
        let args = [
            "kubeconfig",
            "prod",
            "--service-account",
            "robot",
            "--ttl",
            "1h",
            "--file",
            &target,
        ];
        drover_cli(&admin_config, &args).unwrap();
        path
    };
    let robot = automation("robot.kubeconfig");
    let text = std::fs::read_to_string(&robot).unwrap();
    assert!(
        text.contains("token: drs_") && !text.contains("exec:"),
        "{text}"
    );
    assert!(
        kubectl(&robot, &["get", "nodes"])
            .unwrap()
            .contains("Ready")
    );
    let keys =
        |accounts: Vec<drover_model::ServiceAccount>| -> Vec<drover_model::ServiceAccountKey> {
            accounts
                .into_iter()
                .find(|a| a.name == "robot")
                .unwrap()
                .keys
        };
    let issued = keys(drover.client().list_service_accounts().await.unwrap());
    let key = issued
        .iter()
        .find(|k| k.expires_at.is_some())
        .expect("the key has its TTL");
    let id = key.id.to_string();
    drover_cli(
        &admin_config,
        &["serviceaccount", "key", "revoke", "robot", &id],
    )
    .unwrap();
    let refused = kubectl(&robot, &["get", "nodes"]).unwrap_err();
    assert!(
        refused.contains("Unauthorized") || refused.contains("revoked"),
        "{refused}"
    );
    let second = automation("robot2.kubeconfig");
    assert!(kubectl(&second, &["get", "nodes"]).is_ok());
    sqlx::query("UPDATE service_account_keys SET expires_at = now() - interval '1 second' WHERE revoked_at IS NULL AND expires_at IS NOT NULL")
        .execute(drover.pool())
        .await
        .unwrap();
    let expired = kubectl(&second, &["get", "nodes"]).unwrap_err();
    assert!(
        expired.contains("Unauthorized") || expired.contains("expired"),
        "{expired}"
    );

    // A revoked credential stops working at once.
    sqlx::query("UPDATE api_tokens SET revoked_at = now() WHERE name = 'viewer'")
        .execute(drover.pool())
        .await
        .unwrap();
    let refused = kubectl(&reader, &["get", "nodes"]).unwrap_err();
    assert!(
        refused.contains("Unauthorized") || refused.contains("revoked"),
        "{refused}"
    );

    // A cluster the tenant lacks is not found, not forbidden.
    let missing = drover_cli(&dir.path().join("admin.yaml"), &["kubeconfig", "nope"]).unwrap_err();
    assert!(missing.contains("not found"), "{missing}");
    let ghost = std::fs::read_to_string(&admin)
        .unwrap()
        .replace("/clusters/prod", "/clusters/ghost");
    let ghost_file = dir.path().join("ghost.kubeconfig");
    std::fs::write(&ghost_file, ghost).unwrap();
    let refused = kubectl(&ghost_file, &["get", "nodes"]).unwrap_err();
    assert!(
        refused.contains("NotFound") || refused.contains("not found"),
        "{refused}"
    );

    cluster.stop().await;
    drover.stop().await;
}
