//! No raw PII in any log line: ingest, look up and fail with personal data while every log
//! line of the process is captured, then search the capture.

use std::io::Write;
use std::sync::{Arc, Mutex};

use c360_e2e::{Engine, TestApp};
use serde_json::json;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_carry_no_raw_email_phone_or_name() {
    let capture = Capture::default();
    let writer = capture.clone();
    tracing_subscriber::fmt()
        .with_env_filter("debug")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let app = TestApp::spawn(Engine::Sqlite).await;
    let (status, _) = app
        .ingest(&json!({
            "source": "crm", "source_id": "pii-1", "first_name": "Zebediah", "last_name": "Quixotic",
            "email": "zebediah.quixotic@example.com", "phone": "(202) 555-0177",
            "address_line1": "1600 Pennsylvania Avenue NW", "postal_code": "20500"
        }))
        .await;
    assert_eq!(status, 201);
    app.get_json("/v1/customers?email=zebediah.quixotic@example.com")
        .await;
    app.get_json("/v1/customers?phone=2025550177").await;
    let (status, _) = app
        .ingest(&json!({"source": "crm", "source_id": "pii-2", "email": "zebediah.quixotic@", "phone": "555-ZEBEDIAH"}))
        .await;
    assert_eq!(status, 422);
    app.stop().await;

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("request"), "the capture works: {logs}");
    for secret in [
        "zebediah",
        "Zebediah",
        "Quixotic",
        "2025550177",
        "555-0177",
        "202) 555",
        "Pennsylvania",
    ] {
        assert!(!logs.contains(secret), "log leaks {secret}:\n{logs}");
    }
}
