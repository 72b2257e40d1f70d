//! Clusters as desired state: create, change, delete, read with status; machine classes;
//! machine labels and machine-scope patches; the config a machine is (to be) given.

use std::collections::BTreeMap;

use drover_config::{Patch, RenderInput, RenderedConfig, Scope, ScopedPatch};
use drover_model::labels::{self, automatic};
use drover_model::{
    Cluster, ClusterChanges, ClusterMachinePhase, ClusterMachineStatus, ClusterPhase, ClusterSpec,
    ClusterStatus, ConfigPatch, LabelSelector, Machine, MachineClass, MachineClassSpec,
    MachineConfigView, MachineId, MachineRole, Resource, Role, UpgradeKind, parse_variant,
};
use drover_pki::SecretsBundle;
use drover_store::cluster_machines::{self, ClusterMachineRow};
use drover_store::clusters::{self, ClusterRow};
use drover_store::machine_classes::{self, MachineClassRow};
use drover_store::machines::{self, MachineRow};

use crate::{Drover, RequestContext, Result, ServiceError, machines::to_model};

impl Drover {
    /// Checks a spec completely: structure, versions, machine classes and every patch.
    pub fn validate_cluster_spec(&self, spec: &ClusterSpec) -> Result<()> {
        drover_template::validate_spec_with(spec, &|p: &ConfigPatch| {
            Patch::parse(&p.name, &p.content)
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
        .map_err(|errors| ServiceError::invalid("spec", errors.to_string()))
    }

    pub async fn create_cluster(&self, ctx: &RequestContext, spec: ClusterSpec) -> Result<Cluster> {
        let target = spec.name.clone();
        self.audited(
            ctx,
            "cluster.create",
            &target,
            self.create_cluster_unaudited(ctx, spec),
        )
        .await
    }

    async fn create_cluster_unaudited(
        &self,
        ctx: &RequestContext,
        spec: ClusterSpec,
    ) -> Result<Cluster> {
        let spec = normalized(spec);
        ctx.require(Role::Operator, "creating a cluster")?;
        self.validate_cluster_spec(&spec)?;
        self.check_classes_exist(ctx, &spec).await?;
        if clusters::get(self.store().pool(), ctx.tenant(), &spec.name)
            .await?
            .is_some()
        {
            return Err(ServiceError::Conflict(format!(
                "a cluster named {:?} already exists",
                spec.name
            )));
        }
        // Refuse early, before the slow part, when the plan's limit is reached already.
        {
            let mut tx = self.store().begin().await?;
            self.check_quota(&mut tx, ctx.tenant(), Resource::Clusters)
                .await?;
        }
        // The slow part (an RSA-4096 key) before the transaction.
        let bundle = Self::generate_bundle(&spec.name).await?;
        let uid = uuid::Uuid::new_v4();
        let mut tx = self.store().begin().await?;
        // Counted again under the tenant's lock, held until commit: race-free at the limit.
        self.check_quota(&mut tx, ctx.tenant(), Resource::Clusters)
            .await?;
        clusters::insert(&mut *tx, ctx.tenant(), uid, &spec).await?;
        self.store_bundle(&mut tx, ctx.tenant(), &spec.name, uid, &bundle)
            .await?;
        self.set_cluster_machine_labels(&mut tx, ctx, &spec).await?;
        tx.commit().await.map_err(drover_store::StoreError::from)?;
        tracing::info!(cluster = %spec.name, "cluster created");
        self.get_cluster(ctx, &spec.name).await
    }

    /// Replaces a cluster's spec. Versions cannot change here (upgrades roll them).
    pub async fn update_cluster(&self, ctx: &RequestContext, spec: ClusterSpec) -> Result<Cluster> {
        let target = spec.name.clone();
        self.audited(
            ctx,
            "cluster.update",
            &target,
            self.update_cluster_unaudited(ctx, spec),
        )
        .await
    }

    async fn update_cluster_unaudited(
        &self,
        ctx: &RequestContext,
        spec: ClusterSpec,
    ) -> Result<Cluster> {
        let spec = normalized(spec);
        self.require_on_cluster(ctx, &spec.name, Role::Operator, "changing a cluster")
            .await?;
        self.validate_cluster_spec(&spec)?;
        self.check_classes_exist(ctx, &spec).await?;
        let mut tx = self.store().begin().await?;
        let row = clusters::get_for_update(&mut *tx, ctx.tenant(), &spec.name)
            .await?
            .ok_or_else(|| ServiceError::not_found("cluster", &spec.name))?;
        if row.deleting {
            return Err(ServiceError::Conflict(format!(
                "cluster {:?} is being deleted",
                spec.name
            )));
        }
        let current = &row.spec.0;
        for (field, old, new) in [
            ("talosVersion", &current.talos_version, &spec.talos_version),
            (
                "kubernetesVersion",
                &current.kubernetes_version,
                &spec.kubernetes_version,
            ),
        ] {
            if old != new {
                return Err(ServiceError::invalid(
                    field,
                    format!(
                        "cannot change from {old} to {new} by editing the cluster: versions change through an upgrade"
                    ),
                ));
            }
        }
        if current != &spec {
            clusters::update_spec(&mut *tx, ctx.tenant(), &spec).await?;
            self.set_cluster_machine_labels(&mut tx, ctx, &spec).await?;
        }
        tx.commit().await.map_err(drover_store::StoreError::from)?;
        self.get_cluster(ctx, &spec.name).await
    }

    /// Creates the cluster or brings its spec to `spec` (what `template sync` does), saying what
    /// changes. With `dry_run` nothing is stored.
    pub async fn apply_cluster(
        &self,
        ctx: &RequestContext,
        spec: ClusterSpec,
        dry_run: bool,
    ) -> Result<ClusterChanges> {
        let target = spec.name.clone();
        self.audited(
            ctx,
            if dry_run {
                "cluster.sync.dryRun"
            } else {
                "cluster.sync"
            },
            &target,
            self.apply_cluster_unaudited(ctx, spec, dry_run),
        )
        .await
    }

    async fn apply_cluster_unaudited(
        &self,
        ctx: &RequestContext,
        spec: ClusterSpec,
        dry_run: bool,
    ) -> Result<ClusterChanges> {
        let spec = normalized(spec);
        let current = clusters::get(self.store().pool(), ctx.tenant(), &spec.name).await?;
        if current.is_some() {
            self.require_on_cluster(ctx, &spec.name, Role::Operator, "applying a cluster")
                .await?;
        } else {
            ctx.require(Role::Operator, "creating a cluster")?;
        }
        self.validate_cluster_spec(&spec)?;
        let changes = drover_template::diff(current.as_ref().map(|r| &r.spec.0), &spec)
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>();
        let created = current.is_none();
        // A changed version is an upgrade, rolled like one; the rest is an update.
        let upgrade = match &current {
            Some(row) => {
                let now = &row.spec.0;
                match (
                    now.talos_version != spec.talos_version,
                    now.kubernetes_version != spec.kubernetes_version,
                ) {
                    (true, true) => {
                        return Err(ServiceError::invalid(
                            "talosVersion",
                            "change one version at a time: Talos and Kubernetes upgrades roll separately",
                        ));
                    }
                    (true, false) => Some((UpgradeKind::Talos, spec.talos_version.clone())),
                    (false, true) => {
                        Some((UpgradeKind::Kubernetes, spec.kubernetes_version.clone()))
                    }
                    (false, false) => None,
                }
            }
            None => None,
        };
        if !dry_run && !changes.is_empty() {
            match current {
                None => {
                    self.create_cluster(ctx, spec).await?;
                }
                Some(row) => {
                    let mut rest = spec;
                    rest.talos_version = row.spec.0.talos_version.clone();
                    rest.kubernetes_version = row.spec.0.kubernetes_version.clone();
                    if rest != row.spec.0 {
                        self.update_cluster(ctx, rest.clone()).await?;
                    }
                    if let Some((kind, version)) = upgrade {
                        self.start_upgrade(
                            ctx,
                            &rest.name,
                            drover_model::StartUpgrade {
                                kind,
                                version,
                                dry_run: false,
                            },
                        )
                        .await?;
                    }
                }
            }
        }
        Ok(ClusterChanges {
            changes,
            created,
            dry_run,
        })
    }

    pub async fn list_clusters(&self, ctx: &RequestContext) -> Result<Vec<Cluster>> {
        ctx.require(Role::Reader, "listing clusters")?;
        let rows = clusters::list(self.store().pool(), ctx.tenant()).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(self.cluster_with_status(row).await?);
        }
        Ok(out)
    }

    pub async fn get_cluster(&self, ctx: &RequestContext, name: &str) -> Result<Cluster> {
        self.require_on_cluster(ctx, name, Role::Reader, "reading a cluster")
            .await?;
        let row = clusters::get(self.store().pool(), ctx.tenant(), name)
            .await?
            .ok_or_else(|| ServiceError::not_found("cluster", name))?;
        self.cluster_with_status(row).await
    }

    /// Starts tearing a cluster down: every machine is reset, then the cluster and its secrets
    /// are forgotten.
    pub async fn delete_cluster(&self, ctx: &RequestContext, name: &str) -> Result<Cluster> {
        self.audited(
            ctx,
            "cluster.delete",
            name,
            self.delete_cluster_unaudited(ctx, name),
        )
        .await
    }

    async fn delete_cluster_unaudited(&self, ctx: &RequestContext, name: &str) -> Result<Cluster> {
        self.require_on_cluster(ctx, name, Role::Operator, "deleting a cluster")
            .await?;
        let row = clusters::mark_deleting(self.store().pool(), ctx.tenant(), name)
            .await?
            .ok_or_else(|| ServiceError::not_found("cluster", name))?;
        tracing::info!(cluster = %name, "cluster deletion requested");
        self.cluster_with_status(row).await
    }

    /// The config Drover renders for `machine` of `cluster`, redacted, with its diff against
    /// the applied one.
    pub async fn machine_config(
        &self,
        ctx: &RequestContext,
        cluster: &str,
        machine: &str,
    ) -> Result<MachineConfigView> {
        self.require_on_cluster(ctx, cluster, Role::Reader, "reading a machine config")
            .await?;
        let id = parse_machine_id(machine)?;
        let pool = self.store().pool();
        let row = clusters::get(pool, ctx.tenant(), cluster)
            .await?
            .ok_or_else(|| ServiceError::not_found("cluster", cluster))?;
        let member = cluster_machines::get(pool, ctx.tenant(), &id)
            .await?
            .filter(|m| m.cluster_name == cluster)
            .ok_or_else(|| ServiceError::not_found("machine of the cluster", &id))?;
        let machine_row = machines::get(pool, ctx.tenant(), &id)
            .await?
            .ok_or_else(|| ServiceError::not_found("machine", &id))?;
        let bundle = self.open_bundle(ctx.tenant(), cluster, row.uid).await?;
        let rendered = render_machine_config(&row, &bundle, &member, &machine_row)?;
        let redacted = rendered.redacted();
        let applied = member.applied_config.as_deref().unwrap_or_default();
        let up_to_date = member.applied_config_hash.as_deref() == Some(&rendered.sha256_hex());
        Ok(MachineConfigView {
            machine: id,
            cluster: cluster.to_owned(),
            diff: if up_to_date {
                String::new()
            } else {
                drover_config::diff(applied, &redacted)
            },
            redacted,
            up_to_date,
        })
    }

    async fn cluster_with_status(&self, row: ClusterRow) -> Result<Cluster> {
        let pool = self.store().pool();
        let tenant = row.tenant();
        let members = cluster_machines::list_for_cluster(pool, tenant, &row.name).await?;
        let machine_rows = machines::list_in_cluster(pool, tenant, &row.name).await?;
        let by_id: BTreeMap<&str, &MachineRow> =
            machine_rows.iter().map(|m| (m.id.as_str(), m)).collect();
        let machines: Vec<ClusterMachineStatus> = members
            .iter()
            .map(|m| {
                let observed = by_id.get(m.machine_id.as_str());
                let phase = parse_phase(&m.phase);
                ClusterMachineStatus {
                    id: MachineId::try_from(m.machine_id.clone())
                        .expect("stored machine ids are valid"),
                    machine_set: m.machine_set.clone(),
                    role: parse_role(&m.role),
                    phase,
                    stage: observed.and_then(|o| o.stage.clone()),
                    connected: observed.is_some_and(|o| o.connected),
                    ready: phase == ClusterMachinePhase::Running
                        && observed.is_some_and(|o| o.ready && o.connected),
                    config_up_to_date: phase == ClusterMachinePhase::Running
                        && m.applied_config_hash.is_some()
                        && m.applied_config_hash == m.desired_config_hash,
                    locked: row.spec.0.is_locked(&m.machine_id),
                    etcd_member_id: m.etcd_member_id.clone(),
                    last_error: m.last_error.clone(),
                }
            })
            .collect();
        let status = ClusterStatus {
            phase: parse_variant(&row.phase).unwrap_or(ClusterPhase::ScalingUp),
            ready: row.ready,
            machines_total: machines.len() as u32,
            machines_ready: machines.iter().filter(|m| m.ready).count() as u32,
            machines_missing: row.machines_missing.max(0) as u32,
            bootstrapped: row.bootstrapped_at.is_some(),
            etcd_members: row.etcd_members.max(0) as u32,
            kubernetes_api_ready: row.kubernetes_api_ready,
            control_plane_endpoint: row.control_plane_endpoint.clone(),
            last_error: row.last_error.clone(),
            tainted: self.cluster_taint(tenant, row.uid).await?,
            machines,
        };
        Ok(Cluster {
            spec: row.spec.0,
            status,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }

    async fn check_classes_exist(&self, ctx: &RequestContext, spec: &ClusterSpec) -> Result<()> {
        for (_, set) in spec.machine_sets() {
            if let Some(class) = &set.machine_class
                && machine_classes::get(self.store().pool(), ctx.tenant(), &class.name)
                    .await?
                    .is_none()
            {
                return Err(ServiceError::invalid(
                    "machineClass",
                    format!(
                        "machine set {:?} uses machine class {:?}, which does not exist",
                        set.name, class.name
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Applies the `labels` of the spec's per-machine settings to machines that exist.
    async fn set_cluster_machine_labels(
        &self,
        tx: &mut sqlx::PgConnection,
        ctx: &RequestContext,
        spec: &ClusterSpec,
    ) -> Result<()> {
        for m in spec.machines.iter().filter(|m| !m.labels.is_empty()) {
            if let Some(row) = machines::get(&mut *tx, ctx.tenant(), &m.id).await? {
                let mut merged = row.labels.0;
                merged.extend(m.labels.clone());
                machines::set_labels(&mut *tx, ctx.tenant(), &m.id, &merged).await?;
            }
        }
        Ok(())
    }
}

/// Versions are stored without a leading `v`; both spellings are accepted.
fn normalized(mut spec: ClusterSpec) -> ClusterSpec {
    for version in [&mut spec.talos_version, &mut spec.kubernetes_version] {
        if let Some(rest) = version.strip_prefix('v') {
            *version = rest.to_owned();
        }
    }
    spec
}

// ---- machine classes ----

impl Drover {
    pub async fn list_machine_classes(&self, ctx: &RequestContext) -> Result<Vec<MachineClass>> {
        ctx.require(Role::Reader, "listing machine classes")?;
        Ok(machine_classes::list(self.store().pool(), ctx.tenant())
            .await?
            .into_iter()
            .map(class_model)
            .collect())
    }

    pub async fn get_machine_class(
        &self,
        ctx: &RequestContext,
        name: &str,
    ) -> Result<MachineClass> {
        ctx.require(Role::Reader, "reading a machine class")?;
        machine_classes::get(self.store().pool(), ctx.tenant(), name)
            .await?
            .map(class_model)
            .ok_or_else(|| ServiceError::not_found("machine class", name))
    }

    /// Creates or replaces a machine class.
    pub async fn put_machine_class(
        &self,
        ctx: &RequestContext,
        spec: MachineClassSpec,
    ) -> Result<MachineClass> {
        let target = spec.name.clone();
        self.audited(
            ctx,
            "machineClass.put",
            &target,
            self.put_machine_class_unaudited(ctx, spec),
        )
        .await
    }

    async fn put_machine_class_unaudited(
        &self,
        ctx: &RequestContext,
        spec: MachineClassSpec,
    ) -> Result<MachineClass> {
        ctx.require(Role::Operator, "changing machine classes")?;
        crate::jointokens::validate_name(&spec.name)?;
        if spec.selectors.is_empty() {
            return Err(ServiceError::invalid(
                "selectors",
                "give at least one label selector, e.g. \"drover.dev/arch=amd64\"",
            ));
        }
        for selector in &spec.selectors {
            selector
                .parse::<LabelSelector>()
                .map_err(|e| ServiceError::invalid("selectors", e.to_string()))?;
        }
        let row = machine_classes::upsert(
            self.store().pool(),
            ctx.tenant(),
            &spec.name,
            &spec.selectors,
        )
        .await?;
        Ok(class_model(row))
    }

    /// Deletes a machine class no cluster uses.
    pub async fn delete_machine_class(&self, ctx: &RequestContext, name: &str) -> Result<()> {
        self.audited(
            ctx,
            "machineClass.delete",
            name,
            self.delete_machine_class_unaudited(ctx, name),
        )
        .await
    }

    async fn delete_machine_class_unaudited(&self, ctx: &RequestContext, name: &str) -> Result<()> {
        ctx.require(Role::Operator, "changing machine classes")?;
        for cluster in clusters::list(self.store().pool(), ctx.tenant()).await? {
            if cluster
                .spec
                .0
                .machine_sets()
                .any(|(_, set)| set.machine_class.as_ref().is_some_and(|c| c.name == name))
            {
                return Err(ServiceError::Conflict(format!(
                    "machine class {name:?} is used by cluster {:?}",
                    cluster.name
                )));
            }
        }
        if machine_classes::delete(self.store().pool(), ctx.tenant(), name).await? {
            Ok(())
        } else {
            Err(ServiceError::not_found("machine class", name))
        }
    }

    /// The machines a selector list matches (a class preview).
    pub async fn machines_matching(
        &self,
        ctx: &RequestContext,
        selectors: &[String],
    ) -> Result<Vec<Machine>> {
        ctx.require(Role::Reader, "listing machines")?;
        let selectors = parse_selectors(selectors)?;
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let rows =
                machines::list(self.store().pool(), ctx.tenant(), after.as_ref(), 1000).await?;
            let last = rows.last().map(|r| r.id.clone());
            out.extend(
                rows.into_iter()
                    .filter(|r| matches_any(&selectors, &machine_labels(r)))
                    .map(to_model),
            );
            match last {
                Some(id) => after = Some(MachineId::try_from(id).expect("stored ids are valid")),
                None => break,
            }
        }
        Ok(out)
    }
}

fn class_model(row: MachineClassRow) -> MachineClass {
    MachineClass {
        name: row.name,
        selectors: row.selectors.0,
        created_at: row.created_at,
        updated_at: row.updated_at,
    }
}

pub(crate) fn parse_selectors(selectors: &[String]) -> Result<Vec<LabelSelector>> {
    selectors
        .iter()
        .map(|s| {
            s.parse().map_err(|e: drover_model::SelectorError| {
                ServiceError::invalid("selectors", e.to_string())
            })
        })
        .collect()
}

pub(crate) fn matches_any(selectors: &[LabelSelector], labels: &BTreeMap<String, String>) -> bool {
    selectors.iter().any(|s| s.matches(labels))
}

// ---- machine labels and patches ----

impl Drover {
    /// Replaces a machine's user labels.
    pub async fn set_machine_labels(
        &self,
        ctx: &RequestContext,
        id: &str,
        labels: BTreeMap<String, String>,
    ) -> Result<Machine> {
        self.audited(
            ctx,
            "machine.setLabels",
            id,
            self.set_machine_labels_unaudited(ctx, id, labels),
        )
        .await
    }

    async fn set_machine_labels_unaudited(
        &self,
        ctx: &RequestContext,
        id: &str,
        labels: BTreeMap<String, String>,
    ) -> Result<Machine> {
        ctx.require(Role::Operator, "labelling a machine")?;
        let id = parse_machine_id(id)?;
        for (key, value) in &labels {
            labels::check_user_label(key, value)
                .map_err(|message| ServiceError::invalid("labels", message))?;
        }
        if !machines::set_labels(self.store().pool(), ctx.tenant(), &id, &labels).await? {
            return Err(ServiceError::not_found("machine", &id));
        }
        self.get_machine(ctx, id.as_str()).await
    }

    /// Replaces a machine's machine-scope config patches (the lowest precedence).
    /// Locks (or unlocks) a machine in its cluster's spec: a locked machine keeps its config and
    /// version until unlocked.
    pub async fn set_machine_locked(
        &self,
        ctx: &RequestContext,
        id: &str,
        locked: bool,
    ) -> Result<Cluster> {
        let machine = self.get_machine(ctx, id).await?;
        let cluster = machine.cluster.ok_or_else(|| {
            ServiceError::FailedPrecondition(format!(
                "machine {id} is in no cluster: only a cluster's machines can be locked"
            ))
        })?;
        let mut spec = self.get_cluster(ctx, &cluster).await?.spec;
        match spec.machines.iter_mut().find(|m| m.id == machine.id) {
            Some(entry) => entry.locked = locked,
            None if locked => spec.machines.push(drover_model::ClusterMachineSpec {
                id: machine.id.clone(),
                install_disk: None,
                patches: Vec::new(),
                labels: BTreeMap::new(),
                locked: true,
            }),
            None => return self.get_cluster(ctx, &cluster).await,
        }
        self.update_cluster(ctx, spec).await
    }

    pub async fn set_machine_patches(
        &self,
        ctx: &RequestContext,
        id: &str,
        patches: Vec<ConfigPatch>,
    ) -> Result<Machine> {
        self.audited(
            ctx,
            "machine.setPatches",
            id,
            self.set_machine_patches_unaudited(ctx, id, patches),
        )
        .await
    }

    async fn set_machine_patches_unaudited(
        &self,
        ctx: &RequestContext,
        id: &str,
        patches: Vec<ConfigPatch>,
    ) -> Result<Machine> {
        ctx.require(Role::Operator, "patching a machine")?;
        let id = parse_machine_id(id)?;
        let mut names = std::collections::HashSet::new();
        for p in &patches {
            if !names.insert(&p.name) {
                return Err(ServiceError::invalid(
                    "patches",
                    format!("two patches are named {:?}", p.name),
                ));
            }
            Patch::parse(&p.name, &p.content)
                .map_err(|e| ServiceError::invalid("patches", e.to_string()))?;
        }
        if !machines::set_patches(self.store().pool(), ctx.tenant(), &id, &patches).await? {
            return Err(ServiceError::not_found("machine", &id));
        }
        self.get_machine(ctx, id.as_str()).await
    }
}

/// A machine's labels: its user labels plus the automatic ones.
pub fn machine_labels(row: &MachineRow) -> BTreeMap<String, String> {
    let mut out = row.labels.0.clone();
    let facts: Option<drover_model::MachineFacts> = row
        .facts
        .clone()
        .and_then(|f| serde_json::from_value(f).ok());
    if let Some(facts) = facts {
        out.insert(automatic::ARCH.into(), facts.arch.clone());
        out.insert(automatic::PLATFORM.into(), facts.platform.clone());
        if let Some(cores) = facts.cores {
            out.insert(automatic::CORES.into(), cores.to_string());
        }
        if let Some(memory) = facts.memory_mib {
            out.insert(automatic::MEMORY_MIB.into(), memory.to_string());
        }
    }
    if row.connected {
        out.insert(automatic::CONNECTED.into(), String::new());
    }
    match &row.cluster {
        Some(cluster) => {
            out.insert(automatic::CLUSTER.into(), cluster.clone());
        }
        None => {
            out.insert(automatic::AVAILABLE.into(), String::new());
        }
    }
    out
}

pub(crate) fn parse_machine_id(id: &str) -> Result<MachineId> {
    id.parse()
        .map_err(|e: drover_model::InvalidId| ServiceError::invalid("id", e.to_string()))
}

pub fn parse_phase(text: &str) -> ClusterMachinePhase {
    parse_variant(text).unwrap_or(ClusterMachinePhase::Allocated)
}

pub fn parse_role(text: &str) -> MachineRole {
    parse_variant(text).unwrap_or(MachineRole::Worker)
}

/// The disk to install on: the spec's choice, else the system disk, else the first disk.
pub fn install_disk(spec: &ClusterSpec, machine: &MachineRow) -> String {
    let id = MachineId::try_from(machine.id.clone()).expect("stored ids are valid");
    if let Some(disk) = spec.machine(&id).and_then(|m| m.install_disk.clone()) {
        return disk;
    }
    let facts: Option<drover_model::MachineFacts> = machine
        .facts
        .clone()
        .and_then(|f| serde_json::from_value(f).ok());
    facts
        .and_then(|f| {
            f.disks
                .iter()
                .find(|d| d.system_disk)
                .or(f.disks.first())
                .map(|d| d.device_name.clone())
        })
        .map(|name| {
            if name.starts_with('/') {
                name
            } else {
                format!("/dev/{name}")
            }
        })
        .unwrap_or_else(|| "/dev/sda".to_owned())
}

/// Renders the config of one machine of a cluster from the stored spec, secrets and patches.
pub fn render_machine_config(
    cluster: &ClusterRow,
    bundle: &SecretsBundle,
    member: &ClusterMachineRow,
    machine: &MachineRow,
) -> Result<RenderedConfig> {
    let spec = &cluster.spec.0;
    let id = MachineId::try_from(machine.id.clone()).expect("stored ids are valid");
    let endpoint = cluster.control_plane_endpoint.clone().ok_or_else(|| {
        ServiceError::Conflict("the control-plane endpoint is not chosen yet".into())
    })?;
    let mut scoped = Vec::new();
    let mut add = |scope, list: &[ConfigPatch]| -> Result<()> {
        for p in list {
            scoped.push(ScopedPatch {
                scope,
                weight: p.weight,
                patch: Patch::parse(&p.name, &p.content)
                    .map_err(|e| ServiceError::invalid("patches", e.to_string()))?,
            });
        }
        Ok(())
    };
    add(Scope::Machine, &machine.patches.0)?;
    add(Scope::Cluster, &spec.patches)?;
    if let Some((_, set)) = spec.machine_set(&member.machine_set) {
        add(Scope::MachineSet, &set.patches)?;
    }
    if let Some(m) = spec.machine(&id) {
        add(Scope::ClusterMachine, &m.patches)?;
    }
    let patches: Vec<Patch> = drover_config::order(scoped)
        .into_iter()
        .map(|s| s.patch)
        .collect();
    let cert_sans = vec![machine.address.clone()];
    let install_disk = install_disk(spec, machine);
    let components = component_versions(member);
    drover_config::render(&RenderInput {
        cluster_name: &spec.name,
        talos_version: &spec.talos_version,
        kubernetes_version: &spec.kubernetes_version,
        role: parse_role(&member.role),
        secrets: bundle,
        control_plane_endpoint: &endpoint,
        install_disk: &install_disk,
        cert_sans: &cert_sans,
        patches: &patches,
        components: &components,
    })
    .map_err(|e| ServiceError::invalid("patches", e.to_string()))
}

/// The Kubernetes component versions configured on a machine that differ from its cluster's.
pub fn component_versions(member: &ClusterMachineRow) -> drover_config::ComponentVersions {
    serde_json::from_value(member.kubernetes_versions.clone()).unwrap_or_default()
}
