//! `/secrets`: read, write, delete and list secrets.
//!
//! Invariants:
//! - Input is fully validated (path, query, body shape, depth, size, unknown fields) before
//!   anything is proposed; bad input writes nothing.
//! - Reads take the [`Linearized`] view of the read-index round the auth layer ran before the
//!   handler; the service's reads require it.
//! - Values are sealed with the path as associated data before they leave this node, and
//!   opened only here, after a read.
//! - Under an ondemand mount ([`crate::secret::mount`]) a PUT encrypts and a GET with
//!   `?ciphertext=` decrypts: nothing is proposed or stored, and both use a mount record read
//!   after the read-index round (GET: the auth layer's; PUT: the service's `mount_for_write`), so they see
//!   every rotation and configuration change acknowledged before the request began.
//! - `If-Match` / `If-None-Match` become a [`Precondition`] checked where the write applies,
//!   so of two writers racing on one ETag exactly one wins; GET and PUT answer with the
//!   version as `ETag`.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::Value;

use super::error::ApiError;
use super::input::Call;
use super::input::{parse_u64, unknown_field};
use super::state::{AppState, State};
use super::wire::{ConditionalHeaders, RequestIdHeader, SecretPathParam};
use super::wire::{
    Decrypted, Encrypted, EncryptedData, ErrorBody, ListedSecret, PutSecret, Rewrap, Secret,
    SecretList, SecretRead, SecretWrite, LIST_RESPONSE,
};
use crate::secret::mount::MAX_CIPHERTEXT_BYTES;
use crate::secret::path::MAX_PATH_BYTES;
use crate::secret::token::Scope;
use crate::secret::{MountRecord, PathError, Precondition, SecretPath};
use crate::service::{Condition, DeleteOutcome, Listing, PutOutcome};

/// Deepest nesting accepted inside `data`.
pub const MAX_DEPTH: usize = 32;
const PREFIX: &str = "/api/v1/secrets/";

pub async fn empty_path() -> ApiError {
    ApiError::InvalidPath(PathError::Empty)
}

#[utoipa::path(
    get,
    path = "/secrets/{*path}",
    tag = "secrets",
    operation_id = "readSecret",
    summary = "Read a secret, or decrypt under an ondemand mount",
    description = "The latest version, or `?version=N`, with its metadata and the version as `ETag`. \
        Under an ondemand mount nothing is stored: `?ciphertext=` (required there, refused elsewhere) \
        decrypts a ciphertext made for this path.",
    params(
        SecretPathParam,
        ("version" = Option<u64>, Query, minimum = 1,
            description = "A version (default: the latest). Not under an ondemand mount."),
        ("ciphertext" = Option<String>, Query, max_length = 49152,
            description = "Under an ondemand mount: the ciphertext to decrypt."),
    ),
    responses(
        (status = 200, description = "The secret, or the decrypted value.", body = SecretRead,
            headers(("ETag" = String, description = "The version read, e.g. `\"3\"` (stored secrets only)."))),
        (status = 400, description = "A bad path or query; `ciphertext` missing under an ondemand mount or given elsewhere; a ciphertext that is malformed, of an unknown or too old key version, or not made for this path.", body = ErrorBody),
        (status = 404, description = "No such secret or version, or it is deleted or destroyed.", body = ErrorBody),
        (status = 413, description = "The ciphertext is longer than 49152 bytes.", body = ErrorBody),
    ),
    security(("bearer" = ["read:secret"])),
)]
pub async fn get(state: State, call: Call) -> Result<Response, ApiError> {
    let at = call.current()?;
    let path = call.path(PREFIX)?;
    call.who.require_path(Scope::ReadSecret, &path)?;
    // Refused before it is decoded: the query can carry a ciphertext of any length.
    if call
        .raw_query()
        .is_some_and(|q| q.len() > MAX_CIPHERTEXT_BYTES + 1024)
    {
        return Err(ciphertext_too_large());
    }
    let q = call.query(&["version", "ciphertext"])?;
    // The auth layer ran the read-index round (`at`): the mount table is current.
    if let Some((mount, rec)) = state.service.mount_covering(at, &path)? {
        let Some(ciphertext) = q.get("ciphertext") else {
            return Err(ApiError::bad_request(format!(
                "'{path}' is under the ondemand mount '{mount}', which stores nothing: GET needs ?ciphertext=<ciphertext to decrypt>"
            )));
        };
        return decrypt(
            &state,
            &mount,
            &rec,
            &path,
            q.contains_key("version"),
            ciphertext,
        );
    }
    if q.contains_key("ciphertext") {
        return Err(ApiError::bad_request(format!(
            "'ciphertext' is only accepted on an ondemand mount; '{path}' is not under one"
        )));
    }
    let version = q
        .get("version")
        .map(|v| parse_u64("version", v, 1))
        .transpose()?;
    let Some(stored) = state.service.read_secret(at, &path, version)? else {
        return Err(match version {
            Some(v) => ApiError::NotFound(format!("secret '{path}' version {v} not found")),
            None => ApiError::NotFound(format!("secret '{path}' not found")),
        });
    };
    let mut resp = Json(SecretRead::Stored(Secret {
        data: stored.data,
        metadata: (&stored.metadata).into(),
    }))
    .into_response();
    set_etag(&mut resp, stored.metadata.version);
    Ok(resp)
}

