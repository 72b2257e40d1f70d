//! The audit log's entries.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One recorded action: who did what to which object, when, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    /// Increases with every entry; pass the last one seen as `after` to follow the log.
    pub id: i64,
    pub at: DateTime<Utc>,
    /// `user:<e-mail>`, `token:<name>`, `machine:<id>`, ...
    pub actor: String,
    /// `resource.verb`, e.g. `cluster.create`, `joinToken.revoke`, `login`.
    pub action: String,
    /// The object's name or id; empty when there is none.
    pub target: String,
    /// `ok`, or how it failed: `denied: ...`, `invalid: ...`, `notFound`, `conflict: ...`,
    /// `exhausted: ...`, `error`.
    pub result: String,
}
