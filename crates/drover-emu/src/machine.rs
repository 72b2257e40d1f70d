use std::net::Ipv6Addr;
use std::sync::Arc;
use std::time::Duration;

use drover_proto::sidero::link::provision_service_client::ProvisionServiceClient;
use drover_proto::sidero::link::{ProvisionRequest, ProvisionResponse};
use drover_siderolink::JoinUrl;
use drover_siderolink::endpoints;
use drover_siderolink::keys::{KeyPair, PublicKey};
use tokio_util::sync::CancellationToken;

use crate::cluster::ClusterRegistry;
use crate::error::chain;
use crate::link::Link;
use crate::runtime::{NodeHandle, NodeRuntime};
use crate::{MachineIdentity, ProvisionError, RetryPolicy};

/// The Talos version machines report when none is given.
pub const DEFAULT_TALOS_VERSION: &str = "v1.13.8";

/// How long one `Provision` call (connecting included) may take, as on a Talos node.
pub const PROVISION_TIMEOUT: Duration = Duration::from_secs(30);

/// What a successful `Provision` gave the node: its tunnel address and the server peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provisioned {
    /// The node's tunnel address.
    pub node_address: Ipv6Addr,
    pub prefix_len: u8,
    /// The server's tunnel address.
    pub server_address: Ipv6Addr,
    pub server_public_key: PublicKey,
    /// The server's WireGuard endpoints, primary first (the wire order swapped back).
    pub server_endpoints: Vec<String>,
    /// `[ip]:port` of the node's virtual peer in WireGuard-over-gRPC mode.
    pub grpc_peer_addr_port: Option<String>,
}

impl Provisioned {
    /// Reads a response as a Talos node does, refusing what it could not use.
    pub fn from_response(response: ProvisionResponse) -> Result<Self, ProvisionError> {
        let bad = |field, reason: String| ProvisionError::BadResponse { field, reason };

        let prefix = &response.node_address_prefix;
        let (address, len) = prefix.split_once('/').ok_or_else(|| {
            bad(
                "node_address_prefix",
                format!("{prefix:?} is not address/length"),
            )
        })?;
        let node_address = address
            .parse::<Ipv6Addr>()
            .map_err(|e| bad("node_address_prefix", format!("{prefix:?}: {e}")))?;
        let prefix_len = len
            .parse::<u8>()
            .ok()
            .filter(|len| *len <= 128)
            .ok_or_else(|| {
                bad(
                    "node_address_prefix",
                    format!("{prefix:?}: prefix length is not 0-128"),
                )
            })?;

        let server_address = response.server_address.parse::<Ipv6Addr>().map_err(|e| {
            bad(
                "server_address",
                format!("{:?}: {e}", response.server_address),
            )
        })?;
        let server_public_key = PublicKey::from_base64(&response.server_public_key)
            .map_err(|e| bad("server_public_key", e.to_string()))?;

        Ok(Self {
            node_address,
            prefix_len,
            server_address,
            server_public_key,
            server_endpoints: endpoints::from_wire(response.server_endpoint),
            grpc_peer_addr_port: Some(response.grpc_peer_addr_port).filter(|a| !a.is_empty()),
        })
    }
}

/// One boot of a machine: the WireGuard key a node generates at boot and what it got from the
/// control plane. A reboot starts a new one.
#[derive(Debug)]
struct Boot {
    keys: KeyPair,
    provisioned: Option<Provisioned>,
}

impl Boot {
    fn new() -> Self {
        Self {
            keys: KeyPair::generate(),
            provisioned: None,
        }
    }
}

/// One emulated Talos machine: its network side here (identity, this boot's WireGuard key and
/// provisioning), its operating system in a shared runtime (configuration, boot, machine API
/// behaviour; see [`NodeHandle`]).
#[derive(Debug)]
pub struct EmulatedMachine {
    identity: MachineIdentity,
    boot: Boot,
    pub(crate) runtime: Arc<NodeRuntime>,
}

impl EmulatedMachine {
    /// A machine that has just booted (a fresh WireGuard key, not provisioned, no
    /// configuration), in a cluster registry of its own.
    pub fn new(identity: MachineIdentity, talos_version: impl Into<String>) -> Self {
        Self::in_clusters(identity, talos_version, ClusterRegistry::new())
    }

