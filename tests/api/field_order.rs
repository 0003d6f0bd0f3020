//! Response fields come in the order the query selected them (GraphQL spec, "Serialized Map
//! Ordering"), at every level, whatever a resolver waits on: the look-ahead path (nested
//! `invitedUsers` fed by the prefetch), the plain path (a lone `totalCount` through its
//! DataLoader, `users` and its count), fragments and aliases; over POST, GET, JSON batches and
//! the WebSocket.
//!
//! Bodies are parsed into `async_graphql::Value`, whose objects keep their order
//! (`serde_json::Value` would sort the keys and hide the bug).

use async_graphql::Value as Ordered;
use axum::{
    body::Body,
    http::{Request, StatusCode, header},
};
use serde_json::json;

use crate::helpers::{Session, TestApp, assert_ok, phone};

/// In `BASE` as `ADMIN_PHONES`.
const ADMIN: &str = "+79990000001";

fn keys(value: &Ordered) -> Vec<String> {
    match value {
        Ordered::Object(map) => map.keys().map(|k| k.to_string()).collect(),
        other => panic!("not an object: {other}"),
    }
}

/// `value` at `path`: object keys by name, list items by index.
#[track_caller]
fn at<'a>(value: &'a Ordered, path: &[&str]) -> &'a Ordered {
    path.iter().fold(value, |value, step| match value {
        Ordered::Object(map) => map
            .get(*step)
            .unwrap_or_else(|| panic!("no {step} in {value}")),
        Ordered::List(items) => step
            .parse::<usize>()
            .ok()
            .and_then(|i| items.get(i))
            .unwrap_or_else(|| panic!("no item {step} in {value}")),
        other => panic!("cannot step into {other} with {step}"),
    })
}

/// The response key of each selection (`alias: field(args) { … }` → `alias`).
fn response_keys(selections: &[&str]) -> Vec<String> {
    selections
        .iter()
        .map(|s| {
            let head = s.split([' ', '(', '{']).next().unwrap_or(s);
            head.trim_end_matches(':').to_owned()
        })
        .collect()
}

fn rotated<'a>(items: &[&'a str], by: usize) -> Vec<&'a str> {
    let mut items = items.to_vec();
    let len = items.len();
    items.rotate_left(by % len);
    items
}

fn parse(bytes: &[u8]) -> Ordered {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(bytes)))
}

fn no_errors(body: &Ordered) {
    if let Ordered::Object(map) = body {
        assert!(!map.contains_key("errors"), "{body}");
    }
}

async fn post(app: &TestApp, token: &str, body: serde_json::Value) -> Ordered {
    let request = Request::post("/graphql")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::from(body.to_string()))
        .expect("request builds");
    let (status, _, bytes) = app.send_raw(request).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    parse(&bytes)
}

async fn query(app: &TestApp, token: &str, query: &str) -> Ordered {
    let body = post(app, token, json!({ "query": query })).await;
    no_errors(&body);
    body
}

async fn get(app: &TestApp, token: &str, query: &str) -> Ordered {
    let encoded: String = query
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let request = Request::get(format!("/graphql?query={encoded}"))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .expect("request builds");
    let (status, _, bytes) = app.send_raw(request).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    let body = parse(&bytes);
    no_errors(&body);
    body
}

/// An inviter with two invitees, the first of whom has an invitee of their own: every level
/// of a nested `invitedUsers` has rows.
async fn inviter_with_a_tree(app: &TestApp) -> Session {
    let inviter = app.sign_in(&phone(1)).await;
    let first = app.sign_in(&phone(2)).await;
    assert_ok(&app.activate(&first, &inviter.invite_code).await);
    let second = app.sign_in(&phone(3)).await;
    assert_ok(&app.activate(&second, &inviter.invite_code).await);
    let grandchild = app.sign_in(&phone(4)).await;
    assert_ok(&app.activate(&grandchild, &first.invite_code).await);
    inviter
}

const NESTED: &str = "invitedUsers(first: 5) { nodes { phone id } totalCount }";

/// `me` with nested `invitedUsers`, its selections rotated by `r` at three levels.
fn nested_query(r: usize) -> (String, [Vec<String>; 3]) {
    let node = rotated(&[NESTED, "id", "phone"], r);
    let node_selection = format!("nodes {{ {} }}", node.join(" "));
    let connection = rotated(
        &[
            "pageInfo { endCursor hasNextPage }",
            "totalCount",
            &node_selection,
            "edges { cursor node { id } }",
        ],
        r,
    );
    let connection_selection = format!("invitedUsers(first: 1) {{ {} }}", connection.join(" "));
    let me = rotated(&[&connection_selection, "createdAt", "id", "phone"], r);
    let query = format!("{{ me {{ {} }} }}", me.join(" "));
    (
        query,
        [
            response_keys(&me),
            response_keys(&connection),
            response_keys(&node),
        ],
    )
}

#[track_caller]
fn assert_nested_order(body: &Ordered, expected: &[Vec<String>; 3], query: &str) {
    let me = at(body, &["data", "me"]);
    assert_eq!(keys(me), expected[0], "{query}\n{body}");
    let connection = at(me, &["invitedUsers"]);
    assert_eq!(keys(connection), expected[1], "{query}\n{body}");
    let node = at(connection, &["nodes", "0"]);
    assert_eq!(keys(node), expected[2], "{query}\n{body}");
    let grand = at(node, &["invitedUsers"]);
    assert_eq!(keys(grand), ["nodes", "totalCount"], "{body}");
    assert_eq!(keys(at(grand, &["nodes", "0"])), ["phone", "id"], "{body}");
}

