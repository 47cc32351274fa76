//! The resolver: takes one record in, finds its candidates through the blocking index, asks
//! the matcher which are the same person, and keeps the identity graph and the customers up to
//! date, all in one transaction per record.
//!
//! Concurrency: on PostgreSQL many replicas write at once. A writer first takes advisory locks
//! on the record key and on the record's identifier and date-of-birth keys (old and new
//! version, see [`blocking::lock_keys`]), so two records that could match each other are
//! resolved one after the other; it then locks the
//! rows of the customers it changes (`FOR UPDATE`, in id order), so that merges and splits of
//! the same customer never interleave. Deadlocks and serialization failures are retried.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use c360_domain::{
    CustomerId, CustomerView, Enrichment, EnrichmentStatus, GoldenRecord, IdentifierEntry,
    IdentifierKind, Incoherence, IngestOutcome, IngestResult, LinkEvidence, MemberRecord, Profile,
    RecordKey, RecordView, SourceId, SourceName,
};
use c360_matching::compare::{Field, MISSING};
use c360_matching::model::{Population, UnknownPopulation};
use c360_matching::{
    batch, blocking, graph, identifier_keys, normalize, survivorship, Engine, Features, Verdict,
};
use chrono::{DateTime, TimeZone, Utc};
use serde::Serialize;
use sqlx::{AnyConnection, Row};

use crate::customer_view::DynamoViews;
use crate::enrich::Enricher;
use crate::error::{ServiceError, StoreError};
use crate::store::{
    execute_json_params, execute_json_rows, fetch_json_rows, filed_keys_of, insert_bound_rows,
    insert_index_sql, json_rows, json_rows_param, pair_placeholders, placeholders,
    reserve_record_ids, stored_key, Bound, Database, WriteTx, JSON_ROWS_PER_STATEMENT,
};

/// Transactions that hit a deadlock or serialization failure are tried this many times.
const MAX_ATTEMPTS: u32 = 8;
/// A new record keeps at most this many edges into each customer it joins: enough that one
/// deleted record rarely disconnects the rest, without growing quadratically in big customers.
pub(crate) const LINKS_PER_CUSTOMER: usize = 3;

/// A stored record with its bookkeeping.
#[derive(Debug, Clone)]
pub(crate) struct StoredRecord {
    pub(crate) profile: Profile,
    pub(crate) customer_id: CustomerId,
    pub(crate) source_updated_at: Option<i64>,
    pub(crate) first_seen_at: i64,
    pub(crate) last_changed_at: i64,
}

/// Sizes of the store, for metrics.
#[derive(Debug, Clone, Copy)]
pub struct StoreCounts {
    pub records: i64,
    pub customers: i64,
    /// Customers whose golden address waits for the geocoder.
    pub enrichment_pending: i64,
}

#[derive(Clone)]
pub struct Resolver {
    pub(crate) db: Database,
    pub(crate) engine: Arc<Engine>,
    /// How many records are stored, refreshed every few seconds: term frequencies divide by it.
    record_count: Arc<std::sync::Mutex<(std::time::Instant, f64)>>,
    /// Keeps customers' geo enrichment current after each write; `None`: no enrichment.
    enricher: Option<Arc<Enricher>>,
    /// The customer view in DynamoDB; `None`: the SQL tables are the view.
    pub(crate) dynamo: Option<Arc<DynamoViews>>,
}

/// How long the cached record count is trusted.
const RECORD_COUNT_TTL: Duration = Duration::from_secs(10);

/// What the store knows of its records for scoring one probe: how common the probe's names
/// are. The prior stays the model's own (see the README).
pub(crate) struct StoredNames {
    pub(crate) total: f64,
    pub(crate) counts: HashMap<(Field, String), f64>,
}

impl Population for StoredNames {
    fn frequency(&self, field: Field, value: &str) -> Option<f64> {
        if self.total < 1000.0 {
            // Too few records for frequencies to mean anything.
            return None;
        }
        self.counts
            .get(&(field, value.to_owned()))
            .map(|count| count / self.total)
    }
}

/// The normalized names of a record, as counted in `name_counts`.
pub(crate) fn name_values(features: &Features) -> Vec<(Field, &str)> {
    let mut out = Vec::new();
    if let Some(first) = &features.first {
        out.push((Field::FirstName, first.text.as_str()));
    }
    if let Some(last) = &features.last {
        out.push((Field::LastName, last.text.as_str()));
    }
    out
}

/// A pair the engine could not settle: it goes to the review queue.
#[derive(Debug, Clone)]
pub(crate) struct Review {
    pub(crate) other: RecordKey,
    pub(crate) probability: f64,
    /// `possible_match`, or the guard rail that held the link back.
    pub(crate) reason: String,
    pub(crate) evidence: LinkEvidence,
}

/// What the engine found for the record being resolved: links to make, pairs to review.
#[derive(Debug, Default)]
pub(crate) struct Found {
    pub(crate) links: Vec<Link>,
    pub(crate) reviews: Vec<Review>,
}

/// A link the engine accepted between the record being resolved and a stored one.
#[derive(Debug, Clone)]
pub(crate) struct Link {
    pub(crate) other: RecordKey,
    pub(crate) evidence: LinkEvidence,
    /// Rules rank above any score.
    pub(crate) strength: f64,
    /// Whether the pair's first names were compared (see [`Engine::conflict`]).
    pub(crate) names_compared: bool,
}

pub(crate) fn now_millis() -> i64 {
    Utc::now().timestamp_millis()
}

