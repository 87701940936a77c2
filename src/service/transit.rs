//! Vault's Transit on the ondemand engine: bytes in, `vault:v<N>:` ciphertexts out, under
//! the keys of an ondemand mount. Which mount serves which Transit key is the dialect's
//! business (`src/api/vault/transit.rs`); here a key is the mount at `key`, and its
//! ciphertexts are bound to the mount's own path ([`Envelope::Transit`]), where the
//! ondemand API's are bound to a path under it.
//!
//! Invariants:
//! - The caller reads `rec` (the mount record) from a [`super::Linearized`] view and picks
//!   the key version from [`MountRecord::encryption_versions`], as for the ondemand API, so no
//!   encryption uses a version an acknowledged rotation, config change or trim made illegal.
//! - Nothing is proposed or stored; a rewrap's plaintext never leaves this file.

use super::{Service, ServiceError};
use crate::secret::mount::Envelope;
use crate::secret::{MountRecord, SecretPath};

impl Service {
    /// Encrypts `plain` under key `version` of the mount at `key`.
    pub fn transit_encrypt(
        &self,
        key: &SecretPath,
        version: u32,
        plain: &[u8],
    ) -> Result<String, ServiceError> {
        Ok(self
            .barrier
            .encrypt(Envelope::Transit, key.as_str(), key, version, plain)?)
    }

    /// The plaintext of a Transit ciphertext made under the mount at `key`, and the key
    /// version it named.
    pub fn transit_decrypt(
        &self,
        key: &SecretPath,
        rec: &MountRecord,
        ciphertext: &str,
    ) -> Result<(Vec<u8>, u32), ServiceError> {
        Ok(self
            .barrier
            .decrypt(Envelope::Transit, key.as_str(), rec, key, ciphertext)?)
    }

    /// The same plaintext encrypted again under key `version` (the caller checked it may
    /// encrypt), without the plaintext leaving the service.
    pub fn transit_rewrap(
        &self,
        key: &SecretPath,
        rec: &MountRecord,
        ciphertext: &str,
        version: u32,
    ) -> Result<String, ServiceError> {
        let (plain, _) = self.transit_decrypt(key, rec, ciphertext)?;
        self.transit_encrypt(key, version, &plain)
    }
}
