//! Logins: the roles that turn a workload's credential (an AppRole secret id, a signed JWT)
//! into a short-lived token, AppRole's secret ids, and the leases of the tokens logins issue.
//! Called from [`super::machine::apply`], so every function here is pure.
//!
//! A login is checked twice, like every write: the node that received it verifies the
//! credential (the secret id's MAC, the JWT's signature and claims) against the role and
//! configuration it read, then proposes [`Command::Login`](super::Command::Login) naming the
//! *generations* it checked against. Apply issues the token only if they are still current.
//!
//! Invariants:
//! - A role grants one fixed [`Policy`](super::token::Policy) (scopes × path patterns), the
//!   grants of the ACL policies it names (`token_policies`, compiled at each login) and token
//!   TTLs. Every change to a role, to an ACL policy it names, or to the JWT configuration
//!   raises a generation, and deleting a role
//!   removes it with its secret ids. A login checked against an older generation, or a role
//!   that is gone, is refused where it applies: no token is issued after an acknowledged
//!   change that would have refused it (revoking a role or a key stops new logins at once).
//! - A secret id is stored as its HMAC under a master-derived key, never as itself. A bounded
//!   one is consumed where the login applies, in log order, so two logins racing for its
//!   last use cannot both win; one that is used up or expired at the entry's time is refused.
//! - An AppRole `role_id` names one role: a write that would give two roles the same id is
//!   refused, so the role a login finds by its id is unambiguous.
//! - A token issued by a login carries a [`Lease`] computed from the entry's time: renewal
//!   moves its expiry to the entry's time plus the role's TTL (or the asked increment),
//!   never back and never past the max TTL fixed at login. Tokens made by an administrator
//!   have no lease and are not renewable.
//!
//! The types (roles, secret ids, leases) are in [`super::auth`], which commands carry.

pub use super::auth::{
    AppRoleBinding, Binding, JwtBinding, JwtConfig, Lease, Login, Method, Role, SecretId,
    StoredJwtConfig, StoredRole,
};
use super::command::CommandResult;
use super::state::{keys, next_stamp, ApplyError, Changes, StateRead};

pub fn role_key(method: Method, name: &str) -> Vec<u8> {
    let mut k = vec![keys::ROLE, method.byte()];
    k.extend_from_slice(name.as_bytes());
    k
}

/// `u<method byte>`: the prefix of every role of `method`.
pub fn role_prefix(method: Method) -> Vec<u8> {
    vec![keys::ROLE, method.byte()]
}

pub fn role_id_key(role_id: &str) -> Vec<u8> {
    keys::with_path(keys::ROLE_ID, role_id)
}

pub fn secret_id_prefix(role: &str) -> Vec<u8> {
    let mut k = keys::with_path(keys::SECRET_ID, role);
    k.push(0);
    k
}

pub fn secret_id_key(role: &str, accessor: &str) -> Vec<u8> {
    let mut k = secret_id_prefix(role);
    k.extend_from_slice(accessor.as_bytes());
    k
}

pub fn lease_key(accessor: &str) -> Vec<u8> {
    keys::with_path(keys::LEASE, accessor)
}

pub const JWT_CONFIG: &[u8] = b"Ujwt";

/// Vault's answer to every bad AppRole pair: which half was wrong is not told.
pub const INVALID_APPROLE: &str = "invalid role or secret ID";

/// Creates or replaces role `name`.
pub fn put_role<S: StateRead>(
    state: &S,
    changes: &mut Changes,
    at_ms: u64,
    name: &str,
    role: &Role,
    token_policies: &[String],
) -> Result<CommandResult, ApplyError<S::Error>> {
    let key = role_key(role.method(), name);
    let old = stored_role(state, changes, &key)?;
    if let Binding::AppRole(b) = &role.binding {
        let id_key = role_id_key(&b.role_id);
        if let Some(owner) = changes.get(state, &id_key)? {
            if owner != name.as_bytes() {
                return Ok(CommandResult::RoleRefused(format!(
                    "role_id is already the id of role '{}'",
                    String::from_utf8_lossy(&owner)
                )));
            }
        }
        if let Some(Binding::AppRole(previous)) = old.as_ref().map(|o| &o.role.binding) {
            if previous.role_id != b.role_id {
                changes.delete(role_id_key(&previous.role_id));
            }
        }
        changes
            .writes
            .insert(id_key, Some(name.as_bytes().to_vec()));
    }
    let (generation, updated_at_ms) =
        next_stamp(old.as_ref().map(|o| (o.generation, o.updated_at_ms)), at_ms);
    let stored = StoredRole {
        generation,
        created_at_ms: old.as_ref().map_or(at_ms, |o| o.created_at_ms),
        updated_at_ms,
        role: role.clone(),
        token_policies: token_policies.to_vec(),
    };
    changes.writes.insert(key, Some(stored.encode()));
    Ok(CommandResult::RoleWritten { generation })
}

