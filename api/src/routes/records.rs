//! `/v1/records`: create, update, read and delete profile records.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use c360_domain::{IngestOutcome, IngestResult, Profile, RecordInput, RecordKey, RecordView};

use crate::app::AppState;
use crate::extract::JsonBody;
use crate::problem::{ApiError, Problem};

/// Create or update one profile record and resolve it.
///
/// Idempotent by `(source, source_id)`: the same record again changes nothing and answers the
/// same customer id; a newer `updated_at` updates it; an older one is ignored (`ignored_stale`).
/// Invalid fields are rejected with `422`, naming each field and the reason; nothing is stored.
#[utoipa::path(
    post,
    path = "/v1/records",
    tag = "records",
    request_body(content = RecordInput, description = "One profile record"),
    responses(
        (status = 201, description = "A new record, stored and resolved", body = IngestResult,
            example = json!({"record": {"source": "crm", "source_id": "C-1001"}, "customer_id": "cus_0192f0c1a3b87c3e9d1f2a4b5c6d7e8f", "outcome": "created_customer"})),
        (status = 200, description = "A known record: updated, unchanged or ignored as stale", body = IngestResult),
        (status = 400, description = "The body is not valid JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Read-only API key", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ())
)]
pub async fn upsert_record(
    State(state): State<AppState>,
    JsonBody(input): JsonBody<RecordInput>,
) -> Result<impl IntoResponse, ApiError> {
    let profile = Profile::parse(&input).map_err(ApiError::Invalid)?;
    let result = state.resolver.ingest(profile).await?;
    let outcome = serde_json::to_value(result.outcome)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    state.metrics.count_ingest(&outcome);
    let status = match result.outcome {
        IngestOutcome::CreatedCustomer
        | IngestOutcome::JoinedCustomer
        | IngestOutcome::MergedCustomers => StatusCode::CREATED,
        _ => StatusCode::OK,
    };
    Ok((status, Json(result)))
}

fn record_key(source: &str, source_id: &str) -> Result<RecordKey, ApiError> {
    RecordKey::parse(source, source_id).map_err(ApiError::BadRequest)
}

/// Read one record and the customer it belongs to.
#[utoipa::path(
    get,
    path = "/v1/records/{source}/{source_id}",
    tag = "records",
    params(
        ("source" = String, Path, description = "Source system", example = "crm"),
        ("source_id" = String, Path, description = "Record id in the source", example = "C-1001"),
    ),
    responses(
        (status = 200, description = "The record", body = RecordView),
        (status = 400, description = "Malformed key", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such record", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ())
)]
pub async fn get_record(
    State(state): State<AppState>,
    Path((source, source_id)): Path<(String, String)>,
) -> Result<Json<RecordView>, ApiError> {
    let key = record_key(&source, &source_id)?;
    Ok(Json(state.resolver.get_record(&key).await?))
}

/// Delete one record. Its customer is recomputed from the remaining records and links, and
/// splits when this record was the only bridge; a customer left without records is gone.
#[utoipa::path(
    delete,
    path = "/v1/records/{source}/{source_id}",
    tag = "records",
    params(
        ("source" = String, Path, description = "Source system", example = "crm"),
        ("source_id" = String, Path, description = "Record id in the source", example = "C-1001"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Malformed key", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Read-only API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such record", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ())
)]
pub async fn delete_record(
    State(state): State<AppState>,
    Path((source, source_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let key = record_key(&source, &source_id)?;
    state.resolver.delete(&key).await?;
    Ok(StatusCode::NO_CONTENT)
}
