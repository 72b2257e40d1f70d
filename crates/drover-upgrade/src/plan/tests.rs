use super::*;

fn v(s: &str) -> Version {
    s.parse().unwrap()
}

const K8S: &str = "1.33.0";

fn node(hostname: &str, set: &str, role: MachineRole) -> Node {
    let cp = (role == MachineRole::ControlPlane).then(|| v(K8S));
    Node {
        id: format!("m-{hostname}"),
        hostname: hostname.to_owned(),
        set: set.to_owned(),
        role,
        talos_version: v("1.12.0"),
        kubelet_version: v(K8S),
        apiserver: cp,
        controller_manager: cp,
        scheduler: cp,
        addons: None,
        ready: true,
        locked: false,
        progress: NodeProgress::Pending,
    }
}

/// Worker sets: (name, machines, maxParallelism); machines are named NAME-1...
type Sets<'a> = &'a [(&'a str, usize, u32)];

/// `cps` control planes cp-1.. and `sets`, with an intent to move them to `target`.
fn cluster(kind: Kind, target: &str, cps: usize, sets: Sets) -> (Intent, Vec<Node>) {
    let cp = MachineRole::ControlPlane;
    let mut nodes: Vec<Node> = (1..=cps)
        .map(|i| node(&format!("cp-{i}"), "control-planes", cp))
        .collect();
    if let Some(first) = nodes.first_mut() {
        first.addons = Some(v(K8S));
    }
    let mut policies = vec![SetPolicy {
        name: "control-planes".into(),
        role: cp,
        max_parallelism: 1,
    }];
    for &(set, count, max_parallelism) in sets {
        nodes.extend((1..=count).map(|i| node(&format!("{set}-{i}"), set, MachineRole::Worker)));
        let role = MachineRole::Worker;
        policies.push(SetPolicy {
            name: set.into(),
            role,
            max_parallelism,
        });
    }
    let intent = Intent {
        kind,
        target: v(target),
        sets: policies,
        etcd_members: cps as u32,
        step_timeout_secs: None,
        paused: false,
        cancelled: false,
    };
    (intent, nodes)
}

fn talos(cps: usize, sets: Sets) -> (Intent, Vec<Node>) {
    cluster(Kind::Talos, "1.13.0", cps, sets)
}

fn get<'a>(nodes: &'a mut [Node], host: &str) -> &'a mut Node {
    nodes.iter_mut().find(|n| n.hostname == host).unwrap()
}

/// Start `step` on the space-separated `hosts`.
fn start(step: Step, hosts: &str) -> Decision {
    Decision::Start(hosts.split(' ').map(|h| (format!("m-{h}"), step)).collect())
}

fn wait(reason: &str) -> Decision {
    Decision::Wait {
        reason: reason.into(),
    }
}

fn running(step: Step) -> NodeProgress {
    NodeProgress::InProgress {
        step,
        since_secs: 42,
    }
}

/// Marks the nodes that match upgraded to Talos `target`.
fn upgraded(nodes: &mut [Node], target: &str, which: impl Fn(&Node) -> bool) {
    for n in nodes.iter_mut().filter(|n| which(n)) {
        (n.talos_version, n.progress) = (v(target), NodeProgress::Done);
    }
}

#[test]
fn talos_control_planes_go_first_and_one_at_a_time() {
    let (intent, mut nodes) = talos(3, &[("w", 3, 2)]);
    assert_eq!(next(&intent, &nodes), start(Step::Talos, "cp-1"));
    let cp1 = get(&mut nodes, "cp-1");
    (cp1.progress, cp1.ready) = (running(Step::Talos), false);
    assert_eq!(next(&intent, &nodes), wait("waiting for cp-1 (talos, 42s)"));
    let cp1 = get(&mut nodes, "cp-1");
    (cp1.talos_version, cp1.ready) = (v("1.13.0"), true);
    cp1.progress = progress_after(&intent, cp1, Step::Talos);
    assert_eq!(cp1.progress, NodeProgress::Done);
    assert_eq!(next(&intent, &nodes), start(Step::Talos, "cp-2"));
}

