//! Break-glass access: off unless droverd allows it; then only Admins get an admin kubeconfig
//! and talosconfig signed directly by the cluster's own CAs, every issuance (and refusal) is in
//! the audit log, and the cluster shows as tainted, with who and when, until its CAs rotate.

use base64::Engine as _;
use drover_client::{AuditFilter, Client};
use drover_e2e::{Extra, TestDrover, ready_cluster};
use drover_model::{BreakGlassKind, Role};
use serde_yaml_ng::Value;
use x509_parser::pem::parse_x509_pem;

fn b64_decode(v: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(v.as_str().expect("a base64 string"))
        .expect("valid base64")
}

/// Checks that `cert_pem` was signed by `ca_pem` and returns its subject's organizations and
/// common name.
fn signed_by(cert_pem: &[u8], ca_pem: &[u8]) -> (Vec<String>, String) {
    let (_, cert) = parse_x509_pem(cert_pem).expect("a PEM certificate");
    let cert = cert.parse_x509().expect("an X.509 certificate");
    let (_, ca) = parse_x509_pem(ca_pem).expect("a PEM CA");
    let ca = ca.parse_x509().expect("an X.509 CA");
    assert_eq!(cert.issuer(), ca.subject(), "issued by the cluster's CA");
    cert.verify_signature(Some(ca.public_key()))
        .expect("the signature verifies with the cluster's CA key");
    let orgs = cert
        .subject()
        .iter_organization()
        .map(|o| o.as_str().unwrap().to_owned())
        .collect();
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned();
    (orgs, cn)
}

