//! The data layer.
//!
//! Every function that reads or writes a tenant's rows takes that tenant's [`TenantId`], so no
//! query can reach a row without it. The only lookups without a tenant are the ones that
//! establish it from a credential (`api_tokens::find_by_id`, `join_tokens::find_for_provision`,
//! `sessions::find_active`, `service_accounts::find_key_for_auth`, `talos_client_certs::find_for_auth`, and for a multi-tenant
//! login `users::find_*_in_any_tenant`); the operator's `tenants::list_all` and
//! `tenants::set_plan`, and the fleet-wide counts of `metrics`, are not reachable from the APIs.
//! Functions take any executor, so a caller can put several into one transaction.

pub mod api_tokens;
pub mod audit_log;
pub mod break_glass;
pub mod cli_login;
pub mod cluster_grants;
pub mod cluster_machines;
pub mod clusters;
pub mod dataplane;
pub mod installation_secrets;
pub mod join_tokens;
pub mod logs;
pub mod machine_classes;
pub mod machines;
pub mod metrics;
pub mod replicas;
pub mod service_accounts;
pub mod sessions;
pub mod talos_client_certs;
pub mod tenant_keys;
pub mod tenants;
pub mod upgrades;
pub mod users;

use std::time::Duration;

use drover_model::TenantId;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};

pub use sqlx::PgExecutor;

/// Errors of the data layer, classified by kind and constraint name, never by message text.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness constraint refused the write.
    #[error("{what} already exists")]
    Conflict {
        constraint: String,
        what: &'static str,
    },
    #[error("cannot connect to the database: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &err
            && db.is_unique_violation()
        {
            let constraint = db.constraint().unwrap_or_default().to_owned();
            let what = match constraint.as_str() {
                "join_tokens_name_unique" => "a join token with this name",
                "api_tokens_name_unique" => "an API token with this name",
                "tenants_name_unique" => "a tenant with this name",
                "machines_address_unique" => "a machine with this tunnel address",
                "machines_wireguard_public_key_unique" => {
                    "a machine with this WireGuard public key"
                }
                "machines_grpc_peer_address_unique" => "a machine with this gRPC tunnel address",
                "machines_pkey" => "a machine with this id",
                "join_tokens_one_default" => "a default join token",
                "clusters_pkey" => "a cluster with this name",
                "cluster_machines_pkey" => "a cluster membership for this machine",
                "cluster_secrets_pkey" => "this cluster secret",
                "cluster_upgrades_one_active" => "an upgrade under way for this cluster",
                "users_email_unique" => "a user with this e-mail address",
                "users_subject_unique" => "a user with this identity",
                "service_accounts_name_unique" => "a service account with this name",
                "cluster_grants_user_unique" | "cluster_grants_service_account_unique" => {
                    "a grant on this cluster for this grantee"
                }
                _ => "a row with these values",
            };
            return Self::Conflict { constraint, what };
        }
        Self::Database(err)
    }
}

impl StoreError {
    /// The constraint behind a conflict, if this is one.
    pub fn conflict_constraint(&self) -> Option<&str> {
        match self {
            Self::Conflict { constraint, .. } => Some(constraint),
            _ => None,
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The connection pool plus the migrations.
#[derive(Clone, Debug)]
pub struct Store {
    pool: PgPool,
}

impl Store {
    /// Connects to `database_url` and runs the pending migrations.
    pub async fn connect(database_url: &str, max_connections: u32) -> Result<Self> {
        let options: PgConnectOptions = database_url.parse().map_err(StoreError::Connect)?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await
            .map_err(StoreError::Connect)?;
        sqlx::migrate!("../../migrations").run(&pool).await?;
        Ok(Self { pool })
    }

    /// Whether the database at `database_url` holds Drover's tables already, read without
    /// migrating or changing anything (an error: it cannot be reached).
    pub async fn has_schema(database_url: &str) -> Result<bool> {
        use sqlx::Connection as _;
        let options: PgConnectOptions = database_url.parse().map_err(StoreError::Connect)?;
        let mut connection = sqlx::PgConnection::connect_with(&options)
            .await
            .map_err(StoreError::Connect)?;
        let found: bool = sqlx::query_scalar("SELECT to_regclass('public.tenants') IS NOT NULL")
            .fetch_one(&mut connection)
            .await?;
        connection.close().await?;
        Ok(found)
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub async fn begin(&self) -> Result<Transaction<'static, Postgres>> {
        Ok(self.pool.begin().await?)
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Takes a transaction-scoped advisory lock, serialising a one-time step across replicas.
pub async fn advisory_xact_lock(tx: &mut Transaction<'_, Postgres>, key: i64) -> Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(key)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

fn tenant_uuid(t: TenantId) -> uuid::Uuid {
    t.as_uuid()
}
