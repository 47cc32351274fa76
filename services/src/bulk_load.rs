//! Many new records resolved and written at once, for bulk uploads.
//!
//! One transaction per chunk instead of one per record: the chunk's records are compared with
//! each other and with the stored records that share a blocking key with any of them (fetched
//! in a few queries), linked with the same engine, guard rails and link order as
//! [`matching::batch`], and written with multi-row INSERTs. Stored customers are clusters
//! that can grow or merge but never split here. Records whose key is already stored, or
//! repeats within the chunk, go through the record-by-record path after the chunk, in order.
//!
//! On PostgreSQL a chunk holds an exclusive advisory lock that every record-by-record writer
//! takes in shared mode, so the chunk sees a stable store without locking thousands of keys.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use c360_domain::{CustomerId, IngestOutcome, MemberRecord, Profile, RecordKey};
use c360_matching::compare::{Field, MISSING};
use c360_matching::graph::GuardedClusters;
use c360_matching::{batch, blocking, survivorship, Features, Verdict};
use sqlx::{AnyConnection, Row};

use crate::error::{ServiceError, StoreError};
use crate::resolver::{
    absorb, apply_name_counts, cannot_links_among, customer_of_each, insert_edges, insert_records,
    key_from_row, name_changes, new_customer_id, now_millis, ordered, record_from_row,
    refresh_customer, to_json, write_index, Review, StoredRecord, LINKS_PER_CUSTOMER,
    RECORD_COLUMNS,
};
use crate::store::{pair_placeholders, placeholders, value_rows, ROWS_PER_STATEMENT};
use crate::Resolver;

impl Resolver {
    /// Resolves and stores many records; returns each one's outcome, in input order.
    pub async fn ingest_batch(
        &self,
        profiles: &[Profile],
    ) -> Result<Vec<IngestOutcome>, ServiceError> {
        let mut outcomes = vec![IngestOutcome::Unchanged; profiles.len()];
        let mut seen = HashSet::new();
        let mut fresh: Vec<usize> = Vec::new();
        let mut one_by_one: Vec<usize> = Vec::new();
        for (i, profile) in profiles.iter().enumerate() {
            if seen.insert(profile.key()) {
                fresh.push(i);
            } else {
                one_by_one.push(i);
            }
        }
        let fresh_keys: Vec<RecordKey> = fresh.iter().map(|&i| profiles[i].key()).collect();
        let stored = {
            let mut conn = self.db.pool().acquire().await?;
            customer_of_each(&mut conn, &fresh_keys).await?
        };
        let (known, fresh): (Vec<usize>, Vec<usize>) = fresh
            .into_iter()
            .partition(|&i| stored.contains_key(&profiles[i].key()));
        one_by_one.extend(known);
        one_by_one.sort_unstable();

        if !fresh.is_empty() {
            let chunk: Vec<Profile> = fresh.iter().map(|&i| profiles[i].clone()).collect();
            let chunk_outcomes = self.retrying(|| self.try_ingest_new(&chunk)).await?;
            for (&i, outcome) in fresh.iter().zip(chunk_outcomes) {
                outcomes[i] = outcome;
            }
            // A bulk load grows the store fast: the next chunks' candidate queries need fresh
            // planner statistics (PostgreSQL) to stay index look-ups, and a short WAL
            // (SQLite). Here, once the chunk's transaction has let go of the writer slot.
            self.db.note_written(chunk.len() as u64);
            if let Err(error) = self.db.maintain().await {
                tracing::warn!(error = %error, "database upkeep failed");
            }
            self.after_write(&[]).await;
            // A chunk changes thousands of customers: publish all of them before the job
            // counts the chunk as done, so the job's progress includes the view.
            if let Err(error) = self.drain_view_outbox(usize::MAX).await {
                tracing::warn!(error = %error, "customer views of a bulk chunk not published yet");
            }
        }
        for i in one_by_one {
            outcomes[i] = self.ingest(profiles[i].clone()).await?.outcome;
        }
        Ok(outcomes)
    }

