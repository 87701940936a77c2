//! Snapshot files: the state machine's data at one applied log id, streamed to and from disk
//! so that neither building, sending nor installing a snapshot holds the state in memory.
//!
//! Layout of a file (all integers big-endian):
//! `MAGIC` · u32 meta length · meta (codec) · { u32 key length (> 0) · key · u32 value
//! length · value }* · u32 0 · SHA-256 of everything before it (32 bytes).
//!
//! Files in `<data_dir>/snapshots/`:
//! - `current.snap`: the newest complete snapshot. Replaced only by rename, after the new file
//!   was fsync'd and verified, then the directory is fsync'd: a crash leaves the old or the
//!   new one, never a torn one. It never moves backwards to an older log id.
//! - `building.snap`: a snapshot being built on this node.
//! - `incoming.snap`: a snapshot being received from the leader, chunk by chunk. It becomes
//!   `current.snap` once its checksum verifies (see [`secure_incoming`]).
//!
//! Invariants:
//! - The file holds the state machine's key/value pairs exactly as stored, so secret values
//!   in it are as sealed as in RocksDB.
//! - Every reader checks the magic, the lengths and (before an install) the checksum: a
//!   truncated or corrupted file is refused, never half-installed.
//! - Callers serialize [`promote`] with the database's snapshot lock.
//! - A file being built is written back to the disk as it grows (every
//!   [`WRITEBACK_EVERY`] bytes), not in one burst at its fsync, so the log's fsyncs on the
//!   same disk do not queue behind it.

use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use super::types::SnapshotMeta;
use super::StoreError;
use crate::codec;

const MAGIC: &[u8; 8] = b"RSSNAP02";
const CURRENT: &str = "current.snap";
const BUILDING: &str = "building.snap";
const INCOMING: &str = "incoming.snap";
/// Largest key or value a snapshot may hold (values are capped far below this at the API).
const MAX_ITEM: u32 = 64 << 20;
const BUF: usize = 1 << 20;
/// A snapshot's writeback is started after every this many bytes (see
/// [`SnapshotWriter::start_writeback`]).
const WRITEBACK_EVERY: u64 = 1 << 20;

pub fn current_path(dir: &Path) -> PathBuf {
    dir.join(CURRENT)
}

pub fn building_path(dir: &Path) -> PathBuf {
    dir.join(BUILDING)
}

pub fn incoming_path(dir: &Path) -> PathBuf {
    dir.join(INCOMING)
}

fn corrupt(path: &Path, why: impl Into<String>) -> StoreError {
    StoreError::io(
        "reading snapshot",
        path,
        std::io::Error::new(std::io::ErrorKind::InvalidData, why.into()),
    )
}

pub use crate::secret::machine::Pair;

/// Writes a snapshot file, pair by pair, hashing as it goes.
pub struct SnapshotWriter {
    out: BufWriter<File>,
    hash: ring::digest::Context,
    path: PathBuf,
    /// Bytes handed to `out` so far, and that count when writeback was last started.
    written: u64,
    writeback_at: u64,
}

impl SnapshotWriter {
    /// Starts `path` (truncating it) with the header for `meta`.
    pub fn create(path: &Path, meta: &SnapshotMeta) -> Result<SnapshotWriter, StoreError> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| StoreError::io("creating snapshot", path, e))?;
        let mut w = SnapshotWriter {
            out: BufWriter::with_capacity(BUF, file),
            hash: ring::digest::Context::new(&ring::digest::SHA256),
            path: path.to_path_buf(),
            written: 0,
            writeback_at: 0,
        };
        let meta = codec::encode(meta);
        w.write(MAGIC)?;
        w.write(&(meta.len() as u32).to_be_bytes())?;
        w.write(&meta)?;
        Ok(w)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.hash.update(bytes);
        self.out
            .write_all(bytes)
            .map_err(|e| StoreError::io("writing snapshot", &self.path, e))?;
        self.written += bytes.len() as u64;
        if self.written - self.writeback_at >= WRITEBACK_EVERY {
            self.writeback_at = self.written;
            self.start_writeback()?;
        }
        Ok(())
    }

    /// Starts the kernel's writeback of what was written so far, without waiting for it
    /// (`sync_file_range(SYNC_FILE_RANGE_WRITE)`; RocksDB's `bytes_per_sync` does the same).
    /// Durability still comes from the fsync in [`finish`](Self::finish); this only keeps
    /// the dirty pages from piling up until then, so the snapshot reaches the disk as a
    /// trickle instead of one burst that the log's fsyncs queue behind.
    fn start_writeback(&mut self) -> Result<(), StoreError> {
        use std::os::fd::AsRawFd;
        self.out
            .flush()
            .map_err(|e| StoreError::io("writing snapshot", &self.path, e))?;
        // SAFETY: the descriptor is the open file `out` owns; the call only starts I/O.
        unsafe {
            libc::sync_file_range(
                self.out.get_ref().as_raw_fd(),
                0,
                0,
                libc::SYNC_FILE_RANGE_WRITE,
            );
        }
        Ok(())
    }

    pub fn pair(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        debug_assert!(!key.is_empty(), "state machine keys are never empty");
        self.write(&(key.len() as u32).to_be_bytes())?;
        self.write(key)?;
        self.write(&(value.len() as u32).to_be_bytes())?;
        self.write(value)
    }

    /// Writes the end marker and the checksum, and fsyncs the file.
    pub fn finish(mut self) -> Result<(), StoreError> {
        self.write(&0u32.to_be_bytes())?;
        let digest = self.hash.clone().finish();
        self.out
            .write_all(digest.as_ref())
            .map_err(|e| StoreError::io("writing snapshot", &self.path, e))?;
        let file = self
            .out
            .into_inner()
            .map_err(|e| StoreError::io("writing snapshot", &self.path, e.into_error()))?;
        file.sync_all()
            .map_err(|e| StoreError::io("syncing snapshot", &self.path, e))
    }
}

