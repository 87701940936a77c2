//! Vault's login methods on raftsafe's tokens: AppRole (`auth/approle/…`) and JWT
//! (`auth/jwt/…`), and `auth/token/renew-self`, so that a workload logs in with what
//! Vault's tooling already sends (hvac's `auth.approle.login` and `auth.jwt.jwt_login`,
//! `bao write auth/approle/login`, the agent injectors and External Secrets' `jwt` and
//! `appRole` auth).
//!
//! A role's grant is raftsafe's policy, spelled as two role fields, `token_scopes`
//! (`read:secret`, `write:secret`, `admin`, `metrics`) and `token_paths` (path patterns),
//! and/or Vault's `token_policies`: named ACL policies ([`super::policy`]) whose grants each
//! login's token gets, as they are at the login. `policies` is the older name of the same
//! field, as in Vault.
//!
//! Invariants:
//! - Managing a role needs `admin`, and a role may grant nothing beyond its writer's own
//!   policy (the rule for creating tokens, since a role mints them): no escalation through a
//!   role. Its `token_policies` count with the grants they hold when it is written, and
//!   must exist then (a name that exists only later would grant what its later author
//!   chose). Changing what a named policy grants is the policy's author's decision, which
//!   `sys/policies/acl` already restricts to an unrestricted `admin`. The JWT keys are
//!   cluster-wide: writing them needs an unrestricted `admin`.
//! - A login needs no token. A refused login proposes nothing and says why (for AppRole,
//!   Vault's single "invalid role or secret ID"), with 400 as Vault does; the credential
//!   itself is never logged or echoed.
//! - Every option of Vault's roles that raftsafe does not implement is accepted only with the
//!   value that asks for nothing (e.g. `token_num_uses: 0`), and refused by name otherwise.

use axum::body::Body;
use axum::http::{Method, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Map, Value};

use super::fields::{bad, boolean, int, object, seconds, string, strings, ENABLE_FIELDS};
use super::{envelope, envelope_value, Call, Reply, VaultError};
use crate::api::audit::LoggedIn;
use crate::api::auth::Principal;
use crate::api::error::ApiError;
use crate::api::input::read_body;
use crate::api::wire::MAX_TTL_SECONDS;
use crate::secret::login::{
    AppRoleBinding, Binding, JwtBinding, JwtConfig, Method as Login, Role, StoredRole,
};
use crate::secret::token::{Authority, PathPattern, Policy, Scope};
use crate::service::{
    random_uuid, Linearized, LoginOutcome, RoleChange, SecretIdOutcome, MAX_CREDENTIAL_BYTES,
};
use crate::time::rfc3339;

/// A token's lifetime when its role sets none: short, since workloads renew or log in again.
pub const DEFAULT_TOKEN_TTL_S: u64 = 3600;
/// The renewal horizon when a role sets none.
pub const DEFAULT_TOKEN_MAX_TTL_S: u64 = 24 * 3600;

/// Fields every role takes, and the Vault token options accepted only as "nothing".
const TOKEN_FIELDS: [&str; 12] = [
    "token_scopes",
    "token_paths",
    "token_ttl",
    "token_max_ttl",
    "token_policies",
    "policies",
    "token_type",
    "token_num_uses",
    "token_period",
    "token_bound_cidrs",
    "token_explicit_max_ttl",
    "token_no_default_policy",
];
const APPROLE_FIELDS: [&str; 6] = [
    "role_id",
    "bind_secret_id",
    "secret_id_ttl",
    "secret_id_num_uses",
    "secret_id_bound_cidrs",
    "local_secret_ids",
];
const JWT_FIELDS: [&str; 14] = [
    "role_type",
    "bound_audiences",
    "bound_subject",
    "bound_claims",
    "bound_claims_type",
    "user_claim",
    "clock_skew_leeway",
    "expiration_leeway",
    "not_before_leeway",
    "claim_mappings",
    "groups_claim",
    "allowed_redirect_uris",
    "verbose_oidc_logging",
    "user_claim_json_pointer",
];

fn method_of(mount: &str) -> Option<Login> {
    match mount {
        "approle" => Some(Login::AppRole),
        "jwt" => Some(Login::Jwt),
        _ => None,
    }
}

/// A role name: one path segment of letters, digits, `-`, `_`, `.` (Vault's rule), ≤ 128.
fn role_name(name: &str) -> Result<&str, VaultError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && name != "."
        && name != "..";
    if ok {
        Ok(name)
    } else {
        Err(bad(format!(
            "invalid role name '{}': 1-128 letters, digits, '-', '_' or '.'",
            name.chars().take(128).collect::<String>()
        )))
    }
}

/// Refuses a Vault option unless it has the value that asks for nothing.
fn nothing_asked(body: &Map<String, Value>, name: &str, why: &str) -> Result<(), VaultError> {
    let asks = match body.get(name) {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => !matches!(s.trim(), "" | "0" | "0s" | "false" | "[]" | "{}"),
        Some(Value::Number(n)) => n.as_f64() != Some(0.0),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
    };
    if asks {
        Err(bad(format!("'{name}' is not supported by raftsafe: {why}")))
    } else {
        Ok(())
    }
}

