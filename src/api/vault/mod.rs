//! The Vault KV v2 compatible API under `/v1/`: the same store, spoken in Vault's dialect so
//! that existing clients (hvac, the vault CLI's `kv` commands, external-secrets) work
//! unchanged.
//!
//! The mapping: raftsafe has one KV namespace; Vault addresses a KV v2 engine by its mount.
//! `/v1/secret/data/app/db` is the secret `app/db` of `/api/v1/secrets/app/db` — same
//! versions, same tokens and scopes, same audit and metrics. The KV mount `secret` (what
//! `vault server -dev` creates, and every client's default) is the whole tree; Transit is
//! served at `transit` on the ondemand engine ([`transit`]). `bao secrets enable -path=team-a
//! kv-v2` registers the folder `team-a/` as a further KV v2 mount (`secret::kv_mount`):
//! `team-a/data/db` is `secret/data/team-a/db`, the secret `team-a/db`; a request under it
//! is rewritten to its `secret/` form after the mount table is read (one more read-index
//! round). Any other path is Vault's 404 "no handler for route". `sys/mounts` reports them
//! all.
//!
//! Invariants:
//! - One dispatcher ([`dispatch`]) for every `/v1/` route, because Vault's `LIST` is an
//!   HTTP method no router knows; `GET ?list=true` is the same call.
//! - Authentication is the main API's, with the same freshness rules: the token comes from
//!   `X-Vault-Token` (or `Authorization: Bearer`); reads run the read-index round before the
//!   token check; writes are checked against this node's table and again in apply.
//! - Responses carry Vault's envelope (`request_id`, `lease_id`, `renewable`,
//!   `lease_duration`, `data`, `wrap_info`, `warnings`, `auth`, `mount_type`); errors are
//!   Vault's `{"errors": [...]}` with Vault's status codes (a check-and-set mismatch is 400,
//!   as in Vault). Bad input writes nothing, exactly as on the main API.
//! - `custom_metadata` is Vault's: set whole by `POST/PUT secret/metadata/{path}` (absent:
//!   unchanged), merged by `PATCH` (JSON merge patch, `null` removes a key; the body must
//!   say `Content-Type: application/merge-patch+json`, as Vault requires, or
//!   `application/json`), shown by `GET secret/metadata/{path}` and in `data.metadata` of
//!   `GET secret/data/{path}` (a map, or `null` when there is none). Its limits and refusals
//!   are [`crate::secret::custom`]'s; the scopes are those of the version cap (write) and
//!   of the metadata view (read).

mod fields;
mod login;
mod policy;
mod sys;
mod token;
mod transit;

use std::collections::BTreeSet;

use axum::body::Body;
use axum::extract::{OriginalUri, RawQuery};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::auth::{self, Principal};
use super::error::ApiError;
use super::input::{json_object, parse_u64, query, read_body, request_id};
use super::secrets::{parse_put_body, PutBody};
use super::state::State;
use crate::secret::custom::{self, CustomMetadataPatch};
use crate::secret::kv_mount::{self, StoredKvMount};
use crate::secret::token::Scope;
use crate::secret::versions::{DEFAULT_MAX_VERSIONS, MAX_MAX_VERSIONS};
use crate::secret::{Metadata, Precondition, RequestId, SecretPath};
use crate::service::{
    Condition, CustomChange, CustomMetadata, DeleteOutcome, Linearized, Listing, MetadataChange,
    MetadataOutcome, Origin, PutOutcome, VersionChange,
};
use crate::time::rfc3339;

/// The KV v2 mount that is the whole tree, as Vault clients name it by default (others are
/// folders of it: `secret::kv_mount`).
pub const MOUNT: &str = "secret";

/// Most paths a `LIST` walks before it gives up (it reads the whole subtree).
const MAX_LIST_WALK: usize = 100_000;

/// An error in Vault's shape.
#[derive(Debug)]
struct VaultError {
    status: StatusCode,
    errors: Vec<String>,
}

impl VaultError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        VaultError {
            status,
            errors: vec![message.into()],
        }
    }

    /// Vault answers a missing secret with 404 and an empty error list.
    fn not_found() -> Self {
        VaultError {
            status: StatusCode::NOT_FOUND,
            errors: Vec::new(),
        }
    }

    fn no_route(path: &str) -> Self {
        VaultError::new(
            StatusCode::NOT_FOUND,
            format!("no handler for route \"{path}\". route entry not found."),
        )
    }

    fn unsupported(method: &Method, path: &str) -> Self {
        VaultError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("unsupported operation: {method} on {path}"),
        )
    }
}

impl From<ApiError> for VaultError {
    fn from(e: ApiError) -> Self {
        let status = match &e {
            // Vault reports a check-and-set mismatch as a bad request.
            ApiError::Conflict { .. } => StatusCode::BAD_REQUEST,
            // Vault says "permission denied" for bad and missing tokens alike.
            ApiError::Unauthorized(_) => StatusCode::FORBIDDEN,
            other => other.status(),
        };
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), detail = %e, "vault request failed");
        }
        let message = match &e {
            ApiError::Unauthorized(why) => format!("permission denied ({why})"),
            ApiError::Forbidden(why) => format!("permission denied ({why})"),
            other => other.to_string(),
        };
        VaultError::new(status, message)
    }
}

impl From<crate::barrier::BarrierError> for VaultError {
    fn from(e: crate::barrier::BarrierError) -> Self {
        ApiError::from(e).into()
    }
}

impl IntoResponse for VaultError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({"errors": self.errors}))).into_response()
    }
}

type Reply = Result<Response, VaultError>;

/// Vault's response envelope around `data`.
fn envelope(data: Value) -> Response {
    Json(envelope_value(data)).into_response()
}

fn envelope_value(data: Value) -> Value {
    json!({
        "request_id": uuid(),
        "lease_id": "",
        "renewable": false,
        "lease_duration": 0,
        "data": data,
        "wrap_info": null,
        "warnings": null,
        "auth": null,
        "mount_type": "kv",
    })
}

