//! `drover login` through the browser (see `drover_service::cli_login` for the whole flow):
//! `GET /auth/cli` starts it, the browser login follows, `GET|POST /auth/cli/authorize` asks the
//! person to allow the CLI and hands its loopback listener a one-time code, and
//! `POST /api/v1/auth/cli/token` exchanges the code (or a refresh token) for a credential.

use axum::Json;
use axum::Router;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::header::{CONTENT_TYPE, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use drover_model::CliCredential;
use drover_service::cli_login::check_challenge;
use drover_service::login::SESSION_COOKIE;
use drover_service::{Credential, Drover};
use secrecy::ExposeSecret;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::cookie;
use crate::login::{header_value, secure_cookies, set_cookie};
use crate::problem::Problem;

/// Carries `PORT.CHALLENGE` through the browser login.
pub(crate) const CLI_COOKIE: &str = "drover_cli";
/// Where the person allows the CLI.
pub(crate) const AUTHORIZE_PATH: &str = "/auth/cli/authorize";
/// How long a CLI login may take in the browser.
const CLI_COOKIE_TTL: u64 = 10 * 60;

pub(crate) fn api_routes() -> OpenApiRouter<Drover> {
    OpenApiRouter::new().routes(routes!(cli_token))
}

pub(crate) fn browser_routes() -> Router<Drover> {
    Router::new()
        .route("/auth/cli", get(start))
        .route(AUTHORIZE_PATH, get(authorize_page).post(authorize))
}

#[derive(Debug, Deserialize)]
struct Start {
    port: u16,
    challenge: String,
}

/// Remembers the CLI's port and challenge, then continues with the browser login (or, with a
/// session already, straight at the page that allows the CLI).
async fn start(
    State(drover): State<Drover>,
    headers: HeaderMap,
    query: Result<Query<Start>, QueryRejection>,
) -> Result<Response, Problem> {
    let Query(start) = query?;
    if start.port < 1024 {
        return Err(drover_service::ServiceError::invalid(
            "port",
            "must be the CLI's loopback port (1024-65535)",
        )
        .into());
    }
    check_challenge(&start.challenge)?;
    let logged_in = match cookie(&headers, SESSION_COOKIE) {
        Some(secret) => drover
            .authenticate(Credential::Session {
                secret,
                csrf_token: None,
                changes_state: false,
            })
            .await
            .is_ok(),
        None => false,
    };
    let next = if logged_in {
        AUTHORIZE_PATH
    } else {
        "/auth/login"
    };
    let mut out = HeaderMap::new();
    out.insert(LOCATION, header_value(next)?);
    out.append(
        SET_COOKIE,
        header_value(&set_cookie(
            CLI_COOKIE,
            &format!("{}.{}", start.port, start.challenge),
            "/auth",
            CLI_COOKIE_TTL,
            secure_cookies(&drover),
        ))?,
    );
    Ok((StatusCode::SEE_OTHER, out).into_response())
}

/// The CLI login under way in this browser: (port, challenge).
fn cli_login(headers: &HeaderMap) -> Result<(u16, String), Problem> {
    cookie(headers, CLI_COOKIE)
        .and_then(|v| v.split_once('.'))
        .and_then(|(port, challenge)| Some((port.parse().ok()?, challenge.to_owned())))
        .ok_or_else(|| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "no-cli-login",
                "no CLI login is under way in this browser: run drover login again",
            )
        })
}

fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [(CONTENT_TYPE, "text/html; charset=utf-8")],
        format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width\"><title>Drover CLI login</title>\
             </head><body style=\"font-family:sans-serif;max-width:32rem;margin:4rem auto\">{body}</body></html>"
        ),
    )
        .into_response()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Asks the logged-in person to allow the CLI (a form, CSRF-protected like any change).
