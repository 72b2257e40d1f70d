//! `drover.v1.AccessService`: service accounts, users and invitations, per-cluster grants.

use drover_model as model;
use drover_proto::drover::v1 as pb;
use drover_proto::drover::v1::access_service_server::{AccessService, AccessServiceServer};
use drover_service::{Drover, ServiceError};
use tonic::{Request, Response, Status};

use crate::management::Management;
use crate::{status, timestamp};

pub(crate) fn access_service(drover: Drover) -> AccessServiceServer<Management> {
    AccessServiceServer::new(Management::new(drover))
}

fn role(text: &str) -> Result<model::Role, Status> {
    text.parse()
        .map_err(|e: model::UnknownRole| status(ServiceError::invalid("role", e.to_string())))
}

fn key(k: model::ServiceAccountKey) -> pb::ServiceAccountKey {
    pb::ServiceAccountKey {
        id: k.id.to_string(),
        created_at: Some(timestamp(k.created_at)),
        revoked_at: k.revoked_at.map(timestamp),
        last_used_at: k.last_used_at.map(timestamp),
        expires_at: k.expires_at.map(timestamp),
    }
}

fn account(a: model::ServiceAccount) -> pb::ServiceAccount {
    pb::ServiceAccount {
        id: a.id.to_string(),
        name: a.name,
        role: a.role.to_string(),
        expires_at: a.expires_at.map(timestamp),
        expired: a.expired,
        created_at: Some(timestamp(a.created_at)),
        keys: a.keys.into_iter().map(key).collect(),
    }
}

fn issued(i: model::IssuedServiceAccountKey) -> pb::IssuedServiceAccountKey {
    pb::IssuedServiceAccountKey {
        service_account: Some(account(i.service_account)),
        key: Some(key(i.key)),
        secret: i.secret,
    }
}

fn user(u: model::User) -> pb::User {
    pb::User {
        id: u.id.to_string(),
        email: u.email,
        name: u.name,
        role: u.role.to_string(),
        status: match u.status {
            model::UserStatus::Invited => "invited",
            model::UserStatus::Active => "active",
        }
        .to_owned(),
        created_at: Some(timestamp(u.created_at)),
        last_login_at: u.last_login_at.map(timestamp),
    }
}

fn grant(g: model::ClusterGrant) -> pb::ClusterGrant {
    pb::ClusterGrant {
        cluster: g.cluster,
        user: g.user,
        service_account: g.service_account,
        role: g.role.to_string(),
        created_at: Some(timestamp(g.created_at)),
    }
}

fn expiry(
    t: Option<prost_types::Timestamp>,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, Status> {
    t.map(|t| {
        chrono::DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0))
            .ok_or_else(|| status(ServiceError::invalid("expiresAt", "not a valid timestamp")))
    })
    .transpose()
}

