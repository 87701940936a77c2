//! Vault's ACL policies (`bao policy write|read|list|delete`, `sys/policies/acl/*` and the
//! older `sys/policy/*`), compiled onto raftsafe's one authorization model: scopes on path
//! patterns (`secret::token`).
//!
//! Invariants:
//! - A policy is accepted only if it means exactly what raftsafe will enforce: the grants
//!   it compiles to allow nothing its text does not. raftsafe's scopes are coarser than
//!   Vault's capabilities (`read:secret` on a path reads its data *and* its metadata and lists
//!   it), so a policy granting part of what a scope allows is refused, naming the
//!   capabilities it would also have to grant. `secret/+/app/*` (every KV v2 kind) is the
//!   short way to write a whole scope.
//! - What raftsafe cannot express is refused, naming the block: `deny`, `sudo`,
//!   parameter constraints, globs inside a segment (`app*`, only a whole trailing `/*` or the
//!   kind's `+`), and paths outside the `secret/` KV mount and Transit's encrypt, decrypt and
//!   rewrap. Administration (`sys/`, `auth/`, Transit keys) stays with raftsafe's `admin`
//!   tokens, made with `POST /api/v1/tokens`.
//! - A token takes its policies' grants when it is created (`secret::acl`): a later write or
//!   delete of a policy changes tokens created after it, never existing ones.
//! - Policy writes and deletes need `admin` on every path; reads and lists need `admin`.

use std::collections::{BTreeMap, BTreeSet};

use axum::body::Body;
use axum::http::{Method, StatusCode};
use axum::response::IntoResponse;
use serde_json::{json, Value};

use super::fields::{bad, object, seconds, string, strings};
use super::{envelope, envelope_value, transit, Call, Reply, VaultError, MOUNT};
use crate::api::error::ApiError;
use crate::api::input::read_body;
use crate::secret::acl::{self, MAX_RULES_BYTES};
use crate::secret::kv_mount;
use crate::secret::token::{Authority, PathPattern, Policy, Scope, Token, TokenRecord};
use crate::service::AclChange;

/// The kinds of path under a KV v2 mount, as Vault's policies name them.
const KV_KINDS: [&str; 5] = ["data", "metadata", "delete", "undelete", "destroy"];

