//! Talos v1alpha1 machine configuration: the base document Drover renders for a machine, the
//! patches users add on top, and what is read back from an applied config.
//!
//! - [`render`] builds the main document from the cluster's [`SecretsBundle`] (control planes get
//!   the CA keys, workers only the certificates, as `talosctl gen config` does), then applies the
//!   [`Patch`]es in order. Output is deterministic: the same input gives the same bytes.
//! - [`Patch::parse`] reads a strategic merge patch (a partial config, possibly several
//!   documents) or an RFC 6902 JSON patch, and refuses patches that touch cluster identity or
//!   CAs ([`FORBIDDEN_PATHS`]); [`render`] checks again.
//! - [`order`] sorts patches by [`Scope`], weight and name: the order [`RenderInput::patches`]
//!   expects.
//! - [`redact`], [`diff`] and [`MachineConfigSummary`] inspect rendered or applied configs.

mod inspect;
mod patch;
#[cfg(test)]
mod tests;

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
pub use drover_model::MachineRole;
use drover_pki::{CertAndKey, SecretsBundle};
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize as _, Serialize};
use serde_yaml_ng::{Mapping, Value};
use sha2::{Digest as _, Sha256};

pub use inspect::{MachineConfigSummary, diff, redact};
pub use patch::{FORBIDDEN_PATHS, Patch};

pub const KUBELET_IMAGE: &str = "ghcr.io/siderolabs/kubelet";
pub const INSTALLER_IMAGE: &str = "ghcr.io/siderolabs/installer";
pub const KUBERNETES_REGISTRY: &str = "registry.k8s.io";
pub const DNS_DOMAIN: &str = "cluster.local";
pub const POD_SUBNET: &str = "10.244.0.0/16";
pub const SERVICE_SUBNET: &str = "10.96.0.0/12";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("patch {patch:?} is empty")]
    EmptyPatch { patch: String },
    #[error("patch {patch:?} is not valid YAML: {error}")]
    PatchSyntax {
        patch: String,
        error: serde_yaml_ng::Error,
    },
    #[error("patch {patch:?} is invalid: {reason}")]
    InvalidPatch { patch: String, reason: String },
    #[error("patch {patch:?} may not set {path}: cluster identity and CAs are managed by Drover")]
    Forbidden { patch: String, path: String },
    #[error(
        "patch {patch:?} is a JSON patch, which needs a single-document config, \
         but the config has {documents} documents at that point"
    )]
    JsonPatchNeedsSingleDocument { patch: String, documents: usize },
    #[error("patch {patch:?} failed: {error}")]
    JsonPatchFailed {
        patch: String,
        error: json_patch::PatchError,
    },
    #[error("invalid {field}: {problem}")]
    InvalidInput {
        field: &'static str,
        problem: &'static str,
    },
    #[error("machine config: {field} {problem}")]
    InvalidConfig {
        field: &'static str,
        problem: &'static str,
    },
    #[error("machine config is not valid YAML: {0}")]
    Yaml(#[from] serde_yaml_ng::Error),
}

/// Where a patch is attached. The order of the variants is the precedence, lowest first: a
/// patch of a later scope is applied later and so wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    Machine,
    Cluster,
    MachineSet,
    ClusterMachine,
}

#[derive(Clone, Debug)]
pub struct ScopedPatch {
    pub scope: Scope,
    /// Lower weights are applied first, within a scope.
    pub weight: i32,
    pub patch: Patch,
}

/// Sorts patches into application order: by scope, then weight, then name.
pub fn order(mut patches: Vec<ScopedPatch>) -> Vec<ScopedPatch> {
    patches.sort_by(|a, b| {
        (a.scope, a.weight, a.patch.name()).cmp(&(b.scope, b.weight, b.patch.name()))
    });
    patches
}

/// Everything one machine's config is made of.
#[derive(Clone, Copy, Debug)]
pub struct RenderInput<'a> {
    pub cluster_name: &'a str,
    /// Without the `v`, e.g. `1.13.0`.
    pub talos_version: &'a str,
    /// Without the `v`, e.g. `1.33.1`.
    pub kubernetes_version: &'a str,
    pub role: MachineRole,
    pub secrets: &'a SecretsBundle,
    /// A URL, e.g. `https://[fdae:41e4:649b:9303::2]:6443`.
    pub control_plane_endpoint: &'a str,
    /// e.g. `/dev/sda`.
    pub install_disk: &'a str,
    pub cert_sans: &'a [String],
    /// In application order, lowest precedence first (see [`order`]).
    pub patches: &'a [Patch],
    /// Component versions that differ from `kubernetes_version`, while a Kubernetes upgrade
    /// rolls through the machine.
    pub components: &'a ComponentVersions,
}

