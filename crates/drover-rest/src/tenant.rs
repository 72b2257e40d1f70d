//! `GET /api/v1/tenant`: the caller's tenant, its plan and usage against each limit.

use axum::Json;
use axum::extract::State;
use drover_model::TenantUsage;
use drover_service::Drover;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Caller;
use crate::problem::Problem;

pub(crate) fn routes() -> OpenApiRouter<Drover> {
    OpenApiRouter::new().routes(routes!(get_tenant))
}

/// The caller's tenant: its name, plan, and usage against each of the plan's limits (an absent
/// limit is unlimited). Any role may read it.
#[utoipa::path(
    get,
    path = "/api/v1/tenant",
    tag = "tenant",
    responses(
        (status = 200, description = "The tenant and its usage", body = TenantUsage),
        (status = 401, description = "No valid API token or session", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn get_tenant(
    State(drover): State<Drover>,
    Caller(ctx): Caller,
) -> Result<Json<TenantUsage>, Problem> {
    Ok(Json(drover.tenant_usage(&ctx).await?))
}
