//! Named ACL policies (Vault's `sys/policies/acl/<name>`): what a token made with
//! `auth/token/create -policy=…` takes its authority from.
//!
//! Invariants:
//! - A policy is stored as its author's text and the grants (raftsafe's scopes on path
//!   patterns) it was compiled to by the dialect that accepted it (`api::vault::policy`).
//!   Apply only checks the name and stores both, so it stays pure and deterministic.
//! - A token copies the grants of its policies when it is created. Editing or deleting a
//!   policy changes no existing token: a token's authority is fixed at creation, which the
//!   write path's authorization relies on (`api::auth`). Tokens created afterwards get the
//!   new grants.
//! - A login role may name policies (`token_policies`): its logins compile their grants at
//!   login time. Writing or deleting a policy raises the generation of every role naming it
//!   ([`super::login::policy_changed`]), so a login checked against the policy as it was is
//!   refused where it applies.
//! - Names are 1–128 characters of `A-Z a-z 0-9 _ . -`; `root` and `default` are Vault's
//!   own and cannot be written or deleted here.
//! - Stored with bincode (`P<name>`), so [`StoredAclPolicy`] never changes shape; a new need
//!   is a new type or key.

use serde::{Deserialize, Serialize};

use super::command::CommandResult;
use super::state::{keys, next_stamp, ApplyError, Changes, StateRead};
use super::token::Policy;

/// A policy as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredAclPolicy {
    /// Raised by every write of the policy (1 at creation).
    pub generation: u64,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
    /// The text as written (HCL or JSON), returned by a read.
    pub rules: String,
    /// What the text grants, in raftsafe's terms.
    pub grants: Vec<Policy>,
}

/// Names Vault keeps for itself.
pub const RESERVED: [&str; 2] = ["root", "default"];

/// The longest policy text accepted (Vault has no limit; 64 KiB holds hundreds of paths).
pub const MAX_RULES_BYTES: usize = 64 * 1024;

/// Why `name` cannot name a policy, if it cannot.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.chars().count() > 128 {
        return Err("a policy name must be 1-128 characters".into());
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return Err(format!(
            "policy name '{name}' may hold only letters, digits, '_', '.' and '-'"
        ));
    }
    if RESERVED.contains(&name) {
        return Err(format!(
            "the '{name}' policy is built in and cannot be changed"
        ));
    }
    Ok(())
}

/// `P<name>`.
pub fn key(name: &str) -> Vec<u8> {
    let mut k = vec![keys::ACL_POLICY];
    k.extend_from_slice(name.as_bytes());
    k
}

/// Writes policy `name` (creating it or replacing its text and grants).
pub fn put<S: StateRead>(
    state: &S,
    changes: &mut Changes,
    at_ms: u64,
    name: &str,
    rules: &str,
    grants: &[Policy],
) -> Result<CommandResult, ApplyError<S::Error>> {
    if let Err(why) = check_name(name) {
        return Ok(CommandResult::AclPolicyRefused(why));
    }
    let key = key(name);
    let old: Option<StoredAclPolicy> = changes.get_decoded(state, &key)?;
    let (generation, updated_at_ms) =
        next_stamp(old.as_ref().map(|o| (o.generation, o.updated_at_ms)), at_ms);
    let stored = StoredAclPolicy {
        generation,
        created_at_ms: old.as_ref().map_or(at_ms, |o| o.created_at_ms),
        updated_at_ms,
        rules: rules.to_string(),
        grants: grants.to_vec(),
    };
    changes.put(key, &stored);
    super::login::policy_changed(state, changes, name)?;
    Ok(CommandResult::AclPolicyWritten { generation })
}

/// Deletes policy `name` (tokens made with it keep the grants they were made with).
pub fn delete<S: StateRead>(
    state: &S,
    changes: &mut Changes,
    name: &str,
) -> Result<CommandResult, ApplyError<S::Error>> {
    if let Err(why) = check_name(name) {
        return Ok(CommandResult::AclPolicyRefused(why));
    }
    let key = key(name);
    if changes.get(state, &key)?.is_none() {
        return Ok(CommandResult::NotFound);
    }
    changes.delete(key);
    super::login::policy_changed(state, changes, name)?;
    Ok(CommandResult::AclPolicyDeleted)
}
