use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::Utc;
use drover_pki::SecretsBundle;
use secrecy::ExposeSecret as _;
use serde_yaml_ng::{Mapping, Value};

use super::*;

/// RSA-4096 generation is slow in debug builds: one bundle per test binary.
static SECRETS: LazyLock<SecretsBundle> =
    LazyLock::new(|| SecretsBundle::generate("demo", Utc::now()).expect("secrets bundle"));
static SANS: LazyLock<Vec<String>> = LazyLock::new(|| vec!["fdae:41e4:649b:9303::2".into()]);

fn input(role: MachineRole, patches: &[Patch]) -> RenderInput<'_> {
    RenderInput {
        cluster_name: "demo",
        talos_version: "1.13.0",
        kubernetes_version: "1.33.1",
        role,
        secrets: &SECRETS,
        control_plane_endpoint: "https://[fdae:41e4:649b:9303::2]:6443",
        install_disk: "/dev/sda",
        cert_sans: &SANS,
        patches,
        components: &NO_COMPONENTS,
    }
}

static NO_COMPONENTS: ComponentVersions = ComponentVersions {
    apiserver: None,
    controller_manager: None,
    scheduler: None,
    proxy: None,
    coredns: None,
    kubelet: None,
};

fn rendered(role: MachineRole, patches: &[Patch]) -> (RenderedConfig, Value) {
    let config = render(&input(role, patches)).expect("render");
    let main = parse_stream(config.expose()).expect("YAML").remove(0);
    (config, main)
}

fn patch(content: &str) -> Patch {
    Patch::parse("test", content).expect("patch")
}

/// Applies patches to a config given as YAML; the result re-serialised.
fn apply(base: &str, patches: &[&str]) -> Result<String, ConfigError> {
    let mut documents: Vec<Mapping> = parse_stream(base)
        .unwrap()
        .into_iter()
        .map(|d| d.as_mapping().cloned().expect("mapping"))
        .collect();
    for (i, content) in patches.iter().enumerate() {
        Patch::parse(&format!("p{i}"), content)?.apply(&mut documents)?;
    }
    Ok(to_stream(&documents).unwrap())
}

fn normalized(yaml: &str) -> String {
    to_stream(&parse_stream(yaml).unwrap()).unwrap()
}

fn decoded(value: Option<&Value>) -> String {
    let text = value.and_then(Value::as_str).expect("base64 string");
    String::from_utf8(BASE64.decode(text).expect("base64")).expect("UTF-8")
}

