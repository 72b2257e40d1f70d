//! Upgrades, their per-node progress, and cluster events.

use chrono::{DateTime, Utc};
use drover_model::{MachineId, TenantId};
use sqlx::PgExecutor;

use crate::{Result, tenant_uuid};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UpgradeRow {
    pub id: uuid::Uuid,
    pub cluster_name: String,
    pub kind: String,
    pub from_version: String,
    pub to_version: String,
    pub state: String,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str =
    "id, cluster_name, kind, from_version, to_version, state, error, created_at, finished_at";

/// Records a new running upgrade; a conflict on `cluster_upgrades_one_active` means one is
/// under way already.
pub async fn insert(
    e: impl PgExecutor<'_>,
    tenant: TenantId,
    cluster: &str,
    kind: &str,
    from: &str,
    to: &str,
) -> Result<UpgradeRow> {
    Ok(sqlx::query_as(&format!(
        "INSERT INTO cluster_upgrades (id, tenant_id, cluster_name, kind, from_version, to_version)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COLUMNS}"
    ))
    .bind(uuid::Uuid::new_v4())
    .bind(tenant_uuid(tenant))
    .bind(cluster)
    .bind(kind)
    .bind(from)
    .bind(to)
    .fetch_one(e)
    .await?)
}

/// The cluster's newest upgrade.
pub async fn latest(
    e: impl PgExecutor<'_>,
    tenant: TenantId,
    cluster: &str,
) -> Result<Option<UpgradeRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM cluster_upgrades WHERE tenant_id = $1 AND cluster_name = $2
         ORDER BY created_at DESC LIMIT 1"
    ))
    .bind(tenant_uuid(tenant))
    .bind(cluster)
    .fetch_optional(e)
    .await?)
}

/// Moves an upgrade from one of `from` to `state`; returns whether it moved.
pub async fn set_state(
    e: impl PgExecutor<'_>,
    id: uuid::Uuid,
    from: &[&str],
    state: &str,
    error: Option<&str>,
) -> Result<bool> {
    Ok(sqlx::query(
        "UPDATE cluster_upgrades SET state = $3, error = COALESCE($4, error), updated_at = now(),
                finished_at = CASE WHEN $3 IN ('cancelled', 'failed', 'done') THEN now() END
         WHERE id = $1 AND state = ANY($2)",
    )
    .bind(id)
    .bind(from)
    .bind(state)
    .bind(error)
    .execute(e)
    .await?
    .rows_affected()
        == 1)
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct NodeRow {
    pub machine_id: String,
    pub step: String,
    pub state: String,
    pub error: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

pub async fn nodes(e: impl PgExecutor<'_>, upgrade: uuid::Uuid) -> Result<Vec<NodeRow>> {
    Ok(sqlx::query_as(
        "SELECT machine_id, step, state, error, started_at, finished_at FROM upgrade_nodes
         WHERE upgrade_id = $1 ORDER BY started_at, machine_id",
    )
    .bind(upgrade)
    .fetch_all(e)
    .await?)
}

/// Records that a node's step is starting. Returns false if it was recorded before (the step
/// is never started twice).
pub async fn start_node(
    e: impl PgExecutor<'_>,
    upgrade: uuid::Uuid,
    machine: &MachineId,
    step: &str,
) -> Result<bool> {
    Ok(sqlx::query(
        "INSERT INTO upgrade_nodes (upgrade_id, machine_id, step, state)
         VALUES ($1, $2, $3, 'inProgress') ON CONFLICT DO NOTHING",
    )
    .bind(upgrade)
    .bind(machine.as_str())
    .bind(step)
    .execute(e)
    .await?
    .rows_affected()
        == 1)
}

/// Finishes a node's step as `done` or `failed`.
pub async fn finish_node(
    e: impl PgExecutor<'_>,
    upgrade: uuid::Uuid,
    machine: &MachineId,
    step: &str,
    error: Option<&str>,
) -> Result<()> {
    sqlx::query(
        "UPDATE upgrade_nodes SET state = CASE WHEN $4::text IS NULL THEN 'done' ELSE 'failed' END,
                error = $4, finished_at = now()
         WHERE upgrade_id = $1 AND machine_id = $2 AND step = $3 AND state = 'inProgress'",
    )
    .bind(upgrade)
    .bind(machine.as_str())
    .bind(step)
    .bind(error)
    .execute(e)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EventRow {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub kind: String,
    pub message: String,
}

pub async fn record_event(
    e: impl PgExecutor<'_>,
    tenant: TenantId,
    cluster: &str,
    kind: &str,
    message: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO cluster_events (tenant_id, cluster_name, kind, message) VALUES ($1, $2, $3, $4)",
    )
    .bind(tenant_uuid(tenant))
    .bind(cluster)
    .bind(kind)
    .bind(message)
    .execute(e)
    .await?;
    Ok(())
}

/// Events after `after`, oldest first.
pub async fn events(
    e: impl PgExecutor<'_>,
    tenant: TenantId,
    cluster: &str,
    after: i64,
) -> Result<Vec<EventRow>> {
    Ok(sqlx::query_as(
        "SELECT seq, at, kind, message FROM cluster_events
         WHERE tenant_id = $1 AND cluster_name = $2 AND seq > $3 ORDER BY seq LIMIT 1000",
    )
    .bind(tenant_uuid(tenant))
    .bind(cluster)
    .bind(after)
    .fetch_all(e)
    .await?)
}
