//! TEST_PHONE_NUMBERS (fixed codes, no SMS, every attempt rule) and the SMS text
//! (SMS_TEMPLATE, SMS_APP_NAME, WEBOTP_DOMAIN, ANDROID_APP_HASH).

use phone_auth::config::Config;

use crate::helpers::{TestApp, assert_code, assert_ok, phone};

const REVIEW: &str = "+79990000000";

fn config(pairs: &[(&str, &str)]) -> Result<Config, String> {
    let map: std::collections::HashMap<&str, &str> = pairs.iter().copied().collect();
    Config::from_lookup(|k| map.get(k).map(|v| v.to_string())).map_err(|e| e.to_string())
}

#[tokio::test]
async fn a_review_number_signs_in_with_its_fixed_code_and_gets_no_sms() {
    // Codes hidden as in production: the reviewer knows the code, nobody is told it.
    let app = TestApp::with_env(&[
        (
            "TEST_PHONE_NUMBERS",
            "8 999 000-00-00=1234, +79990000009=0000",
        ),
        ("OTP_EXPOSE", "false"),
    ])
    .await;
    let requested = app.request_code(REVIEW).await;
    assert_ok(&requested);
    assert!(requested["data"]["requestCode"]["devCode"].is_null());
    app.settle().await;
    assert!(app.sms.messages().is_empty(), "{:?}", app.sms.messages());

    let signed_in = app.verify(REVIEW, "1234").await;
    assert_ok(&signed_in);
    assert_eq!(signed_in["data"]["verifyCode"]["user"]["phone"], REVIEW);
    // Single use, like any code.
    assert_code(&app.verify(REVIEW, "1234").await, "INVALID_CODE");

    // Other numbers are untouched: a random code, sent by SMS.
    assert_ok(&app.request_code(&phone(3001)).await);
    app.settle().await;
    assert!(app.sms.last_to(&phone(3001)).is_some());
}

#[tokio::test]
async fn a_review_number_still_locks_after_the_attempt_limit() {
    let app = TestApp::with_env(&[("TEST_PHONE_NUMBERS", "+79990000000=1234")]).await;
    assert_ok(&app.request_code(REVIEW).await);
    for left in (0..5).rev() {
        let body = app.verify(REVIEW, "4321").await;
        assert_code(&body, "INVALID_CODE");
        assert_eq!(body["errors"][0]["extensions"]["attemptsLeft"], left);
    }
    assert_code(&app.verify(REVIEW, "1234").await, "RATE_LIMITED");
    // And its resend cooldown holds.
    assert_code(&app.request_code(REVIEW).await, "RATE_LIMITED");
    assert!(app.sms.messages().is_empty());
}

#[test]
fn review_numbers_are_validated_and_production_takes_them_only_when_listed() {
    for (value, needle) in [
        ("+79990000000", "expected phone=code"),
        ("not-a-phone=1234", "not a phone number"),
        ("+79990000000=12345", "4 digits"),
        ("+79990000000=12a4", "4 digits"),
        ("+79990000000=1234,89990000000=1111", "listed twice"),
    ] {
        let err = config(&[("TEST_PHONE_NUMBERS", value)]).expect_err(value);
        assert!(
            err.contains("TEST_PHONE_NUMBERS") && err.contains(needle),
            "{value}: {err}"
        );
    }
    let admin = config(&[
        ("ADMIN_PHONES", "+79990000001"),
        ("TEST_PHONE_NUMBERS", "+7 999 000 00 01=1234"),
    ])
    .expect_err("an admin phone");
    assert!(admin.contains("ADMIN_PHONES"), "{admin}");
    let six = config(&[
        ("OTP_LENGTH", "6"),
        ("TEST_PHONE_NUMBERS", "+79990000000=123456"),
    ])
    .expect("six digits with OTP_LENGTH=6");
    assert_eq!(
        six.test_phone_numbers
            .get("+79990000000")
            .map(String::as_str),
        Some("123456")
    );

    let production = [
        ("APP_ENV", "production"),
        ("JWT_SECRET", "a-production-secret-of-at-least-32-bytes!"),
        ("SMS_PROVIDER", "console"),
    ];
    let plain = config(&production).expect("production starts");
    assert!(plain.test_phone_numbers.is_empty(), "none unless listed");
    let mut listed = production.to_vec();
    listed.push(("TEST_PHONE_NUMBERS", "+79990000000=1234"));
    assert_eq!(config(&listed).expect("listed").test_phone_numbers.len(), 1);
}

/// Requests a code for `phone(n)` and returns the delivered text with the code.
async fn delivered(app: &TestApp, n: u32) -> (String, String) {
    let code = app.code_for(&phone(n)).await;
    app.settle().await;
    let text = app.sms.last_to(&phone(n)).expect("an SMS was sent");
    (text, code)
}

#[tokio::test]
async fn the_default_sms_text_names_the_app_and_has_no_autofill_lines() {
    let app = TestApp::spawn().await;
    let (text, code) = delivered(&app, 3011).await;
    assert_eq!(text, format!("Your phone-auth code: {code}"));
}

