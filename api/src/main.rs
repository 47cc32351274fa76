//! `c360`: the service and its tools.

use clap::{Parser, Subcommand};

use std::path::PathBuf;

use c360_api::cli::{self, EngineArgs};
use c360_api::config::{DatabaseArgs, LogFormat, ServeConfig};
use c360_api::{openapi, server, telemetry, RunningServer};

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
    /// Create or upgrade the database schema, then exit.
    Migrate(DatabaseArgs),
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
        /// Also write the records into the store at DATABASE_URL (resolved against what is
        /// stored there, in chunks, as a bulk upload is), so that the service serves them; the
        /// assignments written are then the stored customer ids.
        #[arg(long)]
        store: bool,
        #[command(flatten)]
        database: DatabaseArgs,
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Serve(config) => {
            telemetry::init(config.log_format);
            let running = RunningServer::start(config).await?;
            server::shutdown_signal().await;
            running.shutdown().await?;
        }
        Command::Migrate(database) => {
            telemetry::init(LogFormat::Text);
            server::open_database(&database).await?;
            tracing::info!("migrations applied");
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
            engine,
        } => {
            telemetry::init(LogFormat::Text);
            let db = server::open_database(&database).await?;
            cli::resolve_into_store(&input, &output, &engine, db).await?;
        }
        Command::Resolve {
            input,
            output,
            engine,
            ..
        } => cli::resolve(&input, &output, &engine)?,
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
