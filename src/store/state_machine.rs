//! The replicated state machine on RocksDB (openraft's `RaftStateMachine`), its snapshot
//! builder, and the read side the API uses.
//!
//! Invariants:
//! - `apply` writes the data changes, `last_applied` and the membership of a whole batch in
//!   one synced `WriteBatch`, before returning the results: state on disk is always exactly
//!   the log applied up to `last_applied`, and never reverts after a restart.
//! - The logic of each entry is [`crate::secret::machine::apply`], which is pure and
//!   deterministic; this file only moves bytes between it and RocksDB.
//! - A snapshot is built from one RocksDB snapshot (data and meta read from the same
//!   point-in-time view), so it is consistent while apply goes on concurrently.
//! - Installing a snapshot replaces the data and meta in one synced batch.

use std::io::Cursor;
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageIOError};
use rocksdb::{IteratorMode, WriteBatch};

use super::snapshot::{self, SnapshotData};
use super::types::{
    Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};
use super::{blocking, Db, Durability, StoreError, CF_SM_DATA, CF_SM_META};
use crate::codec;
use crate::secret::machine::{self, keys, Changes, SecretMeta, StateRead, VersionRecord};
use crate::secret::{CommandResult, Metadata, SecretPath};

const KEY_LAST_APPLIED: &[u8] = b"last_applied";
const KEY_MEMBERSHIP: &[u8] = b"membership";

/// The state machine handed to openraft.
pub struct StateMachine {
    db: Arc<Db>,
    /// Serializes snapshot file writes between builds and installs.
    snapshot_lock: Arc<std::sync::Mutex<()>>,
}

/// Reads the committed data directly from RocksDB. Callers must have done a read-index
/// round first (see `raft::node`); this type knows nothing about linearizability.
#[derive(Clone)]
pub struct Reader {
    db: Arc<Db>,
}

/// A view of `sm_data` for the pure apply logic.
struct DbView<'a>(&'a Db);

impl StateRead for DbView<'_> {
    type Error = StoreError;
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Self::Error> {
        self.0.get(CF_SM_DATA, key)
    }
}

fn decode<T: serde::de::DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
) -> Result<T, StoreError> {
    codec::decode(bytes).map_err(|source| StoreError::Decode { what, source })
}

impl StateMachine {
    pub fn new(db: Arc<Db>) -> Self {
        StateMachine {
            db,
            snapshot_lock: Arc::default(),
        }
    }

    pub fn reader(&self) -> Reader {
        Reader {
            db: self.db.clone(),
        }
    }

    fn applied_state_blocking(db: &Db) -> Result<(Option<LogId>, StoredMembership), StoreError> {
        let last = match db.get(CF_SM_META, KEY_LAST_APPLIED)? {
            Some(b) => decode("last applied log id", &b)?,
            None => None,
        };
        let membership = match db.get(CF_SM_META, KEY_MEMBERSHIP)? {
            Some(b) => decode("membership", &b)?,
            None => StoredMembership::default(),
        };
        Ok((last, membership))
    }

    fn apply_blocking(db: &Db, entries: Vec<Entry>) -> Result<Vec<CommandResult>, StoreError> {
        let view = DbView(db);
        let mut changes = Changes::default();
        let mut results = Vec::with_capacity(entries.len());
        let mut last_applied = None;
        let mut membership = None;
        for entry in entries {
            last_applied = Some(entry.log_id);
            let result = match entry.payload {
                EntryPayload::Blank => CommandResult::NoOp,
                EntryPayload::Normal(request) => machine::apply(&view, &mut changes, &request)
                    .map_err(|e| StoreError::Apply(format!("entry {}: {e}", entry.log_id)))?,
                EntryPayload::Membership(m) => {
                    membership = Some(StoredMembership::new(Some(entry.log_id), m));
                    CommandResult::NoOp
                }
            };
            results.push(result);
        }
        let mut batch = WriteBatch::default();
        let data = db.cf(CF_SM_DATA);
        for (key, value) in changes.writes {
            match value {
                Some(v) => batch.put_cf(data, key, v),
                None => batch.delete_cf(data, key),
            }
        }
        let meta = db.cf(CF_SM_META);
        if let Some(last) = last_applied {
            batch.put_cf(meta, KEY_LAST_APPLIED, codec::encode(&Some(last)));
        }
        if let Some(m) = membership {
            batch.put_cf(meta, KEY_MEMBERSHIP, codec::encode(&m));
        }
        db.write(batch, Durability::Synced)?;
        Ok(results)
    }

