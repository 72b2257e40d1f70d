//! What the machines of one emulated cluster share, in-process: etcd (bootstrapped or not, its
//! members), the Kubernetes nodes, and trustd.
//!
//! A real cluster's nodes reach each other over their own network; emulated machines never do
//! (the hub forwards nothing between them), so the state they would exchange lives in a
//! [`ClusterRegistry`] shared by the machines of a process (or of the fleets given the same
//! registry), keyed by `cluster.id`:
//! - **etcd**: `Bootstrap` on one control plane creates it with that node as first member;
//!   every other control plane running the cluster's configuration then joins (at once, or when
//!   it boots). A second `Bootstrap` anywhere fails as Talos does. Members are listed, removed
//!   by id, and leave, through any control plane.
//! - **Kubernetes nodes**: every machine running the cluster's configuration is a `Node`,
//!   `Ready` while it runs, with the component images of its configuration; the control
//!   planes' Kubernetes API lists them. The cluster's add-ons (kube-proxy, CoreDNS) run the
//!   images of the bootstrapping control plane's configuration; as on Talos, which creates its
//!   bootstrap manifests once, later configurations do not change them, only a patch of their
//!   DaemonSet or Deployment through the Kubernetes API does.
//! - **upgrades**: a control plane upgrades only while every etcd member's node runs (Talos
//!   checks etcd's health first).
//! - **trustd**: a worker has only the OS CA's certificate, not its key, so it gets its apid
//!   certificate from a running control plane of the cluster, as Talos workers get theirs from
//!   trustd on the control planes; until one runs, the worker waits.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use drover_pki::CertAndKey;
use drover_talos::{EtcdMember, EtcdStatus};
use tokio::sync::watch;
use tonic::Status;

use crate::call_log::CallLog;
use crate::config::{KubernetesImages, image_tag};

/// Validity of the certificates the emulator issues (apid, Kubernetes API).
pub(crate) const SERVING_CERT_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);

/// The emulated clusters of a process. Cheap to clone: clones share the clusters.
#[derive(Clone, Default)]
pub struct ClusterRegistry {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    clusters: Mutex<HashMap<String, Cluster>>,
    /// Bumped on every change, for whoever waits for one.
    changes: watch::Sender<u64>,
    calls: CallLog,
    /// While true, machines hold installs and upgrades before starting them (see
    /// [`ClusterRegistry::hold_actions`]).
    held: watch::Sender<bool>,
}

/// Holds the machines' installs and upgrades while it lives.
#[must_use = "the actions are released when this is dropped"]
pub struct HeldActions {
    held: watch::Sender<bool>,
}

impl HeldActions {
    pub fn release(self) {}
}

impl Drop for HeldActions {
    fn drop(&mut self) {
        self.held.send_replace(false);
    }
}

impl std::fmt::Debug for ClusterRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let clusters = self.lock();
        f.debug_map()
            .entries(
                clusters
                    .iter()
                    .map(|(id, c)| (id, (&c.name, c.bootstrapped))),
            )
            .finish()
    }
}

#[derive(Default)]
struct Cluster {
    name: String,
    bootstrap_calls: usize,
    bootstrapped: bool,
    /// etcd members, in the order they joined.
    members: Vec<Member>,
    /// Machines that run the cluster's configuration, by UUID.
    nodes: BTreeMap<String, ClusterNode>,
    /// Once bootstrapped.
    addons: Option<Addons>,
}

/// The images of the cluster's add-ons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Addons {
    pub proxy: String,
    pub coredns: String,
}

/// One add-on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Addon {
    /// The `kube-proxy` DaemonSet.
    Proxy,
    /// The `coredns` Deployment.
    CoreDns,
}

impl Addons {
    fn of(images: &KubernetesImages) -> Self {
        Self {
            proxy: images.proxy.clone(),
            coredns: images.coredns.clone(),
        }
    }
}

