//! The `drover` CLI against a live droverd: listings that keep watching.

use std::time::Duration;

use drover_e2e::{TestDrover, binary, fast_retry, no_cancel};
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
