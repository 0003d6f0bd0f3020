//! Access tokens (JWT) and refresh tokens (rotation, reuse detection, logout).

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use crate::helpers::{Session, TestApp, assert_code, assert_ok, phone, session_from};

const ME: &str = "{ me { id } }";

async fn refresh(app: &TestApp, token: &str) -> Value {
    app.gql(
        "mutation($t: String!) { refreshToken(refreshToken: $t) { accessToken refreshToken tokenType expiresIn isNewUser \
           user { id phone inviteCode } } }",
        json!({ "t": token }),
    )
    .await
}

async fn logout(app: &TestApp, token: &str) -> Value {
    app.gql(
        "mutation($t: String!) { logout(refreshToken: $t) }",
        json!({ "t": token }),
    )
    .await
}

fn rotated(body: &Value) -> Session {
    session_from(&body["data"]["refreshToken"]).unwrap_or_else(|| panic!("refresh failed: {body}"))
}

#[tokio::test]
async fn access_token_opens_me() {
    let app = TestApp::spawn().await;
    let s = app.sign_in(&phone(1)).await;
    let body = app.gql_as(&s.access_token, ME, json!({})).await;
    assert_ok(&body);
    assert_eq!(body["data"]["me"]["id"], s.user_id.as_str());
}

#[tokio::test]
async fn me_without_or_with_a_bad_token_is_unauthenticated() {
    let app = TestApp::spawn().await;
    let s = app.sign_in(&phone(1)).await;
    assert_code(&app.gql(ME, json!({})).await, "UNAUTHENTICATED");
    for token in ["", "garbage", "a.b.c", &format!("{}x", s.access_token)] {
        assert_code(&app.gql_as(token, ME, json!({})).await, "UNAUTHENTICATED");
    }
    // A refresh token is not an access token.
    assert_code(
        &app.gql_as(&s.refresh_token, ME, json!({})).await,
        "UNAUTHENTICATED",
    );
}

fn tamper_payload(token: &str, edit: impl FnOnce(&mut Value)) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    edit(&mut claims);
    format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        parts[2]
    )
}

#[tokio::test]
async fn tampered_token_is_unauthenticated() {
    let app = TestApp::spawn().await;
    let victim = app.sign_in(&phone(1)).await;
    let attacker = app.sign_in(&phone(2)).await;
    let forged = tamper_payload(&attacker.access_token, |c| c["sub"] = json!(victim.user_id));
    assert_code(&app.gql_as(&forged, ME, json!({})).await, "UNAUTHENTICATED");
}

#[tokio::test]
async fn alg_none_token_is_unauthenticated() {
    let app = TestApp::spawn().await;
    let s = app.sign_in(&phone(1)).await;
    let payload = s.access_token.split('.').nth(1).unwrap().to_owned();
    for header in [
        r#"{"alg":"none","typ":"at+jwt"}"#,
        r#"{"alg":"None"}"#,
        r#"{"alg":"HS512","typ":"at+jwt"}"#,
    ] {
        let header = URL_SAFE_NO_PAD.encode(header);
        for token in [
            format!("{header}.{payload}."),
            format!("{header}.{payload}"),
        ] {
            assert_code(&app.gql_as(&token, ME, json!({})).await, "UNAUTHENTICATED");
        }
    }
}

#[tokio::test]
async fn token_signed_with_another_key_is_unauthenticated() {
    let app = TestApp::spawn().await;
    let s = app.sign_in(&phone(1)).await;
    let other =
        TestApp::with_env(&[("JWT_SECRET", "another-secret-another-secret-another-secret")]).await;
    let foreign = other.sign_in(&phone(1)).await;
    assert_eq!(foreign.user_id, s.user_id, "both databases start at id 1");
    assert_code(
        &app.gql_as(&foreign.access_token, ME, json!({})).await,
        "UNAUTHENTICATED",
    );
}

#[tokio::test]
async fn expired_access_token_is_unauthenticated() {
    let app = TestApp::spawn().await;
    let s = app.sign_in(&phone(1)).await;
    app.advance(900 - 10);
    assert_ok(&app.gql_as(&s.access_token, ME, json!({})).await);
    app.advance(20);
    assert_code(
        &app.gql_as(&s.access_token, ME, json!({})).await,
        "UNAUTHENTICATED",
    );
}