/// The ACL policies a role write names (`token_policies`, or Vault's older `policies`), if
/// it names any: deduplicated, in order. `root` is refused; `default` is kept, and grants
/// nothing beyond what every token may do to itself.
fn token_policies(body: &Map<String, Value>) -> Result<Option<Vec<String>>, VaultError> {
    let given = match (strings(body, "token_policies")?, strings(body, "policies")?) {
        (Some(_), Some(_)) => {
            return Err(bad(
                "give 'token_policies' or its older name 'policies', not both",
            ))
        }
        (Some(p), None) | (None, Some(p)) => p,
        (None, None) => return Ok(None),
    };
    let mut names: Vec<String> = Vec::new();
    for p in given.into_iter().filter(|p| !p.is_empty()) {
        if p == "root" {
            return Err(bad(
                "token_policies: a role cannot issue root tokens; name policies that grant what its workloads need",
            ));
        }
        if p != "default" {
            crate::secret::acl::check_name(&p).map_err(|e| bad(format!("token_policies: {e}")))?;
        }
        if !names.contains(&p) {
            names.push(p);
        }
    }
    Ok(Some(names))
}

/// Applies the token fields of `body` to `role` (a new role starts from the defaults), but
/// for `token_policies` ([`token_policies`]). `policies` says whether the role names ACL
/// policies that grant something, without which it needs `token_scopes` and `token_paths`.
fn token_fields(
    body: &Map<String, Value>,
    role: &mut Role,
    policies: bool,
) -> Result<(), VaultError> {
    if let Some(t) = string(body, "token_type")? {
        if !matches!(t, "" | "default" | "service") {
            return Err(bad(format!(
                "token_type '{t}' is not supported: raftsafe issues service tokens"
            )));
        }
    }
    nothing_asked(
        body,
        "token_num_uses",
        "tokens are limited by time, not uses",
    )?;
    nothing_asked(body, "token_period", "tokens renew within token_max_ttl")?;
    nothing_asked(
        body,
        "token_bound_cidrs",
        "tokens are not bound to addresses",
    )?;
    nothing_asked(body, "token_explicit_max_ttl", "use token_max_ttl")?;
    if let Some(scopes) = strings(body, "token_scopes")? {
        role.policy.scopes = scopes
            .iter()
            .map(|s| {
                Scope::parse(s).ok_or_else(|| {
                    bad(format!(
                        "token_scopes: unknown scope '{s}' (known: read:secret, write:secret, admin, metrics)"
                    ))
                })
            })
            .collect::<Result<_, _>>()?;
    }
    if let Some(paths) = strings(body, "token_paths")? {
        role.policy.paths = paths
            .iter()
            .map(|p| PathPattern::parse(p).map_err(|e| bad(format!("token_paths: {e}"))))
            .collect::<Result<_, _>>()?;
    }
    if let Some(ttl) = seconds(body, "token_ttl")? {
        role.token_ttl_s = if ttl == 0 { DEFAULT_TOKEN_TTL_S } else { ttl };
    }
    if let Some(max) = seconds(body, "token_max_ttl")? {
        role.token_max_ttl_s = if max == 0 {
            DEFAULT_TOKEN_MAX_TTL_S
        } else {
            max
        };
    }
    for (name, v) in [
        ("token_ttl", role.token_ttl_s),
        ("token_max_ttl", role.token_max_ttl_s),
    ] {
        if v > MAX_TTL_SECONDS {
            return Err(bad(format!(
                "{name} may be at most {MAX_TTL_SECONDS} seconds (100 years)"
            )));
        }
    }
    if role.token_ttl_s > role.token_max_ttl_s {
        return Err(bad(format!(
            "token_ttl ({}s) is longer than token_max_ttl ({}s)",
            role.token_ttl_s, role.token_max_ttl_s
        )));
    }
    let (scopes, paths) = (role.policy.scopes.is_empty(), role.policy.paths.is_empty());
    if scopes && paths && policies {
        return Ok(());
    }
    if scopes {
        return Err(bad(
            "a role needs token_scopes (read:secret, write:secret, admin, metrics) and token_paths, or token_policies",
        ));
    }
    if paths {
        return Err(bad(
            "a role needs token_paths: the path patterns its tokens reach (e.g. app/*)",
        ));
    }
    Ok(())
}

fn approle_fields(body: &Map<String, Value>, b: &mut AppRoleBinding) -> Result<(), VaultError> {
    if boolean(body, "bind_secret_id")? == Some(false) {
        return Err(bad(
            "bind_secret_id=false is not supported: every AppRole login needs a secret id",
        ));
    }
    nothing_asked(
        body,
        "secret_id_bound_cidrs",
        "secret ids are not bound to addresses",
    )?;
    nothing_asked(
        body,
        "local_secret_ids",
        "secret ids are replicated like everything else",
    )?;
    if let Some(id) = string(body, "role_id")? {
        b.role_id = role_id(id)?;
    }
    if let Some(ttl) = seconds(body, "secret_id_ttl")? {
        b.secret_id_ttl_s = ttl.min(MAX_TTL_SECONDS);
    }
    if let Some(n) = int(body, "secret_id_num_uses")? {
        b.secret_id_num_uses = n;
    }
    Ok(())
}

fn role_id(id: &str) -> Result<String, VaultError> {
    let id = id.trim();
    if id.len() < 8 || id.len() > 256 || !id.chars().all(|c| c.is_ascii_graphic()) {
        return Err(bad("role_id must be 8-256 printable ASCII characters"));
    }
    Ok(id.to_string())
}

