//! Every kind of bad input gets the right status, a problem document naming the field and the
//! reason, and stores nothing.

use c360_e2e::{on_both_engines, Engine, TestApp};
use serde_json::{json, Value};

on_both_engines!(
    bad_records_are_rejected_and_store_nothing,
    bad_requests_get_problem_documents
);

/// (case, body, expected status, expected field)
fn bad_records() -> Vec<(&'static str, String, u16, Option<&'static str>)> {
    let valid = |extra: Value| {
        let mut body = json!({"source": "crm", "source_id": "r-1"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body.to_string()
    };
    vec![
        (
            "invalid JSON",
            r#"{"source": "crm", "source_id": "#.to_owned(),
            400,
            None,
        ),
        (
            "trailing garbage",
            r#"{"source": "crm", "source_id": "x"} extra"#.to_owned(),
            400,
            None,
        ),
        ("not an object", "[1, 2, 3]".to_owned(), 422, Some("body")),
        (
            "wrong type",
            valid(json!({"first_name": 42})),
            422,
            Some("first_name"),
        ),
        (
            "wrong type in a list",
            valid(json!({"emails": ["a@b.co", 7]})),
            422,
            Some("emails[1]"),
        ),
        (
            "missing source",
            json!({"source_id": "x"}).to_string(),
            422,
            Some("source"),
        ),
        (
            "missing source_id",
            json!({"source": "crm"}).to_string(),
            422,
            Some("source_id"),
        ),
        (
            "empty source",
            json!({"source": "  ", "source_id": "x"}).to_string(),
            422,
            Some("source"),
        ),
        (
            "source with a slash",
            json!({"source": "a/b", "source_id": "x"}).to_string(),
            422,
            Some("source"),
        ),
        (
            "over-long name",
            valid(json!({"last_name": "x".repeat(101)})),
            422,
            Some("last_name"),
        ),
        (
            "over-long source_id",
            json!({"source": "crm", "source_id": "9".repeat(201)}).to_string(),
            422,
            Some("source_id"),
        ),
        (
            "invalid email",
            valid(json!({"email": "bob.example.com"})),
            422,
            Some("email"),
        ),
        (
            "invalid email in a list",
            valid(json!({"emails": ["ok@example.com", "bad@"]})),
            422,
            Some("emails[1]"),
        ),
        (
            "invalid phone",
            valid(json!({"phone": "12-34"})),
            422,
            Some("phone"),
        ),
        (
            "phone with letters",
            valid(json!({"phone": "555-CALL-NOW"})),
            422,
            Some("phone"),
        ),
        (
            "impossible date",
            valid(json!({"date_of_birth": "1990-02-30"})),
            422,
            Some("date_of_birth"),
        ),
        (
            "future date of birth",
            valid(json!({"date_of_birth": "2999-01-01"})),
            422,
            Some("date_of_birth"),
        ),
        (
            "bad updated_at",
            valid(json!({"updated_at": "last tuesday"})),
            422,
            Some("updated_at"),
        ),
        (
            "unknown field",
            valid(json!({"favourite_colour": "blue"})),
            422,
            Some("favourite_colour"),
        ),
        (
            "bad postal code",
            valid(json!({"addresses": [{"postal_code": "62704;DROP"}]})),
            422,
            Some("addresses[0].postal_code"),
        ),
        (
            "control characters",
            valid(json!({"loyalty_id": "L\u{0007}1"})),
            422,
            Some("loyalty_id"),
        ),
    ]
}

async fn bad_records_are_rejected_and_store_nothing(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    for (case, body, status, field) in bad_records() {
        let response = app
            .client
            .post(app.url("/v1/records"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status, "{case}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{case}"
        );
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["status"], status, "{case}");
        assert!(
            problem["title"].is_string() && problem["type"].is_string(),
            "{case}"
        );
        if let Some(field) = field {
            let fields: Vec<&str> = problem["errors"]
                .as_array()
                .unwrap_or_else(|| panic!("{case}: errors in {problem}"))
                .iter()
                .map(|e| e["field"].as_str().unwrap())
                .collect();
            assert!(fields.contains(&field), "{case}: {fields:?}");
            assert!(problem["errors"][0]["reason"]
                .as_str()
                .is_some_and(|r| !r.is_empty()));
        }
    }
    assert_eq!(app.gauge("c360_records").await, 0, "nothing stored");
    assert_eq!(app.gauge("c360_customers").await, 0, "nothing stored");
    app.stop().await;
}

async fn bad_requests_get_problem_documents(engine: Engine) {
    let app = TestApp::spawn_with(engine, |config| config.max_body_bytes = 4096).await;
    let client = &app.client;
    let check = |case: &'static str, expected: u16| {
        move |response: reqwest::Response| async move {
            assert_eq!(response.status().as_u16(), expected, "{case}");
            assert_eq!(
                response.headers()["content-type"],
                "application/problem+json",
                "{case}"
            );
            let problem: Value = response.json().await.unwrap();
            assert_eq!(problem["status"], expected, "{case}");
        }
    };
    let body = json!({"source": "crm", "source_id": "x"}).to_string();
    check("wrong content type", 415)(
        client
            .post(app.url("/v1/records"))
            .header("content-type", "text/plain")
            .body(body.clone())
            .send()
            .await
            .unwrap(),
    )
    .await;
    check("no content type", 415)(
        client
            .post(app.url("/v1/records"))
            .body(body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    let huge =
        json!({"source": "crm", "source_id": "x", "first_name": "a".repeat(10_000)}).to_string();
    check("oversize body", 413)(
        client
            .post(app.url("/v1/records"))
            .header("content-type", "application/json")
            .body(huge)
            .send()
            .await
            .unwrap(),
    )
    .await;
    check("unknown route", 404)(
        client
            .get(app.url("/v1/nothing-here"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    check("wrong method", 405)(client.put(app.url("/v1/records")).send().await.unwrap()).await;
    check("malformed customer id", 400)(
        client
            .get(app.url("/v1/customers/not-an-id"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    check("unknown customer", 404)(
        client
            .get(app.url("/v1/customers/cus_00000000000000000000000000000000"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    check("lookup without identifier", 400)(
        client.get(app.url("/v1/customers")).send().await.unwrap(),
    )
    .await;
    check("lookup with unknown parameter", 400)(
        client
            .get(app.url("/v1/customers?name=bob"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(app.gauge("c360_records").await, 0, "nothing stored");
    app.stop().await;
}
