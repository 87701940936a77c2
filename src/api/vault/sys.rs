//! Vault's `sys/*` calls that describe or operate the cluster: `bao status` (seal status and
//! leader), `bao token capabilities` (capabilities-self), `bao secrets enable|disable`
//! (sys/mounts/…), and `bao operator raft` (list-peers, remove-peer, snapshot save and
//! restore).
//!
//! Invariants:
//! - raftsafe has no sealed state: a node holds its master key from start, so it reports
//!   `sealed: false` with a one-share Shamir seal, and `initialized` once it can serve (the
//!   readiness check `sys/health` uses). Neither `seal-status` nor `leader` needs a token,
//!   as in Vault.
//! - Cluster operations need `admin` on every path, as on `/api/v1/cluster/…`, and run after
//!   the read-index round. A Raft snapshot here is raftsafe's backup file inside Vault's
//!   archive shape (a gzip-compressed tar ending in sealed checksums, `api::archive`), which
//!   `bao operator raft snapshot save` checks for and keeps. A restore takes that archive or
//!   a bare backup and keeps the backup's rules: checked whole before anything changes, and
//!   a cluster holding data refuses it unless forced (`snapshot-force`, what `bao operator
//!   raft snapshot restore -force` calls).
//! - Capabilities are derived from the token's scopes and path patterns (the one
//!   authorization model): `read:secret` gives `read` (and `list` on `metadata/`),
//!   `write:secret` gives `create`, `update`, `patch` and `delete`; a path under a KV mount
//!   is its `secret/` form; a path outside every mount gets `deny`.
//! - A KV mount other than `secret/` names a folder of the tree; disabling it while the
//!   folder holds secrets is refused (`secret::kv_mount`).

use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::{Method, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Map, Value};

use super::fields::{bad, ENABLE_FIELDS};
use super::{envelope, envelope_value, transit, Call, Reply, VaultError, MOUNT};
use crate::api::error::ApiError;
use crate::api::input::{json_object, read_body, required};
use crate::raft::node::{FollowerHealth, NodeStatus};
use crate::raft::NodeId;
use crate::secret::kv_mount;
use crate::secret::token::{Authority, Scope};
use crate::secret::SecretPath;
use crate::service::KvMountChange;

/// What `policy` allows on the Vault path `path` (e.g. `secret/data/app/db`, or
/// `team-a/data/db` under the KV mount `team-a`, one of `mounts`), sorted.
fn capabilities(policy: &Authority, mounts: &[String], path: &str) -> Vec<&'static str> {
    let path = &super::on_mount(mounts, path).unwrap_or_else(|| path.to_string());
    let deny = vec!["deny"];
    if let Some(rest) = path
        .strip_prefix(transit::MOUNT)
        .and_then(|p| p.strip_prefix('/'))
    {
        return transit_capabilities(policy, rest).unwrap_or(deny);
    }
    let Some(rest) = path.strip_prefix(MOUNT).and_then(|p| p.strip_prefix('/')) else {
        return deny;
    };
    let Some((kind, secret)) = rest.split_once('/') else {
        return deny;
    };
    let Ok(secret) = SecretPath::parse(secret.trim_end_matches('/')) else {
        return deny;
    };
    let read = policy.allows(Scope::ReadSecret, &secret);
    let write = policy.allows(Scope::WriteSecret, &secret);
    let mut caps = Vec::new();
    match kind {
        "data" => {
            if write {
                caps.extend(["create", "delete", "update"]);
            }
            if write && read {
                caps.push("patch");
            }
            if read {
                caps.push("read");
            }
        }
        "metadata" => {
            if write {
                caps.extend(["delete", "update"]);
            }
            if read {
                caps.extend(["list", "read"]);
            }
        }
        "delete" | "undelete" | "destroy" if write => caps.push("update"),
        _ => {}
    }
    caps.sort_unstable();
    if caps.is_empty() {
        deny
    } else {
        caps
    }
}

/// What `policy` allows on `transit/{rest}` (see [`transit`]'s authorization rules).
fn transit_capabilities(policy: &Authority, rest: &str) -> Option<Vec<&'static str>> {
    let (kind, tail) = rest.split_once('/')?;
    let name = tail.split('/').next().filter(|n| !n.is_empty())?;
    let key = SecretPath::parse(&format!("{}/{name}", transit::MOUNT)).ok()?;
    let mut caps = match kind {
        "encrypt" if policy.allows(Scope::WriteSecret, &key) => vec!["create", "update"],
        "decrypt" | "rewrap" if policy.allows(Scope::ReadSecret, &key) => vec!["update"],
        "keys" if policy.allows(Scope::Admin, &key) => {
            if tail.contains('/') {
                vec!["update"]
            } else {
                vec!["create", "read", "update"]
            }
        }
        _ => return None,
    };
    caps.sort_unstable();
    Some(caps)
}

