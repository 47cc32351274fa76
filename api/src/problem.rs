//! The one place where errors become HTTP answers: `application/problem+json` (RFC 9457).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use c360_domain::{FieldError, ValidationErrors};
use c360_services::ServiceError;
use serde::Serialize;
use utoipa::ToSchema;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem document.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({
    "type": "urn:c360:problem:invalid-record",
    "title": "The record has invalid fields",
    "status": 422,
    "detail": "1 invalid field(s): email: not a valid email address: missing '@'",
    "errors": [{"field": "email", "reason": "not a valid email address: missing '@'"}]
}))]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// One entry per rejected field.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// Every way a request can fail, each mapped to one status and problem type.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    #[error("{0}")]
    Invalid(ValidationErrors),
    #[error("{0}")]
    BadRequest(ValidationErrors),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("the request body is larger than the limit (C360_MAX_BODY_BYTES)")]
    PayloadTooLarge,
    #[error("{0}")]
    NotFound(String),
    #[error("missing or unknown API key")]
    Unauthorized,
    #[error("this API key is read-only")]
    Forbidden,
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error")]
    Internal,
}

impl ApiError {
    pub fn invalid_field(field: &str, reason: impl Into<String>) -> Self {
        Self::Invalid(FieldError::new(field, reason).into())
    }

    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            Self::MalformedJson(_) => (
                StatusCode::BAD_REQUEST,
                "malformed-json",
                "The body is not valid JSON",
            ),
            Self::Invalid(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-record",
                "The record has invalid fields",
            ),
            Self::BadRequest(_) => (
                StatusCode::BAD_REQUEST,
                "invalid-request",
                "The request is invalid",
            ),
            Self::UnsupportedMediaType(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported content type",
            ),
            Self::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "The request body is too large",
            ),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not-found", "Not found"),
            Self::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Authentication required",
            ),
            Self::Forbidden => (StatusCode::FORBIDDEN, "forbidden", "Not allowed"),
            Self::Conflict(_) => (
                StatusCode::CONFLICT,
                "conflict",
                "Conflict with the current state",
            ),
            Self::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Service unavailable",
            ),
            Self::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal server error",
            ),
        }
    }

    pub fn problem(&self) -> Problem {
        let (status, slug, title) = self.parts();
        let errors = match self {
            Self::Invalid(e) | Self::BadRequest(e) => e.0.clone(),
            _ => Vec::new(),
        };
        Problem {
            kind: format!("urn:c360:problem:{slug}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: Some(self.to_string()),
            errors,
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> Self {
        match error {
            ServiceError::Invalid(e) => Self::Invalid(e),
            ServiceError::NotFound(what) => Self::NotFound(format!("{what} not found")),
            ServiceError::Conflict(why) => Self::Conflict(why),
            ServiceError::Unavailable(why) => Self::Unavailable(why),
            ServiceError::Store(e @ c360_services::StoreError::ViewStore(_)) => {
                tracing::error!(error = %e, "customer view store failure");
                Self::Unavailable("the customer view store cannot answer now; try again".into())
            }
            ServiceError::Store(e) => {
                // Store errors carry no PII: queries bind values, and messages name tables.
                tracing::error!(error = %e, "store failure");
                Self::Internal
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        problem_response(&self.problem())
    }
}

pub fn problem_response(problem: &Problem) -> Response {
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, axum::Json(problem)).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    response
}

/// A problem for a bare error status produced below the handlers (timeouts, 405s), so that
/// every error the API returns has the same shape.
pub fn problem_for_status(status: StatusCode) -> Problem {
    let title = status.canonical_reason().unwrap_or("Error").to_owned();
    let slug = title.to_lowercase().replace(' ', "-");
    Problem {
        kind: format!("urn:c360:problem:{slug}"),
        title,
        status: status.as_u16(),
        detail: None,
        errors: Vec::new(),
    }
}