#[tokio::test]
async fn refresh_rotates_and_the_old_token_stops_working() {
    let app = TestApp::spawn().await;
    let s = app.sign_in(&phone(1)).await;
    let body = refresh(&app, &s.refresh_token).await;
    assert_ok(&body);
    assert_eq!(body["data"]["refreshToken"]["isNewUser"], false);
    assert_eq!(body["data"]["refreshToken"]["tokenType"], "Bearer");
    let next = rotated(&body);
    assert_ne!(next.refresh_token, s.refresh_token);
    assert_eq!(next.user_id, s.user_id);
    assert_ok(&app.gql_as(&next.access_token, ME, json!({})).await);
    // The old one is spent.
    assert_code(&refresh(&app, &s.refresh_token).await, "UNAUTHENTICATED");
}

#[tokio::test]
async fn reusing_a_rotated_refresh_token_revokes_the_whole_sign_in() {
    let app = TestApp::spawn().await;
    let s = app.sign_in(&phone(1)).await;
    let next = rotated(&refresh(&app, &s.refresh_token).await);
    // Someone replays the old token: refused, and the current token of that sign-in dies too.
    assert_code(&refresh(&app, &s.refresh_token).await, "UNAUTHENTICATED");
    assert_code(&refresh(&app, &next.refresh_token).await, "UNAUTHENTICATED");
}

#[tokio::test]
async fn reuse_in_one_sign_in_leaves_other_sign_ins_alone() {
    let app = TestApp::spawn().await;
    let phone_sign_in = app.sign_in(&phone(1)).await;
    app.advance(61);
    let laptop = app.sign_in(&phone(1)).await;
    rotated(&refresh(&app, &phone_sign_in.refresh_token).await);
    assert_code(
        &refresh(&app, &phone_sign_in.refresh_token).await,
        "UNAUTHENTICATED",
    );
    assert_ok(&refresh(&app, &laptop.refresh_token).await);
}

#[tokio::test]
async fn expired_refresh_token_is_unauthenticated() {
    let app = TestApp::with_env(&[("REFRESH_TOKEN_TTL_SECONDS", "3600")]).await;
    let s = app.sign_in(&phone(1)).await;
    app.advance(3600);
    assert_code(&refresh(&app, &s.refresh_token).await, "UNAUTHENTICATED");
}

#[tokio::test]
async fn unknown_refresh_tokens_are_unauthenticated() {
    let app = TestApp::spawn().await;
    for token in ["", "nope", &"x".repeat(10_000)] {
        assert_code(&refresh(&app, token).await, "UNAUTHENTICATED");
    }
}

#[tokio::test]
async fn logout_revokes_the_sign_in() {
    let app = TestApp::spawn().await;
    let s = app.sign_in(&phone(1)).await;
    let body = logout(&app, &s.refresh_token).await;
    assert_ok(&body);
    assert_eq!(body["data"]["logout"], true);
    assert_code(&refresh(&app, &s.refresh_token).await, "UNAUTHENTICATED");
    // A second logout with the same token: it is no longer valid.
    assert_eq!(
        logout(&app, &s.refresh_token).await["data"]["logout"],
        false
    );
    assert_eq!(logout(&app, "unknown").await["data"]["logout"], false);
}

#[tokio::test]
async fn logout_all_revokes_every_sign_in_of_the_caller_only() {
    let app = TestApp::spawn().await;
    let a1 = app.sign_in(&phone(1)).await;
    app.advance(61);
    let a2 = app.sign_in(&phone(1)).await;
    app.advance(61);
    let a3 = app.sign_in(&phone(1)).await;
    let b = app.sign_in(&phone(2)).await;
    let a3 = rotated(&refresh(&app, &a3.refresh_token).await);

    let body = app
        .gql_as(&a1.access_token, "mutation { logoutAll }", json!({}))
        .await;
    assert_ok(&body);
    assert_eq!(body["data"]["logoutAll"], 3);
    for s in [&a1, &a2, &a3] {
        assert_code(&refresh(&app, &s.refresh_token).await, "UNAUTHENTICATED");
    }
    assert_ok(&refresh(&app, &b.refresh_token).await);
    assert_code(
        &app.gql("mutation { logoutAll }", json!({})).await,
        "UNAUTHENTICATED",
    );
}

