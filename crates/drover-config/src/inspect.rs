//! Reading configs: redaction, diffs, and the facts other parts of Drover need.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_yaml_ng::Value;
use sha2::{Digest as _, Sha256};

use crate::{ConfigError, MachineRole, is_main, lookup, parse_stream, to_stream};

/// What secret values are replaced by.
pub const REDACTED: &str = "******";

/// Whether the value of a key is secret: keys, tokens, secrets and passwords of any kind
/// (certificates, `crt`, are not).
fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key == "key"
        || key == "auth"
        || ["token", "secret", "password", "privatekey"]
            .iter()
            .any(|suffix| key.ends_with(suffix))
}

/// Replaces every secret value of a config (a YAML stream) by [`REDACTED`]: all `key` fields,
/// tokens, secrets (`cluster.secret`, `secretboxEncryptionSecret`, `aescbcEncryptionSecret`),
/// passwords and private keys, and everything below such a key. Certificates are kept. Text
/// that is not YAML is replaced as a whole, by a line naming its SHA-256.
pub fn redact(yaml: &str) -> String {
    let redacted = parse_stream(yaml).and_then(|mut documents| {
        documents.iter_mut().for_each(|d| redact_value(d, false));
        to_stream(&documents)
    });
    redacted.unwrap_or_else(|_| {
        let digest = hex::encode(Sha256::digest(yaml.as_bytes()));
        format!("# unreadable machine config (sha256 {digest}), redacted\n")
    })
}

fn redact_value(value: &mut Value, secret: bool) {
    match value {
        Value::Mapping(mapping) => {
            for (key, value) in mapping.iter_mut() {
                let secret = secret || key.as_str().is_some_and(is_secret_key);
                redact_value(value, secret);
            }
        }
        Value::Sequence(items) => items.iter_mut().for_each(|item| redact_value(item, secret)),
        Value::Tagged(tagged) => redact_value(&mut tagged.value, secret),
        Value::String(text) if secret && !text.is_empty() => *text = REDACTED.into(),
        Value::Number(_) if secret => *value = REDACTED.into(),
        _ => {}
    }
}

/// A unified diff of two configs, both redacted first; empty when they are the same.
pub fn diff(old: &str, new: &str) -> String {
    let (old, new) = (redact(old), redact(new));
    if old == new {
        return String::new();
    }
    similar::TextDiff::from_lines(&old, &new)
        .unified_diff()
        .context_radius(3)
        .header("old", "new")
        .to_string()
}

/// What a machine's applied config says about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MachineConfigSummary {
    pub role: MachineRole,
    pub cluster_id: String,
    pub cluster_name: String,
    /// The OS (Talos API) CA certificate, PEM.
    pub os_ca_crt_pem: String,
    /// From the kubelet image tag, without the `v`.
    pub kubernetes_version: String,
    /// From the installer image tag, without the `v`, when it has one.
    pub talos_version: Option<String>,
    /// `machine.install.disk`; absent when the disk is chosen by a selector.
    pub install_disk: Option<String>,
    pub control_plane_endpoint: String,
}

impl MachineConfigSummary {
    pub fn parse(yaml: &str) -> Result<Self, ConfigError> {
        let documents = parse_stream(yaml)?;
        let main = documents
            .iter()
            .find(|d| d.as_mapping().is_some_and(is_main))
            .ok_or(ConfigError::InvalidConfig {
                field: "the v1alpha1 document",
                problem: "is missing",
            })?;
        let text = |field| lookup(main, field).and_then(Value::as_str);
        let required = |field| {
            text(field)
                .filter(|text| !text.is_empty())
                .ok_or(ConfigError::InvalidConfig {
                    field,
                    problem: "is missing",
                })
        };
        let invalid = |field, problem| ConfigError::InvalidConfig { field, problem };

        let role = match required("machine.type")? {
            "controlplane" | "init" => MachineRole::ControlPlane,
            "worker" => MachineRole::Worker,
            _ => {
                return Err(invalid(
                    "machine.type",
                    "is neither controlplane nor worker",
                ));
            }
        };
        let os_ca_crt_pem = BASE64
            .decode(required("machine.ca.crt")?)
            .ok()
            .and_then(|pem| String::from_utf8(pem).ok())
            .filter(|pem| pem.contains("-----BEGIN CERTIFICATE-----"))
            .ok_or(invalid("machine.ca.crt", "is not a base64 PEM certificate"))?;
        let kubernetes_version = image_version(required("machine.kubelet.image")?)
            .ok_or(invalid("machine.kubelet.image", "has no version tag"))?;
        Ok(Self {
            role,
            cluster_id: required("cluster.id")?.to_owned(),
            cluster_name: required("cluster.clusterName")?.to_owned(),
            os_ca_crt_pem,
            kubernetes_version,
            talos_version: text("machine.install.image").and_then(image_version),
            install_disk: text("machine.install.disk").map(str::to_owned),
            control_plane_endpoint: required("cluster.controlPlane.endpoint")?.to_owned(),
        })
    }
}

/// The version of an image reference `registry[:port]/name:vX.Y.Z[@digest]`.
pub(crate) fn image_version(image: &str) -> Option<String> {
    let without_digest = image.split('@').next()?;
    let (_, tag) = without_digest.rsplit('/').next()?.split_once(':')?;
    let version = tag.strip_prefix('v').unwrap_or(tag);
    (!version.is_empty()).then(|| version.to_owned())
}
