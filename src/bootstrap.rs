//! The birth of a cluster's secrets: the first data key and the root token, created by the
//! bootstrap node through Raft like any other write.
//!
//! Invariants:
//! - Both are created once per cluster however often the bootstrap node restarts: data key 1
//!   has a fixed request id and the state machine only accepts key `current + 1`; the root
//!   token's command is accepted once (`AlreadyBootstrapped` afterwards).
//! - A generated root token is returned to the caller to print once; it is never logged.
//! - Waits are bounded: until the cluster has a leader, at most `within`.

use std::time::Duration;

use crate::barrier::{Barrier, BarrierError};
use crate::config::Config;
use crate::raft::node::{Node, NodeError};
use crate::raft::view::View;
use crate::secret::token::{Policy, Token, TokenRecord};
use crate::secret::{Command, CommandResult, Op, RequestId};
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("{0}")]
    Node(#[from] NodeError),
    #[error("{0}")]
    Barrier(#[from] BarrierError),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    /// The root token given by the operator is unusable.
    #[error("root token: {0}")]
    RootToken(String),
    /// The state machine answered something a bootstrap step cannot produce.
    #[error("{step}: unexpected result {result:?}")]
    Unexpected {
        step: &'static str,
        result: CommandResult,
    },
    #[error("generating the root token: {0}")]
    Random(String),
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

/// The root token an operator supplied, if any: `RAFTSAFE_ROOT_TOKEN`, `root_token_file`,
/// or in dev mode `RAFTSAFE_DEV_ROOT_TOKEN`.
pub fn operator_root_token(config: &Config) -> Result<Option<Token>, BootstrapError> {
    let from = |text: &str, origin: &str| {
        Token::from_operator(text).map_err(|e| BootstrapError::RootToken(format!("{origin}: {e}")))
    };
    if let Ok(t) = std::env::var("RAFTSAFE_ROOT_TOKEN") {
        return from(&t, "RAFTSAFE_ROOT_TOKEN").map(Some);
    }
    if let Some(path) = &config.root_token_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| BootstrapError::RootToken(format!("reading {}: {e}", path.display())))?;
        return from(&text, &path.display().to_string()).map(Some);
    }
    if config.tls.is_none() {
        if let Ok(t) = std::env::var("RAFTSAFE_DEV_ROOT_TOKEN") {
            return from(&t, "RAFTSAFE_DEV_ROOT_TOKEN").map(Some);
        }
    }
    Ok(None)
}

/// On the bootstrap node of a new cluster: creates data key 1 and the root token, through
/// Raft, retrying while the cluster has no leader (bounded by `within`).
pub async fn bootstrap(
    node: &Node,
    barrier: &Barrier,
    root: Option<Token>,
    within: Duration,
) -> Result<RootToken, BootstrapError> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match bootstrap_once(node, barrier, root.clone()).await {
            Err(BootstrapError::Node(NodeError::Unavailable(why)))
                if tokio::time::Instant::now() < deadline =>
            {
                tracing::debug!(%why, "bootstrap waiting for the cluster");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => return other,
        }
    }
}

async fn bootstrap_once(
    node: &Node,
    barrier: &Barrier,
    root: Option<Token>,
) -> Result<RootToken, BootstrapError> {
    let mut current = node.linearize().await?;
    if barrier.current_key_id()?.is_none() {
        let wrapped = barrier.new_wrapped_key(1)?;
        let op = Op {
            id: RequestId::named("bootstrap-data-key-1"),
            caller: None,
            command: Command::AddDataKey { id: 1, wrapped },
        };
        match node.write(op).await? {
            CommandResult::KeyAdded { .. } | CommandResult::KeyConflict { .. } => {}
            result => {
                return Err(BootstrapError::Unexpected {
                    step: "creating the keyring",
                    result,
                })
            }
        }
        current = node.linearize().await?;
    }
    if current.state().bootstrapped()? {
        return Ok(RootToken::Existed);
    }
    let (token, generated) = match root {
        Some(t) => (t, false),
        None => (
            Token::generate().map_err(|e| BootstrapError::Random(e.to_string()))?,
            true,
        ),
    };
    let record = TokenRecord {
        accessor: token.accessor(),
        name: "root".into(),
        hash: token.hash(),
        policy: Policy::root(),
        created_at_ms: crate::time::now_ms(),
        expires_at_ms: None,
        acl_policies: Vec::new(),
        grants: Vec::new(),
    };
    let sealed = barrier.seal_token(&record)?;
    // A fresh id: if this attempt's answer is lost and it is retried with a new token, the
    // state machine's once-only rule (not dedup) decides, and says so.
    let command = Command::CreateToken {
        accessor: record.accessor.clone(),
        sealed,
        bootstrap: true,
    };
    match node.write(Op::new(command, None)).await? {
        CommandResult::TokenCreated if generated => Ok(RootToken::Generated(token)),
        CommandResult::TokenCreated => Ok(RootToken::Created),
        CommandResult::AlreadyBootstrapped => Ok(RootToken::Existed),
        result => Err(BootstrapError::Unexpected {
            step: "creating the root token",
            result,
        }),
    }
}

/// Runs [`bootstrap`] and tells the operator what happened. A generated root token goes to
/// stdout once, never to the log.
pub async fn bootstrap_and_report(node: &Node, barrier: &Barrier, root: Option<Token>) {
    match bootstrap(node, barrier, root, Duration::from_secs(300)).await {
        Ok(RootToken::Generated(token)) => {
            println!("Root token (shown once, store it now): {}", token.expose());
            tracing::warn!(
                "a root token was generated and printed to stdout; it will not be shown again"
            );
        }
        Ok(RootToken::Created) => tracing::info!("root token created from the configured token"),
        Ok(RootToken::Existed) => {
            tracing::info!("cluster already bootstrapped (root token exists)")
        }
        Err(e) => tracing::error!(error = %e, "bootstrapping the keyring and root token failed"),
    }
}