fn ciphertext_too_large() -> ApiError {
    ApiError::TooLarge(format!(
        "the ciphertext is longer than the {MAX_CIPHERTEXT_BYTES}-byte limit"
    ))
}

/// `ETag: "<version>"`: the version a GET served or a PUT wrote, for `If-Match`.
fn set_etag(resp: &mut Response, version: u64) {
    if let Ok(v) = HeaderValue::from_str(&format!("\"{version}\"")) {
        resp.headers_mut().insert(header::ETAG, v);
    }
}

/// `If-Match` / `If-None-Match` of a write, if any. Supported: `If-Match: "N"` (the ETag a
/// GET returned), `If-Match: *` and `If-None-Match: *`.
pub fn precondition(headers: &HeaderMap) -> Result<Option<Precondition>, ApiError> {
    let value = |name: &str| -> Result<Option<String>, ApiError> {
        match headers.get_all(name).iter().collect::<Vec<_>>().as_slice() {
            [] => Ok(None),
            [one] => one
                .to_str()
                .map(|s| Some(s.trim().to_string()))
                .map_err(|_| ApiError::bad_request(format!("header {name} is not ASCII"))),
            _ => Err(ApiError::bad_request(format!(
                "header {name} given more than once"
            ))),
        }
    };
    match (value("if-match")?, value("if-none-match")?) {
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            "send If-Match or If-None-Match, not both",
        )),
        (None, Some(v)) if v == "*" => Ok(Some(Precondition::Absent)),
        (None, Some(_)) => Err(ApiError::bad_request(
            "header If-None-Match supports only '*' (write only if the path has no live version)",
        )),
        (Some(v), None) if v == "*" => Ok(Some(Precondition::Exists)),
        (Some(v), None) => {
            let n = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .and_then(|n| n.parse::<u64>().ok())
                .filter(|n| *n >= 1);
            match n {
                Some(n) => Ok(Some(Precondition::Version(n))),
                None => Err(ApiError::bad_request(
                    "header If-Match must be '*' or one strong ETag as GET returns it, e.g. \"3\"",
                )),
            }
        }
        (None, None) => Ok(None),
    }
}

/// The 412 for a precondition that did not hold, with the current `ETag` when the path has
/// a live version (so a client can retry without another GET).
fn precondition_failed(path: &SecretPath, pre: Precondition, current: u64, live: bool) -> Response {
    let now = match (current, live) {
        (0, _) => "the path has no version".to_string(),
        (n, true) => format!("the latest version is {n}"),
        (n, false) => format!("the latest version {n} is deleted or destroyed"),
    };
    let wanted = match pre {
        Precondition::Version(n) => format!("If-Match \"{n}\""),
        Precondition::Exists => "If-Match *".to_string(),
        Precondition::Absent => "If-None-Match *".to_string(),
    };
    let mut resp = ApiError::PreconditionFailed(format!(
        "precondition failed on '{path}': {wanted}, but {now}; nothing was written"
    ))
    .into_response();
    if live {
        set_etag(&mut resp, current);
    }
    resp
}