fn jwt_fields(body: &Map<String, Value>, b: &mut JwtBinding) -> Result<(), VaultError> {
    if let Some(t) = string(body, "role_type")? {
        if t != "jwt" {
            return Err(bad(format!(
                "role_type '{t}' is not supported: raftsafe verifies JWTs (role_type jwt); there is no OIDC browser flow"
            )));
        }
    }
    if let Some(t) = string(body, "bound_claims_type")? {
        if t != "string" {
            return Err(bad(format!(
                "bound_claims_type '{t}' is not supported: bound claims match exactly (string)"
            )));
        }
    }
    nothing_asked(
        body,
        "claim_mappings",
        "token metadata holds the role and user claim only",
    )?;
    nothing_asked(body, "groups_claim", "raftsafe has no identity groups")?;
    nothing_asked(
        body,
        "allowed_redirect_uris",
        "there is no OIDC browser flow",
    )?;
    nothing_asked(
        body,
        "user_claim_json_pointer",
        "user_claim names a top-level claim",
    )?;
    nothing_asked(
        body,
        "expiration_leeway",
        "clock_skew_leeway covers exp and nbf",
    )?;
    nothing_asked(
        body,
        "not_before_leeway",
        "clock_skew_leeway covers exp and nbf",
    )?;
    if let Some(a) = strings(body, "bound_audiences")? {
        b.bound_audiences = a;
    }
    if let Some(s) = string(body, "bound_subject")? {
        b.bound_subject = s.to_string();
    }
    if let Some(u) = string(body, "user_claim")? {
        b.user_claim = u.to_string();
    }
    if let Some(l) = seconds(body, "clock_skew_leeway")? {
        b.clock_skew_leeway_s = l.min(3600);
    }
    match body.get("bound_claims") {
        None | Some(Value::Null) => {}
        Some(Value::Object(claims)) => {
            b.bound_claims = claims
                .iter()
                .map(|(name, v)| {
                    let values = match v {
                        Value::String(s) => s.split(',').map(|x| x.trim().to_string()).collect(),
                        Value::Array(items) => items
                            .iter()
                            .map(|i| match i {
                                Value::String(s) => Ok(s.clone()),
                                Value::Number(n) => Ok(n.to_string()),
                                Value::Bool(x) => Ok(x.to_string()),
                                _ => {
                                    Err(bad(format!("bound_claims.{name}: values must be strings")))
                                }
                            })
                            .collect::<Result<Vec<_>, _>>()?,
                        Value::Number(n) => vec![n.to_string()],
                        Value::Bool(x) => vec![x.to_string()],
                        _ => {
                            return Err(bad(format!("bound_claims.{name}: values must be strings")))
                        }
                    };
                    Ok((name.clone(), values))
                })
                .collect::<Result<_, _>>()?;
        }
        Some(_) => {
            return Err(bad(
                "bound_claims must be an object of claim names to values",
            ))
        }
    }
    if b.bound_audiences.is_empty() {
        return Err(bad(
            "a JWT role needs bound_audiences: the audiences (aud) its tokens are minted for",
        ));
    }
    if b.user_claim.is_empty() {
        return Err(bad("a JWT role needs user_claim (e.g. sub)"));
    }
    Ok(())
}

/// `who` must hold `admin`, and may manage a role only if `authority`, what its logins would
/// be granted, lies within its own.
fn require_manage(who: &Principal, authority: &Authority) -> Result<(), VaultError> {
    who.require(Scope::Admin)?;
    who.require_within(authority).map_err(|_| {
        VaultError::from(ApiError::Forbidden(format!(
            "token '{}' may only manage roles whose token_scopes, token_paths and token_policies lie within its own",
            who.name
        )))
    })
}

/// A role as Vault's `GET auth/<method>/role/<name>` shows it.
fn role_view(stored: &StoredRole) -> Value {
    let role = &stored.role;
    let scopes: Vec<&str> = role.policy.scopes.iter().map(|s| s.as_str()).collect();
    let paths: Vec<&str> = role.policy.paths.iter().map(|p| p.as_str()).collect();
    let mut v = json!({
        "token_scopes": scopes,
        "token_paths": paths,
        "token_policies": stored.token_policies,
        "policies": stored.token_policies,
        "token_ttl": role.token_ttl_s,
        "token_max_ttl": role.token_max_ttl_s,
        "token_type": "service",
        "token_num_uses": 0,
        "token_period": 0,
        "token_bound_cidrs": [],
        "token_explicit_max_ttl": 0,
        "token_no_default_policy": false,
    });
    match &role.binding {
        Binding::AppRole(b) => {
            v["bind_secret_id"] = json!(true);
            v["secret_id_ttl"] = json!(b.secret_id_ttl_s);
            v["secret_id_num_uses"] = json!(b.secret_id_num_uses);
            v["secret_id_bound_cidrs"] = json!([]);
            v["local_secret_ids"] = json!(false);
        }
        Binding::Jwt(b) => {
            let claims: Map<String, Value> = b
                .bound_claims
                .iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect();
            v["role_type"] = json!("jwt");
            v["bound_audiences"] = json!(b.bound_audiences);
            v["bound_subject"] = json!(b.bound_subject);
            v["bound_claims"] = if claims.is_empty() {
                Value::Null
            } else {
                Value::Object(claims)
            };
            v["bound_claims_type"] = json!("string");
            v["user_claim"] = json!(b.user_claim);
            v["clock_skew_leeway"] = json!(b.clock_skew_leeway_s);
            v["claim_mappings"] = Value::Null;
        }
    }
    v
}

