//! Bulk upload jobs: an uploaded file is spooled to disk, checked (header, emptiness), and
//! worked through in the background by the resolver, with progress, the rejected rows by
//! line, and a checkpoint so that a job interrupted by a crash or a shutdown resumes where it
//! stopped.
//!
//! Checkpoint: after every chunk of rows is written (and at the end) the job's `rows_read`
//! and its counters are saved in one UPDATE. A resumed job skips the rows before the checkpoint and
//! re-reads the ones after it: re-ingesting a row is idempotent by `(source, source_id)`, its
//! counters start from the checkpoint, and a rejected row is stored once (keyed by line). So no
//! row is lost and none is counted twice.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{BufReader, Read};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use c360_domain::{
    IngestOutcome, JobRowError, JobState, JobView, Profile, RecordInput, ValidationErrors,
};
use sqlx::Row;
use tokio::sync::{mpsc, oneshot, Notify};

use crate::bulk_load::{ChunkStage, PreparedBatch};
use crate::error::{ServiceError, StoreError};
use crate::input::{self, RowError};
use crate::resident::ResidentRecords;
use crate::resolver::{now_millis, to_time};
use crate::store::Database;
use crate::Resolver;

/// How many valid rows a bulk job resolves and writes together, in one transaction, and
/// checkpoints after.
///
/// A chunk reads every stored record that shares a blocking key with it, and those blocks
/// grow with the store: in chunks of 20,000, a 1,003,500-row upload into SQLite ran at 2,548
/// rows/s, in chunks of 250,000 at 6,233 rows/s, and with these bounds at 5,032 rows/s
/// (`scripts/bench-bulk sqlite 1000000 6 [CHUNK]`; the fixed sizes were measured with a larger
/// SQLite page cache, since dropped, that made no measurable difference). A chunk also holds
/// the writer for its whole transaction, and record-by-record writers wait that long. So a
/// chunk is half of what is stored, within these bounds: short while the store is small, long
/// enough to pay for the reads once it is large.
///
/// A first load (a store holding fewer than `least` records) takes up to `first` rows at once.
/// Resolved in one chunk, it scores each candidate pair once, caps its blocks against the
/// whole chunk as `c360 resolve` caps them against the file, and writes no golden record
/// twice. 1,003,500 rows (`scripts/bench-bulk sqlite|postgres 1000000 6`, session 20): into
/// SQLite the whole file as one chunk ran at 12,389 and 12,785 rows/s with 105 to 111 server
/// CPU-s, and with this bound (a chunk of 1M, then one of 3,500) at 10,813 on a slower stretch,
/// against 9,030 to 10,344 rows/s and 160 to 185 CPU-s in chunks of at most 250,000 the same
/// hour; into PostgreSQL 8,847 rows/s against 7,256. The partition is `c360 resolve`'s (F1
/// 0.968 against 0.9615). Its rows count as stored when the chunk commits, and it holds the
/// writer for its whole write (40 to 43 s for those 1M rows on SQLite, 69 s on PostgreSQL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRows {
    pub least: usize,
    pub most: usize,
    pub first: usize,
}

impl Default for ChunkRows {
    fn default() -> Self {
        Self {
            least: 20_000,
            most: 250_000,
            first: 1_000_000,
        }
    }
}

impl ChunkRows {
    /// The chunk size with `stored` records in the store. A nearly empty store (fewer than
    /// `least` records) takes `first` at once: a first load has next to nothing to read, and
    /// the fewer chunks it comes in, the fewer of its own records its later chunks read back.
    pub fn with_stored(self, stored: u64) -> usize {
        let least = self.least.max(1);
        let most = self.most.max(least);
        if stored < least as u64 {
            return self.first.max(1);
        }
        usize::try_from(stored / 2)
            .unwrap_or(usize::MAX)
            .clamp(least, most)
    }
}

/// Longest time a chunk waits before it is written, so progress shows on slow uploads too.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// Most chunks of a job in flight: one being written, the next resolved beside it.
const MAX_CHUNKS_IN_FLIGHT: usize = 2;

/// The format of an uploaded file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadFormat {
    Csv,
    Ndjson,
}

impl UploadFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Ndjson => "ndjson",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        match name {
            "csv" => Some(Self::Csv),
            "ndjson" => Some(Self::Ndjson),
            _ => None,
        }
    }

    /// From a media type (`text/csv`, `application/x-ndjson`...), parameters ignored.
    pub fn from_media_type(media: &str) -> Option<Self> {
        let media = media
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match media.as_str() {
            "text/csv" | "application/csv" => Some(Self::Csv),
            "application/x-ndjson"
            | "application/ndjson"
            | "application/jsonl"
            | "application/x-jsonlines"
            | "application/jsonlines" => Some(Self::Ndjson),
            _ => None,
        }
    }

    /// From a file name's extension.
    pub fn from_file_name(name: &str) -> Option<Self> {
        let lower = name.to_ascii_lowercase();
        if lower.ends_with(".csv") {
            Some(Self::Csv)
        } else if lower.ends_with(".ndjson") || lower.ends_with(".jsonl") {
            Some(Self::Ndjson)
        } else {
            None
        }
    }
}

/// How many times in a row a job may stop on an error at the same checkpoint before it is
/// marked failed (see [`Jobs::run_worker`]): with the pauses between, about half a minute.
pub const JOB_ATTEMPTS: u32 = 5;

/// Creates, runs and reports bulk upload jobs.
pub struct Jobs {
    resolver: Resolver,
    dir: PathBuf,
    wake: Notify,
    stopping: AtomicBool,
    chunk_rows: ChunkRows,
    /// Most records a job holds in memory (see [`crate::resident`]); 0 holds none.
    resident_records: usize,
    live: LiveJobs,
}

