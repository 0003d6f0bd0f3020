//! requestPhoneChange / confirmPhoneChange: the new number is proven by a code under every
//! send and attempt rule; PHONE_TAKEN only after that proof; the old number is told by SMS;
//! the caller's other sign-ins end.

use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};

use crate::helpers::{Session, TestApp, assert_code, assert_ok, error_code, phone, wrong};

const REQUEST: &str = "mutation($p: String!) { requestPhoneChange(phone: $p) { phone expiresAt resendAvailableAt devCode } }";
const CONFIRM: &str = "mutation($p: String!, $c: String!) { confirmPhoneChange(phone: $p, code: $c) { id phone inviteCode } }";
const REFRESH: &str =
    "mutation($t: String!) { refreshToken(refreshToken: $t) { accessToken refreshToken } }";

async fn request(app: &TestApp, session: &Session, new_phone: &str) -> Value {
    app.gql_as(&session.access_token, REQUEST, json!({ "p": new_phone }))
        .await
}

/// Requests a change and returns the code sent to the new phone.
async fn change_code(app: &TestApp, session: &Session, new_phone: &str) -> String {
    let body = request(app, session, new_phone).await;
    body["data"]["requestPhoneChange"]["devCode"]
        .as_str()
        .unwrap_or_else(|| panic!("requestPhoneChange failed: {body}"))
        .to_owned()
}

async fn confirm(app: &TestApp, session: &Session, new_phone: &str, code: &str) -> Value {
    app.gql_as(
        &session.access_token,
        CONFIRM,
        json!({ "p": new_phone, "c": code }),
    )
    .await
}

async fn me_phone(app: &TestApp, session: &Session) -> Value {
    app.gql_as(&session.access_token, "{ me { id phone } }", json!({}))
        .await
}

/// Notice rows queued for `e164` (kind `notice`).
async fn notices_to(app: &TestApp, e164: &str) -> i64 {
    let db = &app.state.db;
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            match db.get_database_backend() {
                sea_orm::DatabaseBackend::Postgres => {
                    "SELECT COUNT(*) AS n FROM sms_outbox WHERE phone = $1 AND kind = 'notice'"
                }
                _ => "SELECT COUNT(*) AS n FROM sms_outbox WHERE phone = ? AND kind = 'notice'",
            },
            [e164.into()],
        ))
        .await
        .expect("the outbox is readable")
        .expect("a count");
    row.try_get("", "n").expect("n")
}

#[tokio::test]
async fn a_phone_change_moves_the_account_ends_other_sign_ins_and_tells_the_old_phone() {
    let app = TestApp::spawn().await;
    let old_phone = phone(1001);
    let new_phone = phone(1002);
    let session = app.sign_in(&old_phone).await;
    app.advance(61);
    let other_device = app.sign_in(&old_phone).await;

    let code = change_code(&app, &session, &new_phone).await;
    app.settle().await;
    assert!(
        app.sms
            .last_to(&new_phone)
            .is_some_and(|text| text.contains(&code)),
        "the code went to the new phone"
    );
    let moved = confirm(&app, &session, &new_phone, &code).await;
    assert_ok(&moved);
    assert_eq!(moved["data"]["confirmPhoneChange"]["phone"], new_phone);
    assert_eq!(moved["data"]["confirmPhoneChange"]["id"], session.user_id);
    assert_eq!(
        moved["data"]["confirmPhoneChange"]["inviteCode"],
        session.invite_code
    );
    assert_eq!(
        me_phone(&app, &session).await["data"]["me"]["phone"],
        new_phone
    );

    // The old phone is told, through the outbox.
    assert_eq!(notices_to(&app, &old_phone).await, 1);
    app.settle().await;
    let notice = app
        .sms
        .last_to(&old_phone)
        .expect("the old phone got an SMS");
    assert!(notice.contains("moved to a new phone number"), "{notice}");
    assert!(
        !notice.contains(&new_phone[5..]),
        "the notice names no number: {notice}"
    );

    // The other device's sign-in is over; the caller's own goes on.
    let refreshed_other = app
        .gql(REFRESH, json!({ "t": other_device.refresh_token }))
        .await;
    assert_code(&refreshed_other, "UNAUTHENTICATED");
    let refreshed_own = app
        .gql(REFRESH, json!({ "t": session.refresh_token }))
        .await;
    assert_ok(&refreshed_own);

    // The new phone signs in to the same account; the old one is free for a new user.
    app.advance(61);
    let again = app
        .verify(&new_phone, &app.code_for(&new_phone).await)
        .await;
    assert_eq!(again["data"]["verifyCode"]["isNewUser"], false);
    assert_eq!(again["data"]["verifyCode"]["user"]["id"], session.user_id);
    let fresh = app
        .verify(&old_phone, &app.code_for(&old_phone).await)
        .await;
    assert_eq!(fresh["data"]["verifyCode"]["isNewUser"], true);
}

