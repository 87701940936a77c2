//! Vault's `auth/token/*` calls that raftsafe's tokens can answer: who a token is (by itself
//! or by accessor) and revocation (by accessor, or of the calling token itself).
//!
//! Invariants:
//! - The authority rules are `/api/v1/tokens`' own ([`crate::api::tokens::revoke_as`]): a
//!   caller with `admin` looks up and revokes only tokens within its own policy, and may
//!   always look up and revoke itself. One model, two spellings.
//! - A lookup shows a token's accessor, name, scopes (as Vault's `policies`), path patterns
//!   and expiry, never the token. Creating tokens through Vault's API needs Vault's policy
//!   language, which raftsafe does not speak yet: `auth/token/create` answers 400 naming
//!   `POST /api/v1/tokens` (see `NOT_YET` in the dispatcher).

use axum::body::Body;
use axum::http::{Method, StatusCode};
use axum::response::IntoResponse;
use serde_json::{json, Value};

use super::{envelope, Call, Reply, VaultError};
use crate::api::error::ApiError;
use crate::api::input::{json_object, read_body, required};
use crate::secret::token::{Authority, Scope};
use crate::time::rfc3339;

/// Vault's `policies` for a token: the named ACL policies it was made with (by
/// `auth/token/create -policy=…` or a role's `token_policies`), then its own policy's scopes
/// (all a token of `/api/v1/tokens`, the root token or a role with only `token_scopes` has).
pub(super) fn policy_names(acl_policies: &[String], authority: &Authority) -> Vec<String> {
    let mut names = acl_policies.to_vec();
    names.extend(
        authority.grants()[0]
            .scopes
            .iter()
            .map(|s| s.as_str().to_string()),
    );
    names
}

/// A token as Vault's lookup calls describe it.
fn token_data(
    accessor: &str,
    name: &str,
    acl_policies: &[String],
    authority: &Authority,
    expires_at_ms: Option<u64>,
) -> Value {
    let now = crate::time::now_ms();
    let mut paths: Vec<&str> = Vec::new();
    for p in authority.grants().iter().flat_map(|g| g.paths.iter()) {
        if !paths.contains(&p.as_str()) {
            paths.push(p.as_str());
        }
    }
    json!({
        "accessor": accessor,
        "display_name": name,
        "policies": policy_names(acl_policies, authority),
        "meta": {"paths": paths.join(",")},
        "expire_time": expires_at_ms.map(rfc3339),
        "ttl": expires_at_ms.map_or(0, |t| t.saturating_sub(now) / 1000),
        "renewable": false,
        "type": "service",
    })
}

/// `{"accessor": "..."}`: a token accessor, 16 hexadecimal characters.
async fn accessor_body(body: Body) -> Result<String, VaultError> {
    let bytes = read_body(body, 4 * 1024).await?;
    let mut body = json_object(
        &bytes,
        &["accessor"],
        "a JSON object {\"accessor\": \"...\"}",
    )?;
    match required(&mut body, "accessor")? {
        Value::String(a) if a.len() == 16 && a.chars().all(|c| c.is_ascii_hexdigit()) => {
            Ok(a.to_ascii_lowercase())
        }
        _ => Err(ApiError::bad_request("'accessor' must be 16 hexadecimal characters").into()),
    }
}

impl Call {
    /// `auth/token/lookup-self`: who the token is (what hvac's `is_authenticated` calls).
    pub(super) async fn lookup_self(&self, method: &Method) -> Reply {
        if method != Method::GET {
            return Err(VaultError::unsupported(method, "auth/token/lookup-self"));
        }
        let (who, _) = self.current().await?;
        Ok(envelope(token_data(
            &who.accessor,
            &who.name,
            &who.acl_policies,
            &who.authority,
            who.expires_at_ms,
        )))
    }

    /// `auth/token/lookup-accessor` `{"accessor"}`: another token, for an `admin` whose
    /// policy covers it (or the caller itself). After the read-index round, so a token
    /// created or revoked before the call is seen as such.
    pub(super) async fn lookup_accessor(&self, method: &Method, body: Body) -> Reply {
        self.only_write(method, "auth/token/lookup-accessor")?;
        let (who, _) = self.current().await?;
        let accessor = accessor_body(body).await?;
        if accessor != who.accessor {
            who.require(Scope::Admin)?;
        }
        // Vault's answer for an accessor it does not know, or a revoked token's.
        let (record, _) = self
            .state
            .service
            .token(&accessor)
            .map_err(ApiError::from)?
            .filter(|(_, revoked)| revoked.is_none())
            .ok_or_else(|| VaultError::new(StatusCode::BAD_REQUEST, "invalid accessor"))?;
        if accessor != who.accessor {
            who.require_within(&record.authority())?;
        }
        Ok(envelope(token_data(
            &record.accessor,
            &record.name,
            &record.acl_policies,
            &record.authority(),
            record.expires_at_ms,
        )))
    }

    /// `auth/token/revoke-accessor` `{"accessor"}`: 204, with `/api/v1`'s authority rule.
    pub(super) async fn revoke_accessor(&self, method: &Method, body: Body) -> Reply {
        self.only_write(method, "auth/token/revoke-accessor")?;
        let who = self.principal().await?;
        who.require(Scope::Admin)?;
        let accessor = accessor_body(body).await?;
        crate::api::tokens::revoke_as(&self.state, &who, &accessor).await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }

    /// `auth/token/revoke-self`: the calling token, whatever its scopes (204).
    pub(super) async fn revoke_self(&self, method: &Method) -> Reply {
        self.only_write(method, "auth/token/revoke-self")?;
        let who = self.principal().await?;
        crate::api::tokens::revoke_as(&self.state, &who, &who.accessor).await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }
}