/// Whose capabilities a `sys/capabilities*` call asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Capabilities {
    /// The caller's (`capabilities-self`).
    Caller,
    /// The token in the body (`capabilities`).
    Token,
    /// The token behind the accessor in the body (`capabilities-accessor`).
    Accessor,
}

/// How far behind the leader's log a member may be and still count as healthy (Vault's
/// default `max_trailing_logs`).
const MAX_TRAILING_LOGS: u64 = 1000;

/// Vault's autopilot state from the membership `me` knows and what each member answered
/// just now (`answers`, asked over the internal transport with a 1 s timeout). A member is
/// healthy when it answered, is in the leader's term and its log trails the leader's by at
/// most [`MAX_TRAILING_LOGS`]; `failure_tolerance` is how many healthy voters may fail with
/// a quorum left.
///
/// On the leader, `followers` is its own record of each follower (`Node::follower_health`,
/// the rule its removal guard and promotions use): `last_contact` is how long ago the
/// follower last answered an append, `healthy` is that rule, and `stable_since` is when its
/// current unbroken run of answers began. Elsewhere `last_contact` is `0s` for a member that
/// answered this call and empty for one that did not (`node_status: failed`), and
/// `stable_since` is empty: only the leader hears from every member.
fn autopilot(
    me: &NodeStatus,
    answers: &BTreeMap<NodeId, Result<NodeStatus, String>>,
    followers: Option<&BTreeMap<NodeId, FollowerHealth>>,
) -> Value {
    let leader = me
        .leader
        .and_then(|id| answers.get(&id))
        .and_then(|a| a.as_ref().ok());
    let now = std::time::SystemTime::now();
    let mut servers = Map::new();
    let mut healthy_voters = 0usize;
    for (id, info) in &me.members {
        let answer = answers.get(id).and_then(|a| a.as_ref().ok());
        let voter = me.voters.contains(id);
        let seen = followers.and_then(|f| f.get(id));
        let healthy = match (answer, leader, seen) {
            (_, _, Some(h)) => h.healthy,
            (Some(s), Some(l), None) => {
                s.term == l.term
                    && l.last_log_index.unwrap_or(0)
                        <= s.last_log_index.unwrap_or(0) + MAX_TRAILING_LOGS
            }
            _ => false,
        };
        let last_contact = match (seen, answer) {
            (Some(h), _) => h
                .contact_ms
                .map_or(String::new(), |ms| format!("{}s", ms as f64 / 1000.0)),
            (None, Some(_)) => "0s".into(),
            (None, None) => String::new(),
        };
        let stable_since = seen
            .and_then(|h| h.stable_ms)
            .and_then(|ms| now.checked_sub(std::time::Duration::from_millis(ms)))
            .map_or(String::new(), |t| {
                humantime::format_rfc3339_seconds(t).to_string()
            });
        if healthy && voter {
            healthy_voters += 1;
        }
        let status = if me.leader == Some(*id) {
            "leader"
        } else if voter {
            "voter"
        } else {
            "non-voter"
        };
        servers.insert(
            id.to_string(),
            json!({
                "id": id.to_string(),
                "name": format!("node-{id}"),
                "address": info.raft_addr,
                "node_status": if answer.is_some() { "alive" } else { "failed" },
                "last_contact": last_contact,
                "last_term": answer.map_or(0, |s| s.term),
                "last_index": answer.and_then(|s| s.last_log_index).unwrap_or(0),
                "healthy": healthy,
                "stable_since": stable_since,
                "status": status,
                "version": env!("CARGO_PKG_VERSION"),
                "node_type": if voter { "voter" } else { "read-replica" },
                "meta": {},
            }),
        );
    }
    let quorum = me.voters.len() / 2 + 1;
    json!({
        "healthy": leader.is_some() && healthy_voters == me.voters.len(),
        "failure_tolerance": healthy_voters.saturating_sub(quorum),
        "leader": me.leader.map(|id| id.to_string()).unwrap_or_default(),
        "voters": me.voters.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "non_voters": me.learners.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "servers": servers,
    })
}

