//! The data keyring: the AES-256 keys that seal values and token records, each stored in the
//! replicated state *wrapped* (sealed) under the node's master key.
//!
//! Invariants:
//! - The master key never enters the Raft log, a snapshot or an RPC; each node gets it from
//!   its own configuration. Only wrapped data keys are replicated, so a stolen disk or a
//!   captured snapshot without the master key yields nothing.
//! - Data key ids start at 1 and grow by one per rotation; the newest seals new values and
//!   every older one stays available to open what it sealed.
//! - A key unwraps only with the master key and only under its own id (the id is bound in as
//!   associated data), so a wrong master key is detected, not silently used.
//! - Keys for authentication (backups, request fingerprints, peer RPCs) are derived from the
//!   master key with HKDF-SHA256 under a label per purpose ([`MacPurpose`]), so each is
//!   independent of the others and of the sealing key, and every node with the cluster's
//!   master key derives the same ones without anything being replicated.
//! - Ondemand mount keys are wrapped the same way, under associated data naming the mount
//!   and the key version ([`super::mount::key_wrap_aad`]), so a mount key can be neither
//!   confused with a data key nor moved to another mount or version.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use super::crypto::{CryptoError, Sealed, SealingKey};

/// Key id the master key seals under (data keys use 1..).
const MASTER_ID: u32 = 0;

/// What a derived MAC key authenticates; the label is the HKDF `info`, never to change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MacPurpose {
    /// A backup file's integrity (an edited backup is refused before anything is written).
    Backup,
    /// A write's fingerprint in the dedup table: a reused request id with another body is
    /// recognised without storing anything derived from the plaintext that could be guessed.
    RequestFingerprint,
    /// The internal (Raft) listener: only holders of the master key may call it.
    Peer,
    /// AppRole secret ids: only their MAC is stored, which nobody without the master key
    /// can test a guess against.
    SecretId,
}

impl MacPurpose {
    fn label(self) -> &'static [u8] {
        match self {
            MacPurpose::Backup => b"raftsafe mac v1: backup",
            MacPurpose::RequestFingerprint => b"raftsafe mac v1: request fingerprint",
            MacPurpose::Peer => b"raftsafe mac v1: peer rpc",
            MacPurpose::SecretId => b"raftsafe mac v1: approle secret id",
        }
    }
}

impl ring::hkdf::KeyType for MacPurpose {
    fn len(&self) -> usize {
        32
    }
}

pub struct Keyring {
    master: SealingKey,
    /// HMAC-SHA256 keys derived from the master key, one per [`MacPurpose`].
    macs: [(MacPurpose, ring::hmac::Key); 4],
    /// Unwrapped data keys by id (a restore can replace key 1 of a fresh cluster with key 1
    /// of the backup).
    unwrapped: KeyCache<u32>,
    /// Unwrapped mount keys by (mount, version) (a mount deleted and created again gets new
    /// keys under the same names).
    mounts: KeyCache<(String, u32)>,
}

/// Most unwrapped mount keys kept (the cache is cleared when it would grow past this).
const MOUNT_KEYS_CACHED: usize = 4096;

/// Unwrapped keys by name, each with the wrapped bytes it came from: a key is reused only
/// for the same wrapped bytes, so a name whose key was replaced is unwrapped afresh.
struct KeyCache<K> {
    keys: RwLock<BTreeMap<K, (Sealed, Arc<SealingKey>)>>,
    /// Cleared when it would grow past this many.
    most: usize,
}

impl<K: Ord> KeyCache<K> {
    fn new(most: usize) -> Self {
        KeyCache {
            keys: RwLock::default(),
            most,
        }
    }

    /// The key `name` unwraps to from `wrapped`: cached, or made by `unwrap` and cached.
    fn get_or_unwrap(
        &self,
        name: K,
        wrapped: &[u8],
        unwrap: impl FnOnce() -> Result<SealingKey, CryptoError>,
    ) -> Result<Arc<SealingKey>, CryptoError> {
        let cached = self.keys.read().unwrap_or_else(|p| p.into_inner());
        if let Some((_, key)) = cached.get(&name).filter(|(w, _)| **w == *wrapped) {
            return Ok(key.clone());
        }
        drop(cached);
        let key = Arc::new(unwrap()?);
        let mut cache = self.keys.write().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= self.most {
            cache.clear();
        }
        let wrapped = Sealed::from_bytes(wrapped.to_vec());
        cache.insert(name, (wrapped, key.clone()));
        Ok(key)
    }
}