/// Vault's answer to a login: the token in `auth`, or Vault's 400 saying why not.
fn login_reply(outcome: LoginOutcome) -> Reply {
    let issued = match outcome {
        LoginOutcome::Issued(issued) => issued,
        LoginOutcome::Refused(why) => return Err(VaultError::new(StatusCode::BAD_REQUEST, why)),
    };
    let mut body = envelope_value(Value::Null);
    let policies =
        super::token::policy_names(&issued.record.acl_policies, &issued.record.authority());
    let paths: Vec<&str> = issued
        .record
        .policy
        .paths
        .iter()
        .map(|p| p.as_str())
        .collect();
    let mut metadata: Map<String, Value> = issued
        .metadata
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    metadata.insert("paths".into(), json!(paths.join(",")));
    let ttl_s = issued
        .lease
        .expires_at_ms
        .saturating_sub(issued.record.created_at_ms)
        / 1000;
    body["auth"] = json!({
        "client_token": issued.token.expose(),
        "accessor": issued.record.accessor,
        "policies": policies,
        "token_policies": policies,
        "identity_policies": null,
        "metadata": metadata,
        "lease_duration": ttl_s,
        "renewable": true,
        "entity_id": "",
        "token_type": "service",
        "orphan": true,
        "mfa_requirement": null,
        "num_uses": 0,
    });
    body["mount_type"] = json!(issued.method.as_str());
    let mut response = Json(body).into_response();
    // The audit line names the token this login issued (never the credential).
    response.extensions_mut().insert(LoggedIn {
        accessor: issued.record.accessor.clone(),
    });
    Ok(response)
}

impl Call {
    /// `sys/auth`: the login methods (token, approle, jwt), as `bao auth list` reads them.
    pub(super) async fn auth_methods(&self, method: &Method) -> Reply {
        self.only_get(method, "sys/auth")?;
        let _ = self.current().await?;
        let entry = |kind: &str, description: &str| {
            json!({
                "type": kind,
                "description": description,
                "accessor": format!("auth_{kind}_raftsafe"),
                "config": {"default_lease_ttl": 0, "max_lease_ttl": 0, "token_type": "default-service"},
                "options": null,
                "local": false,
                "seal_wrap": false,
                "external_entropy_access": false,
            })
        };
        let methods = json!({
            "token/": entry("token", "raftsafe's tokens (POST /api/v1/tokens)"),
            "approle/": entry("approle", "AppRole: role id + secret id"),
            "jwt/": entry("jwt", "JWT: a workload's signed token, verified offline"),
        });
        let mut body = envelope_value(methods.clone());
        if let (Value::Object(top), Value::Object(m)) = (&mut body, methods) {
            top.extend(m);
        }
        Ok(Json(body).into_response())
    }

    /// `sys/auth/<path>`: `bao auth enable approle|jwt` succeeds and changes nothing (both
    /// are always there, at their default paths); anything else is refused by name.
    pub(super) async fn enable_auth(&self, method: &Method, path: &str, body: Body) -> Reply {
        let who = self.principal().await?;
        who.require(Scope::Admin)?;
        let path = path.trim_end_matches('/');
        match *method {
            Method::POST | Method::PUT => {
                let bytes = read_body(body, 64 * 1024).await?;
                let fields = object(&bytes, &ENABLE_FIELDS)?;
                let kind = string(&fields, "type")?.unwrap_or("");
                match (path, kind) {
                    ("approle", "approle") | ("jwt", "jwt") => {
                        Ok(StatusCode::NO_CONTENT.into_response())
                    }
                    _ => Err(bad(format!(
                        "raftsafe serves the login methods approle (at auth/approle) and jwt (at auth/jwt) only; '{}' of type '{}' cannot be enabled",
                        path.chars().take(128).collect::<String>(),
                        kind.chars().take(64).collect::<String>()
                    ))),
                }
            }
            Method::DELETE => Err(bad(
                "the login methods cannot be disabled; delete their roles instead",
            )),
            ref m => Err(VaultError::unsupported(m, "sys/auth")),
        }
    }

    /// Every `auth/approle/…` and `auth/jwt/…` request.
    pub(super) async fn login_method(
        &self,
        method: &Method,
        mount: &str,
        rest: &str,
        body: Body,
    ) -> Reply {
        let Some(kind) = method_of(mount) else {
            return Err(VaultError::no_route(&format!("auth/{mount}/{rest}")));
        };
        let parts: Vec<&str> = rest.split('/').collect();
        match (kind, parts.as_slice()) {
            (Login::AppRole, ["login"]) => self.approle_login(method, body).await,
            (Login::Jwt, ["login"]) => self.jwt_login(method, body).await,
            (Login::Jwt, ["config"]) => self.jwt_config(method, body).await,
            (_, ["role"]) | (_, ["role", ""]) => self.list_roles(method, kind).await,
            (_, ["role", name]) => self.role(method, kind, role_name(name)?, body).await,
            (Login::AppRole, ["role", name, "role-id"]) => {
                self.role_id(method, role_name(name)?, body).await
            }
            (Login::AppRole, ["role", name, "secret-id"]) => {
                self.secret_id(method, role_name(name)?, body).await
            }
            (Login::AppRole, ["role", name, "custom-secret-id"]) => {
                self.only_write(method, "custom-secret-id")?;
                self.new_secret_id(role_name(name)?, body, true).await
            }
            (Login::AppRole, ["role", name, "secret-id", op @ ("lookup" | "destroy")])
            | (Login::AppRole, ["role", name, "secret-id-accessor", op @ ("lookup" | "destroy")]) =>
            {
                let by_accessor = parts[2] == "secret-id-accessor";
                self.secret_id_op(method, role_name(name)?, op, by_accessor, body)
                    .await
            }
            _ => Err(VaultError::no_route(&format!("auth/{mount}/{rest}"))),
        }
    }