/// The role stored at `key`, in either layout.
fn stored_role<S: StateRead>(
    state: &S,
    changes: &Changes,
    key: &[u8],
) -> Result<Option<StoredRole>, ApplyError<S::Error>> {
    let Some(bytes) = changes.get(state, key)? else {
        return Ok(None);
    };
    StoredRole::decode(&bytes)
        .map(Some)
        .map_err(|source| ApplyError::Decode {
            key: String::from_utf8_lossy(key).into_owned(),
            source,
        })
}

/// Raises the generation of every role that names ACL policy `policy` in its
/// `token_policies`, because the policy was just written or deleted: a login checked against
/// the policy as it was is then refused, as a login checked against an older role is. A
/// cluster where no role names a policy (every cluster a node of an earlier release still
/// applies to: it cannot apply a role with policies) changes nothing here.
pub fn policy_changed<S: StateRead>(
    state: &S,
    changes: &mut Changes,
    policy: &str,
) -> Result<(), ApplyError<S::Error>> {
    for key in changes.keys_with_prefix(state, &[keys::ROLE])? {
        let Some(mut stored) = stored_role(state, changes, &key)? else {
            continue;
        };
        if stored.token_policies.iter().any(|p| p == policy) {
            stored.generation += 1;
            changes.writes.insert(key, Some(stored.encode()));
        }
    }
    Ok(())
}

/// Deletes role `name` with its secret ids (tokens it issued live out their leases).
pub fn delete_role<S: StateRead>(
    state: &S,
    changes: &mut Changes,
    method: Method,
    name: &str,
) -> Result<CommandResult, ApplyError<S::Error>> {
    let key = role_key(method, name);
    let Some(old) = stored_role(state, changes, &key)? else {
        return Ok(CommandResult::NotFound);
    };
    if let Binding::AppRole(b) = &old.role.binding {
        changes.delete(role_id_key(&b.role_id));
        for k in changes.keys_with_prefix(state, &secret_id_prefix(name))? {
            changes.delete(k);
        }
    }
    changes.delete(key);
    Ok(CommandResult::RoleDeleted)
}

/// Replaces the JWT method's configuration (its keys and issuer).
pub fn put_jwt_config<S: StateRead>(
    state: &S,
    changes: &mut Changes,
    at_ms: u64,
    config: &JwtConfig,
) -> Result<CommandResult, ApplyError<S::Error>> {
    let old: Option<StoredJwtConfig> = changes.get_decoded(state, JWT_CONFIG)?;
    let (generation, updated_at_ms) =
        next_stamp(old.as_ref().map(|o| (o.generation, o.updated_at_ms)), at_ms);
    let stored = StoredJwtConfig {
        generation,
        updated_at_ms,
        config: config.clone(),
    };
    changes.put(JWT_CONFIG.to_vec(), &stored);
    Ok(CommandResult::RoleWritten { generation })
}

/// Adds a secret id to AppRole role `role` (which must exist).
pub fn add_secret_id<S: StateRead>(
    state: &S,
    changes: &mut Changes,
    role: &str,
    secret_id: &SecretId,
) -> Result<CommandResult, ApplyError<S::Error>> {
    if changes
        .get(state, &role_key(Method::AppRole, role))?
        .is_none()
    {
        return Ok(CommandResult::NotFound);
    }
    let key = secret_id_key(role, &secret_id.accessor);
    if changes.get(state, &key)?.is_some() {
        // 64 bits of a MAC of 256 random bits colliding: refuse rather than replace.
        return Ok(CommandResult::RoleRefused(
            "a secret id with this accessor exists; generate another".into(),
        ));
    }
    changes.put(key, secret_id);
    Ok(CommandResult::SecretIdAdded)
}

