//! The barrier: everything secret crosses it on the way into and out of the state machine.
//! It seals secret values and token records with the current data key and opens them with
//! the key they name. It reads the replicated keyring but never writes: new keys are
//! proposed through Raft by its callers (`bootstrap`, the key-rotation API).
//!
//! Invariants:
//! - Sealing always uses the newest data key in the replicated state; opening uses the key
//!   id recorded in the sealed bytes, so values sealed before a rotation still open.
//! - Secret values are bound to their path and token records to their accessor (associated
//!   data): a sealed blob moved to another key opens nowhere. A path's custom metadata is
//!   bound to its path under associated data of its own domain, so a sealed map and a sealed
//!   value never open as each other, even at the same path.
//! - Ondemand mounts: [`Barrier::encrypt`] and [`Barrier::decrypt`] use the mount's own keys
//!   (wrapped under the same master key) and bind the full path and the key version; the
//!   plaintext goes back to the caller and never into the state machine. Callers must have
//!   passed the read-index round, so the mount record they pass is at least as new as every
//!   rotation and configuration change acknowledged before the request began.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::secret::crypto::{self, CryptoError, Sealed, SealingKey};
use crate::secret::keyring::{custom_metadata_aad, secret_aad, token_aad, Keyring, MacPurpose};
use crate::secret::machine::keys;
use crate::secret::mount::{CiphertextError, Envelope};
use crate::secret::token::TokenRecord;
use crate::secret::MountRecord;
use crate::secret::SecretPath;
use crate::store::backup::{self, BackupError, BackupHeader};
use crate::store::state_machine::{Reader, StoredToken};
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum BarrierError {
    #[error("the keyring is not initialized yet (the cluster is still bootstrapping)")]
    NoKeyring,
    #[error("data key {0} is missing from the keyring")]
    MissingKey(u32),
    #[error("data key {id} does not unwrap with this node's master key ({source}); is the master key the cluster's?")]
    WrongMasterKey { id: u32, source: CryptoError },
    #[error("{what}: {source}")]
    Crypto { what: String, source: CryptoError },
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("decoding a token record: {0}")]
    Decode(String),
}

