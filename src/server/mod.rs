//! `raftsafe serve`: wires configuration, storage, the barrier, Raft and the two listeners
//! together and runs until told to stop. Each part lives in its own module; this one only
//! decides the order.
//!
//! Start-up order matters:
//! 1. The master key is resolved ([`master_key`]), and checked against any keyring already on
//!    disk, before Raft starts: a node with the wrong key refuses to start and writes nothing.
//! 2. TLS material is loaded; without it the node is a dev server and may only bind loopback.
//! 3. Listeners are bound ([`Listeners`], by [`serve`] or by whoever calls [`run`]) before
//!    Raft starts so peers can reach this node as it votes. Each serves within the configured limits (header and idle timeouts, a cap on
//!    connections).
//! 4. The bootstrap node of a new cluster then creates the keyring and the root token
//!    ([`crate::bootstrap`]).

pub mod listener;
pub mod master_key;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::api::{self, AppState};
use crate::barrier::Barrier;
use crate::config::Config;
use crate::raft::disk::{DiskGuard, Threshold};
use crate::raft::network::PeerClient;
use crate::raft::node::Node;
use crate::raft::rpc;
use crate::raft::view::View;
use crate::raft::wire::PeerKey;
use crate::secret::keyring::{Keyring, MacPurpose};
use crate::store::state_machine::StateMachine;
use crate::store::Db;
use crate::tls::Tls;

