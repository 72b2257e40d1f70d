//! Settings: defaults < TOML file < `DROVER_*` environment < flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Parser;
use drover_service::{Plans, Tenancy, TenancyMode};
use drover_siderolink::{JoinUrl, Transport};
use serde::Deserialize;

/// Command line of `droverd`. Every flag can also be set by its environment variable or in the
/// TOML file given with `--config` (same names, with `_` for `-`).
#[derive(Debug, Clone, Default, Parser)]
#[command(
    name = "droverd",
    version,
    about = "Drover: the control plane for Talos Linux fleets"
)]
pub struct Args {
    /// TOML settings file; flags and environment variables override it.
    #[arg(long, env = "DROVER_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Where Drover keeps its state: the private PostgreSQL, keys, the initial admin token.
    /// [default: ./drover-data]
    #[arg(long, env = "DROVER_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Address of the HTTP server: REST API, management gRPC, health and the web UI.
    /// [default: 127.0.0.1:8080]
    #[arg(long, env = "DROVER_HTTP_ADDR", value_name = "ADDR")]
    pub http_addr: Option<SocketAddr>,

    /// TLS on the HTTP address: `files` (--http-tls-cert and --http-tls-key), `self-signed` (a
    /// CA Drover makes once per installation signs the serving certificate; clients trust
    /// <data-dir>/http-tls/ca.crt) or `off` (plain HTTP). [default: `files` when they are given, else off on a
    /// loopback address; any other address needs TLS or an explicit `off`]
    #[arg(long, env = "DROVER_HTTP_TLS", value_enum, value_name = "MODE")]
    pub http_tls: Option<HttpTlsMode>,