/// Most records a bulk job holds in memory by default (see [`crate::resident`]). A 1M-row load
/// into SQLite that held all its records peaked at about 6 GB server RSS, the memory-mapped
/// database included: no more than the same load reading its candidates back, whose chunks
/// held theirs for a while.
pub const DEFAULT_RESIDENT_RECORDS: usize = 2_000_000;

impl Jobs {
    /// Jobs spool their files under `dir` (created when missing) and write valid rows in
    /// chunks sized by `chunk_rows`.
    pub fn new(
        resolver: Resolver,
        dir: PathBuf,
        chunk_rows: ChunkRows,
    ) -> Result<Self, StoreError> {
        std::fs::create_dir_all(&dir)?;
        Ok(Self {
            resolver,
            dir,
            wake: Notify::new(),
            stopping: AtomicBool::new(false),
            chunk_rows,
            resident_records: DEFAULT_RESIDENT_RECORDS,
            live: LiveJobs::default(),
        })
    }

    /// Jobs that start on an empty store hold at most `records` of its records in memory
    /// (see [`crate::resident`]); 0 holds none.
    pub fn with_resident_records(mut self, records: usize) -> Self {
        self.resident_records = records;
        self
    }

    /// A fresh job id and the path its upload is spooled to.
    pub fn new_upload(&self) -> (String, PathBuf) {
        let id = format!("job_{}", uuid::Uuid::now_v7().simple());
        let path = self.dir.join(format!("{id}.upload"));
        (id, path)
    }

    /// Checks a spooled upload and queues it. A file-level problem (empty file, unknown or
    /// missing CSV columns) is an error naming it, and nothing is stored.
    pub async fn submit(
        &self,
        id: &str,
        spool: &Path,
        format: UploadFormat,
        file_name: Option<String>,
    ) -> Result<JobView, ServiceError> {
        let checked = {
            let spool = spool.to_owned();
            tokio::task::spawn_blocking(move || check_file(&spool, format))
                .await
                .map_err(|e| ServiceError::Unavailable(e.to_string()))?
        };
        if let Err(reason) = checked {
            let _ = std::fs::remove_file(spool);
            return Err(ServiceError::invalid("file", reason));
        }
        let bytes = std::fs::metadata(spool).map(|m| m.len()).unwrap_or(0);
        let now = now_millis();
        sqlx::query(
            "INSERT INTO jobs (id, state, format, file_name, spool_path, bytes_total, \
             created_at, updated_at) VALUES ($1, 'queued', $2, $3, $4, $5, $6, $6)",
        )
        .bind(id)
        .bind(format.as_str())
        .bind(file_name)
        .bind(spool.display().to_string())
        .bind(i64::try_from(bytes).unwrap_or(i64::MAX))
        .bind(now)
        .execute(self.resolver.database().pool())
        .await?;
        self.wake.notify_one();
        self.get(id).await
    }

    pub async fn get(&self, id: &str) -> Result<JobView, ServiceError> {
        let row = sqlx::query(&format!("{JOB_COLUMNS} WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.resolver.database().pool())
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("job {id}")))?;
        job_from_row(&row, &self.live)
    }