#[tokio::test]
async fn nested_invited_users_keep_the_selection_order_at_every_level() {
    let app = TestApp::spawn().await;
    let inviter = inviter_with_a_tree(&app).await;
    // The query, as it was reported.
    let body = query(
        &app,
        &inviter.access_token,
        "{ me { invitedUsers(first: 1) { pageInfo { endCursor } totalCount nodes { id } } \
         createdAt id phone } }",
    )
    .await;
    let me = at(&body, &["data", "me"]);
    assert_eq!(keys(me), ["invitedUsers", "createdAt", "id", "phone"]);
    assert_eq!(
        keys(at(me, &["invitedUsers"])),
        ["pageInfo", "totalCount", "nodes"]
    );
    // Every field first, last and in between, at each level.
    for r in 0..4 {
        let (text, expected) = nested_query(r);
        let body = query(&app, &inviter.access_token, &text).await;
        assert_nested_order(&body, &expected, &text);
    }
}

#[tokio::test]
async fn get_and_json_batches_keep_the_selection_order() {
    let app = TestApp::spawn().await;
    let inviter = inviter_with_a_tree(&app).await;
    for r in 0..2 {
        let (text, expected) = nested_query(r);
        let body = get(&app, &inviter.access_token, &text).await;
        assert_nested_order(&body, &expected, &text);
    }
    // A batch is serialised differently from a single response: it must keep the order too.
    let (first, first_expected) = nested_query(0);
    let (second, second_expected) = nested_query(3);
    let batch = post(
        &app,
        &inviter.access_token,
        json!([{ "query": first }, { "query": second }]),
    )
    .await;
    let Ordered::List(results) = &batch else {
        panic!("a batch answers a list: {batch}");
    };
    assert_eq!(results.len(), 2, "{batch}");
    no_errors(&results[0]);
    no_errors(&results[1]);
    assert_nested_order(&results[0], &first_expected, &first);
    assert_nested_order(&results[1], &second_expected, &second);
}

#[tokio::test]
async fn counts_without_look_ahead_keep_the_selection_order() {
    let app = TestApp::spawn().await;
    let inviter = inviter_with_a_tree(&app).await;
    // Only totalCount: no rows and no prefetch; the count goes through its DataLoader.
    for r in 0..3 {
        let me = rotated(&["invitedUsers { totalCount }", "id", "phone"], r);
        let text = format!("{{ me {{ {} }} }}", me.join(" "));
        let body = query(&app, &inviter.access_token, &text).await;
        assert_eq!(
            keys(at(&body, &["data", "me"])),
            response_keys(&me),
            "{text}"
        );
    }

    // users: its totalCount is a query of its own.
    let admin = app.sign_in(ADMIN).await;
    for r in 0..4 {
        let connection = rotated(
            &[
                "totalCount",
                "edges { node { createdAt id phone } cursor }",
                "pageInfo { hasNextPage endCursor }",
                "nodes { invitedUsers { totalCount } phone }",
            ],
            r,
        );
        let text = format!("{{ users(first: 3) {{ {} }} }}", connection.join(" "));
        let body = query(&app, &admin.access_token, &text).await;
        let users = at(&body, &["data", "users"]);
        assert_eq!(keys(users), response_keys(&connection), "{text}\n{body}");
        assert_eq!(
            keys(at(users, &["edges", "0"])),
            ["node", "cursor"],
            "{body}"
        );
        assert_eq!(
            keys(at(users, &["edges", "0", "node"])),
            ["createdAt", "id", "phone"]
        );
        assert_eq!(
            keys(at(users, &["nodes", "0"])),
            ["invitedUsers", "phone"],
            "{body}"
        );
    }
}

#[tokio::test]
async fn fragments_and_aliases_keep_the_selection_order() {
    let app = TestApp::spawn().await;
    let inviter = inviter_with_a_tree(&app).await;
    let text = "query { me { ...Who invited: invitedUsers(first: 2) { n: totalCount \
                ... on UserConnection { nodes { invitedUsers { totalCount } phone } } } \
                createdAt } } \
                fragment Who on User { phone myId: id }";
    let body = query(&app, &inviter.access_token, text).await;
    let me = at(&body, &["data", "me"]);
    assert_eq!(
        keys(me),
        ["phone", "myId", "invited", "createdAt"],
        "{body}"
    );
    assert_eq!(keys(at(me, &["invited"])), ["n", "nodes"], "{body}");
    assert_eq!(
        keys(at(me, &["invited", "nodes", "0"])),
        ["invitedUsers", "phone"],
        "{body}"
    );
}

/// Subscription events are ordered by the same pass (the WebSocket runs operations through
/// `GraphqlExecutor::execute_stream`): `invitedUsers` waits on its loader and would come last.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_events_keep_the_selection_order() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;

    use crate::socket_client::{connect, serve, start, wait_until_subscribed};

    let app = TestApp::spawn().await;
    let addr = serve(&app).await;
    let inviter = app.sign_in(&phone(1)).await;
    let mut socket = connect(addr, Some(&inviter.access_token)).await;
    start(
        &mut socket,
        "1",
        "subscription { invitedUserJoined { invitedUsers { totalCount } phone \
         activatedInviteCode id } }",
    )
    .await;
    wait_until_subscribed(&app, 1).await;
    let invitee = app.sign_in(&phone(2)).await;
    assert_ok(&app.activate(&invitee, &inviter.invite_code).await);

    let event = loop {
        let frame = tokio::time::timeout(std::time::Duration::from_secs(10), socket.next())
            .await
            .expect("an event within 10 s")
            .expect("the socket is open")
            .expect("a frame");
        if let Message::Text(text) = frame {
            break parse(text.as_bytes());
        }
    };
    let joined = at(&event, &["payload", "data", "invitedUserJoined"]);
    assert_eq!(
        keys(joined),
        ["invitedUsers", "phone", "activatedInviteCode", "id"],
        "{event}"
    );
}