    /// What a login with `role` naming `policies` would be granted in `at`, and which of
    /// those policies do not exist there.
    fn role_authority(
        &self,
        at: &Linearized,
        role: &Role,
        policies: &[String],
    ) -> Result<(Authority, Vec<String>), VaultError> {
        let (grants, missing) = self
            .state
            .service
            .policy_grants(at, policies)
            .map_err(ApiError::from)?;
        Ok((Authority::new(role.policy.clone(), &grants), missing))
    }

    /// The caller, who must hold `admin`, and may manage a role only if what its logins
    /// would be granted in `at` lies within the caller's own authority.
    fn may_manage(
        &self,
        who: &Principal,
        at: &Linearized,
        role: &Role,
        policies: &[String],
    ) -> Result<(), VaultError> {
        // A caller without `admin` is refused before any policy is read for it.
        who.require(Scope::Admin)?;
        let (authority, _) = self.role_authority(at, role, policies)?;
        require_manage(who, &authority)
    }

    async fn list_roles(&self, method: &Method, kind: Login) -> Reply {
        let listing = self.listing(method)?;
        if !listing {
            return Err(VaultError::unsupported(method, "role"));
        }
        let (who, at) = self.current().await?;
        who.require(Scope::Admin)?;
        let mut keys: Vec<String> = Vec::new();
        for (name, r) in self
            .state
            .service
            .roles(&at, kind)
            .map_err(ApiError::from)?
        {
            let (authority, _) = self.role_authority(&at, &r.role, &r.token_policies)?;
            if who.authority.covers(&authority) {
                keys.push(name);
            }
        }
        if keys.is_empty() {
            return Err(VaultError::not_found());
        }
        Ok(envelope(json!({"keys": keys})))
    }

    async fn role(&self, method: &Method, kind: Login, name: &str, body: Body) -> Reply {
        self.query(&[])?;
        match *method {
            Method::GET => {
                let (who, at) = self.current().await?;
                let stored = self
                    .state
                    .service
                    .role(&at, kind, name)
                    .map_err(ApiError::from)?
                    .ok_or_else(VaultError::not_found)?;
                self.may_manage(&who, &at, &stored.role, &stored.token_policies)?;
                Ok(envelope(role_view(&stored)))
            }
            Method::POST | Method::PUT => {
                let (who, at) = self.current().await?;
                who.require(Scope::Admin)?;
                let bytes = read_body(body, 64 * 1024).await?;
                // `name` is the path's own field in Vault, which also takes it in the body
                // (hvac's `auth.jwt.create_role` sends it): accepted when it is the path's.
                let mut allowed: Vec<&str> = vec!["name"];
                allowed.extend(TOKEN_FIELDS);
                allowed.extend(match kind {
                    Login::AppRole => APPROLE_FIELDS.as_slice(),
                    Login::Jwt => JWT_FIELDS.as_slice(),
                });
                let fields = object(&bytes, &allowed)?;
                if let Some(given) = string(&fields, "name")?.filter(|n| *n != name) {
                    return Err(bad(format!(
                        "field 'name' is '{}' but the path names role '{name}'",
                        given.chars().take(128).collect::<String>()
                    )));
                }
                let existing = self
                    .state
                    .service
                    .role(&at, kind, name)
                    .map_err(ApiError::from)?;
                let (mut role, kept) = match existing {
                    Some(stored) => {
                        self.may_manage(&who, &at, &stored.role, &stored.token_policies)?;
                        (stored.role, stored.token_policies)
                    }
                    None => (
                        Role {
                            policy: Policy {
                                scopes: Vec::new(),
                                paths: Vec::new(),
                            },
                            token_ttl_s: DEFAULT_TOKEN_TTL_S,
                            token_max_ttl_s: DEFAULT_TOKEN_MAX_TTL_S,
                            binding: match kind {
                                Login::AppRole => Binding::AppRole(AppRoleBinding {
                                    role_id: random_uuid().map_err(ApiError::from)?,
                                    secret_id_ttl_s: 0,
                                    secret_id_num_uses: 0,
                                }),
                                Login::Jwt => Binding::Jwt(JwtBinding {
                                    bound_audiences: Vec::new(),
                                    bound_subject: String::new(),
                                    bound_claims: Vec::new(),
                                    user_claim: String::new(),
                                    clock_skew_leeway_s: 60,
                                }),
                            },
                        },
                        Vec::new(),
                    ),
                };
                let policies = token_policies(&fields)?.unwrap_or(kept);
                token_fields(&fields, &mut role, policies.iter().any(|p| p != "default"))?;
                match &mut role.binding {
                    Binding::AppRole(b) => approle_fields(&fields, b)?,
                    Binding::Jwt(b) => jwt_fields(&fields, b)?,
                }
                let (authority, missing) = self.role_authority(&at, &role, &policies)?;
                if let Some(absent) = missing.first() {
                    return Err(bad(format!(
                        "token_policies: no policy named '{absent}' (write it with sys/policies/acl first)"
                    )));
                }
                require_manage(&who, &authority)?;
                let origin = self.origin(&who, &format!("vault role {kind:?} {name}"), &bytes)?;
                self.write_role(origin, name, role, policies).await
            }
            Method::DELETE => {
                let (who, at) = self.current().await?;
                let Some(stored) = self
                    .state
                    .service
                    .role(&at, kind, name)
                    .map_err(ApiError::from)?
                else {
                    // Vault answers a delete of nothing with 204.
                    who.require(Scope::Admin)?;
                    return Ok(StatusCode::NO_CONTENT.into_response());
                };
                self.may_manage(&who, &at, &stored.role, &stored.token_policies)?;
                let origin =
                    self.origin(&who, &format!("vault delete role {kind:?} {name}"), b"")?;
                self.state
                    .service
                    .delete_role(origin, kind, name)
                    .await
                    .map_err(ApiError::from)?;
                Ok(StatusCode::NO_CONTENT.into_response())
            }
            ref m => Err(VaultError::unsupported(m, "role")),
        }
    }

