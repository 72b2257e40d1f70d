//! Client certificates of the Talos API proxy, by serial.

use chrono::{DateTime, Utc};
use drover_model::TenantId;
use sqlx::PgExecutor;

use crate::{Result, tenant_uuid};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TalosClientCertRow {
    pub serial: String,
    pub tenant_id: uuid::Uuid,
    pub cluster_name: String,
    pub actor: String,
    pub principal_kind: String,
    pub principal_id: uuid::Uuid,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

pub struct NewTalosClientCert<'a> {
    pub serial: &'a str,
    pub cluster_name: &'a str,
    pub actor: &'a str,
    pub principal_kind: &'a str,
    pub principal_id: uuid::Uuid,
    pub expires_at: DateTime<Utc>,
}

const COLUMNS: &str = "serial, tenant_id, cluster_name, actor, principal_kind, principal_id, \
    created_at, expires_at, revoked_at";

pub async fn insert(
    e: impl PgExecutor<'_>,
    tenant: TenantId,
    c: NewTalosClientCert<'_>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO talos_client_certs
            (serial, tenant_id, cluster_name, actor, principal_kind, principal_id, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(c.serial)
    .bind(tenant_uuid(tenant))
    .bind(c.cluster_name)
    .bind(c.actor)
    .bind(c.principal_kind)
    .bind(c.principal_id)
    .bind(c.expires_at)
    .execute(e)
    .await?;
    Ok(())
}

/// Looks a certificate up by the serial a client presented: the step that establishes the
/// tenant.
pub async fn find_for_auth(
    e: impl PgExecutor<'_>,
    serial: &str,
) -> Result<Option<TalosClientCertRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM talos_client_certs WHERE serial = $1"
    ))
    .bind(serial)
    .fetch_optional(e)
    .await?)
}

pub async fn get(
    e: impl PgExecutor<'_>,
    tenant: TenantId,
    serial: &str,
) -> Result<Option<TalosClientCertRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM talos_client_certs WHERE tenant_id = $1 AND serial = $2"
    ))
    .bind(tenant_uuid(tenant))
    .bind(serial)
    .fetch_optional(e)
    .await?)
}

/// Revokes one certificate; false if it was not found or already revoked.
pub async fn revoke(e: impl PgExecutor<'_>, tenant: TenantId, serial: &str) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE talos_client_certs SET revoked_at = now()
         WHERE tenant_id = $1 AND serial = $2 AND revoked_at IS NULL",
    )
    .bind(tenant_uuid(tenant))
    .bind(serial)
    .execute(e)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Revokes every unexpired certificate of `actor`; returns how many.
pub async fn revoke_all_of(e: impl PgExecutor<'_>, tenant: TenantId, actor: &str) -> Result<u64> {
    let done = sqlx::query(
        "UPDATE talos_client_certs SET revoked_at = now()
         WHERE tenant_id = $1 AND actor = $2 AND revoked_at IS NULL AND expires_at > now()",
    )
    .bind(tenant_uuid(tenant))
    .bind(actor)
    .execute(e)
    .await?;
    Ok(done.rows_affected())
}
