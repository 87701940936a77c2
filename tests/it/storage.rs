//! The RocksDB stores against openraft's own storage conformance suite, plus the
//! durability and snapshot properties raftsafe adds on top of it.
//!
//! Invariants checked: applied state and its index survive a reopen; a retried request id
//! changes nothing; a snapshot installed elsewhere reproduces the same state digest and
//! replaces what was there; purging and truncating the log leave no holes.

use std::io::Cursor;
use std::sync::Arc;

use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{CommittedLeaderId, EntryPayload, LogId, RaftSnapshotBuilder};
use raftsafe::raft::{Entry, StorageError, TypeConfig};
use raftsafe::secret::{Command, CommandResult, Request, RequestId, SecretPath};
use raftsafe::store::state_machine::Stored;
use raftsafe::store::{Db, LogStore, StateMachine};
use tempfile::TempDir;

struct RocksBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for RocksBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError> {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Db::open(dir.path()).expect("open db");
        Ok((dir, LogStore::new(db.clone()), StateMachine::new(db)))
    }
}

#[test]
fn openraft_storage_conformance_suite() {
    Suite::test_all(RocksBuilder).expect("conformance suite");
}

fn put_entry(index: u64, path: &str, value: &[u8]) -> Entry {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Request {
            id: RequestId(format!("req-{index}")),
            at_ms: 1_000 + index,
            command: Command::Put {
                path: SecretPath::parse(path).unwrap(),
                sealed: value.to_vec(),
                cas: None,
            },
        }),
    }
}

fn open(dir: &std::path::Path) -> (Arc<Db>, StateMachine) {
    let db = Db::open(dir).unwrap();
    (db.clone(), StateMachine::new(db))
}

/// The latest version of `path` the state machine serves, if any.
fn latest(sm: &StateMachine, path: &str) -> Option<Stored> {
    sm.reader()
        .get(&SecretPath::parse(path).unwrap(), None)
        .unwrap()
}

#[tokio::test]
async fn applied_state_survives_reopen_and_retries_dedupe() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (_db, mut sm) = open(dir.path());
        let r = sm
            .apply([put_entry(1, "a/b", b"one"), put_entry(2, "a/b", b"two")])
            .await
            .unwrap();
        assert!(matches!(&r[1], CommandResult::Written(m) if m.version == 2));
    }
    let (_db, mut sm) = open(dir.path());
    let (applied, _) = sm.applied_state().await.unwrap();
    assert_eq!(applied.map(|l| l.index), Some(2));
    let got = latest(&sm, "a/b").expect("a/b is stored");
    assert_eq!(got.sealed, b"two");
    assert_eq!(got.metadata.version, 2);
    // The same request id at a later index (a retried write) changes nothing.
    let mut retry = put_entry(3, "a/b", b"three");
    if let EntryPayload::Normal(r) = &mut retry.payload {
        r.id = RequestId("req-2".into());
    }
    let r = sm.apply([retry]).await.unwrap();
    assert!(
        matches!(&r[0], CommandResult::Written(m) if m.version == 2),
        "{r:?}"
    );
    let got = latest(&sm, "a/b").expect("a/b is stored");
    assert_eq!(got.sealed, b"two");
}

#[tokio::test]
async fn snapshot_moves_state_between_machines() {
    let src_dir = tempfile::tempdir().unwrap();
    let (_src_db, mut src) = open(src_dir.path());
    let entries: Vec<Entry> = (1..=50)
        .map(|i| put_entry(i, &format!("k/{}", i % 7), &[i as u8; 8]))
        .collect();
    src.apply(entries).await.unwrap();
    let snap = src
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    assert_eq!(snap.meta.last_log_id.map(|l| l.index), Some(50));

    let dst_dir = tempfile::tempdir().unwrap();
    let (_dst_db, mut dst) = open(dst_dir.path());
    // Some stale state the install must replace entirely.
    dst.apply([put_entry(1, "stale/key", b"old")])
        .await
        .unwrap();
    let data = snap.snapshot.into_inner();
    dst.install_snapshot(&snap.meta, Box::new(Cursor::new(data)))
        .await
        .unwrap();
    assert_eq!(
        src.reader().digest().unwrap(),
        dst.reader().digest().unwrap(),
        "installed state equals the source state"
    );
    assert!(latest(&dst, "stale/key").is_none());
    let current = dst
        .get_current_snapshot()
        .await
        .unwrap()
        .expect("snapshot persisted");
    assert_eq!(current.meta.last_log_id.map(|l| l.index), Some(50));
    // An older snapshot never replaces a newer one on disk.
    let older = {
        let d = tempfile::tempdir().unwrap();
        let (_db, mut sm) = open(d.path());
        sm.apply([put_entry(1, "x", b"y")]).await.unwrap();
        sm.get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap()
    };
    assert!(
        raftsafe::store::snapshot::save(&dst_dir.path().join("snapshots"), &older.meta, &[1])
            .map(|w| !w)
            .unwrap()
    );
}

#[tokio::test]
async fn purge_and_truncate_leave_no_holes() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    let mut log = LogStore::new(db.clone());
    let entries: Vec<Entry> = (0..20).map(|i| put_entry(i, "p", b"v")).collect();
    // Appends and waits for the flush callback, as RaftCore does.
    log.blocking_append(entries).await.unwrap();
    log.purge(LogId::new(CommittedLeaderId::new(1, 1), 9))
        .await
        .unwrap();
    log.truncate(LogId::new(CommittedLeaderId::new(1, 1), 15))
        .await
        .unwrap();
    drop(log);
    drop(db);
    let db = Db::open(dir.path()).unwrap();
    let mut log = LogStore::new(db);
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id.map(|l| l.index), Some(9));
    assert_eq!(state.last_log_id.map(|l| l.index), Some(14));
    use openraft::RaftLogReader;
    let got: Vec<u64> = log
        .try_get_log_entries(0..100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.log_id.index)
        .collect();
    assert_eq!(got, (10..15).collect::<Vec<_>>());
}
