//! Restoring a backup through the log, as three kinds of command: `RestoreBegin`, a run of
//! `RestoreChunk`s, `RestoreCommit`. The pairs are staged under `Z<key>` as they arrive;
//! the commit replaces every data key with them in one atomic write (see
//! [`super::machine::Changes::into_plan`]).
//!
//! Invariants:
//! - A restore never half-applies: until its commit applies, the live state is untouched;
//!   the commit swaps all of it in one write, on every replica at the same log index, so
//!   every node ends with the same digest.
//! - Unless it is forced, a restore only fills a cluster that holds no data: no secret, no
//!   custom metadata (a path may have it without a version) and no mount (a mount's keys
//!   decrypt every ciphertext it ever issued). This is checked at `RestoreBegin` and again
//!   at `RestoreCommit`, in the log, so a write acknowledged while the backup was uploading
//!   makes the commit refuse rather than be wiped. (Tokens and data keys do not count:
//!   every cluster has its bootstrap token and first key.)
//! - Steps must come in order for the restore in progress (`R`): a chunk or commit of another
//!   restore, a chunk out of sequence, or a commit before every announced pair is staged is
//!   refused and changes nothing. A new `RestoreBegin` abandons any earlier one.
//! - The pairs are the backup's bytes as stored (sealed values, sealed tokens, wrapped keys):
//!   nothing here can read them, and nothing here needs to.

use serde::{Deserialize, Serialize};

use super::command::CommandResult;
use super::state::{keys, ApplyError, Changes, StateRead};

/// The restore in progress, under `R`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct InProgress {
    restore: u64,
    /// Pairs the backup holds.
    expected: u64,
    staged: u64,
    next_seq: u64,
    /// Whether the caller agreed to replace data the cluster holds.
    force: bool,
}

/// Why the cluster's data would be lost to a restore, if it holds any.
fn holds_data<S: StateRead>(
    state: &S,
    changes: &Changes,
) -> Result<Option<&'static str>, ApplyError<S::Error>> {
    if changes.any_with_prefix(state, keys::META)? {
        return Ok(Some("secrets"));
    }
    if changes.any_with_prefix(state, keys::CUSTOM_METADATA)? {
        return Ok(Some("custom metadata"));
    }
    if changes.any_with_prefix(state, keys::MOUNT)? {
        return Ok(Some(
            "mounts (whose keys decrypt every ciphertext they issued)",
        ));
    }
    Ok(None)
}

fn current<S: StateRead>(
    state: &S,
    changes: &Changes,
) -> Result<Option<InProgress>, ApplyError<S::Error>> {
    changes.get_decoded(state, keys::RESTORE)
}

fn refused(why: impl Into<String>) -> CommandResult {
    CommandResult::RestoreRefused(why.into())
}

pub(super) fn begin<S: StateRead>(
    state: &S,
    changes: &mut Changes,
    restore: u64,
    expected: u64,
    force: bool,
) -> Result<CommandResult, ApplyError<S::Error>> {
    if let Some(what) = holds_data(state, changes)?.filter(|_| !force) {
        return Ok(refused(format!(
            "the cluster already holds {what}; restoring would replace them (force it to)"
        )));
    }
    changes.clear_prefix(keys::STAGING);
    let progress = InProgress {
        restore,
        expected,
        staged: 0,
        next_seq: 0,
        force,
    };
    changes.put(keys::RESTORE.to_vec(), &progress);
    Ok(CommandResult::RestoreStaged { staged: 0 })
}

pub(super) fn chunk<S: StateRead>(
    state: &S,
    changes: &mut Changes,
    restore: u64,
    seq: u64,
    pairs: &[(Vec<u8>, Vec<u8>)],
) -> Result<CommandResult, ApplyError<S::Error>> {
    let Some(mut progress) = current(state, changes)?.filter(|p| p.restore == restore) else {
        return Ok(refused(format!("restore {restore} is not in progress")));
    };
    if seq != progress.next_seq {
        return Ok(refused(format!(
            "restore {restore}: chunk {seq} arrived, expected chunk {}",
            progress.next_seq
        )));
    }
    if let Some((k, _)) = pairs.iter().find(|(k, _)| !keys::is_data(k)) {
        return Ok(refused(format!(
            "restore {restore}: chunk {seq} holds a bookkeeping key ({:?}), not data",
            String::from_utf8_lossy(&k[..k.len().min(16)])
        )));
    }
    for (k, v) in pairs {
        let mut staged = vec![keys::STAGING];
        staged.extend_from_slice(k);
        changes.writes.insert(staged, Some(v.clone()));
    }
    progress.staged += pairs.len() as u64;
    progress.next_seq += 1;
    let staged = progress.staged;
    changes.put(keys::RESTORE.to_vec(), &progress);
    Ok(CommandResult::RestoreStaged { staged })
}

pub(super) fn commit<S: StateRead>(
    state: &S,
    changes: &mut Changes,
    restore: u64,
) -> Result<CommandResult, ApplyError<S::Error>> {
    let Some(progress) = current(state, changes)?.filter(|p| p.restore == restore) else {
        return Ok(refused(format!("restore {restore} is not in progress")));
    };
    if progress.staged != progress.expected {
        return Ok(refused(format!(
            "restore {restore}: {} of {} pairs staged; not committing a partial restore",
            progress.staged, progress.expected
        )));
    }
    if let Some(what) = holds_data(state, changes)?.filter(|_| !progress.force) {
        // Written since `RestoreBegin` found the cluster empty: acknowledged writes that a
        // commit would silently wipe. The restore is abandoned; its staging is cleared.
        changes.delete(keys::RESTORE.to_vec());
        changes.clear_prefix(keys::STAGING);
        return Ok(refused(format!(
            "restore {restore}: {what} were written while the backup was uploading; \
             not replacing them (restore again, forced, to replace them)"
        )));
    }
    changes.delete(keys::RESTORE.to_vec());
    changes.restore_commit = true;
    Ok(CommandResult::Restored {
        pairs: progress.staged,
    })
}
