use std::collections::HashSet;
use std::time::Duration;

use drover_service::{Drover, PeerSink, TunnelPeer};
use drover_tunnel::Hub;
use tokio_util::sync::CancellationToken;

/// Adds provisioned machines to the hub as they provision.
#[derive(Clone)]
pub struct HubPeers {
    hub: Hub,
}

impl HubPeers {
    pub fn new(hub: Hub) -> Self {
        Self { hub }
    }
}

impl std::fmt::Debug for HubPeers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HubPeers")
    }
}

impl PeerSink for HubPeers {
    fn peer_provisioned(&self, peer: TunnelPeer) {
        self.hub.upsert_peer(peer.public_key, peer.address);
    }

    fn peer_removed(&self, address: std::net::Ipv6Addr) {
        self.hub.remove_peer(address);
    }
}

/// Makes the hub's peers exactly the provisioned machines.
pub(crate) async fn sync(hub: &Hub, drover: &Drover) -> drover_service::Result<()> {
    let wanted = drover.tunnel_peers().await?;
    let wanted_addresses: HashSet<_> = wanted.iter().map(|p| p.address).collect();
    for (address, status) in hub.peer_statuses() {
        if !wanted_addresses.contains(&address) {
            hub.remove_peer(address);
        } else if let Some(p) = wanted.iter().find(|p| p.address == address)
            && p.public_key != status.public_key
        {
            hub.upsert_peer(p.public_key, p.address);
        }
    }
    let present: HashSet<_> = hub.peer_statuses().into_iter().map(|(a, _)| a).collect();
    for p in wanted.into_iter().filter(|p| !present.contains(&p.address)) {
        hub.upsert_peer(p.public_key, p.address);
    }
    Ok(())
}

/// Keeps the hub's peers in step with the inventory: at once when any replica announces a change
/// of the tunnel peers (channel `drover_tunnel_peers`), and every `every` in any case.
pub(crate) async fn resync_loop(
    hub: Hub,
    drover: Drover,
    every: Duration,
    cancel: CancellationToken,
) {
    let mut listener = listen(&drover).await;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = tick.tick() => {}
            changed = async {
                match listener.as_mut() {
                    Some(l) => l.recv().await.map(|_| ()),
                    None => std::future::pending().await,
                }
            } => match changed {
                // A burst of provisions is one reload.
                Ok(()) => while listener.as_mut().and_then(|l| l.next_buffered()).is_some() {},
                Err(err) => {
                    tracing::debug!(error = %err, "tunnel peer listener reconnecting");
                    listener = listen(&drover).await;
                }
            },
        }
        if let Err(err) = sync(&hub, &drover).await {
            tracing::warn!(error = %err, "reloading tunnel peers failed; keeping the current ones");
        }
    }
}

async fn listen(drover: &Drover) -> Option<sqlx::postgres::PgListener> {
    let listener = async {
        let mut l = sqlx::postgres::PgListener::connect_with(drover.store().pool()).await?;
        l.listen("drover_tunnel_peers").await?;
        Ok::<_, sqlx::Error>(l)
    };
    match listener.await {
        Ok(l) => Some(l),
        Err(err) => {
            tracing::warn!(error = %err, "cannot listen for tunnel peer changes; relying on the timer");
            None
        }
    }
}
