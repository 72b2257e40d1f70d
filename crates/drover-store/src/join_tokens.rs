use chrono::{DateTime, Utc};
use drover_model::{JoinTokenId, TenantId};
use sqlx::PgExecutor;

use crate::{Result, tenant_uuid};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct JoinTokenRow {
    pub id: uuid::Uuid,
    pub tenant_id: uuid::Uuid,
    pub name: String,
    pub secret_hash: Vec<u8>,
    pub is_default: bool,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub use_count: i64,
    pub last_used_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "id, tenant_id, name, secret_hash, is_default, created_at, expires_at, \
                       revoked_at, use_count, last_used_at";

pub struct NewJoinToken<'a> {
    pub id: JoinTokenId,
    pub name: &'a str,
    pub secret_hash: &'a [u8; 32],
    pub expires_at: Option<DateTime<Utc>>,
}

/// Inserts a token; it becomes the default if `make_default` or if the tenant has no default.
pub async fn insert(
    e: impl PgExecutor<'_>,
    tenant: TenantId,
    t: NewJoinToken<'_>,
    make_default: bool,
) -> Result<JoinTokenRow> {
    Ok(sqlx::query_as(&format!(
        "INSERT INTO join_tokens (id, tenant_id, name, secret_hash, expires_at, is_default)
         VALUES ($1, $2, $3, $4, $5,
                 $6 OR NOT EXISTS (SELECT 1 FROM join_tokens WHERE tenant_id = $2 AND is_default))
         RETURNING {COLUMNS}"
    ))
    .bind(t.id.as_uuid())
    .bind(tenant_uuid(tenant))
    .bind(t.name)
    .bind(&t.secret_hash[..])
    .bind(t.expires_at)
    .bind(make_default)
    .fetch_one(e)
    .await?)
}

pub async fn list(e: impl PgExecutor<'_>, tenant: TenantId) -> Result<Vec<JoinTokenRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM join_tokens WHERE tenant_id = $1 ORDER BY created_at, name"
    ))
    .bind(tenant_uuid(tenant))
    .fetch_all(e)
    .await?)
}

pub async fn get(
    e: impl PgExecutor<'_>,
    tenant: TenantId,
    id: JoinTokenId,
) -> Result<Option<JoinTokenRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM join_tokens WHERE tenant_id = $1 AND id = $2"
    ))
    .bind(tenant_uuid(tenant))
    .bind(id.as_uuid())
    .fetch_optional(e)
    .await?)
}

pub async fn get_by_name(
    e: impl PgExecutor<'_>,
    tenant: TenantId,
    name: &str,
) -> Result<Option<JoinTokenRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM join_tokens WHERE tenant_id = $1 AND name = $2"
    ))
    .bind(tenant_uuid(tenant))
    .bind(name)
    .fetch_optional(e)
    .await?)
}

/// Revokes a token (idempotent: the first revocation time is kept). A revoked token stops being
/// the default.
pub async fn revoke(
    e: impl PgExecutor<'_>,
    tenant: TenantId,
    id: JoinTokenId,
) -> Result<Option<JoinTokenRow>> {
    Ok(sqlx::query_as(&format!(
        "UPDATE join_tokens SET revoked_at = coalesce(revoked_at, now()), is_default = false
         WHERE tenant_id = $1 AND id = $2 RETURNING {COLUMNS}"
    ))
    .bind(tenant_uuid(tenant))
    .bind(id.as_uuid())
    .fetch_optional(e)
    .await?)
}

/// Clears the tenant's default flag; call before [`set_default`] in the same transaction.
pub async fn clear_default(e: impl PgExecutor<'_>, tenant: TenantId) -> Result<()> {
    sqlx::query("UPDATE join_tokens SET is_default = false WHERE tenant_id = $1 AND is_default")
        .bind(tenant_uuid(tenant))
        .execute(e)
        .await?;
    Ok(())
}

pub async fn set_default(
    e: impl PgExecutor<'_>,
    tenant: TenantId,
    id: JoinTokenId,
) -> Result<Option<JoinTokenRow>> {
    Ok(sqlx::query_as(&format!(
        "UPDATE join_tokens SET is_default = true WHERE tenant_id = $1 AND id = $2 RETURNING {COLUMNS}"
    ))
    .bind(tenant_uuid(tenant))
    .bind(id.as_uuid())
    .fetch_optional(e)
    .await?)
}

/// Looks a token up by the id carried in its text: the step that establishes the tenant of a
/// joining node.
pub async fn find_for_provision(
    e: impl PgExecutor<'_>,
    id: JoinTokenId,
) -> Result<Option<JoinTokenRow>> {
    Ok(
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM join_tokens WHERE id = $1"))
            .bind(id.as_uuid())
            .fetch_optional(e)
            .await?,
    )
}

/// Counts a successful join, only if the token is still usable (not revoked or expired since it
/// was checked). Returns false when it no longer is, so the caller rolls its transaction back.
pub async fn record_use(e: impl PgExecutor<'_>, tenant: TenantId, id: JoinTokenId) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE join_tokens SET use_count = use_count + 1, last_used_at = now()
         WHERE tenant_id = $1 AND id = $2
           AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())",
    )
    .bind(tenant_uuid(tenant))
    .bind(id.as_uuid())
    .execute(e)
    .await?;
    Ok(done.rows_affected() == 1)
}
