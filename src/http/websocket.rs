//! `/graphql` upgraded to a WebSocket: graphql-transport-ws (the protocol of the `graphql-ws`
//! library Apollo Client and urql use), for subscriptions only. It holds the door HTTP holds:
//!
//! - the upgrade is refused (403) for an `Origin` the CORS rule refuses, and (429) past
//!   `WS_MAX_CONNECTIONS_PER_IP` sockets of one client;
//! - a frame or message over `MAX_BODY_BYTES` (and never over 16 MiB, even with the HTTP limit
//!   off) is refused by the WebSocket layer before it is read whole (close 1009); every message
//!   is decoded and its document parsed off the runtime threads (`spawn_blocking`);
//! - a peer that does not read gets at most about 1 MiB buffered (our messages and the pongs
//!   to its pings), then our next send fails and the socket closes;
//! - `connection_init` must come within `WS_INIT_TIMEOUT_SECONDS` (close 4408);
//! - queries and mutations get an `error` message and run nothing (their rules live on the
//!   HTTP door: 415, cross-site checks, request timeouts); at most `WS_MAX_OPERATIONS` live
//!   subscriptions per socket;
//! - the socket lasts as long as its access token: when it expires or its sign-in is revoked
//!   (on any instance) the socket is closed with 4401 within a second;
//! - the server pings every 30 s and drops a peer that stays silent for three pings;
//! - errors carry the contract's codes and the socket's request id, and are logged as HTTP's.
//!
//! async-graphql's own `GraphQLWebSocket` has no hook for most of this (no init timeout, no
//! way to close a live socket or refuse an operation with an `error` message), so the protocol
//! loop is here; operations still run through the shared [`crate::graphql::GraphqlExecutor`].

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_graphql::{Data, Executor, Request, Response, parser::types::OperationType};
use axum::{
    extract::{
        FromRequestParts, WebSocketUpgrade,
        ws::{CloseFrame, Message, WebSocket},
    },
    http::{StatusCode, header, request::Parts},
    response::{IntoResponse, Response as HttpResponse},
};
use futures_util::{
    SinkExt, StreamExt,
    stream::{self, AbortHandle, Abortable, BoxStream, SelectAll, SplitSink},
};
use serde_json::{Value as Json, json};
use tokio::time::Instant;
use tracing::Instrument;

use super::{
    HttpState, RequestId, cors,
    graphql::{MediaType, annotate, request_error},
};
use crate::{
    domain::client_ip::{ClientKey, client_key},
    error::code,
    graphql::{
        operation::selected_operation,
        viewer::{ClientIp, UserAgent, Viewer},
    },
    services::tokens::Liveness,
};

/// The only subprotocol spoken (`Sec-WebSocket-Protocol`).
const PROTOCOL: &str = "graphql-transport-ws";
/// How often the server pings.
const PING_EVERY: Duration = Duration::from_secs(30);
/// A peer that sent nothing (not even a pong) for this long is gone.
const SILENT_LIMIT: Duration = Duration::from_secs(3 * 30);
/// How often a socket re-checks its access token (expiry, revocation): a memory lookup.
const CREDENTIAL_CHECK_EVERY: Duration = Duration::from_millis(250);
/// A peer that does not take a message within this long (it stopped reading) is dropped:
/// a blocked send would also hold up the credential checks.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// The initial read buffer of each socket (tungstenite's advice for many connections with
/// little to read).
const SOCKET_READ_BUFFER_BYTES: usize = 4 * 1024;
/// The largest frame or message a socket reads, whatever `MAX_BODY_BYTES` says (0 turns the
/// HTTP limit off): tungstenite reserves a frame's announced length before reading it, so
/// without a cap one header announcing a terabyte would abort the process.
const SOCKET_MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
/// What a socket buffers before writing (tungstenite's default, stated because the cap below
/// must exceed it: tungstenite panics at the upgrade otherwise).
const SOCKET_WRITE_BUFFER_BYTES: usize = 128 * 1024;
/// The most a socket holds for a peer that does not read: our messages and tungstenite's
/// automatic pongs. Unbounded (tungstenite's default), a client that floods pings and never
/// reads grows the server's memory by what it uploads until the next ping of ours times out.
/// Past the cap a pong waits in place of the previous one and our own send fails, which closes
/// the socket. A subscription's messages are a few hundred bytes.
const SOCKET_MAX_WRITE_BUFFER_BYTES: usize = SOCKET_WRITE_BUFFER_BYTES + 1024 * 1024;
const _: () = assert!(SOCKET_MAX_WRITE_BUFFER_BYTES > SOCKET_WRITE_BUFFER_BYTES);

