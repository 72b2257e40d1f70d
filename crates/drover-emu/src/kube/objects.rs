//! The JSON the emulated Kubernetes API answers with: the fields `kubectl` and clients read.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use super::{KUBERNETES_API_PORT, KubeApi, User};
use crate::cluster::ClusterNode;

/// What every object list says its version is (nothing watches this API).
pub(super) const RESOURCE_VERSION: &str = "1";

pub(super) fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A `v1` `Status` error.
pub(super) fn status(code: StatusCode, reason: &str, message: &str) -> Response {
    let body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    (code, Json(body)).into_response()
}

/// `/version`.
pub(super) fn version(git_version: &str) -> Response {
    let mut numbers = git_version.trim_start_matches('v').split('.');
    let major = numbers.next().unwrap_or_default();
    let minor = numbers.next().unwrap_or_default();
    Json(json!({
        "major": major,
        "minor": minor,
        "gitVersion": git_version,
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "go1.24.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    }))
    .into_response()
}

/// `/api`.
pub(super) async fn api_versions(State(api): State<KubeApi>) -> Response {
    Json(json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{
            "clientCIDR": "0.0.0.0/0",
            "serverAddress": format!("[{}]:{KUBERNETES_API_PORT}", api.address),
        }],
    }))
    .into_response()
}

/// `/api/v1`: the core resources served.
pub(super) async fn core_resources() -> Response {
    Json(json!({
        "kind": "APIResourceList",
        "groupVersion": "v1",
        "resources": [
            {
                "name": "nodes",
                "singularName": "node",
                "namespaced": false,
                "kind": "Node",
                "verbs": ["get", "list"],
                "shortNames": ["no"],
            },
            {
                "name": "pods",
                "singularName": "pod",
                "namespaced": true,
                "kind": "Pod",
                "verbs": ["get", "list"],
                "shortNames": ["po"],
                "categories": ["all"],
            },
        ],
    }))
    .into_response()
}

/// `/apis`: the API groups served.
pub(super) async fn api_groups() -> Response {
    let version = json!({"groupVersion": "authentication.k8s.io/v1", "version": "v1"});
    Json(json!({
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [{
            "name": "authentication.k8s.io",
            "versions": [version],
            "preferredVersion": version,
        }],
    }))
    .into_response()
}

/// `/apis/authentication.k8s.io/v1`.
pub(super) async fn authentication_resources() -> Response {
    Json(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": "authentication.k8s.io/v1",
        "resources": [{
            "name": "selfsubjectreviews",
            "singularName": "selfsubjectreview",
            "namespaced": false,
            "kind": "SelfSubjectReview",
            "verbs": ["create"],
        }],
    }))
    .into_response()
}

/// The answer to a `SelfSubjectReview`: who the API thinks the caller is.
pub(super) fn self_subject_review(user: &User) -> Response {
    let body = json!({
        "kind": "SelfSubjectReview",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"creationTimestamp": timestamp(Utc::now())},
        "status": {"userInfo": {"username": user.name, "groups": user.groups}},
    });
    (StatusCode::CREATED, Json(body)).into_response()
}

/// `/api/v1/nodes`, as a `NodeList` or a `Table`.
pub(super) fn node_list(nodes: &[ClusterNode], table: bool) -> Response {
    if table {
        return Json(node_table(nodes)).into_response();
    }
    Json(json!({
        "kind": "NodeList",
        "apiVersion": "v1",
        "metadata": {"resourceVersion": RESOURCE_VERSION},
        "items": nodes.iter().map(node_object).collect::<Vec<_>>(),
    }))
    .into_response()
}

/// `/api/v1/nodes/{name}`, as a `Node` or a one-row `Table`.
pub(super) fn node(node: &ClusterNode, table: bool) -> Response {
    if table {
        return Json(node_table(std::slice::from_ref(node))).into_response();
    }
    Json(node_object(node)).into_response()
}

fn labels(node: &ClusterNode) -> Value {
    let mut labels = json!({
        "beta.kubernetes.io/arch": node.arch,
        "beta.kubernetes.io/os": "linux",
        "kubernetes.io/arch": node.arch,
        "kubernetes.io/hostname": node.hostname,
        "kubernetes.io/os": "linux",
    });
    if node.control_plane {
        labels["node-role.kubernetes.io/control-plane"] = json!("");
    }
    labels
}

fn metadata(node: &ClusterNode) -> Value {
    json!({
        "name": node.hostname,
        "uid": node.uuid,
        "resourceVersion": RESOURCE_VERSION,
        "creationTimestamp": timestamp(node.created_at),
        "labels": labels(node),
    })
}

fn os_image(node: &ClusterNode) -> String {
    format!("Talos ({})", node.talos_version)
}

const KERNEL_VERSION: &str = "6.12.0-talos";
const CONTAINER_RUNTIME: &str = "containerd://2.1.0";

