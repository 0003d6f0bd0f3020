//! OpenTelemetry: the real binary, pointed at an OTLP/HTTP receiver in this test (no collector),
//! exports one span per request named by its GraphQL operation, in the client's trace, with SQL
//! child spans holding placeholders only; no phone, code or token in anything it sends.
//!
//! Runs on the database `TEST_DATABASE_URL` names (a fresh PostgreSQL database, dropped at the
//! end), else on a fresh SQLite file.

#[path = "api/helpers.rs"]
mod helpers;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, body::Bytes, extract::State, http::StatusCode, routing::post};
use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest,
    common::v1::{AnyValue, KeyValue, any_value::Value as AnyValueKind},
    trace::v1::{Span, span::SpanKind},
};
use prost::Message;
use serde_json::{Value, json};

/// What the receiver got: every raw body, decoded into (resource attributes, span) pairs.
#[derive(Clone, Default)]
struct Received {
    bodies: Arc<Mutex<Vec<Vec<u8>>>>,
    /// The `x-otel-test` header of each export (`OTEL_EXPORTER_OTLP_HEADERS`).
    headers: Arc<Mutex<Vec<Option<String>>>>,
}

impl Received {
    fn spans(&self) -> Vec<(HashMap<String, String>, Span)> {
        let bodies = self.bodies.lock().expect("receiver lock").clone();
        let mut spans = Vec::new();
        for body in bodies {
            let request =
                ExportTraceServiceRequest::decode(body.as_slice()).expect("OTLP protobuf");
            for resource_spans in request.resource_spans {
                let resource = resource_spans
                    .resource
                    .map(|r| attributes(&r.attributes))
                    .unwrap_or_default();
                for scope in resource_spans.scope_spans {
                    for span in scope.spans {
                        spans.push((resource.clone(), span));
                    }
                }
            }
        }
        spans
    }

    fn raw(&self) -> Vec<u8> {
        self.bodies.lock().expect("receiver lock").concat()
    }
}