/// graphql-transport-ws close codes (and the standard 1009 "message too big").
mod close {
    pub const TOO_BIG: u16 = 1009;
    pub const TRY_AGAIN_LATER: u16 = 1013;
    pub const INVALID_MESSAGE: u16 = 4400;
    pub const UNAUTHORIZED: u16 = 4401;
    pub const INIT_TIMEOUT: u16 = 4408;
    pub const DUPLICATE_ID: u16 = 4409;
    pub const TOO_MANY_INITS: u16 = 4429;
}

/// Open sockets per client key, on this instance.
#[derive(Default)]
pub struct SocketCounts(Mutex<HashMap<ClientKey, usize>>);

impl SocketCounts {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ClientKey, usize>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One counted socket; dropping it (the socket ended) frees the place.
struct SocketSlot {
    state: HttpState,
    key: ClientKey,
}

impl SocketSlot {
    fn acquire(state: &HttpState, key: ClientKey) -> Option<Self> {
        let max = state.app.config.websocket.max_connections_per_client;
        let mut counts = state.sockets.lock();
        let count = counts.entry(key).or_default();
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(Self {
            state: state.clone(),
            key,
        })
    }
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        let mut counts = self.state.sockets.lock();
        if let Some(count) = counts.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

/// Answers an upgrade request: refused (403, 429, 400) or switched to a socket.
pub async fn upgrade(
    state: HttpState,
    mut parts: Parts,
    ip: ClientIp,
    request_id: RequestId,
) -> HttpResponse {
    let media = MediaType::negotiate(&parts.headers);
    let rid = request_id.0.clone();
    if !cors::origin_allowed(&state.app.config, parts.headers.get(header::ORIGIN)) {
        tracing::info!("WebSocket upgrade refused: origin not allowed");
        return refused(
            StatusCode::FORBIDDEN,
            code::FORBIDDEN,
            "This origin may not open a socket.",
            &rid,
        );
    }
    let speaks_protocol = parts
        .headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case(PROTOCOL));
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &state).await {
        Ok(upgrade) if speaks_protocol => upgrade,
        _ => {
            return request_error(
                StatusCode::BAD_REQUEST,
                media,
                "Not a graphql-transport-ws WebSocket handshake.",
                &rid,
            );
        }
    };
    let Some(slot) = SocketSlot::acquire(&state, client_key(ip.0, state.app.config.ip_v6_prefix))
    else {
        tracing::info!("WebSocket upgrade refused: too many sockets from this client");
        return refused(
            StatusCode::TOO_MANY_REQUESTS,
            code::RATE_LIMITED,
            "Too many open sockets from this address.",
            &rid,
        );
    };
    let user_agent = parts
        .headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let max = state
        .app
        .config
        .graphql
        .max_body_bytes
        .min(SOCKET_MAX_MESSAGE_BYTES);
    let span = tracing::info_span!("socket", request_id = %rid);
    // With OpenTelemetry on, the socket's operations join the upgrade request's trace.
    let trace = crate::otel::on().then(crate::otel::current_context);
    upgrade
        .protocols([PROTOCOL])
        // tungstenite allocates its read buffer up front, 128 KiB by default: with a few
        // hundred idle subscriptions open that was most of the heap (heaptrack, soak). A
        // socket here reads small graphql-ws messages; a larger one grows the buffer as needed.
        .read_buffer_size(SOCKET_READ_BUFFER_BYTES)
        .max_frame_size(max)
        .max_message_size(max)
        .write_buffer_size(SOCKET_WRITE_BUFFER_BYTES)
        .max_write_buffer_size(SOCKET_MAX_WRITE_BUFFER_BYTES)
        .on_upgrade(move |socket| {
            let connection = Connection {
                state,
                ip,
                request_id,
                user_agent: UserAgent(user_agent),
                _slot: slot,
            };
            let run = connection.run(socket).instrument(span);
            async move {
                match trace {
                    Some(cx) => crate::otel::in_context(cx, run).await,
                    None => run.await,
                }
            }
        })
        .into_response()
}

fn refused(status: StatusCode, error_code: &str, message: &str, request_id: &str) -> HttpResponse {
    let mut extensions = json!({ "code": error_code, "requestId": request_id });
    if error_code == code::RATE_LIMITED {
        extensions["retryAfter"] = json!(1);
    }
    let body = json!({ "errors": [{ "message": message, "extensions": extensions }] });
    (status, axum::Json(body)).into_response()
}

