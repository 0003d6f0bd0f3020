//! Configuration: defaults, validation, and the refusals of production mode — checked on the
//! config and on the real binary (non-zero exit, a message naming the problem).

use std::process::Command;

use phone_auth::config::Config;

fn config(pairs: &[(&str, &str)]) -> Result<Config, String> {
    let map: std::collections::HashMap<&str, &str> = pairs.iter().copied().collect();
    Config::from_lookup(|k| map.get(k).map(|v| v.to_string())).map_err(|e| e.to_string())
}

const GOOD_SECRET: &str = "k3Jv9QeXw2Lp8Zr5Tn1Yb6Hs4Md7Fa0Cu9Gi2Eo5";

#[test]
fn development_defaults_work_with_no_environment() {
    let c = config(&[]).expect("defaults are valid");
    assert!(!c.is_production());
    assert!(c.jwt_secret_generated);
    assert!(c.otp.expose);
    assert_eq!(c.listen_addr.to_string(), "127.0.0.1:8000");
    assert!(c.database_url.starts_with("sqlite://phone-auth.db"));
    assert_eq!(c.otp.length, 4);
    assert_eq!(c.otp.ttl.as_secs(), 300);
    assert_eq!(c.otp.max_attempts, 5);
    assert_eq!(c.otp.resend_cooldown.as_secs(), 60);
    assert_eq!(c.sms.delay.as_millis(), 1000);
    assert_eq!(c.default_region.code(), "RU");
    assert_eq!(c.tokens.access_ttl.as_secs(), 900);
    assert_eq!(c.tokens.refresh_ttl.as_secs(), 2_592_000);
    assert_eq!(c.graphql.max_body_bytes, 65536);
    assert_eq!(c.logging.filter, None);
    assert!(!c.logging.json && !c.logging.sql);
}

#[test]
fn logging_is_read_with_the_rest_and_a_bad_value_is_refused() {
    let c = config(&[
        ("RUST_LOG", "debug,hyper=info"),
        ("LOG_FORMAT", "JSON"),
        ("LOG_SQL", "true"),
    ])
    .expect("valid");
    assert_eq!(c.logging.filter.as_deref(), Some("debug,hyper=info"));
    assert!(c.logging.json && c.logging.sql);
    assert!(
        !config(&[("LOG_FORMAT", "text")])
            .expect("valid")
            .logging
            .json
    );
    let err = config(&[("LOG_FORMAT", "xml")]).unwrap_err();
    assert!(err.contains("LOG_FORMAT"), "{err}");
    let err = config(&[("LOG_SQL", "maybe")]).unwrap_err();
    assert!(err.contains("LOG_SQL"), "{err}");
}

#[test]
fn production_refuses_a_missing_short_or_default_secret() {
    let base = [
        ("APP_ENV", "production"),
        ("OTP_EXPOSE", "false"),
        ("SMS_PROVIDER", "console"),
    ];
    let err = config(&base).unwrap_err();
    assert!(err.contains("JWT_SECRET"), "{err}");
    let mut short = base.to_vec();
    short.push(("JWT_SECRET", "too-short"));
    assert!(config(&short).unwrap_err().contains("JWT_SECRET"));
    let mut default = base.to_vec();
    default.push((
        "JWT_SECRET",
        "please-change-this-secret-to-32-or-more-bytes",
    ));
    assert!(config(&default).unwrap_err().contains("JWT_SECRET"));
    let mut good = base.to_vec();
    good.push(("JWT_SECRET", GOOD_SECRET));
    assert!(config(&good).is_ok());
}

#[test]
fn production_refuses_exposed_codes() {
    // Off by default in production; turning it on is refused.
    let c = config(&[
        ("APP_ENV", "production"),
        ("JWT_SECRET", GOOD_SECRET),
        ("SMS_PROVIDER", "console"),
    ])
    .expect("production defaults keep codes out of responses");
    assert!(!c.otp.expose);
    let err = config(&[
        ("APP_ENV", "production"),
        ("JWT_SECRET", GOOD_SECRET),
        ("SMS_PROVIDER", "console"),
        ("OTP_EXPOSE", "true"),
    ])
    .unwrap_err();
    assert!(err.contains("OTP_EXPOSE"), "{err}");
}

