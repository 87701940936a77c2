//! The rest of a KV path's lifecycle: preconditions, undelete, destroy, the cap on kept
//! versions and removing a path outright. Called from [`super::machine::apply`], so every
//! function here is pure: the result depends only on the command and the state.
//!
//! Invariants:
//! - A path keeps at most `max_versions` versions (default [`DEFAULT_MAX_VERSIONS`]): a write
//!   of version `V` removes version `V - max`, and lowering the cap removes every version it
//!   no longer covers. Version numbers are never reused: the counter in the path's metadata
//!   keeps counting, so `?version=N` and `If-Match` never name two different values.
//! - A destroyed version keeps its record (times, deletion) with no sealed bytes, so the
//!   metadata view can say `destroyed`; nothing can bring its value back.
//! - Undelete clears a deletion mark only; it cannot revive a destroyed or pruned version.
//! - Removing a path removes its metadata, settings, custom metadata ([`super::custom`]) and
//!   every version in one batch; a path with any of them can be removed.

use serde::{Deserialize, Serialize};

use super::command::CommandResult;
use super::crypto::Sealed;
use super::path::SecretPath;
use super::state::{keys, ApplyError, Changes, SecretMeta, StateRead, VersionRecord};

/// Versions kept per path unless its metadata says otherwise (as in Vault KV v2).
pub const DEFAULT_MAX_VERSIONS: u64 = 10;

/// The largest settable cap.
pub const MAX_MAX_VERSIONS: u64 = 1_000_000;

/// Per-path settings (`s<path>`), present only once set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathSettings {
    pub max_versions: u64,
}

/// The cap on kept versions of `path`.
pub fn max_versions<S: StateRead>(
    state: &S,
    changes: &Changes,
    path: &SecretPath,
) -> Result<u64, ApplyError<S::Error>> {
    Ok(changes
        .get_decoded::<S, PathSettings>(state, &keys::settings(path))?
        .map_or(DEFAULT_MAX_VERSIONS, |s| s.max_versions))
}

/// Whether version `current` of `path` exists and is neither deleted nor destroyed.
pub fn is_live<S: StateRead>(
    state: &S,
    changes: &Changes,
    path: &SecretPath,
    current: u64,
) -> Result<bool, ApplyError<S::Error>> {
    if current == 0 {
        return Ok(false);
    }
    Ok(changes
        .get_decoded::<S, VersionRecord>(state, &keys::version(path, current))?
        .is_some_and(|r| r.deleted_at_ms.is_none() && !r.is_destroyed()))
}

/// After version `version` was written: removes the one version that fell off the cap.
pub fn prune_after_write<S: StateRead>(
    state: &S,
    changes: &mut Changes,
    path: &SecretPath,
    version: u64,
) -> Result<(), ApplyError<S::Error>> {
    let max = max_versions(state, changes, path)?;
    if version > max {
        changes.delete(keys::version(path, version - max));
    }
    Ok(())
}

/// Removes every version of `path` not among the newest `max` (`current` is the newest
/// number). Returns how many were removed.
fn prune_all<S: StateRead>(
    state: &S,
    changes: &mut Changes,
    path: &SecretPath,
    current: u64,
    max: u64,
) -> Result<u64, ApplyError<S::Error>> {
    let keep_from = current.saturating_sub(max) + 1;
    let mut pruned = 0;
    for k in changes.keys_with_prefix(state, &keys::version_prefix(path))? {
        if keys::version_of(&k).is_some_and(|v| v < keep_from) {
            changes.delete(k);
            pruned += 1;
        }
    }
    Ok(pruned)
}

pub fn set_max_versions<S: StateRead>(
    state: &S,
    changes: &mut Changes,
    path: &SecretPath,
    max: u64,
) -> Result<CommandResult, ApplyError<S::Error>> {
    let max = max.clamp(1, MAX_MAX_VERSIONS);
    changes.put(keys::settings(path), &PathSettings { max_versions: max });
    let pruned = match changes.get_decoded::<S, SecretMeta>(state, &keys::meta(path))? {
        Some(meta) => prune_all(state, changes, path, meta.current_version, max)?,
        None => 0,
    };
    Ok(CommandResult::MaxVersionsSet { pruned })
}

/// Applies `change` to each listed version that exists; returns those it changed.
fn each_version<S: StateRead>(
    state: &S,
    changes: &mut Changes,
    path: &SecretPath,
    versions: &[u64],
    change: impl Fn(&mut VersionRecord) -> bool,
) -> Result<CommandResult, ApplyError<S::Error>> {
    if changes
        .get_decoded::<S, SecretMeta>(state, &keys::meta(path))?
        .is_none()
    {
        return Ok(CommandResult::NotFound);
    }
    let mut wanted = versions.to_vec();
    wanted.sort_unstable();
    wanted.dedup();
    let mut changed = Vec::new();
    for v in wanted {
        let key = keys::version(path, v);
        let Some(mut record) = changes.get_decoded::<S, VersionRecord>(state, &key)? else {
            continue;
        };
        if change(&mut record) {
            changes.put(key, &record);
            changed.push(v);
        }
    }
    Ok(CommandResult::VersionsChanged { versions: changed })
}

pub fn undelete<S: StateRead>(
    state: &S,
    changes: &mut Changes,
    _at_ms: u64,
    path: &SecretPath,
    versions: &[u64],
) -> Result<CommandResult, ApplyError<S::Error>> {
    each_version(state, changes, path, versions, |r| {
        let changed = r.deleted_at_ms.is_some() && !r.is_destroyed();
        if changed {
            r.deleted_at_ms = None;
        }
        changed
    })
}

pub fn destroy<S: StateRead>(
    state: &S,
    changes: &mut Changes,
    _at_ms: u64,
    path: &SecretPath,
    versions: &[u64],
) -> Result<CommandResult, ApplyError<S::Error>> {
    each_version(state, changes, path, versions, |r| {
        let changed = !r.is_destroyed();
        r.sealed = Sealed::default();
        changed
    })
}

/// Removes `path` with its settings, custom metadata and every version.
pub fn delete_path<S: StateRead>(
    state: &S,
    changes: &mut Changes,
    path: &SecretPath,
) -> Result<CommandResult, ApplyError<S::Error>> {
    let meta = keys::meta(path);
    let settings = keys::settings(path);
    let custom = keys::custom_metadata(path);
    if changes.get(state, &meta)?.is_none()
        && changes.get(state, &settings)?.is_none()
        && changes.get(state, &custom)?.is_none()
    {
        return Ok(CommandResult::NotFound);
    }
    for k in changes.keys_with_prefix(state, &keys::version_prefix(path))? {
        changes.delete(k);
    }
    changes.delete(meta);
    changes.delete(settings);
    changes.delete(custom);
    Ok(CommandResult::MetadataDeleted)
}
