//! Commands: what a Raft log entry asks the state machine to do, and what it answered.
//!
//! Invariants:
//! - A [`Request`] (one log entry) is complete: it is a batch of [`Op`]s, each with the
//!   client's request id and the caller's token accessor, and the leader stamps the time
//!   (`at_ms`) once for the batch before proposing. Applying it needs no clock, randomness or
//!   local state, so every replica computes the same result.
//! - Batching is invisible to the domain: a batch applies exactly as its ops would one after
//!   another, in order.
//! - Secret values travel only as sealed (encrypted) bytes; this module never sees plaintext.
//! - Types here are encoded with bincode, so they use no `serde(flatten/skip/tag/untagged)`.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::auth::{JwtConfig, Lease, Login, Method, Role, SecretId};
use super::crypto::Sealed;
use super::path::SecretPath;
use super::token::Policy;

/// A client-chosen or server-generated id used to deduplicate retried writes, with the
/// fingerprint of the request it names when a client chose it.
///
/// A retry carries the same id *and* the same fingerprint and gets the first attempt's
/// result; the same id with another fingerprint is another request under a reused id, and is
/// refused ([`CommandResult::RequestIdReused`]) rather than answered with a result that is
/// not its own. The fingerprint is a MAC keyed by the master key (see `api::input`), so the
/// dedup table holds nothing from which a secret could be guessed.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RequestId {
    id: String,
    fingerprint: Option<[u8; 16]>,
}

impl RequestId {
    /// A fresh random id (128 bits, hex) for a write the client did not name.
    pub fn random() -> RequestId {
        use ring::rand::SecureRandom;
        let mut b = [0u8; 16];
        // The system RNG failing is not recoverable for a secrets store; fall back to the
        // clock and a process-wide counter so the id is still unique, as dedup needs.
        if ring::rand::SystemRandom::new().fill(&mut b).is_err() {
            static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            b[..8].copy_from_slice(&crate::time::now_ms().to_be_bytes());
            b[8..].copy_from_slice(&n.to_be_bytes());
        }
        RequestId::named(hex::encode(b))
    }

    /// An id chosen by the cluster itself (bootstrap) or a test: no fingerprint.
    pub fn named(id: impl Into<String>) -> RequestId {
        RequestId {
            id: id.into(),
            fingerprint: None,
        }
    }

    /// A client's id for the request whose fingerprint is `fingerprint`.
    pub fn client(id: String, fingerprint: [u8; 16]) -> RequestId {
        RequestId {
            id,
            fingerprint: Some(fingerprint),
        }
    }

    /// The id of attempt `n` (from 1) of an operation that proposes again after a conflict
    /// (a custom metadata PATCH): each attempt is a write of its own, remembered under its
    /// own id, with the same fingerprint, so a client retrying the operation with the same
    /// id replays every attempt's first answer. `#` is in no id a client may choose.
    pub fn attempt(&self, n: u32) -> RequestId {
        RequestId {
            id: format!("{}#{n}", self.id),
            fingerprint: self.fingerprint,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.id
    }

    pub fn fingerprint(&self) -> Option<[u8; 16]> {
        self.fingerprint
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.id)
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}

/// One replicated log entry: a batch of writes, stamped once by the leader. Concurrent
/// writes share an entry (and so one fsync and one replication round).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Wall-clock milliseconds since the Unix epoch, stamped by the leader.
    pub at_ms: u64,
    pub ops: Vec<Op>,
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ops.as_slice() {
            [one] => write!(f, "{one}"),
            ops => write!(f, "batch of {}", ops.len()),
        }
    }
}

/// One write as a client asked for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    /// Deduplicates retries: an id seen before returns the first result.
    pub id: RequestId,
    /// The token that asked for it, checked again when the op applies (`None`: the cluster
    /// itself, e.g. bootstrap).
    pub caller: Option<Caller>,
    pub command: Command,
}

impl Op {
    /// An op with a fresh random request id.
    pub fn new(command: Command, caller: Option<Caller>) -> Op {
        Op {
            id: RequestId::random(),
            caller,
            command,
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.id, self.command.name())
    }
}

