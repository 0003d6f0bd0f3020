//! The contract's configuration, observed from outside: each variable of API.md set to a value
//! other than its default changes what a client sees in exactly the way the contract says, and
//! the defaults the rest of the suite turns off (per-IP and global caps) hold at their
//! defaults. Also: `/readyz` without a database, the default page size, and the running
//! server's introspection against `schema.graphql` as a whole.

use std::collections::BTreeSet;

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_code, assert_ok, phone, wrong};

#[track_caller]
fn retry_after(body: &Value) -> u64 {
    body["errors"][0]["extensions"]["retryAfter"]
        .as_u64()
        .unwrap_or_else(|| panic!("no retryAfter: {body}"))
}

#[track_caller]
fn attempts_left(body: &Value) -> u64 {
    body["errors"][0]["extensions"]["attemptsLeft"]
        .as_u64()
        .unwrap_or_else(|| panic!("no attemptsLeft: {body}"))
}

fn seconds_from_now(app: &TestApp, at: &Value) -> i64 {
    let at: DateTime<Utc> = at
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a DateTime: {at}"));
    (at - phone_auth::clock::Clock::now(&app.clock)).num_seconds()
}

/// A valid Russian mobile number in a number range (E.164 without the last 4 digits) of its
/// own for each `n` < 1000, so per-range rules never count two of them together.
fn spread_phone(n: u32) -> String {
    phone(n * 10_000)
}

// --- codes ---------------------------------------------------------------------------------

#[tokio::test]
async fn otp_max_attempts_sets_how_many_wrong_guesses_kill_a_code() {
    let app = TestApp::with_env(&[("OTP_MAX_ATTEMPTS", "2")]).await;
    let code = app.code_for(&phone(1)).await;
    for left in [1, 0] {
        let body = app.verify(&phone(1), &wrong(&code)).await;
        assert_code(&body, "INVALID_CODE");
        assert_eq!(attempts_left(&body), left, "{body}");
    }
    // Dead after two: the right code is refused until a new one is requested.
    let body = app.verify(&phone(1), &code).await;
    assert_code(&body, "RATE_LIMITED");
    assert_eq!(retry_after(&body), 60);
}

#[tokio::test]
async fn otp_resend_cooldown_seconds_sets_when_a_new_code_may_be_sent() {
    let app = TestApp::with_env(&[("OTP_RESEND_COOLDOWN_SECONDS", "10")]).await;
    let body = app.request_code(&phone(1)).await;
    assert_ok(&body);
    let resend = &body["data"]["requestCode"]["resendAvailableAt"];
    assert_eq!(seconds_from_now(&app, resend), 10);
    app.advance(9);
    let body = app.request_code(&phone(1)).await;
    assert_code(&body, "RATE_LIMITED");
    assert_eq!(retry_after(&body), 1);
    app.advance(1);
    assert_ok(&app.request_code(&phone(1)).await);
}

#[tokio::test]
async fn otp_ttl_seconds_sets_the_life_of_a_code() {
    let app = TestApp::with_env(&[("OTP_TTL_SECONDS", "30")]).await;
    let body = app.request_code(&phone(1)).await;
    assert_ok(&body);
    let payload = &body["data"]["requestCode"];
    assert_eq!(seconds_from_now(&app, &payload["expiresAt"]), 30);
    let code = payload["devCode"].as_str().expect("devCode").to_owned();
    app.advance(29);
    assert_code(&app.verify(&phone(1), &wrong(&code)).await, "INVALID_CODE");
    app.advance(1);
    assert_code(&app.verify(&phone(1), &code).await, "CODE_EXPIRED");
}

#[tokio::test]
async fn access_token_ttl_seconds_sets_expires_in_and_the_tokens_life() {
    let app = TestApp::with_env(&[("ACCESS_TOKEN_TTL_SECONDS", "120")]).await;
    let code = app.code_for(&phone(1)).await;
    let body = app.verify(&phone(1), &code).await;
    assert_ok(&body);
    assert_eq!(body["data"]["verifyCode"]["expiresIn"], 120);
    let token = body["data"]["verifyCode"]["accessToken"]
        .as_str()
        .expect("accessToken")
        .to_owned();
    let me = "{ me { id } }";
    app.advance(119);
    assert_ok(&app.gql_as(&token, me, json!({})).await);
    // Past 120 s and the few seconds of tolerated clock skew.
    app.advance(10);
    assert_code(&app.gql_as(&token, me, json!({})).await, "UNAUTHENTICATED");
}