/// Why an ondemand ciphertext was not decrypted. Each case is the client's doing (400) except
/// [`OndemandError::Barrier`].
#[derive(Debug, thiserror::Error)]
pub enum OndemandError {
    #[error("{0}")]
    Malformed(#[from] CiphertextError),
    #[error("ciphertext names key version {version}, but the mount at '{mount}' has versions up to {latest} only")]
    UnknownVersion {
        mount: String,
        version: u32,
        latest: u32,
    },
    #[error("ciphertext was made with key version {version}, below the mount's minDecryptionVersion {min}; rewrap it while that version is allowed, or lower minDecryptionVersion")]
    BelowMinimum { version: u32, min: u32 },
    #[error("ciphertext failed authentication: it was tampered with, made for another path than '{path}', or made under a mount that was deleted since")]
    Authentication { path: String },
    #[error("{0}")]
    Barrier(#[from] BarrierError),
}

pub struct Barrier {
    keyring: Keyring,
    reader: Reader,
    /// Opened token records by accessor, with the sealed bytes they came from. Every lookup
    /// still reads the sealed record and the revocation from the state machine; the cache
    /// only skips decrypting and decoding a record whose sealed bytes did not change.
    opened: RwLock<HashMap<String, (Sealed, TokenRecord)>>,
}

/// Most opened token records kept (the cache is cleared when it would grow past this).
const OPENED_TOKENS: usize = 10_000;

impl Barrier {
    pub fn new(keyring: Keyring, reader: Reader) -> Barrier {
        Barrier {
            keyring,
            reader,
            opened: RwLock::default(),
        }
    }

    fn key(&self, id: u32) -> Result<Arc<SealingKey>, BarrierError> {
        let wrapped = self
            .reader
            .wrapped_key(id)?
            .ok_or(BarrierError::MissingKey(id))?;
        self.keyring
            .unwrap(id, &wrapped)
            .map_err(|source| BarrierError::WrongMasterKey { id, source })
    }

    fn current(&self) -> Result<Arc<SealingKey>, BarrierError> {
        let id = self
            .reader
            .current_key_id()?
            .ok_or(BarrierError::NoKeyring)?;
        self.key(id)
    }

    /// HMAC-SHA256 of `data` under the master-derived key for `purpose` (the same on every
    /// node of the cluster).
    pub fn mac(&self, purpose: MacPurpose, data: &[u8]) -> [u8; 32] {
        self.keyring.mac(purpose, data)
    }

    /// Whether `tag` authenticates `data` for `purpose` (constant time).
    pub fn verify_mac(&self, purpose: MacPurpose, data: &[u8], tag: &[u8]) -> bool {
        self.keyring.verify_mac(purpose, data, tag)
    }

    /// The current data key id, if the keyring exists.
    pub fn current_key_id(&self) -> Result<Option<u32>, BarrierError> {
        Ok(self.reader.current_key_id()?)
    }

    /// Checks that every data key in this node's state unwraps with its master key. A node
    /// with the wrong master key must not serve.
    pub fn verify_master_key(&self) -> Result<(), BarrierError> {
        if let Some(current) = self.reader.current_key_id()? {
            for id in 1..=current {
                self.key(id)?;
            }
        }
        Ok(())
    }

    fn open(
        &self,
        what: impl Fn() -> String,
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Vec<u8>, BarrierError> {
        let id = crypto::key_id(sealed).map_err(|source| BarrierError::Crypto {
            what: what(),
            source,
        })?;
        self.key(id)?
            .open(aad, sealed)
            .map_err(|source| BarrierError::Crypto {
                what: what(),
                source,
            })
    }

    pub fn seal_secret(&self, path: &SecretPath, plain: &[u8]) -> Result<Sealed, BarrierError> {
        self.current()?
            .seal(&secret_aad(path.as_str()), plain)
            .map_err(|source| BarrierError::Crypto {
                what: format!("sealing '{path}'"),
                source,
            })
    }

    pub fn open_secret(&self, path: &SecretPath, sealed: &[u8]) -> Result<Vec<u8>, BarrierError> {
        self.open(
            || format!("opening '{path}'"),
            &secret_aad(path.as_str()),
            sealed,
        )
    }

    /// Seals a path's custom metadata (its encoded map) for `path`.
    pub fn seal_custom_metadata(
        &self,
        path: &SecretPath,
        plain: &[u8],
    ) -> Result<Sealed, BarrierError> {
        self.current()?
            .seal(&custom_metadata_aad(path.as_str()), plain)
            .map_err(|source| BarrierError::Crypto {
                what: format!("sealing the custom metadata of '{path}'"),
                source,
            })
    }

    pub fn open_custom_metadata(
        &self,
        path: &SecretPath,
        sealed: &[u8],
    ) -> Result<Vec<u8>, BarrierError> {
        self.open(
            || format!("opening the custom metadata of '{path}'"),
            &custom_metadata_aad(path.as_str()),
            sealed,
        )
    }

    pub fn seal_token(&self, record: &TokenRecord) -> Result<Sealed, BarrierError> {
        let bytes = record.encode();
        self.current()?
            .seal(&token_aad(&record.accessor), &bytes)
            .map_err(|source| BarrierError::Crypto {
                what: format!("sealing token {}", record.accessor),
                source,
            })
    }

    fn open_token(&self, accessor: &str, sealed: &[u8]) -> Result<TokenRecord, BarrierError> {
        let bytes = self.open(
            || format!("opening token {accessor}"),
            &token_aad(accessor),
            sealed,
        )?;
        TokenRecord::decode(&bytes).map_err(|e| BarrierError::Decode(e.to_string()))
    }

    /// A token's record (its expiry the lease's, for a login token) and revocation time.
    pub fn token(
        &self,
        accessor: &str,
    ) -> Result<Option<(TokenRecord, Option<u64>)>, BarrierError> {
        let Some(stored) = self.reader.token(accessor)? else {
            return Ok(None);
        };
        let cached = self
            .opened
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(accessor)
            .filter(|(sealed, _)| *sealed == stored.sealed)
            .map(|(_, record)| record.clone());
        let record = match cached {
            Some(record) => record,
            None => {
                let record = self.open_token(accessor, &stored.sealed)?;
                let mut opened = self.opened.write().unwrap_or_else(|p| p.into_inner());
                if opened.len() >= OPENED_TOKENS {
                    opened.clear();
                }
                opened.insert(
                    accessor.to_string(),
                    (stored.sealed.clone(), record.clone()),
                );
                record
            }
        };
        Ok(Some((with_lease(record, &stored), stored.revoked_at_ms)))
    }

    pub fn tokens(&self) -> Result<Vec<(TokenRecord, Option<u64>)>, BarrierError> {
        self.reader
            .tokens()?
            .into_iter()
            .map(|t| {
                let record = self.open_token(&t.accessor, &t.sealed)?;
                Ok((with_lease(record, &t), t.revoked_at_ms))
            })
            .collect()
    }

    /// Checks that `wrapped` (data key `id` from elsewhere, e.g. a backup) unwraps with this
    /// node's master key.
    pub fn check_wrapped_key(&self, id: u32, wrapped: &[u8]) -> Result<(), BarrierError> {
        self.keyring
            .unwrap(id, wrapped)
            .map(|_| ())
            .map_err(|source| BarrierError::WrongMasterKey { id, source })
    }

    /// Reads the backup at `path` whole (blocking) and checks it can be restored here: its
    /// tag under this cluster's master key, its checksum, length and pair count, and that
    /// every data key in it unwraps. Returns its header.
    pub fn check_backup(&self, path: &std::path::Path) -> Result<BackupHeader, BackupError> {
        let mut r = backup::open(path)?;
        r.authenticate(|data, tag| self.verify_mac(MacPurpose::Backup, data, tag))?;
        while let Some((k, v)) = r.next_pair()? {
            if let Some(id) = keys::data_key_id(&k) {
                self.check_wrapped_key(id, &v)
                    .map_err(|e| BackupError::ForeignKey(e.to_string()))?;
            }
        }
        Ok(r.header().clone())
    }

    /// A new key for version `version` of the mount at `mount`, wrapped, ready to propose.
    pub fn new_wrapped_mount_key(&self, mount: &str, version: u32) -> Result<Sealed, BarrierError> {
        let raw = crypto::random_key().map_err(|source| BarrierError::Crypto {
            what: "new mount key".into(),
            source,
        })?;
        self.keyring
            .wrap_mount_key(mount, version, &raw)
            .map_err(|source| BarrierError::Crypto {
                what: format!("wrapping key {version} of mount '{mount}'"),
                source,
            })
    }

    fn mount_key(&self, mount: &str, version: u32) -> Result<Arc<SealingKey>, BarrierError> {
        let wrapped =
            self.reader
                .mount_key(mount, version)?
                .ok_or_else(|| BarrierError::Crypto {
                    what: format!("key {version} of mount '{mount}'"),
                    source: CryptoError::UnknownKey(version),
                })?;
        self.keyring
            .unwrap_mount_key(mount, version, &wrapped)
            .map_err(|source| BarrierError::Crypto {
                what: format!("unwrapping key {version} of mount '{mount}'"),
                source,
            })
    }

    /// Encrypts `plain` for `path` under key `version` of the mount at `mount`, spelled and
    /// bound as `envelope`'s dialect does.
    pub fn encrypt(
        &self,
        envelope: Envelope,
        mount: &str,
        path: &SecretPath,
        version: u32,
        plain: &[u8],
    ) -> Result<String, BarrierError> {
        let sealed = self
            .mount_key(mount, version)?
            .seal(&envelope.aad(path.as_str(), version), plain)
            .map_err(|source| BarrierError::Crypto {
                what: format!("encrypting for '{path}'"),
                source,
            })?;
        Ok(envelope.format(version, &sealed[crypto::ID_HEADER..]))
    }

    /// Decrypts a ciphertext made for `path` under the mount at `mount` (`rec`: its record,
    /// read after the read-index round). Returns the plaintext and the key version it named.
    pub fn decrypt(
        &self,
        envelope: Envelope,
        mount: &str,
        rec: &MountRecord,
        path: &SecretPath,
        ciphertext: &str,
    ) -> Result<(Vec<u8>, u32), OndemandError> {
        let (version, body) = envelope.parse(ciphertext)?;
        if version > rec.latest_version {
            return Err(OndemandError::UnknownVersion {
                mount: mount.to_string(),
                version,
                latest: rec.latest_version,
            });
        }
        if version < rec.min_decryption_version {
            return Err(OndemandError::BelowMinimum {
                version,
                min: rec.min_decryption_version,
            });
        }
        let key = self.mount_key(mount, version)?;
        let plain = key
            .open(
                &envelope.aad(path.as_str(), version),
                &crypto::with_header(version, &body),
            )
            .map_err(|_| OndemandError::Authentication {
                path: path.to_string(),
            })?;
        Ok((plain, version))
    }

    /// A new data key, wrapped, ready to propose as key `id`.
    pub fn new_wrapped_key(&self, id: u32) -> Result<Sealed, BarrierError> {
        let raw = crypto::random_key().map_err(|source| BarrierError::Crypto {
            what: "new key".into(),
            source,
        })?;
        self.keyring
            .wrap(id, &raw)
            .map_err(|source| BarrierError::Crypto {
                what: format!("wrapping key {id}"),
                source,
            })
    }
}

/// A token's record with its lease's expiry, when a login issued it (renewals move it).
fn with_lease(mut record: TokenRecord, stored: &StoredToken) -> TokenRecord {
    if let Some(lease) = stored.lease {
        record.expires_at_ms = Some(lease.expires_at_ms);
    }
    record
}
