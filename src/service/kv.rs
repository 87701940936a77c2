//! Secrets: read, write, delete, list, versions, and the ondemand encryption beside them.

use serde_json::Value;

use super::{refused, Linearized, Origin, Service, ServiceError, View};
use crate::secret::mount::Envelope;
use crate::secret::{Command, CommandResult, Metadata, MountRecord, Precondition, SecretPath};
pub use crate::store::state_machine::{Listed, PathVersions};

/// A secret's version as read: its value, decoded, and its metadata.
#[derive(Debug)]
pub struct SecretValue {
    pub data: Value,
    pub metadata: Metadata,
}

/// A page of a listing and how many paths matched in all.
#[derive(Debug)]
pub struct Listing {
    pub page: Vec<Listed>,
    pub total: usize,
}

/// What makes a write conditional: a check-and-set version (`0`: the path must have no
/// version) or an HTTP precondition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Condition {
    Cas(u64),
    Precondition(Precondition),
}

/// How a write of a secret ended.
#[derive(Debug)]
pub enum PutOutcome {
    Written(Metadata),
    /// `Condition::Cas` did not match the current version; nothing was written.
    CasMismatch {
        current: u64,
    },
    /// `Condition::Precondition` did not hold: the latest version and whether it is live.
    PreconditionFailed {
        current: u64,
        live: bool,
    },
    /// An ondemand mount covers the path (created after the writer looked): not stored.
    UnderMount {
        mount: String,
    },
}

/// How a delete of a secret's latest version ended.
#[derive(Debug)]
pub enum DeleteOutcome {
    Deleted(Metadata),
    /// No live version at the path.
    NotFound,
    PreconditionFailed {
        current: u64,
        live: bool,
    },
}

/// A change to listed versions of one path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VersionChange {
    /// Bring soft-deleted versions back.
    Undelete,
    /// Remove versions' values for good (their metadata stays).
    Destroy,
}

impl Service {
    /// A version of the secret at `path` (`None`: the latest), if it exists and is live.
    /// Two point lookups, nearly always from RocksDB's memtable or block cache: done inline.
    /// Handing them to the blocking pool cost more (a thread hand-off and two context
    /// switches per GET) than the lookups themselves (BENCHMARKS.md, profile of GETs).
    pub fn read_secret(
        &self,
        at: &Linearized,
        path: &SecretPath,
        version: Option<u64>,
    ) -> Result<Option<SecretValue>, ServiceError> {
        let stored = at
            .state()
            .get(path, version)
            .map_err(|e| ServiceError::Internal(format!("reading '{path}': {e}")))?;
        let Some(stored) = stored else {
            return Ok(None);
        };
        let plain = self.barrier.open_secret(path, &stored.sealed)?;
        let data = serde_json::from_slice(&plain).map_err(|e| {
            ServiceError::Internal(format!("stored value of '{path}' is not JSON: {e}"))
        })?;
        Ok(Some(SecretValue {
            data,
            metadata: stored.metadata,
        }))
    }

    /// The metadata view of `path`: its versions (never their values) and its cap.
    pub fn versions(
        &self,
        at: &Linearized,
        path: &SecretPath,
    ) -> Result<Option<PathVersions>, ServiceError> {
        Ok(at.state().versions(path)?)
    }

    /// The paths with a live version under `prefix` (segment-wise) for which `visible`
    /// holds, in order: `take` of them after skipping `skip`, and how many there are.
    /// Walks the subtree, so on the blocking pool.
    pub async fn list(
        &self,
        at: &Linearized,
        prefix: &str,
        skip: usize,
        take: usize,
        visible: impl Fn(&SecretPath) -> bool + Send + 'static,
    ) -> Result<Listing, ServiceError> {
        let (reader, p) = (at.state().clone(), prefix.to_string());
        let (page, total) = crate::store::blocking(move || reader.list(&p, skip, take, visible))
            .await
            .map_err(|e| ServiceError::Internal(format!("listing '{prefix}': {e}")))?;
        Ok(Listing { page, total })
    }

    /// The ondemand mount covering `path` (or at it), as `view` sees it.
    pub fn mount_covering(
        &self,
        view: &impl View,
        path: &SecretPath,
    ) -> Result<Option<(String, MountRecord)>, ServiceError> {
        Ok(view.state().mount_covering(path.as_str())?)
    }

    /// The ondemand mount a write to `path` lands under, as of the latest committed state,
    /// with the view it was read from: this node's own state first (no mount there: nothing
    /// to wait for, the state machine refuses a KV write that lands under a newer mount),
    /// then, if it names one, again after the read-index round, so an encryption uses a key
    /// version at least as new as every acknowledged rotation. `linearize`: run the
    /// read-index round even when this node's state names no mount (after the state machine
    /// said a mount covers the path).
    pub async fn mount_for_write(
        &self,
        path: &SecretPath,
        linearize: bool,
    ) -> Result<Option<(String, MountRecord, Linearized)>, ServiceError> {
        if !linearize && self.mount_covering(&self.local(), path)?.is_none() {
            return Ok(None);
        }
        let current = self.linearize().await?;
        Ok(self
            .mount_covering(&current, path)?
            .map(|(mount, rec)| (mount, rec, current)))
    }

    /// Encrypts `data` for `path` with key version `version` of the mount at `mount`
    /// (nothing is proposed or stored). The caller picked `version` from the mount's
    /// [`MountRecord::encryption_versions`] after the read-index round.
    pub fn encrypt(
        &self,
        mount: &str,
        path: &SecretPath,
        version: u32,
        data: &Value,
    ) -> Result<String, ServiceError> {
        let plain = serde_json::to_vec(data)
            .map_err(|e| ServiceError::Internal(format!("encoding data: {e}")))?;
        Ok(self
            .barrier
            .encrypt(Envelope::Ondemand, mount, path, version, &plain)?)
    }

