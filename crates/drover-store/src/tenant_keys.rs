//! Each tenant's data-encryption key, stored wrapped by the key-encryption key.

use drover_model::TenantId;
use sqlx::PgExecutor;

use crate::{Result, tenant_uuid};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TenantKeyRow {
    pub tenant_id: uuid::Uuid,
    pub kek_id: String,
    pub wrapped_dek: Vec<u8>,
}

pub async fn get(e: impl PgExecutor<'_>, tenant: TenantId) -> Result<Option<TenantKeyRow>> {
    Ok(sqlx::query_as(
        "SELECT tenant_id, kek_id, wrapped_dek FROM tenant_keys WHERE tenant_id = $1",
    )
    .bind(tenant_uuid(tenant))
    .fetch_optional(e)
    .await?)
}

/// Stores a new key unless the tenant has one already; returns the key that is stored.
pub async fn insert_or_get(
    e: impl PgExecutor<'_>,
    tenant: TenantId,
    kek_id: &str,
    wrapped_dek: &[u8],
) -> Result<TenantKeyRow> {
    // The no-op update makes RETURNING yield the existing row on a conflict.
    Ok(sqlx::query_as(
        "INSERT INTO tenant_keys (tenant_id, kek_id, wrapped_dek) VALUES ($1, $2, $3)
         ON CONFLICT (tenant_id) DO UPDATE SET kek_id = tenant_keys.kek_id
         RETURNING tenant_id, kek_id, wrapped_dek",
    )
    .bind(tenant_uuid(tenant))
    .bind(kek_id)
    .bind(wrapped_dek)
    .fetch_one(e)
    .await?)
}

/// The ids of the key-encryption keys that wrap the tenants' data keys.
pub async fn kek_ids(e: impl PgExecutor<'_>) -> Result<Vec<String>> {
    Ok(
        sqlx::query_scalar("SELECT DISTINCT kek_id FROM tenant_keys ORDER BY kek_id")
            .fetch_all(e)
            .await?,
    )
}

/// Every tenant key, for re-wrapping under a new key-encryption key.
pub async fn all_for_update(e: impl PgExecutor<'_>) -> Result<Vec<TenantKeyRow>> {
    Ok(sqlx::query_as(
        "SELECT tenant_id, kek_id, wrapped_dek FROM tenant_keys ORDER BY tenant_id FOR UPDATE",
    )
    .fetch_all(e)
    .await?)
}

pub async fn rewrap(
    e: impl PgExecutor<'_>,
    tenant: uuid::Uuid,
    kek_id: &str,
    wrapped_dek: &[u8],
) -> Result<()> {
    sqlx::query(
        "UPDATE tenant_keys SET kek_id = $2, wrapped_dek = $3, rewrapped_at = now()
         WHERE tenant_id = $1",
    )
    .bind(tenant)
    .bind(kek_id)
    .bind(wrapped_dek)
    .execute(e)
    .await?;
    Ok(())
}
