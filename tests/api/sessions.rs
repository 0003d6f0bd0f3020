//! Sign-ins as sessions: listed, revoked one by one, ended by their absolute lifetime; every
//! revocation instant for access tokens; revocation never loses a race with refresh; and
//! every mutation field at most once per operation.

use std::sync::Arc;

use axum::http::header;
use serde_json::{Value, json};

use crate::helpers::{Session, TestApp, assert_code, assert_ok, phone, session_from};

const ME: &str = "{ me { id } }";
const SESSIONS: &str = "{ sessions { id createdAt lastUsedAt userAgent current } }";

/// Signs `phone` in with a `User-Agent` header.
async fn sign_in_as(app: &TestApp, phone: &str, user_agent: &str) -> Session {
    let code = app.code_for(phone).await;
    let body = json!({
        "query": "mutation($p: String!, $c: String!) { verifyCode(phone: $p, code: $c) { \
                  accessToken refreshToken user { id phone inviteCode } } }",
        "variables": { "p": phone, "c": code },
    });
    let response = app
        .post(
            &[
                (header::CONTENT_TYPE.as_str(), "application/json"),
                (header::USER_AGENT.as_str(), user_agent),
            ],
            body.to_string(),
        )
        .await;
    session_from(&response.body["data"]["verifyCode"])
        .unwrap_or_else(|| panic!("verifyCode failed: {}", response.body))
}

async fn refresh(app: &TestApp, token: &str) -> Value {
    app.gql(
        "mutation($t: String!) { refreshToken(refreshToken: $t) { accessToken refreshToken \
           user { id phone inviteCode } } }",
        json!({ "t": token }),
    )
    .await
}

