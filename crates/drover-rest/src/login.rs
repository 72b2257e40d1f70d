//! Browser login: `/auth/login`, `/auth/callback`, `/auth/logout` (redirects and cookies, so
//! not part of the JSON API document), and `GET /api/v1/me`.

use axum::Json;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header::{LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use drover_model::Me;
use drover_service::login::{LOGIN_COOKIE, LOGIN_TTL, SESSION_COOKIE};
use drover_service::{Callback, Drover};
use secrecy::ExposeSecret;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Caller, SessionCookie, cookie};
use crate::problem::Problem;

pub(crate) fn api_routes() -> OpenApiRouter<Drover> {
    OpenApiRouter::new().routes(routes!(me))
}

pub(crate) fn browser_routes() -> Router<Drover> {
    Router::new()
        .route("/auth/login", get(login))
        .route("/auth/callback", get(callback))
        .route("/auth/logout", post(logout))
}

/// Who am I: the caller's user or API token, tenant and role. For a browser session, also the
/// CSRF token that requests changing something must send as `X-CSRF-Token`.
#[utoipa::path(
    get,
    path = "/api/v1/me",
    tag = "identity",
    responses(
        (status = 200, description = "The caller", body = Me),
        (status = 401, description = "No valid API token or session", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn me(
    State(drover): State<Drover>,
    Caller(ctx): Caller,
    SessionCookie(session): SessionCookie,
) -> Json<Me> {
    Json(drover.me(&ctx, session.as_deref()))
}

/// Starts a login: redirects to the identity provider, binding the login to this browser.
async fn login(State(drover): State<Drover>) -> Result<Response, Problem> {
    let start = drover.begin_login().await?;
    let secure = secure_cookies(&drover);
    let mut headers = HeaderMap::new();
    headers.insert(LOCATION, header_value(&start.redirect_to)?);
    headers.append(
        SET_COOKIE,
        header_value(&set_cookie(
            LOGIN_COOKIE,
            start.browser_binding.expose_secret(),
            "/auth",
            LOGIN_TTL.as_secs(),
            secure,
        ))?,
    );
    Ok((StatusCode::SEE_OTHER, headers).into_response())
}

/// The provider's redirect back: opens a session and sends the browser to the start page.
async fn callback(
    State(drover): State<Drover>,
    request_headers: HeaderMap,
    query: Result<Query<Callback>, QueryRejection>,
) -> Response {
    let secure = secure_cookies(&drover);
    let clear_login = set_cookie(LOGIN_COOKIE, "", "/auth", 0, secure);
    let outcome = async {
        let Query(params) = query?;
        let session = drover
            .finish_login(params, cookie(&request_headers, LOGIN_COOKIE))
            .await?;
        let ttl = (session.expires_at - chrono::Utc::now())
            .num_seconds()
            .max(0);
        // A CLI login under way continues at the page that allows the CLI.
        let next = if cookie(&request_headers, crate::cli_login::CLI_COOKIE).is_some() {
            crate::cli_login::AUTHORIZE_PATH.to_owned()
        } else {
            start_page(&drover)
        };
        let mut headers = HeaderMap::new();
        headers.insert(LOCATION, header_value(&next)?);
        headers.append(
            SET_COOKIE,
            header_value(&set_cookie(
                SESSION_COOKIE,
                session.secret.expose_secret(),
                "/",
                ttl.unsigned_abs(),
                secure,
            ))?,
        );
        Ok::<_, Problem>(headers)
    }
    .await;
    match outcome {
        Ok(mut headers) => {
            if let Ok(v) = HeaderValue::from_str(&clear_login) {
                headers.append(SET_COOKIE, v);
            }
            (StatusCode::SEE_OTHER, headers).into_response()
        }
        // The login cookie stays: a forged callback must not cancel the real one.
        Err(problem) => problem.into_response(),
    }
}

/// Ends the session (it needs the CSRF token like any change) and redirects to the provider's
/// end-session endpoint when it has one, else to the start page.
async fn logout(
    State(drover): State<Drover>,
    Caller(ctx): Caller,
    SessionCookie(session): SessionCookie,
) -> Result<Response, Problem> {
    let Some(secret) = session else {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "no-session",
            "there is no session cookie to end; API tokens are revoked instead",
        ));
    };
    let out = drover.logout(&ctx, &secret).await?;
    let target = out
        .provider_logout_url
        .unwrap_or_else(|| start_page(&drover).to_string());
    let mut headers = HeaderMap::new();
    headers.insert(LOCATION, header_value(&target)?);
    headers.append(
        SET_COOKIE,
        header_value(&set_cookie(
            SESSION_COOKIE,
            "",
            "/",
            0,
            secure_cookies(&drover),
        ))?,
    );
    Ok((StatusCode::SEE_OTHER, headers).into_response())
}

pub(crate) fn start_page(drover: &Drover) -> String {
    drover
        .oidc_settings()
        .map_or_else(|| "/".to_owned(), |s| s.public_url.to_string())
}

pub(crate) fn secure_cookies(drover: &Drover) -> bool {
    drover.oidc_settings().is_some_and(|s| s.secure_cookies())
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Lax, Secure under https; max-age 0 removes it.
pub(crate) fn set_cookie(
    name: &str,
    value: &str,
    path: &str,
    max_age: u64,
    secure: bool,
) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}")
}

pub(crate) fn header_value(text: &str) -> Result<HeaderValue, Problem> {
    HeaderValue::from_str(text).map_err(|_| {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "a header value is not valid",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_http_only_lax_and_secure_under_tls() {
        assert_eq!(
            set_cookie("drover_session", "abc", "/", 60, true),
            "drover_session=abc; Path=/; Max-Age=60; HttpOnly; SameSite=Lax; Secure"
        );
        assert_eq!(
            set_cookie("drover_login", "", "/auth", 0, false),
            "drover_login=; Path=/auth; Max-Age=0; HttpOnly; SameSite=Lax"
        );
    }
}
