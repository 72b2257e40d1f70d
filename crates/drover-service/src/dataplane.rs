//! What the tunnel data plane tells the service: peers, liveness, node events, kernel logs and
//! facts. The data plane knows machines by tunnel address only; these calls resolve it.

use std::net::Ipv6Addr;

use chrono::{DateTime, Utc};
use drover_model::{LogPage, MachineFacts, MachineId, Role, TenantId, UnmetCondition};
use drover_siderolink::keys::PublicKey;
use drover_store::{dataplane, logs};

use crate::{Drover, RequestContext, Result, ServiceError};

/// Lines kept per machine; older ones are dropped as new ones arrive.
pub const LOG_LINES_KEPT: i64 = 5000;
const MAX_LOG_PAGE: u32 = 1000;

/// A provisioned machine as the tunnel sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelPeer {
    pub address: Ipv6Addr,
    pub public_key: PublicKey,
}

/// Told about peers when machines provision, so tunnels accept them at once.
pub trait PeerSink: Send + Sync + std::fmt::Debug {
    fn peer_provisioned(&self, peer: TunnelPeer);
    /// The machine at `address` was deleted: its tunnel must stop at once.
    fn peer_removed(&self, address: Ipv6Addr);
}

/// Something a node reported through its event sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeReport {
    Status {
        stage: String,
        ready: bool,
        unmet: Vec<UnmetCondition>,
    },
    Sequence {
        sequence: String,
        error: Option<String>,
    },
}

/// One kernel log record as received.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KernelLogLine {
    pub talos_time: Option<String>,
    pub level: Option<String>,
    pub facility: Option<String>,
    pub message: String,
}

/// A machine whose liveness changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LivenessChange {
    pub address: Ipv6Addr,
    pub connected: bool,
    pub last_seen_at: Option<DateTime<Utc>>,
}

