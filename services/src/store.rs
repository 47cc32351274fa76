//! The SQL store: one schema and one set of queries for SQLite (the embedded default) and
//! PostgreSQL (production), through sqlx's `Any` driver. The two engines differ only in how
//! concurrent writers are kept apart, which [`Database::begin_write`] hides.

use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Once};
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor, Row};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::error::StoreError;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/postgres");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

impl Engine {
    pub fn from_url(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Ok(Self::Postgres)
        } else {
            Err(StoreError::UnsupportedUrl)
        }
    }
}

/// A pool of connections to the configured database.
#[derive(Clone)]
pub struct Database {
    pool: AnyPool,
    engine: Engine,
    /// SQLite has one writer at a time: writes queue here, in the process, for the one
    /// connection that writes (no `SQLITE_BUSY` on lock upgrades). PostgreSQL uses row and
    /// advisory locks instead. The slot holds whether that connection's page cache is sized
    /// for bulk chunks (see [`SQLITE_BULK_WRITER_CACHE_KIB`]).
    sqlite_writer: Option<(AnyPool, Arc<Mutex<bool>>)>,
    statistics: Arc<Statistics>,
}

/// When the planner's table statistics were last refreshed, and how much was written since.
/// PostgreSQL plans the candidate look-ups from them: on tables it thinks empty or small it
/// picks a hash join over a whole-table scan, which costs milliseconds per look-up once the
/// store holds tens of thousands of records (a look-up through the indexes takes 0.15 ms).
/// Autovacuum refreshes them only when it runs, and it may be off or behind a bulk load, so
/// the service refreshes them itself when the store has grown by a fifth.
#[derive(Debug, Default)]
struct Statistics {
    written_since: AtomicU64,
    records_at_refresh: AtomicU64,
    refreshing: Mutex<()>,
    /// When [`Database::maintain`] last checkpointed SQLite's WAL.
    last_checkpoint: Mutex<Option<std::time::Instant>>,
}

/// Rows written since the last refresh that make statistics stale: a fifth of the records
/// at the last refresh, and at least this many.
const STALE_AFTER_ROWS: u64 = 1_000;

/// SQLite page cache of each reading connection, in KiB.
const SQLITE_READER_CACHE_KIB: i64 = 32 * 1024;
/// SQLite page cache of the one writing connection, in KiB. Pages that fall out are read back
/// through the memory map, so a larger cache buys little, and every commit pays for its size:
/// with 256 MiB, the end of each transaction spent its time in SQLite's page-cache truncation
/// (`pcache1TruncateUnsafe`, 8% of the process in `perf`), and `POST /v1/records` with 241,389
/// records stored saturated at 264/s (p50 1.6 s) where 32 MiB sustained 300/s (p50 2.3 ms,
/// p99 22 ms) in that run; 300/s is near what this test sustains, and later runs ranged from
/// p50 11 ms to 279/s. A 1M-record bulk upload ran at 2,388 rows/s with 32 MiB, 2,395 with
/// 256 MiB; in session 10, with 1 GiB set for bulk chunks only, at 4,671 rows/s, the low end
/// of that day's runs with 32 MiB (4,710 to 5,473; `scripts/bench-bulk sqlite 1000000 6`): the
/// index writes got shorter, but each chunk then waited for its scoring, and the commits took
/// longer. Bulk chunks now take a larger cache all the same, which pays on later code (see
/// [`SQLITE_BULK_WRITER_CACHE_KIB`]); other writes go back to this one.
const SQLITE_WRITER_CACHE_KIB: i64 = 32 * 1024;
/// SQLite page cache of the writing connection while it writes bulk chunks (and until the
/// next other write), in KiB: a chunk dirties far more pages than 32 MiB holds, which were
/// written to the log before the commit and read back. In three pairs of 1M-row uploads
/// (`scripts/bench-bulk sqlite 1000000 6`, session 19, on a machine drifting between runs),
/// 6,801, 9,051 and 8,995 rows/s with 256 MiB against 5,215, 7,321 and 8,359 with 32 MiB, the
/// writing thread's CPU 76.5, 60.6 and 59.1 s against 90.1, 71.6 and 62.4 s; the third pair
/// ran in the reverse order of the first two.
const SQLITE_BULK_WRITER_CACHE_KIB: i64 = 256 * 1024;
/// Reads of pages not in a connection's cache go through a memory map instead of a system
/// call each; address space only, the OS page cache holds the pages either way.
const SQLITE_MMAP_BYTES: i64 = 4 << 30;
/// Page size of a new SQLite file (an existing one keeps its own): bulk inserts into the
/// index and the records' tables split and write fewer pages than with SQLite's 4 KiB. The
/// five chunks of a 1M-row upload wrote in 66.6 and 70.9 s against 70.8 and 80.9 s with
/// 4 KiB pages, run for run, and the uploads ran at 10,898 and 10,656 rows/s against 10,931
/// and 9,659 (a slowing machine; `scripts/bench-bulk sqlite 1000000 6`).
const SQLITE_PAGE_BYTES: i64 = 8192;

