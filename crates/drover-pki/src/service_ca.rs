//! The CAs of Drover's own services (the Kubernetes and Talos API proxies): made once, kept as
//! `ca.crt` and `ca.key` (owner-only) in a directory of the data dir, and loaded at every start.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use secrecy::ExposeSecret as _;

use crate::{CertAndKey, PkiError, generate_service_ca};

#[derive(Debug, thiserror::Error)]
pub enum ServiceCaError {
    #[error("{path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Pki(#[from] PkiError),
}

fn file_error(path: &Path) -> impl FnOnce(std::io::Error) -> ServiceCaError + '_ {
    move |source| ServiceCaError::File {
        path: path.to_owned(),
        source,
    }
}

/// The CA in `dir`, made (CN = `common_name`) on first use.
pub fn load_or_create_service_ca(
    dir: &Path,
    common_name: &str,
) -> Result<CertAndKey, ServiceCaError> {
    let (cert_path, key_path) = (dir.join("ca.crt"), dir.join("ca.key"));
    if !cert_path.exists() {
        std::fs::create_dir_all(dir).map_err(file_error(dir))?;
        let ca = generate_service_ca(common_name, chrono::Utc::now())?;
        let mut key = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&key_path)
            .map_err(file_error(&key_path))?;
        key.write_all(ca.key_pem.expose_secret().as_bytes())
            .map_err(file_error(&key_path))?;
        std::fs::write(&cert_path, &ca.cert_pem).map_err(file_error(&cert_path))?;
    }
    Ok(CertAndKey {
        cert_pem: std::fs::read_to_string(&cert_path).map_err(file_error(&cert_path))?,
        key_pem: std::fs::read_to_string(&key_path)
            .map_err(file_error(&key_path))?
            .into(),
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn the_ca_is_made_once_and_its_key_is_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create_service_ca(&dir.path().join("ca"), "test CA").unwrap();
        let again = load_or_create_service_ca(&dir.path().join("ca"), "test CA").unwrap();
        assert_eq!(first.cert_pem, again.cert_pem, "the CA survives restarts");
        let mode = std::fs::metadata(dir.path().join("ca/ca.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
