//! Rolling upgrades of a cluster's Talos or Kubernetes version, and the cluster's event log.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::MachineId;

/// What an upgrade changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum UpgradeKind {
    Talos,
    Kubernetes,
}

impl UpgradeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Talos => "talos",
            Self::Kubernetes => "kubernetes",
        }
    }
}

/// Where an upgrade is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum UpgradeState {
    Running,
    /// No node starts; steps under way finish.
    Paused,
    Cancelled,
    /// Stopped at a node's failure (see `error`).
    Failed,
    Done,
}

impl UpgradeState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Cancelled => "cancelled",
            Self::Failed => "failed",
            Self::Done => "done",
        }
    }

    /// Running or paused.
    pub fn is_active(self) -> bool {
        matches!(self, Self::Running | Self::Paused)
    }
}

/// A request to move a cluster to another version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StartUpgrade {
    pub kind: UpgradeKind,
    /// The target version, with or without a leading `v`.
    pub version: String,
    /// Only return the plan.
    #[serde(default)]
    pub dry_run: bool,
}

/// One node's progress in an upgrade.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpgradeNodeStatus {
    pub machine: MachineId,
    /// `talos`, `kube-apiserver`, ...
    pub step: String,
    /// `inProgress`, `done` or `failed`.
    pub state: String,
    pub error: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// An upgrade: what it does, how far it is, and (for a dry run or a running one) its plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Upgrade {
    /// Absent for a dry run.
    pub id: Option<uuid::Uuid>,
    pub cluster: String,
    pub kind: UpgradeKind,
    pub from_version: String,
    pub to_version: String,
    pub state: UpgradeState,
    pub error: Option<String>,
    /// The per-node plan, as printed by `--dry-run`.
    pub plan: String,
    pub nodes: Vec<UpgradeNodeStatus>,
    pub created_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// Something that happened to a cluster (upgrade started, node done, failed, finished, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterEvent {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub kind: String,
    pub message: String,
}
