//! The customer-view port: where `GET /v1/customers/{id}` and the identifier look-ups are
//! answered from.
//!
//! The SQL store (the default) is its own view: the resolver writes the customers table in
//! the transaction that changes the graph. With DynamoDB ([`dynamo`]) the view is a copy kept
//! by a publisher: every change to a customer row queues the customer in `view_outbox`
//! (a trigger, in the same SQL transaction, so no change is ever missed). After each write the
//! resolver publishes the customers it changed before it answers, so a read that follows a
//! write sees it; a background worker publishes whatever is left (a crash between commit and
//! publish, a bulk job's backlog). Publishing reads the customer's current state from SQL and
//! writes it with the SQL version as an optimistic lock (see [`dynamo`]); a conflict is
//! retried from fresh state.

pub mod dynamo;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use c360_domain::{CustomerId, CustomerView};
use c360_matching::blocking;
use serde::Serialize;
use sqlx::Row;

use crate::error::{ServiceError, StoreError};
use crate::resolver::{load_view, parse_customer_id};
use crate::store::{filed_keys_of, placeholders};
use crate::Resolver;
pub use dynamo::{DynamoSettings, DynamoViews};

/// Customers published per round trip.
const PUBLISH_BATCH: usize = 50;
/// A conflicting publish is retried this many times from fresh state.
const MAX_PUBLISH_ATTEMPTS: u32 = 10;
/// Queued customers a request publishes itself when it does not know which it changed.
const INLINE_DRAIN: usize = 200;

/// What the view must show for one customer id, as SQL has it now.
#[derive(Debug, Clone)]
pub enum ViewState {
    Active(Box<CustomerView>),
    /// Absorbed by a merge: the id resolves to the survivor.
    Merged {
        into: CustomerId,
        version: i64,
    },
    /// No longer exists (its last record was deleted).
    Gone,
}

impl From<dynamo::WriteError> for StoreError {
    fn from(error: dynamo::WriteError) -> Self {
        StoreError::ViewStore(error.to_string())
    }
}

impl From<dynamo::WriteError> for ServiceError {
    fn from(error: dynamo::WriteError) -> Self {
        ServiceError::Store(error.into())
    }
}

/// What `c360 customer-view check` found: every figure is 0 when the two stores agree.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ViewCheck {
    /// Customer ids in SQL (active or merged) and items in DynamoDB.
    pub sql_customers: u64,
    pub view_customers: u64,
    pub lookups: u64,
    /// SQL customers with no item in the view.
    pub missing_customers: u64,
    /// Items whose version or state differs from SQL.
    pub stale_customers: u64,
    /// Active or merged items for ids SQL no longer has.
    pub orphaned_customers: u64,
    /// Identifiers of active customers with no lookup item.
    pub missing_lookups: u64,
    /// Lookup items pointing at a customer that does not carry the identifier (or is gone).
    pub orphaned_lookups: u64,
    /// Member pages beyond a customer's page count, or of a missing customer.
    pub orphaned_pages: u64,
    /// Customers still queued for publishing (not yet copied).
    pub queued: u64,
}

impl ViewCheck {
    pub fn is_consistent(&self) -> bool {
        self.missing_customers == 0
            && self.stale_customers == 0
            && self.orphaned_customers == 0
            && self.missing_lookups == 0
            && self.orphaned_lookups == 0
            && self.orphaned_pages == 0
    }
}

/// What `c360 customer-view rebuild` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ViewRebuild {
    pub customers: u64,
    pub written: u64,
    pub deleted_items: u64,
}

impl Resolver {
    /// Serves the customer view from DynamoDB (kept up to date through the outbox).
    pub fn with_dynamo_views(mut self, views: Arc<DynamoViews>) -> Self {
        self.dynamo = Some(views);
        self
    }

    pub fn dynamo_views(&self) -> Option<&Arc<DynamoViews>> {
        self.dynamo.as_ref()
    }