#[test]
fn production_refuses_the_console_provider_without_opt_in() {
    let err = config(&[
        ("APP_ENV", "production"),
        ("JWT_SECRET", GOOD_SECRET),
        ("OTP_EXPOSE", "false"),
    ])
    .unwrap_err();
    assert!(err.contains("SMS_PROVIDER"), "{err}");
}

#[test]
fn bad_values_name_their_variable() {
    for (name, value) in [
        ("OTP_LENGTH", "3"),
        ("OTP_LENGTH", "9"),
        ("OTP_LENGTH", "four"),
        ("LISTEN_ADDR", "nowhere"),
        ("DEFAULT_REGION", "ZZZ"),
        ("ADMIN_PHONES", "not-a-phone"),
        ("OTP_EXPOSE", "maybe"),
        ("APP_ENV", "staging"),
        ("SMS_PROVIDER", "carrier-pigeon"),
        ("OTP_TTL_SECONDS", "0"),
    ] {
        let err = config(&[(name, value)]).unwrap_err();
        assert!(err.contains(name), "{name}={value}: {err}");
    }
}

#[test]
fn a_bad_boolean_says_every_spelling_that_is_accepted() {
    let err = config(&[("OTP_EXPOSE", "maybe")]).unwrap_err();
    for accepted in ["true/false", "yes/no", "on/off", "1/0"] {
        assert!(err.contains(accepted), "{err}");
    }
    for (value, expected) in [("YES", true), ("off", false), ("1", true), ("No", false)] {
        let config = config(&[("OTP_EXPOSE", value)]).expect("accepted");
        assert_eq!(config.otp.expose, expected, "OTP_EXPOSE={value}");
    }
}

#[test]
fn debug_output_never_shows_the_secret() {
    let c = config(&[
        ("JWT_SECRET", GOOD_SECRET),
        ("DATABASE_URL", "postgres://u:hunter2@db/x"),
    ])
    .unwrap();
    let debug = format!("{c:?}");
    assert!(!debug.contains(GOOD_SECRET));
    assert!(!debug.contains("hunter2"));
}

