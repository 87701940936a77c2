//! `/auth/{approle,jwt}/login` and `/tokens/self/renew`: raftsafe's own spelling of the
//! login methods whose roles are managed through Vault's API (`auth/approle/role/…`,
//! `auth/jwt/…`, see `vault::login`). One service underneath: a login here and one through
//! `/v1/auth/…/login` are the same operation.
//!
//! Invariants:
//! - A login needs no token and proposes nothing unless its credential verifies; a refusal is
//!   a 400 saying why (AppRole: "invalid role or secret ID", never which half).
//! - The token is in the answer only; the audit line names its accessor ([`LoggedIn`]).
//! - Renewal is for tokens a login issued: it extends the caller's own lease, never past its
//!   max; an administrator's token (no lease) is refused with 400.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::audit::LoggedIn;
use super::body::parse;
use super::error::ApiError;
use super::input::{read_body, Call};
use super::state::State;
use super::wire::{AppRoleLogin, JwtLogin, LoginToken, RenewToken, RenewedToken, TokenView};
use crate::service::{Issued, LoginOutcome, MAX_CREDENTIAL_BYTES};
use crate::time::rfc3339;

fn answer(outcome: LoginOutcome) -> Result<Response, ApiError> {
    let issued: Box<Issued> = match outcome {
        LoginOutcome::Issued(issued) => issued,
        LoginOutcome::Refused(why) => return Err(ApiError::invalid_field("loginRefused", "", why)),
    };
    let body = LoginToken {
        view: TokenView::new(&issued.record, None),
        token: issued.token.expose().to_string(),
        max_expires_at: rfc3339(issued.lease.max_expires_at_ms),
        method: issued.method.as_str().to_string(),
        role: issued.role.clone(),
    };
    let mut response = Json(body).into_response();
    response.extensions_mut().insert(LoggedIn {
        accessor: issued.record.accessor.clone(),
    });
    Ok(response)
}

#[utoipa::path(
    post,
    path = "/auth/approle/login",
    tag = "auth",
    operation_id = "appRoleLogin",
    summary = "Log in with an AppRole role id and secret id",
    description = "Issues a token with the role's scopes and paths, renewable until the role's max TTL. Needs no token. Roles and secret ids are managed through Vault's API (`/v1/auth/approle/role/…`).",
    request_body(content = AppRoleLogin),
    responses(
        (status = 200, description = "The new token (shown this once) and its lease.", body = LoginToken),
        (status = 400, description = "A bad body, or the pair is not a role id and one of its live secret ids.", body = super::wire::ErrorBody),
        (status = 413, description = "The body is larger than a login takes.", body = super::wire::ErrorBody),
        (status = 503, description = "No leader is known or reachable right now; retry.", body = super::wire::ErrorBody),
        (status = 507, description = "A voter's disk is nearly full (NOSPACE): no token was issued.", body = super::wire::ErrorBody),
    ),
)]
pub async fn approle(state: State, body: Body) -> Result<Response, ApiError> {
    let bytes = read_body(body, MAX_CREDENTIAL_BYTES).await?;
    let b: AppRoleLogin = parse(&bytes)?;
    if b.role_id.is_empty() || b.secret_id.is_empty() {
        return Err(ApiError::bad_request(
            "roleId and secretId must not be empty",
        ));
    }
    answer(
        state
            .service
            .login_approle(&b.role_id, &b.secret_id)
            .await?,
    )
}

#[utoipa::path(
    post,
    path = "/auth/jwt/login",
    tag = "auth",
    operation_id = "jwtLogin",
    summary = "Log in with a signed JWT",
    description = "Verifies the JWT offline against the configured keys and the role's bindings (audience, subject, claims; exp and nbf with the role's leeway) and issues a token with the role's scopes and paths. Needs no token. Roles and keys are managed through Vault's API (`/v1/auth/jwt/…`).",
    request_body(content = JwtLogin),
    responses(
        (status = 200, description = "The new token (shown this once) and its lease.", body = LoginToken),
        (status = 400, description = "A bad body, an unknown role, or a JWT that does not verify (the detail names the check).", body = super::wire::ErrorBody),
        (status = 413, description = "The body is larger than a login takes.", body = super::wire::ErrorBody),
        (status = 503, description = "No leader is known or reachable right now; retry.", body = super::wire::ErrorBody),
        (status = 507, description = "A voter's disk is nearly full (NOSPACE): no token was issued.", body = super::wire::ErrorBody),
    ),
)]
pub async fn jwt(state: State, body: Body) -> Result<Response, ApiError> {
    let bytes = read_body(body, MAX_CREDENTIAL_BYTES + 1024).await?;
    let b: JwtLogin = parse(&bytes)?;
    if b.role.is_empty() || b.jwt.is_empty() {
        return Err(ApiError::bad_request("role and jwt must not be empty"));
    }
    answer(state.service.login_jwt(&b.role, &b.jwt).await?)
}

#[utoipa::path(
    post,
    path = "/tokens/self/renew",
    tag = "tokens",
    operation_id = "renewSelf",
    summary = "Renew the calling token's lease",
    description = "For tokens issued by a login: the token lives `incrementSeconds` (default: its role's TTL) from now, never past its max. Any scope may renew itself.",
    request_body(content = RenewToken),
    responses(
        (status = 200, description = "The lease now.", body = RenewedToken),
        (status = 400, description = "A bad body, or the token was not issued by a login (not renewable).", body = super::wire::ErrorBody),
        (status = 413, description = "The body is larger than a renewal takes (4 KiB).", body = super::wire::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn renew_self(state: State, mut call: Call) -> Result<Json<RenewedToken>, ApiError> {
    call.query(&[])?;
    let bytes = call.body(4 * 1024).await?;
    let increment = if bytes.trim_ascii().is_empty() {
        0
    } else {
        let b: RenewToken = parse(&bytes)?;
        b.increment_seconds.unwrap_or(0)
    };
    let who = &call.who;
    let lease = state
        .service
        .renew_token(who.caller(), &who.accessor, increment)
        .await?
        .map_err(ApiError::bad_request)?;
    Ok(Json(RenewedToken {
        accessor: who.accessor.clone(),
        expires_at: rfc3339(lease.expires_at_ms),
        max_expires_at: rfc3339(lease.max_expires_at_ms),
    }))
}
