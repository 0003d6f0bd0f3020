//! deleteAccount: only from a sign-in with a recent verifyCode (carried through refreshes), and
//! then everything of the user goes at once while invitees, inviters and rate limits keep
//! what they must.

use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};
use serde_json::{Value, json};

use crate::helpers::{
    Session, TestApp, assert_code, assert_ok, fresh_database_url, phone, session_from,
};

const DELETE: &str = "mutation { deleteAccount }";
const REFRESH: &str = "mutation($t: String!) { refreshToken(refreshToken: $t) { accessToken refreshToken user { id phone inviteCode } } }";

async fn delete(app: &TestApp, session: &Session) -> Value {
    app.gql_as(&session.access_token, DELETE, json!({})).await
}

async fn count(app: &TestApp, sql: &str, value: impl Into<sea_orm::Value>) -> i64 {
    let db = &app.state.db;
    let sql = match db.get_database_backend() {
        DatabaseBackend::Postgres => sql.replace('?', "$1"),
        _ => sql.to_owned(),
    };
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            sql,
            [value.into()],
        ))
        .await
        .expect("the query runs")
        .expect("a count");
    row.try_get("", "n").expect("n")
}

#[tokio::test]
async fn an_old_sign_in_must_sign_in_again_even_after_refreshing() {
    let app = TestApp::spawn().await;
    let session = app.sign_in(&phone(2001)).await;
    app.advance(301);

    let refused = delete(&app, &session).await;
    assert_code(&refused, "FORBIDDEN");
    assert_eq!(
        refused["errors"][0]["extensions"]["reason"],
        "REAUTHENTICATION_REQUIRED"
    );
    // A refresh gives new tokens, not a new verifyCode.
    let refreshed = app
        .gql(REFRESH, json!({ "t": session.refresh_token }))
        .await;
    let refreshed = session_from(&refreshed["data"]["refreshToken"]).expect("refreshed");
    let refused = delete(&app, &refreshed).await;
    assert_eq!(
        refused["errors"][0]["extensions"]["reason"], "REAUTHENTICATION_REQUIRED",
        "{refused}"
    );
    // Still there.
    let me = app
        .gql_as(&refreshed.access_token, "{ me { id } }", json!({}))
        .await;
    assert_eq!(me["data"]["me"]["id"], session.user_id);

    // Within the window, the refreshed token of a fresh sign-in may delete.
    let fresh = app.sign_in(&phone(2001)).await;
    app.advance(200);
    let refreshed = app.gql(REFRESH, json!({ "t": fresh.refresh_token })).await;
    let refreshed = session_from(&refreshed["data"]["refreshToken"]).expect("refreshed");
    let deleted = delete(&app, &refreshed).await;
    assert_ok(&deleted);
    assert_eq!(deleted["data"]["deleteAccount"], true);
}

