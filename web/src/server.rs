//! droverd's half of the UI: the routes (pages, server functions, the bundle, live events and
//! downloads), the caller of each request, and the form parsing the server functions share.

use std::path::PathBuf;
use std::time::Duration;

use axum::Router;
use axum::extract::{FromRef, Path, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE, HOST, ORIGIN, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use drover_model::{
    CONTROL_PLANE_SET, ClassSize, ClusterSpec, ConfigPatch, MachineClassAllocation, MachineSetSpec,
    Role,
};
use drover_service::{Credential, Drover, RequestContext};
use futures::Stream;
use leptos::config::LeptosOptions;
use leptos::prelude::*;
use leptos_axum::{LeptosRoutes, generate_route_list};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::api::{UiError, UiErrorKind};
use crate::app::{App, shell};
use crate::components::url_encode;
use drover_rest::cookie;

/// The cookie holding the API token a browser signed in with (when there is no OpenID login).
pub const TOKEN_COOKIE: &str = "drover_token";

/// How droverd serves the UI.
#[derive(Debug, Clone)]
pub struct WebSettings {
    /// Where `scripts/build-web` put the bundle (`pkg/drover_web.js`, `.wasm`, `.css`). Pages
    /// render without it; they just are not interactive.
    pub site_root: PathBuf,
    /// Whether cookies get the `Secure` attribute (droverd is reached over https).
    pub secure_cookies: bool,
}

#[derive(Clone)]
struct WebState {
    leptos: LeptosOptions,
    drover: Drover,
    changes: broadcast::Sender<Change>,
    secure_cookies: bool,
}

impl FromRef<WebState> for LeptosOptions {
    fn from_ref(state: &WebState) -> Self {
        state.leptos.clone()
    }
}

/// A tenant's machines or clusters changed (from PostgreSQL notifications, so changes made by
/// any replica reach every browser).
#[derive(Debug, Clone)]
struct Change {
    tenant: String,
}

/// The UI's routes, to be merged into droverd's HTTP router.
pub fn router(drover: Drover, settings: WebSettings, cancel: CancellationToken) -> Router {
    let leptos = LeptosOptions::builder()
        .output_name("drover_web")
        .site_root(settings.site_root.display().to_string())
        .site_pkg_dir("pkg")
        .build();
    let (changes, _) = broadcast::channel(256);
    tokio::spawn(listen_for_changes(drover.clone(), changes.clone(), cancel));
    let state = WebState {
        leptos: leptos.clone(),
        drover: drover.clone(),
        changes,
        secure_cookies: settings.secure_cookies,
    };
    let routes = generate_route_list(App);
    let context_drover = drover.clone();
    Router::new()
        .leptos_routes_with_context(
            &state,
            routes,
            move || provide_context(context_drover.clone()),
            move || shell(leptos.clone()),
        )
        .route("/ui/style.css", get(stylesheet))
        .route("/ui/events", get(events))
        .route("/ui/sign-in/token", post(sign_in_with_token))
        .route("/ui/sign-out", post(sign_out))
        .route("/ui/switch-tenant", post(switch_tenant))
        .route("/ui/clusters/{name}/kubeconfig", get(kubeconfig))
        .route("/ui/clusters/{name}/talosconfig", post(talosconfig))
        .nest_service(
            "/pkg",
            tower_http::services::ServeDir::new(settings.site_root.join("pkg")),
        )
        .with_state(state)
}

/// The stylesheet, compiled in so pages look right before (or without) the bundle.
async fn stylesheet() -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../style/drover.css"),
    )
}

/// The request's credential: the session cookie, else the API token cookie.
fn credential(headers: &HeaderMap) -> Credential<'_> {
    if let Some(secret) = cookie(headers, drover_service::login::SESSION_COOKIE) {
        // Changes are guarded by the same-origin check instead of the X-CSRF-Token header,
        // which a plain HTML form cannot send.
        return Credential::Session {
            secret,
            csrf_token: None,
            changes_state: false,
        };
    }
    cookie(headers, TOKEN_COOKIE).map_or(Credential::None, Credential::Bearer)
}