#[tokio::test]
async fn default_region_reads_national_numbers_of_that_region() {
    let app = TestApp::with_env(&[("DEFAULT_REGION", "US")]).await;
    let body = app.request_code("(650) 253-0000").await;
    assert_ok(&body);
    assert_eq!(body["data"]["requestCode"]["phone"], "+16502530000");
    // A Russian number in national form means nothing in the US.
    let body = app.request_code("8 (912) 345-67-89").await;
    assert_code(&body, "BAD_USER_INPUT");
    assert_eq!(body["errors"][0]["extensions"]["field"], "phone");
    // International form still works for every country.
    assert_ok(&app.request_code("+7 912 345-67-89").await);
}

// --- per-phone caps --------------------------------------------------------------------------

#[tokio::test]
async fn phone_codes_per_hour_caps_codes_to_one_phone() {
    let app = TestApp::with_env(&[("PHONE_CODES_PER_HOUR", "2")]).await;
    for _ in 0..2 {
        assert_ok(&app.request_code(&phone(1)).await);
        app.advance(61);
    }
    let body = app.request_code(&phone(1)).await;
    assert_code(&body, "RATE_LIMITED");
    assert_eq!(retry_after(&body), 3600 - 2 * 61);
    assert_ok(&app.request_code(&phone(2)).await);
}

#[tokio::test]
async fn phone_codes_per_day_caps_codes_to_one_phone() {
    let app = TestApp::with_env(&[("PHONE_CODES_PER_DAY", "3")]).await;
    for _ in 0..3 {
        assert_ok(&app.request_code(&phone(1)).await);
        app.advance(3600);
    }
    // The hourly window is clear (one code an hour); the daily one is full until the first
    // code is 24 hours old.
    let body = app.request_code(&phone(1)).await;
    assert_code(&body, "RATE_LIMITED");
    assert_eq!(retry_after(&body), 24 * 3600 - 3 * 3600);
}

#[tokio::test]
async fn phone_failures_per_month_locks_the_phone() {
    let app = TestApp::with_env(&[("PHONE_FAILURES_PER_MONTH", "4")]).await;
    let code = app.code_for(&phone(1)).await;
    for left in [4, 3, 2, 1] {
        let body = app.verify(&phone(1), &wrong(&code)).await;
        assert_code(&body, "INVALID_CODE");
        assert_eq!(attempts_left(&body), left);
    }
    // The code has an attempt left and the daily budget (10) is far off: only the monthly
    // one refuses, until the first failure is 30 days old.
    let body = app.verify(&phone(1), &code).await;
    assert_code(&body, "RATE_LIMITED");
    assert_eq!(retry_after(&body), 30 * 24 * 3600);
    app.advance(61);
    let body = app.request_code(&phone(1)).await;
    assert_code(&body, "RATE_LIMITED");
    assert_eq!(retry_after(&body), 30 * 24 * 3600 - 61);
}

// --- per-IP and global caps at their defaults -------------------------------------------------

#[tokio::test]
async fn ip_codes_per_hour_default_is_10() {
    let app = TestApp::with_defaults_for(&["IP_CODES_PER_HOUR"], &[]).await;
    for n in 0..10 {
        assert_ok(&app.request_code(&spread_phone(n)).await);
    }
    let body = app.request_code(&spread_phone(10)).await;
    assert_code(&body, "RATE_LIMITED");
    assert_eq!(retry_after(&body), 3600);
}

#[tokio::test]
async fn ip_codes_per_day_default_is_50() {
    let app = TestApp::with_defaults_for(&["IP_CODES_PER_DAY"], &[]).await;
    for hour in 0..5 {
        for n in 0..10 {
            assert_ok(&app.request_code(&spread_phone(hour * 10 + n)).await);
        }
        app.advance(3600);
    }
    let body = app.request_code(&spread_phone(50)).await;
    assert_code(&body, "RATE_LIMITED");
    assert_eq!(retry_after(&body), 24 * 3600 - 5 * 3600);
}

