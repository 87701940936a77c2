//! Backup files: a consistent point-in-time copy of the cluster's data, exactly as stored
//! (values and tokens sealed, data keys wrapped under the master key), with a header an
//! operator can read and check without the master key.
//!
//! Layout: `MAGIC` · u32 BE header length · header (JSON, [`BackupHeader`]) · 32-byte tag ·
//! body. The body is the data pairs in key order, each `u32 BE key length · key · u32 BE
//! value length · value`. The header carries the SHA-256 and the length of the body and the
//! pair count; the tag is an HMAC-SHA256 of the magic and the header under a key derived
//! from the master key (`secret::keyring::MacPurpose::Backup`), so it authenticates the
//! body too, through the header's hash.
//!
//! Invariants:
//! - Only data keys are exported (`secret::machine::keys::is_data`): the dedup table and a
//!   restore's staging area are bookkeeping of the cluster that made the backup.
//! - The header and the body come from one RocksDB snapshot, so the applied index in the
//!   header is exactly the state in the body.
//! - A file whose magic, header, length, pair count or checksum does not match is refused
//!   with an error that says which; nothing is restored from it.
//! - Anyone can check a file's integrity (the checksum); only a holder of the master key
//!   can make or check its tag. A restore requires a valid tag
//!   ([`BackupReader::authenticate`]): an edited backup — reviving a revoked token,
//!   undoing a key rotation, swapping versions — is refused. This module never sees the
//!   key: the caller signs and verifies (the store does not depend on the barrier).

use std::io::{Read, Write};
use std::path::Path;

use rocksdb::IteratorMode;
use serde::{Deserialize, Serialize};

use super::{Db, StoreError, CF_SM_DATA, CF_SM_META};
use crate::secret::machine::{keys, Pair};

pub const MAGIC: &[u8; 16] = b"RAFTSAFE-BACKUP\n";
/// Format 1 (before backups were authenticated) is refused: it could have been edited.
pub const FORMAT: u32 = 2;
/// Bytes of the header's tag.
pub const TAG_BYTES: usize = 32;
const MAX_HEADER: u32 = 64 * 1024;
const MAX_ITEM: u32 = 64 << 20;

/// What a backup holds, readable without the master key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackupHeader {
    pub format: u32,
    /// The SHA-256 fingerprint (16 hex digits) of the cluster's first wrapped data key: the
    /// same for every backup of one cluster (and of a cluster restored from it).
    pub cluster_id: String,
    /// The log index the state was applied up to.
    pub applied_index: u64,
    pub created_at: String,
    pub pairs: u64,
    pub body_bytes: u64,
    pub body_sha256: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("not a raftsafe backup (it does not start with the backup marker)")]
    NotABackup,
    #[error("backup header is unreadable: {0}")]
    Header(String),
    #[error("backup format {0} is not supported (this build reads format {FORMAT}; format 1 backups are not authenticated: take a new backup)")]
    Format(u32),
    #[error("backup is truncated: {0}")]
    Truncated(String),
    #[error("backup is not authenticated by this cluster's master key (it was edited, or made by a cluster with another master key)")]
    Unauthenticated,
    #[error("backup body checksum mismatch: the header says {expected}, the body hashes to {actual} (the file was changed or damaged)")]
    Checksum { expected: String, actual: String },
    #[error("backup body does not match its header: {0}")]
    Mismatch(String),
    #[error("the backup was sealed with another master key: {0}")]
    ForeignKey(String),
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// The cluster id: a fingerprint of wrapped data key 1 (see [`BackupHeader::cluster_id`]).
pub fn cluster_id(wrapped_key_1: Option<&[u8]>) -> String {
    match wrapped_key_1 {
        Some(w) => hex::encode(&ring::digest::digest(&ring::digest::SHA256, w).as_ref()[..8]),
        None => "uninitialized".into(),
    }
}

fn encode_pair(out: &mut Vec<u8>, k: &[u8], v: &[u8]) {
    out.extend_from_slice(&(k.len() as u32).to_be_bytes());
    out.extend_from_slice(k);
    out.extend_from_slice(&(v.len() as u32).to_be_bytes());
    out.extend_from_slice(v);
}

