//! The single customer view in DynamoDB, through `aws-sdk-dynamodb`.
//!
//! One table, keys `pk` (partition) and `sk` (sort), both strings:
//!
//! | item | pk | sk | attributes |
//! | --- | --- | --- | --- |
//! | customer | `C#<customer id>` | `V` | `state` (active, merged, deleted), `version`, `merged_into`, `golden` and `enrichment` (JSON), `record_count`, `pages`, `created_at`, `updated_at`, `incomplete` |
//! | member page | `C#<customer id>` | `P#00000`, `P#00001`, ... | `records` and `identifiers` (JSON arrays), `version` |
//! | lookup | `L#<kind>#<normalized value>` | `C#<customer id>` | `customer_id` |
//!
//! A customer's member records and identifiers go into pages of at most [`PAGE_BYTES`], so a
//! customer with very many records never reaches DynamoDB's 400 KB item limit; one `Query` on
//! `C#<id>` reads the customer item and its pages together. Lookup items answer
//! `GET /v1/customers?email=...` with one `Query` on `L#email#<value>`.
//!
//! Every write of a customer item is conditional on the version read just before
//! (`attribute_not_exists(pk)` for a new one): a writer that lost a race gets
//! [`WriteError::Conflict`] and retries from fresh state. The version is the SQL customer
//! row's, which grows with every change, so an older state is never written over a newer one.
//! A merge or split writes the customer items, their pages and their lookup items in one
//! `TransactWriteItems`: a lookup never points at a customer that no longer exists.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, Delete, KeySchemaElement, KeyType, Put,
    ScalarAttributeType, TransactWriteItem, Update,
};
use aws_sdk_dynamodb::Client;
use c360_domain::{
    CustomerId, CustomerView, Enrichment, GoldenRecord, IdentifierEntry, IdentifierKind,
    MemberRecord,
};
use chrono::{DateTime, Utc};

use super::ViewState;

/// Largest JSON payload of one member page: well under the 400 KB item limit.
pub const PAGE_BYTES: usize = 300_000;
/// Most actions in one `TransactWriteItems` (DynamoDB's limit).
const MAX_TRANSACTION_ITEMS: usize = 100;
/// Largest payload put into one transaction (DynamoDB's limit is 4 MB).
const MAX_TRANSACTION_BYTES: usize = 3_500_000;
/// Customers whose stored state is read at once when planning a write.
const READ_CONCURRENCY: usize = 16;
/// Merge redirects a read follows before giving up.
const MAX_MERGE_HOPS: usize = 4;
/// Most customers answered for one identifier, as the SQL view does.
const MAX_LOOKUP_RESULTS: i32 = 50;

/// How to reach the table.
#[derive(Debug, Clone)]
pub struct DynamoSettings {
    pub table: String,
    /// Region; default: the usual AWS configuration (`AWS_REGION`, profile).
    pub region: Option<String>,
    /// Endpoint override (DynamoDB Local, say).
    pub endpoint: Option<String>,
    /// Static credentials; default: the usual AWS credential chain.
    pub credentials: Option<(String, String)>,
    /// Attempts per call, the first included (SDK standard retry: backoff with jitter).
    pub max_attempts: u32,
    /// First retry backoff; it grows exponentially.
    pub initial_backoff: Duration,
    /// Largest JSON payload of one member page (default [`PAGE_BYTES`]; tests use less).
    pub page_bytes: usize,
}

impl DynamoSettings {
    pub fn new(table: impl Into<String>) -> Self {
        Self {
            table: table.into(),
            region: None,
            endpoint: None,
            credentials: None,
            max_attempts: 6,
            initial_backoff: Duration::from_millis(50),
            page_bytes: PAGE_BYTES,
        }
    }
}

/// Failures of the DynamoDB view store.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// A condition failed or a concurrent transaction touched the same items: read again.
    #[error("a concurrent writer changed the customer view")]
    Conflict,
    #[error("{0}")]
    Store(String),
}

