//! The audit log: every mutation, login and credential issuance is recorded with its actor,
//! tenant, time, action, target and result, by the service layer, so REST, gRPC and the UI
//! record alike.
//!
//! An entry is written after the action, whatever its outcome (a refused or failed attempt is
//! recorded too). Writing it is best effort: an action that succeeded is not undone because its
//! entry could not be stored; that failure is logged as an error.

use std::future::Future;

use chrono::{DateTime, Utc};
use drover_model::{AuditEntry, Role, TenantId};
use drover_store::audit_log::{self, Filter, NewEntry};

use crate::{Drover, Principal, RequestContext, Result, ServiceError};

/// At most this many entries per read.
pub const MAX_ENTRIES: i64 = 1000;

/// What to read from the log.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Only entries after this id (follow the log with the last id seen).
    pub after: i64,
    pub since: Option<DateTime<Utc>>,
    /// Only actions starting with this, e.g. `cluster.`.
    pub action: Option<String>,
    /// Only this actor, e.g. `user:alice@example.com`.
    pub actor: Option<String>,
    /// Default and maximum [`MAX_ENTRIES`].
    pub limit: Option<u32>,
}

impl Principal {
    /// How the audit log names this principal.
    pub fn actor(&self) -> String {
        match self {
            Self::ApiToken { name, .. } => format!("token:{name}"),
            Self::User { email, .. } => format!("user:{email}"),
            Self::ServiceAccount { name, .. } => format!("serviceaccount:{name}"),
        }
    }
}

/// How an outcome is recorded: `ok`, or the kind of failure with the caller-safe message.
fn outcome<T>(result: &Result<T>) -> String {
    match result {
        Ok(_) => "ok".into(),
        Err(err) => match err {
            ServiceError::Unauthenticated(m) | ServiceError::PermissionDenied(m) => {
                format!("denied: {m}")
            }
            ServiceError::NotFound { .. } => "notFound".into(),
            ServiceError::InvalidArgument { .. } => format!("invalid: {err}"),
            ServiceError::Conflict(m) => format!("conflict: {m}"),
            ServiceError::FailedPrecondition(m) => format!("refused: {m}"),
            ServiceError::ResourceExhausted(m) => format!("exhausted: {m}"),
            ServiceError::QuotaExceeded { .. } => format!("exhausted: {err}"),
            ServiceError::Unavailable(m) => format!("unavailable: {m}"),
            ServiceError::Internal(_) => "error".into(),
        },
    }
}

impl Drover {
    /// Runs `action` and records it under `name` (`resource.verb`) on `target`.
    pub(crate) async fn audited<T>(
        &self,
        ctx: &RequestContext,
        name: &str,
        target: &str,
        action: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let result = action.await;
        self.record(
            ctx.tenant(),
            &ctx.principal().actor(),
            name,
            target,
            &outcome(&result),
        )
        .await;
        result
    }

    /// Appends one entry; a failure to store it is logged, not returned.
    pub(crate) async fn record(
        &self,
        tenant: TenantId,
        actor: &str,
        action: &str,
        target: &str,
        result: &str,
    ) {
        let entry = NewEntry {
            actor,
            action,
            target,
            result,
        };
        if let Err(error) = audit_log::append(self.store().pool(), tenant, entry).await {
            tracing::error!(%error, action, target, "could not record an audit log entry");
        }
    }

    /// The tenant's audit log, oldest first (Admin).
    pub async fn audit_log(
        &self,
        ctx: &RequestContext,
        query: &AuditQuery,
    ) -> Result<Vec<AuditEntry>> {
        ctx.require(Role::Admin, "reading the audit log")?;
        let limit = query
            .limit
            .map_or(MAX_ENTRIES, |l| i64::from(l).min(MAX_ENTRIES));
        if limit == 0 {
            return Err(ServiceError::invalid("limit", "must be at least 1"));
        }
        let filter = Filter {
            after: query.after,
            since: query.since,
            action_prefix: query.action.clone().filter(|a| !a.is_empty()),
            actor: query.actor.clone().filter(|a| !a.is_empty()),
            limit,
        };
        Ok(audit_log::list(self.store().pool(), ctx.tenant(), &filter)
            .await?
            .into_iter()
            .map(|r| AuditEntry {
                id: r.id,
                at: r.at,
                actor: r.actor,
                action: r.action,
                target: r.target,
                result: r.result,
            })
            .collect())
    }

    /// Deletes entries older than `retention` (every replica may run it; it is idempotent).
    pub async fn prune_audit_log(&self, retention: chrono::Duration) -> Result<u64> {
        Ok(audit_log::prune(self.store().pool(), Utc::now() - retention).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_name_the_kind_of_failure() {
        assert_eq!(outcome(&Ok(())), "ok");
        let denied: Result<()> = Err(ServiceError::PermissionDenied("needs Admin".into()));
        assert_eq!(outcome(&denied), "denied: needs Admin");
        let missing: Result<()> = Err(ServiceError::not_found("cluster", "x"));
        assert_eq!(outcome(&missing), "notFound");
        let invalid: Result<()> = Err(ServiceError::invalid("name", "is empty"));
        assert_eq!(outcome(&invalid), "invalid: name: is empty");
        let internal: Result<()> = Err(ServiceError::Internal("db down".into()));
        assert_eq!(
            outcome(&internal),
            "error",
            "internal details stay out of the log"
        );
    }
}
