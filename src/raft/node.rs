//! A raftsafe node: its openraft instance, its stores, and the two operations the API is
//! built on — a linearizable read-index round and a write that reaches the leader from anywhere.
//!
//! Invariants:
//! - Reads: [`Node::linearize`] returns only after this node has applied everything the
//!   leader had committed when the read began, the leader having confirmed with a quorum that
//!   it still leads (read-index). The API never reads the state machine without it. A node
//!   that cannot get there within the request timeout answers `Unavailable`, never stale data.
//!   Concurrent reads share rounds ([`super::coalesce`]): on a follower, one read-index call
//!   to the leader serves every read that arrived before it was sent; on the leader, one
//!   quorum confirmation serves every read (local or from followers) that arrived before it
//!   was sent. A read is never answered by a round that started before it arrived.
//! - Writes: only the leader turns [`Op`]s into log entries, many to an entry
//!   ([`super::batch`]), stamping the time. Any other node relays an op over the internal
//!   transport, many to a request ([`super::relay`]), at most [`MAX_HOPS`] times. Retries (after a leader change or a lost
//!   connection) reuse the request id, and the state machine deduplicates by it, so a write
//!   is applied at most once however often it is retried.
//! - Every wait is bounded by the configured request timeout.
//! - Disk space: the node measures its own free space every second ([`super::disk`]) and
//!   knows its peers' alarms from the append RPCs; [`Node::space_alarm`] says whether a voter's
//!   alarm is raised. The service refuses the writes that must wait (507) before proposing
//!   them; the leader only refuses such a write relayed by a node that did not know yet
//!   (`Unavailable`: the relay's error type has no other way to say it).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{CheckIsLeaderError, ClientWriteError, InitializeError, RaftError};
use openraft::{ChangeMembers, SnapshotPolicy};

use super::batch::{BatchError, Batcher};
use super::coalesce::Coalescer;
use super::disk::{self, DiskGuard};
use super::network::{CallError, NetworkFactory, PeerClient, CONTACT_WINDOW};
use super::relay::Relay;
use super::snapshots;
use super::view::{Linearized, Local};
pub use super::wire::{NodeError, NodeStatus};
use super::wire::{
    RelayOp, RelayReply, RelayRequest, RelayedWrites, ROUTE_READ_INDEX, ROUTE_RELAY, ROUTE_STATUS,
};
use super::{LogId, NodeId, NodeInfo, Raft, StoredMembership};
use crate::config::Config;
use crate::secret::{CommandResult, Op};
use crate::store::state_machine::Reader;
use crate::store::{Db, LogStore, StateMachine};

/// Most relays a relayed request may take (follower → leader, plus one leader change).
pub const MAX_HOPS: u8 = 2;

/// Most log entries in one append RPC. openraft 0.9 gives every append RPC the heartbeat
/// interval (100 ms by default) to complete, and counts entries, not bytes. At 64 entries of
/// up to 1 MiB, a follower that fell behind under 64 KiB writes was sent RPCs it could not
/// take in within that time, again and again: leader changes and 5 s stalls
/// (BENCHMARKS.md). With entries closed at `batch::MAX_BYTES`, an RPC now carries about
/// 2 MiB at most, plus one large value per entry.
pub const MAX_PAYLOAD_ENTRIES: u64 = 8;

/// Pause between attempts while a leader is being elected: short, since an election now
/// takes a few hundred milliseconds and each attempt only reads local metrics.
const RETRY_PAUSE: Duration = Duration::from_millis(20);

/// A running node. The API reaches Raft only through its methods.
pub struct Node {
    id: NodeId,
    /// `pub(super)`: the Raft listener (`rpc.rs`) hands inbound RPCs straight to openraft.
    pub(super) raft: Raft,
    reader: Reader,
    peers: PeerClient,
    config: Arc<Config>,
    /// Group commit of writes while this node leads.
    batcher: Batcher,
    /// Batched relay of writes to the leader while this node follows.
    relay: Relay,
    /// Quorum confirmations while this node leads.
    leader_reads: Coalescer<Option<LogId>, NodeError>,
    /// Read-index calls to the leader while this node follows.
    remote_reads: Coalescer<Option<LogId>, NodeError>,
    /// When this node last knew a leader (ms since the epoch), for failing fast.
    leader_seen_ms: Arc<AtomicU64>,
    /// The NOSPACE alarms: this node's own and what it heard of the others'.
    disk: Arc<DiskGuard>,
    /// Held by the membership change in progress (see [`Node::change_membership`]).
    membership_lock: Arc<tokio::sync::Mutex<()>>,
}

/// What a membership change's own task ends with (`Err(())` around it: still running when
/// the request's time ran out).
type MembershipOutcome = Result<RelayReply, RaftError<NodeId, ClientWriteError<NodeId, NodeInfo>>>;

/// A new member is promoted to voter only once it has caught up and then answered every
/// append for this long (autopilot's `server_stabilization_time`, 10 s there): a node that
/// crashes or flaps right after it starts never gets a vote, so it cannot cost a quorum.
/// An add request waits this long on top of the request timeout; a learner not stable by
/// then stays a learner, and the add answers 503 asking for a retry.
pub const STABILIZATION: Duration = Duration::from_secs(2);
/// A follower whose log is within this many entries of the leader's is caught up (the same
/// rule as `bao operator raft autopilot state`'s health).
const HEALTHY_LAG: u64 = 1_000;

/// A read round was dropped without an answer (the node is shutting down).
fn read_aborted() -> NodeError {
    NodeError::Unavailable("the read-index round was abandoned".into())
}

enum Attempt<T> {
    Done(Result<T, NodeError>),
    Retry(String),
}

fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

impl Node {
    /// Opens the stores, starts Raft and, if this node is the bootstrap node of a cluster
    /// that was never initialized, initializes it with the configured members.
    pub async fn start(
        config: Arc<Config>,
        peers: PeerClient,
        disk: Arc<DiskGuard>,
        db: Arc<Db>,
        sm: StateMachine,
    ) -> Result<Arc<Node>, NodeError> {
        let log = LogStore::new(db);
        let reader = sm.reader();
        let raft_config = openraft::Config {
            cluster_name: "raftsafe".into(),
            heartbeat_interval: config.heartbeat.as_millis() as u64,
            election_timeout_min: config.election_min.as_millis() as u64,
            election_timeout_max: config.election_max.as_millis() as u64,
            install_snapshot_timeout: config.snapshot_timeout.as_millis() as u64,
            max_payload_entries: MAX_PAYLOAD_ENTRIES,
            // Snapshots are timed by `super::snapshots`, which also weighs their cost.
            snapshot_policy: SnapshotPolicy::Never,
            max_in_snapshot_log_to_keep: config.keep_logs,
            replication_lag_threshold: config.snapshot_every.max(config.keep_logs),
            ..Default::default()
        }
        .validate()
        .map_err(|e| NodeError::Internal(format!("raft config: {e}")))?;
        let network = NetworkFactory {
            client: peers.clone(),
        };
        let raft = Raft::new(config.node_id, Arc::new(raft_config), network, log, sm)
            .await
            .map_err(|e| NodeError::Internal(format!("starting raft: {e}")))?;
        let batcher = Batcher::start(raft.clone(), config.request_timeout);
        let relay = Relay::start(peers.clone(), config.request_timeout);
        let leader_seen_ms = Arc::new(AtomicU64::new(crate::time::now_ms()));
        tokio::spawn(watch_leader(raft.clone(), leader_seen_ms.clone()));
        tokio::spawn(snapshots::run(
            raft.clone(),
            config.node_id,
            config.snapshot_every,
        ));
        tokio::spawn(disk::watch(
            disk.clone(),
            config.data_dir.clone(),
            crate::store::snapshot::current_path(&config.data_dir.join("snapshots")),
            config.max_value_bytes as u64,
        ));
        let node = Arc::new(Node {
            id: config.node_id,
            raft,
            reader,
            peers,
            config,
            batcher,
            relay,
            leader_reads: Coalescer::default(),
            remote_reads: Coalescer::default(),
            leader_seen_ms,
            disk,
            membership_lock: Arc::default(),
        });
        tokio::spawn(finish_joint_configurations(
            Arc::downgrade(&node),
            node.reader.clone(),
            node.membership_lock.clone(),
        ));
        node.bootstrap_if_asked().await?;
        Ok(node)
    }

