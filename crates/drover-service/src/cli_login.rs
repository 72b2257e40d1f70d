//! `drover login`: the CLI gets a session of its own through the browser login.
//!
//! 1. The CLI listens on a loopback port, makes a random verifier and sends the browser to
//!    `/auth/cli?port=P&challenge=base64url(SHA-256(verifier))`.
//! 2. After the browser login, the person confirms on a droverd page that the CLI on their
//!    computer may act as them ([`Drover::authorize_cli`], a session change, so CSRF-checked);
//!    droverd redirects the browser to `http://127.0.0.1:P/callback?code=...` with a one-time
//!    code that lives two minutes.
//! 3. The CLI exchanges code + verifier ([`Drover::exchange_cli_code`]) for a bearer token
//!    (`drc_...`, a session that lasts the session TTL) and a refresh token (30 days, used once:
//!    [`Drover::refresh_cli_login`] returns a new pair).
//!
//! Only hashes of codes, sessions and refresh tokens are stored; the verifier keeps a code that
//! leaks on the way (e.g. to another local program) useless.

use std::time::Duration;

use base64::Engine as _;
use chrono::Utc;
use drover_model::{CliCredential, Role, TenantId, UserId};
use drover_store::cli_login::{self, Grant};
use drover_store::sessions;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::login::session_hash;
use crate::{Drover, Principal, RequestContext, Result, ServiceError};

/// The prefix of a CLI session's bearer token.
pub const CLI_TOKEN_PREFIX: &str = "drc_";
/// How long a one-time code may wait for the CLI.
pub const CODE_TTL: Duration = Duration::from_secs(120);
/// How long a refresh token lasts (each use gives a new one).
pub const REFRESH_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// A one-time code for the CLI's loopback listener.
pub struct CliCodeText(pub SecretString);

impl std::fmt::Debug for CliCodeText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CliCodeText([redacted])")
    }
}

/// Checks the challenge a CLI sent: base64url without padding of a SHA-256 (43 characters).
pub fn check_challenge(challenge: &str) -> Result<()> {
    let ok = challenge.len() == 43
        && base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(challenge)
            .is_ok_and(|d| d.len() == 32);
    if ok {
        Ok(())
    } else {
        Err(ServiceError::invalid(
            "challenge",
            "must be base64url(SHA-256(verifier)) without padding (43 characters)",
        ))
    }
}

/// The challenge of `verifier` (PKCE S256).
pub fn challenge_of(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

fn random_secret() -> SecretString {
    let bytes: [u8; 32] = rand::random();
    SecretString::from(hex::encode(bytes))
}

fn hash(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

impl Drover {
    /// The logged-in person allows their CLI: a one-time code for the challenge it sent.
    pub async fn authorize_cli(
        &self,
        ctx: &RequestContext,
        challenge: &str,
    ) -> Result<CliCodeText> {
        self.audited(ctx, "cli.authorize", "", async {
            check_challenge(challenge)?;
            let Principal::User { id, .. } = ctx.principal() else {
                return Err(ServiceError::PermissionDenied(
                    "only a person logged in through the browser can allow the CLI".into(),
                ));
            };
            ctx.require(Role::Reader, "allowing the CLI")?;
            let code = random_secret();
            cli_login::insert_code(
                self.store().pool(),
                ctx.tenant(),
                *id,
                &hash(code.expose_secret()),
                challenge,
                Utc::now() + CODE_TTL,
            )
            .await?;
            Ok(CliCodeText(code))
        })
        .await
    }

    /// The CLI's exchange of its one-time code and verifier for a credential.
    pub async fn exchange_cli_code(&self, code: &str, verifier: &str) -> Result<CliCredential> {
        let refused =
            |why: &str| ServiceError::Unauthenticated(format!("CLI login refused: {why}"));
        let pool = self.store().pool();
        cli_login::delete_expired(pool).await?;
        let row = cli_login::take_code(pool, &hash(code))
            .await?
            .ok_or_else(|| {
                refused(
                    "the code is unknown, was already used or has expired; run drover login again",
                )
            })?;
        if row.grant.expires_at <= Utc::now() {
            return Err(refused("the code has expired; run drover login again"));
        }
        let matches: bool = challenge_of(verifier)
            .as_bytes()
            .ct_eq(row.challenge.as_bytes())
            .into();
        if !matches {
            return Err(refused(
                "the verifier does not match the challenge the login started with",
            ));
        }
        self.issue_cli_credential(&row.grant, "cli.login").await
    }

    /// A new credential for a refresh token (which is used up).
    pub async fn refresh_cli_login(&self, refresh_token: &str) -> Result<CliCredential> {
        let pool = self.store().pool();
        let grant = cli_login::take_refresh_token(pool, &hash(refresh_token))
            .await?
            .filter(|g| g.expires_at > Utc::now())
            .ok_or_else(|| {
                ServiceError::Unauthenticated(
                    "the refresh token is unknown, used or expired: run drover login again".into(),
                )
            })?;
        self.issue_cli_credential(&grant, "cli.refresh").await
    }

    async fn issue_cli_credential(&self, grant: &Grant, action: &str) -> Result<CliCredential> {
        let ttl = self
            .oidc_settings()
            .map_or(Duration::from_secs(12 * 3600), |s| s.session_ttl);
        let (tenant, user): (TenantId, UserId) = (grant.tenant(), grant.user());
        let session = random_secret();
        let refresh = random_secret();
        let expires_at = Utc::now() + ttl;
        let refresh_expires_at = Utc::now() + REFRESH_TTL;
        let mut tx = self.store().begin().await?;
        let email = drover_store::users::find_by_id(&mut *tx, tenant, user)
            .await?
            .ok_or_else(|| ServiceError::Unauthenticated("the user no longer exists".into()))?
            .email;
        sessions::insert(
            &mut *tx,
            tenant,
            user,
            &session_hash(session.expose_secret()),
            expires_at,
        )
        .await?;
        cli_login::insert_refresh_token(
            &mut *tx,
            tenant,
            user,
            &hash(refresh.expose_secret()),
            refresh_expires_at,
        )
        .await?;
        tx.commit().await.map_err(drover_store::StoreError::from)?;
        self.record(tenant, &format!("user:{email}"), action, "", "ok")
            .await;
        Ok(CliCredential {
            token: format!("{CLI_TOKEN_PREFIX}{}", session.expose_secret()),
            expires_at,
            refresh_token: refresh.expose_secret().to_owned(),
            refresh_expires_at,
            email,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_are_s256_of_the_verifier() {
        // RFC 7636, appendix B.
        assert_eq!(
            challenge_of("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        check_challenge(&challenge_of("anything")).unwrap();
        for bad in [
            "",
            "short",
            &"a".repeat(44),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-c=",
        ] {
            assert!(check_challenge(bad).is_err(), "{bad}");
        }
    }
}
