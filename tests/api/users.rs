//! `users` (admins only, newest first) and `invitedUsers` (oldest first): access, argument
//! checks, cursor pagination, and the DataLoader keeping nested lists to a fixed number of
//! queries.

use serde_json::{Value, json};

use crate::helpers::{Session, TestApp, assert_code, assert_ok, phone};

/// In `BASE` as `ADMIN_PHONES`.
const ADMIN: &str = "+79990000001";

const USERS: &str = "query($first: Int!, $after: String) { users(first: $first, after: $after) { \
                     totalCount edges { cursor node { phone } } nodes { phone } \
                     pageInfo { hasNextPage endCursor } } }";

/// Small selections, so that the complexity limit (which prices `first` rows) stays out of
/// the way of the range checks; see `first_101_with_a_full_selection_is_bad_user_input_on_first`.
const USERS_LIGHT: &str =
    "query($first: Int!) { users(first: $first) { totalCount nodes { phone } } }";
const INVITED_LIGHT: &str =
    "query($first: Int!) { me { invitedUsers(first: $first) { totalCount nodes { phone } } } }";

const INVITED: &str = "query($first: Int!, $after: String) { me { invitedUsers(first: $first, after: $after) { \
                       totalCount edges { cursor node { phone } } nodes { phone } \
                       pageInfo { hasNextPage endCursor } } } }";

/// One page of a `UserConnection`, checked for internal consistency.
#[derive(Debug, PartialEq)]
struct Page {
    total: i64,
    phones: Vec<String>,
    cursors: Vec<String>,
    has_next_page: bool,
    end_cursor: Option<String>,
}

#[track_caller]
fn page(connection: &Value) -> Page {
    let strings = |list: &Value, field: &str| -> Vec<String> {
        list.as_array()
            .unwrap_or_else(|| panic!("a list: {connection}"))
            .iter()
            .map(|item| {
                item.pointer(field)
                    .and_then(Value::as_str)
                    .unwrap_or_else(|| panic!("{field} in {item}"))
                    .to_owned()
            })
            .collect()
    };
    let phones = strings(&connection["nodes"], "/phone");
    let cursors = strings(&connection["edges"], "/cursor");
    assert_eq!(
        strings(&connection["edges"], "/node/phone"),
        phones,
        "edges and nodes agree: {connection}"
    );
    let end_cursor = connection["pageInfo"]["endCursor"]
        .as_str()
        .map(str::to_owned);
    assert_eq!(
        end_cursor.as_ref(),
        cursors.last(),
        "endCursor is the last edge's cursor: {connection}"
    );
    Page {
        total: connection["totalCount"]
            .as_i64()
            .unwrap_or_else(|| panic!("totalCount: {connection}")),
        phones,
        cursors,
        has_next_page: connection["pageInfo"]["hasNextPage"]
            .as_bool()
            .unwrap_or_else(|| panic!("hasNextPage: {connection}")),
        end_cursor,
    }
}

async fn users_page(app: &TestApp, admin: &Session, first: i32, after: Option<&str>) -> Page {
    let body = app
        .gql_as(
            &admin.access_token,
            USERS,
            json!({ "first": first, "after": after }),
        )
        .await;
    assert_ok(&body);
    page(&body["data"]["users"])
}

async fn invited_page(app: &TestApp, user: &Session, first: i32, after: Option<&str>) -> Page {
    let body = app
        .gql_as(
            &user.access_token,
            INVITED,
            json!({ "first": first, "after": after }),
        )
        .await;
    assert_ok(&body);
    page(&body["data"]["me"]["invitedUsers"])
}

/// Signs `phone(n)` in and activates `inviter`'s code for them.
async fn invitee_of(app: &TestApp, inviter: &Session, n: u32) -> Session {
    let user = app.sign_in(&phone(n)).await;
    assert_ok(&app.activate(&user, &inviter.invite_code).await);
    user
}

fn phones_of(sessions: &[Session]) -> Vec<String> {
    sessions.iter().map(|s| s.phone.clone()).collect()
}

