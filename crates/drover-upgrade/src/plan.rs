//! The planner: intent + observed nodes -> the steps to start now ([`next`]) or the whole ordered
//! plan ([`plan`], what `--dry-run` prints).
//!
//! Nodes roll in stages, one stage at a time. Talos: the control planes, one at a time and each
//! only while etcd keeps quorum without it; then each worker set in turn. Kubernetes: on each
//! control plane in turn its API server, controller manager and scheduler; then the kubelets, the
//! control planes' one at a time, then each worker set in turn, and last the cluster's add-ons
//! (kube-proxy and CoreDNS, once, through the node that carries them; a downgrade runs the same
//! stages backwards, so no kubelet or component is ever newer than the API server). A worker set
//! upgrades `max_parallelism` machines at a time, less those that are not ready.

use std::collections::BTreeSet;
use std::fmt;

use drover_model::{MachineRole, Version};

use crate::Kind;

/// One step of one node's upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Step {
    /// The Talos upgrade call with the installer image, the reboot, and waiting until the node
    /// runs the new version and is ready.
    Talos,
    ApiServer,
    ControllerManager,
    Scheduler,
    Kubelet,
    /// The cluster's add-ons (kube-proxy, CoreDNS), once for the whole cluster.
    Addons,
}

const COMPONENTS: [Step; 3] = [Step::ApiServer, Step::ControllerManager, Step::Scheduler];

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Talos => "talos",
            Self::ApiServer => "kube-apiserver",
            Self::ControllerManager => "kube-controller-manager",
            Self::Scheduler => "kube-scheduler",
            Self::Kubelet => "kubelet",
            Self::Addons => "addons",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a node is in the current rollout (persisted by the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeProgress {
    /// Steps remain and none runs.
    Pending,
    /// `step` was started `since_secs` ago.
    InProgress { step: Step, since_secs: u64 },
    /// Every step of this node is finished: it is never started again in this rollout.
    Done,
    /// `step` failed: the rollout stops.
    Failed { step: Step, error: String },
}

/// A node as observed now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The machine id.
    pub id: String,
    pub hostname: String,
    /// The machine set the node belongs to.
    pub set: String,
    pub role: MachineRole,
    pub talos_version: Version,
    pub kubelet_version: Version,
    /// Control-plane components; `None` on workers or when not reported.
    pub apiserver: Option<Version>,
    pub controller_manager: Option<Version>,
    pub scheduler: Option<Version>,
    /// On the one node through which the cluster's add-ons are upgraded (a control plane): the
    /// Kubernetes version they belong to. `None` on every other node.
    pub addons: Option<Version>,
    pub ready: bool,
    /// Locked machines are left alone (and reported).
    pub locked: bool,
    pub progress: NodeProgress,
}

impl Node {
    /// The version `step` changes, as observed (`None` when unknown).
    fn current(&self, step: Step) -> Option<Version> {
        match step {
            Step::Talos => Some(self.talos_version),
            Step::ApiServer => self.apiserver,
            Step::ControllerManager => self.controller_manager,
            Step::Scheduler => self.scheduler,
            Step::Kubelet => Some(self.kubelet_version),
            Step::Addons => self.addons,
        }
    }

    fn in_flight(&self) -> Option<(Step, u64)> {
        match self.progress {
            NodeProgress::InProgress { step, since_secs } => Some((step, since_secs)),
            _ => None,
        }
    }

    /// This node's steps among `steps` still to run (none once Done).
    fn remaining(&self, steps: &[Step], target: Version) -> Vec<Step> {
        if self.progress == NodeProgress::Done {
            return Vec::new();
        }
        // A running step stays to do (whatever it reports meanwhile), and so do those after it.
        let running = self.in_flight().map(|(step, _)| step);
        let from = running.and_then(|r| steps.iter().position(|&s| s == r));
        (steps[from.unwrap_or(0)..].iter().copied())
            .filter(|&s| Some(s) == running || self.current(s) != Some(target))
            .collect()
    }

    fn is_cp(&self) -> bool {
        self.role == MachineRole::ControlPlane
    }
}