pub(crate) fn to_time(millis: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(millis)
        .single()
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

pub(crate) fn new_customer_id() -> CustomerId {
    CustomerId::from_uuid_simple(&uuid::Uuid::now_v7().simple().to_string())
}

pub(crate) fn parse_customer_id(raw: &str) -> Result<CustomerId, StoreError> {
    CustomerId::parse(raw).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(crate) fn record_lock_key(key: &RecordKey) -> String {
    format!("record:{}/{}", key.source, key.source_id)
}

/// The two keys, the smaller first, borrowed: rule links tie on their weight, and sorting
/// hundreds of thousands of them must not copy keys at every comparison.
pub(crate) fn in_order<'a>(a: &'a RecordKey, b: &'a RecordKey) -> (&'a RecordKey, &'a RecordKey) {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

/// Edges are stored once, with the smaller record key first.
pub(crate) fn ordered(a: &RecordKey, b: &RecordKey) -> (RecordKey, RecordKey) {
    let (a, b) = in_order(a, b);
    (a.clone(), b.clone())
}

impl Resolver {
    pub fn new(db: Database, engine: Engine) -> Self {
        Self {
            db,
            engine: Arc::new(engine),
            record_count: Arc::new(std::sync::Mutex::new((
                std::time::Instant::now() - RECORD_COUNT_TTL * 2,
                0.0,
            ))),
            enricher: None,
            dynamo: None,
        }
    }

    /// Enriches customers' golden addresses after every write.
    pub fn with_enricher(mut self, enricher: Arc<Enricher>) -> Self {
        self.enricher = Some(enricher);
        self
    }

    pub fn enricher(&self) -> Option<&Arc<Enricher>> {
        self.enricher.as_ref()
    }

    /// After a write committed: brings enrichment up to date (see [`Enricher::after_write`]),
    /// then publishes the changed customers to a separate view store. `changed` lists the
    /// customers the write touched (empty: not known).
    pub(crate) async fn after_write(&self, changed: &[CustomerId]) {
        if let Some(enricher) = &self.enricher {
            enricher.after_write(changed.first()).await;
        }
        self.publish_after_write(changed).await;
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub(crate) fn candidate_caps(&self) -> (usize, usize) {
        let config = self.engine.config();
        (config.max_block_size, config.max_fuzzy_block_size)
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Creates or updates one record and resolves it. Idempotent by (source, source_id).
    pub async fn ingest(&self, profile: Profile) -> Result<IngestResult, ServiceError> {
        let (result, names) = self.retrying(|| self.try_ingest(&profile)).await?;
        self.count_names(names).await;
        let changed: Vec<CustomerId> = std::iter::once(&result.customer_id)
            .chain(&result.merged_customer_ids)
            .chain(&result.split_customer_ids)
            .cloned()
            .collect();
        self.after_write(&changed).await;
        Ok(result)
    }

    /// Deletes a record; its customer is recomputed from what remains, and splits when the
    /// record was the only bridge between two groups of records.
    pub async fn delete(&self, key: &RecordKey) -> Result<(), ServiceError> {
        let names = self.retrying(|| self.try_delete(key)).await?;
        self.count_names(names).await;
        self.after_write(&[]).await;
        Ok(())
    }

    /// Applies name-count changes after the record's transaction committed, in short
    /// transactions of their own: counts only weigh common names, and updating them inside
    /// the ingest transaction would hold a row lock on "smith" for every Smith being ingested.
    pub(crate) async fn count_names(&self, changes: NameCounts) {
        if changes.is_empty() {
            return;
        }
        // Through the writer queue: on SQLite a write beside it would poll for the lock in
        // the busy handler's coarse sleeps (up to 100 ms each under load).
        let outcome = async {
            let mut write = self.db.begin_side_write().await?;
            apply_name_counts(&mut write.tx, changes).await?;
            write.tx.commit().await?;
            Ok::<_, StoreError>(())
        }
        .await;
        if let Err(e) = outcome {
            tracing::warn!(error = %e, "name counts not updated");
        }
    }

    pub(crate) async fn retrying<T, F, Fut>(&self, mut attempt: F) -> Result<T, ServiceError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, ServiceError>>,
    {
        let mut tries = 0;
        loop {
            tries += 1;
            match attempt().await {
                Err(ServiceError::Store(e)) if e.is_retryable() && tries < MAX_ATTEMPTS => {
                    tracing::debug!(tries, "write conflict, retrying");
                    let jitter = u64::from(uuid::Uuid::now_v7().as_bytes()[15] % 16);
                    tokio::time::sleep(Duration::from_millis(5 * u64::from(tries) + jitter)).await;
                }
                other => return other,
            }
        }
    }

    async fn try_ingest(
        &self,
        profile: &Profile,
    ) -> Result<(IngestResult, NameCounts), ServiceError> {
        let key = profile.key();
        let mut write = self.db.begin_write().await?;
        self.db
            .lock_keys(&mut write, &[record_lock_key(&key)])
            .await?;
        let existing = load_record(&mut write.tx, &key).await?;

        if let Some(stored) = &existing {
            let settled = settled_without_write(&stored.profile, stored.source_updated_at, profile);
            if let Some(outcome) = settled {
                write.tx.commit().await?;
                return Ok((unchanged(key, stored, outcome), NameCounts::new()));
            }
        }

        let features = Features::of(profile);
        let probe_keys = blocking::keys(&features);
        let mut locks = blocking::lock_keys(&probe_keys);
        if let Some(stored) = &existing {
            locks.extend(blocking::lock_keys(&blocking::keys(&Features::of(
                &stored.profile,
            ))));
        }
        self.db.lock_keys(&mut write, &locks).await?;

        let candidates =
            load_candidates(&mut write.tx, &probe_keys, &key, self.candidate_caps()).await?;
        let names = self.stored_names(&mut write.tx, &[&features]).await?;
        let mut found = self.matches(&features, &candidates, &names);
        let now = now_millis();
        let mut counts = name_changes(&features, 1);
        if let Some(stored) = &existing {
            counts.extend(name_changes(&Features::of(&stored.profile), -1));
        }

        let result = match existing {
            None => {
                let filed = (&features, probe_keys.as_slice());
                self.insert_new(&mut write, profile, filed, &mut found, now)
                    .await?
            }
            Some(stored) => {
                let filed = (&features, probe_keys.as_slice());
                self.update_existing(&mut write, profile, filed, stored, &mut found, now)
                    .await?
            }
        };
        crate::curation::write_reviews(&mut write.tx, &profile.key(), &found.reviews, now).await?;
        write.tx.commit().await?;
        self.db.note_written(1);
        Ok((result, counts))
    }

    /// `(features, keys)`: the record's features and the blocking keys it is filed under.
    async fn insert_new(
        &self,
        write: &mut WriteTx,
        profile: &Profile,
        (features, keys): (&Features, &[String]),
        found: &mut Found,
        now: i64,
    ) -> Result<IngestResult, ServiceError> {
        let key = profile.key();
        let (customers, links) = self.accept(write, &key, features, found, None).await?;

        let (customer_id, absorbed, outcome) = match customers.iter().next() {
            None => {
                let id = new_customer_id();
                insert_customer(&mut write.tx, &id, now).await?;
                (id, Vec::new(), IngestOutcome::CreatedCustomer)
            }
            Some(survivor) => {
                // The oldest customer survives: ids are time-ordered, so that is the smallest.
                let absorbed: Vec<CustomerId> = customers.iter().skip(1).cloned().collect();
                let outcome = if absorbed.is_empty() {
                    IngestOutcome::JoinedCustomer
                } else {
                    IngestOutcome::MergedCustomers
                };
                (survivor.clone(), absorbed, outcome)
            }
        };

        insert_record(&mut write.tx, profile, keys, &customer_id, now).await?;
        insert_links(&mut write.tx, &key, &links, now).await?;
        if !absorbed.is_empty() {
            absorb(&mut write.tx, &absorbed, &customer_id, now).await?;
        }
        refresh_customer(&mut write.tx, &customer_id, &self.engine, now).await?;
        Ok(IngestResult {
            record: key,
            customer_id,
            outcome,
            merged_customer_ids: absorbed,
            split_customer_ids: Vec::new(),
        })
    }

    /// `(features, keys)`: the record's new features and the blocking keys it is filed under.
    async fn update_existing(
        &self,
        write: &mut WriteTx,
        profile: &Profile,
        (features, keys): (&Features, &[String]),
        stored: StoredRecord,
        found: &mut Found,
        now: i64,
    ) -> Result<IngestResult, ServiceError> {
        let key = profile.key();
        let (mut affected, links) = self
            .accept(write, &key, features, found, Some(&stored.customer_id))
            .await?;
        affected.insert(stored.customer_id.clone());

        // The old keys first: clear_index reads them from the row this overwrites.
        let id = clear_index(&mut write.tx, &key)
            .await?
            .ok_or_else(|| StoreError::Corrupt("updated record is not stored".into()))?;
        sqlx::query(
            "UPDATE records SET profile = $1, source_updated_at = $2, last_changed_at = $3, \
             filed_keys = $4 WHERE source = $5 AND source_id = $6",
        )
        .bind(to_json(profile)?)
        .bind(profile.updated_at.map(|t| t.timestamp_millis()))
        .bind(now)
        .bind(to_json(&keys)?)
        .bind(key.source.as_str())
        .bind(key.source_id.as_str())
        .execute(&mut *write.tx)
        .await?;
        write_index(&mut write.tx, &IndexRows::of(&[(profile, keys)])?, id).await?;
        delete_links_of(&mut write.tx, &key).await?;
        insert_links(&mut write.tx, &key, &links, now).await?;

        let change = self.recompute(write, &affected, now).await?;
        let customer_id = change
            .assignment
            .get(&key)
            .cloned()
            .ok_or_else(|| StoreError::Corrupt("updated record lost its customer".into()))?;
        Ok(IngestResult {
            record: key,
            customer_id,
            outcome: IngestOutcome::Updated,
            merged_customer_ids: change.absorbed,
            split_customer_ids: change.created,
        })
    }

    async fn try_delete(&self, key: &RecordKey) -> Result<NameCounts, ServiceError> {
        let mut write = self.db.begin_write().await?;
        self.db
            .lock_keys(&mut write, &[record_lock_key(key)])
            .await?;
        let stored = load_record(&mut write.tx, key)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("record {key}")))?;
        let keys = blocking::keys(&Features::of(&stored.profile));
        self.db
            .lock_keys(&mut write, &blocking::lock_keys(&keys))
            .await?;
        let affected = self
            .settle_customers(&mut write, &[], std::slice::from_ref(&stored.customer_id))
            .await?;
        clear_index(&mut write.tx, key).await?;
        delete_links_of(&mut write.tx, key).await?;
        crate::curation::obsolete_reviews_of(&mut write.tx, key, now_millis()).await?;
        sqlx::query("DELETE FROM records WHERE source = $1 AND source_id = $2")
            .bind(key.source.as_str())
            .bind(key.source_id.as_str())
            .execute(&mut *write.tx)
            .await?;
        self.recompute(&mut write, &affected, now_millis()).await?;
        write.tx.commit().await?;
        Ok(name_changes(&Features::of(&stored.profile), -1))
    }

    /// The customers that the given records (plus `extra` customers) belong to, with their rows
    /// locked. Re-reads after locking until stable, because a concurrent merge or split may
    /// have moved a record between reading it and locking its customer.
    pub(crate) async fn settle_customers(
        &self,
        write: &mut WriteTx,
        records: &[RecordKey],
        extra: &[CustomerId],
    ) -> Result<BTreeSet<CustomerId>, ServiceError> {
        let mut locked: BTreeSet<CustomerId> = BTreeSet::new();
        loop {
            let mut wanted: BTreeSet<CustomerId> = customers_of(&mut write.tx, records)
                .await?
                .into_iter()
                .collect();
            wanted.extend(extra.iter().cloned());
            let missing: Vec<CustomerId> = wanted.difference(&locked).cloned().collect();
            if missing.is_empty() {
                return Ok(wanted);
            }
            let sql = format!(
                "SELECT id FROM customers WHERE id IN ({}) ORDER BY id{}",
                placeholders(1, missing.len()),
                self.db.for_update()
            );
            let mut query = sqlx::query(&sql);
            for id in &missing {
                query = query.bind(id.as_str());
            }
            query.fetch_all(&mut *write.tx).await?;
            locked.extend(missing);
        }
    }

    /// The candidates the engine links to the probe, strongest first.
    fn matches(
        &self,
        probe: &Features,
        candidates: &[StoredRecord],
        names: &dyn Population,
    ) -> Found {
        let mut links: Vec<Link> = Vec::new();
        let mut reviews: Vec<Review> = Vec::new();
        for candidate in candidates {
            let theirs = Features::of(&candidate.profile);
            let decision = self.engine.decide(probe, &theirs, names);
            match decision.verdict {
                Verdict::Match => links.push(Link {
                    other: candidate.profile.key(),
                    strength: decision.link_priority(),
                    evidence: self.engine.evidence(&decision),
                    names_compared: decision.comparison.level(Field::FirstName) != MISSING,
                }),
                Verdict::Review => reviews.push(Review {
                    other: candidate.profile.key(),
                    probability: decision.score.probability,
                    reason: decision
                        .guard
                        .clone()
                        .unwrap_or_else(|| "possible_match".to_owned()),
                    evidence: self.engine.evidence(&decision),
                }),
                Verdict::NonMatch => {}
            }
        }
        links.sort_by(|a, b| {
            b.strength
                .total_cmp(&a.strength)
                .then(a.other.cmp(&b.other))
        });
        Found { links, reviews }
    }

    /// How common the probe's names are among stored records.
    /// Stored counts of the names of `features` (and the record total), for the
    /// term-frequency adjustment.
    pub(crate) async fn stored_names(
        &self,
        conn: &mut AnyConnection,
        features: &[&Features],
    ) -> Result<StoredNames, StoreError> {
        let total = self.record_total(conn).await?;
        // Hashed, not sorted: a bulk chunk asks about the names of a million records, and
        // the query takes them in any order.
        let values: HashSet<(Field, &str)> = features.iter().flat_map(|f| name_values(f)).collect();
        let mut counts = HashMap::new();
        let sql = format!(
            "SELECT field, value, count FROM name_counts \
             WHERE (field, value) IN (SELECT c0, c1 FROM {})",
            json_rows(conn, 1, 2, "v")
        );
        let values: Vec<(&str, &str)> = values.iter().map(|(f, v)| (f.name(), *v)).collect();
        for row in fetch_json_rows(conn, &sql, &values).await? {
            let field: String = row.try_get(0)?;
            let Some(field) = Field::from_name(&field) else {
                continue;
            };
            counts.insert(
                (field, row.try_get::<String, _>(1)?),
                row.try_get::<i64, _>(2)? as f64,
            );
        }
        Ok(StoredNames { total, counts })
    }

    /// How many records are stored (counted at most [`RECORD_COUNT_TTL`] ago).
    pub async fn stored_records(&self) -> Result<u64, StoreError> {
        let mut conn = self.db.pool().acquire().await?;
        Ok(self.record_total(&mut conn).await? as u64)
    }

    /// Counts `records` a bulk chunk just stored in the cached record total, so that the next
    /// chunk through the store weighs names against the same total as a chunk resolved
    /// against the job's image of the store, which counts every record it holds.
    pub(crate) fn count_stored(&self, records: u64) {
        if let Ok(mut cached) = self.record_count.lock() {
            cached.1 += records as f64;
        }
    }

    pub(crate) async fn record_total(&self, conn: &mut AnyConnection) -> Result<f64, StoreError> {
        if let Ok(cached) = self.record_count.lock() {
            if cached.0.elapsed() < RECORD_COUNT_TTL {
                return Ok(cached.1);
            }
        }
        let count: i64 = sqlx::query("SELECT COUNT(*) FROM records")
            .fetch_one(&mut *conn)
            .await?
            .try_get(0)?;
        if let Ok(mut cached) = self.record_count.lock() {
            *cached = (std::time::Instant::now(), count as f64);
        }
        Ok(count as f64)
    }

    /// Which customers the probe may join: those of its matches, strongest first, unless a
    /// guard rail fires between the probe (or a customer already accepted) and any record of
    /// the customer. Returns the accepted customers, locked, and the links to store: at most
    /// [`LINKS_PER_CUSTOMER`] into each. `own` is the probe's current customer, whose records
    /// are checked like the others (an update may bring conflicting evidence).
    async fn accept(
        &self,
        write: &mut WriteTx,
        probe_key: &RecordKey,
        probe: &Features,
        found: &mut Found,
        own: Option<&CustomerId>,
    ) -> Result<(BTreeSet<CustomerId>, Vec<Link>), ServiceError> {
        let keys: Vec<RecordKey> = found.links.iter().map(|l| l.other.clone()).collect();
        let never = cannot_link_partners(&mut write.tx, probe_key).await?;
        let extra: Vec<CustomerId> = own.into_iter().cloned().collect();
        self.settle_customers(write, &keys, &extra).await?;
        let owners = customer_of_each(&mut write.tx, &keys).await?;

        let mut accepted: BTreeSet<CustomerId> = BTreeSet::new();
        let mut rejected: BTreeSet<CustomerId> = BTreeSet::new();
        let mut accepted_members: Vec<Features> = vec![probe.clone()];
        let mut per_customer: HashMap<CustomerId, usize> = HashMap::new();
        let mut links = Vec::new();
        for link in &found.links {
            let Some(customer) = owners.get(&link.other) else {
                continue;
            };
            if rejected.contains(customer) {
                continue;
            }
            if !accepted.contains(customer) {
                let stored =
                    records_of_customers(&mut write.tx, std::slice::from_ref(customer)).await?;
                if stored.iter().any(|m| never.contains(&m.profile.key())) {
                    // A person said these are different people.
                    rejected.insert(customer.clone());
                    continue;
                }
                let members: Vec<Features> = stored
                    .iter()
                    .filter(|m| &m.profile.key() != probe_key)
                    .map(|m| Features::of(&m.profile))
                    .collect();
                let conflict = members.iter().take(64).find_map(|m| {
                    accepted_members
                        .iter()
                        .take(64)
                        .find_map(|a| self.engine.conflict(a, m, link.names_compared))
                });
                if let Some(guard) = conflict {
                    tracing::info!(guard, "link refused by a guard rail");
                    found.reviews.push(Review {
                        other: link.other.clone(),
                        probability: 1.0,
                        reason: guard,
                        evidence: link.evidence.clone(),
                    });
                    rejected.insert(customer.clone());
                    continue;
                }
                accepted.insert(customer.clone());
                accepted_members.extend(members);
            }
            let n = per_customer.entry(customer.clone()).or_default();
            *n += 1;
            if *n <= LINKS_PER_CUSTOMER {
                links.push(link.clone());
            }
        }
        Ok((accepted, links))
    }

    /// Recomputes the customers `affected` from their records and the edges between them:
    /// connected components become customers. Where the stored edges no longer connect a
    /// customer, the matcher is asked again across the parts before splitting, so that only a
    /// real loss of evidence splits a customer.
    pub(crate) async fn recompute(
        &self,
        write: &mut WriteTx,
        affected: &BTreeSet<CustomerId>,
        now: i64,
    ) -> Result<Recomputed, ServiceError> {
        let ids: Vec<CustomerId> = affected.iter().cloned().collect();
        let members = records_of_customers(&mut write.tx, &ids).await?;
        let index: HashMap<RecordKey, usize> = members
            .iter()
            .enumerate()
            .map(|(i, m)| (m.profile.key(), i))
            .collect();
        let mut edges: Vec<(usize, usize)> = links_among(&mut write.tx, &ids)
            .await?
            .into_iter()
            .filter_map(|(a, b)| Some((*index.get(&a)?, *index.get(&b)?)))
            .collect();

        // Cannot-links among the members: no component may hold both ends.
        let keys: Vec<RecordKey> = members.iter().map(|m| m.profile.key()).collect();
        let forbidden: BTreeSet<(usize, usize)> = cannot_links_among(&mut write.tx, &keys)
            .await?
            .into_iter()
            .filter_map(|(a, b)| {
                let (x, y) = (*index.get(&a)?, *index.get(&b)?);
                Some((x.min(y), x.max(y)))
            })
            .collect();
        let components_of = |edges: &[(usize, usize)]| {
            let mut clusters = graph::GuardedClusters::new(members.len());
            for &(a, b) in edges {
                let _ =
                    clusters.union_unless(a, b, |x, y| forbidden.contains(&(x.min(y), x.max(y))));
            }
            let labels = clusters.labels();
            let mut groups: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
            for (i, label) in labels.into_iter().enumerate() {
                groups.entry(label).or_default().push(i);
            }
            groups.into_values().collect::<Vec<Vec<usize>>>()
        };

        let mut components = components_of(&edges);
        if components.len() > 1 {
            let healed = self.heal(&members, &components, &forbidden);
            for (a, b, evidence) in healed {
                let (ka, kb) = (members[a].profile.key(), members[b].profile.key());
                let link = Link {
                    other: kb,
                    evidence,
                    strength: 0.0,
                    names_compared: true,
                };
                insert_links(&mut write.tx, &ka, &[link], now).await?;
                edges.push((a, b));
            }
            components = components_of(&edges);
        }

        // Largest component first; each takes the oldest id its records held that no larger
        // component took already; a component with none gets a new id.
        components.sort_by(|a, b| b.len().cmp(&a.len()).then(a[0].cmp(&b[0])));
        let mut taken: BTreeSet<CustomerId> = BTreeSet::new();
        let mut assignment: BTreeMap<RecordKey, CustomerId> = BTreeMap::new();
        let mut created = Vec::new();
        let mut former_members: HashMap<CustomerId, Vec<CustomerId>> = HashMap::new();
        for component in &components {
            let held: BTreeSet<&CustomerId> =
                component.iter().map(|&i| &members[i].customer_id).collect();
            let id = match held.iter().find(|id| !taken.contains(**id)) {
                Some(id) => (*id).clone(),
                None => {
                    let id = new_customer_id();
                    insert_customer(&mut write.tx, &id, now).await?;
                    created.push(id.clone());
                    id
                }
            };
            taken.insert(id.clone());
            let moved: Vec<RecordKey> = component
                .iter()
                .filter(|&&i| members[i].customer_id != id)
                .map(|&i| members[i].profile.key())
                .collect();
            for &i in component {
                former_members
                    .entry(members[i].customer_id.clone())
                    .or_default()
                    .push(id.clone());
                assignment.insert(members[i].profile.key(), id.clone());
            }
            move_records(&mut write.tx, &moved, &id).await?;
        }
        // Golden records once every record is where it belongs: refreshing a component's
        // customer before a later component moved its records out would count them still.
        for id in &taken {
            refresh_customer(&mut write.tx, id, &self.engine, now).await?;
        }

        // Ids that no component kept: absorbed into the component that took most of their
        // records, or gone with their last record.
        let mut absorbed = Vec::new();
        for id in affected.iter().filter(|id| !taken.contains(*id)) {
            match former_members
                .get(id)
                .and_then(|targets| most_common(targets))
            {
                Some(target) => {
                    absorb(&mut write.tx, std::slice::from_ref(id), &target, now).await?;
                    absorbed.push(id.clone());
                }
                None => delete_customer(&mut write.tx, id).await?,
            }
        }
        Ok(Recomputed {
            assignment,
            absorbed,
            created,
        })
    }

    /// Links between records of different components that the engine still accepts.
    fn heal(
        &self,
        members: &[StoredRecord],
        components: &[Vec<usize>],
        forbidden: &BTreeSet<(usize, usize)>,
    ) -> Vec<(usize, usize, LinkEvidence)> {
        let mut component_of = vec![0; members.len()];
        for (c, nodes) in components.iter().enumerate() {
            for &n in nodes {
                component_of[n] = c;
            }
        }
        let features: Vec<Features> = members.iter().map(|m| Features::of(&m.profile)).collect();
        let keys: Vec<Vec<String>> = features.iter().map(blocking::keys).collect();
        let mut by_key: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, ks) in keys.iter().enumerate() {
            for k in ks {
                by_key.entry(k.as_str()).or_default().push(i);
            }
        }
        let mut found = Vec::new();
        let mut joined: BTreeSet<(usize, usize)> = BTreeSet::new();
        for (i, ks) in keys.iter().enumerate() {
            let mut others: Vec<usize> = ks
                .iter()
                .flat_map(|k| by_key.get(k.as_str()).into_iter().flatten().copied())
                .filter(|&j| j > i && component_of[j] != component_of[i])
                .collect();
            others.sort_unstable();
            others.dedup();
            for j in others {
                let pair = (
                    component_of[i].min(component_of[j]),
                    component_of[i].max(component_of[j]),
                );
                if joined.contains(&pair) || forbidden.contains(&(i.min(j), i.max(j))) {
                    continue;
                }
                let decision = self
                    .engine
                    .decide(&features[i], &features[j], &UnknownPopulation);
                if decision.verdict == Verdict::Match {
                    joined.insert(pair);
                    found.push((i, j, self.engine.evidence(&decision)));
                }
            }
        }
        found
    }

    /// A record and the customer it belongs to.
    pub async fn get_record(&self, key: &RecordKey) -> Result<RecordView, ServiceError> {
        let mut conn = self.db.pool().acquire().await?;
        let stored = load_record(&mut conn, key)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("record {key}")))?;
        Ok(RecordView {
            customer_id: stored.customer_id,
            record: stored.profile,
            first_seen_at: to_time(stored.first_seen_at),
            last_changed_at: to_time(stored.last_changed_at),
        })
    }

    /// The single customer view. An id absorbed by a merge answers with the survivor.
    pub async fn get_customer(&self, id: &CustomerId) -> Result<CustomerView, ServiceError> {
        if let Some(views) = &self.dynamo {
            return views
                .get(id)
                .await?
                .ok_or_else(|| ServiceError::NotFound(format!("customer {id}")));
        }
        let mut conn = self.db.pool().acquire().await?;
        let not_found = || ServiceError::NotFound(format!("customer {id}"));
        let row = sqlx::query("SELECT merged_into FROM customers WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&mut *conn)
            .await?
            .ok_or_else(not_found)?;
        let merged_into: Option<String> = row.try_get(0)?;
        let (current, resolved_from) = match merged_into {
            Some(target) => (parse_customer_id(&target)?, Some(id.clone())),
            None => (id.clone(), None),
        };
        let mut view = load_view(&mut conn, &current)
            .await?
            .ok_or_else(not_found)?;
        view.resolved_from = resolved_from;
        Ok(view)
    }

    /// The customers that have a record carrying the identifier, normalized as at ingest.
    pub async fn find_customers(
        &self,
        kind: IdentifierKind,
        raw: &str,
    ) -> Result<Vec<CustomerView>, ServiceError> {
        let value = normalize_lookup(kind, raw)?;
        if let Some(views) = &self.dynamo {
            return Ok(views.find(kind, &value).await?);
        }
        let mut conn = self.db.pool().acquire().await?;
        // Every record carrying an identifier is filed under its blocking key. The index
        // holds the key's hash: the records' own lists of keys rule out another key that
        // hashes alike.
        let key = blocking::identifier_key(kind, &value);
        let rows = sqlx::query(
            "SELECT r.customer_id, r.filed_keys FROM blocking_keys k \
             JOIN records r ON r.id = k.record_id \
             WHERE k.key = $1 ORDER BY r.customer_id LIMIT 1000",
        )
        .bind(stored_key(batch::filed_key(&key)))
        .fetch_all(&mut *conn)
        .await?;
        let mut customers: Vec<CustomerId> = Vec::new();
        for row in rows {
            let filed: Option<String> = row.try_get(1)?;
            let carries = filed_keys_of(filed.as_deref())?.contains(&key);
            let id = parse_customer_id(&row.try_get::<String, _>(0)?)?;
            if carries && customers.last() != Some(&id) {
                customers.push(id);
            }
        }
        customers.truncate(50);
        let mut views = Vec::with_capacity(customers.len());
        for id in customers {
            if let Some(view) = load_view(&mut conn, &id).await? {
                views.push(view);
            }
        }
        Ok(views)
    }

    pub async fn counts(&self) -> Result<StoreCounts, ServiceError> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM records), \
                    (SELECT COUNT(*) FROM customers WHERE merged_into IS NULL), \
                    (SELECT COUNT(*) FROM customers WHERE enrichment_pending = 1)",
        )
        .fetch_one(self.db.pool())
        .await?;
        Ok(StoreCounts {
            records: row.try_get(0)?,
            customers: row.try_get(1)?,
            enrichment_pending: row.try_get(2)?,
        })
    }
}

