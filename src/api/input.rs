//! Request input shared by the handlers: the secret path in the URL, query parameters, the
//! body (read with a size limit) and the client's request id.
//!
//! Invariants:
//! - Unknown or repeated query parameters are refused (400 naming them), like unknown JSON
//!   fields: a typo never silently changes what a call does.
//! - A body larger than its limit is refused with 413 before it is parsed.
//! - Percent-decoding is done once, by the `percent-encoding` / `form_urlencoded` crates.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::{HeaderMap, Uri};

use super::error::ApiError;
use crate::secret::{RequestId, SecretPath};

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
                if allowed.is_empty() {
                    "none".to_string()
                } else {
                    allowed.join(", ")
                }
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

/// An integer query parameter of at least `min`.
pub fn parse_u64(name: &str, v: &str, min: u64) -> Result<u64, ApiError> {
    match v.parse::<u64>() {
        Ok(n) if n >= min => Ok(n),
        _ => Err(ApiError::bad_request(format!(
            "query parameter '{name}' must be an integer >= {min}"
        ))),
    }
}

/// The whole body, refusing more than `limit` bytes with 413.
pub async fn read_body(body: Body, limit: usize) -> Result<Vec<u8>, ApiError> {
    use futures::StreamExt;
    let mut stream = body.into_data_stream();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|e| ApiError::bad_request(format!("reading the request body failed: {e}")))?;
        if out.len() + chunk.len() > limit {
            return Err(ApiError::TooLarge(format!(
                "request body is larger than the {limit}-byte limit"
            )));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// The request id for deduplicating a write: the client's `X-Request-Id` if it sent a
/// usable one (retries with the same id apply once), else a fresh random id.
pub fn request_id(headers: &HeaderMap) -> Result<RequestId, ApiError> {
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
            Ok(RequestId(s.to_string()))
        }
        None => Ok(RequestId::random()),
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
}
