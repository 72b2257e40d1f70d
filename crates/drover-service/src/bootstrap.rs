use drover_model::{ApiTokenId, Role, TenantId};
use drover_store::{api_tokens, tenants};

use crate::secret_token::{self, TokenKind};
use crate::{Drover, Result};

pub const DEFAULT_TENANT_NAME: &str = "default";
const INITIAL_ADMIN_TOKEN_NAME: &str = "initial-admin";
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
        tenants::insert(&mut *tx, tenant, DEFAULT_TENANT_NAME).await?;
        let minted = secret_token::mint(TokenKind::Api);
        api_tokens::insert(
            &mut *tx,
            tenant,
            api_tokens::NewApiToken {
                id: ApiTokenId::from_uuid(minted.id),
                name: INITIAL_ADMIN_TOKEN_NAME,
                role: Role::Admin.as_str(),
                secret_hash: &minted.hash,
                expires_at: None,
            },
        )
        .await?;
        let token = secret_token::reveal(&minted);
        persist(&token).map_err(|e| crate::ServiceError::Internal(Box::new(e)))?;
        tx.commit().await.map_err(drover_store::StoreError::from)?;
        tracing::info!(%tenant, "created the default tenant and the initial admin API token");
        Ok(Bootstrap {
            tenant,
            initial_admin_token: Some(token),
        })
    }
}