/// The token behind a write. The node that received the write checked the token's scopes
/// and paths (they never change); apply checks that the token still exists, is not revoked
/// and has not expired *at the write's place in the log*, so a write can never commit after
/// an acknowledged revocation of its token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caller {
    pub accessor: String,
    pub expires_at_ms: Option<u64>,
}

/// What a write does. Sealed bytes are opaque here: they are produced and opened by the
/// crypto layer with the path bound in, so the state machine can store them but not read them.
/// `Debug` is derived: [`Sealed`] and [`StoredPairs`] print their sizes only, so a command in
/// a log line never shows a value, not even encrypted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Write a new version of `path`. `cas`: only if the current version equals it (0 = absent).
    Put {
        path: SecretPath,
        sealed: Sealed,
        cas: Option<u64>,
    },
    /// Soft-delete the latest version of `path`; its history is kept.
    Delete { path: SecretPath },
    /// Add data key `id` (wrapped under the master key) and make it current. Applies only
    /// if `id` is the current key id + 1, so concurrent rotations cannot both win.
    AddDataKey { id: u32, wrapped: Sealed },
    /// Store a token record (sealed). `bootstrap`: the root token made at cluster
    /// creation, which is accepted once per cluster.
    CreateToken {
        accessor: String,
        sealed: Sealed,
        bootstrap: bool,
    },
    /// Revoke a token from now on.
    RevokeToken { accessor: String },
    /// Restore from a backup, step 1 of 3: start staging. Refused when the cluster holds
    /// any secret, unless `force`. Clears anything an abandoned restore left staged.
    RestoreBegin {
        restore: u64,
        pairs: u64,
        force: bool,
    },
    /// Step 2: stage the next chunk of the backup's key/value pairs, exactly as stored
    /// (values and tokens sealed, keys wrapped). Chunks must arrive in order.
    RestoreChunk {
        restore: u64,
        seq: u64,
        pairs: StoredPairs,
    },
    /// Step 3: replace the whole state with what was staged, in one atomic write.
    RestoreCommit { restore: u64 },
    /// Write a new version of `path` if `precondition` holds (`If-Match` / `If-None-Match`).
    PutIf {
        path: SecretPath,
        sealed: Sealed,
        precondition: Precondition,
    },
    /// Soft-delete the latest version of `path` if `precondition` holds.
    DeleteIf {
        path: SecretPath,
        precondition: Precondition,
    },
    /// Clear the deletion mark of these versions (absent or destroyed ones are skipped).
    Undelete {
        path: SecretPath,
        versions: Vec<u64>,
    },
    /// Remove these versions' sealed data for good; their metadata stays, marked destroyed.
    Destroy {
        path: SecretPath,
        versions: Vec<u64>,
    },
    /// Keep at most `max_versions` versions of `path` (older ones are pruned now and on
    /// every later write).
    SetMaxVersions { path: SecretPath, max_versions: u64 },
    /// Remove `path`: its metadata, settings and every version.
    DeleteMetadata { path: SecretPath },
    /// Mount an ondemand engine at `path` with key version 1 (`wrapped` under the master key).
    CreateMount {
        path: SecretPath,
        kind: MountKind,
        wrapped: Sealed,
    },
    /// Unmount `path` and destroy every key of it.
    DeleteMount { path: SecretPath },
    /// Add key `version` to the mount at `path`; applies only if it is the latest + 1.
    AddMountKey {
        path: SecretPath,
        version: u32,
        wrapped: Sealed,
    },
    /// Change a mount's `minDecryptionVersion` / `minEncryptionVersion` (`None`: unchanged).
    ConfigureMount {
        path: SecretPath,
        min_decryption_version: Option<u32>,
        min_encryption_version: Option<u32>,
    },
    /// Destroy a mount's key versions below `min_available_version` for good.
    TrimMount {
        path: SecretPath,
        min_available_version: u32,
    },
    /// Create or replace login role `name` (its method is its binding's).
    PutRole { name: String, role: Box<Role> },
    /// Delete login role `name` and its secret ids.
    DeleteRole { method: Method, name: String },
    /// Replace the JWT method's keys and issuer.
    PutJwtConfig { config: Box<JwtConfig> },
    /// Add a secret id (its MAC) to AppRole role `role`.
    AddSecretId {
        role: String,
        secret_id: Box<SecretId>,
    },
    /// Destroy the secret id `accessor` of AppRole role `role`.
    DestroySecretId { role: String, accessor: String },
    /// Issue the token of a verified login (see [`super::login`]).
    Login(Box<Login>),
    /// Extend a login token's lease.
    RenewToken { accessor: String, increment_ms: u64 },
    /// Change `path`'s metadata in one step ([`super::custom`]): its version cap when
    /// `max_versions` is given, and its custom metadata when `custom_metadata` is (the whole
    /// map, sealed for the path, replacing the stored one). `generation`: only if the stored
    /// custom metadata is at this generation (0: none yet), else nothing changes and the
    /// answer is [`CommandResult::CustomMetadataConflict`]. Allowed on a path with no version.
    SetMetadata {
        path: SecretPath,
        max_versions: Option<u64>,
        custom_metadata: Option<Sealed>,
        generation: Option<u64>,
    },
    /// Write named ACL policy `name`: its text and what it compiled to ([`super::acl`]).
    PutAclPolicy {
        name: String,
        rules: String,
        grants: Vec<Policy>,
    },
    /// Delete named ACL policy `name`.
    DeleteAclPolicy { name: String },
    /// Register the folder `path` as a Vault KV v2 mount ([`super::kv_mount`]).
    CreateKvMount {
        path: SecretPath,
        description: String,
    },
    /// Unregister the KV mount at `path`, if its folder holds no path.
    DeleteKvMount { path: SecretPath },
    /// [`Command::PutRole`] for a role that names ACL policies (`token_policies`). A variant
    /// of its own so that a role without them is still the entry an earlier release applies.
    PutRoleWithPolicies {
        name: String,
        role: Box<Role>,
        token_policies: Vec<String>,
    },
}