impl Call {
    /// This node's view of the cluster (members, leader, indexes), from its own state.
    async fn local_status(&self) -> Result<crate::raft::node::NodeStatus, VaultError> {
        Ok(self
            .state
            .node
            .local_status(false)
            .await
            .map_err(ApiError::from)?)
    }

    /// The caller of a cluster operation: after the read-index round, with `admin` on every
    /// path (as `/api/v1/cluster/…`).
    async fn cluster_admin(&self) -> Result<crate::api::auth::Principal, VaultError> {
        let (who, _) = self.current().await?;
        who.require_unrestricted(Scope::Admin)?;
        Ok(who)
    }

    /// `sys/mounts/{path}`: `bao secrets enable` and `disable`. `secret/` and `transit/` are
    /// always there: enabling Transit at `transit` succeeds and changes nothing (a script
    /// that enables it before use works). A KV v2 engine at another path registers that
    /// folder of the tree as a mount (`secret::kv_mount`); disabling one removes the name
    /// while its folder is empty and is refused, naming the first secret, while it is not
    /// (raftsafe never deletes secrets by unmounting). Anything else is refused naming what
    /// raftsafe serves. Needs `admin` on the mount's path, as creating a mount does.
    pub(super) async fn enable_mount(&self, method: &Method, path: &str, body: Body) -> Reply {
        let path = path.trim_end_matches('/');
        let who = self.principal().await?;
        let served = "raftsafe serves 'secret/' (KV v2, the whole tree), 'transit/' (Transit, on the ondemand engine) and KV v2 mounts on folders of the tree ('bao secrets enable -path=<folder> kv-v2'); ondemand mounts are made with POST /api/v1/mounts or 'raftsafe mount create'";
        let shown = path.chars().take(128).collect::<String>();
        match *method {
            Method::POST | Method::PUT => {
                let bytes = read_body(body, 64 * 1024).await?;
                let mut fields = json_object(&bytes, &ENABLE_FIELDS, "a JSON object")?;
                let kind = match required(&mut fields, "type")? {
                    Value::String(t) => t,
                    _ => return Err(ApiError::bad_request("field 'type' must be a string").into()),
                };
                if path == transit::MOUNT && kind == "transit" {
                    let key = SecretPath::parse(transit::MOUNT).map_err(ApiError::from)?;
                    who.require_path(Scope::Admin, &key)?;
                    return Ok(StatusCode::NO_CONTENT.into_response());
                }
                let version = match fields.get("options") {
                    Some(Value::Object(o)) => match o.get("version") {
                        Some(Value::String(v)) => Some(v.clone()),
                        Some(Value::Number(v)) => Some(v.to_string()),
                        None | Some(Value::Null) => None,
                        Some(_) => return Err(bad("'options.version' must be \"1\" or \"2\"")),
                    },
                    None | Some(Value::Null) => None,
                    Some(_) => return Err(bad("'options' must be an object")),
                };
                let kv2 = match (kind.as_str(), version.as_deref()) {
                    ("kv-v2", None | Some("2")) | ("kv", Some("2")) => true,
                    ("kv", None | Some("1")) | ("kv-v1", _) => {
                        return Err(bad(format!(
                            "cannot enable KV version 1 at '{shown}/': raftsafe serves KV version 2 only ('bao secrets enable -path={shown} kv-v2', or -version=2)"
                        )))
                    }
                    _ => false,
                };
                if !kv2 || path == MOUNT || path == transit::MOUNT {
                    let why = if path == MOUNT || path == transit::MOUNT {
                        format!("'{shown}/' is always there")
                    } else if kind == "transit" {
                        "raftsafe serves Transit at 'transit/' only".to_string()
                    } else {
                        format!(
                            "raftsafe has no '{}' engine",
                            kind.chars().take(64).collect::<String>()
                        )
                    };
                    return Err(bad(format!(
                        "cannot enable a '{}' engine at '{shown}/': {why}; {served}",
                        kind.chars().take(64).collect::<String>(),
                    )));
                }
                let at = SecretPath::parse(path).map_err(|e| bad(format!("mount path: {e}")))?;
                kv_mount::check_path(&at).map_err(bad)?;
                who.require_path(Scope::Admin, &at)?;
                let description = match fields.get("description") {
                    Some(Value::String(d)) => d.clone(),
                    None | Some(Value::Null) => String::new(),
                    Some(_) => return Err(bad("'description' must be a string")),
                };
                if description.len() > kv_mount::MAX_DESCRIPTION_BYTES {
                    return Err(bad(format!(
                        "'description' is at most {} bytes",
                        kv_mount::MAX_DESCRIPTION_BYTES
                    )));
                }
                let origin = self.origin(&who, &format!("kv-mount:{at}"), &bytes)?;
                match self
                    .state
                    .service
                    .create_kv_mount(origin, &at, &description)
                    .await
                    .map_err(ApiError::from)?
                {
                    KvMountChange::Created => Ok(StatusCode::NO_CONTENT.into_response()),
                    KvMountChange::Refused(why) => Err(bad(why)),
                    other => Err(ApiError::Internal(format!(
                        "creating a KV mount answered {other:?}"
                    ))
                    .into()),
                }
            }
            Method::DELETE => {
                self.query(&[])?;
                if path == MOUNT || path == transit::MOUNT || path.starts_with("transit/") {
                    return Err(bad(format!(
                        "cannot disable '{shown}/': it is always there; an ondemand mount (a Transit key is transit/<name>) is deleted, with its keys, by DELETE /api/v1/mounts/<path>?confirm=<path>"
                    )));
                }
                let Ok(at) = SecretPath::parse(path) else {
                    // No mount can be there: Vault answers success ("if it existed").
                    return Ok(StatusCode::NO_CONTENT.into_response());
                };
                who.require_path(Scope::Admin, &at)?;
                let origin = self.origin(&who, &format!("kv-unmount:{at}"), b"")?;
                match self
                    .state
                    .service
                    .delete_kv_mount(origin, &at)
                    .await
                    .map_err(ApiError::from)?
                {
                    // Vault's CLI says "disabled the secrets engine (if it existed)".
                    KvMountChange::Deleted | KvMountChange::NotFound => {
                        Ok(StatusCode::NO_CONTENT.into_response())
                    }
                    KvMountChange::Refused(why) => Err(bad(why)),
                    other => Err(ApiError::Internal(format!(
                        "removing a KV mount answered {other:?}"
                    ))
                    .into()),
                }
            }
            ref m => Err(VaultError::unsupported(m, "sys/mounts")),
        }
    }

