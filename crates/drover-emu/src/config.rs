//! The machine configuration a node is given, as far as the emulator acts on it.
//!
//! A Talos configuration is a multi-document YAML stream; the main document is
//! `{version: v1alpha1, machine: {...}, cluster: {...}}` and the others (`apiVersion` +
//! `kind`) are ignored here. Only these fields are read: `machine.type`, `machine.ca`,
//! `machine.kubelet.image`, `machine.install.disk`, `cluster.id`, `cluster.clusterName`,
//! `cluster.ca`, and the images of `cluster.apiServer`, `cluster.controllerManager`,
//! `cluster.scheduler`, `cluster.proxy` and `cluster.coreDNS`. Certificates and keys are base64
//! of PEM.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use drover_pki::CertAndKey;
use drover_talos::DiskFact;
use serde::Deserialize;

/// The Kubernetes version when a configuration names no kubelet image.
pub const DEFAULT_KUBERNETES_VERSION: &str = "v1.34.1";

/// Where Talos's kubelet images come from.
const KUBELET_IMAGE: &str = "ghcr.io/siderolabs/kubelet";
/// Where the Kubernetes control plane and kube-proxy images come from.
const KUBERNETES_REGISTRY: &str = "registry.k8s.io";

/// The CoreDNS image when a configuration names none (`cluster.coreDNS.image`).
pub const DEFAULT_COREDNS_IMAGE: &str = "registry.k8s.io/coredns/coredns:v1.12.0";

/// The Kubernetes components a configuration runs: the images it names, Talos's defaults for
/// those it does not (the kubelet's version for the control plane and kube-proxy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubernetesImages {
    /// `machine.kubelet.image`.
    pub kubelet: String,
    /// `cluster.apiServer.image` (a static pod on each control plane).
    pub api_server: String,
    /// `cluster.controllerManager.image`.
    pub controller_manager: String,
    /// `cluster.scheduler.image`.
    pub scheduler: String,
    /// `cluster.proxy.image` (kube-proxy, on every node).
    pub proxy: String,
    /// `cluster.coreDNS.image`.
    pub coredns: String,
}

/// The tag of an image reference (`registry[:port]/name:tag[@digest]`), e.g. `v1.33.1`; empty
/// without one.
pub fn image_tag(image: &str) -> &str {
    let reference = image.split('@').next().unwrap_or_default();
    match reference.rsplit_once(':') {
        Some((_, tag)) if !tag.contains('/') => tag,
        _ => "",
    }
}

/// `machine.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MachineType {
    /// `controlplane` (or the legacy `init`): runs etcd and the Kubernetes control plane.
    ControlPlane,
    /// `worker`.
    Worker,
}

impl MachineType {
    pub fn as_str(self) -> &'static str {
        match self {
            MachineType::ControlPlane => "controlplane",
            MachineType::Worker => "worker",
        }
    }
}

/// A certificate authority as a configuration carries it: the certificate, and the key only on
/// control planes.
#[derive(Clone)]
pub(crate) struct ConfigCa {
    pub cert_pem: String,
    key_pem: Option<String>,
}

impl ConfigCa {
    /// The CA with its key, to sign with; `None` without a key.
    pub fn signer(&self) -> Option<CertAndKey> {
        Some(CertAndKey {
            cert_pem: self.cert_pem.clone(),
            key_pem: self.key_pem.clone()?.into(),
        })
    }
}

/// What a node read from an applied configuration.
#[derive(Clone)]
pub(crate) struct MachineConfig {
    pub machine_type: MachineType,
    pub cluster_id: String,
    pub cluster_name: String,
    /// `machine.ca`: the OS CA (the key on control planes only).
    pub os_ca: ConfigCa,
    /// `cluster.ca`: the Kubernetes CA (the key on control planes only).
    pub kubernetes_ca: ConfigCa,
    pub images: KubernetesImages,
}

impl MachineConfig {
    /// From the `machine.kubelet.image` tag, e.g. `v1.33.1`.
    pub fn kubelet_version(&self) -> &str {
        image_tag(&self.images.kubelet)
    }
}

