//! Starting and stopping the HTTP server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use c360_matching::Engine;
use c360_services::enrich::location::{LocationGeocoder, LocationSettings};
use c360_services::enrich::{load_census, load_offline_geocoder, Enricher, Geocoder};
use c360_services::jobs::Jobs;
use c360_services::{Database, Resolver};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::app::{router, AppState};
use crate::config::{CustomerViewArgs, EnrichmentArgs, GeocoderKind, ServeConfig, ViewStoreKind};
use crate::metrics::Metrics;
use c360_services::customer_view::{DynamoSettings, DynamoViews};

/// Connects to the database and applies pending migrations.
pub async fn open_database(config: &crate::config::DatabaseArgs) -> anyhow::Result<Database> {
    let db = Database::connect(&config.database_url, config.db_max_connections).await?;
    db.migrate().await?;
    Ok(db)
}

/// Connects to the configured customer-view store and creates its table if missing. `None`:
/// the SQL database is the view.
pub async fn open_view_store(args: &CustomerViewArgs) -> anyhow::Result<Option<Arc<DynamoViews>>> {
    if args.customer_view_store == ViewStoreKind::Sql {
        return Ok(None);
    }
    let mut settings = DynamoSettings::new(args.dynamodb_table.clone());
    settings.region = args.dynamodb_region.clone();
    settings.endpoint = args.dynamodb_endpoint.clone();
    settings.credentials = args.dynamodb_credentials.clone();
    let views = DynamoViews::connect(settings).await;
    if views.create_table_if_missing().await? {
        tracing::info!(
            table = views.table(),
            "DynamoDB customer-view table created"
        );
    }
    Ok(Some(Arc::new(views)))
}

/// Points the resolver at the configured customer-view store and turns the SQL outbox that
/// feeds it on or off.
pub async fn attach_view_store(
    resolver: Resolver,
    args: &CustomerViewArgs,
) -> anyhow::Result<Resolver> {
    let views = open_view_store(args).await?;
    resolver.set_view_projection(views.is_some()).await?;
    Ok(match views {
        Some(views) => resolver.with_dynamo_views(views),
        None => resolver,
    })
}

/// A running server: its address, and a handle to stop it gracefully.
pub struct RunningServer {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
    workers: Vec<(oneshot::Sender<()>, JoinHandle<()>)>,
}

/// Spawns a background worker and returns the handle that stops it.
fn spawn_worker<F, Fut>(run: F) -> (oneshot::Sender<()>, JoinHandle<()>)
where
    F: FnOnce(std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(run(Box::pin(async move {
        let _ = stopped.await;
    })));
    (stop, task)
}

/// Database upkeep while serving: planner statistics refreshed at start (PostgreSQL), then,
/// checked every 10 s, refreshed whenever the store has grown by a fifth (record-by-record
/// ingestion alone can grow a store tenfold while autovacuum is off or behind), and SQLite's
/// WAL checkpointed so that it stays short.
async fn maintain_database(
    db: Database,
    stop: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
) {
    tokio::pin!(stop);
    if let Err(error) = db.refresh_statistics().await {
        tracing::warn!(error = %error, "refreshing planner statistics failed");
    }
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(Duration::from_secs(10)) => {}
        }
        if let Err(error) = db.maintain().await {
            tracing::warn!(error = %error, "database upkeep failed");
        }
    }
}

/// Loads the census data and builds the configured geocoder. A corrupt data file fails here,
/// at start, naming the file, the line or feature, and the reason.
pub async fn build_enricher(
    args: &EnrichmentArgs,
    db: Database,
) -> anyhow::Result<Option<Arc<Enricher>>> {
    let geocoder: Arc<dyn Geocoder> = match args.geocoder {
        GeocoderKind::Off => return Ok(None),
        GeocoderKind::Offline => {
            let (points, zips) = (args.address_points.clone(), args.zip_centroids.clone());
            let geocoder = tokio::task::spawn_blocking(move || {
                load_offline_geocoder(&points, zips.as_deref())
            })
            .await??;
            tracing::info!(
                address_points = geocoder.point_count(),
                "offline geocoder ready"
            );
            Arc::new(geocoder)
        }
        GeocoderKind::AwsLocation => {
            let index = args.location_place_index.clone().ok_or_else(|| {
                anyhow::anyhow!("--geocoder aws-location needs C360_LOCATION_PLACE_INDEX")
            })?;
            let mut settings = LocationSettings::new(index);
            settings.endpoint = args.location_endpoint.clone();
            Arc::new(LocationGeocoder::connect(settings).await)
        }
    };
    let (blockgroups, acs) = (args.blockgroups.clone(), args.acs.clone());
    let census =
        tokio::task::spawn_blocking(move || load_census(blockgroups.as_deref(), acs.as_deref()))
            .await??;
    tracing::info!(block_groups = census.len(), "census index ready");
    Ok(Some(Arc::new(Enricher::new(
        geocoder,
        Arc::new(census),
        db,
        Duration::from_secs(args.enrich_retry_secs.max(1)),
    ))))
}

impl RunningServer {
    /// Binds, migrates and starts serving in the background. Port 0 picks a free port.
    pub async fn start(config: ServeConfig) -> anyhow::Result<Self> {
        let db = open_database(&config.database).await?;
        if config.api_keys.is_none() {
            tracing::warn!("C360_API_KEYS is not set: the API is open to anyone who can reach it");
        }
        let mut resolver = Resolver::new(db.clone(), Engine::shipped());
        let mut workers = Vec::new();
        if let Some(enricher) = build_enricher(&config.enrichment, db).await? {
            resolver = resolver.with_enricher(enricher.clone());
            workers.push(spawn_worker(|stop| enricher.run_worker(stop)));
        }
        resolver = attach_view_store(resolver, &config.customer_view).await?;
        if resolver.dynamo_views().is_some() {
            let publisher = resolver.clone();
            workers.push(spawn_worker(|stop| publisher.run_view_worker(stop)));
        }
        let jobs = Arc::new(
            Jobs::new(
                resolver.clone(),
                config.jobs_dir.clone(),
                config.bulk_chunk_rows(),
            )?
            .with_resident_records(config.bulk_resident_records),
        );
        {
            let jobs = jobs.clone();
            workers.push(spawn_worker(|stop| jobs.run_worker(stop)));
        }
        {
            let db = resolver.database().clone();
            workers.push(spawn_worker(|stop| maintain_database(db, stop)));
        }
        let state = AppState {
            resolver,
            jobs,
            metrics: Metrics::new()?,
            max_upload_bytes: config.max_upload_bytes,
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
            workers,
        })
    }

    /// Stops accepting connections and waits for in-flight requests to finish.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await??;
        // Tell every worker first, then wait: a worker that takes a while to finish its
        // batch (enrichment) must not delay the others' stop (a bulk job's checkpoint).
        let tasks: Vec<JoinHandle<()>> = self
            .workers
            .drain(..)
            .map(|(stop, task)| {
                let _ = stop.send(());
                task
            })
            .collect();
        for task in tasks {
            let _ = task.await;
        }
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
