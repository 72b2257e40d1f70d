//! Tenants, their plans and what they use of them, as the APIs show them.

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::TenantId;

/// Something a plan limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum Resource {
    Machines,
    Clusters,
    Users,
    ServiceAccounts,
}

impl Resource {
    pub const ALL: [Resource; 4] = [
        Resource::Machines,
        Resource::Clusters,
        Resource::Users,
        Resource::ServiceAccounts,
    ];

    /// Plural noun, as messages and the plans file use it (`service-accounts`).
    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Machines => "machines",
            Resource::Clusters => "clusters",
            Resource::Users => "users",
            Resource::ServiceAccounts => "service-accounts",
        }
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The limits of a plan; `None` is unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PlanLimits {
    #[serde(default)]
    pub machines: Option<u64>,
    #[serde(default)]
    pub clusters: Option<u64>,
    #[serde(default)]
    pub users: Option<u64>,
    #[serde(default)]
    pub service_accounts: Option<u64>,
}

impl PlanLimits {
    pub fn get(&self, resource: Resource) -> Option<u64> {
        match resource {
            Resource::Machines => self.machines,
            Resource::Clusters => self.clusters,
            Resource::Users => self.users,
            Resource::ServiceAccounts => self.service_accounts,
        }
    }
}

/// One limited resource: how much is used, and the plan's limit (absent: unlimited).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageItem {
    pub resource: Resource,
    pub used: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}

/// `GET /api/v1/tenant`: the caller's tenant, its plan and its usage against each limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantUsage {
    pub id: TenantId,
    pub name: String,
    pub plan: String,
    /// One entry per resource, in a fixed order: machines, clusters, users, service accounts.
    pub usage: Vec<UsageItem>,
}

impl TenantUsage {
    pub fn item(&self, resource: Resource) -> Option<&UsageItem> {
        self.usage.iter().find(|u| u.resource == resource)
    }
}
