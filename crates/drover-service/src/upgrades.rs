//! Rolling upgrades as desired state: a requested upgrade is a row (and the cluster's spec
//! carries the target version); the reconciler rolls it node by node with `drover-upgrade`'s
//! planner. Pause, resume and cancel change the row's state.

use std::collections::HashMap;

use chrono::Utc;
use drover_model::{
    ClusterEvent, MachineId, MachineRole, Role, StartUpgrade, Upgrade, UpgradeKind,
    UpgradeNodeStatus, UpgradeState, Version,
};
use drover_store::cluster_machines::ClusterMachineRow;
use drover_store::clusters::{self, ClusterRow};
use drover_store::machines::{self, MachineRow};
use drover_store::upgrades::{self, NodeRow, UpgradeRow};
use drover_store::{PgExecutor, cluster_machines};
use drover_upgrade::{Intent, Kind, Node, NodeProgress, SetPolicy, Step};

use crate::{Drover, RequestContext, Result, ServiceError, parse_phase, parse_role};

/// Stage names nodes report that the planner treats as healthy.
const RUNNING: &str = "running";

impl Drover {
    /// Starts (or, with `dry_run`, plans) moving a cluster to another Talos version. The target
    /// must be reachable from the current version and compatible with the cluster's Kubernetes
    /// version; a rollback may only go back to the version before the last upgrade.
    pub async fn start_upgrade(
        &self,
        ctx: &RequestContext,
        cluster: &str,
        req: StartUpgrade,
    ) -> Result<Upgrade> {
        self.audited(
            ctx,
            if req.dry_run {
                "upgrade.plan"
            } else {
                "upgrade.start"
            },
            cluster,
            self.start_upgrade_unaudited(ctx, cluster, req),
        )
        .await
    }

    async fn start_upgrade_unaudited(
        &self,
        ctx: &RequestContext,
        cluster: &str,
        req: StartUpgrade,
    ) -> Result<Upgrade> {
        self.require_on_cluster(ctx, cluster, Role::Operator, "upgrading a cluster")
            .await?;
        let (kind, kind_text) = match req.kind {
            UpgradeKind::Talos => (Kind::Talos, "talos"),
            UpgradeKind::Kubernetes => (Kind::Kubernetes, "kubernetes"),
        };
        let target: Version =
            req.version
                .parse()
                .map_err(|e: drover_model::versions::InvalidVersion| {
                    ServiceError::invalid("version", e.to_string())
                })?;
        let mut tx = self.store().begin().await?;
        let row = clusters::get_for_update(&mut *tx, ctx.tenant(), cluster)
            .await?
            .ok_or_else(|| ServiceError::not_found("cluster", cluster))?;
        if row.deleting {
            return Err(ServiceError::Conflict(format!(
                "cluster {cluster:?} is being deleted"
            )));
        }
        let latest = upgrades::latest(&mut *tx, ctx.tenant(), cluster).await?;
        if let Some(active) = latest.as_ref().filter(|u| state(&u.state).is_active()) {
            return Err(ServiceError::Conflict(format!(
                "a {} upgrade to {} is under way; pause, cancel or wait for it",
                active.kind, active.to_version
            )));
        }
        let spec = &row.spec.0;
        // Asking again for the target of an upgrade that failed or was cancelled retries it
        // (nodes already on the target are skipped).
        let current = match kind {
            Kind::Talos => &spec.talos_version,
            Kind::Kubernetes => &spec.kubernetes_version,
        };
        let retry = latest.as_ref().filter(|u| {
            u.kind == kind_text
                && matches!(
                    state(&u.state),
                    UpgradeState::Failed | UpgradeState::Cancelled
                )
                && u.to_version == target.to_string()
                && *current == u.to_version
        });
        let from = match retry {
            Some(u) => version(&u.from_version)?,
            None => version(current)?,
        };
        // What a rollback may return to: the version before the last upgrade.
        let previous = latest
            .as_ref()
            .filter(|u| u.kind == kind_text)
            .and_then(|u| u.from_version.parse().ok());
        let (talos, kubernetes) = (
            version(&spec.talos_version)?,
            version(&spec.kubernetes_version)?,
        );
        match kind {
            Kind::Talos => drover_upgrade::check_talos_upgrade(from, target, kubernetes, previous),
            Kind::Kubernetes => {
                drover_upgrade::check_kubernetes_upgrade(from, target, talos, previous)
            }
        }
        .map_err(|e| ServiceError::invalid("version", e.to_string()))?;

        // Pre-check: a Kubernetes upgrade starts only on a Ready cluster.
        if kind == Kind::Kubernetes && !row.ready && !req.dry_run {
            return Err(ServiceError::Conflict(format!(
                "cluster {cluster:?} is not Ready{}: a Kubernetes upgrade starts only when every machine, etcd and the API server are healthy",
                row.last_error
                    .as_deref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            )));
        }
        let members = cluster_machines::list_for_cluster(&mut *tx, ctx.tenant(), cluster).await?;
        let machine_rows = machines::list_in_cluster(&mut *tx, ctx.tenant(), cluster).await?;
        let intent = intent(&row, kind, target, UpgradeState::Running, None);
        let nodes = planner_nodes(&row, &members, &machine_rows, &[]);
        let plan = drover_upgrade::plan(&intent, &nodes).to_string();
        if req.dry_run {
            return Ok(Upgrade {
                id: None,
                cluster: cluster.to_owned(),
                kind: req.kind,
                from_version: from.to_string(),
                to_version: target.to_string(),
                state: UpgradeState::Running,
                error: None,
                plan,
                nodes: vec![],
                created_at: None,
                finished_at: None,
            });
        }
        let upgrade = upgrades::insert(
            &mut *tx,
            ctx.tenant(),
            cluster,
            kind_text,
            &from.to_string(),
            &target.to_string(),
        )
        .await?;
        let mut spec = spec.clone();
        match kind {
            Kind::Talos => spec.talos_version = target.to_string(),
            Kind::Kubernetes => {
                // Machines keep what they run until the rollout reaches them.
                cluster_machines::pin_component_versions(
                    &mut *tx,
                    ctx.tenant(),
                    cluster,
                    &spec.kubernetes_version,
                )
                .await?;
                spec.kubernetes_version = target.to_string();
            }
        }
        clusters::update_spec(&mut *tx, ctx.tenant(), &spec).await?;
        upgrades::record_event(
            &mut *tx,
            ctx.tenant(),
            cluster,
            "upgradeStarted",
            &format!("{kind} upgrade from {from} to {target} started"),
        )
        .await?;
        tx.commit().await.map_err(drover_store::StoreError::from)?;
        tracing::info!(cluster, %kind, %from, %target, "upgrade started");
        Ok(view(upgrade, vec![], plan))
    }

