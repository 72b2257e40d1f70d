//! One reconcile round of one cluster.

mod upgrade;

use std::collections::HashMap;
use std::net::Ipv6Addr;

use drover_model::{
    ClusterMachinePhase as Phase, ClusterPhase, LabelSelector, MachineId, MachineRole,
};
use drover_service::{
    ServiceError, machine_labels, parse_phase, parse_role, render_machine_config,
};
use drover_store::cluster_machines::{self, ClusterMachineRow};
use drover_store::clusters::{self, ClusterRow, ObservedStatus};
use drover_store::machines::{self, MachineRow};
use drover_store::upgrades::UpgradeRow;
use drover_store::{StoreError, machine_classes};
use drover_talos::ApplyMode;
use drover_talos::client::{self, TalosError};
use tonic::Code;
use tonic::transport::Channel;

use drover_model::UpgradeState;
use drover_service::upgrades::state;

use crate::Reconciler;
use crate::plan::{self, Candidate, Member};

/// Node stages (as reported in events) the reconciler acts on.
const MAINTENANCE: &str = "maintenance";
const RUNNING: &str = "running";
const RESETTING: &str = "resetting";

#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error(transparent)]
    Talos(#[from] TalosError),
    #[error("{0}")]
    Internal(String),
}

/// Everything one round looks at.
struct Round<'a> {
    r: &'a Reconciler,
    cluster: ClusterRow,
    members: Vec<ClusterMachineRow>,
    machines: HashMap<String, MachineRow>,
}

impl Reconciler {
    pub(crate) async fn reconcile(&self, cluster: ClusterRow) -> Result<(), Error> {
        let pool = self.drover.store().pool();
        let tenant = cluster.tenant();
        let members = cluster_machines::list_for_cluster(pool, tenant, &cluster.name).await?;
        let machines = machines::list_in_cluster(pool, tenant, &cluster.name)
            .await?
            .into_iter()
            .map(|m| (m.id.clone(), m))
            .collect();
        let mut round = Round {
            r: self,
            cluster,
            members,
            machines,
        };
        if round.cluster.deleting {
            return round.tear_down().await;
        }
        let missing = round.allocate_and_release().await?;
        round.choose_endpoint().await?;
        round.step_members().await;
        let upgrade = round.latest_upgrade().await?;
        if let Some(active) = upgrade.as_ref().filter(|u| state(&u.state).is_active())
            && let Err(err) = round.drive_upgrade(active).await
        {
            tracing::warn!(cluster = %round.cluster.name, error = %err, "upgrade step failed");
        }
        let etcd = round.bootstrap_and_track_etcd().await;
        let kubernetes = round.kubernetes_ready().await;
        round
            .report(missing, etcd, kubernetes, upgrade.as_ref())
            .await
    }
}