async fn authorize_page(State(drover): State<Drover>, headers: HeaderMap) -> Response {
    let page = async {
        let (port, _) = cli_login(&headers)?;
        let secret = cookie(&headers, SESSION_COOKIE).unwrap_or_default();
        let ctx = drover
            .authenticate(Credential::Session {
                secret,
                csrf_token: None,
                changes_state: false,
            })
            .await?;
        let me = drover.me(&ctx, Some(secret));
        let csrf = me.csrf_token.unwrap_or_default();
        let who = match ctx.principal() {
            drover_service::Principal::User { email, .. } => email.clone(),
            other => other.actor(),
        };
        Ok::<_, Problem>(format!(
            "<h1>Allow the drover CLI?</h1>\
             <p>The <code>drover</code> command waiting on port {port} of this computer will act as \
             <strong>{}</strong> with your role. Allow it only if you just ran <code>drover login</code>.</p>\
             <form method=\"post\" action=\"{AUTHORIZE_PATH}\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <button type=\"submit\" name=\"decision\" value=\"allow\">Allow</button> \
             <button type=\"submit\" name=\"decision\" value=\"deny\">Cancel</button></form>",
            escape(&who),
            escape(&csrf),
        ))
    }
    .await;
    match page {
        Ok(body) => html(StatusCode::OK, body),
        Err(problem) => problem.into_response(),
    }
}

/// The answer to the page: on "allow", a one-time code for the CLI's loopback listener.
async fn authorize(State(drover): State<Drover>, headers: HeaderMap, body: String) -> Response {
    let outcome = async {
        let (port, challenge) = cli_login(&headers)?;
        let form: Vec<(String, String)> = url::form_urlencoded::parse(body.as_bytes())
            .into_owned()
            .collect();
        let field = |name: &str| {
            form.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let secret = cookie(&headers, SESSION_COOKIE).unwrap_or_default();
        let ctx = drover
            .authenticate(Credential::Session {
                secret,
                csrf_token: Some(field("csrf").unwrap_or_default()),
                changes_state: true,
            })
            .await?;
        let target = if field("decision") == Some("allow") {
            let code = drover.authorize_cli(&ctx, &challenge).await?;
            let code: String =
                url::form_urlencoded::byte_serialize(code.0.expose_secret().as_bytes()).collect();
            format!("http://127.0.0.1:{port}/callback?code={code}")
        } else {
            format!("http://127.0.0.1:{port}/callback?error=access_denied")
        };
        let mut out = HeaderMap::new();
        out.insert(LOCATION, header_value(&target)?);
        out.append(
            SET_COOKIE,
            header_value(&set_cookie(
                CLI_COOKIE,
                "",
                "/auth",
                0,
                secure_cookies(&drover),
            ))?,
        );
        Ok::<_, Problem>(out)
    }
    .await;
    match outcome {
        Ok(out) => (StatusCode::SEE_OTHER, out).into_response(),
        Err(problem) => problem.into_response(),
    }
}

/// What the CLI exchanges: its one-time code with the verifier, or a refresh token.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct CliTokenRequest {
    code: Option<String>,
    verifier: Option<String>,
    refresh_token: Option<String>,
}

/// The CLI's credential: for the one-time code its loopback listener received (with the
/// verifier of its challenge), or for a refresh token (used up; a new one comes back).
#[utoipa::path(
    post,
    path = "/api/v1/auth/cli/token",
    tag = "identity",
    security(()),
    request_body = CliTokenRequest,
    responses(
        (status = 200, description = "A bearer token and a refresh token", body = CliCredential),
        (status = 400, description = "Neither a code with its verifier nor a refresh token", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Unknown, used or expired code or refresh token, or a wrong verifier", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn cli_token(
    State(drover): State<Drover>,
    body: Result<Json<CliTokenRequest>, JsonRejection>,
) -> Result<Json<CliCredential>, Problem> {
    let Json(req) = body?;
    let credential = match (req.code, req.verifier, req.refresh_token) {
        (Some(code), Some(verifier), None) => drover.exchange_cli_code(&code, &verifier).await?,
        (None, None, Some(refresh)) => drover.refresh_cli_login(&refresh).await?,
        _ => {
            return Err(drover_service::ServiceError::invalid(
                "body",
                "send either `code` with `verifier`, or `refreshToken`",
            )
            .into());
        }
    };
    Ok(Json(credential))
}
