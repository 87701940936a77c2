//! `raftsafe serve`: wires configuration, storage, the barrier, Raft and the two listeners
//! together and runs until SIGTERM or Ctrl-C.
//!
//! Start-up order matters:
//! 1. The master key is resolved, and checked against any keyring already on disk, before
//!    Raft starts: a node with the wrong key refuses to start and writes nothing.
//! 2. TLS material is loaded; without it the node is a dev server and may only bind loopback.
//! 3. Listeners bind before Raft is bootstrapped so peers can reach this node as it votes.
//! 4. The bootstrap node of a new cluster then creates the keyring and the root token.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;
use axum::Router;
use base64::Engine;

use crate::api::{self, AppState};
use crate::barrier::{self, Barrier, RootToken};
use crate::config::Config;
use crate::raft::network::PeerClient;
use crate::raft::node::Node;
use crate::raft::rpc;
use crate::secret::crypto;
use crate::secret::keyring::Keyring;
use crate::secret::token::Token;
use crate::store::state_machine::StateMachine;
use crate::store::Db;
use crate::tls::Tls;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("master key: {0}")]
    MasterKey(String),
    #[error("root token: {0}")]
    RootToken(String),
    #[error("binding {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Node(#[from] crate::raft::node::NodeError),
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
    #[error("{0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("building the peer HTTP client: {0}")]
    Client(String),
    #[error("{0}")]
    Unsafe(String),
}

pub use crate::tls::install_crypto_provider;

const DEV_KEY_FILE: &str = "dev-master.key";

fn decode_master(text: &str, origin: &str) -> Result<Vec<u8>, ServeError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| ServeError::MasterKey(format!("{origin} is not base64: {e}")))?;
    if bytes.len() != 32 {
        return Err(ServeError::MasterKey(format!(
            "{origin} must decode to 32 bytes, not {}",
            bytes.len()
        )));
    }
    Ok(bytes)
}

/// Resolves the master key: `RAFTSAFE_MASTER_KEY`, else `master_key_file`, else — for a
/// single-node dev store only — a key generated once into the data directory.
fn master_key(config: &Config) -> Result<Vec<u8>, ServeError> {
    if let Ok(text) = std::env::var("RAFTSAFE_MASTER_KEY") {
        return decode_master(&text, "RAFTSAFE_MASTER_KEY");
    }
    if let Some(path) = &config.master_key_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ServeError::MasterKey(format!("reading {}: {e}", path.display())))?;
        return decode_master(&text, &path.display().to_string());
    }
    if config.peers.len() > 1 || config.tls.is_some() {
        return Err(ServeError::MasterKey(
            "set RAFTSAFE_MASTER_KEY or master_key_file (the same key on every node); \
             only a single-node dev store generates its own"
                .into(),
        ));
    }
    let path = config.data_dir.join(DEV_KEY_FILE);
    let text = dev_key(&config.data_dir, &path)?;
    tracing::warn!(path = %path.display(), "DEV MODE: the master key is stored next to the data it protects");
    decode_master(&text, &path.display().to_string())
}

fn dev_key(data_dir: &Path, path: &PathBuf) -> Result<String, ServeError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if path.exists() {
        return std::fs::read_to_string(path)
            .map_err(|e| ServeError::MasterKey(format!("reading {}: {e}", path.display())));
    }
    crate::store::create_private_dir(data_dir).map_err(|e| ServeError::MasterKey(e.to_string()))?;
    let key = crypto::random_key().map_err(|e| ServeError::MasterKey(e.to_string()))?;
    let text = base64::engine::general_purpose::STANDARD.encode(key);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| ServeError::MasterKey(format!("creating {}: {e}", path.display())))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| ServeError::MasterKey(format!("writing {}: {e}", path.display())))?;
    Ok(text)
}

/// The root token an operator supplied, if any: `RAFTSAFE_ROOT_TOKEN`, `root_token_file`,
/// or in dev mode `RAFTSAFE_DEV_ROOT_TOKEN`.
fn operator_root_token(config: &Config) -> Result<Option<Token>, ServeError> {
    let from = |text: &str, origin: &str| {
        Token::from_operator(text).map_err(|e| ServeError::RootToken(format!("{origin}: {e}")))
    };
    if let Ok(t) = std::env::var("RAFTSAFE_ROOT_TOKEN") {
        return from(&t, "RAFTSAFE_ROOT_TOKEN").map(Some);
    }
    if let Some(path) = &config.root_token_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ServeError::RootToken(format!("reading {}: {e}", path.display())))?;
        return from(&text, &path.display().to_string()).map(Some);
    }
    if config.tls.is_none() {
        if let Ok(t) = std::env::var("RAFTSAFE_DEV_ROOT_TOKEN") {
            return from(&t, "RAFTSAFE_DEV_ROOT_TOKEN").map(Some);
        }
    }
    Ok(None)
}

fn peer_http_client(config: &Config, tls: Option<&Tls>) -> Result<reqwest::Client, ServeError> {
    let mut b = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .connect_timeout(config.heartbeat.max(Duration::from_millis(500)))
        .pool_idle_timeout(Duration::from_secs(30));
    if let Some(tls) = tls {
        b = b.tls_backend_preconfigured(tls.peer_client.clone());
    }
    b.build().map_err(|e| ServeError::Client(e.to_string()))
}

fn bind(what: &'static str, addr: SocketAddr) -> Result<std::net::TcpListener, ServeError> {
    let l = std::net::TcpListener::bind(addr).map_err(|source| ServeError::Bind {
        what,
        addr,
        source,
    })?;
    l.set_nonblocking(true)
        .map_err(|source| ServeError::Bind { what, addr, source })?;
    Ok(l)
}

