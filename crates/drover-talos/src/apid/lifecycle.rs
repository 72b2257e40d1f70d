//! `machine.LifecycleService` of the emulated apid (Talos >= 1.13): `Upgrade` as a stream of
//! the installer's progress. Whether the node's version serves it is the [`Machine`]'s call.

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use super::Machine;
use super::auth::{ADMIN, authorize};
use crate::calls::InstallProgress;
use crate::proto::machine::lifecycle_service_install_progress::Response as Progress;
use crate::proto::machine::lifecycle_service_server::LifecycleService;
use crate::proto::machine::{
    LifecycleServiceInstallProgress, LifecycleServiceUpgradeRequest,
    LifecycleServiceUpgradeResponse,
};

/// `machine.LifecycleService`.
pub(super) struct LifecycleApi {
    machine: Arc<dyn Machine>,
    maintenance: bool,
}

impl LifecycleApi {
    pub(super) fn new(machine: Arc<dyn Machine>, maintenance: bool) -> Self {
        Self {
            machine,
            maintenance,
        }
    }
}

type UpgradeStream =
    Pin<Box<dyn Stream<Item = Result<LifecycleServiceUpgradeResponse, Status>> + Send>>;

#[tonic::async_trait]
impl LifecycleService for LifecycleApi {
    type UpgradeStream = UpgradeStream;

    async fn upgrade(
        &self,
        request: Request<LifecycleServiceUpgradeRequest>,
    ) -> Result<Response<UpgradeStream>, Status> {
        // Not in Talos's role table: its fallback, admins only.
        authorize(&request, self.maintenance, ADMIN)?;
        if self.maintenance {
            return Err(Status::unimplemented(
                "LifecycleService.Upgrade is not available in maintenance mode",
            ));
        }
        let image = request
            .into_inner()
            .source
            .map(|s| s.image_name)
            .unwrap_or_default();
        if image.is_empty() {
            return Err(Status::invalid_argument(
                "an upgrade needs an installer image (source.image_name)",
            ));
        }
        let progress = self.machine.lifecycle_upgrade(&image)?;
        Ok(Response::new(Box::pin(progress.map(|item| {
            let response = match item {
                InstallProgress::Message(line) => Progress::Message(line),
                InstallProgress::ExitCode(code) => Progress::ExitCode(code),
            };
            Ok(LifecycleServiceUpgradeResponse {
                progress: Some(LifecycleServiceInstallProgress {
                    response: Some(response),
                }),
            })
        }))))
    }
}