/// What the header's tag covers: the magic, then the header's bytes as written.
fn signed_bytes(json: &[u8]) -> Vec<u8> {
    let mut signed = MAGIC.to_vec();
    signed.extend_from_slice(json);
    signed
}

/// Writes a backup of `db` as of `snap` to `out`, streaming: one pass over the snapshot
/// computes the header (count, length, checksum), `sign` tags it, a second pass over the
/// same snapshot writes the body. Returns the header.
pub fn export(
    db: &Db,
    snap: &rocksdb::Snapshot<'_>,
    created_at_ms: u64,
    sign: impl FnOnce(&[u8]) -> [u8; TAG_BYTES],
    out: &mut impl Write,
) -> Result<BackupHeader, BackupError> {
    let meta = db.cf(CF_SM_META);
    let applied: Option<crate::store::types::LogId> = match snap
        .get_cf(meta, b"last_applied")
        .map_err(StoreError::from)?
    {
        Some(b) => crate::codec::decode(&b).map_err(|source| StoreError::Decode {
            what: "last applied log id",
            source,
        })?,
        None => None,
    };
    let data = db.cf(CF_SM_DATA);
    let key1 = snap
        .get_cf(data, keys::data_key(1))
        .map_err(StoreError::from)?;
    let mut hash = ring::digest::Context::new(&ring::digest::SHA256);
    let (mut pairs, mut body_bytes) = (0u64, 0u64);
    let mut buf = Vec::with_capacity(64 * 1024);
    for item in snap.iterator_cf(data, IteratorMode::Start) {
        let (k, v) = item.map_err(StoreError::from)?;
        if !keys::is_data(&k) {
            continue;
        }
        buf.clear();
        encode_pair(&mut buf, &k, &v);
        hash.update(&buf);
        pairs += 1;
        body_bytes += buf.len() as u64;
    }
    let header = BackupHeader {
        format: FORMAT,
        cluster_id: cluster_id(key1.as_deref()),
        applied_index: applied.map_or(0, |l| l.index),
        created_at: crate::time::rfc3339(created_at_ms),
        pairs,
        body_bytes,
        body_sha256: hex::encode(hash.finish()),
    };
    let json = serde_json::to_vec(&header).map_err(|e| BackupError::Header(e.to_string()))?;
    let io = |source| BackupError::Io {
        path: "backup stream".into(),
        source,
    };
    out.write_all(MAGIC).map_err(io)?;
    out.write_all(&(json.len() as u32).to_be_bytes())
        .map_err(io)?;
    out.write_all(&json).map_err(io)?;
    out.write_all(&sign(&signed_bytes(&json))).map_err(io)?;
    buf.clear();
    for item in snap.iterator_cf(data, IteratorMode::Start) {
        let (k, v) = item.map_err(StoreError::from)?;
        if !keys::is_data(&k) {
            continue;
        }
        encode_pair(&mut buf, &k, &v);
        if buf.len() >= 64 * 1024 {
            out.write_all(&buf).map_err(io)?;
            buf.clear();
        }
    }
    out.write_all(&buf).map_err(io)?;
    out.flush().map_err(io)?;
    Ok(header)
}

/// Reads a backup: the header first, then the pairs in order; the checksum, length and
/// count are checked when the last pair has been read.
pub struct BackupReader<R: Read> {
    input: R,
    header: BackupHeader,
    /// The header's bytes as read, and its tag.
    signed: Vec<u8>,
    tag: [u8; TAG_BYTES],
    hash: ring::digest::Context,
    read_pairs: u64,
    read_bytes: u64,
}

fn read_exact(r: &mut impl Read, buf: &mut [u8], what: &str) -> Result<(), BackupError> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => {
            BackupError::Truncated(format!("it ends inside {what}"))
        }
        _ => BackupError::Io {
            path: "backup".into(),
            source: e,
        },
    })
}

