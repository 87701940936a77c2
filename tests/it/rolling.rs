//! A rolling restart under load, done the way an operator upgrades a cluster: one node at a
//! time, followers first and the leader last, each stopped with SIGTERM (what `systemctl
//! stop` and `docker stop` send), started again on its data directory, and the next one
//! touched only once this one reports ready (`/health/ready`: it knows a leader and has
//! applied what that leader committed).
//!
//! What the cluster promises, checked here with eight writers running throughout, each
//! retrying a write on the next node (with the same `X-Request-Id`, so a retry can never
//! apply twice) for up to [`WRITE_BUDGET`], as a client of a cluster does:
//! - **No failed write outside the failover window.** Restarting a follower fails no write,
//!   and no running node answers a write with an error meanwhile. Stopping the leader costs
//!   one election; writes may fail, and nodes answer 503, only within [`FAILOVER`] of that
//!   SIGTERM.
//! - **A stopping node drains**: between its SIGTERM and its exit it answers no request with
//!   an error, the leader included. It stops accepting, finishes the requests it holds while
//!   still a full Raft member, and stops its Raft core only then.
//! - **A relaying node retries**: one that relayed a write to a leader that is shutting down
//!   retries it with the next leader; it never passes that leader's 503 on.
//! - **No acknowledged write lost**: at the end every key holds at least the last value
//!   acknowledged for it, read linearizably through every node, and the nodes converge.
//!
//! [`FAILOVER`] is a liveness bound, not a speed target: an election here takes about a
//! second and a half (election timeout plus a vote round); the bound is several of them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use raftsafe::client::Method;
use serde_json::json;

use crate::harness::cluster::{Cluster, Opts};
use crate::harness::nodes::Nodes;

const WRITERS: u64 = 8;
/// Keys per writer; each write sets one of them to the writer's next sequence number.
const KEYS: u64 = 4;
/// How long one write is retried, node after node, before it counts as failed.
const WRITE_BUDGET: Duration = Duration::from_secs(4);
/// Writes sent this long after the leader's SIGTERM must succeed again.
const FAILOVER: Duration = Duration::from_secs(8);
/// How long a node may take to exit after SIGTERM (the drain is at most five seconds).
const STOP_WITHIN: Duration = Duration::from_secs(15);
/// Writing goes on this long between two turns.
const SETTLE: Duration = Duration::from_secs(5);
/// How long a follower stays down.
const DOWN: Duration = Duration::from_secs(1);

/// One write as the writer saw it.
#[derive(Debug)]
struct Outcome {
    seq: u64,
    key: String,
    /// Milliseconds since the test's start at which the write was first sent.
    sent_ms: u128,
    acked: bool,
    /// Every answer that was not a success: when it came (milliseconds since the test's
    /// start), the node that gave it, its status (0: a transport error) and what it said.
    errors: Vec<(u128, u64, u16, String)>,
}

/// One node's turn: when it got SIGTERM, exited, and was ready again (ms since the start).
#[derive(Debug)]
struct Turn {
    node: u64,
    leader: bool,
    sigterm: u128,
    exited: u128,
    ready: u128,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rolling_restart_under_load_fails_no_write_outside_the_failover_window() {
    let c = Arc::new(
        Cluster::start(Opts {
            tls: true,
            ..Default::default()
        })
        .await,
    );
    let t0 = Instant::now();
    let ms = move || t0.elapsed().as_millis();
    let first = c.leader(Duration::from_secs(30)).await;
    let outcomes = Arc::new(Mutex::new(Vec::<Outcome>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (c, outcomes, stop) = (c.clone(), outcomes.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut seq = 0u64;
            while !stop.load(Ordering::SeqCst) {
                seq += 1;
                let out = write(&c, t0, w, seq).await;
                outcomes.lock().unwrap().push(out);
            }
        }));
    }

