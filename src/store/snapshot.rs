//! Snapshot files: the state machine's data at one applied log id, kept on disk so that
//! openraft can send it to lagging followers and so a restart need not rebuild it.
//!
//! Invariants:
//! - There is at most one current snapshot file, `snapshots/current.snap`. It is replaced
//!   atomically (write `current.snap.tmp`, fsync, rename, fsync the directory), so a crash
//!   leaves either the old or the new snapshot, never a torn one.
//! - A snapshot never replaces a newer one: builds and installs may race, and the file
//!   must only move forward.
//! - The file holds the snapshot meta and the state machine's key/value pairs as stored,
//!   so secret values in it are exactly as sealed as in RocksDB.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::types::SnapshotMeta;
use super::StoreError;
use crate::codec;

const CURRENT: &str = "current.snap";
const TMP: &str = "current.snap.tmp";

/// The snapshot payload that travels to followers: the state machine's pairs.
#[derive(Serialize, Deserialize)]
pub struct SnapshotData {
    pub pairs: Vec<(Vec<u8>, Vec<u8>)>,
}

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

/// Loads the current snapshot file, if any.
pub fn load(dir: &Path) -> Result<Option<(SnapshotMeta, Vec<u8>)>, StoreError> {
    let path = dir.join(CURRENT);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::io("reading snapshot", path, e)),
    };
    let stored: StoredSnapshot = codec::decode(&bytes).map_err(|source| StoreError::Decode {
        what: "snapshot file",
        source,
    })?;
    Ok(Some((stored.meta, stored.data)))
}

/// Saves `data` as the current snapshot unless the current one is newer. Returns whether
/// it was written. Callers serialize calls (the state machine holds a lock around it).
pub fn save(dir: &Path, meta: &SnapshotMeta, data: &[u8]) -> Result<bool, StoreError> {
    if let Some((existing, _)) = load(dir)? {
        if existing.last_log_id > meta.last_log_id {
            return Ok(false);
        }
    }
    let stored = StoredSnapshot {
        meta: meta.clone(),
        data: data.to_vec(),
    };
    let tmp: PathBuf = dir.join(TMP);
    let bytes = codec::encode(&stored);
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| StoreError::io("creating snapshot", &tmp, e))?;
        f.write_all(&bytes)
            .map_err(|e| StoreError::io("writing snapshot", &tmp, e))?;
        f.sync_all()
            .map_err(|e| StoreError::io("syncing snapshot", &tmp, e))?;
    }
    let current = dir.join(CURRENT);
    fs::rename(&tmp, &current).map_err(|e| StoreError::io("renaming snapshot", &current, e))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io("syncing snapshot directory", dir, e))?;
    Ok(true)
}
