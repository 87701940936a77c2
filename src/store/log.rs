//! The Raft log store (openraft's `RaftLogStorage`).
//!
//! Invariants, each one something openraft's safety depends on:
//! - `save_vote` returns only after the vote is synced to disk.
//! - `append` makes entries readable before it returns and fires the flush callback only
//!   after a synced write has made them durable.
//! - The log has no holes: entries are keyed by big-endian index in the `log` family, and
//!   truncate/purge remove contiguous ranges from the end/start.
//! - `last_purged` is written in the same synced batch as the range delete that purges, so a
//!   crash can never leave the log shorter than `last_purged` claims.
//! - Nothing is purged that neither the state machine nor a durable snapshot holds: openraft
//!   purges only behind a snapshot, and a snapshot just received from the leader is made
//!   durable before the purge it allows.
//! - All writes are serialized: openraft calls these methods one at a time through `&mut
//!   self`, and each one completes its synced write before returning.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader, StorageIOError};
use rocksdb::{Direction, IteratorMode, WriteBatch};

use super::types::{Entry, LogId, StorageError, TypeConfig, Vote};
use super::{blocking, Db, Durability, StoreError, CF_LOG, CF_RAFT_META};
use crate::codec;
use crate::metrics as m;

const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_LAST_PURGED: &[u8] = b"last_purged";

/// Cheap to clone: replication tasks read through clones concurrently.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Db>,
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn key_index(key: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&key[..8]);
    u64::from_be_bytes(b)
}

impl LogStore {
    pub fn new(db: Arc<Db>) -> Self {
        LogStore { db }
    }

    fn get_meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &'static [u8],
    ) -> Result<Option<T>, StoreError> {
        match self.db.get(CF_RAFT_META, key)? {
            None => Ok(None),
            Some(bytes) => codec::decode(&bytes)
                .map(Some)
                .map_err(|source| StoreError::Decode {
                    what: "raft metadata",
                    source,
                }),
        }
    }

    fn put_meta_synced<T: serde::Serialize>(
        &self,
        key: &[u8],
        value: &T,
    ) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        batch.put_cf(self.db.cf(CF_RAFT_META), key, codec::encode(value));
        self.db.write(batch, Durability::Synced)
    }

    fn last_entry_log_id(&self) -> Result<Option<LogId>, StoreError> {
        let mut it = self.db.iter(CF_LOG, IteratorMode::End);
        match it.next() {
            None => Ok(None),
            Some(item) => {
                let (_, value) = item?;
                let entry: Entry = codec::decode(&value).map_err(|source| StoreError::Decode {
                    what: "log entry",
                    source,
                })?;
                Ok(Some(entry.log_id))
            }
        }
    }

    fn read_range(&self, start: u64, end: Option<u64>) -> Result<Vec<Entry>, StoreError> {
        let mut out = Vec::new();
        let it = self.db.iter(
            CF_LOG,
            IteratorMode::From(&index_key(start), Direction::Forward),
        );
        for item in it {
            let (key, value) = item?;
            let index = key_index(&key);
            if end.is_some_and(|end| index >= end) {
                break;
            }
            let entry: Entry = codec::decode(&value).map_err(|source| StoreError::Decode {
                what: "log entry",
                source,
            })?;
            out.push(entry);
        }
        Ok(out)
    }

    /// The log state as openraft defines it, for status reporting too.
    pub fn log_state(&self) -> Result<LogState<TypeConfig>, StoreError> {
        let last_purged: Option<LogId> = self.get_meta(KEY_LAST_PURGED)?;
        let last = self.last_entry_log_id()?.or(last_purged);
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(&i) => i,
            Bound::Excluded(&i) => i + 1,
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&i) => Some(i + 1),
            Bound::Excluded(&i) => Some(i),
            Bound::Unbounded => None,
        };
        let this = self.clone();
        blocking(move || this.read_range(start, end))
            .await
            .map_err(|e| StorageIOError::read_logs(&e).into())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let this = self.clone();
        blocking(move || this.log_state())
            .await
            .map_err(|e| StorageIOError::read_logs(&e).into())
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let this = self.clone();
        let vote = *vote;
        blocking(move || this.put_meta_synced(KEY_VOTE, &vote))
            .await
            .map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        let this = self.clone();
        blocking(move || this.get_meta(KEY_VOTE))
            .await
            .map_err(|e| StorageIOError::read_vote(&e).into())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not synced: it is a hint that lets a restarted node re-apply committed entries
        // sooner; losing the latest value only delays that, it never loses data.
        if let Some(c) = committed {
            metrics::gauge!(m::RAFT_COMMITTED_INDEX).set(c.index as f64);
        }
        let this = self.clone();
        blocking(move || {
            let mut batch = WriteBatch::default();
            batch.put_cf(
                this.db.cf(CF_RAFT_META),
                KEY_COMMITTED,
                codec::encode(&committed),
            );
            this.db.write(batch, Durability::Buffered)
        })
        .await
        .map_err(|e| StorageIOError::write(&e).into())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        let this = self.clone();
        blocking(move || Ok(this.get_meta::<Option<LogId>>(KEY_COMMITTED)?.flatten()))
            .await
            .map_err(|e| StorageIOError::read(&e).into())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = WriteBatch::default();
        let cf = self.db.cf(CF_LOG);
        let mut n = 0;
        for entry in entries {
            batch.put_cf(cf, index_key(entry.log_id.index), codec::encode(&entry));
            n += 1;
        }
        let this = self.clone();
        // One synced batch: the entries are both readable and durable when it returns, so
        // the callback can fire right away.
        let result = blocking(move || {
            let began = std::time::Instant::now();
            this.db.write(batch, Durability::Synced)?;
            metrics::histogram!(m::LOG_APPEND_DURATION).record(began.elapsed().as_secs_f64());
            metrics::histogram!(m::LOG_APPEND_ENTRIES).record(n as f64);
            Ok(())
        })
        .await;
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(StorageIOError::write_logs(&e).into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let this = self.clone();
        blocking(move || {
            let mut batch = WriteBatch::default();
            batch.delete_range_cf(
                this.db.cf(CF_LOG),
                index_key(log_id.index),
                index_key(u64::MAX),
            );
            batch.delete_cf(this.db.cf(CF_LOG), index_key(u64::MAX));
            this.db.write(batch, Durability::Synced)?;
            Ok(())
        })
        .await
        .map_err(|e| StorageIOError::write_logs(&e).into())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let this = self.clone();
        blocking(move || {
            // On a follower, openraft purges the log a received snapshot covers without
            // waiting for the state machine to install it. Make that snapshot durable first,
            // so a crash in between leaves a snapshot to restore from (`StateMachine::open`).
            {
                let _lock = this.db.snapshot_lock();
                super::snapshot::secure_incoming(&this.db.snapshot_dir(), Some(log_id.index))?;
            }
            let mut batch = WriteBatch::default();
            batch.put_cf(
                this.db.cf(CF_RAFT_META),
                KEY_LAST_PURGED,
                codec::encode(&log_id),
            );
            batch.delete_range_cf(
                this.db.cf(CF_LOG),
                index_key(0),
                index_key(log_id.index + 1),
            );
            this.db.write(batch, Durability::Synced)?;
            Ok(())
        })
        .await
        .map_err(|e| StorageIOError::write_logs(&e).into())
    }
}
