//! `/cluster`: membership and status of the Raft cluster (operators only). `GET /cluster`
//! also shows each member's disk and NOSPACE alarm as the node asked knows them
//! (`raft::disk`), and why writes are refused if they are.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::error::ApiError;
use super::input::Call;
use super::state::State;
use super::wire::{
    AddMember, ClusterStatus, ErrorBody, Member, MemberAdded, MemberReport, NodeReport,
    ReportError, StatusOk, OK,
};
use crate::raft::NodeInfo;
use crate::secret::token::Scope;

#[utoipa::path(
    get,
    path = "/cluster",
    tag = "cluster",
    operation_id = "clusterStatus",
    summary = "The cluster as this node sees it, with every member's own report",
    description = "Answered from this node's state (no read-index round), so an isolated node can be inspected.",
    responses((status = 200, description = "The cluster.", body = ClusterStatus)),
    security(("bearer" = ["admin"])),
)]
/// The cluster as this node sees it, with every member's own report.
pub async fn status(state: State, call: Call) -> Result<Json<ClusterStatus>, ApiError> {
    call.who.require_unrestricted(Scope::Admin)?;
    call.query(&[])?;
    let me = state.node.local_status(false).await?;
    let change = state.node.membership().await?.change;
    let reports = state.node.cluster_status().await;
    let disks = state.node.disk().table();
    let health = state.node.follower_health().unwrap_or_default();
    let members = me
        .members
        .iter()
        .map(|(id, info)| Member {
            api_addr: info.api_addr.clone(),
            disk: disks.get(id).map(|r| (*r).into()),
            health: health.get(id).map(|h| (*h).into()),
            id: *id,
            raft_addr: info.raft_addr.clone(),
            status: match reports.get(id) {
                Some(Ok(s)) => MemberReport::Report(s.into()),
                Some(Err(e)) => MemberReport::Unreachable(ReportError { error: e.clone() }),
                None => MemberReport::Unreachable(ReportError {
                    error: "no report".into(),
                }),
            },
            voter: me.voters.contains(id),
        })
        .collect();
    Ok(Json(ClusterStatus {
        leader: me.leader,
        members,
        membership_change: change,
        node_id: me.id,
        nospace: state.node.space_alarm().map(|(id, r)| r.detail(id)),
        term: me.term,
    }))
}

#[utoipa::path(
    get,
    path = "/cluster/self",
    tag = "cluster",
    operation_id = "nodeStatus",
    summary = "This node, with a digest of its state machine",
    description = "Answered from this node's state; equal digests at equal applied indexes mean converged replicas.",
    responses((status = 200, description = "This node.", body = NodeReport)),
    security(("bearer" = ["admin"])),
)]
/// This node only, with a digest of its state machine (used to check convergence).
pub async fn node_status(state: State, call: Call) -> Result<Json<NodeReport>, ApiError> {
    call.who.require_unrestricted(Scope::Admin)?;
    call.query(&[])?;
    let me = state.node.local_status(true).await?;
    Ok(Json(NodeReport::from(&me)))
}

#[utoipa::path(
    post,
    path = "/cluster/members",
    tag = "cluster",
    operation_id = "addMember",
    summary = "Add a node to the cluster",
    description = "It catches up as a learner, then becomes a voter.",
    request_body(content = AddMember),
    responses(
        (status = 200, description = "Added.", body = MemberAdded),
        (status = 400, description = "A bad body.", body = ErrorBody),
        (status = 409, description = "The membership change was refused (`type` `rejected`).", body = ErrorBody),
        (status = 413, description = "The body is larger than 16 KiB.", body = ErrorBody),
    ),
    security(("bearer" = ["admin"])),
)]
pub async fn add_member(state: State, mut call: Call) -> Result<Response, ApiError> {
    call.who.require_unrestricted(Scope::Admin)?;
    call.query(&[])?;
    let body = call.body(16 * 1024).await?;
    let m: AddMember = super::body::parse(&body)?;
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
    Ok((
        StatusCode::OK,
        Json(MemberAdded {
            added: m.id,
            status: "OK",
        }),
    )
        .into_response())
}

#[utoipa::path(
    delete,
    path = "/cluster/members/{id}",
    tag = "cluster",
    operation_id = "removeMember",
    summary = "Remove a node from the cluster",
    params(("id" = u64, Path, description = "The node's id.")),
    responses(
        (status = 204, description = "Removed."),
        (status = 400, description = "Not a node id.", body = ErrorBody),
        (status = 409, description = "The membership change was refused (`type` `rejected`).", body = ErrorBody),
    ),
    security(("bearer" = ["admin"])),
)]
pub async fn remove_member(
    state: State,
    Path(id): Path<String>,
    call: Call,
) -> Result<Response, ApiError> {
    call.who.require_unrestricted(Scope::Admin)?;
    call.query(&[])?;
    let id: u64 = id.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "'{}' is not a node id",
            id.chars().take(32).collect::<String>()
        ))
    })?;
    state.node.remove_member(id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(
    post,
    path = "/cluster/snapshot",
    tag = "cluster",
    operation_id = "snapshot",
    summary = "Build a snapshot on this node now (and let it purge its log)",
    responses((status = 202, description = "The snapshot is being built.", body = StatusOk)),
    security(("bearer" = ["admin"])),
)]
/// Builds a snapshot on this node now (and so lets it purge its log).
pub async fn snapshot(state: State, call: Call) -> Result<Response, ApiError> {
    call.who.require_unrestricted(Scope::Admin)?;
    call.query(&[])?;
    state.node.trigger_snapshot().await?;
    Ok((StatusCode::ACCEPTED, Json(OK)).into_response())
}