/// Every string scalar of a YAML stream.
fn strings(yaml: &str) -> Vec<String> {
    fn walk(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::String(s) => out.push(s.clone()),
            Value::Mapping(m) => m.values().for_each(|v| walk(v, out)),
            Value::Sequence(s) => s.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    parse_stream(yaml)
        .unwrap()
        .iter()
        .for_each(|d| walk(d, &mut out));
    out
}

#[test]
fn order_sorts_by_scope_then_weight_then_name() {
    use Scope::*;
    let table = [
        (ClusterMachine, 0, "cm"),
        (Cluster, 10, "c-heavy"),
        (MachineSet, 0, "ms"),
        (Cluster, -5, "c-light"),
        (Cluster, 0, "c-zeta"),
        (Cluster, 0, "c-alpha"),
        (Machine, 99, "m"),
    ];
    let patches = table.iter().map(|&(scope, weight, name)| {
        let patch = Patch::parse(name, "machine: {}").unwrap();
        ScopedPatch {
            scope,
            weight,
            patch,
        }
    });
    let names: Vec<_> = order(patches.collect())
        .into_iter()
        .map(|p| p.patch.name)
        .collect();
    assert_eq!(
        names,
        ["m", "c-light", "c-alpha", "c-zeta", "c-heavy", "ms", "cm"]
    );
    assert!(order(vec![]).is_empty());
}

/// Strategic merge cases, four lines each: a name, then (indented) the base, the patch and the
/// expected result, in flow YAML, documents separated by ` --- `.
const MERGE_CASES: &str = "
maps merge by key, scalars replace, base key order kept
  machine: {a: 1, b: {c: 2}, z: 0}
  machine: {e: 4, b: {d: 3}, a: 5}
  machine: {a: 5, b: {c: 2, d: 3}, z: 0, e: 4}
lists append
  machine: {certSANs: [a]}
  machine: {certSANs: [b]}
  machine: {certSANs: [a, b]}
nulls are ignored
  machine: {a: 1}
  machine: {a: null, b: ~}
  machine: {a: 1}
podSubnets replace
  cluster: {network: {podSubnets: [10.244.0.0/16]}}
  cluster: {network: {podSubnets: [10.0.0.0/8]}}
  cluster: {network: {podSubnets: [10.0.0.0/8]}}
serviceSubnets replace
  cluster: {network: {serviceSubnets: [10.96.0.0/12]}}
  cluster: {network: {serviceSubnets: [fd00::/108]}}
  cluster: {network: {serviceSubnets: [fd00::/108]}}
auditPolicy replaces
  cluster: {apiServer: {image: x, auditPolicy: {kind: Policy, rules: [{level: Metadata}]}}}
  cluster: {apiServer: {auditPolicy: {rules: [{level: None}]}}}
  cluster: {apiServer: {image: x, auditPolicy: {rules: [{level: None}]}}}
interfaces merge by name
  machine: {network: {interfaces: [{interface: eth0, mtu: 1500, addresses: [a]}, {interface: eth1}]}}
  machine: {network: {interfaces: [{interface: eth0, mtu: 9000, addresses: [b]}, {interface: eth2}]}}
  machine: {network: {interfaces: [{interface: eth0, mtu: 9000, addresses: [a, b]}, {interface: eth1}, {interface: eth2}]}}
interfaces merge by deviceSelector
  machine: {network: {interfaces: [{deviceSelector: {busPath: '0*'}, mtu: 1500}]}}
  machine: {network: {interfaces: [{deviceSelector: {busPath: '0*'}, dhcp: true}, {deviceSelector: {driver: e1000}}]}}
  machine: {network: {interfaces: [{deviceSelector: {busPath: '0*'}, mtu: 1500, dhcp: true}, {deviceSelector: {driver: e1000}}]}}
vlans merge by id
  machine: {network: {interfaces: [{interface: eth0, vlans: [{vlanId: 10, mtu: 1500}, {vlanId: 20}]}]}}
  machine: {network: {interfaces: [{interface: eth0, vlans: [{vlanId: 10, mtu: 9000}, {vlanId: 30}]}]}}
  machine: {network: {interfaces: [{interface: eth0, vlans: [{vlanId: 10, mtu: 9000}, {vlanId: 20}, {vlanId: 30}]}]}}
$patch: delete removes a key
  machine: {network: {hostname: a}, kubelet: {image: k}}
  machine: {network: {$patch: delete}}
  machine: {kubelet: {image: k}}
$patch: delete removes an interface
  machine: {network: {interfaces: [{interface: eth0}, {interface: eth1}]}}
  machine: {network: {interfaces: [{interface: eth0, $patch: delete}]}}
  machine: {network: {interfaces: [{interface: eth1}]}}
directives do not leak into new values
  machine: {}
  machine: {sysctls: {a: '1', b: {$patch: delete}}}
  machine: {sysctls: {a: '1'}}
documents match by apiVersion, kind and name, the main one by having no kind; others are appended
  {version: v1alpha1, machine: {a: 1}} --- {apiVersion: v1alpha1, kind: UserVolumeConfig, name: data, provisioning: {minSize: 1GB}}
  {machine: {b: 2}} --- {apiVersion: v1alpha1, kind: UserVolumeConfig, name: data, provisioning: {maxSize: 10GB}} --- {apiVersion: v1alpha1, kind: UserVolumeConfig, name: logs}
  {version: v1alpha1, machine: {a: 1, b: 2}} --- {apiVersion: v1alpha1, kind: UserVolumeConfig, name: data, provisioning: {minSize: 1GB, maxSize: 10GB}} --- {apiVersion: v1alpha1, kind: UserVolumeConfig, name: logs}
$patch: delete removes a document
  {version: v1alpha1} --- {apiVersion: v1alpha1, kind: HostnameConfig, hostname: a}
  {apiVersion: v1alpha1, kind: HostnameConfig, $patch: delete}
  {version: v1alpha1}
";

#[test]
fn strategic_merge_rules() {
    let lines: Vec<&str> = MERGE_CASES.trim().lines().collect();
    let (cases, rest) = lines.as_chunks::<4>();
    assert!(rest.is_empty(), "incomplete case: {rest:?}");
    for case in cases {
        let [name, base, patch, expected] = case.map(|l| l.trim().replace(" --- ", "\n---\n"));
        assert_eq!(
            apply(&base, &[&patch]).unwrap(),
            normalized(&expected),
            "{name}"
        );
    }
}

#[test]
fn json_patches() {
    let base = "machine: {type: worker, certSANs: [a], install: {disk: /dev/sda, wipe: false}}\n";
    #[rustfmt::skip]
    let cases: &[(&str, &str, &str)] = &[
        ("add, appended to a list and as a new key",
         r#"[{"op": "add", "path": "/machine/certSANs/-", "value": "b"}, {"op": "add", "path": "/machine/env", "value": {"A": "1"}}]"#,
         "machine: {type: worker, certSANs: [a, b], install: {disk: /dev/sda, wipe: false}, env: {A: '1'}}"),
        ("replace, in YAML, key order kept",
         "- op: replace\n  path: /machine/install/disk\n  value: /dev/vda\n",
         "machine: {type: worker, certSANs: [a], install: {disk: /dev/vda, wipe: false}}"),
        ("remove",
         r#"[{"op": "remove", "path": "/machine/install/wipe"}]"#,
         "machine: {type: worker, certSANs: [a], install: {disk: /dev/sda}}"),
    ];
    for (name, patch, expected) in cases {
        assert!(Patch::parse(name, patch).unwrap().is_json_patch(), "{name}");
        assert_eq!(
            apply(base, &[patch]).unwrap(),
            normalized(expected),
            "{name}"
        );
    }

    let missing = apply(base, &[r#"[{"op": "remove", "path": "/machine/nope"}]"#]);
    assert!(
        matches!(missing, Err(ConfigError::JsonPatchFailed { .. })),
        "{missing:?}"
    );

    let multi = format!("{base}---\napiVersion: v1alpha1\nkind: HostnameConfig\nhostname: a\n");
    let err = apply(
        &multi,
        &[r#"[{"op": "remove", "path": "/machine/certSANs"}]"#],
    )
    .unwrap_err();
    assert!(matches!(
        err,
        ConfigError::JsonPatchNeedsSingleDocument { documents: 2, .. }
    ));
    assert!(err.to_string().contains("single-document"), "{err}");
}

#[test]
fn forbidden_paths_are_refused_at_parse_time() {
    for path in FORBIDDEN_PATHS {
        let nested = path
            .rsplit('.')
            .fold("x".to_owned(), |inner, key| format!("{{{key}: {inner}}}"));
        let pointer = format!("/{}", path.replace('.', "/"));
        let json = format!(r#"[{{"op": "replace", "path": "{pointer}/sub", "value": "x"}}]"#);
        for content in [nested, json] {
            let err = Patch::parse("my-patch", &content).unwrap_err();
            assert!(
                matches!(err, ConfigError::Forbidden { .. }),
                "{content}: {err:?}"
            );
            assert!(
                err.to_string()
                    .starts_with("patch \"my-patch\" may not set "),
                "{err}"
            );
            assert!(err.to_string().contains(path), "{content}: {err}");
        }
    }
    #[rustfmt::skip]
    let cases: &[(&str, Option<&str>)] = &[
        ("cluster: {ca: {crt: x}}", Some("cluster.ca")),
        ("cluster: {$patch: delete}", Some("cluster")),
        ("cluster: {etcd: {$patch: delete}}", Some("cluster.etcd")),
        ("machine: oops", Some("machine")),
        ("$patch: delete", Some("the whole document")),
        (r#"[{"op": "remove", "path": "/cluster"}]"#, Some("cluster")),
        (r#"[{"op": "replace", "path": "", "value": {}}]"#, Some("the whole document")),
        (r#"[{"op": "move", "from": "/cluster/ca", "path": "/x"}]"#, Some("cluster.ca")),
        (r#"[{"op": "add", "path": "/machine/ca/key", "value": "k"}]"#, Some("machine.ca.key")),
        // Harmless: neighbours of forbidden paths, nulls, reads, and other documents.
        ("cluster: {network: {dnsDomain: x}, etcd: {extraArgs: {a: b}}, caX: 1}", None),
        ("machine: {certSANs: [x], network: {hostname: a}}", None),
        ("cluster: {id: ~}", None),
        ("apiVersion: v1alpha1\nkind: Custom\nname: x\ncluster: {id: y}\n", None),
        (r#"[{"op": "add", "path": "/cluster/etcd/extraArgs", "value": {}}]"#, None),
        (r#"[{"op": "test", "path": "/cluster/id", "value": "x"}]"#, None),
        (r#"[{"op": "copy", "from": "/machine/ca/crt", "path": "/machine/x"}]"#, None),
    ];
    for (content, refused) in cases {
        match (Patch::parse("my-patch", content), refused) {
            (Ok(_), None) => {}
            (Err(ConfigError::Forbidden { patch, path }), Some(expected)) => {
                assert_eq!(
                    (patch.as_str(), path.as_str()),
                    ("my-patch", *expected),
                    "{content}"
                );
            }
            (other, _) => panic!("{content}: {other:?}"),
        }
    }
    let err = Patch::parse("my-patch", "cluster: {ca: {crt: x}}").unwrap_err();
    assert_eq!(
        err.to_string(),
        "patch \"my-patch\" may not set cluster.ca: cluster identity and CAs are managed by Drover"
    );
}

#[test]
fn forbidden_paths_are_refused_at_render_time() {
    // A patch that bypassed parsing (e.g. stored before a rule existed).
    let bypassed = |body| Patch {
        name: "old".into(),
        body,
    };
    let strategic = parse_stream("cluster: {id: x}").unwrap()[0]
        .as_mapping()
        .cloned()
        .unwrap();
    let json = serde_json::from_str(r#"[{"op": "remove", "path": "/machine/token"}]"#).unwrap();
    for p in [
        bypassed(patch::Body::Strategic(vec![strategic])),
        bypassed(patch::Body::Json(json)),
    ] {
        let err = render(&input(MachineRole::Worker, &[p])).unwrap_err();
        assert!(
            matches!(err, ConfigError::Forbidden { ref patch, .. } if patch == "old"),
            "{err:?}"
        );
    }
}

#[test]
fn patch_parse_errors() {
    let cases: &[(&str, &str)] = &[
        ("", "is empty"),
        ("  \n# only a comment\n", "is empty"),
        ("machine: [a\n", "line"),
        ("machine:\n  a: 1\n a: 2\n", "line"),
        ("just text", "neither a mapping"),
        ("machine: {}\n---\n- a\n", "document 2"),
        ("[1, 2]", "not a JSON patch"),
        (
            r#"[{"op": "frobnicate", "path": "/a"}]"#,
            "not a JSON patch",
        ),
    ];
    for (content, expected) in cases {
        let err = Patch::parse("bad-patch", content).unwrap_err().to_string();
        assert!(err.starts_with("patch \"bad-patch\""), "{content:?}: {err}");
        assert!(err.contains(expected), "{content:?}: {err}");
    }
    assert!(
        !Patch::parse("json", r#"{"machine": {"certSANs": ["a"]}}"#)
            .unwrap()
            .is_json_patch()
    );
}

#[test]
fn render_input_is_validated() {
    type Change = fn(&mut RenderInput);
    let cases: &[(Change, &str)] = &[
        (|i| i.cluster_name = " ", "cluster name"),
        (|i| i.talos_version = "v1.13.0", "Talos version"),
        (|i| i.kubernetes_version = "", "Kubernetes version"),
        (|i| i.control_plane_endpoint = "10.0.0.1:6443", "endpoint"),
        (|i| i.install_disk = "sda", "install disk"),
    ];
    for (change, field) in cases {
        let mut bad = input(MachineRole::Worker, &[]);
        change(&mut bad);
        let err = render(&bad).unwrap_err().to_string();
        assert!(err.contains(field), "{err}");
    }
}

/// The value at `path`, as text: mappings as `{..}`, base64 PEM as `PEM <its first line>`.
fn shown(document: &Value, path: &str) -> Option<String> {
    Some(match lookup(document, path)? {
        Value::Mapping(_) => "{..}".into(),
        Value::Bool(b) => b.to_string(),
        value if path.ends_with(".crt") || path.ends_with(".key") => {
            format!("PEM {}", decoded(Some(value)).lines().next()?)
        }
        value => value.as_str()?.to_owned(),
    })
}

/// No string of a YAML stream is, or is the base64 of, a private key.
fn assert_no_private_keys(yaml: &str) {
    for value in strings(yaml) {
        let decoded = BASE64.decode(&value).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&decoded).contains("PRIVATE KEY"),
            "{value}"
        );
        assert!(!value.contains("PRIVATE KEY"), "{value}");
    }
}

#[test]
fn control_planes_get_keys_and_workers_only_certificates() {
    let (_, cp) = rendered(MachineRole::ControlPlane, &[]);
    let (worker_config, worker) = rendered(MachineRole::Worker, &[]);
    let both = |v: &str| (Some(v.to_owned()), Some(v.to_owned()));
    let cp_only = |v: &str| (Some(v.to_owned()), None);
    let pem = |kind| format!("PEM -----BEGIN {kind}-----");
    let (cert, ec_key) = (pem("CERTIFICATE"), pem("EC PRIVATE KEY"));
    let image = |name| format!("registry.k8s.io/kube-{name}:v1.33.1");
    let table = [
        ("version", both("v1alpha1")),
        (
            "machine.type",
            (Some("controlplane".into()), Some("worker".into())),
        ),
        ("machine.token", both(SECRETS.trustd_token.expose_secret())),
        ("machine.ca.crt", both(&cert)),
        ("machine.ca.key", cp_only(&pem("ED25519 PRIVATE KEY"))),
        ("machine.certSANs.0", both("fdae:41e4:649b:9303::2")),
        (
            "machine.kubelet.image",
            both("ghcr.io/siderolabs/kubelet:v1.33.1"),
        ),
        ("machine.install.disk", both("/dev/sda")),
        (
            "machine.install.image",
            both("ghcr.io/siderolabs/installer:v1.13.0"),
        ),
        ("machine.install.wipe", both("false")),
        ("machine.network", both("{..}")),
        ("cluster.id", both(&SECRETS.cluster_id)),
        (
            "cluster.secret",
            both(SECRETS.cluster_secret.expose_secret()),
        ),
        ("cluster.clusterName", both("demo")),
        (
            "cluster.controlPlane.endpoint",
            both("https://[fdae:41e4:649b:9303::2]:6443"),
        ),
        ("cluster.network.dnsDomain", both("cluster.local")),
        ("cluster.network.podSubnets.0", both("10.244.0.0/16")),
        ("cluster.network.serviceSubnets.0", both("10.96.0.0/12")),
        (
            "cluster.token",
            both(SECRETS.bootstrap_token.expose_secret()),
        ),
        (
            "cluster.secretboxEncryptionSecret",
            cp_only(SECRETS.secretbox_secret.expose_secret()),
        ),
        ("cluster.ca.crt", both(&cert)),
        ("cluster.ca.key", cp_only(&ec_key)),
        ("cluster.aggregatorCA.crt", cp_only(&cert)),
        ("cluster.aggregatorCA.key", cp_only(&ec_key)),
        (
            "cluster.serviceAccount.key",
            cp_only(&pem("RSA PRIVATE KEY")),
        ),
        ("cluster.etcd.ca.crt", cp_only(&cert)),
        ("cluster.etcd.ca.key", cp_only(&ec_key)),
        ("cluster.etcd", cp_only("{..}")),
        ("cluster.apiServer.image", cp_only(&image("apiserver"))),
        (
            "cluster.controllerManager.image",
            cp_only(&image("controller-manager")),
        ),
        ("cluster.scheduler.image", cp_only(&image("scheduler"))),
        ("cluster.proxy.image", cp_only(&image("proxy"))),
        (
            "cluster.coreDNS.image",
            cp_only("registry.k8s.io/coredns/coredns:v1.12.0"),
        ),
        (
            "cluster.inlineManifests.0.name",
            cp_only(READERS_BINDING_NAME),
        ),
    ];
    for (path, (control_plane, worker_value)) in table {
        assert_eq!(shown(&cp, path), control_plane, "control plane: {path}");
        assert_eq!(shown(&worker, path), worker_value, "worker: {path}");
    }
    assert_eq!(
        decoded(lookup(&cp, "machine.ca.crt")),
        SECRETS.os_ca.cert_pem
    );
    assert_no_private_keys(worker_config.expose());
}

#[test]
fn rendering_is_deterministic_and_applies_patches_in_order() {
    let patches = [
        patch("machine: {network: {hostname: first}, certSANs: [a.example]}"),
        patch("machine: {network: {hostname: second}}"),
        patch(r#"[{"op": "replace", "path": "/machine/install/disk", "value": "/dev/nvme0n1"}]"#),
    ];
    let (a, main) = rendered(MachineRole::ControlPlane, &patches);
    let (b, _) = rendered(MachineRole::ControlPlane, &patches);
    assert_eq!(a.expose(), b.expose());
    assert_eq!(a.sha256_hex(), b.sha256_hex());
    assert_eq!(a.sha256_hex().len(), 64);
    let (plain, _) = rendered(MachineRole::ControlPlane, &[]);
    assert_ne!(plain.sha256_hex(), a.sha256_hex());

    let text = |path| lookup(&main, path).and_then(Value::as_str);
    assert_eq!(text("machine.network.hostname"), Some("second"));
    assert_eq!(text("machine.install.disk"), Some("/dev/nvme0n1"));
    let sans = lookup(&main, "machine.certSANs")
        .and_then(Value::as_sequence)
        .unwrap();
    assert_eq!(sans.len(), 2);
    // Key order survives the JSON patch round trip.
    let keys: Vec<&str> = main
        .as_mapping()
        .unwrap()
        .keys()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(keys, ["version", "machine", "cluster"]);
    assert!(
        a.expose()
            .starts_with("version: v1alpha1\nmachine:\n  type: controlplane\n")
    );

    let debug = format!("{a:?}");
    assert!(
        debug.contains(&a.sha256_hex()) && !debug.contains(SECRETS.trustd_token.expose_secret())
    );
}

#[test]
fn redaction_removes_every_secret_and_keeps_certificates() {
    let registry = "machine: {registries: {config: {mirror: {auth: {username: u, password: pw}}}}}";
    let (config, main) = rendered(MachineRole::ControlPlane, &[patch(registry)]);
    let redacted = config.redacted();
    assert_eq!(redacted, redact(config.expose()));
    assert_no_private_keys(&redacted);
    let secrets = [
        &SECRETS.cluster_secret,
        &SECRETS.bootstrap_token,
        &SECRETS.trustd_token,
        &SECRETS.secretbox_secret,
    ];
    for secret in secrets {
        assert!(!redacted.contains(secret.expose_secret()));
    }
    let redacted_main = parse_stream(&redacted).unwrap().remove(0);
    let table = [
        ("machine.token", true),
        ("machine.ca.key", true),
        ("cluster.token", true),
        ("cluster.secret", true),
        ("cluster.secretboxEncryptionSecret", true),
        ("cluster.serviceAccount.key", true),
        ("cluster.etcd.ca.key", true),
        ("machine.registries.config.mirror.auth.password", true),
        ("machine.registries.config.mirror.auth.username", true),
        ("machine.ca.crt", false),
        ("cluster.ca.crt", false),
        ("cluster.etcd.ca.crt", false),
        ("cluster.id", false),
        ("cluster.clusterName", false),
    ];
    for (path, secret) in table {
        let expected = if secret {
            Some(inspect::REDACTED)
        } else {
            lookup(&main, path).and_then(Value::as_str)
        };
        assert!(expected.is_some(), "{path}");
        assert_eq!(
            lookup(&redacted_main, path).and_then(Value::as_str),
            expected,
            "{path}"
        );
    }
    assert!(!redacted.contains(": pw"), "{redacted}");
    assert_eq!(redact(&redacted), redacted, "idempotent");
    assert!(redact("key: [unclosed").starts_with("# unreadable machine config (sha256 "));
}

#[test]
fn diffs_are_redacted_and_empty_when_equal() {
    let (old, _) = rendered(MachineRole::Worker, &[]);
    let (new, _) = rendered(
        MachineRole::Worker,
        &[patch("machine: {network: {hostname: w1}}")],
    );
    assert_eq!(diff(old.expose(), old.expose()), "");
    let changed = diff(old.expose(), new.expose());
    assert!(changed.starts_with("--- old\n+++ new\n@@"), "{changed}");
    assert!(
        changed
            .lines()
            .any(|l| l.starts_with('+') && l.contains("hostname: w1")),
        "{changed}"
    );

    let token = SECRETS.trustd_token.expose_secret();
    let rotated = old.expose().replace(token, "abcdef.0123456789abcdef");
    assert_eq!(
        diff(old.expose(), &rotated),
        "",
        "secrets do not show, not even as a change"
    );
    assert!(!changed.contains(token));
}

#[test]
fn summary_reads_what_a_machine_runs() {
    for role in [MachineRole::ControlPlane, MachineRole::Worker] {
        let (config, _) = rendered(role, &[patch("machine: {install: {disk: /dev/vda}}")]);
        let summary = MachineConfigSummary::parse(config.expose()).unwrap();
        assert_eq!(
            summary,
            MachineConfigSummary {
                role,
                cluster_id: SECRETS.cluster_id.clone(),
                cluster_name: "demo".into(),
                os_ca_crt_pem: SECRETS.os_ca.cert_pem.clone(),
                kubernetes_version: "1.33.1".into(),
                talos_version: Some("1.13.0".into()),
                install_disk: Some("/dev/vda".into()),
                control_plane_endpoint: "https://[fdae:41e4:649b:9303::2]:6443".into(),
            }
        );
    }
    let cases: &[(&str, &str)] = &[
        (
            "apiVersion: v1alpha1\nkind: X\n",
            "the v1alpha1 document is missing",
        ),
        ("machine: {type: init}", "machine.ca.crt is missing"),
        ("machine: {type: boss}", "machine.type is neither"),
        (
            "machine: {type: worker, ca: {crt: bm90IGEgY2VydA==}}",
            "machine.ca.crt is not",
        ),
        ("machine: [", "not valid YAML"),
    ];
    for (yaml, expected) in cases {
        let err = MachineConfigSummary::parse(yaml).unwrap_err().to_string();
        assert!(err.contains(expected), "{yaml}: {err}");
    }
    let versions = [
        ("ghcr.io/siderolabs/kubelet:v1.33.1", Some("1.33.1")),
        (
            "registry.local:5000/kubelet:v1.34.0@sha256:abc",
            Some("1.34.0"),
        ),
        ("registry.local:5000/kubelet", None),
    ];
    for (image, expected) in versions {
        assert_eq!(
            inspect::image_version(image).as_deref(),
            expected,
            "{image}"
        );
    }
}

#[test]
fn component_versions_can_differ_while_a_kubernetes_upgrade_rolls() {
    let components = ComponentVersions {
        apiserver: Some("1.34.0".into()),
        ..Default::default()
    };
    let mut input = input(MachineRole::ControlPlane, &[]);
    input.components = &components;
    let config = render(&input).unwrap();
    let yaml = config.expose();
    assert!(
        yaml.contains("registry.k8s.io/kube-apiserver:v1.34.0"),
        "{yaml}"
    );
    assert!(yaml.contains("registry.k8s.io/kube-scheduler:v1.33.1"));
    assert!(yaml.contains("ghcr.io/siderolabs/kubelet:v1.33.1"));
    assert!(yaml.contains("registry.k8s.io/coredns/coredns:v1.12.0"));
    let addons = ComponentVersions {
        proxy: Some("1.34.0".into()),
        coredns: Some("1.34.0".into()),
        ..Default::default()
    };
    input.components = &addons;
    let yaml = render(&input).unwrap().expose().to_owned();
    assert!(yaml.contains(&proxy_image("1.34.0")), "{yaml}");
    assert!(
        yaml.contains("registry.k8s.io/coredns/coredns:v1.12.1"),
        "CoreDNS follows the Kubernetes minor: {yaml}"
    );
    let bad = ComponentVersions {
        kubelet: Some("v1.34.0".into()),
        ..Default::default()
    };
    input.components = &bad;
    assert!(
        render(&input).is_err(),
        "versions are written without the v"
    );
}
