//! Ondemand mounts: a path prefix whose `PUT`s encrypt and whose `GET ?ciphertext=` decrypts,
//! with keys that live in the replicated state and values that never do. This file holds the
//! pure apply logic of the mount commands and the ciphertext format; sealing itself is done
//! by the barrier with the keys it unwraps.
//!
//! Invariants:
//! - Mounts neither nest nor overlap: a mount's path is not under another mount, no mount is
//!   under it, and no KV secret is stored at or under it. Creation checks all three where it
//!   applies; a KV write that applies under a mount is refused there ([`covering`]), so the
//!   check holds whatever order concurrent writers reach the log in.
//! - A mount's key versions are `min_available_version..=latest_version`, each stored
//!   wrapped under the master key (the same rule as the data keys: never plaintext in the
//!   log, a snapshot or on disk). A rotation applies only as `latest + 1`, so concurrent
//!   rotations cannot both win. `1 <= min_available <= min_decryption <= latest`, and a
//!   non-zero `min_encryption` lies in `min_decryption..=latest`.
//! - Trimming and unmounting delete keys for good: every ciphertext made under them can no
//!   longer be decrypted by anyone.
//! - Ciphertext: `raftsafe:v<version>:<base64url, no padding, of nonce(12) || ct || tag(16)>`,
//!   AES-256-GCM with associated data binding the dialect, the full path and the version
//!   ([`Envelope::aad`]), so a ciphertext moved to another path, relabelled with another
//!   version or handed to the other dialect fails authentication. Vault's Transit dialect
//!   uses the same keys with Vault's spelling, `vault:v<version>:<base64>`, bound to the key
//!   itself ([`Envelope::Transit`]).

use base64::Engine;

use super::command::{CommandResult, MountKind, MountRecord};
use super::path::SecretPath;
use super::state::{keys, ApplyError, Changes, StateRead};

/// Longest accepted ciphertext (`?ciphertext=` or a rewrap body), in bytes. A ciphertext
/// travels in the URL, and HTTP libraries refuse URLs past 64 KiB (the `http` crate's
/// limit, on both sides), so the limit stays well below that and the API can answer 413
/// itself. Encryption refuses values whose ciphertext would be longer (about 36 KiB of JSON),
/// so every ciphertext made can be decrypted.
pub const MAX_CIPHERTEXT_BYTES: usize = 48 * 1024;

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Why a ciphertext string cannot even be looked at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CiphertextError {
    #[error("ciphertext is malformed: {0}")]
    Malformed(&'static str),
}

/// The two dialects a ciphertext is made in. Both seal `nonce || ct || tag` with a mount
/// key version; they differ in what the plaintext is, what the ciphertext is bound to and
/// how it is spelled, and a ciphertext of one is refused by the other, naming where it
/// decrypts (the associated data differs, so a relabelled one also fails authentication):
/// - [`Envelope::Ondemand`]: raftsafe's `/api/v1` ondemand engine. The plaintext is a JSON
///   document, bound to the path under the mount it was made for;
///   `raftsafe:v<N>:<base64url, no padding>`.
/// - [`Envelope::Transit`]: Vault's Transit dialect. The plaintext is bytes, bound to the
///   key (the mount's own path); `vault:v<N>:<base64, padded>`, as Vault spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Envelope {
    Ondemand,
    Transit,
}