    let acked = |outcomes: &Mutex<Vec<Outcome>>| {
        outcomes.lock().unwrap().iter().filter(|o| o.acked).count()
    };
    // Load before the first restart and between restarts: at least 200 acknowledged writes
    // and SETTLE, so that a write failing in one turn is never taken for one retrying into
    // the next (the leader's failover window starts WRITE_BUDGET before its SIGTERM).
    let settle = |outcomes: Arc<Mutex<Vec<Outcome>>>| async move {
        let (before, since) = (acked(&outcomes), Instant::now());
        let deadline = since + Duration::from_secs(30);
        while acked(&outcomes) < before + 200 || since.elapsed() < SETTLE {
            assert!(Instant::now() < deadline, "the writers stalled");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    settle(outcomes.clone()).await;

    let mut order: Vec<u64> = c.ids().into_iter().filter(|id| *id != first).collect();
    order.push(first);
    let mut turns = Vec::new();
    for id in order {
        let leader = c.leader(Duration::from_secs(30)).await == id;
        let sigterm = ms();
        c.stop(id, STOP_WITHIN);
        let exited = ms();
        // An upgrade keeps a node down for a while (a new binary, a host reboot): long
        // enough here that a stopped leader is replaced before it returns (a leader back
        // within its lease takes its place again, and no failover would be tested).
        if leader {
            let others: Vec<u64> = c.ids().into_iter().filter(|o| *o != id).collect();
            let elected = c.wait_leader(&others, 0, Duration::from_secs(30)).await;
            assert!(elected.is_some(), "no new leader:\n{}", c.logs_tail(40));
        } else {
            tokio::time::sleep(DOWN).await;
        }
        c.restart(id);
        wait_ready(&c, id).await;
        turns.push(Turn {
            node: id,
            leader,
            sigterm,
            exited,
            ready: ms(),
        });
        settle(outcomes.clone()).await;
    }
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.await.expect("writer");
    }

    let outcomes = std::mem::take(&mut *outcomes.lock().unwrap());
    let mut report: Vec<String> = turns.iter().map(|t| format!("{t:?}")).collect();
    let leader_turn = turns
        .iter()
        .find(|t| t.leader)
        .expect("the leader was restarted");
    // The failover window: from the leader's SIGTERM to FAILOVER later. A write sent up to
    // WRITE_BUDGET before it may still be retrying into it.
    let failover = leader_turn.sigterm..leader_turn.sigterm + FAILOVER.as_millis();
    let may_fail = failover.start.saturating_sub(WRITE_BUDGET.as_millis())..failover.end;
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| !o.acked).collect();
    let outside: Vec<&&Outcome> = failed
        .iter()
        .filter(|o| !may_fail.contains(&o.sent_ms))
        .collect();
    let answers: Vec<&(u128, u64, u16, String)> = outcomes
        .iter()
        .flat_map(|o| o.errors.iter())
        .filter(|(_, _, status, _)| *status != 0)
        .collect();
    // An error answered by a node while it drained (SIGTERM to exit; the answer is read a
    // moment after it was sent).
    let drain_errors: Vec<_> = answers
        .iter()
        .filter(|(at, node, _, _)| {
            turns
                .iter()
                .any(|t| t.node == *node && (t.sigterm..=t.exited + 50).contains(at))
        })
        .collect();
    // An error answered by a node that was not restarting, outside the failover window.
    let running_errors: Vec<_> = answers
        .iter()
        .filter(|(at, node, _, _)| {
            !failover.contains(at)
                && !turns
                    .iter()
                    .any(|t| t.node == *node && (t.sigterm..=t.ready).contains(at))
        })
        .collect();
    // A node that relayed a write to a leader that is shutting down retries it with the next
    // leader instead of passing that 503 on: only a stopping node says it stops.
    let passed_on: Vec<_> = answers
        .iter()
        .filter(|(_, node, _, what)| {
            what.contains("is shutting down")
                && !what.contains(&format!("node {node} is shutting down"))
        })
        .collect();
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for (_, node, status, what) in outcomes.iter().flat_map(|o| o.errors.iter()) {
        let what: String = what.chars().take(50).collect();
        *kinds
            .entry(format!("node {node}: {status} {what}"))
            .or_default() += 1;
    }
    for (what, n) in &kinds {
        report.push(format!("  retried {n}x: {what}"));
    }
    report.push(format!(
        "{} writes, {} acknowledged, {} failed ({} outside the window {may_fail:?} ms)",
        outcomes.len(),
        outcomes.len() - failed.len(),
        failed.len(),
        outside.len()
    ));
    let report = report.join("\n");
    eprintln!("{report}");
    assert!(
        outside.is_empty(),
        "writes failed outside the failover window:\n{:#?}\n{report}\n{}",
        outside.iter().take(10).collect::<Vec<_>>(),
        c.logs_tail(40)
    );
    assert!(
        drain_errors.is_empty(),
        "a stopping node answered with errors while it drained:\n{:#?}\n{report}",
        drain_errors.iter().take(10).collect::<Vec<_>>()
    );
    assert!(
        passed_on.is_empty(),
        "a node passed on another node's shutdown instead of retrying:\n{:#?}\n{report}",
        passed_on.iter().take(10).collect::<Vec<_>>()
    );
    assert!(
        running_errors.is_empty(),
        "running nodes answered writes with errors outside the failover window:\n{:#?}\n{report}",
        running_errors.iter().take(10).collect::<Vec<_>>()
    );