impl<R: Read> BackupReader<R> {
    pub fn new(mut input: R) -> Result<BackupReader<R>, BackupError> {
        let mut magic = [0u8; 16];
        input
            .read_exact(&mut magic)
            .map_err(|_| BackupError::NotABackup)?;
        if &magic != MAGIC {
            return Err(BackupError::NotABackup);
        }
        let mut len = [0u8; 4];
        read_exact(&mut input, &mut len, "the header length")?;
        let len = u32::from_be_bytes(len);
        if len > MAX_HEADER {
            return Err(BackupError::Header(format!("header of {len} bytes")));
        }
        let mut json = vec![0u8; len as usize];
        read_exact(&mut input, &mut json, "the header")?;
        let header: BackupHeader =
            serde_json::from_slice(&json).map_err(|e| BackupError::Header(e.to_string()))?;
        if header.format != FORMAT {
            return Err(BackupError::Format(header.format));
        }
        let mut tag = [0u8; TAG_BYTES];
        read_exact(&mut input, &mut tag, "the header's tag")?;
        Ok(BackupReader {
            input,
            header,
            signed: signed_bytes(&json),
            tag,
            hash: ring::digest::Context::new(&ring::digest::SHA256),
            read_pairs: 0,
            read_bytes: 0,
        })
    }

    pub fn header(&self) -> &BackupHeader {
        &self.header
    }

    /// Checks the header's tag with `verify(signed bytes, tag)` (the master key's holder).
    /// The body is covered through the header's checksum, checked as it is read.
    pub fn authenticate(
        &self,
        verify: impl FnOnce(&[u8], &[u8]) -> bool,
    ) -> Result<(), BackupError> {
        if verify(&self.signed, &self.tag) {
            Ok(())
        } else {
            Err(BackupError::Unauthenticated)
        }
    }

    fn item(&mut self, what: &str) -> Result<Vec<u8>, BackupError> {
        let mut len = [0u8; 4];
        read_exact(&mut self.input, &mut len, what)?;
        let n = u32::from_be_bytes(len);
        if n > MAX_ITEM {
            return Err(BackupError::Mismatch(format!("{what} of {n} bytes")));
        }
        let mut v = vec![0u8; n as usize];
        read_exact(&mut self.input, &mut v, what)?;
        self.hash.update(&len);
        self.hash.update(&v);
        self.read_bytes += 4 + n as u64;
        Ok(v)
    }

    /// The next pair, or `None` after the last one — once the body checked out.
    pub fn next_pair(&mut self) -> Result<Option<Pair>, BackupError> {
        if self.read_pairs == self.header.pairs {
            return self.finish().map(|_| None);
        }
        let k = self.item("a key")?;
        let v = self.item("a value")?;
        if !keys::is_data(&k) {
            return Err(BackupError::Mismatch(
                "a bookkeeping key in the body".into(),
            ));
        }
        self.read_pairs += 1;
        Ok(Some((k, v)))
    }

    fn finish(&mut self) -> Result<(), BackupError> {
        let mut extra = [0u8; 1];
        let more = self.input.read(&mut extra).map_err(|e| BackupError::Io {
            path: "backup".into(),
            source: e,
        })?;
        if more != 0 {
            return Err(BackupError::Mismatch(format!(
                "more data after the {} pairs the header announces",
                self.header.pairs
            )));
        }
        if self.read_bytes != self.header.body_bytes {
            return Err(BackupError::Mismatch(format!(
                "body is {} bytes, the header says {}",
                self.read_bytes, self.header.body_bytes
            )));
        }
        let actual = hex::encode(self.hash.clone().finish());
        if actual != self.header.body_sha256 {
            return Err(BackupError::Checksum {
                expected: self.header.body_sha256.clone(),
                actual,
            });
        }
        Ok(())
    }
}

/// Opens `path` as a backup.
pub fn open(path: &Path) -> Result<BackupReader<std::io::BufReader<std::fs::File>>, BackupError> {
    let f = std::fs::File::open(path).map_err(|source| BackupError::Io {
        path: path.display().to_string(),
        source,
    })?;
    BackupReader::new(std::io::BufReader::with_capacity(1 << 20, f))
}