impl Envelope {
    fn prefix(self) -> &'static str {
        match self {
            Envelope::Ondemand => "raftsafe:v",
            Envelope::Transit => "vault:v",
        }
    }

    fn engine(self) -> &'static base64::engine::GeneralPurpose {
        match self {
            Envelope::Ondemand => &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            Envelope::Transit => &base64::engine::general_purpose::STANDARD,
        }
    }

    /// Associated data of a ciphertext: the dialect, the key version and the path it is
    /// bound to (for Transit, the key's own path).
    pub fn aad(self, path: &str, version: u32) -> Vec<u8> {
        let mut aad = match self {
            Envelope::Ondemand => b"ondemand\0".to_vec(),
            Envelope::Transit => b"transit\0".to_vec(),
        };
        aad.extend_from_slice(&version.to_be_bytes());
        aad.extend_from_slice(path.as_bytes());
        aad
    }

    /// `<prefix><version>:<base64(nonce || ct || tag)>`.
    pub fn format(self, version: u32, body: &[u8]) -> String {
        format!("{}{version}:{}", self.prefix(), self.engine().encode(body))
    }

    /// The key version and `nonce || ct || tag` of a ciphertext string.
    pub fn parse(self, s: &str) -> Result<(u32, Vec<u8>), CiphertextError> {
        let Some(rest) = s.strip_prefix(self.prefix()) else {
            return Err(CiphertextError::Malformed(match self {
                Envelope::Ondemand if s.starts_with(Envelope::Transit.prefix()) => {
                    "it is a Transit ciphertext ('vault:v…'): decrypt it with POST /v1/transit/decrypt/<key>"
                }
                Envelope::Ondemand => "it does not start with 'raftsafe:v<version>:'",
                Envelope::Transit if s.starts_with(Envelope::Ondemand.prefix()) => {
                    "it was made by raftsafe's ondemand API for a path under the key: decrypt it there (GET /api/v1/secrets/<path>?ciphertext=…)"
                }
                Envelope::Transit => "it does not start with 'vault:v<version>:'",
            }));
        };
        let (version, body) = rest
            .split_once(':')
            .ok_or(CiphertextError::Malformed("no ':' after the key version"))?;
        let canonical = !version.is_empty()
            && version.bytes().all(|b| b.is_ascii_digit())
            && !(version.len() > 1 && version.starts_with('0'));
        let version: u32 = match version.parse() {
            Ok(v) if canonical && v >= 1 => v,
            _ => {
                return Err(CiphertextError::Malformed(
                    "the key version is not a number >= 1",
                ))
            }
        };
        let body = self.engine().decode(body).map_err(|_| {
            CiphertextError::Malformed(match self {
                Envelope::Ondemand => "the body is not unpadded base64url",
                Envelope::Transit => "the body is not padded base64",
            })
        })?;
        if body.len() < NONCE_LEN + TAG_LEN {
            return Err(CiphertextError::Malformed("the body is too short"));
        }
        Ok((version, body))
    }
}

/// Associated data under which mount key `version` of `mount` is wrapped by the master key.
pub fn key_wrap_aad(mount: &str, version: u32) -> Vec<u8> {
    let mut aad = b"raftsafe mount key\0".to_vec();
    aad.extend_from_slice(&version.to_be_bytes());
    aad.extend_from_slice(mount.as_bytes());
    aad
}

/// Each proper ancestor of `path`, shortest first, then `path` itself.
pub fn ancestors_and_self(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/')
        .map(move |(i, _)| &path[..i])
        .chain(std::iter::once(path))
}

fn record<S: StateRead>(
    state: &S,
    changes: &Changes,
    path: &str,
) -> Result<Option<MountRecord>, ApplyError<S::Error>> {
    changes.get_decoded(state, &keys::mount(path))
}

/// The mount `path` is at or under, if any.
pub fn covering<S: StateRead>(
    state: &S,
    changes: &Changes,
    path: &str,
) -> Result<Option<String>, ApplyError<S::Error>> {
    for a in ancestors_and_self(path) {
        if changes.get(state, &keys::mount(a))?.is_some() {
            return Ok(Some(a.to_string()));
        }
    }
    Ok(None)
}

/// The path a key with one prefix byte names.
fn path_of(key: &[u8]) -> String {
    String::from_utf8_lossy(&key[1..]).into_owned()
}

/// Why a mount at `path` cannot be created, if it cannot.
fn conflict<S: StateRead>(
    state: &S,
    changes: &Changes,
    path: &str,
) -> Result<Option<String>, ApplyError<S::Error>> {
    if let Some(m) = covering(state, changes, path)? {
        return Ok(Some(if m == path {
            format!("'{path}' is already mounted")
        } else {
            format!("'{path}' would be inside the mount at '{m}'; mounts cannot nest")
        }));
    }
    let under = format!("{path}/");
    if let Some(k) = changes.first_with_prefix(state, &keys::mount(&under))? {
        return Ok(Some(format!(
            "the mount at '{}' is under '{path}'; mounts cannot nest",
            path_of(&k)
        )));
    }
    if changes
        .get(state, &keys::with_path(keys::META, path))?
        .is_some()
    {
        return Ok(Some(format!("a KV secret is stored at '{path}'")));
    }
    if let Some(k) = changes.first_with_prefix(state, &keys::with_path(keys::META, &under))? {
        return Ok(Some(format!(
            "a KV secret is stored at '{}', under '{path}'",
            path_of(&k)
        )));
    }
    Ok(None)
}

