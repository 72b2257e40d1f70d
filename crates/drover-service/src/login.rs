//! Browser login through OpenID Connect (authorization code + PKCE), users and sessions.
//!
//! Everything a login needs between the redirect to the provider and the callback (state, nonce,
//! PKCE verifier) is in PostgreSQL, so any replica can finish it; sessions are rows found by the
//! SHA-256 of the cookie secret. The CSRF token of a session is derived from its secret (a
//! different hash), so it needs no storage and is bound to the session.

use std::time::Duration;

use chrono::Utc;
use drover_model::{Me, MePrincipal, Resource, Role, UserId};
use drover_store::{sessions, tenants, users};
use openidconnect::core::{CoreAuthenticationFlow, CoreClient};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, IssuerUrl, LogoutRequest, Nonce, PkceCodeChallenge, PkceCodeVerifier,
    PostLogoutRedirectUrl, ProviderMetadataWithLogout, RedirectUrl, Scope, TokenResponse,
};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::tenancy::TenancyMode;
use crate::{DEFAULT_TENANT_NAME, Drover, Principal, RequestContext, Result, ServiceError};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "drover_session";
/// The cookie that binds a login under way to the browser that started it (it holds the state).
pub const LOGIN_COOKIE: &str = "drover_login";
/// How long a login may take between the redirect and the callback.
pub const LOGIN_TTL: Duration = Duration::from_secs(10 * 60);
/// The callback path under the public URL: the redirect URI to register with the provider.
pub const CALLBACK_PATH: &str = "/auth/callback";

/// How droverd logs people in through an OpenID provider.
#[derive(Clone)]
pub struct OidcSettings {
    /// The issuer URL; discovery reads `<issuer>/.well-known/openid-configuration`.
    pub issuer: String,
    pub client_id: String,
    /// None for a public client (PKCE only).
    pub client_secret: Option<SecretString>,
    /// Where browsers reach droverd; the redirect URI is this plus [`CALLBACK_PATH`].
    pub public_url: url::Url,
    /// Verified e-mail addresses that become Admin at their first login (single-tenant mode).
    pub initial_admin_emails: Vec<String>,
    pub session_ttl: Duration,
}

impl std::fmt::Debug for OidcSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcSettings")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("public_url", &self.public_url.as_str())
            .field("initial_admin_emails", &self.initial_admin_emails)
            .field("session_ttl", &self.session_ttl)
            .finish()
    }
}

impl OidcSettings {
    pub fn redirect_url(&self) -> url::Url {
        self.public_url
            .join(CALLBACK_PATH)
            .expect("a path joins any base URL")
    }

    /// Whether session cookies must be `Secure` (the public URL is https).
    pub fn secure_cookies(&self) -> bool {
        self.public_url.scheme() == "https"
    }
}

/// Configuration errors, found at start.
#[derive(Debug, thiserror::Error)]
pub enum OidcSettingsError {
    #[error("oidc-issuer: {0:?} is not a valid URL")]
    Issuer(String),
    #[error("oidc-client-id must be set with oidc-issuer")]
    MissingClientId,
    #[error("public-url: {0:?} cannot be a base for the redirect URI {CALLBACK_PATH}")]
    PublicUrl(String),
    #[error("initial-admin-email: {0:?} is not an e-mail address")]
    AdminEmail(String),
    #[error("cannot build the HTTP client for the identity provider: {0}")]
    Http(#[source] reqwest::Error),
}

type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// The relying party: settings, an HTTP client and the provider's metadata once discovered.
pub(crate) struct Oidc {
    settings: OidcSettings,
    issuer: IssuerUrl,
    redirect: RedirectUrl,
    http: reqwest::Client,
    metadata: tokio::sync::OnceCell<ProviderMetadataWithLogout>,
}

impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oidc")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Oidc {
    pub(crate) fn new(mut settings: OidcSettings) -> Result<Self, OidcSettingsError> {
        let issuer = IssuerUrl::new(settings.issuer.clone())
            .map_err(|_| OidcSettingsError::Issuer(settings.issuer.clone()))?;
        if settings.client_id.is_empty() {
            return Err(OidcSettingsError::MissingClientId);
        }
        if settings.public_url.cannot_be_a_base() {
            return Err(OidcSettingsError::PublicUrl(
                settings.public_url.to_string(),
            ));
        }
        for email in &mut settings.initial_admin_emails {
            *email = normalise_email(email)
                .ok_or_else(|| OidcSettingsError::AdminEmail(email.clone()))?;
        }
        let redirect = RedirectUrl::from_url(settings.redirect_url());
        let http = reqwest::Client::builder()
            // Following redirects from the provider's endpoints would allow SSRF.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(OidcSettingsError::Http)?;
        Ok(Self {
            settings,
            issuer,
            redirect,
            http,
            metadata: tokio::sync::OnceCell::new(),
        })
    }

