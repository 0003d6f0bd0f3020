//! Overload and shutdown: the GraphQL concurrency limit (`MAX_CONCURRENT_REQUESTS`) sheds with
//! 503, `Retry-After` and a contract error; `/readyz` answers 503 while the instance drains.
//! The fault harness (`faults/run`) drives the same rules under real load; see docs/faults.md.

use std::time::{Duration, Instant};

use axum::{body::Body, http::Request};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::helpers::*;

/// A POST to /graphql whose body is still arriving until the sender sends the rest and is
/// dropped.
fn held_request(
    app: &TestApp,
) -> (
    mpsc::Sender<Result<Vec<u8>, std::io::Error>>,
    tokio::task::JoinHandle<Response>,
) {
    let (tx, rx) = mpsc::channel(4);
    let request = Request::post("/graphql")
        .header("content-type", "application/json")
        .body(Body::from_stream(ReceiverStream::new(rx)))
        .expect("request");
    let router = app.router.clone();
    let handle = tokio::spawn(async move {
        use http_body_util::BodyExt;
        use tower::ServiceExt;
        let response = router.oneshot(request).await.expect("the router answers");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        Response {
            status,
            headers,
            body: serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        }
    });
    (tx, handle)
}

async fn until_in_flight(app: &TestApp, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.state.gate.in_flight() != n {
        assert!(
            Instant::now() < deadline,
            "{} in flight, expected {n}",
            app.state.gate.in_flight()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

const ME_QUERY: &str = r#"{"query":"{ __typename }"}"#;

#[tokio::test]
async fn a_full_server_sheds_graphql_with_503_retry_after_and_a_contract_error() {
    let app = TestApp::with_env(&[("MAX_CONCURRENT_REQUESTS", "2")]).await;
    // Two requests in flight (their places taken as a request takes them).
    let held: Vec<_> = (0..2)
        .map(|_| app.state.gate.try_admit().expect("a free place"))
        .collect();
    until_in_flight(&app, 2).await;

    // The third is refused at once, with the contract's shape and the request id.
    let started = Instant::now();
    let shed = app
        .post(
            &[
                ("content-type", "application/json"),
                ("x-request-id", "shed-probe-1"),
            ],
            ME_QUERY,
        )
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "shedding waited"
    );
    assert_eq!(shed.status, 503, "{:?}", shed.body);
    assert_eq!(
        shed.headers
            .get("retry-after")
            .map(|v| v.to_str().unwrap_or("")),
        Some("1")
    );
    assert_eq!(shed.headers["content-type"], "application/json");
    assert_code(&shed.body, "INTERNAL_SERVER_ERROR");
    assert_eq!(
        shed.body["errors"][0]["extensions"]["requestId"],
        "shed-probe-1"
    );
    assert_eq!(shed.body["errors"][0]["extensions"]["retryAfter"], 1);
    assert!(shed.body.get("data").is_none(), "{}", shed.body);
    // GET /graphql is behind the same limit.
    let shed_get = app.get("/graphql?query=%7B__typename%7D", &[]).await;
    assert_eq!(shed_get.status, 503, "{:?}", shed_get.body);

    // Health and metrics are not shed.
    assert_eq!(app.get("/healthz", &[]).await.status, 200);
    let metrics = app.get("/metrics", &[]).await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .body
            .as_str()
            .unwrap_or("")
            .contains("http_requests_shed_total"),
        "the shed counter is exported"
    );

    // The requests in flight finish, and their places come back.
    drop(held);
    until_in_flight(&app, 0).await;
    let after = app.gql("{ __typename }", json!({})).await;
    assert_eq!(after["data"]["__typename"], "Query", "{after}");
}

/// The limit counts requests in flight, not requests served: one place is enough for any number
/// of requests one after another, and one under the limit is never shed.
#[tokio::test]
async fn requests_under_the_limit_are_served() {
    let app = TestApp::with_env(&[("MAX_CONCURRENT_REQUESTS", "2")]).await;
    let held = app.state.gate.try_admit().expect("a free place");
    until_in_flight(&app, 1).await;
    for _ in 0..5 {
        let body = app.gql("{ __typename }", json!({})).await;
        assert_eq!(body["data"]["__typename"], "Query", "{body}");
    }
    until_in_flight(&app, 1).await;
    drop(held);
    until_in_flight(&app, 0).await;
}

/// A body still arriving takes no place (a client trickling bodies in cannot shut everyone
/// else out), and one that does not arrive within REQUEST_TIMEOUT_MS is answered 408.
#[tokio::test]
async fn a_body_still_arriving_takes_no_place_and_times_out() {
    let app = TestApp::with_env(&[
        ("MAX_CONCURRENT_REQUESTS", "1"),
        ("REQUEST_TIMEOUT_MS", "1500"),
    ])
    .await;
    let (first, first_done) = held_request(&app);
    let (second, second_done) = held_request(&app);
    first.send(Ok(b"{\"query\":".to_vec())).await.expect("send");
    second
        .send(Ok(b"{\"query\":".to_vec()))
        .await
        .expect("send");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        app.state.gate.in_flight(),
        0,
        "a trickling body holds a place"
    );
    // The one place is free for a whole request meanwhile.
    let body = app.gql("{ __typename }", json!({})).await;
    assert_eq!(body["data"]["__typename"], "Query", "{body}");

    // The first completes its body and is served; the second never does.
    first
        .send(Ok(br#""{ __typename }"}"#.to_vec()))
        .await
        .expect("send");
    drop(first);
    let served = first_done.await.expect("first");
    assert_eq!(served.status, 200, "{:?}", served.body);
    assert_eq!(served.body["data"]["__typename"], "Query");
    let started = Instant::now();
    let timed_out = second_done.await.expect("second");
    assert_eq!(timed_out.status, 408, "{:?}", timed_out.body);
    assert_code(&timed_out.body, "BAD_USER_INPUT");
    assert!(started.elapsed() < Duration::from_secs(3));
    drop(second);
}

/// `MAX_CONCURRENT_REQUESTS=0` turns the limit off.
#[tokio::test]
async fn a_limit_of_zero_sheds_nothing() {
    let app = TestApp::with_env(&[("MAX_CONCURRENT_REQUESTS", "0")]).await;
    let held: Vec<_> = (0..1000)
        .map(|_| app.state.gate.try_admit().expect("no limit"))
        .collect();
    let body = app.gql("{ __typename }", json!({})).await;
    assert_eq!(body["data"]["__typename"], "Query", "{body}");
    drop(held);
}

#[tokio::test]
async fn readyz_answers_503_while_draining_and_graphql_is_still_served() {
    let app = TestApp::spawn().await;
    let ready = app.get("/readyz", &[]).await;
    assert_eq!(ready.status, 200, "{:?}", ready.body);
    assert_eq!(ready.body["status"], "ok");

    app.state.gate.start_draining();
    let draining = app.get("/readyz", &[]).await;
    assert_eq!(draining.status, 503, "{:?}", draining.body);
    assert_eq!(draining.body["status"], "draining");
    assert_eq!(draining.body["database"], "ok");
    // Still serving: the balancer needs the drain time to notice.
    let body = app.gql("{ __typename }", json!({})).await;
    assert_eq!(body["data"]["__typename"], "Query", "{body}");
    assert_eq!(app.get("/healthz", &[]).await.status, 200);
}

#[test]
fn drain_defaults_to_zero_in_development_and_five_seconds_in_production() {
    use phone_auth::config::Config;
    let dev = Config::for_tests();
    assert_eq!(dev.lifecycle.drain, Duration::ZERO);
    assert_eq!(dev.lifecycle.shutdown_timeout, Duration::from_secs(30));
    let prod = Config::from_lookup(|key| match key {
        "APP_ENV" => Some("production".to_owned()),
        "JWT_SECRET" => Some("test-secret-test-secret-test-secret-0123456789".to_owned()),
        "SMS_PROVIDER" => Some("console".to_owned()),
        "OTP_EXPOSE" => Some("false".to_owned()),
        _ => None,
    });
    match prod {
        Ok(prod) => assert_eq!(prod.lifecycle.drain, Duration::from_secs(5)),
        Err(err) => panic!("production config: {err}"),
    }
    let set = Config::from_lookup(|key| match key {
        "SHUTDOWN_DRAIN_SECONDS" => Some("7".to_owned()),
        "SHUTDOWN_TIMEOUT_SECONDS" => Some("3".to_owned()),
        _ => None,
    })
    .expect("config");
    assert_eq!(set.lifecycle.drain, Duration::from_secs(7));
    assert_eq!(set.lifecycle.shutdown_timeout, Duration::from_secs(3));
}

#[test]
fn the_concurrency_limit_defaults_from_the_pool_and_never_below_128() {
    use phone_auth::config::Config;
    let with_pool = |pool: &str| {
        let pool = pool.to_owned();
        Config::from_lookup(move |key| (key == "DATABASE_MAX_CONNECTIONS").then(|| pool.clone()))
            .expect("config")
            .lifecycle
            .max_concurrent_requests
    };
    assert_eq!(with_pool("10"), 160);
    assert_eq!(with_pool("20"), 320);
    assert_eq!(with_pool("2"), 128);
    assert_eq!(with_pool("8"), 128);
    assert_eq!(with_pool("9"), 144);
    let off = Config::from_lookup(|key| (key == "MAX_CONCURRENT_REQUESTS").then(|| "0".to_owned()))
        .expect("config");
    assert_eq!(off.lifecycle.max_concurrent_requests, usize::MAX);
}

/// The pool never makes a request wait past its own time limit for a connection.
#[test]
fn the_pool_acquire_timeout_never_exceeds_the_request_timeout() {
    use phone_auth::config::Config;
    let with_timeout = |ms: &str| {
        let ms = ms.to_owned();
        Config::from_lookup(move |key| (key == "REQUEST_TIMEOUT_MS").then(|| ms.clone()))
            .expect("config")
            .database_acquire_timeout()
    };
    assert_eq!(with_timeout("800"), Duration::from_millis(800));
    assert_eq!(with_timeout("5000"), Duration::from_secs(5));
    assert_eq!(with_timeout("10000"), Duration::from_secs(5));
    assert_eq!(with_timeout("0"), Duration::from_secs(5));
}

/// A TCP forwarder between the app and PostgreSQL that can play a database outage: `down`
/// closes every forwarded connection and the listening port (connections are refused, as
/// with a stopped server); `up` listens on the same port again.
struct Outage {
    addr: std::net::SocketAddr,
    upstream: String,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Outage {
    async fn start(upstream: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut outage = Self {
            addr,
            upstream: upstream.to_owned(),
            task: None,
        };
        outage.serve(listener);
        outage
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let upstream = self.upstream.clone();
        self.task = Some(tokio::spawn(async move {
            let mut tasks = tokio::task::JoinSet::new();
            // Dropping this task (on `down`) drops the set, which aborts every forwarder.
            while let Ok((mut client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                tasks.spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        }));
    }

    fn down(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    async fn up(&mut self) {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_reuseaddr(true).expect("reuseaddr");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            // The aborted task may not have dropped its listener yet.
            match socket.bind(self.addr) {
                Ok(()) => break,
                Err(err) => {
                    assert!(Instant::now() < deadline, "cannot listen again: {err}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
        let listener = socket.listen(128).expect("listen");
        self.serve(listener);
    }
}

/// PostgreSQL goes away under the app and comes back: every request meanwhile is answered
/// within `REQUEST_TIMEOUT_MS` with a contract error carrying its request id, `/readyz` answers
/// 503, and within 2 s of the database returning the app is ready and serving again by itself.
#[tokio::test]
async fn a_database_outage_fails_fast_and_the_app_recovers_by_itself() {
    let Ok(admin) = std::env::var("TEST_DATABASE_URL") else {
        eprintln!("skipped: needs TEST_DATABASE_URL (PostgreSQL)");
        return;
    };
    if !admin.starts_with("postgres") {
        return;
    }
    let url = fresh_database_url().await;
    // postgres://user@host:port/db → the proxy's address in place of host:port.
    let after_scheme = url.find("://").expect("scheme") + 3;
    let slash = after_scheme + url[after_scheme..].find('/').expect("database name");
    let authority = &url[after_scheme..slash];
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(at) => (&authority[..=at], &authority[at + 1..]),
        None => ("", authority),
    };
    let mut outage = Outage::start(hostport).await;
    let proxied = format!(
        "{}{userinfo}{}{}",
        &url[..after_scheme],
        outage.addr,
        &url[slash..]
    );
    let timeout = Duration::from_millis(1500);
    let app = TestApp::with_database(&proxied, &[("REQUEST_TIMEOUT_MS", "1500")]).await;
    let session = app.sign_in(&phone(7001)).await;
    let me = "{ me { id } }";
    assert_ok(&app.gql_as(&session.access_token, me, json!({})).await);

    outage.down();
    let request_code = json!({
        "query": "mutation($p: String!) { requestCode(phone: $p) { phone } }",
        "variables": { "p": phone(7002) },
    })
    .to_string();
    for (n, body) in [request_code.clone(), json!({ "query": me }).to_string()]
        .into_iter()
        .cycle()
        .take(6)
        .enumerate()
    {
        let id = format!("outage-{n}");
        let auth = format!("Bearer {}", session.access_token);
        let started = Instant::now();
        let answer = app
            .post(
                &[
                    ("content-type", "application/json"),
                    ("x-request-id", &id),
                    ("authorization", &auth),
                ],
                body,
            )
            .await;
        let took = started.elapsed();
        assert!(
            took < timeout + Duration::from_millis(500),
            "request {n} waited {took:?} with the database down"
        );
        let code = error_code(&answer.body);
        assert!(
            matches!(
                code.as_deref(),
                Some("INTERNAL_SERVER_ERROR" | "UNAUTHENTICATED")
            ),
            "request {n}: {:?}",
            answer.body
        );
        if code.as_deref() == Some("INTERNAL_SERVER_ERROR") {
            assert_eq!(
                answer.body["errors"][0]["extensions"]["requestId"], id,
                "{:?}",
                answer.body
            );
        }
    }
    let started = Instant::now();
    let ready = app.get("/readyz", &[]).await;
    assert_eq!(ready.status, 503, "{:?}", ready.body);
    assert_eq!(ready.body["database"], "unreachable", "{:?}", ready.body);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "/readyz took {:?}",
        started.elapsed()
    );

    outage.up().await;
    let back = Instant::now();
    loop {
        let ready = app.get("/readyz", &[]).await;
        if ready.status == 200 {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(2),
            "not ready 2 s after the database returned: {:?}",
            ready.body
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "ready again {} ms after the database returned",
        back.elapsed().as_millis()
    );
    assert_ok(&app.gql_as(&session.access_token, me, json!({})).await);
    let code = app.request_code(&phone(7003)).await;
    assert_ok(&code);
}
