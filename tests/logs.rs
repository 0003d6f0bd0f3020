//! Secrets stay out of logs: no code, token or full phone number in any line, at any level
//! (the development SMS provider, whose job is to print the code, is not used here).
//!
//! A test binary of its own: the capture is the process-wide subscriber, so no other test's
//! logging can interfere with it.

#[path = "api/helpers.rs"]
mod helpers;

use std::{
    io::Write,
    sync::{Arc, Mutex},
};

use serde_json::json;
use tracing_subscriber::fmt::MakeWriter;

use helpers::{TestApp, assert_ok, phone, session_from};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("capture lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test]
async fn no_code_token_or_phone_reaches_the_logs_even_at_trace() {
    let capture = Capture::default();
    // The server's own logging setup, opened all the way to trace.
    let filter = phone_auth::telemetry::filter(Some("trace"), false);
    let subscriber = phone_auth::telemetry::subscriber(filter, false, false, capture.clone());
    tracing::subscriber::set_global_default(subscriber)
        .expect("the only subscriber of this binary");

    // 8-digit codes: a 4-digit one could turn up by chance inside a timestamp or an id.
    let app = TestApp::with_env(&[("OTP_LENGTH", "8")]).await;
    let mut secrets = Vec::new();
    // A wrong guess, a sign-in, a refresh, an invite, a logout.
    let code = app.code_for(&phone(1)).await;
    let wrong: String = code
        .chars()
        .map(|c| if c == '0' { '1' } else { '0' })
        .collect();
    app.verify(&phone(1), &wrong).await;
    let body = app.verify(&phone(1), &code).await;
    let a = session_from(&body["data"]["verifyCode"]).expect("signed in");
    // Phone 2 signs in step by step, so its code is known and checked too.
    let b_code = app.code_for(&phone(2)).await;
    let b = session_from(&app.verify(&phone(2), &b_code).await["data"]["verifyCode"])
        .expect("phone 2 signed in");
    assert_ok(&app.activate(&b, &a.invite_code).await);
    let refreshed = app
        .gql(
            "mutation($t: String!) { refreshToken(refreshToken: $t) { accessToken refreshToken user { id phone inviteCode } } }",
            json!({ "t": a.refresh_token }),
        )
        .await;
    let a2 = session_from(&refreshed["data"]["refreshToken"]).expect("refreshed");
    app.gql(
        "mutation($t: String!) { logout(refreshToken: $t) }",
        json!({ "t": b.refresh_token }),
    )
    .await;
    app.gql_as("forged.token.value", "{ me { id } }", json!({}))
        .await;
    app.settle().await;

    // Every secret of every request above: both codes and the wrong guess, every token
    // issued (the refresh's pair too), both phones in full, the signing secret.
    secrets.extend([code.clone(), b_code.clone(), wrong.clone()]);
    secrets.extend([
        a.access_token,
        a.refresh_token,
        b.access_token,
        b.refresh_token,
        phone(1),
        phone(2),
    ]);
    secrets.extend([a2.access_token, a2.refresh_token]);
    secrets.push("test-secret-test-secret-test-secret-0123456789".to_owned());

    let logs = String::from_utf8(capture.0.lock().expect("capture").clone()).expect("utf-8 logs");
    // The capture saw both sign-ins (phones appear masked), not just the first requests.
    for masked in ["+7912***0001", "+7912***0002"] {
        assert!(
            logs.contains(masked),
            "the capture works and {masked} appears masked:\n{logs}"
        );
    }
    for secret in &secrets {
        assert!(
            !logs.contains(secret.as_str()),
            "{secret} appears in the logs:\n{logs}"
        );
    }
    // And next to the words a log line would use.
    for secret_code in [&code, &b_code, &wrong] {
        for needle in [
            format!("code={secret_code}"),
            format!("code: {secret_code}"),
            format!("\"{secret_code}\""),
        ] {
            assert!(!logs.contains(&needle), "{needle} in logs");
        }
    }
}
