//! Fleet-wide counts for the operator's `/metrics` (across tenants; not reachable from the APIs).

use crate::{PgExecutor, Result};

/// How many machines are known and how many of them are connected now.
pub async fn machine_counts(e: impl PgExecutor<'_>) -> Result<(i64, i64)> {
    Ok(
        sqlx::query_as("SELECT count(*), count(*) FILTER (WHERE connected) FROM machines")
            .fetch_one(e)
            .await?,
    )
}

/// The progress of an upgrade under way (running or paused).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UpgradeProgress {
    pub tenant: String,
    pub cluster: String,
    pub kind: String,
    pub state: String,
    /// The cluster's machines.
    pub nodes: i64,
    /// Node steps (a Talos upgrade has one per node) finished, under way, failed.
    pub steps_done: i64,
    pub steps_in_progress: i64,
    pub steps_failed: i64,
}

/// Every upgrade under way, with its node counts.
pub async fn active_upgrades(e: impl PgExecutor<'_>) -> Result<Vec<UpgradeProgress>> {
    Ok(sqlx::query_as(
        "SELECT t.name AS tenant, u.cluster_name AS cluster, u.kind, u.state, \
                (SELECT count(*) FROM cluster_machines m \
                  WHERE m.tenant_id = u.tenant_id AND m.cluster_name = u.cluster_name) AS nodes, \
                count(n.*) FILTER (WHERE n.state = 'done') AS steps_done, \
                count(n.*) FILTER (WHERE n.state = 'inProgress') AS steps_in_progress, \
                count(n.*) FILTER (WHERE n.state = 'failed') AS steps_failed \
           FROM cluster_upgrades u \
           JOIN tenants t ON t.id = u.tenant_id \
           LEFT JOIN upgrade_nodes n ON n.upgrade_id = u.id \
          WHERE u.state IN ('running', 'paused') \
          GROUP BY u.id, t.name \
          ORDER BY t.name, u.cluster_name",
    )
    .fetch_all(e)
    .await?)
}
