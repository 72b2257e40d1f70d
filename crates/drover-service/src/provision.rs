//! `sidero.link.ProvisionService/Provision`: a node presents a join token and its WireGuard key
//! and gets its tunnel address and the server's endpoints.

use std::net::Ipv6Addr;

use chrono::Utc;
use drover_model::{JoinTokenId, MachineId, Resource, TenantId};
use drover_siderolink::keys::PublicKey;
use drover_siderolink::{GRPC_TUNNEL_PEER_PORT, endpoints};
use drover_store::join_tokens::JoinTokenRow;
use drover_store::machines::{self, MachineRow, ProvisionedMachine};
use drover_store::{StoreError, join_tokens};

use crate::secret_token::{self, TokenKind};
use crate::{Drover, Result, ServiceError};

/// A Provision call's fields, as the node sent them.
#[derive(Debug, Clone, Default)]
pub struct ProvisionRequest {
    pub node_uuid: String,
    pub node_public_key: String,
    pub join_token: Option<String>,
    pub node_unique_token: Option<String>,
    pub talos_version: Option<String>,
    pub wireguard_over_grpc: bool,
}

/// What the node is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisionOutcome {
    pub machine: MachineId,
    pub tenant: TenantId,
    pub node_address: Ipv6Addr,
    pub prefix_len: u8,
    pub server_address: Ipv6Addr,
    pub server_public_key: PublicKey,
    /// Primary first; the gRPC shell puts them into wire order.
    pub server_endpoints: Vec<String>,
    /// `[ip]:port` of the node's virtual peer in WireGuard-over-gRPC mode.
    pub grpc_peer_addr_port: Option<String>,
    pub new_machine: bool,
}

impl ProvisionOutcome {
    /// `server_endpoint` as it goes on the wire: primary last.
    pub fn wire_endpoints(&self) -> Vec<String> {
        endpoints::to_wire(self.server_endpoints.clone())
    }
}

/// Attempts at a provisioning transaction that lost a race (address collision, concurrent first
/// join of the same machine) before giving up.
const MAX_ATTEMPTS: usize = 8;

impl Drover {
    /// Provisions a machine (see the module's documentation), counted in the metrics.
    pub async fn provision(&self, req: ProvisionRequest) -> Result<ProvisionOutcome> {
        let outcome = self.try_provision(req).await;
        self.metrics().provisioned(&outcome);
        outcome
    }

    async fn try_provision(&self, req: ProvisionRequest) -> Result<ProvisionOutcome> {
        let token = self.check_join_token(req.join_token.as_deref()).await?;
        let machine_id: MachineId =
            req.node_uuid
                .parse()
                .map_err(|e: drover_model::InvalidId| {
                    ServiceError::invalid("node_uuid", e.to_string())
                })?;
        let public_key = PublicKey::from_base64(&req.node_public_key)
            .map_err(|e| ServiceError::invalid("node_public_key", e.to_string()))?;
        let unique_token_hash = req
            .node_unique_token
            .as_deref()
            .filter(|t| !t.is_empty())
            .map(secret_token::hash);

        let mut attempt = 0;
        loop {
            attempt += 1;
            match self
                .provision_once(
                    &req,
                    &token,
                    &machine_id,
                    &public_key,
                    unique_token_hash.as_ref(),
                )
                .await
            {
                Err(Attempt::Retry(err)) if attempt < MAX_ATTEMPTS => {
                    tracing::debug!(machine = %machine_id, %err, attempt, "provisioning raced; retrying");
                }
                Err(Attempt::Retry(err)) => return Err(err.into()),
                Err(Attempt::Fail(err)) => return Err(err),
                Ok(outcome) => {
                    if let Some(sink) = &self.peers {
                        sink.peer_provisioned(crate::TunnelPeer {
                            address: outcome.node_address,
                            public_key,
                        });
                    }
                    tracing::info!(
                        machine = %outcome.machine, tenant = %outcome.tenant,
                        address = %outcome.node_address, new = outcome.new_machine,
                        "machine provisioned"
                    );
                    if outcome.new_machine {
                        let actor = format!("machine:{}", outcome.machine);
                        let target = format!("joinToken:{}", token.name);
                        self.record(outcome.tenant, &actor, "machine.join", &target, "ok")
                            .await;
                    }
                    return Ok(outcome);
                }
            }
        }
    }

