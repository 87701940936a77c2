//! A KV path's lifecycle beyond read and write: the metadata view (`GET /metadata/{path}`,
//! never values), the version cap (`PUT /metadata/{path}` `{"maxVersions": N}`), removing a
//! path with all its versions (`DELETE /metadata/{path}`), and undelete / destroy of
//! versions (`POST /undelete/{path}`, `POST /destroy/{path}` with `{"versions": [..]}`).
//!
//! Invariants:
//! - Reading needs `read:secret` on the path, every change `write:secret`; the view holds
//!   times and states only, never a value.
//! - Every change is one Raft command applied by [`crate::secret::versions`]; bad input is
//!   refused here, before anything is proposed.
//! - Paths under an ondemand mount have no versions: these calls answer 400 there.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::Value;

use super::error::ApiError;
use super::input::Call;
use super::input::{json_int, json_object, required};
use super::state::{AppState, State};
use super::wire::{
    ErrorBody, MaxVersionsSet, MaxVersionsSetData, MetadataView, PathMetadata, SetMaxVersions,
    VersionList, VersionState, VersionsChanged, VersionsChangedData,
};
use super::wire::{RequestIdHeader, SecretPathParam};
use crate::secret::token::Scope;
use crate::secret::versions::MAX_MAX_VERSIONS;
use crate::secret::SecretPath;
use crate::service::{VersionChange, View};
use crate::time::rfc3339;

const METADATA: &str = "/api/v1/metadata/";
const UNDELETE: &str = "/api/v1/undelete/";
const DESTROY: &str = "/api/v1/destroy/";
const MAX_BODY: usize = 64 * 1024;
/// Most versions one undelete or destroy may name.
pub const MAX_LISTED_VERSIONS: usize = 1000;

/// Refuses a path under an ondemand mount, as `view` sees the mounts: current for a read;
/// this node's own state for a change (under a mount there is nothing for it to find where
/// it applies).
fn not_under_mount(state: &AppState, view: &impl View, path: &SecretPath) -> Result<(), ApiError> {
    match state.service.mount_covering(view, path)? {
        Some((mount, _)) => Err(ApiError::bad_request(format!(
            "'{path}' is under the ondemand mount '{mount}', which keeps no versions"
        ))),
        None => Ok(()),
    }
}

/// The one field `field` of an object body.
fn object_body(bytes: &[u8], field: &str) -> Result<Value, ApiError> {
    let mut body = json_object(bytes, &[field], "a JSON object")?;
    required(&mut body, field)
}

#[utoipa::path(
    get,
    path = "/api/v1/metadata/{path}",
    tag = "metadata",
    operation_id = "readMetadata",
    summary = "A path's versions: times and states, never values",
    params(SecretPathParam),
    responses(
        (status = 200, description = "The path's metadata.", body = MetadataView),
        (status = 400, description = "A bad path or query; the path is under an ondemand mount.", body = ErrorBody),
        (status = 404, description = "No such path.", body = ErrorBody),
    ),
    security(("bearer" = ["read:secret"])),
)]
/// `GET /metadata/{path}`.
pub async fn get(state: State, call: Call) -> Result<Response, ApiError> {
    let at = call.current()?;
    let path = call.path(METADATA)?;
    call.who.require_path(Scope::ReadSecret, &path)?;
    call.query(&[])?;
    not_under_mount(&state, at, &path)?;
    let Some(view) = state.service.versions(at, &path)? else {
        return Err(ApiError::NotFound(format!("secret '{path}' not found")));
    };
    let versions = view
        .versions
        .iter()
        .map(|v| VersionState {
            created_at: rfc3339(v.created_at_ms),
            deleted_at: v.deleted_at_ms.map(rfc3339),
            destroyed: v.destroyed,
            version: v.version,
        })
        .collect();
    Ok(Json(MetadataView {
        data: PathMetadata {
            created_at: view.meta.as_ref().map(|m| rfc3339(m.created_at_ms)),
            current_version: view.meta.as_ref().map_or(0, |m| m.current_version),
            max_versions: view.max_versions,
            oldest_version: view.versions.first().map_or(0, |v| v.version),
            path: path.as_str().to_string(),
            updated_at: view.meta.as_ref().map(|m| rfc3339(m.updated_at_ms)),
            versions,
        },
    })
    .into_response())
}

#[utoipa::path(
    put,
    path = "/api/v1/metadata/{path}",
    tag = "metadata",
    operation_id = "setMaxVersions",
    summary = "Set how many versions the path keeps",
    description = "Older versions beyond the cap are removed now, and as new ones are written.",
    params(SecretPathParam, RequestIdHeader),
    request_body(content = SetMaxVersions),
    responses(
        (status = 200, description = "The cap, and how many versions it removed.", body = MaxVersionsSet),
        (status = 404, description = "No such path.", body = ErrorBody),
        (status = 400, description = "A bad path, query or body; the path is under an ondemand mount.", body = ErrorBody),
        (status = 413, description = "The body is larger than 64 KiB.", body = ErrorBody),
    ),
    security(("bearer" = ["write:secret"])),
)]
/// `PUT /metadata/{path}` `{"maxVersions": N}`.
pub async fn put(state: State, mut call: Call) -> Result<Response, ApiError> {
    let path = call.path(METADATA)?;
    call.who.require_path(Scope::WriteSecret, &path)?;
    call.query(&[])?;
    let bytes = call.body(MAX_BODY).await?;
    let origin = call.origin(&state, &format!("PUT metadata/{path}"), &bytes)?;
    let max = object_body(&bytes, "maxVersions")?;
    let max_versions = match json_int(&max) {
        Some(n) if (1..=MAX_MAX_VERSIONS).contains(&n) => n,
        _ => {
            return Err(ApiError::invalid_field(
                "invalidField",
                "/maxVersions",
                format!("field 'maxVersions' must be an integer from 1 to {MAX_MAX_VERSIONS}"),
            ))
        }
    };
    not_under_mount(&state, &state.service.local(), &path)?;
    match state
        .service
        .set_max_versions(origin, &path, max_versions)
        .await?
    {
        // A cap on a path that has never been written: nothing to cap. (This used to be a
        // 500.)
        None => Err(ApiError::NotFound(format!("secret '{path}' not found"))),
        Some(pruned) => Ok(Json(MaxVersionsSet {
            data: MaxVersionsSetData {
                max_versions,
                path: path.as_str().to_string(),
                pruned,
            },
        })
        .into_response()),
    }
}

