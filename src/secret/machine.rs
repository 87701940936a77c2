//! The state machine's logic, as a pure function: given a committed [`Request`] and a view
//! of the current state, compute the response and the key/value changes to persist.
//!
//! Invariants:
//! - Deterministic: the result depends only on the request and the state (the leader stamped
//!   the time into the request), so every replica that applies the same log ends up with
//!   byte-identical state.
//! - A request id seen before returns the recorded result and changes nothing, so a client
//!   or relaying node retrying a write whose first attempt did commit cannot apply it twice.
//!   The same id with another request's fingerprint is refused (`RequestIdReused`) and
//!   changes nothing: a client is never told a write happened that did not.
//!   Seen ids are kept in one ring of [`DEDUP_CAPACITY`] slots *per caller*: a caller's
//!   oldest id is forgotten when its new one arrives, which bounds the table without a clock,
//!   and no caller can push another's ids out (and so make their retries apply twice).
//! - `updated_at` never goes backwards, even if a new leader's clock is behind the old one's.
//!
//! Key layout (all in the state machine's data column family):
//! - `m<path>`                   → [`SecretMeta`]
//! - `v<path>\0<version u64 BE>` → [`VersionRecord`]
//! - `r<request id>`             → [`Remembered`]: its fingerprint and the result first returned
//! - `q<accessor>\0<slot u64 BE>` → the request id occupying that slot of the caller's ring
//! - `c<accessor>`               → the caller's dedup counter (u64 BE); the cluster's own
//!   writes use the empty accessor
//! - `k<key id u32 BE>`          → a data key, wrapped under the master key
//! - `K`                         → the current data key id (u32 BE)
//! - `t<accessor>`               → a token record, sealed
//! - `x<accessor>`               → when that token was revoked (u64 BE ms)
//! - `b`                         → present once the root token was created
//! - `R`                         → the restore in progress ([`super::restore`])
//! - `Z<key>`                    → a pair staged by that restore, under its final key
//! - `s<path>`                   → [`super::versions::PathSettings`] (the version cap), when set
//! - `n<mount path>`             → a [`super::command::MountRecord`] ([`super::mount`])
//! - `N<mount path>\0<version u32 BE>` → that mount's key version, wrapped under the master key
//! - `u<method byte><role>`      → a login role ([`super::login::StoredRole`]; `a` AppRole, `j` JWT)
//! - `y<role id>`                → the name of the AppRole role with that id
//! - `w<role>\0<accessor>`       → an AppRole secret id ([`super::login::SecretId`]: its MAC)
//! - `e<token accessor>`         → a login token's lease ([`super::login::Lease`])
//! - `Ujwt`                      → the JWT method's keys and issuer ([`super::login::StoredJwtConfig`])
//! - `C<path>`                   → [`super::custom::CustomMetadataRecord`]: the path's custom
//!   metadata, sealed, with its generation in plaintext ([`super::custom`]); may exist for a
//!   path with no version
//!
//! `r`, `q`, `c`, `R` and `Z` are operational: a backup leaves them out, a restore keeps
//! them ([`keys::OPERATIONAL`]); everything else is the cluster's data.

use super::command::{Caller, Command, CommandResult, Op, Precondition, Request, RequestId};
use super::crypto::Sealed;
use super::path::SecretPath;
pub use super::state::{
    data_ranges, keys, ApplyError, Changes, Pair, Plan, SecretMeta, StateRead, VersionRecord,
};

/// How many recent request ids are remembered for deduplication, per caller.
pub const DEDUP_CAPACITY: u64 = 65_536;

/// What the dedup table keeps for a request id.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Remembered {
    fingerprint: Option<[u8; 16]>,
    result: CommandResult,
}

/// Applies one committed entry (a batch of ops, in order), recording its writes in
/// `changes`. Returns one result per op.
pub fn apply<S: StateRead>(
    state: &S,
    changes: &mut Changes,
    request: &Request,
) -> Result<Vec<CommandResult>, ApplyError<S::Error>> {
    let mut results = Vec::with_capacity(request.ops.len());
    for op in &request.ops {
        // A restore replaced the state mid-batch: what follows was computed against the old
        // one, so it is not applied (and not remembered: a retry must apply).
        if changes.restore_commit {
            results.push(CommandResult::RetryAfterRestore);
            continue;
        }
        results.push(apply_op(state, changes, request.at_ms, op)?);
    }
    Ok(results)
}

fn apply_op<S: StateRead>(
    state: &S,
    changes: &mut Changes,
    at_ms: u64,
    op: &Op,
) -> Result<CommandResult, ApplyError<S::Error>> {
    let dedup_key = keys::dedup(op.id.as_str());
    if let Some(previous) = changes.get_decoded::<S, Remembered>(state, &dedup_key)? {
        return Ok(match (previous.fingerprint, op.id.fingerprint()) {
            (Some(first), Some(now)) if first != now => CommandResult::RequestIdReused,
            _ => previous.result,
        });
    }
    let refused = match &op.caller {
        Some(caller) => check_caller(state, changes, at_ms, caller)?,
        None => None,
    };
    let result = match (refused, &op.command) {
        (Some(refused), _) => refused,
        (None, command) => apply_command(state, changes, at_ms, command)?,
    };
    let caller = op.caller.as_ref().map_or("", |c| c.accessor.as_str());
    remember(state, changes, caller, &op.id, &result)?;
    Ok(result)
}

/// `Some(Unauthorized)` when the caller's token no longer allows anything at this point of
/// the log: unknown, revoked, or expired at the entry's time.
fn check_caller<S: StateRead>(
    state: &S,
    changes: &mut Changes,
    at_ms: u64,
    caller: &Caller,
) -> Result<Option<CommandResult>, ApplyError<S::Error>> {
    let accessor = &caller.accessor;
    let why = if changes.get(state, &keys::token(accessor))?.is_none() {
        format!("token {accessor} is unknown")
    } else if changes.get(state, &keys::revoked(accessor))?.is_some() {
        format!("token {accessor} has been revoked")
    } else if caller.expires_at_ms.is_some_and(|t| at_ms >= t) {
        format!("token {accessor} has expired")
    } else {
        return Ok(None);
    };
    Ok(Some(CommandResult::Unauthorized(why)))
}

