//! `/secrets`: read, write, delete and list secrets.
//!
//! Invariants:
//! - Input is fully validated (path, query, body shape, depth, size, unknown fields) before
//!   anything is proposed; bad input writes nothing.
//! - Reads happen after the node's read barrier ([`crate::raft::node::Node::linearize`]),
//!   which the auth layer runs for every authenticated request before the handler.
//! - Values are sealed with the path as associated data before they leave this node, and
//!   opened only here, after a read.

use axum::body::Body;
use axum::extract::{Extension, OriginalUri, RawQuery};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::auth::Principal;
use super::error::ApiError;
use super::input::{parse_u64, path_after, query, read_body, request_id};
use super::state::State;
use crate::secret::token::Scope;
use crate::secret::{Command, CommandResult, Metadata, Op, PathError, SecretPath};
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
    let q = query(raw, &["version", "ciphertext"])?;
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
    Ok(Json(json!({"data": data, "metadata": metadata_json(&stored.metadata)})).into_response())
}

/// A parsed, validated PUT body.
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

/// Parses and validates a PUT body (public for the benchmarks in `benches/`).
pub fn parse_put_body(bytes: &[u8], max_value_bytes: usize) -> Result<PutBody, ApiError> {
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
    let mut cas = None;
    if let Some(options) = top.remove("options") {
        let Value::Object(options) = options else {
            return Err(ApiError::invalid_field(
                "invalidOptions",
                "/options",
                "field 'options' must be an object",
            ));
        };
        for (k, v) in options {
            match k.as_str() {
                "cas" => {
                    let n = v.as_u64().ok_or_else(|| {
                        ApiError::invalid_field(
                            "invalidOptions",
                            "/options/cas",
                            "'options.cas' must be an integer >= 0",
                        )
                    })?;
                    cas = Some(n);
                }
                other => {
                    return Err(ApiError::invalid_field(
                        "unknownField",
                        &format!("/options/{other}"),
                        format!("unknown field 'options.{other}' (allowed: cas)"),
                    ))
                }
            }
        }
    }
    Ok(PutBody { data, cas })
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
    // Room for the envelope around `data`; `data` itself is measured after parsing.
    let bytes = read_body(body, state.max_value_bytes + 16 * 1024).await?;
    let PutBody { data, cas } = parse_put_body(&bytes, state.max_value_bytes)?;
    let plain =
        serde_json::to_vec(&data).map_err(|e| ApiError::Internal(format!("encoding data: {e}")))?;
    let sealed = state.barrier.seal_secret(&path, &plain)?;
    let command = Command::Put {
        path: path.clone(),
        sealed,
        cas,
    };
    let op = Op {
        id,
        caller: Some(who.caller()),
        command,
    };
    match state.node.write(op).await? {
        CommandResult::Written(meta) => {
            Ok(Json(json!({"data": data, "metadata": metadata_json(&meta)})).into_response())
        }
        CommandResult::CasMismatch { current } => Err(ApiError::Conflict {
            kind: "casMismatch",
            detail: format!(
                "check-and-set failed on '{path}': expected version {}, current version is {current}",
                cas.unwrap_or_default()
            ),
        }),
        other => Err(ApiError::unexpected("a put", other)),
    }
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
    let op = Op {
        id,
        caller: Some(who.caller()),
        command: Command::Delete { path: path.clone() },
    };
    match state.node.write(op).await? {
        CommandResult::Deleted(_) => Ok(StatusCode::NO_CONTENT.into_response()),
        CommandResult::NotFound => Err(ApiError::NotFound(format!("secret '{path}' not found"))),
        other => Err(ApiError::unexpected("a delete", other)),
    }
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
}