/// A random id in UUID text form, as Vault's `request_id`.
fn uuid() -> String {
    let hex = RequestId::random().as_str().to_string();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// A KV v2 mount as Vault describes one (`sys/mounts`, `sys/internal/ui/mounts`): `secret/`
/// (`None`), or the registered folder `path`.
fn kv_mount(registered: Option<(&str, &StoredKvMount)>) -> Value {
    let (description, accessor) = match registered {
        None => (
            "raftsafe's key/value store (KV v2 compatible): the whole tree".to_string(),
            "kv_raftsafe".to_string(),
        ),
        Some((path, m)) => (
            m.description.clone(),
            format!("kv_{}", path.replace('/', "_")),
        ),
    };
    json!({
        "type": "kv",
        "description": description,
        "accessor": accessor,
        "config": {"default_lease_ttl": 0, "max_lease_ttl": 0, "force_no_cache": false},
        "options": {"version": "2"},
        "local": false,
        "seal_wrap": false,
        "external_entropy_access": false,
    })
}

/// Transit as Vault describes a mount: always there (see [`transit`]).
fn transit_mount() -> Value {
    json!({
        "type": "transit",
        "description": "Vault's Transit on raftsafe's ondemand engine: a key is the ondemand mount transit/<name>",
        "accessor": "transit_raftsafe",
        "config": {"default_lease_ttl": 0, "max_lease_ttl": 0, "force_no_cache": false},
        "options": null,
        "local": false,
        "seal_wrap": false,
        "external_entropy_access": false,
    })
}

/// Custom metadata as Vault shows it: the map, or `null` when there is none (Vault keeps no
/// empty map either).
fn custom_metadata_value(custom: Option<&CustomMetadata>) -> Value {
    match custom {
        Some(m) if !m.is_empty() => json!(m),
        _ => Value::Null,
    }
}

/// A version's metadata as Vault shows it in `data/` responses (`custom`: the path's custom
/// metadata when the response shows it; a write's answer does not read it).
fn version_metadata(m: &Metadata, custom: Option<&CustomMetadata>) -> Value {
    json!({
        "created_time": rfc3339(m.updated_at_ms),
        "custom_metadata": custom_metadata_value(custom),
        "deletion_time": m.deleted_at_ms.map(rfc3339).unwrap_or_default(),
        "destroyed": false,
        "version": m.version,
    })
}

/// The token of a Vault request: `X-Vault-Token`, else `Authorization: Bearer`.
fn presented(headers: &HeaderMap) -> Result<String, VaultError> {
    if let Some(v) = headers.get("x-vault-token") {
        let t = v
            .to_str()
            .map_err(|_| VaultError::new(StatusCode::BAD_REQUEST, "X-Vault-Token is not ASCII"))?;
        return Ok(t.trim().to_string());
    }
    match auth::bearer(headers) {
        Ok(t) => Ok(t.to_string()),
        Err(_) => Err(VaultError::new(
            StatusCode::FORBIDDEN,
            "permission denied (missing client token: send X-Vault-Token)",
        )),
    }
}

/// Every `/v1/` request.
pub async fn dispatch(
    state: State,
    method: Method,
    OriginalUri(uri): OriginalUri,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let full = uri.path().strip_prefix("/v1/").unwrap_or("").to_string();
    let call = Call {
        state,
        headers,
        raw,
    };
    // A path under a KV mount other than `secret/` is the same call on `secret/` (see
    // `secret::kv_mount`): rewritten once the mount table is read after the read-index round.
    let rewritten;
    let route = match route(&full) {
        Some(r) => Some(r),
        None => match call.on_kv_mount(&full).await {
            Ok(Some(p)) => {
                rewritten = p;
                route(&rewritten)
            }
            Ok(None) => None,
            Err(e) => return e.into_response(),
        },
    };
    let reply = match route {
        Some(Route::Health) => call.health(&method).await,
        Some(Route::Mounts) => call.mounts(&method).await,
        Some(Route::MountOf(path)) => call.mount_of(&method, path).await,
        Some(Route::SealStatus) => call.seal_status(&method).await,
        Some(Route::Leader) => call.leader(&method).await,
        Some(Route::Capabilities(of)) => call.capabilities_of(&method, of, body).await,
        Some(Route::RaftConfiguration) => call.raft_configuration(&method).await,
        Some(Route::AutopilotState) => call.autopilot_state(&method).await,
        Some(Route::RemovePeer) => call.remove_peer(&method, body).await,
        Some(Route::RaftSnapshot { force }) => call.raft_snapshot(&method, force, body).await,
        Some(Route::LookupSelf) => call.lookup_self(&method).await,
        Some(Route::LookupAccessor) => call.lookup_accessor(&method, body).await,
        Some(Route::RevokeAccessor) => call.revoke_accessor(&method, body).await,
        Some(Route::RevokeSelf) => call.revoke_self(&method).await,
        Some(Route::Config) => call.config(&method).await,
        Some(Route::Data(rest)) => call.data(&method, rest, body).await,
        Some(Route::Metadata(rest)) => call.metadata(&method, rest, body).await,
        Some(Route::Versions(op, rest)) => call.versions(&method, op, rest, body).await,
        Some(Route::Transit(rest)) => call.transit(&method, rest, body).await,
        Some(Route::EnableMount(path)) => call.enable_mount(&method, path, body).await,
        Some(Route::AuthMethods) => call.auth_methods(&method).await,
        Some(Route::EnableAuth(path)) => call.enable_auth(&method, path, body).await,
        Some(Route::Login(mount, rest)) => call.login_method(&method, mount, rest, body).await,
        Some(Route::RenewSelf) => call.renew_self(&method, body).await,
        Some(Route::AclPolicy { name, legacy }) => {
            call.acl_policy(&method, name, legacy, body).await
        }
        Some(Route::CreateToken) => call.create_token(&method, body).await,
        Some(Route::NotYet(instead)) => Err(VaultError::new(
            StatusCode::BAD_REQUEST,
            format!("raftsafe does not support {full} through the Vault API yet: {instead}"),
        )),
        None => Err(VaultError::no_route(&full)),
    };
    reply.unwrap_or_else(|e| e.into_response())
}

enum Route<'a> {
    Health,
    Mounts,
    /// `sys/internal/ui/mounts/{path}`: which mount serves a path (the CLI's first call).
    MountOf(&'a str),
    /// A Vault call raftsafe does not answer yet: what to use instead.
    NotYet(&'static str),
    SealStatus,
    Leader,
    Capabilities(sys::Capabilities),
    RaftConfiguration,
    /// `sys/storage/raft/autopilot/state`: every member's health, as this node sees it.
    AutopilotState,
    RemovePeer,
    /// `sys/storage/raft/snapshot` (`force`: `snapshot-force`).
    RaftSnapshot {
        force: bool,
    },
    LookupSelf,
    LookupAccessor,
    RevokeAccessor,
    RevokeSelf,
    Config,
    Data(&'a str),
    Metadata(&'a str),
    Versions(VersionOp, &'a str),
    /// `transit/{rest}`: Vault's Transit on the ondemand engine.
    Transit(&'a str),
    /// `sys/mounts/{path}`: `bao secrets enable` / `disable`.
    EnableMount(&'a str),
    /// `sys/auth`: the login methods.
    AuthMethods,
    /// `sys/auth/{path}`: `bao auth enable` / `disable`.
    EnableAuth(&'a str),
    /// `auth/{approle|jwt}/{rest}`: a login method ([`login`]).
    Login(&'a str, &'a str),
    RenewSelf,
    /// `sys/policies/acl[/{name}]`, or (`legacy`) `sys/policy[/{name}]`.
    AclPolicy {
        name: Option<&'a str>,
        legacy: bool,
    },
    /// `auth/token/create`.
    CreateToken,
}

/// `secret/delete|undelete|destroy/{path}` with `{"versions": [..]}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum VersionOp {
    Delete,
    Undelete,
    Destroy,
}

impl VersionOp {
    fn name(self) -> &'static str {
        match self {
            VersionOp::Delete => "delete",
            VersionOp::Undelete => "undelete",
            VersionOp::Destroy => "destroy",
        }
    }
}

/// Vault paths (a prefix ending in `/` covers everything below it) that raftsafe refuses by
/// name, with what to use instead.
const NOT_YET: [(&str, &str); 3] = [
    (
        "auth/token/",
        "raftsafe's token calls are create, lookup, lookup-self, lookup-accessor, renew-self, revoke-self and revoke-accessor",
    ),
    (
        "sys/policies/",
        "raftsafe supports ACL policies only (sys/policies/acl)",
    ),
    (
        "sys/storage/raft/autopilot/",
        "raftsafe's autopilot has no settings: membership changes are made with POST and DELETE /api/v1/cluster/members; 'bao operator raft autopilot state' shows every member's health",
    ),
];

fn route(full: &str) -> Option<Route<'_>> {
    match full {
        "sys/health" => return Some(Route::Health),
        "sys/mounts" => return Some(Route::Mounts),
        "sys/seal-status" => return Some(Route::SealStatus),
        "sys/leader" => return Some(Route::Leader),
        "sys/capabilities-self" => return Some(Route::Capabilities(sys::Capabilities::Caller)),
        "sys/capabilities" => return Some(Route::Capabilities(sys::Capabilities::Token)),
        "sys/capabilities-accessor" => {
            return Some(Route::Capabilities(sys::Capabilities::Accessor))
        }
        "sys/storage/raft/configuration" => return Some(Route::RaftConfiguration),
        "sys/storage/raft/autopilot/state" => return Some(Route::AutopilotState),
        "sys/storage/raft/remove-peer" => return Some(Route::RemovePeer),
        "sys/storage/raft/snapshot" => return Some(Route::RaftSnapshot { force: false }),
        "sys/storage/raft/snapshot-force" => return Some(Route::RaftSnapshot { force: true }),
        "auth/token/lookup-self" => return Some(Route::LookupSelf),
        "auth/token/lookup-accessor" => return Some(Route::LookupAccessor),
        "auth/token/revoke-accessor" => return Some(Route::RevokeAccessor),
        "auth/token/revoke-self" => return Some(Route::RevokeSelf),
        "auth/token/renew-self" => return Some(Route::RenewSelf),
        // raftsafe tokens have no parent: every token is an orphan.
        "auth/token/create" | "auth/token/create-orphan" => return Some(Route::CreateToken),
        "sys/policies/acl" => {
            return Some(Route::AclPolicy {
                name: None,
                legacy: false,
            })
        }
        "sys/policy" => {
            return Some(Route::AclPolicy {
                name: None,
                legacy: true,
            })
        }
        "sys/auth" => return Some(Route::AuthMethods),
        _ => {}
    }
    if let Some(name) = full.strip_prefix("sys/policies/acl/") {
        return Some(Route::AclPolicy {
            name: Some(name),
            legacy: false,
        });
    }
    if let Some(name) = full.strip_prefix("sys/policy/") {
        return Some(Route::AclPolicy {
            name: Some(name),
            legacy: true,
        });
    }
    if let Some(p) = full.strip_prefix("sys/internal/ui/mounts/") {
        return Some(Route::MountOf(p));
    }
    if let Some(p) = full.strip_prefix("sys/mounts/") {
        return Some(Route::EnableMount(p));
    }
    if let Some(p) = full.strip_prefix("sys/auth/") {
        return Some(Route::EnableAuth(p));
    }
    for mount in ["approle", "jwt"] {
        if let Some(rest) = full
            .strip_prefix("auth/")
            .and_then(|r| r.strip_prefix(mount))
            .and_then(|r| r.strip_prefix('/'))
        {
            return Some(Route::Login(mount, rest));
        }
    }
    if let Some(rest) = full
        .strip_prefix(transit::MOUNT)
        .and_then(|r| r.strip_prefix('/'))
    {
        return Some(Route::Transit(rest));
    }
    // Vault calls raftsafe does not answer yet, refused with what to use instead (the CLI
    // shows the message) rather than Vault's bare "unsupported path".
    for (prefix, instead) in NOT_YET {
        if full == prefix.trim_end_matches('/') || full.starts_with(prefix) {
            return Some(Route::NotYet(instead));
        }
    }
    let rest = full.strip_prefix(MOUNT)?.strip_prefix('/')?;
    if rest == "config" {
        return Some(Route::Config);
    }
    if let Some(p) = rest.strip_prefix("data/") {
        return Some(Route::Data(p));
    }
    for (prefix, op) in [
        ("delete/", VersionOp::Delete),
        ("undelete/", VersionOp::Undelete),
        ("destroy/", VersionOp::Destroy),
    ] {
        if let Some(p) = rest.strip_prefix(prefix) {
            return Some(Route::Versions(op, p));
        }
    }
    if let Some(p) = rest.strip_prefix("metadata") {
        return match p {
            "" => Some(Route::Metadata("")),
            _ => p.strip_prefix('/').map(Route::Metadata),
        };
    }
    None
}

/// The `secret/` form of a path under a registered KV mount (`team-a/data/x` is
/// `secret/data/team-a/x`), or `None` when `full` lies under none of `mounts` or names no KV
/// call.
fn on_mount(mounts: &[String], full: &str) -> Option<String> {
    let (mount, rest) = kv_mount::resolve(mounts, full)?;
    let (kind, tail) = rest.split_once('/').unwrap_or((rest, ""));
    match (kind, tail) {
        ("", _) => None,
        ("config", "") => Some(format!("{MOUNT}/config")),
        ("config", _) => None,
        (kind, "") => Some(format!("{MOUNT}/{kind}/{mount}")),
        (kind, tail) => Some(format!("{MOUNT}/{kind}/{mount}/{tail}")),
    }
}

/// What a proposed command does, and where, to scope a client's request id (see
/// [`super::input::request_id`]).
struct Call {
    state: State,
    headers: HeaderMap,
    raw: Option<String>,
}

impl Call {
    /// The caller, with the write rule: this node's table (the state machine checks again).
    async fn principal(&self) -> Result<Principal, VaultError> {
        let token = presented(&self.headers)?;
        Ok(auth::principal_write(&self.state, &token).await?)
    }

    /// The caller after the read-index round, and the view a read needs.
    async fn current(&self) -> Result<(Principal, Linearized), VaultError> {
        let token = presented(&self.headers)?;
        Ok(auth::principal_current(&self.state, &token).await?)
    }

    /// The KV mounts besides `secret/`, with their records, as `at` sees them.
    fn kv_mounts_at(&self, at: &Linearized) -> Result<Vec<(String, StoredKvMount)>, VaultError> {
        Ok(self.state.service.kv_mounts(at).map_err(ApiError::from)?)
    }

    /// The read-index round, for a read that needs no token check of its own.
    async fn linearize(&self) -> Result<Linearized, VaultError> {
        Ok(self
            .state
            .service
            .linearize()
            .await
            .map_err(ApiError::from)?)
    }

    /// The paths of the KV mounts besides `secret/`, after a read-index round of their own.
    async fn kv_mount_paths(&self) -> Result<Vec<String>, VaultError> {
        let at = self.linearize().await?;
        Ok(self
            .kv_mounts_at(&at)?
            .into_iter()
            .map(|(p, _)| p)
            .collect())
    }

    /// The `secret/` form of `full` if it lies under a KV mount ([`on_mount`]). Paths that
    /// could name no mount are answered without a read-index round, and so is a request
    /// without a token (Vault's 403, as Vault checks the token before it routes): an
    /// anonymous caller cannot make a node ask the leader anything.
    async fn on_kv_mount(&self, full: &str) -> Result<Option<String>, VaultError> {
        let first = full.split('/').next().unwrap_or("");
        if first.is_empty() || kv_mount::RESERVED.contains(&first) {
            return Ok(None);
        }
        if presented(&self.headers)?.is_empty() {
            return Err(VaultError::new(
                StatusCode::FORBIDDEN,
                "permission denied (missing client token: send X-Vault-Token)",
            ));
        }
        Ok(on_mount(&self.kv_mount_paths().await?, full))
    }

    /// The request id of a write: the client's `X-Request-Id` (with a fingerprint of `what`
    /// and `content`), or a fresh one.
    fn origin(&self, who: &Principal, what: &str, content: &[u8]) -> Result<Origin, VaultError> {
        Ok(Origin {
            id: request_id(&self.state, &self.headers, who, what, content)?,
            caller: who.caller(),
        })
    }

    /// Refuses all but Vault's write verbs (`POST`, `PUT`) and any query parameter: the
    /// preamble of every endpoint that takes its input in the body.
    fn only_write(&self, method: &Method, route: &str) -> Result<(), VaultError> {
        if method != Method::POST && method != Method::PUT {
            return Err(VaultError::unsupported(method, route));
        }
        self.query(&[])?;
        Ok(())
    }

    /// Refuses all but `GET` and any query parameter.
    fn only_get(&self, method: &Method, route: &str) -> Result<(), VaultError> {
        if method != Method::GET {
            return Err(VaultError::unsupported(method, route));
        }
        self.query(&[])?;
        Ok(())
    }

    fn query(
        &self,
        allowed: &[&str],
    ) -> Result<std::collections::BTreeMap<String, String>, VaultError> {
        Ok(query(self.raw.clone(), allowed)?)
    }

    /// Whether this is a listing: Vault's `LIST`, or `GET ?list=<true>` with Vault's boolean
    /// spellings (hvac's `Client.list` sends `list=True`).
    fn listing(&self, method: &Method) -> Result<bool, VaultError> {
        if method.as_str() == "LIST" {
            return Ok(true);
        }
        Ok(method == Method::GET
            && self
                .query(&["list"])?
                .get("list")
                .is_some_and(|v| matches!(v.as_str(), "1" | "t" | "T" | "true" | "TRUE" | "True")))
    }

    /// `sys/health`: no token, like Vault. Every raftsafe node serves linearizable reads and
    /// relays writes, so every ready node is "active" (`standby: false`, 200); a node that
    /// cannot serve (no leader, bootstrapping) answers 503, which load balancers read as down.
    async fn health(&self, method: &Method) -> Reply {
        if method != Method::GET && method != Method::HEAD {
            return Err(VaultError::unsupported(method, "sys/health"));
        }
        let ready = super::health::readiness(&self.state).await.is_ready();
        let body = json!({
            "initialized": ready,
            "sealed": false,
            "standby": false,
            "performance_standby": false,
            "replication_performance_mode": "disabled",
            "replication_dr_mode": "disabled",
            "server_time_utc": crate::time::now_ms() / 1000,
            "version": concat!("raftsafe-", env!("CARGO_PKG_VERSION")),
            "cluster_name": "raftsafe",
        });
        let status = if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        Ok((status, Json(body)).into_response())
    }

    /// `sys/mounts`: `secret/`, `transit/` and the registered KV mounts. Any valid token may
    /// read it.
    async fn mounts(&self, method: &Method) -> Reply {
        if method != Method::GET {
            return Err(VaultError::unsupported(method, "sys/mounts"));
        }
        let (_, at) = self.current().await?;
        let mut data = Map::new();
        data.insert(format!("{MOUNT}/"), kv_mount(None));
        data.insert(format!("{}/", transit::MOUNT), transit_mount());
        for (path, m) in self.kv_mounts_at(&at)? {
            data.insert(format!("{path}/"), kv_mount(Some((&path, &m))));
        }
        // Vault returns the mounts both at the top level and under `data`.
        let mut body = envelope_value(Value::Object(data.clone()));
        if let Value::Object(top) = &mut body {
            top.extend(data);
        }
        Ok(Json(body).into_response())
    }

    /// `sys/internal/ui/mounts/{path}`: the mount that serves `path` and its KV version.
    /// Vault's CLI asks this before every `kv` command to learn the mount and whether to
    /// use KV v2's `data/` and `metadata/` paths; any valid token may ask. A path outside
    /// the one mount is Vault's 403, which the CLI explains as a policy problem: the detail
    /// says what raftsafe serves.
    async fn mount_of(&self, method: &Method, path: &str) -> Reply {
        self.only_get(method, "sys/internal/ui/mounts")?;
        let (_, at) = self.current().await?;
        let first = path.split('/').next().unwrap_or("");
        if first == transit::MOUNT {
            let mut mount = transit_mount();
            mount["path"] = json!(format!("{first}/"));
            return Ok(envelope(mount));
        }
        let (mut mount, at_path) = if first == MOUNT {
            (kv_mount(None), MOUNT.to_string())
        } else {
            let mounts = self.kv_mounts_at(&at)?;
            let paths: Vec<String> = mounts.iter().map(|(p, _)| p.clone()).collect();
            let Some((m, _)) = kv_mount::resolve(&paths, path.trim_end_matches('/')) else {
                let names: Vec<String> = std::iter::once(format!("'{MOUNT}/'"))
                    .chain(paths.iter().map(|p| format!("'{p}/'")))
                    .collect();
                return Err(VaultError::new(
                    StatusCode::FORBIDDEN,
                    format!(
                        "permission denied: '{}' is under no mount; raftsafe's KV v2 mounts are {} ('bao secrets enable -path=<name> kv-v2' adds one)",
                        path.chars().take(128).collect::<String>(),
                        names.join(", ")
                    ),
                ));
            };
            let record = &mounts.iter().find(|(p, _)| p == m).expect("resolved").1;
            (kv_mount(Some((m, record))), m.to_string())
        };
        if let Value::Object(m) = &mut mount {
            m.insert("path".into(), json!(format!("{at_path}/")));
        }
        Ok(envelope(mount))
    }

    /// `secret/config`: the engine's settings (fixed in raftsafe).
    async fn config(&self, method: &Method) -> Reply {
        if method != Method::GET {
            return Err(VaultError::unsupported(method, "secret/config"));
        }
        self.current().await?;
        Ok(envelope(json!({
            "cas_required": false,
            "delete_version_after": "0s",
            "max_versions": DEFAULT_MAX_VERSIONS,
        })))
    }

    /// `secret/data/{path}`: read (GET, `?version=`), write (POST/PUT), merge-patch (PATCH),
    /// soft-delete the latest version (DELETE).
    async fn data(&self, method: &Method, rest: &str, body: Body) -> Reply {
        let path = SecretPath::parse(rest).map_err(ApiError::from)?;
        match *method {
            Method::GET => {
                let q = self.query(&["version"])?;
                let version = q
                    .get("version")
                    .map(|v| parse_u64("version", v, 0))
                    .transpose()?
                    // Vault reads `version=0` as "the latest".
                    .filter(|v| *v > 0);
                let (who, at) = self.current().await?;
                who.require_path(Scope::ReadSecret, &path)?;
                let read = self
                    .state
                    .service
                    .read_secret(&at, &path, version)
                    .map_err(ApiError::from)?
                    .ok_or_else(VaultError::not_found)?;
                let custom = self
                    .state
                    .service
                    .read_custom_metadata(&at, &path)
                    .map_err(ApiError::from)?;
                Ok(envelope(json!({
                    "data": read.data,
                    "metadata": version_metadata(&read.metadata, custom.as_ref()),
                })))
            }
            Method::POST | Method::PUT => {
                self.query(&[])?;
                let who = self.principal().await?;
                who.require_path(Scope::WriteSecret, &path)?;
                let bytes =
                    read_body(body, self.state.service.max_value_bytes() + 16 * 1024).await?;
                let origin = self.origin(&who, &format!("vault write {path}"), &bytes)?;
                let PutBody { data, cas } =
                    parse_put_body(&bytes, self.state.service.max_value_bytes())?;
                let meta = self.write(origin, &path, &data, cas).await?;
                Ok(envelope(version_metadata(&meta, None)))
            }
            Method::PATCH => {
                self.query(&[])?;
                let (who, at) = self.current().await?;
                who.require_path(Scope::ReadSecret, &path)?;
                who.require_path(Scope::WriteSecret, &path)?;
                let bytes =
                    read_body(body, self.state.service.max_value_bytes() + 16 * 1024).await?;
                // A retry with the same X-Request-Id repeats this body: it gets the first
                // answer, whatever version the patch then applied to.
                let origin = self.origin(&who, &format!("vault PATCH {path}"), &bytes)?;
                let PutBody { data: patch, cas } =
                    parse_put_body(&bytes, self.state.service.max_value_bytes())?;
                let read = self
                    .state
                    .service
                    .read_secret(&at, &path, None)
                    .map_err(ApiError::from)?;
                let (mut current, meta) = read.map(|r| (r.data, r.metadata)).ok_or_else(|| {
                    VaultError::new(
                        StatusCode::NOT_FOUND,
                        format!("no value found at \"{path}\"; patch only works on existing data"),
                    )
                })?;
                if let Some(expected) = cas {
                    if expected != meta.version {
                        return Err(cas_mismatch());
                    }
                }
                merge_patch(&mut current, patch);
                let size = serde_json::to_vec(&current).map(|v| v.len()).unwrap_or(0);
                if size > self.state.service.max_value_bytes() {
                    return Err(ApiError::TooLarge(format!(
                        "the patched data is {size} bytes, larger than the {}-byte limit",
                        self.state.service.max_value_bytes()
                    ))
                    .into());
                }
                // The write is conditional on the version the patch was applied to, so a
                // concurrent writer makes this patch fail instead of being overwritten.
                let meta = self
                    .write(origin, &path, &current, Some(meta.version))
                    .await?;
                Ok(envelope(version_metadata(&meta, None)))
            }
            Method::DELETE => {
                self.query(&[])?;
                let who = self.principal().await?;
                who.require_path(Scope::WriteSecret, &path)?;
                let origin = self.origin(&who, &format!("vault DELETE {path}"), b"")?;
                // Vault answers 204 whether or not there was anything to delete.
                match self
                    .state
                    .service
                    .delete_secret(origin, &path, None)
                    .await
                    .map_err(ApiError::from)?
                {
                    DeleteOutcome::Deleted(_) | DeleteOutcome::NotFound => {
                        Ok(StatusCode::NO_CONTENT.into_response())
                    }
                    DeleteOutcome::PreconditionFailed { .. } => Err(ApiError::Internal(
                        "a delete without a precondition failed one".into(),
                    )
                    .into()),
                }
            }
            ref m => Err(VaultError::unsupported(m, "secret/data")),
        }
    }

    /// A PATCH must be a JSON merge patch, as Vault requires (`bao kv metadata patch` says
    /// so); `application/json` is taken too. Anything else is Vault's 415.
    fn merge_patch_content_type(&self) -> Result<(), VaultError> {
        let ct = self
            .headers
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let essence = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if essence == "application/merge-patch+json" || essence == "application/json" {
            return Ok(());
        }
        Err(VaultError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "PATCH requires Content-Type of application/merge-patch+json",
        ))
    }

    /// `secret/metadata/{path}`: `LIST` (or `GET ?list=true`) the keys one level below
    /// `path`, folders ending in `/`; `GET` the path's metadata (and custom metadata);
    /// `POST`/`PUT` set the version cap and custom metadata, `PATCH` merges into them,
    /// `DELETE` removes the path.
    async fn metadata(&self, method: &Method, rest: &str, body: Body) -> Reply {
        let list = method.as_str() == "LIST"
            || (method == Method::GET
                && self.query(&["list"])?.get("list").map(String::as_str) == Some("true"));
        if list {
            if method.as_str() == "LIST" {
                self.query(&[])?;
            }
            return self.list(rest).await;
        }
        let path = SecretPath::parse(rest).map_err(ApiError::from)?;
        match *method {
            Method::GET => {
                self.query(&[])?;
                let (who, at) = self.current().await?;
                who.require_path(Scope::ReadSecret, &path)?;
                let service = &self.state.service;
                let view = service
                    .versions(&at, &path)
                    .map_err(ApiError::from)?
                    .ok_or_else(VaultError::not_found)?;
                let custom = service
                    .custom_metadata(&view, &path)
                    .map_err(ApiError::from)?;
                // A path with custom metadata and no version yet is shown, as Vault shows
                // metadata written before data (times: the custom metadata's).
                let (created, updated, current) = match (&view.meta, &view.custom) {
                    (Some(m), _) => (m.created_at_ms, m.updated_at_ms, m.current_version),
                    (None, Some(c)) => (c.created_at_ms, c.updated_at_ms, 0),
                    (None, None) => return Err(VaultError::not_found()),
                };
                let versions: Map<String, Value> = view
                    .versions
                    .iter()
                    .map(|v| {
                        (
                            v.version.to_string(),
                            json!({
                                "created_time": rfc3339(v.created_at_ms),
                                "deletion_time": v.deleted_at_ms.map(rfc3339).unwrap_or_default(),
                                "destroyed": v.destroyed,
                            }),
                        )
                    })
                    .collect();
                Ok(envelope(json!({
                    "cas_required": false,
                    "created_time": rfc3339(created),
                    "current_version": current,
                    "custom_metadata": custom_metadata_value(custom.as_ref()),
                    "delete_version_after": "0s",
                    "max_versions": view.max_versions,
                    "oldest_version": view.versions.first().map_or(0, |v| v.version),
                    "updated_time": rfc3339(updated),
                    "versions": versions,
                })))
            }
            Method::POST | Method::PUT | Method::PATCH => {
                self.query(&[])?;
                let patch = method == Method::PATCH;
                if patch {
                    self.merge_patch_content_type()?;
                }
                let who = self.principal().await?;
                who.require_path(Scope::WriteSecret, &path)?;
                let bytes = read_body(body, 64 * 1024).await?;
                let what = if patch {
                    "vault metadata-patch"
                } else {
                    "vault metadata"
                };
                let origin = self.origin(&who, &format!("{what} {path}"), &bytes)?;
                let body = metadata_body(&bytes, patch)?;
                let custom = match body.custom {
                    Some(p) if patch => Some(CustomChange::Patch(p)),
                    Some(p) => Some(CustomChange::Replace(custom::replacement(p))),
                    None => None,
                };
                let change = MetadataChange {
                    max_versions: body.max_versions,
                    custom,
                };
                if change.max_versions.is_none() && change.custom.is_none() {
                    return Ok(StatusCode::NO_CONTENT.into_response());
                }
                let service = &self.state.service;
                if let Some((mount, _)) = service
                    .mount_covering(&service.local(), &path)
                    .map_err(ApiError::from)?
                {
                    return Err(under_mount(&path, &mount));
                }
                match service
                    .write_metadata(origin, &path, change)
                    .await
                    .map_err(ApiError::from)?
                {
                    MetadataOutcome::Set { .. } => Ok(StatusCode::NO_CONTENT.into_response()),
                    // Vault: a patch needs metadata to patch.
                    MetadataOutcome::NotFound => Err(VaultError::not_found()),
                    MetadataOutcome::Invalid(why) => {
                        Err(VaultError::new(StatusCode::BAD_REQUEST, why))
                    }
                    MetadataOutcome::Conflict { attempts } => Err(VaultError::new(
                        StatusCode::CONFLICT,
                        format!(
                            "the custom metadata of \"{path}\" changed under this patch {attempts} times in a row; nothing was written, retry"
                        ),
                    )),
                    MetadataOutcome::UnderMount { mount } => Err(under_mount(&path, &mount)),
                }
            }
            Method::DELETE => {
                self.query(&[])?;
                let who = self.principal().await?;
                who.require_path(Scope::WriteSecret, &path)?;
                let origin = self.origin(&who, &format!("vault delete-metadata {path}"), b"")?;
                // Vault answers 204 whether or not the path existed.
                self.state
                    .service
                    .delete_metadata(origin, &path)
                    .await
                    .map_err(ApiError::from)?;
                Ok(StatusCode::NO_CONTENT.into_response())
            }
            ref m => Err(VaultError::unsupported(m, "secret/metadata")),
        }
    }

    /// `POST secret/undelete|destroy/{path}` `{"versions": [..]}`: as Vault (204). `delete`
    /// soft-deletes versions; raftsafe soft-deletes the latest version only, so `delete`
    /// accepts exactly that one (checked in apply: if a newer version lands first, 400).
    async fn versions(&self, method: &Method, op: VersionOp, rest: &str, body: Body) -> Reply {
        if method != Method::POST && method != Method::PUT {
            return Err(VaultError::unsupported(
                method,
                "secret/delete|undelete|destroy",
            ));
        }
        let path = SecretPath::parse(rest).map_err(ApiError::from)?;
        self.query(&[])?;
        let who = self.principal().await?;
        who.require_path(Scope::WriteSecret, &path)?;
        let bytes = read_body(body, 64 * 1024).await?;
        let origin = self.origin(&who, &format!("vault {} {path}", op.name()), &bytes)?;
        let versions = versions_body(&bytes)?;
        let service = &self.state.service;
        let changed = match op {
            VersionOp::Undelete | VersionOp::Destroy => {
                let change = if op == VersionOp::Undelete {
                    VersionChange::Undelete
                } else {
                    VersionChange::Destroy
                };
                service
                    .change_versions(origin, change, &path, versions)
                    .await
                    .map_err(ApiError::from)?
                    .is_some()
            }
            VersionOp::Delete => {
                let [version] = versions[..] else {
                    return Err(delete_only_latest());
                };
                let pre = Some(Precondition::Version(version));
                match service
                    .delete_secret(origin, &path, pre)
                    .await
                    .map_err(ApiError::from)?
                {
                    DeleteOutcome::Deleted(_) => true,
                    DeleteOutcome::NotFound => false,
                    DeleteOutcome::PreconditionFailed { .. } => return Err(delete_only_latest()),
                }
            }
        };
        if changed {
            Ok(StatusCode::NO_CONTENT.into_response())
        } else {
            Err(VaultError::not_found())
        }
    }

    async fn list(&self, rest: &str) -> Reply {
        let prefix = rest.trim_end_matches('/');
        let decoded = percent_encoding::percent_decode_str(prefix)
            .decode_utf8()
            .map_err(|_| ApiError::bad_request("the path is not valid UTF-8"))?
            .into_owned();
        if !decoded.is_empty() {
            SecretPath::parse_decoded(&decoded).map_err(ApiError::from)?;
        }
        let (who, at) = self.current().await?;
        who.require(Scope::ReadSecret)?;
        let visible = move |path: &SecretPath| who.authority.allows(Scope::ReadSecret, path);
        let Listing { page, total } = self
            .state
            .service
            .list(&at, &decoded, 0, MAX_LIST_WALK, visible)
            .await
            .map_err(ApiError::from)?;
        if total > MAX_LIST_WALK {
            return Err(ApiError::bad_request(format!(
                "more than {MAX_LIST_WALK} secrets under '{decoded}'; list a narrower prefix \
                 (or page with GET /api/v1/secrets?prefix=)"
            ))
            .into());
        }
        let keys = children(&decoded, page.iter().map(|l| l.path.as_str()));
        if keys.is_empty() {
            return Err(VaultError::not_found());
        }
        Ok(envelope(json!({"keys": keys})))
    }

    /// Writes `data` as the next version of `path` (`cas`: only if it is the current one).
    async fn write(
        &self,
        origin: Origin,
        path: &SecretPath,
        data: &Value,
        cas: Option<u64>,
    ) -> Result<Metadata, VaultError> {
        let condition = cas.map(Condition::Cas);
        match self
            .state
            .service
            .put_secret(origin, path, data, condition)
            .await
            .map_err(ApiError::from)?
        {
            PutOutcome::Written(meta) => Ok(meta),
            PutOutcome::CasMismatch { .. } => Err(cas_mismatch()),
            // Under an ondemand mount a PUT encrypts (on /api/v1); KV v2 stores nothing there.
            PutOutcome::UnderMount { mount } => Err(VaultError::new(
                StatusCode::BAD_REQUEST,
                format!("'{path}' is under the ondemand mount '{mount}', which stores nothing; encrypt with PUT /api/v1/secrets/{path}"),
            )),
            PutOutcome::PreconditionFailed { .. } => Err(ApiError::Internal(
                "a write without a precondition failed one".into(),
            )
            .into()),
        }
    }
}

fn under_mount(path: &SecretPath, mount: &str) -> VaultError {
    ApiError::bad_request(format!(
        "'{path}' is under the ondemand mount '{mount}', which keeps no versions"
    ))
    .into()
}

fn cas_mismatch() -> VaultError {
    VaultError::new(
        StatusCode::BAD_REQUEST,
        "check-and-set parameter did not match the current version",
    )
}

fn delete_only_latest() -> VaultError {
    VaultError::new(
        StatusCode::BAD_REQUEST,
        "raftsafe soft-deletes only the latest version: name exactly the current version \
         (or DELETE /v1/secret/data/{path})",
    )
}

/// `{"versions": [1, 2]}`: 1 to 1000 version numbers >= 1.
fn versions_body(bytes: &[u8]) -> Result<Vec<u64>, VaultError> {
    let mut body = json_object(bytes, &["versions"], "a JSON object")?;
    let bad = || {
        ApiError::bad_request(
            "'versions' must be a non-empty array of at most 1000 integers >= 1 (numbers or numeric strings)",
        )
    };
    match body.remove("versions") {
        // Vault's CLI sends the versions as strings (`["1"]`), hvac as numbers.
        Some(Value::Array(a)) if !a.is_empty() && a.len() <= 1000 => Ok(a
            .iter()
            .map(|v| match v {
                Value::String(s) => s.parse::<u64>().ok(),
                v => v.as_u64(),
            })
            .map(|n| n.filter(|n| *n >= 1).ok_or_else(bad))
            .collect::<Result<_, _>>()?),
        _ => Err(bad().into()),
    }
}

/// What a metadata write asks for.
struct MetadataBody {
    max_versions: Option<u64>,
    /// A replacement (no `None` in it) or, for a PATCH, a patch.
    custom: Option<CustomMetadataPatch>,
}

/// `POST/PUT/PATCH secret/metadata/{path}`: `max_versions` (0 = the default, as in Vault),
/// `custom_metadata` (an object of strings; in a PATCH, `null` removes a key),
/// `cas_required: false` and `delete_version_after: "0s"`; the settings raftsafe does not
/// have are refused by name.
fn metadata_body(bytes: &[u8], patch: bool) -> Result<MetadataBody, VaultError> {
    let body = json_object(
        bytes,
        &[
            "max_versions",
            "cas_required",
            "delete_version_after",
            "custom_metadata",
        ],
        "a JSON object",
    )?;
    let mut out = MetadataBody {
        max_versions: None,
        custom: None,
    };
    for (k, v) in body {
        match (k.as_str(), v) {
            ("max_versions", v) => {
                let n = v
                    .as_u64()
                    .filter(|n| *n <= MAX_MAX_VERSIONS)
                    .ok_or_else(|| ApiError::bad_request(format!("'max_versions' must be an integer from 0 to {MAX_MAX_VERSIONS}")))?;
                out.max_versions = Some(if n == 0 { DEFAULT_MAX_VERSIONS } else { n });
            }
            ("custom_metadata", v) => {
                let parsed = custom::from_json("custom_metadata", &v, patch)
                    .map_err(|why| VaultError::new(StatusCode::BAD_REQUEST, why))?;
                if !patch {
                    // A replacement is checked whole here; a patch once merged.
                    custom::validate(&custom::replacement(parsed.clone()))
                        .map_err(|why| VaultError::new(StatusCode::BAD_REQUEST, why))?;
                }
                out.custom = Some(parsed);
            }
            ("cas_required", Value::Bool(false)) => {}
            // hvac always sends it; "0s" (never delete by age) is what raftsafe does.
            ("delete_version_after", Value::String(d)) if d == "0s" || d == "0" => {}
            (other, _) => {
                return Err(ApiError::bad_request(format!(
                    "'{other}' is not supported by raftsafe (supported: max_versions, custom_metadata, cas_required: false)"
                ))
                .into())
            }
        }
    }
    Ok(out)
}

/// RFC 7396 JSON merge patch of `patch` into `target`: `null` removes a key, objects merge
/// recursively, anything else replaces.
fn merge_patch(target: &mut Value, patch: Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            let t = target.as_object_mut().expect("made an object above");
            for (k, v) in p {
                if v.is_null() {
                    t.remove(&k);
                } else {
                    merge_patch(t.entry(k).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other,
    }
}

/// The names one level below `prefix` among `paths` (all under it), sorted; a name with
/// more below it ends in `/`, as Vault lists folders.
fn children<'a>(prefix: &str, paths: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut out = BTreeSet::new();
    for p in paths {
        let rest = if prefix.is_empty() {
            p
        } else {
            match p.strip_prefix(prefix).and_then(|r| r.strip_prefix('/')) {
                Some(r) => r,
                None => continue,
            }
        };
        match rest.split_once('/') {
            Some((dir, _)) => out.insert(format!("{dir}/")),
            None => out.insert(rest.to_string()),
        };
    }
    out.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert!(matches!(route("sys/health"), Some(Route::Health)));
        assert!(matches!(
            route("auth/token/lookup-self"),
            Some(Route::LookupSelf)
        ));
        assert!(matches!(route("secret/data/a/b"), Some(Route::Data("a/b"))));
        assert!(matches!(
            route("secret/metadata"),
            Some(Route::Metadata(""))
        ));
        assert!(matches!(
            route("secret/metadata/"),
            Some(Route::Metadata(""))
        ));
        assert!(matches!(
            route("secret/metadata/a"),
            Some(Route::Metadata("a"))
        ));
        assert!(route("kv/data/a").is_none());
        assert!(route("secretx/data/a").is_none());
        assert!(route("secret/metadataa").is_none());
        assert!(matches!(
            route("secret/undelete/a/b"),
            Some(Route::Versions(VersionOp::Undelete, "a/b"))
        ));
        assert!(matches!(
            route("secret/destroy/a"),
            Some(Route::Versions(VersionOp::Destroy, "a"))
        ));
        assert!(matches!(
            route("transit/encrypt/k"),
            Some(Route::Transit("encrypt/k"))
        ));
        assert!(matches!(
            route("transit/keys"),
            Some(Route::Transit("keys"))
        ));
        assert!(route("transit").is_none());
        assert!(route("transitx/keys").is_none());
        assert!(matches!(
            route("sys/mounts/transit"),
            Some(Route::EnableMount("transit"))
        ));
    }

    #[test]
    fn lists_one_level() {
        let paths = ["app/db", "app/web/key", "app/web/cert", "apple", "other/x"];
        assert_eq!(
            children("app", paths.iter().copied()),
            vec!["db".to_string(), "web/".to_string()]
        );
        assert_eq!(
            children("", paths.iter().copied()),
            vec!["app/", "apple", "other/"]
        );
    }

    #[test]
    fn merge_patch_follows_rfc_7396() {
        let mut t = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut t, json!({"a": "z", "c": {"f": null}, "n": 1}));
        assert_eq!(t, json!({"a": "z", "c": {"d": "e"}, "n": 1}));
    }
}
