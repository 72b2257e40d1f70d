//! One machine's operating system across boots: the configuration and Talos version on its
//! disk, its current boot (id, version, events, apid identity), what its machine API asks it to
//! do, and what tests see ([`NodeHandle`]).
//!
//! apid calls ([`Machine`]) are answered at once; what takes time is queued as an [`Action`]
//! for the node loop, which runs it while the tunnel is up (so the events get out) and then
//! reboots the machine:
//! - an `ApplyConfiguration` in maintenance mode: `installing`, then `rebooting`, and the next
//!   boot runs the configuration;
//! - an `ApplyConfiguration` with mode `reboot` on a configured machine: `rebooting`;
//! - a `Reset`: `resetting` (a graceful one leaves etcd), the configuration is forgotten when
//!   `STATE` is wiped, `rebooting`, and the next boot is in maintenance mode;
//! - an `Upgrade` (either call): `upgrading`, `rebooting`, and the next boot runs the new
//!   version (see [`upgrade`]).
//!
//! An `ApplyConfiguration` with mode `auto` or `no-reboot` on a configured machine takes
//! effect at once (e.g. new Kubernetes component versions), without a reboot.
//!
//! Every mutating call is recorded in the registry's [`CallLog`](crate::CallLog), finished when
//! answered, or, when it reboots the machine, once the next boot is up.

mod handle;
mod upgrade;

use std::net::Ipv6Addr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::Utc;
use drover_talos::apid::{Machine, MachineFacts, ProgressStream, ServerIdentity};
use drover_talos::calls::STATE_PARTITION;
use drover_talos::events::{SequenceAction, Stage, encode_machine_status, encode_sequence};
use drover_talos::{Applied, ApplyMode, EtcdMember, EtcdStatus, ResetOptions};
use tokio::sync::{Notify, watch};
use tonic::Status;

pub use self::handle::{Lifecycle, NodeHandle, NodeStatus, RunningConfig};
pub use self::upgrade::UpgradeFault;
use crate::call_log::Call;
use crate::cluster::{ClusterNode, ClusterRegistry};
use crate::config::{MachineConfig, MachineType};
use crate::events::EventLog;

/// How long events may take to reach the sink before a reboot cuts the tunnel.
const FLUSH_LIMIT: Duration = Duration::from_secs(5);

/// What the node loop does for apid.
pub(crate) enum Action {
    /// Install the configuration (and its YAML) and reboot into it.
    Install(Arc<MachineConfig>, String),
    Reboot,
    Reset {
        graceful: bool,
        wipe_state: bool,
    },
    Upgrade(upgrade::Upgrade),
}

pub(crate) struct NodeRuntime {
    uuid: String,
    /// The facts of the hardware; the Talos version is the boot's.
    facts: MachineFacts,
    clusters: ClusterRegistry,
    state: Mutex<State>,
    status: watch::Sender<NodeStatus>,
    actions: Notify,
    faults: watch::Sender<Option<UpgradeFault>>,
}

struct State {
    /// The configuration on the `STATE` partition, with its YAML.
    installed: Option<(Arc<MachineConfig>, String)>,
    /// The Talos version installed: what the next boot runs.
    talos_version: String,
    boot: Boot,
    /// Requested through apid, for the node loop.
    pending: Option<Action>,
    /// Why mutations are refused until the next boot (an action is under way).
    busy: Option<&'static str>,
    /// The call (in the call log) that is over when the next boot is up.
    awaiting: Option<u64>,
}

/// This boot.
struct Boot {
    id: String,
    talos_version: String,
    events: Arc<EventLog>,
    /// apid's certificate in a configured boot, once issued.
    identity: Option<ServerIdentity>,
    /// The boot sequence finished: in maintenance, or running the configuration.
    up: bool,
}

impl Boot {
    fn new(talos_version: String) -> Self {
        let id = uuid::Uuid::new_v4().to_string();
        Self {
            events: Arc::new(EventLog::new(&id)),
            id,
            talos_version,
            identity: None,
            up: false,
        }
    }
}

impl std::fmt::Debug for NodeRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeRuntime")
            .field("uuid", &self.uuid)
            .field("status", &*self.status.borrow())
            .finish_non_exhaustive()
    }
}

impl NodeRuntime {
    /// A machine booting Talos `facts.talos_version` for the first time.
    pub fn new(uuid: String, facts: MachineFacts, clusters: ClusterRegistry) -> Self {
        let talos_version = facts.talos_version.clone();
        let boot = Boot::new(talos_version.clone());
        let status = watch::Sender::new(NodeStatus {
            stage: Stage::Booting,
            ready: false,
            boot_id: boot.id.clone(),
            talos_version: talos_version.clone(),
            address: None,
            config: None,
        });
        Self {
            uuid,
            facts,
            clusters,
            state: Mutex::new(State {
                installed: None,
                talos_version,
                boot,
                pending: None,
                busy: None,
                awaiting: None,
            }),
            status,
            actions: Notify::new(),
            faults: watch::Sender::new(None),
        }
    }