/// Reads a snapshot file pair by pair, checking the checksum at the end.
pub struct SnapshotReader {
    input: BufReader<File>,
    hash: ring::digest::Context,
    path: PathBuf,
    meta: SnapshotMeta,
    done: bool,
}

impl SnapshotReader {
    pub fn open(path: &Path) -> Result<SnapshotReader, StoreError> {
        let file = File::open(path).map_err(|e| StoreError::io("opening snapshot", path, e))?;
        let mut r = SnapshotReader {
            input: BufReader::with_capacity(BUF, file),
            hash: ring::digest::Context::new(&ring::digest::SHA256),
            path: path.to_path_buf(),
            meta: SnapshotMeta::default(),
            done: false,
        };
        let mut magic = [0u8; 8];
        r.read_exact(&mut magic)?;
        if &magic != MAGIC {
            return Err(corrupt(path, "not a raftsafe snapshot (bad magic)"));
        }
        let len = r.read_u32()?;
        if len > MAX_ITEM {
            return Err(corrupt(path, format!("snapshot header of {len} bytes")));
        }
        let mut meta = vec![0u8; len as usize];
        r.read_exact(&mut meta)?;
        r.meta =
            codec::decode(&meta).map_err(|e| corrupt(path, format!("snapshot header: {e}")))?;
        Ok(r)
    }

    pub fn meta(&self) -> &SnapshotMeta {
        &self.meta
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), StoreError> {
        self.input.read_exact(buf).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                corrupt(&self.path, "snapshot is truncated")
            } else {
                StoreError::io("reading snapshot", &self.path, e)
            }
        })?;
        self.hash.update(buf);
        Ok(())
    }

    fn read_u32(&mut self) -> Result<u32, StoreError> {
        let mut b = [0u8; 4];
        self.read_exact(&mut b)?;
        Ok(u32::from_be_bytes(b))
    }

    fn read_item(&mut self, len: u32) -> Result<Vec<u8>, StoreError> {
        if len > MAX_ITEM {
            return Err(corrupt(&self.path, format!("item of {len} bytes")));
        }
        let mut v = vec![0u8; len as usize];
        self.read_exact(&mut v)?;
        Ok(v)
    }

    /// The next pair, or `None` at the end — after the checksum verified.
    pub fn next_pair(&mut self) -> Result<Option<Pair>, StoreError> {
        if self.done {
            return Ok(None);
        }
        let klen = self.read_u32()?;
        if klen == 0 {
            let expected = self.hash.clone().finish();
            let mut got = [0u8; 32];
            self.input
                .read_exact(&mut got)
                .map_err(|_| corrupt(&self.path, "snapshot is truncated (no checksum)"))?;
            if got != expected.as_ref() {
                return Err(corrupt(&self.path, "snapshot checksum mismatch"));
            }
            let mut extra = [0u8; 1];
            if self.input.read(&mut extra).unwrap_or(0) != 0 {
                return Err(corrupt(&self.path, "bytes after the snapshot checksum"));
            }
            self.done = true;
            return Ok(None);
        }
        let key = self.read_item(klen)?;
        let vlen = self.read_u32()?;
        let value = self.read_item(vlen)?;
        Ok(Some((key, value)))
    }
}

/// Reads the whole file and checks it; returns its meta.
pub fn verify(path: &Path) -> Result<SnapshotMeta, StoreError> {
    let mut r = SnapshotReader::open(path)?;
    while r.next_pair()?.is_some() {}
    Ok(r.meta)
}

