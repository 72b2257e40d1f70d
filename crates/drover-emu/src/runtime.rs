//! One machine's operating system across boots: the configuration on its disk, its current
//! boot (id, events, apid identity), what its machine API asks it to do, and what tests see
//! ([`NodeHandle`]).
//!
//! apid calls ([`Machine`]) are answered at once; what takes time is queued as an [`Action`]
//! for the node loop, which runs it while the tunnel is up (so the events get out) and then
//! reboots the machine:
//! - an `ApplyConfiguration` in maintenance mode: `installing`, then `rebooting`, and the next
//!   boot runs the configuration;
//! - an `ApplyConfiguration` with mode `reboot` on a configured machine: `rebooting`;
//! - a `Reset`: `resetting` (a graceful one leaves etcd), the configuration is forgotten when
//!   `STATE` is wiped, `rebooting`, and the next boot is in maintenance mode.
//!
//! An `ApplyConfiguration` with mode `auto` or `no-reboot` on a configured machine takes
//! effect at once (e.g. a new kubelet version), without a reboot.

use std::net::Ipv6Addr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::Utc;
use drover_talos::apid::{Machine, MachineFacts, ServerIdentity};
use drover_talos::calls::STATE_PARTITION;
use drover_talos::events::{SequenceAction, Stage, encode_machine_status, encode_sequence};
use drover_talos::{Applied, ApplyMode, EtcdMember, EtcdStatus, ResetOptions};
use tokio::sync::{Notify, watch};
use tonic::Status;

use crate::cluster::{ClusterNode, ClusterRegistry};
use crate::config::{MachineConfig, MachineType};
use crate::events::EventLog;

/// How long events may take to reach the sink before a reboot cuts the tunnel.
const FLUSH_LIMIT: Duration = Duration::from_secs(5);

/// How long the lifecycle steps of an emulated machine take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifecycle {
    /// Installing Talos to disk after a configuration is applied in maintenance mode.
    pub install: Duration,
    /// Down during a reboot (between the tunnel going away and the new boot provisioning).
    pub reboot: Duration,
}

impl Default for Lifecycle {
    /// One second each: visible, but quick.
    fn default() -> Self {
        Self {
            install: Duration::from_secs(1),
            reboot: Duration::from_secs(1),
        }
    }
}

impl Lifecycle {
    /// No delays (for tests).
    pub const INSTANT: Lifecycle = Lifecycle {
        install: Duration::ZERO,
        reboot: Duration::ZERO,
    };
}

/// What a machine reports about itself, for tests and tools (see [`NodeHandle`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    /// The stage of the last `MachineStatusEvent`.
    pub stage: Stage,
    pub ready: bool,
    /// Changes with every boot (like `/proc/sys/kernel/random/boot_id`).
    pub boot_id: String,
    /// The tunnel address of this boot, once provisioned.
    pub address: Option<Ipv6Addr>,
    /// The configuration the machine runs (or will run after its reboot), if any.
    pub config: Option<RunningConfig>,
}

/// The configuration a machine runs, as applied.
#[derive(Clone, PartialEq, Eq)]
pub struct RunningConfig {
    pub machine_type: MachineType,
    pub cluster_id: String,
    pub cluster_name: String,
    pub kubelet_version: String,
    /// The configuration as applied (YAML; it holds secrets).
    pub yaml: String,
}

impl std::fmt::Debug for RunningConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningConfig")
            .field("machine_type", &self.machine_type)
            .field("cluster_id", &self.cluster_id)
            .field("cluster_name", &self.cluster_name)
            .field("kubelet_version", &self.kubelet_version)
            .finish_non_exhaustive()
    }
}

/// A view of a machine that stays valid while it runs (clone freely).
#[derive(Clone)]
pub struct NodeHandle {
    runtime: Arc<NodeRuntime>,
}

impl std::fmt::Debug for NodeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeHandle")
            .field("uuid", &self.uuid())
            .field("status", &self.status())
            .finish()
    }
}

impl NodeHandle {
    /// The machine's SMBIOS UUID.
    pub fn uuid(&self) -> &str {
        &self.runtime.uuid
    }

