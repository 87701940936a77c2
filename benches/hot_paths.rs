//! Micro-benchmarks of the hot parts of a request, each alone: the state machine's apply
//! per batch size, a synced log append per batch size, sealing and opening per value size,
//! path parsing, PUT body validation, and snapshot build and install at 100k secrets.
//!
//! Run: `cargo bench --bench hot_paths` (all), or e.g. `cargo bench --bench hot_paths --
//! apply`. CI only builds them (`cargo build --release --benches`) so they never rot; speed
//! is judged in BENCHMARKS.md, never in tests. The RocksDB benchmarks write to a temporary
//! directory on the same disk as the data would be, so the synced append measures the fsync
//! floor of this machine.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use openraft::storage::{RaftLogStorageExt, RaftStateMachine};
use openraft::{CommittedLeaderId, EntryPayload, LogId, RaftSnapshotBuilder};
use raftsafe::raft::Entry;
use raftsafe::secret::crypto::SealingKey;
use raftsafe::secret::{Command, Op, Request, RequestId, Sealed, SecretPath};
use raftsafe::store::{Db, LogStore, StateMachine};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// One log entry holding `ops` puts of 256-byte sealed values on distinct paths.
fn entry(index: u64, ops: usize, salt: &str) -> Entry {
    let ops = (0..ops)
        .map(|i| Op {
            id: RequestId::named(format!("{salt}-{index}-{i}")),
            caller: None,
            command: Command::Put {
                path: SecretPath::parse(&format!("bench/{salt}/{index}/{i}")).unwrap(),
                sealed: Sealed::from_bytes(vec![7u8; 256]),
                cas: None,
            },
        })
        .collect();
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Request { at_ms: 1, ops }),
    }
}

fn apply(c: &mut Criterion) {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    let mut sm = StateMachine::open(db).unwrap();
    let mut group = c.benchmark_group("apply");
    let mut index = 0;
    for ops in [1usize, 16, 64, 256] {
        group.throughput(Throughput::Elements(ops as u64));
        group.bench_with_input(BenchmarkId::new("ops_per_entry", ops), &ops, |b, &ops| {
            b.iter_batched(
                || {
                    index += 1;
                    entry(index, ops, "apply")
                },
                |e| rt.block_on(sm.apply([e])).unwrap(),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

fn log_append(c: &mut Criterion) {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    let mut log = LogStore::new(db);
    let mut group = c.benchmark_group("log_append_synced");
    let mut next = 1u64;
    for entries in [1usize, 16, 64] {
        group.throughput(Throughput::Elements(entries as u64));
        group.bench_with_input(BenchmarkId::new("entries", entries), &entries, |b, &n| {
            b.iter_batched(
                || {
                    let batch: Vec<Entry> =
                        (0..n as u64).map(|i| entry(next + i, 1, "log")).collect();
                    next += n as u64;
                    batch
                },
                |batch| rt.block_on(log.blocking_append(batch)).unwrap(),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

fn seal_open(c: &mut Criterion) {
    let key = SealingKey::new(1, &[9u8; 32]).unwrap();
    let mut group = c.benchmark_group("seal_open");
    for size in [256usize, 4096, 65536] {
        let plain = vec![b'x'; size];
        let sealed = key.seal(b"secret\0app/db", &plain).unwrap();
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("seal", size), &plain, |b, p| {
            b.iter(|| key.seal(b"secret\0app/db", p).unwrap())
        });
        group.bench_with_input(BenchmarkId::new("open", size), &sealed, |b, s| {
            b.iter(|| key.open(b"secret\0app/db", s).unwrap())
        });
    }
    group.finish();
}

fn parsing(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse");
    group.bench_function("path", |b| {
        b.iter(|| SecretPath::parse("team-a/service.payments/db%2Fprimary/creds").unwrap())
    });
    let body = format!(
        "{{\"data\":{{\"user\":\"svc\",\"password\":\"{}\"}},\"options\":{{\"cas\":3}}}}",
        "x".repeat(200)
    );
    group.bench_function("put_body_256b", |b| {
        b.iter(|| raftsafe::api::parse_put_body(body.as_bytes(), 512 * 1024).is_ok())
    });
    group.finish();
}

/// Build and install of a snapshot holding 100,000 secrets (one version each).
fn snapshots(c: &mut Criterion) {
    let rt = rt();
    let src_dir = tempfile::tempdir().unwrap();
    let mut src = StateMachine::open(Db::open(src_dir.path()).unwrap()).unwrap();
    let began = Instant::now();
    for chunk in 0..400u64 {
        rt.block_on(src.apply([entry(chunk + 1, 250, "snap")]))
            .unwrap();
    }
    eprintln!("loaded 100,000 secrets in {:?}", began.elapsed());
    let mut group = c.benchmark_group("snapshot_100k");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    group.bench_function("build", |b| {
        b.iter(|| {
            rt.block_on(async {
                src.get_snapshot_builder()
                    .await
                    .build_snapshot()
                    .await
                    .unwrap()
            })
        })
    });
    group.bench_function("install", |b| {
        b.iter_batched(
            || {
                let snap = rt.block_on(async {
                    src.get_snapshot_builder()
                        .await
                        .build_snapshot()
                        .await
                        .unwrap()
                });
                let dir = tempfile::tempdir().unwrap();
                let dst = StateMachine::open(Db::open(dir.path()).unwrap()).unwrap();
                (snap, dir, dst)
            },
            |(snap, _dir, mut dst)| {
                rt.block_on(dst.install_snapshot(&snap.meta, snap.snapshot))
                    .unwrap()
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, apply, log_append, seal_open, parsing, snapshots);
criterion_main!(benches);
