//! KV v2 mounts as Vault names them (`bao secrets enable -path=team-a kv-v2`): a registered
//! name for a folder of raftsafe's one secret tree.
//!
//! raftsafe has one KV namespace. Vault's `secret/` mount is all of it: `secret/data/app/db`
//! is the secret `app/db`. A further KV v2 mount at `team-a` is the folder `team-a/` of that
//! same tree, under a name of its own: `team-a/data/app/db` is the secret `team-a/app/db`,
//! which `secret/data/team-a/app/db` and `/api/v1/secrets/team-a/app/db` also reach. One tree
//! means one set of versions, one authorization model (scopes on raftsafe paths), one backup.
//!
//! Invariants:
//! - A KV mount's path is a valid secret path whose first segment is not one Vault or
//!   raftsafe keeps (`secret`, `transit`, `sys`, `auth`, `identity`, `cubbyhole`). KV mounts
//!   do not nest, and none is at, over or under an ondemand mount (whose path holds no KV
//!   secret). Creation checks all of it where it applies, so two racing creations cannot
//!   both win.
//! - A mount is removed only while its folder holds no path (no version, deleted or not):
//!   raftsafe never drops secrets as a side effect of unmounting, unlike Vault's `secrets
//!   disable`. The refusal says how to delete them first.
//! - Creating a mount over a folder that already holds secrets is allowed: they appear under
//!   the new name, as they already did under `secret/`. Nothing is copied or moved.
//! - Stored with bincode (`V<path>`), so [`StoredKvMount`] never changes shape; a new need is a
//!   new type or key.

use serde::{Deserialize, Serialize};

use super::command::CommandResult;
use super::path::SecretPath;
use super::state::{keys, ApplyError, Changes, StateRead};

/// A KV mount as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredKvMount {
    pub created_at_ms: u64,
    /// What `bao secrets enable -description=…` said, shown by `bao secrets list`.
    pub description: String,
}

/// First path segments a KV mount cannot take: Vault's own mounts and raftsafe's two
/// always-there Vault mounts.
pub const RESERVED: [&str; 6] = ["secret", "transit", "sys", "auth", "identity", "cubbyhole"];

/// The longest description kept.
pub const MAX_DESCRIPTION_BYTES: usize = 1024;

/// Why `path` cannot name a KV mount on its own (without looking at the state), if it cannot.
pub fn check_path(path: &SecretPath) -> Result<(), String> {
    let first = path.as_str().split('/').next().unwrap_or("");
    if RESERVED.contains(&first) {
        return Err(format!(
            "'{first}/' is reserved: raftsafe serves 'secret/' (KV v2, the whole tree) and \
             'transit/' itself, and Vault keeps sys/, auth/, identity/ and cubbyhole/"
        ));
    }
    Ok(())
}

/// `V<path>`.
pub fn key(path: &str) -> Vec<u8> {
    keys::with_path(keys::KV_MOUNT, path)
}

/// The KV mount `path` names or lies under, given the registered mounts: the mount's path
/// and the rest (`""` at the mount itself).
pub fn resolve<'a>(mounts: &'a [String], path: &'a str) -> Option<(&'a str, &'a str)> {
    mounts.iter().find_map(|m| {
        if path == m {
            return Some((m.as_str(), ""));
        }
        let rest = path.strip_prefix(m.as_str())?.strip_prefix('/')?;
        Some((m.as_str(), rest))
    })
}

/// Creates the KV mount at `path`.
pub fn create<S: StateRead>(
    state: &S,
    changes: &mut Changes,
    at_ms: u64,
    path: &SecretPath,
    description: &str,
) -> Result<CommandResult, ApplyError<S::Error>> {
    let path = path.as_str();
    if let Some(why) = conflict(state, changes, path)? {
        return Ok(CommandResult::KvMountRefused(why));
    }
    let stored = StoredKvMount {
        created_at_ms: at_ms,
        description: description.chars().take(MAX_DESCRIPTION_BYTES).collect(),
    };
    changes.put(key(path), &stored);
    Ok(CommandResult::KvMountCreated)
}

/// Why a KV mount at `path` cannot be created, if it cannot.
fn conflict<S: StateRead>(
    state: &S,
    changes: &Changes,
    path: &str,
) -> Result<Option<String>, ApplyError<S::Error>> {
    if let Err(why) = SecretPath::parse(path)
        .map_err(|e| e.to_string())
        .and_then(|p| check_path(&p))
    {
        return Ok(Some(why));
    }
    for a in super::mount::ancestors_and_self(path) {
        if changes.get(state, &key(a))?.is_some() {
            return Ok(Some(if a == path {
                format!("path is already in use at {path}/")
            } else {
                format!("'{path}/' would be inside the KV mount '{a}/'; mounts cannot nest")
            }));
        }
    }
    if let Some(k) = changes.first_with_prefix(state, &key(&format!("{path}/")))? {
        return Ok(Some(format!(
            "the KV mount '{}/' is under '{path}/'; mounts cannot nest",
            String::from_utf8_lossy(&k[1..])
        )));
    }
    if let Some(m) = super::mount::covering(state, changes, path)? {
        return Ok(Some(format!(
            "'{path}/' is at or under the ondemand mount '{m}', which holds no KV secrets"
        )));
    }
    if let Some(k) = changes.first_with_prefix(state, &keys::mount(&format!("{path}/")))? {
        return Ok(Some(format!(
            "the ondemand mount '{}' is under '{path}/', and it holds no KV secrets",
            String::from_utf8_lossy(&k[1..])
        )));
    }
    Ok(None)
}

