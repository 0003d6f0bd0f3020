//! `TestApp`: the production router with a settable clock, a recording SMS sender and its own
//! database, called in process (no socket) through `tower::ServiceExt::oneshot`.

#![allow(dead_code)]

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use axum::{
    Router,
    body::Body,
    extract::connect_info::MockConnectInfo,
    http::{HeaderMap, Request, StatusCode, header},
};
use chrono::TimeDelta;
use http_body_util::BodyExt;
use phone_auth::{
    clock::ManualClock,
    config::Config,
    db, outbox,
    sms::{RecordingSender, SmsSender},
    state::AppState,
};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use serde_json::{Value, json};
use tower::ServiceExt;

pub struct TestApp {
    pub router: Router,
    pub state: AppState,
    pub clock: ManualClock,
    pub sms: RecordingSender,
    statements: Arc<AtomicUsize>,
    statement_log: Arc<std::sync::Mutex<Vec<String>>>,
    /// The outbox worker on a database handle whose statements are not counted: background
    /// delivery must not show up in a request's statement count.
    worker: outbox::Worker,
    /// That worker running, as `app::run` starts it; `None` when the test drives delivery itself.
    outbox_worker: Option<outbox::RunningWorker>,
}

pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

/// A signed-in user.
#[derive(Clone, Debug)]
pub struct Session {
    pub access_token: String,
    pub refresh_token: String,
    pub user_id: String,
    pub invite_code: String,
    pub phone: String,
}

/// Settings every test shares: no SMS delay, codes exposed (tests read `devCode`), per-IP
/// limits off (the whole suite comes from one address), the global caps and SMS pumping
/// breakers off (the suite sends many codes to one range: `phone(n)`); per-phone and per-code
/// rules stay on. Tests of a limit turn it on. Loopback clients are counted like any other
/// (production's rule), so a test that turns a per-IP limit on sees it from 127.0.0.1.
const BASE: &[(&str, &str)] = &[
    (
        "JWT_SECRET",
        "test-secret-test-secret-test-secret-0123456789",
    ),
    ("SMS_DELAY_MS", "0"),
    ("OTP_EXPOSE", "true"),
    ("IP_CODES_PER_HOUR", "0"),
    ("IP_CODES_PER_DAY", "0"),
    ("IP_VERIFY_PER_HOUR", "0"),
    ("SMS_GLOBAL_PER_MINUTE", "0"),
    ("IP_LIMITS_ON_LOOPBACK", "true"),
    ("SMS_GLOBAL_PER_HOUR", "0"),
    ("SMS_GLOBAL_PER_DAY", "0"),
    ("SMS_RANGE_PER_HOUR", "0"),
    ("SMS_COUNTRY_MIN_SENDS", "0"),
    ("ADMIN_PHONES", "+79990000001"),
];

/// Creates a database of its own for one test: in-memory SQLite, or a fresh PostgreSQL
/// database `<prefix>_<uuid>` when `TEST_DATABASE_URL` names a server. The prefix is
/// `TEST_DATABASE_PREFIX` (default `test`): a run with its own prefix can drop exactly the
/// databases it made, even on a server other people test on.
pub async fn fresh_database_url() -> String {
    match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if url.starts_with("postgres") => {
            let admin = db::connect(&url, 1)
                .await
                .expect("TEST_DATABASE_URL is reachable");
            let prefix = std::env::var("TEST_DATABASE_PREFIX").unwrap_or_else(|_| "test".into());
            assert!(
                !prefix.is_empty()
                    && prefix
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "TEST_DATABASE_PREFIX: lowercase letters, digits and _ only, got {prefix:?}"
            );
            let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
            admin
                .execute_raw(Statement::from_string(
                    admin.get_database_backend(),
                    format!("CREATE DATABASE {name}"),
                ))
                .await
                .expect("can create a test database");
            admin.close().await.ok();
            match url.rfind('/') {
                Some(slash) if slash > "postgres://".len() => format!("{}/{name}", &url[..slash]),
                _ => format!("{url}/{name}"),
            }
        }
        _ => "sqlite::memory:".to_owned(),
    }
}

