//! Many new records resolved and written at once, for bulk uploads.
//!
//! One transaction per chunk instead of one per record: the chunk's records are compared with
//! each other and with the stored records that share a blocking key with any of them, linked
//! with the same engine, guard rails and link order as [`matching::batch`], and written. Every
//! stored customer a new record may join is read whole, so the guard rails check the new
//! records against all its members (not only the candidates), and its golden record is
//! recomputed from what is in memory and written with the others in one statement. Stored
//! customers are clusters that can grow or merge but never split here. Records whose key is
//! already stored are settled against the stored version when they change nothing; updates,
//! and repeats within the chunk, go through the record-by-record path after the chunk, in
//! order.
//!
//! A bulk job that holds the store's records in memory ([`crate::resident`]) resolves a chunk
//! without reading the store, and hands its image on to the next chunk before writing: one
//! chunk is resolved while the one before it is written.
//!
//! Rows travel to and from the database as one JSON value per statement
//! ([`crate::store::json_rows`]), and the database sizes up blocks and reads the candidates in
//! one query.
//!
//! On PostgreSQL a chunk holds an exclusive advisory lock that every record-by-record writer
//! takes in shared mode, so the chunk sees a stable store without locking thousands of keys.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use c360_domain::{CustomerId, IngestOutcome, MemberRecord, Profile, RecordKey};
use c360_matching::compare::{Field, MISSING};
use c360_matching::graph::GuardedClusters;
use c360_matching::{batch, blocking, survivorship, Engine, Features, PairDecision, Verdict};
use sqlx::AnyConnection;

use crate::error::{ServiceError, StoreError};
use tokio::sync::oneshot;

use crate::resident::{ChunkChanges, Held, Resident, ResidentRecords};
use crate::resolver::{
    absorb_all, apply_name_counts, cannot_links_among, customer_update_params, edge_params,
    edges_in_order, filed, insert_edge_params, insert_edges_in_order, insert_new_record_params,
    insert_new_records, key_order, name_changes, new_customer_id, now_millis, record_from_row,
    record_numbers, records_of_customers_except, settled_without_write, sorted_order,
    statement_params, stored_versions, to_json, to_time, update_customer_params, write_index,
    CustomerSummary, IndexRows, NameCounts, NewRecordRows, Review, StoredRecord,
    LINKS_PER_CUSTOMER, RECORD_COLUMNS,
};
use crate::store::{
    execute_json_params, insert_bound_rows, json_rows, json_rows_param, reserve_record_ids,
    stored_key, Bound, WriteTx,
};
use crate::Resolver;

/// A chunk of new records with what can be worked out without the store: each record's
/// features and blocking keys, and its rows in `records` and in the index, serialized. Prepared
/// before the chunk takes the writer lock, so that record-by-record writers wait less, and once
/// however often the chunk's transaction is retried.
struct PreparedChunk {
    /// Each record with its features and filed blocking keys, as the job's image holds it once
    /// the chunk is resolved (shared, not copied).
    records: Vec<Arc<Resident>>,
    rows: ChunkRows,
}

/// A chunk's rows in `records` (each still without its customer, which resolution decides)
/// and in the index, serialized before the chunk is resolved.
struct ChunkRows {
    records: NewRecordRows,
    index: IndexRows,
}

impl PreparedChunk {
    /// Normalizes the records, computes their blocking keys and serializes their rows, on every
    /// core. CPU-bound: in async code, call it on a blocking thread.
    fn of(profiles: Vec<Profile>) -> Result<Self, StoreError> {
        let started = std::time::Instant::now();
        let features = batch::parallel_map(&profiles, Features::of);
        let featured = started.elapsed();
        let keys = batch::parallel_map(&features, blocking::keys);
        let filed_keys = batch::parallel_map(&keys, |keys| batch::filed_keys(keys));
        let keyed = started.elapsed();
        let filed = filed(&profiles, &keys);
        let hashed: Vec<&[u64]> = filed_keys.iter().map(Vec::as_slice).collect();
        let key_order = key_order(&filed);
        let numbers = record_numbers(&key_order);
        let ordered = started.elapsed();
        // Both on every core, side by side: the index rows' sorts are partly serial.
        let (index_rows, record_rows) = batch::join(
            || IndexRows::of_filed(&hashed, &numbers),
            || NewRecordRows::in_order(&filed, key_order),
        );
        let rowed = started.elapsed();
        let rows = ChunkRows {
            records: record_rows?,
            index: index_rows?,
        };
        let count = profiles.len();
        drop((filed, hashed));
        // The keys' texts (8.4 million strings for 1M records) are freed on another thread
        // while the records are put together.
        let ((), records) = batch::join(
            move || drop(keys),
            move || {
                profiles
                    .into_iter()
                    .zip(features)
                    .zip(filed_keys)
                    .map(|((profile, features), filed)| {
                        Arc::new(Resident {
                            profile,
                            features,
                            filed,
                        })
                    })
                    .collect()
            },
        );
        tracing::debug!(
            records = count,
            features_ms = millis(featured),
            keys_ms = millis(keyed - featured),
            order_ms = millis(ordered - keyed),
            rows_ms = millis(rowed - ordered),
            residents_ms = millis(started.elapsed() - rowed),
            "bulk chunk's rows prepared"
        );
        Ok(Self { records, rows })
    }

    fn profile(&self, idx: usize) -> &Profile {
        &self.records[idx].profile
    }

    /// The chunk's records, taken back (copied only if something else still holds them).
    fn into_profiles(self) -> Vec<Profile> {
        self.records
            .into_iter()
            .map(|record| Arc::try_unwrap(record).map_or_else(|r| r.profile.clone(), |r| r.profile))
            .collect()
    }
}

/// What a chunk of a bulk load is doing, in order, for the job's progress: a chunk of 250,000
/// rows takes tens of seconds, and its rows count as stored only once it commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkStage {
    CheckingStored,
    Preparing,
    WaitingForWriter,
    ReadingCandidates,
    Scoring,
    Linking,
    Writing,
    Committing,
    PublishingViews,
    OneByOne,
}

impl ChunkStage {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CheckingStored => "checking which rows are stored already",
            Self::Preparing => "normalizing rows and computing blocking keys",
            Self::WaitingForWriter => "waiting for the database writer",
            Self::ReadingCandidates => "reading stored candidates",
            Self::Scoring => "scoring candidate pairs and filing blocking keys",
            Self::Linking => "linking records into customers",
            Self::Writing => "writing records, links and customers",
            Self::Committing => "committing",
            Self::PublishingViews => "publishing customer views",
            Self::OneByOne => "resolving re-sent rows one by one",
        }
    }
}

/// Told each [`ChunkStage`] as a chunk reaches it.
pub type StageReport<'a> = &'a (dyn Fn(ChunkStage) + Send + Sync);

/// A batch of records made ready to be resolved and stored, without the store: the first
/// occurrence of each record prepared as a chunk, and the repeats, which go one by one after
/// it. A bulk job prepares its next batch while the previous one is written.
pub struct PreparedBatch {
    /// Input positions of the chunk's records.
    fresh: Vec<usize>,
    chunk: PreparedChunk,
    /// Records seen earlier in the batch, with their input positions.
    repeats: Vec<(usize, Profile)>,
    prepared: std::time::Duration,
}

