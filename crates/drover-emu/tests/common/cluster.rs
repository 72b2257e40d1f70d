//! Driving emulated machines into a cluster as droverd does: a cluster's secrets and machine
//! configurations, fleets on a [`TunnelPlane`], and waits on what the machines report.

use std::net::Ipv6Addr;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use drover_emu::{
    CallLog, CancellationToken, ClusterRegistry, Fleet, FleetConfig, Lifecycle, MachineType,
    NodeHandle, NodeStatus, Stage,
};
use drover_pki::{CertAndKey, kubernetes_client_cert, talos_client_cert};
use drover_talos::{ApplyMode, client};
use secrecy::ExposeSecret as _;
use serde_json::Value;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use super::plane::{TunnelPlane, fast_node, fast_retry, within};

pub const HOUR: Duration = Duration::from_secs(3600);

/// What droverd would keep for a cluster: its id and CAs.
pub struct Secrets {
    pub cluster_id: String,
    pub os_ca: CertAndKey,
    pub kubernetes_ca: CertAndKey,
}

impl Secrets {
    pub fn generate(name: &str) -> Self {
        let now = chrono::Utc::now();
        Self {
            cluster_id: BASE64.encode(format!("{name}-cluster-id")),
            os_ca: drover_pki::generate_os_ca(name, now).unwrap(),
            kubernetes_ca: drover_pki::generate_kubernetes_ca(name, now).unwrap(),
        }
    }

    /// A machine configuration like droverd's: keys only for control planes, the kubelet and
    /// API server at `kubernetes`.
    pub fn config(&self, machine_type: MachineType, kubernetes: &str) -> Vec<u8> {
        self.config_with(machine_type, kubernetes, "")
    }

    /// [`Secrets::config`] with more `cluster` fields (YAML indented by two spaces).
    pub fn config_with(
        &self,
        machine_type: MachineType,
        kubernetes: &str,
        cluster_fields: &str,
    ) -> Vec<u8> {
        let b64 = |s: &str| BASE64.encode(s);
        let control_plane = machine_type == MachineType::ControlPlane;
        let key = |ca: &CertAndKey| {
            if control_plane {
                format!("\n    key: {}", b64(ca.key_pem.expose_secret()))
            } else {
                String::new()
            }
        };
        format!(
            "version: v1alpha1
machine:
  type: {kind}
  token: abcdef.0123456789abcdef
  ca:
    crt: {os_crt}{os_key}
  kubelet:
    image: ghcr.io/siderolabs/kubelet:{kubernetes}
  install:
    disk: /dev/sda
cluster:
  id: {id}
  clusterName: emu
  controlPlane:
    endpoint: https://emu.example:6443
  ca:
    crt: {kube_crt}{kube_key}
  apiServer:
    image: registry.k8s.io/kube-apiserver:{kubernetes}
{cluster_fields}",
            kind = machine_type.as_str(),
            os_crt = b64(&self.os_ca.cert_pem),
            os_key = key(&self.os_ca),
            id = self.cluster_id,
            kube_crt = b64(&self.kubernetes_ca.cert_pem),
            kube_key = key(&self.kubernetes_ca),
        )
        .into_bytes()
    }

    pub fn talos_client(&self, role: &str) -> CertAndKey {
        talos_client_cert(&self.os_ca, "drover", role, HOUR).unwrap()
    }

    pub fn kube_client(&self, user: &str, groups: &[&str]) -> CertAndKey {
        kubernetes_client_cert(&self.kubernetes_ca, user, groups, HOUR).unwrap()
    }

    /// The apid of a configured `node` for a client with `role`.
    pub fn apid(&self, plane: &TunnelPlane, node: &NodeHandle, role: &str) -> Channel {
        let address = node.status().address.expect("a provisioned machine");
        plane.apid(address, &self.os_ca, &self.talos_client(role))
    }
}

pub struct Running {
    pub nodes: Vec<NodeHandle>,
    pub clusters: ClusterRegistry,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl Running {
    pub fn calls(&self) -> &CallLog {
        self.clusters.calls()
    }

    pub async fn stop(self) {
        self.cancel.cancel();
        within("the fleet stops", self.task).await.unwrap();
    }
}

/// `n` machines joined to `plane`, installing and rebooting instantly.
pub fn run_fleet(plane: &TunnelPlane, n: usize, seed: &str) -> Running {
    let mut config = FleetConfig::new(plane.api(), n);
    config.seed = seed.into();
    config.lifecycle = Lifecycle::INSTANT;
    run(config)
}

/// The fleet `config` describes, running.
pub fn run(config: FleetConfig) -> Running {
    let mut fleet = Fleet::new(config);
    let nodes = fleet.nodes();
    let clusters = fleet.clusters().clone();
    let cancel = CancellationToken::new();
    let task = tokio::spawn({
        let cancel = cancel.clone();
        async move {
            fleet
                .run(&fast_retry(), &fast_node(), &cancel)
                .await
                .unwrap()
        }
    });
    Running {
        nodes,
        clusters,
        cancel,
        task,
    }
}

pub async fn wait(
    node: &NodeHandle,
    what: &str,
    done: impl FnMut(&NodeStatus) -> bool,
) -> NodeStatus {
    within(what, node.wait_until(done)).await
}

/// Waits until `node` is in maintenance mode and `plane` heard so through the tunnel (as
/// droverd learns it: the tunnel then carries traffic both ways); its address and boot id.
pub async fn in_maintenance(plane: &TunnelPlane, node: &NodeHandle) -> (Ipv6Addr, String) {
    let status = wait(node, "maintenance", |s| {
        s.stage == Stage::Maintenance && s.ready && s.address.is_some()
    })
    .await;
    let address = status.address.unwrap();
    plane
        .stages_until(address, |s| s.ends_with(&[Stage::Maintenance]))
        .await;
    (address, status.boot_id)
}

pub async fn running(node: &NodeHandle) -> NodeStatus {
    wait(node, "running", |s| {
        s.stage == Stage::Running && s.ready && s.address.is_some()
    })
    .await
}

/// Retries a call until the node's new boot answers (its tunnel may still be coming up).
pub async fn eventually<T, E: std::fmt::Debug, F: Future<Output = Result<T, E>>>(
    what: &str,
    mut call: impl FnMut() -> F,
) -> T {
    within(what, async {
        loop {
            match call().await {
                Ok(value) => return value,
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    })
    .await
}

pub fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// Installs `configs[i]` on `nodes[i]` through maintenance mode and waits until each runs it.
pub async fn install(plane: &TunnelPlane, nodes: &[NodeHandle], configs: &[Vec<u8>]) {
    for (node, config) in nodes.iter().zip(configs) {
        let (address, _) = in_maintenance(plane, node).await;
        client::apply_configuration(&plane.maintenance_apid(address), config, ApplyMode::Auto)
            .await
            .unwrap();
    }
    for node in nodes {
        running(node).await;
    }
}