/// Reads the whole file and checks it; returns its header.
pub fn verify(path: &Path) -> Result<BackupHeader, BackupError> {
    let mut r = open(path)?;
    while r.next_pair()?.is_some() {}
    Ok(r.header)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ring::hmac::Key {
        ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"test backup key")
    }

    fn verifier(key: ring::hmac::Key) -> impl FnOnce(&[u8], &[u8]) -> bool {
        move |data, tag| ring::hmac::verify(&key, data, tag).is_ok()
    }

    fn sample() -> Vec<u8> {
        sample_of(&[
            (b"ma".to_vec(), vec![1, 2]),
            (b"va\0x".to_vec(), vec![3; 40]),
        ])
    }

    /// A backup of `pairs`, tagged with [`key`], as `export` writes one.
    fn sample_of(pairs: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
        let mut body = Vec::new();
        for (k, v) in pairs {
            encode_pair(&mut body, k, v);
        }
        let header = BackupHeader {
            format: FORMAT,
            cluster_id: "c".into(),
            applied_index: 9,
            created_at: "t".into(),
            pairs: pairs.len() as u64,
            body_bytes: body.len() as u64,
            body_sha256: hex::encode(ring::digest::digest(&ring::digest::SHA256, &body)),
        };
        let json = serde_json::to_vec(&header).unwrap();
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&(json.len() as u32).to_be_bytes());
        out.extend_from_slice(&json);
        out.extend_from_slice(ring::hmac::sign(&key(), &signed_bytes(&json)).as_ref());
        out.extend_from_slice(&body);
        out
    }

    fn check(bytes: &[u8]) -> Result<u64, BackupError> {
        let mut r = BackupReader::new(bytes)?;
        let mut n = 0;
        while r.next_pair()?.is_some() {
            n += 1;
        }
        Ok(n)
    }

    #[test]
    fn reads_back_and_refuses_every_kind_of_damage() {
        let good = sample();
        assert_eq!(check(&good).unwrap(), 2);
        assert!(matches!(check(b"hello"), Err(BackupError::NotABackup)));
        for cut in [20, 40, good.len() - 1] {
            let e = check(&good[..cut]).unwrap_err();
            assert!(
                matches!(e, BackupError::Truncated(_) | BackupError::Header(_)),
                "cut at {cut}: {e}"
            );
        }
        let mut flipped = good.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(matches!(check(&flipped), Err(BackupError::Checksum { .. })));
        let mut longer = good.clone();
        longer.push(0);
        assert!(matches!(check(&longer), Err(BackupError::Mismatch(_))));
    }

    #[test]
    fn only_the_keys_holder_can_make_a_backup_that_authenticates() {
        let good = sample();
        let r = BackupReader::new(good.as_slice()).unwrap();
        r.authenticate(verifier(key())).unwrap();
        let other = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"another master");
        assert!(matches!(
            r.authenticate(verifier(other)),
            Err(BackupError::Unauthenticated)
        ));
        // An edit that keeps the file self-consistent (a new body, its checksum recomputed
        // in the header) but reuses the original tag: the checksum passes, the tag does not.
        let edited = sample_of(&[(b"ma".to_vec(), vec![9, 9])]);
        let json_len = |b: &[u8]| u32::from_be_bytes(b[16..20].try_into().unwrap()) as usize;
        let tag_at = |b: &[u8]| 20 + json_len(b);
        let mut forged = edited.clone();
        let (from, to) = (tag_at(&good), tag_at(&edited));
        forged[to..to + TAG_BYTES].copy_from_slice(&good[from..from + TAG_BYTES]);
        assert_eq!(check(&forged).unwrap(), 1, "integrity alone accepts it");
        let r = BackupReader::new(forged.as_slice()).unwrap();
        assert!(matches!(
            r.authenticate(verifier(key())),
            Err(BackupError::Unauthenticated)
        ));
    }
}