#[tokio::test]
async fn refresh_tokens_are_stored_only_as_hashes() {
    use sea_orm::EntityTrait;
    let app = TestApp::spawn().await;
    let s = app.sign_in(&phone(1)).await;
    let rows = phone_auth::db::entities::refresh_tokens::Entity::find()
        .all(&app.state.db)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_ne!(rows[0].token_hash, s.refresh_token);
    assert!(!rows[0].token_hash.contains(&s.refresh_token));
    let codes = phone_auth::db::entities::otp_codes::Entity::find()
        .all(&app.state.db)
        .await
        .unwrap();
    assert!(codes.iter().all(|c| c.code_hash.len() == 64));
}

fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT has a payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url"))
        .expect("JSON claims")
}

/// A token signed with the server's own key (derived from the test `JWT_SECRET`): only the
/// claims or header it is given can make it fail.
fn sign(app: &TestApp, header: jsonwebtoken::Header, claims: &Value) -> String {
    jsonwebtoken::encode(&header, claims, &app.state.keys.jwt_encoding).expect("the forgery signs")
}

fn access_header(alg: jsonwebtoken::Algorithm, typ: Option<&str>) -> jsonwebtoken::Header {
    jsonwebtoken::Header {
        typ: typ.map(str::to_owned),
        ..jsonwebtoken::Header::new(alg)
    }
}

/// Forgeries signed with the real key: each changes one thing the server checks. A
/// re-signed copy of a genuine token is accepted first, so every refusal is for the change.
#[tokio::test]
async fn forgeries_signed_with_the_real_key_are_unauthenticated() {
    use jsonwebtoken::Algorithm::{HS256, HS384, HS512};
    let app = TestApp::spawn().await;
    let s = app.sign_in(&phone(1)).await;
    let genuine = claims_of(&s.access_token);

    let control = sign(&app, access_header(HS256, Some("at+jwt")), &genuine);
    let body = app.gql_as(&control, ME, json!({})).await;
    assert_ok(&body);
    assert_eq!(body["data"]["me"]["id"], s.user_id.as_str());

    let with = |edit: &dyn Fn(&mut Value)| {
        let mut claims = genuine.clone();
        edit(&mut claims);
        claims
    };
    let user_id: i64 = s.user_id.parse().expect("numeric user id");
    let forgeries = [
        (
            "HS512",
            sign(&app, access_header(HS512, Some("at+jwt")), &genuine),
        ),
        (
            "HS384",
            sign(&app, access_header(HS384, Some("at+jwt")), &genuine),
        ),
        (
            "typ JWT",
            sign(&app, access_header(HS256, Some("JWT")), &genuine),
        ),
        ("no typ", sign(&app, access_header(HS256, None), &genuine)),
        (
            "iss",
            sign(
                &app,
                access_header(HS256, Some("at+jwt")),
                &with(&|c| c["iss"] = json!("someone-else")),
            ),
        ),
        (
            "no iss",
            sign(
                &app,
                access_header(HS256, Some("at+jwt")),
                &with(&|c| {
                    c.as_object_mut().map(|o| o.remove("iss"));
                }),
            ),
        ),
        (
            "aud",
            sign(
                &app,
                access_header(HS256, Some("at+jwt")),
                &with(&|c| c["aud"] = json!("someone-else")),
            ),
        ),
        (
            "sub as a number",
            sign(
                &app,
                access_header(HS256, Some("at+jwt")),
                &with(&|c| c["sub"] = json!(user_id)),
            ),
        ),
        (
            "sub not an id",
            sign(
                &app,
                access_header(HS256, Some("at+jwt")),
                &with(&|c| c["sub"] = json!(format!("{user_id}x"))),
            ),
        ),
        (
            "expired",
            sign(
                &app,
                access_header(HS256, Some("at+jwt")),
                &with(&|c| c["exp"] = json!(c["iat"].as_i64().unwrap_or(0) - 60)),
            ),
        ),
        (
            "no exp",
            sign(
                &app,
                access_header(HS256, Some("at+jwt")),
                &with(&|c| {
                    c.as_object_mut().map(|o| o.remove("exp"));
                }),
            ),
        ),
    ];
    for (what, token) in forgeries {
        let body = app.gql_as(&token, ME, json!({})).await;
        assert_code(&body, "UNAUTHENTICATED");
        assert!(body["data"].is_null(), "{what}: {body}");
    }
}

