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
//! - The line holds the accessor of the presented token (a hash prefix), never the token,
//!   and the URL path, never the query (a ciphertext may travel in it).

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::state::AppState;
use crate::audit::Entry;
use crate::secret::{token, RequestId};

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
    // The Vault dialect's X-Vault-Token first, as its dispatcher reads it.
    let vault_token = request
        .headers()
        .get("x-vault-token")
        .and_then(|v| v.to_str().ok())
        .map(|t| token::accessor(t.trim()));
    let accessor = vault_token.or_else(|| {
        request
            .headers()
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .map(|(_, t)| token::accessor(t.trim()))
    });
    let method = request.method().as_str().to_string();
    // The path only: the query can carry a ciphertext. Bounded: it is client input.
    let path: String = request.uri().path().chars().take(1024).collect();
    let mut response = next.run(request).await;
    let entry = Entry {
        time: crate::time::rfc3339(crate::time::now_ms()),
        node: state.node.id(),
        request_id: request_id.chars().take(128).collect(),
        accessor,
        method,
        route,
        path,
        status: response.status().as_u16(),
    };
    // Inline, not on the blocking pool: one short write(2) under a mutex, cheaper than a
    // thread hand-off per request (measured: follower GETs 6.6k -> see BENCHMARKS.md).
    if let Err(why) = log.record(&entry) {
        return ApiError::Unavailable(format!("the audit log cannot be written: {why}"))
            .into_response();
    }
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", v);
    }
    response
}
