//! Prometheus metrics: scraped after emulated machines provision, form a cluster and start an
//! upgrade, the numbers match what happened.

use std::time::Duration;

use drover_e2e::{TestDrover, eventually, fast_retry, no_cancel};
use drover_emu::UpgradeFault;
use drover_model::{StartUpgrade, UpgradeKind};

const LIMIT: Duration = Duration::from_secs(120);

async fn scrape(drover: &TestDrover) -> String {
    let response = reqwest::get(format!("http://{}/metrics", drover.server().metrics_addr()))
        .await
        .expect("the metrics endpoint answers");
    assert!(response.status().is_success());
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    response.text().await.unwrap()
}

/// The value of the sample `series` (name and labels exactly as exposed).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| value.parse().expect("a number"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_machines_provisioning_reconciles_upgrades_and_api_latency() {
    let drover = TestDrover::start().await;
    let before = scrape(&drover).await;
    assert_eq!(
        sample(&before, "drover_machines{state=\"connected\"}"),
        Some(0.0)
    );
    assert!(before.trim_end().ends_with("# EOF"), "OpenMetrics text");

    // A node with an unknown join token is refused, and counted.
    let mut stranger = drover.fleet("drj_not-a-token", 1, "stranger", "v1.12.4");
    assert!(
        stranger
            .provision_all(&fast_retry(Some(1)), &no_cancel())
            .await
            .is_err()
    );

    let ready = drover_e2e::ready_cluster(&drover, "metered", "1.12.4", "1.31.2", 1, 1).await;
    let client = drover.client();
    let cluster = client.get_cluster("metered").await.unwrap();
    let worker = cluster
        .status
        .machines
        .iter()
        .find(|m| m.machine_set != "control-planes")
        .unwrap()
        .id
        .to_string();
    ready
        .nodes
        .iter()
        .find(|n| n.uuid() == worker)
        .unwrap()
        .set_upgrade_fault(Some(UpgradeFault::Hang));
    client
        .start_upgrade(
            "metered",
            &StartUpgrade {
                kind: UpgradeKind::Talos,
                version: "1.13.0".into(),
                dry_run: false,
            },
        )
        .await
        .unwrap();

    // The control plane is upgraded, the worker hangs in its step: one done, one under way.
    let steps = |state: &str| {
        format!(
            "drover_upgrade_node_steps{{tenant=\"default\",cluster=\"metered\",state=\"{state}\"}}"
        )
    };
    let text = eventually("the upgrade's progress in the metrics", LIMIT, || async {
        let text = scrape(&drover).await;
        (sample(&text, &steps("done")) == Some(1.0)
            && sample(&text, &steps("inProgress")) == Some(1.0))
        .then_some(text)
    })
    .await;
    assert_eq!(sample(&text, &steps("failed")), Some(0.0));
    assert_eq!(
        sample(
            &text,
            "drover_upgrade_nodes{tenant=\"default\",cluster=\"metered\",kind=\"talos\",state=\"running\"}"
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(&text, "drover_machines{state=\"connected\"}"),
        Some(2.0)
    );
    assert_eq!(
        sample(&text, "drover_machines{state=\"disconnected\"}"),
        Some(0.0)
    );
    assert_eq!(
        sample(&text, "drover_provisions_total{result=\"new\"}"),
        Some(2.0)
    );
    assert!(sample(&text, "drover_provisions_total{result=\"refused\"}") >= Some(1.0));
    assert!(sample(&text, "drover_reconcile_rounds_total") > Some(0.0));
    assert_eq!(sample(&text, "drover_reconcile_queue_depth"), Some(1.0));
    assert!(
        sample(
            &text,
            "drover_http_request_duration_seconds_count{method=\"GET\",status=\"200\"}"
        ) > Some(0.0),
        "the API's latency is recorded"
    );
    ready.stop().await;
    drover.stop().await;
}
