//! GraphQL over HTTP, the request side: which media type to answer with (`Accept`), which
//! bodies to take (`Content-Type`), and turning a POST body (one request or a batch) or a GET
//! query string into `async_graphql` requests checked the way the spec describes them. Pure
//! functions of the request's headers and bytes, so every rule has a unit test here.

use async_graphql::{BatchRequest, Request};
use axum::{
    extract::Query,
    http::{HeaderMap, header, request::Parts},
};
use serde_json::{Map, Value as Json};

pub(super) const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";

/// The media type of a response, chosen from the request's `Accept` header (GraphQL over HTTP,
/// "Accept"): `application/graphql-response+json` when the client prefers it, `application/json`
/// otherwise — for `*/*`, for no header at all, and for types we cannot produce (the spec lets a
/// server answer those with 406, but plenty of legacy clients send odd headers and read JSON).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::http) enum MediaType {
    Json,
    GraphqlResponseJson,
}

impl MediaType {
    pub(in crate::http) fn negotiate(headers: &HeaderMap) -> Self {
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

    pub(super) fn as_str(self) -> &'static str {
        match self {
            MediaType::Json => "application/json",
            MediaType::GraphqlResponseJson => GRAPHQL_RESPONSE_JSON,
        }
    }
}

/// Only JSON bodies, in UTF-8 (the only encoding the spec allows): a browser can send
/// text/plain, form and multipart bodies cross-site without a CORS preflight, so accepting them
/// would let any web page post here as its visitors.
pub(super) fn is_json_body(headers: &HeaderMap) -> bool {
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
pub(super) fn parse_body(bytes: &[u8]) -> Result<BatchRequest, String> {
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
pub(super) fn parse_query_string(parts: &Parts) -> Result<Request, String> {
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

/// A batch within `GRAPHQL_MAX_BATCH` operations (0 turns batching off); a single request
/// always passes. The error is the sentence the client reads.
pub(super) fn check_batch(batch: &BatchRequest, max: usize) -> Result<(), String> {
    let BatchRequest::Batch(requests) = batch else {
        return Ok(());
    };
    if max == 0 {
        return Err("Batched requests are turned off.".to_owned());
    }
    if requests.is_empty() || requests.len() > max {
        return Err(format!("A batch holds between 1 and {max} operations."));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

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
    fn batches_are_bounded() {
        let batch = |n: usize| match parse_body(
            format!("[{}]", vec![r#"{"query":"{ a }"}"#; n].join(",")).as_bytes(),
        ) {
            Ok(batch) => batch,
            Err(message) => panic!("{message}"),
        };
        let single = parse_body(br#"{"query":"{ a }"}"#).expect("single");
        assert!(check_batch(&single, 0).is_ok());
        assert!(check_batch(&batch(1), 0).is_err());
        assert!(check_batch(&batch(0), 3).is_err());
        assert!(check_batch(&batch(3), 3).is_ok());
        assert!(check_batch(&batch(4), 3).is_err());
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
