//! Talos OS upgrades of an emulated machine, and the faults tests inject into them.
//!
//! An upgrade is checked when it is asked for (a configured machine that is not busy, an
//! installer image with a version reachable from the running one, and on a control plane a
//! healthy etcd), then the node loop runs it: `upgrading` while the image is pulled and
//! installed ([`Lifecycle::upgrade`](super::Lifecycle::upgrade)) with the node's services
//! stopped, then the usual reboot, and the next boot runs the new version. `LifecycleService.Upgrade` streams that progress and
//! ends with the installer's exit code.

use std::str::FromStr;

use drover_talos::apid::ProgressStream;
use drover_talos::events::{SequenceAction, Stage};
use drover_talos::{InstallProgress, TalosVersion, version_of_installer_image};
use futures::StreamExt as _;
use futures::channel::mpsc::{UnboundedSender, unbounded};
use tonic::Status;

use super::{Action, Lifecycle, NodeRuntime};
use crate::config::MachineType;

/// How an upgrade goes wrong (see [`NodeHandle::set_upgrade_fault`](super::NodeHandle)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UpgradeFault {
    /// The installer image cannot be pulled: the call fails (`MachineService.Upgrade` with an
    /// error, `LifecycleService.Upgrade` with exit code 1) and nothing changes.
    Fail,
    /// The new version installs and the machine reboots, but comes back on the old one, as
    /// when the new image fails to boot and the bootloader falls back.
    BootBackToOld,
    /// The call is accepted and the machine reports `upgrading`, then nothing more happens
    /// until the fault is cleared (the upgrade then goes on) or the machine stops.
    Hang,
}

impl UpgradeFault {
    /// `fail`, `boot-back-to-old`, `hang`.
    pub fn as_str(self) -> &'static str {
        match self {
            UpgradeFault::Fail => "fail",
            UpgradeFault::BootBackToOld => "boot-back-to-old",
            UpgradeFault::Hang => "hang",
        }
    }
}

impl std::fmt::Display for UpgradeFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for UpgradeFault {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        [
            UpgradeFault::Fail,
            UpgradeFault::BootBackToOld,
            UpgradeFault::Hang,
        ]
        .into_iter()
        .find(|fault| fault.as_str() == text)
        .ok_or_else(|| format!("{text:?} is not fail, boot-back-to-old or hang"))
    }
}

/// An accepted upgrade, for the node loop.
pub(crate) struct Upgrade {
    image: String,
    /// The version's tag, e.g. `v1.13.8`.
    target: String,
    /// Where `LifecycleService.Upgrade` streams the progress.
    progress: Option<UnboundedSender<InstallProgress>>,
}

impl Upgrade {
    fn say(&self, progress: InstallProgress) {
        if let Some(sender) = &self.progress {
            // A client that went away does not stop the upgrade.
            let _ = sender.unbounded_send(progress);
        }
    }
}

impl NodeRuntime {
    /// `MachineService.Upgrade`: checked, then under way after the answer.
    pub(super) fn request_upgrade(
        &self,
        call: u64,
        image: &str,
        force: bool,
    ) -> Result<(), Status> {
        if self.upgrade_fault() == Some(UpgradeFault::Fail) {
            return Err(Status::unknown(format!(
                "error validating installer image {image:?}: {}",
                pull_failure(image)
            )));
        }
        self.start_upgrade(call, image, force, None)
    }

    /// `LifecycleService.Upgrade`: checked, then the installer's progress as it goes.
    pub(super) fn stream_upgrade(&self, call: u64, image: &str) -> Result<ProgressStream, Status> {
        if self.upgrade_fault() == Some(UpgradeFault::Fail) {
            self.clusters
                .calls()
                .fail(call, &Status::aborted("the installer exited with code 1"));
            let progress = [
                pulling(image),
                InstallProgress::Message(format!("error: {}", pull_failure(image))),
                InstallProgress::ExitCode(1),
            ];
            return Ok(futures::stream::iter(progress).boxed());
        }
        let (sender, receiver) = unbounded();
        self.start_upgrade(call, image, false, Some(sender))?;
        Ok(receiver.boxed())
    }

    /// Whether the running version serves `LifecycleService` at all.
    pub(super) fn has_lifecycle_service(&self) -> bool {
        TalosVersion::parse(&self.talos_version()).is_none_or(TalosVersion::has_lifecycle_upgrade)
    }

    fn upgrade_fault(&self) -> Option<UpgradeFault> {
        *self.faults.borrow()
    }

