//! The barrier: everything secret crosses it on the way into and out of the state machine.
//! It seals secret values and token records with the current data key, opens them with the
//! key they name, and creates the keyring and the root token when a cluster is born.
//!
//! Invariants:
//! - Sealing always uses the newest data key in the replicated state; opening uses the key
//!   id recorded in the sealed bytes, so values sealed before a rotation still open.
//! - Secret values are bound to their path and token records to their accessor (associated
//!   data): a sealed blob moved to another key opens nowhere.
//! - The keyring and the root token are created through Raft like any write, with fixed
//!   request ids, so however often a bootstrap node restarts they are created once.

use std::sync::Arc;
use std::time::Duration;

use crate::raft::node::{Node, NodeError, Proposal};
use crate::secret::crypto::{self, CryptoError, SealingKey};
use crate::secret::keyring::{secret_aad, token_aad, Keyring};
use crate::secret::token::{Policy, Token, TokenRecord};
use crate::secret::{Command, CommandResult, RequestId, SecretPath};
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

/// Rotates the data key: proposes key `current + 1`. Returns the new id.
pub async fn rotate(node: &Node, barrier: &Barrier) -> Result<u32, String> {
    for _ in 0..5 {
        let current = barrier
            .current_key_id()
            .map_err(|e| e.to_string())?
            .unwrap_or(0);
        let id = current + 1;
        let wrapped = barrier.new_wrapped_key(id).map_err(|e| e.to_string())?;
        let proposal = Proposal {
            id: RequestId(crate::api::random_id()),
            command: Command::AddDataKey { id, wrapped },
        };
        match node.write(proposal).await.map_err(|e| e.to_string())? {
            CommandResult::KeyAdded { id } => return Ok(id),
            // Another rotation won the race; our view of `current` is now stale. Try again
            // once this node has applied it.
            CommandResult::KeyConflict { .. } => {
                node.linearize().await.map_err(|e| e.to_string())?
            }
            other => return Err(format!("unexpected result {other:?}")),
        }
    }
    Err("the data key kept changing under concurrent rotations; try again".into())
}

/// What a bootstrap produced, for the operator.
pub enum RootToken {
    /// Created now from a token this process generated: show it once.
    Generated(Token),
    /// Created now from the operator's token.
    Created,
    /// The cluster already had its root token.
    Existed,
}

/// On the bootstrap node of a new cluster: creates data key 1 and the root token, through
/// Raft, retrying until the cluster has a leader (bounded by `within`).
pub async fn bootstrap(
    node: &Node,
    barrier: &Barrier,
    root: Option<Token>,
    within: Duration,
) -> Result<RootToken, String> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match bootstrap_once(node, barrier, root.clone()).await {
            Ok(r) => return Ok(r),
            Err(NodeOrBarrier::Node(NodeError::Unavailable(why)))
                if tokio::time::Instant::now() < deadline =>
            {
                tracing::debug!(%why, "bootstrap waiting for the cluster");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum NodeOrBarrier {
    #[error("{0}")]
    Node(#[from] NodeError),
    #[error("{0}")]
    Barrier(#[from] BarrierError),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Other(String),
}

async fn bootstrap_once(
    node: &Node,
    barrier: &Barrier,
    root: Option<Token>,
) -> Result<RootToken, NodeOrBarrier> {
    node.linearize().await?;
    if barrier.current_key_id()?.is_none() {
        let wrapped = barrier.new_wrapped_key(1)?;
        let proposal = Proposal {
            id: RequestId("bootstrap-data-key-1".into()),
            command: Command::AddDataKey { id: 1, wrapped },
        };
        match node.write(proposal).await? {
            CommandResult::KeyAdded { .. } | CommandResult::KeyConflict { .. } => {}
            other => {
                return Err(NodeOrBarrier::Other(format!(
                    "creating the keyring: {other:?}"
                )))
            }
        }
        node.linearize().await?;
    }
    if barrier.reader.bootstrapped()? {
        return Ok(RootToken::Existed);
    }
    let (token, generated) = match root {
        Some(t) => (t, false),
        None => (
            Token::generate().map_err(|e| NodeOrBarrier::Other(e.to_string()))?,
            true,
        ),
    };
    let record = TokenRecord {
        accessor: token.accessor(),
        name: "root".into(),
        hash: token.hash(),
        policy: Policy::root(),
        created_at_ms: crate::raft::node::now_ms(),
        expires_at_ms: None,
    };
    let sealed = barrier.seal_token(&record)?;
    let proposal = Proposal {
        // A fresh id: if this attempt's answer is lost and it is retried with a new token,
        // the state machine's once-only rule (not dedup) decides, and says so.
        id: RequestId(crate::api::random_id()),
        command: Command::CreateToken {
            accessor: record.accessor.clone(),
            sealed,
            bootstrap: true,
        },
    };
    match node.write(proposal).await? {
        CommandResult::TokenCreated if generated => Ok(RootToken::Generated(token)),
        CommandResult::TokenCreated => Ok(RootToken::Created),
        CommandResult::AlreadyBootstrapped => Ok(RootToken::Existed),
        other => Err(NodeOrBarrier::Other(format!(
            "creating the root token: {other:?}"
        ))),
    }
}
