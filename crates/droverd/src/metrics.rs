//! Prometheus metrics: the `/metrics` listener, and the HTTP API's request latency.

use std::time::Instant;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use drover_service::{Drover, Metrics};

/// The metrics listener's routes: `GET /metrics`.
pub fn router(drover: Drover) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(drover)
}

/// `router` with the latency of every request it answers recorded in `metrics`.
pub fn record_latency(router: Router, metrics: Metrics) -> Router {
    router.layer(axum::middleware::from_fn_with_state(metrics, latency))
}

async fn metrics(State(drover): State<Drover>) -> Response {
    match drover.render_metrics().await {
        Ok(text) => (
            [(header::CONTENT_TYPE, drover_service::metrics::CONTENT_TYPE)],
            text,
        )
            .into_response(),
        Err(err) => {
            tracing::warn!(error = %err, "cannot read the metrics");
            (StatusCode::SERVICE_UNAVAILABLE, "cannot read the metrics\n").into_response()
        }
    }
}

async fn latency(State(metrics): State<Metrics>, request: Request, next: Next) -> Response {
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    metrics.http_request(&method, response.status().as_u16(), started.elapsed());
    response
}
