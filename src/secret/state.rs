//! The vocabulary the pure apply logic is written in, shared by [`super::machine`] (which
//! dispatches commands) and the modules it delegates to ([`super::versions`],
//! [`super::mount`], [`super::restore`]): the stored records, the key layout, the read-only
//! view of the state ([`StateRead`]) and the change set an entry builds up ([`Changes`]).
//!
//! Invariants:
//! - Nothing here reads a clock, randomness or local state: it is as deterministic as apply.
//! - [`Changes`] is the only way apply writes; reads through it see the entry's own earlier
//!   writes, so a batch applies exactly as its ops would one after another.
//! - This module imports none of the modules that use it, so the apply logic has no import
//!   cycle: `machine` → `versions` / `mount` / `restore` → `state`.
//!
//! The key layout is described in [`super::machine`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::command::Metadata;
use super::crypto::Sealed;
use super::path::SecretPath;
use crate::codec::{self, CodecError};

/// Per-path metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretMeta {
    /// Highest version written (deleted or not); 0 never occurs in storage.
    pub current_version: u64,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
}

/// One stored version of a secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionRecord {
    pub sealed: Sealed,
    pub created_at_ms: u64,
    pub deleted_at_ms: Option<u64>,
}

impl VersionRecord {
    /// A destroyed version keeps its record with no sealed bytes (a sealed value is never
    /// empty: it has at least a header and a tag).
    pub fn is_destroyed(&self) -> bool {
        self.sealed.is_empty()
    }

    pub fn metadata(&self, meta: &SecretMeta, version: u64) -> Metadata {
        Metadata {
            version,
            created_at_ms: meta.created_at_ms,
            updated_at_ms: self.created_at_ms,
            deleted_at_ms: self.deleted_at_ms,
        }
    }
}

pub mod keys {
    use super::SecretPath;

    pub const META: u8 = b'm';
    pub const VERSION: u8 = b'v';
    pub const DEDUP: u8 = b'r';
    pub const DEDUP_SLOT: u8 = b'q';
    pub const DEDUP_COUNTER: u8 = b'c';
    pub const DATA_KEY: u8 = b'k';
    pub const CURRENT_KEY: &[u8] = b"K";
    pub const TOKEN: u8 = b't';
    pub const REVOKED: u8 = b'x';
    pub const BOOTSTRAPPED: &[u8] = b"b";
    pub const RESTORE: &[u8] = b"R";
    pub const STAGING: u8 = b'Z';
    pub const SETTINGS: u8 = b's';
    pub const MOUNT: u8 = b'n';
    pub const MOUNT_KEY: u8 = b'N';
    /// Login roles, their AppRole ids and secret ids, login tokens' leases, the JWT
    /// configuration (`super::super::login`).
    pub const ROLE: u8 = b'u';
    pub const ROLE_ID: u8 = b'y';
    pub const SECRET_ID: u8 = b'w';
    pub const LEASE: u8 = b'e';
    /// A path's custom metadata (`C<path>`, [`super::super::custom`]).
    pub const CUSTOM_METADATA: u8 = b'C';
    /// A named ACL policy (`P<name>`, [`super::super::acl`]).
    pub const ACL_POLICY: u8 = b'P';
    /// A Vault KV v2 mount (`V<path>`, [`super::super::kv_mount`]).
    pub const KV_MOUNT: u8 = b'V';
    /// First bytes of the keys that are bookkeeping, not data (see the module doc).
    pub const OPERATIONAL: &[u8] = b"cqrRZ";

    /// Whether `key` holds the cluster's data (backed up, replaced by a restore).
    pub fn is_data(key: &[u8]) -> bool {
        key.first().is_some_and(|b| !OPERATIONAL.contains(b))
    }

    pub fn data_key(id: u32) -> Vec<u8> {
        let mut k = vec![DATA_KEY];
        k.extend_from_slice(&id.to_be_bytes());
        k
    }