/// Where a Vault policy path points, in raftsafe's terms.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    /// `secret/<kind>/<pattern>`.
    Kv { kind: &'static str, pattern: String },
    /// `transit/<op>/<key>` (encrypt, decrypt, rewrap).
    Transit { op: &'static str, key: String },
}

/// One capability a policy grants on one target.
type Grant = (Target, &'static str);

/// A policy as parsed: each path block's Vault path and capabilities.
#[derive(Debug, PartialEq, Eq)]
struct Block {
    path: String,
    capabilities: Vec<String>,
}

/// The policy text's blocks: HCL (`path "…" { capabilities = […] }`) or its JSON form
/// (`{"path": {"…": {"capabilities": […]}}}`).
fn parse(rules: &str) -> Result<Vec<Block>, String> {
    if rules.trim_start().starts_with('{') {
        return parse_json(rules);
    }
    let body = hcl::parse(rules).map_err(|e| format!("the policy is not valid HCL: {e}"))?;
    if let Some(attr) = body.attributes().next() {
        return Err(format!(
            "unexpected '{}' at the top level: a policy holds only path blocks",
            attr.key()
        ));
    }
    let mut blocks = Vec::new();
    for block in body.blocks() {
        if block.identifier() != "path" {
            return Err(format!(
                "unexpected block '{}': a policy holds only path blocks",
                block.identifier()
            ));
        }
        let [label] = block.labels() else {
            return Err(
                "a path block names exactly one path: path \"secret/data/app/*\" { … }".into(),
            );
        };
        let path = label.as_str().to_string();
        if let Some(inner) = block.body().blocks().next() {
            return Err(format!(
                "path \"{path}\": unexpected block '{}' (raftsafe supports only 'capabilities')",
                inner.identifier()
            ));
        }
        let mut capabilities = None;
        for attr in block.body().attributes() {
            if attr.key() != "capabilities" {
                return Err(unsupported_attribute(&path, attr.key()));
            }
            let hcl::Expression::Array(items) = attr.expr() else {
                return Err(format!(
                    "path \"{path}\": capabilities must be a list of strings"
                ));
            };
            let mut caps = Vec::new();
            for item in items {
                let hcl::Expression::String(s) = item else {
                    return Err(format!(
                        "path \"{path}\": capabilities must be a list of strings"
                    ));
                };
                caps.push(s.clone());
            }
            capabilities = Some(caps);
        }
        blocks.push(Block {
            path,
            capabilities: capabilities.unwrap_or_default(),
        });
    }
    Ok(blocks)
}

fn parse_json(rules: &str) -> Result<Vec<Block>, String> {
    let value: Value =
        serde_json::from_str(rules).map_err(|e| format!("the policy is not valid JSON: {e}"))?;
    let Value::Object(top) = value else {
        return Err("a JSON policy is an object {\"path\": {…}}".into());
    };
    let mut blocks = Vec::new();
    for (key, paths) in top {
        if key != "path" {
            return Err(format!(
                "unexpected '{key}' at the top level: a policy holds only path blocks"
            ));
        }
        let Value::Object(paths) = paths else {
            return Err("'path' must map each path to {\"capabilities\": […]}".into());
        };
        for (path, body) in paths {
            let Value::Object(body) = body else {
                return Err(format!(
                    "path \"{path}\": expected {{\"capabilities\": […]}}"
                ));
            };
            let mut capabilities = Vec::new();
            for (k, v) in body {
                if k != "capabilities" {
                    return Err(unsupported_attribute(&path, &k));
                }
                let list = v.as_array().ok_or_else(|| {
                    format!("path \"{path}\": capabilities must be a list of strings")
                })?;
                for item in list {
                    let s = item.as_str().ok_or_else(|| {
                        format!("path \"{path}\": capabilities must be a list of strings")
                    })?;
                    capabilities.push(s.to_string());
                }
            }
            blocks.push(Block { path, capabilities });
        }
    }
    Ok(blocks)
}

fn unsupported_attribute(path: &str, key: &str) -> String {
    format!(
        "path \"{path}\": '{key}' is not supported (raftsafe grants whole capabilities on paths; \
         parameter constraints and wrapping TTLs cannot be enforced)"
    )
}

/// The raftsafe path pattern a Vault glob stands for: `*`, `a/b/*` or an exact `a/b`.
fn pattern(glob: &str, vault_path: &str) -> Result<String, String> {
    let refuse = |why: &str| Err(format!("path \"{vault_path}\": {why}"));
    if glob.is_empty() || glob == "*" {
        return Ok("*".into());
    }
    let base = glob.strip_suffix("/*").unwrap_or(glob);
    if base.contains('*') {
        return refuse(
            "raftsafe matches whole path segments: a glob may only end in '/*' \
             (everything under a folder), as in 'secret/data/app/*'",
        );
    }
    if base.contains('+') {
        return refuse("'+' is supported only for the KV kind, as in 'secret/+/app/*'");
    }
    if base.ends_with('/') {
        return refuse("end the path with '/*' for everything under a folder, or name one secret");
    }
    PathPattern::parse(glob)
        .map(|p| p.as_str().to_string())
        .map_err(|e| format!("path \"{vault_path}\": {e}"))
}

/// Every (target, capability) a block grants, with Vault's capability names checked.
fn expand(block: &Block) -> Result<Vec<Grant>, String> {
    let path = block.path.as_str();
    let mut caps: Vec<&'static str> = Vec::new();
    for c in &block.capabilities {
        let known = match c.as_str() {
            "create" => "create",
            "read" => "read",
            "update" => "update",
            "patch" => "patch",
            "delete" => "delete",
            "list" => "list",
            "deny" => {
                return Err(format!(
                    "path \"{path}\": 'deny' is not supported: raftsafe's policies only grant, so leave the path out instead"
                ))
            }
            "sudo" => {
                return Err(format!(
                    "path \"{path}\": 'sudo' is not supported: administrative tokens are made with POST /api/v1/tokens (scope admin)"
                ))
            }
            other => {
                return Err(format!(
                    "path \"{path}\": unknown capability '{other}' (create, read, update, patch, delete, list)"
                ))
            }
        };
        caps.push(known);
    }
    let outside = || {
        format!(
            "path \"{path}\": raftsafe's ACL policies grant on the KV v2 mounts ('{MOUNT}/' and \
             those of 'bao secrets enable … kv-v2') and on \
             '{t}/encrypt|decrypt|rewrap/<key>'; administration (sys/, auth/, {t}/keys/) needs an \
             admin token from POST /api/v1/tokens",
            t = transit::MOUNT
        )
    };
    if path == "*" || path == format!("{MOUNT}/*") {
        return Ok(KV_KINDS
            .iter()
            .flat_map(|kind| {
                caps.iter().map(move |c| {
                    (
                        Target::Kv {
                            kind,
                            pattern: "*".into(),
                        },
                        *c,
                    )
                })
            })
            .collect());
    }
    if let Some(rest) = path.strip_prefix(MOUNT).and_then(|r| r.strip_prefix('/')) {
        let (kind, glob) = rest.split_once('/').unwrap_or((rest, ""));
        let kinds: Vec<&'static str> = match kind {
            "+" => KV_KINDS.to_vec(),
            k => vec![*KV_KINDS.iter().find(|x| **x == k).ok_or_else(outside)?],
        };
        let pattern = pattern(glob, path)?;
        return Ok(kinds
            .into_iter()
            .flat_map(|kind| {
                let pattern = pattern.clone();
                caps.iter().map(move |c| {
                    (
                        Target::Kv {
                            kind,
                            pattern: pattern.clone(),
                        },
                        *c,
                    )
                })
            })
            .collect());
    }
    if let Some(rest) = path
        .strip_prefix(transit::MOUNT)
        .and_then(|r| r.strip_prefix('/'))
    {
        let (op, key) = rest.split_once('/').ok_or_else(outside)?;
        let op: &'static str = match op {
            "encrypt" => "encrypt",
            "decrypt" => "decrypt",
            "rewrap" => "rewrap",
            _ => return Err(outside()),
        };
        if key.is_empty() || key.contains(['/', '*', '+']) {
            return Err(format!(
                "path \"{path}\": name one Transit key ({}/{op}/<key>); globs over keys are not supported",
                transit::MOUNT
            ));
        }
        return Ok(caps
            .iter()
            .map(|c| {
                (
                    Target::Transit {
                        op,
                        key: key.to_string(),
                    },
                    *c,
                )
            })
            .collect());
    }
    Err(outside())
}

