//! Users of a tenant: people who log in through OpenID Connect.

use chrono::{DateTime, Utc};
use drover_model::{TenantId, UserId};
use sqlx::PgExecutor;

use crate::{Result, tenant_uuid};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    pub id: uuid::Uuid,
    pub tenant_id: uuid::Uuid,
    pub email: String,
    pub name: String,
    pub role: String,
    pub oidc_issuer: Option<String>,
    pub oidc_subject: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_login_at: Option<DateTime<Utc>>,
}

impl UserRow {
    pub fn user_id(&self) -> UserId {
        UserId::from_uuid(self.id)
    }
}

const COLUMNS: &str = "id, tenant_id, email, name, role, oidc_issuer, oidc_subject, created_at, \
                       last_login_at";

pub struct NewUser<'a> {
    pub id: UserId,
    /// Lower case.
    pub email: &'a str,
    pub name: &'a str,
    pub role: &'a str,
    /// The provider identity, for a user created at login; None for an invitation.
    pub oidc: Option<(&'a str, &'a str)>,
}

pub async fn insert(e: impl PgExecutor<'_>, tenant: TenantId, u: NewUser<'_>) -> Result<UserRow> {
    Ok(sqlx::query_as(&format!(
        "INSERT INTO users (id, tenant_id, email, name, role, oidc_issuer, oidc_subject, last_login_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, CASE WHEN $6::text IS NULL THEN NULL ELSE now() END)
         RETURNING {COLUMNS}"
    ))
    .bind(u.id.as_uuid())
    .bind(tenant_uuid(tenant))
    .bind(u.email)
    .bind(u.name)
    .bind(u.role)
    .bind(u.oidc.map(|(issuer, _)| issuer))
    .bind(u.oidc.map(|(_, subject)| subject))
    .fetch_one(e)
    .await?)
}

/// The user with this id.
pub async fn find_by_id(
    e: impl PgExecutor<'_>,
    tenant: TenantId,
    user: UserId,
) -> Result<Option<UserRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM users WHERE tenant_id = $1 AND id = $2"
    ))
    .bind(tenant_uuid(tenant))
    .bind(user.as_uuid())
    .fetch_optional(e)
    .await?)
}

/// The user a provider identity belongs to.
pub async fn find_by_subject(
    e: impl PgExecutor<'_>,
    tenant: TenantId,
    issuer: &str,
    subject: &str,
) -> Result<Option<UserRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM users WHERE tenant_id = $1 AND oidc_issuer = $2 AND oidc_subject = $3"
    ))
    .bind(tenant_uuid(tenant))
    .bind(issuer)
    .bind(subject)
    .fetch_optional(e)
    .await?)
}

pub async fn find_by_email(
    e: impl PgExecutor<'_>,
    tenant: TenantId,
    email: &str,
) -> Result<Option<UserRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM users WHERE tenant_id = $1 AND email = $2"
    ))
    .bind(tenant_uuid(tenant))
    .bind(email)
    .fetch_optional(e)
    .await?)
}

/// Binds a provider identity to a user that has none yet (an invitation's first login).
/// Returns None when the row has an identity already (or is gone).
pub async fn bind_identity(
    e: impl PgExecutor<'_>,
    tenant: TenantId,
    id: UserId,
    issuer: &str,
    subject: &str,
) -> Result<Option<UserRow>> {
    Ok(sqlx::query_as(&format!(
        "UPDATE users SET oidc_issuer = $3, oidc_subject = $4
         WHERE tenant_id = $1 AND id = $2 AND oidc_subject IS NULL
         RETURNING {COLUMNS}"
    ))
    .bind(tenant_uuid(tenant))
    .bind(id.as_uuid())
    .bind(issuer)
    .bind(subject)
    .fetch_optional(e)
    .await?)
}

/// Records a login, with the name and e-mail the provider gave this time.
pub async fn record_login(
    e: impl PgExecutor<'_>,
    tenant: TenantId,
    id: UserId,
    name: &str,
) -> Result<UserRow> {
    Ok(sqlx::query_as(&format!(
        "UPDATE users SET last_login_at = now(), name = CASE WHEN $3 = '' THEN name ELSE $3 END
         WHERE tenant_id = $1 AND id = $2
         RETURNING {COLUMNS}"
    ))
    .bind(tenant_uuid(tenant))
    .bind(id.as_uuid())
    .bind(name)
    .fetch_one(e)
    .await?)
}

