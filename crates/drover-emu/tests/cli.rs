//! The `drover-emu` binary.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::FakeControlPlane;
use drover_emu::MachineIdentity;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

fn drover_emu() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_drover-emu"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("DROVER_EMU_") {
            cmd.env_remove(key);
        }
    }
    cmd.kill_on_drop(true);
    cmd
}

#[tokio::test]
async fn a_malformed_api_prints_the_join_url_error_and_exits_2() {
    let out = drover_emu()
        .args(["--api", "ftp://host:1?jointoken=t", "--machines", "1"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("use grpc:// (plaintext) or https:// (TLS)"),
        "{stderr}"
    );

    let out = drover_emu()
        .args(["--api", "grpc://host", "--machines", "1"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no port"));
}

#[tokio::test]
async fn the_binary_joins_its_machines_and_exits_0_on_sigterm() {
    let fake = FakeControlPlane::start().await;
    let mut child = drover_emu()
        .arg("--api")
        .arg(format!("grpc://{}?jointoken=t", fake.addr))
        .env("DROVER_EMU_MACHINES", "5")
        .env("DROVER_EMU_SEED", "cli-tests")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();

    let mut joined = Vec::new();
    let summary = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let line = lines
                .next_line()
                .await
                .unwrap()
                .expect("stdout ended before the summary");
            match line.split_once(" joined: ") {
                Some((uuid, rest)) => {
                    assert!(rest.starts_with("address fdae:41e4:649b:9303:"), "{line}");
                    assert!(
                        rest.ends_with(&format!(", server {}", fake.server_address())),
                        "{line}"
                    );
                    joined.push(uuid.to_owned());
                }
                None => return line,
            }
        }
    })
    .await
    .expect("no summary within 20 s");
    assert!(summary.starts_with("5 of 5 machines joined"), "{summary}");
    assert!(
        !summary.contains("jointoken"),
        "the token stays out of the output: {summary}"
    );
    joined.sort();
    let mut expected: Vec<_> = (0..5)
        .map(|i| MachineIdentity::derive("cli-tests", i).uuid)
        .collect();
    expected.sort();
    assert_eq!(joined, expected);

    // Still running until told to stop.
    assert!(child.try_wait().unwrap().is_none());
    kill(Pid::from_raw(child.id().unwrap() as i32), Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn upgrade_faults_name_a_machine_of_the_fleet_and_a_fault() {
    let run = |fault: &str| {
        drover_emu()
            .args(["--api", "grpc://127.0.0.1:9?jointoken=t", "--machines", "1"])
            .args(["--upgrade-fault", fault])
            .output()
    };
    let out = run("0=explode").await.unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("\"explode\" is not fail, boot-back-to-old or hang"),
        "{stderr}"
    );

    let out = run("7=hang").await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--upgrade-fault: no machine \"7\" in the fleet"),
        "{stderr}"
    );
}
