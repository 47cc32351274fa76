//! Graceful shutdown: a request in flight when the server is told to stop still gets its
//! answer, and the server then stops accepting connections.

use std::time::Duration;

use c360_e2e::{Engine, TestApp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_requests_finish_after_shutdown_starts() {
    let app = TestApp::spawn(Engine::Sqlite).await;
    let addr = app.addr;
    let body = r#"{"source": "crm", "source_id": "slow-1", "email": "slow@example.com"}"#;
    let (head, tail) = body.split_at(20);

    // Send the headers and half of the body, so the request is in flight.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST /v1/records HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{head}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let stopping = tokio::spawn(app.stop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !stopping.is_finished(),
        "shutdown waits for the request in flight"
    );

    stream.write_all(tail.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    assert!(answer.contains("created_customer"), "{answer}");

    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("shutdown completes once the request is answered")
        .unwrap();
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no new connections after shutdown"
    );
}