impl Round<'_> {
    fn tenant(&self) -> drover_model::TenantId {
        self.cluster.tenant()
    }

    fn pool(&self) -> &sqlx::PgPool {
        self.r.drover.store().pool()
    }

    fn machine(&self, id: &str) -> Option<&MachineRow> {
        self.machines.get(id)
    }

    fn address(&self, id: &str) -> Option<Ipv6Addr> {
        self.machine(id).and_then(|m| m.address.parse().ok())
    }

    fn plan_members(&self) -> Vec<Member> {
        self.members
            .iter()
            .map(|m| Member {
                id: machine_id(&m.machine_id),
                set: m.machine_set.clone(),
                role: parse_role(&m.role),
                phase: parse_phase(&m.phase),
            })
            .collect()
    }

    fn machine_rows(&self) -> Vec<MachineRow> {
        self.machines.values().cloned().collect()
    }

    fn locked(&self, id: &str) -> bool {
        self.cluster.spec.0.is_locked(id)
    }

    /// A running, ready, connected member.
    fn healthy(&self, id: &str) -> bool {
        self.members
            .iter()
            .any(|m| m.machine_id == id && parse_phase(&m.phase) == Phase::Running)
            && self
                .machine(id)
                .is_some_and(|m| m.connected && m.ready && m.stage.as_deref() == Some(RUNNING))
    }

    async fn reload_members(&mut self) -> Result<(), Error> {
        let tenant = self.tenant();
        self.members =
            cluster_machines::list_for_cluster(self.pool(), tenant, &self.cluster.name).await?;
        self.machines = machines::list_in_cluster(self.pool(), tenant, &self.cluster.name)
            .await?
            .into_iter()
            .map(|m| (m.id.clone(), m))
            .collect();
        Ok(())
    }

    /// Takes machines from the pool and marks surplus members to leave; returns how many
    /// machines the spec asks for that cannot be had.
    async fn allocate_and_release(&mut self) -> Result<u32, Error> {
        let tenant = self.tenant();
        let spec = self.cluster.spec.0.clone();
        let mut classes: HashMap<String, Vec<LabelSelector>> = HashMap::new();
        for row in machine_classes::list(self.pool(), tenant).await? {
            let selectors = row
                .selectors
                .0
                .iter()
                .filter_map(|s| s.parse().ok())
                .collect();
            classes.insert(row.name, selectors);
        }
        let pool: Vec<Candidate> = machines::list_unallocated(self.pool(), tenant)
            .await?
            .iter()
            .map(|m| Candidate {
                id: machine_id(&m.id),
                labels: machine_labels(m),
                connected: m.connected,
            })
            .collect();
        let members = self.plan_members();
        let change = plan::membership(&spec, &classes, &members, &pool);
        let mut changed = false;
        for (id, set, role) in &change.allocate {
            let role = drover_model::variant_name(role);
            match cluster_machines::allocate(
                self.pool(),
                tenant,
                id,
                &self.cluster.name,
                set,
                &role,
            )
            .await
            {
                Ok(()) => {
                    tracing::info!(cluster = %self.cluster.name, machine = %id, set, "machine allocated");
                    changed = true;
                }
                // Taken by another cluster in the meantime: next round decides again.
                Err(err) if err.conflict_constraint() == Some("cluster_machines_pkey") => {}
                Err(err) => return Err(err.into()),
            }
        }
        // Let go: control planes one at a time with quorum kept; workers by the set's delete
        // strategy.
        for id in &change.remove {
            let Some(member) = members.iter().find(|m| &m.id == id) else {
                continue;
            };
            let allowed = match member.role {
                MachineRole::ControlPlane => {
                    plan::control_plane_may_leave(id, &members, &|m| self.healthy(m.as_str()))
                }
                MachineRole::Worker => {
                    let parallel = spec
                        .machine_set(&member.set)
                        .map(|(_, s)| s.delete_strategy.max_parallelism)
                        .unwrap_or(1) as usize;
                    members
                        .iter()
                        .filter(|m| m.set == member.set && m.leaving())
                        .count()
                        < parallel
                }
            };
            if !allowed {
                continue;
            }
            let from: &[&str] = match member.phase {
                // Never given a config: straight back to the pool.
                Phase::Allocated => {
                    cluster_machines::release(self.pool(), tenant, id).await?;
                    changed = true;
                    continue;
                }
                Phase::Installing | Phase::Running => &["installing", "running"],
                Phase::Leaving | Phase::Resetting => continue,
            };
            if cluster_machines::advance(self.pool(), tenant, id, from, Phase::Leaving.as_str())
                .await?
            {
                tracing::info!(cluster = %self.cluster.name, machine = %id, "machine leaving the cluster");
                changed = true;
            }
        }
        if changed {
            self.reload_members().await?;
        }
        Ok(change.missing)
    }

    /// The Kubernetes API endpoint machines are configured with: the first control plane's
    /// tunnel address, chosen once.
    async fn choose_endpoint(&mut self) -> Result<(), Error> {
        if self.cluster.control_plane_endpoint.is_some() {
            return Ok(());
        }
        let Some(first) = self
            .members
            .iter()
            .find(|m| parse_role(&m.role) == MachineRole::ControlPlane)
            .and_then(|m| self.machine(&m.machine_id))
        else {
            return Ok(());
        };
        let endpoint = format!("https://[{}]:6443", first.address);
        clusters::set_control_plane_endpoint(
            self.pool(),
            self.tenant(),
            &self.cluster.name,
            &endpoint,
        )
        .await?;
        self.cluster.control_plane_endpoint = Some(endpoint);
        Ok(())
    }

    /// Moves each member one step; errors are recorded on the member.
    async fn step_members(&mut self) {
        // Rolling config changes: per set, at most `updateStrategy.maxParallelism` machines
        // unhealthy or being changed at once.
        let mut budget: HashMap<String, u32> = HashMap::new();
        for (_, set) in self.cluster.spec.0.machine_sets() {
            let unhealthy = self
                .members
                .iter()
                .filter(|m| m.machine_set == set.name && !self.healthy(&m.machine_id))
                .count() as u32;
            let parallel = match set.update_strategy.kind {
                drover_model::StrategyKind::Rolling => set.update_strategy.max_parallelism,
                drover_model::StrategyKind::Unset => u32::MAX,
            };
            budget.insert(set.name.clone(), parallel.saturating_sub(unhealthy));
        }
        for member in self.members.clone() {
            let id = machine_id(&member.machine_id);
            let result = self.step_member(&member, &mut budget).await;
            let error = result.err().map(|e| e.to_string());
            if error.is_some() {
                tracing::debug!(cluster = %self.cluster.name, machine = %id, error = ?error, "member step failed");
            }
            if error != member.last_error
                && let Err(err) =
                    cluster_machines::set_error(self.pool(), self.tenant(), &id, error.as_deref())
                        .await
            {
                tracing::warn!(error = %err, "recording a member error failed");
            }
        }
        if let Err(err) = self.reload_members().await {
            tracing::warn!(error = %err, "reloading members failed");
        }
    }

    async fn step_member(
        &self,
        member: &ClusterMachineRow,
        budget: &mut HashMap<String, u32>,
    ) -> Result<(), Error> {
        let tenant = self.tenant();
        let id = machine_id(&member.machine_id);
        let Some(machine) = self.machine(&member.machine_id) else {
            return Ok(());
        };
        let stage = machine.stage.as_deref();
        match parse_phase(&member.phase) {
            Phase::Allocated => {
                let keys = self.keys().await?;
                let rendered = render_machine_config(&self.cluster, &keys.bundle, member, machine)?;
                match stage {
                    Some(MAINTENANCE) if machine.connected => {
                        let channel = self.r.api.maintenance(self.address_of(machine)?);
                        client::apply_configuration(
                            &channel,
                            rendered.expose().as_bytes(),
                            ApplyMode::Auto,
                        )
                        .await?;
                        tracing::info!(cluster = %self.cluster.name, machine = %id, "config applied in maintenance mode");
                    }
                    // The config was applied but the round ended before it was recorded: the
                    // node is installing it (configs render deterministically).
                    Some("installing" | "rebooting" | "booting" | RUNNING) => {}
                    _ => return Ok(()),
                }
                self.record_applied(&id, &rendered, Phase::Installing)
                    .await?;
            }
            Phase::Installing => {
                if stage == Some(RUNNING) && machine.ready && machine.connected {
                    cluster_machines::advance(self.pool(), tenant, &id, &["installing"], "running")
                        .await?;
                    tracing::info!(cluster = %self.cluster.name, machine = %id, "machine running");
                }
            }
            Phase::Running => {
                let keys = self.keys().await?;
                let rendered = render_machine_config(&self.cluster, &keys.bundle, member, machine)?;
                let hash = rendered.sha256_hex();
                if member.desired_config_hash.as_deref() != Some(hash.as_str()) {
                    cluster_machines::set_desired(self.pool(), tenant, &id, &hash).await?;
                }
                if member.applied_config_hash.as_deref() == Some(hash.as_str())
                    || self.locked(&member.machine_id)
                    || stage != Some(RUNNING)
                    || !machine.connected
                {
                    return Ok(());
                }
                let slots = budget.entry(member.machine_set.clone()).or_default();
                if *slots == 0 {
                    return Ok(());
                }
                *slots -= 1;
                {
                    let channel = self.authenticated(machine).await?;
                    client::apply_configuration(
                        &channel,
                        rendered.expose().as_bytes(),
                        ApplyMode::Auto,
                    )
                    .await?;
                    self.record_applied(&id, &rendered, Phase::Running).await?;
                    tracing::info!(cluster = %self.cluster.name, machine = %id, "config updated");
                }
            }
            Phase::Leaving => self.leave(member, machine).await?,
            Phase::Resetting => {
                if stage == Some(MAINTENANCE) {
                    cluster_machines::release(self.pool(), tenant, &id).await?;
                    tracing::info!(cluster = %self.cluster.name, machine = %id, "machine reset and back in the pool");
                }
            }
        }
        Ok(())
    }

    /// Records the config a machine was given, which is also the one it should run.
    async fn record_applied(
        &self,
        id: &MachineId,
        rendered: &drover_config::RenderedConfig,
        phase: Phase,
    ) -> Result<(), Error> {
        let hash = rendered.sha256_hex();
        let tenant = self.tenant();
        cluster_machines::set_applied(
            self.pool(),
            tenant,
            id,
            &hash,
            &rendered.redacted(),
            phase.as_str(),
        )
        .await?;
        cluster_machines::set_desired(self.pool(), tenant, id, &hash).await?;
        Ok(())
    }

    /// Removes a leaving control plane from etcd (through another control plane), then resets
    /// the node. The reset is recorded as sent; a node already back in maintenance is released.
    async fn leave(&self, member: &ClusterMachineRow, machine: &MachineRow) -> Result<(), Error> {
        let tenant = self.tenant();
        let id = machine_id(&member.machine_id);
        if machine.stage.as_deref() == Some(MAINTENANCE) {
            cluster_machines::release(self.pool(), tenant, &id).await?;
            return Ok(());
        }
        if parse_role(&member.role) == MachineRole::ControlPlane && !self.cluster.deleting {
            if let Some(other) = self
                .members
                .iter()
                .filter(|m| m.machine_id != member.machine_id && self.healthy(&m.machine_id))
                .find(|m| parse_role(&m.role) == MachineRole::ControlPlane)
                .and_then(|m| self.machine(&m.machine_id))
            {
                let channel = self.authenticated(other).await?;
                let etcd = client::etcd_member_list(&channel).await?;
                if let Some(found) = etcd.iter().find(|e| is_member_of(e, machine)) {
                    match client::etcd_remove_member_by_id(&channel, found.id).await {
                        Ok(()) => {
                            tracing::info!(cluster = %self.cluster.name, machine = %id, member = found.id, "etcd member removed")
                        }
                        Err(err) if err.code() == Code::NotFound => {}
                        Err(err) => return Err(err.into()),
                    }
                }
                cluster_machines::set_etcd_member(self.pool(), tenant, &id, None).await?;
            } else {
                return Err(Error::Internal(
                    "waiting for a healthy control plane to remove this node's etcd member".into(),
                ));
            }
        }
        // A node already resetting got the call in a round that ended before recording it.
        if machine.stage.as_deref() == Some(RESETTING) {
            cluster_machines::advance(self.pool(), tenant, &id, &["leaving"], "resetting").await?;
            return Ok(());
        }
        if machine.connected {
            let channel = self.authenticated(machine).await?;
            client::reset(&channel, false).await?;
            cluster_machines::advance(self.pool(), tenant, &id, &["leaving"], "resetting").await?;
            tracing::info!(cluster = %self.cluster.name, machine = %id, "reset sent (STATE and EPHEMERAL wiped)");
        }
        Ok(())
    }

    /// Bootstraps etcd once, then counts its members. Returns the member count, if read.
    async fn bootstrap_and_track_etcd(&mut self) -> Option<u32> {
        match self.try_bootstrap_and_track().await {
            Ok(count) => count,
            Err(err) => {
                tracing::debug!(cluster = %self.cluster.name, error = %err, "etcd step failed");
                self.cluster.last_error = Some(err.to_string());
                None
            }
        }
    }

    async fn try_bootstrap_and_track(&mut self) -> Result<Option<u32>, Error> {
        let tenant = self.tenant();
        let running_cps: Vec<String> = self
            .members
            .iter()
            .filter(|m| {
                parse_role(&m.role) == MachineRole::ControlPlane && self.healthy(&m.machine_id)
            })
            .map(|m| m.machine_id.clone())
            .collect();
        if self.cluster.bootstrapped_at.is_none() {
            let Some(first) = running_cps.first() else {
                return Ok(None);
            };
            // Recorded before the call: Bootstrap goes to this node and no other.
            let chosen =
                clusters::claim_bootstrap(self.pool(), tenant, &self.cluster.name, first).await?;
            let Some(machine) = self
                .machine(&chosen)
                .filter(|_| running_cps.contains(&chosen))
            else {
                return Ok(None);
            };
            let channel = self.authenticated(machine).await?;
            // A node that already has members was bootstrapped by an earlier round that ended
            // before recording it.
            let already = client::etcd_member_list(&channel)
                .await
                .map(|m| !m.is_empty())
                .unwrap_or(false);
            if !already {
                match client::bootstrap(&channel).await {
                    Ok(()) => {
                        tracing::info!(cluster = %self.cluster.name, machine = %chosen, "etcd bootstrapped")
                    }
                    Err(err)
                        if err.code() == Code::FailedPrecondition
                            || err.code() == Code::AlreadyExists =>
                    {
                        tracing::info!(cluster = %self.cluster.name, error = %err, "etcd was bootstrapped already");
                    }
                    Err(err) => return Err(err.into()),
                }
            }
            clusters::set_bootstrapped(self.pool(), tenant, &self.cluster.name).await?;
            self.cluster.bootstrapped_at = Some(chrono::Utc::now());
        }
        let Some(reader) = running_cps.first().and_then(|id| self.machine(id)) else {
            return Ok(None);
        };
        let channel = self.authenticated(reader).await?;
        let etcd = client::etcd_member_list(&channel).await?;
        for member in &self.members {
            if parse_role(&member.role) != MachineRole::ControlPlane {
                continue;
            }
            let Some(machine) = self.machine(&member.machine_id) else {
                continue;
            };
            let found = etcd
                .iter()
                .find(|e| is_member_of(e, machine))
                .map(|e| e.id.to_string());
            if found != member.etcd_member_id {
                cluster_machines::set_etcd_member(
                    self.pool(),
                    tenant,
                    &machine_id(&member.machine_id),
                    found.as_deref(),
                )
                .await?;
            }
        }
        Ok(Some(etcd.len() as u32))
    }

    /// Whether the Kubernetes API answers `/readyz` on a healthy control plane.
    async fn kubernetes_ready(&self) -> bool {
        if self.cluster.bootstrapped_at.is_none() {
            return false;
        }
        let Some(address) = self
            .members
            .iter()
            .filter(|m| parse_role(&m.role) == MachineRole::ControlPlane)
            .find(|m| self.healthy(&m.machine_id))
            .and_then(|m| self.address(&m.machine_id))
        else {
            return false;
        };
        let Ok(keys) = self.keys().await else {
            return false;
        };
        match self.r.api.kubernetes_ready(address, &keys.kubernetes).await {
            Ok(ready) => ready,
            Err(err) => {
                tracing::debug!(cluster = %self.cluster.name, error = %err, "Kubernetes API probe failed");
                false
            }
        }
    }

    async fn report(
        &self,
        missing: u32,
        etcd: Option<u32>,
        kubernetes: bool,
        upgrade: Option<&UpgradeRow>,
    ) -> Result<(), Error> {
        let upgrade_state = upgrade.map(|u| state(&u.state));
        let phases: Vec<Phase> = self.members.iter().map(|m| parse_phase(&m.phase)).collect();
        let control_planes = self
            .members
            .iter()
            .filter(|m| {
                parse_role(&m.role) == MachineRole::ControlPlane
                    && !matches!(parse_phase(&m.phase), Phase::Leaving | Phase::Resetting)
            })
            .count() as u32;
        let etcd_members = etcd.unwrap_or(self.cluster.etcd_members.max(0) as u32);
        let all_healthy =
            !self.members.is_empty() && self.members.iter().all(|m| self.healthy(&m.machine_id));
        let ready = all_healthy
            && missing == 0
            && self.cluster.bootstrapped_at.is_some()
            && etcd_members == control_planes
            && kubernetes;
        let phase =
            if phases
                .iter()
                .any(|p| matches!(p, Phase::Leaving | Phase::Resetting))
            {
                ClusterPhase::ScalingDown
            } else if upgrade_state.is_some_and(UpgradeState::is_active) {
                ClusterPhase::Upgrading
            } else if upgrade_state == Some(UpgradeState::Failed) {
                ClusterPhase::Failed
            } else if missing > 0 || phases.iter().any(|p| *p < Phase::Running) {
                ClusterPhase::ScalingUp
            } else if self.members.iter().any(|m| {
                m.applied_config_hash != m.desired_config_hash && !self.locked(&m.machine_id)
            }) {
                ClusterPhase::Reconfiguring
            } else if !ready {
                ClusterPhase::ScalingUp
            } else {
                ClusterPhase::Running
            };
        let last_error = self
            .members
            .iter()
            .find_map(|m| {
                m.last_error
                    .as_ref()
                    .map(|e| format!("machine {}: {e}", m.machine_id))
            })
            .or_else(|| {
                upgrade
                    .filter(|u| state(&u.state) == UpgradeState::Failed)
                    .and_then(|u| {
                        let e = u.error.as_ref()?;
                        Some(format!("upgrade to {} failed: {e}", u.to_version))
                    })
            })
            .or_else(|| self.cluster.last_error.clone().filter(|_| !ready));
        let phase_text = drover_model::variant_name(phase);
        clusters::set_status(
            self.pool(),
            self.tenant(),
            &self.cluster.name,
            &ObservedStatus {
                phase: &phase_text,
                ready,
                etcd_members: etcd_members as i32,
                kubernetes_api_ready: kubernetes,
                machines_missing: missing as i32,
                last_error: last_error.as_deref(),
            },
        )
        .await?;
        Ok(())
    }

    /// Resets every machine, then forgets the cluster and its secrets.
    async fn tear_down(&mut self) -> Result<(), Error> {
        let tenant = self.tenant();
        for member in self.members.clone() {
            let id = machine_id(&member.machine_id);
            let result = match parse_phase(&member.phase) {
                Phase::Allocated => cluster_machines::release(self.pool(), tenant, &id)
                    .await
                    .map_err(Error::from),
                Phase::Installing | Phase::Running => cluster_machines::advance(
                    self.pool(),
                    tenant,
                    &id,
                    &["installing", "running"],
                    "leaving",
                )
                .await
                .map(|_| ())
                .map_err(Error::from),
                Phase::Leaving => match self.machine(&member.machine_id) {
                    Some(machine) => self.leave(&member, machine).await,
                    None => Ok(()),
                },
                Phase::Resetting => self.step_member(&member, &mut HashMap::new()).await,
            };
            if let Err(err) = result {
                let _ =
                    cluster_machines::set_error(self.pool(), tenant, &id, Some(&err.to_string()))
                        .await;
            }
        }
        if clusters::delete(self.pool(), tenant, &self.cluster.name).await? {
            self.r.forget_keys(self.cluster.uid);
            tracing::info!(cluster = %self.cluster.name, "cluster deleted");
        }
        Ok(())
    }

    async fn keys(&self) -> Result<std::sync::Arc<crate::ClusterKeys>, Error> {
        self.r
            .keys(self.tenant(), &self.cluster.name, self.cluster.uid)
            .await
    }

    fn address_of(&self, machine: &MachineRow) -> Result<Ipv6Addr, Error> {
        self.address(&machine.id)
            .ok_or_else(|| Error::Internal(format!("machine {} has no tunnel address", machine.id)))
    }

    async fn authenticated(&self, machine: &MachineRow) -> Result<Channel, Error> {
        let keys = self.keys().await?;
        self.r
            .api
            .authenticated(self.address_of(machine)?, &keys.credentials)
            .map_err(|e| Error::Internal(e.to_string()))
    }
}

/// Whether an etcd member is `machine`'s: its URLs carry the machine's tunnel address.
fn is_member_of(member: &drover_talos::EtcdMember, machine: &MachineRow) -> bool {
    let host = format!("[{}]", machine.address);
    member
        .peer_urls
        .iter()
        .chain(&member.client_urls)
        .any(|url| url.contains(&host))
}

fn machine_id(id: &str) -> MachineId {
    MachineId::try_from(id.to_owned()).expect("stored machine ids are valid")
}
