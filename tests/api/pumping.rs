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
    let text = metrics(&app).await;
    assert!(text.contains(r#"rate_limit_refusals_total{reason="sms_country_conversion"}"#));
    // The breaker's state per country (its value is process-wide, so only its presence is
    // checked here: other tests run in this process).
    assert!(
        text.contains(r#"sms_country_breaker_open{country="RU"}"#),
        "{text}"
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

/// A JSON batch from one IPv6 network spends one client budget, operation by operation; and
/// the range breaker admits exactly its count when the requests race.
#[tokio::test]
async fn a_batch_from_one_ipv6_network_spends_one_budget() {
    let app =
        TestApp::with_env(&[("TRUST_PROXY_HEADERS", "true"), ("IP_CODES_PER_HOUR", "3")]).await;
    let ops: Vec<Value> = (1..=5)
        .map(|i| {
            json!({
                "query": "mutation($p: String!) { requestCode(phone: $p) { phone } }",
                "variables": { "p": phone(i) },
            })
        })
        .collect();
    let r = app
        .post(
            &[
                ("content-type", "application/json"),
                ("x-forwarded-for", "2001:db8:7:7::1"),
            ],
            Value::Array(ops).to_string(),
        )
        .await;
    let answers = r.body.as_array().expect("a batch answer");
    let limited = answers
        .iter()
        .filter(|a| a["errors"][0]["extensions"]["code"] == "RATE_LIMITED")
        .count();
    assert_eq!((answers.len(), limited), (5, 2), "{}", r.body);
    assert_code(
        &request_code_from(&app, &phone(9), "2001:db8:7:7:8::8").await,
        "RATE_LIMITED",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_requests_never_pass_the_range_breaker_together() {
    let app = std::sync::Arc::new(TestApp::with_env(&[("SMS_RANGE_PER_HOUR", "5")]).await);
    let tasks: Vec<_> = (1..=16)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move { app.request_code(&phone(i)).await })
        })
        .collect();
    let mut ok = 0;
    for task in tasks {
        let body = task.await.expect("request task");
        if body["errors"].is_null() {
            ok += 1;
        } else {
            assert_code(&body, "RATE_LIMITED");
        }
    }
    assert_eq!(ok, 5);
}

/// The breakers live in the database: a second instance sees the first one's codes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_range_breaker_is_shared_between_instances() {
    let url = match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if url.starts_with("postgres") => crate::helpers::fresh_database_url().await,
        _ => {
            let path = std::env::temp_dir().join(format!(
                "phone-auth-pumping-{}.db",
                uuid::Uuid::new_v4().simple()
            ));
            format!("sqlite://{}?mode=rwc", path.display())
        }
    };
    let env = [("SMS_RANGE_PER_HOUR", "2"), ("SMS_COUNTRY_MIN_SENDS", "0")];
    let a = TestApp::with_database(&url, &env).await;
    let b = TestApp::with_database(&url, &env).await;
    assert_ok(&a.request_code(&phone(1)).await);
    assert_ok(&b.request_code(&phone(2)).await);
    assert_code(&a.request_code(&phone(3)).await, "RATE_LIMITED");
    assert_code(&b.request_code(&phone(4)).await, "RATE_LIMITED");
}

fn config(pairs: &[(&str, &str)]) -> Result<phone_auth::config::Config, String> {
    let map: std::collections::HashMap<&str, &str> = pairs.iter().copied().collect();
    phone_auth::config::Config::from_lookup(|k| map.get(k).map(|v| v.to_string()))
        .map_err(|e| e.to_string())
}

#[test]
fn pumping_settings_are_validated() {
    let defaults = config(&[]).expect("defaults are valid");
    assert_eq!(defaults.ip_v6_prefix, 64);
    assert_eq!(defaults.limits.sms_global_per_hour, 1000);
    assert_eq!(defaults.limits.sms_global_per_day, 10_000);
    assert_eq!(defaults.sms_guard.range_per_hour, 10);
    assert_eq!(defaults.sms_guard.range_digits, 4);
    assert_eq!(defaults.sms_guard.country_min_sends, 50);
    assert_eq!(defaults.sms_guard.country_min_conversion, 0.2);
    let types: Vec<&str> = defaults
        .sms_guard
        .allowed_number_types
        .iter()
        .map(|t| t.name())
        .collect();
    assert_eq!(types, ["mobile", "fixed_line_or_mobile"]);

    for (name, value) in [
        ("SMS_ALLOWED_NUMBER_TYPES", "mobile,satellite"),
        ("IP_V6_PREFIX", "8"),
        ("IP_V6_PREFIX", "129"),
        ("SMS_RANGE_DIGITS", "0"),
        ("SMS_RANGE_DIGITS", "9"),
        ("SMS_COUNTRY_MIN_CONVERSION", "1.5"),
        ("SMS_COUNTRY_MIN_CONVERSION", "NaN"),
        ("SMS_GLOBAL_PER_HOUR", "-1"),
    ] {
        let err = config(&[(name, value)]).expect_err(value);
        assert!(err.contains(name), "{err}");
    }
    // Production refuses an IPv6 key finer than a /64 (each subscriber holds a /64 at least).
    let production = [
        ("APP_ENV", "production"),
        (
            "JWT_SECRET",
            "a-production-secret-of-more-than-32-bytes-0123",
        ),
        ("OTP_EXPOSE", "false"),
        ("SMS_PROVIDER", "console"),
    ];
    assert!(config(&production).is_ok());
    let err = config(&[production.as_slice(), &[("IP_V6_PREFIX", "96")]].concat())
        .expect_err("a /96 key");
    assert!(err.contains("IP_V6_PREFIX"), "{err}");
}