impl PreparedBatch {
    /// CPU-bound, on every core: in async code, call it on a blocking thread.
    pub fn of(profiles: Vec<Profile>) -> Result<Self, StoreError> {
        let started = std::time::Instant::now();
        // Which records come first with their key, the keys borrowed: copied, a million keys
        // made a million pairs of strings to allocate and free.
        let first: Vec<bool> = {
            let mut seen = HashSet::with_capacity(profiles.len());
            profiles
                .iter()
                .map(|p| seen.insert((p.source.as_str(), p.source_id.as_str())))
                .collect()
        };
        let (mut fresh, mut new, mut repeats) =
            (Vec::new(), Vec::with_capacity(profiles.len()), Vec::new());
        for (i, (profile, first)) in profiles.into_iter().zip(first).enumerate() {
            if first {
                fresh.push(i);
                new.push(profile);
            } else {
                repeats.push((i, profile));
            }
        }
        Ok(Self {
            fresh,
            chunk: PreparedChunk::of(new)?,
            repeats,
            prepared: started.elapsed(),
        })
    }
}

/// Where a chunk hands on the job's image of the store for the next chunk: as soon as it is
/// resolved if it was resolved against the image (with itself taken in), else once it is stored.
pub type ImageHandOn = oneshot::Sender<Option<ResidentRecords>>;

