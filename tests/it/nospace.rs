//! The NOSPACE alarm (`src/raft/disk.rs`) on a real TLS cluster whose data directories are
//! each a small tmpfs (needs root), driven through a *follower*: its report must travel to
//! the leader on the heartbeat answers and from the leader to the other follower, so that
//! every node refuses writes that add data, in both dialects, naming the full node. The
//! leader's own disk filling, under the recorded chaos workload, is the chaos scenario
//! `full_disk_leader` (`tests/harness/nemesis.rs`).
//!
//! Invariants checked: while the follower's alarm is raised, a PUT through any node is 507
//! `insufficientStorage` naming it (and Vault's `/v1` answers 507 in its `{"errors": [...]}`
//! shape), reads and deletes go on, and the alarm shows in `/metrics` (the follower's own
//! gauges, the leader's cluster gauge), in `GET /cluster` (the member's disk and `nospace`)
//! and in `/health/ready` (200, with the alarm); once the filler is deleted the alarm clears
//! by itself and writes succeed again, with no restart.

use std::time::Duration;

use raftsafe::client::{Client, Method};
use serde_json::{json, Value};

use crate::harness::cluster::{Cluster, Opts};
use crate::harness::nodes::Nodes;
use crate::harness::wait::until;

/// Each node's data filesystem, as in the chaos scenarios (RocksDB preallocates its WAL).
const DISK: u64 = 128 << 20;
/// The threshold every node runs with; the filler leaves [`LEAVE`], well under it.
const THRESHOLD: u64 = 24 << 20;
const LEAVE: u64 = 8 << 20;

/// A gauge's value in `/metrics` of the node `c` talks to.
async fn gauge(c: &Client, name: &str) -> Result<f64, String> {
    let r = c
        .request(Method::GET, "/metrics", None)
        .await
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&r.bytes);
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .ok_or_else(|| format!("{name} not in /metrics ({})", r.status))
}

