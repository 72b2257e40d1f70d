//! What `sync` changes: the differences between the current and the desired spec.

use std::collections::BTreeMap;
use std::fmt;

use drover_model::{
    CONTROL_PLANE_SET, ClusterMachineSpec, ClusterSpec, ConfigPatch, MachineId, MachineSetSpec,
    Strategy, StrategyKind,
};

/// What a change does (a CLI can mark additions and removals by it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Create,
    Add,
    Update,
    Remove,
    Lock,
    Unlock,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Create => "create",
            Self::Add => "add",
            Self::Update => "update",
            Self::Remove => "remove",
            Self::Lock => "lock",
            Self::Unlock => "unlock",
        })
    }
}

/// One change, displayed as `{action} {target}` or `{action} {target}: {detail}`, e.g.
/// `update cluster prod: kubernetesVersion 1.33.1 -> 1.34.0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub action: Action,
    /// What changes: `cluster prod`, `worker set gpu`, `control plane`, `machine X to worker set
    /// gpu`, `patch workers/gpu/drivers`, `machine X`.
    pub target: String,
    /// How it changes, e.g. `machineClass gpu, size 2 -> machineClass gpu, size 3`.
    pub detail: Option<String>,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.action, self.target)?;
        match &self.detail {
            Some(detail) => write!(f, ": {detail}"),
            None => Ok(()),
        }
    }
}

/// The changes that turn `current` (`None`: no such cluster yet) into `desired`; empty when they
/// are equal. Patches are named `{scope}/{name}` with scopes `cluster`, `control-planes`,
/// `workers/{set}` and `machines/{id}`.
pub fn diff(current: Option<&ClusterSpec>, desired: &ClusterSpec) -> Vec<Change> {
    let mut out = Changes(Vec::new());
    let cluster = format!("cluster {}", desired.name);
    let nothing = ClusterSpec {
        workers: Vec::new(),
        patches: Vec::new(),
        machines: Vec::new(),
        ..desired.clone()
    };
    let old = match current {
        Some(old) => {
            for (what, old, new) in [
                ("name ", &old.name, &desired.name),
                ("talosVersion ", &old.talos_version, &desired.talos_version),
                (
                    "kubernetesVersion ",
                    &old.kubernetes_version,
                    &desired.kubernetes_version,
                ),
            ] {
                out.update(&cluster, what, old, new);
            }
            old
        }
        None => {
            let (talos, kubernetes) = (&desired.talos_version, &desired.kubernetes_version);
            let versions = format!("Talos {talos}, Kubernetes {kubernetes}");
            out.push(Action::Create, &cluster, Some(versions));
            &nothing
        }
    };
    out.patches("cluster", &old.patches, &desired.patches);
    out.set(
        current.map(|c| &c.control_plane),
        Some(&desired.control_plane),
    );
    for set in &desired.workers {
        out.set(old.workers.iter().find(|o| o.name == set.name), Some(set));
    }
    for set in old
        .workers
        .iter()
        .filter(|o| desired.machine_set(&o.name).is_none())
    {
        out.set(Some(set), None);
    }
    let old_only = old
        .machines
        .iter()
        .filter(|o| desired.machine(&o.id).is_none());
    for id in desired.machines.iter().chain(old_only).map(|m| &m.id) {
        let settings = |spec: &ClusterSpec| {
            spec.machine(id)
                .cloned()
                .unwrap_or_else(|| ClusterMachineSpec {
                    id: id.clone(),
                    install_disk: None,
                    patches: Vec::new(),
                    labels: BTreeMap::new(),
                    locked: false,
                })
        };
        out.machine(&settings(old), &settings(desired));
    }
    out.0
}

struct Changes(Vec<Change>);

impl Changes {
    fn push(&mut self, action: Action, target: &str, detail: Option<String>) {
        let target = target.to_owned();
        self.0.push(Change {
            action,
            target,
            detail,
        });
    }