fn store_error<E, R>(what: &str, error: SdkError<E, R>) -> String
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    format!("DynamoDB {what}: {}", DisplayErrorContext(&error))
}

/// The DynamoDB adapter of the customer-view port.
pub struct DynamoViews {
    client: Client,
    table: String,
    page_bytes: usize,
    /// Wakes the publisher worker after writes it should catch up on.
    pub(crate) wake: tokio::sync::Notify,
}

impl std::fmt::Debug for DynamoViews {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoViews")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn customer_pk(id: &str) -> String {
    format!("C#{id}")
}

fn page_sk(page: usize) -> String {
    format!("P#{page:05}")
}

fn lookup_pk(kind: &str, value: &str) -> String {
    format!("L#{kind}#{value}")
}

type Item = HashMap<String, AttributeValue>;

fn get_s<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

fn get_n(item: &Item, name: &str) -> Option<i64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

fn corrupt(what: impl std::fmt::Display) -> WriteError {
    WriteError::Store(format!("corrupt customer-view item: {what}"))
}

fn from_json<T: serde::de::DeserializeOwned>(item: &Item, name: &str) -> Result<T, WriteError> {
    let text = get_s(item, name).ok_or_else(|| corrupt(format!("no {name}")))?;
    serde_json::from_str(text).map_err(|e| corrupt(format!("{name}: {e}")))
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, WriteError> {
    serde_json::to_string(value).map_err(|e| WriteError::Store(e.to_string()))
}

/// What the table holds for one customer id, as far as a writer needs to know.
#[derive(Debug, Clone, Default)]
struct Stored {
    /// `None`: no customer item.
    version: Option<i64>,
    state: String,
    pages: usize,
    incomplete: bool,
    /// `(kind, value)` of the lookup items that point at this customer.
    identifiers: BTreeSet<(String, String)>,
}

/// The table split into its kinds of items (for the consistency check and the rebuild).
#[derive(Debug, Default)]
pub struct TableContents {
    /// customer id -> (state, version, merged_into, pages)
    pub customers: HashMap<String, (String, i64, Option<String>, usize)>,
    /// (customer id, page number)
    pub pages: Vec<(String, usize)>,
    /// (kind, value, customer id)
    pub lookups: Vec<(String, String, String)>,
}

/// The item key of `pk`/`sk`.
fn key(pk: String, sk: String) -> Item {
    HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
}

/// The writes that bring one customer up to date, and its item's key and new version (an
/// oversized customer's item is marked complete with them after its last transaction).
struct Plan {
    actions: Vec<Action>,
    head: (String, i64),
    /// More than one transaction holds: the customer item is marked incomplete.
    oversized: bool,
}

impl Plan {
    fn bytes(&self) -> usize {
        self.actions.iter().map(|a| a.bytes).sum()
    }
}

fn built(error: aws_sdk_dynamodb::error::BuildError) -> WriteError {
    WriteError::Store(error.to_string())
}

/// One planned write, with the bytes it carries (for the 4 MB transaction limit).
struct Action {
    item: TransactWriteItem,
    bytes: usize,
}

impl DynamoViews {
    /// Builds the SDK client from the usual AWS configuration and the settings. Throttling
    /// and 5xx answers are retried by the SDK's standard retry (backoff with jitter).
    pub async fn connect(settings: DynamoSettings) -> Self {
        let shared =
            crate::aws::shared_config(settings.region.as_deref(), settings.credentials.as_ref())
                .await;
        let mut config = aws_sdk_dynamodb::config::Builder::from(&shared)
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(settings.max_attempts.max(1))
                    .with_initial_backoff(settings.initial_backoff),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_attempt_timeout(Duration::from_secs(5))
                    .build(),
            );
        if let Some(endpoint) = &settings.endpoint {
            config = config.endpoint_url(endpoint);
        }
        Self {
            client: Client::from_conf(config.build()),
            table: settings.table,
            page_bytes: settings.page_bytes.clamp(1, PAGE_BYTES),
            wake: tokio::sync::Notify::new(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Creates the table (on-demand billing) if it does not exist and waits until it is
    /// active. Returns whether it was created.
    pub async fn create_table_if_missing(&self) -> Result<bool, WriteError> {
        match self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
        {
            Ok(_) => return Ok(false),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) => {}
            Err(e) => return Err(WriteError::Store(store_error("DescribeTable", e))),
        }
        let attribute = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
        };
        let key_part = |name: &str, kind: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
        };
        let created = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attribute("pk").map_err(built)?)
            .attribute_definitions(attribute("sk").map_err(built)?)
            .key_schema(key_part("pk", KeyType::Hash).map_err(built)?)
            .key_schema(key_part("sk", KeyType::Range).map_err(built)?)
            .send()
            .await;
        match created {
            Ok(_) => {}
            // Another replica created it first.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_in_use_exception()) => {}
            Err(e) => return Err(WriteError::Store(store_error("CreateTable", e))),
        }
        for _ in 0..120 {
            let described = self
                .client
                .describe_table()
                .table_name(&self.table)
                .send()
                .await
                .map_err(|e| WriteError::Store(store_error("DescribeTable", e)))?;
            let active = described
                .table()
                .and_then(|t| t.table_status())
                .is_some_and(|s| s.as_str() == "ACTIVE");
            if active {
                return Ok(true);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(WriteError::Store(format!(
            "table {} did not become active",
            self.table
        )))
    }

    /// Deletes the table (tests).
    pub async fn delete_table(&self) -> Result<(), WriteError> {
        self.client
            .delete_table()
            .table_name(&self.table)
            .send()
            .await
            .map_err(|e| WriteError::Store(store_error("DeleteTable", e)))?;
        Ok(())
    }

    /// Every item under one partition key, read consistently, page after page.
    async fn partition(&self, pk: &str, projection: Option<&str>) -> Result<Vec<Item>, WriteError> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let mut query = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(pk))
                .consistent_read(true)
                .set_exclusive_start_key(start.take());
            if let Some(projection) = projection {
                query = query
                    .projection_expression(projection)
                    .set_expression_attribute_names(Some(placeholder_names(projection)));
            }
            let page = query
                .send()
                .await
                .map_err(|e| WriteError::Store(store_error("Query", e)))?;
            items.extend(page.items.unwrap_or_default());
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(items),
            }
        }
    }

    /// The customer view of `id`, following a merge to the survivor (`resolved_from` says so).
    pub async fn get(&self, id: &CustomerId) -> Result<Option<CustomerView>, WriteError> {
        let Some((view, merged_into)) = self.read_customer(id.as_str()).await? else {
            return Ok(None);
        };
        if let Some(view) = view {
            return Ok(Some(view));
        }
        // Merges flatten their chains in SQL, so a merged id names the survivor; but the
        // items of ids absorbed earlier are republished just after the merge, so for a moment
        // one may still name an absorbed id: follow a few hops.
        let mut target = merged_into;
        for _ in 0..MAX_MERGE_HOPS {
            let Some(next) = target.take() else {
                return Ok(None);
            };
            match self.read_customer(&next).await? {
                Some((Some(mut view), _)) => {
                    view.resolved_from = Some(id.clone());
                    return Ok(Some(view));
                }
                Some((None, further)) => target = further,
                None => return Ok(None),
            }
        }
        Ok(None)
    }

    /// `None`: no such customer (or deleted); `Some((Some(view), _))`: active;
    /// `Some((None, Some(target)))`: merged into `target`.
    #[allow(clippy::type_complexity)]
    async fn read_customer(
        &self,
        id: &str,
    ) -> Result<Option<(Option<CustomerView>, Option<String>)>, WriteError> {
        let items = self.partition(&customer_pk(id), None).await?;
        let Some(head) = items.iter().find(|i| get_s(i, "sk") == Some("V")) else {
            return Ok(None);
        };
        match get_s(head, "state") {
            Some("active") => {}
            Some("merged") => {
                return Ok(Some((None, get_s(head, "merged_into").map(str::to_owned))));
            }
            _ => return Ok(None),
        }
        let pages = get_n(head, "pages").unwrap_or(0) as usize;
        let mut records: Vec<MemberRecord> = Vec::new();
        let mut identifiers: Vec<IdentifierEntry> = Vec::new();
        for page in 0..pages {
            let sk = page_sk(page);
            let item = items
                .iter()
                .find(|i| get_s(i, "sk") == Some(sk.as_str()))
                .ok_or_else(|| corrupt(format!("customer {id}: page {page} missing")))?;
            records.extend(from_json::<Vec<MemberRecord>>(item, "records")?);
            identifiers.extend(from_json::<Vec<IdentifierEntry>>(item, "identifiers")?);
        }
        let time = |name: &str| -> Result<DateTime<Utc>, WriteError> {
            get_s(head, name)
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc))
                .ok_or_else(|| corrupt(format!("customer {id}: {name}")))
        };
        let customer_id =
            CustomerId::parse(id).map_err(|_| corrupt(format!("customer id {id}")))?;
        let golden: GoldenRecord = from_json(head, "golden")?;
        let enrichment: Enrichment = from_json(head, "enrichment")?;
        Ok(Some((
            Some(CustomerView {
                customer_id,
                resolved_from: None,
                golden,
                records,
                identifiers,
                enrichment,
                version: get_n(head, "version").unwrap_or(0),
                created_at: time("created_at")?,
                updated_at: time("updated_at")?,
            }),
            None,
        )))
    }

    /// The customers carrying the identifier (value normalized as at ingest), by id.
    pub async fn find(
        &self,
        kind: IdentifierKind,
        value: &str,
    ) -> Result<Vec<CustomerView>, WriteError> {
        let found = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(lookup_pk(kind.as_str(), value)))
            .consistent_read(true)
            .limit(MAX_LOOKUP_RESULTS)
            .send()
            .await
            .map_err(|e| WriteError::Store(store_error("Query", e)))?;
        let mut views: BTreeMap<String, CustomerView> = BTreeMap::new();
        for item in found.items() {
            let Some(id) = get_s(item, "customer_id") else {
                continue;
            };
            let Ok(id) = CustomerId::parse(id) else {
                continue;
            };
            let Some(mut view) = self.get(&id).await? else {
                continue;
            };
            // A lookup is only trusted when the customer really carries the identifier: an
            // interrupted oversized write may leave a stale one behind until the next rebuild.
            let carries = view
                .identifiers
                .iter()
                .any(|i| i.kind == kind && i.value == value);
            if carries {
                view.resolved_from = None;
                views.insert(view.customer_id.as_str().to_owned(), view);
            }
        }
        Ok(views.into_values().collect())
    }

    /// What the table holds for each customer, for planning writes.
    async fn stored(&self, id: &str) -> Result<Stored, WriteError> {
        let items = self
            .partition(
                &customer_pk(id),
                Some("#sk, #version, #state, #pages, #incomplete, #identifiers"),
            )
            .await?;
        let mut stored = Stored::default();
        for item in &items {
            match get_s(item, "sk") {
                Some("V") => {
                    stored.version = get_n(item, "version");
                    stored.state = get_s(item, "state").unwrap_or_default().to_owned();
                    stored.pages = get_n(item, "pages").unwrap_or(0) as usize;
                    stored.incomplete = item.contains_key("incomplete");
                }
                Some(sk) if sk.starts_with("P#") => {
                    let ids: Vec<IdentifierEntry> = from_json(item, "identifiers")?;
                    stored.identifiers.extend(
                        ids.into_iter()
                            .map(|i| (i.kind.as_str().to_owned(), i.value)),
                    );
                }
                _ => {}
            }
        }
        Ok(stored)
    }

    /// Writes the given states of customers: those that changed together (a merge, a split)
    /// in one transaction. `force` rewrites customers even when the stored version is
    /// current (rebuild). A state older than the stored one is skipped. Returns how many
    /// customers were written.
    pub async fn write(
        &self,
        states: &[(CustomerId, ViewState)],
        force: bool,
    ) -> Result<usize, WriteError> {
        // What the table holds for each customer, read concurrently (one Query each).
        let mut stored: Vec<Stored> = Vec::with_capacity(states.len());
        for chunk in states.chunks(READ_CONCURRENCY) {
            let reads: Vec<_> = chunk
                .iter()
                .map(|(id, _)| self.stored(id.as_str()))
                .collect();
            stored.extend(futures_util::future::try_join_all(reads).await?);
        }
        let mut plans: Vec<Plan> = Vec::new();
        for ((id, state), stored) in states.iter().zip(&stored) {
            if let Some(plan) = self.plan(id, state, stored, force)? {
                plans.push(plan);
            }
        }
        let written = plans.len();
        let (fitting, oversized): (Vec<Plan>, Vec<Plan>) =
            plans.into_iter().partition(|plan| !plan.oversized);
        // Pack whole customers into transactions; a customer too big for one transaction is
        // written over several, its item marked incomplete until the last one lands.
        let mut batch: Vec<TransactWriteItem> = Vec::new();
        let mut batch_bytes = 0;
        for plan in fitting {
            let bytes = plan.bytes();
            if batch.len() + plan.actions.len() > MAX_TRANSACTION_ITEMS
                || batch_bytes + bytes > MAX_TRANSACTION_BYTES
            {
                self.transact(std::mem::take(&mut batch)).await?;
                batch_bytes = 0;
            }
            batch.extend(plan.actions.into_iter().map(|a| a.item));
            batch_bytes += bytes;
        }
        if !batch.is_empty() {
            self.transact(batch).await?;
        }
        for plan in oversized {
            self.write_oversized(plan).await?;
        }
        Ok(written)
    }

    /// The writes that bring one customer from `stored` to `state`; `None`: nothing to do.
    /// The customer item's conditional put comes first; when everything does not fit one
    /// transaction, that item is marked `incomplete` (see [`Self::write_oversized`]).
    fn plan(
        &self,
        id: &CustomerId,
        state: &ViewState,
        stored: &Stored,
        force: bool,
    ) -> Result<Option<Plan>, WriteError> {
        let pk = customer_pk(id.as_str());
        // Deleted customers never come back (ids are never reissued): a stale writer that
        // read the customer before its deletion must not resurrect it.
        if stored.state == "deleted" {
            return Ok(None);
        }
        let head = |state: &str, version: i64, pages: usize| {
            let mut item = key(pk.clone(), "V".to_owned());
            item.insert("state".into(), s(state));
            item.insert("customer_id".into(), s(id.as_str()));
            item.insert("version".into(), n(version));
            item.insert("pages".into(), n(pages));
            item
        };
        let (new_version, mut head, pages, identifiers) = match state {
            ViewState::Active(view) => {
                let (pages, identifiers) = member_pages(view, self.page_bytes)?;
                let mut head = head("active", view.version, pages.len());
                head.insert("golden".into(), s(to_json(&view.golden)?));
                head.insert("enrichment".into(), s(to_json(&view.enrichment)?));
                head.insert("record_count".into(), n(view.records.len()));
                head.insert("created_at".into(), s(view.created_at.to_rfc3339()));
                head.insert("updated_at".into(), s(view.updated_at.to_rfc3339()));
                let pages: Vec<Item> = pages
                    .into_iter()
                    .enumerate()
                    .map(|(i, (records, ids))| {
                        let mut item = key(pk.clone(), page_sk(i));
                        item.insert("records".into(), s(records));
                        item.insert("identifiers".into(), s(ids));
                        item.insert("version".into(), n(view.version));
                        item
                    })
                    .collect();
                (view.version, head, pages, identifiers)
            }
            ViewState::Merged { into, version } => {
                let mut head = head("merged", *version, 0);
                head.insert("merged_into".into(), s(into.as_str()));
                (*version, head, Vec::new(), BTreeSet::new())
            }
            ViewState::Gone if stored.version.is_none() => return Ok(None),
            ViewState::Gone => (
                i64::MAX,
                head("deleted", i64::MAX, 0),
                Vec::new(),
                BTreeSet::new(),
            ),
        };
        let current = stored.version.is_some_and(|v| v >= new_version);
        if current && !force && !stored.incomplete {
            return Ok(None);
        }
        // An incomplete item (an oversized write cut short) or a rebuild rewrites every
        // lookup; otherwise only the difference is written.
        let repair = force || stored.incomplete;
        let mut rest = Vec::new();
        let page_count = pages.len();
        for page in pages {
            rest.push(self.put_action(page)?);
        }
        for page in page_count..stored.pages {
            rest.push(self.delete_action(pk.clone(), page_sk(page))?);
        }
        for (kind, value) in stored.identifiers.difference(&identifiers) {
            rest.push(self.delete_action(lookup_pk(kind, value), pk.clone())?);
        }
        for (kind, value) in &identifiers {
            if !repair && stored.identifiers.contains(&(kind.clone(), value.clone())) {
                continue;
            }
            let mut item = key(lookup_pk(kind, value), pk.clone());
            item.insert("customer_id".into(), s(id.as_str()));
            rest.push(self.put_action(item)?);
        }
        let bytes = item_bytes(&head) + rest.iter().map(|a| a.bytes).sum::<usize>();
        let oversized = 1 + rest.len() > MAX_TRANSACTION_ITEMS || bytes > MAX_TRANSACTION_BYTES;
        if oversized {
            head.insert("incomplete".into(), AttributeValue::Bool(true));
        }
        let head_bytes = item_bytes(&head);
        let put_head = Put::builder()
            .table_name(&self.table)
            .set_item(Some(head))
            .expression_attribute_names("#pk", "pk");
        let put_head = match stored.version {
            Some(seen) => put_head
                .condition_expression("attribute_exists(#pk) AND #version = :seen")
                .expression_attribute_names("#version", "version")
                .expression_attribute_values(":seen", n(seen)),
            None => put_head.condition_expression("attribute_not_exists(#pk)"),
        };
        let mut actions = vec![Action {
            item: TransactWriteItem::builder()
                .put(put_head.build().map_err(built)?)
                .build(),
            bytes: head_bytes,
        }];
        actions.extend(rest);
        Ok(Some(Plan {
            actions,
            head: (pk, new_version),
            oversized,
        }))
    }

    fn put_action(&self, item: Item) -> Result<Action, WriteError> {
        let bytes = item_bytes(&item);
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .build()
            .map_err(built)?;
        Ok(Action {
            item: TransactWriteItem::builder().put(put).build(),
            bytes,
        })
    }

    fn delete_action(&self, pk: String, sk: String) -> Result<Action, WriteError> {
        let delete = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .build()
            .map_err(built)?;
        Ok(Action {
            item: TransactWriteItem::builder().delete(delete).build(),
            bytes: 64,
        })
    }

    /// A customer whose writes do not fit one transaction: the first transaction writes its
    /// item (conditionally, marked incomplete) with as much as fits, the next ones the rest,
    /// and a last update clears the mark. A reader meanwhile sees the new item; a writer that
    /// finds the mark rewrites every lookup.
    async fn write_oversized(&self, plan: Plan) -> Result<(), WriteError> {
        let mut batch = Vec::new();
        let mut bytes = 0;
        for action in plan.actions {
            if batch.len() == MAX_TRANSACTION_ITEMS || bytes + action.bytes > MAX_TRANSACTION_BYTES
            {
                self.transact(std::mem::take(&mut batch)).await?;
                bytes = 0;
            }
            bytes += action.bytes;
            batch.push(action.item);
        }
        if !batch.is_empty() {
            self.transact(batch).await?;
        }
        let (pk, version) = plan.head;
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(pk, "V".to_owned())))
            .update_expression("REMOVE #incomplete")
            .condition_expression("#version = :v")
            .expression_attribute_names("#incomplete", "incomplete")
            .expression_attribute_names("#version", "version")
            .expression_attribute_values(":v", n(version))
            .build()
            .map_err(built)?;
        self.transact(vec![TransactWriteItem::builder().update(update).build()])
            .await
    }

    async fn transact(&self, items: Vec<TransactWriteItem>) -> Result<(), WriteError> {
        if items.is_empty() {
            return Ok(());
        }
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(error) => match error.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) => {
                    let conflict = cancelled.cancellation_reasons().iter().any(|r| {
                        matches!(
                            r.code(),
                            Some("ConditionalCheckFailed" | "TransactionConflict")
                        )
                    });
                    if conflict {
                        Err(WriteError::Conflict)
                    } else {
                        Err(WriteError::Store(store_error("TransactWriteItems", error)))
                    }
                }
                Some(TransactWriteItemsError::TransactionInProgressException(_)) => {
                    Err(WriteError::Conflict)
                }
                _ => Err(WriteError::Store(store_error("TransactWriteItems", error))),
            },
        }
    }

    /// Reads the whole table (the consistency check and the rebuild).
    pub async fn scan(&self) -> Result<TableContents, WriteError> {
        let mut contents = TableContents::default();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .projection_expression(SCANNED)
                .set_expression_attribute_names(Some(placeholder_names(SCANNED)))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| WriteError::Store(store_error("Scan", e)))?;
            for item in page.items() {
                let (Some(pk), Some(sk)) = (get_s(item, "pk"), get_s(item, "sk")) else {
                    continue;
                };
                if let Some(id) = pk.strip_prefix("C#") {
                    if sk == "V" {
                        contents.customers.insert(
                            id.to_owned(),
                            (
                                get_s(item, "state").unwrap_or_default().to_owned(),
                                get_n(item, "version").unwrap_or(0),
                                get_s(item, "merged_into").map(str::to_owned),
                                get_n(item, "pages").unwrap_or(0) as usize,
                            ),
                        );
                    } else if let Some(page) = sk.strip_prefix("P#") {
                        let page = page.parse().map_err(|_| corrupt(format!("page {sk}")))?;
                        contents.pages.push((id.to_owned(), page));
                    }
                } else if let Some(rest) = pk.strip_prefix("L#") {
                    let (kind, value) = rest
                        .split_once('#')
                        .ok_or_else(|| corrupt("lookup key without a kind"))?;
                    let id = sk.strip_prefix("C#").unwrap_or(sk);
                    contents
                        .lookups
                        .push((kind.to_owned(), value.to_owned(), id.to_owned()));
                }
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(contents),
            }
        }
    }

    /// Deletes items by key, 25 per transaction (cleanup after a rebuild).
    pub(crate) async fn delete_keys(&self, keys: Vec<(String, String)>) -> Result<(), WriteError> {
        for chunk in keys.chunks(25) {
            let items = chunk
                .iter()
                .map(|(pk, sk)| Ok(self.delete_action(pk.clone(), sk.clone())?.item))
                .collect::<Result<Vec<_>, WriteError>>()?;
            self.transact(items).await?;
        }
        Ok(())
    }

    pub(crate) fn customer_key(id: &str) -> (String, String) {
        (customer_pk(id), "V".to_owned())
    }

    pub(crate) fn page_key(id: &str, page: usize) -> (String, String) {
        (customer_pk(id), page_sk(page))
    }

    pub(crate) fn lookup_key(kind: &str, value: &str, id: &str) -> (String, String) {
        (lookup_pk(kind, value), customer_pk(id))
    }
}

