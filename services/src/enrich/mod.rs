//! Enrichment of the single customer view: geocode the golden address, find the census block
//! group that contains the point, attach that block group's ACS figures.
//!
//! Enrichment follows the golden address, not the records: `refresh_customer` stores the
//! normalized golden address as `enrichment_key` and marks the customer pending only when that
//! key changes. The [`Enricher`] then works the pending customers off: inline right after the
//! write for the embedded (local) geocoder, in a background worker for a remote one, so that a
//! slow or failing geocoder never blocks ingest. A customer whose geocoding failed stays
//! pending and is retried by the worker; nothing is lost.

pub mod accuracy;
pub mod bench;
pub mod census;
pub mod data;
#[cfg(test)]
mod fake_location;
pub mod location;
pub mod offline;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use c360_domain::{
    BlockGroupReport, CustomerId, DemographicHistogram, Enrichment, EnrichmentStatus, GeoPrecision,
    Geocode, GoldenRecord, HistogramBin, PostalAddress,
};
use c360_matching::normalize::address::{postal_code, region, street_address};
use c360_matching::normalize::name::fold;
use sqlx::Row;
use tokio::sync::Notify;

use crate::error::ServiceError;
use crate::resolver::{now_millis, to_json, to_time};
use crate::store::{
    execute_json_rows, json_rows, json_rows_param, Database, JSON_ROWS_PER_STATEMENT,
};

pub use census::CensusIndex;
pub use offline::OfflineGeocoder;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A data file that cannot be used: which file, where in it, and why. Raised at start.
#[derive(Debug, thiserror::Error)]
#[error("{file}, {location}: {reason}")]
pub struct DataFileError {
    pub file: String,
    pub location: String,
    pub reason: String,
}

impl DataFileError {
    pub fn at(file: &str, location: &str, reason: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            location: location.to_owned(),
            reason: reason.into(),
        }
    }

    pub fn io(path: &std::path::Path, error: std::io::Error) -> Self {
        Self::at(&path.display().to_string(), "file", error.to_string())
    }
}

/// Why a geocoder gave no answer. An address it cannot find is not an error (that is a
/// [`Geocode`] with precision `none`); these are the failures to try again later.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GeocodeError {
    /// The geocoder is unreachable, throttling, failing, or its circuit breaker is open.
    #[error("geocoder unavailable: {0}")]
    Unavailable(String),
}

/// The geocoder port: an address in, a point with its precision out.
pub trait Geocoder: Send + Sync {
    /// `offline`, `aws_location`: recorded on every result.
    fn name(&self) -> &'static str;
    /// A local geocoder answers in microseconds and never fails: enrichment can run inline
    /// and needs no cache.
    fn is_local(&self) -> bool;
    fn geocode<'a>(
        &'a self,
        address: &'a PostalAddress,
    ) -> BoxFuture<'a, Result<Geocode, GeocodeError>>;
}

/// The normalized form of an address as far as geocoding is concerned (the unit does not move
/// the point): equal keys geocode the same. `None` when nothing locatable is left.
pub fn address_key(address: &PostalAddress) -> Option<String> {
    let street = address
        .line1
        .as_deref()
        .map(street_address)
        .unwrap_or_default();
    let parts = [
        street.house_number.unwrap_or_default(),
        street.street.unwrap_or_default(),
        address.city.as_deref().map(fold).unwrap_or_default(),
        address
            .state
            .as_deref()
            .and_then(region)
            .unwrap_or_default(),
        address
            .postal_code
            .as_deref()
            .and_then(postal_code)
            .unwrap_or_default(),
        address
            .country
            .as_ref()
            .map(|c| c.iso2().unwrap_or(c.as_str()).to_owned())
            .unwrap_or_default(),
    ];
    if parts[1..5].iter().all(String::is_empty) {
        return None;
    }
    Some(parts.join("|"))
}

/// The census index from files, or the embedded sample area when a path is not given.
pub fn load_census(
    blockgroups: Option<&std::path::Path>,
    acs: Option<&std::path::Path>,
) -> Result<CensusIndex, DataFileError> {
    let areas = match blockgroups {
        Some(path) => census::read_areas_file(path)?,
        None => census::read_geojson(data::BLOCKGROUPS_GEOJSON, "embedded blockgroups.geojson")?,
    };
    match acs {
        Some(path) => {
            let bytes = std::fs::read(path).map_err(|e| DataFileError::io(path, e))?;
            CensusIndex::new(areas, &bytes, &path.display().to_string())
        }
        None => CensusIndex::new(areas, data::ACS_CSV, "embedded acs_blockgroups.csv"),
    }
}