/// BAD_USER_INPUT on `field`, reported at `path`, and no data for it.
#[track_caller]
fn assert_bad_input(body: &Value, field: &str, path: &[&str]) {
    assert_code(body, "BAD_USER_INPUT");
    assert_eq!(
        body["errors"][0]["extensions"]["field"], field,
        "response: {body}"
    );
    assert_eq!(body["errors"][0]["path"], json!(path), "response: {body}");
    // `users` and `me` are non-null: the error nulls `data` (spec) or at least `data.<root>`.
    assert!(body["data"][path[0]].is_null(), "no partial data: {body}");
}

#[tokio::test]
async fn admin_lists_every_user_newest_first_with_the_total_count() {
    let app = TestApp::spawn().await;
    let mut signed_up = Vec::new();
    for n in 1..=3 {
        signed_up.push(app.sign_in(&phone(n)).await);
    }
    let admin = app.sign_in(ADMIN).await;
    signed_up.push(admin.clone());
    signed_up.push(app.sign_in(&phone(4)).await);

    let users = users_page(&app, &admin, 20, None).await;
    let mut newest_first = phones_of(&signed_up);
    newest_first.reverse();
    assert_eq!(users.phones, newest_first);
    assert_eq!(users.total, 5);
    assert!(!users.has_next_page);
}

#[tokio::test]
async fn admin_pages_through_users_newest_first_by_cursor() {
    let app = TestApp::spawn().await;
    let admin = app.sign_in(ADMIN).await;
    let mut signed_up = vec![admin.clone()];
    for n in 1..=4 {
        signed_up.push(app.sign_in(&phone(n)).await);
    }
    let mut newest_first = phones_of(&signed_up);
    newest_first.reverse();

    let first = users_page(&app, &admin, 2, None).await;
    assert_eq!(first.phones, newest_first[0..2]);
    assert!(first.has_next_page);
    let second = users_page(&app, &admin, 2, first.end_cursor.as_deref()).await;
    assert_eq!(second.phones, newest_first[2..4]);
    assert!(second.has_next_page);
    let third = users_page(&app, &admin, 2, second.end_cursor.as_deref()).await;
    assert_eq!(third.phones, newest_first[4..]);
    assert!(!third.has_next_page);
    for page in [&first, &second, &third] {
        assert_eq!(page.total, 5, "totalCount counts every user, not the page");
    }
    let past_the_end = users_page(&app, &admin, 2, third.end_cursor.as_deref()).await;
    assert_eq!(past_the_end.phones, Vec::<String>::new());
    assert!(!past_the_end.has_next_page);
    assert_eq!(past_the_end.end_cursor, None);
}

#[tokio::test]
async fn users_for_a_signed_in_non_admin_is_forbidden() {
    let app = TestApp::spawn().await;
    app.sign_in(ADMIN).await;
    let user = app.sign_in(&phone(1)).await;

    let body = app
        .gql_as(&user.access_token, USERS, json!({ "first": 20 }))
        .await;
    assert_code(&body, "FORBIDDEN");
    assert_eq!(body["data"], Value::Null, "{body}");
}

#[tokio::test]
async fn users_without_a_valid_token_is_unauthenticated() {
    let app = TestApp::spawn().await;
    app.sign_in(ADMIN).await;

    let anonymous = app.gql(USERS, json!({ "first": 20 })).await;
    assert_code(&anonymous, "UNAUTHENTICATED");
    assert_eq!(anonymous["data"], Value::Null, "{anonymous}");

    let garbage = app.gql_as("garbage", USERS, json!({ "first": 20 })).await;
    assert_code(&garbage, "UNAUTHENTICATED");
}

#[tokio::test]
async fn admin_phones_written_in_national_form_match_the_e164_phone() {
    let app = TestApp::with_env(&[("ADMIN_PHONES", "8 999 000-00-02")]).await;
    let admin = app.sign_in("+79990000002").await;
    let former_admin = app.sign_in(ADMIN).await;

    let users = users_page(&app, &admin, 20, None).await;
    assert_eq!(users.total, 2);
    assert_eq!(
        users.phones,
        vec![ADMIN.to_owned(), "+79990000002".to_owned()]
    );

    // The override replaced the list: the BASE admin is an ordinary user here.
    let body = app
        .gql_as(&former_admin.access_token, USERS, json!({ "first": 20 }))
        .await;
    assert_code(&body, "FORBIDDEN");
}

