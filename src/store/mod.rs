//! Durable storage on one RocksDB database: the Raft log store, the state machine and its
//! snapshots.
//!
//! One DB with four column families (`log`, `raft_meta`, `sm_data`, `sm_meta`) instead of
//! several DBs: a single write-ahead log orders writes across families, a synced write makes
//! every earlier write durable, and a `WriteBatch` is atomic across families. The WAL is never
//! disabled; every write that openraft relies on for safety is synced before it is reported
//! done (see `log.rs` and `state_machine.rs` for which).
//!
//! RocksDB calls block, so the async trait methods run them on the blocking pool.
//!
//! The on-disk format has a version ([`FORMAT_VERSION`], under [`FORMAT_KEY`] in
//! `raft_meta`): a new data directory is stamped with it, one without a stamp is from before
//! it was kept (version 1, the same layout) and is stamped on open, and one stamped by a newer
//! raftsafe is refused at start with an error naming both versions, before anything is
//! written: a downgrade never reads a layout it does not know. A change of layout bumps the
//! version and migrates in [`Db::open`].

pub mod backup;
pub mod log;
pub mod snapshot;
pub mod state_machine;
pub mod types;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rocksdb::{ColumnFamilyDescriptor, DBCompressionType, Options, WriteOptions, DB};

pub use log::LogStore;
pub use state_machine::StateMachine;

pub const CF_LOG: &str = "log";
pub const CF_RAFT_META: &str = "raft_meta";
pub const CF_SM_DATA: &str = "sm_data";
pub const CF_SM_META: &str = "sm_meta";

/// The version of the on-disk layout this build reads and writes (see the module doc).
pub const FORMAT_VERSION: u32 = 1;
/// Where the version is kept, in `raft_meta` (outside the state machine, so it is in no
/// snapshot, backup or digest: it describes this node's disk, not the replicated state).
pub const FORMAT_KEY: &[u8] = b"format_version";

/// Storage-layer failures. They are faults of the disk or of stored bytes, never of a request.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("decoding {what}: {source}")]
    Decode {
        what: &'static str,
        source: crate::codec::CodecError,
    },
    #[error("{what} at {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("blocking task failed: {0}")]
    Join(String),
    #[error("applying a committed entry: {0}")]
    Apply(String),
    #[error(
        "the data directory {path} is in on-disk format version {found}, newer than the \
         version {FORMAT_VERSION} this raftsafe reads; run the raftsafe release that wrote it \
         (refusing to start, nothing was written)"
    )]
    NewerFormat { path: PathBuf, found: u32 },
}

impl StoreError {
    pub fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StoreError::Io {
            what,
            path: path.into(),
            source,
        }
    }
}

/// The open database plus the directory that holds snapshot files. Callers name column
/// families by their constant (`CF_LOG`, …); the RocksDB handle stays inside.
pub struct Db {
    db: DB,
    dir: PathBuf,
    /// Serializes changes to the snapshot files (builds, receives, the log store's purge).
    snapshot_lock: std::sync::Mutex<()>,
}

/// Whether a write must be on disk before it returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// fsync'd (through the WAL) before returning: for everything openraft relies on.
    Synced,
    /// In the WAL's OS buffer; made durable by the next synced write (one WAL orders all
    /// families), lost on a machine crash before that.
    Buffered,
}

/// Memory and disk budget, chosen on purpose (see BENCHMARKS.md for the measurements): a
/// node's RSS is mostly RocksDB's memtables and block cache, so both are bounded.
/// Memtable size of the two busy families (`log`, `sm_data`): flushed to disk beyond this.
const BUSY_WRITE_BUFFER: usize = 8 << 20;
/// Memtable size of the two metadata families (a handful of keys each).
const META_WRITE_BUFFER: usize = 1 << 20;
/// All memtables together; past this RocksDB flushes the largest.
const ALL_WRITE_BUFFERS: usize = 24 << 20;
/// One block cache shared by every family (reads of secrets, tokens, log entries).
const BLOCK_CACHE_BYTES: usize = 16 << 20;
/// WAL kept before RocksDB flushes the memtables that pin old WAL files.
const MAX_WAL_BYTES: u64 = 64 << 20;
/// Stored values of at least this many bytes go to blob files: a sealed secret version of
/// 1 KiB and up, a log entry carrying about that much. A 256-byte secret is a few hundred
/// bytes stored.
const MIN_BLOB_BYTES: u64 = 1 << 10;
/// Blob files are cut at this size (each flush writes at most one memtable's worth anyway);
/// smaller files let garbage collection reclaim space in smaller steps.
const BLOB_FILE_BYTES: u64 = 32 << 20;

