use drover_model::{ApiTokenId, Role, TenantId, UserId};

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

    /// Fails unless the caller has at least `role`.
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
