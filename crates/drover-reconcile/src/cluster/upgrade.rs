//! Rolling a cluster's upgrade, one persisted node step at a time.
//!
//! Before a node's step starts it is recorded `inProgress`, and a recorded step is never
//! started again, so a restarted droverd waits for the node instead of repeating the step.
//!
//! - Talos: the upgrade call with the target's installer image; the step is done once the node
//!   runs the target version, ready. A node that comes back (it provisioned again after the
//!   call) running the old version fell back to its previous image: the rollout stops there.
//! - Kubernetes: the step's component is configured at the target version on that machine
//!   (`cluster_machines.kubernetes_versions`), the changed config is applied by the member
//!   step without a reboot, and the step is done once the Kubernetes API shows the component
//!   at the target version, ready (the node's kubelet, or the control plane's static pod).
//! - Kubernetes add-ons, last (first in a downgrade): kube-proxy and CoreDNS are configured at
//!   the target on every machine, and, since Talos creates its bootstrap manifests once and
//!   never updates them, Drover patches the `kube-proxy` DaemonSet and the `coredns` Deployment
//!   through the Kubernetes API (again each round until done: the patch is idempotent). The
//!   step is done once every kube-proxy and CoreDNS pod runs the new image, ready.

use drover_model::{MachineId, UpgradeState};
use drover_service::upgrades::{
    intent, kind_of, planner_nodes, record_event, state, step_components, step_named,
};
use drover_store::cluster_machines;
use drover_store::machines::MachineRow;
use drover_store::upgrades::{self, NodeRow, UpgradeRow};
use drover_talos::client;
use drover_upgrade::{Decision, Kind, Step};
use serde_json::Value;

use super::{Error, Round, machine_id};