    /// An update `{what}{old} -> {new}` of `target`, if `old` and `new` differ.
    fn update(&mut self, target: &str, what: &str, old: &str, new: &str) {
        if old != new {
            self.push(
                Action::Update,
                target,
                Some(format!("{what}{old} -> {new}")),
            );
        }
    }

    fn set(&mut self, old: Option<&MachineSetSpec>, new: Option<&MachineSetSpec>) {
        let name = new.or(old).map_or("", |set| set.name.as_str());
        let (label, scope) = match name {
            CONTROL_PLANE_SET => ("control plane".to_owned(), CONTROL_PLANE_SET.to_owned()),
            name => (format!("worker set {name}"), format!("workers/{name}")),
        };
        let (label, scope) = (label.as_str(), scope.as_str());
        let blank;
        let (old, new) = match (old, new) {
            (None, Some(new)) => {
                self.push(Action::Add, label, Some(allocation(new)));
                // Then everything else about the new set, as changes from the defaults.
                blank = MachineSetSpec {
                    update_strategy: Strategy::default(),
                    delete_strategy: Strategy::default(),
                    patches: Vec::new(),
                    ..new.clone()
                };
                (&blank, new)
            }
            (Some(_), None) => return self.push(Action::Remove, label, None),
            (Some(old), Some(new)) => (old, new),
            (None, None) => return,
        };
        if old.machine_class.is_none() && new.machine_class.is_none() {
            for id in new.machines.iter().filter(|m| !old.machines.contains(m)) {
                self.push(Action::Add, &format!("machine {id} to {label}"), None);
            }
            for id in old.machines.iter().filter(|m| !new.machines.contains(m)) {
                self.push(Action::Remove, &format!("machine {id} from {label}"), None);
            }
        } else {
            self.update(label, "", &allocation(old), &allocation(new));
        }
        let strategies = |s: &MachineSetSpec| {
            [
                ("updateStrategy ", s.update_strategy),
                ("deleteStrategy ", s.delete_strategy),
            ]
        };
        for ((what, old), (_, new)) in strategies(old).into_iter().zip(strategies(new)) {
            self.update(label, what, &describe(&old), &describe(&new));
        }
        self.patches(scope, &old.patches, &new.patches);
    }

    fn patches(&mut self, scope: &str, old: &[ConfigPatch], new: &[ConfigPatch]) {
        let target = |p: &ConfigPatch| format!("patch {scope}/{}", p.name);
        for patch in new {
            match old.iter().find(|o| o.name == patch.name) {
                None => self.push(Action::Add, &target(patch), None),
                Some(o) if o != patch => {
                    let weight = format!("weight {} -> {}", o.weight, patch.weight);
                    let parts = [
                        (o.weight != patch.weight).then_some(weight.as_str()),
                        (o.content != patch.content).then_some("content changed"),
                    ];
                    let detail = parts.into_iter().flatten().collect::<Vec<_>>().join(", ");
                    self.push(Action::Update, &target(patch), Some(detail));
                }
                Some(_) => {}
            }
        }
        for patch in old.iter().filter(|o| !new.iter().any(|n| n.name == o.name)) {
            self.push(Action::Remove, &target(patch), None);
        }
    }

    fn machine(&mut self, old: &ClusterMachineSpec, new: &ClusterMachineSpec) {
        let target = format!("machine {}", new.id);
        if old.locked != new.locked {
            let action = if new.locked {
                Action::Lock
            } else {
                Action::Unlock
            };
            self.push(action, &target, None);
        }
        let disk = |m: &ClusterMachineSpec| m.install_disk.clone().unwrap_or("(default)".into());
        let labels = |m: &ClusterMachineSpec| {
            let pairs: Vec<_> = m.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("{{{}}}", pairs.join(", "))
        };
        for (what, old, new) in [
            ("installDisk ", disk(old), disk(new)),
            ("labels ", labels(old), labels(new)),
        ] {
            self.update(&target, what, &old, &new);
        }
        self.patches(&format!("machines/{}", new.id), &old.patches, &new.patches);
    }
}

