//! Load shedding on `/graphql`: at most `MAX_CONCURRENT_REQUESTS` GraphQL requests run at once;
//! one more is answered at once with 503, `Retry-After` and a contract error, instead of
//! queueing until every request's latency has grown past its timeout. `/healthz`, `/readyz`
//! and `/metrics` are not behind it: a balancer and a scraper still see a full server.

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::Response,
};

use super::{
    HttpState,
    graphql::{MediaType, json_response},
};
use crate::{error::code, gate::Admitted};

/// Seconds a shed client is told to wait: a full server usually has room again within one.
pub const RETRY_AFTER_SECONDS: u64 = 1;

/// Called first by the `/graphql` handlers (not as a middleware layer: axum's `from_fn` boxes
/// the request's future and clones the route's service on every request, about 15 allocations
/// on the hot path that `tests/allocations.rs` counts). The place is held until the handler's
/// future ends, body reading and execution included; `None` sheds the request.
pub fn admit(state: &HttpState) -> Option<Admitted> {
    state.app.gate.try_admit()
}

/// The answer to a shed request: 503, `Retry-After` and a contract error with its request id.
pub fn response(request_id: &str, media: MediaType) -> Response {
    metrics::counter!("http_requests_shed_total").increment(1);
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
    let mut response = json_response(StatusCode::SERVICE_UNAVAILABLE, media, &body);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
    response
}
