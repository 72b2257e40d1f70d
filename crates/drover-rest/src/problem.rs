//! Problem details (RFC 9457): every error the REST API returns.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use drover_service::ServiceError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An error response: `application/problem+json`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    /// What is wrong, for a person to read.
    pub detail: String,
    /// The input field at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl Problem {
    pub fn new(status: StatusCode, kind: &str, detail: impl Into<String>) -> Self {
        Self {
            kind: format!("https://drover.dev/problems/{kind}"),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            field: None,
        }
    }

    fn with_field(mut self, field: &str) -> Self {
        self.field = Some(field.to_owned());
        self
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        (
            status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body,
        )
            .into_response()
    }
}

impl From<ServiceError> for Problem {
    fn from(err: ServiceError) -> Self {
        let detail = err.to_string();
        match err {
            ServiceError::Unauthenticated(_) => {
                Problem::new(StatusCode::UNAUTHORIZED, "unauthenticated", detail)
            }
            ServiceError::PermissionDenied(_) => {
                Problem::new(StatusCode::FORBIDDEN, "permission-denied", detail)
            }
            ServiceError::NotFound { .. } => {
                Problem::new(StatusCode::NOT_FOUND, "not-found", detail)
            }
            ServiceError::InvalidArgument { field, .. } => {
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-argument", detail)
                    .with_field(field)
            }
            ServiceError::Conflict(_) => Problem::new(StatusCode::CONFLICT, "conflict", detail),
            ServiceError::FailedPrecondition(_) => {
                Problem::new(StatusCode::CONFLICT, "failed-precondition", detail)
            }
            ServiceError::ResourceExhausted(_) => {
                Problem::new(StatusCode::TOO_MANY_REQUESTS, "resource-exhausted", detail)
            }
            // 403: the caller may do this in general, but the tenant's plan does not allow
            // more; retrying will not help until usage drops or the plan changes.
            ServiceError::QuotaExceeded { .. } => {
                Problem::new(StatusCode::FORBIDDEN, "quota-exceeded", detail)
            }
            ServiceError::Unavailable(_) => {
                Problem::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", detail)
            }
            ServiceError::Internal(source) => {
                tracing::error!(error = %source, "internal error in a REST call");
                Problem::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error",
                )
            }
        }
    }
}

impl From<JsonRejection> for Problem {
    fn from(rejection: JsonRejection) -> Self {
        let status = match &rejection {
            JsonRejection::MissingJsonContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            JsonRejection::JsonDataError(_) => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::BAD_REQUEST,
        };
        Problem::new(status, "invalid-body", rejection.body_text())
    }
}

impl From<QueryRejection> for Problem {
    fn from(rejection: QueryRejection) -> Self {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-query",
            rejection.body_text(),
        )
    }
}

impl From<PathRejection> for Problem {
    fn from(rejection: PathRejection) -> Self {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-path",
            rejection.body_text(),
        )
    }
}

pub(crate) async fn not_found_route(uri: axum::http::Uri) -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "no-such-route",
        format!("there is no API route {}", uri.path()),
    )
}