fn allocation(set: &MachineSetSpec) -> String {
    match &set.machine_class {
        Some(class) => format!("machineClass {}, size {}", class.name, class.size),
        None if set.machines.is_empty() => "no machines".into(),
        None => {
            let ids: Vec<_> = set.machines.iter().map(MachineId::as_str).collect();
            format!("machines {}", ids.join(", "))
        }
    }
}

fn describe(strategy: &Strategy) -> String {
    match strategy.kind {
        StrategyKind::Rolling => format!("rolling (maxParallelism {})", strategy.max_parallelism),
        StrategyKind::Unset => "unset".into(),
    }
}

#[cfg(test)]
mod tests {
    use drover_model::ClassSize;

    use super::*;
    use crate::fixtures::{spec, yaml};

    fn lines(current: Option<&ClusterSpec>, desired: &ClusterSpec) -> Vec<String> {
        diff(current, desired)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn equal_specs_need_no_changes() {
        assert_eq!(diff(Some(&spec()), &spec()), []);
    }

    #[test]
    fn a_new_cluster_is_created_with_everything_in_it() {
        let expected = [
            "create cluster prod: Talos 1.13.0, Kubernetes 1.33.1",
            "add patch cluster/ntp",
            "add patch cluster/extra",
            "add control plane: machines m1, m2, m3",
            "add worker set gpu: machineClass gpu, size 2",
            "add patch workers/gpu/drivers",
            "update machine m1: installDisk (default) -> /dev/vda",
            "update machine m1: labels {} -> {zone=a}",
        ];
        assert_eq!(lines(None, &spec()), expected);
    }

    #[test]
    #[rustfmt::skip]
    fn each_kind_of_change_is_listed() {
        type Edit = fn(&mut ClusterSpec);
        let cases: &[(Edit, &[&str])] = &[
            (|s| s.kubernetes_version = "1.34.0".into(),
                &["update cluster prod: kubernetesVersion 1.33.1 -> 1.34.0"]),
            (|s| s.workers[0] = yaml("{ name: batch, machines: [w1], updateStrategy: { maxParallelism: 2 } }"), &[
                "add worker set batch: machines w1",
                "update worker set batch: updateStrategy rolling (maxParallelism 1) -> rolling (maxParallelism 2)",
                "remove worker set gpu",
            ]),
            (|s| s.control_plane.machines = yaml("[m1, m2, m4]"),
                &["add machine m4 to control plane", "remove machine m3 from control plane"]),
            (|s| s.workers[0].machine_class.as_mut().unwrap().size = ClassSize::Unlimited,
                &["update worker set gpu: machineClass gpu, size 2 -> machineClass gpu, size unlimited"]),
            (|s| s.control_plane.delete_strategy.max_parallelism = 2,
                &["update control plane: deleteStrategy rolling (maxParallelism 1) -> rolling (maxParallelism 2)"]),
            (|s| {
                s.patches[0].content = "machine: {}\n".into();
                s.patches[0].weight = 20;
                s.workers[0].patches = yaml("[{ name: extra, content: 'x: 1' }]");
            }, &[
                "update patch cluster/ntp: weight 10 -> 20, content changed",
                "add patch workers/gpu/extra",
                "remove patch workers/gpu/drivers",
            ]),
            (|s| s.machines[0].locked = true, &["lock machine m1"]),
            (|s| s.machines = yaml("[{ id: m2, locked: true, patches: [{ name: p, content: 'x: 1' }] }]"), &[
                "lock machine m2",
                "add patch machines/m2/p",
                "update machine m1: installDisk /dev/vda -> (default)",
                "update machine m1: labels {zone=a} -> {}",
            ]),
        ];
        for (edit, expected) in cases {
            let mut desired = spec();
            edit(&mut desired);
            assert_eq!(lines(Some(&spec()), &desired), *expected);
        }
        let mut locked = spec();
        locked.machines[0].locked = true;
        let unlock = Change {
            action: Action::Unlock,
            target: "machine m1".into(),
            detail: None,
        };
        assert_eq!(diff(Some(&locked), &spec()), [unlock]);
    }
}
