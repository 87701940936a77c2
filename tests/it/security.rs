//! Guarantees 3 and 4 with real processes: who may do what (401/403 for every endpoint,
//! on the leader and on a follower), no plaintext secret, custom metadata, ondemand value,
//! mount key or token on disk or in logs (even after a snapshot install), mutual TLS between
//! nodes, a node with the wrong master key refusing to start, and key rotation.
//!
//! Invariants checked: without a valid, unexpired, unrevoked token every endpoint but health
//! answers 401 with `WWW-Authenticate: Bearer`; a token outside its scope or paths gets 403;
//! no byte string a secret or token could be stored as appears in any data file or log; the
//! Raft listener admits only certificates of the cluster's CA; a node with another master key
//! exits without touching its data; values written under any key version stay readable.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use base64::Engine;
use raftsafe::client::{Client, ClientOptions, Method, Response};
use serde_json::{json, Value};

use crate::harness::cluster::{Cluster, Opts, ROOT_TOKEN};
use crate::harness::nodes::Nodes;

/// The deadline of a single request (the harness client's default) and of the Raft probes.
const T: Duration = Duration::from_secs(15);

/// A client of node `node` that sends `token` (or none) instead of the root token.
fn as_token(c: &Cluster, node: u64, token: Option<&str>) -> Client {
    c.client(node).with_token(token)
}

/// One request of the auth matrix, as `token` (or none); the answer.
async fn call(
    c: &Cluster,
    node: u64,
    token: Option<&str>,
    method: &Method,
    path: &str,
    body: Option<Vec<u8>>,
) -> Response {
    as_token(c, node, token)
        .send(method.clone(), path, body, &[], None)
        .await
        .unwrap()
}