    /// Decrypts a ciphertext made for `path` under the mount at `mount`.
    pub fn decrypt(
        &self,
        mount: &str,
        rec: &MountRecord,
        path: &SecretPath,
        ciphertext: &str,
    ) -> Result<Value, ServiceError> {
        let (plain, _) = self
            .barrier
            .decrypt(Envelope::Ondemand, mount, rec, path, ciphertext)?;
        serde_json::from_slice(&plain).map_err(|e| {
            ServiceError::Internal(format!("decrypted value for '{path}' is not JSON: {e}"))
        })
    }

    /// The same plaintext encrypted again under the mount's latest key version, without the
    /// plaintext leaving this function: the new ciphertext and its key version.
    pub fn rewrap(
        &self,
        mount: &str,
        rec: &MountRecord,
        path: &SecretPath,
        ciphertext: &str,
    ) -> Result<(String, u32), ServiceError> {
        let (plain, _) = self
            .barrier
            .decrypt(Envelope::Ondemand, mount, rec, path, ciphertext)?;
        let version = rec.latest_version;
        let fresh = self
            .barrier
            .encrypt(Envelope::Ondemand, mount, path, version, &plain)?;
        Ok((fresh, version))
    }

    /// Writes `data` as the next version of `path`, sealed with the path as associated data.
    pub async fn put_secret(
        &self,
        origin: Origin,
        path: &SecretPath,
        data: &Value,
        condition: Option<Condition>,
    ) -> Result<PutOutcome, ServiceError> {
        let plain = serde_json::to_vec(data)
            .map_err(|e| ServiceError::Internal(format!("encoding data: {e}")))?;
        let sealed = self.barrier.seal_secret(path, &plain)?;
        let path = path.clone();
        let command = match condition {
            Some(Condition::Precondition(precondition)) => Command::PutIf {
                path,
                sealed,
                precondition,
            },
            Some(Condition::Cas(cas)) => Command::Put {
                path,
                sealed,
                cas: Some(cas),
            },
            None => Command::Put {
                path,
                sealed,
                cas: None,
            },
        };
        match self.propose(origin, command).await? {
            CommandResult::Written(meta) => Ok(PutOutcome::Written(meta)),
            CommandResult::CasMismatch { current } => Ok(PutOutcome::CasMismatch { current }),
            CommandResult::PreconditionFailed { current, live } => {
                Ok(PutOutcome::PreconditionFailed { current, live })
            }
            CommandResult::UnderMount { mount } => Ok(PutOutcome::UnderMount { mount }),
            other => Err(refused("a put", other)),
        }
    }

    /// Soft-deletes the latest version of `path` (`precondition`: only if it holds).
    pub async fn delete_secret(
        &self,
        origin: Origin,
        path: &SecretPath,
        precondition: Option<Precondition>,
    ) -> Result<DeleteOutcome, ServiceError> {
        let path = path.clone();
        let command = match precondition {
            Some(precondition) => Command::DeleteIf { path, precondition },
            None => Command::Delete { path },
        };
        match self.propose(origin, command).await? {
            CommandResult::Deleted(meta) => Ok(DeleteOutcome::Deleted(meta)),
            CommandResult::NotFound => Ok(DeleteOutcome::NotFound),
            CommandResult::PreconditionFailed { current, live } => {
                Ok(DeleteOutcome::PreconditionFailed { current, live })
            }
            other => Err(refused("a delete", other)),
        }
    }

    /// Undeletes or destroys the listed versions of `path`: the versions changed (others
    /// asked for were skipped), `None` if the path has no versions.
    pub async fn change_versions(
        &self,
        origin: Origin,
        change: VersionChange,
        path: &SecretPath,
        versions: Vec<u64>,
    ) -> Result<Option<Vec<u64>>, ServiceError> {
        let path = path.clone();
        let command = match change {
            VersionChange::Undelete => Command::Undelete { path, versions },
            VersionChange::Destroy => Command::Destroy { path, versions },
        };
        match self.propose(origin, command).await? {
            CommandResult::VersionsChanged { versions } => Ok(Some(versions)),
            CommandResult::NotFound => Ok(None),
            other => Err(refused("a version change", other)),
        }
    }

    /// Caps how many versions `path` keeps: how many were pruned by it, `None` if the path
    /// has never been written.
    pub async fn set_max_versions(
        &self,
        origin: Origin,
        path: &SecretPath,
        max_versions: u64,
    ) -> Result<Option<u64>, ServiceError> {
        let command = Command::SetMaxVersions {
            path: path.clone(),
            max_versions,
        };
        match self.propose(origin, command).await? {
            CommandResult::MaxVersionsSet { pruned } => Ok(Some(pruned)),
            CommandResult::NotFound => Ok(None),
            other => Err(refused("setting max versions", other)),
        }
    }

    /// Removes `path` and all its versions for good; `false` if there was no such path.
    pub async fn delete_metadata(
        &self,
        origin: Origin,
        path: &SecretPath,
    ) -> Result<bool, ServiceError> {
        let command = Command::DeleteMetadata { path: path.clone() };
        match self.propose(origin, command).await? {
            CommandResult::MetadataDeleted => Ok(true),
            CommandResult::NotFound => Ok(false),
            other => Err(refused("deleting metadata", other)),
        }
    }
}
