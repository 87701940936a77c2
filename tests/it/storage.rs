//! The RocksDB stores against openraft's own storage conformance suite, plus the
//! durability and snapshot properties raftsafe adds on top of it.
//!
//! Invariants checked: applied state and its index survive a reopen; a retried request id
//! changes nothing; a snapshot installed elsewhere reproduces the same state digest and
//! replaces what was there; purging and truncating the log leave no holes.

use std::sync::Arc;

use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{CommittedLeaderId, EntryPayload, LogId, RaftSnapshotBuilder};
use raftsafe::raft::{Entry, StorageError, TypeConfig};
use raftsafe::secret::{Command, CommandResult, Op, Request, RequestId, Sealed, SecretPath};
use raftsafe::store::state_machine::Stored;
use raftsafe::store::{Db, LogStore, StateMachine};
use tempfile::TempDir;

struct RocksBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for RocksBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError> {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Db::open(dir.path()).expect("open db");
        let sm = StateMachine::open(db.clone()).expect("open state machine");
        Ok((dir, LogStore::new(db), sm))
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
            at_ms: 1_000 + index,
            ops: vec![Op {
                id: RequestId::named(format!("req-{index}")),
                caller: None,
                command: Command::Put {
                    path: SecretPath::parse(path).unwrap(),
                    sealed: Sealed::from_bytes(value.to_vec()),
                    cas: None,
                },
            }],
        }),
    }
}

fn open(dir: &std::path::Path) -> (Arc<Db>, StateMachine) {
    let db = Db::open(dir).unwrap();
    (db.clone(), StateMachine::open(db).unwrap())
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
        assert!(matches!(&r[1][..], [CommandResult::Written(m)] if m.version == 2));
    }
    let (_db, mut sm) = open(dir.path());
    let (applied, _) = sm.applied_state().await.unwrap();
    assert_eq!(applied.map(|l| l.index), Some(2));
    let got = latest(&sm, "a/b").expect("a/b is stored");
    assert_eq!(&got.sealed[..], b"two");
    assert_eq!(got.metadata.version, 2);
    // The same request id at a later index (a retried write) changes nothing.
    let mut retry = put_entry(3, "a/b", b"three");
    if let EntryPayload::Normal(r) = &mut retry.payload {
        r.ops[0].id = RequestId::named("req-2");
    }
    let r = sm.apply([retry]).await.unwrap();
    assert!(
        matches!(&r[0][..], [CommandResult::Written(m)] if m.version == 2),
        "{r:?}"
    );
    let got = latest(&sm, "a/b").expect("a/b is stored");
    assert_eq!(&got.sealed[..], b"two");
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
    // As openraft does on a follower: receive the bytes into the file the state machine
    // hands out, then install.
    let mut incoming = dst.begin_receiving_snapshot().await.unwrap();
    let mut source = snap.snapshot;
    tokio::io::copy(&mut source, &mut incoming).await.unwrap();
    dst.install_snapshot(&snap.meta, incoming).await.unwrap();
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

/// Builds a snapshot of 50 writes in a fresh state machine; returns its directory (kept
/// alive), the built snapshot's file path and digest.
async fn source_snapshot() -> (
    tempfile::TempDir,
    std::path::PathBuf,
    (Option<LogId<u64>>, String),
) {
    let dir = tempfile::tempdir().unwrap();
    let (_db, mut sm) = open(dir.path());
    let entries: Vec<Entry> = (1..=50)
        .map(|i| put_entry(i, &format!("k/{}", i % 7), &[i as u8; 8]))
        .collect();
    sm.apply(entries).await.unwrap();
    sm.get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    let digest = sm.reader().digest().unwrap();
    let file = dir.path().join("snapshots/current.snap");
    assert!(file.exists());
    (dir, file, digest)
}

/// After a machine crash the un-synced applies may be gone while the snapshot is durable:
/// opening the state machine restores it from a snapshot newer than its applied state.
#[tokio::test]
async fn open_restores_a_snapshot_newer_than_the_applied_state() {
    let (_src, file, digest) = source_snapshot().await;
    let dst = tempfile::tempdir().unwrap();
    {
        let (_db, mut sm) = open(dst.path());
        sm.apply([put_entry(1, "stale/key", b"old")]).await.unwrap();
    }
    std::fs::copy(&file, dst.path().join("snapshots/current.snap")).unwrap();
    let (_db, sm) = open(dst.path());
    assert_eq!(sm.reader().digest().unwrap(), digest);
}