async fn sessions(app: &TestApp, token: &str) -> Vec<Value> {
    let body = app.gql_as(token, SESSIONS, json!({})).await;
    assert_ok(&body);
    body["data"]["sessions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn current_agent(list: &[Value]) -> Vec<&str> {
    list.iter()
        .filter(|s| s["current"] == true)
        .filter_map(|s| s["userAgent"].as_str())
        .collect()
}

/// The in-memory set forgets only revocations older than any access token (it prunes on each
/// new revocation): a later revocation must not drop an earlier one, however many come after.
#[tokio::test]
async fn a_revoked_sign_in_stays_refused_after_later_revocations() {
    let app = TestApp::spawn().await;
    let first = app.sign_in(&phone(1)).await;
    let later = [app.sign_in(&phone(2)).await, app.sign_in(&phone(3)).await];
    let logout = "mutation($t: String!) { logout(refreshToken: $t) }";
    let body = app.gql(logout, json!({ "t": first.refresh_token })).await;
    assert_eq!(body["data"]["logout"], true, "{body}");
    app.advance(60);
    for session in &later {
        let body = app.gql(logout, json!({ "t": session.refresh_token })).await;
        assert_eq!(body["data"]["logout"], true, "{body}");
    }
    for session in std::iter::once(&first).chain(&later) {
        assert_code(
            &app.gql_as(&session.access_token, ME, json!({})).await,
            "UNAUTHENTICATED",
        );
    }
    let untouched = app.sign_in(&phone(4)).await;
    assert_ok(&app.gql_as(&untouched.access_token, ME, json!({})).await);
}

#[tokio::test]
async fn sessions_are_listed_newest_first_with_the_right_current() {
    let app = TestApp::spawn().await;
    let phone = phone(1);
    let _phone_app = sign_in_as(&app, &phone, "phone-app/1").await;
    app.advance(61);
    let laptop = sign_in_as(&app, &phone, "laptop-browser").await;
    app.advance(61);
    let _tablet = sign_in_as(&app, &phone, "tablet").await;
    let _stranger = sign_in_as(&app, &crate::helpers::phone(2), "stranger").await;

    let list = sessions(&app, &laptop.access_token).await;
    let agents: Vec<&str> = list
        .iter()
        .filter_map(|s| s["userAgent"].as_str())
        .collect();
    assert_eq!(
        agents,
        ["tablet", "laptop-browser", "phone-app/1"],
        "{list:?}"
    );
    assert_eq!(current_agent(&list), ["laptop-browser"]);

    // After a refresh the new access token still names the same sign-in; it was used now.
    app.advance(30);
    let rotated = session_from(&refresh(&app, &laptop.refresh_token).await["data"]["refreshToken"])
        .expect("refresh works");
    let after = sessions(&app, &rotated.access_token).await;
    assert_eq!(current_agent(&after), ["laptop-browser"], "{after:?}");
    let laptop_row = after
        .iter()
        .find(|s| s["userAgent"] == "laptop-browser")
        .expect("listed");
    assert_ne!(laptop_row["lastUsedAt"], laptop_row["createdAt"]);
    assert_eq!(after.len(), 3);

    // Signed out: no sessions for anyone.
    assert_code(&app.gql(SESSIONS, json!({})).await, "UNAUTHENTICATED");
}

#[tokio::test]
async fn user_agents_are_kept_to_200_characters() {
    let app = TestApp::spawn().await;
    let long = "x".repeat(500);
    let session = sign_in_as(&app, &phone(1), &long).await;
    let list = sessions(&app, &session.access_token).await;
    assert_eq!(list[0]["userAgent"].as_str().map(str::len), Some(200));
}

#[tokio::test]
async fn revoke_session_kills_that_sign_in_only() {
    let app = TestApp::spawn().await;
    let keep = sign_in_as(&app, &phone(1), "keep").await;
    app.advance(61);
    let gone = sign_in_as(&app, &phone(1), "gone").await;
    let stranger = sign_in_as(&app, &phone(2), "stranger").await;
    let list = sessions(&app, &keep.access_token).await;
    let gone_id = list
        .iter()
        .find(|s| s["userAgent"] == "gone")
        .and_then(|s| s["id"].as_str())
        .expect("listed")
        .to_owned();
    let stranger_id = sessions(&app, &stranger.access_token).await[0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let revoke = |token: String, id: String| {
        let app = &app;
        async move {
            app.gql_as(
                &token,
                "mutation($id: ID!) { revokeSession(id: $id) }",
                json!({ "id": id }),
            )
            .await
        }
    };

    // Not theirs, not a session: false, and nothing happens.
    let body = revoke(keep.access_token.clone(), stranger_id).await;
    assert_eq!(body["data"]["revokeSession"], false, "{body}");
    let body = revoke(keep.access_token.clone(), "nope".into()).await;
    assert_eq!(body["data"]["revokeSession"], false, "{body}");
    assert_ok(&app.gql_as(&stranger.access_token, ME, json!({})).await);

    let body = revoke(keep.access_token.clone(), gone_id.clone()).await;
    assert_eq!(body["data"]["revokeSession"], true, "{body}");
    // Its access token and its refresh token are dead at once.
    assert_code(
        &app.gql_as(&gone.access_token, ME, json!({})).await,
        "UNAUTHENTICATED",
    );
    assert_code(&refresh(&app, &gone.refresh_token).await, "UNAUTHENTICATED");
    // The other sign-in lives on, and refreshes.
    assert_ok(&app.gql_as(&keep.access_token, ME, json!({})).await);
    assert_ok(&refresh(&app, &keep.refresh_token).await);
    let left = sessions(&app, &keep.access_token).await;
    assert_eq!(left.len(), 1, "{left:?}");
    // Revoking it again: no longer live.
    let body = revoke(keep.access_token.clone(), gone_id).await;
    assert_eq!(body["data"]["revokeSession"], false, "{body}");
}

#[tokio::test]
async fn logout_makes_the_access_token_of_that_sign_in_unauthenticated() {
    let app = TestApp::spawn().await;
    let session = app.sign_in(&phone(1)).await;
    app.advance(61);
    let other = app.sign_in(&phone(1)).await;
    let body = app
        .gql(
            "mutation($t: String!) { logout(refreshToken: $t) }",
            json!({ "t": session.refresh_token }),
        )
        .await;
    assert_eq!(body["data"]["logout"], true, "{body}");
    assert_code(
        &app.gql_as(&session.access_token, ME, json!({})).await,
        "UNAUTHENTICATED",
    );
    assert_ok(&app.gql_as(&other.access_token, ME, json!({})).await);
}

#[tokio::test]
async fn refresh_token_reuse_kills_the_access_tokens_of_the_sign_in() {
    let app = TestApp::spawn().await;
    let session = app.sign_in(&phone(1)).await;
    let rotated =
        session_from(&refresh(&app, &session.refresh_token).await["data"]["refreshToken"])
            .expect("refresh works");
    assert_ok(&app.gql_as(&rotated.access_token, ME, json!({})).await);
    // The old refresh token comes back: the whole sign-in ends, its live access token too.
    assert_code(
        &refresh(&app, &session.refresh_token).await,
        "UNAUTHENTICATED",
    );
    assert_code(
        &app.gql_as(&rotated.access_token, ME, json!({})).await,
        "UNAUTHENTICATED",
    );
}

/// A thief who refreshed a stolen token first does not keep the sign-in when the owner logs
/// out with the token they still hold: that token was rotated, so logout treats it as reuse
/// and ends the whole sign-in (and answers false: the token itself was no longer valid).
#[tokio::test]
async fn logout_with_a_rotated_token_ends_the_thiefs_sign_in() {
    let app = TestApp::spawn().await;
    let owner = app.sign_in(&phone(1)).await;
    let thief = session_from(&refresh(&app, &owner.refresh_token).await["data"]["refreshToken"])
        .expect("refresh works");
    let logout = app
        .gql(
            "mutation($t: String!) { logout(refreshToken: $t) }",
            json!({ "t": owner.refresh_token }),
        )
        .await;
    assert_eq!(logout["data"]["logout"], false, "{logout}");
    assert_code(
        &app.gql_as(&thief.access_token, ME, json!({})).await,
        "UNAUTHENTICATED",
    );
    assert_code(
        &refresh(&app, &thief.refresh_token).await,
        "UNAUTHENTICATED",
    );
}

#[tokio::test]
async fn a_sign_in_ends_at_its_maximum_lifetime_however_often_it_is_refreshed() {
    let app = TestApp::with_env(&[
        ("SESSION_MAX_LIFETIME_SECONDS", "3000"),
        ("ACCESS_TOKEN_TTL_SECONDS", "900"),
    ])
    .await;
    let mut session = app.sign_in(&phone(1)).await;
    for _ in 0..3 {
        app.advance(800);
        let body = refresh(&app, &session.refresh_token).await;
        session = session_from(&body["data"]["refreshToken"]).expect("refresh works");
    }
    // 2400 s in: the next access token lives only until the 3000 s mark.
    let body = app
        .gql(
            "mutation($t: String!) { refreshToken(refreshToken: $t) { expiresIn refreshToken } }",
            json!({ "t": session.refresh_token }),
        )
        .await;
    assert_eq!(body["data"]["refreshToken"]["expiresIn"], 600, "{body}");
    let last = body["data"]["refreshToken"]["refreshToken"]
        .as_str()
        .expect("token")
        .to_owned();
    app.advance(601);
    assert_code(&refresh(&app, &last).await, "UNAUTHENTICATED");
}

/// Every mutation field at most once per operation: refused whole, before anything runs.
#[tokio::test]
async fn a_hundred_aliased_logouts_are_refused_whole() {
    let app = TestApp::spawn().await;
    let session = app.sign_in(&phone(1)).await;
    let aliases: String = (0..100)
        .map(|i| format!("l{i}: logout(refreshToken: $t) "))
        .collect();
    let query = format!("mutation($t: String!) {{ {aliases} }}");
    let body = app.gql(&query, json!({ "t": session.refresh_token })).await;
    assert_code(&body, "BAD_USER_INPUT");
    assert!(body.get("data").is_none_or(Value::is_null), "{body}");
    // None of them ran.
    assert_ok(&refresh(&app, &session.refresh_token).await);

    // In a JSON batch each operation is checked on its own.
    let batch = json!([
        { "query": query, "variables": { "t": "x" } },
        { "query": "mutation { logoutAll }" },
    ]);
    let auth = format!("Bearer {}", session.access_token);
    let response = app
        .post(
            &[
                (header::CONTENT_TYPE.as_str(), "application/json"),
                (header::AUTHORIZATION.as_str(), auth.as_str()),
            ],
            batch.to_string(),
        )
        .await;
    assert_code(&response.body[0], "BAD_USER_INPUT");
    assert_ok(&response.body[1]);
}

#[tokio::test]
async fn repeated_mutations_hidden_in_fragments_are_refused() {
    let app = TestApp::spawn().await;
    let inline = format!(
        r#"mutation {{ ... on Mutation {{ ... on Mutation {{ a: requestCode(phone: "{p}") {{ phone }} }} }}
             ... on Mutation {{ b: requestCode(phone: "{p}") {{ phone }} }} }}"#,
        p = phone(1)
    );
    assert_code(&app.gql(&inline, json!({})).await, "BAD_USER_INPUT");

    // A 20-deep fragment chain (well under the recursion limit) with two at the bottom.
    let mut chain = String::from("mutation { ...F0 }\n");
    for i in 0..20 {
        chain.push_str(&format!("fragment F{i} on Mutation {{ ...F{} }}\n", i + 1));
    }
    chain.push_str(
        r#"fragment F20 on Mutation { a: activateInvite(inviteCode: "ABC123") { id } b: activateInvite(inviteCode: "ABC124") { id } }"#,
    );
    let body = app.gql(&chain, json!({})).await;
    assert_code(&body, "BAD_USER_INPUT");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("activateInvite only once")),
        "{body}"
    );
    app.settle().await;
    assert!(app.sms.last_to(&phone(1)).is_none());
}

