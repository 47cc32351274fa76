-- Bulk upload jobs. The uploaded file is spooled to disk (spool_path); the job works through
-- it row by row. rows_read is the checkpoint: a job interrupted by a crash or a shutdown
-- resumes after the last checkpoint, and counters are saved with it, so no row is lost and
-- none is counted twice (re-ingesting a row is idempotent by (source, source_id)).
CREATE TABLE jobs (
    id                 TEXT PRIMARY KEY,
    state              TEXT NOT NULL,
    format             TEXT NOT NULL,
    file_name          TEXT,
    spool_path         TEXT NOT NULL,
    bytes_total        BIGINT NOT NULL,
    bytes_read         BIGINT NOT NULL DEFAULT 0,
    rows_read          BIGINT NOT NULL DEFAULT 0,
    accepted           BIGINT NOT NULL DEFAULT 0,
    rejected           BIGINT NOT NULL DEFAULT 0,
    customers_created  BIGINT NOT NULL DEFAULT 0,
    customers_merged   BIGINT NOT NULL DEFAULT 0,
    error              TEXT,
    created_at         BIGINT NOT NULL,
    started_at         BIGINT,
    updated_at         BIGINT NOT NULL,
    finished_at        BIGINT
);
CREATE INDEX jobs_state ON jobs (state, created_at);

-- Rejected rows of a job: the line, the field and the reason (never the value).
CREATE TABLE job_errors (
    job_id TEXT NOT NULL,
    line   BIGINT NOT NULL,
    field  TEXT,
    reason TEXT NOT NULL,
    PRIMARY KEY (job_id, line)
);