    async fn bootstrap_if_asked(&self) -> Result<(), NodeError> {
        if !self.config.bootstrap {
            return Ok(());
        }
        let initialized = self
            .raft
            .is_initialized()
            .await
            .map_err(|e| NodeError::Internal(format!("raft stopped: {e}")))?;
        if initialized {
            tracing::info!("cluster state found on disk; not bootstrapping again");
            return Ok(());
        }
        tracing::info!(members = ?self.config.peers.keys().collect::<Vec<_>>(), "bootstrapping a new cluster");
        match self.raft.initialize(self.config.peers.clone()).await {
            Ok(()) => Ok(()),
            // Another path initialized it first (e.g. a vote arrived): nothing to do.
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(NodeError::Internal(format!(
                "initializing the cluster: {e}"
            ))),
        }
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    /// This node's state machine as it is, which may lag the leader (see [`super::view`]);
    /// [`Node::linearize`] gives the view a current read needs.
    pub fn local(&self) -> Local {
        Local::new(self.reader.clone())
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The NOSPACE alarms as this node knows them ([`super::disk`]).
    pub fn disk(&self) -> &DiskGuard {
        &self.disk
    }

    /// A voter whose NOSPACE alarm is raised (this node first), as this node knows: while
    /// there is one, writes that add data must wait. The leader hears every follower on each
    /// heartbeat; a follower hears them from the leader.
    pub fn space_alarm(&self) -> Option<(NodeId, disk::Report)> {
        let voters: Vec<NodeId> = self
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .collect();
        self.disk.raised_among(voters)
    }

    /// Builds a snapshot on this node now (which also lets it purge its log).
    pub async fn trigger_snapshot(&self) -> Result<(), NodeError> {
        self.raft
            .trigger()
            .snapshot()
            .await
            .map_err(|e| NodeError::Internal(format!("triggering a snapshot: {e}")))
    }

    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
    }

    fn member(&self, id: NodeId) -> Option<NodeInfo> {
        // Clone out at once: holding a metrics borrow blocks openraft's updates.
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .get_node(&id)
            .cloned()
    }

    /// Retries `attempt` until it is done or the request timeout passes.
    async fn with_retries<T, F, Fut>(
        &self,
        deadline: Instant,
        mut attempt: F,
    ) -> Result<T, NodeError>
    where
        F: FnMut(Instant) -> Fut,
        Fut: std::future::Future<Output = Attempt<T>>,
    {
        loop {
            if let Some(why) = self.cut_off() {
                metrics::counter!(crate::metrics::FAIL_FAST).increment(1);
                return Err(why);
            }
            match attempt(deadline).await {
                Attempt::Done(result) => return result,
                Attempt::Retry(why) => {
                    if remaining(deadline) <= RETRY_PAUSE {
                        return Err(NodeError::Unavailable(format!(
                            "{why} (gave up after {} ms)",
                            self.config.request_timeout.as_millis()
                        )));
                    }
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
            }
        }
    }

    /// Why this node cannot serve at all right now, if it knows: its Raft core has stopped
    /// on a fatal error (e.g. a node that lost its data and came back under its old id while
    /// still a member — see README "Replacing a node"), a leader that has heard from no
    /// quorum for longer than the election timeout (it is cut off; the others may have
    /// elected a new leader), or a node that has known no leader for that long. Such a node
    /// answers at once instead of making every client wait out the request timeout.
    fn cut_off(&self) -> Option<NodeError> {
        let limit = self.config.election_max.as_millis() as u64;
        let m = self.raft.metrics();
        let m = m.borrow();
        match &m.running_state {
            Err(openraft::error::Fatal::Stopped) => return Some(self.stopping()),
            Err(fatal) => {
                return Some(NodeError::Unavailable(format!(
                    "this node's Raft core has stopped ({fatal}); see its log"
                )))
            }
            Ok(()) => {}
        }
        if m.state == openraft::ServerState::Leader {
            // `None` right after an election (no acknowledgement yet): not known to be cut off.
            return m
                .millis_since_quorum_ack
                .filter(|ms| *ms > limit)
                .map(|ms| {
                    NodeError::Unavailable(format!(
                        "this leader has not heard from a quorum for {ms} ms"
                    ))
                });
        }
        if m.current_leader.is_some() {
            return None;
        }
        let since =
            crate::time::now_ms().saturating_sub(self.leader_seen_ms.load(Ordering::Relaxed));
        (since > limit).then(|| NodeError::Unavailable(format!("no leader known for {since} ms")))
    }

    // ----- reads -----

    /// The read-index round: see the module doc. The view it returns is the only way to the
    /// state a linearizable read needs.
    pub async fn linearize(&self) -> Result<Linearized, NodeError> {
        #[cfg(feature = "stale-reads-for-testing")]
        if self.raft.current_leader().await != Some(self.id) {
            return Ok(Linearized::new(self.reader.clone()));
        }
        let deadline = Instant::now() + self.config.request_timeout;
        let read_log_id = self
            .with_retries(deadline, |deadline| self.read_index_attempt(deadline))
            .await?;
        if let Some(index) = read_log_id.map(|l| l.index) {
            self.raft
                .wait(Some(remaining(deadline)))
                .applied_index_at_least(Some(index), "linearizable read")
                .await
                .map_err(|_| {
                    NodeError::Unavailable(format!(
                        "could not apply up to the read index {index} in time"
                    ))
                })?;
        }
        Ok(Linearized::new(self.reader.clone()))
    }

    async fn read_index_attempt(&self, deadline: Instant) -> Attempt<Option<LogId>> {
        let Some(leader) = self.raft.current_leader().await else {
            return Attempt::Retry("no leader is known".into());
        };
        let answer = if leader == self.id {
            self.leader_read_index().await
        } else {
            let round = {
                let (raft, peers, me) = (self.raft.clone(), self.peers.clone(), self.id);
                let timeout = self.config.request_timeout;
                move || remote_read_index(raft.clone(), peers.clone(), me, timeout)
            };
            let call = self.remote_reads.call(round, read_aborted());
            tokio::time::timeout(remaining(deadline), call)
                .await
                .unwrap_or_else(|_| Err(NodeError::Unavailable("read index timed out".into())))
        };
        match answer {
            Ok(id) => Attempt::Done(Ok(id)),
            Err(NodeError::Unavailable(why)) => Attempt::Retry(why),
            Err(e) => Attempt::Done(Err(e)),
        }
    }

    /// On the leader: the log id a read must wait for, after confirming leadership with a
    /// quorum (shared with every read that arrived before the confirmation was sent). Fails
    /// on any other node.
    pub async fn leader_read_index(&self) -> Result<Option<LogId>, NodeError> {
        let round = {
            let (raft, me, timeout) = (self.raft.clone(), self.id, self.config.request_timeout);
            move || confirm_leadership(raft.clone(), me, timeout)
        };
        self.leader_reads.call(round, read_aborted()).await
    }

    // ----- writes and cluster changes -----

    /// Commits a write through the leader and returns the state machine's result.
    pub async fn write(&self, op: Op) -> Result<CommandResult, NodeError> {
        match self.execute(RelayOp::Write(op), 0).await? {
            RelayReply::Written(r) => Ok(r),
            RelayReply::Done => Err(NodeError::Internal("unexpected reply to a write".into())),
        }
    }

    pub async fn add_member(&self, id: NodeId, node: NodeInfo) -> Result<(), NodeError> {
        self.execute(RelayOp::AddMember { id, node }, 0)
            .await
            .map(|_| ())
    }

    pub async fn remove_member(&self, id: NodeId) -> Result<(), NodeError> {
        self.execute(RelayOp::RemoveMember { id }, 0)
            .await
            .map(|_| ())
    }

    /// Entry point for requests relayed by other nodes.
    pub async fn handle_relayed(&self, req: RelayRequest) -> Result<RelayReply, NodeError> {
        self.execute(req.op, req.hops).await
    }

    /// Entry point for writes relayed together by another node: each is executed as if relayed
    /// alone (so they join this leader's next log entry together), answered in order.
    pub async fn handle_relayed_writes(
        &self,
        req: RelayedWrites,
    ) -> Vec<Result<CommandResult, NodeError>> {
        let hops = req.hops;
        let each = req.ops.into_iter().map(|op| async move {
            match self.execute(RelayOp::Write(op), hops).await? {
                RelayReply::Written(r) => Ok(r),
                RelayReply::Done => Err(NodeError::Internal("unexpected reply to a write".into())),
            }
        });
        futures::future::join_all(each).await
    }

    async fn execute(&self, op: RelayOp, hops: u8) -> Result<RelayReply, NodeError> {
        // Adding a member waits for the new node to be stable ([`STABILIZATION`]) on top of
        // the usual time, on every node the request passes through.
        let patience = match op {
            RelayOp::AddMember { .. } => self.config.request_timeout + STABILIZATION,
            _ => self.config.request_timeout,
        };
        let op = Arc::new(op);
        let deadline = Instant::now() + patience;
        self.with_retries(deadline, |deadline| {
            let op = op.clone();
            async move { self.execute_attempt(&op, hops, deadline).await }
        })
        .await
    }

    async fn execute_attempt(
        &self,
        op: &RelayOp,
        hops: u8,
        deadline: Instant,
    ) -> Attempt<RelayReply> {
        let Some(leader) = self.raft.current_leader().await else {
            return Attempt::Retry("no leader is known".into());
        };
        if leader == self.id {
            // The service refused these where the client called, if that node knew of the
            // alarm; one relayed by a node that did not know yet stops here (see `disk`).
            if let (true, RelayOp::Write(write)) = (hops > 0, op) {
                if let Some((id, report)) = self.space_alarm() {
                    if !disk::fits_a_full_disk(&write.command) {
                        return Attempt::Done(Err(NodeError::Unavailable(report.detail(id))));
                    }
                }
            }
            return self.execute_on_leader(op, deadline).await;
        }
        if hops >= MAX_HOPS {
            return Attempt::Retry(format!("not relaying further after {hops} hops"));
        }
        let Some(info) = self.member(leader) else {
            return Attempt::Retry(format!("leader {leader} is not in the membership"));
        };
        metrics::counter!(crate::metrics::RELAYED).increment(1);
        if let RelayOp::Write(write) = op {
            let relayed = self.relay.send(leader, info, hops + 1, write.clone());
            return match tokio::time::timeout(remaining(deadline), relayed).await {
                // The leader is shutting down: the next one takes the write (same request id).
                Ok(Ok(Err(NodeError::Stopping(why)))) => Attempt::Retry(why),
                Ok(Ok(result)) => Attempt::Done(result.map(RelayReply::Written)),
                // Whether or not it reached the leader, retrying is safe: writes are
                // deduplicated by request id.
                Ok(Err(why)) => {
                    metrics::counter!(crate::metrics::RELAY_FAILURES).increment(1);
                    Attempt::Retry(why)
                }
                Err(_) => Attempt::Retry("the relayed write was not answered in time".into()),
            };
        }
        let relayed = RelayRequest {
            hops: hops + 1,
            op: op.clone(),
        };
        let answer: Result<Result<RelayReply, NodeError>, CallError> = self
            .peers
            .call(leader, &info, ROUTE_RELAY, &relayed, remaining(deadline))
            .await;
        if answer.is_err() {
            metrics::counter!(crate::metrics::RELAY_FAILURES).increment(1);
        }
        match answer {
            Ok(Err(NodeError::Stopping(why))) => Attempt::Retry(why),
            Ok(result) => Attempt::Done(result),
            // Whether or not it reached the leader, retrying is safe: writes are deduplicated
            // by request id and membership changes are idempotent.
            Err(e) => Attempt::Retry(e.to_string()),
        }
    }

    // openraft's error types are large; they live only for the duration of this match.
    #[allow(clippy::result_large_err)]
    async fn execute_on_leader(&self, op: &RelayOp, deadline: Instant) -> Attempt<RelayReply> {
        let left = remaining(deadline);
        let outcome = match op {
            RelayOp::Write(op) => {
                let submitted = self.batcher.submit(op.clone());
                return match tokio::time::timeout(left, submitted).await {
                    Ok(Ok(result)) => Attempt::Done(Ok(RelayReply::Written(result))),
                    Ok(Err(BatchError::NotLeader(why))) => Attempt::Retry(why),
                    Ok(Err(BatchError::Stopped)) => Attempt::Done(Err(self.stopping())),
                    Ok(Err(BatchError::Fatal(why))) => Attempt::Done(Err(NodeError::Internal(why))),
                    Ok(Err(BatchError::Timeout)) | Err(_) => {
                        Attempt::Done(Err(NodeError::Unavailable(
                            "not committed within the request timeout; it may still take effect"
                                .into(),
                        )))
                    }
                };
            }
            RelayOp::AddMember { id, node } => {
                let (raft, id) = (self.raft.clone(), *id);
                // Already a voter of the committed, settled configuration (a retry).
                if settled(&raft, self.reader.clone())
                    .await
                    .is_some_and(|m| m.voter_ids().any(|v| v == id))
                {
                    return Attempt::Done(Ok(RelayReply::Done));
                }
                // A learner first, caught up (idempotent: a retry finds it there).
                let (learner, node) = (raft.clone(), node.clone());
                let added = self
                    .change_membership(left, async move {
                        learner
                            .add_learner(id, node, true)
                            .await
                            .map(|_| RelayReply::Done)
                    })
                    .await;
                match self.membership_attempt(added) {
                    Attempt::Done(Ok(_)) => {}
                    other => return other,
                }
                // Then stable for a while, outside the membership lock: a learner that never
                // stabilizes holds up no other change (its removal above all).
                if let Err(so_far) = wait_until_stable(&self.peers, id, deadline).await {
                    return Attempt::Done(Err(NodeError::Unavailable(format!(
                        "node {id} is a caught-up learner, and becomes a voter once it has \
                         answered every append for {} s (so far: {:.1} s); retry the add",
                        STABILIZATION.as_secs(),
                        so_far.as_secs_f64()
                    ))));
                }
                let promoted = self
                    .change_membership(remaining(deadline), async move {
                        let voters = BTreeSet::from([id]);
                        raft.change_membership(ChangeMembers::AddVoterIds(voters), false)
                            .await
                            .map(|_| RelayReply::Done)
                    })
                    .await;
                return self.membership_attempt(promoted);
            }
            RelayOp::RemoveMember { id } => {
                if let Some(why) = self.removal_refused(*id) {
                    return Attempt::Done(Err(NodeError::Rejected(why)));
                }
                let (raft, reader, id) = (self.raft.clone(), self.reader.clone(), *id);
                self.change_membership(left, async move {
                    // Already gone from the committed, settled configuration (a retry).
                    if settled(&raft, reader)
                        .await
                        .is_some_and(|m| m.get_node(&id).is_none())
                    {
                        return Ok(RelayReply::Done);
                    }
                    let voters = BTreeSet::from([id]);
                    raft.change_membership(ChangeMembers::RemoveVoters(voters), false)
                        .await
                        .map(|_| RelayReply::Done)
                })
                .await
            }
        };
        self.membership_attempt(outcome)
    }

    /// A membership change's outcome as the answer to its request.
    // openraft's error types are large; they live only for the duration of this call.
    #[allow(clippy::result_large_err)]
    fn membership_attempt(&self, outcome: Result<MembershipOutcome, ()>) -> Attempt<RelayReply> {
        match outcome {
            Err(()) => Attempt::Done(Err(NodeError::Unavailable(
                "the membership change did not complete within the request timeout and goes on: \
                 GET /api/v1/cluster shows it as membershipChange until it is done; until then \
                 stop no node listed as a voter"
                    .into(),
            ))),
            Ok(Ok(reply)) => Attempt::Done(Ok(reply)),
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => {
                Attempt::Retry("leadership changed before the entry was proposed".into())
            }
            Ok(Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e)))) => {
                Attempt::Done(Err(NodeError::Rejected(format!(
                    "membership change refused: {e}"
                ))))
            }
            Ok(Err(RaftError::Fatal(openraft::error::Fatal::Stopped))) => {
                Attempt::Done(Err(self.stopping()))
            }
            Ok(Err(RaftError::Fatal(f))) => {
                Attempt::Done(Err(NodeError::Internal(format!("raft stopped: {f}"))))
            }
        }
    }

    /// The answer to a request this node can no longer serve because it is stopping (its
    /// Raft core shut down while the request was in flight): a 503 the client retries on
    /// another node. What it asked for may still take effect under the next leader.
    fn stopping(&self) -> NodeError {
        NodeError::Stopping(format!(
            "node {} is shutting down; retry on another node (with the same X-Request-Id, \
             the request cannot apply twice)",
            self.config.node_id
        ))
    }

    /// Each follower's health as this node sees it while it leads (`None` otherwise): how
    /// long ago it last answered an append, how many entries it is behind, and whether that
    /// makes it healthy (within [`CONTACT_WINDOW`] and [`HEALTHY_LAG`]).
    pub fn follower_health(&self) -> Option<BTreeMap<NodeId, FollowerHealth>> {
        let m = self.raft.metrics().borrow().clone();
        if m.state != openraft::ServerState::Leader {
            return None;
        }
        let last = m.last_log_index.unwrap_or(0);
        let matched = m.replication.clone().unwrap_or_default();
        Some(
            matched
                .iter()
                .filter(|(id, _)| **id != self.id)
                .map(|(id, log)| {
                    let contacts = self.peers.contacts();
                    let contact = contacts.since(*id);
                    let lag = last.saturating_sub(log.map_or(0, |l| l.index));
                    let healthy =
                        contact.is_some_and(|d| d <= CONTACT_WINDOW) && lag <= HEALTHY_LAG;
                    let contact_ms = contact.map(|d| d.as_millis() as u64);
                    let stable_ms = contacts
                        .stable_for(*id)
                        .filter(|_| healthy)
                        .map(|d| d.as_millis() as u64);
                    (
                        *id,
                        FollowerHealth {
                            contact_ms,
                            lag,
                            healthy,
                            stable_ms,
                        },
                    )
                })
                .collect(),
        )
    }

    /// Why removing node `id` would leave the cluster unable to commit or elect, if it
    /// would (Vault's autopilot refuses the same): the voters left must include a quorum
    /// of healthy ones, as this leader sees them — itself, and every follower that answered
    /// an append within [`CONTACT_WINDOW`] and whose log is within [`HEALTHY_LAG`] entries
    /// of its own. Removing an unhealthy node is never refused by this.
    fn removal_refused(&self, id: NodeId) -> Option<String> {
        let membership = self.raft.metrics().borrow().membership_config.clone();
        if !membership.membership().voter_ids().any(|v| v == id) {
            return None;
        }
        let after: Vec<NodeId> = membership
            .membership()
            .voter_ids()
            .filter(|v| *v != id)
            .collect();
        if after.is_empty() {
            return Some(format!("node {id} is the last voter"));
        }
        let health = self.follower_health().unwrap_or_default();
        let unhealthy: Vec<String> = after
            .iter()
            .filter(|v| **v != self.id)
            .filter_map(|v| match health.get(v) {
                Some(h) if h.healthy => None,
                Some(FollowerHealth {
                    contact_ms: Some(ms),
                    lag,
                    ..
                }) if u128::from(*ms) <= CONTACT_WINDOW.as_millis() => {
                    Some(format!("node {v} ({lag} entries behind)"))
                }
                Some(FollowerHealth {
                    contact_ms: Some(ms),
                    ..
                }) => Some(format!("node {v} (last answered {ms} ms ago)")),
                _ => Some(format!("node {v} (not heard from)")),
            })
            .collect();
        let quorum = after.len() / 2 + 1;
        let healthy = after.len() - unhealthy.len();
        (healthy < quorum).then(|| {
            format!(
                "removing node {id} would leave voters {after:?} with {healthy} healthy, fewer \
                 than the {quorum} needed to commit or elect: {} — bring them back (or remove \
                 them) first",
                unhealthy.join(", ")
            )
        })
    }

    /// Runs a membership change to its end on its own task, one at a time: the caller waits
    /// at most `left`, but the change is never dropped halfway. openraft changes membership
    /// in two steps (a joint configuration, then the new one), and the second is proposed
    /// by the same future: dropping it at a request timeout left the cluster in the joint
    /// configuration, where the removed node still counted toward every election, and losing
    /// it and one more voter left the rest unable to elect (docs/soak.md, run 4).
    // openraft's error types are large; they live only for the duration of this call.
    #[allow(clippy::result_large_err)]
    async fn change_membership<F>(&self, left: Duration, change: F) -> Result<MembershipOutcome, ()>
    where
        F: std::future::Future<
                Output = Result<RelayReply, RaftError<NodeId, ClientWriteError<NodeId, NodeInfo>>>,
            > + Send
            + 'static,
    {
        let lock = self.membership_lock.clone();
        let task = tokio::spawn(async move {
            let _one_at_a_time = lock.lock_owned().await;
            change.await
        });
        match tokio::time::timeout(left, task).await {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(join)) => {
                tracing::error!(error = %join, "the membership change task failed");
                Ok(Err(RaftError::Fatal(openraft::error::Fatal::Panicked)))
            }
            Err(_) => Err(()),
        }
    }

    // ----- metrics -----

    /// Publishes the Raft gauges from openraft's metrics (called periodically).
    pub fn sample_metrics(&self, last_leader: &mut Option<NodeId>) {
        use crate::metrics as m;
        // Before the borrow below: `space_alarm` takes its own.
        let refusing = self.space_alarm().is_some();
        metrics::gauge!(m::DISK_ALARM_CLUSTER).set(if refusing { 1.0 } else { 0.0 });
        let metrics = self.raft.metrics();
        let r = metrics.borrow();
        metrics::gauge!(m::RAFT_TERM).set(r.current_term as f64);
        let leading = r.state == openraft::ServerState::Leader;
        metrics::gauge!(m::RAFT_IS_LEADER).set(if leading { 1.0 } else { 0.0 });
        if r.current_leader != *last_leader {
            if last_leader.is_some() || r.current_leader.is_some() {
                metrics::counter!(m::RAFT_LEADER_CHANGES).increment(1);
            }
            *last_leader = r.current_leader;
        }
        metrics::gauge!(m::RAFT_LAST_LOG_INDEX).set(r.last_log_index.unwrap_or(0) as f64);
        metrics::gauge!(m::RAFT_APPLIED_INDEX).set(r.last_applied.map_or(0, |l| l.index) as f64);
        match (leading, r.millis_since_quorum_ack) {
            (true, Some(ms)) => metrics::gauge!(m::RAFT_MILLIS_SINCE_QUORUM_ACK).set(ms as f64),
            _ => metrics::gauge!(m::RAFT_MILLIS_SINCE_QUORUM_ACK).set(0.0),
        }
        if let (true, Some(replication)) = (leading, r.replication.as_ref()) {
            let last = r.last_log_index.unwrap_or(0);
            for (id, matched) in replication.iter() {
                if *id == self.id {
                    continue;
                }
                let lag = last.saturating_sub(matched.map_or(0, |l| l.index));
                metrics::gauge!(m::RAFT_REPLICATION_LAG, "follower" => id.to_string())
                    .set(lag as f64);
            }
        }
    }

    // ----- status -----

    /// The membership as it counts for elections now (see [`MembershipView`]).
    pub async fn membership(&self) -> Result<MembershipView, NodeError> {
        let effective = self.raft.metrics().borrow().membership_config.clone();
        let reader = self.reader.clone();
        let committed = crate::store::blocking(move || reader.membership()).await?;
        Ok(MembershipView::new(&committed, &effective))
    }

    pub async fn local_status(&self, with_digest: bool) -> Result<NodeStatus, NodeError> {
        let view = self.membership().await?;
        let m = self.raft.metrics().borrow().clone();
        let MembershipView {
            voters,
            learners,
            members,
            ..
        } = view;
        let digest = if with_digest {
            let reader = self.reader.clone();
            let (applied, hex) = crate::store::blocking(move || reader.digest()).await?;
            Some((applied.map(|l| l.index), hex))
        } else {
            None
        };
        Ok(NodeStatus {
            id: self.id,
            state: format!("{:?}", m.state),
            term: m.current_term,
            leader: m.current_leader,
            last_log_index: m.last_log_index,
            last_applied_index: m.last_applied.map(|l| l.index),
            snapshot_index: m.snapshot.map(|l| l.index),
            purged_index: m.purged.map(|l| l.index),
            voters,
            learners,
            members,
            digest,
        })
    }

    /// Every member's status, asked over the internal transport (this node's own locally).
    pub async fn cluster_status(&self) -> BTreeMap<NodeId, Result<NodeStatus, String>> {
        let mut out = BTreeMap::new();
        let members: Vec<(NodeId, NodeInfo)> = match self.membership().await {
            Ok(view) => view.members.into_iter().collect(),
            Err(e) => {
                out.insert(self.id, Err(e.to_string()));
                return out;
            }
        };
        let calls = members.into_iter().map(|(id, info)| async move {
            if id == self.id {
                return (
                    id,
                    self.local_status(false).await.map_err(|e| e.to_string()),
                );
            }
            let answer: Result<Result<NodeStatus, NodeError>, CallError> = self
                .peers
                .call(id, &info, ROUTE_STATUS, &(), Duration::from_secs(1))
                .await;
            let status = match answer {
                Ok(Ok(s)) => Ok(s),
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            (id, status)
        });
        for (id, status) in futures::future::join_all(calls).await {
            out.insert(id, status);
        }
        out
    }
}

