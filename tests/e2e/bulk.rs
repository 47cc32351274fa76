//! Bulk uploads end to end: a file with broken rows through the HTTP API, the job watched to
//! the end, rejected rows reported by line, the good rows stored, the exports; file-level
//! errors before anything is stored; a job interrupted by a restart resumes without losing or
//! double-counting a row.

use std::time::Duration;

use c360_e2e::{on_both_engines, Engine, TestApp};
use serde_json::{json, Value};

on_both_engines!(
    a_csv_with_broken_rows_stores_the_good_ones,
    ndjson_and_multipart_uploads,
    file_level_errors_store_nothing,
    an_interrupted_job_resumes_after_a_restart,
    a_job_that_keeps_stopping_is_marked_failed_and_the_next_one_runs,
    an_uploaded_record_joins_a_customer_only_if_every_member_agrees,
    an_update_or_a_delete_unfiles_exactly_the_records_blocking_keys,
    a_batch_sent_again_updates_what_changed_and_adds_the_rest,
    chunks_resolved_against_the_records_held_in_memory_store_the_same_customers,
    a_store_indexed_under_key_texts_is_filed_again_under_hashes_at_start,
);

/// Batch resolution (`c360 resolve`) and a bulk upload of the same file give the same
/// partition into customers, within the bound the README states: uploaded in one chunk, and
/// in six, each resolved while the one before it is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_and_batch_resolution_agree() {
    use std::collections::{BTreeMap, BTreeSet};

    let records = c360_services::synth::generate(600, 13);
    let mut body = Vec::new();
    for r in &records {
        serde_json::to_writer(&mut body, &r.input).unwrap();
        body.push(b'\n');
    }
    let features: Vec<c360_matching::Features> = records
        .iter()
        .map(|r| c360_matching::Features::of(&c360_domain::Profile::parse(&r.input).unwrap()))
        .collect();
    let batch = c360_matching::batch::resolve(&c360_matching::Engine::shipped(), &features);
    let key = |r: &c360_services::synth::SyntheticRecord| {
        format!(
            "{}/{}",
            r.input.source.as_deref().unwrap(),
            r.input.source_id.as_deref().unwrap()
        )
    };
    let pairs = |same: &dyn Fn(usize, usize) -> bool| {
        let mut out = BTreeSet::new();
        for i in 0..records.len() {
            for j in i + 1..records.len() {
                if same(i, j) {
                    out.insert((key(&records[i]), key(&records[j])));
                }
            }
        }
        out
    };
    let by_batch = pairs(&|i, j| batch.customer[i] == batch.customer[j]);

    for chunk_rows in [None, Some(100)] {
        let app = TestApp::spawn_with(Engine::Sqlite, |c| {
            if let Some(rows) = chunk_rows {
                c.bulk_chunk_rows = rows;
                c.bulk_max_chunk_rows = rows;
                c.bulk_first_chunk_rows = rows;
            }
        })
        .await;
        let (status, job) = upload(&app, "application/x-ndjson", body.clone()).await;
        assert_eq!(status, 202, "{job}");
        let job = finished(&app, &job).await;
        assert_eq!(job["rejected"], 0, "{job}");
        assert_eq!(job["accepted"], records.len(), "{job}");
        let export = app.get_text("/v1/exports/assignments").await;
        let mut uploaded: BTreeMap<String, String> = BTreeMap::new();
        for line in export.lines().skip(1) {
            let (source, id, customer) = assignment(line);
            uploaded.insert(format!("{source}/{id}"), customer.to_owned());
        }
        app.stop().await;
        assert_eq!(uploaded.len(), records.len());

        let by_upload = pairs(&|i, j| uploaded[&key(&records[i])] == uploaded[&key(&records[j])]);
        let differing = by_upload.symmetric_difference(&by_batch).count();
        let total = by_upload.union(&by_batch).count().max(1);
        let chunks = chunk_rows.map_or("one chunk".to_owned(), |rows| format!("{rows}-row chunks"));
        eprintln!(
            "{chunks}: {differing} of {total} same-customer pairs differ between upload and batch"
        );
        assert!(
            differing * 100 <= total * 3,
            "{chunks}: {differing} of {total} pairs differ between the upload and c360 resolve"
        );
    }
}

/// A stored customer is joined whole or not at all: the guard rails check the new record
/// against every member, also those that share no blocking key with it (and so were no
/// candidates). Here an anonymous app record holds one loyalty card, and a shop record with
/// another card matches the customer's web record by phone and surname: two cards are two
/// people, so the shop record gets a customer of its own and a review, and no customer holds
/// both cards.
async fn an_uploaded_record_joins_a_customer_only_if_every_member_agrees(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let header = "source,source_id,first_name,last_name,phone,loyalty_id,device_id";
    let first = format!(
        "{header}\nmobile,app-1,,,,LOY-1001,dev-77\nweb,w-1,John,Smith,+1 212 555 0143,,dev-77\n"
    );
    let (status, job) = upload(&app, "text/csv", first.into_bytes()).await;
    assert_eq!(status, 202, "{job}");
    assert_eq!(finished(&app, &job).await["accepted"], 2);
    let (_, app_record) = app.get_json("/v1/records/mobile/app-1").await;
    let (_, web) = app.get_json("/v1/records/web/w-1").await;
    assert_eq!(
        app_record["customer_id"], web["customer_id"],
        "one device, one customer"
    );

    let second = format!("{header}\npos,p-1,John,Smith,(212) 555-0143,LOY-2002,\n");
    let (status, job) = upload(&app, "text/csv", second.into_bytes()).await;
    assert_eq!(status, 202, "{job}");
    assert_eq!(finished(&app, &job).await["accepted"], 1);
    let (_, shop) = app.get_json("/v1/records/pos/p-1").await;
    assert_ne!(
        shop["customer_id"], web["customer_id"],
        "a second loyalty card keeps the shop record out"
    );
    let (_, report) = app.get_json("/v1/reports/incoherent-customers").await;
    assert_eq!(report["customers"], json!([]), "{report}");
    let (_, queue) = app.get_json("/v1/reviews").await;
    let reasons: Vec<&Value> = queue["reviews"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["reason"])
        .collect();
    assert!(
        reasons.contains(&&json!("conflicting_loyalty_ids")),
        "the refused link waits for review: {queue}"
    );
    app.stop().await;
}