    /// A machine that has just booted, forming clusters with the other machines of `clusters`.
    pub fn in_clusters(
        identity: MachineIdentity,
        talos_version: impl Into<String>,
        clusters: ClusterRegistry,
    ) -> Self {
        let facts = crate::node::facts(&identity, &talos_version.into());
        Self {
            runtime: Arc::new(NodeRuntime::new(identity.uuid.clone(), facts, clusters)),
            identity,
            boot: Boot::new(),
        }
    }

    /// A handle to watch the machine (stage, boot id, configuration) while it runs.
    pub fn handle(&self) -> NodeHandle {
        self.runtime.handle()
    }

    pub fn identity(&self) -> &MachineIdentity {
        &self.identity
    }

    /// The Talos version this boot runs (it changes with an upgrade's reboot).
    pub fn talos_version(&self) -> String {
        self.runtime.talos_version()
    }

    /// This boot's WireGuard key pair (the tunnel needs the private half).
    pub fn keys(&self) -> &KeyPair {
        &self.boot.keys
    }

    /// This boot's WireGuard public key.
    pub fn public_key(&self) -> PublicKey {
        self.boot.keys.public()
    }

    /// Boots again: a new boot id, a fresh WireGuard key, nothing provisioned; the identity
    /// and the installed configuration stay.
    pub fn reboot(&mut self) {
        self.boot = Boot::new();
        self.runtime.new_boot();
    }

    /// Forgets what Provision gave this boot, so the machine provisions again (same key).
    pub(crate) fn forget_provisioned(&mut self) {
        self.boot.provisioned = None;
    }

    /// What the last successful `Provision` of this boot gave the machine.
    pub fn provisioned(&self) -> Option<&Provisioned> {
        self.boot.provisioned.as_ref()
    }

    /// The request this machine sends, field for field as a Talos node fills it.
    pub fn provision_request(&self, api: &JoinUrl) -> ProvisionRequest {
        ProvisionRequest {
            node_uuid: self.identity.uuid.clone(),
            node_public_key: self.public_key().to_base64(),
            join_token: api.join_token.clone(),
            node_unique_token: Some(self.identity.unique_token.clone()),
            talos_version: Some(self.talos_version()),
            wireguard_over_grpc: Some(api.grpc_tunnel),
        }
    }

    /// One `Provision` call exactly as Talos makes it (on a connection of its own, within
    /// [`PROVISION_TIMEOUT`]).
    pub async fn provision(&mut self, api: &JoinUrl) -> Result<&Provisioned, ProvisionError> {
        let provisioned = self.call(&Link::own(api)).await?;
        Ok(self.boot.provisioned.insert(provisioned))
    }

    /// Calls `Provision` until it succeeds, waiting with exponential backoff and jitter between
    /// attempts; gives up after `policy.max_attempts` with the last error, or when `cancel` fires
    /// (which also abandons a call in flight).
    pub async fn provision_with_retry(
        &mut self,
        api: &JoinUrl,
        policy: &RetryPolicy,
        cancel: &CancellationToken,
    ) -> Result<&Provisioned, ProvisionError> {
        self.provision_via(&Link::own(api), policy, cancel).await
    }

    pub(crate) async fn provision_via(
        &mut self,
        link: &Link<'_>,
        policy: &RetryPolicy,
        cancel: &CancellationToken,
    ) -> Result<&Provisioned, ProvisionError> {
        let mut delays = policy.delays();
        let mut attempt = 1usize;
        loop {
            let result = tokio::select! {
                biased;
                () = cancel.cancelled() => return Err(ProvisionError::Cancelled),
                result = self.call(link) => result,
            };
            let error = match result {
                Ok(provisioned) => return Ok(self.boot.provisioned.insert(provisioned)),
                Err(error) => error,
            };
            let Some(delay) = delays.next() else {
                tracing::warn!(uuid = %self.identity.uuid, attempt, error = chain(&error), "Provision failed; giving up");
                return Err(error);
            };
            tracing::warn!(uuid = %self.identity.uuid, attempt, error = chain(&error), "Provision failed; retrying in {delay:.1?}");
            tokio::select! {
                biased;
                () = cancel.cancelled() => return Err(ProvisionError::Cancelled),
                () = tokio::time::sleep(delay) => {}
            }
            attempt += 1;
        }
    }

