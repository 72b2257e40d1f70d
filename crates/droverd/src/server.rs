//! Starting and stopping droverd: database, bootstrap, listeners, supervised tasks.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use drover_dataplane::DataPlane;
use drover_pki::CertAndKey;
use drover_postgres::{PrivatePostgres, PrivatePostgresOptions};
use drover_seal::Kek;
use drover_service::{Drover, Keyring, ServiceConfig};
use drover_siderolink::JoinUrl;
use drover_siderolink::addressing::AddressPlan;
use drover_store::Store;
use drover_tls::{CertSource, ServerTls};
use drover_tunnel::{Hub, HubConfig};
use tokio::net::TcpListener;
use tokio_stream::StreamExt as _;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::datadir;
use crate::settings::{Database, HttpTls, Settings};
use crate::shared_keys::SharedKeys;

/// The directory of the data dir holding the self-signed HTTP certificate's CA.
pub(crate) const HTTP_TLS_DIR: &str = "http-tls";

/// A running droverd.
pub struct Server {
    http_addr: SocketAddr,
    /// The CA clients of the HTTP API trust, when droverd made it (`--http-tls self-signed`).
    http_ca: Option<HttpCa>,
    http_tls: bool,
    metrics_addr: SocketAddr,
    relay_addr: SocketAddr,
    machine_api_addr: SocketAddr,
    kube_proxy_addr: SocketAddr,
    talos_proxy_addr: SocketAddr,
    machine_api_url: JoinUrl,
    initial_admin_token: Option<String>,
    data_dir: PathBuf,
    drover: Drover,
    dataplane: DataPlane,
    /// When a replica that stopped beating is gone.
    replica_timeout: std::time::Duration,
    cancel: CancellationToken,
    tasks: TaskTracker,
    postgres: Option<PrivatePostgres>,
}

/// The CA of a self-signed HTTP certificate: where it is kept and its PEM.
#[derive(Debug, Clone)]
pub struct HttpCa {
    pub path: PathBuf,
    pub pem: String,
}

#[derive(Clone)]
struct Health {
    drover: Drover,
    listening: Arc<AtomicBool>,
}

impl Server {
    /// Starts everything; returns once the listeners are bound and the database is migrated.
    pub async fn start(settings: Settings) -> Result<Self> {
        datadir::ensure_dir(&settings.data_dir)?;
        let (database_url, postgres) = match &settings.database {
            Database::Url(url) => (url.clone(), None),
            Database::Private { extra_settings } => {
                datadir::allow_traverse_if_root(&settings.data_dir)?;
                let mut opts = PrivatePostgresOptions::new(settings.data_dir.join("postgres"));
                opts.extra_settings = extra_settings.clone();
                let pg = PrivatePostgres::start(opts)
                    .await
                    .context("cannot start the private PostgreSQL")?;
                (pg.database_url().to_owned(), Some(pg))
            }
        };
        match Self::start_with(settings, &database_url).await {
            Ok(mut server) => {
                server.postgres = postgres;
                Ok(server)
            }
            Err(err) => {
                if let Some(pg) = postgres
                    && let Err(stop) = pg.stop().await
                {
                    tracing::warn!(error = %stop, "stopping the private PostgreSQL after a failed start");
                }
                Err(err)
            }
        }
    }

