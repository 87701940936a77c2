//! One raftsafe node inside the test's own process: for tests of the API itself (input
//! validation, authorization, the dialects), which need a store but not a cluster.
//!
//! Invariants:
//! - No port is probed and released: the test binds both listeners itself (port 0, so the
//!   kernel picks free ones) and hands them to `raftsafe::run`, the same function the
//!   binary runs after binding its configured addresses.
//! - It is the same node as `raftsafe serve`: a real RocksDB in a temporary directory, a
//!   one-member Raft cluster that elects itself, the bootstrap that creates the keyring and
//!   the root token [`ROOT_TOKEN`] (dev mode: plain HTTP on loopback).
//! - [`OneNode::start`] returns only once the node serves a linearizable read
//!   (`/health/ready` answers 200).
//! - Metrics are a process-wide recorder, so a test that reads `/metrics` keeps its own
//!   process (a [`super::cluster::Cluster`]); nextest runs each test in its own process anyway.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use raftsafe::client::{Client, ClientOptions, Method, Response};
use raftsafe::config::Settings;
use raftsafe::Listeners;
use serde_json::Value;

use super::cluster::ROOT_TOKEN;
use super::nodes::Nodes;
use super::wait;

/// A running in-process node; stopped (and its directory removed) when dropped.
pub struct OneNode {
    api: SocketAddr,
    client: Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// Dropped after the node has been told to stop.
    _dir: tempfile::TempDir,
}

impl OneNode {
    /// Starts a node with default settings, as `raftsafe serve` would with only the
    /// addresses and a data directory given.
    pub async fn start() -> OneNode {
        OneNode::start_with(Settings::default()).await
    }

    /// Starts a node with `settings` (their addresses, data directory, node id, peers and
    /// root token are the harness's).
    pub async fn start_with(settings: Settings) -> OneNode {
        let dir = tempfile::tempdir().expect("temporary directory");
        let api = TcpListener::bind("127.0.0.1:0").expect("bind the API listener");
        let raft = TcpListener::bind("127.0.0.1:0").expect("bind the Raft listener");
        let (api_addr, raft_addr) = (api.local_addr().unwrap(), raft.local_addr().unwrap());
        let token_file = dir.path().join("root-token");
        std::fs::write(&token_file, ROOT_TOKEN).expect("write the root token file");
        let config = Settings {
            node_id: Some(1),
            api_addr: Some(api_addr),
            raft_addr: Some(raft_addr),
            data_dir: Some(dir.path().join("data")),
            bootstrap: Some(true),
            peers: None,
            root_token_file: Some(token_file),
            ..settings
        }
        .resolve()
        .expect("a valid configuration");
        let listeners = Listeners::from_std(api, raft).expect("hand over the listeners");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(e) = raftsafe::run(config, listeners, shutdown).await {
                panic!("the in-process node failed: {e}");
            }
        });
        let client = Client::new(
            &format!("http://{api_addr}"),
            ClientOptions {
                token: Some(ROOT_TOKEN.into()),
                timeout: Some(Duration::from_secs(10)),
                ..Default::default()
            },
        )
        .expect("a client");
        let node = OneNode {
            api: api_addr,
            client,
            stop: Some(stop),
            _dir: dir,
        };
        let probe = node.client.with_timeout(Duration::from_secs(3));
        wait::until(
            Duration::from_secs(30),
            "the in-process node serves a linearizable read",
            async || match probe
                .request(Method::GET, "/api/v1/health/ready", None)
                .await
            {
                Ok(r) if r.status == 200 => Ok(()),
                Ok(r) => Err(format!("/health/ready answered {}", r.status)),
                Err(e) => Err(e.to_string()),
            },
        )
        .await;
        node
    }

    /// The API's address.
    pub fn api(&self) -> SocketAddr {
        self.api
    }

    /// A client with the root token.
    pub fn root(&self) -> Client {
        self.client.clone()
    }

    /// `PUT /secrets/{path}` with `{"data": data}`, as the root token.
    pub async fn put(&self, path: &str, data: Value) -> Response {
        self.client.put(path, &data, None).await.expect("PUT")
    }

    /// `GET /secrets/{path}` (latest version), as the root token.
    pub async fn get(&self, path: &str) -> Response {
        self.client.get(path, None).await.expect("GET")
    }
}

impl Nodes for OneNode {
    fn ids(&self) -> Vec<u64> {
        vec![1]
    }

    fn client(&self, _id: u64) -> Client {
        self.root()
    }

    fn is_running(&self, _id: u64) -> bool {
        self.stop.is_some()
    }
}

impl Drop for OneNode {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
