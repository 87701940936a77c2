//! Mounts, tokens, data keys, backups and restores: the operations of an admin.

use std::io::Write;
use std::path::Path;

use super::{refused, Linearized, Origin, Service, ServiceError, View};
use crate::secret::keyring::MacPurpose;
use crate::secret::login::Method;
use crate::secret::token::TokenRecord;
use crate::secret::{
    Caller, Command, CommandResult, MountKind, MountRecord, Op, SecretPath, StoredPairs,
};
use crate::store::backup::{self, BackupError, BackupHeader};

/// How often a rotation retries after losing a race with another rotation.
const ROTATE_ATTEMPTS: usize = 5;
/// Bytes of pairs per proposed restore chunk (well under the write batcher's entry size).
const CHUNK_BYTES: usize = 512 * 1024;

/// How a change to a mount ended.
#[derive(Debug)]
pub enum MountChange {
    /// The mount's record now.
    Changed(MountRecord),
    /// No mount at the path.
    NotFound,
    /// A key version out of range (configure, trim): the detail says why.
    Refused(String),
    /// Creating: the mount would nest in, contain or overlap something. Rotating: concurrent
    /// rotations kept winning, or the mount ran out of key versions. The detail says which.
    Conflict(String),
}

/// A token was created: its accessor (the token itself never leaves the caller).
#[derive(Debug)]
pub struct TokenIssued {
    pub accessor: String,
}

/// A restore that replaced the state.
#[derive(Debug)]
pub struct Restored {
    pub header: BackupHeader,
    /// Pairs the state now holds.
    pub pairs: u64,
}

/// Why a restore did not replace the state.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The file is damaged, truncated, edited or another cluster's: the client's doing.
    #[error("{0}")]
    Invalid(String),
    /// The cluster holds data and `force` was not given, or another restore ran at once.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Service(#[from] ServiceError),
}

impl From<BackupError> for RestoreError {
    fn from(e: BackupError) -> Self {
        match e {
            BackupError::Store(e) => RestoreError::Service(e.into()),
            other => RestoreError::Invalid(other.to_string()),
        }
    }
}

