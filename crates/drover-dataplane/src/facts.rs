//! Talos API access to machines through their tunnels, and what droverd reads when a machine
//! connects.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv6Addr, SocketAddrV6};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use chrono::Utc;
use drover_model::{Disk, MachineFacts};
use drover_service::Drover;
use drover_siderolink::TALOS_API_PORT;
use drover_tunnel::Hub;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::transport::Channel;

use crate::{DataPlaneConfig, LivenessTracker, MachineDialer};

/// Talos machine API channels through the tunnels, one cached per machine. Channels connect
/// lazily and reconnect by themselves; [`MachineApi::forget`] drops one whose tunnel went away.
#[derive(Clone)]
pub struct MachineApi {
    dialer: MachineDialer,
    channels: Arc<Mutex<HashMap<Ipv6Addr, Channel>>>,
    authenticated: Arc<Mutex<HashMap<(Ipv6Addr, String), Channel>>>,
}

/// What droverd presents to a configured node's apid: the cluster's OS CA (to verify the node)
/// and a client certificate signed by it. `id` names this credential for channel caching.
pub struct TalosCredentials {
    pub id: String,
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: secrecy::SecretString,
}

impl MachineApi {
    pub fn new(dialer: MachineDialer) -> Self {
        Self {
            dialer,
            channels: Arc::default(),
            authenticated: Arc::default(),
        }
    }

    /// A channel to the machine API of the machine at `address`, in maintenance mode (TLS
    /// without verification, no client certificate), as Talos expects before it has a config.
    pub fn maintenance(&self, address: Ipv6Addr) -> Channel {
        let mut channels = self.channels.lock().expect("not poisoned");
        channels
            .entry(address)
            .or_insert_with(|| {
                let dialer = self.dialer.clone();
                let target = SocketAddrV6::new(address, TALOS_API_PORT, 0, 0);
                drover_talos::client::maintenance_channel(
                    move || {
                        let dialer = dialer.clone();
                        async move { dialer.dial(target).await }
                    },
                    &format!("[{address}]:{TALOS_API_PORT}"),
                )
                .expect("an IPv6 address and port form a valid authority")
            })
            .clone()
    }

    /// A channel to the machine API of a configured node at `address`, with mutual TLS.
    pub fn authenticated(
        &self,
        address: Ipv6Addr,
        credentials: &TalosCredentials,
    ) -> Result<Channel, drover_talos::client::ChannelError> {
        use secrecy::ExposeSecret;
        let key = (address, credentials.id.clone());
        if let Some(channel) = self.authenticated.lock().expect("not poisoned").get(&key) {
            return Ok(channel.clone());
        }
        let dialer = self.dialer.clone();
        let target = SocketAddrV6::new(address, TALOS_API_PORT, 0, 0);
        let channel = drover_talos::client::mtls_channel(
            move || {
                let dialer = dialer.clone();
                async move { dialer.dial(target).await }
            },
            &format!("[{address}]:{TALOS_API_PORT}"),
            &credentials.ca_pem,
            &credentials.cert_pem,
            credentials.key_pem.expose_secret(),
        )?;
        self.authenticated
            .lock()
            .expect("not poisoned")
            .insert(key, channel.clone());
        Ok(channel)
    }

    /// Whether the Kubernetes API server on the control plane at `address` answers `/readyz`.
    pub async fn kubernetes_ready(
        &self,
        address: Ipv6Addr,
        credentials: &crate::KubernetesCredentials,
    ) -> Result<bool, crate::ProbeError> {
        crate::kube::readyz(&self.dialer, address, credentials).await
    }

    /// `GET path` as JSON from the Kubernetes API server on the control plane at `address`.
    pub async fn kubernetes_get(
        &self,
        address: Ipv6Addr,
        credentials: &crate::KubernetesCredentials,
        path: &str,
    ) -> Result<serde_json::Value, crate::ProbeError> {
        crate::kube::get_json(&self.dialer, address, credentials, path).await
    }

