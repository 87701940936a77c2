//! Group commit on the leader: concurrent writes share one log entry, so they share one
//! fsync on every node and one replication round.
//!
//! openraft 0.9 turns every `client_write` into its own log entry and appends entries one at
//! a time, each waiting for its own fsync; left alone, a leader commits at most one write
//! per fsync. The batcher collects the writes that arrive while earlier entries are being
//! committed into the next [`Request`] (up to [`MAX_OPS`] ops or about [`MAX_BYTES`]).
//!
//! Invariants:
//! - A batch applies exactly as its ops would one after another, in order (see
//!   `secret::machine`); each op keeps its own request id, so dedup and retries work per op.
//! - At most [`MAX_IN_FLIGHT`] entries are proposed and not yet committed at any time; a
//!   single writer on an idle cluster is proposed at once (a batch of one), so batching adds
//!   no latency.
//! - Every op gets exactly one answer: its result, or `NotLeader`, `Timeout` or `Fatal`, after
//!   which it may or may not take effect; its request id makes a retry through the new
//!   leader safe (the state machine answers a repeated id with the first result).

use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::Raft;
use crate::secret::{CommandResult, Op, Request};
use crate::time::now_ms;

/// Most ops in one log entry.
pub const MAX_OPS: usize = 256;
/// A batch is closed once its payload reaches this many bytes (one op may exceed it alone).
/// Small enough that [`super::node::MAX_PAYLOAD_ENTRIES`] entries fit in one append RPC that
/// a follower takes in well within openraft's RPC timeout (the heartbeat interval).
pub const MAX_BYTES: usize = 256 << 10;
/// Entries proposed and not yet committed. More than one lets the leader append the next
/// entry while the previous one replicates.
pub const MAX_IN_FLIGHT: usize = 4;
/// Writes waiting for a batch before new ones are pushed back.
const QUEUE: usize = 16_384;

/// Why a batched write has no result.
#[derive(Debug, Clone)]
pub enum BatchError {
    /// This node is not (or no longer) the leader: retry through the current one.
    NotLeader(String),
    /// Not committed in time; it may still take effect.
    Timeout,
    /// This node's Raft core was shut down (a graceful stop): the entry may still commit
    /// under the next leader, so the caller retries elsewhere (the request id dedups).
    Stopped,
    /// Raft failed or the state machine did.
    Fatal(String),
}

struct Pending {
    op: Op,
    queued: Instant,
    reply: oneshot::Sender<Result<CommandResult, BatchError>>,
}

/// The leader's write queue. Cheap to clone.
#[derive(Clone)]
pub struct Batcher {
    tx: mpsc::Sender<Pending>,
}

impl Batcher {
    /// Starts the batching task for `raft`; each entry waits at most `timeout` to commit.
    pub fn start(raft: Raft, timeout: Duration) -> Batcher {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(raft, rx, timeout));
        Batcher { tx }
    }

    /// Proposes `op` in the next batch and waits for its result.
    pub async fn submit(&self, op: Op) -> Result<CommandResult, BatchError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Pending {
                op,
                queued: Instant::now(),
                reply,
            })
            .await
            .map_err(|_| BatchError::Fatal("the write batcher stopped".into()))?;
        rx.await
            .unwrap_or_else(|_| Err(BatchError::Fatal("the write batcher stopped".into())))
    }
}

async fn run(raft: Raft, mut rx: mpsc::Receiver<Pending>, timeout: Duration) {
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    while let Some(first) = rx.recv().await {
        // Wait for room first: everything that arrives meanwhile joins this batch.
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let mut bytes = first.op.command.size_hint();
        let mut batch = vec![first];
        while batch.len() < MAX_OPS && bytes < MAX_BYTES {
            match rx.try_recv() {
                Ok(p) => {
                    bytes += p.op.command.size_hint();
                    batch.push(p);
                }
                Err(_) => break,
            }
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            commit(&raft, batch, timeout).await;
            drop(permit);
        });
    }
}

async fn commit(raft: &Raft, batch: Vec<Pending>, timeout: Duration) {
    let began = Instant::now();
    let queued = metrics::histogram!(crate::metrics::WRITE_QUEUE_DURATION);
    for p in &batch {
        queued.record(began.duration_since(p.queued).as_secs_f64());
    }
    let (ops, replies): (Vec<Op>, Vec<_>) = batch.into_iter().map(|p| (p.op, p.reply)).unzip();
    let n = ops.len();
    metrics::histogram!(crate::metrics::WRITE_BATCH_OPS).record(n as f64);
    let request = Request {
        at_ms: now_ms(),
        ops,
    };
    let written = tokio::time::timeout(timeout, raft.client_write(request)).await;
    metrics::histogram!(crate::metrics::WRITE_COMMIT_DURATION)
        .record(began.elapsed().as_secs_f64());
    let outcome = match written {
        Err(_) => Err(BatchError::Timeout),
        Ok(Ok(resp)) if resp.data.len() == n => Ok(resp.data),
        Ok(Ok(resp)) => Err(BatchError::Fatal(format!(
            "the state machine answered {} results to a batch of {n}",
            resp.data.len()
        ))),
        Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
            Err(BatchError::NotLeader(format!(
                "leadership moved before the entry was proposed (leader now: {:?})",
                f.leader_id
            )))
        }
        Ok(Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e)))) => Err(
            BatchError::Fatal(format!("unexpected membership error for a write: {e}")),
        ),
        Ok(Err(RaftError::Fatal(openraft::error::Fatal::Stopped))) => Err(BatchError::Stopped),
        Ok(Err(RaftError::Fatal(f))) => Err(BatchError::Fatal(format!("raft stopped: {f}"))),
    };
    match outcome {
        Ok(results) => {
            for (reply, result) in replies.into_iter().zip(results) {
                let _ = reply.send(Ok(result));
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}