    /// PEM certificate chain for the HTTP address, re-read whenever it changes.
    #[arg(
        long,
        env = "DROVER_HTTP_TLS_CERT",
        value_name = "FILE",
        requires = "http_tls_key"
    )]
    pub http_tls_cert: Option<PathBuf>,

    /// PEM private key for the HTTP certificate, re-read whenever it changes.
    #[arg(
        long,
        env = "DROVER_HTTP_TLS_KEY",
        value_name = "FILE",
        requires = "http_tls_cert"
    )]
    pub http_tls_key: Option<PathBuf>,

    /// More DNS names and IP addresses for the self-signed HTTP certificate (it always names
    /// localhost, the loopback addresses, the bound address and the public URL's host);
    /// repeat or comma-separate.
    #[arg(
        long,
        env = "DROVER_HTTP_TLS_NAMES",
        value_name = "NAME",
        value_delimiter = ','
    )]
    pub http_tls_names: Vec<String>,

    /// Address of the Prometheus metrics endpoint (`GET /metrics`, plain HTTP, no credential:
    /// bind it where only your Prometheus reaches it). [default: 127.0.0.1:8097]
    #[arg(long, env = "DROVER_METRICS_ADDR", value_name = "ADDR")]
    pub metrics_addr: Option<SocketAddr>,

    /// Address of the machine API that Talos nodes call to provision (plaintext h2c unless a
    /// certificate is given). [default: 0.0.0.0:8090]
    #[arg(long, env = "DROVER_MACHINE_API_ADDR", value_name = "ADDR")]
    pub machine_api_addr: Option<SocketAddr>,

    /// PEM certificate chain for the machine API; serves TLS when given with the key. Both are
    /// re-read whenever they change.
    #[arg(
        long,
        env = "DROVER_MACHINE_API_TLS_CERT",
        value_name = "FILE",
        requires = "machine_api_tls_key"
    )]
    pub machine_api_tls_cert: Option<PathBuf>,

    /// PEM private key for the machine API certificate.
    #[arg(
        long,
        env = "DROVER_MACHINE_API_TLS_KEY",
        value_name = "FILE",
        requires = "machine_api_tls_cert"
    )]
    pub machine_api_tls_key: Option<PathBuf>,

    /// Where the Kubernetes proxy listens (TLS). [default: 0.0.0.0:8095]
    #[arg(long, env = "DROVER_KUBE_PROXY_ADDR", value_name = "ADDR")]
    pub kube_proxy_addr: Option<SocketAddr>,

    /// The Kubernetes proxy's URL as clients reach it, put into kubeconfigs. [default:
    /// https://<kube proxy address>, with 127.0.0.1 for an unspecified address]
    #[arg(long, env = "DROVER_KUBE_PROXY_URL", value_name = "URL")]
    pub kube_proxy_url: Option<String>,

    /// PEM certificate chain for the Kubernetes proxy [default: signed by a CA Drover makes once
    /// per installation].
    #[arg(
        long,
        env = "DROVER_KUBE_PROXY_TLS_CERT",
        value_name = "FILE",
        requires = "kube_proxy_tls_key"
    )]
    pub kube_proxy_tls_cert: Option<PathBuf>,

    /// PEM private key for the Kubernetes proxy certificate.
    #[arg(
        long,
        env = "DROVER_KUBE_PROXY_TLS_KEY",
        value_name = "FILE",
        requires = "kube_proxy_tls_cert"
    )]
    pub kube_proxy_tls_key: Option<PathBuf>,

    /// Where the Talos API proxy listens (gRPC over TLS). [default: 0.0.0.0:8096]
    #[arg(long, env = "DROVER_TALOS_PROXY_ADDR", value_name = "ADDR")]
    pub talos_proxy_addr: Option<SocketAddr>,

    /// The Talos API proxy's `host:port` as clients reach it, put into talosconfigs. [default:
    /// the Talos API proxy address, with 127.0.0.1 for an unspecified address]
    #[arg(long, env = "DROVER_TALOS_PROXY_ENDPOINT", value_name = "HOST:PORT")]
    pub talos_proxy_endpoint: Option<String>,

    /// The machine API URL nodes are told to use (put into `siderolink.api=`), e.g.
    /// `grpc://203.0.113.7:8090` or `https://drover.example.com`. [default: the machine API
    /// address, with 127.0.0.1 for an unspecified address]
    #[arg(long, env = "DROVER_ADVERTISED_MACHINE_API", value_name = "URL")]
    pub advertised_machine_api: Option<String>,

    /// UDP address of the WireGuard endpoint. [default: 0.0.0.0:50180]
    #[arg(long, env = "DROVER_WIREGUARD_ADDR", value_name = "ADDR")]
    pub wireguard_addr: Option<SocketAddr>,

    /// WireGuard endpoints (`host:port`) nodes are told to use, primary first; repeat or
    /// comma-separate. [default: the advertised machine API host with the WireGuard port]
    #[arg(
        long,
        env = "DROVER_ADVERTISED_WIREGUARD_ENDPOINTS",
        value_name = "HOST:PORT",
        value_delimiter = ','
    )]
    pub advertised_wireguard_endpoints: Vec<String>,

    /// TCP address of the relay through which the other replicas reach the machines whose
    /// tunnels this replica holds (requests are authenticated with a key every replica shares).
    /// [default: 0.0.0.0:8099]
    #[arg(long, env = "DROVER_RELAY_ADDR", value_name = "ADDR")]
    pub relay_addr: Option<SocketAddr>,

    /// The relay's `ip:port` as the other replicas reach it, e.g. the pod IP. [default: the
    /// relay address, with the advertised machine API host (when it is an IP address) or
    /// 127.0.0.1 for an unspecified address]
    #[arg(long, env = "DROVER_ADVERTISED_RELAY_ADDR", value_name = "IP:PORT")]
    pub advertised_relay_addr: Option<SocketAddr>,

    /// A machine counts as connected while its tunnel was heard from within this long, e.g.
    /// `275s` (Talos's own threshold) or `2m`. [default: 275s]
    #[arg(long, env = "DROVER_LIVENESS_THRESHOLD", value_name = "DURATION")]
    pub liveness_threshold: Option<humantime::Duration>,

    /// A replica (droverd sharing the database with others) that has not refreshed its
    /// heartbeat for this long is gone: the others disconnect the machines whose tunnels it
    /// held. [default: 30s]
    #[arg(long, env = "DROVER_REPLICA_TIMEOUT", value_name = "DURATION")]
    pub replica_timeout: Option<humantime::Duration>,

    /// PostgreSQL URL. Without one, droverd runs a private PostgreSQL in <data-dir>/postgres.
    /// `DATABASE_URL` is read too.
    #[arg(long, env = "DROVER_DATABASE_URL", value_name = "URL")]
    pub database_url: Option<String>,

    /// Log format. [default: text]
    #[arg(long, env = "DROVER_LOG_FORMAT", value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,

    /// The key-encryption key (32 bytes, standard base64) that wraps the data keys sealing
    /// cluster secrets. [default: <data-dir>/master.key, created 0600 on first start]
    #[arg(
        long,
        env = "DROVER_MASTER_KEY",
        value_name = "BASE64",
        hide_env_values = true
    )]
    pub master_key: Option<String>,

    /// Time between cluster reconcile rounds when nothing changes. [default: 2s]
    #[arg(long, env = "DROVER_RECONCILE_INTERVAL", value_name = "DURATION")]
    pub reconcile_interval: Option<humantime::Duration>,

    /// How long a replica's claim on a cluster's reconciliation lasts without renewal: after a
    /// replica dies, another takes its clusters over within this long. [default: 30s]
    #[arg(long, env = "DROVER_RECONCILE_LEASE", value_name = "DURATION")]
    pub reconcile_lease: Option<humantime::Duration>,

    /// OpenID Connect issuer URL for browser login (discovery at
    /// `<issuer>/.well-known/openid-configuration`). Without it, only API tokens work.
    #[arg(long, env = "DROVER_OIDC_ISSUER", value_name = "URL")]
    pub oidc_issuer: Option<String>,

    /// The client id droverd is registered under at the identity provider.
    #[arg(long, env = "DROVER_OIDC_CLIENT_ID", value_name = "ID")]
    pub oidc_client_id: Option<String>,

    /// The client secret, for a confidential client (prefer the environment variable).
    /// Without one, droverd is a public client and relies on PKCE.
    #[arg(
        long,
        env = "DROVER_OIDC_CLIENT_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub oidc_client_secret: Option<String>,

    /// The URL browsers use to reach droverd; the redirect URI to register at the provider is
    /// this plus `/auth/callback`. Cookies are `Secure` when it is https. [default:
    /// http://<bound HTTP address>]
    #[arg(long, env = "DROVER_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,

    /// E-mail addresses that become Admin at their first login (the provider must mark them
    /// verified); repeat or comma-separate.
    #[arg(
        long,
        env = "DROVER_INITIAL_ADMIN_EMAIL",
        value_name = "EMAIL",
        value_delimiter = ','
    )]
    pub initial_admin_email: Vec<String>,

    /// How long a browser session lasts. [default: 12h]
    #[arg(long, env = "DROVER_SESSION_TTL", value_name = "DURATION")]
    pub session_ttl: Option<humantime::Duration>,

    /// How long audit log entries are kept. [default: 90days]
    #[arg(long, env = "DROVER_AUDIT_RETENTION", value_name = "DURATION")]
    pub audit_retention: Option<humantime::Duration>,

    /// Where the web UI's built bundle is (`pkg/drover_web.js`, made by `scripts/build-web`);
    /// pages work without it, just not interactively. [default: `../site` next to the droverd
    /// executable]
    #[arg(long, env = "DROVER_WEB_ROOT", value_name = "DIR")]
    pub web_root: Option<PathBuf>,
    /// `single-tenant` (one organisation, the self-hosted default) or `multi-tenant` (a first
    /// login of a person who is no user anywhere creates a tenant on the default plan).
    /// [default: single-tenant]
    #[arg(long, env = "DROVER_TENANCY", value_enum, value_name = "MODE")]
    pub tenancy: Option<TenancyArg>,

    /// TOML file of plans (`[plans.NAME]` with `machines`, `clusters`, `users`,
    /// `service-accounts` limits), added to the built-in `hobby` and `unlimited`.
    #[arg(long, env = "DROVER_PLANS", value_name = "FILE")]
    pub plans: Option<PathBuf>,

    /// The plan new tenants get. [default: the plans file's `default-plan`, else `hobby` in
    /// multi-tenant mode and `unlimited` in single-tenant mode]
    #[arg(long, env = "DROVER_DEFAULT_PLAN", value_name = "NAME")]
    pub default_plan: Option<String>,

    /// Let Admins take break-glass credentials: a kubeconfig and talosconfig signed directly by
    /// a cluster's own CAs, which bypass Drover. Each one issued is audited and taints the
    /// cluster until its CAs are rotated. [default: off]
    #[arg(long, env = "DROVER_ALLOW_BREAK_GLASS")]
    pub allow_break_glass: bool,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// `--http-tls`: how the HTTP address is served when no certificate files are given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum HttpTlsMode {
    /// Plain HTTP.
    Off,
    /// The operator's certificate files.
    Files,
    /// A certificate signed by a CA Drover makes once per installation (its certificate in
    /// <data-dir>/http-tls/ca.crt).
    SelfSigned,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum TenancyArg {
    SingleTenant,
    MultiTenant,
}