struct Member {
    id: u64,
    uuid: String,
    hostname: String,
    address: Ipv6Addr,
}

impl Member {
    fn to_etcd(&self) -> EtcdMember {
        EtcdMember {
            id: self.id,
            hostname: self.hostname.clone(),
            peer_urls: vec![format!("https://[{}]:2380", self.address)],
            client_urls: vec![format!("https://[{}]:2379", self.address)],
            is_learner: false,
        }
    }
}

/// A machine as the cluster knows it (a Kubernetes `Node`).
#[derive(Clone)]
pub(crate) struct ClusterNode {
    pub uuid: String,
    pub hostname: String,
    pub address: Ipv6Addr,
    pub control_plane: bool,
    /// Of its configuration (a control plane's static pods, its kubelet).
    pub images: KubernetesImages,
    pub talos_version: String,
    pub arch: String,
    pub boot_id: String,
    /// Running (a Ready node) or not (rebooting, powered off).
    pub running: bool,
    /// When the machine first ran the configuration.
    pub created_at: DateTime<Utc>,
    /// When this boot came up.
    pub up_since: DateTime<Utc>,
    /// A control plane's OS CA with its key: what trustd signs worker certificates with.
    pub os_ca: Option<CertAndKey>,
}

impl ClusterNode {
    /// The kubelet's version, e.g. `v1.33.1`.
    pub fn kubelet_version(&self) -> &str {
        image_tag(&self.images.kubelet)
    }
}

