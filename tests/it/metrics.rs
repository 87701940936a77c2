//! `/metrics`, read by the reference Prometheus parser (`prometheus_client`, run through
//! `tests/python/parse_metrics.py`), on a real TLS cluster: the series move when writes,
//! refusals and elections happen, and no label carries a secret path.
//!
//! Invariants checked: `/metrics` needs a `metrics` or `admin` token (401 without, 403 with
//! another scope); the exposition parses; request counters, fsync'd append and batch
//! histograms, forwarding and auth-failure counters move with the traffic that should move
//! them; a leader's death shows in the survivors' leader-change counter and term; latency
//! series are histograms; the optional loopback listener serves it without a token; writes
//! sent to a follower at once share relayed requests and each keeps its own answer.
//!
//! Python: `RAFTSAFE_TEST_PYTHON` (set by `.ci/run` to its venv), else `.venv/bin/python`
//! at the repository root, else `python3`; it must have `prometheus_client`
//! (`tests/python/requirements.txt`). Without it the test fails and says how to install it.

use std::time::Duration;

use raftsafe::client::{Client, Method};
use serde_json::{json, Value};

use crate::harness::cluster::{Cluster, Opts};
use crate::harness::nodes::Nodes;
use crate::harness::python;
use crate::harness::wait::until;

/// Every sample of the exposition, as the reference parser reads it.
fn parse(text: &str) -> Vec<Value> {
    let out = python::run("parse_metrics.py", &[], text.as_bytes());
    assert!(
        out.status.success(),
        "the Prometheus parser refused the exposition:\n{}",
        python::failure(&out)
    );
    serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap()
}

async fn scrape(c: &Client) -> Vec<Value> {
    let r = c.request(Method::GET, "/metrics", None).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.detail());
    assert!(r
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/plain")));
    parse(&String::from_utf8_lossy(&r.bytes))
}

/// The value of `name` whose labels include all of `labels` (summed over the others).
fn value(samples: &[Value], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s["name"] == name)
        .filter(|s| labels.iter().all(|(k, v)| s["labels"][*k] == *v))
        .map(|s| s["value"].as_f64().unwrap())
        .sum()
}

/// The node's last log index, as it reports it (`/cluster/self`).
async fn last_log_index(c: &Client) -> u64 {
    let r = c.node_status().await.unwrap();
    assert_eq!(r.status, 200, "{}", r.detail());
    r.body["lastLogIndex"].as_u64().unwrap()
}

/// A scrape of `c` taken once its sampler (`server::sample_metrics`, a tick a second) has run
/// since the node applied entry `index`, i.e. once the sampled `raftsafe_raft_applied_index`
/// has reached it: the gauges sampled in the same tick (term, is-leader, leader changes) then
/// show the state as of that entry or later. Polls; fails after 15 s.
async fn scrape_sampled_after(c: &Client, index: u64) -> Vec<Value> {
    let what = format!(
        "a metrics sampler tick at {} after it applied index {index}",
        c.base()
    );
    until(Duration::from_secs(15), &what, async || {
        let samples = scrape(c).await;
        let sampled = value(&samples, "raftsafe_raft_applied_index", &[]);
        if sampled >= index as f64 {
            Ok(samples)
        } else {
            Err(format!("sampled applied index {sampled}"))
        }
    })
    .await
}