    /// The cluster's newest upgrade, with its per-node progress and the plan of what is left.
    pub async fn get_upgrade(&self, ctx: &RequestContext, cluster: &str) -> Result<Upgrade> {
        self.require_on_cluster(ctx, cluster, Role::Reader, "reading a cluster's upgrade")
            .await?;
        let pool = self.store().pool();
        let row = clusters::get(pool, ctx.tenant(), cluster)
            .await?
            .ok_or_else(|| ServiceError::not_found("cluster", cluster))?;
        let upgrade = upgrades::latest(pool, ctx.tenant(), cluster)
            .await?
            .ok_or_else(|| ServiceError::not_found("upgrade of cluster", cluster))?;
        let progress = upgrades::nodes(pool, upgrade.id).await?;
        let members = cluster_machines::list_for_cluster(pool, ctx.tenant(), cluster).await?;
        let machine_rows = machines::list_in_cluster(pool, ctx.tenant(), cluster).await?;
        let target = version(&upgrade.to_version)?;
        let intent = intent(&row, kind_of(&upgrade), target, state(&upgrade.state), None);
        let plan = drover_upgrade::plan(
            &intent,
            &planner_nodes(&row, &members, &machine_rows, &progress),
        )
        .to_string();
        Ok(view(upgrade, progress, plan))
    }

    /// Pauses (no node starts), resumes, or cancels the cluster's upgrade under way.
    pub async fn set_upgrade_state(
        &self,
        ctx: &RequestContext,
        cluster: &str,
        to: UpgradeState,
    ) -> Result<Upgrade> {
        let action = format!("upgrade.{}", to.as_str());
        self.audited(
            ctx,
            &action,
            cluster,
            self.set_upgrade_state_unaudited(ctx, cluster, to),
        )
        .await
    }