/// Key/value pairs exactly as stored, as a restore stages them: a backup's bytes (values and
/// tokens sealed, keys wrapped, metadata plain). `Debug` shows how many, never the bytes.
/// Serialized as the `Vec` it holds.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StoredPairs(Vec<(Vec<u8>, Vec<u8>)>);

impl StoredPairs {
    pub fn new(pairs: Vec<(Vec<u8>, Vec<u8>)>) -> StoredPairs {
        StoredPairs(pairs)
    }
}

impl std::ops::Deref for StoredPairs {
    type Target = [(Vec<u8>, Vec<u8>)];
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl fmt::Debug for StoredPairs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoredPairs({} pairs)", self.0.len())
    }
}

/// A condition on a path's current version, checked where a write applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Precondition {
    /// `If-Match: "N"`: the latest version is `N` and is live (not deleted or destroyed).
    Version(u64),
    /// `If-Match: *`: the latest version is live.
    Exists,
    /// `If-None-Match: *`: there is no live latest version.
    Absent,
}

impl Precondition {
    /// Whether the condition holds for a path whose latest version is `current` (0: none),
    /// `live` when that version is neither deleted nor destroyed.
    pub fn holds(self, current: u64, live: bool) -> bool {
        match self {
            Precondition::Version(n) => live && current == n,
            Precondition::Exists => live,
            Precondition::Absent => !live,
        }
    }
}

/// What an engine mounted at a path does. Only one kind exists so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MountKind {
    /// Encrypts on PUT and decrypts `?ciphertext=` on GET; stores nothing of the values.
    Ondemand,
}

impl MountKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MountKind::Ondemand => "ondemand",
        }
    }
}

/// A mount as stored (`n<path>`). Its keys are stored apart, each wrapped under the master
/// key (`N<path>\0<version>`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountRecord {
    pub kind: MountKind,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
    /// The newest key version (1 at creation, +1 per rotation).
    pub latest_version: u32,
    /// Ciphertexts of older versions are refused (>= 1).
    pub min_decryption_version: u32,
    /// Encryption may name no older version than this (0: the latest only).
    pub min_encryption_version: u32,
    /// Versions below this were trimmed: their keys no longer exist (>= 1).
    pub min_available_version: u32,
}