/// The offline geocoder from address-point CSVs and a ZIP table, or the embedded ones.
pub fn load_offline_geocoder(
    address_points: &[std::path::PathBuf],
    zip_centroids: Option<&std::path::Path>,
) -> Result<OfflineGeocoder, DataFileError> {
    let mut files = Vec::new();
    for path in address_points {
        let bytes = std::fs::read(path).map_err(|e| DataFileError::io(path, e))?;
        files.push((path.display().to_string(), bytes));
    }
    let zips = match zip_centroids {
        Some(path) => (
            path.display().to_string(),
            std::fs::read(path).map_err(|e| DataFileError::io(path, e))?,
        ),
        None => (
            "embedded zip_centroids.csv".to_owned(),
            data::ZIP_CENTROIDS_CSV.to_vec(),
        ),
    };
    let mut points: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(name, bytes)| (name.as_str(), bytes.as_slice()))
        .collect();
    if points.is_empty() {
        points.push(("embedded address_points.csv", data::ADDRESS_POINTS_CSV));
    }
    OfflineGeocoder::new(&points, (&zips.0, &zips.1))
}

/// Turns geocoders' points into enrichment and keeps customers' enrichment current.
pub struct Enricher {
    geocoder: Arc<dyn Geocoder>,
    census: Arc<CensusIndex>,
    db: Database,
    wake: Notify,
    retry_every: Duration,
}

impl std::fmt::Debug for Enricher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enricher")
            .field("geocoder", &self.geocoder.name())
            .field("block_groups", &self.census.len())
            .finish()
    }
}

/// Pending customers taken per round of the worker, and written in one transaction.
const BATCH: i64 = 500;

/// The statement that writes a round's enrichments: `$1` the rows `(id, enrichment, block
/// group, address key)`, `$2` the time.
fn round_update_sql(conn: &sqlx::AnyConnection) -> String {
    format!(
        "UPDATE customers SET enrichment = v.c1, blockgroup_geoid = v.c2, \
         enrichment_pending = 0, version = version + 1, updated_at = $2 \
         FROM {} WHERE customers.id = v.c0 AND customers.enrichment_key = v.c3",
        json_rows(conn, 1, 4, "v")
    )
}

/// What a round of enrichment writes: `(id, enrichment, block group, address key)` of each
/// customer enriched, and the customers settled with nothing to enrich.
#[derive(Default)]
struct Round {
    enriched: Vec<(String, String, Option<String>, String)>,
    settled: Vec<[String; 1]>,
}

impl Enricher {
    pub fn new(
        geocoder: Arc<dyn Geocoder>,
        census: Arc<CensusIndex>,
        db: Database,
        retry_every: Duration,
    ) -> Self {
        Self {
            geocoder,
            census,
            db,
            wake: Notify::new(),
            retry_every,
        }
    }