    async fn start_with(settings: Settings, database_url: &str) -> Result<Self> {
        let store = Store::connect(database_url, 16).await?;
        let keyring = keyring(&settings)?;
        let shared = SharedKeys::load(&store, &keyring, &settings.data_dir).await?;
        let wireguard_key = shared.wireguard;

        let http_listener = TcpListener::bind(settings.http_addr)
            .await
            .with_context(|| format!("cannot listen on the HTTP address {}", settings.http_addr))?;
        let machine_listener = TcpListener::bind(settings.machine_api_addr)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on the machine API address {}",
                    settings.machine_api_addr
                )
            })?;
        let kube_proxy_listener = TcpListener::bind(settings.kube_proxy.addr)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on the Kubernetes proxy address {}",
                    settings.kube_proxy.addr
                )
            })?;
        let kube_proxy_addr = kube_proxy_listener.local_addr()?;
        let (kube_proxy_tls, kube_proxy_url) =
            kube_proxy_tls(&settings, kube_proxy_addr, shared.kube_proxy_ca)
                .context("Kubernetes proxy TLS")?;
        let talos_proxy_listener = TcpListener::bind(settings.talos_proxy.addr)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on the Talos API proxy address {}",
                    settings.talos_proxy.addr
                )
            })?;
        let talos_proxy_addr = talos_proxy_listener.local_addr()?;
        let (talos_proxy_tls, talos_proxy_endpoint) =
            talos_proxy_tls(&settings, talos_proxy_addr, shared.talos_proxy_ca)
                .context("Talos API proxy TLS")?;
        let http_addr = http_listener.local_addr()?;
        let metrics_listener = TcpListener::bind(settings.metrics_addr)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on the metrics address {}",
                    settings.metrics_addr
                )
            })?;
        let metrics_addr = metrics_listener.local_addr()?;
        let relay_listener = TcpListener::bind(settings.relay_addr)
            .await
            .with_context(|| {
                format!("cannot listen on the relay address {}", settings.relay_addr)
            })?;
        let http_tls = http_server_tls(&settings, http_addr, shared.http_ca).context("HTTP TLS")?;
        let machine_api_addr = machine_listener.local_addr()?;
        let machine_api_url = settings.machine_api_url(machine_api_addr);
        let relay_addr = settings.relay_advertised(&machine_api_url, relay_listener.local_addr()?);

        let addresses = AddressPlan::default();
        let hub = Hub::start(HubConfig {
            key: wireguard_key.clone(),
            server_address: addresses.server_address(),
            udp_bind: Some(settings.wireguard_addr),
            tcp_buffer_size: 64 * 1024,
        })
        .await
        .with_context(|| {
            format!(
                "cannot start the WireGuard endpoint on {}",
                settings.wireguard_addr
            )
        })?;
        let wireguard_port = hub
            .udp_local_addr()
            .map_or(settings.wireguard_addr.port(), |a| a.port());
        let drover = Drover::new(
            store,
            ServiceConfig {
                wireguard_endpoints: settings.wireguard_endpoints(&machine_api_url, wireguard_port),
                advertised_machine_api: machine_api_url.clone(),
                server_public_key: wireguard_key.public(),
                relay_addr: relay_addr.to_string(),
                addresses,
                keyring,
                kube_proxy: Some(drover_service::cluster_access::KubeProxyInfo {
                    url: kube_proxy_url,
                    ca_pem: kube_proxy_tls.ca_pem.clone(),
                }),
                talos_proxy: Some(drover_service::talos_access::TalosProxyInfo {
                    endpoint: talos_proxy_endpoint,
                    ca: talos_proxy_tls.ca.clone(),
                }),
                allow_break_glass: settings.allow_break_glass,
            },
        )
        .with_peer_sink(drover_dataplane::peer_sink(&hub))
        .with_tenancy(settings.tenancy.clone());
        let drover = match &settings.oidc {
            Some(oidc) => {
                let login = oidc.service_settings(http_addr, settings.http_tls.is_on());
                tracing::info!(
                    issuer = %login.issuer,
                    redirect_uri = %login.redirect_url(),
                    "browser login through OpenID Connect is on"
                );
                drover
                    .with_oidc(login)
                    .context("OpenID Connect login settings")?
            }
            None => drover,
        };
        let token_file = settings.data_dir.join(datadir::INITIAL_ADMIN_TOKEN_FILE);
        let bootstrap = drover
            .bootstrap(|token| datadir::replace_secret_file(&token_file, &format!("{token}\n")))
            .await?;

        let cancel = CancellationToken::new();
        let tasks = TaskTracker::new();
        let listening = Arc::new(AtomicBool::new(false));

        let web = drover_web::WebSettings {
            site_root: settings.web_root.clone(),
            secure_cookies: http_tls.is_some()
                || drover.oidc_settings().is_some_and(|o| o.secure_cookies()),
        };
        let http = crate::metrics::record_latency(
            http_router(drover.clone(), listening.clone(), web, cancel.clone()),
            drover.metrics().clone(),
        );
        spawn_plain_http(
            &tasks,
            metrics_listener,
            crate::metrics::router(drover.clone()),
            cancel.clone(),
        );
        let http_ca = match http_tls {
            Some(tls) => {
                tasks.spawn(crate::https::serve(
                    http_listener,
                    tls.config,
                    http,
                    cancel.clone(),
                ));
                matches!(settings.http_tls, HttpTls::SelfSigned { .. }).then(|| HttpCa {
                    path: settings.data_dir.join(HTTP_TLS_DIR).join("ca.crt"),
                    pem: tls.ca_pem,
                })
            }
            None => {
                spawn_plain_http(&tasks, http_listener, http, cancel.clone());
                None
            }
        };

        // gRPC needs HTTP/2, which TLS clients (Talos's grpc-go) ask for by ALPN.
        let machine_api_tls = settings
            .machine_api_tls
            .as_ref()
            .map(|files| ServerTls::new(&files_source(files), &[b"h2"]))
            .transpose()
            .context("machine API TLS")?;
        let dialer = drover_dataplane::MachineDialer::new(
            hub.clone(),
            drover.clone(),
            shared.relay.clone(),
            settings.dataplane.liveness_threshold,
        );
        tasks.spawn(drover_relay::serve(
            relay_listener,
            shared.relay,
            {
                let (hub, metrics) = (hub.clone(), drover.metrics().clone());
                move |target| {
                    let (hub, metrics) = (hub.clone(), metrics.clone());
                    async move {
                        let stream = hub.connect(target).await?;
                        metrics.relayed(false);
                        Ok(stream)
                    }
                }
            },
            cancel.clone(),
        ));
        let dataplane = drover_dataplane::start(
            dialer,
            drover.clone(),
            settings.dataplane.clone(),
            cancel.clone(),
            &tasks,
        )
        .await
        .context("cannot start the tunnel data plane")?;
        let keyring = drover_cluster_keys::ClusterKeyring::new(drover.clone());
        drover_reconcile::start(
            drover.clone(),
            dataplane.machine_api().clone(),
            keyring.clone(),
            settings.reconciler.clone(),
            cancel.clone(),
            &tasks,
        );
        spawn_audit_pruning(
            drover.clone(),
            settings.audit_retention,
            cancel.clone(),
            &tasks,
        );
        tasks.spawn(drover_kubeproxy::serve(
            kube_proxy_listener,
            kube_proxy_tls.config.clone(),
            drover_kubeproxy::KubeProxy {
                drover: drover.clone(),
                machines: dataplane.dialer().clone(),
                keyring: keyring.clone(),
            },
            cancel.clone(),
        ));
        tasks.spawn(drover_talosproxy::serve(
            talos_proxy_listener,
            talos_proxy_tls.server.clone(),
            drover_talosproxy::TalosProxy {
                drover: drover.clone(),
                machine_api: dataplane.machine_api().clone(),
                keyring: keyring.clone(),
            },
            cancel.clone(),
        ));
        let machine_router = tonic::transport::Server::builder()
            .add_service(drover_grpc::provision_service(drover.clone()))
            .add_service(dataplane.grpc_carrier().into_service());
        match machine_api_tls {
            Some(tls) => spawn_grpc(
                &tasks,
                machine_router,
                drover_tls::incoming(
                    machine_listener,
                    tls.config,
                    cancel.clone(),
                    "the machine API",
                )
                .map(Ok::<_, std::io::Error>),
                cancel.clone(),
            ),
            None => spawn_grpc(
                &tasks,
                machine_router,
                tokio_stream::wrappers::TcpListenerStream::new(machine_listener),
                cancel.clone(),
            ),
        }
        if drover.oidc_settings().is_some() {
            // Early, so a wrong issuer shows in the log at start; logins retry it anyway.
            let discover = drover.clone();
            let stop = cancel.clone();
            tasks.spawn(async move {
                tokio::select! {
                    () = stop.cancelled() => {}
                    found = discover.discover_identity_provider() => if let Err(err) = found {
                        tracing::warn!(error = %err, "the identity provider is not usable yet; logins will retry");
                    }
                }
            });
        }
        tasks.close();
        listening.store(true, Ordering::Release);
        tracing::info!(wireguard = ?hub.udp_local_addr(), "WireGuard endpoint is up");
        tracing::info!(%http_addr, %machine_api_addr, machine_api = %machine_api_url, relay = %relay_addr, replica = %drover.replica(), "droverd is ready");

        Ok(Self {
            http_addr,
            http_ca,
            http_tls: settings.http_tls.is_on(),
            metrics_addr,
            machine_api_addr,
            kube_proxy_addr,
            talos_proxy_addr,
            machine_api_url,
            relay_addr,
            initial_admin_token: bootstrap.initial_admin_token,
            data_dir: settings.data_dir,
            drover,
            dataplane,
            replica_timeout: settings.dataplane.replica_timeout,
            cancel,
            tasks,
            postgres: None,
        })
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The HTTP API's URL on the bound address: `https://` when it serves TLS.
    pub fn http_url(&self) -> String {
        let scheme = if self.http_tls { "https" } else { "http" };
        format!("{scheme}://{}", self.http_addr)
    }

    /// Where `/metrics` is served.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_addr
    }

    /// The CA of the HTTP API's self-signed certificate (`--http-tls self-signed`).
    pub fn http_ca(&self) -> Option<&HttpCa> {
        self.http_ca.as_ref()
    }

    pub fn machine_api_addr(&self) -> SocketAddr {
        self.machine_api_addr
    }

    /// Where the Kubernetes proxy listens.
    pub fn kube_proxy_addr(&self) -> SocketAddr {
        self.kube_proxy_addr
    }

    /// Where the Talos API proxy listens.
    pub fn talos_proxy_addr(&self) -> SocketAddr {
        self.talos_proxy_addr
    }

    /// Where the other replicas reach this one's relay.
    pub fn relay_addr(&self) -> SocketAddr {
        self.relay_addr
    }

    /// The machine API URL nodes are told to use, without a token.
    pub fn machine_api_url(&self) -> &JoinUrl {
        &self.machine_api_url
    }

    /// The initial admin API token, if this start created it.
    pub fn initial_admin_token(&self) -> Option<&str> {
        self.initial_admin_token.as_deref()
    }

    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }

    pub fn service(&self) -> &Drover {
        &self.drover
    }

    /// The tunnel data plane: the WireGuard hub and machine API access.
    pub fn dataplane(&self) -> &DataPlane {
        &self.dataplane
    }

    /// Resolves when a server task failed or [`Server::shutdown`] was asked for.
    pub async fn stopped(&self) {
        self.cancel.cancelled().await;
    }

    /// Stops accepting, drains the servers, closes the pool and stops the private PostgreSQL.
    pub async fn shutdown(self) -> Result<()> {
        self.cancel.cancel();
        self.tasks.wait().await;
        self.dataplane.hub().shutdown().await;
        if let Err(err) = self.drover.leave_replicas(self.replica_timeout).await {
            tracing::warn!(error = %err, "leaving the replicas failed; others remove this one after the replica timeout");
        }
        self.drover.store().close().await;
        if let Some(pg) = self.postgres {
            pg.stop().await.context("stopping the private PostgreSQL")?;
        }
        tracing::info!("droverd stopped");
        Ok(())
    }
}