#[tokio::test]
async fn users_with_first_out_of_range_is_bad_user_input_on_first() {
    let app = TestApp::spawn().await;
    let admin = app.sign_in(ADMIN).await;

    for first in [0, 101, -1, i32::MIN, i32::MAX] {
        let body = app
            .gql_as(&admin.access_token, USERS_LIGHT, json!({ "first": first }))
            .await;
        assert_bad_input(&body, "first", &["users"]);
    }
    // The bounds themselves are fine.
    for first in [1, 100] {
        let body = app
            .gql_as(&admin.access_token, USERS_LIGHT, json!({ "first": first }))
            .await;
        assert_ok(&body);
        assert_eq!(body["data"]["users"]["nodes"], json!([{ "phone": ADMIN }]));
    }
}

#[tokio::test]
async fn users_with_a_bad_cursor_is_bad_user_input_on_after() {
    let app = TestApp::spawn().await;
    let admin = app.sign_in(ADMIN).await;

    for after in bad_cursors() {
        let body = app
            .gql_as(
                &admin.access_token,
                USERS,
                json!({ "first": 20, "after": after }),
            )
            .await;
        assert_bad_input(&body, "after", &["users"]);
    }
}

/// Strings that are not cursors this server issued: not base64url, empty, another prefix, or
/// a non-positive / non-numeric id.
fn bad_cursors() -> Vec<String> {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    let mut cursors: Vec<String> = ["nope", "", "!!", "dTE6", "A".repeat(100).as_str()]
        .into_iter()
        .map(str::to_owned)
        .collect();
    for text in [
        "c1:", "c1:5", "c1:5:0", "c1:5:-1", "c1:5:abc", "c1:x:1", "x:1", "c2:5:1",
    ] {
        cursors.push(URL_SAFE_NO_PAD.encode(text));
    }
    cursors
}

#[tokio::test]
async fn invited_users_with_first_out_of_range_is_bad_user_input_on_first() {
    let app = TestApp::spawn().await;
    let inviter = app.sign_in(&phone(1)).await;
    invitee_of(&app, &inviter, 2).await;

    for first in [0, 101, -1, i32::MIN, i32::MAX] {
        let body = app
            .gql_as(
                &inviter.access_token,
                INVITED_LIGHT,
                json!({ "first": first }),
            )
            .await;
        assert_bad_input(&body, "first", &["me", "invitedUsers"]);
    }
    for first in [1, 100] {
        let body = app
            .gql_as(
                &inviter.access_token,
                INVITED_LIGHT,
                json!({ "first": first }),
            )
            .await;
        assert_ok(&body);
        assert_eq!(
            body["data"]["me"]["invitedUsers"]["nodes"],
            json!([{ "phone": phone(2) }])
        );
    }
}

#[tokio::test]
async fn invited_users_with_a_bad_cursor_is_bad_user_input_on_after() {
    let app = TestApp::spawn().await;
    let inviter = app.sign_in(&phone(1)).await;
    invitee_of(&app, &inviter, 2).await;

    for after in bad_cursors() {
        let body = app
            .gql_as(
                &inviter.access_token,
                INVITED,
                json!({ "first": 20, "after": after }),
            )
            .await;
        assert_bad_input(&body, "after", &["me", "invitedUsers"]);
    }
}

#[tokio::test]
async fn first_100_with_a_full_selection_is_accepted_under_the_default_limits() {
    let app = TestApp::spawn().await;
    let admin = app.sign_in(ADMIN).await;
    let invitee = invitee_of(&app, &admin, 1).await;

    let users = users_page(&app, &admin, 100, None).await;
    assert_eq!(users.phones, vec![invitee.phone.clone(), ADMIN.to_owned()]);
    let invited = invited_page(&app, &admin, 100, None).await;
    assert_eq!(invited.phones, vec![invitee.phone.clone()]);
}

