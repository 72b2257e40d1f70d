//! The end-to-end test harness: a whole droverd (private PostgreSQL, REST, gRPC) in-process on
//! loopback ports the OS picks, plus emulated Talos machines, in a few lines.
//!
//! ```ignore
//! let drover = TestDrover::start().await;
//! let token = drover.join_token("lab").await;
//! let mut fleet = drover.fleet(&token.secret, 10);
//! fleet.provision_all(&fast_retry(), &CancellationToken::new()).await.unwrap();
//! ```

pub mod chromium;
mod cluster;
mod kube;
pub mod oidc;

pub use cluster::{ReadyCluster, cluster_spec, ready_cluster};
pub use kube::{kubeconfig_through_tunnel, kubectl};

use std::path::{Path, PathBuf};
use std::time::Duration;

use drover_client::Client;
use drover_emu::{CancellationToken, Fleet, FleetConfig, NodeBehaviour, RetryPolicy};
use drover_model::{CreateJoinToken, CreatedJoinToken, Machine};
use drover_siderolink::JoinUrl;
use droverd::{DataPlaneConfig, Database, LogFormat, Server, Settings};

/// A droverd for one test, with its own data dir (and so its own PostgreSQL).
pub struct TestDrover {
    server: Option<Server>,
    data_dir: tempfile::TempDir,
    admin_token: String,
    extra: Extra,
}

/// Settings a test may change before start.
#[derive(Clone, Default)]
pub struct Extra {
    pub advertised_wireguard_endpoints: Vec<String>,
    /// Serve the machine API over TLS with these PEM files.
    pub machine_api_tls: Option<droverd::settings::TlsFiles>,
    /// Data plane timing; default [`test_dataplane`].
    pub dataplane: Option<DataPlaneConfig>,
    /// The WireGuard UDP address; default `127.0.0.1:0`.
    pub wireguard_addr: Option<std::net::SocketAddr>,
    /// Reconciler pacing; default a 200 ms interval.
    pub reconciler: Option<drover_reconcile::ReconcilerConfig>,
    /// Browser login through an OpenID provider (see [`oidc`]).
    pub oidc: Option<droverd::settings::OidcLogin>,
    /// Tenancy mode and plans; default single-tenant with the built-in plans.
    pub tenancy: Option<drover_service::Tenancy>,
    /// `--allow-break-glass`.
    pub allow_break_glass: bool,
    /// How the HTTP API is served; default plain HTTP.
    pub http_tls: Option<droverd::settings::HttpTls>,
    /// The operator's certificate files for the Kubernetes proxy; default Drover's own CA.
    pub kube_proxy_tls: Option<droverd::settings::TlsFiles>,
    /// Another droverd's database (a replica of it); default a private PostgreSQL.
    pub database_url: Option<String>,
}

impl TestDrover {
    pub async fn start() -> Self {
        Self::start_with(Extra::default()).await
    }

    pub async fn start_with(extra: Extra) -> Self {
        let data_dir = tempfile::Builder::new()
            .prefix("drover-e2e-")
            .tempdir()
            .expect("temp dir");
        let server = Server::start(settings(data_dir.path(), &extra))
            .await
            .expect("droverd starts");
        let admin_token = server
            .initial_admin_token()
            .expect("a first start creates the initial admin token")
            .to_owned();
        Self {
            server: Some(server),
            data_dir,
            admin_token,
            extra,
        }
    }

    /// Starts droverd on a data dir that already holds a database (e.g. one restored from a
    /// backup) in which `admin_token` is an admin API token.
    pub async fn start_on(data_dir: tempfile::TempDir, admin_token: String, extra: Extra) -> Self {
        let server = Server::start(settings(data_dir.path(), &extra))
            .await
            .expect("droverd starts");
        assert!(
            server.initial_admin_token().is_none(),
            "a data dir with a database gets no new admin token"
        );
        Self {
            server: Some(server),
            data_dir,
            admin_token,
            extra,
        }
    }