    /// The provider's metadata: discovered once, retried on every call until it works.
    async fn metadata(&self) -> Result<&ProviderMetadataWithLogout> {
        self.metadata
            .get_or_try_init(|| async {
                let md = ProviderMetadataWithLogout::discover_async(self.issuer.clone(), &self.http)
                    .await
                    .map_err(|e| {
                        tracing::warn!(issuer = %self.issuer.as_str(), error = %error_chain(&e), "OpenID Connect discovery failed");
                        ServiceError::Unavailable(format!(
                            "the identity provider {} cannot be reached or its discovery document \
                             is not valid: {}",
                            self.issuer.as_str(),
                            error_chain(&e)
                        ))
                    })?;
                tracing::info!(issuer = %self.issuer.as_str(), "discovered the OpenID provider");
                Ok(md)
            })
            .await
    }

    async fn client(&self) -> Result<Client> {
        let md = self.metadata().await?.clone();
        Ok(CoreClient::from_provider_metadata(
            md,
            ClientId::new(self.settings.client_id.clone()),
            self.settings
                .client_secret
                .as_ref()
                .map(|s| ClientSecret::new(s.expose_secret().to_owned())),
        )
        .set_redirect_uri(self.redirect.clone()))
    }
}

/// Where to send the browser to log in, and the value of [`LOGIN_COOKIE`] to set.
pub struct LoginStart {
    pub redirect_to: String,
    pub browser_binding: SecretString,
}

/// The query of the provider's redirect to [`CALLBACK_PATH`].
#[derive(Debug, Default, serde::Deserialize)]
pub struct Callback {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

/// A new session: the secret for the cookie (shown once) and when it ends.
pub struct NewSession {
    pub secret: SecretString,
    pub expires_at: chrono::DateTime<Utc>,
    pub user: UserId,
    pub email: String,
}

/// After logout: where to send the browser to end the provider's session too, if it offers that.
pub struct LoggedOut {
    pub provider_logout_url: Option<String>,
}

impl Drover {
    /// Enables browser login through OpenID Connect. Discovery happens at the first login (and
    /// is retried until it works); call [`Drover::discover_identity_provider`] to do it early.
    pub fn with_oidc(mut self, settings: OidcSettings) -> Result<Self, OidcSettingsError> {
        self.oidc = Some(std::sync::Arc::new(Oidc::new(settings)?));
        Ok(self)
    }

    pub fn oidc_settings(&self) -> Option<&OidcSettings> {
        self.oidc.as_ref().map(|o| &o.settings)
    }

    fn oidc(&self) -> Result<&Oidc> {
        self.oidc.as_deref().ok_or_else(|| {
            ServiceError::Unavailable(
                "login through OpenID Connect is not configured: start droverd with \
                 --oidc-issuer and --oidc-client-id"
                    .into(),
            )
        })
    }

    /// Reads the provider's discovery document now (it is otherwise read at the first login).
    pub async fn discover_identity_provider(&self) -> Result<()> {
        self.oidc()?.metadata().await.map(|_| ())
    }

