//! The audit log: appended to by the service layer, read by tenant admins, pruned by age.

use chrono::{DateTime, Utc};
use drover_model::TenantId;
use sqlx::PgExecutor;

use crate::{Result, tenant_uuid};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AuditRow {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub result: String,
}

/// One entry to append.
#[derive(Debug, Clone, Copy)]
pub struct NewEntry<'a> {
    pub actor: &'a str,
    pub action: &'a str,
    pub target: &'a str,
    pub result: &'a str,
}

pub async fn append(e: impl PgExecutor<'_>, tenant: TenantId, entry: NewEntry<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO audit_log (tenant_id, actor, action, target, result)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(tenant_uuid(tenant))
    .bind(entry.actor)
    .bind(entry.action)
    .bind(entry.target)
    .bind(entry.result)
    .execute(e)
    .await?;
    Ok(())
}

/// Which entries to read.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only entries with a larger id (to follow the log).
    pub after: i64,
    /// Only entries at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only actions that start with this (e.g. `cluster.`).
    pub action_prefix: Option<String>,
    /// Only this actor.
    pub actor: Option<String>,
    pub limit: i64,
}

/// The tenant's entries that match, oldest first.
pub async fn list(
    e: impl PgExecutor<'_>,
    tenant: TenantId,
    filter: &Filter,
) -> Result<Vec<AuditRow>> {
    Ok(sqlx::query_as(
        "SELECT id, at, actor, action, target, result FROM audit_log
         WHERE tenant_id = $1 AND id > $2
           AND ($3::timestamptz IS NULL OR at >= $3)
           AND ($4::text IS NULL OR starts_with(action, $4))
           AND ($5::text IS NULL OR actor = $5)
         ORDER BY id LIMIT $6",
    )
    .bind(tenant_uuid(tenant))
    .bind(filter.after)
    .bind(filter.since)
    .bind(filter.action_prefix.as_deref())
    .bind(filter.actor.as_deref())
    .bind(filter.limit)
    .fetch_all(e)
    .await?)
}

/// Deletes every tenant's entries older than `cutoff`; returns how many went.
pub async fn prune(e: impl PgExecutor<'_>, cutoff: DateTime<Utc>) -> Result<u64> {
    Ok(sqlx::query("DELETE FROM audit_log WHERE at < $1")
        .bind(cutoff)
        .execute(e)
        .await?
        .rows_affected())
}