fn family_type(samples: &[Value], sample: &str) -> String {
    samples
        .iter()
        .find(|s| s["name"] == sample)
        .map_or(String::new(), |s| s["type"].as_str().unwrap().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_move_with_writes_refusals_and_elections() {
    let c = Cluster::start(Opts::default()).await;
    let leader = c.leader(Duration::from_secs(30)).await;
    let follower = c.nodes.keys().copied().find(|id| *id != leader).unwrap();
    let (cl, cf) = (c.client(leader), c.client(follower));

    // Who may scrape.
    let r = cl
        .with_token(None)
        .request(Method::GET, "/metrics", None)
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    let reader = cl
        .create_token("read:secret", &["read:secret"], &["*"], None)
        .await
        .unwrap();
    let scraper = cl
        .create_token("metrics", &["metrics"], &["*"], None)
        .await
        .unwrap();
    assert_eq!((reader.status, scraper.status), (201, 201));
    let r = cl
        .with_token(reader.body["token"].as_str())
        .request(Method::GET, "/metrics", None)
        .await
        .unwrap();
    assert_eq!(r.status, 403, "a read:secret token may not scrape");
    let scraper = cl.with_token(scraper.body["token"].as_str());

    let before_l = scrape(&scraper).await;
    let before_f = scrape(&cf).await;
    let put_route = [
        ("route", "/api/v1/secrets/{*path}"),
        ("method", "PUT"),
        ("status", "200"),
    ];
    for i in 0..50 {
        let r = cf
            .put(&format!("metrics-canary-path/{i}"), &json!({"i": i}), None)
            .await
            .unwrap();
        assert_eq!(r.status, 200);
    }
    let r = cf
        .with_token(Some("rs.not-a-token-at-all-000000"))
        .get("x", None)
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    // Both nodes sampled once more after applying every write: the gauges below (is-leader)
    // come from the sampler, not from the requests.
    let written = last_log_index(&cl).await;
    let after_l = scrape_sampled_after(&scraper, written).await;
    let after_f = scrape_sampled_after(&cf, written).await;
    let grew = |b: &[Value], a: &[Value], name: &str, labels: &[(&str, &str)]| {
        value(a, name, labels) - value(b, name, labels)
    };
    assert_eq!(
        grew(
            &before_f,
            &after_f,
            "raftsafe_http_requests_total",
            &put_route
        ),
        50.0,
        "the follower counted the 50 PUTs it answered"
    );
    assert!(grew(&before_f, &after_f, "raftsafe_forwarded_total", &[]) >= 50.0);
    assert!(
        grew(
            &before_f,
            &after_f,
            "raftsafe_auth_failures_total",
            &[("status", "401")]
        ) >= 1.0
    );
    assert!(
        grew(
            &before_l,
            &after_l,
            "raftsafe_log_append_fsync_seconds_count",
            &[]
        ) >= 1.0
    );
    assert!(grew(&before_l, &after_l, "raftsafe_write_batch_ops_sum", &[]) >= 50.0);
    // The stages of a write: every write waited in the queue once; each entry was
    // committed, sent to the followers and applied; the follower served the appends.
    assert!(
        grew(
            &before_l,
            &after_l,
            "raftsafe_write_queue_seconds_count",
            &[]
        ) >= 50.0
    );
    assert!(
        grew(
            &before_l,
            &after_l,
            "raftsafe_write_commit_seconds_count",
            &[]
        ) >= 1.0
    );
    assert!(grew(&before_l, &after_l, "raftsafe_apply_seconds_count", &[]) >= 1.0);
    assert!(
        grew(
            &before_l,
            &after_l,
            "raftsafe_raft_append_rpc_seconds_count",
            &[("follower", &follower.to_string())]
        ) >= 1.0
    );
    assert!(
        grew(
            &before_f,
            &after_f,
            "raftsafe_raft_append_serve_seconds_count",
            &[]
        ) >= 1.0
    );
    assert!(
        grew(&before_l, &after_l, "raftsafe_raft_committed_index", &[]) >= 1.0,
        "the committed index moved"
    );
    assert_eq!(value(&after_l, "raftsafe_raft_is_leader", &[]), 1.0);
    assert_eq!(value(&after_f, "raftsafe_raft_is_leader", &[]), 0.0);
    assert_eq!(
        family_type(&after_l, "raftsafe_log_append_fsync_seconds_bucket"),
        "histogram"
    );
    assert_eq!(
        family_type(&after_l, "raftsafe_http_request_duration_seconds_bucket"),
        "histogram"
    );
    for s in after_l.iter().chain(&after_f) {
        assert!(
            !s["labels"].to_string().contains("metrics-canary-path"),
            "a secret path leaked into a label: {s}"
        );
    }

    // An election shows on the survivors.
    let term_before = value(&after_f, "raftsafe_raft_term", &[]);
    let changes_before = value(&after_f, "raftsafe_raft_leader_changes_total", &[]);
    c.kill(leader);
    let new_leader = c.leader(Duration::from_secs(30)).await;
    // The new leader's last entry is of its own term (the entry it appends on election), so a
    // tick that sampled it applied ran after the survivors knew the new term and leader.
    let elected = last_log_index(&c.client(new_leader)).await;
    let survivor = c.client(follower);
    let after = scrape_sampled_after(&survivor, elected).await;
    assert!(value(&after, "raftsafe_raft_term", &[]) > term_before);
    assert!(value(&after, "raftsafe_raft_leader_changes_total", &[]) > changes_before);
    let at_new = scrape_sampled_after(&c.client(new_leader), elected).await;
    assert_eq!(value(&at_new, "raftsafe_raft_is_leader", &[]), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_listener_serves_without_a_token_on_loopback() {
    let addr = crate::harness::cluster::free_addr().to_string();
    let c = Cluster::start(Opts {
        nodes: 1,
        ..Opts::with_flags(&[("--metrics-addr", &addr)])
    })
    .await;
    c.leader(Duration::from_secs(30)).await;
    // A tick after the node's election entry applied, so is-leader has been sampled as 1.
    let elected = last_log_index(&c.client(1)).await;
    let open = Client::new(&format!("http://{addr}"), Default::default()).unwrap();
    let samples = scrape_sampled_after(&open, elected).await;
    assert_eq!(value(&samples, "raftsafe_raft_is_leader", &[]), 1.0);
    let r = open
        .request(Method::GET, "/api/v1/secrets/x", None)
        .await
        .unwrap();
    assert_eq!(r.status, 404, "the metrics listener serves nothing else");
    // The API itself still wants a token for /metrics.
    let r = c
        .client(1)
        .with_token(None)
        .request(Method::GET, "/metrics", None)
        .await
        .unwrap();
    assert_eq!(r.status, 401);
}

/// Writes sent to a follower at the same time reach the leader many to a relayed request
/// (`raft::relay`), and each still gets its own answer: half the paths exist beforehand, so
/// a result handed to the wrong write would show as the wrong version.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_through_a_follower_share_relayed_requests() {
    const N: usize = 64;
    let c = Cluster::start(Opts::default()).await;
    let leader = c.leader(Duration::from_secs(30)).await;
    let follower = c.nodes.keys().copied().find(|id| *id != leader).unwrap();
    let cf = c.client(follower);
    for i in (0..N).step_by(2) {
        let r = cf
            .put(&format!("relay/{i}"), &json!({"round": 0}), None)
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.detail());
    }
    let before = scrape(&cf).await;
    let writes = (0..N).map(|i| {
        let cf = cf.clone();
        async move {
            let r = cf
                .put(&format!("relay/{i}"), &json!({"round": 1, "i": i}), None)
                .await
                .unwrap();
            (i, r)
        }
    });
    for (i, r) in futures::future::join_all(writes).await {
        assert_eq!(r.status, 200, "write {i}: {}", r.detail());
        let want = if i % 2 == 0 { 2 } else { 1 };
        assert_eq!(
            r.body["metadata"]["version"], want,
            "write {i}: {:?}",
            r.body
        );
    }
    let after = scrape(&cf).await;
    let grew = |name: &str| value(&after, name, &[]) - value(&before, name, &[]);
    let (requests, ops) = (
        grew("raftsafe_relay_batch_ops_count"),
        grew("raftsafe_relay_batch_ops_sum"),
    );
    assert!(ops >= N as f64, "{ops} writes relayed, {N} sent");
    assert!(
        requests < N as f64,
        "{N} concurrent writes took {requests} relayed requests: none were shared"
    );
    for id in [leader, follower] {
        for i in [0, 1, N - 1] {
            let r = c.client(id).get(&format!("relay/{i}"), None).await.unwrap();
            assert_eq!(r.body["data"], json!({"round": 1, "i": i}), "node {id}");
        }
    }
}