#[test]
fn etcd_quorum_holds_control_planes_back() {
    let (mut intent, mut nodes) = talos(3, &[("w", 3, 2)]);
    // cp-2 is down: taking cp-1 or cp-3 would lose quorum; upgrading cp-2 itself would not.
    get(&mut nodes, "cp-2").ready = false;
    assert_eq!(next(&intent, &nodes), start(Step::Talos, "cp-2"));
    get(&mut nodes, "cp-2").locked = true;
    let reason = "cp-1 waits: etcd would lose quorum without it while cp-2 is not ready";
    assert_eq!(next(&intent, &nodes), wait(reason));
    // A member missing (or a stale one) holds them back too.
    get(&mut nodes, "cp-2").ready = true;
    intent.etcd_members = 2;
    let Decision::Wait { reason } = next(&intent, &nodes) else {
        panic!()
    };
    assert!(
        reason.starts_with("etcd reports 2 members but the cluster has 3"),
        "{reason}"
    );
}

#[test]
fn a_single_control_plane_upgrades_with_a_warning() {
    let (intent, nodes) = talos(1, &[]);
    assert_eq!(next(&intent, &nodes), start(Step::Talos, "cp-1"));
    let plan = plan(&intent, &nodes);
    assert!(
        plan.warnings[0].starts_with("etcd has 1 member: it loses quorum"),
        "{plan}"
    );
}

#[test]
fn workers_roll_max_parallelism_at_a_time_less_the_unready() {
    let (intent, mut nodes) = talos(3, &[("w", 5, 3)]);
    upgraded(&mut nodes, "1.13.0", Node::is_cp);
    assert_eq!(next(&intent, &nodes), start(Step::Talos, "w-1 w-2 w-3"));
    // w-5 is upgraded already but not ready: one fewer may go down.
    upgraded(&mut nodes, "1.13.0", |n| n.hostname == "w-5");
    get(&mut nodes, "w-5").ready = false;
    assert_eq!(next(&intent, &nodes), start(Step::Talos, "w-1 w-2"));
    // An unready machine that needs the upgrade is taken: it is down anyway.
    get(&mut nodes, "w-4").ready = false;
    assert_eq!(next(&intent, &nodes), start(Step::Talos, "w-1 w-4"));
    get(&mut nodes, "w-1").progress = running(Step::Talos);
    assert_eq!(next(&intent, &nodes), start(Step::Talos, "w-4"));
    get(&mut nodes, "w-4").progress = running(Step::Talos);
    let reason = "waiting for w-1 (talos, 42s), w-4 (talos, 42s)";
    assert_eq!(next(&intent, &nodes), wait(reason));
    // A locked machine that is down counts too.
    let (intent, mut nodes) = talos(1, &[("w", 2, 1)]);
    upgraded(&mut nodes, "1.13.0", Node::is_cp);
    let w1 = get(&mut nodes, "w-1");
    (w1.locked, w1.ready) = (true, false);
    let reason = "set w: w-1 upgrading or not ready, 1 at a time";
    assert_eq!(next(&intent, &nodes), wait(reason));
}

#[test]
fn worker_sets_roll_in_turn() {
    let (intent, mut nodes) = talos(1, &[("b", 2, 5), ("a", 2, 5)]);
    upgraded(&mut nodes, "1.13.0", Node::is_cp);
    assert_eq!(next(&intent, &nodes), start(Step::Talos, "b-1 b-2"));
}

#[test]
fn locked_machines_are_skipped_and_reported() {
    let (intent, mut nodes) = talos(1, &[("w", 2, 1)]);
    get(&mut nodes, "w-1").locked = true;
    let plan = plan(&intent, &nodes);
    assert_eq!(
        plan.skipped,
        [("m-w-1".into(), "w-1 is locked: left alone".into())]
    );
    assert!(!plan.steps.iter().any(|s| s.node == "m-w-1"));
    upgraded(&mut nodes, "1.13.0", |n| !n.locked);
    let skipped = vec!["m-w-1".to_owned()];
    assert_eq!(next(&intent, &nodes), Decision::Done { skipped });
}

