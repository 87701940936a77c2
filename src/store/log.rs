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
//! - The in-memory tail ([`Tail`]) holds a contiguous run of the newest entries exactly as
//!   the `log` family holds them: it changes only after the write it mirrors succeeded, and
//!   a read is served from it only when it covers the whole range asked for.
//! - `committed` is a hint (openraft re-applies up to it at start): it is never ahead of
//!   the log, since it is written in the batch of a later append.

use std::collections::VecDeque;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex, MutexGuard};

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

/// Most entries the in-memory tail keeps.
const TAIL_ENTRIES: usize = 1024;
/// Most encoded bytes the in-memory tail keeps (entries are batches of up to 1 MiB).
const TAIL_BYTES: usize = 8 << 20;

/// Cheap to clone: replication tasks read through clones concurrently.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Db>,
    tail: Arc<Mutex<Tail>>,
    /// The newest committed log id openraft reported and no write has carried yet.
    committed: Arc<Mutex<Option<LogId>>>,
}

/// The newest log entries, in memory: replication and apply read what was just appended,
/// and serving that from here saves a blocking-pool hand-off, a RocksDB read and a decode
/// per read (BENCHMARKS.md). Entries `first .. first + entries.len()`, contiguous.
#[derive(Default)]
struct Tail {
    first: u64,
    entries: VecDeque<(Entry, usize)>,
    bytes: usize,
}

impl Tail {
    fn end(&self) -> u64 {
        self.first + self.entries.len() as u64
    }

    /// Mirrors a successful append of `entries` (contiguous, ascending).
    fn push(&mut self, entries: Vec<(Entry, usize)>) {
        let Some((head, _)) = entries.first() else {
            return;
        };
        if self.entries.is_empty() || head.log_id.index != self.end() {
            // Not contiguous with what we hold (the first append, or after a purge past our
            // end): start over from these entries.
            self.entries.clear();
            self.bytes = 0;
            self.first = head.log_id.index;
        }
        for (entry, size) in entries {
            self.bytes += size;
            self.entries.push_back((entry, size));
        }
        while self.entries.len() > TAIL_ENTRIES || self.bytes > TAIL_BYTES {
            match self.entries.pop_front() {
                Some((_, size)) => {
                    self.bytes -= size;
                    self.first += 1;
                }
                None => break,
            }
        }
    }

    /// Mirrors a truncate: drops entries at `index` and after.
    fn truncate(&mut self, index: u64) {
        while self.end() > index.max(self.first) {
            match self.entries.pop_back() {
                Some((_, size)) => self.bytes -= size,
                None => break,
            }
        }
    }

    /// Mirrors a purge: drops entries up to and including `index`.
    fn purge(&mut self, index: u64) {
        while self.first <= index {
            match self.entries.pop_front() {
                Some((_, size)) => {
                    self.bytes -= size;
                    self.first += 1;
                }
                None => {
                    self.first = index + 1;
                    break;
                }
            }
        }
    }

