//! Request input shared by the handlers: the [`Call`] extractor, the secret path in the URL,
//! query parameters, the body (read with a size limit) and the client's request id.
//!
//! Invariants:
//! - Unknown or repeated query parameters are refused (400 naming them), like unknown JSON
//!   fields: a typo never silently changes what a call does.
//! - A body larger than its limit is refused with 413 before it is parsed.
//! - Percent-decoding is done once, by the `percent-encoding` / `form_urlencoded` crates.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::{FromRequest, OriginalUri, Request};
use axum::http::{HeaderMap, Uri};

use super::auth::Principal;
use super::error::ApiError;
use super::fields::MAX_INT;
use crate::secret::keyring::MacPurpose;
use crate::secret::{RequestId, SecretPath};
use crate::service::{Linearized, Origin};

/// The secret path after `prefix` in the raw URI, so that it is percent-decoded exactly once
/// (by [`SecretPath::parse`]).
pub fn path_after(uri: &Uri, prefix: &str) -> Result<SecretPath, ApiError> {
    let raw = uri.path().strip_prefix(prefix).unwrap_or("");
    Ok(SecretPath::parse(raw)?)
}

/// Query parameters, refusing any not in `allowed` and any given twice.
pub fn query(raw: Option<String>, allowed: &[&str]) -> Result<BTreeMap<String, String>, ApiError> {
    let mut out = BTreeMap::new();
    let Some(raw) = raw else { return Ok(out) };
    for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
        if !allowed.contains(&k.as_ref()) {
            let name: String = k.chars().take(64).collect();
            return Err(ApiError::bad_request(format!(
                "unknown query parameter '{name}' (allowed: {})",
                allowed_names(allowed)
            )));
        }
        if out.insert(k.to_string(), v.into_owned()).is_some() {
            return Err(ApiError::bad_request(format!(
                "query parameter '{k}' given more than once"
            )));
        }
    }
    Ok(out)
}

/// A JSON object body with only `allowed` fields (an unknown one is a 400 naming it, with
/// its JSON pointer). `expected` says what the body should have been, for the 400 when it
/// is not an object at all. The one parser of every object body of both dialects.
pub fn json_object(
    bytes: &[u8],
    allowed: &[&str],
    expected: &str,
) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
    // serde_json refuses nesting past 128 levels on its own, so parsing cannot overflow.
    let body: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("request body is not valid JSON: {e}")))?;
    let serde_json::Value::Object(body) = body else {
        return Err(ApiError::bad_request(format!(
            "request body must be {expected}"
        )));
    };
    if let Some(unknown) = body.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(unknown_field(&[unknown], allowed));
    }
    Ok(body)
}

/// The 400 for the unknown field at `path` (the names from the body's top down, the unknown
/// one last), with its JSON pointer and the fields allowed there. Every refusal of an
/// unknown body field is made here. Names are cut to 64 characters.
pub fn unknown_field(path: &[impl AsRef<str>], allowed: &[&str]) -> ApiError {
    let path: Vec<String> = path
        .iter()
        .map(|s| s.as_ref().chars().take(64).collect())
        .collect();
    ApiError::invalid_field(
        "unknownField",
        &pointer(&path),
        format!(
            "unknown field '{}' (allowed: {})",
            dotted(&path),
            allowed_names(allowed)
        ),
    )
}

