//! The customer-view store suite: the same scenarios against the SQL view (SQLite and
//! PostgreSQL) and the DynamoDB view (on DynamoDB Local, over SQLite and PostgreSQL). With
//! DynamoDB, every view read through the resolver is also compared with what SQL holds, and
//! the consistency check (`c360 customer-view check`) must find nothing wrong.

use std::sync::Arc;

use c360_domain::{CustomerId, IdentifierKind, Profile, RecordInput, RecordKey};
use c360_e2e::{dynamodb_view_args, Engine, TestDatabase};
use c360_services::customer_view::{DynamoSettings, DynamoViews, ViewState};
use c360_services::{Database, Resolver, ServiceError};
use serde_json::json;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum View {
    Sql,
    Dynamo,
}

/// A resolver on a fresh database with the chosen view, and a plain SQL resolver on the same
/// database to compare against.
struct Store {
    resolver: Resolver,
    sql: Resolver,
    views: Option<Arc<DynamoViews>>,
    database: TestDatabase,
}

async fn dynamo_views(table: &str, page_bytes: usize) -> Arc<DynamoViews> {
    let args = dynamodb_view_args();
    let mut settings = DynamoSettings::new(table);
    settings.region = args.dynamodb_region;
    settings.endpoint = args.dynamodb_endpoint;
    settings.credentials = args.dynamodb_credentials;
    settings.page_bytes = page_bytes;
    let views = DynamoViews::connect(settings).await;
    views
        .create_table_if_missing()
        .await
        .expect("create the view table (is DynamoDB Local up? scripts/dynamodb-local/start)");
    Arc::new(views)
}

impl Store {
    /// `page_bytes`: member page size for DynamoDB (small values force many pages).
    async fn open(engine: Engine, view: View, page_bytes: usize) -> Self {
        let database = TestDatabase::create(engine).await.expect("test database");
        let db = Database::connect(&database.url(), 8)
            .await
            .expect("connect");
        db.migrate().await.expect("migrate");
        let sql = Resolver::new(db.clone(), c360_matching::Engine::shipped());
        let mut resolver = Resolver::new(db, c360_matching::Engine::shipped());
        let views = match view {
            View::Sql => None,
            View::Dynamo => {
                let table = dynamodb_view_args().dynamodb_table;
                Some(dynamo_views(&table, page_bytes).await)
            }
        };
        resolver
            .set_view_projection(views.is_some())
            .await
            .expect("outbox");
        if let Some(views) = &views {
            resolver = resolver.with_dynamo_views(views.clone());
        }
        Self {
            resolver,
            sql,
            views,
            database,
        }
    }

    async fn ingest(&self, record: serde_json::Value) -> c360_domain::IngestResult {
        let input: RecordInput = serde_json::from_value(record).expect("record input");
        self.resolver
            .ingest(Profile::parse(&input).expect("valid record"))
            .await
            .expect("ingest")
    }

    /// The customer as the configured view serves it, checked against SQL.
    async fn customer(&self, id: &CustomerId) -> Option<c360_domain::CustomerView> {
        let served = match self.resolver.get_customer(id).await {
            Ok(view) => Some(view),
            Err(ServiceError::NotFound(_)) => None,
            Err(e) => panic!("get customer: {e}"),
        };
        let from_sql = self.sql.get_customer(id).await.ok();
        assert_eq!(served, from_sql, "the view serves what SQL holds");
        served
    }

    async fn find(&self, kind: IdentifierKind, raw: &str) -> Vec<String> {
        let served = self.resolver.find_customers(kind, raw).await.expect("find");
        let from_sql = self
            .sql
            .find_customers(kind, raw)
            .await
            .expect("find in SQL");
        assert_eq!(served, from_sql, "look-up answers as SQL does");
        served
            .into_iter()
            .map(|v| v.customer_id.to_string())
            .collect()
    }

    async fn assert_consistent(&self) {
        if self.views.is_none() {
            return;
        }
        let check = self.resolver.check_views().await.expect("check");
        assert!(check.is_consistent(), "{check:?}");
        assert_eq!(check.queued, 0, "nothing left unpublished: {check:?}");
    }

    async fn close(self) {
        if let Some(views) = &self.views {
            views.delete_table().await.expect("delete table");
        }
        self.resolver.database().close().await;
        self.database.drop_database().await.expect("drop database");
    }
}

fn record(source_id: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut base = json!({ "source": "crm", "source_id": source_id });
    if let (Some(base), Some(extra)) = (base.as_object_mut(), extra.as_object()) {
        base.extend(extra.clone());
    }
    base
}