    pub fn handle(self: &Arc<Self>) -> NodeHandle {
        NodeHandle {
            runtime: self.clone(),
        }
    }

    pub fn uuid(&self) -> &str {
        &self.uuid
    }

    pub fn hostname(&self) -> &str {
        &self.facts.hostname
    }

    pub fn clusters(&self) -> &ClusterRegistry {
        &self.clusters
    }

    /// The Talos version this boot runs.
    pub fn talos_version(&self) -> String {
        self.lock().boot.talos_version.clone()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts a new boot (of the installed Talos version): new id, no events yet, nothing
    /// pending; the machine stops running in its cluster until the boot sequence brings it up
    /// again.
    pub fn new_boot(&self) {
        let mut state = self.lock();
        if let Some((config, _)) = &state.installed {
            self.clusters
                .set_running(&config.cluster_id, &self.uuid, false);
        }
        state.boot = Boot::new(state.talos_version.clone());
        state.pending = None;
        state.busy = None;
        let (id, version) = (state.boot.id.clone(), state.boot.talos_version.clone());
        self.status.send_modify(|s| {
            s.boot_id = id;
            s.talos_version = version;
            s.stage = Stage::Booting;
            s.ready = false;
            s.address = None;
        });
    }

    /// The machine is powered off (the emulator stops): not a running node any more. The boot
    /// goes on when it runs again.
    pub fn power_off(&self) {
        if let Some((config, _)) = &self.lock().installed {
            self.clusters
                .set_running(&config.cluster_id, &self.uuid, false);
        }
    }

    /// The boot came up running `config`: the machine is a node of its cluster (and an etcd
    /// member, on a control plane of a bootstrapped cluster).
    pub fn join_cluster(&self, config: &MachineConfig, address: Ipv6Addr) {
        let (boot_id, talos_version) = {
            let state = self.lock();
            (state.boot.id.clone(), state.boot.talos_version.clone())
        };
        let now = Utc::now();
        let node = ClusterNode {
            uuid: self.uuid.clone(),
            hostname: self.facts.hostname.clone(),
            address,
            control_plane: config.machine_type == MachineType::ControlPlane,
            images: config.images.clone(),
            talos_version,
            arch: self.facts.arch.clone(),
            boot_id,
            running: true,
            created_at: now,
            up_since: now,
            os_ca: config.os_ca.signer(),
        };
        self.clusters
            .join(&config.cluster_id, &config.cluster_name, node);
    }

    /// A new tunnel of a boot that was up (the emulator runs again): running again.
    pub fn resume(&self) {
        if let Some(config) = self.installed() {
            self.clusters
                .set_running(&config.cluster_id, &self.uuid, true);
        }
    }

    pub fn set_address(&self, address: Ipv6Addr) {
        self.status.send_modify(|s| s.address = Some(address));
    }

    pub fn installed(&self) -> Option<Arc<MachineConfig>> {
        self.lock().installed.as_ref().map(|(c, _)| c.clone())
    }

    pub fn events(&self) -> Arc<EventLog> {
        self.lock().boot.events.clone()
    }

    /// Whether this boot's sequence already finished (a new tunnel of the same boot).
    pub fn is_up(&self) -> bool {
        self.lock().boot.up
    }

    /// The boot sequence finished: so did the call that rebooted the machine.
    pub fn mark_up(&self) {
        let finished = {
            let mut state = self.lock();
            state.boot.up = true;
            state.awaiting.take()
        };
        if let Some(call) = finished {
            self.clusters.calls().finish(call);
        }
    }

    pub fn identity(&self) -> Option<ServerIdentity> {
        self.lock().boot.identity.clone()
    }

    pub fn set_identity(&self, identity: ServerIdentity) {
        self.lock().boot.identity = Some(identity);
    }

    /// Publishes a `MachineStatusEvent` and shows it in the status.
    pub fn stage(&self, stage: Stage, ready: bool, unmet: &[(String, String)]) {
        self.events()
            .push(encode_machine_status(stage, ready, unmet));
        self.status.send_modify(|s| {
            s.stage = stage;
            s.ready = ready;
        });
    }

    /// Publishes a `SequenceEvent`.
    pub fn sequence(&self, sequence: &str, action: SequenceAction) {
        self.events().push(encode_sequence(sequence, action, None));
    }

    /// Waits until apid requests an action.
    pub async fn action_requested(&self) {
        self.actions.notified().await;
    }

    pub fn take_action(&self) -> Option<Action> {
        self.lock().pending.take()
    }

    /// Queues `action` for the node loop; `call` is over when the next boot is up.
    fn request(
        &self,
        mut state: MutexGuard<'_, State>,
        action: Action,
        busy: &'static str,
        call: u64,
    ) {
        state.pending = Some(action);
        state.busy = Some(busy);
        state.awaiting = Some(call);
        drop(state);
        self.actions.notify_one();
    }

    /// Runs `action` (while the tunnel is up, so its events get out); the caller then reboots
    /// the machine.
    pub async fn perform(&self, action: Action, lifecycle: &Lifecycle) {
        if matches!(action, Action::Install(..) | Action::Upgrade(_)) {
            self.clusters.actions_released().await;
        }
        match action {
            Action::Install(config, yaml) => {
                self.stage(Stage::Installing, false, &[]);
                self.sequence("install", SequenceAction::Start);
                tokio::time::sleep(lifecycle.install).await;
                self.sequence("install", SequenceAction::Stop);
                self.lock().installed = Some((config, yaml));
            }
            Action::Reboot => {}
            Action::Reset {
                graceful,
                wipe_state,
            } => {
                self.stage(Stage::Resetting, false, &[]);
                self.sequence("reset", SequenceAction::Start);
                if let Some(config) = self.installed() {
                    if graceful {
                        // Not a member (a worker, or already gone) is fine.
                        let _ = self.clusters.leave(&config.cluster_id, &self.uuid);
                    }
                    if wipe_state {
                        self.clusters.forget(&config.cluster_id, &self.uuid);
                    }
                }
                if wipe_state {
                    self.lock().installed = None;
                    self.status.send_modify(|s| s.config = None);
                }
                self.sequence("reset", SequenceAction::Stop);
            }
            Action::Upgrade(upgrade) => self.install_upgrade(upgrade, lifecycle).await,
        }
        self.stage(Stage::Rebooting, false, &[]);
        self.events().flush(FLUSH_LIMIT).await;
    }

    /// Records `call` in the call log and runs `f` with its sequence number: a failure is
    /// recorded; a success is over at once unless `f` queued an action that reboots.
    fn logged<T>(&self, call: Call, f: impl FnOnce(u64) -> Result<T, Status>) -> Result<T, Status> {
        let calls = self.clusters.calls();
        let seq = calls.start(&self.uuid, self.hostname(), call);
        let result = f(seq);
        match &result {
            Err(err) => calls.fail(seq, err),
            Ok(_) if self.lock().awaiting != Some(seq) => calls.finish(seq),
            Ok(_) => {}
        }
        result
    }

    /// The machine's configuration, for a control-plane-only call.
    fn control_plane(&self) -> Result<Arc<MachineConfig>, Status> {
        let config = self.installed().ok_or_else(|| {
            Status::failed_precondition("the machine does not run a configuration")
        })?;
        if config.machine_type != MachineType::ControlPlane {
            return Err(Status::failed_precondition(
                "etcd runs only on control plane nodes",
            ));
        }
        Ok(config)
    }

    /// `ApplyConfiguration` of the parsed `config` (not a dry run), as call `call`.
    fn apply(
        &self,
        config: MachineConfig,
        yaml: &[u8],
        mode: ApplyMode,
        call: u64,
    ) -> Result<Applied, Status> {
        let state = self.lock();
        if let Some(busy) = state.busy {
            return Err(Status::unavailable(format!("the machine is {busy}")));
        }
        let recorded = running_config(&config, yaml);
        let Some((current, _)) = &state.installed else {
            // Maintenance mode: install, then reboot into the configuration.
            let action = Action::Install(Arc::new(config), recorded.yaml.clone());
            self.status.send_modify(|s| s.config = Some(recorded));
            self.request(state, action, "installing", call);
            return Ok(applied(
                ApplyMode::Reboot,
                "Applied configuration: installing, then rebooting",
            ));
        };
        check_change(current, &config)?;
        let mut state = state;
        match mode {
            ApplyMode::Reboot => {
                state.installed = Some((Arc::new(config), recorded.yaml.clone()));
                self.status.send_modify(|s| s.config = Some(recorded));
                self.request(state, Action::Reboot, "rebooting", call);
                Ok(applied(
                    ApplyMode::Reboot,
                    "Applied configuration with a reboot",
                ))
            }
            ApplyMode::Auto | ApplyMode::NoReboot => {
                self.clusters
                    .set_images(&config.cluster_id, &self.uuid, &config.images);
                state.installed = Some((Arc::new(config), recorded.yaml.clone()));
                self.status.send_modify(|s| s.config = Some(recorded));
                Ok(applied(
                    ApplyMode::NoReboot,
                    "Applied configuration without a reboot",
                ))
            }
            ApplyMode::Staged | ApplyMode::Try => Err(Status::unimplemented(format!(
                "apply mode {mode} is not emulated"
            ))),
        }
    }

    /// A dry run of `ApplyConfiguration`: the checks only.
    fn dry_run(&self, config: &MachineConfig, mode: ApplyMode) -> Result<Applied, Status> {
        let state = self.lock();
        if let Some(busy) = state.busy {
            return Err(Status::unavailable(format!("the machine is {busy}")));
        }
        let Some((current, _)) = &state.installed else {
            return Ok(applied(
                ApplyMode::Reboot,
                "Dry run: the configuration is valid",
            ));
        };
        check_change(current, config)?;
        Ok(applied(mode, "Dry run: the configuration is valid"))
    }
}

fn applied(mode: ApplyMode, details: &str) -> Applied {
    Applied {
        mode,
        details: details.to_owned(),
        warnings: vec![],
    }
}

/// What a configured machine refuses to change.
fn check_change(current: &MachineConfig, new: &MachineConfig) -> Result<(), Status> {
    if new.machine_type != current.machine_type {
        return Err(Status::invalid_argument("machine type can't be changed"));
    }
    if new.cluster_id != current.cluster_id {
        return Err(Status::invalid_argument(
            "cluster.id can't be changed; reset the machine first",
        ));
    }
    Ok(())
}

fn running_config(config: &MachineConfig, yaml: &[u8]) -> RunningConfig {
    RunningConfig {
        machine_type: config.machine_type,
        cluster_id: config.cluster_id.clone(),
        cluster_name: config.cluster_name.clone(),
        kubelet_version: config.kubelet_version().to_owned(),
        yaml: String::from_utf8_lossy(yaml).into_owned(),
    }
}

impl Machine for NodeRuntime {
    fn facts(&self) -> MachineFacts {
        MachineFacts {
            talos_version: self.talos_version(),
            ..self.facts.clone()
        }
    }

