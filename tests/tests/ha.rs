//! Three droverd processes on one PostgreSQL, with emulated machines spread over them through
//! a load balancer, as in a real deployment. The replica reconciling the cluster is killed
//! (SIGKILL) mid-way through the cluster's creation, and the one that took over is killed
//! mid-way through a Talos upgrade: both finish on the survivors, and the machines' own record
//! shows no step done twice. On the way, replicas reach machines whose tunnels another replica
//! holds (the relay), and machines whose replica died move to another one's endpoint.
//!
//! Needs the binaries built (`cargo build --workspace --bins`, which `scripts/test` does).

use std::collections::{HashMap, HashSet};
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use drover_client::Client;
use drover_e2e::{cluster_spec, eventually, fast_retry};
use drover_emu::{
    Call, CallRecord, CancellationToken, ClusterRegistry, Fleet, FleetConfig, JoinUrl, Lifecycle,
    NodeBehaviour,
};
use drover_model::{ClusterMachinePhase, CreateJoinToken, StartUpgrade, UpgradeKind, UpgradeState};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const LIMIT: Duration = Duration::from_secs(240);
const FROM: &str = "1.12.4";
const TO: &str = "1.13.0";
const KUBERNETES: &str = "1.31.2";

/// A droverd process of the test.
struct Replica {
    child: Child,
    id: uuid::Uuid,
    http: String,
    metrics: String,
    machine_api: SocketAddr,
}

