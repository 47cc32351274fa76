//! The router: routes, middleware, Swagger UI.

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{delete, get, post};
use axum::Router;
use std::sync::Arc;

use c360_services::jobs::Jobs;
use c360_services::Resolver;
use tower_http::timeout::TimeoutLayer;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use crate::auth::require_key;
use crate::config::ServeConfig;
use crate::metrics::{track, Metrics};
use crate::openapi::ApiDoc;
use crate::problem::{problem_for_status, problem_response, ApiError};
use crate::routes::{bulk, curation, customers, enrichment, ops, records};

#[derive(Clone)]
pub struct AppState {
    pub resolver: Resolver,
    pub jobs: Arc<Jobs>,
    pub metrics: Metrics,
    pub max_upload_bytes: u64,
}

pub fn router(state: AppState, config: &ServeConfig) -> Router {
    let v1 = Router::new()
        .route("/v1/records", post(records::upsert_record))
        .route(
            "/v1/records/{source}/{source_id}",
            get(records::get_record).delete(records::delete_record),
        )
        .route("/v1/customers", get(customers::find_customers))
        .route("/v1/customers/{customer_id}", get(customers::get_customer))
        .route(
            "/v1/customers/{customer_id}/graph",
            get(curation::customer_graph),
        )
        .route("/v1/match", post(curation::match_probe))
        .route("/v1/reviews", get(curation::list_reviews))
        .route("/v1/reviews/{review_id}", post(curation::decide_review))
        .route(
            "/v1/links",
            get(curation::list_links).post(curation::add_link),
        )
        .route("/v1/links/{link_id}", delete(curation::undo_link))
        .route(
            "/v1/reports/large-customers",
            get(curation::large_customers),
        )
        .route(
            "/v1/reports/incoherent-customers",
            get(curation::incoherent_customers),
        )
        .route("/v1/geocode", post(enrichment::geocode))
        .route(
            "/v1/census/blockgroups/{geoid}",
            get(enrichment::block_group),
        )
        .route("/v1/insights/demographics", get(enrichment::demographics))
        .route("/v1/jobs", get(bulk::list_jobs))
        .route("/v1/jobs/{job_id}", get(bulk::get_job))
        .route("/v1/jobs/{job_id}/errors", get(bulk::job_errors))
        .route("/v1/exports/assignments", get(bulk::export_assignments))
        .route("/v1/exports/customers", get(bulk::export_customers))
        .route("/v1/exports/manual-links", get(bulk::export_manual_links))
        .route_layer(middleware::from_fn_with_state(
            config.api_keys.clone(),
            require_key,
        ));
    // Uploads of several GB take longer than any request timeout and are bounded by
    // C360_MAX_UPLOAD_BYTES instead of the JSON body limit.
    let uploads = Router::new()
        .route("/v1/bulk", post(bulk::upload))
        .layer(DefaultBodyLimit::disable())
        .route_layer(middleware::from_fn_with_state(
            config.api_keys.clone(),
            require_key,
        ));
    let open = Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics));

    let timed = Router::new()
        .merge(v1)
        .merge(open)
        .merge(SwaggerUi::new("/swagger-ui").url("/api-docs/openapi.json", ApiDoc::openapi()))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            config.request_timeout(),
        ));
    Router::new()
        .merge(uploads)
        .merge(timed)
        .with_state(state.clone())
        .layer(middleware::from_fn(problem_for_bare_errors))
        .layer(middleware::from_fn_with_state(state.metrics, track))
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".into())
}

async fn method_not_allowed() -> Response {
    problem_response(&problem_for_status(StatusCode::METHOD_NOT_ALLOWED))
}

/// Errors produced below the handlers (timeouts, body limits outside an extractor) come with an
/// empty body; give them the same problem shape as every other error.
async fn problem_for_bare_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let bare = response.headers().get(header::CONTENT_TYPE).is_none();
    if !(status.is_client_error() || status.is_server_error()) || !bare {
        return response;
    }
    let (mut parts, _) = response.into_parts();
    let replacement = problem_response(&problem_for_status(status));
    parts.headers.extend(replacement.headers().clone());
    Response::from_parts(parts, replacement.into_body())
}
