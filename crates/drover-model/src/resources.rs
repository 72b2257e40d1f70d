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
