//! SMS delivery through the outbox, against a fake provider over real HTTP: what the webhook
//! and Twilio providers send, retries with backoff through outages and timeouts, the give-up
//! time, several instances on one database, nothing in plaintext at rest, and a requestCode
//! that never waits for the provider. Time moves with the manual clock and the worker runs
//! when the test says (`deliver_due`), so no test waits for a retry.

use std::{
    collections::HashSet,
    sync::Arc,
    time::{Duration, Instant},
};

use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use phone_auth::{
    clock::Clock,
    config::Config,
    db::{self, entities::sms_outbox},
    outbox::{Status, store},
};
use sea_orm::{ConnectionTrait, EntityTrait, Statement};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::{
    fake_sms::{FakeSms, Mode},
    helpers::{TestApp, assert_ok, file_database_url, fresh_database_url, phone},
};

const WEBHOOK_SECRET: &str = "webhook-secret-webhook-secret-0123456789";
const TWILIO_SID: &str = "AC0123456789abcdef0123456789abcdef";
const TWILIO_TOKEN: &str = "twilio-auth-token";

/// The webhook provider pointed at `fake`, with a short send timeout.
fn webhook_env(fake: &FakeSms) -> Vec<(String, String)> {
    vec![
        ("SMS_PROVIDER".into(), "webhook".into()),
        ("SMS_WEBHOOK_URL".into(), format!("{}/sms", fake.url)),
        ("SMS_WEBHOOK_SECRET".into(), WEBHOOK_SECRET.into()),
        ("SMS_SEND_TIMEOUT_MS".into(), "300".into()),
    ]
}

async fn app_with(env: &[(String, String)], extra: &[(&str, &str)]) -> TestApp {
    let url = fresh_database_url().await;
    app_on(&url, env, extra).await
}

async fn app_on(url: &str, env: &[(String, String)], extra: &[(&str, &str)]) -> TestApp {
    let mut overrides: Vec<(&str, &str)> =
        env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    overrides.extend_from_slice(extra);
    TestApp::with_provider(url, &overrides).await
}

#[derive(Debug)]
#[allow(dead_code)]
struct Row {
    phone: String,
    status: String,
    attempts: i32,
    payload: Option<Vec<u8>>,
    next_attempt_at: DateTime<Utc>,
    last_error: Option<String>,
}

async fn outbox_rows(app: &TestApp) -> Vec<Row> {
    let db = &app.state.db;
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT phone, status, attempts, payload, next_attempt_at, last_error \
             FROM sms_outbox ORDER BY id",
        ))
        .await
        .expect("the outbox is readable");
    rows.iter()
        .map(|r| Row {
            phone: r.try_get("", "phone").unwrap(),
            status: r.try_get("", "status").unwrap(),
            attempts: r.try_get("", "attempts").unwrap(),
            payload: r.try_get("", "payload").unwrap(),
            next_attempt_at: r.try_get("", "next_attempt_at").unwrap(),
            last_error: r.try_get("", "last_error").unwrap(),
        })
        .collect()
}

async fn only_row(app: &TestApp) -> Row {
    let mut rows = outbox_rows(app).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    rows.remove(0)
}

fn now(app: &TestApp) -> DateTime<Utc> {
    app.clock.now()
}

fn hmac_hex(key: &[u8], data: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap();
    mac.update(data);
    hex::encode(mac.finalize().into_bytes())
}