#[test]
fn done_nodes_are_never_started_again() {
    let (intent, mut nodes) = talos(3, &[("w", 3, 2)]);
    // cp-1 finished before a restart but reports the old version (stale, or it fell back, which
    // the caller detects): it must not be upgraded a second time, however often we ask.
    get(&mut nodes, "cp-1").progress = NodeProgress::Done;
    for _ in 0..2 {
        assert_eq!(next(&intent, &nodes), start(Step::Talos, "cp-2"));
    }
    // A node already on the target is not upgraded either.
    get(&mut nodes, "cp-2").talos_version = v("1.13.0");
    assert_eq!(next(&intent, &nodes), start(Step::Talos, "cp-3"));
}

#[test]
fn a_failed_or_hung_node_blocks_everything() {
    let (mut intent, mut nodes) = talos(3, &[("w", 3, 2)]);
    upgraded(&mut nodes, "1.13.0", Node::is_cp);
    let (step, error) = (Step::Talos, "booted back into 1.12.0".to_owned());
    get(&mut nodes, "w-2").progress = NodeProgress::Failed {
        step,
        error: error.clone(),
    };
    let blocked = Decision::Blocked {
        node: "m-w-2".into(),
        step,
        error,
    };
    assert_eq!(next(&intent, &nodes), blocked);
    let plan = plan(&intent, &nodes);
    let stopped = "the rollout is stopped: m-w-2 failed at talos: booted back into 1.12.0";
    assert!(plan.warnings.iter().any(|w| w == stopped), "{plan}");
    intent.paused = true;
    assert_eq!(next(&intent, &nodes), blocked);

    let (mut intent, mut nodes) = talos(3, &[("w", 3, 2)]);
    get(&mut nodes, "cp-1").progress = running(Step::Talos);
    intent.step_timeout_secs = Some(600);
    assert!(matches!(next(&intent, &nodes), Decision::Wait { .. }));
    intent.step_timeout_secs = Some(30);
    let error = "timed out: talos still running after 42s (limit 30s)".into();
    assert_eq!(
        next(&intent, &nodes),
        Decision::Blocked {
            node: "m-cp-1".into(),
            step,
            error
        }
    );
}

#[test]
fn pause_and_cancel() {
    let (mut intent, mut nodes) = talos(3, &[("w", 3, 2)]);
    get(&mut nodes, "cp-1").progress = running(Step::Talos);
    intent.paused = true;
    assert_eq!(next(&intent, &nodes), Decision::Paused);
    assert!(
        plan(&intent, &nodes)
            .warnings
            .contains(&"the rollout is paused".into())
    );
    intent.cancelled = true;
    assert_eq!(next(&intent, &nodes), Decision::Cancelled);
    // Paused with nothing left is simply done.
    intent.cancelled = false;
    upgraded(&mut nodes, "1.13.0", |_| true);
    assert_eq!(next(&intent, &nodes), Decision::Done { skipped: vec![] });
}

/// The steps a whole simulated rollout starts, as "HOST STEP".
fn rollout(intent: &Intent, nodes: Vec<Node>) -> Vec<String> {
    let log = simulate(intent, nodes);
    log.iter()
        .map(|(id, step)| format!("{} {step}", &id[2..]))
        .collect()
}

#[test]
fn kubernetes_components_per_control_plane_then_kubelets() {
    let (intent, nodes) = cluster(Kind::Kubernetes, "1.34.0", 2, &[("w", 2, 2)]);
    let want = "cp-1 kube-apiserver, cp-1 kube-controller-manager, cp-1 kube-scheduler, \
        cp-2 kube-apiserver, cp-2 kube-controller-manager, cp-2 kube-scheduler, \
        cp-1 kubelet, cp-2 kubelet, w-1 kubelet, w-2 kubelet, cp-1 addons";
    assert_eq!(rollout(&intent, nodes).join(", "), want);
}

