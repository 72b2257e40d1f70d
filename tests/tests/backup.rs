//! Backup and restore of Drover itself with the real `droverd backup` / `droverd restore`: a
//! backup made while droverd runs, restored into a fresh data dir with the key-encryption key
//! put back, gives a droverd that has the clusters, machines and credentials of the first and
//! can still open the cluster's sealed secrets.

use std::path::Path;

use drover_e2e::{Extra, TestDrover, binary, ready_cluster};
use drover_model::BreakGlassKind;
use serde_yaml_ng::Value;

/// Runs `droverd --data-dir DIR ARGS`: its stdout, or its stderr as the error.
fn droverd(data_dir: &Path, args: &[&str]) -> Result<String, String> {
    let out = std::process::Command::new(binary("droverd"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("DROVER_DATABASE_URL")
        .env_remove("DROVER_MASTER_KEY")
        .env("RUST_LOG", "warn")
        .output()
        .expect("droverd runs");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The cluster CA and the client certificate of a break-glass kubeconfig.
fn ca_and_cert(kubeconfig: &str) -> (Vec<u8>, Vec<u8>) {
    use base64::Engine as _;
    let config: Value = serde_yaml_ng::from_str(kubeconfig).unwrap();
    let decode = |v: &Value| {
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap()
    };
    (
        decode(&config["clusters"][0]["cluster"]["certificate-authority-data"]),
        decode(&config["users"][0]["user"]["client-certificate-data"]),
    )
}

fn assert_signed_by(cert_pem: &[u8], ca_pem: &[u8]) {
    use x509_parser::pem::parse_x509_pem;
    let (_, cert) = parse_x509_pem(cert_pem).unwrap();
    let cert = cert.parse_x509().unwrap();
    let (_, ca) = parse_x509_pem(ca_pem).unwrap();
    let ca = ca.parse_x509().unwrap();
    cert.verify_signature(Some(ca.public_key()))
        .expect("signed with the cluster CA's key, opened from the restored sealed secrets");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_restored_into_a_fresh_data_dir_keeps_clusters_machines_and_sealed_secrets() {
    let extra = Extra {
        allow_break_glass: true,
        ..Extra::default()
    };
    let first = TestDrover::start_with(extra.clone()).await;
    let cluster = ready_cluster(&first, "kept", "1.13.0", "1.33.1", 1, 1).await;
    let client = first.client();
    let machines = client.all_machines().await.unwrap();
    let spec = client.get_cluster("kept").await.unwrap().spec;
    let machine = machines[0].id.to_string();
    let config = client.machine_config("kept", &machine).await.unwrap();
    let issued = client
        .break_glass("kept", BreakGlassKind::Kubeconfig)
        .await
        .unwrap();
    let (cluster_ca, _) = ca_and_cert(&issued.config);

    // Backed up while droverd runs.
    let backups = tempfile::tempdir().unwrap();
    let archive = backups.path().join("drover.dump");
    let archive_arg = archive.to_str().unwrap();
    let said = droverd(first.data_dir(), &["backup", "--out", archive_arg]).unwrap();
    assert!(
        said.contains("master.key"),
        "the backup names the key to keep: {said}"
    );
    let kek = std::fs::read(first.data_dir().join("master.key")).unwrap();
    let admin = first.admin_token().to_owned();
    cluster.stop().await;
    first.stop().await;

    // A fresh data dir: refused until the key-encryption key is back, then restored.
    let fresh = tempfile::Builder::new()
        .prefix("drover-e2e-restored-")
        .tempdir()
        .unwrap();
    let err = droverd(fresh.path(), &["restore", archive_arg]).unwrap_err();
    assert!(err.contains("master.key"), "{err}");
    std::fs::write(fresh.path().join("master.key"), &kek).unwrap();
    droverd(fresh.path(), &["restore", archive_arg]).unwrap();
    let err = droverd(fresh.path(), &["restore", archive_arg]).unwrap_err();
    assert!(err.contains("already holds Drover's data"), "{err}");

    // Another key than the backup's is caught.
    let wrong = tempfile::tempdir().unwrap();
    drover_seal::Kek::load_or_create(&wrong.path().join("master.key")).unwrap();
    let err = droverd(wrong.path(), &["restore", archive_arg]).unwrap_err();
    assert!(
        err.contains("wrapped by key-encryption key")
            && err.contains("put the backup's master.key"),
        "{err}"
    );

    // The restored droverd knows the admin token, the machines and the cluster, and opens the
    // cluster's sealed secrets: the same config renders, the cluster CA signs a new credential.
    let restored = TestDrover::start_on(fresh, admin, extra).await;
    let client = restored.client();
    let mut ids: Vec<_> = client
        .all_machines()
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    ids.sort();
    let mut before: Vec<_> = machines.iter().map(|m| m.id.clone()).collect();
    before.sort();
    assert_eq!(ids, before);
    assert_eq!(client.get_cluster("kept").await.unwrap().spec, spec);
    let again = client.machine_config("kept", &machine).await.unwrap();
    assert_eq!(again.redacted, config.redacted);
    let issued = client
        .break_glass("kept", BreakGlassKind::Kubeconfig)
        .await
        .unwrap();
    let (ca, cert) = ca_and_cert(&issued.config);
    assert_eq!(ca, cluster_ca, "the cluster keeps its CA");
    assert_signed_by(&cert, &ca);
    restored.stop().await;
}
