//! Browser sessions and the logins that lead to them.
//!
//! A session is found by the SHA-256 of its cookie secret: like an API token, that lookup is
//! what establishes the tenant. A login attempt (state, nonce, PKCE verifier) lives here between
//! the redirect to the provider and the callback, so any replica can finish the login.

use chrono::{DateTime, Utc};
use drover_model::{TenantId, UserId};
use sqlx::PgExecutor;

use crate::{Result, tenant_uuid};

/// A live session with its user.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionRow {
    pub tenant_id: uuid::Uuid,
    pub user_id: uuid::Uuid,
    pub email: String,
    pub name: String,
    pub role: String,
    pub expires_at: DateTime<Utc>,
}

pub async fn insert(
    e: impl PgExecutor<'_>,
    tenant: TenantId,
    user: UserId,
    id_hash: &[u8; 32],
    expires_at: DateTime<Utc>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO sessions (id_hash, tenant_id, user_id, expires_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(&id_hash[..])
    .bind(tenant_uuid(tenant))
    .bind(user.as_uuid())
    .bind(expires_at)
    .execute(e)
    .await?;
    Ok(())
}

/// The unexpired session with this hash, and its user.
pub async fn find_active(e: impl PgExecutor<'_>, id_hash: &[u8; 32]) -> Result<Option<SessionRow>> {
    Ok(sqlx::query_as(
        "SELECT s.tenant_id, s.user_id, u.email, u.name, u.role, s.expires_at
         FROM sessions s JOIN users u ON u.tenant_id = s.tenant_id AND u.id = s.user_id
         WHERE s.id_hash = $1 AND s.expires_at > now()",
    )
    .bind(&id_hash[..])
    .fetch_optional(e)
    .await?)
}

/// Records a use, at most once a minute per session.
pub async fn touch(e: impl PgExecutor<'_>, tenant: TenantId, id_hash: &[u8; 32]) -> Result<()> {
    sqlx::query(
        "UPDATE sessions SET last_seen_at = now()
         WHERE tenant_id = $1 AND id_hash = $2 AND last_seen_at < now() - interval '1 minute'",
    )
    .bind(tenant_uuid(tenant))
    .bind(&id_hash[..])
    .execute(e)
    .await?;
    Ok(())
}

/// Ends a session; false if there was none.
pub async fn delete(e: impl PgExecutor<'_>, tenant: TenantId, id_hash: &[u8; 32]) -> Result<bool> {
    let done = sqlx::query("DELETE FROM sessions WHERE tenant_id = $1 AND id_hash = $2")
        .bind(tenant_uuid(tenant))
        .bind(&id_hash[..])
        .execute(e)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Forgets expired sessions and login attempts of every tenant: housekeeping, no tenant data read.
pub async fn delete_expired(e: impl PgExecutor<'_> + Copy) -> Result<()> {
    sqlx::query("DELETE FROM sessions WHERE expires_at <= now()")
        .execute(e)
        .await?;
    sqlx::query("DELETE FROM login_attempts WHERE expires_at <= now()")
        .execute(e)
        .await?;
    Ok(())
}

/// A login between the redirect to the provider and its callback.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LoginAttemptRow {
    pub nonce: String,
    pub pkce_verifier: String,
    pub expires_at: DateTime<Utc>,
}

pub async fn insert_login_attempt(
    e: impl PgExecutor<'_>,
    state_hash: &[u8; 32],
    nonce: &str,
    pkce_verifier: &str,
    expires_at: DateTime<Utc>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO login_attempts (state_hash, nonce, pkce_verifier, expires_at)
         VALUES ($1, $2, $3, $4)",
    )
    .bind(&state_hash[..])
    .bind(nonce)
    .bind(pkce_verifier)
    .bind(expires_at)
    .execute(e)
    .await?;
    Ok(())
}

/// Takes the login attempt with this state: it is deleted, so a callback is accepted once.
pub async fn take_login_attempt(
    e: impl PgExecutor<'_>,
    state_hash: &[u8; 32],
) -> Result<Option<LoginAttemptRow>> {
    Ok(sqlx::query_as(
        "DELETE FROM login_attempts WHERE state_hash = $1
         RETURNING nonce, pkce_verifier, expires_at",
    )
    .bind(&state_hash[..])
    .fetch_optional(e)
    .await?)
}

/// Moves a session to the person's user in another tenant (the tenant switcher). False when
/// the session is gone.
pub async fn move_to(
    e: impl PgExecutor<'_>,
    from: TenantId,
    id_hash: &[u8; 32],
    to: TenantId,
    user: UserId,
) -> Result<bool> {
    Ok(sqlx::query(
        "UPDATE sessions SET tenant_id = $3, user_id = $4 WHERE tenant_id = $1 AND id_hash = $2",
    )
    .bind(tenant_uuid(from))
    .bind(&id_hash[..])
    .bind(tenant_uuid(to))
    .bind(user.as_uuid())
    .execute(e)
    .await?
    .rows_affected()
        == 1)
}
