//! OpenTelemetry traces over OTLP/HTTP, on only when an OTLP endpoint is configured
//! (`OTEL_EXPORTER_OTLP_ENDPOINT`, see `config::OtelSettings` and docs/observability.md).
//!
//! What a trace holds:
//! - one span per HTTP request (`request`), named by the GraphQL operation it runs
//!   (`query Me`, `mutation VerifyCode`, `mutation` when anonymous, `batch` for a batch;
//!   `GET /healthz` and the like otherwise), continuing the client's W3C `traceparent`, with the
//!   request id, the HTTP method, route and status, and the `extensions.code` of its errors;
//! - under it, one span per SQL statement: the statement text as SeaORM sends it, with
//!   placeholders (`$1`, `?`) where the values go — bound values are never exported;
//! - one span per operation subscribed over a WebSocket (`subscribe`), in the trace of the
//!   upgrade request.
//!
//! Nothing else reaches the exporter: the tracing layer only sees the spans of [`TARGET`] (no
//! events, none of the services' spans, some of which carry masked phones), and their fields
//! are chosen here. The document, the variables, headers and paths are never recorded.
//!
//! Off (the default), none of this runs: no layer, no exporter, and the request path only
//! reads [`on`] (one relaxed atomic load) to choose its plain span.

use std::{
    sync::{
        OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, SystemTime},
};

use async_graphql::parser::types::{DocumentOperations, ExecutableDocument, OperationType};
use axum::http::{HeaderMap, StatusCode};
use opentelemetry::{
    Context, KeyValue,
    context::FutureExt as _,
    propagation::TextMapPropagator,
    trace::{Span as _, SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _},
};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::{
    Resource,
    propagation::TraceContextPropagator,
    trace::{SdkTracer, SdkTracerProvider},
};
use sea_orm::DatabaseBackend;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::config::OtelSettings;

/// The target of the only spans exported (not a module path: the log layer hides these spans
/// by it, and this module's own log lines must still show).
pub const TARGET: &str = "phone_auth::otel::span";

/// The service name when neither `OTEL_SERVICE_NAME` nor `OTEL_RESOURCE_ATTRIBUTES` gives one.
pub const DEFAULT_SERVICE_NAME: &str = "phone-auth";

/// Operation names are GraphQL names (letters, digits, `_`), chosen by the client: long ones
/// are cut so a span name stays a label.
const MAX_OPERATION_NAME: usize = 64;

/// Longest the exit waits for the last export (a collector that is down must not hold up a
/// stop past a container's grace period).
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

static ON: AtomicBool = AtomicBool::new(false);
static TRACER: OnceLock<SdkTracer> = OnceLock::new();

/// Whether traces are being exported (set once at start, by [`Exporter::start`]).
#[inline]
pub fn on() -> bool {
    ON.load(Ordering::Relaxed)
}

/// The running exporter: the tracer for the subscriber's layer, and the provider to flush at
/// shutdown.
pub struct Exporter {
    provider: SdkTracerProvider,
}

impl Exporter {
    /// Builds the OTLP/HTTP exporter and its batch processor, installs the W3C trace-context
    /// propagator and turns tracing on. Must run inside the Tokio runtime: exports are sent on
    /// it. The SDK itself reads the rest of the standard variables (`OTEL_EXPORTER_OTLP_HEADERS`,
    /// `OTEL_TRACES_SAMPLER`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_BSP_*` …).
    pub fn start(settings: &OtelSettings) -> Result<Self, String> {
        let client = Client::new(settings.timeout)?;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(client)
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(settings.traces_endpoint.as_str())
            .with_timeout(settings.timeout)
            .build()
            .map_err(|e| format!("the OTLP exporter: {e}"))?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource(settings.service_name.as_deref()))
            .build();
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        let _ = TRACER.set(provider.tracer("phone-auth"));
        ON.store(true, Ordering::Relaxed);
        Ok(Self { provider })
    }

    /// The tracer the subscriber's OpenTelemetry layer writes to.
    pub fn tracer(&self) -> SdkTracer {
        self.provider.tracer("phone-auth")
    }

    /// Exports what is buffered and stops the processor, within [`SHUTDOWN_TIMEOUT`] (off the
    /// async threads: the processor waits for exports that run on them).
    pub async fn shutdown(self) {
        let provider = self.provider;
        match tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT))
            .await
        {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!(error = %err, "flushing the traces failed"),
            Err(err) => tracing::warn!(error = %err, "flushing the traces panicked"),
        }
    }
}