/// Where a chunk finds the stored records it is compared with.
enum StoredSide<'a> {
    /// The job's image of the store ([`crate::resident`]): nothing is read from the store, so
    /// the chunk can be resolved while the previous one is still being written. With the
    /// store's graph-write count the image stands for, when no chunk before this one is still
    /// being written: the chunk's transaction is then begun while it is linked, and files its
    /// blocking keys on the core the linking's serial parts leave idle (see
    /// [`Resolver::file_while_linking`]).
    Image(&'a ResidentRecords, Option<u64>),
    /// The store, through the chunk's write transaction, which files the chunk's blocking keys
    /// while its pairs are scored.
    Store(&'a mut AnyConnection),
}

/// A chunk resolved: its outcomes and everything its write needs.
struct ResolvedChunk {
    /// When the chunk is written: its records' first sight.
    now: i64,
    outcomes: Vec<IngestOutcome>,
    /// Each new record's customer, in chunk order.
    customers: Arc<[CustomerId]>,
    /// Each survivor with the customers it absorbs.
    merged: Vec<(CustomerId, Vec<CustomerId>)>,
    /// How many stored customers new records join.
    grown: usize,
    /// The rows to write.
    params: ChunkParams,
    reviews: Vec<(RecordKey, Vec<Review>)>,
    /// The number of the chunk's first record, once its blocking keys are filed (beside the
    /// scoring, through the store): the numbers are reserved in the transaction that files
    /// them.
    first_record_id: Option<i64>,
}

/// The rows a resolved chunk writes, made before its write (for PostgreSQL serialized as the
/// parameters of their statements, see [`crate::store::json_rows`]; SQLite binds the values of
/// records, links and new customers as it writes them): serialized in the write, on one core,
/// they kept the database waiting (`perf`: 2 to 3% of an upload's CPU, beside 35% on SQLite's
/// writing thread). Those written after the records are worked out while the records are
/// written.
struct ChunkParams {
    /// The new records, each with its customer, as PostgreSQL's JSON rows; none for SQLite,
    /// which binds the rows' cells as the write inserts them.
    records: Option<Vec<String>>,
    later: Later,
}

impl Resolver {
    /// Resolves and stores many records; returns each one's outcome, in input order.
    pub async fn ingest_batch(
        &self,
        profiles: &[Profile],
    ) -> Result<Vec<IngestOutcome>, ServiceError> {
        let profiles = profiles.to_vec();
        let batch = tokio::task::spawn_blocking(move || PreparedBatch::of(profiles))
            .await
            .map_err(|e| ServiceError::Unavailable(e.to_string()))??;
        let (hand_on, _) = oneshot::channel();
        self.ingest_prepared(batch, None, &|_| {}, hand_on).await
    }

    /// Resolves and stores a prepared batch, telling `report` each stage it reaches; returns
    /// each record's outcome, in input order. The image of the store's records the batch was
    /// given goes on through `hand_on` with the batch in it (see [`crate::resident`]): as soon
    /// as the batch is resolved, so that the next batch is resolved while this one is written.
    /// Without an image, or when one cannot go on (rows updating stored records are written
    /// one by one beside it, or it grew past its limit), `hand_on` hears once the batch is
    /// stored.
    pub async fn ingest_prepared(
        &self,
        batch: PreparedBatch,
        resident: Option<ResidentRecords>,
        report: StageReport<'_>,
        hand_on: ImageHandOn,
    ) -> Result<Vec<IngestOutcome>, ServiceError> {
        report(ChunkStage::CheckingStored);
        let started = std::time::Instant::now();
        let mut resident = resident;
        if let Some(image) = resident.as_mut().filter(|image| image.is_spoiled()) {
            // The store changed beside the image: this batch goes through the store, once the
            // job's previous chunk is stored.
            if let Some(previous) = image.take_pending() {
                let _ = previous.await;
            }
            resident = None;
        }
        let PreparedBatch {
            mut fresh,
            mut chunk,
            mut repeats,
            prepared,
        } = batch;
        let mut outcomes = vec![IngestOutcome::Unchanged; fresh.len() + repeats.len()];
        let keys = chunk.records.iter().map(|record| record.profile.key());
        // The stored version of each record that is stored already.
        let stored: HashMap<RecordKey, (Profile, Option<i64>)> = match &resident {
            // The image holds every record stored, or being stored, by the job's earlier
            // chunks: no need to ask the store about every key (seconds per chunk). Should the
            // store have changed beside it, this chunk's write finds out and starts again.
            Some(image) => keys
                .filter_map(|key| {
                    let held = image.held_profile(&key)?;
                    let updated_at = held.updated_at.map(|t| t.timestamp_millis());
                    Some((key, (held.clone(), updated_at)))
                })
                .collect(),
            None => {
                let mut conn = self.db.pool().acquire().await?;
                if store_is_empty(&mut conn).await? {
                    // Into an empty store (a first load) nothing is stored yet.
                    HashMap::new()
                } else {
                    let keys: Vec<RecordKey> = keys.collect();
                    stored_versions(&mut conn, &keys).await?
                }
            }
        };
        if !stored.is_empty() {
            // Records already stored (a file sent again): those that change nothing are
            // settled here, as record-by-record ingest would settle them, without a write
            // (which would also cost the job its image). Updates go one by one after the
            // chunk, which is prepared again without them.
            report(ChunkStage::Preparing);
            let mut new = Vec::new();
            let mut still_fresh = Vec::new();
            for (i, profile) in fresh.into_iter().zip(chunk.into_profiles()) {
                match stored.get(&profile.key()) {
                    Some((version, updated_at)) => {
                        match settled_without_write(version, *updated_at, &profile) {
                            Some(outcome) => outcomes[i] = outcome,
                            None => repeats.push((i, profile)),
                        }
                    }
                    None => {
                        still_fresh.push(i);
                        new.push(profile);
                    }
                }
            }
            fresh = still_fresh;
            chunk = tokio::task::spawn_blocking(move || PreparedChunk::of(new))
                .await
                .map_err(|e| ServiceError::Unavailable(e.to_string()))??;
            repeats.sort_unstable_by_key(|(i, _)| *i);
        }
        tracing::debug!(
            records = chunk.records.len(),
            prepared_ms = millis(prepared),
            checked_ms = millis(started.elapsed()),
            "bulk chunk prepared"
        );

        let mut hand_on = Some(hand_on);
        if !fresh.is_empty() {
            let chunk = Arc::new(chunk);
            let written = chunk.records.len() as u64;
            let chunk_outcomes = match resident.take() {
                Some(image) => {
                    // Updates of stored records go one by one beside the image after the
                    // chunk: the next chunk could not trust it.
                    let mut kept_back = None;
                    let early = if repeats.is_empty() {
                        &mut hand_on
                    } else {
                        &mut kept_back
                    };
                    self.ingest_new_holding(Arc::clone(&chunk), image, report, early)
                        .await?
                }
                None => {
                    self.retrying(|| self.try_ingest_new(&chunk, report))
                        .await?
                        .outcomes
                }
            };
            for (&i, outcome) in fresh.iter().zip(chunk_outcomes) {
                outcomes[i] = outcome;
            }
            // A bulk load grows the store fast: the next chunks' candidate queries need fresh
            // planner statistics (PostgreSQL) to stay index look-ups, and a short WAL
            // (SQLite). Here, once the chunk's transaction has let go of the writer slot.
            self.db.note_written(written);
            self.count_stored(written);
            self.db.maintain_after_bulk_chunk().await;
            self.after_write(&[]).await;
            report(ChunkStage::PublishingViews);
            // A chunk changes thousands of customers: publish all of them before the job
            // counts the chunk as done, so the job's progress includes the view.
            if let Err(error) = self.drain_view_outbox(usize::MAX).await {
                tracing::warn!(error = %error, "customer views of a bulk chunk not published yet");
            }
        }
        // Rows written one by one beside the image leave it behind the store.
        let one_by_one = !repeats.is_empty();
        if one_by_one {
            report(ChunkStage::OneByOne);
            // Re-sent rows of the job's previous chunk are found in the store once it is stored.
            if let Some(previous) = resident.as_mut().and_then(ResidentRecords::take_pending) {
                let _ = previous.await;
            }
        }
        for (i, profile) in repeats {
            outcomes[i] = self.ingest(profile).await?.outcome;
        }
        if let Some(hand_on) = hand_on {
            // Still here if no chunk went through it: the image goes on as it came, unless
            // rows were written one by one beside it.
            let _ = hand_on.send(resident.filter(|_| !one_by_one));
        }
        Ok(outcomes)
    }

    /// An image of the store to fill as a bulk job stores its chunks, holding at most `limit`
    /// records, if the store is empty and has no cannot-links (see [`crate::resident`]). Asked
    /// under the bulk writer lock, so that no write is half-way through.
    pub async fn image_of_empty_store(
        &self,
        limit: usize,
    ) -> Result<Option<ResidentRecords>, ServiceError> {
        let mut write = self.db.begin_bulk_write().await?;
        let generation = self.db.graph_writes(&mut write).await?;
        let conn: &mut AnyConnection = &mut write.tx;
        // The image answers for the store's cannot-links (none) and name counts (those of
        // the records it holds) too.
        let empty = store_is_empty(conn).await?
            && sqlx::query_scalar::<_, i64>(
                "SELECT 1 FROM manual_links WHERE kind = 'cannot_link' AND undone_at IS NULL \
                 UNION ALL SELECT 1 FROM name_counts WHERE count <> 0 LIMIT 1",
            )
            .fetch_optional(&mut *conn)
            .await?
            .is_none();
        write.tx.rollback().await?;
        Ok(empty.then(|| ResidentRecords::of_empty_store(generation, limit)))
    }

    /// Resolves a chunk against the job's image of the store, hands the image on through
    /// `hand_on` with the chunk taken in, and writes the chunk once the chunk before it is
    /// stored, if the store has not changed beside the image; else the image is spoiled, and
    /// the chunk is resolved again against the store. Without `hand_on`, or past the image's
    /// limit, the image goes no further, and `hand_on` is left for when the chunk is stored:
    /// the next chunk must then read a store that holds this one.
    async fn ingest_new_holding(
        &self,
        chunk: Arc<PreparedChunk>,
        mut image: ResidentRecords,
        report: StageReport<'_>,
        hand_on: &mut Option<ImageHandOn>,
    ) -> Result<Vec<IngestOutcome>, ServiceError> {
        let expected = image.generation();
        let previous = image.take_pending();
        let spoiled = image.spoiled_flag();
        let file_from = previous.is_none().then_some(expected);
        let (mut resolved, filed) = self
            .resolve_new(&chunk, StoredSide::Image(&image, file_from), report)
            .await?;
        let (stored, pending) = oneshot::channel();
        if let Some(next_chunk) = hand_on.take_if(|_| image.has_room_for(chunk.records.len())) {
            // Taken in on another core while the chunk is written (a 1M-row chunk took 3.9 s,
            // which its write waited for): the next chunk waits for it, not this one.
            let (records, customers) = (Arc::clone(&chunk), Arc::clone(&resolved.customers));
            let (merged, now) = (resolved.merged.clone(), resolved.now);
            drop(tokio::task::spawn_blocking(move || {
                let changes = ChunkChanges {
                    generation: expected + 1,
                    now,
                    customers: customers.to_vec(),
                    merged,
                };
                let _ = next_chunk.send(image.admit(&records.records, changes, Some(pending)));
            }));
        } else if hand_on.is_some() {
            tracing::info!(
                records = image.len() + chunk.records.len(),
                "bulk job no longer holds the store's records in memory: past its limit"
            );
        }
        // The chunks of a job are written in order: this one resolved against the previous
        // one's records before they were stored.
        let previous_stored = match previous {
            Some(previous) => previous.await.is_ok(),
            None => true,
        };
        // A transaction begun while the chunk was linked goes on; if it fails, it is rolled
        // back with the keys it filed, and the write begins afresh.
        let written_early = match filed {
            Some(write) => {
                let outcome = self
                    .write_resolved(write, &chunk.rows, &resolved, report)
                    .await;
                if let Err(error) = &outcome {
                    tracing::warn!(error = %error, "bulk chunk write failed; trying again");
                    resolved.first_record_id = None;
                }
                outcome.is_ok()
            }
            None => false,
        };
        let written = written_early
            || (previous_stored
                && self
                    .retrying(|| self.try_write_resolved(&chunk.rows, &resolved, expected, report))
                    .await?);
        if written {
            let _ = stored.send(());
            return Ok(resolved.outcomes);
        }
        spoiled.store(true, std::sync::atomic::Ordering::SeqCst);
        tracing::info!(
            "bulk job reads stored candidates from the store again: the store changed beside it"
        );
        // From the start, against the store: some of its records may be stored by now.
        let chunk = Arc::try_unwrap(chunk).map_or_else(
            |shared| shared.records.iter().map(|r| r.profile.clone()).collect(),
            PreparedChunk::into_profiles,
        );
        let batch = tokio::task::spawn_blocking(move || PreparedBatch::of(chunk))
            .await
            .map_err(|e| ServiceError::Unavailable(e.to_string()))??;
        let (again, _) = oneshot::channel();
        let outcomes = Box::pin(self.ingest_prepared(batch, None, report, again)).await?;
        let _ = stored.send(());
        Ok(outcomes)
    }

    /// One transaction: resolve records none of which is stored yet against the store, and
    /// write them.
    async fn try_ingest_new(
        &self,
        chunk: &Arc<PreparedChunk>,
        report: StageReport<'_>,
    ) -> Result<ResolvedChunk, ServiceError> {
        report(ChunkStage::WaitingForWriter);
        let mut write = self.db.begin_bulk_write().await?;
        let (resolved, _) = self
            .resolve_new(chunk, StoredSide::Store(&mut write.tx), report)
            .await?;
        self.write_resolved(write, &chunk.rows, &resolved, report)
            .await?;
        Ok(resolved)
    }

    /// One transaction: write a chunk resolved against the image of the store whose
    /// graph-write count was `expected`, if the store's count still is; answers whether it
    /// wrote.
    async fn try_write_resolved(
        &self,
        rows: &ChunkRows,
        resolved: &ResolvedChunk,
        expected: u64,
        report: StageReport<'_>,
    ) -> Result<bool, ServiceError> {
        report(ChunkStage::WaitingForWriter);
        let mut write = self.db.begin_bulk_write().await?;
        if self.db.graph_writes(&mut write).await? != expected {
            write.tx.rollback().await?;
            return Ok(false);
        }
        self.write_resolved(write, rows, resolved, report).await?;
        Ok(true)
    }

    /// Writes a resolved chunk in `write`, and commits it.
    async fn write_resolved(
        &self,
        mut write: WriteTx,
        rows: &ChunkRows,
        resolved: &ResolvedChunk,
        report: StageReport<'_>,
    ) -> Result<(), ServiceError> {
        report(ChunkStage::Writing);
        let started = std::time::Instant::now();
        let conn: &mut AnyConnection = &mut write.tx;
        let now = resolved.now;
        let first = match resolved.first_record_id {
            Some(first) => first,
            None => file_chunk(conn, rows, resolved.customers.len()).await?,
        };
        let filed = started.elapsed();
        absorb_all(conn, &resolved.merged, now).await?;
        let absorbed = started.elapsed();
        let params = &resolved.params;
        match &params.records {
            Some(params) => insert_new_record_params(conn, params, now, first).await?,
            None => {
                insert_new_records(conn, &rows.records, &resolved.customers, now, first).await?
            }
        }
        let records_inserted = started.elapsed();
        let later = params.later.rows().await?;
        let finished = started.elapsed();
        match &later.links {
            InsertRows::Json(params) => insert_edge_params(conn, params, now).await?,
            InsertRows::Bound(edges) => insert_edges_in_order(conn, edges, now).await?,
        }
        let links_inserted = started.elapsed();
        insert_new_customers(conn, &later.created, now).await?;
        let inserted = started.elapsed();
        update_customer_params(conn, &later.grown, now).await?;
        let updated = started.elapsed();
        crate::curation::write_reviews_of_many(
            conn,
            resolved
                .reviews
                .iter()
                .map(|(key, items)| (key, items.as_slice())),
            now,
        )
        .await?;
        // Name counts inside the chunk's transaction: the chunk holds the store alone anyway.
        apply_name_counts(conn, later.names.clone()).await?;
        let refreshed = started.elapsed();
        report(ChunkStage::Committing);
        self.db.count_graph_write(&mut write).await?;
        let committing = started.elapsed();
        self.db.commit_bulk(write).await?;
        tracing::debug!(
            records = resolved.customers.len(),
            grown = resolved.grown,
            merges = resolved.merged.len(),
            filed_ms = millis(filed),
            absorbed_ms = millis(absorbed - filed),
            records_ms = millis(records_inserted - absorbed),
            waited_for_rows_ms = millis(finished - records_inserted),
            links_ms = millis(links_inserted - finished),
            customers_ms = millis(inserted - links_inserted),
            updated_ms = millis(updated - inserted),
            reviews_and_names_ms = millis(refreshed - updated),
            counted_ms = millis(committing - refreshed),
            committed_ms = millis(started.elapsed() - committing),
            "bulk chunk written"
        );
        Ok(())
    }

    /// Resolves a chunk of records none of which is stored yet: links them with each other
    /// and with the stored records they match, on the side's records, and works out what to
    /// write. Through the store, the chunk's blocking keys are filed while pairs are scored;
    /// beside an image with its graph-write count, while the chunk is linked, in the chunk's
    /// write transaction, which is handed back open for the rest of the write.
    async fn resolve_new(
        &self,
        chunk: &Arc<PreparedChunk>,
        mut side: StoredSide<'_>,
        report: StageReport<'_>,
    ) -> Result<(ResolvedChunk, Option<WriteTx>), ServiceError> {
        let started = std::time::Instant::now();
        report(ChunkStage::ReadingCandidates);
        let now = now_millis();
        let n = chunk.records.len();

        // Stored records sharing a blocking key with the chunk, blocks capped as in batch. An
        // empty store (the first chunk of a first load) has none: no need to ask it about
        // every key of the chunk.
        let caps = self.candidate_caps();
        let (stored, held_slots): (Vec<Held>, Vec<u32>) = match &mut side {
            StoredSide::Image(image, _) => {
                let filed = chunk.records.iter().map(|r| r.filed.as_slice());
                let slots = image.candidates(filed, caps);
                (slots.iter().map(|&s| image.held(s)).collect(), slots)
            }
            StoredSide::Store(conn) => {
                if store_is_empty(conn).await? {
                    (Vec::new(), Vec::new())
                } else {
                    (
                        stored_candidates(
                            conn,
                            chunk.records.iter().map(|r| r.filed.as_slice()),
                            caps,
                        )
                        .await?,
                        Vec::new(),
                    )
                }
            }
        };
        let queried = started.elapsed();
        let names = {
            let features: Vec<&Features> =
                side_by_side(chunk, &stored).map(|r| &r.features).collect();
            match &mut side {
                StoredSide::Image(image, _) => image.names_of(&features),
                StoredSide::Store(conn) => self.stored_names(conn, &features).await?,
            }
        };
        let loaded = started.elapsed();
        report(ChunkStage::Scoring);

        // Candidate pairs with at least one new record (new records come first), scored on
        // every core; through the store, while the database files the new records in the
        // index: neither waits for the other.
        let engine = self.engine.clone();
        let prepared = Arc::clone(chunk);
        let scoring = tokio::task::spawn_blocking(move || {
            // The pairs visit the records in no useful order: each is reached through this
            // one array, and fetched ahead of its pair (see `batch::prefetch_pairs`).
            let records: Vec<&Resident> = side_by_side(&prepared, &stored).collect();
            let keys: Vec<&[u64]> = records.iter().map(|r| r.filed.as_slice()).collect();
            let (max_block, max_fuzzy) = caps;
            let (pairs, _, _) = batch::candidate_pairs_of_first(&keys, n, max_block, max_fuzzy);
            let features = |k: usize| &records[k].features;
            let parts: Vec<&[(u32, u32)]> = pairs.chunks(4096).collect();
            let decided: Vec<(usize, usize, PairDecision)> = batch::parallel_map(&parts, |part| {
                part.iter()
                    .enumerate()
                    .map(|(at, &(i, j))| {
                        batch::prefetch_pairs(part, at, |k| features(k as usize));
                        let (i, j) = (i as usize, j as usize);
                        (i, j, engine.decide(features(i), features(j), &names))
                    })
                    .filter(|(_, _, decision)| decision.verdict != Verdict::NonMatch)
                    .collect::<Vec<_>>()
            })
            .into_iter()
            .flatten()
            .collect();
            drop((keys, records));
            (stored, decided, pairs.len())
        });
        let filing = match &mut side {
            StoredSide::Store(conn) => {
                Some(file_chunk(conn, &chunk.rows, chunk.records.len()).await)
            }
            StoredSide::Image(..) => None,
        };
        let mut filed_ms = started.elapsed() - loaded;
        // The scoring is awaited even when filing failed: a retry must not score beside it.
        let (mut stored, decided, scored_pairs) = scoring
            .await
            .map_err(|e| ServiceError::Unavailable(e.to_string()))?;
        let mut first_record_id = filing.transpose()?;
        let engine = self.engine.clone();
        let mut links = Vec::new();
        let mut reviews: BTreeMap<usize, Vec<Review>> = BTreeMap::new();
        for (i, j, decision) in decided {
            match decision.verdict {
                Verdict::NonMatch => {} // left out above
                Verdict::Match => links.push((
                    decision.link_priority(),
                    i,
                    j,
                    decision.comparison.level(Field::FirstName) != MISSING,
                    decision,
                )),
                Verdict::Review => reviews.entry(i).or_default().push(Review {
                    other: record_key(chunk, &stored, j),
                    probability: decision.score.probability,
                    reason: decision
                        .guard
                        .clone()
                        .unwrap_or_else(|| "possible_match".to_owned()),
                    evidence: engine.evidence(&decision),
                }),
            }
        }
        let decided = started.elapsed();
        report(ChunkStage::Linking);

        // A stored customer a new record may join is held whole: the guard rails check every
        // one of its members (not only those that were candidates), and its golden record is
        // recomputed from them below without reading it again.
        let joinable: BTreeSet<CustomerId> = links
            .iter()
            .filter(|link| link.2 >= n)
            .map(|link| stored[link.2 - n].customer_id.clone())
            .collect();
        let joinable: Vec<CustomerId> = joinable.into_iter().collect();
        let candidates = stored.len();
        let others = match &mut side {
            StoredSide::Image(image, _) => joinable
                .iter()
                .flat_map(|id| image.members_of(id))
                .filter(|slot| held_slots.binary_search(slot).is_err())
                .map(|&slot| image.held(slot))
                .collect(),
            StoredSide::Store(conn) => {
                let held: HashSet<RecordKey> =
                    stored.iter().map(|h| h.resident.profile.key()).collect();
                let others = records_of_customers_except(conn, &joinable, &held).await?;
                held_of(others)
            }
        };
        stored.extend(others);
        let keys: Vec<RecordKey> = chunk
            .records
            .iter()
            .chain(stored.iter().map(|h| &h.resident))
            .map(|r| r.profile.key())
            .collect();
        let never: HashSet<(usize, usize)> = match &mut side {
            // The image is only made of a store without cannot-links, and a manual link made
            // since is a graph write, which the chunk's write finds.
            StoredSide::Image(..) => HashSet::new(),
            StoredSide::Store(conn) => {
                let index_of: HashMap<&RecordKey, usize> =
                    keys.iter().enumerate().map(|(i, k)| (k, i)).collect();
                cannot_links_among(conn, &keys[n..])
                    .await?
                    .into_iter()
                    .filter_map(|(a, b)| Some((*index_of.get(&a)?, *index_of.get(&b)?)))
                    .flat_map(|(a, b)| [(a, b), (b, a)])
                    .collect()
            }
        };
        let members_loaded = started.elapsed();
        let (in_memory, file_from) = match side {
            StoredSide::Image(_, file_from) => (true, file_from),
            StoredSide::Store(_) => (false, None),
        };
        let held = stored.len();
        let prepared = Arc::clone(chunk);
        // Linked, the chunk goes on to be written while the rest of its rows are worked out
        // on the same blocking thread (see `Later`).
        let (linked_chunk, linking) = oneshot::channel();
        // PostgreSQL takes the records as JSON rows, made here; SQLite binds their cells.
        let json_params = self.db.engine() == crate::store::Engine::Postgres;
        let finishing = tokio::task::spawn_blocking(move || {
            let linked = link_chunk(
                &engine,
                json_params,
                &prepared,
                &stored,
                Decided { links, reviews },
                (&keys, &never),
            );
            let (linked, unfinished) = match linked {
                Ok(linked) => linked,
                Err(error) => {
                    let _ = linked_chunk.send(Err(error));
                    return None;
                }
            };
            // Nobody waits for the rows: the chunk's resolution was dropped (a shutdown).
            linked_chunk.send(Ok(linked)).ok()?;
            // On this thread alone: the database writes the records on the other core.
            Some(batch::on_this_thread(|| {
                finish_chunk(
                    &engine,
                    json_params,
                    &prepared,
                    &stored,
                    &keys,
                    unfinished,
                    now,
                )
            }))
        });
        let (filed, linked_chunk) =
            tokio::join!(self.file_while_linking(chunk, file_from), linking);
        let linked_chunk = linked_chunk.map_err(|_| {
            ServiceError::Unavailable("linking a bulk chunk stopped before it ended".into())
        })??;
        let linked = started.elapsed();
        let filed = filed.map(|(write, first, took)| {
            first_record_id = Some(first);
            filed_ms = took;
            write
        });
        tracing::debug!(
            records = n,
            candidates,
            scored_pairs,
            members = held - candidates,
            grown = linked_chunk.grown,
            in_memory,
            filed_while_linking = filed.is_some(),
            queried_ms = millis(queried),
            loaded_ms = millis(loaded - queried),
            filed_ms = millis(filed_ms),
            decided_ms = millis(decided - loaded),
            members_ms = millis(members_loaded - decided),
            linked_ms = millis(linked - members_loaded),
            merges = linked_chunk.merged.len(),
            "bulk chunk resolved"
        );
        let LinkedChunk {
            outcomes,
            customers,
            merged,
            grown,
            records,
            reviews,
        } = linked_chunk;
        let resolved = ResolvedChunk {
            now,
            outcomes,
            customers,
            merged,
            grown,
            params: ChunkParams {
                records,
                later: Later::of(finishing),
            },
            reviews,
            first_record_id,
        };
        Ok((resolved, filed))
    }

    /// The chunk's write transaction with its blocking keys filed, and the number of its first
    /// record, begun while the chunk is linked, if `expected` is given and is still the store's
    /// graph-write count; with how long it took. The linking's sort, joins and grouping run on
    /// one core: the database's writing thread takes the other (a 1M-row first load filed its
    /// keys in 5.8 to 6.3 s of its write; beside the linking, which took under a second more,
    /// they are off the write). Nothing when the store
    /// changed (the write then finds it so, and the chunk is resolved again) or the filing
    /// failed (the write then begins afresh and files the keys itself).
    async fn file_while_linking(
        &self,
        chunk: &PreparedChunk,
        expected: Option<u64>,
    ) -> Option<(WriteTx, i64, std::time::Duration)> {
        let expected = expected?;
        let started = std::time::Instant::now();
        let filing = async {
            let mut write = self.db.begin_bulk_write().await?;
            if self.db.graph_writes(&mut write).await? != expected {
                write.tx.rollback().await?;
                return Ok(None);
            }
            let first = file_chunk(&mut write.tx, &chunk.rows, chunk.records.len()).await?;
            Ok::<_, StoreError>(Some((write, first)))
        };
        match filing.await {
            Ok(filed) => filed.map(|(write, first)| (write, first, started.elapsed())),
            Err(error) => {
                tracing::warn!(error = %error, "filing a bulk chunk's keys while it is linked failed");
                None
            }
        }
    }
}

/// A chunk's candidate pairs as scored: the matches, each with its link priority, whether
/// first names were compared, and its decision; and the pairs to review, by new record.
struct Decided {
    links: Vec<(f64, usize, usize, bool, PairDecision)>,
    reviews: BTreeMap<usize, Vec<Review>>,
}

/// What linking a chunk decided: enough to write its records and hand its customers on.
struct LinkedChunk {
    outcomes: Vec<IngestOutcome>,
    customers: Arc<[CustomerId]>,
    merged: Vec<(CustomerId, Vec<CustomerId>)>,
    grown: usize,
    /// The parameters of the records' INSERTs, each record with its customer, for
    /// PostgreSQL (see [`ChunkParams`]).
    records: Option<Vec<String>>,
    reviews: Vec<(RecordKey, Vec<Review>)>,
}

/// What is left to work out once a chunk is linked, for the rows written after its records:
/// the links to write (by position in `links`), and the customers created and grown, with
/// their members.
struct Unfinished {
    links: Vec<(f64, usize, usize, bool, PairDecision)>,
    written: Vec<usize>,
    created: Vec<(CustomerId, Vec<usize>)>,
    grown: Vec<(CustomerId, Vec<usize>)>,
}

/// The rows a chunk writes after its records, serialized as their statements' parameters:
/// the links with their evidence, the customers it creates with their golden records, the
/// stored customers new records join with theirs recomputed; and the name counts.
struct LaterRows {
    links: InsertRows<(RecordKey, RecordKey, String)>,
    created: InsertRows<NewCustomerRow>,
    grown: Vec<String>,
    names: NameCounts,
}

/// Rows to insert as the engine takes them: for PostgreSQL, serialized as the parameters of
/// JSON-row INSERTs; for SQLite, as they are, for it to bind their values.
#[derive(Debug, PartialEq)]
enum InsertRows<T> {
    Json(Vec<String>),
    Bound(Vec<T>),
}

/// A chunk's [`LaterRows`], worked out on a blocking thread while its records are written.
/// In a 1M-row first load, evidence, golden records and parameters took 12 to 14 s on both
/// cores before the write began, the database idle; on one thread beside the write they take
/// about 20 s, as long as the records' INSERTs, and the write waits 0 to 0.5 s for them
/// (`scripts/bench-bulk sqlite 1000000 6`). On both cores there, they slowed the database's
/// writing thread more. Awaited by each attempt of the write; worked out once.
struct Later {
    task: std::sync::Mutex<Option<Finishing>>,
    rows: tokio::sync::OnceCell<LaterRows>,
}

/// The blocking task that links a chunk and then works out its [`LaterRows`]: nothing if the
/// linking failed (its error went to the chunk's resolution) or nobody waited for it.
type Finishing = tokio::task::JoinHandle<Option<Result<LaterRows, StoreError>>>;

impl Later {
    fn of(task: Finishing) -> Self {
        Self {
            task: std::sync::Mutex::new(Some(task)),
            rows: tokio::sync::OnceCell::new(),
        }
    }

    async fn rows(&self) -> Result<&LaterRows, ServiceError> {
        self.rows
            .get_or_try_init(|| async {
                let task = {
                    let mut task = self.task.lock().unwrap_or_else(|p| p.into_inner());
                    task.take()
                };
                match task {
                    Some(task) => match task.await {
                        Ok(Some(rows)) => Ok(rows?),
                        Ok(None) => Err(ServiceError::Unavailable(
                            "a bulk chunk's links and customers were not worked out".into(),
                        )),
                        Err(error) => Err(ServiceError::Unavailable(error.to_string())),
                    },
                    None => Err(ServiceError::Unavailable(
                        "a bulk chunk's links and customers failed to be worked out".into(),
                    )),
                }
            })
            .await
    }
}

/// Links a chunk's new records with each other and with the `stored` records beside them,
/// strongest link first, with the guard rails and the cannot-links (`never`, by position in
/// `keys`: the chunk's records, then the stored ones); works out the customers they make and
/// their records' rows, and leaves the rest to [`finish_chunk`]. No store: whichever side the
/// stored records came from, their reads are done. CPU-bound, partly on every core.
fn link_chunk(
    engine: &Engine,
    json_params: bool,
    chunk: &PreparedChunk,
    stored: &[Held],
    Decided { links, mut reviews }: Decided,
    (keys, never): (&[RecordKey], &HashSet<(usize, usize)>),
) -> Result<(LinkedChunk, Unfinished), StoreError> {
    let started = std::time::Instant::now();
    let n = chunk.records.len();
    let features = |i: usize| features_of(chunk, stored, i);
    // Strongest first; ties by the records' keys, as the batch resolver orders them. Sorted
    // as integers (each record ranked by its key once), the links themselves staying put:
    // sorting them moved a million links with their whole decisions and compared key strings
    // on every tie (2.9 to 3.9 s of a 1M-row first load's linking).
    let rank = key_ranks(keys);
    let mut strongest_first: Vec<(u64, u32, u32, u32)> = links
        .iter()
        .enumerate()
        .map(|(l, &(priority, i, j, ..))| {
            let (a, b) = (rank[i], rank[j]);
            (largest_first(priority), a.min(b), a.max(b), l as u32)
        })
        .collect();
    strongest_first.sort_unstable();
    let sorted = started.elapsed();

    // Stored customers start as clusters of their own records.
    let mut clusters = GuardedClusters::new(keys.len());
    let mut first_of: HashMap<&CustomerId, usize> = HashMap::new();
    for (s, record) in stored.iter().enumerate() {
        let idx = n + s;
        if let Some(&first) = first_of.get(&record.customer_id) {
            let _ = clusters.union_unless(first, idx, |_, _| false);
        } else {
            first_of.insert(&record.customer_id, idx);
        }
    }

    // The links to write, by position in `links`; their evidence is serialized after.
    let mut written: Vec<usize> = Vec::new();
    let mut per_pair_customer: HashMap<(usize, usize), usize> = HashMap::new();
    for l in strongest_first.into_iter().map(|(.., l)| l as usize) {
        let (_, i, j, names_compared, decision) = &links[l];
        let merged = clusters.union_unless(*i, *j, |x, y| {
            never.contains(&(x, y))
                || engine
                    .conflict(features(x), features(y), *names_compared)
                    .is_some()
        });
        match merged {
            Ok(()) => {
                // A few links per (new record, other side's cluster) so that deleting one
                // record rarely disconnects the rest, as record-by-record ingest keeps.
                let side = clusters.find(*j);
                let count = per_pair_customer.entry((*i, side)).or_default();
                *count += 1;
                if *count <= LINKS_PER_CUSTOMER {
                    written.push(l);
                }
            }
            Err((x, y)) => {
                let reason = if never.contains(&(x, y)) {
                    "cannot_link".to_owned()
                } else {
                    engine
                        .conflict(features(x), features(y), *names_compared)
                        .unwrap_or_else(|| "guard_rail".to_owned())
                };
                reviews.entry(*i).or_default().push(Review {
                    other: keys[*j].clone(),
                    probability: 1.0,
                    reason,
                    evidence: engine.evidence(decision),
                });
            }
        }
    }
    let unioned = started.elapsed();

    // Each cluster with new records becomes a customer: new, joined, or merged.
    // A cluster's label is its smallest member, so the groups come in the order of their
    // labels as they first appear, and a label indexes where its group is.
    let labels = clusters.labels();
    let mut group_of = vec![u32::MAX; labels.len()];
    let mut groups: Vec<Group> = Vec::new();
    for (idx, &label) in labels.iter().enumerate() {
        let slot = &mut group_of[label as usize];
        if *slot == u32::MAX {
            *slot = groups.len() as u32;
            groups.push(Group::default());
        }
        let group = &mut groups[*slot as usize];
        if idx < n {
            group.new.push(idx);
        } else {
            group.stored.push(idx);
            group.customers.insert(stored[idx - n].customer_id.clone());
        }
    }
    let mut outcomes = vec![IngestOutcome::JoinedCustomer; n];
    let mut customer_of = vec![None; n];
    let mut created: Vec<(CustomerId, Vec<usize>)> = Vec::new();
    let mut grown: Vec<(CustomerId, Vec<usize>)> = Vec::new();
    let mut merged: Vec<(CustomerId, Vec<CustomerId>)> = Vec::new();
    for group in groups {
        let Some(&first) = group.new.first() else {
            continue; // a stored customer no new record joined
        };
        let customer = match group.customers.iter().next() {
            None => {
                outcomes[first] = IngestOutcome::CreatedCustomer;
                let id = new_customer_id();
                created.push((id.clone(), group.new.clone()));
                id
            }
            Some(survivor) => {
                // The oldest customer survives: ids are time-ordered.
                let absorbed: Vec<CustomerId> = group.customers.iter().skip(1).cloned().collect();
                if !absorbed.is_empty() {
                    outcomes[first] = IngestOutcome::MergedCustomers;
                    merged.push((survivor.clone(), absorbed));
                }
                // Every member is at hand: the new ones and all of each joined customer's.
                let mut members: Vec<usize> =
                    group.new.iter().chain(&group.stored).copied().collect();
                members.sort_unstable_by_key(|&m| rank[m]);
                grown.push((survivor.clone(), members));
                survivor.clone()
            }
        };
        for &m in &group.new {
            customer_of[m] = Some(customer.clone());
        }
    }

    let customers: Arc<[CustomerId]> = customer_of
        .into_iter()
        .map(|customer| {
            customer.ok_or_else(|| StoreError::Corrupt("a new record without a customer".into()))
        })
        .collect::<Result<_, _>>()?;
    let reviews = reviews
        .into_iter()
        .map(|(i, items)| (keys[i].clone(), items))
        .collect();
    let grouped = started.elapsed();
    let records = json_params
        .then(|| chunk.rows.records.params(&customers))
        .transpose()?;
    tracing::debug!(
        links = links.len(),
        sorted_ms = millis(sorted),
        unioned_ms = millis(unioned - sorted),
        grouped_ms = millis(grouped - unioned),
        records_ms = millis(started.elapsed() - grouped),
        "bulk chunk linked"
    );
    let linked = LinkedChunk {
        outcomes,
        customers,
        merged,
        grown: grown.len(),
        records,
        reviews,
    };
    let unfinished = Unfinished {
        links,
        written,
        created,
        grown,
    };
    Ok((linked, unfinished))
}

/// Each record's place (by position in `keys`) in the order of the keys.
fn key_ranks(keys: &[RecordKey]) -> Vec<u32> {
    let mut rank = vec![0; keys.len()];
    let order = sorted_order(keys, |k| [k.source.as_str(), k.source_id.as_str()]);
    for (at, idx) in order.into_iter().enumerate() {
        rank[idx] = at as u32;
    }
    rank
}

/// A number that sorts `x` as [`f64::total_cmp`] orders it, the largest first: the sign bit
/// set for positive values and every bit flipped for negative ones orders the bits as
/// `total_cmp` does, and the complement reverses that order.
fn largest_first(x: f64) -> u64 {
    let bits = x.to_bits();
    let smallest_first = if bits >> 63 == 1 {
        !bits
    } else {
        bits | 1 << 63
    };
    !smallest_first
}

/// The rows a linked chunk writes after its records (see [`Later`]): its links with their
/// evidence, the golden records of the customers it creates and of the stored ones its
/// records join, and its name counts. CPU-bound; its maps run on every core unless called
/// within [`batch::on_this_thread`], as a bulk chunk calls it beside its write.
fn finish_chunk(
    engine: &Engine,
    json_params: bool,
    chunk: &PreparedChunk,
    stored: &[Held],
    keys: &[RecordKey],
    Unfinished {
        links,
        written,
        created,
        mut grown,
    }: Unfinished,
    now: i64,
) -> Result<LaterRows, StoreError> {
    let started = std::time::Instant::now();
    let n = chunk.records.len();
    let features = |i: usize| features_of(chunk, stored, i);
    // Evidence of every written link: a chunk writes hundreds of thousands.
    let written_links: Vec<(RecordKey, RecordKey, String)> = batch::parallel_map(&written, |&l| {
        let (_, i, j, _, decision) = &links[l];
        to_json(&engine.evidence(decision)).map(|e| (keys[*i].clone(), keys[*j].clone(), e))
    })
    .into_iter()
    .collect::<Result<_, _>>()?;
    let evidenced = started.elapsed();

    // Golden records and coherence of the grown customers; updated in id order, so that each
    // page of the customers table is visited once.
    grown.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let grown: Vec<CustomerSummary> = batch::parallel_map(&grown, |(id, members)| {
        let records: Vec<MemberRecord> = members
            .iter()
            .map(|&m| member(chunk, stored, m, now))
            .collect();
        let member_features: Vec<&Features> = members
            .iter()
            .take(c360_matching::INCOHERENCE_CHECK_LIMIT)
            .map(|&m| features(m))
            .collect();
        CustomerSummary::of(engine, id, &records, &member_features)
    })
    .into_iter()
    .collect::<Result<_, _>>()?;
    // The new customers' golden records need only the clusters.
    let summarized = started.elapsed();
    let created = new_customer_rows(chunk, &created, &engine.config().survivorship, now)?;
    let names = chunk
        .records
        .iter()
        .flat_map(|r| name_changes(&r.features, 1))
        .collect();
    let created_at = started.elapsed();
    let rows = LaterRows {
        links: if json_params {
            InsertRows::Json(edge_params(written_links)?)
        } else {
            InsertRows::Bound(edges_in_order(written_links))
        },
        created: if json_params {
            InsertRows::Json(statement_params(&created)?)
        } else {
            InsertRows::Bound(created)
        },
        grown: customer_update_params(&grown)?,
        names,
    };
    tracing::debug!(
        records = n,
        evidence_ms = millis(evidenced),
        grown_ms = millis(summarized - evidenced),
        created_ms = millis(created_at - summarized),
        params_ms = millis(started.elapsed() - created_at),
        "bulk chunk finished"
    );
    Ok(rows)
}

/// A phase's duration as logged: whole milliseconds.
fn millis(d: std::time::Duration) -> u64 {
    d.as_millis() as u64
}

/// The records of one cluster: new ones (by index into the chunk) and stored ones, and the
/// stored customers they belong to.
#[derive(Default)]
struct Group {
    new: Vec<usize>,
    stored: Vec<usize>,
    customers: BTreeSet<CustomerId>,
}

/// The chunk's new records, then the stored ones, in the order their indices count them.
fn side_by_side<'a>(
    chunk: &'a PreparedChunk,
    stored: &'a [Held],
) -> impl Iterator<Item = &'a Resident> {
    chunk
        .records
        .iter()
        .map(|r| &**r)
        .chain(stored.iter().map(|h| &*h.resident))
}

