use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use drover_model::{CreateJoinToken, CreatedJoinToken, JoinInstructions, JoinToken};
use drover_service::Drover;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Caller;
use crate::problem::Problem;

pub(crate) fn routes() -> OpenApiRouter<Drover> {
    OpenApiRouter::new()
        .routes(routes!(list_join_tokens, create_join_token))
        .routes(routes!(get_join_token))
        .routes(routes!(revoke_join_token))
        .routes(routes!(make_default_join_token))
        .routes(routes!(join_instructions))
}

/// List join tokens. Secrets are never returned.
#[utoipa::path(
    get,
    path = "/api/v1/jointokens",
    tag = "jointokens",
    responses(
        (status = 200, description = "All join tokens of the tenant", body = Vec<JoinToken>),
        (status = 401, description = "No valid API token", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn list_join_tokens(
    State(drover): State<Drover>,
    Caller(ctx): Caller,
) -> Result<Json<Vec<JoinToken>>, Problem> {
    Ok(Json(drover.list_join_tokens(&ctx).await?))
}

/// Create a join token. The response is the only time its secret is shown.
#[utoipa::path(
    post,
    path = "/api/v1/jointokens",
    tag = "jointokens",
    request_body = CreateJoinToken,
    responses(
        (status = 201, description = "Created; the secret is shown only here", body = CreatedJoinToken),
        (status = 409, description = "The name is taken", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid name or expiry", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn create_join_token(
    State(drover): State<Drover>,
    Caller(ctx): Caller,
    body: Result<Json<CreateJoinToken>, JsonRejection>,
) -> Result<(StatusCode, Json<CreatedJoinToken>), Problem> {
    let Json(req) = body?;
    Ok((
        StatusCode::CREATED,
        Json(drover.create_join_token(&ctx, req).await?),
    ))
}

/// Get a join token by id or name.
#[utoipa::path(
    get,
    path = "/api/v1/jointokens/{token}",
    tag = "jointokens",
    params(("token" = String, Path, description = "Join token id or name")),
    responses(
        (status = 200, description = "The token", body = JoinToken),
        (status = 404, description = "No such token", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn get_join_token(
    State(drover): State<Drover>,
    Caller(ctx): Caller,
    token: Result<Path<String>, PathRejection>,
) -> Result<Json<JoinToken>, Problem> {
    let Path(token) = token?;
    Ok(Json(drover.get_join_token(&ctx, &token).await?))
}

/// Revoke a join token: nodes presenting it are refused from now on.
#[utoipa::path(
    post,
    path = "/api/v1/jointokens/{token}/revoke",
    tag = "jointokens",
    params(("token" = String, Path, description = "Join token id or name")),
    responses(
        (status = 200, description = "The revoked token", body = JoinToken),
        (status = 404, description = "No such token", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn revoke_join_token(
    State(drover): State<Drover>,
    Caller(ctx): Caller,
    token: Result<Path<String>, PathRejection>,
) -> Result<Json<JoinToken>, Problem> {
    let Path(token) = token?;
    Ok(Json(drover.revoke_join_token(&ctx, &token).await?))
}

/// Make a join token the default one.
#[utoipa::path(
    post,
    path = "/api/v1/jointokens/{token}/default",
    tag = "jointokens",
    params(("token" = String, Path, description = "Join token id or name")),
    responses(
        (status = 200, description = "The new default token", body = JoinToken),
        (status = 404, description = "No such token", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The token is revoked or expired", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn make_default_join_token(
    State(drover): State<Drover>,
    Caller(ctx): Caller,
    token: Result<Path<String>, PathRejection>,
) -> Result<Json<JoinToken>, Problem> {
    let Path(token) = token?;
    Ok(Json(drover.make_default_join_token(&ctx, &token).await?))
}

/// A join token's secret, to render join instructions for.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct JoinSecret {
    secret: String,
}

/// Kernel arguments and join-config documents for a join token secret.
///
/// Drover stores only a hash of each secret, so the caller supplies it; it is checked against
/// the tenant's active tokens first.
#[utoipa::path(
    post,
    path = "/api/v1/join-instructions",
    tag = "jointokens",
    request_body = JoinSecret,
    responses(
        (status = 200, description = "What a node needs to join", body = JoinInstructions),
        (status = 409, description = "The token is revoked or expired", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a join token of this tenant", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn join_instructions(
    State(drover): State<Drover>,
    Caller(ctx): Caller,
    body: Result<Json<JoinSecret>, JsonRejection>,
) -> Result<Json<JoinInstructions>, Problem> {
    let Json(req) = body?;
    Ok(Json(drover.join_instructions(&ctx, &req.secret).await?))
}
