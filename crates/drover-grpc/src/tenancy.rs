//! `drover.v1.TenantService`: the caller's tenant and usage, as `GET /api/v1/tenant`.

use drover_model::Resource;
use drover_proto::drover::v1 as pb;
use drover_proto::drover::v1::tenant_service_server::{TenantService, TenantServiceServer};
use drover_service::Drover;
use tonic::{Request, Response, Status};

use crate::management::Management;
use crate::status;

pub(crate) fn tenant_service(drover: Drover) -> TenantServiceServer<Management> {
    TenantServiceServer::new(Management::new(drover))
}

#[tonic::async_trait]
impl TenantService for Management {
    async fn get_tenant(
        &self,
        request: Request<pb::GetTenantRequest>,
    ) -> Result<Response<pb::Tenant>, Status> {
        let ctx = self.context(&request).await?;
        let tenant = self.drover().tenant_usage(&ctx).await.map_err(status)?;
        Ok(Response::new(pb::Tenant {
            id: tenant.id.to_string(),
            name: tenant.name,
            plan: tenant.plan,
            usage: tenant
                .usage
                .into_iter()
                .map(|u| pb::ResourceUsage {
                    resource: match u.resource {
                        Resource::Machines => "machines",
                        Resource::Clusters => "clusters",
                        Resource::Users => "users",
                        Resource::ServiceAccounts => "serviceAccounts",
                    }
                    .to_owned(),
                    used: u.used,
                    limit: u.limit,
                })
                .collect(),
        }))
    }
}
