//! What the tunnel data plane reads and writes. A tunnel peer is known by its tunnel address,
//! which is unique across the installation, so these functions locate a machine's row (and so
//! its tenant) by address; they are for droverd's data plane only, never for API callers.

use chrono::{DateTime, Utc};
use drover_model::{MachineId, TenantId};
use sqlx::PgExecutor;

use crate::Result;

/// A provisioned machine as a tunnel peer.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PeerRow {
    pub address: String,
    pub wireguard_public_key: String,
}

pub async fn peers(e: impl PgExecutor<'_>) -> Result<Vec<PeerRow>> {
    Ok(
        sqlx::query_as("SELECT address, wireguard_public_key FROM machines")
            .fetch_all(e)
            .await?,
    )
}

/// The machine that owns a tunnel address.
pub async fn machine_at(
    e: impl PgExecutor<'_>,
    address: &str,
) -> Result<Option<(TenantId, MachineId)>> {
    let row: Option<(uuid::Uuid, String)> =
        sqlx::query_as("SELECT tenant_id, id FROM machines WHERE address = $1")
            .bind(address)
            .fetch_optional(e)
            .await?;
    Ok(row.and_then(|(t, id)| Some((TenantId::from_uuid(t), id.parse().ok()?))))
}

/// A change of a machine's liveness.
pub struct Liveness<'a> {
    pub address: &'a str,
    pub connected: bool,
    pub last_seen_at: Option<DateTime<Utc>>,
}

/// Persists liveness changes heard by `replica` in one statement: a connected machine's tunnel
/// is on `replica`, unless another replica holds it and heard from it more recently (the
/// machine moved on, and `replica` still remembers it); a disconnect only counts where
/// `replica` held the tunnel (the machine may have reached another replica since).
pub async fn set_liveness(
    e: impl PgExecutor<'_>,
    replica: uuid::Uuid,
    changes: &[Liveness<'_>],
) -> Result<u64> {
    if changes.is_empty() {
        return Ok(0);
    }
    let addresses: Vec<&str> = changes.iter().map(|c| c.address).collect();
    let connected: Vec<bool> = changes.iter().map(|c| c.connected).collect();
    let seen: Vec<Option<DateTime<Utc>>> = changes.iter().map(|c| c.last_seen_at).collect();
    let done = sqlx::query(
        "UPDATE machines m SET connected = c.connected,
                tunnel_replica = CASE WHEN c.connected THEN $4 END,
                last_seen_at = coalesce(c.last_seen_at, m.last_seen_at)
         FROM unnest($1::text[], $2::bool[], $3::timestamptz[]) AS c(address, connected, last_seen_at)
         WHERE m.address = c.address
           AND (m.tunnel_replica IS NULL OR m.tunnel_replica = $4
                OR (c.connected AND (m.last_seen_at IS NULL OR c.last_seen_at IS NULL
                                     OR c.last_seen_at > m.last_seen_at)))",
    )
    .bind(&addresses)
    .bind(&connected)
    .bind(&seen)
    .bind(replica)
    .execute(e)
    .await?;
    Ok(done.rows_affected())
}

pub async fn record_status(
    e: impl PgExecutor<'_>,
    tenant: TenantId,
    id: &MachineId,
    stage: &str,
    ready: bool,
    unmet: &sqlx::types::JsonValue,
) -> Result<()> {
    sqlx::query(
        "UPDATE machines SET stage = $3, ready = $4, unmet_conditions = $5, last_event_at = now()
         WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant.as_uuid())
    .bind(id.as_str())
    .bind(stage)
    .bind(ready)
    .bind(unmet)
    .execute(e)
    .await?;
    Ok(())
}

pub async fn record_sequence(
    e: impl PgExecutor<'_>,
    tenant: TenantId,
    id: &MachineId,
    sequence: &str,
    error: Option<&str>,
) -> Result<()> {
    sqlx::query(
        "UPDATE machines SET last_sequence = $3, last_error = coalesce($4, last_error),
                last_event_at = now()
         WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant.as_uuid())
    .bind(id.as_str())
    .bind(sequence)
    .bind(error)
    .execute(e)
    .await?;
    Ok(())
}

pub async fn record_facts(
    e: impl PgExecutor<'_>,
    tenant: TenantId,
    id: &MachineId,
    facts: &sqlx::types::JsonValue,
    talos_version: &str,
) -> Result<()> {
    sqlx::query(
        "UPDATE machines SET facts = $3, facts_updated_at = now(),
                talos_version = CASE WHEN $4 = '' THEN talos_version ELSE $4 END
         WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant.as_uuid())
    .bind(id.as_str())
    .bind(facts)
    .bind(talos_version)
    .execute(e)
    .await?;
    Ok(())
}

/// Whether a machine was given this WireGuard-over-gRPC virtual peer address (`[ip]:port`).
pub async fn grpc_peer_exists(e: impl PgExecutor<'_>, peer: &str) -> Result<bool> {
    Ok(
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM machines WHERE grpc_peer_address = $1)")
            .bind(peer)
            .fetch_one(e)
            .await?,
    )
}
