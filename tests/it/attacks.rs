//! The attacker's review, replayed: each finding as the attacker tried it, against real
//! nodes, asserting the refusal (SECURITY.md maps each attack to its test; backups and
//! restore are tried in `it::backup` and `secret::machine`, the listeners' limits in
//! `server::listener`).
//!
//! Invariants checked:
//! - A path-limited `admin` can neither mint a token wider than itself nor touch anything
//!   cluster-wide (backup, restore, keys, membership, snapshots), nor see or revoke tokens
//!   outside its own paths.
//! - A caller without the route's scope gets its 403 before the node buffers its body; a
//!   declared body larger than any route reads is refused before authentication.
//! - A reused `X-Request-Id` with another body is refused (409) and writes nothing; a true
//!   retry gets the first answer; another token's identical id is its own request.
//! - Anonymous requests with invented methods do not grow `/metrics`: every method outside
//!   the standard set is one label value.
//! - The internal (Raft) listener refuses any caller without the members' key, in dev mode
//!   too, where it is plain HTTP on loopback.
//! - Refused anonymous requests cannot fill the disk through the audit log: their lines are
//!   rate-limited and counted, rotated files are bounded, and what is left verifies; the
//!   line names the token that authenticated and the decoded path.

use std::time::Duration;

use raftsafe::client::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::cluster::{Cluster, Opts};
use crate::harness::inproc::OneNode;
use crate::harness::nodes::Nodes;

/// A plain-HTTP (dev mode) cluster of `nodes`, so raw sockets can speak to it.
async fn plain(nodes: u64) -> (Cluster, u64) {
    let c = Cluster::start(Opts {
        nodes,
        tls: false,
        ..Default::default()
    })
    .await;
    let leader = c.leader(Duration::from_secs(30)).await;
    (c, leader)
}

/// Creates a token as root through `node`; its token and accessor.
async fn token(c: &impl Nodes, node: u64, scopes: &[&str], paths: &[&str]) -> (String, String) {
    let r = c
        .client(node)
        .create_token("t", scopes, paths, None)
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{:?}", r.body);
    (
        r.body["token"].as_str().unwrap().into(),
        r.body["accessor"].as_str().unwrap().into(),
    )
}

