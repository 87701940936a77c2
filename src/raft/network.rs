//! The client side of the internal transport: one pooled HTTP client per process, used for
//! Raft RPCs (append, vote, install-snapshot), read-index requests and relayed writes.
//!
//! Invariants:
//! - Every request names its target node id; the receiver refuses a request meant for
//!   another node, so a stale or wrong address can never deliver a vote or log entries to
//!   the wrong member.
//! - Failures to connect are reported to openraft as `Unreachable` (it backs off); other
//!   transport failures as `Network`. The caller decides whether a failed call may have
//!   taken effect.
//! - Bodies are encoded with [`crate::codec`] only.
//! - Append RPCs carry disk reports in a header ([`super::disk`]): the leader sends every
//!   report it knows and records the one each follower answers with. The body is untouched.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{de::DeserializeOwned, Serialize};

use super::disk::{self, DiskGuard};
use super::wire::{Envelope, ROUTE_APPEND, ROUTE_SNAPSHOT, ROUTE_VOTE, TARGET_MISMATCH};
use super::{NodeId, NodeInfo, TypeConfig};
use crate::codec;

/// Why a call to a peer failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Nothing was sent: the peer could not be connected to.
    #[error("node {target} at {addr} unreachable: {message}")]
    Unreachable {
        target: NodeId,
        addr: String,
        message: String,
    },
    /// The request may or may not have been delivered (timeout, reset, bad answer).
    #[error("call to node {target} at {addr} failed: {message}")]
    Failed {
        target: NodeId,
        addr: String,
        message: String,
    },
}

/// The shared client. Cheap to clone.
#[derive(Clone)]
pub struct PeerClient {
    http: reqwest::Client,
    scheme: &'static str,
    /// Local dial overrides by node id.
    routes: Arc<BTreeMap<NodeId, String>>,
    /// Sent with every call: the members' shared key ([`super::wire::PeerKey`]).
    key: super::wire::PeerKey,
    /// This node's NOSPACE alarm table, exchanged on append RPCs (none: not exchanged).
    disk: Option<Arc<DiskGuard>>,
    /// When each peer last answered an append RPC (the leader's view of its followers).
    contacts: Arc<Contacts>,
}

/// When each peer last answered an append RPC successfully, as this node (when it leads)
/// saw it: the "last contact" of Vault's autopilot, used to judge a membership change. Also
/// since when it has answered without a gap longer than [`CONTACT_WINDOW`]: how long it has
/// been *stable* (autopilot's `stable_since`), which a new voter must be before it is
/// promoted.
#[derive(Default)]
pub struct Contacts(std::sync::Mutex<BTreeMap<NodeId, Contact>>);

#[derive(Clone, Copy)]
struct Contact {
    last: std::time::Instant,
    streak_since: std::time::Instant,
}

/// A follower that answered an append within this long is in contact (autopilot's
/// `last_contact_threshold` is 10 s; the leader heartbeats every 100 ms by default, so a
/// healthy follower is never near it). A longer silence breaks its stable streak.
pub const CONTACT_WINDOW: Duration = Duration::from_secs(2);

impl Contacts {
    fn heard(&self, id: NodeId) {
        let now = std::time::Instant::now();
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let streak_since = match m.get(&id) {
            Some(c) if now.duration_since(c.last) <= CONTACT_WINDOW => c.streak_since,
            _ => now,
        };
        m.insert(
            id,
            Contact {
                last: now,
                streak_since,
            },
        );
    }

    /// How long ago node `id` last answered, if it ever did.
    pub fn since(&self, id: NodeId) -> Option<Duration> {
        let m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.get(&id).map(|c| c.last.elapsed())
    }

    /// How long node `id` has answered without a gap longer than [`CONTACT_WINDOW`] (`None`
    /// when it has not answered within that window now).
    pub fn stable_for(&self, id: NodeId) -> Option<Duration> {
        let m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.get(&id)
            .filter(|c| c.last.elapsed() <= CONTACT_WINDOW)
            .map(|c| c.streak_since.elapsed())
    }
}

impl PeerClient {
    pub fn new(
        http: reqwest::Client,
        tls: bool,
        routes: BTreeMap<NodeId, String>,
        key: super::wire::PeerKey,
    ) -> Self {
        PeerClient {
            http,
            scheme: if tls { "https" } else { "http" },
            routes: Arc::new(routes),
            key,
            disk: None,
            contacts: Arc::default(),
        }
    }

    /// When each peer last answered an append RPC.
    pub fn contacts(&self) -> &Contacts {
        &self.contacts
    }

    /// Exchanges disk reports with the peers on append RPCs ([`super::disk`]).
    pub fn with_disk(mut self, disk: Arc<DiskGuard>) -> Self {
        self.disk = Some(disk);
        self
    }

    /// The address this node dials to reach `target`.
    pub fn route(&self, target: NodeId, advertised: &str) -> String {
        self.routes
            .get(&target)
            .cloned()
            .unwrap_or_else(|| advertised.to_string())
    }