#[tokio::test]
async fn first_101_with_a_full_selection_is_bad_user_input_on_first() {
    let app = TestApp::spawn().await;
    let admin = app.sign_in(ADMIN).await;

    let body = app
        .gql_as(&admin.access_token, USERS, json!({ "first": 101 }))
        .await;
    assert_bad_input(&body, "first", &["users"]);
    let body = app
        .gql_as(&admin.access_token, INVITED, json!({ "first": 101 }))
        .await;
    assert_bad_input(&body, "first", &["me", "invitedUsers"]);
}

#[tokio::test]
async fn invited_users_page_oldest_first_with_stable_cursors() {
    let app = TestApp::spawn().await;
    let inviter = app.sign_in(&phone(1)).await;
    app.sign_in(&phone(50)).await; // someone else's users must not show up
    let mut invitees = Vec::new();
    for n in 2..=8 {
        invitees.push(invitee_of(&app, &inviter, n).await);
    }
    let oldest_first = phones_of(&invitees);

    let first = invited_page(&app, &inviter, 3, None).await;
    let second = invited_page(&app, &inviter, 3, first.end_cursor.as_deref()).await;
    let third = invited_page(&app, &inviter, 3, second.end_cursor.as_deref()).await;
    assert_eq!(first.phones, oldest_first[0..3]);
    assert_eq!(second.phones, oldest_first[3..6]);
    assert_eq!(third.phones, oldest_first[6..]);
    assert_eq!(
        [
            first.has_next_page,
            second.has_next_page,
            third.has_next_page
        ],
        [true, true, false]
    );
    for page in [&first, &second, &third] {
        assert_eq!(page.total, 7);
    }
    // No duplicates and no gaps, cursors included.
    let all: Vec<String> = [&first, &second, &third]
        .iter()
        .flat_map(|p| p.phones.clone())
        .collect();
    assert_eq!(all, oldest_first);
    let mut cursors: Vec<String> = [&first, &second, &third]
        .iter()
        .flat_map(|p| p.cursors.clone())
        .collect();
    cursors.sort();
    cursors.dedup();
    assert_eq!(cursors.len(), 7, "every invitee has its own cursor");

    // Asking again with the same cursor gives the same page.
    assert_eq!(invited_page(&app, &inviter, 3, None).await, first);
    assert_eq!(
        invited_page(&app, &inviter, 3, first.end_cursor.as_deref()).await,
        second
    );
    assert_eq!(
        invited_page(&app, &inviter, 3, second.end_cursor.as_deref()).await,
        third
    );

    // A later invitee changes no earlier page and appears at the end.
    let late = invitee_of(&app, &inviter, 9).await;
    let first_again = invited_page(&app, &inviter, 3, None).await;
    let second_again = invited_page(&app, &inviter, 3, first_again.end_cursor.as_deref()).await;
    let third_again = invited_page(&app, &inviter, 3, second_again.end_cursor.as_deref()).await;
    assert_eq!(
        (first_again.phones, first_again.cursors),
        (first.phones, first.cursors)
    );
    assert_eq!(
        (second_again.phones, second_again.cursors),
        (second.phones, second.cursors)
    );
    assert_eq!(
        third_again.phones,
        vec![oldest_first[6].clone(), late.phone.clone()]
    );
    assert_eq!(third_again.cursors[0], third.cursors[0]);
    assert!(!third_again.has_next_page);
    assert_eq!(third_again.total, 8);

    // Past the end: an empty page, no next page, no end cursor.
    let past_the_end = invited_page(&app, &inviter, 3, third_again.end_cursor.as_deref()).await;
    assert_eq!(past_the_end.phones, Vec::<String>::new());
    assert!(!past_the_end.has_next_page);
    assert_eq!(past_the_end.end_cursor, None);
    assert_eq!(past_the_end.total, 8);
}

const TREE: &str = "{ me { invitedUsers(first: 100) { totalCount nodes { phone \
                    invitedUsers(first: 5) { totalCount nodes { phone } } } } } }";