async fn call(
    c: &impl Nodes,
    node: u64,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> raftsafe::client::Response {
    c.client(node)
        .with_token(Some(token))
        .request(method, path, body.as_ref())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_path_limited_admin_cannot_widen_its_authority() {
    // Authorization needs a store, not a cluster: one node in this process.
    let (c, n) = (OneNode::start().await, 1);
    let r = c.put("other/db", json!({"password": "hunter2"})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let (team_admin, _) = token(&c, n, &["admin"], &["team-a/*"]).await;
    let (_, root_wide_acc) = token(&c, n, &["read:secret"], &["*"]).await;

    // The reproduced escalation: minting a token with wider scopes or paths.
    for (scopes, paths) in [
        (json!(["read:secret"]), json!(["*"])),
        (json!(["read:secret"]), json!(["team-a/*"])),
        (json!(["admin"]), json!(["*"])),
        (json!(["admin"]), json!(["team-b/*"])),
        (json!(["admin"]), json!(["team-a"])),
    ] {
        let body = json!({"name": "wider", "scopes": scopes, "paths": paths});
        let r = call(
            &c,
            n,
            &team_admin,
            Method::POST,
            "/api/v1/tokens",
            Some(body),
        )
        .await;
        assert_eq!(r.status, 403, "{scopes} on {paths}: {:?}", r.body);
    }
    // Within its own authority it may delegate.
    let body = json!({"name": "narrow", "scopes": ["admin", "metrics"], "paths": ["team-a/x/*"]});
    let r = call(
        &c,
        n,
        &team_admin,
        Method::POST,
        "/api/v1/tokens",
        Some(body),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let narrow_acc = r.body["accessor"].as_str().unwrap().to_string();

    // Nothing cluster-wide.
    let member = json!({"id": 9, "raftAddr": "127.0.0.1:1", "apiAddr": "127.0.0.1:2"});
    for (method, path, body) in [
        (Method::GET, "/api/v1/cluster/backup", None),
        (Method::POST, "/api/v1/cluster/restore", None),
        (Method::POST, "/api/v1/keys/rotate", None),
        (Method::GET, "/api/v1/keys", None),
        (Method::POST, "/api/v1/cluster/snapshot", None),
        (Method::POST, "/api/v1/cluster/members", Some(member)),
        (Method::DELETE, "/api/v1/cluster/members/1", None),
    ] {
        let r = call(&c, n, &team_admin, method.clone(), path, body).await;
        assert_eq!(r.status, 403, "{method} {path}: {:?}", r.body);
    }

    // Tokens outside its paths: neither listed nor revocable.
    let r = call(&c, n, &team_admin, Method::GET, "/api/v1/tokens", None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let listed: Vec<&str> = r.body["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["accessor"].as_str().unwrap())
        .collect();
    assert!(listed.contains(&narrow_acc.as_str()), "{listed:?}");
    assert!(!listed.contains(&root_wide_acc.as_str()), "{listed:?}");
    assert_eq!(listed.len(), 2, "itself and the token it made: {listed:?}");
    let path = format!("/api/v1/tokens/{root_wide_acc}");
    let r = call(&c, n, &team_admin, Method::DELETE, &path, None).await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    let path = format!("/api/v1/tokens/{narrow_acc}");
    let r = call(&c, n, &team_admin, Method::DELETE, &path, None).await;
    assert_eq!(r.status, 204, "{:?}", r.body);

    // Root still sees everything, and the wide token is untouched.
    let r = c
        .client(n)
        .request(Method::GET, "/api/v1/tokens", None)
        .await
        .unwrap();
    assert_eq!(r.body["totalResults"], 4, "{:?}", r.body);
}

/// Sends `head` (request line and headers, without the blank line) then, chunked, `chunks`
/// pieces of `chunk` bytes, reading the answer as soon as there is one. Returns the status
/// and how many chunks were sent before it came.
async fn chunked_until_answer(
    addr: std::net::SocketAddr,
    head: &str,
    chunk: usize,
    chunks: usize,
) -> (u16, usize) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("{head}\r\nTransfer-Encoding: chunked\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let piece = [
        format!("{chunk:x}\r\n").into_bytes(),
        vec![b'a'; chunk],
        b"\r\n".to_vec(),
    ]
    .concat();
    let mut buf = vec![0u8; 4096];
    for sent in 0..chunks {
        // A short wait for an answer between chunks: a server that refuses early answers
        // while the body is still coming.
        match tokio::time::timeout(Duration::from_millis(20), s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {
                let text = String::from_utf8_lossy(&buf[..n]);
                let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap();
                return (status, sent);
            }
            Ok(_) => return (0, sent),
            Err(_) => {}
        }
        if s.write_all(&piece).await.is_err() {
            break;
        }
    }
    let _ = s.write_all(b"0\r\n\r\n").await;
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("an answer in time")
        .unwrap_or(0);
    let text = String::from_utf8_lossy(&buf[..n]);
    (
        text.split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0),
        chunks,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_caller_without_the_scope_cannot_make_the_node_buffer_a_body() {
    let (c, n) = (OneNode::start().await, 1);
    let (metrics, _) = token(&c, n, &["metrics"], &["*"]).await;
    let addr = c.api();
    let head = |t: &str| {
        format!("POST /api/v1/tokens HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {t}")
    };
    // 400 chunks of 64 KiB would be 25 MiB: the 403 comes long before.
    let (status, sent) = chunked_until_answer(addr, &head(&metrics), 64 * 1024, 400).await;
    assert_eq!(status, 403);
    assert!(sent < 400, "the node read the whole body before refusing");
    // With the scope, the body is still bounded while streaming (the token route reads 64 KiB).
    let (status, sent) = chunked_until_answer(addr, &head(raftsafe_root()), 64 * 1024, 400).await;
    assert_eq!(status, 413);
    assert!(sent < 400, "the node read the whole oversized body");

    // A declared length beyond anything a route reads: refused before authentication, and
    // without reading a byte of it.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "POST /api/v1/tokens HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 1500000000\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let got = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("answered without the body")
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..got]).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 413"), "{text}");
    assert!(text.contains("connection: close"), "{text}");
}

fn raftsafe_root() -> &'static str {
    crate::harness::cluster::ROOT_TOKEN
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reused_request_id_never_answers_for_another_write() {
    let (c, leader) = plain(3).await;
    let follower = c.nodes.keys().copied().find(|id| *id != leader).unwrap();
    let put = |node: u64, token: Option<String>, v: &'static str| {
        let client = match &token {
            Some(t) => c.client(node).with_token(Some(t)),
            None => c.client(node),
        };
        async move {
            let body = serde_json::to_vec(&json!({"data": {"v": v}})).unwrap();
            client
                .send(
                    Method::PUT,
                    "/api/v1/secrets/app/db",
                    Some(body),
                    &[("x-request-id", "deploy-42")],
                    None,
                )
                .await
                .unwrap()
        }
    };
    let first = put(follower, None, "first").await;
    assert!(first.is_success(), "{:?}", first.body);
    // The same id with another body: refused, and nothing written.
    let second = put(follower, None, "second").await;
    assert_eq!(second.status, 409, "{:?}", second.body);
    assert_eq!(second.body["type"], "requestIdReused", "{:?}", second.body);
    let got = c.get(leader, "app/db").await.unwrap();
    assert_eq!(got.body["data"]["v"], "first", "{:?}", got.body);
    // A true retry (same id, same body) gets the first answer, through another node too.
    let retry = put(leader, None, "first").await;
    assert_eq!(retry.status, first.status, "{:?}", retry.body);
    assert_eq!(
        retry.body["metadata"]["version"],
        first.body["metadata"]["version"]
    );
    assert_eq!(first.body["metadata"]["version"], 1);
    // Another token's identical id is its own request.
    let (writer, _) = token(&c, leader, &["write:secret", "read:secret"], &["app/*"]).await;
    let other = put(follower, Some(writer), "third").await;
    assert!(other.is_success(), "{:?}", other.body);
    let got = c.get(leader, "app/db").await.unwrap();
    assert_eq!(got.body["data"]["v"], "third", "{:?}", got.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_internal_listener_admits_only_members() {
    let (c, leader) = plain(3).await;
    let raft = c.nodes[&leader].raft;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    for key in [None, Some("00".repeat(32))] {
        let mut req = http
            .post(format!("http://{raft}/raft/forward-writes"))
            .body(vec![0u8; 64])
            .timeout(Duration::from_secs(10));
        if let Some(k) = &key {
            req = req.header(raftsafe::raft::wire::PEER_KEY_HEADER, k.as_str());
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status().as_u16(), 401, "key {key:?}");
    }
    // The members themselves hold the key: writes through a follower still work.
    let follower = c.nodes.keys().copied().find(|id| *id != leader).unwrap();
    c.put(follower, "app/x", json!({"k": 1})).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invented_methods_cannot_grow_the_metrics() {
    let (c, n) = plain(1).await;
    let scrape = || async {
        let r = c
            .client(n)
            .request(Method::GET, "/metrics", None)
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        String::from_utf8(r.bytes).unwrap()
    };
    let addr = c.api(n);
    let send = |method: String| async move {
        let answer = raw_request(addr, &method, "/v1/x", "").await;
        assert!(answer.starts_with("HTTP/1.1 4"), "{answer}");
    };
    // Warm up the label set the flood will use, then measure it.
    send("INVENTED0".into()).await;
    // The first scrape is itself counted: its series show from the second on.
    scrape().await;
    let before = scrape().await;
    for i in 1..=100 {
        send(format!("INVENTED{i}")).await;
    }
    let after = scrape().await;
    assert!(
        !after.contains("INVENTED"),
        "an invented method became a label"
    );
    let series = |text: &str| text.lines().filter(|l| !l.starts_with('#')).count();
    // The same series, only their values changed (allow a few for the samplers and the
    // scrapes themselves).
    assert!(
        series(&after) <= series(&before) + 10,
        "{} series before, {} after",
        series(&before),
        series(&after)
    );
}

/// Sends one raw HTTP/1.1 request with `headers` to `addr`; the answer's text.
async fn raw_request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("an answer in time")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn anonymous_requests_cannot_fill_the_audit_log() {
    let logs = tempfile::tempdir().unwrap();
    let audit = logs.path().join("audit.log");
    let audit_arg = audit.display().to_string();
    let c = Cluster::start(Opts {
        nodes: 1,
        tls: false,
        ..Opts::with_flags(&[
            ("--audit-log", &audit_arg),
            ("--audit-max-bytes", "16384"),
            ("--audit-max-files", "2"),
            ("--audit-anonymous-per-second", "2"),
        ])
    })
    .await;
    let n = c.leader(Duration::from_secs(30)).await;
    let addr = c.api(n);
    // 300 refused requests with long paths (400 bytes; the limit is 512), in both dialects:
    // no token, a made-up token, a made-up Vault token. Unbounded, they would write ~200 KB
    // of lines.
    let long = "a".repeat(400);
    let flood = std::time::Instant::now();
    for i in 0..100 {
        for (path, headers) in [
            (format!("/api/v1/secrets/{long}/{i}"), String::new()),
            (
                format!("/api/v1/secrets/{long}/{i}"),
                "Authorization: Bearer rs.made-up-0000\r\n".to_string(),
            ),
            (
                format!("/v1/secret/data/{long}/{i}"),
                "X-Vault-Token: hvs.made-up-0000\r\n".to_string(),
            ),
        ] {
            let answer = raw_request(addr, "GET", &path, &headers).await;
            assert!(
                answer.starts_with("HTTP/1.1 401") || answer.starts_with("HTTP/1.1 403"),
                "{}",
                &answer[..answer.len().min(200)]
            );
        }
    }
    // At most a burst of 20 (ten seconds at 2 a second) plus 2 a second were written.
    let most_written = 20 + 2 * (flood.elapsed().as_secs() + 1);
    // A request with the root token is always written, and carries a count; on
    // `/api/v1` its accessor is the one of the `Authorization` token it authenticated
    // with, whatever `X-Vault-Token` says; the path is logged decoded.
    let root = raftsafe_root();
    let answer = raw_request(
        addr,
        "GET",
        "/api/v1/secrets/app/with%20space",
        &format!("Authorization: Bearer {root}\r\nX-Vault-Token: hvs.made-up-0000\r\n"),
    )
    .await;
    // (Refused as an invalid path: the space is not allowed, which the decoded line shows.)
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");

    let mut files: Vec<std::path::PathBuf> = raftsafe::audit::rotated_files(&audit)
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    assert!(files.len() <= 2, "rotated files kept: {files:?}");
    files.push(audit.clone());
    let bytes: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum();
    assert!(bytes < 60_000, "{bytes} bytes of audit log");
    let lines: Vec<Value> = files
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .map(|l| serde_json::from_str(&l).unwrap())
        .collect();
    let last = lines.last().unwrap();
    assert_eq!(last["path"], "/api/v1/secrets/app/with space", "{last}");
    assert_eq!(
        last["accessor"],
        raftsafe::secret::token::accessor(root).as_str(),
        "{last}"
    );
    assert!(last["suppressed"].as_u64().unwrap_or(0) > 0, "{last}");
    // Every anonymous request is accounted for: written or counted.
    let r = c
        .client(n)
        .request(Method::GET, "/metrics", None)
        .await
        .unwrap();
    let text = String::from_utf8(r.bytes).unwrap();
    let counted: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("raftsafe_audit_suppressed_total "))
        .expect("the suppressed counter")
        .trim()
        .parse()
        .unwrap();
    assert!(
        counted as u64 >= 300 - most_written && counted as u64 <= 300,
        "{counted} suppressed, at most {most_written} written"
    );
    // What is left still verifies as a chain.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_raftsafe"))
        .arg("audit")
        .arg("verify")
        .args(&files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