fn db_options() -> Options {
    let mut o = Options::default();
    o.create_if_missing(true);
    o.create_missing_column_families(true);
    // Values are ciphertext: compression would only cost CPU.
    o.set_compression_type(DBCompressionType::None);
    o.set_keep_log_file_num(4);
    o.set_db_write_buffer_size(ALL_WRITE_BUFFERS);
    o.set_max_total_wal_size(MAX_WAL_BYTES);
    // Two cores: one flush and one compaction at a time is plenty and keeps RocksDB's
    // background threads from competing with request handling.
    o.set_max_background_jobs(2);
    o
}

fn cf_options(name: &str, cache: &rocksdb::Cache) -> Options {
    let mut o = Options::default();
    o.set_compression_type(DBCompressionType::None);
    let busy = name == CF_LOG || name == CF_SM_DATA;
    o.set_write_buffer_size(if busy {
        BUSY_WRITE_BUFFER
    } else {
        META_WRITE_BUFFER
    });
    o.set_max_write_buffer_number(2);
    // A bloom filter over whole keys in each memtable: most of apply's lookups miss (the
    // request-id dedup table, revocations, mounts above a path, per-path settings), and a
    // miss otherwise walks the memtable's skip list — the hottest leaf of the write path's
    // profile (BENCHMARKS.md). 2% of the memtable's size.
    o.set_memtable_whole_key_filtering(true);
    o.set_memtable_prefix_bloom_ratio(0.02);
    let mut table = rocksdb::BlockBasedOptions::default();
    table.set_block_cache(cache);
    // Index and filter blocks stay beside the cache, held by each table reader: ~10 bits
    // per key, a few MB at a million secrets. Kept in the (small) cache instead, they were
    // evicted by data blocks and re-read and re-checksummed on most lookups: 75% of apply's
    // time in the profile (BENCHMARKS.md).
    table.set_bloom_filter(10.0, false);
    o.set_block_based_table_factory(&table);
    if busy {
        // Large values live in blob files beside the tables (RocksDB's integrated BlobDB):
        // written once when a memtable is flushed, then only their small references move
        // through compaction. Without it, compactions rewrote the values again and again:
        // the state machine's whole family on every compaction into the last level, and
        // log entries until the log was purged — 33 KB written to disk per 4 KiB PUT on
        // each node, three times etcd's, and the fsync stalls behind that traffic made most
        // of the write tail (BENCHMARKS.md, "The write tail, found"). Below the threshold
        // (a 256-byte secret; every token, mount and metadata record) nothing changes.
        o.set_enable_blob_files(true);
        o.set_min_blob_size(MIN_BLOB_BYTES);
        o.set_blob_file_size(BLOB_FILE_BYTES);
    }
    if name == CF_SM_DATA {
        // Old versions pruned by `max_versions` leave garbage in blob files; compactions
        // relocate the live blobs of the oldest quarter of the files, so it is reclaimed.
        // The log needs no such thing: it is purged from the front, and a blob file no
        // table refers to any more is deleted whole.
        o.set_enable_blob_gc(true);
    }
    o
}

