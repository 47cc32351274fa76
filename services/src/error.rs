use c360_domain::ValidationErrors;

/// Failures of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database URL (use sqlite://... or postgres://...)")]
    UnsupportedUrl,
    #[error("could not prepare the database folder: {0}")]
    Io(#[from] std::io::Error),
    /// Stored data that no longer parses: a bug or a manual edit, never the caller's fault.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// The separate customer-view store (DynamoDB) failed.
    #[error("customer view store: {0}")]
    ViewStore(String),
}

impl StoreError {
    /// Conflicts a transaction can simply be retried after: PostgreSQL serialization failures
    /// and deadlocks, SQLite's busy/locked.
    pub fn is_retryable(&self) -> bool {
        let Self::Database(sqlx::Error::Database(db)) = self else {
            return false;
        };
        matches!(
            db.code().as_deref(),
            Some("40001" | "40P01" | "5" | "6" | "517")
        )
    }
}

/// Failures of the application layer, one variant per way a caller must be answered.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Invalid(#[from] ValidationErrors),
    #[error("{0} not found")]
    NotFound(String),
    /// The request contradicts the current state (e.g. a must-link where a cannot-link is).
    #[error("{0}")]
    Conflict(String),
    /// A dependency other than the database (a geocoder) cannot answer now; try again later.
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ServiceError {
    /// One invalid input field.
    pub fn invalid(field: &str, reason: impl Into<String>) -> Self {
        Self::Invalid(c360_domain::FieldError::new(field, reason).into())
    }
}

impl From<sqlx::Error> for ServiceError {
    fn from(error: sqlx::Error) -> Self {
        Self::Store(StoreError::Database(error))
    }
}