/// The features of record `idx`: new records first, then stored ones.
fn features_of<'a>(chunk: &'a PreparedChunk, stored: &'a [Held], idx: usize) -> &'a Features {
    match chunk.records.get(idx) {
        Some(record) => &record.features,
        None => &stored[idx - chunk.records.len()].resident.features,
    }
}

/// The key of record `idx`: new records first, then stored ones.
fn record_key(chunk: &PreparedChunk, stored: &[Held], idx: usize) -> RecordKey {
    match chunk.records.get(idx) {
        Some(record) => record.profile.key(),
        None => stored[idx - chunk.records.len()].resident.profile.key(),
    }
}

/// Record `idx` as a member of its customer, a new one first seen `now`.
fn member(chunk: &PreparedChunk, stored: &[Held], idx: usize, now: i64) -> MemberRecord {
    match chunk.records.get(idx) {
        Some(record) => MemberRecord {
            record: record.profile.clone(),
            first_seen_at: to_time(now),
            last_changed_at: to_time(now),
        },
        None => {
            let held = &stored[idx - chunk.records.len()];
            MemberRecord {
                record: held.resident.profile.clone(),
                first_seen_at: to_time(held.first_seen_at),
                last_changed_at: to_time(held.last_changed_at),
            }
        }
    }
}

