//! Who is calling: users, sessions, API tokens as the APIs show them.

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
