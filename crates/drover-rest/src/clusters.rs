use std::collections::BTreeMap;

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use drover_model::{
    Cluster, ClusterChanges, ClusterEvent, ClusterSpec, ConfigPatch, Machine, MachineClass,
    MachineClassSpec, MachineConfigView, Page, StartUpgrade, Upgrade, UpgradeState,
};
use drover_service::{Drover, ServiceError};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Caller;
use crate::problem::Problem;

pub(crate) fn routes() -> OpenApiRouter<Drover> {
    OpenApiRouter::new()
        .routes(routes!(list_clusters, create_cluster))
        .routes(routes!(get_cluster, replace_cluster, delete_cluster))
        .routes(routes!(sync_cluster))
        .routes(routes!(machine_config))
        .routes(routes!(start_upgrade))
        .routes(routes!(get_upgrade))
        .routes(routes!(set_upgrade_state))
        .routes(routes!(cluster_events))
        .routes(routes!(list_machine_classes))
        .routes(routes!(
            get_machine_class,
            put_machine_class,
            delete_machine_class
        ))
        .routes(routes!(preview_machine_class))
        .routes(routes!(set_machine_labels))
        .routes(routes!(set_machine_patches))
}

/// List clusters with their status.
#[utoipa::path(
    get,
    path = "/api/v1/clusters",
    tag = "clusters",
    responses(
        (status = 200, description = "Every cluster of the tenant", body = Page<Cluster>),
        (status = 401, description = "No valid API token", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn list_clusters(
    State(drover): State<Drover>,
    Caller(ctx): Caller,
) -> Result<Json<Page<Cluster>>, Problem> {
    Ok(Json(Page {
        items: drover.list_clusters(&ctx).await?,
        next_cursor: None,
    }))
}

/// Create a cluster. Its secrets are generated once and sealed; machines are allocated and
/// configured by the reconciler.
#[utoipa::path(
    post,
    path = "/api/v1/clusters",
    tag = "clusters",
    request_body = ClusterSpec,
    responses(
        (status = 201, description = "Created", body = Cluster),
        (status = 409, description = "The name is taken", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The spec is not valid; the detail names each field", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn create_cluster(
    State(drover): State<Drover>,
    Caller(ctx): Caller,
    body: Result<Json<ClusterSpec>, JsonRejection>,
) -> Result<(StatusCode, Json<Cluster>), Problem> {
    let Json(spec) = body?;
    Ok((
        StatusCode::CREATED,
        Json(drover.create_cluster(&ctx, spec).await?),
    ))
}

/// Get a cluster: its spec and status (phase, machines, etcd, last error).
#[utoipa::path(
    get,
    path = "/api/v1/clusters/{name}",
    tag = "clusters",
    params(("name" = String, Path, description = "Cluster name")),
    responses(
        (status = 200, description = "The cluster", body = Cluster),
        (status = 404, description = "No such cluster", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn get_cluster(
    State(drover): State<Drover>,
    Caller(ctx): Caller,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<Cluster>, Problem> {
    let Path(name) = name?;
    Ok(Json(drover.get_cluster(&ctx, &name).await?))
}

/// Replace a cluster's spec (scale, patches, strategies). Versions change through upgrades.
#[utoipa::path(
    put,
    path = "/api/v1/clusters/{name}",
    tag = "clusters",
    params(("name" = String, Path, description = "Cluster name")),
    request_body = ClusterSpec,
    responses(
        (status = 200, description = "The cluster", body = Cluster),
        (status = 404, description = "No such cluster", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The spec is not valid", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn replace_cluster(
    State(drover): State<Drover>,
    Caller(ctx): Caller,
    name: Result<Path<String>, PathRejection>,
    body: Result<Json<ClusterSpec>, JsonRejection>,
) -> Result<Json<Cluster>, Problem> {
    let Path(name) = name?;
    let Json(spec) = body?;
    same_name(&name, &spec)?;
    Ok(Json(drover.update_cluster(&ctx, spec).await?))
}

/// Delete a cluster: every machine is reset and returns to the pool, then the cluster and its
/// secrets are forgotten.
#[utoipa::path(
    delete,
    path = "/api/v1/clusters/{name}",
    tag = "clusters",
    params(("name" = String, Path, description = "Cluster name")),
    responses(
        (status = 202, description = "Tear-down started", body = Cluster),
        (status = 404, description = "No such cluster", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn delete_cluster(
    State(drover): State<Drover>,
    Caller(ctx): Caller,
    name: Result<Path<String>, PathRejection>,
) -> Result<(StatusCode, Json<Cluster>), Problem> {
    let Path(name) = name?;
    Ok((
        StatusCode::ACCEPTED,
        Json(drover.delete_cluster(&ctx, &name).await?),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SyncParams {
    /// Only say what would change.
    #[serde(default)]
    dry_run: bool,
}

/// Create the cluster or bring it to this spec (what `drover cluster template sync` does),
/// returning what changes; idempotent.
#[utoipa::path(
    post,
    path = "/api/v1/clusters/{name}/sync",
    tag = "clusters",
    params(("name" = String, Path, description = "Cluster name"), SyncParams),
    request_body = ClusterSpec,
    responses(
        (status = 200, description = "What changed (or would)", body = ClusterChanges),
        (status = 422, description = "The spec is not valid", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn sync_cluster(
    State(drover): State<Drover>,
    Caller(ctx): Caller,
    name: Result<Path<String>, PathRejection>,
    params: Result<Query<SyncParams>, QueryRejection>,
    body: Result<Json<ClusterSpec>, JsonRejection>,
) -> Result<Json<ClusterChanges>, Problem> {
    let Path(name) = name?;
    let Query(params) = params?;
    let Json(spec) = body?;
    same_name(&name, &spec)?;
    Ok(Json(
        drover.apply_cluster(&ctx, spec, params.dry_run).await?,
    ))
}

/// The config Drover renders for one machine of the cluster, secrets redacted, with its diff
/// against the config the machine was last given.
#[utoipa::path(
    get,
    path = "/api/v1/clusters/{name}/machines/{id}/config",
    tag = "clusters",
    params(
        ("name" = String, Path, description = "Cluster name"),
        ("id" = String, Path, description = "Machine id"),
    ),
    responses(
        (status = 200, description = "The redacted config", body = MachineConfigView),
        (status = 404, description = "No such cluster or machine in it", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn machine_config(
    State(drover): State<Drover>,
    Caller(ctx): Caller,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<MachineConfigView>, Problem> {
    let Path((name, id)) = path?;
    Ok(Json(drover.machine_config(&ctx, &name, &id).await?))
}

fn same_name(path: &str, spec: &ClusterSpec) -> Result<(), Problem> {
    if path == spec.name {
        Ok(())
    } else {
        Err(ServiceError::invalid(
            "name",
            format!(
                "the spec names cluster {:?} but the path {path:?}",
                spec.name
            ),
        )
        .into())
    }
}

/// List machine classes.
#[utoipa::path(
    get,
    path = "/api/v1/machineclasses",
    tag = "machineclasses",
    responses((status = 200, description = "Every machine class", body = Vec<MachineClass>))
)]
pub(crate) async fn list_machine_classes(
    State(drover): State<Drover>,
    Caller(ctx): Caller,
) -> Result<Json<Vec<MachineClass>>, Problem> {
    Ok(Json(drover.list_machine_classes(&ctx).await?))
}

/// Get a machine class.
#[utoipa::path(
    get,
    path = "/api/v1/machineclasses/{name}",
    tag = "machineclasses",
    params(("name" = String, Path, description = "Class name")),
    responses(
        (status = 200, description = "The class", body = MachineClass),
        (status = 404, description = "No such class", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn get_machine_class(
    State(drover): State<Drover>,
    Caller(ctx): Caller,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<MachineClass>, Problem> {
    let Path(name) = name?;
    Ok(Json(drover.get_machine_class(&ctx, &name).await?))
}

/// Create or replace a machine class: label selectors, any one of which a machine must match.
#[utoipa::path(
    put,
    path = "/api/v1/machineclasses/{name}",
    tag = "machineclasses",
    params(("name" = String, Path, description = "Class name")),
    request_body = MachineClassSpec,
    responses(
        (status = 200, description = "The class", body = MachineClass),
        (status = 422, description = "A selector does not parse", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn put_machine_class(
    State(drover): State<Drover>,
    Caller(ctx): Caller,
    name: Result<Path<String>, PathRejection>,
    body: Result<Json<MachineClassSpec>, JsonRejection>,
) -> Result<Json<MachineClass>, Problem> {
    let Path(name) = name?;
    let Json(spec) = body?;
    if spec.name != name {
        return Err(ServiceError::invalid(
            "name",
            format!("the body names class {:?} but the path {name:?}", spec.name),
        )
        .into());
    }
    Ok(Json(drover.put_machine_class(&ctx, spec).await?))
}

/// Delete a machine class that no cluster uses.
#[utoipa::path(
    delete,
    path = "/api/v1/machineclasses/{name}",
    tag = "machineclasses",
    params(("name" = String, Path, description = "Class name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 409, description = "A cluster uses it", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn delete_machine_class(
    State(drover): State<Drover>,
    Caller(ctx): Caller,
    name: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, Problem> {
    let Path(name) = name?;
    drover.delete_machine_class(&ctx, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Selectors {
    selectors: Vec<String>,
}

/// The machines a list of selectors matches (a class preview).
#[utoipa::path(
    post,
    path = "/api/v1/machineclasses/preview",
    tag = "machineclasses",
    request_body = Selectors,
    responses(
        (status = 200, description = "Matching machines", body = Vec<Machine>),
        (status = 422, description = "A selector does not parse", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn preview_machine_class(
    State(drover): State<Drover>,
    Caller(ctx): Caller,
    body: Result<Json<Selectors>, JsonRejection>,
) -> Result<Json<Vec<Machine>>, Problem> {
    let Json(body) = body?;
    Ok(Json(drover.machines_matching(&ctx, &body.selectors).await?))
}

/// Replace a machine's user labels (`drover.dev/*` labels are Drover's own).
#[utoipa::path(
    put,
    path = "/api/v1/machines/{id}/labels",
    tag = "machines",
    params(("id" = String, Path, description = "Machine id")),
    request_body = BTreeMap<String, String>,
    responses(
        (status = 200, description = "The machine", body = Machine),
        (status = 422, description = "A label is not valid", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn set_machine_labels(
    State(drover): State<Drover>,
    Caller(ctx): Caller,
    id: Result<Path<String>, PathRejection>,
    body: Result<Json<BTreeMap<String, String>>, JsonRejection>,
) -> Result<Json<Machine>, Problem> {
    let Path(id) = id?;
    let Json(labels) = body?;
    Ok(Json(drover.set_machine_labels(&ctx, &id, labels).await?))
}

/// Replace a machine's machine-scope config patches (the lowest precedence).
#[utoipa::path(
    put,
    path = "/api/v1/machines/{id}/patches",
    tag = "machines",
    params(("id" = String, Path, description = "Machine id")),
    request_body = Vec<ConfigPatch>,
    responses(
        (status = 200, description = "The machine", body = Machine),
        (status = 422, description = "A patch is not valid", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn set_machine_patches(
    State(drover): State<Drover>,
    Caller(ctx): Caller,
    id: Result<Path<String>, PathRejection>,
    body: Result<Json<Vec<ConfigPatch>>, JsonRejection>,
) -> Result<Json<Machine>, Problem> {
    let Path(id) = id?;
    let Json(patches) = body?;
    Ok(Json(drover.set_machine_patches(&ctx, &id, patches).await?))
}

/// Start a rolling Talos upgrade of the cluster (or, with `dryRun`, get its per-node plan).
/// The target must be reachable from the running version and compatible with the cluster's
/// Kubernetes version; a refusal names the rule.
#[utoipa::path(
    post,
    path = "/api/v1/clusters/{name}/upgrades",
    tag = "clusters",
    params(("name" = String, Path, description = "Cluster name")),
    request_body = StartUpgrade,
    responses(
        (status = 200, description = "The upgrade (or its plan)", body = Upgrade),
        (status = 409, description = "An upgrade is under way", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The target is refused; the detail names the rule", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn start_upgrade(
    State(drover): State<Drover>,
    Caller(ctx): Caller,
    name: Result<Path<String>, PathRejection>,
    body: Result<Json<StartUpgrade>, JsonRejection>,
) -> Result<Json<Upgrade>, Problem> {
    let Path(name) = name?;
    let Json(req) = body?;
    Ok(Json(drover.start_upgrade(&ctx, &name, req).await?))
}

/// The cluster's newest upgrade: state, per-node progress, the plan of what is left.
#[utoipa::path(
    get,
    path = "/api/v1/clusters/{name}/upgrade",
    tag = "clusters",
    params(("name" = String, Path, description = "Cluster name")),
    responses(
        (status = 200, description = "The upgrade", body = Upgrade),
        (status = 404, description = "No such cluster, or it was never upgraded", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn get_upgrade(
    State(drover): State<Drover>,
    Caller(ctx): Caller,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<Upgrade>, Problem> {
    let Path(name) = name?;
    Ok(Json(drover.get_upgrade(&ctx, &name).await?))
}

/// Pause (`paused`), resume (`running`) or cancel (`cancelled`) the upgrade under way.
#[utoipa::path(
    put,
    path = "/api/v1/clusters/{name}/upgrade/state",
    tag = "clusters",
    params(("name" = String, Path, description = "Cluster name")),
    request_body = UpgradeState,
    responses(
        (status = 200, description = "The upgrade", body = Upgrade),
        (status = 409, description = "Not in a state that can change so", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn set_upgrade_state(
    State(drover): State<Drover>,
    Caller(ctx): Caller,
    name: Result<Path<String>, PathRejection>,
    body: Result<Json<UpgradeState>, JsonRejection>,
) -> Result<Json<Upgrade>, Problem> {
    let Path(name) = name?;
    let Json(state) = body?;
    Ok(Json(drover.set_upgrade_state(&ctx, &name, state).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct EventParams {
    /// Only events after this `seq`.
    #[serde(default)]
    after: i64,
}

/// The cluster's events (upgrade started, node done, failed, finished, ...), oldest first.
#[utoipa::path(
    get,
    path = "/api/v1/clusters/{name}/events",
    tag = "clusters",
    params(("name" = String, Path, description = "Cluster name"), EventParams),
    responses(
        (status = 200, description = "Events", body = Vec<ClusterEvent>),
        (status = 404, description = "No such cluster", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn cluster_events(
    State(drover): State<Drover>,
    Caller(ctx): Caller,
    name: Result<Path<String>, PathRejection>,
    params: Result<Query<EventParams>, QueryRejection>,
) -> Result<Json<Vec<ClusterEvent>>, Problem> {
    let Path(name) = name?;
    let Query(params) = params?;
    Ok(Json(
        drover.cluster_events(&ctx, &name, params.after).await?,
    ))
}
