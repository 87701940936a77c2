//! Authentication and authorization of API calls.
//!
//! Every route except `/health/*` passes through [`authenticate`], with the [`Freshness`] of
//! the route's group in [`super::routes`]. It takes the bearer token and looks it up in the
//! replicated token table; the groups differ in how current that table must be:
//! - [`Freshness::Current`] (reads of secrets, tokens and keys; membership changes) runs
//!   the node's read-index round first, so a token revoked by an acknowledged write is refused
//!   from then on, on every node.
//! - [`Freshness::Write`] (writes of secrets, tokens and keys) checks against this node's
//!   table and proposes the write with the token's accessor; the state machine checks again
//!   that the token exists and is neither revoked nor expired *where the write lands in the
//!   log* (`secret::machine`), so a write can never commit after an acknowledged revocation
//!   — and a write costs one quorum round, not two. A token this node does not know yet
//!   (created moments ago) gets the read-index round and a second look before a 401.
//! - [`Freshness::Local`] (`GET /cluster...`) uses this node's table as it is, so an
//!   isolated node can still be inspected; the check may lag a revocation by as much as
//!   this node lags the leader.
//!
//! The current group's middleware also hands the handler the [`Linearized`] view its
//! read-index round gave, which the service's reads require: a handler in another group has none,
//! so it cannot answer from state that may lag.
//!
//! Handlers then ask the [`Principal`] for the scope and path they need: a token's scopes
//! and paths never change after it is created, so this node's copy of them is always right.
//!
//! Invariants:
//! - Missing, malformed, unknown, expired or revoked token → 401 with `WWW-Authenticate:
//!   Bearer`; a valid token outside its scopes or paths → 403. A request without a usable
//!   `Authorization` header is refused before any quorum round.
//! - The token itself is never logged or echoed; only its accessor may appear.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::state::AppState;
use crate::secret::token::{self, Authority, Scope};
use crate::secret::{Caller, SecretPath};
use crate::service::Linearized;
use crate::time::now_ms;

/// The caller, as established by its token.
#[derive(Clone, Debug)]
pub struct Principal {
    pub accessor: String,
    pub name: String,
    pub authority: Authority,
    /// The named ACL policies the token was made with (Vault's `policies`), if any.
    pub acl_policies: Vec<String>,
    pub expires_at_ms: Option<u64>,
}

impl Principal {
    /// The token behind a write, for the state machine to check again where it applies.
    pub fn caller(&self) -> Caller {
        Caller {
            accessor: self.accessor.clone(),
            expires_at_ms: self.expires_at_ms,
        }
    }

    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.authority.has_scope(scope) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "token '{}' lacks the '{}' scope",
                self.name,
                scope.as_str()
            )))
        }
    }

    /// `scope` on every path: for the cluster-wide operations (keys, membership, snapshots,
    /// backup, restore), which no path limit could contain.
    pub fn require_unrestricted(&self, scope: Scope) -> Result<(), ApiError> {
        self.require(scope)?;
        if self.authority.unrestricted(scope) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "token '{}' is limited to some paths; this operation needs '{}' on every path ('*')",
                self.name,
                scope.as_str()
            )))
        }
    }

    /// That `other` grants nothing beyond this token's own: to create, list or revoke a
    /// token with it.
    pub fn require_within(&self, other: &Authority) -> Result<(), ApiError> {
        if self.authority.covers(other) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "token '{}' may only manage tokens within its own scopes and paths",
                self.name
            )))
        }
    }

    pub fn require_path(&self, scope: Scope, path: &SecretPath) -> Result<(), ApiError> {
        self.require(scope)?;
        if self.authority.allows(scope, path) {
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

/// After a read-index round (`_after`) that began after this request was authenticated: refuses
/// the caller if its token was revoked (or expired) meanwhile. For the writes the state
/// machine never sees (encryption under an ondemand mount), which would otherwise trust this
/// node's possibly lagging token table.
pub fn still_valid(state: &AppState, who: &Principal, _after: &Linearized) -> Result<(), ApiError> {
    match state.barrier.token(&who.accessor)? {
        Some((_, Some(_))) => Err(ApiError::Unauthorized(format!(
            "token {} has been revoked",
            who.accessor
        ))),
        Some((record, None)) if record.expired(now_ms()) => Err(ApiError::Unauthorized(format!(
            "token {} has expired",
            who.accessor
        ))),
        Some(_) => Ok(()),
        None => Err(ApiError::Unauthorized(format!(
            "token {} is unknown",
            who.accessor
        ))),
    }
}

pub fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
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

/// Why a presented token was not accepted.
enum Refusal {
    /// Not in this node's token table (yet).
    Unknown,
    Other(ApiError),
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> ApiError {
        match r {
            Refusal::Unknown => ApiError::Unauthorized("unknown token".into()),
            Refusal::Other(e) => e,
        }
    }
}

fn identify(state: &AppState, presented: &str) -> Result<Principal, Refusal> {
    let accessor = token::accessor(presented);
    let (record, revoked) = state
        .barrier
        .token(&accessor)
        .map_err(|e| Refusal::Other(e.into()))?
        .ok_or(Refusal::Unknown)?;
    if !record.matches(presented) {
        return Err(Refusal::Unknown);
    }
    let refuse = |detail: String| Err(Refusal::Other(ApiError::Unauthorized(detail)));
    if revoked.is_some() {
        return refuse(format!("token {accessor} has been revoked"));
    }
    if record.expired(now_ms()) {
        return refuse(format!("token {accessor} has expired"));
    }
    Ok(Principal {
        accessor,
        authority: record.authority(),
        name: record.name,
        acl_policies: record.acl_policies,
        expires_at_ms: record.expires_at_ms,
    })
}

/// How current the token table must be for a route group (see the module doc).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Reads of secrets, tokens and keys, and membership changes: after the read-index round.
    Current,
    /// Writes: against this node's table, and again by the state machine where they apply.
    Write,
    /// This node's table as it is, so an isolated node can still be inspected.
    Local,
}

/// The caller presenting `presented`, after the read-index round, and the view the round
/// gave: for a route that authenticates outside the middleware (the Vault API) and reads.
pub async fn principal_current(
    state: &AppState,
    presented: &str,
) -> Result<(Principal, Linearized), ApiError> {
    let current = state.service.linearize().await?;
    Ok((identify(state, presented)?, current))
}

/// The caller presenting `presented`, with the write rule: this node's table, and the
/// read-index round only for a token it does not know yet.
pub async fn principal_write(state: &AppState, presented: &str) -> Result<Principal, ApiError> {
    match identify(state, presented) {
        Err(Refusal::Unknown) => {
            state.service.linearize().await?;
            Ok(identify(state, presented)?)
        }
        other => Ok(other?),
    }
}

/// The middleware of every route group: authenticates with the group's [`Freshness`].
pub async fn authenticate(
    State((state, freshness)): State<(Arc<AppState>, Freshness)>,
    mut request: Request,
    next: Next,
) -> Response {
    let presented = match bearer(request.headers()) {
        Ok(t) => t.to_string(),
        Err(e) => return e.into_response(),
    };
    let identified = match freshness {
        Freshness::Current => match principal_current(&state, &presented).await {
            Ok((principal, current)) => {
                request.extensions_mut().insert(current);
                Ok(principal)
            }
            Err(e) => Err(e),
        },
        Freshness::Write => principal_write(&state, &presented).await,
        Freshness::Local => identify(&state, &presented).map_err(ApiError::from),
    };
    match identified {
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(e) => e.into_response(),
    }
}
