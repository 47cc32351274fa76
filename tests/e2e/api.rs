//! The REST API end to end, on SQLite and on PostgreSQL.

use c360_e2e::{on_both_engines, Engine, TestApp};
use serde_json::{json, Value};

on_both_engines!(
    ingest_then_read_record_and_customer,
    replaying_a_record_changes_nothing,
    newer_updates_apply_and_older_ones_are_ignored,
    lookup_by_each_identifier_kind_with_format_variants,
    delete_removes_the_record_and_an_empty_customer,
    a_bridging_record_merges_customers_and_old_ids_resolve,
    an_id_absorbed_earlier_follows_its_survivor_into_the_next_merge,
    removing_the_bridge_splits_the_customer,
    api_keys_guard_v1_but_not_health,
    health_readiness_metrics_and_swagger_ui,
);

fn customer_id(answer: &Value) -> String {
    answer["customer_id"]
        .as_str()
        .expect("customer_id")
        .to_owned()
}

async fn ingest_then_read_record_and_customer(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let (status, answer) = app
        .ingest(&json!({
            "source": "crm", "source_id": "C-1", "first_name": "Robert", "last_name": "Smith",
            "email": "Bob.Smith@Example.com", "phone": "(555) 123-4567",
            "date_of_birth": "1984-07-12", "address_line1": "123 N Main Street",
            "city": "Springfield", "state": "IL", "postal_code": "62704", "loyalty_id": "LOY-1"
        }))
        .await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["outcome"], "created_customer");
    let id = customer_id(&answer);
    assert!(id.starts_with("cus_"));

    let (status, record) = app.get_json("/v1/records/crm/C-1").await;
    assert_eq!(status, 200);
    assert_eq!(record["customer_id"], id.as_str());
    assert_eq!(record["record"]["emails"], json!(["bob.smith@example.com"]));
    assert_eq!(record["record"]["phones"], json!(["+15551234567"]));

    let (status, customer) = app.get_json(&format!("/v1/customers/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(customer["golden"]["first_name"]["value"], "Robert");
    assert_eq!(
        customer["golden"]["first_name"]["from"],
        json!({"source": "crm", "source_id": "C-1"})
    );
    assert_eq!(
        customer["golden"]["address"]["value"]["postal_code"],
        "62704"
    );
    assert_eq!(customer["records"].as_array().unwrap().len(), 1);
    // Outside the embedded census area the offline geocoder still finds the ZIP centroid.
    assert_eq!(customer["enrichment"]["status"], "enriched");
    assert_eq!(customer["enrichment"]["geocode"]["precision"], "postal");
    // Version 1 is the new customer, version 2 its enrichment.
    assert_eq!(customer["version"], 2);
    let kinds: Vec<&str> = customer["identifiers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["email", "loyalty_id", "phone"]);

    // A second record sharing the phone joins the same customer.
    let (status, answer) = app
        .ingest(&json!({"source": "pos", "source_id": "P-9", "first_name": "Bob", "phone": "555.123.4567"}))
        .await;
    assert_eq!(status, 201);
    assert_eq!(answer["outcome"], "joined_customer");
    assert_eq!(customer_id(&answer), id);
    let (_, customer) = app.get_json(&format!("/v1/customers/{id}")).await;
    assert_eq!(customer["records"].as_array().unwrap().len(), 2);
    assert_eq!(
        customer["version"], 3,
        "joined: one more version; the golden address did not change"
    );
    assert_eq!(app.gauge("c360_records").await, 2);
    assert_eq!(app.gauge("c360_customers").await, 1);

    let (status, missing) = app.get_json("/v1/records/crm/nope").await;
    assert_eq!(status, 404);
    assert_eq!(missing["status"], 404);
    app.stop().await;
}

async fn replaying_a_record_changes_nothing(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let record = json!({"source": "web", "source_id": "w-1", "first_name": "Ann", "email": "ann@example.com"});
    let (_, first) = app.ingest(&record).await;
    let (_, before) = app
        .get_json(&format!("/v1/customers/{}", customer_id(&first)))
        .await;
    for _ in 0..3 {
        let (status, again) = app.ingest(&record).await;
        assert_eq!(status, 200);
        assert_eq!(again["outcome"], "unchanged");
        assert_eq!(customer_id(&again), customer_id(&first));
    }
    let (_, after) = app
        .get_json(&format!("/v1/customers/{}", customer_id(&first)))
        .await;
    assert_eq!(before, after, "a replay must not touch the customer");
    assert_eq!(app.gauge("c360_records").await, 1);
    app.stop().await;
}

async fn newer_updates_apply_and_older_ones_are_ignored(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let v1 = json!({"source": "crm", "source_id": "c-7", "first_name": "Kate", "last_name": "Lee",
        "email": "kate@example.com", "updated_at": "2026-01-01T00:00:00Z"});
    let (_, first) = app.ingest(&v1).await;
    let id = customer_id(&first);

    let v2 = json!({"source": "crm", "source_id": "c-7", "first_name": "Katherine", "last_name": "Lee",
        "email": "kate@example.com", "updated_at": "2026-02-01T00:00:00Z"});
    let (status, answer) = app.ingest(&v2).await;
    assert_eq!((status, answer["outcome"].as_str()), (200, Some("updated")));
    assert_eq!(customer_id(&answer), id);

    let older = json!({"source": "crm", "source_id": "c-7", "first_name": "Kathy", "last_name": "Lee",
        "email": "kate@example.com", "updated_at": "2025-12-01T00:00:00Z"});
    let (status, answer) = app.ingest(&older).await;
    assert_eq!(
        (status, answer["outcome"].as_str()),
        (200, Some("ignored_stale"))
    );

    let (_, record) = app.get_json("/v1/records/crm/c-7").await;
    assert_eq!(record["record"]["first_name"], "Katherine");
    let (_, customer) = app.get_json(&format!("/v1/customers/{id}")).await;
    assert_eq!(customer["golden"]["first_name"]["value"], "Katherine");
    assert_eq!(customer["version"], 2);
    app.stop().await;
}

async fn lookup_by_each_identifier_kind_with_format_variants(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let (_, answer) = app
        .ingest(&json!({
            "source": "app", "source_id": "a-1", "email": "bob@example.com",
            "emails": ["Bob.Smith+promo@GMail.com"], "phone": "+15551234567",
            "loyalty_id": "LOY-42", "device_id": "dev-abc", "cookie_id": "ck-1"
        }))
        .await;
    let id = customer_id(&answer);
    for query in [
        "email=Bob@Example.COM",
        "email=%20bob%40example.com%20",
        "email=bobsmith%40gmail.com",
        "email=b.o.b.s.m.i.t.h%2Bother%40googlemail.com",
        "phone=(555)%20123-4567",
        "phone=555.123.4567",
        "phone=%2B1%20555%20123%204567",
        "loyalty_id=LOY-42",
        "device_id=dev-abc",
        "cookie_id=ck-1",
    ] {
        let (status, found) = app.get_json(&format!("/v1/customers?{query}")).await;
        assert_eq!(status, 200, "{query}: {found}");
        let customers = found["customers"].as_array().unwrap();
        assert_eq!(customers.len(), 1, "{query}");
        assert_eq!(customers[0]["customer_id"], id.as_str(), "{query}");
    }
    let (status, found) = app.get_json("/v1/customers?email=nobody@example.com").await;
    assert_eq!(
        (status, found["customers"].as_array().unwrap().len()),
        (200, 0)
    );
    let (status, _) = app.get_json("/v1/customers?loyalty_id=loy-42").await;
    assert_eq!(
        status, 200,
        "opaque ids are case-sensitive and simply not found"
    );
    let (status, problem) = app
        .get_json("/v1/customers?email=a@b.co&phone=5551234567")
        .await;
    assert_eq!(status, 400);
    assert_eq!(problem["errors"][0]["field"], "query");
    let (status, problem) = app.get_json("/v1/customers?phone=abc").await;
    assert_eq!(status, 422);
    assert_eq!(problem["errors"][0]["field"], "phone");
    app.stop().await;
}

async fn delete_removes_the_record_and_an_empty_customer(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let (_, a) = app
        .ingest(&json!({"source": "crm", "source_id": "1", "email": "x@example.com"}))
        .await;
    let (_, b) = app
        .ingest(&json!({"source": "web", "source_id": "2", "email": "x@example.com"}))
        .await;
    let id = customer_id(&a);
    assert_eq!(customer_id(&b), id);

    let delete = |path: &str| app.client.delete(app.url(path)).send();
    assert_eq!(delete("/v1/records/web/2").await.unwrap().status(), 204);
    assert_eq!(app.get_json("/v1/records/web/2").await.0, 404);
    let (_, customer) = app.get_json(&format!("/v1/customers/{id}")).await;
    assert_eq!(customer["records"].as_array().unwrap().len(), 1);
    assert_eq!(delete("/v1/records/web/2").await.unwrap().status(), 404);

    assert_eq!(delete("/v1/records/crm/1").await.unwrap().status(), 204);
    assert_eq!(app.get_json(&format!("/v1/customers/{id}")).await.0, 404);
    let (_, found) = app.get_json("/v1/customers?email=x@example.com").await;
    assert_eq!(found["customers"], json!([]));
    assert_eq!(app.gauge("c360_customers").await, 0);
    app.stop().await;
}

async fn a_bridging_record_merges_customers_and_old_ids_resolve(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let (_, a) = app
        .ingest(&json!({"source": "crm", "source_id": "a", "email": "pat@example.com"}))
        .await;
    let (_, b) = app
        .ingest(
            &json!({"source": "pos", "source_id": "b", "first_name": "Pat", "last_name": "Quinn",
            "phone": "2025550143"}),
        )
        .await;
    let (id_a, id_b) = (customer_id(&a), customer_id(&b));
    assert_ne!(id_a, id_b);

    let (status, bridge) = app
        .ingest(&json!({"source": "web", "source_id": "c", "first_name": "Patrick", "last_name": "Quinn",
            "email": "PAT@example.com", "phone": "(202) 555-0143"}))
        .await;
    assert_eq!(status, 201);
    assert_eq!(bridge["outcome"], "merged_customers");
    // The older customer survives; the younger one is absorbed.
    assert_eq!(customer_id(&bridge), id_a);
    assert_eq!(bridge["merged_customer_ids"], json!([id_b]));

    let (status, via_old) = app.get_json(&format!("/v1/customers/{id_b}")).await;
    assert_eq!(status, 200);
    assert_eq!(via_old["customer_id"], id_a.as_str());
    assert_eq!(via_old["resolved_from"], id_b.as_str());
    assert_eq!(via_old["records"].as_array().unwrap().len(), 3);
    assert_eq!(
        app.get_json("/v1/records/pos/b").await.1["customer_id"],
        id_a.as_str()
    );
    assert_eq!(app.gauge("c360_customers").await, 1);
    app.stop().await;
}

async fn an_id_absorbed_earlier_follows_its_survivor_into_the_next_merge(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let oldest = customer_id(
        &app.ingest(&json!({"source": "crm", "source_id": "o", "email": "kim@example.com"}))
            .await
            .1,
    );
    let middle = customer_id(
        &app.ingest(
            &json!({"source": "pos", "source_id": "a", "first_name": "Kim",
            "last_name": "Ray", "phone": "2025550123"}),
        )
        .await
        .1,
    );
    let youngest = customer_id(
        &app.ingest(&json!({"source": "app", "source_id": "x", "email": "kray@example.com"}))
            .await
            .1,
    );
    let (_, first) = app
        .ingest(
            &json!({"source": "web", "source_id": "b1", "first_name": "Kim",
            "last_name": "Ray", "phone": "(202) 555-0123", "email": "kray@example.com"}),
        )
        .await;
    assert_eq!(first["outcome"], "merged_customers");
    assert_eq!(first["merged_customer_ids"], json!([youngest]));
    let (_, second) = app
        .ingest(
            &json!({"source": "web", "source_id": "b2", "first_name": "Kim",
            "last_name": "Ray", "email": "kim@example.com", "phone": "2025550123"}),
        )
        .await;
    assert_eq!(second["outcome"], "merged_customers");
    assert_eq!(customer_id(&second), oldest);
    assert_eq!(second["merged_customer_ids"], json!([middle]));

    // Both absorbed ids resolve to the survivor in one hop.
    for absorbed in [&middle, &youngest] {
        let (status, view) = app.get_json(&format!("/v1/customers/{absorbed}")).await;
        assert_eq!(status, 200);
        assert_eq!(view["customer_id"], oldest.as_str());
        assert_eq!(view["resolved_from"], absorbed.as_str());
        assert_eq!(view["records"].as_array().unwrap().len(), 5);
    }
    assert_eq!(app.gauge("c360_customers").await, 1);
    app.stop().await;
}

async fn removing_the_bridge_splits_the_customer(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    app.ingest(&json!({"source": "crm", "source_id": "a", "email": "lee@example.com"}))
        .await;
    app.ingest(
        &json!({"source": "pos", "source_id": "b", "last_name": "Lee", "phone": "2025550199"}),
    )
    .await;
    let bridge_record = json!({"source": "web", "source_id": "c", "last_name": "Lee",
        "email": "lee@example.com", "phone": "2025550199"});
    let (_, bridge) = app.ingest(&bridge_record).await;
    assert_eq!(bridge["outcome"], "merged_customers");
    let merged = customer_id(&bridge);

    // The bridge drops its phone: the phone-only record splits off under a new id.
    let (status, update) = app
        .ingest(&json!({"source": "web", "source_id": "c", "last_name": "Lee", "email": "lee@example.com"}))
        .await;
    assert_eq!((status, update["outcome"].as_str()), (200, Some("updated")));
    assert_eq!(customer_id(&update), merged);
    let split = update["split_customer_ids"].as_array().expect("split ids");
    assert_eq!(split.len(), 1);
    let (_, b) = app.get_json("/v1/records/pos/b").await;
    assert_eq!(b["customer_id"], split[0]);
    assert_eq!(
        app.get_json("/v1/records/crm/a").await.1["customer_id"],
        merged.as_str()
    );

    // Deleting the bridge of a fresh merge splits too.
    app.ingest(&bridge_record).await;
    assert_eq!(app.gauge("c360_customers").await, 1);
    let response = app
        .client
        .delete(app.url("/v1/records/web/c"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(app.gauge("c360_customers").await, 2);
    let (_, a) = app.get_json("/v1/records/crm/a").await;
    let (_, b) = app.get_json("/v1/records/pos/b").await;
    assert_ne!(a["customer_id"], b["customer_id"]);
    app.stop().await;
}

async fn api_keys_guard_v1_but_not_health(engine: Engine) {
    let app = TestApp::spawn_with(engine, |config| {
        config.api_keys = Some("writer-secret-1:rw,reader-secret-1:ro".parse().unwrap());
    })
    .await;
    let record = json!({"source": "crm", "source_id": "k1", "email": "k@example.com"});
    let post = |key: Option<&str>| {
        let mut request = app.client.post(app.url("/v1/records")).json(&record);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        request.send()
    };
    let no_key = post(None).await.unwrap();
    assert_eq!(no_key.status(), 401);
    assert_eq!(no_key.headers()["content-type"], "application/problem+json");
    assert_eq!(post(Some("wrong-secret-1")).await.unwrap().status(), 401);
    assert_eq!(post(Some("reader-secret-1")).await.unwrap().status(), 403);
    assert_eq!(post(Some("writer-secret-1")).await.unwrap().status(), 201);

    let get = |key: &str| {
        app.client
            .get(app.url("/v1/records/crm/k1"))
            .bearer_auth(key)
            .send()
    };
    assert_eq!(get("reader-secret-1").await.unwrap().status(), 200);
    assert_eq!(get("writer-secret-1").await.unwrap().status(), 200);
    assert_eq!(
        app.client
            .get(app.url("/v1/records/crm/k1"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let delete = app
        .client
        .delete(app.url("/v1/records/crm/k1"))
        .bearer_auth("reader-secret-1")
        .send();
    assert_eq!(delete.await.unwrap().status(), 403);

    assert_eq!(app.get_json("/healthz").await.0, 200);
    assert_eq!(app.get_json("/readyz").await.0, 200);
    assert_eq!(
        app.client
            .get(app.url("/metrics"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    app.stop().await;
}

async fn health_readiness_metrics_and_swagger_ui(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    assert_eq!(
        app.get_json("/healthz").await,
        (200, json!({"status": "ok"}))
    );
    assert_eq!(
        app.get_json("/readyz").await,
        (200, json!({"status": "ready"}))
    );
    app.ingest(&json!({"source": "crm", "source_id": "m1"}))
        .await;
    let metrics = app.get_text("/metrics").await;
    assert!(
        metrics.contains(
            r#"c360_http_requests_total{method="POST",route="/v1/records",status="201"} 1"#
        ),
        "{metrics}"
    );
    assert!(metrics.contains("c360_http_request_duration_seconds_bucket"));
    assert!(metrics.contains(r#"c360_ingested_records_total{outcome="created_customer"} 1"#));
    assert!(metrics.contains("c360_records 1"));
    let ui = app
        .client
        .get(app.url("/swagger-ui/"))
        .send()
        .await
        .unwrap();
    assert_eq!(ui.status(), 200);
    assert!(ui.text().await.unwrap().contains("swagger"));
    let (status, spec) = app.get_json("/api-docs/openapi.json").await;
    assert_eq!(status, 200);
    assert!(spec["paths"]["/v1/records"]["post"].is_object());
    app.stop().await;
}
