//! GraphQL over HTTP, the response side: shaping (no `data` for a request error, fields in
//! selection order), the status code for the negotiated media type, the contract's error
//! answers before execution (400/405/408/413/415, 503 on timeout), and logging unexpected
//! errors once, with the request id, before they leave.

use async_graphql::{BatchResponse, ServerError};
use axum::{
    body::Body,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};

use super::negotiate::MediaType;
use crate::error::{AppError, code};

pub(in crate::http) fn json_response(
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
pub(in crate::http) fn request_error(
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
pub(super) fn timed_out(media: MediaType, request_id: &str) -> Response {
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
pub(super) fn respond(mut response: BatchResponse, media: MediaType, request_id: &str) -> Response {
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

pub(in crate::http) fn annotate(error: &mut ServerError, request_id: &str) {
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
    use serde_json::Value as Json;

    use super::*;
    use crate::http::graphql::negotiate::GRAPHQL_RESPONSE_JSON;

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
}
