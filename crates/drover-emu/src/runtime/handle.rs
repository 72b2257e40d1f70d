//! What tests and tools see of a running machine: its [`NodeStatus`] through a [`NodeHandle`],
//! the [`Lifecycle`] timings, and the upgrade faults they inject.

use std::net::Ipv6Addr;
use std::sync::Arc;
use std::time::Duration;

use drover_talos::events::Stage;

use super::NodeRuntime;
use super::upgrade::UpgradeFault;
use crate::config::MachineType;

/// How long the lifecycle steps of an emulated machine take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifecycle {
    /// Installing Talos to disk after a configuration is applied in maintenance mode.
    pub install: Duration,
    /// Down during a reboot (between the tunnel going away and the new boot provisioning).
    pub reboot: Duration,
    /// An upgrade's pull and install of the new version, before its reboot.
    pub upgrade: Duration,
}

impl Default for Lifecycle {
    /// One second to install or reboot, two to upgrade: visible, but quick.
    fn default() -> Self {
        Self {
            install: Duration::from_secs(1),
            reboot: Duration::from_secs(1),
            upgrade: Duration::from_secs(2),
        }
    }
}

impl Lifecycle {
    /// No delays (for tests).
    pub const INSTANT: Lifecycle = Lifecycle {
        install: Duration::ZERO,
        reboot: Duration::ZERO,
        upgrade: Duration::ZERO,
    };
}

/// What a machine reports about itself, for tests and tools (see [`NodeHandle`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    /// The stage of the last `MachineStatusEvent`.
    pub stage: Stage,
    pub ready: bool,
    /// Changes with every boot (like `/proc/sys/kernel/random/boot_id`).
    pub boot_id: String,
    /// The Talos version this boot runs (what `Version` reports), e.g. `v1.13.8`.
    pub talos_version: String,
    /// The tunnel address of this boot, once provisioned.
    pub address: Option<Ipv6Addr>,
    /// The configuration the machine runs (or will run after its reboot), if any.
    pub config: Option<RunningConfig>,
}

/// The configuration a machine runs, as applied.
#[derive(Clone, PartialEq, Eq)]
pub struct RunningConfig {
    pub machine_type: MachineType,
    pub cluster_id: String,
    pub cluster_name: String,
    pub kubelet_version: String,
    /// The configuration as applied (YAML; it holds secrets).
    pub yaml: String,
}

impl std::fmt::Debug for RunningConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningConfig")
            .field("machine_type", &self.machine_type)
            .field("cluster_id", &self.cluster_id)
            .field("cluster_name", &self.cluster_name)
            .field("kubelet_version", &self.kubelet_version)
            .finish_non_exhaustive()
    }
}

/// A view of a machine that stays valid while it runs (clone freely), and the switch for its
/// upgrade faults.
#[derive(Clone)]
pub struct NodeHandle {
    pub(super) runtime: Arc<NodeRuntime>,
}

impl std::fmt::Debug for NodeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeHandle")
            .field("uuid", &self.uuid())
            .field("status", &self.status())
            .finish()
    }
}

impl NodeHandle {
    /// The machine's SMBIOS UUID.
    pub fn uuid(&self) -> &str {
        &self.runtime.uuid
    }

    /// The hostname it reports (and its Kubernetes node name).
    pub fn hostname(&self) -> &str {
        &self.runtime.facts.hostname
    }

    pub fn status(&self) -> NodeStatus {
        self.runtime.status.borrow().clone()
    }

    /// Waits until `done` holds for the status (checked now and after every change) and
    /// returns that status. Wrap it in a timeout.
    pub async fn wait_until(&self, mut done: impl FnMut(&NodeStatus) -> bool) -> NodeStatus {
        let mut status = self.runtime.status.subscribe();
        let seen = status
            .wait_for(|s| done(s))
            .await
            .expect("the runtime holds the sender");
        seen.clone()
    }

    /// Makes the machine's upgrades go wrong this way from now on (also one under way, where
    /// the fault still can: a cleared `Hang` goes on), until set again; `None` clears it.
    pub fn set_upgrade_fault(&self, fault: Option<UpgradeFault>) {
        self.runtime.faults.send_replace(fault);
    }

    pub fn upgrade_fault(&self) -> Option<UpgradeFault> {
        *self.runtime.faults.borrow()
    }
}