    /// `sys/seal-status` (no token): never sealed, see the module doc.
    pub(super) async fn seal_status(&self, method: &Method) -> Reply {
        if method != Method::GET {
            return Err(VaultError::unsupported(method, "sys/seal-status"));
        }
        let ready = crate::api::health::readiness(&self.state).await.is_ready();
        Ok(Json(json!({
            "type": "shamir",
            "initialized": ready,
            "sealed": false,
            "t": 1,
            "n": 1,
            "progress": 0,
            "nonce": "",
            "version": concat!("raftsafe-", env!("CARGO_PKG_VERSION")),
            "build_date": "",
            "migration": false,
            "cluster_name": "raftsafe",
            "recovery_seal": false,
            "storage_type": "raft",
        }))
        .into_response())
    }

    /// `sys/leader` (no token): the leader this node knows, by its API address.
    pub(super) async fn leader(&self, method: &Method) -> Reply {
        if method != Method::GET {
            return Err(VaultError::unsupported(method, "sys/leader"));
        }
        let me = self.local_status().await?;
        let scheme = if self.state.node.config().tls.is_some() {
            "https"
        } else {
            "http"
        };
        let leader = me.leader.and_then(|id| me.members.get(&id));
        Ok(Json(json!({
            "ha_enabled": true,
            "is_self": me.leader == Some(me.id),
            "active_time": "0001-01-01T00:00:00Z",
            "leader_address": leader.map_or(String::new(), |n| format!("{scheme}://{}", n.api_addr)),
            "leader_cluster_address": leader.map_or(String::new(), |n| format!("{scheme}://{}", n.raft_addr)),
            "performance_standby": false,
            "performance_standby_last_remote_wal": 0,
            "raft_committed_index": me.last_log_index.unwrap_or(0),
            "raft_applied_index": me.last_applied_index.unwrap_or(0),
        }))
        .into_response())
    }

