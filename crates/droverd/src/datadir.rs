//! Files in the data dir: created owner-only, read back on later starts.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use drover_siderolink::keys::KeyPair;

pub const WIREGUARD_KEY_FILE: &str = "wireguard.key";
pub const INITIAL_ADMIN_TOKEN_FILE: &str = "initial-admin-token";

/// Creates the data dir (0700) if needed.
pub fn ensure_dir(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create the data dir {}", dir.display()))
}

/// Lets other users traverse (not list) the data dir: the private PostgreSQL runs as an
/// unprivileged user when droverd runs as root. Files inside stay owner-only.
pub fn allow_traverse_if_root(dir: &Path) -> Result<()> {
    if nix::unistd::geteuid().is_root() {
        let mode = fs::metadata(dir)?.permissions().mode() & 0o777;
        fs::set_permissions(dir, fs::Permissions::from_mode(mode | 0o011))
            .with_context(|| format!("cannot make {} traversable", dir.display()))?;
    }
    Ok(())
}

/// Writes an owner-only (0600) file atomically, replacing an older one (e.g. the token file of
/// a database that was since wiped).
pub fn replace_secret_file(path: &Path, contents: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    fs::rename(&tmp, path)
}

/// The WireGuard key pair an older droverd kept in the data dir's `wireguard.key`, if there is
/// one: a first start on a database without the installation's key adopts it, so machines that
/// joined before keep their tunnels.
pub fn legacy_wireguard_key(dir: &Path) -> Result<Option<KeyPair>> {
    let path: PathBuf = dir.join(WIREGUARD_KEY_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => KeyPair::from_secret_base64(&text)
            .map(Some)
            .with_context(|| format!("{} is not a WireGuard private key", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_legacy_wireguard_key_is_read_and_a_bad_one_named() {
        let dir = tempfile::tempdir().unwrap();
        assert!(legacy_wireguard_key(dir.path()).unwrap().is_none());
        let pair = KeyPair::generate();
        let path = dir.path().join(WIREGUARD_KEY_FILE);
        fs::write(&path, format!("{}\n", pair.secret_base64())).unwrap();
        let read = legacy_wireguard_key(dir.path()).unwrap().unwrap();
        assert_eq!(read.public(), pair.public());
        fs::write(&path, "nonsense").unwrap();
        let err = legacy_wireguard_key(dir.path()).unwrap_err();
        assert!(format!("{err:#}").contains("wireguard.key"), "{err:#}");
    }

    #[test]
    fn replaced_secret_files_are_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(INITIAL_ADMIN_TOKEN_FILE);
        std::fs::write(&path, "stale").unwrap();
        replace_secret_file(&path, "fresh\n").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "fresh\n");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
