//! Connections to a machine inside its tunnel, from any replica: through this replica's hub
//! when the machine's tunnel is here, else through the relay of the replica that holds it (as
//! the database records), so every replica can serve every request.

use std::io;
use std::net::SocketAddrV6;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use drover_relay::RelayKey;
use drover_service::Drover;
use drover_tunnel::{Hub, TunnelStream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Opens TCP connections to machines' tunnel addresses.
#[derive(Clone)]
pub struct MachineDialer {
    hub: Hub,
    drover: Drover,
    relay_key: RelayKey,
    /// A tunnel heard from within this long is taken to be here.
    fresh: Duration,
}

impl MachineDialer {
    /// Dials through `hub` when the machine was heard from here within `fresh`, else through
    /// the relay (authenticated with `relay_key`) of the replica holding its tunnel.
    pub fn new(hub: Hub, drover: Drover, relay_key: RelayKey, fresh: Duration) -> Self {
        Self {
            hub,
            drover,
            relay_key,
            fresh,
        }
    }

    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    pub async fn dial(&self, target: SocketAddrV6) -> io::Result<MachineStream> {
        if !self.heard_here(target) {
            let holder = self
                .drover
                .tunnel_elsewhere(*target.ip())
                .await
                .map_err(io::Error::other)?;
            if let Some((replica, relay)) = holder {
                let relay = relay.parse().map_err(|e| {
                    io::Error::other(format!("replica {replica}'s relay address {relay:?}: {e}"))
                })?;
                tracing::debug!(%target, %replica, %relay, "dialling through the replica holding the tunnel");
                let stream = drover_relay::dial(relay, &self.relay_key, target).await?;
                self.drover.metrics().relayed(true);
                return Ok(MachineStream::Relayed(stream));
            }
        }
        Ok(MachineStream::Tunnel(self.hub.connect(target).await?))
    }

    fn heard_here(&self, target: SocketAddrV6) -> bool {
        self.hub
            .peer_status(*target.ip())
            .and_then(|s| s.last_received)
            .and_then(|at| SystemTime::now().duration_since(at).ok())
            .is_some_and(|age| age < self.fresh)
    }
}

/// A connection to a machine: through this replica's tunnel, or relayed by another replica.
pub enum MachineStream {
    Tunnel(TunnelStream),
    Relayed(TcpStream),
}

impl AsyncRead for MachineStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MachineStream::Tunnel(s) => Pin::new(s).poll_read(cx, buf),
            MachineStream::Relayed(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for MachineStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MachineStream::Tunnel(s) => Pin::new(s).poll_write(cx, buf),
            MachineStream::Relayed(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MachineStream::Tunnel(s) => Pin::new(s).poll_flush(cx),
            MachineStream::Relayed(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MachineStream::Tunnel(s) => Pin::new(s).poll_shutdown(cx),
            MachineStream::Relayed(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