#[tokio::test]
async fn ip_verify_per_hour_default_is_60() {
    let app = TestApp::with_defaults_for(&["IP_VERIFY_PER_HOUR"], &[]).await;
    for n in 0..60 {
        let body = app.verify(&spread_phone(n), "1234").await;
        assert_code(&body, "INVALID_CODE");
    }
    let body = app.verify(&spread_phone(60), "1234").await;
    assert_code(&body, "RATE_LIMITED");
    assert_eq!(retry_after(&body), 3600);
}

#[tokio::test]
async fn sms_global_per_minute_default_is_60() {
    let app = TestApp::with_defaults_for(&["SMS_GLOBAL_PER_MINUTE"], &[]).await;
    for n in 0..60 {
        let body = app.request_code(&spread_phone(n)).await;
        assert_ok(&body);
    }
    let body = app.request_code(&spread_phone(60)).await;
    assert_code(&body, "RATE_LIMITED");
    assert_eq!(retry_after(&body), 60);
}

// --- transport ---------------------------------------------------------------------------------

#[tokio::test]
async fn max_body_bytes_sets_the_largest_request() {
    let app = TestApp::with_env(&[("MAX_BODY_BYTES", "1024")]).await;
    let body_of = |len: usize| {
        let head = r#"{"query":"{ __typename }""#;
        let padding = " ".repeat(len - head.len() - 1);
        format!("{head}{padding}}}")
    };
    let json = ("content-type", "application/json");
    let fits = app.post(&[json], body_of(1024)).await;
    assert_eq!(fits.status, StatusCode::OK, "{}", fits.body);
    assert_ok(&fits.body);
    let over = app.post(&[json], body_of(1025)).await;
    assert_eq!(over.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", over.body);
    assert_code(&over.body, "BAD_USER_INPUT");
}

#[tokio::test]
async fn graphql_max_batch_sets_the_largest_batch() {
    let app = TestApp::with_env(&[("GRAPHQL_MAX_BATCH", "3")]).await;
    let json = ("content-type", "application/json");
    let one = json!({ "query": "{ __typename }" });
    let r = app
        .post(&[json], Value::Array(vec![one.clone(); 3]).to_string())
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body.as_array().map(Vec::len), Some(3));
    let r = app
        .post(&[json], Value::Array(vec![one; 4]).to_string())
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_code(&r.body, "BAD_USER_INPUT");
}

#[tokio::test]
async fn readyz_fails_when_the_database_is_gone() {
    let app = TestApp::spawn().await;
    let ready = app.get("/readyz", &[]).await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.body);
    // Closing the pool every handle shares: the server can no longer reach the database.
    app.state.db.clone().close().await.expect("the pool closes");
    let ready = app.get("/readyz", &[]).await;
    assert_eq!(
        ready.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        ready.body
    );
    // The process itself is still up.
    assert_eq!(app.get("/healthz", &[]).await.status, StatusCode::OK);
}

// --- pages ---------------------------------------------------------------------------------

#[tokio::test]
async fn lists_default_to_pages_of_20() {
    let app = TestApp::spawn().await;
    let admin = app.sign_in("+79990000001").await;
    for n in 0..21 {
        let invitee = app.sign_in(&phone(n)).await;
        assert_ok(&app.activate(&invitee, &admin.invite_code).await);
    }
    let body = app
        .gql_as(
            &admin.access_token,
            "{ users { totalCount nodes { id } pageInfo { hasNextPage } } \
               me { invitedUsers { totalCount nodes { id } pageInfo { hasNextPage } } } }",
            json!({}),
        )
        .await;
    assert_ok(&body);
    for (list, total) in [
        (&body["data"]["users"], 22),
        (&body["data"]["me"]["invitedUsers"], 21),
    ] {
        assert_eq!(list["totalCount"], total, "{list}");
        assert_eq!(list["nodes"].as_array().map(Vec::len), Some(20), "{list}");
        assert_eq!(list["pageInfo"]["hasNextPage"], true, "{list}");
    }
}

