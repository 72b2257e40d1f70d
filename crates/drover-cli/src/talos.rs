//! talosconfig files: where talosctl reads them and merging a context into one.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_yaml_ng::{Mapping, Value};

/// The talosconfig talosctl uses by default: `$TALOSCONFIG`, else `~/.talos/config`.
pub fn default_path() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("TALOSCONFIG").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let home = std::env::var_os("HOME").context("neither TALOSCONFIG nor HOME is set")?;
    Ok(PathBuf::from(home).join(".talos").join("config"))
}

/// Merges the contexts of the talosconfig `new` (YAML) into the file at `path` (a context of
/// the same name is replaced) and makes `new`'s context the current one; writes the file
/// owner-only.
pub fn merge_into(path: &Path, new: &str) -> Result<()> {
    let new: Value = serde_yaml_ng::from_str(new).context("the issued talosconfig is not YAML")?;
    let mut config: Value = match std::fs::read_to_string(path) {
        Ok(text) => serde_yaml_ng::from_str(&text)
            .with_context(|| format!("{} is not a valid talosconfig", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Value::Mapping(Mapping::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    if config.is_null() {
        config = Value::Mapping(Mapping::new());
    }
    let map = config
        .as_mapping_mut()
        .with_context(|| format!("{} is not a talosconfig mapping", path.display()))?;
    let contexts = map
        .entry("contexts".into())
        .or_insert(Value::Mapping(Mapping::new()));
    if contexts.is_null() {
        *contexts = Value::Mapping(Mapping::new());
    }
    let contexts = contexts
        .as_mapping_mut()
        .with_context(|| format!("{}: contexts is not a mapping", path.display()))?;
    for (name, context) in new["contexts"].as_mapping().into_iter().flatten() {
        contexts.insert(name.clone(), context.clone());
    }
    map.insert("context".into(), new["context"].clone());
    crate::kube::write_private(path, &serde_yaml_ng::to_string(&config)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_replaces_the_same_context_keeps_others_and_switches() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("talos").join("config");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(
            &path,
            "context: home\ncontexts:\n  home:\n    endpoints: [10.0.0.1]\n  drover-prod:\n    endpoints: [old:1]\n",
        )
        .unwrap();
        let issued = "context: drover-prod\ncontexts:\n  drover-prod:\n    endpoints: ['127.0.0.1:8096']\n    ca: Y2E=\n    crt: Y3J0\n    key: a2V5\n";
        merge_into(&path, issued).unwrap();
        let merged: Value =
            serde_yaml_ng::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(merged["context"], "drover-prod");
        assert_eq!(merged["contexts"]["home"]["endpoints"][0], "10.0.0.1");
        assert_eq!(
            merged["contexts"]["drover-prod"]["endpoints"][0],
            "127.0.0.1:8096"
        );
        assert_eq!(merged["contexts"]["drover-prod"]["key"], "a2V5");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