impl Db {
    /// Opens (creating if needed) the database under `<data_dir>/db` and the snapshot
    /// directory under `<data_dir>/snapshots`, both owner-only.
    pub fn open(data_dir: &Path) -> Result<Arc<Db>, StoreError> {
        create_private_dir(data_dir)?;
        let db_dir = data_dir.join("db");
        create_private_dir(&db_dir)?;
        create_private_dir(&data_dir.join("snapshots"))?;

        let opts = db_options();
        let cache = rocksdb::Cache::new_lru_cache(BLOCK_CACHE_BYTES);
        let cfs = [CF_LOG, CF_RAFT_META, CF_SM_DATA, CF_SM_META]
            .into_iter()
            .map(|name| ColumnFamilyDescriptor::new(name, cf_options(name, &cache)));
        let db = DB::open_cf_descriptors(&opts, &db_dir, cfs)?;
        let db = Db {
            db,
            dir: data_dir.to_path_buf(),
            snapshot_lock: Default::default(),
        };
        if db.format_version()? != Some(FORMAT_VERSION) {
            // None: new, or from before the version was kept (the same layout).
            let mut batch = rocksdb::WriteBatch::default();
            batch.put_cf(
                db.cf(CF_RAFT_META),
                FORMAT_KEY,
                FORMAT_VERSION.to_be_bytes(),
            );
            db.write(batch, Durability::Synced)?;
        }
        Ok(Arc::new(db))
    }

    /// The stamped on-disk format version, `None` if there is none; an error if it is newer
    /// than [`FORMAT_VERSION`].
    pub fn format_version(&self) -> Result<Option<u32>, StoreError> {
        let Some(bytes) = self.get(CF_RAFT_META, FORMAT_KEY)? else {
            return Ok(None);
        };
        let found = <[u8; 4]>::try_from(bytes.as_slice())
            .map(u32::from_be_bytes)
            .unwrap_or(u32::MAX);
        if found > FORMAT_VERSION {
            return Err(StoreError::NewerFormat {
                path: self.dir.clone(),
                found,
            });
        }
        Ok(Some(found))
    }

    /// Opens an existing database without writing anything, or returns `None` when there is
    /// none yet. Used to check the keyring before a node is allowed to start.
    pub fn open_read_only(data_dir: &Path) -> Result<Option<Arc<Db>>, StoreError> {
        let db_dir = data_dir.join("db");
        if !db_dir.join("CURRENT").exists() {
            return Ok(None);
        }
        let opts = Options::default();
        let db = DB::open_cf_for_read_only(
            &opts,
            &db_dir,
            [CF_LOG, CF_RAFT_META, CF_SM_DATA, CF_SM_META],
            false,
        )?;
        let db = Db {
            db,
            dir: data_dir.to_path_buf(),
            snapshot_lock: Default::default(),
        };
        db.format_version()?;
        Ok(Some(Arc::new(db)))
    }

    pub fn get(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get_cf(self.cf(cf), key)?)
    }

    /// Iterates `cf` from `from` (inclusive) forwards, or from its end backwards.
    pub fn iter(&self, cf: &str, mode: rocksdb::IteratorMode<'_>) -> rocksdb::DBIterator<'_> {
        self.db.iterator_cf(self.cf(cf), mode)
    }

    pub fn write(
        &self,
        batch: rocksdb::WriteBatch,
        durability: Durability,
    ) -> Result<(), StoreError> {
        let mut w = WriteOptions::default();
        w.set_sync(durability == Durability::Synced);
        Ok(self.db.write_opt(batch, &w)?)
    }

    /// A point-in-time view of every family.
    pub fn snapshot(&self) -> rocksdb::Snapshot<'_> {
        self.db.snapshot()
    }

    pub fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        // The four families are created at open; a missing one is a programming error.
        self.db
            .cf_handle(name)
            .expect("column family created at open")
    }

    /// Bytes of RocksDB files on disk (tables, blob files, WAL, manifest).
    pub fn disk_usage(&self) -> u64 {
        std::fs::read_dir(self.dir.join("db"))
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok()?.metadata().ok())
                    .filter(|m| m.is_file())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    }

    /// Held while the snapshot files change (see `snapshot.rs`).
    pub fn snapshot_lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.snapshot_lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn snapshot_dir(&self) -> PathBuf {
        self.dir.join("snapshots")
    }
}

