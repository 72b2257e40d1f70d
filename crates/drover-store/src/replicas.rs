//! The droverd replicas sharing the database, and which one holds each machine's tunnel. A
//! replica that stops beating for longer than the timeout is gone: its row is removed and its
//! machines are disconnected until they reach a replica again. For droverd itself, not the APIs.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

use crate::{Result, Store};

/// A replica as the database knows it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ReplicaRow {
    pub id: uuid::Uuid,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
}

/// Registers replica `id` (or refreshes its heartbeat).
pub async fn beat(e: impl PgExecutor<'_>, id: uuid::Uuid) -> Result<()> {
    sqlx::query(
        "INSERT INTO replicas (id) VALUES ($1)
         ON CONFLICT (id) DO UPDATE SET heartbeat_at = now()",
    )
    .bind(id)
    .execute(e)
    .await?;
    Ok(())
}

/// Every replica, oldest first.
pub async fn list(e: impl PgExecutor<'_>) -> Result<Vec<ReplicaRow>> {
    Ok(
        sqlx::query_as("SELECT id, started_at, heartbeat_at FROM replicas ORDER BY started_at, id")
            .fetch_all(e)
            .await?,
    )
}

/// Removes the replicas that did not beat within `timeout` (and `leaving`, one stopping now),
/// disconnecting the machines whose tunnels they held and any machine marked connected without
/// a living replica (e.g. from before replicas were recorded); how many machines that was.
pub async fn remove(store: &Store, timeout: Duration, leaving: Option<uuid::Uuid>) -> Result<u64> {
    let mut tx = store.begin().await?;
    sqlx::query("DELETE FROM replicas WHERE heartbeat_at < now() - $1 OR id = $2")
        .bind(timeout)
        .bind(leaving)
        .execute(&mut *tx)
        .await?;
    let disconnected = sqlx::query(
        "UPDATE machines SET connected = false, tunnel_replica = NULL
          WHERE (connected OR tunnel_replica IS NOT NULL)
            AND (tunnel_replica IS NULL
                 OR tunnel_replica NOT IN (SELECT id FROM replicas))",
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok(disconnected)
}