/// Decrypts `ciphertext` made for `path` under the mount at `mount`.
fn decrypt(
    state: &AppState,
    mount: &str,
    rec: &MountRecord,
    path: &SecretPath,
    version_given: bool,
    ciphertext: &str,
) -> Result<Response, ApiError> {
    if path.as_str() == mount {
        return Err(ApiError::bad_request(format!(
            "'{path}' is the ondemand mount itself; use a path under it"
        )));
    }
    if version_given {
        return Err(ApiError::bad_request(
            "query parameter 'version' does not apply on an ondemand mount (the ciphertext names its key version)",
        ));
    }
    if ciphertext.len() > MAX_CIPHERTEXT_BYTES {
        return Err(ciphertext_too_large());
    }
    let data = state.service.decrypt(mount, rec, path, ciphertext)?;
    Ok(Json(SecretRead::Decrypted(Decrypted { data })).into_response())
}

/// Encrypts `data` for `path` under the mount (nothing is proposed or stored).
fn encrypt(
    state: &AppState,
    mount: &str,
    rec: &MountRecord,
    path: &SecretPath,
    data: &Value,
    key_version: Option<u32>,
) -> Result<Response, ApiError> {
    if path.as_str() == mount {
        return Err(ApiError::bad_request(format!(
            "'{path}' is the ondemand mount itself; encrypt at a path under it"
        )));
    }
    let allowed = rec.encryption_versions();
    let version = match key_version {
        None => rec.latest_version,
        Some(n) if allowed.contains(&n) => n,
        Some(_) => {
            return Err(ApiError::invalid_field(
                "invalidOptions",
                "/options/keyVersion",
                format!(
                    "field 'options.keyVersion' must be an integer from {} (minEncryptionVersion, or the latest when 0) to {} (the latest)",
                    allowed.start(),
                    allowed.end()
                ),
            ))
        }
    };
    let ciphertext = state.service.encrypt(mount, path, version, data)?;
    if ciphertext.len() > MAX_CIPHERTEXT_BYTES {
        return Err(ApiError::TooLarge(format!(
            "the ciphertext would be {} bytes, above the {MAX_CIPHERTEXT_BYTES}-byte limit a decryption accepts; encrypt less data",
            ciphertext.len()
        )));
    }
    Ok(Json(SecretWrite::Encrypted(Encrypted {
        data: EncryptedData {
            ciphertext,
            key_version: version,
        },
    }))
    .into_response())
}

/// A PUT body for a stored secret: its `data` and `options.cas`.
pub struct PutBody {
    pub data: Value,
    pub cas: Option<u64>,
}

