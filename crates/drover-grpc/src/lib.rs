//! gRPC shells over the service layer.
//!
//! - [`provision_service`]: `sidero.link.ProvisionService`, which stock Talos nodes call on the
//!   machine API port.
//! - [`management_routes`]: `drover.v1.MachineService`, `JoinTokenService`, `ClusterService`,
//!   `MachineClassService`, `TenantService` and `AccessService`, served
//!   on the HTTP port next to REST, authenticated with the same bearer tokens.
//!
//! [`status`] is the one place where service errors become gRPC statuses.

mod access;
mod clusters;
mod management;
mod provision;
mod tenancy;

use drover_service::ServiceError;
use tonic::{Code, Status};

pub use management::management_routes;
pub use provision::provision_service;

/// Maps a service error to a gRPC status. Internal errors are logged here and not disclosed.
pub fn status(err: ServiceError) -> Status {
    let code = match &err {
        ServiceError::Unauthenticated(_) => Code::Unauthenticated,
        ServiceError::PermissionDenied(_) => Code::PermissionDenied,
        ServiceError::NotFound { .. } => Code::NotFound,
        ServiceError::InvalidArgument { .. } => Code::InvalidArgument,
        ServiceError::Conflict(_) => Code::AlreadyExists,
        ServiceError::FailedPrecondition(_) => Code::FailedPrecondition,
        ServiceError::ResourceExhausted(_) | ServiceError::QuotaExceeded { .. } => {
            Code::ResourceExhausted
        }
        ServiceError::Unavailable(_) => Code::Unavailable,
        ServiceError::Internal(source) => {
            tracing::error!(error = %source, "internal error in a gRPC call");
            Code::Internal
        }
    };
    Status::new(code, err.to_string())
}

fn timestamp(t: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}