    /// Finds the token a node presented and checks it can be used; PERMISSION_DENIED otherwise.
    async fn check_join_token(&self, presented: Option<&str>) -> Result<JoinTokenRow> {
        let denied = |msg: &str| ServiceError::PermissionDenied(msg.to_owned());
        let Some(text) = presented.map(str::trim).filter(|t| !t.is_empty()) else {
            return Err(denied(
                "a join token is required: boot the node with siderolink.api=...?jointoken=<token>",
            ));
        };
        let unknown = || denied("the join token is not valid");
        let id = secret_token::parse_id(TokenKind::Join, text).ok_or_else(unknown)?;
        let row = join_tokens::find_for_provision(self.store.pool(), JoinTokenId::from_uuid(id))
            .await?
            .filter(|row| secret_token::verify(text, &row.secret_hash))
            .ok_or_else(unknown)?;
        if row.revoked_at.is_some() {
            return Err(denied(&format!(
                "the join token {:?} has been revoked",
                row.name
            )));
        }
        if let Some(expiry) = row.expires_at.filter(|e| *e <= Utc::now()) {
            return Err(denied(&format!(
                "the join token {:?} expired at {}",
                row.name,
                expiry.to_rfc3339()
            )));
        }
        Ok(row)
    }

    async fn provision_once(
        &self,
        req: &ProvisionRequest,
        token: &JoinTokenRow,
        machine_id: &MachineId,
        public_key: &PublicKey,
        unique_token_hash: Option<&[u8; 32]>,
    ) -> Result<ProvisionOutcome, Attempt> {
        let tenant = TenantId::from_uuid(token.tenant_id);
        let token_id = JoinTokenId::from_uuid(token.id);
        let key_text = public_key.to_base64();
        let talos_version = req.talos_version.clone().unwrap_or_default();
        let mut tx = self.store.begin().await?;

        let mut existing = machines::get_for_update(&mut *tx, tenant, machine_id).await?;
        if existing.is_none() {
            // A new machine counts against the plan: lock the tenant's quota, then look again
            // (a concurrent first join of this machine may have committed meanwhile) and count
            // under the lock, so two joins cannot both take the last place.
            let quota = self
                .lock_quota(&mut tx, tenant, Resource::Machines)
                .await
                .map_err(Attempt::Fail)?;
            existing = machines::get_for_update(&mut *tx, tenant, machine_id).await?;
            if existing.is_none() {
                let used = machines::count(&mut *tx, tenant).await?;
                quota
                    .admit(u64::try_from(used).unwrap_or(0))
                    .map_err(Attempt::Fail)?;
            }
        }
        if let Some(existing) = &existing {
            check_same_node(existing, unique_token_hash)?;
        }
        let keep_unique_token = existing
            .as_ref()
            .and_then(|m| m.node_unique_token_hash.as_deref())
            .and_then(|h| <&[u8; 32]>::try_from(h).ok());
        let grpc_peer = if req.wireguard_over_grpc {
            Some(
                existing
                    .as_ref()
                    .and_then(|m| m.grpc_peer_address.clone())
                    .unwrap_or_else(|| self.random_grpc_peer()),
            )
        } else {
            existing.as_ref().and_then(|m| m.grpc_peer_address.clone())
        };
        let address = existing
            .as_ref()
            .map(|m| m.address.clone())
            .unwrap_or_else(|| {
                self.config
                    .addresses
                    .siderolink
                    .random_address(&mut rand::thread_rng())
                    .to_string()
            });
        let write = ProvisionedMachine {
            id: machine_id,
            address: &address,
            wireguard_public_key: &key_text,
            node_unique_token_hash: unique_token_hash.or(keep_unique_token),
            talos_version: &talos_version,
            wireguard_over_grpc: req.wireguard_over_grpc,
            grpc_peer_address: grpc_peer.as_deref(),
            join_token_id: token_id,
        };
        let row = match &existing {
            Some(_) => machines::update_provisioned(&mut *tx, tenant, &write).await,
            None => machines::insert(&mut *tx, tenant, &write).await,
        }
        .map_err(classify_write_error)?;

        if !join_tokens::record_use(&mut *tx, tenant, token_id).await? {
            return Err(Attempt::Fail(ServiceError::PermissionDenied(format!(
                "the join token {:?} was revoked or expired while the machine was joining",
                token.name
            ))));
        }
        tx.commit().await.map_err(StoreError::from)?;

        let node_address: Ipv6Addr = row.address.parse().map_err(|e| {
            Attempt::Fail(ServiceError::Internal(
                format!(
                    "stored address {:?} of machine {machine_id}: {e}",
                    row.address
                )
                .into(),
            ))
        })?;
        let server_endpoints = match &grpc_peer {
            Some(peer) if req.wireguard_over_grpc => vec![peer.clone()],
            _ => self.wireguard_endpoints().await,
        };
        Ok(ProvisionOutcome {
            machine: machine_id.clone(),
            tenant,
            node_address,
            prefix_len: 64,
            server_address: self.config.addresses.server_address(),
            server_public_key: self.config.server_public_key,
            server_endpoints,
            grpc_peer_addr_port: grpc_peer.filter(|_| req.wireguard_over_grpc),
            new_machine: existing.is_none(),
        })
    }