/// The membership, if no change is in flight: the last appended configuration is committed
/// (applied here) and not joint.
async fn settled(raft: &Raft, reader: Reader) -> Option<openraft::Membership<NodeId, NodeInfo>> {
    let effective = raft.metrics().borrow().membership_config.clone();
    let committed = crate::store::blocking(move || reader.membership())
        .await
        .ok()?;
    MembershipView::new(&committed, &effective)
        .change
        .is_none()
        .then(|| committed.membership().clone())
}

/// Waits until learner `id` has answered every append for [`STABILIZATION`] (autopilot's
/// stabilization before a promotion), or until `deadline`: then how long it has so far.
async fn wait_until_stable(
    peers: &PeerClient,
    id: NodeId,
    deadline: Instant,
) -> Result<(), Duration> {
    loop {
        let stable = peers.contacts().stable_for(id).unwrap_or_default();
        if stable >= STABILIZATION {
            return Ok(());
        }
        let wait = (STABILIZATION - stable).max(Duration::from_millis(20));
        if Instant::now() + wait > deadline {
            return Err(stable);
        }
        tokio::time::sleep(wait).await;
    }
}

/// One quorum confirmation on the leader (a round of [`Node::leader_read_index`]).
async fn confirm_leadership(
    raft: Raft,
    me: NodeId,
    timeout: Duration,
) -> Result<Option<LogId>, NodeError> {
    let began = Instant::now();
    let answer = tokio::time::timeout(timeout, raft.get_read_log_id()).await;
    metrics::histogram!(crate::metrics::READ_INDEX_DURATION).record(began.elapsed().as_secs_f64());
    match answer {
        Err(_) => Err(NodeError::Unavailable(
            "timed out confirming leadership".into(),
        )),
        Ok(Ok((read_log_id, _applied))) => Ok(read_log_id),
        Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)))) => {
            Err(NodeError::Unavailable(format!(
                "node {me} is no longer the leader (leader now: {:?})",
                f.leader_id
            )))
        }
        Ok(Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(_)))) => {
            Err(NodeError::Unavailable(
                "the leader could not confirm its leadership with a quorum".into(),
            ))
        }
        Ok(Err(RaftError::Fatal(openraft::error::Fatal::Stopped))) => Err(NodeError::Unavailable(
            format!("node {me} is shutting down; retry on another node"),
        )),
        Ok(Err(RaftError::Fatal(f))) => Err(NodeError::Internal(format!("raft stopped: {f}"))),
    }
}