pub(crate) struct Recomputed {
    assignment: BTreeMap<RecordKey, CustomerId>,
    absorbed: Vec<CustomerId>,
    created: Vec<CustomerId>,
}

/// What a record sent again comes to when it changes nothing, against the version stored
/// (`stored`, with the source's `updated_at` it was stored with): ignored as stale when it is
/// older, unchanged when it holds the same content; `None` when it is an update.
pub(crate) fn settled_without_write(
    stored: &Profile,
    stored_updated_at: Option<i64>,
    incoming: &Profile,
) -> Option<IngestOutcome> {
    let incoming_updated_at = incoming.updated_at.map(|t| t.timestamp_millis());
    if let (Some(new), Some(old)) = (incoming_updated_at, stored_updated_at) {
        if new < old {
            return Some(IngestOutcome::IgnoredStale);
        }
    }
    stored
        .same_content(incoming)
        .then_some(IngestOutcome::Unchanged)
}

fn unchanged(key: RecordKey, stored: &StoredRecord, outcome: IngestOutcome) -> IngestResult {
    IngestResult {
        record: key,
        customer_id: stored.customer_id.clone(),
        outcome,
        merged_customer_ids: Vec::new(),
        split_customer_ids: Vec::new(),
    }
}

fn most_common(ids: &[CustomerId]) -> Option<CustomerId> {
    let mut counts: BTreeMap<&CustomerId, usize> = BTreeMap::new();
    for id in ids {
        *counts.entry(id).or_default() += 1;
    }
    counts
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0)))
        .map(|(id, _)| id.clone())
}