#[tokio::test]
async fn webhook_posts_the_message_as_json_signed_over_timestamp_and_body() {
    let fake = FakeSms::start().await;
    let app = app_with(&webhook_env(&fake), &[]).await;
    let code = app.code_for(&phone(1)).await;
    assert!(
        fake.requests().is_empty(),
        "nothing is sent from the request"
    );

    assert_eq!(app.deliver_due().await, 1);
    let requests = fake.delivered();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/sms");
    assert_eq!(request.header("content-type"), Some("application/json"));
    let body: Value = serde_json::from_slice(&request.body).expect("a JSON body");
    assert_eq!(
        body,
        json!({ "to": phone(1), "text": format!("Your phone-auth code: {code}") })
    );

    // The signature a gateway checks: HMAC-SHA256(secret, "<timestamp>." + exact body).
    let timestamp = request.header("x-signature-timestamp").expect("timestamp");
    assert_eq!(timestamp, now(&app).timestamp().to_string());
    let mut signed = format!("{timestamp}.").into_bytes();
    signed.extend_from_slice(&request.body);
    assert_eq!(
        request.header("x-signature"),
        Some(format!("sha256={}", hmac_hex(WEBHOOK_SECRET.as_bytes(), &signed)).as_str())
    );
    // Any other key, or the body alone, gives another MAC.
    assert_ne!(
        request.header("x-signature"),
        Some(
            format!(
                "sha256={}",
                hmac_hex(WEBHOOK_SECRET.as_bytes(), &request.body)
            )
            .as_str()
        )
    );
    assert!(request.header("idempotency-key").is_some());

    let row = only_row(&app).await;
    assert_eq!(row.status, "sent");
    assert_eq!(row.payload, None, "the text is wiped once delivered");
    // Delivered means done: nothing more is sent.
    app.advance(120);
    assert_eq!(app.deliver_due().await, 0);
    assert_eq!(fake.requests().len(), 1);
    assert_ok(&app.verify(&phone(1), &code).await);
}

fn twilio_env(fake: &FakeSms) -> Vec<(String, String)> {
    vec![
        ("SMS_PROVIDER".into(), "twilio".into()),
        ("TWILIO_BASE_URL".into(), fake.url.clone()),
        ("TWILIO_ACCOUNT_SID".into(), TWILIO_SID.into()),
        ("TWILIO_AUTH_TOKEN".into(), TWILIO_TOKEN.into()),
        ("TWILIO_FROM".into(), "+15005550006".into()),
        ("SMS_SEND_TIMEOUT_MS".into(), "300".into()),
    ]
}

