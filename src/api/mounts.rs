//! `/mounts`: ondemand engine mounts (`admin` scope on the mount's path). Creating, listing,
//! showing and deleting mounts, and their key lifecycle: rotate, config
//! (`minDecryptionVersion`, `minEncryptionVersion`) and trim.
//!
//! Routes (a mount path may have several segments, so the action is the last segment of a
//! `POST` / `PUT`; `GET` and `DELETE` take the whole rest as the mount path):
//! - `POST /mounts` `{"path": "payments", "type": "ondemand"}` → 201
//! - `GET /mounts`, `GET /mounts/{path}`
//! - `DELETE /mounts/{path}?confirm={path}` → 204 (destroys its keys: every ciphertext made
//!   under the mount becomes undecryptable, hence the confirmation)
//! - `POST /mounts/{path}/rotate`, `PUT /mounts/{path}/config`, `POST /mounts/{path}/trim`
//!
//! Invariants:
//! - Every change is a Raft command checked where it applies ([`crate::secret::mount`]):
//!   conflicts, version ranges and rotation races are decided there, not here.
//! - New mount keys are generated here and wrapped under the master key before they are
//!   proposed; no plaintext key leaves this node's memory.

use axum::body::Body;
use axum::extract::{Extension, OriginalUri, RawQuery};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{Map, Value};

use super::auth::Principal;
use super::error::ApiError;
use super::input::{json_int, query, read_body, request_id};
use super::state::State;
use super::wire::{
    CreateMount, Empty, ErrorBody, Mount, MountConfig, MountList, MountTrim, LIST_RESPONSE,
};
use super::wire::{RequestIdHeader, SecretPathParam};
use crate::secret::path::MAX_PATH_BYTES;
use crate::secret::token::Scope;
use crate::secret::{Command, CommandResult, MountKind, Op, PathError, SecretPath};

const PREFIX: &str = "/api/v1/mounts/";
/// Largest body of a mount call.
const MAX_BODY: usize = 16 * 1024;
/// How often a rotation retries after losing a race to a concurrent one.
const ROTATE_ATTEMPTS: usize = 5;

/// A JSON object body with only `allowed` fields.
fn object_body(bytes: &[u8], allowed: &[&str]) -> Result<Map<String, Value>, ApiError> {
    let body: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("request body is not valid JSON: {e}")))?;
    let Value::Object(body) = body else {
        return Err(ApiError::bad_request("request body must be a JSON object"));
    };
    if let Some(unknown) = body.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(ApiError::invalid_field(
            "unknownField",
            &format!("/{unknown}"),
            format!(
                "unknown field '{unknown}' (allowed: {})",
                allowed.join(", ")
            ),
        ));
    }
    Ok(body)
}

/// A key version field: an integer in `min..=u32::MAX`.
fn version_field(body: &Map<String, Value>, name: &str, min: u32) -> Result<Option<u32>, ApiError> {
    match body.get(name) {
        None => Ok(None),
        Some(v) => match json_int(v).and_then(|n| u32::try_from(n).ok()) {
            Some(n) if n >= min => Ok(Some(n)),
            _ => Err(ApiError::invalid_field(
                "invalidField",
                &format!("/{name}"),
                format!("field '{name}' must be an integer >= {min}"),
            )),
        },
    }
}

fn mount_path(raw: &str) -> Result<SecretPath, ApiError> {
    Ok(SecretPath::parse(raw)?)
}

