//! Reaching a node's machine API (apid) in **maintenance mode**.
//!
//! A Talos node without a configuration serves apid with a self-signed certificate and asks
//! for no client certificate; the control plane connects with verification off (section 6 of
//! the wire facts). [`maintenance_channel`] builds such a gRPC channel over any dialer, so
//! droverd can open the TCP connection through its userspace tunnel to `[node]:50000`.
//!
//! Server-certificate *chain and name* checks are skipped, but the TLS handshake signatures
//! are still verified against the certificate the server presented, so the connection is
//! encrypted to whoever holds that certificate's key.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsConnector;
use tonic::Status;
use tonic::transport::{Channel, Endpoint, Uri};

pub use crate::facts::DiskFact;
use crate::proto::common::Metadata;
use crate::proto::machine::machine_service_client::MachineServiceClient;
use crate::proto::storage::storage_service_client::StorageServiceClient;

/// How long dialing plus the TLS handshake may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// SNI / server name used when the authority's host is neither an IP address nor a DNS name.
const FALLBACK_SERVER_NAME: &str = "talos";

/// A gRPC channel to a node's apid in maintenance mode: HTTP/2 over TLS (ALPN `h2`) without
/// server-certificate verification and without a client certificate.
///
/// `dial` opens a new TCP-like connection each time the channel (re)connects, e.g. through
/// the tunnel to `[node]:50000`. `authority` (`host:port`, IPv6 in brackets) becomes the
/// `:authority` of the requests and the TLS server name. The channel is lazy: nothing is
/// dialed until the first call, and it reconnects by itself after a failure.
///
/// Fails only when `authority` is not a valid URI authority.
pub fn maintenance_channel<D, F, IO>(
    dial: D,
    authority: &str,
) -> Result<Channel, tonic::transport::Error>
where
    D: Fn() -> F + Clone + Send + Sync + 'static,
    F: Future<Output = io::Result<IO>> + Send + 'static,
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let endpoint = Endpoint::from_shared(format!("http://{authority}"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20));
    Ok(endpoint.connect_with_connector_lazy(MaintenanceConnector::new(dial)))
}

/// The tower connector behind [`maintenance_channel`], for callers that want to configure
/// their own [`Endpoint`] (use an `http://` URI: the connector does the TLS itself).
#[derive(Clone)]
pub struct MaintenanceConnector<D> {
    dial: D,
    tls: TlsConnector,
}

impl<D> MaintenanceConnector<D> {
    /// A connector dialing with `dial` and speaking unverified TLS on top.
    pub fn new(dial: D) -> Self {
        Self {
            dial,
            tls: TlsConnector::from(Arc::new(insecure_client_config())),
        }
    }
}

impl<D, F, IO> tower_service::Service<Uri> for MaintenanceConnector<D>
where
    D: Fn() -> F + Clone + Send + Sync + 'static,
    F: Future<Output = io::Result<IO>> + Send + 'static,
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Response = TokioIo<tokio_rustls::client::TlsStream<IO>>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connect = (self.dial)();
        let tls = self.tls.clone();
        let name = server_name(&uri);
        Box::pin(async move {
            let io = connect.await?;
            let stream = tls.connect(name, io).await?;
            Ok(TokioIo::new(stream))
        })
    }
}

/// The TLS server name for `uri`'s host: an IP address (no SNI sent) or a DNS name.
fn server_name(uri: &Uri) -> ServerName<'static> {
    let host = uri
        .host()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']');
    ServerName::try_from(host.to_string())
        .unwrap_or_else(|_| ServerName::try_from(FALLBACK_SERVER_NAME).expect("valid DNS name"))
}

/// rustls client config: ring provider, TLS 1.2/1.3, ALPN `h2`, any server certificate,
/// no client certificate.
fn insecure_client_config() -> ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = AnyServerCert {
        algorithms: provider.signature_verification_algorithms,
    };
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    config
}