/// How one machine set rolls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetPolicy {
    pub name: String,
    pub role: MachineRole,
    /// Worker machines changed at once (0 counts as 1); control planes always go one at a time.
    pub max_parallelism: u32,
}

/// What the operator asked for, and the cluster-wide facts the planner needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    pub kind: Kind,
    pub target: Version,
    /// Worker sets roll in this order; sets not listed come after, by name, one machine at a time.
    pub sets: Vec<SetPolicy>,
    /// etcd members as observed now.
    pub etcd_members: u32,
    /// A step running longer than this blocks the rollout (a hung upgrade); `None`: no limit.
    pub step_timeout_secs: Option<u64>,
    pub paused: bool,
    pub cancelled: bool,
}

/// What to do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Start these steps (node id, step); steps already running go on.
    Start(Vec<(String, Step)>),
    /// Nothing can start yet.
    Wait {
        reason: String,
    },
    /// Every node is upgraded, except the locked ones listed (ids).
    Done {
        skipped: Vec<String>,
    },
    /// A step failed or hung: the rollout stops, nothing further starts.
    Blocked {
        node: String,
        step: Step,
        error: String,
    },
    /// Nothing new starts; running steps finish.
    Paused,
    Cancelled,
}

/// The progress a node gets when `step` finishes: Done when it was its last step.
pub fn progress_after(intent: &Intent, node: &Node, step: Step) -> NodeProgress {
    let others: Vec<Step> = (steps_of(intent.kind, node).into_iter())
        .filter(|&s| s != step)
        .collect();
    if node.remaining(&others, intent.target).is_empty() {
        NodeProgress::Done
    } else {
        NodeProgress::Pending
    }
}

fn steps_of(kind: Kind, node: &Node) -> Vec<Step> {
    let mut steps = match (kind, node.is_cp()) {
        (Kind::Talos, _) => vec![Step::Talos],
        (Kind::Kubernetes, true) => [&COMPONENTS[..], &[Step::Kubelet]].concat(),
        (Kind::Kubernetes, false) => vec![Step::Kubelet],
    };
    if kind == Kind::Kubernetes && node.addons.is_some() {
        steps.push(Step::Addons);
    }
    steps
}

/// Nodes rolled together: `parallelism` at a time, each through `steps` in order.
struct Stage<'a> {
    name: String,
    nodes: Vec<&'a Node>,
    parallelism: usize,
    steps: Vec<Step>,
    /// Talos control planes: each only while etcd keeps quorum without it.
    quorum: bool,
}

impl<'a> Stage<'a> {
    fn in_flight(&self) -> impl Iterator<Item = &'a Node> + '_ {
        self.nodes
            .iter()
            .copied()
            .filter(|n| n.in_flight().is_some_and(|(s, _)| self.steps.contains(&s)))
    }