#[tokio::test]
async fn the_sms_text_carries_the_app_hash_and_ends_with_the_webotp_line() {
    let app = TestApp::with_env(&[
        ("SMS_TEMPLATE", "{code} is your {app} sign-in code"),
        ("SMS_APP_NAME", "Acme"),
        ("WEBOTP_DOMAIN", "App.Example.com"),
        ("ANDROID_APP_HASH", "FA+9qCX9VSu"),
    ])
    .await;
    let (text, code) = delivered(&app, 3021).await;
    assert_eq!(
        text,
        format!("{code} is your Acme sign-in code\nFA+9qCX9VSu\n@app.example.com #{code}")
    );

    let webotp_only = TestApp::with_env(&[("WEBOTP_DOMAIN", "app.example.com")]).await;
    let (text, code) = delivered(&webotp_only, 3022).await;
    assert_eq!(
        text,
        format!("Your phone-auth code: {code}\n@app.example.com #{code}")
    );
    let hash_only = TestApp::with_env(&[("ANDROID_APP_HASH", "FA+9qCX9VSu")]).await;
    let (text, code) = delivered(&hash_only, 3023).await;
    assert_eq!(text, format!("Your phone-auth code: {code}\nFA+9qCX9VSu"));
}

#[test]
fn the_sms_text_settings_are_validated() {
    for (name, value, needle) in [
        ("SMS_TEMPLATE", "Your code", "{code}"),
        ("SMS_TEMPLATE", "{code} for {user}", "only {code} and {app}"),
        (
            "SMS_TEMPLATE",
            &"x".repeat(90).replace("xx", "{code}"),
            "at most",
        ),
        ("SMS_APP_NAME", &"a".repeat(31), "at most"),
        ("WEBOTP_DOMAIN", "https://app.example.com", "host name"),
        ("WEBOTP_DOMAIN", "app.example.com:443", "host name"),
        ("WEBOTP_DOMAIN", "app..example.com", "host name"),
        ("ANDROID_APP_HASH", "FA+9qCX9VS", "11-character"),
        ("ANDROID_APP_HASH", "FA+9qCX9VS!", "11-character"),
    ] {
        let err = config(&[(name, value)]).expect_err(value);
        assert!(err.contains(name) && err.contains(needle), "{value}: {err}");
    }
    let ok = config(&[
        ("SMS_TEMPLATE", "{app}: {code}"),
        ("WEBOTP_DOMAIN", "localhost"),
        ("ANDROID_APP_HASH", "FA+9qCX9VSu"),
    ])
    .expect("valid");
    assert_eq!(ok.sms_text.webotp_domain.as_deref(), Some("localhost"));
}

#[test]
fn the_reauthentication_window_is_validated() {
    assert_eq!(config(&[]).expect("defaults").reauth_max_age.as_secs(), 300);
    assert_eq!(
        config(&[("REAUTH_MAX_AGE_SECONDS", "60")])
            .expect("60 s")
            .reauth_max_age
            .as_secs(),
        60
    );
    for bad in ["0", "86401", "-1", "soon"] {
        let err = config(&[("REAUTH_MAX_AGE_SECONDS", bad)]).expect_err(bad);
        assert!(err.contains("REAUTH_MAX_AGE_SECONDS"), "{bad}: {err}");
    }
}

/// Starts the real binary in production with `extra`, waits until it is ready, stops it with
/// SIGTERM and returns everything it logged.
async fn production_start_log(extra: &[(&str, &str)]) -> String {
    let dir = std::env::temp_dir().join(format!(
        "phone-auth-review-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_phone-auth"));
    command
        .current_dir(&dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("APP_ENV", "production")
        .env("JWT_SECRET", "a-production-secret-of-at-least-32-bytes!")
        .env("SMS_PROVIDER", "console")
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, v) in extra {
        command.env(k, v);
    }
    let child = command.spawn().expect("the binary starts");
    let client = reqwest::Client::new();
    let mut ready = false;
    for _ in 0..300 {
        if let Ok(r) = client
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            && r.status().is_success()
        {
            ready = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let output = child.wait_with_output().expect("the binary stops");
    let _ = std::fs::remove_dir_all(&dir);
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(ready, "not ready within 3 s: {log}");
    log
}

#[tokio::test]
async fn production_warns_at_start_while_review_numbers_are_set() {
    // Eight digits: a code no timestamp of the log is likely to contain by chance.
    let with = production_start_log(&[
        ("OTP_LENGTH", "8"),
        ("TEST_PHONE_NUMBERS", "+79990000000=86420975"),
    ])
    .await;
    assert!(with.contains("TEST_PHONE_NUMBERS is set"), "{with}");
    assert!(!with.contains("86420975"), "the code is not logged: {with}");
    let without = production_start_log(&[]).await;
    assert!(!without.contains("TEST_PHONE_NUMBERS"), "{without}");
}