/// Serves `router` over plain HTTP on `listener` until `cancel`; a failure stops droverd.
fn spawn_plain_http(
    tasks: &TaskTracker,
    listener: TcpListener,
    router: Router,
    cancel: CancellationToken,
) {
    tasks.spawn(async move {
        let addr = listener.local_addr().ok();
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(cancel.clone().cancelled_owned())
            .await;
        if let Err(err) = served {
            tracing::error!(error = %err, ?addr, "an HTTP server failed");
            cancel.cancel();
        }
    });
}

/// Serves the gRPC `router` on the connections `incoming` until `cancel`; a failure stops
/// droverd.
fn spawn_grpc<I, IO, E>(
    tasks: &TaskTracker,
    router: tonic::transport::server::Router,
    incoming: I,
    cancel: CancellationToken,
) where
    I: tokio_stream::Stream<Item = Result<IO, E>> + Send + 'static,
    IO: tokio::io::AsyncRead
        + tokio::io::AsyncWrite
        + tonic::transport::server::Connected
        + Unpin
        + Send
        + 'static,
    IO::ConnectInfo: Clone + Send + Sync + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    tasks.spawn(async move {
        let served = router
            .serve_with_incoming_shutdown(incoming, cancel.clone().cancelled_owned())
            .await;
        if let Err(err) = served {
            tracing::error!(error = %err, "the machine API server failed");
            cancel.cancel();
        }
    });
}

