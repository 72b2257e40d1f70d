//! droverd's tunnel data plane.
//!
//! A [`drover_tunnel::Hub`] terminates every machine's WireGuard tunnel in userspace (UDP, or
//! datagrams carried by [`GrpcCarrier`]). Around it this crate keeps the hub's peers in step with
//! the inventory, decides liveness, serves the node-facing services inside the tunnel (the event
//! sink on port 8090, the kernel log receiver on 8092), and reads each machine's facts through
//! its Talos API once it connects. Everything it learns goes to the service layer.

mod dial;
mod events;
mod facts;
mod grpc_carrier;
mod kmsg;
pub mod kube;
mod liveness;
mod peers;

use std::sync::Arc;
use std::time::Duration;

use drover_service::Drover;
use drover_siderolink::{EVENT_SINK_PORT, KERNEL_LOG_PORT};
use drover_tunnel::Hub;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use dial::{MachineDialer, MachineStream};
pub use facts::{MachineApi, TalosCredentials};
pub use grpc_carrier::GrpcCarrier;
pub use kube::{KubernetesCredentials, ProbeError};
pub use liveness::LivenessTracker;
pub use peers::HubPeers;

/// How the data plane behaves; the defaults are Talos's own numbers.
#[derive(Debug, Clone)]
pub struct DataPlaneConfig {
    /// A machine is connected while it was heard from within this long (Talos: 275 s).
    pub liveness_threshold: Duration,
    /// How often liveness is evaluated.
    pub liveness_interval: Duration,
    /// How often a connected machine's `last_seen_at` is persisted.
    pub last_seen_refresh: Duration,
    /// How often the hub's peers are reloaded from the database (machines provisioned through
    /// other replicas, machines removed).
    pub peer_resync_interval: Duration,
    /// A replica that has not refreshed its heartbeat for this long is gone, and its machines
    /// are disconnected; each beats three times per timeout.
    pub replica_timeout: Duration,
}

impl Default for DataPlaneConfig {
    fn default() -> Self {
        Self {
            liveness_threshold: Duration::from_secs(275),
            liveness_interval: Duration::from_secs(5),
            last_seen_refresh: Duration::from_secs(60),
            peer_resync_interval: Duration::from_secs(30),
            replica_timeout: Duration::from_secs(30),
        }
    }
}

/// Starts the data plane's tasks on `tasks`; they stop when `cancel` fires. Machines are
/// dialled with `dialer` (its hub is the one served here).
pub async fn start(
    dialer: MachineDialer,
    drover: Drover,
    config: DataPlaneConfig,
    cancel: CancellationToken,
    tasks: &TaskTracker,
) -> std::io::Result<DataPlane> {
    let hub = dialer.hub().clone();
    drover
        .replica_heartbeat(config.replica_timeout)
        .await
        .map_err(std::io::Error::other)?;
    peers::sync(&hub, &drover)
        .await
        .map_err(std::io::Error::other)?;

    let api = MachineApi::new(dialer.clone());
    let event_listener = hub.listen(EVENT_SINK_PORT).await?;
    let kmsg_listener = hub.listen(KERNEL_LOG_PORT).await?;

    tasks.spawn(events::serve(
        event_listener,
        drover.clone(),
        cancel.clone(),
    ));
    tasks.spawn(kmsg::serve(
        kmsg_listener,
        drover.clone(),
        cancel.clone(),
        tasks.clone(),
    ));
    tasks.spawn(peers::resync_loop(
        hub.clone(),
        drover.clone(),
        config.peer_resync_interval,
        cancel.clone(),
    ));
    tasks.spawn(heartbeat_loop(
        drover.clone(),
        config.replica_timeout,
        cancel.clone(),
    ));
    tasks.spawn(facts::liveness_loop(
        hub.clone(),
        drover.clone(),
        api.clone(),
        config.clone(),
        cancel.clone(),
        tasks.clone(),
    ));
    Ok(DataPlane {
        carrier: GrpcCarrier::new(hub.clone(), drover, cancel),
        hub,
        api,
        dialer,
    })
}

/// Refreshes this replica's heartbeat three times per `timeout`, removing replicas that
/// stopped beating.
async fn heartbeat_loop(drover: Drover, timeout: Duration, cancel: CancellationToken) {
    let mut every = tokio::time::interval(timeout / 3);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = every.tick() => if let Err(err) = drover.replica_heartbeat(timeout).await {
                tracing::warn!(error = %err, "refreshing the replica's heartbeat failed");
            },
        }
    }
}

/// Handles to the running data plane.
#[derive(Clone)]
pub struct DataPlane {
    hub: Hub,
    api: MachineApi,
    dialer: MachineDialer,
    carrier: GrpcCarrier,
}

impl DataPlane {
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// Talos API channels to machines, through their tunnels.
    pub fn machine_api(&self) -> &MachineApi {
        &self.api
    }

    /// Connections to machines' tunnel addresses, from this replica or through another.
    pub fn dialer(&self) -> &MachineDialer {
        &self.dialer
    }

    /// `sidero.link.WireGuardOverGRPCService`, to serve on the machine API port.
    pub fn grpc_carrier(&self) -> GrpcCarrier {
        self.carrier.clone()
    }
}

/// Peers in the hub follow provisioning at once, through the service's peer sink.
pub fn peer_sink(hub: &Hub) -> Arc<dyn drover_service::PeerSink> {
    Arc::new(HubPeers::new(hub.clone()))
}
