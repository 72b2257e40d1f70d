//! A Ready emulated cluster in a few lines.

use std::time::Duration;

use drover_emu::{CallLog, CancellationToken, Fleet, NodeHandle};
use drover_model::ClusterSpec;

use crate::{TestDrover, eventually, machines_where, spawn_fleet};

/// How long a cluster may take to become Ready.
const READY_LIMIT: Duration = Duration::from_secs(300);

/// A running emulated cluster: its machines, their call log, and the fleet's task.
pub struct ReadyCluster {
    pub nodes: Vec<NodeHandle>,
    pub calls: CallLog,
    pub cancel: CancellationToken,
    pub running: tokio::task::JoinHandle<Fleet>,
}

impl ReadyCluster {
    /// Stops the fleet.
    pub async fn stop(self) {
        self.cancel.cancel();
        let _ = self.running.await;
    }
}

/// A template for cluster `name`: explicit control planes and one worker set.
pub fn cluster_spec(
    name: &str,
    talos: &str,
    kubernetes: &str,
    control_planes: &[String],
    workers: &[String],
) -> ClusterSpec {
    let template = format!(
        "kind: Cluster\nname: {name}\ntalos: {{ version: v{talos} }}\nkubernetes: {{ version: v{kubernetes} }}\n---\nkind: ControlPlane\nmachines: [{}]\n---\nkind: Workers\nmachines: [{}]\nupdateStrategy: {{ type: rolling, maxParallelism: 1 }}\n",
        control_planes.join(", "),
        workers.join(", ")
    );
    drover_template::parse(&template, &|_| Err(String::new())).expect("a valid template")
}

/// A Ready cluster of `cps` control planes and `workers` workers on Talos `talos` and
/// Kubernetes `kubernetes` (versions without the `v`), from emulated machines whose installs,
/// reboots and upgrades take no time.
pub async fn ready_cluster(
    drover: &TestDrover,
    name: &str,
    talos: &str,
    kubernetes: &str,
    cps: usize,
    workers: usize,
) -> ReadyCluster {
    let token = drover.join_token(name).await;
    let mut config = drover.fleet_config(&token.secret, cps + workers, name, &format!("v{talos}"));
    config.lifecycle = drover_emu::Lifecycle::INSTANT;
    let fleet = Fleet::new(config);
    let nodes = fleet.nodes();
    let calls = fleet.clusters().calls().clone();
    let cancel = CancellationToken::new();
    let running = spawn_fleet(fleet, cancel.clone());
    let machines = machines_where(drover, "machines in maintenance", |all| {
        all.len() == cps + workers
            && all.iter().all(|m| {
                m.connected && m.facts.is_some() && m.stage.as_deref() == Some("maintenance")
            })
    })
    .await;
    let ids: Vec<String> = machines.iter().map(|m| m.id.to_string()).collect();
    drover
        .client()
        .create_cluster(&cluster_spec(
            name,
            talos,
            kubernetes,
            &ids[..cps],
            &ids[cps..],
        ))
        .await
        .expect("the cluster is created");
    eventually("cluster Ready", READY_LIMIT, || {
        let client = drover.client();
        async move {
            client
                .get_cluster(name)
                .await
                .ok()?
                .status
                .ready
                .then_some(())
        }
    })
    .await;
    ReadyCluster {
        nodes,
        calls,
        cancel,
        running,
    }
}