pub use crate::tls::install_crypto_provider;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    MasterKey(#[from] master_key::MasterKeyError),
    #[error("master key: refusing to start: {0}")]
    WrongMasterKey(crate::barrier::BarrierError),
    #[error("{0}")]
    Bootstrap(#[from] crate::bootstrap::BootstrapError),
    #[error("{0}")]
    Listener(#[from] listener::ListenerError),
    #[error("{0}")]
    Node(#[from] crate::raft::node::NodeError),
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
    #[error("{0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("building the peer HTTP client: {0}")]
    PeerClient(String),
    #[error("{0}")]
    Unsafe(String),
}

fn peer_http_client(config: &Config, tls: Option<&Tls>) -> Result<reqwest::Client, ServeError> {
    let mut b = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        // Peers are on the cluster's own network: a connection that takes longer than this
        // (TCP and TLS) is treated as unreachable, and openraft backs off.
        .connect_timeout(config.heartbeat.max(Duration::from_millis(250)))
        .pool_idle_timeout(Duration::from_secs(30));
    if let Some(tls) = tls {
        b = b.tls_backend_preconfigured(tls.peer_client.clone());
    }
    b.build().map_err(|e| ServeError::PeerClient(e.to_string()))
}

/// Loads TLS, or checks that a node without it binds loopback only.
fn load_tls(config: &Config) -> Result<Option<Tls>, ServeError> {
    match &config.tls {
        Some(files) => Ok(Some(Tls::load(files)?)),
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
            Ok(None)
        }
    }
}

/// Opens the database, after checking the master key against any keyring on disk through a
/// read-only handle: a node with the wrong key must stop before it writes anything. Then
/// opens the state machine (which restores it from a snapshot if it must).
fn open_store(
    config: &Config,
    master: &[u8],
) -> Result<(Arc<Db>, StateMachine, Arc<Barrier>), ServeError> {
    let keyring = || Keyring::new(master).map_err(|e| master_key::MasterKeyError(e.to_string()));
    if let Some(existing) = Db::open_read_only(&config.data_dir)? {
        Barrier::new(keyring()?, StateMachine::read_only(existing).reader())
            .verify_master_key()
            .map_err(ServeError::WrongMasterKey)?;
    }
    let db = Db::open(&config.data_dir)?;
    let sm = StateMachine::open(db.clone())?;
    let barrier = Arc::new(Barrier::new(keyring()?, sm.reader()));
    Ok((db, sm, barrier))
}

/// The sockets a node serves on, bound before anything else starts: a test (or a supervisor
/// handing over sockets) binds them itself, so no port is ever probed and released.
pub struct Listeners {
    api: listener::Bound,
    raft: listener::Bound,
    metrics: Option<listener::Bound>,
}

impl Listeners {
    /// Binds the addresses `config` names.
    pub fn bind(config: &Config) -> Result<Listeners, ServeError> {
        Ok(Listeners {
            api: listener::bind("the API", config.api_addr)?,
            raft: listener::bind("the Raft listener", config.raft_addr)?,
            metrics: match config.metrics_addr {
                Some(addr) => Some(listener::bind("the metrics listener", addr)?),
                None => None,
            },
        })
    }

    /// Listeners already bound by the caller (the metrics listener is not served).
    pub fn from_std(
        api: std::net::TcpListener,
        raft: std::net::TcpListener,
    ) -> Result<Listeners, ServeError> {
        Ok(Listeners {
            api: listener::Bound::from_std("the API", api)?,
            raft: listener::Bound::from_std("the Raft listener", raft)?,
            metrics: None,
        })
    }
}

/// Binds the addresses of `config` and runs a node until `shutdown` completes (see
/// [`shutdown_signal`] for the binary's).
pub async fn serve(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), ServeError> {
    let listeners = Listeners::bind(&config)?;
    run(config, listeners, shutdown).await
}

/// Runs a node on `listeners` until `shutdown` completes. `config`'s own addresses are what
/// this node advertises; the listeners must be bound to them.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    install_crypto_provider();
    // Everything this process creates (database, snapshots, keys) is owner-only.
    // SAFETY: umask only changes this process's file-creation mask.
    unsafe {
        libc::umask(0o077);
    }
    let tls = load_tls(&config)?;
    let master = master_key::resolve(&config)?;
    let (db, sm, barrier) = open_store(&config, &master)?;
    // The internal listener's key: derived from the master key, so every member has it and
    // nothing else does (see raft::rpc).
    let peer_key = {
        let keyring =
            Keyring::new(&master).map_err(|e| master_key::MasterKeyError(e.to_string()))?;
        PeerKey::new(&keyring.mac(MacPurpose::Peer, b"raftsafe internal listener"))
    };
    // Every key is derived: the raw master key is wiped now (Zeroizing), not at exit.
    drop(master);
    let root = crate::bootstrap::operator_root_token(&config)?;

    let config = Arc::new(config);
    crate::metrics::install();
    let Listeners {
        api: api_listener,
        raft: raft_listener,
        metrics: metrics_listener,
    } = listeners;

    let disk = Arc::new(DiskGuard::new(
        config.node_id,
        Threshold::from_setting(config.disk_min_free_bytes),
    ));
    let peers = PeerClient::new(
        peer_http_client(&config, tls.as_ref())?,
        tls.is_some(),
        config.peer_routes.clone(),
        peer_key.clone(),
    )
    .with_disk(disk.clone());
    let node = Node::start(config.clone(), peers, disk, db.clone(), sm).await?;
    tokio::spawn(sample_metrics(node.clone(), barrier.clone(), db));

    let audit = config.audit.as_ref().map(|a| {
        Arc::new(crate::audit::AuditLog::open(
            &a.path,
            crate::audit::Limits {
                max_bytes: a.max_bytes,
                max_files: a.max_files,
                anonymous_per_second: a.anonymous_per_second,
            },
            a.fail_open,
        ))
    });
    let state = Arc::new(AppState {
        readiness: Default::default(),
        node: node.clone(),
        barrier: barrier.clone(),
        service: crate::service::Service::new(
            node.clone(),
            barrier.clone(),
            config.max_value_bytes,
        ),
        audit,
    });
    // Two stops, in order (see the end of this function): clients first, Raft last.
    let (api_stop, api_stopped) = tokio::sync::watch::channel(false);
    let (raft_stop, raft_stopped) = tokio::sync::watch::channel(false);
    let limits = listener::Limits::of(&config);
    let raft_server = raft_listener.serve(
        rpc::router(node.clone(), peer_key),
        tls.as_ref().map(|t| t.raft.clone()),
        limits,
        raft_stopped,
    )?;
    let api_server = api_listener.serve(
        api::router(state),
        tls.as_ref().map(|t| t.api.clone()),
        limits,
        api_stopped.clone(),
    )?;
    if let Some(l) = metrics_listener {
        l.serve(api::metrics_router(), None, limits, api_stopped)?;
    }
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
            crate::bootstrap::bootstrap_and_report(&node, &barrier, root).await;
        });
    }

    shutdown.await;
    // A graceful stop (a rolling restart, an upgrade) must not fail the requests in flight:
    // the API stops accepting and drains first (at most `listener::GRACE`) while this node
    // is still a full Raft member, so a write it holds commits and a read finds its
    // read-index round. Only then does the Raft core stop, and the internal listener last,
    // so the peers' calls are answered until this node stops taking part.
    let _ = api_stop.send(true);
    let _ = tokio::time::timeout(listener::GRACE + Duration::from_secs(1), api_server).await;
    node.shutdown().await;
    let _ = raft_stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(2), raft_server).await;
    tracing::info!("stopped");
    Ok(())
}

/// Publishes the gauges nobody records on the way: Raft state every second, disk usage,
/// tokens and the data key every five.
async fn sample_metrics(node: Arc<Node>, barrier: Arc<Barrier>, db: Arc<Db>) {
    use crate::metrics as m;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_leader = None;
    for n in 0u64.. {
        tick.tick().await;
        node.sample_metrics(&mut last_leader);
        if n % 5 != 0 {
            continue;
        }
        crate::metrics::upkeep();
        let (db, local) = (db.clone(), node.local());
        let key = barrier.current_key_id().ok().flatten();
        let sampled =
            crate::store::blocking(move || Ok((db.disk_usage(), local.state().tokens()?.len())))
                .await;
        if let Ok((bytes, tokens)) = sampled {
            metrics::gauge!(m::DB_SIZE_BYTES).set(bytes as f64);
            metrics::gauge!(m::TOKENS).set(tokens as f64);
        }
        metrics::gauge!(m::DATA_KEY_ID).set(key.unwrap_or(0) as f64);
    }
}

/// Completes on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
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