impl From<TenancyArg> for TenancyMode {
    fn from(arg: TenancyArg) -> Self {
        match arg {
            TenancyArg::SingleTenant => TenancyMode::SingleTenant,
            TenancyArg::MultiTenant => TenancyMode::MultiTenant,
        }
    }
}

/// Maintenance commands (without one, droverd serves).
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Manage the key-encryption key.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Manage tenants and their plans (operator commands, straight on the database).
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Write the database to a file with pg_dump (custom format), while droverd runs. The
    /// key-encryption key (<data-dir>/master.key) is not in it: back it up apart.
    Backup {
        /// The archive to write.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Print the configuration reference (Markdown): every setting with its flag, environment
    /// variable, settings-file key and default, and these commands.
    ConfigReference,
    /// Restore a backup into a fresh data dir or an empty database (droverd stopped); put the
    /// key-encryption key back in <data-dir>/master.key (or --master-key) too.
    Restore {
        /// The archive `droverd backup` wrote.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum TenantCommand {
    /// Create a tenant and print its initial admin API token (shown once).
    Create {
        name: String,
        /// The tenant's plan. [default: the default plan]
        #[arg(long)]
        plan: Option<String>,
    },
    /// List the tenants with their plans and usage.
    List,
    /// Move a tenant to another plan (what it has stays; limits apply to what is added).
    SetPlan { name: String, plan: String },
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum KeysCommand {
    /// Replace <data-dir>/master.key by a new key and re-wrap every tenant's data key under it,
    /// while droverd keeps running. The old key is kept as master.key.previous.
    Rotate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// The TOML file: the same settings as the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct FileSettings {
    data_dir: Option<PathBuf>,
    http_addr: Option<SocketAddr>,
    http_tls: Option<HttpTlsMode>,
    http_tls_cert: Option<PathBuf>,
    http_tls_key: Option<PathBuf>,
    http_tls_names: Option<Vec<String>>,
    metrics_addr: Option<SocketAddr>,
    machine_api_addr: Option<SocketAddr>,
    machine_api_tls_cert: Option<PathBuf>,
    machine_api_tls_key: Option<PathBuf>,
    kube_proxy_addr: Option<SocketAddr>,
    kube_proxy_url: Option<String>,
    kube_proxy_tls_cert: Option<PathBuf>,
    kube_proxy_tls_key: Option<PathBuf>,
    talos_proxy_addr: Option<SocketAddr>,
    talos_proxy_endpoint: Option<String>,
    advertised_machine_api: Option<String>,
    wireguard_addr: Option<SocketAddr>,
    advertised_wireguard_endpoints: Option<Vec<String>>,
    relay_addr: Option<SocketAddr>,
    advertised_relay_addr: Option<SocketAddr>,
    database_url: Option<String>,
    #[serde(default, with = "humantime_serde_opt")]
    liveness_threshold: Option<std::time::Duration>,
    #[serde(default, with = "humantime_serde_opt")]
    replica_timeout: Option<std::time::Duration>,
    log_format: Option<LogFormat>,
    master_key: Option<String>,
    #[serde(default, with = "humantime_serde_opt")]
    reconcile_interval: Option<std::time::Duration>,
    #[serde(default, with = "humantime_serde_opt")]
    reconcile_lease: Option<std::time::Duration>,
    oidc_issuer: Option<String>,
    oidc_client_id: Option<String>,
    oidc_client_secret: Option<String>,
    public_url: Option<String>,
    initial_admin_email: Option<Vec<String>>,
    #[serde(default, with = "humantime_serde_opt")]
    session_ttl: Option<std::time::Duration>,
    #[serde(default, with = "humantime_serde_opt")]
    audit_retention: Option<std::time::Duration>,
    web_root: Option<PathBuf>,
    tenancy: Option<TenancyArg>,
    plans: Option<PathBuf>,
    default_plan: Option<String>,
    allow_break_glass: Option<bool>,
}

mod humantime_serde_opt {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<std::time::Duration>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| humantime::parse_duration(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// Settings after layering and checking.
#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub http_addr: SocketAddr,
    /// How the HTTP address is served: plain, the operator's files, or self-signed.
    pub http_tls: HttpTls,
    /// Where `/metrics` is served.
    pub metrics_addr: SocketAddr,
    pub machine_api_addr: SocketAddr,
    pub machine_api_tls: Option<TlsFiles>,
    /// The Kubernetes proxy: where it listens, its URL for clients, the operator's TLS files.
    pub kube_proxy: KubeProxySettings,
    /// The Talos API proxy: where it listens and how clients reach it.
    pub talos_proxy: TalosProxySettings,
    /// None = derive from the bound machine API address at start.
    pub advertised_machine_api: Option<JoinUrl>,
    pub wireguard_addr: SocketAddr,
    pub advertised_wireguard_endpoints: Vec<String>,
    /// Where the relay for the other replicas listens.
    pub relay_addr: SocketAddr,
    /// None = derive from the bound relay address at start.
    pub advertised_relay_addr: Option<SocketAddr>,
    pub database: Database,
    pub log_format: LogFormat,
    /// Liveness and peer-sync timing of the tunnel data plane.
    pub dataplane: drover_dataplane::DataPlaneConfig,
    /// The key-encryption key from configuration (None = `<data-dir>/master.key`).
    pub master_key: Option<secrecy::SecretString>,
    pub reconciler: drover_reconcile::ReconcilerConfig,
    /// Browser login through OpenID Connect, when an issuer is configured.
    pub oidc: Option<OidcLogin>,
    /// Audit log entries older than this are deleted.
    pub audit_retention: std::time::Duration,
    /// The web UI's bundle.
    pub web_root: PathBuf,
    /// Single- or multi-tenant, and the plans.
    pub tenancy: Tenancy,
    /// Whether Admins may take break-glass credentials.
    pub allow_break_glass: bool,
    pub command: Option<Command>,
}

/// Browser login settings; the public URL defaults to the bound HTTP address at start.
#[derive(Clone)]
pub struct OidcLogin {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<secrecy::SecretString>,
    pub public_url: Option<url::Url>,
    pub initial_admin_emails: Vec<String>,
    pub session_ttl: std::time::Duration,
}

impl std::fmt::Debug for OidcLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcLogin")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "[redacted]"),
            )
            .field(
                "public_url",
                &self.public_url.as_ref().map(url::Url::as_str),
            )
            .field("initial_admin_emails", &self.initial_admin_emails)
            .field("session_ttl", &self.session_ttl)
            .finish()
    }
}