pub fn create<S: StateRead>(
    state: &S,
    changes: &mut Changes,
    at_ms: u64,
    path: &SecretPath,
    kind: MountKind,
    wrapped: &[u8],
) -> Result<CommandResult, ApplyError<S::Error>> {
    let path = path.as_str();
    if let Some(why) = conflict(state, changes, path)? {
        return Ok(CommandResult::MountConflict(why));
    }
    let rec = MountRecord {
        kind,
        created_at_ms: at_ms,
        updated_at_ms: at_ms,
        latest_version: 1,
        min_decryption_version: 1,
        min_encryption_version: 0,
        min_available_version: 1,
    };
    changes
        .writes
        .insert(keys::mount_key(path, 1), Some(wrapped.to_vec()));
    changes.put(keys::mount(path), &rec);
    Ok(CommandResult::Mount(rec))
}

pub fn delete<S: StateRead>(
    state: &S,
    changes: &mut Changes,
    path: &SecretPath,
) -> Result<CommandResult, ApplyError<S::Error>> {
    let path = path.as_str();
    let Some(rec) = record(state, changes, path)? else {
        return Ok(CommandResult::NotFound);
    };
    for v in rec.min_available_version..=rec.latest_version {
        changes.delete(keys::mount_key(path, v));
    }
    changes.delete(keys::mount(path));
    Ok(CommandResult::MountDeleted)
}

pub fn add_key<S: StateRead>(
    state: &S,
    changes: &mut Changes,
    at_ms: u64,
    path: &SecretPath,
    version: u32,
    wrapped: &[u8],
) -> Result<CommandResult, ApplyError<S::Error>> {
    let path = path.as_str();
    let Some(mut rec) = record(state, changes, path)? else {
        return Ok(CommandResult::NotFound);
    };
    if Some(version) != rec.latest_version.checked_add(1) {
        return Ok(CommandResult::KeyConflict {
            current: rec.latest_version,
        });
    }
    rec.latest_version = version;
    rec.updated_at_ms = at_ms.max(rec.updated_at_ms);
    changes
        .writes
        .insert(keys::mount_key(path, version), Some(wrapped.to_vec()));
    changes.put(keys::mount(path), &rec);
    Ok(CommandResult::Mount(rec))
}

impl MountRecord {
    /// The key versions an encryption may name: from `min_encryption_version` (the latest
    /// only when it is 0) to the latest.
    pub fn encryption_versions(&self) -> std::ops::RangeInclusive<u32> {
        let lowest = match self.min_encryption_version {
            0 => self.latest_version,
            n => n,
        };
        lowest..=self.latest_version
    }
}

/// Checks the version invariants of the module doc; `Some(why)` when broken.
fn invalid(rec: &MountRecord) -> Option<String> {
    let (avail, dec, enc, latest) = (
        rec.min_available_version,
        rec.min_decryption_version,
        rec.min_encryption_version,
        rec.latest_version,
    );
    if dec < avail {
        return Some(format!(
            "minDecryptionVersion {dec} is below {avail}: versions below {avail} were trimmed"
        ));
    }
    if dec > latest {
        return Some(format!(
            "minDecryptionVersion {dec} is above the latest key version {latest}"
        ));
    }
    if enc != 0 && (enc < dec || enc > latest) {
        return Some(format!(
            "minEncryptionVersion {enc} must be 0 (latest) or between minDecryptionVersion {dec} and the latest key version {latest}"
        ));
    }
    None
}

