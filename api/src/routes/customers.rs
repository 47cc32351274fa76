//! `/v1/customers`: the single customer view, by id or by identifier.

use axum::extract::{Path, State};
use axum::Json;
use c360_domain::{CustomerId, CustomerView, FieldError, IdentifierKind, ValidationErrors};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::app::AppState;
use crate::extract::QueryParams;
use crate::problem::{ApiError, Problem};

/// Read a customer: golden record, member records, identifiers, enrichment, version.
///
/// An id absorbed by a merge still answers, with the surviving customer and `resolved_from`
/// set to the id asked for.
#[utoipa::path(
    get,
    path = "/v1/customers/{customer_id}",
    tag = "customers",
    params(("customer_id" = String, Path, description = "Customer id", example = "cus_0192f0c1a3b87c3e9d1f2a4b5c6d7e8f")),
    responses(
        (status = 200, description = "The single customer view", body = CustomerView),
        (status = 400, description = "Malformed customer id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such customer", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ())
)]
pub async fn get_customer(
    State(state): State<AppState>,
    Path(raw_id): Path<String>,
) -> Result<Json<CustomerView>, ApiError> {
    let id = CustomerId::parse(&raw_id).map_err(|e| ApiError::BadRequest(e.into()))?;
    Ok(Json(state.resolver.get_customer(&id).await?))
}

/// Exactly one identifier to look customers up by. Values are normalized as at ingest:
/// `(555) 123-4567` finds `+15551234567`, `Bob@Example.COM` finds `bob@example.com`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LookupQuery {
    #[param(example = "bob.smith@example.com")]
    pub email: Option<String>,
    #[param(example = "(555) 123-4567")]
    pub phone: Option<String>,
    pub loyalty_id: Option<String>,
    pub device_id: Option<String>,
    pub cookie_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CustomerList {
    /// The customers carrying the identifier (usually one; several when records sharing it
    /// were kept apart).
    pub customers: Vec<CustomerView>,
}

/// Look customers up by one identifier.
#[utoipa::path(
    get,
    path = "/v1/customers",
    tag = "customers",
    params(LookupQuery),
    responses(
        (status = 200, description = "Customers carrying the identifier (possibly none)", body = CustomerList),
        (status = 400, description = "Not exactly one identifier given", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown API key", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The identifier is malformed", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ())
)]
pub async fn find_customers(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<LookupQuery>,
) -> Result<Json<CustomerList>, ApiError> {
    let given: Vec<(IdentifierKind, String)> = [
        (IdentifierKind::Email, query.email),
        (IdentifierKind::Phone, query.phone),
        (IdentifierKind::LoyaltyId, query.loyalty_id),
        (IdentifierKind::DeviceId, query.device_id),
        (IdentifierKind::CookieId, query.cookie_id),
    ]
    .into_iter()
    .filter_map(|(kind, value)| value.map(|v| (kind, v)))
    .collect();
    let [(kind, value)] = given.as_slice() else {
        return Err(ApiError::BadRequest(ValidationErrors(vec![
            FieldError::new(
                "query",
                "give exactly one of email, phone, loyalty_id, device_id, cookie_id",
            ),
        ])));
    };
    let customers = state.resolver.find_customers(*kind, value).await?;
    Ok(Json(CustomerList { customers }))
}