    /// Nodes with steps here that may start (not locked, not running, not Done).
    fn candidates(&self, target: Version) -> impl Iterator<Item = (&'a Node, Step)> + '_ {
        self.nodes
            .iter()
            .copied()
            .filter(|n| !n.locked && n.in_flight().is_none())
            .filter_map(move |n| n.remaining(&self.steps, target).first().map(|&s| (n, s)))
    }

    fn complete(&self, target: Version) -> bool {
        self.in_flight().next().is_none() && self.candidates(target).next().is_none()
    }

    /// Why `candidate` may not go down now without etcd losing quorum.
    fn quorum_refusal(&self, candidate: &Node, etcd_members: u32) -> Option<String> {
        let unready: Vec<&str> = (self.nodes.iter())
            .filter(|n| n.id != candidate.id && (!n.ready || n.in_flight().is_some()))
            .map(|n| n.hostname.as_str())
            .collect();
        if etcd_members as usize != self.nodes.len() {
            Some(format!(
                "etcd reports {etcd_members} members but the cluster has {} control planes: control-plane upgrades wait until they match",
                self.nodes.len()
            ))
        } else if !unready.is_empty() {
            Some(format!(
                "{} waits: etcd would lose quorum without it while {} {} not ready",
                candidate.hostname,
                unready.join(", "),
                if unready.len() == 1 { "is" } else { "are" }
            ))
        } else {
            None
        }
    }
}

/// The stages of `intent`'s rollout, in order. Nodes are ordered by hostname within a stage.
fn stages<'a>(intent: &Intent, nodes: &'a [Node]) -> Vec<Stage<'a>> {
    let sorted = sorted(nodes);
    let cps: Vec<&Node> = sorted.iter().copied().filter(|n| n.is_cp()).collect();
    let addon_nodes: Vec<&Node> = (sorted.iter().copied())
        .filter(|n| n.addons.is_some())
        .collect();
    let mut set_names: Vec<&str> = (intent.sets.iter())
        .filter(|s| s.role == MachineRole::Worker)
        .map(|s| s.name.as_str())
        .collect();
    let others: BTreeSet<&str> = (sorted.iter())
        .filter(|n| !n.is_cp() && !set_names.contains(&n.set.as_str()))
        .map(|n| n.set.as_str())
        .collect();
    set_names.extend(others);
    let worker_stages = |step: Step| {
        set_names.iter().map(move |&name| Stage {
            name: format!("set {name}"),
            nodes: (sorted.iter().copied())
                .filter(|n| !n.is_cp() && n.set == name)
                .collect(),
            parallelism: (intent.sets.iter())
                .find(|s| s.name == name)
                .map_or(1, |s| s.max_parallelism.max(1) as usize),
            steps: vec![step],
            quorum: false,
        })
    };
    let cp_stage = |name: &str, steps: Vec<Step>, quorum| Stage {
        name: name.to_owned(),
        nodes: cps.clone(),
        parallelism: 1,
        steps,
        quorum,
    };
    match intent.kind {
        Kind::Talos => std::iter::once(cp_stage("control planes", vec![Step::Talos], true))
            .chain(worker_stages(Step::Talos))
            .collect(),
        Kind::Kubernetes => {
            let addons = Stage {
                name: "add-ons".to_owned(),
                nodes: addon_nodes,
                parallelism: 1,
                steps: vec![Step::Addons],
                quorum: false,
            };
            let mut stages: Vec<Stage> = [
                cp_stage("control-plane components", COMPONENTS.to_vec(), false),
                cp_stage("control-plane kubelets", vec![Step::Kubelet], false),
            ]
            .into_iter()
            .chain(worker_stages(Step::Kubelet))
            .chain([addons])
            .collect();
            let downgrade = nodes.iter().any(|n| {
                [Step::ApiServer, Step::Kubelet]
                    .iter()
                    .any(|&s| n.current(s).is_some_and(|v| v > intent.target))
            });
            if downgrade {
                stages.reverse();
                stages.iter_mut().for_each(|s| s.steps.reverse());
            }
            stages
        }
    }
}

fn sorted(nodes: &[Node]) -> Vec<&Node> {
    let mut sorted: Vec<&Node> = nodes.iter().collect();
    sorted.sort_by(|a, b| (&a.hostname, &a.id).cmp(&(&b.hostname, &b.id)));
    sorted
}