fn depth(v: &Value) -> usize {
    match v {
        Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Parses and checks a PUT body for a stored secret (public for the benchmarks in
/// `benches/`, and for the Vault dialect, whose KV v2 body is the same): `keyVersion`
/// applies only under an ondemand mount.
pub fn parse_put_body(bytes: &[u8], max_value_bytes: usize) -> Result<PutBody, ApiError> {
    let PutSecret { data, options } = parse_value(bytes, max_value_bytes)?;
    let options = options.unwrap_or_default();
    if options.key_version.is_some() {
        return Err(unknown_field(&["options", "keyVersion"], &["cas"]));
    }
    Ok(PutBody {
        data,
        cas: options.cas,
    })
}

/// Parses a PUT body ([`PutSecret`]) and checks what its type cannot say: how deep and how
/// large `data` is.
fn parse_value(bytes: &[u8], max_value_bytes: usize) -> Result<PutSecret, ApiError> {
    let body: PutSecret = super::body::parse(bytes)?;
    if depth(&body.data) > MAX_DEPTH {
        return Err(ApiError::invalid_field(
            "tooDeep",
            "/data",
            format!("field 'data' is nested deeper than {MAX_DEPTH} levels"),
        ));
    }
    let size = serde_json::to_vec(&body.data)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if size > max_value_bytes {
        return Err(ApiError::TooLarge(format!(
            "field 'data' is {size} bytes, larger than the {max_value_bytes}-byte limit"
        )));
    }
    Ok(body)
}

#[utoipa::path(
    put,
    path = "/secrets/{*path}",
    tag = "secrets",
    operation_id = "writeSecret",
    summary = "Write a secret's next version, or encrypt under an ondemand mount",
    description = "Stores `data` as the path's next version and answers with it and its metadata \
        (the version as `ETag`). `options.cas`, `If-Match` or `If-None-Match` make the write \
        conditional (one of them at most). Under an ondemand mount nothing is stored: the answer \
        is a ciphertext of `data` bound to this path (`options.keyVersion` picks the key version).",
    params(SecretPathParam, ConditionalHeaders, RequestIdHeader),
    request_body(content = PutSecret, description = "The value, and options."),
    responses(
        (status = 200, description = "The version written, or the ciphertext.", body = SecretWrite,
            headers(("ETag" = String, description = "The version written, e.g. `\"4\"` (stored secrets only)."))),
        (status = 400, description = "A bad path, body, option or header; an option or header that does not apply to the path (`cas`, `If-Match`, `If-None-Match` under an ondemand mount, `keyVersion` elsewhere, both `cas` and a header); the ondemand mount's own path.", body = ErrorBody),
        (status = 409, description = "Check-and-set failed (`type` `casMismatch`), or an ondemand mount appeared at the path while the write was in flight (`mountChanged`: nothing was written).", body = ErrorBody),
        (status = 412, description = "`If-Match` / `If-None-Match` did not hold; nothing was written. The current version is in `ETag` when the path has a live one.", body = ErrorBody,
            headers(("ETag" = String, description = "The latest live version."))),
        (status = 413, description = "The body or `data` is larger than the server's limit (`max_value_bytes`, default 512 KiB), or the ciphertext would exceed 49152 bytes.", body = ErrorBody),
    ),
    security(("bearer" = ["write:secret"])),
)]
pub async fn put(state: State, mut call: Call) -> Result<Response, ApiError> {
    let path = call.path(PREFIX)?;
    call.who.require_path(Scope::WriteSecret, &path)?;
    call.query(&[])?;
    let pre = precondition(&call.headers)?;
    // Room for the envelope around `data`; `data` itself is measured after parsing.
    let bytes = call
        .body(state.service.max_value_bytes() + 16 * 1024)
        .await?;
    let origin = call.origin(&state, &format!("PUT secrets/{path}"), &bytes)?;
    if let Some((mount, rec, at)) = state.service.mount_for_write(&path, false).await? {
        // Nothing is proposed, so the state machine cannot check the token where the write
        // applies: check it here, after the read-index round `mount_for_write` ran.
        super::auth::still_valid(&state, &call.who, &at)?;
        return encrypt_put(&state, &mount, &rec, &path, pre, &bytes);
    }
    let PutBody { data, cas } = parse_put_body(&bytes, state.service.max_value_bytes())?;
    if pre.is_some() && cas.is_some() {
        return Err(ApiError::bad_request(
            "use either 'options.cas' or an If-Match / If-None-Match header, not both",
        ));
    }
    let condition = match (pre, cas) {
        (Some(pre), _) => Some(Condition::Precondition(pre)),
        (None, Some(cas)) => Some(Condition::Cas(cas)),
        (None, None) => None,
    };
    match state
        .service
        .put_secret(origin, &path, &data, condition)
        .await?
    {
        PutOutcome::Written(meta) => {
            let mut resp = Json(SecretWrite::Stored(Secret {
                data,
                metadata: (&meta).into(),
            }))
            .into_response();
            set_etag(&mut resp, meta.version);
            Ok(resp)
        }
        PutOutcome::CasMismatch { current } => Err(ApiError::Conflict {
            kind: "casMismatch",
            detail: format!(
                "check-and-set failed on '{path}': expected version {}, current version is {current}",
                cas.unwrap_or_default()
            ),
        }),
        PutOutcome::PreconditionFailed { current, live } => Ok(precondition_failed(
            &path,
            pre.unwrap_or(Precondition::Exists),
            current,
            live,
        )),
        // A mount was created after this node looked: the write was not stored. The mount
        // has now been applied here (the write's answer came after it), so encrypt instead.
        PutOutcome::UnderMount { mount } => match state.service.mount_for_write(&path, true).await? {
            Some((mount, rec, at)) => {
                super::auth::still_valid(&state, &call.who, &at)?;
                encrypt_put(&state, &mount, &rec, &path, pre, &bytes)
            }
            None => Err(ApiError::Conflict {
                kind: "mountChanged",
                detail: format!(
                    "the ondemand mount '{mount}' changed while this write was in flight; nothing was written, retry it"
                ),
            }),
        },
    }
}

/// A PUT under an ondemand mount: an encryption.
fn encrypt_put(
    state: &AppState,
    mount: &str,
    rec: &MountRecord,
    path: &SecretPath,
    pre: Option<Precondition>,
    bytes: &[u8],
) -> Result<Response, ApiError> {
    if pre.is_some() {
        return Err(ApiError::bad_request(format!(
            "'{path}' is under the ondemand mount '{mount}', which stores nothing: If-Match / If-None-Match do not apply"
        )));
    }
    let PutSecret { data, options } = parse_value(bytes, state.service.max_value_bytes())?;
    let options = options.unwrap_or_default();
    if options.cas.is_some() {
        return Err(unknown_field(&["options", "cas"], &["keyVersion"]));
    }
    encrypt(state, mount, rec, path, &data, options.key_version)
}

#[utoipa::path(
    delete,
    path = "/secrets/{*path}",
    tag = "secrets",
    operation_id = "deleteSecret",
    summary = "Delete a secret's latest version",
    description = "Soft: `POST /api/v1/undelete/{path}` brings it back. `If-Match` / `If-None-Match` make it conditional.",
    params(SecretPathParam, ConditionalHeaders, RequestIdHeader),
    responses(
        (status = 204, description = "Deleted."),
        (status = 400, description = "A bad path, query or header; the path is under an ondemand mount.", body = ErrorBody),
        (status = 404, description = "No live version at the path.", body = ErrorBody),
        (status = 412, description = "`If-Match` / `If-None-Match` did not hold; nothing was deleted.", body = ErrorBody,
            headers(("ETag" = String, description = "The latest live version."))),
    ),
    security(("bearer" = ["write:secret"])),
)]
pub async fn delete(state: State, call: Call) -> Result<Response, ApiError> {
    let path = call.path(PREFIX)?;
    call.who.require_path(Scope::WriteSecret, &path)?;
    call.query(&[])?;
    let origin = call.origin(&state, &format!("DELETE secrets/{path}"), b"")?;
    let pre = precondition(&call.headers)?;
    // This node's state is enough: a delete under a mount finds no secret where it applies.
    if let Some((mount, _)) = state
        .service
        .mount_covering(&state.service.local(), &path)?
    {
        return Err(ApiError::bad_request(format!(
            "'{path}' is under the ondemand mount '{mount}', which stores nothing to delete (DELETE /api/v1/mounts/{mount} unmounts it)"
        )));
    }
    match state.service.delete_secret(origin, &path, pre).await? {
        DeleteOutcome::Deleted(_) => Ok(StatusCode::NO_CONTENT.into_response()),
        DeleteOutcome::NotFound => Err(ApiError::NotFound(format!("secret '{path}' not found"))),
        DeleteOutcome::PreconditionFailed { current, live } => Ok(precondition_failed(
            &path,
            pre.unwrap_or(Precondition::Exists),
            current,
            live,
        )),
    }
}