/// Refresh tokens are 43 characters: one far longer is refused before it is hashed or looked
/// up, by refreshToken and logout alike (a cheap guard against hashing megabytes per request).
#[tokio::test]
async fn absurdly_long_refresh_tokens_are_refused_without_a_lookup() {
    let app = TestApp::spawn().await;
    app.sign_in(&phone(1)).await;
    let plausible = "x".repeat(43);
    let long = "x".repeat(10_000);
    // Statements each call runs, for a token of a plausible length and for a long one.
    let mut counts = Vec::new();
    for token in [&plausible, &long] {
        app.reset_statements();
        assert_code(&refresh(&app, token).await, "UNAUTHENTICATED");
        let refreshes = app.statements();
        app.reset_statements();
        assert_eq!(logout(&app, token).await["data"]["logout"], false);
        counts.push((refreshes, app.statements()));
    }
    let [
        (refresh_looked_up, logout_looked_up),
        (refresh_long, logout_long),
    ] = counts[..]
    else {
        unreachable!("two tokens")
    };
    assert!(
        refresh_long < refresh_looked_up,
        "refreshToken: {refresh_long} statements for a long token, {refresh_looked_up} for a plausible one"
    );
    assert!(
        logout_long < logout_looked_up,
        "logout: {logout_long} statements for a long token, {logout_looked_up} for a plausible one"
    );
}

/// A refresh token is valid strictly before its expiry: logout answers true one second before
/// and false at the instant itself.
#[tokio::test]
async fn logout_at_the_refresh_tokens_expiry_is_false() {
    let app = TestApp::with_env(&[("REFRESH_TOKEN_TTL_SECONDS", "3600")]).await;
    let a = app.sign_in(&phone(1)).await;
    let b = app.sign_in(&phone(2)).await;
    app.advance(3599);
    assert_eq!(logout(&app, &a.refresh_token).await["data"]["logout"], true);
    app.advance(1);
    assert_eq!(
        logout(&app, &b.refresh_token).await["data"]["logout"],
        false
    );
}

/// logoutAll counts the sign-ins that were live: one idle for the whole refresh-token lifetime
/// (no refresh token of it works any more) is revoked but not counted.
#[tokio::test]
async fn logout_all_counts_only_the_sign_ins_that_were_live() {
    let app = TestApp::with_env(&[("REFRESH_TOKEN_TTL_SECONDS", "3600")]).await;
    let _idle = app.sign_in(&phone(1)).await;
    app.advance(61);
    let _recent = app.sign_in(&phone(1)).await;
    // The first sign-in was last used exactly one lifetime ago: idle. The second: live.
    app.advance(3600 - 61);
    let caller = app.sign_in(&phone(1)).await;
    let body = app
        .gql_as(&caller.access_token, "mutation { logoutAll }", json!({}))
        .await;
    assert_ok(&body);
    assert_eq!(body["data"]["logoutAll"], 2, "{body}");
}

/// refreshToken answers the payload verifyCode does (one conversion serves both): the
/// token's user, a Bearer token, and never a new user.
#[tokio::test]
async fn a_refresh_answers_the_sign_in_payload_without_a_new_user() {
    let app = TestApp::spawn().await;
    let s = app.sign_in(&phone(1)).await;
    let body = refresh(&app, &s.refresh_token).await;
    assert_ok(&body);
    let payload = &body["data"]["refreshToken"];
    assert_eq!(payload["isNewUser"], false, "{body}");
    assert_eq!(payload["tokenType"], "Bearer");
    assert!(
        payload["expiresIn"].as_i64().is_some_and(|s| s > 0),
        "{body}"
    );
    assert_eq!(payload["user"]["id"], s.user_id.as_str());
    assert_eq!(payload["user"]["phone"], phone(1));
}

/// logoutAll does not count a sign-in at its absolute end (SESSION_MAX_LIFETIME_SECONDS after
/// its verifyCode, to the second): it was no longer live.
#[tokio::test]
async fn logout_all_does_not_count_a_sign_in_at_its_absolute_end() {
    let app = TestApp::with_env(&[("SESSION_MAX_LIFETIME_SECONDS", "3600")]).await;
    let _ending = app.sign_in(&phone(1)).await;
    app.advance(3600);
    let caller = app.sign_in(&phone(1)).await;
    let body = app
        .gql_as(&caller.access_token, "mutation { logoutAll }", json!({}))
        .await;
    assert_ok(&body);
    assert_eq!(body["data"]["logoutAll"], 1, "{body}");
}