    /// Starts a login: records state, nonce and PKCE verifier, and returns the provider URL.
    pub async fn begin_login(&self) -> Result<LoginStart> {
        let oidc = self.oidc()?;
        let client = oidc.client().await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state, nonce) = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scope(Scope::new("email".into()))
            .add_scope(Scope::new("profile".into()))
            .set_pkce_challenge(challenge)
            .url();
        let pool = self.store.pool();
        sessions::delete_expired(pool).await?;
        sessions::insert_login_attempt(
            pool,
            &sha256(state.secret()),
            nonce.secret(),
            verifier.secret(),
            Utc::now() + LOGIN_TTL,
        )
        .await?;
        Ok(LoginStart {
            redirect_to: url.to_string(),
            browser_binding: SecretString::from(state.secret().clone()),
        })
    }

    /// Finishes a login from the provider's redirect: checks the state (once, and against the
    /// browser that started the login), exchanges the code with the PKCE verifier, validates the
    /// ID token and its nonce, finds or creates the user and opens a session.
    pub async fn finish_login(
        &self,
        callback: Callback,
        browser_binding: Option<&str>,
    ) -> Result<NewSession> {
        let oidc = self.oidc()?;
        let refused = |why: &str| ServiceError::Unauthenticated(format!("login refused: {why}"));
        if let Some(error) = &callback.error {
            let detail = callback
                .error_description
                .as_deref()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default();
            return Err(refused(&format!(
                "the identity provider answered {error}{detail}"
            )));
        }
        let (Some(code), Some(state)) = (callback.code, callback.state) else {
            return Err(ServiceError::invalid(
                "callback",
                "the login callback needs `code` and `state` query parameters",
            ));
        };
        // Taken (deleted) whatever follows: a callback URL works once.
        let attempt = sessions::take_login_attempt(self.store.pool(), &sha256(&state))
            .await?
            .ok_or_else(|| {
                refused("the login state is unknown, was already used or has expired; start again at /auth/login")
            })?;
        if attempt.expires_at <= Utc::now() {
            return Err(refused(
                "the login took too long; start again at /auth/login",
            ));
        }
        let bound =
            browser_binding.is_some_and(|b| bool::from(b.as_bytes().ct_eq(state.as_bytes())));
        if !bound {
            return Err(refused(
                "this login was not started by this browser (the login cookie is missing or \
                 differs); start again at /auth/login",
            ));
        }

        let client = oidc.client().await?;
        let tokens = client
            .exchange_code(AuthorizationCode::new(code))
            .map_err(|e| {
                ServiceError::Unavailable(format!(
                    "the identity provider has no token endpoint: {e}"
                ))
            })?
            .set_pkce_verifier(PkceCodeVerifier::new(attempt.pkce_verifier))
            .request_async(&oidc.http)
            .await
            .map_err(|e| {
                refused(&format!(
                    "the identity provider did not accept the authorization code: {}",
                    error_chain(&e)
                ))
            })?;
        let id_token = tokens
            .id_token()
            .ok_or_else(|| refused("the identity provider returned no ID token"))?;
        let claims = id_token
            .claims(&client.id_token_verifier(), &Nonce::new(attempt.nonce))
            .map_err(|e| refused(&format!("the ID token is not valid: {e}")))?;
        let identity = Identity {
            issuer: claims.issuer().as_str().to_owned(),
            subject: claims.subject().as_str().to_owned(),
            email: claims.email().map(|e| e.as_str().to_owned()),
            email_verified: claims.email_verified().unwrap_or(false),
            name: claims
                .name()
                .and_then(|n| n.get(None))
                .map(|n| n.as_str().to_owned())
                .unwrap_or_default(),
        };
        self.open_session(oidc, identity).await
    }

