//! The WebSocket door (`/graphql`, graphql-transport-ws) holds like the HTTP one: subscriptions
//! only, Origin checked, init timeout, frame size, caps, and a socket that ends with its
//! credentials (expiry, revocation, on any instance).

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::{
    connect_async,
    tungstenite::{self, Message, http::HeaderValue},
};

use crate::{
    helpers::{TestApp, assert_code, assert_ok, phone},
    socket_client::{
        Socket, connect, handshake_request, next_for, next_json, raw_tcp, serve, serve_on, start,
        subscribe, wait_until_subscribed,
    },
};

const JOINED: &str = "subscription { invitedUserJoined { id } }";

/// A handshake with `headers`; the HTTP status when it is refused.
async fn handshake(addr: SocketAddr, headers: &[(&str, &str)]) -> Result<Socket, u16> {
    handshake_with_body(addr, headers)
        .await
        .map_err(|(status, _)| status)
}

/// A graphql-transport-ws handshake with `headers` (`sec-websocket-protocol` among them unless
/// `headers` sets it); when refused, the HTTP status and the JSON body.
async fn handshake_with_body(
    addr: SocketAddr,
    headers: &[(&str, &str)],
) -> Result<Socket, (u16, Value)> {
    let mut request = handshake_request(addr);
    for (name, value) in headers {
        request.headers_mut().insert(
            tungstenite::http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
            HeaderValue::from_str(value).expect("value"),
        );
    }
    match connect_async(request).await {
        Ok((socket, _)) => Ok(socket),
        Err(tungstenite::Error::Http(response)) => {
            let body = response.body().as_deref().unwrap_or_default();
            let json = serde_json::from_slice(body).unwrap_or(Value::Null);
            Err((response.status().as_u16(), json))
        }
        Err(other) => panic!("handshake failed: {other}"),
    }
}

/// Reads until the server closes; the close code (`None`: the connection just ended).
async fn close_code(socket: &mut Socket, within: Duration) -> Option<u16> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let message = tokio::time::timeout_at(deadline, socket.next())
            .await
            .unwrap_or_else(|_| panic!("the socket stayed open for {within:?}"));
        match message {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => continue,
            None | Some(Err(_)) => return None,
        }
    }
}

