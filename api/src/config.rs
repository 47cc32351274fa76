//! Configuration of `c360 serve`, from flags or environment variables.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use c360_services::jobs::{ChunkRows, DEFAULT_RESIDENT_RECORDS};
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

/// Which geocoder enriches customers' addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GeocoderKind {
    /// The embedded address points and ZIP centroids (or the files given below).
    Offline,
    /// Amazon Location Service (`C360_LOCATION_PLACE_INDEX`; AWS region, credentials and
    /// endpoint from the usual AWS configuration).
    AwsLocation,
    /// No enrichment.
    Off,
}

/// Geo enrichment: geocoder and census data.
#[derive(Debug, Clone, Args)]
pub struct EnrichmentArgs {
    #[arg(long, env = "C360_GEOCODER", value_enum, default_value_t = GeocoderKind::Offline)]
    pub geocoder: GeocoderKind,

    /// Address-point CSVs for the offline geocoder (OpenAddresses columns), comma-separated.
    /// Default: the embedded Washington, DC points.
    #[arg(long, env = "C360_ADDRESS_POINTS", value_delimiter = ',')]
    pub address_points: Vec<PathBuf>,

    /// ZIP centroid CSV (`zip,lat,lon,city,state`). Default: the embedded national table.
    #[arg(long, env = "C360_ZIP_CENTROIDS")]
    pub zip_centroids: Option<PathBuf>,

    /// Block-group polygons: GeoJSON, or a TIGER/Line shapefile `.zip` / `.shp`.
    /// Default: the embedded Washington, DC block groups.
    #[arg(long, env = "C360_BLOCKGROUPS")]
    pub blockgroups: Option<PathBuf>,

    /// ACS figures per block group (CSV with a `geoid` column). Default: embedded DC 2019-2023.
    #[arg(long, env = "C360_ACS")]
    pub acs: Option<PathBuf>,

    /// Amazon Location Service place index (with `--geocoder aws-location`).
    #[arg(long, env = "C360_LOCATION_PLACE_INDEX")]
    pub location_place_index: Option<String>,

    /// Endpoint override for Amazon Location Service (a local server, say).
    #[arg(long, env = "C360_LOCATION_ENDPOINT")]
    pub location_endpoint: Option<String>,

    /// Seconds between retries of customers whose enrichment is pending.
    #[arg(long, env = "C360_ENRICH_RETRY_SECS", default_value_t = 30)]
    pub enrich_retry_secs: u64,
}

impl Default for EnrichmentArgs {
    fn default() -> Self {
        Self {
            geocoder: GeocoderKind::Offline,
            address_points: Vec::new(),
            zip_centroids: None,
            blockgroups: None,
            acs: None,
            location_place_index: None,
            location_endpoint: None,
            enrich_retry_secs: 30,
        }
    }
}

/// Where the single customer view is served from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ViewStoreKind {
    /// The SQL database itself (the embedded default).
    Sql,
    /// A DynamoDB table, kept up to date from SQL.
    Dynamodb,
}

/// The customer-view store.
#[derive(Debug, Clone, Args)]
pub struct CustomerViewArgs {
    /// Where `GET /v1/customers/...` reads from: `sql` (default) or `dynamodb`.
    #[arg(
        long,
        env = "C360_CUSTOMER_VIEW_STORE",
        value_enum,
        default_value_t = ViewStoreKind::Sql
    )]
    pub customer_view_store: ViewStoreKind,

    /// DynamoDB table of the customer view (created by `c360 migrate` or at start).
    #[arg(
        long,
        env = "C360_DYNAMODB_TABLE",
        default_value = "c360-customer-view"
    )]
    pub dynamodb_table: String,

    /// DynamoDB region; default: the usual AWS configuration (`AWS_REGION`, profile).
    #[arg(long, env = "C360_DYNAMODB_REGION")]
    pub dynamodb_region: Option<String>,

    /// Endpoint override for DynamoDB (DynamoDB Local, say).
    #[arg(long, env = "C360_DYNAMODB_ENDPOINT")]
    pub dynamodb_endpoint: Option<String>,

    /// Static credentials (tests); default: the usual AWS credential chain.
    #[arg(skip)]
    pub dynamodb_credentials: Option<(String, String)>,
}

