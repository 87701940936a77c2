//! Raft plumbing: the HTTP transport between nodes ([`network`] dials, [`rpc`] serves,
//! [`wire`] holds what crosses it) and the node's lifecycle ([`node`]: start, bootstrap,
//! the read-index round, writes, relaying; [`batch`] and [`relay`] group writes into entries and
//! relayed requests; [`snapshots`] decides when to build a snapshot; [`view`] types what a read may assume;
//! [`disk`] is the NOSPACE alarm, carried on the transport).
//!
//! The openraft type configuration lives in [`crate::store::types`] (the storage traits
//! below this layer are written against it) and is re-exported here. The API layer talks to
//! [`node::Node`] only.

pub mod batch;
pub mod coalesce;
pub mod disk;
pub mod network;
pub mod node;
pub mod relay;
pub mod rpc;
pub mod snapshots;
pub mod view;
pub mod wire;

pub use crate::store::types::{
    Entry, LogId, NodeId, NodeInfo, Raft, Snapshot, SnapshotMeta, StorageError, StoredMembership,
    TypeConfig, Vote,
};