/// A snapshot received completely but not yet installed (openraft may purge the log it
/// covers first) is secured and installed when the node opens again.
#[tokio::test]
async fn open_installs_a_completely_received_snapshot() {
    let (_src, file, digest) = source_snapshot().await;
    let dst = tempfile::tempdir().unwrap();
    drop(open(dst.path()));
    std::fs::copy(&file, dst.path().join("snapshots/incoming.snap")).unwrap();
    let (_db, sm) = open(dst.path());
    assert_eq!(sm.reader().digest().unwrap(), digest);
    assert!(!dst.path().join("snapshots/incoming.snap").exists());
}

/// A torn received snapshot is never installed: the state stays as it was.
#[tokio::test]
async fn open_ignores_a_torn_received_snapshot() {
    let (_src, file, _) = source_snapshot().await;
    let dst = tempfile::tempdir().unwrap();
    let before = {
        let (_db, mut sm) = open(dst.path());
        sm.apply([put_entry(1, "mine", b"v")]).await.unwrap();
        sm.reader().digest().unwrap()
    };
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(
        dst.path().join("snapshots/incoming.snap"),
        &bytes[..bytes.len() / 2],
    )
    .unwrap();
    let (_db, sm) = open(dst.path());
    assert_eq!(sm.reader().digest().unwrap(), before);
}

/// The state machine's writes are not fsync'd (the log's are): after a crash between append
/// and apply, openraft re-applies the committed entries from the log when the node starts.
/// Here the "crash" leaves entries 1-10 in the log, committed, with only 1-4 applied.
#[tokio::test]
async fn committed_entries_missing_from_the_state_machine_are_reapplied_at_start() {
    use openraft::storage::RaftLogStorage;
    let dir = tempfile::tempdir().unwrap();
    let id = 1u64;
    let node = raftsafe::raft::NodeInfo {
        raft_addr: "127.0.0.1:1".into(),
        api_addr: "127.0.0.1:2".into(),
    };
    {
        let db = Db::open(dir.path()).unwrap();
        let mut log = LogStore::new(db.clone());
        let mut sm = StateMachine::open(db).unwrap();
        let membership = openraft::Membership::new(
            vec![std::collections::BTreeSet::from([id])],
            std::collections::BTreeMap::from([(id, node.clone())]),
        );
        let mut entries = vec![Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, id), 0),
            payload: EntryPayload::Membership(membership),
        }];
        entries.extend((1..=10).map(|i| {
            let mut e = put_entry(i, "a/b", format!("v{i}").as_bytes());
            e.log_id = LogId::new(CommittedLeaderId::new(1, id), i);
            e
        }));
        log.save_vote(&openraft::Vote::new_committed(1, id))
            .await
            .unwrap();
        log.blocking_append(entries.clone()).await.unwrap();
        log.save_committed(Some(entries[10].log_id)).await.unwrap();
        sm.apply(entries[..5].to_vec()).await.unwrap();
    }
    let db = Db::open(dir.path()).unwrap();
    let log = LogStore::new(db.clone());
    let sm = StateMachine::open(db).unwrap();
    let reader = sm.reader();
    let config = openraft::Config {
        election_timeout_min: 150,
        election_timeout_max: 300,
        ..Default::default()
    };
    raftsafe::tls::install_crypto_provider();
    let peers = raftsafe::raft::network::PeerClient::new(
        reqwest::Client::new(),
        false,
        Default::default(),
        raftsafe::raft::wire::PeerKey::new(&[0; 32]),
    );
    let network = raftsafe::raft::network::NetworkFactory { client: peers };
    let raft = raftsafe::raft::Raft::new(id, std::sync::Arc::new(config), network, log, sm)
        .await
        .unwrap();
    raft.wait(Some(std::time::Duration::from_secs(10)))
        .applied_index_at_least(Some(10), "re-applied from the log")
        .await
        .unwrap();
    let got = reader
        .get(&SecretPath::parse("a/b").unwrap(), None)
        .unwrap()
        .unwrap();
    assert_eq!(&got.sealed[..], b"v10");
    assert_eq!(got.metadata.version, 10);
    raft.shutdown().await.unwrap();
}
