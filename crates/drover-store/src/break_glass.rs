//! Break-glass credentials issued for a cluster, and the taint they leave until its CAs are
//! rotated.

use chrono::{DateTime, Utc};
use drover_model::TenantId;
use sqlx::PgExecutor;

use crate::{Result, tenant_uuid};

pub struct NewBreakGlassCredential<'a> {
    pub cluster_name: &'a str,
    pub cluster_uid: uuid::Uuid,
    /// `kubeconfig` or `talosconfig`.
    pub kind: &'a str,
    pub actor: &'a str,
    pub serial: &'a str,
    pub expires_at: DateTime<Utc>,
}

/// The first break-glass credential issued for a cluster since its CAs were last rotated.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TaintRow {
    pub issued_at: DateTime<Utc>,
    pub actor: String,
    pub kind: String,
    /// How many break-glass credentials were issued since.
    pub issued: i64,
}

/// Records one issued credential; returns when it was recorded.
pub async fn insert(
    e: impl PgExecutor<'_>,
    tenant: TenantId,
    c: NewBreakGlassCredential<'_>,
) -> Result<DateTime<Utc>> {
    Ok(sqlx::query_scalar(
        "INSERT INTO break_glass_credentials
            (tenant_id, cluster_name, cluster_uid, kind, actor, serial, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         RETURNING issued_at",
    )
    .bind(tenant_uuid(tenant))
    .bind(c.cluster_name)
    .bind(c.cluster_uid)
    .bind(c.kind)
    .bind(c.actor)
    .bind(c.serial)
    .bind(c.expires_at)
    .fetch_one(e)
    .await?)
}

/// The cluster's taint: its first break-glass credential whose CAs are not rotated yet, if any.
pub async fn taint(
    e: impl PgExecutor<'_>,
    tenant: TenantId,
    cluster_uid: uuid::Uuid,
) -> Result<Option<TaintRow>> {
    Ok(sqlx::query_as(
        "SELECT issued_at, actor, kind, count(*) OVER () AS issued
         FROM break_glass_credentials
         WHERE tenant_id = $1 AND cluster_uid = $2 AND cas_rotated_at IS NULL
         ORDER BY issued_at, id
         LIMIT 1",
    )
    .bind(tenant_uuid(tenant))
    .bind(cluster_uid)
    .fetch_optional(e)
    .await?)
}