/// On PostgreSQL (the race needs real concurrency): a refresh loop races logoutAll many
/// times; no token minted in the race survives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_never_loses_a_race_with_refresh() {
    let rounds = match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if url.starts_with("postgres") => 40,
        _ => 5,
    };
    let app = Arc::new(TestApp::spawn().await);
    let mut survivors = 0;
    for round in 0..rounds {
        let session = app.sign_in(&phone(100 + round)).await;
        let refresher = {
            let app = app.clone();
            let mut token = session.refresh_token.clone();
            tokio::spawn(async move {
                let mut minted = Vec::new();
                for _ in 0..50 {
                    let body = refresh(&app, &token).await;
                    match session_from(&body["data"]["refreshToken"]) {
                        Some(next) => {
                            token = next.refresh_token.clone();
                            minted.push(next);
                        }
                        None => break,
                    }
                }
                minted
            })
        };
        // Land the logoutAll at different points of the refresh loop.
        tokio::time::sleep(std::time::Duration::from_millis(u64::from(round % 7))).await;
        let body = app
            .gql_as(&session.access_token, "mutation { logoutAll }", json!({}))
            .await;
        assert_ok(&body);
        let minted = refresher.await.expect("the refresher ran");
        for pair in &minted {
            if error_free(&refresh(&app, &pair.refresh_token).await) {
                survivors += 1;
            }
            if error_free(&app.gql_as(&pair.access_token, ME, json!({})).await) {
                survivors += 1;
            }
        }
    }
    assert_eq!(survivors, 0);
}

