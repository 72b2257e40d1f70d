//! Who is calling: users, sessions, API tokens as the APIs show them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{ApiTokenId, Role, ServiceAccountId, ServiceAccountKeyId, TenantId, UserId};

/// The caller of `GET /api/v1/me`: who, in which tenant, with which role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Me {
    pub principal: MePrincipal,
    pub tenant: TenantId,
    pub role: Role,
    /// For a browser session: the token to send in the `X-CSRF-Token` header with every request
    /// that changes something. Absent for bearer tokens, which need none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csrf_token: Option<String>,
}

/// The credential behind a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum MePrincipal {
    /// A person, logged in through OpenID Connect.
    #[serde(rename_all = "camelCase")]
    User {
        id: UserId,
        email: String,
        name: String,
    },
    /// An API token (`Authorization: Bearer`).
    #[serde(rename_all = "camelCase")]
    ApiToken { id: ApiTokenId, name: String },
    /// A service account, by one of its keys (`Authorization: Bearer drs_...`).
    #[serde(rename_all = "camelCase")]
    ServiceAccount {
        id: ServiceAccountId,
        name: String,
        key_id: ServiceAccountKeyId,
    },
}

/// What the CLI keeps after logging in (secret: `Debug` shows no token).
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CliCredential {
    /// `Authorization: Bearer` value, until `expires_at`.
    pub token: String,
    pub expires_at: DateTime<Utc>,
    /// Exchange for a new credential before `refresh_expires_at`; works once.
    pub refresh_token: String,
    pub refresh_expires_at: DateTime<Utc>,
    pub email: String,
}

impl std::fmt::Debug for CliCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CliCredential")
            .field("email", &self.email)
            .field("expires_at", &self.expires_at)
            .field("refresh_expires_at", &self.refresh_expires_at)
            .finish_non_exhaustive()
    }
}
