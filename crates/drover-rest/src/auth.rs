use axum::extract::FromRequestParts;
use axum::http::header::{AUTHORIZATION, COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode};
use drover_service::login::SESSION_COOKIE;
use drover_service::{Credential, Drover, RequestContext};

use crate::problem::Problem;

/// The header a cookie-authenticated request that changes something must carry.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The authenticated caller of a request: from `Authorization: Bearer`, or else the session
/// cookie (with the CSRF check for anything but GET and HEAD, done by the service).
pub struct Caller(pub RequestContext);

impl FromRequestParts<Drover> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, drover: &Drover) -> Result<Self, Problem> {
        let credential = match parts.headers.get(AUTHORIZATION) {
            Some(value) => {
                let text = value
                    .to_str()
                    .ok()
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .ok_or_else(|| {
                        Problem::new(
                            StatusCode::UNAUTHORIZED,
                            "unauthenticated",
                            "the Authorization header must be `Bearer <token>`",
                        )
                    })?;
                Credential::Bearer(text)
            }
            None => match cookie(&parts.headers, SESSION_COOKIE) {
                Some(secret) => Credential::Session {
                    secret,
                    csrf_token: parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()),
                    changes_state: !matches!(parts.method, Method::GET | Method::HEAD),
                },
                None => Credential::None,
            },
        };
        Ok(Caller(drover.authenticate(credential).await?))
    }
}

/// The session cookie's secret, when the request carries one.
pub struct SessionCookie(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for SessionCookie {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(SessionCookie(
            cookie(&parts.headers, SESSION_COOKIE).map(str::to_owned),
        ))
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.trim_matches('"'))
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_by_exact_name_across_headers() {
        let mut headers = HeaderMap::new();
        headers.append(COOKIE, "a=1; drover_session_x=no".parse().unwrap());
        headers.append(COOKIE, "b=2;drover_session=yes".parse().unwrap());
        assert_eq!(cookie(&headers, "drover_session"), Some("yes"));
        assert_eq!(cookie(&headers, "a"), Some("1"));
        assert_eq!(cookie(&headers, "c"), None);
        headers.append(COOKIE, "empty=".parse().unwrap());
        assert_eq!(cookie(&headers, "empty"), None);
    }
}