/// A PUT through `c`: Ok if it was refused for node `full`'s disk, else what came back.
async fn refused_for(c: &Client, full: u64, path: &str) -> Result<Value, String> {
    let r = c
        .put(path, &json!({ "v": "must not be written" }), None)
        .await
        .map_err(|e| e.to_string())?;
    let detail = r.body["detail"].as_str().unwrap_or_default().to_string();
    if r.status == 507
        && r.body["type"] == "insufficientStorage"
        && detail.contains(&format!("node {full}'s disk is nearly full"))
    {
        Ok(r.body)
    } else {
        Err(format!("{} {}", r.status, r.body))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_followers_full_disk_refuses_writes_everywhere_until_it_has_room_again() {
    let mut opts = Opts::with_flags(&[("--disk-min-free-bytes", &THRESHOLD.to_string())]);
    opts.disk_bytes = Some(DISK);
    let cluster = Cluster::start(opts).await;
    let l = cluster.leader(Duration::from_secs(30)).await;
    let ids = cluster.ids();
    let followers: Vec<u64> = ids.iter().copied().filter(|id| *id != l).collect();
    let (full, other) = (followers[0], followers[1]);
    let client = |id| cluster.client(id).with_timeout(Duration::from_secs(5));

    until(Duration::from_secs(20), "a first write", async || {
        let r = client(l)
            .put("nospace/kept", &json!({"v": "before"}), None)
            .await
            .map_err(|e| e.to_string())?;
        (r.status == 200)
            .then_some(())
            .ok_or(format!("{} {}", r.status, r.body))
    })
    .await;

    let (filler, free) = cluster.fill_disk(full, LEAVE).unwrap();
    assert!(
        free < THRESHOLD,
        "{free} bytes free after {filler} of filler"
    );

    // Every node refuses, naming the follower: it measured, told the leader in a heartbeat
    // answer, and the leader told the other follower.
    let mut n = 0;
    for id in &ids {
        let body = until(
            Duration::from_secs(10),
            &format!("node {id} refuses a write for node {full}'s disk"),
            async || {
                n += 1;
                refused_for(&client(*id), full, &format!("nospace/refused-{n}")).await
            },
        )
        .await;
        assert_eq!(body["status"], "507", "{body}");
        let detail = body["detail"].as_str().unwrap();
        assert!(
            detail.contains("MiB free") && detail.contains("24.0 MiB needed"),
            "{detail}"
        );
    }
    // Nothing refused was written, and reads go on everywhere.
    for id in &ids {
        let r = client(*id).get("nospace/kept", None).await.unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        let r = client(*id)
            .get(&format!("nospace/refused-{n}"), None)
            .await
            .unwrap();
        assert_eq!(r.status, 404, "{}", r.body);
    }
    // Vault's dialect answers the same refusal in its own shape.
    let r = client(other)
        .request(
            Method::POST,
            "/v1/secret/data/nospace/vault",
            Some(&json!({"data": {"v": "x"}})),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 507, "{}", r.body);
    let errors = r.body["errors"].as_array().expect("Vault's errors list");
    assert!(
        errors[0]
            .as_str()
            .is_some_and(|e| e.contains(&format!("node {full}'s disk"))),
        "{}",
        r.body
    );
    // A delete goes on (it only removes data).
    let r = client(other).delete("nospace/kept").await.unwrap();
    assert_eq!(r.status, 204, "{}", r.body);

    // Where operators see it.
    let c = cluster.client(l);
    let status = c.cluster_status().await.unwrap().body;
    assert!(
        status["nospace"]
            .as_str()
            .is_some_and(|d| d.contains(&format!("node {full}"))),
        "{status}"
    );
    let member = |s: &Value, id: u64| {
        s["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == id)
            .cloned()
            .unwrap()
    };
    let disk = &member(&status, full)["disk"];
    assert_eq!(disk["alarm"], true, "{status}");
    assert_eq!(disk["neededBytes"], THRESHOLD, "{status}");
    assert!(disk["freeBytes"].as_u64().unwrap() < THRESHOLD, "{status}");
    assert_eq!(member(&status, l)["disk"]["alarm"], false, "{status}");
    let ready = c.ready().await.unwrap();
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert!(
        ready.body["alarms"][0]
            .as_str()
            .is_some_and(|a| a.starts_with(&format!("NOSPACE: node {full}'s disk"))),
        "{}",
        ready.body
    );
    let fc = cluster.client(full);
    assert_eq!(gauge(&fc, "raftsafe_disk_alarm").await, Ok(1.0));
    assert_eq!(
        gauge(&fc, "raftsafe_disk_needed_bytes").await,
        Ok(THRESHOLD as f64)
    );
    assert!(gauge(&fc, "raftsafe_disk_free_bytes").await.unwrap() < THRESHOLD as f64);
    assert_eq!(gauge(&c, "raftsafe_disk_alarm").await, Ok(0.0));
    // The cluster gauge is sampled with the Raft gauges, once a second.
    until(
        Duration::from_secs(5),
        "the leader's cluster alarm gauge",
        async || match gauge(&c, "raftsafe_disk_alarm_cluster").await? {
            1.0 => Ok(()),
            v => Err(v.to_string()),
        },
    )
    .await;

    // Room again: the alarm clears by itself (no restart) and writes succeed through every
    // node, the full one included.
    cluster.free_disk(full).unwrap();
    for id in &ids {
        until(
            Duration::from_secs(10),
            &format!("a write through node {id} after the filler was deleted"),
            async || {
                let r = client(*id)
                    .put(&format!("nospace/after-{id}"), &json!({"v": "room"}), None)
                    .await
                    .map_err(|e| e.to_string())?;
                (r.status == 200)
                    .then_some(())
                    .ok_or(format!("{} {}", r.status, r.body))
            },
        )
        .await;
    }
    let status = c.cluster_status().await.unwrap().body;
    assert!(status["nospace"].is_null(), "{status}");
    assert_eq!(member(&status, full)["disk"]["alarm"], false, "{status}");
    let ready = c.ready().await.unwrap();
    assert!(ready.body["alarms"].is_null(), "{}", ready.body);
    assert_eq!(gauge(&fc, "raftsafe_disk_alarm").await, Ok(0.0));
}