fn apply_command<S: StateRead>(
    state: &S,
    changes: &mut Changes,
    at_ms: u64,
    command: &Command,
) -> Result<CommandResult, ApplyError<S::Error>> {
    Ok(match command {
        Command::Put { path, sealed, cas } => put(state, changes, at_ms, path, sealed, *cas, None)?,
        Command::Delete { path } => delete(state, changes, at_ms, path, None)?,
        Command::PutIf {
            path,
            sealed,
            precondition,
        } => put(
            state,
            changes,
            at_ms,
            path,
            sealed,
            None,
            Some(*precondition),
        )?,
        Command::DeleteIf { path, precondition } => {
            delete(state, changes, at_ms, path, Some(*precondition))?
        }
        Command::Undelete { path, versions } => {
            super::versions::undelete(state, changes, at_ms, path, versions)?
        }
        Command::Destroy { path, versions } => {
            super::versions::destroy(state, changes, at_ms, path, versions)?
        }
        Command::SetMaxVersions { path, max_versions } => {
            super::versions::set_max_versions(state, changes, path, *max_versions)?
        }
        Command::DeleteMetadata { path } => super::versions::delete_path(state, changes, path)?,
        Command::PutAclPolicy {
            name,
            rules,
            grants,
        } => super::acl::put(state, changes, at_ms, name, rules, grants)?,
        Command::DeleteAclPolicy { name } => super::acl::delete(state, changes, name)?,
        Command::CreateKvMount { path, description } => {
            super::kv_mount::create(state, changes, at_ms, path, description)?
        }
        Command::DeleteKvMount { path } => super::kv_mount::delete(state, changes, path)?,
        Command::SetMetadata {
            path,
            max_versions,
            custom_metadata,
            generation,
        } => super::custom::set_metadata(
            state,
            changes,
            at_ms,
            path,
            *max_versions,
            custom_metadata.as_ref(),
            *generation,
        )?,
        Command::CreateMount {
            path,
            kind,
            wrapped,
        } => super::mount::create(state, changes, at_ms, path, *kind, wrapped)?,
        Command::DeleteMount { path } => super::mount::delete(state, changes, path)?,
        Command::AddMountKey {
            path,
            version,
            wrapped,
        } => super::mount::add_key(state, changes, at_ms, path, *version, wrapped)?,
        Command::ConfigureMount {
            path,
            min_decryption_version,
            min_encryption_version,
        } => super::mount::configure(
            state,
            changes,
            at_ms,
            path,
            *min_decryption_version,
            *min_encryption_version,
        )?,
        Command::TrimMount {
            path,
            min_available_version,
        } => super::mount::trim(state, changes, at_ms, path, *min_available_version)?,
        Command::AddDataKey { id, wrapped } => {
            let current = changes
                .get(state, keys::CURRENT_KEY)?
                .and_then(|b| <[u8; 4]>::try_from(b.as_slice()).ok())
                .map_or(0, u32::from_be_bytes);
            if *id != current + 1 {
                CommandResult::KeyConflict { current }
            } else {
                changes
                    .writes
                    .insert(keys::data_key(*id), Some(wrapped.to_vec()));
                changes
                    .writes
                    .insert(keys::CURRENT_KEY.to_vec(), Some(id.to_be_bytes().to_vec()));
                CommandResult::KeyAdded { id: *id }
            }
        }
        Command::CreateToken {
            accessor,
            sealed,
            bootstrap,
        } => {
            if *bootstrap && changes.get(state, keys::BOOTSTRAPPED)?.is_some() {
                CommandResult::AlreadyBootstrapped
            } else {
                if *bootstrap {
                    changes
                        .writes
                        .insert(keys::BOOTSTRAPPED.to_vec(), Some(vec![1]));
                }
                changes
                    .writes
                    .insert(keys::token(accessor), Some(sealed.to_vec()));
                changes.writes.insert(keys::revoked(accessor), None);
                CommandResult::TokenCreated
            }
        }
        Command::RestoreBegin {
            restore,
            pairs,
            force,
        } => super::restore::begin(state, changes, *restore, *pairs, *force)?,
        Command::RestoreChunk {
            restore,
            seq,
            pairs,
        } => super::restore::chunk(state, changes, *restore, *seq, pairs)?,
        Command::RestoreCommit { restore } => super::restore::commit(state, changes, *restore)?,
        Command::PutRole { name, role } => {
            super::login::put_role(state, changes, at_ms, name, role, &[])?
        }
        Command::PutRoleWithPolicies {
            name,
            role,
            token_policies,
        } => super::login::put_role(state, changes, at_ms, name, role, token_policies)?,
        Command::DeleteRole { method, name } => {
            super::login::delete_role(state, changes, *method, name)?
        }
        Command::PutJwtConfig { config } => {
            super::login::put_jwt_config(state, changes, at_ms, config)?
        }
        Command::AddSecretId { role, secret_id } => {
            super::login::add_secret_id(state, changes, role, secret_id)?
        }
        Command::DestroySecretId { role, accessor } => {
            super::login::destroy_secret_id(state, changes, role, accessor)?
        }
        Command::Login(login) => super::login::login(state, changes, at_ms, login)?,
        Command::RenewToken {
            accessor,
            increment_ms,
        } => super::login::renew(state, changes, at_ms, accessor, *increment_ms)?,
        Command::RevokeToken { accessor } => {
            if changes.get(state, &keys::token(accessor))?.is_none() {
                CommandResult::NotFound
            } else {
                let at = at_ms.to_be_bytes().to_vec();
                changes.writes.insert(keys::revoked(accessor), Some(at));
                CommandResult::TokenRevoked
            }
        }
    })
}

fn put<S: StateRead>(
    state: &S,
    changes: &mut Changes,
    at_ms: u64,
    path: &SecretPath,
    sealed: &Sealed,
    cas: Option<u64>,
    precondition: Option<Precondition>,
) -> Result<CommandResult, ApplyError<S::Error>> {
    // A writer that looked before a mount was created; the mount wins, nothing is stored.
    if let Some(mount) = super::mount::covering(state, changes, path.as_str())? {
        return Ok(CommandResult::UnderMount { mount });
    }
    let meta_key = keys::meta(path);
    let meta: Option<SecretMeta> = changes.get_decoded(state, &meta_key)?;
    let current = meta.as_ref().map_or(0, |m| m.current_version);
    if let Some(pre) = precondition {
        let live = super::versions::is_live(state, changes, path, current)?;
        if !pre.holds(current, live) {
            return Ok(CommandResult::PreconditionFailed { current, live });
        }
    }
    if let Some(expected) = cas {
        if expected != current {
            return Ok(CommandResult::CasMismatch { current });
        }
    }
    let version = current + 1;
    let updated_at_ms = meta.as_ref().map_or(at_ms, |m| at_ms.max(m.updated_at_ms));
    let meta = SecretMeta {
        current_version: version,
        created_at_ms: meta.as_ref().map_or(at_ms, |m| m.created_at_ms),
        updated_at_ms,
    };
    let record = VersionRecord {
        sealed: sealed.clone(),
        created_at_ms: updated_at_ms,
        deleted_at_ms: None,
    };
    let metadata = record.metadata(&meta, version);
    changes.put(keys::version(path, version), &record);
    changes.put(meta_key, &meta);
    super::versions::prune_after_write(state, changes, path, version)?;
    Ok(CommandResult::Written(metadata))
}

