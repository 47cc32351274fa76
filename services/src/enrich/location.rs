//! The Amazon Location Service geocoder: `SearchPlaceIndexForText` on a place index through
//! the official SDK (`aws-sdk-location`), behind a circuit breaker.
//!
//! Throttling and 5xx answers are retried by the SDK's standard retry strategy (exponential
//! backoff with jitter). When failures last, the breaker opens: calls fail at once for a
//! cool-down, customers stay pending, and the enrichment worker tries again later. Ingest never
//! waits on this geocoder (see [`super::Enricher::after_write`]).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_sdk_location::config::interceptors::BeforeTransmitInterceptorContextMut;
use aws_sdk_location::config::retry::RetryConfig;
use aws_sdk_location::config::timeout::TimeoutConfig;
use aws_sdk_location::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_location::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_location::operation::search_place_index_for_text::SearchPlaceIndexForTextError;
use c360_domain::{GeoPrecision, Geocode, PostalAddress};

use super::{BoxFuture, GeocodeError, Geocoder};

pub const NAME: &str = "aws_location";

/// How to reach the place index.
#[derive(Debug, Clone)]
pub struct LocationSettings {
    /// The place index to search (`C360_LOCATION_PLACE_INDEX`).
    pub place_index: String,
    /// Region; default: the usual AWS configuration (`AWS_REGION`, profile).
    pub region: Option<String>,
    /// Endpoint override, e.g. a local server speaking the Location REST API. The usual
    /// `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_LOCATION` work too.
    pub endpoint: Option<String>,
    /// Static credentials; default: the usual AWS credential chain.
    pub credentials: Option<(String, String)>,
    /// Attempts per call, the first included (SDK standard retry: backoff with jitter).
    pub max_attempts: u32,
    /// First retry backoff; it grows exponentially.
    pub initial_backoff: Duration,
    /// Time allowed for one attempt.
    pub attempt_timeout: Duration,
    /// Consecutive failed calls that open the circuit breaker.
    pub breaker_failures: u32,
    /// How long the breaker stays open before one trial call is let through.
    pub breaker_cooldown: Duration,
}

impl LocationSettings {
    pub fn new(place_index: impl Into<String>) -> Self {
        Self {
            place_index: place_index.into(),
            region: None,
            endpoint: None,
            credentials: None,
            max_attempts: 4,
            initial_backoff: Duration::from_millis(200),
            attempt_timeout: Duration::from_secs(3),
            breaker_failures: 5,
            breaker_cooldown: Duration::from_secs(30),
        }
    }
}

/// Geocodes through Amazon Location Service.
pub struct LocationGeocoder {
    client: aws_sdk_location::Client,
    place_index: String,
    breaker: CircuitBreaker,
}

impl LocationGeocoder {
    /// Builds the SDK client from the usual AWS configuration and the settings.
    pub async fn connect(settings: LocationSettings) -> Self {
        let shared =
            crate::aws::shared_config(settings.region.as_deref(), settings.credentials.as_ref())
                .await;
        let mut config = aws_sdk_location::config::Builder::from(&shared)
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(settings.max_attempts.max(1))
                    .with_initial_backoff(settings.initial_backoff),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_attempt_timeout(settings.attempt_timeout)
                    .build(),
            );
        let endpoint = settings
            .endpoint
            .clone()
            .or_else(|| shared.endpoint_url().map(str::to_owned));
        if let Some(endpoint) = endpoint {
            // The SDK puts the modelled host prefix `places.` in front of every host, the
            // override's too: right for AWS, wrong for a server at 127.0.0.1.
            config = config
                .endpoint_url(&endpoint)
                .interceptor(DropHostPrefix { prefix: "places." });
        }
        Self {
            client: aws_sdk_location::Client::from_conf(config.build()),
            place_index: settings.place_index,
            breaker: CircuitBreaker::new(settings.breaker_failures, settings.breaker_cooldown),
        }
    }

    async fn search(&self, address: &PostalAddress) -> Result<Geocode, GeocodeError> {
        let text = [
            address.line1.as_deref(),
            address.city.as_deref(),
            address.state.as_deref(),
            address.postal_code.as_deref(),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(", ");
        let mut request = self
            .client
            .search_place_index_for_text()
            .index_name(&self.place_index)
            .text(text)
            .max_results(1);
        let us = address
            .country
            .as_ref()
            .is_none_or(|c| c.iso2() == Some("US"));
        if us {
            request = request.filter_countries("USA");
        }
        let output = match request.send().await {
            Ok(output) => output,
            Err(SdkError::ServiceError(e)) => {
                return match e.err() {
                    // The address itself was refused: no point, and no use retrying.
                    SearchPlaceIndexForTextError::ValidationException(v) => Ok(Geocode::none(
                        NAME,
                        format!("refused by the place index: {}", v.message()),
                    )),
                    other => Err(GeocodeError::Unavailable(format!(
                        "Amazon Location Service: {}",
                        other.code().unwrap_or("error")
                    ))),
                };
            }
            Err(other) => {
                return Err(GeocodeError::Unavailable(format!(
                    "Amazon Location Service: {}",
                    describe_sdk_error(&other)
                )))
            }
        };
        let Some(place) = output.results().first().and_then(|r| r.place()) else {
            return Ok(Geocode::none(NAME, "no match in the place index"));
        };
        let point = place.geometry().map(|g| g.point()).unwrap_or_default();
        let [lon, lat] = point else {
            return Ok(Geocode::none(NAME, "the match has no point"));
        };
        let (precision, reason) = if place.address_number().is_some() {
            let interpolated = place.interpolated().unwrap_or(false);
            (
                GeoPrecision::Rooftop,
                interpolated.then(|| "interpolated along the street".to_owned()),
            )
        } else if place.postal_code().is_some() || place.municipality().is_some() {
            (
                GeoPrecision::Postal,
                Some("matched an area, not a street address".to_owned()),
            )
        } else {
            return Ok(Geocode::none(NAME, "the match is not an address"));
        };
        Ok(Geocode {
            lat: Some(*lat),
            lon: Some(*lon),
            precision,
            geocoder: NAME.to_owned(),
            matched: place.label().map(str::to_owned),
            reason,
        })
    }
}

