//! A fake SMS provider: a real HTTP server on 127.0.0.1:0 that records every request and
//! answers as the test says — accept, fail with 500, hang past any timeout, or refuse — so the
//! webhook and Twilio providers are tested over the wire, outages and recoveries included.

#![allow(dead_code)]

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, Method, StatusCode, Uri},
    response::{IntoResponse, Response},
};
use tokio::net::TcpListener;

/// How the fake answers the next requests.
#[derive(Clone, Debug)]
pub enum Mode {
    /// Accepts with `status` (200 for a webhook, 201 for Twilio) after `delay`.
    Accept { status: u16, delay: Duration },
    /// 500 Internal Server Error.
    Fail,
    /// Never answers in time (sleeps for a minute).
    Hang,
    /// Refuses with `status` and a JSON `body`.
    Refuse { status: u16, body: String },
}

impl Mode {
    pub fn accept() -> Self {
        Self::Accept {
            status: 200,
            delay: Duration::ZERO,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// True when the fake answered 2xx (the message counts as delivered).
    pub accepted: bool,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

#[derive(Default)]
struct Inner {
    mode: Mutex<Option<Mode>>,
    requests: Mutex<Vec<Recorded>>,
}

#[derive(Clone)]
pub struct FakeSms {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    inner: Arc<Inner>,
}

impl FakeSms {
    /// Starts the fake (accepting with 200) on the test's runtime.
    pub async fn start() -> Self {
        let inner = Arc::new(Inner::default());
        inner.set_mode(Mode::accept());
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("the fake binds a local port");
        let addr = listener.local_addr().expect("a local address");
        let app = Router::new().fallback(record).with_state(inner.clone());
        tokio::spawn(async move {
            axum::serve(listener, app).await.ok();
        });
        Self {
            url: format!("http://{addr}"),
            inner,
        }
    }

    pub fn set_mode(&self, mode: Mode) {
        self.inner.set_mode(mode);
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.inner.requests).clone()
    }

    /// The requests that were answered 2xx: the messages delivered.
    pub fn delivered(&self) -> Vec<Recorded> {
        self.requests().into_iter().filter(|r| r.accepted).collect()
    }
}

impl Inner {
    fn set_mode(&self, mode: Mode) {
        *lock(&self.mode) = Some(mode);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn record(
    State(inner): State<Arc<Inner>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mode = lock(&inner.mode).clone().unwrap_or_else(Mode::accept);
    let index = {
        let mut requests = lock(&inner.requests);
        requests.push(Recorded {
            method,
            path: uri.path().to_owned(),
            headers,
            body,
            accepted: false,
        });
        requests.len() - 1
    };
    match mode {
        Mode::Accept { status, delay } => {
            tokio::time::sleep(delay).await;
            lock(&inner.requests)[index].accepted = true;
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            (status, r#"{"sid":"SM00000000000000000000000000000000"}"#).into_response()
        }
        Mode::Fail => (StatusCode::INTERNAL_SERVER_ERROR, "provider down").into_response(),
        Mode::Hang => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            StatusCode::GATEWAY_TIMEOUT.into_response()
        }
        Mode::Refuse { status, body } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
            (status, body).into_response()
        }
    }
}