/// Whether the request comes from a page of this site: the browser says so in
/// `Sec-Fetch-Site`, or its `Origin` names this host. Cookies alone never authorise a change.
fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return site == "same-origin";
    }
    let host = headers.get(HOST).and_then(|h| h.to_str().ok());
    let origin = headers.get(ORIGIN).and_then(|o| o.to_str().ok());
    match (host, origin) {
        (Some(host), Some(origin)) => origin
            .split_once("://")
            .is_some_and(|(_, authority)| authority == host),
        _ => false,
    }
}

async fn authenticate(
    drover: &Drover,
    headers: &HeaderMap,
    changes: bool,
) -> Result<RequestContext, UiError> {
    if changes && !same_origin(headers) {
        return Err(UiError::new(
            UiErrorKind::Denied,
            "this change did not come from a Drover page (cross-site request refused)",
        ));
    }
    Ok(drover.authenticate(credential(headers)).await?)
}

/// The service and the signed-in caller of a server function that only reads.
pub(crate) async fn caller() -> Result<(Drover, RequestContext), UiError> {
    caller_of(false).await
}

/// Like [`caller`], for a server function that changes something.
pub(crate) async fn changing_caller() -> Result<(Drover, RequestContext), UiError> {
    caller_of(true).await
}

async fn caller_of(changes: bool) -> Result<(Drover, RequestContext), UiError> {
    let drover = use_context::<Drover>()
        .ok_or_else(|| UiError::new(UiErrorKind::Failed, "the UI has no service"))?;
    let parts = use_context::<axum::http::request::Parts>()
        .ok_or_else(|| UiError::new(UiErrorKind::Failed, "no request"))?;
    let ctx = authenticate(&drover, &parts.headers, changes).await?;
    Ok((drover, ctx))
}