/// Normalizes a look-up value exactly as ingest normalizes the identifier.
fn normalize_lookup(kind: IdentifierKind, raw: &str) -> Result<String, ServiceError> {
    let field = kind.as_str();
    let value = match kind {
        IdentifierKind::Email => c360_domain::Email::parse_field(raw, field)?.to_string(),
        IdentifierKind::Phone => c360_domain::Phone::parse_in(raw, field, None)?.to_string(),
        _ => c360_domain::OpaqueId::parse_field(raw, field)?.to_string(),
    };
    Ok(normalize::identifier(kind, &value))
}

impl From<c360_domain::FieldError> for ServiceError {
    fn from(error: c360_domain::FieldError) -> Self {
        Self::Invalid(error.into())
    }
}

pub(crate) fn to_json<T: Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(crate) fn record_from_row(row: &sqlx::any::AnyRow) -> Result<StoredRecord, StoreError> {
    let profile: String = row.try_get("profile")?;
    Ok(StoredRecord {
        profile: serde_json::from_str(&profile)
            .map_err(|e| StoreError::Corrupt(format!("record profile: {e}")))?,
        customer_id: parse_customer_id(&row.try_get::<String, _>("customer_id")?)?,
        source_updated_at: row.try_get("source_updated_at")?,
        first_seen_at: row.try_get("first_seen_at")?,
        last_changed_at: row.try_get("last_changed_at")?,
    })
}

pub(crate) const RECORD_COLUMNS: &str =
    "r.profile, r.customer_id, r.source_updated_at, r.first_seen_at, r.last_changed_at";

pub(crate) async fn load_record(
    conn: &mut AnyConnection,
    key: &RecordKey,
) -> Result<Option<StoredRecord>, StoreError> {
    let sql =
        format!("SELECT {RECORD_COLUMNS} FROM records r WHERE r.source = $1 AND r.source_id = $2");
    let row = sqlx::query(&sql)
        .bind(key.source.as_str())
        .bind(key.source_id.as_str())
        .fetch_optional(&mut *conn)
        .await?;
    row.as_ref().map(record_from_row).transpose()
}

/// Stored records sharing at least one blocking key with the probe, the probe itself excluded.
/// A key shared by more than `caps.0` other records (identifier keys) or `caps.1` (fuzzy keys)
/// is skipped, never compared all-to-all: a placeholder phone, a shared mailbox, a common name
/// in a big city say little about who this is, and the batch resolver skips them too.
pub(crate) async fn load_candidates(
    conn: &mut AnyConnection,
    keys: &[String],
    probe: &RecordKey,
    caps: (usize, usize),
) -> Result<Vec<StoredRecord>, StoreError> {
    let mut seen: BTreeSet<RecordKey> = BTreeSet::new();
    let mut out = Vec::new();
    for key in keys {
        let cap = if blocking::is_identifier_key(key) {
            caps.0
        } else {
            caps.1
        };
        // At most cap + 2 rows (the probe itself may be among them): enough to tell an
        // oversized block, which is skipped as the batch resolver skips it, without reading
        // it. (Taking the newest `cap` of a large block instead meant joining and sorting all
        // of it: tens of milliseconds per common-name key on a store of 240,000 records.)
        let sql = format!(
            "SELECT {RECORD_COLUMNS} FROM \
             (SELECT record_id FROM blocking_keys WHERE key = $1 LIMIT {}) k \
             JOIN records r ON r.id = k.record_id",
            cap + 2
        );
        let rows = sqlx::query(&sql)
            .bind(stored_key(batch::filed_key(key)))
            .fetch_all(&mut *conn)
            .await?;
        let block: Vec<StoredRecord> = rows
            .iter()
            .map(record_from_row)
            .filter(|r| !matches!(r, Ok(stored) if &stored.profile.key() == probe))
            .collect::<Result<_, _>>()?;
        if block.len() > cap {
            tracing::debug!(
                key_kind = key.split(':').next().unwrap_or(""),
                cap,
                "blocking key shared by more records than its cap; skipped"
            );
            continue;
        }
        for stored in block {
            if seen.insert(stored.profile.key()) {
                out.push(stored);
            }
        }
    }
    Ok(out)
}

/// The distinct customers of the given records.
async fn customers_of(
    conn: &mut AnyConnection,
    keys: &[RecordKey],
) -> Result<Vec<CustomerId>, StoreError> {
    let owners = customer_of_each(conn, keys).await?;
    let set: BTreeSet<CustomerId> = owners.into_values().collect();
    Ok(set.into_iter().collect())
}

pub(crate) async fn customer_of_each(
    conn: &mut AnyConnection,
    keys: &[RecordKey],
) -> Result<HashMap<RecordKey, CustomerId>, StoreError> {
    let mut out = HashMap::new();
    let sql = format!(
        "SELECT source, source_id, customer_id FROM records \
         WHERE (source, source_id) IN (SELECT c0, c1 FROM {})",
        json_rows(conn, 1, 2, "v")
    );
    for row in fetch_json_rows(conn, &sql, &key_rows(keys)).await? {
        out.insert(
            key_from_row(&row, 0)?,
            parse_customer_id(&row.try_get::<String, _>(2)?)?,
        );
    }
    Ok(out)
}

