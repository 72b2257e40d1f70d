use drover_model as model;
use drover_proto::drover::v1 as pb;
use drover_proto::drover::v1::join_token_service_server::{
    JoinTokenService, JoinTokenServiceServer,
};
use drover_proto::drover::v1::machine_service_server::{MachineService, MachineServiceServer};
use drover_service::{Drover, RequestContext, ServiceError};
use tonic::service::Routes;
use tonic::{Request, Response, Status};

use crate::{status, timestamp};

/// The management services, ready to be merged into the HTTP server's router. They add no
/// fallback route, so the router's own (REST problem details) stays in charge of unknown paths.
pub fn management_routes(drover: Drover) -> Routes {
    Routes::from(axum::Router::new())
        .add_service(MachineServiceServer::new(Management {
            drover: drover.clone(),
        }))
        .add_service(JoinTokenServiceServer::new(Management {
            drover: drover.clone(),
        }))
        .add_service(crate::clusters::cluster_service(drover.clone()))
        .add_service(crate::clusters::machine_class_service(drover.clone()))
        .add_service(crate::tenancy::tenant_service(drover.clone()))
        .add_service(crate::access::access_service(drover))
}

pub struct Management {
    drover: Drover,
}

impl Management {
    pub(crate) fn new(drover: Drover) -> Self {
        Self { drover }
    }

    pub(crate) fn drover(&self) -> &Drover {
        &self.drover
    }

    pub(crate) async fn context<T>(&self, request: &Request<T>) -> Result<RequestContext, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .map(|v| {
                v.to_str()
                    .map_err(|_| Status::unauthenticated("the authorization header is not text"))
            })
            .transpose()?;
        let bearer = match header {
            Some(h) => Some(h.strip_prefix("Bearer ").ok_or_else(|| {
                Status::unauthenticated("the authorization header must be `Bearer <token>`")
            })?),
            None => None,
        };
        self.drover.authenticate(bearer).await.map_err(status)
    }
}

#[tonic::async_trait]
impl MachineService for Management {
    async fn list_machines(
        &self,
        request: Request<pb::ListMachinesRequest>,
    ) -> Result<Response<pb::ListMachinesResponse>, Status> {
        let ctx = self.context(&request).await?;
        let req = request.into_inner();
        let limit = (req.limit != 0).then_some(req.limit);
        let cursor = (!req.cursor.is_empty()).then_some(req.cursor.as_str());
        let page = self
            .drover
            .list_machines(&ctx, limit, cursor)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListMachinesResponse {
            machines: page.items.into_iter().map(machine).collect(),
            next_cursor: page.next_cursor.unwrap_or_default(),
        }))
    }

    async fn get_machine(
        &self,
        request: Request<pb::GetMachineRequest>,
    ) -> Result<Response<pb::Machine>, Status> {
        let ctx = self.context(&request).await?;
        let m = self
            .drover
            .get_machine(&ctx, &request.get_ref().id)
            .await
            .map_err(status)?;
        Ok(Response::new(machine(m)))
    }

    async fn delete_machine(
        &self,
        request: Request<pb::DeleteMachineRequest>,
    ) -> Result<Response<pb::DeleteMachineResponse>, Status> {
        let ctx = self.context(&request).await?;
        self.drover
            .delete_machine(&ctx, &request.get_ref().id)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::DeleteMachineResponse {}))
    }

    async fn set_machine_labels(
        &self,
        request: Request<pb::SetMachineLabelsRequest>,
    ) -> Result<Response<pb::Machine>, Status> {
        let ctx = self.context(&request).await?;
        let req = request.into_inner();
        let m = self
            .drover
            .set_machine_labels(&ctx, &req.id, req.labels.into_iter().collect())
            .await
            .map_err(status)?;
        Ok(Response::new(machine(m)))
    }

    async fn set_machine_patches(
        &self,
        request: Request<pb::SetMachinePatchesRequest>,
    ) -> Result<Response<pb::Machine>, Status> {
        let ctx = self.context(&request).await?;
        let req = request.into_inner();
        let patches = req
            .patches
            .into_iter()
            .map(crate::clusters::patch_from)
            .collect();
        let m = self
            .drover
            .set_machine_patches(&ctx, &req.id, patches)
            .await
            .map_err(status)?;
        Ok(Response::new(machine(m)))
    }

    async fn get_machine_logs(
        &self,
        request: Request<pb::GetMachineLogsRequest>,
    ) -> Result<Response<pb::MachineLogs>, Status> {
        let ctx = self.context(&request).await?;
        let req = request.into_inner();
        let limit = (req.limit != 0).then_some(req.limit);
        let page = self
            .drover
            .machine_logs(&ctx, &req.id, req.after, limit)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::MachineLogs {
            after: page.after,
            lines: page
                .lines
                .into_iter()
                .map(|l| pb::LogLine {
                    seq: l.seq,
                    received_at: Some(timestamp(l.received_at)),
                    talos_time: l.talos_time.unwrap_or_default(),
                    level: l.level.unwrap_or_default(),
                    facility: l.facility.unwrap_or_default(),
                    message: l.message,
                })
                .collect(),
        }))
    }
}

