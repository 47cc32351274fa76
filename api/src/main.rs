//! `c360`: the service and its tools.

use clap::{Parser, Subcommand};

use std::path::PathBuf;

use c360_api::cli::{self, EngineArgs};
use c360_api::config::{CustomerViewArgs, DatabaseArgs, LogFormat, ServeConfig, ViewStoreKind};
use c360_api::{openapi, server, telemetry, RunningServer};

/// mimalloc instead of glibc's allocator: a bulk upload allocates and frees gigabytes in
/// blocks of every size on every core, and glibc's malloc and free were a tenth of its CPU
/// (`perf`), with large blocks mapped and unmapped again (page faults, zeroed pages).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "c360",
    version,
    about = "Customer-360 identity resolution service"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP API (Swagger UI at /swagger-ui).
    Serve(ServeConfig),
    /// Create or upgrade the database schema (and the DynamoDB customer-view table when that
    /// store is configured), then exit.
    Migrate {
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(flatten)]
        customer_view: CustomerViewArgs,
    },
    /// Maintain the DynamoDB customer view (C360_CUSTOMER_VIEW_STORE=dynamodb).
    CustomerView {
        #[command(subcommand)]
        action: CustomerViewAction,
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(flatten)]
        customer_view: CustomerViewArgs,
    },
    /// Print the OpenAPI document.
    Openapi,
    /// Resolve a record file and report pairwise precision, recall and F1 against ground truth.
    Eval {
        /// Records (CSV with the c360 header, or NDJSON).
        #[arg(long)]
        input: PathBuf,
        /// Ground truth: CSV `source,source_id,person_id`.
        #[arg(long)]
        truth: PathBuf,
        /// Also print this many missed and wrong pairs, with how they compared.
        #[arg(long, default_value_t = 0)]
        show_errors: usize,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Resolve a whole record file in memory (all cores, no database) and write
    /// `source,source_id,customer_id` for every record.
    Resolve {
        /// Records (CSV with the c360 header, or NDJSON).
        #[arg(long)]
        input: PathBuf,
        /// Where to write the assignments (CSV).
        #[arg(long)]
        output: PathBuf,
        /// Manual links to honor: CSV `kind,a_source,a_source_id,b_source,b_source_id` with
        /// `kind` must_link or cannot_link, as `GET /v1/exports/manual-links` writes them.
        /// (With `--store`, the store's own manual links apply.)
        #[arg(long, conflicts_with = "store")]
        links: Option<PathBuf>,
        /// Also write the records into the store at DATABASE_URL (resolved against what is
        /// stored there, in chunks, as a bulk upload is), so that the service serves them; the
        /// assignments written are then the stored customer ids.
        #[arg(long)]
        store: bool,
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(flatten)]
        customer_view: CustomerViewArgs,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Generate synthetic US customer records with ground truth.
    Gen {
        /// About how many records.
        #[arg(long, default_value_t = 100_000)]
        records: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Records (CSV).
        #[arg(long)]
        output: PathBuf,
        /// Truth (CSV `source,source_id,person_id,hard_negative_group`).
        #[arg(long)]
        truth: PathBuf,
    },
    /// Print enrichment figures: census index load time, memory and point-in-polygon rate (DC
    /// and a synthetic national-size index), offline geocoder rate and accuracy, and the
    /// enrichment cost per ingested record.
    BenchEnrichment {
        /// Records ingested with and without enrichment.
        #[arg(long, default_value_t = 2000)]
        records: usize,
    },
    /// Estimate a match model from a record file (u by random sampling, m by EM).
    Train {
        #[arg(long)]
        input: PathBuf,
        /// Where to write the model (JSON).
        #[arg(long)]
        output: PathBuf,
        /// Starting model (default: the shipped one); thresholds are kept from it.
        #[command(flatten)]
        engine: EngineArgs,
    },
}

#[derive(Subcommand)]
enum CustomerViewAction {
    /// Rewrite the whole view from the SQL records and graph (after a restore, or to switch
    /// stores), streaming, with progress; then delete items SQL does not account for.
    Rebuild,
    /// Compare the view with SQL: missing, stale or orphaned customers, lookups and pages.
    /// Exits non-zero when they differ.
    Check,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Serve(config) => {
            telemetry::init(config.log_format);
            let running = RunningServer::start(config).await?;
            server::shutdown_signal().await;
            running.shutdown().await?;
        }
        Command::Migrate {
            database,
            customer_view,
        } => {
            telemetry::init(LogFormat::Text);
            server::open_database(&database).await?;
            tracing::info!("migrations applied");
            if let Some(views) = server::open_view_store(&customer_view).await? {
                tracing::info!(table = views.table(), "DynamoDB customer-view table ready");
            }
        }
        Command::CustomerView {
            action,
            database,
            customer_view,
        } => {
            telemetry::init(LogFormat::Text);
            if customer_view.customer_view_store != ViewStoreKind::Dynamodb {
                anyhow::bail!(
                    "set C360_CUSTOMER_VIEW_STORE=dynamodb: with the SQL store the database is the view"
                );
            }
            let db = server::open_database(&database).await?;
            let resolver = server::attach_view_store(
                c360_services::Resolver::new(db, c360_matching::Engine::shipped()),
                &customer_view,
            )
            .await?;
            match action {
                CustomerViewAction::Rebuild => cli::rebuild_customer_view(&resolver).await?,
                CustomerViewAction::Check => cli::check_customer_view(&resolver).await?,
            }
        }
        Command::Openapi => print!("{}", openapi::openapi_json()),
        Command::Eval {
            input,
            truth,
            show_errors,
            engine,
        } => {
            cli::eval(&input, &truth, &engine, show_errors)?;
        }
        Command::Resolve {
            input,
            output,
            store: true,
            database,
            customer_view,
            engine,
            ..
        } => {
            telemetry::init(LogFormat::Text);
            let db = server::open_database(&database).await?;
            cli::resolve_into_store(&input, &output, &engine, db, &customer_view).await?;
        }
        Command::Resolve {
            input,
            output,
            links,
            engine,
            ..
        } => cli::resolve(&input, &output, links.as_deref(), &engine)?,
        Command::Gen {
            records,
            seed,
            output,
            truth,
        } => cli::generate(records, seed, &output, &truth)?,
        Command::BenchEnrichment { records } => {
            print!("{}", c360_services::enrich::bench::run(records).await?);
        }
        Command::Train {
            input,
            output,
            engine,
        } => cli::train_model(&input, &output, &engine)?,
    }
    Ok(())
}
