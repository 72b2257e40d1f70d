//! The `kube-system` pods of an emulated cluster, made from its nodes and add-ons:
//! - on each control plane, the static (mirror) pods `kube-apiserver-<node>`,
//!   `kube-controller-manager-<node>` and `kube-scheduler-<node>`, with the images of its
//!   configuration;
//! - on each node, `kube-proxy-<node>` with the cluster's kube-proxy image (once bootstrapped);
//! - two CoreDNS replicas `coredns-<template hash>-<suffix>` spread over the nodes (the hash
//!   changes with the image, as a Deployment's does).
//!
//! Every pod is `Running`, and `Ready` while its node runs.

use std::net::Ipv6Addr;

use axum::Json;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::objects::{RESOURCE_VERSION, age, column, table, timestamp};
use crate::cluster::{Addons, ClusterNode};

/// The namespace of the pods served.
pub(super) const NAMESPACE: &str = "kube-system";

/// The fields a pod list may be selected by.
pub(super) const FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "spec.nodeName",
    "status.phase",
];

const COREDNS_REPLICAS: usize = 2;

/// The characters Kubernetes makes generated names of (no vowels, no look-alikes).
const NAME_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// What runs in a pod.
struct Component {
    container: &'static str,
    /// The `k8s-app` label.
    app: &'static str,
    tier: &'static str,
}

const API_SERVER: Component = Component {
    container: "kube-apiserver",
    app: "kube-apiserver",
    tier: "control-plane",
};
const CONTROLLER_MANAGER: Component = Component {
    container: "kube-controller-manager",
    app: "kube-controller-manager",
    tier: "control-plane",
};
const SCHEDULER: Component = Component {
    container: "kube-scheduler",
    app: "kube-scheduler",
    tier: "control-plane",
};
const PROXY: Component = Component {
    container: "kube-proxy",
    app: "kube-proxy",
    tier: "node",
};
const COREDNS: Component = Component {
    container: "coredns",
    app: "kube-dns",
    tier: "node",
};

/// One pod.
pub(super) struct Pod {
    pub name: String,
    component: &'static Component,
    image: String,
    node: String,
    node_uuid: String,
    host_ip: Ipv6Addr,
    /// Its own address; `None` on the host's network.
    own_ip: Option<String>,
    /// A static pod, mirrored from the node's manifests.
    mirror: bool,
    ready: bool,
    started: DateTime<Utc>,
}

impl Pod {
    fn on(node: &ClusterNode, name: String, component: &'static Component, image: &str) -> Self {
        Self {
            name,
            component,
            image: image.to_owned(),
            node: node.hostname.clone(),
            node_uuid: node.uuid.clone(),
            host_ip: node.address,
            own_ip: None,
            mirror: false,
            ready: node.running,
            started: node.up_since,
        }
    }

    fn ip(&self) -> String {
        self.own_ip
            .clone()
            .unwrap_or_else(|| self.host_ip.to_string())
    }
}

/// The pods of a cluster with `nodes` and, once bootstrapped, `addons`, by name.
pub(super) fn kube_system(nodes: &[ClusterNode], addons: Option<&Addons>) -> Vec<Pod> {
    let mut pods = Vec::new();
    for node in nodes.iter().filter(|n| n.control_plane) {
        let images = &node.images;
        for (component, image) in [
            (&API_SERVER, &images.api_server),
            (&CONTROLLER_MANAGER, &images.controller_manager),
            (&SCHEDULER, &images.scheduler),
        ] {
            let name = format!("{}-{}", component.container, node.hostname);
            pods.push(Pod {
                mirror: true,
                ..Pod::on(node, name, component, image)
            });
        }
    }
    if let Some(addons) = addons {
        for node in nodes {
            let name = format!("kube-proxy-{}", node.hostname);
            pods.push(Pod::on(node, name, &PROXY, &addons.proxy));
        }
        let template = generated(&addons.coredns, 10);
        for (replica, node) in nodes.iter().cycle().take(COREDNS_REPLICAS).enumerate() {
            let name = format!(
                "coredns-{template}-{}",
                generated(&format!("{template}/{replica}"), 5)
            );
            pods.push(Pod {
                own_ip: Some(format!("10.244.{replica}.2")),
                ..Pod::on(node, name, &COREDNS, &addons.coredns)
            });
        }
    }
    pods.sort_by(|a, b| a.name.cmp(&b.name));
    pods
}