    async fn open_session(&self, oidc: &Oidc, identity: Identity) -> Result<NewSession> {
        let mut tx = self.store.begin().await?;
        let user = match self.tenancy.mode {
            TenancyMode::SingleTenant => {
                // Everyone logs into the default tenant.
                let tenant = tenants::find_by_name(&mut *tx, DEFAULT_TENANT_NAME)
                    .await?
                    .ok_or_else(|| {
                        ServiceError::Internal("the default tenant does not exist".into())
                    })?
                    .tenant_id();
                match users::find_by_subject(&mut *tx, tenant, &identity.issuer, &identity.subject)
                    .await?
                {
                    Some(user) => user,
                    None => {
                        let email = require_verified_email(&identity)?;
                        let found = users::find_by_email(&mut *tx, tenant, &email).await?;
                        match self
                            .claim_invitation(&mut tx, found, &identity, &email)
                            .await?
                        {
                            Some(user) => user,
                            None => {
                                let Some(role) =
                                    first_login_role(&email, &oidc.settings.initial_admin_emails)
                                else {
                                    return Err(ServiceError::PermissionDenied(format!(
                                        "login refused: {email} is not a user of this Drover; ask \
                                         an administrator to invite you"
                                    )));
                                };
                                self.create_login_user(&mut tx, tenant, &identity, &email, role)
                                    .await?
                            }
                        }
                    }
                }
            }
            TenancyMode::MultiTenant => self.multi_tenant_user(&mut tx, &identity).await?,
        };
        let tenant = drover_model::TenantId::from_uuid(user.tenant_id);
        let user = users::record_login(&mut *tx, tenant, user.user_id(), &identity.name).await?;
        let secret = new_session_secret();
        let expires_at = Utc::now() + oidc.settings.session_ttl;
        sessions::insert(
            &mut *tx,
            tenant,
            user.user_id(),
            &session_hash(secret.expose_secret()),
            expires_at,
        )
        .await?;
        tx.commit().await.map_err(drover_store::StoreError::from)?;
        tracing::info!(user = %user.id, email = %user.email, "logged in");
        self.record(tenant, &format!("user:{}", user.email), "login", "", "ok")
            .await;
        Ok(NewSession {
            secret,
            expires_at,
            user: user.user_id(),
            email: user.email,
        })
    }

    /// Multi-tenant mode: the person's user in any tenant, else an invitation to any tenant,
    /// else sign-up: a new tenant on the default plan with the person as its Admin.
    async fn multi_tenant_user(
        &self,
        tx: &mut sqlx::PgConnection,
        identity: &Identity,
    ) -> Result<users::UserRow> {
        if let Some(user) =
            users::find_by_subject_in_any_tenant(&mut *tx, &identity.issuer, &identity.subject)
                .await?
        {
            return Ok(user);
        }
        let email = require_verified_email(identity)?;
        // One sign-up at a time: a second first login of this person waits, then finds the
        // user the first one made.
        self.lock_sign_ups(&mut *tx).await?;
        if let Some(user) =
            users::find_by_subject_in_any_tenant(&mut *tx, &identity.issuer, &identity.subject)
                .await?
        {
            return Ok(user);
        }
        let found = users::find_by_email_in_any_tenant(&mut *tx, &email)
            .await?
            .into_iter()
            .next();
        if let Some(user) = self.claim_invitation(tx, found, identity, &email).await? {
            return Ok(user);
        }
        let tenant = self.sign_up_tenant(&mut *tx, &email).await?;
        self.create_login_user(tx, tenant, identity, &email, Role::Admin)
            .await
    }

    /// A user row with this e-mail and no identity yet (an invitation) is bound to the
    /// identity; one bound to another identity refuses the login; none gives None.
    async fn claim_invitation(
        &self,
        tx: &mut sqlx::PgConnection,
        found: Option<users::UserRow>,
        identity: &Identity,
        email: &str,
    ) -> Result<Option<users::UserRow>> {
        match found {
            Some(invited) if invited.oidc_subject.is_none() => {
                let tenant = drover_model::TenantId::from_uuid(invited.tenant_id);
                users::bind_identity(
                    &mut *tx,
                    tenant,
                    invited.user_id(),
                    &identity.issuer,
                    &identity.subject,
                )
                .await?
                .map(Some)
                .ok_or_else(|| {
                    ServiceError::Conflict(format!(
                        "the user {email} was just claimed by another login"
                    ))
                })
            }
            Some(_) => Err(ServiceError::PermissionDenied(format!(
                "login refused: the user {email} is bound to another identity of the identity \
                 provider"
            ))),
            None => Ok(None),
        }
    }

