//! The proxy's serving certificate: the operator's files, or one Drover signs with its own CA
//! (kept in `<data-dir>/kube-proxy/`, made at first start), which kubeconfigs then trust.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use secrecy::ExposeSecret;

/// How long a serving certificate Drover signs is valid (it is made anew at every start).
const SERVING_CERT_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("certificate: {0}")]
    Pki(#[from] drover_pki::PkiError),
    #[error("the proxy's CA: {0}")]
    Ca(#[from] drover_pki::ServiceCaError),
    #[error("PEM: {0}")]
    Pem(#[from] rustls::pki_types::pem::Error),
    #[error("TLS: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The proxy's TLS setup and the CA clients should trust.
pub struct ProxyTls {
    pub server: Arc<ServerConfig>,
    /// The PEM of the CA that signed the serving certificate (the operator's chain for their
    /// own files).
    pub ca_pem: String,
}

fn read(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|source| TlsError::File {
        path: path.to_owned(),
        source,
    })
}

impl ProxyTls {
    /// From the operator's certificate (chain) and key files.
    pub fn from_files(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let cert_pem = read(cert)?;
        let key_pem = read(key)?;
        Ok(Self {
            server: server_config(&cert_pem, &key_pem)?,
            ca_pem: cert_pem,
        })
    }

    /// With Drover's own CA in `dir` (created on first use), a serving certificate for
    /// `dns_names` and `ips`.
    pub fn self_signed(dir: &Path, dns_names: &[&str], ips: &[IpAddr]) -> Result<Self, TlsError> {
        let ca = drover_pki::load_or_create_service_ca(dir, "drover kube proxy CA")?;
        let serving = drover_pki::server_cert(
            &ca,
            "drover-kube-proxy",
            dns_names,
            ips,
            SERVING_CERT_VALIDITY,
        )?;
        Ok(Self {
            server: server_config(
                &format!("{}{}", serving.cert_pem, ca.cert_pem),
                serving.key_pem.expose_secret(),
            )?,
            ca_pem: ca.cert_pem,
        })
    }
}

fn server_config(chain_pem: &str, key_pem: &str) -> Result<Arc<ServerConfig>, TlsError> {
    let chain =
        CertificateDer::pem_slice_iter(chain_pem.as_bytes()).collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())?;
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
    // HTTP/1.1 only: watches stream as chunked responses.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ca_is_made_once_and_its_key_is_owner_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let first = ProxyTls::self_signed(dir.path(), &["localhost"], &[]).unwrap();
        let again =
            ProxyTls::self_signed(dir.path(), &["localhost"], &["127.0.0.1".parse().unwrap()])
                .unwrap();
        assert_eq!(first.ca_pem, again.ca_pem, "the CA survives restarts");
        let mode = std::fs::metadata(dir.path().join("ca.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(
            ProxyTls::from_files(&dir.path().join("nope.crt"), &dir.path().join("ca.key"))
                .is_err_and(|e| e.to_string().contains("nope.crt"))
        );
    }
}