impl std::fmt::Debug for MachineConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MachineConfig")
            .field("machine_type", &self.machine_type)
            .field("cluster_id", &self.cluster_id)
            .field("cluster_name", &self.cluster_name)
            .field("images", &self.images)
            .finish_non_exhaustive()
    }
}

/// Why a configuration is refused; the text is what the node answers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct ConfigError(String);

fn invalid(message: impl Into<String>) -> ConfigError {
    ConfigError(message.into())
}

// The YAML shape of the fields read (everything else is ignored).

#[derive(Deserialize, Default)]
struct Document {
    machine: Option<Machine>,
    cluster: Option<Cluster>,
}

#[derive(Deserialize, Default)]
struct Machine {
    #[serde(rename = "type")]
    machine_type: Option<String>,
    ca: Option<Pem>,
    kubelet: Option<Image>,
    install: Option<Install>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Cluster {
    id: Option<String>,
    cluster_name: Option<String>,
    ca: Option<Pem>,
    api_server: Option<Image>,
    controller_manager: Option<Image>,
    scheduler: Option<Image>,
    proxy: Option<Image>,
    #[serde(rename = "coreDNS")]
    coredns: Option<Image>,
}

#[derive(Deserialize, Default)]
struct Pem {
    crt: Option<String>,
    key: Option<String>,
}

#[derive(Deserialize, Default)]
struct Image {
    image: Option<String>,
}

#[derive(Deserialize, Default)]
struct Install {
    disk: Option<String>,
}

impl MachineConfig {
    /// Reads and checks `yaml` for a machine with `disks`.
    pub fn parse(yaml: &[u8], disks: &[DiskFact]) -> Result<Self, ConfigError> {
        let document = main_document(yaml)?;
        let machine = document.machine.unwrap_or_default();
        let cluster = document.cluster.unwrap_or_default();

        let machine_type = match machine.machine_type.as_deref() {
            Some("controlplane" | "init") => MachineType::ControlPlane,
            Some("worker") => MachineType::Worker,
            Some(other) => {
                return Err(invalid(format!(
                    "machine.type {other:?} is not \"controlplane\" or \"worker\""
                )));
            }
            None => return Err(invalid("machine.type is required")),
        };
        if let Some(disk) = machine.install.and_then(|i| i.disk)
            && !disks.iter().any(|d| d.device_name == disk)
        {
            let known: Vec<&str> = disks.iter().map(|d| d.device_name.as_str()).collect();
            return Err(invalid(format!(
                "machine.install.disk {disk:?} does not exist on this machine (disks: {})",
                known.join(", ")
            )));
        }
        let cluster_id = required(cluster.id, "cluster.id")?;
        let cluster_name = required(cluster.cluster_name, "cluster.clusterName")?;
        let control_plane = machine_type == MachineType::ControlPlane;
        let os_ca = ca(machine.ca, "machine.ca", control_plane)?;
        let kubernetes_ca = ca(cluster.ca, "cluster.ca", control_plane)?;
        let kubelet = image(machine.kubelet, "machine.kubelet.image")?
            .unwrap_or_else(|| format!("{KUBELET_IMAGE}:{DEFAULT_KUBERNETES_VERSION}"));
        let version = image_tag(&kubelet).to_owned();
        let component = |field: Option<Image>, path: &str, name: &str| {
            Ok::<_, ConfigError>(
                image(field, path)?
                    .unwrap_or_else(|| format!("{KUBERNETES_REGISTRY}/kube-{name}:{version}")),
            )
        };
        let images = KubernetesImages {
            api_server: component(cluster.api_server, "cluster.apiServer.image", "apiserver")?,
            controller_manager: component(
                cluster.controller_manager,
                "cluster.controllerManager.image",
                "controller-manager",
            )?,
            scheduler: component(cluster.scheduler, "cluster.scheduler.image", "scheduler")?,
            proxy: component(cluster.proxy, "cluster.proxy.image", "proxy")?,
            coredns: image(cluster.coredns, "cluster.coreDNS.image")?
                .unwrap_or_else(|| DEFAULT_COREDNS_IMAGE.to_owned()),
            kubelet,
        };
        Ok(Self {
            machine_type,
            cluster_id,
            cluster_name,
            os_ca,
            kubernetes_ca,
            images,
        })
    }
}

/// The `version: v1alpha1` document of the stream (the one without `kind`).
fn main_document(yaml: &[u8]) -> Result<Document, ConfigError> {
    use serde_yaml_ng::Value;

    let mut found = None;
    for document in serde_yaml_ng::Deserializer::from_slice(yaml) {
        let value = Value::deserialize(document)
            .map_err(|e| invalid(format!("failed to parse config: {e}")))?;
        let is_main = value.get("kind").is_none()
            && value.get("version").and_then(Value::as_str) == Some("v1alpha1");
        if is_main {
            found = Some(value);
        }
    }
    let value = found.ok_or_else(|| invalid("the configuration has no v1alpha1 document"))?;
    serde_yaml_ng::from_value(value).map_err(|e| invalid(format!("failed to parse config: {e}")))
}

fn required(value: Option<String>, field: &str) -> Result<String, ConfigError> {
    value
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| invalid(format!("{field} is required")))
}

