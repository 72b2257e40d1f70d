//! The REST API under `/api/v1`, and its OpenAPI document at `/api/openapi.json`.
//!
//! Handlers only translate HTTP to service calls. Errors are RFC 9457 problem details
//! (`application/problem+json`), produced in one place: [`problem::Problem`].

mod access;
mod audit;
mod auth;
mod break_glass;
mod cli_login;
mod clusters;
mod jointokens;
mod kube_proxy;
mod login;
mod machines;
pub mod problem;
mod talos_proxy;
mod tenant;

pub use auth::cookie;

use axum::Router;
use axum::routing::get;
use drover_service::Drover;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

#[derive(OpenApi)]
#[openapi(
    info(title = "Drover API", description = "Control plane for Talos Linux fleets."),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "machines", description = "The machine inventory"),
        (name = "jointokens", description = "Tokens nodes present to join"),
        (name = "clusters", description = "Talos clusters: desired state and status"),
        (name = "machineclasses", description = "Named label selectors over machines"),
        (name = "identity", description = "Who is calling"),
        (name = "audit", description = "Who did what, when"),
        (name = "tenant", description = "The caller's tenant, its plan and usage"),
        (name = "access", description = "Service accounts, users, invitations and per-cluster grants"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

fn api() -> OpenApiRouter<Drover> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(machines::routes())
        .merge(clusters::routes())
        .merge(jointokens::routes())
        .merge(login::api_routes())
        .merge(audit::routes())
        .merge(kube_proxy::routes())
        .merge(talos_proxy::routes())
        .merge(break_glass::routes())
        .merge(cli_login::api_routes())
        .merge(tenant::routes())
        .merge(access::routes())
}

/// The OpenAPI document, generated from the routes themselves.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api().split_for_parts().1
}

/// The REST routes, the browser login routes under `/auth`, plus `/api/openapi.json`.
pub fn router(drover: Drover) -> Router {
    let (routes, doc) = api().split_for_parts();
    let doc = std::sync::Arc::new(doc);
    routes
        .route(
            "/api/openapi.json",
            get(move || {
                let doc = doc.clone();
                async move { axum::Json(doc.as_ref().clone()) }
            }),
        )
        .merge(login::browser_routes())
        .merge(cli_login::browser_routes())
        .fallback(problem::not_found_route)
        .with_state(drover)
}