fn http_router(
    drover: Drover,
    listening: Arc<AtomicBool>,
    web: drover_web::WebSettings,
    cancel: CancellationToken,
) -> Router {
    let health = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(Health {
            drover: drover.clone(),
            listening,
        });
    let grpc = drover_grpc::management_routes(drover.clone()).into_axum_router();
    drover_web::router(drover.clone(), web, cancel)
        .merge(health)
        .merge(grpc)
        .merge(drover_rest::router(drover))
        .layer(tower_http_trace())
}

fn tower_http_trace() -> tower_http::trace::TraceLayer<
    tower_http::classify::SharedClassifier<tower_http::classify::ServerErrorsAsFailures>,
> {
    tower_http::trace::TraceLayer::new_for_http()
}

async fn readyz(State(health): State<Health>) -> (StatusCode, &'static str) {
    if !health.listening.load(Ordering::Acquire) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "listeners are not bound yet\n",
        );
    }
    if !health.drover.store().ping().await {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "the database does not answer\n",
        );
    }
    (StatusCode::OK, "ready\n")
}

/// The key-encryption keys: from configuration, or the data directory's key files.
pub fn keyring(settings: &Settings) -> Result<Keyring> {
    use secrecy::ExposeSecret;
    match &settings.master_key {
        Some(key) => Ok(Keyring::fixed(
            Kek::from_base64(key.expose_secret()).context("master-key")?,
        )),
        None => Keyring::from_dir(&settings.data_dir).with_context(|| {
            format!(
                "cannot load the key-encryption key from {}",
                settings.data_dir.display()
            )
        }),
    }
}