impl Replica {
    /// Starts replica `n` on `database_url` and reads its stdout up to the machine API line. Its
    /// log goes to `<target dir>/ha-logs/replica-<n>.log`.
    async fn start(dir: &Path, n: usize, database_url: &str, master_key: &str) -> Replica {
        let data_dir = dir.join(format!("replica-{n}"));
        let logs = drover_e2e::target_dir().join("ha-logs");
        std::fs::create_dir_all(&logs).unwrap();
        let log_path = logs.join(format!("replica-{n}.log"));
        let mut log = std::fs::File::create(&log_path).unwrap();
        let mut child = Command::new(drover_e2e::binary("droverd"))
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--database-url", database_url])
            .args(["--http-addr", "127.0.0.1:0"])
            .args(["--metrics-addr", "127.0.0.1:0"])
            .args(["--machine-api-addr", "127.0.0.1:0"])
            .args(["--wireguard-addr", "127.0.0.1:0"])
            .args(["--relay-addr", "127.0.0.1:0"])
            .args(["--kube-proxy-addr", "127.0.0.1:0"])
            .args(["--talos-proxy-addr", "127.0.0.1:0"])
            // Quick to notice a dead replica and take its work over; correctness does not
            // depend on these.
            .args(["--liveness-threshold", "4s"])
            .args(["--replica-timeout", "3s"])
            .args(["--reconcile-lease", "3s"])
            .args(["--reconcile-interval", "250ms"])
            .env("DROVER_MASTER_KEY", master_key)
            .env("RUST_LOG", "info")
            .env_remove("DATABASE_URL")
            .stdout(Stdio::piped())
            .stderr(log.try_clone().unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let (mut id, mut http, mut metrics, mut machine_api) = (None, None, None, None);
        while let Some(line) = stdout.next_line().await.unwrap() {
            writeln!(log, "{line}").unwrap();
            if let Some(url) = line.strip_prefix("Drover is listening on ") {
                http = Some(url.to_owned());
            }
            if let Some(url) = line.strip_prefix("Metrics: ") {
                metrics = Some(url.to_owned());
            }
            if let Some(rest) = line.strip_prefix("Replica ") {
                id = rest.split_whitespace().next().and_then(|s| s.parse().ok());
            }
            if let Some(url) = line.strip_prefix("Machine API for nodes: ") {
                let url = JoinUrl::parse(url).unwrap();
                machine_api = Some(format!("{}:{}", url.host, url.port).parse().unwrap());
                break;
            }
        }
        let (Some(id), Some(http), Some(metrics), Some(machine_api)) =
            (id, http, metrics, machine_api)
        else {
            panic!("replica {n} did not start; see {}", log_path.display());
        };
        // Its log, kept with the test's files.
        tokio::spawn(async move {
            while let Ok(Some(line)) = stdout.next_line().await {
                let _ = writeln!(log, "{line}");
            }
        });
        Replica {
            child,
            id,
            http,
            metrics,
            machine_api,
        }
    }

    fn client(&self, token: &str) -> Client {
        Client::new(&self.http, Some(token.to_owned())).unwrap()
    }

    /// Connections to machines this replica relayed: `out` through another's relay, `in`
    /// through its own (its `drover_relayed_connections_total`).
    async fn relayed(&self, direction: &str) -> u64 {
        let text = reqwest::get(&self.metrics)
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let series = format!("drover_relayed_connections_total{{direction=\"{direction}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(series.as_str()))
            .map_or(0, |n| n.trim().parse().unwrap())
    }

    /// SIGKILL: no goodbye, no lease given back, tunnels just stop.
    async fn kill(mut self) {
        self.child.kill().await.unwrap();
    }

    async fn terminate(mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id().unwrap() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let status = self.child.wait().await.unwrap();
        assert!(
            status.success(),
            "replica {} exits cleanly: {status}",
            self.id
        );
    }
}

/// Machines notice a dead endpoint within seconds (Talos: minutes), keeping healthy tunnels
/// fresh meanwhile.
fn quick_failover() -> NodeBehaviour {
    NodeBehaviour {
        keepalive: Duration::from_secs(1),
        handshake_check: Duration::from_millis(500),
        endpoint_timeout: Duration::from_secs(3),
        rehandshake_after: Some(Duration::from_secs(1)),
        boot_log_lines: 0,
    }
}

async fn lease_owner(pool: &sqlx::PgPool, cluster: &str) -> Option<uuid::Uuid> {
    sqlx::query_scalar("SELECT lease_owner FROM clusters WHERE name = $1")
        .bind(cluster)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// The replica holding each connected machine's tunnel.
async fn tunnel_holders(pool: &sqlx::PgPool) -> HashMap<String, Option<uuid::Uuid>> {
    let rows: Vec<(String, bool, Option<uuid::Uuid>)> =
        sqlx::query_as("SELECT id, connected, tunnel_replica FROM machines")
            .fetch_all(pool)
            .await
            .unwrap();
    rows.into_iter()
        .map(|(id, connected, holder)| (id, holder.filter(|_| connected)))
        .collect()
}

fn count(calls: &[CallRecord], uuid: &str, what: impl Fn(&Call) -> bool) -> usize {
    calls
        .iter()
        .filter(|c| c.uuid == uuid && c.error.is_none() && what(&c.call))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_finish_a_creation_and_an_upgrade_after_each_loses_its_reconciler() {
    let dir = tempfile::tempdir().unwrap();
    let postgres =
        drover_postgres::PrivatePostgres::start(drover_postgres::PrivatePostgresOptions {
            dir: dir.path().join("pg"),
            bin_dir: None,
            extra_settings: vec![
                ("fsync".into(), "off".into()),
                ("max_connections".into(), "200".into()),
            ],
        })
        .await
        .unwrap();
    let url = postgres.database_url().to_owned();
    let master_key = {
        use secrecy::ExposeSecret;
        drover_seal::Kek::generate()
            .to_base64()
            .expose_secret()
            .to_owned()
    };

    // The first replica creates the installation (and the admin token); two more join it.
    let first = Replica::start(dir.path(), 0, &url, &master_key).await;
    let token = std::fs::read_to_string(dir.path().join("replica-0/initial-admin-token"))
        .unwrap()
        .trim()
        .to_owned();
    let (second, third) = tokio::join!(
        Replica::start(dir.path(), 1, &url, &master_key),
        Replica::start(dir.path(), 2, &url, &master_key),
    );
    let mut replicas = vec![first, second, third];
    let pool = drover_store::Store::connect(&url, 2)
        .await
        .unwrap()
        .pool()
        .clone();
    let registered: HashSet<uuid::Uuid> = drover_store::replicas::list(&pool)
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            assert!(
                r.relay_addr.is_some() && r.wireguard_endpoints.len() == 1,
                "{r:?}"
            );
            r.id
        })
        .collect();
    assert_eq!(registered, replicas.iter().map(|r| r.id).collect());

    // Six machines in three fleets, each with its own connection through the load balancer, so
    // each fleet provisions through (and tunnels to) a different replica.
    let balancer =
        drover_e2e::LoadBalancer::start(replicas.iter().map(|r| r.machine_api).collect()).await;
    let secret = replicas[0]
        .client(&token)
        .create_join_token(&CreateJoinToken {
            name: "ha".into(),
            expires_at: None,
            make_default: false,
        })
        .await
        .unwrap()
        .secret;
    let emulated = ClusterRegistry::new();
    let cancel = CancellationToken::new();
    let mut nodes = Vec::new();
    let mut fleets = Vec::new();
    for n in 0..3 {
        let api = JoinUrl::parse(&format!("grpc://{}?jointoken={secret}", balancer.addr)).unwrap();
        let mut config = FleetConfig::new(api, 2);
        config.seed = format!("ha-{n}");
        config.talos_version = format!("v{FROM}");
        config.lifecycle = Lifecycle::INSTANT;
        config.clusters = emulated.clone();
        let mut fleet = Fleet::new(config);
        nodes.extend(fleet.nodes());
        let cancel = cancel.clone();
        fleets.push(tokio::spawn(async move {
            fleet
                .run(&fast_retry(None), &quick_failover(), &cancel)
                .await
                .expect("the fleet runs");
        }));
    }

    // Every replica holds two tunnels, and every replica's API sees all six machines.
    let holders = eventually("two tunnels on each replica", LIMIT, || async {
        let holders = tunnel_holders(&pool).await;
        let mut per_replica: HashMap<uuid::Uuid, usize> = HashMap::new();
        for holder in holders.values().flatten() {
            *per_replica.entry(*holder).or_default() += 1;
        }
        (holders.len() == 6 && per_replica.len() == 3 && per_replica.values().all(|n| *n == 2))
            .then_some(holders)
    })
    .await;
    for replica in &replicas {
        let machines = eventually("facts read on every machine", LIMIT, || async {
            let all = replica.client(&token).all_machines().await.ok()?;
            (all.len() == 6 && all.iter().all(|m| m.connected && m.facts.is_some())).then_some(all)
        })
        .await;
        assert_eq!(machines.len(), 6);
    }
    let ids: Vec<String> = {
        let mut ids: Vec<String> = holders.keys().cloned().collect();
        ids.sort();
        ids
    };

    // Creation: the machines hold their installs, so the cluster is surely mid-way when the
    // replica reconciling it dies.
    let held = emulated.hold_actions();
    let client = replicas[0].client(&token);
    client
        .create_cluster(&cluster_spec(
            "prod",
            FROM,
            KUBERNETES,
            &ids[..3],
            &ids[3..],
        ))
        .await
        .unwrap();
    let reconciler = eventually("a replica leasing the cluster", LIMIT, || {
        lease_owner(&pool, "prod")
    })
    .await;
    let installing = eventually("every machine told to install", LIMIT, || async {
        let cluster = client.get_cluster("prod").await.ok()?;
        (cluster.status.machines.len() == 6
            && cluster
                .status
                .machines
                .iter()
                .all(|m| m.phase >= ClusterMachinePhase::Installing))
        .then_some(cluster)
    })
    .await;
    assert!(!installing.status.ready);
    assert_eq!(
        lease_owner(&pool, "prod").await,
        Some(reconciler),
        "one replica reconciled the cluster throughout"
    );
    // It reached the four machines whose tunnels the others hold through their relays.
    let at = replicas.iter().position(|r| r.id == reconciler).unwrap();
    assert!(replicas[at].relayed("out").await >= 4);
    let mut served = 0;
    for other in replicas.iter().filter(|r| r.id != reconciler) {
        served += other.relayed("in").await;
    }
    assert!(served >= 4, "the others' relays served {served}");
    replicas.remove(at).kill().await;
    held.release();

    let client = replicas[0].client(&token);
    let ready = eventually("cluster Ready on the survivors", LIMIT, || async {
        let cluster = client.get_cluster("prod").await.ok()?;
        cluster.status.ready.then_some(cluster)
    })
    .await;
    assert_eq!(ready.status.machines_ready, 6);
    assert!(ready.status.kubernetes_api_ready);
    let taken_over = lease_owner(&pool, "prod").await.unwrap();
    assert_ne!(taken_over, reconciler);
    // The dead replica's machines moved to the survivors.
    let holders = eventually("every tunnel on a survivor", LIMIT, || async {
        let holders = tunnel_holders(&pool).await;
        let alive: HashSet<_> = replicas.iter().map(|r| Some(r.id)).collect();
        holders
            .values()
            .all(|h| alive.contains(h))
            .then_some(holders)
    })
    .await;
    assert!(
        holders.values().any(|h| *h != Some(taken_over)),
        "the reconciler reaches machines whose tunnels the other replica holds: {holders:?}"
    );
    let calls = emulated.calls().records();
    let bundle_calls = calls.iter().filter(|c| c.call == Call::Bootstrap).count();
    assert_eq!(
        bundle_calls, 1,
        "etcd bootstrapped exactly once: {calls:#?}"
    );
    let configured: HashSet<&str> = calls
        .iter()
        .filter(|c| matches!(c.call, Call::ApplyConfiguration { .. }))
        .map(|c| c.uuid.as_str())
        .collect();
    assert_eq!(configured.len(), 6, "{calls:#?}");
    for uuid in configured {
        assert_eq!(
            count(&calls, uuid, |c| matches!(
                c,
                Call::ApplyConfiguration { .. }
            )),
            1,
            "{uuid} was given its configuration once: {calls:#?}"
        );
    }

    // Upgrade: the first node holds its upgrade, and the replica now reconciling dies.
    let held = emulated.hold_actions();
    client
        .start_upgrade(
            "prod",
            &StartUpgrade {
                kind: UpgradeKind::Talos,
                version: TO.into(),
                dry_run: false,
            },
        )
        .await
        .unwrap();
    emulated
        .calls()
        .wait_until(|calls| calls.iter().any(CallRecord::is_accepted_upgrade))
        .await;
    let reconciler = lease_owner(&pool, "prod").await.unwrap();
    let at = replicas.iter().position(|r| r.id == reconciler).unwrap();
    replicas.remove(at).kill().await;
    held.release();

    let survivor = replicas.pop().unwrap();
    let client = survivor.client(&token);
    let done = eventually("the upgrade done on the last replica", LIMIT, || async {
        let upgrade = client.get_upgrade("prod").await.ok()?;
        (upgrade.state == UpgradeState::Done).then_some(upgrade)
    })
    .await;
    assert_eq!(done.nodes.len(), 6);
    let upgrades: Vec<CallRecord> = emulated
        .calls()
        .records()
        .into_iter()
        .filter(CallRecord::is_accepted_upgrade)
        .collect();
    assert_eq!(upgrades.len(), 6, "{upgrades:#?}");
    assert_eq!(
        upgrades
            .iter()
            .map(|c| &c.uuid)
            .collect::<HashSet<_>>()
            .len(),
        6,
        "no node upgraded twice: {upgrades:#?}"
    );
    for node in &nodes {
        assert_eq!(node.status().talos_version, format!("v{TO}"));
    }
    let machines = client.all_machines().await.unwrap();
    assert!(machines.iter().all(|m| m.talos_version == format!("v{TO}")));
    assert_eq!(
        tunnel_holders(&pool).await.values().collect::<HashSet<_>>(),
        HashSet::from([&Some(survivor.id)]),
        "the last replica holds every tunnel"
    );

    cancel.cancel();
    for fleet in fleets {
        fleet.await.unwrap();
    }
    survivor.terminate().await;
    pool.close().await;
    postgres.stop().await.unwrap();
}
