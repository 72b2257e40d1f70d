use chrono::Utc;
use drover_model::{
    CreateJoinToken, CreatedJoinToken, JoinInstructions, JoinToken, JoinTokenId, JoinTokenState,
    Role,
};
use drover_siderolink::join;
use drover_store::join_tokens::{self, JoinTokenRow, NewJoinToken};

use crate::secret_token::{self, TokenKind};
use crate::{Drover, RequestContext, Result, ServiceError};

impl Drover {
    pub async fn create_join_token(
        &self,
        ctx: &RequestContext,
        req: CreateJoinToken,
    ) -> Result<CreatedJoinToken> {
        let target = req.name.clone();
        self.audited(
            ctx,
            "joinToken.create",
            &target,
            self.create_join_token_unaudited(ctx, req),
        )
        .await
    }

    async fn create_join_token_unaudited(
        &self,
        ctx: &RequestContext,
        req: CreateJoinToken,
    ) -> Result<CreatedJoinToken> {
        ctx.require(Role::Admin, "creating a join token")?;
        validate_name(&req.name)?;
        if let Some(expiry) = req.expires_at.filter(|e| *e <= Utc::now()) {
            return Err(ServiceError::invalid(
                "expiresAt",
                format!("{} is in the past", expiry.to_rfc3339()),
            ));
        }
        let minted = secret_token::mint(TokenKind::Join);
        let mut tx = self.store.begin().await?;
        if req.make_default {
            join_tokens::clear_default(&mut *tx, ctx.tenant()).await?;
        }
        let row = join_tokens::insert(
            &mut *tx,
            ctx.tenant(),
            NewJoinToken {
                id: JoinTokenId::from_uuid(minted.id),
                name: &req.name,
                secret_hash: &minted.hash,
                expires_at: req.expires_at,
            },
            req.make_default,
        )
        .await
        .map_err(|e| match e.conflict_constraint() {
            Some("join_tokens_name_unique") => {
                ServiceError::Conflict(format!("a join token named {:?} already exists", req.name))
            }
            _ => e.into(),
        })?;
        tx.commit().await.map_err(drover_store::StoreError::from)?;
        let secret = secret_token::reveal(&minted);
        tracing::info!(token = %row.id, name = %row.name, "join token created");
        Ok(CreatedJoinToken {
            token: to_model(row),
            join: self.instructions(&secret),
            secret,
        })
    }

    pub async fn list_join_tokens(&self, ctx: &RequestContext) -> Result<Vec<JoinToken>> {
        ctx.require(Role::Reader, "listing join tokens")?;
        let rows = join_tokens::list(self.store.pool(), ctx.tenant()).await?;
        Ok(rows.into_iter().map(to_model).collect())
    }

    /// A token by id or by name.
    pub async fn get_join_token(&self, ctx: &RequestContext, token: &str) -> Result<JoinToken> {
        ctx.require(Role::Reader, "reading a join token")?;
        Ok(to_model(self.find_join_token(ctx, token).await?))
    }

    /// Revokes a token: new joins with it are refused. Machines that joined with it stay.
    pub async fn revoke_join_token(&self, ctx: &RequestContext, token: &str) -> Result<JoinToken> {
        self.audited(
            ctx,
            "joinToken.revoke",
            token,
            self.revoke_join_token_unaudited(ctx, token),
        )
        .await
    }

    async fn revoke_join_token_unaudited(
        &self,
        ctx: &RequestContext,
        token: &str,
    ) -> Result<JoinToken> {
        ctx.require(Role::Admin, "revoking a join token")?;
        let row = self.find_join_token(ctx, token).await?;
        let row = join_tokens::revoke(
            self.store.pool(),
            ctx.tenant(),
            JoinTokenId::from_uuid(row.id),
        )
        .await?
        .ok_or_else(|| ServiceError::not_found("join token", token))?;
        tracing::info!(token = %row.id, name = %row.name, "join token revoked");
        Ok(to_model(row))
    }

    pub async fn make_default_join_token(
        &self,
        ctx: &RequestContext,
        token: &str,
    ) -> Result<JoinToken> {
        self.audited(
            ctx,
            "joinToken.makeDefault",
            token,
            self.make_default_join_token_unaudited(ctx, token),
        )
        .await
    }