    fn apply_configuration(
        &self,
        yaml: &[u8],
        mode: ApplyMode,
        dry_run: bool,
    ) -> Result<Applied, Status> {
        let config = MachineConfig::parse(yaml, &self.facts.disks)
            .map_err(|e| Status::invalid_argument(e.to_string()));
        if dry_run {
            return self.dry_run(&config?, mode);
        }
        let kubernetes = config.as_ref().ok().map(|c| c.images.clone());
        self.logged(Call::ApplyConfiguration { mode, kubernetes }, |call| {
            self.apply(config?, yaml, mode, call)
        })
    }

    fn bootstrap(&self) -> Result<(), Status> {
        self.logged(Call::Bootstrap, |_| {
            let config = self.installed().ok_or_else(|| {
                Status::failed_precondition("the machine does not run a configuration")
            })?;
            self.clusters.bootstrap(
                &config.cluster_id,
                &self.uuid,
                config.machine_type == MachineType::ControlPlane,
            )
        })
    }

    fn etcd_members(&self) -> Result<Vec<EtcdMember>, Status> {
        self.clusters.members(&self.control_plane()?.cluster_id)
    }

    fn etcd_remove_member(&self, id: u64) -> Result<(), Status> {
        self.logged(Call::EtcdRemoveMemberById { id }, |_| {
            self.clusters
                .remove_member(&self.control_plane()?.cluster_id, id)
        })
    }

