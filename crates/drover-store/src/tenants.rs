use chrono::{DateTime, Utc};
use drover_model::TenantId;
use sqlx::PgExecutor;

use crate::Result;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TenantRow {
    pub id: uuid::Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

impl TenantRow {
    pub fn tenant_id(&self) -> TenantId {
        TenantId::from_uuid(self.id)
    }
}

pub async fn insert(e: impl PgExecutor<'_>, id: TenantId, name: &str) -> Result<TenantRow> {
    Ok(sqlx::query_as(
        "INSERT INTO tenants (id, name) VALUES ($1, $2) RETURNING id, name, created_at",
    )
    .bind(id.as_uuid())
    .bind(name)
    .fetch_one(e)
    .await?)
}

pub async fn find_by_name(e: impl PgExecutor<'_>, name: &str) -> Result<Option<TenantRow>> {
    Ok(
        sqlx::query_as("SELECT id, name, created_at FROM tenants WHERE name = $1")
            .bind(name)
            .fetch_optional(e)
            .await?,
    )
}
