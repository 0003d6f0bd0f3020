//! Load shedding on `/graphql`: at most `MAX_CONCURRENT_REQUESTS` GraphQL requests run at once;
//! one more is answered at once with 503, `Retry-After` and a contract error, instead of
//! queueing until every request's latency has grown past its timeout. `/healthz`, `/readyz`
//! and `/metrics` are not behind it: a balancer and a scraper still see a full server.

use axum::{
    extract::{Request, State},
    http::{HeaderValue, StatusCode, header},
    middleware::Next,
    response::Response,
};

use super::{
    HttpState, RequestId,
    graphql::{MediaType, json_response},
};
use crate::error::code;

/// Seconds a shed client is told to wait: a full server usually has room again within one.
pub const RETRY_AFTER_SECONDS: u64 = 1;

pub async fn limit(State(state): State<HttpState>, req: Request, next: Next) -> Response {
    let Some(admitted) = state.app.gate.try_admit() else {
        return shed(&req);
    };
    let response = next.run(req).await;
    drop(admitted);
    response
}

fn shed(req: &Request) -> Response {
    metrics::counter!("http_requests_shed_total").increment(1);
    let request_id = req
        .extensions()
        .get::<RequestId>()
        .map(|id| id.0.as_str())
        .unwrap_or_default();
    tracing::debug!(
        request_id,
        "shed: MAX_CONCURRENT_REQUESTS requests in flight"
    );
    let body = serde_json::json!({
        "errors": [{
            "message": "The server is busy; retry in a moment.",
            "extensions": {
                "code": code::INTERNAL_SERVER_ERROR,
                "requestId": request_id,
                "retryAfter": RETRY_AFTER_SECONDS,
            },
        }]
    });
    let mut response = json_response(
        StatusCode::SERVICE_UNAVAILABLE,
        MediaType::negotiate(req.headers()),
        &body,
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
    response
}