    /// The hostname it reports (and its Kubernetes node name).
    pub fn hostname(&self) -> &str {
        &self.runtime.facts.hostname
    }

    pub fn status(&self) -> NodeStatus {
        self.runtime.status.borrow().clone()
    }

    /// Waits until `done` holds for the status (checked now and after every change) and
    /// returns that status. Wrap it in a timeout.
    pub async fn wait_until(&self, mut done: impl FnMut(&NodeStatus) -> bool) -> NodeStatus {
        let mut status = self.runtime.status.subscribe();
        let seen = status
            .wait_for(|s| done(s))
            .await
            .expect("the runtime holds the sender");
        seen.clone()
    }
}

/// What the node loop does for apid.
pub(crate) enum Action {
    /// Install the configuration (and its YAML) and reboot into it.
    Install(Arc<MachineConfig>, String),
    Reboot,
    Reset {
        graceful: bool,
        wipe_state: bool,
    },
}

pub(crate) struct NodeRuntime {
    uuid: String,
    facts: MachineFacts,
    clusters: ClusterRegistry,
    state: Mutex<State>,
    status: watch::Sender<NodeStatus>,
    actions: Notify,
}

struct State {
    /// The configuration on the `STATE` partition, with its YAML.
    installed: Option<(Arc<MachineConfig>, String)>,
    boot: Boot,
    /// Requested through apid, for the node loop.
    pending: Option<Action>,
    /// Why mutations are refused until the next boot (an action is under way).
    busy: Option<&'static str>,
}

/// This boot.
struct Boot {
    id: String,
    events: Arc<EventLog>,
    /// apid's certificate in a configured boot, once issued.
    identity: Option<ServerIdentity>,
    /// The boot sequence finished: in maintenance, or running the configuration.
    up: bool,
}

