//! The three binaries as a user runs them: `droverd` with its private database, `drover-emu`
//! joining machines, the `drover` CLI reading them back; SIGTERM, restart.
//!
//! Needs the binaries built (`cargo build --workspace --bins`, which `scripts/test` does).

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

fn bin(name: &str) -> PathBuf {
    drover_e2e::binary(name)
}

struct Droverd {
    child: Child,
    stdout: Lines<BufReader<ChildStdout>>,
    printed: Vec<String>,
    http: String,
    machine_api: String,
}

/// Starts droverd and reads its stdout up to the machine API line.
async fn start_droverd(data_dir: &std::path::Path) -> Droverd {
    start_droverd_with(data_dir, &[], "warn").await
}

/// Starts droverd with more flags and the log filter `rust_log`, and reads its stdout up to the
/// machine API line.
async fn start_droverd_with(data_dir: &std::path::Path, flags: &[&str], rust_log: &str) -> Droverd {
    let mut child = Command::new(bin("droverd"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--machine-api-addr", "127.0.0.1:0"])
        .args(flags)
        .env("DROVER_HTTP_ADDR", "127.0.0.1:0")
        .env("DROVER_METRICS_ADDR", "127.0.0.1:0")
        .env("DROVER_RELAY_ADDR", "127.0.0.1:0")
        .env("DROVER_KUBE_PROXY_ADDR", "127.0.0.1:0")
        .env("DROVER_TALOS_PROXY_ADDR", "127.0.0.1:0")
        .env("DROVER_WIREGUARD_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", rust_log)
        .env_remove("DATABASE_URL")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    let (mut http, mut machine_api) = (String::new(), String::new());
    while let Some(line) = stdout.next_line().await.unwrap() {
        if let Some(url) = line.strip_prefix("Drover is listening on ") {
            http = url.to_owned();
        }
        if let Some(url) = line.strip_prefix("Machine API for nodes: ") {
            machine_api = url.to_owned();
            printed.push(line);
            break;
        }
        printed.push(line);
    }
    assert!(
        !machine_api.is_empty(),
        "droverd exited early; it printed {printed:?}"
    );
    Droverd {
        child,
        stdout,
        printed,
        http,
        machine_api,
    }
}

impl Droverd {
    async fn terminate(mut self) {
        let pid = Pid::from_raw(self.child.id().unwrap() as i32);
        kill(pid, Signal::SIGTERM).unwrap();
        while self.stdout.next_line().await.unwrap().is_some() {}
        let status = self.child.wait().await.unwrap();
        assert!(
            status.success(),
            "droverd exits cleanly on SIGTERM: {status}"
        );
    }
}

async fn drover(http: &str, token: Option<&str>, args: &[&str]) -> (bool, String, String) {
    let mut cmd = Command::new(bin("drover"));
    cmd.args(args)
        .env("DROVER_ENDPOINT", http)
        .env_remove("DROVER_TOKEN");
    if let Some(t) = token {
        cmd.env("DROVER_TOKEN", t);
    }
    let out = cmd.output().await.unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn droverd_drover_and_drover_emu_work_together() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let droverd = start_droverd(&data_dir).await;

    // The initial admin token is printed once and saved owner-only.
    let token_file = data_dir.join("initial-admin-token");
    let token = std::fs::read_to_string(&token_file)
        .unwrap()
        .trim()
        .to_owned();
    assert_eq!(
        std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(
        droverd.printed.iter().any(|l| l.trim() == token),
        "{:?}",
        droverd.printed
    );
    let http = droverd.http.clone();

    // No token: a clear error.
    let (ok, _, err) = drover(&http, None, &["get", "machines"]).await;
    assert!(!ok);
    assert!(err.contains("an API token is required"), "{err}");

    let (ok, out, err) = drover(
        &http,
        Some(&token),
        &["jointoken", "create", "lab", "-o", "json"],
    )
    .await;
    assert!(ok, "{err}");
    let created: serde_json::Value = serde_json::from_str(&out).unwrap();
    let secret = created["secret"].as_str().unwrap().to_owned();
    let (ok, out, _) = drover(&http, Some(&token), &["jointoken", "create", "other"]).await;
    assert!(ok);
    assert!(
        out.contains("Its secret is shown only now") && out.contains("siderolink.api="),
        "{out}"
    );

    let (ok, out, _) = drover(
        &http,
        Some(&token),
        &["jointoken", "kernel-args", "--secret", &secret],
    )
    .await;
    assert!(ok);
    assert_eq!(
        out.trim(),
        format!(
            "siderolink.api={}?jointoken={secret} talos.events.sink=[fdae:41e4:649b:9303::1]:8090 \
             talos.logging.kernel=tcp://[fdae:41e4:649b:9303::1]:8092",
            droverd.machine_api
        )
    );

    // Three emulated machines join.
    let mut emu = Command::new(bin("drover-emu"))
        .args([
            "--api",
            &format!("{}?jointoken={secret}", droverd.machine_api),
        ])
        .args(["--machines", "3", "--seed", "binaries"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut emu_out = BufReader::new(emu.stdout.take().unwrap()).lines();
    let mut joined = 0;
    while let Some(line) = emu_out.next_line().await.unwrap() {
        if line.contains(" joined: address ") {
            joined += 1;
            if joined == 3 {
                break;
            }
        }
    }
    assert_eq!(joined, 3);

    let (ok, out, err) = drover(&http, Some(&token), &["get", "machines", "-o", "json"]).await;
    assert!(ok, "{err}");
    let machines: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(machines.len(), 3);
    for m in &machines {
        for key in ["id", "address", "talosVersion", "connected"] {
            assert!(m.get(key).is_some(), "{key} in {m}");
        }
        assert_eq!(m["talosVersion"], "v1.13.8");
        assert!(m["connected"].is_boolean());
    }
    let (ok, out, _) = drover(&http, Some(&token), &["get", "machines", "-o", "yaml"]).await;
    assert!(ok);
    let from_yaml: Vec<serde_json::Value> = serde_yaml_ng::from_str(&out).unwrap();
    // Tunnels come up meanwhile, so only the stable fields are compared.
    assert_eq!(ids(&from_yaml), ids(&machines));
    let id = machines[0]["id"].as_str().unwrap();
    let (ok, out, _) = drover(&http, Some(&token), &["get", "machine", id]).await;
    assert!(ok);
    assert!(
        out.starts_with("ID") && out.contains(machines[0]["address"].as_str().unwrap()),
        "{out}"
    );
    let (ok, out, _) = drover(&http, Some(&token), &["get", "machines"]).await;
    assert!(ok);
    assert_eq!(out.lines().count(), 4, "a header and three rows: {out}");

    // The machines bring up their tunnels: facts read through them, kernel logs received.
    let detail = drover_e2e::eventually("facts of the machine", Duration::from_secs(90), || {
        let (http, token) = (http.clone(), token.clone());
        async move {
            let (ok, out, _) = drover(&http, Some(&token), &["get", "machine", id]).await;
            (ok && field(&out, "Hostname").is_some() && field(&out, "Stage") == Some("maintenance"))
                .then_some(out)
        }
    })
    .await;
    assert_eq!(field(&detail, "Connected"), Some("true"), "{detail}");
    assert_eq!(field(&detail, "Talos"), Some("v1.13.8"), "{detail}");
    let disk = field(&detail, "Disk").unwrap_or_default();
    assert!(
        disk.starts_with("/dev/sda") && disk.ends_with("system disk"),
        "{detail}"
    );
    let logs = drover_e2e::eventually(
        "kernel log through the CLI",
        Duration::from_secs(60),
        || {
            let (http, token) = (http.clone(), token.clone());
            async move {
                let (ok, out, _) = drover(&http, Some(&token), &["logs", id]).await;
                (ok && out.lines().count() >= 20).then_some(out)
            }
        },
    )
    .await;
    assert!(
        logs.lines().next().unwrap().contains("Linux version"),
        "{logs}"
    );
    let (ok, tail, _) = drover(&http, Some(&token), &["logs", id, "--tail", "5"]).await;
    assert!(ok);
    assert_eq!(tail.lines().count(), 5);
    // A cluster from a template, with the CLI: validate, sync, status until Ready, export.
    let templates = tempfile::tempdir().unwrap();
    let bad = templates.path().join("bad.yaml");
    std::fs::write(&bad, "kind: Cluster\nname: lab\ntalos: { version: v1.13.8 }\nkubernetes: { version: v1.33.1 }\n---\nkind: Workers\nname: w\nmachines: [x]\n").unwrap();
    let bad = bad.to_str().unwrap();
    let (ok, _, err) = drover(
        &http,
        Some(&token),
        &["cluster", "template", "validate", "-f", bad],
    )
    .await;
    assert!(!ok);
    assert!(err.contains("ControlPlane"), "{err}");
    let template = templates.path().join("lab.yaml");
    let uuids: Vec<&str> = machines.iter().map(|m| m["id"].as_str().unwrap()).collect();
    std::fs::write(
        &template,
        format!(
            "kind: Cluster\nname: lab\ntalos: {{ version: v1.13.8 }}\nkubernetes: {{ version: v1.33.1 }}\n---\nkind: ControlPlane\nmachines: [{}]\n---\nkind: Workers\nmachines: [{}, {}]\n",
            uuids[0], uuids[1], uuids[2]
        ),
    )
    .unwrap();
    let template = template.to_str().unwrap();
    let (ok, out, err) = drover(
        &http,
        Some(&token),
        &["cluster", "template", "validate", "-f", template],
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("valid"), "{out}");
    let (ok, out, err) = drover(
        &http,
        Some(&token),
        &["cluster", "template", "sync", "-f", template],
    )
    .await;
    assert!(ok, "{err}");
    assert!(
        out.contains("create cluster lab") && out.contains("synced"),
        "{out}"
    );
    let (ok, out, _) = drover(
        &http,
        Some(&token),
        &["cluster", "template", "diff", "-f", template],
    )
    .await;
    assert!(ok && out.contains("nothing to change"), "{out}");
    let status = drover_e2e::eventually("cluster lab Ready", Duration::from_secs(120), || {
        let (http, token) = (http.clone(), token.clone());
        async move {
            let (ok, out, _) = drover(&http, Some(&token), &["cluster", "status", "lab"]).await;
            (ok && field(&out, "Ready") == Some("true")).then_some(out)
        }
    })
    .await;
    assert!(
        status.contains("3/3 ready") && status.contains("1 member(s), bootstrapped"),
        "{status}"
    );
    let (ok, out, _) = drover(&http, Some(&token), &["get", "clusters"]).await;
    assert!(
        ok && out.lines().nth(1).unwrap().starts_with("lab "),
        "{out}"
    );
    let (ok, exported, _) = drover(
        &http,
        Some(&token),
        &["cluster", "template", "export", "lab"],
    )
    .await;
    assert!(ok && exported.contains("kind: ControlPlane"), "{exported}");
    // Upgrades from the CLI: a Talos plan, then a Kubernetes upgrade followed with --watch.
    let (ok, plan, err) = drover(
        &http,
        Some(&token),
        &["cluster", "upgrade", "talos", "lab", "1.14.0", "--dry-run"],
    )
    .await;
    assert!(ok, "{err}");
    assert!(plan.contains("Talos upgrade to 1.14.0: 3 steps"), "{plan}");
    let (ok, out, err) = drover(
        &http,
        Some(&token),
        &["cluster", "upgrade", "kubernetes", "lab", "1.34.0"],
    )
    .await;
    assert!(ok, "{err}");
    assert!(
        out.contains("Kubernetes upgrade of lab: 1.33.1 -> 1.34.0: running"),
        "{out}"
    );
    let (ok, out, err) = tokio::time::timeout(
        Duration::from_secs(180),
        drover(
            &http,
            Some(&token),
            &["cluster", "upgrade", "status", "lab", "--watch"],
        ),
    )
    .await
    .expect("the upgrade ends");
    assert!(ok, "{err}");
    assert!(
        out.trim_end().lines().next_back().is_some() && out.contains(": done"),
        "{out}"
    );
    let (ok, out, _) = drover(&http, Some(&token), &["cluster", "events", "lab"]).await;
    assert!(ok && out.contains("upgradeFinished"), "{out}");

    // The key-encryption key rotates while droverd runs; the cluster's secrets still open.
    let out = Command::new(bin("droverd"))
        .args(["--data-dir", data_dir.to_str().unwrap(), "keys", "rotate"])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("6 data key(s) re-wrapped"));
    let (ok, config, err) =
        drover(&http, Some(&token), &["cluster", "config", "lab", uuids[0]]).await;
    assert!(ok, "{err}");
    assert!(
        config.contains("controlplane") && !config.contains("PRIVATE KEY"),
        "{config}"
    );

    kill(Pid::from_raw(emu.id().unwrap() as i32), Signal::SIGTERM).unwrap();
    assert!(emu.wait().await.unwrap().success());

    let (ok, out, _) = drover(&http, Some(&token), &["jointoken", "list"]).await;
    assert!(ok);
    let lab = out.lines().find(|l| l.starts_with("lab ")).unwrap();
    assert!(lab.contains(" active ") && lab.contains(" yes "), "{lab}");
    let (ok, out, err) = drover(&http, Some(&token), &["jointoken", "revoke", "lab"]).await;
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "join token \"lab\" revoked");
    let (ok, _, err) = drover(&http, Some(&token), &["jointoken", "make-default", "other"]).await;
    assert!(ok, "{err}");
    let (ok, _, err) = drover(
        &http,
        Some(&token),
        &["jointoken", "kernel-args", "--secret", &secret],
    )
    .await;
    assert!(!ok);
    assert!(err.contains("revoked"), "{err}");

    // SIGTERM, then a restart on the same data dir: no new token, same machines.
    droverd.terminate().await;
    let droverd = start_droverd(&data_dir).await;
    assert!(
        !droverd
            .printed
            .iter()
            .any(|l| l.contains("Initial admin API token")),
        "{:?}",
        droverd.printed
    );
    let (ok, out, _) = drover(
        &droverd.http,
        Some(&token),
        &["get", "machines", "-o", "json"],
    )
    .await;
    assert!(ok);
    let again: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(ids(&again), ids(&machines));
    droverd.terminate().await;
}

/// The stable identity of listed machines: id and tunnel address (a node's WireGuard key
/// changes with every boot, and machines in a cluster reboot when they install).
fn ids(v: &[serde_json::Value]) -> Vec<(String, String)> {
    v.iter()
        .map(|m| (m["id"].to_string(), m["address"].to_string()))
        .collect()
}

/// The value of `key:` in `drover get machine` output.
fn field<'a>(out: &'a str, key: &str) -> Option<&'a str> {
    out.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':').map(str::trim))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_signed_https_droverd_prints_its_ca_and_the_cli_trusts_it() {
    let data = tempfile::tempdir().unwrap();
    let droverd = start_droverd_with(
        data.path(),
        &["--http-tls", "self-signed", "--log-format", "json"],
        "info",
    )
    .await;
    let logs: Vec<serde_json::Value> = droverd
        .printed
        .iter()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("each log line is one JSON object"))
        .collect();
    assert!(
        logs.iter()
            .any(|l| l["level"] == "INFO" && l["fields"]["message"] == "droverd is ready"),
        "JSON logs: {logs:?}"
    );
    assert!(
        droverd.http.starts_with("https://127.0.0.1:"),
        "{}",
        droverd.http
    );
    let ca_line = droverd
        .printed
        .iter()
        .find_map(|l| l.strip_prefix("Its certificate is signed by Drover's CA in "))
        .unwrap_or_else(|| panic!("the CA is printed: {:?}", droverd.printed));
    let ca_file = ca_line.split(' ').next().unwrap().to_owned();
    assert_eq!(
        std::path::Path::new(&ca_file),
        data.path().join("http-tls/ca.crt")
    );
    assert!(
        droverd
            .printed
            .iter()
            .any(|l| l.contains("BEGIN CERTIFICATE")),
        "the CA's PEM is printed too"
    );
    let token = std::fs::read_to_string(data.path().join("initial-admin-token")).unwrap();
    let token = token.trim();

    let (ok, _, err) = drover(&droverd.http, Some(token), &["get", "machines"]).await;
    assert!(!ok, "an unknown CA is refused");
    assert!(
        err.contains("certificate") || err.contains("cannot reach"),
        "{err}"
    );
    let (ok, out, err) = drover(
        &droverd.http,
        Some(token),
        &["--ca-file", &ca_file, "get", "machines"],
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("ID"), "{out}");

    // A context remembers the CA.
    let config = data.path().join("cli.yaml");
    let out = Command::new(bin("drover"))
        .env("DROVER_CONFIG", &config)
        .env_remove("DROVER_ENDPOINT")
        .env_remove("DROVER_TOKEN")
        .args(["config", "add", "tls", "--server", &droverd.http])
        .args(["--with-token", token, "--ca-file", &ca_file])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let out = Command::new(bin("drover"))
        .env("DROVER_CONFIG", &config)
        .env_remove("DROVER_ENDPOINT")
        .env_remove("DROVER_TOKEN")
        .args(["jointoken", "list"])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    droverd.terminate().await;
}

