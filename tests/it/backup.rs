//! Backup and restore, end to end on TLS clusters: a backup taken from a follower while
//! writes continue restores into a new cluster with every value, version, token and key.
//!
//! Invariants checked: the restored cluster serves every secret (latest and older versions)
//! and every path's custom metadata (sealed, as backed up) written before the backup began,
//! from every node; the tokens and the data keyring come
//! back (a token made on the old cluster works on the new one; the current key id is the
//! same); all nodes of the new cluster agree on one digest; a restore into a cluster that
//! holds secrets is refused unless forced; a damaged or truncated backup is refused by the
//! CLI and by the server and changes nothing; an edited backup whose checksum was recomputed
//! passes the offline check and is refused by the server (its tag needs the master key).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use raftsafe::client::{Client, Method};
use serde_json::{json, Value};

use crate::harness::cluster::{Cluster, Opts};
use crate::harness::nodes::Nodes;

const SECRETS: usize = 10_000;

/// Writes `paths` concurrently (64 at a time) through `client`; returns the versions.
async fn write_all(client: &Client, writes: Vec<(String, Value)>) {
    use futures::StreamExt;
    let results: Vec<(String, u16)> = futures::stream::iter(writes)
        .map(|(path, data)| {
            let c = client.clone();
            async move {
                let r = c.put(&path, &data, None).await.expect("PUT answered");
                (path, r.status)
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let failed: Vec<_> = results.iter().filter(|(_, s)| *s != 200).collect();
    assert!(
        failed.is_empty(),
        "writes failed: {:?}",
        &failed[..failed.len().min(5)]
    );
}

/// A backup file edited as an attacker without the master key would: the last pair of the
/// body dropped, the header's pair count, length and SHA-256 recomputed, the tag kept.
fn forge_without_last_pair(file: &[u8]) -> Vec<u8> {
    let json_len = u32::from_be_bytes(file[16..20].try_into().unwrap()) as usize;
    let mut header: Value = serde_json::from_slice(&file[20..20 + json_len]).unwrap();
    let tag = &file[20 + json_len..20 + json_len + 32];
    let body = &file[20 + json_len + 32..];
    // Walk the pairs to find where the last one starts.
    let (mut at, mut last) = (0usize, 0usize);
    while at < body.len() {
        last = at;
        for _ in 0..2 {
            let n = u32::from_be_bytes(body[at..at + 4].try_into().unwrap()) as usize;
            at += 4 + n;
        }
    }
    let body = &body[..last];
    header["pairs"] = json!(header["pairs"].as_u64().unwrap() - 1);
    header["bodyBytes"] = json!(body.len());
    let sha = ring::digest::digest(&ring::digest::SHA256, body);
    header["bodySha256"] = json!(sha
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>());
    let json = serde_json::to_vec(&header).unwrap();
    let mut out = file[..16].to_vec();
    out.extend_from_slice(&(json.len() as u32).to_be_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(tag);
    out.extend_from_slice(body);
    out
}

fn follower(c: &Cluster, leader: u64) -> u64 {
    c.nodes.keys().copied().find(|id| *id != leader).unwrap()
}

fn cli(c: &Cluster, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_raftsafe"))
        .args(args)
        .env("RAFTSAFE_CA", c.dir.path().join("certs/ca.pem"))
        .env("RAFTSAFE_TOKEN", crate::harness::cluster::ROOT_TOKEN)
        .output()
        .expect("run the raftsafe CLI")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backup_from_a_follower_under_writes_restores_into_a_new_cluster() {
    let a = Cluster::start(Opts::default()).await;
    let leader = a.leader(Duration::from_secs(30)).await;
    let ca = a.client(leader);

    // 10,000 secrets; every 10th written three times (versions 1-3); two rotations between.
    let first: Vec<(String, Value)> = (0..SECRETS)
        .map(|i| (format!("app/{:05}", i), json!({"v": format!("one-{i}")})))
        .collect();
    write_all(&ca, first).await;
    let r = ca.rotate_keys().await.unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    let again = |round: &str| -> Vec<(String, Value)> {
        (0..SECRETS)
            .step_by(10)
            .map(|i| {
                (
                    format!("app/{:05}", i),
                    json!({"v": format!("{round}-{i}")}),
                )
            })
            .collect()
    };
    write_all(&ca, again("two")).await;
    let r = ca.rotate_keys().await.unwrap();
    assert_eq!(r.status, 200);
    write_all(&ca, again("three")).await;
    let token = ca
        .create_token("reader", &["read:secret"], &["app/*"], None)
        .await
        .unwrap();
    assert_eq!(token.status, 201, "{:?}", token.body);
    let reader_token = token.body["token"].as_str().unwrap().to_string();
    let tokens_before = ca.tokens().await.unwrap();
    let keys_before = ca.keys().await.unwrap();
    assert_eq!(keys_before.body["currentKeyId"], 3);
    // Custom metadata, on a secret and on a path with no version yet; one map sealed under
    // key 3, one patched after a first write under it.
    let custom: BTreeMap<String, String> = [("owner".to_string(), "team-a".to_string())].into();
    let r = ca.set_custom_metadata("app/00010", &custom).await.unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    let patch: BTreeMap<String, Option<String>> =
        [("tier".to_string(), Some("gold".to_string()))].into();
    let r = ca.patch_custom_metadata("app/00010", &patch).await.unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = ca.set_custom_metadata("meta/only", &custom).await.unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);

    // Writes continue while a follower streams the backup.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (c, stop) = (ca.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) && n < 20_000 {
                let _ = c.put(&format!("live/{n}"), &json!({"n": n}), None).await;
                n += 1;
            }
            n
        })
    };
    // Backup files outlive the first cluster (whose directory goes with it).
    let files = tempfile::tempdir().unwrap();
    let file = files.path().join("cluster.bak");
    let mut out = tokio::fs::File::create(&file).await.unwrap();
    let got = a
        .client(follower(&a, leader))
        .backup(&mut out, |_| {})
        .await
        .unwrap();
    drop(out);
    stop.store(true, Ordering::Relaxed);
    let live_writes = writer.await.unwrap();
    assert!(
        got.is_ok(),
        "backup answered {:?}",
        got.err().map(|r| r.body)
    );
    assert!(live_writes > 0, "writes went on during the backup");
    let header = raftsafe::store::backup::verify(&file).expect("a sound backup");
    assert!(header.pairs as usize > SECRETS, "{header:?}");
    // The CLI writes its backups owner-only, whatever the umask.
    let by_cli = files.path().join("by-cli.bak");
    let addr = format!("https://{}", a.api(leader));
    let out = cli(
        &a,
        &["backup", "--out", by_cli.to_str().unwrap(), "--addr", &addr],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&by_cli).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "backup file mode {mode:o}");
    let inspect = cli(&a, &["backup", "inspect", file.to_str().unwrap()]);
    assert!(
        inspect.status.success(),
        "{}",
        String::from_utf8_lossy(&inspect.stderr)
    );
    assert!(String::from_utf8_lossy(&inspect.stdout).contains("checksum OK"));

    // A damaged copy and a truncated copy are refused, by the CLI and by the server.
    let bytes = std::fs::read(&file).unwrap();
    let flipped = files.path().join("flipped.bak");
    let mut b = bytes.clone();
    let mid = bytes.len() / 2;
    b[mid] ^= 0x40;
    std::fs::write(&flipped, &b).unwrap();
    let truncated = files.path().join("truncated.bak");
    std::fs::write(&truncated, &bytes[..bytes.len() - 100]).unwrap();
    for bad in [&flipped, &truncated] {
        let out = cli(&a, &["backup", "inspect", bad.to_str().unwrap()]);
        assert!(!out.status.success(), "{} must be refused", bad.display());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("checksum") || err.contains("truncated") || err.contains("does not match"),
            "{err}"
        );
    }

    // An edited copy that is self-consistent — one pair dropped (say, a token's revocation),
    // the header's count, length and checksum recomputed — passes the offline check but
    // lacks a tag only the master key can make.
    let forged = files.path().join("forged.bak");
    std::fs::write(&forged, forge_without_last_pair(&bytes)).unwrap();
    let out = cli(&a, &["backup", "inspect", forged.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "the forgery is self-consistent: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A new cluster (same master key, new nodes and addresses) restores it.
    drop(a);
    let b = Cluster::start(Opts::default()).await;
    let b_leader = b.leader(Duration::from_secs(30)).await;
    let b_follower = follower(&b, b_leader);
    let cb = b.client(b_follower);
    let before = b.converged(Duration::from_secs(20)).await;
    for bad in [&flipped, &truncated, &forged] {
        let f = tokio::fs::File::open(bad).await.unwrap();
        let r = cb.restore(f, false, |_| {}).await.unwrap();
        assert_eq!(r.status, 400, "{}: {:?}", bad.display(), r.body);
        assert_eq!(r.body["type"], "invalidBackup");
    }
    let f = tokio::fs::File::open(&forged).await.unwrap();
    let r = cb.restore(f, false, |_| {}).await.unwrap();
    assert!(
        r.body.to_string().contains("not authenticated"),
        "{:?}",
        r.body
    );
    assert_eq!(
        b.converged(Duration::from_secs(20)).await,
        before,
        "a refused restore writes nothing"
    );
    // A cluster holding only configuration (an ACL policy here) refuses too, before anything
    // is proposed; deleting the policy makes the cluster fresh again.
    let policy = "/v1/sys/policies/acl/app";
    let rules = json!({"policy": r#"path "secret/+/app/*" { capabilities = ["read", "list"] }"#});
    let r = cb.request(Method::PUT, policy, Some(&rules)).await.unwrap();
    assert_eq!(r.status, 204, "{:?}", r.body);
    let f = tokio::fs::File::open(&file).await.unwrap();
    let r = cb.restore(f, false, |_| {}).await.unwrap();
    assert_eq!(r.status, 409, "{:?}", r.body);
    assert!(
        r.body["detail"].as_str().unwrap().contains("ACL policies"),
        "{:?}",
        r.body
    );
    let r = cb.request(Method::DELETE, policy, None).await.unwrap();
    assert_eq!(r.status, 204, "{:?}", r.body);
    let f = tokio::fs::File::open(&file).await.unwrap();
    let r = cb.restore(f, false, |_| {}).await.unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["restored"], header.pairs);
    let (_, digest) = b.converged(Duration::from_secs(60)).await;
    assert_ne!(digest, before.1);

    // Every value, every version, from every node.
    let expect = |i: usize| -> (u64, String) {
        if i.is_multiple_of(10) {
            (3, format!("three-{i}"))
        } else {
            (1, format!("one-{i}"))
        }
    };
    for id in b.nodes.keys().copied() {
        let c = b.client(id);
        let step = if id == b_leader { 1 } else { 37 };
        for i in (0..SECRETS).step_by(step) {
            let r = c.get(&format!("app/{i:05}"), None).await.unwrap();
            let (version, value) = expect(i);
            assert_eq!(r.status, 200, "node {id} app/{i:05}: {:?}", r.body);
            assert_eq!(r.body["data"]["v"], value.as_str(), "node {id} app/{i:05}");
            assert_eq!(r.body["metadata"]["version"], version);
        }
        for i in (0..SECRETS).step_by(10).take(50) {
            for (v, round) in [(1, "one"), (2, "two")] {
                let r = c.get(&format!("app/{i:05}"), Some(v)).await.unwrap();
                assert_eq!(
                    r.body["data"]["v"],
                    format!("{round}-{i}"),
                    "node {id} v{v}"
                );
            }
        }
    }
    // Custom metadata came back, and opens with the restored keys, on every node.
    for id in b.nodes.keys().copied() {
        let c = b.client(id);
        let r = c.metadata("app/00010").await.unwrap();
        assert_eq!(r.status, 200, "node {id}: {:?}", r.body);
        assert_eq!(
            r.body["data"]["customMetadata"],
            json!({"owner": "team-a", "tier": "gold"}),
            "node {id}"
        );
        assert_eq!(r.body["data"]["currentVersion"], 3);
        let r = c.metadata("meta/only").await.unwrap();
        assert_eq!(r.status, 200, "node {id}: {:?}", r.body);
        assert_eq!(r.body["data"]["customMetadata"], json!({"owner": "team-a"}));
        assert_eq!(r.body["data"]["currentVersion"], 0);
    }
    // Tokens and keys came back: the same accessors, the same key id, a working old token.
    let tokens_after = cb.tokens().await.unwrap();
    let accessors = |r: &raftsafe::client::Response| -> BTreeMap<String, Value> {
        r.body["Resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["accessor"].as_str().unwrap().to_string(),
                    t["scopes"].clone(),
                )
            })
            .collect()
    };
    assert_eq!(accessors(&tokens_after), accessors(&tokens_before));
    let keys_after = cb.keys().await.unwrap();
    assert_eq!(
        keys_after.body["currentKeyId"],
        keys_before.body["currentKeyId"]
    );
    let r = cb
        .with_token(Some(&reader_token))
        .get("app/00007", None)
        .await
        .unwrap();
    assert_eq!(
        r.status, 200,
        "the old cluster's token reads on the new one"
    );

    // The new cluster now holds secrets: a second restore needs force.
    let f = tokio::fs::File::open(&file).await.unwrap();
    let r = cb.restore(f, false, |_| {}).await.unwrap();
    assert_eq!(r.status, 409, "{:?}", r.body);
    assert_eq!(r.body["type"], "restoreRefused");
    let f = tokio::fs::File::open(&file).await.unwrap();
    let r = cb.restore(f, true, |_| {}).await.unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    b.converged(Duration::from_secs(60)).await;
    // A backup of the restored cluster holds exactly the data of the original backup.
    let copy = files.path().join("copy.bak");
    let mut out = tokio::fs::File::create(&copy).await.unwrap();
    let got = b.client(b_leader).backup(&mut out, |_| {}).await.unwrap();
    drop(out);
    assert!(got.is_ok());
    let h2 = raftsafe::store::backup::verify(&copy).unwrap();
    assert_eq!(
        (h2.pairs, &h2.body_sha256, &h2.cluster_id),
        (header.pairs, &header.body_sha256, &header.cluster_id),
        "the restored data is byte for byte the backup's"
    );
}