fn delete<S: StateRead>(
    state: &S,
    changes: &mut Changes,
    at_ms: u64,
    path: &SecretPath,
    precondition: Option<Precondition>,
) -> Result<CommandResult, ApplyError<S::Error>> {
    let meta_key = keys::meta(path);
    let meta = changes.get_decoded::<S, SecretMeta>(state, &meta_key)?;
    if let Some(pre) = precondition {
        let current = meta.as_ref().map_or(0, |m| m.current_version);
        let live = super::versions::is_live(state, changes, path, current)?;
        if !pre.holds(current, live) {
            return Ok(CommandResult::PreconditionFailed { current, live });
        }
    }
    let Some(mut meta) = meta else {
        return Ok(CommandResult::NotFound);
    };
    let version_key = keys::version(path, meta.current_version);
    let Some(mut record) = changes.get_decoded::<S, VersionRecord>(state, &version_key)? else {
        return Ok(CommandResult::NotFound);
    };
    if record.deleted_at_ms.is_some() || record.is_destroyed() {
        return Ok(CommandResult::NotFound);
    }
    let at_ms = at_ms.max(meta.updated_at_ms);
    record.deleted_at_ms = Some(at_ms);
    meta.updated_at_ms = at_ms;
    let metadata = record.metadata(&meta, meta.current_version);
    changes.put(version_key, &record);
    changes.put(meta_key, &meta);
    Ok(CommandResult::Deleted(metadata))
}