    async fn set_upgrade_state_unaudited(
        &self,
        ctx: &RequestContext,
        cluster: &str,
        to: UpgradeState,
    ) -> Result<Upgrade> {
        self.require_on_cluster(ctx, cluster, Role::Operator, "changing an upgrade")
            .await?;
        let from: &[&str] = match to {
            UpgradeState::Paused => &["running"],
            UpgradeState::Running => &["paused"],
            UpgradeState::Cancelled => &["running", "paused"],
            UpgradeState::Failed | UpgradeState::Done => {
                return Err(ServiceError::invalid(
                    "state",
                    "an upgrade can be paused, resumed (running) or cancelled",
                ));
            }
        };
        let pool = self.store().pool();
        let upgrade = upgrades::latest(pool, ctx.tenant(), cluster)
            .await?
            .ok_or_else(|| ServiceError::not_found("upgrade of cluster", cluster))?;
        if !upgrades::set_state(pool, upgrade.id, from, to.as_str(), None).await? {
            return Err(ServiceError::Conflict(format!(
                "the upgrade of {cluster:?} is {}; it cannot become {}",
                upgrade.state,
                to.as_str()
            )));
        }
        upgrades::record_event(
            pool,
            ctx.tenant(),
            cluster,
            &format!("upgrade{}", capitalised(to.as_str())),
            &format!("upgrade to {} {}", upgrade.to_version, to.as_str()),
        )
        .await?;
        self.get_upgrade(ctx, cluster).await
    }

    /// The cluster's events after `after`, oldest first.
    pub async fn cluster_events(
        &self,
        ctx: &RequestContext,
        cluster: &str,
        after: i64,
    ) -> Result<Vec<ClusterEvent>> {
        self.require_on_cluster(ctx, cluster, Role::Reader, "reading cluster events")
            .await?;
        let pool = self.store().pool();
        if clusters::get(pool, ctx.tenant(), cluster).await?.is_none() {
            return Err(ServiceError::not_found("cluster", cluster));
        }
        Ok(upgrades::events(pool, ctx.tenant(), cluster, after)
            .await?
            .into_iter()
            .map(|e| ClusterEvent {
                seq: e.seq,
                at: e.at,
                kind: e.kind,
                message: e.message,
            })
            .collect())
    }
}

/// Records a cluster event (for the reconciler).
pub async fn record_event(
    e: impl PgExecutor<'_>,
    cluster: &ClusterRow,
    kind: &str,
    message: &str,
) -> Result<()> {
    upgrades::record_event(e, cluster.tenant(), &cluster.name, kind, message).await?;
    Ok(())
}

/// The kind of a stored upgrade.
pub fn kind_of(upgrade: &UpgradeRow) -> Kind {
    if upgrade.kind == "kubernetes" {
        Kind::Kubernetes
    } else {
        Kind::Talos
    }
}

/// The keys, in `cluster_machines.kubernetes_versions`, of the components a step moves. The
/// add-ons step moves them on every machine of the cluster, the others on the node's only.
pub fn step_components(step: Step) -> &'static [&'static str] {
    match step {
        Step::Talos => &[],
        Step::ApiServer => &["apiserver"],
        Step::ControllerManager => &["controllerManager"],
        Step::Scheduler => &["scheduler"],
        Step::Kubelet => &["kubelet"],
        Step::Addons => &["proxy", "coredns"],
    }
}

/// The step a stored step name stands for.
pub fn step_named(name: &str) -> Option<Step> {
    [
        Step::Talos,
        Step::ApiServer,
        Step::ControllerManager,
        Step::Scheduler,
        Step::Kubelet,
        Step::Addons,
    ]
    .into_iter()
    .find(|s| s.as_str() == name)
}