    pub fn geocoder_name(&self) -> &'static str {
        self.geocoder.name()
    }

    pub fn census(&self) -> &CensusIndex {
        &self.census
    }

    /// Geocodes an address (through the cache for a remote geocoder) and places the point in
    /// its block group with the block group's figures.
    pub async fn describe(&self, address: &PostalAddress) -> Result<Enrichment, ServiceError> {
        let Some(key) = address_key(address) else {
            let geocode = Geocode::none(
                self.geocoder.name(),
                "no street, city, state or postal code",
            );
            return Ok(self.place(geocode));
        };
        let geocode = self.geocode_cached(address, &key).await?;
        Ok(self.place(geocode))
    }

    async fn geocode_cached(
        &self,
        address: &PostalAddress,
        key: &str,
    ) -> Result<Geocode, ServiceError> {
        if self.geocoder.is_local() {
            return self
                .geocoder
                .geocode(address)
                .await
                .map_err(|e| ServiceError::Unavailable(e.to_string()));
        }
        let cached = sqlx::query(
            "SELECT result FROM geocode_cache WHERE geocoder = $1 AND address_key = $2",
        )
        .bind(self.geocoder.name())
        .bind(key)
        .fetch_optional(self.db.pool())
        .await?;
        if let Some(row) = cached {
            let json: String = row.try_get(0)?;
            if let Ok(geocode) = serde_json::from_str(&json) {
                return Ok(geocode);
            }
        }
        let geocode = self
            .geocoder
            .geocode(address)
            .await
            .map_err(|e| ServiceError::Unavailable(e.to_string()))?;
        sqlx::query(
            "INSERT INTO geocode_cache (geocoder, address_key, result, created_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (geocoder, address_key) DO NOTHING",
        )
        .bind(self.geocoder.name())
        .bind(key)
        .bind(to_json(&geocode)?)
        .bind(now_millis())
        .execute(self.db.pool())
        .await?;
        Ok(geocode)
    }

    /// The block group and figures for a geocoded point. Only a rooftop point is placed in a
    /// block group: a ZIP centroid can be kilometres from the customer.
    fn place(&self, geocode: Geocode) -> Enrichment {
        let mut enrichment = Enrichment {
            status: EnrichmentStatus::Enriched,
            enriched_at: Some(to_time(now_millis())),
            ..Enrichment::default()
        };
        match (geocode.precision, geocode.lon, geocode.lat) {
            (GeoPrecision::Rooftop, Some(lon), Some(lat)) => {
                match self
                    .census
                    .locate(lon, lat)
                    .and_then(|g| self.census.facts(g))
                {
                    Some(facts) => {
                        if facts.demographics.is_none() {
                            enrichment.note =
                                Some("no ACS figures for this block group".to_owned());
                        }
                        enrichment.block_group = Some(facts.block_group);
                        enrichment.demographics = facts.demographics;
                    }
                    None => {
                        enrichment.note =
                            Some("the point lies outside the loaded census block groups".into());
                    }
                }
            }
            (GeoPrecision::Postal, ..) => {
                enrichment.note =
                    Some("postal-precision point: the block group is uncertain and omitted".into());
            }
            _ => {
                enrichment.note = Some("the address could not be located".into());
            }
        }
        enrichment.geocode = Some(geocode);
        enrichment
    }

    /// Called after a write committed: enriches `customer` now when the geocoder is local (so
    /// that reading the customer right after shows it), and wakes the worker for the rest.
    pub async fn after_write(&self, customer: Option<&CustomerId>) {
        if let Some(customer) = customer.filter(|_| self.geocoder.is_local()) {
            if let Err(e) = self.enrich_customer(customer).await {
                tracing::warn!(error = %e, "enrichment failed; the worker retries it");
            }
        }
        self.wake.notify_one();
    }

    /// Enriches one customer if it is pending. Returns whether it was enriched.
    pub async fn enrich_customer(&self, id: &CustomerId) -> Result<bool, ServiceError> {
        let row = sqlx::query(
            "SELECT id, golden, enrichment_key FROM customers \
             WHERE id = $1 AND merged_into IS NULL AND enrichment_pending = 1",
        )
        .bind(id.as_str())
        .fetch_optional(self.db.pool())
        .await?;
        let Some(row) = row else {
            return Ok(false);
        };
        let mut round = Round::default();
        let outcome = self.take_up(&row, &mut round).await;
        let written = self.write_round(&round).await?;
        outcome.map(|()| written == 1)
    }

    /// Enriches one pending customer (`id, golden, enrichment_key`) into `round`. A customer
    /// whose golden record has no address to geocode is settled (no longer pending).
    async fn take_up(
        &self,
        row: &sqlx::any::AnyRow,
        round: &mut Round,
    ) -> Result<(), ServiceError> {
        let id: String = row.try_get(0)?;
        let golden: String = row.try_get(1)?;
        let key: Option<String> = row.try_get(2)?;
        let golden: GoldenRecord = match serde_json::from_str(&golden) {
            Ok(golden) => golden,
            Err(e) => {
                // Settled, or it would come first in every round and hold up the rest.
                tracing::warn!(customer_id = %id, error = %e, "golden record unreadable: not enriched");
                round.settled.push([id]);
                return Ok(());
            }
        };
        let (Some(key), Some(address)) = (key, golden.address.map(|a| a.value)) else {
            // Pending without an address cannot happen through refresh_customer; settle it,
            // or it would come first in every round.
            round.settled.push([id]);
            return Ok(());
        };
        match self.describe(&address).await {
            Ok(enrichment) => {
                let geoid = enrichment.block_group.as_ref().map(|b| b.geoid.clone());
                round.enriched.push((id, to_json(&enrichment)?, geoid, key));
                Ok(())
            }
            Err(ServiceError::Unavailable(reason)) => {
                let pending = Enrichment {
                    status: EnrichmentStatus::Pending,
                    note: Some(format!("{reason}; will be retried")),
                    ..Enrichment::default()
                };
                sqlx::query(
                    "UPDATE customers SET enrichment = $1 WHERE id = $2 AND enrichment_key = $3",
                )
                .bind(to_json(&pending)?)
                .bind(&id)
                .bind(&key)
                .execute(self.db.pool())
                .await?;
                Err(ServiceError::Unavailable(reason))
            }
            Err(other) => Err(other),
        }
    }

    /// Writes a round's enrichments in one transaction; returns how many customers took
    /// theirs. A customer takes it only if its golden address is still the one geocoded: a
    /// concurrent change made it pending again under another key, and a merge cleared it.
    /// (`merged_into IS NULL` in the statement made SQLite walk the index of live customers,
    /// all of them, for each row: minutes per round after a bulk load.)
    async fn write_round(&self, round: &Round) -> Result<u64, ServiceError> {
        if round.enriched.is_empty() && round.settled.is_empty() {
            return Ok(0);
        }
        // Through the writer queue: on SQLite a write beside it would poll for the lock in the
        // busy handler's coarse sleeps.
        let mut write = self.db.begin_side_write().await?;
        let conn: &mut sqlx::AnyConnection = &mut write.tx;
        let sql = round_update_sql(conn);
        let mut written = 0;
        for part in round.enriched.chunks(JSON_ROWS_PER_STATEMENT) {
            written += sqlx::query(&sql)
                .bind(json_rows_param(part)?)
                .bind(now_millis())
                .execute(&mut *conn)
                .await?
                .rows_affected();
        }
        let sql = format!(
            "UPDATE customers SET enrichment_pending = 0 WHERE id IN (SELECT c0 FROM {})",
            json_rows(conn, 1, 1, "v")
        );
        execute_json_rows(conn, &sql, &round.settled, &[]).await?;
        write.tx.commit().await?;
        Ok(written)
    }

    /// Enriches up to one batch of pending customers, written in one transaction: after a
    /// bulk load hundreds of thousands wait, and a transaction each would commit hundreds of
    /// thousands of times. Stops early while the geocoder is unavailable. Returns how many
    /// were taken up.
    pub async fn run_pending(&self) -> Result<usize, ServiceError> {
        // Exactly the partial index's condition: with `merged_into IS NULL` added, SQLite
        // walked the merged_into index over every customer (55 ms at 100,000 customers, after
        // every write). A merged customer is never pending: absorbing one clears the flag.
        let rows = sqlx::query(
            "SELECT id, golden, enrichment_key FROM customers WHERE enrichment_pending = 1 \
             ORDER BY id LIMIT $1",
        )
        .bind(BATCH)
        .fetch_all(self.db.pool())
        .await?;
        let count = rows.len();
        let mut round = Round::default();
        let mut outcome = Ok(count);
        for row in &rows {
            match self.take_up(row, &mut round).await {
                Ok(()) => {}
                Err(ServiceError::Unavailable(reason)) => {
                    tracing::info!(%reason, "enrichment paused until the geocoder recovers");
                    outcome = Err(ServiceError::Unavailable(reason));
                    break;
                }
                Err(e) => tracing::warn!(error = %e, "enrichment of one customer failed"),
            }
        }
        self.write_round(&round).await?;
        outcome
    }

    /// Works pending customers off until none is left, then waits for a write or the retry
    /// interval. Runs until `shutdown` resolves, which it also heeds between rounds: a
    /// shutdown does not wait for a backlog of hundreds of thousands (a round cut short
    /// rolls back, and its customers stay pending).
    pub async fn run_worker(self: Arc<Self>, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            loop {
                let round = tokio::select! {
                    () = &mut shutdown => return,
                    round = self.run_pending() => round,
                };
                match round {
                    Ok(n) if n as i64 >= BATCH => continue,
                    Ok(_) | Err(ServiceError::Unavailable(_)) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "enrichment worker");
                        break;
                    }
                }
            }
            tokio::select! {
                () = &mut shutdown => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(self.retry_every) => {}
            }
        }
    }

    /// Everything known about one block group, with the number of customers in it.
    pub async fn block_group(&self, geoid: &str) -> Result<BlockGroupReport, ServiceError> {
        let facts = self
            .census
            .facts(geoid)
            .ok_or_else(|| ServiceError::NotFound(format!("block group {geoid}")))?;
        let customers: i64 = sqlx::query(
            "SELECT COUNT(*) FROM customers WHERE blockgroup_geoid = $1 AND merged_into IS NULL",
        )
        .bind(geoid)
        .fetch_one(self.db.pool())
        .await?
        .try_get(0)?;
        Ok(BlockGroupReport {
            block_group: facts.block_group,
            demographics: facts.demographics,
            land_m2: facts.land_m2,
            water_m2: facts.water_m2,
            customers: u64::try_from(customers).unwrap_or(0),
        })
    }

    /// The distribution of current customers over one ACS figure of their block group.
    /// `edges` are ascending bin edges; none given: ten equal bins over the figure's range.
    pub async fn histogram(
        &self,
        field: &str,
        edges: Option<Vec<f64>>,
    ) -> Result<DemographicHistogram, ServiceError> {
        if !self.census.fields().iter().any(|f| f == field) {
            return Err(ServiceError::invalid(
                "field",
                format!(
                    "unknown demographic field; one of: {}",
                    self.census.fields().join(", ")
                ),
            ));
        }
        let edges = match edges {
            Some(edges) => edges,
            None => default_edges(self.census.values_of(field)),
        };
        let rows = sqlx::query(
            "SELECT blockgroup_geoid, COUNT(*) FROM customers WHERE merged_into IS NULL \
             GROUP BY blockgroup_geoid",
        )
        .fetch_all(self.db.pool())
        .await?;
        let mut histogram = DemographicHistogram {
            field: field.to_owned(),
            customers: 0,
            bins: Vec::new(),
            without_block_group: 0,
            without_value: 0,
            top_coded: 0,
        };
        let mut below = 0u64;
        let mut counts = vec![0u64; edges.len()];
        for row in rows {
            let geoid: Option<String> = row.try_get(0)?;
            let n = u64::try_from(row.try_get::<i64, _>(1)?).unwrap_or(0);
            histogram.customers += n;
            let Some(geoid) = geoid else {
                histogram.without_block_group += n;
                continue;
            };
            let Some((value, figure)) = self
                .census
                .figure(&geoid, field)
                .and_then(|f| f.estimate.map(|v| (v, f)))
            else {
                histogram.without_value += n;
                continue;
            };
            if figure.top_coded.is_some() {
                histogram.top_coded += n;
            }
            match edges.iter().rposition(|edge| value >= *edge) {
                Some(i) => counts[i] += n,
                None => below += n,
            }
        }
        if below > 0 || edges.is_empty() {
            histogram.bins.push(HistogramBin {
                from: None,
                to: edges.first().copied(),
                customers: below,
            });
        }
        for (i, count) in counts.into_iter().enumerate() {
            histogram.bins.push(HistogramBin {
                from: Some(edges[i]),
                to: edges.get(i + 1).copied(),
                customers: count,
            });
        }
        Ok(histogram)
    }
}

