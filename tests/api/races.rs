//! Races through the real router on a database several connections share: a SQLite file with
//! the production pool (the in-memory database has one connection and would serialise every
//! request, so a race there proves nothing) or PostgreSQL. Each test fires concurrent requests
//! that only one may win and checks what every one of them answered.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_code, assert_ok, error_code, phone, session_from};

const RACERS: usize = 12;

/// Runs `RACERS` copies of `request` at once and returns every answer.
async fn race<F, Fut>(app: &Arc<TestApp>, request: F) -> Vec<Value>
where
    F: Fn(Arc<TestApp>) -> Fut,
    Fut: std::future::Future<Output = Value> + Send + 'static,
{
    let barrier = Arc::new(tokio::sync::Barrier::new(RACERS));
    let tasks: Vec<_> = (0..RACERS)
        .map(|_| {
            let barrier = barrier.clone();
            let call = request(app.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                call.await
            })
        })
        .collect();
    let mut answers = Vec::with_capacity(RACERS);
    for task in tasks {
        answers.push(task.await.expect("the request task ends"));
    }
    answers
}

fn refresh_query(token: &str) -> (String, Value) {
    (
        "mutation($t: String!) { refreshToken(refreshToken: $t) { accessToken refreshToken user { id phone inviteCode } } }"
            .to_owned(),
        json!({ "t": token }),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refreshes_of_one_token_rotate_it_exactly_once() {
    let app = Arc::new(TestApp::for_races(&[]).await);
    let session = app.sign_in(&phone(1)).await;
    let token = session.refresh_token.clone();
    let answers = race(&app, |app| {
        let (query, variables) = refresh_query(&token);
        async move { app.gql(&query, variables).await }
    })
    .await;

    let mut winners = Vec::new();
    for body in &answers {
        match session_from(&body["data"]["refreshToken"]) {
            Some(next) => winners.push(next),
            None => assert_eq!(
                error_code(body).as_deref(),
                Some("UNAUTHENTICATED"),
                "a loser is refused as a reused token, nothing else: {body}"
            ),
        }
    }
    assert_eq!(winners.len(), 1, "{answers:#?}");
    assert_eq!(winners[0].user_id, session.user_id);
    // Every loser presented a token that had just been rotated: that is reuse, so the sign-in
    // (the winner's new refresh token included) is revoked.
    let (query, variables) = refresh_query(&winners[0].refresh_token);
    assert_code(&app.gql(&query, variables).await, "UNAUTHENTICATED");
    let (query, variables) = refresh_query(&token);
    assert_code(&app.gql(&query, variables).await, "UNAUTHENTICATED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_code_requests_for_one_phone_send_one_code() {
    let app = Arc::new(TestApp::for_races(&[]).await);
    let answers = race(&app, |app| async move { app.request_code(&phone(1)).await }).await;

    let mut codes = Vec::new();
    for body in &answers {
        match body["data"]["requestCode"]["devCode"].as_str() {
            Some(code) => codes.push(code.to_owned()),
            None => {
                assert_code(body, "RATE_LIMITED");
                // The cooldown of the winner's code, not some other refusal.
                let retry = body["errors"][0]["extensions"]["retryAfter"].as_u64();
                assert_eq!(retry, Some(60), "{body}");
            }
        }
    }
    assert_eq!(codes.len(), 1, "{answers:#?}");
    app.settle().await;
    assert_eq!(app.sms.messages().len(), 1);
    // The one code that was issued is the one that works.
    assert_ok(&app.verify(&phone(1), &codes[0]).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_code_requests_take_the_last_slot_of_a_cap_once() {
    let app = Arc::new(TestApp::for_races(&[("SMS_GLOBAL_PER_MINUTE", "3")]).await);
    assert_ok(&app.request_code(&phone(100)).await);
    assert_ok(&app.request_code(&phone(101)).await);
    // One slot left; twelve different phones ask for it at once.
    let next = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let answers = race(&app, |app| {
        let n = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async move { app.request_code(&phone(n)).await }
    })
    .await;

    let mut sent = 0;
    for body in &answers {
        if body["data"]["requestCode"]["devCode"].is_string() {
            sent += 1;
        } else {
            assert_code(body, "RATE_LIMITED");
            assert_eq!(
                body["errors"][0]["extensions"]["retryAfter"].as_u64(),
                Some(60),
                "{body}"
            );
        }
    }
    assert_eq!(sent, 1, "{answers:#?}");
    app.settle().await;
    assert_eq!(app.sms.messages().len(), 3);
}