impl Boot {
    fn new() -> Self {
        let id = uuid::Uuid::new_v4().to_string();
        Self {
            events: Arc::new(EventLog::new(&id)),
            id,
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
    pub fn new(uuid: String, facts: MachineFacts, clusters: ClusterRegistry) -> Self {
        let boot = Boot::new();
        let status = watch::Sender::new(NodeStatus {
            stage: Stage::Booting,
            ready: false,
            boot_id: boot.id.clone(),
            address: None,
            config: None,
        });
        Self {
            uuid,
            facts,
            clusters,
            state: Mutex::new(State {
                installed: None,
                boot,
                pending: None,
                busy: None,
            }),
            status,
            actions: Notify::new(),
        }
    }

    pub fn handle(self: &Arc<Self>) -> NodeHandle {
        NodeHandle {
            runtime: self.clone(),
        }
    }

    pub fn hostname(&self) -> &str {
        &self.facts.hostname
    }

    pub fn clusters(&self) -> &ClusterRegistry {
        &self.clusters
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts a new boot: new id, no events yet, nothing pending; the machine stops running
    /// in its cluster until the boot sequence brings it up again.
    pub fn new_boot(&self) {
        let mut state = self.lock();
        if let Some((config, _)) = &state.installed {
            self.clusters
                .set_running(&config.cluster_id, &self.uuid, false);
        }
        state.boot = Boot::new();
        state.pending = None;
        state.busy = None;
        let id = state.boot.id.clone();
        self.status.send_modify(|s| {
            s.boot_id = id;
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
        let boot_id = self.lock().boot.id.clone();
        let node = ClusterNode {
            uuid: self.uuid.clone(),
            hostname: self.facts.hostname.clone(),
            address,
            control_plane: config.machine_type == MachineType::ControlPlane,
            kubelet_version: config.kubelet_version.clone(),
            talos_version: self.facts.talos_version.clone(),
            arch: self.facts.arch.clone(),
            boot_id,
            running: true,
            created_at: Utc::now(),
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

    pub fn mark_up(&self) {
        self.lock().boot.up = true;
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

    fn request(&self, mut state: MutexGuard<'_, State>, action: Action, busy: &'static str) {
        state.pending = Some(action);
        state.busy = Some(busy);
        drop(state);
        self.actions.notify_one();
    }

    /// Runs `action` (while the tunnel is up, so its events get out); the caller then reboots
    /// the machine.
    pub async fn perform(&self, action: Action, lifecycle: &Lifecycle) {
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
        }
        self.stage(Stage::Rebooting, false, &[]);
        self.events().flush(FLUSH_LIMIT).await;
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
}

fn running_config(config: &MachineConfig, yaml: &[u8]) -> RunningConfig {
    RunningConfig {
        machine_type: config.machine_type,
        cluster_id: config.cluster_id.clone(),
        cluster_name: config.cluster_name.clone(),
        kubelet_version: config.kubelet_version.clone(),
        yaml: String::from_utf8_lossy(yaml).into_owned(),
    }
}

impl Machine for NodeRuntime {
    fn facts(&self) -> MachineFacts {
        self.facts.clone()
    }

    fn apply_configuration(
        &self,
        yaml: &[u8],
        mode: ApplyMode,
        dry_run: bool,
    ) -> Result<Applied, Status> {
        let config = MachineConfig::parse(yaml, &self.facts.disks)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let state = self.lock();
        if let Some(busy) = state.busy {
            return Err(Status::unavailable(format!("the machine is {busy}")));
        }
        let applied = |mode, details: &str| Applied {
            mode,
            details: details.to_owned(),
            warnings: vec![],
        };
        let Some((current, _)) = &state.installed else {
            // Maintenance mode: install, then reboot into the configuration.
            if dry_run {
                return Ok(applied(
                    ApplyMode::Reboot,
                    "Dry run: the configuration is valid",
                ));
            }
            let recorded = running_config(&config, yaml);
            let action = Action::Install(Arc::new(config), recorded.yaml.clone());
            self.status.send_modify(|s| s.config = Some(recorded));
            self.request(state, action, "installing");
            return Ok(applied(
                ApplyMode::Reboot,
                "Applied configuration: installing, then rebooting",
            ));
        };
        if config.machine_type != current.machine_type {
            return Err(Status::invalid_argument("machine type can't be changed"));
        }
        if config.cluster_id != current.cluster_id {
            return Err(Status::invalid_argument(
                "cluster.id can't be changed; reset the machine first",
            ));
        }
        if dry_run {
            return Ok(applied(mode, "Dry run: the configuration is valid"));
        }
        let recorded = running_config(&config, yaml);
        let config = Arc::new(config);
        match mode {
            ApplyMode::Reboot => {
                let mut state = state;
                state.installed = Some((config, recorded.yaml.clone()));
                self.status.send_modify(|s| s.config = Some(recorded));
                self.request(state, Action::Reboot, "rebooting");
                Ok(applied(
                    ApplyMode::Reboot,
                    "Applied configuration with a reboot",
                ))
            }
            ApplyMode::Auto | ApplyMode::NoReboot => {
                let mut state = state;
                self.clusters.set_kubelet_version(
                    &config.cluster_id,
                    &self.uuid,
                    &config.kubelet_version,
                );
                state.installed = Some((config, recorded.yaml.clone()));
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

    fn bootstrap(&self) -> Result<(), Status> {
        let config = self.installed().ok_or_else(|| {
            Status::failed_precondition("the machine does not run a configuration")
        })?;
        self.clusters.bootstrap(
            &config.cluster_id,
            &self.uuid,
            config.machine_type == MachineType::ControlPlane,
        )
    }

    fn etcd_members(&self) -> Result<Vec<EtcdMember>, Status> {
        self.clusters.members(&self.control_plane()?.cluster_id)
    }

    fn etcd_remove_member(&self, id: u64) -> Result<(), Status> {
        self.clusters
            .remove_member(&self.control_plane()?.cluster_id, id)
    }

    fn etcd_leave_cluster(&self) -> Result<(), Status> {
        self.clusters
            .leave(&self.control_plane()?.cluster_id, &self.uuid)
    }

    fn etcd_status(&self) -> Result<EtcdStatus, Status> {
        self.clusters
            .status(&self.control_plane()?.cluster_id, &self.uuid)
    }

    fn reset(&self, options: &ResetOptions) -> Result<(), Status> {
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
            graceful: options.graceful,
            wipe_state: options.wipes(STATE_PARTITION),
        };
        self.request(state, action, "resetting");
        Ok(())
    }
}
