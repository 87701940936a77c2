//! The internal transport's wire types and routes: everything that crosses the Raft
//! listener, shared by the client side ([`super::network`]) and the server side
//! ([`super::rpc`]) so that neither has to import the other.
//!
//! Invariants:
//! - Every request travels in an [`Envelope`] naming its target node id; a listener that is
//!   not that node answers [`TARGET_MISMATCH`] and does nothing.
//! - Every route is spelled once, here, as a constant.
//! - These types are encoded with [`crate::codec`] (bincode): no `serde(flatten/skip/tag/
//!   untagged)`, and a change to any of them is a wire-format change.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{NodeId, NodeInfo};
use crate::secret::{CommandResult, Op};

/// Raft's AppendEntries (replication and heartbeats).
pub const ROUTE_APPEND: &str = "/raft/append";
/// Raft's RequestVote.
pub const ROUTE_VOTE: &str = "/raft/vote";
/// One chunk of InstallSnapshot.
pub const ROUTE_SNAPSHOT: &str = "/raft/snapshot";
/// A follower asks the leader for a read index (the leader confirms with a quorum first).
pub const ROUTE_READ_INDEX: &str = "/raft/read-index";
/// A write or membership change relayed to the leader. The two relay routes keep the names
/// they had before "relay" became the one word for it: nodes of both versions must reach
/// each other during a rolling upgrade.
pub const ROUTE_RELAY: &str = "/raft/forward";
/// Writes relayed to the leader, many to a request ([`super::relay`]).
pub const ROUTE_RELAY_WRITES: &str = "/raft/forward-writes";
/// One node's own status.
pub const ROUTE_STATUS: &str = "/raft/status";

/// HTTP status for "this listener is not the node you addressed" (421 Misdirected Request).
pub const TARGET_MISMATCH: u16 = 421;

/// Largest internal request: a batch of appended entries or a snapshot chunk.
/// The header every internal request carries: a key derived from the cluster's master key,
/// so only a holder of that key (a member) can call the Raft listener, with or without TLS.
pub const PEER_KEY_HEADER: &str = "x-raftsafe-peer-key";

/// The members' shared internal-listener key (hex). Its `Debug` never shows it.
#[derive(Clone)]
pub struct PeerKey(std::sync::Arc<str>);

impl std::fmt::Debug for PeerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerKey(<redacted>)")
    }
}

impl PeerKey {
    /// From the raw derived key (see `secret::keyring::MacPurpose::Peer`).
    pub fn new(raw: &[u8]) -> PeerKey {
        PeerKey(hex::encode(raw).into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `presented` is this key, in constant time.
    pub fn matches(&self, presented: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        presented.len() == self.0.len() && bool::from(presented.ct_eq(self.0.as_bytes()))
    }
}

pub const MAX_INTERNAL_BODY: usize = 128 * 1024 * 1024;

/// Every internal request: its target and its body.
#[derive(Serialize, Deserialize)]
pub struct Envelope<T> {
    pub target: NodeId,
    pub body: T,
}

/// The Raft layer's errors, as the API sees them. Serializable: a relayed request's error
/// travels back to the node the client called.
#[derive(Debug, Clone, Serialize, Deserialize, thiserror::Error)]
pub enum NodeError {
    /// No leader, no quorum, or the deadline passed: retryable. For a write it is unknown
    /// whether it was applied.
    #[error("{0}")]
    Unavailable(String),
    /// A cluster operation that can never succeed as asked.
    #[error("{0}")]
    Rejected(String),
    /// A fault in this node (storage, a stopped Raft core).
    #[error("{0}")]
    Internal(String),
    /// The node asked is shutting down: retryable on another node, with the same request id
    /// (a write it took may still apply under the next leader, once). A node that relayed
    /// the request retries it itself instead of passing this on (`node`'s relay).
    #[error("{0}")]
    Stopping(String),
}

impl From<crate::store::StoreError> for NodeError {
    fn from(e: crate::store::StoreError) -> Self {
        NodeError::Internal(format!("storage: {e}"))
    }
}

/// A request relayed from the node a client called to the leader.
#[derive(Debug, Serialize, Deserialize)]
pub struct RelayRequest {
    /// How many nodes relayed it already; bounded so a confused cluster cannot loop.
    pub hops: u8,
    pub op: RelayOp,
}

/// Writes relayed together from the node the clients called to the leader; answered with
/// one `Result<CommandResult, NodeError>` per op, in order.
#[derive(Debug, Serialize, Deserialize)]
pub struct RelayedWrites {
    /// How many nodes relayed them already (as in [`RelayRequest`]).
    pub hops: u8,
    pub ops: Vec<Op>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum RelayOp {
    Write(Op),
    AddMember { id: NodeId, node: NodeInfo },
    RemoveMember { id: NodeId },
}

#[derive(Debug, Serialize, Deserialize)]
pub enum RelayReply {
    Written(CommandResult),
    Done,
}

/// One node's view of itself, for `/cluster` and the chaos checks.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeStatus {
    pub id: NodeId,
    pub state: String,
    pub term: u64,
    pub leader: Option<NodeId>,
    pub last_log_index: Option<u64>,
    pub last_applied_index: Option<u64>,
    pub snapshot_index: Option<u64>,
    pub purged_index: Option<u64>,
    pub voters: Vec<NodeId>,
    pub learners: Vec<NodeId>,
    pub members: BTreeMap<NodeId, NodeInfo>,
    /// SHA-256 over the state machine's data, with the applied index it was taken at.
    pub digest: Option<(Option<u64>, String)>,
}
