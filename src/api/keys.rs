//! `/keys`: the data keyring (`admin` scope). Showing the current key id, and rotating:
//! proposing key `current + 1`, which the state machine accepts only if no other rotation
//! got there first.

use axum::extract::{Extension, RawQuery};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::auth::Principal;
use super::error::ApiError;
use super::input::query;
use super::state::State;
use super::wire::{ErrorBody, KeyRotated, KeyStatus};
use crate::secret::token::Scope;
use crate::secret::{Command, CommandResult, Op};

/// How often a rotation retries after losing a race to a concurrent one.
const ROTATE_ATTEMPTS: usize = 5;

#[utoipa::path(
    get,
    path = "/api/v1/keys",
    tag = "keys",
    operation_id = "readKeys",
    summary = "The current data key",
    responses((status = 200, description = "The current data key's id.", body = KeyStatus)),
    security(("bearer" = ["admin"])),
)]
pub async fn show(
    state: State,
    Extension(who): Extension<Principal>,
    RawQuery(raw): RawQuery,
) -> Result<Json<KeyStatus>, ApiError> {
    who.require_unrestricted(Scope::Admin)?;
    query(raw, &[])?;
    let current = state.barrier.current_key_id()?;
    Ok(Json(KeyStatus {
        algorithm: "AES-256-GCM",
        current_key_id: current,
    }))
}

#[utoipa::path(
    post,
    path = "/api/v1/keys/rotate",
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
pub async fn rotate(
    state: State,
    Extension(who): Extension<Principal>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    who.require_unrestricted(Scope::Admin)?;
    query(raw, &[])?;
    for _ in 0..ROTATE_ATTEMPTS {
        let id = state.barrier.current_key_id()?.unwrap_or(0) + 1;
        let wrapped = state.barrier.new_wrapped_key(id)?;
        let op = Op::new(Command::AddDataKey { id, wrapped }, Some(who.caller()));
        match state.node.write(op).await? {
            CommandResult::KeyAdded { id } => {
                tracing::info!(key_id = id, by = %who.accessor, "data key rotated");
                return Ok(
                    (StatusCode::OK, Json(KeyRotated { current_key_id: id })).into_response()
                );
            }
            // Another rotation won the race; our view of `current` is stale. Try again once
            // this node has applied it.
            CommandResult::KeyConflict { .. } => state.node.linearize().await?,
            other => return Err(ApiError::unexpected("a key rotation", other)),
        }
    }
    Err(ApiError::Conflict {
        kind: "rotationConflict",
        detail: format!(
            "the data key changed under {ROTATE_ATTEMPTS} concurrent rotations in a row; try again"
        ),
    })
}
