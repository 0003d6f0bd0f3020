//! SMS pumping at internet scale (issue 11): per-IP budgets keyed by IPv6 network, number
//! types, the range and country-conversion breakers, and the global hourly and daily caps.
//! Client addresses come through `X-Forwarded-For` with `TRUST_PROXY_HEADERS` on.

use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_code, assert_ok, phone};

fn retry_after(body: &Value) -> u64 {
    body["errors"][0]["extensions"]["retryAfter"]
        .as_u64()
        .unwrap_or_else(|| panic!("no retryAfter: {body}"))
}

/// requestCode from `client` (the proxy's last hop).
async fn request_code_from(app: &TestApp, phone: &str, client: &str) -> Value {
    let body = json!({
        "query": "mutation($p: String!) { requestCode(phone: $p) { phone devCode } }",
        "variables": { "p": phone },
    });
    app.post(
        &[
            ("content-type", "application/json"),
            ("x-forwarded-for", client),
        ],
        body.to_string(),
    )
    .await
    .body
}

async fn verify_from(app: &TestApp, phone: &str, code: &str, client: &str) -> Value {
    let body = json!({
        "query": "mutation($p: String!, $c: String!) { verifyCode(phone: $p, code: $c) { isNewUser } }",
        "variables": { "p": phone, "c": code },
    });
    app.post(
        &[
            ("content-type", "application/json"),
            ("x-forwarded-for", client),
        ],
        body.to_string(),
    )
    .await
    .body
}

