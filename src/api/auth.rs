//! Authentication and authorization of API calls.
//!
//! Every route except `/health/*` passes through one of two middlewares, chosen by the
//! route's group in [`super::router`]: [`authenticate_current`] takes the bearer token, runs
//! the node's read barrier (so a token revoked by an acknowledged write is refused from then
//! on, on every node), and looks the token up in the replicated token table;
//! [`authenticate_local`] does the same without the barrier. Handlers then ask the
//! [`Principal`] for the scope and path they need.
//!
//! Invariants:
//! - Missing, malformed, unknown, expired or revoked token → 401 with `WWW-Authenticate:
//!   Bearer`; a valid token outside its scopes or paths → 403. A request without a usable
//!   `Authorization` header is refused before any quorum round.
//! - In the current group the read barrier has run before any handler reads secrets or
//!   tokens: handlers rely on it. The local group (`GET /cluster...`) is served from local
//!   state even when this node cannot reach a quorum — exactly when an operator needs it —
//!   and the token is then checked against this node's copy of the token table, which may
//!   lag a revocation by as much as this node lags the leader.
//! - The token itself is never logged or echoed; only its accessor may appear.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::state::AppState;
use crate::secret::token::{self, Policy, Scope};
use crate::secret::SecretPath;
use crate::time::now_ms;

/// The caller, as established by its token.
#[derive(Clone, Debug)]
pub struct Principal {
    pub accessor: String,
    pub name: String,
    pub policy: Policy,
}

impl Principal {
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.policy.has_scope(scope) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "token '{}' lacks the '{}' scope",
                self.name,
                scope.as_str()
            )))
        }
    }

    pub fn require_path(&self, scope: Scope, path: &SecretPath) -> Result<(), ApiError> {
        self.require(scope)?;
        if self.policy.allows(scope, path) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "token '{}' may not use '{}' on '{path}'",
                self.name,
                scope.as_str()
            )))
        }
    }
}

fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or_else(|| {
            ApiError::Unauthorized(
                "missing Authorization header (expected 'Bearer <token>')".into(),
            )
        })?;
    let value = value
        .to_str()
        .map_err(|_| ApiError::Unauthorized("Authorization header is not ASCII".into()))?;
    let (scheme, token) = value.split_once(' ').ok_or_else(|| {
        ApiError::Unauthorized("Authorization header must be 'Bearer <token>'".into())
    })?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(ApiError::Unauthorized(
            "Authorization header must be 'Bearer <token>'".into(),
        ));
    }
    Ok(token.trim())
}

fn identify(state: &AppState, presented: &str) -> Result<Principal, ApiError> {
    let accessor = token::accessor(presented);
    let unknown = || ApiError::Unauthorized("unknown token".into());
    let (record, revoked) = state
        .barrier
        .token(&accessor)
        .map_err(ApiError::from)?
        .ok_or_else(unknown)?;
    if !record.matches(presented) {
        return Err(unknown());
    }
    if revoked.is_some() {
        return Err(ApiError::Unauthorized(format!(
            "token {accessor} has been revoked"
        )));
    }
    if record.expired(now_ms()) {
        return Err(ApiError::Unauthorized(format!(
            "token {accessor} has expired"
        )));
    }
    Ok(Principal {
        accessor,
        name: record.name,
        policy: record.policy,
    })
}

/// Authenticates after the read barrier: for every route that touches secrets, tokens or
/// keys.
pub async fn authenticate_current(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    authenticate(state, request, next, true).await
}

/// Authenticates against this node's local state: for cluster status only.
pub async fn authenticate_local(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    authenticate(state, request, next, false).await
}

async fn authenticate(
    state: Arc<AppState>,
    mut request: Request,
    next: Next,
    read_barrier: bool,
) -> Response {
    let presented = match bearer(request.headers()) {
        Ok(t) => t.to_string(),
        Err(e) => return e.into_response(),
    };
    if read_barrier {
        if let Err(e) = state.node.linearize().await {
            return ApiError::from(e).into_response();
        }
    }
    match identify(&state, &presented) {
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(e) => e.into_response(),
    }
}