/// `field.crt` (always) and `field.key` (control planes), base64 of PEM.
fn ca(pem: Option<Pem>, field: &str, with_key: bool) -> Result<ConfigCa, ConfigError> {
    let pem = pem.unwrap_or_default();
    let cert_pem = decode_pem(
        &required(pem.crt, &format!("{field}.crt"))?,
        &format!("{field}.crt"),
    )?;
    let key_pem = match pem.key.filter(|k| !k.trim().is_empty()) {
        Some(key) => Some(decode_pem(&key, &format!("{field}.key"))?),
        None if with_key => {
            return Err(invalid(format!(
                "{field}.key is required on a control plane"
            )));
        }
        None => None,
    };
    Ok(ConfigCa { cert_pem, key_pem })
}

fn decode_pem(base64: &str, field: &str) -> Result<String, ConfigError> {
    let bytes = BASE64
        .decode(base64.trim())
        .map_err(|e| invalid(format!("{field} is not base64: {e}")))?;
    let text = String::from_utf8(bytes).map_err(|_| invalid(format!("{field} is not PEM text")))?;
    pem::parse(&text).map_err(|e| invalid(format!("{field} is not PEM: {e}")))?;
    Ok(text)
}

/// `image` (`registry/name:vX.Y.Z`), when given; it must have a version tag.
fn image(image: Option<Image>, field: &str) -> Result<Option<String>, ConfigError> {
    let Some(image) = image.and_then(|i| i.image) else {
        return Ok(None);
    };
    if !image_tag(&image).starts_with('v') {
        return Err(invalid(format!(
            "{field} {image:?} has no version tag (like :v1.33.1)"
        )));
    }
    Ok(Some(image))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(text: &str) -> String {
        BASE64.encode(text)
    }

    const CERT: &str = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    const KEY: &str =
        "-----BEGIN ED25519 PRIVATE KEY-----\nAAAA\n-----END ED25519 PRIVATE KEY-----\n";

    fn disks() -> Vec<DiskFact> {
        vec![DiskFact {
            device_name: "/dev/sda".into(),
            ..Default::default()
        }]
    }

    fn config(machine_type: &str, with_keys: bool, disk: &str) -> String {
        let key = |k: &str| {
            if with_keys {
                format!("\n    key: {}", b64(k))
            } else {
                String::new()
            }
        };
        format!(
            "version: v1alpha1
machine:
  type: {machine_type}
  token: abcdef.0123456789abcdef
  ca:
    crt: {crt}{os_key}
  kubelet:
    image: ghcr.io/siderolabs/kubelet:v1.33.1
  install:
    disk: {disk}
    image: ghcr.io/siderolabs/installer:v1.13.8
cluster:
  id: Y2x1c3Rlci1pZA==
  clusterName: prod
  controlPlane:
    endpoint: https://prod.example:6443
  ca:
    crt: {crt}{kube_key}
  controllerManager:
    image: registry.k8s.io/kube-controller-manager:v1.33.0
---
apiVersion: v1alpha1
kind: SideroLinkConfig
apiUrl: grpc://192.0.2.10:8090?jointoken=x
",
            crt = b64(CERT),
            os_key = key(KEY),
            kube_key = key(KEY),
        )
    }

    #[test]
    fn reads_a_control_plane_config() {
        let c = MachineConfig::parse(
            config("controlplane", true, "/dev/sda").as_bytes(),
            &disks(),
        )
        .unwrap();
        assert_eq!(c.machine_type, MachineType::ControlPlane);
        assert_eq!(c.cluster_id, "Y2x1c3Rlci1pZA==");
        assert_eq!(c.cluster_name, "prod");
        assert_eq!(c.kubelet_version(), "v1.33.1");
        assert_eq!(
            c.images,
            KubernetesImages {
                kubelet: "ghcr.io/siderolabs/kubelet:v1.33.1".into(),
                api_server: "registry.k8s.io/kube-apiserver:v1.33.1".into(),
                controller_manager: "registry.k8s.io/kube-controller-manager:v1.33.0".into(),
                scheduler: "registry.k8s.io/kube-scheduler:v1.33.1".into(),
                proxy: "registry.k8s.io/kube-proxy:v1.33.1".into(),
                coredns: DEFAULT_COREDNS_IMAGE.into(),
            },
            "named images, defaults for the others"
        );
        assert_eq!(c.os_ca.cert_pem, CERT);
        assert!(c.os_ca.signer().is_some() && c.kubernetes_ca.signer().is_some());
    }

    #[test]
    fn a_worker_has_certificates_only() {
        let c =
            MachineConfig::parse(config("worker", false, "/dev/sda").as_bytes(), &disks()).unwrap();
        assert_eq!(c.machine_type, MachineType::Worker);
        assert!(c.os_ca.signer().is_none());
    }

    #[test]
    fn refusals_say_what_is_wrong() {
        let refuse = |yaml: &str| {
            MachineConfig::parse(yaml.as_bytes(), &disks())
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            refuse(&config("controlplane", true, "/dev/nvme9n1")),
            "machine.install.disk \"/dev/nvme9n1\" does not exist on this machine (disks: /dev/sda)"
        );
        assert_eq!(
            refuse("version: v1alpha1\nmachine: {}\n"),
            "machine.type is required"
        );
        assert_eq!(
            refuse(&config("router", true, "/dev/sda")),
            "machine.type \"router\" is not \"controlplane\" or \"worker\""
        );
        assert_eq!(
            refuse(&config("controlplane", false, "/dev/sda")),
            "machine.ca.key is required on a control plane"
        );
        assert_eq!(
            refuse("apiVersion: v1alpha1\nkind: SideroLinkConfig\n"),
            "the configuration has no v1alpha1 document"
        );
        assert!(refuse(": : :").starts_with("failed to parse config"));
        let no_id = config("worker", false, "/dev/sda").replace("  id: Y2x1c3Rlci1pZA==\n", "");
        assert_eq!(refuse(&no_id), "cluster.id is required");
        let bad_pem = config("worker", false, "/dev/sda").replace(&b64(CERT), &b64("nope"));
        assert!(refuse(&bad_pem).starts_with("machine.ca.crt is not PEM"));
        let untagged = config("worker", false, "/dev/sda").replace(
            "ghcr.io/siderolabs/kubelet:v1.33.1",
            "registry:5000/kubelet",
        );
        assert!(refuse(&untagged).starts_with("machine.kubelet.image"));
        let untagged = config("worker", false, "/dev/sda").replace(
            "kube-controller-manager:v1.33.0",
            "kube-controller-manager:latest",
        );
        assert!(refuse(&untagged).starts_with("cluster.controllerManager.image"));
    }

    #[test]
    fn image_tags() {
        assert_eq!(image_tag("registry.k8s.io/kube-proxy:v1.33.1"), "v1.33.1");
        assert_eq!(
            image_tag("registry:5000/kube-proxy:v1.33.1@sha256:ab"),
            "v1.33.1"
        );
        assert_eq!(image_tag("registry:5000/kube-proxy"), "");
        assert_eq!(image_tag("kube-proxy"), "");
    }
}
