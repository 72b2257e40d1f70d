//! Drover's web UI. For now one server-rendered page that points to the API; the Leptos
//! application replaces it.

use axum::Router;
use axum::response::Html;
use axum::routing::get;

/// Routes of the web UI, to be merged into droverd's HTTP router.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/", get(index))
}

async fn index() -> Html<&'static str> {
    Html(include_str!("index.html"))
}