fn error_free(body: &Value) -> bool {
    body.get("errors").is_none_or(Value::is_null)
}

/// PostgreSQL: a revocation announced while an instance's feed was down is not lost — the
/// instance refuses tokens while it cannot tell, and reloads when it reconnects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_missed_while_the_feed_was_down_is_recovered() {
    let url = match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if url.starts_with("postgres") => crate::helpers::fresh_database_url().await,
        _ => return,
    };
    let a = TestApp::with_database(&url, &[]).await;
    let b = TestApp::with_database(&url, &[]).await;
    let session = a.sign_in(&phone(1)).await;
    assert_ok(&a.gql_as(&session.access_token, ME, json!({})).await);

    // Cut every instance's revocation listener, then revoke at once: the NOTIFY finds nobody.
    let cut = sea_orm::ConnectionTrait::execute_raw(
        &b.state.db,
        sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid() \
             AND query LIKE '%phone_auth_session_revoked%'",
        ),
    )
    .await
    .expect("the listeners can be cut");
    assert!(cut.rows_affected() >= 1);
    let body = b
        .gql(
            "mutation($t: String!) { logout(refreshToken: $t) }",
            json!({ "t": session.refresh_token }),
        )
        .await;
    assert_eq!(body["data"]["logout"], true, "{body}");

    let started = std::time::Instant::now();
    loop {
        let body = a.gql_as(&session.access_token, ME, json!({})).await;
        // Refused either way: UNAUTHENTICATED once reloaded, INTERNAL_SERVER_ERROR while A
        // cannot tell (its feed is down).
        let code = &body["errors"][0]["extensions"]["code"];
        if code == "UNAUTHENTICATED" || code == "INTERNAL_SERVER_ERROR" {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(1),
            "A serves a token revoked while its feed was down"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // Back up: the revocation is still known after the reload, and fresh sign-ins work.
    assert!(
        a.state
            .revocations
            .wait_live(std::time::Duration::from_secs(5))
            .await
    );
    assert_code(
        &a.gql_as(&session.access_token, ME, json!({})).await,
        "UNAUTHENTICATED",
    );
    let fresh = b.sign_in(&phone(2)).await;
    assert_ok(&a.gql_as(&fresh.access_token, ME, json!({})).await);
}

/// A database from before the `sessions` table: each refresh-token family becomes a session,
/// revoked when all its tokens were, and its tokens keep working.
#[tokio::test]
async fn sign_ins_from_before_the_sessions_table_become_sessions() {
    use migration::MigratorTrait;
    use sea_orm::ConnectionTrait;

    let url = crate::helpers::fresh_database_url().await;
    // `sqlite::memory:` is one database per connection: keep this one for the whole test.
    let url = if url.starts_with("sqlite") {
        format!(
            "sqlite:file:memdb_{}?mode=memory&cache=shared",
            uuid::Uuid::new_v4().simple()
        )
    } else {
        url
    };
    let db = phone_auth::db::connect(&url, 1).await.expect("opens");
    migration::Migrator::up(&db, Some(5))
        .await
        .expect("the first five apply");
    let backend = db.get_database_backend();
    let now = chrono::Utc::now();
    let later = now + chrono::TimeDelta::days(30);
    let exec = |sql: &str, values: Vec<sea_orm::Value>| {
        db.execute_raw(phone_auth::db::raw(backend, sql, values))
    };
    exec(
        "INSERT INTO users (phone, invite_code, created_at) VALUES (?, ?, ?)",
        vec![phone(1).into(), "OLD001".into(), now.into()],
    )
    .await
    .expect("user");
    let token = |family: &str, hash: &str, revoked: Option<chrono::DateTime<chrono::Utc>>| {
        exec(
            "INSERT INTO refresh_tokens (user_id, family_id, token_hash, created_at, expires_at, revoked_at) \
             VALUES (1, ?, ?, ?, ?, ?)",
            vec![
                family.into(),
                hash.into(),
                now.into(),
                later.into(),
                revoked.into(),
            ],
        )
    };
    let live = "11111111-1111-4111-8111-111111111111";
    let gone = "22222222-2222-4222-8222-222222222222";
    token(live, "h1", Some(now)).await.expect("rotated");
    token(live, "h2", None).await.expect("current");
    token(gone, "h3", Some(now)).await.expect("revoked");
    migration::Migrator::up(&db, None)
        .await
        .expect("the rest apply");

    let rows = db
        .query_all_raw(phone_auth::db::raw(
            backend,
            "SELECT id, revoked_at FROM sessions ORDER BY id",
            vec![],
        ))
        .await
        .expect("sessions");
    let rows: Vec<(String, bool)> = rows
        .iter()
        .map(|r| {
            let id: String = r.try_get("", "id").expect("id");
            let revoked: Option<chrono::DateTime<chrono::Utc>> =
                r.try_get("", "revoked_at").expect("revoked_at");
            (id, revoked.is_some())
        })
        .collect();
    assert_eq!(rows, [(live.to_owned(), false), (gone.to_owned(), true)]);
}

/// The entry point other flows use (phone change: every sign-in but the caller's; account
/// deletion: all of them, inside the caller's transaction): same revocation, same publication.
#[tokio::test]
async fn the_revocation_service_ends_other_sign_ins_or_all_within_a_transaction() {
    use phone_auth::services::sessions::{Revoke, revoke};
    use sea_orm::TransactionTrait;

    let app = TestApp::spawn().await;
    let mine = app.sign_in(&phone(1)).await;
    app.advance(61);
    let other = app.sign_in(&phone(1)).await;
    let current = sessions(&app, &mine.access_token).await;
    let keep = current
        .iter()
        .find(|s| s["current"] == true)
        .and_then(|s| s["id"].as_str())
        .expect("current")
        .to_owned();
    let user_id: i64 = mine.user_id.parse().expect("id");

    let txn = app.state.db.begin().await.expect("begin");
    let revoked = revoke(
        &txn,
        &app.state,
        Revoke::OthersOf {
            user_id,
            keep: &keep,
        },
    )
    .await
    .expect("revokes");
    txn.commit().await.expect("commit");
    assert_eq!(revoked, 1);
    assert_code(
        &app.gql_as(&other.access_token, ME, json!({})).await,
        "UNAUTHENTICATED",
    );
    assert_code(
        &refresh(&app, &other.refresh_token).await,
        "UNAUTHENTICATED",
    );
    assert_ok(&app.gql_as(&mine.access_token, ME, json!({})).await);

    let txn = app.state.db.begin().await.expect("begin");
    let revoked = revoke(&txn, &app.state, Revoke::AllOf(user_id))
        .await
        .expect("revokes");
    txn.commit().await.expect("commit");
    assert_eq!(revoked, 1);
    assert_code(
        &app.gql_as(&mine.access_token, ME, json!({})).await,
        "UNAUTHENTICATED",
    );
}

/// Lowering SESSION_MAX_LIFETIME_SECONDS ends sign-ins started under the old setting too: an
/// instance running the new setting refuses to refresh one older than it.
#[tokio::test]
async fn a_lowered_maximum_lifetime_ends_older_sign_ins() {
    let url = crate::helpers::file_database_url().await;
    let before = TestApp::with_database(&url, &[]).await;
    let after = TestApp::with_database(&url, &[("SESSION_MAX_LIFETIME_SECONDS", "600")]).await;
    let session = before.sign_in(&phone(1)).await;
    after.advance(500);
    let young = refresh(&after, &session.refresh_token).await;
    let session = session_from(&young["data"]["refreshToken"]).expect("refresh works");
    after.advance(200);
    assert_code(
        &refresh(&after, &session.refresh_token).await,
        "UNAUTHENTICATED",
    );
}

/// Deleting an account deletes its `sessions` rows; an instance that starts afterwards, within
/// the access-token lifetime, still refuses the deleted user's access tokens.
#[tokio::test]
async fn a_deleted_accounts_tokens_stay_refused_after_a_restart() {
    let url = crate::helpers::file_database_url().await;
    let before = TestApp::with_database(&url, &[]).await;
    let session = before.sign_in(&phone(1)).await;
    let deleted = before
        .gql_as(
            &session.access_token,
            "mutation { deleteAccount }",
            json!({}),
        )
        .await;
    assert_ok(&deleted);
    assert_eq!(deleted["data"]["deleteAccount"], true);

    // The "restarted" instance: its set comes only from the database.
    let after = TestApp::with_database(&url, &[]).await;
    // `sessions` reads no user row: without the revocation it would answer an empty list.
    assert_code(
        &after
            .gql_as(&session.access_token, SESSIONS, json!({}))
            .await,
        "UNAUTHENTICATED",
    );
    assert_code(
        &after.gql_as(&session.access_token, ME, json!({})).await,
        "UNAUTHENTICATED",
    );
    // A live sign-in of someone else is not caught by it.
    let other = after.sign_in(&phone(2)).await;
    assert_ok(&after.gql_as(&other.access_token, SESSIONS, json!({})).await);
}

/// PostgreSQL: a listener whose connection silently stops delivering (a half-open connection:
/// open, but nothing crosses) is noticed by its missing heartbeat: tokens are refused within
/// a second, and after the network is back the instance reconnects, reloads (so a revocation
/// made meanwhile is honoured) and accepts live tokens again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_that_silently_stops_fails_closed_within_a_second_and_recovers() {
    let url = match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if url.starts_with("postgres") => crate::helpers::fresh_database_url().await,
        _ => return,
    };
    let direct = TestApp::with_database(&url, &[]).await;
    let proxy = stall::Proxy::start(&url).await;
    let a = TestApp::with_database(&proxy.url, &[]).await;
    let kept = a.sign_in(&phone(1)).await;
    let doomed = a.sign_in(&phone(2)).await;
    // Heartbeats keep a healthy feed live well past their freshness window.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert!(a.state.revocations.is_live(), "a healthy feed stays live");
    assert_ok(&a.gql_as(&kept.access_token, ME, json!({})).await);

    proxy.stall(true);
    let stalled = std::time::Instant::now();
    // Revoked through the other instance meanwhile: the NOTIFY cannot reach A.
    let body = direct
        .gql(
            "mutation($t: String!) { logout(refreshToken: $t) }",
            json!({ "t": doomed.refresh_token }),
        )
        .await;
    assert_eq!(body["data"]["logout"], true, "{body}");
    while a.state.revocations.is_live() {
        assert!(
            stalled.elapsed() < std::time::Duration::from_secs(1),
            "A still trusts a feed that delivers nothing"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // Through the router too, answered from memory (A's database is unreachable).
    let refused = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        a.gql_as(&kept.access_token, ME, json!({})),
    )
    .await
    .expect("a refusal needs no database");
    // Refused as the server's fault, not the token's: an app retries rather than signing its
    // user out over an outage of ours.
    assert_code(&refused, "INTERNAL_SERVER_ERROR");
    assert!(refused["data"]["me"].is_null(), "{refused}");

    proxy.stall(false);
    assert!(
        a.state
            .revocations
            .wait_live(std::time::Duration::from_secs(15))
            .await,
        "A recovers once the network is back"
    );
    assert_ok(&a.gql_as(&kept.access_token, ME, json!({})).await);
    assert_code(
        &a.gql_as(&doomed.access_token, ME, json!({})).await,
        "UNAUTHENTICATED",
    );
}