macro_rules! on_every_view {
    ($($name:ident),* $(,)?) => {
        mod sql_sqlite {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name(c360_e2e::Engine::Sqlite, super::View::Sql).await; } )*
        }
        mod sql_postgres {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name(c360_e2e::Engine::Postgres, super::View::Sql).await; } )*
        }
        mod dynamodb_sqlite {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name(c360_e2e::Engine::Sqlite, super::View::Dynamo).await; } )*
        }
        mod dynamodb_postgres {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name(c360_e2e::Engine::Postgres, super::View::Dynamo).await; } )*
        }
    };
}

on_every_view!(
    merge_keeps_absorbed_ids_resolving_and_lookups_current,
    split_and_delete_update_customers_and_lookups,
    customers_with_many_records_span_pages,
    concurrent_replicas_leave_a_consistent_view,
);

async fn merge_keeps_absorbed_ids_resolving_and_lookups_current(engine: Engine, view: View) {
    let store = Store::open(engine, view, 300_000).await;
    let a = store
        .ingest(record(
            "A",
            json!({"first_name": "Robert", "last_name": "Smith", "email": "bob@example.com",
                   "date_of_birth": "1980-02-03"}),
        ))
        .await;
    let b = store
        .ingest(record(
            "B",
            json!({"first_name": "Robert", "last_name": "Smith", "phone": "+1 555 201 3344",
                   "loyalty_id": "LOY-9"}),
        ))
        .await;
    assert_ne!(a.customer_id, b.customer_id, "nothing links A and B yet");
    assert_eq!(
        store.find(IdentifierKind::Email, "BOB@example.com").await,
        vec![a.customer_id.to_string()]
    );

    // C carries A's email and B's loyalty id: it bridges the two customers.
    let c = store
        .ingest(record(
            "C",
            json!({"first_name": "Bob", "last_name": "Smith", "email": "bob@example.com",
                   "loyalty_id": "LOY-9", "date_of_birth": "1980-02-03"}),
        ))
        .await;
    assert_eq!(c.merged_customer_ids.len(), 1, "{c:?}");
    let survivor = c.customer_id.clone();
    let absorbed = c.merged_customer_ids[0].clone();
    let merged = store.customer(&survivor).await.expect("survivor");
    assert_eq!(merged.records.len(), 3);
    let old = store
        .customer(&absorbed)
        .await
        .expect("absorbed id resolves");
    assert_eq!(old.customer_id, survivor);
    assert_eq!(old.resolved_from.as_ref(), Some(&absorbed));
    for (kind, raw) in [
        (IdentifierKind::Email, "bob@example.com"),
        (IdentifierKind::Phone, "(555) 201-3344"),
        (IdentifierKind::LoyaltyId, "LOY-9"),
    ] {
        assert_eq!(
            store.find(kind, raw).await,
            vec![survivor.to_string()],
            "{kind:?} points at the survivor only"
        );
    }
    store.assert_consistent().await;
    store.close().await;
}

async fn split_and_delete_update_customers_and_lookups(engine: Engine, view: View) {
    let store = Store::open(engine, view, 300_000).await;
    store
        .ingest(record(
            "A",
            json!({"first_name": "Ann", "last_name": "Lee", "email": "ann@example.com"}),
        ))
        .await;
    store
        .ingest(record(
            "B",
            json!({"first_name": "Ann", "last_name": "Lee", "cookie_id": "ck-1"}),
        ))
        .await;
    let bridge = store
        .ingest(record(
            "C",
            json!({"first_name": "Ann", "last_name": "Lee", "email": "ann@example.com",
                   "cookie_id": "ck-1"}),
        ))
        .await;
    let merged = bridge.customer_id.clone();
    assert_eq!(
        store.customer(&merged).await.expect("merged").records.len(),
        3
    );

    // Deleting the bridge splits the customer again: each lookup finds its own part.
    store
        .resolver
        .delete(&RecordKey::parse("crm", "C").expect("key"))
        .await
        .expect("delete");
    let by_email = store.find(IdentifierKind::Email, "ann@example.com").await;
    let by_cookie = store.find(IdentifierKind::CookieId, "ck-1").await;
    assert_eq!(by_email.len(), 1);
    assert_eq!(by_cookie.len(), 1);
    assert_ne!(by_email, by_cookie, "split into two customers");
    for id in by_email.iter().chain(&by_cookie) {
        let id = CustomerId::parse(id).expect("id");
        assert_eq!(store.customer(&id).await.expect("part").records.len(), 1);
    }

    // Deleting a customer's last record removes it and its lookups.
    store
        .resolver
        .delete(&RecordKey::parse("crm", "B").expect("key"))
        .await
        .expect("delete");
    assert!(store
        .find(IdentifierKind::CookieId, "ck-1")
        .await
        .is_empty());
    // B was the only record of its part: that customer is gone from SQL and from the view.
    let gone = CustomerId::parse(&by_cookie[0]).expect("id");
    assert!(store.customer(&gone).await.is_none());
    store.assert_consistent().await;
    store.close().await;
}