    /// One transaction: resolve records none of which is stored yet, and write them.
    async fn try_ingest_new(
        &self,
        profiles: &[Profile],
    ) -> Result<Vec<IngestOutcome>, ServiceError> {
        let started = std::time::Instant::now();
        let mut write = self.db.begin_bulk_write().await?;
        let conn: &mut AnyConnection = &mut write.tx;
        let now = now_millis();
        let n = profiles.len();
        let new_features: Vec<Features> = profiles.iter().map(Features::of).collect();

        // Stored records sharing a blocking key with the chunk, blocks capped as in batch.
        let stored = stored_candidates(conn, &new_features, self.candidate_caps()).await?;
        let mut features = new_features;
        features.extend(stored.iter().map(|s| Features::of(&s.profile)));
        let keys: Vec<RecordKey> = profiles
            .iter()
            .map(Profile::key)
            .chain(stored.iter().map(|s| s.profile.key()))
            .collect();
        let index_of: HashMap<&RecordKey, usize> =
            keys.iter().enumerate().map(|(i, k)| (k, i)).collect();
        let names = self
            .stored_names(conn, &features.iter().collect::<Vec<_>>())
            .await?;
        let loaded = started.elapsed();

        // Candidate pairs with at least one new record (new records come first).
        let (max_block, max_fuzzy) = self.candidate_caps();
        let (pairs, _, _) = batch::candidate_pairs(&features, max_block, max_fuzzy);
        let engine = self.engine.clone();
        let mut links = Vec::new();
        let mut reviews: BTreeMap<usize, Vec<Review>> = BTreeMap::new();
        for (i, j) in pairs.into_iter().filter(|&(i, _)| (i as usize) < n) {
            let (i, j) = (i as usize, j as usize);
            let decision = engine.decide(&features[i], &features[j], &names);
            match decision.verdict {
                Verdict::NonMatch => {}
                Verdict::Match => links.push((
                    if decision.rule.is_some() {
                        f64::INFINITY
                    } else {
                        decision.score.weight
                    },
                    i,
                    j,
                    decision.comparison.level(Field::FirstName) != MISSING,
                    decision,
                )),
                Verdict::Review => reviews.entry(i).or_default().push(Review {
                    other: keys[j].clone(),
                    probability: decision.score.probability,
                    reason: decision
                        .guard
                        .clone()
                        .unwrap_or_else(|| "possible_match".to_owned()),
                    evidence: engine.evidence(&decision),
                }),
            }
        }
        // Strongest first; ties by the records' keys, as the batch resolver orders them.
        links.sort_by(|a, b| {
            b.0.total_cmp(&a.0)
                .then_with(|| ordered(&keys[a.1], &keys[a.2]).cmp(&ordered(&keys[b.1], &keys[b.2])))
        });

        let decided = started.elapsed();
        // Stored customers start as clusters of their own records.
        let mut clusters = GuardedClusters::new(keys.len());
        let mut first_of: HashMap<&CustomerId, usize> = HashMap::new();
        for (s, record) in stored.iter().enumerate() {
            let idx = n + s;
            if let Some(&first) = first_of.get(&record.customer_id) {
                let _ = clusters.union_unless(first, idx, |_, _| false);
            } else {
                first_of.insert(&record.customer_id, idx);
            }
        }
        let never: HashSet<(usize, usize)> = cannot_links_among(conn, &keys[n..])
            .await?
            .into_iter()
            .filter_map(|(a, b)| Some((*index_of.get(&a)?, *index_of.get(&b)?)))
            .flat_map(|(a, b)| [(a, b), (b, a)])
            .collect();
        let mut written_links: Vec<(RecordKey, RecordKey, String)> = Vec::new();
        let mut per_pair_customer: HashMap<(usize, usize), usize> = HashMap::new();
        for (_, i, j, names_compared, decision) in &links {
            let merged = clusters.union_unless(*i, *j, |x, y| {
                never.contains(&(x, y))
                    || engine
                        .conflict(&features[x], &features[y], *names_compared)
                        .is_some()
            });
            match merged {
                Ok(()) => {
                    // A few links per (new record, other side's cluster) so that deleting one
                    // record rarely disconnects the rest, as record-by-record ingest keeps.
                    let side = clusters.find(*j);
                    let count = per_pair_customer.entry((*i, side)).or_default();
                    *count += 1;
                    if *count <= LINKS_PER_CUSTOMER {
                        written_links.push((
                            keys[*i].clone(),
                            keys[*j].clone(),
                            to_json(&engine.evidence(decision))?,
                        ));
                    }
                }
                Err((x, y)) => {
                    let reason = if never.contains(&(x, y)) {
                        "cannot_link".to_owned()
                    } else {
                        engine
                            .conflict(&features[x], &features[y], *names_compared)
                            .unwrap_or_else(|| "guard_rail".to_owned())
                    };
                    reviews.entry(*i).or_default().push(Review {
                        other: keys[*j].clone(),
                        probability: 1.0,
                        reason,
                        evidence: engine.evidence(decision),
                    });
                }
            }
        }

        // Each cluster with new records becomes a customer: new, joined, or merged.
        let labels = clusters.labels();
        let mut groups: BTreeMap<u32, (Vec<usize>, BTreeSet<CustomerId>)> = BTreeMap::new();
        for (idx, &label) in labels.iter().enumerate() {
            let entry = groups.entry(label).or_default();
            if idx < n {
                entry.0.push(idx);
            } else {
                entry.1.insert(stored[idx - n].customer_id.clone());
            }
        }
        let mut outcomes = vec![IngestOutcome::JoinedCustomer; n];
        let mut customer_of = vec![None; n];
        let mut created: Vec<(CustomerId, Vec<usize>)> = Vec::new();
        let mut grown: Vec<CustomerId> = Vec::new();
        for (members, customers) in groups.into_values() {
            let Some(&first) = members.first() else {
                continue; // a stored customer no new record joined
            };
            let customer = match customers.iter().next() {
                None => {
                    outcomes[first] = IngestOutcome::CreatedCustomer;
                    let id = new_customer_id();
                    created.push((id.clone(), members.clone()));
                    id
                }
                Some(survivor) => {
                    // The oldest customer survives: ids are time-ordered.
                    let absorbed: Vec<CustomerId> = customers.iter().skip(1).cloned().collect();
                    if !absorbed.is_empty() {
                        outcomes[first] = IngestOutcome::MergedCustomers;
                        absorb(conn, &absorbed, survivor, now).await?;
                    }
                    grown.push(survivor.clone());
                    survivor.clone()
                }
            };
            for &m in &members {
                customer_of[m] = Some(customer.clone());
            }
        }

        let linked = started.elapsed();
        insert_new_customers(conn, profiles, &created, self.survivorship(), now).await?;
        let mut rows = Vec::with_capacity(n);
        for (profile, customer) in profiles.iter().zip(&customer_of) {
            let customer = customer
                .as_ref()
                .ok_or_else(|| StoreError::Corrupt("a new record without a customer".into()))?;
            rows.push((profile, customer, now));
        }
        insert_records(conn, &rows, now).await?;
        let indexed: Vec<(&Profile, &Features)> = profiles.iter().zip(&features[..n]).collect();
        write_index(conn, &indexed).await?;
        insert_edges(conn, &written_links, now).await?;
        let inserted = started.elapsed();
        for customer in &grown {
            refresh_customer(conn, customer, &self.engine, now).await?;
        }
        for (i, items) in &reviews {
            crate::curation::write_reviews(conn, &keys[*i], items, now).await?;
        }
        // Name counts inside the chunk's transaction: the chunk holds the store alone anyway.
        let names = features[..n]
            .iter()
            .flat_map(|f| name_changes(f, 1))
            .collect();
        apply_name_counts(conn, names).await?;
        write.tx.commit().await?;
        tracing::debug!(
            records = n,
            candidates = stored.len(),
            grown = grown.len(),
            loaded_ms = loaded.as_millis() as u64,
            decided_ms = (decided - loaded).as_millis() as u64,
            linked_ms = (linked - decided).as_millis() as u64,
            inserted_ms = (inserted - linked).as_millis() as u64,
            refreshed_ms = (started.elapsed() - inserted).as_millis() as u64,
            "bulk chunk written"
        );

        Ok(outcomes)
    }
}

