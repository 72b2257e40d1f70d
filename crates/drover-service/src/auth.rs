use chrono::Utc;
use drover_model::{ApiTokenId, Role, ServiceAccountId, ServiceAccountKeyId, TenantId, UserId};
use drover_store::{api_tokens, service_accounts, sessions};

use crate::login::{session_hash, verify_csrf_token};
use crate::secret_token::{self, TokenKind};
use crate::{Drover, Principal, RequestContext, Result, ServiceError};

/// A credential as an edge received it.
#[derive(Clone, Copy)]
pub enum Credential<'a> {
    /// Nothing was presented.
    None,
    /// `Authorization: Bearer <token>` (REST) or the `authorization` metadata (gRPC).
    Bearer(&'a str),
    /// A browser session cookie.
    Session {
        secret: &'a str,
        /// The `X-CSRF-Token` header, if sent.
        csrf_token: Option<&'a str>,
        /// Whether the request may change something (any method but GET and HEAD): then the
        /// CSRF token must match the session.
        changes_state: bool,
    },
}

impl std::fmt::Debug for Credential<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secrets themselves.
        match self {
            Self::None => f.write_str("Credential::None"),
            Self::Bearer(_) => f.write_str("Credential::Bearer(..)"),
            Self::Session { changes_state, .. } => f
                .debug_struct("Credential::Session")
                .field("changes_state", changes_state)
                .finish_non_exhaustive(),
        }
    }
}

impl<'a> From<Option<&'a str>> for Credential<'a> {
    fn from(bearer: Option<&'a str>) -> Self {
        bearer.map_or(Self::None, Self::Bearer)
    }
}

impl Drover {
    /// Turns a credential (a bearer secret or a session cookie) into a request context, or says
    /// why it is refused.
    pub async fn authenticate<'a>(
        &self,
        credential: impl Into<Credential<'a>>,
    ) -> Result<RequestContext> {
        match credential.into() {
            Credential::None => Err(no_credential()),
            Credential::Bearer(text) => self.authenticate_bearer(text).await,
            Credential::Session {
                secret,
                csrf_token,
                changes_state,
            } => {
                self.authenticate_session(secret, csrf_token, changes_state)
                    .await
            }
        }
    }

    async fn authenticate_bearer(&self, text: &str) -> Result<RequestContext> {
        let text = text.trim();
        if text.is_empty() {
            return Err(no_credential());
        }
        if let Some(session) = text.strip_prefix(crate::cli_login::CLI_TOKEN_PREFIX) {
            // A CLI login's session: a bearer credential, so no CSRF token is needed.
            return self.authenticate_session(session, None, false).await;
        }
        if let Some(key) = secret_token::parse_id(TokenKind::ServiceAccount, text) {
            return self
                .authenticate_service_account(text, ServiceAccountKeyId::from_uuid(key))
                .await;
        }
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

    /// A service-account key: refused once revoked or once the account expired, from the next
    /// request on (nothing is cached).
    async fn authenticate_service_account(
        &self,
        text: &str,
        key: ServiceAccountKeyId,
    ) -> Result<RequestContext> {
        let invalid =
            || ServiceError::Unauthenticated("the service account key is not valid".into());
        let row = service_accounts::find_key_for_auth(self.store.pool(), key.as_uuid())
            .await?
            .ok_or_else(invalid)?;
        if !secret_token::verify(text, &row.secret_hash) {
            return Err(invalid());
        }
        if row.revoked_at.is_some() {
            return Err(ServiceError::Unauthenticated(format!(
                "this key of service account {:?} has been revoked",
                row.name
            )));
        }
        if let Some(expiry) = row.expires_at.filter(|e| *e <= Utc::now()) {
            return Err(ServiceError::Unauthenticated(format!(
                "service account {:?} expired at {}",
                row.name,
                expiry.to_rfc3339()
            )));
        }
        if let Some(expiry) = row.key_expires_at.filter(|e| *e <= Utc::now()) {
            return Err(ServiceError::Unauthenticated(format!(
                "this key of service account {:?} expired at {}",
                row.name,
                expiry.to_rfc3339()
            )));
        }
        let role: Role = row
            .role
            .parse()
            .map_err(|e: drover_model::UnknownRole| ServiceError::Internal(Box::new(e)))?;
        let tenant = TenantId::from_uuid(row.tenant_id);
        service_accounts::touch_key(self.store.pool(), tenant, key.as_uuid()).await?;
        Ok(RequestContext::new(
            tenant,
            Principal::ServiceAccount {
                id: ServiceAccountId::from_uuid(row.service_account_id),
                name: row.name,
                key_id: key,
            },
            role,
        ))
    }

    async fn authenticate_session(
        &self,
        secret: &str,
        csrf_token: Option<&str>,
        changes_state: bool,
    ) -> Result<RequestContext> {
        let hash = session_hash(secret);
        let row = sessions::find_active(self.store.pool(), &hash)
            .await?
            .ok_or_else(|| {
                ServiceError::Unauthenticated(
                    "the session has ended or is not valid: log in again through /auth/login"
                        .into(),
                )
            })?;
        if changes_state {
            match csrf_token {
                None => {
                    return Err(ServiceError::PermissionDenied(
                        "a request with a session cookie that changes something needs the \
                         X-CSRF-Token header (its value is csrfToken in GET /api/v1/me)"
                            .into(),
                    ));
                }
                Some(token) if !verify_csrf_token(secret, token) => {
                    return Err(ServiceError::PermissionDenied(
                        "the X-CSRF-Token header does not belong to this session".into(),
                    ));
                }
                Some(_) => {}
            }
        }
        let role: Role = row
            .role
            .parse()
            .map_err(|e: drover_model::UnknownRole| ServiceError::Internal(Box::new(e)))?;
        let tenant = TenantId::from_uuid(row.tenant_id);
        sessions::touch(self.store.pool(), tenant, &hash).await?;
        Ok(RequestContext::new(
            tenant,
            Principal::User {
                id: UserId::from_uuid(row.user_id),
                email: row.email,
                name: row.name,
            },
            role,
        ))
    }
}

fn no_credential() -> ServiceError {
    ServiceError::Unauthenticated(
        "an API token is required: send `Authorization: Bearer <token>` (or log in through \
         /auth/login in a browser)"
            .into(),
    )
}
