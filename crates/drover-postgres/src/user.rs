//! Running PostgreSQL as an unprivileged user when we are root.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::unistd::{Gid, Uid, User};

use crate::PostgresError;

/// The unprivileged user initdb and postgres run as when we are root.
#[derive(Debug, Clone)]
pub(crate) struct RunAs {
    pub name: String,
    pub uid: Uid,
    pub gid: Gid,
}

/// `None` when we are not root (postgres then runs as ourselves); otherwise
/// the `postgres` system user if it exists, else `nobody`.
pub(crate) fn run_as() -> Result<Option<RunAs>, PostgresError> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    for name in ["postgres", "nobody"] {
        match User::from_name(name) {
            Ok(Some(user)) => {
                return Ok(Some(RunAs {
                    name: user.name,
                    uid: user.uid,
                    gid: user.gid,
                }));
            }
            Ok(None) => {}
            Err(errno) => {
                return Err(PostgresError::io(
                    format!("looking up user `{name}`"),
                    errno.into(),
                ));
            }
        }
    }
    Err(PostgresError::NoUnprivilegedUser)
}

/// Checks that `user` can traverse every ancestor of `dir` (an absolute,
/// canonical path). Only the classic mode bits are considered, not ACLs.
pub(crate) fn check_parents_traversable(dir: &Path, user: &RunAs) -> Result<(), PostgresError> {
    for parent in dir.ancestors().skip(1) {
        let meta = std::fs::metadata(parent).map_err(|error| {
            PostgresError::io(format!("reading metadata of {}", parent.display()), error)
        })?;
        let mode = meta.mode();
        let allowed = if meta.uid() == user.uid.as_raw() {
            mode & 0o100 != 0
        } else if meta.gid() == user.gid.as_raw() {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        };
        if !allowed {
            return Err(PostgresError::ParentNotTraversable {
                path: parent.to_path_buf(),
                user: user.name.clone(),
            });
        }
    }
    Ok(())
}

/// Gives `dir` and everything under it to `user`, without following symlinks.
/// Entries that already belong to the user are left alone.
pub(crate) fn chown_recursive(dir: &Path, user: &RunAs) -> Result<(), PostgresError> {
    let (uid, gid) = (user.uid.as_raw(), user.gid.as_raw());
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            // Something removed it meanwhile (e.g. a leftover server's socket).
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => {
                return Err(PostgresError::io(
                    format!("reading metadata of {}", path.display()),
                    error,
                ));
            }
        };
        if meta.uid() != uid || meta.gid() != gid {
            std::os::unix::fs::lchown(&path, Some(uid), Some(gid)).map_err(|error| {
                PostgresError::io(
                    format!("giving {} to user `{}`", path.display(), user.name),
                    error,
                )
            })?;
        }
        if meta.is_dir() {
            let entries = std::fs::read_dir(&path)
                .map_err(|error| PostgresError::io(format!("listing {}", path.display()), error))?;
            for entry in entries {
                let entry = entry.map_err(|error| {
                    PostgresError::io(format!("listing {}", path.display()), error)
                })?;
                stack.push(entry.path());
            }
        }
    }
    Ok(())
}
