//! The replicated state machine on RocksDB (openraft's `RaftStateMachine`), its snapshots,
//! and the read side the API uses.
//!
//! Invariants:
//! - `apply` writes the data changes, `last_applied` and the membership of a whole batch of
//!   entries in one `WriteBatch`: state on disk is always exactly the log applied up to
//!   `last_applied`. The batch is *not* fsync'd: the log entries it applies are already
//!   durable on a majority, the WAL write reaches the OS at once (a process crash loses
//!   nothing), and after a machine crash openraft re-applies from the durable
//!   `last_applied` (see [`StateMachine::open`] for the snapshot half of that argument).
//!   The next synced write of any kind (a log append) makes it durable too: one WAL orders
//!   every column family.
//! - The logic of each entry is [`crate::secret::machine::apply`], which is pure and
//!   deterministic; this file only moves bytes between it and RocksDB.
//! - A snapshot is streamed from one RocksDB snapshot (data and meta from the same
//!   point-in-time view) into a file, so it is consistent while apply goes on and never
//!   held in memory. It is fsync'd before it becomes current.
//! - Installing a snapshot is crash-safe and never visible half-done: the snapshot file is
//!   made durable first, an `installing` marker is written (synced), the data is replaced in
//!   bounded batches while readers are held off, and the last batch sets `last_applied`,
//!   the membership and clears the marker (synced). [`StateMachine::open`] finishes an
//!   install a crash interrupted, and installs a snapshot newer than the applied state.
//! - A restore's commit is done the same way, so that it never holds a backup in memory:
//!   the entry's batch (with `last_applied`) and a `restoring` marker are written synced,
//!   then, with readers held off, the data is deleted and the staged pairs are copied into
//!   place in bounded batches; the last batch empties the staging area and clears the
//!   marker. Until then the staging area is intact, so [`StateMachine::open`] simply runs
//!   the copy again after a crash.
//! - Readers hold the gate only while they read or take a RocksDB snapshot, never while
//!   they stream one out (a backup download, a snapshot build).

use std::sync::{Arc, RwLock};

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageIOError};
use rocksdb::{IteratorMode, WriteBatch};

use super::snapshot::{self, SnapshotReader, SnapshotWriter};
use super::types::{
    Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};
use super::{blocking, Db, Durability, StoreError, CF_SM_DATA, CF_SM_META};
use crate::codec;
use crate::metrics as metric;
use crate::secret::acl::{self, StoredAclPolicy};
use crate::secret::custom::CustomMetadataRecord;
use crate::secret::kv_mount::StoredKvMount;
use crate::secret::login::{self, Lease, Method, SecretId, StoredJwtConfig, StoredRole};
use crate::secret::machine::{self, keys, Changes, SecretMeta, StateRead, VersionRecord};
use crate::secret::mount::ancestors_and_self;
use crate::secret::versions::{PathSettings, DEFAULT_MAX_VERSIONS};
use crate::secret::{CommandResult, Metadata, MountRecord, Sealed, SecretPath};

const KEY_LAST_APPLIED: &[u8] = b"last_applied";
const KEY_MEMBERSHIP: &[u8] = b"membership";
/// Present while a snapshot install is in progress: the log id being installed.
const KEY_INSTALLING: &[u8] = b"installing";
/// Present while a restore's commit moves the staged pairs into place (see
/// [`StateMachine::finish_restore`]).
const KEY_RESTORING: &[u8] = b"restoring";
/// Bytes of pairs per write batch during an install.
const INSTALL_BATCH_BYTES: usize = 4 << 20;

/// The state machine handed to openraft.
pub struct StateMachine {
    db: Arc<Db>,
    /// Held for writing while a snapshot install replaces the data, so that no reader sees
    /// a half-installed state; readers take it for reading.
    gate: Arc<RwLock<()>>,
}

/// Reads the committed data directly from RocksDB. Callers must have done a read-index
/// round first (see `raft::node`); this type knows nothing about linearizability.
#[derive(Clone)]
pub struct Reader {
    db: Arc<Db>,
    gate: Arc<RwLock<()>>,
}

/// A view of `sm_data` for the pure apply logic.
struct DbView<'a>(&'a Db);

