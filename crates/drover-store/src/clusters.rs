//! Clusters, their sealed secrets, and the reconcilers' leases.

use std::time::Duration;

use chrono::{DateTime, Utc};
use drover_model::{ClusterSpec, TenantId};
use sqlx::PgExecutor;
use sqlx::types::Json;

use crate::{Result, tenant_uuid};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClusterRow {
    pub tenant_id: uuid::Uuid,
    pub name: String,
    pub uid: uuid::Uuid,
    pub spec: Json<ClusterSpec>,
    pub generation: i64,
    pub deleting: bool,
    pub control_plane_endpoint: Option<String>,
    pub bootstrap_machine: Option<String>,
    pub bootstrapped_at: Option<DateTime<Utc>>,
    pub etcd_members: i32,
    pub kubernetes_api_ready: bool,
    pub phase: String,
    pub ready: bool,
    pub machines_missing: i32,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl ClusterRow {
    pub fn tenant(&self) -> TenantId {
        TenantId::from_uuid(self.tenant_id)
    }
}

const COLUMNS: &str = "tenant_id, name, uid, spec, generation, deleting, control_plane_endpoint, \
    bootstrap_machine, bootstrapped_at, etcd_members, kubernetes_api_ready, phase, ready, \
    machines_missing, last_error, created_at, updated_at";

pub async fn insert(
    e: impl PgExecutor<'_>,
    tenant: TenantId,
    uid: uuid::Uuid,
    spec: &ClusterSpec,
) -> Result<ClusterRow> {
    Ok(sqlx::query_as(&format!(
        "INSERT INTO clusters (tenant_id, name, uid, spec) VALUES ($1, $2, $3, $4)
         RETURNING {COLUMNS}"
    ))
    .bind(tenant_uuid(tenant))
    .bind(&spec.name)
    .bind(uid)
    .bind(Json(spec))
    .fetch_one(e)
    .await?)
}

pub async fn get(
    e: impl PgExecutor<'_>,
    tenant: TenantId,
    name: &str,
) -> Result<Option<ClusterRow>> {
    get_one(e, tenant, name, "").await
}

/// Like [`get`], locking the row until the transaction ends.
pub async fn get_for_update(
    e: impl PgExecutor<'_>,
    tenant: TenantId,
    name: &str,
) -> Result<Option<ClusterRow>> {
    get_one(e, tenant, name, "FOR UPDATE").await
}

async fn get_one(
    e: impl PgExecutor<'_>,
    tenant: TenantId,
    name: &str,
    lock: &str,
) -> Result<Option<ClusterRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM clusters WHERE tenant_id = $1 AND name = $2 {lock}"
    ))
    .bind(tenant_uuid(tenant))
    .bind(name)
    .fetch_optional(e)
    .await?)
}

pub async fn list(e: impl PgExecutor<'_>, tenant: TenantId) -> Result<Vec<ClusterRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM clusters WHERE tenant_id = $1 ORDER BY name"
    ))
    .bind(tenant_uuid(tenant))
    .fetch_all(e)
    .await?)
}

/// Replaces the spec, bumping the generation.
pub async fn update_spec(
    e: impl PgExecutor<'_>,
    tenant: TenantId,
    spec: &ClusterSpec,
) -> Result<ClusterRow> {
    Ok(sqlx::query_as(&format!(
        "UPDATE clusters SET spec = $3, generation = generation + 1, updated_at = now()
         WHERE tenant_id = $1 AND name = $2 RETURNING {COLUMNS}"
    ))
    .bind(tenant_uuid(tenant))
    .bind(&spec.name)
    .bind(Json(spec))
    .fetch_one(e)
    .await?)
}

/// Asks for the cluster to be torn down; returns it, or None when there is no such cluster.
pub async fn mark_deleting(
    e: impl PgExecutor<'_>,
    tenant: TenantId,
    name: &str,
) -> Result<Option<ClusterRow>> {
    Ok(sqlx::query_as(&format!(
        "UPDATE clusters SET deleting = true, phase = 'destroying', ready = false,
                updated_at = now()
         WHERE tenant_id = $1 AND name = $2 RETURNING {COLUMNS}"
    ))
    .bind(tenant_uuid(tenant))
    .bind(name)
    .fetch_optional(e)
    .await?)
}

/// Forgets a cluster and (by cascade) its secrets. Only once no machine is left in it.
pub async fn delete(e: impl PgExecutor<'_>, tenant: TenantId, name: &str) -> Result<bool> {
    Ok(sqlx::query(
        "DELETE FROM clusters c WHERE tenant_id = $1 AND name = $2 AND deleting
           AND NOT EXISTS (SELECT 1 FROM cluster_machines m
                           WHERE m.tenant_id = c.tenant_id AND m.cluster_name = c.name)",
    )
    .bind(tenant_uuid(tenant))
    .bind(name)
    .execute(e)
    .await?
    .rows_affected()
        == 1)
}

/// What the reconciler observed, written in one update.
#[derive(Debug, Clone)]
pub struct ObservedStatus<'a> {
    pub phase: &'a str,
    pub ready: bool,
    pub etcd_members: i32,
    pub kubernetes_api_ready: bool,
    pub machines_missing: i32,
    pub last_error: Option<&'a str>,
}