impl Drover {
    pub async fn tunnel_peers(&self) -> Result<Vec<TunnelPeer>> {
        let rows = dataplane::peers(self.store.pool()).await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                Some(TunnelPeer {
                    address: r.address.parse().ok()?,
                    public_key: PublicKey::from_base64(&r.wireguard_public_key).ok()?,
                })
            })
            .collect())
    }

    async fn machine_at(&self, address: Ipv6Addr) -> Result<(TenantId, MachineId)> {
        dataplane::machine_at(self.store.pool(), &address.to_string())
            .await?
            .ok_or_else(|| ServiceError::not_found("machine with tunnel address", address))
    }

    pub async fn record_node_report(&self, from: Ipv6Addr, report: NodeReport) -> Result<()> {
        let (tenant, id) = self.machine_at(from).await?;
        match report {
            NodeReport::Status {
                stage,
                ready,
                unmet,
            } => {
                let unmet = serde_json::to_value(&unmet).expect("plain structs serialize");
                dataplane::record_status(self.store.pool(), tenant, &id, &stage, ready, &unmet)
                    .await?;
            }
            NodeReport::Sequence { sequence, error } => {
                dataplane::record_sequence(
                    self.store.pool(),
                    tenant,
                    &id,
                    &sequence,
                    error.as_deref(),
                )
                .await?;
            }
        }
        Ok(())
    }

    pub async fn append_kernel_logs(&self, from: Ipv6Addr, lines: &[KernelLogLine]) -> Result<()> {
        let (tenant, id) = self.machine_at(from).await?;
        let rows: Vec<logs::NewLogLine<'_>> = lines
            .iter()
            .map(|l| logs::NewLogLine {
                talos_time: l.talos_time.as_deref(),
                level: l.level.as_deref(),
                facility: l.facility.as_deref(),
                message: &l.message,
            })
            .collect();
        let mut tx = self.store.begin().await?;
        logs::append(&mut tx, tenant, &id, &rows, LOG_LINES_KEPT).await?;
        tx.commit().await.map_err(drover_store::StoreError::from)?;
        Ok(())
    }

    pub async fn record_facts(&self, from: Ipv6Addr, facts: &MachineFacts) -> Result<()> {
        let (tenant, id) = self.machine_at(from).await?;
        let json = serde_json::to_value(facts).expect("plain structs serialize");
        dataplane::record_facts(self.store.pool(), tenant, &id, &json, &facts.talos_version)
            .await?;
        Ok(())
    }

    /// Whether the machine at `address` was given a cluster's config: its API then needs the
    /// cluster's credentials, and its facts were read before, in maintenance mode.
    pub async fn machine_configured(&self, address: Ipv6Addr) -> Result<bool> {
        let (tenant, id) = self.machine_at(address).await?;
        Ok(
            drover_store::cluster_machines::get(self.store.pool(), tenant, &id)
                .await?
                .is_some_and(|m| m.applied_config_hash.is_some()),
        )
    }

    pub async fn record_liveness(&self, changes: &[LivenessChange]) -> Result<()> {
        let addresses: Vec<String> = changes.iter().map(|c| c.address.to_string()).collect();
        let rows: Vec<dataplane::Liveness<'_>> = changes
            .iter()
            .zip(&addresses)
            .map(|(c, address)| dataplane::Liveness {
                address,
                connected: c.connected,
                last_seen_at: c.last_seen_at,
            })
            .collect();
        dataplane::set_liveness(self.store.pool(), self.replica(), &rows).await?;
        Ok(())
    }

    /// Whether a WireGuard-over-gRPC stream naming this virtual peer address (`[ip]:port`, as
    /// Provision handed it out) may be carried.
    pub async fn grpc_tunnel_peer_allowed(&self, peer: &str) -> Result<bool> {
        let Ok(addr) = peer.parse::<std::net::SocketAddrV6>() else {
            return Ok(false);
        };
        let canonical = format!("[{}]:{}", addr.ip(), addr.port());
        Ok(dataplane::grpc_peer_exists(self.store.pool(), &canonical).await?)
    }

    /// Refreshes this replica's heartbeat (registering it the first time) and removes the
    /// replicas that did not beat within `timeout`, disconnecting the machines whose tunnels
    /// they held (and any marked connected without a living replica).
    pub async fn replica_heartbeat(&self, timeout: std::time::Duration) -> Result<()> {
        let reachable = drover_store::replicas::Reachable {
            wireguard_endpoints: &self.config.wireguard_endpoints,
            relay_addr: Some(&self.config.relay_addr),
        };
        drover_store::replicas::beat(self.store.pool(), self.replica(), reachable).await?;
        let gone = drover_store::replicas::remove(&self.store, timeout, None).await?;
        if gone > 0 {
            tracing::info!(
                machines = gone,
                "disconnected machines whose replica is gone"
            );
        }
        Ok(())
    }

    /// The living replica holding the tunnel of the machine at `address`, when it is not this
    /// one, with the address of its relay.
    pub async fn tunnel_elsewhere(
        &self,
        address: Ipv6Addr,
    ) -> Result<Option<(uuid::Uuid, String)>> {
        let holder =
            drover_store::replicas::tunnel_holder(self.store.pool(), &address.to_string()).await?;
        Ok(holder
            .filter(|(id, _)| *id != self.replica)
            .and_then(|(id, relay)| Some((id, relay?))))
    }

    /// This replica stops: it leaves the replicas, and its machines are disconnected until they
    /// reach a replica again.
    pub async fn leave_replicas(&self, timeout: std::time::Duration) -> Result<()> {
        drover_store::replicas::remove(&self.store, timeout, Some(self.replica())).await?;
        Ok(())
    }

    /// A machine's kernel log after `after` (or the newest lines), oldest first.
    pub async fn machine_logs(
        &self,
        ctx: &RequestContext,
        id: &str,
        after: Option<i64>,
        limit: Option<u32>,
    ) -> Result<LogPage> {
        ctx.require(Role::Reader, "reading machine logs")?;
        let machine = self.get_machine(ctx, id).await?;
        let limit = limit.unwrap_or(MAX_LOG_PAGE);
        if !(1..=MAX_LOG_PAGE).contains(&limit) {
            return Err(ServiceError::invalid(
                "limit",
                format!("{limit} is out of range: use 1 to {MAX_LOG_PAGE}"),
            ));
        }
        let rows = logs::list(
            self.store.pool(),
            ctx.tenant(),
            &machine.id,
            after,
            i64::from(limit),
        )
        .await?;
        let after = rows.last().map(|r| r.seq).or(after).unwrap_or(0);
        Ok(LogPage {
            after,
            lines: rows
                .into_iter()
                .map(|r| drover_model::LogLine {
                    seq: r.seq,
                    received_at: r.received_at,
                    talos_time: r.talos_time,
                    level: r.level,
                    facility: r.facility,
                    message: r.message,
                })
                .collect(),
        })
    }
}