/// The raftsafe scope a capability on a target asks for (`None`: it grants nothing
/// raftsafe enforces there, such as `list` on `data/`).
fn scope_for(target: &Target, cap: &str) -> Option<Scope> {
    match target {
        Target::Kv { kind, .. } => match (*kind, cap) {
            ("data", "read") | ("metadata", "read" | "list") => Some(Scope::ReadSecret),
            ("data", "create" | "update" | "delete" | "patch")
            | ("metadata", "create" | "update" | "delete" | "patch")
            | ("delete" | "undelete" | "destroy", "create" | "update") => Some(Scope::WriteSecret),
            _ => None,
        },
        Target::Transit { op, .. } => match (*op, cap) {
            ("encrypt", "create" | "update") => Some(Scope::WriteSecret),
            ("decrypt" | "rewrap", "create" | "update") => Some(Scope::ReadSecret),
            _ => None,
        },
    }
}

/// Everything raftsafe's `scope` on the pattern or key of `like` allows, as Vault grants.
fn implied(scope: Scope, like: &Target) -> Vec<Grant> {
    const KV_READ: &[(&str, &str)] =
        &[("data", "read"), ("metadata", "read"), ("metadata", "list")];
    const KV_WRITE: &[(&str, &str)] = &[
        ("data", "create"),
        ("data", "update"),
        ("data", "delete"),
        ("metadata", "update"),
        ("metadata", "delete"),
        ("delete", "update"),
        ("undelete", "update"),
        ("destroy", "update"),
    ];
    const TRANSIT_READ: &[(&str, &str)] = &[("decrypt", "update"), ("rewrap", "update")];
    const TRANSIT_WRITE: &[(&str, &str)] = &[("encrypt", "update")];
    let read = scope == Scope::ReadSecret;
    match like {
        Target::Kv { pattern, .. } => (if read { KV_READ } else { KV_WRITE })
            .iter()
            .map(|&(kind, cap)| {
                let target = Target::Kv {
                    kind,
                    pattern: pattern.clone(),
                };
                (target, cap)
            })
            .collect(),
        Target::Transit { key, .. } => (if read { TRANSIT_READ } else { TRANSIT_WRITE })
            .iter()
            .map(|&(op, cap)| {
                let target = Target::Transit {
                    op,
                    key: key.clone(),
                };
                (target, cap)
            })
            .collect(),
    }
}

/// The Vault path of a grant, for messages.
fn vault_path(target: &Target) -> String {
    match target {
        Target::Kv { kind, pattern } => format!("{MOUNT}/{kind}/{pattern}"),
        Target::Transit { op, key } => format!("{}/{op}/{key}", transit::MOUNT),
    }
}

/// The raftsafe path pattern a target is enforced on.
fn raftsafe_pattern(target: &Target) -> String {
    match target {
        Target::Kv { pattern, .. } => pattern.clone(),
        Target::Transit { key, .. } => format!("{}/{key}", transit::MOUNT),
    }
}

