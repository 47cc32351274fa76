//! Request extractors whose rejections are problem documents naming the field at fault.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use c360_domain::{FieldError, ValidationErrors};
use serde::de::DeserializeOwned;

use crate::problem::ApiError;

/// A JSON body. Syntax errors are `400`; well-formed JSON of the wrong shape (a wrong type, an
/// unknown field) is `422` with the JSON path of the field.
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|mime| {
                let mime = mime.trim().to_ascii_lowercase();
                mime == "application/json" || mime.ends_with("+json")
            });
        if !is_json {
            return Err(ApiError::UnsupportedMediaType(
                "send the body as Content-Type: application/json".into(),
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::MalformedJson(rejection.body_text())
            }
        })?;
        // Every body of this API is an object; serde would otherwise read a struct from an
        // array by position, and blame a field named `[0]`.
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
            return Err(ApiError::invalid_field("body", "must be a JSON object"));
        }
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        let value = serde_path_to_error::deserialize(&mut de).map_err(|error| {
            let path = error.path().to_string();
            let inner = error.into_inner();
            match inner.classify() {
                serde_json::error::Category::Data => {
                    let field = if path == "." { "body".to_owned() } else { path };
                    ApiError::Invalid(ValidationErrors(vec![FieldError::new(
                        field,
                        strip_position(&inner.to_string()),
                    )]))
                }
                _ => ApiError::MalformedJson(inner.to_string()),
            }
        })?;
        // Trailing garbage after the document is a syntax error too.
        de.end()
            .map_err(|e| ApiError::MalformedJson(e.to_string()))?;
        Ok(Self(value))
    }
}

/// serde's messages end in " at line L column C", which says nothing the field path does not.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

/// Query parameters; a malformed query string is a `400` naming the parameter.
pub struct QueryParams<T>(pub T);

impl<S, T> FromRequestParts<S> for QueryParams<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        serde_urlencoded::from_str(query)
            .map(Self)
            .map_err(|error| {
                ApiError::BadRequest(ValidationErrors(vec![FieldError::new(
                    "query",
                    error.to_string(),
                )]))
            })
    }
}