/// A client message, decoded (and a `subscribe`'s document parsed) off the runtime threads.
enum ClientMessage {
    Init(Json),
    Ping(Option<Json>),
    Pong,
    Subscribe {
        id: String,
        request: Box<Request>,
        kind: Result<OperationType, String>,
    },
    Complete(String),
    Invalid(String),
}

impl ClientMessage {
    async fn decode(text: axum::extract::ws::Utf8Bytes) -> Self {
        tokio::task::spawn_blocking(move || Self::decode_now(text.as_str()))
            .await
            .unwrap_or_else(|_| Self::Invalid("The message could not be read.".into()))
    }

    fn decode_now(text: &str) -> Self {
        let Ok(Json::Object(mut message)) = serde_json::from_str::<Json>(text) else {
            return Self::Invalid("A message is a JSON object.".into());
        };
        let id = match message.get("id") {
            Some(Json::String(id)) if !id.is_empty() => Some(id.clone()),
            _ => None,
        };
        let payload = message.remove("payload");
        match (message.get("type").and_then(Json::as_str), id) {
            (Some("connection_init"), _) => Self::Init(payload.unwrap_or(Json::Null)),
            (Some("ping"), _) => Self::Ping(payload),
            (Some("pong"), _) => Self::Pong,
            (Some("complete"), Some(id)) => Self::Complete(id),
            (Some("subscribe"), Some(id)) => {
                let Some(Ok(mut request)) = payload.map(serde_json::from_value::<Request>) else {
                    return Self::Invalid("A subscribe message carries a GraphQL request.".into());
                };
                let operation_name = request.operation_name.clone();
                let kind = match request.parsed_query() {
                    Ok(document) => selected_operation(document, operation_name.as_deref())
                        .map(|op| op.node.ty)
                        .ok_or_else(|| "Name the operation to run.".to_owned()),
                    Err(err) => Err(err.to_string()),
                };
                Self::Subscribe {
                    id,
                    request: Box::new(request),
                    kind,
                }
            }
            _ => Self::Invalid("Unknown or malformed message.".into()),
        }
    }
}

/// What the live operations produce.
enum Event {
    Next(String, Box<Response>),
    Done(String),
}