/// Records the result under the request id in `caller`'s ring, evicting the id that held
/// the slot before (one of the same caller's).
fn remember<S: StateRead>(
    state: &S,
    changes: &mut Changes,
    caller: &str,
    id: &RequestId,
    result: &CommandResult,
) -> Result<(), ApplyError<S::Error>> {
    let counter_key = keys::dedup_counter(caller);
    let counter = changes
        .get(state, &counter_key)?
        .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
        .map_or(0, u64::from_be_bytes);
    let slot_key = keys::dedup_slot(caller, counter % DEDUP_CAPACITY);
    if let Some(old) = changes.get_decoded::<S, String>(state, &slot_key)? {
        changes.delete(keys::dedup(&old));
    }
    changes.put(slot_key, &id.as_str().to_string());
    let remembered = Remembered {
        fingerprint: id.fingerprint(),
        result: result.clone(),
    };
    changes.put(keys::dedup(id.as_str()), &remembered);
    changes
        .writes
        .insert(counter_key, Some((counter + 1).to_be_bytes().to_vec()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;
    use crate::secret::command::{MountKind, StoredPairs};
    use crate::secret::crypto::Sealed;
    use crate::secret::testing::{single, Mem};

    fn p(s: &str) -> SecretPath {
        SecretPath::parse(s).unwrap()
    }

    fn put(id: &str, at: u64, path: &str, val: &[u8], cas: Option<u64>) -> Request {
        let command = Command::Put {
            path: p(path),
            sealed: Sealed::from_bytes(val.to_vec()),
            cas,
        };
        single(id, at, None, command)
    }

    fn del(id: &str, at: u64, path: &str) -> Request {
        single(id, at, None, Command::Delete { path: p(path) })
    }

    fn version(m: &CommandResult) -> u64 {
        match m {
            CommandResult::Written(m) | CommandResult::Deleted(m) => m.version,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn versions_count_writes_per_path() {
        let mut s = Mem::default();
        let r = s.run(&[
            put("1", 10, "a", b"x", None),
            put("2", 11, "a", b"y", None),
            put("3", 12, "b", b"z", None),
        ]);
        assert_eq!(r.iter().map(version).collect::<Vec<_>>(), vec![1, 2, 1]);
        let meta: SecretMeta = codec::decode(&s.0[&keys::meta(&p("a"))]).unwrap();
        assert_eq!(
            meta,
            SecretMeta {
                current_version: 2,
                created_at_ms: 10,
                updated_at_ms: 11
            }
        );
        let v1: VersionRecord = codec::decode(&s.0[&keys::version(&p("a"), 1)]).unwrap();
        assert_eq!(&v1.sealed[..], b"x");
    }

    #[test]
    fn same_result_in_one_batch_or_many() {
        let reqs = [
            put("1", 10, "a", b"x", None),
            del("2", 11, "a"),
            put("3", 12, "a", b"y", Some(1)),
            put("4", 13, "a", b"z", Some(1)),
        ];
        let mut one = Mem::default();
        let r1 = one.run(&reqs);
        let mut many = Mem::default();
        let r2: Vec<_> = reqs
            .iter()
            .flat_map(|r| many.run(std::slice::from_ref(r)))
            .collect();
        assert_eq!(r1, r2);
        assert_eq!(one.0, many.0);
        // A soft delete keeps the version counter: cas=1 still matches after deleting v1.
        assert_eq!(version(&r1[2]), 2);
        assert_eq!(r1[3], CommandResult::CasMismatch { current: 2 });
    }

    #[test]
    fn cas_zero_means_absent() {
        let mut s = Mem::default();
        let r = s.run(&[
            put("1", 1, "a", b"x", Some(0)),
            put("2", 2, "a", b"y", Some(0)),
        ]);
        assert_eq!(version(&r[0]), 1);
        assert_eq!(r[1], CommandResult::CasMismatch { current: 1 });
    }

    #[test]
    fn retried_request_applies_once() {
        let mut s = Mem::default();
        let first = s.run(&[put("same", 1, "a", b"x", None)]);
        let again = s.run(&[put("same", 5, "a", b"x", None)]);
        assert_eq!(first, again);
        let meta: SecretMeta = codec::decode(&s.0[&keys::meta(&p("a"))]).unwrap();
        assert_eq!(meta.current_version, 1);
    }

    #[test]
    fn delete_is_soft_and_next_put_continues_versions() {
        let mut s = Mem::default();
        let r = s.run(&[
            put("1", 1, "a", b"x", None),
            del("2", 2, "a"),
            del("3", 3, "a"),
            del("4", 4, "nope"),
            put("5", 5, "a", b"y", None),
        ]);
        assert_eq!(version(&r[1]), 1);
        assert_eq!(r[2], CommandResult::NotFound);
        assert_eq!(r[3], CommandResult::NotFound);
        assert_eq!(version(&r[4]), 2);
        let v1: VersionRecord = codec::decode(&s.0[&keys::version(&p("a"), 1)]).unwrap();
        assert_eq!(v1.deleted_at_ms, Some(2));
    }

    #[test]
    fn updated_at_never_goes_backwards() {
        let mut s = Mem::default();
        let r = s.run(&[
            put("1", 100, "a", b"x", None),
            put("2", 50, "a", b"y", None),
        ]);
        match &r[1] {
            CommandResult::Written(m) => assert_eq!(m.updated_at_ms, 100),
            other => panic!("{other:?}"),
        }
    }

    fn cmd(id: &str, command: Command) -> Request {
        single(id, 7, None, command)
    }

    #[test]
    fn data_keys_rotate_in_order_only() {
        let mut s = Mem::default();
        let add = |i: &str, id| {
            cmd(
                i,
                Command::AddDataKey {
                    id,
                    wrapped: Sealed::from_bytes(vec![id as u8]),
                },
            )
        };
        let r = s.run(&[add("1", 1), add("2", 1), add("3", 3), add("4", 2)]);
        assert_eq!(
            r,
            vec![
                CommandResult::KeyAdded { id: 1 },
                CommandResult::KeyConflict { current: 1 },
                CommandResult::KeyConflict { current: 1 },
                CommandResult::KeyAdded { id: 2 },
            ]
        );
        assert_eq!(s.0[keys::CURRENT_KEY], 2u32.to_be_bytes());
        assert_eq!(s.0[&keys::data_key(1)], vec![1]);
    }

    #[test]
    fn root_token_once_and_revocation() {
        let mut s = Mem::default();
        let create = |i: &str, acc: &str, bootstrap| {
            cmd(
                i,
                Command::CreateToken {
                    accessor: acc.into(),
                    sealed: Sealed::from_bytes(vec![9]),
                    bootstrap,
                },
            )
        };
        let revoke = |i: &str, acc: &str| {
            cmd(
                i,
                Command::RevokeToken {
                    accessor: acc.into(),
                },
            )
        };
        let r = s.run(&[
            create("1", "aa", true),
            create("2", "bb", true),
            create("3", "cc", false),
            revoke("4", "cc"),
            revoke("5", "zz"),
        ]);
        assert_eq!(
            r,
            vec![
                CommandResult::TokenCreated,
                CommandResult::AlreadyBootstrapped,
                CommandResult::TokenCreated,
                CommandResult::TokenRevoked,
                CommandResult::NotFound,
            ]
        );
        assert!(!s.0.contains_key(&keys::token("bb")));
        assert_eq!(s.0[&keys::revoked("cc")], 7u64.to_be_bytes());
    }

    #[test]
    fn dedup_table_is_bounded() {
        let mut s = Mem::default();
        let n = DEDUP_CAPACITY + 10;
        let reqs: Vec<_> = (0..n)
            .map(|i| put(&format!("id{i}"), i, "a", b"v", None))
            .collect();
        s.run(&reqs);
        let ids = s.0.keys().filter(|k| k[0] == keys::DEDUP).count() as u64;
        assert_eq!(ids, DEDUP_CAPACITY);
        // The oldest ids were forgotten, the newest are remembered.
        assert!(!s.0.contains_key(&keys::dedup("id0")));
        assert!(s.0.contains_key(&keys::dedup(&format!("id{}", n - 1))));
    }

    #[test]
    fn a_reused_id_with_another_request_is_refused_and_writes_nothing() {
        let mut s = Mem::default();
        let put_as = |fp: u8, val: &[u8]| Request {
            at_ms: 1,
            ops: vec![Op {
                id: RequestId::client("tok:PUT a:deploy-1".into(), [fp; 16]),
                caller: None,
                command: Command::Put {
                    path: p("a"),
                    sealed: Sealed::from_bytes(val.to_vec()),
                    cas: None,
                },
            }],
        };
        let first = s.run(&[put_as(1, b"first")]);
        assert_eq!(version(&first[0]), 1);
        let before = s.0.clone();
        // Another request under the same id: refused, nothing changes.
        assert_eq!(
            s.run(&[put_as(2, b"second")]),
            vec![CommandResult::RequestIdReused]
        );
        assert_eq!(s.0, before, "a refused reuse wrote something");
        // The true retry gets the first answer and applies nothing.
        assert_eq!(s.run(&[put_as(1, b"first")]), first);
        assert_eq!(s.0, before);
    }

    #[test]
    fn no_caller_can_push_another_callers_ids_out() {
        let mut s = Mem::default();
        let create = |acc: &str| {
            cmd(
                &format!("create-{acc}"),
                Command::CreateToken {
                    accessor: acc.into(),
                    sealed: Sealed::from_bytes(vec![1]),
                    bootstrap: false,
                },
            )
        };
        s.run(&[create("aa"), create("bb")]);
        let by = |acc: &str, id: String| Request {
            at_ms: 5,
            ops: vec![Op {
                id: RequestId::named(id),
                caller: Some(Caller {
                    accessor: acc.into(),
                    expires_at_ms: None,
                }),
                command: Command::Put {
                    path: p("x"),
                    sealed: Sealed::from_bytes(vec![2]),
                    cas: None,
                },
            }],
        };
        s.run(&[by("aa", "aa-keep".into())]);
        // More writes by bb than a ring holds: bb forgets its own oldest ids only.
        let flood: Vec<_> = (0..DEDUP_CAPACITY + 5)
            .map(|i| by("bb", format!("bb-{i}")))
            .collect();
        s.run(&flood);
        assert!(
            s.0.contains_key(&keys::dedup("aa-keep")),
            "aa's id was evicted"
        );
        assert!(!s.0.contains_key(&keys::dedup("bb-0")));
        assert!(s
            .0
            .contains_key(&keys::dedup(&format!("bb-{}", DEDUP_CAPACITY + 4))));
    }

    #[test]
    fn a_batch_applies_like_its_ops_one_by_one() {
        let ops = [
            put("1", 10, "a", b"x", None),
            del("2", 10, "a"),
            put("3", 10, "a", b"y", Some(1)),
            put("4", 10, "b", b"z", Some(0)),
            put("1", 10, "a", b"again", None),
        ];
        let mut separate = Mem::default();
        let r1 = separate.run(&ops);
        let batch = Request {
            at_ms: 10,
            ops: ops.iter().flat_map(|r| r.ops.clone()).collect(),
        };
        let mut batched = Mem::default();
        let r2 = batched.run(&[batch]);
        assert_eq!(r1, r2);
        assert_eq!(separate.0, batched.0);
        // The repeated id inside the same batch returned the first result.
        assert_eq!(r2[4], r2[0]);
    }

    #[test]
    fn writes_check_their_token_where_they_apply() {
        let mut s = Mem::default();
        let create = |i: &str, acc: &str| {
            let command = Command::CreateToken {
                accessor: acc.into(),
                sealed: Sealed::from_bytes(vec![1]),
                bootstrap: false,
            };
            single(i, 1, None, command)
        };
        s.run(&[create("c1", "aa"), create("c2", "bb")]);
        let by = |acc: &str, expires: Option<u64>| {
            Some(Caller {
                accessor: acc.into(),
                expires_at_ms: expires,
            })
        };
        let write = |i: &str, at: u64, caller| {
            let command = Command::Put {
                path: p("x"),
                sealed: Sealed::from_bytes(vec![2]),
                cas: None,
            };
            single(i, at, caller, command)
        };
        let revoke = |i: &str, acc: &str| {
            let command = Command::RevokeToken {
                accessor: acc.into(),
            };
            single(i, 5, by("aa", None), command)
        };
        let r = s.run(&[
            write("w1", 5, by("aa", None)),
            revoke("r1", "bb"),
            write("w2", 6, by("bb", None)),
            write("w3", 6, by("zz", None)),
            write("w4", 9, by("aa", Some(9))),
            write("w5", 8, by("aa", Some(9))),
        ]);
        assert_eq!(version(&r[0]), 1);
        assert_eq!(r[1], CommandResult::TokenRevoked);
        assert_eq!(
            r[2],
            CommandResult::Unauthorized("token bb has been revoked".into())
        );
        assert_eq!(
            r[3],
            CommandResult::Unauthorized("token zz is unknown".into())
        );
        assert_eq!(
            r[4],
            CommandResult::Unauthorized("token aa has expired".into())
        );
        assert_eq!(version(&r[5]), 2, "refused writes changed nothing");
    }

    fn restore_op(id: &str, command: Command) -> Request {
        single(id, 20, None, command)
    }

    #[test]
    fn a_restore_replaces_the_data_atomically_and_keeps_bookkeeping() {
        let mut s = Mem::default();
        s.run(&[
            put("1", 10, "old/a", b"x", None),
            put("2", 11, "old/b", b"y", None),
        ]);
        let backup = vec![
            (keys::meta(&p("new/a")), vec![1]),
            (keys::version(&p("new/a"), 1), vec![2]),
            (keys::data_key(1), vec![3]),
        ];
        let begin = |id: &str, force| {
            restore_op(
                id,
                Command::RestoreBegin {
                    restore: 7,
                    pairs: 3,
                    force,
                },
            )
        };
        let chunk = |id: &str, seq, pairs: &[(Vec<u8>, Vec<u8>)]| {
            restore_op(
                id,
                Command::RestoreChunk {
                    restore: 7,
                    seq,
                    pairs: StoredPairs::new(pairs.to_vec()),
                },
            )
        };
        let commit = |id: &str| restore_op(id, Command::RestoreCommit { restore: 7 });
        let data_of = |m: &Mem| -> Vec<(Vec<u8>, Vec<u8>)> {
            m.0.iter()
                .filter(|(k, _)| keys::is_data(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        let before = data_of(&s);
        let r = s.run(&[begin("b0", false)]);
        assert!(matches!(r[0], CommandResult::RestoreRefused(_)), "{r:?}");
        assert_eq!(data_of(&s), before, "refused: no data changed");
        assert!(!s.0.contains_key(keys::RESTORE));
        let r = s.run(&[
            begin("b1", true),
            chunk("c0", 0, &backup[..2]),
            commit("early"),
            chunk("c2", 2, &backup[2..]),
        ]);
        assert!(
            matches!(r[2], CommandResult::RestoreRefused(_)),
            "partial: {r:?}"
        );
        assert!(
            matches!(r[3], CommandResult::RestoreRefused(_)),
            "out of order: {r:?}"
        );
        assert!(
            s.0.contains_key(&keys::meta(&p("old/a"))),
            "nothing replaced yet"
        );
        let r = s.run(&[
            chunk("c1", 1, &backup[2..]),
            commit("done"),
            put("late", 21, "new/x", b"z", None),
        ]);
        assert_eq!(r[1], CommandResult::Restored { pairs: 3 });
        assert_eq!(r[2], CommandResult::RetryAfterRestore);
        let data: Vec<_> = s.0.iter().filter(|(k, _)| keys::is_data(k)).collect();
        assert_eq!(data.len(), 3);
        for (k, v) in &backup {
            assert_eq!(s.0.get(k), Some(v));
        }
        assert!(!s
            .0
            .keys()
            .any(|k| k[0] == keys::STAGING || k == keys::RESTORE));
        // Bookkeeping survives: the commit is remembered, the late write is not.
        assert!(s.0.contains_key(&keys::dedup("done")));
        assert!(!s.0.contains_key(&keys::dedup("late")));
    }

    #[test]
    fn an_unforced_restore_never_replaces_data_written_before_its_commit() {
        let begin = |id: &str, force| {
            restore_op(
                id,
                Command::RestoreBegin {
                    restore: 9,
                    pairs: 1,
                    force,
                },
            )
        };
        let chunk = |id: &str| {
            restore_op(
                id,
                Command::RestoreChunk {
                    restore: 9,
                    seq: 0,
                    pairs: StoredPairs::new(vec![(keys::meta(&p("new/a")), vec![1])]),
                },
            )
        };
        let commit = |id: &str| restore_op(id, Command::RestoreCommit { restore: 9 });
        // A cluster holding only a mount is not empty: its keys would be lost.
        let mut s = Mem::default();
        assert!(matches!(
            run_cmd(&mut s, "m", 1, mount("pay")),
            CommandResult::Mount(_)
        ));
        let r = s.run(&[begin("b", false)]);
        assert!(
            matches!(&r[0], CommandResult::RestoreRefused(why) if why.contains("mounts")),
            "{r:?}"
        );
        // An empty cluster starts a restore; a write acknowledged during the upload makes
        // the commit refuse, and the write survives.
        let mut s = Mem::default();
        let r = s.run(&[begin("b", false), chunk("c")]);
        assert!(
            matches!(r[1], CommandResult::RestoreStaged { staged: 1 }),
            "{r:?}"
        );
        s.run(&[put("w", 2, "live", b"acknowledged", None)]);
        let r = s.run(&[commit("x")]);
        assert!(
            matches!(&r[0], CommandResult::RestoreRefused(why) if why.contains("uploading")),
            "{r:?}"
        );
        assert!(
            s.0.contains_key(&keys::meta(&p("live"))),
            "the acknowledged write survives"
        );
        assert!(!s.0.contains_key(&keys::meta(&p("new/a"))));
        assert!(
            !s.0.keys()
                .any(|k| k[0] == keys::STAGING || k == keys::RESTORE),
            "abandoned"
        );
        // The same in one batch (a write applied between chunk and commit).
        let mut s = Mem::default();
        let r = s.run(&[
            begin("b", false),
            chunk("c"),
            put("w", 2, "live", b"v", None),
            commit("x"),
        ]);
        assert!(matches!(r[3], CommandResult::RestoreRefused(_)), "{r:?}");
        assert!(s.0.contains_key(&keys::meta(&p("live"))));
        // Forced, the same sequence replaces the data.
        let mut s = Mem::default();
        s.run(&[put("w0", 1, "old", b"v", None)]);
        let r = s.run(&[
            begin("b", true),
            chunk("c"),
            put("w", 2, "live", b"v", None),
            commit("x"),
        ]);
        assert_eq!(r[3], CommandResult::Restored { pairs: 1 });
        assert!(!s.0.contains_key(&keys::meta(&p("live"))));
        assert!(s.0.contains_key(&keys::meta(&p("new/a"))));
    }

    fn run_cmd(s: &mut Mem, id: &str, at: u64, command: Command) -> CommandResult {
        s.run(&[single(id, at, None, command)]).remove(0)
    }

    #[test]
    fn preconditions_decide_in_apply() {
        let mut s = Mem::default();
        let put_if = |pre| Command::PutIf {
            path: p("a"),
            sealed: Sealed::from_bytes(b"sealed-value-bytes".to_vec()),
            precondition: pre,
        };
        // If-Match on an absent path fails; If-None-Match: * creates it.
        assert_eq!(
            run_cmd(&mut s, "1", 1, put_if(Precondition::Version(1))),
            CommandResult::PreconditionFailed {
                current: 0,
                live: false
            }
        );
        assert_eq!(
            version(&run_cmd(&mut s, "2", 2, put_if(Precondition::Absent))),
            1
        );
        assert_eq!(
            run_cmd(&mut s, "3", 3, put_if(Precondition::Absent)),
            CommandResult::PreconditionFailed {
                current: 1,
                live: true
            }
        );
        // Two writers holding ETag 1 in one batch: exactly one wins.
        let both = s.run(&[
            single("4", 4, None, put_if(Precondition::Version(1))),
            single("5", 4, None, put_if(Precondition::Version(1))),
        ]);
        assert_eq!(version(&both[0]), 2);
        assert_eq!(
            both[1],
            CommandResult::PreconditionFailed {
                current: 2,
                live: true
            }
        );
        // A deleted latest version: If-Match fails, If-None-Match: * succeeds.
        let del_if = |pre| Command::DeleteIf {
            path: p("a"),
            precondition: pre,
        };
        assert_eq!(
            run_cmd(&mut s, "6", 5, del_if(Precondition::Version(1))),
            CommandResult::PreconditionFailed {
                current: 2,
                live: true
            }
        );
        assert_eq!(
            version(&run_cmd(&mut s, "7", 6, del_if(Precondition::Version(2)))),
            2
        );
        assert_eq!(
            run_cmd(&mut s, "8", 7, put_if(Precondition::Exists)),
            CommandResult::PreconditionFailed {
                current: 2,
                live: false
            }
        );
        assert_eq!(
            version(&run_cmd(&mut s, "9", 8, put_if(Precondition::Absent))),
            3
        );
    }

    fn kept(s: &Mem, path: &str) -> Vec<u64> {
        let prefix = keys::version_prefix(&p(path));
        s.0.keys()
            .filter(|k| k.starts_with(&prefix))
            .filter_map(|k| keys::version_of(k))
            .collect()
    }

    #[test]
    fn versions_are_capped_undeleted_destroyed_and_removed() {
        let mut s = Mem::default();
        let reqs: Vec<_> = (1..=12)
            .map(|i| put(&format!("w{i}"), i, "a", b"v", None))
            .collect();
        s.run(&reqs);
        assert_eq!(
            kept(&s, "a"),
            (3..=12).collect::<Vec<_>>(),
            "default cap 10"
        );
        let set = |n| Command::SetMaxVersions {
            path: p("a"),
            max_versions: n,
        };
        assert_eq!(
            run_cmd(&mut s, "m1", 20, set(3)),
            CommandResult::MaxVersionsSet { pruned: 7 }
        );
        assert_eq!(kept(&s, "a"), vec![10, 11, 12]);
        s.run(&[put("w13", 21, "a", b"v", None)]);
        assert_eq!(kept(&s, "a"), vec![11, 12, 13]);
        s.run(&[del("d1", 22, "a")]);
        let und = Command::Undelete {
            path: p("a"),
            versions: vec![13, 2, 13],
        };
        assert_eq!(
            run_cmd(&mut s, "u1", 23, und),
            CommandResult::VersionsChanged { versions: vec![13] }
        );
        let destroy = Command::Destroy {
            path: p("a"),
            versions: vec![12, 13],
        };
        assert_eq!(
            run_cmd(&mut s, "x1", 24, destroy),
            CommandResult::VersionsChanged {
                versions: vec![12, 13]
            }
        );
        let v13: VersionRecord = codec::decode(&s.0[&keys::version(&p("a"), 13)]).unwrap();
        assert!(v13.is_destroyed() && v13.deleted_at_ms.is_none());
        // A destroyed latest version is not live, cannot be deleted or undeleted.
        assert_eq!(
            run_cmd(&mut s, "d2", 25, Command::Delete { path: p("a") }),
            CommandResult::NotFound
        );
        let und = Command::Undelete {
            path: p("a"),
            versions: vec![13],
        };
        assert_eq!(
            run_cmd(&mut s, "u2", 26, und),
            CommandResult::VersionsChanged { versions: vec![] }
        );
        // Removing the path removes everything of it, and nothing of its neighbours.
        s.run(&[
            put("b1", 27, "a/b", b"v", None),
            put("b2", 27, "ab", b"v", None),
        ]);
        assert_eq!(
            run_cmd(&mut s, "r1", 28, Command::DeleteMetadata { path: p("a") }),
            CommandResult::MetadataDeleted
        );
        assert!(kept(&s, "a").is_empty());
        assert!(!s.0.contains_key(&keys::meta(&p("a"))));
        assert!(!s.0.contains_key(&keys::settings(&p("a"))));
        assert_eq!(kept(&s, "a/b"), vec![1]);
        assert_eq!(kept(&s, "ab"), vec![1]);
        assert_eq!(
            run_cmd(&mut s, "r2", 29, Command::DeleteMetadata { path: p("a") }),
            CommandResult::NotFound
        );
        // A new write starts again at version 1 with the default cap.
        assert_eq!(version(&s.run(&[put("w14", 30, "a", b"v", None)])[0]), 1);
    }

    fn set_meta(path: &str, sealed: Option<&[u8]>, generation: Option<u64>) -> Command {
        Command::SetMetadata {
            path: p(path),
            max_versions: None,
            custom_metadata: sealed.map(|b| Sealed::from_bytes(b.to_vec())),
            generation,
        }
    }

    fn custom(s: &Mem, path: &str) -> Option<super::super::custom::CustomMetadataRecord> {
        s.0.get(&keys::custom_metadata(&p(path)))
            .map(|b| codec::decode(b).unwrap())
    }

    #[test]
    fn custom_metadata_is_set_before_data_compared_and_set_and_removed_with_the_path() {
        let mut s = Mem::default();
        // Metadata before any version, as Vault allows: generation 1, no version made.
        assert_eq!(
            run_cmd(&mut s, "c1", 10, set_meta("a", Some(b"sealed-1"), None)),
            CommandResult::MetadataSet {
                pruned: 0,
                generation: 1
            }
        );
        let rec = custom(&s, "a").unwrap();
        assert_eq!(
            (rec.generation, &rec.sealed[..], rec.created_at_ms),
            (1, b"sealed-1".as_slice(), 10)
        );
        assert!(!s.0.contains_key(&keys::meta(&p("a"))));
        // A write of data leaves it alone.
        s.run(&[put("w1", 11, "a", b"v", None)]);
        assert_eq!(custom(&s, "a").unwrap().generation, 1);
        // Compare-and-set: the generation read wins once; a stale one changes nothing.
        assert_eq!(
            run_cmd(&mut s, "c2", 12, set_meta("a", Some(b"sealed-2"), Some(1))),
            CommandResult::MetadataSet {
                pruned: 0,
                generation: 2
            }
        );
        assert_eq!(
            run_cmd(&mut s, "c3", 13, set_meta("a", Some(b"sealed-3"), Some(1))),
            CommandResult::CustomMetadataConflict { current: 2 }
        );
        let rec = custom(&s, "a").unwrap();
        assert_eq!(
            (rec.generation, &rec.sealed[..]),
            (2, b"sealed-2".as_slice())
        );
        assert_eq!((rec.created_at_ms, rec.updated_at_ms), (10, 12));
        // Two patches of generation 2 in one batch: exactly one applies.
        let r = s.run(&[
            single("c4", 14, None, set_meta("a", Some(b"x"), Some(2))),
            single("c5", 14, None, set_meta("a", Some(b"y"), Some(2))),
        ]);
        assert_eq!(
            r,
            vec![
                CommandResult::MetadataSet {
                    pruned: 0,
                    generation: 3
                },
                CommandResult::CustomMetadataConflict { current: 3 }
            ]
        );
        assert_eq!(&custom(&s, "a").unwrap().sealed[..], b"x");
        // A generation of 0 means "none yet": it fails once there is one.
        assert_eq!(
            run_cmd(&mut s, "c6", 15, set_meta("b", Some(b"b1"), Some(0))),
            CommandResult::MetadataSet {
                pruned: 0,
                generation: 1
            }
        );
        assert_eq!(
            run_cmd(&mut s, "c7", 15, set_meta("b", Some(b"b2"), Some(0))),
            CommandResult::CustomMetadataConflict { current: 1 }
        );
        // The cap and the map in one command, together.
        for i in 2..=4 {
            s.run(&[put(&format!("w{i}"), 16, "a", b"v", None)]);
        }
        let both = Command::SetMetadata {
            path: p("a"),
            max_versions: Some(2),
            custom_metadata: Some(Sealed::from_bytes(b"z".to_vec())),
            generation: Some(3),
        };
        assert_eq!(
            run_cmd(&mut s, "c8", 17, both),
            CommandResult::MetadataSet {
                pruned: 2,
                generation: 4
            }
        );
        assert_eq!(kept(&s, "a"), vec![3, 4]);
        // A conflict changes the cap neither.
        let stale = Command::SetMetadata {
            path: p("a"),
            max_versions: Some(1),
            custom_metadata: Some(Sealed::from_bytes(b"q".to_vec())),
            generation: Some(3),
        };
        assert_eq!(
            run_cmd(&mut s, "c9", 18, stale),
            CommandResult::CustomMetadataConflict { current: 4 }
        );
        assert_eq!(kept(&s, "a"), vec![3, 4]);
        // Removing the path removes its custom metadata; a path with custom metadata only
        // can be removed too; its neighbours keep theirs.
        s.run(&[single("n1", 19, None, set_meta("ab", Some(b"n"), None))]);
        assert_eq!(
            run_cmd(&mut s, "d1", 20, Command::DeleteMetadata { path: p("a") }),
            CommandResult::MetadataDeleted
        );
        assert!(custom(&s, "a").is_none());
        assert!(custom(&s, "ab").is_some());
        assert_eq!(
            run_cmd(&mut s, "d2", 21, Command::DeleteMetadata { path: p("b") }),
            CommandResult::MetadataDeleted
        );
        assert!(custom(&s, "b").is_none());
        // Written again, it starts over at generation 1.
        assert_eq!(
            run_cmd(&mut s, "c10", 22, set_meta("a", Some(b"again"), Some(0))),
            CommandResult::MetadataSet {
                pruned: 0,
                generation: 1
            }
        );
    }

    #[test]
    fn custom_metadata_is_refused_under_a_mount_and_counts_as_data_for_a_restore() {
        let mut s = Mem::default();
        s.run(&[single("m", 1, None, mount("pay"))]);
        assert_eq!(
            run_cmd(&mut s, "c1", 2, set_meta("pay/x", Some(b"s"), None)),
            CommandResult::UnderMount {
                mount: "pay".into()
            }
        );
        assert!(custom(&s, "pay/x").is_none());
        let mut s = Mem::default();
        s.run(&[single(
            "c",
            1,
            None,
            set_meta("only/meta", Some(b"s"), None),
        )]);
        let begin = restore_op(
            "b",
            Command::RestoreBegin {
                restore: 1,
                pairs: 1,
                force: false,
            },
        );
        let r = s.run(&[begin]);
        assert!(
            matches!(&r[0], CommandResult::RestoreRefused(why) if why.contains("custom metadata")),
            "{r:?}"
        );
    }

    fn mount(path: &str) -> Command {
        Command::CreateMount {
            path: p(path),
            kind: MountKind::Ondemand,
            wrapped: Sealed::from_bytes(format!("wrapped-{path}").into_bytes()),
        }
    }

    #[test]
    fn mounts_do_not_nest_or_overlap_kv_paths() {
        let mut s = Mem::default();
        s.run(&[put("1", 1, "kv/x", b"v", None)]);
        assert!(matches!(
            run_cmd(&mut s, "m1", 2, mount("pay")),
            CommandResult::Mount(_)
        ));
        for (id, path, needle) in [
            ("m2", "pay", "already mounted"),
            ("m3", "pay/eu", "inside the mount at 'pay'"),
            ("m4", "kv", "'kv/x', under 'kv'"),
            ("m5", "kv/x", "stored at 'kv/x'"),
        ] {
            match run_cmd(&mut s, id, 3, mount(path)) {
                CommandResult::MountConflict(why) => assert!(why.contains(needle), "{why}"),
                other => panic!("{path}: {other:?}"),
            }
        }
        assert!(matches!(
            run_cmd(&mut s, "m6", 3, mount("a/b")),
            CommandResult::Mount(_)
        ));
        match run_cmd(&mut s, "m7", 3, mount("a")) {
            CommandResult::MountConflict(why) => assert!(why.contains("'a/b' is under"), "{why}"),
            other => panic!("{other:?}"),
        }
        // Neighbours that only share a prefix do not conflict.
        assert!(matches!(
            run_cmd(&mut s, "m8", 3, mount("payx")),
            CommandResult::Mount(_)
        ));
        // A KV write that lands under a mount is refused where it applies.
        assert_eq!(
            s.run(&[put("2", 4, "pay/card", b"v", None)])[0],
            CommandResult::UnderMount {
                mount: "pay".into()
            }
        );
        assert!(!s.0.contains_key(&keys::meta(&p("pay/card"))));
        // Mount then KV put in one batch: the same answer.
        let r = s.run(&[
            single("m9", 5, None, mount("new")),
            put("3", 5, "new/x", b"v", None),
        ]);
        assert_eq!(
            r[1],
            CommandResult::UnderMount {
                mount: "new".into()
            }
        );
    }

    #[test]
    fn mount_keys_rotate_configure_trim_and_go_with_the_mount() {
        let mut s = Mem::default();
        s.run(&[single("m", 1, None, mount("pay"))]);
        let add = |v: u32| Command::AddMountKey {
            path: p("pay"),
            version: v,
            wrapped: Sealed::from_bytes(vec![v as u8]),
        };
        let rec = |r: CommandResult| match r {
            CommandResult::Mount(m) => m,
            other => panic!("{other:?}"),
        };
        assert_eq!(rec(run_cmd(&mut s, "a2", 2, add(2))).latest_version, 2);
        assert_eq!(
            run_cmd(&mut s, "a2b", 2, add(2)),
            CommandResult::KeyConflict { current: 2 }
        );
        assert_eq!(rec(run_cmd(&mut s, "a3", 3, add(3))).latest_version, 3);
        let conf = |d, e| Command::ConfigureMount {
            path: p("pay"),
            min_decryption_version: d,
            min_encryption_version: e,
        };
        assert!(matches!(
            run_cmd(&mut s, "c1", 4, conf(Some(4), None)),
            CommandResult::MountRefused(_)
        ));
        assert!(matches!(
            run_cmd(&mut s, "c2", 4, conf(None, Some(4))),
            CommandResult::MountRefused(_)
        ));
        let r = rec(run_cmd(&mut s, "c3", 4, conf(Some(2), Some(3))));
        assert_eq!((r.min_decryption_version, r.min_encryption_version), (2, 3));
        let trim = |v| Command::TrimMount {
            path: p("pay"),
            min_available_version: v,
        };
        assert!(matches!(
            run_cmd(&mut s, "t1", 5, trim(3)),
            CommandResult::MountRefused(_)
        ));
        assert_eq!(
            rec(run_cmd(&mut s, "t2", 5, trim(2))).min_available_version,
            2
        );
        assert!(!s.0.contains_key(&keys::mount_key("pay", 1)));
        assert!(s.0.contains_key(&keys::mount_key("pay", 2)));
        assert!(matches!(
            run_cmd(&mut s, "t3", 5, trim(1)),
            CommandResult::MountRefused(_)
        ));
        assert!(matches!(
            run_cmd(&mut s, "c4", 6, conf(Some(1), Some(0))),
            CommandResult::MountRefused(_)
        ));
        assert_eq!(
            run_cmd(&mut s, "d1", 7, Command::DeleteMount { path: p("pay") }),
            CommandResult::MountDeleted
        );
        assert!(
            !s.0.keys()
                .any(|k| k[0] == keys::MOUNT || k[0] == keys::MOUNT_KEY),
            "no record or key of the mount is left"
        );
        assert_eq!(
            run_cmd(&mut s, "d2", 8, Command::DeleteMount { path: p("pay") }),
            CommandResult::NotFound
        );
    }
}
