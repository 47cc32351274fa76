//! Prometheus metrics: requests by route and status, latency, ingest outcomes, store sizes.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use c360_services::resolver::StoreCounts;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    ingests: IntCounterVec,
    records: IntGauge,
    customers: IntGauge,
    enrichment_pending: IntGauge,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "c360_http_requests_total",
                "HTTP requests by route and status",
            ),
            &["method", "route", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new("c360_http_request_duration_seconds", "HTTP request latency")
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0,
                ]),
            &["method", "route"],
        )?;
        let ingests = IntCounterVec::new(
            Opts::new("c360_ingested_records_total", "Ingested records by outcome"),
            &["outcome"],
        )?;
        let records = IntGauge::new("c360_records", "Records stored")?;
        let customers = IntGauge::new("c360_customers", "Customers (not counting merged ids)")?;
        let enrichment_pending = IntGauge::new(
            "c360_enrichment_pending",
            "Customers whose golden address waits for the geocoder",
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(ingests.clone()))?;
        registry.register(Box::new(records.clone()))?;
        registry.register(Box::new(customers.clone()))?;
        registry.register(Box::new(enrichment_pending.clone()))?;
        Ok(Self {
            registry,
            requests,
            latency,
            ingests,
            records,
            customers,
            enrichment_pending,
        })
    }

    pub fn count_ingest(&self, outcome: &str) {
        self.ingests.with_label_values(&[outcome]).inc();
    }

    /// The text exposition, with the store sizes as of now.
    pub fn render(&self, counts: &StoreCounts) -> String {
        self.records.set(counts.records);
        self.customers.set(counts.customers);
        self.enrichment_pending.set(counts.enrichment_pending);
        let mut buffer = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buffer) {
            tracing::error!(error = %e, "metrics encoding failed");
        }
        String::from_utf8(buffer).unwrap_or_default()
    }
}

/// Records every request under its route template (never the raw path or query, which may
/// hold identifiers), and logs it at info level.
pub async fn track(State(metrics): State<Metrics>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16().to_string();
    metrics
        .requests
        .with_label_values(&[&method, &route, &status])
        .inc();
    metrics
        .latency
        .with_label_values(&[&method, &route])
        .observe(elapsed.as_secs_f64());
    tracing::info!(
        method,
        route,
        status = response.status().as_u16(),
        micros = elapsed.as_micros() as u64,
        "request"
    );
    response
}