/// Stored records sharing a blocking key with any of `features`; keys whose stored block is
/// larger than its cap are skipped, as the batch resolver skips oversized blocks.
async fn stored_candidates(
    conn: &mut AnyConnection,
    features: &[Features],
    (max_block, max_fuzzy): (usize, usize),
) -> Result<Vec<StoredRecord>, StoreError> {
    let keys: BTreeSet<String> = features.iter().flat_map(blocking::keys).collect();
    let keys: Vec<String> = keys.into_iter().collect();
    let mut blocks: HashMap<String, Vec<RecordKey>> = HashMap::new();
    for chunk in keys.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "SELECT key, source, source_id FROM blocking_keys WHERE key IN ({})",
            placeholders(1, chunk.len())
        );
        let mut query = sqlx::query(&sql);
        for key in chunk {
            query = query.bind(key.as_str());
        }
        for row in query.fetch_all(&mut *conn).await? {
            blocks
                .entry(row.try_get(0)?)
                .or_default()
                .push(key_from_row(&row, 1)?);
        }
    }
    let mut wanted: BTreeSet<RecordKey> = BTreeSet::new();
    for (key, members) in blocks {
        let cap = if blocking::is_identifier_key(&key) {
            max_block
        } else {
            max_fuzzy
        };
        if members.len() <= cap {
            wanted.extend(members);
        }
    }
    let wanted: Vec<RecordKey> = wanted.into_iter().collect();
    let mut stored = Vec::with_capacity(wanted.len());
    for chunk in wanted.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "SELECT {RECORD_COLUMNS} FROM records r WHERE (r.source, r.source_id) IN ({})",
            pair_placeholders(1, chunk.len())
        );
        let mut query = sqlx::query(&sql);
        for key in chunk {
            query = query.bind(key.source.as_str()).bind(key.source_id.as_str());
        }
        for row in query.fetch_all(&mut *conn).await? {
            stored.push(record_from_row(&row)?);
        }
    }
    Ok(stored)
}

