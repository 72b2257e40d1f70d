//! TLS for droverd's listeners (the HTTP API, the machine API, the Kubernetes and Talos API
//! proxies): a serving certificate from the operator's PEM files, re-read whenever they change,
//! or one signed by a CA Drover makes once in a directory of its data dir, which clients are then
//! given to trust; and the accepting of TLS connections.

mod incoming;
mod reload;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::ResolvesServerCert;
use rustls::sign::CertifiedKey;
use secrecy::ExposeSecret as _;

pub use incoming::incoming;
pub use reload::ReloadingCert;

/// How long a serving certificate Drover signs is valid (it is made anew at every start).
const SERVING_CERT_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: no PEM {what} found: {source}")]
    Pem {
        path: PathBuf,
        what: &'static str,
        source: rustls::pki_types::pem::Error,
    },
    #[error("{cert} and {key} do not make a usable certificate and key: {source}")]
    Pair {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
    #[error("certificate: {0}")]
    Pki(#[from] drover_pki::PkiError),
    #[error("TLS: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Where a listener's serving certificate comes from.
#[derive(Debug, Clone)]
pub enum CertSource {
    /// The operator's PEM certificate chain and private key, re-read when either changes.
    Files { cert: PathBuf, key: PathBuf },
    /// Signed by Drover's own CA `ca`, for these names; a new serving certificate at every
    /// start.
    SelfSigned {
        ca: drover_pki::CertAndKey,
        leaf_name: String,
        dns_names: Vec<String>,
        ips: Vec<IpAddr>,
    },
}

/// A listener's TLS configuration and the PEM clients should trust: the CA Drover made, or the
/// operator's certificate chain as it was at start.
pub struct ServerTls {
    pub config: Arc<ServerConfig>,
    pub ca_pem: String,
}

impl ServerTls {
    /// The TLS configuration for `source`, offering the `alpn` protocols (e.g. `h2`,
    /// `http/1.1`) in order.
    pub fn new(source: &CertSource, alpn: &[&[u8]]) -> Result<Self, TlsError> {
        let (resolver, ca_pem): (Arc<dyn ResolvesServerCert>, String) = match source {
            CertSource::Files { cert, key } => {
                let reloading = ReloadingCert::new(cert, key)?;
                (Arc::new(reloading), read(cert)?)
            }
            CertSource::SelfSigned {
                ca,
                leaf_name,
                dns_names,
                ips,
            } => {
                let names: Vec<&str> = dns_names.iter().map(String::as_str).collect();
                let serving =
                    drover_pki::server_cert(ca, leaf_name, &names, ips, SERVING_CERT_VALIDITY)?;
                let chain = format!("{}{}", serving.cert_pem, ca.cert_pem);
                let made = Path::new("the certificate Drover made");
                let key = certified_key((made, &chain), (made, serving.key_pem.expose_secret()))?;
                (Arc::new(Fixed(Arc::new(key))), ca.cert_pem.clone())
            }
        };
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(resolver);
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Self {
            config: Arc::new(config),
            ca_pem,
        })
    }
}

/// Always the same certificate.
#[derive(Debug)]
struct Fixed(Arc<CertifiedKey>);

impl ResolvesServerCert for Fixed {
    fn resolve(&self, _: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|source| TlsError::File {
        path: path.to_owned(),
        source,
    })
}

/// A certificate chain and its key from PEM text (each with the path it came from, for
/// errors), checked to belong together.
fn certified_key(
    (cert_path, chain_pem): (&Path, &str),
    (key_path, key_pem): (&Path, &str),
) -> Result<CertifiedKey, TlsError> {
    let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .and_then(|chain| {
            if chain.is_empty() {
                Err(rustls::pki_types::pem::Error::NoItemsFound)
            } else {
                Ok(chain)
            }
        })
        .map_err(|source| TlsError::Pem {
            path: cert_path.to_owned(),
            what: "certificate",
            source,
        })?;
    let key =
        PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|source| TlsError::Pem {
            path: key_path.to_owned(),
            what: "private key",
            source,
        })?;
    CertifiedKey::from_der(chain, key, &provider()).map_err(|source| TlsError::Pair {
        cert: cert_path.to_owned(),
        key: key_path.to_owned(),
        source,
    })
}