/// Whether raftsafe pattern `outer` matches every path `inner` does.
fn covers(outer: &str, inner: &str) -> bool {
    match (PathPattern::parse(outer), PathPattern::parse(inner)) {
        (Ok(o), Ok(i)) => o.covers(&i),
        _ => false,
    }
}

/// The `secret/` form of a policy path under the KV mount `m` (one of `mounts`): `m/data/x`
/// is `secret/data/m/x`, `m/+/*` and `m/*` are `secret/+/m/*`, and a kind's folder
/// (`m/metadata/`) is everything of that kind under `m/`.
fn on_mount(mounts: &[String], path: &str) -> Option<String> {
    let (m, rest) = kv_mount::resolve(mounts, path)?;
    if rest.is_empty() || rest == "*" {
        return Some(format!("{MOUNT}/+/{m}/*"));
    }
    let (kind, glob) = rest.split_once('/').unwrap_or((rest, ""));
    Some(match glob {
        "" | "*" => format!("{MOUNT}/{kind}/{m}/*"),
        glob => format!("{MOUNT}/{kind}/{m}/{glob}"),
    })
}

/// Whether a `secret/` grant on raftsafe pattern `pattern` reaches into a KV mount's folder
/// (which Vault would keep apart): the mount's path, if it does.
fn reaches_into<'a>(mounts: &'a [String], pattern: &str) -> Option<&'a str> {
    mounts.iter().map(String::as_str).find(|m| {
        let folder = format!("{m}/*");
        covers(pattern, &folder) || covers(&folder, pattern) || pattern == *m
    })
}

/// Compiles a policy's text into raftsafe grants (one [`Policy`] per scope), or says why it
/// cannot be enforced exactly. `mounts`: the KV mounts besides `secret/` (see
/// `secret::kv_mount`): a path under one is that folder of `secret/`, and a `secret/` path
/// that would reach into one is refused, since in Vault mounts are apart (the bare `*`
/// grants every mount in Vault too, and here).
pub fn compile(rules: &str, mounts: &[String]) -> Result<Vec<Policy>, String> {
    let mut granted: BTreeSet<Grant> = BTreeSet::new();
    for mut block in parse(rules)? {
        let written = block.path.clone();
        let on_secret = match on_mount(mounts, &written) {
            Some(path) => {
                block.path = path;
                false
            }
            None => written != "*",
        };
        let grants = expand(&block)?;
        for (target, _) in grants.iter().filter(|_| on_secret) {
            let Target::Kv { pattern, .. } = target else {
                continue;
            };
            if let Some(m) = reaches_into(mounts, pattern) {
                return Err(format!(
                    "path \"{written}\" reaches into the KV mount '{m}/': in raftsafe that mount \
                     is the folder {m}/ of {MOUNT}/, so this would grant it too, where Vault keeps \
                     mounts apart; name folders of {MOUNT}/ outside the mounts, and grant the \
                     mount with paths \"{m}/…\""
                ));
            }
        }
        granted.extend(grants);
    }
    // Grant what the text asks for (`patch` is read plus update to raftsafe, so it needs
    // both and grants nothing more)...
    let mut wanted: BTreeMap<Scope, BTreeSet<(String, Target)>> = BTreeMap::new();
    for (target, cap) in &granted {
        if let Some(scope) = scope_for(target, cap) {
            let key = match target {
                Target::Kv { kind: _, pattern } => Target::Kv {
                    kind: "data",
                    pattern: pattern.clone(),
                },
                Target::Transit { key, .. } => Target::Transit {
                    op: "encrypt",
                    key: key.clone(),
                },
            };
            wanted
                .entry(scope)
                .or_default()
                .insert((raftsafe_pattern(target), key));
        }
    }
    // ...and only if the text also grants everything else that grant allows (on the same
    // pattern or a wider one).
    let has = |t: &Target, cap: &'static str| {
        granted.contains(&(t.clone(), cap))
            || granted.iter().any(|(g, c)| {
                *c == cap
                    && match (g, t) {
                        (
                            Target::Kv { kind, pattern },
                            Target::Kv {
                                kind: want,
                                pattern: inner,
                            },
                        ) => kind == want && covers(pattern, inner),
                        _ => false,
                    }
            })
    };
    let mut grants = Vec::new();
    for (scope, targets) in &wanted {
        let mut paths = Vec::new();
        for (pattern, like) in targets {
            let missing: Vec<String> = implied(*scope, like)
                .iter()
                .filter(|(t, cap)| !has(t, cap))
                .map(|(t, cap)| format!("'{cap}' on \"{}\"", vault_path(t)))
                .collect();
            if !missing.is_empty() {
                let hint = match like {
                    Target::Kv { pattern, .. } => {
                        format!(" (path \"{MOUNT}/+/{pattern}\" grants every KV kind at once)")
                    }
                    Target::Transit { .. } => String::new(),
                };
                return Err(format!(
                    "raftsafe enforces this policy as '{}' on '{pattern}', which also allows {}: \
                     grant those too{hint}, or use a token of POST /api/v1/tokens",
                    scope.as_str(),
                    missing.join(", ")
                ));
            }
            paths.push(PathPattern::parse(pattern).map_err(|e| e.to_string())?);
        }
        grants.push(Policy {
            scopes: vec![*scope],
            paths,
        });
    }
    Ok(grants)
}

