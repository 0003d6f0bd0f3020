//! Development does not run on production's per-IP limits for loopback clients (a developer's
//! GraphiQL, frontend and scripts all come from 127.0.0.1), while every per-phone rule stays
//! on; production, and any other client address, keep the per-IP limits.
//!
//! `BASE` counts loopback clients (`IP_LIMITS_ON_LOOPBACK=true`); these tests set it back to
//! its default by giving it an empty value. The in-process router has no socket peer, so the
//! client address comes from `X-Forwarded-For` (`TRUST_PROXY_HEADERS=true`);
//! `startup::the_binary_in_development_lets_its_loopback_developer_past_the_per_ip_limits`
//! checks the same over a real loopback socket.

use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_code, assert_ok, phone};

/// Two codes per client IP per hour: the third request from one address is over.
const TIGHT_IP_LIMIT: &[(&str, &str)] = &[
    ("IP_CODES_PER_HOUR", "2"),
    ("IP_VERIFY_PER_HOUR", "2"),
    ("TRUST_PROXY_HEADERS", "true"),
];

const LOOPBACK_V4: &str = "127.0.0.1";
const LOOPBACK_V6: &str = "::1";
const REMOTE: &str = "203.0.113.7";

async fn call(app: &TestApp, client: &str, query: &str, variables: Value) -> Value {
    let headers = [
        ("content-type", "application/json"),
        ("x-forwarded-for", client),
    ];
    let body = json!({ "query": query, "variables": variables });
    app.post(&headers, body.to_string()).await.body
}

async fn request_code(app: &TestApp, phone: &str, client: &str) -> Value {
    let query = "mutation($p: String!) { requestCode(phone: $p) { phone devCode } }";
    call(app, client, query, json!({ "p": phone })).await
}

async fn verify(app: &TestApp, phone: &str, code: &str, client: &str) -> Value {
    let query =
        "mutation($p: String!, $c: String!) { verifyCode(phone: $p, code: $c) { isNewUser } }";
    call(app, client, query, json!({ "p": phone, "c": code })).await
}

fn with(overrides: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    TIGHT_IP_LIMIT.iter().chain(overrides).copied().collect()
}

#[tokio::test]
async fn development_skips_per_ip_limits_for_loopback_clients_but_keeps_per_phone_rules() {
    // The development default: IP_LIMITS_ON_LOOPBACK unset.
    let app = TestApp::with_env(&with(&[("IP_LIMITS_ON_LOOPBACK", "")])).await;
    // More codes than the per-IP limit allows, from both loopback addresses, all sent.
    for client in [LOOPBACK_V4, LOOPBACK_V6, "::ffff:127.0.0.1"] {
        for n in 1..=3 {
            let phone = phone(n + 10 * client.len() as u32);
            assert_ok(&request_code(&app, &phone, client).await);
        }
    }
    // More verifyCode calls than IP_VERIFY_PER_HOUR.
    for round in 0..3 {
        let body = request_code(&app, &phone(99), LOOPBACK_V4).await;
        assert_ok(&body);
        let code = body["data"]["requestCode"]["devCode"]
            .as_str()
            .expect("devCode");
        assert_ok(&verify(&app, &phone(99), code, LOOPBACK_V4).await);
        if round < 2 {
            app.advance(61);
        }
    }
    // Per-phone rules still hold: a resend inside the cooldown is refused ...
    assert_code(
        &request_code(&app, &phone(99), LOOPBACK_V4).await,
        "RATE_LIMITED",
    );
    // ... and so is the phone's hourly send limit (5 by default).
    for _ in 0..2 {
        app.advance(61);
        assert_ok(&request_code(&app, &phone(99), LOOPBACK_V4).await);
    }
    app.advance(61);
    assert_code(
        &request_code(&app, &phone(99), LOOPBACK_V4).await,
        "RATE_LIMITED",
    );
}

#[tokio::test]
async fn development_keeps_per_ip_limits_for_other_clients() {
    let app = TestApp::with_env(&with(&[("IP_LIMITS_ON_LOOPBACK", "")])).await;
    assert_ok(&request_code(&app, &phone(1), REMOTE).await);
    assert_ok(&request_code(&app, &phone(2), REMOTE).await);
    assert_code(&request_code(&app, &phone(3), REMOTE).await, "RATE_LIMITED");
    // The same server still lets its loopback developer through.
    assert_ok(&request_code(&app, &phone(4), LOOPBACK_V4).await);
}

#[tokio::test]
async fn production_counts_loopback_clients() {
    let app = TestApp::with_env(&with(&[
        ("APP_ENV", "production"),
        ("OTP_EXPOSE", "false"),
        ("SMS_PROVIDER", "console"),
        ("IP_LIMITS_ON_LOOPBACK", ""),
    ]))
    .await;
    assert_ok(&request_code(&app, &phone(1), LOOPBACK_V4).await);
    assert_ok(&request_code(&app, &phone(2), LOOPBACK_V4).await);
    assert_code(
        &request_code(&app, &phone(3), LOOPBACK_V4).await,
        "RATE_LIMITED",
    );
}

#[tokio::test]
async fn development_can_count_loopback_clients_on_request() {
    let app = TestApp::with_env(&with(&[("IP_LIMITS_ON_LOOPBACK", "true")])).await;
    assert_ok(&request_code(&app, &phone(1), LOOPBACK_V4).await);
    assert_ok(&request_code(&app, &phone(2), LOOPBACK_V4).await);
    assert_code(
        &request_code(&app, &phone(3), LOOPBACK_V4).await,
        "RATE_LIMITED",
    );
}

#[test]
fn production_refuses_to_exempt_loopback_clients() {
    let env = [
        ("APP_ENV", "production"),
        ("JWT_SECRET", "a-production-secret-of-more-than-32-bytes"),
        ("SMS_PROVIDER", "console"),
        ("IP_LIMITS_ON_LOOPBACK", "false"),
    ];
    let lookup = |key: &str| {
        env.iter()
            .find(|(name, _)| *name == key)
            .map(|(_, value)| (*value).to_owned())
    };
    let refused = phone_auth::config::Config::from_lookup(lookup)
        .expect_err("production must count loopback clients");
    assert!(
        refused.to_string().contains("IP_LIMITS_ON_LOOPBACK"),
        "{refused}"
    );
}