/// Kubernetes components whose version differs from the cluster's (each without the `v`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ComponentVersions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apiserver: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller_manager: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
    /// The Kubernetes version whose CoreDNS release the config names (see
    /// [`drover_model::coredns_version`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coredns: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubelet: Option<String>,
}

impl ComponentVersions {
    fn all(&self) -> [&Option<String>; 6] {
        [
            &self.apiserver,
            &self.controller_manager,
            &self.scheduler,
            &self.proxy,
            &self.coredns,
            &self.kubelet,
        ]
    }
}

impl RenderInput<'_> {
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, problem| Err(ConfigError::InvalidInput { field, problem });
        let is_version = |v: &str| {
            v.starts_with(|c: char| c.is_ascii_digit())
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-+".contains(c))
        };
        if self.cluster_name.trim().is_empty() {
            return invalid("cluster name", "is empty");
        }
        if !is_version(self.talos_version) {
            return invalid("Talos version", "must look like 1.13.0 (no leading v)");
        }
        if !is_version(self.kubernetes_version) {
            return invalid("Kubernetes version", "must look like 1.33.1 (no leading v)");
        }
        if self
            .components
            .all()
            .into_iter()
            .flatten()
            .any(|v| !is_version(v))
        {
            return invalid(
                "Kubernetes component version",
                "must look like 1.33.1 (no leading v)",
            );
        }
        if !self.control_plane_endpoint.starts_with("https://") {
            return invalid("control-plane endpoint", "must be an https:// URL");
        }
        if !self.install_disk.starts_with('/') {
            return invalid("install disk", "must be a device path such as /dev/sda");
        }
        if self.cert_sans.iter().any(|san| san.trim().is_empty()) {
            return invalid("certificate SANs", "contain an empty name");
        }
        Ok(())
    }
}

/// A rendered machine config: secret, so `Debug` shows only its hash.
pub struct RenderedConfig {
    yaml: SecretString,
}

impl RenderedConfig {
    /// The YAML text, to send to the machine.
    pub fn expose(&self) -> &str {
        self.yaml.expose_secret()
    }

    /// SHA-256 of the YAML text, lowercase hex: tells whether a machine runs this config.
    pub fn sha256_hex(&self) -> String {
        hex::encode(Sha256::digest(self.expose().as_bytes()))
    }

    /// The YAML with every secret replaced (see [`redact`]).
    pub fn redacted(&self) -> String {
        redact(self.expose())
    }
}

impl fmt::Debug for RenderedConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RenderedConfig")
            .field("sha256", &self.sha256_hex())
            .finish_non_exhaustive()
    }
}

/// Renders the config of one machine: the base document, then every patch in order.
pub fn render(input: &RenderInput) -> Result<RenderedConfig, ConfigError> {
    input.validate()?;
    let mut documents = vec![base_document(input)];
    for patch in input.patches {
        patch.apply(&mut documents)?;
    }
    Ok(RenderedConfig {
        yaml: to_stream(&documents)?.into(),
    })
}