impl StateRead for DbView<'_> {
    type Error = StoreError;
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Self::Error> {
        self.0.get(CF_SM_DATA, key)
    }

    fn next_key(&self, from: &[u8]) -> Result<Option<Vec<u8>>, Self::Error> {
        let mode = IteratorMode::From(from, rocksdb::Direction::Forward);
        match self.0.iter(CF_SM_DATA, mode).next() {
            Some(item) => Ok(Some(item?.0.to_vec())),
            None => Ok(None),
        }
    }
}

fn decode<T: serde::de::DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
) -> Result<T, StoreError> {
    codec::decode(bytes).map_err(|source| StoreError::Decode { what, source })
}

/// A login role, in either of its layouts.
fn decode_role(bytes: &[u8]) -> Result<StoredRole, StoreError> {
    StoredRole::decode(bytes).map_err(|source| StoreError::Decode {
        what: "login role",
        source,
    })
}

impl StateMachine {
    /// Opens the state machine and brings it up to its snapshot: finishes an install that a
    /// crash interrupted, secures a completely received snapshot, and installs the current
    /// snapshot if it is newer than the applied state (after a machine crash the un-synced
    /// applies since the last synced write may be gone; the snapshot and the log are not).
    /// Run it before openraft starts.
    pub fn open(db: Arc<Db>) -> Result<StateMachine, StoreError> {
        let sm = StateMachine {
            db,
            gate: Arc::default(),
        };
        sm.recover()?;
        Ok(sm)
    }

    /// The state machine over a database opened read-only (no recovery: nothing is written).
    pub fn read_only(db: Arc<Db>) -> StateMachine {
        StateMachine {
            db,
            gate: Arc::default(),
        }
    }

    fn recover(&self) -> Result<(), StoreError> {
        let dir = self.db.snapshot_dir();
        {
            let _lock = self.db.snapshot_lock();
            snapshot::secure_incoming(&dir, None)?;
            let _ = std::fs::remove_file(snapshot::building_path(&dir));
        }
        if self.db.get(CF_SM_META, KEY_RESTORING)?.is_some() {
            tracing::info!("finishing a restore that was interrupted while it committed");
            Self::finish_restore(&self.db)?;
        }
        let interrupted = self.db.get(CF_SM_META, KEY_INSTALLING)?.is_some();
        let (applied, _) = Self::applied_state_blocking(&self.db)?;
        let current = snapshot::current_path(&dir);
        if let Some(meta) = snapshot::read_meta(&current)? {
            if interrupted || meta.last_log_id > applied {
                tracing::info!(
                    snapshot = %meta.snapshot_id,
                    interrupted,
                    "restoring the state machine from the snapshot on disk"
                );
                self.install_blocking(&meta)?;
            }
        } else if interrupted {
            return Err(StoreError::Apply(
                "a snapshot install was interrupted and its snapshot file is gone".into(),
            ));
        }
        Ok(())
    }