/// Longest wait for the writer slot after which the SQLite upkeep copies the log back again
/// before it resets it: a record-by-record write holds the slot for milliseconds.
const SLOT_WAIT_BEFORE_COPYING_AGAIN: Duration = Duration::from_millis(100);

/// What a write transaction writes: how it locks on PostgreSQL, and the page cache it gives
/// SQLite's writer.
#[derive(Clone, Copy, PartialEq, Eq)]
enum WriteKind {
    /// The identity graph, record by record or by hand.
    Graph,
    /// Beside the graph: enrichment, name counts, a bulk job's checkpoints.
    Side,
    /// A chunk of a bulk upload.
    Bulk,
}

/// A write transaction plus, on SQLite, the process-wide writer slot it holds.
pub struct WriteTx {
    pub tx: sqlx::Transaction<'static, sqlx::Any>,
    _writer: Option<OwnedMutexGuard<bool>>,
}

impl Database {
    /// Connects to `url` (`sqlite://path` or `postgres://...`). A SQLite file and its folder
    /// are created when missing.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        static DRIVERS: Once = Once::new();
        DRIVERS.call_once(sqlx::any::install_default_drivers);

        let engine = Engine::from_url(url)?;
        let url = match engine {
            Engine::Sqlite => prepare_sqlite_url(url)?,
            Engine::Postgres => url.to_owned(),
        };
        let options = AnyConnectOptions::from_str(&url)?;
        let pool_of = |connections: u32, cache_kib: i64, autocheckpoint: u32| {
            AnyPoolOptions::new()
                .max_connections(connections)
                .acquire_timeout(Duration::from_secs(10))
                .after_connect(move |conn, _meta| {
                    Box::pin(async move {
                        if engine == Engine::Sqlite {
                            // WAL lets readers go on while one writer writes; NORMAL sync is
                            // durable across process crashes, which is what WAL mode promises.
                            // A larger page cache than SQLite's 2 MB keeps the indexes a
                            // look-up walks in memory. The page size goes first: it only
                            // applies to a new file, before WAL mode writes its first page.
                            // The reading connections leave the log to the writer and to
                            // [`Database::maintain`]: the few rows they write (the geocode
                            // cache) would otherwise copy the whole log back in their commit,
                            // gigabytes after a bulk chunk, holding the lock that every other
                            // checkpoint then finds taken.
                            conn.execute(
                                format!(
                                    "PRAGMA page_size = {SQLITE_PAGE_BYTES}; \
                                     PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                                     PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; \
                                     PRAGMA cache_size = -{cache_kib}; \
                                     PRAGMA mmap_size = {SQLITE_MMAP_BYTES}; \
                                     PRAGMA wal_autocheckpoint = {autocheckpoint};"
                                )
                                .as_str(),
                            )
                            .await?;
                        }
                        Ok(())
                    })
                })
        };
        let pool = pool_of(max_connections, SQLITE_READER_CACHE_KIB, 0)
            .connect_with(options.clone())
            .await?;
        // SQLite has one writer at a time, so writes go through one connection of their own:
        // its page cache stays valid from one write to the next (a connection's cache is
        // dropped whenever another connection has written), and the pages a write reads
        // (candidates, customers) are mostly there already.
        let sqlite_writer = match engine {
            Engine::Sqlite => Some(
                pool_of(1, SQLITE_WRITER_CACHE_KIB, 1000)
                    .connect_with(options)
                    .await?,
            ),
            Engine::Postgres => None,
        };
        Ok(Self {
            pool,
            engine,
            sqlite_writer: sqlite_writer.map(|pool| (pool, Arc::new(Mutex::new(false)))),
            statistics: Arc::default(),
        })
    }

    /// Counts records written, towards the next statistics refresh.
    pub fn note_written(&self, records: u64) {
        self.statistics
            .written_since
            .fetch_add(records, Ordering::Relaxed);
    }

    /// Upkeep a long-running process owes the database, cheap to call often (after every bulk
    /// chunk, every 10 s while serving). On PostgreSQL, fresh planner statistics once the store
    /// grew by a fifth. On SQLite, at most every 10 s, a WAL checkpoint that truncates the log:
    /// SQLite's own checkpoints run after commits in passive mode and cannot restart the log
    /// while readers keep reading, which a busy service always does. The log grew to 5.7 GB
    /// beside a 725 MB database after a 240,000-record upload, and every read searched it.
    pub async fn maintain(&self) -> Result<(), StoreError> {
        let Some((writer, queue)) = &self.sqlite_writer else {
            return self.refresh_statistics_if_stale().await.map(|_| ());
        };
        if !self.checkpoint_due().await {
            return Ok(());
        }
        // The log's pages are copied back first without the writer slot, on a reading
        // connection, while writes go on: after a bulk chunk that is gigabytes, seconds of
        // copying no write should wait for. Then, holding the slot so that no write of this
        // process commits meanwhile, the few pages written since are copied and the log is
        // reset; writes queue for the milliseconds that takes (and for readers still on older
        // pages to finish). The reset waits for the next upkeep if another connection was
        // checkpointing (nothing was copied), or if a write kept the slot for over a second:
        // a bulk chunk, whose gigabytes the reset would then copy while writes queue (the
        // tail of a 1M-row load waited 6 s so). A slot that came only after a wait may come
        // from a bulk chunk that committed meanwhile: its pages are copied without the slot
        // first (a 1M-row chunk committing within the second left the reset 3.2 s of copying
        // and truncating, while the job's last chunk waited).
        for _ in 0..3 {
            if checkpoint(&self.pool, "PASSIVE").await? {
                break;
            }
            let waiting = std::time::Instant::now();
            let Ok(_slot) = tokio::time::timeout(Duration::from_secs(1), queue.lock()).await else {
                break;
            };
            if waiting.elapsed() < SLOT_WAIT_BEFORE_COPYING_AGAIN {
                return checkpoint(writer, "TRUNCATE").await.map(|_| ());
            }
        }
        *self.statistics.last_checkpoint.lock().await = None;
        Ok(())
    }

    /// Upkeep after a bulk chunk's write: as [`Self::maintain`], but on SQLite in a task of its
    /// own, so that the job goes on while the log is copied back. PostgreSQL's statistics are
    /// waited for: the job's next chunk may plan its candidate queries with them.
    pub async fn maintain_after_bulk_chunk(&self) {
        let db = self.clone();
        let upkeep = async move {
            if let Err(error) = db.maintain().await {
                tracing::warn!(error = %error, "database upkeep failed");
            }
        };
        match self.engine {
            Engine::Sqlite => drop(tokio::spawn(upkeep)),
            Engine::Postgres => upkeep.await,
        }
    }

    /// Commits a bulk chunk's write. On SQLite the log is not copied back into the database in
    /// the commit (the writer's automatic checkpoints are off while it writes bulk chunks, see
    /// [`Self::begin`]): [`Self::maintain_after_bulk_chunk`] does it after the commit, without
    /// holding up the job. In a 1M-row first load the copy of the 1.4 GB the chunk wrote to
    /// the log made most of its commit's 7.2 to 7.9 s (1.0 s without it).
    pub async fn commit_bulk(&self, write: WriteTx) -> Result<(), StoreError> {
        write.tx.commit().await?;
        Ok(())
    }

    /// Whether the SQLite WAL was last checkpointed 10 s ago or more; if so, counts it as
    /// checkpointed now.
    async fn checkpoint_due(&self) -> bool {
        let mut last = self.statistics.last_checkpoint.lock().await;
        if last.is_some_and(|at| at.elapsed() < Duration::from_secs(10)) {
            return false;
        }
        *last = Some(std::time::Instant::now());
        true
    }

    /// Refreshes the planner's statistics when the store grew by a fifth since the last
    /// refresh (or was never refreshed by this process). Answers whether it did. A refresh
    /// already running elsewhere is not waited for.
    async fn refresh_statistics_if_stale(&self) -> Result<bool, StoreError> {
        let stats = &self.statistics;
        let written = stats.written_since.load(Ordering::Relaxed);
        let base = stats.records_at_refresh.load(Ordering::Relaxed);
        if written < STALE_AFTER_ROWS.max(base / 5) {
            return Ok(false);
        }
        self.refresh_statistics().await
    }

    /// Refreshes the planner's statistics of the tables that grow with the store (`ANALYZE`
    /// on PostgreSQL). Answers false when another refresh was running, and on SQLite: without
    /// statistics its planner takes every index as selective, which is right for these
    /// look-ups, and an ANALYZE there would queue behind the single writer.
    pub async fn refresh_statistics(&self) -> Result<bool, StoreError> {
        if self.engine == Engine::Sqlite {
            return Ok(false);
        }
        let stats = &self.statistics;
        let Ok(_running) = stats.refreshing.try_lock() else {
            return Ok(false);
        };
        let written = stats.written_since.load(Ordering::Relaxed);
        let started = std::time::Instant::now();
        sqlx::query("ANALYZE records, blocking_keys, customers, links, name_counts, reviews")
            .execute(&self.pool)
            .await?;
        // The estimate ANALYZE just made: counting a large table costs a scan.
        let records: i64 = sqlx::query_scalar(
            "SELECT CAST(reltuples AS BIGINT) FROM pg_class WHERE oid = CAST('records' AS regclass)",
        )
        .fetch_optional(&self.pool)
        .await?
        .unwrap_or(0);
        stats.written_since.fetch_sub(written, Ordering::Relaxed);
        stats
            .records_at_refresh
            .store(u64::try_from(records).unwrap_or(0), Ordering::Relaxed);
        tracing::debug!(
            records,
            ms = started.elapsed().as_millis() as u64,
            "planner statistics refreshed"
        );
        Ok(true)
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        let migrator = match self.engine {
            Engine::Sqlite => &SQLITE_MIGRATIONS,
            Engine::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.run(&self.pool).await?;
        self.refile_blocking_keys().await
    }

    /// Files every record under the hashes of its blocking keys, once, after the migration
    /// that made the index hold hashes (0011) emptied it: SQL cannot compute the hashes. The
    /// keys' texts come from `records.filed_keys`. One transaction, with the removal of the
    /// mark that asks for it: a start cut short files them all again at the next.
    async fn refile_blocking_keys(&self) -> Result<(), StoreError> {
        let mut write = self.begin_bulk_write().await?;
        let pending: Option<i64> =
            sqlx::query_scalar("SELECT pending FROM blocking_keys_refiling LIMIT 1")
                .fetch_optional(&mut *write.tx)
                .await?;
        if pending.is_none() {
            write.tx.rollback().await?;
            return Ok(());
        }
        let started = std::time::Instant::now();
        let insert = insert_index_sql(&write.tx);
        let (mut after, mut records) = (0i64, 0usize);
        loop {
            let rows = sqlx::query(
                "SELECT id, filed_keys FROM records WHERE id > $1 ORDER BY id LIMIT 10000",
            )
            .bind(after)
            .fetch_all(&mut *write.tx)
            .await?;
            let Some(last) = rows.last() else {
                break;
            };
            after = last.try_get(0)?;
            records += rows.len();
            let mut index: Vec<(i64, i64)> = Vec::new();
            for row in &rows {
                let id: i64 = row.try_get(0)?;
                let filed: Option<String> = row.try_get(1)?;
                for key in filed_keys_of(filed.as_deref())? {
                    index.push((stored_key(c360_matching::batch::filed_key(&key)), id));
                }
            }
            index.sort_unstable();
            index.dedup();
            execute_json_rows(&mut write.tx, &insert, &index, &[0]).await?;
        }
        sqlx::query("DELETE FROM blocking_keys_refiling")
            .execute(&mut *write.tx)
            .await?;
        self.commit_bulk(write).await?;
        tracing::info!(
            records,
            ms = started.elapsed().as_millis() as u64,
            "blocking index filed again under hashed keys"
        );
        Ok(())
    }

    /// Answers when the database answers a trivial query.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub async fn close(&self) {
        if let Some((writer, _)) = &self.sqlite_writer {
            writer.close().await;
        }
        self.pool.close().await;
    }

    /// Starts a transaction that will write to the identity graph (records, links, customers'
    /// membership, manual links). On SQLite it first waits for the writer slot; on PostgreSQL
    /// it takes the bulk lock in shared mode (see [`Self::begin_bulk_write`]). It counts itself
    /// in the store's graph-write count, which tells a bulk job holding the records in memory
    /// ([`crate::resident`]) that the store changed under it.
    pub async fn begin_write(&self) -> Result<WriteTx, StoreError> {
        let mut write = self.begin(WriteKind::Graph).await?;
        self.count_graph_write(&mut write).await?;
        Ok(write)
    }

    /// Starts a transaction that writes beside the identity graph only (enrichment, name
    /// counts, a bulk job's checkpoints): as [`Self::begin_write`], without counting itself as
    /// a graph write, and leaving the SQLite writer's page cache as it is, so that a bulk job's
    /// chunks keep theirs across the checkpoints between them.
    pub async fn begin_side_write(&self) -> Result<WriteTx, StoreError> {
        self.begin(WriteKind::Side).await
    }

    /// Starts a transaction that writes a chunk of a bulk upload: on PostgreSQL it holds the
    /// bulk lock exclusively, so no other writer changes the store while the chunk, resolved
    /// against what it read, is written. The chunk counts itself with
    /// [`Self::count_graph_write`] before it commits.
    pub async fn begin_bulk_write(&self) -> Result<WriteTx, StoreError> {
        self.begin(WriteKind::Bulk).await
    }

    /// How many transactions have written to the graph, as of `write`'s start. Read under
    /// [`Self::begin_bulk_write`], no other writer is half-way through.
    pub async fn graph_writes(&self, write: &mut WriteTx) -> Result<u64, StoreError> {
        let sql = match self.engine {
            Engine::Sqlite => "SELECT n FROM graph_writes",
            Engine::Postgres => {
                "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM graph_writes"
            }
        };
        let n: i64 = sqlx::query_scalar(sql).fetch_one(&mut *write.tx).await?;
        Ok(n as u64)
    }

    /// Counts `write` as a write to the graph; returns the count with it.
    pub async fn count_graph_write(&self, write: &mut WriteTx) -> Result<u64, StoreError> {
        let sql = match self.engine {
            Engine::Sqlite => "UPDATE graph_writes SET n = n + 1 RETURNING n",
            Engine::Postgres => "SELECT nextval('graph_writes')",
        };
        let n: i64 = sqlx::query_scalar(sql).fetch_one(&mut *write.tx).await?;
        Ok(n as u64)
    }

    async fn begin(&self, kind: WriteKind) -> Result<WriteTx, StoreError> {
        let bulk = kind == WriteKind::Bulk;
        /// "c360bulk" as a number: the advisory lock key of bulk chunks.
        const BULK_LOCK: i64 = 0x6333_3630_6275_6c6b;
        let (mut tx, writer) = match &self.sqlite_writer {
            // IMMEDIATE takes SQLite's write lock up front. A deferred transaction reads a
            // snapshot first and fails with SQLITE_BUSY_SNAPSHOT when a write outside the
            // writer queue (the view outbox, a second process) commits before it writes.
            Some((pool, queue)) => {
                let mut slot = queue.clone().lock_owned().await;
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                if *slot != bulk && kind != WriteKind::Side {
                    // Bulk chunks also leave the log to [`Self::maintain`]: an automatic
                    // checkpoint would copy a chunk's gigabytes in its commit, with the job
                    // waiting. Other writes checkpoint every 1,000 pages as SQLite does by
                    // default, a little at a time.
                    let (kib, autocheckpoint) = if bulk {
                        (SQLITE_BULK_WRITER_CACHE_KIB, 0)
                    } else {
                        (SQLITE_WRITER_CACHE_KIB, 1000)
                    };
                    tx.execute(
                        format!(
                            "PRAGMA cache_size = -{kib}; \
                             PRAGMA wal_autocheckpoint = {autocheckpoint}"
                        )
                        .as_str(),
                    )
                    .await?;
                    *slot = bulk;
                }
                (tx, Some(slot))
            }
            None => (self.pool.begin().await?, None),
        };
        if self.engine == Engine::Postgres {
            let sql = if bulk {
                "SELECT pg_advisory_xact_lock($1)"
            } else {
                "SELECT pg_advisory_xact_lock_shared($1)"
            };
            sqlx::query(sql).bind(BULK_LOCK).execute(&mut *tx).await?;
        }
        Ok(WriteTx {
            tx,
            _writer: writer,
        })
    }

    /// Serializes writers that touch the same logical key (a record, a blocking key) until the
    /// transaction ends. Keys are taken in sorted order so that two writers never wait on each
    /// other in a cycle. A no-op on SQLite, whose writers are already serialized.
    pub async fn lock_keys(&self, write: &mut WriteTx, keys: &[String]) -> Result<(), StoreError> {
        if self.engine != Engine::Postgres {
            return Ok(());
        }
        let mut keys: Vec<&String> = keys.iter().collect();
        keys.sort();
        keys.dedup();
        for key in keys {
            sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
                .bind(key.as_str())
                .execute(&mut *write.tx)
                .await?;
        }
        Ok(())
    }

    /// `FOR UPDATE` where the engine has row locks.
    pub fn for_update(&self) -> &'static str {
        match self.engine {
            Engine::Postgres => " FOR UPDATE",
            Engine::Sqlite => "",
        }
    }
}

