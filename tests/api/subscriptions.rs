//! `invitedUserJoined` over graphql-transport-ws: delivery, authentication, and delivery
//! across instances (PostgreSQL LISTEN/NOTIFY).

use std::{net::SocketAddr, time::Duration};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream, connect_async,
    tungstenite::{Message, client::IntoClientRequest, http::HeaderValue},
};

use crate::helpers::{Session, TestApp, assert_ok, phone};

pub type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// Serves the app's router on 127.0.0.1:0 for a real WebSocket client.
pub async fn serve(app: &TestApp) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
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

/// A graphql-transport-ws connection, acknowledged.
pub async fn connect(addr: SocketAddr, token: Option<&str>) -> Socket {
    let mut request = format!("ws://{addr}/graphql")
        .into_client_request()
        .expect("request");
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static("graphql-transport-ws"),
    );
    let (mut socket, _) = connect_async(request).await.expect("WebSocket handshake");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inviter_hears_each_activation_of_their_code() {
    let app = TestApp::spawn().await;
    let addr = serve(&app).await;
    let inviter = app.sign_in(&phone(1)).await;
    let bystander = app.sign_in(&phone(9)).await;
    let mut inviter_socket = subscribe(addr, Some(&inviter.access_token)).await;
    let mut bystander_socket = subscribe(addr, Some(&bystander.access_token)).await;
    wait_until_subscribed(&app, 2).await;

    let invitee: Session = app.sign_in(&phone(2)).await;
    assert_ok(&app.activate(&invitee, &inviter.invite_code).await);

    let event = next_json(&mut inviter_socket).await;
    assert_eq!(event["type"], "next", "{event}");
    assert_eq!(event["id"], "1");
    let user = &event["payload"]["data"]["invitedUserJoined"];
    assert_eq!(user["phone"], phone(2));
    assert_eq!(user["activatedInviteCode"], inviter.invite_code.as_str());

    // Nobody else is told: when the bystander's own code is activated next, that is the first
    // event the bystander hears (events reach a subscriber in order, so an event about the
    // inviter's invitee would have come first).
    let own_invitee = app.sign_in(&phone(3)).await;
    assert_ok(&app.activate(&own_invitee, &bystander.invite_code).await);
    let event = next_json(&mut bystander_socket).await;
    assert_eq!(
        event["payload"]["data"]["invitedUserJoined"]["phone"],
        phone(3),
        "{event}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribing_needs_a_valid_access_token() {
    let app = TestApp::spawn().await;
    let addr = serve(&app).await;
    for token in [None, Some("not-a-token")] {
        let mut socket = subscribe(addr, token).await;
        // The resolver refuses: a `next` carrying the error, then the operation completes.
        let message = next_json(&mut socket).await;
        assert_eq!(message["type"], "next", "{message}");
        assert!(message["payload"]["data"].is_null(), "{message}");
        assert_eq!(
            message["payload"]["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
            "{message}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activations_on_one_instance_reach_subscribers_on_another() {
    let url = match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if url.starts_with("postgres") => crate::helpers::fresh_database_url().await,
        // One SQLite database is one process: cross-instance delivery is a PostgreSQL feature.
        _ => return,
    };
    let a = TestApp::with_database(&url, &[]).await;
    let b = TestApp::with_database(&url, &[]).await;
    let addr_a = serve(&a).await;
    let inviter = a.sign_in(&phone(1)).await;
    let mut socket = subscribe(addr_a, Some(&inviter.access_token)).await;
    wait_until_subscribed(&a, 1).await;

    let invitee = b.sign_in(&phone(2)).await;
    assert_ok(&b.activate(&invitee, &inviter.invite_code).await);
    let event = next_json(&mut socket).await;
    assert_eq!(
        event["payload"]["data"]["invitedUserJoined"]["phone"],
        phone(2),
        "{event}"
    );
}