fn capitalised(s: &str) -> String {
    let mut chars = s.chars();
    chars
        .next()
        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

fn version(text: &str) -> Result<Version> {
    text.parse()
        .map_err(|e: drover_model::versions::InvalidVersion| ServiceError::Internal(Box::new(e)))
}

pub fn state(text: &str) -> UpgradeState {
    drover_model::parse_variant(text).unwrap_or(UpgradeState::Failed)
}

fn view(row: UpgradeRow, progress: Vec<NodeRow>, plan: String) -> Upgrade {
    Upgrade {
        id: Some(row.id),
        cluster: row.cluster_name,
        kind: if row.kind == "kubernetes" {
            UpgradeKind::Kubernetes
        } else {
            UpgradeKind::Talos
        },
        from_version: row.from_version,
        to_version: row.to_version,
        state: state(&row.state),
        error: row.error,
        plan,
        nodes: progress
            .into_iter()
            .map(|n| UpgradeNodeStatus {
                machine: MachineId::try_from(n.machine_id).expect("stored ids are valid"),
                step: n.step,
                state: n.state,
                error: n.error,
                started_at: n.started_at,
                finished_at: n.finished_at,
            })
            .collect(),
        created_at: Some(row.created_at),
        finished_at: row.finished_at,
    }
}

/// What the planner needs to know of the upgrade: target, sets and their parallelism, etcd.
pub fn intent(
    cluster: &ClusterRow,
    kind: Kind,
    target: Version,
    state: UpgradeState,
    step_timeout_secs: Option<u64>,
) -> Intent {
    Intent {
        kind,
        target,
        sets: cluster
            .spec
            .0
            .machine_sets()
            .map(|(role, set)| SetPolicy {
                name: set.name.clone(),
                role,
                max_parallelism: set.update_strategy.max_parallelism.max(1),
            })
            .collect(),
        etcd_members: cluster.etcd_members.max(0) as u32,
        step_timeout_secs,
        paused: state == UpgradeState::Paused,
        cancelled: state == UpgradeState::Cancelled,
    }
}

/// The cluster's machines as the planner sees them, with their recorded progress. The add-ons
/// are upgraded through the first unlocked control plane by hostname.
pub fn planner_nodes(
    cluster: &ClusterRow,
    members: &[ClusterMachineRow],
    machines: &[MachineRow],
    progress: &[NodeRow],
) -> Vec<Node> {
    let spec = &cluster.spec.0;
    let kubernetes: Version = spec
        .kubernetes_version
        .parse()
        .unwrap_or(Version::new(1, 0, 0));
    let by_id: HashMap<&str, &MachineRow> = machines.iter().map(|m| (m.id.as_str(), m)).collect();
    let mut nodes: Vec<Node> = members
        .iter()
        .filter(|m| parse_phase(&m.phase) == drover_model::ClusterMachinePhase::Running)
        .filter_map(|member| {
            let machine = by_id.get(member.machine_id.as_str())?;
            let role = parse_role(&member.role);
            let facts: Option<drover_model::MachineFacts> = machine
                .facts
                .clone()
                .and_then(|f| serde_json::from_value(f).ok());
            let mine: Vec<&NodeRow> = progress
                .iter()
                .filter(|p| p.machine_id == member.machine_id)
                .collect();
            let configured = crate::component_versions(member);
            let at = |v: &Option<String>| {
                v.as_deref()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(kubernetes)
            };
            let control_plane = role == MachineRole::ControlPlane;
            Some(Node {
                id: member.machine_id.clone(),
                hostname: facts
                    .map(|f| f.hostname)
                    .unwrap_or_else(|| member.machine_id.clone()),
                set: member.machine_set.clone(),
                role,
                talos_version: machine.talos_version.parse().ok()?,
                kubelet_version: at(&configured.kubelet),
                apiserver: control_plane.then(|| at(&configured.apiserver)),
                controller_manager: control_plane.then(|| at(&configured.controller_manager)),
                scheduler: control_plane.then(|| at(&configured.scheduler)),
                addons: control_plane.then(|| at(&configured.coredns)),
                ready: machine.connected
                    && machine.ready
                    && machine.stage.as_deref() == Some(RUNNING),
                locked: spec.is_locked(&member.machine_id),
                progress: if let Some(p) = mine.iter().find(|p| p.state == "failed") {
                    NodeProgress::Failed {
                        step: step_named(&p.step).unwrap_or(Step::Talos),
                        error: p.error.clone().unwrap_or_default(),
                    }
                } else if let Some(p) = mine.iter().find(|p| p.state == "inProgress") {
                    NodeProgress::InProgress {
                        step: step_named(&p.step).unwrap_or(Step::Talos),
                        since_secs: (Utc::now() - p.started_at).num_seconds().max(0) as u64,
                    }
                } else if mine.iter().any(|p| p.step == Step::Talos.as_str()) {
                    NodeProgress::Done
                } else {
                    // Kubernetes steps: the planner compares the configured versions.
                    NodeProgress::Pending
                },
            })
        })
        .collect();
    let carrier = (nodes.iter())
        .filter(|n| n.role == MachineRole::ControlPlane && !n.locked)
        .min_by(|a, b| (&a.hostname, &a.id).cmp(&(&b.hostname, &b.id)))
        .map(|n| n.id.clone());
    for node in &mut nodes {
        if Some(&node.id) != carrier.as_ref() {
            node.addons = None;
        }
    }
    nodes
}
