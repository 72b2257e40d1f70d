//! Clusters, machine sets, config patches and machine classes: the desired state users write
//! (by API, CLI or template) and the status Drover reports back.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use utoipa::ToSchema;

use crate::MachineId;

/// The name of the control-plane machine set of every cluster.
pub const CONTROL_PLANE_SET: &str = "control-planes";

/// What a cluster should be. Stored as given (after validation) and reconciled toward.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterSpec {
    /// 1-63 characters: lower-case letters, digits and `-`, starting with a letter or digit.
    pub name: String,
    /// Talos version without a leading `v`, e.g. `1.13.0`.
    pub talos_version: String,
    /// Kubernetes version without a leading `v`, e.g. `1.33.1`.
    pub kubernetes_version: String,
    /// The control-plane machine set (its name is always `control-planes`).
    pub control_plane: MachineSetSpec,
    /// Named worker machine sets.
    #[serde(default)]
    pub workers: Vec<MachineSetSpec>,
    /// Cluster-scope config patches.
    #[serde(default)]
    pub patches: Vec<ConfigPatch>,
    /// Per-machine settings of machines in this cluster.
    #[serde(default)]
    pub machines: Vec<ClusterMachineSpec>,
}

impl ClusterSpec {
    /// The control-plane set followed by the worker sets.
    pub fn machine_sets(&self) -> impl Iterator<Item = (MachineRole, &MachineSetSpec)> {
        std::iter::once((MachineRole::ControlPlane, &self.control_plane))
            .chain(self.workers.iter().map(|set| (MachineRole::Worker, set)))
    }

    /// The machine set called `name`.
    pub fn machine_set(&self, name: &str) -> Option<(MachineRole, &MachineSetSpec)> {
        self.machine_sets().find(|(_, set)| set.name == name)
    }

    /// Whether the machine `id` is locked (keeps its config; no upgrade reaches it).
    pub fn is_locked(&self, id: &str) -> bool {
        self.machines
            .iter()
            .any(|m| m.id.as_str() == id && m.locked)
    }

    /// The per-machine settings of `id`, if any.
    pub fn machine(&self, id: &MachineId) -> Option<&ClusterMachineSpec> {
        self.machines.iter().find(|m| &m.id == id)
    }
}

/// A group of machines with one role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MachineSetSpec {
    /// `control-planes` for the control plane; a name of the user's choice for workers.
    pub name: String,
    /// Explicitly chosen machines (exclusive with `machineClass`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub machines: Vec<MachineId>,
    /// Machines picked from a machine class (exclusive with `machines`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_class: Option<MachineClassAllocation>,
    #[serde(default)]
    pub update_strategy: Strategy,
    #[serde(default)]
    pub delete_strategy: Strategy,
    /// Machine-set-scope config patches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patches: Vec<ConfigPatch>,
}

/// `size` machines of the class `name`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MachineClassAllocation {
    pub name: String,
    /// A number of machines, or `unlimited`.
    #[schema(value_type = String, example = "3")]
    pub size: ClassSize,
}

/// How many machines a class allocation takes: a number, or `unlimited` (every match).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassSize {
    Count(u32),
    Unlimited,
}

impl fmt::Display for ClassSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Count(n) => write!(f, "{n}"),
            Self::Unlimited => f.write_str("unlimited"),
        }
    }
}

impl Serialize for ClassSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Count(n) => serializer.serialize_u32(*n),
            Self::Unlimited => serializer.serialize_str("unlimited"),
        }
    }
}

impl<'de> Deserialize<'de> for ClassSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        let invalid =
            || serde::de::Error::custom("size must be a number of machines or \"unlimited\"");
        match Raw::deserialize(deserializer).map_err(|_| invalid())? {
            Raw::Number(n) => u32::try_from(n).map(Self::Count).map_err(|_| invalid()),
            Raw::Text(text) if text.eq_ignore_ascii_case("unlimited") => Ok(Self::Unlimited),
            Raw::Text(text) => text.parse().map(Self::Count).map_err(|_| invalid()),
        }
    }
}

/// How changes roll through a machine set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Strategy {
    #[serde(rename = "type", default)]
    pub kind: StrategyKind,
    /// How many machines of the set change at once (at least 1).
    #[serde(default = "one")]
    pub max_parallelism: u32,
}

fn one() -> u32 {
    1
}

impl Default for Strategy {
    fn default() -> Self {
        Self {
            kind: StrategyKind::Rolling,
            max_parallelism: 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum StrategyKind {
    /// `maxParallelism` machines at a time.
    #[default]
    Rolling,
    /// All machines of the set at once.
    Unset,
}

/// A named config patch: a strategic merge patch (a partial machine config, YAML) or an RFC 6902
/// JSON patch (a YAML or JSON list of operations).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigPatch {
    /// Unique within its scope; orders patches of equal weight.
    pub name: String,
    /// Lower weights apply first within a scope.
    #[serde(default)]
    pub weight: i32,
    /// The patch text.
    pub content: String,
}

/// Settings of one machine in a cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterMachineSpec {
    pub id: MachineId,
    /// The disk to install Talos on; default: the machine's system disk, else its first disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install_disk: Option<String>,
    /// Cluster-machine-scope config patches (the highest precedence).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patches: Vec<ConfigPatch>,
    /// User labels to set on the machine.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// A locked machine keeps its current config: no config changes or upgrades reach it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub locked: bool,
}

/// The role machines of a set get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum MachineRole {
    ControlPlane,
    Worker,
}

