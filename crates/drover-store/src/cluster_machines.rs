//! Which machines belong to which cluster, and the reconciler's progress with each.

use chrono::{DateTime, Utc};
use drover_model::{MachineId, TenantId};
use sqlx::PgExecutor;

use crate::{Result, tenant_uuid};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClusterMachineRow {
    pub machine_id: String,
    pub cluster_name: String,
    pub machine_set: String,
    pub role: String,
    pub phase: String,
    pub applied_config_hash: Option<String>,
    pub applied_config: Option<String>,
    pub applied_at: Option<DateTime<Utc>>,
    pub desired_config_hash: Option<String>,
    pub etcd_member_id: Option<String>,
    pub last_error: Option<String>,
    /// Kubernetes component versions configured on the machine that differ from the cluster's.
    pub kubernetes_versions: sqlx::types::JsonValue,
}

const COLUMNS: &str = "machine_id, cluster_name, machine_set, role, phase, applied_config_hash, \
    applied_config, applied_at, desired_config_hash, etcd_member_id, last_error, \
    kubernetes_versions";

pub async fn list_for_cluster(
    e: impl PgExecutor<'_>,
    tenant: TenantId,
    cluster: &str,
) -> Result<Vec<ClusterMachineRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM cluster_machines WHERE tenant_id = $1 AND cluster_name = $2
         ORDER BY machine_set, machine_id"
    ))
    .bind(tenant_uuid(tenant))
    .bind(cluster)
    .fetch_all(e)
    .await?)
}

/// The cluster a machine belongs to, if any.
pub async fn get(
    e: impl PgExecutor<'_>,
    tenant: TenantId,
    machine: &MachineId,
) -> Result<Option<ClusterMachineRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM cluster_machines WHERE tenant_id = $1 AND machine_id = $2"
    ))
    .bind(tenant_uuid(tenant))
    .bind(machine.as_str())
    .fetch_optional(e)
    .await?)
}

/// Takes a machine for a cluster; a conflict on `cluster_machines_pkey` means another cluster
/// has it.
pub async fn allocate(
    e: impl PgExecutor<'_>,
    tenant: TenantId,
    machine: &MachineId,
    cluster: &str,
    machine_set: &str,
    role: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO cluster_machines (tenant_id, machine_id, cluster_name, machine_set, role)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(tenant_uuid(tenant))
    .bind(machine.as_str())
    .bind(cluster)
    .bind(machine_set)
    .bind(role)
    .execute(e)
    .await?;
    Ok(())
}

/// Moves a machine to `phase` if it is in `from` (a persisted, idempotent step); returns
/// whether it moved.
pub async fn advance(
    e: impl PgExecutor<'_>,
    tenant: TenantId,
    machine: &MachineId,
    from: &[&str],
    phase: &str,
) -> Result<bool> {
    Ok(sqlx::query(
        "UPDATE cluster_machines SET phase = $4, last_error = NULL, updated_at = now()
         WHERE tenant_id = $1 AND machine_id = $2 AND phase = ANY($3)",
    )
    .bind(tenant_uuid(tenant))
    .bind(machine.as_str())
    .bind(from)
    .bind(phase)
    .execute(e)
    .await?
    .rows_affected()
        == 1)
}

/// Records the config a machine was given (hash and redacted text) and its new phase.
pub async fn set_applied(
    e: impl PgExecutor<'_>,
    tenant: TenantId,
    machine: &MachineId,
    hash: &str,
    redacted: &str,
    phase: &str,
) -> Result<()> {
    sqlx::query(
        "UPDATE cluster_machines SET applied_config_hash = $3, applied_config = $4,
                applied_at = now(), phase = $5, last_error = NULL, updated_at = now()
         WHERE tenant_id = $1 AND machine_id = $2",
    )
    .bind(tenant_uuid(tenant))
    .bind(machine.as_str())
    .bind(hash)
    .bind(redacted)
    .bind(phase)
    .execute(e)
    .await?;
    Ok(())
}