/// `POST /rewrap/{path}` `{"ciphertext": "..."}`: the same plaintext encrypted again under
/// the mount's latest key version, without the plaintext leaving this node. Needs
/// `read:secret` on the path (as decrypting does); runs after the read-index round.
#[utoipa::path(
    post,
    path = "/rewrap/{*path}",
    tag = "secrets",
    operation_id = "rewrap",
    summary = "Re-encrypt a ciphertext under the mount's latest key version",
    description = "The plaintext never leaves the node.",
    params(SecretPathParam),
    request_body(content = Rewrap),
    responses(
        (status = 200, description = "The new ciphertext.", body = Encrypted),
        (status = 400, description = "A bad path or body; the path is not under an ondemand mount, or is the mount itself; the ciphertext does not decrypt (malformed, unknown or too old key version, made for another path).", body = ErrorBody),
        (status = 413, description = "The ciphertext is longer than 49152 bytes.", body = ErrorBody),
    ),
    security(("bearer" = ["read:secret"])),
)]
pub async fn rewrap(state: State, mut call: Call) -> Result<Response, ApiError> {
    let path = call.path("/api/v1/rewrap/")?;
    call.who.require_path(Scope::ReadSecret, &path)?;
    call.query(&[])?;
    let bytes = call
        .body(MAX_CIPHERTEXT_BYTES + 1024)
        .await
        .map_err(|e| match e {
            ApiError::TooLarge(_) => ciphertext_too_large(),
            other => other,
        })?;
    let Rewrap { ciphertext } = super::body::parse(&bytes)?;
    let at = call.current()?;
    let Some((mount, rec)) = state.service.mount_covering(at, &path)? else {
        return Err(ApiError::bad_request(format!(
            "'{path}' is not under an ondemand mount; only ciphertexts can be rewrapped"
        )));
    };
    if path.as_str() == mount {
        return Err(ApiError::bad_request(format!(
            "'{path}' is the ondemand mount itself; use the path the ciphertext was made for"
        )));
    }
    if ciphertext.len() > MAX_CIPHERTEXT_BYTES {
        return Err(ciphertext_too_large());
    }
    let (fresh, version) = state.service.rewrap(&mount, &rec, &path, &ciphertext)?;
    Ok(Json(Encrypted {
        data: EncryptedData {
            ciphertext: fresh,
            key_version: version,
        },
    })
    .into_response())
}