/// Deletes audit log entries older than `retention`, at start and then hourly (several replicas
/// may do it at once: the delete is idempotent).
fn spawn_audit_pruning(
    drover: Drover,
    retention: std::time::Duration,
    cancel: CancellationToken,
    tasks: &TaskTracker,
) {
    let Ok(retention) = chrono::Duration::from_std(retention) else {
        tracing::warn!("the audit retention is too long to enforce; entries are kept");
        return;
    };
    tasks.spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(3600));
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = every.tick() => match drover.prune_audit_log(retention).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(deleted = n, "pruned the audit log"),
                    Err(err) => tracing::warn!(error = %err, "pruning the audit log failed"),
                },
            }
        }
    });
}

/// The Kubernetes proxy's TLS (the operator's files, or signed by Drover's proxy CA for the
/// names clients may use) and its URL for kubeconfigs.
fn kube_proxy_tls(
    settings: &Settings,
    bound: SocketAddr,
    ca: CertAndKey,
) -> Result<(ServerTls, url::Url)> {
    use std::net::IpAddr;
    let url = match &settings.kube_proxy.url {
        Some(url) => url.clone(),
        None => {
            let ip = if bound.ip().is_unspecified() {
                IpAddr::from([127, 0, 0, 1])
            } else {
                bound.ip()
            };
            format!("https://{}", SocketAddr::new(ip, bound.port())).parse()?
        }
    };
    let source = match &settings.kube_proxy.tls {
        Some(files) => files_source(files),
        None => {
            let names: Vec<String> = url
                .host_str()
                .map(|host| host.trim_matches(['[', ']']).to_owned())
                .into_iter()
                .collect();
            self_signed(ca, "drover-kube-proxy", bound, &names)
        }
    };
    // HTTP/1.1 only: watches stream as chunked responses.
    let tls = ServerTls::new(&source, &[b"http/1.1"])?;
    Ok((tls, url))
}