impl Command {
    /// About how many bytes this command adds to a log entry (for batch sizing).
    pub fn size_hint(&self) -> usize {
        64 + match self {
            Command::Put { path, sealed, .. } => path.as_str().len() + sealed.len(),
            Command::Delete { path } => path.as_str().len(),
            Command::AddDataKey { wrapped, .. } => wrapped.len(),
            Command::CreateToken { sealed, .. } => sealed.len(),
            Command::RevokeToken { .. } => 16,
            Command::RestoreBegin { .. } | Command::RestoreCommit { .. } => 16,
            Command::RestoreChunk { pairs, .. } => {
                pairs.iter().map(|(k, v)| 8 + k.len() + v.len()).sum()
            }
            Command::PutIf { path, sealed, .. } => path.as_str().len() + sealed.len(),
            Command::Undelete { path, versions } | Command::Destroy { path, versions } => {
                path.as_str().len() + 8 * versions.len()
            }
            Command::CreateMount { path, wrapped, .. }
            | Command::AddMountKey { path, wrapped, .. } => path.as_str().len() + wrapped.len(),
            Command::DeleteIf { path, .. }
            | Command::SetMaxVersions { path, .. }
            | Command::DeleteMetadata { path }
            | Command::DeleteMount { path }
            | Command::ConfigureMount { path, .. }
            | Command::TrimMount { path, .. } => path.as_str().len() + 16,
            Command::PutRole { name, role } => name.len() + 256 + 64 * role.policy.paths.len(),
            Command::PutRoleWithPolicies {
                name,
                role,
                token_policies,
            } => {
                name.len()
                    + 256
                    + 64 * role.policy.paths.len()
                    + token_policies.iter().map(|p| p.len() + 8).sum::<usize>()
            }
            Command::DeleteRole { name, .. } => name.len(),
            Command::PutJwtConfig { config } => {
                config.jwks.as_ref().map_or(0, String::len)
                    + config.pem_keys.iter().map(String::len).sum::<usize>()
            }
            Command::AddSecretId { role, .. } | Command::DestroySecretId { role, .. } => {
                role.len() + 96
            }
            Command::Login(login) => login.role.len() + login.sealed.len() + 64,
            Command::RenewToken { .. } => 32,
            Command::PutAclPolicy {
                name,
                rules,
                grants,
            } => {
                name.len()
                    + rules.len()
                    + grants
                        .iter()
                        .map(|g| 8 + g.paths.iter().map(|p| p.as_str().len() + 8).sum::<usize>())
                        .sum::<usize>()
            }
            Command::DeleteAclPolicy { name } => name.len(),
            Command::CreateKvMount { path, description } => {
                path.as_str().len() + description.len() + 16
            }
            Command::DeleteKvMount { path } => path.as_str().len(),
            Command::SetMetadata {
                path,
                custom_metadata,
                ..
            } => path.as_str().len() + 32 + custom_metadata.as_ref().map_or(0, |c| c.len()),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Command::Put { .. } => "put",
            Command::Delete { .. } => "delete",
            Command::AddDataKey { .. } => "add_data_key",
            Command::CreateToken { .. } => "create_token",
            Command::RevokeToken { .. } => "revoke_token",
            Command::RestoreBegin { .. } => "restore_begin",
            Command::RestoreChunk { .. } => "restore_chunk",
            Command::RestoreCommit { .. } => "restore_commit",
            Command::PutIf { .. } => "put_if",
            Command::DeleteIf { .. } => "delete_if",
            Command::Undelete { .. } => "undelete",
            Command::Destroy { .. } => "destroy",
            Command::SetMaxVersions { .. } => "set_max_versions",
            Command::DeleteMetadata { .. } => "delete_metadata",
            Command::CreateMount { .. } => "create_mount",
            Command::DeleteMount { .. } => "delete_mount",
            Command::AddMountKey { .. } => "add_mount_key",
            Command::ConfigureMount { .. } => "configure_mount",
            Command::TrimMount { .. } => "trim_mount",
            Command::PutRole { .. } => "put_role",
            Command::DeleteRole { .. } => "delete_role",
            Command::PutJwtConfig { .. } => "put_jwt_config",
            Command::AddSecretId { .. } => "add_secret_id",
            Command::DestroySecretId { .. } => "destroy_secret_id",
            Command::Login(_) => "login",
            Command::RenewToken { .. } => "renew_token",
            Command::SetMetadata { .. } => "set_metadata",
            Command::PutAclPolicy { .. } => "put_acl_policy",
            Command::DeleteAclPolicy { .. } => "delete_acl_policy",
            Command::CreateKvMount { .. } => "create_kv_mount",
            Command::DeleteKvMount { .. } => "delete_kv_mount",
            Command::PutRoleWithPolicies { .. } => "put_role",
        }
    }
}