    /// `sys/capabilities-self` `{"path"}` or `{"paths": [..]}`: what the calling token may
    /// do there (see the module doc). `sys/capabilities` (`{"token"}`, what `bao token
    /// capabilities TOKEN PATH` calls) and `sys/capabilities-accessor` (`{"accessor"}`) ask
    /// about another token: for an `admin` whose authority covers it, after the read-index
    /// round, as `lookup-accessor`.
    pub(super) async fn capabilities_of(
        &self,
        method: &Method,
        of: Capabilities,
        body: Body,
    ) -> Reply {
        let route = match of {
            Capabilities::Caller => "sys/capabilities-self",
            Capabilities::Token => "sys/capabilities",
            Capabilities::Accessor => "sys/capabilities-accessor",
        };
        self.only_write(method, route)?;
        let bytes = read_body(body, 64 * 1024).await?;
        // The CLI also sends its own token to capabilities-self; it is this caller's, so it
        // adds nothing there.
        let body = json_object(
            &bytes,
            &["path", "paths", "token", "accessor"],
            "a JSON object {\"paths\": [..]}",
        )?;
        let authority = match of {
            Capabilities::Caller => self.principal().await?.authority,
            Capabilities::Token | Capabilities::Accessor => {
                let (who, _at) = self.current().await?;
                let field = if of == Capabilities::Token {
                    "token"
                } else {
                    "accessor"
                };
                let Some(Value::String(given)) = body.get(field) else {
                    return Err(ApiError::bad_request(format!("give '{field}'")).into());
                };
                let accessor = match of {
                    Capabilities::Token => crate::secret::token::accessor(given),
                    _ => given.to_ascii_lowercase(),
                };
                let record = self
                    .state
                    .service
                    .token(&accessor)
                    .map_err(ApiError::from)?
                    .filter(|(r, revoked)| {
                        revoked.is_none() && (of == Capabilities::Accessor || r.matches(given))
                    })
                    .map(|(r, _)| r)
                    .ok_or_else(|| {
                        VaultError::new(StatusCode::BAD_REQUEST, format!("invalid {field}"))
                    })?;
                if record.accessor != who.accessor {
                    who.require(Scope::Admin)?;
                    who.require_within(&record.authority())?;
                }
                record.authority()
            }
        };
        let mut paths: Vec<String> = Vec::new();
        if let Some(Value::String(p)) = body.get("path") {
            paths.push(p.clone());
        }
        if let Some(Value::Array(a)) = body.get("paths") {
            for p in a.iter().take(100) {
                match p {
                    Value::String(p) => paths.push(p.clone()),
                    _ => return Err(ApiError::bad_request("'paths' must be strings").into()),
                }
            }
        }
        if paths.is_empty() {
            return Err(ApiError::bad_request("give 'path' or 'paths'").into());
        }
        let mounts = self.kv_mount_paths().await?;
        let mut data = Map::new();
        let mut all: Vec<&str> = Vec::new();
        for p in &paths {
            let caps = capabilities(&authority, &mounts, p.trim_start_matches('/'));
            all.extend(caps.iter().copied());
            data.insert(p.clone(), json!(caps));
        }
        all.sort_unstable();
        all.dedup();
        data.insert("capabilities".into(), json!(all));
        // Vault answers the paths both at the top level and under `data`.
        let mut out = envelope_value(Value::Object(data.clone()));
        if let Value::Object(top) = &mut out {
            top.extend(data);
        }
        Ok(Json(out).into_response())
    }

    /// `sys/storage/raft/configuration`: the members, their Raft addresses, who leads and
    /// who votes (`bao operator raft list-peers`).
    pub(super) async fn raft_configuration(&self, method: &Method) -> Reply {
        self.only_get(method, "sys/storage/raft/configuration")?;
        self.cluster_admin().await?;
        let me = self.local_status().await?;
        let servers: Vec<Value> = me
            .members
            .iter()
            .map(|(id, info)| {
                json!({
                    "node_id": id.to_string(),
                    "address": info.raft_addr,
                    "leader": me.leader == Some(*id),
                    "protocol_version": "3",
                    "voter": me.voters.contains(id),
                })
            })
            .collect();
        Ok(envelope(json!({
            "config": {"index": me.last_applied_index.unwrap_or(0), "servers": servers}
        })))
    }

    /// `sys/storage/raft/autopilot/state`: every member's health (`bao operator raft
    /// autopilot state`), from what each member answers this node now (see [`autopilot`]).
    pub(super) async fn autopilot_state(&self, method: &Method) -> Reply {
        self.only_get(method, "sys/storage/raft/autopilot/state")?;
        self.cluster_admin().await?;
        let me = self.local_status().await?;
        let answers = self.state.node.cluster_status().await;
        let followers = self.state.node.follower_health();
        Ok(envelope(autopilot(&me, &answers, followers.as_ref())))
    }

