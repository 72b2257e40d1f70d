//! Service accounts, users and invitations, per-cluster grants. Admin only (the service layer
//! decides).

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use drover_model::{
    ClusterGrant, CreateServiceAccount, GrantClusterRole, GrantTarget, InviteUser,
    IssuedServiceAccountKey, ServiceAccount, SetRole, User,
};
use drover_service::Drover;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Caller;
use crate::problem::Problem;

pub(crate) fn routes() -> OpenApiRouter<Drover> {
    OpenApiRouter::new()
        .routes(routes!(list_service_accounts, create_service_account))
        .routes(routes!(get_service_account, delete_service_account))
        .routes(routes!(create_service_account_key))
        .routes(routes!(revoke_service_account_key))
        .routes(routes!(list_users))
        .routes(routes!(remove_user))
        .routes(routes!(set_user_role))
        .routes(routes!(list_invitations, invite_user))
        .routes(routes!(cancel_invitation))
        .routes(routes!(list_cluster_grants, grant_cluster_role))
        .routes(routes!(revoke_user_cluster_grant))
        .routes(routes!(revoke_service_account_cluster_grant))
}

/// List service accounts with their keys (never the secrets).
#[utoipa::path(
    get,
    path = "/api/v1/serviceaccounts",
    tag = "access",
    responses(
        (status = 200, description = "The tenant's service accounts", body = Vec<ServiceAccount>),
        (status = 403, description = "Not an Admin", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn list_service_accounts(
    State(drover): State<Drover>,
    Caller(ctx): Caller,
) -> Result<Json<Vec<ServiceAccount>>, Problem> {
    Ok(Json(drover.list_service_accounts(&ctx).await?))
}

/// Create a service account with its first key. The response is the only time the key's secret
/// is shown.
#[utoipa::path(
    post,
    path = "/api/v1/serviceaccounts",
    tag = "access",
    request_body = CreateServiceAccount,
    responses(
        (status = 201, description = "Created; the key's secret is shown only here", body = IssuedServiceAccountKey),
        (status = 403, description = "Not an Admin", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The name is taken", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid name or expiry", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn create_service_account(
    State(drover): State<Drover>,
    Caller(ctx): Caller,
    body: Result<Json<CreateServiceAccount>, JsonRejection>,
) -> Result<(StatusCode, Json<IssuedServiceAccountKey>), Problem> {
    let Json(req) = body?;
    Ok((
        StatusCode::CREATED,
        Json(drover.create_service_account(&ctx, req).await?),
    ))
}

/// Get a service account by name.
#[utoipa::path(
    get,
    path = "/api/v1/serviceaccounts/{name}",
    tag = "access",
    params(("name" = String, Path, description = "Service account name")),
    responses(
        (status = 200, description = "The service account", body = ServiceAccount),
        (status = 404, description = "No such service account", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn get_service_account(
    State(drover): State<Drover>,
    Caller(ctx): Caller,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<ServiceAccount>, Problem> {
    let Path(name) = name?;
    Ok(Json(drover.get_service_account(&ctx, &name).await?))
}

/// Revoke a service account: it is deleted with its keys and grants; its keys are refused from
/// the next request on.
#[utoipa::path(
    delete,
    path = "/api/v1/serviceaccounts/{name}",
    tag = "access",
    params(("name" = String, Path, description = "Service account name")),
    responses(
        (status = 200, description = "The revoked service account, as it was", body = ServiceAccount),
        (status = 404, description = "No such service account", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn delete_service_account(
    State(drover): State<Drover>,
    Caller(ctx): Caller,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<ServiceAccount>, Problem> {
    let Path(name) = name?;
    Ok(Json(drover.delete_service_account(&ctx, &name).await?))
}

/// Issue another key for a service account (e.g. to rotate). Its secret is shown only here.
#[utoipa::path(
    post,
    path = "/api/v1/serviceaccounts/{name}/keys",
    tag = "access",
    params(("name" = String, Path, description = "Service account name"), KeyParams),
    responses(
        (status = 201, description = "Issued; the secret is shown only here", body = IssuedServiceAccountKey),
        (status = 404, description = "No such service account", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn create_service_account_key(
    State(drover): State<Drover>,
    Caller(ctx): Caller,
    name: Result<Path<String>, PathRejection>,
    params: Result<Query<KeyParams>, QueryRejection>,
) -> Result<(StatusCode, Json<IssuedServiceAccountKey>), Problem> {
    let Path(name) = name?;
    let Query(params) = params?;
    Ok((
        StatusCode::CREATED,
        Json(
            drover
                .create_service_account_key(&ctx, &name, params.expires_at)
                .await?,
        ),
    ))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub(crate) struct KeyParams {
    /// When the key stops working (RFC 3339); without it, with its account.
    expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Revoke one key of a service account: it is refused from the next request on.
#[utoipa::path(
    post,
    path = "/api/v1/serviceaccounts/{name}/keys/{key}/revoke",
    tag = "access",
    params(
        ("name" = String, Path, description = "Service account name"),
        ("key" = String, Path, description = "Key id"),
    ),
    responses(
        (status = 200, description = "The service account with the key revoked", body = ServiceAccount),
        (status = 404, description = "No such service account or key", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn revoke_service_account_key(
    State(drover): State<Drover>,
    Caller(ctx): Caller,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<ServiceAccount>, Problem> {
    let Path((name, key)) = path?;
    Ok(Json(
        drover.revoke_service_account_key(&ctx, &name, &key).await?,
    ))
}

/// List the tenant's users, invited ones included.
#[utoipa::path(
    get,
    path = "/api/v1/users",
    tag = "access",
    responses(
        (status = 200, description = "The tenant's users", body = Vec<User>),
        (status = 403, description = "Not an Admin", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn list_users(
    State(drover): State<Drover>,
    Caller(ctx): Caller,
) -> Result<Json<Vec<User>>, Problem> {
    Ok(Json(drover.list_users(&ctx).await?))
}

/// Remove a user; their sessions end at once. The tenant's last Admin cannot be removed.
#[utoipa::path(
    delete,
    path = "/api/v1/users/{email}",
    tag = "access",
    params(("email" = String, Path, description = "The user's e-mail address")),
    responses(
        (status = 200, description = "The removed user, as they were", body = User),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The user is the last Admin", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn remove_user(
    State(drover): State<Drover>,
    Caller(ctx): Caller,
    email: Result<Path<String>, PathRejection>,
) -> Result<Json<User>, Problem> {
    let Path(email) = email?;
    Ok(Json(drover.remove_user(&ctx, &email).await?))
}

/// Change a user's role (from their next request on). The last Admin cannot be demoted.
#[utoipa::path(
    put,
    path = "/api/v1/users/{email}/role",
    tag = "access",
    params(("email" = String, Path, description = "The user's e-mail address")),
    request_body = SetRole,
    responses(
        (status = 200, description = "The user with the new role", body = User),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The user is the last Admin", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn set_user_role(
    State(drover): State<Drover>,
    Caller(ctx): Caller,
    email: Result<Path<String>, PathRejection>,
    body: Result<Json<SetRole>, JsonRejection>,
) -> Result<Json<User>, Problem> {
    let Path(email) = email?;
    let Json(req) = body?;
    Ok(Json(drover.set_user_role(&ctx, &email, req.role).await?))
}

/// List invitations not yet taken up by a first login.
#[utoipa::path(
    get,
    path = "/api/v1/invitations",
    tag = "access",
    responses(
        (status = 200, description = "Invited users", body = Vec<User>),
        (status = 403, description = "Not an Admin", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn list_invitations(
    State(drover): State<Drover>,
    Caller(ctx): Caller,
) -> Result<Json<Vec<User>>, Problem> {
    Ok(Json(drover.list_invitations(&ctx).await?))
}

/// Invite a person by e-mail with a role; they become an active user at their first login
/// through the identity provider with that verified e-mail.
#[utoipa::path(
    post,
    path = "/api/v1/invitations",
    tag = "access",
    request_body = InviteUser,
    responses(
        (status = 201, description = "The invited user", body = User),
        (status = 409, description = "Already a user or invited", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not an e-mail address", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn invite_user(
    State(drover): State<Drover>,
    Caller(ctx): Caller,
    body: Result<Json<InviteUser>, JsonRejection>,
) -> Result<(StatusCode, Json<User>), Problem> {
    let Json(req) = body?;
    Ok((
        StatusCode::CREATED,
        Json(drover.invite_user(&ctx, req).await?),
    ))
}

/// Cancel an invitation.
#[utoipa::path(
    delete,
    path = "/api/v1/invitations/{email}",
    tag = "access",
    params(("email" = String, Path, description = "The invited e-mail address")),
    responses(
        (status = 200, description = "The cancelled invitation", body = User),
        (status = 404, description = "No such invitation", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn cancel_invitation(
    State(drover): State<Drover>,
    Caller(ctx): Caller,
    email: Result<Path<String>, PathRejection>,
) -> Result<Json<User>, Problem> {
    let Path(email) = email?;
    Ok(Json(drover.cancel_invitation(&ctx, &email).await?))
}

/// List the per-cluster grants of a cluster.
#[utoipa::path(
    get,
    path = "/api/v1/clusters/{name}/grants",
    tag = "access",
    params(("name" = String, Path, description = "Cluster name")),
    responses(
        (status = 200, description = "The cluster's grants", body = Vec<ClusterGrant>),
        (status = 404, description = "No such cluster", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn list_cluster_grants(
    State(drover): State<Drover>,
    Caller(ctx): Caller,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<Vec<ClusterGrant>>, Problem> {
    let Path(name) = name?;
    Ok(Json(drover.list_cluster_grants(&ctx, &name).await?))
}

/// Grant a user (`user`: e-mail) or a service account (`serviceAccount`: name) a role on this
/// cluster, on top of their tenant role; replaces an earlier grant to them on it.
#[utoipa::path(
    post,
    path = "/api/v1/clusters/{name}/grants",
    tag = "access",
    params(("name" = String, Path, description = "Cluster name")),
    request_body = GrantClusterRole,
    responses(
        (status = 200, description = "The grant", body = ClusterGrant),
        (status = 404, description = "No such cluster, user or service account", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not exactly one grantee", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn grant_cluster_role(
    State(drover): State<Drover>,
    Caller(ctx): Caller,
    name: Result<Path<String>, PathRejection>,
    body: Result<Json<GrantClusterRole>, JsonRejection>,
) -> Result<Json<ClusterGrant>, Problem> {
    let Path(name) = name?;
    let Json(req) = body?;
    Ok(Json(drover.grant_cluster_role(&ctx, &name, req).await?))
}

/// Revoke a user's grant on a cluster.
#[utoipa::path(
    delete,
    path = "/api/v1/clusters/{name}/grants/users/{email}",
    tag = "access",
    params(
        ("name" = String, Path, description = "Cluster name"),
        ("email" = String, Path, description = "The user's e-mail address"),
    ),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "No such grant", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn revoke_user_cluster_grant(
    State(drover): State<Drover>,
    Caller(ctx): Caller,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<StatusCode, Problem> {
    let Path((name, email)) = path?;
    let to = GrantTarget {
        user: Some(email),
        service_account: None,
    };
    drover.revoke_cluster_grant(&ctx, &name, &to).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Revoke a service account's grant on a cluster.
#[utoipa::path(
    delete,
    path = "/api/v1/clusters/{name}/grants/serviceaccounts/{account}",
    tag = "access",
    params(
        ("name" = String, Path, description = "Cluster name"),
        ("account" = String, Path, description = "Service account name"),
    ),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "No such grant", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn revoke_service_account_cluster_grant(
    State(drover): State<Drover>,
    Caller(ctx): Caller,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<StatusCode, Problem> {
    let Path((name, account)) = path?;
    let to = GrantTarget {
        user: None,
        service_account: Some(account),
    };
    drover.revoke_cluster_grant(&ctx, &name, &to).await?;
    Ok(StatusCode::NO_CONTENT)
}