pub fn destroy_secret_id<S: StateRead>(
    state: &S,
    changes: &mut Changes,
    role: &str,
    accessor: &str,
) -> Result<CommandResult, ApplyError<S::Error>> {
    let key = secret_id_key(role, accessor);
    if changes.get(state, &key)?.is_none() {
        return Ok(CommandResult::NotFound);
    }
    changes.delete(key);
    Ok(CommandResult::SecretIdDestroyed)
}

/// Issues the token of a login whose credential the receiving node verified, if the role
/// (and JWT configuration) it was checked against are still current and the secret id still
/// allows a login at `at_ms`.
pub fn login<S: StateRead>(
    state: &S,
    changes: &mut Changes,
    at_ms: u64,
    login: &Login,
) -> Result<CommandResult, ApplyError<S::Error>> {
    let refuse = |why: String| Ok(CommandResult::LoginRefused(why));
    let role_key = role_key(login.method, &login.role);
    match stored_role(state, changes, &role_key)? {
        None => return refuse(format!("role '{}' does not exist", login.role)),
        Some(r) if r.generation != login.role_generation => {
            return refuse(format!(
                "role '{}' changed while this login was checked; log in again",
                login.role
            ))
        }
        Some(_) => {}
    }
    if let Some(expected) = login.config_generation {
        let current = changes
            .get_decoded::<S, StoredJwtConfig>(state, JWT_CONFIG)?
            .map(|c| c.generation);
        if current != Some(expected) {
            return refuse(
                "the JWT keys changed while this login was checked; log in again".into(),
            );
        }
    }
    // Every AppRole login consumes a secret id: one that names none is not a login.
    if login.method == Method::AppRole && login.secret_id.is_none() {
        return refuse("an AppRole login needs a secret id".into());
    }
    if let Some(accessor) = &login.secret_id {
        let key = secret_id_key(&login.role, accessor);
        // Vault's one answer, whichever it was: used up (or destroyed) since the node looked,
        // or expired at the entry's time.
        let Some(mut secret_id) = changes.get_decoded::<S, SecretId>(state, &key)? else {
            return refuse(INVALID_APPROLE.into());
        };
        if secret_id.expired(at_ms) {
            return refuse(INVALID_APPROLE.into());
        }
        match secret_id.uses_left {
            None => {}
            Some(0 | 1) => changes.delete(key),
            Some(n) => {
                secret_id.uses_left = Some(n - 1);
                changes.put(key, &secret_id);
            }
        }
    }
    if changes.get(state, &keys::token(&login.accessor))?.is_some() {
        return refuse("a token with this accessor exists; log in again".into());
    }
    let lease = Lease {
        expires_at_ms: at_ms.saturating_add(login.ttl_ms),
        max_expires_at_ms: at_ms.saturating_add(login.max_ttl_ms.max(login.ttl_ms)),
        ttl_ms: login.ttl_ms,
    };
    changes
        .writes
        .insert(keys::token(&login.accessor), Some(login.sealed.to_vec()));
    changes.delete(keys::revoked(&login.accessor));
    changes.put(lease_key(&login.accessor), &lease);
    Ok(CommandResult::LoggedIn(lease))
}

