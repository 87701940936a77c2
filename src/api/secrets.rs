//! `/secrets`: read, write, delete and list secrets.
//!
//! Invariants:
//! - Input is fully validated (path, query, body shape, depth, size, unknown fields) before
//!   anything is proposed; bad input writes nothing.
//! - Reads happen after the node's read barrier ([`crate::raft::node::Node::linearize`]),
//!   which the auth layer runs for every authenticated request before the handler.
//! - Values are sealed with the path as associated data before they leave this node, and
//!   opened only here, after a read.
//! - Under an ondemand mount ([`crate::secret::mount`]) a PUT encrypts and a GET with
//!   `?ciphertext=` decrypts: nothing is proposed or stored, and both use a mount record read
//!   after the read barrier (GET: the auth layer's; PUT: [`current_mount`]), so they see
//!   every rotation and configuration change acknowledged before the request began.
//! - `If-Match` / `If-None-Match` become a [`Precondition`] checked where the write applies,
//!   so of two writers racing on one ETag exactly one wins; GET and PUT answer with the
//!   version as `ETag`.

use axum::body::Body;
use axum::extract::{Extension, OriginalUri, RawQuery};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::auth::Principal;
use super::error::ApiError;
use super::input::{parse_u64, path_after, query, read_body, request_id};
use super::state::{AppState, State};
use crate::secret::mount::MAX_CIPHERTEXT_BYTES;
use crate::secret::token::Scope;
use crate::secret::{
    Command, CommandResult, Metadata, MountRecord, Op, PathError, Precondition, SecretPath,
};
use crate::time::rfc3339;

/// Deepest nesting accepted inside `data`.
pub const MAX_DEPTH: usize = 32;
const PREFIX: &str = "/api/v1/secrets/";

pub fn metadata_json(m: &Metadata) -> Value {
    let mut o = Map::new();
    o.insert("version".into(), json!(m.version));
    o.insert("createdAt".into(), json!(rfc3339(m.created_at_ms)));
    o.insert("updatedAt".into(), json!(rfc3339(m.updated_at_ms)));
    if let Some(d) = m.deleted_at_ms {
        o.insert("deletedAt".into(), json!(rfc3339(d)));
    }
    Value::Object(o)
}

pub async fn empty_path() -> ApiError {
    ApiError::InvalidPath(PathError::Empty)
}