    /// The id of a data key's key (`k` + u32 BE), or `None` for any other key.
    pub fn data_key_id(key: &[u8]) -> Option<u32> {
        match key {
            [DATA_KEY, id @ ..] => Some(u32::from_be_bytes(id.try_into().ok()?)),
            _ => None,
        }
    }

    pub fn token(accessor: &str) -> Vec<u8> {
        let mut k = vec![TOKEN];
        k.extend_from_slice(accessor.as_bytes());
        k
    }

    pub fn revoked(accessor: &str) -> Vec<u8> {
        let mut k = vec![REVOKED];
        k.extend_from_slice(accessor.as_bytes());
        k
    }

    pub fn meta(path: &SecretPath) -> Vec<u8> {
        let mut k = vec![META];
        k.extend_from_slice(path.as_str().as_bytes());
        k
    }

    pub fn version(path: &SecretPath, version: u64) -> Vec<u8> {
        let mut k = vec![VERSION];
        k.extend_from_slice(path.as_str().as_bytes());
        k.push(0);
        k.extend_from_slice(&version.to_be_bytes());
        k
    }

    /// `v<path>\0`: the prefix of every version key of `path`.
    pub fn version_prefix(path: &SecretPath) -> Vec<u8> {
        let mut k = vec![VERSION];
        k.extend_from_slice(path.as_str().as_bytes());
        k.push(0);
        k
    }

    /// The version number at the end of a version key.
    pub fn version_of(key: &[u8]) -> Option<u64> {
        let tail = key.len().checked_sub(8).map(|i| &key[i..])?;
        Some(u64::from_be_bytes(tail.try_into().ok()?))
    }

    pub fn settings(path: &SecretPath) -> Vec<u8> {
        let mut k = vec![SETTINGS];
        k.extend_from_slice(path.as_str().as_bytes());
        k
    }

    /// `C<path>`: the path's custom metadata record (sealed map, plaintext generation).
    pub fn custom_metadata(path: &SecretPath) -> Vec<u8> {
        let mut k = vec![CUSTOM_METADATA];
        k.extend_from_slice(path.as_str().as_bytes());
        k
    }

    /// `<prefix byte><path>` for any path-like string (a mount path, an ancestor).
    pub fn with_path(prefix: u8, path: &str) -> Vec<u8> {
        let mut k = vec![prefix];
        k.extend_from_slice(path.as_bytes());
        k
    }

    pub fn mount(path: &str) -> Vec<u8> {
        with_path(MOUNT, path)
    }

    pub fn mount_key(path: &str, version: u32) -> Vec<u8> {
        let mut k = with_path(MOUNT_KEY, path);
        k.push(0);
        k.extend_from_slice(&version.to_be_bytes());
        k
    }

    pub fn dedup(id: &str) -> Vec<u8> {
        let mut k = vec![DEDUP];
        k.extend_from_slice(id.as_bytes());
        k
    }

    /// A slot of `caller`'s ring of remembered ids (`caller`: a token accessor, or empty for
    /// the cluster's own writes).
    pub fn dedup_slot(caller: &str, slot: u64) -> Vec<u8> {
        let mut k = vec![DEDUP_SLOT];
        k.extend_from_slice(caller.as_bytes());
        k.push(0);
        k.extend_from_slice(&slot.to_be_bytes());
        k
    }

    /// How many ids `caller` has had remembered (its ring's write position).
    pub fn dedup_counter(caller: &str) -> Vec<u8> {
        let mut k = vec![DEDUP_COUNTER];
        k.extend_from_slice(caller.as_bytes());
        k
    }
}

/// One stored key/value pair.
pub type Pair = (Vec<u8>, Vec<u8>);

/// Read access to the current state.
pub trait StateRead {
    type Error: std::error::Error;
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Self::Error>;
    /// The first key `>= from`, if any.
    fn next_key(&self, from: &[u8]) -> Result<Option<Vec<u8>>, Self::Error>;
}