impl Default for CustomerViewArgs {
    fn default() -> Self {
        Self {
            customer_view_store: ViewStoreKind::Sql,
            dynamodb_table: "c360-customer-view".to_owned(),
            dynamodb_region: None,
            dynamodb_endpoint: None,
            dynamodb_credentials: None,
        }
    }
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

    #[command(flatten)]
    pub enrichment: EnrichmentArgs,

    #[command(flatten)]
    pub customer_view: CustomerViewArgs,

    /// Folder where bulk uploads are spooled until their job has read them.
    #[arg(long, env = "C360_JOBS_DIR", default_value = "data/jobs")]
    pub jobs_dir: PathBuf,

    /// Fewest valid rows of a bulk upload resolved and written in one transaction (a chunk is
    /// half the stored records, within this and C360_BULK_MAX_CHUNK_ROWS; a store holding
    /// fewer records than this takes C360_BULK_FIRST_CHUNK_ROWS at once). A slower upload is
    /// written every second.
    #[arg(long, env = "C360_BULK_CHUNK_ROWS", default_value_t = ChunkRows::default().least)]
    pub bulk_chunk_rows: usize,

    /// Most valid rows of a bulk upload resolved and written in one transaction.
    #[arg(long, env = "C360_BULK_MAX_CHUNK_ROWS", default_value_t = ChunkRows::default().most)]
    pub bulk_max_chunk_rows: usize,

    /// Most valid rows of a first load (into a store holding fewer than C360_BULK_CHUNK_ROWS
    /// records) resolved and written in one transaction: resolved together, they score fewer
    /// pairs and give the partition `c360 resolve` gives, but count as stored only once all
    /// are written, and hold the writer that long.
    #[arg(long, env = "C360_BULK_FIRST_CHUNK_ROWS", default_value_t = ChunkRows::default().first)]
    pub bulk_first_chunk_rows: usize,

    /// Most records a bulk job that starts on an empty store holds in memory, so that its
    /// later chunks find their candidates without reading the store back (a 1M-row load peaked
    /// at about 6 GB server RSS with them, the SQLite file's mapped pages included); past it
    /// the job reads them from the store. 0 holds none.
    #[arg(long, env = "C360_BULK_RESIDENT_RECORDS", default_value_t = DEFAULT_RESIDENT_RECORDS)]
    pub bulk_resident_records: usize,

    /// Largest accepted bulk upload, in bytes (413 beyond).
    #[arg(long, env = "C360_MAX_UPLOAD_BYTES", default_value_t = 64 * 1024 * 1024 * 1024)]
    pub max_upload_bytes: u64,

    /// Log format.
    #[arg(long, env = "C360_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

impl ServeConfig {
    /// The bounds of a bulk job's chunks.
    pub fn bulk_chunk_rows(&self) -> ChunkRows {
        ChunkRows {
            least: self.bulk_chunk_rows,
            most: self.bulk_max_chunk_rows,
            first: self.bulk_first_chunk_rows,
        }
    }

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
            enrichment: EnrichmentArgs::default(),
            customer_view: CustomerViewArgs::default(),
            jobs_dir: PathBuf::from("data/jobs"),
            bulk_chunk_rows: ChunkRows::default().least,
            bulk_max_chunk_rows: ChunkRows::default().most,
            bulk_first_chunk_rows: ChunkRows::default().first,
            bulk_resident_records: DEFAULT_RESIDENT_RECORDS,
            max_upload_bytes: 64 * 1024 * 1024 * 1024,
            log_format: LogFormat::Text,
        }
    }
}