/// Accepts any server certificate (maintenance mode is self-signed) but still checks that the
/// handshake was signed by that certificate's key.
#[derive(Debug)]
struct AnyServerCert {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// What `MachineService.Version` says about a node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeVersion {
    /// Talos version tag, e.g. `v1.13.8`.
    pub tag: String,
    pub sha: String,
    pub arch: String,
    /// Platform name, e.g. `metal`.
    pub platform_name: String,
    /// `metal`, `cloud` or `container`.
    pub platform_mode: String,
    /// `metadata.hostname` of the reply.
    pub hostname: String,
}

/// `MachineService.Version` of the node behind `channel`.
pub async fn version(channel: &Channel) -> Result<NodeVersion, Status> {
    let reply = MachineServiceClient::new(channel.clone())
        .version(())
        .await?
        .into_inner();
    let item = first(reply.messages, "Version")?;
    check(item.metadata.as_ref())?;
    let version = item.version.unwrap_or_default();
    let platform = item.platform.unwrap_or_default();
    Ok(NodeVersion {
        tag: version.tag,
        sha: version.sha,
        arch: version.arch,
        platform_name: platform.name,
        platform_mode: platform.mode,
        hostname: item.metadata.map(|m| m.hostname).unwrap_or_default(),
    })
}

/// `StorageService.Disks` of the node behind `channel`.
pub async fn disks(channel: &Channel) -> Result<Vec<DiskFact>, Status> {
    let reply = StorageServiceClient::new(channel.clone())
        .disks(())
        .await?
        .into_inner();
    let item = first(reply.messages, "Disks")?;
    check(item.metadata.as_ref())?;
    Ok(item
        .disks
        .into_iter()
        .map(|d| DiskFact {
            device_name: d.device_name,
            size: d.size,
            model: d.model,
            serial: d.serial,
            system_disk: d.system_disk,
        })
        .collect())
}

/// `MachineService.ServiceList` of the node behind `channel`, as `(id, state, healthy)`.
pub async fn services(channel: &Channel) -> Result<Vec<(String, String, bool)>, Status> {
    let reply = MachineServiceClient::new(channel.clone())
        .service_list(())
        .await?
        .into_inner();
    let item = first(reply.messages, "ServiceList")?;
    check(item.metadata.as_ref())?;
    Ok(item
        .services
        .into_iter()
        .map(|s| {
            let healthy = s.health.is_some_and(|h| h.healthy);
            (s.id, s.state, healthy)
        })
        .collect())
}

/// The first item of a `repeated Xxx messages = 1` reply (a direct call has exactly one).
fn first<T>(messages: Vec<T>, call: &str) -> Result<T, Status> {
    messages
        .into_iter()
        .next()
        .ok_or_else(|| Status::internal(format!("{call}: the node sent an empty reply")))
}

/// Turns a per-node error carried in `metadata` into a `Status`.
fn check(metadata: Option<&Metadata>) -> Result<(), Status> {
    let Some(metadata) = metadata else {
        return Ok(());
    };
    if let Some(status) = &metadata.status
        && status.code != 0
    {
        return Err(Status::new(
            tonic::Code::from_i32(status.code),
            status.message.clone(),
        ));
    }
    if !metadata.error.is_empty() {
        return Err(Status::unknown(metadata.error.clone()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::google::rpc::Status as RpcStatus;

    #[test]
    fn server_names() {
        let uri: Uri = "http://[fdae:41e4:649b:9303::1]:50000".parse().unwrap();
        assert!(matches!(server_name(&uri), ServerName::IpAddress(_)));
        let uri: Uri = "http://127.0.0.1:50000".parse().unwrap();
        assert!(matches!(server_name(&uri), ServerName::IpAddress(_)));
        let uri: Uri = "http://node-1.example:50000".parse().unwrap();
        assert!(matches!(server_name(&uri), ServerName::DnsName(_)));
    }

    #[test]
    fn metadata_errors_become_statuses() {
        assert!(check(None).is_ok());
        assert!(check(Some(&Metadata::default())).is_ok());
        let err = check(Some(&Metadata {
            error: "boom".into(),
            ..Default::default()
        }))
        .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unknown);
        let err = check(Some(&Metadata {
            status: Some(RpcStatus {
                code: tonic::Code::PermissionDenied as i32,
                message: "no".into(),
                details: vec![],
            }),
            ..Default::default()
        }))
        .unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied);
        assert_eq!(err.message(), "no");
    }
}