    /// Turns the outbox on (a separate view store is configured) or off. Turning it on
    /// queues every customer, so that a view store that missed changes while it was off
    /// catches up; turning it off empties the queue.
    pub async fn set_view_projection(&self, enabled: bool) -> Result<(), ServiceError> {
        let mut tx = self.db.pool().begin().await?;
        let was: i64 = sqlx::query("SELECT enabled FROM view_projection WHERE id = 1")
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        if enabled && was != 1 {
            sqlx::query("UPDATE view_projection SET enabled = 1 WHERE id = 1")
                .execute(&mut *tx)
                .await?;
            let queued = sqlx::query(
                // `WHERE true`: SQLite would read ON CONFLICT as part of the SELECT's join.
                "INSERT INTO view_outbox (customer_id, seq) SELECT id, 1 FROM customers \
                 WHERE true ON CONFLICT (customer_id) DO NOTHING",
            )
            .execute(&mut *tx)
            .await?;
            tracing::info!(
                customers = queued.rows_affected(),
                "customer-view outbox turned on: every customer queued for publishing"
            );
        } else if !enabled && was != 0 {
            sqlx::query("UPDATE view_projection SET enabled = 0 WHERE id = 1")
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM view_outbox")
                .execute(&mut *tx)
                .await?;
            tracing::warn!(
                "customer-view outbox turned off: a DynamoDB view used before is now stale \
                 (run `c360 customer-view rebuild` before serving from it again)"
            );
        }
        tx.commit().await?;
        Ok(())
    }

    /// After a write committed: publishes the customers it changed (or, not knowing them,
    /// a bounded part of the queue) so that the next read sees them. A failure is logged and
    /// left to the worker: the write itself has succeeded and stays queued.
    pub(crate) async fn publish_after_write(&self, changed: &[CustomerId]) {
        let Some(views) = &self.dynamo else {
            return;
        };
        let outcome = if changed.is_empty() {
            self.drain_view_outbox(INLINE_DRAIN).await.map(|_| ())
        } else {
            self.publish_queued(changed).await
        };
        if let Err(error) = outcome {
            tracing::warn!(error = %error, "customer view not published yet; the worker retries");
        }
        views.wake.notify_one();
    }