/// Adds, under `root`, one direct invitee per entry of `children`, each with that many
/// invitees of their own. Phones come from `next`.
async fn grow_tree(
    app: &TestApp,
    root: &Session,
    children: &[usize],
    next: &mut u32,
    tree: &mut Vec<(Session, Vec<Session>)>,
) {
    for &count in children {
        *next += 1;
        let child = invitee_of(app, root, *next).await;
        let mut grandchildren = Vec::new();
        for _ in 0..count {
            *next += 1;
            grandchildren.push(invitee_of(app, &child, *next).await);
        }
        tree.push((child, grandchildren));
    }
}

/// Runs `TREE` as `root`, checks it against `tree`, and returns how many SQL statements it took.
async fn tree_statements(app: &TestApp, root: &Session, tree: &[(Session, Vec<Session>)]) -> usize {
    app.reset_statements();
    let body = app.gql_as(&root.access_token, TREE, json!({})).await;
    let statements = app.statements();
    assert_ok(&body);

    let level1 = &body["data"]["me"]["invitedUsers"];
    assert_eq!(level1["totalCount"], tree.len(), "{body}");
    let nodes = level1["nodes"]
        .as_array()
        .expect("invitedUsers.nodes is a list");
    assert_eq!(nodes.len(), tree.len(), "{body}");
    for (node, (child, grandchildren)) in nodes.iter().zip(tree) {
        assert_eq!(node["phone"], child.phone.as_str(), "{body}");
        assert_eq!(
            node["invitedUsers"]["totalCount"],
            grandchildren.len(),
            "{body}"
        );
        let phones: Vec<&str> = node["invitedUsers"]["nodes"]
            .as_array()
            .expect("nested invitedUsers.nodes is a list")
            .iter()
            .map(|n| n["phone"].as_str().expect("a phone"))
            .collect();
        // `invitedUsers(first: 5)`: the first five in activation order.
        let expected: Vec<&str> = grandchildren
            .iter()
            .take(5)
            .map(|g| g.phone.as_str())
            .collect();
        assert_eq!(phones, expected, "{body}");
    }
    statements
}

#[tokio::test]
async fn nested_invited_users_take_a_fixed_number_of_queries_however_many_users_there_are() {
    // The nested query asks for up to 100 × 5 users: above the default complexity limit, which
    // is not what this test is about.
    let app = TestApp::with_env(&[("GRAPHQL_MAX_COMPLEXITY", "0")]).await;
    let root = app.sign_in(&phone(1)).await;
    let mut next = 1;
    let mut tree = Vec::new();
    grow_tree(&app, &root, &[0, 1, 2, 3, 0, 1], &mut next, &mut tree).await;
    let small = tree_statements(&app, &root, &tree).await;
    let small_log = app.statement_log();

    // One child with more invitees than its page holds.
    grow_tree(&app, &root, &[3, 2, 1, 0, 3, 7], &mut next, &mut tree).await;
    assert_eq!(tree.len(), 12);
    let large = tree_statements(&app, &root, &tree).await;
    let large_log = app.statement_log();

    assert_eq!(
        small, large,
        "the statement count must not grow with the number of users\nsmall: {small_log:#?}\nlarge: {large_log:#?}"
    );
    // The user, the first page, the 12 pages under it, and every count (the first page's own
    // with its children's) in one grouped query.
    assert_eq!(large, 4, "{large} statements: {large_log:#?}");
}

#[tokio::test]
async fn invited_users_are_listed_in_activation_order_so_pages_never_shift() {
    let app = TestApp::spawn().await;
    let inviter = app.sign_in(&phone(1)).await;
    // Signed up first, activates last.
    let early = app.sign_in(&phone(2)).await;
    let middle = app.sign_in(&phone(3)).await;
    let late = app.sign_in(&phone(4)).await;
    for (session, seconds) in [(&middle, 10), (&late, 10), (&early, 10)] {
        app.advance(seconds);
        assert_ok(&app.activate(session, &inviter.invite_code).await);
    }
    let first_page = invited_page(&app, &inviter, 2, None).await;
    assert_eq!(first_page.phones, vec![phone(3), phone(4)]);
    let second_page = invited_page(&app, &inviter, 2, first_page.end_cursor.as_deref()).await;
    assert_eq!(second_page.phones, vec![phone(2)]);
}
