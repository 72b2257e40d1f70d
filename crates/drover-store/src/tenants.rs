use chrono::{DateTime, Utc};
use drover_model::TenantId;
use sqlx::PgExecutor;

use crate::{Result, tenant_uuid};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TenantRow {
    pub id: uuid::Uuid,
    pub name: String,
    pub plan: String,
    pub created_at: DateTime<Utc>,
}

impl TenantRow {
    pub fn tenant_id(&self) -> TenantId {
        TenantId::from_uuid(self.id)
    }
}

const COLUMNS: &str = "id, name, plan, created_at";

pub async fn insert(
    e: impl PgExecutor<'_>,
    id: TenantId,
    name: &str,
    plan: &str,
) -> Result<TenantRow> {
    Ok(sqlx::query_as(&format!(
        "INSERT INTO tenants (id, name, plan) VALUES ($1, $2, $3) RETURNING {COLUMNS}"
    ))
    .bind(id.as_uuid())
    .bind(name)
    .bind(plan)
    .fetch_one(e)
    .await?)
}

pub async fn find_by_name(e: impl PgExecutor<'_>, name: &str) -> Result<Option<TenantRow>> {
    Ok(
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM tenants WHERE name = $1"))
            .bind(name)
            .fetch_optional(e)
            .await?,
    )
}

pub async fn get(e: impl PgExecutor<'_>, tenant: TenantId) -> Result<Option<TenantRow>> {
    Ok(
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM tenants WHERE id = $1"))
            .bind(tenant_uuid(tenant))
            .fetch_optional(e)
            .await?,
    )
}

/// The tenant, locked until the end of the transaction against other quota checks (`FOR NO
/// KEY UPDATE`: it serialises the transactions that check a limit and then insert, yet does
/// not block inserts elsewhere that only reference the tenant by foreign key).
pub async fn lock(e: impl PgExecutor<'_>, tenant: TenantId) -> Result<Option<TenantRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM tenants WHERE id = $1 FOR NO KEY UPDATE"
    ))
    .bind(tenant_uuid(tenant))
    .fetch_optional(e)
    .await?)
}

/// Every tenant, by name. For the operator's `droverd tenant list`, never for an API caller.
pub async fn list_all(e: impl PgExecutor<'_>) -> Result<Vec<TenantRow>> {
    Ok(
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM tenants ORDER BY name"))
            .fetch_all(e)
            .await?,
    )
}

/// Sets the tenant's plan; None when there is no tenant by that name.
pub async fn set_plan(e: impl PgExecutor<'_>, name: &str, plan: &str) -> Result<Option<TenantRow>> {
    Ok(sqlx::query_as(&format!(
        "UPDATE tenants SET plan = $2 WHERE name = $1 RETURNING {COLUMNS}"
    ))
    .bind(name)
    .bind(plan)
    .fetch_optional(e)
    .await?)
}

/// The names taken among `candidates` (to pick a unique tenant name).
pub async fn names_taken(e: impl PgExecutor<'_>, prefix: &str) -> Result<Vec<String>> {
    Ok(
        sqlx::query_scalar("SELECT name FROM tenants WHERE name = $1 OR name LIKE $1 || '-%'")
            .bind(prefix)
            .fetch_all(e)
            .await?,
    )
}

/// How many of each limited resource the tenant has: machines, clusters, users.
pub async fn usage(e: impl PgExecutor<'_>, tenant: TenantId) -> Result<Usage> {
    let (machines, clusters, users, service_accounts): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM machines WHERE tenant_id = $1),
                (SELECT count(*) FROM clusters WHERE tenant_id = $1),
                (SELECT count(*) FROM users WHERE tenant_id = $1),
                (SELECT count(*) FROM service_accounts WHERE tenant_id = $1)",
    )
    .bind(tenant_uuid(tenant))
    .fetch_one(e)
    .await?;
    Ok(Usage {
        machines: machines.max(0) as u64,
        clusters: clusters.max(0) as u64,
        users: users.max(0) as u64,
        service_accounts: service_accounts.max(0) as u64,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub machines: u64,
    pub clusters: u64,
    pub users: u64,
    pub service_accounts: u64,
}
