//! Typed ids and the resource types Drover's APIs exchange.
//!
//! The same structs are returned by the service layer, serialized by REST, mapped to gRPC
//! messages and deserialized by the CLI, so every shell shows the same fields.

mod access;
mod audit;
mod break_glass;
mod clusters;
mod identity;
mod ids;
mod kube_proxy;
pub mod labels;
mod resources;
mod talos_proxy;
mod tenancy;
mod upgrades;
mod variants;
pub mod versions;
pub use variants::{parse_variant, variant_name};

pub use access::{
    ClusterGrant, CreateServiceAccount, GrantClusterRole, GrantTarget, InviteUser,
    IssuedServiceAccountKey, ServiceAccount, ServiceAccountKey, SetRole, User, UserStatus,
};
pub use audit::AuditEntry;
pub use break_glass::{BreakGlassCredential, BreakGlassKind, ClusterTaint};
pub use clusters::{
    CONTROL_PLANE_SET, ClassSize, Cluster, ClusterChanges, ClusterMachinePhase, ClusterMachineSpec,
    ClusterMachineStatus, ClusterPhase, ClusterSpec, ClusterStatus, ConfigPatch, MachineClass,
    MachineClassAllocation, MachineClassSpec, MachineConfigView, MachineRole, MachineSetSpec,
    Strategy, StrategyKind,
};
pub use identity::{CliCredential, Me, MePrincipal};
pub use ids::{
    ApiTokenId, InvalidId, JoinTokenId, MachineId, ServiceAccountId, ServiceAccountKeyId, TenantId,
    UserId,
};
pub use kube_proxy::{ExecPlugin, KubeProxyEndpoint};
pub use resources::{
    CreateJoinToken, CreatedJoinToken, Disk, JoinInstructions, JoinToken, JoinTokenState, LogLine,
    LogPage, Machine, MachineFacts, MachineSearch, MachineSearchPage, MachineSort, Page,
    UnmetCondition,
};
pub use talos_proxy::{IssuedTalosconfig, RevokedTalosCerts};
pub use tenancy::{PlanLimits, Resource, TenantUsage, UsageItem};

pub use labels::{LabelSelector, SelectorError};
pub use upgrades::{
    ClusterEvent, StartUpgrade, Upgrade, UpgradeKind, UpgradeNodeStatus, UpgradeState,
};
pub use versions::{Version, VersionError, coredns_version};

mod role;
pub use role::{Role, UnknownRole};
