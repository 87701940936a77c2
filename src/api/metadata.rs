//! A KV path's lifecycle beyond read and write: the metadata view (`GET /metadata/{path}`,
//! never values), the version cap and custom metadata (`PUT /metadata/{path}`
//! `{"maxVersions": N, "customMetadata": {..}}`, either or both; `PATCH` merges into the
//! custom metadata, `null` removing a key), removing a path with all its versions and
//! metadata (`DELETE /metadata/{path}`), and undelete / destroy of versions
//! (`POST /undelete/{path}`, `POST /destroy/{path}` with `{"versions": [..]}`).
//!
//! Invariants:
//! - Reading needs `read:secret` on the path, every change `write:secret`; the view holds
//!   times, states and the custom metadata, never a value.
//! - Custom metadata follows [`crate::secret::custom`]: Vault's limits, each refusal naming
//!   the key (never a value), sealed at rest, a PATCH atomic against concurrent writers. A
//!   path may have it before any version; a PATCH needs the path to have metadata.
//! - Every change is one Raft command applied by [`crate::secret::versions`]; bad input is
//!   refused here, before anything is proposed.
//! - Paths under an ondemand mount have no versions: these calls answer 400 there.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::body::parse;
use super::error::ApiError;
use super::input::Call;
use super::state::{AppState, State};
use super::wire::{
    ErrorBody, MetadataSet, MetadataSetData, MetadataView, PatchMetadata, PathMetadata,
    VersionList, VersionState, VersionsChanged, VersionsChangedData, WriteMetadata,
};
use super::wire::{RequestIdHeader, SecretPathParam};
use crate::secret::custom;
use crate::secret::token::Scope;
use crate::secret::SecretPath;
use crate::service::{CustomChange, MetadataChange, MetadataOutcome, VersionChange, View};
use crate::time::rfc3339;

const METADATA: &str = "/api/v1/metadata/";
const UNDELETE: &str = "/api/v1/undelete/";
const DESTROY: &str = "/api/v1/destroy/";
const MAX_BODY: usize = 64 * 1024;

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

#[utoipa::path(
    get,
    path = "/metadata/{*path}",
    tag = "metadata",
    operation_id = "readMetadata",
    summary = "A path's versions: times and states, never values",
    params(SecretPathParam),
    responses(
        (status = 200, description = "The path's metadata and custom metadata.", body = MetadataView),
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
    let custom_metadata = state
        .service
        .custom_metadata(&view, &path)?
        .unwrap_or_default();
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
            custom_metadata,
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
    path = "/metadata/{*path}",
    tag = "metadata",
    operation_id = "writeMetadata",
    summary = "Set how many versions the path keeps, and/or its custom metadata",
    description = "Older versions beyond the cap are removed now, and as new ones are written. `customMetadata` replaces the whole map (at most 64 keys of 1-128 bytes, values of 1-512 bytes, printable); a path may get it before its first version. Both in one request are applied together.",
    params(SecretPathParam, RequestIdHeader),
    request_body(content = WriteMetadata),
    responses(
        (status = 200, description = "What was set, and how many versions a new cap removed.", body = MetadataSet),
        (status = 400, description = "A bad path, query or body (each refusal names the field or the custom metadata key); the path is under an ondemand mount.", body = ErrorBody),
        (status = 404, description = "No such path.", body = ErrorBody),
        (status = 413, description = "The body is larger than 64 KiB.", body = ErrorBody),
    ),
    security(("bearer" = ["write:secret"])),
)]
/// `PUT /metadata/{path}` `{"maxVersions": N, "customMetadata": {..}}` (either or both).
pub async fn put(state: State, call: Call) -> Result<Response, ApiError> {
    write(state, call, false).await
}

