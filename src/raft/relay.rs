//! RelayRequest writes, batched: a follower relays the writes its clients send it to the leader
//! many to one internal request, the way the leader's [`super::batch`] puts many writes in one
//! log entry.
//!
//! Relayed one request per write, a follower's writes cost the leader one HTTP exchange each
//! on top of the client's own: with every client on a follower, the leader spent more on
//! relays than on its own clients (BENCHMARKS.md). Batched, concurrent writes share one
//! exchange, and arrive at the leader together, so they share a log entry as well.
//!
//! Invariants:
//! - Every write gets exactly one answer: the leader's answer for that write, or a transport
//!   error, after which it may or may not have been applied; its request id makes the retry
//!   (by [`super::node::Node`]'s retry loop) apply at most once.
//! - A batch goes to one leader with one hop count: writes for another leader, or relayed a
//!   different number of times, start the next batch.
//! - At most [`MAX_IN_FLIGHT`] batches are in flight per node; a write that arrives meanwhile
//!   waits for the next one, so a lone write is sent at once.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Semaphore};

use super::network::PeerClient;
use super::wire::{NodeError, RelayedWrites, ROUTE_RELAY_WRITES};
use super::{NodeId, NodeInfo};
use crate::secret::{CommandResult, Op};

/// Most writes in one relayed request.
pub const MAX_OPS: usize = 256;
/// A batch is closed once its payload reaches this many bytes (one write may exceed it).
pub const MAX_BYTES: usize = 1 << 20;
/// Relayed requests in flight from this node.
pub const MAX_IN_FLIGHT: usize = 4;
/// Writes waiting for a batch before new ones are pushed back.
const QUEUE: usize = 16_384;

/// The leader's answer for one write, or why there is none (a transport failure: retry).
pub type Relayed = Result<Result<CommandResult, NodeError>, String>;

struct Pending {
    leader: NodeId,
    info: NodeInfo,
    hops: u8,
    op: Op,
    reply: oneshot::Sender<Relayed>,
}

/// This node's relay to the leader. Cheap to clone.
#[derive(Clone)]
pub struct Relay {
    tx: mpsc::Sender<Pending>,
}

impl Relay {
    /// Starts the relay task; each relayed request waits at most `timeout` for its answer.
    pub fn start(peers: PeerClient, timeout: Duration) -> Relay {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(peers, rx, timeout));
        Relay { tx }
    }

    /// Relays `op` to `leader` (as its `hops`-th relay) in the next batch; waits for its answer.
    pub async fn send(&self, leader: NodeId, info: NodeInfo, hops: u8, op: Op) -> Relayed {
        let (reply, rx) = oneshot::channel();
        let pending = Pending {
            leader,
            info,
            hops,
            op,
            reply,
        };
        if self.tx.send(pending).await.is_err() {
            return Err("the write relay stopped".into());
        }
        rx.await
            .unwrap_or_else(|_| Err("the write relay dropped the write".into()))
    }
}

async fn run(peers: PeerClient, mut rx: mpsc::Receiver<Pending>, timeout: Duration) {
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut carried: Option<Pending> = None;
    loop {
        let first = match carried.take() {
            Some(p) => p,
            None => match rx.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        // Wait for room first: everything that arrives meanwhile joins this batch.
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let (leader, hops) = (first.leader, first.hops);
        let mut bytes = first.op.command.size_hint();
        let mut batch = vec![first];
        while batch.len() < MAX_OPS && bytes < MAX_BYTES {
            match rx.try_recv() {
                Ok(p) if p.leader == leader && p.hops == hops => {
                    bytes += p.op.command.size_hint();
                    batch.push(p);
                }
                Ok(p) => {
                    carried = Some(p);
                    break;
                }
                Err(_) => break,
            }
        }
        let peers = peers.clone();
        tokio::spawn(async move {
            send_batch(&peers, batch, timeout).await;
            drop(permit);
        });
    }
}

async fn send_batch(peers: &PeerClient, batch: Vec<Pending>, timeout: Duration) {
    let (leader, info, hops) = (batch[0].leader, batch[0].info.clone(), batch[0].hops);
    let (ops, replies): (Vec<Op>, Vec<_>) = batch.into_iter().map(|p| (p.op, p.reply)).unzip();
    let n = ops.len();
    metrics::histogram!(crate::metrics::RELAY_BATCH_OPS).record(n as f64);
    let request = RelayedWrites { hops, ops };
    let answer: Result<Vec<Result<CommandResult, NodeError>>, _> = peers
        .call(leader, &info, ROUTE_RELAY_WRITES, &request, timeout)
        .await;
    match answer {
        Ok(results) if results.len() == n => {
            for (reply, result) in replies.into_iter().zip(results) {
                let _ = reply.send(Ok(result));
            }
        }
        Ok(results) => {
            let why = format!(
                "the leader answered {} results to {n} writes",
                results.len()
            );
            for reply in replies {
                let _ = reply.send(Ok(Err(NodeError::Internal(why.clone()))));
            }
        }
        Err(e) => {
            let why = e.to_string();
            for reply in replies {
                let _ = reply.send(Err(why.clone()));
            }
        }
    }
}
