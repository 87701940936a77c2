//! "A set of nodes, each reachable by a [`Client`]": what the workload, the nemeses and the
//! checks need from a cluster, whether it is processes on 127.0.0.1 ([`super::cluster::Cluster`])
//! or the Docker compose cluster ([`super::docker::ComposeCluster`]). The status probe, the
//! wait for a leader and the wait for convergence are written once, here, as provided methods.
//!
//! Invariants:
//! - [`Nodes::status`] asks the node itself, whatever the harness believes about it: a node
//!   the harness killed or paused that still answers shows up, which is what the nemeses check.
//! - [`Nodes::wait_leader`] returns only a leader that also serves a linearizable read
//!   (`/health/ready` answers 200), and the one with the highest term if several claim it.
//! - [`Nodes::wait_converged`] compares the nodes the harness has running (neither killed nor
//!   paused); every one of them must report the same (applied index, state digest).

use std::future::Future;
use std::time::{Duration, Instant};

use raftsafe::client::Client;
use serde_json::Value;

/// How long a node has to answer a status probe before it counts as silent.
pub const STATUS_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a leader has to answer `/health/ready` (a read-index round).
pub const READY_TIMEOUT: Duration = Duration::from_secs(3);

/// A cluster whose nodes are reached through the API client.
pub trait Nodes: Send + Sync + 'static {
    /// Node ids, in a stable order.
    fn ids(&self) -> Vec<u64>;

    /// A client for node `id`'s API, with the cluster's root token and TLS roots.
    fn client(&self, id: u64) -> Client;

    /// Whether the harness has node `id` running (not killed, not paused).
    fn is_running(&self, id: u64) -> bool;

    /// Node `id`'s own status (`/cluster/self`), if it answers 200 within [`STATUS_TIMEOUT`].
    fn status(&self, id: u64) -> impl Future<Output = Option<Value>> + Send {
        let client = self.client(id).with_timeout(STATUS_TIMEOUT);
        async move {
            let r = client.node_status().await.ok()?;
            (r.status == 200).then_some(r.body)
        }
    }

    /// `(leader, term)` as reported by the highest-term node among `among` that says it leads.
    fn leader_among(&self, among: &[u64]) -> impl Future<Output = Option<(u64, u64)>> + Send {
        async move {
            let statuses = futures::future::join_all(among.iter().map(|id| self.status(*id))).await;
            statuses
                .into_iter()
                .flatten()
                .filter(|s| s["state"] == "Leader")
                .filter_map(|s| Some((s["id"].as_u64()?, s["term"].as_u64()?)))
                .max_by_key(|(_, term)| *term)
        }
    }

    /// Waits for a leader among `among` with a term above `above` that can serve a
    /// linearizable read (`/health/ready`).
    fn wait_leader(
        &self,
        among: &[u64],
        above: u64,
        within: Duration,
    ) -> impl Future<Output = Option<(u64, u64)>> + Send {
        async move {
            let deadline = Instant::now() + within;
            while Instant::now() < deadline {
                let leader = self.leader_among(among).await.filter(|l| l.1 > above);
                if let Some((id, term)) = leader {
                    let ready = self.client(id).with_timeout(READY_TIMEOUT).ready().await;
                    if ready.is_ok_and(|r| r.status == 200) {
                        return Some((id, term));
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            None
        }
    }

    /// Waits until every running node has applied the same index with the same data digest.
    fn wait_converged(
        &self,
        within: Duration,
    ) -> impl Future<Output = Result<(u64, String), String>> + Send {
        async move {
            let deadline = Instant::now() + within;
            let mut last = Vec::new();
            while Instant::now() < deadline {
                last.clear();
                for id in self.ids().into_iter().filter(|id| self.is_running(*id)) {
                    last.push((id, self.status(id).await.as_ref().and_then(digest_of)));
                }
                if let Some(agreed) = agreed_digest(&last) {
                    return Ok(agreed);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(format!("no agreement within {within:?}: {last:?}"))
        }
    }
}

/// The `(applied index, sha256)` digest in a `/cluster/self` answer.
pub fn digest_of(status: &Value) -> Option<(u64, String)> {
    let d = &status["digest"];
    Some((
        d["appliedIndex"].as_u64()?,
        d["sha256"].as_str()?.to_string(),
    ))
}

/// The digest every node reported, if they all reported the same one.
pub fn agreed_digest(reports: &[(u64, Option<(u64, String)>)]) -> Option<(u64, String)> {
    let first = reports.first()?.1.clone()?;
    reports
        .iter()
        .all(|(_, d)| d.as_ref() == Some(&first))
        .then_some(first)
}