    /// Publishes the given customers if they are queued, and dequeues them.
    async fn publish_queued(&self, ids: &[CustomerId]) -> Result<(), ServiceError> {
        let unique: BTreeSet<&str> = ids.iter().map(CustomerId::as_str).collect();
        let unique: Vec<&str> = unique.into_iter().collect();
        for chunk in unique.chunks(PUBLISH_BATCH) {
            let sql = format!(
                "SELECT customer_id, seq FROM view_outbox WHERE customer_id IN ({})",
                placeholders(1, chunk.len())
            );
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(*id);
            }
            let mut queued = Vec::new();
            for row in query.fetch_all(self.db.pool()).await? {
                queued.push((
                    parse_customer_id(&row.try_get::<String, _>(0)?)?,
                    row.try_get::<i64, _>(1)?,
                ));
            }
            self.publish(&queued).await?;
        }
        Ok(())
    }

    /// Publishes up to `limit` queued customers. Returns how many were published.
    pub async fn drain_view_outbox(&self, limit: usize) -> Result<usize, ServiceError> {
        if self.dynamo.is_none() {
            return Ok(0);
        }
        let mut done = 0;
        let mut after = String::new();
        while done < limit {
            let rows = sqlx::query(
                "SELECT customer_id, seq FROM view_outbox WHERE customer_id > $1 \
                 ORDER BY customer_id LIMIT $2",
            )
            .bind(&after)
            .bind(PUBLISH_BATCH.min(limit - done) as i64)
            .fetch_all(self.db.pool())
            .await?;
            if rows.is_empty() {
                break;
            }
            let mut queued = Vec::with_capacity(rows.len());
            for row in rows {
                let id: String = row.try_get(0)?;
                queued.push((parse_customer_id(&id)?, row.try_get::<i64, _>(1)?));
                after = id;
            }
            self.publish(&queued).await?;
            done += queued.len();
        }
        Ok(done)
    }

    /// Copies the customers' current SQL state to the view and dequeues each entry whose
    /// seq is still the one published (a change made meanwhile stays queued).
    async fn publish(&self, queued: &[(CustomerId, i64)]) -> Result<(), ServiceError> {
        let Some(views) = &self.dynamo else {
            return Ok(());
        };
        if queued.is_empty() {
            return Ok(());
        }
        let ids: Vec<CustomerId> = queued.iter().map(|(id, _)| id.clone()).collect();
        self.write_views(views, &ids, false).await?;
        // One statement per batch; an entry whose seq moved on (changed again meanwhile) stays.
        let condition = (0..queued.len())
            .map(|i| format!("(customer_id = ${} AND seq = ${})", 2 * i + 1, 2 * i + 2))
            .collect::<Vec<_>>()
            .join(" OR ");
        let sql = format!("DELETE FROM view_outbox WHERE {condition}");
        let mut query = sqlx::query(&sql);
        for (id, seq) in queued {
            query = query.bind(id.as_str()).bind(*seq);
        }
        query.execute(self.db.pool()).await?;
        Ok(())
    }

    /// Reads the customers from SQL and writes them to the view, retrying conflicts from
    /// fresh state. Returns how many were written.
    async fn write_views(
        &self,
        views: &DynamoViews,
        ids: &[CustomerId],
        force: bool,
    ) -> Result<usize, ServiceError> {
        let mut attempt = 0;
        loop {
            let states = self.view_states(ids).await?;
            match views.write(&states, force).await {
                Ok(written) => return Ok(written),
                Err(dynamo::WriteError::Conflict) if attempt + 1 < MAX_PUBLISH_ATTEMPTS => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(5 << attempt.min(6))).await;
                }
                Err(other) => return Err(other.into()),
            }
        }
    }

    /// The current SQL state of each customer id, for the view.
    pub(crate) async fn view_states(
        &self,
        ids: &[CustomerId],
    ) -> Result<Vec<(CustomerId, ViewState)>, ServiceError> {
        let mut conn = self.db.pool().acquire().await?;
        let mut rows: HashMap<String, (Option<String>, i64)> = HashMap::new();
        for chunk in ids.chunks(PUBLISH_BATCH) {
            let sql = format!(
                "SELECT id, merged_into, version FROM customers WHERE id IN ({})",
                placeholders(1, chunk.len())
            );
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(id.as_str());
            }
            for row in query.fetch_all(&mut *conn).await? {
                rows.insert(row.try_get(0)?, (row.try_get(1)?, row.try_get(2)?));
            }
        }
        let mut states = Vec::with_capacity(ids.len());
        for id in ids {
            let state = match rows.get(id.as_str()) {
                None => ViewState::Gone,
                Some((Some(into), version)) => ViewState::Merged {
                    into: parse_customer_id(into)?,
                    version: *version,
                },
                Some((None, _)) => match load_view(&mut conn, id).await? {
                    Some(view) => ViewState::Active(Box::new(view)),
                    None => ViewState::Gone,
                },
            };
            states.push((id.clone(), state));
        }
        Ok(states)
    }

    /// Publishes queued customers until stopped: woken after writes, and every second.
    pub async fn run_view_worker(self, shutdown: impl Future<Output = ()>) {
        let Some(views) = self.dynamo.clone() else {
            return;
        };
        tokio::pin!(shutdown);
        loop {
            match self.drain_view_outbox(usize::MAX).await {
                Ok(0) => {}
                Ok(published) => tracing::debug!(published, "customer views published"),
                Err(error) => tracing::warn!(error = %error, "publishing customer views failed"),
            }
            tokio::select! {
                _ = &mut shutdown => return,
                _ = views.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// Rewrites the whole view from the SQL records and graph, streaming customers in id
    /// order, then deletes every item SQL does not account for. `progress` gets the number
    /// of customers done so far.
    pub async fn rebuild_views(
        &self,
        total_hint: impl FnOnce(u64),
        mut progress: impl FnMut(u64),
    ) -> Result<ViewRebuild, ServiceError> {
        let views = self
            .dynamo
            .clone()
            .ok_or_else(|| ServiceError::Conflict("no DynamoDB view store configured".into()))?;
        let total: i64 = sqlx::query("SELECT COUNT(*) FROM customers")
            .fetch_one(self.db.pool())
            .await?
            .try_get(0)?;
        total_hint(total as u64);
        let mut report = ViewRebuild::default();
        let mut after = String::new();
        loop {
            let rows = sqlx::query("SELECT id FROM customers WHERE id > $1 ORDER BY id LIMIT $2")
                .bind(&after)
                .bind(PUBLISH_BATCH as i64)
                .fetch_all(self.db.pool())
                .await?;
            let Some(last) = rows.last() else {
                break;
            };
            after = last.try_get(0)?;
            let mut ids = Vec::with_capacity(rows.len());
            for row in &rows {
                ids.push(parse_customer_id(&row.try_get::<String, _>(0)?)?);
            }
            report.written += self.write_views(&views, &ids, true).await? as u64;
            report.customers += ids.len() as u64;
            progress(report.customers);
        }
        let (_, leftovers) = self.compare_views(&views).await?;
        report.deleted_items = leftovers.len() as u64;
        views.delete_keys(leftovers).await?;
        Ok(report)
    }

    /// Scans the view and SQL and counts every difference (see [`ViewCheck`]).
    pub async fn check_views(&self) -> Result<ViewCheck, ServiceError> {
        let views = self
            .dynamo
            .clone()
            .ok_or_else(|| ServiceError::Conflict("no DynamoDB view store configured".into()))?;
        Ok(self.compare_views(&views).await?.0)
    }

    /// The check, and the keys of the items that should not be there (orphans).
    async fn compare_views(
        &self,
        views: &DynamoViews,
    ) -> Result<(ViewCheck, Vec<(String, String)>), ServiceError> {
        let table = views.scan().await?;
        let mut check = ViewCheck {
            view_customers: table.customers.len() as u64,
            lookups: table.lookups.len() as u64,
            ..ViewCheck::default()
        };
        let mut orphans = Vec::new();
        let mut sql_ids: HashSet<String> = HashSet::new();
        let mut conn = self.db.pool().acquire().await?;
        let mut after = String::new();
        loop {
            let rows = sqlx::query(
                "SELECT id, merged_into, version FROM customers WHERE id > $1 \
                 ORDER BY id LIMIT 1000",
            )
            .bind(&after)
            .fetch_all(&mut *conn)
            .await?;
            let Some(last) = rows.last() else {
                break;
            };
            after = last.try_get(0)?;
            for row in rows {
                let id: String = row.try_get(0)?;
                let merged_into: Option<String> = row.try_get(1)?;
                let version: i64 = row.try_get(2)?;
                check.sql_customers += 1;
                match table.customers.get(&id) {
                    None => check.missing_customers += 1,
                    Some((state, stored_version, stored_into, _)) => {
                        let expected = if merged_into.is_some() {
                            "merged"
                        } else {
                            "active"
                        };
                        if state != expected
                            || *stored_version != version
                            || (merged_into.is_some() && *stored_into != merged_into)
                        {
                            check.stale_customers += 1;
                        }
                    }
                }
                sql_ids.insert(id);
            }
        }
        let mut orphaned: HashSet<&str> = HashSet::new();
        for (id, (state, _, _, _)) in &table.customers {
            if state != "deleted" && !sql_ids.contains(id) {
                check.orphaned_customers += 1;
                orphans.push(DynamoViews::customer_key(id));
                orphaned.insert(id);
            }
        }
        for (id, page) in &table.pages {
            let pages = table.customers.get(id).map_or(0, |c| c.3);
            if *page >= pages || orphaned.contains(id.as_str()) {
                check.orphaned_pages += 1;
                orphans.push(DynamoViews::page_key(id, *page));
            }
        }
        // Identifiers of active customers, as the SQL view computes them: the identifier keys
        // each record is filed under (the index itself holds only their hashes).
        let mut expected: HashSet<(String, String, String)> = HashSet::new();
        let mut after = (String::new(), String::new());
        loop {
            let rows = sqlx::query(
                "SELECT source, source_id, customer_id, filed_keys FROM records \
                 WHERE (source, source_id) > ($1, $2) ORDER BY source, source_id LIMIT 5000",
            )
            .bind(&after.0)
            .bind(&after.1)
            .fetch_all(&mut *conn)
            .await?;
            if rows.is_empty() {
                break;
            }
            for row in rows {
                after = (row.try_get(0)?, row.try_get(1)?);
                let customer: String = row.try_get(2)?;
                let filed: Option<String> = row.try_get(3)?;
                for key in &filed_keys_of(filed.as_deref())? {
                    if let Some((kind, value)) = blocking::identifier_of_key(key) {
                        let entry = (kind.as_str().to_owned(), value.to_owned(), customer.clone());
                        expected.insert(entry);
                    }
                }
            }
        }
        let present: HashSet<(String, String, String)> = table.lookups.iter().cloned().collect();
        check.missing_lookups = expected.difference(&present).count() as u64;
        for lookup in &table.lookups {
            if !expected.contains(lookup) {
                check.orphaned_lookups += 1;
                orphans.push(DynamoViews::lookup_key(&lookup.0, &lookup.1, &lookup.2));
            }
        }
        check.queued = sqlx::query("SELECT COUNT(*) FROM view_outbox")
            .fetch_one(&mut *conn)
            .await?
            .try_get::<i64, _>(0)? as u64;
        Ok((check, orphans))
    }
}