/// Ten equal-width bins over the observed range, edges rounded to 2 significant digits of the
/// width so they read well.
fn default_edges(values: impl Iterator<Item = f64>) -> Vec<f64> {
    let (min, max) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !min.is_finite() || !max.is_finite() {
        return Vec::new();
    }
    if max <= min {
        return vec![min];
    }
    let raw = (max - min) / 10.0;
    let magnitude = 10f64.powf(raw.log10().floor() - 1.0);
    let width = (raw / magnitude).ceil() * magnitude;
    let start = (min / width).floor() * width;
    (0..10).map(|i| start + width * f64::from(i)).collect()
}

/// Parses `bins=0,50000,100000` into strictly ascending edges.
pub fn parse_edges(raw: &str) -> Result<Vec<f64>, ServiceError> {
    let mut edges = Vec::new();
    for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let value: f64 = part
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite())
            .ok_or_else(|| ServiceError::invalid("bins", format!("`{part}` is not a number")))?;
        if edges.last().is_some_and(|last| value <= *last) {
            return Err(ServiceError::invalid(
                "bins",
                "bin edges must be strictly ascending",
            ));
        }
        edges.push(value);
    }
    if edges.is_empty() || edges.len() > 100 {
        return Err(ServiceError::invalid(
            "bins",
            "give between 1 and 100 bin edges",
        ));
    }
    Ok(edges)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(line1: &str, city: &str, zip: Option<&str>) -> PostalAddress {
        PostalAddress {
            line1: Some(line1.to_owned()),
            line2: Some("Apt 4".to_owned()),
            city: Some(city.to_owned()),
            state: Some("District of Columbia".to_owned()),
            postal_code: zip.map(str::to_owned),
            country: None,
        }
    }

    #[test]
    fn address_keys_ignore_spelling_and_the_unit() {
        let a = address_key(&address(
            "701 E Street Northeast",
            "Washington",
            Some("20002-1234"),
        ));
        let b = address_key(&PostalAddress {
            line2: None,
            state: Some("dc".to_owned()),
            ..address("701  e st  NE", "WASHINGTON", Some("20002"))
        });
        assert_eq!(a, b);
        assert_ne!(
            a,
            address_key(&address("703 E St NE", "Washington", Some("20002")))
        );
        let empty = PostalAddress {
            line1: None,
            line2: Some("Apt 4".to_owned()),
            city: None,
            state: None,
            postal_code: None,
            country: None,
        };
        assert_eq!(address_key(&empty), None);
    }

    #[test]
    fn default_edges_cover_the_range() {
        let edges = default_edges([10_000.0, 250_001.0, 65_000.0].into_iter());
        assert_eq!(edges.len(), 10);
        assert!(edges[0] <= 10_000.0);
        assert_eq!(edges[1] - edges[0], 25_000.0);
        // The last bin is open-ended, so the maximum always has a bin.
        assert!(*edges.last().unwrap() <= 250_001.0);
        assert_eq!(default_edges(std::iter::empty()), Vec::<f64>::new());
    }

    /// A fresh, migrated SQLite store in a folder of its own (removed by the test).
    async fn temp_store() -> (std::path::PathBuf, Database) {
        let dir =
            std::env::temp_dir().join(format!("c360-enrich-{}", uuid::Uuid::now_v7().simple()));
        let db = Database::connect(&format!("sqlite://{}/c360.db", dir.display()), 4)
            .await
            .unwrap();
        db.migrate().await.unwrap();
        (dir, db)
    }

    async fn pending_customers(db: &Database) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM customers WHERE enrichment_pending = 1")
            .fetch_one(db.pool())
            .await
            .unwrap()
    }

    /// Through the real store and the real SDK: a record is stored while Amazon Location
    /// fails, its customer stays pending, and is enriched once the geocoder is back. The same
    /// address is then never sent to the geocoder again.
    #[tokio::test]
    async fn a_failing_remote_geocoder_leaves_customers_pending_until_it_recovers() {
        use crate::enrich::fake_location::FakeLocation;
        use crate::enrich::location::LocationGeocoder;
        use crate::Resolver;
        use c360_domain::{Profile, RecordInput};

        let (dir, db) = temp_store().await;
        let server = FakeLocation::start().await;
        server.fail_always(503);
        let geocoder = LocationGeocoder::connect(location::tests::settings(&server.url())).await;
        let census = load_census(None, None).unwrap();
        let enricher = Arc::new(Enricher::new(
            Arc::new(geocoder),
            Arc::new(census),
            db.clone(),
            Duration::from_secs(3600),
        ));
        let resolver =
            Resolver::new(db, c360_matching::Engine::shipped()).with_enricher(enricher.clone());
        let record = |id: &str, first: &str, email: &str, line1: &str| {
            let input: RecordInput = serde_json::from_value(serde_json::json!({
                "source": "crm", "source_id": id, "first_name": first, "last_name": "Okafor",
                "email": email, "address_line1": line1, "city": "Washington", "state": "DC",
                "postal_code": "20002"
            }))
            .unwrap();
            Profile::parse(&input).unwrap()
        };

        let stored = resolver
            .ingest(record("1", "Ada", "ada@example.com", "701 E St NE"))
            .await
            .unwrap();
        assert!(matches!(
            enricher.run_pending().await,
            Err(ServiceError::Unavailable(_))
        ));
        let view = resolver.get_customer(&stored.customer_id).await.unwrap();
        assert_eq!(view.enrichment.status, EnrichmentStatus::Pending);
        assert!(view.enrichment.note.unwrap().contains("will be retried"));

        server.recover();
        tokio::time::sleep(Duration::from_millis(350)).await; // the breaker's cool-down
        assert_eq!(enricher.run_pending().await.unwrap(), 1);
        let view = resolver.get_customer(&stored.customer_id).await.unwrap();
        assert_eq!(view.enrichment.status, EnrichmentStatus::Enriched);
        assert_eq!(view.enrichment.geocode.unwrap().geocoder, "aws_location");
        assert_eq!(view.enrichment.block_group.unwrap().geoid, "110010083021");
        assert!(view.enrichment.demographics.is_some());

        let calls = server.requests().len();
        let other = resolver
            .ingest(record(
                "2",
                "Bea",
                "bea@example.com",
                "701 E Street Northeast",
            ))
            .await
            .unwrap();
        enricher.run_pending().await.unwrap();
        let view = resolver.get_customer(&other.customer_id).await.unwrap();
        assert_eq!(view.enrichment.status, EnrichmentStatus::Enriched);
        assert_eq!(
            server.requests().len(),
            calls,
            "the cached address is not geocoded again"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A shutdown does not wait for the backlog: the worker stops between rounds, and the
    /// customers it did not reach stay pending for the next start.
    #[tokio::test]
    async fn the_worker_stops_at_shutdown_whatever_the_backlog() {
        let (dir, db) = temp_store().await;
        let ids: Vec<[String; 1]> = (0..5_000).map(|i| [format!("cus_{i:032x}")]).collect();
        let mut conn = db.pool().acquire().await.unwrap();
        let sql = format!(
            "INSERT INTO customers (id, golden, record_count, created_at, updated_at, \
             enrichment_key, enrichment_pending) SELECT c0, '{{}}', 1, 0, 0, 'key', 1 FROM {}",
            json_rows(&conn, 1, 1, "v")
        );
        execute_json_rows(&mut conn, &sql, &ids, &[]).await.unwrap();
        drop(conn);
        let enricher = Arc::new(Enricher::new(
            Arc::new(load_offline_geocoder(&[], None).unwrap()),
            Arc::new(load_census(None, None).unwrap()),
            db.clone(),
            Duration::from_secs(3600),
        ));
        enricher.clone().run_worker(async {}).await;
        let pending = pending_customers(&db).await;
        assert!(pending >= 5_000 - BATCH, "{pending} still pending");

        // A round's update finds each customer by id, whatever else it checks.
        let mut conn = db.pool().acquire().await.unwrap();
        let plan: Vec<String> =
            sqlx::query(&format!("EXPLAIN QUERY PLAN {}", round_update_sql(&conn)))
                .bind("[]")
                .bind(0_i64)
                .fetch_all(&mut *conn)
                .await
                .unwrap()
                .iter()
                .map(|row| row.try_get::<String, _>(3).unwrap())
                .collect();
        drop(conn);
        assert!(!plan.is_empty());
        assert!(
            plan.iter()
                .any(|step| step
                    .contains("SEARCH customers USING INDEX sqlite_autoindex_customers_1")),
            "{plan:?}"
        );

        // Without a shutdown, a round settles what it cannot enrich (here: no address).
        assert_eq!(enricher.run_pending().await.unwrap(), BATCH as usize);
        assert_eq!(pending_customers(&db).await, pending - BATCH);
        db.close().await;
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn bin_edges_are_checked() {
        assert_eq!(
            parse_edges("0, 50000,100000").unwrap(),
            vec![0.0, 50_000.0, 100_000.0]
        );
        assert!(parse_edges("0,lots")
            .unwrap_err()
            .to_string()
            .contains("`lots`"));
        assert!(parse_edges("5,1")
            .unwrap_err()
            .to_string()
            .contains("ascending"));
        assert!(parse_edges("").is_err());
    }
}
