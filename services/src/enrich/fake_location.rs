//! A local HTTP server that speaks the REST shape of Amazon Location Service's
//! `SearchPlaceIndexForText` (request path and JSON, response JSON, error headers), so the real
//! SDK client can be tested without AWS. Failures are scripted per test.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    pub path: String,
    pub host: String,
    pub authorization: String,
    pub body: String,
}

#[derive(Default)]
struct Script {
    next_failures: VecDeque<u16>,
    always: Option<u16>,
    seen: Vec<SeenRequest>,
}

pub struct FakeLocation {
    port: u16,
    script: Arc<Mutex<Script>>,
}

impl FakeLocation {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let script = Arc::new(Mutex::new(Script::default()));
        let shared = script.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let script = shared.clone();
                tokio::spawn(async move {
                    let _ = serve(stream, script).await;
                });
            }
        });
        Self { port, script }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The next requests fail with these statuses, in order.
    pub fn fail_next(&self, statuses: &[u16]) {
        self.lock().next_failures.extend(statuses);
    }

    /// Every request fails with this status until [`Self::recover`].
    pub fn fail_always(&self, status: u16) {
        self.lock().always = Some(status);
    }

    pub fn recover(&self) {
        let mut script = self.lock();
        script.always = None;
        script.next_failures.clear();
    }

    pub fn requests(&self) -> Vec<SeenRequest> {
        self.lock().seen.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Script> {
        self.script.lock().unwrap_or_else(|p| p.into_inner())
    }
}

async fn serve(mut stream: TcpStream, script: Arc<Mutex<Script>>) -> std::io::Result<()> {
    loop {
        let mut buffer = Vec::new();
        let header_end = loop {
            if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buffer.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buffer[..header_end]).to_string();
        let header = |name: &str| {
            head.lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.trim()
                        .eq_ignore_ascii_case(name)
                        .then(|| v.trim().to_owned())
                })
                .unwrap_or_default()
        };
        let length: usize = header("content-length").parse().unwrap_or(0);
        while buffer.len() < header_end + length {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buffer.extend_from_slice(&chunk[..n]);
        }
        let body = String::from_utf8_lossy(&buffer[header_end..header_end + length]).to_string();
        let path = head
            .lines()
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .unwrap_or("")
            .to_owned();
        let seen = SeenRequest {
            path,
            host: header("host"),
            authorization: header("authorization"),
            body: body.clone(),
        };
        let failure = {
            let mut script = script.lock().unwrap_or_else(|p| p.into_inner());
            script.seen.push(seen);
            script.next_failures.pop_front().or(script.always)
        };
        let (status, error_type, payload) = match failure {
            Some(429) => (
                429,
                Some("ThrottlingException"),
                r#"{"message":"Rate exceeded"}"#.to_owned(),
            ),
            Some(400) => (
                400,
                Some("ValidationException"),
                r#"{"message":"Text is not valid","Reason":"Other","FieldList":[]}"#.to_owned(),
            ),
            Some(500) => (
                500,
                Some("InternalServerException"),
                r#"{"message":"internal"}"#.to_owned(),
            ),
            Some(code) => (code, None, r#"{"message":"unavailable"}"#.to_owned()),
            None => (200, None, answer(&body)),
        };
        let mut response = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
            payload.len()
        );
        if let Some(kind) = error_type {
            response.push_str(&format!("x-amzn-errortype: {kind}\r\n"));
        }
        response.push_str("\r\n");
        response.push_str(&payload);
        stream.write_all(response.as_bytes()).await?;
    }
}

/// A successful answer: the DC address point of 701 E St NE for any street address, no
/// result for addresses starting with "1 Nowhere".
fn answer(request: &str) -> String {
    let request: serde_json::Value = serde_json::from_str(request).unwrap_or_default();
    let text = request["Text"].as_str().unwrap_or("");
    let results = if text.starts_with("1 Nowhere") {
        serde_json::json!([])
    } else {
        serde_json::json!([{
            "Place": {
                "Label": "701 E St NE, Washington, DC, 20002, USA",
                "Geometry": {"Point": [-76.9959816, 38.8959557]},
                "AddressNumber": "701",
                "Street": "E St NE",
                "Municipality": "Washington",
                "Region": "District of Columbia",
                "PostalCode": "20002",
                "Country": "USA",
                "Interpolated": false
            },
            "Relevance": 1.0
        }])
    };
    serde_json::json!({
        "Summary": {"Text": text, "DataSource": "Esri", "MaxResults": 1, "FilterCountries": ["USA"]},
        "Results": results
    })
    .to_string()
}