/// The error of an `error` message for operation `id`.
async fn refused_operation(socket: &mut Socket, id: &str) -> Value {
    let message = next_for(socket, id).await;
    assert_eq!(message["type"], "error", "{message}");
    message["payload"][0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_and_mutations_over_the_socket_run_nothing() {
    let app = TestApp::spawn().await;
    let addr = serve(&app).await;
    let session = app.sign_in(&phone(1)).await;
    let mut socket = connect(addr, Some(&session.access_token)).await;

    let mutation = format!(
        r#"mutation {{ requestCode(phone: "{}") {{ phone }} }}"#,
        phone(2)
    );
    start(&mut socket, "1", &mutation).await;
    let error = refused_operation(&mut socket, "1").await;
    assert_eq!(error["extensions"]["code"], "BAD_USER_INPUT", "{error}");
    assert!(error["extensions"]["requestId"].is_string(), "{error}");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("send queries and mutations over HTTP")),
        "{error}"
    );
    start(&mut socket, "2", "mutation { logoutAll }").await;
    refused_operation(&mut socket, "2").await;
    start(&mut socket, "3", "{ me { id } }").await;
    refused_operation(&mut socket, "3").await;

    app.settle().await;
    assert!(app.sms.last_to(&phone(2)).is_none(), "a code was sent");
    // logoutAll did not run: the sign-in still works.
    assert_ok(
        &app.gql_as(&session.access_token, "{ me { id } }", json!({}))
            .await,
    );
    // The socket is still usable for a subscription.
    start(&mut socket, "4", JOINED).await;
    wait_until_subscribed(&app, 1).await;
    let invitee = app.sign_in(&phone(3)).await;
    assert_ok(&app.activate(&invitee, &session.invite_code).await);
    let event = next_for(&mut socket, "4").await;
    assert_eq!(event["type"], "next", "{event}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upgrade_checks_the_origin_like_cors() {
    let app = TestApp::with_env(&[("CORS_ALLOWED_ORIGINS", "https://app.example")]).await;
    let addr = serve(&app).await;
    let (status, body) = handshake_with_body(addr, &[("origin", "https://evil.example")])
        .await
        .expect_err("refused");
    assert_eq!(status, 403);
    assert_eq!(body["errors"][0]["extensions"]["code"], "FORBIDDEN");
    assert!(body["errors"][0]["extensions"].get("retryAfter").is_none());
    assert_eq!(
        handshake(addr, &[("origin", "null")]).await.err(),
        Some(403)
    );
    assert!(
        handshake(addr, &[("origin", "https://app.example")])
            .await
            .is_ok()
    );
    // No Origin: a mobile app or a server.
    assert!(handshake(addr, &[]).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_socket_is_closed_with_4408() {
    let app = TestApp::with_env(&[("WS_INIT_TIMEOUT_SECONDS", "1")]).await;
    let addr = serve(&app).await;
    let mut socket = handshake(addr, &[]).await.expect("handshake");
    let started = Instant::now();
    assert_eq!(
        close_code(&mut socket, Duration::from_secs(5)).await,
        Some(4408)
    );
    assert!(started.elapsed() >= Duration::from_millis(900));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2_mib_frame_closes_the_socket_and_the_server_stays_responsive() {
    let app = TestApp::spawn().await;
    let addr = serve(&app).await;
    let mut socket = connect(addr, None).await;
    let huge = format!(
        r#"{{"id":"1","type":"subscribe","payload":{{"query":"{}"}}}}"#,
        " ".repeat(2 * 1024 * 1024)
    );
    // The server may drop the connection while the frame is still being written.
    let _ = socket.send(Message::text(huge)).await;
    let code = close_code(&mut socket, Duration::from_secs(5)).await;
    assert!(matches!(code, Some(1009) | None), "closed with {code:?}");

    assert_still_serving(&app, addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_announcing_a_terabyte_is_refused_with_the_body_limit_off() {
    // MAX_BODY_BYTES=0 turns the HTTP limit off. The socket keeps a cap of its own: tungstenite
    // reserves a frame's announced length before reading it, so without one this header alone
    // would abort the process (and this test with it).
    let app = TestApp::with_env(&[("MAX_BODY_BYTES", "0")]).await;
    let addr = serve(&app).await;
    let mut socket = connect(addr, None).await;
    // A client's text frame header: FIN and text, masked with a 64-bit length, the length
    // (2^40 bytes), the mask key. No payload follows.
    let mut header = vec![0x81, 0x80 | 127];
    header.extend_from_slice(&(1u64 << 40).to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    raw_tcp(&mut socket)
        .write_all(&header)
        .await
        .expect("write the header");
    let code = close_code(&mut socket, Duration::from_secs(5)).await;
    assert!(matches!(code, Some(1009) | None), "closed with {code:?}");

    assert_still_serving(&app, addr).await;
}

/// The server is alive after a bad peer: a new socket is served and HTTP answers.
async fn assert_still_serving(app: &TestApp, addr: SocketAddr) {
    let mut other = connect(addr, None).await;
    start(&mut other, "1", JOINED).await;
    let message = next_for(&mut other, "1").await;
    assert_eq!(
        message["payload"]["errors"][0]["extensions"]["code"],
        "UNAUTHENTICATED"
    );
    assert_eq!(app.get("/healthz", &[]).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_pings_are_answered_pongs_are_taken_and_an_empty_id_is_invalid() {
    let app = TestApp::spawn().await;
    let addr = serve(&app).await;
    let mut socket = connect(addr, None).await;
    let send = |message: Value| Message::text(message.to_string());
    socket
        .send(send(json!({ "type": "ping", "payload": { "n": 1 } })))
        .await
        .expect("send ping");
    assert_eq!(
        next_json(&mut socket).await,
        json!({ "type": "pong", "payload": { "n": 1 } })
    );
    // An unsolicited pong is allowed (the protocol's heartbeat) and changes nothing.
    socket
        .send(send(json!({ "type": "pong" })))
        .await
        .expect("send pong");
    start(&mut socket, "1", JOINED).await;
    let message = next_for(&mut socket, "1").await;
    assert_eq!(
        message["payload"]["errors"][0]["extensions"]["code"],
        "UNAUTHENTICATED"
    );
    // An operation id may not be empty.
    socket
        .send(send(
            json!({ "id": "", "type": "subscribe", "payload": { "query": JOINED } }),
        ))
        .await
        .expect("send subscribe");
    assert_eq!(
        close_code(&mut socket, Duration::from_secs(5)).await,
        Some(4400)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_operations_per_socket_are_capped() {
    let app = TestApp::with_env(&[("WS_MAX_OPERATIONS", "2")]).await;
    let addr = serve(&app).await;
    let session = app.sign_in(&phone(1)).await;
    let mut socket = connect(addr, Some(&session.access_token)).await;
    start(&mut socket, "1", JOINED).await;
    start(&mut socket, "2", JOINED).await;
    start(&mut socket, "3", JOINED).await;
    let error = refused_operation(&mut socket, "3").await;
    assert_eq!(error["extensions"]["code"], "BAD_USER_INPUT", "{error}");
    // Completing one frees its place.
    socket
        .send(Message::text(
            json!({ "id": "1", "type": "complete" }).to_string(),
        ))
        .await
        .expect("complete");
    tokio::time::sleep(Duration::from_millis(100)).await;
    start(&mut socket, "4", JOINED).await;
    wait_until_subscribed(&app, 2).await;
    let invitee = app.sign_in(&phone(2)).await;
    assert_ok(&app.activate(&invitee, &session.invite_code).await);
    let event = next_for(&mut socket, "4").await;
    assert_eq!(event["type"], "next", "{event}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_per_client_are_capped() {
    let app = TestApp::with_env(&[("WS_MAX_CONNECTIONS_PER_IP", "2")]).await;
    let addr = serve(&app).await;
    let first = connect(addr, None).await;
    let _second = connect(addr, None).await;
    let (status, body) = handshake_with_body(addr, &[]).await.expect_err("refused");
    assert_eq!(status, 429);
    assert_eq!(body["errors"][0]["extensions"]["code"], "RATE_LIMITED");
    assert_eq!(body["errors"][0]["extensions"]["retryAfter"], 1);
    drop(first);
    // The place is freed when the server sees the socket end.
    let mut third = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if let Ok(socket) = handshake(addr, &[]).await {
            third = Some(socket);
            break;
        }
    }
    assert!(third.is_some(), "a closed socket kept its place");
    // Freeing one place kept the count of the others: two are open again, so no third.
    assert_eq!(handshake(addr, &[]).await.err(), Some(429));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_without_the_graphql_ws_subprotocol_is_refused() {
    let app = TestApp::spawn().await;
    let addr = serve(&app).await;
    for protocol in ["", "graphql-ws", "chat"] {
        let (status, body) = handshake_with_body(addr, &[("sec-websocket-protocol", protocol)])
            .await
            .expect_err("refused");
        assert_eq!(status, 400, "{protocol:?}");
        assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");
    }
}

/// The socket's viewer lasts as long as its access token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_closes_the_subscription_with_4401() {
    let app = TestApp::spawn().await;
    let addr = serve(&app).await;
    let session = app.sign_in(&phone(1)).await;
    let mut socket = subscribe(addr, Some(&session.access_token)).await;
    wait_until_subscribed(&app, 1).await;
    // Still open while the token is good.
    assert!(
        tokio::time::timeout(Duration::from_millis(500), socket.next())
            .await
            .is_err()
    );
    app.advance(900 + 10);
    let started = Instant::now();
    assert_eq!(
        close_code(&mut socket, Duration::from_secs(1)).await,
        Some(4401)
    );
    assert!(started.elapsed() < Duration::from_secs(1));
}

/// The socket closes at its token's `exp` by this server's clock, not after the leeway HTTP
/// allows for other clocks (the contract: within 1 s of expiry).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subscription_closes_at_the_tokens_expiry_without_leeway() {
    let app = TestApp::spawn().await;
    let addr = serve(&app).await;
    let session = app.sign_in(&phone(1)).await;
    let mut socket = subscribe(addr, Some(&session.access_token)).await;
    wait_until_subscribed(&app, 1).await;
    // A second before `exp` (ACCESS_TOKEN_TTL_SECONDS 900): still open.
    app.advance(899);
    assert!(
        tokio::time::timeout(Duration::from_millis(500), socket.next())
            .await
            .is_err()
    );
    // At `exp`: closed within a second, though HTTP would still take the token (leeway).
    app.advance(1);
    let started = Instant::now();
    assert_eq!(
        close_code(&mut socket, Duration::from_secs(1)).await,
        Some(4401)
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_ok(
        &app.gql_as(&session.access_token, "{ me { id } }", json!({}))
            .await,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_all_closes_the_subscription_with_4401() {
    let app = TestApp::spawn().await;
    let addr = serve(&app).await;
    let session = app.sign_in(&phone(1)).await;
    let mut socket = subscribe(addr, Some(&session.access_token)).await;
    wait_until_subscribed(&app, 1).await;
    assert_ok(
        &app.gql_as(&session.access_token, "mutation { logoutAll }", json!({}))
            .await,
    );
    assert_eq!(
        close_code(&mut socket, Duration::from_secs(1)).await,
        Some(4401)
    );
}

/// A subscription on instance A ends when instance B revokes its sign-in; B's revocation also
/// reaches A's HTTP door within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_on_one_instance_reaches_the_other_within_a_second() {
    let url = match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if url.starts_with("postgres") => crate::helpers::fresh_database_url().await,
        // One SQLite database is one process.
        _ => return,
    };
    let a = TestApp::with_database(&url, &[]).await;
    let b = TestApp::with_database(&url, &[]).await;
    let addr_a = serve(&a).await;
    let session = a.sign_in(&phone(1)).await;
    let mut socket = subscribe(addr_a, Some(&session.access_token)).await;
    wait_until_subscribed(&a, 1).await;
    assert_ok(
        &b.gql_as(&session.access_token, "{ me { id } }", json!({}))
            .await,
    );

    // logoutAll on B: A's socket closes, A refuses the token.
    assert_ok(
        &b.gql_as(&session.access_token, "mutation { logoutAll }", json!({}))
            .await,
    );
    let started = Instant::now();
    assert_eq!(
        close_code(&mut socket, Duration::from_secs(1)).await,
        Some(4401)
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_code(
        &a.gql_as(&session.access_token, "{ me { id } }", json!({}))
            .await,
        "UNAUTHENTICATED",
    );

    // A new sign-in, revoked by logout on A, is refused on B within a second.
    let fresh = b.sign_in(&phone(2)).await;
    assert_ok(
        &b.gql_as(&fresh.access_token, "{ me { id } }", json!({}))
            .await,
    );
    assert_ok(
        &a.gql(
            "mutation($t: String!) { logout(refreshToken: $t) }",
            json!({ "t": fresh.refresh_token }),
        )
        .await,
    );
    let started = Instant::now();
    loop {
        let body = b
            .gql_as(&fresh.access_token, "{ me { id } }", json!({}))
            .await;
        if body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "B still serves a revoked token"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The socket door over IPv6 too: same handshake, sockets counted per client address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_over_ipv6_are_served_and_counted_per_address() {
    let app = TestApp::with_env(&[("WS_MAX_CONNECTIONS_PER_IP", "1")]).await;
    let Ok(listener) = tokio::net::TcpListener::bind("[::1]:0").await else {
        eprintln!("no IPv6 loopback here; skipped");
        return;
    };
    let v6 = serve_on(&app, listener);
    let v4 = serve(&app).await;
    let _one = connect(v6, None).await;
    assert_eq!(handshake(v6, &[]).await.err(), Some(429));
    // Another address (127.0.0.1) has its own count.
    let mut socket = connect(v4, None).await;
    start(&mut socket, "1", JOINED).await;
    let message = next_for(&mut socket, "1").await;
    assert_eq!(
        message["payload"]["errors"][0]["extensions"]["code"],
        "UNAUTHENTICATED"
    );
}
