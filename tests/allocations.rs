//! Heap allocations per authenticated read (`me`) through the real router: a guard, not a
//! timing, for the hot path's savings (docs/performance.md). A parsed document is reused by its
//! text, a verified access token by its bytes, and `me`'s read is a constant statement; undoing
//! any of them costs dozens of allocations per request, which the bound below does not allow.
//!
//! A test binary of its own: the counting allocator is process-wide.

#[path = "api/helpers.rs"]
mod helpers;

use std::alloc::System;

use axum::{
    body::Body,
    http::{Request, StatusCode, header},
};
use http_body_util::BodyExt;
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};
use tower::ServiceExt;

use helpers::{TestApp, phone};

/// Counts every allocation and reallocation of the process (all threads: SQLite's connection
/// threads work for the request too).
#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn allocations() -> usize {
    let stats = GLOBAL.stats();
    stats.allocations + stats.reallocations
}

/// Allocations of one `me` request with a valid token, from building the request to reading
/// the whole body. Measured at 166 on SQLite (debug build, no log subscriber) with every
/// saving in place; parsing the document per request instead adds about 26, checking the token
/// in full every time about 14, building the statement through sea-query about 30.
const MAX_ALLOCATIONS_PER_ME: usize = 172;

async fn me_allocations(app: &TestApp, token: &str) -> usize {
    let request = Request::post("/graphql")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::from(r#"{"query":"{ me { id phone inviteCode } }"}"#))
        .expect("request builds");
    let before = allocations();
    let response = app
        .router
        .clone()
        .oneshot(request)
        .await
        .expect("the router answers");
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let allocations = allocations() - before;
    assert_eq!(status, StatusCode::OK);
    let body: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert!(body["data"]["me"]["id"].is_string(), "{body}");
    allocations
}

#[tokio::test]
async fn an_authenticated_read_stays_within_its_allocation_budget() {
    let app = TestApp::spawn().await;
    let session = app.sign_in(&phone(1)).await;
    // The first requests fill the caches (document, token, statement) and the pool.
    for _ in 0..3 {
        me_allocations(&app, &session.access_token).await;
    }
    // The fewest of several: a background task (the outbox worker's poll) may run in between.
    let mut fewest = usize::MAX;
    for _ in 0..20 {
        fewest = fewest.min(me_allocations(&app, &session.access_token).await);
    }
    println!("allocations per me request: {fewest}");
    assert!(
        fewest <= MAX_ALLOCATIONS_PER_ME,
        "one me request allocated {fewest} times; the budget is {MAX_ALLOCATIONS_PER_ME} \
         (docs/performance.md: the hot path)"
    );
}