    /// POSTs `body` to `path` on `target` and decodes the answer.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        target: NodeId,
        node: &NodeInfo,
        path: &str,
        body: &Req,
        timeout: Duration,
    ) -> Result<Resp, CallError> {
        self.call_with_disk(target, node, path, body, timeout, None)
            .await
            .map(|(resp, _)| resp)
    }

    /// [`PeerClient::call`], sending `disk` in the disk header and returning the answer's.
    async fn call_with_disk<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        target: NodeId,
        node: &NodeInfo,
        path: &str,
        body: &Req,
        timeout: Duration,
        disk: Option<String>,
    ) -> Result<(Resp, Option<String>), CallError> {
        let addr = self.route(target, &node.raft_addr);
        let url = format!("{}://{}{}", self.scheme, addr, path);
        let envelope = Envelope { target, body };
        let failed = |message: String| CallError::Failed {
            target,
            addr: addr.clone(),
            message,
        };
        let mut request = self
            .http
            .post(&url)
            .timeout(timeout)
            .header(super::wire::PEER_KEY_HEADER, self.key.as_str());
        if let Some(disk) = disk {
            request = request.header(disk::HEADER, disk);
        }
        let resp = request
            .body(codec::encode(&envelope))
            .send()
            .await
            .map_err(|e| {
                if e.is_connect() {
                    CallError::Unreachable {
                        target,
                        addr: addr.clone(),
                        message: e.to_string(),
                    }
                } else {
                    failed(error_chain(&e))
                }
            })?;
        let status = resp.status();
        let disk = resp
            .headers()
            .get(disk::HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = resp.bytes().await.map_err(|e| failed(error_chain(&e)))?;
        if status.as_u16() == TARGET_MISMATCH {
            // Nothing was done: the listener is some other node.
            return Err(CallError::Unreachable {
                target,
                addr: addr.clone(),
                message: String::from_utf8_lossy(&bytes).into_owned(),
            });
        }
        if !status.is_success() {
            return Err(failed(format!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(&bytes)
            )));
        }
        let answer =
            codec::decode(&bytes).map_err(|e| failed(format!("bad response body: {e}")))?;
        Ok((answer, disk))
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

/// Creates per-peer network handles for openraft; each is a clone of the shared client.
#[derive(Clone)]
pub struct NetworkFactory {
    pub client: PeerClient,
}

pub struct PeerNetwork {
    client: PeerClient,
    target: NodeId,
    node: NodeInfo,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerNetwork;

    async fn new_client(&mut self, target: NodeId, node: &NodeInfo) -> PeerNetwork {
        PeerNetwork {
            client: self.client.clone(),
            target,
            node: node.clone(),
        }
    }
}

type RpcErr<E = openraft::error::Infallible> = RPCError<NodeId, NodeInfo, RaftError<NodeId, E>>;

impl PeerNetwork {
    async fn rpc<Req, Resp, E>(
        &self,
        path: &str,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, RpcErr<E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let answer: Result<Resp, RaftError<NodeId, E>> = self
            .client
            .call(self.target, &self.node, path, req, timeout)
            .await
            .map_err(|e| rpc_error(&e))?;
        answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

/// A transport failure as openraft wants it: unreachable (it backs off) or a network error.
fn rpc_error<E: std::error::Error>(e: &CallError) -> RpcErr<E> {
    match e {
        CallError::Unreachable { .. } => RPCError::Unreachable(Unreachable::new(e)),
        CallError::Failed { .. } => RPCError::Network(NetworkError::new(e)),
    }
}

impl RaftNetwork<TypeConfig> for PeerNetwork {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr> {
        let began = std::time::Instant::now();
        // The leader's table out, the follower's own report back (see `super::disk`).
        let table = self.client.disk.as_ref().map(|d| disk::encode(&d.table()));
        let called: Result<(Result<_, RaftError<NodeId>>, _), CallError> = self
            .client
            .call_with_disk(
                self.target,
                &self.node,
                ROUTE_APPEND,
                &rpc,
                option.soft_ttl(),
                table,
            )
            .await;
        metrics::histogram!(crate::metrics::APPEND_RPC_DURATION, "follower" => self.target.to_string())
            .record(began.elapsed().as_secs_f64());
        let (answer, heard) = match called {
            Ok(x) => x,
            Err(e) => return Err(rpc_error(&e)),
        };
        if answer.is_ok() {
            self.client.contacts.heard(self.target);
        }
        if let (Some(guard), Some(heard)) = (&self.client.disk, heard) {
            if let Some(report) = disk::decode(&heard).get(&self.target) {
                guard.heard_from(self.target, *report);
            }
        }
        answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<InstallSnapshotError>> {
        self.rpc(ROUTE_SNAPSHOT, &rpc, option.soft_ttl()).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcErr> {
        self.rpc(ROUTE_VOTE, &rpc, option.soft_ttl()).await
    }
}
