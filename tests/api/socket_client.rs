//! A graphql-transport-ws client for the tests: the router served on a real socket, a
//! connection acknowledged, operations started and their messages read.

#![allow(dead_code)]

use std::{net::SocketAddr, time::Duration};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream, connect_async,
    tungstenite::{self, Message, client::IntoClientRequest, http::HeaderValue},
};

use crate::helpers::TestApp;

pub type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// Serves the app's router on 127.0.0.1:0 for a real WebSocket client.
pub async fn serve(app: &TestApp) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    serve_on(app, listener)
}

/// Serves the app's router on `listener` (another address family, say).
pub fn serve_on(app: &TestApp, listener: tokio::net::TcpListener) -> SocketAddr {
    let addr = listener.local_addr().expect("addr");
    let router = app.router.clone();
    tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });
    addr
}

pub async fn next_json(socket: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("a message within 10 s")
            .expect("the socket is open")
            .expect("a frame");
        match message {
            Message::Text(text) => return serde_json::from_str(&text).expect("JSON message"),
            Message::Close(frame) => panic!("closed: {frame:?}"),
            _ => continue,
        }
    }
}

/// The upgrade request of a graphql-transport-ws client to the server at `addr`.
pub fn handshake_request(addr: SocketAddr) -> tungstenite::handshake::client::Request {
    let mut request = format!("ws://{addr}/graphql")
        .into_client_request()
        .expect("request");
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static("graphql-transport-ws"),
    );
    request
}

/// A graphql-transport-ws connection, acknowledged.
pub async fn connect(addr: SocketAddr, token: Option<&str>) -> Socket {
    let (mut socket, _) = connect_async(handshake_request(addr))
        .await
        .expect("WebSocket handshake");
    let payload = match token {
        Some(token) => json!({ "Authorization": format!("Bearer {token}") }),
        None => json!({}),
    };
    socket
        .send(Message::text(
            json!({ "type": "connection_init", "payload": payload }).to_string(),
        ))
        .await
        .expect("send init");
    assert_eq!(next_json(&mut socket).await["type"], "connection_ack");
    socket
}

/// Starts operation `id` (any operation type: the protocol carries queries and mutations too;
/// the server refuses all but subscriptions).
pub async fn start(socket: &mut Socket, id: &str, query: &str) {
    socket
        .send(Message::text(
            json!({ "id": id, "type": "subscribe", "payload": { "query": query } }).to_string(),
        ))
        .await
        .expect("send subscribe");
}

/// The next message of operation `id` (others' `complete` messages may come between).
pub async fn next_for(socket: &mut Socket, id: &str) -> Value {
    loop {
        let message = next_json(socket).await;
        if message["id"] == id {
            return message;
        }
    }
}

pub async fn subscribe(addr: SocketAddr, token: Option<&str>) -> Socket {
    let mut socket = connect(addr, token).await;
    start(
        &mut socket,
        "1",
        "subscription { invitedUserJoined { id phone activatedInviteCode } }",
    )
    .await;
    socket
}

/// Waits until `app` has `count` live subscriptions: the server registers a subscription
/// asynchronously after the subscribe message, and an event published before that is lost.
pub async fn wait_until_subscribed(app: &TestApp, count: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while app.state.invite_events.live_subscribers() < count {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{count} subscriptions not live within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The socket's TCP stream, for writing raw frames no client library would send.
pub fn raw_tcp(socket: &mut Socket) -> &mut tokio::net::TcpStream {
    let MaybeTlsStream::Plain(tcp) = socket.get_mut() else {
        panic!("a plain TCP socket")
    };
    tcp
}