/// A body field's name as a refusal shows it: `options.cas`, `versions[2]`.
pub fn dotted(path: &[String]) -> String {
    let mut out = String::new();
    for segment in path {
        if segment.bytes().all(|b| b.is_ascii_digit()) && !out.is_empty() {
            out.push_str(&format!("[{segment}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(segment);
        }
    }
    out
}

/// The JSON pointer (RFC 6901) of a body field: `/options/cas`.
pub fn pointer(path: &[String]) -> String {
    path.iter()
        .map(|s| format!("/{}", s.replace('~', "~0").replace('/', "~1")))
        .collect()
}

/// The names a refusal lists as allowed: `a, b`, or `none`.
pub fn allowed_names(allowed: &[&str]) -> String {
    if allowed.is_empty() {
        "none".to_string()
    } else {
        allowed.join(", ")
    }
}

/// The field `name` of a body, refusing its absence.
pub fn required(
    body: &mut serde_json::Map<String, serde_json::Value>,
    name: &str,
) -> Result<serde_json::Value, ApiError> {
    body.remove(name).ok_or_else(|| {
        ApiError::invalid_field(
            "invalidField",
            &format!("/{name}"),
            format!("field '{name}' is required"),
        )
    })
}

/// An integer query parameter from `min` to [`MAX_INT`].
pub fn parse_u64(name: &str, v: &str, min: u64) -> Result<u64, ApiError> {
    match v.parse::<u64>() {
        Ok(n) if n >= min && n <= MAX_INT => Ok(n),
        _ => Err(ApiError::bad_request(format!(
            "query parameter '{name}' must be an integer from {min} to {MAX_INT}"
        ))),
    }
}

/// How much of an oversized body is read (and dropped) before the 413 is sent.
const DRAIN_BYTES: usize = 4 << 20;

/// The whole body, refusing more than `limit` bytes with 413.
pub async fn read_body(body: Body, limit: usize) -> Result<Vec<u8>, ApiError> {
    use futures::StreamExt;
    let mut stream = body.into_data_stream();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|e| ApiError::bad_request(format!("reading the request body failed: {e}")))?;
        if out.len() + chunk.len() > limit {
            // Read the rest (up to DRAIN_BYTES) first: answering while the client still sends
            // closes the connection under it, and over TLS it then sees a reset, not this 413
            // (schemathesis found it as network errors).
            let mut drained = out.len() + chunk.len();
            while drained < DRAIN_BYTES {
                match stream.next().await {
                    Some(Ok(more)) => drained += more.len(),
                    _ => break,
                }
            }
            return Err(ApiError::TooLarge(format!(
                "request body is larger than the {limit}-byte limit"
            )));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// The most any request body may declare, except a restore's upload (which has its own
/// limit, checked by its handler): the largest secret a PUT may carry plus room for its
/// JSON, or what [`read_body`] drains before its 413 if that is more. Between the route's
/// limit and this, the handler refuses after its scope check and drains the body, so a
/// keep-alive client keeps its connection; beyond it, nothing is read at all.
pub fn max_declared_body(max_value_bytes: usize) -> u64 {
    (max_value_bytes as u64)
        .saturating_add(64 * 1024)
        .max(DRAIN_BYTES as u64)
}

/// Refuses, before authentication and before a byte of the body is read, a request whose
/// `Content-Length` exceeds what any route reads ([`max_declared_body`]); the answer closes
/// the connection, since the body is never drained. Bodies without a declared length are
/// bounded while streaming by each handler's own limit ([`read_body`]), after its scope check.
pub async fn declared_length(
    axum::extract::State(state): axum::extract::State<std::sync::Arc<super::AppState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let limit = max_declared_body(state.service.max_value_bytes());
    let restore = matches!(
        request.uri().path(),
        "/api/v1/cluster/restore"
            | "/v1/sys/storage/raft/snapshot"
            | "/v1/sys/storage/raft/snapshot-force"
    );
    match declared {
        Some(n) if n > limit && !restore => {
            let mut response = ApiError::TooLarge(format!(
                "request body of {n} bytes is larger than the {limit}-byte limit"
            ))
            .into_response();
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
            response
        }
        _ => next.run(request).await,
    }
}

/// The request id for deduplicating a write: the client's `X-Request-Id` if it sent a
/// usable one (retries with the same id apply once), else a fresh random id.
///
/// A client's id is scoped to the token (`who`) and the call (`what`: method and path): the
/// same id sent by another token or with another call is another request. Unscoped, a
/// reused id answered a different write with the first one's stored result (schemathesis
/// found it: a 500 "unexpected result", or another token's answer).
///
/// It also carries the request's fingerprint: a MAC, under a key derived from the master
/// key, of `what`, the precondition headers and `content` (what the request asks for: its
/// body, or for a write built from parts, those parts). A retry has the same fingerprint and
/// gets the first answer; the same id with another request is refused with 409 instead of
/// being answered with a result that is not its own. Keyed, the fingerprint of a secret's
/// body lets nobody guess the secret from the dedup table.
pub fn request_id(
    state: &super::AppState,
    headers: &HeaderMap,
    who: &Principal,
    what: &str,
    content: &[u8],
) -> Result<RequestId, ApiError> {
    match headers.get("x-request-id") {
        Some(v) => {
            let s = v.to_str().unwrap_or("");
            let ok = !s.is_empty()
                && s.len() <= 128
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c));
            if !ok {
                return Err(ApiError::bad_request(
                    "header X-Request-Id must be 1-128 characters of A-Z a-z 0-9 - _ . :",
                ));
            }
            let mut material = what.as_bytes().to_vec();
            for name in ["if-match", "if-none-match"] {
                material.push(0);
                if let Some(v) = headers.get(name) {
                    material.extend_from_slice(v.as_bytes());
                }
            }
            material.push(0);
            material.extend_from_slice(content);
            let mac = state.barrier.mac(MacPurpose::RequestFingerprint, &material);
            let mut fingerprint = [0u8; 16];
            fingerprint.copy_from_slice(&mac[..16]);
            Ok(RequestId::client(
                format!("{}:{what}:{s}", who.accessor),
                fingerprint,
            ))
        }
        None => Ok(RequestId::random()),
    }
}

/// What an authenticated `/api/v1` handler reads from its request, as one extractor: the
/// caller (from the auth middleware), the path and query as the client sent them, the
/// headers and the unread body, and the read-index round's view when the route's group ran
/// one. The checks stay the handler's, in its own order (path, scope, query, body).
pub struct Call {
    pub who: Principal,
    uri: Uri,
    pub headers: HeaderMap,
    body: Body,
    current: Option<Linearized>,
}

impl<S: Send + Sync> FromRequest<S> for Call {
    type Rejection = ApiError;

    async fn from_request(request: Request, _: &S) -> Result<Self, ApiError> {
        let (mut parts, body) = request.into_parts();
        let who = parts.extensions.remove::<Principal>().ok_or_else(|| {
            ApiError::Internal("a handler of an authenticated route ran without a caller".into())
        })?;
        let uri = match parts.extensions.remove::<OriginalUri>() {
            Some(OriginalUri(uri)) => uri,
            None => parts.uri,
        };
        Ok(Call {
            who,
            uri,
            headers: parts.headers,
            body,
            current: parts.extensions.remove::<Linearized>(),
        })
    }
}

impl Call {
    /// The secret path after `prefix` (see [`path_after`]).
    pub fn path(&self, prefix: &str) -> Result<SecretPath, ApiError> {
        path_after(&self.uri, prefix)
    }

    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    /// The raw query string, undecoded.
    pub fn raw_query(&self) -> Option<&str> {
        self.uri.query()
    }

    /// The query parameters (see [`query`]).
    pub fn query(&self, allowed: &[&str]) -> Result<BTreeMap<String, String>, ApiError> {
        query(self.raw_query().map(str::to_string), allowed)
    }

    /// The body, read once, refusing more than `limit` bytes (see [`read_body`]).
    pub async fn body(&mut self, limit: usize) -> Result<Vec<u8>, ApiError> {
        read_body(std::mem::take(&mut self.body), limit).await
    }

    /// The body as a stream, for an upload that is not held in memory.
    pub fn take_body(&mut self) -> Body {
        std::mem::take(&mut self.body)
    }

    /// The view of the read-index round the auth layer ran: only routes of the current
    /// group have one (anything else is a routing bug, a 500).
    pub fn current(&self) -> Result<&Linearized, ApiError> {
        self.current.as_ref().ok_or_else(|| {
            ApiError::Internal("a read on a route that ran no read-index round".into())
        })
    }

    /// Who asks for a write and its request id: the client's `X-Request-Id` scoped to the
    /// token and `what`, with the fingerprint of `content` (see [`request_id`]).
    pub fn origin(
        &self,
        state: &super::AppState,
        what: &str,
        content: &[u8],
    ) -> Result<Origin, ApiError> {
        Ok(Origin {
            id: request_id(state, &self.headers, &self.who, what, content)?,
            caller: self.who.caller(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_rules() {
        assert!(query(Some("version=2".into()), &["version"]).is_ok());
        let e = query(Some("verzion=2".into()), &["version"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("verzion"), "{e}");
        assert!(query(Some("version=1&version=2".into()), &["version"]).is_err());
        assert_eq!(
            query(Some("prefix=a%2Fb".into()), &["prefix"]).unwrap()["prefix"],
            "a/b"
        );
        assert_eq!(
            query(Some("prefix=a+b".into()), &["prefix"]).unwrap()["prefix"],
            "a b"
        );
        let e = query(Some("x=1".into()), &[]).unwrap_err().to_string();
        assert!(e.contains("'x'") && e.contains("none"), "{e}");
    }

    #[test]
    fn names_and_pointers() {
        let path: Vec<String> = ["options", "a/b~c", "2"].map(String::from).to_vec();
        assert_eq!(dotted(&path), "options.a/b~c[2]");
        assert_eq!(pointer(&path), "/options/a~1b~0c/2");
        let ApiError::BadRequest {
            kind,
            detail,
            pointer,
        } = unknown_field(&["options", "ttl"], &["cas"])
        else {
            panic!("not a 400")
        };
        assert_eq!(kind, Some("unknownField"));
        assert_eq!(pointer.as_deref(), Some("/options/ttl"));
        assert_eq!(detail, "unknown field 'options.ttl' (allowed: cas)");
    }
}
