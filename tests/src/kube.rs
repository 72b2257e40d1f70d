//! Reaching an emulated cluster's Kubernetes API from a test with the real `kubectl`.

use std::time::Duration;

use crate::TestDrover;

/// A kubeconfig for the cluster's API server on `address`, reached through a loopback
/// forwarder into droverd's tunnel, with an admin client certificate from the cluster's CA.
pub async fn kubeconfig_through_tunnel(
    drover: &TestDrover,
    bundle: &drover_pki::SecretsBundle,
    address: &str,
) -> tempfile::NamedTempFile {
    use base64::Engine;
    use secrecy::ExposeSecret;
    let hub = drover.server().dataplane().hub().clone();
    let target = std::net::SocketAddrV6::new(address.parse().unwrap(), 6443, 0, 0);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut local, _)) = listener.accept().await {
            let hub = hub.clone();
            tokio::spawn(async move {
                if let Ok(mut remote) = hub.connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut local, &mut remote).await;
                }
            });
        }
    });
    let cert = drover_pki::kubernetes_client_cert(
        &bundle.kubernetes_ca,
        "admin",
        &["system:masters"],
        Duration::from_secs(3600),
    )
    .unwrap();
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: prod\n  cluster:\n    server: https://127.0.0.1:{port}\n    tls-server-name: kubernetes\n    certificate-authority-data: {}\nusers:\n- name: admin\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: prod\n  context: {{cluster: prod, user: admin}}\ncurrent-context: prod\n",
        b64(&bundle.kubernetes_ca.cert_pem),
        b64(&cert.cert_pem),
        b64(cert.key_pem.expose_secret()),
    );
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), text).unwrap();
    file
}

/// Runs the real kubectl; its stdout.
pub fn kubectl(kubeconfig: &tempfile::NamedTempFile, args: &[&str]) -> String {
    let out = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig.path())
        .args(args)
        .output()
        .expect("kubectl is installed (scripts/install-prereqs --for-tests)");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

impl TestDrover {
    /// The cluster `name`'s secrets bundle, opened as droverd opens it.
    pub async fn cluster_bundle(&self, name: &str) -> drover_pki::SecretsBundle {
        let uid: uuid::Uuid = sqlx::query_scalar("SELECT uid FROM clusters WHERE name = $1")
            .bind(name)
            .fetch_one(self.pool())
            .await
            .unwrap();
        let service = self.server().service();
        let tenant = service
            .authenticate(Some(self.admin_token()))
            .await
            .unwrap()
            .tenant();
        service.open_bundle(tenant, name, uid).await.unwrap()
    }
}
