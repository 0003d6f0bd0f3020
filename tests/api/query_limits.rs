//! The query limits, calibrated from the contract (docs/tools.md, "Query limits"): the standard
//! introspection query is answered; every operation of the contract at page size 100 with every
//! field selected passes; each limit refuses, with its own message, a query that only it refuses.

use std::collections::HashMap;

use axum::http::StatusCode;
use futures_util::SinkExt;
use serde_json::{Value, json};

use crate::{
    helpers::{TestApp, assert_code, assert_ok, phone},
    socket_client::{Socket, connect, next_for, serve, start},
};

const TOO_DEEP: &str = "Query is nested too deep.";
const TOO_COMPLEX: &str = "Query is too complex.";
/// In the test configuration's `ADMIN_PHONES`.
const ADMIN: &str = "+79990000001";
const JSON: (&str, &str) = ("content-type", "application/json");

/// The query graphql-js's `getIntrospectionQuery()` builds, as GraphiQL and graphql-codegen send
/// it. `all_options` turns on every option graphql-js 16 has (descriptions, specifiedByUrl,
/// directiveIsRepeatable, schemaDescription, inputValueDeprecation, oneOf); `type_depth` is how
/// many `ofType` levels the type references follow (7 in graphql-js 16, `typeDepth` 9 by default
/// in graphql-js 17).
fn introspection_query(all_options: bool, type_depth: usize) -> String {
    let on = |text: &'static str| if all_options { text } else { "" };
    let mut type_ref = String::from("kind name");
    for _ in 0..type_depth {
        type_ref = format!("kind name ofType {{ {type_ref} }}");
    }
    let deprecated_inputs = on("(includeDeprecated: true)");
    format!(
        "query IntrospectionQuery {{ __schema {{ {schema_description} \
           queryType {{ name }} mutationType {{ name }} subscriptionType {{ name }} \
           types {{ ...FullType }} \
           directives {{ name description {repeatable} locations \
             args{deprecated_inputs} {{ ...InputValue }} }} }} }} \
         fragment FullType on __Type {{ kind name description {specified_by} {one_of} \
           fields(includeDeprecated: true) {{ name description \
             args{deprecated_inputs} {{ ...InputValue }} type {{ ...TypeRef }} \
             isDeprecated deprecationReason }} \
           inputFields{deprecated_inputs} {{ ...InputValue }} \
           interfaces {{ ...TypeRef }} \
           enumValues(includeDeprecated: true) {{ name description isDeprecated deprecationReason }} \
           possibleTypes {{ ...TypeRef }} }} \
         fragment InputValue on __InputValue {{ name description type {{ ...TypeRef }} \
           defaultValue {input_deprecation} }} \
         fragment TypeRef on __Type {{ {inner} }}",
        schema_description = on("description"),
        repeatable = on("isRepeatable"),
        specified_by = on("specifiedByURL"),
        one_of = on("isOneOf"),
        input_deprecation = on("isDeprecated deprecationReason"),
        // The outermost level of TypeRef is the fragment itself.
        inner = type_ref,
    )
}

/// Percent-encodes a query string value (everything but unreserved characters).
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

