//! Finding the system's PostgreSQL server binaries.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::PostgresError;

/// Where Debian and Ubuntu install the server binaries of each major version.
const DEBIAN_LIB_DIR: &str = "/usr/lib/postgresql";

/// A directory holding both `initdb` and `postgres`.
#[derive(Debug, Clone)]
pub(crate) struct Binaries {
    pub initdb: PathBuf,
    pub postgres: PathBuf,
    /// The full version, e.g. "15.18".
    pub version: String,
}

/// Finds the server binaries.
///
/// With `bin_dir`, only that directory is considered. Otherwise every
/// directory on PATH holding both `initdb` and `postgres` is considered, then
/// `/usr/lib/postgresql/*/bin` from the highest version down. When a cluster
/// already exists (`data_major`), the first candidate of that major version is
/// taken, so that installing a newer PostgreSQL beside the old one does not
/// break an existing cluster.
pub(crate) async fn find(
    bin_dir: Option<&Path>,
    data_dir: &Path,
    data_major: Option<&str>,
) -> Result<Binaries, PostgresError> {
    let (candidates, searched) = match bin_dir {
        Some(dir) => (
            has_server_binaries(dir)
                .then(|| dir.to_path_buf())
                .into_iter()
                .collect::<Vec<_>>(),
            format!(
                "in {} (the configured PostgreSQL binary directory)",
                dir.display()
            ),
        ),
        None => {
            let mut candidates: Vec<PathBuf> = Vec::new();
            if let Some(path) = std::env::var_os("PATH") {
                for dir in std::env::split_paths(&path) {
                    if dir.is_absolute() && has_server_binaries(&dir) && !candidates.contains(&dir)
                    {
                        candidates.push(dir);
                    }
                }
            }
            for dir in debian_bin_dirs(Path::new(DEBIAN_LIB_DIR)) {
                if !candidates.contains(&dir) {
                    candidates.push(dir);
                }
            }
            (
                candidates,
                format!("on PATH or under {DEBIAN_LIB_DIR}/*/bin"),
            )
        }
    };

    if candidates.is_empty() {
        return Err(PostgresError::BinariesNotFound { searched });
    }

    let mut found = Vec::new();
    for dir in candidates {
        let postgres = dir.join("postgres");
        let version = match server_version(&postgres).await {
            Ok(version) => version,
            Err(error) => {
                tracing::warn!(dir = %dir.display(), %error, "ignoring PostgreSQL binaries whose version cannot be read");
                continue;
            }
        };
        let major = major_version(&version);
        if data_major.is_none_or(|wanted| wanted == major) {
            return Ok(Binaries {
                initdb: dir.join("initdb"),
                postgres,
                version,
            });
        }
        found.push(format!("{major} ({})", dir.display()));
    }

    match data_major {
        Some(data_version) if !found.is_empty() => Err(PostgresError::VersionMismatch {
            data_dir: data_dir.to_path_buf(),
            data_version: data_version.to_string(),
            found: found.join(", "),
        }),
        _ => Err(PostgresError::BinariesNotFound { searched }),
    }
}

/// Finds a PostgreSQL client program such as `pg_dump`: on PATH (Debian's wrapper there picks
/// the newest installed version), else in `/usr/lib/postgresql/*/bin` from the highest version
/// down.
pub fn find_client(name: &'static str) -> Result<PathBuf, PostgresError> {
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter(|dir| dir.is_absolute());
    on_path
        .chain(debian_bin_dirs(Path::new(DEBIAN_LIB_DIR)))
        .map(|dir| dir.join(name))
        .find(|path| is_executable_file(path))
        .ok_or_else(|| PostgresError::ClientNotFound {
            name,
            searched: format!("on PATH or under {DEBIAN_LIB_DIR}/*/bin"),
        })
}

fn is_executable_file(path: &Path) -> bool {
    std::fs::metadata(path)
        .map(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn has_server_binaries(dir: &Path) -> bool {
    is_executable_file(&dir.join("initdb")) && is_executable_file(&dir.join("postgres"))
}

/// `<lib>/*/bin` directories holding the server binaries, highest version first.
fn debian_bin_dirs(lib: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(lib) else {
        return Vec::new();
    };
    let mut versioned: Vec<(Vec<u32>, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name();
            let version = parse_version(name.to_str()?)?;
            let bin = entry.path().join("bin");
            has_server_binaries(&bin).then_some((version, bin))
        })
        .collect();
    versioned.sort_by(|a, b| b.0.cmp(&a.0));
    versioned.into_iter().map(|(_, bin)| bin).collect()
}

fn parse_version(name: &str) -> Option<Vec<u32>> {
    name.split('.').map(|part| part.parse().ok()).collect()
}

/// Runs `postgres --version` (which works as root too) and returns e.g. "15.18".
async fn server_version(postgres: &Path) -> std::io::Result<String> {
    let output = tokio::process::Command::new(postgres)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await?;
    let text = String::from_utf8_lossy(&output.stdout);
    parse_version_output(&text).ok_or_else(|| {
        std::io::Error::other(format!(
            "unexpected output of `{} --version`: {:?}",
            postgres.display(),
            text.trim()
        ))
    })
}

/// Parses "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)" into "15.18".
fn parse_version_output(text: &str) -> Option<String> {
    let rest = text.split_once(')')?.1.trim_start();
    let version: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    (!version.is_empty()).then_some(version)
}

/// The major version as PG_VERSION spells it: "15" for 15.18, "9.6" for 9.6.24.
pub(crate) fn major_version(version: &str) -> String {
    let mut parts = version.split('.');
    let first = parts.next().unwrap_or_default();
    match first.parse::<u32>() {
        Ok(n) if n < 10 => match parts.next() {
            Some(second) => format!("{first}.{second}"),
            None => first.to_string(),
        },
        _ => first.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_versions() {
        assert_eq!(
            parse_version_output("postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n"),
            Some("15.18".to_string())
        );
        assert_eq!(
            parse_version_output("postgres (PostgreSQL) 17beta1\n"),
            Some("17".to_string())
        );
        assert_eq!(parse_version_output("garbage"), None);
        assert_eq!(major_version("15.18"), "15");
        assert_eq!(major_version("9.6.24"), "9.6");
        assert_eq!(major_version("17"), "17");
        assert_eq!(parse_version("15"), Some(vec![15]));
        assert_eq!(parse_version("9.6"), Some(vec![9, 6]));
        assert_eq!(parse_version("common"), None);
    }

    #[test]
    fn debian_dirs_sort_highest_first() {
        let tmp = tempfile::tempdir().unwrap();
        for version in ["9.6", "15", "16", "notaversion"] {
            let bin = tmp.path().join(version).join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            for name in ["initdb", "postgres"] {
                let path = bin.join(name);
                std::fs::write(&path, "#!/bin/sh\n").unwrap();
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            }
        }
        // A version directory without the server binaries is skipped.
        std::fs::create_dir_all(tmp.path().join("17").join("bin")).unwrap();
        let dirs = debian_bin_dirs(tmp.path());
        let names: Vec<_> = dirs
            .iter()
            .map(|d| d.parent().unwrap().file_name().unwrap().to_str().unwrap())
            .collect();
        assert_eq!(names, ["16", "15", "9.6"]);
    }
}
