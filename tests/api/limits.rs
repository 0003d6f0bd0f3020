//! Abuse resistance: every guess counts however it arrives, failure budgets per phone, send
//! caps per phone / IP / globally, and the shape rules that stop one request from doing the
//! work of many.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_code, assert_ok, error_code, phone, wrong};

fn retry_after(body: &Value) -> u64 {
    body["errors"][0]["extensions"]["retryAfter"]
        .as_u64()
        .unwrap_or_else(|| panic!("no retryAfter: {body}"))
}

/// requestCode from a given client address (the app trusts X-Forwarded-For when told to).
async fn request_code_from(app: &TestApp, phone: &str, forwarded_for: &str) -> Value {
    let body = json!({
        "query": "mutation($p: String!) { requestCode(phone: $p) { phone devCode } }",
        "variables": { "p": phone },
    });
    app.post(
        &[
            ("content-type", "application/json"),
            ("x-forwarded-for", forwarded_for),
        ],
        body.to_string(),
    )
    .await
    .body
}

/// Spends every attempt of a fresh code on wrong guesses (5 failures).
async fn burn_a_code(app: &TestApp, phone: &str) {
    let code = app.code_for(phone).await;
    for _ in 0..5 {
        assert_code(&app.verify(phone, &wrong(&code)).await, "INVALID_CODE");
    }
}

#[tokio::test]
async fn aliased_verify_codes_are_refused_before_any_guess_counts() {
    let app = TestApp::spawn().await;
    let code = app.code_for(&phone(1)).await;
    let query = format!(
        r#"mutation {{ a: verifyCode(phone: "{p}", code: "{w}") {{ accessToken }} b: verifyCode(phone: "{p}", code: "{c}") {{ accessToken }} }}"#,
        p = phone(1),
        w = wrong(&code),
        c = code
    );
    let body = app.gql(&query, json!({})).await;
    assert_code(&body, "BAD_USER_INPUT");
    assert!(body["data"].is_null());
    // No attempt was spent: the first real wrong guess still has 4 left.
    let body = app.verify(&phone(1), &wrong(&code)).await;
    assert_eq!(body["errors"][0]["extensions"]["attemptsLeft"], 4);
}

