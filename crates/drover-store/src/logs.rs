//! A bounded window of each machine's kernel log.

use chrono::{DateTime, Utc};
use drover_model::{MachineId, TenantId};
use sqlx::PgExecutor;

use crate::Result;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LogRow {
    pub seq: i64,
    pub received_at: DateTime<Utc>,
    pub talos_time: Option<String>,
    pub level: Option<String>,
    pub facility: Option<String>,
    pub message: String,
}

pub struct NewLogLine<'a> {
    pub talos_time: Option<&'a str>,
    pub level: Option<&'a str>,
    pub facility: Option<&'a str>,
    pub message: &'a str,
}

/// Appends lines in one statement, then drops all but the newest `keep` of the machine.
pub async fn append(
    tx: &mut sqlx::PgConnection,
    tenant: TenantId,
    id: &MachineId,
    lines: &[NewLogLine<'_>],
    keep: i64,
) -> Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    let times: Vec<Option<&str>> = lines.iter().map(|l| l.talos_time).collect();
    let levels: Vec<Option<&str>> = lines.iter().map(|l| l.level).collect();
    let facilities: Vec<Option<&str>> = lines.iter().map(|l| l.facility).collect();
    let messages: Vec<&str> = lines.iter().map(|l| l.message).collect();
    sqlx::query(
        "INSERT INTO machine_logs (tenant_id, machine_id, talos_time, level, facility, message)
         SELECT $1, $2, t, l, f, m
         FROM unnest($3::text[], $4::text[], $5::text[], $6::text[]) WITH ORDINALITY AS x(t, l, f, m, n)
         ORDER BY n",
    )
    .bind(tenant.as_uuid())
    .bind(id.as_str())
    .bind(&times)
    .bind(&levels)
    .bind(&facilities)
    .bind(&messages)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "DELETE FROM machine_logs WHERE tenant_id = $1 AND machine_id = $2 AND seq <= (
             SELECT seq FROM machine_logs WHERE tenant_id = $1 AND machine_id = $2
             ORDER BY seq DESC OFFSET $3 LIMIT 1)",
    )
    .bind(tenant.as_uuid())
    .bind(id.as_str())
    .bind(keep)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Lines after `after`, oldest first; with `after` None, the newest `limit` lines.
pub async fn list(
    e: impl PgExecutor<'_>,
    tenant: TenantId,
    id: &MachineId,
    after: Option<i64>,
    limit: i64,
) -> Result<Vec<LogRow>> {
    let rows: Vec<LogRow> =
        match after {
            Some(after) => sqlx::query_as(
                "SELECT seq, received_at, talos_time, level, facility, message FROM machine_logs
                 WHERE tenant_id = $1 AND machine_id = $2 AND seq > $3 ORDER BY seq LIMIT $4",
            )
            .bind(tenant.as_uuid())
            .bind(id.as_str())
            .bind(after)
            .bind(limit)
            .fetch_all(e)
            .await?,
            None => {
                let mut rows: Vec<LogRow> = sqlx::query_as(
                "SELECT seq, received_at, talos_time, level, facility, message FROM machine_logs
                 WHERE tenant_id = $1 AND machine_id = $2 ORDER BY seq DESC LIMIT $3",
            )
            .bind(tenant.as_uuid())
            .bind(id.as_str())
            .bind(limit)
            .fetch_all(e)
            .await?;
                rows.reverse();
                rows
            }
        };
    Ok(rows)
}