    /// `sys/storage/raft/remove-peer` `{"server_id": "<node id>"}`: the membership change of
    /// `DELETE /api/v1/cluster/members/{id}` (204).
    pub(super) async fn remove_peer(&self, method: &Method, body: Body) -> Reply {
        self.only_write(method, "sys/storage/raft/remove-peer")?;
        let who = self.cluster_admin().await?;
        let bytes = read_body(body, 4 * 1024).await?;
        let mut body = json_object(
            &bytes,
            &["server_id", "dr_operation_token"],
            "a JSON object {\"server_id\": \"...\"}",
        )?;
        let id = match required(&mut body, "server_id")? {
            Value::String(s) => s.parse::<u64>().ok(),
            v => v.as_u64(),
        }
        .ok_or_else(|| {
            ApiError::bad_request("'server_id' must be a raftsafe node id (an integer)")
        })?;
        self.state
            .node
            .remove_member(id)
            .await
            .map_err(ApiError::from)?;
        tracing::info!(node = id, by = %who.accessor, "member removed (Vault API)");
        Ok(StatusCode::NO_CONTENT.into_response())
    }

    /// `GET sys/storage/raft/snapshot`: a backup, streamed (`bao operator raft snapshot
    /// save`); `POST sys/storage/raft/snapshot[-force]`: restore one (`… restore [-force]`).
    pub(super) async fn raft_snapshot(&self, method: &Method, force: bool, body: Body) -> Reply {
        self.query(&[])?;
        match *method {
            Method::GET if !force => {
                let (who, at) = self.current().await?;
                who.require_unrestricted(Scope::Admin)?;
                Ok(crate::api::backup::download(&self.state, &at, &who, true))
            }
            Method::POST | Method::PUT => {
                let who = self.principal().await?;
                who.require_unrestricted(Scope::Admin)?;
                crate::api::backup::upload_and_restore(&self.state, &who, body, force).await?;
                Ok(StatusCode::NO_CONTENT.into_response())
            }
            ref m => Err(VaultError::unsupported(m, "sys/storage/raft/snapshot")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::token::{PathPattern, Policy};

    fn status(id: NodeId, term: u64, last: u64) -> NodeStatus {
        NodeStatus {
            id,
            state: "Follower".into(),
            term,
            leader: Some(1),
            last_log_index: Some(last),
            last_applied_index: Some(last),
            snapshot_index: None,
            purged_index: None,
            voters: vec![1, 2, 3],
            learners: vec![4],
            members: (1..=4)
                .map(|id| {
                    let info = crate::raft::NodeInfo {
                        api_addr: format!("127.0.0.1:{}", 8700 + id),
                        raft_addr: format!("127.0.0.1:{}", 9700 + id),
                    };
                    (id, info)
                })
                .collect(),
            digest: None,
        }
    }

    #[test]
    fn autopilot_health_follows_answers_terms_and_lag() {
        let me = status(1, 5, 5000);
        let mut answers: BTreeMap<NodeId, Result<NodeStatus, String>> =
            (1..=4).map(|id| (id, Ok(status(id, 5, 5000)))).collect();
        let v = autopilot(&me, &answers, None);
        assert_eq!(v["healthy"], true, "{v}");
        assert_eq!(v["failure_tolerance"], 1, "{v}");
        assert_eq!(v["leader"], "1");
        assert_eq!(v["non_voters"], json!(["4"]));
        assert_eq!(v["servers"]["1"]["status"], "leader");
        assert_eq!(v["servers"]["4"]["status"], "non-voter");
        // A voter that does not answer, one in an old term, one far behind: unhealthy.
        answers.insert(2, Err("timed out".into()));
        let v = autopilot(&me, &answers, None);
        assert_eq!(v["servers"]["2"]["node_status"], "failed");
        assert_eq!(
            (v["healthy"].clone(), v["failure_tolerance"].clone()),
            (json!(false), json!(0))
        );
        answers.insert(2, Ok(status(2, 4, 5000)));
        assert_eq!(
            autopilot(&me, &answers, None)["servers"]["2"]["healthy"],
            false
        );
        answers.insert(2, Ok(status(2, 5, 5000 - MAX_TRAILING_LOGS)));
        assert_eq!(
            autopilot(&me, &answers, None)["servers"]["2"]["healthy"],
            true
        );
        answers.insert(1, Ok(status(1, 5, 5001)));
        assert_eq!(
            autopilot(&me, &answers, None)["servers"]["2"]["healthy"],
            false
        );
        // On the leader its own record rules: contact, health and the stable streak.
        let record = |contact_ms, healthy, stable_ms| FollowerHealth {
            contact_ms,
            lag: 0,
            healthy,
            stable_ms,
        };
        let followers = BTreeMap::from([
            (2, record(Some(1500), true, Some(90_000))),
            (3, record(Some(2500), false, None)),
        ]);
        let v = autopilot(&me, &answers, Some(&followers));
        let two = &v["servers"]["2"];
        assert_eq!(two["healthy"], true, "{v}");
        assert_eq!(two["last_contact"], "1.5s", "{v}");
        let since = humantime::parse_rfc3339(two["stable_since"].as_str().unwrap()).unwrap();
        let ago = std::time::SystemTime::now().duration_since(since).unwrap();
        assert!((89..=92).contains(&ago.as_secs()), "{ago:?}");
        assert_eq!(v["servers"]["3"]["healthy"], false, "{v}");
        assert_eq!(v["servers"]["3"]["stable_since"], "", "{v}");
        assert_eq!(v["failure_tolerance"], 0, "{v}");
    }

    #[test]
    fn capabilities_follow_scopes_and_paths() {
        let policy = |scopes: &[Scope], paths: &[&str]| {
            Authority::from(Policy {
                scopes: scopes.to_vec(),
                paths: paths
                    .iter()
                    .map(|p| PathPattern::parse(p).unwrap())
                    .collect(),
            })
        };
        let rw = policy(&[Scope::ReadSecret, Scope::WriteSecret], &["app/*"]);
        assert_eq!(
            capabilities(&rw, &[], "secret/data/app/db"),
            ["create", "delete", "patch", "read", "update"]
        );
        assert_eq!(
            capabilities(&rw, &[], "secret/metadata/app/db"),
            ["delete", "list", "read", "update"]
        );
        assert_eq!(capabilities(&rw, &[], "secret/destroy/app/db"), ["update"]);
        assert_eq!(capabilities(&rw, &[], "secret/data/other"), ["deny"]);
        assert_eq!(capabilities(&rw, &[], "kv/data/app/db"), ["deny"]);
        // Under the KV mount `app`, `app/data/db` is the secret `app/db`.
        let mounts = ["app".to_string()];
        assert_eq!(
            capabilities(&rw, &mounts, "app/data/db"),
            capabilities(&rw, &[], "secret/data/app/db")
        );
        assert_eq!(capabilities(&rw, &mounts, "app/metadata/x/y").len(), 4);
        assert_eq!(capabilities(&rw, &[], "app/data/db"), ["deny"]);
        let ro = policy(&[Scope::ReadSecret], &["*"]);
        assert_eq!(capabilities(&ro, &[], "secret/data/x"), ["read"]);
        assert_eq!(capabilities(&ro, &[], "secret/undelete/x"), ["deny"]);
        // Transit: encrypt is a write, decrypt and rewrap reads, keys admin; on transit/<key>.
        let enc = policy(&[Scope::WriteSecret], &["transit/orders"]);
        assert_eq!(
            capabilities(&enc, &[], "transit/encrypt/orders"),
            ["create", "update"]
        );
        assert_eq!(capabilities(&enc, &[], "transit/decrypt/orders"), ["deny"]);
        assert_eq!(capabilities(&enc, &[], "transit/encrypt/other"), ["deny"]);
        assert_eq!(capabilities(&ro, &[], "transit/decrypt/orders"), ["update"]);
        assert_eq!(capabilities(&ro, &[], "transit/rewrap/orders"), ["update"]);
        assert_eq!(capabilities(&ro, &[], "transit/keys/orders"), ["deny"]);
        let admin = policy(&[Scope::Admin], &["transit/*"]);
        assert_eq!(
            capabilities(&admin, &[], "transit/keys/orders"),
            ["create", "read", "update"]
        );
        assert_eq!(
            capabilities(&admin, &[], "transit/keys/orders/rotate"),
            ["update"]
        );
        assert_eq!(
            capabilities(&admin, &[], "transit/encrypt/orders"),
            ["deny"]
        );
    }
}