    /// A new user at its first login, within the plan's user limit.
    async fn create_login_user(
        &self,
        tx: &mut sqlx::PgConnection,
        tenant: drover_model::TenantId,
        identity: &Identity,
        email: &str,
        role: Role,
    ) -> Result<users::UserRow> {
        self.check_quota(&mut *tx, tenant, Resource::Users).await?;
        let user = users::insert(
            &mut *tx,
            tenant,
            users::NewUser {
                id: UserId::new_random(),
                email,
                name: &identity.name,
                role: role.as_str(),
                oidc: Some((&identity.issuer, &identity.subject)),
            },
        )
        .await?;
        tracing::info!(user = %user.id, %tenant, %role, "created a user at first login");
        Ok(user)
    }

    /// Ends the session with this cookie secret (if it is one) and says where the browser can
    /// end its session at the provider.
    pub async fn logout(&self, ctx: &RequestContext, session_secret: &str) -> Result<LoggedOut> {
        self.audited(
            ctx,
            "logout",
            "",
            self.logout_unaudited(ctx, session_secret),
        )
        .await
    }

    async fn logout_unaudited(
        &self,
        ctx: &RequestContext,
        session_secret: &str,
    ) -> Result<LoggedOut> {
        sessions::delete(
            self.store.pool(),
            ctx.tenant(),
            &session_hash(session_secret),
        )
        .await?;
        let provider_logout_url = match &self.oidc {
            Some(oidc) => match oidc.metadata().await {
                Ok(md) => md
                    .additional_metadata()
                    .end_session_endpoint
                    .clone()
                    .map(|end| {
                        let mut req = LogoutRequest::from(end)
                            .set_client_id(ClientId::new(oidc.settings.client_id.clone()));
                        if let Ok(back) =
                            PostLogoutRedirectUrl::new(oidc.settings.public_url.to_string())
                        {
                            req = req.set_post_logout_redirect_uri(back);
                        }
                        req.http_get_url().to_string()
                    }),
                Err(_) => None,
            },
            None => None,
        };
        Ok(LoggedOut {
            provider_logout_url,
        })
    }

    /// Who the caller is. `session_secret` (the cookie, for a session) yields the CSRF token.
    pub fn me(&self, ctx: &RequestContext, session_secret: Option<&str>) -> Me {
        let principal = match ctx.principal() {
            Principal::ApiToken { id, name } => MePrincipal::ApiToken {
                id: *id,
                name: name.clone(),
            },
            Principal::User { id, email, name } => MePrincipal::User {
                id: *id,
                email: email.clone(),
                name: name.clone(),
            },
            Principal::ServiceAccount { id, name, key_id } => MePrincipal::ServiceAccount {
                id: *id,
                name: name.clone(),
                key_id: *key_id,
            },
        };
        let csrf_token = match ctx.principal() {
            Principal::User { .. } => session_secret.map(csrf_token),
            Principal::ApiToken { .. } | Principal::ServiceAccount { .. } => None,
        };
        Me {
            principal,
            tenant: ctx.tenant(),
            role: ctx.role(),
            csrf_token,
        }
    }
}

/// What the provider said about the person logging in.
struct Identity {
    issuer: String,
    subject: String,
    email: Option<String>,
    email_verified: bool,
    name: String,
}

impl Identity {
    fn verified_email(&self) -> Option<String> {
        self.email
            .as_deref()
            .filter(|_| self.email_verified)
            .and_then(normalise_email)
    }
}