/// `OTEL_SERVICE_NAME` wins; then `service.name` of `OTEL_RESOURCE_ATTRIBUTES` (which the
/// SDK's resource reads); then `phone-auth` rather than the SDK's `unknown_service`.
fn resource(service_name: Option<&str>) -> Resource {
    let detected = Resource::builder().build();
    let unnamed = detected
        .get(&opentelemetry::Key::from_static_str("service.name"))
        .is_none_or(|name| name.as_str().starts_with("unknown_service"));
    match (service_name, unnamed) {
        (Some(name), _) => Resource::builder()
            .with_service_name(name.to_owned())
            .build(),
        (None, true) => Resource::builder()
            .with_service_name(DEFAULT_SERVICE_NAME)
            .build(),
        (None, false) => detected,
    }
}

/// The exporter's HTTP client: the server's own reqwest (rustls), on the server's runtime.
/// The SDK's batch processor runs on a thread of its own and only waits for the result.
#[derive(Debug)]
struct Client {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

impl Client {
    fn new(timeout: Duration) -> Result<Self, String> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| "the OTLP exporter starts inside the runtime".to_owned())?;
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| format!("the OTLP HTTP client: {e}"))?;
        Ok(Self { client, runtime })
    }
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for Client {
    async fn send_bytes(
        &self,
        request: opentelemetry_http::Request<opentelemetry_http::Bytes>,
    ) -> Result<
        opentelemetry_http::Response<opentelemetry_http::Bytes>,
        opentelemetry_http::HttpError,
    > {
        let request = reqwest::Request::try_from(request)?;
        let client = self.client.clone();
        let sent = self.runtime.spawn(async move {
            let response = client.execute(request).await?;
            let mut answer = opentelemetry_http::Response::builder().status(response.status());
            if let Some(headers) = answer.headers_mut() {
                *headers = response.headers().clone();
            }
            let body = response.bytes().await?;
            Ok::<_, opentelemetry_http::HttpError>(answer.body(body)?)
        });
        sent.await?
    }
}

/// The route of a path, from the router's fixed set (never the raw path: it is the client's
/// text, and unbounded).
pub fn route(path: &str) -> &'static str {
    const ROUTES: &[&str] = &["/graphql", "/", "/healthz", "/readyz", "/metrics"];
    if let Some(route) = ROUTES.iter().find(|route| **route == path) {
        return route;
    }
    if path.starts_with("/graphiql/") {
        return "/graphiql/{hash}/{file}";
    }
    "unmatched"
}

/// The exported span of one HTTP request, continuing the trace of the client's `traceparent`
/// (when it is valid; otherwise a new trace). Its name is `METHOD route` until the GraphQL
/// operation, if any, renames it. The request's log span (`request`, with its fields as ever)
/// runs inside it; the log layer does not show this one.
pub fn request_span(
    request_id: &str,
    method: &str,
    path: &str,
    headers: &HeaderMap,
) -> tracing::Span {
    let route = route(path);
    let span = tracing::info_span!(
        target: TARGET,
        "request",
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        request_id,
        http.request.method = method,
        http.route = route,
    );
    let parent =
        TraceContextPropagator::new().extract(&opentelemetry_http::HeaderExtractor(headers));
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
    span
}

/// Records the response status on the request span; a 5xx marks it failed.
pub fn record_status(span: &tracing::Span, status: StatusCode) {
    let cx = span.context();
    let span = cx.span();
    span.set_attribute(KeyValue::new(
        "http.response.status_code",
        i64::from(status.as_u16()),
    ));
    if status.is_server_error() {
        span.set_status(Status::error(status.to_string()));
    }
}

