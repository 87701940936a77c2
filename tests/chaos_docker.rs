//! Chaos tests, Docker mode: the same workload, recorder, nemeses and checks as tests/chaos.rs
//! (the runner is `common::scenario`), against the three-node compose cluster of
//! docker-compose.yml, reached only through the API ports it publishes on 127.0.0.1, with
//! faults applied from the host: `docker kill`/`start`, `docker pause`/`unpause`, and iptables
//! rules inside a container's network namespace (see `common::docker`).
//!
//! Each scenario runs on a fresh cluster: `cluster/down.sh --wipe`, then `cluster/up.sh`
//! (about 5 s), because the checker assumes every key starts absent and a scenario's faults
//! (a node left behind, a term bumped by an isolated node) should not leak into the next.
//! The nodes run with the compose file's production settings (5 s server request timeout,
//! 1.5-3 s election timeout); the client gives up after 1.5 s as in process mode.
//!
//! Needs: a Docker engine, `cluster/build-image.sh` run on the current tree (the test warns if
//! the image's binary is not this build's), root, and `iptables` + `nsenter` on the host.
//! Without a Docker engine the tests print a notice and pass, unless
//! `RAFTSAFE_REQUIRE_DOCKER=1`, which makes them fail. A failure report goes to
//! `$CARGO_TARGET_DIR/chaos-reports/docker-<scenario>-<seed>.txt`, with `docker logs` tails.
//! `RAFTSAFE_CHAOS_SEED=N` replays a seed's choices; `RAFTSAFE_CHAOS_DOCKER_KEEP=1` leaves the
//! last cluster running for a post-mortem.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::docker::{docker_available, ComposeCluster};
use common::nemesis::Nemesis;
use common::scenario::{self, assert_passed, seed, Plan};

/// The compose cluster has fixed container names and ports, so two scenarios can never run
/// at once. nextest runs each test in its own process (and .config/nextest.toml one
/// integration test at a time); this lock covers `cargo test`'s threads.
/// An async lock: it is held across the whole scenario, and each test has its own runtime.
static ONE_CLUSTER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// About 20 s of traffic, one event. The fault is held 8 s rather than process mode's 6 s:
/// with the compose file's default 1.5-3 s election timeout, openraft 0.9 lets a follower
/// campaign only after its leader lease (= the maximum election timeout, 3 s) plus its own
/// election timeout, i.e. 4.5-6 s after the last heartbeat (observed: ~6.05 s), which left
/// too little traffic under the new leader within 6 s. A split vote still takes longer; the
/// nemesis then holds the fault until the election is over (`ELECTION_GRACE`).
fn plan() -> Plan {
    Plan {
        before: Duration::from_secs(5),
        hold: Duration::from_secs(8),
        gap: Duration::ZERO,
        after: Duration::from_secs(7),
        events: 1,
    }
}

async fn docker_scenario(nemesis: Nemesis) {
    let _one = ONE_CLUSTER.lock().await;
    if !docker_available() {
        return;
    }
    let seed = seed();
    let began = Instant::now();
    // up.sh takes seconds; keep it off the runtime's workers.
    let cluster = tokio::task::spawn_blocking(ComposeCluster::up)
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    eprintln!(
        "compose cluster up in {:.1}s",
        began.elapsed().as_secs_f64()
    );
    let cluster = Arc::new(cluster);
    let summary =
        scenario::run_scenario(cluster.clone(), "docker-", nemesis, seed, plan(), began).await;
    // Wipe before asserting (a panic would wipe too, on unwinding) while holding the lock.
    drop(cluster);
    assert_passed(&summary);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn docker_kill_leader() {
    docker_scenario(Nemesis::KillLeader).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn docker_pause_leader() {
    docker_scenario(Nemesis::PauseLeader).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn docker_isolate_leader() {
    docker_scenario(Nemesis::IsolateLeader).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn docker_kill_all() {
    docker_scenario(Nemesis::KillAll).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn docker_isolate_follower() {
    docker_scenario(Nemesis::IsolateFollower).await;
}
