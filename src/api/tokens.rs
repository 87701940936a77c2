//! `/tokens`: managing API tokens (`admin` scope).
//!
//! A created token is returned once, in the response to its creation; afterwards only its
//! accessor, name, policy and dates are shown.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Extension, Path};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::Principal;
use super::error::ApiError;
use super::state::State;
use crate::secret::token::{PathPattern, Policy, Scope, Token, TokenRecord};
use crate::secret::{Command, CommandResult, Op};
use crate::time::{now_ms, rfc3339};

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CreateBody {
    name: String,
    scopes: Vec<String>,
    paths: Vec<String>,
    ttl_seconds: Option<u64>,
}

fn token_json(r: &TokenRecord, revoked: Option<u64>) -> Value {
    json!({
        "accessor": r.accessor,
        "name": r.name,
        "scopes": r.policy.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        "paths": r.policy.paths.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
        "createdAt": rfc3339(r.created_at_ms),
        "expiresAt": r.expires_at_ms.map(rfc3339),
        "revokedAt": revoked.map(rfc3339),
    })
}

pub async fn create(
    state: State,
    Extension(who): Extension<Principal>,
    body: Bytes,
) -> Result<Response, ApiError> {
    who.require(Scope::Admin)?;
    let b: CreateBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "body must be {{\"name\", \"scopes\", \"paths\", \"ttlSeconds\"?}}: {e}"
        ))
    })?;
    if b.name.is_empty() || b.name.len() > 128 {
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
    let paths = b
        .paths
        .iter()
        .map(|p| PathPattern::parse(p))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ApiError::invalid_field("invalidToken", "/paths", e))?;
    let token = Token::generate().map_err(|e| ApiError::Internal(e.to_string()))?;
    let now = now_ms();
    let expires_at_ms = b
        .ttl_seconds
        .map(|s| now.saturating_add(Duration::from_secs(s).as_millis() as u64));
    let record = TokenRecord {
        accessor: token.accessor(),
        name: b.name,
        hash: token.hash(),
        policy: Policy { scopes, paths },
        created_at_ms: now,
        expires_at_ms,
    };
    let sealed = state.barrier.seal_token(&record)?;
    let command = Command::CreateToken {
        accessor: record.accessor.clone(),
        sealed,
        bootstrap: false,
    };
    match state
        .node
        .write(Op::new(command, Some(who.caller())))
        .await?
    {
        CommandResult::TokenCreated => {
            tracing::info!(accessor = %record.accessor, by = %who.accessor, "token created");
            let mut body = token_json(&record, None);
            body["token"] = json!(token.expose());
            Ok((StatusCode::CREATED, Json(body)).into_response())
        }
        other => Err(ApiError::unexpected("creating a token", other)),
    }
}

pub async fn list(
    state: State,
    Extension(who): Extension<Principal>,
) -> Result<Json<Value>, ApiError> {
    who.require(Scope::Admin)?;
    let tokens = state.barrier.tokens()?;
    let resources: Vec<Value> = tokens
        .iter()
        .map(|(r, revoked)| token_json(r, *revoked))
        .collect();
    Ok(Json(json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
        "totalResults": resources.len(),
        "startIndex": 1,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    })))
}

pub async fn revoke(
    state: State,
    Extension(who): Extension<Principal>,
    Path(accessor): Path<String>,
) -> Result<Response, ApiError> {
    who.require(Scope::Admin)?;
    if accessor.len() != 16 || !accessor.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(ApiError::bad_request(
            "a token accessor is 16 hexadecimal characters",
        ));
    }
    let command = Command::RevokeToken {
        accessor: accessor.clone(),
    };
    match state
        .node
        .write(Op::new(command, Some(who.caller())))
        .await?
    {
        CommandResult::TokenRevoked => {
            tracing::info!(%accessor, by = %who.accessor, "token revoked");
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        CommandResult::NotFound => Err(ApiError::NotFound(format!("token {accessor} not found"))),
        other => Err(ApiError::unexpected("revoking a token", other)),
    }
}