async fn insert_new_customers(
    conn: &mut AnyConnection,
    profiles: &[Profile],
    created: &[(CustomerId, Vec<usize>)],
    rules: &survivorship::SurvivorshipConfig,
    now: i64,
) -> Result<(), StoreError> {
    for chunk in created.chunks(ROWS_PER_STATEMENT / 2) {
        let sql = format!(
            "INSERT INTO customers (id, golden, record_count, version, created_at, updated_at, \
             enrichment_key, enrichment_pending) VALUES {}",
            value_rows(chunk.len(), 8)
        );
        let mut query = sqlx::query(&sql);
        for (id, members) in chunk {
            let members: Vec<MemberRecord> = members
                .iter()
                .map(|&m| MemberRecord {
                    record: profiles[m].clone(),
                    first_seen_at: crate::resolver::to_time(now),
                    last_changed_at: crate::resolver::to_time(now),
                })
                .collect();
            let golden = survivorship::golden_record(&members, rules);
            let address_key = golden
                .address
                .as_ref()
                .and_then(|a| crate::enrich::address_key(&a.value));
            let pending = i64::from(address_key.is_some());
            query = query
                .bind(id.as_str().to_owned())
                .bind(to_json(&golden)?)
                .bind(members.len() as i64)
                .bind(1i64)
                .bind(now)
                .bind(now)
                .bind(address_key)
                .bind(pending);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}