fn result(path: &SecretPath, what: &str, r: CommandResult) -> Result<Response, ApiError> {
    match r {
        CommandResult::Mount(rec) => Ok(Json(Mount::new(path.as_str(), &rec)).into_response()),
        CommandResult::NotFound => Err(ApiError::NotFound(format!("no mount at '{path}'"))),
        CommandResult::MountRefused(why) => Err(ApiError::BadRequest {
            kind: Some("invalidVersion"),
            detail: why,
            pointer: None,
        }),
        other => Err(ApiError::unexpected(what, other)),
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/mounts",
    tag = "mounts",
    operation_id = "createMount",
    summary = "Mount the ondemand engine at a path",
    description = "Nothing under the mount is stored: a PUT under it encrypts, a GET with `?ciphertext=` decrypts.",
    params(RequestIdHeader),
    request_body(content = CreateMount),
    responses(
        (status = 201, description = "The new mount, at key version 1.", body = Mount),
        (status = 400, description = "A bad query, body or path.", body = ErrorBody),
        (status = 409, description = "The path is, nests in or contains another mount, or holds stored secrets (`type` `mountConflict`).", body = ErrorBody),
        (status = 413, description = "The body is larger than 16 KiB.", body = ErrorBody),
    ),
    security(("bearer" = ["admin"])),
)]
/// `POST /mounts`.
pub async fn create(
    state: State,
    Extension(who): Extension<Principal>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    who.require(Scope::Admin)?;
    query(raw, &[])?;
    let bytes = read_body(body, MAX_BODY).await?;
    let id = request_id(&state, &headers, &who, "POST mounts", &bytes)?;
    let body = object_body(&bytes, &["path", "type"])?;
    let path = match body.get("path") {
        // A path, with at most one trailing '/', at most 512 bytes in all: the document's
        // rule (a longer run of '/' used to be trimmed, an empty path refused only after).
        Some(Value::String(p)) if p.len() > MAX_PATH_BYTES => {
            return Err(ApiError::InvalidPath(PathError::TooLong(p.len())))
        }
        Some(Value::String(p)) => SecretPath::parse_decoded(p.strip_suffix('/').unwrap_or(p))?,
        _ => {
            return Err(ApiError::invalid_field(
                "invalidField",
                "/path",
                "field 'path' is required and must be a string",
            ))
        }
    };
    match body.get("type") {
        Some(Value::String(t)) if t == "ondemand" => {}
        _ => {
            return Err(ApiError::invalid_field(
                "invalidField",
                "/type",
                "field 'type' is required and must be \"ondemand\" (the only engine)",
            ))
        }
    }
    who.require_path(Scope::Admin, &path)?;
    let wrapped = state.barrier.new_wrapped_mount_key(path.as_str(), 1)?;
    let op = Op {
        id,
        caller: Some(who.caller()),
        command: Command::CreateMount {
            path: path.clone(),
            kind: MountKind::Ondemand,
            wrapped,
        },
    };
    match state.node.write(op).await? {
        CommandResult::Mount(rec) => {
            tracing::info!(mount = %path, by = %who.accessor, "ondemand mount created");
            Ok((StatusCode::CREATED, Json(Mount::new(path.as_str(), &rec))).into_response())
        }
        CommandResult::MountConflict(why) => Err(ApiError::Conflict {
            kind: "mountConflict",
            detail: why,
        }),
        other => Err(ApiError::unexpected("creating a mount", other)),
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/mounts",
    tag = "mounts",
    operation_id = "listMounts",
    summary = "The mounts whose paths the token covers",
    responses(
        (status = 200, description = "The mounts.", body = MountList),
        (status = 400, description = "A query parameter (none is accepted).", body = ErrorBody),
    ),
    security(("bearer" = ["admin"])),
)]
/// `GET /mounts`.
pub async fn list(
    state: State,
    Extension(who): Extension<Principal>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    who.require(Scope::Admin)?;
    query(raw, &[])?;
    let mounts: Vec<Mount> = state
        .node
        .reader()
        .mounts()?
        .iter()
        .filter(|(p, _)| {
            SecretPath::parse_decoded(p).is_ok_and(|p| who.policy.allows(Scope::Admin, &p))
        })
        .map(|(p, rec)| Mount::new(p, rec))
        .collect();
    Ok(Json(MountList {
        total_results: mounts.len(),
        resources: mounts,
        schemas: [LIST_RESPONSE],
    })
    .into_response())
}

#[utoipa::path(
    get,
    path = "/api/v1/mounts/{path}",
    tag = "mounts",
    operation_id = "readMount",
    summary = "A mount and its key versions",
    params(SecretPathParam),
    responses(
        (status = 200, description = "The mount.", body = Mount),
        (status = 400, description = "A bad path or query.", body = ErrorBody),
        (status = 404, description = "No mount at the path.", body = ErrorBody),
    ),
    security(("bearer" = ["admin"])),
)]
/// `GET /mounts/{path}`.
pub async fn show(
    state: State,
    Extension(who): Extension<Principal>,
    OriginalUri(uri): OriginalUri,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let path = mount_path(uri.path().strip_prefix(PREFIX).unwrap_or(""))?;
    who.require_path(Scope::Admin, &path)?;
    query(raw, &[])?;
    match state.node.reader().mount(path.as_str())? {
        Some(rec) => Ok(Json(Mount::new(path.as_str(), &rec)).into_response()),
        None => Err(ApiError::NotFound(format!("no mount at '{path}'"))),
    }
}