impl MachineRole {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ControlPlane => "controlplane",
            Self::Worker => "worker",
        }
    }
}

/// A cluster: what it should be and what it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Cluster {
    pub spec: ClusterSpec,
    pub status: ClusterStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Where a cluster is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum ClusterPhase {
    /// Machines are being added (this includes a new cluster's first start).
    ScalingUp,
    /// Machines are being removed.
    ScalingDown,
    /// Configs are being changed on running machines.
    Reconfiguring,
    /// A Talos or Kubernetes upgrade is rolling (see the cluster's upgrade).
    Upgrading,
    /// Every machine runs its current config.
    Running,
    /// Every machine is being reset before the cluster is forgotten.
    Destroying,
    /// Progress is blocked by an error (see `lastError`).
    Failed,
}

/// What Drover observed of a cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    pub phase: ClusterPhase,
    /// Every machine runs its current config, etcd has all control planes, Kubernetes answers.
    pub ready: bool,
    pub machines_total: u32,
    pub machines_ready: u32,
    /// Machines the spec asks for that could not be allocated yet (e.g. too few in a class).
    pub machines_missing: u32,
    /// Whether etcd was bootstrapped (done once per cluster).
    pub bootstrapped: bool,
    /// etcd members Drover last saw.
    pub etcd_members: u32,
    /// Whether the Kubernetes API answered `/readyz` at the last check.
    pub kubernetes_api_ready: bool,
    /// The control-plane endpoint (Kubernetes API URL) machines are configured with.
    pub control_plane_endpoint: Option<String>,
    pub last_error: Option<String>,
    /// Set once a break-glass credential was issued for the cluster: it stays until the
    /// cluster's CAs are rotated.
    #[serde(default)]
    pub tainted: Option<crate::ClusterTaint>,
    pub machines: Vec<ClusterMachineStatus>,
}

/// One machine of a cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterMachineStatus {
    pub id: MachineId,
    pub machine_set: String,
    pub role: MachineRole,
    /// Drover's progress with this machine.
    pub phase: ClusterMachinePhase,
    /// The stage the node last reported (`maintenance`, `installing`, `running`, ...).
    pub stage: Option<String>,
    pub connected: bool,
    pub ready: bool,
    /// The machine runs the config Drover last rendered for it.
    pub config_up_to_date: bool,
    pub locked: bool,
    pub etcd_member_id: Option<String>,
    pub last_error: Option<String>,
}

/// Drover's progress with one machine of a cluster, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum ClusterMachinePhase {
    /// Taken for the cluster; no config applied yet.
    Allocated,
    /// Config applied in maintenance mode; the node installs and reboots.
    Installing,
    /// The node runs with its config.
    Running,
    /// Leaving the cluster: its etcd member is being removed.
    Leaving,
    /// Leaving the cluster: the node is being reset (STATE and EPHEMERAL wiped).
    Resetting,
}

impl ClusterMachinePhase {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allocated => "allocated",
            Self::Installing => "installing",
            Self::Running => "running",
            Self::Leaving => "leaving",
            Self::Resetting => "resetting",
        }
    }
}

/// A named label selector over machines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MachineClass {
    pub name: String,
    /// A machine matches when it matches any one selector; see [`crate::LabelSelector`].
    pub selectors: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Create or replace a machine class.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MachineClassSpec {
    pub name: String,
    pub selectors: Vec<String>,
}

/// What `apply_cluster` did (or, with `dry_run`, would do).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterChanges {
    /// One line per change; empty when the cluster already matches.
    pub changes: Vec<String>,
    pub created: bool,
    pub dry_run: bool,
}

/// The config Drover renders for a machine (secrets redacted), and how it differs from the one
/// the machine was last given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MachineConfigView {
    pub machine: MachineId,
    pub cluster: String,
    pub redacted: String,
    /// Unified diff from the applied config to this one; empty when up to date.
    pub diff: String,
    pub up_to_date: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_size_reads_numbers_and_unlimited() {
        let parse = |text: &str| serde_json::from_str::<ClassSize>(text);
        assert_eq!(parse("3").unwrap(), ClassSize::Count(3));
        assert_eq!(parse("\"unlimited\"").unwrap(), ClassSize::Unlimited);
        assert_eq!(parse("\"2\"").unwrap(), ClassSize::Count(2));
        let err = parse("\"lots\"").unwrap_err().to_string();
        assert!(err.contains("\"unlimited\""), "{err}");
        assert!(parse("-1").is_err());
        assert_eq!(
            serde_json::to_string(&ClassSize::Unlimited).unwrap(),
            "\"unlimited\""
        );
    }

    #[test]
    fn strategies_default_to_rolling_one_at_a_time() {
        let set: MachineSetSpec = serde_json::from_str(r#"{"name":"w","machines":["a"]}"#).unwrap();
        assert_eq!(set.update_strategy, Strategy::default());
        assert_eq!(set.update_strategy.max_parallelism, 1);
        let err = serde_json::from_str::<MachineSetSpec>(r#"{"name":"w","bogus":1}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("bogus"), "{err}");
    }
}