/// HKDF-SHA256 (no salt: the master key is already uniformly random) of the master key.
fn derive_mac_key(master: &[u8], purpose: MacPurpose) -> ring::hmac::Key {
    let prk = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, &[]).extract(master);
    let mut raw = [0u8; 32];
    prk.expand(&[purpose.label()], purpose)
        .and_then(|okm| okm.fill(&mut raw))
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &raw);
    raw.iter_mut().for_each(|b| *b = 0);
    key
}

fn wrap_aad(id: u32) -> Vec<u8> {
    let mut aad = b"raftsafe data key\0".to_vec();
    aad.extend_from_slice(&id.to_be_bytes());
    aad
}

impl Keyring {
    /// `master` is the raw 32-byte master key.
    pub fn new(master: &[u8]) -> Result<Keyring, CryptoError> {
        let sealing = SealingKey::new(MASTER_ID, master)?;
        let derive = |purpose: MacPurpose| (purpose, derive_mac_key(master, purpose));
        Ok(Keyring {
            master: sealing,
            macs: [
                derive(MacPurpose::Backup),
                derive(MacPurpose::RequestFingerprint),
                derive(MacPurpose::Peer),
                derive(MacPurpose::SecretId),
            ],
            unwrapped: KeyCache::new(usize::MAX),
            mounts: KeyCache::new(MOUNT_KEYS_CACHED),
        })
    }