/// The stored version of each of `keys` that is stored: its profile and the source's
/// `updated_at` it was stored with.
pub(crate) async fn stored_versions(
    conn: &mut AnyConnection,
    keys: &[RecordKey],
) -> Result<HashMap<RecordKey, (Profile, Option<i64>)>, StoreError> {
    let sql = format!(
        "SELECT source, source_id, profile, source_updated_at FROM records \
         WHERE (source, source_id) IN (SELECT c0, c1 FROM {})",
        json_rows(conn, 1, 2, "v")
    );
    let mut out = HashMap::new();
    for row in fetch_json_rows(conn, &sql, &key_rows(keys)).await? {
        let profile: String = row.try_get(2)?;
        let profile = serde_json::from_str(&profile)
            .map_err(|e| StoreError::Corrupt(format!("record profile: {e}")))?;
        out.insert(key_from_row(&row, 0)?, (profile, row.try_get(3)?));
    }
    Ok(out)
}

/// Record keys as the rows of [`json_rows`]: `c0` the source, `c1` the source id.
fn key_rows(keys: &[RecordKey]) -> Vec<(&str, &str)> {
    keys.iter()
        .map(|k| (k.source.as_str(), k.source_id.as_str()))
        .collect()
}

pub(crate) fn key_from_row(row: &sqlx::any::AnyRow, first: usize) -> Result<RecordKey, StoreError> {
    let source: String = row.try_get(first)?;
    let source_id: String = row.try_get(first + 1)?;
    Ok(RecordKey {
        source: SourceName::parse(&source).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        source_id: SourceId::parse(&source_id).map_err(|e| StoreError::Corrupt(e.to_string()))?,
    })
}

/// The records of the customers, ordered by key.
pub(crate) async fn records_of_customers(
    conn: &mut AnyConnection,
    ids: &[CustomerId],
) -> Result<Vec<StoredRecord>, StoreError> {
    records_of_customers_except(conn, ids, &HashSet::new()).await
}

/// The records of the customers, ordered by key, except those in `held`, which are not
/// decoded (a bulk chunk holds most members of the customers it reads already).
pub(crate) async fn records_of_customers_except(
    conn: &mut AnyConnection,
    ids: &[CustomerId],
    held: &HashSet<RecordKey>,
) -> Result<Vec<StoredRecord>, StoreError> {
    let sql = format!(
        "SELECT r.source, r.source_id, {RECORD_COLUMNS} FROM records r \
         WHERE r.customer_id IN (SELECT c0 FROM {}) ORDER BY r.source, r.source_id",
        json_rows(conn, 1, 1, "v")
    );
    let held: HashSet<(&str, &str)> = held
        .iter()
        .map(|key| (key.source.as_str(), key.source_id.as_str()))
        .collect();
    let ids: Vec<[&str; 1]> = ids.iter().map(|id| [id.as_str()]).collect();
    let mut records = Vec::new();
    for row in fetch_json_rows(conn, &sql, &ids).await? {
        let source: &str = row.try_get(0)?;
        let source_id: &str = row.try_get(1)?;
        if !held.contains(&(source, source_id)) {
            records.push(record_from_row(&row)?);
        }
    }
    Ok(records)
}

/// Edges whose first endpoint belongs to one of the customers (both ends are filtered by the
/// caller against the member set).
async fn links_among(
    conn: &mut AnyConnection,
    ids: &[CustomerId],
) -> Result<Vec<(RecordKey, RecordKey)>, StoreError> {
    let sql = format!(
        "SELECT l.a_source, l.a_source_id, l.b_source, l.b_source_id FROM links l \
         JOIN records r ON r.source = l.a_source AND r.source_id = l.a_source_id \
         WHERE r.customer_id IN ({})",
        placeholders(1, ids.len())
    );
    let mut query = sqlx::query(&sql);
    for id in ids {
        query = query.bind(id.as_str());
    }
    query
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|row| Ok((key_from_row(row, 0)?, key_from_row(row, 2)?)))
        .collect()
}

/// Changes to the stored name counts: (field, normalized name, +1 or -1).
pub(crate) type NameCounts = Vec<(Field, String, i64)>;

pub(crate) fn name_changes(features: &Features, delta: i64) -> NameCounts {
    name_values(features)
        .into_iter()
        .map(|(field, value)| (field, value.to_owned(), delta))
        .collect()
}

/// Applies name-count changes, in a fixed order so that two writers never wait on each other's
/// rows in a cycle.
pub(crate) async fn apply_name_counts(
    conn: &mut AnyConnection,
    changes: NameCounts,
) -> Result<(), StoreError> {
    // Summed per name and written in sorted order, so that two writers never wait on each
    // other's rows in a cycle.
    let mut sums: BTreeMap<(Field, String), i64> = BTreeMap::new();
    for (field, value, delta) in changes {
        *sums.entry((field, value)).or_default() += delta;
    }
    let sums: Vec<((Field, String), i64)> = sums.into_iter().filter(|(_, d)| *d != 0).collect();
    let values: Vec<(&str, &str, i64)> = sums
        .iter()
        .map(|((field, value), delta)| (field.name(), value.as_str(), *delta))
        .collect();
    // `WHERE true` tells SQLite's parser that ON CONFLICT is the upsert clause, not a join's.
    let sql = format!(
        "INSERT INTO name_counts (field, value, count) \
         SELECT c0, c1, CAST(c2 AS BIGINT) FROM {} WHERE true \
         ON CONFLICT (field, value) DO UPDATE SET count = name_counts.count + excluded.count",
        json_rows(conn, 1, 3, "v")
    );
    execute_json_rows(conn, &sql, &values, &[]).await
}

/// Active cannot-links whose both ends are among `keys`.
pub(crate) async fn cannot_links_among(
    conn: &mut AnyConnection,
    keys: &[RecordKey],
) -> Result<Vec<(RecordKey, RecordKey)>, StoreError> {
    let mut out = Vec::new();
    // Most stores have none, and a bulk chunk asks about hundreds of thousands of records.
    let any: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM manual_links WHERE kind = 'cannot_link' AND undone_at IS NULL LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await?;
    if any.is_none() {
        return Ok(out);
    }
    let sql = format!(
        "SELECT a_source, a_source_id, b_source, b_source_id FROM manual_links \
         WHERE kind = 'cannot_link' AND undone_at IS NULL \
         AND (a_source, a_source_id) IN (SELECT c0, c1 FROM {})",
        json_rows(conn, 1, 2, "v")
    );
    for row in fetch_json_rows(conn, &sql, &key_rows(keys)).await? {
        out.push((key_from_row(&row, 0)?, key_from_row(&row, 2)?));
    }
    let members: BTreeSet<&RecordKey> = keys.iter().collect();
    out.retain(|(_, b)| members.contains(b));
    Ok(out)
}

/// Records the probe may never share a customer with (active cannot-links).
pub(crate) async fn cannot_link_partners(
    conn: &mut AnyConnection,
    key: &RecordKey,
) -> Result<BTreeSet<RecordKey>, StoreError> {
    let rows = sqlx::query(
        "SELECT a_source, a_source_id, b_source, b_source_id FROM manual_links \
         WHERE kind = 'cannot_link' AND undone_at IS NULL \
         AND ((a_source = $1 AND a_source_id = $2) OR (b_source = $1 AND b_source_id = $2))",
    )
    .bind(key.source.as_str())
    .bind(key.source_id.as_str())
    .fetch_all(&mut *conn)
    .await?;
    let mut out = BTreeSet::new();
    for row in rows {
        let (a, b) = (key_from_row(&row, 0)?, key_from_row(&row, 2)?);
        out.insert(if &a == key { b } else { a });
    }
    Ok(out)
}

async fn insert_customer(
    conn: &mut AnyConnection,
    id: &CustomerId,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO customers (id, golden, record_count, version, created_at, updated_at) \
         VALUES ($1, '{}', 0, 0, $2, $2)",
    )
    .bind(id.as_str())
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn delete_customer(conn: &mut AnyConnection, id: &CustomerId) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM customers WHERE id = $1 OR merged_into = $1")
        .bind(id.as_str())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Inserts a new record, first seen `now`, with its blocking keys and customer, and files it
/// under its identifiers and those keys: the bulk path's writes, for one record.
pub(crate) async fn insert_record(
    conn: &mut AnyConnection,
    profile: &Profile,
    keys: &[String],
    customer_id: &CustomerId,
    now: i64,
) -> Result<(), StoreError> {
    let filed = [(profile, keys)];
    let customers = std::slice::from_ref(customer_id);
    let first = reserve_record_ids(conn, 1).await?;
    insert_new_records(conn, &NewRecordRows::of(&filed)?, customers, now, first).await?;
    write_index(conn, &IndexRows::of(&filed)?, first).await
}

/// New records' rows of `records`, made ahead of the write (a bulk chunk makes them before it
/// takes the writer lock): every cell but the record's customer, which resolution decides.
/// SQLite binds the cells as they are ([`insert_new_records`]); PostgreSQL takes them as JSON
/// rows ([`NewRecordRows::params`]).
pub(crate) struct NewRecordRows {
    /// By record.
    cells: Vec<RecordCells>,
    /// Record indices in key order, as the B-trees want the rows; also the order of their
    /// numbers (see [`record_numbers`]).
    key_order: Vec<usize>,
}

/// A new record's cells in `records`, but its customer and number.
struct RecordCells {
    source: String,
    source_id: String,
    /// The profile as JSON.
    profile: String,
    source_updated_at: Option<i64>,
    /// The blocking keys it is filed under, as a JSON array.
    filed_keys: String,
}

/// The positions of `records` in key order, `(source, source_id)`: the order in which they
/// are inserted and numbered.
pub(crate) fn key_order(records: &[(&Profile, &[String])]) -> Vec<usize> {
    sorted_order(records, |(profile, _)| {
        [profile.source.as_str(), profile.source_id.as_str()]
    })
}

/// Each record's number (`records.id`) counted from the first of its batch, by record: its
/// place in `key_order`. Numbered in key order, new records append to the table's B-tree and
/// to its `(source, source_id)` index alike.
pub(crate) fn record_numbers(key_order: &[usize]) -> Vec<u32> {
    let mut numbers = vec![0; key_order.len()];
    for (at, &i) in key_order.iter().enumerate() {
        numbers[i] = at as u32;
    }
    numbers
}

/// Each record with the blocking keys it is filed under, as [`NewRecordRows::of`] and
/// [`IndexRows::of`] take them.
pub(crate) fn filed<'a>(
    profiles: &'a [Profile],
    keys: &'a [Vec<String>],
) -> Vec<(&'a Profile, &'a [String])> {
    profiles
        .iter()
        .zip(keys)
        .map(|(profile, keys)| (profile, keys.as_slice()))
        .collect()
}

