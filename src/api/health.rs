//! Health endpoints (no token needed): `alive` says the process answers; `ready` says this
//! node knows a leader, has applied everything that leader had committed (it could serve a
//! linearizable read right now), holds a keyring it can unwrap (it could seal and open
//! values), and the cluster's root token exists (bootstrap is complete). A ready answer lists
//! the raised NOSPACE alarm, if any (`raft::disk`): the node still serves reads, so it stays
//! ready, but writes that add data are refused.
//!
//! Invariant: anyone may call `ready`, so it costs the cluster at most one quorum round per
//! [`READY_FRESH`]: callers within that time share the last answer, and callers arriving
//! while a check runs wait for it (single flight) instead of starting their own.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::state::{AppState, State};
use super::wire::{NotReady, ReadinessErrors, Ready, StatusOk, OK};

#[utoipa::path(
    get,
    path = "/health/alive",
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
    path = "/health/ready",
    tag = "health",
    operation_id = "ready",
    summary = "This node could serve a linearizable read and seal values right now",
    description = "It knows a leader, has applied everything that leader committed, holds a keyring it can unwrap, and the cluster's root token exists.",
    responses(
        (status = 200, description = "Ready (with the raised alarms, if any: a NOSPACE alarm refuses writes that add data but not reads).", body = Ready),
        (status = 503, description = "Not ready: each failed check and why.", body = NotReady),
    ),
)]
pub async fn ready(state: State) -> Response {
    let errors = readiness(&state).await;
    if errors.is_ready() {
        let alarms = state
            .node
            .space_alarm()
            .map(|(id, r)| format!("NOSPACE: {}", r.detail(id)))
            .into_iter()
            .collect();
        Json(Ready {
            alarms,
            status: OK.status,
        })
        .into_response()
    } else {
        let body = NotReady {
            errors,
            status: "UNAVAILABLE",
        };
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}

/// What keeps this node from being ready (nothing when it is), checked at most once per
/// [`READY_FRESH`] (see the module doc). Vault's `sys/health` asks the same.
pub async fn readiness(state: &AppState) -> ReadinessErrors {
    let mut last = state.readiness.lock().await;
    match &*last {
        Some((at, errors)) if at.elapsed() < READY_FRESH => errors.clone(),
        _ => {
            let errors = check(state).await;
            *last = Some((Instant::now(), errors.clone()));
            errors
        }
    }
}

/// How long a readiness answer is reused.
pub const READY_FRESH: Duration = Duration::from_millis(500);

async fn check(state: &AppState) -> ReadinessErrors {
    let mut errors = ReadinessErrors::default();
    match state.service.linearize().await {
        Err(e) => errors.raft = Some(e.to_string()),
        Ok(current) => match state.barrier.current_key_id() {
            Ok(Some(_)) => {
                if let Err(e) = state.barrier.verify_master_key() {
                    errors.keyring = Some(e.to_string());
                }
                // The bootstrap node creates the keyring, then the root token: until both
                // exist every authenticated call would get 401.
                match state.service.bootstrapped(&current) {
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
    errors
}