/// Makes sure the SQLite file can be created: its folder exists and the URL asks for
/// read-write-create mode.
fn prepare_sqlite_url(url: &str) -> Result<String, StoreError> {
    let rest = url.trim_start_matches("sqlite:").trim_start_matches("//");
    let path = rest.split('?').next().unwrap_or(rest);
    if path != ":memory:" && !path.is_empty() {
        if let Some(parent) = Path::new(path)
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent)?;
        }
    }
    Ok(if url.contains("mode=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    })
}

/// `$start, $start+1, ...` for `count` values, for `IN (...)` lists.
pub fn placeholders(start: usize, count: usize) -> String {
    (start..start + count)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The blocking keys a record's row says it is filed under (`records.filed_keys`, a JSON
/// array of the keys' texts); none when the column is empty.
pub fn filed_keys_of(text: Option<&str>) -> Result<Vec<String>, StoreError> {
    text.map_or(Ok(Vec::new()), |text| {
        serde_json::from_str(text)
            .map_err(|e| StoreError::Corrupt(format!("records.filed_keys: {e}")))
    })
}

/// A key filed by [`c360_matching::batch::filed_key`] as the index stores it: the same 64 bits,
/// as the signed integer SQL has.
pub fn stored_key(filed: u64) -> i64 {
    filed as i64
}

/// The statement that files index rows `[key, n]` given as a [`json_rows`] table in `$1`: the
/// record numbered `$2 + n` is filed under `key` (see [`reserve_record_ids`]).
pub fn insert_index_sql(conn: &sqlx::AnyConnection) -> String {
    format!(
        "INSERT INTO blocking_keys (key, record_id) \
         SELECT CAST(c0 AS BIGINT), CAST(c1 AS BIGINT) + $2 FROM {}",
        json_rows(conn, 1, 2, "v")
    )
}

/// Reserves the numbers of `n` new records (`records.id`) in a write transaction: the first of
/// them; the others follow it. Numbers are reserved ahead of the inserts so that a bulk chunk's
/// index rows, serialized before it takes the writer, only need the first. On SQLite the
/// transaction holds the database's write lock, so the next numbers after the largest are
/// free. On PostgreSQL a sequence hands them out (a rolled-back run leaves a gap): one number
/// by `nextval`, which concurrent writers may call at once; a run by moving the sequence past
/// it, which only a bulk write may do, as it holds the exclusive advisory lock that keeps every
/// other writer out (another `nextval` between the two steps would draw a number of the run).
pub async fn reserve_record_ids(
    conn: &mut sqlx::AnyConnection,
    n: usize,
) -> Result<i64, StoreError> {
    let n = i64::try_from(n.max(1)).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let query = match (conn.backend_name() == "PostgreSQL", n) {
        (true, 1) => sqlx::query_scalar("SELECT nextval('record_ids')"),
        (true, _) => sqlx::query_scalar(
            "SELECT setval('record_ids', nextval('record_ids') + $1 - 1) - $1 + 1",
        )
        .bind(n),
        (false, _) => sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) + 1 FROM records"),
    };
    let first: i64 = query.fetch_one(&mut *conn).await?;
    Ok(first)
}

/// Rows per statement when they travel as one JSON value ([`json_rows`]).
pub const JSON_ROWS_PER_STATEMENT: usize = 10_000;

/// A table named `alias` of `columns` columns `c0, c1...` read from parameter `$param`, a JSON
/// array of arrays (see [`json_rows_param`]). PostgreSQL reads every cell as text and SQLite
/// keeps JSON numbers numeric, so callers `CAST` the numeric columns. A whole chunk of rows
/// then travels as one value and the database unpacks it: binding values one by one cost more
/// per row than the database takes to write it (half of a bulk chunk's inserts), and a
/// statement of thousands of placeholders costs more to prepare than its fewer round trips
/// save. PostgreSQL reads it as `jsonb`, parsed once: `->>` on `json` scans the row's text
/// again for every cell (an insert of 168,000 three-column rows: 812 ms as `json`, 581 ms as
/// `jsonb`, without indexes).
pub fn json_rows(conn: &sqlx::AnyConnection, param: usize, columns: usize, alias: &str) -> String {
    let cells: Vec<String> = (0..columns).map(|c| format!("x ->> {c} AS c{c}")).collect();
    if conn.backend_name() == "PostgreSQL" {
        format!(
            "(SELECT {} FROM jsonb_array_elements(CAST(${param} AS jsonb)) AS x) AS {alias}",
            cells.join(", ")
        )
    } else {
        format!(
            "(SELECT {} FROM (SELECT value AS x FROM json_each(${param}))) AS {alias}",
            cells.join(", ")
        )
    }
}

/// Runs `sql`, whose `$1` is a [`json_rows`] table, once per [`JSON_ROWS_PER_STATEMENT`] of
/// `rows`; `bound` holds the values of `$2`, `$3`...
pub async fn execute_json_rows<R: serde::Serialize>(
    conn: &mut sqlx::AnyConnection,
    sql: &str,
    rows: &[R],
    bound: &[i64],
) -> Result<(), StoreError> {
    for chunk in rows.chunks(JSON_ROWS_PER_STATEMENT) {
        execute_json_param(conn, sql, &json_rows_param(chunk)?, bound).await?;
    }
    Ok(())
}

/// Runs `sql`, whose `$1` is a [`json_rows`] table, once per parameter of `params`, each
/// already serialized (see [`json_rows_param`]); `bound` holds the values of `$2`, `$3`...
pub async fn execute_json_params(
    conn: &mut sqlx::AnyConnection,
    sql: &str,
    params: &[String],
    bound: &[i64],
) -> Result<(), StoreError> {
    for param in params {
        execute_json_param(conn, sql, param, bound).await?;
    }
    Ok(())
}

/// Runs `sql` once with `param` as its `$1` and `bound` as its `$2`, `$3`...
async fn execute_json_param(
    conn: &mut sqlx::AnyConnection,
    sql: &str,
    param: &str,
    bound: &[i64],
) -> Result<(), StoreError> {
    let mut query = sqlx::query(sql).bind(param);
    for &value in bound {
        query = query.bind(value);
    }
    query.execute(&mut *conn).await?;
    Ok(())
}

/// The rows `sql` returns, whose `$1` is a [`json_rows`] table, run once per
/// [`JSON_ROWS_PER_STATEMENT`] of `rows`.
pub async fn fetch_json_rows<R: serde::Serialize>(
    conn: &mut sqlx::AnyConnection,
    sql: &str,
    rows: &[R],
) -> Result<Vec<sqlx::any::AnyRow>, StoreError> {
    let mut out = Vec::new();
    for chunk in rows.chunks(JSON_ROWS_PER_STATEMENT) {
        out.extend(
            sqlx::query(sql)
                .bind(json_rows_param(chunk)?)
                .fetch_all(&mut *conn)
                .await?,
        );
    }
    Ok(out)
}

/// A value bound in a multi-row INSERT ([`insert_bound_rows`]).
pub enum Bound<'a> {
    Text(&'a str),
    MaybeText(Option<&'a str>),
    Int(i64),
    MaybeInt(Option<i64>),
}

/// Values SQLite binds in one statement at most (its limit is 32,766).
const SQLITE_VALUES_PER_STATEMENT: usize = 32_000;

/// Inserts `rows` on SQLite in multi-row INSERTs whose values SQLite binds as they are: the
/// values of the `n`th row are `values(n, row, context)`. `head` is the statement up to its
/// `VALUES`, `tail` what follows the rows (an `ON CONFLICT` clause, or nothing). SQLite takes
/// the JSON rows of [`json_rows`] at a cost greater than the insert's own: 300,000 new
/// records' rows (a micro-benchmark, SQLite 3.51) took 2.5 to 3.7 s of CPU as one JSON value
/// per 10,000 rows, 1.5 to 1.9 s bound 3,000 rows a statement. PostgreSQL keeps the JSON rows.
/// (A plain function and a slice, not an iterator: a future holding a closure over borrowed
/// rows is not provably `Send` for every lifetime.)
pub async fn insert_bound_rows<R: Sync, C: Sync, const N: usize>(
    conn: &mut sqlx::AnyConnection,
    (head, tail): (&str, &str),
    rows: &[R],
    context: &C,
    values: for<'b> fn(usize, &'b R, &'b C) -> [Bound<'b>; N],
) -> Result<(), StoreError> {
    let per_statement = SQLITE_VALUES_PER_STATEMENT / N;
    let statement = |rows: usize| {
        let row = format!("({})", vec!["?"; N].join(", "));
        format!("{head} VALUES {}{tail}", vec![row; rows].join(", "))
    };
    let full = statement(per_statement);
    for (part, chunk) in rows.chunks(per_statement).enumerate() {
        let partial;
        let sql = if chunk.len() == per_statement {
            &full
        } else {
            partial = statement(chunk.len());
            &partial
        };
        // The connection keeps the full statement and the one-row one prepared, not a bulk
        // chunk's last, shorter one: its length seldom comes again, and a prepared
        // statement's program grows with its values (tens of thousands here).
        let kept = chunk.len() == per_statement || chunk.len() == 1;
        let mut query = sqlx::query(sql).persistent(kept);
        for (at, row) in chunk.iter().enumerate() {
            for value in values(part * per_statement + at, row, context) {
                query = match value {
                    Bound::Text(text) => query.bind(text),
                    Bound::MaybeText(text) => query.bind(text),
                    Bound::Int(n) => query.bind(n),
                    Bound::MaybeInt(n) => query.bind(n),
                };
            }
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// The JSON value of rows for [`json_rows`].
pub fn json_rows_param<R: serde::Serialize>(rows: &[R]) -> Result<String, StoreError> {
    serde_json::to_string(rows).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// `($s, $s+1), ($s+2, $s+3), ...` for row-value `IN` lists of (source, source_id) pairs.
pub fn pair_placeholders(start: usize, pairs: usize) -> String {
    (0..pairs)
        .map(|i| format!("(${}, ${})", start + 2 * i, start + 2 * i + 1))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Copies SQLite's WAL back into the database in `mode`: `PASSIVE` copies what it can beside
/// readers and writers; `TRUNCATE` also empties the log, and is run by the holder of the
/// writer slot, so that no write of this process commits meanwhile. A checkpoint already
/// running on another connection makes a passive one a no-op, not a wait: answers whether
/// SQLite found it so (`busy`).
async fn checkpoint(pool: &AnyPool, mode: &str) -> Result<bool, StoreError> {
    let started = std::time::Instant::now();
    let row = sqlx::query(&format!("PRAGMA wal_checkpoint({mode})"))
        .fetch_one(pool)
        .await?;
    let (busy, frames, copied): (i64, i64, i64) =
        (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
    tracing::debug!(
        mode,
        busy,
        frames,
        copied,
        ms = started.elapsed().as_millis() as u64,
        "SQLite WAL checkpointed"
    );
    Ok(busy != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_comes_from_the_url_scheme() {
        assert_eq!(
            Engine::from_url("sqlite://data/c360.db").unwrap(),
            Engine::Sqlite
        );
        assert_eq!(
            Engine::from_url("postgres://u@h/db").unwrap(),
            Engine::Postgres
        );
        assert!(Engine::from_url("mysql://h/db").is_err());
    }

    #[test]
    fn placeholder_lists() {
        assert_eq!(placeholders(2, 3), "$2, $3, $4");
        assert_eq!(pair_placeholders(1, 2), "($1, $2), ($3, $4)");
    }

    /// A new SQLite file takes the larger page size; WAL mode, set after it, keeps it.
    #[tokio::test]
    async fn a_new_sqlite_file_gets_larger_pages() {
        let dir = std::env::temp_dir().join(format!("c360-pages-{}", std::process::id()));
        let url = format!("sqlite://{}/c360.db", dir.display());
        let db = Database::connect(&url, 2).await.unwrap();
        db.migrate().await.unwrap();
        let size: i64 = sqlx::query_scalar("PRAGMA page_size")
            .fetch_one(db.pool())
            .await
            .unwrap();
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(db.pool())
            .await
            .unwrap();
        db.close().await;
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(size, SQLITE_PAGE_BYTES);
        assert_eq!(mode, "wal");
    }

    /// Rows over several statements, the last one shorter, every kind of value in place.
    #[tokio::test]
    async fn bound_rows_are_inserted_in_statements_of_bounded_size() {
        let dir = std::env::temp_dir().join(format!("c360-bound-{}", std::process::id()));
        let url = format!("sqlite://{}/c360.db", dir.display());
        let db = Database::connect(&url, 2).await.unwrap();
        let mut conn = db.pool().acquire().await.unwrap();
        sqlx::query("CREATE TABLE t (n BIGINT, label TEXT, note TEXT, maybe BIGINT)")
            .execute(&mut *conn)
            .await
            .unwrap();
        // 8,000 rows a statement for 4 values a row: three statements, the last of 4,001.
        let rows: Vec<String> = (0..20_001).map(|i| format!("row {i}")).collect();
        insert_bound_rows(
            &mut conn,
            ("INSERT INTO t (n, label, note, maybe)", ""),
            &rows,
            &7,
            |n, label, &seven| {
                [
                    Bound::Int(n as i64),
                    Bound::Text(label),
                    Bound::MaybeText((n % 2 == 0).then_some("even")),
                    Bound::MaybeInt((n % 3 == 0).then_some(seven)),
                ]
            },
        )
        .await
        .unwrap();
        let (count, distinct, evens, threes): (i64, i64, i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), COUNT(DISTINCT n), COUNT(note), COALESCE(SUM(maybe), 0) FROM t \
             WHERE label = 'row ' || n",
        )
        .fetch_one(&mut *conn)
        .await
        .unwrap();
        drop(conn);
        db.close().await;
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            (count, distinct),
            (20_001, 20_001),
            "each row once, as numbered"
        );
        assert_eq!(evens, 10_001, "NULL where no text");
        assert_eq!(threes, 7 * 6_667, "NULL where no number");
    }

    #[test]
    fn sqlite_urls_get_create_mode() {
        let dir = std::env::temp_dir().join(format!("c360-url-{}", std::process::id()));
        let url = format!("sqlite://{}/x.db", dir.display());
        assert!(prepare_sqlite_url(&url).unwrap().ends_with("x.db?mode=rwc"));
        assert!(dir.exists());
        assert!(prepare_sqlite_url("sqlite::memory:?mode=memory")
            .unwrap()
            .ends_with("mode=memory"));
    }
}