/// Version metadata as the API shows it. Times are milliseconds since the Unix epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    pub version: u64,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
    pub deleted_at_ms: Option<u64>,
}

/// The state machine's answer to one log entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum CommandResult {
    /// Blank and membership entries: nothing to report.
    #[default]
    NoOp,
    Written(Metadata),
    Deleted(Metadata),
    NotFound,
    CasMismatch {
        current: u64,
    },
    KeyAdded {
        id: u32,
    },
    /// A rotation raced with another: the current key id is not the one expected.
    KeyConflict {
        current: u32,
    },
    TokenCreated,
    TokenRevoked,
    /// The cluster's root token was created before.
    AlreadyBootstrapped,
    /// The caller's token was revoked, expired or unknown when the op applied.
    Unauthorized(String),
    /// A restore step was accepted; `staged` pairs so far.
    RestoreStaged {
        staged: u64,
    },
    /// A restore replaced the state with this many pairs.
    Restored {
        pairs: u64,
    },
    /// A restore step was refused (the cluster has data, or a step is out of order).
    RestoreRefused(String),
    /// Not applied: a restore earlier in the same log entry replaced the state; retry.
    RetryAfterRestore,
    /// A KV write under an ondemand mount (mounted after the writer looked): not stored.
    UnderMount {
        mount: String,
    },
    /// `If-Match` / `If-None-Match` did not hold: the latest version and whether it is live.
    PreconditionFailed {
        current: u64,
        live: bool,
    },
    /// These versions were undeleted or destroyed (the others asked for were skipped).
    VersionsChanged {
        versions: Vec<u64>,
    },
    /// A path's version cap was set; `pruned` versions were removed by it.
    MaxVersionsSet {
        pruned: u64,
    },
    /// A path and all its versions were removed.
    MetadataDeleted,
    /// A mount was created, changed or got a new key: its record now.
    Mount(MountRecord),
    /// A mount was removed with its keys.
    MountDeleted,
    /// A mount would nest in, contain or overlap something: the detail names it.
    MountConflict(String),
    /// A mount change was refused (e.g. a version out of range): the detail says why.
    MountRefused(String),
    /// The request id was used before by this caller for a different request: nothing was
    /// applied (a retry must send the same request; a new request needs a new id).
    RequestIdReused,
    /// A login role or the JWT configuration was written; its generation now.
    RoleWritten {
        generation: u64,
    },
    RoleDeleted,
    /// A role write was refused (e.g. its role_id is another role's): the detail says why.
    RoleRefused(String),
    SecretIdAdded,
    SecretIdDestroyed,
    /// A login issued its token, with this lease.
    LoggedIn(Lease),
    /// A login or renewal was refused where it applied: the detail says why.
    LoginRefused(String),
    /// A token's lease was renewed.
    Renewed(Lease),
    /// `SetMetadata` applied: how many versions a new cap pruned, and the custom metadata's
    /// generation now (0: the path has none).
    MetadataSet {
        pruned: u64,
        generation: u64,
    },
    /// `SetMetadata` named another generation than the stored custom metadata's: nothing
    /// changed; the current generation (0: none).
    CustomMetadataConflict {
        current: u64,
    },
    /// An ACL policy was written; its generation now.
    AclPolicyWritten {
        generation: u64,
    },
    AclPolicyDeleted,
    /// An ACL policy write or delete was refused where it applied: the detail says why.
    AclPolicyRefused(String),
    KvMountCreated,
    KvMountDeleted,
    /// A KV mount's creation or removal was refused where it applied: the detail says why.
    KvMountRefused(String),
}