#[tokio::test]
async fn droverd_help_documents_every_setting() {
    let out = Command::new(bin("droverd"))
        .arg("--help")
        .output()
        .await
        .unwrap();
    // clap wraps long lines; compare with whitespace collapsed.
    let help = String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    for flag in [
        "--config",
        "--data-dir",
        "--http-addr",
        "--machine-api-addr",
        "--machine-api-tls-cert",
        "--http-tls",
        "--http-tls-cert",
        "--advertised-machine-api",
        "--wireguard-addr",
        "--database-url",
        "DROVER_DATA_DIR",
        "[default: ./drover-data]",
        "[default: 127.0.0.1:8080]",
        "[default: 0.0.0.0:8090]",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help:\n{help}");
    }
}

#[tokio::test]
async fn droverd_refuses_bad_settings_with_a_clear_message() {
    let out = Command::new(bin("droverd"))
        .args(["--advertised-machine-api", "ftp://x:1"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("advertised-machine-api") && err.contains("grpc://"),
        "{err}"
    );
}

#[tokio::test]
async fn droverd_refuses_plain_http_on_a_non_loopback_address_unless_asked() {
    let out = Command::new(bin("droverd"))
        .args(["--http-addr", "0.0.0.0:0"])
        .env_remove("DROVER_HTTP_TLS")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("0.0.0.0:0")
            && err.contains("--http-tls self-signed")
            && err.contains("--http-tls off"),
        "{err}"
    );
}
