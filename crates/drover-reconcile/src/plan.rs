//! The pure part of reconciling a cluster: which machines to take and which to let go, from
//! the spec, the current members and the machines in the pool.

use std::collections::{BTreeMap, HashMap};

use drover_model::{
    ClassSize, ClusterMachinePhase, ClusterSpec, LabelSelector, MachineId, MachineRole,
};

/// A machine of the cluster, as the reconciler sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub id: MachineId,
    pub set: String,
    pub role: MachineRole,
    pub phase: ClusterMachinePhase,
}

impl Member {
    /// On its way out (etcd member removal or reset under way).
    pub fn leaving(&self) -> bool {
        matches!(
            self.phase,
            ClusterMachinePhase::Leaving | ClusterMachinePhase::Resetting
        )
    }
}

/// A machine in no cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub id: MachineId,
    pub labels: BTreeMap<String, String>,
    pub connected: bool,
}

/// What to change about membership.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Membership {
    /// Machines to take: (machine, set, role).
    pub allocate: Vec<(MachineId, String, MachineRole)>,
    /// Members to let go (they leave etcd if needed, are reset, and return to the pool).
    pub remove: Vec<MachineId>,
    /// Machines the spec asks for that cannot be had now.
    pub missing: u32,
}

/// Decides membership changes. Explicit machines are taken when they are in the pool
/// (connected or not); class allocations take connected pool machines that match the class, in
/// id order. Surplus class members are let go highest id first; members of sets that no longer
/// exist, or no longer listed, are let go.
pub fn membership(
    spec: &ClusterSpec,
    classes: &HashMap<String, Vec<LabelSelector>>,
    members: &[Member],
    pool: &[Candidate],
) -> Membership {
    let mut out = Membership::default();
    let mut taken: Vec<&MachineId> = Vec::new();
    for (role, set) in spec.machine_sets() {
        let mut current: Vec<&Member> = members
            .iter()
            .filter(|m| m.set == set.name && !m.leaving())
            .collect();
        current.sort_by(|a, b| a.id.cmp(&b.id));
        let free = |id: &MachineId, taken: &[&MachineId]| {
            pool.iter().find(|c| &c.id == id && !taken.contains(&id))
        };
        if let Some(class) = &set.machine_class {
            let selectors = classes.get(&class.name).map(Vec::as_slice).unwrap_or(&[]);
            let want = match class.size {
                ClassSize::Count(n) => n as usize,
                ClassSize::Unlimited => usize::MAX,
            };
            if current.len() > want {
                out.remove
                    .extend(current[want..].iter().rev().map(|m| m.id.clone()));
                continue;
            }
            let mut need = want - current.len();
            for candidate in pool {
                if need == 0 {
                    break;
                }
                if candidate.connected
                    && !taken.contains(&&candidate.id)
                    && selectors.iter().any(|s| s.matches(&candidate.labels))
                {
                    taken.push(&candidate.id);
                    out.allocate
                        .push((candidate.id.clone(), set.name.clone(), role));
                    need -= 1;
                }
            }
            if want != usize::MAX {
                out.missing += need as u32;
            }
        } else {
            for id in &set.machines {
                if current.iter().any(|m| &m.id == id) {
                    continue;
                }
                match free(id, &taken) {
                    Some(c) => {
                        taken.push(&c.id);
                        out.allocate.push((id.clone(), set.name.clone(), role));
                    }
                    None => out.missing += 1,
                }
            }
            out.remove.extend(
                current
                    .iter()
                    .filter(|m| !set.machines.contains(&m.id))
                    .map(|m| m.id.clone()),
            );
        }
    }
    // Members of sets that are gone.
    out.remove.extend(
        members
            .iter()
            .filter(|m| !m.leaving() && spec.machine_set(&m.set).is_none())
            .map(|m| m.id.clone()),
    );
    out
}

/// Whether the control plane `leaving` may leave etcd now: no other control plane is leaving,
/// and the members that stay, all healthy, keep a quorum of the shrunk cluster.
pub fn control_plane_may_leave(
    leaving: &MachineId,
    members: &[Member],
    healthy: &dyn Fn(&MachineId) -> bool,
) -> bool {
    let control_planes: Vec<&Member> = members
        .iter()
        .filter(|m| m.role == MachineRole::ControlPlane)
        .collect();
    if control_planes
        .iter()
        .any(|m| &m.id != leaving && m.leaving())
    {
        return false;
    }
    let staying: Vec<&&Member> = control_planes.iter().filter(|m| &m.id != leaving).collect();
    if staying.is_empty() {
        return false;
    }
    let healthy_staying = staying.iter().filter(|m| healthy(&m.id)).count();
    healthy_staying == staying.len() && healthy_staying > staying.len() / 2
}

#[cfg(test)]
mod tests {
    use drover_model::{MachineClassAllocation, MachineSetSpec, Strategy};

    use super::*;

    fn id(s: &str) -> MachineId {
        s.parse().unwrap()
    }