fn describe_sdk_error<E>(error: &SdkError<E>) -> &'static str {
    match error {
        SdkError::TimeoutError(_) => "timed out",
        SdkError::DispatchFailure(_) => "unreachable",
        SdkError::ResponseError(_) => "unreadable response",
        SdkError::ConstructionFailure(_) => "request could not be built",
        _ => "error",
    }
}

impl Geocoder for LocationGeocoder {
    fn name(&self) -> &'static str {
        NAME
    }

    fn is_local(&self) -> bool {
        false
    }

    fn geocode<'a>(
        &'a self,
        address: &'a PostalAddress,
    ) -> BoxFuture<'a, Result<Geocode, GeocodeError>> {
        Box::pin(async move {
            self.breaker.allow()?;
            let result = self.search(address).await;
            self.breaker.record(result.is_ok());
            result
        })
    }
}

/// Removes the modelled host prefix from requests to an endpoint override.
#[derive(Debug)]
struct DropHostPrefix {
    prefix: &'static str,
}

impl Intercept for DropHostPrefix {
    fn name(&self) -> &'static str {
        "DropHostPrefix"
    }

    fn modify_before_signing(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), aws_sdk_location::error::BoxError> {
        let request = context.request_mut();
        let uri = request.uri().to_owned();
        if let Some((scheme, rest)) = uri.split_once("://") {
            if let Some(stripped) = rest.strip_prefix(self.prefix) {
                request.set_uri(format!("{scheme}://{stripped}"))?;
            }
        }
        Ok(())
    }
}

/// Closed: calls go through. After `threshold` consecutive failures: open for `cooldown`,
/// calls fail at once. Then half-open: one trial call; success closes, failure re-opens.
#[derive(Debug)]
pub struct CircuitBreaker {
    threshold: u32,
    cooldown: Duration,
    state: Mutex<BreakerState>,
}

#[derive(Debug, Default)]
struct BreakerState {
    failures: u32,
    open_until: Option<Instant>,
    trial_running: bool,
}

