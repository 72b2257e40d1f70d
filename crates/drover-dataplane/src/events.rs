//! `events.EventSinkService/Publish` inside the tunnel: nodes report their stage and boot
//! sequences. A node is known by the source address of its tunnel connection.

use std::net::Ipv6Addr;

use drover_model::UnmetCondition;
use drover_proto::talos::events::event_sink_service_server::{
    EventSinkService, EventSinkServiceServer,
};
use drover_proto::talos::events::{EventRequest, EventResponse};
use drover_service::{Drover, NodeReport, ServiceError};
use drover_talos::events::NodeEvent;
use drover_tunnel::TunnelListener;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

pub(crate) async fn serve(listener: TunnelListener, drover: Drover, cancel: CancellationToken) {
    let served = tonic::transport::Server::builder()
        .add_service(EventSinkServiceServer::new(EventSink { drover }))
        .serve_with_incoming_shutdown(listener.into_incoming(), cancel.cancelled_owned())
        .await;
    if let Err(err) = served {
        tracing::error!(error = %err, "the event sink stopped");
    }
}

struct EventSink {
    drover: Drover,
}

fn source(request: &Request<EventRequest>) -> Result<Ipv6Addr, Status> {
    request
        .extensions()
        .get::<drover_tunnel::TunnelConnectInfo>()
        .map(|info| *info.remote.ip())
        .ok_or_else(|| Status::internal("event without a tunnel source address"))
}

#[tonic::async_trait]
impl EventSinkService for EventSink {
    async fn publish(
        &self,
        request: Request<EventRequest>,
    ) -> Result<Response<EventResponse>, Status> {
        let from = source(&request)?;
        let Some(data) = request.into_inner().data else {
            return Ok(Response::new(EventResponse {}));
        };
        let report = match drover_talos::events::decode(&data) {
            Ok(NodeEvent::MachineStatus {
                stage,
                ready,
                unmet,
            }) => NodeReport::Status {
                stage: stage.as_str().to_owned(),
                ready,
                unmet: unmet
                    .into_iter()
                    .map(|(name, reason)| UnmetCondition { name, reason })
                    .collect(),
            },
            Ok(NodeEvent::Sequence {
                sequence, error, ..
            }) => NodeReport::Sequence { sequence, error },
            // Other events are acknowledged; the node replays its history on reconnect and
            // must not be stopped by a message we do not record.
            Ok(_) | Err(_) => return Ok(Response::new(EventResponse {})),
        };
        match self.drover.record_node_report(from, report).await {
            Ok(()) | Err(ServiceError::NotFound { .. }) => Ok(Response::new(EventResponse {})),
            Err(err) => Err(Status::unavailable(format!("event not recorded: {err}"))),
        }
    }
}