/// One read-index call to the current leader (a round of a follower's read-index
/// coalescer). The leader is looked up when the round starts.
async fn remote_read_index(
    raft: Raft,
    peers: PeerClient,
    me: NodeId,
    timeout: Duration,
) -> Result<Option<LogId>, NodeError> {
    let leader = raft
        .current_leader()
        .await
        .ok_or_else(|| NodeError::Unavailable("no leader is known".into()))?;
    if leader == me {
        return Err(NodeError::Unavailable(
            "this node became the leader; asking itself".into(),
        ));
    }
    let info = raft
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .get_node(&leader)
        .cloned()
        .ok_or_else(|| {
            NodeError::Unavailable(format!("leader {leader} is not in the membership"))
        })?;
    let answer: Result<Result<Option<LogId>, NodeError>, CallError> = peers
        .call(leader, &info, ROUTE_READ_INDEX, &(), timeout)
        .await;
    answer.map_err(|e| NodeError::Unavailable(e.to_string()))?
}

/// Records when this node last knew a leader (see [`Node::cut_off`]).
/// Whoever leads finishes a joint configuration that no change is driving any more. openraft
/// proposes a change's second step from the future that made the first; if the leader died
/// or lost leadership in between, the cluster stays in the joint configuration, where both
/// the old and the new voter sets must agree on every election and every commit, and a node
/// the operator removed (and stopped) still counts. Every second, a leader that finds the
/// committed configuration joint, and no change of its own running, proposes the new set.
async fn finish_joint_configurations(
    node: std::sync::Weak<Node>,
    reader: Reader,
    lock: Arc<tokio::sync::Mutex<()>>,
) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let Some(node) = node.upgrade() else { return };
        let raft = node.raft.clone();
        drop(node);
        let m = raft.metrics().borrow().clone();
        if m.state != openraft::ServerState::Leader
            || m.membership_config.membership().get_joint_config().len() < 2
        {
            continue;
        }
        let Ok(_one_at_a_time) = lock.try_lock() else {
            continue;
        };
        // Committed: applied here. An uncommitted joint entry is still being replicated.
        let reader = reader.clone();
        let committed = crate::store::blocking(move || reader.membership()).await;
        if committed.ok().and_then(|c| *c.log_id()) != *m.membership_config.log_id() {
            continue;
        }
        let Some(target) = m
            .membership_config
            .membership()
            .get_joint_config()
            .last()
            .cloned()
        else {
            continue;
        };
        tracing::warn!(voters = ?target, "finishing a joint membership configuration left by an interrupted change");
        let change = raft.change_membership(ChangeMembers::ReplaceAllVoters(target), false);
        if let Ok(Err(e)) = tokio::time::timeout(Duration::from_secs(10), change).await {
            tracing::warn!(error = %e, "finishing the joint configuration failed; retrying");
        }
    }
}