/// Records the hash of the config Drover renders for the machine now.
pub async fn set_desired(
    e: impl PgExecutor<'_>,
    tenant: TenantId,
    machine: &MachineId,
    hash: &str,
) -> Result<()> {
    sqlx::query(
        "UPDATE cluster_machines SET desired_config_hash = $3
         WHERE tenant_id = $1 AND machine_id = $2 AND desired_config_hash IS DISTINCT FROM $3",
    )
    .bind(tenant_uuid(tenant))
    .bind(machine.as_str())
    .bind(hash)
    .execute(e)
    .await?;
    Ok(())
}

pub async fn set_error(
    e: impl PgExecutor<'_>,
    tenant: TenantId,
    machine: &MachineId,
    error: Option<&str>,
) -> Result<()> {
    sqlx::query(
        "UPDATE cluster_machines SET last_error = $3, updated_at = now()
         WHERE tenant_id = $1 AND machine_id = $2 AND last_error IS DISTINCT FROM $3",
    )
    .bind(tenant_uuid(tenant))
    .bind(machine.as_str())
    .bind(error)
    .execute(e)
    .await?;
    Ok(())
}

pub async fn set_etcd_member(
    e: impl PgExecutor<'_>,
    tenant: TenantId,
    machine: &MachineId,
    member: Option<&str>,
) -> Result<()> {
    sqlx::query(
        "UPDATE cluster_machines SET etcd_member_id = $3
         WHERE tenant_id = $1 AND machine_id = $2 AND etcd_member_id IS DISTINCT FROM $3",
    )
    .bind(tenant_uuid(tenant))
    .bind(machine.as_str())
    .bind(member)
    .execute(e)
    .await?;
    Ok(())
}

/// Configures Kubernetes `component` (`apiserver`, `controllerManager`, `scheduler`, `proxy`,
/// `kubelet`) of a machine at `version`.
pub async fn set_component_version(
    e: impl PgExecutor<'_>,
    tenant: TenantId,
    machine: &MachineId,
    component: &str,
    version: &str,
) -> Result<()> {
    sqlx::query(
        "UPDATE cluster_machines
         SET kubernetes_versions = kubernetes_versions || jsonb_build_object($3::text, $4::text)
         WHERE tenant_id = $1 AND machine_id = $2",
    )
    .bind(tenant_uuid(tenant))
    .bind(machine.as_str())
    .bind(component)
    .bind(version)
    .execute(e)
    .await?;
    Ok(())
}

/// Sets `component` to `version` on every machine of `cluster` (the cluster-wide add-ons).
pub async fn set_cluster_component_version(
    e: impl PgExecutor<'_>,
    tenant: TenantId,
    cluster: &str,
    component: &str,
    version: &str,
) -> Result<()> {
    sqlx::query(
        "UPDATE cluster_machines
         SET kubernetes_versions = kubernetes_versions || jsonb_build_object($3::text, $4::text)
         WHERE tenant_id = $1 AND cluster_name = $2",
    )
    .bind(tenant_uuid(tenant))
    .bind(cluster)
    .bind(component)
    .bind(version)
    .execute(e)
    .await?;
    Ok(())
}

/// Pins every Kubernetes component of the cluster's machines that is not pinned yet at
/// `version`, so that a change of the cluster's version reaches machines only step by step.
pub async fn pin_component_versions(
    e: impl PgExecutor<'_>,
    tenant: TenantId,
    cluster: &str,
    version: &str,
) -> Result<()> {
    sqlx::query(
        "UPDATE cluster_machines
         SET kubernetes_versions = jsonb_build_object('apiserver', $3::text,
                 'controllerManager', $3::text, 'scheduler', $3::text, 'proxy', $3::text,
                 'coredns', $3::text, 'kubelet', $3::text) || kubernetes_versions
         WHERE tenant_id = $1 AND cluster_name = $2",
    )
    .bind(tenant_uuid(tenant))
    .bind(cluster)
    .bind(version)
    .execute(e)
    .await?;
    Ok(())
}

/// Returns a machine to the pool.
pub async fn release(e: impl PgExecutor<'_>, tenant: TenantId, machine: &MachineId) -> Result<()> {
    sqlx::query("DELETE FROM cluster_machines WHERE tenant_id = $1 AND machine_id = $2")
        .bind(tenant_uuid(tenant))
        .bind(machine.as_str())
        .execute(e)
        .await?;
    Ok(())
}