fn base_document(input: &RenderInput) -> Mapping {
    let secrets = input.secrets;
    let control_plane = input.role == MachineRole::ControlPlane;
    // Null entries are left out (see `map`): workers get no keys, as in `talosctl gen config`.
    let cp = |value: Value| if control_plane { value } else { Value::Null };
    let secret = |secret: &SecretString| Value::from(secret.expose_secret());
    let ca = |ca: &CertAndKey| {
        let key = cp(base64(ca.key_pem.expose_secret()));
        map([("crt", base64(&ca.cert_pem)), ("key", key)])
    };
    let image = |reference: String| map([("image", reference.into())]);
    let k8s = input.kubernetes_version;
    let versions = input.components;
    let version = |v: &Option<String>| v.clone().unwrap_or_else(|| k8s.to_owned());
    let component = |name: &str, v: &Option<String>| {
        cp(image(format!(
            "{KUBERNETES_REGISTRY}/kube-{name}:v{}",
            version(v)
        )))
    };
    let install = map([
        ("disk", input.install_disk.into()),
        (
            "image",
            format!("{INSTALLER_IMAGE}:v{}", input.talos_version).into(),
        ),
        ("wipe", false.into()),
    ]);
    let machine = map([
        ("type", input.role.as_str().into()),
        ("token", secret(&secrets.trustd_token)),
        ("ca", ca(&secrets.os_ca)),
        ("certSANs", input.cert_sans.into()),
        (
            "kubelet",
            image(format!("{KUBELET_IMAGE}:v{}", version(&versions.kubelet))),
        ),
        ("install", install),
        ("network", Mapping::new().into()),
    ]);
    let network = map([
        ("dnsDomain", DNS_DOMAIN.into()),
        ("podSubnets", vec![POD_SUBNET].into()),
        ("serviceSubnets", vec![SERVICE_SUBNET].into()),
    ]);
    let service_account = map([("key", base64(secrets.service_account_key.expose_secret()))]);
    let cluster = map([
        ("id", secrets.cluster_id.as_str().into()),
        ("secret", secret(&secrets.cluster_secret)),
        ("clusterName", input.cluster_name.into()),
        (
            "controlPlane",
            map([("endpoint", input.control_plane_endpoint.into())]),
        ),
        ("network", network),
        ("token", secret(&secrets.bootstrap_token)),
        (
            "secretboxEncryptionSecret",
            cp(secret(&secrets.secretbox_secret)),
        ),
        ("ca", ca(&secrets.kubernetes_ca)),
        ("aggregatorCA", cp(ca(&secrets.aggregator_ca))),
        ("serviceAccount", cp(service_account)),
        ("etcd", cp(map([("ca", ca(&secrets.etcd_ca))]))),
        ("apiServer", component("apiserver", &versions.apiserver)),
        (
            "controllerManager",
            component("controller-manager", &versions.controller_manager),
        ),
        ("scheduler", component("scheduler", &versions.scheduler)),
        ("proxy", component("proxy", &versions.proxy)),
        (
            "coreDNS",
            cp(image(coredns_image(&version(&versions.coredns)))),
        ),
        (
            "inlineManifests",
            cp(vec![map([
                ("name", READERS_BINDING_NAME.into()),
                ("contents", READERS_BINDING.into()),
            ])]
            .into()),
        ),
    ]);
    let document = map([
        ("version", "v1alpha1".into()),
        ("machine", machine),
        ("cluster", cluster),
    ]);
    let Value::Mapping(document) = document else {
        unreachable!("map() builds a mapping")
    };
    document
}

/// The name of the inline manifest that binds Drover's Reader group to the `view` role.
pub const READERS_BINDING_NAME: &str = "drover-readers";

/// Drover's Readers reach the cluster through its Kubernetes proxy impersonated into the group
/// `drover:readers`: this binds that group to the built-in read-only `view` ClusterRole.
const READERS_BINDING: &str = "apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: drover-readers
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: view
subjects:
- apiGroup: rbac.authorization.k8s.io
  kind: Group
  name: drover:readers
";

/// The kube-proxy image of Kubernetes `kubernetes` (without the `v`).
pub fn proxy_image(kubernetes: &str) -> String {
    format!("{KUBERNETES_REGISTRY}/kube-proxy:v{kubernetes}")
}

/// The CoreDNS image that goes with Kubernetes `kubernetes` (without the `v`); a version that
/// does not parse (refused by validation) gets the newest known release.
pub fn coredns_image(kubernetes: &str) -> String {
    let version = kubernetes
        .parse()
        .unwrap_or(drover_model::Version::new(1, u32::MAX, 0));
    format!(
        "{KUBERNETES_REGISTRY}/coredns/coredns:v{}",
        drover_model::coredns_version(version)
    )
}

/// A mapping of the entries, in order, leaving out null values.
fn map<const N: usize>(entries: [(&str, Value); N]) -> Value {
    let entries = entries.into_iter().filter(|(_, value)| !value.is_null());
    Value::Mapping(entries.map(|(key, value)| (key.into(), value)).collect())
}

fn base64(text: &str) -> Value {
    BASE64.encode(text).into()
}

/// Whether a document is the main (v1alpha1) one: the only kind of document without `kind`.
fn is_main(document: &Mapping) -> bool {
    !document.contains_key("kind")
}

/// The documents of a YAML stream, empty ones skipped.
fn parse_stream(text: &str) -> Result<Vec<Value>, serde_yaml_ng::Error> {
    let mut documents = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(text) {
        let value = Value::deserialize(document)?;
        if !value.is_null() {
            documents.push(value);
        }
    }
    Ok(documents)
}

fn to_stream<T: Serialize>(documents: &[T]) -> Result<String, serde_yaml_ng::Error> {
    let texts = documents
        .iter()
        .map(serde_yaml_ng::to_string)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(texts.join("---\n"))
}

/// The value at a dotted path of mapping keys (or list indexes).
fn lookup<'v>(value: &'v Value, path: &str) -> Option<&'v Value> {
    path.split('.').try_fold(value, |value, key| {
        value
            .get(key)
            .or_else(|| value.get(key.parse::<usize>().ok()?))
    })
}