/// `len` name characters derived from `seed`.
fn generated(seed: &str, len: usize) -> String {
    Sha256::digest(seed.as_bytes())
        .iter()
        .take(len)
        .map(|b| char::from(NAME_ALPHABET[usize::from(*b) % NAME_ALPHABET.len()]))
        .collect()
}

/// A `PodList` or a `Table`.
pub(super) fn list(pods: &[Pod], as_table: bool) -> Response {
    if as_table {
        return Json(pod_table(pods)).into_response();
    }
    Json(json!({
        "kind": "PodList",
        "apiVersion": "v1",
        "metadata": {"resourceVersion": RESOURCE_VERSION},
        "items": pods.iter().map(object).collect::<Vec<_>>(),
    }))
    .into_response()
}

/// A `Pod` or a one-row `Table`.
pub(super) fn get(pod: &Pod, as_table: bool) -> Response {
    if as_table {
        return Json(pod_table(std::slice::from_ref(pod))).into_response();
    }
    Json(object(pod)).into_response()
}

fn metadata(pod: &Pod) -> Value {
    let uid = uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_OID,
        format!("{}/{}", pod.node_uuid, pod.name).as_bytes(),
    );
    let mut metadata = json!({
        "name": pod.name,
        "namespace": NAMESPACE,
        "uid": uid.to_string(),
        "resourceVersion": RESOURCE_VERSION,
        "creationTimestamp": timestamp(pod.started),
        "labels": {"k8s-app": pod.component.app, "tier": pod.component.tier},
    });
    if pod.mirror {
        metadata["annotations"] = json!({
            "kubernetes.io/config.mirror": uid.simple().to_string(),
            "kubernetes.io/config.source": "file",
        });
    }
    metadata
}

pub(super) fn object(pod: &Pod) -> Value {
    let started = timestamp(pod.started);
    let ip = pod.ip();
    let ready = if pod.ready { "True" } else { "False" };
    let condition =
        |kind: &str| json!({"type": kind, "status": ready, "lastTransitionTime": started});
    json!({
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": metadata(pod),
        "spec": {
            "nodeName": pod.node,
            "hostNetwork": pod.own_ip.is_none(),
            "containers": [{"name": pod.component.container, "image": pod.image}],
        },
        "status": {
            "phase": "Running",
            "conditions": [condition("Ready"), condition("ContainersReady")],
            "hostIP": pod.host_ip.to_string(),
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "startTime": started,
            "containerStatuses": [{
                "name": pod.component.container,
                "image": pod.image,
                "imageID": "",
                "ready": pod.ready,
                "started": pod.ready,
                "restartCount": 0,
                "state": {"running": {"startedAt": started}},
            }],
        },
    })
}