/// Removes the KV mount at `path` if its folder holds no path.
pub fn delete<S: StateRead>(
    state: &S,
    changes: &mut Changes,
    path: &SecretPath,
) -> Result<CommandResult, ApplyError<S::Error>> {
    let path = path.as_str();
    let key = key(path);
    if changes.get(state, &key)?.is_none() {
        return Ok(CommandResult::NotFound);
    }
    let under = keys::with_path(keys::META, &format!("{path}/"));
    if let Some(k) = changes.first_with_prefix(state, &under)? {
        return Ok(CommandResult::KvMountRefused(format!(
            "'{path}/' still holds secrets (the first is '{}'): raftsafe never deletes secrets \
             by unmounting; delete each first ('bao kv metadata delete {path}/<name>', or \
             'raftsafe metadata delete <path>'), then disable the mount",
            String::from_utf8_lossy(&k[1..])
        )));
    }
    changes.delete(key);
    Ok(CommandResult::KvMountDeleted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::command::Command;
    use crate::secret::testing::{single, Mem};

    fn p(s: &str) -> SecretPath {
        SecretPath::parse(s).unwrap()
    }

    fn run(state: &mut Mem, command: Command) -> CommandResult {
        // A request id of its own each, or the dedup table answers the first result again.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut out = state.run(&[single(&format!("r{id}"), 1, None, command)]);
        out.pop().unwrap()
    }

    fn create(state: &mut Mem, path: &str) -> CommandResult {
        let command = Command::CreateKvMount {
            path: p(path),
            description: "d".into(),
        };
        run(state, command)
    }

    fn refused(result: CommandResult) -> String {
        match result {
            CommandResult::KvMountRefused(why) => why,
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn mounts_neither_nest_nor_take_reserved_names_nor_ondemand_paths() {
        let mut s = Mem::default();
        assert_eq!(create(&mut s, "team-a"), CommandResult::KvMountCreated);
        for (path, why) in [
            ("team-a", "already in use"),
            ("team-a/x", "would be inside the KV mount 'team-a/'"),
            ("secret", "reserved"),
            ("sys/x", "reserved"),
        ] {
            let m = refused(create(&mut s, path));
            assert!(m.contains(why), "{path}: {m}");
        }
        assert_eq!(create(&mut s, "team/b"), CommandResult::KvMountCreated);
        assert!(refused(create(&mut s, "team")).contains("'team/b/' is under"));
        // An ondemand mount holds no KV secret: no KV mount at, over or under it.
        s.0.insert(keys::mount("enc/k"), b"x".to_vec());
        assert!(refused(create(&mut s, "enc/k/v")).contains("ondemand mount 'enc/k'"));
        assert!(refused(create(&mut s, "enc")).contains("ondemand mount 'enc/k' is under"));
    }

    #[test]
    fn a_mount_goes_only_while_its_folder_is_empty() {
        let mut s = Mem::default();
        assert_eq!(create(&mut s, "team-a"), CommandResult::KvMountCreated);
        s.0.insert(keys::with_path(keys::META, "team-a/app/db"), b"m".to_vec());
        s.0.insert(keys::with_path(keys::META, "team-ab"), b"m".to_vec());
        let delete = |s: &mut Mem| run(s, Command::DeleteKvMount { path: p("team-a") });
        let why = refused(delete(&mut s));
        assert!(why.contains("'team-a/app/db'"), "{why}");
        assert!(s.0.contains_key(&key("team-a")));
        s.0.remove(&keys::with_path(keys::META, "team-a/app/db"));
        assert_eq!(delete(&mut s), CommandResult::KvMountDeleted);
        assert_eq!(delete(&mut s), CommandResult::NotFound);
        assert!(!s.0.contains_key(&key("team-a")));
    }

    #[test]
    fn resolve_takes_the_mount_a_path_lies_under() {
        let mounts = vec!["team-a".to_string(), "x/y".to_string()];
        assert_eq!(resolve(&mounts, "team-a"), Some(("team-a", "")));
        assert_eq!(
            resolve(&mounts, "team-a/data/k"),
            Some(("team-a", "data/k"))
        );
        assert_eq!(
            resolve(&mounts, "x/y/metadata/"),
            Some(("x/y", "metadata/"))
        );
        assert_eq!(resolve(&mounts, "team-ab/data/k"), None);
        assert_eq!(resolve(&mounts, "x/data/k"), None);
    }
}