impl OidcLogin {
    /// The service's settings, with `bound` (the HTTP listener; `https` when `tls`) as the
    /// default public URL.
    pub fn service_settings(&self, bound: SocketAddr, tls: bool) -> drover_service::OidcSettings {
        let public_url = self.public_url.clone().unwrap_or_else(|| {
            let scheme = if tls { "https" } else { "http" };
            format!("{scheme}://{bound}/")
                .parse()
                .expect("a socket address makes a URL")
        });
        drover_service::OidcSettings {
            issuer: self.issuer.clone(),
            client_id: self.client_id.clone(),
            client_secret: self.client_secret.clone(),
            public_url,
            initial_admin_emails: self.initial_admin_emails.clone(),
            session_ttl: self.session_ttl,
        }
    }
}

/// How long audit log entries are kept unless configured.
pub const DEFAULT_AUDIT_RETENTION: std::time::Duration =
    std::time::Duration::from_secs(90 * 24 * 3600);

/// Default lifetime of a browser session.
pub const DEFAULT_SESSION_TTL: std::time::Duration = std::time::Duration::from_secs(12 * 3600);

#[derive(Debug, Clone)]
pub struct KubeProxySettings {
    pub addr: SocketAddr,
    /// None = https://<bound address>.
    pub url: Option<url::Url>,
    /// None = a certificate signed by Drover's own proxy CA.
    pub tls: Option<TlsFiles>,
}

#[derive(Debug, Clone)]
pub struct TalosProxySettings {
    pub addr: SocketAddr,
    /// `host:port` for talosconfigs; None = the bound address (127.0.0.1 if unspecified).
    pub endpoint: Option<String>,
}

/// How the HTTP API is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpTls {
    /// Plain HTTP (a loopback address, or asked for with `--http-tls off`).
    Off,
    /// The operator's certificate and key, re-read when they change.
    Files(TlsFiles),
    /// Signed by the installation's HTTPS CA, for these extra names and addresses.
    SelfSigned { names: Vec<String> },
}