async fn customers_with_many_records_span_pages(engine: Engine, view: View) {
    // 2 KB pages: a customer of 12 records needs several member pages in DynamoDB.
    let store = Store::open(engine, view, 2_000).await;
    let mut last = None;
    for i in 0..12 {
        let result = store
            .ingest(record(
                &format!("R{i}"),
                json!({"first_name": "Maria", "last_name": "Garcia", "loyalty_id": "LOY-BIG",
                       "email": format!("maria{i}@example.com"),
                       "address_line1": format!("{} Long Street Name Avenue", 100 + i),
                       "city": "Springfield", "state": "IL", "postal_code": "62704"}),
            ))
            .await;
        last = Some(result.customer_id);
    }
    let id = last.expect("ingested");
    let customer = store.customer(&id).await.expect("customer");
    assert_eq!(customer.records.len(), 12);
    assert_eq!(
        customer
            .identifiers
            .iter()
            .filter(|i| i.kind == IdentifierKind::Email)
            .count(),
        12
    );
    if let Some(views) = &store.views {
        let table = views.scan().await.expect("scan");
        let pages = table.pages.iter().filter(|(c, _)| c == id.as_str()).count();
        assert!(pages > 2, "{pages} member pages");
    }
    // Shrinking the customer drops the pages it no longer needs.
    for i in 0..10 {
        store
            .resolver
            .delete(&RecordKey::parse("crm", &format!("R{i}")).expect("key"))
            .await
            .expect("delete");
    }
    let shrunk = store.customer(&id).await;
    let remaining = match shrunk {
        Some(c) => c.records.len(),
        None => {
            // The survivor id may have been one of the deleted records' customers' ids.
            let found = store.find(IdentifierKind::LoyaltyId, "LOY-BIG").await;
            assert_eq!(found.len(), 1);
            let c = CustomerId::parse(&found[0]).expect("id");
            store.customer(&c).await.expect("customer").records.len()
        }
    };
    assert_eq!(remaining, 2);
    store.assert_consistent().await;
    store.close().await;
}

/// Two replicas (two resolvers on one database and one view table) ingest generated records
/// that bridge one another, concurrently; then some records are deleted. The view must end
/// equal to SQL with no orphaned or stale item.
async fn concurrent_replicas_leave_a_consistent_view(engine: Engine, view: View) {
    let store = Store::open(engine, view, 300_000).await;
    let mut replica = Resolver::new(
        store.resolver.database().clone(),
        c360_matching::Engine::shipped(),
    );
    if let Some(views) = &store.views {
        replica = replica.with_dynamo_views(views.clone());
    }
    let records = c360_services::synth::generate(240, 11);
    let profiles: Vec<Profile> = records
        .iter()
        .filter_map(|r| Profile::parse(&r.input).ok())
        .collect();
    let (even, odd): (Vec<_>, Vec<_>) = profiles
        .iter()
        .cloned()
        .enumerate()
        .partition(|(i, _)| i % 2 == 0);
    let first = store.resolver.clone();
    let one = tokio::spawn(async move {
        for (_, p) in even {
            first.ingest(p).await.expect("ingest");
        }
    });
    let second = replica.clone();
    let two = tokio::spawn(async move {
        for (_, p) in odd {
            second.ingest(p).await.expect("ingest");
        }
    });
    one.await.expect("replica one");
    two.await.expect("replica two");
    for p in profiles.iter().step_by(7) {
        store.resolver.delete(&p.key()).await.expect("delete");
    }
    // Whatever a request left queued (a publish that lost every retry) the worker drains.
    store
        .resolver
        .drain_view_outbox(usize::MAX)
        .await
        .expect("drain");
    store.assert_consistent().await;
    for p in profiles.iter().skip(1).step_by(7).take(20) {
        let record = store.sql.get_record(&p.key()).await.expect("record");
        store.customer(&record.customer_id).await.expect("customer");
    }
    if let Some(views) = &store.views {
        // A stale state (an older version) is never written over a newer one.
        let record = store
            .sql
            .get_record(&profiles[1].key())
            .await
            .expect("record");
        let current = store
            .sql
            .get_customer(&record.customer_id)
            .await
            .expect("customer");
        let mut stale = current.clone();
        stale.version -= 1;
        stale.records.clear();
        let written = views
            .write(
                &[(
                    current.customer_id.clone(),
                    ViewState::Active(Box::new(stale)),
                )],
                false,
            )
            .await
            .expect("write");
        assert_eq!(written, 0, "the stale state is skipped");
        assert_eq!(store.customer(&current.customer_id).await, Some(current));
    }
    store.close().await;
}