    // No acknowledged write lost: every key holds at least its last acknowledged value, on
    // every node (each GET is linearizable).
    let mut last_acked: BTreeMap<&str, u64> = BTreeMap::new();
    for o in outcomes.iter().filter(|o| o.acked) {
        let e = last_acked.entry(o.key.as_str()).or_default();
        *e = (*e).max(o.seq);
    }
    assert_eq!(
        last_acked.len() as u64,
        WRITERS * KEYS,
        "every key was written"
    );
    for id in c.ids() {
        for (key, want) in &last_acked {
            let r = c.get(id, key).await.expect("read back");
            assert_eq!(r.status, 200, "{key} on node {id}: {:?}", r.body);
            let got = r.body["data"]["seq"].as_u64().unwrap_or(0);
            assert!(
                got >= *want,
                "node {id}: {key} holds {got}, but {want} was acknowledged"
            );
        }
    }
    c.converged(Duration::from_secs(30)).await;
}

/// One write of writer `w`'s `seq`-th value, retried node after node with one request id.
async fn write(c: &Cluster, t0: Instant, w: u64, seq: u64) -> Outcome {
    let key = format!("rolling/w{w}/k{}", seq % KEYS);
    let body = json!({ "data": { "seq": seq } }).to_string().into_bytes();
    let request_id = format!("rolling-{w}-{seq}");
    let ids = c.ids();
    let sent = Instant::now();
    let mut out = Outcome {
        seq,
        key,
        sent_ms: t0.elapsed().as_millis(),
        acked: false,
        errors: Vec::new(),
    };
    for attempt in 0.. {
        if sent.elapsed() >= WRITE_BUDGET {
            break;
        }
        let via = ids[((w + seq + attempt) as usize) % ids.len()];
        let r = c
            .client(via)
            .with_timeout(Duration::from_secs(2))
            .send(
                Method::PUT,
                &format!("/api/v1/secrets/{}", out.key),
                Some(body.clone()),
                &[("x-request-id", &request_id)],
                None,
            )
            .await;
        let at = t0.elapsed().as_millis();
        match r {
            Ok(r) if r.status == 200 => {
                out.acked = true;
                break;
            }
            Ok(r) => out
                .errors
                .push((at, via, r.status, r.body["detail"].to_string())),
            Err(e) => out.errors.push((at, via, 0, e.to_string())),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    out
}

/// Waits until node `id` answers `/health/ready` with 200.
async fn wait_ready(c: &Cluster, id: u64) {
    let since = Instant::now();
    let client = c.client(id).with_timeout(Duration::from_secs(2));
    loop {
        if let Ok(r) = client.ready().await {
            if r.status == 200 {
                return;
            }
        }
        assert!(
            since.elapsed() < Duration::from_secs(60),
            "node {id} not ready within 60 s of its restart:\n{}",
            c.node_log(id)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
