//! Geo enrichment end to end: the golden address geocoded by the embedded offline geocoder,
//! placed in its census block group, ACS figures in the single customer view; the exploration
//! endpoints; bad addresses that never block a record.

use c360_e2e::{on_both_engines, Engine, TestApp};
use serde_json::{json, Value};

on_both_engines!(
    customers_carry_the_block_group_of_their_golden_address,
    postal_and_foreign_addresses_are_stored_with_their_precision,
    geocode_census_and_insights_endpoints,
);

/// A corrupt census file stops the start, naming the file, the place in it and the reason.
#[tokio::test]
async fn a_corrupt_census_file_fails_the_start_with_its_name_and_line() {
    let dir = std::env::temp_dir().join(format!("c360-bad-acs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let acs = dir.join("acs.csv");
    std::fs::write(
        &acs,
        "geoid,households\n110010001011,12\n110010001012,many\n",
    )
    .unwrap();
    let mut config = c360_api::ServeConfig::with_database(
        "127.0.0.1:0".parse().unwrap(),
        format!("sqlite://{}/c360.db", dir.display()),
    );
    config.enrichment.acs = Some(acs.clone());
    let error = c360_api::RunningServer::start(config)
        .await
        .err()
        .expect("the start fails");
    assert_eq!(
        error.to_string(),
        format!(
            "{}, line 3: column `households`: `many` is not a number",
            acs.display()
        )
    );
    std::fs::remove_dir_all(dir).unwrap();
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

fn person(id: &str, line1: &str, zip: Option<&str>, updated_at: &str) -> Value {
    let mut record = json!({
        "source": "crm", "source_id": id, "first_name": "Amara", "last_name": "Okafor",
        "email": "amara.okafor@example.com", "address_line1": line1, "city": "Washington",
        "state": "DC", "updated_at": updated_at
    });
    if let Some(zip) = zip {
        record["postal_code"] = json!(zip);
    }
    record
}

async fn customer(app: &TestApp, id: &str) -> Value {
    let (status, view) = app.get_json(&format!("/v1/customers/{id}")).await;
    assert_eq!(status, 200, "{view}");
    view
}

async fn customers_carry_the_block_group_of_their_golden_address(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let (status, answer) = app
        .ingest(&person(
            "1",
            "701 E Street Northeast",
            Some("20002"),
            "2024-01-01T00:00:00Z",
        ))
        .await;
    assert_eq!(status, 201, "{answer}");
    let id = answer["customer_id"].as_str().unwrap().to_owned();
    let view = customer(&app, &id).await;
    let enrichment = &view["enrichment"];
    assert_eq!(enrichment["status"], "enriched", "{enrichment}");
    assert_eq!(enrichment["geocode"]["precision"], "rooftop");
    assert_eq!(enrichment["geocode"]["geocoder"], "offline");
    assert!((enrichment["geocode"]["lon"].as_f64().unwrap() + 76.99598).abs() < 1e-4);
    assert_eq!(enrichment["block_group"]["geoid"], "110010083021");
    assert_eq!(enrichment["block_group"]["tract"], "11001008302");
    assert_eq!(enrichment["block_group"]["county"], "11001");
    assert_eq!(enrichment["demographics"]["acs_period"], "2019-2023");
    assert!(enrichment["demographics"]["values"]["total_population"]["estimate"].is_number());
    let enriched_at = enrichment["enriched_at"].clone();

    // A change that leaves the golden address alone does not re-enrich.
    let mut phone_added = person("1", "701 E St NE", Some("20002"), "2024-02-01T00:00:00Z");
    phone_added["phone"] = json!("(202) 555-0100");
    let (status, answer) = app.ingest(&phone_added).await;
    assert_eq!(status, 200, "{answer}");
    let view = customer(&app, &id).await;
    assert_eq!(
        view["enrichment"]["enriched_at"], enriched_at,
        "same address, same enrichment"
    );

    // A newer record of the same person at another address moves the golden address: the
    // enrichment follows it to the new block group.
    let (_, answer) = app
        .ingest(&person(
            "2",
            "701 Florida Ave NE",
            None,
            "2024-03-01T00:00:00Z",
        ))
        .await;
    assert_eq!(answer["customer_id"], id.as_str(), "{answer}");
    let view = customer(&app, &id).await;
    assert_eq!(
        view["golden"]["address"]["value"]["line1"],
        "701 Florida Ave NE"
    );
    assert_eq!(
        view["enrichment"]["block_group"]["geoid"], "110010106021",
        "{view}"
    );
    assert_ne!(view["enrichment"]["enriched_at"], enriched_at);

    // The insight counts the customer in its block group.
    let (status, bg) = app.get_json("/v1/census/blockgroups/110010106021").await;
    assert_eq!(status, 200, "{bg}");
    assert_eq!(bg["customers"], 1);
    let (_, old) = app.get_json("/v1/census/blockgroups/110010083021").await;
    assert_eq!(old["customers"], 0);
    app.stop().await;
}

async fn postal_and_foreign_addresses_are_stored_with_their_precision(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let (status, answer) = app
        .ingest(&json!({
            "source": "web", "source_id": "w1", "first_name": "Lin", "last_name": "Park",
            "address_line1": "99999 Nowhere Lane", "city": "Washington", "state": "DC",
            "postal_code": "20002"
        }))
        .await;
    assert_eq!(status, 201, "{answer}");
    let view = customer(&app, answer["customer_id"].as_str().unwrap()).await;
    let enrichment = &view["enrichment"];
    assert_eq!(enrichment["geocode"]["precision"], "postal", "{enrichment}");
    assert!(enrichment["geocode"]["reason"]
        .as_str()
        .unwrap()
        .contains("ZIP centroid"));
    assert!(
        enrichment.get("block_group").is_none(),
        "a ZIP centroid is no block group"
    );
    assert!(enrichment["note"].as_str().unwrap().contains("uncertain"));

    let (status, answer) = app
        .ingest(&json!({
            "source": "web", "source_id": "w2", "first_name": "Tom", "last_name": "Hale",
            "address_line1": "10 Downing Street", "city": "London", "postal_code": "SW1A 2AA",
            "country": "GB"
        }))
        .await;
    assert_eq!(
        status, 201,
        "a foreign address never blocks the record: {answer}"
    );
    let view = customer(&app, answer["customer_id"].as_str().unwrap()).await;
    assert_eq!(view["enrichment"]["geocode"]["precision"], "none");
    assert!(view["enrichment"]["geocode"]["reason"]
        .as_str()
        .unwrap()
        .contains("only US addresses"));

    let (status, answer) = app
        .ingest(&json!({"source": "web", "source_id": "w3", "email": "x@example.com"}))
        .await;
    assert_eq!(status, 201);
    let view = customer(&app, answer["customer_id"].as_str().unwrap()).await;
    assert_eq!(view["enrichment"], json!({"status": "no_address"}));
    app.stop().await;
}

async fn geocode_census_and_insights_endpoints(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let (status, found) = post(
        &app,
        "/v1/geocode",
        &json!({"line1": "701 e st ne", "city": "washington dc"}),
    )
    .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["geocode"]["precision"], "rooftop");
    assert_eq!(found["block_group"]["geoid"], "110010083021");
    let income = &found["demographics"]["values"]["median_household_income"];
    assert!(income.get("estimate").is_some(), "{income}");

    let (status, problem) = post(&app, "/v1/geocode", &json!({})).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "line1");
    let (status, problem) =
        post(&app, "/v1/geocode", &json!({"line1": "1 A St", "zip": "1"})).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "zip");

    let (status, bg) = app.get_json("/v1/census/blockgroups/110010001011").await;
    assert_eq!(status, 200);
    assert_eq!(bg["block_group"]["tract"], "11001000101");
    assert_eq!(
        bg["demographics"]["values"]["median_household_income"],
        json!({"estimate": 135708.0, "moe": 43153.0})
    );
    assert!(bg["land_m2"].as_f64().unwrap() > 0.0);
    let (status, _) = app.get_json("/v1/census/blockgroups/1100").await;
    assert_eq!(status, 400);
    let (status, _) = app.get_json("/v1/census/blockgroups/999999999999").await;
    assert_eq!(status, 404);

    // Customers in three block groups, one postal-only, one without an address.
    let addresses = [
        ("1", "701 E Street NE", "Ana", "20002"),
        ("2", "701 Maryland Avenue NE", "Ben", "20002"),
        ("3", "701 Florida Ave NE", "Cy", ""),
        ("4", "99999 Nowhere Lane", "Di", "20002"),
    ];
    for (id, line1, first, zip) in addresses {
        let (status, answer) = app
            .ingest(&json!({
                "source": "pos", "source_id": id, "first_name": first, "last_name": format!("Z{id}"),
                "address_line1": line1, "city": "Washington", "state": "DC", "postal_code": zip
            }))
            .await;
        assert_eq!(status, 201, "{answer}");
    }
    app.ingest(&json!({"source": "pos", "source_id": "5", "email": "e@example.com"}))
        .await;
    let (status, histogram) = app
        .get_json("/v1/insights/demographics?field=median_household_income&bins=0,50000,100000,150000,200000")
        .await;
    assert_eq!(status, 200, "{histogram}");
    assert_eq!(histogram["customers"], 5);
    assert_eq!(histogram["without_block_group"], 2);
    let binned: u64 = histogram["bins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["customers"].as_u64().unwrap())
        .sum();
    assert_eq!(
        binned + histogram["without_value"].as_u64().unwrap(),
        3,
        "{histogram}"
    );
    assert_eq!(
        histogram["bins"].as_array().unwrap().last().unwrap()["to"],
        Value::Null
    );
    let (status, default_bins) = app
        .get_json("/v1/insights/demographics?field=pct_uninsured_age_19_64")
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        default_bins["bins"].as_array().unwrap().len(),
        10,
        "{default_bins}"
    );

    let (status, problem) = app
        .get_json("/v1/insights/demographics?field=shoe_size")
        .await;
    assert_eq!(status, 422);
    assert_eq!(problem["errors"][0]["field"], "field");
    let (status, problem) = app
        .get_json("/v1/insights/demographics?field=households&bins=5,1")
        .await;
    assert_eq!(status, 422);
    assert_eq!(problem["errors"][0]["field"], "bins");
    let (status, _) = app
        .get_json("/v1/insights/demographics?field=households&colour=red")
        .await;
    assert_eq!(status, 400);
    app.stop().await;
}
