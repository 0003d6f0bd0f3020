//! A request id on every response (`x-request-id`) and in every log line of the request.
//! A client's own id is kept when it is well-formed, so logs on both sides line up.

use axum::{extract::Request, http::HeaderValue, middleware::Next, response::Response};
use tracing::Instrument;

pub const HEADER: &str = "x-request-id";

#[derive(Clone, Debug)]
pub struct RequestId(pub String);

fn well_formed(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

pub async fn middleware(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|id| well_formed(id))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    req.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path());
    let mut response = if crate::otel::on() {
        // The exported span around the log span: the client's trace continued, renamed by the
        // operation later.
        let traced =
            crate::otel::request_span(&id, req.method().as_str(), req.uri().path(), req.headers());
        let response = next
            .run(req)
            .instrument(span)
            .instrument(traced.clone())
            .await;
        crate::otel::record_status(&traced, response.status());
        response
    } else {
        next.run(req).instrument(span).await
    };
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HEADER, value);
    }
    response
}
