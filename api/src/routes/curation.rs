//! Review queue, manual links, and explanations (`/v1/reviews`, `/v1/links`,
//! `/v1/customers/{id}/graph`, `/v1/match`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use c360_domain::{
    CustomerGraph, CustomerId, FieldError, ManualLink, ManualLinkKind, MatchResult, Profile,
    RecordInput, RecordKey, ReviewItem, ReviewStatus, ValidationErrors,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::app::AppState;
use crate::extract::{JsonBody, QueryParams};
use crate::problem::{ApiError, Problem};

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ReviewQuery {
    /// `open` (default), `accepted`, `rejected`, `obsolete` or `all`.
    #[param(example = "open")]
    pub status: Option<String>,
    /// At most this many items (1-1000, default 100).
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReviewList {
    pub reviews: Vec<ReviewItem>,
}

/// List review items: pairs whose score fell in the review band, or links a guard rail held
/// back.
#[utoipa::path(
    get,
    path = "/v1/reviews",
    tag = "curation",
    params(ReviewQuery),
    responses(
        (status = 200, description = "Review items, newest first", body = ReviewList),
        (status = 400, description = "Unknown status", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown API key", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ())
)]
pub async fn list_reviews(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<ReviewQuery>,
) -> Result<Json<ReviewList>, ApiError> {
    let status = match query.status.as_deref().unwrap_or("open") {
        "all" => None,
        name => Some(ReviewStatus::from_name(name).ok_or_else(|| {
            ApiError::BadRequest(
                FieldError::new("status", "one of open, accepted, rejected, obsolete, all").into(),
            )
        })?),
    };
    let reviews = state
        .resolver
        .list_reviews(status, query.limit.unwrap_or(100))
        .await?;
    Ok(Json(ReviewList { reviews }))
}

/// A person's verdict on a review item.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"decision": "accept", "note": "same customer, confirmed by phone"}))]
pub struct ReviewDecision {
    /// `accept`: the same person (a must-link is made); `reject`: different persons (a
    /// cannot-link is made).
    pub decision: ReviewChoice,
    pub note: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReviewChoice {
    Accept,
    Reject,
}

/// Accept or reject a review item.
#[utoipa::path(
    post,
    path = "/v1/reviews/{review_id}",
    tag = "curation",
    params(("review_id" = String, Path, description = "Review item id")),
    request_body = ReviewDecision,
    responses(
        (status = 200, description = "The decided item", body = ReviewItem),
        (status = 401, description = "Missing or unknown API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Read-only API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such review item (or one of its records is gone)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already decided", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid decision", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ())
)]
pub async fn decide_review(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ReviewDecision>,
) -> Result<Json<ReviewItem>, ApiError> {
    let same = matches!(body.decision, ReviewChoice::Accept);
    Ok(Json(
        state.resolver.decide_review(&id, same, body.note).await?,
    ))
}

/// A record named in a link request.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordRef {
    #[schema(example = "crm")]
    pub source: String,
    #[schema(example = "C-1001")]
    pub source_id: String,
}

/// A manual decision about two records.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "kind": "cannot_link",
    "a": {"source": "crm", "source_id": "C-1001"},
    "b": {"source": "pos", "source_id": "P-77"},
    "note": "father and son share the address"
}))]
pub struct NewManualLink {
    pub kind: ManualLinkKind,
    pub a: RecordRef,
    pub b: RecordRef,
    pub note: Option<String>,
}

fn record_key(field: &str, r: &RecordRef) -> Result<RecordKey, ApiError> {
    RecordKey::parse(&r.source, &r.source_id).map_err(|errors| {
        ApiError::Invalid(ValidationErrors(
            errors.0.into_iter().map(|e| e.under(field)).collect(),
        ))
    })
}

