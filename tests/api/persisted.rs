//! Persisted operations: Apollo's automatic persisted queries over POST and GET, and trusted
//! documents (`PERSISTED_OPERATIONS_FILE` + `PERSISTED_OPERATIONS_ONLY=true`) refusing every
//! other document at every door: POST, GET, JSON batches and the WebSocket.

use axum::http::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::{
    helpers::{TestApp, assert_code, assert_ok, error_code, phone},
    socket_client::{connect, next_json, serve, start},
};

const JSON: (&str, &str) = ("content-type", "application/json");

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn persisted_extension(hash: &str) -> Value {
    json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } })
}

/// Percent-encodes a query string value.
fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `GET /graphql` with a persisted query's hash and no document, as Apollo Client's
/// `useGETForHashedQueries` sends it.
fn get_by_hash(hash: &str) -> String {
    format!(
        "/graphql?extensions={}",
        url_encode(&persisted_extension(hash).to_string())
    )
}

#[tokio::test]
async fn automatic_persisted_queries_over_post_and_get() {
    let app = TestApp::spawn().await;
    let query = "query Typename { __typename }";
    let hash = sha256_hex(query);

    // A hash the server has not seen: PERSISTED_QUERY_NOT_FOUND, with Apollo's message.
    let body = json!({ "extensions": persisted_extension(&hash) }).to_string();
    let r = app.post(&[JSON], body.clone()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_code(&r.body, "PERSISTED_QUERY_NOT_FOUND");
    assert_eq!(r.body["errors"][0]["message"], "PersistedQueryNotFound");
    assert!(r.body.get("data").is_none(), "{}", r.body);
    let r = app.get(&get_by_hash(&hash), &[]).await;
    assert_code(&r.body, "PERSISTED_QUERY_NOT_FOUND");

    // The document with its hash registers it (and runs).
    let register = json!({ "query": query, "extensions": persisted_extension(&hash) });
    let r = app.post(&[JSON], register.to_string()).await;
    assert_eq!(r.body["data"]["__typename"], "Query", "{}", r.body);

    // Now the hash alone runs it, over POST and GET.
    let r = app.post(&[JSON], body).await;
    assert_eq!(r.body["data"]["__typename"], "Query", "{}", r.body);
    let r = app.get(&get_by_hash(&hash), &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["data"]["__typename"], "Query", "{}", r.body);

    // A hash that does not match the document is refused, and registers nothing.
    let other = "query Other { __typename }";
    let wrong = json!({ "query": other, "extensions": persisted_extension(&hash) });
    let r = app.post(&[JSON], wrong.to_string()).await;
    assert_code(&r.body, "BAD_USER_INPUT");
    let by_other = json!({ "extensions": persisted_extension(&sha256_hex(other)) });
    assert_code(
        &app.post(&[JSON], by_other.to_string()).await.body,
        "PERSISTED_QUERY_NOT_FOUND",
    );

    // Another protocol version: PERSISTED_QUERY_NOT_SUPPORTED.
    let v2 = json!({ "extensions": { "persistedQuery": { "version": 2, "sha256Hash": hash } } });
    assert_code(
        &app.post(&[JSON], v2.to_string()).await.body,
        "PERSISTED_QUERY_NOT_SUPPORTED",
    );
}

#[tokio::test]
async fn a_persisted_mutation_is_still_refused_over_get() {
    let app = TestApp::spawn().await;
    let mutation = format!(
        "mutation {{ requestCode(phone: \"{}\") {{ phone }} }}",
        phone(1)
    );
    let hash = sha256_hex(&mutation);
    let register = json!({ "query": mutation, "extensions": persisted_extension(&hash) });
    assert_ok(&app.post(&[JSON], register.to_string()).await.body);
    app.settle().await;
    let sent = app.sms.messages().len();
    // The hash alone over GET resolves to a mutation, which GET never runs.
    let r = app.get(&get_by_hash(&hash), &[]).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{}", r.body);
    app.settle().await;
    assert_eq!(app.sms.messages().len(), sent);
}

const ME: &str = "query Me { me { id } }";
const REQUEST_CODE: &str =
    "mutation RequestCode($phone: String!) { requestCode(phone: $phone) { phone } }";
const JOINED: &str = "subscription Joined { invitedUserJoined { id } }";

/// A manifest file as `@apollo/generate-persisted-query-manifest` writes it.
fn apollo_manifest() -> String {
    let operation = |name: &str, kind: &str, body: &str| json!({ "id": sha256_hex(body), "name": name, "type": kind, "body": body });
    json!({
        "format": "apollo-persisted-query-manifest",
        "version": 1,
        "operations": [
            operation("Me", "query", ME),
            operation("RequestCode", "mutation", REQUEST_CODE),
            operation("Joined", "subscription", JOINED),
        ],
    })
    .to_string()
}

fn write_manifest(contents: &str) -> String {
    let path =
        std::env::temp_dir().join(format!("phone-auth-manifest-{}.json", uuid::Uuid::new_v4()));
    std::fs::write(&path, contents).expect("write the manifest");
    path.display().to_string()
}

async fn trusted_app(manifest: &str) -> TestApp {
    let path = write_manifest(manifest);
    TestApp::with_env(&[
        ("PERSISTED_OPERATIONS_FILE", path.as_str()),
        ("PERSISTED_OPERATIONS_ONLY", "true"),
    ])
    .await
}

#[tokio::test]
async fn trusted_documents_run_and_everything_else_is_refused_at_every_door() {
    let app = trusted_app(&apollo_manifest()).await;

    // The manifest's operations run: by full text, and by hash alone.
    let body = app.gql(REQUEST_CODE, json!({ "phone": phone(1) })).await;
    assert_eq!(body["data"]["requestCode"]["phone"], phone(1), "{body}");
    let by_hash = json!({
        "variables": { "phone": phone(2) },
        "extensions": persisted_extension(&sha256_hex(REQUEST_CODE)),
    });
    let r = app.post(&[JSON], by_hash.to_string()).await;
    assert_eq!(
        r.body["data"]["requestCode"]["phone"],
        phone(2),
        "{}",
        r.body
    );
    // `me` signed out runs and answers UNAUTHENTICATED (it executed: the document is trusted).
    let r = app.get(&get_by_hash(&sha256_hex(ME)), &[]).await;
    assert_code(&r.body, "UNAUTHENTICATED");

    // Any other document, however harmless, is refused before it runs.
    let other = format!(
        "mutation {{ requestCode(phone: \"{}\") {{ phone }} }}",
        phone(3)
    );
    let refused = |body: &Value| {
        assert_eq!(
            error_code(body).as_deref(),
            Some("PERSISTED_QUERY_NOT_SUPPORTED"),
            "{body}"
        );
        assert!(body.get("data").is_none(), "{body}");
    };
    // POST.
    refused(&app.gql(&other, json!({})).await);
    refused(&app.gql("{ __typename }", json!({})).await);
    // The manifest's text with one byte changed is another document.
    refused(&app.gql(&format!("{ME} "), json!({})).await);
    // GET.
    let r = app
        .get(
            &format!("/graphql?query={}", url_encode("{ __typename }")),
            &[],
        )
        .await;
    refused(&r.body);
    // APQ cannot register it either; afterwards its hash is still unknown.
    let register =
        json!({ "query": other, "extensions": persisted_extension(&sha256_hex(&other)) });
    refused(&app.post(&[JSON], register.to_string()).await.body);
    let by_other = json!({ "extensions": persisted_extension(&sha256_hex(&other)) });
    assert_code(
        &app.post(&[JSON], by_other.to_string()).await.body,
        "PERSISTED_QUERY_NOT_FOUND",
    );
    // A JSON batch: each operation is checked on its own.
    let batch = json!([
        { "query": REQUEST_CODE, "variables": { "phone": phone(4) } },
        { "query": other },
    ]);
    let r = app.post(&[JSON], batch.to_string()).await;
    assert_eq!(
        r.body[0]["data"]["requestCode"]["phone"],
        phone(4),
        "{}",
        r.body
    );
    refused(&r.body[1]);
    // Nothing of the refused documents ran: no code went to phone 3.
    app.settle().await;
    let to_three = app
        .sms
        .messages()
        .iter()
        .filter(|(to, _)| *to == phone(3))
        .count();
    assert_eq!(to_three, 0);

    // The WebSocket's subscribe: the manifest's subscription is accepted, another refused.
    let addr = serve(&app).await;
    let mut socket = connect(addr, None).await;
    start(
        &mut socket,
        "1",
        "subscription { invitedUserJoined { id phone } }",
    )
    .await;
    // Refused before it runs: a single answer (graphql-transport-ws `next`, or `error`) that
    // carries the code.
    let message = next_json(&mut socket).await;
    assert_eq!(message["id"], "1");
    let errors = match message["type"].as_str() {
        Some("next") => &message["payload"]["errors"],
        _ => &message["payload"],
    };
    assert_eq!(
        errors[0]["extensions"]["code"], "PERSISTED_QUERY_NOT_SUPPORTED",
        "{message}"
    );
    start(&mut socket, "2", JOINED).await;
    // Signed out, the trusted subscription runs and answers UNAUTHENTICATED (operation 1's
    // `complete` may come first).
    let message = loop {
        let message = next_json(&mut socket).await;
        if message["id"] == "2" {
            break message;
        }
    };
    let text = message.to_string();
    assert!(
        text.contains("UNAUTHENTICATED") && !text.contains("PERSISTED_QUERY"),
        "{message}"
    );
}

#[tokio::test]
async fn a_codegen_client_preset_map_is_a_manifest_too() {
    // graphql-codegen's client preset writes { "<hash>": "<document>" }.
    let mut map = serde_json::Map::new();
    map.insert(sha256_hex(REQUEST_CODE), json!(REQUEST_CODE));
    let map = Value::Object(map).to_string();
    let app = trusted_app(&map).await;
    let by_hash = json!({
        "variables": { "phone": phone(1) },
        "extensions": persisted_extension(&sha256_hex(REQUEST_CODE)),
    });
    let r = app.post(&[JSON], by_hash.to_string()).await;
    assert_eq!(
        r.body["data"]["requestCode"]["phone"],
        phone(1),
        "{}",
        r.body
    );
    assert_code(
        &app.gql("{ __typename }", json!({})).await,
        "PERSISTED_QUERY_NOT_SUPPORTED",
    );
}

#[test]
fn trusted_only_needs_a_readable_manifest() {
    let config = |pairs: &[(&str, &str)]| {
        let map: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        phone_auth::config::Config::from_lookup(|k| map.get(k).cloned()).map_err(|e| e.to_string())
    };
    let err = config(&[("PERSISTED_OPERATIONS_ONLY", "true")]).expect_err("no file");
    assert!(err.contains("PERSISTED_OPERATIONS_ONLY"), "{err}");
    let err = config(&[("PERSISTED_OPERATIONS_FILE", "/nonexistent/manifest.json")])
        .expect_err("missing file");
    assert!(err.contains("PERSISTED_OPERATIONS_FILE"), "{err}");
    let bad = write_manifest("[1, 2]");
    let err = config(&[("PERSISTED_OPERATIONS_FILE", bad.as_str())]).expect_err("bad file");
    assert!(err.contains("PERSISTED_OPERATIONS_FILE"), "{err}");
    let good = write_manifest(&apollo_manifest());
    let ok = config(&[
        ("PERSISTED_OPERATIONS_FILE", good.as_str()),
        ("PERSISTED_OPERATIONS_ONLY", "true"),
    ])
    .expect("a good manifest");
    assert_eq!(
        ok.graphql.persisted_operations.as_ref().map(|m| m.len()),
        Some(3)
    );
}