    async fn make_default_join_token_unaudited(
        &self,
        ctx: &RequestContext,
        token: &str,
    ) -> Result<JoinToken> {
        ctx.require(Role::Admin, "changing the default join token")?;
        let row = self.find_join_token(ctx, token).await?;
        match state(&row) {
            JoinTokenState::Active => {}
            other => {
                return Err(ServiceError::Conflict(format!(
                    "join token {:?} is {}; only an active token can be the default",
                    row.name,
                    other.as_str()
                )));
            }
        }
        let mut tx = self.store.begin().await?;
        join_tokens::clear_default(&mut *tx, ctx.tenant()).await?;
        let row = join_tokens::set_default(&mut *tx, ctx.tenant(), JoinTokenId::from_uuid(row.id))
            .await?
            .ok_or_else(|| ServiceError::not_found("join token", token))?;
        tx.commit().await.map_err(drover_store::StoreError::from)?;
        Ok(to_model(row))
    }

    /// Kernel arguments and join-config documents for a token secret. The secret is checked
    /// against the tenant's tokens, so a typo or a revoked token is caught here, not at boot.
    pub async fn join_instructions(
        &self,
        ctx: &RequestContext,
        secret: &str,
    ) -> Result<JoinInstructions> {
        ctx.require(Role::Reader, "reading join instructions")?;
        let not_ours =
            || ServiceError::invalid("secret", "this is not a join token of this tenant");
        let id = secret_token::parse_id(TokenKind::Join, secret.trim()).ok_or_else(not_ours)?;
        let row = join_tokens::get(self.store.pool(), ctx.tenant(), JoinTokenId::from_uuid(id))
            .await?
            .filter(|row| secret_token::verify(secret.trim(), &row.secret_hash))
            .ok_or_else(not_ours)?;
        match state(&row) {
            JoinTokenState::Active => Ok(self.instructions(secret.trim())),
            other => Err(ServiceError::Conflict(format!(
                "join token {:?} is {}; nodes using it would be refused",
                row.name,
                other.as_str()
            ))),
        }
    }

    fn instructions(&self, secret: &str) -> JoinInstructions {
        let mut api = self.config.advertised_machine_api.clone();
        api.join_token = Some(secret.to_owned());
        let services = self.config.tunnel_services();
        JoinInstructions {
            kernel_args: join::kernel_args(&api, &services),
            join_config: join::join_config(&api, &services),
        }
    }

    async fn find_join_token(&self, ctx: &RequestContext, token: &str) -> Result<JoinTokenRow> {
        let row = match token.parse::<JoinTokenId>() {
            Ok(id) => join_tokens::get(self.store.pool(), ctx.tenant(), id).await?,
            Err(_) => join_tokens::get_by_name(self.store.pool(), ctx.tenant(), token).await?,
        };
        row.ok_or_else(|| ServiceError::not_found("join token", token))
    }
}

pub(crate) fn state(row: &JoinTokenRow) -> JoinTokenState {
    if row.revoked_at.is_some() {
        JoinTokenState::Revoked
    } else if row.expires_at.is_some_and(|e| e <= Utc::now()) {
        JoinTokenState::Expired
    } else {
        JoinTokenState::Active
    }
}

fn to_model(row: JoinTokenRow) -> JoinToken {
    JoinToken {
        state: state(&row),
        id: JoinTokenId::from_uuid(row.id),
        name: row.name,
        is_default: row.is_default,
        expires_at: row.expires_at,
        revoked_at: row.revoked_at,
        use_count: u64::try_from(row.use_count).unwrap_or_default(),
        last_used_at: row.last_used_at,
        created_at: row.created_at,
    }
}

pub(crate) fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(ServiceError::invalid(
            "name",
            format!(
                "{name:?} is not a valid name: use 1-63 lower-case letters, digits and '-', \
                 starting with a letter or digit"
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in ["a", "prod-rack-1", "0day"] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "-x",
            "Upper",
            "with space",
            "under_score",
            &"x".repeat(64),
        ] {
            let err = validate_name(bad).unwrap_err();
            assert!(err.to_string().starts_with("name: "), "{bad}: {err}");
        }
    }
}