#[tonic::async_trait]
impl AccessService for Management {
    async fn list_service_accounts(
        &self,
        request: Request<pb::ListServiceAccountsRequest>,
    ) -> Result<Response<pb::ListServiceAccountsResponse>, Status> {
        let ctx = self.context(&request).await?;
        let accounts = self
            .drover()
            .list_service_accounts(&ctx)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListServiceAccountsResponse {
            service_accounts: accounts.into_iter().map(account).collect(),
        }))
    }

    async fn create_service_account(
        &self,
        request: Request<pb::CreateServiceAccountRequest>,
    ) -> Result<Response<pb::IssuedServiceAccountKey>, Status> {
        let ctx = self.context(&request).await?;
        let req = request.into_inner();
        let req = model::CreateServiceAccount {
            role: role(&req.role)?,
            expires_at: expiry(req.expires_at)?,
            name: req.name,
        };
        let created = self
            .drover()
            .create_service_account(&ctx, req)
            .await
            .map_err(status)?;
        Ok(Response::new(issued(created)))
    }

    async fn revoke_service_account(
        &self,
        request: Request<pb::ServiceAccountRef>,
    ) -> Result<Response<pb::ServiceAccount>, Status> {
        let ctx = self.context(&request).await?;
        let a = self
            .drover()
            .delete_service_account(&ctx, &request.get_ref().name)
            .await
            .map_err(status)?;
        Ok(Response::new(account(a)))
    }

    async fn create_service_account_key(
        &self,
        request: Request<pb::CreateServiceAccountKeyRequest>,
    ) -> Result<Response<pb::IssuedServiceAccountKey>, Status> {
        let ctx = self.context(&request).await?;
        let req = request.get_ref();
        let expires_at = req
            .expires_at
            .map(|t| {
                chrono::DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32)
                    .ok_or_else(|| Status::invalid_argument("expires_at: not a valid time"))
            })
            .transpose()?;
        let created = self
            .drover()
            .create_service_account_key(&ctx, &req.name, expires_at)
            .await
            .map_err(status)?;
        Ok(Response::new(issued(created)))
    }

    async fn revoke_service_account_key(
        &self,
        request: Request<pb::RevokeServiceAccountKeyRequest>,
    ) -> Result<Response<pb::ServiceAccount>, Status> {
        let ctx = self.context(&request).await?;
        let req = request.get_ref();
        let a = self
            .drover()
            .revoke_service_account_key(&ctx, &req.name, &req.key_id)
            .await
            .map_err(status)?;
        Ok(Response::new(account(a)))
    }

    async fn list_users(
        &self,
        request: Request<pb::ListUsersRequest>,
    ) -> Result<Response<pb::ListUsersResponse>, Status> {
        let ctx = self.context(&request).await?;
        let users = self.drover().list_users(&ctx).await.map_err(status)?;
        Ok(Response::new(pb::ListUsersResponse {
            users: users.into_iter().map(user).collect(),
        }))
    }

    async fn set_user_role(
        &self,
        request: Request<pb::SetUserRoleRequest>,
    ) -> Result<Response<pb::User>, Status> {
        let ctx = self.context(&request).await?;
        let req = request.get_ref();
        let u = self
            .drover()
            .set_user_role(&ctx, &req.email, role(&req.role)?)
            .await
            .map_err(status)?;
        Ok(Response::new(user(u)))
    }

    async fn remove_user(
        &self,
        request: Request<pb::UserRef>,
    ) -> Result<Response<pb::User>, Status> {
        let ctx = self.context(&request).await?;
        let u = self
            .drover()
            .remove_user(&ctx, &request.get_ref().email)
            .await
            .map_err(status)?;
        Ok(Response::new(user(u)))
    }

    async fn invite_user(
        &self,
        request: Request<pb::InviteUserRequest>,
    ) -> Result<Response<pb::User>, Status> {
        let ctx = self.context(&request).await?;
        let req = request.into_inner();
        let req = model::InviteUser {
            role: role(&req.role)?,
            email: req.email,
        };
        let u = self.drover().invite_user(&ctx, req).await.map_err(status)?;
        Ok(Response::new(user(u)))
    }

    async fn list_invitations(
        &self,
        request: Request<pb::ListUsersRequest>,
    ) -> Result<Response<pb::ListUsersResponse>, Status> {
        let ctx = self.context(&request).await?;
        let users = self.drover().list_invitations(&ctx).await.map_err(status)?;
        Ok(Response::new(pb::ListUsersResponse {
            users: users.into_iter().map(user).collect(),
        }))
    }

    async fn cancel_invitation(
        &self,
        request: Request<pb::UserRef>,
    ) -> Result<Response<pb::User>, Status> {
        let ctx = self.context(&request).await?;
        let u = self
            .drover()
            .cancel_invitation(&ctx, &request.get_ref().email)
            .await
            .map_err(status)?;
        Ok(Response::new(user(u)))
    }

    async fn list_cluster_grants(
        &self,
        request: Request<pb::ClusterGrantsRef>,
    ) -> Result<Response<pb::ListClusterGrantsResponse>, Status> {
        let ctx = self.context(&request).await?;
        let grants = self
            .drover()
            .list_cluster_grants(&ctx, &request.get_ref().cluster)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListClusterGrantsResponse {
            grants: grants.into_iter().map(grant).collect(),
        }))
    }

    async fn grant_cluster_role(
        &self,
        request: Request<pb::GrantClusterRoleRequest>,
    ) -> Result<Response<pb::ClusterGrant>, Status> {
        let ctx = self.context(&request).await?;
        let req = request.into_inner();
        let grant_req = model::GrantClusterRole {
            role: role(&req.role)?,
            user: req.user,
            service_account: req.service_account,
        };
        let g = self
            .drover()
            .grant_cluster_role(&ctx, &req.cluster, grant_req)
            .await
            .map_err(status)?;
        Ok(Response::new(grant(g)))
    }

    async fn revoke_cluster_grant(
        &self,
        request: Request<pb::RevokeClusterGrantRequest>,
    ) -> Result<Response<pb::RevokeClusterGrantResponse>, Status> {
        let ctx = self.context(&request).await?;
        let req = request.into_inner();
        let to = model::GrantTarget {
            user: req.user,
            service_account: req.service_account,
        };
        self.drover()
            .revoke_cluster_grant(&ctx, &req.cluster, &to)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::RevokeClusterGrantResponse {}))
    }
}
