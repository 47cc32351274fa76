//! What people do with the engine's decisions: the review queue, manual must-link and
//! cannot-link (and undoing them), and the explanations: a customer's graph and "who is this?"
//! for a probe record.

use std::collections::BTreeSet;

use c360_domain::{
    CustomerGraph, CustomerId, CustomerSummary, GraphEdge, GraphNode, IncoherentCustomer,
    LinkEvidence, ManualLink, ManualLinkKind, MatchCandidate, MatchResult, MatchVerdict, Profile,
    RecordKey, ReviewItem, ReviewStatus,
};
use c360_matching::{blocking, Features, Verdict};
use sqlx::{AnyConnection, Row};

use crate::error::{ServiceError, StoreError};
use crate::resolver::{
    absorb, customer_of_each, in_order, insert_links, key_from_row, load_candidates, load_record,
    now_millis, ordered, record_lock_key, records_of_customers, refresh_customer, to_json, to_time,
    Link, Resolver, Review,
};
use crate::store::{execute_json_rows, json_rows};

/// How many candidates `POST /v1/match` explains.
const MATCH_CANDIDATES: usize = 10;

fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

fn evidence_from(text: &str) -> Result<LinkEvidence, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("link evidence: {e}")))
}

/// Files the pairs the engine could not settle for `probe`. A pair already filed keeps its row
/// (and a person's decision on it).
pub(crate) async fn write_reviews(
    conn: &mut AnyConnection,
    probe: &RecordKey,
    reviews: &[Review],
    now: i64,
) -> Result<(), StoreError> {
    write_reviews_of_many(conn, [(probe, reviews)], now).await
}

/// [`write_reviews`] for many probes at once, in one statement per few thousand pairs: a bulk
/// chunk files tens of thousands.
pub(crate) async fn write_reviews_of_many<'a>(
    conn: &mut AnyConnection,
    probes: impl IntoIterator<Item = (&'a RecordKey, &'a [Review])>,
    now: i64,
) -> Result<(), StoreError> {
    let mut rows = Vec::new();
    for (probe, reviews) in probes {
        for review in reviews {
            let (a, b) = in_order(probe, &review.other);
            rows.push((
                new_id("rev"),
                a.source.as_str(),
                a.source_id.as_str(),
                b.source.as_str(),
                b.source_id.as_str(),
                review.probability,
                review.reason.as_str(),
                to_json(&review.evidence)?,
            ));
        }
    }
    if rows.is_empty() {
        return Ok(());
    }
    // `WHERE true` tells SQLite's parser that ON CONFLICT is the upsert clause, not a join's.
    let sql = format!(
        "INSERT INTO reviews (id, a_source, a_source_id, b_source, b_source_id, probability, \
         reason, evidence, status, created_at) \
         SELECT c0, c1, c2, c3, c4, CAST(c5 AS DOUBLE PRECISION), c6, c7, 'open', $2 FROM {} \
         WHERE true ON CONFLICT DO NOTHING",
        json_rows(conn, 1, 8, "v")
    );
    execute_json_rows(conn, &sql, &rows, &[now]).await
}

