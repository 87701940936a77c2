//! `raftsafe serve`: wires configuration, storage, Raft and the two listeners together and
//! runs until SIGTERM or Ctrl-C.
//!
//! Start-up order matters: the master key is resolved before any storage is touched (a node
//! without its key must not start), and listeners bind before Raft is bootstrapped so that
//! peers can reach this node as soon as it votes.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;
use base64::Engine;

use crate::api::{self, AppState};
use crate::config::Config;
use crate::raft::network::PeerClient;
use crate::raft::node::Node;
use crate::raft::rpc;
use crate::secret::crypto::{self, SealingKey};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("master key: {0}")]
    MasterKey(String),
    #[error("binding {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Node(#[from] crate::raft::node::NodeError),
    #[error("building the peer HTTP client: {0}")]
    Client(String),
    #[error("{0}")]
    Unsafe(String),
}

/// Installs the one TLS crypto provider of the process (ring). Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

const DEV_KEY_FILE: &str = "dev-master.key";

/// Resolves the master key: `RAFTSAFE_MASTER_KEY`, else `master_key_file`, else — for a
/// single-node dev store only — a key generated once into the data directory.
fn master_key(config: &Config) -> Result<SealingKey, ServeError> {
    let decode = |text: &str, origin: &str| -> Result<SealingKey, ServeError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|e| ServeError::MasterKey(format!("{origin} is not base64: {e}")))?;
        SealingKey::new(1, &bytes).map_err(|e| ServeError::MasterKey(format!("{origin}: {e}")))
    };
    if let Ok(text) = std::env::var("RAFTSAFE_MASTER_KEY") {
        return decode(&text, "RAFTSAFE_MASTER_KEY");
    }
    if let Some(path) = &config.master_key_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ServeError::MasterKey(format!("reading {}: {e}", path.display())))?;
        return decode(&text, &path.display().to_string());
    }
    if config.peers.len() > 1 {
        return Err(ServeError::MasterKey(
            "a multi-node cluster needs the same key on every node: set RAFTSAFE_MASTER_KEY or master_key_file".into(),
        ));
    }
    let path = config.data_dir.join(DEV_KEY_FILE);
    let text = dev_key(&config.data_dir, &path)?;
    tracing::warn!(path = %path.display(), "DEV MODE: the master key is stored next to the data it protects");
    decode(&text, &path.display().to_string())
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

fn peer_http_client(config: &Config) -> Result<reqwest::Client, ServeError> {
    reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .connect_timeout(config.heartbeat.max(Duration::from_millis(500)))
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| ServeError::Client(e.to_string()))
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<tokio::net::TcpListener, ServeError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { what, addr, source })
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

/// Runs a node until it is told to stop.
pub async fn serve(config: Config) -> Result<(), ServeError> {
    install_crypto_provider();
    // Everything this process creates (database, snapshots, keys) is owner-only.
    // SAFETY: umask only changes this process's file-creation mask.
    unsafe {
        libc::umask(0o077);
    }
    let plain = [config.api_addr, config.raft_addr];
    if let Some(addr) = plain.iter().find(|a| !a.ip().is_loopback()) {
        return Err(ServeError::Unsafe(format!(
            "refusing to serve plain HTTP on non-loopback address {addr}: TLS is required beyond loopback"
        )));
    }
    tracing::warn!(
        "DEV MODE: plain HTTP on loopback, no TLS, no tokens — do not put real secrets here"
    );

    let key = master_key(&config)?;
    let config = Arc::new(config);
    let api_listener = bind("the API", config.api_addr).await?;
    let raft_listener = bind("the Raft listener", config.raft_addr).await?;

    let peers = PeerClient::new(
        peer_http_client(&config)?,
        false,
        config.peer_routes.clone(),
    );
    let node = Node::start(config.clone(), peers).await?;

    let raft_app = rpc::router(node.clone());
    let state = Arc::new(AppState {
        node: node.clone(),
        key,
        max_value_bytes: config.max_value_bytes,
    });
    let api_app = api::router(state);

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let wait_stop = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let raft_server = tokio::spawn(
        axum::serve(raft_listener.tap_io(nodelay), raft_app)
            .with_graceful_shutdown(wait_stop(stop_rx.clone()))
            .into_future(),
    );
    let api_server = tokio::spawn(
        axum::serve(api_listener.tap_io(nodelay), api_app)
            .with_graceful_shutdown(wait_stop(stop_rx))
            .into_future(),
    );
    tracing::info!(
        node = config.node_id,
        api = %config.api_addr,
        raft = %config.raft_addr,
        "raftsafe node serving"
    );

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
