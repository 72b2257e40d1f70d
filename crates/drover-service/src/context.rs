use drover_model::{ApiTokenId, Role, ServiceAccountId, ServiceAccountKeyId, TenantId, UserId};

use crate::{Result, ServiceError};

/// Who is calling, for which tenant and with which role. Every service call takes one, so
/// authorization is decided here and not in the HTTP or gRPC shells.
#[derive(Debug, Clone)]
pub struct RequestContext {
    tenant: TenantId,
    principal: Principal,
    role: Role,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    ApiToken {
        id: ApiTokenId,
        name: String,
    },
    /// A person logged in through OpenID Connect, by a browser session.
    User {
        id: UserId,
        email: String,
        name: String,
    },
    /// A service account, authenticated by one of its keys.
    ServiceAccount {
        id: ServiceAccountId,
        name: String,
        key_id: ServiceAccountKeyId,
    },
}

impl RequestContext {
    pub(crate) fn new(tenant: TenantId, principal: Principal, role: Role) -> Self {
        Self {
            tenant,
            principal,
            role,
        }
    }

    pub fn tenant(&self) -> TenantId {
        self.tenant
    }

    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// The caller's role in the tenant. On one cluster a grant may give more: cluster-scoped
    /// operations check with [`crate::Drover::require_on_cluster`].
    ///
    /// Fails unless the caller has at least `role` in the tenant.
    pub fn require(&self, role: Role, action: &str) -> Result<()> {
        if self.role >= role {
            Ok(())
        } else {
            Err(ServiceError::PermissionDenied(format!(
                "{action} needs the {role} role; this credential has {}",
                self.role
            )))
        }
    }
}
