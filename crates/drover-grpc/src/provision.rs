use drover_proto::sidero::link::provision_service_server::{
    ProvisionService, ProvisionServiceServer,
};
use drover_proto::sidero::link::{ProvisionRequest, ProvisionResponse};
use drover_service::Drover;
use tonic::{Request, Response, Status};

/// `sidero.link.ProvisionService` for Talos nodes.
pub fn provision_service(drover: Drover) -> ProvisionServiceServer<Provisioner> {
    ProvisionServiceServer::new(Provisioner { drover })
}

pub struct Provisioner {
    drover: Drover,
}

#[tonic::async_trait]
impl ProvisionService for Provisioner {
    async fn provision(
        &self,
        request: Request<ProvisionRequest>,
    ) -> Result<Response<ProvisionResponse>, Status> {
        let peer = request.remote_addr();
        let req = request.into_inner();
        let node_uuid = req.node_uuid.clone();
        let outcome = self
            .drover
            .provision(drover_service::ProvisionRequest {
                node_uuid: req.node_uuid,
                node_public_key: req.node_public_key,
                join_token: req.join_token,
                node_unique_token: req.node_unique_token,
                talos_version: req.talos_version,
                wireguard_over_grpc: req.wireguard_over_grpc.unwrap_or(false),
            })
            .await
            .map_err(|err| {
                tracing::info!(node_uuid, ?peer, %err, "provisioning refused");
                crate::status(err)
            })?;
        Ok(Response::new(ProvisionResponse {
            server_endpoint: outcome.wire_endpoints(),
            server_public_key: outcome.server_public_key.to_base64(),
            node_address_prefix: format!("{}/{}", outcome.node_address, outcome.prefix_len),
            server_address: outcome.server_address.to_string(),
            grpc_peer_addr_port: outcome.grpc_peer_addr_port.unwrap_or_default(),
        }))
    }
}