impl NewRecordRows {
    /// The rows of `records`, each with the blocking keys it is filed under; CPU-bound, on
    /// every core.
    pub(crate) fn of(records: &[(&Profile, &[String])]) -> Result<Self, StoreError> {
        Self::in_order(records, key_order(records))
    }

    /// [`Self::of`], given the records' [`key_order`].
    pub(crate) fn in_order(
        records: &[(&Profile, &[String])],
        key_order: Vec<usize>,
    ) -> Result<Self, StoreError> {
        let cells = batch::parallel_map(records, |(profile, keys)| {
            Ok(RecordCells {
                source: profile.source.as_str().to_owned(),
                source_id: profile.source_id.as_str().to_owned(),
                profile: to_json(profile)?,
                source_updated_at: profile.updated_at.map(|t| t.timestamp_millis()),
                filed_keys: to_json(keys)?,
            })
        })
        .into_iter()
        .collect::<Result<Vec<RecordCells>, StoreError>>()?;
        Ok(Self { cells, key_order })
    }

    /// The parameters of PostgreSQL's INSERTs of these rows (see [`json_rows`]), each row
    /// closed with its record's customer (`customers`, by record) and its number from the
    /// first, on every core: a bulk chunk builds them while the chunk before it is written, not
    /// while it holds the writer.
    pub(crate) fn params(&self, customers: &[CustomerId]) -> Result<Vec<String>, StoreError> {
        let parts: Vec<(usize, &[usize])> = self
            .key_order
            .chunks(JSON_ROWS_PER_STATEMENT)
            .enumerate()
            .collect();
        batch::parallel_map(&parts, |&(part, records)| {
            let rows: Vec<_> = records
                .iter()
                .enumerate()
                .map(|(n, &i)| {
                    let cells = &self.cells[i];
                    (
                        &cells.source,
                        &cells.source_id,
                        &cells.profile,
                        cells.source_updated_at,
                        &cells.filed_keys,
                        customers[i].as_str(),
                        part * JSON_ROWS_PER_STATEMENT + n,
                    )
                })
                .collect();
            json_rows_param(&rows)
        })
        .into_iter()
        .collect()
    }
}

/// Inserts new records, first seen `now` and numbered from `first` (see
/// [`reserve_record_ids`]): `rows` as built by [`NewRecordRows::of`] and the customer of each
/// (by record). Files nothing in the index: see [`write_index`]. SQLite binds each cell (see
/// [`insert_bound_rows`]); PostgreSQL reads JSON rows.
pub(crate) async fn insert_new_records(
    conn: &mut AnyConnection,
    rows: &NewRecordRows,
    customers: &[CustomerId],
    now: i64,
    first: i64,
) -> Result<(), StoreError> {
    if conn.backend_name() == "PostgreSQL" {
        return insert_new_record_params(conn, &rows.params(customers)?, now, first).await;
    }
    insert_bound_rows(
        conn,
        (
            "INSERT INTO records (id, source, source_id, customer_id, profile, \
             source_updated_at, first_seen_at, last_changed_at, filed_keys)",
            "",
        ),
        &rows.key_order,
        &(rows, customers, first, now),
        |n, &i, &(rows, customers, first, now)| {
            let cells = &rows.cells[i];
            [
                Bound::Int(first + n as i64),
                Bound::Text(&cells.source),
                Bound::Text(&cells.source_id),
                Bound::Text(customers[i].as_str()),
                Bound::Text(&cells.profile),
                Bound::MaybeInt(cells.source_updated_at),
                Bound::Int(now),
                Bound::Int(now),
                Bound::Text(&cells.filed_keys),
            ]
        },
    )
    .await
}

/// Inserts new records, first seen `now` and numbered from `first`, from the parameters
/// [`NewRecordRows::params`] built.
pub(crate) async fn insert_new_record_params(
    conn: &mut AnyConnection,
    params: &[String],
    now: i64,
    first: i64,
) -> Result<(), StoreError> {
    let sql = format!(
        "INSERT INTO records (id, source, source_id, customer_id, profile, source_updated_at, \
         first_seen_at, last_changed_at, filed_keys) \
         SELECT CAST(c6 AS BIGINT) + $3, c0, c1, c5, c2, CAST(c3 AS BIGINT), $2, $2, c4 FROM {}",
        json_rows(conn, 1, 7, "v")
    );
    execute_json_params(conn, &sql, params, &[now, first]).await
}

/// The rows that file records under their blocking keys (identifiers included), in index
/// order and serialized as the parameters of their INSERTs: built ahead of the write, which a
/// bulk chunk then runs while it scores candidates. A row is two integers: the 64-bit number
/// [`batch::filed_key`] makes of a key, and the record's number (`records.id`), counted from
/// the first of its batch until the write knows that first (see [`reserve_record_ids`]). The
/// index holds up to 16 rows per record (8.4 on average for `c360 gen` records: 8,417,181
/// rows for 1,003,500).
pub(crate) struct IndexRows {
    keys: Vec<String>,
}

impl IndexRows {
    /// The index rows of `records`, each with the blocking keys it is filed under (which
    /// `records.filed_keys` must list), numbered in their [`key_order`].
    pub(crate) fn of(records: &[(&Profile, &[String])]) -> Result<Self, StoreError> {
        let filed: Vec<Vec<u64>> = records
            .iter()
            .map(|(_, keys)| batch::filed_keys(keys))
            .collect();
        let filed: Vec<&[u64]> = filed.iter().map(Vec::as_slice).collect();
        Self::of_filed(&filed, &record_numbers(&key_order(records)))
    }

    /// The index rows of records filed under `filed` (by record, each key as
    /// [`batch::filed_key`] files it), numbered `numbers` (by record) from the first.
    pub(crate) fn of_filed(filed: &[&[u64]], numbers: &[u32]) -> Result<Self, StoreError> {
        let mut rows: Vec<(i64, u32)> = Vec::with_capacity(filed.iter().map(|f| f.len()).sum());
        for (keys, &number) in filed.iter().zip(numbers) {
            rows.extend(keys.iter().map(|&key| (stored_key(key), number)));
        }
        // In index order: each B-tree page is then visited once per chunk, not once per row.
        // Two keys of a record that hash alike are filed once.
        rows.sort_unstable();
        rows.dedup();
        Ok(Self {
            keys: statement_params(&rows)?,
        })
    }
}

/// The positions of `items` in the order of `texts(item)`, strings compared one after the
/// other, as `sort_unstable_by_key` would order them. Each item's leading bytes are compared
/// first as one integer, so that most comparisons touch neither the strings nor `memcmp`:
/// sorting the 4 million index rows of a 250,000-record chunk as string triples was 6% of a
/// bulk load's CPU (`perf`), most of it in `memcmp` on strings scattered through memory. (The
/// index rows now sort by their integer keys; the records' rows still sort this way.)
pub(crate) fn sorted_order<T, const N: usize>(
    items: &[T],
    texts: impl Fn(&T) -> [&str; N],
) -> Vec<usize> {
    let mut order: Vec<(u128, u32)> = items
        .iter()
        .enumerate()
        .map(|(i, item)| (leading_bytes(&texts(item)), i as u32))
        .collect();
    order.sort_unstable_by(|a, b| {
        a.0.cmp(&b.0)
            .then_with(|| texts(&items[a.1 as usize]).cmp(&texts(&items[b.1 as usize])))
    });
    order.into_iter().map(|(_, i)| i as usize).collect()
}

/// The first 16 bytes of `texts` joined by NUL, zero-padded, as a big-endian integer: for
/// strings without NUL, a smaller integer means an earlier tuple, and equal integers leave
/// the order to the strings.
fn leading_bytes(texts: &[&str]) -> u128 {
    let mut bytes = [0u8; 16];
    let mut at = 0;
    for (n, text) in texts.iter().enumerate() {
        if n > 0 {
            at += 1; // the NUL, already in place
        }
        if at >= bytes.len() {
            break;
        }
        let take = text.len().min(bytes.len() - at);
        bytes[at..at + take].copy_from_slice(&text.as_bytes()[..take]);
        at += take;
    }
    u128::from_be_bytes(bytes)
}

/// `rows` as the parameters of one statement per [`JSON_ROWS_PER_STATEMENT`], serialized on
/// every core.
pub(crate) fn statement_params<R: serde::Serialize + Sync>(
    rows: &[R],
) -> Result<Vec<String>, StoreError> {
    let parts: Vec<&[R]> = rows.chunks(JSON_ROWS_PER_STATEMENT).collect();
    batch::parallel_map(&parts, |part| json_rows_param(part))
        .into_iter()
        .collect()
}

/// Files records numbered from `first` under their blocking keys, in multi-row INSERTs: a
/// round trip per key would dominate ingest. Identifiers are blocking keys too
/// ([`blocking::identifier_key`]): look-ups by email, phone or id read the same rows.
pub(crate) async fn write_index(
    conn: &mut AnyConnection,
    rows: &IndexRows,
    first: i64,
) -> Result<(), StoreError> {
    execute_json_params(conn, &insert_index_sql(conn), &rows.keys, &[first]).await
}

/// Removes a stored record from the index: the blocking keys its row says it is filed under
/// (by primary key: blocking_keys has no index by record). The record's number, if stored.
async fn clear_index(conn: &mut AnyConnection, key: &RecordKey) -> Result<Option<i64>, StoreError> {
    let Some(row) =
        sqlx::query("SELECT id, filed_keys FROM records WHERE source = $1 AND source_id = $2")
            .bind(key.source.as_str())
            .bind(key.source_id.as_str())
            .fetch_optional(&mut *conn)
            .await?
    else {
        return Ok(None);
    };
    let id: i64 = row.try_get(0)?;
    let filed: Option<String> = row.try_get(1)?;
    let rows: Vec<[i64; 1]> = filed_keys_of(filed.as_deref())?
        .iter()
        .map(|k| [stored_key(batch::filed_key(k))])
        .collect();
    let sql = format!(
        "DELETE FROM blocking_keys WHERE record_id = $2 \
         AND key IN (SELECT CAST(c0 AS BIGINT) FROM {})",
        json_rows(conn, 1, 1, "v")
    );
    sqlx::query(&sql)
        .bind(json_rows_param(&rows)?)
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(Some(id))
}

pub(crate) async fn insert_links(
    conn: &mut AnyConnection,
    from: &RecordKey,
    links: &[Link],
    now: i64,
) -> Result<(), StoreError> {
    let mut edges = Vec::with_capacity(links.len());
    for link in links {
        edges.push((from.clone(), link.other.clone(), to_json(&link.evidence)?));
    }
    insert_edges(conn, &edges, now).await
}

