//! `/graphql` over HTTP: POST (JSON, single or batched), GET (queries only), and GraphiQL for
//! browsers. A WebSocket upgrade goes to `websocket` (subscriptions only).

use std::net::{IpAddr, SocketAddr};

use async_graphql::{
    BatchRequest, BatchResponse, Executor, Request, ServerError, parser::types::OperationType,
};
use axum::{
    body::{Body, Bytes},
    extract::{ConnectInfo, Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};
use http_body_util::BodyExt;
use serde_json::{Map, Value as Json};

use super::{HttpState, RequestId, graphiql, shed, websocket};
use crate::{
    error::{AppError, code},
    graphql::{
        operation::operation_type,
        viewer::{ClientIp, UserAgent, Viewer},
    },
};

const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";

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

/// The media type of a response, chosen from the request's `Accept` header (GraphQL over HTTP,
/// "Accept"): `application/graphql-response+json` when the client prefers it, `application/json`
/// otherwise — for `*/*`, for no header at all, and for types we cannot produce (the spec lets a
/// server answer those with 406, but plenty of legacy clients send odd headers and read JSON).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum MediaType {
    Json,
    GraphqlResponseJson,
}

impl MediaType {
    pub(super) fn negotiate(headers: &HeaderMap) -> Self {
        let mut best: Option<(MediaType, f32)> = None;
        let ranges = headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','));
        for range in ranges {
            let mut params = range.split(';');
            let essence = params.next().unwrap_or("").trim().to_ascii_lowercase();
            let media = match essence.as_str() {
                GRAPHQL_RESPONSE_JSON => MediaType::GraphqlResponseJson,
                "application/json" | "application/*" | "*/*" => MediaType::Json,
                _ => continue,
            };
            // No `q` means 1; an unreadable one counts as 0 (RFC 9110 allows ignoring it).
            let q = params
                .filter_map(|p| p.split_once('='))
                .find(|(name, _)| name.trim().eq_ignore_ascii_case("q"))
                .map_or(1.0, |(_, value)| value.trim().parse::<f32>().unwrap_or(0.0));
            // Strictly greater: among equal weights the first listed wins.
            if q > 0.0 && best.is_none_or(|(_, best_q)| q > best_q) {
                best = Some((media, q));
            }
        }
        best.map_or(MediaType::Json, |(media, _)| media)
    }

    fn as_str(self) -> &'static str {
        match self {
            MediaType::Json => "application/json",
            MediaType::GraphqlResponseJson => GRAPHQL_RESPONSE_JSON,
        }
    }
}

