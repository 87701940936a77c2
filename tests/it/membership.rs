//! Membership changes an operator makes, and what the cluster promises about them.
//!
//! - A removal that would leave fewer healthy voters than a quorum is refused (409).
//! - A change the client stopped waiting for (its request timed out) still runs to its end:
//!   openraft changes membership in two steps, a joint configuration and then the new one,
//!   and the cluster must never be left in the joint one. While a change is in flight,
//!   `GET /cluster` says so and lists every node that still counts toward elections as a
//!   voter; once it is done, the removed node may be stopped along with the leader and the
//!   other two elect. This is the election storm of docs/soak.md run 4, made deterministic.
//! - A new member votes only once it has been stable: caught up, then answering every
//!   append for 2 s (autopilot's stabilization); until then it is a learner.
//! - Replacing members under load: start a new node, add it (learner, then voter), remove an
//!   old follower and stop it, and lose the leader 50 ms later; five rounds, eight writers
//!   throughout. After each leader loss the two surviving voters elect a leader and
//!   acknowledge writes again within [`RECOVERY`].
//!
//! [`RECOVERY`] is a liveness bound, not a speed target: normal failover here takes about a
//! second, and the bound is many election timeouts.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::cluster::{Cluster, Opts};
use crate::harness::nodes::Nodes;

/// How long the survivors may take to acknowledge a write after the leader is lost.
const RECOVERY: Duration = Duration::from_secs(10);
const ROUNDS: u64 = 5;
const WRITERS: u64 = 8;

/// Voters and learners as node `via` sees them.
async fn membership(c: &Cluster, via: u64) -> Option<(Vec<u64>, Vec<u64>)> {
    let r = c
        .client(via)
        .with_timeout(Duration::from_secs(2))
        .cluster_status()
        .await
        .ok()?;
    let members = r.body["members"].as_array().filter(|_| r.status == 200)?;
    let (mut voters, mut learners) = (Vec::new(), Vec::new());
    for m in members {
        let id = m["id"].as_u64()?;
        if m["voter"] == true {
            voters.push(id);
        } else {
            learners.push(id);
        }
    }
    Some((voters, learners))
}

/// The current leader; panics with the logs if there is none within 30 s.
async fn leader(c: &Cluster) -> u64 {
    let running: Vec<u64> = c.ids().into_iter().filter(|i| c.is_running(*i)).collect();
    match c.wait_leader(&running, 0, Duration::from_secs(30)).await {
        Some((id, _)) => id,
        None => panic!("no leader among {running:?}\n{}", c.logs_tail(40)),
    }
}

/// The writes acknowledged so far, and when the latest of them was sent.
struct Acks {
    t0: Instant,
    /// Milliseconds since `t0` at which the latest acknowledged write was sent.
    last_sent_ms: AtomicU64,
    count: AtomicU64,
}

impl Acks {
    fn ack(&self, sent: Instant) {
        let ms = sent.duration_since(self.t0).as_millis() as u64;
        self.last_sent_ms.fetch_max(ms, Ordering::SeqCst);
        self.count.fetch_add(1, Ordering::SeqCst);
    }