/// How the HTTP API serves TLS, if it does.
fn http_server_tls(
    settings: &Settings,
    bound: SocketAddr,
    ca: CertAndKey,
) -> Result<Option<ServerTls>> {
    let source = match &settings.http_tls {
        HttpTls::Off => return Ok(None),
        HttpTls::Files(files) => files_source(files),
        HttpTls::SelfSigned { names } => {
            let mut names = names.clone();
            if let Some(host) = settings
                .oidc
                .as_ref()
                .and_then(|o| o.public_url.as_ref())
                .and_then(url::Url::host_str)
            {
                names.push(host.trim_matches(['[', ']']).to_owned());
            }
            // Clients are told to trust this file (`drover --ca-file`).
            let dir = settings.data_dir.join(HTTP_TLS_DIR);
            std::fs::create_dir_all(&dir)
                .and_then(|()| std::fs::write(dir.join("ca.crt"), &ca.cert_pem))
                .with_context(|| format!("cannot write the HTTP CA to {}", dir.display()))?;
            self_signed(ca, "droverd", bound, &names)
        }
    };
    Ok(Some(ServerTls::new(&source, crate::https::ALPN)?))
}

/// The operator's certificate files, re-read when they change.
fn files_source(files: &crate::settings::TlsFiles) -> CertSource {
    CertSource::Files {
        cert: files.cert.clone(),
        key: files.key.clone(),
    }
}

/// A certificate signed by Drover's CA `ca` for the [`serving_names`].
fn self_signed(ca: CertAndKey, leaf_name: &str, bound: SocketAddr, extra: &[String]) -> CertSource {
    let (dns_names, ips) = serving_names(bound, extra);
    CertSource::SelfSigned {
        ca,
        leaf_name: leaf_name.to_owned(),
        dns_names,
        ips,
    }
}

/// The DNS names and IP addresses a serving certificate names: localhost, the loopback
/// addresses, the bound address (unless unspecified) and `extra` names (IP addresses or DNS
/// names).
fn serving_names(bound: SocketAddr, extra: &[String]) -> (Vec<String>, Vec<std::net::IpAddr>) {
    use std::net::{IpAddr, Ipv6Addr};
    let mut dns_names = vec!["localhost".to_owned()];
    let mut ips: Vec<IpAddr> = vec![[127, 0, 0, 1].into(), Ipv6Addr::LOCALHOST.into()];
    if !bound.ip().is_unspecified() {
        ips.push(bound.ip());
    }
    for name in extra {
        match name.parse::<IpAddr>() {
            Ok(ip) => ips.push(ip),
            Err(_) => dns_names.push(name.clone()),
        }
    }
    ips.sort();
    ips.dedup();
    (dns_names, ips)
}

/// The Talos API proxy's TLS (the installation's proxy CA, a serving certificate for the
/// names clients may use) and its endpoint (`host:port`) for talosconfigs.
fn talos_proxy_tls(
    settings: &Settings,
    bound: SocketAddr,
    ca: CertAndKey,
) -> Result<(drover_talosproxy::ProxyTls, String)> {
    use std::net::IpAddr;
    let endpoint = match &settings.talos_proxy.endpoint {
        Some(endpoint) => endpoint.clone(),
        None => {
            let ip = if bound.ip().is_unspecified() {
                IpAddr::from([127, 0, 0, 1])
            } else {
                bound.ip()
            };
            SocketAddr::new(ip, bound.port()).to_string()
        }
    };
    let host: Vec<String> = endpoint
        .rsplit_once(':')
        .map(|(host, _)| host.trim_matches(['[', ']']).to_owned())
        .into_iter()
        .collect();
    let (names, ips) = serving_names(bound, &host);
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let tls = drover_talosproxy::ProxyTls::new(ca, &names, &ips)?;
    Ok((tls, endpoint))
}
