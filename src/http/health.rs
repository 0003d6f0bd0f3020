use axum::{Json, extract::State, http::StatusCode};
use serde_json::{Value, json};

use super::HttpState;

/// The process is up.
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// The database answers, and this instance knows which sign-ins are revoked (while it does
/// not, it refuses every access token, so traffic is better sent elsewhere).
pub async fn readyz(State(state): State<HttpState>) -> (StatusCode, Json<Value>) {
    let database = crate::db::ping(&state.app.db).await;
    if let Err(err) = &database {
        tracing::warn!(error = %err, "readiness check failed");
    }
    let revocations = state.app.revocations.is_live();
    let body = json!({
        "status": if database.is_ok() && revocations { "ok" } else { "unavailable" },
        "database": if database.is_ok() { "ok" } else { "unreachable" },
        "revocations": if revocations { "ok" } else { "catching up" },
    });
    let status = if database.is_ok() && revocations {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}
