//! `/cluster`: membership and status of the Raft cluster (operators only).

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::Principal;
use super::error::ApiError;
use super::state::State;
use crate::raft::node::NodeStatus;
use crate::raft::NodeInfo;
use crate::secret::token::Scope;
use axum::extract::Extension;

fn status_json(s: &NodeStatus) -> Value {
    json!({
        "id": s.id,
        "state": s.state,
        "term": s.term,
        "leader": s.leader,
        "lastLogIndex": s.last_log_index,
        "lastAppliedIndex": s.last_applied_index,
        "snapshotIndex": s.snapshot_index,
        "purgedIndex": s.purged_index,
        "digest": s.digest.as_ref().map(|(i, d)| json!({"appliedIndex": i, "sha256": d})),
    })
}

/// The cluster as this node sees it, with every member's own report.
pub async fn status(
    state: State,
    Extension(who): Extension<Principal>,
) -> Result<Json<Value>, ApiError> {
    who.require(Scope::Admin)?;
    let me = state.node.local_status(false).await?;
    let reports = state.node.cluster_status().await;
    let members: Vec<Value> = me
        .members
        .iter()
        .map(|(id, info)| {
            let report = match reports.get(id) {
                Some(Ok(s)) => status_json(s),
                Some(Err(e)) => json!({"error": e}),
                None => json!({"error": "no report"}),
            };
            json!({
                "id": id,
                "raftAddr": info.raft_addr,
                "apiAddr": info.api_addr,
                "voter": me.voters.contains(id),
                "status": report,
            })
        })
        .collect();
    Ok(Json(json!({
        "nodeId": me.id,
        "leader": me.leader,
        "term": me.term,
        "members": members,
    })))
}

/// This node only, with a digest of its state machine (used to check convergence).
pub async fn node_status(
    state: State,
    Extension(who): Extension<Principal>,
) -> Result<Json<Value>, ApiError> {
    who.require(Scope::Admin)?;
    let me = state.node.local_status(true).await?;
    Ok(Json(status_json(&me)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AddMember {
    id: u64,
    raft_addr: String,
    api_addr: String,
}

pub async fn add_member(
    state: State,
    Extension(who): Extension<Principal>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    who.require(Scope::Admin)?;
    let m: AddMember = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "body must be {{\"id\", \"raftAddr\", \"apiAddr\"}}: {e}"
        ))
    })?;
    if m.id == 0 {
        return Err(ApiError::invalid_field(
            "invalidMember",
            "/id",
            "node id must be 1 or greater",
        ));
    }
    state
        .node
        .add_member(
            m.id,
            NodeInfo {
                raft_addr: m.raft_addr,
                api_addr: m.api_addr,
            },
        )
        .await?;
    Ok((StatusCode::OK, Json(json!({"status": "OK", "added": m.id}))).into_response())
}

pub async fn remove_member(
    state: State,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    who.require(Scope::Admin)?;
    let id: u64 = id.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "'{}' is not a node id",
            id.chars().take(32).collect::<String>()
        ))
    })?;
    state.node.remove_member(id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Builds a snapshot on this node now (and so lets it purge its log).
pub async fn snapshot(
    state: State,
    Extension(who): Extension<Principal>,
) -> Result<Response, ApiError> {
    who.require(Scope::Admin)?;
    state.node.trigger_snapshot().await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"status": "OK"}))).into_response())
}
