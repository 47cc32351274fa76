//! `openapi/openapi.json` in the repository is exactly what `c360 openapi` prints.

#[test]
fn committed_openapi_document_is_up_to_date() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi/openapi.json");
    let committed = std::fs::read_to_string(path).expect("openapi/openapi.json exists");
    let generated = c360_api::openapi::openapi_json();
    assert!(
        committed == generated,
        "openapi/openapi.json is stale: run `cargo run -p c360-api -- openapi > openapi/openapi.json`"
    );
}

#[test]
fn every_route_documents_its_errors() {
    let spec: serde_json::Value = serde_json::from_str(&c360_api::openapi::openapi_json()).unwrap();
    for (path, methods) in spec["paths"].as_object().unwrap() {
        if !path.starts_with("/v1") {
            continue;
        }
        for (method, operation) in methods.as_object().unwrap() {
            let responses = operation["responses"].as_object().unwrap();
            assert!(
                responses.contains_key("401"),
                "{method} {path} documents 401"
            );
            assert!(
                responses.keys().any(|s| s.starts_with('4') && s != "401"),
                "{method} {path} documents its client errors"
            );
        }
    }
}
