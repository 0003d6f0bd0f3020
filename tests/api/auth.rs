//! requestCode and verifyCode: phones, codes, attempts, expiry, sign-up and sign-in.

use serde_json::json;

use crate::helpers::{TestApp, assert_code, assert_ok, phone, session_from, wrong};

#[tokio::test]
async fn every_spelling_of_a_phone_gives_one_user() {
    let app = TestApp::spawn().await;
    let first = app.sign_in("89123456789").await;
    assert_eq!(first.phone, "+79123456789");
    for spelling in ["+79123456789", "+7 (912) 345-67-89"] {
        app.advance(61);
        let again = app.sign_in(spelling).await;
        assert_eq!(again.user_id, first.user_id, "{spelling}");
        assert_eq!(again.invite_code, first.invite_code);
    }
}

#[tokio::test]
async fn request_code_reports_e164_and_times_and_sends_the_code() {
    let app = TestApp::spawn().await;
    let body = app.request_code("8 (912) 000-00-01").await;
    assert_ok(&body);
    let payload = &body["data"]["requestCode"];
    assert_eq!(payload["phone"], "+79120000001");
    let code = payload["devCode"].as_str().expect("devCode in development");
    assert_eq!(code.len(), 4);
    let expires: chrono::DateTime<chrono::Utc> =
        payload["expiresAt"].as_str().unwrap().parse().unwrap();
    let resend: chrono::DateTime<chrono::Utc> = payload["resendAvailableAt"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let now = phone_auth::clock::Clock::now(&app.clock);
    assert_eq!((expires - now).num_seconds(), 300);
    assert_eq!((resend - now).num_seconds(), 60);
    // Delivery runs in the background; it reaches the sender (10 s: a loaded machine).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while app.sms.last_to("+79120000001").is_none() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let text = app
        .sms
        .last_to("+79120000001")
        .expect("the SMS sender got the code");
    assert!(text.contains(code), "{text}");
}

#[tokio::test]
async fn dev_code_is_null_when_exposure_is_off() {
    let app = TestApp::with_env(&[("OTP_EXPOSE", "false")]).await;
    let body = app.request_code(&phone(1)).await;
    assert_ok(&body);
    assert!(body["data"]["requestCode"]["devCode"].is_null());
}

#[tokio::test]
async fn code_length_is_configurable() {
    let app = TestApp::with_env(&[("OTP_LENGTH", "6")]).await;
    let code = app.code_for(&phone(1)).await;
    assert_eq!(code.len(), 6);
    assert_code(&app.verify(&phone(1), "1234").await, "BAD_USER_INPUT");
    assert_ok(&app.verify(&phone(1), &code).await);
}

#[tokio::test]
async fn invalid_phones_are_bad_user_input() {
    let app = TestApp::spawn().await;
    for raw in [
        "",
        "12",
        "not a phone",
        "+7 912 345 67 89 00 11",
        "+999123456789",
    ] {
        let body = app.request_code(raw).await;
        assert_code(&body, "BAD_USER_INPUT");
        assert_eq!(body["errors"][0]["extensions"]["field"], "phone", "{raw}");
        let body = app.verify(raw, "1234").await;
        assert_code(&body, "BAD_USER_INPUT");
    }
}

#[tokio::test]
async fn malformed_codes_are_bad_user_input() {
    let app = TestApp::spawn().await;
    app.code_for(&phone(1)).await;
    for raw in ["", "123", "12345", "12a4", "    "] {
        let body = app.verify(&phone(1), raw).await;
        assert_code(&body, "BAD_USER_INPUT");
        assert_eq!(body["errors"][0]["extensions"]["field"], "code");
    }
    // Malformed input spends no attempt.
    let code = app.code_for(&phone(2)).await;
    for _ in 0..10 {
        app.verify(&phone(2), "x").await;
    }
    assert_ok(&app.verify(&phone(2), &code).await);
}

#[tokio::test]
async fn wrong_code_counts_attempts_down_then_the_code_is_dead() {
    let app = TestApp::spawn().await;
    let code = app.code_for(&phone(1)).await;
    for left in (0..5).rev() {
        let body = app.verify(&phone(1), &wrong(&code)).await;
        assert_code(&body, "INVALID_CODE");
        assert_eq!(body["errors"][0]["extensions"]["attemptsLeft"], left);
    }
    // Burned: even the right code fails, with RATE_LIMITED and when to ask again.
    let body = app.verify(&phone(1), &code).await;
    assert_code(&body, "RATE_LIMITED");
    let retry = body["errors"][0]["extensions"]["retryAfter"]
        .as_u64()
        .expect("retryAfter");
    assert!((1..=60).contains(&retry), "{retry}");
    // After the cooldown a new code works.
    app.advance(61);
    let code = app.code_for(&phone(1)).await;
    assert_ok(&app.verify(&phone(1), &code).await);
}

#[tokio::test]
async fn right_code_after_some_wrong_ones_still_works() {
    let app = TestApp::spawn().await;
    let code = app.code_for(&phone(1)).await;
    for _ in 0..4 {
        assert_code(&app.verify(&phone(1), &wrong(&code)).await, "INVALID_CODE");
    }
    assert_ok(&app.verify(&phone(1), &code).await);
}

#[tokio::test]
async fn no_pending_code_is_invalid_code() {
    let app = TestApp::spawn().await;
    let body = app.verify(&phone(1), "1234").await;
    assert_code(&body, "INVALID_CODE");
    assert_eq!(body["errors"][0]["extensions"]["attemptsLeft"], 0);
}

#[tokio::test]
async fn expired_code_is_code_expired() {
    let app = TestApp::spawn().await;
    let code = app.code_for(&phone(1)).await;
    app.advance(299);
    // Still valid one second before expiry: spend a wrong guess to prove it is live.
    assert_code(&app.verify(&phone(1), &wrong(&code)).await, "INVALID_CODE");
    app.advance(1);
    assert_code(&app.verify(&phone(1), &code).await, "CODE_EXPIRED");
}

#[tokio::test]
async fn a_code_works_once() {
    let app = TestApp::spawn().await;
    let code = app.code_for(&phone(1)).await;
    assert_ok(&app.verify(&phone(1), &code).await);
    assert_code(&app.verify(&phone(1), &code).await, "INVALID_CODE");
}

#[tokio::test]
async fn a_new_code_replaces_the_old_one() {
    let app = TestApp::spawn().await;
    let old = app.code_for(&phone(1)).await;
    let new = code_other_than(&app, &phone(1), &old).await;
    let body = app.verify(&phone(1), &old).await;
    assert_code(&body, "INVALID_CODE");
    assert_eq!(body["errors"][0]["extensions"]["attemptsLeft"], 4);
    assert_ok(&app.verify(&phone(1), &new).await);
}

/// Requests new codes for `phone` (past the cooldown each time) until one differs from
/// `other`: two random 4-digit codes are equal once in 10^4, and a test that skips its
/// assertion in that case would also skip it when a bug makes them equal.
async fn code_other_than(app: &TestApp, phone: &str, other: &str) -> String {
    for _ in 0..4 {
        app.advance(61);
        let code = app.code_for(phone).await;
        if code != other {
            return code;
        }
    }
    panic!("four fresh codes in a row equal {other}: codes are not random");
}

#[tokio::test]
async fn resend_inside_the_cooldown_is_refused_and_keeps_the_old_code() {
    let app = TestApp::spawn().await;
    let code = app.code_for(&phone(1)).await;
    app.advance(30);
    let body = app.request_code(&phone(1)).await;
    assert_code(&body, "RATE_LIMITED");
    assert_eq!(body["errors"][0]["extensions"]["retryAfter"], 30);
    assert_ok(&app.verify(&phone(1), &code).await);
}

#[tokio::test]
async fn codes_of_one_phone_do_not_work_for_another() {
    let app = TestApp::spawn().await;
    let code = app.code_for(&phone(1)).await;
    app.code_for(&phone(2)).await;
    let own = code_other_than(&app, &phone(2), &code).await;
    // Phone 1's code, entered for phone 2: a wrong guess against phone 2's code.
    let body = app.verify(&phone(2), &code).await;
    assert_code(&body, "INVALID_CODE");
    assert_eq!(body["errors"][0]["extensions"]["attemptsLeft"], 4);
    // Both codes still work for their own phones.
    assert_ok(&app.verify(&phone(1), &code).await);
    assert_ok(&app.verify(&phone(2), &own).await);
}

#[tokio::test]
async fn first_sign_in_creates_the_user_and_later_ones_keep_it() {
    let app = TestApp::spawn().await;
    let code = app.code_for(&phone(1)).await;
    let first = app.verify(&phone(1), &code).await;
    assert_ok(&first);
    let payload = &first["data"]["verifyCode"];
    assert_eq!(payload["isNewUser"], true);
    assert_eq!(payload["tokenType"], "Bearer");
    assert_eq!(payload["expiresIn"], 900);
    let invite = payload["user"]["inviteCode"].as_str().expect("invite code");
    assert_eq!(invite.len(), 6);
    assert!(
        invite
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    );
    assert!(payload["user"]["activatedInviteCode"].is_null());

    app.advance(61);
    let code = app.code_for(&phone(1)).await;
    let second = app.verify(&phone(1), &code).await;
    assert_eq!(second["data"]["verifyCode"]["isNewUser"], false);
    assert_eq!(second["data"]["verifyCode"]["user"]["inviteCode"], invite);
    assert_eq!(
        second["data"]["verifyCode"]["user"]["id"],
        payload["user"]["id"]
    );
}

#[tokio::test]
async fn every_user_gets_a_distinct_invite_code() {
    let app = TestApp::spawn().await;
    let mut codes = std::collections::HashSet::new();
    for n in 0..25 {
        codes.insert(app.sign_in(&phone(n)).await.invite_code);
    }
    assert_eq!(codes.len(), 25);
}

#[tokio::test]
async fn me_shows_the_profile() {
    let app = TestApp::spawn().await;
    let session = app.sign_in(&phone(1)).await;
    let body = app
        .gql_as(
            &session.access_token,
            "{ me { id phone inviteCode activatedInviteCode createdAt } }",
            json!({}),
        )
        .await;
    assert_ok(&body);
    assert_eq!(body["data"]["me"]["id"], session.user_id.as_str());
    assert_eq!(body["data"]["me"]["phone"], phone(1));
    assert_eq!(
        body["data"]["me"]["inviteCode"],
        session.invite_code.as_str()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_right_guesses_sign_in_exactly_once() {
    // A file database with the production pool: in-memory SQLite has one connection and
    // would run the twenty requests one after another.
    let app = std::sync::Arc::new(TestApp::for_races(&[]).await);
    let code = app.code_for(&phone(1)).await;
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let app = app.clone();
            let code = code.clone();
            tokio::spawn(async move { app.verify(&phone(1), &code).await })
        })
        .collect();
    let mut wins = 0;
    for task in tasks {
        let body = task.await.expect("task");
        if session_from(&body["data"]["verifyCode"]).is_some() {
            wins += 1;
        } else {
            let code = body["errors"][0]["extensions"]["code"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            assert!(
                ["INVALID_CODE", "RATE_LIMITED"].contains(&code.as_str()),
                "{body}"
            );
        }
    }
    assert_eq!(wins, 1);
}
