//! Service accounts and their keys.

use chrono::{DateTime, Utc};
use drover_model::TenantId;
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::{Result, tenant_uuid};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ServiceAccountRow {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub name: String,
    pub role: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// A key as the APIs may show it: never its hash.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct KeyRow {
    pub id: Uuid,
    pub service_account_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    /// The key stops working then (the account's own expiry applies too).
    pub expires_at: Option<DateTime<Utc>>,
}

/// A key with its account, for authentication.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct KeyForAuthRow {
    pub tenant_id: Uuid,
    pub service_account_id: Uuid,
    pub name: String,
    pub role: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub secret_hash: Vec<u8>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub key_expires_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "id, tenant_id, name, role, created_at, expires_at";
const KEY_COLUMNS: &str =
    "id, service_account_id, created_at, revoked_at, last_used_at, expires_at";

pub struct NewServiceAccount<'a> {
    pub id: Uuid,
    pub name: &'a str,
    pub role: &'a str,
    pub expires_at: Option<DateTime<Utc>>,
}

pub async fn insert(
    e: impl PgExecutor<'_>,
    tenant: TenantId,
    a: NewServiceAccount<'_>,
) -> Result<ServiceAccountRow> {
    Ok(sqlx::query_as(&format!(
        "INSERT INTO service_accounts (id, tenant_id, name, role, expires_at)
         VALUES ($1, $2, $3, $4, $5) RETURNING {COLUMNS}"
    ))
    .bind(a.id)
    .bind(tenant_uuid(tenant))
    .bind(a.name)
    .bind(a.role)
    .bind(a.expires_at)
    .fetch_one(e)
    .await?)
}

pub async fn insert_key(
    e: impl PgExecutor<'_>,
    tenant: TenantId,
    account: Uuid,
    id: Uuid,
    secret_hash: &[u8; 32],
    expires_at: Option<DateTime<Utc>>,
) -> Result<KeyRow> {
    Ok(sqlx::query_as(&format!(
        "INSERT INTO service_account_keys (id, tenant_id, service_account_id, secret_hash, expires_at)
         VALUES ($1, $2, $3, $4, $5) RETURNING {KEY_COLUMNS}"
    ))
    .bind(id)
    .bind(tenant_uuid(tenant))
    .bind(account)
    .bind(&secret_hash[..])
    .bind(expires_at)
    .fetch_one(e)
    .await?)
}

pub async fn list(e: impl PgExecutor<'_>, tenant: TenantId) -> Result<Vec<ServiceAccountRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM service_accounts WHERE tenant_id = $1 ORDER BY name"
    ))
    .bind(tenant_uuid(tenant))
    .fetch_all(e)
    .await?)
}

pub async fn get(
    e: impl PgExecutor<'_>,
    tenant: TenantId,
    name: &str,
) -> Result<Option<ServiceAccountRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM service_accounts WHERE tenant_id = $1 AND name = $2"
    ))
    .bind(tenant_uuid(tenant))
    .bind(name)
    .fetch_optional(e)
    .await?)
}

/// Every key of the tenant's service accounts, oldest first.
pub async fn list_keys(e: impl PgExecutor<'_>, tenant: TenantId) -> Result<Vec<KeyRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {KEY_COLUMNS} FROM service_account_keys WHERE tenant_id = $1
         ORDER BY created_at, id"
    ))
    .bind(tenant_uuid(tenant))
    .fetch_all(e)
    .await?)
}

/// Deletes a service account: its keys and grants go with it. None if there was none.
pub async fn delete(
    e: impl PgExecutor<'_>,
    tenant: TenantId,
    name: &str,
) -> Result<Option<ServiceAccountRow>> {
    Ok(sqlx::query_as(&format!(
        "DELETE FROM service_accounts WHERE tenant_id = $1 AND name = $2 RETURNING {COLUMNS}"
    ))
    .bind(tenant_uuid(tenant))
    .bind(name)
    .fetch_optional(e)
    .await?)
}

/// Revokes one key of an account (idempotent: the first revocation time stays). None if the
/// account has no such key.
pub async fn revoke_key(
    e: impl PgExecutor<'_>,
    tenant: TenantId,
    account: Uuid,
    key: Uuid,
) -> Result<Option<KeyRow>> {
    Ok(sqlx::query_as(&format!(
        "UPDATE service_account_keys SET revoked_at = coalesce(revoked_at, now())
         WHERE tenant_id = $1 AND service_account_id = $2 AND id = $3
         RETURNING {KEY_COLUMNS}"
    ))
    .bind(tenant_uuid(tenant))
    .bind(account)
    .bind(key)
    .fetch_optional(e)
    .await?)
}

/// Looks a key up by the id carried in its text: the step that establishes the tenant.
pub async fn find_key_for_auth(e: impl PgExecutor<'_>, key: Uuid) -> Result<Option<KeyForAuthRow>> {
    Ok(sqlx::query_as(
        "SELECT k.tenant_id, k.service_account_id, a.name, a.role, a.expires_at, k.secret_hash,
                k.revoked_at, k.expires_at AS key_expires_at
         FROM service_account_keys k
         JOIN service_accounts a ON a.tenant_id = k.tenant_id AND a.id = k.service_account_id
         WHERE k.id = $1",
    )
    .bind(key)
    .fetch_optional(e)
    .await?)
}

/// Records a use of a key, at most once a minute so that busy clients do not write per request.
pub async fn touch_key(e: impl PgExecutor<'_>, tenant: TenantId, key: Uuid) -> Result<()> {
    sqlx::query(
        "UPDATE service_account_keys SET last_used_at = now()
         WHERE tenant_id = $1 AND id = $2
           AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')",
    )
    .bind(tenant_uuid(tenant))
    .bind(key)
    .execute(e)
    .await?;
    Ok(())
}