    /// The most recent jobs, newest first.
    pub async fn list(&self, limit: i64) -> Result<Vec<JobView>, ServiceError> {
        let rows = sqlx::query(&format!(
            "{JOB_COLUMNS} ORDER BY created_at DESC, id DESC LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(self.resolver.database().pool())
        .await?;
        rows.iter()
            .map(|row| job_from_row(row, &self.live))
            .collect()
    }

    /// The rejected rows of a job after `after_line`, in line order.
    pub async fn errors(
        &self,
        id: &str,
        after_line: u64,
        limit: i64,
    ) -> Result<Vec<JobRowError>, ServiceError> {
        self.get(id).await?;
        let rows = sqlx::query(
            "SELECT line, field, reason FROM job_errors WHERE job_id = $1 AND line > $2 \
             ORDER BY line LIMIT $3",
        )
        .bind(id)
        .bind(i64::try_from(after_line).unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(self.resolver.database().pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(JobRowError {
                    line: u64::try_from(r.try_get::<i64, _>(0)?).unwrap_or(0),
                    field: r.try_get(1)?,
                    reason: r.try_get(2)?,
                })
            })
            .collect()
    }

    /// Works queued and interrupted jobs, oldest first, until `shutdown` resolves; a job
    /// running at shutdown saves its checkpoint and resumes at the next start. A job that
    /// stops on an error is tried again from its checkpoint after a pause that doubles each
    /// time (a database restarting, a disk filled up and freed); one that stops
    /// [`JOB_ATTEMPTS`] times in a row without moving its checkpoint is marked failed with
    /// the error, so that it neither runs for ever nor holds back the jobs queued after it.
    pub async fn run_worker(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        // The job that last stopped on an error, its checkpoint then, and how many times in
        // a row it stopped there.
        let mut stopped: Option<(String, u64, u32)> = None;
        loop {
            let next = sqlx::query(
                "SELECT id FROM jobs WHERE state IN ('queued', 'running') \
                 ORDER BY created_at, id LIMIT 1",
            )
            .fetch_optional(self.resolver.database().pool())
            .await;
            match next {
                Ok(Some(row)) => {
                    let id: String = row.try_get(0).unwrap_or_default();
                    let run = self.run(&id);
                    tokio::pin!(run);
                    tokio::select! {
                        result = &mut run => {
                            let Err(error) = result else {
                                stopped = None;
                                continue;
                            };
                            let checkpoint = self.rows_read(&id).await;
                            let times = match &stopped {
                                Some((job, at, times)) if *job == id && *at == checkpoint => {
                                    times + 1
                                }
                                _ => 1,
                            };
                            tracing::error!(job = %id, error = %error, times, "bulk job stopped");
                            if times >= JOB_ATTEMPTS {
                                stopped = None;
                                if let Err(e) = self.mark_failed(&id, &error).await {
                                    tracing::warn!(job = %id, error = %e, "cannot mark the job failed");
                                }
                                continue;
                            }
                            stopped = Some((id.clone(), checkpoint, times));
                            let pause = Duration::from_secs(1 << times.min(6));
                            tokio::select! {
                                () = &mut shutdown => return,
                                () = tokio::time::sleep(pause) => {}
                            }
                            continue;
                        }
                        () = &mut shutdown => {
                            // Let the job save its checkpoint before the process goes.
                            self.stopping.store(true, Ordering::SeqCst);
                            let _ = run.await;
                            return;
                        }
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "cannot read the job queue"),
            }
            tokio::select! {
                () = &mut shutdown => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
        }
    }

    /// The job's checkpoint: how many of its rows are read and settled (0 if it cannot be
    /// read).
    async fn rows_read(&self, id: &str) -> u64 {
        sqlx::query_scalar::<_, i64>("SELECT rows_read FROM jobs WHERE id = $1")
            .bind(id)
            .fetch_one(self.resolver.database().pool())
            .await
            .map_or(0, |rows| u64::try_from(rows).unwrap_or(0))
    }

    /// Gives up on a job that keeps stopping on `error`: marked failed with it, its spooled
    /// file removed. What its chunks stored stays stored; sending the file again is safe.
    async fn mark_failed(&self, id: &str, error: &ServiceError) -> Result<(), StoreError> {
        let now = now_millis();
        let spool: Option<String> = sqlx::query_scalar(
            "UPDATE jobs SET state = $1, error = $2, finished_at = $3, updated_at = $3 \
             WHERE id = $4 RETURNING spool_path",
        )
        .bind(JobState::Failed.as_str())
        .bind(format!("stopped {JOB_ATTEMPTS} times in a row: {error}"))
        .bind(now)
        .bind(id)
        .fetch_optional(self.resolver.database().pool())
        .await?;
        if let Some(spool) = spool {
            let _ = std::fs::remove_file(spool);
        }
        tracing::error!(job = %id, "bulk job failed: it kept stopping at the same row");
        Ok(())
    }

    /// Works one job from its checkpoint to the end (or to a shutdown).
    async fn run(&self, id: &str) -> Result<(), ServiceError> {
        let mut ledger = JobLedger::start(self.resolver.database().clone(), id.to_owned());
        let outcome = self.run_with(id, &mut ledger).await;
        // What the job noted before it stopped (an error, a shutdown) is written all the same.
        // A failed write of the ledger is the cause of a job stopped on "ledger stopped".
        let noted = ledger.close().await;
        noted.and(outcome)
    }

    /// [`Self::run`], noting rejected rows and checkpoints in `ledger`.
    async fn run_with(&self, id: &str, ledger: &mut JobLedger) -> Result<(), ServiceError> {
        let pool = self.resolver.database().pool();
        let row = sqlx::query(
            "SELECT format, spool_path, rows_read, accepted, rejected, customers_created, \
             customers_merged, bytes_read FROM jobs WHERE id = $1",
        )
        .bind(id)
        .fetch_one(pool)
        .await?;
        let format: String = row.try_get(0)?;
        let format = UploadFormat::from_name(&format)
            .ok_or_else(|| StoreError::Corrupt(format!("job format {format}")))?;
        let spool = PathBuf::from(row.try_get::<String, _>(1)?);
        let mut progress = Progress {
            rows_read: count(&row, 2)?,
            accepted: count(&row, 3)?,
            rejected: count(&row, 4)?,
            customers_created: count(&row, 5)?,
            customers_merged: count(&row, 6)?,
            bytes_read: count(&row, 7)?,
        };
        let now = now_millis();
        sqlx::query(
            "UPDATE jobs SET state = 'running', started_at = COALESCE(started_at, $1), \
             updated_at = $1 WHERE id = $2",
        )
        .bind(now)
        .bind(id)
        .execute(pool)
        .await?;
        if progress.rows_read > 0 {
            tracing::info!(job = %id, rows_read = progress.rows_read, "resuming bulk job");
        }

        // The file is read and its rows parsed on a blocking thread, and handed over in
        // batches through a bounded channel: memory stays bounded whatever the file's size.
        let (sender, mut batches) = mpsc::channel::<Vec<ParsedRow>>(READ_AHEAD_BATCHES);
        let bytes_read = Arc::new(AtomicU64::new(0));
        let reader = {
            let (spool, skip, bytes_read) = (spool.clone(), progress.rows_read, bytes_read.clone());
            tokio::task::spawn_blocking(move || {
                read_rows(&spool, format, skip, &bytes_read, &sender)
            })
        };
        let mut rows = Vec::new().into_iter();
        let mut reading = true;
        let live = LiveEntry::new(&self.live, id, progress);

        // Valid rows wait in `chunk` and are resolved and written together, in a task of
        // their own, while the next chunk is read: the job's rows read keep moving while a
        // chunk is written, and the next chunk is ready when it is stored. A chunk is resolved
        // against a store that holds the one before it: against the job's image of the store
        // (see `crate::resident`), as soon as the one before is resolved, so that one chunk is
        // resolved while the one before is written; else once the one before is stored. The
        // checkpoint follows each stored chunk, so it never covers a row that is not stored.
        let mut chunk: Vec<Profile> = Vec::new();
        let mut in_flight: VecDeque<ChunkInFlight> = VecDeque::new();
        // Chunks grow with the store (see ChunkRows); what this job adds counts too.
        let stored_before = self.resolver.stored_records().await?;
        // A job that starts on an empty store holds what it stores in memory, and its later
        // chunks find their candidates there rather than reading them back.
        let mut resident = if stored_before == 0 && self.resident_records > 0 {
            self.resolver
                .image_of_empty_store(self.resident_records)
                .await?
        } else {
            None
        };
        let mut chunk_started = Instant::now();
        loop {
            if rows.len() == 0 && reading {
                match tokio::time::timeout(CHECKPOINT_EVERY, batches.recv()).await {
                    Ok(Some(batch)) => rows = batch.into_iter(),
                    Ok(None) => reading = false,
                    Err(_) => {} // nothing new within the second: see whether a chunk is due
                }
            }
            let ended = rows.len() == 0 && !reading;
            if let Some(row) = rows.next() {
                progress.rows_read += 1;
                progress.bytes_read = row.bytes;
                match row.profile {
                    Ok(profile) => chunk.push(profile),
                    Err(error) => ledger.reject(&mut progress, error)?,
                }
            }
            // A chunk stored while the next one filled counts at once.
            let stored = |flights: &VecDeque<ChunkInFlight>| {
                flights.front().is_some_and(ChunkInFlight::is_finished)
            };
            self.land_while(ledger, &mut in_flight, &mut progress, &mut resident, stored)
                .await?;
            let stopping = self.stopping.load(Ordering::SeqCst);
            let writing = rows_in_flight(&in_flight);
            // A slow upload is written every second, so that its progress shows; a fast one
            // fills its chunks first.
            let chunk_rows = self
                .chunk_rows
                .with_stored(stored_before + progress.accepted + writing);
            let due = chunk.len() >= chunk_rows
                || (in_flight.is_empty()
                    && chunk_started.elapsed() >= CHECKPOINT_EVERY
                    && chunk.len() < self.chunk_rows.least)
                || ended
                || stopping;
            if due {
                // The chunk is prepared (normalized, keyed, its rows serialized) on other
                // threads while the previous one is still being written.
                let filled = chunk.len() as u64;
                let preparing = (!chunk.is_empty()).then(|| {
                    let chunk = std::mem::take(&mut chunk);
                    tokio::task::spawn_blocking(move || PreparedBatch::of(chunk))
                });
                // Meanwhile the stage is that of the chunks in flight.
                live.update(progress, rows_in_flight(&in_flight) + filled, false);
                let launched = preparing.is_some();
                if let Some(preparing) = preparing {
                    // One chunk resolved while the one before it is written, no more: each
                    // holds its rows in memory.
                    let full =
                        |flights: &VecDeque<ChunkInFlight>| flights.len() >= MAX_CHUNKS_IN_FLIGHT;
                    self.land_while(ledger, &mut in_flight, &mut progress, &mut resident, full)
                        .await?;
                    // The image of the store comes from the newest chunk in flight, once that
                    // one is resolved (or stored), else from the job.
                    let image = match in_flight.back_mut().and_then(|f| f.image.take()) {
                        Some(handed_on) => handed_on.await.ok().flatten(),
                        None => resident.take(),
                    };
                    in_flight.push_back(self.launch(&live, preparing, image, filled, progress));
                }
                if ended || stopping || !launched {
                    let any = |flights: &VecDeque<ChunkInFlight>| !flights.is_empty();
                    self.land_while(ledger, &mut in_flight, &mut progress, &mut resident, any)
                        .await?;
                }
                if !launched {
                    // No chunk to carry them: rows read (and rejected) since are checkpointed.
                    ledger.checkpoint(progress)?;
                }
                chunk_started = Instant::now();
            }
            let writing = rows_in_flight(&in_flight);
            live.update(progress, writing + chunk.len() as u64, in_flight.is_empty());
            if stopping && !ended {
                drop(batches);
                tracing::info!(job = %id, rows_read = progress.rows_read, "bulk job paused by shutdown");
                let _ = reader.await;
                return Ok(());
            }
            if ended {
                break;
            }
        }
        progress.bytes_read = bytes_read.load(Ordering::Relaxed);
        let outcome = reader
            .await
            .map_err(|e| ServiceError::Unavailable(e.to_string()))?;
        ledger.checkpoint(progress)?;
        // The job's last checkpoint and rejected rows are written before it is marked done.
        ledger.close().await?;
        let (state, error) = match outcome {
            Ok(()) => (JobState::Completed, None),
            Err(e) => (JobState::Failed, Some(e.to_string())),
        };
        let now = now_millis();
        sqlx::query(
            "UPDATE jobs SET state = $1, error = $2, finished_at = $3, updated_at = $3 \
             WHERE id = $4",
        )
        .bind(state.as_str())
        .bind(error)
        .bind(now)
        .bind(id)
        .execute(pool)
        .await?;
        let _ = std::fs::remove_file(&spool);
        tracing::info!(
            job = %id,
            rows = progress.rows_read,
            accepted = progress.accepted,
            rejected = progress.rejected,
            state = state.as_str(),
            "bulk job finished"
        );
        Ok(())
    }

    /// Starts resolving and writing a chunk of `rows` valid rows, the job's up to `through`,
    /// once it is prepared, in a task of its own that tells `live` the stages it goes through.
    /// The job's image of the store, if it holds one, goes with it, and the chunk hands it on
    /// through its `image` (see [`Resolver::ingest_prepared`]).
    fn launch(
        &self,
        live: &LiveEntry,
        preparing: tokio::task::JoinHandle<Result<PreparedBatch, StoreError>>,
        resident: Option<ResidentRecords>,
        rows: u64,
        through: Progress,
    ) -> ChunkInFlight {
        let resolver = self.resolver.clone();
        let report = live.reporter();
        let (hand_on, image) = oneshot::channel();
        let task = tokio::spawn(async move {
            report(ChunkStage::Preparing.as_str());
            let batch = preparing
                .await
                .map_err(|e| ServiceError::Unavailable(e.to_string()))??;
            resolver
                .ingest_prepared(
                    batch,
                    resident,
                    &move |stage| report(stage.as_str()),
                    hand_on,
                )
                .await
        });
        ChunkInFlight {
            task,
            image: Some(image),
            rows,
            through,
        }
    }

    /// Lands the chunks in flight, oldest first, for as long as `more` says so.
    async fn land_while(
        &self,
        ledger: &JobLedger,
        in_flight: &mut VecDeque<ChunkInFlight>,
        progress: &mut Progress,
        resident: &mut Option<ResidentRecords>,
        more: impl Fn(&VecDeque<ChunkInFlight>) -> bool,
    ) -> Result<(), ServiceError> {
        while more(in_flight) {
            let Some(flight) = in_flight.pop_front() else {
                break;
            };
            self.land(ledger, flight, progress, resident).await?;
        }
        Ok(())
    }

    /// Waits for a chunk to be stored, counts its outcomes, and saves the checkpoint after
    /// its last row (rows read since are not stored yet); the job's image of the store, if the
    /// chunk still holds it, goes to `resident`. A failed chunk stored nothing: the error ends
    /// the run, and the job resumes from the previous checkpoint.
    async fn land(
        &self,
        ledger: &JobLedger,
        mut flight: ChunkInFlight,
        progress: &mut Progress,
        resident: &mut Option<ResidentRecords>,
    ) -> Result<(), ServiceError> {
        let outcomes = (&mut flight.task)
            .await
            .map_err(|e| ServiceError::Unavailable(e.to_string()))??;
        if let Some(image) = flight.image.take() {
            *resident = image.await.ok().flatten();
        }
        progress.accepted += outcomes.len() as u64;
        for outcome in outcomes {
            match outcome {
                IngestOutcome::CreatedCustomer => progress.customers_created += 1,
                IngestOutcome::MergedCustomers => progress.customers_merged += 1,
                _ => {}
            }
        }
        let checkpoint = Progress {
            rows_read: flight.through.rows_read,
            rejected: flight.through.rejected,
            bytes_read: flight.through.bytes_read,
            ..*progress
        };
        ledger.checkpoint(checkpoint)
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Progress {
    rows_read: u64,
    accepted: u64,
    rejected: u64,
    customers_created: u64,
    customers_merged: u64,
    bytes_read: u64,
}

/// What a job writes about itself beside its chunks, rejected rows and checkpoints, written
/// in order by a task of its own. On SQLite these writes queue for the writer slot behind the
/// chunk being written, which holds the database's write lock for many seconds (a plain write
/// on the pool would give up after its busy timeout), while the job reads on and resolves its
/// next chunk.
struct JobLedger {
    entries: Option<mpsc::UnboundedSender<LedgerEntry>>,
    task: Option<tokio::task::JoinHandle<Result<(), ServiceError>>>,
}

enum LedgerEntry {
    Rejected(JobRowError),
    /// The job's progress as far as it is stored: what a restart resumes from.
    Checkpoint(Progress),
}

impl JobLedger {
    fn start(db: Database, job: String) -> Self {
        let (entries, mut noted) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Some(first) = noted.recv().await {
                // Whatever queued up meanwhile goes in the same transaction.
                let mut entries = vec![first];
                while let Ok(more) = noted.try_recv() {
                    entries.push(more);
                }
                write_ledger(&db, &job, entries).await?;
            }
            Ok(())
        });
        Self {
            entries: Some(entries),
            task: Some(task),
        }
    }

    /// Counts a rejected row, and notes it with its line, field and reason.
    fn reject(&self, progress: &mut Progress, error: JobRowError) -> Result<(), ServiceError> {
        progress.rejected += 1;
        self.note(LedgerEntry::Rejected(error))
    }

    fn checkpoint(&self, progress: Progress) -> Result<(), ServiceError> {
        self.note(LedgerEntry::Checkpoint(progress))
    }

    fn note(&self, entry: LedgerEntry) -> Result<(), ServiceError> {
        self.entries
            .as_ref()
            .and_then(|entries| entries.send(entry).ok())
            .ok_or_else(|| ServiceError::Unavailable("the job's ledger stopped".to_owned()))
    }

    /// Waits until everything noted is written; the write's error, if one failed.
    async fn close(&mut self) -> Result<(), ServiceError> {
        self.entries.take();
        match self.task.take() {
            Some(task) => task
                .await
                .map_err(|e| ServiceError::Unavailable(e.to_string()))?,
            None => Ok(()),
        }
    }
}

/// Writes a job's rejected rows and its last checkpoint among `entries` in one transaction.
async fn write_ledger(
    db: &Database,
    job: &str,
    entries: Vec<LedgerEntry>,
) -> Result<(), ServiceError> {
    let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    let mut write = db.begin_side_write().await?;
    let mut checkpoint = None;
    for entry in entries {
        match entry {
            LedgerEntry::Rejected(error) => {
                sqlx::query(
                    "INSERT INTO job_errors (job_id, line, field, reason) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (job_id, line) DO NOTHING",
                )
                .bind(job)
                .bind(n(error.line))
                .bind(error.field)
                .bind(error.reason)
                .execute(&mut *write.tx)
                .await?;
            }
            LedgerEntry::Checkpoint(progress) => checkpoint = Some(progress),
        }
    }
    if let Some(progress) = checkpoint {
        sqlx::query(
            "UPDATE jobs SET rows_read = $1, accepted = $2, rejected = $3, \
             customers_created = $4, customers_merged = $5, bytes_read = $6, updated_at = $7 \
             WHERE id = $8",
        )
        .bind(n(progress.rows_read))
        .bind(n(progress.accepted))
        .bind(n(progress.rejected))
        .bind(n(progress.customers_created))
        .bind(n(progress.customers_merged))
        .bind(n(progress.bytes_read))
        .bind(now_millis())
        .bind(job)
        .execute(&mut *write.tx)
        .await?;
    }
    write.tx.commit().await?;
    Ok(())
}

/// The valid rows of the chunks in flight: read, not stored yet.
fn rows_in_flight(in_flight: &VecDeque<ChunkInFlight>) -> u64 {
    in_flight.iter().map(|flight| flight.rows).sum()
}

/// A chunk being resolved and written while the job reads on.
struct ChunkInFlight {
    task: tokio::task::JoinHandle<Result<Vec<IngestOutcome>, ServiceError>>,
    /// Where the chunk hands on the job's image of the store, until the job takes it.
    image: Option<oneshot::Receiver<Option<ResidentRecords>>>,
    /// Its rows.
    rows: u64,
    /// The job's progress at its last row, accepted rows of earlier chunks included.
    through: Progress,
}

impl ChunkInFlight {
    fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

impl Drop for ChunkInFlight {
    /// A chunk left behind when the job stops on an error is rolled back (its transaction
    /// dropped), not left writing beside the job's next run: the checkpoint does not cover it,
    /// so the next run reads its rows again.
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The stage of a running job while no chunk is being written.
const READING_ROWS: &str = "reading rows";

/// What running jobs have done since their last checkpoint, by job id, for
/// `GET /v1/jobs/{id}`: the database holds the checkpoint, which is where a job resumes.
type LiveJobs = Arc<std::sync::Mutex<HashMap<String, LiveProgress>>>;

#[derive(Debug, Clone, Copy)]
struct LiveProgress {
    /// Rows read (rejected ones included) and the outcomes of the stored chunks.
    progress: Progress,
    /// Valid rows read and not stored yet.
    rows_in_progress: u64,
    stage: &'static str,
}

fn lock_live(live: &LiveJobs) -> std::sync::MutexGuard<'_, HashMap<String, LiveProgress>> {
    // A panic while holding it left counters at worst one row behind: keep using them.
    live.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A running job's entry in [`LiveJobs`], removed when the run ends however it ends.
struct LiveEntry {
    live: LiveJobs,
    id: String,
}

impl LiveEntry {
    fn new(live: &LiveJobs, id: &str, progress: Progress) -> Self {
        lock_live(live).insert(
            id.to_owned(),
            LiveProgress {
                progress,
                rows_in_progress: 0,
                stage: READING_ROWS,
            },
        );
        Self {
            live: live.clone(),
            id: id.to_owned(),
        }
    }

    /// New counters; the stage goes back to reading when no chunk is being written.
    fn update(&self, progress: Progress, rows_in_progress: u64, idle: bool) {
        if let Some(entry) = lock_live(&self.live).get_mut(&self.id) {
            entry.progress = progress;
            entry.rows_in_progress = rows_in_progress;
            if idle {
                entry.stage = READING_ROWS;
            }
        }
    }

    /// Sets the stage from a chunk's task.
    fn reporter(&self) -> impl Fn(&'static str) + Send + Sync + 'static {
        let (live, id) = (self.live.clone(), self.id.clone());
        move |stage| {
            if let Some(entry) = lock_live(&live).get_mut(&id) {
                entry.stage = stage;
            }
        }
    }
}

impl Drop for LiveEntry {
    fn drop(&mut self) {
        lock_live(&self.live).remove(&self.id);
    }
}

fn count(row: &sqlx::any::AnyRow, index: usize) -> Result<u64, StoreError> {
    Ok(u64::try_from(row.try_get::<i64, _>(index)?).unwrap_or(0))
}

impl From<RowError> for JobRowError {
    fn from(error: RowError) -> Self {
        Self {
            line: error.line,
            field: error.field,
            reason: error.reason,
        }
    }
}

/// A row as the API would take it: every field validated (strict, like `POST /v1/records`).
fn parse(line: u64, input: &RecordInput) -> Result<Profile, JobRowError> {
    Profile::parse(input).map_err(|errors| row_error(line, &errors))
}

/// One rejected row: the first field at fault, and every reason.
fn row_error(line: u64, errors: &ValidationErrors) -> JobRowError {
    JobRowError {
        line,
        field: errors.0.first().map(|e| e.field.clone()),
        reason: errors
            .0
            .iter()
            .map(|e| format!("{}: {}", e.field, e.reason))
            .collect::<Vec<_>>()
            .join("; "),
    }
}

/// File-level checks before a job is created: CSV header, something to read.
fn check_file(path: &Path, format: UploadFormat) -> Result<(), String> {
    let file = File::open(path).map_err(|e| format!("cannot read the upload: {e}"))?;
    let reader = BufReader::new(file);
    match format {
        UploadFormat::Csv => input::check_csv_header(reader),
        UploadFormat::Ndjson => input::check_ndjson_has_rows(reader),
    }
    .map_err(|e| e.to_string())
}

/// Counts the bytes read from the file, for progress and ETA.
struct CountingReader<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// One row of an upload, parsed: the profile or why the row is rejected, and the bytes of the
/// file read when it was.
struct ParsedRow {
    bytes: u64,
    profile: Result<Profile, JobRowError>,
}

/// Rows per batch handed from the reading thread to the job.
const READ_BATCH_ROWS: usize = 4096;
/// Batches the reading thread may be ahead of the job, which takes them while a chunk is
/// written.
const READ_AHEAD_BATCHES: usize = 16;

/// Reads and parses the rows of a spooled file after the first `skip`, into `sender` in
/// batches, until the file ends or the receiver goes away.
fn read_rows(
    path: &Path,
    format: UploadFormat,
    skip: u64,
    bytes_read: &Arc<AtomicU64>,
    sender: &mpsc::Sender<Vec<ParsedRow>>,
) -> Result<(), String> {
    let file = File::open(path).map_err(|e| format!("cannot read the upload: {e}"))?;
    let reader = BufReader::with_capacity(
        64 * 1024,
        CountingReader {
            inner: file,
            count: bytes_read.clone(),
        },
    );
    let mut seen = 0u64;
    let mut batch = Vec::with_capacity(READ_BATCH_ROWS);
    // The closure borrows `batch` until the file is read; the last, partial batch goes after.
    let read = {
        let mut each = |line: u64, row: Result<RecordInput, RowError>| {
            seen += 1;
            if seen <= skip {
                return ControlFlow::Continue(());
            }
            batch.push(ParsedRow {
                // The bytes read when the row was parsed: at most one buffer ahead of the row.
                bytes: bytes_read.load(Ordering::Relaxed),
                profile: row
                    .map_err(JobRowError::from)
                    .and_then(|input| parse(line, &input)),
            });
            if batch.len() < READ_BATCH_ROWS {
                return ControlFlow::Continue(());
            }
            let full = std::mem::replace(&mut batch, Vec::with_capacity(READ_BATCH_ROWS));
            match sender.blocking_send(full) {
                Ok(()) => ControlFlow::Continue(()),
                Err(_) => ControlFlow::Break(()),
            }
        };
        match format {
            UploadFormat::Csv => {
                input::stream_csv_until(reader, &mut each).map_err(|e| e.to_string())
            }
            UploadFormat::Ndjson => {
                input::stream_ndjson_until(reader, &mut each);
                Ok(())
            }
        }
    };
    if !batch.is_empty() {
        // The job is gone only when it stopped listening; then nothing is left to hand over.
        let _ = sender.blocking_send(batch);
    }
    read
}

const JOB_COLUMNS: &str = "SELECT id, state, format, file_name, bytes_total, bytes_read, \
    rows_read, accepted, rejected, customers_created, customers_merged, error, created_at, \
    started_at, updated_at, finished_at FROM jobs";

/// A job as stored, with what it has done since its checkpoint when it runs in this process.
fn job_from_row(row: &sqlx::any::AnyRow, live: &LiveJobs) -> Result<JobView, ServiceError> {
    let id: String = row.try_get(0)?;
    let state: String = row.try_get(1)?;
    let state = JobState::from_name(&state)
        .ok_or_else(|| StoreError::Corrupt(format!("job state {state}")))?;
    let bytes_total = count(row, 4)?;
    let checkpoint = Progress {
        bytes_read: count(row, 5)?,
        rows_read: count(row, 6)?,
        accepted: count(row, 7)?,
        rejected: count(row, 8)?,
        customers_created: count(row, 9)?,
        customers_merged: count(row, 10)?,
    };
    let live = (state == JobState::Running)
        .then(|| lock_live(live).get(&id).copied())
        .flatten();
    let started_at: Option<i64> = row.try_get(13)?;
    let finished_at: Option<i64> = row.try_get(15)?;
    let end = finished_at.unwrap_or(if state == JobState::Running {
        now_millis()
    } else {
        row.try_get(14)?
    });
    let elapsed = started_at.map(|started| (end - started).max(1) as f64 / 1000.0);
    let figures = Figures::of(
        state == JobState::Running,
        bytes_total,
        checkpoint,
        live,
        elapsed,
    );
    let current = figures.current;
    Ok(JobView {
        job_id: id,
        state,
        format: row.try_get(2)?,
        file_name: row.try_get(3)?,
        bytes_total,
        bytes_read: current.bytes_read,
        rows_read: current.rows_read,
        accepted: current.accepted,
        rejected: current.rejected,
        rows_in_progress: figures.rows_in_progress,
        customers_created: current.customers_created,
        customers_merged: current.customers_merged,
        rate_per_second: (figures.rate * 10.0).round() / 10.0,
        eta_seconds: figures.eta.map(f64::round),
        stage: figures.stage.map(str::to_owned),
        error: row.try_get(11)?,
        created_at: to_time(row.try_get(12)?),
        started_at: started_at.map(to_time),
        finished_at: finished_at.map(to_time),
    })
}

/// A job's counters, rate and ETA.
#[derive(Debug, PartialEq)]
struct Figures {
    current: Progress,
    rows_in_progress: u64,
    stage: Option<&'static str>,
    rate: f64,
    eta: Option<f64>,
}

impl Figures {
    /// From the job's checkpoint, and from `live` while it runs here, `elapsed` seconds after
    /// it started. The rate counts finished rows (stored or rejected). The ETA, only while the
    /// job is `running`, extrapolates the time the checkpoint took over the bytes after it:
    /// rows read since are not finished yet.
    fn of(
        running: bool,
        bytes_total: u64,
        checkpoint: Progress,
        live: Option<LiveProgress>,
        elapsed: Option<f64>,
    ) -> Self {
        let current = live.map_or(checkpoint, |live| live.progress);
        let finished = current.accepted + current.rejected;
        let rate = elapsed.map_or(0.0, |secs| finished as f64 / secs);
        let eta = match elapsed {
            Some(secs) if running && checkpoint.bytes_read > 0 => {
                let left = bytes_total.saturating_sub(checkpoint.bytes_read) as f64;
                Some(left * secs / checkpoint.bytes_read as f64)
            }
            _ => None,
        };
        Self {
            current,
            rows_in_progress: live.map_or(0, |live| live.rows_in_progress),
            stage: live.map(|live| live.stage),
            rate,
            eta,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(rows_read: u64, accepted: u64, rejected: u64, bytes_read: u64) -> Progress {
        Progress {
            rows_read,
            accepted,
            rejected,
            customers_created: accepted / 2,
            customers_merged: 1,
            bytes_read,
        }
    }

    #[test]
    fn a_running_job_shows_the_rows_read_since_its_checkpoint() {
        // Checkpoint after 1,000 rows (990 stored, 10 rejected) and 100 kB of a 1 MB file;
        // since then 600 more rows read, 4 of them rejected, 596 being written.
        let checkpoint = progress(1_000, 990, 10, 100_000);
        let live = LiveProgress {
            progress: progress(1_600, 990, 14, 160_000),
            rows_in_progress: 596,
            stage: "scoring candidate pairs and filing blocking keys",
        };
        let figures = Figures::of(true, 1_000_000, checkpoint, Some(live), Some(10.0));
        assert_eq!(figures.current, live.progress);
        assert_eq!(figures.rows_in_progress, 596);
        assert_eq!(figures.stage, Some(live.stage));
        assert_eq!(
            figures.rate, 100.4,
            "finished rows per second: (990 + 14) / 10"
        );
        assert_eq!(
            figures.eta,
            Some(90.0),
            "the checkpoint's 100 kB took 10 s: 900 kB left"
        );
    }

    #[test]
    fn a_job_without_live_progress_shows_its_checkpoint() {
        let checkpoint = progress(1_000, 990, 10, 100_000);
        let running_elsewhere = Figures::of(true, 1_000_000, checkpoint, None, Some(10.0));
        assert_eq!(running_elsewhere.current, checkpoint);
        assert_eq!(running_elsewhere.rows_in_progress, 0);
        assert_eq!(running_elsewhere.stage, None);
        assert_eq!(running_elsewhere.eta, Some(90.0));
        let done = Figures::of(false, 100_000, checkpoint, None, Some(4.0));
        assert_eq!(done.rate, 250.0);
        assert_eq!(done.eta, None, "no ETA once finished");
        let queued = Figures::of(false, 100_000, Progress::default(), None, None);
        assert_eq!((queued.rate, queued.eta), (0.0, None));
        let started = Figures::of(true, 100_000, Progress::default(), None, Some(1.0));
        assert_eq!(
            started.eta, None,
            "nothing finished yet to extrapolate from"
        );
    }

    #[test]
    fn live_progress_lasts_as_long_as_the_run() {
        let live = LiveJobs::default();
        {
            let entry = LiveEntry::new(&live, "job_1", progress(10, 0, 0, 100));
            assert_eq!(lock_live(&live)["job_1"].stage, READING_ROWS);
            let report = entry.reporter();
            report(ChunkStage::Committing.as_str());
            entry.update(progress(20, 0, 1, 200), 19, false);
            let now = lock_live(&live)["job_1"];
            assert_eq!(now.stage, "committing", "a chunk in flight keeps its stage");
            assert_eq!((now.progress.rows_read, now.rows_in_progress), (20, 19));
            entry.update(progress(20, 19, 1, 200), 0, true);
            assert_eq!(lock_live(&live)["job_1"].stage, READING_ROWS);
        }
        assert!(lock_live(&live).is_empty(), "removed when the run ends");
    }

    #[test]
    fn chunks_are_half_the_store_within_bounds_and_a_first_load_comes_at_once() {
        let rows = ChunkRows::default();
        assert_eq!(
            rows.with_stored(0),
            1_000_000,
            "a first load comes in one large chunk"
        );
        assert_eq!(rows.with_stored(19_999), 1_000_000);
        assert_eq!(rows.with_stored(20_000), 20_000);
        assert_eq!(rows.with_stored(100_000), 50_000);
        assert_eq!(rows.with_stored(10_000_000), 250_000);
        let fixed = ChunkRows {
            least: 40,
            most: 40,
            first: 40,
        };
        assert_eq!(fixed.with_stored(0), 40);
        assert_eq!(fixed.with_stored(1_000_000), 40);
        let odd = ChunkRows {
            least: 0,
            most: 0,
            first: 0,
        };
        assert_eq!(odd.with_stored(0), 1, "never empty, whatever the settings");
        assert_eq!(odd.with_stored(5), 1);
        let crossed = ChunkRows {
            least: 500,
            most: 100,
            first: 50,
        };
        assert_eq!(crossed.with_stored(1_000_000), 500, "the least wins");
        assert_eq!(
            crossed.with_stored(0),
            50,
            "a first load takes its own bound"
        );
    }
}