    fn etcd_leave_cluster(&self) -> Result<(), Status> {
        self.logged(Call::EtcdLeaveCluster, |_| {
            self.clusters
                .leave(&self.control_plane()?.cluster_id, &self.uuid)
        })
    }

    fn etcd_status(&self) -> Result<EtcdStatus, Status> {
        self.clusters
            .status(&self.control_plane()?.cluster_id, &self.uuid)
    }

    fn reset(&self, options: &ResetOptions) -> Result<(), Status> {
        let graceful = options.graceful;
        self.logged(Call::Reset { graceful }, |call| {
            if !options.reboot {
                return Err(Status::unimplemented(
                    "a reset without a reboot (power off) is not emulated",
                ));
            }
            let state = self.lock();
            if let Some(busy) = state.busy {
                return Err(Status::unavailable(format!("the machine is {busy}")));
            }
            let action = Action::Reset {
                graceful,
                wipe_state: options.wipes(STATE_PARTITION),
            };
            self.request(state, action, "resetting", call);
            Ok(())
        })
    }

    fn upgrade(&self, image: &str, force: bool) -> Result<(), Status> {
        let call = Call::Upgrade {
            image: image.to_owned(),
        };
        self.logged(call, |call| self.request_upgrade(call, image, force))
    }

    fn lifecycle_upgrade(&self, image: &str) -> Result<ProgressStream, Status> {
        if !self.has_lifecycle_service() {
            return Err(Status::unimplemented(
                "unknown service machine.LifecycleService",
            ));
        }
        let call = Call::LifecycleUpgrade {
            image: image.to_owned(),
        };
        self.logged(call, |call| self.stream_upgrade(call, image))
    }
}
