//! The deployment files: `docker-compose.yml` as Compose itself reads it (`docker compose
//! config`, which needs no engine), the systemd unit as systemd reads it (`systemd-analyze
//! verify` and its sandbox rating), and the Dockerfile's stages; every `DROVER_*` variable they
//! set is a real setting. A check whose tool is missing says so and is skipped.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml_ng::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn succeeds(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `docker compose` (the plugin), else `docker-compose`.
fn compose() -> Option<Vec<&'static str>> {
    if succeeds("docker", &["compose", "version"]) {
        Some(vec!["docker", "compose"])
    } else if succeeds("docker-compose", &["--version"]) {
        Some(vec!["docker-compose"])
    } else {
        None
    }
}

/// Every `DROVER_*` name in `text` (up to the first character that cannot be in one).
fn drover_variables(text: &str) -> Vec<String> {
    text.match_indices("DROVER_")
        .map(|(at, _)| {
            text[at..]
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || *c == '_' || c.is_ascii_digit())
                .collect::<String>()
        })
        .collect()
}

fn assert_real_settings(file: &str, text: &str) {
    let reference = droverd::reference::markdown();
    for name in drover_variables(text) {
        let known = reference.contains(&format!("`{name}`"))
            // Only in the comments, e.g. DROVER_HTTP_TLS_CERT/_KEY.
            || name.ends_with('_');
        assert!(known, "{file} sets {name}, which is no droverd setting");
    }
}

#[test]
fn docker_compose_file_is_valid_and_runs_postgres_and_droverd_with_volumes_and_healthchecks() {
    let text = std::fs::read_to_string(repo().join("docker-compose.yml")).unwrap();
    assert_real_settings("docker-compose.yml", &text);
    let Some(compose) = compose() else {
        println!("SKIPPED: neither `docker compose` nor `docker-compose` is installed");
        return;
    };
    let out = Command::new(compose[0])
        .args(&compose[1..])
        .args(["--file", "docker-compose.yml", "config"])
        .current_dir(repo())
        .env("PUBLIC_HOST", "drover.example.com")
        .env_remove("POSTGRES_PASSWORD")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "compose rejects docker-compose.yml: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config: Value = serde_yaml_ng::from_slice(&out.stdout).unwrap();
    let services = &config["services"];
    let (postgres, droverd) = (&services["postgres"], &services["droverd"]);
    assert!(postgres["healthcheck"]["test"].is_sequence());
    assert!(droverd["healthcheck"]["test"].is_sequence());
    assert_eq!(
        droverd["depends_on"]["postgres"]["condition"].as_str(),
        Some("service_healthy")
    );
    assert_eq!(
        droverd["build"]["dockerfile"].as_str(),
        Some("deploy/Dockerfile")
    );
    let env = &droverd["environment"];
    assert_eq!(
        env["DATABASE_URL"].as_str(),
        Some("postgres://drover:drover@postgres:5432/drover")
    );
    assert_eq!(
        env["DROVER_ADVERTISED_MACHINE_API"].as_str(),
        Some("grpc://drover.example.com:8090")
    );
    assert_eq!(env["DROVER_HTTP_TLS"].as_str(), Some("self-signed"));
    // Both keep their data in named volumes, which outlive the containers.
    for (service, path) in [
        (postgres, "/var/lib/postgresql/data"),
        (droverd, "/var/lib/drover"),
    ] {
        let mounted = service["volumes"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|v| match v {
                Value::String(s) => s.contains(&format!(":{path}")),
                v => v["target"].as_str() == Some(path) && v["type"].as_str() != Some("bind"),
            });
        assert!(mounted, "{path} is on a volume: {service:?}");
    }
    for volume in ["postgres-data", "drover-data"] {
        assert!(config["volumes"].get(volume).is_some(), "volume {volume}");
    }
}

#[test]
fn the_systemd_unit_verifies_and_is_sandboxed() {
    let unit = std::fs::read_to_string(repo().join("deploy/droverd.service")).unwrap();
    assert_real_settings("deploy/droverd.service", &unit);
    if !succeeds("systemd-analyze", &["--version"]) {
        println!("SKIPPED: systemd-analyze is not installed");
        return;
    }
    // As installed, with ExecStart naming a droverd that exists here.
    let dir = tempfile::tempdir().unwrap();
    let installed = dir.path().join("droverd.service");
    let droverd = drover_e2e::binary("droverd");
    std::fs::write(
        &installed,
        unit.replace("/usr/local/bin/droverd", droverd.to_str().unwrap()),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&installed)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd rejects the unit: {said}");
    for complaint in ["Unknown key", "Invalid", "Failed to parse", "ignoring"] {
        assert!(!said.contains(complaint), "systemd: {said}");
    }

    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes"])
        .arg(&installed)
        .output()
        .unwrap();
    let rating = String::from_utf8_lossy(&out.stdout);
    let exposure: f64 = rating
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for droverd.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in: {rating}"));
    assert!(
        exposure <= 2.0,
        "the sandbox got weaker: {exposure}\n{rating}"
    );
}

#[test]
fn the_dockerfile_builds_in_stages_and_runs_droverd_unprivileged() {
    let text = std::fs::read_to_string(repo().join("deploy/Dockerfile")).unwrap();
    assert_real_settings("deploy/Dockerfile", &text);
    // Each stage with its instructions (continuation lines folded).
    let mut stages: Vec<(String, Vec<String>)> = Vec::new();
    for line in text.replace("\\\n", " ").lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(from) = line.strip_prefix("FROM ") {
            stages.push((from.to_owned(), Vec::new()));
        } else {
            stages
                .last_mut()
                .expect("FROM first")
                .1
                .push(line.to_owned());
        }
    }
    let build = &stages[0];
    assert!(
        build.0.starts_with("rust:"),
        "compiles in a Rust stage: {}",
        build.0
    );
    let runtimes: Vec<_> = stages
        .iter()
        .filter(|(from, _)| !from.starts_with("rust:"))
        .collect();
    assert!(!runtimes.is_empty());
    for (from, lines) in &runtimes {
        assert!(
            !from.contains("rust"),
            "no toolchain in the runtime: {from}"
        );
        let user = lines.iter().rev().find_map(|l| l.strip_prefix("USER "));
        if let Some(user) = user {
            assert!(
                !user.starts_with("root") && !user.starts_with('0'),
                "{from} runs as {user}"
            );
        }
    }
    let base = runtimes
        .iter()
        .find(|(from, _)| from.ends_with(" AS runtime"))
        .expect("a runtime stage");
    assert!(
        base.0.starts_with("debian:") && base.0.contains("-slim"),
        "{}",
        base.0
    );
    assert!(base.1.iter().any(|l| l == "USER 10001:10001"));
    assert!(base.1.iter().any(|l| l.starts_with("COPY --from=build ")));
    assert!(base.1.iter().any(|l| l.starts_with("HEALTHCHECK ")));
    assert!(
        base.1
            .iter()
            .any(|l| l.contains("DROVER_HTTP_TLS=self-signed"))
    );
    assert!(
        stages.last().unwrap().0 == "runtime",
        "the default target is the runtime image"
    );
}

#[test]
fn the_example_settings_file_is_accepted() {
    let example = repo().join("deploy/droverd.example.toml");
    let out = Command::new(drover_e2e::binary("droverd"))
        .arg("--config")
        .arg(&example)
        .arg("config-reference")
        .env_clear()
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "droverd refuses {}: {}",
        example.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}
