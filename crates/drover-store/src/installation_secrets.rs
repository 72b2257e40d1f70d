//! Secrets of the installation itself (not of a tenant), shared by every replica. Each is sealed
//! with a data key of its own, stored wrapped by the key-encryption key. For droverd itself,
//! not the APIs.

use sqlx::PgExecutor;

use crate::Result;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct InstallationSecretRow {
    pub name: String,
    pub kek_id: String,
    pub wrapped_dek: Vec<u8>,
    pub sealed: Vec<u8>,
}

/// Stores secret `name` unless it exists already (another replica may be storing it at the
/// same moment); returns the one that is stored.
pub async fn insert_or_get(
    e: impl PgExecutor<'_>,
    name: &str,
    kek_id: &str,
    wrapped_dek: &[u8],
    sealed: &[u8],
) -> Result<InstallationSecretRow> {
    // The no-op update makes RETURNING yield the existing row on a conflict.
    Ok(sqlx::query_as(
        "INSERT INTO installation_secrets (name, kek_id, wrapped_dek, sealed)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (name) DO UPDATE SET name = installation_secrets.name
         RETURNING name, kek_id, wrapped_dek, sealed",
    )
    .bind(name)
    .bind(kek_id)
    .bind(wrapped_dek)
    .bind(sealed)
    .fetch_one(e)
    .await?)
}

/// The ids of the key-encryption keys that wrap the installation's data keys.
pub async fn kek_ids(e: impl PgExecutor<'_>) -> Result<Vec<String>> {
    Ok(
        sqlx::query_scalar("SELECT DISTINCT kek_id FROM installation_secrets ORDER BY kek_id")
            .fetch_all(e)
            .await?,
    )
}

/// Every installation secret, for re-wrapping under a new key-encryption key.
pub async fn all_for_update(e: impl PgExecutor<'_>) -> Result<Vec<InstallationSecretRow>> {
    Ok(sqlx::query_as(
        "SELECT name, kek_id, wrapped_dek, sealed FROM installation_secrets ORDER BY name FOR UPDATE",
    )
    .fetch_all(e)
    .await?)
}

pub async fn rewrap(
    e: impl PgExecutor<'_>,
    name: &str,
    kek_id: &str,
    wrapped_dek: &[u8],
) -> Result<()> {
    sqlx::query("UPDATE installation_secrets SET kek_id = $2, wrapped_dek = $3 WHERE name = $1")
        .bind(name)
        .bind(kek_id)
        .bind(wrapped_dek)
        .execute(e)
        .await?;
    Ok(())
}