/// Records read from the store, made ready to compare: features and filed keys computed on
/// every core.
fn held_of(records: Vec<StoredRecord>) -> Vec<Held> {
    let prepared = batch::parallel_map(&records, |record| {
        let features = Features::of(&record.profile);
        let filed = batch::filed_keys(&blocking::keys(&features));
        (features, filed)
    });
    records
        .into_iter()
        .zip(prepared)
        .map(|(record, (features, filed))| Held {
            resident: Arc::new(Resident {
                profile: record.profile,
                features,
                filed,
            }),
            customer_id: record.customer_id,
            first_seen_at: record.first_seen_at,
            last_changed_at: record.last_changed_at,
        })
        .collect()
}

/// Reserves the numbers of a chunk's `records` and files them under their blocking keys (the
/// chunk's `rows`): the number of the first.
async fn file_chunk(
    conn: &mut AnyConnection,
    rows: &ChunkRows,
    records: usize,
) -> Result<i64, StoreError> {
    let first = reserve_record_ids(conn, records).await?;
    write_index(conn, &rows.index, first).await?;
    Ok(first)
}

/// Whether no record is stored at all.
async fn store_is_empty(conn: &mut AnyConnection) -> Result<bool, StoreError> {
    let any: Option<i64> = sqlx::query_scalar("SELECT 1 FROM records LIMIT 1")
        .fetch_optional(&mut *conn)
        .await?;
    Ok(any.is_none())
}

