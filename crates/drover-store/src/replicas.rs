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
    /// The WireGuard endpoints it tells machines to use, primary first.
    pub wireguard_endpoints: Vec<String>,
    /// Where the other replicas reach its relay (`ip:port`).
    pub relay_addr: Option<String>,
}

/// How a replica is reached, as it registers.
#[derive(Debug, Clone, Copy)]
pub struct Reachable<'a> {
    pub wireguard_endpoints: &'a [String],
    pub relay_addr: Option<&'a str>,
}

/// Registers replica `id` (or refreshes its heartbeat and how it is reached).
pub async fn beat(e: impl PgExecutor<'_>, id: uuid::Uuid, at: Reachable<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO replicas (id, wireguard_endpoints, relay_addr) VALUES ($1, $2, $3)
         ON CONFLICT (id) DO UPDATE SET heartbeat_at = now(),
             wireguard_endpoints = excluded.wireguard_endpoints,
             relay_addr = excluded.relay_addr",
    )
    .bind(id)
    .bind(at.wireguard_endpoints)
    .bind(at.relay_addr)
    .execute(e)
    .await?;
    Ok(())
}

/// Every replica, oldest first.
pub async fn list(e: impl PgExecutor<'_>) -> Result<Vec<ReplicaRow>> {
    Ok(sqlx::query_as(
        "SELECT id, started_at, heartbeat_at, wireguard_endpoints, relay_addr
           FROM replicas ORDER BY started_at, id",
    )
    .fetch_all(e)
    .await?)
}

/// The replica holding the tunnel of the machine at tunnel address `address`, if a living one
/// does, with its relay address.
pub async fn tunnel_holder(
    e: impl PgExecutor<'_>,
    address: &str,
) -> Result<Option<(uuid::Uuid, Option<String>)>> {
    Ok(sqlx::query_as(
        "SELECT r.id, r.relay_addr FROM machines m JOIN replicas r ON r.id = m.tunnel_replica
          WHERE m.address = $1",
    )
    .bind(address)
    .fetch_optional(e)
    .await?)
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