pub async fn set_status(
    e: impl PgExecutor<'_>,
    tenant: TenantId,
    name: &str,
    status: &ObservedStatus<'_>,
) -> Result<()> {
    sqlx::query(
        "UPDATE clusters SET phase = $3, ready = $4, etcd_members = $5, kubernetes_api_ready = $6,
                machines_missing = $7, last_error = $8
         WHERE tenant_id = $1 AND name = $2",
    )
    .bind(tenant_uuid(tenant))
    .bind(name)
    .bind(status.phase)
    .bind(status.ready)
    .bind(status.etcd_members)
    .bind(status.kubernetes_api_ready)
    .bind(status.machines_missing)
    .bind(status.last_error)
    .execute(e)
    .await?;
    Ok(())
}

pub async fn set_control_plane_endpoint(
    e: impl PgExecutor<'_>,
    tenant: TenantId,
    name: &str,
    endpoint: &str,
) -> Result<()> {
    sqlx::query(
        "UPDATE clusters SET control_plane_endpoint = $3 WHERE tenant_id = $1 AND name = $2",
    )
    .bind(tenant_uuid(tenant))
    .bind(name)
    .bind(endpoint)
    .execute(e)
    .await?;
    Ok(())
}

/// Records the control plane Bootstrap goes to, unless one is recorded already; returns the
/// recorded one. Written before the call so that Bootstrap is sent to one node only.
pub async fn claim_bootstrap(
    e: impl PgExecutor<'_>,
    tenant: TenantId,
    name: &str,
    machine: &str,
) -> Result<String> {
    Ok(sqlx::query_scalar(
        "UPDATE clusters SET bootstrap_machine = COALESCE(bootstrap_machine, $3)
         WHERE tenant_id = $1 AND name = $2 RETURNING bootstrap_machine",
    )
    .bind(tenant_uuid(tenant))
    .bind(name)
    .bind(machine)
    .fetch_one(e)
    .await?)
}

pub async fn set_bootstrapped(e: impl PgExecutor<'_>, tenant: TenantId, name: &str) -> Result<()> {
    sqlx::query(
        "UPDATE clusters SET bootstrapped_at = COALESCE(bootstrapped_at, now())
         WHERE tenant_id = $1 AND name = $2",
    )
    .bind(tenant_uuid(tenant))
    .bind(name)
    .execute(e)
    .await?;
    Ok(())
}

/// Takes (or renews) the lease on every cluster that is free or already ours, up to `limit`,
/// and returns them. Used by the reconcilers of every replica; the only query across tenants
/// here, since a reconciler serves them all.
pub async fn lease_due(
    e: impl PgExecutor<'_>,
    owner: uuid::Uuid,
    lease: Duration,
    limit: i64,
) -> Result<Vec<ClusterRow>> {
    Ok(sqlx::query_as(&format!(
        "UPDATE clusters SET lease_owner = $1, lease_until = now() + $2
         WHERE (tenant_id, name) IN (
             SELECT tenant_id, name FROM clusters
             WHERE lease_owner IS NULL OR lease_owner = $1 OR lease_until < now()
             ORDER BY updated_at LIMIT $3 FOR UPDATE SKIP LOCKED)
         RETURNING {COLUMNS}"
    ))
    .bind(owner)
    .bind(lease)
    .bind(limit)
    .fetch_all(e)
    .await?)
}

/// Extends the leases `owner` still holds (not yet expired) by `lease` from now, while a long
/// reconcile runs; returns the `(tenant, name)` of every cluster still held.
pub async fn renew_leases(
    e: impl PgExecutor<'_>,
    owner: uuid::Uuid,
    lease: Duration,
) -> Result<Vec<(uuid::Uuid, String)>> {
    Ok(sqlx::query_as(
        "UPDATE clusters SET lease_until = now() + $2
          WHERE lease_owner = $1 AND lease_until >= now()
          RETURNING tenant_id, name",
    )
    .bind(owner)
    .bind(lease)
    .fetch_all(e)
    .await?)
}

/// Gives up every lease `owner` holds (on shutdown), so another replica takes over at once.
pub async fn release_leases(e: impl PgExecutor<'_>, owner: uuid::Uuid) -> Result<()> {
    sqlx::query(
        "UPDATE clusters SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = $1",
    )
    .bind(owner)
    .execute(e)
    .await?;
    Ok(())
}

// ---- sealed secrets ----

pub async fn insert_secret(
    e: impl PgExecutor<'_>,
    tenant: TenantId,
    cluster: &str,
    purpose: &str,
    sealed: &[u8],
) -> Result<()> {
    sqlx::query(
        "INSERT INTO cluster_secrets (tenant_id, cluster_name, purpose, sealed)
         VALUES ($1, $2, $3, $4)",
    )
    .bind(tenant_uuid(tenant))
    .bind(cluster)
    .bind(purpose)
    .bind(sealed)
    .execute(e)
    .await?;
    Ok(())
}

pub async fn get_secret(
    e: impl PgExecutor<'_>,
    tenant: TenantId,
    cluster: &str,
    purpose: &str,
) -> Result<Option<Vec<u8>>> {
    Ok(sqlx::query_scalar(
        "SELECT sealed FROM cluster_secrets
         WHERE tenant_id = $1 AND cluster_name = $2 AND purpose = $3",
    )
    .bind(tenant_uuid(tenant))
    .bind(cluster)
    .bind(purpose)
    .fetch_optional(e)
    .await?)
}