impl CircuitBreaker {
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            cooldown,
            state: Mutex::new(BreakerState::default()),
        }
    }

    /// Whether a call may go out now.
    pub fn allow(&self) -> Result<(), GeocodeError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match state.open_until {
            None => Ok(()),
            Some(until) if Instant::now() < until => Err(GeocodeError::Unavailable(
                "circuit breaker open after repeated failures".into(),
            )),
            Some(_) if state.trial_running => Err(GeocodeError::Unavailable(
                "circuit breaker half-open: a trial call is running".into(),
            )),
            Some(_) => {
                state.trial_running = true;
                Ok(())
            }
        }
    }

    /// Records how a call that was allowed ended.
    pub fn record(&self, success: bool) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.trial_running = false;
        if success {
            *state = BreakerState::default();
            return;
        }
        state.failures += 1;
        if state.failures >= self.threshold || state.open_until.is_some() {
            state.open_until = Some(Instant::now() + self.cooldown);
            tracing::warn!(
                failures = state.failures,
                "geocoder circuit breaker open for {:?}",
                self.cooldown
            );
        }
    }

    pub fn is_open(&self) -> bool {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.open_until.is_some_and(|until| Instant::now() < until)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::enrich::fake_location::FakeLocation;

    pub(crate) fn settings(endpoint: &str) -> LocationSettings {
        LocationSettings {
            region: Some("us-east-1".into()),
            endpoint: Some(endpoint.to_owned()),
            credentials: Some(("AKIDTEST".into(), "secret".into())),
            initial_backoff: Duration::from_millis(10),
            attempt_timeout: Duration::from_secs(2),
            breaker_failures: 2,
            breaker_cooldown: Duration::from_millis(300),
            ..LocationSettings::new("c360-test-index")
        }
    }

    fn address() -> PostalAddress {
        PostalAddress {
            line1: Some("701 E St NE".into()),
            line2: None,
            city: Some("Washington".into()),
            state: Some("DC".into()),
            postal_code: Some("20002".into()),
            country: None,
        }
    }

    #[tokio::test]
    async fn a_street_address_comes_back_rooftop_through_the_sdk() {
        let server = FakeLocation::start().await;
        let geocoder = LocationGeocoder::connect(settings(&server.url())).await;
        let found = geocoder.geocode(&address()).await.unwrap();
        assert_eq!(found.precision, GeoPrecision::Rooftop);
        assert_eq!(found.geocoder, "aws_location");
        assert!((found.lon.unwrap() + 76.9959816).abs() < 1e-9);
        assert!((found.lat.unwrap() - 38.8959557).abs() < 1e-9);
        let seen = server.requests();
        assert_eq!(seen.len(), 1);
        // The REST shape of SearchPlaceIndexForText, host prefix dropped, SigV4-signed.
        assert_eq!(
            seen[0].path,
            "/places/v0/indexes/c360-test-index/search/text"
        );
        assert!(seen[0].host.starts_with("127.0.0.1:"), "{}", seen[0].host);
        assert!(seen[0]
            .authorization
            .starts_with("AWS4-HMAC-SHA256 Credential=AKIDTEST/"));
        let body: serde_json::Value = serde_json::from_str(&seen[0].body).unwrap();
        assert_eq!(body["Text"], "701 E St NE, Washington, DC, 20002");
        assert_eq!(body["FilterCountries"], serde_json::json!(["USA"]));
        assert_eq!(body["MaxResults"], 1);
    }

    #[tokio::test]
    async fn throttling_and_5xx_are_retried() {
        let server = FakeLocation::start().await;
        server.fail_next(&[429, 500]);
        let geocoder = LocationGeocoder::connect(settings(&server.url())).await;
        let found = geocoder.geocode(&address()).await.unwrap();
        assert_eq!(found.precision, GeoPrecision::Rooftop);
        assert_eq!(server.requests().len(), 3);
    }

    #[tokio::test]
    async fn a_lasting_outage_opens_the_breaker_which_recovers() {
        let server = FakeLocation::start().await;
        server.fail_always(503);
        let geocoder = LocationGeocoder::connect(settings(&server.url())).await;
        for _ in 0..2 {
            assert!(matches!(
                geocoder.geocode(&address()).await,
                Err(GeocodeError::Unavailable(_))
            ));
        }
        assert!(geocoder.breaker.is_open());
        let calls = server.requests().len();
        let err = geocoder.geocode(&address()).await.unwrap_err();
        assert!(err.to_string().contains("circuit breaker open"), "{err}");
        assert_eq!(
            server.requests().len(),
            calls,
            "an open breaker sends nothing"
        );
        server.recover();
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert!(geocoder.geocode(&address()).await.is_ok());
        assert!(!geocoder.breaker.is_open());
    }

    #[tokio::test]
    async fn validation_errors_and_empty_answers_are_precision_none() {
        let server = FakeLocation::start().await;
        server.fail_next(&[400]);
        let geocoder = LocationGeocoder::connect(settings(&server.url())).await;
        let refused = geocoder.geocode(&address()).await.unwrap();
        assert_eq!(refused.precision, GeoPrecision::None);
        assert!(refused.reason.unwrap().contains("refused"));
        let nowhere = PostalAddress {
            line1: Some("1 Nowhere".into()),
            ..address()
        };
        let none = geocoder.geocode(&nowhere).await.unwrap();
        assert_eq!(none.precision, GeoPrecision::None);
        assert_eq!(none.reason.as_deref(), Some("no match in the place index"));
    }

    #[test]
    fn the_breaker_lets_one_trial_through_when_half_open() {
        let breaker = CircuitBreaker::new(1, Duration::from_millis(0));
        breaker.allow().unwrap();
        breaker.record(false);
        breaker.allow().unwrap(); // cool-down over: the trial
        assert!(breaker.allow().is_err(), "only one trial at a time");
        breaker.record(true);
        breaker.allow().unwrap();
    }
}
