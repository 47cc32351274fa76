//! The OpenAPI document, generated from the handlers' annotations.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{bulk, curation, customers, enrichment, ops, records};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "c360",
        description = "Customer-360 identity resolution: send profile records from every system, \
            get one single customer view per person.\n\nWhen the server runs with `C360_API_KEYS`, \
            every `/v1` call needs `Authorization: Bearer <key>` (Authorize button above).",
        license(name = "Apache-2.0")
    ),
    paths(
        records::upsert_record,
        records::get_record,
        records::delete_record,
        customers::get_customer,
        customers::find_customers,
        curation::customer_graph,
        curation::match_probe,
        curation::list_reviews,
        curation::decide_review,
        curation::add_link,
        curation::list_links,
        curation::undo_link,
        curation::large_customers,
        curation::incoherent_customers,
        bulk::upload,
        bulk::list_jobs,
        bulk::get_job,
        bulk::job_errors,
        bulk::export_assignments,
        bulk::export_customers,
        bulk::export_manual_links,
        enrichment::geocode,
        enrichment::block_group,
        enrichment::demographics,
        ops::healthz,
        ops::readyz,
        ops::metrics,
    ),
    components(schemas(crate::problem::Problem)),
    modifiers(&BearerAuth),
    tags(
        (name = "records", description = "Profile records from source systems"),
        (name = "customers", description = "The single customer view, its graph, and who-is-this matching"),
        (name = "curation", description = "Review queue and manual links"),
        (name = "bulk", description = "Bulk uploads, their jobs, and exports"),
        (name = "enrichment", description = "Geocoding, census block groups and demographic insights"),
        (name = "operations", description = "Health and metrics"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document as `c360 openapi` prints it and `openapi/openapi.json` stores it.
pub fn openapi_json() -> String {
    let mut text = ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    text.push('\n');
    text
}
