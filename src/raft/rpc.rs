//! The server side of the internal transport: the routes of the Raft listener and the
//! messages they carry. Only other cluster members talk to this listener.
//!
//! Invariants:
//! - A request whose envelope names another node id is refused with `TARGET_MISMATCH`
//!   and has no effect.
//! - Only members call it: every request must carry the members' shared key
//!   ([`PeerKey`], derived from the master key) or is refused with 401 before its body is
//!   read. This holds in dev mode too, where the listener is plain HTTP on loopback and any
//!   local user could otherwise propose writes or change the membership.
//! - A relayed write names its caller (the token the receiving node checked); only the
//!   cluster's own bootstrap writes (first data key, root token) may come without one.
//! - Handlers are thin: decode, check the target, call into openraft or [`Node`], encode.
//!   The append route also takes the leader's disk table from its header and answers with
//!   this node's own disk report ([`super::disk`]).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use openraft::raft::AppendEntriesResponse;
use serde::{de::DeserializeOwned, Serialize};

use super::disk;
use super::node::Node;
use super::wire::{
    Envelope, NodeError, NodeStatus, PeerKey, RelayOp, RelayReply, RelayRequest, RelayedWrites,
    MAX_INTERNAL_BODY, PEER_KEY_HEADER, ROUTE_APPEND, ROUTE_READ_INDEX, ROUTE_RELAY,
    ROUTE_RELAY_WRITES, ROUTE_SNAPSHOT, ROUTE_STATUS, ROUTE_VOTE, TARGET_MISMATCH,
};
use super::{LogId, NodeId, TypeConfig};
use crate::codec;

pub fn router(node: Arc<Node>, key: PeerKey) -> Router {
    Router::new()
        .route(ROUTE_APPEND, post(append))
        .route(ROUTE_VOTE, post(vote))
        .route(ROUTE_SNAPSHOT, post(snapshot))
        .route(ROUTE_READ_INDEX, post(read_index))
        .route(ROUTE_RELAY, post(relay))
        .route(ROUTE_RELAY_WRITES, post(relay_writes))
        .route(ROUTE_STATUS, post(status))
        .layer(DefaultBodyLimit::max(MAX_INTERNAL_BODY))
        .layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                let key = key.clone();
                async move {
                    let presented = request.headers().get(PEER_KEY_HEADER);
                    if presented.is_some_and(|v| key.matches(v.as_bytes())) {
                        next.run(request).await
                    } else {
                        let mut response = (
                            StatusCode::UNAUTHORIZED,
                            "not a member of this cluster: the peer key is missing or wrong \
                             (is this node's master key the cluster's?)",
                        )
                            .into_response();
                        // The body was not read: the connection cannot be reused.
                        response.headers_mut().insert(
                            axum::http::header::CONNECTION,
                            axum::http::HeaderValue::from_static("close"),
                        );
                        response
                    }
                }
            },
        ))
        .with_state(node)
}

/// Whether a relayed write may be proposed: it names its caller, or it is one of the
/// cluster's own bootstrap writes (whose once-only rules in the state machine decide), or a
/// login, which is its own authority (apply issues its token only for a role and keys still
/// current and, for AppRole, a secret id with a use left: `secret::login`).
fn acceptable(op: &crate::secret::Op) -> bool {
    use crate::secret::Command;
    op.caller.is_some()
        || matches!(
            op.command,
            Command::AddDataKey { .. }
                | Command::CreateToken {
                    bootstrap: true,
                    ..
                }
                | Command::Login(_)
        )
}

fn refuse_callerless() -> Response {
    (
        StatusCode::FORBIDDEN,
        "a relayed write must name its caller (only bootstrap writes and logins may not)",
    )
        .into_response()
}

/// Decodes an envelope and checks it is addressed to this node.
#[allow(clippy::result_large_err)] // the error is the finished response, returned at once
fn open<T: DeserializeOwned>(node: &Node, bytes: &[u8]) -> Result<T, Response> {
    let envelope: Envelope<T> = codec::decode(bytes).map_err(|e| {
        (StatusCode::BAD_REQUEST, format!("undecodable request: {e}")).into_response()
    })?;
    if envelope.target != node.id() {
        let status = StatusCode::from_u16(TARGET_MISMATCH).expect("valid status code");
        let msg = format!("this is node {}, not node {}", node.id(), envelope.target);
        return Err((status, msg).into_response());
    }
    Ok(envelope.body)
}

fn reply<T: Serialize>(value: &T) -> Response {
    (StatusCode::OK, codec::encode(value)).into_response()
}

async fn append(State(node): State<Arc<Node>>, headers: HeaderMap, body: Bytes) -> Response {
    let began = std::time::Instant::now();
    let req: openraft::raft::AppendEntriesRequest<TypeConfig> = match open(&node, &body) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let answer = node.raft.append_entries(req).await;
    metrics::histogram!(crate::metrics::APPEND_SERVE_DURATION)
        .record(began.elapsed().as_secs_f64());
    // The leader's disk table, taken only from a leader openraft accepted (a deposed one
    // is answered `HigherVote` and may know less than the current one).
    if matches!(&answer, Ok(r) if !matches!(r, AppendEntriesResponse::HigherVote(_))) {
        if let Some(table) = headers.get(disk::HEADER).and_then(|v| v.to_str().ok()) {
            node.disk().learn(&disk::decode(table));
        }
    }
    let mut response = reply(&answer);
    if let Some(own) = node.disk().own_header() {
        if let Ok(v) = HeaderValue::from_str(&own) {
            response.headers_mut().insert(disk::HEADER, v);
        }
    }
    response
}

async fn vote(State(node): State<Arc<Node>>, body: Bytes) -> Response {
    let req: openraft::raft::VoteRequest<NodeId> = match open(&node, &body) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    reply(&node.raft.vote(req).await)
}

async fn snapshot(State(node): State<Arc<Node>>, body: Bytes) -> Response {
    let req: openraft::raft::InstallSnapshotRequest<TypeConfig> = match open(&node, &body) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    reply(&node.raft.install_snapshot(req).await)
}

async fn read_index(State(node): State<Arc<Node>>, body: Bytes) -> Response {
    if let Err(resp) = open::<()>(&node, &body) {
        return resp;
    }
    let answer: Result<Option<LogId>, NodeError> = node.leader_read_index().await;
    reply(&answer)
}

async fn relay(State(node): State<Arc<Node>>, body: Bytes) -> Response {
    let req: RelayRequest = match open(&node, &body) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    if let RelayOp::Write(op) = &req.op {
        if !acceptable(op) {
            return refuse_callerless();
        }
    }
    let answer: Result<RelayReply, NodeError> = node.handle_relayed(req).await;
    reply(&answer)
}

async fn relay_writes(State(node): State<Arc<Node>>, body: Bytes) -> Response {
    let req: RelayedWrites = match open(&node, &body) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    if !req.ops.iter().all(acceptable) {
        return refuse_callerless();
    }
    reply(&node.handle_relayed_writes(req).await)
}

async fn status(State(node): State<Arc<Node>>, body: Bytes) -> Response {
    if let Err(resp) = open::<()>(&node, &body) {
        return resp;
    }
    let answer: Result<NodeStatus, NodeError> = node.local_status(false).await;
    reply(&answer)
}