async fn audit_results(drover: &TestDrover, action: &str) -> Vec<(String, String, String)> {
    drover
        .client()
        .audit_log(
            0,
            &AuditFilter {
                action: Some(action.to_owned()),
                ..AuditFilter::default()
            },
        )
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.actor, e.target, e.result))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn break_glass_is_refused_when_the_server_does_not_allow_it() {
    let drover = TestDrover::start().await;
    let cluster = ready_cluster(&drover, "prod", "1.13.0", "1.33.1", 1, 1).await;
    let client = drover.client();
    for kind in [BreakGlassKind::Kubeconfig, BreakGlassKind::Talosconfig] {
        let err = client.break_glass("prod", kind).await.unwrap_err();
        assert!(err.to_string().contains("--allow-break-glass"), "{err}");
    }
    let status = client.get_cluster("prod").await.unwrap().status;
    assert_eq!(status.tainted, None, "a refusal taints nothing");
    let (count,): (i64,) = sqlx::query_as("SELECT count(*) FROM break_glass_credentials")
        .fetch_one(drover.pool())
        .await
        .unwrap();
    assert_eq!(count, 0);
    let refused = audit_results(&drover, "cluster.breakGlass.").await;
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert!(
        refused
            .iter()
            .all(|(actor, target, result)| actor == "token:initial-admin"
                && target == "prod"
                && result.starts_with("refused: ")
                && result.contains("--allow-break-glass")),
        "{refused:?}"
    );
    cluster.stop().await;
    drover.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_break_glass_with_the_clusters_own_cas_and_taint_it() {
    let drover = TestDrover::start_with(Extra {
        allow_break_glass: true,
        ..Extra::default()
    })
    .await;
    let cluster = ready_cluster(&drover, "prod", "1.13.0", "1.33.1", 1, 1).await;
    let bundle = drover.cluster_bundle("prod").await;
    let client = drover.client();
    assert_eq!(
        client.get_cluster("prod").await.unwrap().status.tainted,
        None
    );

    // An Operator is refused, and taints nothing.
    let operator = Client::new(
        &drover.http_url(),
        Some(drover.api_token("ops", Role::Operator).await),
    )
    .unwrap();
    for kind in [BreakGlassKind::Kubeconfig, BreakGlassKind::Talosconfig] {
        let err = operator.break_glass("prod", kind).await.unwrap_err();
        assert!(err.to_string().contains("needs the admin role"), "{err}");
    }
    assert_eq!(
        client.get_cluster("prod").await.unwrap().status.tainted,
        None
    );

    // An Admin gets a kubeconfig with a system:masters certificate from the Kubernetes CA.
    let before = chrono::Utc::now();
    let kube = client
        .break_glass("prod", BreakGlassKind::Kubeconfig)
        .await
        .unwrap();
    let status = client.get_cluster("prod").await.unwrap().status;
    let endpoint = status.control_plane_endpoint.clone().unwrap();
    assert_eq!(kube.endpoints, vec![endpoint.clone()]);
    let config: Value = serde_yaml_ng::from_str(&kube.config).unwrap();
    assert_eq!(
        config["current-context"].as_str(),
        Some(kube.context.as_str())
    );
    assert_eq!(
        config["clusters"][0]["cluster"]["server"].as_str(),
        Some(endpoint.as_str())
    );
    let ca = b64_decode(&config["clusters"][0]["cluster"]["certificate-authority-data"]);
    assert_eq!(ca, bundle.kubernetes_ca.cert_pem.as_bytes());
    let cert = b64_decode(&config["users"][0]["user"]["client-certificate-data"]);
    let key = b64_decode(&config["users"][0]["user"]["client-key-data"]);
    assert!(String::from_utf8(key).unwrap().contains("PRIVATE KEY"));
    let (orgs, cn) = signed_by(&cert, bundle.kubernetes_ca.cert_pem.as_bytes());
    assert_eq!(orgs, vec!["system:masters".to_owned()]);
    assert_eq!(cn, "break-glass:token:initial-admin");

    // The cluster is tainted, with who and when.
    let taint = status.tainted.expect("the cluster is tainted");
    assert_eq!(taint.by, "token:initial-admin");
    assert_eq!(taint.kind, BreakGlassKind::Kubeconfig);
    assert_eq!(taint.credentials_issued, 1);
    assert!(
        taint.since >= before - chrono::Duration::seconds(5),
        "{taint:?}"
    );
    assert_eq!(kube.taint, taint);

    // And a talosconfig with an os:admin certificate from the OS CA, aimed at the control plane.
    let talos = client
        .break_glass("prod", BreakGlassKind::Talosconfig)
        .await
        .unwrap();
    let config: Value = serde_yaml_ng::from_str(&talos.config).unwrap();
    let context = &config["contexts"][talos.context.as_str()];
    let ca = b64_decode(&context["ca"]);
    assert_eq!(ca, bundle.os_ca.cert_pem.as_bytes());
    let (orgs, _) = signed_by(
        &b64_decode(&context["crt"]),
        bundle.os_ca.cert_pem.as_bytes(),
    );
    assert_eq!(orgs, vec!["os:admin".to_owned()]);
    let cp_address = endpoint
        .trim_start_matches("https://")
        .trim_end_matches(":6443")
        .to_owned();
    assert_eq!(talos.endpoints, vec![format!("{cp_address}:50000")]);
    assert_eq!(
        context["endpoints"][0].as_str(),
        Some(talos.endpoints[0].as_str())
    );

    // The taint keeps its first cause and counts both.
    let taint = client
        .get_cluster("prod")
        .await
        .unwrap()
        .status
        .tainted
        .unwrap();
    assert_eq!(taint.kind, BreakGlassKind::Kubeconfig);
    assert_eq!(taint.credentials_issued, 2);

    // Every attempt is in the audit log, refusals too.
    let kube_log = audit_results(&drover, "cluster.breakGlass.kubeconfig").await;
    assert_eq!(kube_log.len(), 2, "{kube_log:?}");
    assert_eq!(kube_log[0].0, "token:ops");
    assert!(kube_log[0].2.starts_with("denied: "), "{kube_log:?}");
    assert_eq!(
        kube_log[1],
        ("token:initial-admin".into(), "prod".into(), "ok".into())
    );
    let talos_log = audit_results(&drover, "cluster.breakGlass.talosconfig").await;
    assert_eq!(talos_log.len(), 2, "{talos_log:?}");
    assert_eq!(talos_log[1].2, "ok");
    assert!(
        talos_log.iter().all(|(_, _, r)| !r.contains("PRIVATE")),
        "no secret in the log"
    );

    // Another tenant's Admin does not see the cluster.
    let (bravo, _) = drover.create_tenant("bravo", None).await;
    for kind in [BreakGlassKind::Kubeconfig, BreakGlassKind::Talosconfig] {
        let err = bravo.break_glass("prod", kind).await.unwrap_err();
        assert!(err.to_string().contains("not found"), "{err}");
    }

    cluster.stop().await;
    drover.stop().await;
}