    /// Waits until a write sent after `since` is acknowledged; returns how long after `since`
    /// that was (to within the 10 ms poll).
    async fn first_after(&self, since: Instant, within: Duration) -> Option<Duration> {
        let since_ms = since.duration_since(self.t0).as_millis() as u64;
        while since.elapsed() < within {
            if self.last_sent_ms.load(Ordering::SeqCst) > since_ms {
                return Some(since.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        None
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replacing_members_under_load_never_leaves_the_cluster_without_a_leader() {
    let c = Arc::new(
        Cluster::start(Opts {
            nodes: 3 + ROUNDS,
            standby: ROUNDS,
            tls: true,
            proxies: true,
            flags: vec![("--request-timeout-ms".into(), "1000".into())],
            ..Default::default()
        })
        .await,
    );
    leader(&c).await;
    let acks = Arc::new(Acks {
        t0: Instant::now(),
        last_sent_ms: AtomicU64::new(0),
        count: AtomicU64::new(0),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (c, acks, stop) = (c.clone(), acks.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                // Spread the writers over the members that run now.
                let running: Vec<u64> = c.ids().into_iter().filter(|i| c.is_running(*i)).collect();
                let Some(via) = running.get(((w + n) as usize) % running.len().max(1)) else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let client = c.client(*via).with_timeout(Duration::from_secs(2));
                let sent = Instant::now();
                match client
                    .put(&format!("w{w}/k{}", n % 50), &json!({ "n": n }), None)
                    .await
                {
                    Ok(r) if r.status == 200 => acks.ack(sent),
                    _ => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        }));
    }

    let mut report = Vec::new();
    let mut stalled = Vec::new();
    for round in 1..=ROUNDS {
        let new = 3 + round;
        c.join(new);
        let l = leader(&c).await;
        let r = c
            .client(l)
            .with_timeout(Duration::from_secs(30))
            .add_member(
                new,
                &c.nodes[&new].raft.to_string(),
                &c.api(new).to_string(),
            )
            .await
            .expect("add answered");
        assert_eq!(r.status, 200, "round {round}: add {new}: {:?}", r.body);
        let (voters, _) = membership(&c, l).await.expect("membership");
        assert!(
            voters.contains(&new),
            "round {round}: {new} not a voter: {voters:?}"
        );

        // Remove an old follower: neither the leader nor the new node, the newest first.
        let l = leader(&c).await;
        let gone = voters
            .iter()
            .copied()
            .filter(|id| *id != l && *id != new)
            .max()
            .expect("a follower to remove");
        let r = c
            .client(l)
            .with_timeout(Duration::from_secs(30))
            .remove_member(gone)
            .await
            .expect("remove answered");
        assert_eq!(r.status, 204, "round {round}: remove {gone}: {:?}", r.body);
        c.retire(gone);
        tokio::time::sleep(Duration::from_millis(50)).await;

        let survivors: Vec<u64> = c.ids().into_iter().filter(|id| *id != l).collect();
        c.kill(l);
        let killed = Instant::now();
        let recovered = acks.first_after(killed, RECOVERY).await;
        report.push(format!(
            "round {round}: added {new}, removed {gone}, killed leader {l}; survivors {survivors:?}: \
             first write acknowledged after {recovered:?}"
        ));
        if recovered.is_none() {
            stalled.push(round);
            // Let it recover with the old leader back, to see the next rounds.
        }
        c.restart(l);
    }
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.await.expect("writer");
    }
    report.push(format!(
        "{} writes acknowledged",
        acks.count.load(Ordering::SeqCst)
    ));
    let report = report.join("\n");
    eprintln!("{report}");
    assert!(
        stalled.is_empty(),
        "no write acknowledged within {RECOVERY:?} of losing the leader in rounds {stalled:?}:\n\
         {report}\n{}",
        c.logs_tail(60)
    );
    assert!(acks.count.load(Ordering::SeqCst) > 0);
    c.converged(Duration::from_secs(30)).await;
}

/// The two nodes of a three-node cluster other than `l`.
/// The leader, once both other nodes have answered its appends without a break for a
/// second (its `GET /cluster` health): a node resumed after a pause campaigns when it wakes,
/// and a leader taken before that may be gone a moment later.
async fn settled_leader(c: &Cluster) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let l = leader(c).await;
        let steady = |r: &serde_json::Value| {
            r["members"].as_array().is_some_and(|ms| {
                ms.iter()
                    .filter(|m| m["id"] != l)
                    .all(|m| m["health"]["stableMs"].as_u64().is_some_and(|s| s >= 1000))
            })
        };
        if let Ok(r) = c.client(l).cluster_status().await {
            if r.status == 200 && steady(&r.body) {
                return l;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no leader that both followers answered steadily for 1 s within 30 s\n{}",
            c.logs_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn followers_of(l: u64) -> (u64, u64) {
    let f: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != l).collect();
    (f[0], f[1])
}

/// `GET /cluster` on node `via`: (voters, learners, the change in flight if any).
async fn view(c: &Cluster, via: u64) -> (Vec<u64>, Vec<u64>, Option<String>) {
    let r = c
        .client(via)
        .cluster_status()
        .await
        .expect("cluster status");
    assert_eq!(r.status, 200, "{:?}", r.body);
    let (voters, learners) = membership(c, via).await.expect("membership");
    let change = r.body["membershipChange"].as_str().map(str::to_string);
    (voters, learners, change)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_removal_the_client_gave_up_on_still_completes_and_never_strands_the_cluster() {
    let c = Cluster::start(Opts {
        tls: false,
        flags: vec![("--request-timeout-ms".into(), "1000".into())],
        ..Default::default()
    })
    .await;
    let l = leader(&c).await;
    let (a, b) = followers_of(l);
    // With a stopped for seconds, removing b would leave {l, a} with one healthy voter of
    // two: refused, and nothing changes.
    c.pause(a);
    let silent = Instant::now();
    loop {
        let r = c.client(l).cluster_status().await.expect("cluster status");
        let a_healthy = r.body["members"].as_array().and_then(|ms| {
            ms.iter()
                .find(|m| m["id"] == a)
                .map(|m| m["health"]["healthy"] == true)
        });
        if a_healthy == Some(false) {
            break;
        }
        assert!(
            silent.elapsed() < Duration::from_secs(10),
            "leader {l} still counts stopped node {a} healthy after 10 s: {:?}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = c.client(l).remove_member(b).await.unwrap();
    assert_eq!(r.status, 409, "{:?}", r.body);
    let detail = r.body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(&format!("node {a} (last answered")),
        "{detail}"
    );
    assert_eq!(view(&c, l).await, (vec![1, 2, 3], vec![], None));
    c.resume(a);
    // a may campaign when it wakes up (its election timer ran out while it was stopped):
    // take the leader and followers afresh once both followers answer it steadily.
    let l = settled_leader(&c).await;
    let (a, b) = followers_of(l);

    // Remove b the moment a stops (a still counts as healthy: it answered just now). The
    // leader and b are a quorum of {l, a, b}, so requests are served, but the new
    // configuration {l, a} cannot commit without a.
    c.pause(a);
    let r = c.client(l).remove_member(b).await.unwrap();
    assert_eq!(
        r.status, 503,
        "not done within the request timeout: {:?}",
        r.body
    );
    let detail = r.body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("goes on"), "{detail}");
    let (voters, _, change) = view(&c, l).await;
    assert!(
        voters.contains(&b),
        "node {b} still decides elections: {voters:?}"
    );
    let change = change.unwrap_or_else(|| panic!("no change in flight reported: {voters:?}"));
    assert!(change.contains("must keep running"), "{change}");

    // a returns; nobody asks again. The change must finish both of its steps (before, the
    // second step was dropped with the request and the joint configuration stayed).
    c.resume(a);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (voters, learners, change) = view(&c, a).await;
        if change.is_none() && !voters.contains(&b) && !learners.contains(&b) {
            let mut want = vec![l, a];
            want.sort();
            assert_eq!(voters, want);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the removal of {b} never completed: voters {voters:?}, learners {learners:?}, \
             change {change:?}\n{}",
            c.logs_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // b may go now; the two left serve writes.
    c.retire(b);
    let r = c
        .put(a, "after/removal", json!({ "ok": true }))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
}

/// A new member becomes a voter only once it has caught up and answered every append for
/// the stabilization time (2 s, autopilot's `server_stabilization_time`): until then it is a
/// learner, which decides no election, and the leader's `GET /cluster` shows how long it has
/// been stable. The add waits for that on top of the request timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_member_votes_only_once_it_has_been_stable() {
    let c = Arc::new(
        Cluster::start(Opts {
            nodes: 4,
            standby: 1,
            tls: false,
            flags: vec![("--request-timeout-ms".into(), "1000".into())],
            ..Default::default()
        })
        .await,
    );
    let l = leader(&c).await;
    c.join(4);
    let started = Instant::now();
    let add = {
        let c = c.clone();
        tokio::spawn(async move {
            let r = c
                .client(l)
                .with_timeout(Duration::from_secs(30))
                .add_member(4, &c.nodes[&4].raft.to_string(), &c.api(4).to_string())
                .await
                .expect("add answered");
            (r, started.elapsed())
        })
    };
    // While the add runs, node 4 is seen as a learner with a growing stable time, never as
    // a voter before it has been stable for 2 s.
    let mut seen_learner = None;
    while !add.is_finished() {
        let r = c.client(l).cluster_status().await.expect("status");
        let member = r.body["members"]
            .as_array()
            .and_then(|ms| ms.iter().find(|m| m["id"] == 4).cloned());
        if let Some(m) = member {
            let stable = m["health"]["stableMs"].as_u64();
            if m["voter"] == true {
                assert!(
                    stable.is_some_and(|ms| ms >= 2000),
                    "node 4 votes after being stable for {stable:?} ms: {m}"
                );
            } else {
                seen_learner = seen_learner.or(stable);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (r, took) = add.await.unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(
        took >= Duration::from_secs(2),
        "promoted {took:?} after the add began, before it could have been stable for 2 s"
    );
    assert!(
        seen_learner.is_some(),
        "node 4 was never seen as a learner with a stable time"
    );
    let (voters, learners) = membership(&c, l).await.expect("membership");
    assert_eq!((voters, learners), (vec![1, 2, 3, 4], vec![]));
    let stable = c.client(l).cluster_status().await.unwrap().body["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == 4)
        .unwrap()["health"]["stableMs"]
        .as_u64();
    assert!(stable.is_some_and(|ms| ms >= 2000), "{stable:?}");
}