const HEADER: &str =
    "source,source_id,first_name,last_name,email,phone,date_of_birth,city,postal_code,updated_at";

/// `n` distinct people, one CSV row each (CRLF line ends).
fn good_rows(n: usize, first_line: usize) -> Vec<(usize, String)> {
    (0..n)
        .map(|i| {
            (
                first_line + i,
                format!(
                    "crm,C{i},Person{i},Family{},p{i}@example.com,,19{:02}-0{}-1{},Springfield,627{:02},",
                    i % 97,
                    i % 90 + 10,
                    i % 9 + 1,
                    i % 9,
                    i % 100
                ),
            )
        })
        .collect()
}

/// A line of an assignments CSV: source, source id, customer id.
fn assignment(line: &str) -> (&str, &str, &str) {
    let mut parts = line.split(',');
    let mut next = || parts.next().expect("three columns");
    (next(), next(), next())
}

async fn upload(app: &TestApp, media: &str, body: Vec<u8>) -> (u16, Value) {
    let response = app
        .client
        .post(app.url("/v1/bulk"))
        .header("content-type", media)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    if status == 202 {
        let location = response.headers()["location"].to_str().unwrap().to_owned();
        let job: Value = response.json().await.unwrap();
        assert_eq!(
            location,
            format!("/v1/jobs/{}", job["job_id"].as_str().unwrap())
        );
        return (status, job);
    }
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Polls the job until it is completed or failed.
async fn finished(app: &TestApp, job: &Value) -> Value {
    let path = format!("/v1/jobs/{}", job["job_id"].as_str().unwrap());
    for _ in 0..600 {
        let (status, job) = app.get_json(&path).await;
        assert_eq!(status, 200, "{job}");
        if job["state"] == "completed" || job["state"] == "failed" {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("job did not finish: {path}");
}

async fn a_csv_with_broken_rows_stores_the_good_ones(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    // A BOM, CRLF line ends, a quoted newline, and broken rows among 200 good ones.
    let mut body = b"\xEF\xBB\xBF".to_vec();
    body.extend_from_slice(format!("{HEADER}\r\n").as_bytes());
    let mut lines = 1;
    for (i, (_, row)) in good_rows(200, 2).into_iter().enumerate() {
        body.extend_from_slice(row.as_bytes());
        body.extend_from_slice(b"\r\n");
        lines += 1;
        match i {
            10 => body.extend_from_slice(b"crm,BAD1,Ann,Lee,not-an-email,,,,,\r\n"), // invalid value
            20 => body.extend_from_slice(b"crm,BAD2,too,few\r\n"),                   // ragged
            30 => body.extend_from_slice(b"crm,BAD3,Jos\xE9,Lee,j@example.com,,,,,\r\n"), // not UTF-8
            40 => body.extend_from_slice(b"crm,Q1,\"Mary\r\nAnn\",Quote,mq@example.com,,,,,\r\n"), // quoted newline: one row, but a name may not hold a line break
            45 => body
                .extend_from_slice(b"crm,Q2,\"Ann, Marie\",\"O\"\"Neil\",am@example.com,,,,,\r\n"), // quoted comma and quote
            50 => body.extend_from_slice(b",BAD4,No,Source,ns@example.com,,,,,\r\n"), // missing source
            60 => {
                // A 10 MB line: one over-long field, rejected on its own.
                body.extend_from_slice(b"crm,BAD5,");
                body.extend(std::iter::repeat_n(b'x', 10 * 1024 * 1024));
                body.extend_from_slice(b",Long,long@example.com,,,,,\r\n");
            }
            _ => continue,
        }
        lines += if i == 40 { 2 } else { 1 };
    }
    assert!(lines > 200);
    let (status, job) = upload(&app, "text/csv", body).await;
    assert_eq!(status, 202, "{job}");
    assert_eq!(job["format"], "csv");
    let job = finished(&app, &job).await;
    assert_eq!(job["state"], "completed", "{job}");
    assert_eq!(job["rows_read"], 207);
    assert_eq!(
        job["accepted"], 201,
        "200 good rows and the quoted comma: {job}"
    );
    assert_eq!(job["rejected"], 6);
    // These rows share no identifier, so no row bridges two customers: every customer the
    // store holds was created by the job.
    assert_eq!(job["customers_merged"], 0, "{job}");
    assert_eq!(
        job["customers_created"].as_i64().unwrap(),
        app.gauge("c360_customers").await,
        "{job}"
    );
    assert_eq!(job["bytes_read"], job["bytes_total"]);

    let (status, errors) = app
        .get_json(&format!(
            "/v1/jobs/{}/errors",
            job["job_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(status, 200);
    let errors = errors["errors"].as_array().unwrap().clone();
    let fields: Vec<&str> = errors
        .iter()
        .map(|e| e["field"].as_str().unwrap_or("-"))
        .collect();
    assert_eq!(
        fields,
        ["email", "-", "-", "first_name", "source", "first_name"],
        "{errors:?}"
    );
    // Line numbers count the header as line 1 and the quoted newline as two lines.
    assert_eq!(errors[0]["line"], 13);
    assert_eq!(errors[3]["line"], 46);
    assert_eq!(errors[4]["line"], 59);
    assert!(errors[2]["reason"].as_str().unwrap().contains("UTF-8"));
    let paged = app
        .get_json(&format!(
            "/v1/jobs/{}/errors?after_line={}&limit=1",
            job["job_id"].as_str().unwrap(),
            errors[0]["line"]
        ))
        .await
        .1;
    assert_eq!(paged["errors"][0], errors[1]);

    let (_, record) = app.get_json("/v1/records/crm/Q2").await;
    assert_eq!(record["record"]["first_name"], "Ann, Marie", "{record}");
    assert_eq!(record["record"]["last_name"], "O\"Neil", "{record}");
    assert_eq!(app.gauge("c360_records").await, 201);

    // The exports: one assignment per stored record; one golden record per customer.
    let csv = app
        .client
        .get(app.url("/v1/exports/assignments"))
        .send()
        .await
        .unwrap();
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    let csv = csv.text().await.unwrap();
    let mut rows = csv.lines();
    assert_eq!(rows.next(), Some("source,source_id,customer_id"));
    assert_eq!(rows.count(), 201);
    let ndjson = app.get_text("/v1/exports/customers").await;
    let customers: Vec<Value> = ndjson
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(customers.len() as i64, app.gauge("c360_customers").await);
    assert!(customers[0]["golden"].is_object() && customers[0]["enrichment"].is_object());
    let (_, list) = app.get_json("/v1/jobs").await;
    assert_eq!(list["jobs"][0]["job_id"], job["job_id"]);
    app.stop().await;
}

async fn ndjson_and_multipart_uploads(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let body = concat!(
        "{\"source\":\"web\",\"source_id\":\"1\",\"first_name\":\"Ann\",\"email\":\"ann@example.com\"}\n",
        "\n",
        "{\"source\":\"web\",\"source_id\":\"2\",\"email\":5}\n",
        "not json\n",
        "{\"source\":\"web\",\"source_id\":\"3\",\"first_name\":\"Bo\",\"email\":\"ann@example.com\"} trailing\n",
        "{\"source\":\"web\",\"source_id\":\"4\",\"first_name\":\"Ann\",\"email\":\"ann@example.com\",\"phone\":\"202-555-0199\"}\r\n",
    );
    let (status, job) = upload(&app, "application/x-ndjson", body.as_bytes().to_vec()).await;
    assert_eq!(status, 202, "{job}");
    let job = finished(&app, &job).await;
    assert_eq!(
        (job["accepted"].as_u64(), job["rejected"].as_u64()),
        (Some(2), Some(3)),
        "{job}"
    );
    let (_, errors) = app
        .get_json(&format!(
            "/v1/jobs/{}/errors",
            job["job_id"].as_str().unwrap()
        ))
        .await;
    let lines: Vec<u64> = errors["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, [3, 4, 5]);
    assert_eq!(errors["errors"][0]["field"], "email");

    // The same through a multipart form, as Swagger UI sends it.
    let csv = format!(
        "{HEADER}\n{}\n",
        good_rows(3, 2)
            .into_iter()
            .map(|(_, r)| r)
            .collect::<Vec<_>>()
            .join("\n")
    );
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(csv.into_bytes()).file_name("crm-export.csv"),
    );
    let response = app
        .client
        .post(app.url("/v1/bulk"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    let job: Value = response.json().await.unwrap();
    assert_eq!(job["file_name"], "crm-export.csv");
    let job = finished(&app, &job).await;
    assert_eq!(job["accepted"], 3, "{job}");
    app.stop().await;
}

async fn file_level_errors_store_nothing(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    for (media, body, reason) in [
        (
            "text/csv",
            "source,source_id,emial\ncrm,1,a@example.com\n",
            "unknown column \"emial\"",
        ),
        (
            "text/csv",
            "first_name,email\nAnn,a@example.com\n",
            "missing column \"source\"",
        ),
        ("text/csv", "", "empty"),
        ("application/x-ndjson", "\n\n", "empty"),
    ] {
        let (status, problem) = upload(&app, media, body.as_bytes().to_vec()).await;
        assert_eq!(status, 422, "{body:?}: {problem}");
        assert_eq!(problem["errors"][0]["field"], "file");
        assert!(
            problem["errors"][0]["reason"]
                .as_str()
                .unwrap()
                .contains(reason),
            "{problem}"
        );
    }
    let (status, _) = upload(&app, "application/pdf", b"%PDF".to_vec()).await;
    assert_eq!(status, 415);
    let (_, list) = app.get_json("/v1/jobs").await;
    assert_eq!(list["jobs"], json!([]), "no job for a refused file");
    let (status, problem) = app.get_json("/v1/exports/assignments?format=json").await;
    assert_eq!(
        status, 400,
        "an unknown export parameter is refused: {problem}"
    );
    assert_eq!(app.gauge("c360_records").await, 0);
    app.stop().await;
}

async fn an_interrupted_job_resumes_after_a_restart(engine: Engine) {
    // Small chunks, and enough of them that the job is still running when the restart comes.
    let app = TestApp::spawn_with(engine, |c| {
        c.bulk_chunk_rows = 40;
        c.bulk_max_chunk_rows = 40;
        c.bulk_first_chunk_rows = 40;
    })
    .await;
    let rows = 2000;
    let mut body = format!("{HEADER}\n");
    for (_, row) in good_rows(rows, 2) {
        body.push_str(&row);
        body.push('\n');
    }
    body.push_str("crm,BAD,Ann,Lee,not-an-email,,,,,\n");
    let (status, job) = upload(&app, "text/csv", body.into_bytes()).await;
    assert_eq!(status, 202);
    let path = format!("/v1/jobs/{}", job["job_id"].as_str().unwrap());
    // Wait until the job has stored rows, then restart the service in the middle of it.
    // While it runs, its progress shows the rows read beyond the stored ones and what the
    // chunk being written is doing.
    loop {
        let (_, job) = app.get_json(&path).await;
        let count = |field: &str| job[field].as_u64().unwrap();
        if job["stage"].is_string() {
            assert_eq!(job["state"], "running");
            assert_eq!(
                count("rows_read"),
                count("accepted") + count("rejected") + count("rows_in_progress"),
                "{job}"
            );
        }
        if count("accepted") > 0 {
            assert_eq!(job["state"], "running");
            assert!(job["stage"].is_string(), "{job}");
            assert!(job["rate_per_second"].as_f64().unwrap() > 0.0, "{job}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let app = app.restart().await;
    let (_, paused) = app.get_json(&path).await;
    assert!(
        paused["rows_read"].as_u64().unwrap() < rows as u64 + 1,
        "{paused}"
    );
    let job = finished(&app, &job).await;
    assert_eq!(job["state"], "completed", "{job}");
    assert!(job.get("stage").is_none(), "{job}");
    assert_eq!(job["rows_in_progress"], 0, "{job}");
    assert_eq!(job["rows_read"], rows + 1);
    assert_eq!(
        job["accepted"], rows,
        "no row lost, none counted twice: {job}"
    );
    assert_eq!(job["rejected"], 1);
    assert_eq!(app.gauge("c360_records").await, rows as i64);
    let (_, errors) = app.get_json(&format!("{path}/errors")).await;
    assert_eq!(errors["errors"].as_array().unwrap().len(), 1);
    app.stop().await;
}

/// A job whose chunk the database refuses every time (here a trigger refuses one row, as a
/// full disk or a broken constraint would) is tried again a few times, then marked failed
/// with the error instead of running for ever; the job queued after it then runs.
async fn a_job_that_keeps_stopping_is_marked_failed_and_the_next_one_runs(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let db = c360_services::Database::connect(&app.database_url(), 1)
        .await
        .unwrap();
    let refuse = match engine {
        Engine::Sqlite => vec![
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON records \
             WHEN NEW.source_id = 'poison' BEGIN SELECT RAISE(ABORT, 'poisoned row'); END",
        ],
        Engine::Postgres => vec![
            "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             IF NEW.source_id = 'poison' THEN RAISE EXCEPTION 'poisoned row'; END IF; \
             RETURN NEW; END $$",
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON records \
             FOR EACH ROW EXECUTE FUNCTION refuse_poison()",
        ],
    };
    for sql in refuse {
        sqlx::query(sql).execute(db.pool()).await.unwrap();
    }
    let csv = |rows: &[(usize, String)], extra: &str| {
        let mut body = format!("{HEADER}\n");
        for (_, row) in rows {
            body.push_str(row);
            body.push('\n');
        }
        body.push_str(extra);
        body.into_bytes()
    };
    let rows = good_rows(60, 2);
    let poisoned = csv(
        &rows[..30],
        "crm,poison,Pat,Doe,pat@example.com,,1980-01-01,Springfield,62701,\n",
    );
    let (status, stopping) = upload(&app, "text/csv", poisoned).await;
    assert_eq!(status, 202, "{stopping}");
    let (status, next) = upload(&app, "text/csv", csv(&rows[30..], "")).await;
    assert_eq!(status, 202, "{next}");

    let stopping = finished(&app, &stopping).await;
    assert_eq!(stopping["state"], "failed", "{stopping}");
    let error = stopping["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("stopped 5 times") && error.contains("poisoned row"),
        "{stopping}"
    );
    assert_eq!(
        stopping["accepted"], 0,
        "its one chunk never stored: {stopping}"
    );
    let next = finished(&app, &next).await;
    assert_eq!(next["state"], "completed", "{next}");
    assert_eq!(next["accepted"], 30, "{next}");
    assert_eq!(app.gauge("c360_records").await, 30);
    db.close().await;
    app.stop().await;
}

/// `c360 resolve --store` writes a file into the store; the service then serves it, and the
/// assignments written are the stored customer ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolve_with_store_fills_the_store_the_service_serves() {
    let dir = std::env::temp_dir().join(format!("c360-store-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let records = c360_services::synth::generate(300, 21);
    let input = dir.join("records.ndjson");
    let mut body = Vec::new();
    for r in &records {
        serde_json::to_writer(&mut body, &r.input).unwrap();
        body.push(b'\n');
    }
    body.extend_from_slice(b"{\"source\":\"crm\",\"source_id\":\"bad\",\"email\":\"nope\"}\n");
    std::fs::write(&input, body).unwrap();
    let url = format!("sqlite://{}/c360.db", dir.display());
    let db = c360_services::Database::connect(&url, 4).await.unwrap();
    db.migrate().await.unwrap();
    let output = dir.join("assignments.csv");
    let views = if c360_e2e::dynamodb_view_requested() {
        c360_e2e::dynamodb_view_args()
    } else {
        c360_api::config::CustomerViewArgs::default()
    };
    c360_api::cli::resolve_into_store(
        &input,
        &output,
        &c360_api::cli::EngineArgs::default(),
        db,
        &views,
    )
    .await
    .unwrap();
    let written = std::fs::read_to_string(&output).unwrap();
    let lines: Vec<&str> = written.lines().skip(1).collect();
    assert_eq!(
        lines.len(),
        records.len(),
        "every valid record, the bad one left out"
    );

    let mut config = c360_api::ServeConfig::with_database("127.0.0.1:0".parse().unwrap(), url);
    config.jobs_dir = dir.join("jobs");
    config.customer_view = views.clone();
    let server = c360_api::RunningServer::start(config).await.unwrap();
    let client = reqwest::Client::new();
    for line in lines.iter().take(20) {
        let (source, id, customer) = assignment(line);
        let record: Value = client
            .get(format!("http://{}/v1/records/{source}/{id}", server.addr))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(record["customer_id"], customer, "{record}");
        // The customer view (SQL or DynamoDB) serves what was stored.
        let view: Value = client
            .get(format!("http://{}/v1/customers/{customer}", server.addr))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(view["customer_id"], customer, "{view}");
    }
    server.shutdown().await.unwrap();
    if let Some(views) = c360_api::server::open_view_store(&views).await.unwrap() {
        views.delete_table().await.unwrap();
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// A fresh, migrated store with a resolver on it, and about `records` generated profiles.
async fn store_and_records(
    engine: Engine,
    records: usize,
    seed: u64,
) -> (
    c360_e2e::TestDatabase,
    c360_services::Database,
    c360_services::Resolver,
    Vec<c360_domain::Profile>,
) {
    let database = c360_e2e::TestDatabase::create(engine).await.unwrap();
    let db = c360_services::Database::connect(&database.url(), 4)
        .await
        .unwrap();
    db.migrate().await.unwrap();
    let resolver = c360_services::Resolver::new(db.clone(), c360_matching::Engine::shipped());
    let profiles = c360_services::synth::generate(records, seed)
        .iter()
        .map(|r| c360_domain::Profile::parse(&r.input).unwrap())
        .collect();
    (database, db, resolver, profiles)
}

/// A bulk load keeps PostgreSQL's planner statistics fresh on its own (autovacuum may be off,
/// as on this machine, or behind): after the load, a candidate look-up is planned through
/// the indexes, not as a hash join over every stored record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_load_keeps_postgres_statistics_fresh() {
    let (database, db, resolver, profiles) = store_and_records(Engine::Postgres, 6_000, 33).await;
    for chunk in profiles.chunks(1_000) {
        resolver.ingest_batch(chunk).await.unwrap();
    }
    let analyzed: Option<i64> = sqlx::query_scalar(
        "SELECT CAST(reltuples AS BIGINT) FROM pg_class WHERE relname = 'records'",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM records")
        .fetch_one(db.pool())
        .await
        .unwrap();
    let analyzed = analyzed.unwrap_or(-1);
    assert!(
        analyzed * 5 >= stored * 4,
        "statistics count {analyzed} records of {stored}"
    );
    let plan: Vec<String> = sqlx::query_scalar(
        "EXPLAIN SELECT r.profile FROM blocking_keys k JOIN records r ON r.id = k.record_id \
         WHERE k.key = 4611686018427387904 ORDER BY r.last_changed_at DESC LIMIT 200",
    )
    .fetch_all(db.pool())
    .await
    .unwrap();
    let plan = plan.join("\n");
    assert!(!plan.contains("Seq Scan on records"), "{plan}");
    db.close().await;
    database.drop_database().await.unwrap();
}

/// SQLite's WAL is truncated by the upkeep a bulk load does, while readers keep reading:
/// passive checkpoints alone let it grow to gigabytes under a busy service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_load_keeps_the_sqlite_wal_short() {
    let (database, db, resolver, profiles) = store_and_records(Engine::Sqlite, 3_000, 34).await;
    let url = database.url();
    // A reader that never stops, as the API's reads and the workers are.
    let reading = {
        let db = db.clone();
        tokio::spawn(async move {
            loop {
                let _: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM records")
                    .fetch_one(db.pool())
                    .await
                    .unwrap();
                tokio::task::yield_now().await;
            }
        })
    };
    // The chunks go through the log; the upkeep after each copies it back in a task of its
    // own, at most every 10 s, so the log is seen at its largest right after a chunk.
    let wal = std::path::PathBuf::from(format!("{}-wal", url.trim_start_matches("sqlite://")));
    let mut grown = 0;
    for chunk in profiles.chunks(500) {
        resolver.ingest_batch(chunk).await.unwrap();
        grown = grown.max(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0));
    }
    assert!(grown > 0, "the chunks went through the WAL");
    tokio::time::sleep(Duration::from_secs(10)).await;
    db.maintain().await.unwrap();
    reading.abort();
    let truncated = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert_eq!(truncated, 0, "WAL of {grown} bytes truncated");
    db.close().await;
    database.drop_database().await.unwrap();
}

/// The blocking keys stored for a record (their hashes), and those its row says it is filed
/// under.
async fn filed_keys(
    db: &c360_services::Database,
    key: &c360_domain::RecordKey,
) -> (Vec<i64>, Vec<String>) {
    let mut stored: Vec<i64> = sqlx::query_scalar(
        "SELECT k.key FROM blocking_keys k JOIN records r ON r.id = k.record_id \
         WHERE r.source = $1 AND r.source_id = $2",
    )
    .bind(key.source.as_str())
    .bind(key.source_id.as_str())
    .fetch_all(db.pool())
    .await
    .unwrap();
    stored.sort();
    let listed: Option<String> =
        sqlx::query_scalar("SELECT filed_keys FROM records WHERE source = $1 AND source_id = $2")
            .bind(key.source.as_str())
            .bind(key.source_id.as_str())
            .fetch_optional(db.pool())
            .await
            .unwrap()
            .flatten();
    let mut listed: Vec<String> = listed
        .map(|text| serde_json::from_str(&text).unwrap())
        .unwrap_or_default();
    listed.sort();
    (stored, listed)
}

/// blocking_keys has no index by record: an update or a delete finds a record's rows through
/// the keys its row lists. Whether the record came in a bulk chunk or one by one, after an
/// update exactly the new keys are filed, and after a delete none.
async fn an_update_or_a_delete_unfiles_exactly_the_records_blocking_keys(engine: Engine) {
    let (database, db, resolver, profiles) = store_and_records(engine, 80, 35).await;
    let keys_of = |profile: &c360_domain::Profile| {
        let mut keys = c360_matching::blocking::keys(&c360_matching::Features::of(profile));
        keys.sort();
        keys
    };
    // The index files each key as its hash.
    let hashes_of = |keys: &[String]| {
        let mut hashes: Vec<i64> = keys
            .iter()
            .map(|k| c360_matching::batch::filed_key(k) as i64)
            .collect();
        hashes.sort();
        hashes
    };
    resolver.ingest_batch(&profiles[..50]).await.unwrap();
    for profile in &profiles[50..] {
        resolver.ingest(profile.clone()).await.unwrap();
    }
    for profile in [&profiles[0], &profiles[profiles.len() - 1]] {
        let (stored, listed) = filed_keys(&db, &profile.key()).await;
        assert!(!stored.is_empty());
        assert_eq!(listed, keys_of(profile));
        assert_eq!(stored, hashes_of(&listed));

        // Another name, birth date, phone and address: most keys change.
        let mut input = c360_services::synth::generate(80, 35)
            .into_iter()
            .find(|r| c360_domain::Profile::parse(&r.input).unwrap().key() == profile.key())
            .unwrap()
            .input;
        input.first_name = Some("Quentin".into());
        input.last_name = Some("Zamoyski".into());
        input.date_of_birth = Some("1931-02-03".into());
        input.phone = Some("+1 202 555 0187".into());
        input.address_line1 = Some("1600 Pennsylvania Ave NW".into());
        input.postal_code = Some("20500".into());
        input.updated_at = Some("2030-01-01T00:00:00Z".into());
        let updated = c360_domain::Profile::parse(&input).unwrap();
        let before = keys_of(profile);
        resolver.ingest(updated.clone()).await.unwrap();
        let (stored, listed) = filed_keys(&db, &profile.key()).await;
        assert_eq!(listed, keys_of(&updated));
        assert_eq!(stored, hashes_of(&listed));
        assert!(
            before.iter().any(|k| !listed.contains(k)),
            "the update changed keys"
        );

        resolver.delete(&profile.key()).await.unwrap();
        assert_eq!(
            filed_keys(&db, &profile.key()).await,
            (Vec::new(), Vec::new())
        );
    }
    db.close().await;
    database.drop_database().await.unwrap();
}

/// Migration 0011 turned the blocking index's key texts into hashes, which SQL cannot
/// compute: a store holding records from before it is filed again when the service next
/// starts, from each record's own list of keys, and look-ups by identifier and new records
/// find the stored ones through it. Migration 0012 (records numbered, the index filing them
/// by number) runs between the two.
async fn a_store_indexed_under_key_texts_is_filed_again_under_hashes_at_start(engine: Engine) {
    use c360_domain::{IdentifierKind, IngestOutcome, Profile};

    let (database, db, resolver, profiles) = store_and_records(engine, 60, 36).await;
    resolver.ingest_batch(&profiles).await.unwrap();

    // Back to the store as migration 0010 left it: records without numbers, the index by key
    // text, 0011 and 0012 not applied.
    let mut conn = db.pool().acquire().await.unwrap();
    for statement in [
        "CREATE TABLE records_0010 (source TEXT NOT NULL, source_id TEXT NOT NULL, \
         customer_id TEXT NOT NULL, profile TEXT NOT NULL, source_updated_at BIGINT, \
         first_seen_at BIGINT NOT NULL, last_changed_at BIGINT NOT NULL, filed_keys TEXT, \
         PRIMARY KEY (source, source_id))",
        "INSERT INTO records_0010 SELECT source, source_id, customer_id, profile, \
         source_updated_at, first_seen_at, last_changed_at, filed_keys FROM records",
        "DROP TABLE records",
        "ALTER TABLE records_0010 RENAME TO records",
        "CREATE INDEX records_customer ON records (customer_id)",
        "DROP TABLE blocking_keys",
        "DROP TABLE blocking_keys_refiling",
        "DELETE FROM _sqlx_migrations WHERE version IN (11, 12)",
        "CREATE TABLE blocking_keys (key TEXT NOT NULL, source TEXT NOT NULL, \
         source_id TEXT NOT NULL, PRIMARY KEY (key, source, source_id))",
    ] {
        // On one connection: a pooled SQLite connection may still read the schema from
        // before another connection's DROP.
        sqlx::query(statement).execute(&mut *conn).await.unwrap();
    }
    drop(conn);
    for profile in &profiles {
        let keys = c360_matching::blocking::keys(&c360_matching::Features::of(profile));
        for key in keys {
            sqlx::query("INSERT INTO blocking_keys (key, source, source_id) VALUES ($1, $2, $3)")
                .bind(key)
                .bind(profile.source.as_str())
                .bind(profile.source_id.as_str())
                .execute(db.pool())
                .await
                .unwrap();
        }
    }

    db.migrate().await.unwrap();
    for profile in &profiles {
        let (stored, listed) = filed_keys(&db, &profile.key()).await;
        assert!(!listed.is_empty());
        let mut hashes: Vec<i64> = listed
            .iter()
            .map(|k| c360_matching::batch::filed_key(k) as i64)
            .collect();
        hashes.sort();
        hashes.dedup();
        assert_eq!(stored, hashes, "{:?} filed again", profile.key());
    }
    let pending: Option<i64> = sqlx::query_scalar("SELECT pending FROM blocking_keys_refiling")
        .fetch_optional(db.pool())
        .await
        .unwrap();
    assert_eq!(pending, None, "filed once: the next start does nothing");
    db.migrate().await.unwrap();

    // A look-up by email finds the record's customer through the new index.
    let (i, email) = profiles
        .iter()
        .enumerate()
        .find_map(|(i, p)| p.emails.first().map(|e| (i, e.as_str().to_owned())))
        .expect("a generated record with an email");
    let customer: String =
        sqlx::query_scalar("SELECT customer_id FROM records WHERE source = $1 AND source_id = $2")
            .bind(profiles[i].source.as_str())
            .bind(profiles[i].source_id.as_str())
            .fetch_one(db.pool())
            .await
            .unwrap();
    let found = resolver
        .find_customers(IdentifierKind::Email, &email)
        .await
        .unwrap();
    assert!(
        found
            .iter()
            .any(|view| view.customer_id.as_str() == customer),
        "the customer holding {email:?} is found"
    );

    // The same person sent by another source joins the stored customer.
    let mut again = c360_services::synth::generate(60, 36)
        .into_iter()
        .find(|r| Profile::parse(&r.input).unwrap().key() == profiles[i].key())
        .unwrap()
        .input;
    again.source = Some("support".into());
    let outcome = resolver
        .ingest(Profile::parse(&again).unwrap())
        .await
        .unwrap();
    assert_eq!(outcome.outcome, IngestOutcome::JoinedCustomer);
    assert_eq!(outcome.customer_id.as_str(), customer);
    db.close().await;
    database.drop_database().await.unwrap();
}

/// A batch holding records already stored (a file sent again, some rows changed), new ones,
/// and a row repeated within it: the stored ones are updates, resolved one by one after the
/// new ones are written together, and every outcome comes back in input order.
async fn a_batch_sent_again_updates_what_changed_and_adds_the_rest(engine: Engine) {
    use c360_domain::IngestOutcome;

    let (database, db, resolver, profiles) = store_and_records(engine, 80, 36).await;
    let n = profiles.len();
    assert!(n > 60);
    resolver.ingest_batch(&profiles[..40]).await.unwrap();

    let mut input = c360_services::synth::generate(80, 36)
        .into_iter()
        .find(|r| c360_domain::Profile::parse(&r.input).unwrap().key() == profiles[35].key())
        .unwrap()
        .input;
    input.last_name = Some("Zamoyski".into());
    input.updated_at = Some("2031-05-06T07:08:09Z".into());
    let changed = c360_domain::Profile::parse(&input).unwrap();
    let mut again: Vec<c360_domain::Profile> = profiles[30..60].to_vec();
    again[5] = changed.clone(); // profiles[35]
    again.push(profiles[45].clone()); // a repeat of a new row
    let outcomes = resolver.ingest_batch(&again).await.unwrap();
    assert_eq!(outcomes.len(), again.len());
    for (i, outcome) in outcomes.iter().enumerate() {
        match i {
            5 => assert_eq!(*outcome, IngestOutcome::Updated, "the changed row"),
            0..10 => assert_eq!(*outcome, IngestOutcome::Unchanged, "row {i} sent again"),
            30 => assert_eq!(*outcome, IngestOutcome::Unchanged, "the repeat"),
            _ => assert!(
                matches!(
                    outcome,
                    IngestOutcome::CreatedCustomer
                        | IngestOutcome::JoinedCustomer
                        | IngestOutcome::MergedCustomers
                ),
                "row {i} is new: {outcome:?}"
            ),
        }
    }
    let records: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM records")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(records, 60);
    let stored = resolver.get_record(&changed.key()).await.unwrap();
    assert_eq!(stored.record.last_name, changed.last_name);
    db.close().await;
    database.drop_database().await.unwrap();
}

type Image = c360_services::resident::ResidentRecords;

/// `rows` prepared and resolved as a bulk job's chunk, with the job's image of the store;
/// the outcomes, and the image the chunk hands on.
async fn ingest_holding(
    resolver: &c360_services::Resolver,
    rows: &[c360_domain::Profile],
    image: Option<Image>,
) -> (Vec<c360_domain::IngestOutcome>, Option<Image>) {
    let batch = c360_services::bulk_load::PreparedBatch::of(rows.to_vec()).unwrap();
    let (hand_on, handed_on) = tokio::sync::oneshot::channel();
    let outcomes = resolver
        .ingest_prepared(batch, image, &|_| {}, hand_on)
        .await
        .unwrap();
    (outcomes, handed_on.await.unwrap())
}

async fn merged_customers(db: &c360_services::Database) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM customers WHERE merged_into IS NOT NULL")
        .fetch_one(db.pool())
        .await
        .unwrap()
}

/// The store's records as customers: each customer's record keys, sorted; customer ids
/// differ between stores, the partition must not.
async fn partition(db: &c360_services::Database) -> std::collections::BTreeSet<Vec<String>> {
    let rows: Vec<(String, String, String)> =
        sqlx::query_as("SELECT source, source_id, customer_id FROM records")
            .fetch_all(db.pool())
            .await
            .unwrap();
    let mut customers: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (source, id, customer) in rows {
        customers
            .entry(customer)
            .or_default()
            .push(format!("{source}/{id}"));
    }
    customers
        .into_values()
        .map(|mut keys| {
            keys.sort();
            keys
        })
        .collect()
}

/// A bulk job that started on an empty store resolves its later chunks against the records
/// it holds in memory, one while the one before it is still written: the same outcomes and
/// the same customers as chunks that read their candidates and members from the store. A
/// write beside the job (a record through the API) makes it drop what it holds, and so does
/// growing past its limit; a store that is not empty gives no image at all.
async fn chunks_resolved_against_the_records_held_in_memory_store_the_same_customers(
    engine: Engine,
) {
    let (database, db, resolver, profiles) = store_and_records(engine, 1_200, 37).await;
    let (other_database, other_db, other, _) = store_and_records(engine, 0, 37).await;
    let chunks: Vec<&[c360_domain::Profile]> = profiles[..1_000].chunks(250).collect();
    let mut image = resolver.image_of_empty_store(10_000).await.unwrap();
    assert!(image.is_some(), "an empty store");
    let mut held = 0;
    for chunk in &chunks {
        let (outcomes, kept) = ingest_holding(&resolver, chunk, image.take()).await;
        held += chunk.len();
        assert_eq!(kept.as_ref().map(|image| image.len()), Some(held));
        image = kept;
        assert_eq!(outcomes, other.ingest_batch(chunk).await.unwrap());
    }
    assert!(
        merged_customers(&db).await > 0,
        "later chunks merged customers of earlier ones"
    );
    assert_eq!(partition(&db).await, partition(&other_db).await);
    assert_eq!(
        merged_customers(&db).await,
        merged_customers(&other_db).await
    );

    // Rows sent again unchanged: settled against the image without a write, which keeps it.
    let again = &profiles[240..260];
    let (outcomes, kept) = ingest_holding(&resolver, again, image.take()).await;
    assert_eq!(
        outcomes,
        vec![c360_domain::IngestOutcome::Unchanged; again.len()]
    );
    assert_eq!(outcomes, other.ingest_batch(again).await.unwrap());
    assert_eq!(kept.as_ref().map(Image::len), Some(held));
    assert!(kept.as_ref().is_some_and(|image| !image.is_spoiled()));
    let image = kept;

    // A chunk resolved against the image while the one before it is still being written
    // (as a job does), the one after it against the image that chunk handed on.
    let (first, second) = (&profiles[1_000..1_050], &profiles[1_050..1_100]);
    let batch = c360_services::bulk_load::PreparedBatch::of(first.to_vec()).unwrap();
    let (hand_on, handed_on) = tokio::sync::oneshot::channel();
    let writing = {
        let resolver = resolver.clone();
        tokio::spawn(async move {
            resolver
                .ingest_prepared(batch, image, &|_| {}, hand_on)
                .await
                .unwrap()
        })
    };
    let image = handed_on.await.unwrap();
    assert_eq!(image.as_ref().map(Image::len), Some(held + first.len()));
    let (outcomes, kept) = ingest_holding(&resolver, second, image).await;
    assert_eq!(
        writing.await.unwrap(),
        other.ingest_batch(first).await.unwrap()
    );
    assert_eq!(outcomes, other.ingest_batch(second).await.unwrap());
    assert_eq!(partition(&db).await, partition(&other_db).await);

    // A record ingested beside the job: the next chunk, resolved against the image, finds
    // the store changed when it writes, spoils the image and goes again through the store.
    resolver.ingest(profiles[1_100].clone()).await.unwrap();
    other.ingest(profiles[1_100].clone()).await.unwrap();
    let next = &profiles[1_101..1_150];
    let (outcomes, kept) = ingest_holding(&resolver, next, kept).await;
    assert!(
        kept.as_ref().is_some_and(Image::is_spoiled),
        "the store changed beside the job"
    );
    assert_eq!(outcomes, other.ingest_batch(next).await.unwrap());
    assert_eq!(partition(&db).await, partition(&other_db).await);

    // Rows sent again, with new ones: the stored ones come back unchanged, the new ones are
    // stored, through the store now.
    let again = &profiles[1_140..];
    let (outcomes, kept) = ingest_holding(&resolver, again, kept).await;
    assert!(kept.is_none());
    assert_eq!(
        outcomes[..10],
        vec![c360_domain::IngestOutcome::Unchanged; 10]
    );
    assert_eq!(outcomes, other.ingest_batch(again).await.unwrap());
    assert_eq!(partition(&db).await, partition(&other_db).await);
    assert!(
        resolver
            .image_of_empty_store(10_000)
            .await
            .unwrap()
            .is_none(),
        "a store that holds records"
    );

    // Past its limit, the image goes too.
    other_db.close().await;
    other_database.drop_database().await.unwrap();
    let (other_database, other_db, other, _) = store_and_records(engine, 0, 37).await;
    let image = other.image_of_empty_store(300).await.unwrap();
    let (_, image) = ingest_holding(&other, &profiles[..250], image).await;
    assert_eq!(image.as_ref().map(|image| image.len()), Some(250));
    let (_, image) = ingest_holding(&other, &profiles[250..500], image).await;
    assert!(image.is_none(), "500 records are past a limit of 300");

    for (db, database) in [(db, database), (other_db, other_database)] {
        db.close().await;
        database.drop_database().await.unwrap();
    }
}
