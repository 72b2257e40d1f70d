//! The add-ons' workload objects: the `kube-proxy` DaemonSet and the `coredns` Deployment in
//! `kube-system` (`apps/v1`), read with `GET` and changed with `PATCH` (strategic merge or JSON
//! merge patch). Only a container's `image` takes effect, as that is all the emulated pods show.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::KubeApi;
use super::objects::{RESOURCE_VERSION, status};
use super::pods::NAMESPACE;
use crate::cluster::{Addon, Addons};

/// The object `kind` (plural, as in the path) `name` stands for, if it is an add-on.
fn addon(kind: &str, name: &str) -> Option<Addon> {
    match (kind, name) {
        ("daemonsets", "kube-proxy") => Some(Addon::Proxy),
        ("deployments", "coredns") => Some(Addon::CoreDns),
        _ => None,
    }
}

/// The add-on's container name (also its object's name).
fn container(addon: Addon) -> &'static str {
    match addon {
        Addon::Proxy => "kube-proxy",
        Addon::CoreDns => "coredns",
    }
}

fn object(addon: Addon, addons: &Addons) -> Value {
    let (kind, app, image) = match addon {
        Addon::Proxy => ("DaemonSet", "kube-proxy", &addons.proxy),
        Addon::CoreDns => ("Deployment", "kube-dns", &addons.coredns),
    };
    let name = container(addon);
    json!({
        "kind": kind,
        "apiVersion": "apps/v1",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "resourceVersion": RESOURCE_VERSION,
            "labels": {"k8s-app": app},
        },
        "spec": {
            "selector": {"matchLabels": {"k8s-app": app}},
            "template": {
                "metadata": {"labels": {"k8s-app": app}},
                "spec": {"containers": [{"name": name, "image": image}]},
            },
        },
    })
}

fn not_found(kind: &str, name: &str) -> Response {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!("{kind}.apps \"{name}\" not found"),
    )
}

/// The image a patch sets for `container`, or why the patch is refused.
fn patched_image(patch: &Value, container: &str) -> Result<Option<String>, String> {
    let Some(containers) = patch.pointer("/spec/template/spec/containers") else {
        return Ok(None);
    };
    let containers = containers
        .as_array()
        .ok_or("spec.template.spec.containers: must be a list")?;
    for entry in containers {
        let name = entry["name"]
            .as_str()
            .ok_or("spec.template.spec.containers[].name: Required value")?;
        if name != container {
            return Err(format!(
                "spec.template.spec.containers[].name: Unsupported value: \"{name}\" (the emulator's object has only \"{container}\")"
            ));
        }
        if let Some(image) = entry.get("image") {
            let image = image
                .as_str()
                .filter(|i| !i.trim().is_empty())
                .ok_or("spec.template.spec.containers[].image: Required value")?;
            return Ok(Some(image.to_owned()));
        }
    }
    Ok(None)
}

pub(super) async fn get(
    State(api): State<KubeApi>,
    Path((namespace, kind, name)): Path<(String, String, String)>,
) -> Response {
    let found = (namespace == NAMESPACE)
        .then(|| addon(&kind, &name))
        .flatten()
        .zip(api.clusters.addons(&api.cluster_id));
    match found {
        Some((addon, addons)) => Json(object(addon, &addons)).into_response(),
        None => not_found(&kind, &name),
    }
}

pub(super) async fn patch(
    State(api): State<KubeApi>,
    Path((namespace, kind, name)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(addon) = (namespace == NAMESPACE)
        .then(|| addon(&kind, &name))
        .flatten()
    else {
        return not_found(&kind, &name);
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !matches!(
        content_type,
        "application/strategic-merge-patch+json" | "application/merge-patch+json"
    ) {
        return status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            &format!(
                "the body of the request was in an unknown format - accepted media types include: application/strategic-merge-patch+json, application/merge-patch+json (got {content_type:?})"
            ),
        );
    }
    let patch: Value = match serde_json::from_slice(&body) {
        Ok(patch) => patch,
        Err(e) => {
            return status(StatusCode::BAD_REQUEST, "BadRequest", &e.to_string());
        }
    };
    let image = match patched_image(&patch, container(addon)) {
        Ok(image) => image,
        Err(message) => {
            return status(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid",
                &format!("{kind}.apps \"{name}\" is invalid: {message}"),
            );
        }
    };
    let addons = match image {
        Some(image) => api.clusters.set_addon(&api.cluster_id, addon, &image),
        None => api.clusters.addons(&api.cluster_id),
    };
    match addons {
        Some(addons) => Json(object(addon, &addons)).into_response(),
        None => not_found(&kind, &name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_patch_sets_the_named_containers_image() {
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "coredns", "image": "registry.k8s.io/coredns/coredns:v1.12.1"}
        ]}}}});
        assert_eq!(
            patched_image(&patch, "coredns").unwrap().as_deref(),
            Some("registry.k8s.io/coredns/coredns:v1.12.1")
        );
        assert_eq!(patched_image(&json!({"metadata": {}}), "coredns"), Ok(None));
        let other =
            json!({"spec": {"template": {"spec": {"containers": [{"name": "x", "image": "i"}]}}}});
        assert!(
            patched_image(&other, "coredns")
                .unwrap_err()
                .contains("\"x\"")
        );
        let empty = json!({"spec": {"template": {"spec": {"containers": [{"name": "coredns", "image": ""}]}}}});
        assert!(patched_image(&empty, "coredns").is_err());
    }

    #[test]
    fn objects_name_their_image() {
        let addons = Addons {
            proxy: "registry.k8s.io/kube-proxy:v1.34.0".into(),
            coredns: "registry.k8s.io/coredns/coredns:v1.12.1".into(),
        };
        let proxy = object(Addon::Proxy, &addons);
        assert_eq!(proxy["kind"], "DaemonSet");
        assert_eq!(
            proxy["spec"]["template"]["spec"]["containers"][0]["image"],
            addons.proxy
        );
        assert_eq!(object(Addon::CoreDns, &addons)["kind"], "Deployment");
    }
}
