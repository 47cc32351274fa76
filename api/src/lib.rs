//! The HTTP face of c360: axum router, handlers, problem documents, OpenAPI and Swagger UI.
//! The `c360` binary (`src/main.rs`) wires it to the command line.

pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod extract;
pub mod metrics;
pub mod openapi;
pub mod problem;
pub mod routes;
pub mod server;
pub mod telemetry;

pub use config::ServeConfig;
pub use server::RunningServer;
