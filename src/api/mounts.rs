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
use serde_json::{json, Map, Value};

use super::auth::Principal;
use super::error::ApiError;
use super::input::{query, read_body, request_id};
use super::state::State;
use crate::secret::token::Scope;
use crate::secret::{Command, CommandResult, MountKind, MountRecord, Op, SecretPath};
use crate::time::rfc3339;

const PREFIX: &str = "/api/v1/mounts/";
/// Largest body of a mount call.
const MAX_BODY: usize = 16 * 1024;
/// How often a rotation retries after losing a race to a concurrent one.
const ROTATE_ATTEMPTS: usize = 5;

pub fn mount_json(path: &str, rec: &MountRecord) -> Value {
    json!({
        "path": path,
        "type": rec.kind.as_str(),
        "latestVersion": rec.latest_version,
        "minDecryptionVersion": rec.min_decryption_version,
        "minEncryptionVersion": rec.min_encryption_version,
        "minAvailableVersion": rec.min_available_version,
        "createdAt": rfc3339(rec.created_at_ms),
        "updatedAt": rfc3339(rec.updated_at_ms),
    })
}

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
        Some(v) => match v.as_u64().and_then(|n| u32::try_from(n).ok()) {
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
        CommandResult::Mount(rec) => Ok(Json(mount_json(path.as_str(), &rec)).into_response()),
        CommandResult::NotFound => Err(ApiError::NotFound(format!("no mount at '{path}'"))),
        CommandResult::MountRefused(why) => Err(ApiError::BadRequest {
            kind: Some("invalidVersion"),
            detail: why,
            pointer: None,
        }),
        other => Err(ApiError::unexpected(what, other)),
    }
}

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
    let id = request_id(&headers)?;
    let bytes = read_body(body, MAX_BODY).await?;
    let body = object_body(&bytes, &["path", "type"])?;
    let path = match body.get("path") {
        Some(Value::String(p)) => SecretPath::parse_decoded(p.trim_end_matches('/'))?,
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
            Ok((StatusCode::CREATED, Json(mount_json(path.as_str(), &rec))).into_response())
        }
        CommandResult::MountConflict(why) => Err(ApiError::Conflict {
            kind: "mountConflict",
            detail: why,
        }),
        other => Err(ApiError::unexpected("creating a mount", other)),
    }
}

/// `GET /mounts`.
pub async fn list(
    state: State,
    Extension(who): Extension<Principal>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    who.require(Scope::Admin)?;
    query(raw, &[])?;
    let mounts: Vec<Value> = state
        .node
        .reader()
        .mounts()?
        .iter()
        .filter(|(p, _)| {
            SecretPath::parse_decoded(p).is_ok_and(|p| who.policy.allows(Scope::Admin, &p))
        })
        .map(|(p, rec)| mount_json(p, rec))
        .collect();
    Ok(Json(json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
        "totalResults": mounts.len(),
        "Resources": mounts,
    }))
    .into_response())
}

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
        Some(rec) => Ok(Json(mount_json(path.as_str(), &rec)).into_response()),
        None => Err(ApiError::NotFound(format!("no mount at '{path}'"))),
    }
}

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
    let id = request_id(&headers)?;
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
    let id = request_id(&headers)?;
    let body = object_body(&bytes, &["minAvailableVersion"])?;
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
    result(&path, "trimming a mount", r)
}

async fn rotate(
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
    let id = request_id(&headers)?;
    let bytes = read_body(body, MAX_BODY).await?;
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