/// The role a person without a user row gets at first login: Admin for an initial admin, else
/// none (they need an invitation). `email` is normalised, and so are the admins.
fn require_verified_email(identity: &Identity) -> Result<String> {
    identity.verified_email().ok_or_else(|| {
        ServiceError::PermissionDenied(
            "login refused: the identity provider did not give a verified e-mail address, which \
             Drover needs to recognise a new user"
                .into(),
        )
    })
}

fn first_login_role(email: &str, initial_admins: &[String]) -> Option<Role> {
    initial_admins
        .iter()
        .any(|admin| admin == email)
        .then_some(Role::Admin)
}

/// Lower case, trimmed, and plausibly an address (one `@` with text on both sides).
pub fn normalise_email(email: &str) -> Option<String> {
    let email = email.trim().to_lowercase();
    let (local, domain) = email.split_once('@')?;
    (!local.is_empty() && !domain.is_empty() && !domain.contains('@')).then_some(email)
}

fn sha256(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

fn new_session_secret() -> SecretString {
    let bytes: [u8; 32] = rand::random();
    SecretString::from(hex::encode(bytes))
}

/// What is stored for a session: the SHA-256 of its cookie secret.
pub(crate) fn session_hash(secret: &str) -> [u8; 32] {
    sha256(secret)
}

/// The CSRF token of a session: a hash of its secret, domain-separated from the stored one.
pub fn csrf_token(session_secret: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"drover csrf token\0");
    h.update(session_secret.as_bytes());
    hex::encode(h.finalize())
}

pub(crate) fn verify_csrf_token(session_secret: &str, presented: &str) -> bool {
    bool::from(
        csrf_token(session_secret)
            .as_bytes()
            .ct_eq(presented.as_bytes()),
    )
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_initial_admins_get_a_role_at_first_login() {
        let admins = vec!["ops@example.com".to_owned()];
        assert_eq!(
            first_login_role("ops@example.com", &admins),
            Some(Role::Admin)
        );
        assert_eq!(first_login_role("eve@example.com", &admins), None);
        assert_eq!(first_login_role("ops@example.com", &[]), None);
    }

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            normalise_email("  Ops@Example.COM ").as_deref(),
            Some("ops@example.com")
        );
        assert_eq!(normalise_email("no-at-sign"), None);
        assert_eq!(normalise_email("@example.com"), None);
        assert_eq!(normalise_email("a@b@c"), None);
    }

    #[test]
    fn unverified_emails_are_not_used() {
        let mut id = Identity {
            issuer: "https://idp".into(),
            subject: "1".into(),
            email: Some("Ops@example.com".into()),
            email_verified: false,
            name: String::new(),
        };
        assert_eq!(id.verified_email(), None);
        id.email_verified = true;
        assert_eq!(id.verified_email().as_deref(), Some("ops@example.com"));
    }

    #[test]
    fn csrf_tokens_are_bound_to_their_session_and_differ_from_the_stored_hash() {
        let a = new_session_secret();
        let b = new_session_secret();
        let (a, b) = (a.expose_secret(), b.expose_secret());
        assert_ne!(a, b);
        assert!(verify_csrf_token(a, &csrf_token(a)));
        assert!(!verify_csrf_token(a, &csrf_token(b)));
        assert!(!verify_csrf_token(a, ""));
        assert_ne!(csrf_token(a), hex::encode(session_hash(a)));
        assert_ne!(hex::encode(session_hash(a)), *a);
    }

    #[test]
    fn settings_check_admin_emails_and_redirect_uri() {
        let settings = OidcSettings {
            issuer: "https://idp.example.com".into(),
            client_id: "drover".into(),
            client_secret: None,
            public_url: "https://drover.example.com/".parse().unwrap(),
            initial_admin_emails: vec!["Ops@Example.com".into()],
            session_ttl: Duration::from_secs(3600),
        };
        assert_eq!(
            settings.redirect_url().as_str(),
            "https://drover.example.com/auth/callback"
        );
        assert!(settings.secure_cookies());
        let oidc = Oidc::new(settings.clone()).unwrap();
        assert_eq!(oidc.settings.initial_admin_emails, ["ops@example.com"]);
        let bad = OidcSettings {
            initial_admin_emails: vec!["nobody".into()],
            ..settings.clone()
        };
        assert!(matches!(
            Oidc::new(bad),
            Err(OidcSettingsError::AdminEmail(_))
        ));
        let bad = OidcSettings {
            issuer: "not a url".into(),
            ..settings
        };
        assert!(matches!(Oidc::new(bad), Err(OidcSettingsError::Issuer(_))));
    }
}