/// A TCP proxy in front of PostgreSQL that can stall: connections stay open, but no byte
/// crosses in either direction (what a NAT that forgot the connection looks like).
mod stall {
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::{TcpListener, TcpStream, tcp},
        sync::watch,
    };

    pub struct Proxy {
        /// `url` with its host and port replaced by the proxy's.
        pub url: String,
        stalled: watch::Sender<bool>,
    }

    impl Proxy {
        pub async fn start(url: &str) -> Self {
            let authority_start = url
                .find('@')
                .map_or(url.find("://").unwrap() + 3, |at| at + 1);
            let authority_end = url[authority_start..]
                .find('/')
                .map_or(url.len(), |slash| authority_start + slash);
            let target = url[authority_start..authority_end].to_owned();
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
            let addr = listener.local_addr().expect("an address");
            let (stalled, watching) = watch::channel(false);
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    let Ok(server) = TcpStream::connect(&target).await else {
                        continue;
                    };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::spawn(pipe(client_read, server_write, watching.clone()));
                    tokio::spawn(pipe(server_read, client_write, watching.clone()));
                }
            });
            Self {
                url: format!("{}{addr}{}", &url[..authority_start], &url[authority_end..]),
                stalled,
            }
        }

        pub fn stall(&self, stalled: bool) {
            self.stalled.send_replace(stalled);
        }
    }

    async fn pipe(
        mut from: tcp::OwnedReadHalf,
        mut to: tcp::OwnedWriteHalf,
        mut stalled: watch::Receiver<bool>,
    ) {
        let mut buf = vec![0; 16 * 1024];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            // Held, not dropped, while stalled: the bytes arrive late, like a network's.
            if stalled.wait_for(|stalled| !*stalled).await.is_err() {
                return;
            }
            if to.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    }
}