/// Lists the paths under `prefix` that the caller may read (others are not counted either).
#[utoipa::path(
    get,
    path = "/secrets",
    tag = "secrets",
    operation_id = "listSecrets",
    summary = "List the secrets the token may read",
    description = "Paths with a live version under `prefix`, in order, a page at a time; paths the token may not read are neither listed nor counted.",
    params(
        ("prefix" = Option<String>, Query, max_length = 512,
            pattern = r"^(?:(?:[A-Za-z0-9_-][A-Za-z0-9._-]*|\.[A-Za-z0-9_-][A-Za-z0-9._-]*|\.\.[A-Za-z0-9._-]+)(?:/(?:[A-Za-z0-9_-][A-Za-z0-9._-]*|\.[A-Za-z0-9_-][A-Za-z0-9._-]*|\.\.[A-Za-z0-9._-]+))*)?/?$",
            description = "List only paths under this one (segment-wise: `app` covers `app/db`, not `apple`); one trailing `/` is allowed. Default: everything."),
        ("startIndex" = Option<u64>, Query, minimum = 1, description = "1-based index of the first path (default 1)."),
        ("count" = Option<u64>, Query, minimum = 0, maximum = 1000, description = "Page size (default 100)."),
    ),
    responses(
        (status = 200, description = "A page of paths.", body = SecretList),
        (status = 400, description = "A bad query parameter or prefix.", body = ErrorBody),
    ),
    security(("bearer" = ["read:secret"])),
)]
pub async fn list(state: State, call: Call) -> Result<Response, ApiError> {
    let at = call.current()?;
    call.who.require(Scope::ReadSecret)?;
    let q = call.query(&["prefix", "startIndex", "count"])?;
    let prefix = q.get("prefix").cloned().unwrap_or_default();
    // A path, or nothing, and at most one trailing '/': exactly the document's rule, so that
    // a prefix valid under it is never refused and one outside it never listed.
    if prefix.len() > MAX_PATH_BYTES {
        return Err(ApiError::InvalidPath(PathError::TooLong(prefix.len())));
    }
    let trimmed = prefix.strip_suffix('/').unwrap_or(&prefix);
    if !trimmed.is_empty() {
        SecretPath::parse_decoded(trimmed)?;
    }
    let start = q
        .get("startIndex")
        .map(|v| parse_u64("startIndex", v, 1))
        .transpose()?
        .unwrap_or(1);
    let count = q
        .get("count")
        .map(|v| parse_u64("count", v, 0))
        .transpose()?
        .unwrap_or(100);
    if count > 1000 {
        return Err(ApiError::bad_request(
            "query parameter 'count' must be at most 1000",
        ));
    }
    let who = call.who.clone();
    let visible = move |path: &SecretPath| who.authority.allows(Scope::ReadSecret, path);
    let Listing { page, total } = state
        .service
        .list(at, trimmed, (start - 1) as usize, count as usize, visible)
        .await?;
    let resources: Vec<ListedSecret> = page
        .iter()
        .map(|l| ListedSecret {
            metadata: (&l.metadata).into(),
            path: l.path.clone(),
        })
        .collect();
    Ok(Json(SecretList {
        items_per_page: resources.len(),
        resources,
        schemas: [LIST_RESPONSE],
        start_index: start,
        total_results: total,
    })
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(r: Result<PutBody, ApiError>) -> (u16, String) {
        match r {
            Ok(_) => (200, String::new()),
            Err(e) => (e.status().as_u16(), e.to_string()),
        }
    }

    #[test]
    fn body_rules() {
        let ok = parse_put_body(br#"{"data":{"a":1},"options":{"cas":0}}"#, 1000).unwrap();
        assert_eq!(ok.cas, Some(0));
        let cases: &[(&[u8], u16, &str)] = &[
            (b"", 400, "empty"),
            (b"not json", 400, "not valid JSON"),
            (b"[1]", 400, "JSON object"),
            (br#"{"data":[1]}"#, 400, "'data' must be a JSON object"),
            (br#"{"data":"x"}"#, 400, "'data' must be a JSON object"),
            (br#"{}"#, 400, "'data' is required"),
            (br#"{"data":{},"extra":1}"#, 400, "unknown field 'extra'"),
            (br#"{"data":{},"options":{"ttl":1}}"#, 400, "options.ttl"),
            (br#"{"data":{},"options":{"cas":-1}}"#, 400, "options.cas"),
            (
                br#"{"data":{},"options":{"keyVersion":1}}"#,
                400,
                "unknown field 'options.keyVersion' (allowed: cas)",
            ),
            (br#"{"data":{},"options":{"cas":3.0}}"#, 200, ""),
            (br#"{"data":{"k":"0123456789"}}"#, 200, ""),
        ];
        for (body, code, needle) in cases {
            let (got, detail) = status(parse_put_body(body, 1000));
            assert_eq!(got, *code, "{}: {detail}", String::from_utf8_lossy(body));
            assert!(detail.contains(needle), "{detail} should mention {needle}");
        }
        let (code, detail) = status(parse_put_body(br#"{"data":{"k":"0123456789"}}"#, 10));
        assert_eq!(code, 413, "{detail}");
        let deep = format!("{{\"data\":{}1{}}}", "{\"a\":".repeat(33), "}".repeat(33));
        let (code, detail) = status(parse_put_body(deep.as_bytes(), 100_000));
        assert_eq!(code, 400);
        assert!(detail.contains("deeper than 32"), "{detail}");
        let ok_depth = format!("{{\"data\":{}1{}}}", "{\"a\":".repeat(32), "}".repeat(32));
        assert_eq!(status(parse_put_body(ok_depth.as_bytes(), 100_000)).0, 200);
    }

    #[test]
    fn precondition_headers() {
        let parse = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.append(*k, HeaderValue::from_static(v));
            }
            precondition(&h)
        };
        assert_eq!(parse(&[]).unwrap(), None);
        assert_eq!(
            parse(&[("if-match", "\"3\"")]).unwrap(),
            Some(Precondition::Version(3))
        );
        assert_eq!(
            parse(&[("if-match", "*")]).unwrap(),
            Some(Precondition::Exists)
        );
        assert_eq!(
            parse(&[("if-none-match", "*")]).unwrap(),
            Some(Precondition::Absent)
        );
        for bad in [
            &[("if-match", "3")][..],
            &[("if-match", "\"0\"")],
            &[("if-match", "W/\"3\"")],
            &[("if-match", "\"1\", \"2\"")],
            &[("if-none-match", "\"3\"")],
            &[("if-match", "*"), ("if-none-match", "*")],
            &[("if-match", "\"1\""), ("if-match", "\"2\"")],
        ] {
            assert_eq!(parse(bad).unwrap_err().status(), 400, "{bad:?}");
        }
    }
}