/// What a batch does to the stored state, in order: delete these key ranges, then write
/// (or delete) these keys, then — when a restore committed — replace the data with the
/// staged pairs. [`Changes::into_plan`] is the one place that decides it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// `[start, end)` key ranges.
    pub delete_ranges: Vec<(Vec<u8>, Vec<u8>)>,
    pub writes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// A restore committed: after the writes, every data key (the ranges of
    /// [`data_ranges`]) is deleted, each staged pair `Z<key>` moves to `<key>`, and the
    /// staging area is emptied. The staged pairs may be far larger than memory, so the store
    /// does this by streaming over them (resumably: see `store::state_machine`); it is
    /// described here, not computed.
    pub replace_data_with_staging: bool,
}

/// The generation and update time of a record (a role, an ACL policy, the JWT keys) written
/// at `at_ms` over one stamped `old` (its generation and update time): one generation higher,
/// 1 for a new record, and an update time that never moves back, though a new leader's
/// clock may.
pub fn next_stamp(old: Option<(u64, u64)>, at_ms: u64) -> (u64, u64) {
    old.map_or((1, at_ms), |(generation, updated_at_ms)| {
        (generation + 1, at_ms.max(updated_at_ms))
    })
}

/// The `[start, end)` ranges that together hold every data key ([`keys::is_data`]) and no
/// bookkeeping key.
pub fn data_ranges() -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut ranges = Vec::new();
    let mut start = None;
    for b in 0..=u8::MAX {
        match (keys::is_data(&[b]) && b < u8::MAX, start) {
            (true, None) => start = Some(b),
            (false, Some(s)) => {
                ranges.push((vec![s], vec![b]));
                start = None;
            }
            _ => {}
        }
    }
    ranges
}

/// `[start, end)` of the keys whose first byte is `b`.
fn prefix_range(b: u8) -> (Vec<u8>, Vec<u8>) {
    (vec![b], vec![b.saturating_add(1)])
}

/// Errors while applying: the stored state could not be read or decoded. These are storage
/// faults, never caused by a request's content.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError<E: std::error::Error> {
    #[error("reading state: {0}")]
    Read(E),
    #[error("decoding stored value under key {key:?}: {source}")]
    Decode { key: String, source: CodecError },
}

/// Pending writes of one batch: `None` deletes. Reads through [`Changes::get`] see them, so
/// several entries applied in one batch observe each other in log order.
#[derive(Debug, Default)]
pub struct Changes {
    pub writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Key prefixes (first bytes) cleared by this batch *before* its writes: the store
    /// deletes their ranges first, then writes.
    pub cleared: std::collections::BTreeSet<u8>,
    /// A restore committed in this batch: the store replaces every data key with the staged
    /// pairs (see `store::state_machine`). Nothing after it in the batch was applied.
    pub restore_commit: bool,
}