impl Call {
    /// `sys/policies/acl[/name]` and the older `sys/policy[/name]` (hvac's): list, read,
    /// write, delete. `legacy` picks the older answer shapes.
    pub(super) async fn acl_policy(
        &self,
        method: &Method,
        name: Option<&str>,
        legacy: bool,
        body: Body,
    ) -> Reply {
        let name = name
            .map(|n| n.trim_end_matches('/'))
            .filter(|n| !n.is_empty());
        match (name, method.as_str()) {
            (None, "GET" | "LIST") => self.list_acl_policies(method, legacy).await,
            (Some(name), "GET") => self.read_acl_policy(name, legacy).await,
            (Some(name), "PUT" | "POST") => self.write_acl_policy(name, body).await,
            (Some(name), "DELETE") => self.delete_acl_policy(name).await,
            _ => Err(VaultError::unsupported(method, "sys/policies/acl")),
        }
    }

    async fn list_acl_policies(&self, method: &Method, legacy: bool) -> Reply {
        if !legacy && !self.listing(method)? {
            return Err(VaultError::unsupported(method, "sys/policies/acl"));
        }
        let (who, at) = self.current().await?;
        who.require(Scope::Admin)?;
        let names: Vec<String> = self
            .state
            .service
            .acl_policies(&at)
            .map_err(ApiError::from)?
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        if legacy {
            let mut body = envelope_value(json!({"keys": names, "policies": names}));
            body["keys"] = json!(names);
            body["policies"] = json!(names);
            return Ok(axum::Json(body).into_response());
        }
        Ok(envelope(json!({ "keys": names })))
    }

    async fn read_acl_policy(&self, name: &str, legacy: bool) -> Reply {
        self.query(&[])?;
        let (who, at) = self.current().await?;
        who.require(Scope::Admin)?;
        let stored = self
            .state
            .service
            .acl_policy(&at, name)
            .map_err(ApiError::from)?
            .ok_or_else(|| {
                VaultError::new(StatusCode::NOT_FOUND, format!("no policy named '{name}'"))
            })?;
        let field = if legacy { "rules" } else { "policy" };
        let mut body = envelope_value(json!({"name": name, field: stored.rules}));
        body["name"] = json!(name);
        body[field] = json!(stored.rules);
        Ok(axum::Json(body).into_response())
    }

    async fn write_acl_policy(&self, name: &str, body: Body) -> Reply {
        self.query(&[])?;
        let who = self.principal().await?;
        who.require_unrestricted(Scope::Admin)?;
        acl::check_name(name).map_err(bad)?;
        let bytes = read_body(body, MAX_RULES_BYTES + 4096).await?;
        let fields = object(&bytes, &["policy", "rules"])?;
        let rules = string(&fields, "policy")?
            .or(string(&fields, "rules")?)
            .ok_or_else(|| bad("missing 'policy': the policy's text (HCL or JSON)"))?;
        if rules.len() > MAX_RULES_BYTES {
            return Err(bad(format!("a policy is at most {MAX_RULES_BYTES} bytes")));
        }
        let mounts = self.kv_mount_paths().await?;
        let grants = compile(rules, &mounts).map_err(bad)?;
        let origin = self.origin(&who, &format!("acl-policy:{name}"), &bytes)?;
        match self
            .state
            .service
            .put_acl_policy(origin, name, rules, grants)
            .await
            .map_err(ApiError::from)?
        {
            AclChange::Written { .. } => Ok(StatusCode::NO_CONTENT.into_response()),
            AclChange::Refused(why) => Err(bad(why)),
            other => Err(ApiError::Internal(format!("writing a policy answered {other:?}")).into()),
        }
    }