/// The next steps to start, given the intent and the nodes as observed now.
pub fn next(intent: &Intent, nodes: &[Node]) -> Decision {
    if intent.cancelled {
        return Decision::Cancelled;
    }
    let stages = stages(intent, nodes);
    let all = || stages.iter().flat_map(|s| s.nodes.iter().copied());
    if let Some(blocked) = all().find_map(|n| blocked(intent, n)) {
        return blocked;
    }
    let target = intent.target;
    let Some(stage) = stages.iter().find(|s| !s.complete(target)) else {
        let mut skipped: Vec<String> = Vec::new();
        for s in &stages {
            for n in s.nodes.iter().filter(|n| n.locked) {
                if !n.remaining(&s.steps, target).is_empty() && !skipped.contains(&n.id) {
                    skipped.push(n.id.clone());
                }
            }
        }
        return Decision::Done { skipped };
    };
    if intent.paused {
        return Decision::Paused;
    }

    // Never more at once than `parallelism`, nor more unavailable (running or not ready) nodes:
    // starting a node that is already not ready costs nothing on the second count.
    let mut running = stage.in_flight().count();
    let mut unavailable: BTreeSet<&str> = (stage.nodes.iter())
        .filter(|n| !n.ready || n.in_flight().is_some())
        .map(|n| n.id.as_str())
        .collect();
    let mut starts = Vec::new();
    let mut refusal = None;
    for (node, step) in stage.candidates(target) {
        if running >= stage.parallelism {
            break;
        }
        if stage.quorum
            && let Some(why) = stage.quorum_refusal(node, intent.etcd_members)
        {
            refusal.get_or_insert(why);
            continue;
        }
        let adds = !unavailable.contains(node.id.as_str());
        if adds && unavailable.len() >= stage.parallelism {
            refusal.get_or_insert_with(|| {
                let down: Vec<&str> = (stage.nodes.iter())
                    .filter(|n| unavailable.contains(n.id.as_str()))
                    .map(|n| n.hostname.as_str())
                    .collect();
                format!(
                    "{}: {} upgrading or not ready, {} at a time",
                    stage.name,
                    down.join(", "),
                    stage.parallelism
                )
            });
            continue;
        }
        starts.push((node.id.clone(), step));
        running += 1;
        unavailable.insert(&node.id);
    }
    if !starts.is_empty() {
        return Decision::Start(starts);
    }
    let running: Vec<String> = (all().filter_map(|n| n.in_flight().map(|f| (n, f))))
        .map(|(n, (step, secs))| format!("{} ({step}, {secs}s)", n.hostname))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let reason = if running.is_empty() {
        refusal.unwrap_or_else(|| format!("{}: nothing can start", stage.name))
    } else {
        format!("waiting for {}", running.join(", "))
    };
    Decision::Wait { reason }
}

/// A failed node, or one whose step runs past the timeout, stops the rollout.
fn blocked(intent: &Intent, node: &Node) -> Option<Decision> {
    let (step, error) = match node.progress {
        NodeProgress::Failed { step, ref error } => (step, error.clone()),
        NodeProgress::InProgress { step, since_secs } => {
            let limit = (intent.step_timeout_secs).filter(|&limit| since_secs > limit)?;
            (
                step,
                format!("timed out: {step} still running after {since_secs}s (limit {limit}s)"),
            )
        }
        _ => return None,
    };
    let node = node.id.clone();
    Some(Decision::Blocked { node, step, error })
}

/// One step of the plan. Steps with the same `order` may run at the same time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedStep {
    pub order: usize,
    pub node: String,
    pub hostname: String,
    pub set: String,
    pub role: MachineRole,
    pub step: Step,
    /// The version the node runs now (for an unreported component, its kubelet's).
    pub from: Version,
    pub to: Version,
}

/// The whole remaining rollout, node by node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub kind: Kind,
    pub target: Version,
    pub steps: Vec<PlannedStep>,
    /// Nodes no step touches: (node id, why, naming the hostname).
    pub skipped: Vec<(String, String)>,
    pub warnings: Vec<String>,
}

