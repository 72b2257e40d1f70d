//! The cluster reconciler.
//!
//! Every replica runs one. Each round it takes a lease (in the database, with an expiry) on the
//! clusters that are free or already its own, and moves each a step toward its spec:
//! allocate machines -> apply the rendered config in maintenance mode -> follow install and
//! reboot through the node's events -> bootstrap etcd on one control plane, once -> track etcd
//! members -> Ready; let surplus machines go (control planes one at a time, only with quorum
//! kept: leave etcd, reset wiping STATE and EPHEMERAL, back to the pool); tear a deleted cluster
//! down. Every step is recorded before or after its call so that a restart resumes without
//! repeating a destructive one. Rounds run on a timer and when a cluster's spec changes
//! (PostgreSQL `LISTEN drover_clusters`).

mod cluster;
pub mod plan;

use std::sync::Arc;
use std::time::Duration;

use drover_cluster_keys::{ClusterKeyring, ClusterKeys};
use drover_dataplane::MachineApi;
use drover_service::Drover;
use drover_store::clusters;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How the reconciler paces itself.
#[derive(Debug, Clone)]
pub struct ReconcilerConfig {
    /// Time between rounds when nothing wakes it earlier.
    pub interval: Duration,
    /// How long a replica's claim on a cluster lasts without renewal.
    pub lease: Duration,
    /// A node that has not finished its upgrade step after this long stops the rollout.
    pub upgrade_step_timeout: Duration,
}

impl Default for ReconcilerConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(2),
            lease: Duration::from_secs(30),
            upgrade_step_timeout: Duration::from_secs(15 * 60),
        }
    }
}

#[derive(Clone)]
pub(crate) struct Reconciler {
    drover: Drover,
    api: MachineApi,
    owner: uuid::Uuid,
    config: ReconcilerConfig,
    /// Per cluster: its secrets and the admin credentials made from them.
    keyring: ClusterKeyring,
}

/// Starts the reconciler; it stops when `cancel` fires, giving up its leases.
pub fn start(
    drover: Drover,
    api: MachineApi,
    keyring: ClusterKeyring,
    config: ReconcilerConfig,
    cancel: CancellationToken,
    tasks: &TaskTracker,
) {
    let reconciler = Reconciler {
        owner: drover.replica(),
        drover,
        api,
        config,
        keyring,
    };
    let wake = Arc::new(Notify::new());
    tasks.spawn(listen(
        reconciler.drover.clone(),
        wake.clone(),
        cancel.clone(),
    ));
    tasks.spawn(reconciler.run(wake, cancel));
}

impl Reconciler {
    async fn run(self, wake: Arc<Notify>, cancel: CancellationToken) {
        tracing::info!(owner = %self.owner, "cluster reconciler started");
        loop {
            self.round().await;
            tokio::select! {
                () = cancel.cancelled() => break,
                () = wake.notified() => {}
                () = tokio::time::sleep(self.config.interval) => {}
            }
        }
        if let Err(err) = clusters::release_leases(self.drover.store().pool(), self.owner).await {
            tracing::warn!(error = %err, "releasing cluster leases failed");
        }
    }

    async fn round(&self) {
        let rows = match clusters::lease_due(
            self.drover.store().pool(),
            self.owner,
            self.config.lease,
            1000,
        )
        .await
        {
            Ok(rows) => rows,
            Err(err) => {
                tracing::warn!(error = %err, "leasing clusters failed");
                self.drover.metrics().reconcile_error();
                return;
            }
        };
        self.drover.metrics().reconcile_round(rows.len());
        let mut rounds = tokio::task::JoinSet::new();
        let mut running = std::collections::HashMap::new();
        for row in rows {
            let this = self.clone();
            let key = (row.tenant_id, row.name.clone());
            let handle = rounds.spawn(async move {
                let name = row.name.clone();
                if let Err(err) = this.reconcile(row).await {
                    tracing::warn!(cluster = %name, error = %err, "reconciling the cluster failed");
                    this.drover.metrics().reconcile_error();
                }
            });
            running.insert(key, handle);
        }
        // A slow reconcile (a machine not answering) keeps its lease; one whose lease ran out
        // anyway (the database unreachable for a while) stops, as another replica may have
        // taken the cluster over.
        let mut renew = tokio::time::interval(self.config.lease / 3);
        renew.tick().await;
        loop {
            tokio::select! {
                next = rounds.join_next() => if next.is_none() { break },
                _ = renew.tick() => {
                    match clusters::renew_leases(self.drover.store().pool(), self.owner, self.config.lease).await {
                        Ok(held) => {
                            let held: std::collections::HashSet<_> = held.into_iter().collect();
                            running.retain(|key, handle| {
                                if held.contains(key) || handle.is_finished() {
                                    return true;
                                }
                                tracing::warn!(cluster = %key.1, "the cluster's lease ran out mid-reconcile; stopping here");
                                handle.abort();
                                false
                            });
                        }
                        Err(err) => tracing::warn!(error = %err, "renewing cluster leases failed"),
                    }
                }
            }
        }
    }

    /// The cluster's secrets and a current admin credential for its nodes.
    pub(crate) async fn keys(
        &self,
        tenant: drover_model::TenantId,
        name: &str,
        uid: uuid::Uuid,
    ) -> Result<Arc<ClusterKeys>, cluster::Error> {
        self.keyring
            .get(tenant, name, uid)
            .await
            .map_err(|e| match e {
                drover_cluster_keys::KeysError::Open(e) => e.into(),
                other => cluster::Error::Internal(other.to_string()),
            })
    }

    pub(crate) fn forget_keys(&self, uid: uuid::Uuid) {
        self.keyring.forget(uid);
    }
}

/// Wakes the reconciler when any replica changes a cluster's spec.
async fn listen(drover: Drover, wake: Arc<Notify>, cancel: CancellationToken) {
    loop {
        let mut listener = match sqlx::postgres::PgListener::connect_with(drover.store().pool())
            .await
        {
            Ok(listener) => listener,
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for cluster changes; relying on the timer");
                return;
            }
        };
        if let Err(err) = listener.listen("drover_clusters").await {
            tracing::warn!(error = %err, "cannot listen for cluster changes; relying on the timer");
            return;
        }
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                message = listener.recv() => match message {
                    Ok(_) => wake.notify_one(),
                    Err(err) => {
                        tracing::debug!(error = %err, "cluster change listener reconnecting");
                        break;
                    }
                }
            }
        }
    }
}
