//! GraphQL over HTTP: content types, limits, GET rules, batching, GraphiQL, health, request ids.

use axum::http::{StatusCode, header};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_code, assert_ok, phone};

const JSON: (&str, &str) = ("content-type", "application/json");

fn request_code_body(n: u32) -> String {
    json!({ "query": format!("mutation {{ requestCode(phone: \"{}\") {{ phone }} }}", phone(n)) })
        .to_string()
}

#[tokio::test]
async fn cross_site_content_types_are_refused() {
    let app = TestApp::spawn().await;
    for content_type in [
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "",
    ] {
        let headers: Vec<(&str, &str)> = if content_type.is_empty() {
            vec![]
        } else {
            vec![("content-type", content_type)]
        };
        let response = app.post(&headers, request_code_body(1)).await;
        assert_eq!(
            response.status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type}"
        );
        assert_code(&response.body, "BAD_USER_INPUT");
    }
    assert!(app.sms.messages().is_empty());
    // And nothing was stored either: the code can still be requested with no cooldown.
    assert_ok(&app.request_code(&phone(1)).await);
}

#[tokio::test]
async fn json_with_charset_and_graphql_response_json_are_accepted() {
    let app = TestApp::spawn().await;
    let r = app
        .post(
            &[("content-type", "application/json; charset=utf-8")],
            request_code_body(1),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_ok(&r.body);
    let r = app
        .post(
            &[("content-type", "application/graphql-response+json")],
            request_code_body(2),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_ok(&r.body);
}

#[tokio::test]
async fn oversized_bodies_get_413() {
    let app = TestApp::spawn().await;
    let padding = " ".repeat(70 * 1024);
    let body = format!(r#"{{"query":"{{ __typename }}"{padding}}}"#);
    let r = app.post(&[JSON], body).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_code(&r.body, "BAD_USER_INPUT");
    // Just under the limit is fine.
    let small = format!(r#"{{"query":"{{ __typename }}"{}}}"#, " ".repeat(60 * 1024));
    assert_eq!(app.post(&[JSON], small).await.status, StatusCode::OK);
}

#[tokio::test]
async fn unparsable_bodies_get_400_with_a_graphql_error() {
    let app = TestApp::spawn().await;
    for body in ["", "{", "[]", "42", r#"{"query": 5}"#] {
        let r = app.post(&[JSON], body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.body);
        assert_code(&r.body, "BAD_USER_INPUT");
    }
}

#[tokio::test]
async fn queries_work_over_get_and_mutations_get_405() {
    let app = TestApp::spawn().await;
    let r = app.get("/graphql?query=%7B__typename%7D", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["data"]["__typename"], "Query");

    let mutation =
        "/graphql?query=mutation%7BrequestCode(phone%3A%22%2B79120000001%22)%7Bphone%7D%7D";
    let r = app.get(mutation, &[]).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        r.headers.get(header::ALLOW).map(|v| v.to_str().unwrap()),
        Some("POST")
    );
    assert_code(&r.body, "BAD_USER_INPUT");
    // Choosing the mutation of a multi-operation document by name is refused too.
    let named =
        "/graphql?query=query%20A%7B__typename%7D%20mutation%20B%7BlogoutAll%7D&operationName=B";
    assert_eq!(
        app.get(named, &[]).await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert!(app.sms.messages().is_empty());
}

#[tokio::test]
async fn graphiql_is_served_to_browsers() {
    let app = TestApp::spawn().await;
    for (uri, headers) in [
        ("/", vec![]),
        (
            "/graphql",
            vec![("accept", "text/html,application/xhtml+xml")],
        ),
    ] {
        let r = app.get(uri, &headers).await;
        assert_eq!(r.status, StatusCode::OK);
        let html = r.body.as_str().expect("html");
        assert!(
            html.contains("graphiql") || html.contains("GraphiQL"),
            "{uri}"
        );
        assert!(html.contains("/graphql"));
    }
    // Only a browser asking for the page gets it: a client's GET without a query gets a GraphQL
    // error, and a browser's GET with a query runs it.
    let r = app
        .get(
            "/graphql",
            &[("accept", "application/graphql-response+json")],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.body["errors"][0]["message"], "The request has no query.");
    let r = app
        .get(
            "/graphql?query=%7B__typename%7D",
            &[("accept", "text/html,application/json")],
        )
        .await;
    assert_eq!(r.body["data"]["__typename"], "Query", "{:?}", r.body);
}

#[tokio::test]
async fn health_and_readiness() {
    let app = TestApp::spawn().await;
    let r = app.get("/healthz", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["status"], "ok");
    let r = app.get("/readyz", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["database"], "ok");
    assert_eq!(r.body["revocations"], "ok");
}

#[tokio::test]
async fn request_ids_are_echoed_or_made() {
    let app = TestApp::spawn().await;
    let r = app
        .get("/healthz", &[("x-request-id", "client-id-123")])
        .await;
    assert_eq!(r.headers["x-request-id"], "client-id-123");
    let r = app
        .get("/healthz", &[("x-request-id", "bad id with spaces")])
        .await;
    let id = r.headers["x-request-id"].to_str().unwrap();
    assert_ne!(id, "bad id with spaces");
    assert_eq!(id.len(), 36);
}

#[tokio::test]
async fn graphql_response_json_follows_the_spec_status_codes() {
    let app = TestApp::spawn().await;
    let accept = ("accept", "application/graphql-response+json");
    let r = app
        .post(
            &[JSON, accept],
            json!({ "query": "{ __typename }" }).to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.headers[header::CONTENT_TYPE],
        "application/graphql-response+json"
    );
    let r = app
        .post(&[JSON, accept], json!({ "query": "{ nope" }).to_string())
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // Plain application/json keeps 200 for GraphQL errors.
    let r = app
        .post(&[JSON], json!({ "query": "{ nope" }).to_string())
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers[header::CONTENT_TYPE], "application/json");
    assert_code(&r.body, "BAD_USER_INPUT");
}

#[tokio::test]
async fn batches_are_capped() {
    let app = TestApp::spawn().await;
    let one = json!({ "query": "{ __typename }" });
    let r = app
        .post(&[JSON], Value::Array(vec![one.clone(); 10]).to_string())
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body.as_array().map(Vec::len), Some(10));
    let r = app
        .post(&[JSON], Value::Array(vec![one.clone(); 11]).to_string())
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_code(&r.body, "BAD_USER_INPUT");

    let off = TestApp::with_env(&[("GRAPHQL_MAX_BATCH", "0")]).await;
    let r = off
        .post(&[JSON], Value::Array(vec![one; 2]).to_string())
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn internal_errors_hide_the_cause_and_carry_a_request_id() {
    let app = TestApp::spawn().await;
    app.state
        .db
        .execute_raw(Statement::from_string(
            app.state.db.get_database_backend(),
            "DROP TABLE otp_codes",
        ))
        .await
        .expect("drop");
    let r = app
        .post(&[JSON, ("x-request-id", "trace-me")], request_code_body(1))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_code(&r.body, "INTERNAL_SERVER_ERROR");
    assert_eq!(r.body["errors"][0]["extensions"]["requestId"], "trace-me");
    let text = r.body.to_string().to_lowercase();
    for leak in ["otp_codes", "sql", "table", "insert", "relation"] {
        assert!(!text.contains(leak), "leaked {leak:?}: {text}");
    }
}

#[tokio::test]
async fn cors_in_development_allows_any_origin_without_credentials() {
    let app = TestApp::spawn().await;
    let r = app
        .send(
            axum::http::Request::builder()
                .method("OPTIONS")
                .uri("/graphql")
                .header("origin", "https://app.example")
                .header("access-control-request-method", "POST")
                .header(
                    "access-control-request-headers",
                    "content-type,authorization",
                )
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.headers["access-control-allow-origin"], "*");
    assert!(r.headers.get("access-control-allow-credentials").is_none());
}

#[tokio::test]
async fn cors_allowlist_answers_only_listed_origins() {
    let app = TestApp::with_env(&[("CORS_ALLOWED_ORIGINS", "https://good.example")]).await;
    let good = app
        .get("/healthz", &[("origin", "https://good.example")])
        .await;
    assert_eq!(
        good.headers["access-control-allow-origin"],
        "https://good.example"
    );
    let bad = app
        .get("/healthz", &[("origin", "https://evil.example")])
        .await;
    assert!(bad.headers.get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn cors_in_production_is_closed_by_default() {
    let app = TestApp::with_env(&[
        ("APP_ENV", "production"),
        ("OTP_EXPOSE", "false"),
        ("SMS_PROVIDER", "console"),
    ])
    .await;
    let r = app
        .get("/healthz", &[("origin", "https://app.example")])
        .await;
    assert!(r.headers.get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn introspection_is_off_in_production_unless_turned_on() {
    let production = [
        ("APP_ENV", "production"),
        ("OTP_EXPOSE", "false"),
        ("SMS_PROVIDER", "console"),
    ];
    let app = TestApp::with_env(&production).await;
    // async-graphql answers a disabled introspection with null, revealing nothing.
    let body = app
        .gql("{ __schema { queryType { name } } }", json!({}))
        .await;
    assert!(body["data"]["__schema"].is_null(), "{body}");
    // Ordinary queries still work, and errors carry no field suggestions.
    let body = app.gql("{ me { inviteCod } }", json!({})).await;
    let message = body["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(!message.contains("Did you mean"), "{message}");

    let mut on = production.to_vec();
    on.push(("GRAPHQL_INTROSPECTION", "true"));
    let app = TestApp::with_env(&on).await;
    let body = app
        .gql("{ __schema { queryType { name } } }", json!({}))
        .await;
    assert_eq!(body["data"]["__schema"]["queryType"]["name"], "Query");
    // Development suggests.
    let dev = TestApp::spawn().await;
    let body = dev.gql("{ me { inviteCod } }", json!({})).await;
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("Did you mean"),
        "{body}"
    );
}

/// Histogram samples pile up in the recorder until something folds them into buckets: with no
/// scraper that is the upkeep thread alone (the soak's memory growth, docs/faults.md).
#[tokio::test]
async fn metrics_upkeep_runs_whether_or_not_anything_scrapes() {
    let _app = TestApp::spawn().await;
    let threads: Vec<String> = std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_owned())
        .collect();
    assert!(
        threads
            .iter()
            .any(|name| name == phone_auth::metrics::UPKEEP_THREAD),
        "no {} thread among {threads:?}",
        phone_auth::metrics::UPKEEP_THREAD
    );
}

#[tokio::test]
async fn metrics_are_served_in_prometheus_format() {
    let app = TestApp::spawn().await;
    let code = app.code_for(&phone(1)).await;
    app.verify(&phone(1), "0000").await;
    app.verify(&phone(1), &code).await;
    app.settle().await;
    let r = app.get("/metrics", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = r.body.as_str().expect("text");
    for needle in [
        r#"graphql_fields_total{field="requestCode",outcome="ok"}"#,
        r#"graphql_fields_total{field="verifyCode",outcome="ok"}"#,
        "graphql_field_duration_seconds_bucket",
        r#"http_requests_total{route="/graphql",status="200"}"#,
        "http_request_duration_seconds_bucket",
        "sms_codes_issued_total",
        "sms_codes_delivered_total",
        "db_pool_connections",
        "db_pool_max_connections",
    ] {
        assert!(text.contains(needle), "{needle} missing:\n{text}");
    }
    // A wrong guess: either INVALID_CODE or (if the random wrong guess was right) nothing.
    assert!(text.contains("verify_failures_total") || code == "0000");
}
