//! Health endpoints (no token needed): `alive` says the process answers; `ready` says this
//! node knows a leader, has applied everything that leader had committed (it could serve a
//! linearizable read right now), holds a keyring it can unwrap (it could seal and open
//! values), and the cluster's root token exists (bootstrap is complete).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::state::State;
use super::wire::{NotReady, ReadinessErrors, StatusOk, OK};

#[utoipa::path(
    get,
    path = "/api/v1/health/alive",
    tag = "health",
    operation_id = "alive",
    summary = "The process answers",
    responses((status = 200, description = "Alive.", body = StatusOk)),
)]
pub async fn alive() -> Json<StatusOk> {
    Json(OK)
}

#[utoipa::path(
    get,
    path = "/api/v1/health/ready",
    tag = "health",
    operation_id = "ready",
    summary = "This node could serve a linearizable read and seal values right now",
    description = "It knows a leader, has applied everything that leader committed, holds a keyring it can unwrap, and the cluster's root token exists.",
    responses(
        (status = 200, description = "Ready.", body = StatusOk),
        (status = 503, description = "Not ready: each failed check and why.", body = NotReady),
    ),
)]
pub async fn ready(state: State) -> Response {
    let mut errors = ReadinessErrors::default();
    match state.node.linearize().await {
        Err(e) => errors.raft = Some(e.to_string()),
        Ok(()) => match state.barrier.current_key_id() {
            Ok(Some(_)) => {
                if let Err(e) = state.barrier.verify_master_key() {
                    errors.keyring = Some(e.to_string());
                }
                // The bootstrap node creates the keyring, then the root token: until both
                // exist every authenticated call would get 401.
                match state.node.reader().bootstrapped() {
                    Ok(true) => {}
                    Ok(false) => {
                        errors.tokens =
                            Some("the root token is not created yet (cluster bootstrapping)".into())
                    }
                    Err(e) => errors.tokens = Some(e.to_string()),
                }
            }
            Ok(None) => errors.keyring = Some("not initialized yet (cluster bootstrapping)".into()),
            Err(e) => errors.keyring = Some(e.to_string()),
        },
    }
    if errors.keyring.is_none() && errors.raft.is_none() && errors.tokens.is_none() {
        Json(OK).into_response()
    } else {
        let body = NotReady {
            errors,
            status: "UNAVAILABLE",
        };
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}