fn text(value: &Option<AnyValue>) -> String {
    match value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(AnyValueKind::StringValue(s)) => s.clone(),
        Some(AnyValueKind::IntValue(i)) => i.to_string(),
        Some(AnyValueKind::BoolValue(b)) => b.to_string(),
        Some(AnyValueKind::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

fn attributes(attributes: &[KeyValue]) -> HashMap<String, String> {
    attributes
        .iter()
        .map(|kv| (kv.key.clone(), text(&kv.value)))
        .collect()
}

async fn receive(
    State(received): State<Received>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> (StatusCode, Vec<u8>) {
    received.headers.lock().expect("receiver lock").push(
        headers
            .get("x-otel-test")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    );
    received
        .bodies
        .lock()
        .expect("receiver lock")
        .push(body.to_vec());
    (StatusCode::OK, Vec::new())
}

/// An OTLP/HTTP receiver on a free loopback port: its base URL and what it gets.
async fn receiver() -> (String, Received) {
    let received = Received::default();
    let app = Router::new()
        .route("/v1/traces", post(receive))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), received)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// The real binary with `env`, until SIGTERM.
struct Running {
    child: std::process::Child,
    dir: std::path::PathBuf,
    base: String,
}

impl Running {
    fn start(env: &[(&str, &str)]) -> Self {
        let dir =
            std::env::temp_dir().join(format!("phone-auth-otel-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let port = free_port();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_phone-auth"))
            .current_dir(&dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .env("SMS_DELAY_MS", "0")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("the binary starts");
        Self {
            child,
            dir,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    async fn ready(&self, client: &reqwest::Client) {
        for _ in 0..3000 {
            if let Ok(r) = client.get(format!("{}/readyz", self.base)).send().await
                && r.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("not ready within 30 s");
    }

    /// SIGTERM, then the exit status and stderr.
    async fn stop(mut self) -> (std::process::ExitStatus, String) {
        let kill = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(kill.success());
        for _ in 0..3000 {
            if let Some(status) = self.child.try_wait().expect("wait") {
                let mut stderr = String::new();
                if let Some(mut pipe) = self.child.stderr.take() {
                    use std::io::Read;
                    pipe.read_to_string(&mut stderr).expect("stderr is UTF-8");
                }
                let _ = std::fs::remove_dir_all(&self.dir);
                return (status, stderr);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = self.child.kill();
        panic!("did not stop within 30 s of SIGTERM");
    }
}

/// A client's W3C trace context: trace id, parent span id, and the header.
struct TraceParent {
    trace_id: String,
    parent_id: String,
}

impl TraceParent {
    fn new() -> Self {
        let hex = uuid::Uuid::new_v4().simple().to_string();
        let parent = uuid::Uuid::new_v4().simple().to_string();
        Self {
            trace_id: hex,
            parent_id: parent[..16].to_owned(),
        }
    }

    fn header(&self) -> String {
        format!("00-{}-{}-01", self.trace_id, self.parent_id)
    }
}

async fn graphql(
    client: &reqwest::Client,
    base: &str,
    headers: &[(&str, String)],
    body: Value,
) -> Value {
    let mut request = client.post(format!("{base}/graphql")).json(&body);
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    request
        .send()
        .await
        .expect("the server answers")
        .json()
        .await
        .expect("JSON")
}

async fn drop_database(url: &str) {
    use sea_orm::ConnectionTrait;
    if let Some(path) = url.strip_prefix("sqlite://") {
        let path = path.split('?').next().unwrap_or(path);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{path}{suffix}"));
        }
        return;
    }
    let Some(slash) = url.rfind('/') else { return };
    let (server, name) = (&url[..slash], &url[slash + 1..]);
    // Only the database this test made (`<TEST_DATABASE_PREFIX>_<uuid>`), never the server's.
    if !url.starts_with("postgres") || name.is_empty() || name == "postgres" {
        return;
    }
    let admin = phone_auth::db::connect(&format!("{server}/postgres"), 1)
        .await
        .expect("the server is reachable");
    admin
        .execute_raw(sea_orm::Statement::from_string(
            admin.get_database_backend(),
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        ))
        .await
        .expect("the test database is dropped");
}

/// Opens a graphql-transport-ws socket (signed in), subscribes, and closes once the server has
/// answered a ping sent after the subscribe (messages are handled in order).
async fn subscribe_over_socket(base: &str, trace: &TraceParent, token: &str) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest, http::HeaderValue};
    let mut request = format!("{}/graphql", base.replacen("http", "ws", 1))
        .into_client_request()
        .expect("request");
    let headers = request.headers_mut();
    headers.insert(
        "sec-websocket-protocol",
        HeaderValue::from_static("graphql-transport-ws"),
    );
    headers.insert(
        "traceparent",
        HeaderValue::from_str(&trace.header()).expect("header"),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("WebSocket handshake");
    for message in [
        json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } }),
        json!({ "id": "1", "type": "subscribe", "payload": { "query": "subscription Joined { invitedUserJoined { id } }" } }),
        json!({ "type": "ping" }),
    ] {
        socket
            .send(Message::text(message.to_string()))
            .await
            .expect("send");
    }
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("an answer within 10 s")
            .expect("the socket is open")
            .expect("a frame");
        if let Message::Text(text) = frame {
            let message: Value = serde_json::from_str(&text).expect("JSON");
            assert_ne!(message["type"], "error", "{message}");
            if message["type"] == "pong" {
                break;
            }
        }
    }
    let _ = socket.close(None).await;
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn requests_are_traced_over_otlp_with_sql_spans_and_no_secrets() {
    let (otlp, received) = receiver().await;
    let database_url = helpers::file_database_url().await;
    let sqlite = database_url.starts_with("sqlite");
    let running = Running::start(&[
        ("DATABASE_URL", database_url.as_str()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.as_str()),
        ("OTEL_SERVICE_NAME", "phone-auth-under-test"),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment.name=otel-test",
        ),
        ("OTEL_EXPORTER_OTLP_HEADERS", "x-otel-test=yes"),
        // Nothing leaves before shutdown: the spans arrive only if the exit flushes them.
        ("OTEL_BSP_SCHEDULE_DELAY", "600000"),
        // Eight digits: a four-digit code could turn up by chance inside an id or a time.
        ("OTP_LENGTH", "8"),
    ]);
    let client = reqwest::Client::new();
    running.ready(&client).await;
    let base = running.base.as_str();

    let phone = "+79120000001";
    let other_phone = "+79120000002";

    // A named query without a token: traced, with the error's code.
    let me_trace = TraceParent::new();
    let refused = graphql(
        &client,
        base,
        &[("traceparent", me_trace.header())],
        json!({ "query": "query Me { me { id } }", "operationName": "Me" }),
    )
    .await;
    assert_eq!(
        refused["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{refused}"
    );

    let requested = graphql(
        &client,
        base,
        &[],
        json!({
            "query": "mutation RequestCode($phone: String!) { requestCode(phone: $phone) { phone devCode } }",
            "variables": { "phone": phone },
        }),
    )
    .await;
    let code = requested["data"]["requestCode"]["devCode"]
        .as_str()
        .unwrap_or_else(|| panic!("development exposes the code: {requested}"))
        .to_owned();

    // The sign-in, in the client's trace, with the client's request id.
    let verify_trace = TraceParent::new();
    let request_id = "otel-test-verify-1";
    let signed_in = graphql(
        &client,
        base,
        &[
            ("traceparent", verify_trace.header()),
            ("x-request-id", request_id.to_owned()),
        ],
        json!({
            "query": "mutation VerifyCode($phone: String!, $code: String!) { verifyCode(phone: $phone, code: $code) { accessToken refreshToken user { id phone inviteCode } } }",
            "variables": { "phone": phone, "code": code },
        }),
    )
    .await;
    let session = &signed_in["data"]["verifyCode"];
    let access = session["accessToken"]
        .as_str()
        .unwrap_or_else(|| panic!("signed in: {signed_in}"))
        .to_owned();
    let refresh = session["refreshToken"]
        .as_str()
        .expect("refresh")
        .to_owned();
    let invite = session["user"]["inviteCode"]
        .as_str()
        .expect("invite code")
        .to_owned();

    // Signed in; an anonymous operation with the phone written into the document; a batch.
    let me = graphql(
        &client,
        base,
        &[("authorization", format!("Bearer {access}"))],
        json!({ "query": "query Me { me { id phone } }" }),
    )
    .await;
    assert_eq!(me["data"]["me"]["phone"], phone, "{me}");
    let literal = graphql(
        &client,
        base,
        &[],
        json!({ "query": format!("mutation {{ requestCode(phone: \"{other_phone}\") {{ phone }} }}") }),
    )
    .await;
    assert_eq!(
        literal["data"]["requestCode"]["phone"], other_phone,
        "{literal}"
    );
    let batch = graphql(
        &client,
        base,
        &[],
        json!([{ "query": "query A { __typename }" }, { "query": "query B { __typename }" }]),
    )
    .await;
    assert!(batch.is_array(), "{batch}");

    // A body that is not JSON: refused before any operation, its code still on the span.
    let refused_trace = TraceParent::new();
    let status = client
        .post(format!("{base}/graphql"))
        .header("content-type", "application/json")
        .header("traceparent", refused_trace.header())
        .body(format!("{{\"query\": \"{phone}"))
        .send()
        .await
        .expect("the server answers")
        .status();
    assert_eq!(status, 400);

    // A subscription over a WebSocket whose upgrade request carries a traceparent.
    let socket_trace = TraceParent::new();
    subscribe_over_socket(base, &socket_trace, &access).await;

    let (status, stderr) = running.stop().await;
    assert!(status.success(), "exit status {status:?}:\n{stderr}");
    drop_database(&database_url).await;
    // The log lines are those of a server without traces: the request's log span, as ever.
    assert!(
        stderr.contains(&format!(
            "request{{request_id={request_id} method=POST path=/graphql}}"
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("otel."), "{stderr}");

    let spans = received.spans();
    assert!(
        !spans.is_empty(),
        "nothing exported (flush at shutdown):\n{stderr}"
    );
    // What a trace looks like (`--nocapture`).
    for (_, span) in &spans {
        let mut attrs: Vec<_> = attributes(&span.attributes).into_iter().collect();
        attrs.sort();
        eprintln!(
            "{} {} parent={} {:.2}ms {:?}",
            hex(&span.trace_id),
            span.name,
            hex(&span.parent_span_id),
            span.end_time_unix_nano
                .saturating_sub(span.start_time_unix_nano) as f64
                / 1e6,
            attrs
        );
    }
    let names: Vec<&str> = spans.iter().map(|(_, s)| s.name.as_str()).collect();
    // The standard variables the SDK reads: the resource's and the export's headers.
    for (resource, _) in &spans {
        assert_eq!(
            resource.get("service.name").map(String::as_str),
            Some("phone-auth-under-test")
        );
        assert_eq!(
            resource
                .get("deployment.environment.name")
                .map(String::as_str),
            Some("otel-test")
        );
    }
    let headers = received.headers.lock().expect("receiver lock").clone();
    assert!(
        !headers.is_empty() && headers.iter().all(|h| h.as_deref() == Some("yes")),
        "{headers:?}"
    );
    let find = |name: &str, trace: Option<&TraceParent>| {
        spans
            .iter()
            .map(|(_, span)| span)
            .find(|span| {
                span.name == name && trace.is_none_or(|t| hex(&span.trace_id) == t.trace_id)
            })
            .unwrap_or_else(|| panic!("no span {name:?} in {names:?}"))
    };

    // The refused query: named, in the client's trace, its error code recorded.
    let me_span = find("query Me", Some(&me_trace));
    assert_eq!(hex(&me_span.parent_span_id), me_trace.parent_id);
    let me_attributes = attributes(&me_span.attributes);
    assert_eq!(me_attributes["graphql.error.codes"], "UNAUTHENTICATED");
    assert_eq!(me_attributes["graphql.operation.type"], "query");
    assert_eq!(me_attributes["graphql.operation.name"], "Me");

    // The sign-in: the client's trace and parent, the request id, method, route, status.
    let verify = find("mutation VerifyCode", Some(&verify_trace));
    assert_eq!(hex(&verify.parent_span_id), verify_trace.parent_id);
    assert_eq!(verify.kind, SpanKind::Server as i32);
    let verify_attributes = attributes(&verify.attributes);
    assert_eq!(verify_attributes["request_id"], request_id);
    assert_eq!(verify_attributes["http.request.method"], "POST");
    assert_eq!(verify_attributes["http.route"], "/graphql");
    assert_eq!(verify_attributes["http.response.status_code"], "200");
    assert!(!verify_attributes.contains_key("graphql.error.codes"));

    // Its SQL: child spans inside its time, placeholders where the values were.
    let statements: Vec<&Span> = spans
        .iter()
        .map(|(_, span)| span)
        .filter(|span| span.parent_span_id == verify.span_id)
        .collect();
    assert!(
        statements.len() >= 3,
        "the sign-in's statements: {:?}",
        statements.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    let placeholder = if sqlite { "?" } else { "$1" };
    let mut with_values = 0;
    for statement in &statements {
        assert_eq!(
            statement.kind,
            SpanKind::Client as i32,
            "{}",
            statement.name
        );
        assert_eq!(statement.trace_id, verify.trace_id);
        assert!(
            statement.start_time_unix_nano >= verify.start_time_unix_nano
                && statement.end_time_unix_nano <= verify.end_time_unix_nano
                && statement.start_time_unix_nano <= statement.end_time_unix_nano,
            "{} runs within the request",
            statement.name
        );
        let statement_attributes = attributes(&statement.attributes);
        let sql = &statement_attributes["db.query.text"];
        assert_eq!(
            statement_attributes["db.system.name"],
            if sqlite { "sqlite" } else { "postgresql" }
        );
        assert!(
            sql.to_ascii_uppercase()
                .starts_with(&statement_attributes["db.operation.name"]),
            "{sql}"
        );
        if sql.contains(placeholder) {
            with_values += 1;
        }
    }
    assert!(
        with_values >= 2,
        "statements with bound values show placeholders"
    );
    assert!(
        statements.iter().any(|s| s.name.starts_with("SELECT ")
            || s.name.starts_with("INSERT ")
            || s.name.starts_with("UPDATE ")),
        "statements are named by keyword and table"
    );

    // The others: the signed-in query, the anonymous mutation, the batch.
    let named_me: Vec<_> = spans.iter().filter(|(_, s)| s.name == "query Me").collect();
    assert_eq!(named_me.len(), 2, "{names:?}");
    find("mutation", None);
    let batch_span = find("batch", None);
    assert_eq!(
        attributes(&batch_span.attributes)["graphql.batch.size"],
        "2"
    );
    find("GET /readyz", None);

    let unparsed = attributes(&find("POST /graphql", Some(&refused_trace)).attributes);
    assert_eq!(unparsed["graphql.error.codes"], "BAD_USER_INPUT");
    assert_eq!(unparsed["http.response.status_code"], "400");
    assert!(!unparsed.contains_key("graphql.operation.type"));

    // The socket's subscribe: in the upgrade request's trace, under its span.
    let upgrade = find("GET /graphql", Some(&socket_trace));
    assert_eq!(hex(&upgrade.parent_span_id), socket_trace.parent_id);
    assert_eq!(
        attributes(&upgrade.attributes)["http.response.status_code"],
        "101"
    );
    let subscribe = find("subscription Joined", Some(&socket_trace));
    assert_eq!(subscribe.parent_span_id, upgrade.span_id);
    assert_eq!(
        attributes(&subscribe.attributes)["request_id"],
        attributes(&upgrade.attributes)["request_id"]
    );
    // Only requests, their SQL and nothing else: no service spans, no log events.
    for (_, span) in &spans {
        assert!(span.events.is_empty(), "{} carries events", span.name);
        let kind = SpanKind::try_from(span.kind).expect("a span kind");
        assert!(
            matches!(kind, SpanKind::Server | SpanKind::Client),
            "{}: {kind:?}",
            span.name
        );
    }

    // No secret anywhere in what was sent: not in names, attributes or resource, in any form.
    let raw = received.raw();
    let digits = |p: &str| p.trim_start_matches('+').to_owned();
    let secrets = [
        phone.to_owned(),
        digits(phone),
        other_phone.to_owned(),
        digits(other_phone),
        code.clone(),
        access.clone(),
        refresh.clone(),
        invite.clone(),
    ];
    for secret in &secrets {
        assert!(
            !raw.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{secret} appears in the exported traces"
        );
    }
    // The refresh token's and access token's parts (a token split by the encoder).
    for part in access.split('.').chain(refresh.split('.')) {
        if part.len() >= 16 {
            assert!(
                !raw.windows(part.len()).any(|w| w == part.as_bytes()),
                "a token part appears in the exported traces"
            );
        }
    }
}

/// Off: the same binary without an endpoint exports nothing and says nothing of OpenTelemetry.
#[tokio::test]
async fn without_an_endpoint_nothing_is_exported() {
    let (otlp, received) = receiver().await;
    let database_url = helpers::file_database_url().await;
    let running = Running::start(&[
        ("DATABASE_URL", database_url.as_str()),
        // Everything but the endpoint.
        ("OTEL_SERVICE_NAME", "phone-auth-under-test"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "x-unused=1"),
        ("OTEL_BSP_SCHEDULE_DELAY", "10"),
    ]);
    let client = reqwest::Client::new();
    running.ready(&client).await;
    let trace = TraceParent::new();
    let requested = graphql(
        &client,
        &running.base,
        &[
            ("traceparent", trace.header()),
            ("x-request-id", "otel-off-1".to_owned()),
        ],
        json!({ "query": "mutation { requestCode(phone: \"+79120000004\") { phone } }" }),
    )
    .await;
    assert_eq!(requested["data"]["requestCode"]["phone"], "+79120000004");
    let (status, stderr) = running.stop().await;
    drop_database(&database_url).await;
    assert!(status.success(), "{stderr}");
    assert!(received.raw().is_empty(), "exported although off");
    assert!(!stderr.contains("OpenTelemetry"), "{stderr}");
    // No span of OpenTelemetry's is made: the request's log lines carry its log span alone.
    assert!(
        stderr.contains(
            "INFO request{request_id=otel-off-1 method=POST path=/graphql}:request_code{"
        ),
        "{stderr}"
    );
    assert!(
        !stderr.contains("otel.") && !stderr.contains("http.route"),
        "{stderr}"
    );
    let _ = otlp;
}

/// `OTEL_TRACES_SAMPLER` is the SDK's: `always_off` exports nothing, SQL spans included.
#[tokio::test]
async fn the_sampler_variable_is_honoured() {
    let (otlp, received) = receiver().await;
    let database_url = helpers::file_database_url().await;
    let running = Running::start(&[
        ("DATABASE_URL", database_url.as_str()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.as_str()),
        ("OTEL_TRACES_SAMPLER", "always_off"),
    ]);
    let client = reqwest::Client::new();
    running.ready(&client).await;
    let requested = graphql(
        &client,
        &running.base,
        &[],
        json!({ "query": "mutation { requestCode(phone: \"+79120000003\") { phone } }" }),
    )
    .await;
    assert_eq!(requested["data"]["requestCode"]["phone"], "+79120000003");
    let (status, stderr) = running.stop().await;
    drop_database(&database_url).await;
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("OpenTelemetry: exporting traces"),
        "{stderr}"
    );
    assert!(received.spans().is_empty(), "sampled out, yet exported");
}