/// The whole ordered plan of what remains (`--dry-run`, status pages).
pub fn plan(intent: &Intent, nodes: &[Node]) -> Plan {
    let target = intent.target;
    let stages = stages(intent, nodes);
    let mut steps = Vec::new();
    let mut order = 0;
    for stage in &stages {
        let work: Vec<(&Node, Vec<Step>)> = (stage.nodes.iter())
            .filter(|n| !n.locked || n.in_flight().is_some())
            .map(|&n| (n, n.remaining(&stage.steps, target)))
            .filter(|(_, steps)| !steps.is_empty())
            .collect();
        for wave in work.chunks(stage.parallelism) {
            for &step in &stage.steps {
                let mut wave = wave.iter().filter(|(_, s)| s.contains(&step)).peekable();
                if wave.peek().is_some() {
                    order += 1;
                }
                steps.extend(wave.map(|(n, _)| PlannedStep {
                    order,
                    node: n.id.clone(),
                    hostname: n.hostname.clone(),
                    set: n.set.clone(),
                    role: n.role,
                    step,
                    from: n.current(step).unwrap_or(n.kubelet_version),
                    to: target,
                }));
            }
        }
    }

    let sorted = sorted(nodes);
    let skipped = (sorted.iter())
        .filter(|n| !steps.iter().any(|s| s.node == n.id))
        .map(|n| {
            let host = &n.hostname;
            let why = if n.locked && !n.remaining(&steps_of(intent.kind, n), target).is_empty() {
                format!("{host} is locked: left alone")
            } else if n.progress == NodeProgress::Done {
                format!("{host} is already upgraded in this rollout")
            } else {
                format!("{host} already runs {} {target}", intent.kind)
            };
            (n.id.clone(), why)
        })
        .collect();

    let mut warnings = Vec::new();
    let cps = sorted.iter().filter(|n| n.is_cp()).count();
    let cp_steps = steps
        .iter()
        .any(|s| s.step == Step::Talos && s.role == MachineRole::ControlPlane);
    if intent.kind == Kind::Talos && cp_steps {
        if cps < 3 {
            warnings.push(format!(
                "etcd has {cps} member{}: it loses quorum and the Kubernetes API is unavailable while each control plane upgrades",
                if cps == 1 { "" } else { "s" }
            ));
        }
        if intent.etcd_members as usize != cps {
            warnings.push(format!(
                "etcd reports {} members but the cluster has {cps} control planes: control-plane upgrades wait until they match",
                intent.etcd_members
            ));
        }
    }
    for n in sorted.iter().filter(|n| !n.ready) {
        warnings.push(format!(
            "{} is not ready: {}",
            n.hostname,
            if n.is_cp() {
                "the other control planes wait for it"
            } else {
                "its set upgrades one machine fewer at a time until it is"
            }
        ));
    }
    match next(intent, nodes) {
        Decision::Blocked { node, step, error } => {
            warnings.push(format!(
                "the rollout is stopped: {node} failed at {step}: {error}"
            ));
        }
        Decision::Paused => warnings.push("the rollout is paused".to_owned()),
        Decision::Cancelled => warnings.push("the rollout is cancelled".to_owned()),
        _ => {}
    }
    Plan {
        kind: intent.kind,
        target,
        steps,
        skipped,
        warnings,
    }
}

impl fmt::Display for Plan {
    /// A per-node table, then the skipped nodes and the warnings.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, target) = (self.kind, self.target);
        let nodes: BTreeSet<&str> = self.steps.iter().map(|s| s.node.as_str()).collect();
        if self.steps.is_empty() {
            writeln!(f, "{kind} upgrade to {target}: nothing to do")?;
        } else {
            let (steps, nodes) = (self.steps.len(), nodes.len());
            writeln!(
                f,
                "{kind} upgrade to {target}: {steps} steps on {nodes} nodes (steps with the same ORDER run together)"
            )?;
            let header = ["ORDER", "NODE", "SET", "ROLE", "STEP", "FROM", "TO"].map(String::from);
            let rows: Vec<[String; 7]> = std::iter::once(header)
                .chain(self.steps.iter().map(|s| {
                    [
                        s.order.to_string(),
                        s.hostname.clone(),
                        s.set.clone(),
                        s.role.as_str().to_owned(),
                        s.step.to_string(),
                        s.from.to_string(),
                        s.to.to_string(),
                    ]
                }))
                .collect();
            let widths: Vec<usize> = (0..7)
                .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
                .collect();
            for row in &rows {
                let line: Vec<String> = (row.iter().zip(&widths))
                    .map(|(cell, &w)| format!("{cell:<w$}"))
                    .collect();
                writeln!(f, "{}", line.join("  ").trim_end())?;
            }
        }
        let skipped = self
            .skipped
            .iter()
            .map(|(node, why)| format!("{why} (machine {node})"));
        for (title, lines) in [
            ("skipped", skipped.collect()),
            ("warnings", self.warnings.clone()),
        ] {
            if !lines.is_empty() {
                writeln!(f, "{title}:")?;
                lines.iter().try_for_each(|line| writeln!(f, "  {line}"))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
