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
    assert!(c.otp_expose);
    assert_eq!(c.listen_addr.to_string(), "127.0.0.1:8000");
    assert!(c.database_url.starts_with("sqlite://phone-auth.db"));
    assert_eq!(c.otp_length, 4);
    assert_eq!(c.otp_ttl.as_secs(), 300);
    assert_eq!(c.otp_max_attempts, 5);
    assert_eq!(c.otp_resend_cooldown.as_secs(), 60);
    assert_eq!(c.sms_delay.as_millis(), 1000);
    assert_eq!(c.default_region.code(), "RU");
    assert_eq!(c.access_token_ttl.as_secs(), 900);
    assert_eq!(c.refresh_token_ttl.as_secs(), 2_592_000);
    assert_eq!(c.graphql.max_body_bytes, 65536);
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
    assert!(!c.otp_expose);
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

/// The real binary: starts on a fresh SQLite file, migrates, answers, and on SIGTERM finishes
/// and exits cleanly.
#[tokio::test]
async fn the_binary_serves_and_shuts_down_gracefully_on_sigterm() {
    let dir =
        std::env::temp_dir().join(format!("phone-auth-run-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let port = free_port();
    let started = std::time::Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_phone-auth"))
        .current_dir(&dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("SMS_DELAY_MS", "0")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the binary starts");
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    // Deadlines, not budgets: a loaded 2-core machine may take seconds to start a debug build.
    let mut ready = false;
    for _ in 0..3000 {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await {
            if r.status().is_success() {
                ready = true;
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(ready, "not ready within 30 s");
    eprintln!("start to /readyz: {} ms", started.elapsed().as_millis());
    assert!(
        dir.join("phone-auth.db").exists(),
        "the default database is a file in the working directory"
    );

    let body = client
        .post(format!("{base}/graphql"))
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

    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    let mut exited = None;
    for _ in 0..3000 {
        if let Some(status) = child.try_wait().expect("wait") {
            exited = Some(status);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let status = exited.unwrap_or_else(|| {
        let _ = child.kill();
        panic!("did not stop within 30 s of SIGTERM")
    });
    assert!(status.success(), "exit status {status:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