#[utoipa::path(
    patch,
    path = "/metadata/{*path}",
    tag = "metadata",
    operation_id = "patchMetadata",
    summary = "Merge into the path's custom metadata (and/or set its version cap)",
    description = "`customMetadata` is merged into the stored map: a string sets its key, `null` removes it. The merge is atomic: a concurrent change makes it read and merge again. A patch of `customMetadata` needs the path to have metadata already (a version, a cap or custom metadata): else 404.",
    params(SecretPathParam, RequestIdHeader),
    request_body(content = PatchMetadata),
    responses(
        (status = 200, description = "The custom metadata as it now is (and the cap, if set).", body = MetadataSet),
        (status = 400, description = "A bad path, query or body, or the merged custom metadata breaks a limit (named); the path is under an ondemand mount.", body = ErrorBody),
        (status = 404, description = "No such path.", body = ErrorBody),
        (status = 409, description = "Other writers changed the custom metadata during every attempt (`conflict`), or the X-Request-Id was used for another request (`requestIdReused`); nothing was written.", body = ErrorBody),
        (status = 413, description = "The body is larger than 64 KiB.", body = ErrorBody),
    ),
    security(("bearer" = ["write:secret"])),
)]
/// `PATCH /metadata/{path}` `{"customMetadata": {"k": "v", "gone": null}, "maxVersions": N}`.
pub async fn patch(state: State, call: Call) -> Result<Response, ApiError> {
    write(state, call, true).await
}

/// `PUT` (`patch` false) and `PATCH /metadata/{path}`.
async fn write(state: State, mut call: Call, patch: bool) -> Result<Response, ApiError> {
    let path = call.path(METADATA)?;
    call.who.require_path(Scope::WriteSecret, &path)?;
    call.query(&[])?;
    let bytes = call.body(MAX_BODY).await?;
    let what = if patch { "PATCH" } else { "PUT" };
    let origin = call.origin(&state, &format!("{what} metadata/{path}"), &bytes)?;
    // The two bodies differ in what `customMetadata` may hold (`null` removes a key in a
    // patch), which `custom::from_json` checks with Vault's wording.
    let (max_versions, custom_metadata) = if patch {
        let b: PatchMetadata = parse(&bytes)?;
        (b.max_versions, b.custom_metadata)
    } else {
        let b: WriteMetadata = parse(&bytes)?;
        (b.max_versions, b.custom_metadata)
    };
    let invalid = |why: String| ApiError::invalid_field("invalidField", "/customMetadata", why);
    let custom = match custom_metadata {
        None => None,
        Some(v) => {
            let parsed = custom::from_json("customMetadata", &v, patch).map_err(invalid)?;
            if patch {
                Some(CustomChange::Patch(parsed))
            } else {
                let map = custom::replacement(parsed);
                custom::validate(&map).map_err(invalid)?;
                Some(CustomChange::Replace(map))
            }
        }
    };
    if max_versions.is_none() && custom.is_none() {
        return Err(ApiError::bad_request(
            "nothing to change: give maxVersions and/or customMetadata",
        ));
    }
    not_under_mount(&state, &state.service.local(), &path)?;
    let change = MetadataChange {
        max_versions,
        custom,
    };
    match state.service.write_metadata(origin, &path, change).await? {
        MetadataOutcome::Set {
            pruned,
            custom_metadata,
        } => Ok(Json(MetadataSet {
            data: MetadataSetData {
                custom_metadata,
                max_versions,
                path: path.as_str().to_string(),
                pruned,
            },
        })
        .into_response()),
        MetadataOutcome::NotFound => Err(ApiError::NotFound(format!("secret '{path}' not found"))),
        MetadataOutcome::Invalid(why) => Err(invalid(why)),
        MetadataOutcome::Conflict { attempts } => Err(ApiError::Conflict {
            kind: "conflict",
            detail: format!(
                "the custom metadata of '{path}' changed under this patch {attempts} times in a row; nothing was written, retry"
            ),
        }),
        MetadataOutcome::UnderMount { mount } => Err(ApiError::bad_request(format!(
            "'{path}' is under the ondemand mount '{mount}', which keeps no versions"
        ))),
    }
}

#[utoipa::path(
    delete,
    path = "/metadata/{*path}",
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
    let VersionList { versions } = parse(&bytes)?;
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
    path = "/undelete/{*path}",
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
    path = "/destroy/{*path}",
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
