use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use drover_model::{LogPage, Machine, Page};
use drover_service::Drover;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Caller;
use crate::problem::Problem;

pub(crate) fn routes() -> OpenApiRouter<Drover> {
    OpenApiRouter::new()
        .routes(routes!(list_machines))
        .routes(routes!(get_machine, delete_machine))
        .routes(routes!(machine_logs))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListParams {
    /// Page size, 1 to 1000 (default 100).
    limit: Option<u32>,
    /// `nextCursor` of the previous page.
    cursor: Option<String>,
}

/// List machines, a page at a time, ordered by id.
#[utoipa::path(
    get,
    path = "/api/v1/machines",
    tag = "machines",
    params(ListParams),
    responses(
        (status = 200, description = "One page of machines", body = Page<Machine>),
        (status = 401, description = "No valid API token", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad limit or cursor", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn list_machines(
    State(drover): State<Drover>,
    Caller(ctx): Caller,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<Page<Machine>>, Problem> {
    let Query(params) = params?;
    let page = drover
        .list_machines(&ctx, params.limit, params.cursor.as_deref())
        .await?;
    Ok(Json(page))
}

/// Get one machine by its id (the node's SMBIOS UUID).
#[utoipa::path(
    get,
    path = "/api/v1/machines/{id}",
    tag = "machines",
    params(("id" = String, Path, description = "Machine id")),
    responses(
        (status = 200, description = "The machine", body = Machine),
        (status = 401, description = "No valid API token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such machine", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn get_machine(
    State(drover): State<Drover>,
    Caller(ctx): Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Machine>, Problem> {
    let Path(id) = id?;
    Ok(Json(drover.get_machine(&ctx, &id).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct LogParams {
    /// Only lines after this `seq` (from a previous page's `after`); absent = the newest lines.
    after: Option<i64>,
    /// At most this many lines, 1 to 1000 (default 1000).
    limit: Option<u32>,
}

/// A machine's kernel log, as it arrived over its tunnel (the newest 5,000 lines are kept).
/// Follow it by asking again with `after`.
#[utoipa::path(
    get,
    path = "/api/v1/machines/{id}/logs",
    tag = "machines",
    params(("id" = String, Path, description = "Machine id"), LogParams),
    responses(
        (status = 200, description = "Lines, oldest first", body = LogPage),
        (status = 404, description = "No such machine", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn machine_logs(
    State(drover): State<Drover>,
    Caller(ctx): Caller,
    id: Result<Path<String>, PathRejection>,
    params: Result<Query<LogParams>, QueryRejection>,
) -> Result<Json<LogPage>, Problem> {
    let Path(id) = id?;
    let Query(params) = params?;
    Ok(Json(
        drover
            .machine_logs(&ctx, &id, params.after, params.limit)
            .await?,
    ))
}

/// Delete a machine: its tunnel closes and its logs are dropped. A node still running with a
/// valid join token can join again, as a new machine.
#[utoipa::path(
    delete,
    path = "/api/v1/machines/{id}",
    tag = "machines",
    params(("id" = String, Path, description = "Machine id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "Needs the operator role", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such machine", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn delete_machine(
    State(drover): State<Drover>,
    Caller(ctx): Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<axum::http::StatusCode, Problem> {
    let Path(id) = id?;
    drover.delete_machine(&ctx, &id).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}