/// `a=1&b=2` as pairs (through a URL's query parser).
fn form_pairs(body: &str) -> Vec<(String, String)> {
    reqwest::Url::parse(&format!("http://form.invalid/?{body}"))
        .expect("a form body")
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

#[tokio::test]
async fn twilio_gets_the_messages_api_form_with_basic_auth() {
    let fake = FakeSms::start().await;
    fake.set_mode(Mode::Accept {
        status: 201,
        delay: Duration::ZERO,
    });
    let app = app_with(&twilio_env(&fake), &[]).await;
    let code = app.code_for(&phone(1)).await;
    assert_eq!(app.deliver_due().await, 1);

    let requests = fake.delivered();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(
        request.path,
        format!("/2010-04-01/Accounts/{TWILIO_SID}/Messages.json")
    );
    assert_eq!(
        request.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let credentials =
        base64::engine::general_purpose::STANDARD.encode(format!("{TWILIO_SID}:{TWILIO_TOKEN}"));
    assert_eq!(
        request.header("authorization"),
        Some(format!("Basic {credentials}").as_str())
    );
    let mut form = form_pairs(&request.body_text());
    form.sort();
    assert_eq!(
        form,
        vec![
            ("Body".to_owned(), format!("Your phone-auth code: {code}")),
            ("From".to_owned(), "+15005550006".to_owned()),
            ("To".to_owned(), phone(1)),
        ]
    );
    assert_eq!(only_row(&app).await.status, "sent");
}

#[tokio::test]
async fn twilio_can_send_through_a_messaging_service() {
    let fake = FakeSms::start().await;
    let mut env = twilio_env(&fake);
    env.retain(|(k, _)| k != "TWILIO_FROM");
    let app = app_with(&env, &[("TWILIO_MESSAGING_SERVICE_SID", "MG0123")]).await;
    app.code_for(&phone(1)).await;
    assert_eq!(app.deliver_due().await, 1);
    let form = form_pairs(&fake.delivered()[0].body_text());
    assert!(form.contains(&("MessagingServiceSid".to_owned(), "MG0123".to_owned())));
    assert!(!form.iter().any(|(k, _)| k == "From"));
}

#[tokio::test]
async fn a_refusal_by_the_provider_is_not_retried() {
    let fake = FakeSms::start().await;
    // Twilio's answer for a number it cannot reach.
    fake.set_mode(Mode::Refuse {
        status: 400,
        body: r#"{"code":21211,"message":"The 'To' number +79120000001 is not a valid phone number.","status":400}"#.into(),
    });
    let app = app_with(&twilio_env(&fake), &[]).await;
    app.code_for(&phone(1)).await;
    assert_eq!(app.deliver_due().await, 1);
    let row = only_row(&app).await;
    assert_eq!(row.status, "undeliverable");
    assert_eq!(row.payload, None);
    let error = row.last_error.expect("the reason is kept");
    assert!(error.contains("400") && error.contains("21211"), "{error}");
    assert!(
        !error.contains(&phone(1)),
        "no phone in the stored error: {error}"
    );

    fake.set_mode(Mode::accept());
    app.advance(10);
    assert_eq!(app.deliver_due().await, 0);
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn an_outage_loses_nothing_and_the_recovery_delivers_exactly_once() {
    let fake = FakeSms::start().await;
    fake.set_mode(Mode::Fail);
    let app = app_with(&webhook_env(&fake), &[]).await;
    let code = app.code_for(&phone(1)).await;

    assert_eq!(app.deliver_due().await, 1, "first attempt");
    let row = only_row(&app).await;
    assert_eq!((row.status.as_str(), row.attempts), ("pending", 1));
    assert!(row.last_error.as_deref().unwrap_or("").contains("500"));
    assert!(row.payload.is_some(), "kept sealed for the retry");
    assert_eq!(app.deliver_due().await, 0, "not due before its backoff");
    app.advance(1);
    assert_eq!(app.deliver_due().await, 1, "second attempt");
    assert_eq!(fake.requests().len(), 2);
    assert!(fake.delivered().is_empty());

    fake.set_mode(Mode::accept());
    app.advance(1);
    assert_eq!(app.deliver_due().await, 0, "the second wait is 2 s");
    app.advance(1);
    assert_eq!(app.deliver_due().await, 1, "third attempt");
    let delivered = fake.delivered();
    assert_eq!(delivered.len(), 1);
    assert!(delivered[0].body_text().contains(&code));
    // Every attempt of one message carries the same idempotency key.
    let keys: HashSet<_> = fake
        .requests()
        .iter()
        .map(|r| r.header("idempotency-key").map(str::to_owned))
        .collect();
    assert_eq!(keys.len(), 1, "{keys:?}");

    app.advance(600);
    assert_eq!(app.deliver_due().await, 0);
    assert_eq!(fake.requests().len(), 3);
    let row = only_row(&app).await;
    assert_eq!((row.status.as_str(), row.attempts), ("sent", 3));
    assert_eq!(row.payload, None);
}

#[tokio::test]
async fn timeouts_are_retried_after_1_2_4_seconds() {
    let fake = FakeSms::start().await;
    fake.set_mode(Mode::Hang);
    let app = app_with(&webhook_env(&fake), &[]).await;
    app.code_for(&phone(1)).await;

    let mut waits = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        assert_eq!(app.deliver_due().await, 1);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the send timeout (300 ms) cut the attempt off"
        );
        let row = only_row(&app).await;
        assert_eq!(row.status, "pending");
        assert!(
            row.last_error
                .as_deref()
                .unwrap_or("")
                .contains("timed out")
        );
        let wait = (row.next_attempt_at - now(&app)).num_seconds();
        waits.push(wait);
        // Nothing happens a second early; the attempt comes at the due time.
        app.advance(wait - 1);
        assert_eq!(app.deliver_due().await, 0);
        app.advance(1);
    }
    assert_eq!(waits, [1, 2, 4]);

    fake.set_mode(Mode::accept());
    assert_eq!(app.deliver_due().await, 1);
    assert_eq!(fake.delivered().len(), 1);
    assert_eq!(fake.requests().len(), 4);
    let row = only_row(&app).await;
    assert_eq!((row.status.as_str(), row.attempts), ("sent", 4));
}

#[tokio::test]
async fn after_the_give_up_time_the_code_is_undeliverable_and_never_sent() {
    let fake = FakeSms::start().await;
    fake.set_mode(Mode::Fail);
    let app = app_with(
        &webhook_env(&fake),
        &[("SMS_DELIVERY_GIVE_UP_SECONDS", "10")],
    )
    .await;
    app.code_for(&phone(1)).await;

    // Attempts at 0, 1, 3 and 7 s; the next would be at 15 s, past the 10 s give-up time.
    for wait in [0, 1, 2, 4] {
        app.advance(wait);
        assert_eq!(app.deliver_due().await, 1);
    }
    let row = only_row(&app).await;
    assert_eq!((row.status.as_str(), row.attempts), ("undeliverable", 4));
    assert_eq!(row.payload, None, "the text is wiped when given up");
    assert!(row.last_error.is_some());

    fake.set_mode(Mode::accept());
    app.advance(3600);
    assert_eq!(app.deliver_due().await, 0);
    assert_eq!(fake.requests().len(), 4);
    assert!(fake.delivered().is_empty());
}

#[tokio::test]
async fn a_message_nobody_sent_in_time_is_given_up_unsent() {
    // Every instance was down for longer than the give-up time.
    let fake = FakeSms::start().await;
    let app = app_with(
        &webhook_env(&fake),
        &[("SMS_DELIVERY_GIVE_UP_SECONDS", "10")],
    )
    .await;
    app.code_for(&phone(1)).await;
    app.advance(10);
    assert_eq!(app.deliver_due().await, 1);
    let row = only_row(&app).await;
    assert_eq!((row.status.as_str(), row.attempts), ("undeliverable", 0));
    assert_eq!(row.payload, None);
    assert!(fake.requests().is_empty(), "an expired code is not sent");
}

#[tokio::test]
async fn a_new_code_supersedes_the_undelivered_message_of_the_old_one() {
    let fake = FakeSms::start().await;
    fake.set_mode(Mode::Fail);
    let app = app_with(&webhook_env(&fake), &[]).await;
    app.code_for(&phone(1)).await;
    assert_eq!(app.deliver_due().await, 1);
    app.advance(61);
    fake.set_mode(Mode::accept());
    let second = app.code_for(&phone(1)).await;
    app.deliver_due().await;
    let delivered = fake.delivered();
    assert_eq!(delivered.len(), 1, "only the working code is sent");
    assert!(delivered[0].body_text().contains(&second));
    let rows = outbox_rows(&app).await;
    let statuses: Vec<&str> = rows.iter().map(|r| r.status.as_str()).collect();
    assert_eq!(statuses, ["superseded", "sent"]);
    assert!(rows.iter().all(|r| r.payload.is_none()));
}

#[tokio::test]
async fn a_message_held_by_a_vanished_worker_is_sent_once_its_lease_runs_out() {
    let fake = FakeSms::start().await;
    let app = app_with(&webhook_env(&fake), &[]).await;
    app.code_for(&phone(1)).await;
    // A worker claimed it and died: its lease (send timeout + 30 s) still holds the row.
    let lease = now(&app) + chrono::TimeDelta::seconds(31);
    app.state
        .db
        .execute_raw(db::raw(
            app.state.db.get_database_backend(),
            "UPDATE sms_outbox SET locked_until = ?, claim_token = 'gone', attempts = 1",
            vec![lease.into()],
        ))
        .await
        .unwrap();
    assert_eq!(app.deliver_due().await, 0);
    app.advance(30);
    assert_eq!(app.deliver_due().await, 0);
    app.advance(1);
    assert_eq!(app.deliver_due().await, 1);
    assert_eq!(fake.delivered().len(), 1);
    assert_eq!(only_row(&app).await.status, "sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_never_send_one_message_twice() {
    let fake = FakeSms::start().await;
    // A slow provider keeps claims in flight while the other instance looks for work.
    fake.set_mode(Mode::Accept {
        status: 200,
        delay: Duration::from_millis(20),
    });
    let env = webhook_env(&fake);
    let url = file_database_url().await;
    let a = Arc::new(app_on(&url, &env, &[("SMS_SEND_TIMEOUT_MS", "5000")]).await);
    let b = Arc::new(app_on(&url, &env, &[("SMS_SEND_TIMEOUT_MS", "5000")]).await);
    const MESSAGES: u32 = 40;
    for n in 0..MESSAGES {
        let app = if n % 2 == 0 { &a } else { &b };
        app.code_for(&phone(n)).await;
    }

    let drain = |app: Arc<TestApp>| {
        tokio::spawn(async move {
            let mut handled = 0;
            for _ in 0..200 {
                let n = app.deliver_due().await;
                if n == 0 {
                    break;
                }
                handled += n;
            }
            handled
        })
    };
    let (ha, hb, hc, hd) = tokio::join!(
        drain(a.clone()),
        drain(b.clone()),
        drain(a.clone()),
        drain(b.clone())
    );
    let handled = ha.unwrap() + hb.unwrap() + hc.unwrap() + hd.unwrap();
    assert_eq!(handled, MESSAGES as usize, "each message claimed once");

    let delivered = fake.delivered();
    assert_eq!(delivered.len(), MESSAGES as usize);
    let phones: HashSet<String> = delivered
        .iter()
        .map(|r| {
            serde_json::from_slice::<Value>(&r.body).unwrap()["to"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(phones.len(), MESSAGES as usize, "no phone got two messages");
    let rows = outbox_rows(&a).await;
    assert!(
        rows.iter().all(|r| r.status == "sent" && r.attempts == 1),
        "{rows:?}"
    );
}

#[tokio::test]
async fn the_outbox_never_holds_the_code_in_plaintext() {
    let fake = FakeSms::start().await;
    fake.set_mode(Mode::Fail);
    // 8 digits: a shorter code could turn up in random bytes by chance.
    let app = app_with(&webhook_env(&fake), &[("OTP_LENGTH", "8")]).await;
    let code = app.code_for(&phone(1)).await;
    let row = only_row(&app).await;
    let payload = row.payload.clone().expect("sealed text while pending");
    assert!(payload.len() > 24 + 16, "nonce, ciphertext and tag");
    for needle in [code.as_bytes(), b"phone-auth code".as_slice()] {
        assert!(
            !payload.windows(needle.len()).any(|w| w == needle),
            "plaintext in the payload"
        );
    }
    assert!(!format!("{row:?}").contains(&code));
    // Not even hex or base64 of it, in any column.
    let db = &app.state.db;
    let dump = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT * FROM sms_outbox",
        ))
        .await
        .unwrap();
    assert!(!format!("{dump:?}").contains(&code));

    // Still deliverable: the worker opens it with the key.
    fake.set_mode(Mode::accept());
    app.advance(1);
    assert_eq!(app.deliver_due().await, 1);
    assert!(fake.delivered()[0].body_text().contains(&code));
}

#[tokio::test]
async fn a_message_sealed_under_another_secret_is_given_up() {
    // A restart with a new JWT_SECRET cannot open what the old one sealed.
    let fake = FakeSms::start().await;
    let env = webhook_env(&fake);
    let url = file_database_url().await;
    let old = app_on(&url, &env, &[]).await;
    old.code_for(&phone(1)).await;
    let new = app_on(
        &url,
        &env,
        &[("JWT_SECRET", "another-secret-another-secret-0123456789")],
    )
    .await;
    assert_eq!(new.deliver_due().await, 1);
    let row = only_row(&new).await;
    assert_eq!(row.status, "undeliverable");
    assert!(row.last_error.unwrap_or_default().contains("JWT_SECRET"));
    assert!(fake.requests().is_empty());
}

/// The provider hangs for longer than any answer may take: a request that waited for
/// delivery would take the whole send timeout (30 s). Requests must answer well inside it
/// (10 s: generous for a loaded machine, far from 30 s).
#[tokio::test]
async fn request_code_answers_at_once_while_the_provider_hangs() {
    let fake = FakeSms::start().await;
    fake.set_mode(Mode::Hang);
    let app = app_with(&webhook_env(&fake), &[("SMS_SEND_TIMEOUT_MS", "30000")]).await;
    let worker = phone_auth::app::outbox_worker(&app.state).spawn();
    let prompt = Duration::from_secs(10);

    let started = Instant::now();
    assert_ok(&app.request_code(&phone(1)).await);
    assert!(started.elapsed() < prompt, "{:?}", started.elapsed());
    // The worker is now stuck on the provider; requests still answer at once.
    wait_for(|| !fake.requests().is_empty(), "the worker sends").await;
    assert_eq!(fake.requests().len(), 1, "the worker is sending");
    let started = Instant::now();
    assert_ok(&app.request_code(&phone(2)).await);
    let code = app.code_for(&phone(3)).await;
    assert_ok(&app.verify(&phone(3), &code).await);
    assert!(started.elapsed() < prompt, "{:?}", started.elapsed());
    assert_eq!(fake.requests().len(), 1, "still on the first message");
    drop(worker);
}

/// Polls `ready` until it holds, for at most 10 s (a loaded 2-core machine, not a fast one).
async fn wait_for(ready: impl Fn() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ready() {
        assert!(Instant::now() < deadline, "{what}: not within 10 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn stopping_the_worker_finishes_the_batch_it_holds() {
    let fake = FakeSms::start().await;
    fake.set_mode(Mode::Accept {
        status: 200,
        delay: Duration::from_millis(300),
    });
    let app = app_with(&webhook_env(&fake), &[("SMS_SEND_TIMEOUT_MS", "5000")]).await;
    let worker = phone_auth::app::outbox_worker(&app.state).spawn();
    app.code_for(&phone(1)).await;
    wait_for(|| !fake.requests().is_empty(), "the send starts").await;
    assert_eq!(fake.requests().len(), 1, "the send is in flight");
    // What SIGTERM does after the HTTP server drained.
    worker.stop().await;
    assert_eq!(fake.delivered().len(), 1);
    assert_eq!(only_row(&app).await.status, "sent");
}

fn config(pairs: &[(&str, &str)]) -> Result<Config, String> {
    let map: std::collections::HashMap<&str, &str> = pairs.iter().copied().collect();
    Config::from_lookup(|k| map.get(k).map(|v| v.to_string())).map_err(|e| e.to_string())
}

#[test]
fn each_provider_names_the_setting_it_is_missing() {
    for (pairs, needle) in [
        (vec![("SMS_PROVIDER", "webhook")], "SMS_WEBHOOK_URL"),
        (
            vec![
                ("SMS_PROVIDER", "webhook"),
                ("SMS_WEBHOOK_URL", "https://sms.example/send"),
            ],
            "SMS_WEBHOOK_SECRET",
        ),
        (
            vec![
                ("SMS_PROVIDER", "webhook"),
                ("SMS_WEBHOOK_URL", "ftp://sms.example/send"),
                ("SMS_WEBHOOK_SECRET", WEBHOOK_SECRET),
            ],
            "SMS_WEBHOOK_URL",
        ),
        (vec![("SMS_PROVIDER", "twilio")], "TWILIO_ACCOUNT_SID"),
        (
            vec![
                ("SMS_PROVIDER", "twilio"),
                ("TWILIO_ACCOUNT_SID", TWILIO_SID),
            ],
            "TWILIO_FROM",
        ),
        (
            vec![
                ("SMS_PROVIDER", "twilio"),
                ("TWILIO_ACCOUNT_SID", TWILIO_SID),
                ("TWILIO_FROM", "+15005550006"),
            ],
            "TWILIO_AUTH_TOKEN",
        ),
        (
            vec![
                ("SMS_PROVIDER", "twilio"),
                ("TWILIO_ACCOUNT_SID", "AC/../../x"),
            ],
            "TWILIO_ACCOUNT_SID",
        ),
        (vec![("SMS_SEND_TIMEOUT_MS", "0")], "SMS_SEND_TIMEOUT_MS"),
        (
            vec![("SMS_DELIVERY_GIVE_UP_SECONDS", "0")],
            "SMS_DELIVERY_GIVE_UP_SECONDS",
        ),
    ] {
        let err = config(&pairs).unwrap_err();
        assert!(err.contains(needle), "{pairs:?}: {err}");
    }
    // The defaults: 10 s per attempt, give up when the code dies.
    let c = config(&[("OTP_TTL_SECONDS", "120")]).unwrap();
    assert_eq!(c.sms.send_timeout, Duration::from_secs(10));
    assert_eq!(c.sms.give_up_after, Duration::from_secs(120));
    let c = config(&[
        ("SMS_PROVIDER", "twilio"),
        ("TWILIO_ACCOUNT_SID", TWILIO_SID),
        ("TWILIO_AUTH_TOKEN", TWILIO_TOKEN),
        ("TWILIO_FROM", "+15005550006"),
    ])
    .unwrap();
    let phone_auth::config::SmsProviderKind::Twilio(twilio) = &c.sms.provider else {
        panic!("twilio expected");
    };
    assert_eq!(
        twilio.messages_url().as_str(),
        format!("https://api.twilio.com/2010-04-01/Accounts/{TWILIO_SID}/Messages.json")
    );
    assert!(!format!("{c:?}").contains(TWILIO_TOKEN));
}

#[test]
fn production_takes_real_providers_without_an_opt_in_but_wants_a_long_webhook_secret() {
    let production = [
        ("APP_ENV", "production"),
        ("JWT_SECRET", "k3Jv9QeXw2Lp8Zr5Tn1Yb6Hs4Md7Fa0Cu9Gi2Eo5"),
        ("SMS_WEBHOOK_URL", "https://sms.example/send"),
    ];
    let mut webhook = production.to_vec();
    webhook.extend([
        ("SMS_PROVIDER", "webhook"),
        ("SMS_WEBHOOK_SECRET", WEBHOOK_SECRET),
    ]);
    config(&webhook).expect("webhook is fine in production");
    let mut short = production.to_vec();
    short.extend([("SMS_PROVIDER", "webhook"), ("SMS_WEBHOOK_SECRET", "short")]);
    let err = config(&short).unwrap_err();
    assert!(
        err.contains("SMS_WEBHOOK_SECRET") && err.contains("refusing"),
        "{err}"
    );
    let mut twilio = production.to_vec();
    twilio.extend([
        ("SMS_PROVIDER", "twilio"),
        ("TWILIO_ACCOUNT_SID", TWILIO_SID),
        ("TWILIO_AUTH_TOKEN", TWILIO_TOKEN),
        ("TWILIO_FROM", "+15005550006"),
    ]);
    config(&twilio).expect("twilio is fine in production");
    // And the console provider still needs its explicit opt-in.
    let err = config(&production).unwrap_err();
    assert!(err.contains("SMS_PROVIDER"), "{err}");
}

/// A gateway that delivers and then times out would turn each retry into one more SMS: every
/// attempt after the first pays the per-phone and global budgets, and all carry one
/// idempotency key so the gateway can drop the repeats.
#[tokio::test]
async fn retries_pay_the_send_budgets_and_keep_one_idempotency_key() {
    let fake = FakeSms::start().await;
    fake.set_mode(Mode::Hang);
    let app = app_with(
        &webhook_env(&fake),
        &[("PHONE_CODES_PER_HOUR", "3"), ("SMS_GLOBAL_PER_DAY", "100")],
    )
    .await;
    app.code_for(&phone(1)).await;

    // Attempt 1 was paid by requestCode; attempts 2 and 3 pay one each.
    for wait in [1, 2, 4] {
        assert_eq!(app.deliver_due().await, 1);
        app.advance(wait);
    }
    assert_eq!(fake.requests().len(), 3);
    // The phone's hourly budget (3) is spent: the fourth attempt is not sent, and since the
    // budget frees up only after the code's give-up time (its 5 minutes), it is given up.
    assert_eq!(app.deliver_due().await, 1);
    assert_eq!(fake.requests().len(), 3);
    let row = only_row(&app).await;
    assert_eq!(row.status, "undeliverable", "{row:?}");
    assert!(
        row.last_error.as_deref().unwrap_or("").contains("budget"),
        "{row:?}"
    );
    // And the phone gets no new code either.
    app.advance(60);
    let body = app.request_code(&phone(1)).await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "RATE_LIMITED",
        "{body}"
    );

    let keys: HashSet<_> = fake
        .requests()
        .iter()
        .map(|r| r.header("idempotency-key").map(str::to_owned))
        .collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(keys.iter().all(Option::is_some));
}

/// A retry the budget has no room for yet waits for it (when that is before the give-up time).
#[tokio::test]
async fn a_retry_without_budget_waits_for_it_unsent() {
    let fake = FakeSms::start().await;
    fake.set_mode(Mode::Fail);
    let app = app_with(
        &webhook_env(&fake),
        &[
            ("SMS_GLOBAL_PER_MINUTE", "1"),
            ("SMS_DELIVERY_GIVE_UP_SECONDS", "3600"),
        ],
    )
    .await;
    app.code_for(&phone(1)).await;
    assert_eq!(
        app.deliver_due().await,
        1,
        "first attempt, paid by requestCode"
    );
    app.advance(1);
    // The global minute is spent by the code itself: the retry waits until it frees.
    assert_eq!(app.deliver_due().await, 1);
    assert_eq!(fake.requests().len(), 1);
    let row = only_row(&app).await;
    assert_eq!((row.status.as_str(), row.attempts), ("pending", 1));
    assert_eq!((row.next_attempt_at - now(&app)).num_seconds(), 59);
    fake.set_mode(Mode::accept());
    app.advance(59);
    assert_eq!(app.deliver_due().await, 1);
    assert_eq!(fake.delivered().len(), 1);
    assert_eq!(only_row(&app).await.status, "sent");
}

/// A worker whose lease ran out (another claim took the row) changes nothing with its late
/// writes: finish, retry, put back and mark sent all check the claim token and that the row is
/// still pending. The store is driven directly, as two workers would.
#[tokio::test]
async fn a_worker_whose_lease_ran_out_changes_nothing() {
    let fake = FakeSms::start().await;
    let app = app_with(&webhook_env(&fake), &[]).await;
    app.code_for(&phone(1)).await;
    let db = &app.state.db;
    let lease = chrono::TimeDelta::seconds(60);

    let late = store::claim(db, now(&app), now(&app) + lease, 16)
        .await
        .expect("claim");
    assert_eq!(late.len(), 1);
    app.advance(61);
    let current = store::claim(db, now(&app), now(&app) + lease, 16)
        .await
        .expect("claim");
    assert_eq!(current.len(), 1, "an expired lease is claimed again");
    assert_eq!(current[0].id, late[0].id);

    let late = &late[0];
    let later = now(&app) + lease;
    assert!(
        !store::finish(db, late, Status::Undeliverable, Some("late"), now(&app))
            .await
            .expect("finish")
    );
    release_late(db, late, later).await;
    assert!(
        store::mark_sent(db, &[late], now(&app))
            .await
            .expect("mark sent")
            .is_empty()
    );
    let row = outbox_row(&app).await;
    assert_eq!(row.status, Status::Pending);
    assert_eq!(
        row.attempts, 2,
        "one per claim, none given back by the late worker"
    );
    assert_eq!(row.claim_token.as_deref(), Some(current[0].token.as_str()));
    assert_eq!(row.last_error, None);

    // Once the current holder has finished it, the late worker still changes nothing.
    assert!(
        store::finish(
            db,
            &current[0],
            Status::Undeliverable,
            Some("given up"),
            now(&app)
        )
        .await
        .expect("finish")
    );
    release_late(db, late, later).await;
    let row = outbox_row(&app).await;
    assert_eq!(row.status, Status::Undeliverable);
    assert_eq!(row.attempts, 2);
    assert_eq!(row.last_error.as_deref(), Some("given up"));
}

/// A late worker's two ways of letting go of a row: a retry, and a put-back.
async fn release_late(db: &sea_orm::DatabaseConnection, late: &store::Claimed, at: DateTime<Utc>) {
    store::retry_later(db, late, at, "late")
        .await
        .expect("retry");
    store::put_back(db, late, at, "late")
        .await
        .expect("put back");
}

/// The one outbox row, as the entity reads it.
async fn outbox_row(app: &TestApp) -> sms_outbox::Model {
    let mut rows = sms_outbox::Entity::find()
        .all(&app.state.db)
        .await
        .expect("the outbox is readable");
    assert_eq!(rows.len(), 1, "{rows:?}");
    rows.remove(0)
}

/// Finished rows go after the retention time (7 days from when they finished); a younger
/// finished row and a pending one stay.
#[tokio::test]
async fn finished_rows_are_pruned_after_the_retention_time() {
    let fake = FakeSms::start().await;
    let app = app_with(&webhook_env(&fake), &[]).await;
    let db = &app.state.db;
    app.code_for(&phone(1)).await;
    assert_eq!(app.deliver_due().await, 1);
    app.advance(3 * 86_400);
    app.code_for(&phone(2)).await;
    assert_eq!(app.deliver_due().await, 1);
    app.code_for(&phone(3)).await;

    // Phone 1's row finished 7 days ago to the second: not yet older than the retention.
    app.advance(4 * 86_400);
    assert_eq!(store::prune(db, now(&app)).await.expect("prune"), 0);
    app.advance(1);
    assert_eq!(store::prune(db, now(&app)).await.expect("prune"), 1);
    let phones: Vec<String> = outbox_rows(&app)
        .await
        .into_iter()
        .map(|r| r.phone)
        .collect();
    assert_eq!(phones, [phone(2), phone(3)]);
}
