use drover_model::TenantId;
use drover_store::tenants;
use secrecy::ExposeSecret;

use crate::tenancy::{TenancyMode, UNLIMITED_PLAN};
use crate::{Drover, Result};

pub const DEFAULT_TENANT_NAME: &str = "default";
/// Serialises first-start bootstrap across replicas sharing one database.
const BOOTSTRAP_LOCK: i64 = 0x6472_6f76_6572_0001;

/// What the first start created.
pub struct Bootstrap {
    pub tenant: TenantId,
    /// The initial admin API token's secret, present only on the start that created it.
    pub initial_admin_token: Option<String>,
}

impl Drover {
    /// Creates the default tenant and an initial admin API token if the database has none.
    /// The default tenant is on the default plan in single-tenant mode; in multi-tenant mode it
    /// is the operator's own tenant, `unlimited`.
    /// Safe to run from several replicas at once: exactly one creates them.
    ///
    /// `persist` receives the new token before the transaction commits; if it fails, nothing is
    /// created, so the only admin credential can never be lost between database and disk.
    pub async fn bootstrap<E>(
        &self,
        persist: impl FnOnce(&str) -> Result<(), E>,
    ) -> Result<Bootstrap>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        let mut tx = self.store.begin().await?;
        drover_store::advisory_xact_lock(&mut tx, BOOTSTRAP_LOCK).await?;
        if let Some(existing) = tenants::find_by_name(&mut *tx, DEFAULT_TENANT_NAME).await? {
            tx.commit().await.map_err(drover_store::StoreError::from)?;
            return Ok(Bootstrap {
                tenant: existing.tenant_id(),
                initial_admin_token: None,
            });
        }
        let tenant = TenantId::new_random();
        let plan = match self.tenancy.mode {
            TenancyMode::SingleTenant => self.tenancy.plans.default_plan(),
            TenancyMode::MultiTenant => UNLIMITED_PLAN,
        };
        tenants::insert(&mut *tx, tenant, DEFAULT_TENANT_NAME, plan).await?;
        let token = self.insert_initial_admin_token(&mut tx, tenant).await?;
        let token = token.expose_secret().to_owned();
        persist(&token).map_err(|e| crate::ServiceError::Internal(Box::new(e)))?;
        tx.commit().await.map_err(drover_store::StoreError::from)?;
        tracing::info!(%tenant, "created the default tenant and the initial admin API token");
        Ok(Bootstrap {
            tenant,
            initial_admin_token: Some(token),
        })
    }
}
