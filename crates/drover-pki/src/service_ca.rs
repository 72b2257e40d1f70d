//! The CAs of Drover's own services (the Kubernetes and Talos API proxies, a self-signed HTTPS
//! certificate) are made once per installation and kept sealed in the database; an older droverd
//! kept each as `ca.crt` and `ca.key` in a directory of its data dir, which a first start adopts.

use std::path::{Path, PathBuf};

use crate::CertAndKey;

#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct ServiceCaError {
    path: PathBuf,
    source: std::io::Error,
}

/// The CA an older droverd kept in `dir` (`ca.crt`, `ca.key`), if it is there.
pub fn read_service_ca(dir: &Path) -> Result<Option<CertAndKey>, ServiceCaError> {
    let (cert_path, key_path) = (dir.join("ca.crt"), dir.join("ca.key"));
    let read = |path: &Path| {
        std::fs::read_to_string(path).map_err(|source| ServiceCaError {
            path: path.to_owned(),
            source,
        })
    };
    if !cert_path.exists() {
        return Ok(None);
    }
    Ok(Some(CertAndKey {
        cert_pem: read(&cert_path)?,
        key_pem: read(&key_path)?.into(),
    }))
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret as _;

    use super::*;

    #[test]
    fn a_ca_left_in_a_directory_is_read_and_a_missing_key_named() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_service_ca(dir.path()).unwrap().is_none());
        let ca = crate::generate_service_ca("test CA", chrono::Utc::now()).unwrap();
        std::fs::write(dir.path().join("ca.crt"), &ca.cert_pem).unwrap();
        let err = read_service_ca(dir.path()).unwrap_err();
        assert!(err.to_string().contains("ca.key"), "{err}");
        std::fs::write(dir.path().join("ca.key"), ca.key_pem.expose_secret()).unwrap();
        let read = read_service_ca(dir.path()).unwrap().unwrap();
        assert_eq!(read.cert_pem, ca.cert_pem);
        assert_eq!(read.key_pem.expose_secret(), ca.key_pem.expose_secret());
    }
}