#[test]
fn kubernetes_skips_components_already_at_target() {
    let (intent, mut nodes) = cluster(Kind::Kubernetes, "1.34.0", 2, &[("w", 1, 1)]);
    get(&mut nodes, "cp-1").apiserver = Some(v("1.34.0"));
    assert_eq!(
        next(&intent, &nodes),
        start(Step::ControllerManager, "cp-1")
    );
    let cp1 = get(&mut nodes, "cp-1");
    (cp1.controller_manager, cp1.scheduler) = (Some(v("1.34.0")), Some(v("1.34.0")));
    cp1.kubelet_version = v("1.34.0");
    assert_eq!(next(&intent, &nodes), start(Step::ApiServer, "cp-2"));
    // A node is done once its last remaining step is.
    let after = |nodes: &mut [Node], host, step| progress_after(&intent, get(nodes, host), step);
    assert_eq!(after(&mut nodes, "w-1", Step::Kubelet), NodeProgress::Done);
    assert_eq!(
        after(&mut nodes, "cp-2", Step::ApiServer),
        NodeProgress::Pending
    );
}

#[test]
fn kubernetes_rollback_runs_backwards() {
    let (intent, nodes) = cluster(Kind::Kubernetes, "1.32.4", 1, &[("w", 1, 1)]);
    let want = "cp-1 addons, w-1 kubelet, cp-1 kubelet, \
        cp-1 kube-scheduler, cp-1 kube-controller-manager, cp-1 kube-apiserver";
    assert_eq!(rollout(&intent, nodes).join(", "), want);
}

#[test]
fn plan_prints_a_per_node_table() {
    let (intent, mut nodes) = talos(3, &[("w", 3, 2)]);
    get(&mut nodes, "w-3").locked = true;
    get(&mut nodes, "w-2").ready = false;
    let table = plan(&intent, &nodes);
    let orders: Vec<String> = (table.steps.iter())
        .map(|s| format!("{} {}", s.order, s.hostname))
        .collect();
    assert_eq!(orders, ["1 cp-1", "2 cp-2", "3 cp-3", "4 w-1", "4 w-2"]);
    let text = table.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[..3],
        [
            "Talos upgrade to 1.13.0: 5 steps on 5 nodes (steps with the same ORDER run together)",
            "ORDER  NODE  SET             ROLE          STEP   FROM    TO",
            "1      cp-1  control-planes  controlplane  talos  1.12.0  1.13.0",
        ]
    );
    for line in [
        "4      w-2   w               worker        talos  1.12.0  1.13.0",
        "skipped:",
        "  w-3 is locked: left alone (machine m-w-3)",
        "warnings:",
        "  w-2 is not ready: its set upgrades one machine fewer at a time until it is",
    ] {
        assert!(lines.contains(&line), "{line:?} missing from:\n{text}");
    }

    let (intent, nodes) = cluster(Kind::Talos, "1.12.0", 1, &[]);
    let done = plan(&intent, &nodes).to_string();
    let want = "Talos upgrade to 1.12.0: nothing to do\nskipped:\n  cp-1 already runs Talos 1.12.0";
    assert!(done.starts_with(want), "{done}");
}

#[test]
fn kubernetes_plan_lists_each_component() {
    let (intent, nodes) = cluster(Kind::Kubernetes, "1.34.0", 1, &[("w", 2, 2)]);
    let plan = plan(&intent, &nodes);
    let steps: Vec<String> = (plan.steps.iter())
        .map(|s| format!("{} {} {}", s.order, s.hostname, s.step))
        .collect();
    let want = "1 cp-1 kube-apiserver, 2 cp-1 kube-controller-manager, 3 cp-1 kube-scheduler, \
        4 cp-1 kubelet, 5 w-1 kubelet, 5 w-2 kubelet, 6 cp-1 addons";
    assert_eq!(steps.join(", "), want);
    assert!(plan.warnings.is_empty(), "{plan}");
}