/// Open review items of a deleted record can no longer be decided.
pub(crate) async fn obsolete_reviews_of(
    conn: &mut AnyConnection,
    key: &RecordKey,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE reviews SET status = 'obsolete', decided_at = $3 WHERE status = 'open' \
         AND ((a_source = $1 AND a_source_id = $2) OR (b_source = $1 AND b_source_id = $2))",
    )
    .bind(key.source.as_str())
    .bind(key.source_id.as_str())
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn set_review_status(
    conn: &mut AnyConnection,
    a: &RecordKey,
    b: &RecordKey,
    status: ReviewStatus,
    now: i64,
) -> Result<(), StoreError> {
    let (x, y) = ordered(a, b);
    sqlx::query(
        "UPDATE reviews SET status = $5, decided_at = $6 WHERE status = 'open' \
         AND a_source = $1 AND a_source_id = $2 AND b_source = $3 AND b_source_id = $4",
    )
    .bind(x.source.as_str())
    .bind(x.source_id.as_str())
    .bind(y.source.as_str())
    .bind(y.source_id.as_str())
    .bind(status.as_str())
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

const MANUAL_COLUMNS: &str =
    "id, kind, a_source, a_source_id, b_source, b_source_id, note, created_at, undone_at";

fn manual_from_row(row: &sqlx::any::AnyRow) -> Result<ManualLink, StoreError> {
    let kind: String = row.try_get("kind")?;
    Ok(ManualLink {
        id: row.try_get("id")?,
        kind: ManualLinkKind::from_name(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("manual link kind {kind}")))?,
        a: key_from_row(row, 2)?,
        b: key_from_row(row, 4)?,
        note: row.try_get("note")?,
        created_at: to_time(row.try_get("created_at")?),
        undone_at: row.try_get::<Option<i64>, _>("undone_at")?.map(to_time),
    })
}

const REVIEW_COLUMNS: &str = "id, a_source, a_source_id, b_source, b_source_id, probability, \
     reason, evidence, status, created_at, decided_at";

fn review_from_row(row: &sqlx::any::AnyRow) -> Result<ReviewItem, StoreError> {
    let status: String = row.try_get("status")?;
    let evidence: String = row.try_get("evidence")?;
    Ok(ReviewItem {
        id: row.try_get("id")?,
        a: key_from_row(row, 1)?,
        b: key_from_row(row, 3)?,
        a_customer_id: None,
        b_customer_id: None,
        probability: row.try_get("probability")?,
        reason: row.try_get("reason")?,
        evidence: evidence_from(&evidence)?,
        status: ReviewStatus::from_name(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("review status {status}")))?,
        created_at: to_time(row.try_get("created_at")?),
        decided_at: row.try_get::<Option<i64>, _>("decided_at")?.map(to_time),
    })
}

