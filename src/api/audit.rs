//! The audit middleware: every request to a route that authenticates (all but
//! `/health/*` and Vault's `sys/health`) leaves one line in the node's audit log ([`crate::audit`]), whether it
//! passed authentication or not.
//!
//! Invariants:
//! - Fail closed: if the log cannot be written the request is refused with 503 *before* it
//!   runs; if the line for a request that ran cannot be written, its answer is replaced by
//!   503 (the client does not get a secret that was not audited). Unless the node fails open.
//! - The request id in the line is the one the write deduplicates with: the client's
//!   `X-Request-Id`, or one generated here and passed down (and returned in the answer).
//! - The line holds the accessor (a hash prefix) of the token the route authenticates
//!   with — `X-Vault-Token` (else `Authorization`) on Vault's `/v1/`, `Authorization` on
//!   `/api/v1/` — never the token, and the URL path percent-decoded (as the handlers see it),
//!   never the query (a ciphertext may travel in it). Both bounded: they are client input.
//! - A request whose token the node does not know (none, garbage, or refused with 401) is
//!   *anonymous*: its line is rate-limited ([`crate::audit`]), so being refused cannot fill
//!   the disk.
//! - A login that issued a token ([`LoggedIn`] on its answer) is never anonymous: its line
//!   holds the new token's accessor (never the credential), so every token in use can be
//!   traced to the login that made it. A refused login is anonymous.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::state::AppState;
use crate::audit::Entry;
use crate::secret::{token, RequestId};

/// Put on a login's answer by the handler: the accessor of the token it issued.
#[derive(Clone, Debug)]
pub struct LoggedIn {
    pub accessor: String,
}

pub async fn audit(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(log) = state.audit.clone() else {
        return next.run(request).await;
    };
    let Some(route) = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
    else {
        return next.run(request).await;
    };
    if route.starts_with("/api/v1/health/") || request.uri().path() == "/v1/sys/health" {
        return next.run(request).await;
    }
    if let Err(why) = log.ready() {
        return ApiError::Unavailable(format!("the audit log cannot be written: {why}"))
            .into_response();
    }
    let request_id = match request.headers().get("x-request-id") {
        Some(v) => v.to_str().unwrap_or("").to_string(),
        None => {
            let id = RequestId::random().as_str().to_string();
            if let Ok(v) = HeaderValue::from_str(&id) {
                request.headers_mut().insert("x-request-id", v);
            }
            id
        }
    };
    let accessor = presented_accessor(&route, request.headers());
    let method = request.method().as_str().to_string();
    // The path only: the query can carry a ciphertext.
    let path = logged_path(request.uri().path());
    let mut response = next.run(request).await;
    let status = response.status();
    let (accessor, logged_in) = match response.extensions_mut().remove::<LoggedIn>() {
        Some(login) => (Some(login.accessor), true),
        None => (accessor, false),
    };
    let anonymous = !logged_in
        && match &accessor {
            None => true,
            Some(_) if status == StatusCode::UNAUTHORIZED => true,
            // Vault answers an unknown token with 403: whether the node knows it decides.
            Some(a) if status == StatusCode::FORBIDDEN => {
                !matches!(state.service.token(a), Ok(Some(_)))
            }
            Some(_) => false,
        };
    let entry = Entry {
        time: crate::time::rfc3339(crate::time::now_ms()),
        node: state.node.id(),
        request_id: request_id.chars().take(128).collect(),
        accessor,
        method,
        route,
        path,
        status: status.as_u16(),
    };
    // Inline, not on the blocking pool: one short write(2) under a mutex, cheaper than a
    // thread hand-off per request (measured: follower GETs 6.6k -> see BENCHMARKS.md).
    if let Err(why) = log.record(&entry, anonymous) {
        return ApiError::Unavailable(format!("the audit log cannot be written: {why}"))
            .into_response();
    }
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", v);
    }
    response
}

/// Longest path logged, in characters.
const MAX_LOGGED_PATH: usize = 1024;

/// The accessor of the token the route authenticates with (see the module doc).
fn presented_accessor(route: &str, headers: &HeaderMap) -> Option<String> {
    let header = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let vault = route.starts_with("/v1/");
    let token = match header("x-vault-token") {
        Some(t) if vault => Some(t),
        _ => header(axum::http::header::AUTHORIZATION.as_str())
            .and_then(|v| v.split_once(' '))
            .map(|(_, t)| t),
    }?;
    let token = token.trim();
    (!token.is_empty()).then(|| token::accessor(token))
}

/// The path as the handlers see it: percent-decoded (invalid UTF-8 replaced), bounded.
fn logged_path(raw: &str) -> String {
    let decoded = percent_encoding::percent_decode_str(raw).decode_utf8_lossy();
    let mut out: String = decoded.chars().take(MAX_LOGGED_PATH).collect();
    if decoded.chars().nth(MAX_LOGGED_PATH).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_accessor_is_the_one_the_route_authenticates_with() {
        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            HeaderValue::from_static("Bearer api-token"),
        );
        h.insert("x-vault-token", HeaderValue::from_static("vault-token"));
        let api = presented_accessor("/api/v1/secrets/{*path}", &h);
        assert_eq!(api, Some(token::accessor("api-token")));
        let vault = presented_accessor("/v1/{*rest}", &h);
        assert_eq!(vault, Some(token::accessor("vault-token")));
        h.remove("x-vault-token");
        let vault = presented_accessor("/v1/{*rest}", &h);
        assert_eq!(vault, Some(token::accessor("api-token")));
        assert_eq!(
            presented_accessor("/api/v1/tokens", &HeaderMap::new()),
            None
        );
    }

    #[test]
    fn paths_are_decoded_and_bounded() {
        assert_eq!(
            logged_path("/api/v1/secrets/a%20b/%C3%A9"),
            "/api/v1/secrets/a b/é"
        );
        let long = format!("/v1/{}", "%41".repeat(5_000));
        let logged = logged_path(&long);
        assert_eq!(logged.chars().count(), MAX_LOGGED_PATH + 1);
        assert!(logged.ends_with('…'));
    }
}