#[utoipa::path(
    delete,
    path = "/api/v1/mounts/{path}",
    tag = "mounts",
    operation_id = "deleteMount",
    summary = "Unmount, destroying the mount's keys",
    description = "Every ciphertext made under the mount becomes undecryptable, hence `?confirm=` naming the mount again.",
    params(
        SecretPathParam,
        ("confirm" = String, Query, description = "The mount's path again (one trailing `/` allowed)."),
        RequestIdHeader,
    ),
    responses(
        (status = 204, description = "Unmounted; its keys are gone."),
        (status = 400, description = "A bad path or query; `confirm` missing or naming another path.", body = ErrorBody),
        (status = 404, description = "No mount at the path.", body = ErrorBody),
    ),
    security(("bearer" = ["admin"])),
)]
/// `DELETE /mounts/{path}?confirm={path}`.
pub async fn delete(
    state: State,
    Extension(who): Extension<Principal>,
    OriginalUri(uri): OriginalUri,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let path = mount_path(uri.path().strip_prefix(PREFIX).unwrap_or(""))?;
    who.require_path(Scope::Admin, &path)?;
    let q = query(raw, &["confirm"])?;
    let id = request_id(
        &state,
        &headers,
        &who,
        &format!("DELETE mounts/{path}"),
        b"",
    )?;
    match q.get("confirm") {
        Some(c) if c.trim_end_matches('/') == path.as_str() => {}
        Some(c) => {
            let c: String = c.chars().take(64).collect();
            return Err(ApiError::bad_request(format!(
                "?confirm='{c}' does not name the mount '{path}'; nothing was deleted"
            )));
        }
        None => {
            return Err(ApiError::bad_request(format!(
                "deleting the mount '{path}' destroys its keys: every ciphertext made under it can never be decrypted again. Repeat with ?confirm={path}"
            )))
        }
    }
    let op = Op {
        id,
        caller: Some(who.caller()),
        command: Command::DeleteMount { path: path.clone() },
    };
    match state.node.write(op).await? {
        CommandResult::MountDeleted => {
            tracing::info!(mount = %path, by = %who.accessor, "ondemand mount deleted");
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        CommandResult::NotFound => Err(ApiError::NotFound(format!("no mount at '{path}'"))),
        other => Err(ApiError::unexpected("deleting a mount", other)),
    }
}

/// Splits `<mount path>/<action>` off the URL.
fn action(uri: &axum::http::Uri, actions: &[&str]) -> Result<(SecretPath, String), ApiError> {
    let rest = uri.path().strip_prefix(PREFIX).unwrap_or("");
    match rest.rsplit_once('/') {
        Some((mount, act)) if actions.contains(&act) => Ok((mount_path(mount)?, act.to_string())),
        _ => Err(ApiError::NotFound(format!(
            "no such endpoint: {} (a mount's actions are {})",
            uri.path(),
            actions.join(", ")
        ))),
    }
}

/// `POST /mounts/{path}/rotate` and `POST /mounts/{path}/trim`.
pub async fn post_action(
    state: State,
    Extension(who): Extension<Principal>,
    OriginalUri(uri): OriginalUri,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (path, act) = action(&uri, &["rotate", "trim"])?;
    who.require_path(Scope::Admin, &path)?;
    query(raw, &[])?;
    let bytes = read_body(body, MAX_BODY).await?;
    if act == "rotate" {
        if !bytes.is_empty() {
            object_body(&bytes, &[])?;
        }
        return rotate(&state, &who, &path).await;
    }
    trim(&state, &who, &path, &headers, &bytes).await
}

#[utoipa::path(
    post,
    path = "/api/v1/mounts/{path}/trim",
    tag = "mounts",
    operation_id = "trimMount",
    summary = "Destroy the keys of old versions",
    description = "Ciphertexts of key versions below `minAvailableVersion` can never be decrypted again.",
    params(SecretPathParam, RequestIdHeader),
    request_body(content = MountTrim),
    responses(
        (status = 200, description = "The mount now.", body = Mount),
        (status = 400, description = "A bad path, query or body; `minAvailableVersion` above `minDecryptionVersion` or `minEncryptionVersion` (`type` `invalidVersion`).", body = ErrorBody),
        (status = 404, description = "No mount at the path.", body = ErrorBody),
        (status = 413, description = "The body is larger than 16 KiB.", body = ErrorBody),
    ),
    security(("bearer" = ["admin"])),
)]
pub async fn trim(
    state: &crate::api::AppState,
    who: &Principal,
    path: &SecretPath,
    headers: &HeaderMap,
    bytes: &[u8],
) -> Result<Response, ApiError> {
    let id = request_id(
        state,
        headers,
        who,
        &format!("POST mounts/{path}/trim"),
        bytes,
    )?;
    let body = object_body(bytes, &["minAvailableVersion"])?;
    let min_available_version =
        version_field(&body, "minAvailableVersion", 1)?.ok_or_else(|| {
            ApiError::invalid_field(
                "invalidField",
                "/minAvailableVersion",
                "field 'minAvailableVersion' is required",
            )
        })?;
    let op = Op {
        id,
        caller: Some(who.caller()),
        command: Command::TrimMount {
            path: path.clone(),
            min_available_version,
        },
    };
    let r = state.node.write(op).await?;
    result(path, "trimming a mount", r)
}

