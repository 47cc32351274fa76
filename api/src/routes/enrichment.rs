//! Geo enrichment for exploration: geocode an address, read a census block group, and the
//! distribution of customers over a demographic figure (`/v1/geocode`, `/v1/census/...`,
//! `/v1/insights/demographics`).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::Json;
use c360_domain::{AddressInput, BlockGroup, BlockGroupReport, DemographicHistogram, Enrichment};
use c360_services::enrich::{parse_edges, Enricher};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::app::AppState;
use crate::extract::{JsonBody, QueryParams};
use crate::problem::{ApiError, Problem};

fn enricher(state: &AppState) -> Result<&Arc<Enricher>, ApiError> {
    state
        .resolver
        .enricher()
        .ok_or_else(|| ApiError::Unavailable("enrichment is not configured".into()))
}

/// Geocode an address and place it in its census block group, with the block group's ACS
/// figures: what enrichment would attach to a customer living there.
///
/// An address that cannot be located is not an error: the answer has precision `none` and the
/// reason. A `postal` (ZIP centroid) point is not placed in a block group.
#[utoipa::path(
    post,
    path = "/v1/geocode",
    tag = "enrichment",
    request_body(content = AddressInput, example = json!({
        "line1": "701 E Street Northeast", "city": "Washington", "state": "DC", "postal_code": "20002"
    })),
    responses(
        (status = 200, description = "Point, precision, block group and demographics", body = Enrichment),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown API key", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid or empty address", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The geocoder is unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ())
)]
pub async fn geocode(
    State(state): State<AppState>,
    JsonBody(input): JsonBody<AddressInput>,
) -> Result<Json<Enrichment>, ApiError> {
    let address = input
        .parse()
        .map_err(ApiError::Invalid)?
        .ok_or_else(|| ApiError::invalid_field("line1", "the address is empty"))?;
    Ok(Json(enricher(&state)?.describe(&address).await?))
}

/// A census block group: GEOID parts, ACS figures, land and water area, and how many
/// customers live in it.
#[utoipa::path(
    get,
    path = "/v1/census/blockgroups/{geoid}",
    tag = "enrichment",
    params(("geoid" = String, Path, description = "12-digit block group GEOID", example = "110010083021")),
    responses(
        (status = 200, description = "The block group", body = BlockGroupReport),
        (status = 400, description = "Not a 12-digit GEOID", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not in the loaded census data", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ())
)]
pub async fn block_group(
    State(state): State<AppState>,
    Path(geoid): Path<String>,
) -> Result<Json<BlockGroupReport>, ApiError> {
    if BlockGroup::from_geoid(&geoid, None).is_none() {
        return Err(ApiError::BadRequest(
            c360_domain::FieldError::new("geoid", "a block group GEOID is 12 digits").into(),
        ));
    }
    Ok(Json(enricher(&state)?.block_group(&geoid).await?))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct HistogramQuery {
    /// An ACS figure, e.g. `median_household_income`, `households_snap`,
    /// `pct_uninsured_age_19_64`.
    #[param(example = "median_household_income")]
    pub field: Option<String>,
    /// Ascending bin edges, comma-separated. Default: ten equal bins over the figure's range.
    #[param(example = "0,50000,100000,150000,200000")]
    pub bins: Option<String>,
}

/// How customers are distributed over one demographic figure of their block group: counts per
/// bin, plus customers without a block group or without a published value.
#[utoipa::path(
    get,
    path = "/v1/insights/demographics",
    tag = "enrichment",
    params(HistogramQuery),
    responses(
        (status = 200, description = "The histogram", body = DemographicHistogram),
        (status = 400, description = "Unknown query parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown API key", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Unknown field or bad bin edges", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ())
)]
pub async fn demographics(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<HistogramQuery>,
) -> Result<Json<DemographicHistogram>, ApiError> {
    let field = query
        .field
        .ok_or_else(|| ApiError::invalid_field("field", "name the demographic field"))?;
    let edges = query.bins.as_deref().map(parse_edges).transpose()?;
    Ok(Json(enricher(&state)?.histogram(&field, edges).await?))
}
