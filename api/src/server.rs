//! Starting and stopping the HTTP server.

use std::net::SocketAddr;

use c360_matching::Engine;
use c360_services::{Database, Resolver};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::app::{router, AppState};
use crate::config::ServeConfig;
use crate::metrics::Metrics;

/// Connects to the database and applies pending migrations.
pub async fn open_database(config: &crate::config::DatabaseArgs) -> anyhow::Result<Database> {
    let db = Database::connect(&config.database_url, config.db_max_connections).await?;
    db.migrate().await?;
    Ok(db)
}

/// A running server: its address, and a handle to stop it gracefully.
pub struct RunningServer {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl RunningServer {
    /// Binds, migrates and starts serving in the background. Port 0 picks a free port.
    pub async fn start(config: ServeConfig) -> anyhow::Result<Self> {
        let db = open_database(&config.database).await?;
        if config.api_keys.is_none() {
            tracing::warn!("C360_API_KEYS is not set: the API is open to anyone who can reach it");
        }
        let state = AppState {
            resolver: Resolver::new(db, Engine::shipped()),
            metrics: Metrics::new()?,
        };
        let app = router(state, &config);
        let listener = TcpListener::bind(config.bind).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
        });
        tracing::info!(%addr, "c360 listening");
        Ok(Self {
            addr,
            stop: Some(stop),
            task,
        })
    }

    /// Stops accepting connections and waits for in-flight requests to finish.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await??;
        Ok(())
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
