//! `/tokens`: managing API tokens (`admin` scope).
//!
//! A created token is returned once, in the response to its creation; afterwards only its
//! accessor, name, policy and dates are shown.
//!
//! Invariants:
//! - Authority is never widened: a caller creates, sees in the listing and revokes only
//!   tokens whose policy lies within its own (`Policy::contains`), and may always revoke
//!   itself. An unrestricted root-like admin therefore sees and manages everything; a
//!   `team-a/*` admin only the tokens inside `team-a/*`.
//! - The scope is checked before the body is read, and the body is read with a small limit,
//!   so a caller without `admin` cannot make the node buffer anything.

use std::time::Duration;

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::auth::Principal;
use super::error::ApiError;
use super::input::Call;
use super::state::{AppState, State};
use super::wire::{CreateToken, CreatedToken, ErrorBody, TokenList, TokenView, LIST_RESPONSE};
use crate::secret::token::{Authority, PathPattern, Policy, Scope, Token, TokenRecord};
use crate::time::now_ms;

/// The largest token-creation body: a name, four scopes and a few hundred path patterns.
const MAX_BODY: usize = 64 * 1024;

#[utoipa::path(
    post,
    path = "/tokens",
    tag = "tokens",
    operation_id = "createToken",
    summary = "Create a token",
    description = "The token is in this answer only; afterwards only its accessor, name, policy and dates are shown.",
    request_body(content = CreateToken),
    responses(
        (status = 201, description = "The new token.", body = CreatedToken),
        (status = 400, description = "A bad body: unknown field, unknown scope, no scope, bad path pattern, name or ttlSeconds out of range.", body = ErrorBody),
        (status = 413, description = "The body is larger than 64 KiB.", body = ErrorBody),
    ),
    security(("bearer" = ["admin"])),
)]
pub async fn create(state: State, mut call: Call) -> Result<Response, ApiError> {
    call.who.require(Scope::Admin)?;
    call.query(&[])?;
    let body = call.body(MAX_BODY).await?;
    let b: CreateToken = super::body::parse(&body)?;
    // Characters, as the message (and the document) says; this counted bytes.
    if b.name.is_empty() || b.name.chars().count() > 128 {
        return Err(ApiError::invalid_field(
            "invalidToken",
            "/name",
            "name must be 1-128 characters",
        ));
    }
    let mut scopes = Vec::new();
    for s in &b.scopes {
        let scope = Scope::parse(s).ok_or_else(|| {
            ApiError::invalid_field(
                "invalidToken",
                "/scopes",
                format!("unknown scope '{s}' (known: read:secret, write:secret, admin, metrics)"),
            )
        })?;
        scopes.push(scope);
    }
    if scopes.is_empty() {
        return Err(ApiError::invalid_field(
            "invalidToken",
            "/scopes",
            "at least one scope is required",
        ));
    }
    let ttl_seconds = b.ttl_seconds;
    let paths = b
        .paths
        .iter()
        .map(|p| PathPattern::parse(p))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ApiError::invalid_field("invalidToken", "/paths", e))?;
    let policy = Policy { scopes, paths };
    call.who.require_within(&Authority::from(policy.clone()))?;
    let token = Token::generate().map_err(|e| ApiError::Internal(e.to_string()))?;
    let now = now_ms();
    let expires_at_ms =
        ttl_seconds.map(|s| now.saturating_add(Duration::from_secs(s).as_millis() as u64));
    let record = TokenRecord {
        accessor: token.accessor(),
        name: b.name,
        hash: token.hash(),
        policy,
        created_at_ms: now,
        expires_at_ms,
        acl_policies: Vec::new(),
        grants: Vec::new(),
    };
    let issued = state
        .service
        .create_token(call.who.caller(), &record)
        .await?;
    tracing::info!(accessor = %issued.accessor, by = %call.who.accessor, "token created");
    let body = CreatedToken {
        view: TokenView::new(&record, None),
        token: token.expose().to_string(),
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

#[utoipa::path(
    get,
    path = "/tokens",
    tag = "tokens",
    operation_id = "listTokens",
    summary = "Every token, revoked and expired ones included",
    responses((status = 200, description = "The tokens (never the tokens themselves).", body = TokenList)),
    security(("bearer" = ["admin"])),
)]
pub async fn list(state: State, call: Call) -> Result<Json<TokenList>, ApiError> {
    let at = call.current()?;
    call.who.require(Scope::Admin)?;
    call.query(&[])?;
    let tokens = state.service.tokens(at)?;
    let resources: Vec<TokenView> = tokens
        .iter()
        .filter(|(r, _)| {
            r.accessor == call.who.accessor || call.who.authority.covers(&r.authority())
        })
        .map(|(r, revoked)| TokenView::new(r, *revoked))
        .collect();
    Ok(Json(TokenList {
        items_per_page: resources.len(),
        total_results: resources.len(),
        resources,
        schemas: [LIST_RESPONSE],
        start_index: 1,
    }))
}

#[utoipa::path(
    delete,
    path = "/tokens/{accessor}",
    tag = "tokens",
    operation_id = "revokeToken",
    summary = "Revoke a token",
    description = "Refused on every node from the moment this answers.",
    params(("accessor" = String, Path, pattern = "^[0-9a-fA-F]{16}$", description = "The token's accessor.")),
    responses(
        (status = 204, description = "Revoked."),
        (status = 400, description = "Not an accessor (16 hexadecimal characters).", body = ErrorBody),
        (status = 404, description = "No such token.", body = ErrorBody),
    ),
    security(("bearer" = ["admin"])),
)]
pub async fn revoke(
    state: State,
    Path(accessor): Path<String>,
    call: Call,
) -> Result<Response, ApiError> {
    call.who.require(Scope::Admin)?;
    call.query(&[])?;
    if accessor.len() != 16 || !accessor.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(ApiError::bad_request(
            "a token accessor is 16 hexadecimal characters",
        ));
    }
    let accessor = accessor.to_ascii_lowercase();
    revoke_as(&state, &call.who, &accessor).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Revokes the token behind `accessor` for `who`, who may revoke itself and any token within
/// its own policy (both dialects' rule). A token's policy never changes, so this node's copy
/// decides; one it does not know yet (created moments ago) gets the read-index round and a
/// second look.
pub async fn revoke_as(state: &AppState, who: &Principal, accessor: &str) -> Result<(), ApiError> {
    if accessor != who.accessor {
        let mut target = state.service.token(accessor)?;
        if target.is_none() {
            state.service.linearize().await?;
            target = state.service.token(accessor)?;
        }
        match target {
            Some((record, _)) => who.require_within(&record.authority())?,
            None => return Err(ApiError::NotFound(format!("token {accessor} not found"))),
        }
    }
    if state.service.revoke_token(who.caller(), accessor).await? {
        tracing::info!(%accessor, by = %who.accessor, "token revoked");
        Ok(())
    } else {
        Err(ApiError::NotFound(format!("token {accessor} not found")))
    }
}