/// Moves the expiry of a login token's lease to `at_ms + increment` (the lease's TTL when 0),
/// capped at its max.
pub fn renew<S: StateRead>(
    state: &S,
    changes: &mut Changes,
    at_ms: u64,
    accessor: &str,
    increment_ms: u64,
) -> Result<CommandResult, ApplyError<S::Error>> {
    if changes.get(state, &keys::token(accessor))?.is_none() {
        return Ok(CommandResult::NotFound);
    }
    if changes.get(state, &keys::revoked(accessor))?.is_some() {
        return Ok(CommandResult::LoginRefused(format!(
            "token {accessor} has been revoked"
        )));
    }
    let key = lease_key(accessor);
    let Some(mut lease) = changes.get_decoded::<S, Lease>(state, &key)? else {
        return Ok(CommandResult::LoginRefused(format!(
            "token {accessor} is not renewable (only tokens issued by a login are)"
        )));
    };
    if at_ms >= lease.expires_at_ms {
        return Ok(CommandResult::LoginRefused(format!(
            "token {accessor} has expired"
        )));
    }
    let increment = if increment_ms == 0 {
        lease.ttl_ms
    } else {
        increment_ms
    };
    // Never shortens a lease: a renewal asking for less than is left keeps what is left.
    lease.expires_at_ms = at_ms
        .saturating_add(increment)
        .min(lease.max_expires_at_ms)
        .max(lease.expires_at_ms);
    changes.put(key, &lease);
    Ok(CommandResult::Renewed(lease))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::command::{Caller, Command};
    use crate::secret::crypto::Sealed;
    use crate::secret::testing::{approle, single, Mem};

    fn put_role(mem: &mut Mem, id: &str, at: u64, name: &str, role: Role) -> CommandResult {
        let command = Command::PutRole {
            name: name.into(),
            role: Box::new(role),
        };
        mem.run(&[single(id, at, None, command)]).remove(0)
    }

    fn secret_id(accessor: &str, uses: Option<u64>, expires: Option<u64>) -> SecretId {
        SecretId {
            accessor: accessor.into(),
            mac: [7; 32],
            created_at_ms: 0,
            expires_at_ms: expires,
            uses_left: uses,
            metadata: vec![],
        }
    }

    fn login(role: &str, generation: u64, sid: Option<&str>, token: &str) -> Command {
        Command::Login(Box::new(Login {
            method: Method::AppRole,
            role: role.into(),
            role_generation: generation,
            config_generation: None,
            secret_id: sid.map(String::from),
            accessor: token.into(),
            sealed: Sealed::from_bytes(vec![1, 2, 3]),
            ttl_ms: 60_000,
            max_ttl_ms: 300_000,
        }))
    }

    #[test]
    fn a_bounded_secret_id_allows_exactly_its_uses_in_log_order() {
        let mut mem = Mem::default();
        assert_eq!(
            put_role(&mut mem, "r1", 10, "ci", approle("id-ci-0001")),
            CommandResult::RoleWritten { generation: 1 }
        );
        let add = Command::AddSecretId {
            role: "ci".into(),
            secret_id: Box::new(secret_id("s1", Some(2), None)),
        };
        assert_eq!(
            mem.run(&[single("a", 11, None, add)]),
            [CommandResult::SecretIdAdded]
        );
        // Three logins race for two uses, in one entry: the third is refused.
        let out = mem.run(&[
            single("l1", 20, None, login("ci", 1, Some("s1"), "t1")),
            single("l2", 20, None, login("ci", 1, Some("s1"), "t2")),
            single("l3", 20, None, login("ci", 1, Some("s1"), "t3")),
        ]);
        assert!(
            matches!(out[0], CommandResult::LoggedIn(l) if l.expires_at_ms == 60_020 && l.max_expires_at_ms == 300_020)
        );
        assert!(matches!(out[1], CommandResult::LoggedIn(_)));
        assert!(matches!(&out[2], CommandResult::LoginRefused(w) if w == INVALID_APPROLE));
        assert!(mem.0.contains_key(&keys::token("t2")));
        assert!(
            !mem.0.contains_key(&keys::token("t3")),
            "a refused login stores no token"
        );
        assert!(
            !mem.0.contains_key(&secret_id_key("ci", "s1")),
            "a used-up secret id is gone"
        );
    }

    #[test]
    fn a_login_checked_against_a_changed_or_deleted_role_is_refused() {
        let mut mem = Mem::default();
        put_role(&mut mem, "r1", 10, "ci", approle("id-ci-0001"));
        let add = Command::AddSecretId {
            role: "ci".into(),
            secret_id: Box::new(secret_id("s1", None, Some(1_000))),
        };
        mem.run(&[single("a", 11, None, add)]);
        // The role changed (generation 2) after the node checked generation 1.
        assert_eq!(
            put_role(&mut mem, "r2", 12, "ci", approle("id-ci-0001")),
            CommandResult::RoleWritten { generation: 2 }
        );
        let out = mem.run(&[single("l1", 20, None, login("ci", 1, Some("s1"), "t1"))]);
        assert!(matches!(&out[0], CommandResult::LoginRefused(w) if w.contains("changed")));
        // Expired at the entry's time, whatever the node thought.
        let out = mem.run(&[single("l2", 1_000, None, login("ci", 2, Some("s1"), "t2"))]);
        assert!(matches!(&out[0], CommandResult::LoginRefused(w) if w == INVALID_APPROLE));
        let out = mem.run(&[single("l3", 999, None, login("ci", 2, Some("s1"), "t3"))]);
        assert!(matches!(out[0], CommandResult::LoggedIn(_)));
        // Deleting the role takes its secret ids and role id with it.
        let del = Command::DeleteRole {
            method: Method::AppRole,
            name: "ci".into(),
        };
        assert_eq!(
            mem.run(&[single("d", 30, None, del)]),
            [CommandResult::RoleDeleted]
        );
        assert!(!mem.0.contains_key(&secret_id_key("ci", "s1")));
        assert!(!mem.0.contains_key(&role_id_key("id-ci-0001")));
        let out = mem.run(&[single("l4", 31, None, login("ci", 2, Some("s1"), "t4"))]);
        assert!(matches!(&out[0], CommandResult::LoginRefused(w) if w.contains("does not exist")));
    }

    #[test]
    fn two_roles_cannot_share_a_role_id() {
        let mut mem = Mem::default();
        put_role(&mut mem, "r1", 10, "a", approle("shared-id-1"));
        assert!(matches!(
            put_role(&mut mem, "r2", 11, "b", approle("shared-id-1")),
            CommandResult::RoleRefused(w) if w.contains("'a'")
        ));
        // Changing a's id frees the old one.
        put_role(&mut mem, "r3", 12, "a", approle("new-id-0001"));
        assert!(matches!(
            put_role(&mut mem, "r4", 13, "b", approle("shared-id-1")),
            CommandResult::RoleWritten { generation: 1 }
        ));
    }

    #[test]
    fn jwt_logins_need_the_configuration_they_were_checked_against() {
        let mut mem = Mem::default();
        let config = JwtConfig {
            bound_issuer: String::new(),
            pem_keys: vec![],
            jwks: Some("{\"keys\":[]}".into()),
            supported_algs: vec![],
        };
        let write = |id: &str, at| {
            single(
                id,
                at,
                None,
                Command::PutJwtConfig {
                    config: Box::new(config.clone()),
                },
            )
        };
        assert_eq!(
            mem.run(&[write("c1", 1)]),
            [CommandResult::RoleWritten { generation: 1 }]
        );
        let mut role = approle("unused-id");
        role.binding = Binding::Jwt(JwtBinding {
            bound_audiences: vec!["raftsafe".into()],
            bound_subject: String::new(),
            bound_claims: vec![],
            user_claim: "sub".into(),
            clock_skew_leeway_s: 60,
        });
        put_role(&mut mem, "r1", 2, "k8s", role);
        let jwt_login = |generation| {
            Command::Login(Box::new(Login {
                method: Method::Jwt,
                role: "k8s".into(),
                role_generation: 1,
                config_generation: Some(generation),
                secret_id: None,
                accessor: format!("t{generation}"),
                sealed: Sealed::from_bytes(vec![1]),
                ttl_ms: 1_000,
                max_ttl_ms: 5_000,
            }))
        };
        // A key rotation (generation 2) lands before a login checked under generation 1.
        mem.run(&[write("c2", 3)]);
        let out = mem.run(&[single("l1", 4, None, jwt_login(1))]);
        assert!(
            matches!(&out[0], CommandResult::LoginRefused(w) if w.contains("JWT keys changed"))
        );
        let out = mem.run(&[single("l2", 4, None, jwt_login(2))]);
        assert!(matches!(out[0], CommandResult::LoggedIn(_)));
    }

    #[test]
    fn renewal_moves_the_expiry_up_to_the_max_and_only_for_login_tokens() {
        let mut mem = Mem::default();
        put_role(&mut mem, "r1", 0, "ci", approle("id-ci-0001"));
        let add = Command::AddSecretId {
            role: "ci".into(),
            secret_id: Box::new(secret_id("s1", None, None)),
        };
        mem.run(&[single("a", 0, None, add)]);
        // An AppRole login must consume a secret id: one naming none issues nothing.
        let out = mem.run(&[single("l0", 0, None, login("ci", 1, None, "t0"))]);
        assert!(
            matches!(&out[0], CommandResult::LoginRefused(w) if w.contains("needs a secret id"))
        );
        mem.run(&[single("l1", 0, None, login("ci", 1, Some("s1"), "t1"))]);
        let renew = |id: &str, at, inc| {
            let caller = Caller {
                accessor: "t1".into(),
                expires_at_ms: None,
            };
            let command = Command::RenewToken {
                accessor: "t1".into(),
                increment_ms: inc,
            };
            single(id, at, Some(caller), command)
        };
        // Default increment: the role's TTL (60 s) from the entry's time.
        let out = mem.run(&[renew("n1", 30_000, 0)]);
        assert!(matches!(out[0], CommandResult::Renewed(l) if l.expires_at_ms == 90_000));
        // Capped by the max (300 s after the login).
        let out = mem.run(&[renew("n2", 80_000, 1_000_000)]);
        assert!(matches!(out[0], CommandResult::Renewed(l) if l.expires_at_ms == 300_000));
        // A shorter increment never shortens the lease.
        let out = mem.run(&[renew("n3", 81_000, 1_000)]);
        assert!(matches!(out[0], CommandResult::Renewed(l) if l.expires_at_ms == 300_000));
        // An administrator's token (no lease) is not renewable.
        let create = Command::CreateToken {
            accessor: "admin".into(),
            sealed: Sealed::from_bytes(vec![1]),
            bootstrap: false,
        };
        mem.run(&[single("c", 0, None, create)]);
        let command = Command::RenewToken {
            accessor: "admin".into(),
            increment_ms: 0,
        };
        let out = mem.run(&[single("n4", 1, None, command)]);
        assert!(matches!(&out[0], CommandResult::LoginRefused(w) if w.contains("not renewable")));
    }

    fn with_policies(mem: &mut Mem, id: &str, name: &str, role_id: &str, policies: &[&str]) {
        let command = Command::PutRoleWithPolicies {
            name: name.into(),
            role: Box::new(approle(role_id)),
            token_policies: policies.iter().map(|p| p.to_string()).collect(),
        };
        mem.run(&[single(id, 10, None, command)]);
    }

    fn generation(mem: &Mem, name: &str) -> u64 {
        StoredRole::decode(&mem.0[&role_key(Method::AppRole, name)])
            .unwrap()
            .generation
    }

    #[test]
    fn writing_or_deleting_a_policy_refuses_logins_checked_against_its_roles() {
        let mut mem = Mem::default();
        with_policies(&mut mem, "r1", "ci", "id-ci-0001", &["deploy", "default"]);
        with_policies(&mut mem, "r2", "other", "id-other-01", &["audit"]);
        put_role(&mut mem, "r3", 10, "plain", approle("id-plain-01"));
        let stored = StoredRole::decode(&mem.0[&role_key(Method::AppRole, "ci")]).unwrap();
        assert_eq!(stored.token_policies, ["deploy", "default"]);
        mem.run(&[single(
            "a",
            11,
            None,
            Command::AddSecretId {
                role: "ci".into(),
                secret_id: Box::new(secret_id("s1", None, None)),
            },
        )]);
        // The policy is written after the node read the role at generation 1.
        let put = Command::PutAclPolicy {
            name: "deploy".into(),
            rules: String::new(),
            grants: vec![],
        };
        mem.run(&[single("p1", 12, None, put)]);
        assert_eq!(generation(&mem, "ci"), 2, "the role naming it moved");
        assert_eq!(
            generation(&mem, "other"),
            1,
            "a role naming another did not"
        );
        assert_eq!(generation(&mem, "plain"), 1);
        let out = mem.run(&[single("l1", 20, None, login("ci", 1, Some("s1"), "t1"))]);
        assert!(matches!(&out[0], CommandResult::LoginRefused(w) if w.contains("changed")));
        let out = mem.run(&[single("l2", 21, None, login("ci", 2, Some("s1"), "t2"))]);
        assert!(matches!(out[0], CommandResult::LoggedIn(_)));
        // Deleting it moves the role again, in the same entry as the delete.
        let del = Command::DeleteAclPolicy {
            name: "deploy".into(),
        };
        mem.run(&[
            single("p2", 22, None, del),
            single("l3", 22, None, login("ci", 2, Some("s1"), "t3")),
        ]);
        assert_eq!(generation(&mem, "ci"), 3);
        assert!(!mem.0.contains_key(&keys::token("t3")));
        // The role keeps its names (and the layout that holds them) across a rewrite.
        with_policies(&mut mem, "r4", "ci", "id-ci-0001", &["deploy"]);
        assert_eq!(generation(&mem, "ci"), 4);
        put_role(&mut mem, "r5", 30, "ci", approle("id-ci-0001"));
        let stored = StoredRole::decode(&mem.0[&role_key(Method::AppRole, "ci")]).unwrap();
        assert!(stored.token_policies.is_empty(), "PutRole names no policy");
        assert_eq!(stored.generation, 5);
    }
}
