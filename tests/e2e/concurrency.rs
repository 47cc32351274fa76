//! Many writers at once against PostgreSQL, as several service replicas would write.

use c360_e2e::{Engine, TestApp};
use serde_json::json;

const TASKS: usize = 8;
const RECORDS: usize = 200;

/// 8 tasks post 200 records that all share one email: exactly one customer holds all 200, no
/// record is lost and no duplicate customer is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_sharing_an_email_make_one_customer() {
    let app = TestApp::spawn(Engine::Postgres).await;
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let client = app.client.clone();
        let url = app.url("/v1/records");
        tasks.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for i in (task..RECORDS).step_by(TASKS) {
                let body = json!({
                    "source": format!("src{}", i % 5), "source_id": format!("r-{i}"),
                    "first_name": "Sam", "email": "family@example.com",
                    "phone": format!("202555{:04}", i),
                });
                let response = client.post(&url).json(&body).send().await.unwrap();
                statuses.push(response.status().as_u16());
            }
            statuses
        }));
    }
    for task in tasks {
        let statuses = task.await.unwrap();
        assert!(statuses.iter().all(|&s| s == 201), "{statuses:?}");
    }
    assert_eq!(app.gauge("c360_records").await, RECORDS as i64);
    assert_eq!(app.gauge("c360_customers").await, 1);
    // With the view in DynamoDB, eight writers publish the same customer at once. A writer
    // whose publish fails (ten conflicts in a row with the others, or DynamoDB Local slow
    // under the whole suite's load) answers anyway and leaves the customer to the view
    // worker, which publishes every second and when woken: one full suite run read 199 of the
    // 200 records right after the writes. So the view is read until it lists every record,
    // for ten seconds at most; the SQL gauges above are exact already.
    let mut found = serde_json::Value::Null;
    for _ in 0..50 {
        let (status, body) = app.get_json("/v1/customers?email=family@example.com").await;
        assert_eq!(status, 200);
        found = body;
        let listed = found["customers"][0]["records"]
            .as_array()
            .map_or(0, Vec::len);
        if listed == RECORDS {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let customers = found["customers"].as_array().unwrap();
    assert_eq!(customers.len(), 1);
    assert_eq!(customers[0]["records"].as_array().unwrap().len(), RECORDS);
    let id = customers[0]["customer_id"].as_str().unwrap();
    for i in [0, 57, RECORDS - 1] {
        let (_, record) = app
            .get_json(&format!("/v1/records/src{}/r-{i}", i % 5))
            .await;
        assert_eq!(record["customer_id"], id);
    }
    app.stop().await;
}