impl Resolver {
    /// Customers with at least `min_records` records, largest first: a customer far larger
    /// than a person has records is usually a chain of wrong links (a shared placeholder
    /// identifier, a call-center phone) and deserves a look.
    pub async fn large_customers(
        &self,
        min_records: i64,
        limit: i64,
    ) -> Result<Vec<CustomerSummary>, ServiceError> {
        let rows = sqlx::query(
            "SELECT id, record_count, updated_at FROM customers \
             WHERE merged_into IS NULL AND record_count >= $1 \
             ORDER BY record_count DESC, id LIMIT $2",
        )
        .bind(min_records.max(1))
        .bind(limit.clamp(1, 1000))
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(CustomerSummary {
                    customer_id: crate::resolver::parse_customer_id(&row.try_get::<String, _>(0)?)?,
                    records: row.try_get(1)?,
                    updated_at: to_time(row.try_get(2)?),
                })
            })
            .collect()
    }

    /// Customers holding two records a guard rail says are different people, most recently
    /// changed first.
    pub async fn incoherent_customers(
        &self,
        limit: i64,
    ) -> Result<Vec<IncoherentCustomer>, ServiceError> {
        let rows = sqlx::query(
            "SELECT id, record_count, updated_at, incoherence FROM customers \
             WHERE incoherence IS NOT NULL AND merged_into IS NULL \
             ORDER BY updated_at DESC, id LIMIT $1",
        )
        .bind(limit.clamp(1, 1000))
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let conflict: String = row.try_get(3)?;
                Ok(IncoherentCustomer {
                    customer_id: crate::resolver::parse_customer_id(&row.try_get::<String, _>(0)?)?,
                    records: row.try_get(1)?,
                    updated_at: to_time(row.try_get(2)?),
                    conflict: serde_json::from_str(&conflict)
                        .map_err(|e| StoreError::Corrupt(format!("customer incoherence: {e}")))?,
                })
            })
            .collect()
    }

    /// Review items, newest first, with the customers their records belong to now.
    pub async fn list_reviews(
        &self,
        status: Option<ReviewStatus>,
        limit: i64,
    ) -> Result<Vec<ReviewItem>, ServiceError> {
        let mut conn = self.db.pool().acquire().await?;
        let sql = format!(
            "SELECT {REVIEW_COLUMNS} FROM reviews WHERE ($1 = '' OR status = $1) \
             ORDER BY created_at DESC, id DESC LIMIT $2"
        );
        let rows = sqlx::query(&sql)
            .bind(status.map_or("", ReviewStatus::as_str))
            .bind(limit.clamp(1, 1000))
            .fetch_all(&mut *conn)
            .await?;
        let mut items: Vec<ReviewItem> =
            rows.iter().map(review_from_row).collect::<Result<_, _>>()?;
        with_customers(&mut conn, &mut items).await?;
        Ok(items)
    }

    /// One review item, with the customers its records belong to now.
    async fn get_review(&self, id: &str) -> Result<ReviewItem, ServiceError> {
        let mut conn = self.db.pool().acquire().await?;
        let sql = format!("SELECT {REVIEW_COLUMNS} FROM reviews WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("review {id}")))?;
        let mut items = vec![review_from_row(&row)?];
        with_customers(&mut conn, &mut items).await?;
        Ok(items.remove(0))
    }

    /// A person's decision on a review item: same person (a must-link) or not (a cannot-link).
    pub async fn decide_review(
        &self,
        id: &str,
        same_person: bool,
        note: Option<String>,
    ) -> Result<ReviewItem, ServiceError> {
        let item = self.get_review(id).await?;
        if item.status != ReviewStatus::Open {
            return Err(ServiceError::Conflict(format!(
                "review {id} is {}, not open",
                item.status.as_str()
            )));
        }
        let kind = if same_person {
            ManualLinkKind::MustLink
        } else {
            ManualLinkKind::CannotLink
        };
        self.add_manual_link(kind, item.a, item.b, note).await?;
        self.get_review(id).await
    }

    /// Records a manual link and applies it: a must-link merges the two records' customers
    /// (guard rails do not apply: a person decided); a cannot-link splits them when they share
    /// a customer and keeps them apart from then on.
    pub async fn add_manual_link(
        &self,
        kind: ManualLinkKind,
        a: RecordKey,
        b: RecordKey,
        note: Option<String>,
    ) -> Result<ManualLink, ServiceError> {
        if a == b {
            return Err(c360_domain::FieldError::new("b", "must be another record than a").into());
        }
        self.retrying(|| self.try_add_manual_link(kind, &a, &b, note.clone()))
            .await
    }

    async fn try_add_manual_link(
        &self,
        kind: ManualLinkKind,
        a: &RecordKey,
        b: &RecordKey,
        note: Option<String>,
    ) -> Result<ManualLink, ServiceError> {
        let (x, y) = ordered(a, b);
        let mut write = self.db.begin_write().await?;
        self.db
            .lock_keys(&mut write, &[record_lock_key(&x), record_lock_key(&y)])
            .await?;
        for key in [&x, &y] {
            load_record(&mut write.tx, key)
                .await?
                .ok_or_else(|| ServiceError::NotFound(format!("record {key}")))?;
        }
        let sql = format!(
            "SELECT {MANUAL_COLUMNS} FROM manual_links WHERE undone_at IS NULL \
             AND a_source = $1 AND a_source_id = $2 AND b_source = $3 AND b_source_id = $4"
        );
        let existing = sqlx::query(&sql)
            .bind(x.source.as_str())
            .bind(x.source_id.as_str())
            .bind(y.source.as_str())
            .bind(y.source_id.as_str())
            .fetch_optional(&mut *write.tx)
            .await?;
        if let Some(row) = existing {
            let link = manual_from_row(&row)?;
            if link.kind == kind {
                write.tx.commit().await?;
                return Ok(link);
            }
            return Err(ServiceError::Conflict(format!(
                "{} {} exists between these records: undo it first",
                link.kind.as_str(),
                link.id
            )));
        }

        let now = now_millis();
        let link = ManualLink {
            id: new_id("lnk"),
            kind,
            a: x.clone(),
            b: y.clone(),
            note,
            created_at: to_time(now),
            undone_at: None,
        };
        sqlx::query(
            "INSERT INTO manual_links (id, kind, a_source, a_source_id, b_source, b_source_id, \
             note, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(link.id.as_str())
        .bind(kind.as_str())
        .bind(x.source.as_str())
        .bind(x.source_id.as_str())
        .bind(y.source.as_str())
        .bind(y.source_id.as_str())
        .bind(link.note.clone())
        .bind(now)
        .execute(&mut *write.tx)
        .await?;

        let customers = self
            .settle_customers(&mut write, &[x.clone(), y.clone()], &[])
            .await?;
        delete_edge(&mut write.tx, &x, &y).await?;
        match kind {
            ManualLinkKind::MustLink => {
                let edge = Link {
                    other: y.clone(),
                    evidence: LinkEvidence::Manual {
                        note: link.note.clone(),
                    },
                    strength: f64::INFINITY,
                    names_compared: true,
                };
                insert_links(&mut write.tx, &x, &[edge], now).await?;
                let mut ids = customers.iter();
                if let (Some(survivor), Some(_)) = (ids.next(), customers.iter().nth(1)) {
                    let absorbed: Vec<CustomerId> = ids.cloned().collect();
                    absorb(&mut write.tx, &absorbed, survivor, now).await?;
                    refresh_customer(&mut write.tx, survivor, &self.engine, now).await?;
                }
                set_review_status(&mut write.tx, &x, &y, ReviewStatus::Accepted, now).await?;
            }
            ManualLinkKind::CannotLink => {
                if customers.len() == 1 {
                    self.recompute(&mut write, &customers, now).await?;
                }
                set_review_status(&mut write.tx, &x, &y, ReviewStatus::Rejected, now).await?;
            }
        }
        write.tx.commit().await?;
        tracing::info!(kind = kind.as_str(), "manual link added");
        self.after_write(&[]).await;
        Ok(link)
    }

    /// Undoes a manual link: the two records' customers are recomputed from the remaining
    /// evidence (a must-link that was the only bridge splits; records a cannot-link kept apart
    /// join again where the engine links them).
    pub async fn undo_manual_link(&self, id: &str) -> Result<ManualLink, ServiceError> {
        self.retrying(|| self.try_undo_manual_link(id)).await
    }

    async fn try_undo_manual_link(&self, id: &str) -> Result<ManualLink, ServiceError> {
        let mut write = self.db.begin_write().await?;
        let sql = format!("SELECT {MANUAL_COLUMNS} FROM manual_links WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&mut *write.tx)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("manual link {id}")))?;
        let mut link = manual_from_row(&row)?;
        if link.undone_at.is_some() {
            return Err(ServiceError::Conflict(format!(
                "manual link {id} is already undone"
            )));
        }
        self.db
            .lock_keys(
                &mut write,
                &[record_lock_key(&link.a), record_lock_key(&link.b)],
            )
            .await?;
        let now = now_millis();
        sqlx::query("UPDATE manual_links SET undone_at = $1 WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(&mut *write.tx)
            .await?;
        link.undone_at = Some(to_time(now));
        if link.kind == ManualLinkKind::MustLink {
            delete_edge(&mut write.tx, &link.a, &link.b).await?;
        }
        let customers = self
            .settle_customers(&mut write, &[link.a.clone(), link.b.clone()], &[])
            .await?;
        if !customers.is_empty() {
            self.recompute(&mut write, &customers, now).await?;
        }
        write.tx.commit().await?;
        tracing::info!(kind = link.kind.as_str(), "manual link undone");
        self.after_write(&[]).await;
        Ok(link)
    }

    /// Manual links, newest first; only those touching `record` when given.
    pub async fn list_manual_links(
        &self,
        record: Option<&RecordKey>,
    ) -> Result<Vec<ManualLink>, ServiceError> {
        let mut conn = self.db.pool().acquire().await?;
        let sql = format!(
            "SELECT {MANUAL_COLUMNS} FROM manual_links WHERE $1 = '' \
             OR (a_source = $1 AND a_source_id = $2) OR (b_source = $1 AND b_source_id = $2) \
             ORDER BY created_at DESC, id DESC LIMIT 500"
        );
        let rows = sqlx::query(&sql)
            .bind(record.map_or("", |r| r.source.as_str()))
            .bind(record.map_or("", |r| r.source_id.as_str()))
            .fetch_all(&mut *conn)
            .await?;
        Ok(rows.iter().map(manual_from_row).collect::<Result<_, _>>()?)
    }

    /// Every manual link in force (not undone), oldest first: the decisions a batch run
    /// (`c360 resolve --links`) must honor. People make these by hand, so they are few enough
    /// to read at once.
    pub async fn active_manual_links(&self) -> Result<Vec<ManualLink>, ServiceError> {
        let sql = format!(
            "SELECT {MANUAL_COLUMNS} FROM manual_links WHERE undone_at IS NULL \
             ORDER BY created_at, id"
        );
        let rows = sqlx::query(&sql).fetch_all(self.db.pool()).await?;
        Ok(rows.iter().map(manual_from_row).collect::<Result<_, _>>()?)
    }

    /// A customer as a graph: its records, the links between them with their evidence, and the
    /// manual links touching them.
    pub async fn customer_graph(&self, id: &CustomerId) -> Result<CustomerGraph, ServiceError> {
        let view = self.get_customer(id).await?;
        let current = view.customer_id.clone();
        let mut conn = self.db.pool().acquire().await?;
        let members = records_of_customers(&mut conn, std::slice::from_ref(&current)).await?;
        let nodes: Vec<GraphNode> = members
            .iter()
            .map(|m| {
                let p = &m.profile;
                let name: Vec<&str> = [&p.first_name, &p.last_name]
                    .into_iter()
                    .filter_map(|n| n.as_ref().map(|n| n.as_str()))
                    .collect();
                GraphNode {
                    record: p.key(),
                    label: if name.is_empty() {
                        p.key().to_string()
                    } else {
                        name.join(" ")
                    },
                }
            })
            .collect();
        let keys: BTreeSet<RecordKey> = nodes.iter().map(|n| n.record.clone()).collect();
        let rows = sqlx::query(
            "SELECT l.a_source, l.a_source_id, l.b_source, l.b_source_id, l.evidence, l.created_at \
             FROM links l JOIN records r ON r.source = l.a_source AND r.source_id = l.a_source_id \
             WHERE r.customer_id = $1 ORDER BY l.created_at, l.a_source, l.a_source_id",
        )
        .bind(current.as_str())
        .fetch_all(&mut *conn)
        .await?;
        let mut edges = Vec::with_capacity(rows.len());
        for row in &rows {
            let (a, b) = (key_from_row(row, 0)?, key_from_row(row, 2)?);
            if !keys.contains(&b) {
                continue;
            }
            let evidence: String = row.try_get(4)?;
            edges.push(GraphEdge {
                a,
                b,
                evidence: evidence_from(&evidence)?,
                created_at: to_time(row.try_get(5)?),
            });
        }
        let mut manual_links = Vec::new();
        for chunk in keys.iter().collect::<Vec<_>>().chunks(100) {
            let list = chunk
                .iter()
                .enumerate()
                .map(|(i, _)| format!("(${}, ${})", 2 * i + 1, 2 * i + 2))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "SELECT {MANUAL_COLUMNS} FROM manual_links WHERE undone_at IS NULL \
                 AND ((a_source, a_source_id) IN ({list}) OR (b_source, b_source_id) IN ({list}))"
            );
            let mut query = sqlx::query(&sql);
            for key in chunk {
                query = query.bind(key.source.as_str()).bind(key.source_id.as_str());
            }
            for row in query.fetch_all(&mut *conn).await? {
                let link = manual_from_row(&row)?;
                if !manual_links.iter().any(|l: &ManualLink| l.id == link.id) {
                    manual_links.push(link);
                }
            }
        }
        Ok(CustomerGraph {
            customer_id: current,
            nodes,
            edges,
            manual_links,
        })
    }

    /// Scores a probe record against the store without writing anything: the best candidates,
    /// each with the engine's verdict and the field-by-field evidence.
    pub async fn match_probe(&self, probe: &Profile) -> Result<MatchResult, ServiceError> {
        let features = Features::of(probe);
        let keys = blocking::keys(&features);
        let mut conn = self.db.pool().acquire().await?;
        let candidates =
            load_candidates(&mut conn, &keys, &probe.key(), self.candidate_caps()).await?;
        let names = self.stored_names(&mut conn, &[&features]).await?;
        let compared = candidates.len();
        let mut scored: Vec<(f64, MatchCandidate)> = candidates
            .iter()
            .map(|c| {
                let decision = self
                    .engine
                    .decide(&features, &Features::of(&c.profile), &names);
                let verdict = match decision.verdict {
                    Verdict::Match => MatchVerdict::Match,
                    Verdict::Review => MatchVerdict::Review,
                    Verdict::NonMatch => MatchVerdict::NonMatch,
                };
                // Candidates a rule links first (by weight among them), as ingest links them.
                let rank = if decision.guard.is_none() {
                    decision.link_priority()
                } else {
                    decision.score.weight
                };
                let candidate = MatchCandidate {
                    record: c.profile.key(),
                    customer_id: c.customer_id.clone(),
                    verdict,
                    probability: decision.score.probability,
                    weight: (decision.score.weight * 100.0).round() / 100.0,
                    guard: decision.guard.clone(),
                    evidence: self.engine.evidence(&decision),
                };
                (rank, candidate)
            })
            .collect();
        scored.sort_by(|a, b| {
            b.0.total_cmp(&a.0)
                .then_with(|| a.1.record.cmp(&b.1.record))
        });
        let candidates: Vec<MatchCandidate> = scored
            .into_iter()
            .map(|(_, c)| c)
            .take(MATCH_CANDIDATES)
            .collect();
        let best_customer_id = candidates
            .iter()
            .find(|c| c.verdict == MatchVerdict::Match)
            .map(|c| c.customer_id.clone());
        Ok(MatchResult {
            best_customer_id,
            candidates,
            compared,
        })
    }
}

/// Fills in the customers the items' records belong to now.
async fn with_customers(
    conn: &mut AnyConnection,
    items: &mut [ReviewItem],
) -> Result<(), StoreError> {
    let keys: Vec<RecordKey> = items
        .iter()
        .flat_map(|i| [i.a.clone(), i.b.clone()])
        .collect();
    let owners = customer_of_each(conn, &keys).await?;
    for item in items {
        item.a_customer_id = owners.get(&item.a).cloned();
        item.b_customer_id = owners.get(&item.b).cloned();
    }
    Ok(())
}

/// Removes the edge between two records, whatever its evidence.
async fn delete_edge(
    conn: &mut AnyConnection,
    a: &RecordKey,
    b: &RecordKey,
) -> Result<(), StoreError> {
    let (x, y) = ordered(a, b);
    sqlx::query(
        "DELETE FROM links WHERE a_source = $1 AND a_source_id = $2 AND b_source = $3 \
         AND b_source_id = $4",
    )
    .bind(x.source.as_str())
    .bind(x.source_id.as_str())
    .bind(y.source.as_str())
    .bind(y.source_id.as_str())
    .execute(&mut *conn)
    .await?;
    Ok(())
}