impl HttpTls {
    /// Whether clients reach the HTTP API over TLS.
    pub fn is_on(&self) -> bool {
        *self != Self::Off
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone)]
pub enum Database {
    Url(String),
    /// A private PostgreSQL in `<data-dir>/postgres`, with extra `-c` settings.
    Private {
        extra_settings: Vec<(String, String)>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read settings file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("settings file {path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("advertised-machine-api: {0}")]
    AdvertisedApi(#[from] drover_siderolink::JoinUrlError),
    #[error("advertised-machine-api: {0:?} must not carry a join token; tokens are added per join")]
    AdvertisedApiWithToken(String),
    #[error("advertised-wireguard-endpoints: {0:?} is not host:port")]
    Endpoint(String),
    #[error("the TLS certificate and key files must be given together")]
    TlsPair,
    #[error(
        "http-addr {0} is reachable from other hosts and would serve plain HTTP: give a \
         certificate (--http-tls-cert and --http-tls-key), let Drover make one \
         (--http-tls self-signed), or allow plain HTTP explicitly (--http-tls off)"
    )]
    HttpPlainNotLoopback(SocketAddr),
    #[error(
        "http-tls: the certificate files are given, so --http-tls {0} does not apply; give one \
         or the other"
    )]
    HttpTlsTwice(&'static str),
    #[error("http-tls files needs both http-tls-cert and http-tls-key")]
    HttpTlsFiles,
    #[error("http-tls-names: only a self-signed certificate (--http-tls self-signed) takes names")]
    HttpTlsNamesWithoutSelfSigned,
    #[error("kube-proxy-url: {0:?} is not an https:// URL")]
    KubeProxyUrl(String),
    #[error("talos-proxy-endpoint: {0:?} is not host:port")]
    TalosProxyEndpoint(String),
    #[error("{0} needs oidc-issuer (browser login through OpenID Connect)")]
    OidcWithoutIssuer(&'static str),
    #[error("oidc-client-id must be set with oidc-issuer")]
    OidcWithoutClientId,
    #[error("public-url: {0:?} is not an http(s) URL")]
    PublicUrl(String),
    #[error("cannot read plans file {path}: {source}")]
    ReadPlans {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("plans file {path}: {source}")]
    Plans {
        path: PathBuf,
        source: drover_service::PlansError,
    },
    #[error("default-plan: {0}")]
    DefaultPlan(drover_service::PlansError),
}

impl Settings {
    /// Layers the file (if any) under the flags and environment in `args`.
    pub fn resolve(args: Args) -> Result<Self, SettingsError> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileSettings::default(),
        };
        let database_url = args
            .database_url
            .or_else(|| std::env::var("DATABASE_URL").ok().filter(|v| !v.is_empty()))
            .or(file.database_url);
        let tls = match (
            args.machine_api_tls_cert.or(file.machine_api_tls_cert),
            args.machine_api_tls_key.or(file.machine_api_tls_key),
        ) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            _ => return Err(SettingsError::TlsPair),
        };
        let http_addr = args
            .http_addr
            .or(file.http_addr)
            .unwrap_or_else(|| "127.0.0.1:8080".parse().expect("valid"));
        let http_tls = http_tls(
            http_addr,
            args.http_tls.or(file.http_tls),
            args.http_tls_cert.or(file.http_tls_cert),
            args.http_tls_key.or(file.http_tls_key),
            if args.http_tls_names.is_empty() {
                file.http_tls_names.unwrap_or_default()
            } else {
                args.http_tls_names
            },
        )?;
        let kube_proxy = KubeProxySettings {
            addr: args
                .kube_proxy_addr
                .or(file.kube_proxy_addr)
                .unwrap_or_else(|| "0.0.0.0:8095".parse().expect("valid")),
            url: match args.kube_proxy_url.or(file.kube_proxy_url) {
                Some(text) => Some(
                    url::Url::parse(&text)
                        .ok()
                        .filter(|u| u.scheme() == "https")
                        .ok_or_else(|| SettingsError::KubeProxyUrl(text.clone()))?,
                ),
                None => None,
            },
            tls: match (
                args.kube_proxy_tls_cert.or(file.kube_proxy_tls_cert),
                args.kube_proxy_tls_key.or(file.kube_proxy_tls_key),
            ) {
                (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
                (None, None) => None,
                _ => return Err(SettingsError::TlsPair),
            },
        };
        let talos_proxy = TalosProxySettings {
            addr: args
                .talos_proxy_addr
                .or(file.talos_proxy_addr)
                .unwrap_or_else(|| "0.0.0.0:8096".parse().expect("valid")),
            endpoint: match args.talos_proxy_endpoint.or(file.talos_proxy_endpoint) {
                Some(text) => {
                    let port_ok = text
                        .rsplit_once(':')
                        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
                    if !port_ok {
                        return Err(SettingsError::TalosProxyEndpoint(text));
                    }
                    Some(text)
                }
                None => None,
            },
        };
        let advertised_machine_api =
            match args.advertised_machine_api.or(file.advertised_machine_api) {
                Some(text) => {
                    let url = JoinUrl::parse(&text)?;
                    if url.join_token.is_some() {
                        return Err(SettingsError::AdvertisedApiWithToken(text));
                    }
                    Some(url)
                }
                None => None,
            };
        let endpoints = if args.advertised_wireguard_endpoints.is_empty() {
            file.advertised_wireguard_endpoints.unwrap_or_default()
        } else {
            args.advertised_wireguard_endpoints
        };
        for e in &endpoints {
            let port_ok = e
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
            if !port_ok {
                return Err(SettingsError::Endpoint(e.clone()));
            }
        }
        let oidc = oidc_login(
            args.oidc_issuer.or(file.oidc_issuer),
            args.oidc_client_id.or(file.oidc_client_id),
            args.oidc_client_secret.or(file.oidc_client_secret),
            args.public_url.or(file.public_url),
            if args.initial_admin_email.is_empty() {
                file.initial_admin_email.unwrap_or_default()
            } else {
                args.initial_admin_email
            },
            args.session_ttl.map(Into::into).or(file.session_ttl),
        )?;
        let tenancy = tenancy(
            args.tenancy.or(file.tenancy),
            args.plans.or(file.plans),
            args.default_plan.or(file.default_plan),
        )?;
        Ok(Self {
            oidc,
            allow_break_glass: args.allow_break_glass || file.allow_break_glass.unwrap_or(false),
            audit_retention: args
                .audit_retention
                .map(Into::into)
                .or(file.audit_retention)
                .unwrap_or(DEFAULT_AUDIT_RETENTION),
            web_root: args
                .web_root
                .or(file.web_root)
                .unwrap_or_else(default_web_root),
            tenancy,
            data_dir: args
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from("drover-data")),
            http_addr,
            http_tls,
            metrics_addr: args
                .metrics_addr
                .or(file.metrics_addr)
                .unwrap_or_else(|| "127.0.0.1:8097".parse().expect("valid")),
            machine_api_addr: args
                .machine_api_addr
                .or(file.machine_api_addr)
                .unwrap_or_else(|| "0.0.0.0:8090".parse().expect("valid")),
            machine_api_tls: tls,
            kube_proxy,
            talos_proxy,
            advertised_machine_api,
            wireguard_addr: args
                .wireguard_addr
                .or(file.wireguard_addr)
                .unwrap_or_else(|| "0.0.0.0:50180".parse().expect("valid")),
            advertised_wireguard_endpoints: endpoints,
            relay_addr: args
                .relay_addr
                .or(file.relay_addr)
                .unwrap_or_else(|| "0.0.0.0:8099".parse().expect("valid")),
            advertised_relay_addr: args.advertised_relay_addr.or(file.advertised_relay_addr),
            database: match database_url {
                Some(url) => Database::Url(url),
                None => Database::Private {
                    extra_settings: Vec::new(),
                },
            },
            log_format: args
                .log_format
                .or(file.log_format)
                .unwrap_or(LogFormat::Text),
            dataplane: {
                let mut dp = drover_dataplane::DataPlaneConfig::default();
                if let Some(t) = args
                    .liveness_threshold
                    .map(Into::into)
                    .or(file.liveness_threshold)
                {
                    dp.liveness_threshold = t;
                }
                if let Some(t) = args
                    .replica_timeout
                    .map(Into::into)
                    .or(file.replica_timeout)
                {
                    dp.replica_timeout = t;
                }
                dp
            },
            master_key: args.master_key.or(file.master_key).map(Into::into),
            reconciler: {
                let mut rc = drover_reconcile::ReconcilerConfig::default();
                if let Some(t) = args
                    .reconcile_interval
                    .map(Into::into)
                    .or(file.reconcile_interval)
                {
                    rc.interval = t;
                }
                if let Some(t) = args
                    .reconcile_lease
                    .map(Into::into)
                    .or(file.reconcile_lease)
                {
                    rc.lease = t;
                }
                rc
            },
            command: args.command,
        })
    }

    /// The machine API URL for kernel args, given the address the listener actually bound.
    pub fn machine_api_url(&self, bound: SocketAddr) -> JoinUrl {
        if let Some(url) = &self.advertised_machine_api {
            return url.clone();
        }
        let host = if bound.ip().is_unspecified() {
            tracing::warn!(
                "the machine API listens on {bound}; advertising 127.0.0.1 to nodes. Set \
                 --advertised-machine-api to an address nodes can reach"
            );
            "127.0.0.1".to_owned()
        } else {
            bound.ip().to_string()
        };
        JoinUrl {
            transport: if self.machine_api_tls.is_some() {
                Transport::Tls
            } else {
                Transport::Plaintext
            },
            host,
            port: bound.port(),
            join_token: None,
            grpc_tunnel: false,
        }
    }

    /// The relay's address for the other replicas, given the address it actually bound.
    pub fn relay_advertised(&self, api: &JoinUrl, bound: SocketAddr) -> SocketAddr {
        if let Some(addr) = self.advertised_relay_addr {
            return addr;
        }
        if !bound.ip().is_unspecified() {
            return bound;
        }
        let ip = api
            .host
            .parse()
            .unwrap_or_else(|_| std::net::IpAddr::from([127, 0, 0, 1]));
        SocketAddr::new(ip, bound.port())
    }

    /// WireGuard endpoints for Provision responses, primary first, given the UDP port the
    /// endpoint actually bound.
    pub fn wireguard_endpoints(&self, api: &JoinUrl, bound_port: u16) -> Vec<String> {
        if !self.advertised_wireguard_endpoints.is_empty() {
            return self.advertised_wireguard_endpoints.clone();
        }
        let host = if api.host.contains(':') {
            format!("[{}]", api.host)
        } else {
            api.host.clone()
        };
        vec![format!("{host}:{bound_port}")]
    }
}