/// The fields a node list may be selected by.
pub(super) const NODE_FIELDS: &[&str] = &["metadata.name"];

pub(super) fn node_object(node: &ClusterNode) -> Value {
    let now = timestamp(Utc::now());
    let (ready, reason, message) = if node.running {
        ("True", "KubeletReady", "kubelet is posting ready status")
    } else {
        (
            "Unknown",
            "NodeStatusUnknown",
            "Kubelet stopped posting node status.",
        )
    };
    json!({
        "kind": "Node",
        "apiVersion": "v1",
        "metadata": metadata(node),
        "spec": {},
        "status": {
            "conditions": [{
                "type": "Ready",
                "status": ready,
                "lastHeartbeatTime": now,
                "lastTransitionTime": timestamp(node.created_at),
                "reason": reason,
                "message": message,
            }],
            "addresses": [
                {"type": "InternalIP", "address": node.address.to_string()},
                {"type": "Hostname", "address": node.hostname},
            ],
            "nodeInfo": {
                "machineID": node.uuid.replace('-', ""),
                "systemUUID": node.uuid,
                "bootID": node.boot_id,
                "kernelVersion": KERNEL_VERSION,
                "osImage": os_image(node),
                "containerRuntimeVersion": CONTAINER_RUNTIME,
                "kubeletVersion": node.kubelet_version(),
                "kubeProxyVersion": node.kubelet_version(),
                "operatingSystem": "linux",
                "architecture": node.arch,
            },
        },
    })
}

/// A `Table` column of strings (`priority` 1: shown with `-o wide` only).
pub(super) fn column(name: &str, format: &str, description: &str, priority: u8) -> Value {
    json!({
        "name": name,
        "type": "string",
        "format": format,
        "description": description,
        "priority": priority,
    })
}

/// A `meta.k8s.io/v1` `Table`.
pub(super) fn table(columns: Vec<Value>, rows: Vec<Value>) -> Value {
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": RESOURCE_VERSION},
        "columnDefinitions": columns,
        "rows": rows,
    })
}

/// The `Table` the API server prints nodes as (`kubectl get nodes [-o wide]`).
pub(super) fn node_table(nodes: &[ClusterNode]) -> Value {
    let rows: Vec<Value> = nodes
        .iter()
        .map(|node| {
            json!({
                "cells": [
                    node.hostname,
                    if node.running { "Ready" } else { "NotReady" },
                    if node.control_plane { "control-plane" } else { "<none>" },
                    age(Utc::now() - node.created_at),
                    node.kubelet_version(),
                    node.address.to_string(),
                    "<none>",
                    os_image(node),
                    KERNEL_VERSION,
                    CONTAINER_RUNTIME,
                ],
                "object": {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": metadata(node),
                },
            })
        })
        .collect();
    let columns = vec![
        column("Name", "name", "Name must be unique within a namespace.", 0),
        column("Status", "", "The status of the node", 0),
        column("Roles", "", "The roles of the node", 0),
        column("Age", "", "CreationTimestamp of the node.", 0),
        column("Version", "", "Kubelet Version reported by the node.", 0),
        column("Internal-IP", "", "List of internal IPs.", 1),
        column("External-IP", "", "List of external IPs.", 1),
        column("OS-Image", "", "OS Image reported by the node.", 1),
        column(
            "Kernel-Version",
            "",
            "Kernel Version reported by the node.",
            1,
        ),
        column(
            "Container-Runtime",
            "",
            "Container Runtime Version reported by the node.",
            1,
        ),
    ];
    table(columns, rows)
}

/// An age as `kubectl` shows it: `45s`, `3m20s`, `47m`, `5h10m`, `3d4h`, `20d`.
pub(super) fn age(elapsed: chrono::TimeDelta) -> String {
    let seconds = elapsed.num_seconds().max(0);
    let (minutes, hours, days) = (seconds / 60, seconds / 3600, seconds / 86_400);
    if seconds < 120 {
        format!("{seconds}s")
    } else if minutes < 10 {
        format!("{minutes}m{}s", seconds % 60)
    } else if hours < 3 {
        format!("{minutes}m")
    } else if hours < 8 {
        format!("{hours}h{}m", minutes % 60)
    } else if hours < 48 {
        format!("{hours}h")
    } else if days < 8 {
        format!("{days}d{}h", hours % 24)
    } else {
        format!("{days}d")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_kubectl() {
        let s = chrono::TimeDelta::seconds;
        assert_eq!(age(s(45)), "45s");
        assert_eq!(age(s(200)), "3m20s");
        assert_eq!(age(s(47 * 60)), "47m");
        assert_eq!(age(s(5 * 3600 + 600)), "5h10m");
        assert_eq!(age(s(30 * 3600)), "30h");
        assert_eq!(age(s(3 * 86_400 + 4 * 3600)), "3d4h");
        assert_eq!(age(s(20 * 86_400)), "20d");
        assert_eq!(age(s(-5)), "0s");
    }
}
