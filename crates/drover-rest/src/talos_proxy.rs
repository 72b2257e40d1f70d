use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use drover_model::{IssuedTalosconfig, RevokedTalosCerts};
use drover_service::{Drover, ServiceError};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Caller;
use crate::problem::Problem;

pub(crate) fn routes() -> OpenApiRouter<Drover> {
    OpenApiRouter::new()
        .routes(routes!(issue_talosconfig))
        .routes(routes!(revoke_talosconfig_cert))
        .routes(routes!(revoke_talosconfig_certs_of))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct IssueParams {
    /// How long the certificate is valid, e.g. `8h` (the default), `30m`; at most 30 days.
    ttl: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct RevokeAllParams {
    /// Whose certificates: an actor such as `user:ops@example.com`, `token:ci`,
    /// `serviceaccount:deployer`. Admins may name anyone, others only themselves.
    principal: String,
}

/// Issue a talosconfig for the caller and this cluster: a client certificate of Drover's Talos
/// API proxy (any role that may read the cluster), so that `talosctl` reaches the cluster's
/// nodes through Drover with the caller's role.
#[utoipa::path(
    post,
    path = "/api/v1/clusters/{name}/talosconfig",
    tag = "clusters",
    params(("name" = String, Path, description = "Cluster name"), IssueParams),
    responses(
        (status = 200, description = "The talosconfig and its certificate's serial", body = IssuedTalosconfig),
        (status = 404, description = "No such cluster", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The ttl is not valid", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn issue_talosconfig(
    State(drover): State<Drover>,
    Caller(ctx): Caller,
    name: Result<Path<String>, PathRejection>,
    params: Result<Query<IssueParams>, QueryRejection>,
) -> Result<Json<IssuedTalosconfig>, Problem> {
    let Path(name) = name?;
    let Query(params) = params?;
    let ttl = params
        .ttl
        .map(|text| {
            humantime::parse_duration(&text).map_err(|e| {
                ServiceError::invalid("ttl", format!("{text:?} is not a duration: {e}"))
            })
        })
        .transpose()?;
    Ok(Json(drover.issue_talosconfig(&ctx, &name, ttl).await?))
}

/// Revoke one talosconfig certificate (its owner or an Admin): the Talos API proxy refuses it
/// from the next call on.
#[utoipa::path(
    delete,
    path = "/api/v1/talosconfig-certs/{serial}",
    tag = "access",
    params(("serial" = String, Path, description = "The certificate's serial (hex)")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 403, description = "Another principal's certificate, and the caller is not an Admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such certificate", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn revoke_talosconfig_cert(
    State(drover): State<Drover>,
    Caller(ctx): Caller,
    serial: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, Problem> {
    let Path(serial) = serial?;
    drover.revoke_talos_client_cert(&ctx, &serial).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Revoke every talosconfig certificate of a principal (the principal itself or an Admin).
#[utoipa::path(
    delete,
    path = "/api/v1/talosconfig-certs",
    tag = "access",
    params(RevokeAllParams),
    responses(
        (status = 200, description = "How many were revoked", body = RevokedTalosCerts),
        (status = 403, description = "Another principal, and the caller is not an Admin", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn revoke_talosconfig_certs_of(
    State(drover): State<Drover>,
    Caller(ctx): Caller,
    params: Result<Query<RevokeAllParams>, QueryRejection>,
) -> Result<Json<RevokedTalosCerts>, Problem> {
    let Query(params) = params?;
    Ok(Json(
        drover
            .revoke_talos_client_certs_of(&ctx, &params.principal)
            .await?,
    ))
}
