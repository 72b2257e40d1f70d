//! What droverd exposes at `/metrics` (OpenMetrics text, which Prometheus scrapes): counters
//! the service and its controllers bump as things happen, and gauges read from the database at
//! each scrape, so every replica reports the same fleet.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry};

use crate::{Drover, Result, ServiceError};

/// The content type of [`Drover::render_metrics`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProvisionLabels {
    /// `new`, `known` (a machine provisioning again) or `refused`.
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RelayLabels {
    /// `out`: this replica reached a machine through another's relay; `in`: its relay connected
    /// another replica to a machine whose tunnel it holds.
    direction: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: String,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MachineLabels {
    /// `connected` or `disconnected`.
    state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpgradeLabels {
    tenant: String,
    cluster: String,
    kind: String,
    state: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpgradeStepLabels {
    tenant: String,
    cluster: String,
    /// `done`, `inProgress` or `failed`.
    state: &'static str,
}

/// droverd's metrics. Cheap to clone; every clone records into the same registry.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

struct Inner {
    registry: Registry,
    provisions: Family<ProvisionLabels, Counter>,
    relayed: Family<RelayLabels, Counter>,
    reconcile_rounds: Counter,
    reconcile_errors: Counter,
    reconcile_queue_depth: Gauge,
    http_requests: Family<HttpLabels, Histogram, fn() -> Histogram>,
    machines: Family<MachineLabels, Gauge>,
    upgrade_nodes: Family<UpgradeLabels, Gauge>,
    upgrade_steps: Family<UpgradeStepLabels, Gauge>,
    /// One scrape at a time refreshes and encodes the gauges.
    scrape: tokio::sync::Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("drover");
        let r = &mut registry;
        let provisions = registered(
            r,
            "provisions",
            "Provision calls of machines, by result (new, known, refused)",
            Family::default(),
        );
        let relayed = registered(
            r,
            "relayed_connections",
            "Connections to machines between replicas, by direction (out: through another replica's relay; in: served by this one's)",
            Family::default(),
        );
        let reconcile_rounds = registered(
            r,
            "reconcile_rounds",
            "Rounds of the cluster reconciler on this replica",
            Counter::default(),
        );
        let reconcile_errors = registered(
            r,
            "reconcile_errors",
            "Cluster reconciles (or leasing rounds) that failed on this replica",
            Counter::default(),
        );
        let reconcile_queue_depth = registered(
            r,
            "reconcile_queue_depth",
            "Clusters the last reconcile round of this replica took on",
            Gauge::default(),
        );
        let machines = registered(
            r,
            "machines",
            "Machines known, by whether their tunnel is connected",
            Family::default(),
        );
        let upgrade_nodes = registered(
            r,
            "upgrade_nodes",
            "Nodes of the cluster of each upgrade under way",
            Family::default(),
        );
        let upgrade_steps = registered(
            r,
            "upgrade_node_steps",
            "Node steps of each upgrade under way, by state (a Talos upgrade has one per node)",
            Family::default(),
        );
        let http_requests = Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register_with_unit(
            "http_request_duration",
            "Time to answer an HTTP API request (to the response head), by method and status",
            prometheus_client::registry::Unit::Seconds,
            http_requests.clone(),
        );
        Self(Arc::new(Inner {
            registry,
            provisions,
            relayed,
            reconcile_rounds,
            reconcile_errors,
            reconcile_queue_depth,
            http_requests,
            machines,
            upgrade_nodes,
            upgrade_steps,
            scrape: tokio::sync::Mutex::new(()),
        }))
    }
}

/// `metric`, registered in `registry` as `name` with `help`.
fn registered<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

/// Buckets from 1 ms to about 15 s.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.5, 12))
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Counts a Provision call: a new machine, a known one again, or a refusal.
    pub fn provisioned(&self, outcome: &Result<crate::ProvisionOutcome>) {
        let result = match outcome {
            Ok(o) if o.new_machine => "new",
            Ok(_) => "known",
            Err(_) => "refused",
        };
        self.0
            .provisions
            .get_or_create(&ProvisionLabels { result })
            .inc();
    }

    /// Counts a connection to a machine relayed between replicas: `out` through another's relay,
    /// `in` through this one's.
    pub fn relayed(&self, outgoing: bool) {
        let direction = if outgoing { "out" } else { "in" };
        self.0
            .relayed
            .get_or_create(&RelayLabels { direction })
            .inc();
    }

    /// Counts a reconcile round that took on `clusters` clusters.
    pub fn reconcile_round(&self, clusters: usize) {
        self.0.reconcile_rounds.inc();
        self.0
            .reconcile_queue_depth
            .set(i64::try_from(clusters).unwrap_or(i64::MAX));
    }

    /// Counts a failed cluster reconcile (or a failed leasing round).
    pub fn reconcile_error(&self) {
        self.0.reconcile_errors.inc();
    }

    /// Records how long an HTTP API request took.
    pub fn http_request(&self, method: &str, status: u16, took: Duration) {
        self.0
            .http_requests
            .get_or_create(&HttpLabels {
                method: method.to_owned(),
                status,
            })
            .observe(took.as_secs_f64());
    }
}

impl Drover {
    /// The metrics this service and its controllers record into.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Every metric as OpenMetrics text ([`CONTENT_TYPE`]), the gauges read from the database
    /// now.
    pub async fn render_metrics(&self) -> Result<String> {
        let inner = &self.metrics.0;
        let _one_scrape = inner.scrape.lock().await;
        let pool = self.store().pool();
        let (total, connected) = drover_store::metrics::machine_counts(pool).await?;
        inner.machines.clear();
        inner
            .machines
            .get_or_create(&MachineLabels { state: "connected" })
            .set(connected);
        inner
            .machines
            .get_or_create(&MachineLabels {
                state: "disconnected",
            })
            .set(total - connected);
        inner.upgrade_nodes.clear();
        inner.upgrade_steps.clear();
        for upgrade in drover_store::metrics::active_upgrades(pool).await? {
            inner
                .upgrade_nodes
                .get_or_create(&UpgradeLabels {
                    tenant: upgrade.tenant.clone(),
                    cluster: upgrade.cluster.clone(),
                    kind: upgrade.kind.clone(),
                    state: upgrade.state.clone(),
                })
                .set(upgrade.nodes);
            for (state, count) in [
                ("done", upgrade.steps_done),
                ("inProgress", upgrade.steps_in_progress),
                ("failed", upgrade.steps_failed),
            ] {
                inner
                    .upgrade_steps
                    .get_or_create(&UpgradeStepLabels {
                        tenant: upgrade.tenant.clone(),
                        cluster: upgrade.cluster.clone(),
                        state,
                    })
                    .set(count);
            }
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &inner.registry)
            .map_err(|err| ServiceError::Internal(Box::new(err)))?;
        Ok(text)
    }
}
