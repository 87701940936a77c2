//! The replicated core, proven with real processes: writes through any node, reads from
//! every node, SIGKILL of the leader, catch-up by snapshot, a node that lost its disk
//! refused until it is removed and added back, a full-cluster restart, an isolated node
//! refusing to serve, and bad input writing nothing.
//!
//! Invariants checked: an acknowledged write is readable, with its value and version, from
//! every node, across a leader's death and a restart of every node; a node that cannot reach
//! a quorum answers 503, never stale data, within a bounded time; rejected input changes
//! nothing (same applied index and digest before and after).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use raftsafe::client::Method;
use serde_json::{json, Value};

use crate::harness::cluster::{Cluster, Opts};
use crate::harness::golden::{self, BadInput};
use crate::harness::nodes::Nodes;

/// The deadline of the single requests below.
const T: Duration = Duration::from_secs(10);

fn followers(c: &Cluster, leader: u64) -> Vec<u64> {
    c.nodes.keys().copied().filter(|id| *id != leader).collect()
}

/// Asserts every (path → value) is readable, with that value, from every running node.
async fn assert_readable_everywhere(c: &Cluster, acked: &BTreeMap<String, Value>) {
    for id in c.nodes.keys().copied().filter(|id| c.is_running(*id)) {
        for (path, value) in acked {
            let r = c.get(id, path).await.expect("GET answered");
            assert_eq!(
                r.status,
                200,
                "node {id} GET {path}: {:?}\n{}",
                r.body,
                c.logs_tail(20)
            );
            assert_eq!(&r.body["data"], value, "node {id} GET {path}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn write_via_follower_read_from_every_node() {
    let c = Cluster::start(Opts::default()).await;
    let leader = c.leader(Duration::from_secs(30)).await;
    let f = followers(&c, leader);
    let creds = |secret: &str| json!({"user": "root", "secret": secret});

    let r = c.put(f[0], "app/db/creds", creds("passwd")).await.unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["data"], creds("passwd"));
    assert_eq!(r.body["metadata"]["version"], 1);
    let created = r.body["metadata"]["createdAt"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        created.ends_with('Z') && created.contains('T'),
        "RFC 3339: {created}"
    );

    for id in [leader, f[0], f[1]] {
        let r = c.get(id, "app/db/creds").await.unwrap();
        assert_eq!(r.status, 200, "node {id}: {:?}", r.body);
        assert_eq!(r.body["data"]["secret"], "passwd");
        assert_eq!(r.body["metadata"]["version"], 1);
        assert_eq!(r.body["metadata"]["createdAt"], created.as_str());
    }

    // A second write through the other follower makes version 2, visible everywhere at once.
    let r = c.put(f[1], "app/db/creds", creds("rotated")).await.unwrap();
    assert_eq!(r.body["metadata"]["version"], 2, "{:?}", r.body);
    for id in [leader, f[0], f[1]] {
        let r = c.get(id, "app/db/creds").await.unwrap();
        assert_eq!(
            r.body["data"]["secret"], "rotated",
            "node {id} served a stale value"
        );
        assert_eq!(r.body["metadata"]["version"], 2);
        let old = c
            .client(id)
            .with_timeout(T)
            .get("app/db/creds", Some(1))
            .await
            .unwrap();
        assert_eq!(old.body["data"]["secret"], "passwd");
    }

    // Check-and-set, delete and list through followers.
    let r = c
        .client(f[0])
        .with_timeout(T)
        .put("app/db/creds", &json!({"x": 1}), Some(1))
        .await
        .unwrap();
    assert_eq!(r.status, 409, "{:?}", r.body);
    assert_eq!(r.body["type"], "casMismatch");
    assert_eq!(r.body["status"], "409");
    let r = c
        .client(f[1])
        .with_timeout(T)
        .delete("app/db/creds")
        .await
        .unwrap();
    assert_eq!(r.status, 204);
    let r = c.get(leader, "app/db/creds").await.unwrap();
    assert_eq!(r.status, 404, "{:?}", r.body);
    c.put(leader, "app/other", json!({"k": "v"})).await.unwrap();
    let r = c
        .client(f[0])
        .with_timeout(T)
        .request(Method::GET, "/api/v1/secrets?prefix=app", None)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body["totalResults"], 2, "{:?}", r.body);
    let listed = serde_json::to_string(&r.body).unwrap();
    assert!(
        !listed.contains("passwd") && !listed.contains("rotated"),
        "lists never show values"
    );

    let status = c
        .client(f[0])
        .with_timeout(T)
        .cluster_status()
        .await
        .unwrap();
    assert_eq!(status.body["leader"], leader);
    assert_eq!(status.body["members"].as_array().unwrap().len(), 3);
    c.converged(Duration::from_secs(20)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_sigkill_fails_over_and_loses_nothing() {
    let c = Cluster::start(Opts::default()).await;
    let leader = c.leader(Duration::from_secs(30)).await;
    let mut acked = BTreeMap::new();
    let ids: Vec<u64> = c.nodes.keys().copied().collect();
    for i in 0..15 {
        let node = ids[i % 3];
        let v = json!({"n": i, "phase": "before"});
        let r = c.put(node, &format!("k/{i}"), v.clone()).await.unwrap();
        assert_eq!(r.status, 200, "{:?}", r.body);
        acked.insert(format!("k/{i}"), v);
    }

    c.kill(leader);
    let killed_at = Instant::now();
    let survivors = followers(&c, leader);
    // The first write through a survivor that succeeds marks the end of the failover.
    let mut i = 100;
    let failover = loop {
        assert!(
            killed_at.elapsed() < Duration::from_secs(30),
            "no write succeeded after the leader died"
        );
        let node = survivors[i % 2];
        let v = json!({"n": i, "phase": "during"});
        if let Ok(r) = c.put(node, &format!("k/{i}"), v.clone()).await {
            if r.status == 200 {
                acked.insert(format!("k/{i}"), v);
                break killed_at.elapsed();
            }
            assert_eq!(
                r.status, 503,
                "only 503 is acceptable while electing: {:?}",
                r.body
            );
        }
        i += 1;
    };
    eprintln!(
        "FAILOVER: leader {leader} SIGKILLed; first successful write after {} ms",
        failover.as_millis()
    );
    let new_leader = c.leader(Duration::from_secs(30)).await;
    assert_ne!(new_leader, leader);
    for j in 0..10 {
        let v = json!({"n": j, "phase": "after"});
        let r = c
            .put(survivors[j % 2], &format!("after/{j}"), v.clone())
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{:?}", r.body);
        acked.insert(format!("after/{j}"), v);
    }

    c.restart(leader);
    c.converged(Duration::from_secs(30)).await;
    assert_readable_everywhere(&c, &acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lagging_node_catches_up_by_snapshot() {
    let flags = [("--snapshot-every", "20"), ("--keep-logs", "5")];
    let c = Cluster::start(Opts::with_flags(&flags)).await;
    let leader = c.leader(Duration::from_secs(30)).await;
    let down = followers(&c, leader)[0];
    c.kill(down);
    let mut acked = BTreeMap::new();
    for i in 0..120 {
        let v = json!({"i": i});
        let r = c
            .put(leader, &format!("s/{}", i % 40), v.clone())
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{:?}", r.body);
        acked.insert(format!("s/{}", i % 40), v);
    }
    // openraft purges once no replication stream is using the range; the stream to the dead
    // node releases it on its next failed attempt.
    let t = Instant::now();
    loop {
        let st = c.status(leader).await.unwrap();
        if st["purgedIndex"].as_u64().unwrap_or(0) > 50 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the leader never purged its log: {st}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    c.restart(down);
    c.converged(Duration::from_secs(60)).await;
    let st = c.status(down).await.unwrap();
    assert!(
        st["snapshotIndex"].as_u64().unwrap_or(0) > 50,
        "caught up by snapshot: {st}"
    );
    let logs = std::fs::read_to_string(c.dir.path().join(format!("node-{down}.log"))).unwrap();
    assert!(
        logs.contains("installed snapshot"),
        "node {down} never installed a snapshot"
    );
    assert_readable_everywhere(&c, &acked).await;
}

/// A member whose disk was lost must not come back under its old id: it forgot its vote and
/// its log, so counting it in a quorum could lose acknowledged writes. Such a node stops its
/// Raft core when the leader's entries do not fit its empty log, answers 503 at once (never
/// a 404 for a secret that exists), and the other two keep serving. The operator's path —
/// remove it, wipe it, add it back — brings it back by snapshot with every secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_that_lost_its_data_rejoins_only_after_remove_and_add() {
    let flags = [("--snapshot-every", "20"), ("--keep-logs", "5")];
    let c = Cluster::start(Opts::with_flags(&flags)).await;
    let leader = c.leader(Duration::from_secs(30)).await;
    let lost = followers(&c, leader)[0];
    let mut acked = BTreeMap::new();
    for i in 0..60 {
        let v = json!({"i": i});
        let path = format!("d/{}", i % 20);
        let r = c.put(leader, &path, v.clone()).await.unwrap();
        assert_eq!(r.status, 200, "{:?}", r.body);
        acked.insert(path, v);
    }
    let t = Instant::now();
    while c.status(leader).await.unwrap()["purgedIndex"]
        .as_u64()
        .unwrap_or(0)
        < 30
    {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "no purge on the leader"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The disk is lost: same id, empty data directory, still a member.
    c.kill(lost);
    let dir = c.data_dir(lost).to_path_buf();
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::create_dir_all(&dir).unwrap();
    c.restart(lost);
    let (probe, expected) = acked
        .iter()
        .next()
        .map(|(p, v)| (p.clone(), v.clone()))
        .unwrap();
    let mut refused = 0;
    let mut fastest_refusal = Duration::MAX;
    for i in 0..20 {
        let began = Instant::now();
        let r = match c.get(lost, &probe).await {
            Ok(r) => r,
            // Still starting: its listener is not up yet.
            Err(e) if e.is_connect() => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            Err(e) => panic!("GET to the wiped node: {e}"),
        };
        assert!(
            r.status == 503 || (r.status == 200 && r.body["data"] == expected),
            "the wiped node answered {} {:?}\n{}",
            r.status,
            r.body,
            c.logs_tail(20)
        );
        if r.status == 503 {
            refused += 1;
            fastest_refusal = fastest_refusal.min(began.elapsed());
        }
        // Meanwhile the cluster keeps taking writes through the other two.
        let v = json!({"during": i});
        let w = c.put(leader, "d/during", v.clone()).await.unwrap();
        assert_eq!(w.status, 200, "{:?}", w.body);
        acked.insert("d/during".into(), v);
        if began.elapsed() < Duration::from_millis(500) {
            tokio::time::sleep(Duration::from_millis(500) - began.elapsed()).await;
        }
    }
    assert!(refused > 0, "the wiped node never refused a read");
    // Once its Raft core has stopped it says so at once, not after the request timeout.
    assert!(
        fastest_refusal < Duration::from_secs(1),
        "the wiped node's fastest 503 took {fastest_refusal:?}"
    );
    let log = c.node_log(lost);
    assert!(
        log.contains("quit RaftCore") || log.contains("stopped"),
        "the wiped node's Raft core did not stop; its log:\n{}",
        c.logs_tail(30)
    );

    // The operator's path: remove it, wipe it, start it empty, add it back.
    let admin = c.client(leader);
    let r = admin
        .request(
            Method::DELETE,
            &format!("/api/v1/cluster/members/{lost}"),
            None,
        )
        .await
        .unwrap();
    assert!(r.is_success(), "remove: {} {:?}", r.status, r.body);
    c.retire(lost);
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::create_dir_all(&dir).unwrap();
    c.join(lost);
    let n = &c.nodes[&lost];
    let body = json!({"id": lost, "raftAddr": n.raft.to_string(), "apiAddr": n.api.to_string()});
    let r = admin
        .request(Method::POST, "/api/v1/cluster/members", Some(&body))
        .await
        .unwrap();
    assert!(r.is_success(), "add: {} {:?}", r.status, r.body);
    c.converged(Duration::from_secs(60)).await;
    let st = c.status(lost).await.unwrap();
    assert!(
        st["snapshotIndex"].as_u64().unwrap_or(0) > 30,
        "the re-added node caught up by snapshot: {st}"
    );
    assert_readable_everywhere(&c, &acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn whole_cluster_sigkill_and_restart_keeps_acknowledged_writes() {
    let c = Cluster::start(Opts::default()).await;
    c.leader(Duration::from_secs(30)).await;
    let mut acked = BTreeMap::new();
    for i in 0..30u64 {
        let v = json!({"i": i});
        let r = c
            .put(1 + i % 3, &format!("all/{i}"), v.clone())
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{:?}", r.body);
        acked.insert(format!("all/{i}"), v);
    }
    for id in [1, 2, 3] {
        c.kill(id);
    }
    for id in [1, 2, 3] {
        c.restart(id);
    }
    c.leader(Duration::from_secs(30)).await;
    assert_readable_everywhere(&c, &acked).await;
    // Versions kept counting from where they were.
    let r = c.put(2, "all/0", json!({"i": "again"})).await.unwrap();
    assert_eq!(r.body["metadata"]["version"], 2, "{:?}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn isolated_node_answers_503_not_stale_data() {
    let timeout_ms = 2000u64;
    let c = Cluster::start(Opts {
        flags: vec![("--request-timeout-ms".into(), timeout_ms.to_string())],
        ..Default::default()
    })
    .await;
    let leader = c.leader(Duration::from_secs(30)).await;
    let r = c.put(leader, "iso/key", json!({"v": "old"})).await.unwrap();
    assert_eq!(r.status, 200);
    c.converged(Duration::from_secs(20)).await;

    // Isolate the leader by pausing both followers (SIGSTOP), then by killing them.
    let f = followers(&c, leader);
    for (round, stop) in [("paused", true), ("killed", false)] {
        for id in &f {
            if stop {
                c.pause(*id)
            } else {
                c.kill(*id)
            }
        }
        for node in [leader] {
            let t = Instant::now();
            let r = c.get(node, "iso/key").await.unwrap();
            let took = t.elapsed();
            assert_eq!(
                r.status, 503,
                "{round}: GET on an isolated node must not serve: {:?}",
                r.body
            );
            assert_eq!(r.body["type"], "unavailable");
            assert!(
                took < Duration::from_millis(timeout_ms * 3),
                "{round}: GET took {took:?}"
            );
            let t = Instant::now();
            let r = c.put(node, "iso/key", json!({"v": "new"})).await.unwrap();
            let took = t.elapsed();
            assert_eq!(
                r.status, 503,
                "{round}: PUT on an isolated node: {:?}",
                r.body
            );
            assert!(
                took < Duration::from_millis(timeout_ms * 3),
                "{round}: PUT took {took:?}"
            );
        }
        if stop {
            for id in &f {
                c.resume(*id);
            }
        }
    }
    // A follower cut off from everyone answers 503 too.
    for id in &f {
        c.restart(*id);
    }
    c.leader(Duration::from_secs(30)).await;
    let lone = f[0];
    for id in [leader, f[1]] {
        c.kill(id);
    }
    let t = Instant::now();
    let r = c.get(lone, "iso/key").await.unwrap();
    assert_eq!(r.status, 503, "isolated follower: {:?}", r.body);
    assert!(t.elapsed() < Duration::from_millis(timeout_ms * 3));
}

/// The secret API's bad input, one case a line ([`crate::harness::golden`]). Unknown query
/// parameters are refused on every route, the admin routes included, even on an otherwise
/// valid request (a token or a data key made here would change the digest compared at the
/// end).
const BAD_INPUT: &str = r#"
PUT /api/v1/secrets/a//b | {"data":{}} | 400 | invalidPath | empty segment
PUT /api/v1/secrets/a/%2E%2E%2Fb | {"data":{}} | 400 | invalidPath | '..'
PUT /api/v1/secrets/a%20b | {"data":{}} | 400 | invalidPath | contains ' '
PUT /api/v1/secrets/a%zz | {"data":{}} | 400 | invalidPath | percent
PUT /api/v1/secrets/ok/key | not json | 400 | - | not valid JSON
PUT /api/v1/secrets/ok/key | [1,2] | 400 | - | JSON object
PUT /api/v1/secrets/ok/key | {"data":"str"} | 400 | invalidData | must be a JSON object
PUT /api/v1/secrets/ok/key | {"data":{},"extra":1} | 400 | unknownField | 'extra'
PUT /api/v1/secrets/ok/key | {"data":{},"options":{"ttl":3}} | 400 | unknownField | options.ttl
PUT /api/v1/secrets/ok/key | {"data":{"v":1},"data":{"v":2}} | 400 | invalidData | 'data' is given more than once
PUT /api/v1/secrets/ok/key | {"data":{},"options":[3]} | 400 | invalidOptions | expected a JSON object
PUT /api/v1/secrets/ok/key | {"data":{},"options":null} | 400 | invalidOptions | 'options'
PUT /api/v1/secrets/ok/key | {"data":{},"options":{"cas":null}} | 400 | invalidOptions | 'options.cas' must be an integer
PUT /api/v1/secrets/ok/key | {"data":{},"options":{"keyVersion":1}} | 400 | unknownField | 'options.keyVersion' (allowed: cas)
PUT /api/v1/secrets/ok/key | - | 400 | - | request body is empty
POST /api/v1/tokens | {"name":"q","scopes":["read:secret"],"paths":["*"],"ttlSeconds":0} | 400 | invalidToken | 'ttlSeconds'
POST /api/v1/tokens | ["q",["read:secret"],["*"]] | 400 | - | must be a JSON object
GET /api/v1/secrets/ok/key?version=zero | - | 400 | - | 'version'
GET /api/v1/secrets/ok/key?bogus=1 | - | 400 | - | 'bogus'
GET /api/v1/secrets/ok/key?ciphertext=abc | - | 400 | - | ondemand
GET /api/v1/nope | - | 404 | notFound | no such endpoint
PATCH /api/v1/secrets/ok/key | - | 405 | methodNotAllowed | not allowed
GET /api/v1/tokens?bogus=1 | - | 400 | - | unknown query parameter 'bogus'
POST /api/v1/tokens?bogus=1 | {"name":"q","scopes":["read:secret"],"paths":["*"]} | 400 | - | unknown query parameter 'bogus'
DELETE /api/v1/tokens/abc?bogus=1 | - | 400 | - | unknown query parameter 'bogus'
GET /api/v1/keys?bogus=1 | - | 400 | - | unknown query parameter 'bogus'
POST /api/v1/keys/rotate?bogus=1 | - | 400 | - | unknown query parameter 'bogus'
GET /api/v1/cluster?bogus=1 | - | 400 | - | unknown query parameter 'bogus'
GET /api/v1/cluster/self?bogus=1 | - | 400 | - | unknown query parameter 'bogus'
POST /api/v1/cluster/snapshot?bogus=1 | - | 400 | - | unknown query parameter 'bogus'
DELETE /api/v1/cluster/members/9?bogus=1 | - | 400 | - | unknown query parameter 'bogus'
GET /api/v1/cluster/backup?bogus=1 | - | 400 | - | unknown query parameter 'bogus'
"#;

/// The path of the secret the bad-input test writes first.
const OK_KEY: &str = "/api/v1/secrets/ok/key";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_gets_4xx_and_writes_nothing() {
    // Plain HTTP (dev mode) so that a raw request can carry a literal `..` segment.
    let c = Cluster::start(Opts {
        flags: vec![("--max-value-bytes".into(), "1024".into())],
        tls: false,
        ..Default::default()
    })
    .await;
    let leader = c.leader(Duration::from_secs(30)).await;
    let node = followers(&c, leader)[0];
    c.put(node, "ok/key", json!({"v": 1})).await.unwrap();
    let before = c.converged(Duration::from_secs(20)).await;

    let big = format!("{{\"data\":{{\"v\":\"{}\"}}}}", "x".repeat(2000));
    let huge = format!("{{\"data\":{{\"v\":\"{}\"}}}}", "x".repeat(100_000));
    let long_path = format!("/api/v1/secrets/{}", "a".repeat(600));
    let deep = format!("{{\"data\":{}1{}}}", "{\"a\":".repeat(40), "}".repeat(40));
    let mut cases = golden::table(BAD_INPUT);
    // Bodies and paths too long to write out.
    cases.extend([
        BadInput::new(
            Method::GET,
            &long_path,
            None,
            400,
            "invalidPath",
            "512-byte",
        ),
        BadInput::new(
            Method::PUT,
            OK_KEY,
            Some(big),
            413,
            "tooLarge",
            "1024-byte limit",
        ),
        BadInput::new(Method::PUT, OK_KEY, Some(huge), 413, "tooLarge", "limit"),
        BadInput::new(
            Method::PUT,
            OK_KEY,
            Some(deep),
            400,
            "tooDeep",
            "deeper than 32",
        ),
    ]);
    for case in &cases {
        case.check(&c.client(node), T).await;
    }
    // A refused field names itself in `validation` too, by its JSON pointer.
    let r = c
        .client(node)
        .send(
            Method::PUT,
            OK_KEY,
            Some(br#"{"data":{},"options":{"cas":"3"}}"#.to_vec()),
            &[],
            Some(T),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert_eq!(
        r.body["validation"][0]["propertyPath"], "/options/cas",
        "{:?}",
        r.body
    );
    // A literal `..` segment, sent raw (HTTP clients normalise it away before sending).
    let (status, body) = c
        .raw(
            node,
            "PUT /api/v1/secrets/a/../b HTTP/1.1\r\nContent-Length: 11\r\n\r\n{\"data\":{}}",
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("invalidPath") && body.contains("'..'"),
        "{body}"
    );
    let r = c.get(leader, "b").await.unwrap();
    assert_eq!(
        r.status, 404,
        "nothing written at the normalised path either"
    );

    let r = c.get(leader, "ok/key").await.unwrap();
    assert_eq!(r.body["data"], json!({"v": 1}));
    assert_eq!(
        r.body["metadata"]["version"], 1,
        "bad input must not have written"
    );
    let after = c.converged(Duration::from_secs(20)).await;
    assert_eq!(before, after, "nothing was applied by rejected requests");
}

/// The harness never runs a test on a node that did not start: a node that exits at start
/// (here a flag its configuration refuses) fails the test at once, naming the node and
/// showing its log, instead of a scenario running on without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_exits_at_start_fails_the_harness_at_once() {
    let began = Instant::now();
    let started = tokio::spawn(Cluster::start(Opts {
        nodes: 1,
        ..Opts::with_flags(&[("--max-value-bytes", "1")])
    }))
    .await;
    let panic = started
        .err()
        .expect("the harness refused the node")
        .into_panic();
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains("node 1 exited at start"), "{message}");
    assert!(
        message.contains("max_value_bytes"),
        "the node's own error is shown: {message}"
    );
    assert!(
        began.elapsed() < Duration::from_secs(20),
        "at once, not after a timeout"
    );
}
