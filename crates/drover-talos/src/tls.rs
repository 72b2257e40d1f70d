//! TLS material in the PEM forms Talos (and `drover-pki`) write, read for rustls and tonic.
//!
//! Talos writes Ed25519 private keys as `ED25519 PRIVATE KEY` blocks with PKCS#8 content;
//! rustls and tonic only recognise PKCS#8 under the standard `PRIVATE KEY` tag, so such keys are
//! re-tagged before use. `EC PRIVATE KEY` (SEC1) and `RSA PRIVATE KEY` (PKCS#1) are standard.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
};

/// A certificate or key that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("invalid PEM: {0}")]
    Pem(#[from] pem::PemError),
    #[error("invalid certificate PEM: {0}")]
    Certificate(String),
    #[error("no certificate in the PEM text")]
    NoCertificate,
    #[error("unsupported private key PEM type {0:?}")]
    KeyType(String),
    #[error("unusable TLS credentials: {0}")]
    Tls(#[from] rustls::Error),
}

/// The private key of a PEM block, whatever tag Talos gave it.
pub(crate) fn private_key_der(key_pem: &str) -> Result<PrivateKeyDer<'static>, CredentialsError> {
    let block = pem::parse(key_pem)?;
    let tag = block.tag().to_owned();
    let der = block.into_contents();
    match tag.as_str() {
        "PRIVATE KEY" | "ED25519 PRIVATE KEY" => Ok(PrivatePkcs8KeyDer::from(der).into()),
        "EC PRIVATE KEY" => Ok(PrivateSec1KeyDer::from(der).into()),
        "RSA PRIVATE KEY" => Ok(PrivatePkcs1KeyDer::from(der).into()),
        _ => Err(CredentialsError::KeyType(tag)),
    }
}

/// The same key as PEM text tonic can read (`ED25519 PRIVATE KEY` becomes `PRIVATE KEY`).
pub(crate) fn standard_key_pem(key_pem: &str) -> Result<String, CredentialsError> {
    let block = pem::parse(key_pem)?;
    if block.tag() != "ED25519 PRIVATE KEY" {
        // Validates the tag; the text is fine as it is.
        private_key_der(key_pem)?;
        return Ok(key_pem.to_owned());
    }
    Ok(pem::encode(&pem::Pem::new(
        "PRIVATE KEY",
        block.into_contents(),
    )))
}

/// Every certificate of a PEM text, in order; at least one.
pub(crate) fn certificates(pem: &str) -> Result<Vec<CertificateDer<'static>>, CredentialsError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CredentialsError::Certificate(e.to_string()))?;
    if certs.is_empty() {
        return Err(CredentialsError::NoCertificate);
    }
    Ok(certs)
}

/// tonic builds its rustls server config with the process-wide default crypto provider; make
/// sure there is one (ring, the only backend this workspace compiles) instead of panicking
/// should another dependency ever enable a second backend.
pub(crate) fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing the race to another thread installing one is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED25519_KEY: &str = "-----BEGIN ED25519 PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g
-----END ED25519 PRIVATE KEY-----
";

    #[test]
    fn talos_ed25519_keys_are_read_as_pkcs8() {
        assert!(matches!(
            private_key_der(ED25519_KEY).unwrap(),
            PrivateKeyDer::Pkcs8(_)
        ));
        let standard = standard_key_pem(ED25519_KEY).unwrap();
        assert!(standard.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(PrivateKeyDer::from_pem_slice(standard.as_bytes()).is_ok());
        assert!(matches!(
            private_key_der(
                "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n"
            ),
            Err(CredentialsError::KeyType(_))
        ));
        assert!(matches!(
            certificates("nothing here"),
            Err(CredentialsError::NoCertificate)
        ));
    }
}