#[utoipa::path(
    delete,
    path = "/api/v1/metadata/{path}",
    tag = "metadata",
    operation_id = "deleteMetadata",
    summary = "Remove a path and every version, for good",
    params(SecretPathParam, RequestIdHeader),
    responses(
        (status = 204, description = "Removed."),
        (status = 400, description = "A bad path or query; the path is under an ondemand mount.", body = ErrorBody),
        (status = 404, description = "No such path.", body = ErrorBody),
    ),
    security(("bearer" = ["write:secret"])),
)]
/// `DELETE /metadata/{path}`: the path and every version, for good.
pub async fn delete(state: State, call: Call) -> Result<Response, ApiError> {
    let path = call.path(METADATA)?;
    call.who.require_path(Scope::WriteSecret, &path)?;
    call.query(&[])?;
    let origin = call.origin(&state, &format!("DELETE metadata/{path}"), b"")?;
    not_under_mount(&state, &state.service.local(), &path)?;
    if state.service.delete_metadata(origin, &path).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::NotFound(format!("secret '{path}' not found")))
    }
}

/// `POST /undelete/{path}` and `POST /destroy/{path}` with `{"versions": [..]}`.
async fn versions_call(state: State, mut call: Call, destroy: bool) -> Result<Response, ApiError> {
    let path = call.path(if destroy { DESTROY } else { UNDELETE })?;
    call.who.require_path(Scope::WriteSecret, &path)?;
    call.query(&[])?;
    let what = if destroy {
        "POST destroy"
    } else {
        "POST undelete"
    };
    let bytes = call.body(MAX_BODY).await?;
    let origin = call.origin(&state, &format!("{what}/{path}"), &bytes)?;
    let listed = object_body(&bytes, "versions")?;
    let bad = || {
        ApiError::invalid_field(
            "invalidField",
            "/versions",
            format!(
                "field 'versions' must be a non-empty array of at most {MAX_LISTED_VERSIONS} integers >= 1"
            ),
        )
    };
    let versions: Vec<u64> = match listed {
        Value::Array(a) if !a.is_empty() && a.len() <= MAX_LISTED_VERSIONS => a
            .iter()
            .map(|v| json_int(v).filter(|n| *n >= 1).ok_or_else(bad))
            .collect::<Result<_, _>>()?,
        _ => return Err(bad()),
    };
    not_under_mount(&state, &state.service.local(), &path)?;
    let change = if destroy {
        VersionChange::Destroy
    } else {
        VersionChange::Undelete
    };
    match state
        .service
        .change_versions(origin, change, &path, versions)
        .await?
    {
        Some(versions) => Ok(Json(VersionsChanged {
            data: VersionsChangedData {
                path: path.as_str().to_string(),
                versions,
            },
        })
        .into_response()),
        None => Err(ApiError::NotFound(format!("secret '{path}' not found"))),
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/undelete/{path}",
    tag = "metadata",
    operation_id = "undeleteVersions",
    summary = "Bring deleted versions back",
    params(SecretPathParam, RequestIdHeader),
    request_body(content = VersionList),
    responses(
        (status = 200, description = "The versions undeleted (the others named were absent, destroyed or not deleted).", body = VersionsChanged),
        (status = 400, description = "A bad path, query or body; the path is under an ondemand mount.", body = ErrorBody),
        (status = 404, description = "No such path.", body = ErrorBody),
        (status = 413, description = "The body is larger than 64 KiB.", body = ErrorBody),
    ),
    security(("bearer" = ["write:secret"])),
)]
pub async fn undelete(state: State, call: Call) -> Result<Response, ApiError> {
    versions_call(state, call, false).await
}

#[utoipa::path(
    post,
    path = "/api/v1/destroy/{path}",
    tag = "metadata",
    operation_id = "destroyVersions",
    summary = "Destroy versions' values for good (their metadata stays)",
    params(SecretPathParam, RequestIdHeader),
    request_body(content = VersionList),
    responses(
        (status = 200, description = "The versions destroyed (the others named were absent or already destroyed).", body = VersionsChanged),
        (status = 400, description = "A bad path, query or body; the path is under an ondemand mount.", body = ErrorBody),
        (status = 404, description = "No such path.", body = ErrorBody),
        (status = 413, description = "The body is larger than 64 KiB.", body = ErrorBody),
    ),
    security(("bearer" = ["write:secret"])),
)]
pub async fn destroy(state: State, call: Call) -> Result<Response, ApiError> {
    versions_call(state, call, true).await
}