    /// A strategic merge patch of the object at `path` on the Kubernetes API server on the
    /// control plane at `address`.
    pub async fn kubernetes_patch(
        &self,
        address: Ipv6Addr,
        credentials: &crate::KubernetesCredentials,
        path: &str,
        patch: &serde_json::Value,
    ) -> Result<serde_json::Value, crate::ProbeError> {
        crate::kube::strategic_merge_patch(&self.dialer, address, credentials, path, patch).await
    }

    pub fn forget(&self, address: Ipv6Addr) {
        self.channels.lock().expect("not poisoned").remove(&address);
        self.authenticated
            .lock()
            .expect("not poisoned")
            .retain(|(a, _), _| *a != address);
    }

    /// Reads Version and Disks.
    pub async fn read_facts(&self, address: Ipv6Addr) -> Result<MachineFacts, tonic::Status> {
        let channel = self.maintenance(address);
        let version = drover_talos::client::version(&channel).await?;
        let disks = drover_talos::client::disks(&channel).await?;
        Ok(MachineFacts {
            hostname: version.hostname,
            talos_version: version.tag,
            arch: version.arch,
            platform: version.platform_name,
            platform_mode: version.platform_mode,
            disks: disks
                .into_iter()
                .map(|d| Disk {
                    device_name: d.device_name,
                    size: d.size,
                    model: d.model,
                    serial: d.serial,
                    system_disk: d.system_disk,
                })
                .collect(),
            cores: drover_talos::client::cpu_cores(&channel).await.ok(),
            memory_mib: drover_talos::client::memory_mib(&channel).await.ok(),
            collected_at: Utc::now(),
        })
    }
}

/// Evaluates liveness on a timer, persists changes, and reads facts from machines that
/// (re)connect.
pub(crate) async fn liveness_loop(
    hub: Hub,
    drover: Drover,
    api: MachineApi,
    config: DataPlaneConfig,
    cancel: CancellationToken,
    tasks: TaskTracker,
) {
    let mut tracker = LivenessTracker::new(config.liveness_threshold, config.last_seen_refresh);
    let collecting: Arc<Mutex<HashSet<Ipv6Addr>>> = Arc::default();
    let mut tick = tokio::time::interval(config.liveness_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let statuses = hub.peer_statuses();
        let changes = tracker.observe(
            SystemTime::now(),
            statuses
                .iter()
                .map(|(a, s)| (*a, s.last_received.max(s.last_handshake))),
        );
        if changes.is_empty() {
            continue;
        }
        if let Err(err) = drover.record_liveness(&changes).await {
            tracing::warn!(error = %err, "persisting liveness failed; retrying next tick");
            tracker.forget();
            continue;
        }
        for change in changes.iter() {
            if !change.connected {
                api.forget(change.address);
                tracing::info!(address = %change.address, "machine disconnected");
                continue;
            }
            if !collecting
                .lock()
                .expect("not poisoned")
                .insert(change.address)
            {
                continue;
            }
            let (drover, api, collecting, cancel) = (
                drover.clone(),
                api.clone(),
                collecting.clone(),
                cancel.clone(),
            );
            let address = change.address;
            tasks.spawn(async move {
                tokio::select! {
                    () = cancel.cancelled() => {}
                    () = collect_facts(&drover, &api, address) => {}
                }
                collecting.lock().expect("not poisoned").remove(&address);
            });
        }
    }
}

/// Reads a machine's facts in maintenance mode (a machine given a cluster's config keeps the facts
/// read before), retrying with backoff a few times (the node may still be starting
/// its API when the tunnel comes up).
async fn collect_facts(drover: &Drover, api: &MachineApi, address: Ipv6Addr) {
    if drover.machine_configured(address).await.unwrap_or(false) {
        return;
    }
    let mut delay = Duration::from_millis(500);
    for attempt in 1..=6 {
        match api.read_facts(address).await {
            Ok(facts) => {
                if let Err(err) = drover.record_facts(address, &facts).await {
                    tracing::warn!(%address, error = %err, "storing machine facts failed");
                }
                tracing::info!(%address, version = %facts.talos_version, "machine facts read");
                return;
            }
            Err(status) => {
                tracing::debug!(%address, attempt, %status, "reading machine facts failed");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    }
    tracing::warn!(%address, "could not read the machine's facts through its tunnel");
}