/// Inserts edges `(a, b, evidence as JSON)` in multi-row INSERTs, each stored once with the
/// smaller key first; an edge already stored is kept.
pub(crate) async fn insert_edges(
    conn: &mut AnyConnection,
    edges: &[(RecordKey, RecordKey, String)],
    now: i64,
) -> Result<(), StoreError> {
    let edges = edges.to_vec();
    if conn.backend_name() == "PostgreSQL" {
        insert_edge_params(conn, &edge_params(edges)?, now).await
    } else {
        insert_edges_in_order(conn, &edges_in_order(edges), now).await
    }
}

/// `edges` as they are inserted: each with the smaller key first, in key order, each once.
pub(crate) fn edges_in_order(
    edges: Vec<(RecordKey, RecordKey, String)>,
) -> Vec<(RecordKey, RecordKey, String)> {
    let mut edges: Vec<(RecordKey, RecordKey, String)> = edges
        .into_iter()
        .map(|(a, b, evidence)| {
            if a <= b {
                (a, b, evidence)
            } else {
                (b, a, evidence)
            }
        })
        .collect();
    edges.sort_by(|x, y| (&x.0, &x.1).cmp(&(&y.0, &y.1)));
    edges.dedup_by(|x, y| x.0 == y.0 && x.1 == y.1);
    edges
}

/// Inserts edges put in order by [`edges_in_order`] on SQLite, which binds their values (see
/// [`insert_bound_rows`]); an edge already stored is kept.
pub(crate) async fn insert_edges_in_order(
    conn: &mut AnyConnection,
    edges: &[(RecordKey, RecordKey, String)],
    now: i64,
) -> Result<(), StoreError> {
    insert_bound_rows(
        conn,
        (
            "INSERT INTO links (a_source, a_source_id, b_source, b_source_id, evidence, \
             created_at)",
            " ON CONFLICT DO NOTHING",
        ),
        edges,
        &now,
        |_, (a, b, evidence), &now| {
            [
                Bound::Text(a.source.as_str()),
                Bound::Text(a.source_id.as_str()),
                Bound::Text(b.source.as_str()),
                Bound::Text(b.source_id.as_str()),
                Bound::Text(evidence),
                Bound::Int(now),
            ]
        },
    )
    .await
}

/// The parameters of the INSERTs of `edges` (see [`insert_edges`]), put in order by
/// [`edges_in_order`]; serialized on every core.
pub(crate) fn edge_params(
    edges: Vec<(RecordKey, RecordKey, String)>,
) -> Result<Vec<String>, StoreError> {
    let rows = edges_in_order(edges);
    let values: Vec<(&str, &str, &str, &str, &str)> = rows
        .iter()
        .map(|(a, b, evidence)| {
            (
                a.source.as_str(),
                a.source_id.as_str(),
                b.source.as_str(),
                b.source_id.as_str(),
                evidence.as_str(),
            )
        })
        .collect();
    statement_params(&values)
}

/// Inserts edges from the parameters [`edge_params`] built.
pub(crate) async fn insert_edge_params(
    conn: &mut AnyConnection,
    params: &[String],
    now: i64,
) -> Result<(), StoreError> {
    // `WHERE true` tells SQLite's parser that ON CONFLICT is the upsert clause, not a join's.
    let sql = format!(
        "INSERT INTO links (a_source, a_source_id, b_source, b_source_id, evidence, created_at) \
         SELECT c0, c1, c2, c3, c4, $2 FROM {} WHERE true ON CONFLICT DO NOTHING",
        json_rows(conn, 1, 5, "v")
    );
    execute_json_params(conn, &sql, params, &[now]).await
}