/// How the HTTP API is served, from the settings that say so.
fn http_tls(
    addr: SocketAddr,
    mode: Option<HttpTlsMode>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    names: Vec<String>,
) -> Result<HttpTls, SettingsError> {
    let tls = match (mode, cert, key) {
        (None | Some(HttpTlsMode::Files), Some(cert), Some(key)) => {
            HttpTls::Files(TlsFiles { cert, key })
        }
        (Some(mode), Some(_), Some(_)) => {
            return Err(SettingsError::HttpTlsTwice(match mode {
                HttpTlsMode::Off => "off",
                _ => "self-signed",
            }));
        }
        (_, Some(_), None) | (_, None, Some(_)) | (Some(HttpTlsMode::Files), None, None) => {
            return Err(SettingsError::HttpTlsFiles);
        }
        (Some(HttpTlsMode::SelfSigned), None, None) => HttpTls::SelfSigned {
            names: names.clone(),
        },
        (Some(HttpTlsMode::Off), None, None) => HttpTls::Off,
        (None, None, None) if addr.ip().is_loopback() => HttpTls::Off,
        (None, None, None) => return Err(SettingsError::HttpPlainNotLoopback(addr)),
    };
    if !names.is_empty() && !matches!(tls, HttpTls::SelfSigned { .. }) {
        return Err(SettingsError::HttpTlsNamesWithoutSelfSigned);
    }
    Ok(tls)
}