/// Forwards PostgreSQL's change notifications (channels `drover_machines`, `drover_clusters`) to
/// the browsers' event streams until `cancel`.
async fn listen_for_changes(
    drover: Drover,
    changes: broadcast::Sender<Change>,
    cancel: CancellationToken,
) {
    loop {
        let listened = async {
            let mut listener =
                sqlx::postgres::PgListener::connect_with(drover.store().pool()).await?;
            listener
                .listen_all(["drover_machines", "drover_clusters"])
                .await?;
            loop {
                let note = listener.recv().await?;
                let tenant = note.payload().split('/').next().unwrap_or_default();
                // Nobody listening is fine.
                let _ = changes.send(Change {
                    tenant: tenant.to_owned(),
                });
            }
            #[allow(unreachable_code)]
            Ok::<(), sqlx::Error>(())
        };
        tokio::select! {
            () = cancel.cancelled() => return,
            result = listened => {
                if let Err(error) = result {
                    tracing::warn!(%error, "the UI's change listener stopped; retrying");
                }
            }
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Server-sent events telling the page to refresh: `change` when the caller's tenant's machines
/// or clusters changed (coalesced), and at least every few seconds while anything may be in
/// motion (connections time out without a row changing).
async fn events(
    State(state): State<WebState>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, std::convert::Infallible>>>, Response> {
    let ctx = authenticate(&state.drover, &headers, false)
        .await
        .map_err(|e| (StatusCode::UNAUTHORIZED, e.message).into_response())?;
    let tenant = ctx.tenant().to_string();
    let receiver = state.changes.subscribe();
    let stream = futures::stream::unfold((receiver, tenant), |(mut receiver, tenant)| async move {
        let deadline = tokio::time::sleep(Duration::from_secs(5));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                () = &mut deadline => break,
                received = receiver.recv() => match received {
                    Ok(change) if change.tenant == tenant => {
                        // Coalesce a burst (a provisioning wave) into one refresh.
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        while receiver.try_recv().is_ok() {}
                        break;
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
            }
        }
        // Browsers drop events without data.
        Some((
            Ok(Event::default().event("change").data("changed")),
            (receiver, tenant),
        ))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

#[derive(serde::Deserialize)]
struct TokenForm {
    token: String,
}

/// Signs the browser in with an API token or service-account key (for installations without an
/// OpenID provider): the token is checked, then kept in an HttpOnly cookie.
async fn sign_in_with_token(
    State(state): State<WebState>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<TokenForm>,
) -> Response {
    if !same_origin(&headers) {
        return (StatusCode::FORBIDDEN, "cross-site request refused").into_response();
    }
    let token = form.token.trim();
    if let Err(error) = state.drover.authenticate(Credential::Bearer(token)).await {
        let message = UiError::from(error).message;
        let query: String = url_encode(&message);
        return Redirect::to(&format!("/login?error={query}")).into_response();
    }
    let secure = if state.secure_cookies { "; Secure" } else { "" };
    let cookie = format!("{TOKEN_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict{secure}");
    let mut response = Redirect::to("/").into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(SET_COOKIE, value);
    }
    response
}

/// Signs the browser out: ends its session (then on to the identity provider's logout when it
/// has one) and forgets an API token it signed in with.
async fn sign_out(State(state): State<WebState>, headers: HeaderMap) -> Response {
    if !same_origin(&headers) {
        return (StatusCode::FORBIDDEN, "cross-site request refused").into_response();
    }
    let mut target = "/login".to_owned();
    if let Some(secret) = cookie(&headers, drover_service::login::SESSION_COOKIE)
        && let Ok(ctx) = state.drover.authenticate(credential(&headers)).await
    {
        match state.drover.logout(&ctx, secret).await {
            Ok(out) => target = out.provider_logout_url.unwrap_or(target),
            Err(error) => tracing::warn!(%error, "ending a session failed"),
        }
    }
    let mut response = Redirect::to(&target).into_response();
    for name in [TOKEN_COOKIE, drover_service::login::SESSION_COOKIE] {
        let cookie = format!("{name}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0");
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(SET_COOKIE, value);
        }
    }
    response
}

#[derive(serde::Deserialize)]
struct SwitchForm {
    tenant: String,
}

/// Moves the browser's session to another tenant of the same person.
async fn switch_tenant(
    State(state): State<WebState>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<SwitchForm>,
) -> Response {
    let result = async {
        let ctx = authenticate(&state.drover, &headers, true).await?;
        let secret = cookie(&headers, drover_service::login::SESSION_COOKIE).ok_or_else(|| {
            UiError::new(
                UiErrorKind::Invalid,
                "only a browser session can switch tenants",
            )
        })?;
        let to = form
            .tenant
            .parse()
            .map_err(|_| invalid("tenant", format!("{:?} is not a tenant id", form.tenant)))?;
        state.drover.switch_tenant(&ctx, secret, to).await?;
        Ok::<_, UiError>(())
    }
    .await;
    match result {
        Ok(()) => Redirect::to("/").into_response(),
        Err(error) => (error_status(error.kind), error.message).into_response(),
    }
}

/// A kubeconfig for the cluster through Drover's Kubernetes proxy, authenticated by the `drover`
/// CLI's current login (`drover kube-token`), as `drover kubeconfig` writes it.
async fn kubeconfig(
    State(state): State<WebState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let ctx = authenticate(&state.drover, &headers, false).await?;
        let endpoint = state.drover.kube_proxy_endpoint(&ctx, &name).await?;
        let plugin = drover_model::ExecPlugin {
            command: "drover".into(),
            args: vec!["kube-token".into()],
            env: Vec::new(),
        };
        let config = endpoint.kubeconfig(&format!("drover-{name}"), &plugin);
        serde_yaml_ng::to_string(&config)
            .map_err(|e| UiError::new(UiErrorKind::Failed, e.to_string()))
    }
    .await;
    download(result, &format!("{name}-kubeconfig.yaml"))
}

/// Issues a talosconfig (a client certificate of Drover's Talos API proxy) for the caller.
async fn talosconfig(
    State(state): State<WebState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let ctx = authenticate(&state.drover, &headers, true).await?;
        let issued = state.drover.issue_talosconfig(&ctx, &name, None).await?;
        Ok::<_, UiError>(issued.talosconfig)
    }
    .await;
    download(result, &format!("{name}-talosconfig.yaml"))
}

fn download(result: Result<String, UiError>, file_name: &str) -> Response {
    match result {
        Ok(body) => (
            [
                (CONTENT_TYPE, "application/yaml".to_owned()),
                (
                    CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{file_name}\""),
                ),
            ],
            body,
        )
            .into_response(),
        Err(error) => (error_status(error.kind), error.message).into_response(),
    }
}

fn error_status(kind: UiErrorKind) -> StatusCode {
    match kind {
        UiErrorKind::SignedOut => StatusCode::UNAUTHORIZED,
        UiErrorKind::Denied => StatusCode::FORBIDDEN,
        UiErrorKind::NotFound => StatusCode::NOT_FOUND,
        UiErrorKind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
        UiErrorKind::Conflict => StatusCode::CONFLICT,
        UiErrorKind::Failed => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn invalid(field: &str, message: impl Into<String>) -> UiError {
    let message = message.into();
    let mut error = UiError::new(UiErrorKind::Invalid, format!("{field}: {message}"));
    error.fields.push((field.to_owned(), message));
    error
}

/// When something made now should expire: empty = never, else a duration such as `30d`.
pub(crate) fn expiry(field: &str, text: &str) -> Result<Option<DateTime<Utc>>, UiError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let duration = humantime::parse_duration(text).map_err(|e| {
        invalid(
            field,
            format!("{text:?} is not a duration such as 30d: {e}"),
        )
    })?;
    let duration = chrono::Duration::from_std(duration)
        .map_err(|_| invalid(field, format!("{text:?} is too long")))?;
    Ok(Some(Utc::now() + duration))
}

pub(crate) fn role(field: &str, text: &str) -> Result<Role, UiError> {
    text.parse().map_err(|_| {
        invalid(
            field,
            format!("{text:?} is not a role: reader, operator or admin"),
        )
    })
}

/// The fields of the create-cluster form.
pub(crate) struct ClusterForm<'a> {
    pub name: &'a str,
    pub talos_version: &'a str,
    pub kubernetes_version: &'a str,
    pub control_plane_class: &'a str,
    pub control_planes: &'a str,
    pub worker_class: &'a str,
    pub workers: &'a str,
}

fn class_size(field: &str, text: &str) -> Result<ClassSize, UiError> {
    serde_json::from_value(serde_json::Value::String(text.trim().to_owned())).map_err(|_| {
        invalid(
            field,
            format!("{text:?} is not a number of machines or unlimited"),
        )
    })
}

/// The spec the create-cluster form describes: control planes and (optionally) workers, each
/// taken from a machine class.
pub(crate) fn form_spec(form: &ClusterForm<'_>) -> Result<ClusterSpec, UiError> {
    let set = |name: &str, class: &str, size: ClassSize| MachineSetSpec {
        name: name.to_owned(),
        machines: Vec::new(),
        machine_class: Some(MachineClassAllocation {
            name: class.trim().to_owned(),
            size,
        }),
        update_strategy: Default::default(),
        delete_strategy: Default::default(),
        patches: Vec::new(),
    };
    let control_planes = class_size("controlPlane.machineClass.size", form.control_planes)?;
    let mut workers = Vec::new();
    if !form.worker_class.trim().is_empty() {
        let size = class_size("workers[0].machineClass.size", form.workers)?;
        workers.push(set("workers", form.worker_class, size));
    }
    Ok(ClusterSpec {
        name: form.name.trim().to_owned(),
        // People write versions with and without the `v`; specs hold them without.
        talos_version: form.talos_version.trim().trim_start_matches('v').to_owned(),
        kubernetes_version: form
            .kubernetes_version
            .trim()
            .trim_start_matches('v')
            .to_owned(),
        control_plane: set(CONTROL_PLANE_SET, form.control_plane_class, control_planes),
        workers,
        patches: Vec::new(),
        machines: Vec::new(),
    })
}

/// Every problem of a spec, each at its field.
pub(crate) fn check_spec(spec: &ClusterSpec) -> Result<(), UiError> {
    drover_template::validate_spec(spec).map_err(|errors| {
        let mut error = UiError::new(UiErrorKind::Invalid, errors.to_string());
        error.fields = errors.0.into_iter().map(|e| (e.field, e.message)).collect();
        error
    })
}

/// A pasted template (no `file:` patches: there are no files next to it).
pub(crate) fn parse_template(text: &str) -> Result<ClusterSpec, UiError> {
    let no_files = |path: &str| -> Result<String, String> {
        Err(format!(
            "{path}: a pasted template cannot read files; put the patch inline"
        ))
    };
    drover_template::parse(text, &no_files).map_err(|errors| {
        let mut error = UiError::new(UiErrorKind::Invalid, errors.to_string());
        error.fields = errors
            .0
            .into_iter()
            .map(|e| {
                let mut place = e.document;
                if let Some(line) = e.line {
                    place.push_str(&format!(", line {line}"));
                }
                if let Some(field) = e.field {
                    place.push_str(&format!(", {field}"));
                }
                (place, e.message)
            })
            .collect();
        error
    })
}

/// Sets the size a machine set takes from its class.
pub(crate) fn scale(spec: &mut ClusterSpec, set: &str, size: &str) -> Result<(), UiError> {
    let size = class_size("size", size)?;
    let target = if set == CONTROL_PLANE_SET {
        Some(&mut spec.control_plane)
    } else {
        spec.workers.iter_mut().find(|w| w.name == set)
    };
    let target =
        target.ok_or_else(|| invalid("set", format!("there is no machine set {set:?}")))?;
    let class = target.machine_class.as_mut().ok_or_else(|| {
        invalid(
            "size",
            format!("machine set {set:?} lists its machines: edit the template to change them"),
        )
    })?;
    class.size = size;
    check_spec(spec)
}

/// Config patches as a YAML list of `{name, weight, content}`.
pub(crate) fn parse_patches(text: &str) -> Result<Vec<ConfigPatch>, UiError> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    serde_yaml_ng::from_str(text).map_err(|e| {
        invalid(
            "patches",
            format!("not a list of patches (name, weight, content): {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_need_a_same_origin_request() {
        let mut headers = HeaderMap::new();
        assert!(!same_origin(&headers));
        headers.insert(HOST, HeaderValue::from_static("drover.example:8080"));
        headers.insert(ORIGIN, HeaderValue::from_static("http://evil.example"));
        assert!(!same_origin(&headers));
        headers.insert(
            ORIGIN,
            HeaderValue::from_static("http://drover.example:8080"),
        );
        assert!(same_origin(&headers));
        headers.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(!same_origin(&headers));
        headers.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        assert!(same_origin(&headers));
    }

    #[test]
    fn the_form_makes_a_spec_and_bad_sizes_name_their_field() {
        let form = ClusterForm {
            name: "prod",
            talos_version: "v1.13.0",
            kubernetes_version: "1.34.1",
            control_plane_class: "cp",
            control_planes: "3",
            worker_class: "",
            workers: "",
        };
        let spec = form_spec(&form).unwrap();
        assert_eq!(spec.control_plane.name, CONTROL_PLANE_SET);
        assert_eq!(
            spec.control_plane.machine_class.as_ref().unwrap().size,
            ClassSize::Count(3)
        );
        assert!(spec.workers.is_empty());
        let bad = ClusterForm {
            worker_class: "w",
            workers: "many",
            ..form
        };
        let error = form_spec(&bad).unwrap_err();
        assert!(error.field("workers[0].machineClass.size").is_some());
    }

    #[test]
    fn template_errors_are_listed_by_document_and_field() {
        let error = parse_template("kind: Cluster\nname: x\n").unwrap_err();
        assert_eq!(error.kind, UiErrorKind::Invalid);
        assert!(!error.fields.is_empty());
        assert!(error.fields[0].0.contains("document"), "{:?}", error.fields);
    }
}