/// `revoked_sessions` keeps a revocation as long as an access token of it could live (the
/// access-token lifetime + 60 s), and the hourly pruning drops it after that.
#[tokio::test]
async fn revoked_sign_ins_are_pruned_after_the_access_token_lifetime() {
    use sea_orm::ConnectionTrait;

    let app = TestApp::spawn().await;
    let count = || async {
        let db = &app.state.db;
        let row = db
            .query_one_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                "SELECT COUNT(*) AS n FROM revoked_sessions",
            ))
            .await
            .expect("counts")
            .expect("a row");
        row.try_get::<i64>("", "n").expect("n")
    };
    let old = app.sign_in(&phone(1)).await;
    assert_ok(
        &app.gql_as(&old.access_token, "mutation { logoutAll }", json!({}))
            .await,
    );
    app.advance(900);
    let recent = app.sign_in(&phone(2)).await;
    assert_ok(
        &app.gql_as(&recent.access_token, "mutation { logoutAll }", json!({}))
            .await,
    );
    assert_eq!(count().await, 2);
    // Just past the older one's retention (900 + 60 s), well within the newer one's.
    app.advance(61);
    let pruned = app
        .state
        .revocations
        .prune(&app.state.db)
        .await
        .expect("prunes");
    assert_eq!(pruned, 1);
    assert_eq!(count().await, 1);
}