    /// One call; the machine's state is the caller's to update.
    async fn call(&self, link: &Link<'_>) -> Result<Provisioned, ProvisionError> {
        let _slot = link.slot().await;
        let request = self.provision_request(link.api);
        let exchange = async {
            let mut client = ProvisionServiceClient::new(link.channel().await?);
            let mut request = tonic::Request::new(request);
            // Tells the server the deadline (grpc-timeout), as a Go client does.
            request.set_timeout(PROVISION_TIMEOUT);
            client
                .provision(request)
                .await
                .map_err(ProvisionError::Rejected)
        };
        let response = tokio::time::timeout(PROVISION_TIMEOUT, exchange)
            .await
            .map_err(|_| {
                ProvisionError::Rejected(tonic::Status::deadline_exceeded(format!(
                    "no answer from {} within {PROVISION_TIMEOUT:?}",
                    link.api.connect_uri()
                )))
            })??;
        let provisioned = Provisioned::from_response(response.into_inner())?;
        tracing::debug!(uuid = %self.identity.uuid, address = %provisioned.node_address, "provisioned");
        Ok(provisioned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response() -> ProvisionResponse {
        ProvisionResponse {
            server_endpoint: vec!["c:3".into(), "b:2".into(), "primary:1".into()],
            server_public_key: KeyPair::generate().public().to_base64(),
            node_address_prefix: "fdae:41e4:649b:9303:1a2b:3c4d:5e6f:7081/64".into(),
            server_address: "fdae:41e4:649b:9303::1".into(),
            grpc_peer_addr_port: String::new(),
        }
    }

    #[test]
    fn a_good_response_is_read_primary_first() {
        let p = Provisioned::from_response(response()).unwrap();
        assert_eq!(
            p.node_address,
            "fdae:41e4:649b:9303:1a2b:3c4d:5e6f:7081"
                .parse::<Ipv6Addr>()
                .unwrap()
        );
        assert_eq!(p.prefix_len, 64);
        assert_eq!(
            p.server_address,
            "fdae:41e4:649b:9303::1".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(p.server_endpoints, ["primary:1", "b:2", "c:3"]);
        assert_eq!(p.grpc_peer_addr_port, None);

        let tunnel = ProvisionResponse {
            grpc_peer_addr_port: "[fdae:41e4:649b:9304::5]:50889".into(),
            ..response()
        };
        let p = Provisioned::from_response(tunnel).unwrap();
        assert_eq!(
            p.grpc_peer_addr_port.as_deref(),
            Some("[fdae:41e4:649b:9304::5]:50889")
        );
    }

    #[test]
    fn bad_responses_name_the_field() {
        let field_of = |r: ProvisionResponse| match Provisioned::from_response(r) {
            Err(ProvisionError::BadResponse { field, .. }) => field,
            other => panic!("expected BadResponse, got {other:?}"),
        };
        for prefix in ["fdae::5", "fdae::5/129", "10.0.0.1/24", "nonsense/64", ""] {
            let r = ProvisionResponse {
                node_address_prefix: prefix.into(),
                ..response()
            };
            assert_eq!(field_of(r), "node_address_prefix", "{prefix}");
        }
        let r = ProvisionResponse {
            server_address: "fdae::1/64".into(),
            ..response()
        };
        assert_eq!(field_of(r), "server_address");
        let r = ProvisionResponse {
            server_public_key: "short".into(),
            ..response()
        };
        assert_eq!(field_of(r), "server_public_key");
    }

    #[test]
    fn a_reboot_keeps_the_identity_and_forgets_the_boot() {
        let mut m = EmulatedMachine::new(MachineIdentity::derive("t", 0), DEFAULT_TALOS_VERSION);
        m.boot.provisioned = Some(Provisioned::from_response(response()).unwrap());
        let key = m.public_key();
        let boot_id = m.handle().status().boot_id;
        m.reboot();
        assert_ne!(m.public_key(), key);
        assert_ne!(m.handle().status().boot_id, boot_id);
        assert!(m.provisioned().is_none());
        assert_eq!(m.identity(), &MachineIdentity::derive("t", 0));
    }
}