#[tokio::test]
async fn aliased_request_codes_send_nothing() {
    let app = TestApp::spawn().await;
    let aliases: String = (0..5)
        .map(|i| format!(r#"r{i}: requestCode(phone: "{}") {{ phone }} "#, phone(i)))
        .collect();
    let body = app
        .gql(&format!("mutation {{ {aliases} }}"), json!({}))
        .await;
    assert_code(&body, "BAD_USER_INPUT");
    // Through a fragment, too.
    let body = app
        .gql(
            &format!(
                r#"mutation {{ ...Twice }} fragment Twice on Mutation {{ a: requestCode(phone: "{p}") {{ phone }} b: requestCode(phone: "{p}") {{ phone }} }}"#,
                p = phone(9)
            ),
            json!({}),
        )
        .await;
    assert_code(&body, "BAD_USER_INPUT");
    app.settle().await;
    assert!(app.sms.messages().is_empty());
    // One requestCode and one verifyCode in one operation is fine.
    let code = app.code_for(&phone(20)).await;
    let body = app
        .gql(
            &format!(
                r#"mutation {{ requestCode(phone: "{}") {{ phone }} verifyCode(phone: "{}", code: "{}") {{ isNewUser }} }}"#,
                phone(21),
                phone(20),
                code
            ),
            json!({}),
        )
        .await;
    assert_ok(&body);
}

/// A chain of fragments deeper than the once-per-operation check follows is refused, not waved
/// through: the second `requestCode` could hide at its end.
#[tokio::test]
async fn request_codes_hidden_in_deeply_chained_fragments_send_nothing() {
    let app =
        TestApp::with_env(&[("GRAPHQL_MAX_DEPTH", "0"), ("GRAPHQL_MAX_COMPLEXITY", "0")]).await;
    let depth = 40;
    let mut document = "mutation { ...F0 }".to_owned();
    for i in 0..depth {
        document.push_str(&format!(" fragment F{i} on Mutation {{ ...F{} }}", i + 1));
    }
    document.push_str(&format!(
        r#" fragment F{depth} on Mutation {{ a: requestCode(phone: "{p}") {{ phone }} b: requestCode(phone: "{p}") {{ phone }} }}"#,
        p = phone(1)
    ));
    let body = app.gql(&document, json!({})).await;
    assert_code(&body, "BAD_USER_INPUT");
    app.settle().await;
    assert!(app.sms.messages().is_empty(), "{body}");
}

#[tokio::test]
async fn a_batch_of_guesses_counts_every_guess() {
    let app = TestApp::spawn().await;
    let code = app.code_for(&phone(1)).await;
    let op = json!({
        "query": "mutation($p: String!, $c: String!) { verifyCode(phone: $p, code: $c) { accessToken } }",
        "variables": { "p": phone(1), "c": wrong(&code) },
    });
    let r = app
        .post(
            &[("content-type", "application/json")],
            Value::Array(vec![op; 10]).to_string(),
        )
        .await;
    let answers = r.body.as_array().expect("a batch answer");
    assert_eq!(answers.len(), 10);
    let codes: Vec<String> = answers
        .iter()
        .map(|a| error_code(a).unwrap_or_default())
        .collect();
    assert_eq!(
        codes.iter().filter(|c| *c == "INVALID_CODE").count(),
        5,
        "{codes:?}"
    );
    assert_eq!(
        codes.iter().filter(|c| *c == "RATE_LIMITED").count(),
        5,
        "{codes:?}"
    );
    let mut left: Vec<u64> = answers
        .iter()
        .filter_map(|a| a["errors"][0]["extensions"]["attemptsLeft"].as_u64())
        .collect();
    left.sort_unstable();
    assert_eq!(left, vec![0, 1, 2, 3, 4]);
    // The code is dead: the right one fails now.
    assert_code(&app.verify(&phone(1), &code).await, "RATE_LIMITED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_wrong_guesses_never_exceed_the_attempts() {
    // A file database with the production pool, so the guesses really overlap on SQLite too.
    let app = Arc::new(TestApp::for_races(&[]).await);
    let code = app.code_for(&phone(1)).await;
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let app = app.clone();
            let guess = wrong(&code);
            tokio::spawn(async move { app.verify(&phone(1), &guess).await })
        })
        .collect();
    let mut attempts_left = Vec::new();
    let mut rate_limited = 0;
    for task in tasks {
        let body = task.await.expect("task");
        match error_code(&body).as_deref() {
            Some("INVALID_CODE") => attempts_left.push(
                body["errors"][0]["extensions"]["attemptsLeft"]
                    .as_u64()
                    .unwrap_or_else(|| panic!("no attemptsLeft: {body}")),
            ),
            Some("RATE_LIMITED") => {
                assert!(retry_after(&body) >= 1, "{body}");
                rate_limited += 1;
            }
            _ => panic!("neither INVALID_CODE nor RATE_LIMITED: {body}"),
        }
    }
    // Each attempt was counted once: every count from 4 down to 0 was answered exactly once.
    attempts_left.sort_unstable();
    assert_eq!(attempts_left, vec![0, 1, 2, 3, 4]);
    assert_eq!(rate_limited, 15);
    // The code is dead: the right one is refused too.
    assert_code(&app.verify(&phone(1), &code).await, "RATE_LIMITED");
}

#[tokio::test]
async fn ten_wrong_guesses_a_day_lock_the_phone_until_the_oldest_leaves_the_window() {
    let app = TestApp::spawn().await;
    burn_a_code(&app, &phone(1)).await; // failures 1-5 at t=0
    app.advance(3600);
    burn_a_code(&app, &phone(1)).await; // failures 6-10 at t=1h
    app.advance(61);
    let body = app.request_code(&phone(1)).await;
    assert_code(&body, "RATE_LIMITED");
    // The first five leave the 24-hour window at t=24h: from t=1h01m that is 22h59m.
    assert_eq!(retry_after(&body), 24 * 3600 - 3600 - 61);
    // verifyCode answers with the lock's time, not the burned code's (which would be due now:
    // its cooldown is over).
    let body = app.verify(&phone(1), "0000").await;
    assert_code(&body, "RATE_LIMITED");
    assert_eq!(retry_after(&body), 24 * 3600 - 3600 - 61, "{body}");
    // Another phone is not affected.
    assert_ok(&app.request_code(&phone(2)).await);

    app.advance(24 * 3600 - 3600 - 61);
    let code = app.code_for(&phone(1)).await;
    assert_ok(&app.verify(&phone(1), &code).await);
}

#[tokio::test]
async fn a_locked_phone_refuses_even_the_right_code() {
    let app = TestApp::with_env(&[("PHONE_FAILURES_PER_DAY", "3")]).await;
    let code = app.code_for(&phone(1)).await;
    for left in [4, 3, 2] {
        let body = app.verify(&phone(1), &wrong(&code)).await;
        assert_code(&body, "INVALID_CODE");
        assert_eq!(body["errors"][0]["extensions"]["attemptsLeft"], left);
    }
    // The code itself has two attempts left: the refusal is the phone's daily lock, which
    // lasts until the first failure leaves the 24-hour window.
    let body = app.verify(&phone(1), &code).await;
    assert_code(&body, "RATE_LIMITED");
    assert_eq!(retry_after(&body), 24 * 3600, "{body}");
}

#[tokio::test]
async fn a_success_does_not_erase_earlier_failures() {
    let app = TestApp::spawn().await;
    let code = app.code_for(&phone(1)).await;
    for _ in 0..4 {
        app.verify(&phone(1), &wrong(&code)).await;
    }
    assert_ok(&app.verify(&phone(1), &code).await);
    app.advance(61);
    burn_a_code(&app, &phone(1)).await; // 9 failures
    app.advance(61);
    let code = app.code_for(&phone(1)).await;
    assert_code(&app.verify(&phone(1), &wrong(&code)).await, "INVALID_CODE"); // the 10th
    assert_code(&app.verify(&phone(1), &code).await, "RATE_LIMITED");
}

#[tokio::test]
async fn thirty_wrong_guesses_a_month_lock_the_phone() {
    let app = TestApp::spawn().await;
    for day in 0..3 {
        burn_a_code(&app, &phone(1)).await;
        app.advance(3600);
        burn_a_code(&app, &phone(1)).await;
        // Past this day's window for the next round.
        app.advance(24 * 3600);
        let _ = day;
    }
    // 30 failures within 30 days: the daily window is clear, the monthly one is full.
    let body = app.request_code(&phone(1)).await;
    assert_code(&body, "RATE_LIMITED");
    let retry = retry_after(&body);
    let elapsed = 3 * (3600 + 24 * 3600);
    assert_eq!(retry, (30 * 24 * 3600 - elapsed) as u64);
}

#[tokio::test]
async fn codes_per_phone_are_capped_per_hour_and_per_day() {
    let app = TestApp::spawn().await;
    for _ in 0..5 {
        assert_ok(&app.request_code(&phone(1)).await);
        app.advance(61);
    }
    let body = app.request_code(&phone(1)).await;
    assert_code(&body, "RATE_LIMITED");
    assert_eq!(retry_after(&body), 3600 - 5 * 61);
    // Day cap: 10 per 24 h.
    app.advance(3600);
    for _ in 0..5 {
        assert_ok(&app.request_code(&phone(1)).await);
        app.advance(61);
    }
    app.advance(3600);
    let body = app.request_code(&phone(1)).await;
    assert_code(&body, "RATE_LIMITED");
    assert!(retry_after(&body) > 3600 * 20, "{body}");
}

#[tokio::test]
async fn codes_per_ip_are_capped_and_forwarded_for_is_ignored_unless_trusted() {
    let app = TestApp::with_env(&[("IP_CODES_PER_HOUR", "2")]).await;
    assert_ok(&request_code_from(&app, &phone(1), "10.0.0.1").await);
    assert_ok(&request_code_from(&app, &phone(2), "10.0.0.2").await);
    // The header is not trusted: all three came from the socket's address.
    let body = request_code_from(&app, &phone(3), "10.0.0.3").await;
    assert_code(&body, "RATE_LIMITED");
    assert_eq!(retry_after(&body), 3600);

    let trusting =
        TestApp::with_env(&[("IP_CODES_PER_HOUR", "2"), ("TRUST_PROXY_HEADERS", "true")]).await;
    assert_ok(&request_code_from(&trusting, &phone(1), "10.0.0.1").await);
    assert_ok(&request_code_from(&trusting, &phone(2), "10.0.0.1").await);
    assert_code(
        &request_code_from(&trusting, &phone(3), "10.0.0.1").await,
        "RATE_LIMITED",
    );
    // The proxy's own hop (the last one) is the client address.
    assert_ok(&request_code_from(&trusting, &phone(4), "203.0.113.9, 10.0.0.2").await);
}

#[tokio::test]
async fn codes_per_ip_are_capped_per_day() {
    let app = TestApp::with_env(&[("IP_CODES_PER_DAY", "3")]).await;
    for n in 0..3 {
        assert_ok(&app.request_code(&phone(n)).await);
        app.advance(2 * 3600);
    }
    assert_code(&app.request_code(&phone(9)).await, "RATE_LIMITED");
}

#[tokio::test]
async fn verify_calls_per_ip_are_capped() {
    let app = TestApp::with_env(&[("IP_VERIFY_PER_HOUR", "3")]).await;
    for n in 0..3 {
        assert_code(&app.verify(&phone(n), "1234").await, "INVALID_CODE");
    }
    let body = app.verify(&phone(5), "1234").await;
    assert_code(&body, "RATE_LIMITED");
    assert_eq!(retry_after(&body), 3600);
}

#[tokio::test]
async fn the_global_sms_budget_caps_all_phones() {
    let app = TestApp::with_env(&[("SMS_GLOBAL_PER_MINUTE", "3")]).await;
    for n in 0..3 {
        assert_ok(&app.request_code(&phone(n)).await);
    }
    let body = app.request_code(&phone(7)).await;
    assert_code(&body, "RATE_LIMITED");
    assert_eq!(retry_after(&body), 60);
    app.advance(60);
    assert_ok(&app.request_code(&phone(7)).await);
}

#[tokio::test]
async fn a_refused_request_sends_nothing_and_keeps_the_code() {
    let app = TestApp::with_env(&[
        ("SMS_GLOBAL_PER_MINUTE", "2"),
        ("OTP_RESEND_COOLDOWN_SECONDS", "10"),
    ])
    .await;
    let code = app.code_for(&phone(1)).await;
    assert_ok(&app.request_code(&phone(2)).await);
    app.settle().await;
    assert_eq!(app.sms.messages().len(), 2);
    // Phone 1's cooldown is over, but the global cap (full until t=60) refuses its new code…
    app.advance(11);
    let body = app.request_code(&phone(1)).await;
    assert_code(&body, "RATE_LIMITED");
    assert_eq!(
        retry_after(&body),
        49,
        "the global cap refused, not the cooldown"
    );
    // …and the refusal changed nothing: no SMS, and the code phone 1 holds still works.
    app.settle().await;
    assert_eq!(app.sms.messages().len(), 2);
    assert_ok(&app.verify(&phone(1), &code).await);
}

#[tokio::test]
async fn sms_allowed_regions_refuses_other_countries() {
    let app = TestApp::with_env(&[("SMS_ALLOWED_REGIONS", "RU,BY")]).await;
    assert_ok(&app.request_code("+79123456789").await);
    assert_ok(&app.request_code("+375 29 123 45 67").await);
    let body = app.request_code("+1 650 253 0000").await;
    assert_code(&body, "BAD_USER_INPUT");
    assert_eq!(body["errors"][0]["extensions"]["field"], "phone");
}

#[tokio::test]
async fn request_code_answers_alike_for_known_and_unknown_phones() {
    // The breakers on: they look the phone up (known users are never held back by them).
    let app = TestApp::with_env(&[
        ("SMS_RANGE_PER_HOUR", "10"),
        ("SMS_COUNTRY_MIN_SENDS", "50"),
    ])
    .await;
    app.sign_in(&phone(1)).await;
    app.advance(61);
    app.reset_statements();
    let known = app.request_code(&phone(1)).await;
    let known_log = app.statement_log();
    app.reset_statements();
    let unknown = app.request_code(&phone(2)).await;
    let unknown_log = app.statement_log();
    // The same answer apart from the phone itself and its code: same times, same fields.
    let blind = |v: &Value, own: &str| {
        let mut payload = v["data"]["requestCode"].clone();
        assert_eq!(payload["phone"], own, "{v}");
        let code = payload["devCode"].as_str().unwrap_or_else(|| panic!("{v}"));
        assert_eq!(code.len(), 4, "{v}");
        payload["phone"] = Value::Null;
        payload["devCode"] = Value::Null;
        payload
    };
    assert_eq!(blind(&known, &phone(1)), blind(&unknown, &phone(2)));
    // The same work on both paths: the users table is consulted only inside the statement
    // that counts the send windows (the range breaker's "signed in before?"), whatever the phone.
    assert_eq!(
        known_log.len(),
        unknown_log.len(),
        "known: {known_log:#?}\nunknown: {unknown_log:#?}"
    );
    for log in [&known_log, &unknown_log] {
        let with_users: Vec<_> = log.iter().filter(|sql| sql.contains("users")).collect();
        assert_eq!(with_users.len(), 1, "{log:?}");
        assert!(with_users[0].contains("rate_events"), "{log:?}");
    }
}

/// Two instances on one database share every limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_are_shared_between_instances() {
    let url = match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if url.starts_with("postgres") => crate::helpers::fresh_database_url().await,
        _ => {
            let path = std::env::temp_dir()
                .join(format!("phone-auth-{}.db", uuid::Uuid::new_v4().simple()));
            format!("sqlite://{}?mode=rwc", path.display())
        }
    };
    let env = [("SMS_GLOBAL_PER_MINUTE", "4"), ("IP_CODES_PER_HOUR", "0")];
    let a = TestApp::with_database(&url, &env).await;
    let b = TestApp::with_database(&url, &env).await;
    assert_ok(&a.request_code(&phone(1)).await);
    assert_ok(&b.request_code(&phone(2)).await);
    assert_ok(&a.request_code(&phone(3)).await);
    assert_ok(&b.request_code(&phone(4)).await);
    assert_code(&a.request_code(&phone(5)).await, "RATE_LIMITED");
    assert_code(&b.request_code(&phone(6)).await, "RATE_LIMITED");

    // Guesses on one instance count on the other.
    a.advance(61);
    b.advance(61);
    let code = a.code_for(&phone(10)).await;
    for i in 0..5 {
        let instance = if i % 2 == 0 { &a } else { &b };
        assert_code(
            &instance.verify(&phone(10), &wrong(&code)).await,
            "INVALID_CODE",
        );
    }
    assert_code(&b.verify(&phone(10), &code).await, "RATE_LIMITED");
}