async fn create_token(
    c: &Cluster,
    node: u64,
    name: &str,
    scopes: &[&str],
    paths: &[&str],
    ttl: Option<u64>,
) -> (String, String) {
    let mut body = json!({"name": name, "scopes": scopes, "paths": paths});
    if let Some(ttl) = ttl {
        body["ttlSeconds"] = json!(ttl);
    }
    let r = c
        .client(node)
        .request(Method::POST, "/api/v1/tokens", Some(&body))
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{:?}", r.body);
    (
        r.body["token"].as_str().unwrap().to_string(),
        r.body["accessor"].as_str().unwrap().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn auth_matrix_on_leader_and_follower() {
    let c = Cluster::start(Opts::default()).await;
    let leader = c.leader(Duration::from_secs(30)).await;
    let follower = c.nodes.keys().copied().find(|id| *id != leader).unwrap();
    c.put(leader, "app/x", json!({"k": "v"})).await.unwrap();

    let (reader, _) = create_token(&c, leader, "reader", &["read:secret"], &["app/*"], None).await;
    let (writer, _) =
        create_token(&c, follower, "writer", &["write:secret"], &["app/*"], None).await;
    let (admin, _) = create_token(&c, leader, "admin", &["admin"], &["*"], None).await;
    let (revoked, revoked_acc) =
        create_token(&c, leader, "gone", &["read:secret"], &["*"], None).await;
    let (expired, _) = create_token(&c, follower, "short", &["read:secret"], &["*"], Some(1)).await;
    let r = c
        .client(follower)
        .request(
            Method::DELETE,
            &format!("/api/v1/tokens/{revoked_acc}"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 204, "{:?}", r.body);
    // Not a wait for an event: time has to pass for the 1 s TTL of `expired` (created above)
    // to run out before the matrix uses it.
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // (method, path, body, the token that is right for it, a token with the wrong scope, a
    // token whose paths exclude it (if the endpoint has a path), expected success status)
    let put_body = || Some(serde_json::to_vec(&json!({"data": {"k": "w"}})).unwrap());
    type Row<'a> = (
        &'a str,
        &'a str,
        fn() -> Option<Vec<u8>>,
        &'a str,
        &'a str,
        Option<(&'a str, &'a str)>,
        u16,
    );
    let rows: Vec<Row> = vec![
        (
            "GET",
            "/api/v1/secrets/app/x",
            || None,
            &reader,
            &writer,
            Some((&reader, "/api/v1/secrets/other/x")),
            200,
        ),
        (
            "PUT",
            "/api/v1/secrets/app/x",
            put_body,
            &writer,
            &reader,
            Some((&writer, "/api/v1/secrets/other/x")),
            200,
        ),
        (
            "GET",
            "/api/v1/secrets?prefix=app",
            || None,
            &reader,
            &admin,
            None,
            200,
        ),
        (
            "GET",
            "/api/v1/cluster",
            || None,
            &admin,
            &reader,
            None,
            200,
        ),
        ("GET", "/api/v1/tokens", || None, &admin, &writer, None, 200),
        ("GET", "/api/v1/keys", || None, &admin, &reader, None, 200),
        (
            "DELETE",
            "/api/v1/secrets/app/x",
            || None,
            &writer,
            &admin,
            Some((&writer, "/api/v1/secrets/other/x")),
            204,
        ),
    ];
    for node in [leader, follower] {
        for (method, path, body, good, wrong_scope, outside, ok) in &rows {
            let m = Method::from_bytes(method.as_bytes()).unwrap();
            for (label, token) in [
                ("no token", None),
                ("bad token", Some("rs.not-a-real-token-at-all-000")),
                ("expired", Some(expired.as_str())),
                ("revoked", Some(revoked.as_str())),
            ] {
                let r = call(&c, node, token, &m, path, body()).await;
                assert_eq!(
                    r.status, 401,
                    "node {node} {method} {path} {label}: {:?}",
                    r.body
                );
                assert_eq!(
                    r.headers
                        .get("www-authenticate")
                        .map(|v| v.to_str().unwrap()),
                    Some("Bearer")
                );
                assert_eq!(r.body["status"], "401");
            }
            let r = call(&c, node, Some(wrong_scope), &m, path, body()).await;
            assert_eq!(
                r.status, 403,
                "node {node} {method} {path} wrong scope: {:?}",
                r.body
            );
            if let Some((token, other)) = outside {
                let r = call(&c, node, Some(token), &m, other, body()).await;
                assert_eq!(
                    r.status, 403,
                    "node {node} {method} {other} outside paths: {:?}",
                    r.body
                );
            }
            let r = call(&c, node, Some(good), &m, path, body()).await;
            assert_eq!(
                r.status, *ok,
                "node {node} {method} {path} correct token: {:?}",
                r.body
            );
            if *method == "DELETE" {
                // Put it back for the next node's round.
                c.put(leader, "app/x", json!({"k": "v"})).await.unwrap();
            }
        }
    }
    // Health needs no token; listings show only what the token may read.
    let r = as_token(&c, follower, None).ready().await.unwrap();
    assert_eq!(r.status, 200);
    c.put(leader, "other/y", json!({"k": 1})).await.unwrap();
    let r = as_token(&c, follower, Some(&reader))
        .request(Method::GET, "/api/v1/secrets", None)
        .await
        .unwrap();
    let paths: Vec<&str> = r.body["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, vec!["app/x"], "{:?}", r.body);
    // Token listings never contain the token itself.
    let r = c.client(follower).tokens().await.unwrap();
    let listed = serde_json::to_string(&r.body).unwrap();
    for t in [reader.as_str(), &writer, &admin, &revoked, ROOT_TOKEN] {
        assert!(!listed.contains(t), "token listing leaks a token");
    }
    assert_eq!(r.body["totalResults"], 6, "root + 5 created: {:?}", r.body);
}

/// Every byte string a value could appear as on disk: raw, and base64 (three alignments,
/// standard and URL-safe alphabets).
pub(crate) fn encodings(value: &str) -> Vec<Vec<u8>> {
    byte_encodings(value.as_bytes())
}

/// [`encodings`] of any bytes (a raw key), plus its hex form.
pub(crate) fn byte_encodings(value: &[u8]) -> Vec<Vec<u8>> {
    let mut out = vec![value.to_vec()];
    if std::str::from_utf8(value).is_err() {
        let hex: String = value.iter().map(|b| format!("{b:02x}")).collect();
        out.push(hex.into_bytes());
    }
    for pad in 0..3 {
        let mut input = vec![b'x'; pad];
        input.extend_from_slice(value);
        for engine in [
            &base64::engine::general_purpose::STANDARD,
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ] {
            let enc = engine.encode(&input);
            // Skip the characters that depend on the padding prefix; keep a long stable run.
            let skip = (pad * 4).div_ceil(3) + 1;
            out.push(enc.as_bytes()[skip..skip + 16].to_vec());
        }
    }
    out
}

pub(crate) fn scan(dir: &Path, needles: &[Vec<u8>], hits: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            scan(&p, needles, hits);
        } else if let Ok(bytes) = std::fs::read(&p) {
            for n in needles {
                if bytes.windows(n.len()).any(|w| w == n.as_slice()) {
                    hits.push(format!(
                        "{} contains {:?}",
                        p.display(),
                        String::from_utf8_lossy(n)
                    ));
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_plaintext_canary_on_disk_or_in_logs() {
    let flags = [("--snapshot-every", "20"), ("--keep-logs", "5")];
    let c = Cluster::start(Opts::with_flags(&flags)).await;
    let leader = c.leader(Duration::from_secs(30)).await;
    let lagging = c.nodes.keys().copied().find(|id| *id != leader).unwrap();
    let canary = format!("CANARY-{}-d3adb33f", std::process::id());
    let r = c
        .put(leader, "app/canary", json!({"secret": canary}))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    // Custom metadata is sealed too, keys and values: neither is on disk or in a log line.
    let cm_key = format!("CMKEY-{}-0ddba11", std::process::id());
    let cm_value = format!("CMVALUE-{}-5ca1ab1e", std::process::id());
    let custom: BTreeMap<String, String> = [(cm_key.clone(), cm_value.clone())].into();
    let r = c
        .client(leader)
        .set_custom_metadata("app/canary", &custom)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    // An ondemand value: encrypted, never stored; its mount's keys (two versions) are.
    let od_canary = format!("ONDEMAND-{}-c0ffee11", std::process::id());
    let api = c.client(leader);
    assert_eq!(api.create_mount("od").await.unwrap().status, 201);
    assert_eq!(api.rotate_mount("od").await.unwrap().status, 200);
    let r = api
        .encrypt("od/x", &json!({"secret": od_canary}))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    let od_ct = r.body["data"]["ciphertext"].as_str().unwrap().to_string();
    c.kill(lagging);
    for i in 0..60 {
        let r = c
            .put(leader, &format!("filler/{}", i % 10), json!({"i": i}))
            .await
            .unwrap();
        assert_eq!(r.status, 200);
    }
    let r = c.client(leader).snapshot().await.unwrap();
    assert_eq!(r.status, 202);
    let t = std::time::Instant::now();
    while c.status(leader).await.unwrap()["purgedIndex"]
        .as_u64()
        .unwrap_or(0)
        < 20
    {
        assert!(t.elapsed() < Duration::from_secs(30), "leader never purged");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    c.restart(lagging);
    c.converged(Duration::from_secs(60)).await;
    let st = c.status(lagging).await.unwrap();
    assert!(
        st["snapshotIndex"].as_u64().unwrap_or(0) >= 20,
        "the lagging node installed a snapshot: {st}"
    );
    let r = c.get(lagging, "app/canary").await.unwrap();
    assert_eq!(
        r.body["data"]["secret"],
        canary.as_str(),
        "the value is readable where it was installed"
    );

    let r = c.client(lagging).metadata("app/canary").await.unwrap();
    assert_eq!(
        r.body["data"]["customMetadata"][&cm_key],
        cm_value.as_str(),
        "the custom metadata opens where the snapshot was installed"
    );

    let r = c.client(lagging).decrypt("od/x", &od_ct).await.unwrap();
    assert_eq!(
        r.body["data"]["secret"],
        od_canary.as_str(),
        "the ondemand value decrypts where the snapshot was installed"
    );

    let mut needles = encodings(&canary);
    needles.extend(encodings(ROOT_TOKEN));
    needles.extend(encodings(&od_canary));
    needles.extend(encodings(&cm_key));
    needles.extend(encodings(&cm_value));
    let mount_keys = mount_keys(&c, leader).await;
    assert_eq!(
        mount_keys.len(),
        2,
        "both key versions of the mount were found"
    );
    for k in &mount_keys {
        needles.extend(byte_encodings(k));
    }
    let mut hits = Vec::new();
    for id in c.nodes.keys() {
        scan(c.data_dir(*id), &needles, &mut hits);
    }
    let logs = c.logs();
    for n in &needles {
        if logs.as_bytes().windows(n.len()).any(|w| w == n.as_slice()) {
            hits.push(format!(
                "node logs contain {:?}",
                String::from_utf8_lossy(n)
            ));
        }
    }
    assert!(hits.is_empty(), "plaintext found:\n{}", hits.join("\n"));
    // The scan itself works: the canary is findable where it is expected in plaintext.
    let mut control = Vec::new();
    let probe = c.dir.path().join("probe");
    std::fs::create_dir_all(&probe).unwrap();
    std::fs::write(
        probe.join("f"),
        format!(
            "..{}..",
            base64::engine::general_purpose::STANDARD.encode(format!("zz{canary}"))
        ),
    )
    .unwrap();
    scan(&probe, &needles, &mut control);
    assert!(
        !control.is_empty(),
        "the scanner finds a base64-encoded canary"
    );
}

/// The raw keys of every ondemand mount, read from a backup (where they are wrapped) and
/// unwrapped with the test master key, as only a node could.
async fn mount_keys(c: &Cluster, node: u64) -> Vec<Vec<u8>> {
    let file = c.dir.path().join("keys.backup");
    let mut out = tokio::fs::File::create(&file).await.unwrap();
    let r = c.client(node).backup(&mut out, |_| {}).await.unwrap();
    assert!(r.is_ok(), "backup: {:?}", r.err().map(|e| e.body));
    tokio::io::AsyncWriteExt::flush(&mut out).await.unwrap();
    drop(out);
    let master = base64::engine::general_purpose::STANDARD
        .decode(crate::harness::cluster::TEST_MASTER_KEY)
        .unwrap();
    let unwrap_key = raftsafe::secret::crypto::SealingKey::new(0, &master).unwrap();
    let mut reader = raftsafe::store::backup::open(&file).unwrap();
    let mut keys = Vec::new();
    while let Some((k, v)) = reader.next_pair().unwrap() {
        if k.first() != Some(&b'N') {
            continue;
        }
        let (mount, version) = k[1..].split_at(k.len() - 1 - 5);
        assert_eq!(version[0], 0, "mount key layout N<mount>\\0<version>");
        let version = u32::from_be_bytes(version[1..].try_into().unwrap());
        let mount = std::str::from_utf8(mount).unwrap();
        let aad = raftsafe::secret::mount::key_wrap_aad(mount, version);
        let raw = unwrap_key
            .open(&aad, &v)
            .expect("a mount key unwraps with the master key");
        assert_eq!(raw.len(), 32);
        keys.push(raw);
    }
    std::fs::remove_file(&file).unwrap();
    keys
}

/// An HTTPS client trusting `roots`, presenting `<dir>/<name>.pem` and `.key` if given.
fn tls_client(roots: &rustls::RootCertStore, identity: Option<(&Path, &str)>) -> reqwest::Client {
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots.clone());
    let cfg = match identity {
        None => builder.with_no_client_auth(),
        Some((dir, name)) => {
            let certs = raftsafe::tls::load_certs(&dir.join(format!("{name}.pem"))).unwrap();
            let key = raftsafe::tls::load_key(&dir.join(format!("{name}.key"))).unwrap();
            builder.with_client_auth_cert(certs, key).unwrap()
        }
    };
    reqwest::Client::builder()
        .no_proxy()
        .tls_backend_preconfigured(cfg)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn raft_listener_requires_a_cluster_certificate() {
    let c = Cluster::start(Opts::default()).await;
    c.leader(Duration::from_secs(30)).await;
    let raft = c.nodes[&1].raft;
    let certs = c.dir.path().join("certs");
    let ca = raftsafe::tls::roots(&certs.join("ca.pem")).unwrap();
    let vote = |client: reqwest::Client| async move {
        client
            .post(format!("https://{raft}/raft/vote"))
            .body(vec![1u8, 2, 3])
            .timeout(T)
            .send()
            .await
    };
    // No client certificate: the handshake is refused.
    let client = tls_client(&ca, None);
    assert!(
        vote(client).await.is_err(),
        "a peer without a certificate reached the Raft listener"
    );

    // A certificate from another CA: refused too.
    let foreign = c.dir.path().join("foreign");
    raftsafe::tls::generate(
        &foreign,
        &[raftsafe::tls::NodeCert {
            id: "9".into(),
            names: vec!["127.0.0.1".into()],
        }],
    )
    .unwrap();
    let client = tls_client(&ca, Some((&foreign, "node-9")));
    assert!(
        vote(client).await.is_err(),
        "a peer with a foreign certificate reached the Raft listener"
    );

    // The cluster's own certificate gets through TLS (and then, without the members' key
    // derived from the master key, is refused before its body is decoded).
    let client = tls_client(&ca, Some((&certs, "node-2")));
    let r = vote(client).await.expect("a cluster member is let in");
    assert_eq!(r.status().as_u16(), 401);

    // The client API refuses plain HTTP when TLS is on.
    let options = ClientOptions {
        timeout: Some(T),
        ..Default::default()
    };
    let plain = Client::new(&format!("http://{}", c.api(1)), options).unwrap();
    let r = plain
        .request(Method::GET, "/api/v1/health/alive", None)
        .await;
    assert!(
        r.map(|r| !r.is_success()).unwrap_or(true),
        "plain HTTP was served"
    );
}

fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            out.extend(tree(&p));
        } else {
            out.insert(p.display().to_string(), std::fs::read(&p).unwrap());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wrong_master_key_refuses_to_start_and_writes_nothing() {
    let c = Cluster::start(Opts::default()).await;
    let leader = c.leader(Duration::from_secs(30)).await;
    c.put(leader, "app/k", json!({"v": 1})).await.unwrap();
    c.converged(Duration::from_secs(20)).await;
    let victim = c.nodes.keys().copied().find(|id| *id != leader).unwrap();
    c.kill(victim);
    let before = tree(c.data_dir(victim));

    // Start the node by hand with another master key and wait for it to exit.
    let other_key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    let mut env = c.env.clone();
    env.insert("RAFTSAFE_MASTER_KEY".into(), other_key);
    let args = c.nodes[&victim].args().to_vec();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_raftsafe"))
        .args(&args)
        .envs(&env)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(30), out)
        .await
        .expect("exits promptly")
        .unwrap();
    assert!(
        !out.status.success(),
        "a node with the wrong master key started"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("master key") && stderr.contains("refusing to start"),
        "{stderr}"
    );
    assert_eq!(
        before,
        tree(c.data_dir(victim)),
        "the refused start changed the data directory"
    );

    // With the right key it starts and catches up.
    c.restart(victim);
    c.put(leader, "app/k", json!({"v": 2})).await.unwrap();
    c.converged(Duration::from_secs(30)).await;
    assert_eq!(c.get(victim, "app/k").await.unwrap().body["data"]["v"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn key_rotation_keeps_old_values_readable() {
    let c = Cluster::start(Opts::default()).await;
    let leader = c.leader(Duration::from_secs(30)).await;
    let mut written: Vec<(String, Value)> = Vec::new();
    for round in 0..3 {
        for i in 0..3 {
            let path = format!("rot/{round}/{i}");
            let v = json!({"round": round, "i": i});
            let node = 1 + (round * 3 + i) as u64 % 3;
            assert_eq!(c.put(node, &path, v.clone()).await.unwrap().status, 200);
            written.push((path, v));
        }
        let r = c.client(1 + round as u64).rotate_keys().await.unwrap();
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(r.body["currentKeyId"], round + 2);
    }
    // One path rewritten after the rotations: its old versions stay under old keys.
    assert_eq!(
        c.put(leader, "rot/0/0", json!({"new": true}))
            .await
            .unwrap()
            .body["metadata"]["version"],
        2
    );
    for id in [1, 2, 3] {
        c.kill(id);
    }
    for id in [1, 2, 3] {
        c.restart(id);
    }
    c.leader(Duration::from_secs(30)).await;
    for node in [1, 2, 3] {
        for (path, v) in &written[1..] {
            let r = c.get(node, path).await.unwrap();
            assert_eq!(&r.body["data"], v, "node {node} {path}");
        }
        let r = c.client(node).get("rot/0/0", Some(1)).await.unwrap();
        assert_eq!(r.body["data"], json!({"round": 0, "i": 0}));
        let r = c.client(node).keys().await.unwrap();
        assert_eq!(r.body["currentKeyId"], 4);
    }
}
