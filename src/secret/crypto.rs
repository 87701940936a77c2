//! Sealing secret values: AES-256-GCM with a random 96-bit nonce per value and the secret's
//! path as associated data, so a sealed value opens only under the key that made it and
//! only at the path it was written to.
//!
//! Invariants:
//! - Plaintext exists only in memory on the node that received the request; what is
//!   proposed to Raft, replicated, stored and snapshotted is the sealed form.
//! - The key is never logged (its `Debug` is redacted) and never written to the Raft log.
//! - Sealed layout: `[format=1][key id: u32 BE][nonce: 12][ciphertext || tag: 16]`. The key
//!   id names the key that sealed it, so a keyring can hold several keys for rotation.

use std::fmt;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

const FORMAT: u8 = 1;
const HEADER: usize = 1 + 4 + NONCE_LEN;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("key must be 32 bytes, got {0}")]
    KeyLength(usize),
    #[error("sealed value is malformed")]
    Malformed,
    #[error("sealed with key {0}, which this node does not have")]
    UnknownKey(u32),
    #[error("sealed value failed authentication (wrong key, wrong path or tampered)")]
    Authentication,
    #[error("the system random number generator failed")]
    Random,
}

/// Bytes made by [`SealingKey::seal`]: a secret's value, a token record, a wrapped key.
/// Opaque to everything but the keyring, and its `Debug` shows only the length, so a sealed
/// value never reaches a log line, not even encrypted. Serialized exactly as its bytes
/// (`serde(transparent)`): the log, snapshot and backup formats are those of a `Vec<u8>`.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Sealed(Vec<u8>);

impl Sealed {
    /// Bytes that were sealed elsewhere (read from storage, a backup, a ciphertext a
    /// client sent back); opening them checks them.
    pub fn from_bytes(bytes: Vec<u8>) -> Sealed {
        Sealed(bytes)
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

/// Read as bytes (to open, store or measure); never printed as bytes.
impl std::ops::Deref for Sealed {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sealed({} bytes)", self.0.len())
    }
}

/// One AES-256 key with its id.
pub struct SealingKey {
    id: u32,
    key: LessSafeKey,
}

impl fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealingKey {{ id: {}, key: <redacted> }}", self.id)
    }
}

impl SealingKey {
    pub fn new(id: u32, bytes: &[u8]) -> Result<Self, CryptoError> {
        let unbound = UnboundKey::new(&AES_256_GCM, bytes)
            .map_err(|_| CryptoError::KeyLength(bytes.len()))?;
        Ok(SealingKey {
            id,
            key: LessSafeKey::new(unbound),
        })
    }

    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Sealed, CryptoError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| CryptoError::Random)?;
        let mut out = Vec::with_capacity(HEADER + plaintext.len() + AES_256_GCM.tag_len());
        out.push(FORMAT);
        out.extend_from_slice(&self.id.to_be_bytes());
        out.extend_from_slice(&nonce);
        let mut body = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut body,
            )
            .map_err(|_| CryptoError::Malformed)?;
        out.extend_from_slice(&body);
        Ok(Sealed(out))
    }

    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let (id, nonce, body) = split(sealed)?;
        if id != self.id {
            return Err(CryptoError::UnknownKey(id));
        }
        let mut body = body.to_vec();
        let plain = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut body,
            )
            .map_err(|_| CryptoError::Authentication)?;
        Ok(plain.to_vec())
    }
}

/// Bytes of the `[format][key id]` header before the nonce.
pub const ID_HEADER: usize = 1 + 4;

/// The sealed form with the header for `id` put back in front of `nonce || ct || tag`.
pub fn with_header(id: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ID_HEADER + body.len());
    out.push(FORMAT);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// The key id a sealed value names.
pub fn key_id(sealed: &[u8]) -> Result<u32, CryptoError> {
    split(sealed).map(|(id, _, _)| id)
}

fn split(sealed: &[u8]) -> Result<(u32, [u8; NONCE_LEN], &[u8]), CryptoError> {
    if sealed.len() < HEADER + AES_256_GCM.tag_len() || sealed[0] != FORMAT {
        return Err(CryptoError::Malformed);
    }
    let id = u32::from_be_bytes(
        sealed[1..5]
            .try_into()
            .map_err(|_| CryptoError::Malformed)?,
    );
    let nonce: [u8; NONCE_LEN] = sealed[5..HEADER]
        .try_into()
        .map_err(|_| CryptoError::Malformed)?;
    Ok((id, nonce, &sealed[HEADER..]))
}

/// 32 random bytes, for new keys.
pub fn random_key() -> Result<[u8; 32], CryptoError> {
    let mut k = [0u8; 32];
    SystemRandom::new()
        .fill(&mut k)
        .map_err(|_| CryptoError::Random)?;
    Ok(k)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The log, snapshots and backups hold `Sealed` where they held `Vec<u8>` before it
    /// existed: the bytes on disk must be the same, and `Debug` must show no byte.
    #[test]
    fn sealed_is_stored_as_its_bytes_and_printed_as_its_length() {
        let bytes = vec![7u8, 0, 255, 42];
        let sealed = Sealed::from_bytes(bytes.clone());
        assert_eq!(crate::codec::encode(&sealed), crate::codec::encode(&bytes));
        let back: Sealed = crate::codec::decode(&crate::codec::encode(&bytes)).unwrap();
        assert_eq!(back, sealed);
        assert_eq!(format!("{sealed:?}"), "Sealed(4 bytes)");
        let pairs = vec![(b"k".to_vec(), bytes.clone())];
        let stored = crate::secret::StoredPairs::new(pairs.clone());
        assert_eq!(crate::codec::encode(&stored), crate::codec::encode(&pairs));
        assert_eq!(format!("{stored:?}"), "StoredPairs(1 pairs)");
    }

    #[test]
    fn round_trip_and_binding() {
        let k = SealingKey::new(1, &[7u8; 32]).unwrap();
        let s = k.seal(b"app/db", b"hunter2").unwrap();
        assert!(
            !s.windows(7).any(|w| w == b"hunter2"),
            "no plaintext in the sealed form"
        );
        assert_eq!(k.open(b"app/db", &s).unwrap(), b"hunter2");
        assert_eq!(k.open(b"app/other", &s), Err(CryptoError::Authentication));
        let other = SealingKey::new(1, &[8u8; 32]).unwrap();
        assert_eq!(other.open(b"app/db", &s), Err(CryptoError::Authentication));
        let k2 = SealingKey::new(2, &[7u8; 32]).unwrap();
        assert_eq!(k2.open(b"app/db", &s), Err(CryptoError::UnknownKey(1)));
        let mut tampered = s.clone().into_bytes();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(
            k.open(b"app/db", &tampered),
            Err(CryptoError::Authentication)
        );
        assert_eq!(k.open(b"app/db", &s[..10]), Err(CryptoError::Malformed));
        assert_ne!(k.seal(b"app/db", b"hunter2").unwrap(), s, "nonces differ");
        assert_eq!(
            SealingKey::new(1, &[0u8; 16]).unwrap_err(),
            CryptoError::KeyLength(16)
        );
        assert_eq!(key_id(&s).unwrap(), 1);
    }
}