// --- the schema ----------------------------------------------------------------------------------

const INTROSPECTION: &str = r#"
query {
  __schema {
    queryType { name } mutationType { name } subscriptionType { name }
    types {
      kind name description
      fields(includeDeprecated: true) {
        name description isDeprecated deprecationReason
        args { name description defaultValue type { ...T } }
        type { ...T }
      }
      inputFields { name description defaultValue type { ...T } }
      interfaces { name }
      possibleTypes { name }
      enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
    }
  }
}
fragment T on __Type { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } }
"#;

const BUILT_IN_SCALARS: [&str; 5] = ["String", "Int", "Float", "Boolean", "ID"];

/// `[User!]!` from an introspected type reference.
fn type_ref(t: &Value) -> String {
    match t["kind"].as_str() {
        Some("NON_NULL") => format!("{}!", type_ref(&t["ofType"])),
        Some("LIST") => format!("[{}]", type_ref(&t["ofType"])),
        _ => t["name"].as_str().unwrap_or("?").to_owned(),
    }
}

fn described(line: String, description: Option<&str>) -> String {
    match description.map(str::trim).filter(|d| !d.is_empty()) {
        Some(d) => format!("{line}  # {d}"),
        None => line,
    }
}

/// One line per type, field, argument, input field, enum value, interface and union member,
/// with its type, default value and description: what SDL states, from introspection.
fn lines_from_introspection(schema: &Value) -> BTreeSet<String> {
    let mut lines = BTreeSet::new();
    for t in schema["types"].as_array().expect("types") {
        let name = t["name"].as_str().expect("a type name");
        if name.starts_with("__") || BUILT_IN_SCALARS.contains(&name) {
            continue;
        }
        let kind = t["kind"].as_str().expect("a kind");
        lines.insert(described(
            format!("{kind} {name}"),
            t["description"].as_str(),
        ));
        for field in t["fields"].as_array().into_iter().flatten() {
            let field_name = field["name"].as_str().unwrap_or("?");
            let mut line = format!("{name}.{field_name}: {}", type_ref(&field["type"]));
            if field["isDeprecated"] == true {
                line.push_str(&format!(
                    " @deprecated({})",
                    field["deprecationReason"].as_str().unwrap_or("")
                ));
            }
            lines.insert(described(line, field["description"].as_str()));
            for arg in field["args"].as_array().into_iter().flatten() {
                lines.insert(input_line(
                    &format!(
                        "{name}.{field_name}({})",
                        arg["name"].as_str().unwrap_or("?")
                    ),
                    arg,
                ));
            }
        }
        for input in t["inputFields"].as_array().into_iter().flatten() {
            lines.insert(input_line(
                &format!("{name}.{}", input["name"].as_str().unwrap_or("?")),
                input,
            ));
        }
        for value in t["enumValues"].as_array().into_iter().flatten() {
            lines.insert(described(
                format!("{name}::{}", value["name"].as_str().unwrap_or("?")),
                value["description"].as_str(),
            ));
        }
        for interface in t["interfaces"].as_array().into_iter().flatten() {
            lines.insert(format!("{name} implements {}", interface["name"]));
        }
        if kind == "UNION" {
            for member in t["possibleTypes"].as_array().into_iter().flatten() {
                lines.insert(format!("{name} | {}", member["name"]));
            }
        }
    }
    lines
}

fn input_line(path: &str, input: &Value) -> String {
    let mut line = format!("{path}: {}", type_ref(&input["type"]));
    if let Some(default) = input["defaultValue"].as_str() {
        line.push_str(&format!(" = {default}"));
    }
    described(line, input["description"].as_str())
}