/// A tenant the signed-in person can switch to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TenantChoice {
    pub id: drover_model::TenantId,
    pub name: String,
    pub current: bool,
}

impl Drover {
    /// The tenants a person signed in through the browser works in (their user there, or an
    /// invitation to their e-mail); for other callers, only their own.
    pub async fn tenant_choices(&self, ctx: &RequestContext) -> Result<Vec<TenantChoice>> {
        let Some((_, memberships)) = self.memberships(ctx).await? else {
            return Ok(Vec::new());
        };
        Ok(memberships
            .into_iter()
            .map(|m| {
                let id = drover_model::TenantId::from_uuid(m.tenant_id);
                TenantChoice {
                    current: id == ctx.tenant(),
                    id,
                    name: m.tenant_name,
                }
            })
            .collect())
    }

    /// Moves the browser session `session_secret` to the person's user in tenant `to`
    /// (claiming an invitation there), which later logins then land in first.
    pub async fn switch_tenant(
        &self,
        ctx: &RequestContext,
        session_secret: &str,
        to: drover_model::TenantId,
    ) -> Result<()> {
        self.audited(
            ctx,
            "tenant.switch",
            &to.to_string(),
            self.switch_tenant_unaudited(ctx, session_secret, to),
        )
        .await
    }

    async fn switch_tenant_unaudited(
        &self,
        ctx: &RequestContext,
        session_secret: &str,
        to: drover_model::TenantId,
    ) -> Result<()> {
        let not_yours = || ServiceError::not_found("tenant", to);
        let (user, memberships) = self.memberships(ctx).await?.ok_or_else(|| {
            ServiceError::FailedPrecondition(
                "only a person signed in through the browser can switch tenants".into(),
            )
        })?;
        let target = memberships
            .into_iter()
            .find(|m| m.tenant_id == to.as_uuid())
            .ok_or_else(not_yours)?;
        let mut tx = self.store.begin().await?;
        let target_user = UserId::from_uuid(target.user_id);
        if !target.bound {
            let (Some(issuer), Some(subject)) = (&user.oidc_issuer, &user.oidc_subject) else {
                return Err(not_yours());
            };
            users::bind_identity(&mut *tx, to, target_user, issuer, subject)
                .await?
                .ok_or_else(not_yours)?;
        }
        if !sessions::move_to(
            &mut *tx,
            ctx.tenant(),
            &session_hash(session_secret),
            to,
            target_user,
        )
        .await?
        {
            return Err(ServiceError::Unauthenticated(
                "the session has ended".into(),
            ));
        }
        users::record_login(&mut *tx, to, target_user, &user.name).await?;
        tx.commit().await.map_err(drover_store::StoreError::from)?;
        Ok(())
    }

    /// The caller's user row and the tenants its identity belongs to; None unless the caller is
    /// a person with a provider identity.
    async fn memberships(
        &self,
        ctx: &RequestContext,
    ) -> Result<Option<(users::UserRow, Vec<users::Membership>)>> {
        let crate::Principal::User { id, .. } = ctx.principal() else {
            return Ok(None);
        };
        let Some(user) = users::find_by_id(self.store.pool(), ctx.tenant(), *id).await? else {
            return Ok(None);
        };
        let (Some(issuer), Some(subject)) = (&user.oidc_issuer, &user.oidc_subject) else {
            return Ok(None);
        };
        let memberships =
            users::memberships(self.store.pool(), issuer, subject, &user.email).await?;
        Ok(Some((user, memberships)))
    }
}
