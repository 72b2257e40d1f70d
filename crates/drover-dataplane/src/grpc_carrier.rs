//! `sidero.link.WireGuardOverGRPCService/CreateStream`: WireGuard datagrams carried over a gRPC
//! stream for nodes that cannot use UDP. The node names its virtual peer address in the
//! `x-siderolink-ipv6-addr` header; a second stream for the same address replaces the first.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use drover_proto::sidero::link::PeerPacket;
use drover_proto::sidero::link::wire_guard_over_grpc_service_server::{
    WireGuardOverGrpcService, WireGuardOverGrpcServiceServer,
};
use drover_service::Drover;
use drover_tunnel::{Hub, PeerEndpoint};
use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

pub const PEER_ADDRESS_HEADER: &str = "x-siderolink-ipv6-addr";
/// Datagrams queued towards one node before the oldest are dropped (WireGuard tolerates loss).
const QUEUE: usize = 256;

#[derive(Clone)]
pub struct GrpcCarrier {
    hub: Hub,
    drover: Drover,
    streams: Arc<Mutex<HashMap<String, (u64, CancellationToken)>>>,
    next_id: Arc<std::sync::atomic::AtomicU64>,
    /// Ends every stream when droverd shuts down: nodes keep theirs open forever, and a
    /// graceful shutdown waits for open streams.
    shutdown: CancellationToken,
}

impl GrpcCarrier {
    pub fn new(hub: Hub, drover: Drover, shutdown: CancellationToken) -> Self {
        Self {
            hub,
            drover,
            streams: Arc::default(),
            next_id: Arc::default(),
            shutdown,
        }
    }

    pub fn into_service(self) -> WireGuardOverGrpcServiceServer<Self> {
        WireGuardOverGrpcServiceServer::new(self)
    }

    /// Registers a stream for `peer`, ending the one it replaces.
    fn register(&self, peer: &str) -> (u64, CancellationToken) {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let token = CancellationToken::new();
        if let Some((_, old)) = self
            .streams
            .lock()
            .expect("not poisoned")
            .insert(peer.to_owned(), (id, token.clone()))
        {
            old.cancel();
        }
        (id, token)
    }

    fn unregister(&self, peer: &str, id: u64) {
        let mut streams = self.streams.lock().expect("not poisoned");
        if streams.get(peer).is_some_and(|(current, _)| *current == id) {
            streams.remove(peer);
        }
    }
}

type PacketStream = Pin<Box<dyn Stream<Item = Result<PeerPacket, Status>> + Send>>;

#[tonic::async_trait]
impl WireGuardOverGrpcService for GrpcCarrier {
    type CreateStreamStream = PacketStream;

    async fn create_stream(
        &self,
        request: Request<Streaming<PeerPacket>>,
    ) -> Result<Response<PacketStream>, Status> {
        let peer = request
            .metadata()
            .get(PEER_ADDRESS_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| Status::permission_denied("peer not allowed"))?;
        let allowed = self
            .drover
            .grpc_tunnel_peer_allowed(&peer)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        if !allowed {
            return Err(Status::permission_denied("peer not allowed"));
        }
        let (id, replaced) = self.register(&peer);
        let mut inbound = request.into_inner();

        // Hub -> node: datagrams the hub sends to this peer's endpoint.
        let (to_node, mut from_hub) = mpsc::channel::<Bytes>(QUEUE);
        let (responses, response_stream) = mpsc::channel::<Result<PeerPacket, Status>>(QUEUE);
        let done = self.shutdown.child_token();
        {
            let (replaced, done) = (replaced.clone(), done.clone());
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        // Replacement first: the reader also stops on it and cancels `done`,
                        // and the node must still be told why its stream ended.
                        biased;
                        () = replaced.cancelled() => {
                            let _ = responses.send(Err(Status::aborted("peer replaced"))).await;
                            return;
                        }
                        () = done.cancelled() => return,
                        datagram = from_hub.recv() => {
                            let Some(data) = datagram else { return };
                            if responses.send(Ok(PeerPacket { data: data.to_vec() })).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
        // Node -> hub.
        let carrier = self.clone();
        tokio::spawn(async move {
            loop {
                let message = tokio::select! {
                    () = replaced.cancelled() => break,
                    () = carrier.shutdown.cancelled() => break,
                    message = inbound.message() => message,
                };
                match message {
                    Ok(Some(packet)) => carrier
                        .hub
                        .receive_datagram(&packet.data, PeerEndpoint::Channel(to_node.clone())),
                    Ok(None) | Err(_) => break,
                }
            }
            done.cancel();
            carrier.unregister(&peer, id);
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(
            response_stream,
        ))))
    }
}
