//! TLS on the HTTP API and the Kubernetes proxy with the operator's certificate files: served
//! as given, and replaced files served without a restart.

use std::path::Path;
use std::time::Duration;

use drover_client::Client;
use drover_e2e::{Extra, TestDrover, eventually};
use droverd::settings::{HttpTls, TlsFiles};
use secrecy::ExposeSecret as _;

/// A CA and a serving certificate for 127.0.0.1 it signed, written (by rename, as operators and
/// cert-manager replace them) to `dir/<name>.crt` and `.key`; the CA's PEM.
fn issue(dir: &Path, name: &str, ca_name: &str) -> String {
    let ca = drover_pki::generate_service_ca(ca_name, chrono::Utc::now()).unwrap();
    let leaf = drover_pki::server_cert(
        &ca,
        name,
        &["localhost"],
        &["127.0.0.1".parse().unwrap()],
        Duration::from_secs(3600),
    )
    .unwrap();
    replace(&dir.join(format!("{name}.crt")), &leaf.cert_pem);
    replace(
        &dir.join(format!("{name}.key")),
        leaf.key_pem.expose_secret(),
    );
    ca.cert_pem
}

fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn files(dir: &Path, name: &str) -> TlsFiles {
    TlsFiles {
        cert: dir.join(format!("{name}.crt")),
        key: dir.join(format!("{name}.key")),
    }
}

/// Whether an HTTPS request to `url` trusting only `ca_pem` gets any HTTP answer.
async fn trusted(url: &str, ca_pem: &str) -> bool {
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    client.get(url).send().await.is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_the_operators_files_reloads_them_when_they_change() {
    let certs = tempfile::tempdir().unwrap();
    let first_ca = issue(certs.path(), "http", "first CA");
    let kube_first_ca = issue(certs.path(), "kube", "kube CA");
    let drover = TestDrover::start_with(Extra {
        http_tls: Some(HttpTls::Files(files(certs.path(), "http"))),
        kube_proxy_tls: Some(files(certs.path(), "kube")),
        ..Extra::default()
    })
    .await;
    let url = drover.http_url();
    assert!(url.starts_with("https://"), "{url}");
    assert!(
        drover.server().http_ca().is_none(),
        "the operator's files need no Drover CA"
    );

    // REST and gRPC (HTTP/2 by ALPN) over TLS, trusting the operator's CA.
    let client = Client::with_ca(
        &url,
        Some(drover.admin_token().to_owned()),
        Some(first_ca.as_bytes()),
    )
    .unwrap();
    assert!(client.all_machines().await.unwrap().is_empty());
    let channel = tonic::transport::Endpoint::from_shared(url.clone())
        .unwrap()
        .tls_config(
            tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(&first_ca))
                .domain_name("localhost"),
        )
        .unwrap()
        .connect()
        .await
        .expect("gRPC over TLS on the HTTP port");
    let mut grpc =
        drover_proto::drover::v1::machine_service_client::MachineServiceClient::new(channel);
    let err = grpc
        .list_machines(drover_proto::drover::v1::ListMachinesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err}");
    let plain = Client::new(&url.replacen("https", "http", 1), None).unwrap();
    assert!(
        plain.all_machines().await.is_err(),
        "no plain HTTP on a TLS port"
    );

    // Replaced files are served at the next handshake, with no restart.
    let second_ca = issue(certs.path(), "http", "second CA");
    let healthz = format!("{url}/healthz");
    eventually(
        "the new HTTP certificate",
        Duration::from_secs(10),
        || async { trusted(&healthz, &second_ca).await.then_some(()) },
    )
    .await;
    assert!(
        !trusted(&healthz, &first_ca).await,
        "the old certificate is gone"
    );
    let client = Client::with_ca(
        &drover.http_url(),
        Some(drover.admin_token().to_owned()),
        Some(second_ca.as_bytes()),
    )
    .unwrap();
    assert!(client.all_machines().await.unwrap().is_empty());

    // A broken pair keeps the working certificate in service.
    std::fs::write(certs.path().join("http.key"), "not a key").unwrap();
    assert!(trusted(&healthz, &second_ca).await);

    // The Kubernetes proxy reloads its files the same way.
    let kube = format!("https://{}/version", drover.server().kube_proxy_addr());
    assert!(trusted(&kube, &kube_first_ca).await);
    let kube_second_ca = issue(certs.path(), "kube", "second kube CA");
    eventually(
        "the new proxy certificate",
        Duration::from_secs(10),
        || async { trusted(&kube, &kube_second_ca).await.then_some(()) },
    )
    .await;
    drover.stop().await;
}