#[tonic::async_trait]
impl JoinTokenService for Management {
    async fn create_join_token(
        &self,
        request: Request<pb::CreateJoinTokenRequest>,
    ) -> Result<Response<pb::CreatedJoinToken>, Status> {
        let ctx = self.context(&request).await?;
        let req = request.into_inner();
        let expires_at = req
            .expires_at
            .map(|t| {
                chrono::DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0))
                    .ok_or_else(|| {
                        status(ServiceError::invalid(
                            "expires_at",
                            "timestamp out of range",
                        ))
                    })
            })
            .transpose()?;
        let created = self
            .drover
            .create_join_token(
                &ctx,
                model::CreateJoinToken {
                    name: req.name,
                    expires_at,
                    make_default: req.make_default,
                },
            )
            .await
            .map_err(status)?;
        Ok(Response::new(pb::CreatedJoinToken {
            token: Some(join_token(created.token)),
            secret: created.secret,
            kernel_args: created.join.kernel_args,
            join_config: created.join.join_config,
        }))
    }

    async fn list_join_tokens(
        &self,
        request: Request<pb::ListJoinTokensRequest>,
    ) -> Result<Response<pb::ListJoinTokensResponse>, Status> {
        let ctx = self.context(&request).await?;
        let tokens = self.drover.list_join_tokens(&ctx).await.map_err(status)?;
        Ok(Response::new(pb::ListJoinTokensResponse {
            tokens: tokens.into_iter().map(join_token).collect(),
        }))
    }

    async fn revoke_join_token(
        &self,
        request: Request<pb::JoinTokenRef>,
    ) -> Result<Response<pb::JoinToken>, Status> {
        let ctx = self.context(&request).await?;
        let t = self
            .drover
            .revoke_join_token(&ctx, &request.get_ref().token)
            .await
            .map_err(status)?;
        Ok(Response::new(join_token(t)))
    }

    async fn make_default_join_token(
        &self,
        request: Request<pb::JoinTokenRef>,
    ) -> Result<Response<pb::JoinToken>, Status> {
        let ctx = self.context(&request).await?;
        let t = self
            .drover
            .make_default_join_token(&ctx, &request.get_ref().token)
            .await
            .map_err(status)?;
        Ok(Response::new(join_token(t)))
    }
}

fn machine(m: model::Machine) -> pb::Machine {
    pb::Machine {
        id: m.id.to_string(),
        address: m.address,
        talos_version: m.talos_version,
        connected: m.connected,
        wireguard_public_key: m.wireguard_public_key,
        join_token_id: m.join_token_id.map(|t| t.to_string()).unwrap_or_default(),
        first_provisioned_at: Some(timestamp(m.first_provisioned_at)),
        last_provisioned_at: Some(timestamp(m.last_provisioned_at)),
        wireguard_over_grpc: m.wireguard_over_grpc,
        last_seen_at: m.last_seen_at.map(timestamp),
        stage: m.stage.unwrap_or_default(),
        ready: m.ready,
        unmet_conditions: m
            .unmet_conditions
            .into_iter()
            .map(|u| pb::UnmetCondition {
                name: u.name,
                reason: u.reason,
            })
            .collect(),
        last_error: m.last_error.unwrap_or_default(),
        facts: m.facts.map(|f| pb::MachineFacts {
            hostname: f.hostname,
            talos_version: f.talos_version,
            arch: f.arch,
            platform: f.platform,
            platform_mode: f.platform_mode,
            disks: f
                .disks
                .into_iter()
                .map(|d| pb::Disk {
                    device_name: d.device_name,
                    size: d.size,
                    model: d.model,
                    serial: d.serial,
                    system_disk: d.system_disk,
                })
                .collect(),
            collected_at: Some(timestamp(f.collected_at)),
            cores: f.cores,
            memory_mib: f.memory_mib,
        }),
        labels: m.labels.into_iter().collect(),
        cluster: m.cluster.unwrap_or_default(),
        patches: m
            .patches
            .into_iter()
            .map(crate::clusters::patch_to)
            .collect(),
    }
}

fn join_token(t: model::JoinToken) -> pb::JoinToken {
    pb::JoinToken {
        id: t.id.to_string(),
        name: t.name,
        expires_at: t.expires_at.map(timestamp),
        revoked_at: t.revoked_at.map(timestamp),
        is_default: t.is_default,
        use_count: t.use_count,
        last_used_at: t.last_used_at.map(timestamp),
        created_at: Some(timestamp(t.created_at)),
        state: t.state.as_str().to_owned(),
    }
}