/// Multi-tenant login: the users a provider identity is in any tenant, most recently used
/// first. A credential lookup that establishes the tenant, like `api_tokens::find_by_id`.
pub async fn find_by_subject_in_any_tenant(
    e: impl PgExecutor<'_>,
    issuer: &str,
    subject: &str,
) -> Result<Option<UserRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM users WHERE oidc_issuer = $1 AND oidc_subject = $2
         ORDER BY last_login_at DESC NULLS LAST, created_at LIMIT 1"
    ))
    .bind(issuer)
    .bind(subject)
    .fetch_optional(e)
    .await?)
}

/// Every user of the tenant (invited ones too), by e-mail.
pub async fn list(e: impl PgExecutor<'_>, tenant: TenantId) -> Result<Vec<UserRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM users WHERE tenant_id = $1 ORDER BY email"
    ))
    .bind(tenant_uuid(tenant))
    .fetch_all(e)
    .await?)
}

/// Locks the tenant's Admin users (invited ones too) until the transaction ends, and returns
/// them: what a change that may remove the last Admin decides on, so that two concurrent
/// demotions cannot both pass.
pub async fn lock_admins(e: impl PgExecutor<'_>, tenant: TenantId) -> Result<Vec<UserRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM users WHERE tenant_id = $1 AND role = 'admin' ORDER BY id FOR UPDATE"
    ))
    .bind(tenant_uuid(tenant))
    .fetch_all(e)
    .await?)
}

pub async fn set_role(
    e: impl PgExecutor<'_>,
    tenant: TenantId,
    id: UserId,
    role: &str,
) -> Result<Option<UserRow>> {
    Ok(sqlx::query_as(&format!(
        "UPDATE users SET role = $3 WHERE tenant_id = $1 AND id = $2 RETURNING {COLUMNS}"
    ))
    .bind(tenant_uuid(tenant))
    .bind(id.as_uuid())
    .bind(role)
    .fetch_optional(e)
    .await?)
}

/// Multi-tenant login: the users with this e-mail address in any tenant (invitations not yet
/// bound first, then the oldest). Establishes the tenant of a first login.
pub async fn find_by_email_in_any_tenant(
    e: impl PgExecutor<'_>,
    email: &str,
) -> Result<Vec<UserRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM users WHERE email = $1
         ORDER BY (oidc_subject IS NULL) DESC, created_at"
    ))
    .bind(email)
    .fetch_all(e)
    .await?)
}

/// Deletes a user; their sessions and grants go with the row. With `only_invited`, only a user
/// who never logged in (an invitation). None if nothing matched.
pub async fn delete(
    e: impl PgExecutor<'_>,
    tenant: TenantId,
    email: &str,
    only_invited: bool,
) -> Result<Option<UserRow>> {
    Ok(sqlx::query_as(&format!(
        "DELETE FROM users WHERE tenant_id = $1 AND email = $2
           AND (NOT $3 OR oidc_subject IS NULL)
         RETURNING {COLUMNS}"
    ))
    .bind(tenant_uuid(tenant))
    .bind(email)
    .bind(only_invited)
    .fetch_optional(e)
    .await?)
}

/// A tenant a person can work in: their user row there and the tenant's name.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Membership {
    pub tenant_id: uuid::Uuid,
    pub tenant_name: String,
    pub user_id: uuid::Uuid,
    /// Whether the row is bound to the identity yet (else it is an invitation by e-mail).
    pub bound: bool,
}

/// Every tenant where this provider identity is a user, or where its e-mail has an invitation
/// not yet bound to anyone: the tenants the person can switch between. A credential lookup that
/// crosses tenants, like [`find_by_subject_in_any_tenant`].
pub async fn memberships(
    e: impl PgExecutor<'_>,
    issuer: &str,
    subject: &str,
    email: &str,
) -> Result<Vec<Membership>> {
    Ok(sqlx::query_as(
        "SELECT u.tenant_id, t.name AS tenant_name, u.id AS user_id,
                u.oidc_subject IS NOT NULL AS bound
         FROM users u JOIN tenants t ON t.id = u.tenant_id
         WHERE (u.oidc_issuer = $1 AND u.oidc_subject = $2)
            OR (u.oidc_subject IS NULL AND u.email = $3)
         ORDER BY t.name",
    )
    .bind(issuer)
    .bind(subject)
    .bind(email)
    .fetch_all(e)
    .await?)
}