    /// Another replica of this droverd: its own data dir with this one's key-encryption key,
    /// on this one's database.
    pub async fn start_replica(&self, extra: Extra) -> Self {
        let data_dir = tempfile::Builder::new()
            .prefix("drover-e2e-replica-")
            .tempdir()
            .expect("temp dir");
        let kek = drover_service::secrets::KEK_FILE;
        std::fs::copy(self.data_dir().join(kek), data_dir.path().join(kek))
            .expect("the key-encryption key is shared");
        let url = drover_postgres::PrivatePostgres::url_for(&self.data_dir().join("postgres"))
            .expect("the database URL");
        let extra = Extra {
            database_url: Some(url),
            ..extra
        };
        Self::start_on(data_dir, self.admin_token.clone(), extra).await
    }

    /// Stops droverd (and its PostgreSQL) and starts it again on the same data dir.
    pub async fn restart(&mut self) {
        let server = self.server.take().expect("running");
        let (old_http, old_machine) = (server.http_addr(), server.machine_api_addr());
        server.shutdown().await.expect("clean shutdown");
        let mut settings = settings(self.data_dir.path(), &self.extra);
        // Keep the addresses, so nodes and clients configured before the restart still reach it.
        settings.http_addr = old_http;
        settings.machine_api_addr = old_machine;
        let server = Server::start(settings).await.expect("droverd restarts");
        assert!(
            server.initial_admin_token().is_none(),
            "a restart must not create another admin token"
        );
        self.server = Some(server);
    }

    pub fn server(&self) -> &Server {
        self.server.as_ref().expect("running")
    }

    /// The settings this droverd was started with (listen addresses as configured, not bound).
    pub fn settings(&self) -> Settings {
        settings(self.data_dir.path(), &self.extra)
    }

    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// The HTTP API's URL (`https://` when it serves TLS).
    pub fn http_url(&self) -> String {
        self.server().http_url()
    }

    /// A REST client with the admin token (trusting droverd's self-signed HTTP CA, if any).
    pub fn client(&self) -> Client {
        let ca = self.server().http_ca().map(|ca| ca.pem.as_bytes());
        Client::with_ca(&self.http_url(), Some(self.admin_token.clone()), ca).expect("client")
    }

    /// A REST client with no token.
    pub fn anonymous_client(&self) -> Client {
        Client::new(&self.http_url(), None).expect("client")
    }

    /// The `siderolink.api` URL a node would boot with for this secret.
    pub fn join_url(&self, secret: &str) -> JoinUrl {
        let mut url = self.server().machine_api_url().clone();
        url.join_token = Some(secret.to_owned());
        url
    }

    /// A gRPC channel to the machine API (where nodes provision).
    pub async fn machine_api_channel(&self) -> tonic::transport::Channel {
        tonic::transport::Endpoint::from_shared(self.server().machine_api_url().connect_uri())
            .expect("uri")
            .connect()
            .await
            .expect("machine API reachable")
    }

    pub async fn join_token(&self, name: &str) -> CreatedJoinToken {
        self.client()
            .create_join_token(&CreateJoinToken {
                name: name.to_owned(),
                expires_at: None,
                make_default: false,
            })
            .await
            .expect("join token created")
    }

    /// `n` emulated machines running Talos `version` that will join with `secret`.
    pub fn fleet(&self, secret: &str, n: usize, seed: &str, version: &str) -> Fleet {
        Fleet::new(self.fleet_config(secret, n, seed, version))
    }

    /// The configuration [`TestDrover::fleet`] uses, to change before building the fleet.
    pub fn fleet_config(&self, secret: &str, n: usize, seed: &str, version: &str) -> FleetConfig {
        let mut config = FleetConfig::new(self.join_url(secret), n);
        config.seed = seed.to_owned();
        config.talos_version = version.to_owned();
        config
    }

    /// Runs SQL against droverd's database, for checks of what is stored.
    /// A new API token of the default tenant with `role`; its secret.
    pub async fn api_token(&self, name: &str, role: drover_model::Role) -> String {
        use drover_service::secret_token::{self, TokenKind};
        let minted = secret_token::mint(TokenKind::Api);
        let tenant =
            drover_store::tenants::find_by_name(self.pool(), drover_service::DEFAULT_TENANT_NAME)
                .await
                .unwrap()
                .expect("the default tenant exists")
                .tenant_id();
        drover_store::api_tokens::insert(
            self.pool(),
            tenant,
            drover_store::api_tokens::NewApiToken {
                id: drover_model::ApiTokenId::from_uuid(minted.id),
                name,
                role: role.as_str(),
                secret_hash: &minted.hash,
                expires_at: None,
            },
        )
        .await
        .unwrap();
        secret_token::reveal(&minted)
    }