/// The exported span of one operation subscribed over a WebSocket (named by
/// [`name_operation`]).
pub fn subscribe_span(request_id: &str) -> tracing::Span {
    tracing::info_span!(
        target: TARGET,
        "subscribe",
        otel.name = "subscription",
        otel.kind = "server",
        request_id,
    )
}

/// Marks the operations of a batch: the request span is named `batch`, not by one of them.
pub struct Batched;

/// Names the current exported span (the request's) after a batch of `size` operations.
pub fn name_batch(size: usize) {
    let cx = Context::current();
    let span = cx.span();
    span.update_name("batch".to_owned());
    span.set_attribute(KeyValue::new(
        "graphql.batch.size",
        i64::try_from(size).unwrap_or(i64::MAX),
    ));
}

/// `query Me`, `mutation VerifyCode`, or the bare type for an anonymous operation.
pub fn operation_label(kind: OperationType, name: Option<&str>) -> String {
    let kind = match kind {
        OperationType::Query => "query",
        OperationType::Mutation => "mutation",
        OperationType::Subscription => "subscription",
    };
    match name {
        Some(name) => {
            let name: String = name.chars().take(MAX_OPERATION_NAME).collect();
            format!("{kind} {name}")
        }
        None => kind.to_owned(),
    }
}

/// Names the current exported span (the request's, or a socket's `subscribe`) after the
/// operation the request runs. Only the operation's type and name: never the document or its
/// variables.
pub fn name_operation(document: &ExecutableDocument, operation_name: Option<&str>) {
    let Some(operation) = crate::graphql::operation::selected_operation(document, operation_name)
    else {
        return;
    };
    // The name in the document; `operationName` only picks among several.
    let name = match &document.operations {
        DocumentOperations::Single(_) => None,
        DocumentOperations::Multiple(operations) => operations
            .iter()
            .find(|(_, op)| std::ptr::eq(*op, operation))
            .map(|(name, _)| name.as_str()),
    };
    let label = operation_label(operation.node.ty, name);
    let cx = Context::current();
    let span = cx.span();
    match label.split_once(' ') {
        Some((kind, name)) => {
            span.set_attribute(KeyValue::new("graphql.operation.type", kind.to_owned()));
            span.set_attribute(KeyValue::new("graphql.operation.name", name.to_owned()));
        }
        None => span.set_attribute(KeyValue::new("graphql.operation.type", label.clone())),
    }
    span.update_name(label);
}

/// Records the distinct `extensions.code`s of a response's errors on the current exported span.
pub fn record_error_codes<'a>(codes: impl IntoIterator<Item = &'a str>) {
    let mut seen: Vec<&str> = Vec::new();
    for code in codes {
        if !seen.contains(&code) {
            seen.push(code);
        }
    }
    if !seen.is_empty() {
        Context::current()
            .span()
            .set_attribute(KeyValue::new("graphql.error.codes", seen.join(",")));
    }
}

/// The OpenTelemetry context of the current span, to carry into a task spawned for it.
pub fn current_context() -> Context {
    Context::current()
}

/// Spawns `future` in the trace of the current span (a DataLoader's batch, which runs apart
/// from the operation that asked for it): its SQL spans land in the request.
pub fn spawn<F>(future: F) -> tokio::task::JoinHandle<()>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    if on() {
        tokio::spawn(future.with_context(Context::current()))
    } else {
        tokio::spawn(future)
    }
}

/// Runs `future` in `cx` (a socket, in the trace of its upgrade request).
pub async fn in_context<F: std::future::Future>(cx: Context, future: F) -> F::Output {
    future.with_context(cx).await
}