/// The same lines from an SDL document.
fn lines_from_sdl(sdl: &str) -> BTreeSet<String> {
    use async_graphql::parser::types::{TypeKind, TypeSystemDefinition};
    let document = async_graphql::parser::parse_schema(sdl).expect("schema.graphql parses");
    let text = |d: &Option<async_graphql::Positioned<String>>| d.as_ref().map(|d| d.node.clone());
    let mut lines = BTreeSet::new();
    for definition in document.definitions {
        let TypeSystemDefinition::Type(t) = definition else {
            continue;
        };
        let t = t.node;
        let name = t.name.node.to_string();
        let input_line =
            |path: String, input: &async_graphql::parser::types::InputValueDefinition| {
                let mut line = format!("{path}: {}", input.ty.node);
                if let Some(default) = &input.default_value {
                    line.push_str(&format!(" = {}", default.node));
                }
                described(line, text(&input.description).as_deref())
            };
        let (kind, fields, interfaces) = match &t.kind {
            TypeKind::Scalar => ("SCALAR", None, None),
            TypeKind::Object(o) => ("OBJECT", Some(&o.fields), Some(&o.implements)),
            TypeKind::Interface(i) => ("INTERFACE", Some(&i.fields), Some(&i.implements)),
            TypeKind::Union(u) => {
                for member in &u.members {
                    lines.insert(format!("{name} | \"{}\"", member.node));
                }
                ("UNION", None, None)
            }
            TypeKind::Enum(e) => {
                for value in &e.values {
                    lines.insert(described(
                        format!("{name}::{}", value.node.value.node),
                        text(&value.node.description).as_deref(),
                    ));
                }
                ("ENUM", None, None)
            }
            TypeKind::InputObject(i) => {
                for input in &i.fields {
                    lines.insert(input_line(
                        format!("{name}.{}", input.node.name.node),
                        &input.node,
                    ));
                }
                ("INPUT_OBJECT", None, None)
            }
        };
        if BUILT_IN_SCALARS.contains(&name.as_str()) {
            continue;
        }
        lines.insert(described(
            format!("{kind} {name}"),
            text(&t.description).as_deref(),
        ));
        for interface in interfaces.into_iter().flatten() {
            lines.insert(format!("{name} implements \"{}\"", interface.node));
        }
        for field in fields.into_iter().flatten() {
            let field = &field.node;
            let mut line = format!("{name}.{}: {}", field.name.node, field.ty.node);
            if let Some(deprecated) = field
                .directives
                .iter()
                .find(|d| d.node.name.node == "deprecated")
            {
                let reason = deprecated
                    .node
                    .get_argument("reason")
                    .map(|r| match &r.node {
                        async_graphql::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .unwrap_or_else(|| "No longer supported".to_owned());
                line.push_str(&format!(" @deprecated({reason})"));
            }
            lines.insert(described(line, text(&field.description).as_deref()));
            for arg in &field.arguments {
                lines.insert(input_line(
                    format!("{name}.{}({})", field.name.node, arg.node.name.node),
                    &arg.node,
                ));
            }
        }
    }
    lines
}

/// Every type, field, argument, default and description the server introspects is in
/// `schema.graphql` and the reverse: the file is the served schema, not a look-alike.
#[tokio::test]
async fn introspection_matches_schema_graphql_as_a_whole() {
    let app = TestApp::spawn().await;
    let body = app.gql(INTROSPECTION, json!({})).await;
    assert_ok(&body);
    let schema = &body["data"]["__schema"];
    assert_eq!(schema["queryType"]["name"], "Query");
    assert_eq!(schema["mutationType"]["name"], "Mutation");
    assert_eq!(schema["subscriptionType"]["name"], "Subscription");
    let served = lines_from_introspection(schema);

    let file = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql"))
        .expect("schema.graphql is readable");
    let written = lines_from_sdl(&file);

    let only_served: Vec<_> = served.difference(&written).collect();
    let only_written: Vec<_> = written.difference(&served).collect();
    assert!(
        only_served.is_empty() && only_written.is_empty(),
        "served but not in schema.graphql: {only_served:#?}\nin schema.graphql but not served: {only_written:#?}"
    );
    // The comparison sees the whole schema: a changed default or description breaks it.
    assert!(served.len() > 50, "{served:#?}");
    assert_ne!(lines_from_sdl(&file.replacen("= 20", "= 21", 1)), served);
    assert_ne!(
        lines_from_sdl(&file.replacen("The signed-in user", "A signed-in user", 1)),
        served
    );
}