    pub fn pool(&self) -> &sqlx::PgPool {
        self.server().service().store().pool()
    }

    /// The operator's tenant commands, in-process (what `droverd tenant ...` runs).
    pub fn tenant_admin(&self) -> drover_service::TenantAdmin {
        self.server().service().tenant_admin()
    }

    /// Creates another tenant (as `droverd tenant create NAME --plan PLAN` does) and returns
    /// a REST client with its initial admin token, and the token.
    pub async fn create_tenant(&self, name: &str, plan: Option<&str>) -> (Client, String) {
        use secrecy::ExposeSecret;
        let created = self
            .tenant_admin()
            .create(name, plan)
            .await
            .expect("tenant created");
        let token = created.admin_token.expose_secret().to_owned();
        (
            Client::new(&self.http_url(), Some(token.clone())).expect("client"),
            token,
        )
    }

    /// A join token of the tenant `client` belongs to.
    pub async fn join_token_with(client: &Client, name: &str) -> CreatedJoinToken {
        client
            .create_join_token(&CreateJoinToken {
                name: name.to_owned(),
                expires_at: None,
                make_default: false,
            })
            .await
            .expect("join token created")
    }

    pub async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await.expect("clean shutdown");
        }
    }
}

fn settings(data_dir: &Path, extra: &Extra) -> Settings {
    Settings {
        data_dir: PathBuf::from(data_dir),
        http_addr: "127.0.0.1:0".parse().expect("addr"),
        http_tls: extra
            .http_tls
            .clone()
            .unwrap_or(droverd::settings::HttpTls::Off),
        metrics_addr: "127.0.0.1:0".parse().expect("addr"),
        machine_api_addr: "127.0.0.1:0".parse().expect("addr"),
        machine_api_tls: extra.machine_api_tls.clone(),
        kube_proxy: droverd::settings::KubeProxySettings {
            addr: "127.0.0.1:0".parse().expect("addr"),
            url: None,
            tls: extra.kube_proxy_tls.clone(),
        },
        talos_proxy: droverd::settings::TalosProxySettings {
            addr: "127.0.0.1:0".parse().expect("addr"),
            endpoint: None,
        },
        advertised_machine_api: None,
        wireguard_addr: extra
            .wireguard_addr
            .unwrap_or_else(|| "127.0.0.1:0".parse().expect("addr")),
        advertised_wireguard_endpoints: extra.advertised_wireguard_endpoints.clone(),
        relay_addr: "127.0.0.1:0".parse().expect("addr"),
        advertised_relay_addr: None,
        database: match &extra.database_url {
            Some(url) => Database::Url(url.clone()),
            None => Database::Private {
                extra_settings: vec![
                    ("fsync".into(), "off".into()),
                    ("shared_buffers".into(), "16MB".into()),
                ],
            },
        },
        log_format: LogFormat::Text,
        dataplane: extra.dataplane.clone().unwrap_or_else(test_dataplane),
        master_key: None,
        reconciler: extra
            .reconciler
            .clone()
            .unwrap_or(drover_reconcile::ReconcilerConfig {
                interval: Duration::from_millis(200),
                lease: Duration::from_secs(30),
                upgrade_step_timeout: Duration::from_secs(60),
            }),
        oidc: extra.oidc.clone(),
        audit_retention: droverd::settings::DEFAULT_AUDIT_RETENTION,
        tenancy: extra.tenancy.clone().unwrap_or_default(),
        allow_break_glass: extra.allow_break_glass,
        web_root: web_root(),
        command: None,
    }
}

/// Liveness fast enough for tests: machines send keepalives every second (see
/// [`fast_link`]), so five seconds of silence means the machine is gone.
pub fn test_dataplane() -> DataPlaneConfig {
    DataPlaneConfig {
        liveness_threshold: Duration::from_secs(5),
        liveness_interval: Duration::from_millis(200),
        last_seen_refresh: Duration::from_secs(60),
        peer_resync_interval: Duration::from_secs(2),
        replica_timeout: Duration::from_secs(6),
    }
}

