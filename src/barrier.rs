//! The barrier: everything secret crosses it on the way into and out of the state machine.
//! It seals secret values and token records with the current data key and opens them with
//! the key they name. It reads the replicated keyring but never writes: new keys are
//! proposed through Raft by its callers (`bootstrap`, the key-rotation API).
//!
//! Invariants:
//! - Sealing always uses the newest data key in the replicated state; opening uses the key
//!   id recorded in the sealed bytes, so values sealed before a rotation still open.
//! - Secret values are bound to their path and token records to their accessor (associated
//!   data): a sealed blob moved to another key opens nowhere.

use std::sync::Arc;

use crate::secret::crypto::{self, CryptoError, SealingKey};
use crate::secret::keyring::{secret_aad, token_aad, Keyring};
use crate::secret::token::TokenRecord;
use crate::secret::SecretPath;
use crate::store::state_machine::Reader;
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

pub struct Barrier {
    keyring: Keyring,
    reader: Reader,
}

impl Barrier {
    pub fn new(keyring: Keyring, reader: Reader) -> Barrier {
        Barrier { keyring, reader }
    }

    fn key(&self, id: u32) -> Result<Arc<SealingKey>, BarrierError> {
        if let Some(k) = self.keyring.cached(id) {
            return Ok(k);
        }
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

    pub fn seal_secret(&self, path: &SecretPath, plain: &[u8]) -> Result<Vec<u8>, BarrierError> {
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

    pub fn seal_token(&self, record: &TokenRecord) -> Result<Vec<u8>, BarrierError> {
        let bytes = crate::codec::encode(record);
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
        crate::codec::decode(&bytes).map_err(|e| BarrierError::Decode(e.to_string()))
    }

    /// A token's record and revocation time.
    pub fn token(
        &self,
        accessor: &str,
    ) -> Result<Option<(TokenRecord, Option<u64>)>, BarrierError> {
        match self.reader.token(accessor)? {
            None => Ok(None),
            Some(t) => Ok(Some((
                self.open_token(accessor, &t.sealed)?,
                t.revoked_at_ms,
            ))),
        }
    }

    pub fn tokens(&self) -> Result<Vec<(TokenRecord, Option<u64>)>, BarrierError> {
        self.reader
            .tokens()?
            .into_iter()
            .map(|t| Ok((self.open_token(&t.accessor, &t.sealed)?, t.revoked_at_ms)))
            .collect()
    }

    /// A new data key, wrapped, ready to propose as key `id`.
    pub fn new_wrapped_key(&self, id: u32) -> Result<Vec<u8>, BarrierError> {
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
