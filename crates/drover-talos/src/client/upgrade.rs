//! Talos OS upgrades: the legacy `MachineService.Upgrade` (an acknowledgement, the upgrade goes
//! on in the background) and, from Talos 1.13, `LifecycleService.Upgrade` (the installer's
//! progress as a stream). Either way the node then reboots into the new version; whether it
//! came back on it is for the caller to read (`Version`) afterwards.

use tonic::Code;
use tonic::transport::Channel;

use super::calls::{TalosError, item, machine};
use crate::proto::common::{ContainerDriver, ContainerdInstance, ContainerdNamespace};
use crate::proto::machine::lifecycle_service_client::LifecycleServiceClient;
use crate::proto::machine::lifecycle_service_install_progress::Response as Progress;
use crate::proto::machine::{
    InstallArtifactsSource, LifecycleServiceUpgradeRequest, UpgradeRequest,
};
use crate::versions::TalosVersion;

/// `MachineService.Upgrade` to the installer `image` (see
/// [`installer_image`](crate::versions::installer_image)), for nodes before Talos 1.13. The node
/// checks the request (a control plane also that every etcd member is healthy), acknowledges,
/// then upgrades and reboots. The node's data is preserved (`preserve`), nothing is forced.
pub async fn upgrade(channel: &Channel, image: &str) -> Result<(), TalosError> {
    const CALL: &str = "Upgrade";
    let request = UpgradeRequest {
        image: image.to_owned(),
        preserve: true,
        stage: false,
        force: false,
        reboot_mode: 0,
    };
    let reply = machine(channel)
        .upgrade(request)
        .await
        .map_err(|s| TalosError::from_status(CALL, s))?
        .into_inner();
    item(CALL, reply.messages, |i| i.metadata.as_ref())?;
    Ok(())
}

/// `LifecycleService.Upgrade` to the installer `image`, for nodes from Talos 1.13: reads the
/// installer's progress to its exit code. Exit code 0 is success (the node then reboots);
/// another exit code fails with `ABORTED`, a stream that breaks or ends without an exit code
/// with the stream's code (`UNKNOWN` for an early end); the error's message carries the last
/// progress line. The call lasts as long as the installer runs: wrap it in a timeout.
pub async fn lifecycle_upgrade(channel: &Channel, image: &str) -> Result<(), TalosError> {
    const CALL: &str = "LifecycleService.Upgrade";
    let request = LifecycleServiceUpgradeRequest {
        containerd: Some(ContainerdInstance {
            driver: ContainerDriver::Containerd as i32,
            namespace: ContainerdNamespace::NsSystem as i32,
        }),
        source: Some(InstallArtifactsSource {
            image_name: image.to_owned(),
        }),
    };
    let mut progress = LifecycleServiceClient::new(channel.clone())
        .upgrade(request)
        .await
        .map_err(|s| TalosError::from_status(CALL, s))?
        .into_inner();
    let mut last = String::new();
    let failure = loop {
        match progress.message().await {
            Ok(Some(reply)) => match reply.progress.and_then(|p| p.response) {
                Some(Progress::Message(line)) => {
                    tracing::debug!(%image, "{line}");
                    last = line;
                }
                Some(Progress::ExitCode(0)) => return Ok(()),
                Some(Progress::ExitCode(code)) => {
                    break (
                        Code::Aborted,
                        format!("the installer exited with code {code}"),
                    );
                }
                None => {}
            },
            Ok(None) => {
                break (
                    Code::Unknown,
                    "the progress stream ended without an exit code".to_owned(),
                );
            }
            Err(status) => break (status.code(), status.message().to_owned()),
        }
    };
    let (code, what) = failure;
    let message = if last.is_empty() {
        what
    } else {
        format!("{what}; last progress: {last}")
    };
    Err(TalosError::new(CALL, code, message))
}

/// Upgrades the node behind `channel` to the installer `image` with the call its *current*
/// Talos version `node_talos_version` (`v1.12.4` or `1.12.4`) serves: [`lifecycle_upgrade`]
/// from 1.13, [`upgrade`] before (and when the version does not parse: every version serves
/// the legacy call).
pub async fn upgrade_for(
    channel: &Channel,
    node_talos_version: &str,
    image: &str,
) -> Result<(), TalosError> {
    match TalosVersion::parse(node_talos_version) {
        Some(version) if version.has_lifecycle_upgrade() => lifecycle_upgrade(channel, image).await,
        _ => upgrade(channel, image).await,
    }
}
