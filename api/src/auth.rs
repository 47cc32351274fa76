//! API keys: `C360_API_KEYS=key1:rw,key2:ro`. Read-only keys may only read.

use std::str::FromStr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header::AUTHORIZATION, Method};
use axum::middleware::Next;
use axum::response::Response;

use crate::problem::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    ReadOnly,
    ReadWrite,
}

#[derive(Clone)]
pub struct ApiKeys(Arc<Vec<(String, Access)>>);

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the keys themselves.
        write!(f, "ApiKeys({} keys)", self.0.len())
    }
}

impl FromStr for ApiKeys {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut keys = Vec::new();
        for (i, entry) in s
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .enumerate()
        {
            let (key, access) = entry
                .rsplit_once(':')
                .ok_or_else(|| format!("entry {}: expected key:rw or key:ro", i + 1))?;
            let access = match access {
                "rw" => Access::ReadWrite,
                "ro" => Access::ReadOnly,
                _ => return Err(format!("entry {}: access must be rw or ro", i + 1)),
            };
            if key.len() < 8 {
                return Err(format!(
                    "entry {}: a key needs at least 8 characters",
                    i + 1
                ));
            }
            keys.push((key.to_owned(), access));
        }
        if keys.is_empty() {
            return Err("no keys given".into());
        }
        Ok(Self(Arc::new(keys)))
    }
}

/// Compares in time independent of where the strings differ, so response times reveal nothing
/// about a key.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl ApiKeys {
    pub fn access(&self, presented: &str) -> Option<Access> {
        self.0
            .iter()
            .find(|(key, _)| constant_time_eq(key.as_bytes(), presented.as_bytes()))
            .map(|(_, access)| *access)
    }
}

/// Checks the bearer key of every request it wraps; a no-op when no keys are configured.
pub async fn require_key(
    State(keys): State<Option<ApiKeys>>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let Some(keys) = keys else {
        return Ok(next.run(request).await);
    };
    let presented = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let access = presented
        .and_then(|key| keys.access(key))
        .ok_or(ApiError::Unauthorized)?;
    let reads = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if access == Access::ReadOnly && !reads {
        return Err(ApiError::Forbidden);
    }
    Ok(next.run(request).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_keys_with_access() {
        let keys: ApiKeys = "writer-key-1:rw, reader-key-1:ro".parse().unwrap();
        assert_eq!(keys.access("writer-key-1"), Some(Access::ReadWrite));
        assert_eq!(keys.access("reader-key-1"), Some(Access::ReadOnly));
        assert_eq!(keys.access("reader-key-2"), None);
        assert!("short:rw".parse::<ApiKeys>().is_err());
        assert!("writer-key-1:admin".parse::<ApiKeys>().is_err());
        assert!("writer-key-1".parse::<ApiKeys>().is_err());
        assert!(!format!("{keys:?}").contains("writer"));
    }
}
