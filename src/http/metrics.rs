//! `/metrics` (Prometheus text format) and the middleware that counts HTTP requests.

use std::time::Instant;

use axum::{
    extract::{MatchedPath, Request, State},
    http::header,
    middleware::Next,
    response::{IntoResponse, Response},
};

use super::HttpState;

pub async fn render(State(state): State<HttpState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::render(&state.app.db),
    )
        .into_response()
}

/// The routes as metric labels: `'static` for the fixed ones (no allocation per request).
fn route_label(path: &str) -> std::borrow::Cow<'static, str> {
    const ROUTES: &[&str] = &["/graphql", "/", "/healthz", "/readyz", "/metrics"];
    ROUTES
        .iter()
        .find(|route| **route == path)
        .map_or_else(|| path.to_owned().into(), |route| (*route).into())
}

/// Counts and times each request by matched route and status (never by raw path, whose
/// values are unbounded).
pub async fn track(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".into(), |path| route_label(path.as_str()));
    let started = Instant::now();
    let response = next.run(req).await;
    crate::metrics::http_request(
        route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}