/// The messages of a response's errors.
fn messages(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .filter_map(|e| e["message"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The response was refused by one limit: no data, one error with that limit's message.
#[track_caller]
fn assert_refused_by(body: &Value, message: &str) {
    assert!(body.get("data").is_none_or(Value::is_null), "{body}");
    assert_eq!(messages(body), vec![message.to_owned()], "{body}");
    assert_code(body, "BAD_USER_INPUT");
}

/// The operation passed validation (limits included) and ran: a `data` entry exists (a request
/// that never executed has none) and no error is a limit's.
#[track_caller]
fn assert_admitted(body: &Value, operation: &str) {
    let refused = messages(body)
        .iter()
        .any(|m| m == TOO_DEEP || m == TOO_COMPLEX);
    assert!(
        !refused && body.get("data").is_some(),
        "{operation}\n=> {body}"
    );
}

/// The introspection answer's types, by name.
fn types_by_name(body: &Value) -> HashMap<String, Value> {
    body["data"]["__schema"]["types"]
        .as_array()
        .unwrap_or_else(|| panic!("no types: {body}"))
        .iter()
        .map(|t| (t["name"].as_str().unwrap_or_default().to_owned(), t.clone()))
        .collect()
}

/// The field names of one type in an introspection answer.
fn field_names(types: &HashMap<String, Value>, type_name: &str) -> Vec<String> {
    types[type_name]["fields"]
        .as_array()
        .map(|fields| {
            fields
                .iter()
                .filter_map(|f| f["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[track_caller]
fn assert_full_schema(body: &Value) {
    assert_ok(body);
    let types = types_by_name(body);
    assert!(
        field_names(&types, "Query").contains(&"me".to_owned()),
        "{body}"
    );
    assert!(field_names(&types, "Mutation").contains(&"requestCode".to_owned()));
    assert!(field_names(&types, "User").contains(&"invitedUsers".to_owned()));
    // The type references reach the named type under List and NonNull wrappers:
    // UserConnection.edges is [UserEdge!]!.
    let edges = types["UserConnection"]["fields"]
        .as_array()
        .and_then(|fields| fields.iter().find(|f| f["name"] == "edges"))
        .expect("UserConnection.edges");
    assert_eq!(
        edges["type"]["ofType"]["ofType"]["ofType"]["name"],
        "UserEdge"
    );
}

#[tokio::test]
async fn the_standard_introspection_query_is_answered_at_every_door() {
    let app = TestApp::spawn().await;
    for all_options in [false, true] {
        for type_depth in [7, 9] {
            let query = introspection_query(all_options, type_depth);
            let body = app.gql(&query, json!({})).await;
            assert_full_schema(&body);
        }
    }
    let query = introspection_query(true, 9);
    let r = app
        .get(&format!("/graphql?query={}", url_encode(&query)), &[])
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_full_schema(&r.body);
    // In a JSON batch, next to a data operation that keeps the data limits.
    let batch = json!([{ "query": query }, { "query": "{ __typename }" }]);
    let r = app.post(&[JSON], batch.to_string()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_full_schema(&r.body[0]);
    assert_eq!(r.body[1]["data"]["__typename"], "Query");
}

#[tokio::test]
async fn introspection_turned_on_in_production_answers_the_standard_query() {
    let app = TestApp::with_env(&[
        ("APP_ENV", "production"),
        ("OTP_EXPOSE", "false"),
        ("SMS_PROVIDER", "console"),
        ("GRAPHQL_INTROSPECTION", "true"),
    ])
    .await;
    assert_full_schema(&app.gql(&introspection_query(true, 9), json!({})).await);
}

#[tokio::test]
async fn introspection_has_limits_of_its_own() {
    let app = TestApp::spawn().await;
    // One `ofType` past graphql-js's default typeDepth: 16 deep.
    let body = app.gql(&introspection_query(true, 10), json!({})).await;
    assert_refused_by(&body, TOO_DEEP);
    // Mixed with data, introspection is data: the data depth limit (10) applies.
    let mixed = introspection_query(false, 9).replace(
        "query IntrospectionQuery { __schema {",
        "query IntrospectionQuery { me { id } __schema {",
    );
    assert!(mixed.contains("me { id }"));
    assert_refused_by(&app.gql(&mixed, json!({})).await, TOO_DEEP);
    // The complexity budget holds for introspection too: `__schema` with an alias fan of 1000
    // `types { name }` (2 each) costs 2001; with 999, 1999.
    let fan: String = (0..1000)
        .map(|i| format!("t{i}: types {{ name }} "))
        .collect();
    let body = app
        .gql(&format!("{{ __schema {{ {fan} }} }}"), json!({}))
        .await;
    assert_refused_by(&body, TOO_COMPLEX);
    let fan: String = (0..999)
        .map(|i| format!("t{i}: types {{ name }} "))
        .collect();
    assert_ok(
        &app.gql(&format!("{{ __schema {{ {fan} }} }}"), json!({}))
            .await,
    );
}

/// The contract's operations at their maximum sizes, built from the served schema so that a
/// field added later is covered too: every root field with every field of its result selected;
/// a paginated field (one with `first`) at `first: 100` with all of its fields, nodes and edges
/// together; a paginated field inside a page (`User.invitedUsers` of each row) with its count
/// only, as the README's `users` operation selects it (a page of pages is the hostile shape
/// below); required arguments with placeholder values.
fn contract_operations(types: &HashMap<String, Value>) -> Vec<(String, String)> {
    let mut operations = Vec::new();
    for (kind, root) in [
        ("query", "Query"),
        ("mutation", "Mutation"),
        ("subscription", "Subscription"),
    ] {
        let Some(root_type) = types.get(root) else {
            continue;
        };
        for field in root_type["fields"].as_array().into_iter().flatten() {
            let name = field["name"].as_str().unwrap_or_default();
            let selection = field_selection(types, field, false, &[]).expect("root field");
            operations.push((name.to_owned(), format!("{kind} {{ {selection} }}")));
        }
    }
    operations
}

/// The name of the named type under List and NonNull wrappers.
fn named_type(type_ref: &Value) -> &str {
    match type_ref["name"].as_str() {
        Some(name) => name,
        None => named_type(&type_ref["ofType"]),
    }
}

fn field_selection(
    types: &HashMap<String, Value>,
    field: &Value,
    in_page: bool,
    enclosing: &[String],
) -> Option<String> {
    let name = field["name"].as_str()?;
    let target = named_type(&field["type"]);
    let args = field["args"].as_array().cloned().unwrap_or_default();
    let paginated = args.iter().any(|a| a["name"] == "first");
    let mut arguments: Vec<String> = args
        .iter()
        .filter(|a| a["type"]["kind"] == "NON_NULL" && a["defaultValue"].is_null())
        .map(|a| {
            let arg = a["name"].as_str().unwrap_or_default();
            let value = match (arg, named_type(&a["type"])) {
                ("phone", _) => format!("\"{}\"", phone(500)),
                (_, "Int") => "1".to_owned(),
                (_, "Boolean") => "true".to_owned(),
                _ => "\"1\"".to_owned(),
            };
            format!("{arg}: {value}")
        })
        .collect();
    if paginated && !in_page {
        arguments.push("first: 100".to_owned());
    }
    let arguments = if arguments.is_empty() {
        String::new()
    } else {
        format!("({})", arguments.join(", "))
    };
    let target_type = &types[target];
    if target_type["kind"] != "OBJECT" {
        return Some(format!("{name}{arguments}"));
    }
    let fields = target_type["fields"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let inner: Vec<String> = if paginated && in_page {
        // A page inside a page: its scalar fields (the count) only.
        fields
            .iter()
            .filter(|f| types[named_type(&f["type"])]["kind"] != "OBJECT")
            .filter_map(|f| f["name"].as_str().map(str::to_owned))
            .collect()
    } else if enclosing.iter().any(|t| t == target) {
        return None; // a cycle outside pagination
    } else {
        // Entering a page starts a fresh path: its rows are the page's own objects.
        let mut path = if paginated {
            Vec::new()
        } else {
            enclosing.to_vec()
        };
        path.push(target.to_owned());
        fields
            .iter()
            .filter_map(|f| field_selection(types, f, in_page || paginated, &path))
            .collect()
    };
    Some(format!("{name}{arguments} {{ {} }}", inner.join(" ")))
}

async fn contract_operations_of(app: &TestApp) -> Vec<(String, String)> {
    let body = app.gql(&introspection_query(true, 9), json!({})).await;
    assert_ok(&body);
    contract_operations(&types_by_name(&body))
}

#[tokio::test]
async fn every_contract_operation_at_page_size_100_passes_the_limits() {
    let app = TestApp::spawn().await;
    let admin = app.sign_in(ADMIN).await;
    let operations = contract_operations_of(&app).await;
    let names: Vec<&str> = operations.iter().map(|(name, _)| name.as_str()).collect();
    for expected in [
        "me",
        "users",
        "verifyCode",
        "activateInvite",
        "invitedUserJoined",
    ] {
        assert!(names.contains(&expected), "{names:?}");
    }
    let me = &operations
        .iter()
        .find(|(name, _)| name == "me")
        .expect("me")
        .1;
    for needle in [
        "invitedUsers(first: 100)",
        "edges { cursor node {",
        "nodes {",
    ] {
        assert!(me.contains(needle), "{me}");
    }
    // As the tools send them, and as Apollo Client and urql do: `__typename` in every
    // selection set below the root.
    let with_typenames = operations.iter().map(|(name, operation)| {
        let (root, rest) = operation.split_once("{ ").expect("a selection set");
        let rest = rest.replace("{ ", "{ __typename ");
        (name.clone(), format!("{root}{{ {rest}"))
    });
    let all: Vec<(String, String)> = operations.iter().cloned().chain(with_typenames).collect();
    for (name, operation) in &all {
        if operation.starts_with("query") {
            // Queries run for real, as the admin: data, no error.
            let body = app.gql_as(&admin.access_token, operation, json!({})).await;
            assert_ok(&body);
            assert!(!body["data"][name].is_null(), "{operation}\n=> {body}");
        } else if operation.starts_with("mutation") {
            // Signed out with placeholder arguments: most answer a rule's error, after running.
            let body = app.gql(operation, json!({})).await;
            assert_admitted(&body, operation);
        } else {
            // Over HTTP a subscription passes validation (limits included) and then hears that
            // it belongs on the WebSocket.
            let body = app.gql(operation, json!({})).await;
            assert_eq!(
                messages(&body),
                vec!["Subscriptions are not supported on this transport.".to_owned()],
                "{operation}\n=> {body}"
            );
        }
    }
}

#[tokio::test]
async fn the_costliest_contract_operation_costs_what_the_docs_say() {
    // docs/tools.md: verifyCode (and refreshToken) with every field and the user's first page
    // of 100 costs 1713. At that budget it passes; one less refuses it.
    let at = TestApp::with_env(&[("GRAPHQL_MAX_COMPLEXITY", "1713")]).await;
    let operations = contract_operations_of(&at).await;
    let costliest = &operations
        .iter()
        .find(|(name, _)| name == "verifyCode")
        .expect("verifyCode")
        .1;
    assert_admitted(&at.gql(costliest, json!({})).await, costliest);
    let under = TestApp::with_env(&[("GRAPHQL_MAX_COMPLEXITY", "1712")]).await;
    assert_refused_by(&under.gql(costliest, json!({})).await, TOO_COMPLEX);
}

#[tokio::test]
async fn sessions_is_paid_for_the_most_rows_it_lists() {
    // docs/tools.md: not paginated; it lists at most MAX_LISTED (100) and costs 100 × its 5
    // fields + 1 = 501.
    let sessions = "{ sessions { id createdAt lastUsedAt userAgent current } }";
    let at = TestApp::with_env(&[("GRAPHQL_MAX_COMPLEXITY", "501")]).await;
    let s = at.sign_in(&phone(1)).await;
    let body = at.gql_as(&s.access_token, sessions, json!({})).await;
    assert_ok(&body);
    assert_eq!(body["data"]["sessions"][0]["current"], true, "{body}");
    let under = TestApp::with_env(&[("GRAPHQL_MAX_COMPLEXITY", "500")]).await;
    let s = under.sign_in(&phone(1)).await;
    assert_refused_by(
        &under.gql_as(&s.access_token, sessions, json!({})).await,
        TOO_COMPLEX,
    );
}

#[tokio::test]
async fn sessions_lists_the_newest_hundred() {
    let app = TestApp::spawn().await;
    let s = app.sign_in(&phone(1)).await;
    let user_id: i64 = s.user_id.parse().expect("numeric id");
    // 120 older sign-ins of the same user.
    let now = app.state.clock.now();
    for minutes in 1..=120 {
        phone_auth::services::sessions::create(
            &app.state.db,
            &app.state,
            user_id,
            None,
            now - chrono::Duration::minutes(minutes),
        )
        .await
        .expect("a sign-in");
    }
    let body = app
        .gql_as(&s.access_token, "{ sessions { id current } }", json!({}))
        .await;
    assert_ok(&body);
    let listed = body["data"]["sessions"].as_array().expect("a list");
    assert_eq!(listed.len(), 100, "{body}");
    assert_eq!(listed[0]["current"], true, "newest first: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_or_object_variable_is_refused_at_every_door() {
    // No argument of the schema takes one; async-graphql would copy it once per use while
    // validating, then refuse it. Refused first, at every door, with its own message.
    let app = TestApp::spawn().await;
    let s = app.sign_in(&phone(1)).await;
    let uses: String = (0..200)
        .map(|i| format!("a{i}: invitedUsers(first: $n) {{ totalCount }} "))
        .collect();
    let query = format!("query($n: Int) {{ me {{ {uses} }} }}");
    let list = json!({ "n": vec![[0]; 2000] });
    let message = "Variable \"$n\" is a list or an object; every argument here is a string, a number or a boolean.";
    // POST.
    let started = std::time::Instant::now();
    let body = app.gql_as(&s.access_token, &query, list.clone()).await;
    assert_eq!(messages(&body), vec![message.to_owned()], "{body}");
    assert_code(&body, "BAD_USER_INPUT");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    // An object too; a number passes.
    let body = app
        .gql_as(&s.access_token, &query, json!({ "n": { "x": 1 } }))
        .await;
    assert_eq!(messages(&body), vec![message.to_owned()], "{body}");
    // A number passes this check (here, one use of it).
    let one = "query($n: Int) { me { invitedUsers(first: $n) { totalCount } } }";
    assert_ok(&app.gql_as(&s.access_token, one, json!({ "n": 5 })).await);
    assert_refused_over_get_and_in_a_batch(
        &app,
        &s.access_token,
        &query,
        json!({ "n": [1] }),
        message,
    )
    .await;
    // The WebSocket.
    let addr = serve(&app).await;
    let mut socket = connect(addr, Some(&s.access_token)).await;
    socket
        .send(tokio_tungstenite::tungstenite::Message::text(
            json!({
                "id": "1",
                "type": "subscribe",
                "payload": {
                    "query": "subscription($n: Int) { invitedUserJoined { invitedUsers(first: $n) { totalCount } } }",
                    "variables": { "n": [1] }
                }
            })
            .to_string(),
        ))
        .await
        .expect("send subscribe");
    let errors = socket_errors(&mut socket, "1").await;
    assert_eq!(messages(&errors), vec![message.to_owned()], "{errors}");
}

#[tokio::test]
async fn an_operation_asks_for_at_most_twenty_pages() {
    // Each page is a statement of its own, however small: 21 pages of one row under forged
    // cursors are refused, 20 pass.
    let app = TestApp::spawn().await;
    let s = app.sign_in(&phone(1)).await;
    let pages = |n: usize| {
        let pages: String = (0..n)
            .map(|i| {
                let after = base64_cursor(i);
                format!("a{i}: invitedUsers(first: 1, after: \"{after}\") {{ nodes {{ id }} }} ")
            })
            .collect();
        format!("{{ me {{ {pages} }} }}")
    };
    assert_ok(&app.gql_as(&s.access_token, &pages(20), json!({})).await);
    assert_refused_by(
        &app.gql_as(&s.access_token, &pages(21), json!({})).await,
        TOO_COMPLEX,
    );
    // With the complexity limit off, nothing else refuses it.
    let off = TestApp::with_env(&[("GRAPHQL_MAX_COMPLEXITY", "0")]).await;
    let s = off.sign_in(&phone(1)).await;
    assert_ok(&off.gql_as(&s.access_token, &pages(21), json!({})).await);
}

/// A valid cursor for position `i` (what a client would get back from a page).
fn base64_cursor(i: usize) -> String {
    phone_auth::domain::cursor::encode(phone_auth::domain::cursor::Position {
        at: chrono::DateTime::from_timestamp(1_700_000_000 + i as i64, 0).expect("a time"),
        id: i as i64 + 1,
    })
}

/// `n` aliases of `__typename`.
fn typenames(n: usize) -> String {
    (0..n).map(|i| format!("t{i}: __typename ")).collect()
}

#[tokio::test]
async fn free_fields_under_rows_count_once_per_row() {
    // `__typename` costs nothing to async-graphql, yet resolves once per row: counted per row,
    // under a page of 100, 20 of them make 1 + 1 + 1 + 100 × 20 = 2,003 fields.
    let app = TestApp::spawn().await;
    let s = app.sign_in(&phone(1)).await;
    let auth = format!("Bearer {}", s.access_token);
    let page = |n: usize| {
        format!(
            "query($first: Int) {{ me {{ invitedUsers(first: $first) {{ nodes {{ {} }} }} }} }}",
            typenames(n)
        )
    };
    // POST, `first` from the variables: 100 rows refused, 99 (1,983) pass.
    assert_refused_by(
        &app.gql_as(&s.access_token, &page(20), json!({ "first": 100 }))
            .await,
        TOO_COMPLEX,
    );
    assert_ok(
        &app.gql_as(&s.access_token, &page(20), json!({ "first": 99 }))
            .await,
    );
    // The same document again (now in the document cache) with 100 rows: still refused.
    assert_refused_by(
        &app.gql_as(&s.access_token, &page(20), json!({ "first": 100 }))
            .await,
        TOO_COMPLEX,
    );
    // GET, with the variables in the URL.
    let r = app
        .get(
            &format!(
                "/graphql?query={}&variables={}",
                url_encode(&page(20)),
                url_encode(r#"{"first":100}"#)
            ),
            &[("authorization", auth.as_str())],
        )
        .await;
    assert_refused_by(&r.body, TOO_COMPLEX);
    // sessions: its 100 rows, 20 fields each.
    assert_refused_by(
        &app.gql_as(
            &s.access_token,
            &format!("{{ sessions {{ {} }} }}", typenames(20)),
            json!({}),
        )
        .await,
        TOO_COMPLEX,
    );
    assert_ok(
        &app.gql_as(
            &s.access_token,
            &format!("{{ sessions {{ {} }} }}", typenames(19)),
            json!({}),
        )
        .await,
    );
    // With the complexity limit off, nothing else refuses them.
    let off = TestApp::with_env(&[("GRAPHQL_MAX_COMPLEXITY", "0")]).await;
    let s = off.sign_in(&phone(1)).await;
    assert_ok(
        &off.gql_as(&s.access_token, &page(20), json!({ "first": 100 }))
            .await,
    );
}

/// `me` with `invitedUsers(first: 1) { nodes { … } }` nested `levels` times, ending in
/// `totalCount`: 2 × levels + 1 fields deep, and cheap (each page holds one row).
fn deep_cheap_query(levels: usize) -> String {
    let mut inner = "totalCount".to_owned();
    for level in 0..levels {
        inner = if level == 0 {
            format!("invitedUsers(first: 1) {{ {inner} }}")
        } else {
            format!("invitedUsers(first: 1) {{ nodes {{ {inner} }} }}")
        };
    }
    format!("{{ me {{ {inner} }} }}")
}

#[tokio::test]
async fn the_depth_limit_alone_refuses_a_deep_cheap_query() {
    let app = TestApp::spawn().await;
    let s = app.sign_in(&phone(1)).await;
    // 11 deep (me, then invitedUsers/nodes pairs, then totalCount), costing 10.
    let deep = deep_cheap_query(5);
    assert_eq!(deep.matches('{').count(), 11, "{deep}");
    assert_refused_by(
        &app.gql_as(&s.access_token, &deep, json!({})).await,
        TOO_DEEP,
    );
    // The same chain one level shorter (9 deep) passes: the limit is the depth, not the shape.
    assert_ok(
        &app.gql_as(&s.access_token, &deep_cheap_query(4), json!({}))
            .await,
    );
    // Over GET too.
    let auth = format!("Bearer {}", s.access_token);
    let r = app
        .get(
            &format!("/graphql?query={}", url_encode(&deep)),
            &[("authorization", auth.as_str())],
        )
        .await;
    assert_refused_by(&r.body, TOO_DEEP);
    // With the depth limit off, nothing else refuses it.
    let off = TestApp::with_env(&[("GRAPHQL_MAX_DEPTH", "0")]).await;
    let s = off.sign_in(&phone(1)).await;
    assert_ok(&off.gql_as(&s.access_token, &deep, json!({})).await);
}

#[tokio::test]
async fn the_complexity_limit_alone_refuses_a_shallow_costly_query() {
    let app = TestApp::spawn().await;
    let s = app.sign_in(&phone(1)).await;
    // A page of 100 under each row of a page of 100: 6 deep, 10,000 rows, costs 20,202.
    let costly = "{ me { invitedUsers(first: 100) { nodes { invitedUsers(first: 100) { nodes { id } } } } } }";
    assert_refused_by(
        &app.gql_as(&s.access_token, costly, json!({})).await,
        TOO_COMPLEX,
    );
    // In a JSON batch, the costly operation is refused and its neighbour answered.
    let batch = json!([{ "query": costly }, { "query": "{ __typename }" }]);
    let auth = format!("Bearer {}", s.access_token);
    let r = app
        .post(&[JSON, ("authorization", auth.as_str())], batch.to_string())
        .await;
    assert_refused_by(&r.body[0], TOO_COMPLEX);
    assert_eq!(r.body[1]["data"]["__typename"], "Query");
    // With the complexity limit off, nothing else refuses it.
    let off = TestApp::with_env(&[("GRAPHQL_MAX_COMPLEXITY", "0")]).await;
    let s = off.sign_in(&phone(1)).await;
    assert_ok(&off.gql_as(&s.access_token, costly, json!({})).await);
}

/// `query` with `variables` is refused with `message` over GET, and in a JSON batch while
/// the operation beside it is answered (the POST and WebSocket doors are each test's own).
async fn assert_refused_over_get_and_in_a_batch(
    app: &TestApp,
    token: &str,
    query: &str,
    variables: Value,
    message: &str,
) {
    let auth = format!("Bearer {token}");
    let r = app
        .get(
            &format!(
                "/graphql?query={}&variables={}",
                url_encode(query),
                url_encode(&variables.to_string())
            ),
            &[("authorization", auth.as_str())],
        )
        .await;
    assert_refused_by(&r.body, message);
    let batch = json!([
        { "query": query, "variables": variables },
        { "query": "{ __typename }" }
    ]);
    let r = app
        .post(&[JSON, ("authorization", auth.as_str())], batch.to_string())
        .await;
    assert_refused_by(&r.body[0], message);
    assert_eq!(r.body[1]["data"]["__typename"], "Query");
}

/// The refusal as the WebSocket gives it: an `error` message, or a `next` carrying errors.
async fn socket_errors(socket: &mut Socket, id: &str) -> Value {
    let message = next_for(socket, id).await;
    match message["type"].as_str() {
        Some("next") => message["payload"].clone(),
        Some("error") => json!({ "errors": message["payload"] }),
        _ => panic!("operation {id} was not refused: {message}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_that_selects_only_page_info_is_paid_per_row() {
    // `pageInfo` needs its page loaded (first + 1 rows), so it is paid once per row: under each
    // row of a page of 100 it costs 10,202, not the 202 it cost when it was free.
    let inner = "invitedUsers(first: 100) { pageInfo { hasNextPage } }";
    let costly = format!("{{ me {{ invitedUsers(first: 100) {{ nodes {{ {inner} }} }} }} }}");
    let app = TestApp::spawn().await;
    let s = app.sign_in(&phone(1)).await;
    // POST.
    assert_refused_by(
        &app.gql_as(&s.access_token, &costly, json!({})).await,
        TOO_COMPLEX,
    );
    assert_refused_over_get_and_in_a_batch(&app, &s.access_token, &costly, json!({}), TOO_COMPLEX)
        .await;
    // Aliases of the page each pay their rows, `first + 1`: 19 of them at 100 cost
    // 1 + 19 × 101 = 1,920 and pass; a 20th makes 2,021 and is refused (20 pages are as many
    // as an operation may ask for, so that is the cost refusing).
    let fan = |n: u32| {
        let pages: String = (0..n)
            .map(|i| format!("p{i}: invitedUsers(first: 100) {{ pageInfo {{ hasNextPage }} }} "))
            .collect();
        format!("{{ me {{ {pages} }} }}")
    };
    assert_ok(&app.gql_as(&s.access_token, &fan(19), json!({})).await);
    assert_refused_by(
        &app.gql_as(&s.access_token, &fan(20), json!({})).await,
        TOO_COMPLEX,
    );
    // The WebSocket, on a subscription with the same shape.
    let addr = serve(&app).await;
    let mut socket = connect(addr, Some(&s.access_token)).await;
    let subscription = format!(
        "subscription {{ invitedUserJoined {{ invitedUsers(first: 100) {{ nodes {{ {inner} }} }} }} }}"
    );
    start(&mut socket, "1", &subscription).await;
    assert_refused_by(&socket_errors(&mut socket, "1").await, TOO_COMPLEX);
    // An admin's `users` pays the same way.
    let admin = app.sign_in(ADMIN).await;
    let users = format!("{{ users(first: 100) {{ nodes {{ {inner} }} }} }}");
    assert_refused_by(
        &app.gql_as(&admin.access_token, &users, json!({})).await,
        TOO_COMPLEX,
    );
    // What a client legitimately asks for passes: one page's pageInfo at 100 costs 102.
    assert_ok(
        &app.gql_as(
            &s.access_token,
            &format!("{{ me {{ {inner} }} }}"),
            json!({}),
        )
        .await,
    );
    // With the complexity limit off, nothing else refuses these shapes.
    let off = TestApp::with_env(&[("GRAPHQL_MAX_COMPLEXITY", "0")]).await;
    let s = off.sign_in(&phone(1)).await;
    assert_ok(&off.gql_as(&s.access_token, &costly, json!({})).await);
    assert_ok(&off.gql_as(&s.access_token, &fan(20), json!({})).await);
}

/// `levels` fragments on `on`, each spreading the one below ten times; the last selects
/// `field` ten times: 10^levels fields for a cost of 0 (`__typename`, `totalCount`).
fn fragment_fan(on: &str, field: &str, levels: usize) -> String {
    let mut fragments = String::new();
    for level in 1..=levels {
        let inner = if level == 1 {
            format!("{field} ").repeat(10)
        } else {
            format!("...F{} ", level - 1).repeat(10)
        };
        fragments.push_str(&format!("fragment F{level} on {on} {{ {inner} }}\n"));
    }
    fragments
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragments_that_expand_past_the_budget_are_refused_at_every_door() {
    // async-graphql leaves free fields out of the cost and resolves every spread again, so
    // 10,000 `__typename` through four levels of fragments cost 1; counted expanded (10,112),
    // they are refused with the complexity limit's message.
    let fan = format!(
        "{{ me {{ ...F4 }} }}\n{}",
        fragment_fan("User", "__typename", 4)
    );
    let small = format!(
        "{{ me {{ ...F3 }} }}\n{}",
        fragment_fan("User", "__typename", 3)
    );
    let app = TestApp::spawn().await;
    let s = app.sign_in(&phone(1)).await;
    let auth = format!("Bearer {}", s.access_token);
    // POST.
    assert_refused_by(
        &app.gql_as(&s.access_token, &fan, json!({})).await,
        TOO_COMPLEX,
    );
    // Three levels (me, its spread, and 10 × (1 + 10 × (1 + 9)) with one `__typename` of each
    // set free: 1,012) pass.
    assert_ok(&app.gql_as(&s.access_token, &small, json!({})).await);
    assert_refused_over_get_and_in_a_batch(&app, &s.access_token, &fan, json!({}), TOO_COMPLEX)
        .await;
    // The WebSocket.
    let addr = serve(&app).await;
    let mut socket = connect(addr, Some(&s.access_token)).await;
    let subscription = format!(
        "subscription {{ invitedUserJoined {{ ...F4 }} }}\n{}",
        fragment_fan("User", "__typename", 4)
    );
    start(&mut socket, "1", &subscription).await;
    assert_refused_by(&socket_errors(&mut socket, "1").await, TOO_COMPLEX);
    // An admin's total count, spread 10,000 times, the same way.
    let admin = app.sign_in(ADMIN).await;
    let counts = format!(
        "{{ users(first: 1) {{ ...F4 }} }}\n{}",
        fragment_fan("UserConnection", "totalCount", 4)
    );
    assert_refused_by(
        &app.gql_as(&admin.access_token, &counts, json!({})).await,
        TOO_COMPLEX,
    );
    // The same document a second time (a cached document is not counted again) is still
    // refused: it was never kept.
    assert_refused_by(
        &app.gql_as(&s.access_token, &fan, json!({})).await,
        TOO_COMPLEX,
    );
    // The operations of one document count together (async-graphql validates them all,
    // whichever one runs): two of 1,012 each are refused, even naming one.
    let two = format!(
        "query a {{ me {{ ...F3 }} }} query b {{ me {{ ...F3 }} }}\n{}",
        fragment_fan("User", "__typename", 3)
    );
    let request = json!({ "query": two, "operationName": "a" });
    let r = app
        .post(
            &[JSON, ("authorization", auth.as_str())],
            request.to_string(),
        )
        .await;
    assert_refused_by(&r.body, TOO_COMPLEX);
    // With the complexity limit off, nothing else refuses them.
    let off = TestApp::with_env(&[("GRAPHQL_MAX_COMPLEXITY", "0")]).await;
    let s = off.sign_in(&phone(1)).await;
    let auth = format!("Bearer {}", s.access_token);
    let r = off
        .post(
            &[JSON, ("authorization", auth.as_str())],
            request.to_string(),
        )
        .await;
    assert_eq!(r.body["data"]["me"]["__typename"], "User", "{}", r.body);
    let body = off.gql_as(&s.access_token, &fan, json!({})).await;
    assert_ok(&body);
    assert_eq!(body["data"]["me"]["__typename"], "User");
}

#[tokio::test]
async fn hostile_shapes_are_refused() {
    let app = TestApp::spawn().await;
    let admin = app.sign_in(ADMIN).await;
    let me = contract_operations_of(&app)
        .await
        .into_iter()
        .find(|(name, _)| name == "me")
        .expect("me")
        .1;
    let selection = me
        .strip_prefix("query { me ")
        .and_then(|rest| rest.strip_suffix(" }"))
        .expect("query { me { … } }");
    for (shape, query) in [
        // `first: 100` three levels down.
        (
            "pages of pages of pages",
            "{ users(first: 100) { nodes { invitedUsers(first: 100) { nodes { invitedUsers(first: 100) { nodes { id } } } } } } }".to_owned(),
        ),
        // Deep nesting at the default page size.
        (
            "deep nesting",
            "{ me { invitedUsers { nodes { invitedUsers { nodes { invitedUsers { nodes { id } } } } } } } }".to_owned(),
        ),
        // The biggest contract operation twice under aliases.
        ("alias fan of pages", format!("{{ a: me {selection} b: me {selection} }}")),
        // 2001 aliases of one scalar.
        (
            "alias fan of fields",
            format!(
                "{{ me {{ {} }} }}",
                (0..2001).map(|i| format!("a{i}: id ")).collect::<String>()
            ),
        ),
    ] {
        let body = app.gql_as(&admin.access_token, &query, json!({})).await;
        assert_eq!(messages(&body), vec![TOO_COMPLEX.to_owned()], "{shape}: {body}");
        assert!(body.get("data").is_none(), "{shape}: {body}");
    }
    // Each of the fan's halves alone passes: the whole is refused, not the part.
    assert_ok(
        &app.gql_as(
            &admin.access_token,
            &format!("{{ a: me {selection} }}"),
            json!({}),
        )
        .await,
    );
}
