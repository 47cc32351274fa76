//! `c360`: the service and its tools.

use clap::{Parser, Subcommand};

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
    }
    Ok(())
}
