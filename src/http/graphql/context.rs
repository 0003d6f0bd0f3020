//! The per-request context every resolver may read: the viewer (from `Authorization`), the
//! client's address, the request id and the user agent, put into each `async_graphql::Request`
//! as data. Each operation of a batch gets its own (and, in the executor, its own loaders).

use std::net::{IpAddr, SocketAddr};

use async_graphql::{BatchRequest, Request};
use axum::{
    extract::ConnectInfo,
    http::{HeaderMap, header, request::Parts},
};

use crate::{
    graphql::viewer::{ClientIp, UserAgent, Viewer},
    http::{HttpState, RequestId},
};

/// The client's address: the socket's peer, or the last `X-Forwarded-For` hop (the address
/// the trusted proxy itself saw) when `TRUST_PROXY_HEADERS` is on.
pub(super) fn client_ip(state: &HttpState, parts: &Parts) -> ClientIp {
    if state.app.config.trust_proxy_headers {
        // Only the very last hop: everything before it came from the client and can be forged.
        // A last hop that is not an address means the header is not what the proxy wrote.
        let forwarded = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|hop| hop.trim().parse::<IpAddr>().ok());
        if let Some(ip) = forwarded {
            return ClientIp(ip);
        }
    }
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    ClientIp(peer)
}

/// The batch with every operation's request data added; a batch's operations are marked so
/// the request span is named `batch` rather than after one of them.
pub(super) fn with_context(
    batch: BatchRequest,
    state: &HttpState,
    parts: &Parts,
    request_id: &RequestId,
) -> BatchRequest {
    let ip = client_ip(state, parts);
    let with_data =
        |request: Request| with_request_data(request, state, &parts.headers, ip, request_id);
    match batch {
        BatchRequest::Single(request) => BatchRequest::Single(with_data(request)),
        BatchRequest::Batch(requests) if crate::otel::on() => {
            crate::otel::name_batch(requests.len());
            let marked = |request: Request| with_data(request).data(crate::otel::Batched);
            BatchRequest::Batch(requests.into_iter().map(marked).collect())
        }
        BatchRequest::Batch(requests) => {
            BatchRequest::Batch(requests.into_iter().map(with_data).collect())
        }
    }
}

/// Adds the per-request data every resolver may read.
fn with_request_data(
    request: Request,
    state: &HttpState,
    headers: &HeaderMap,
    ip: ClientIp,
    request_id: &RequestId,
) -> Request {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    request
        .data(Viewer::from_authorization(&state.app, authorization))
        .data(ip)
        .data(request_id.clone())
        .data(UserAgent(user_agent))
}

/// The id the request-id middleware gave this request.
pub(super) fn request_id_of(parts: &Parts) -> RequestId {
    parts
        .extensions
        .get::<RequestId>()
        .cloned()
        .unwrap_or(RequestId(String::new()))
}
