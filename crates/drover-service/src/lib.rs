//! The service layer: every operation Drover offers, once.
//!
//! REST, gRPC, the UI and the CLI are thin shells over [`Drover`]: they turn their input into
//! these calls, pass a [`RequestContext`] from [`Drover::authenticate`], and map
//! [`ServiceError`] to their own error format in one place.

mod access;
pub mod audit;
mod auth;
mod bootstrap;
pub mod break_glass;
pub mod cli_login;
pub mod cluster_access;
mod clusters;
mod context;
mod dataplane;
mod error;
mod jointokens;
pub mod login;
mod machines;
pub mod metrics;
mod provision;
pub mod secret_token;
pub mod secrets;
pub mod talos_access;
pub mod tenancy;
pub mod upgrades;

use drover_siderolink::JoinUrl;
use drover_siderolink::addressing::AddressPlan;
use drover_siderolink::join::TunnelServices;
use drover_siderolink::keys::PublicKey;
use drover_store::Store;

pub use auth::Credential;
pub use bootstrap::{Bootstrap, DEFAULT_TENANT_NAME};
pub use clusters::{
    component_versions, install_disk, machine_labels, parse_phase, parse_role,
    render_machine_config,
};
pub use context::{Principal, RequestContext};
pub use dataplane::{
    KernelLogLine, LOG_LINES_KEPT, LivenessChange, NodeReport, PeerSink, TunnelPeer,
};
pub use error::{Result, ServiceError};
pub use login::{Callback, LoggedOut, LoginStart, NewSession, OidcSettings, OidcSettingsError};
pub use machines::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
pub use metrics::Metrics;
pub use provision::{ProvisionOutcome, ProvisionRequest};
pub use secrets::Keyring;
pub use tenancy::{
    CreatedTenant, Plans, PlansError, PlansFile, Quota, Tenancy, TenancyMode, TenantAdmin,
    TenantSummary,
};

/// What the service needs to know about how nodes reach this installation.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// The machine API as nodes reach it, without a token: put into `siderolink.api`.
    pub advertised_machine_api: JoinUrl,
    /// This replica's WireGuard endpoints (`ip:port`), primary first.
    pub wireguard_endpoints: Vec<String>,
    /// The installation's WireGuard public key (every replica's; see
    /// [`secrets::installation_secret`]).
    pub server_public_key: PublicKey,
    /// Where the other replicas reach this one's relay (`ip:port`).
    pub relay_addr: String,
    pub addresses: AddressPlan,
    /// Key-encryption keys for sealing cluster secrets.
    pub keyring: secrets::Keyring,
    /// The Kubernetes proxy, when it runs.
    pub kube_proxy: Option<cluster_access::KubeProxyInfo>,
    /// The Talos API proxy, when it runs.
    pub talos_proxy: Option<talos_access::TalosProxyInfo>,
    /// Whether Admins may take break-glass credentials (see [`break_glass`]).
    pub allow_break_glass: bool,
}

impl ServiceConfig {
    fn tunnel_services(&self) -> TunnelServices {
        TunnelServices::new(self.addresses.server_address())
    }
}

/// The service: cheap to clone, shared by every shell.
#[derive(Clone, Debug)]
pub struct Drover {
    store: Store,
    config: std::sync::Arc<ServiceConfig>,
    peers: Option<std::sync::Arc<dyn PeerSink>>,
    oidc: Option<std::sync::Arc<login::Oidc>>,
    tenancy: std::sync::Arc<Tenancy>,
    metrics: Metrics,
    /// This process among the replicas sharing the database.
    replica: uuid::Uuid,
}

impl Drover {
    pub fn new(store: Store, config: ServiceConfig) -> Self {
        Self {
            store,
            config: std::sync::Arc::new(config),
            peers: None,
            oidc: None,
            tenancy: std::sync::Arc::new(Tenancy::default()),
            metrics: Metrics::default(),
            replica: uuid::Uuid::new_v4(),
        }
    }

    /// Tells `sink` about every machine that provisions from now on.
    pub fn with_peer_sink(mut self, sink: std::sync::Arc<dyn PeerSink>) -> Self {
        self.peers = Some(sink);
        self
    }

    /// This replica's id: it holds its machines' tunnels and its reconciler's cluster leases
    /// under it.
    pub fn replica(&self) -> uuid::Uuid {
        self.replica
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn config(&self) -> &ServiceConfig {
        &self.config
    }

    pub fn keyring(&self) -> &secrets::Keyring {
        &self.config.keyring
    }
}