/// The attributes the consistency check and the rebuild read.
const SCANNED: &str = "#pk, #sk, #state, #version, #merged_into, #pages, #customer_id";

/// `#name -> name` for every placeholder of a projection such as `#pk, #sk`. Attribute names
/// go through placeholders because several (`state`, `version`...) are DynamoDB reserved
/// words; DynamoDB refuses names the expression does not use, so exactly these are given.
fn placeholder_names(projection: &str) -> HashMap<String, String> {
    projection
        .split(',')
        .filter_map(|part| part.trim().strip_prefix('#'))
        .map(|name| (format!("#{name}"), name.to_owned()))
        .collect()
}

/// Rough size of an item (names and string/number values), for the transaction size limit.
fn item_bytes(item: &Item) -> usize {
    item.iter()
        .map(|(k, v)| {
            k.len()
                + match v {
                    AttributeValue::S(s) | AttributeValue::N(s) => s.len(),
                    _ => 8,
                }
        })
        .sum()
}

/// The member records and identifiers of a customer in pages of at most [`PAGE_BYTES`] of
/// JSON (always at least one page; a single bigger entry gets a page of its own), and the identifier set for the lookup items.
#[allow(clippy::type_complexity)]
fn member_pages(
    view: &CustomerView,
    page_bytes: usize,
) -> Result<(Vec<(String, String)>, BTreeSet<(String, String)>), WriteError> {
    let mut pages: Vec<(Vec<String>, Vec<String>)> = vec![(Vec::new(), Vec::new())];
    let mut bytes = 0;
    let mut push = |json: String, is_record: bool| {
        if bytes + json.len() > page_bytes && bytes > 0 {
            pages.push((Vec::new(), Vec::new()));
            bytes = 0;
        }
        bytes += json.len() + 1;
        if let Some(last) = pages.last_mut() {
            if is_record {
                last.0.push(json);
            } else {
                last.1.push(json);
            }
        }
    };
    for record in &view.records {
        push(to_json(record)?, true);
    }
    for identifier in &view.identifiers {
        push(to_json(identifier)?, false);
    }
    let identifiers = view
        .identifiers
        .iter()
        .map(|i| (i.kind.as_str().to_owned(), i.value.clone()))
        .collect();
    Ok((
        pages
            .into_iter()
            .map(|(r, i)| (format!("[{}]", r.join(",")), format!("[{}]", i.join(","))))
            .collect(),
        identifiers,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use c360_domain::{Enrichment, GoldenRecord, Profile, RecordInput};

    fn view(records: usize) -> CustomerView {
        let now = Utc::now();
        let members = (0..records)
            .map(|i| {
                let input: RecordInput = serde_json::from_value(serde_json::json!({
                    "source": "crm", "source_id": format!("R{i}"), "first_name": "Maria",
                    "last_name": "Garcia", "email": format!("maria{i}@example.com")
                }))
                .expect("input");
                MemberRecord {
                    record: Profile::parse(&input).expect("profile"),
                    first_seen_at: now,
                    last_changed_at: now,
                }
            })
            .collect();
        let identifiers = (0..records)
            .map(|i| IdentifierEntry {
                kind: IdentifierKind::Email,
                value: format!("maria{i}@example.com"),
                records: 1,
            })
            .collect();
        CustomerView {
            customer_id: CustomerId::from_uuid_simple("0123456789abcdef0123456789abcdef"),
            resolved_from: None,
            golden: GoldenRecord::default(),
            records: members,
            identifiers,
            enrichment: Enrichment::default(),
            version: 1,
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn pages_hold_every_record_and_identifier_within_the_size() {
        let customer = view(40);
        let (pages, identifiers) = member_pages(&customer, 1_500).expect("pages");
        assert!(pages.len() > 3, "{} pages", pages.len());
        let mut records = 0;
        let mut ids = 0;
        for (r, i) in &pages {
            // One entry may exceed the size alone; otherwise pages stay within it.
            assert!(r.len() + i.len() <= 1_500 + 600, "{}", r.len() + i.len());
            records += serde_json::from_str::<Vec<MemberRecord>>(r)
                .expect("records")
                .len();
            ids += serde_json::from_str::<Vec<IdentifierEntry>>(i)
                .expect("ids")
                .len();
        }
        assert_eq!(records, 40);
        assert_eq!(ids, 40);
        assert_eq!(identifiers.len(), 40);
    }

    #[test]
    fn a_customer_without_records_still_has_one_page() {
        let (pages, identifiers) = member_pages(&view(0), PAGE_BYTES).expect("pages");
        assert_eq!(pages, vec![("[]".to_owned(), "[]".to_owned())]);
        assert!(identifiers.is_empty());
    }
}
