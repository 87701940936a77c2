//! The secrets service: what every API dialect asks of the store, once.
//!
//! `/api/v1`, Vault's `/v1` and the dialects to come are translations of HTTP into calls on
//! [`Service`]: read a secret (after the read-index round, opened, decoded), write one (sealed,
//! proposed, its result typed), delete, list, change versions, encrypt and decrypt under an
//! ondemand mount (JSON documents for `/api/v1`, bytes for Vault's Transit), manage mounts,
//! tokens, keys, backups and restores, and log workloads in ([`login`]: AppRole, JWT). What a dialect owns is its wire shapes, its status
//! codes and its error bodies; what the store means is here.
//!
//! Invariants:
//! - Every read a client is answered from takes a [`Linearized`] view, which only
//!   [`Service::linearize`] (the read-index round) gives out; a read that may use this node's
//!   state as it is ([`Local`]) says so in its signature (see [`crate::raft::view`]).
//! - Values are sealed with their path as associated data before they are proposed and
//!   opened only after a read; plaintext never reaches the log or the disk.
//! - Each operation answers its own outcome type; a state-machine result an operation does
//!   not expect is mapped in one place ([`refused`]): a token refused where the write applied
//!   is [`ServiceError::Unauthorized`], a reused request id [`ServiceError::RequestIdReused`],
//!   a write overtaken by a restore [`ServiceError::Unavailable`], anything else a bug
//!   ([`ServiceError::Internal`]).
//! - The service never decides who may do what: the dialect checks the caller's scopes
//!   before it calls, and the state machine checks the token again where a write applies.
//! - While a voter's NOSPACE alarm is raised (`raft::disk`), a command that could add data is
//!   refused before it is proposed ([`ServiceError::InsufficientStorage`], nothing written);
//!   only those that remove or shrink data go on (`raft::disk::fits_a_full_disk`).

mod acl;
mod admin;
pub mod jwt;
mod kv;
mod kv_mount;
mod login;
mod transit;

use std::sync::Arc;

pub use acl::AclChange;
pub use admin::{MountChange, RestoreError, Restored};
pub use kv::{
    Condition, CustomChange, CustomMetadata, DeleteOutcome, Listing, MetadataChange,
    MetadataOutcome, PutOutcome, VersionChange,
};
pub use kv_mount::KvMountChange;
pub use login::{
    random_uuid, Issued, LoginOutcome, RoleChange, SecretIdOutcome, MAX_CREDENTIAL_BYTES,
};

use crate::barrier::{Barrier, BarrierError, OndemandError};
use crate::raft::node::{Node, NodeError};
pub use crate::raft::view::{Linearized, Local, View};
use crate::secret::{Caller, CommandResult, Op, RequestId};
use crate::store::StoreError;

/// Why a service call failed, for reasons that are not the operation's own outcome.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// No quorum, no leader, the keyring not ready yet: retry later (503).
    #[error("{0}")]
    Unavailable(String),
    /// The caller's token was revoked, expired or unknown where the write applied.
    #[error("{0}")]
    Unauthorized(String),
    /// The client's request id was used before, by this token, for a different request.
    #[error(
        "this X-Request-Id was already used by this token for a different request; nothing \
         was written (a retry must repeat the request exactly; a new request needs a new id)"
    )]
    RequestIdReused,
    /// The cluster refused a membership change (e.g. removing the last voter).
    #[error("{0}")]
    Rejected(String),
    /// A ciphertext that does not decrypt: the client's doing.
    #[error(transparent)]
    Ciphertext(OndemandError),
    /// A voter's disk is nearly full: the write was not proposed (507).
    #[error("{0}")]
    InsufficientStorage(String),
    /// A bug or a broken disk.
    #[error("{0}")]
    Internal(String),
}

impl From<NodeError> for ServiceError {
    fn from(e: NodeError) -> Self {
        match e {
            NodeError::Unavailable(m) | NodeError::Stopping(m) => ServiceError::Unavailable(m),
            NodeError::Rejected(m) => ServiceError::Rejected(m),
            NodeError::Internal(m) => ServiceError::Internal(m),
        }
    }
}

impl From<BarrierError> for ServiceError {
    fn from(e: BarrierError) -> Self {
        match e {
            BarrierError::NoKeyring => ServiceError::Unavailable(e.to_string()),
            other => ServiceError::Internal(other.to_string()),
        }
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        ServiceError::Internal(format!("reading the state: {e}"))
    }
}

impl From<OndemandError> for ServiceError {
    fn from(e: OndemandError) -> Self {
        match e {
            OndemandError::Barrier(b) => b.into(),
            other => ServiceError::Ciphertext(other),
        }
    }
}

/// The error for a state-machine result the operation `what` does not expect (see the
/// module doc): the one catch-all of the service.
fn refused(what: &str, result: CommandResult) -> ServiceError {
    match result {
        CommandResult::Unauthorized(why) => ServiceError::Unauthorized(why),
        CommandResult::RetryAfterRestore => ServiceError::Unavailable(
            "a restore replaced the state while this write was in flight; retry it".into(),
        ),
        CommandResult::RequestIdReused => ServiceError::RequestIdReused,
        other => ServiceError::Internal(format!("unexpected result of {what}: {other:?}")),
    }
}

/// Who asks for a write and under which request id: the state machine deduplicates by the
/// id and checks the caller's token where the write applies.
#[derive(Clone, Debug)]
pub struct Origin {
    pub id: RequestId,
    pub caller: Caller,
}

impl Origin {
    /// A write with a fresh random request id (no client-chosen id to deduplicate on).
    pub fn fresh(caller: Caller) -> Origin {
        Origin {
            id: RequestId::random(),
            caller,
        }
    }
}

/// The service: a node and the encryption barrier. Cheap to share (`Arc`s inside).
pub struct Service {
    node: Arc<Node>,
    barrier: Arc<Barrier>,
    max_value_bytes: usize,
}

impl Service {
    pub fn new(node: Arc<Node>, barrier: Arc<Barrier>, max_value_bytes: usize) -> Service {
        Service {
            node,
            barrier,
            max_value_bytes,
        }
    }

    /// The largest value (its JSON encoding) a secret may hold.
    pub fn max_value_bytes(&self) -> usize {
        self.max_value_bytes
    }

    /// The read-index round: a view that sees every write acknowledged before this call.
    pub async fn linearize(&self) -> Result<Linearized, ServiceError> {
        Ok(self.node.linearize().await?)
    }

    /// This node's state as it is (see [`crate::raft::view`]).
    pub fn local(&self) -> Local {
        self.node.local()
    }

    /// Proposes `command` as `origin` and returns the state machine's answer.
    async fn propose(
        &self,
        origin: Origin,
        command: crate::secret::Command,
    ) -> Result<CommandResult, ServiceError> {
        self.room_for(&command)?;
        let op = Op {
            id: origin.id,
            caller: Some(origin.caller),
            command,
        };
        Ok(self.node.write(op).await?)
    }

    /// Refuses `command` while a voter's NOSPACE alarm is raised, unless it fits a full disk.
    fn room_for(&self, command: &crate::secret::Command) -> Result<(), ServiceError> {
        match self.node.space_alarm() {
            Some((id, report)) if !crate::raft::disk::fits_a_full_disk(command) => {
                Err(ServiceError::InsufficientStorage(report.detail(id)))
            }
            _ => Ok(()),
        }
    }
}
