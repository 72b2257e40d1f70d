use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use drover_siderolink::JoinUrl;

use crate::cluster::ClusterRegistry;
use crate::link::{self, Link, Via};
use crate::runtime::{Lifecycle, NodeHandle};
use crate::{
    DEFAULT_SEED, DEFAULT_TALOS_VERSION, EmulatedMachine, MachineIdentity, NodeBehaviour,
    ProvisionError, RetryPolicy,
};

/// How many `Provision` calls a fleet has in flight at most, unless told otherwise.
pub const DEFAULT_CONCURRENCY: usize = 64;

/// What a fleet is: where it joins, how many machines, and how they are named.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    pub api: JoinUrl,
    pub machines: usize,
    /// Names the machines: the same seed gives the same identities (see [`MachineIdentity::derive`]).
    pub seed: String,
    pub talos_version: String,
    /// At most this many `Provision` calls in flight (0 is taken as 1).
    pub concurrency: usize,
    /// How long installs and reboots take.
    pub lifecycle: Lifecycle,
    /// Where the machines' clusters live: give fleets the same registry (a clone) and their
    /// machines form clusters together.
    pub clusters: ClusterRegistry,
}

impl FleetConfig {
    /// `machines` machines joining `api`, with the default seed, Talos version, concurrency
    /// and lifecycle timings, in a cluster registry of their own.
    pub fn new(api: JoinUrl, machines: usize) -> Self {
        Self {
            api,
            machines,
            seed: DEFAULT_SEED.to_owned(),
            talos_version: DEFAULT_TALOS_VERSION.to_owned(),
            concurrency: DEFAULT_CONCURRENCY,
            lifecycle: Lifecycle::default(),
            clusters: ClusterRegistry::new(),
        }
    }
}

/// Many emulated machines in one process, sharing one HTTP/2 connection to the control plane.
#[derive(Debug)]
pub struct Fleet {
    config: FleetConfig,
    machines: Vec<EmulatedMachine>,
}

impl Fleet {
    /// Boots machines `0..config.machines` (fresh keys, not provisioned).
    pub fn new(config: FleetConfig) -> Self {
        let machines = (0..config.machines)
            .map(|index| {
                EmulatedMachine::in_clusters(
                    MachineIdentity::derive(&config.seed, index),
                    config.talos_version.clone(),
                    config.clusters.clone(),
                )
            })
            .collect();
        Self { config, machines }
    }

    pub fn config(&self) -> &FleetConfig {
        &self.config
    }

    /// The machines, in index order.
    pub fn machines(&self) -> &[EmulatedMachine] {
        &self.machines
    }

    /// Handles to watch the machines while the fleet runs, in index order.
    pub fn nodes(&self) -> Vec<NodeHandle> {
        self.machines.iter().map(EmulatedMachine::handle).collect()
    }

    /// The registry of the machines' clusters (bootstrap calls, etcd members, nodes).
    pub fn clusters(&self) -> &ClusterRegistry {
        &self.config.clusters
    }

    /// Provisions every machine not yet provisioned in this boot, each retrying per `policy`;
    /// returns when all have joined, or at the first machine that gives up (its error), or on
    /// cancellation.
    pub async fn provision_all(
        &mut self,
        policy: &RetryPolicy,
        cancel: &CancellationToken,
    ) -> Result<(), ProvisionError> {
        self.provision_all_reporting(policy, cancel, |_| {}).await
    }

    /// [`provision_all`](Self::provision_all), calling `on_joined` for each machine as it joins.
    pub async fn provision_all_reporting(
        &mut self,
        policy: &RetryPolicy,
        cancel: &CancellationToken,
        mut on_joined: impl FnMut(&EmulatedMachine),
    ) -> Result<(), ProvisionError> {
        // Lazy, so the machines' own retries handle a control plane that is not up yet.
        let channel = link::endpoint(&self.config.api)?.connect_lazy();
        let in_flight = Semaphore::new(self.config.concurrency.max(1));
        let link = &Link {
            api: &self.config.api,
            via: Via::Shared {
                channel: &channel,
                in_flight: &in_flight,
            },
        };
        // All machines wait in one task; only those holding a slot of `in_flight` are calling.
        let mut joining: FuturesUnordered<_> = self
            .machines
            .iter_mut()
            .filter(|machine| machine.provisioned().is_none())
            .map(|machine| async move {
                let result = machine
                    .provision_via(link, policy, cancel)
                    .await
                    .map(|_| ());
                (&*machine, result)
            })
            .collect();
        while let Some((machine, result)) = joining.next().await {
            result?;
            on_joined(machine);
        }
        Ok(())
    }

    /// Provisions every machine, then keeps each one's tunnel and services up (see
    /// [`NodeBehaviour`]), installing, resetting and rebooting as their machine APIs are told
    /// (see [`FleetConfig::lifecycle`]), until `cancel`. Returns the first provisioning error, or `Ok` once
    /// cancelled; the fleet can run again afterwards (same keys, same addresses).
    pub async fn run(
        &mut self,
        policy: &RetryPolicy,
        behaviour: &NodeBehaviour,
        cancel: &CancellationToken,
    ) -> Result<(), ProvisionError> {
        match self.provision_all(policy, cancel).await {
            Ok(()) | Err(ProvisionError::Cancelled) => {}
            Err(err) => return Err(err),
        }
        let channel = link::endpoint(&self.config.api)?.connect_lazy();
        let in_flight = Semaphore::new(self.config.concurrency.max(1));
        let link = &Link {
            api: &self.config.api,
            via: Via::Shared {
                channel: &channel,
                in_flight: &in_flight,
            },
        };
        let mut running: FuturesUnordered<_> = self
            .machines
            .iter_mut()
            .map(|machine| {
                machine.run_tunnel(link, policy, behaviour, &self.config.lifecycle, cancel)
            })
            .collect();
        while running.next().await.is_some() {}
        Ok(())
    }

    /// Reboots every machine: fresh WireGuard keys, nothing provisioned.
    pub fn reboot_all(&mut self) {
        self.machines.iter_mut().for_each(EmulatedMachine::reboot);
    }
}