async fn delete_links_of(conn: &mut AnyConnection, key: &RecordKey) -> Result<(), StoreError> {
    sqlx::query(
        "DELETE FROM links WHERE (a_source = $1 AND a_source_id = $2) \
         OR (b_source = $1 AND b_source_id = $2)",
    )
    .bind(key.source.as_str())
    .bind(key.source_id.as_str())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn move_records(
    conn: &mut AnyConnection,
    keys: &[RecordKey],
    to: &CustomerId,
) -> Result<(), StoreError> {
    for chunk in keys.chunks(200) {
        let sql = format!(
            "UPDATE records SET customer_id = $1 WHERE (source, source_id) IN ({})",
            pair_placeholders(2, chunk.len())
        );
        let mut query = sqlx::query(&sql).bind(to.as_str());
        for key in chunk {
            query = query.bind(key.source.as_str()).bind(key.source_id.as_str());
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Moves every record of the `absorbed` customers to `survivor` and leaves each absorbed id
/// (and any id absorbed into it earlier) pointing at the survivor, so old ids keep resolving
/// in one hop.
pub(crate) async fn absorb(
    conn: &mut AnyConnection,
    absorbed: &[CustomerId],
    survivor: &CustomerId,
    now: i64,
) -> Result<(), StoreError> {
    absorb_all(conn, &[(survivor.clone(), absorbed.to_vec())], now).await
}

/// [`absorb`] for many merges at once, each a survivor with the customers it absorbs: three
/// statements in all, where two statements per merge cost a bulk chunk seconds (5,000
/// merges). A customer absorbed here must be live, and no survivor absorbed.
pub(crate) async fn absorb_all(
    conn: &mut AnyConnection,
    merges: &[(CustomerId, Vec<CustomerId>)],
    now: i64,
) -> Result<(), StoreError> {
    let rows: Vec<(&str, &str)> = merges
        .iter()
        .flat_map(|(survivor, absorbed)| absorbed.iter().map(|id| (id.as_str(), survivor.as_str())))
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    let moves = json_rows(conn, 1, 2, "v");
    let sql = format!(
        "UPDATE records SET customer_id = v.c1 FROM {moves} WHERE records.customer_id = v.c0"
    );
    execute_json_rows(conn, &sql, &rows, &[]).await?;
    // Ids absorbed earlier into an absorbed one first, then the absorbed ones themselves
    // (live, so never among the former).
    for absorbed_by in ["customers.merged_into = v.c0", "customers.id = v.c0"] {
        let sql = format!(
            "UPDATE customers SET merged_into = v.c1, golden = '{{}}', record_count = 0, \
             incoherence = NULL, enrichment = NULL, enrichment_key = NULL, \
             enrichment_pending = 0, blockgroup_geoid = NULL, version = version + 1, \
             updated_at = $2 FROM {moves} WHERE {absorbed_by}"
        );
        execute_json_rows(conn, &sql, &rows, &[now]).await?;
    }
    Ok(())
}

/// Recomputes a customer's golden record, record count and coherence (whether it holds two
/// records a guard rail says are different people), and bumps its version.
pub(crate) async fn refresh_customer(
    conn: &mut AnyConnection,
    id: &CustomerId,
    engine: &Engine,
    now: i64,
) -> Result<(), StoreError> {
    let members = member_records(conn, id).await?;
    let features: Vec<Features> = members
        .iter()
        .take(c360_matching::INCOHERENCE_CHECK_LIMIT)
        .map(|m| Features::of(&m.record))
        .collect();
    let summary = CustomerSummary::of(engine, id, &members, &features.iter().collect::<Vec<_>>())?;
    update_customers(conn, &[summary], now).await
}

/// What a customer's row says of its members: the golden record, how many there are, the
/// address key its enrichment follows, and whether a guard rail says it holds two people.
pub(crate) struct CustomerSummary {
    id: CustomerId,
    golden: String,
    record_count: i64,
    address_key: Option<String>,
    incoherence: Option<String>,
}

impl CustomerSummary {
    /// From all the members of customer `id` and the features of (at least the first
    /// [`c360_matching::INCOHERENCE_CHECK_LIMIT`] of) them, in the same order.
    pub(crate) fn of(
        engine: &Engine,
        id: &CustomerId,
        members: &[MemberRecord],
        features: &[&Features],
    ) -> Result<Self, StoreError> {
        let max_records = engine.config().max_customer_records;
        if members.len() > max_records {
            tracing::warn!(
                customer_id = %id,
                records = members.len(),
                "customer larger than max_customer_records: see GET /v1/reports/large-customers"
            );
        }
        let incoherence = incoherence_of(engine, members, features);
        if let Some(found) = &incoherence {
            tracing::warn!(
                customer_id = %id,
                guard = %found.guard,
                "customer holds records a guard rail says are different people: see GET /v1/reports/incoherent-customers"
            );
        }
        let golden = survivorship::golden_record(members, &engine.config().survivorship);
        let address_key = golden
            .address
            .as_ref()
            .and_then(|a| crate::enrich::address_key(&a.value));
        Ok(Self {
            id: id.clone(),
            golden: to_json(&golden)?,
            record_count: members.len() as i64,
            address_key,
            incoherence: incoherence.as_ref().map(to_json).transpose()?,
        })
    }
}

/// Writes the summaries of customers that exist, bumping their versions, all in one
/// statement: a bulk chunk grows thousands of customers, and a statement per customer would
/// dominate it. Enrichment follows the golden address: a new key makes the customer pending
/// (and drops the old enrichment); the same key keeps what is there. SET reads the old row.
pub(crate) async fn update_customers(
    conn: &mut AnyConnection,
    summaries: &[CustomerSummary],
    now: i64,
) -> Result<(), StoreError> {
    update_customer_params(conn, &customer_update_params(summaries)?, now).await
}

/// The parameters of the UPDATEs that store `summaries` (see [`update_customers`]),
/// serialized on every core.
pub(crate) fn customer_update_params(
    summaries: &[CustomerSummary],
) -> Result<Vec<String>, StoreError> {
    let values: Vec<_> = summaries
        .iter()
        .map(|s| {
            (
                s.id.as_str(),
                s.golden.as_str(),
                s.record_count,
                s.address_key.as_deref(),
                s.incoherence.as_deref(),
            )
        })
        .collect();
    statement_params(&values)
}

/// Updates customers from the parameters [`customer_update_params`] built.
pub(crate) async fn update_customer_params(
    conn: &mut AnyConnection,
    params: &[String],
    now: i64,
) -> Result<(), StoreError> {
    let sql = format!(
        "UPDATE customers SET golden = v.c1, record_count = CAST(v.c2 AS BIGINT), \
         version = version + 1, updated_at = $2, merged_into = NULL, incoherence = v.c4, \
         enrichment_pending = CASE WHEN enrichment_key IS NOT DISTINCT FROM v.c3 \
           THEN enrichment_pending WHEN v.c3 IS NULL THEN 0 ELSE 1 END, \
         enrichment = CASE WHEN enrichment_key IS NOT DISTINCT FROM v.c3 \
           THEN enrichment ELSE NULL END, \
         blockgroup_geoid = CASE WHEN enrichment_key IS NOT DISTINCT FROM v.c3 \
           THEN blockgroup_geoid ELSE NULL END, \
         enrichment_key = v.c3 \
         FROM {} WHERE customers.id = v.c0",
        json_rows(conn, 1, 5, "v")
    );
    execute_json_params(conn, &sql, params, &[now]).await
}

/// The first two members a guard rail says are different people, if any; `features` are
/// those of the members, in order (the first ones suffice).
fn incoherence_of(
    engine: &Engine,
    members: &[MemberRecord],
    features: &[&Features],
) -> Option<Incoherence> {
    if members.len() < 2 {
        return None;
    }
    let found = engine.incoherence(features)?;
    Some(Incoherence {
        a: members[found.first].record.key(),
        b: members[found.second].record.key(),
        guard: found.guard,
    })
}

async fn member_records(
    conn: &mut AnyConnection,
    id: &CustomerId,
) -> Result<Vec<MemberRecord>, StoreError> {
    Ok(records_of_customers(conn, std::slice::from_ref(id))
        .await?
        .into_iter()
        .map(|s| MemberRecord {
            record: s.profile,
            first_seen_at: to_time(s.first_seen_at),
            last_changed_at: to_time(s.last_changed_at),
        })
        .collect())
}

/// The enrichment as stored, or what its absence means (no address, or pending).
fn stored_enrichment(row: &sqlx::any::AnyRow) -> Result<Enrichment, StoreError> {
    stored_enrichment_at(row, 4)
}

/// [`stored_enrichment`] from the columns `enrichment, enrichment_key, enrichment_pending`
/// starting at `first`.
pub(crate) fn stored_enrichment_at(
    row: &sqlx::any::AnyRow,
    first: usize,
) -> Result<Enrichment, StoreError> {
    let stored: Option<String> = row.try_get(first)?;
    let key: Option<String> = row.try_get(first + 1)?;
    let pending: i64 = row.try_get(first + 2)?;
    let mut enrichment = match stored {
        Some(json) => serde_json::from_str(&json)
            .map_err(|e| StoreError::Corrupt(format!("enrichment: {e}")))?,
        None => Enrichment::default(),
    };
    if pending == 1 {
        enrichment.status = EnrichmentStatus::Pending;
    } else if key.is_none() {
        enrichment = Enrichment::default();
    }
    Ok(enrichment)
}

pub(crate) async fn load_view(
    conn: &mut AnyConnection,
    id: &CustomerId,
) -> Result<Option<CustomerView>, StoreError> {
    let Some(row) = sqlx::query(
        "SELECT golden, version, created_at, updated_at, enrichment, enrichment_key, \
         enrichment_pending FROM customers WHERE id = $1 AND merged_into IS NULL",
    )
    .bind(id.as_str())
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(None);
    };
    let golden: String = row.try_get(0)?;
    let golden: GoldenRecord = serde_json::from_str(&golden)
        .map_err(|e| StoreError::Corrupt(format!("golden record: {e}")))?;
    let records = member_records(conn, id).await?;
    // The identifiers of the members, normalized as they are filed and looked up, with how
    // many members carry each; in the order of their kind's name, then value.
    let mut counted: BTreeMap<(&'static str, String), (IdentifierKind, u32)> = BTreeMap::new();
    for member in &records {
        for (kind, value) in identifier_keys(&member.record) {
            counted.entry((kind.as_str(), value)).or_insert((kind, 0)).1 += 1;
        }
    }
    let identifiers = counted
        .into_iter()
        .map(|((_, value), (kind, records))| IdentifierEntry {
            kind,
            value,
            records,
        })
        .collect();
    Ok(Some(CustomerView {
        customer_id: id.clone(),
        resolved_from: None,
        golden,
        records,
        identifiers,
        enrichment: stored_enrichment(&row)?,
        version: row.try_get(1)?,
        created_at: to_time(row.try_get(2)?),
        updated_at: to_time(row.try_get(3)?),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(source: &str, id: &str, updated_at: Option<&str>) -> Profile {
        let input = serde_json::json!({
            "source": source, "source_id": id, "first_name": "Zoë \"Z\"", "last_name": "O'Neil",
            "updated_at": updated_at,
        });
        Profile::parse(&serde_json::from_value(input).unwrap()).unwrap()
    }

    #[test]
    fn sorted_order_is_the_order_of_the_string_tuples() {
        // Shared and cut-off leading bytes, strings that end where another goes on, empty
        // strings, keys longer than the 16 bytes compared as one integer, and repeats.
        let mut rows: Vec<[String; 3]> = Vec::new();
        let texts = [
            "",
            "a",
            "ab",
            "abc",
            "dn:19800101|S530",
            "dn:19800101|S530x",
            "é",
            "a|b",
        ];
        for (n, a) in texts.iter().enumerate() {
            for b in &texts[..4] {
                for c in ["1", "10", "2", ""] {
                    rows.push([a.to_string(), b.to_string(), c.to_string()]);
                    if n % 3 == 0 {
                        rows.push([a.to_string(), b.to_string(), c.to_string()]);
                    }
                }
            }
        }
        rows.reverse();
        rows.swap(3, 77);
        fn as_strs(row: &[String; 3]) -> [&str; 3] {
            [row[0].as_str(), row[1].as_str(), row[2].as_str()]
        }
        let sorted: Vec<[&str; 3]> = sorted_order(&rows, as_strs)
            .into_iter()
            .map(|i| as_strs(&rows[i]))
            .collect();
        let mut expected: Vec<[&str; 3]> = rows.iter().map(as_strs).collect();
        expected.sort_unstable();
        assert_eq!(sorted, expected);
        assert_eq!(sorted_order(&rows[..0], as_strs), Vec::<usize>::new());
    }

    #[test]
    fn edges_go_in_with_the_smaller_key_first_in_key_order_once() {
        let key = |id: &str| RecordKey {
            source: SourceName::parse("crm").unwrap(),
            source_id: SourceId::parse(id).unwrap(),
        };
        let edges = vec![
            (key("3"), key("1"), "a".to_owned()),
            (key("1"), key("2"), "b".to_owned()),
            (key("1"), key("3"), "c".to_owned()),
        ];
        let in_order = edges_in_order(edges);
        let ids: Vec<(&str, &str)> = in_order
            .iter()
            .map(|(a, b, _)| (a.source_id.as_str(), b.source_id.as_str()))
            .collect();
        assert_eq!(ids, [("1", "2"), ("1", "3")], "one of the two 1-3 edges");
    }

    #[test]
    fn new_record_rows_take_their_customer_last_and_come_in_key_order() {
        let profiles = [
            profile("web", "2", None),
            profile("crm", "9", Some("2026-11-01T10:00:00Z")),
            profile("crm", "10", None),
        ];
        let keys = vec![
            vec!["n:a".to_owned()],
            vec!["n:b".to_owned(), "e:x\"y".to_owned()],
            vec![],
        ];
        let rows = NewRecordRows::of(&filed(&profiles, &keys)).unwrap();
        let order: Vec<&str> = rows
            .key_order
            .iter()
            .map(|&i| profiles[i].source_id.as_str())
            .collect();
        assert_eq!(order, ["10", "9", "2"], "by (source, source_id), as text");

        let customers: Vec<CustomerId> = profiles.iter().map(|_| new_customer_id()).collect();
        let params = rows.params(&customers).unwrap();
        assert_eq!(params.len(), 1);
        let all: Vec<Vec<serde_json::Value>> = serde_json::from_str(&params[0]).unwrap();
        let numbers: Vec<&serde_json::Value> = all.iter().map(|row| &row[6]).collect();
        assert_eq!(numbers, [0, 1, 2], "numbered in key order");
        assert_eq!(record_numbers(&rows.key_order), [2, 1, 0], "by record");
        let (cells, customer) = (&all[1], &customers[1]);
        assert_eq!(cells.len(), 7);
        assert_eq!(cells[0], "crm");
        assert_eq!(cells[1], "9");
        let stored: Profile = serde_json::from_str(cells[2].as_str().unwrap()).unwrap();
        assert_eq!(
            stored, profiles[1],
            "the profile as JSON text, escapes and all"
        );
        assert_eq!(cells[3], profiles[1].updated_at.unwrap().timestamp_millis());
        let filed: Vec<String> = serde_json::from_str(cells[4].as_str().unwrap()).unwrap();
        assert_eq!(filed, keys[1]);
        assert_eq!(cells[5], customer.as_str());
        assert!(all[2][3].is_null(), "no updated_at");
    }

    #[test]
    fn index_rows_are_sorted_and_split_per_statement() {
        let profiles: Vec<Profile> = (0..JSON_ROWS_PER_STATEMENT + 1)
            .map(|i| profile("crm", &format!("{i}"), None))
            .collect();
        let keys: Vec<Vec<String>> = (0..profiles.len())
            .map(|i| vec![format!("k:{}", profiles.len() - i)])
            .collect();
        let records = filed(&profiles, &keys);
        let rows = IndexRows::of(&records).unwrap();
        assert_eq!(rows.keys.len(), 2, "one statement per 10,000 rows");
        let all: Vec<(i64, u32)> = rows
            .keys
            .iter()
            .flat_map(|p| serde_json::from_str::<Vec<(i64, u32)>>(p).unwrap())
            .collect();
        assert_eq!(all.len(), profiles.len());
        assert!(all.windows(2).all(|w| w[0] < w[1]), "in index order");
        // Each key filed as its hash, the 64 bits as a signed integer, with the record's
        // number: its place in key order ("0" comes first).
        let first = all.iter().find(|row| row.1 == 0).unwrap();
        let expected = batch::filed_key(&format!("k:{}", profiles.len()));
        assert_eq!(first.0 as u64, expected);
        let numbers = record_numbers(&key_order(&records));
        let second = all.iter().find(|row| row.1 == numbers[1]).unwrap();
        assert_eq!(
            second.0 as u64,
            batch::filed_key(&format!("k:{}", profiles.len() - 1))
        );
    }
}
