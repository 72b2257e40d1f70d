//! A serving certificate from files, re-read at the first handshake after either file changed.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::{TlsError, certified_key, read};

/// What tells one version of a file from another without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

impl Stamp {
    fn of(path: &Path) -> Option<Self> {
        let meta = std::fs::metadata(path).ok()?;
        Some(Self {
            modified: meta.modified().ok(),
            len: meta.len(),
            inode: meta.ino(),
        })
    }
}

#[derive(Debug)]
struct Loaded {
    /// The files' stamps when last read (whether or not they made a usable pair).
    stamps: (Option<Stamp>, Option<Stamp>),
    key: Arc<CertifiedKey>,
}

/// The operator's certificate chain and key files (PEM). Each handshake compares the files'
/// modification time, size and inode with those last read; when they differ, the files are
/// read again. A pair that does not load (one file written, the other not yet) keeps the
/// previous certificate in service and is logged; the next change is tried again.
#[derive(Debug)]
pub struct ReloadingCert {
    cert: PathBuf,
    key: PathBuf,
    loaded: Mutex<Loaded>,
}

impl ReloadingCert {
    /// Reads the files once; they must make a usable certificate now.
    pub fn new(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let stamps = (Stamp::of(cert), Stamp::of(key));
        let certified = load(cert, key)?;
        Ok(Self {
            cert: cert.to_owned(),
            key: key.to_owned(),
            loaded: Mutex::new(Loaded {
                stamps,
                key: Arc::new(certified),
            }),
        })
    }

    /// The certificate to serve now, after reading the files again if they changed.
    pub fn current(&self) -> Arc<CertifiedKey> {
        let stamps = (Stamp::of(&self.cert), Stamp::of(&self.key));
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if loaded.stamps != stamps {
            loaded.stamps = stamps;
            match load(&self.cert, &self.key) {
                Ok(fresh) => {
                    tracing::info!(cert = %self.cert.display(), "serving the changed TLS certificate");
                    loaded.key = Arc::new(fresh);
                }
                Err(err) => tracing::warn!(
                    error = %err,
                    "the TLS certificate files changed but do not load; still serving the previous certificate"
                ),
            }
        }
        loaded.key.clone()
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

fn load(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    certified_key((cert, &read(cert)?), (key, &read(key)?))
}

#[cfg(test)]
mod tests {
    use rustls::pki_types::pem::PemObject as _;

    use super::*;

    fn write_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf, Vec<u8>) {
        use secrecy::ExposeSecret as _;
        let ca = drover_pki::generate_service_ca("test CA", chrono::Utc::now()).unwrap();
        let leaf = drover_pki::server_cert(
            &ca,
            name,
            &["localhost"],
            &[],
            std::time::Duration::from_secs(3600),
        )
        .unwrap();
        let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
        // Replaced by rename, as operators and cert-manager do.
        std::fs::write(dir.join("tmp"), &leaf.cert_pem).unwrap();
        std::fs::rename(dir.join("tmp"), &cert).unwrap();
        std::fs::write(dir.join("tmp"), leaf.key_pem.expose_secret()).unwrap();
        std::fs::rename(dir.join("tmp"), &key).unwrap();
        let der = rustls::pki_types::CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes())
            .unwrap()
            .to_vec();
        (cert, key, der)
    }

    #[test]
    fn a_replaced_pair_is_served_and_a_broken_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key, first) = write_pair(dir.path(), "first");
        let reloading = ReloadingCert::new(&cert, &key).unwrap();
        assert_eq!(reloading.current().cert[0].as_ref(), first.as_slice());

        let (_, _, second) = write_pair(dir.path(), "second");
        assert_eq!(reloading.current().cert[0].as_ref(), second.as_slice());

        std::fs::write(&key, "not a key").unwrap();
        assert_eq!(
            reloading.current().cert[0].as_ref(),
            second.as_slice(),
            "a broken pair keeps the previous certificate"
        );
        let err = ReloadingCert::new(&cert, &key).unwrap_err();
        assert!(err.to_string().contains("tls.key"), "{err}");
    }
}