    /// Writes role `name` (a whole role, or one whose role id changed): 204, or the apply's
    /// refusal as a 400.
    async fn write_role(
        &self,
        origin: crate::service::Origin,
        name: &str,
        role: Role,
        token_policies: Vec<String>,
    ) -> Reply {
        match self
            .state
            .service
            .put_role(origin, name, role, token_policies)
            .await
            .map_err(ApiError::from)?
        {
            RoleChange::Written { .. } => Ok(StatusCode::NO_CONTENT.into_response()),
            RoleChange::Refused(why) => Err(bad(why)),
        }
    }

    /// The AppRole role `name`, for a caller allowed to manage it.
    async fn managed_approle(
        &self,
        name: &str,
    ) -> Result<(Principal, crate::service::Linearized, StoredRole), VaultError> {
        let (who, at) = self.current().await?;
        who.require(Scope::Admin)?;
        let stored = self
            .state
            .service
            .role(&at, Login::AppRole, name)
            .map_err(ApiError::from)?
            .ok_or_else(|| bad(format!("role \"{name}\" does not exist")))?;
        self.may_manage(&who, &at, &stored.role, &stored.token_policies)?;
        Ok((who, at, stored))
    }

    /// `auth/approle/role/<name>/role-id`: read it, or set it (POST `{"role_id"}`).
    async fn role_id(&self, method: &Method, name: &str, body: Body) -> Reply {
        self.query(&[])?;
        let (who, _, stored) = self.managed_approle(name).await?;
        let StoredRole {
            mut role,
            token_policies,
            ..
        } = stored;
        let Binding::AppRole(binding) = &mut role.binding else {
            return Err(VaultError::not_found());
        };
        match *method {
            Method::GET => Ok(envelope(json!({"role_id": binding.role_id}))),
            Method::POST | Method::PUT => {
                let bytes = read_body(body, 4 * 1024).await?;
                let fields = object(&bytes, &["role_id"])?;
                let id = string(&fields, "role_id")?
                    .ok_or_else(|| bad("field 'role_id' is required"))?;
                binding.role_id = role_id(id)?;
                let origin = self.origin(&who, &format!("vault role-id {name}"), &bytes)?;
                self.write_role(origin, name, role, token_policies).await
            }
            ref m => Err(VaultError::unsupported(m, "role-id")),
        }
    }

    /// `auth/approle/role/<name>/secret-id`: generate one (POST), or list accessors (LIST).
    async fn secret_id(&self, method: &Method, name: &str, body: Body) -> Reply {
        if self.listing(method)? {
            let (_, at, _) = self.managed_approle(name).await?;
            let keys: Vec<String> = self
                .state
                .service
                .secret_ids(&at, name)
                .map_err(ApiError::from)?
                .into_iter()
                .map(|s| s.accessor)
                .collect();
            if keys.is_empty() {
                return Err(VaultError::not_found());
            }
            return Ok(envelope(json!({"keys": keys})));
        }
        self.only_write(method, "secret-id")?;
        self.new_secret_id(name, body, false).await
    }

    /// A new secret id for role `name`: generated, or (`custom`, Vault's
    /// `custom-secret-id`) the one the body's `secret_id` gives.
    async fn new_secret_id(&self, name: &str, body: Body, custom: bool) -> Reply {
        let (who, _, stored) = self.managed_approle(name).await?;
        let Binding::AppRole(binding) = &stored.role.binding else {
            return Err(VaultError::not_found());
        };
        let bytes = read_body(body, 64 * 1024).await?;
        let mut allowed = vec![
            "metadata",
            "ttl",
            "num_uses",
            "cidr_list",
            "token_bound_cidrs",
        ];
        if custom {
            allowed.push("secret_id");
        }
        let fields = object(&bytes, &allowed)?;
        let chosen = if custom {
            let given = string(&fields, "secret_id")?.unwrap_or("");
            if given.is_empty() || given.len() > MAX_CREDENTIAL_BYTES {
                return Err(bad(format!(
                    "field 'secret_id' must be 1-{MAX_CREDENTIAL_BYTES} bytes"
                )));
            }
            Some(given.to_string())
        } else {
            None
        };
        nothing_asked(
            &fields,
            "cidr_list",
            "secret ids are not bound to addresses",
        )?;
        nothing_asked(
            &fields,
            "token_bound_cidrs",
            "tokens are not bound to addresses",
        )?;
        let metadata = secret_id_metadata(&fields)?;
        // A secret id lives no longer and allows no more logins than its role says.
        let cap = |asked: u64, role: u64| match (asked, role) {
            (0, r) => r,
            (a, 0) => a,
            (a, r) => a.min(r),
        };
        let ttl = cap(
            seconds(&fields, "ttl")?.unwrap_or(0),
            binding.secret_id_ttl_s,
        );
        let uses = cap(
            int(&fields, "num_uses")?.unwrap_or(0),
            binding.secret_id_num_uses,
        );
        let origin = self.origin(&who, &format!("vault secret-id {name}"), &bytes)?;
        let created = match self
            .state
            .service
            .create_secret_id(origin, name, chosen, ttl, uses, metadata)
            .await
            .map_err(ApiError::from)?
        {
            SecretIdOutcome::Created(created) => created,
            SecretIdOutcome::NoRole => return Err(bad(format!("role \"{name}\" does not exist"))),
            // Vault's words; which role holds it is not told.
            SecretIdOutcome::Taken => return Err(bad("SecretID is already registered")),
        };
        Ok(envelope(json!({
            "secret_id": created.secret_id,
            "secret_id_accessor": created.record.accessor,
            "secret_id_ttl": ttl,
            "secret_id_num_uses": uses,
        })))
    }