    fn set(name: &str, machines: &[&str], class: Option<(&str, ClassSize)>) -> MachineSetSpec {
        MachineSetSpec {
            name: name.into(),
            machines: machines.iter().map(|m| id(m)).collect(),
            machine_class: class.map(|(name, size)| MachineClassAllocation {
                name: name.into(),
                size,
            }),
            update_strategy: Strategy::default(),
            delete_strategy: Strategy::default(),
            patches: vec![],
        }
    }

    fn spec(cp: MachineSetSpec, workers: Vec<MachineSetSpec>) -> ClusterSpec {
        ClusterSpec {
            name: "c".into(),
            talos_version: "1.13.0".into(),
            kubernetes_version: "1.33.0".into(),
            control_plane: cp,
            workers,
            patches: vec![],
            machines: vec![],
        }
    }

    fn member(m: &str, set: &str, phase: ClusterMachinePhase) -> Member {
        Member {
            id: id(m),
            set: set.into(),
            role: if set == "control-planes" {
                MachineRole::ControlPlane
            } else {
                MachineRole::Worker
            },
            phase,
        }
    }

    fn candidate(m: &str, labels: &[(&str, &str)], connected: bool) -> Candidate {
        Candidate {
            id: id(m),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            connected,
        }
    }

    fn classes() -> HashMap<String, Vec<LabelSelector>> {
        HashMap::from([("big".to_string(), vec!["size=big".parse().unwrap()])])
    }

    #[test]
    fn explicit_machines_are_taken_from_the_pool_and_missing_ones_counted() {
        let s = spec(
            set("control-planes", &["a", "b"], None),
            vec![set("w", &["c"], None)],
        );
        let pool = [candidate("a", &[], true), candidate("c", &[], false)];
        let plan = membership(&s, &classes(), &[], &pool);
        assert_eq!(
            plan.allocate,
            vec![
                (id("a"), "control-planes".into(), MachineRole::ControlPlane),
                (id("c"), "w".into(), MachineRole::Worker)
            ]
        );
        assert_eq!(plan.missing, 1, "b is not in the pool");
        assert!(plan.remove.is_empty());
    }

    #[test]
    fn classes_take_connected_matches_up_to_their_size() {
        let s = spec(
            set("control-planes", &["a"], None),
            vec![set("w", &[], Some(("big", ClassSize::Count(2))))],
        );
        let pool = [
            candidate("x", &[("size", "big")], true),
            candidate("y", &[("size", "small")], true),
            candidate("z", &[("size", "big")], false),
            candidate("zz", &[("size", "big")], true),
        ];
        let members = [member("a", "control-planes", ClusterMachinePhase::Running)];
        let plan = membership(&s, &classes(), &members, &pool);
        assert_eq!(
            plan.allocate,
            vec![
                (id("x"), "w".into(), MachineRole::Worker),
                (id("zz"), "w".into(), MachineRole::Worker)
            ]
        );
        assert_eq!(plan.missing, 0);
        let unlimited = spec(
            set("control-planes", &["a"], None),
            vec![set("w", &[], Some(("big", ClassSize::Unlimited)))],
        );
        assert_eq!(
            membership(&unlimited, &classes(), &members, &pool)
                .allocate
                .len(),
            2
        );
    }

    #[test]
    fn surplus_and_unlisted_members_are_let_go() {
        let s = spec(
            set("control-planes", &["a"], None),
            vec![set("w", &[], Some(("big", ClassSize::Count(1))))],
        );
        let members = [
            member("a", "control-planes", ClusterMachinePhase::Running),
            member("b", "control-planes", ClusterMachinePhase::Running),
            member("w1", "w", ClusterMachinePhase::Running),
            member("w2", "w", ClusterMachinePhase::Running),
            member("w3", "w", ClusterMachinePhase::Resetting),
            member("g1", "gone", ClusterMachinePhase::Running),
        ];
        let plan = membership(&s, &classes(), &members, &[]);
        assert_eq!(plan.remove, vec![id("b"), id("w2"), id("g1")]);
        assert!(plan.allocate.is_empty());
    }

    #[test]
    fn a_control_plane_leaves_only_with_quorum_kept_and_one_at_a_time() {
        let running = |m| member(m, "control-planes", ClusterMachinePhase::Running);
        let three = [running("a"), running("b"), running("c")];
        let all_healthy = |_: &MachineId| true;
        assert!(control_plane_may_leave(&id("a"), &three, &all_healthy));
        let b_down = |m: &MachineId| m != &id("b");
        assert!(!control_plane_may_leave(&id("a"), &three, &b_down));
        let mut one_leaving = three.clone();
        one_leaving[1].phase = ClusterMachinePhase::Leaving;
        assert!(!control_plane_may_leave(
            &id("a"),
            &one_leaving,
            &all_healthy
        ));
        assert!(!control_plane_may_leave(
            &id("a"),
            &[running("a")],
            &all_healthy
        ));
    }
}
