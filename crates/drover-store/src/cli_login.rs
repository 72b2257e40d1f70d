//! CLI logins: one-time codes handed to the CLI's loopback listener, and the refresh tokens
//! that renew a CLI's session. Both are found by their SHA-256 and taken (deleted) when used.

use chrono::{DateTime, Utc};
use drover_model::{TenantId, UserId};
use sqlx::PgExecutor;

use crate::{Result, tenant_uuid};

/// Whose a code or a refresh token is.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Grant {
    pub tenant_id: uuid::Uuid,
    pub user_id: uuid::Uuid,
    pub expires_at: DateTime<Utc>,
}

impl Grant {
    pub fn tenant(&self) -> TenantId {
        TenantId::from_uuid(self.tenant_id)
    }

    pub fn user(&self) -> UserId {
        UserId::from_uuid(self.user_id)
    }
}

/// A code's grant and the challenge the CLI started with.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CodeRow {
    #[sqlx(flatten)]
    pub grant: Grant,
    pub challenge: String,
}

pub async fn insert_code(
    e: impl PgExecutor<'_>,
    tenant: TenantId,
    user: UserId,
    code_hash: &[u8; 32],
    challenge: &str,
    expires_at: DateTime<Utc>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO cli_codes (code_hash, tenant_id, user_id, challenge, expires_at)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&code_hash[..])
    .bind(tenant_uuid(tenant))
    .bind(user.as_uuid())
    .bind(challenge)
    .bind(expires_at)
    .execute(e)
    .await?;
    Ok(())
}

/// Takes the code with this hash (whatever follows, it cannot be used again).
pub async fn take_code(e: impl PgExecutor<'_>, code_hash: &[u8; 32]) -> Result<Option<CodeRow>> {
    Ok(sqlx::query_as(
        "DELETE FROM cli_codes WHERE code_hash = $1
         RETURNING tenant_id, user_id, expires_at, challenge",
    )
    .bind(&code_hash[..])
    .fetch_optional(e)
    .await?)
}

pub async fn insert_refresh_token(
    e: impl PgExecutor<'_>,
    tenant: TenantId,
    user: UserId,
    token_hash: &[u8; 32],
    expires_at: DateTime<Utc>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO cli_refresh_tokens (token_hash, tenant_id, user_id, expires_at)
         VALUES ($1, $2, $3, $4)",
    )
    .bind(&token_hash[..])
    .bind(tenant_uuid(tenant))
    .bind(user.as_uuid())
    .bind(expires_at)
    .execute(e)
    .await?;
    Ok(())
}

/// Takes the refresh token with this hash.
pub async fn take_refresh_token(
    e: impl PgExecutor<'_>,
    token_hash: &[u8; 32],
) -> Result<Option<Grant>> {
    Ok(sqlx::query_as(
        "DELETE FROM cli_refresh_tokens WHERE token_hash = $1
         RETURNING tenant_id, user_id, expires_at",
    )
    .bind(&token_hash[..])
    .fetch_optional(e)
    .await?)
}

/// Forgets expired codes and refresh tokens of every tenant (housekeeping).
pub async fn delete_expired(e: impl PgExecutor<'_> + Copy) -> Result<()> {
    sqlx::query("DELETE FROM cli_codes WHERE expires_at <= now()")
        .execute(e)
        .await?;
    sqlx::query("DELETE FROM cli_refresh_tokens WHERE expires_at <= now()")
        .execute(e)
        .await?;
    Ok(())
}