    /// `secret-id/lookup|destroy` (`{"secret_id"}`) and `secret-id-accessor/lookup|destroy`
    /// (`{"secret_id_accessor"}`).
    async fn secret_id_op(
        &self,
        method: &Method,
        name: &str,
        op: &str,
        by_accessor: bool,
        body: Body,
    ) -> Reply {
        let allowed = matches!(*method, Method::POST | Method::PUT)
            || (op == "destroy" && method == Method::DELETE);
        if !allowed {
            return Err(VaultError::unsupported(method, op));
        }
        self.query(&[])?;
        let (who, at, _) = self.managed_approle(name).await?;
        let bytes = read_body(body, 4 * 1024).await?;
        let field = if by_accessor {
            "secret_id_accessor"
        } else {
            "secret_id"
        };
        let fields = object(&bytes, &[field])?;
        let value =
            string(&fields, field)?.ok_or_else(|| bad(format!("field '{field}' is required")))?;
        let service = &self.state.service;
        let found = if by_accessor {
            service.secret_id_by_accessor(&at, name, value)
        } else {
            service.find_secret_id(&at, name, value)
        }
        .map_err(ApiError::from)?;
        match op {
            "lookup" => {
                let Some(s) = found else {
                    return Err(VaultError::not_found());
                };
                let metadata: Map<String, Value> = s
                    .metadata
                    .iter()
                    .map(|(k, v)| (k.clone(), json!(v)))
                    .collect();
                Ok(envelope(json!({
                    "secret_id_accessor": s.accessor,
                    "creation_time": rfc3339(s.created_at_ms),
                    "last_updated_time": rfc3339(s.created_at_ms),
                    "expiration_time": s.expires_at_ms.map(rfc3339).unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
                    "secret_id_num_uses": s.uses_left.unwrap_or(0),
                    "secret_id_ttl": s.expires_at_ms.map_or(0, |e| e.saturating_sub(s.created_at_ms) / 1000),
                    "metadata": metadata,
                    "cidr_list": [],
                    "token_bound_cidrs": [],
                })))
            }
            _ => {
                let Some(s) = found else {
                    return Ok(StatusCode::NO_CONTENT.into_response());
                };
                let origin = self.origin(
                    &who,
                    &format!("vault secret-id destroy {name} {}", s.accessor),
                    b"",
                )?;
                service
                    .destroy_secret_id(origin, name, &s.accessor)
                    .await
                    .map_err(ApiError::from)?;
                Ok(StatusCode::NO_CONTENT.into_response())
            }
        }
    }

    /// `auth/approle/login` `{"role_id", "secret_id"}`: no token needed.
    async fn approle_login(&self, method: &Method, body: Body) -> Reply {
        self.only_write(method, "auth/approle/login")?;
        let bytes = read_body(body, MAX_CREDENTIAL_BYTES).await?;
        let fields = object(&bytes, &["role_id", "secret_id"])?;
        let role_id = string(&fields, "role_id")?
            .filter(|s| !s.is_empty())
            .ok_or_else(|| bad("missing role_id"))?;
        let secret_id = string(&fields, "secret_id")?
            .filter(|s| !s.is_empty())
            .ok_or_else(|| bad("missing secret_id"))?;
        let outcome = self.state.service.login_approle(role_id, secret_id).await;
        login_reply(outcome.map_err(ApiError::from)?)
    }

    /// `auth/jwt/login` `{"role", "jwt"}`: no token needed.
    async fn jwt_login(&self, method: &Method, body: Body) -> Reply {
        self.only_write(method, "auth/jwt/login")?;
        let bytes = read_body(body, MAX_CREDENTIAL_BYTES).await?;
        let fields = object(&bytes, &["role", "jwt"])?;
        let role = string(&fields, "role")?
            .filter(|s| !s.is_empty())
            .ok_or_else(|| bad("missing role: raftsafe has no default_role; name the role"))?;
        let role = role_name(role)?;
        let jwt = string(&fields, "jwt")?
            .filter(|s| !s.is_empty())
            .ok_or_else(|| bad("missing jwt"))?;
        let outcome = self.state.service.login_jwt(role, jwt).await;
        login_reply(outcome.map_err(ApiError::from)?)
    }

