//! Health endpoints (no token needed): `alive` says the process answers; `ready` says this
//! node knows a leader and has applied everything that leader had committed, i.e. it could
//! serve a linearizable read right now.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::State;

pub async fn alive() -> Json<serde_json::Value> {
    Json(json!({"status": "OK"}))
}

pub async fn ready(state: State) -> Response {
    match state.node.linearize().await {
        Ok(()) => Json(json!({"status": "OK"})).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "UNAVAILABLE", "errors": {"raft": e.to_string()}})),
        )
            .into_response(),
    }
}
