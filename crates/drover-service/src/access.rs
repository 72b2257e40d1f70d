//! Access management: service accounts and their keys, users and invitations, per-cluster
//! grants, and the one place that decides a caller's role on a cluster.
//!
//! Every operation here needs the Admin role in the tenant. A service account may hold several
//! keys (so a key can be rotated without downtime); deleting the account ("revoke") refuses all
//! of them from the next request on.

use std::collections::HashMap;

use chrono::Utc;
use drover_model::{
    ClusterGrant, CreateServiceAccount, GrantClusterRole, GrantTarget, InviteUser,
    IssuedServiceAccountKey, Role, ServiceAccount, ServiceAccountId, ServiceAccountKey,
    ServiceAccountKeyId, User, UserId, UserStatus,
};
use drover_store::cluster_grants::{self, GrantRow, Grantee};
use drover_store::service_accounts::{self, KeyRow, NewServiceAccount, ServiceAccountRow};
use drover_store::users::{self, UserRow};
use drover_store::{StoreError, clusters};

use crate::jointokens::validate_name;
use crate::secret_token::{self, TokenKind};
use crate::{Drover, Principal, RequestContext, Result, ServiceError};

impl Drover {
    /// The caller's role on `cluster`: the higher of its role in the tenant and a grant on that
    /// cluster to the user or service account behind the request.
    pub async fn role_on_cluster(&self, ctx: &RequestContext, cluster: &str) -> Result<Role> {
        let granted = match grantee_of(ctx.principal()) {
            Some(grantee) => {
                cluster_grants::role_of(self.store.pool(), ctx.tenant(), cluster, grantee)
                    .await?
                    .map(|r| parse_role(&r))
                    .transpose()?
            }
            None => None,
        };
        Ok(granted.map_or(ctx.role(), |g| g.max(ctx.role())))
    }

    /// Fails unless the caller may act with at least `role` on `cluster` (see
    /// [`Drover::role_on_cluster`]). Every cluster-scoped operation checks through here.
    pub async fn require_on_cluster(
        &self,
        ctx: &RequestContext,
        cluster: &str,
        role: Role,
        action: &str,
    ) -> Result<()> {
        if ctx.role() >= role {
            return Ok(());
        }
        let effective = self.role_on_cluster(ctx, cluster).await?;
        if effective >= role {
            return Ok(());
        }
        Err(ServiceError::PermissionDenied(format!(
            "{action} needs the {role} role on cluster {cluster:?}; this credential has {} in \
             the tenant{}",
            ctx.role(),
            if effective > ctx.role() {
                format!(" and {effective} on the cluster")
            } else {
                String::new()
            }
        )))
    }

    // --- Service accounts ---------------------------------------------------------------

    /// Creates a service account with its first key; the key's secret is shown only here.
    pub async fn create_service_account(
        &self,
        ctx: &RequestContext,
        req: CreateServiceAccount,
    ) -> Result<IssuedServiceAccountKey> {
        let target = req.name.clone();
        self.audited(
            ctx,
            "serviceAccount.create",
            &target,
            self.create_service_account_unaudited(ctx, req),
        )
        .await
    }

