//! When a node builds a snapshot of its state machine.
//!
//! openraft's own policy (`LogsSinceLast(n)`) rebuilds the whole state every `n` entries,
//! whatever the state's size. A snapshot's cost grows with the state (5.5 s at 1M secrets on
//! two cores) while `n` entries keep arriving at the same rate, so under a steady write load
//! a large store spent most of its CPU rebuilding snapshots: during a 1M-secret fill the
//! leader built 18 snapshots in 250 s (45 s of building), and heartbeats starved into
//! elections (BENCHMARKS.md, "The write tail"). Every node builds its own, at the same time.
//!
//! Invariants:
//! - A snapshot is due once `snapshot_every` entries were applied since the last one, as
//!   before, **and** the node has spent at least [`IDLE_PER_BUILD`] times the last build's
//!   duration since that build finished: building takes at most ~1/(1 + IDLE_PER_BUILD) of
//!   the node's time, whatever the state's size. A small state builds in milliseconds, so
//!   small stores (and the tests, which set `snapshot_every` low) see no difference.
//! - Nodes do not build at the same time. Every node applies the same entries, so with one
//!   threshold all three reached it together and built at once: during those ~70 ms (10k
//!   secrets, two cores, one disk) a write had no quorum that was not building, and the
//!   single-client PUT's p99 doubled (BENCHMARKS.md, "The single-client tail"). Each node
//!   builds once per `every` entries as before, but at its own offset ([`phase`]: a third
//!   of `every` per node id, modulo 3), so in a three-node cluster at most one node builds
//!   at a time and the other two still make a quorum; in five or seven nodes, at most
//!   two or three. A node's first snapshot therefore comes up to two thirds of `every`
//!   early, never later. A node whose last snapshot came late (a build held back by the
//!   rest above, or one installed from the leader) builds at its next offset, which may be
//!   fewer than `every` entries away: that is how it gets back in step. The rest still
//!   bounds the time spent building.
//! - Only the timing changes: the snapshot is openraft's (`trigger().snapshot()`), and the
//!   log is still purged behind it, keeping `keep_logs` entries. A longer gap between builds
//!   means a longer log on disk, bounded by the same ratio.
//! - `POST /cluster/snapshot` still builds one at once.
//! - A request that produced no snapshot within [`GIVE_UP`] is made again, so snapshots
//!   (and the log purge behind them) never stop for good.

use std::time::{Duration, Instant};

use super::Raft;

/// Time a node spends not building a snapshot, per unit of time it spent building the last.
pub const IDLE_PER_BUILD: u32 = 9;
/// Nodes build in this many staggered groups (by node id): see the module's invariants.
const STAGGER: u64 = 3;
/// How often the policy looks again when no Raft event wakes it.
const RECHECK: Duration = Duration::from_secs(1);
/// A requested build that has not shown up after this long (or after ten times the last
/// build, if longer) is asked for again: a lost trigger must not stop snapshots, and with
/// them log purging, for good. openraft ignores a request while a build is running.
const GIVE_UP: Duration = Duration::from_secs(60);

/// The policy's state between events.
#[derive(Debug)]
pub struct Policy {
    every: u64,
    /// This node's offset into each period of `every` entries (see [`phase`]).
    phase: u64,
    /// How long the last build took, and when it finished.
    last_cost: Duration,
    last_done: Instant,
    /// A build this policy asked for: when, and the snapshot index at that moment.
    pending: Option<(Instant, u64)>,
}

impl Policy {
    pub fn new(every: u64, phase: u64, now: Instant) -> Policy {
        Policy {
            every: every.max(1),
            phase: phase % every.max(1),
            last_cost: Duration::ZERO,
            last_done: now,
            pending: None,
        }
    }

    /// Given the applied index and the newest snapshot's index (0 for none), whether to ask
    /// for a snapshot now.
    pub fn due(&mut self, applied: u64, snapshot: u64, now: Instant) -> bool {
        if let Some((asked, at)) = self.pending {
            if snapshot > at {
                // Built (or installed from the leader): measure it.
                self.last_cost = now.saturating_duration_since(asked);
                self.last_done = now;
                self.pending = None;
            } else if now.saturating_duration_since(asked) < GIVE_UP.max(self.last_cost * 10) {
                return false;
            } else {
                self.pending = None;
            }
        }
        let rested =
            now.saturating_duration_since(self.last_done) >= self.last_cost * IDLE_PER_BUILD;
        if self.period(applied) > self.period(snapshot) && rested {
            self.pending = Some((now, snapshot));
            return true;
        }
        false
    }