async fn metrics(app: &TestApp) -> String {
    app.get("/metrics", &[])
        .await
        .body
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn eleven_codes_from_eleven_addresses_of_one_ipv6_64_are_capped_as_one_client() {
    let app =
        TestApp::with_env(&[("TRUST_PROXY_HEADERS", "true"), ("IP_CODES_PER_HOUR", "10")]).await;
    for i in 1..=10 {
        let client = format!("2001:db8:1:2:{i:x}::{i:x}");
        assert_ok(&request_code_from(&app, &phone(i), &client).await);
    }
    let body = request_code_from(&app, &phone(11), "2001:db8:1:2:ffff:ffff:ffff:ffff").await;
    assert_code(&body, "RATE_LIMITED");
    assert_eq!(retry_after(&body), 3600);
    // The next /64 is another client.
    assert_ok(&request_code_from(&app, &phone(12), "2001:db8:1:3::1").await);
    assert!(
        metrics(&app)
            .await
            .contains(r#"rate_limit_refusals_total{reason="ip_hour"}"#)
    );
}

#[tokio::test]
async fn ip_v6_prefix_widens_the_client_network() {
    let app = TestApp::with_env(&[
        ("TRUST_PROXY_HEADERS", "true"),
        ("IP_CODES_PER_HOUR", "2"),
        ("IP_V6_PREFIX", "48"),
    ])
    .await;
    assert_ok(&request_code_from(&app, &phone(1), "2001:db8:1:1::1").await);
    assert_ok(&request_code_from(&app, &phone(2), "2001:db8:1:2::1").await);
    assert_code(
        &request_code_from(&app, &phone(3), "2001:db8:1:ffff::1").await,
        "RATE_LIMITED",
    );
    assert_ok(&request_code_from(&app, &phone(4), "2001:db8:2::1").await);
}

#[tokio::test]
async fn verify_calls_are_capped_per_ipv6_network() {
    let app =
        TestApp::with_env(&[("TRUST_PROXY_HEADERS", "true"), ("IP_VERIFY_PER_HOUR", "3")]).await;
    for i in 1..=3 {
        let client = format!("2001:db8:5:5::{i}");
        assert_code(
            &verify_from(&app, &phone(i), "1234", &client).await,
            "INVALID_CODE",
        );
    }
    let body = verify_from(&app, &phone(4), "1234", "2001:db8:5:5:9::9").await;
    assert_code(&body, "RATE_LIMITED");
    assert_code(
        &verify_from(&app, &phone(4), "1234", "2001:db8:5:6::1").await,
        "INVALID_CODE",
    );
}

#[tokio::test]
async fn ipv4_mapped_addresses_share_the_ipv4_bucket() {
    let app =
        TestApp::with_env(&[("TRUST_PROXY_HEADERS", "true"), ("IP_CODES_PER_HOUR", "2")]).await;
    assert_ok(&request_code_from(&app, &phone(1), "203.0.113.7").await);
    assert_ok(&request_code_from(&app, &phone(2), "::ffff:203.0.113.7").await);
    assert_code(
        &request_code_from(&app, &phone(3), "203.0.113.7").await,
        "RATE_LIMITED",
    );
    assert_code(
        &request_code_from(&app, &phone(4), "::ffff:203.0.113.7").await,
        "RATE_LIMITED",
    );
    // A neighbour is another client, in either spelling.
    assert_ok(&request_code_from(&app, &phone(5), "::ffff:203.0.113.8").await);
}

#[tokio::test]
async fn numbers_of_other_types_are_refused_before_any_limit_is_spent() {
    // One code a minute for everyone: a refused number must not use it up.
    let app = TestApp::with_env(&[("SMS_GLOBAL_PER_MINUTE", "1")]).await;
    for (what, number) in [
        ("premium rate (GB)", "+44 901 234 5678"),
        ("premium rate (US)", "+1 900 234 5678"),
        ("toll free (GB)", "+44 800 123 4567"),
        ("toll free (US)", "+1 800 234 5678"),
        ("shared cost (DE)", "+49 180 12345"),
        ("UAN (GB)", "+44 55 1234 5678"),
        ("VoIP (GB)", "+44 56 1234 5678"),
        ("+882", "+882 342 1234"),
        ("+883", "+883 510 012 345"),
        ("+881 satellite", "+881 612 345 678"),
        ("fixed line (RU)", "+7 301 123 4567"),
    ] {
        app.reset_statements();
        let body = app.request_code(number).await;
        assert_code(&body, "BAD_USER_INPUT");
        let ext = &body["errors"][0]["extensions"];
        assert_eq!(ext["field"], "phone", "{what}: {body}");
        assert_eq!(ext["reason"], "UNSUPPORTED_NUMBER_TYPE", "{what}: {body}");
        assert_eq!(app.statements(), 0, "{what}: refused before the database");
    }
    app.settle().await;
    assert!(app.sms.messages().is_empty());
    for (i, number) in [
        "+7 912 345 67 89", // RU mobile
        "+44 7400 123456",  // GB mobile
        "+49 1512 3456789", // DE mobile
        "+1 201 555 0123",  // US: fixed line or mobile
    ]
    .into_iter()
    .enumerate()
    {
        assert_ok(&app.request_code(number).await);
        app.advance(60);
        let _ = i;
    }
    assert!(
        metrics(&app)
            .await
            .contains(r#"rate_limit_refusals_total{reason="number_type"}"#)
    );
}

#[tokio::test]
async fn sms_allowed_number_types_is_configurable() {
    let app = TestApp::with_env(&[("SMS_ALLOWED_NUMBER_TYPES", "mobile, toll_free")]).await;
    assert_ok(&app.request_code("+44 800 123 4567").await);
    assert_ok(&app.request_code("+7 912 345 67 89").await);
    let body = app.request_code("+1 201 555 0123").await;
    assert_eq!(
        body["errors"][0]["extensions"]["reason"], "UNSUPPORTED_NUMBER_TYPE",
        "{body}"
    );
}

#[tokio::test]
async fn a_busy_range_refuses_new_numbers_but_never_a_user_who_signed_in_before() {
    let app = TestApp::with_env(&[
        ("TRUST_PROXY_HEADERS", "true"),
        ("IP_CODES_PER_HOUR", "10"),
        ("SMS_RANGE_PER_HOUR", "10"),
    ])
    .await;
    // A user of the range (+7912000….) who signed in before; then an hour passes.
    let known = phone(9000);
    app.sign_in(&known).await;
    app.advance(3601);

    for i in 1..=10 {
        let client = format!("2001:db8:{i:x}::1");
        assert_ok(&request_code_from(&app, &phone(i), &client).await);
    }
    let body = request_code_from(&app, &phone(11), "2001:db8:b::1").await;
    assert_code(&body, "RATE_LIMITED");
    assert_eq!(retry_after(&body), 3600);
    // The known user still gets a code, and so does a number of another range.
    assert_ok(&request_code_from(&app, &known, "2001:db8:c::1").await);
    assert_ok(&request_code_from(&app, "+79130000001", "2001:db8:d::1").await);
    // The range's hour passes.
    app.advance(3600);
    assert_ok(&request_code_from(&app, &phone(11), "2001:db8:b::1").await);
    assert!(
        metrics(&app)
            .await
            .contains(r#"rate_limit_refusals_total{reason="sms_range"}"#)
    );
}

/// Where a breaker refuses a new number and lets a known one through, the caller pays alike:
/// probing for accounts costs what requesting codes costs.
#[tokio::test]
async fn a_breaker_refusal_costs_the_caller_like_a_sent_code() {
    let app = TestApp::with_env(&[
        ("TRUST_PROXY_HEADERS", "true"),
        ("IP_CODES_PER_HOUR", "2"),
        ("SMS_RANGE_PER_HOUR", "1"),
    ])
    .await;
    let known = phone(9000);
    app.sign_in(&known).await;
    app.advance(3601);
    assert_ok(&request_code_from(&app, &phone(1), "198.51.100.1").await);
    // The range is full: new numbers are refused, and each refusal spends the prober's budget.
    let prober = "198.51.100.2";
    assert_code(
        &request_code_from(&app, &phone(2), prober).await,
        "RATE_LIMITED",
    );
    assert_code(
        &request_code_from(&app, &phone(3), prober).await,
        "RATE_LIMITED",
    );
    let body = request_code_from(&app, &known, prober).await;
    assert_code(&body, "RATE_LIMITED");
    // The same client budget refuses both kinds of number now.
    assert_eq!(retry_after(&body), 3600);
    assert_ok(&request_code_from(&app, &known, "198.51.100.3").await);
}

#[tokio::test]
async fn a_country_whose_codes_go_unverified_stops_new_numbers_until_verifications_come_in() {
    let app = TestApp::with_env(&[
        ("SMS_COUNTRY_MIN_SENDS", "50"),
        ("SMS_COUNTRY_MIN_CONVERSION", "0.2"),
    ])
    .await;
    let known = phone(9000);
    app.sign_in(&known).await;
    app.advance(3601);

    let mut codes = Vec::new();
    for i in 1..=50 {
        codes.push(app.code_for(&phone(i)).await);
    }
    let body = app.request_code(&phone(51)).await;
    assert_code(&body, "RATE_LIMITED");
    // Nothing changes before the hour's first code leaves the window.
    assert_eq!(retry_after(&body), 3600);
    // Known users still sign in, and other countries are not held back.
    let known_code = app.code_for(&known).await;
    assert_ok(&app.verify(&known, &known_code).await);
    assert_ok(&app.request_code("+44 7400 123456").await);
    assert!(
        metrics(&app)
            .await
            .contains(r#"rate_limit_refusals_total{reason="sms_country_conversion"}"#)
    );

    // 51 codes to RU this hour (50 new numbers and the known user), 1 verified: 10 more
    // sign-ins make 11 ≥ 0.2 × 51.
    for (i, code) in codes.iter().enumerate().take(9) {
        assert_ok(&app.verify(&phone(i as u32 + 1), code).await);
    }
    assert_code(&app.request_code(&phone(51)).await, "RATE_LIMITED");
    assert_ok(&app.verify(&phone(10), &codes[9]).await);
    assert_ok(&app.request_code(&phone(51)).await);
}

#[tokio::test]
async fn global_hourly_and_daily_caps_hold_beside_the_per_minute_one() {
    let app = TestApp::with_env(&[
        ("SMS_GLOBAL_PER_MINUTE", "60"),
        ("SMS_GLOBAL_PER_HOUR", "3"),
        ("SMS_GLOBAL_PER_DAY", "4"),
    ])
    .await;
    for i in 1..=3 {
        assert_ok(&app.request_code(&phone(i)).await);
        app.advance(120);
    }
    let body = app.request_code(&phone(4)).await;
    assert_code(&body, "RATE_LIMITED");
    assert_eq!(retry_after(&body), 3600 - 360);
    app.advance(3600 - 360);
    assert_ok(&app.request_code(&phone(4)).await);
    app.advance(3600);
    let body = app.request_code(&phone(5)).await;
    assert_code(&body, "RATE_LIMITED");
    assert!(retry_after(&body) > 20 * 3600, "{body}");
    let text = metrics(&app).await;
    assert!(text.contains(r#"rate_limit_refusals_total{reason="global_hour"}"#));
    assert!(text.contains(r#"rate_limit_refusals_total{reason="global_day"}"#));
}