/// Stored records sharing any of the blocking keys `filed` (per new record, as
/// [`batch::filed_key`] files them); keys whose stored block is larger than its cap are
/// skipped, as the batch resolver skips oversized blocks.
async fn stored_candidates<'a>(
    conn: &mut AnyConnection,
    filed: impl Iterator<Item = &'a [u64]>,
    (max_block, max_fuzzy): (usize, usize),
) -> Result<Vec<Held>, StoreError> {
    let keys: BTreeSet<u64> = filed.flatten().copied().collect();
    let (identifiers, fuzzy): (Vec<[i64; 1]>, Vec<[i64; 1]>) = keys
        .into_iter()
        .map(|key| [stored_key(key)])
        .partition(|&[key]| batch::is_filed_identifier(key as u64));
    // The database sizes up each block (reading at most cap + 1 of its entries) and reads the
    // records; per-row traffic between the database and here cost more than all of that.
    let small_blocks = |probes: String, cap: usize| {
        format!(
            "SELECT CAST(p.c0 AS BIGINT) FROM {probes} WHERE (SELECT 1 FROM blocking_keys k \
             WHERE k.key = CAST(p.c0 AS BIGINT) LIMIT 1 OFFSET {cap}) IS NULL"
        )
    };
    let sql = format!(
        "SELECT {RECORD_COLUMNS} FROM records r WHERE r.id IN ( \
           SELECT b.record_id FROM blocking_keys b WHERE b.key IN ({} UNION ALL {}))",
        small_blocks(json_rows(conn, 1, 1, "p"), max_block),
        small_blocks(json_rows(conn, 2, 1, "p"), max_fuzzy)
    );
    // All keys in one statement: split over several, a record sharing keys with the chunk
    // in more than one part came back (and was decoded) once per part.
    let rows = sqlx::query(&sql)
        .bind(json_rows_param(&identifiers)?)
        .bind(json_rows_param(&fuzzy)?)
        .fetch_all(&mut *conn)
        .await?;
    let stored = rows
        .iter()
        .map(record_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(held_of(stored))
}

/// A new customer's row: id, golden record (JSON), record count, enrichment key, and whether
/// it waits for enrichment.
type NewCustomerRow = (String, String, i64, Option<String>, i64);

/// The rows of the customers a chunk creates, with their golden records, on every core: a
/// chunk creates tens of thousands of customers.
fn new_customer_rows(
    chunk: &PreparedChunk,
    created: &[(CustomerId, Vec<usize>)],
    rules: &survivorship::SurvivorshipConfig,
    now: i64,
) -> Result<Vec<NewCustomerRow>, StoreError> {
    let goldens = batch::parallel_map(created, |(_, members)| {
        let members: Vec<MemberRecord> = members
            .iter()
            .map(|&m| MemberRecord {
                record: chunk.profile(m).clone(),
                first_seen_at: to_time(now),
                last_changed_at: to_time(now),
            })
            .collect();
        let golden = survivorship::golden_record(&members, rules);
        let address_key = golden
            .address
            .as_ref()
            .and_then(|a| crate::enrich::address_key(&a.value));
        to_json(&golden).map(|json| (json, members.len() as i64, address_key))
    });
    let mut rows = Vec::with_capacity(created.len());
    for ((id, _), golden) in created.iter().zip(goldens) {
        let (golden, member_count, address_key) = golden?;
        let pending = i64::from(address_key.is_some());
        rows.push((id.to_string(), golden, member_count, address_key, pending));
    }
    Ok(rows)
}

/// Inserts new customers from their rows ([`new_customer_rows`]): on PostgreSQL from the
/// parameters of their JSON rows, on SQLite binding their values (see [`insert_bound_rows`]).
async fn insert_new_customers(
    conn: &mut AnyConnection,
    rows: &InsertRows<NewCustomerRow>,
    now: i64,
) -> Result<(), StoreError> {
    let params = match rows {
        InsertRows::Json(params) => params,
        InsertRows::Bound(rows) => {
            return insert_bound_rows(
                conn,
                (
                    "INSERT INTO customers (id, golden, record_count, version, created_at, \
                     updated_at, enrichment_key, enrichment_pending)",
                    "",
                ),
                rows,
                &now,
                |_, (id, golden, members, address_key, pending), &now| {
                    [
                        Bound::Text(id),
                        Bound::Text(golden),
                        Bound::Int(*members),
                        Bound::Int(1),
                        Bound::Int(now),
                        Bound::Int(now),
                        Bound::MaybeText(address_key.as_deref()),
                        Bound::Int(*pending),
                    ]
                },
            )
            .await;
        }
    };
    let sql = format!(
        "INSERT INTO customers (id, golden, record_count, version, created_at, updated_at, \
         enrichment_key, enrichment_pending) \
         SELECT c0, c1, CAST(c2 AS BIGINT), 1, $2, $2, c3, CAST(c4 AS BIGINT) FROM {}",
        json_rows(conn, 1, 5, "v")
    );
    execute_json_params(conn, &sql, params, &[now]).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn largest_first_orders_as_total_cmp_reversed() {
        let values = [
            f64::NEG_INFINITY,
            -1e6,
            -2.5,
            -0.0,
            0.0,
            1e-300,
            0.75,
            3.0,
            1e6 + 0.5,
            f64::INFINITY,
            f64::NAN,
        ];
        for a in values {
            for b in values {
                assert_eq!(
                    largest_first(a).cmp(&largest_first(b)),
                    b.total_cmp(&a),
                    "{a} against {b}"
                );
            }
        }
    }

    #[test]
    fn key_ranks_follow_the_record_keys_order() {
        let key = |source: &str, id: &str| RecordKey {
            source: c360_domain::SourceName::parse(source).unwrap(),
            source_id: c360_domain::SourceId::parse(id).unwrap(),
        };
        let keys = [
            key("web", "7"),
            key("crm", "a-longer-id-than-sixteen-bytes-2"),
            key("crm", "a-longer-id-than-sixteen-bytes-10"),
            key("pos", "1"),
            key("crm", "b"),
        ];
        let rank = key_ranks(&keys);
        for a in 0..keys.len() {
            for b in 0..keys.len() {
                assert_eq!(rank[a].cmp(&rank[b]), keys[a].cmp(&keys[b]));
            }
        }
    }

    #[tokio::test]
    async fn later_rows_are_awaited_by_every_attempt_of_the_write() {
        let rows = Later::of(tokio::task::spawn_blocking(|| {
            Some(Ok(LaterRows {
                links: InsertRows::Json(vec!["[]".to_owned()]),
                created: InsertRows::Json(Vec::new()),
                grown: Vec::new(),
                names: Vec::new(),
            }))
        }));
        // A retried write asks again, after the task's handle is spent, and finds the same
        // rows.
        assert_eq!(
            rows.rows().await.unwrap().links,
            InsertRows::Json(vec!["[]".to_owned()])
        );
        assert_eq!(
            rows.rows().await.unwrap().links,
            InsertRows::Json(vec!["[]".to_owned()])
        );
    }

    #[tokio::test]
    async fn later_rows_that_failed_or_never_came_fail_the_write() {
        let failed = Later::of(tokio::task::spawn_blocking(|| {
            Some(Err(StoreError::Corrupt("evidence".into())))
        }));
        assert!(matches!(
            failed.rows().await,
            Err(ServiceError::Store(StoreError::Corrupt(reason))) if reason == "evidence"
        ));
        // The failure is not worked out again: the next attempt fails at once.
        assert!(failed.rows().await.is_err());
        let never = Later::of(tokio::task::spawn_blocking(|| None));
        assert!(matches!(
            never.rows().await,
            Err(ServiceError::Unavailable(_))
        ));
    }
}