pub(super) fn json_response(
    status: StatusCode,
    media: MediaType,
    body: &impl serde::Serialize,
) -> Response {
    let bytes = match serde_json::to_vec(body) {
        Ok(bytes) => bytes,
        Err(err) => {
            tracing::error!(error = %err, "serialising a GraphQL response failed");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, media.as_str())
        .body(Body::from(bytes))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// A GraphQL error response for failures before execution (bad transport, unparsable body):
/// no `data` entry, as the spec asks of a request that was never executed.
pub(super) fn request_error(
    status: StatusCode,
    media: MediaType,
    message: &str,
    request_id: &str,
) -> Response {
    if crate::otel::on() {
        crate::otel::record_error_codes([code::BAD_USER_INPUT]);
    }
    let body = serde_json::json!({
        "errors": [{
            "message": message,
            "extensions": { "code": code::BAD_USER_INPUT, "requestId": request_id },
        }]
    });
    let mut response = json_response(status, media, &body);
    if status == StatusCode::METHOD_NOT_ALLOWED {
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
    }
    response
}

/// The request ran past `REQUEST_TIMEOUT_MS`; dropping its future rolled back any open
/// transaction.
fn timed_out(media: MediaType, request_id: &str) -> Response {
    tracing::warn!(request_id, "request timed out");
    if crate::otel::on() {
        crate::otel::record_error_codes([code::INTERNAL_SERVER_ERROR]);
    }
    let body = serde_json::json!({
        "errors": [{
            "message": "The request took too long.",
            "extensions": { "code": code::INTERNAL_SERVER_ERROR, "requestId": request_id },
        }]
    });
    json_response(StatusCode::SERVICE_UNAVAILABLE, media, &body)
}

/// Only JSON bodies, in UTF-8 (the only encoding the spec allows): a browser can send
/// text/plain, form and multipart bodies cross-site without a CORS preflight, so accepting them
/// would let any web page post here as its visitors.
fn is_json_body(headers: &HeaderMap) -> bool {
    let Some(content_type) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let mut parts = content_type.split(';');
    let essence = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    if essence != "application/json" && essence != GRAPHQL_RESPONSE_JSON {
        return false;
    }
    parts
        .filter_map(|p| p.split_once('='))
        .filter(|(name, _)| name.trim().eq_ignore_ascii_case("charset"))
        .all(|(_, value)| value.trim().trim_matches('"').eq_ignore_ascii_case("utf-8"))
}

/// One GraphQL request from its JSON form, checked the way GraphQL over HTTP describes the
/// parameters: `query` a non-empty string; `operationName` a string or null; `variables` and
/// `extensions` maps or null. Anything else is the client's mistake, answered 400 with the
/// returned sentence. (serde alone would refuse `null` maps and accept some wrong shapes.)
fn request_from_json(value: Json) -> Result<Request, String> {
    let Json::Object(mut fields) = value else {
        return Err("A GraphQL request is a JSON object.".into());
    };
    // Apollo's persisted queries send a hash in `extensions` instead of the document.
    let persisted = fields
        .get("extensions")
        .and_then(|e| e.get("persistedQuery"))
        .is_some();
    match fields.get("query") {
        Some(Json::String(query)) if !query.trim().is_empty() => {}
        None | Some(Json::Null) if persisted => {
            fields.remove("query");
        }
        Some(Json::String(_)) => return Err("The query is empty.".into()),
        None | Some(Json::Null) => return Err("The request has no query.".into()),
        Some(_) => return Err("The query must be a string.".into()),
    }
    for (name, expected) in [
        ("operationName", "a string"),
        ("variables", "an object"),
        ("extensions", "an object"),
    ] {
        match fields.get(name) {
            None => {}
            Some(Json::Null) => {
                fields.remove(name);
            }
            Some(Json::String(_)) if name == "operationName" => {}
            Some(Json::Object(_)) if name != "operationName" => {}
            Some(_) => return Err(format!("{name} must be {expected} or null.")),
        }
    }
    serde_json::from_value(Json::Object(fields))
        .map_err(|_| "The body is not a GraphQL request.".to_owned())
}

/// A POST body: a JSON object is one request, a JSON array a batch.
fn parse_body(bytes: &[u8]) -> Result<BatchRequest, String> {
    let value: Json =
        serde_json::from_slice(bytes).map_err(|_| "The body is not valid JSON.".to_owned())?;
    match value {
        Json::Array(items) => items
            .into_iter()
            .map(request_from_json)
            .collect::<Result<Vec<_>, _>>()
            .map(BatchRequest::Batch),
        single => request_from_json(single).map(BatchRequest::Single),
    }
}

/// A GET query string: `query`, `operationName`, and `variables` / `extensions` as JSON text.
/// Repeated parameters are refused rather than guessed at.
fn parse_query_string(parts: &Parts) -> Result<Request, String> {
    let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
        .map_err(|_| "The query string cannot be read.".to_owned())?;
    let mut fields = Map::new();
    for (name, value) in pairs {
        let value = match name.as_str() {
            "query" => Json::String(value),
            // Some clients send `operationName=` for "none".
            "operationName" if value.is_empty() => continue,
            "operationName" => Json::String(value),
            "variables" | "extensions" => serde_json::from_str(&value)
                .map_err(|_| format!("The {name} parameter is not valid JSON."))?,
            _ => continue,
        };
        if fields.insert(name.clone(), value).is_some() {
            return Err(format!("The {name} parameter is given more than once."));
        }
    }
    request_from_json(Json::Object(fields))
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
fn request_id_of(parts: &Parts) -> RequestId {
    parts
        .extensions
        .get::<RequestId>()
        .cloned()
        .unwrap_or(RequestId(String::new()))
}

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
    if let BatchRequest::Batch(requests) = &batch {
        let max = state.app.config.graphql.max_batch;
        if max == 0 {
            return request_error(
                StatusCode::BAD_REQUEST,
                media,
                "Batched requests are turned off.",
                rid,
            );
        }
        if requests.is_empty() || requests.len() > max {
            return request_error(
                StatusCode::BAD_REQUEST,
                media,
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
        BatchRequest::Batch(requests) if crate::otel::on() => {
            crate::otel::name_batch(requests.len());
            let marked = |request: Request| with_data(request).data(crate::otel::Batched);
            BatchRequest::Batch(requests.into_iter().map(marked).collect())
        }
        BatchRequest::Batch(requests) => {
            BatchRequest::Batch(requests.into_iter().map(with_data).collect())
        }
    };
    let timeout = state.app.config.graphql.request_timeout;
    let Ok(response) = tokio::time::timeout(timeout, state.executor.execute_batch(batch)).await
    else {
        return timed_out(media, rid);
    };
    respond(response, media, rid)
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
    if let Some(kind) = operation_type(&mut request) {
        if kind != OperationType::Query {
            return request_error(
                StatusCode::METHOD_NOT_ALLOWED,
                media,
                "Mutations and subscriptions must be sent with POST.",
                rid,
            );
        }
    }
    let ip = client_ip(&state, &parts);
    let request = with_request_data(request, &state, &parts.headers, ip, &request_id);
    let timeout = state.app.config.graphql.request_timeout;
    let Ok(response) = tokio::time::timeout(timeout, state.executor.execute(request)).await else {
        return timed_out(media, rid);
    };
    respond(BatchResponse::Single(response), media, rid)
}

/// True when the request never reached execution: parsing, validation, variable coercion or a
/// limit refused it. Those errors carry no `path`; an execution error that nulled the whole
/// result (a non-null root field failing, such as `me` without a token) has one.
fn is_request_error(response: &async_graphql::Response) -> bool {
    response.data == async_graphql::Value::Null
        && !response.errors.is_empty()
        && response.errors.iter().all(|error| error.path.is_empty())
}

/// One response as the spec shapes it: a request error has no `data` entry at all (GraphQL
/// spec, "Response Format": `data` is absent when execution did not start). Serialised straight
/// from the response, never through a `serde_json::Value`, whose map would sort the fields
/// alphabetically instead of keeping the order the query selected them in.
struct Shaped<'a>(&'a async_graphql::Response);

impl serde::Serialize for Shaped<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let response = self.0;
        let mut map = serializer.serialize_map(None)?;
        if !is_request_error(response) {
            map.serialize_entry("data", &response.data)?;
        }
        if !response.extensions.is_empty() {
            map.serialize_entry("extensions", &response.extensions)?;
        }
        if !response.errors.is_empty() {
            map.serialize_entry("errors", &response.errors)?;
        }
        map.end()
    }
}

/// Serialises the response, logging unexpected errors once (with the request id) and making
/// sure every error carries an `extensions.code`.
///
/// Status codes follow GraphQL over HTTP: with `application/json` every well-formed request
/// answers 200, errors included; with `application/graphql-response+json` a request error (no
/// `data`) answers 400, and an executed request 200 even when `data` is null. A batch, which the
/// spec does not cover, answers 200 with one result per operation.
fn respond(mut response: BatchResponse, media: MediaType, request_id: &str) -> Response {
    for single in batch_iter_mut(&mut response) {
        for error in &mut single.errors {
            annotate(error, request_id);
        }
    }
    if crate::otel::on() {
        record_error_codes(&mut response);
    }
    let (status, body) = match &response {
        BatchResponse::Single(single) => {
            let refused = is_request_error(single) && media == MediaType::GraphqlResponseJson;
            let status = if refused {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::OK
            };
            (status, serde_json::to_vec(&Shaped(single)))
        }
        BatchResponse::Batch(many) => {
            let shaped: Vec<Shaped<'_>> = many.iter().map(Shaped).collect();
            (StatusCode::OK, serde_json::to_vec(&shaped))
        }
    };
    match body {
        Ok(bytes) => Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, media.as_str())
            .body(Body::from(bytes))
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response()),
        Err(err) => {
            tracing::error!(error = %err, "serialising a GraphQL response failed");
            request_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                media,
                "Something went wrong on our side.",
                request_id,
            )
        }
    }
}

