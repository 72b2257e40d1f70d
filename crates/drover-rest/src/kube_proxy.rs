use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use drover_model::KubeProxyEndpoint;
use drover_service::Drover;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Caller;
use crate::problem::Problem;

pub(crate) fn routes() -> OpenApiRouter<Drover> {
    OpenApiRouter::new().routes(routes!(kube_proxy_endpoint))
}

/// How kubectl reaches the cluster through Drover's Kubernetes proxy: the server URL and the CA
/// of the proxy's certificate (what `drover kubeconfig` writes, with itself as the credential
/// plugin).
#[utoipa::path(
    get,
    path = "/api/v1/clusters/{name}/kube-proxy",
    tag = "clusters",
    params(("name" = String, Path, description = "Cluster name")),
    responses(
        (status = 200, description = "The proxy endpoint for this cluster", body = KubeProxyEndpoint),
        (status = 404, description = "No such cluster", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn kube_proxy_endpoint(
    State(drover): State<Drover>,
    Caller(ctx): Caller,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<KubeProxyEndpoint>, Problem> {
    let Path(name) = name?;
    Ok(Json(drover.kube_proxy_endpoint(&ctx, &name).await?))
}