    async fn delete_acl_policy(&self, name: &str) -> Reply {
        self.query(&[])?;
        let who = self.principal().await?;
        who.require_unrestricted(Scope::Admin)?;
        acl::check_name(name).map_err(bad)?;
        let origin = self.origin(&who, &format!("acl-policy-delete:{name}"), b"")?;
        match self
            .state
            .service
            .delete_acl_policy(origin, name)
            .await
            .map_err(ApiError::from)?
        {
            // Vault answers 204 whether or not the policy existed.
            AclChange::Deleted | AclChange::NotFound => Ok(StatusCode::NO_CONTENT.into_response()),
            AclChange::Refused(why) => Err(bad(why)),
            other => {
                Err(ApiError::Internal(format!("deleting a policy answered {other:?}")).into())
            }
        }
    }

    /// `auth/token/create` (`bao token create -policy=… -ttl=… -display-name=…`): a token
    /// whose authority is its named policies' grants as they are now, for a caller with
    /// `admin` whose own authority covers them (no escalation). With no policy the new
    /// token copies the caller's authority, as Vault's child tokens inherit their parent's
    /// policies.
    pub(super) async fn create_token(&self, method: &Method, body: Body) -> Reply {
        self.only_write(method, "auth/token/create")?;
        let (who, at) = self.current().await?;
        who.require(Scope::Admin)?;
        let bytes = read_body(body, 64 * 1024).await?;
        let fields = object(
            &bytes,
            &[
                "policies",
                "ttl",
                "display_name",
                "no_default_policy",
                "renewable",
                "no_parent",
                "meta",
                "num_uses",
                "type",
                "explicit_max_ttl",
                "period",
                "entity_alias",
                "id",
            ],
        )?;
        for (field, ok) in [
            (
                "meta",
                fields
                    .get("meta")
                    .is_none_or(|v| v.is_null() || v.as_object().is_some_and(|m| m.is_empty())),
            ),
            (
                "num_uses",
                super::fields::int(&fields, "num_uses")?.unwrap_or(0) == 0,
            ),
            ("period", seconds(&fields, "period")?.unwrap_or(0) == 0),
            (
                "explicit_max_ttl",
                seconds(&fields, "explicit_max_ttl")?.unwrap_or(0) == 0,
            ),
            (
                "type",
                string(&fields, "type")?.is_none_or(|t| t == "service" || t == "default"),
            ),
            (
                "entity_alias",
                string(&fields, "entity_alias")?.is_none_or(str::is_empty),
            ),
            // A token's value is always generated: an id chosen by the caller could be
            // guessed or reused.
            ("id", string(&fields, "id")?.is_none_or(str::is_empty)),
        ] {
            if !ok {
                return Err(bad(format!(
                    "'{field}' is not supported by raftsafe's tokens (a token has a name, policies and a TTL)"
                )));
            }
        }
        // `renewable` is accepted (the CLI always sends it) and answered `false`: only login
        // tokens renew.
        super::fields::boolean(&fields, "renewable")?;
        let requested = strings(&fields, "policies")?.filter(|p| !p.is_empty());
        // The CLI sends "" when no -display-name is given; Vault then names it "token".
        let name = string(&fields, "display_name")?
            .filter(|n| !n.is_empty())
            .unwrap_or("token");
        if name.chars().count() > 128 {
            return Err(bad("display_name must be at most 128 characters"));
        }
        // 0 (what the CLI sends without -ttl) is Vault's "the default": no expiry of its own.
        let ttl_s = seconds(&fields, "ttl")?.filter(|t| *t > 0);
        if ttl_s.is_some_and(|t| t > crate::api::wire::MAX_TTL_SECONDS) {
            return Err(bad(format!(
                "ttl must be at most {}s",
                crate::api::wire::MAX_TTL_SECONDS
            )));
        }
        let (policy, grants, names) = if let Some(requested) = requested {
            if requested.iter().any(|p| p == "root") {
                return Err(bad(
                    "a root token is the cluster's bootstrap token; create admin tokens with POST /api/v1/tokens",
                ));
            }
            let mut names: Vec<String> = Vec::new();
            for p in requested {
                if !names.contains(&p) {
                    names.push(p);
                }
            }
            // Vault's default policy lets a token look up, renew and revoke itself, which
            // every raftsafe token may: it adds no grant.
            let (grants, missing) = self
                .state
                .service
                .policy_grants(&at, &names)
                .map_err(ApiError::from)?;
            if let Some(p) = missing.first() {
                return Err(bad(format!("no policy named '{p}'")));
            }
            let none = Policy {
                scopes: vec![],
                paths: vec![],
            };
            (none, grants, names)
        } else {
            let mine = who.authority.grants();
            (
                mine[0].clone(),
                mine[1..].to_vec(),
                who.acl_policies.clone(),
            )
        };
        let authority = Authority::new(policy.clone(), &grants);
        who.require_within(&authority)?;
        let token = Token::generate().map_err(|e| ApiError::Internal(e.to_string()))?;
        let now = crate::time::now_ms();
        let expires_at_ms = ttl_s
            .map(|t| now.saturating_add(t.saturating_mul(1000)))
            .or(who.expires_at_ms);
        let record = TokenRecord {
            accessor: token.accessor(),
            name: name.to_string(),
            hash: token.hash(),
            policy,
            created_at_ms: now,
            expires_at_ms,
            acl_policies: names,
            grants,
        };
        self.state
            .service
            .create_token(who.caller(), &record)
            .await
            .map_err(ApiError::from)?;
        tracing::info!(accessor = %record.accessor, by = %who.accessor, "token created (Vault API)");
        let policies = super::token::policy_names(&record.acl_policies, &record.authority());
        let ttl = expires_at_ms.map_or(0, |t| t.saturating_sub(now) / 1000);
        let mut body = envelope_value(Value::Null);
        body["auth"] = json!({
            "client_token": token.expose(),
            "accessor": record.accessor,
            "policies": policies,
            "token_policies": policies,
            "metadata": null,
            "lease_duration": ttl,
            "renewable": false,
            "entity_id": "",
            "token_type": "service",
            "orphan": false,
        });
        Ok(axum::Json(body).into_response())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants(rules: &str) -> Vec<(Scope, Vec<String>)> {
        compile(rules, &[])
            .unwrap_or_else(|e| panic!("{rules}: {e}"))
            .into_iter()
            .map(|p| {
                (
                    p.scopes[0],
                    p.paths.iter().map(|x| x.as_str().to_string()).collect(),
                )
            })
            .collect()
    }

    fn refused(rules: &str) -> String {
        compile(rules, &[]).expect_err(rules)
    }

    #[test]
    fn a_kv_mount_is_its_folder_of_secret_and_secret_paths_stay_out_of_it() {
        let mounts = ["team-a".to_string(), "x/y".to_string()];
        let compiled = |rules: &str| {
            compile(rules, &mounts).map(|g| {
                g.into_iter()
                    .map(|p| (p.scopes[0], p.paths[0].as_str().to_string()))
                    .collect::<Vec<_>>()
            })
        };
        let read = r#"path "team-a/data/*" { capabilities = ["read"] }
                      path "team-a/metadata/*" { capabilities = ["read", "list"] }"#;
        assert_eq!(
            compiled(read).unwrap(),
            [(Scope::ReadSecret, "team-a/*".to_string())]
        );
        assert_eq!(
            compiled(r#"path "x/y/+/app/*" { capabilities = ["read", "list"] }"#).unwrap(),
            [(Scope::ReadSecret, "x/y/app/*".to_string())]
        );
        assert_eq!(
            compiled(r#"path "team-a/*" { capabilities = ["read", "list"] }"#).unwrap(),
            [(Scope::ReadSecret, "team-a/*".to_string())]
        );
        // Partial grants are still refused, under their secret/ names.
        let partial = compiled(r#"path "team-a/data/*" { capabilities = ["read"] }"#);
        assert!(partial
            .unwrap_err()
            .contains("'list' on \"secret/metadata/team-a/*\""));
        // A secret/ path that would also reach a mount is refused; one beside them is not.
        for rules in [
            r#"path "secret/+/*" { capabilities = ["read", "list"] }"#,
            r#"path "secret/+/team-a/app/*" { capabilities = ["read", "list"] }"#,
            r#"path "secret/+/x/*" { capabilities = ["read", "list"] }"#,
        ] {
            let why = compiled(rules).unwrap_err();
            assert!(why.contains("reaches into the KV mount"), "{rules}: {why}");
        }
        assert!(
            compiled(r#"path "secret/+/team-ab/*" { capabilities = ["read", "list"] }"#).is_ok()
        );
        // The bare `*` is every mount, in Vault too.
        assert!(compiled(r#"path "*" { capabilities = ["read", "list"] }"#).is_ok());
        // Without the mount, team-a/ is no KV path at all.
        assert!(compile(read, &[]).unwrap_err().contains("KV v2 mounts"));
    }

    #[test]
    fn a_whole_kv_scope_compiles_exactly() {
        assert_eq!(
            grants(r#"path "secret/+/app/*" { capabilities = ["read", "list"] }"#),
            vec![(Scope::ReadSecret, vec!["app/*".to_string()])]
        );
        assert_eq!(
            grants(
                r#"path "secret/+/app/*" { capabilities = ["create", "read", "update", "delete", "list"] }
                   path "secret/+/shared/db" { capabilities = ["read", "list"] }"#
            ),
            vec![
                (
                    Scope::ReadSecret,
                    vec!["app/*".to_string(), "shared/db".to_string()]
                ),
                (Scope::WriteSecret, vec!["app/*".to_string()]),
            ]
        );
        // The same read spelled kind by kind, and in JSON.
        assert_eq!(
            grants(
                r#"path "secret/data/app/*" { capabilities = ["read"] }
                   path "secret/metadata/app/*" { capabilities = ["read", "list"] }"#
            ),
            vec![(Scope::ReadSecret, vec!["app/*".to_string()])]
        );
        assert_eq!(
            grants(r#"{"path": {"secret/+/app/*": {"capabilities": ["read", "list"]}}}"#),
            vec![(Scope::ReadSecret, vec!["app/*".to_string()])]
        );
        assert_eq!(
            grants(r#"path "secret/*" { capabilities = ["read", "list"] }"#),
            vec![(Scope::ReadSecret, vec!["*".to_string()])]
        );
        // A wider block supplies what a narrower one lacks.
        assert_eq!(
            grants(
                r#"path "secret/+/*" { capabilities = ["read", "list"] }
                   path "secret/data/app/*" { capabilities = ["read"] }"#
            ),
            vec![(
                Scope::ReadSecret,
                vec!["*".to_string(), "app/*".to_string()]
            )]
        );
        // An empty policy grants nothing.
        assert!(grants("").is_empty());
    }

    #[test]
    fn transit_compiles_onto_the_key_path() {
        assert_eq!(
            grants(
                r#"path "transit/encrypt/app" { capabilities = ["update"] }
                   path "transit/decrypt/app" { capabilities = ["update"] }
                   path "transit/rewrap/app" { capabilities = ["update"] }"#
            ),
            vec![
                (Scope::ReadSecret, vec!["transit/app".to_string()]),
                (Scope::WriteSecret, vec!["transit/app".to_string()]),
            ]
        );
        let e = refused(r#"path "transit/decrypt/app" { capabilities = ["update"] }"#);
        assert!(e.contains("'update' on \"transit/rewrap/app\""), "{e}");
    }

    #[test]
    fn a_part_of_a_scope_is_refused_naming_the_rest() {
        let e = refused(r#"path "secret/data/app/*" { capabilities = ["read"] }"#);
        assert!(e.contains("'read:secret' on 'app/*'"), "{e}");
        assert!(e.contains("'list' on \"secret/metadata/app/*\""), "{e}");
        assert!(e.contains("secret/+/app/*"), "{e}");
        let e = refused(r#"path "secret/data/app/*" { capabilities = ["create", "update"] }"#);
        assert!(e.contains("'delete' on \"secret/data/app/*\""), "{e}");
        assert!(e.contains("'update' on \"secret/destroy/app/*\""), "{e}");
    }

    #[test]
    fn what_cannot_be_enforced_is_refused() {
        for (rules, says) in [
            (r#"path "secret/+/app/*" { capabilities = ["deny"] }"#, "'deny'"),
            (r#"path "secret/+/app/*" { capabilities = ["sudo"] }"#, "'sudo'"),
            (r#"path "secret/+/app/*" { capabilities = ["fly"] }"#, "unknown capability 'fly'"),
            (r#"path "secret/+/app*" { capabilities = ["read"] }"#, "whole path segments"),
            (r#"path "secret/+/a/+/b" { capabilities = ["read"] }"#, "'+'"),
            (r#"path "sys/mounts" { capabilities = ["read"] }"#, "administration"),
            (r#"path "kv/data/x" { capabilities = ["read"] }"#, "administration"),
            (r#"path "transit/keys/app" { capabilities = ["read"] }"#, "administration"),
            (r#"path "transit/encrypt/*" { capabilities = ["update"] }"#, "globs over keys"),
            (
                "path \"secret/+/app/*\" {\n capabilities = [\"read\"]\n allowed_parameters = { a = [] }\n}",
                "'allowed_parameters' is not supported",
            ),
            (r#"name = "x""#, "only path blocks"),
            (r#"path "secret/+/a" "b" { }"#, "exactly one path"),
            (r#"path "secret/+/a" { capabilities = "read" }"#, "list of strings"),
            ("path {", "not valid HCL"),
            (r#"{"path": []}"#, "'path' must map"),
            (r#"{"path": {"secret/+/a": {"capabilities": ["deny"]}}}"#, "'deny'"),
        ] {
            let e = refused(rules);
            assert!(e.contains(says), "{rules}: {e}");
        }
    }

    #[test]
    fn capabilities_that_grant_nothing_here_grant_nothing() {
        // `list` on data/ means nothing in Vault either.
        assert!(grants(r#"path "secret/data/app/*" { capabilities = ["list"] }"#).is_empty());
    }
}