    /// HMAC-SHA256 of `data` under the key derived for `purpose`.
    pub fn mac(&self, purpose: MacPurpose, data: &[u8]) -> [u8; 32] {
        let tag = ring::hmac::sign(self.mac_key(purpose), data);
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// Whether `tag` is the HMAC of `data` for `purpose`, compared in constant time.
    pub fn verify_mac(&self, purpose: MacPurpose, data: &[u8], tag: &[u8]) -> bool {
        ring::hmac::verify(self.mac_key(purpose), data, tag).is_ok()
    }

    /// The key derived for `purpose` (`new` derives one for every purpose).
    fn mac_key(&self, purpose: MacPurpose) -> &ring::hmac::Key {
        &self
            .macs
            .iter()
            .find(|(p, _)| *p == purpose)
            .expect("every purpose has a key")
            .1
    }

    /// Wraps key `version` of the mount at `mount` for storage in the replicated state.
    pub fn wrap_mount_key(
        &self,
        mount: &str,
        version: u32,
        key: &[u8; 32],
    ) -> Result<Sealed, CryptoError> {
        self.master
            .seal(&super::mount::key_wrap_aad(mount, version), key)
    }

    /// Unwraps (and caches) key `version` of the mount at `mount`. The key's id is its
    /// version.
    pub fn unwrap_mount_key(
        &self,
        mount: &str,
        version: u32,
        wrapped: &[u8],
    ) -> Result<Arc<SealingKey>, CryptoError> {
        let aad = super::mount::key_wrap_aad(mount, version);
        self.mounts
            .get_or_unwrap((mount.to_string(), version), wrapped, || {
                SealingKey::new(version, &self.master.open(&aad, wrapped)?)
            })
    }

    /// Wraps a new data key for storage in the replicated state.
    pub fn wrap(&self, id: u32, key: &[u8; 32]) -> Result<Sealed, CryptoError> {
        self.master.seal(&wrap_aad(id), key)
    }

    /// Unwraps (and caches) data key `id` from its wrapped bytes.
    pub fn unwrap(&self, id: u32, wrapped: &[u8]) -> Result<Arc<SealingKey>, CryptoError> {
        self.unwrapped.get_or_unwrap(id, wrapped, || {
            SealingKey::new(id, &self.master.open(&wrap_aad(id), wrapped)?)
        })
    }
}

/// Associated data binding a sealed secret value to its path.
pub fn secret_aad(path: &str) -> Vec<u8> {
    [b"secret\0".as_slice(), path.as_bytes()].concat()
}

/// Associated data binding a path's sealed custom metadata to the path, in a domain of its
/// own: it differs from every [`secret_aad`] and [`token_aad`] in its first byte, so a
/// sealed map never opens as a value or a token record, nor the reverse.
pub fn custom_metadata_aad(path: &str) -> Vec<u8> {
    [b"custom_metadata\0".as_slice(), path.as_bytes()].concat()
}

/// Associated data binding a sealed token record to its accessor.
pub fn token_aad(accessor: &str) -> Vec<u8> {
    [b"token\0".as_slice(), accessor.as_bytes()].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_macs_differ_by_purpose_and_master() {
        let a = Keyring::new(&[1u8; 32]).unwrap();
        let b = Keyring::new(&[1u8; 32]).unwrap();
        let other = Keyring::new(&[2u8; 32]).unwrap();
        let tag = a.mac(MacPurpose::Backup, b"data");
        // The same master derives the same key on every node.
        assert_eq!(tag, b.mac(MacPurpose::Backup, b"data"));
        assert!(b.verify_mac(MacPurpose::Backup, b"data", &tag));
        assert!(!b.verify_mac(MacPurpose::Backup, b"datA", &tag));
        assert!(!b.verify_mac(MacPurpose::Peer, b"data", &tag));
        assert!(!other.verify_mac(MacPurpose::Backup, b"data", &tag));
        assert_ne!(tag, a.mac(MacPurpose::RequestFingerprint, b"data"));
    }

    #[test]
    fn custom_metadata_and_values_never_open_as_each_other() {
        let k = SealingKey::new(1, &[7u8; 32]).unwrap();
        let map = k
            .seal(&custom_metadata_aad("app/db"), b"{\"team\":\"x\"}")
            .unwrap();
        let value = k.seal(&secret_aad("app/db"), b"{\"pw\":\"y\"}").unwrap();
        assert!(k.open(&custom_metadata_aad("app/db"), &map).is_ok());
        assert!(k.open(&secret_aad("app/db"), &map).is_err());
        assert!(k.open(&token_aad("app/db"), &map).is_err());
        assert!(k.open(&custom_metadata_aad("app/db"), &value).is_err());
        assert!(k.open(&custom_metadata_aad("app/dc"), &map).is_err());
        // No path makes one domain's associated data another's.
        for p in ["", "a", "secret", "custom_metadata"] {
            let c = custom_metadata_aad(p);
            assert_ne!(c[0], secret_aad(p)[0]);
            assert_ne!(c[0], token_aad(p)[0]);
        }
    }

    #[test]
    fn wrap_unwrap_and_wrong_master() {
        let ring = Keyring::new(&[1u8; 32]).unwrap();
        let dk = [5u8; 32];
        let wrapped = ring.wrap(1, &dk).unwrap();
        assert!(
            !wrapped.windows(32).any(|w| w == dk),
            "wrapped key hides the key"
        );
        let k = ring.unwrap(1, &wrapped).unwrap();
        let sealed = k.seal(b"a", b"v").unwrap();
        assert_eq!(
            SealingKey::new(1, &dk)
                .unwrap()
                .open(b"a", &sealed)
                .unwrap(),
            b"v"
        );
        // The id is bound in: the same blob does not unwrap as another key.
        assert!(Keyring::new(&[1u8; 32])
            .unwrap()
            .unwrap(2, &wrapped)
            .is_err());
        // A mount key is bound to its mount and version, and is not a data key.
        let mk = ring.wrap_mount_key("pay", 1, &dk).unwrap();
        assert!(ring.unwrap_mount_key("pay", 1, &mk).is_ok());
        assert!(ring.unwrap_mount_key("pay", 2, &mk).is_err());
        assert!(ring.unwrap_mount_key("other", 1, &mk).is_err());
        assert!(Keyring::new(&[1u8; 32]).unwrap().unwrap(1, &mk).is_err());
        let wrong = Keyring::new(&[2u8; 32]).unwrap();
        assert_eq!(
            wrong.unwrap(1, &wrapped).unwrap_err(),
            CryptoError::Authentication
        );
    }
}