#[tokio::test]
async fn a_phone_change_refuses_bad_input_and_anonymous_callers() {
    let app = TestApp::spawn().await;
    let session = app.sign_in(&phone(1011)).await;

    let bad = request(&app, &session, "not a phone").await;
    assert_code(&bad, "BAD_USER_INPUT");
    assert_eq!(bad["errors"][0]["extensions"]["field"], "phone");
    let same = request(&app, &session, &phone(1011)).await;
    assert_code(&same, "BAD_USER_INPUT");
    assert_eq!(same["errors"][0]["extensions"]["field"], "phone");
    let bad_confirm = confirm(&app, &session, "12", "1234").await;
    assert_code(&bad_confirm, "BAD_USER_INPUT");
    assert_eq!(bad_confirm["errors"][0]["extensions"]["field"], "phone");
    let bad_code = confirm(&app, &session, &phone(1012), "12a4").await;
    assert_code(&bad_code, "BAD_USER_INPUT");
    assert_eq!(bad_code["errors"][0]["extensions"]["field"], "code");

    let anonymous = app.gql(REQUEST, json!({ "p": phone(1012) })).await;
    assert_code(&anonymous, "UNAUTHENTICATED");
    let anonymous = app
        .gql(CONFIRM, json!({ "p": phone(1012), "c": "1234" }))
        .await;
    assert_code(&anonymous, "UNAUTHENTICATED");
    // Nothing was sent for the refused requests.
    app.settle().await;
    assert!(app.sms.last_to(&phone(1012)).is_none());
}

#[tokio::test]
async fn every_send_rule_of_the_new_phone_applies() {
    let app = TestApp::spawn().await;
    let session = app.sign_in(&phone(1021)).await;
    assert_ok(&request(&app, &session, &phone(1022)).await);
    // The resend cooldown of the new phone…
    let again = request(&app, &session, &phone(1022)).await;
    assert_code(&again, "RATE_LIMITED");
    // …which it shares with sign-in codes for that phone.
    assert_code(&app.request_code(&phone(1022)).await, "RATE_LIMITED");
    // Two in one operation: refused before anything runs.
    let twice = app
        .gql_as(
            &session.access_token,
            "mutation { a: requestPhoneChange(phone: \"+79120001023\") { phone } \
                        b: requestPhoneChange(phone: \"+79120001024\") { phone } }",
            json!({}),
        )
        .await;
    assert_code(&twice, "BAD_USER_INPUT");
    app.settle().await;
    assert!(app.sms.last_to("+79120001023").is_none());
}

#[tokio::test]
async fn wrong_codes_count_attempts_down_and_then_lock_like_verify_code() {
    let app = TestApp::spawn().await;
    let session = app.sign_in(&phone(1031)).await;
    let new_phone = phone(1032);
    let code = change_code(&app, &session, &new_phone).await;
    for left in (0..5).rev() {
        let body = confirm(&app, &session, &new_phone, &wrong(&code)).await;
        assert_code(&body, "INVALID_CODE");
        assert_eq!(body["errors"][0]["extensions"]["attemptsLeft"], left);
    }
    let locked = confirm(&app, &session, &new_phone, &code).await;
    assert_code(&locked, "RATE_LIMITED");
    assert!(locked["errors"][0]["extensions"]["retryAfter"].as_u64() >= Some(1));
    assert_eq!(
        me_phone(&app, &session).await["data"]["me"]["phone"],
        phone(1031)
    );
}

#[tokio::test]
async fn a_taken_number_answers_phone_taken_only_after_a_correct_code() {
    let app = TestApp::spawn().await;
    let session = app.sign_in(&phone(1041)).await;
    let owner = app.sign_in(&phone(1042)).await;
    app.advance(61);

    // Asking reveals nothing: the owner's number gets a code like any other.
    let code = change_code(&app, &session, &phone(1042)).await;
    let guess = confirm(&app, &session, &phone(1042), &wrong(&code)).await;
    assert_code(&guess, "INVALID_CODE");
    assert_eq!(guess["errors"][0]["extensions"]["attemptsLeft"], 4);

    let taken = confirm(&app, &session, &phone(1042), &code).await;
    assert_code(&taken, "PHONE_TAKEN");
    let extensions = taken["errors"][0]["extensions"]
        .as_object()
        .expect("extensions");
    assert_eq!(extensions.len(), 1, "no extensions besides code: {taken}");
    assert!(taken["data"].is_null(), "{taken}");

    // Nothing moved, the owner is untouched, and the code is spent.
    assert_eq!(
        me_phone(&app, &session).await["data"]["me"]["phone"],
        phone(1041)
    );
    let owner_me = me_phone(&app, &owner).await;
    assert_eq!(owner_me["data"]["me"]["phone"], phone(1042));
    assert_eq!(
        error_code(&confirm(&app, &session, &phone(1042), &code).await).as_deref(),
        Some("INVALID_CODE")
    );
    assert_eq!(notices_to(&app, &phone(1041)).await, 0);
}

