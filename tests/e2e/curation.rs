//! The review queue, manual links and explanations, end to end.

use c360_e2e::{on_both_engines, Engine, TestApp};
use serde_json::{json, Value};

on_both_engines!(
    guard_rails_keep_twins_apart_until_a_person_accepts,
    cannot_link_splits_and_undo_reunites,
    must_link_merges_and_undo_splits,
    a_must_link_against_the_evidence_is_reported_and_honored_in_batch,
    graph_and_match_explain_decisions,
    household_members_sharing_an_email_stay_apart,
);

fn customer(answer: &Value) -> String {
    answer["customer_id"]
        .as_str()
        .expect("customer_id")
        .to_owned()
}

async fn post(app: &TestApp, path: &str, body: &Value) -> (u16, Value) {
    let response = app
        .client
        .post(app.url(path))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn delete(app: &TestApp, path: &str) -> (u16, Value) {
    let response = app.client.delete(app.url(path)).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn twin(first: &str, id: &str) -> Value {
    json!({
        "source": "crm", "source_id": id, "first_name": first, "last_name": "Quill",
        "date_of_birth": "2001-05-05", "email": format!("{}@example.com", first.to_lowercase()),
        "phone": "(202) 555-0188", "address_line1": "5 Oak Avenue", "city": "Washington",
        "postal_code": "20001"
    })
}

async fn guard_rails_keep_twins_apart_until_a_person_accepts(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let (_, emma) = app.ingest(&twin("Emma", "t1")).await;
    let (_, olivia) = app.ingest(&twin("Olivia", "t2")).await;
    assert_ne!(customer(&emma), customer(&olivia), "twins are two people");

    let (status, queue) = app.get_json("/v1/reviews").await;
    assert_eq!(status, 200);
    let items = queue["reviews"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{queue}");
    let item = &items[0];
    assert_eq!(item["reason"], "twins_with_own_email");
    assert_eq!(item["status"], "open");
    assert_eq!(item["a_customer_id"], customer(&emma).as_str());
    let id = item["id"].as_str().unwrap();

    // A person knows better: the same person after all.
    let (status, decided) = post(
        &app,
        &format!("/v1/reviews/{id}"),
        &json!({"decision": "accept"}),
    )
    .await;
    assert_eq!(status, 200, "{decided}");
    assert_eq!(decided["status"], "accepted");
    let (_, a) = app.get_json("/v1/records/crm/t1").await;
    let (_, b) = app.get_json("/v1/records/crm/t2").await;
    assert_eq!(a["customer_id"], b["customer_id"]);
    let (status, again) = post(
        &app,
        &format!("/v1/reviews/{id}"),
        &json!({"decision": "reject"}),
    )
    .await;
    assert_eq!(status, 409, "{again}");
    let (_, accepted) = app.get_json("/v1/reviews?status=accepted").await;
    assert_eq!(accepted["reviews"].as_array().unwrap().len(), 1);
    assert_eq!(app.get_json("/v1/reviews?status=bogus").await.0, 400);
    app.stop().await;
}

async fn cannot_link_splits_and_undo_reunites(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let a = json!({"source": "crm", "source_id": "a", "first_name": "Ann", "last_name": "Ray", "email": "ann.ray@example.com"});
    let b = json!({"source": "web", "source_id": "b", "first_name": "Annie", "last_name": "Ray", "email": "ANN.RAY@example.com"});
    let (_, ra) = app.ingest(&a).await;
    let (_, rb) = app.ingest(&b).await;
    assert_eq!(customer(&ra), customer(&rb), "same email, compatible names");

    let (status, link) = post(
        &app,
        "/v1/links",
        &json!({
            "kind": "cannot_link", "a": {"source": "crm", "source_id": "a"},
            "b": {"source": "web", "source_id": "b"}, "note": "mother and daughter"
        }),
    )
    .await;
    assert_eq!(status, 201, "{link}");
    assert_eq!(link["kind"], "cannot_link");
    let (_, now_a) = app.get_json("/v1/records/crm/a").await;
    let (_, now_b) = app.get_json("/v1/records/web/b").await;
    assert_ne!(now_a["customer_id"], now_b["customer_id"], "split by hand");

    // Re-sending b changes nothing and does not rejoin it.
    let b2 = json!({"source": "web", "source_id": "b", "first_name": "Annie", "last_name": "Ray",
        "email": "ANN.RAY@example.com", "phone": "2025550100"});
    let (_, rb2) = app.ingest(&b2).await;
    assert_ne!(rb2["customer_id"], now_a["customer_id"]);
    // The opposite link is refused while this one stands.
    let (status, _) = post(&app, "/v1/links", &json!({
        "kind": "must_link", "a": {"source": "crm", "source_id": "a"}, "b": {"source": "web", "source_id": "b"}
    }))
    .await;
    assert_eq!(status, 409);

    let id = link["id"].as_str().unwrap();
    let (status, undone) = delete(&app, &format!("/v1/links/{id}")).await;
    assert_eq!(status, 200, "{undone}");
    assert!(undone["undone_at"].is_string());
    let (_, a3) = app.get_json("/v1/records/crm/a").await;
    let (_, b3) = app.get_json("/v1/records/web/b").await;
    assert_eq!(
        a3["customer_id"], b3["customer_id"],
        "the engine links them again"
    );
    assert_eq!(delete(&app, &format!("/v1/links/{id}")).await.0, 409);
    let (_, listed) = app.get_json("/v1/links?record=crm/a").await;
    assert_eq!(listed["links"].as_array().unwrap().len(), 1);
    app.stop().await;
}

async fn must_link_merges_and_undo_splits(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let (_, x) = app.ingest(&json!({"source": "pos", "source_id": "x", "first_name": "Li", "last_name": "Wei", "phone": "2125550111"})).await;
    let (_, y) = app
        .ingest(&json!({"source": "app", "source_id": "y", "email": "lw@example.org"}))
        .await;
    assert_ne!(customer(&x), customer(&y));

    let (status, link) = post(&app, "/v1/links", &json!({
        "kind": "must_link", "a": {"source": "pos", "source_id": "x"}, "b": {"source": "app", "source_id": "y"}
    }))
    .await;
    assert_eq!(status, 201, "{link}");
    let (_, merged) = app
        .get_json(&format!("/v1/customers/{}", customer(&y)))
        .await;
    assert_eq!(
        merged["customer_id"],
        customer(&x).as_str(),
        "the older customer survives"
    );
    assert_eq!(merged["records"].as_array().unwrap().len(), 2);
    let (status, again) = post(&app, "/v1/links", &json!({
        "kind": "must_link", "a": {"source": "app", "source_id": "y"}, "b": {"source": "pos", "source_id": "x"}
    }))
    .await;
    assert_eq!(
        (status, again["id"].clone()),
        (201, link["id"].clone()),
        "idempotent"
    );

    let (status, _) = delete(&app, &format!("/v1/links/{}", link["id"].as_str().unwrap())).await;
    assert_eq!(status, 200);
    let (_, rx) = app.get_json("/v1/records/pos/x").await;
    let (_, ry) = app.get_json("/v1/records/app/y").await;
    assert_ne!(
        rx["customer_id"], ry["customer_id"],
        "no evidence left: split again"
    );

    let (status, problem) = post(&app, "/v1/links", &json!({
        "kind": "must_link", "a": {"source": "pos", "source_id": "x"}, "b": {"source": "pos", "source_id": "nope"}
    }))
    .await;
    assert_eq!(status, 404, "{problem}");
    let (status, problem) = post(&app, "/v1/links", &json!({
        "kind": "sometimes", "a": {"source": "pos", "source_id": "x"}, "b": {"source": "app", "source_id": "y"}
    }))
    .await;
    assert_eq!(status, 422, "{problem}");
    let (status, _) = post(&app, "/v1/links", &json!({
        "kind": "must_link", "a": {"source": "pos", "source_id": "x"}, "b": {"source": "pos", "source_id": "x"}
    }))
    .await;
    assert_eq!(status, 422);
    app.stop().await;
}

/// A must-link joining two people the guard rails tell apart makes an incoherent customer: the
/// report names it and the conflicting pair until the link is undone. The manual links export
/// feeds `c360 resolve --links`, which honors both kinds in a batch run.
async fn a_must_link_against_the_evidence_is_reported_and_honored_in_batch(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let records = [
        json!({"source": "crm", "source_id": "m", "first_name": "Maria", "last_name": "Lopez",
            "date_of_birth": "1970-03-02", "postal_code": "10001"}),
        json!({"source": "web", "source_id": "s", "first_name": "Sofia", "last_name": "Lopez",
            "date_of_birth": "2001-09-14", "postal_code": "10001"}),
        json!({"source": "crm", "source_id": "r", "first_name": "Robert", "last_name": "Smith",
            "date_of_birth": "1984-07-12", "email": "bob@example.com"}),
        json!({"source": "web", "source_id": "b", "first_name": "Bob", "last_name": "Smith",
            "date_of_birth": "1984-07-12", "email": "bob@example.com"}),
    ];
    for record in &records {
        assert_eq!(app.ingest(record).await.0, 201);
    }
    let (_, report) = app.get_json("/v1/reports/incoherent-customers").await;
    assert_eq!(
        report["customers"],
        json!([]),
        "the engine made no such customer"
    );

    let (status, must) = post(&app, "/v1/links", &json!({
        "kind": "must_link", "a": {"source": "crm", "source_id": "m"}, "b": {"source": "web", "source_id": "s"}
    }))
    .await;
    assert_eq!(status, 201, "{must}");
    let (status, cannot) = post(&app, "/v1/links", &json!({
        "kind": "cannot_link", "a": {"source": "crm", "source_id": "r"}, "b": {"source": "web", "source_id": "b"}
    }))
    .await;
    assert_eq!(status, 201, "{cannot}");
    let (_, maria) = app.get_json("/v1/records/crm/m").await;
    let (status, report) = app.get_json("/v1/reports/incoherent-customers").await;
    assert_eq!(status, 200, "{report}");
    let listed = report["customers"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{report}");
    assert_eq!(listed[0]["customer_id"], maria["customer_id"]);
    assert_eq!(listed[0]["records"], 2);
    assert_eq!(
        listed[0]["conflict"]["guard"],
        "different_first_name_and_birth_date"
    );
    let pair = [&listed[0]["conflict"]["a"], &listed[0]["conflict"]["b"]];
    assert!(
        pair.contains(&&json!({"source": "crm", "source_id": "m"}))
            && pair.contains(&&json!({"source": "web", "source_id": "s"})),
        "{report}"
    );

    // The export lists both links in force; a batch run over the same records honors them.
    let exported = app.get_text("/v1/exports/manual-links").await;
    let mut lines: Vec<&str> = exported.lines().collect();
    assert_eq!(
        lines.remove(0),
        "kind,a_source,a_source_id,b_source,b_source_id,id"
    );
    lines.sort_unstable();
    assert_eq!(
        lines,
        [
            format!("cannot_link,crm,r,web,b,{}", cannot["id"].as_str().unwrap()),
            format!("must_link,crm,m,web,s,{}", must["id"].as_str().unwrap()),
        ]
    );
    let dir = std::env::temp_dir().join(format!("c360-links-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let (input, links, output) = (
        dir.join("records.ndjson"),
        dir.join("links.csv"),
        dir.join("assignments.csv"),
    );
    let ndjson: Vec<String> = records.iter().map(Value::to_string).collect();
    std::fs::write(&input, ndjson.join("\n")).unwrap();
    std::fs::write(&links, &exported).unwrap();
    let customer_of = |with_links: bool| {
        c360_api::cli::resolve(
            &input,
            &output,
            with_links.then_some(links.as_path()),
            &c360_api::cli::EngineArgs::default(),
        )
        .unwrap();
        let written = std::fs::read_to_string(&output).unwrap();
        written
            .lines()
            .skip(1)
            .map(|line| {
                let (record, customer) = line.rsplit_once(',').unwrap();
                (record.to_owned(), customer.to_owned())
            })
            .collect::<std::collections::HashMap<String, String>>()
    };
    let engine_only = customer_of(false);
    assert_ne!(engine_only["crm,m"], engine_only["web,s"]);
    assert_eq!(engine_only["crm,r"], engine_only["web,b"]);
    let honored = customer_of(true);
    assert_eq!(honored["crm,m"], honored["web,s"], "must_link honored");
    assert_ne!(honored["crm,r"], honored["web,b"], "cannot_link honored");
    std::fs::remove_dir_all(&dir).ok();

    let (status, _) = delete(&app, &format!("/v1/links/{}", must["id"].as_str().unwrap())).await;
    assert_eq!(status, 200);
    let (_, m) = app.get_json("/v1/records/crm/m").await;
    let (_, sofia) = app.get_json("/v1/records/web/s").await;
    assert_ne!(m["customer_id"], sofia["customer_id"], "split again");
    // The customer that kept its id no longer counts or shows the record that left it.
    let (_, kept) = app
        .get_json(&format!(
            "/v1/customers/{}",
            m["customer_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(kept["records"].as_array().unwrap().len(), 1, "{kept}");
    assert_eq!(kept["golden"]["first_name"]["value"], "Maria", "{kept}");
    let (_, report) = app.get_json("/v1/reports/incoherent-customers").await;
    assert_eq!(report["customers"], json!([]), "coherent again: {report}");
    app.stop().await;
}

async fn graph_and_match_explain_decisions(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let (_, first) = app.ingest(&json!({"source": "crm", "source_id": "1", "first_name": "Robert", "last_name": "Smith",
        "date_of_birth": "1984-07-12", "address_line1": "12 Main Street", "city": "Springfield", "postal_code": "62704"})).await;
    let (_, second) = app.ingest(&json!({"source": "web", "source_id": "2", "first_name": "Bob", "last_name": "Smith",
        "date_of_birth": "07/12/1984", "address_line1": "12 Main St", "city": "Springfield", "postal_code": "62704",
        "email": "bob@example.com"})).await;
    let (_, third) = app.ingest(&json!({"source": "app", "source_id": "3", "first_name": "Bobby", "email": "bob@example.com"})).await;
    let id = customer(&first);
    assert_eq!(customer(&second), id, "{second}");
    assert_eq!(customer(&third), id, "{third}");

    let (status, graph) = app.get_json(&format!("/v1/customers/{id}/graph")).await;
    assert_eq!(status, 200, "{graph}");
    assert_eq!(graph["nodes"].as_array().unwrap().len(), 3);
    let edges = graph["edges"].as_array().unwrap();
    assert!(edges.len() >= 2, "{graph}");
    let types: Vec<&str> = edges
        .iter()
        .map(|e| e["evidence"]["type"].as_str().unwrap())
        .collect();
    assert!(types.contains(&"score"), "{types:?}");
    assert!(types.contains(&"rule"), "{types:?}");
    let scored = edges
        .iter()
        .find(|e| e["evidence"]["type"] == "score")
        .unwrap();
    let fields = scored["evidence"]["fields"].as_array().unwrap();
    assert!(
        fields
            .iter()
            .any(|f| f["field"] == "first_name" && f["level"] == "nickname"),
        "{scored}"
    );

    let records_before = app.gauge("c360_records").await;
    let (status, found) = post(
        &app,
        "/v1/match",
        &json!({"first_name": "Rob", "last_name": "Smith",
        "date_of_birth": "1984-07-12", "postal_code": "62704"}),
    )
    .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["best_customer_id"], id.as_str());
    let best = &found["candidates"][0];
    assert_eq!(best["verdict"], "match");
    assert!(best["probability"].as_f64().unwrap() > 0.9);
    assert_eq!(
        app.gauge("c360_records").await,
        records_before,
        "matching stores nothing"
    );
    let (status, nobody) = post(
        &app,
        "/v1/match",
        &json!({"first_name": "Zed", "last_name": "Nobody"}),
    )
    .await;
    assert_eq!(status, 200);
    assert!(nobody["best_customer_id"].is_null());
    assert_eq!(
        post(&app, "/v1/match", &json!({"email": "broken"})).await.0,
        422
    );
    app.stop().await;
}

async fn household_members_sharing_an_email_stay_apart(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let home = |first: &str, id: &str, dob: &str| {
        json!({"source": "web", "source_id": id, "first_name": first, "last_name": "Lopez",
            "date_of_birth": dob, "email": "lopezfamily@example.com", "phone": "3055550100",
            "address_line1": "9 Palm Way", "city": "Miami", "postal_code": "33101"})
    };
    let (_, mom) = app.ingest(&home("Maria", "m", "1970-03-02")).await;
    let (_, son) = app.ingest(&home("Diego", "d", "2002-11-20")).await;
    let (_, dad) = app.ingest(&home("Jose", "j", "1968-08-15")).await;
    assert_ne!(customer(&mom), customer(&son));
    assert_ne!(customer(&mom), customer(&dad));
    assert_ne!(customer(&son), customer(&dad));
    // An anonymous record with the family email cannot bridge them.
    let (_, bridge) = app
        .ingest(&json!({"source": "app", "source_id": "anon", "email": "lopezfamily@example.com"}))
        .await;
    let (_, m) = app.get_json("/v1/records/web/m").await;
    let (_, d) = app.get_json("/v1/records/web/d").await;
    let (_, j) = app.get_json("/v1/records/web/j").await;
    assert_ne!(m["customer_id"], d["customer_id"], "{bridge}");
    assert_ne!(m["customer_id"], j["customer_id"]);
    assert_ne!(d["customer_id"], j["customer_id"]);
    assert_eq!(app.gauge("c360_records").await, 4);
    app.stop().await;
}