/// Node timings for tests: keepalives every second, so [`test_dataplane`]'s five-second
/// threshold tells a live machine from a stopped one.
pub fn fast_link() -> NodeBehaviour {
    NodeBehaviour {
        keepalive: Duration::from_secs(1),
        handshake_check: Duration::from_secs(1),
        endpoint_timeout: Duration::from_secs(20),
        rehandshake_after: Some(Duration::from_secs(5)),
        boot_log_lines: 20,
    }
}

/// Waits (bounded) for the machines to satisfy `ok`, returning them.
pub async fn machines_where(
    drover: &TestDrover,
    what: &str,
    ok: impl Fn(&[Machine]) -> bool,
) -> Vec<Machine> {
    let client = drover.client();
    eventually(what, Duration::from_secs(90), || {
        let client = client.clone();
        let ok = &ok;
        async move {
            let all = client.all_machines().await.ok()?;
            ok(&all).then_some(all)
        }
    })
    .await
}

/// The path of one of the workspace's binaries (`cargo build --workspace --bins` builds them;
/// `scripts/test` does).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's path");
    let path = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps")
        .join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first with `cargo build --workspace --bins` (scripts/test does)",
        path.display()
    );
    path
}

/// The target directory the tests were built in (`target/<profile>/deps/<test>` → `target`).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's path");
    exe.ancestors()
        .nth(3)
        .expect("target/<profile>/deps/<test>")
        .to_path_buf()
}

/// Where `scripts/build-web` puts the web UI's bundle for this target directory.
pub fn web_root() -> PathBuf {
    target_dir().join("site")
}

/// Runs the real `drover` CLI with the config file `config` (and no credential from the
/// environment); its stdout, or its stderr as the error.
pub fn drover_cli(config: &Path, args: &[&str]) -> Result<String, String> {
    let out = std::process::Command::new(binary("drover"))
        .env("DROVER_CONFIG", config)
        .env_remove("DROVER_TOKEN")
        .env_remove("DROVER_ENDPOINT")
        .env_remove("DROVER_CONTEXT")
        .args(args)
        .output()
        .expect("drover runs");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

pub fn spawn_fleet(mut fleet: Fleet, cancel: CancellationToken) -> tokio::task::JoinHandle<Fleet> {
    tokio::spawn(async move {
        fleet
            .run(&fast_retry(None), &fast_link(), &cancel)
            .await
            .expect("the fleet runs");
        fleet
    })
}

/// A TCP load balancer in front of the replicas' machine APIs, as nodes reach them in a real
/// deployment: each new connection goes to the next backend that accepts it.
pub struct LoadBalancer {
    pub addr: std::net::SocketAddr,
    backends: std::sync::Arc<std::sync::Mutex<Vec<std::net::SocketAddr>>>,
}

impl LoadBalancer {
    pub async fn start(backends: Vec<std::net::SocketAddr>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = std::sync::Arc::new(std::sync::Mutex::new(backends));
        let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let backends = shared.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let candidates = backends.lock().unwrap().clone();
                let first = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tokio::spawn(async move {
                    for i in 0..candidates.len() {
                        let backend = candidates[(first + i) % candidates.len()];
                        if let Ok(mut server) = tokio::net::TcpStream::connect(backend).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                            return;
                        }
                    }
                });
            }
        });
        Self {
            addr,
            backends: shared,
        }
    }

    /// New connections go to these backends from now on (as a health check would decide).
    pub fn set_backends(&self, backends: Vec<std::net::SocketAddr>) {
        *self.backends.lock().unwrap() = backends;
    }
}

/// Polls `check` until it returns `Some`, or panics after `limit` naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Retries quickly: the tests wait for outcomes, never for a clock.
pub fn fast_retry(max_attempts: Option<usize>) -> RetryPolicy {
    RetryPolicy {
        min_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(200),
        max_attempts,
    }
}

pub fn no_cancel() -> CancellationToken {
    CancellationToken::new()
}
