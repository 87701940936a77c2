//! `/keys`: the data keyring (`admin` scope). Showing the current key id, and rotating:
//! proposing key `current + 1`, which the state machine accepts only if no other rotation
//! got there first.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::error::ApiError;
use super::input::Call;
use super::state::State;
use super::wire::{ErrorBody, KeyRotated, KeyStatus};
use crate::secret::token::Scope;

/// How often a rotation retries after losing a race to a concurrent one.
#[utoipa::path(
    get,
    path = "/keys",
    tag = "keys",
    operation_id = "readKeys",
    summary = "The current data key",
    responses((status = 200, description = "The current data key's id.", body = KeyStatus)),
    security(("bearer" = ["admin"])),
)]
pub async fn show(state: State, call: Call) -> Result<Json<KeyStatus>, ApiError> {
    call.who.require_unrestricted(Scope::Admin)?;
    call.query(&[])?;
    let current = state.service.current_key_id()?;
    Ok(Json(KeyStatus {
        algorithm: "AES-256-GCM",
        current_key_id: current,
    }))
}

#[utoipa::path(
    post,
    path = "/keys/rotate",
    tag = "keys",
    operation_id = "rotateKeys",
    summary = "Make a new data key current",
    description = "New values are sealed under it; values sealed under older keys still open.",
    responses(
        (status = 200, description = "The new current key.", body = KeyRotated),
        (status = 409, description = "Concurrent rotations kept winning the race (`type` `rotationConflict`).", body = ErrorBody),
    ),
    security(("bearer" = ["admin"])),
)]
/// Makes a new data key current; values sealed under older keys still open.
pub async fn rotate(state: State, call: Call) -> Result<Response, ApiError> {
    call.who.require_unrestricted(Scope::Admin)?;
    call.query(&[])?;
    match state.service.rotate_data_key(call.who.caller()).await? {
        Some(id) => {
            tracing::info!(key_id = id, by = %call.who.accessor, "data key rotated");
            Ok((StatusCode::OK, Json(KeyRotated { current_key_id: id })).into_response())
        }
        None => Err(ApiError::Conflict {
            kind: "rotationConflict",
            detail: "the data key changed under several concurrent rotations in a row; try again"
                .into(),
        }),
    }
}
