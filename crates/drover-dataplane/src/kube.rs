//! Talking to a cluster's Kubernetes API through a control plane's tunnel: whether it is ready,
//! reading objects, and patching the add-ons an upgrade moves.

use std::net::{Ipv6Addr, SocketAddrV6};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::{MachineDialer, MachineStream};

/// The port the Kubernetes API server listens on.
pub const KUBERNETES_API_PORT: u16 = 6443;

/// The name the API server's certificate carries for in-cluster clients, checked instead of
/// the tunnel address.
const SERVER_NAME: &str = "kubernetes";

/// How long one probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a probe did not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("unusable credentials: {0}")]
    Credentials(String),
    #[error("cannot reach the Kubernetes API: {0}")]
    Unreachable(String),
    #[error("the Kubernetes API did not answer in time")]
    Timeout,
}

/// Client credentials for a cluster's Kubernetes API: its CA and a client certificate it signed.
pub struct KubernetesCredentials {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: secrecy::SecretString,
}

/// `GET /readyz` on the API server at `[address]:6443`, with TLS verified against the cluster's
/// Kubernetes CA and a client certificate. Returns whether it answered 200.
pub async fn readyz(
    dialer: &MachineDialer,
    address: Ipv6Addr,
    credentials: &KubernetesCredentials,
) -> Result<bool, ProbeError> {
    let (status, _) = call(dialer, address, credentials, Call::get("/readyz")).await?;
    Ok(status == hyper::StatusCode::OK)
}

/// `GET path` on the API server, as JSON; an answer other than 200 is an error.
pub async fn get_json(
    dialer: &MachineDialer,
    address: Ipv6Addr,
    credentials: &KubernetesCredentials,
    path: &str,
) -> Result<serde_json::Value, ProbeError> {
    json(dialer, address, credentials, Call::get(path)).await
}

/// A strategic merge patch of the object at `path` (`PATCH`, as `kubectl patch` sends it);
/// returns the patched object.
pub async fn strategic_merge_patch(
    dialer: &MachineDialer,
    address: Ipv6Addr,
    credentials: &KubernetesCredentials,
    path: &str,
    patch: &serde_json::Value,
) -> Result<serde_json::Value, ProbeError> {
    let call = Call {
        method: hyper::Method::PATCH,
        path,
        body: Some(("application/strategic-merge-patch+json", patch.to_string())),
    };
    json(dialer, address, credentials, call).await
}

/// One request to the API server.
struct Call<'a> {
    method: hyper::Method,
    path: &'a str,
    /// Content type and body.
    body: Option<(&'static str, String)>,
}

impl<'a> Call<'a> {
    fn get(path: &'a str) -> Self {
        Self {
            method: hyper::Method::GET,
            path,
            body: None,
        }
    }
}

/// The JSON answer of `call`; an answer other than 200 is an error naming the call.
async fn json(
    dialer: &MachineDialer,
    address: Ipv6Addr,
    credentials: &KubernetesCredentials,
    call: Call<'_>,
) -> Result<serde_json::Value, ProbeError> {
    let what = format!("{} {}", call.method, call.path);
    let (status, body) = self::call(dialer, address, credentials, call).await?;
    if status != hyper::StatusCode::OK {
        let message = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|status| status["message"].as_str().map(str::to_owned))
            .unwrap_or_default();
        return Err(ProbeError::Unreachable(format!(
            "{what}: {status} {message}"
        )));
    }
    serde_json::from_slice(&body).map_err(|e| ProbeError::Unreachable(format!("{what}: {e}")))
}

async fn call(
    dialer: &MachineDialer,
    address: Ipv6Addr,
    credentials: &KubernetesCredentials,
    call: Call<'_>,
) -> Result<(hyper::StatusCode, bytes::Bytes), ProbeError> {
    let config = Arc::new(client_config(credentials)?);
    tokio::time::timeout(PROBE_TIMEOUT, request(dialer, address, config, call))
        .await
        .map_err(|_| ProbeError::Timeout)?
}

async fn request(
    dialer: &MachineDialer,
    address: Ipv6Addr,
    config: Arc<ClientConfig>,
    call: Call<'_>,
) -> Result<(hyper::StatusCode, bytes::Bytes), ProbeError> {
    use http_body_util::BodyExt;
    let unreachable = |e: &dyn std::fmt::Display| ProbeError::Unreachable(e.to_string());
    let tls = tls_stream(dialer, address, config).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| unreachable(&e))?;
    let driver = tokio::spawn(connection);
    let mut request = hyper::Request::builder()
        .method(call.method)
        .uri(call.path)
        .header(hyper::header::HOST, SERVER_NAME);
    let body = match call.body {
        Some((content_type, body)) => {
            request = request.header(hyper::header::CONTENT_TYPE, content_type);
            body
        }
        None => String::new(),
    };
    let request = request
        .body(Full::new(bytes::Bytes::from(body)))
        .map_err(|e| unreachable(&e))?;
    let result = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| unreachable(&e))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| unreachable(&e))?
            .to_bytes();
        Ok((status, body))
    }
    .await;
    driver.abort();
    result
}

/// A TLS connection, through the tunnel, to the API server at `[address]:6443`, verified against
/// the cluster's Kubernetes CA and authenticated with the client certificate of `credentials`
/// (for a proxy that speaks HTTP over it itself).
pub async fn connect(
    dialer: &MachineDialer,
    address: Ipv6Addr,
    credentials: &KubernetesCredentials,
) -> Result<TlsStream<MachineStream>, ProbeError> {
    let config = Arc::new(client_config(credentials)?);
    tokio::time::timeout(PROBE_TIMEOUT, tls_stream(dialer, address, config))
        .await
        .map_err(|_| ProbeError::Timeout)?
}

async fn tls_stream(
    dialer: &MachineDialer,
    address: Ipv6Addr,
    config: Arc<ClientConfig>,
) -> Result<TlsStream<MachineStream>, ProbeError> {
    let unreachable = |e: &dyn std::fmt::Display| ProbeError::Unreachable(e.to_string());
    let stream = dialer
        .dial(SocketAddrV6::new(address, KUBERNETES_API_PORT, 0, 0))
        .await
        .map_err(|e| unreachable(&e))?;
    let name = ServerName::try_from(SERVER_NAME).expect("a valid DNS name");
    TlsConnector::from(config)
        .connect(name, stream)
        .await
        .map_err(|e| unreachable(&e))
}

fn client_config(credentials: &KubernetesCredentials) -> Result<ClientConfig, ProbeError> {
    use secrecy::ExposeSecret;
    let bad = |e: &dyn std::fmt::Display| ProbeError::Credentials(e.to_string());
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(credentials.ca_pem.as_bytes()) {
        roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
    }
    let chain = CertificateDer::pem_slice_iter(credentials.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(&e))?;
    let key = PrivateKeyDer::from_pem_slice(credentials.key_pem.expose_secret().as_bytes())
        .map_err(|e| bad(&e))?;
    let mut config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| bad(&e))?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| bad(&e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