pub fn configure<S: StateRead>(
    state: &S,
    changes: &mut Changes,
    at_ms: u64,
    path: &SecretPath,
    min_decryption_version: Option<u32>,
    min_encryption_version: Option<u32>,
) -> Result<CommandResult, ApplyError<S::Error>> {
    let path = path.as_str();
    let Some(mut rec) = record(state, changes, path)? else {
        return Ok(CommandResult::NotFound);
    };
    if let Some(v) = min_decryption_version {
        rec.min_decryption_version = v;
    }
    if let Some(v) = min_encryption_version {
        rec.min_encryption_version = v;
    }
    if let Some(why) = invalid(&rec) {
        return Ok(CommandResult::MountRefused(why));
    }
    rec.updated_at_ms = at_ms.max(rec.updated_at_ms);
    changes.put(keys::mount(path), &rec);
    Ok(CommandResult::Mount(rec))
}

pub fn trim<S: StateRead>(
    state: &S,
    changes: &mut Changes,
    at_ms: u64,
    path: &SecretPath,
    min_available_version: u32,
) -> Result<CommandResult, ApplyError<S::Error>> {
    let path = path.as_str();
    let Some(mut rec) = record(state, changes, path)? else {
        return Ok(CommandResult::NotFound);
    };
    let (old, new) = (rec.min_available_version, min_available_version);
    if new < old {
        return Ok(CommandResult::MountRefused(format!(
            "versions below {old} are already trimmed; trimming cannot bring keys back"
        )));
    }
    if new > rec.min_decryption_version {
        return Ok(CommandResult::MountRefused(format!(
            "minAvailableVersion {new} is above minDecryptionVersion {}: raise that first",
            rec.min_decryption_version
        )));
    }
    if rec.min_encryption_version != 0 && new > rec.min_encryption_version {
        return Ok(CommandResult::MountRefused(format!(
            "minAvailableVersion {new} is above minEncryptionVersion {}",
            rec.min_encryption_version
        )));
    }
    for v in old..new {
        changes.delete(keys::mount_key(path, v));
    }
    rec.min_available_version = new;
    rec.updated_at_ms = at_ms.max(rec.updated_at_ms);
    changes.put(keys::mount(path), &rec);
    Ok(CommandResult::Mount(rec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ciphertext_format() {
        let body = vec![7u8; 40];
        let s = Envelope::Ondemand.format(3, &body);
        assert!(s.starts_with("raftsafe:v3:"), "{s}");
        assert_eq!(Envelope::Ondemand.parse(&s).unwrap(), (3, body.clone()));
        let t = Envelope::Transit.format(3, &body);
        assert!(t.starts_with("vault:v3:") && t.ends_with('='), "{t}");
        assert_eq!(Envelope::Transit.parse(&t).unwrap(), (3, body));
        // Each dialect refuses the other's, naming where it decrypts.
        let e = Envelope::Ondemand.parse(&t).unwrap_err().to_string();
        assert!(e.contains("/v1/transit/decrypt"), "{e}");
        let e = Envelope::Transit.parse(&s).unwrap_err().to_string();
        assert!(e.contains("/api/v1/secrets"), "{e}");
        assert_ne!(
            Envelope::Ondemand.aad("a/b", 1),
            Envelope::Transit.aad("a/b", 1)
        );
        for bad in [
            "",
            "vault:v1:abc",
            "raftsafe:v1",
            "raftsafe:v:AAAA",
            "raftsafe:v0:AAAA",
            "raftsafe:v01:AAAA",
            "raftsafe:v-1:AAAA",
            "raftsafe:v99999999999:AAAA",
            "raftsafe:v1:not base64!",
            "raftsafe:v1:AAAA",
            "raftsafe:v1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        ] {
            assert!(
                Envelope::Ondemand.parse(bad).is_err(),
                "{bad:?} should be refused"
            );
        }
        for bad in [
            "vault:v1:AAAA",
            "vault:v0:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "vault:v1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "vault:v1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA-_",
        ] {
            assert!(
                Envelope::Transit.parse(bad).is_err(),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn ancestors() {
        let a: Vec<&str> = ancestors_and_self("a/b/c").collect();
        assert_eq!(a, vec!["a", "a/b", "a/b/c"]);
        assert_eq!(ancestors_and_self("x").collect::<Vec<_>>(), vec!["x"]);
    }
}