/// A span for one SQL statement that just ran, under the current span when it belongs to a
/// traced request (background work — migrations, the outbox, pruning — makes none). Backdated
/// to its start: SeaORM reports the statement once it has finished.
pub fn sql_span(backend: DatabaseBackend, sql: &str, elapsed: Duration, failed: bool) {
    let parent = Context::current();
    if !parent.has_active_span() {
        return;
    }
    let Some(tracer) = TRACER.get() else {
        return;
    };
    let end = SystemTime::now();
    let start = end.checked_sub(elapsed).unwrap_or(end);
    let (operation, table) = summary(sql);
    let name = match table {
        Some(table) => format!("{operation} {table}"),
        None => operation.clone(),
    };
    let system = match backend {
        DatabaseBackend::Postgres => "postgresql",
        DatabaseBackend::Sqlite => "sqlite",
        // OpenTelemetry's name for a database it has no name for.
        _ => "other_sql",
    };
    let mut span = tracer
        .span_builder(name)
        .with_kind(SpanKind::Client)
        .with_start_time(start)
        .with_attributes([
            KeyValue::new("db.system.name", system),
            KeyValue::new("db.operation.name", operation),
            KeyValue::new("db.query.text", sql.to_owned()),
        ])
        .start_with_context(tracer, &parent);
    if failed {
        span.set_status(Status::error("the statement failed"));
    }
    span.end_with_timestamp(end);
}

/// The statement's first keyword (`SELECT`, `INSERT` …) and the table it names first after
/// `FROM`, `INTO` or `UPDATE` outside parentheses (not a subquery's), unquoted:
/// OpenTelemetry's low-cardinality span name.
pub fn summary(sql: &str) -> (String, Option<String>) {
    let mut words = sql.split_whitespace();
    let operation = words
        .next()
        .unwrap_or("SQL")
        .trim_matches(|c: char| !c.is_ascii_alphabetic())
        .to_ascii_uppercase();
    let operation = if operation.is_empty() {
        "SQL".to_owned()
    } else {
        operation
    };
    let mut previous = operation.clone();
    let mut table = None;
    // Parentheses open before `word`.
    let mut depth = 0i32;
    for word in words {
        if depth == 0
            && ["FROM", "INTO", "UPDATE"].contains(&previous.to_ascii_uppercase().as_str())
        {
            let name = word.trim_matches(|c: char| c == '"' || c == '`' || c == '(' || c == ',');
            if !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
            {
                table = Some(name.to_owned());
                break;
            }
        }
        for c in word.chars() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                _ => {}
            }
        }
        previous = word.to_owned();
    }
    (operation, table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_are_summarised_by_keyword_and_table() {
        assert_eq!(
            summary(r#"SELECT "users"."id" FROM "users" WHERE "users"."phone" = $1"#),
            ("SELECT".to_owned(), Some("users".to_owned()))
        );
        assert_eq!(
            summary(r#"INSERT INTO "otp_codes" ("phone") VALUES (?)"#),
            ("INSERT".to_owned(), Some("otp_codes".to_owned()))
        );
        assert_eq!(
            summary(r#"UPDATE "sessions" SET "revoked" = $1 FROM "x""#),
            ("UPDATE".to_owned(), Some("sessions".to_owned()))
        );
        assert_eq!(
            summary("delete from events where at < ?"),
            ("DELETE".to_owned(), Some("events".to_owned()))
        );
        assert_eq!(
            summary(
                "SELECT SUM(a) AS c0, (SELECT COUNT(*) FROM users WHERE phone = ?) AS probe FROM rate_events WHERE at > ?"
            ),
            ("SELECT".to_owned(), Some("rate_events".to_owned()))
        );
        assert_eq!(summary("SELECT 1"), ("SELECT".to_owned(), None));
        assert_eq!(summary("BEGIN"), ("BEGIN".to_owned(), None));
        assert_eq!(summary(""), ("SQL".to_owned(), None));
    }

    #[test]
    fn operations_are_labelled_by_type_and_name() {
        assert_eq!(
            operation_label(OperationType::Query, Some("Me")),
            "query Me"
        );
        assert_eq!(operation_label(OperationType::Mutation, None), "mutation");
        let long = "A".repeat(200);
        assert_eq!(
            operation_label(OperationType::Subscription, Some(&long)).len(),
            "subscription ".len() + MAX_OPERATION_NAME
        );
    }

    #[test]
    fn only_the_fixed_routes_are_labels() {
        assert_eq!(route("/graphql"), "/graphql");
        assert_eq!(route("/"), "/");
        assert_eq!(route("/graphiql/abc/app.js"), "/graphiql/{hash}/{file}");
        assert_eq!(route("/+79120000001"), "unmatched");
    }
}
