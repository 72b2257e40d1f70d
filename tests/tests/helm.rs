//! The Helm chart `deploy/helm/drover`, rendered and linted by Helm itself (its Go SDK, through
//! the `helm-python-sdk` package that `scripts/install-prereqs --for-tests` installs into
//! /var/tmp/drover-tools/helm-venv; no `helm` binary or cluster is needed). Skipped, saying
//! why, when that package is missing.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use serde::Deserialize as _;
use serde_json::{Value as Json, json};
use serde_yaml_ng::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A Python that can import `helm_python`.
fn python() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("DROVER_HELM_PYTHON").map(PathBuf::from),
        Some(PathBuf::from("/var/tmp/drover-tools/helm-venv/bin/python")),
        Some(PathBuf::from("python3")),
    ];
    candidates.into_iter().flatten().find(|python| {
        Command::new(python)
            .args(["-c", "import helm_python"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// The chart rendered with `values`: every manifest document, or Helm's error.
fn render(python: &Path, values: &Json) -> Result<Vec<Value>, String> {
    let out = Command::new(python)
        .arg(repo().join("tests/helm/render.py"))
        .arg(repo().join("deploy/helm/drover"))
        .arg(values.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "render.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Json = serde_json::from_slice(&out.stdout).unwrap();
    if let Some(error) = answer["error"].as_str() {
        return Err(error.to_owned());
    }
    let lint = &answer["lint"];
    assert_eq!(lint["errors"], json!([]), "helm lint --strict: {lint}");
    for message in lint["messages"].as_array().unwrap() {
        assert!(
            message["severity"].as_i64() < Some(2),
            "helm lint --strict: {message}"
        );
    }
    let mut documents = Vec::new();
    for (template, text) in answer["manifests"].as_object().unwrap() {
        if !template.ends_with(".yaml") {
            continue;
        }
        for document in serde_yaml_ng::Deserializer::from_str(text.as_str().unwrap()) {
            let value = Value::deserialize(document)
                .unwrap_or_else(|err| panic!("{template} is not YAML: {err}"));
            if !value.is_null() {
                documents.push(value);
            }
        }
    }
    Ok(documents)
}

fn find<'a>(documents: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    documents
        .iter()
        .find(|d| d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name))
}

fn env<'a>(container: &'a Value, name: &str) -> &'a Value {
    container["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|e| e["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no {name} in the container's environment"))
}

const MASTER_KEY: &str = "q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq80=";

#[test]
fn the_chart_renders_replicas_services_and_secrets_and_lints_clean() {
    let Some(python) = python() else {
        println!(
            "SKIPPED: no Python with helm-python-sdk (scripts/install-prereqs --for-tests installs it)"
        );
        return;
    };
    let documents = render(
        &python,
        &json!({
            "replicaCount": 3,
            "database": {"url": "postgres://drover:pw@db.internal:5432/drover"},
            "masterKey": {"value": MASTER_KEY},
            "advertise": {
                "machineApi": "grpc://drover.example.com:8090",
                "wireguardEndpoints": ["drover.example.com:50180"],
            },
            "httpTls": {"existingSecret": "drover-tls"},
        }),
    )
    .unwrap();

    let deployment = find(&documents, "Deployment", "fleet-drover").expect("the Deployment");
    assert_eq!(deployment["spec"]["replicas"].as_u64(), Some(3));
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    let container = &pod["containers"][0];
    assert_eq!(
        container["securityContext"]["readOnlyRootFilesystem"].as_bool(),
        Some(true)
    );
    let reference = droverd::reference::markdown();
    for variable in container["env"].as_sequence().unwrap() {
        let name = variable["name"].as_str().unwrap();
        if name == "POD_IP" {
            continue; // Kubernetes's, for the relay's address below
        }
        assert!(
            reference.contains(&format!("`{name}`")),
            "the chart sets {name}, which is no droverd setting"
        );
    }
    let key_ref = &env(container, "DROVER_MASTER_KEY")["valueFrom"]["secretKeyRef"];
    assert_eq!(key_ref["name"].as_str(), Some("fleet-drover-master-key"));
    let db_ref = &env(container, "DROVER_DATABASE_URL")["valueFrom"]["secretKeyRef"];
    assert_eq!(db_ref["name"].as_str(), Some("fleet-drover-database"));
    assert_eq!(
        env(container, "DROVER_HTTP_TLS")["value"].as_str(),
        Some("files")
    );
    assert_eq!(
        env(container, "DROVER_ADVERTISED_WIREGUARD_ENDPOINTS")["value"].as_str(),
        Some("drover.example.com:50180")
    );
    // The other replicas reach this pod's relay at the pod's own address.
    assert_eq!(
        env(container, "POD_IP")["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
        Some("status.podIP")
    );
    assert_eq!(
        env(container, "DROVER_ADVERTISED_RELAY_ADDR")["value"].as_str(),
        Some("$(POD_IP):8099")
    );
    assert_eq!(
        container["readinessProbe"]["httpGet"]["path"].as_str(),
        Some("/readyz")
    );

    // The key-encryption key's Secret holds the key and survives an uninstall.
    let secret = find(&documents, "Secret", "fleet-drover-master-key").expect("the key's Secret");
    let stored = base64::engine::general_purpose::STANDARD
        .decode(secret["data"]["master-key"].as_str().unwrap())
        .unwrap();
    assert_eq!(stored, MASTER_KEY.as_bytes());
    assert_eq!(
        secret["metadata"]["annotations"]["helm.sh/resource-policy"].as_str(),
        Some("keep")
    );

    // A Service per listener, WireGuard on UDP, each selecting droverd's pods.
    let selector = &deployment["spec"]["selector"]["matchLabels"];
    for (name, port, protocol) in [
        ("http", 8080, "TCP"),
        ("machine-api", 8090, "TCP"),
        ("wireguard", 50180, "UDP"),
        ("kube-proxy", 8095, "TCP"),
        ("talos-proxy", 8096, "TCP"),
        ("metrics", 8097, "TCP"),
    ] {
        let service = find(&documents, "Service", &format!("fleet-drover-{name}"))
            .unwrap_or_else(|| panic!("the {name} Service"));
        assert_eq!(&service["spec"]["selector"], selector);
        let ports = &service["spec"]["ports"][0];
        assert_eq!(ports["port"].as_u64(), Some(port), "{name}");
        assert_eq!(ports["protocol"].as_str(), Some(protocol), "{name}");
        let target = ports["targetPort"].as_str().unwrap();
        assert!(
            container["ports"]
                .as_sequence()
                .unwrap()
                .iter()
                .any(|p| p["name"].as_str() == Some(target)
                    && p["protocol"].as_str() == Some(protocol)),
            "{name} targets a container port"
        );
    }
}

#[test]
fn the_chart_refuses_to_render_without_a_database_or_key_and_takes_existing_secrets() {
    let Some(python) = python() else {
        println!(
            "SKIPPED: no Python with helm-python-sdk (scripts/install-prereqs --for-tests installs it)"
        );
        return;
    };
    let err = render(&python, &json!({"database": {"url": "postgres://x"}})).unwrap_err();
    assert!(err.contains("masterKey.value"), "{err}");
    let err = render(&python, &json!({"masterKey": {"value": MASTER_KEY}})).unwrap_err();
    assert!(err.contains("database.url"), "{err}");

    let documents = render(
        &python,
        &json!({
            "database": {"existingSecret": "pg", "existingSecretKey": "url"},
            "masterKey": {"existingSecret": "kek", "existingSecretKey": "key"},
        }),
    )
    .unwrap();
    assert!(
        !documents
            .iter()
            .any(|d| d["kind"].as_str() == Some("Secret")),
        "the operator's Secrets are used, none made"
    );
    let deployment = find(&documents, "Deployment", "fleet-drover").unwrap();
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let key_ref = &env(container, "DROVER_MASTER_KEY")["valueFrom"]["secretKeyRef"];
    assert_eq!(
        (key_ref["name"].as_str(), key_ref["key"].as_str()),
        (Some("kek"), Some("key"))
    );
    assert_eq!(deployment["spec"]["replicas"].as_u64(), Some(1));
    assert_eq!(
        env(container, "DROVER_HTTP_TLS")["value"].as_str(),
        Some("self-signed")
    );
}
