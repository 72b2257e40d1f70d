//! `drover kubeconfig` and `drover kube-token`: kubectl reaches a cluster through Drover's
//! Kubernetes proxy, with this CLI as its credential plugin.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use chrono::{DateTime, Utc};
use drover_model::{ExecPlugin, KubeProxyEndpoint};
use serde_yaml_ng::{Mapping, Value};

/// How the credential plugin finds the same credential as this run: the config file and
/// context, or the token it was given.
pub struct Plugin {
    pub config_file: PathBuf,
    pub context: Option<String>,
    /// A token given by flag or environment rather than a context.
    pub token: Option<String>,
}

/// A kubeconfig with one cluster, user and context named `context_name`, with this CLI as the
/// credential plugin.
pub fn kubeconfig(endpoint: &KubeProxyEndpoint, context_name: &str, plugin: &Plugin) -> Value {
    let command = std::env::current_exe()
        .ok()
        .map_or_else(|| "drover".to_owned(), |p| p.display().to_string());
    let mut args = vec!["kube-token".to_owned()];
    if let Some(context) = &plugin.context {
        args.extend(["--context".to_owned(), context.clone()]);
    }
    let mut env = vec![(
        "DROVER_CONFIG".to_owned(),
        plugin.config_file.display().to_string(),
    )];
    if let Some(token) = &plugin.token {
        env.push(("DROVER_TOKEN".to_owned(), token.clone()));
    }
    let exec = ExecPlugin { command, args, env };
    serde_yaml_ng::to_value(endpoint.kubeconfig(context_name, &exec)).expect("plain values")
}

/// Makes the kubeconfig's user authenticate with `token` itself instead of the credential
/// plugin (a service-account key for automation).
pub fn use_static_token(config: &mut Value, token: &str) {
    if let Some(user) = config["users"][0].get_mut("user") {
        *user =
            serde_yaml_ng::to_value(serde_json::json!({ "token": token })).expect("plain values");
    }
}

/// The kubeconfig kubectl uses by default: the first of `$KUBECONFIG`, else `~/.kube/config`.
pub fn default_path() -> Result<PathBuf> {
    if let Some(first) = std::env::var_os("KUBECONFIG")
        .and_then(|v| std::env::split_paths(&v).next())
        .filter(|p| !p.as_os_str().is_empty())
    {
        return Ok(first);
    }
    let home = std::env::var_os("HOME").context("neither KUBECONFIG nor HOME is set")?;
    Ok(PathBuf::from(home).join(".kube").join("config"))
}

/// Merges `new` into the kubeconfig at `path` (entries of the same name are replaced) and makes
/// its context the current one; writes the file owner-only.
pub fn merge_into(path: &Path, new: &Value) -> Result<()> {
    let mut config: Value = match std::fs::read_to_string(path) {
        Ok(text) => serde_yaml_ng::from_str(&text)
            .with_context(|| format!("{} is not a valid kubeconfig", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Value::Mapping(Mapping::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    if config.is_null() {
        config = Value::Mapping(Mapping::new());
    }
    let map = config
        .as_mapping_mut()
        .with_context(|| format!("{} is not a kubeconfig mapping", path.display()))?;
    map.entry("apiVersion".into()).or_insert("v1".into());
    map.entry("kind".into()).or_insert("Config".into());
    for list in ["clusters", "users", "contexts"] {
        let entries = map
            .entry(list.into())
            .or_insert(Value::Sequence(Vec::new()));
        if entries.is_null() {
            *entries = Value::Sequence(Vec::new());
        }
        let entries = entries
            .as_sequence_mut()
            .with_context(|| format!("{}: {list} is not a list", path.display()))?;
        for entry in new[list].as_sequence().into_iter().flatten() {
            entries.retain(|e| e["name"] != entry["name"]);
            entries.push(entry.clone());
        }
    }
    map.insert("current-context".into(), new["current-context"].clone());
    write_private(path, &serde_yaml_ng::to_string(&config)?)
}

/// Writes `text` to `path` owner-only.
pub fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(text.as_bytes())?;
    Ok(())
}

/// The `ExecCredential` kubectl reads from a credential plugin.
pub fn exec_credential(token: &str, expires_at: Option<DateTime<Utc>>) -> serde_json::Value {
    let mut status = serde_json::json!({ "token": token });
    if let Some(at) = expires_at {
        status["expirationTimestamp"] =
            at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true).into();
    }
    serde_json::json!({
        "apiVersion": "client.authentication.k8s.io/v1",
        "kind": "ExecCredential",
        "status": status,
    })
}

/// Renames a one-context kubeconfig's cluster, user and context to `name`.
pub fn rename_context(config: &mut Value, name: &str) {
    for list in ["clusters", "users", "contexts"] {
        if let Some(items) = config.get_mut(list).and_then(Value::as_sequence_mut) {
            for item in items {
                item["name"] = Value::from(name);
            }
        }
    }
    if let Some(contexts) = config.get_mut("contexts").and_then(Value::as_sequence_mut) {
        for c in contexts {
            c["context"]["cluster"] = Value::from(name);
            c["context"]["user"] = Value::from(name);
        }
    }
    config["current-context"] = Value::from(name);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(server: &str) -> KubeProxyEndpoint {
        KubeProxyEndpoint {
            server: server.into(),
            certificate_authority: "-----BEGIN CERTIFICATE-----\n".into(),
        }
    }

    #[test]
    fn merging_replaces_same_names_keeps_others_and_switches_context() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kube/config");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Config\nclusters:\n- name: other\n  cluster: {server: https://x}\ncontexts: []\nusers: []\ncurrent-context: other\n",
        )
        .unwrap();
        let plugin = Plugin {
            config_file: "/c.yaml".into(),
            context: Some("lab".into()),
            token: None,
        };
        merge_into(
            &path,
            &kubeconfig(&endpoint("https://p/clusters/a"), "drover-a", &plugin),
        )
        .unwrap();
        merge_into(
            &path,
            &kubeconfig(&endpoint("https://p2/clusters/a"), "drover-a", &plugin),
        )
        .unwrap();
        let merged: Value =
            serde_yaml_ng::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let clusters = merged["clusters"].as_sequence().unwrap();
        assert_eq!(clusters.len(), 2, "{merged:?}");
        assert_eq!(clusters[1]["cluster"]["server"], "https://p2/clusters/a");
        assert_eq!(merged["current-context"], "drover-a");
        let exec = &merged["users"][0]["user"]["exec"];
        assert_eq!(exec["args"][2], "lab");
        assert_eq!(exec["env"][0]["value"], "/c.yaml");
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn exec_credentials_carry_the_expiry_when_there_is_one() {
        let at = "2026-11-30T08:00:00Z".parse().unwrap();
        let c = exec_credential("drc_x", Some(at));
        assert_eq!(c["status"]["expirationTimestamp"], "2026-11-30T08:00:00Z");
        assert!(
            exec_credential("drv_x", None)["status"]
                .get("expirationTimestamp")
                .is_none()
        );
    }
}
