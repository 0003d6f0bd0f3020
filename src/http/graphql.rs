//! `/graphql` over HTTP: POST (JSON, single or batched), GET (queries only), WebSocket
//! subscriptions (graphql-transport-ws), and GraphiQL for browsers.

use std::net::{IpAddr, SocketAddr};

use async_graphql::{
    BatchRequest, BatchResponse, Data, Request, ServerError,
    http::{ALL_WEBSOCKET_PROTOCOLS, GraphiQLSource},
    parser::types::OperationType,
};
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::{
    body::{Body, Bytes},
    extract::{ConnectInfo, FromRequestParts, State, WebSocketUpgrade},
    http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts},
    response::{Html, IntoResponse, Response},
};
use http_body_util::BodyExt;

use super::{HttpState, RequestId};
use crate::{
    error::{AppError, code},
    graphql::{
        loaders::Loaders,
        viewer::{ClientIp, Viewer},
    },
};

const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";

/// The client's address: the socket's peer, or the last `X-Forwarded-For` hop (the address
/// the trusted proxy itself saw) when `TRUST_PROXY_HEADERS` is on.
fn client_ip(state: &HttpState, parts: &Parts) -> ClientIp {
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

pub async fn graphiql() -> Html<String> {
    Html(
        GraphiQLSource::build()
            .endpoint("/graphql")
            .subscription_endpoint("/graphql")
            .finish(),
    )
}

/// A GraphQL error response for failures before execution (bad transport, unparsable body).
fn request_error(status: StatusCode, message: &str, request_id: &str) -> Response {
    let body = serde_json::json!({
        "errors": [{
            "message": message,
            "extensions": { "code": code::BAD_USER_INPUT, "requestId": request_id },
        }]
    });
    let mut response = (status, axum::Json(body)).into_response();
    if status == StatusCode::METHOD_NOT_ALLOWED {
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
    }
    response
}

/// The request ran past `REQUEST_TIMEOUT_MS`; dropping its future rolled back any open
/// transaction.
fn timed_out(request_id: &str) -> Response {
    tracing::warn!(request_id, "request timed out");
    let body = serde_json::json!({
        "errors": [{
            "message": "The request took too long.",
            "extensions": { "code": code::INTERNAL_SERVER_ERROR, "requestId": request_id },
        }]
    });
    (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
}

fn wants_graphql_response_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains(GRAPHQL_RESPONSE_JSON))
}

/// A JSON object is one request, a JSON array a batch; anything else, or a request without
/// a query, is not a GraphQL request. (serde would also read a struct from an array, so the
/// shape is decided by the first byte, not by trying both.)
fn parse_body(bytes: &[u8]) -> Option<BatchRequest> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace())?;
    let batch = match first {
        b'{' => BatchRequest::Single(serde_json::from_slice(bytes).ok()?),
        b'[' => BatchRequest::Batch(serde_json::from_slice(bytes).ok()?),
        _ => return None,
    };
    let has_queries = match &batch {
        BatchRequest::Single(request) => !request.query.trim().is_empty(),
        BatchRequest::Batch(requests) => requests.iter().all(|r| !r.query.trim().is_empty()),
    };
    has_queries.then_some(batch)
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
    request
        .data(Viewer::from_authorization(&state.app, authorization))
        .data(Loaders::new(&state.app.db))
        .data(ip)
        .data(request_id.clone())
}

pub async fn post(State(state): State<HttpState>, req: axum::extract::Request) -> Response {
    let (parts, body) = req.into_parts();
    let request_id = parts
        .extensions
        .get::<RequestId>()
        .cloned()
        .unwrap_or(RequestId(String::new()));
    let rid = request_id.0.as_str();

    // Only JSON: a browser can send text/plain, form and multipart bodies cross-site without a
    // CORS preflight, so accepting them would let any web page post here as its visitors.
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence != "application/json" && essence != GRAPHQL_RESPONSE_JSON {
        return request_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Send the request as Content-Type: application/json.",
            rid,
        );
    }

    let limit = state.app.config.graphql.max_body_bytes;
    let bytes: Bytes = match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return request_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("The request body is larger than {limit} bytes."),
                rid,
            );
        }
    };
    let Some(batch) = parse_body(&bytes) else {
        return request_error(
            StatusCode::BAD_REQUEST,
            "The body is not a GraphQL request in JSON.",
            rid,
        );
    };
    if let BatchRequest::Batch(requests) = &batch {
        let max = state.app.config.graphql.max_batch;
        if max == 0 {
            return request_error(
                StatusCode::BAD_REQUEST,
                "Batched requests are turned off.",
                rid,
            );
        }
        if requests.is_empty() || requests.len() > max {
            return request_error(
                StatusCode::BAD_REQUEST,
                &format!("A batch holds between 1 and {max} operations."),
                rid,
            );
        }
    }

    // Each operation of a batch gets its own data (and loaders: no cache shared between them).
    let ip = client_ip(&state, &parts);
    let with_data =
        |request: Request| with_request_data(request, &state, &parts.headers, ip, &request_id);
    let batch = match batch {
        BatchRequest::Single(request) => BatchRequest::Single(with_data(request)),
        BatchRequest::Batch(requests) => {
            BatchRequest::Batch(requests.into_iter().map(with_data).collect())
        }
    };
    let timeout = state.app.config.graphql.request_timeout;
    let Ok(response) = tokio::time::timeout(timeout, state.schema.execute_batch(batch)).await
    else {
        return timed_out(rid);
    };
    respond(response, wants_graphql_response_json(&parts.headers), rid)
}