impl Round<'_> {
    /// The cluster's newest upgrade, if it was ever upgraded.
    pub(super) async fn latest_upgrade(&self) -> Result<Option<UpgradeRow>, Error> {
        Ok(upgrades::latest(self.pool(), self.tenant(), &self.cluster.name).await?)
    }

    pub(super) async fn drive_upgrade(&self, upgrade: &UpgradeRow) -> Result<(), Error> {
        let kind = kind_of(upgrade);
        let target = upgrade
            .to_version
            .parse()
            .map_err(|_| Error::Internal(format!("bad target version {}", upgrade.to_version)))?;
        let progress = upgrades::nodes(self.pool(), upgrade.id).await?;
        let stopped = match kind {
            Kind::Talos => self.verify_talos(upgrade, &progress).await?,
            Kind::Kubernetes => self.verify_kubernetes(upgrade, &progress).await?,
        };
        if stopped {
            return Ok(());
        }

        let progress = upgrades::nodes(self.pool(), upgrade.id).await?;
        let intent = intent(
            &self.cluster,
            kind,
            target,
            state(&upgrade.state),
            Some(self.r.config.upgrade_step_timeout.as_secs()),
        );
        let nodes = planner_nodes(
            &self.cluster,
            &self.members,
            &self.machine_rows(),
            &progress,
        );
        match drover_upgrade::next(&intent, &nodes) {
            Decision::Start(steps) => {
                for (node, step) in steps {
                    let id = machine_id(&node);
                    let Some(machine) = self.machine(&node) else {
                        continue;
                    };
                    // A node this replica cannot reach right now (its tunnel moving to another
                    // replica, say) is tried again next round; once a step is recorded as
                    // started it is never sent twice, so a call lost on the way would stop
                    // the rollout.
                    if kind == Kind::Talos && !self.reachable(machine).await {
                        continue;
                    }
                    if !upgrades::start_node(self.pool(), upgrade.id, &id, step.as_str()).await? {
                        continue;
                    }
                    self.event(
                        "upgradeNodeStarted",
                        &format!("{id}: {step} to {}", upgrade.to_version),
                    )
                    .await?;
                    let started = match kind {
                        Kind::Talos => self.send_talos_upgrade(machine, upgrade).await,
                        Kind::Kubernetes if step == Step::Addons => {
                            for component in step_components(step) {
                                cluster_machines::set_cluster_component_version(
                                    self.pool(),
                                    self.tenant(),
                                    &self.cluster.name,
                                    component,
                                    &upgrade.to_version,
                                )
                                .await?;
                            }
                            // Unreachable now: the next rounds patch again.
                            let _ = self.patch_addons(&upgrade.to_version).await;
                            Ok(())
                        }
                        Kind::Kubernetes => {
                            for component in step_components(step) {
                                cluster_machines::set_component_version(
                                    self.pool(),
                                    self.tenant(),
                                    &id,
                                    component,
                                    &upgrade.to_version,
                                )
                                .await?;
                            }
                            Ok(())
                        }
                    };
                    if let Err(err) = started {
                        self.fail(upgrade, &id, step, &err.to_string()).await?;
                        return Ok(());
                    }
                }
            }
            Decision::Blocked { node, step, error } => {
                self.fail(upgrade, &machine_id(&node), step, &error).await?;
            }
            Decision::Done { skipped } => {
                upgrades::set_state(
                    self.pool(),
                    upgrade.id,
                    &["running"],
                    UpgradeState::Done.as_str(),
                    None,
                )
                .await?;
                let note = if skipped.is_empty() {
                    String::new()
                } else {
                    format!("; skipped: {}", skipped.join(", "))
                };
                self.event(
                    "upgradeFinished",
                    &format!("every node runs {kind} {}{note}", upgrade.to_version),
                )
                .await?;
                tracing::info!(cluster = %self.cluster.name, %kind, version = %upgrade.to_version, "upgrade finished");
            }
            Decision::Cancelled | Decision::Paused | Decision::Wait { .. } => {}
        }
        Ok(())
    }

    /// Whether the node's machine API answers now (its Version).
    async fn reachable(&self, machine: &MachineRow) -> bool {
        let Ok(channel) = self.authenticated(machine).await else {
            return false;
        };
        match client::version(&channel).await {
            Ok(_) => true,
            Err(err) => {
                tracing::info!(cluster = %self.cluster.name, machine = %machine.id, error = %err, "node unreachable; its upgrade waits");
                false
            }
        }
    }

    async fn send_talos_upgrade(
        &self,
        machine: &MachineRow,
        upgrade: &UpgradeRow,
    ) -> Result<(), Error> {
        let image = drover_talos::versions::installer_image(&upgrade.to_version);
        let channel = self.authenticated(machine).await?;
        client::upgrade_for(&channel, &machine.talos_version, &image)
            .await
            .map_err(|e| Error::Internal(format!("the upgrade call failed: {e}")))?;
        tracing::info!(cluster = %self.cluster.name, machine = %machine.id, %image, "Talos upgrade sent");
        Ok(())
    }

    /// Marks Talos steps done; returns true when the rollout stopped (a node fell back).
    async fn verify_talos(
        &self,
        upgrade: &UpgradeRow,
        progress: &[NodeRow],
    ) -> Result<bool, Error> {
        for node in progress.iter().filter(|p| p.state == "inProgress") {
            let Some(machine) = self.machine(&node.machine_id) else {
                continue;
            };
            let id = machine_id(&node.machine_id);
            let healthy = self.healthy(&node.machine_id);
            let on_target = machine.talos_version.trim_start_matches('v') == upgrade.to_version;
            if on_target && healthy {
                upgrades::finish_node(self.pool(), upgrade.id, &id, &node.step, None).await?;
                self.event(
                    "upgradeNodeDone",
                    &format!("{id} runs Talos {}", upgrade.to_version),
                )
                .await?;
            } else if healthy && machine.last_provisioned_at > node.started_at {
                let error = format!(
                    "node came back running Talos {} instead of {}: the boot fell back to the previous image",
                    machine.talos_version, upgrade.to_version
                );
                self.fail(upgrade, &id, Step::Talos, &error).await?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Marks Kubernetes steps done once the API shows them; never stops the rollout itself
    /// (a step that does not get there times out in the planner).
    async fn verify_kubernetes(
        &self,
        upgrade: &UpgradeRow,
        progress: &[NodeRow],
    ) -> Result<bool, Error> {
        let pending: Vec<&NodeRow> = progress
            .iter()
            .filter(|p| p.state == "inProgress")
            .collect();
        if pending.is_empty() {
            return Ok(false);
        }
        let (Ok(nodes), Ok(pods)) = (
            self.kubernetes_get("/api/v1/nodes").await,
            self.kubernetes_get("/api/v1/namespaces/kube-system/pods")
                .await,
        ) else {
            return Ok(false);
        };
        let tag = format!("v{}", upgrade.to_version);
        for row in pending {
            let Some(machine) = self.machine(&row.machine_id) else {
                continue;
            };
            let hostname = hostname(machine);
            let done = match step_named(&row.step) {
                Some(Step::Kubelet) => items(&nodes).any(|n| {
                    n["metadata"]["name"] == hostname.as_str()
                        && n["status"]["nodeInfo"]["kubeletVersion"] == tag.as_str()
                        && ready(n)
                }),
                Some(Step::Addons) => {
                    let done = addons_at(&pods, &upgrade.to_version);
                    if !done && let Err(error) = self.patch_addons(&upgrade.to_version).await {
                        tracing::warn!(cluster = %self.cluster.name, %error, "patching the add-ons failed; trying again");
                    }
                    done
                }
                Some(step @ (Step::ApiServer | Step::ControllerManager | Step::Scheduler)) => {
                    let name = format!("{}-{hostname}", step.as_str());
                    items(&pods).any(|p| {
                        p["metadata"]["name"] == name.as_str()
                            && p["spec"]["containers"][0]["image"]
                                .as_str()
                                .is_some_and(|image| image.ends_with(&format!(":{tag}")))
                            && ready(p)
                    })
                }
                _ => false,
            };
            if done {
                let id = machine_id(&row.machine_id);
                upgrades::finish_node(self.pool(), upgrade.id, &id, &row.step, None).await?;
                self.event("upgradeNodeDone", &format!("{id}: {} runs {tag}", row.step))
                    .await?;
            }
        }
        Ok(false)
    }

    /// Points the `kube-proxy` DaemonSet and the `coredns` Deployment at the images of
    /// Kubernetes `version`.
    async fn patch_addons(&self, version: &str) -> Result<(), Error> {
        for (path, container, image) in [
            (
                PROXY_PATH,
                "kube-proxy",
                drover_config::proxy_image(version),
            ),
            (
                COREDNS_PATH,
                "coredns",
                drover_config::coredns_image(version),
            ),
        ] {
            let patch = serde_json::json!({
                "spec": {"template": {"spec": {"containers": [{"name": container, "image": image}]}}}
            });
            let (address, keys) = self.kubernetes_endpoint().await?;
            self.r
                .api
                .kubernetes_patch(address, &keys.kubernetes, path, &patch)
                .await
                .map_err(|e| Error::Internal(e.to_string()))?;
        }
        Ok(())
    }

    /// JSON from the cluster's Kubernetes API, through a healthy control plane.
    async fn kubernetes_get(&self, path: &str) -> Result<Value, Error> {
        let (address, keys) = self.kubernetes_endpoint().await?;
        self.r
            .api
            .kubernetes_get(address, &keys.kubernetes, path)
            .await
            .map_err(|e| Error::Internal(e.to_string()))
    }

    /// A healthy control plane's address, and the cluster's credentials.
    async fn kubernetes_endpoint(
        &self,
    ) -> Result<(std::net::Ipv6Addr, std::sync::Arc<crate::ClusterKeys>), Error> {
        let address = self
            .members
            .iter()
            .filter(|m| {
                drover_service::parse_role(&m.role) == drover_model::MachineRole::ControlPlane
            })
            .find(|m| self.healthy(&m.machine_id))
            .and_then(|m| self.address(&m.machine_id))
            .ok_or_else(|| Error::Internal("no healthy control plane".into()))?;
        Ok((address, self.keys().await?))
    }

    /// Stops the rollout at `node`'s failure.
    async fn fail(
        &self,
        upgrade: &UpgradeRow,
        node: &MachineId,
        step: Step,
        error: &str,
    ) -> Result<(), Error> {
        upgrades::finish_node(self.pool(), upgrade.id, node, step.as_str(), Some(error)).await?;
        let message = format!("node {node}, step {step}: {error}");
        upgrades::set_state(
            self.pool(),
            upgrade.id,
            &["running", "paused"],
            "failed",
            Some(&message),
        )
        .await?;
        self.event("upgradeFailed", &message).await?;
        tracing::warn!(cluster = %self.cluster.name, %message, "upgrade stopped");
        Ok(())
    }

    async fn event(&self, kind: &str, message: &str) -> Result<(), Error> {
        record_event(self.pool(), &self.cluster, kind, message).await?;
        Ok(())
    }
}

fn hostname(machine: &MachineRow) -> String {
    machine
        .facts
        .as_ref()
        .and_then(|f| f["hostname"].as_str())
        .unwrap_or(&machine.id)
        .to_owned()
}

fn items(list: &Value) -> impl Iterator<Item = &Value> {
    list["items"].as_array().into_iter().flatten()
}

const PROXY_PATH: &str = "/apis/apps/v1/namespaces/kube-system/daemonsets/kube-proxy";
const COREDNS_PATH: &str = "/apis/apps/v1/namespaces/kube-system/deployments/coredns";

/// Whether every kube-proxy and CoreDNS pod in `pods` (at least one of each) runs the image of
/// Kubernetes `version`, ready.
fn addons_at(pods: &Value, version: &str) -> bool {
    [
        ("kube-proxy", drover_config::proxy_image(version)),
        ("kube-dns", drover_config::coredns_image(version)),
    ]
    .iter()
    .all(|(app, image)| {
        let mut pods = items(pods)
            .filter(|p| p["metadata"]["labels"]["k8s-app"] == *app)
            .peekable();
        pods.peek().is_some()
            && pods.all(|p| p["spec"]["containers"][0]["image"] == image.as_str() && ready(p))
    })
}

/// Whether a Node or Pod has condition Ready=True.
fn ready(object: &Value) -> bool {
    object["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}
