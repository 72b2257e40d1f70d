//! The `drover` CLI against a live droverd: listings that keep watching, manifests applied and
//! deleted.

use std::time::Duration;

use drover_e2e::{TestDrover, binary, drover_cli, fast_retry, no_cancel};
use tokio::io::AsyncBufReadExt as _;

/// Reads lines until one satisfies `wanted`; every line read goes into `seen`.
async fn read_until(
    lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    seen: &mut Vec<String>,
    wanted: impl Fn(&str) -> bool,
) {
    let found = tokio::time::timeout(Duration::from_secs(300), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let hit = wanted(&line);
            seen.push(line);
            if hit {
                return;
            }
        }
        panic!("drover exited; it printed:\n{}", seen.join("\n"));
    })
    .await;
    assert!(
        found.is_ok(),
        "never printed what was awaited:\n{}",
        seen.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_machines_watch_prints_again_when_a_machine_joins() {
    let drover = TestDrover::start().await;
    let mut watch = tokio::process::Command::new(binary("drover"))
        .env("DROVER_CONFIG", "/nonexistent/drover.yaml")
        .args([
            "--endpoint",
            &drover.http_url(),
            "--token",
            drover.admin_token(),
        ])
        .args(["get", "machines", "--watch"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(watch.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    read_until(&mut lines, &mut seen, |l| l.starts_with("ID")).await;

    let token = drover.join_token("watch").await;
    let mut fleet = drover.fleet(&token.secret, 1, "watch", "v1.13.0");
    fleet
        .provision_all(&fast_retry(None), &no_cancel())
        .await
        .unwrap();
    let id = drover.client().all_machines().await.unwrap()[0]
        .id
        .to_string();
    read_until(&mut lines, &mut seen, |l| l.starts_with(&id)).await;
    let headers = seen.iter().filter(|l| l.starts_with("ID")).count();
    assert!(headers >= 2, "the table is printed again: {seen:#?}");
    watch.kill().await.unwrap();
    drover.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_and_delete_a_manifest_of_classes_and_a_cluster() {
    let drover = TestDrover::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    drover_cli(
        &config,
        &[
            "config",
            "add",
            "lab",
            "--server",
            &drover.http_url(),
            "--with-token",
            drover.admin_token(),
        ],
    )
    .unwrap();
    let manifest = dir.path().join("lab.yaml");
    let write = |selector: &str| {
        std::fs::write(
            &manifest,
            format!(
                "kind: MachineClass\nname: small\nselectors: [\"{selector}\"]\n---\n\
                 kind: Cluster\nname: lab\ntalos: {{ version: v1.13.0 }}\n\
                 kubernetes: {{ version: v1.33.1 }}\n---\n\
                 kind: ControlPlane\nmachines: [ghost-1]\n"
            ),
        )
        .unwrap();
    };
    let file = manifest.display().to_string();
    write("drover.dev/cores<=4");
    let out = drover_cli(&config, &["apply", "-f", &file]).unwrap();
    assert!(
        out.contains("machineclass small: created") && out.contains("cluster lab synced"),
        "{out}"
    );
    let client = drover.client();
    assert_eq!(
        client
            .get_cluster("lab")
            .await
            .unwrap()
            .spec
            .control_plane
            .machines
            .len(),
        1
    );
    assert_eq!(
        client.list_machine_classes().await.unwrap()[0].selectors,
        ["drover.dev/cores<=4"]
    );

    let class = drover_cli(&config, &["describe", "machineclass", "small"]).unwrap();
    assert!(
        class.contains("Selectors:") && class.contains("drover.dev/cores<=4"),
        "{class}"
    );
    let cluster = drover_cli(&config, &["describe", "cluster", "lab"]).unwrap();
    assert!(cluster.contains("lab"), "{cluster}");
    let missing = drover_cli(&config, &["describe", "jointoken", "nope"]).unwrap_err();
    assert!(
        missing.contains("join token \"nope\" not found"),
        "{missing}"
    );

    // Again: nothing changes. A dry run of a change says so and changes nothing.
    let out = drover_cli(&config, &["apply", "-f", &file]).unwrap();
    assert!(
        out.contains("small: unchanged") && out.contains("nothing to change"),
        "{out}"
    );
    write("drover.dev/cores<=8");
    let out = drover_cli(&config, &["apply", "-f", &file, "--dry-run"]).unwrap();
    assert!(out.contains("small: would be updated"), "{out}");
    assert_eq!(
        client.list_machine_classes().await.unwrap()[0].selectors,
        ["drover.dev/cores<=4"]
    );

    // A bad document is refused with what is wrong, and nothing is applied.
    std::fs::write(
        &manifest,
        "kind: MachineClass\nname: small\nselector: [x]\n",
    )
    .unwrap();
    let err = drover_cli(&config, &["apply", "-f", &file]).unwrap_err();
    assert!(
        err.contains("document 1 (kind: MachineClass)") && err.contains("selector"),
        "{err}"
    );

    write("drover.dev/cores<=4");
    let out = drover_cli(&config, &["delete", "-f", &file]).unwrap();
    assert!(
        out.contains("cluster lab is being deleted") && out.contains("machineclass small deleted"),
        "{out}"
    );
    assert!(client.list_machine_classes().await.unwrap().is_empty());
    drover.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_accounts_users_and_grants_through_the_cli() {
    let drover = TestDrover::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    let url = drover.http_url();
    drover_cli(
        &config,
        &[
            "config",
            "add",
            "admin",
            "--server",
            &url,
            "--with-token",
            drover.admin_token(),
        ],
    )
    .unwrap();
    let spec = drover_e2e::cluster_spec(
        "lab",
        "1.13.0",
        "1.33.1",
        &["ghost-1".into()],
        &["ghost-2".into()],
    );
    drover.client().create_cluster(&spec).await.unwrap();

    // A service account: its key is shown once, and works as a token of its own context.
    let created: serde_json::Value = serde_json::from_str(
        &drover_cli(
            &config,
            &[
                "serviceaccount",
                "create",
                "ci",
                "--role",
                "reader",
                "-o",
                "json",
            ],
        )
        .unwrap(),
    )
    .unwrap();
    let key = created["secret"]
        .as_str()
        .expect("the key, once")
        .to_owned();
    let listed = drover_cli(&config, &["serviceaccount", "list"]).unwrap();
    assert!(listed.contains("ci") && !listed.contains(&key), "{listed}");
    drover_cli(
        &config,
        &[
            "config",
            "add",
            "ci",
            "--server",
            &url,
            "--with-token",
            &key,
        ],
    )
    .unwrap();
    let as_ci = ["--context", "ci"];
    drover_cli(&config, &[&as_ci[..], &["get", "clusters"]].concat()).unwrap();
    let refused = drover_cli(
        &config,
        &[&as_ci[..], &["cluster", "delete", "lab"]].concat(),
    )
    .unwrap_err();
    assert!(
        refused.contains("operator"),
        "a Reader may not delete: {refused}"
    );

    // A grant lifts it to Operator on that cluster only; revoking takes it back.
    drover_cli(
        &config,
        &[
            "cluster",
            "grant",
            "lab",
            "--service-account",
            "ci",
            "--role",
            "operator",
        ],
    )
    .unwrap();
    let grants = drover_cli(&config, &["cluster", "grants", "lab", "-o", "json"]).unwrap();
    assert!(grants.contains("\"serviceAccount\": \"ci\""), "{grants}");
    drover_cli(
        &config,
        &["cluster", "revoke", "lab", "--service-account", "ci"],
    )
    .unwrap();
    assert!(
        drover_cli(&config, &["cluster", "grants", "lab"])
            .unwrap()
            .lines()
            .count()
            <= 1
    );

    // Invitations and users.
    drover_cli(
        &config,
        &["user", "invite", "ann@example.com", "--role", "operator"],
    )
    .unwrap();
    let invitations = drover_cli(&config, &["user", "invitations"]).unwrap();
    assert!(invitations.contains("ann@example.com"), "{invitations}");
    let users = drover_cli(&config, &["user", "list", "-o", "yaml"]).unwrap();
    assert!(
        users.contains("ann@example.com") && users.contains("operator"),
        "{users}"
    );
    drover_cli(&config, &["user", "cancel-invitation", "ann@example.com"]).unwrap();
    assert!(
        !drover_cli(&config, &["user", "list"])
            .unwrap()
            .contains("ann@example.com")
    );

    // Revoked: the key stops working at once.
    drover_cli(&config, &["serviceaccount", "revoke", "ci"]).unwrap();
    let err = drover_cli(&config, &[&as_ci[..], &["get", "clusters"]].concat()).unwrap_err();
    assert!(
        err.contains("(401)") && err.contains("hint: log in"),
        "{err}"
    );
    drover.stop().await;
}
