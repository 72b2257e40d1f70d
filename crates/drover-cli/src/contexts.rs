//! The CLI's config file: named contexts (an endpoint and how to authenticate there) and the
//! current one. `$DROVER_CONFIG`, else `$XDG_CONFIG_HOME/drover/config.yaml`, else
//! `~/.config/drover/config.yaml`; written owner-only (0600), replaced atomically.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use drover_model::CliCredential;
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_context: Option<String>,
    #[serde(default)]
    pub contexts: BTreeMap<String, Context>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Context {
    pub endpoint: String,
    /// PEM CA certificates to trust for the endpoint (droverd's self-signed HTTP CA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// An API or service-account token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// What `drover login` got: a session token and its refresh token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login: Option<CliCredential>,
}

/// Where the config file is.
pub fn path() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("DROVER_CONFIG").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|p| !p.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(
            std::env::var_os("HOME").context("neither DROVER_CONFIG nor HOME is set")?,
        )
        .join(".config"),
    };
    Ok(base.join("drover").join("config.yaml"))
}

impl ConfigFile {
    /// The file at `path`, or an empty one if there is none.
    pub fn load(path: &Path) -> Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => serde_yaml_ng::from_str(&text)
                .with_context(|| format!("{} is not a valid drover config", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Writes the file owner-only, through a temporary file renamed over it.
    pub fn save(&self, path: &Path) -> Result<()> {
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let tmp = path.with_extension("yaml.tmp");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        // The mode applies only to a new file: make sure of it before the secrets go in.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.write_all(serde_yaml_ng::to_string(self)?.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
            .with_context(|| format!("cannot replace {}", path.display()))?;
        Ok(())
    }

    /// The context named `name`, or the current one.
    pub fn context(&self, name: Option<&str>) -> Result<Option<(&str, &Context)>> {
        let Some(name) = name.or(self.current_context.as_deref()) else {
            return Ok(None);
        };
        match self.contexts.get_key_value(name) {
            Some((name, context)) => Ok(Some((name.as_str(), context))),
            None => bail!(
                "there is no context {name:?}; known: {}",
                self.names().join(", ")
            ),
        }
    }

    fn names(&self) -> Vec<&str> {
        self.contexts.keys().map(String::as_str).collect()
    }

    pub fn use_context(&mut self, name: &str) -> Result<()> {
        if !self.contexts.contains_key(name) {
            bail!(
                "there is no context {name:?}; known: {}",
                self.names().join(", ")
            );
        }
        self.current_context = Some(name.to_owned());
        Ok(())
    }

    pub fn delete(&mut self, name: &str) -> Result<()> {
        if self.contexts.remove(name).is_none() {
            bail!("there is no context {name:?}");
        }
        if self.current_context.as_deref() == Some(name) {
            self.current_context = None;
        }
        Ok(())
    }

    /// One line per context, the current one starred.
    pub fn listing(&self) -> String {
        let mut out =
            String::from("CURRENT  NAME                 ENDPOINT                         AUTH\n");
        for (name, c) in &self.contexts {
            let current = if self.current_context.as_deref() == Some(name) {
                "*"
            } else {
                ""
            };
            let auth = match (&c.token, &c.login) {
                (Some(_), _) => "token".to_owned(),
                (None, Some(login)) => format!("login ({})", login.email),
                (None, None) => "none".to_owned(),
            };
            out.push_str(&format!(
                "{current:<8} {name:<20} {:<32} {auth}\n",
                c.endpoint
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contexts_round_trip_owner_only_and_switch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/config.yaml");
        let mut file = ConfigFile::load(&path).unwrap();
        assert!(file.context(None).unwrap().is_none());
        file.contexts.insert(
            "lab".into(),
            Context {
                endpoint: "http://lab:8080".into(),
                token: Some("drv_x".into()),
                ..Context::default()
            },
        );
        file.contexts.insert(
            "prod".into(),
            Context {
                endpoint: "https://prod".into(),
                ..Context::default()
            },
        );
        file.use_context("lab").unwrap();
        assert!(
            file.use_context("nope")
                .unwrap_err()
                .to_string()
                .contains("lab, prod")
        );
        file.save(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        let mut again = ConfigFile::load(&path).unwrap();
        let (name, lab) = again.context(None).unwrap().unwrap();
        assert_eq!((name, lab.endpoint.as_str()), ("lab", "http://lab:8080"));
        assert_eq!(
            again.context(Some("prod")).unwrap().unwrap().1.endpoint,
            "https://prod"
        );
        assert!(again.listing().contains("*        lab"));
        again.delete("lab").unwrap();
        assert!(again.current_context.is_none());
        assert!(again.delete("lab").is_err());

        std::fs::write(&path, "contexts: [").unwrap();
        let err = format!("{:#}", ConfigFile::load(&path).unwrap_err());
        assert!(err.contains("not a valid drover config"), "{err}");
    }
}