/// Runs blocking RocksDB or file work off the async executor.
pub async fn blocking<T, F>(f: F) -> Result<T, StoreError>
where
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Join(e.to_string()))?
}

/// Creates a directory readable only by its owner (secrets live below it).
pub fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| StoreError::io("creating directory", dir, e))?;
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| StoreError::io("restricting directory permissions", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob_files(dir: &Path) -> usize {
        std::fs::read_dir(dir.join("db"))
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                name.to_string_lossy().ends_with(".blob")
            })
            .count()
    }

    fn put(db: &Db, key: &[u8], value: &[u8]) {
        let mut batch = rocksdb::WriteBatch::default();
        batch.put_cf(db.cf(CF_SM_DATA), key, value);
        db.write(batch, Durability::Synced).unwrap();
    }

    #[test]
    fn the_format_version_is_stamped_and_a_newer_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = Db::open(dir.path()).unwrap();
            assert_eq!(db.format_version().unwrap(), Some(FORMAT_VERSION));
            // A directory from before the stamp: the same layout, stamped on the next open.
            let mut batch = rocksdb::WriteBatch::default();
            batch.delete_cf(db.cf(CF_RAFT_META), FORMAT_KEY);
            db.write(batch, Durability::Synced).unwrap();
            assert_eq!(db.format_version().unwrap(), None);
        }
        {
            let db = Db::open(dir.path()).unwrap();
            assert_eq!(db.format_version().unwrap(), Some(FORMAT_VERSION));
            put(&db, b"k", b"v");
            // As a newer raftsafe would leave it.
            let mut batch = rocksdb::WriteBatch::default();
            batch.put_cf(
                db.cf(CF_RAFT_META),
                FORMAT_KEY,
                (FORMAT_VERSION + 1).to_be_bytes(),
            );
            db.write(batch, Durability::Synced).unwrap();
        }
        for refused in [
            Db::open(dir.path()).err(),
            Db::open_read_only(dir.path()).err(),
        ] {
            let e = refused.expect("a newer format is refused").to_string();
            assert!(
                e.contains(&format!("format version {}", FORMAT_VERSION + 1))
                    && e.contains("refusing to start"),
                "{e}"
            );
        }
        // Refused without writing: the stamp is still the newer one.
        let db = DB::open_cf_for_read_only(
            &Options::default(),
            dir.path().join("db"),
            [CF_LOG, CF_RAFT_META, CF_SM_DATA, CF_SM_META],
            false,
        )
        .unwrap();
        let cf = db.cf_handle(CF_RAFT_META).unwrap();
        assert_eq!(
            db.get_cf(cf, FORMAT_KEY).unwrap(),
            Some((FORMAT_VERSION + 1).to_be_bytes().to_vec())
        );
    }

    #[test]
    fn large_values_go_to_blob_files_and_read_back_after_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let big = vec![7u8; 4096];
        let small = vec![3u8; 300];
        {
            let db = Db::open(dir.path()).unwrap();
            // Small values stay in the tables: a flush of them alone writes no blob file.
            put(&db, b"small", &small);
            db.db.flush_cf(db.cf(CF_SM_DATA)).unwrap();
            assert_eq!(
                blob_files(dir.path()),
                0,
                "a 300-byte value went to a blob file"
            );
            put(&db, b"big", &big);
            db.db.flush_cf(db.cf(CF_SM_DATA)).unwrap();
            assert_eq!(
                blob_files(dir.path()),
                1,
                "a 4 KiB value stayed in the tables"
            );
            assert_eq!(db.get(CF_SM_DATA, b"big").unwrap(), Some(big.clone()));
        }
        let db = Db::open(dir.path()).unwrap();
        assert_eq!(db.get(CF_SM_DATA, b"big").unwrap(), Some(big.clone()));
        assert_eq!(db.get(CF_SM_DATA, b"small").unwrap(), Some(small));
        drop(db);
        // The read-only open (the keyring check before a node starts) reads blobs too.
        let ro = Db::open_read_only(dir.path()).unwrap().unwrap();
        assert_eq!(ro.get(CF_SM_DATA, b"big").unwrap(), Some(big));
    }
}