mod rebuild {
    use super::*;

    /// A view that missed changes (the outbox was off) and a view restored empty are both
    /// found inconsistent by the check and repaired by the rebuild.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rebuild_repairs_a_stale_and_an_empty_view() {
        let store = Store::open(Engine::Sqlite, View::Dynamo, 300_000).await;
        let records = c360_services::synth::generate(120, 5);
        let profiles: Vec<Profile> = records
            .iter()
            .filter_map(|r| Profile::parse(&r.input).ok())
            .collect();
        for p in &profiles[..80] {
            store.resolver.ingest(p.clone()).await.expect("ingest");
        }
        store.assert_consistent().await;

        // Changes made while the outbox is off never reach the view.
        store.sql.set_view_projection(false).await.expect("off");
        for p in &profiles[80..] {
            store.sql.ingest(p.clone()).await.expect("ingest");
        }
        for p in profiles[..80].iter().step_by(5) {
            store.sql.delete(&p.key()).await.expect("delete");
        }
        let views = store.views.clone().expect("dynamo");
        let check = store.resolver.check_views().await.expect("check");
        assert!(!check.is_consistent(), "{check:?}");
        assert!(
            check.missing_customers > 0 && check.orphaned_lookups > 0,
            "{check:?}"
        );

        let report = store
            .resolver
            .rebuild_views(|_| {}, |_| {})
            .await
            .expect("rebuild");
        assert!(report.deleted_items > 0, "{report:?}");
        let check = store.resolver.check_views().await.expect("check");
        assert!(check.is_consistent(), "{check:?}");

        // A restore to an empty table: rebuild fills it.
        let empty = dynamo_views(&dynamodb_view_args().dynamodb_table, 300_000).await;
        let fresh = Resolver::new(
            store.resolver.database().clone(),
            c360_matching::Engine::shipped(),
        )
        .with_dynamo_views(empty.clone());
        assert!(!fresh.check_views().await.expect("check").is_consistent());
        fresh.rebuild_views(|_| {}, |_| {}).await.expect("rebuild");
        let check = fresh.check_views().await.expect("check");
        assert!(check.is_consistent(), "{check:?}");
        assert_eq!(check.view_customers, check.sql_customers);
        empty.delete_table().await.expect("delete");
        drop(views);
        store.close().await;
    }
}

mod oversized {
    use super::*;
    use c360_domain::{CustomerView, IdentifierEntry, MemberRecord};

    fn customer(version: i64, emails: usize) -> CustomerView {
        let now = chrono::Utc::now();
        let input: RecordInput = serde_json::from_value(json!({
            "source": "crm", "source_id": "R1", "first_name": "Maria", "last_name": "Garcia"
        }))
        .expect("input");
        CustomerView {
            customer_id: CustomerId::from_uuid_simple("00000000000000000000000000000abc"),
            resolved_from: None,
            golden: Default::default(),
            records: vec![MemberRecord {
                record: Profile::parse(&input).expect("profile"),
                first_seen_at: now,
                last_changed_at: now,
            }],
            identifiers: (0..emails)
                .map(|i| IdentifierEntry {
                    kind: IdentifierKind::Email,
                    value: format!("m{i:03}@example.com"),
                    records: 1,
                })
                .collect(),
            enrichment: Default::default(),
            version,
            created_at: now,
            updated_at: now,
        }
    }

    /// A customer whose write needs more than 100 actions (150 lookup items) is written over
    /// several transactions and reads back whole; shrinking it deletes the lookups it lost.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_customer_too_big_for_one_transaction_is_written_whole() {
        let views = dynamo_views(&dynamodb_view_args().dynamodb_table, 300_000).await;
        let big = customer(1, 150);
        let id = big.customer_id.clone();
        let written = views
            .write(
                &[(id.clone(), ViewState::Active(Box::new(big.clone())))],
                false,
            )
            .await
            .expect("write");
        assert_eq!(written, 1);
        assert_eq!(views.get(&id).await.expect("get"), Some(big));
        let found = views
            .find(IdentifierKind::Email, "m149@example.com")
            .await
            .expect("find");
        assert_eq!(found.len(), 1);

        let small = customer(2, 10);
        views
            .write(
                &[(id.clone(), ViewState::Active(Box::new(small.clone())))],
                false,
            )
            .await
            .expect("write");
        assert_eq!(views.get(&id).await.expect("get"), Some(small));
        let table = views.scan().await.expect("scan");
        assert_eq!(table.lookups.len(), 10, "the 140 lost lookups are deleted");
        assert!(views
            .find(IdentifierKind::Email, "m149@example.com")
            .await
            .expect("find")
            .is_empty());
        views.delete_table().await.expect("delete");
    }
}