/// Why the socket ends.
struct Close(u16, &'static str);

type Sink = SplitSink<WebSocket, Message>;

struct Connection {
    state: HttpState,
    ip: ClientIp,
    request_id: RequestId,
    user_agent: UserAgent,
    _slot: SocketSlot,
}

impl Connection {
    async fn run(self, socket: WebSocket) {
        let (mut sink, mut incoming) = socket.split();
        let ended = self.serve(&mut sink, &mut incoming).await;
        match ended {
            Ok(()) => tracing::debug!("socket closed by the client"),
            Err(Close(code, reason)) => {
                tracing::info!(code, reason, "closing socket");
                let frame = CloseFrame {
                    code,
                    reason: reason.into(),
                };
                let _ = tokio::time::timeout(SEND_TIMEOUT, sink.send(Message::Close(Some(frame))))
                    .await;
            }
        }
        let _ = tokio::time::timeout(SEND_TIMEOUT, sink.close()).await;
    }

    async fn serve(
        &self,
        sink: &mut Sink,
        incoming: &mut futures_util::stream::SplitStream<WebSocket>,
    ) -> Result<(), Close> {
        let app = &self.state.app;
        let init = tokio::time::timeout(
            app.config.websocket.init_timeout,
            self.wait_for_init(sink, incoming),
        )
        .await;
        let payload = match init {
            Err(_) => {
                return Err(Close(
                    close::INIT_TIMEOUT,
                    "Connection initialisation timeout",
                ));
            }
            Ok(result) => match result? {
                Some(payload) => payload,
                None => return Ok(()),
            },
        };
        let authorization = payload
            .get("Authorization")
            .or_else(|| payload.get("authorization"))
            .and_then(Json::as_str);
        let viewer = Viewer::from_authorization(app, authorization);
        if let Viewer::Unverifiable = viewer {
            // A good token this instance cannot check now (its revocation feed is down): the
            // client reconnects later (1013), rather than holding a socket that answers errors.
            return Err(Close(
                close::TRY_AGAIN_LATER,
                "The server cannot check credentials now; reconnect",
            ));
        }
        let mut data = Data::default();
        data.insert(viewer);
        data.insert(self.ip);
        data.insert(self.request_id.clone());
        data.insert(self.user_agent.clone());
        let data = Arc::new(data);
        self.send(sink, json!({ "type": "connection_ack" })).await?;

        let mut operations: HashMap<String, AbortHandle> = HashMap::new();
        let mut streams: SelectAll<Abortable<BoxStream<'static, Event>>> = SelectAll::new();
        let mut ping = tokio::time::interval_at(Instant::now() + PING_EVERY, PING_EVERY);
        let mut check = tokio::time::interval(CREDENTIAL_CHECK_EVERY);
        let mut last_heard = Instant::now();
        loop {
            tokio::select! {
                biased;
                // First: nothing queued goes out once the token is dead. No leeway on its
                // expiry: this server's own clock decides, and the socket closes within a
                // check interval of it.
                _ = check.tick() => {
                    if let Viewer::User(access) = viewer {
                        match access.liveness(app, 0) {
                            Liveness::Live => {}
                            Liveness::Ended => {
                                return Err(Close(close::UNAUTHORIZED, "The access token expired or its sign-in was revoked"));
                            }
                            // Not 4401: graphql-ws clients treat that as final; 1013 they retry.
                            Liveness::Unknown => {
                                return Err(Close(close::TRY_AGAIN_LATER, "The server cannot check credentials now; reconnect"));
                            }
                        }
                    }
                }
                message = incoming.next() => {
                    last_heard = Instant::now();
                    let Some(text) = read_text(message)? else { return Ok(()) };
                    let Some(text) = text else { continue };
                    match ClientMessage::decode(text).await {
                        ClientMessage::Init(_) => {
                            return Err(Close(close::TOO_MANY_INITS, "Too many initialisation requests"));
                        }
                        ClientMessage::Ping(payload) => self.pong(sink, payload).await?,
                        ClientMessage::Pong => {}
                        ClientMessage::Invalid(reason) => {
                            tracing::debug!(reason, "invalid message");
                            return Err(Close(close::INVALID_MESSAGE, "Invalid message"));
                        }
                        ClientMessage::Complete(id) => {
                            if let Some(handle) = operations.remove(&id) {
                                handle.abort();
                            }
                        }
                        ClientMessage::Subscribe { id, request, kind } => {
                            if operations.contains_key(&id) {
                                return Err(Close(close::DUPLICATE_ID, "Subscriber for this id already exists"));
                            }
                            let refusal = match kind {
                                Err(message) => Some(message),
                                Ok(OperationType::Subscription) => None,
                                Ok(_) => Some("Only subscriptions run over the socket: send queries and mutations over HTTP.".to_owned()),
                            };
                            let refusal = refusal.or_else(|| {
                                let max = app.config.websocket.max_operations;
                                (operations.len() >= max).then(|| format!(
                                    "At most {max} operations may be live on one socket; complete one first."
                                ))
                            });
                            if let Some(message) = refusal {
                                self.send_error(sink, &id, &message).await?;
                                continue;
                            }
                            let (handle, registration) = AbortHandle::new_pair();
                            let done = id.clone();
                            // Its span covers the admission (named by the executor).
                            let span = if crate::otel::on() {
                                crate::otel::subscribe_span(&self.request_id.0)
                            } else {
                                tracing::Span::none()
                            };
                            let events = span
                                .in_scope(|| self.state.executor.execute_stream(*request, Some(data.clone())))
                                .map({
                                    let id = id.clone();
                                    move |response| Event::Next(id.clone(), Box::new(response))
                                })
                                .chain(stream::once(async move { Event::Done(done) }))
                                .boxed();
                            streams.push(Abortable::new(events, registration));
                            operations.insert(id, handle);
                        }
                    }
                }
                Some(event) = streams.next(), if !streams.is_empty() => match event {
                    Event::Next(id, response) => {
                        if operations.contains_key(&id) {
                            self.send_next(sink, &id, *response).await?;
                        }
                    }
                    Event::Done(id) => {
                        if operations.remove(&id).is_some() {
                            self.send(sink, json!({ "id": id, "type": "complete" })).await?;
                        }
                    }
                },
                _ = ping.tick() => {
                    if last_heard.elapsed() > SILENT_LIMIT {
                        return Err(Close(1001, "No answer to pings"));
                    }
                    send(sink, Message::Ping(Default::default())).await?;
                }
            }
        }
    }

    /// Reads until `connection_init` (answering pings). `None`: the client went away.
    async fn wait_for_init(
        &self,
        sink: &mut Sink,
        incoming: &mut futures_util::stream::SplitStream<WebSocket>,
    ) -> Result<Option<Json>, Close> {
        loop {
            let Some(text) = read_text(incoming.next().await)? else {
                return Ok(None);
            };
            let Some(text) = text else { continue };
            match ClientMessage::decode(text).await {
                ClientMessage::Init(payload) => return Ok(Some(payload)),
                ClientMessage::Ping(payload) => self.pong(sink, payload).await?,
                ClientMessage::Pong => {}
                ClientMessage::Subscribe { .. } | ClientMessage::Complete(_) => {
                    return Err(Close(close::UNAUTHORIZED, "Unauthorized"));
                }
                ClientMessage::Invalid(_) => {
                    return Err(Close(close::INVALID_MESSAGE, "Invalid message"));
                }
            }
        }
    }

    async fn pong(&self, sink: &mut Sink, payload: Option<Json>) -> Result<(), Close> {
        let mut pong = json!({ "type": "pong" });
        if let Some(payload) = payload {
            pong["payload"] = payload;
        }
        self.send(sink, pong).await
    }

    async fn send(&self, sink: &mut Sink, message: Json) -> Result<(), Close> {
        send(sink, Message::Text(message.to_string().into())).await
    }

    /// An `error` message: the operation was refused and ran nothing (no `complete` follows).
    async fn send_error(&self, sink: &mut Sink, id: &str, message: &str) -> Result<(), Close> {
        let rid = self.request_id.0.as_str();
        tracing::info!(operation = id, message, "socket operation refused");
        let error = json!({
            "message": message,
            "extensions": { "code": code::BAD_USER_INPUT, "requestId": rid },
        });
        self.send(
            sink,
            json!({ "id": id, "type": "error", "payload": [error] }),
        )
        .await
    }

    /// A `next` message, its errors annotated (and internal ones logged) as over HTTP; every
    /// error carries the socket's request id, since there is no response header to carry it.
    async fn send_next(
        &self,
        sink: &mut Sink,
        id: &str,
        mut response: Response,
    ) -> Result<(), Close> {
        let rid = self.request_id.0.as_str();
        for error in &mut response.errors {
            annotate(error, rid);
            error
                .extensions
                .get_or_insert_with(Default::default)
                .set("requestId", rid);
        }
        // Written straight from the response: a `serde_json::Value` would sort the payload's
        // keys and undo the selection order the executor restored.
        #[derive(serde::Serialize)]
        struct Next<'a> {
            id: &'a str,
            #[serde(rename = "type")]
            kind: &'static str,
            payload: &'a Response,
        }
        let next = Next {
            id,
            kind: "next",
            payload: &response,
        };
        match serde_json::to_string(&next) {
            Ok(text) => send(sink, Message::Text(text.into())).await,
            Err(err) => {
                tracing::error!(error = %err, "serialising a socket response failed");
                Err(Close(1011, "Internal error"))
            }
        }
    }
}

