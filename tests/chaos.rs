//! Chaos tests: a concurrent, recorded client workload against a real three-process cluster
//! while a nemesis injects one kind of fault, then checks on the whole history.
//!
//! Each scenario: fresh cluster → traffic → fault(s) → heal → more traffic → a final write and
//! read that must succeed (etcd's "tombstone" liveness check) → convergence → every version of
//! every key read back from every node → the history patched with the committed write order
//! and checked for per-key linearizability. A run that did too little, or whose fault did not
//! take hold, fails too. A failure writes a report (seed, timeline, history as JSON lines,
//! checker detail, node logs) and names it in the panic message.
//!
//! The runner is `common::scenario`, shared with the Docker mode (tests/chaos_docker.rs); this
//! file starts the process clusters (with a TCP proxy on every Raft link) and names the tests.
//!
//! `RAFTSAFE_CHAOS_SEED=N` replays a seed's choices (keys, ops, victims, drop decisions; the
//! timing is not deterministic). `RAFTSAFE_CHAOS_SOAK=1` enables the longer `soak` test.

mod common;

use std::sync::Arc;
use std::time::Instant;

use common::cluster::{Cluster, Opts};
use common::nemesis::{Local, Nemesis};
use common::scenario::{self, assert_passed, seed, Plan, Summary};
use common::workload::{self, mix, Rng};

/// The server gives up on a request after 1 s (503), before the client's 1.5 s: both
/// indeterminate outcomes show up in histories.
const REQUEST_TIMEOUT_MS: &str = "1000";

/// Starts a fresh process cluster with the nemesis's flags and runs the scenario on it.
async fn run_scenario(nemesis: Nemesis, seed: u64, plan: Plan) -> Summary {
    let began = Instant::now();
    let mut flags = vec![(
        "--request-timeout-ms".to_string(),
        REQUEST_TIMEOUT_MS.to_string(),
    )];
    flags.extend(nemesis.flags());
    // TLS and tokens on, as in production: the suite runs against the real configuration.
    let cluster = Cluster::start(Opts {
        nodes: 3,
        proxies: true,
        flags,
        tls: true,
    })
    .await;
    // Reproducible drop and delay choices on the links.
    for ((from, to), p) in &cluster.proxies {
        p.set_seed(mix(seed ^ (from << 8 | to)));
    }
    let local = Arc::new(Local::new(cluster));
    scenario::run_scenario(local, "", nemesis, seed, plan, began).await
}

async fn scenario(nemesis: Nemesis) {
    assert_passed(&run_scenario(nemesis, seed(), Plan::quick()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_leader() {
    scenario(Nemesis::KillLeader).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_follower() {
    scenario(Nemesis::KillFollower).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_all() {
    scenario(Nemesis::KillAll).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pause_leader() {
    scenario(Nemesis::PauseLeader).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn isolate_leader() {
    scenario(Nemesis::IsolateLeader).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn isolate_follower_until_snapshot() {
    scenario(Nemesis::IsolateFollowerSnapshot).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bridge_partition() {
    scenario(Nemesis::Bridge).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flaky_links() {
    scenario(Nemesis::FlakyLink).await;
}

/// Every scenario with several events each and longer traffic, then a summary table.
/// Runs only with `RAFTSAFE_CHAOS_SOAK=1` (about 10 minutes).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn soak() {
    if std::env::var("RAFTSAFE_CHAOS_SOAK").as_deref() != Ok("1") {
        eprintln!("soak skipped: set RAFTSAFE_CHAOS_SOAK=1 to run it");
        return;
    }
    let seed = seed();
    let mut rows = Vec::new();
    for (i, n) in Nemesis::ALL.into_iter().enumerate() {
        rows.push(run_scenario(n, seed.wrapping_add(i as u64), Plan::soak()).await);
    }
    let mut table = format!(
        "\n{:<26} {:>6} {:>6} {:>6} {:>6} {:>10} {:>24} {:>6}\n",
        "scenario", "events", "ops", "acked", "indet", "violations", "failover ms (max)", "result"
    );
    for s in &rows {
        let max = s.failover_ms.iter().flatten().max();
        table.push_str(&format!(
            "{:<26} {:>6} {:>6} {:>6} {:>6} {:>10} {:>24} {:>6}\n",
            s.scenario,
            s.events,
            s.ops,
            s.acked,
            s.indeterminate,
            s.violations,
            max.map_or("-".into(), |m| m.to_string()),
            if s.failures.is_empty() {
                "PASS"
            } else {
                "FAIL"
            }
        ));
    }
    eprintln!("{table}");
    let failed: Vec<String> = rows
        .iter()
        .filter(|s| !s.failures.is_empty())
        .map(|s| {
            let report = s
                .report
                .as_ref()
                .map_or("-".into(), |p| p.display().to_string());
            format!("{}: {report}", s.scenario)
        })
        .collect();
    assert!(failed.is_empty(), "soak failures:\n{}", failed.join("\n"));
}

/// The workload's pieces on their own, without a cluster: unique values, seeded choices.
#[test]
fn rng_is_seeded_and_spread() {
    let mut a = Rng::new(7);
    let mut b = Rng::new(7);
    let xs: Vec<u64> = (0..100).map(|_| a.below(12)).collect();
    let ys: Vec<u64> = (0..100).map(|_| b.below(12)).collect();
    assert_eq!(xs, ys);
    assert!((0..12).all(|k| xs.contains(&k)), "{xs:?}");
    assert_eq!(workload::key_path(3), "chaos/k03");
}