/// Sends what is written to it down a channel, chunk by chunk.
struct ChannelWriter(tokio::sync::mpsc::Sender<std::io::Result<Vec<u8>>>);

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Ok(buf.to_vec()))
            .map_err(|_| std::io::Error::other("the client went away"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Service {
    /// The mount at `path`, as `view` sees it.
    pub fn mount(
        &self,
        view: &impl View,
        path: &SecretPath,
    ) -> Result<Option<MountRecord>, ServiceError> {
        Ok(view.state().mount(path.as_str())?)
    }

    /// Every mount, by path.
    pub fn mounts(&self, at: &Linearized) -> Result<Vec<(String, MountRecord)>, ServiceError> {
        Ok(at.state().mounts()?)
    }

    /// Creates an ondemand mount at `path` with a fresh key (version 1).
    pub async fn create_mount(
        &self,
        origin: Origin,
        path: &SecretPath,
    ) -> Result<MountChange, ServiceError> {
        let wrapped = self.barrier.new_wrapped_mount_key(path.as_str(), 1)?;
        let command = Command::CreateMount {
            path: path.clone(),
            kind: MountKind::Ondemand,
            wrapped,
        };
        match self.propose(origin, command).await? {
            CommandResult::Mount(rec) => Ok(MountChange::Changed(rec)),
            CommandResult::MountConflict(why) => Ok(MountChange::Conflict(why)),
            other => Err(refused("creating a mount", other)),
        }
    }

    /// Removes the mount at `path` with its keys; `false` if there was none.
    pub async fn delete_mount(
        &self,
        origin: Origin,
        path: &SecretPath,
    ) -> Result<bool, ServiceError> {
        let command = Command::DeleteMount { path: path.clone() };
        match self.propose(origin, command).await? {
            CommandResult::MountDeleted => Ok(true),
            CommandResult::NotFound => Ok(false),
            other => Err(refused("deleting a mount", other)),
        }
    }

    /// Sets the oldest key versions the mount decrypts and encrypts with.
    pub async fn configure_mount(
        &self,
        origin: Origin,
        path: &SecretPath,
        min_decryption_version: Option<u32>,
        min_encryption_version: Option<u32>,
    ) -> Result<MountChange, ServiceError> {
        let command = Command::ConfigureMount {
            path: path.clone(),
            min_decryption_version,
            min_encryption_version,
        };
        let result = self.propose(origin, command).await?;
        mount_change("configuring a mount", result)
    }

    /// Deletes the mount's keys below `min_available_version`.
    pub async fn trim_mount(
        &self,
        origin: Origin,
        path: &SecretPath,
        min_available_version: u32,
    ) -> Result<MountChange, ServiceError> {
        let command = Command::TrimMount {
            path: path.clone(),
            min_available_version,
        };
        let result = self.propose(origin, command).await?;
        mount_change("trimming a mount", result)
    }

    /// Adds a key version to the mount and makes it the one encryptions use. The next
    /// version is guessed from this node's state; a stale guess loses the race in apply
    /// and is retried after the read-index round.
    pub async fn rotate_mount(
        &self,
        caller: Caller,
        path: &SecretPath,
    ) -> Result<MountChange, ServiceError> {
        for _ in 0..ROTATE_ATTEMPTS {
            let rec = match self.mount(&self.local(), path)? {
                Some(rec) => rec,
                None => match self.mount(&self.linearize().await?, path)? {
                    Some(rec) => rec,
                    None => return Ok(MountChange::NotFound),
                },
            };
            let Some(version) = rec.latest_version.checked_add(1) else {
                return Ok(MountChange::Conflict(format!(
                    "the mount '{path}' has run out of key versions"
                )));
            };
            let wrapped = self.barrier.new_wrapped_mount_key(path.as_str(), version)?;
            let command = Command::AddMountKey {
                path: path.clone(),
                version,
                wrapped,
            };
            match self.propose(Origin::fresh(caller.clone()), command).await? {
                CommandResult::KeyConflict { .. } => {
                    self.linearize().await?;
                }
                result => return mount_change("rotating a mount key", result),
            }
        }
        Ok(MountChange::Conflict(format!(
            "the key of mount '{path}' changed under {ROTATE_ATTEMPTS} concurrent rotations in a row; try again"
        )))
    }

    /// Whether the cluster's root token exists (bootstrap finished).
    pub fn bootstrapped(&self, at: &Linearized) -> Result<bool, ServiceError> {
        Ok(at.state().bootstrapped()?)
    }

    /// The current data key's id, as this node's keyring has it.
    pub fn current_key_id(&self) -> Result<Option<u32>, ServiceError> {
        Ok(self.barrier.current_key_id()?)
    }

    /// Makes a new data key current: its id, `None` if concurrent rotations kept winning.
    pub async fn rotate_data_key(&self, caller: Caller) -> Result<Option<u32>, ServiceError> {
        for _ in 0..ROTATE_ATTEMPTS {
            let id = self.barrier.current_key_id()?.unwrap_or(0) + 1;
            let wrapped = self.barrier.new_wrapped_key(id)?;
            let command = Command::AddDataKey { id, wrapped };
            match self.propose(Origin::fresh(caller.clone()), command).await? {
                CommandResult::KeyAdded { id } => return Ok(Some(id)),
                // Another rotation won the race; this node's view of the current key is
                // stale. Try again once it has applied the winner.
                CommandResult::KeyConflict { .. } => {
                    self.linearize().await?;
                }
                other => return Err(refused("a key rotation", other)),
            }
        }
        Ok(None)
    }

    /// The token record behind `accessor` and its revocation time, as this node has it.
    pub fn token(
        &self,
        accessor: &str,
    ) -> Result<Option<(TokenRecord, Option<u64>)>, ServiceError> {
        Ok(self.barrier.token(accessor)?)
    }

    /// Every token record and its revocation time.
    pub fn tokens(
        &self,
        _at: &Linearized,
    ) -> Result<Vec<(TokenRecord, Option<u64>)>, ServiceError> {
        Ok(self.barrier.tokens()?)
    }

    /// Stores a new token (sealed: only its hash and policy, never the token).
    pub async fn create_token(
        &self,
        caller: Caller,
        record: &TokenRecord,
    ) -> Result<TokenIssued, ServiceError> {
        let command = Command::CreateToken {
            accessor: record.accessor.clone(),
            sealed: self.barrier.seal_token(record)?,
            bootstrap: false,
        };
        match self.propose(Origin::fresh(caller), command).await? {
            CommandResult::TokenCreated => Ok(TokenIssued {
                accessor: record.accessor.clone(),
            }),
            other => Err(refused("creating a token", other)),
        }
    }

    /// Revokes the token behind `accessor`; `false` if there is no such token.
    pub async fn revoke_token(&self, caller: Caller, accessor: &str) -> Result<bool, ServiceError> {
        let command = Command::RevokeToken {
            accessor: accessor.to_string(),
        };
        match self.propose(Origin::fresh(caller), command).await? {
            CommandResult::TokenRevoked => Ok(true),
            CommandResult::NotFound => Ok(false),
            other => Err(refused("revoking a token", other)),
        }
    }

    /// Streams a backup of the whole state as `at` sees it (one RocksDB snapshot, taken on
    /// the blocking pool; values stay sealed), tagged under the master key. A failure after
    /// the first bytes ends the stream with an error.
    pub fn backup(
        &self,
        at: &Linearized,
        by: String,
    ) -> tokio::sync::mpsc::Receiver<std::io::Result<Vec<u8>>> {
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let reader = at.state().clone();
        let barrier = self.barrier.clone();
        let now = crate::time::now_ms();
        tokio::task::spawn_blocking(move || {
            let mut out = ChannelWriter(tx.clone());
            let sign = |data: &[u8]| barrier.mac(MacPurpose::Backup, data);
            match reader.backup(now, sign, &mut out) {
                Ok(h) => {
                    tracing::info!(by = %by, pairs = h.pairs, applied = h.applied_index, "backup taken")
                }
                Err(e) => {
                    tracing::warn!(error = %e, "backup failed");
                    let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
                }
            }
        });
        rx
    }

    /// What configuration a restore would replace, if the cluster holds any: the kinds
    /// that apply's own check (`secret::restore`, secrets and mounts) does not count.
    /// Checked here, after the read-index round, rather than in apply, so that a
    /// `RestoreBegin` is applied alike by every release: a configuration written between
    /// this check and the commit is replaced like the rest, as with any forced restore.
    async fn configuration_held(&self) -> Result<Option<&'static str>, ServiceError> {
        let at = self.linearize().await?;
        let state = at.state();
        let mut roles = 0;
        for method in Method::ALL {
            roles += state.roles(method)?.len();
        }
        let held = if !state.acl_policies()?.is_empty() {
            Some("ACL policies")
        } else if roles > 0 {
            Some("login roles")
        } else if state.jwt_config()?.is_some() {
            Some("the JWT login's keys")
        } else if !state.kv_mounts()?.is_empty() {
            Some("KV mounts")
        } else {
            None
        };
        Ok(held)
    }

    /// Replaces the whole state with the backup in `file`: checked whole first (its tag
    /// under this cluster's master key, checksum, length, that its keys unwrap), then
    /// through the log as `RestoreBegin`, chunks and `RestoreCommit`, so the state changes
    /// only at the commit, atomically, on every node. Without `force`, a cluster holding
    /// secrets or mounts refuses, at the start and again at the commit; one holding only
    /// configuration (ACL policies, login roles or keys, KV mounts) is refused here, before
    /// anything is proposed (see [`Self::configuration_held`]).
    pub async fn restore(
        &self,
        caller: Caller,
        file: &Path,
        force: bool,
    ) -> Result<Restored, RestoreError> {
        let barrier = self.barrier.clone();
        let checked = file.to_path_buf();
        let header = tokio::task::spawn_blocking(move || barrier.check_backup(&checked))
            .await
            .map_err(|e| ServiceError::Internal(format!("checking the backup: {e}")))??;
        if !force {
            if let Some(what) = self.configuration_held().await? {
                return Err(RestoreError::Refused(format!(
                    "the cluster already holds {what}; restoring would replace them (force it to)"
                )));
            }
        }
        let restore = u64::from_be_bytes(
            crate::secret::crypto::random_key()
                .map_err(|e| ServiceError::Internal(e.to_string()))?[..8]
                .try_into()
                .expect("8 bytes"),
        );
        let step = |command| {
            let room = self.room_for(&command);
            let op = Op::new(command, Some(caller.clone()));
            async move {
                room?;
                match self.node.write(op).await.map_err(ServiceError::from)? {
                    CommandResult::RestoreRefused(why) => Err(RestoreError::Refused(why)),
                    other => Ok::<_, RestoreError>(other),
                }
            }
        };
        let begin = Command::RestoreBegin {
            restore,
            pairs: header.pairs,
            force,
        };
        match step(begin).await? {
            CommandResult::RestoreStaged { .. } => {}
            other => return Err(refused("a restore step", other).into()),
        }
        let mut reader = backup::open(file)?;
        let (mut seq, mut chunk, mut bytes) = (0u64, Vec::new(), 0usize);
        loop {
            let next = reader.next_pair()?;
            let last = next.is_none();
            if let Some((k, v)) = next {
                bytes += k.len() + v.len();
                chunk.push((k, v));
            }
            if (bytes >= CHUNK_BYTES || last) && !chunk.is_empty() {
                let pairs = std::mem::take(&mut chunk);
                bytes = 0;
                match step(Command::RestoreChunk {
                    restore,
                    seq,
                    pairs: StoredPairs::new(pairs),
                })
                .await?
                {
                    CommandResult::RestoreStaged { .. } => seq += 1,
                    other => return Err(refused("a restore step", other).into()),
                }
            }
            if last {
                break;
            }
        }
        match step(Command::RestoreCommit { restore }).await? {
            CommandResult::Restored { pairs } => Ok(Restored { header, pairs }),
            other => Err(refused("a restore step", other).into()),
        }
    }
}

fn mount_change(what: &str, result: CommandResult) -> Result<MountChange, ServiceError> {
    match result {
        CommandResult::Mount(rec) => Ok(MountChange::Changed(rec)),
        CommandResult::NotFound => Ok(MountChange::NotFound),
        CommandResult::MountRefused(why) => Ok(MountChange::Refused(why)),
        other => Err(refused(what, other)),
    }
}
