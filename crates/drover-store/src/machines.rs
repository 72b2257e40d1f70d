use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use drover_model::{ConfigPatch, JoinTokenId, MachineId, TenantId};
use sqlx::PgExecutor;

use crate::{Result, tenant_uuid};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MachineRow {
    pub tenant_id: uuid::Uuid,
    pub id: String,
    pub address: String,
    pub wireguard_public_key: String,
    pub node_unique_token_hash: Option<Vec<u8>>,
    pub talos_version: String,
    pub wireguard_over_grpc: bool,
    pub grpc_peer_address: Option<String>,
    pub join_token_id: Option<uuid::Uuid>,
    pub first_provisioned_at: DateTime<Utc>,
    pub last_provisioned_at: DateTime<Utc>,
    pub connected: bool,
    pub last_seen_at: Option<DateTime<Utc>>,
    pub stage: Option<String>,
    pub ready: bool,
    pub unmet_conditions: sqlx::types::JsonValue,
    pub last_error: Option<String>,
    pub facts: Option<sqlx::types::JsonValue>,
    pub labels: sqlx::types::Json<BTreeMap<String, String>>,
    pub patches: sqlx::types::Json<Vec<ConfigPatch>>,
    /// The cluster the machine belongs to.
    pub cluster: Option<String>,
}

const COLUMNS: &str = "tenant_id, id, address, wireguard_public_key, node_unique_token_hash, \
    talos_version, wireguard_over_grpc, grpc_peer_address, join_token_id, first_provisioned_at, \
    last_provisioned_at, connected, last_seen_at, stage, ready, unmet_conditions, last_error, facts, \
    labels, patches, (SELECT cm.cluster_name FROM cluster_machines cm \
        WHERE cm.tenant_id = machines.tenant_id AND cm.machine_id = machines.id) AS cluster";

/// What a successful Provision writes, for a new machine or over an existing one.
pub struct ProvisionedMachine<'a> {
    pub id: &'a MachineId,
    pub address: &'a str,
    pub wireguard_public_key: &'a str,
    pub node_unique_token_hash: Option<&'a [u8; 32]>,
    pub talos_version: &'a str,
    pub wireguard_over_grpc: bool,
    pub grpc_peer_address: Option<&'a str>,
    pub join_token_id: JoinTokenId,
}

pub async fn get(
    e: impl PgExecutor<'_>,
    tenant: TenantId,
    id: &MachineId,
) -> Result<Option<MachineRow>> {
    get_one(e, tenant, id, "").await
}

/// Like [`get`], locking the row until the transaction ends.
pub async fn get_for_update(
    e: impl PgExecutor<'_>,
    tenant: TenantId,
    id: &MachineId,
) -> Result<Option<MachineRow>> {
    get_one(e, tenant, id, "FOR UPDATE").await
}

async fn get_one(
    e: impl PgExecutor<'_>,
    tenant: TenantId,
    id: &MachineId,
    lock: &str,
) -> Result<Option<MachineRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM machines WHERE tenant_id = $1 AND id = $2 {lock}"
    ))
    .bind(tenant_uuid(tenant))
    .bind(id.as_str())
    .fetch_optional(e)
    .await?)
}

/// One page ordered by id, starting after `after`.
pub async fn list(
    e: impl PgExecutor<'_>,
    tenant: TenantId,
    after: Option<&MachineId>,
    limit: u32,
) -> Result<Vec<MachineRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM machines
         WHERE tenant_id = $1 AND ($2::text IS NULL OR id > $2)
         ORDER BY id LIMIT $3"
    ))
    .bind(tenant_uuid(tenant))
    .bind(after.map(MachineId::as_str))
    .bind(i64::from(limit))
    .fetch_all(e)
    .await?)
}

/// A filtered, sorted page of machines; the filters that are `None` or empty match all.
pub struct Search<'a> {
    /// A case-insensitive substring of the id, address or hostname.
    pub text: Option<&'a str>,
    pub connected: Option<bool>,
    /// In no cluster (`true`) or in one (`false`).
    pub available: Option<bool>,
    pub cluster: Option<&'a str>,
    /// User labels that must have these values.
    pub label_values: &'a BTreeMap<String, String>,
    /// User labels that must be present, whatever their value.
    pub label_keys: &'a [String],
    /// A fixed `ORDER BY` expression list (never user text).
    pub order_by: &'static str,
    pub offset: u32,
    pub limit: u32,
}

const SEARCH_FILTER: &str = "tenant_id = $1
    AND ($2::text IS NULL OR id ILIKE $2 OR address ILIKE $2 OR facts->>'hostname' ILIKE $2)
    AND ($3::bool IS NULL OR connected = $3)
    AND ($4::bool IS NULL OR $4 = NOT EXISTS (SELECT 1 FROM cluster_machines cm
        WHERE cm.tenant_id = machines.tenant_id AND cm.machine_id = machines.id))
    AND ($5::text IS NULL OR EXISTS (SELECT 1 FROM cluster_machines cm
        WHERE cm.tenant_id = machines.tenant_id AND cm.machine_id = machines.id
          AND cm.cluster_name = $5))
    AND labels @> $6
    AND labels ?& $7";

