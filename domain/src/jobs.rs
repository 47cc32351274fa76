//! Bulk upload jobs: a file of records worked through in the background, with progress and
//! the rejected rows.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Uploaded, waiting for the worker.
    Queued,
    /// Being worked through (also after a restart, until it resumes and ends).
    Running,
    /// Every row read; `rejected` rows are listed at `/v1/jobs/{id}/errors`.
    Completed,
    /// The file could not be read to the end (`error` says why); rows before that are stored.
    Failed,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "queued" => Self::Queued,
            "running" => Self::Running,
            "completed" => Self::Completed,
            "failed" => Self::Failed,
            _ => return None,
        })
    }
}

/// A bulk upload job and its progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobView {
    #[schema(example = "job_0192f0c1a3b87c3e9d1f2a4b5c6d7e8f")]
    pub job_id: String,
    pub state: JobState,
    /// `csv` or `ndjson`.
    #[schema(example = "csv")]
    pub format: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
    pub bytes_total: u64,
    pub bytes_read: u64,
    /// Data rows read so far: accepted + rejected + in progress.
    pub rows_read: u64,
    /// Rows stored (new, updated, or unchanged re-sends).
    pub accepted: u64,
    /// Valid rows read and being resolved and written, not yet stored: a chunk of rows is
    /// stored at once, in one transaction, while the next is read.
    #[serde(default)]
    pub rows_in_progress: u64,
    /// Rows refused; see `/v1/jobs/{id}/errors`.
    pub rejected: u64,
    /// Rows that started a new customer.
    pub customers_created: u64,
    /// Rows that merged existing customers.
    pub customers_merged: u64,
    /// Rows finished (stored or rejected) per second since the job started.
    pub rate_per_second: f64,
    /// Seconds left at the current rate, from the bytes of the file not finished yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta_seconds: Option<f64>,
    /// What a running job is doing now, e.g. `scoring candidate pairs` for the chunk being
    /// written; absent when the job is not running in this process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "scoring candidate pairs")]
    pub stage: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
}

/// One rejected row of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobRowError {
    /// Line in the file (1 is the CSV header).
    pub line: u64,
    /// The field at fault, when one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub reason: String,
}