#[tokio::test]
async fn a_batch_of_confirmations_counts_every_guess_and_aliases_are_refused() {
    let app = TestApp::spawn().await;
    let session = app.sign_in(&phone(1051)).await;
    let new_phone = phone(1052);
    let code = change_code(&app, &session, &new_phone).await;

    let twice = app
        .gql_as(
            &session.access_token,
            "mutation($p: String!, $c: String!) { a: confirmPhoneChange(phone: $p, code: $c) { id } \
                                                  b: confirmPhoneChange(phone: $p, code: $c) { id } }",
            json!({ "p": new_phone, "c": wrong(&code) }),
        )
        .await;
    assert_code(&twice, "BAD_USER_INPUT");

    let op = json!({ "query": CONFIRM, "variables": { "p": new_phone, "c": wrong(&code) } });
    let auth = format!("Bearer {}", session.access_token);
    let r = app
        .post(
            &[
                ("content-type", "application/json"),
                ("authorization", &auth),
            ],
            Value::Array(vec![op; 7]).to_string(),
        )
        .await;
    let answers = r.body.as_array().expect("a batch answer");
    let mut left: Vec<u64> = answers
        .iter()
        .filter_map(|a| a["errors"][0]["extensions"]["attemptsLeft"].as_u64())
        .collect();
    left.sort_unstable();
    assert_eq!(left, vec![0, 1, 2, 3, 4], "{answers:?}");
    assert_eq!(
        answers
            .iter()
            .filter(|a| error_code(a).as_deref() == Some("RATE_LIMITED"))
            .count(),
        2
    );
    assert_code(
        &confirm(&app, &session, &new_phone, &code).await,
        "RATE_LIMITED",
    );
}

#[tokio::test]
async fn a_change_requested_on_one_instance_is_confirmed_on_another() {
    let url = crate::helpers::file_database_url().await;
    let first = TestApp::with_database(&url, &[]).await;
    let second = TestApp::with_database(&url, &[]).await;
    let session = first.sign_in(&phone(1061)).await;
    let code = change_code(&first, &session, &phone(1062)).await;
    let moved = confirm(&second, &session, &phone(1062), &code).await;
    assert_ok(&moved);
    assert_eq!(moved["data"]["confirmPhoneChange"]["phone"], phone(1062));
    assert_eq!(
        me_phone(&first, &session).await["data"]["me"]["phone"],
        phone(1062)
    );
}

#[tokio::test]
async fn a_logged_out_sign_in_cannot_move_the_account() {
    let app = TestApp::spawn().await;
    let session = app.sign_in(&phone(1071)).await;
    let code = change_code(&app, &session, &phone(1072)).await;
    let logout = app
        .gql(
            "mutation($t: String!) { logout(refreshToken: $t) }",
            json!({ "t": session.refresh_token }),
        )
        .await;
    assert_eq!(logout["data"]["logout"], true);
    assert_code(
        &confirm(&app, &session, &phone(1072), &code).await,
        "UNAUTHENTICATED",
    );
    // The logged-out token reads nothing any more (instant revocation); signing in again shows
    // the account still on its old phone.
    app.advance(61);
    let again = app.sign_in(&phone(1071)).await;
    assert_eq!(again.user_id, session.user_id);
    assert_eq!(
        me_phone(&app, &again).await["data"]["me"]["phone"],
        phone(1071)
    );
    assert_eq!(notices_to(&app, &phone(1071)).await, 0);
}

/// A phone change needs a recent verifyCode, like deleteAccount: an access token stolen from
/// an older sign-in cannot move the account to the thief's phone (and so outlive every logout).
/// Refreshing does not make a sign-in recent.
#[tokio::test]
async fn an_old_sign_in_cannot_change_the_phone_even_after_refreshing() {
    let app = TestApp::spawn().await;
    let session = app.sign_in(&phone(1081)).await;
    // Recent: the change can be asked for.
    let code = change_code(&app, &session, &phone(1082)).await;
    app.advance(301);
    let refreshed = app
        .gql(REFRESH, json!({ "t": session.refresh_token }))
        .await;
    assert_ok(&refreshed);
    let refreshed = Session {
        access_token: refreshed["data"]["refreshToken"]["accessToken"]
            .as_str()
            .expect("access token")
            .to_owned(),
        ..session.clone()
    };
    for caller in [&session, &refreshed] {
        let asked = request(&app, caller, &phone(1083)).await;
        assert_code(&asked, "FORBIDDEN");
        assert_eq!(
            asked["errors"][0]["extensions"]["reason"], "REAUTHENTICATION_REQUIRED",
            "{asked}"
        );
        let confirmed = confirm(&app, caller, &phone(1082), &code).await;
        assert_code(&confirmed, "FORBIDDEN");
        assert_eq!(
            confirmed["errors"][0]["extensions"]["reason"], "REAUTHENTICATION_REQUIRED",
            "{confirmed}"
        );
    }
    app.settle().await;
    assert!(app.sms.last_to(&phone(1083)).is_none(), "a code was sent");
    assert_eq!(
        me_phone(&app, &refreshed).await["data"]["me"]["phone"],
        phone(1081)
    );
    // A fresh sign-in on the phone may change it again.
    app.advance(61);
    let fresh = app.sign_in(&phone(1081)).await;
    assert_ok(&request(&app, &fresh, &phone(1083)).await);
}