/// Link two records by hand: `must_link` merges their customers (guard rails do not apply),
/// `cannot_link` keeps them in different customers from now on (splitting one if needed).
/// Honoured by every later resolution; undo with `DELETE /v1/links/{id}`.
#[utoipa::path(
    post,
    path = "/v1/links",
    tag = "curation",
    request_body = NewManualLink,
    responses(
        (status = 201, description = "The link, applied", body = ManualLink),
        (status = 401, description = "Missing or unknown API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Read-only API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "A record does not exist", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The opposite link exists", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid request", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ())
)]
pub async fn add_link(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<NewManualLink>,
) -> Result<(StatusCode, Json<ManualLink>), ApiError> {
    let a = record_key("a", &body.a)?;
    let b = record_key("b", &body.b)?;
    if body.note.as_ref().is_some_and(|n| n.chars().count() > 500) {
        return Err(ApiError::invalid_field(
            "note",
            "longer than 500 characters",
        ));
    }
    let link = state
        .resolver
        .add_manual_link(body.kind, a, b, body.note)
        .await?;
    Ok((StatusCode::CREATED, Json(link)))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LinkQuery {
    /// Only links touching this record: `source/source_id`.
    #[param(example = "crm/C-1001")]
    pub record: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ManualLinkList {
    pub links: Vec<ManualLink>,
}

/// List manual links, newest first (undone ones included, with `undone_at`).
#[utoipa::path(
    get,
    path = "/v1/links",
    tag = "curation",
    params(LinkQuery),
    responses(
        (status = 200, description = "Manual links", body = ManualLinkList),
        (status = 400, description = "Malformed record", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown API key", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ())
)]
pub async fn list_links(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<LinkQuery>,
) -> Result<Json<ManualLinkList>, ApiError> {
    let record = match query.record.as_deref() {
        None => None,
        Some(raw) => {
            let (source, source_id) = raw.split_once('/').ok_or_else(|| {
                ApiError::BadRequest(FieldError::new("record", "expected source/source_id").into())
            })?;
            let r = RecordRef {
                source: source.to_owned(),
                source_id: source_id.to_owned(),
            };
            Some(record_key("record", &r).map_err(|e| match e {
                ApiError::Invalid(errors) => ApiError::BadRequest(errors),
                other => other,
            })?)
        }
    };
    let links = state.resolver.list_manual_links(record.as_ref()).await?;
    Ok(Json(ManualLinkList { links }))
}

/// Undo a manual link: the records' customers are recomputed from the remaining evidence.
#[utoipa::path(
    delete,
    path = "/v1/links/{link_id}",
    tag = "curation",
    params(("link_id" = String, Path, description = "Manual link id")),
    responses(
        (status = 200, description = "The link, now undone", body = ManualLink),
        (status = 401, description = "Missing or unknown API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Read-only API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such link", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already undone", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ())
)]
pub async fn undo_link(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ManualLink>, ApiError> {
    Ok(Json(state.resolver.undo_manual_link(&id).await?))
}

/// A customer's identity graph: records as nodes, links as edges with the evidence of each
/// (rule, or per-field comparison levels and weights, or a person's decision).
#[utoipa::path(
    get,
    path = "/v1/customers/{customer_id}/graph",
    tag = "customers",
    params(("customer_id" = String, Path, description = "Customer id")),
    responses(
        (status = 200, description = "The graph", body = CustomerGraph),
        (status = 400, description = "Malformed customer id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such customer", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ())
)]
pub async fn customer_graph(
    State(state): State<AppState>,
    Path(raw_id): Path<String>,
) -> Result<Json<CustomerGraph>, ApiError> {
    let id = CustomerId::parse(&raw_id).map_err(|e| ApiError::BadRequest(e.into()))?;
    Ok(Json(state.resolver.customer_graph(&id).await?))
}

/// Who is this? Score a probe record against the store without storing anything: the best
/// candidates with the engine's verdict and field-by-field evidence, and the customer it would
/// join. `source` and `source_id` may be left out.
#[utoipa::path(
    post,
    path = "/v1/match",
    tag = "customers",
    request_body(content = RecordInput, example = json!({
        "first_name": "Bob", "last_name": "Smith", "date_of_birth": "1984-07-12",
        "postal_code": "62704"
    })),
    responses(
        (status = 200, description = "Candidates, strongest first", body = MatchResult),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown API key", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ())
)]
pub async fn match_probe(
    State(state): State<AppState>,
    JsonBody(mut input): JsonBody<RecordInput>,
) -> Result<Json<MatchResult>, ApiError> {
    // A probe needs no identity of its own; one that is not stored never matches itself.
    input.source.get_or_insert_with(|| "probe".to_owned());
    input.source_id.get_or_insert_with(|| "probe".to_owned());
    let profile = Profile::parse(&input).map_err(ApiError::Invalid)?;
    Ok(Json(state.resolver.match_probe(&profile).await?))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LargeCustomerQuery {
    /// Customers with at least this many records (default: the configured
    /// `max_customer_records`).
    #[param(example = 50)]
    pub min_records: Option<i64>,
    /// At most this many customers (1-1000, default 100).
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CustomerSummaryList {
    pub customers: Vec<c360_domain::CustomerSummary>,
}

/// Suspiciously large customers, largest first: a customer with far more records than a person
/// has is usually a chain of wrong links and deserves a look (its graph shows the links).
#[utoipa::path(
    get,
    path = "/v1/reports/large-customers",
    tag = "curation",
    params(LargeCustomerQuery),
    responses(
        (status = 200, description = "Large customers", body = CustomerSummaryList),
        (status = 400, description = "Malformed query", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown API key", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ())
)]
pub async fn large_customers(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<LargeCustomerQuery>,
) -> Result<Json<CustomerSummaryList>, ApiError> {
    let min = query.min_records.unwrap_or_else(|| {
        i64::try_from(state.resolver.engine().config().max_customer_records).unwrap_or(i64::MAX)
    });
    let customers = state
        .resolver
        .large_customers(min, query.limit.unwrap_or(100))
        .await?;
    Ok(Json(CustomerSummaryList { customers }))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct IncoherentCustomerQuery {
    /// At most this many customers (1-1000, default 100).
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IncoherentCustomerList {
    pub customers: Vec<c360_domain::IncoherentCustomer>,
}

/// Customers that hold two records a guard rail says are different people, most recently
/// changed first: usually a `must_link` the evidence contradicts (different first names and
/// birth dates, two loyalty cards). Each names the first conflicting pair and the guard; the
/// customer's graph shows the links that joined them.
#[utoipa::path(
    get,
    path = "/v1/reports/incoherent-customers",
    tag = "curation",
    params(IncoherentCustomerQuery),
    responses(
        (status = 200, description = "Incoherent customers", body = IncoherentCustomerList),
        (status = 400, description = "Malformed query", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown API key", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ())
)]
pub async fn incoherent_customers(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<IncoherentCustomerQuery>,
) -> Result<Json<IncoherentCustomerList>, ApiError> {
    let customers = state
        .resolver
        .incoherent_customers(query.limit.unwrap_or(100))
        .await?;
    Ok(Json(IncoherentCustomerList { customers }))
}