/// Runs a rollout to the end: starts what `next` says, finishes the oldest running step whenever
/// it says to wait, and checks at every start that only one stage runs, at most one control plane,
/// and no set has more machines down than its maxParallelism. Returns the steps started.
fn simulate(intent: &Intent, mut nodes: Vec<Node>) -> Vec<(String, Step)> {
    let target = intent.target;
    let position = |set: &str| intent.sets.iter().position(|s| s.name == set).unwrap();
    let rank = |step| match step {
        Step::Kubelet => 1,
        Step::Addons => 2,
        _ => 0,
    };
    let stage = |n: &Node, step| (rank(step), position(&n.set));
    let mut log: Vec<(String, Step)> = Vec::new();
    let mut in_flight: Vec<(String, Step)> = Vec::new();
    for _ in 0..10_000 {
        match next(intent, &nodes) {
            Decision::Start(starts) => {
                for (id, step) in starts {
                    let n = nodes.iter_mut().find(|n| n.id == id).unwrap();
                    assert_eq!(n.progress, NodeProgress::Pending, "{id} started twice");
                    assert!(!n.locked, "locked {id} started");
                    n.progress = running(step);
                    n.ready &= step != Step::Talos;
                    log.push((id.clone(), step));
                    in_flight.push((id, step));
                }
                let find = |id: &str| nodes.iter().find(|n| n.id == id).unwrap();
                let stages: BTreeSet<_> = in_flight
                    .iter()
                    .map(|(id, s)| stage(find(id), *s))
                    .collect();
                assert_eq!(stages.len(), 1, "two stages at once: {in_flight:?}");
                let cps = in_flight.iter().filter(|(id, _)| find(id).is_cp()).count();
                assert!(cps <= 1, "two control planes at once: {in_flight:?}");
                for set in &intent.sets {
                    let down = (nodes.iter().filter(|n| n.set == set.name))
                        .filter(|n| !n.ready || n.in_flight().is_some())
                        .count();
                    assert!(
                        down <= set.max_parallelism as usize,
                        "{}: {down} down",
                        set.name
                    );
                }
            }
            Decision::Wait { reason } => {
                assert!(!in_flight.is_empty(), "stuck: {reason}");
                let (id, step) = in_flight.remove(0);
                let n = nodes.iter_mut().find(|n| n.id == id).unwrap();
                match step {
                    Step::Talos => n.talos_version = target,
                    Step::ApiServer => n.apiserver = Some(target),
                    Step::ControllerManager => n.controller_manager = Some(target),
                    Step::Scheduler => n.scheduler = Some(target),
                    Step::Kubelet => n.kubelet_version = target,
                    Step::Addons => n.addons = Some(target),
                }
                n.ready = true;
                n.progress = progress_after(intent, n, step);
            }
            Decision::Done { skipped } => {
                assert!(in_flight.is_empty());
                for n in &nodes {
                    let count =
                        |&step: &Step| log.iter().filter(|e| e.0 == n.id && e.1 == step).count();
                    let once = steps_of(intent.kind, n).iter().all(|s| count(s) == 1);
                    assert_eq!(once, !n.locked, "{} upgraded {log:?}", n.id);
                    assert_eq!(n.locked, skipped.contains(&n.id));
                    assert_eq!(n.progress == NodeProgress::Done, !n.locked);
                }
                // Stages never come back: control planes, then each set in turn (Kubernetes:
                // components, then kubelets).
                let stages: Vec<_> = log
                    .iter()
                    .map(|(id, s)| stage(nodes.iter().find(|n| &n.id == id).unwrap(), *s))
                    .collect();
                if intent.kind == Kind::Talos || target > v(K8S) {
                    assert!(stages.is_sorted(), "{log:?}");
                }
                return log;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    panic!("the rollout did not terminate");
}

#[test]
fn whole_rollouts_terminate_with_each_node_upgraded_once() {
    let shapes: [(usize, Sets); 4] = [
        (1, &[]),
        (3, &[("w", 3, 1)]),
        (3, &[("w", 10, 3)]),
        (3, &[("big", 7, 4), ("gpu", 2, 1)]),
    ];
    for (cps, sets) in shapes {
        for (kind, target) in [(Kind::Talos, "1.13.0"), (Kind::Kubernetes, "1.34.0")] {
            let (intent, mut nodes) = cluster(kind, target, cps, sets);
            if nodes.len() > 5 {
                nodes[4].locked = true;
                nodes[5].ready = false;
            }
            simulate(&intent, nodes);
        }
    }
}
