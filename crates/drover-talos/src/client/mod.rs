//! Reaching a node's machine API (apid) over any dialer, and the calls droverd makes.
//!
//! - [`maintenance_channel`]: a node without a configuration serves apid with a self-signed
//!   certificate and asks for no client certificate; the control plane connects with
//!   verification off (section 6 of the wire facts). The TLS handshake signatures are still
//!   verified against the certificate the server presented, so the connection is encrypted to
//!   whoever holds that certificate's key.
//! - [`mtls_channel`]: a configured node serves a certificate signed by the cluster's OS CA and
//!   requires a client certificate from the same CA (see `drover_pki::talos_client_cert`).
//!
//! Both take a `dial` function, so droverd can open the TCP connection through its userspace
//! tunnel to `[node]:50000`. The typed calls ([`version`], [`apply_configuration`],
//! [`bootstrap`], [`upgrade_for`], ...) work on either channel and fail with a [`TalosError`], which keeps the
//! gRPC code (also of an error a node reports in a reply's `metadata`).

mod calls;
mod upgrade;
mod verify;

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint, Uri};

pub use self::calls::{
    NodeVersion, TalosError, apply_configuration, bootstrap, cpu_cores, disks, etcd_leave_cluster,
    etcd_member_list, etcd_remove_member_by_id, memory_mib, reset, service_list, version,
};
pub use self::upgrade::{lifecycle_upgrade, upgrade, upgrade_for};
use self::verify::{AnyServerCert, OsCaVerifier};
pub use crate::facts::DiskFact;
use crate::tls::{CredentialsError, certificates, private_key_der};

/// How long dialing plus the TLS handshake may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// SNI / server name used when the authority's host is neither an IP address nor a DNS name.
const FALLBACK_SERVER_NAME: &str = "talos";

/// Why an mTLS channel could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// `authority` is not a valid URI authority.
    #[error("invalid authority: {0}")]
    Authority(#[from] tonic::transport::Error),
    /// The CA, the client certificate or its key is unusable.
    #[error("TLS credentials: {0}")]
    Credentials(#[from] CredentialsError),
}

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
    channel(dial, insecure_client_config(), authority)
}

/// A gRPC channel to a configured node's apid: HTTP/2 over mutual TLS. The server certificate
/// must chain to the OS CA `ca_pem`; the client presents `client_cert_pem` (signed by the same
/// CA; its Organization is its role) with its key `client_key_pem` (PEM as Talos and
/// `drover-pki` write it: `ED25519 PRIVATE KEY`, or `PRIVATE KEY` / `EC PRIVATE KEY`).
///
/// The server's *name* is not checked, only its chain. A Talos server certificate carries
/// the addresses and hostname the node knew when it was issued, which need not include the
/// tunnel address droverd dials (and a worker's certificate comes from trustd, renewed on the
/// node's schedule). Only nodes of the cluster hold a certificate signed by its OS CA (trustd
/// issues them only to nodes with the cluster's trustd token), and the tunnel already
/// authenticates which machine is at the other end (WireGuard key, anti-spoofing at the hub),
/// so checking the chain is what identifies "a node of this cluster"; the address does the
/// rest. Handshake signatures are verified as usual.
///
/// Like [`maintenance_channel`], the channel is lazy and reconnects by itself. Fails when
/// `authority` is invalid or a credential is unusable.
pub fn mtls_channel<D, F, IO>(
    dial: D,
    authority: &str,
    ca_pem: &str,
    client_cert_pem: &str,
    client_key_pem: &str,
) -> Result<Channel, ChannelError>
where
    D: Fn() -> F + Clone + Send + Sync + 'static,
    F: Future<Output = io::Result<IO>> + Send + 'static,
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let config = mtls_client_config(ca_pem, client_cert_pem, client_key_pem)?;
    Ok(channel(dial, config, authority)?)
}

fn channel<D, F, IO>(
    dial: D,
    config: ClientConfig,
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
    Ok(endpoint.connect_with_connector_lazy(ApidConnector::new(dial, config)))
}

/// The tower connector behind both channels: dials, then does the TLS itself (the endpoint's
/// URI is `http://`).
#[derive(Clone)]
struct ApidConnector<D> {
    dial: D,
    tls: TlsConnector,
}

impl<D> ApidConnector<D> {
    fn new(dial: D, config: ClientConfig) -> Self {
        Self {
            dial,
            tls: TlsConnector::from(Arc::new(config)),
        }
    }
}

impl<D, F, IO> tower_service::Service<Uri> for ApidConnector<D>
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

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// rustls client config: ring provider, TLS 1.2/1.3, ALPN `h2`, any server certificate,
/// no client certificate.
fn insecure_client_config() -> ClientConfig {
    let provider = provider();
    let verifier = AnyServerCert::new(provider.signature_verification_algorithms);
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    config
}

/// rustls client config: ring provider, TLS 1.2/1.3, ALPN `h2`, server chain checked against
/// the OS CA (not the name, see [`mtls_channel`]), the client certificate presented.
fn mtls_client_config(
    ca_pem: &str,
    client_cert_pem: &str,
    client_key_pem: &str,
) -> Result<ClientConfig, CredentialsError> {
    let mut roots = RootCertStore::empty();
    for ca in certificates(ca_pem)? {
        roots.add(ca)?;
    }
    let chain = certificates(client_cert_pem)?;
    let key = private_key_der(client_key_pem)?;
    let provider = provider();
    let verifier = OsCaVerifier::new(roots, provider.signature_verification_algorithms);
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_auth_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn unusable_credentials_are_refused_up_front() {
        let dial = || async { Ok::<_, io::Error>(tokio::io::duplex(64).0) };
        let err = mtls_channel(dial, "[fdae::5]:50000", "junk", "junk", "junk").unwrap_err();
        assert!(matches!(err, ChannelError::Credentials(_)), "{err}");
    }
}