    /// This replica's WireGuard endpoints first, then those of the other living replicas (all
    /// answer with the same key), so a node whose replica goes away moves on to another.
    async fn wireguard_endpoints(&self) -> Vec<String> {
        let mut endpoints = self.config.wireguard_endpoints.clone();
        match drover_store::replicas::list(self.store.pool()).await {
            Ok(replicas) => {
                for endpoint in replicas
                    .into_iter()
                    .filter(|r| r.id != self.replica)
                    .flat_map(|r| r.wireguard_endpoints)
                {
                    if !endpoints.contains(&endpoint) {
                        endpoints.push(endpoint);
                    }
                }
            }
            // The node still gets this replica's endpoints; the others are a bonus.
            Err(err) => {
                tracing::warn!(error = %err, "cannot list the other replicas' WireGuard endpoints")
            }
        }
        endpoints
    }

    fn random_grpc_peer(&self) -> String {
        let addr = self
            .config
            .addresses
            .grpc_tunnel
            .random_address(&mut rand::thread_rng());
        format!("[{addr}]:{GRPC_TUNNEL_PEER_PORT}")
    }
}

/// A node claiming a known machine id must be the same node: the one whose unique token we
/// stored. A node that never sent one may start sending one (Talos upgraded to >= 1.6).
fn check_same_node(existing: &MachineRow, presented: Option<&[u8; 32]>) -> Result<(), Attempt> {
    let Some(stored) = existing.node_unique_token_hash.as_deref() else {
        return Ok(());
    };
    match presented {
        Some(hash) if secret_token_eq(stored, hash) => Ok(()),
        Some(_) => Err(Attempt::Fail(ServiceError::Conflict(format!(
            "machine {} is already registered to a different node (its node unique token does not \
             match); if this node replaced it, remove machine {} from the inventory first",
            existing.id, existing.id
        )))),
        None => Err(Attempt::Fail(ServiceError::Conflict(format!(
            "machine {} is registered with a node unique token, and this node presented none",
            existing.id
        )))),
    }
}

fn secret_token_eq(stored: &[u8], presented: &[u8; 32]) -> bool {
    use subtle::ConstantTimeEq;
    stored.len() == 32 && bool::from(stored.ct_eq(presented))
}

/// Why one attempt ended: a race worth retrying, or a final answer.
enum Attempt {
    Retry(StoreError),
    Fail(ServiceError),
}

impl From<StoreError> for Attempt {
    fn from(err: StoreError) -> Self {
        Self::Fail(err.into())
    }
}

/// Collisions on the random address or on a concurrent first insert are retried; a WireGuard
/// key already held by another machine is the node's problem.
fn classify_write_error(err: StoreError) -> Attempt {
    match err.conflict_constraint() {
        Some("machines_address_unique" | "machines_pkey" | "machines_grpc_peer_address_unique") => {
            Attempt::Retry(err)
        }
        Some("machines_wireguard_public_key_unique") => Attempt::Fail(ServiceError::invalid(
            "node_public_key",
            "this WireGuard public key is already used by another machine; nodes must generate \
             their own key",
        )),
        _ => Attempt::Fail(err.into()),
    }
}