    pub fn reader(&self) -> Reader {
        Reader {
            db: self.db.clone(),
            gate: self.gate.clone(),
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

    fn apply_blocking(
        db: &Db,
        gate: &RwLock<()>,
        entries: Vec<Entry>,
    ) -> Result<Vec<Vec<CommandResult>>, StoreError> {
        metrics::histogram!(metric::APPLY_ENTRIES).record(entries.len() as f64);
        let view = DbView(db);
        let mut changes = Changes::default();
        let mut results = Vec::with_capacity(entries.len());
        let mut last_applied = None;
        let mut membership = None;
        for entry in entries {
            last_applied = Some(entry.log_id);
            let result = match entry.payload {
                EntryPayload::Blank => Vec::new(),
                EntryPayload::Normal(request) => machine::apply(&view, &mut changes, &request)
                    .map_err(|e| StoreError::Apply(format!("entry {}: {e}", entry.log_id)))?,
                EntryPayload::Membership(m) => {
                    membership = Some(StoredMembership::new(Some(entry.log_id), m));
                    Vec::new()
                }
            };
            results.push(result);
        }
        let plan = changes.into_plan();
        // A restore's commit changes all the data: no reader may see it half done.
        let _gate = plan
            .replace_data_with_staging
            .then(|| gate.write().unwrap_or_else(|p| p.into_inner()));
        let mut batch = WriteBatch::default();
        let data = db.cf(CF_SM_DATA);
        for (start, end) in plan.delete_ranges {
            batch.delete_range_cf(data, start, end);
        }
        for (key, value) in plan.writes {
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
        if plan.replace_data_with_staging {
            // Durable with the entry's other effects, so that a crash from here on resumes
            // the swap at the next start instead of replaying the entry.
            batch.put_cf(meta, KEY_RESTORING, []);
            db.write(batch, Durability::Synced)?;
            Self::finish_restore(db)?;
        } else {
            db.write(batch, Durability::Buffered)?;
        }
        Ok(results)
    }

    /// Moves a committed restore's staged pairs into place: deletes every data key, copies
    /// each `Z<key>` to `<key>` in bounded batches, then — in one synced write — empties the
    /// staging area and clears [`KEY_RESTORING`]. Memory stays bounded whatever the
    /// backup's size. Until that last write the staging area is intact, so running this
    /// again after a crash (see [`StateMachine::recover`]) ends in the same state.
    /// Callers hold the gate for writing (or run before any reader exists).
    fn finish_restore(db: &Db) -> Result<(), StoreError> {
        let data = db.cf(CF_SM_DATA);
        let mut batch = WriteBatch::default();
        for (start, end) in machine::data_ranges() {
            batch.delete_range_cf(data, start, end);
        }
        db.write(std::mem::take(&mut batch), Durability::Buffered)?;
        let start = [keys::STAGING];
        let mut bytes = 0;
        for item in db.iter(
            CF_SM_DATA,
            IteratorMode::From(&start, rocksdb::Direction::Forward),
        ) {
            let (k, v) = item?;
            if k.first() != Some(&keys::STAGING) {
                break;
            }
            bytes += k.len() + v.len();
            batch.put_cf(data, &k[1..], v);
            if bytes >= INSTALL_BATCH_BYTES {
                db.write(std::mem::take(&mut batch), Durability::Buffered)?;
                bytes = 0;
            }
        }
        batch.delete_range_cf(
            data,
            [keys::STAGING].as_slice(),
            [keys::STAGING + 1].as_slice(),
        );
        batch.delete_cf(db.cf(CF_SM_META), KEY_RESTORING);
        db.write(batch, Durability::Synced)
    }

    /// Replaces the state with the current snapshot file (which must match `meta`).
    fn install_blocking(&self, meta: &SnapshotMeta) -> Result<(), StoreError> {
        let began = std::time::Instant::now();
        let db = &self.db;
        let path = snapshot::current_path(&db.snapshot_dir());
        // Check the whole file before touching the state: a bad file changes nothing.
        let found = snapshot::verify(&path)?;
        if found.last_log_id != meta.last_log_id {
            return Err(StoreError::Apply(format!(
                "snapshot file holds {:?}, expected {:?}",
                found.last_log_id, meta.last_log_id
            )));
        }
        let _gate = self.gate.write().unwrap_or_else(|p| p.into_inner());
        let (data, m) = (db.cf(CF_SM_DATA), db.cf(CF_SM_META));
        let mut batch = WriteBatch::default();
        batch.put_cf(m, KEY_INSTALLING, codec::encode(&meta.last_log_id));
        // Every key starts with an ASCII tag byte, so this range covers them all.
        batch.delete_range_cf(data, [0u8].as_slice(), [0xffu8].as_slice());
        db.write(batch, Durability::Synced)?;
        let mut reader = SnapshotReader::open(&path)?;
        let mut batch = WriteBatch::default();
        let mut bytes = 0;
        while let Some((k, v)) = reader.next_pair()? {
            bytes += k.len() + v.len();
            batch.put_cf(data, k, v);
            if bytes >= INSTALL_BATCH_BYTES {
                db.write(std::mem::take(&mut batch), Durability::Buffered)?;
                bytes = 0;
            }
        }
        batch.put_cf(m, KEY_LAST_APPLIED, codec::encode(&meta.last_log_id));
        batch.put_cf(m, KEY_MEMBERSHIP, codec::encode(&meta.last_membership));
        batch.delete_cf(m, KEY_INSTALLING);
        db.write(batch, Durability::Synced)?;
        metrics::histogram!(metric::SNAPSHOT_INSTALL_DURATION)
            .record(began.elapsed().as_secs_f64());
        Ok(())
    }
}

/// Builds snapshots from a RocksDB point-in-time view, streaming them to a file.
pub struct SnapshotBuilder {
    db: Arc<Db>,
    gate: Arc<RwLock<()>>,
}

impl SnapshotBuilder {
    fn build_blocking(&self) -> Result<(SnapshotMeta, std::fs::File), StoreError> {
        let began = std::time::Instant::now();
        let db = &self.db;
        // The gate keeps an install or a restore's commit from being seen half done; the
        // RocksDB snapshot then stays consistent after it is released.
        let snap = {
            let _hold = self.gate.read().unwrap_or_else(|p| p.into_inner());
            db.snapshot()
        };
        let meta_cf = db.cf(CF_SM_META);
        let last_applied: Option<LogId> = match snap.get_cf(meta_cf, KEY_LAST_APPLIED)? {
            Some(b) => decode("last applied log id", &b)?,
            None => None,
        };
        let membership: StoredMembership = match snap.get_cf(meta_cf, KEY_MEMBERSHIP)? {
            Some(b) => decode("membership", &b)?,
            None => StoredMembership::default(),
        };
        let nonce = crate::time::now_ms();
        let snapshot_id = match last_applied {
            Some(l) => format!("{}-{}-{nonce}", l.leader_id.term, l.index),
            None => format!("0-0-{nonce}"),
        };
        let meta = SnapshotMeta {
            last_log_id: last_applied,
            last_membership: membership,
            snapshot_id,
        };
        let dir = db.snapshot_dir();
        let building = snapshot::building_path(&dir);
        let mut out = SnapshotWriter::create(&building, &meta)?;
        for item in snap.iterator_cf(db.cf(CF_SM_DATA), IteratorMode::Start) {
            let (k, v) = item?;
            out.pair(&k, &v)?;
        }
        out.finish()?;
        // Open before the rename: the handle stays valid whether or not it becomes current.
        let file = std::fs::File::open(&building)
            .map_err(|e| StoreError::io("opening snapshot", &building, e))?;
        let _lock = db.snapshot_lock();
        snapshot::promote(&dir, &building, &meta)?;
        metrics::histogram!(metric::SNAPSHOT_BUILD_DURATION).record(began.elapsed().as_secs_f64());
        Ok((meta, file))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let this = SnapshotBuilder {
            db: self.db.clone(),
            gate: self.gate.clone(),
        };
        let (meta, file) = blocking(move || this.build_blocking())
            .await
            .map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
        metrics::gauge!(metric::SNAPSHOT_BYTES).set(bytes as f64);
        tracing::info!(snapshot = %meta.snapshot_id, bytes, "built snapshot");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(tokio::fs::File::from_std(file)),
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

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Vec<CommandResult>>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let (db, gate) = (self.db.clone(), self.gate.clone());
        blocking(move || {
            let began = std::time::Instant::now();
            let results = Self::apply_blocking(&db, &gate, entries);
            metrics::histogram!(metric::APPLY_DURATION).record(began.elapsed().as_secs_f64());
            results
        })
        .await
        .map_err(|e| StorageIOError::write_state_machine(&e).into())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            db: self.db.clone(),
            gate: self.gate.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>, StorageError> {
        let path = snapshot::incoming_path(&self.db.snapshot_dir());
        let file = blocking(move || {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| StoreError::io("creating snapshot", &path, e))
        })
        .await
        .map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        Ok(Box::new(tokio::fs::File::from_std(file)))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        mut snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError> {
        use std::os::unix::fs::MetadataExt;
        use tokio::io::{AsyncSeekExt, AsyncWriteExt};
        let err = |e: &StoreError| StorageIOError::write_snapshot(Some(meta.signature()), e);
        let io = |what, e| err(&StoreError::io(what, "snapshot", e));
        snapshot
            .flush()
            .await
            .map_err(|e| io("flushing snapshot", e))?;
        // Normally the handle is the `incoming.snap` that `begin_receiving_snapshot` gave
        // out; any other (e.g. a snapshot built by another state machine) is copied there.
        let incoming = snapshot::incoming_path(&self.db.snapshot_dir());
        let handle = snapshot
            .metadata()
            .await
            .map_err(|e| io("inspecting snapshot", e))?;
        let ours = std::fs::metadata(&incoming)
            .is_ok_and(|m| m.dev() == handle.dev() && m.ino() == handle.ino());
        if !ours {
            snapshot
                .seek(std::io::SeekFrom::Start(0))
                .await
                .map_err(|e| io("reading snapshot", e))?;
            let mut copy = self.begin_receiving_snapshot().await?;
            tokio::io::copy(&mut *snapshot, &mut *copy)
                .await
                .map_err(|e| io("copying snapshot", e))?;
            copy.flush().await.map_err(|e| io("flushing snapshot", e))?;
        }
        drop(snapshot);
        let this = StateMachine {
            db: self.db.clone(),
            gate: self.gate.clone(),
        };
        let want = meta.clone();
        blocking(move || {
            let dir = this.db.snapshot_dir();
            {
                let _lock = this.db.snapshot_lock();
                snapshot::secure_incoming(&dir, None)?;
            }
            // The log store may have secured it already (before a purge); either way the
            // current snapshot must now be the one openraft asked to install.
            this.install_blocking(&want)
        })
        .await
        .map_err(|e| err(&e))?;
        tracing::info!(snapshot = %meta.snapshot_id, "installed snapshot");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let path = snapshot::current_path(&self.db.snapshot_dir());
        let loaded = blocking(move || {
            let Some(meta) = snapshot::read_meta(&path)? else {
                return Ok(None);
            };
            let file = std::fs::File::open(&path)
                .map_err(|e| StoreError::io("opening snapshot", &path, e))?;
            Ok(Some((meta, file)))
        })
        .await
        .map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        Ok(loaded.map(|(meta, file)| Snapshot {
            meta,
            snapshot: Box::new(tokio::fs::File::from_std(file)),
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
    pub sealed: Sealed,
    pub revoked_at_ms: Option<u64>,
    /// A login token's lease: its expiry replaces the record's.
    pub lease: Option<Lease>,
}

/// One kept version of a path, as the metadata view shows it (never its value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionInfo {
    pub version: u64,
    pub created_at_ms: u64,
    pub deleted_at_ms: Option<u64>,
    pub destroyed: bool,
}

/// A path's metadata view: its metadata (if it has versions), its cap, its kept versions and
/// its custom metadata record (sealed), if any.
#[derive(Debug, Clone)]
pub struct PathVersions {
    pub meta: Option<SecretMeta>,
    pub max_versions: u64,
    pub versions: Vec<VersionInfo>,
    pub custom: Option<CustomMetadataRecord>,
}

/// A version of a secret as stored: sealed bytes plus metadata.
#[derive(Debug, Clone)]
pub struct Stored {
    pub sealed: Sealed,
    pub metadata: Metadata,
}

impl Reader {
    /// Held while reading, so that no read sees a snapshot install half done.
    fn hold(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.gate.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The record at `key`, decoded; for a caller that holds the gate already.
    fn held<T: serde::de::DeserializeOwned>(
        &self,
        key: &[u8],
        what: &'static str,
    ) -> Result<Option<T>, StoreError> {
        match self.db.get(CF_SM_DATA, key)? {
            Some(b) => Ok(Some(decode(what, &b)?)),
            None => Ok(None),
        }
    }

    /// The record at `key`, decoded, read under the gate.
    fn record<T: serde::de::DeserializeOwned>(
        &self,
        key: &[u8],
        what: &'static str,
    ) -> Result<Option<T>, StoreError> {
        let _hold = self.hold();
        self.held(key, what)
    }

    fn meta(&self, path: &SecretPath) -> Result<Option<SecretMeta>, StoreError> {
        self.held(&keys::meta(path), "secret metadata")
    }

    /// The given version (default: latest) unless absent or deleted.
    pub fn get(
        &self,
        path: &SecretPath,
        version: Option<u64>,
    ) -> Result<Option<Stored>, StoreError> {
        let _hold = self.hold();
        let Some(meta) = self.meta(path)? else {
            return Ok(None);
        };
        let version = version.unwrap_or(meta.current_version);
        let Some(bytes) = self.db.get(CF_SM_DATA, &keys::version(path, version))? else {
            return Ok(None);
        };
        let record: VersionRecord = decode("secret version", &bytes)?;
        if record.deleted_at_ms.is_some() || record.is_destroyed() {
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
        let _hold = self.hold();
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
                let deleted_at_ms = self
                    .held::<VersionRecord>(
                        &keys::version(&p, meta.current_version),
                        "secret version",
                    )?
                    .and_then(|r| r.deleted_at_ms);
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

    fn custom_held(&self, path: &SecretPath) -> Result<Option<CustomMetadataRecord>, StoreError> {
        self.held(&keys::custom_metadata(path), "custom metadata")
    }

    /// The custom metadata record of `path` (sealed), if it has one.
    pub fn custom_metadata(
        &self,
        path: &SecretPath,
    ) -> Result<Option<CustomMetadataRecord>, StoreError> {
        let _hold = self.hold();
        self.custom_held(path)
    }

    /// Every version of `path` still kept, oldest first, with the path's metadata, its cap on
    /// kept versions and its custom metadata; `None` if the path has none of versions,
    /// settings and custom metadata.
    pub fn versions(&self, path: &SecretPath) -> Result<Option<PathVersions>, StoreError> {
        let _hold = self.hold();
        let meta = self.meta(path)?;
        let max_versions = self
            .held::<PathSettings>(&keys::settings(path), "path settings")?
            .map(|s| s.max_versions);
        let custom = self.custom_held(path)?;
        if meta.is_none() && max_versions.is_none() && custom.is_none() {
            return Ok(None);
        }
        let prefix = keys::version_prefix(path);
        let mut versions = Vec::new();
        let it = self.db.iter(
            CF_SM_DATA,
            IteratorMode::From(&prefix, rocksdb::Direction::Forward),
        );
        for item in it {
            let (k, v) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            let Some(version) = keys::version_of(&k) else {
                continue;
            };
            let record: VersionRecord = decode("secret version", &v)?;
            versions.push(VersionInfo {
                version,
                created_at_ms: record.created_at_ms,
                deleted_at_ms: record.deleted_at_ms,
                destroyed: record.is_destroyed(),
            });
        }
        Ok(Some(PathVersions {
            meta,
            max_versions: max_versions.unwrap_or(DEFAULT_MAX_VERSIONS),
            versions,
            custom,
        }))
    }

    /// The mount at exactly `path`.
    pub fn mount(&self, path: &str) -> Result<Option<MountRecord>, StoreError> {
        self.record(&keys::mount(path), "mount record")
    }

    /// The mount `path` is at or under, with its record.
    pub fn mount_covering(&self, path: &str) -> Result<Option<(String, MountRecord)>, StoreError> {
        for a in ancestors_and_self(path) {
            if let Some(rec) = self.mount(a)? {
                return Ok(Some((a.to_string(), rec)));
            }
        }
        Ok(None)
    }

    /// Every mount, in path order.
    pub fn mounts(&self) -> Result<Vec<(String, MountRecord)>, StoreError> {
        self.scan(&[keys::MOUNT], "mount record")
    }

    /// Key `version` of the mount at `mount`, wrapped under the master key.
    pub fn mount_key(&self, mount: &str, version: u32) -> Result<Option<Vec<u8>>, StoreError> {
        self.raw(&keys::mount_key(mount, version))
    }

    fn raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let _hold = self.hold();
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

    /// The configuration of the last applied membership entry: committed, unlike openraft's
    /// effective membership, which is the last one appended.
    pub fn membership(&self) -> Result<StoredMembership, StoreError> {
        let _hold = self.hold();
        Ok(StateMachine::applied_state_blocking(&self.db)?.1)
    }

    /// A token's sealed record and, if revoked, when.
    pub fn token(&self, accessor: &str) -> Result<Option<StoredToken>, StoreError> {
        let _hold = self.hold();
        self.token_held(accessor)
    }

    fn token_held(&self, accessor: &str) -> Result<Option<StoredToken>, StoreError> {
        let Some(sealed) = self.db.get(CF_SM_DATA, &keys::token(accessor))? else {
            return Ok(None);
        };
        let revoked_at_ms = self
            .db
            .get(CF_SM_DATA, &keys::revoked(accessor))?
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
            .map(u64::from_be_bytes);
        let lease = self.held(&login::lease_key(accessor), "token lease")?;
        Ok(Some(StoredToken {
            accessor: accessor.to_string(),
            sealed: Sealed::from_bytes(sealed),
            revoked_at_ms,
            lease,
        }))
    }

    /// Named ACL policy `name`.
    pub fn acl_policy(&self, name: &str) -> Result<Option<StoredAclPolicy>, StoreError> {
        self.record(&acl::key(name), "ACL policy")
    }

    /// Every named ACL policy, in name order.
    pub fn acl_policies(&self) -> Result<Vec<(String, StoredAclPolicy)>, StoreError> {
        self.scan(&[keys::ACL_POLICY], "ACL policy")
    }

    /// Every Vault KV v2 mount, in path order.
    pub fn kv_mounts(&self) -> Result<Vec<(String, StoredKvMount)>, StoreError> {
        self.scan(&[keys::KV_MOUNT], "KV mount")
    }

    /// Login role `name` of `method`.
    pub fn role(&self, method: Method, name: &str) -> Result<Option<StoredRole>, StoreError> {
        self.raw(&login::role_key(method, name))?
            .map(|b| decode_role(&b))
            .transpose()
    }

    /// Every role of `method`, in name order.
    pub fn roles(&self, method: Method) -> Result<Vec<(String, StoredRole)>, StoreError> {
        self.scan_with(&login::role_prefix(method), decode_role)
    }

    /// The name of the AppRole role whose role_id is `role_id`.
    pub fn role_named_by_id(&self, role_id: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .raw(&login::role_id_key(role_id))?
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    /// The JWT method's configuration, once written.
    pub fn jwt_config(&self) -> Result<Option<StoredJwtConfig>, StoreError> {
        self.record(login::JWT_CONFIG, "JWT configuration")
    }

    /// Secret id `accessor` of AppRole role `role`.
    pub fn secret_id(&self, role: &str, accessor: &str) -> Result<Option<SecretId>, StoreError> {
        self.record(&login::secret_id_key(role, accessor), "secret id")
    }

    /// Every secret id of AppRole role `role`, by accessor.
    pub fn secret_ids(&self, role: &str) -> Result<Vec<SecretId>, StoreError> {
        let prefix = login::secret_id_prefix(role);
        Ok(self
            .scan::<SecretId>(&prefix, "secret id")?
            .into_iter()
            .map(|(_, s)| s)
            .collect())
    }

    /// Every `(key after prefix, decoded value)` under `prefix`, in key order.
    fn scan<T: serde::de::DeserializeOwned>(
        &self,
        prefix: &[u8],
        what: &'static str,
    ) -> Result<Vec<(String, T)>, StoreError> {
        self.scan_with(prefix, |v| decode(what, v))
    }

    /// [`Self::scan`] for a record with more than one layout, read by its own `decode`.
    fn scan_with<T>(
        &self,
        prefix: &[u8],
        decode: impl Fn(&[u8]) -> Result<T, StoreError>,
    ) -> Result<Vec<(String, T)>, StoreError> {
        let _hold = self.hold();
        let it = self.db.iter(
            CF_SM_DATA,
            IteratorMode::From(prefix, rocksdb::Direction::Forward),
        );
        let mut out = Vec::new();
        for item in it {
            let (k, v) = item?;
            if !k.starts_with(prefix) {
                break;
            }
            out.push((
                String::from_utf8_lossy(&k[prefix.len()..]).into_owned(),
                decode(&v)?,
            ));
        }
        Ok(out)
    }

    /// Every token, in accessor order.
    pub fn tokens(&self) -> Result<Vec<StoredToken>, StoreError> {
        let _hold = self.hold();
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
            if let Some(t) = self.token_held(&String::from_utf8_lossy(&k[1..]))? {
                out.push(t);
            }
        }
        Ok(out)
    }

    /// Writes a backup of the data (see [`super::backup`]) to `out`, its header
    /// authenticated by `sign`. The gate is held only while the RocksDB snapshot is taken:
    /// a slow download never blocks an install or a restore.
    pub fn backup(
        &self,
        created_at_ms: u64,
        sign: impl FnOnce(&[u8]) -> [u8; 32],
        out: &mut impl std::io::Write,
    ) -> Result<super::backup::BackupHeader, super::backup::BackupError> {
        let snap = {
            let _hold = self.hold();
            self.db.snapshot()
        };
        super::backup::export(&self.db, &snap, created_at_ms, sign, out)
    }

    /// A digest of all state-machine data, used to check that replicas converged.
    /// Read from one RocksDB snapshot so it matches the returned applied id.
    pub fn digest(&self) -> Result<(Option<LogId>, String), StoreError> {
        let snap = {
            let _hold = self.hold();
            self.db.snapshot()
        };
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
        Ok((last, hex::encode(ctx.finish())))
    }
}