impl ClusterRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the machines hold every install and upgrade they are asked for, before it starts,
    /// until the returned guard is released or dropped: a test can then act while a control
    /// plane is known to be mid-way, without racing the machines.
    pub fn hold_actions(&self) -> HeldActions {
        self.inner.held.send_replace(true);
        HeldActions {
            held: self.inner.held.clone(),
        }
    }

    /// Waits while actions are held.
    pub(crate) async fn actions_released(&self) {
        let mut held = self.inner.held.subscribe();
        let _ = held.wait_for(|held| !held).await;
    }

    /// The mutating calls the machines of this registry received.
    pub fn calls(&self) -> &CallLog {
        &self.inner.calls
    }

    /// How many `Bootstrap` calls nodes of the cluster received, successful or not.
    pub fn bootstrap_calls(&self, cluster_id: &str) -> usize {
        self.lock().get(cluster_id).map_or(0, |c| c.bootstrap_calls)
    }

    /// Whether etcd was bootstrapped.
    pub fn is_bootstrapped(&self, cluster_id: &str) -> bool {
        self.lock().get(cluster_id).is_some_and(|c| c.bootstrapped)
    }

    /// The cluster's etcd members, in the order they joined.
    pub fn etcd_members(&self, cluster_id: &str) -> Vec<EtcdMember> {
        self.lock()
            .get(cluster_id)
            .map(|c| c.members.iter().map(Member::to_etcd).collect())
            .unwrap_or_default()
    }

    /// Hostnames of the machines running the cluster's configuration (its Kubernetes nodes).
    pub fn node_names(&self, cluster_id: &str) -> Vec<String> {
        self.nodes(cluster_id)
            .into_iter()
            .map(|n| n.hostname)
            .collect()
    }

    /// Hostnames of the cluster's nodes that run (`Ready`; not rebooting, upgrading or off).
    pub fn ready_node_names(&self, cluster_id: &str) -> Vec<String> {
        self.nodes(cluster_id)
            .into_iter()
            .filter(|n| n.running)
            .map(|n| n.hostname)
            .collect()
    }

    /// Waits until `done` holds for the registry (checked now and after every change).
    pub async fn wait_until(&self, mut done: impl FnMut(&ClusterRegistry) -> bool) {
        let mut changes = self.inner.changes.subscribe();
        while !done(self) {
            changes
                .changed()
                .await
                .expect("the registry holds the sender");
        }
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }

    pub(crate) fn nodes(&self, cluster_id: &str) -> Vec<ClusterNode> {
        self.lock()
            .get(cluster_id)
            .map(|c| c.nodes.values().cloned().collect())
            .unwrap_or_default()
    }

    pub(crate) fn node(&self, cluster_id: &str, uuid: &str) -> Option<ClusterNode> {
        self.lock().get(cluster_id)?.nodes.get(uuid).cloned()
    }

    /// The add-ons' images, once bootstrapped.
    pub(crate) fn addons(&self, cluster_id: &str) -> Option<Addons> {
        self.lock().get(cluster_id)?.addons.clone()
    }

    /// A machine came up running the cluster's configuration (once per boot): it is a running
    /// node, and a control plane of a bootstrapped cluster joins etcd unless it is a member.
    pub(crate) fn join(&self, cluster_id: &str, cluster_name: &str, node: ClusterNode) {
        self.change(cluster_id, |cluster| {
            cluster.name = cluster_name.to_owned();
            if cluster.bootstrapped && node.control_plane {
                cluster.add_member(&node);
            }
            let created_at = cluster
                .nodes
                .get(&node.uuid)
                .map_or(node.created_at, |n| n.created_at);
            cluster.nodes.insert(
                node.uuid.clone(),
                ClusterNode {
                    created_at,
                    running: true,
                    ..node
                },
            );
        });
    }

    /// The machine stopped running (rebooting, powered off) or runs again.
    pub(crate) fn set_running(&self, cluster_id: &str, uuid: &str, running: bool) {
        self.change(cluster_id, |cluster| {
            if let Some(node) = cluster.nodes.get_mut(uuid) {
                node.running = running;
            }
        });
    }

    /// A configuration applied without a reboot changed the machine's components.
    pub(crate) fn set_images(&self, cluster_id: &str, uuid: &str, images: &KubernetesImages) {
        self.change(cluster_id, |cluster| {
            if let Some(node) = cluster.nodes.get_mut(uuid) {
                node.images = images.clone();
            }
        });
    }

    /// Points `addon` at `image` (a patch of its object); `None` before bootstrap, when the
    /// add-ons do not exist yet.
    pub(crate) fn set_addon(&self, cluster_id: &str, addon: Addon, image: &str) -> Option<Addons> {
        self.change(cluster_id, |cluster| {
            let addons = cluster.addons.as_mut()?;
            match addon {
                Addon::Proxy => addons.proxy = image.to_owned(),
                Addon::CoreDns => addons.coredns = image.to_owned(),
            }
            Some(addons.clone())
        })
    }

    /// Whether the control plane `uuid` may upgrade: Talos refuses while an etcd member is not
    /// healthy (here: its node is not running), or with two members (one down loses quorum).
    pub(crate) fn validate_upgrade(&self, cluster_id: &str, uuid: &str) -> Result<(), Status> {
        let refuse = |reason: String| {
            Status::failed_precondition(format!("error validating etcd for upgrade: {reason}"))
        };
        let clusters = self.lock();
        let cluster =
            running_etcd(clusters.get(cluster_id)).map_err(|s| refuse(s.message().into()))?;
        if cluster.members.len() == 2 {
            return Err(refuse(
                "etcd member count(2) is insufficient to maintain quorum if upgrade commences"
                    .into(),
            ));
        }
        let down = cluster
            .members
            .iter()
            .find(|m| m.uuid != uuid && !cluster.nodes.get(&m.uuid).is_some_and(|n| n.running));
        match down {
            Some(member) => Err(refuse(format!(
                "etcd member {:016x} is not healthy; all members must be healthy to perform an upgrade",
                member.id
            ))),
            None => Ok(()),
        }
    }

    /// The machine was reset: it is no node of the cluster any more. Its etcd member, if it
    /// did not leave, stays (as after a real reset without `graceful`) until removed by id.
    pub(crate) fn forget(&self, cluster_id: &str, uuid: &str) {
        self.change(cluster_id, |cluster| {
            cluster.nodes.remove(uuid);
        });
    }

    /// `Bootstrap` on the machine `uuid` of the cluster.
    pub(crate) fn bootstrap(
        &self,
        cluster_id: &str,
        uuid: &str,
        control_plane: bool,
    ) -> Result<(), Status> {
        self.change(cluster_id, |cluster| {
            cluster.bootstrap_calls += 1;
            if !control_plane {
                return Err(Status::failed_precondition(
                    "bootstrap can only be performed on a control plane node",
                ));
            }
            if cluster.bootstrapped {
                return Err(Status::failed_precondition(
                    "etcd data directory is not empty",
                ));
            }
            cluster.bootstrapped = true;
            // The bootstrapping node first, then every other running control plane.
            let mut joining: Vec<ClusterNode> = cluster
                .nodes
                .values()
                .filter(|n| n.control_plane && n.running)
                .cloned()
                .collect();
            joining.sort_by_key(|n| n.uuid != uuid);
            for node in &joining {
                cluster.add_member(node);
            }
            cluster.addons = joining.first().map(|n| Addons::of(&n.images));
            Ok(())
        })
    }

    /// `EtcdMemberList` through a control plane of the cluster.
    pub(crate) fn members(&self, cluster_id: &str) -> Result<Vec<EtcdMember>, Status> {
        let clusters = self.lock();
        let cluster = running_etcd(clusters.get(cluster_id))?;
        Ok(cluster.members.iter().map(Member::to_etcd).collect())
    }

    /// `EtcdRemoveMemberByID`.
    pub(crate) fn remove_member(&self, cluster_id: &str, id: u64) -> Result<(), Status> {
        self.change(cluster_id, |cluster| {
            running_etcd(Some(cluster))?;
            let before = cluster.members.len();
            cluster.members.retain(|m| m.id != id);
            if cluster.members.len() == before {
                return Err(Status::not_found(format!("etcd member {id:x} not found")));
            }
            Ok(())
        })
    }

    /// `EtcdLeaveCluster` on the machine `uuid`.
    pub(crate) fn leave(&self, cluster_id: &str, uuid: &str) -> Result<(), Status> {
        self.change(cluster_id, |cluster| {
            running_etcd(Some(cluster))?;
            let before = cluster.members.len();
            cluster.members.retain(|m| m.uuid != uuid);
            if cluster.members.len() == before {
                return Err(Status::failed_precondition(
                    "this node is not an etcd member",
                ));
            }
            Ok(())
        })
    }

    /// `EtcdStatus` of the machine `uuid`'s member.
    pub(crate) fn status(&self, cluster_id: &str, uuid: &str) -> Result<EtcdStatus, Status> {
        let clusters = self.lock();
        let cluster = running_etcd(clusters.get(cluster_id))?;
        let member = cluster
            .members
            .iter()
            .find(|m| m.uuid == uuid)
            .ok_or_else(|| Status::unavailable("etcd is not running on this node"))?;
        let members = cluster.members.len() as u64;
        Ok(EtcdStatus {
            member_id: member.id,
            leader: cluster.members[0].id,
            protocol_version: "3.5.0".into(),
            db_size: 20 * 1024 * 1024,
            raft_index: 1000 + members,
            raft_term: members,
            is_learner: false,
        })
    }

    /// trustd: an apid certificate for a worker, signed by the OS CA of a running control
    /// plane of the cluster; `None` while none runs.
    pub(crate) fn issue_apid_cert(
        &self,
        cluster_id: &str,
        hostname: &str,
        address: Ipv6Addr,
    ) -> Option<CertAndKey> {
        let issuer = self
            .lock()
            .get(cluster_id)?
            .nodes
            .values()
            .filter(|n| n.running)
            .find_map(|n| n.os_ca.clone())?;
        apid_cert(&issuer, hostname, address)
            .inspect_err(|err| tracing::warn!(%hostname, error = %err, "trustd could not sign"))
            .ok()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Cluster>> {
        self.inner
            .clusters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the cluster (created if new), then tells the waiters.
    fn change<T>(&self, cluster_id: &str, f: impl FnOnce(&mut Cluster) -> T) -> T {
        let result = f(self.lock().entry(cluster_id.to_owned()).or_default());
        self.inner.changes.send_modify(|n| *n += 1);
        result
    }
}

impl Cluster {
    fn add_member(&mut self, node: &ClusterNode) {
        if self.members.iter().any(|m| m.uuid == node.uuid) {
            return;
        }
        let id = loop {
            let id = rand::random::<u64>();
            if id != 0 && self.members.iter().all(|m| m.id != id) {
                break id;
            }
        };
        self.members.push(Member {
            id,
            uuid: node.uuid.clone(),
            hostname: node.hostname.clone(),
            address: node.address,
        });
    }
}

fn running_etcd(cluster: Option<&Cluster>) -> Result<&Cluster, Status> {
    cluster
        .filter(|c| c.bootstrapped && !c.members.is_empty())
        .ok_or_else(|| Status::unavailable("etcd is not running: the cluster is not bootstrapped"))
}

/// A node's apid certificate: signed by the OS CA, for its hostname and tunnel address.
pub(crate) fn apid_cert(
    os_ca: &CertAndKey,
    hostname: &str,
    address: Ipv6Addr,
) -> Result<CertAndKey, drover_pki::PkiError> {
    drover_pki::server_cert(
        os_ca,
        hostname,
        &[hostname],
        &[IpAddr::V6(address)],
        SERVING_CERT_VALIDITY,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(n: u8, control_plane: bool) -> ClusterNode {
        ClusterNode {
            uuid: format!("uuid-{n}"),
            hostname: format!("node-{n}"),
            address: Ipv6Addr::new(0xfdae, 0, 0, 0, 0, 0, 0, u16::from(n)),
            control_plane,
            images: images("v1.33.1"),
            talos_version: "v1.13.8".into(),
            arch: "amd64".into(),
            boot_id: format!("boot-{n}"),
            running: true,
            created_at: Utc::now(),
            up_since: Utc::now(),
            os_ca: None,
        }
    }

    fn images(version: &str) -> KubernetesImages {
        let image = |name: &str| format!("registry.k8s.io/kube-{name}:{version}");
        KubernetesImages {
            kubelet: format!("ghcr.io/siderolabs/kubelet:{version}"),
            api_server: image("apiserver"),
            controller_manager: image("controller-manager"),
            scheduler: image("scheduler"),
            proxy: image("proxy"),
            coredns: crate::config::DEFAULT_COREDNS_IMAGE.into(),
        }
    }

    #[test]
    fn addons_come_with_bootstrap_and_change_only_when_patched() {
        let r = ClusterRegistry::new();
        r.join("c", "prod", node(1, true));
        assert_eq!(r.set_addon("c", Addon::Proxy, "p:v2"), None);
        assert_eq!(r.addons("c"), None, "no add-ons before bootstrap");
        r.bootstrap("c", "uuid-1", true).unwrap();
        assert_eq!(r.addons("c").unwrap().proxy, images("v1.33.1").proxy);
        r.set_images("c", "uuid-1", &images("v1.34.0"));
        assert_eq!(
            r.addons("c").unwrap().proxy,
            images("v1.33.1").proxy,
            "a new configuration leaves the add-ons alone"
        );
        let patched = r.set_addon("c", Addon::CoreDns, "dns:v9").unwrap();
        assert_eq!(patched.coredns, "dns:v9");
        assert_eq!(patched.proxy, images("v1.33.1").proxy);
        r.set_images("c", "uuid-1", &images("v1.34.0"));
        assert_eq!(r.node("c", "uuid-1").unwrap().kubelet_version(), "v1.34.0");
    }

    #[test]
    fn a_control_plane_upgrades_only_while_every_member_is_healthy() {
        let r = ClusterRegistry::new();
        let code = |r: &ClusterRegistry, uuid| r.validate_upgrade("c", uuid).map_err(|e| e.code());
        r.join("c", "prod", node(1, true));
        assert_eq!(
            code(&r, "uuid-1"),
            Err(tonic::Code::FailedPrecondition),
            "no etcd"
        );
        r.bootstrap("c", "uuid-1", true).unwrap();
        assert_eq!(code(&r, "uuid-1"), Ok(()), "a single member");
        r.join("c", "prod", node(2, true));
        let err = r.validate_upgrade("c", "uuid-1").unwrap_err();
        assert!(err.message().contains("count(2)"), "{err:?}");
        r.join("c", "prod", node(3, true));
        assert_eq!(code(&r, "uuid-1"), Ok(()));
        r.set_running("c", "uuid-2", false);
        let err = r.validate_upgrade("c", "uuid-1").unwrap_err();
        assert!(err.message().contains("is not healthy"), "{err:?}");
        assert_eq!(code(&r, "uuid-2"), Ok(()), "the member itself may be down");
    }

    #[test]
    fn bootstrap_once_then_control_planes_join() {
        let r = ClusterRegistry::new();
        r.join("c", "prod", node(1, true));
        r.join("c", "prod", node(2, true));
        r.join("c", "prod", node(3, false));
        assert!(r.members("c").is_err(), "no etcd before bootstrap");

        r.bootstrap("c", "uuid-2", true).unwrap();
        let err = r.bootstrap("c", "uuid-1", true).unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition);
        assert_eq!(err.message(), "etcd data directory is not empty");
        let err = r.bootstrap("c", "uuid-3", false).unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition);
        assert_eq!(r.bootstrap_calls("c"), 3);
        assert_eq!(r.bootstrap_calls("other"), 0);

        let names: Vec<_> = r
            .etcd_members("c")
            .into_iter()
            .map(|m| m.hostname)
            .collect();
        assert_eq!(names, ["node-2", "node-1"], "the bootstrapping node first");

        // A control plane booting later joins; a worker never does.
        r.join("c", "prod", node(4, true));
        assert_eq!(r.etcd_members("c").len(), 3);
        assert_eq!(r.node_names("c").len(), 4);
    }

    #[test]
    fn members_leave_and_are_removed() {
        let r = ClusterRegistry::new();
        r.join("c", "prod", node(1, true));
        r.join("c", "prod", node(2, true));
        r.bootstrap("c", "uuid-1", true).unwrap();
        let status = r.status("c", "uuid-1").unwrap();
        assert_eq!(status.leader, status.member_id);

        r.leave("c", "uuid-2").unwrap();
        assert_eq!(
            r.leave("c", "uuid-2").unwrap_err().code(),
            tonic::Code::FailedPrecondition
        );
        assert_eq!(
            r.status("c", "uuid-2").unwrap_err().code(),
            tonic::Code::Unavailable
        );
        let id = r.etcd_members("c")[0].id;
        assert_eq!(
            r.remove_member("c", id.wrapping_add(1)).unwrap_err().code(),
            tonic::Code::NotFound
        );
        r.remove_member("c", id).unwrap();
        assert!(r.etcd_members("c").is_empty());
    }

    #[tokio::test]
    async fn waiters_see_changes() {
        let r = ClusterRegistry::new();
        let waiting = tokio::spawn({
            let r = r.clone();
            async move { r.wait_until(|r| r.is_bootstrapped("c")).await }
        });
        r.join("c", "prod", node(1, true));
        r.bootstrap("c", "uuid-1", true).unwrap();
        waiting.await.unwrap();
    }
}