pub async fn get(State(state): State<HttpState>, req: axum::extract::Request) -> Response {
    let (mut parts, _body) = req.into_parts();
    let request_id = parts
        .extensions
        .get::<RequestId>()
        .cloned()
        .unwrap_or(RequestId(String::new()));
    let rid = request_id.0.as_str();

    // A WebSocket upgrade is a subscription connection.
    if parts.headers.get(header::UPGRADE).is_some() {
        let protocol = GraphQLProtocol::from_request_parts(&mut parts, &state).await;
        let upgrade = WebSocketUpgrade::from_request_parts(&mut parts, &state).await;
        return match (protocol, upgrade) {
            (Ok(protocol), Ok(upgrade)) => subscribe(state, protocol, upgrade),
            _ => request_error(
                StatusCode::BAD_REQUEST,
                "Not a GraphQL WebSocket handshake.",
                rid,
            ),
        };
    }

    let query = parts.uri.query().unwrap_or("");
    let accepts_html = parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    if query.is_empty() && accepts_html {
        return graphiql().await.into_response();
    }
    let request: Request = match async_graphql::http::parse_query_string(query) {
        Ok(request) => request,
        Err(_) => {
            return request_error(
                StatusCode::BAD_REQUEST,
                "The query string is not a GraphQL request.",
                rid,
            );
        }
    };
    // GET must never change state: refuse mutations (and subscriptions) before executing.
    if let Some(kind) = operation_type(&request) {
        if kind != OperationType::Query {
            return request_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "Mutations and subscriptions must be sent with POST.",
                rid,
            );
        }
    }
    let ip = client_ip(&state, &parts);
    let request = with_request_data(request, &state, &parts.headers, ip, &request_id);
    let timeout = state.app.config.graphql.request_timeout;
    let Ok(response) = tokio::time::timeout(timeout, state.schema.execute(request)).await else {
        return timed_out(rid);
    };
    respond(
        BatchResponse::Single(response),
        wants_graphql_response_json(&parts.headers),
        rid,
    )
}

/// The type of the operation a request would run, when the document parses.
fn operation_type(request: &Request) -> Option<OperationType> {
    use async_graphql::parser::types::DocumentOperations;
    let doc = async_graphql::parser::parse_query(&request.query).ok()?;
    match (&doc.operations, request.operation_name.as_deref()) {
        (DocumentOperations::Single(op), _) => Some(op.node.ty),
        (DocumentOperations::Multiple(ops), Some(name)) => ops
            .iter()
            .find(|(n, _)| n.as_str() == name)
            .map(|(_, op)| op.node.ty),
        (DocumentOperations::Multiple(ops), None) => {
            // Without a name the request is invalid anyway; refuse if any operation writes.
            if ops.values().any(|op| op.node.ty != OperationType::Query) {
                Some(OperationType::Mutation)
            } else {
                Some(OperationType::Query)
            }
        }
    }
}

fn subscribe(state: HttpState, protocol: GraphQLProtocol, upgrade: WebSocketUpgrade) -> Response {
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| {
            let app = state.app.clone();
            GraphQLWebSocket::new(socket, state.schema.clone(), protocol)
                .on_connection_init(move |payload| async move {
                    let authorization = payload
                        .get("Authorization")
                        .or_else(|| payload.get("authorization"))
                        .and_then(|v| v.as_str());
                    let mut data = Data::default();
                    data.insert(Viewer::from_authorization(&app, authorization));
                    data.insert(Loaders::new(&app.db));
                    Ok(data)
                })
                .serve()
        })
        .into_response()
}

/// Serialises the response, logging unexpected errors once (with the request id) and making
/// sure every error carries an `extensions.code`.
fn respond(mut response: BatchResponse, graphql_response_json: bool, request_id: &str) -> Response {
    let mut failed_before_execution = false;
    for single in batch_iter_mut(&mut response) {
        if single.data == async_graphql::Value::Null && !single.errors.is_empty() {
            failed_before_execution = true;
        }
        for error in &mut single.errors {
            annotate(error, request_id);
        }
    }
    let body = match serde_json::to_vec(&response) {
        Ok(body) => body,
        Err(err) => {
            tracing::error!(error = %err, "serialising a GraphQL response failed");
            return request_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong on our side.",
                request_id,
            );
        }
    };
    // GraphQL over HTTP: with the newer media type, a request that could not be executed
    // answers 400; with application/json, always 200.
    let (status, content_type) = if graphql_response_json {
        let status = if failed_before_execution && matches!(response, BatchResponse::Single(_)) {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::OK
        };
        (status, GRAPHQL_RESPONSE_JSON)
    } else {
        (StatusCode::OK, "application/json")
    };
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn batch_iter_mut(response: &mut BatchResponse) -> Vec<&mut async_graphql::Response> {
    match response {
        BatchResponse::Single(single) => vec![single],
        BatchResponse::Batch(many) => many.iter_mut().collect(),
    }
}

fn annotate(error: &mut ServerError, request_id: &str) {
    let app_error = error.source::<AppError>();
    let is_internal = matches!(app_error, Some(AppError::Internal(_)));
    if let Some(AppError::Internal(cause)) = app_error {
        tracing::error!(request_id, error = ?cause, "internal error");
    }
    let extensions = error.extensions.get_or_insert_with(Default::default);
    if is_internal {
        extensions.set("requestId", request_id);
    }
    if extensions.get("code").is_none() {
        // Errors the GraphQL engine raises itself (parse, validation, limits) are the client's.
        extensions.set("code", code::BAD_USER_INPUT);
    }
}