/// The page of machines `search` selects, and how many match in all.
pub async fn search(
    e: impl PgExecutor<'_> + Copy,
    tenant: TenantId,
    search: &Search<'_>,
) -> Result<(Vec<MachineRow>, i64)> {
    let pattern = search.text.map(|t| {
        let escaped = t
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        format!("%{escaped}%")
    });
    let values = sqlx::types::Json(search.label_values);
    let rows = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM machines WHERE {SEARCH_FILTER}
         ORDER BY {}, id OFFSET $8 LIMIT $9",
        search.order_by
    ))
    .bind(tenant_uuid(tenant))
    .bind(&pattern)
    .bind(search.connected)
    .bind(search.available)
    .bind(search.cluster)
    .bind(values)
    .bind(search.label_keys)
    .bind(i64::from(search.offset))
    .bind(i64::from(search.limit))
    .fetch_all(e)
    .await?;
    let total = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM machines WHERE {SEARCH_FILTER}"
    ))
    .bind(tenant_uuid(tenant))
    .bind(&pattern)
    .bind(search.connected)
    .bind(search.available)
    .bind(search.cluster)
    .bind(values)
    .bind(search.label_keys)
    .fetch_one(e)
    .await?;
    Ok((rows, total))
}

pub async fn count(e: impl PgExecutor<'_>, tenant: TenantId) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM machines WHERE tenant_id = $1")
            .bind(tenant_uuid(tenant))
            .fetch_one(e)
            .await?,
    )
}

pub async fn insert(
    e: impl PgExecutor<'_>,
    tenant: TenantId,
    m: &ProvisionedMachine<'_>,
) -> Result<MachineRow> {
    Ok(sqlx::query_as(&format!(
        "INSERT INTO machines (tenant_id, id, address, wireguard_public_key, node_unique_token_hash,
                               talos_version, wireguard_over_grpc, grpc_peer_address, join_token_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         RETURNING {COLUMNS}"
    ))
    .bind(tenant_uuid(tenant))
    .bind(m.id.as_str())
    .bind(m.address)
    .bind(m.wireguard_public_key)
    .bind(m.node_unique_token_hash.map(|h| &h[..]))
    .bind(m.talos_version)
    .bind(m.wireguard_over_grpc)
    .bind(m.grpc_peer_address)
    .bind(m.join_token_id.as_uuid())
    .fetch_one(e)
    .await?)
}

/// Re-provisioning of a known machine: new key and facts, same address.
pub async fn update_provisioned(
    e: impl PgExecutor<'_>,
    tenant: TenantId,
    m: &ProvisionedMachine<'_>,
) -> Result<MachineRow> {
    Ok(sqlx::query_as(&format!(
        "UPDATE machines SET wireguard_public_key = $3, node_unique_token_hash = $4,
                talos_version = $5, wireguard_over_grpc = $6, grpc_peer_address = $7,
                join_token_id = $8, last_provisioned_at = now()
         WHERE tenant_id = $1 AND id = $2
         RETURNING {COLUMNS}"
    ))
    .bind(tenant_uuid(tenant))
    .bind(m.id.as_str())
    .bind(m.wireguard_public_key)
    .bind(m.node_unique_token_hash.map(|h| &h[..]))
    .bind(m.talos_version)
    .bind(m.wireguard_over_grpc)
    .bind(m.grpc_peer_address)
    .bind(m.join_token_id.as_uuid())
    .fetch_one(e)
    .await?)
}

/// Deletes a machine (its logs go with it); returns its tunnel address if it existed.
pub async fn delete(
    e: impl PgExecutor<'_>,
    tenant: TenantId,
    id: &MachineId,
) -> Result<Option<String>> {
    Ok(sqlx::query_scalar(
        "DELETE FROM machines WHERE tenant_id = $1 AND id = $2 RETURNING address",
    )
    .bind(tenant_uuid(tenant))
    .bind(id.as_str())
    .fetch_optional(e)
    .await?)
}

/// Every machine of the tenant that belongs to no cluster, ordered by id.
pub async fn list_unallocated(e: impl PgExecutor<'_>, tenant: TenantId) -> Result<Vec<MachineRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM machines
         WHERE tenant_id = $1 AND NOT EXISTS (
             SELECT 1 FROM cluster_machines cm
             WHERE cm.tenant_id = machines.tenant_id AND cm.machine_id = machines.id)
         ORDER BY id"
    ))
    .bind(tenant_uuid(tenant))
    .fetch_all(e)
    .await?)
}

/// The machines of a cluster.
pub async fn list_in_cluster(
    e: impl PgExecutor<'_>,
    tenant: TenantId,
    cluster: &str,
) -> Result<Vec<MachineRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM machines
         WHERE tenant_id = $1 AND id IN (
             SELECT machine_id FROM cluster_machines WHERE tenant_id = $1 AND cluster_name = $2)
         ORDER BY id"
    ))
    .bind(tenant_uuid(tenant))
    .bind(cluster)
    .fetch_all(e)
    .await?)
}

/// Replaces a machine's user labels; false when there is no such machine.
pub async fn set_labels(
    e: impl PgExecutor<'_>,
    tenant: TenantId,
    id: &MachineId,
    labels: &BTreeMap<String, String>,
) -> Result<bool> {
    Ok(
        sqlx::query("UPDATE machines SET labels = $3 WHERE tenant_id = $1 AND id = $2")
            .bind(tenant_uuid(tenant))
            .bind(id.as_str())
            .bind(sqlx::types::Json(labels))
            .execute(e)
            .await?
            .rows_affected()
            == 1,
    )
}

/// Replaces a machine's machine-scope config patches; false when there is no such machine.
pub async fn set_patches(
    e: impl PgExecutor<'_>,
    tenant: TenantId,
    id: &MachineId,
    patches: &[ConfigPatch],
) -> Result<bool> {
    Ok(
        sqlx::query("UPDATE machines SET patches = $3 WHERE tenant_id = $1 AND id = $2")
            .bind(tenant_uuid(tenant))
            .bind(id.as_str())
            .bind(sqlx::types::Json(patches))
            .execute(e)
            .await?
            .rows_affected()
            == 1,
    )
}
