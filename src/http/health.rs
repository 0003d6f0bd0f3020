use axum::{Json, extract::State, http::StatusCode};
use serde_json::{Value, json};

use super::HttpState;

/// The process is up.
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// The database answers.
pub async fn readyz(State(state): State<HttpState>) -> (StatusCode, Json<Value>) {
    match crate::db::ping(&state.app.db).await {
        Ok(()) => (
            StatusCode::OK,
            Json(json!({ "status": "ok", "database": "ok" })),
        ),
        Err(err) => {
            tracing::warn!(error = %err, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "status": "unavailable", "database": "unreachable" })),
            )
        }
    }
}