    fn start_upgrade(
        &self,
        call: u64,
        image: &str,
        force: bool,
        progress: Option<UnboundedSender<InstallProgress>>,
    ) -> Result<(), Status> {
        let state = self.lock();
        let (config, _) = state.installed.as_ref().ok_or_else(|| {
            Status::failed_precondition("the machine does not run a configuration")
        })?;
        if let Some(busy) = state.busy {
            return Err(Status::unavailable(format!("the machine is {busy}")));
        }
        let target = target_version(image, &state.boot.talos_version)?;
        if config.machine_type == MachineType::ControlPlane && !force {
            self.clusters
                .validate_upgrade(&config.cluster_id, &self.uuid)?;
        }
        let upgrade = Upgrade {
            image: image.to_owned(),
            target,
            progress,
        };
        upgrade.say(pulling(image));
        self.request(state, Action::Upgrade(upgrade), "upgrading", call);
        Ok(())
    }

    /// Runs `upgrade` up to its reboot: `upgrading`, waiting while a `Hang` fault lasts (the
    /// pull), the install with the node's services stopped (no Ready node, no healthy etcd
    /// member), then the version the next boot runs (the old one on `BootBackToOld`).
    pub(super) async fn install_upgrade(&self, upgrade: Upgrade, lifecycle: &Lifecycle) {
        tracing::info!(uuid = %self.uuid, image = %upgrade.image, "upgrading");
        self.stage(Stage::Upgrading, false, &[]);
        self.sequence("upgrade", SequenceAction::Start);
        let mut faults = self.faults.subscribe();
        let _ = faults
            .wait_for(|fault| *fault != Some(UpgradeFault::Hang))
            .await;
        // Pulled: the node stops its services (etcd, the kubelet) to install.
        if let Some(config) = self.installed() {
            self.clusters
                .set_running(&config.cluster_id, &self.uuid, false);
        }
        upgrade.say(InstallProgress::Message(format!(
            "installing Talos {}",
            upgrade.target
        )));
        tokio::time::sleep(lifecycle.upgrade).await;
        if self.upgrade_fault() == Some(UpgradeFault::BootBackToOld) {
            tracing::info!(uuid = %self.uuid, target = %upgrade.target, "the new version will not boot: falling back");
        } else {
            self.lock().talos_version = upgrade.target.clone();
        }
        self.sequence("upgrade", SequenceAction::Stop);
        upgrade.say(InstallProgress::Message(
            "upgrade installed; rebooting".into(),
        ));
        upgrade.say(InstallProgress::ExitCode(0));
    }
}

fn pulling(image: &str) -> InstallProgress {
    InstallProgress::Message(format!("pulling {image}"))
}

fn pull_failure(image: &str) -> String {
    format!("failed to pull {image}: emulated fault")
}

/// The version tag `image` installs on a machine running `running`: an installer image whose
/// version is at most two minors ahead (Talos 1.13 needs at least 1.11); older is a rollback.
fn target_version(image: &str, running: &str) -> Result<String, Status> {
    let tag = version_of_installer_image(image).ok_or_else(|| {
        Status::invalid_argument(format!(
            "{image:?} is not a Talos installer image with a version tag"
        ))
    })?;
    let target = TalosVersion::parse(&tag).expect("the installer tag is a version");
    if let Some(from) = TalosVersion::parse(running)
        && target.major == from.major
        && target.minor > from.minor + 2
    {
        return Err(Status::failed_precondition(format!(
            "upgrading from {from} to {target} is not supported: Talos {}.{} needs at least {}.{}",
            target.major,
            target.minor,
            target.major,
            target.minor - 2
        )));
    }
    Ok(format!("v{tag}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_by_name() {
        for fault in [
            UpgradeFault::Fail,
            UpgradeFault::BootBackToOld,
            UpgradeFault::Hang,
        ] {
            assert_eq!(fault.as_str().parse::<UpgradeFault>(), Ok(fault));
        }
        assert!("explode".parse::<UpgradeFault>().is_err());
    }

    #[test]
    fn upgrades_skip_at_most_one_minor() {
        let image = drover_talos::installer_image;
        assert_eq!(
            target_version(&image("1.13.2"), "v1.11.9").unwrap(),
            "v1.13.2"
        );
        assert_eq!(
            target_version(&image("1.12.0"), "v1.13.8").unwrap(),
            "v1.12.0",
            "a rollback"
        );
        let err = target_version(&image("1.14.0"), "v1.11.9").unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition);
        assert_eq!(
            err.message(),
            "upgrading from v1.11.9 to v1.14.0 is not supported: Talos 1.14 needs at least 1.12"
        );
        let err = target_version("registry.k8s.io/pause:3.10", "v1.13.8").unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
    }
}
