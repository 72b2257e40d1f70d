use chrono::Utc;
use drover_model::{ApiTokenId, Role, TenantId};
use drover_store::api_tokens;

use crate::secret_token::{self, TokenKind};
use crate::{Drover, Principal, RequestContext, Result, ServiceError};

impl Drover {
    /// Turns a bearer secret into a request context, or says why it is refused.
    pub async fn authenticate(&self, bearer: Option<&str>) -> Result<RequestContext> {
        let Some(text) = bearer.map(str::trim).filter(|t| !t.is_empty()) else {
            return Err(ServiceError::Unauthenticated(
                "an API token is required: send `Authorization: Bearer <token>`".into(),
            ));
        };
        let invalid = || ServiceError::Unauthenticated("the API token is not valid".into());
        let id = secret_token::parse_id(TokenKind::Api, text).ok_or_else(invalid)?;
        let id = ApiTokenId::from_uuid(id);
        let row = api_tokens::find_by_id(self.store.pool(), id)
            .await?
            .ok_or_else(invalid)?;
        if !secret_token::verify(text, &row.secret_hash) {
            return Err(invalid());
        }
        if row.revoked_at.is_some() {
            return Err(ServiceError::Unauthenticated(
                "the API token has been revoked".into(),
            ));
        }
        if let Some(expiry) = row.expires_at.filter(|e| *e <= Utc::now()) {
            return Err(ServiceError::Unauthenticated(format!(
                "the API token expired at {}",
                expiry.to_rfc3339()
            )));
        }
        let role: Role = row.role.parse().map_err(|_| invalid())?;
        let tenant = TenantId::from_uuid(row.tenant_id);
        api_tokens::touch(self.store.pool(), tenant, id).await?;
        Ok(RequestContext::new(
            tenant,
            Principal::ApiToken { id, name: row.name },
            role,
        ))
    }
}