    /// Entries `start .. end` (end `None`: to the last), if all of them are held.
    fn get(&self, start: u64, end: Option<u64>) -> Option<Vec<Entry>> {
        let end = end.unwrap_or(self.end()).min(self.end());
        if start < self.first || self.entries.is_empty() {
            return None;
        }
        if start >= end {
            return (start >= self.end()).then(Vec::new);
        }
        let from = (start - self.first) as usize;
        let to = (end - self.first) as usize;
        Some(
            self.entries
                .range(from..to)
                .map(|(e, _)| e.clone())
                .collect(),
        )
    }
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
        LogStore {
            db,
            tail: Default::default(),
            committed: Default::default(),
        }
    }

    fn tail(&self) -> MutexGuard<'_, Tail> {
        self.tail.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds the committed hint not yet written, if any, to `batch`.
    fn carry_committed(&self, batch: &mut WriteBatch) {
        let pending = self
            .committed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(c) = pending {
            batch.put_cf(
                self.db.cf(CF_RAFT_META),
                KEY_COMMITTED,
                codec::encode(&Some(c)),
            );
        }
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
        if let Some(entries) = self.tail().get(start, end) {
            return Ok(entries);
        }
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
        // A hint that lets a restarted node re-apply committed entries before it hears from
        // a leader. Written by the next append (or truncate, purge), never on its own: a
        // blocking-pool round per commit cost more than the hint is worth, and the state
        // machine persists `last_applied` with every apply anyway.
        if let Some(c) = committed {
            metrics::gauge!(m::RAFT_COMMITTED_INDEX).set(c.index as f64);
            *self.committed.lock().unwrap_or_else(|p| p.into_inner()) = Some(c);
        }
        Ok(())
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
        let mut mirror = Vec::new();
        for entry in entries {
            let bytes = codec::encode(&entry);
            batch.put_cf(cf, index_key(entry.log_id.index), &bytes);
            mirror.push((entry, bytes.len()));
        }
        let n = mirror.len();
        self.carry_committed(&mut batch);
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
                self.tail().push(mirror);
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
            this.tail().truncate(log_id.index);
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
            this.tail().purge(log_id.index);
            Ok(())
        })
        .await
        .map_err(|e| StorageIOError::write_logs(&e).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload};

    fn entries(range: std::ops::Range<u64>) -> Vec<(Entry, usize)> {
        range
            .map(|i| {
                let e = Entry {
                    log_id: LogId::new(CommittedLeaderId::new(1, 1), i),
                    payload: EntryPayload::Blank,
                };
                (e, 100)
            })
            .collect()
    }

    fn indexes(got: Option<Vec<Entry>>) -> Option<Vec<u64>> {
        got.map(|v| v.iter().map(|e| e.log_id.index).collect())
    }

    #[test]
    fn the_tail_serves_only_ranges_it_holds_whole() {
        let mut t = Tail::default();
        assert_eq!(indexes(t.get(0, None)), None, "empty: ask RocksDB");
        t.push(entries(5..10));
        assert_eq!(indexes(t.get(5, Some(8))), Some(vec![5, 6, 7]));
        assert_eq!(indexes(t.get(7, None)), Some(vec![7, 8, 9]));
        assert_eq!(
            indexes(t.get(8, Some(100))),
            Some(vec![8, 9]),
            "the log ends at 9"
        );
        assert_eq!(indexes(t.get(4, Some(8))), None, "4 is not held");
        assert_eq!(
            indexes(t.get(12, None)),
            Some(vec![]),
            "past the end of the log"
        );
        t.push(entries(10..12));
        assert_eq!(indexes(t.get(9, None)), Some(vec![9, 10, 11]));
    }

    #[test]
    fn the_tail_follows_truncate_purge_and_gaps() {
        let mut t = Tail::default();
        t.push(entries(1..10));
        t.truncate(7);
        assert_eq!(indexes(t.get(5, None)), Some(vec![5, 6]));
        t.push(entries(7..9));
        assert_eq!(indexes(t.get(6, None)), Some(vec![6, 7, 8]));
        t.purge(6);
        assert_eq!(indexes(t.get(6, None)), None);
        assert_eq!(indexes(t.get(7, None)), Some(vec![7, 8]));
        t.purge(20);
        assert_eq!(indexes(t.get(21, None)), None, "emptied by the purge");
        // A follower that installed a snapshot appends from far ahead: start over there.
        t.push(entries(50..52));
        assert_eq!(indexes(t.get(50, None)), Some(vec![50, 51]));
        assert_eq!(indexes(t.get(49, None)), None);
        t.truncate(3);
        assert_eq!(indexes(t.get(50, None)), None, "truncated below its start");
    }

    #[test]
    fn the_tail_is_bounded() {
        let mut t = Tail::default();
        t.push(entries(0..(TAIL_ENTRIES as u64 + 10)));
        assert_eq!(t.entries.len(), TAIL_ENTRIES);
        assert_eq!(t.first, 10);
        let big = vec![(entries(2000..2001).remove(0).0, TAIL_BYTES)];
        t.push(big);
        t.push(entries(2001..2002));
        assert!(t.bytes <= TAIL_BYTES);
        assert_eq!(indexes(t.get(2001, None)), Some(vec![2001]));
        assert_eq!(indexes(t.get(2000, None)), None);
    }
}