pub async fn get(
    state: State,
    Extension(who): Extension<Principal>,
    OriginalUri(uri): OriginalUri,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let path = path_after(&uri, PREFIX)?;
    who.require_path(Scope::ReadSecret, &path)?;
    // Refused before it is decoded: the query can carry a ciphertext of any length.
    if raw
        .as_ref()
        .is_some_and(|q| q.len() > MAX_CIPHERTEXT_BYTES + 1024)
    {
        return Err(ciphertext_too_large());
    }
    let q = query(raw, &["version", "ciphertext"])?;
    // The auth layer ran the read barrier: the mount table is current.
    if let Some((mount, rec)) = state.node.reader().mount_covering(path.as_str())? {
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
    // Two point lookups, nearly always from RocksDB's memtable or block cache: done inline.
    // Handing them to the blocking pool cost more (a thread hand-off and two context
    // switches per GET) than the lookups themselves (BENCHMARKS.md, profile of GETs).
    let stored = state
        .node
        .reader()
        .get(&path, version)
        .map_err(|e| ApiError::Internal(format!("reading '{path}': {e}")))?;
    let Some(stored) = stored else {
        return Err(match version {
            Some(v) => ApiError::NotFound(format!("secret '{path}' version {v} not found")),
            None => ApiError::NotFound(format!("secret '{path}' not found")),
        });
    };
    let plain = state.barrier.open_secret(&path, &stored.sealed)?;
    let data: Value = serde_json::from_slice(&plain)
        .map_err(|e| ApiError::Internal(format!("stored value of '{path}' is not JSON: {e}")))?;
    let mut resp =
        Json(json!({"data": data, "metadata": metadata_json(&stored.metadata)})).into_response();
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
    let (plain, _) = state.barrier.decrypt(mount, rec, path, ciphertext)?;
    let data: Value = serde_json::from_slice(&plain).map_err(|e| {
        ApiError::Internal(format!("decrypted value for '{path}' is not JSON: {e}"))
    })?;
    Ok(Json(json!({ "data": data })).into_response())
}

/// The ondemand mount `path` is under, as of the latest committed state: this node's own
/// state first (no mount there: nothing to wait for, the state machine refuses a KV write
/// that lands under a newer mount), then, if it names one, again after the read barrier, so
/// an encryption uses a key version at least as new as every acknowledged rotation.
/// `barrier`: run the read barrier even when this node's state names no mount (after the
/// state machine said a mount covers the path).
async fn current_mount(
    state: &AppState,
    path: &SecretPath,
    barrier: bool,
) -> Result<Option<(String, MountRecord)>, ApiError> {
    if !barrier && state.node.reader().mount_covering(path.as_str())?.is_none() {
        return Ok(None);
    }
    state.node.linearize().await?;
    Ok(state.node.reader().mount_covering(path.as_str())?)
}

/// Encrypts `data` for `path` under the mount (nothing is proposed or stored).
fn encrypt(
    state: &AppState,
    mount: &str,
    rec: &MountRecord,
    path: &SecretPath,
    body: &ParsedBody,
) -> Result<Response, ApiError> {
    if path.as_str() == mount {
        return Err(ApiError::bad_request(format!(
            "'{path}' is the ondemand mount itself; encrypt at a path under it"
        )));
    }
    let lowest = match rec.min_encryption_version {
        0 => rec.latest_version,
        n => n,
    };
    let version = match body.options.get("keyVersion") {
        None => rec.latest_version,
        Some(v) => match v.as_u64().and_then(|n| u32::try_from(n).ok()) {
            Some(n) if (lowest..=rec.latest_version).contains(&n) => n,
            _ => {
                return Err(ApiError::invalid_field(
                    "invalidOptions",
                    "/options/keyVersion",
                    format!(
                        "'options.keyVersion' must be an integer from {lowest} (minEncryptionVersion, or the latest when 0) to {} (the latest)",
                        rec.latest_version
                    ),
                ))
            }
        },
    };
    let plain = serde_json::to_vec(&body.data)
        .map_err(|e| ApiError::Internal(format!("encoding data: {e}")))?;
    let ciphertext = state.barrier.encrypt(mount, path, version, &plain)?;
    if ciphertext.len() > MAX_CIPHERTEXT_BYTES {
        return Err(ApiError::TooLarge(format!(
            "the ciphertext would be {} bytes, above the {MAX_CIPHERTEXT_BYTES}-byte limit a decryption accepts; encrypt less data",
            ciphertext.len()
        )));
    }
    Ok(Json(json!({"data": {"ciphertext": ciphertext, "keyVersion": version}})).into_response())
}

/// A parsed, validated PUT body.
pub struct PutBody {
    pub data: Value,
    pub cas: Option<u64>,
}

/// A PUT body's `data` and its `options` object (keys checked against an allowed list).
pub struct ParsedBody {
    pub data: Value,
    pub options: Map<String, Value>,
}

fn depth(v: &Value) -> usize {
    match v {
        Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Parses and validates a PUT body (public for the benchmarks in `benches/`).
pub fn parse_put_body(bytes: &[u8], max_value_bytes: usize) -> Result<PutBody, ApiError> {
    let ParsedBody { data, options } = parse_body(bytes, max_value_bytes, &["cas"])?;
    let cas = match options.get("cas") {
        None => None,
        Some(v) => Some(v.as_u64().ok_or_else(|| {
            ApiError::invalid_field(
                "invalidOptions",
                "/options/cas",
                "'options.cas' must be an integer >= 0",
            )
        })?),
    };
    Ok(PutBody { data, cas })
}

/// Parses `{"data": {...}, "options"?: {...}}`, refusing unknown fields and options not in
/// `allowed_options`.
pub fn parse_body(
    bytes: &[u8],
    max_value_bytes: usize,
    allowed_options: &[&str],
) -> Result<ParsedBody, ApiError> {
    if bytes.is_empty() {
        return Err(ApiError::bad_request(
            "request body is empty; expected {\"data\": {...}}",
        ));
    }
    // serde_json refuses nesting past 128 levels on its own, so parsing cannot overflow.
    let body: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("request body is not valid JSON: {e}")))?;
    let Value::Object(mut top) = body else {
        return Err(ApiError::bad_request(
            "request body must be a JSON object with a \"data\" object",
        ));
    };
    if let Some(unknown) = top.keys().find(|k| *k != "data" && *k != "options") {
        return Err(ApiError::invalid_field(
            "unknownField",
            &format!("/{unknown}"),
            format!("unknown field '{unknown}' (allowed: data, options)"),
        ));
    }
    let data = top.remove("data").ok_or_else(|| {
        ApiError::invalid_field("invalidData", "/data", "field 'data' is required")
    })?;
    if !data.is_object() {
        return Err(ApiError::invalid_field(
            "invalidData",
            "/data",
            "field 'data' must be a JSON object",
        ));
    }
    if depth(&data) > MAX_DEPTH {
        return Err(ApiError::invalid_field(
            "tooDeep",
            "/data",
            format!("field 'data' is nested deeper than {MAX_DEPTH} levels"),
        ));
    }
    let size = serde_json::to_vec(&data)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if size > max_value_bytes {
        return Err(ApiError::TooLarge(format!(
            "field 'data' is {size} bytes, larger than the {max_value_bytes}-byte limit"
        )));
    }
    let options = match top.remove("options") {
        None => Map::new(),
        Some(Value::Object(options)) => options,
        Some(_) => {
            return Err(ApiError::invalid_field(
                "invalidOptions",
                "/options",
                "field 'options' must be an object",
            ))
        }
    };
    if let Some(other) = options
        .keys()
        .find(|k| !allowed_options.contains(&k.as_str()))
    {
        return Err(ApiError::invalid_field(
            "unknownField",
            &format!("/options/{other}"),
            format!(
                "unknown field 'options.{other}' (allowed: {})",
                if allowed_options.is_empty() {
                    "none".to_string()
                } else {
                    allowed_options.join(", ")
                }
            ),
        ));
    }
    Ok(ParsedBody { data, options })
}

pub async fn put(
    state: State,
    Extension(who): Extension<Principal>,
    OriginalUri(uri): OriginalUri,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let path = path_after(&uri, PREFIX)?;
    who.require_path(Scope::WriteSecret, &path)?;
    query(raw, &[])?;
    let id = request_id(&headers)?;
    let pre = precondition(&headers)?;
    // Room for the envelope around `data`; `data` itself is measured after parsing.
    let bytes = read_body(body, state.max_value_bytes + 16 * 1024).await?;
    if let Some((mount, rec)) = current_mount(&state, &path, false).await? {
        return encrypt_put(&state, &mount, &rec, &path, pre, &bytes);
    }
    let PutBody { data, cas } = parse_put_body(&bytes, state.max_value_bytes)?;
    if pre.is_some() && cas.is_some() {
        return Err(ApiError::bad_request(
            "use either 'options.cas' or an If-Match / If-None-Match header, not both",
        ));
    }
    let plain =
        serde_json::to_vec(&data).map_err(|e| ApiError::Internal(format!("encoding data: {e}")))?;
    let sealed = state.barrier.seal_secret(&path, &plain)?;
    let command = match pre {
        Some(precondition) => Command::PutIf {
            path: path.clone(),
            sealed,
            precondition,
        },
        None => Command::Put {
            path: path.clone(),
            sealed,
            cas,
        },
    };
    let op = Op {
        id,
        caller: Some(who.caller()),
        command,
    };
    match state.node.write(op).await? {
        CommandResult::Written(meta) => {
            let mut resp =
                Json(json!({"data": data, "metadata": metadata_json(&meta)})).into_response();
            set_etag(&mut resp, meta.version);
            Ok(resp)
        }
        CommandResult::CasMismatch { current } => Err(ApiError::Conflict {
            kind: "casMismatch",
            detail: format!(
                "check-and-set failed on '{path}': expected version {}, current version is {current}",
                cas.unwrap_or_default()
            ),
        }),
        CommandResult::PreconditionFailed { current, live } => Ok(precondition_failed(
            &path,
            pre.unwrap_or(Precondition::Exists),
            current,
            live,
        )),
        // A mount was created after this node looked: the write was not stored. The mount
        // has now been applied here (the write's answer came after it), so encrypt instead.
        CommandResult::UnderMount { mount } => match current_mount(&state, &path, true).await? {
            Some((mount, rec)) => encrypt_put(&state, &mount, &rec, &path, pre, &bytes),
            None => Err(ApiError::Conflict {
                kind: "mountChanged",
                detail: format!(
                    "the ondemand mount '{mount}' changed while this write was in flight; nothing was written, retry it"
                ),
            }),
        },
        other => Err(ApiError::unexpected("a put", other)),
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
    let body = parse_body(bytes, state.max_value_bytes, &["keyVersion"])?;
    encrypt(state, mount, rec, path, &body)
}

pub async fn delete(
    state: State,
    Extension(who): Extension<Principal>,
    OriginalUri(uri): OriginalUri,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let path = path_after(&uri, PREFIX)?;
    who.require_path(Scope::WriteSecret, &path)?;
    query(raw, &[])?;
    let id = request_id(&headers)?;
    let pre = precondition(&headers)?;
    if let Some((mount, _)) = state.node.reader().mount_covering(path.as_str())? {
        return Err(ApiError::bad_request(format!(
            "'{path}' is under the ondemand mount '{mount}', which stores nothing to delete (DELETE /api/v1/mounts/{mount} unmounts it)"
        )));
    }
    let command = match pre {
        Some(precondition) => Command::DeleteIf {
            path: path.clone(),
            precondition,
        },
        None => Command::Delete { path: path.clone() },
    };
    let op = Op {
        id,
        caller: Some(who.caller()),
        command,
    };
    match state.node.write(op).await? {
        CommandResult::Deleted(_) => Ok(StatusCode::NO_CONTENT.into_response()),
        CommandResult::NotFound => Err(ApiError::NotFound(format!("secret '{path}' not found"))),
        CommandResult::PreconditionFailed { current, live } => Ok(precondition_failed(
            &path,
            pre.unwrap_or(Precondition::Exists),
            current,
            live,
        )),
        other => Err(ApiError::unexpected("a delete", other)),
    }
}

/// `POST /rewrap/{path}` `{"ciphertext": "..."}`: the same plaintext encrypted again under
/// the mount's latest key version, without the plaintext leaving this node. Needs
/// `read:secret` on the path (as decrypting does); runs after the read barrier.
pub async fn rewrap(
    state: State,
    Extension(who): Extension<Principal>,
    OriginalUri(uri): OriginalUri,
    RawQuery(raw): RawQuery,
    body: Body,
) -> Result<Response, ApiError> {
    let path = path_after(&uri, "/api/v1/rewrap/")?;
    who.require_path(Scope::ReadSecret, &path)?;
    query(raw, &[])?;
    let bytes = read_body(body, MAX_CIPHERTEXT_BYTES + 1024)
        .await
        .map_err(|e| match e {
            ApiError::TooLarge(_) => ciphertext_too_large(),
            other => other,
        })?;
    let body: Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("request body is not valid JSON: {e}")))?;
    let Value::Object(body) = body else {
        return Err(ApiError::bad_request(
            "request body must be a JSON object {\"ciphertext\": \"...\"}",
        ));
    };
    if let Some(unknown) = body.keys().find(|k| *k != "ciphertext") {
        return Err(ApiError::invalid_field(
            "unknownField",
            &format!("/{unknown}"),
            format!("unknown field '{unknown}' (allowed: ciphertext)"),
        ));
    }
    let Some(Value::String(ciphertext)) = body.get("ciphertext") else {
        return Err(ApiError::invalid_field(
            "invalidField",
            "/ciphertext",
            "field 'ciphertext' is required and must be a string",
        ));
    };
    let Some((mount, rec)) = state.node.reader().mount_covering(path.as_str())? else {
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
    let (plain, _) = state.barrier.decrypt(&mount, &rec, &path, ciphertext)?;
    let version = rec.latest_version;
    let fresh = state.barrier.encrypt(&mount, &path, version, &plain)?;
    Ok(Json(json!({"data": {"ciphertext": fresh, "keyVersion": version}})).into_response())
}

/// Lists the paths under `prefix` that the caller may read (others are not counted either).
pub async fn list(
    state: State,
    Extension(who): Extension<Principal>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    who.require(Scope::ReadSecret)?;
    let q = query(raw, &["prefix", "startIndex", "count"])?;
    let prefix = q.get("prefix").cloned().unwrap_or_default();
    let trimmed = prefix.trim_end_matches('/');
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
    let reader = state.node.reader().clone();
    let p = trimmed.to_string();
    let visible = move |path: &SecretPath| who.policy.allows(Scope::ReadSecret, path);
    let (page, total) = crate::store::blocking(move || {
        reader.list(&p, (start - 1) as usize, count as usize, visible)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("listing '{trimmed}': {e}")))?;
    let resources: Vec<Value> = page
        .iter()
        .map(|l| json!({"path": l.path, "metadata": metadata_json(&l.metadata)}))
        .collect();
    Ok(Json(json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
        "totalResults": total,
        "startIndex": start,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    }))
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
