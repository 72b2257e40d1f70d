use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use drover_model::BreakGlassCredential;
use drover_service::Drover;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Caller;
use crate::problem::Problem;

pub(crate) fn routes() -> OpenApiRouter<Drover> {
    OpenApiRouter::new()
        .routes(routes!(break_glass_kubeconfig))
        .routes(routes!(break_glass_talosconfig))
}

/// Break glass: a kubeconfig with a `system:masters` client certificate signed directly by the
/// cluster's Kubernetes CA, pointing at the cluster's control-plane endpoint. It bypasses
/// Drover (no proxy, no revocation) and works only where that endpoint is reachable directly.
/// Admin only, and only when droverd runs with `--allow-break-glass`. Audited; the cluster is
/// tainted until its CAs are rotated.
#[utoipa::path(
    post,
    path = "/api/v1/clusters/{name}/break-glass/kubeconfig",
    tag = "clusters",
    params(("name" = String, Path, description = "Cluster name")),
    responses(
        (status = 200, description = "The kubeconfig (shown once) and the cluster's taint", body = BreakGlassCredential),
        (status = 403, description = "The caller is not an Admin of the cluster", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such cluster", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Break-glass access is off on this server", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The cluster has no control-plane endpoint yet", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn break_glass_kubeconfig(
    State(drover): State<Drover>,
    Caller(ctx): Caller,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<BreakGlassCredential>, Problem> {
    let Path(name) = name?;
    Ok(Json(drover.break_glass_kubeconfig(&ctx, &name).await?))
}

/// Break glass: a talosconfig with an `os:admin` client certificate signed directly by the
/// cluster's OS CA, whose endpoints are the control planes' addresses as Drover knows them. It
/// bypasses Drover (no proxy, no revocation) and works only where the nodes are reachable
/// directly. Admin only, and only when droverd runs with `--allow-break-glass`. Audited; the
/// cluster is tainted until its CAs are rotated.
#[utoipa::path(
    post,
    path = "/api/v1/clusters/{name}/break-glass/talosconfig",
    tag = "clusters",
    params(("name" = String, Path, description = "Cluster name")),
    responses(
        (status = 200, description = "The talosconfig (shown once) and the cluster's taint", body = BreakGlassCredential),
        (status = 403, description = "The caller is not an Admin of the cluster", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such cluster", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Break-glass access is off on this server", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "No running control plane is known", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn break_glass_talosconfig(
    State(drover): State<Drover>,
    Caller(ctx): Caller,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<BreakGlassCredential>, Problem> {
    let Path(name) = name?;
    Ok(Json(drover.break_glass_talosconfig(&ctx, &name).await?))
}
