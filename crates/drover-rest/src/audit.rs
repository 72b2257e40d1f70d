use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use chrono::{DateTime, Utc};
use drover_model::AuditEntry;
use drover_service::Drover;
use drover_service::audit::AuditQuery;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Caller;
use crate::problem::Problem;

pub(crate) fn routes() -> OpenApiRouter<Drover> {
    OpenApiRouter::new().routes(routes!(audit_log))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditParams {
    /// Only entries after this id (to follow the log, pass the last id seen).
    #[serde(default)]
    after: i64,
    /// Only entries at or after this time (RFC 3339).
    since: Option<DateTime<Utc>>,
    /// Only actions starting with this, e.g. `cluster.`.
    action: Option<String>,
    /// Only this actor, e.g. `user:alice@example.com`.
    actor: Option<String>,
    /// At most this many entries (default and maximum 1000).
    limit: Option<u32>,
}

/// The tenant's audit log, oldest first: every mutation, login and credential issuance with
/// its actor, action, target and result. Admin only.
#[utoipa::path(
    get,
    path = "/api/v1/audit-log",
    tag = "audit",
    params(AuditParams),
    responses(
        (status = 200, description = "Entries, oldest first", body = Vec<AuditEntry>),
        (status = 403, description = "Not an Admin", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn audit_log(
    State(drover): State<Drover>,
    Caller(ctx): Caller,
    params: Result<Query<AuditParams>, QueryRejection>,
) -> Result<Json<Vec<AuditEntry>>, Problem> {
    let Query(params) = params?;
    let query = AuditQuery {
        after: params.after,
        since: params.since,
        action: params.action,
        actor: params.actor,
        limit: params.limit,
    };
    Ok(Json(drover.audit_log(&ctx, &query).await?))
}
