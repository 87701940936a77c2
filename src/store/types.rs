//! The openraft type configuration: what a log entry carries ([`Request`], a batch of ops),
//! what applying one answers (a [`CommandResult`] per op), how nodes are named and
//! addressed, and the snapshot payload type (a file: snapshots are streamed, never held in
//! memory). The storage traits in this module's siblings and the Raft layer above both
//! build on these aliases.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::secret::{CommandResult, Request};

pub type NodeId = u64;

/// Where a cluster member can be reached. Stored in the replicated membership, so every node
/// agrees on it; a node may still dial a peer through a local override (see `Config`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// host:port of the internal (Raft) listener.
    pub raft_addr: String,
    /// host:port of the client API listener.
    pub api_addr: String,
}

impl fmt::Display for NodeInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "raft={} api={}", self.raft_addr, self.api_addr)
    }
}

openraft::declare_raft_types!(
    pub TypeConfig:
        D = Request,
        R = Vec<CommandResult>,
        NodeId = NodeId,
        Node = NodeInfo,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = tokio::fs::File,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The Raft instance type (used by the layer above).
pub type Raft = openraft::Raft<TypeConfig>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, NodeInfo>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, NodeInfo>;
pub type Snapshot = openraft::Snapshot<TypeConfig>;
pub type StorageError = openraft::StorageError<NodeId>;