/// The meta of `path`, without reading the pairs; `None` if the file does not exist.
pub fn read_meta(path: &Path) -> Result<Option<SnapshotMeta>, StoreError> {
    match SnapshotReader::open(path) {
        Ok(r) => Ok(Some(r.meta)),
        Err(StoreError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Makes the verified, fsync'd file `from` the current snapshot unless the current one is at
/// least as new. Returns whether it did; `from` is removed either way. The caller holds the
/// snapshot lock.
pub fn promote(dir: &Path, from: &Path, meta: &SnapshotMeta) -> Result<bool, StoreError> {
    let current = current_path(dir);
    if let Some(existing) = read_meta(&current).ok().flatten() {
        if existing.last_log_id >= meta.last_log_id && existing.snapshot_id != meta.snapshot_id {
            let _ = fs::remove_file(from);
            return Ok(false);
        }
    }
    fs::rename(from, &current).map_err(|e| StoreError::io("renaming snapshot", &current, e))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io("syncing snapshot directory", dir, e))?;
    Ok(true)
}

/// If a snapshot received from the leader is complete in `incoming.snap` and covers at least
/// `upto` (when given), fsyncs it and makes it current. Called when the install begins, and
/// by the log store before it purges (openraft may purge the log a follower's snapshot covers
/// before the state machine has installed it; the snapshot must be durable first). The
/// caller holds the snapshot lock. Returns the meta of the snapshot made current.
pub fn secure_incoming(dir: &Path, upto: Option<u64>) -> Result<Option<SnapshotMeta>, StoreError> {
    let incoming = incoming_path(dir);
    let Some(meta) = read_meta(&incoming).ok().flatten() else {
        return Ok(None);
    };
    if upto.is_some_and(|u| meta.last_log_id.map(|l| l.index) < Some(u)) {
        return Ok(None);
    }
    // The last chunk may still be on its way from openraft's writer to the file; a file
    // that does not verify yet is retried briefly, then left alone.
    let mut verified = None;
    for attempt in 0..20 {
        match verify(&incoming) {
            Ok(m) => {
                verified = Some(m);
                break;
            }
            Err(e) if attempt == 19 => {
                tracing::warn!(error = %e, "received snapshot does not verify; not installing it");
            }
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(50)),
        }
    }
    let Some(meta) = verified else {
        return Ok(None);
    };
    File::open(&incoming)
        .and_then(|f| f.sync_all())
        .map_err(|e| StoreError::io("syncing snapshot", &incoming, e))?;
    promote(dir, &incoming, &meta)?;
    Ok(Some(meta))
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, LogId};

    fn meta(index: u64) -> SnapshotMeta {
        SnapshotMeta {
            last_log_id: Some(LogId::new(CommittedLeaderId::new(1, 1), index)),
            last_membership: Default::default(),
            snapshot_id: format!("s-{index}"),
        }
    }

    /// The index the current snapshot file covers.
    fn current_index(dir: &Path) -> u64 {
        read_meta(&current_path(dir))
            .unwrap()
            .unwrap()
            .last_log_id
            .unwrap()
            .index
    }

    fn write(path: &Path, index: u64, pairs: &[(&[u8], &[u8])]) {
        let mut w = SnapshotWriter::create(path, &meta(index)).unwrap();
        for (k, v) in pairs {
            w.pair(k, v).unwrap();
        }
        w.finish().unwrap();
    }

    #[test]
    fn round_trips_and_refuses_damage() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.snap");
        write(&p, 7, &[(b"k1", b"v1"), (b"k2", b"")]);
        let mut r = SnapshotReader::open(&p).unwrap();
        assert_eq!(r.meta().last_log_id.unwrap().index, 7);
        assert_eq!(
            r.next_pair().unwrap(),
            Some((b"k1".to_vec(), b"v1".to_vec()))
        );
        assert_eq!(r.next_pair().unwrap(), Some((b"k2".to_vec(), vec![])));
        assert_eq!(r.next_pair().unwrap(), None);

        let bytes = fs::read(&p).unwrap();
        for cut in [3, 20, bytes.len() - 10, bytes.len() - 1] {
            fs::write(&p, &bytes[..cut]).unwrap();
            assert!(verify(&p).is_err(), "truncated at {cut} must be refused");
        }
        for flip in [30, bytes.len() - 40, bytes.len() - 1] {
            let mut b = bytes.clone();
            b[flip] ^= 1;
            fs::write(&p, &b).unwrap();
            assert!(
                verify(&p).is_err(),
                "a flipped byte at {flip} must be refused"
            );
        }
    }

    #[test]
    fn current_only_moves_forward() {
        let dir = tempfile::tempdir().unwrap();
        let (d, b) = (dir.path(), building_path(dir.path()));
        write(&b, 10, &[(b"k", b"new")]);
        assert!(promote(d, &b, &meta(10)).unwrap());
        write(&b, 5, &[(b"k", b"old")]);
        assert!(!promote(d, &b, &meta(5)).unwrap());
        assert!(!b.exists());
        assert_eq!(current_index(d), 10);
    }

    #[test]
    fn incoming_is_secured_only_when_complete_and_covering() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(&incoming_path(d), 20, &[(b"k", b"v")]);
        assert!(
            secure_incoming(d, Some(30)).unwrap().is_none(),
            "does not cover 30"
        );
        let m = secure_incoming(d, Some(20)).unwrap().unwrap();
        assert_eq!(m.last_log_id.unwrap().index, 20);
        assert!(!incoming_path(d).exists());
        assert!(current_path(d).exists());
        // A torn incoming file is never made current.
        write(&incoming_path(d), 40, &[(b"k", b"v2")]);
        let bytes = fs::read(incoming_path(d)).unwrap();
        fs::write(incoming_path(d), &bytes[..bytes.len() - 5]).unwrap();
        assert!(secure_incoming(d, None).unwrap().is_none());
        assert_eq!(current_index(d), 20);
    }
}
