use chrono::{DateTime, Utc};
use drover_model::{ApiTokenId, TenantId};
use sqlx::PgExecutor;

use crate::{Result, tenant_uuid};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ApiTokenRow {
    pub id: uuid::Uuid,
    pub tenant_id: uuid::Uuid,
    pub name: String,
    pub role: String,
    pub secret_hash: Vec<u8>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

pub struct NewApiToken<'a> {
    pub id: ApiTokenId,
    pub name: &'a str,
    pub role: &'a str,
    pub secret_hash: &'a [u8; 32],
    pub expires_at: Option<DateTime<Utc>>,
}

pub async fn insert(e: impl PgExecutor<'_>, tenant: TenantId, t: NewApiToken<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO api_tokens (id, tenant_id, name, role, secret_hash, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(t.id.as_uuid())
    .bind(tenant_uuid(tenant))
    .bind(t.name)
    .bind(t.role)
    .bind(&t.secret_hash[..])
    .bind(t.expires_at)
    .execute(e)
    .await?;
    Ok(())
}

/// Looks a token up by the id carried in its text: the step that establishes the tenant.
pub async fn find_by_id(e: impl PgExecutor<'_>, id: ApiTokenId) -> Result<Option<ApiTokenRow>> {
    Ok(sqlx::query_as(
        "SELECT id, tenant_id, name, role, secret_hash, created_at, expires_at, revoked_at, last_used_at
         FROM api_tokens WHERE id = $1",
    )
    .bind(id.as_uuid())
    .fetch_optional(e)
    .await?)
}

/// Records a use, at most once a minute per token so that busy clients do not write per request.
pub async fn touch(e: impl PgExecutor<'_>, tenant: TenantId, id: ApiTokenId) -> Result<()> {
    sqlx::query(
        "UPDATE api_tokens SET last_used_at = now()
         WHERE tenant_id = $1 AND id = $2
           AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')",
    )
    .bind(tenant_uuid(tenant))
    .bind(id.as_uuid())
    .execute(e)
    .await?;
    Ok(())
}