/// Counted events are kept 31 days, one day past the longest window (a month of wrong
/// guesses), and pruned after that; a bucket's lock row goes with its last event.
#[tokio::test]
async fn counted_events_outlive_the_longest_window_and_are_pruned_after_it() {
    use phone_auth::{
        clock::Clock,
        db::entities::{rate_events, rate_limit_locks},
        services::limits,
    };
    use sea_orm::{EntityTrait, PaginatorTrait};

    let app = TestApp::spawn().await;
    let db = &app.state.db;
    let code = app.code_for(&phone(1)).await;
    assert_code(&app.verify(&phone(1), &wrong(&code)).await, "INVALID_CODE");
    let events = rate_events::Entity::find().count(db).await.expect("count");
    assert!(events >= 2, "a send and a failure were counted: {events}");

    // 31 days to the second: still inside the retention.
    app.advance(31 * 86_400);
    assert_eq!(limits::prune(db, app.clock.now()).await.expect("prune"), 0);
    assert_eq!(
        rate_events::Entity::find().count(db).await.expect("count"),
        events
    );
    app.advance(1);
    assert_eq!(
        limits::prune(db, app.clock.now()).await.expect("prune"),
        events
    );
    assert_eq!(
        rate_limit_locks::Entity::find()
            .count(db)
            .await
            .expect("count"),
        0,
        "no bucket has events left, so no lock row stays"
    );
}
