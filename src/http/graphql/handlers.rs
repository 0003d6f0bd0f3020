//! The `/graphql` handlers. Both start the same way (request id, media type, then load
//! shedding, which a POST takes only once its body has arrived) and end the same way, through
//! [`execute`]: the per-request context, execution under `REQUEST_TIMEOUT_MS`, and the shaped
//! response. Only what differs sits in each handler: a POST's body (415, 413, 408, batches), a
//! GET's WebSocket upgrade, GraphiQL page and "no mutation over GET" rule (405).

use async_graphql::{BatchRequest, BatchResponse, Executor, parser::types::OperationType};
use axum::{
    body::Bytes,
    extract::State,
    http::{StatusCode, header, request::Parts},
    response::Response,
};
use http_body_util::BodyExt;

use super::{
    context::{client_ip, request_id_of, with_context},
    negotiate::{MediaType, check_batch, is_json_body, parse_body, parse_query_string},
    respond::{request_error, respond, timed_out},
};
use crate::{
    graphql::operation::operation_type,
    http::{HttpState, RequestId, graphiql, shed, websocket},
};

/// How long a POST body may take to arrive: the request's time limit (`REQUEST_TIMEOUT_MS`), at
/// most a minute (also when that limit is off).
fn body_timeout(state: &HttpState) -> std::time::Duration {
    state
        .app
        .config
        .graphql
        .request_timeout
        .min(std::time::Duration::from_secs(60))
}

pub async fn post(State(state): State<HttpState>, req: axum::extract::Request) -> Response {
    let (parts, body) = req.into_parts();
    let request_id = request_id_of(&parts);
    let rid = request_id.0.as_str();
    let media = MediaType::negotiate(&parts.headers);

    if !is_json_body(&parts.headers) {
        return request_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            media,
            "Send the request as Content-Type: application/json (UTF-8).",
            rid,
        );
    }

    // The body must arrive within the request's time limit, and only then does the request
    // take one of the MAX_CONCURRENT_REQUESTS places: a client trickling bodies in (slowloris)
    // holds its own connections, not the places every other client needs.
    let limit = state.app.config.graphql.max_body_bytes;
    let arriving = http_body_util::Limited::new(body, limit).collect();
    let bytes: Bytes = match tokio::time::timeout(body_timeout(&state), arriving).await {
        Err(_) => {
            return request_error(
                StatusCode::REQUEST_TIMEOUT,
                media,
                "The request body did not arrive in time.",
                rid,
            );
        }
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(_)) => {
            return request_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                media,
                &format!("The request body is larger than {limit} bytes."),
                rid,
            );
        }
    };
    let Some(_admitted) = shed::admit(&state) else {
        return shed::response(rid, media);
    };
    let batch = match parse_body(&bytes) {
        Ok(batch) => batch,
        Err(message) => return request_error(StatusCode::BAD_REQUEST, media, &message, rid),
    };
    if let Err(message) = check_batch(&batch, state.app.config.graphql.max_batch) {
        return request_error(StatusCode::BAD_REQUEST, media, &message, rid);
    }
    execute(&state, &parts, &request_id, media, batch).await
}

pub async fn get(State(state): State<HttpState>, req: axum::extract::Request) -> Response {
    let (parts, _body) = req.into_parts();
    let request_id = request_id_of(&parts);
    let rid = request_id.0.as_str();
    let media = MediaType::negotiate(&parts.headers);
    let Some(_admitted) = shed::admit(&state) else {
        return shed::response(rid, media);
    };

    // A WebSocket upgrade is a subscription connection.
    if parts.headers.get(header::UPGRADE).is_some() {
        let ip = client_ip(&state, &parts);
        return websocket::upgrade(state, parts, ip, request_id).await;
    }

    let accepts_html = parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    if parts.uri.query().unwrap_or("").is_empty() && accepts_html {
        return graphiql::page().await;
    }
    let mut request = match parse_query_string(&parts) {
        Ok(request) => request,
        Err(message) => return request_error(StatusCode::BAD_REQUEST, media, &message, rid),
    };
    // A persisted operation's hash becomes its document first: the mutation check reads it.
    if let Err(error) = state.executor.persisted().resolve(&mut request) {
        let refused = async_graphql::Response::from_errors(vec![error]);
        return respond(BatchResponse::Single(refused), media, rid);
    }
    // GET must never change state: refuse mutations (and subscriptions) before executing.
    if let Some(kind) = operation_type(&mut request)
        && kind != OperationType::Query
    {
        return request_error(
            StatusCode::METHOD_NOT_ALLOWED,
            media,
            "Mutations and subscriptions must be sent with POST.",
            rid,
        );
    }
    execute(
        &state,
        &parts,
        &request_id,
        media,
        BatchRequest::Single(request),
    )
    .await
}

/// The one way a GraphQL request over HTTP runs: its context added, executed within
/// `REQUEST_TIMEOUT_MS` (503 past it; dropping the future rolls back any open transaction),
/// and answered as [`respond`] shapes it.
async fn execute(
    state: &HttpState,
    parts: &Parts,
    request_id: &RequestId,
    media: MediaType,
    batch: BatchRequest,
) -> Response {
    let rid = request_id.0.as_str();
    // Each operation of a batch gets its own data (and loaders: no cache shared between them).
    let batch = with_context(batch, state, parts, request_id);
    let timeout = state.app.config.graphql.request_timeout;
    let Ok(response) = tokio::time::timeout(timeout, state.executor.execute_batch(batch)).await
    else {
        return timed_out(media, rid);
    };
    respond(response, media, rid)
}