impl Changes {
    pub(super) fn get<S: StateRead>(
        &self,
        state: &S,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, ApplyError<S::Error>> {
        match self.writes.get(key) {
            Some(v) => Ok(v.clone()),
            None if key.first().is_some_and(|b| self.cleared.contains(b)) => Ok(None),
            None => state.get(key).map_err(ApplyError::Read),
        }
    }

    /// The plan the store applies for this batch (see [`Plan`]).
    pub fn into_plan(self) -> Plan {
        let delete_ranges: Vec<_> = self.cleared.iter().map(|b| prefix_range(*b)).collect();
        // A restore: pending writes to data keys came before the commit in this batch and
        // are replaced with the rest of the data, so they are dropped; staged pairs and
        // bookkeeping are written, then the store swaps the staging area in.
        let writes = self
            .writes
            .into_iter()
            .filter(|(k, _)| !self.restore_commit || !keys::is_data(k))
            .collect();
        Plan {
            delete_ranges,
            writes,
            replace_data_with_staging: self.restore_commit,
        }
    }

    /// Deletes every key starting with `prefix`, pending writes included.
    pub(super) fn clear_prefix(&mut self, prefix: u8) {
        self.writes.retain(|k, _| k.first() != Some(&prefix));
        self.cleared.insert(prefix);
    }

    /// Whether any key starts with `prefix`, pending writes and clears included.
    pub(super) fn any_with_prefix<S: StateRead>(
        &self,
        state: &S,
        prefix: u8,
    ) -> Result<bool, ApplyError<S::Error>> {
        let pending = self
            .writes
            .range(vec![prefix]..)
            .take_while(|(k, _)| k.first() == Some(&prefix))
            .any(|(_, v)| v.is_some());
        if pending {
            return Ok(true);
        }
        if self.cleared.contains(&prefix) {
            return Ok(false);
        }
        // The first stored key of the prefix that this batch has not deleted.
        let mut from = vec![prefix];
        while let Some(k) = state.next_key(&from).map_err(ApplyError::Read)? {
            if k.first() != Some(&prefix) {
                return Ok(false);
            }
            if !matches!(self.writes.get(&k), Some(None)) {
                return Ok(true);
            }
            from = k;
            from.push(0);
        }
        Ok(false)
    }

    /// The first live key starting with `prefix` (stored or pending), if any.
    pub(super) fn first_with_prefix<S: StateRead>(
        &self,
        state: &S,
        prefix: &[u8],
    ) -> Result<Option<Vec<u8>>, ApplyError<S::Error>> {
        let pending = self
            .writes
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .find(|(_, v)| v.is_some())
            .map(|(k, _)| k.clone());
        let mut stored = None;
        if !prefix.first().is_some_and(|b| self.cleared.contains(b)) {
            let mut from = prefix.to_vec();
            while let Some(k) = state.next_key(&from).map_err(ApplyError::Read)? {
                if !k.starts_with(prefix) {
                    break;
                }
                if !matches!(self.writes.get(&k), Some(None)) {
                    stored = Some(k);
                    break;
                }
                from = k;
                from.push(0);
            }
        }
        Ok(match (pending, stored) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }

    /// Every live key starting with `prefix` (stored or pending), in order.
    pub(super) fn keys_with_prefix<S: StateRead>(
        &self,
        state: &S,
        prefix: &[u8],
    ) -> Result<Vec<Vec<u8>>, ApplyError<S::Error>> {
        let mut out = std::collections::BTreeSet::new();
        if !prefix.first().is_some_and(|b| self.cleared.contains(b)) {
            let mut from = prefix.to_vec();
            while let Some(k) = state.next_key(&from).map_err(ApplyError::Read)? {
                if !k.starts_with(prefix) {
                    break;
                }
                from = k.clone();
                from.push(0);
                out.insert(k);
            }
        }
        for (k, v) in self
            .writes
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
        {
            match v {
                Some(_) => out.insert(k.clone()),
                None => out.remove(k),
            };
        }
        Ok(out.into_iter().collect())
    }

    pub(super) fn get_decoded<S: StateRead, T: serde::de::DeserializeOwned>(
        &self,
        state: &S,
        key: &[u8],
    ) -> Result<Option<T>, ApplyError<S::Error>> {
        match self.get(state, key)? {
            None => Ok(None),
            Some(bytes) => codec::decode(&bytes)
                .map(Some)
                .map_err(|source| ApplyError::Decode {
                    key: String::from_utf8_lossy(key).into_owned(),
                    source,
                }),
        }
    }

    pub(super) fn put<T: Serialize>(&mut self, key: Vec<u8>, value: &T) {
        self.writes.insert(key, Some(codec::encode(value)));
    }

    pub(super) fn delete(&mut self, key: Vec<u8>) {
        self.writes.insert(key, None);
    }
}

#[cfg(test)]
mod tests {
    use super::next_stamp;

    #[test]
    fn a_stamp_counts_writes_and_its_time_never_moves_back() {
        assert_eq!(next_stamp(None, 7), (1, 7));
        assert_eq!(next_stamp(Some((3, 100)), 150), (4, 150));
        // A new leader whose clock is behind the last writer's.
        assert_eq!(next_stamp(Some((4, 150)), 120), (5, 150));
    }
}