#[tokio::test]
async fn deletion_removes_the_user_and_every_sign_in_but_keeps_invites_and_limits() {
    // Delivery only when the test asks: the queued SMS must still be queued at deletion.
    let url = fresh_database_url().await;
    let app = TestApp::with_provider(&url, &[]).await;
    let inviter = app.sign_in(&phone(2011)).await;
    let gone_phone = phone(2012);
    let other_device = app.sign_in(&gone_phone).await;
    app.advance(61);
    let doomed = app.sign_in(&gone_phone).await;
    let invitee = app.sign_in(&phone(2013)).await;
    let stranger = app.sign_in(&phone(2014)).await;
    assert_ok(&app.activate(&doomed, &inviter.invite_code).await);
    assert_ok(&app.activate(&invitee, &doomed.invite_code).await);
    // A pending code and its queued SMS.
    app.advance(61);
    assert_ok(&app.request_code(&gone_phone).await);
    let sends_before = count(
        &app,
        "SELECT COUNT(*) AS n FROM rate_events WHERE bucket = ?",
        format!("code:phone:{gone_phone}"),
    )
    .await;
    assert_eq!(sends_before, 3);

    let deleted = delete(&app, &doomed).await;
    assert_ok(&deleted);
    assert_eq!(deleted["data"]["deleteAccount"], true);

    // Every token of the user is dead.
    for session in [&doomed, &other_device] {
        let refreshed = app
            .gql(REFRESH, json!({ "t": session.refresh_token }))
            .await;
        assert_code(&refreshed, "UNAUTHENTICATED");
        let me = app
            .gql_as(&session.access_token, "{ me { id } }", json!({}))
            .await;
        assert_code(&me, "UNAUTHENTICATED");
    }
    assert_code(&delete(&app, &other_device).await, "UNAUTHENTICATED");
    let tokens_left = count(
        &app,
        "SELECT COUNT(*) AS n FROM refresh_tokens WHERE user_id = ?",
        doomed.user_id.parse::<i64>().expect("a numeric id"),
    )
    .await;
    assert_eq!(tokens_left, 0);
    // Pending code and queued SMS gone; rate-limit history kept.
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) AS n FROM otp_codes WHERE phone = ?",
            gone_phone.as_str()
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) AS n FROM sms_outbox WHERE phone = ? AND status = 'pending'",
            gone_phone.as_str()
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) AS n FROM rate_events WHERE bucket = ?",
            format!("code:phone:{gone_phone}"),
        )
        .await,
        sends_before
    );

    // The invitee keeps the code they activated and still cannot activate another.
    let me = app
        .gql_as(
            &invitee.access_token,
            "{ me { activatedInviteCode } }",
            json!({}),
        )
        .await;
    assert_eq!(me["data"]["me"]["activatedInviteCode"], doomed.invite_code);
    let again = app.activate(&invitee, &stranger.invite_code).await;
    assert_code(&again, "INVITE_ALREADY_ACTIVATED");
    // The inviter's list no longer shows the deleted user.
    let list = app
        .gql_as(
            &inviter.access_token,
            "{ me { invitedUsers { totalCount nodes { id } } } }",
            json!({}),
        )
        .await;
    assert_ok(&list);
    assert_eq!(list["data"]["me"]["invitedUsers"]["totalCount"], 0);
    assert_eq!(list["data"]["me"]["invitedUsers"]["nodes"], json!([]));

    // The phone signs up anew: a new user with a new invite code.
    app.advance(61);
    let code = app.code_for(&gone_phone).await;
    let anew = app.verify(&gone_phone, &code).await;
    assert_eq!(anew["data"]["verifyCode"]["isNewUser"], true, "{anew}");
    let anew = session_from(&anew["data"]["verifyCode"]).expect("signed in");
    assert_ne!(anew.user_id, doomed.user_id);
    assert_ne!(anew.invite_code, doomed.invite_code);
}

#[tokio::test]
async fn a_logged_out_sign_in_cannot_delete_and_anonymous_callers_neither() {
    let app = TestApp::spawn().await;
    let session = app.sign_in(&phone(2021)).await;
    let logout = app
        .gql(
            "mutation($t: String!) { logout(refreshToken: $t) }",
            json!({ "t": session.refresh_token }),
        )
        .await;
    assert_eq!(logout["data"]["logout"], true);
    assert_code(&delete(&app, &session).await, "UNAUTHENTICATED");
    assert_code(&app.gql(DELETE, json!({})).await, "UNAUTHENTICATED");
    // The logged-out token reads nothing any more (instant revocation); the phone signing in
    // again finds the same user.
    app.advance(61);
    let again = app.sign_in(&phone(2021)).await;
    assert_eq!(again.user_id, session.user_id, "not deleted");
}

#[tokio::test]
async fn a_deletion_on_one_instance_ends_the_sign_ins_on_another() {
    let url = crate::helpers::file_database_url().await;
    let first = TestApp::with_database(&url, &[]).await;
    let second = TestApp::with_database(&url, &[]).await;
    let session = first.sign_in(&phone(2031)).await;
    assert_ok(&delete(&second, &session).await);
    let refreshed = first
        .gql(REFRESH, json!({ "t": session.refresh_token }))
        .await;
    assert_code(&refreshed, "UNAUTHENTICATED");
    let me = first
        .gql_as(&session.access_token, "{ me { id } }", json!({}))
        .await;
    assert_code(&me, "UNAUTHENTICATED");
}