fn oidc_login(
    issuer: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    public_url: Option<String>,
    initial_admin_emails: Vec<String>,
    session_ttl: Option<std::time::Duration>,
) -> Result<Option<OidcLogin>, SettingsError> {
    let Some(issuer) = issuer.filter(|i| !i.is_empty()) else {
        if client_id.is_some() {
            return Err(SettingsError::OidcWithoutIssuer("oidc-client-id"));
        }
        if !initial_admin_emails.is_empty() {
            return Err(SettingsError::OidcWithoutIssuer("initial-admin-email"));
        }
        return Ok(None);
    };
    let client_id = client_id
        .filter(|c| !c.is_empty())
        .ok_or(SettingsError::OidcWithoutClientId)?;
    let public_url = public_url
        .map(|text| {
            url::Url::parse(&text)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https"))
                .ok_or(SettingsError::PublicUrl(text))
        })
        .transpose()?;
    Ok(Some(OidcLogin {
        issuer,
        client_id,
        client_secret: client_secret
            .filter(|s| !s.is_empty())
            .map(secrecy::SecretString::from),
        public_url,
        initial_admin_emails,
        session_ttl: session_ttl.unwrap_or(DEFAULT_SESSION_TTL),
    }))
}

fn tenancy(
    mode: Option<TenancyArg>,
    plans: Option<PathBuf>,
    default_plan: Option<String>,
) -> Result<Tenancy, SettingsError> {
    let mode: TenancyMode = mode.map(Into::into).unwrap_or_default();
    let file = match &plans {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|source| SettingsError::ReadPlans {
                    path: path.clone(),
                    source,
                })?;
            Some(
                Plans::parse_file(&text).map_err(|source| SettingsError::Plans {
                    path: path.clone(),
                    source,
                })?,
            )
        }
        None => None,
    };
    let plans = Plans::new(mode, file, default_plan).map_err(|err| match (&plans, err) {
        (Some(path), source @ drover_service::PlansError::BadName(_)) => SettingsError::Plans {
            path: path.clone(),
            source,
        },
        (_, err) => SettingsError::DefaultPlan(err),
    })?;
    Ok(Tenancy { mode, plans })
}

fn read_file(path: &Path) -> Result<FileSettings, SettingsError> {
    let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| SettingsError::Parse {
        path: path.to_owned(),
        source,
    })
}