/// The `Table` `kubectl get pods [-o wide]` prints.
fn pod_table(pods: &[Pod]) -> Value {
    let rows = pods
        .iter()
        .map(|pod| {
            json!({
                "cells": [
                    pod.name,
                    if pod.ready { "1/1" } else { "0/1" },
                    "Running",
                    "0",
                    age(Utc::now() - pod.started),
                    pod.ip(),
                    pod.node,
                    "<none>",
                    "<none>",
                ],
                "object": {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": metadata(pod),
                },
            })
        })
        .collect();
    let columns = vec![
        column("Name", "name", "Name must be unique within a namespace.", 0),
        column(
            "Ready",
            "",
            "The aggregate readiness state of this pod for accepting traffic.",
            0,
        ),
        column(
            "Status",
            "",
            "The aggregate status of the containers in this pod.",
            0,
        ),
        column(
            "Restarts",
            "",
            "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
            0,
        ),
        column("Age", "", "CreationTimestamp of the pod.", 0),
        column("IP", "", "IP address assigned to the pod.", 1),
        column("Node", "", "Name of the node the pod is assigned to.", 1),
        column(
            "Nominated Node",
            "",
            "Name of the node the pod is nominated to.",
            1,
        ),
        column("Readiness Gates", "", "Pod readiness gates.", 1),
    ];
    table(columns, rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DEFAULT_COREDNS_IMAGE, KubernetesImages};

    fn node(n: u8, control_plane: bool, running: bool) -> ClusterNode {
        let image = |name: &str| format!("registry.k8s.io/kube-{name}:v1.33.{n}");
        ClusterNode {
            uuid: format!("uuid-{n}"),
            hostname: format!("node-{n}"),
            address: Ipv6Addr::new(0xfdae, 0, 0, 0, 0, 0, 0, u16::from(n)),
            control_plane,
            images: KubernetesImages {
                kubelet: format!("ghcr.io/siderolabs/kubelet:v1.33.{n}"),
                api_server: image("apiserver"),
                controller_manager: image("controller-manager"),
                scheduler: image("scheduler"),
                proxy: image("proxy"),
                coredns: DEFAULT_COREDNS_IMAGE.into(),
            },
            talos_version: "v1.13.8".into(),
            arch: "amd64".into(),
            boot_id: "b".into(),
            running,
            created_at: Utc::now(),
            up_since: Utc::now(),
            os_ca: None,
        }
    }

    #[test]
    fn static_pods_per_control_plane_and_addons_per_cluster() {
        let nodes = [node(1, true, true), node(2, false, false)];
        let before: Vec<String> = kube_system(&nodes, None)
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(
            before,
            [
                "kube-apiserver-node-1",
                "kube-controller-manager-node-1",
                "kube-scheduler-node-1"
            ]
        );

        let addons = Addons {
            proxy: "registry.k8s.io/kube-proxy:v1.34.0".into(),
            coredns: DEFAULT_COREDNS_IMAGE.into(),
        };
        let pods = kube_system(&nodes, Some(&addons));
        assert_eq!(pods.len(), 3 + 2 + COREDNS_REPLICAS);
        let apiserver = pods
            .iter()
            .find(|p| p.name == "kube-apiserver-node-1")
            .unwrap();
        assert_eq!(apiserver.image, "registry.k8s.io/kube-apiserver:v1.33.1");
        assert!(apiserver.mirror && apiserver.ready);
        let proxy = pods.iter().find(|p| p.name == "kube-proxy-node-2").unwrap();
        assert_eq!(proxy.image, addons.proxy);
        assert!(!proxy.ready, "its node is down");
        let coredns: Vec<&Pod> = pods
            .iter()
            .filter(|p| p.name.starts_with("coredns-"))
            .collect();
        assert_eq!(coredns.len(), 2);
        assert_ne!(coredns[0].node, coredns[1].node, "spread over the nodes");
        assert_eq!(coredns[0].name.len(), "coredns-".len() + 10 + 1 + 5);
        let object = object(coredns[0]);
        assert_eq!(
            object["spec"]["containers"][0]["image"],
            DEFAULT_COREDNS_IMAGE
        );
        assert_eq!(object["metadata"]["labels"]["k8s-app"], "kube-dns");
        assert_eq!(object["spec"]["hostNetwork"], false);

        // A new image is a new template: new names.
        let newer = Addons {
            coredns: "registry.k8s.io/coredns/coredns:v1.12.1".into(),
            ..addons
        };
        let renamed = kube_system(&nodes, Some(&newer));
        assert!(renamed.iter().all(|p| p.name != coredns[0].name));
    }
}