/// The `extensions.code`s of the response's errors, on the request span.
fn record_error_codes(response: &mut BatchResponse) {
    let responses = batch_iter_mut(response);
    let codes = responses
        .iter()
        .flat_map(|single| single.errors.iter())
        .filter_map(|error| match error.extensions.as_ref()?.get("code")? {
            async_graphql::Value::String(code) => Some(code.as_str()),
            _ => None,
        });
    crate::otel::record_error_codes(codes);
}

fn batch_iter_mut(response: &mut BatchResponse) -> Vec<&mut async_graphql::Response> {
    match response {
        BatchResponse::Single(single) => vec![single],
        BatchResponse::Batch(many) => many.iter_mut().collect(),
    }
}

pub(super) fn annotate(error: &mut ServerError, request_id: &str) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_str(value).expect("header"),
        );
        headers
    }

    #[test]
    fn accept_negotiation_follows_the_client_preference() {
        use MediaType::{GraphqlResponseJson as Gql, Json};
        assert_eq!(MediaType::negotiate(&HeaderMap::new()), Json);
        for (header, expected) in [
            ("application/json", Json),
            ("*/*", Json),
            ("text/html", Json),
            (GRAPHQL_RESPONSE_JSON, Gql),
            (
                "application/graphql-response+json, application/json;q=0.9",
                Gql,
            ),
            ("application/json, application/graphql-response+json", Json),
            (
                "application/json;q=0.5, application/graphql-response+json",
                Gql,
            ),
            (
                "application/graphql-response+json;q=0, application/json",
                Json,
            ),
            ("APPLICATION/GRAPHQL-RESPONSE+JSON; charset=utf-8", Gql),
            ("*/*;q=0.8, application/graphql-response+json", Gql),
        ] {
            assert_eq!(MediaType::negotiate(&accept(header)), expected, "{header}");
        }
    }

    #[test]
    fn only_utf8_json_bodies_are_accepted() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_str(value).expect("header"),
            );
            is_json_body(&headers)
        };
        assert!(with("application/json"));
        assert!(with("Application/JSON; charset=UTF-8"));
        assert!(with("application/json; charset=\"utf-8\""));
        assert!(with(GRAPHQL_RESPONSE_JSON));
        assert!(!with("application/json; charset=latin1"));
        assert!(!with("text/plain"));
        assert!(!with("application/x-www-form-urlencoded"));
        assert!(!is_json_body(&HeaderMap::new()));
    }

    #[test]
    fn request_parameters_are_checked() {
        let ok = |json: Json| request_from_json(json).expect("a valid request");
        let request = ok(serde_json::json!({
            "query": "query Q($a: Int) { __typename }",
            "operationName": "Q",
            "variables": { "a": 1 },
            "extensions": { "persistedQuery": { "version": 1 } },
        }));
        assert_eq!(request.operation_name.as_deref(), Some("Q"));
        assert_eq!(request.variables.len(), 1);
        let request = ok(serde_json::json!({
            "query": "{ __typename }",
            "operationName": null,
            "variables": null,
            "extensions": null,
        }));
        assert!(request.operation_name.is_none() && request.variables.is_empty());

        for bad in [
            serde_json::json!(42),
            serde_json::json!({}),
            serde_json::json!({ "query": "" }),
            serde_json::json!({ "query": { "obj": "ect" } }),
            serde_json::json!({ "query": ["{ a }"] }),
            serde_json::json!({ "query": "{ a }", "operationName": 1 }),
            serde_json::json!({ "query": "{ a }", "variables": "{}" }),
            serde_json::json!({ "query": "{ a }", "variables": [] }),
            serde_json::json!({ "query": "{ a }", "extensions": true }),
        ] {
            assert!(request_from_json(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn bodies_are_objects_or_arrays_of_them() {
        assert!(matches!(
            parse_body(br#"{"query":"{ a }"}"#),
            Ok(BatchRequest::Single(_))
        ));
        assert!(matches!(
            parse_body(br#"[{"query":"{ a }"},{"query":"{ b }"}]"#),
            Ok(BatchRequest::Batch(batch)) if batch.len() == 2
        ));
        for bad in [
            &b""[..],
            b"{",
            b"42",
            b"\"{ a }\"",
            br#"[{"query":"{ a }"}, 1]"#,
        ] {
            assert!(parse_body(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn only_errors_before_execution_drop_data_and_answer_400() {
        use async_graphql::{PathSegment, Response as GqlResponse};

        // A parse or validation error: no path, no data.
        let refused = GqlResponse::from_errors(vec![ServerError::new("Unknown field.", None)]);
        assert!(is_request_error(&refused));
        let json = serde_json::to_value(Shaped(&refused)).expect("json");
        assert!(json.get("data").is_none(), "{json}");
        let response = respond(
            BatchResponse::Single(refused),
            MediaType::GraphqlResponseJson,
            "rid",
        );
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            GRAPHQL_RESPONSE_JSON
        );

        // A non-null root field failed while executing: data is null, and stays, with 200.
        let mut failed = ServerError::new("Sign in first.", None);
        failed.path = vec![PathSegment::Field("me".into())];
        let executed = GqlResponse::from_errors(vec![failed]);
        assert!(!is_request_error(&executed));
        let json = serde_json::to_value(Shaped(&executed)).expect("json");
        assert_eq!(json.get("data"), Some(&Json::Null), "{json}");
        let response = respond(
            BatchResponse::Single(executed),
            MediaType::GraphqlResponseJson,
            "rid",
        );
        assert_eq!(response.status(), StatusCode::OK);

        // application/json: 200 either way.
        let refused = GqlResponse::from_errors(vec![ServerError::new("Syntax error.", None)]);
        let response = respond(BatchResponse::Single(refused), MediaType::Json, "rid");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    }

    #[test]
    fn query_strings_carry_json_variables() {
        let parts = |uri: &str| {
            axum::http::Request::get(uri)
                .body(())
                .expect("request")
                .into_parts()
                .0
        };
        let request = parse_query_string(&parts(
            "/graphql?query=query%20Q(%24a%3AInt)%7B__typename%7D&variables=%7B%22a%22%3A1%7D&operationName=Q",
        ))
        .expect("valid");
        assert_eq!(request.variables.len(), 1);
        assert_eq!(request.operation_name.as_deref(), Some("Q"));
        assert!(parse_query_string(&parts("/graphql?query=%7Ba%7D&operationName=")).is_ok());
        for bad in [
            "/graphql",
            "/graphql?variables=%7B%7D",
            "/graphql?query=%7Ba%7D&variables=nope",
            "/graphql?query=%7Ba%7D&variables=%5B%5D",
            "/graphql?query=%7Ba%7D&query=%7Bb%7D",
        ] {
            assert!(parse_query_string(&parts(bad)).is_err(), "{bad}");
        }
    }
}