/// `../site` next to the droverd executable: where `scripts/build-web` puts the bundle for the
/// binaries of the same target directory.
fn default_web_root() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("site")))
        .unwrap_or_else(|| PathBuf::from("site"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("droverd").chain(list.iter().copied())).unwrap()
    }

    #[test]
    fn flags_win_over_the_file_and_defaults_fill_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("drover.toml");
        std::fs::write(
            &file,
            "http-addr = \"127.0.0.1:9000\"\nmachine-api-addr = \"127.0.0.1:9001\"\n\
             database-url = \"postgres://file\"\n",
        )
        .unwrap();
        let s = Settings::resolve(args(&[
            "--config",
            file.to_str().unwrap(),
            "--http-addr",
            "127.0.0.1:7000",
        ]))
        .unwrap();
        assert_eq!(s.http_addr.to_string(), "127.0.0.1:7000");
        assert_eq!(s.machine_api_addr.to_string(), "127.0.0.1:9001");
        assert_eq!(s.data_dir, PathBuf::from("drover-data"));
        assert_eq!(s.wireguard_addr.to_string(), "0.0.0.0:50180");
        assert!(matches!(s.database, Database::Url(ref u) if u == "postgres://file"));
    }

    #[test]
    fn bad_settings_name_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("drover.toml");
        std::fs::write(&file, "htp-addr = \"x\"\n").unwrap();
        let err = Settings::resolve(args(&["--config", file.to_str().unwrap()])).unwrap_err();
        assert!(err.to_string().contains("htp-addr"), "{err}");

        let err = Settings::resolve(args(&[
            "--advertised-machine-api",
            "grpc://h:1?jointoken=x",
        ]))
        .unwrap_err();
        assert!(matches!(err, SettingsError::AdvertisedApiWithToken(_)));

        let err =
            Settings::resolve(args(&["--advertised-wireguard-endpoints", "nohost"])).unwrap_err();
        assert!(matches!(err, SettingsError::Endpoint(_)));
    }

    #[test]
    fn talos_proxy_settings() {
        let s = Settings::resolve(args(&[])).unwrap();
        assert_eq!(s.talos_proxy.addr.to_string(), "0.0.0.0:8096");
        assert_eq!(s.talos_proxy.endpoint, None);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("drover.toml");
        std::fs::write(&file, "talos-proxy-endpoint = \"talos.example.com:443\"\n").unwrap();
        let s = Settings::resolve(args(&[
            "--config",
            file.to_str().unwrap(),
            "--talos-proxy-addr",
            "127.0.0.1:9096",
        ]))
        .unwrap();
        assert_eq!(s.talos_proxy.addr.to_string(), "127.0.0.1:9096");
        assert_eq!(
            s.talos_proxy.endpoint.as_deref(),
            Some("talos.example.com:443")
        );
        let err = Settings::resolve(args(&["--talos-proxy-endpoint", "no-port"])).unwrap_err();
        assert!(err.to_string().contains("no-port"), "{err}");
    }

    #[test]
    fn http_tls_settings() {
        assert_eq!(Settings::resolve(args(&[])).unwrap().http_tls, HttpTls::Off);
        let err = Settings::resolve(args(&["--http-addr", "0.0.0.0:8080"])).unwrap_err();
        assert!(
            matches!(err, SettingsError::HttpPlainNotLoopback(_)),
            "{err}"
        );
        let s = Settings::resolve(args(&["--http-addr", "0.0.0.0:8080", "--http-tls", "off"]));
        assert_eq!(s.unwrap().http_tls, HttpTls::Off);
        let s = Settings::resolve(args(&[
            "--http-addr",
            "0.0.0.0:8080",
            "--http-tls",
            "self-signed",
            "--http-tls-names",
            "drover.example.com,192.0.2.1",
        ]))
        .unwrap();
        assert_eq!(
            s.http_tls,
            HttpTls::SelfSigned {
                names: vec!["drover.example.com".into(), "192.0.2.1".into()]
            }
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("drover.toml");
        std::fs::write(
            &file,
            "http-addr = \"[::]:443\"\nhttp-tls-cert = \"/tls/crt\"\nhttp-tls-key = \"/tls/key\"\n",
        )
        .unwrap();
        let s = Settings::resolve(args(&["--config", file.to_str().unwrap()])).unwrap();
        assert_eq!(
            s.http_tls,
            HttpTls::Files(TlsFiles {
                cert: "/tls/crt".into(),
                key: "/tls/key".into()
            })
        );
        let err = Settings::resolve(args(&[
            "--config",
            file.to_str().unwrap(),
            "--http-tls",
            "self-signed",
        ]))
        .unwrap_err();
        assert!(
            matches!(err, SettingsError::HttpTlsTwice("self-signed")),
            "{err}"
        );
        let err = Settings::resolve(args(&["--http-tls", "files"])).unwrap_err();
        assert!(matches!(err, SettingsError::HttpTlsFiles), "{err}");
        let s = Settings::resolve(args(&[
            "--config",
            file.to_str().unwrap(),
            "--http-tls",
            "files",
        ]));
        assert!(matches!(s.unwrap().http_tls, HttpTls::Files(_)));
        let err = Settings::resolve(args(&["--http-tls-names", "x"])).unwrap_err();
        assert!(
            matches!(err, SettingsError::HttpTlsNamesWithoutSelfSigned),
            "{err}"
        );
    }

    #[test]
    fn break_glass_is_off_unless_allowed() {
        assert!(!Settings::resolve(args(&[])).unwrap().allow_break_glass);
        assert!(
            Settings::resolve(args(&["--allow-break-glass"]))
                .unwrap()
                .allow_break_glass
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("drover.toml");
        std::fs::write(&file, "allow-break-glass = true\n").unwrap();
        let s = Settings::resolve(args(&["--config", file.to_str().unwrap()])).unwrap();
        assert!(s.allow_break_glass);
    }

    #[test]
    fn oidc_login_settings() {
        let s = Settings::resolve(args(&[])).unwrap();
        assert!(s.oidc.is_none());
        let s = Settings::resolve(args(&[
            "--oidc-issuer",
            "https://idp.example.com",
            "--oidc-client-id",
            "drover",
            "--initial-admin-email",
            "a@example.com,b@example.com",
            "--initial-admin-email",
            "c@example.com",
        ]))
        .unwrap();
        let oidc = s.oidc.expect("configured");
        assert_eq!(
            oidc.initial_admin_emails,
            ["a@example.com", "b@example.com", "c@example.com"]
        );
        assert!(oidc.client_secret.is_none());
        let service = oidc.service_settings("127.0.0.1:8080".parse().unwrap(), false);
        assert_eq!(
            service.redirect_url().as_str(),
            "http://127.0.0.1:8080/auth/callback"
        );
        assert!(!format!("{oidc:?}").contains("secret\""));

        let err = Settings::resolve(args(&["--oidc-client-id", "drover"])).unwrap_err();
        assert!(matches!(
            err,
            SettingsError::OidcWithoutIssuer("oidc-client-id")
        ));
        let err = Settings::resolve(args(&["--oidc-issuer", "https://idp"])).unwrap_err();
        assert!(matches!(err, SettingsError::OidcWithoutClientId));
        let err = Settings::resolve(args(&[
            "--oidc-issuer",
            "https://idp",
            "--oidc-client-id",
            "d",
            "--public-url",
            "ftp://x",
        ]))
        .unwrap_err();
        assert!(matches!(err, SettingsError::PublicUrl(_)));
    }

    #[test]
    fn tenancy_settings() {
        let s = Settings::resolve(args(&[])).unwrap();
        assert_eq!(s.tenancy.mode, TenancyMode::SingleTenant);
        assert_eq!(s.tenancy.plans.default_plan(), "unlimited");

        let dir = tempfile::tempdir().unwrap();
        let plans = dir.path().join("plans.toml");
        std::fs::write(&plans, "[plans.team]\nmachines = 50\n").unwrap();
        let s = Settings::resolve(args(&[
            "--tenancy",
            "multi-tenant",
            "--plans",
            plans.to_str().unwrap(),
        ]))
        .unwrap();
        assert_eq!(s.tenancy.mode, TenancyMode::MultiTenant);
        assert_eq!(s.tenancy.plans.default_plan(), "hobby");
        assert_eq!(s.tenancy.plans.get("team").unwrap().machines, Some(50));

        let s = Settings::resolve(args(&[
            "--plans",
            plans.to_str().unwrap(),
            "--default-plan",
            "team",
        ]))
        .unwrap();
        assert_eq!(s.tenancy.plans.default_plan(), "team");

        let err = Settings::resolve(args(&["--default-plan", "gold"])).unwrap_err();
        assert!(err.to_string().contains("\"gold\" is not defined"), "{err}");
        std::fs::write(&plans, "[plans.team]\nmachnes = 50\n").unwrap();
        let err = Settings::resolve(args(&["--plans", plans.to_str().unwrap()])).unwrap_err();
        assert!(
            matches!(err, SettingsError::Plans { .. }) && err.to_string().contains("machnes"),
            "{err}"
        );
    }

    #[test]
    fn advertised_defaults_follow_the_bound_address() {
        let s = Settings::resolve(args(&[])).unwrap();
        let api = s.machine_api_url("0.0.0.0:8090".parse().unwrap());
        assert_eq!(api.to_string(), "grpc://127.0.0.1:8090");
        assert_eq!(s.wireguard_endpoints(&api, 50180), vec!["127.0.0.1:50180"]);
        let api = s.machine_api_url("192.0.2.4:8090".parse().unwrap());
        assert_eq!(api.to_string(), "grpc://192.0.2.4:8090");
    }
}
