use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{JoinTokenId, MachineId};

/// A machine in the inventory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Machine {
    /// The node's SMBIOS UUID (lower case).
    pub id: MachineId,
    /// The machine's SideroLink tunnel address; stable across reboots and re-provisioning.
    pub address: String,
    /// The Talos version the node reported when it last provisioned, e.g. `v1.13.8`.
    pub talos_version: String,
    /// Whether the machine's tunnel is up (its last WireGuard handshake is recent).
    pub connected: bool,
    /// When the machine was last heard from over its tunnel.
    pub last_seen_at: Option<DateTime<Utc>>,
    /// The node's current WireGuard public key (base64).
    pub wireguard_public_key: String,
    /// The node asked for WireGuard carried over gRPC instead of UDP.
    pub wireguard_over_grpc: bool,
    /// The join token the machine last provisioned with.
    pub join_token_id: Option<JoinTokenId>,
    pub first_provisioned_at: DateTime<Utc>,
    pub last_provisioned_at: DateTime<Utc>,
    /// The lifecycle stage the node last reported (`maintenance`, `installing`, `running`, ...).
    pub stage: Option<String>,
    /// Whether the node last reported itself ready.
    pub ready: bool,
    /// Why the node is not ready, as it reported.
    pub unmet_conditions: Vec<UnmetCondition>,
    /// The last error the node reported for a boot sequence.
    pub last_error: Option<String>,
    /// Facts read through the machine's API after it connected.
    pub facts: Option<MachineFacts>,
    /// User labels and Drover's automatic `drover.dev/*` labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Machine-scope config patches (the lowest precedence).
    #[serde(default)]
    pub patches: Vec<crate::ConfigPatch>,
    /// The cluster the machine belongs to.
    #[serde(default)]
    pub cluster: Option<String>,
}

/// A condition that keeps a node from being ready.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UnmetCondition {
    pub name: String,
    pub reason: String,
}

/// What Drover read from a machine's Talos API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MachineFacts {
    pub hostname: String,
    /// Talos version tag reported by the node, e.g. `v1.13.8`.
    pub talos_version: String,
    pub arch: String,
    /// Platform name (`metal`, `aws`, `nocloud`, ...) and mode (`metal`, `container`, ...).
    pub platform: String,
    pub platform_mode: String,
    pub disks: Vec<Disk>,
    /// Logical CPUs, when the node reported them.
    #[serde(default)]
    pub cores: Option<u32>,
    /// Total memory in MiB, when the node reported it.
    #[serde(default)]
    pub memory_mib: Option<u64>,
    pub collected_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Disk {
    pub device_name: String,
    pub size: u64,
    pub model: String,
    pub serial: String,
    /// The disk Talos is installed on (or boots from).
    pub system_disk: bool,
}

/// One kernel log record a machine sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LogLine {
    /// Increases with every line stored for the machine; pass as `after` to read on.
    pub seq: i64,
    pub received_at: DateTime<Utc>,
    /// The node's own timestamp (RFC 3339).
    pub talos_time: Option<String>,
    pub level: Option<String>,
    pub facility: Option<String>,
    pub message: String,
}

/// Lines after a position, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LogPage {
    pub lines: Vec<LogLine>,
    /// Pass as `after` for the next lines (equal to the request's when there are none).
    pub after: i64,
}

/// One page of a list, with the cursor of the next page if there is one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Whether a join token can be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JoinTokenState {
    Active,
    Revoked,
    Expired,
}

impl JoinTokenState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
        }
    }
}

/// A join token. Its secret value is shown once, at creation, and never again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JoinToken {
    pub id: JoinTokenId,
    pub name: String,
    pub state: JoinTokenState,
    /// New machines join with the default token when none is named.
    pub is_default: bool,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// How many successful Provision calls used this token.
    pub use_count: u64,
    pub last_used_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// A request to create a join token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateJoinToken {
    /// 1-63 characters: lower-case letters, digits and `-`, starting with a letter or digit.
    pub name: String,
    /// When the token stops working; absent = never.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    /// Make it the default token.
    #[serde(default)]
    pub make_default: bool,
}

/// What a node needs to join with a token: kernel arguments, or the equivalent config documents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JoinInstructions {
    /// `siderolink.api=...`, `talos.events.sink=...`, `talos.logging.kernel=...`
    pub kernel_args: Vec<String>,
    /// The same as a multi-document machine config patch: `SideroLinkConfig`, `EventSinkConfig`,
    /// `KmsgLogConfig`.
    pub join_config: String,
}

/// A newly created join token with its secret, which is not shown again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedJoinToken {
    pub token: JoinToken,
    pub secret: String,
    #[serde(flatten)]
    pub join: JoinInstructions,
}

/// How a machine search orders its results.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum MachineSort {
    #[default]
    Id,
    Hostname,
    TalosVersion,
    Stage,
    LastSeen,
}

/// A search of the inventory: every filter that is set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct MachineSearch {
    /// Part of the id, the tunnel address or the hostname (case-insensitive).
    pub text: Option<String>,
    pub connected: Option<bool>,
    /// Available: in no cluster.
    pub available: Option<bool>,
    /// Only the machines of this cluster.
    pub cluster: Option<String>,
    /// User labels that must be present: `key` (any value) or `key=value`.
    pub labels: Vec<String>,
    pub sort: MachineSort,
    pub descending: bool,
    pub offset: u32,
    pub limit: u32,
}

/// One page of a machine search and how many machines match in all.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MachineSearchPage {
    pub items: Vec<Machine>,
    pub total: u64,
    pub offset: u32,
    pub limit: u32,
}
