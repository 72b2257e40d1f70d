//! The machine API over TLS with an operator-provided certificate, re-read when its files are
//! replaced.

use drover_e2e::{Extra, TestDrover};
use drover_proto::sidero::link::ProvisionRequest;
use drover_proto::sidero::link::provision_service_client::ProvisionServiceClient;
use drover_siderolink::Transport;
use drover_siderolink::keys::KeyPair;
use droverd::settings::TlsFiles;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_provision_over_tls_when_a_certificate_is_given() {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();

    let drover = TestDrover::start_with(Extra {
        machine_api_tls: Some(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        }),
        ..Extra::default()
    })
    .await;
    let url = drover.server().machine_api_url().clone();
    assert_eq!(url.transport, Transport::Tls);
    let token = drover.join_token("tls").await;
    assert!(
        token.join.kernel_args[0].starts_with("siderolink.api=https://"),
        "{}",
        token.join.kernel_args[0]
    );

    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(certified.cert.pem()))
        .domain_name("localhost");
    let channel = Endpoint::from_shared(url.connect_uri())
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .expect("TLS handshake with the configured certificate");
    let response = ProvisionServiceClient::new(channel)
        .provision(ProvisionRequest {
            node_uuid: "tls-node".into(),
            node_public_key: KeyPair::generate().public().to_base64(),
            join_token: Some(token.secret.clone()),
            node_unique_token: None,
            talos_version: Some("v1.13.8".into()),
            wireguard_over_grpc: None,
        })
        .await
        .expect("provisioned over TLS")
        .into_inner();
    assert!(
        response
            .node_address_prefix
            .starts_with("fdae:41e4:649b:9303:")
    );

    // Plaintext h2c is not served on a TLS port.
    let plaintext = Endpoint::from_shared(format!("http://{}", drover.server().machine_api_addr()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let refused = ProvisionServiceClient::new(plaintext)
        .provision(ProvisionRequest::default())
        .await;
    assert!(refused.is_err());

    // Replaced files (by rename, as cert-manager and certbot do) are served from the next
    // connection on, without a restart.
    let renewed = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    for (path, text) in [
        (&cert, renewed.cert.pem()),
        (&key, renewed.key_pair.serialize_pem()),
    ] {
        let tmp = path.with_extension("new");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }
    let trusting = |pem: String| {
        let url = url.connect_uri();
        async move {
            Endpoint::from_shared(url)
                .unwrap()
                .tls_config(
                    ClientTlsConfig::new()
                        .ca_certificate(Certificate::from_pem(pem))
                        .domain_name("localhost"),
                )
                .unwrap()
                .connect()
                .await
                .is_ok()
        }
    };
    drover_e2e::eventually(
        "the renewed certificate served",
        std::time::Duration::from_secs(10),
        || async { trusting(renewed.cert.pem()).await.then_some(()) },
    )
    .await;
    assert!(
        !trusting(certified.cert.pem()).await,
        "the old certificate is no longer served"
    );
    drover.stop().await;
}