/// How many connections a test app's pool holds.
#[derive(Clone, Copy)]
enum PoolSize {
    /// 5 (in-memory SQLite always gets 1).
    Test,
    /// What the server opens: `DATABASE_MAX_CONNECTIONS`.
    Production,
}

/// A fresh database that several connections can share: a new SQLite file in the temporary
/// directory (as production runs SQLite), or a fresh PostgreSQL database.
pub async fn file_database_url() -> String {
    match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if url.starts_with("postgres") => fresh_database_url().await,
        _ => {
            let path = std::env::temp_dir().join(format!(
                "phone-auth-test-{}.db",
                uuid::Uuid::new_v4().simple()
            ));
            format!("sqlite://{}?mode=rwc", path.display())
        }
    }
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::with_env(&[]).await
    }

    /// A test app whose configuration is `BASE` plus `overrides`.
    pub async fn with_env(overrides: &[(&str, &str)]) -> Self {
        let url = fresh_database_url().await;
        Self::with_database(&url, overrides).await
    }

    /// A second app (another "instance") on an existing database.
    pub async fn with_database(url: &str, overrides: &[(&str, &str)]) -> Self {
        Self::build(url, overrides, false).await
    }

    /// An app whose codes go to the provider the configuration names (`SMS_PROVIDER` …, e.g. a
    /// webhook pointing at a fake) and whose outbox moves only when the test calls
    /// [`TestApp::deliver_due`].
    pub async fn with_provider(url: &str, overrides: &[(&str, &str)]) -> Self {
        Self::build(url, overrides, true).await
    }

    /// An app for race tests: a SQLite *file* (WAL, the production pool of
    /// `DATABASE_MAX_CONNECTIONS` connections, default 10) instead of the one-connection
    /// in-memory database that would serialise every request; PostgreSQL as usual when
    /// `TEST_DATABASE_URL` is set.
    pub async fn for_races(overrides: &[(&str, &str)]) -> Self {
        let url = file_database_url().await;
        Self::build_with_pool(&url, &[], overrides, false, PoolSize::Production).await
    }

    /// A test app in which the `BASE` settings named in `defaults` are left out, so those
    /// variables take the server's own defaults (e.g. the per-IP caps `BASE` turns off).
    pub async fn with_defaults_for(defaults: &[&str], overrides: &[(&str, &str)]) -> Self {
        let url = fresh_database_url().await;
        Self::build_with_pool(&url, defaults, overrides, false, PoolSize::Test).await
    }

    async fn build(url: &str, overrides: &[(&str, &str)], configured_provider: bool) -> Self {
        Self::build_with_pool(url, &[], overrides, configured_provider, PoolSize::Test).await
    }

    async fn build_with_pool(
        url: &str,
        defaults: &[&str],
        overrides: &[(&str, &str)],
        configured_provider: bool,
        pool: PoolSize,
    ) -> Self {
        let mut env: HashMap<String, String> = BASE
            .iter()
            .filter(|(k, _)| !defaults.contains(k))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        env.insert("DATABASE_URL".into(), url.to_owned());
        for (k, v) in overrides {
            env.insert(k.to_string(), v.to_string());
        }
        let config =
            Config::from_lookup(|key| env.get(key).cloned()).expect("test config is valid");
        let connections = match pool {
            PoolSize::Test => 5,
            PoolSize::Production => config.database_max_connections,
        };
        // A test that shortens REQUEST_TIMEOUT_MS gets the server's bounded pool wait; the
        // others keep the pool's defaults (a loaded test machine queues, it does not fail).
        let opened = if config.graphql.request_timeout < std::time::Duration::from_secs(5) {
            db::connect_with(
                &config.database_url,
                connections,
                config.database_acquire_timeout(),
            )
            .await
        } else {
            db::connect(&config.database_url, connections).await
        };
        let mut conn: DatabaseConnection = opened.expect("test database opens");
        db::migrate(&conn).await.expect("migrations apply");

        let uncounted = conn.clone();
        let statements = Arc::new(AtomicUsize::new(0));
        let statement_log = Arc::new(std::sync::Mutex::new(Vec::new()));
        {
            let statements = statements.clone();
            let statement_log = statement_log.clone();
            conn.set_metric_callback(move |info| {
                // The revocation feed reloads its set in the background whenever its listener
                // reconnects or its heartbeat goes stale (a loaded machine): not a request's.
                if info
                    .statement
                    .sql
                    .contains("FROM revoked_sessions WHERE revoked_at >")
                {
                    return;
                }
                statements.fetch_add(1, Ordering::SeqCst);
                if let Ok(mut log) = statement_log.lock() {
                    log.push(info.statement.sql.clone());
                }
            });
        }

        let clock = ManualClock::default();
        let sms = RecordingSender::default();
        let sender: Arc<dyn SmsSender> = if configured_provider {
            phone_auth::app::sms_sender(&config, Arc::new(clock.clone()))
                .expect("the SMS provider builds")
        } else {
            Arc::new(sms.clone())
        };
        let state = AppState::new(config, conn, Arc::new(clock.clone()), sender);
        phone_auth::app::start(&state);
        // Until the revoked sign-ins are loaded every access token is refused (fail closed).
        assert!(
            state
                .revocations
                .wait_live(std::time::Duration::from_secs(10))
                .await,
            "the revocation feed went live"
        );
        let router = phone_auth::app::build_router(state.clone())
            .layer(MockConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
        let worker = phone_auth::app::outbox_worker(&AppState {
            db: uncounted,
            ..state.clone()
        });
        let outbox_worker = (!configured_provider).then(|| worker.clone().spawn());
        Self {
            router,
            state,
            clock,
            sms,
            statements,
            statement_log,
            worker,
            outbox_worker,
        }
    }

    /// One pass of the SMS outbox (what the worker does when woken); how many it handled.
    pub async fn deliver_due(&self) -> usize {
        self.worker
            .deliver_due()
            .await
            .expect("the outbox pass runs")
    }

    pub fn advance(&self, seconds: i64) {
        self.clock.advance(TimeDelta::seconds(seconds));
    }

    /// Lets background work run to completion: every due SMS is delivered (or rescheduled).
    pub async fn settle(&self) {
        for _ in 0..20 {
            tokio::task::yield_now().await;
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        self.deliver_due().await;
        // A message the worker holds is finished by the worker.
        for _ in 0..500 {
            if self.worker.due().await.expect("the outbox is readable") == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    }

    /// SQL statements run since the last `reset_statements`.
    pub fn statements(&self) -> usize {
        self.statements.load(Ordering::SeqCst)
    }

    pub fn statement_log(&self) -> Vec<String> {
        self.statement_log
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default()
    }

    pub fn reset_statements(&self) {
        self.statements.store(0, Ordering::SeqCst);
        if let Ok(mut log) = self.statement_log.lock() {
            log.clear();
        }
    }

    /// The response's status, headers and body bytes, as the router wrote them.
    pub async fn send_raw(&self, request: Request<Body>) -> (StatusCode, HeaderMap, Vec<u8>) {
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("the router answers");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (status, headers, bytes.to_vec())
    }

    pub async fn send(&self, request: Request<Body>) -> Response {
        let (status, headers, bytes) = self.send_raw(request).await;
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Response {
            status,
            headers,
            body,
        }
    }

    /// POSTs a raw body with the given headers.
    pub async fn post(&self, headers: &[(&str, &str)], body: impl Into<Body>) -> Response {
        let mut request = Request::post("/graphql");
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        self.send(request.body(body.into()).expect("request builds"))
            .await
    }

    pub async fn get(&self, uri: &str, headers: &[(&str, &str)]) -> Response {
        let mut request = Request::get(uri);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        self.send(request.body(Body::empty()).expect("request builds"))
            .await
    }

    /// Runs one GraphQL operation (JSON POST) and returns the response body.
    pub async fn gql(&self, query: &str, variables: Value) -> Value {
        self.gql_with(None, query, variables).await
    }

    pub async fn gql_as(&self, token: &str, query: &str, variables: Value) -> Value {
        self.gql_with(Some(token), query, variables).await
    }

    pub async fn gql_with(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let body = json!({ "query": query, "variables": variables }).to_string();
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![(header::CONTENT_TYPE.as_str(), "application/json")];
        if let Some(auth) = &auth {
            headers.push((header::AUTHORIZATION.as_str(), auth.as_str()));
        }
        let response = self.post(&headers, body).await;
        assert_eq!(response.status, StatusCode::OK, "body: {}", response.body);
        response.body
    }

    pub async fn request_code(&self, phone: &str) -> Value {
        self.gql(
            "mutation($phone: String!) { requestCode(phone: $phone) { phone expiresAt resendAvailableAt devCode } }",
            json!({ "phone": phone }),
        )
        .await
    }

    /// Requests a code and returns it (from `devCode`).
    pub async fn code_for(&self, phone: &str) -> String {
        let response = self.request_code(phone).await;
        response["data"]["requestCode"]["devCode"]
            .as_str()
            .unwrap_or_else(|| panic!("requestCode failed: {response}"))
            .to_owned()
    }

    pub async fn verify(&self, phone: &str, code: &str) -> Value {
        self.gql(
            "mutation($phone: String!, $code: String!) { verifyCode(phone: $phone, code: $code) { \
               accessToken refreshToken tokenType expiresIn isNewUser \
               user { id phone inviteCode activatedInviteCode createdAt } } }",
            json!({ "phone": phone, "code": code }),
        )
        .await
    }

    /// Signs `phone` in (requesting a code first) and returns the session.
    pub async fn sign_in(&self, phone: &str) -> Session {
        let code = self.code_for(phone).await;
        let response = self.verify(phone, &code).await;
        session_from(&response["data"]["verifyCode"])
            .unwrap_or_else(|| panic!("verifyCode failed: {response}"))
    }

    pub async fn activate(&self, session: &Session, invite_code: &str) -> Value {
        self.gql_as(
            &session.access_token,
            "mutation($c: String!) { activateInvite(inviteCode: $c) { id activatedInviteCode } }",
            json!({ "c": invite_code }),
        )
        .await
    }
}

pub fn session_from(payload: &Value) -> Option<Session> {
    Some(Session {
        access_token: payload["accessToken"].as_str()?.to_owned(),
        refresh_token: payload["refreshToken"].as_str()?.to_owned(),
        user_id: payload["user"]["id"].as_str()?.to_owned(),
        invite_code: payload["user"]["inviteCode"].as_str()?.to_owned(),
        phone: payload["user"]["phone"].as_str()?.to_owned(),
    })
}

/// The first error's `extensions.code`, or `None` when the response has no errors.
pub fn error_code(body: &Value) -> Option<String> {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .map(str::to_owned)
}

#[track_caller]
pub fn assert_code(body: &Value, code: &str) {
    assert_eq!(error_code(body).as_deref(), Some(code), "response: {body}");
}

#[track_caller]
pub fn assert_ok(body: &Value) {
    assert!(
        body.get("errors").is_none_or(|e| e.is_null()),
        "unexpected errors: {body}"
    );
}

/// A distinct valid Russian mobile number for each `n`.
pub fn phone(n: u32) -> String {
    format!("+7912{n:07}")
}

/// A code of the same length that is certainly not `code`.
pub fn wrong(code: &str) -> String {
    code.chars()
        .map(|c| {
            if c == '9' {
                '0'
            } else {
                char::from(c as u8 + 1)
            }
        })
        .collect()
}
