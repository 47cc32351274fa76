//! Helpers for the end-to-end tests: a real server on a random port against a fresh database.
//!
//! SQLite tests get a new file in a temporary folder. PostgreSQL tests get a new database on
//! the server at `C360_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`),
//! dropped when the test stops its app.

use std::net::SocketAddr;
use std::path::PathBuf;

use c360_api::{RunningServer, ServeConfig};
use serde_json::Value;
use sqlx::Connection;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

fn postgres_admin_url() -> String {
    std::env::var("C360_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A database that exists for one test.
pub enum TestDatabase {
    Sqlite { dir: PathBuf },
    Postgres { name: String },
}

impl TestDatabase {
    pub async fn create(engine: Engine) -> anyhow::Result<Self> {
        let unique = uuid::Uuid::now_v7().simple().to_string();
        Ok(match engine {
            Engine::Sqlite => {
                let dir = std::env::temp_dir().join(format!("c360-test-{unique}"));
                std::fs::create_dir_all(&dir)?;
                Self::Sqlite { dir }
            }
            Engine::Postgres => {
                let name = format!("c360_test_{unique}");
                let mut admin = sqlx::PgConnection::connect(&postgres_admin_url()).await?;
                sqlx::Executor::execute(&mut admin, format!("CREATE DATABASE {name}").as_str())
                    .await?;
                Self::Postgres { name }
            }
        })
    }

    pub fn url(&self) -> String {
        match self {
            Self::Sqlite { dir } => format!("sqlite://{}/c360.db", dir.display()),
            Self::Postgres { name } => {
                let admin = postgres_admin_url();
                let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
                format!("{base}/{name}")
            }
        }
    }

    pub async fn drop_database(self) -> anyhow::Result<()> {
        match self {
            Self::Sqlite { dir } => std::fs::remove_dir_all(dir)?,
            Self::Postgres { name } => {
                let mut admin = sqlx::PgConnection::connect(&postgres_admin_url()).await?;
                sqlx::Executor::execute(
                    &mut admin,
                    format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str(),
                )
                .await?;
            }
        }
        Ok(())
    }
}

/// Whether the end-to-end tests run with the DynamoDB customer view
/// (`C360_CUSTOMER_VIEW_STORE=dynamodb`; scripts/test runs them once so).
pub fn dynamodb_view_requested() -> bool {
    std::env::var("C360_CUSTOMER_VIEW_STORE").is_ok_and(|v| v.eq_ignore_ascii_case("dynamodb"))
}

/// The DynamoDB Local endpoint the tests use (scripts/dynamodb-local starts it).
pub fn dynamodb_endpoint() -> String {
    std::env::var("C360_TEST_DYNAMODB_ENDPOINT")
        .unwrap_or_else(|_| "http://127.0.0.1:18000".to_owned())
}

/// A DynamoDB customer view in a table of its own, on DynamoDB Local.
pub fn dynamodb_view_args() -> c360_api::config::CustomerViewArgs {
    c360_api::config::CustomerViewArgs {
        customer_view_store: c360_api::config::ViewStoreKind::Dynamodb,
        dynamodb_table: format!("c360-test-{}", uuid::Uuid::now_v7().simple()),
        dynamodb_region: Some("us-east-1".to_owned()),
        dynamodb_endpoint: Some(dynamodb_endpoint()),
        dynamodb_credentials: Some(("local".to_owned(), "local".to_owned())),
    }
}

/// A running c360 and an HTTP client for it.
pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    server: RunningServer,
    database: TestDatabase,
    config: ServeConfig,
}

impl TestApp {
    pub async fn spawn(engine: Engine) -> Self {
        Self::spawn_with(engine, |_| {}).await
    }

    /// Starts the server with the default configuration as changed by `configure`.
    pub async fn spawn_with(engine: Engine, configure: impl FnOnce(&mut ServeConfig)) -> Self {
        let database = TestDatabase::create(engine)
            .await
            .expect("create the test database (is PostgreSQL up?)");
        let mut config = ServeConfig::with_database(
            "127.0.0.1:0".parse().expect("loopback address"),
            database.url(),
        );
        config.jobs_dir =
            std::env::temp_dir().join(format!("c360-jobs-{}", uuid::Uuid::now_v7().simple()));
        if dynamodb_view_requested() {
            config.customer_view = dynamodb_view_args();
        }
        configure(&mut config);
        let server = RunningServer::start(config.clone())
            .await
            .expect("start c360");
        Self {
            addr: server.addr,
            client: reqwest::Client::new(),
            server,
            database,
            config,
        }
    }

    /// Stops the server gracefully and starts a new one on the same database and jobs folder,
    /// as a restart of the service would.
    pub async fn restart(self) -> Self {
        self.server.shutdown().await.expect("graceful shutdown");
        let server = RunningServer::start(self.config.clone())
            .await
            .expect("restart c360");
        Self {
            addr: server.addr,
            server,
            ..self
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The URL of the service's database, for a test that reaches past the API.
    pub fn database_url(&self) -> String {
        self.database.url()
    }

    pub async fn post_record(&self, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url("/v1/records"))
            .json(body)
            .send()
            .await
            .expect("POST /v1/records")
    }

    /// Posts a record and returns the status and the JSON answer.
    pub async fn ingest(&self, body: &Value) -> (u16, Value) {
        let response = self.post_record(body).await;
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON answer"))
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let response = self.client.get(self.url(path)).send().await.expect("GET");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// The body of `GET path` as text (exports, metrics).
    pub async fn get_text(&self, path: &str) -> String {
        self.client
            .get(self.url(path))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
            .text()
            .await
            .unwrap_or_else(|e| panic!("body of GET {path}: {e}"))
    }

    /// A gauge from `/metrics`, e.g. `c360_records`.
    pub async fn gauge(&self, name: &str) -> i64 {
        let text = self.get_text("/metrics").await;
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("gauge {name} in /metrics"))
    }

    /// Stops the server gracefully and drops the database (and the DynamoDB view table).
    pub async fn stop(self) {
        self.server.shutdown().await.expect("graceful shutdown");
        if let Some(views) = c360_api::server::open_view_store(&self.config.customer_view)
            .await
            .expect("connect to the customer view store")
        {
            views.delete_table().await.expect("delete the view table");
        }
        let _ = std::fs::remove_dir_all(&self.config.jobs_dir);
        self.database
            .drop_database()
            .await
            .expect("drop the test database");
    }
}

/// Generates one `#[tokio::test]` per engine for each listed async test function taking an
/// [`Engine`].
#[macro_export]
macro_rules! on_both_engines {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Engine::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Engine::Postgres).await;
                }
            )*
        }
    };
}
