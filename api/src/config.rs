//! Configuration of `c360 serve`, from flags or environment variables.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::auth::ApiKeys;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where the service keeps its data.
#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// Database URL: `sqlite://path/to/file.db` (created when missing) or `postgres://...`.
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://data/c360.db")]
    pub database_url: String,

    /// Most connections the pool keeps open.
    #[arg(long, env = "C360_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,
}

#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    /// Address to listen on.
    #[arg(long, env = "C360_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,

    #[command(flatten)]
    pub database: DatabaseArgs,

    /// API keys, `key:rw` or `key:ro`, comma-separated. Unset: the API is open (a warning says so).
    #[arg(long, env = "C360_API_KEYS", hide_env_values = true)]
    pub api_keys: Option<ApiKeys>,

    /// Largest accepted request body, in bytes (413 beyond).
    #[arg(long, env = "C360_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Seconds a request may take before it is answered 503.
    #[arg(long, env = "C360_REQUEST_TIMEOUT_SECS", default_value_t = 30)]
    pub request_timeout_secs: u64,

    /// Log format.
    #[arg(long, env = "C360_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

impl ServeConfig {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs.max(1))
    }

    /// The defaults, with the given database: what tests and embedders start from.
    pub fn with_database(bind: SocketAddr, database_url: impl Into<String>) -> Self {
        Self {
            bind,
            database: DatabaseArgs {
                database_url: database_url.into(),
                db_max_connections: 16,
            },
            api_keys: None,
            max_body_bytes: 1024 * 1024,
            request_timeout_secs: 30,
            log_format: LogFormat::Text,
        }
    }
}
