//! The proxy's CA (made once per installation, kept sealed in the database): it signs the
//! proxy's serving certificate and the client certificates of the talosconfigs Drover issues,
//! and the proxy accepts only clients whose certificate it signed.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use drover_pki::CertAndKey;
use rustls::RootCertStore;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use secrecy::ExposeSecret;

/// How long the serving certificate is valid (it is made anew at every start).
const SERVING_CERT_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("certificate: {0}")]
    Pki(#[from] drover_pki::PkiError),
    #[error("PEM: {0}")]
    Pem(#[from] rustls::pki_types::pem::Error),
    #[error("TLS: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client certificate verification: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// The proxy's TLS setup and its CA.
pub struct ProxyTls {
    pub server: Arc<ServerConfig>,
    /// The CA (with its key, to sign client certificates).
    pub ca: CertAndKey,
}

impl std::fmt::Debug for ProxyTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyTls").finish_non_exhaustive()
    }
}

impl ProxyTls {
    /// With the proxy's CA `ca`, a serving certificate for `dns_names` and `ips`; clients must
    /// present a certificate the CA signed.
    pub fn new(ca: CertAndKey, dns_names: &[&str], ips: &[IpAddr]) -> Result<Self, TlsError> {
        let serving = drover_pki::server_cert(
            &ca,
            "drover-talos-proxy",
            dns_names,
            ips,
            SERVING_CERT_VALIDITY,
        )?;
        let server = server_config(
            &ca.cert_pem,
            &format!("{}{}", serving.cert_pem, ca.cert_pem),
            serving.key_pem.expose_secret(),
        )?;
        Ok(Self { server, ca })
    }
}

fn server_config(
    ca_pem: &str,
    chain_pem: &str,
    key_pem: &str,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert?)?;
    }
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build()?;
    let chain =
        CertificateDer::pem_slice_iter(chain_pem.as_bytes()).collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    // gRPC: HTTP/2 only.
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_given_ca_signs_an_h2_serving_certificate() {
        let ca = drover_pki::generate_service_ca("test CA", chrono::Utc::now()).unwrap();
        let tls =
            ProxyTls::new(ca.clone(), &["localhost"], &["127.0.0.1".parse().unwrap()]).unwrap();
        assert_eq!(tls.ca.cert_pem, ca.cert_pem);
        assert_eq!(tls.server.alpn_protocols, vec![b"h2".to_vec()]);
    }
}