    /// Which period of `every` entries `index` lies in, this node's periods starting
    /// `phase` entries before the multiples of `every`.
    fn period(&self, index: u64) -> u64 {
        index.saturating_add(self.phase) / self.every
    }
}

/// Node `id`'s phase: a third of `every` per id, modulo three.
pub fn phase(id: u64, every: u64) -> u64 {
    every / STAGGER * (id % STAGGER)
}

/// Runs the policy for node `id`'s `raft` until Raft stops.
pub async fn run(raft: Raft, id: u64, every: u64) {
    let mut rx = raft.metrics();
    let mut policy = Policy::new(every, phase(id, every), Instant::now());
    loop {
        let (applied, snapshot) = {
            let m = rx.borrow_and_update();
            (
                m.last_applied.map_or(0, |l| l.index),
                m.snapshot.map_or(0, |l| l.index),
            )
        };
        if policy.due(applied, snapshot, Instant::now()) && raft.trigger().snapshot().await.is_err()
        {
            return;
        }
        // Woken by a Raft event, or after RECHECK to see whether the rest is over.
        if let Ok(Err(_)) = tokio::time::timeout(RECHECK, rx.changed()).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_after_every_entries_when_builds_are_cheap() {
        let t0 = Instant::now();
        let mut p = Policy::new(100, 0, t0);
        assert!(!p.due(99, 0, t0));
        assert!(p.due(100, 0, t0));
        // Asked once: not again until that build shows up.
        assert!(!p.due(250, 0, t0));
        // Built in 1 ms: due again as soon as 100 more entries are applied.
        let t1 = t0 + Duration::from_millis(1);
        assert!(!p.due(150, 100, t1));
        assert!(p.due(200, 100, t1 + Duration::from_millis(9)));
    }

    #[test]
    fn a_slow_build_spaces_the_next_one() {
        let t0 = Instant::now();
        let mut p = Policy::new(100, 0, t0);
        assert!(p.due(100, 0, t0));
        // The build took 2 s: the next waits 18 s more, however many entries arrive.
        let done = t0 + Duration::from_secs(2);
        assert!(!p.due(5_000, 100, done));
        assert!(!p.due(9_000, 100, done + Duration::from_secs(17)));
        assert!(p.due(9_000, 100, done + Duration::from_secs(18)));
    }

    #[test]
    fn a_request_that_never_shows_up_is_made_again() {
        let t0 = Instant::now();
        let mut p = Policy::new(100, 0, t0);
        assert!(p.due(100, 0, t0));
        assert!(!p.due(300, 0, t0 + GIVE_UP - Duration::from_millis(1)));
        assert!(p.due(300, 0, t0 + GIVE_UP));
    }

    #[test]
    fn nodes_build_at_staggered_indexes() {
        let t0 = Instant::now();
        // Three nodes, each asked as the same entries are applied: never two at one index.
        let mut nodes: Vec<Policy> = (1..=3)
            .map(|id| Policy::new(300, phase(id, 300), t0))
            .collect();
        let mut built: Vec<(u64, usize)> = Vec::new();
        let mut snapshot = [0u64; 3];
        for applied in 0..=1_200u64 {
            for (n, p) in nodes.iter_mut().enumerate() {
                if p.due(applied, snapshot[n], t0) {
                    built.push((applied, n));
                    // Built at once, and seen before the next entry: not due again.
                    snapshot[n] = applied;
                    assert!(!p.due(applied, snapshot[n], t0));
                }
            }
        }
        let at =
            |n: usize| -> Vec<u64> { built.iter().filter(|b| b.1 == n).map(|b| b.0).collect() };
        // Node 3 (phase 0) at the multiples; node 1 a third earlier, node 2 two thirds.
        assert_eq!(at(2), vec![300, 600, 900, 1_200]);
        assert_eq!(at(0), vec![200, 500, 800, 1_100]);
        assert_eq!(at(1), vec![100, 400, 700, 1_000]);
    }

    #[test]
    fn a_snapshot_installed_from_the_leader_counts_as_done() {
        let t0 = Instant::now();
        let mut p = Policy::new(10, 0, t0);
        assert!(p.due(10, 0, t0));
        // A newer snapshot arrives (installed, not built here): pending clears.
        assert!(!p.due(15, 12, t0 + Duration::from_millis(5)));
        assert!(p.due(22, 12, t0 + Duration::from_millis(100)));
    }
}