    fn install_blocking(db: &Db, meta: &SnapshotMeta, data: &[u8]) -> Result<(), StoreError> {
        let payload: SnapshotData = decode("snapshot data", data)?;
        let mut batch = WriteBatch::default();
        let cf = db.cf(CF_SM_DATA);
        // Every key starts with an ASCII tag byte, so this range covers them all.
        batch.delete_range_cf(cf, [0u8].as_slice(), [0xffu8].as_slice());
        for (k, v) in payload.pairs {
            batch.put_cf(cf, k, v);
        }
        let m = db.cf(CF_SM_META);
        batch.put_cf(m, KEY_LAST_APPLIED, codec::encode(&meta.last_log_id));
        batch.put_cf(m, KEY_MEMBERSHIP, codec::encode(&meta.last_membership));
        db.write(batch, Durability::Synced)?;
        Ok(())
    }
}

/// Builds snapshots from a RocksDB point-in-time view.
pub struct SnapshotBuilder {
    db: Arc<Db>,
    snapshot_lock: Arc<std::sync::Mutex<()>>,
}

impl SnapshotBuilder {
    fn build_blocking(&self) -> Result<(SnapshotMeta, Vec<u8>), StoreError> {
        let db = &self.db;
        let snap = db.snapshot();
        let meta_cf = db.cf(CF_SM_META);
        let last_applied: Option<LogId> = match snap.get_cf(meta_cf, KEY_LAST_APPLIED)? {
            Some(b) => decode("last applied log id", &b)?,
            None => None,
        };
        let membership: StoredMembership = match snap.get_cf(meta_cf, KEY_MEMBERSHIP)? {
            Some(b) => decode("membership", &b)?,
            None => StoredMembership::default(),
        };
        let mut pairs = Vec::new();
        for item in snap.iterator_cf(db.cf(CF_SM_DATA), IteratorMode::Start) {
            let (k, v) = item?;
            pairs.push((k.to_vec(), v.to_vec()));
        }
        let data = codec::encode(&SnapshotData { pairs });
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let snapshot_id = match last_applied {
            Some(l) => format!("{}-{}-{nonce}", l.leader_id.term, l.index),
            None => format!("0-0-{nonce}"),
        };
        let meta = SnapshotMeta {
            last_log_id: last_applied,
            last_membership: membership,
            snapshot_id,
        };
        let _guard = self.snapshot_lock.lock().unwrap_or_else(|p| p.into_inner());
        snapshot::save(&db.snapshot_dir(), &meta, &data)?;
        Ok((meta, data))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let this = SnapshotBuilder {
            db: self.db.clone(),
            snapshot_lock: self.snapshot_lock.clone(),
        };
        let (meta, data) = blocking(move || this.build_blocking())
            .await
            .map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        tracing::info!(snapshot = %meta.snapshot_id, bytes = data.len(), "built snapshot");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let db = self.db.clone();
        blocking(move || Self::applied_state_blocking(&db))
            .await
            .map_err(|e| StorageIOError::read_state_machine(&e).into())
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResult>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let db = self.db.clone();
        blocking(move || Self::apply_blocking(&db, entries))
            .await
            .map_err(|e| StorageIOError::write_state_machine(&e).into())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            db: self.db.clone(),
            snapshot_lock: self.snapshot_lock.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let db = self.db.clone();
        let lock = self.snapshot_lock.clone();
        let meta2 = meta.clone();
        let data = snapshot.into_inner();
        blocking(move || {
            Self::install_blocking(&db, &meta2, &data)?;
            let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
            snapshot::save(&db.snapshot_dir(), &meta2, &data)?;
            Ok(())
        })
        .await
        .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        tracing::info!(snapshot = %meta.snapshot_id, "installed snapshot");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let dir = self.db.snapshot_dir();
        let loaded = blocking(move || snapshot::load(&dir))
            .await
            .map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        Ok(loaded.map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}

/// One entry of a listing.
#[derive(Debug, Clone)]
pub struct Listed {
    pub path: String,
    pub metadata: Metadata,
}

/// A token record as stored: sealed, with its revocation time if revoked.
#[derive(Debug, Clone)]
pub struct StoredToken {
    pub accessor: String,
    pub sealed: Vec<u8>,
    pub revoked_at_ms: Option<u64>,
}

/// A version of a secret as stored: sealed bytes plus metadata.
#[derive(Debug, Clone)]
pub struct Stored {
    pub sealed: Vec<u8>,
    pub metadata: Metadata,
}

impl Reader {
    fn meta(&self, path: &SecretPath) -> Result<Option<SecretMeta>, StoreError> {
        match self.db.get(CF_SM_DATA, &keys::meta(path))? {
            Some(b) => Ok(Some(decode("secret metadata", &b)?)),
            None => Ok(None),
        }
    }

    /// The given version (default: latest) unless absent or deleted.
    pub fn get(
        &self,
        path: &SecretPath,
        version: Option<u64>,
    ) -> Result<Option<Stored>, StoreError> {
        let Some(meta) = self.meta(path)? else {
            return Ok(None);
        };
        let version = version.unwrap_or(meta.current_version);
        let Some(bytes) = self.db.get(CF_SM_DATA, &keys::version(path, version))? else {
            return Ok(None);
        };
        let record: VersionRecord = decode("secret version", &bytes)?;
        if record.deleted_at_ms.is_some() {
            return Ok(None);
        }
        let metadata = record.metadata(&meta, version);
        Ok(Some(Stored {
            sealed: record.sealed,
            metadata,
        }))
    }

    /// Paths under `prefix` in order, with the latest version's metadata; `skip` and `take`
    /// page through them. Returns the page and the total count.
    pub fn list(
        &self,
        prefix: &str,
        skip: usize,
        take: usize,
        visible: impl Fn(&SecretPath) -> bool,
    ) -> Result<(Vec<Listed>, usize), StoreError> {
        let mut start = vec![keys::META];
        start.extend_from_slice(prefix.as_bytes());
        let it = self.db.iter(
            CF_SM_DATA,
            IteratorMode::From(&start, rocksdb::Direction::Forward),
        );
        let mut page = Vec::new();
        let mut total = 0;
        for item in it {
            let (k, v) = item?;
            if !k.starts_with(&start) {
                break;
            }
            let path = String::from_utf8_lossy(&k[1..]).into_owned();
            // Stored paths were validated on the way in; one that fails now is skipped.
            let Ok(p) = SecretPath::parse_decoded(&path) else {
                continue;
            };
            if !p.has_prefix(prefix) || !visible(&p) {
                continue;
            }
            total += 1;
            if total > skip && page.len() < take {
                let meta: SecretMeta = decode("secret metadata", &v)?;
                let deleted_at_ms = match self
                    .db
                    .get(CF_SM_DATA, &keys::version(&p, meta.current_version))?
                {
                    Some(b) => decode::<VersionRecord>("secret version", &b)?.deleted_at_ms,
                    None => None,
                };
                page.push(Listed {
                    path,
                    metadata: Metadata {
                        version: meta.current_version,
                        created_at_ms: meta.created_at_ms,
                        updated_at_ms: meta.updated_at_ms,
                        deleted_at_ms,
                    },
                });
            }
        }
        Ok((page, total))
    }

    fn raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.db.get(CF_SM_DATA, key)
    }

    /// The id of the data key that seals new values, once the keyring exists.
    pub fn current_key_id(&self) -> Result<Option<u32>, StoreError> {
        Ok(self
            .raw(keys::CURRENT_KEY)?
            .and_then(|b| <[u8; 4]>::try_from(b.as_slice()).ok())
            .map(u32::from_be_bytes))
    }

    /// Whether the cluster's root token was created.
    pub fn bootstrapped(&self) -> Result<bool, StoreError> {
        Ok(self.raw(keys::BOOTSTRAPPED)?.is_some())
    }

    /// Data key `id`, wrapped under the master key.
    pub fn wrapped_key(&self, id: u32) -> Result<Option<Vec<u8>>, StoreError> {
        self.raw(&keys::data_key(id))
    }

    /// A token's sealed record and, if revoked, when.
    pub fn token(&self, accessor: &str) -> Result<Option<StoredToken>, StoreError> {
        let Some(sealed) = self.raw(&keys::token(accessor))? else {
            return Ok(None);
        };
        let revoked_at_ms = self
            .raw(&keys::revoked(accessor))?
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
            .map(u64::from_be_bytes);
        Ok(Some(StoredToken {
            accessor: accessor.to_string(),
            sealed,
            revoked_at_ms,
        }))
    }

    /// Every token, in accessor order.
    pub fn tokens(&self) -> Result<Vec<StoredToken>, StoreError> {
        let start = [keys::TOKEN];
        let it = self.db.iter(
            CF_SM_DATA,
            IteratorMode::From(&start, rocksdb::Direction::Forward),
        );
        let mut out = Vec::new();
        for item in it {
            let (k, _) = item?;
            if k.first() != Some(&keys::TOKEN) {
                break;
            }
            if let Some(t) = self.token(&String::from_utf8_lossy(&k[1..]))? {
                out.push(t);
            }
        }
        Ok(out)
    }

    /// A digest of all state-machine data, used to check that replicas converged.
    /// Read from one RocksDB snapshot so it matches the returned applied id.
    pub fn digest(&self) -> Result<(Option<LogId>, String), StoreError> {
        let snap = self.db.snapshot();
        let last: Option<LogId> = match snap.get_cf(self.db.cf(CF_SM_META), KEY_LAST_APPLIED)? {
            Some(b) => decode("last applied log id", &b)?,
            None => None,
        };
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        for item in snap.iterator_cf(self.db.cf(CF_SM_DATA), IteratorMode::Start) {
            let (k, v) = item?;
            ctx.update(&(k.len() as u64).to_be_bytes());
            ctx.update(&k);
            ctx.update(&(v.len() as u64).to_be_bytes());
            ctx.update(&v);
        }
        let hex: String = ctx
            .finish()
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok((last, hex))
    }
}
