use std::time::Duration;

use axum::{Json, extract::State, http::StatusCode};
use serde_json::{Value, json};

use super::HttpState;

/// The process is up.
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Longest `/readyz` waits for the database: a balancer's check must get an answer, and a
/// database that cannot give a connection this fast is as good as down for this instance.
const PING_TIMEOUT: Duration = Duration::from_secs(1);

/// The database answers, this instance knows which sign-ins are revoked (while it does not,
/// it refuses every access token, so traffic is better sent elsewhere), and it is not draining
/// for a shutdown (SIGTERM: `SHUTDOWN_DRAIN_SECONDS`).
pub async fn readyz(State(state): State<HttpState>) -> (StatusCode, Json<Value>) {
    let draining = state.app.gate.is_draining();
    let database = match tokio::time::timeout(PING_TIMEOUT, crate::db::ping(&state.app.db)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) => Err(err.to_string()),
        Err(_) => Err(format!("no answer within {PING_TIMEOUT:?}")),
    };
    if let Err(err) = &database {
        tracing::warn!(error = %err, "readiness check failed");
    }
    let revocations = state.app.revocations.is_live();
    let ready = database.is_ok() && revocations && !draining;
    let body = json!({
        "status": if draining { "draining" } else if ready { "ok" } else { "unavailable" },
        "database": if database.is_ok() { "ok" } else { "unreachable" },
        "revocations": if revocations { "ok" } else { "catching up" },
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}