    /// `auth/jwt/config`: read, or write (needs an unrestricted `admin`).
    async fn jwt_config(&self, method: &Method, body: Body) -> Reply {
        self.query(&[])?;
        match *method {
            Method::GET => {
                let (who, at) = self.current().await?;
                who.require(Scope::Admin)?;
                let config = self
                    .state
                    .service
                    .jwt_config(&at)
                    .map_err(ApiError::from)?
                    .ok_or_else(VaultError::not_found)?
                    .config;
                Ok(envelope(json!({
                    "bound_issuer": config.bound_issuer,
                    "jwt_validation_pubkeys": config.pem_keys,
                    "jwks": config.jwks,
                    "jwt_supported_algs": config.supported_algs,
                    "jwks_url": "",
                    "oidc_discovery_url": "",
                    "default_role": "",
                })))
            }
            Method::POST | Method::PUT => {
                let who = self.principal().await?;
                who.require_unrestricted(Scope::Admin)?;
                let bytes = read_body(body, 1024 * 1024).await?;
                let fields = object(
                    &bytes,
                    &[
                        "bound_issuer",
                        "jwt_validation_pubkeys",
                        "jwks",
                        "jwt_supported_algs",
                        "jwks_url",
                        "jwks_ca_pem",
                        "oidc_discovery_url",
                        "oidc_discovery_ca_pem",
                        "oidc_client_id",
                        "oidc_client_secret",
                        "default_role",
                    ],
                )?;
                for name in ["jwks_url", "oidc_discovery_url"] {
                    nothing_asked(
                        &fields,
                        name,
                        "raftsafe's nodes fetch nothing: paste the JWKS document as 'jwks' (e.g. the output of 'kubectl get --raw /openid/v1/jwks') or PEM keys as 'jwt_validation_pubkeys'",
                    )?;
                }
                for name in [
                    "jwks_ca_pem",
                    "oidc_discovery_ca_pem",
                    "oidc_client_id",
                    "oidc_client_secret",
                ] {
                    nothing_asked(&fields, name, "there is no OIDC flow")?;
                }
                nothing_asked(&fields, "default_role", "every login names its role")?;
                let jwks = match fields.get("jwks") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) if s.trim().is_empty() => None,
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(doc @ Value::Object(_)) => Some(doc.to_string()),
                    Some(_) => {
                        return Err(bad(
                            "jwks must be a JWKS document (an object, or its JSON text)",
                        ))
                    }
                };
                let config = JwtConfig {
                    bound_issuer: string(&fields, "bound_issuer")?.unwrap_or("").to_string(),
                    pem_keys: strings_whole(&fields, "jwt_validation_pubkeys")?,
                    jwks,
                    supported_algs: strings(&fields, "jwt_supported_algs")?.unwrap_or_default(),
                };
                crate::service::jwt::check_config(&config).map_err(bad)?;
                let origin = self.origin(&who, "vault auth/jwt/config", &bytes)?;
                self.state
                    .service
                    .put_jwt_config(origin, config)
                    .await
                    .map_err(ApiError::from)?;
                Ok(StatusCode::NO_CONTENT.into_response())
            }
            ref m => Err(VaultError::unsupported(m, "auth/jwt/config")),
        }
    }

    /// `auth/token/renew-self` `{"increment"?}`: a login token's lease, extended.
    pub(super) async fn renew_self(&self, method: &Method, body: Body) -> Reply {
        self.only_write(method, "auth/token/renew-self")?;
        let who = self.principal().await?;
        let bytes = read_body(body, 4 * 1024).await?;
        let fields = object(&bytes, &["increment"])?;
        let increment = seconds(&fields, "increment")?.unwrap_or(0);
        let lease = self
            .state
            .service
            .renew_token(who.caller(), &who.accessor, increment)
            .await
            .map_err(ApiError::from)?
            .map_err(bad)?;
        let policies = super::token::policy_names(&who.acl_policies, &who.authority);
        let mut body = envelope_value(Value::Null);
        body["auth"] = json!({
            "client_token": "",
            "accessor": who.accessor,
            "policies": policies,
            "token_policies": policies,
            "metadata": null,
            "lease_duration": lease.expires_at_ms.saturating_sub(crate::time::now_ms()) / 1000,
            "renewable": true,
            "entity_id": "",
            "token_type": "service",
            "orphan": true,
            "num_uses": 0,
        });
        Ok(Json(body).into_response())
    }
}

/// `jwt_validation_pubkeys`: a list of PEM keys. From the CLI a single key arrives as one
/// string, which must not be split at its commas (PEM has none, but be exact: the CLI's
/// `k=@file` sends the file as is).
fn strings_whole(body: &Map<String, Value>, name: &str) -> Result<Vec<String>, VaultError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(_) => strings(body, name).map(Option::unwrap_or_default),
    }
}

/// Vault's secret id `metadata`: a JSON object of strings, sent as its JSON text (hvac) or as
/// an object.
fn secret_id_metadata(body: &Map<String, Value>) -> Result<Vec<(String, String)>, VaultError> {
    let map = match body.get("metadata") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::String(s)) if s.trim().is_empty() => return Ok(Vec::new()),
        Some(Value::String(s)) => serde_json::from_str::<Value>(s)
            .map_err(|_| bad("metadata must be a JSON object of strings"))?,
        Some(v) => v.clone(),
    };
    let Value::Object(map) = map else {
        return Err(bad("metadata must be a JSON object of strings"));
    };
    if map.len() > 64 {
        return Err(bad("metadata may have at most 64 keys"));
    }
    map.into_iter()
        .map(|(k, v)| match v {
            Value::String(s) if k.len() <= 128 && s.len() <= 512 => Ok((k, s)),
            Value::String(_) => Err(bad(
                "metadata keys may be at most 128 bytes and values 512 bytes",
            )),
            _ => Err(bad(format!("metadata '{k}' must be a string"))),
        })
        .collect()
}