fn run_binary(env: &[(&str, &str)]) -> std::process::Output {
    let dir = std::env::temp_dir().join(format!(
        "phone-auth-start-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_phone-auth"));
    cmd.current_dir(&dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("the binary runs");
    let _ = std::fs::remove_dir_all(&dir);
    out
}

#[test]
fn the_binary_exits_non_zero_on_unsafe_production_settings() {
    for (env, needle) in [
        (vec![("APP_ENV", "production")], "JWT_SECRET"),
        (
            vec![("APP_ENV", "production"), ("JWT_SECRET", "short")],
            "JWT_SECRET",
        ),
        (
            vec![
                ("APP_ENV", "production"),
                ("JWT_SECRET", GOOD_SECRET),
                ("SMS_PROVIDER", "console"),
                ("OTP_EXPOSE", "true"),
            ],
            "OTP_EXPOSE",
        ),
        (
            vec![
                ("APP_ENV", "production"),
                ("JWT_SECRET", GOOD_SECRET),
                ("OTP_EXPOSE", "false"),
            ],
            "SMS_PROVIDER",
        ),
    ] {
        let out = run_binary(&env);
        assert!(!out.status.success(), "{env:?} started");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle), "{env:?}: {stderr}");
        assert!(stderr.contains("refusing to start"), "{stderr}");
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// The real binary in a fresh working directory, listening on a free port, its stderr piped
/// (so not a terminal) and its stdout dropped.
struct Running {
    child: std::process::Child,
    dir: std::path::PathBuf,
    base: String,
}

impl Running {
    fn start() -> Self {
        Self::start_with(&[])
    }

    fn start_with(env: &[(&str, &str)]) -> Self {
        let dir =
            std::env::temp_dir().join(format!("phone-auth-run-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_phone-auth"))
            .current_dir(&dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .env("SMS_DELAY_MS", "0")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("the binary starts");
        Self {
            child,
            dir,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Waits for `/readyz` to answer 200. A deadline, not a budget: a loaded 2-core machine
    /// may take seconds to start a debug build.
    async fn ready(&self, client: &reqwest::Client) {
        for _ in 0..3000 {
            if let Ok(r) = client.get(format!("{}/readyz", self.base)).send().await
                && r.status().is_success()
            {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("not ready within 30 s");
    }

    /// Sends SIGTERM and waits (at most 30 s); the exit status and everything written to stderr.
    async fn stop(self) -> (std::process::ExitStatus, String) {
        self.terminate();
        self.wait().await
    }

    fn terminate(&self) {
        let kill = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(kill.success());
    }

    /// Waits for the process to exit (at most 30 s).
    async fn wait(mut self) -> (std::process::ExitStatus, String) {
        let mut exited = None;
        for _ in 0..3000 {
            if let Some(status) = self.child.try_wait().expect("wait") {
                exited = Some(status);
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let Some(status) = exited else {
            let _ = self.child.kill();
            panic!("did not stop within 30 s of SIGTERM")
        };
        let mut stderr = String::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            use std::io::Read;
            pipe.read_to_string(&mut stderr).expect("stderr is UTF-8");
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        (status, stderr)
    }
}

/// The real binary: starts on a fresh SQLite file, migrates, answers, and on SIGTERM finishes
/// and exits cleanly.
#[tokio::test]
async fn the_binary_serves_and_shuts_down_gracefully_on_sigterm() {
    let started = std::time::Instant::now();
    let running = Running::start();
    let client = reqwest::Client::new();
    running.ready(&client).await;
    eprintln!("start to /readyz: {} ms", started.elapsed().as_millis());
    assert!(
        running.dir.join("phone-auth.db").exists(),
        "the default database is a file in the working directory"
    );

    let body = client
        .post(format!("{}/graphql", running.base))
        .json(&serde_json::json!({ "query": "mutation { requestCode(phone: \"+79120000001\") { phone devCode } }" }))
        .send()
        .await
        .expect("request")
        .json::<serde_json::Value>()
        .await
        .expect("json");
    assert_eq!(
        body["data"]["requestCode"]["phone"], "+79120000001",
        "{body}"
    );
    assert!(
        body["data"]["requestCode"]["devCode"].is_string(),
        "development exposes the code"
    );

    // Development drains for 0 s (SHUTDOWN_DRAIN_SECONDS): Ctrl-C stays instant.
    let stopping = std::time::Instant::now();
    let (status, _) = running.stop().await;
    assert!(status.success(), "exit status {status:?}");
    assert!(
        stopping.elapsed() < std::time::Duration::from_secs(3),
        "development took {:?} to stop",
        stopping.elapsed()
    );
}

/// Opens a connection and sends a GraphQL POST whose body is only half there: the server
/// holds it in flight until the rest arrives.
async fn half_sent_request(base: &str) -> (tokio::net::TcpStream, &'static str) {
    use tokio::io::AsyncWriteExt;
    let addr = base.trim_start_matches("http://");
    let body = r#"{"query":"{ __typename }"}"#;
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST /graphql HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    stream
        .write_all(&body.as_bytes()[..5])
        .await
        .expect("write");
    stream.flush().await.expect("flush");
    (stream, &body[5..])
}

/// SIGTERM in production order: `/readyz` answers 503 for `SHUTDOWN_DRAIN_SECONDS` while
/// GraphQL is still served, then the listener closes, and a request in flight by then is
/// finished and answered before the process exits cleanly.
#[tokio::test]
async fn sigterm_drains_then_stops_accepting_then_finishes_in_flight_requests() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let running = Running::start_with(&[("SHUTDOWN_DRAIN_SECONDS", "2")]);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    running.ready(&client).await;
    let base = running.base.clone();

    let (mut in_flight, rest) = half_sent_request(&base).await;
    let signalled = std::time::Instant::now();
    running.terminate();
    // Draining: not ready, still serving.
    let mut saw_draining = false;
    while signalled.elapsed() < std::time::Duration::from_millis(1500) {
        let r = client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .expect("readyz answers while draining");
        if r.status() == 503 {
            let body: serde_json::Value = r.json().await.expect("json");
            assert_eq!(body["status"], "draining", "{body}");
            saw_draining = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(saw_draining, "/readyz never answered 503 after SIGTERM");
    let body: serde_json::Value = client
        .post(format!("{base}/graphql"))
        .json(&serde_json::json!({ "query": "{ __typename }" }))
        .send()
        .await
        .expect("GraphQL is served while draining")
        .json()
        .await
        .expect("json");
    assert_eq!(body["data"]["__typename"], "Query", "{body}");

    // After the drain the listener closes: new connections are refused.
    let mut refused = false;
    for _ in 0..400 {
        if tokio::net::TcpStream::connect(base.trim_start_matches("http://"))
            .await
            .is_err()
        {
            refused = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(
        refused,
        "still accepting connections 4 s after the drain began"
    );
    assert!(
        signalled.elapsed() >= std::time::Duration::from_millis(1900),
        "stopped accepting before SHUTDOWN_DRAIN_SECONDS: {:?}",
        signalled.elapsed()
    );

    // The request that was in flight is still finished and answered.
    in_flight
        .write_all(rest.as_bytes())
        .await
        .expect("write the rest");
    let mut answer = String::new();
    in_flight.read_to_string(&mut answer).await.expect("read");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(r#""__typename":"Query""#), "{answer}");

    let (status, stderr) = running.wait().await;
    assert!(status.success(), "exit status {status:?}\n{stderr}");
    assert!(stderr.contains("draining"), "{stderr}");
}

/// Finishing in-flight requests is bounded: a request that never completes does not keep the
/// process past `SHUTDOWN_TIMEOUT_SECONDS`.
#[tokio::test]
async fn a_request_that_never_finishes_does_not_hold_the_shutdown() {
    let running = Running::start_with(&[("SHUTDOWN_TIMEOUT_SECONDS", "1")]);
    running.ready(&reqwest::Client::new()).await;
    let (_stuck, _rest) = half_sent_request(&running.base).await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let signalled = std::time::Instant::now();
    running.terminate();
    let (status, stderr) = running.wait().await;
    let took = signalled.elapsed();
    assert!(status.success(), "exit status {status:?}\n{stderr}");
    assert!(
        took >= std::time::Duration::from_millis(900),
        "did not wait for the request: {took:?}"
    );
    assert!(took < std::time::Duration::from_secs(10), "took {took:?}");
    assert!(stderr.contains("SHUTDOWN_TIMEOUT_SECONDS"), "{stderr}");
}

/// A build without the npm step serves the CDN page, which never loads on a machine without
/// internet: the start-up log says which page this build serves.
#[tokio::test]
async fn the_binary_logs_which_graphiql_page_it_serves() {
    let running = Running::start();
    running.ready(&reqwest::Client::new()).await;
    let (_, stderr) = running.stop().await;
    let line = phone_auth::http::graphiql_page();
    assert!(
        line.starts_with("GraphiQL: offline bundles")
            || line.starts_with("GraphiQL: CDN page, needs internet"),
        "{line}"
    );
    assert!(stderr.contains(&line), "no {line:?} in:\n{stderr}");
}

/// Logs written to a pipe (a file, journald, `docker logs`) carry no ANSI colour codes.
#[tokio::test]
async fn the_binary_logs_without_colour_when_stderr_is_not_a_terminal() {
    let running = Running::start();
    running.ready(&reqwest::Client::new()).await;
    let (_, stderr) = running.stop().await;
    assert!(stderr.contains("listening on"), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "escape codes in:\n{stderr:?}");
}

/// The same logging setup does colour text when asked to (a terminal): the test above could
/// see escape codes if the binary chose colour for a pipe.
#[test]
fn text_logs_are_coloured_only_when_asked() {
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("capture").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    for colour in [true, false] {
        let capture = Capture::default();
        let sink = capture.clone();
        let filter = phone_auth::telemetry::filter(Some("info"), false);
        let subscriber =
            phone_auth::telemetry::subscriber(filter, false, colour, move || sink.clone());
        tracing::subscriber::with_default(subscriber, || tracing::info!("hello"));
        let written =
            String::from_utf8(capture.0.lock().expect("capture").clone()).expect("UTF-8 logs");
        assert!(written.contains("hello"), "{written}");
        assert_eq!(written.contains('\u{1b}'), colour, "{written:?}");
    }
}

/// A developer trying the flow from this machine is not stopped by production's per-IP limit
/// (10 codes an hour): the development binary lets its loopback clients past the per-IP
/// limits, over a real socket from 127.0.0.1.
#[tokio::test]
async fn the_binary_in_development_lets_its_loopback_developer_past_the_per_ip_limits() {
    let running = Running::start();
    let client = reqwest::Client::new();
    running.ready(&client).await;
    for n in 0..12 {
        let body = client
            .post(format!("{}/graphql", running.base))
            .json(&serde_json::json!({
                "query": "mutation($p: String!) { requestCode(phone: $p) { phone } }",
                // One number per range (the range breaker counts the last 4 digits out).
                "variables": { "p": format!("+79120{n:02}0000") },
            }))
            .send()
            .await
            .expect("request")
            .json::<serde_json::Value>()
            .await
            .expect("json");
        assert!(body.get("errors").is_none(), "request {n}: {body}");
    }
    let (status, _) = running.stop().await;
    assert!(status.success());
}

/// On PostgreSQL the migrator's `CREATE TABLE IF NOT EXISTS` makes the server send notices
/// (`relation "seaql_migrations" already exists, skipping`) that sqlx logs at `info`, where they
/// read like errors. They are kept out of the log; `LOG_SQL=true` (which lifts the caps on the
/// database logs) shows they are there to keep out.
#[tokio::test]
async fn the_binary_keeps_postgres_notices_out_of_the_log() {
    match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if url.starts_with("postgres") => {}
        // SQLite sends no notices.
        _ => return,
    }
    const NOTICE: &str = "already exists, skipping";
    for (log_sql, expect_notice) in [("false", false), ("true", true)] {
        let url = crate::helpers::fresh_database_url().await;
        let running = Running::start_with(&[("DATABASE_URL", &url), ("LOG_SQL", log_sql)]);
        running.ready(&reqwest::Client::new()).await;
        let (_, stderr) = running.stop().await;
        assert_eq!(
            stderr.contains(NOTICE),
            expect_notice,
            "LOG_SQL={log_sql}:\n{stderr}"
        );
    }
}

#[test]
fn socket_and_session_settings_have_contract_defaults_and_are_validated() {
    let c = config(&[]).expect("defaults are valid");
    assert_eq!(c.websocket.init_timeout.as_secs(), 10);
    assert_eq!(c.websocket.max_operations, 10);
    assert_eq!(c.websocket.max_connections_per_client, 20);
    assert_eq!(c.tokens.session_max_lifetime.as_secs(), 7_776_000);

    let c = config(&[
        ("WS_INIT_TIMEOUT_SECONDS", "3"),
        ("WS_MAX_OPERATIONS", "0"),
        ("WS_MAX_CONNECTIONS_PER_IP", "5"),
        ("SESSION_MAX_LIFETIME_SECONDS", "86400"),
    ])
    .expect("valid");
    assert_eq!(c.websocket.init_timeout.as_secs(), 3);
    assert_eq!(
        c.websocket.max_operations,
        usize::MAX,
        "0 turns the cap off"
    );
    assert_eq!(c.websocket.max_connections_per_client, 5);
    assert_eq!(c.tokens.session_max_lifetime.as_secs(), 86_400);

    for (name, value) in [
        ("WS_INIT_TIMEOUT_SECONDS", "0"),
        ("WS_MAX_OPERATIONS", "-1"),
        ("WS_MAX_CONNECTIONS_PER_IP", "many"),
        ("SESSION_MAX_LIFETIME_SECONDS", "0"),
    ] {
        let err = config(&[(name, value)]).expect_err(name);
        assert!(err.contains(name), "{err}");
    }
}

/// Every variable the configuration reads is documented in `.env.example` (with the default
/// configuration and with each SMS provider, whose settings are read only when chosen).
#[test]
fn every_variable_read_is_in_env_example() {
    let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.env.example"))
        .expect(".env.example is readable");
    let asked = std::sync::Mutex::new(std::collections::BTreeSet::new());
    for provider in ["console", "webhook", "twilio"] {
        let _ = Config::from_lookup(|key| {
            asked.lock().unwrap().insert(key.to_owned());
            match key {
                "SMS_PROVIDER" => Some(provider.to_owned()),
                "SMS_WEBHOOK_URL" | "TWILIO_BASE_URL" => Some("https://example.test/".to_owned()),
                "SMS_WEBHOOK_SECRET" | "TWILIO_AUTH_TOKEN" | "TWILIO_FROM" => Some("x".to_owned()),
                "TWILIO_ACCOUNT_SID" => Some("AC0".to_owned()),
                _ => None,
            }
        });
    }
    let missing: Vec<String> = asked
        .into_inner()
        .unwrap()
        .into_iter()
        .filter(|key| !example.contains(&format!("{key}=")))
        .collect();
    assert!(missing.is_empty(), "not in .env.example: {missing:?}");
}
