//! Resolution through the real service: re-ingesting the same records changes nothing, and the
//! partition into customers depends on the order of arrival only within a bound.

use std::collections::{BTreeMap, BTreeSet};

use c360_e2e::{Engine, TestApp};
use c360_services::synth;
use serde_json::Value;

fn bodies(records: usize, seed: u64) -> Vec<Value> {
    synth::generate(records, seed)
        .into_iter()
        .map(|r| serde_json::to_value(&r.input).expect("record as JSON"))
        .collect()
}

/// Ingests the records in order; returns each record's customer.
async fn ingest_all(app: &TestApp, records: &[Value]) -> BTreeMap<String, String> {
    let mut assignment = BTreeMap::new();
    for record in records {
        let (status, answer) = app.ingest(record).await;
        assert!(status == 200 || status == 201, "{status}: {answer}");
        let key = format!(
            "{}/{}",
            record["source"].as_str().unwrap(),
            record["source_id"].as_str().unwrap()
        );
        assignment.insert(key, answer["customer_id"].as_str().unwrap().to_owned());
    }
    assignment
}

/// The final partition, read back from the store (merges after a record arrived move it).
async fn partition(app: &TestApp, records: &[Value]) -> BTreeSet<BTreeSet<String>> {
    let mut groups: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for record in records {
        let key = format!(
            "{}/{}",
            record["source"].as_str().unwrap(),
            record["source_id"].as_str().unwrap()
        );
        let (_, stored) = app.get_json(&format!("/v1/records/{key}")).await;
        groups
            .entry(stored["customer_id"].as_str().unwrap().to_owned())
            .or_default()
            .insert(key);
    }
    groups.into_values().collect()
}

fn same_customer_pairs(partition: &BTreeSet<BTreeSet<String>>) -> BTreeSet<(String, String)> {
    let mut pairs = BTreeSet::new();
    for group in partition {
        let members: Vec<&String> = group.iter().collect();
        for (i, a) in members.iter().enumerate() {
            for b in &members[i + 1..] {
                pairs.insert(((*a).clone(), (*b).clone()));
            }
        }
    }
    pairs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reingesting_the_same_records_changes_nothing() {
    let app = TestApp::spawn(Engine::Sqlite).await;
    let records = bodies(400, 11);
    ingest_all(&app, &records).await;
    let before = partition(&app, &records).await;
    let customers = app.gauge("c360_customers").await;
    for record in &records {
        let (status, answer) = app.ingest(record).await;
        assert_eq!(
            (status, answer["outcome"].as_str()),
            (200, Some("unchanged")),
            "{record}"
        );
    }
    assert_eq!(partition(&app, &records).await, before);
    assert_eq!(app.gauge("c360_customers").await, customers);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arrival_order_changes_few_links() {
    let records = bodies(400, 12);
    let forward = TestApp::spawn(Engine::Sqlite).await;
    ingest_all(&forward, &records).await;
    let a = partition(&forward, &records).await;
    forward.stop().await;

    let mut reversed = records.clone();
    reversed.reverse();
    let backward = TestApp::spawn(Engine::Sqlite).await;
    ingest_all(&backward, &reversed).await;
    let b = partition(&backward, &records).await;
    backward.stop().await;

    let (pa, pb) = (same_customer_pairs(&a), same_customer_pairs(&b));
    let differing = pa.symmetric_difference(&pb).count();
    let total = pa.union(&pb).count().max(1);
    eprintln!("{differing} of {total} same-customer pairs depend on arrival order");
    // Order can matter only where guard rails or candidate caps cut a chain of links; the
    // README states the bound this test holds.
    assert!(
        differing * 100 <= total * 2,
        "{differing} of {total} pairs differ between arrival orders"
    );
}
