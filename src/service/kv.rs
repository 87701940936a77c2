//! Secrets: read, write, delete, list, versions, custom metadata, and the ondemand
//! encryption beside them.
//!
//! Custom metadata ([`crate::secret::custom`]) is sealed here, with its own associated-data
//! domain, before it is proposed, and opened here after a read; its limits are checked here
//! (the state machine cannot see the map), on the whole map a write would store: the
//! replacement, or a patch once merged. A patch is a read (after the read-index round), a
//! merge and a write conditional on the generation read; when another writer got in between,
//! it starts over, at most [`CUSTOM_METADATA_ATTEMPTS`] times.

use serde_json::Value;

use super::{refused, Linearized, Origin, Service, ServiceError, View};
pub use crate::secret::custom::{CustomMetadata, CustomMetadataPatch};
use crate::secret::mount::Envelope;
use crate::secret::{
    Command, CommandResult, Metadata, MountRecord, Precondition, Sealed, SecretPath,
};
pub use crate::store::state_machine::{Listed, PathVersions};

/// How many times a PATCH of custom metadata reads, merges and writes before it gives up
/// because other writers kept changing the map in between.
pub const CUSTOM_METADATA_ATTEMPTS: u32 = 5;

/// A change to a path's metadata: its version cap, its custom metadata, or both (applied
/// together, all or nothing).
#[derive(Debug, Default)]
pub struct MetadataChange {
    pub max_versions: Option<u64>,
    pub custom: Option<CustomChange>,
}

/// What a metadata write does to the custom metadata.
#[derive(Debug)]
pub enum CustomChange {
    /// Store this map in place of the current one.
    Replace(CustomMetadata),
    /// Merge this patch into the current map (`None` removes a key).
    Patch(CustomMetadataPatch),
}

/// How a metadata write ended.
#[derive(Debug)]
pub enum MetadataOutcome {
    /// Applied: how many versions a new cap pruned, and the custom metadata as it now is
    /// when the write changed it.
    Set {
        pruned: u64,
        custom_metadata: Option<CustomMetadata>,
    },
    /// A patch of a path that has no metadata at all: nothing to patch.
    NotFound,
    /// The custom metadata the write would store breaks a limit: nothing was written.
    Invalid(String),
    /// Other writers changed the custom metadata between every read and write of a patch.
    Conflict { attempts: u32 },
    /// An ondemand mount covers the path: it keeps no metadata; nothing was written.
    UnderMount { mount: String },
}

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

    /// The custom metadata of `path` as `view` holds it (`None`: the path has none).
    pub fn custom_metadata(
        &self,
        view: &PathVersions,
        path: &SecretPath,
    ) -> Result<Option<CustomMetadata>, ServiceError> {
        let Some(record) = &view.custom else {
            return Ok(None);
        };
        self.open_custom_metadata(path, &record.sealed).map(Some)
    }

    /// The custom metadata of `path` as `at` sees it (for a read of its data).
    pub fn read_custom_metadata(
        &self,
        at: &Linearized,
        path: &SecretPath,
    ) -> Result<Option<CustomMetadata>, ServiceError> {
        match at.state().custom_metadata(path)? {
            Some(record) => self.open_custom_metadata(path, &record.sealed).map(Some),
            None => Ok(None),
        }
    }

    fn open_custom_metadata(
        &self,
        path: &SecretPath,
        sealed: &[u8],
    ) -> Result<CustomMetadata, ServiceError> {
        let plain = self.barrier.open_custom_metadata(path, sealed)?;
        crate::codec::decode(&plain).map_err(|e| {
            ServiceError::Internal(format!(
                "stored custom metadata of '{path}' is damaged: {e}"
            ))
        })
    }

    fn seal_custom_metadata(
        &self,
        path: &SecretPath,
        map: &CustomMetadata,
    ) -> Result<Sealed, ServiceError> {
        Ok(self
            .barrier
            .seal_custom_metadata(path, &crate::codec::encode(map))?)
    }

    /// Changes `path`'s metadata (see [`MetadataChange`]). A version cap alone is the
    /// command that fits a full disk (`SetMaxVersions`); with custom metadata it is one
    /// `SetMetadata`, unconditional for a replacement, conditional on the generation read
    /// for a patch (see the module doc). Metadata may be written for a path with no version;
    /// only a patch needs the path to have some metadata already.
    pub async fn write_metadata(
        &self,
        origin: Origin,
        path: &SecretPath,
        change: MetadataChange,
    ) -> Result<MetadataOutcome, ServiceError> {
        let MetadataChange {
            max_versions,
            custom,
        } = change;
        match custom {
            None => match max_versions {
                Some(max) => {
                    let pruned = self.set_max_versions(origin, path, max).await?;
                    Ok(MetadataOutcome::Set {
                        pruned: pruned.unwrap_or(0),
                        custom_metadata: None,
                    })
                }
                None => Ok(MetadataOutcome::Set {
                    pruned: 0,
                    custom_metadata: None,
                }),
            },
            Some(CustomChange::Replace(map)) => {
                if let Err(why) = crate::secret::custom::validate(&map) {
                    return Ok(MetadataOutcome::Invalid(why));
                }
                let outcome = self
                    .propose_metadata(origin, path, max_versions, map, None)
                    .await?;
                outcome.ok_or_else(|| {
                    ServiceError::Internal("an unconditional metadata write conflicted".into())
                })
            }
            Some(CustomChange::Patch(patch)) => {
                for attempt in 0..CUSTOM_METADATA_ATTEMPTS {
                    let at = self.linearize().await?;
                    let Some(view) = self.versions(&at, path)? else {
                        return Ok(MetadataOutcome::NotFound);
                    };
                    let generation = view.custom.as_ref().map_or(0, |r| r.generation);
                    let current = self.custom_metadata(&view, path)?.unwrap_or_default();
                    let merged = crate::secret::custom::merge(current, &patch);
                    if let Err(why) = crate::secret::custom::validate(&merged) {
                        return Ok(MetadataOutcome::Invalid(why));
                    }
                    let origin = match attempt {
                        0 => origin.clone(),
                        n => Origin {
                            id: origin.id.attempt(n),
                            caller: origin.caller.clone(),
                        },
                    };
                    if let Some(outcome) = self
                        .propose_metadata(origin, path, max_versions, merged, Some(generation))
                        .await?
                    {
                        return Ok(outcome);
                    }
                    tracing::debug!(%path, attempt, "custom metadata changed under a patch; again");
                }
                Ok(MetadataOutcome::Conflict {
                    attempts: CUSTOM_METADATA_ATTEMPTS,
                })
            }
        }
    }

    /// Proposes `SetMetadata` with `map` sealed; `None` when the generation did not match
    /// (nothing was written).
    async fn propose_metadata(
        &self,
        origin: Origin,
        path: &SecretPath,
        max_versions: Option<u64>,
        map: CustomMetadata,
        generation: Option<u64>,
    ) -> Result<Option<MetadataOutcome>, ServiceError> {
        let command = Command::SetMetadata {
            path: path.clone(),
            max_versions,
            custom_metadata: Some(self.seal_custom_metadata(path, &map)?),
            generation,
        };
        match self.propose(origin, command).await? {
            CommandResult::MetadataSet { pruned, .. } => Ok(Some(MetadataOutcome::Set {
                pruned,
                custom_metadata: Some(map),
            })),
            CommandResult::CustomMetadataConflict { .. } => Ok(None),
            CommandResult::UnderMount { mount } => Ok(Some(MetadataOutcome::UnderMount { mount })),
            other => Err(refused("setting metadata", other)),
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