fn nodelay(tcp: &mut tokio::net::TcpStream) {
    // Small RPCs and answers: Nagle's algorithm would only add latency.
    let _ = tcp.set_nodelay(true);
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupt: shutting down"),
    }
}

type Stop = tokio::sync::watch::Receiver<bool>;

/// Serves `app` on `listener`, over TLS when `tls` is given, until `stop` turns true.
fn spawn_server(
    listener: std::net::TcpListener,
    app: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    mut stop: Stop,
) -> Result<tokio::task::JoinHandle<()>, ServeError> {
    match tls {
        None => {
            let listener = tokio::net::TcpListener::from_std(listener)
                .map_err(|e| ServeError::Client(format!("listener: {e}")))?;
            let serve = axum::serve(listener.tap_io(nodelay), app)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .into_future();
            Ok(tokio::spawn(async move {
                if let Err(e) = serve.await {
                    tracing::error!(error = %e, "server stopped");
                }
            }))
        }
        Some(config) => {
            let handle = axum_server::Handle::new();
            let server = axum_server::from_tcp_rustls(
                listener,
                axum_server::tls_rustls::RustlsConfig::from_config(config),
            )
            .map_err(|e| ServeError::Client(format!("listener: {e}")))?
            .handle(handle.clone());
            tokio::spawn(async move {
                let _ = stop.wait_for(|s| *s).await;
                handle.graceful_shutdown(Some(Duration::from_secs(5)));
            });
            Ok(tokio::spawn(async move {
                if let Err(e) = server.serve(app.into_make_service()).await {
                    tracing::error!(error = %e, "server stopped");
                }
            }))
        }
    }
}

/// Runs a node until it is told to stop.
pub async fn serve(config: Config) -> Result<(), ServeError> {
    install_crypto_provider();
    // Everything this process creates (database, snapshots, keys) is owner-only.
    // SAFETY: umask only changes this process's file-creation mask.
    unsafe {
        libc::umask(0o077);
    }
    let tls = match &config.tls {
        Some(files) => Some(Tls::load(files)?),
        None => {
            let plain = [config.api_addr, config.raft_addr];
            if let Some(addr) = plain.iter().find(|a| !a.ip().is_loopback()) {
                return Err(ServeError::Unsafe(format!(
                    "refusing to serve plain HTTP on non-loopback address {addr}: set tls_cert, tls_key and tls_ca"
                )));
            }
            tracing::warn!(
                "DEV MODE: plain HTTP on loopback only, no TLS — do not put real secrets here"
            );
            None
        }
    };

    let master = master_key(&config)?;
    let keyring = || Keyring::new(&master).map_err(|e| ServeError::MasterKey(e.to_string()));
    // Check the master key against the keyring on disk through a read-only handle: a node
    // with the wrong key must stop before it writes anything.
    if let Some(existing) = Db::open_read_only(&config.data_dir)? {
        Barrier::new(keyring()?, StateMachine::new(existing).reader())
            .verify_master_key()
            .map_err(|e| ServeError::MasterKey(format!("refusing to start: {e}")))?;
    }
    let db = Db::open(&config.data_dir)?;
    let barrier = Arc::new(Barrier::new(
        keyring()?,
        StateMachine::new(db.clone()).reader(),
    ));
    let root = operator_root_token(&config)?;

    let config = Arc::new(config);
    let api_listener = bind("the API", config.api_addr)?;
    let raft_listener = bind("the Raft listener", config.raft_addr)?;

    let peers = PeerClient::new(
        peer_http_client(&config, tls.as_ref())?,
        tls.is_some(),
        config.peer_routes.clone(),
    );
    let node = Node::start(config.clone(), peers, db).await?;

    let state = Arc::new(AppState {
        node: node.clone(),
        barrier: barrier.clone(),
        max_value_bytes: config.max_value_bytes,
    });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let raft_server = spawn_server(
        raft_listener,
        rpc::router(node.clone()),
        tls.as_ref().map(|t| t.raft.clone()),
        stop_rx.clone(),
    )?;
    let api_server = spawn_server(
        api_listener,
        api::router(state),
        tls.as_ref().map(|t| t.api.clone()),
        stop_rx,
    )?;
    tracing::info!(
        node = config.node_id,
        api = %config.api_addr,
        raft = %config.raft_addr,
        tls = tls.is_some(),
        "raftsafe node serving"
    );

    if config.bootstrap {
        let (node, barrier) = (node.clone(), barrier.clone());
        tokio::spawn(async move {
            match barrier::bootstrap(&node, &barrier, root, Duration::from_secs(300)).await {
                Ok(RootToken::Generated(token)) => {
                    // Printed once, to stdout, never logged: it cannot be shown again.
                    println!("Root token (shown once, store it now): {}", token.expose());
                    tracing::warn!("a root token was generated and printed to stdout; it will not be shown again");
                }
                Ok(RootToken::Created) => {
                    tracing::info!("root token created from the configured token")
                }
                Ok(RootToken::Existed) => {
                    tracing::info!("cluster already bootstrapped (root token exists)")
                }
                Err(e) => {
                    tracing::error!(error = %e, "bootstrapping the keyring and root token failed")
                }
            }
        });
    }

    shutdown_signal().await;
    let _ = stop_tx.send(true);
    node.shutdown().await;
    // In-flight requests get a moment to finish; then the process exits regardless.
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = api_server.await;
        let _ = raft_server.await;
    })
    .await;
    tracing::info!("stopped");
    Ok(())
}