#[utoipa::path(
    post,
    path = "/api/v1/mounts/{path}/rotate",
    tag = "mounts",
    operation_id = "rotateMount",
    summary = "Add a key version and make it the one encryptions use",
    description = "Older versions still decrypt (down to `minDecryptionVersion`). No body, or `{}`.",
    params(SecretPathParam),
    request_body(content = Empty, description = "Nothing, or an empty object (not required)."),
    responses(
        (status = 200, description = "The mount now.", body = Mount),
        (status = 400, description = "A bad path, query or body.", body = ErrorBody),
        (status = 404, description = "No mount at the path.", body = ErrorBody),
        (status = 409, description = "Concurrent rotations kept winning the race, or the mount ran out of key versions (`type` `rotationConflict`).", body = ErrorBody),
        (status = 413, description = "The body is larger than 16 KiB.", body = ErrorBody),
    ),
    security(("bearer" = ["admin"])),
)]
pub async fn rotate(
    state: &crate::api::AppState,
    who: &Principal,
    path: &SecretPath,
) -> Result<Response, ApiError> {
    for _ in 0..ROTATE_ATTEMPTS {
        // The latest version as of the read barrier: a stale guess only costs a retry.
        let Some(rec) = state.node.reader().mount(path.as_str())? else {
            state.node.linearize().await?;
            if state.node.reader().mount(path.as_str())?.is_none() {
                return Err(ApiError::NotFound(format!("no mount at '{path}'")));
            }
            continue;
        };
        let version = rec
            .latest_version
            .checked_add(1)
            .ok_or_else(|| ApiError::Conflict {
                kind: "rotationConflict",
                detail: format!("the mount '{path}' has run out of key versions"),
            })?;
        let wrapped = state
            .barrier
            .new_wrapped_mount_key(path.as_str(), version)?;
        let op = Op::new(
            Command::AddMountKey {
                path: path.clone(),
                version,
                wrapped,
            },
            Some(who.caller()),
        );
        match state.node.write(op).await? {
            CommandResult::KeyConflict { .. } => state.node.linearize().await?,
            r => {
                tracing::info!(mount = %path, version, by = %who.accessor, "mount key rotated");
                return result(path, "rotating a mount key", r);
            }
        }
    }
    Err(ApiError::Conflict {
        kind: "rotationConflict",
        detail: format!(
            "the key of mount '{path}' changed under {ROTATE_ATTEMPTS} concurrent rotations in a row; try again"
        ),
    })
}

#[utoipa::path(
    put,
    path = "/api/v1/mounts/{path}/config",
    tag = "mounts",
    operation_id = "configureMount",
    summary = "Set the oldest key versions a mount decrypts and encrypts with",
    params(SecretPathParam, RequestIdHeader),
    request_body(content = MountConfig),
    responses(
        (status = 200, description = "The mount now.", body = Mount),
        (status = 400, description = "A bad path, query or body; a version outside what the mount has (`type` `invalidVersion`).", body = ErrorBody),
        (status = 404, description = "No mount at the path.", body = ErrorBody),
        (status = 413, description = "The body is larger than 16 KiB.", body = ErrorBody),
    ),
    security(("bearer" = ["admin"])),
)]
/// `PUT /mounts/{path}/config`.
pub async fn put_config(
    state: State,
    Extension(who): Extension<Principal>,
    OriginalUri(uri): OriginalUri,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (path, _) = action(&uri, &["config"])?;
    who.require_path(Scope::Admin, &path)?;
    query(raw, &[])?;
    let bytes = read_body(body, MAX_BODY).await?;
    let id = request_id(
        &state,
        &headers,
        &who,
        &format!("PUT mounts/{path}/config"),
        &bytes,
    )?;
    let body = object_body(&bytes, &["minDecryptionVersion", "minEncryptionVersion"])?;
    let min_decryption_version = version_field(&body, "minDecryptionVersion", 1)?;
    let min_encryption_version = version_field(&body, "minEncryptionVersion", 0)?;
    if min_decryption_version.is_none() && min_encryption_version.is_none() {
        return Err(ApiError::bad_request(
            "nothing to change: give minDecryptionVersion and/or minEncryptionVersion",
        ));
    }
    let op = Op {
        id,
        caller: Some(who.caller()),
        command: Command::ConfigureMount {
            path: path.clone(),
            min_decryption_version,
            min_encryption_version,
        },
    };
    let r = state.node.write(op).await?;
    result(&path, "configuring a mount", r)
}