async fn watch_leader(raft: Raft, seen_ms: Arc<AtomicU64>) {
    let mut rx = raft.metrics();
    loop {
        if rx.borrow_and_update().current_leader.is_some() {
            seen_ms.store(crate::time::now_ms(), Ordering::Relaxed);
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// A follower's health as its leader sees it ([`Node::follower_health`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FollowerHealth {
    /// Milliseconds since it last answered an append RPC (`None`: not since this node led).
    pub contact_ms: Option<u64>,
    /// Entries behind the leader's last log entry.
    pub lag: u64,
    pub healthy: bool,
    /// How long it has been healthy without a break in contact (`None`: not healthy now);
    /// at [`STABILIZATION`] or more it is *stable*.
    pub stable_ms: Option<u64>,
}

/// The membership as it counts for elections: openraft reports the last *appended*
/// configuration, which a leader's death can still undo; the state machine holds the last
/// *committed* one. Until a change commits, a voter of either still decides elections, so
/// both count: an operator who stops a node the moment it leaves the appended
/// configuration can take two voters of a joint configuration down and leave the rest
/// unable to elect (docs/soak.md, run 4).
#[derive(Debug, Clone, PartialEq)]
pub struct MembershipView {
    /// Voters of the committed configuration or of the one appended after it.
    pub voters: Vec<NodeId>,
    /// Members that are voters of neither.
    pub learners: Vec<NodeId>,
    /// Every member of either configuration, with its addresses.
    pub members: BTreeMap<NodeId, NodeInfo>,
    /// The change in flight, if the last appended configuration is not committed here yet.
    pub change: Option<String>,
}

impl MembershipView {
    pub fn new(committed: &StoredMembership, effective: &StoredMembership) -> MembershipView {
        let mut members: BTreeMap<NodeId, NodeInfo> = BTreeMap::new();
        let mut voters = BTreeSet::new();
        for m in [committed, effective] {
            members.extend(m.membership().nodes().map(|(id, n)| (*id, n.clone())));
            voters.extend(m.membership().voter_ids());
        }
        let learners = members
            .keys()
            .copied()
            .filter(|id| !voters.contains(id))
            .collect();
        let joint = effective.membership().get_joint_config();
        let uncommitted = committed.log_id() != effective.log_id();
        let change = (uncommitted || joint.len() > 1).then(|| {
            let sets: Vec<Vec<NodeId>> =
                joint.iter().map(|c| c.iter().copied().collect()).collect();
            let config = match sets.as_slice() {
                [one] => format!("voters {one:?}"),
                _ => format!("joint configuration {sets:?}"),
            };
            let state = if uncommitted {
                "appended and not yet committed"
            } else {
                "committed; its second step is not"
            };
            format!(
                "{config} at index {} is {state}: until the change completes, every node listed \
                 as a voter counts toward elections and must keep running",
                effective.log_id().map_or(0, |l| l.index)
            )
        });
        MembershipView {
            voters: voters.into_iter().collect(),
            learners,
            members,
            change,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, Membership};

    fn stored(index: u64, configs: &[&[NodeId]]) -> StoredMembership {
        let nodes: BTreeMap<NodeId, NodeInfo> = configs
            .iter()
            .flat_map(|c| c.iter())
            .map(|id| {
                let info = NodeInfo {
                    raft_addr: format!("127.0.0.1:{}", 9000 + id),
                    api_addr: format!("127.0.0.1:{}", 8000 + id),
                };
                (*id, info)
            })
            .collect();
        let sets = configs
            .iter()
            .map(|c| c.iter().copied().collect::<BTreeSet<_>>())
            .collect();
        let log_id = LogId::new(CommittedLeaderId::new(2, 1), index);
        StoredMembership::new(Some(log_id), Membership::new(sets, nodes))
    }

    #[test]
    fn a_settled_membership_reports_no_change() {
        let m = stored(4, &[&[1, 2, 3]]);
        let view = MembershipView::new(&m, &m);
        assert_eq!(view.voters, vec![1, 2, 3]);
        assert_eq!(view.change, None);
    }

    #[test]
    fn an_appended_removal_still_counts_the_removed_voter() {
        let committed = stored(4, &[&[1, 2, 3]]);
        let appended = stored(5, &[&[1, 2, 3], &[1, 2]]);
        let view = MembershipView::new(&committed, &appended);
        assert_eq!(view.voters, vec![1, 2, 3]);
        assert!(view.members.contains_key(&3));
        let change = view.change.expect("in flight");
        assert!(
            change.contains("appended and not yet committed"),
            "{change}"
        );
    }

    #[test]
    fn a_committed_joint_configuration_is_still_a_change_in_flight() {
        let joint = stored(5, &[&[1, 2, 3], &[1, 2]]);
        let view = MembershipView::new(&joint, &joint);
        assert_eq!(view.voters, vec![1, 2, 3]);
        let change = view.change.expect("the second step is missing");
        assert!(change.contains("its second step is not"), "{change}");
    }

    #[test]
    fn a_committed_removal_drops_the_node_everywhere() {
        let done = stored(6, &[&[1, 2]]);
        let view = MembershipView::new(&done, &done);
        assert_eq!(view.voters, vec![1, 2]);
        assert!(view.learners.is_empty() && !view.members.contains_key(&3));
    }
}