/// Sends one frame, giving up on a peer that does not take it within [`SEND_TIMEOUT`].
async fn send(sink: &mut Sink, message: Message) -> Result<(), Close> {
    match tokio::time::timeout(SEND_TIMEOUT, sink.send(message)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(Close(1001, "gone")),
        Err(_) => Err(Close(1008, "The client does not read its messages")),
    }
}

/// The next text message: `Ok(None)` when the socket ended, `Ok(Some(None))` for a frame that
/// carries nothing to read (WebSocket ping/pong; tungstenite answers pings itself).
fn read_text(
    message: Option<Result<Message, axum::Error>>,
) -> Result<Option<Option<axum::extract::ws::Utf8Bytes>>, Close> {
    match message {
        None | Some(Ok(Message::Close(_))) => Ok(None),
        Some(Ok(Message::Text(text))) => Ok(Some(Some(text))),
        Some(Ok(Message::Ping(_) | Message::Pong(_))) => Ok(Some(None)),
        Some(Ok(Message::Binary(_))) => Err(Close(close::INVALID_MESSAGE, "Send text messages")),
        Some(Err(err)) => {
            let too_big = err
                .into_inner()
                .downcast_ref::<tungstenite::Error>()
                .is_some_and(|e| matches!(e, tungstenite::Error::Capacity(_)));
            if too_big {
                Err(Close(close::TOO_BIG, "Message too big"))
            } else {
                Ok(None)
            }
        }
    }
}