    async fn create_service_account_unaudited(
        &self,
        ctx: &RequestContext,
        req: CreateServiceAccount,
    ) -> Result<IssuedServiceAccountKey> {
        ctx.require(Role::Admin, "creating a service account")?;
        validate_name(&req.name)?;
        if let Some(expiry) = req.expires_at.filter(|e| *e <= Utc::now()) {
            return Err(ServiceError::invalid(
                "expiresAt",
                format!("{} is in the past", expiry.to_rfc3339()),
            ));
        }
        let minted = secret_token::mint(TokenKind::ServiceAccount);
        let mut tx = self.store.begin().await?;
        self.check_quota(
            &mut tx,
            ctx.tenant(),
            drover_model::Resource::ServiceAccounts,
        )
        .await?;
        let account = service_accounts::insert(
            &mut *tx,
            ctx.tenant(),
            NewServiceAccount {
                id: uuid::Uuid::new_v4(),
                name: &req.name,
                role: req.role.as_str(),
                expires_at: req.expires_at,
            },
        )
        .await
        .map_err(|e| match e.conflict_constraint() {
            Some("service_accounts_name_unique") => ServiceError::Conflict(format!(
                "a service account named {:?} already exists",
                req.name
            )),
            _ => e.into(),
        })?;
        let key = service_accounts::insert_key(
            &mut *tx,
            ctx.tenant(),
            account.id,
            minted.id,
            &minted.hash,
            None,
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        tracing::info!(service_account = %account.id, name = %account.name, role = %account.role, "service account created");
        Ok(IssuedServiceAccountKey {
            service_account: service_account(account, vec![key.clone()])?,
            key: key_model(key),
            secret: secret_token::reveal(&minted),
        })
    }

    pub async fn list_service_accounts(&self, ctx: &RequestContext) -> Result<Vec<ServiceAccount>> {
        ctx.require(Role::Admin, "listing service accounts")?;
        let pool = self.store.pool();
        let accounts = service_accounts::list(pool, ctx.tenant()).await?;
        let mut keys: HashMap<uuid::Uuid, Vec<KeyRow>> = HashMap::new();
        for key in service_accounts::list_keys(pool, ctx.tenant()).await? {
            keys.entry(key.service_account_id).or_default().push(key);
        }
        accounts
            .into_iter()
            .map(|a| {
                let k = keys.remove(&a.id).unwrap_or_default();
                service_account(a, k)
            })
            .collect()
    }

    pub async fn get_service_account(
        &self,
        ctx: &RequestContext,
        name: &str,
    ) -> Result<ServiceAccount> {
        ctx.require(Role::Admin, "reading a service account")?;
        self.list_service_accounts(ctx)
            .await?
            .into_iter()
            .find(|a| a.name == name)
            .ok_or_else(|| ServiceError::not_found("service account", name))
    }

    /// Revokes a service account: it and its keys and grants are deleted, so every key is
    /// refused from the next request on.
    pub async fn delete_service_account(
        &self,
        ctx: &RequestContext,
        name: &str,
    ) -> Result<ServiceAccount> {
        self.audited(
            ctx,
            "serviceAccount.delete",
            name,
            self.delete_service_account_unaudited(ctx, name),
        )
        .await
    }

    async fn delete_service_account_unaudited(
        &self,
        ctx: &RequestContext,
        name: &str,
    ) -> Result<ServiceAccount> {
        ctx.require(Role::Admin, "revoking a service account")?;
        let account = self.get_service_account(ctx, name).await?;
        service_accounts::delete(self.store.pool(), ctx.tenant(), name)
            .await?
            .ok_or_else(|| ServiceError::not_found("service account", name))?;
        tracing::info!(service_account = %account.id, name, "service account revoked");
        Ok(account)
    }

    /// Issues another key for a service account; its secret is shown only here.
    /// With `expires_at`, the key stops working then (e.g. a kubeconfig for automation).
    pub async fn create_service_account_key(
        &self,
        ctx: &RequestContext,
        name: &str,
        expires_at: Option<chrono::DateTime<Utc>>,
    ) -> Result<IssuedServiceAccountKey> {
        self.audited(
            ctx,
            "serviceAccountKey.create",
            name,
            self.create_service_account_key_unaudited(ctx, name, expires_at),
        )
        .await
    }

    async fn create_service_account_key_unaudited(
        &self,
        ctx: &RequestContext,
        name: &str,
        expires_at: Option<chrono::DateTime<Utc>>,
    ) -> Result<IssuedServiceAccountKey> {
        ctx.require(Role::Admin, "issuing a service account key")?;
        if let Some(at) = expires_at.filter(|at| *at <= Utc::now()) {
            return Err(ServiceError::invalid(
                "expiresAt",
                format!("{} is in the past", at.to_rfc3339()),
            ));
        }
        let account = service_accounts::get(self.store.pool(), ctx.tenant(), name)
            .await?
            .ok_or_else(|| ServiceError::not_found("service account", name))?;
        let minted = secret_token::mint(TokenKind::ServiceAccount);
        let key = service_accounts::insert_key(
            self.store.pool(),
            ctx.tenant(),
            account.id,
            minted.id,
            &minted.hash,
            expires_at,
        )
        .await?;
        tracing::info!(service_account = %account.id, key = %key.id, "service account key issued");
        Ok(IssuedServiceAccountKey {
            service_account: self.get_service_account(ctx, name).await?,
            key: key_model(key),
            secret: secret_token::reveal(&minted),
        })
    }

    /// Revokes one key of a service account: it is refused from the next request on.
    pub async fn revoke_service_account_key(
        &self,
        ctx: &RequestContext,
        name: &str,
        key: &str,
    ) -> Result<ServiceAccount> {
        let target = format!("{name}/{key}");
        self.audited(
            ctx,
            "serviceAccountKey.revoke",
            &target,
            self.revoke_service_account_key_unaudited(ctx, name, key),
        )
        .await
    }

    async fn revoke_service_account_key_unaudited(
        &self,
        ctx: &RequestContext,
        name: &str,
        key: &str,
    ) -> Result<ServiceAccount> {
        ctx.require(Role::Admin, "revoking a service account key")?;
        let key_id: ServiceAccountKeyId = key
            .parse()
            .map_err(|e: drover_model::InvalidId| ServiceError::invalid("key", e.to_string()))?;
        let account = service_accounts::get(self.store.pool(), ctx.tenant(), name)
            .await?
            .ok_or_else(|| ServiceError::not_found("service account", name))?;
        service_accounts::revoke_key(
            self.store.pool(),
            ctx.tenant(),
            account.id,
            key_id.as_uuid(),
        )
        .await?
        .ok_or_else(|| {
            ServiceError::not_found("key of service account", format!("{name}/{key}"))
        })?;
        tracing::info!(service_account = %account.id, key = %key_id, "service account key revoked");
        self.get_service_account(ctx, name).await
    }

    // --- Users and invitations ----------------------------------------------------------

    /// Every user of the tenant, invited ones included (`status`).
    pub async fn list_users(&self, ctx: &RequestContext) -> Result<Vec<User>> {
        ctx.require(Role::Admin, "listing users")?;
        users::list(self.store.pool(), ctx.tenant())
            .await?
            .into_iter()
            .map(user_model)
            .collect()
    }

    /// Invites a person by e-mail: a user row without an identity, which their first login
    /// through the identity provider (with that verified e-mail) binds and activates.
    pub async fn invite_user(&self, ctx: &RequestContext, req: InviteUser) -> Result<User> {
        let target = req.email.clone();
        self.audited(
            ctx,
            "user.invite",
            &target,
            self.invite_user_unaudited(ctx, req),
        )
        .await
    }

    async fn invite_user_unaudited(&self, ctx: &RequestContext, req: InviteUser) -> Result<User> {
        ctx.require(Role::Admin, "inviting a user")?;
        let email = normalize_email(&req.email)?;
        let mut tx = self.store.begin().await?;
        self.check_quota(&mut tx, ctx.tenant(), drover_model::Resource::Users)
            .await?;
        let row = users::insert(
            &mut *tx,
            ctx.tenant(),
            users::NewUser {
                id: UserId::new_random(),
                email: &email,
                name: "",
                role: req.role.as_str(),
                oidc: None,
            },
        )
        .await
        .map_err(|e| match e.conflict_constraint() {
            Some("users_email_unique") => ServiceError::Conflict(format!(
                "{email} is already a user or invited; change their role with set-role"
            )),
            _ => e.into(),
        })?;
        tx.commit().await.map_err(StoreError::from)?;
        tracing::info!(user = %row.id, %email, role = %row.role, "user invited");
        user_model(row)
    }

    /// The invitations not yet taken up by a first login.
    pub async fn list_invitations(&self, ctx: &RequestContext) -> Result<Vec<User>> {
        Ok(self
            .list_users(ctx)
            .await?
            .into_iter()
            .filter(|u| u.status == UserStatus::Invited)
            .collect())
    }

    /// Cancels an invitation (a user who has logged in is removed with `remove_user`).
    pub async fn cancel_invitation(&self, ctx: &RequestContext, email: &str) -> Result<User> {
        self.audited(
            ctx,
            "user.cancelInvitation",
            email,
            self.cancel_invitation_unaudited(ctx, email),
        )
        .await
    }

    async fn cancel_invitation_unaudited(&self, ctx: &RequestContext, email: &str) -> Result<User> {
        ctx.require(Role::Admin, "cancelling an invitation")?;
        let email = normalize_email(email)?;
        let row = users::delete(self.store.pool(), ctx.tenant(), &email, true)
            .await?
            .ok_or_else(|| ServiceError::not_found("invitation", &email))?;
        tracing::info!(user = %row.id, %email, "invitation cancelled");
        user_model(row)
    }

    /// Changes a user's role; it applies from their next request. The tenant's last Admin
    /// cannot be demoted.
    pub async fn set_user_role(
        &self,
        ctx: &RequestContext,
        email: &str,
        role: Role,
    ) -> Result<User> {
        let action = format!("user.setRole.{}", role.as_str());
        self.audited(
            ctx,
            &action,
            email,
            self.set_user_role_unaudited(ctx, email, role),
        )
        .await
    }

    async fn set_user_role_unaudited(
        &self,
        ctx: &RequestContext,
        email: &str,
        role: Role,
    ) -> Result<User> {
        ctx.require(Role::Admin, "changing a user's role")?;
        let email = normalize_email(email)?;
        let mut tx = self.store.begin().await?;
        let target = self
            .locked_user(&mut tx, ctx, &email, "demoting", role != Role::Admin)
            .await?;
        let row = users::set_role(&mut *tx, ctx.tenant(), target.user_id(), role.as_str())
            .await?
            .ok_or_else(|| ServiceError::not_found("user", &email))?;
        tx.commit().await.map_err(StoreError::from)?;
        tracing::info!(user = %row.id, %email, %role, "user role changed");
        user_model(row)
    }

    /// Removes a user: their sessions end at once (the next request is refused). The tenant's
    /// last Admin cannot be removed.
    pub async fn remove_user(&self, ctx: &RequestContext, email: &str) -> Result<User> {
        self.audited(
            ctx,
            "user.remove",
            email,
            self.remove_user_unaudited(ctx, email),
        )
        .await
    }

    async fn remove_user_unaudited(&self, ctx: &RequestContext, email: &str) -> Result<User> {
        ctx.require(Role::Admin, "removing a user")?;
        let email = normalize_email(email)?;
        let mut tx = self.store.begin().await?;
        self.locked_user(&mut tx, ctx, &email, "removing", true)
            .await?;
        let row = users::delete(&mut *tx, ctx.tenant(), &email, false)
            .await?
            .ok_or_else(|| ServiceError::not_found("user", &email))?;
        tx.commit().await.map_err(StoreError::from)?;
        tracing::info!(user = %row.id, %email, "user removed");
        user_model(row)
    }

    /// Locks the tenant's Admin users, then finds `email`; with `loses_admin`, refuses when the
    /// user is the last Admin who has logged in.
    async fn locked_user(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
        ctx: &RequestContext,
        email: &str,
        action: &str,
        loses_admin: bool,
    ) -> Result<UserRow> {
        let admins = users::lock_admins(&mut **tx, ctx.tenant()).await?;
        let target = users::find_by_email(&mut **tx, ctx.tenant(), email)
            .await?
            .ok_or_else(|| ServiceError::not_found("user", email))?;
        let active_admin = |u: &UserRow| u.role == Role::Admin.as_str() && u.oidc_subject.is_some();
        if loses_admin
            && active_admin(&target)
            && !admins.iter().any(|a| a.id != target.id && active_admin(a))
        {
            return Err(ServiceError::FailedPrecondition(format!(
                "{action} {email} is refused: they are the last Admin of the tenant; make \
                 another user Admin first"
            )));
        }
        Ok(target)
    }

    // --- Per-cluster grants -------------------------------------------------------------

    /// Grants a user (by e-mail, invited ones too) or a service account a role on one cluster,
    /// replacing an earlier grant to them on it.
    pub async fn grant_cluster_role(
        &self,
        ctx: &RequestContext,
        cluster: &str,
        req: GrantClusterRole,
    ) -> Result<ClusterGrant> {
        self.audited(
            ctx,
            "cluster.grant",
            cluster,
            self.grant_cluster_role_unaudited(ctx, cluster, req),
        )
        .await
    }

    async fn grant_cluster_role_unaudited(
        &self,
        ctx: &RequestContext,
        cluster: &str,
        req: GrantClusterRole,
    ) -> Result<ClusterGrant> {
        ctx.require(Role::Admin, "granting a role on a cluster")?;
        let pool = self.store.pool();
        if clusters::get(pool, ctx.tenant(), cluster).await?.is_none() {
            return Err(ServiceError::not_found("cluster", cluster));
        }
        let (grantee, to) = self.resolve_grantee(ctx, &req.target()).await?;
        cluster_grants::upsert(pool, ctx.tenant(), cluster, grantee, req.role.as_str()).await?;
        tracing::info!(cluster, ?to, role = %req.role, "cluster role granted");
        self.list_cluster_grants(ctx, cluster)
            .await?
            .into_iter()
            .find(|g| g.target() == to)
            .ok_or_else(|| ServiceError::not_found("cluster", cluster))
    }

    pub async fn list_cluster_grants(
        &self,
        ctx: &RequestContext,
        cluster: &str,
    ) -> Result<Vec<ClusterGrant>> {
        ctx.require(Role::Admin, "listing a cluster's grants")?;
        let pool = self.store.pool();
        if clusters::get(pool, ctx.tenant(), cluster).await?.is_none() {
            return Err(ServiceError::not_found("cluster", cluster));
        }
        cluster_grants::list(pool, ctx.tenant(), cluster)
            .await?
            .into_iter()
            .map(grant_model)
            .collect()
    }

    pub async fn revoke_cluster_grant(
        &self,
        ctx: &RequestContext,
        cluster: &str,
        to: &GrantTarget,
    ) -> Result<()> {
        self.audited(
            ctx,
            "cluster.revokeGrant",
            cluster,
            self.revoke_cluster_grant_unaudited(ctx, cluster, to),
        )
        .await
    }

    async fn revoke_cluster_grant_unaudited(
        &self,
        ctx: &RequestContext,
        cluster: &str,
        to: &GrantTarget,
    ) -> Result<()> {
        ctx.require(Role::Admin, "revoking a role on a cluster")?;
        let (grantee, to) = self.resolve_grantee(ctx, to).await?;
        if !cluster_grants::delete(self.store.pool(), ctx.tenant(), cluster, grantee).await? {
            let who = to.user.or(to.service_account).unwrap_or_default();
            return Err(ServiceError::not_found(
                "grant on cluster",
                format!("{cluster} for {who}"),
            ));
        }
        tracing::info!(cluster, "cluster grant revoked");
        Ok(())
    }

    async fn resolve_grantee(
        &self,
        ctx: &RequestContext,
        to: &GrantTarget,
    ) -> Result<(Grantee, GrantTarget)> {
        let pool = self.store.pool();
        match (&to.user, &to.service_account) {
            (Some(email), None) => {
                let email = normalize_email(email)?;
                let user = users::find_by_email(pool, ctx.tenant(), &email)
                    .await?
                    .ok_or_else(|| ServiceError::not_found("user", &email))?;
                Ok((
                    Grantee::User(user.id),
                    GrantTarget {
                        user: Some(email),
                        service_account: None,
                    },
                ))
            }
            (None, Some(name)) => {
                let account = service_accounts::get(pool, ctx.tenant(), name)
                    .await?
                    .ok_or_else(|| ServiceError::not_found("service account", name))?;
                Ok((
                    Grantee::ServiceAccount(account.id),
                    GrantTarget {
                        user: None,
                        service_account: Some(account.name),
                    },
                ))
            }
            _ => Err(ServiceError::invalid(
                "user",
                "name exactly one grantee: a user (e-mail) or a service account",
            )),
        }
    }
}

fn grantee_of(principal: &Principal) -> Option<Grantee> {
    match principal {
        Principal::User { id, .. } => Some(Grantee::User(id.as_uuid())),
        Principal::ServiceAccount { id, .. } => Some(Grantee::ServiceAccount(id.as_uuid())),
        // API tokens (the initial admin token) have only their tenant role.
        Principal::ApiToken { .. } => None,
    }
}

fn parse_role(text: &str) -> Result<Role> {
    text.parse()
        .map_err(|e: drover_model::UnknownRole| ServiceError::Internal(Box::new(e)))
}

/// The e-mail as login compares it (`login::normalise_email`), or an error naming it.
fn normalize_email(email: &str) -> Result<String> {
    crate::login::normalise_email(email).ok_or_else(|| {
        ServiceError::invalid(
            "email",
            format!("{:?} is not an e-mail address", email.trim()),
        )
    })
}

fn service_account(row: ServiceAccountRow, keys: Vec<KeyRow>) -> Result<ServiceAccount> {
    Ok(ServiceAccount {
        id: ServiceAccountId::from_uuid(row.id),
        role: parse_role(&row.role)?,
        expired: row.expires_at.is_some_and(|e| e <= Utc::now()),
        name: row.name,
        expires_at: row.expires_at,
        created_at: row.created_at,
        keys: keys.into_iter().map(key_model).collect(),
    })
}

fn key_model(row: KeyRow) -> ServiceAccountKey {
    ServiceAccountKey {
        id: ServiceAccountKeyId::from_uuid(row.id),
        created_at: row.created_at,
        revoked_at: row.revoked_at,
        last_used_at: row.last_used_at,
        expires_at: row.expires_at,
    }
}

fn user_model(row: UserRow) -> Result<User> {
    Ok(User {
        id: row.user_id(),
        role: parse_role(&row.role)?,
        status: if row.oidc_subject.is_some() {
            UserStatus::Active
        } else {
            UserStatus::Invited
        },
        email: row.email,
        name: row.name,
        created_at: row.created_at,
        last_login_at: row.last_login_at,
    })
}

fn grant_model(row: GrantRow) -> Result<ClusterGrant> {
    Ok(ClusterGrant {
        role: parse_role(&row.role)?,
        cluster: row.cluster_name,
        user: row.user_email,
        service_account: row.service_account_name,
        created_at: row.created_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e_mail_addresses_are_normalised_like_login_does() {
        assert_eq!(
            normalize_email(" Ann@Example.COM ").unwrap(),
            "ann@example.com"
        );
        for bad in ["", "ann", "@example.com", "a@b@c"] {
            let err = normalize_email(bad).unwrap_err().to_string();
            assert!(err.starts_with("email: "), "{bad:?}: {err}");
        }
    }
}
