use chrono::{DateTime, Utc};
use drover_model::TenantId;
use sqlx::PgExecutor;
use sqlx::types::Json;

use crate::{Result, tenant_uuid};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MachineClassRow {
    pub name: String,
    pub selectors: Json<Vec<String>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "name, selectors, created_at, updated_at";

pub async fn list(e: impl PgExecutor<'_>, tenant: TenantId) -> Result<Vec<MachineClassRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM machine_classes WHERE tenant_id = $1 ORDER BY name"
    ))
    .bind(tenant_uuid(tenant))
    .fetch_all(e)
    .await?)
}

pub async fn get(
    e: impl PgExecutor<'_>,
    tenant: TenantId,
    name: &str,
) -> Result<Option<MachineClassRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM machine_classes WHERE tenant_id = $1 AND name = $2"
    ))
    .bind(tenant_uuid(tenant))
    .bind(name)
    .fetch_optional(e)
    .await?)
}

/// Creates or replaces a class.
pub async fn upsert(
    e: impl PgExecutor<'_>,
    tenant: TenantId,
    name: &str,
    selectors: &[String],
) -> Result<MachineClassRow> {
    Ok(sqlx::query_as(&format!(
        "INSERT INTO machine_classes (tenant_id, name, selectors) VALUES ($1, $2, $3)
         ON CONFLICT (tenant_id, name) DO UPDATE SET selectors = $3, updated_at = now()
         RETURNING {COLUMNS}"
    ))
    .bind(tenant_uuid(tenant))
    .bind(name)
    .bind(Json(selectors))
    .fetch_one(e)
    .await?)
}

pub async fn delete(e: impl PgExecutor<'_>, tenant: TenantId, name: &str) -> Result<bool> {
    Ok(
        sqlx::query("DELETE FROM machine_classes WHERE tenant_id = $1 AND name = $2")
            .bind(tenant_uuid(tenant))
            .bind(name)
            .execute(e)
            .await?
            .rows_affected()
            == 1,
    )
}
