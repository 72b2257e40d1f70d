//! Per-cluster grants: a role on one cluster for a user or a service account.

use chrono::{DateTime, Utc};
use drover_model::TenantId;
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::{Result, tenant_uuid};

/// Who a grant is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grantee {
    User(Uuid),
    ServiceAccount(Uuid),
}

impl Grantee {
    fn columns(self) -> (Option<Uuid>, Option<Uuid>) {
        match self {
            Self::User(id) => (Some(id), None),
            Self::ServiceAccount(id) => (None, Some(id)),
        }
    }
}

/// A grant with its grantee's e-mail or name.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct GrantRow {
    pub cluster_name: String,
    pub user_email: Option<String>,
    pub service_account_name: Option<String>,
    pub role: String,
    pub created_at: DateTime<Utc>,
}

/// Grants `role` on `cluster`, replacing an earlier grant to the same grantee.
pub async fn upsert(
    e: impl PgExecutor<'_>,
    tenant: TenantId,
    cluster: &str,
    grantee: Grantee,
    role: &str,
) -> Result<()> {
    let (user, account) = grantee.columns();
    let conflict = match grantee {
        Grantee::User(_) => "(tenant_id, cluster_name, user_id) WHERE user_id IS NOT NULL",
        Grantee::ServiceAccount(_) => {
            "(tenant_id, cluster_name, service_account_id) WHERE service_account_id IS NOT NULL"
        }
    };
    sqlx::query(&format!(
        "INSERT INTO cluster_grants (tenant_id, cluster_name, user_id, service_account_id, role)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT {conflict} DO UPDATE SET role = EXCLUDED.role, created_at = now()"
    ))
    .bind(tenant_uuid(tenant))
    .bind(cluster)
    .bind(user)
    .bind(account)
    .bind(role)
    .execute(e)
    .await?;
    Ok(())
}

/// The grants on one cluster.
pub async fn list(
    e: impl PgExecutor<'_>,
    tenant: TenantId,
    cluster: &str,
) -> Result<Vec<GrantRow>> {
    Ok(sqlx::query_as(
        "SELECT g.cluster_name, u.email AS user_email, a.name AS service_account_name, g.role,
                g.created_at
         FROM cluster_grants g
         LEFT JOIN users u ON u.tenant_id = g.tenant_id AND u.id = g.user_id
         LEFT JOIN service_accounts a ON a.tenant_id = g.tenant_id AND a.id = g.service_account_id
         WHERE g.tenant_id = $1 AND g.cluster_name = $2
         ORDER BY u.email NULLS LAST, a.name",
    )
    .bind(tenant_uuid(tenant))
    .bind(cluster)
    .fetch_all(e)
    .await?)
}

/// Removes a grant; false if there was none.
pub async fn delete(
    e: impl PgExecutor<'_>,
    tenant: TenantId,
    cluster: &str,
    grantee: Grantee,
) -> Result<bool> {
    let (user, account) = grantee.columns();
    let done = sqlx::query(
        "DELETE FROM cluster_grants
         WHERE tenant_id = $1 AND cluster_name = $2
           AND user_id IS NOT DISTINCT FROM $3 AND service_account_id IS NOT DISTINCT FROM $4",
    )
    .bind(tenant_uuid(tenant))
    .bind(cluster)
    .bind(user)
    .bind(account)
    .execute(e)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// The role granted to `grantee` on `cluster`, if any.
pub async fn role_of(
    e: impl PgExecutor<'_>,
    tenant: TenantId,
    cluster: &str,
    grantee: Grantee,
) -> Result<Option<String>> {
    let (user, account) = grantee.columns();
    Ok(sqlx::query_scalar(
        "SELECT role FROM cluster_grants
         WHERE tenant_id = $1 AND cluster_name = $2
           AND user_id IS NOT DISTINCT FROM $3 AND service_account_id IS NOT DISTINCT FROM $4",
    )
    .bind(tenant_uuid(tenant))
    .bind(cluster)
    .bind(user)
    .bind(account)
    .fetch_optional(e)
    .await?)
}
