use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use drover_service::{Drover, RequestContext};

use crate::problem::Problem;

/// The authenticated caller of a request.
pub struct Caller(pub RequestContext);

impl FromRequestParts<Drover> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, drover: &Drover) -> Result<Self, Problem> {
        let bearer = match parts.headers.get(AUTHORIZATION) {
            None => None,
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
                Some(text)
            }
        };
        Ok(Caller(drover.authenticate(bearer).await?))
    }
}
