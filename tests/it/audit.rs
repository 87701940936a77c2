//! The audit log on a real node: one hash-chained line per authenticated request, checked
//! by `raftsafe audit verify`, and fail-closed when it cannot be written.
//!
//! Invariants checked: every request through authentication (accepted, 401, 403, 400)
//! leaves a line with its route, path, status and the accessor, never a value, a token or a
//! query string; the chain verifies across rotated files; removing, reordering or editing a
//! line makes `audit verify` fail and name the line; a log that cannot be written makes
//! requests 503 (health excepted) until it can be written again.

use std::path::{Path, PathBuf};
use std::time::Duration;

use raftsafe::client::Method;
use serde_json::{json, Value};

use crate::harness::cluster::{Cluster, Opts, ROOT_TOKEN};
use crate::harness::nodes::Nodes;
use crate::harness::wait::until;
use crate::security::{encodings, scan};

fn verify(files: &[&Path]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_raftsafe"))
        .arg("audit")
        .arg("verify")
        .args(files)
        .output()
        .expect("run raftsafe audit verify");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

/// The current file and its rotated ones, oldest first.
fn chain_files(current: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = raftsafe::audit::rotated_files(current)
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    files.push(current.to_path_buf());
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_request_leaves_a_chained_line_without_secrets() {
    let logs = tempfile::tempdir().unwrap();
    let audit = logs.path().join("audit.log");
    let audit_arg = audit.display().to_string();
    let c = Cluster::start(Opts {
        nodes: 1,
        ..Opts::with_flags(&[("--audit-log", &audit_arg), ("--audit-max-bytes", "8192")])
    })
    .await;
    c.leader(Duration::from_secs(30)).await;
    let root = c.client(1);
    let canary = format!("AUDIT-CANARY-{}-value", std::process::id());
    let query_canary = format!("QUERYCANARY{}", std::process::id());
    let r = root
        .put("app/audited", &json!({"secret": canary}), None)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert!(
        r.header("x-request-id").is_some(),
        "the answer names its request id"
    );
    assert_eq!(root.get("app/audited", None).await.unwrap().status, 200);
    let reader = root
        .create_token("r", &["read:secret"], &["other/*"], None)
        .await
        .unwrap();
    let reader_token = reader.body["token"].as_str().unwrap().to_string();
    let statuses = [
        root.with_token(Some(&reader_token))
            .get("app/audited", None)
            .await
            .unwrap()
            .status,
        root.with_token(Some("rs.wrong-token-0000000000000"))
            .get("app/audited", None)
            .await
            .unwrap()
            .status,
        root.with_token(None)
            .get("app/audited", None)
            .await
            .unwrap()
            .status,
        root.request(
            Method::GET,
            &format!("/api/v1/secrets/app/audited?ciphertext={query_canary}"),
            None,
        )
        .await
        .unwrap()
        .status,
    ];
    assert_eq!(statuses, [403, 401, 401, 400]);
    for i in 0..60 {
        let r = root
            .put(&format!("app/fill/{i}"), &json!({"secret": canary}), None)
            .await
            .unwrap();
        assert_eq!(r.status, 200);
    }
    // Health is not audited.
    let health = root
        .request(Method::GET, "/api/v1/health/ready", None)
        .await
        .unwrap();
    assert_eq!(health.status, 200);

    let files = chain_files(&audit);
    assert!(files.len() > 1, "8 KiB files rotated: {files:?}");
    let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let (ok, out) = verify(&refs);
    assert!(ok, "{out}");
    let (ok, out) = verify(&[audit.as_path()]);
    assert!(
        ok && out.contains("file(s)"),
        "the current file finds its rotated ones: {out}"
    );

    let all: Vec<Value> = files
        .iter()
        .flat_map(|f| lines(f))
        .map(|l| serde_json::from_str(&l).unwrap())
        .collect();
    assert!(all.len() >= 68, "{} lines", all.len());
    assert!(all.iter().all(|l| l["route"] != "/api/v1/health/ready"));
    let root_accessor = raftsafe::secret::token::accessor(ROOT_TOKEN);
    let put = all
        .iter()
        .find(|l| l["method"] == "PUT" && l["path"] == "/api/v1/secrets/app/audited")
        .expect("the PUT is audited");
    assert_eq!(put["status"], 200);
    assert_eq!(put["accessor"], root_accessor.as_str());
    assert_eq!(put["route"], "/api/v1/secrets/{*path}");
    for status in [401, 403, 400] {
        assert!(all.iter().any(|l| l["status"] == status), "a {status} line");
    }
    assert!(
        all.iter()
            .any(|l| l["status"] == 401 && l["accessor"].is_null()),
        "no token: no accessor"
    );

    // No value, token or query string in any audit file.
    let mut needles = encodings(&canary);
    needles.extend(encodings(ROOT_TOKEN));
    needles.extend(encodings(&reader_token));
    needles.push(query_canary.as_bytes().to_vec());
    let mut hits = Vec::new();
    scan(logs.path(), &needles, &mut hits);
    assert!(hits.is_empty(), "{}", hits.join("\n"));

    // Tampering is caught and the line named: on a copy of the longest file of the chain.
    let current = files.iter().map(|f| lines(f)).max_by_key(Vec::len).unwrap();
    assert!(current.len() >= 4, "{} lines", current.len());
    let copy = logs.path().join("tampered");
    let write = |ls: &[String]| std::fs::write(&copy, ls.join("\n") + "\n").unwrap();
    let mut deleted = current.clone();
    deleted.remove(2);
    let mut reordered = current.clone();
    reordered.swap(1, 2);
    let mut edited = current.clone();
    edited[2] = edited[2].replace("\"status\":200", "\"status\":204");
    assert_ne!(edited[2], current[2], "the edit changed the line");
    for (what, tampered, line) in [
        ("deleted", deleted, "line 3"),
        ("reordered", reordered, "line 2"),
        ("edited", edited, "line 3"),
    ] {
        write(&tampered);
        let (ok, out) = verify(&[copy.as_path()]);
        assert!(!ok, "{what}: verify must fail");
        assert!(out.contains(line), "{what}: {out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unwritable_audit_log_refuses_requests_until_it_can_be_written() {
    // The tests run as root, which ignores permission bits: the log's directory is made
    // unusable by being a regular file instead.
    let logs = tempfile::tempdir().unwrap();
    let blocker = logs.path().join("audit-dir");
    std::fs::write(&blocker, b"not a directory").unwrap();
    let audit = blocker.join("audit.log");
    let audit_arg = audit.display().to_string();
    let c = Cluster::start(Opts {
        nodes: 1,
        ..Opts::with_flags(&[("--audit-log", &audit_arg)])
    })
    .await;
    let client = c.client(1);
    // Health is not audited, so the node reports ready...
    let t = std::time::Instant::now();
    loop {
        let r = client
            .request(Method::GET, "/api/v1/health/ready", None)
            .await;
        if r.as_ref().is_ok_and(|r| r.status == 200) {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "never ready: {r:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // ...but refuses every audited request, reads and writes, without running it.
    let r = client.put("app/x", &json!({"a": 1}), None).await.unwrap();
    assert_eq!(r.status, 503, "{:?}", r.body);
    assert!(r.detail().contains("audit log"), "{}", r.detail());
    let r = client.get("app/x", None).await.unwrap();
    assert_eq!(r.status, 503);
    let m = client.request(Method::GET, "/metrics", None).await.unwrap();
    assert_eq!(m.status, 503, "even /metrics is audited");
    assert!(c.node_log(1).contains("cannot open the audit log"));

    // Once the log can be written, requests are served again (and the refused PUT did not
    // happen).
    std::fs::remove_file(&blocker).unwrap();
    std::fs::create_dir(&blocker).unwrap();
    // The node retries the log at most once a second, on a request: poll until one is
    // served (anything but the audit 503).
    let r = until(
        Duration::from_secs(15),
        "a request served once the audit log could be written again",
        async || {
            let r = client.get("app/x", None).await.unwrap();
            if r.status == 503 {
                Err(format!("503 {}", r.detail()))
            } else {
                Ok(r)
            }
        },
    )
    .await;
    assert_eq!(
        r.status, 404,
        "served again, and the refused write never ran: {:?}",
        r.body
    );
    let (ok, out) = verify(&[audit.as_path()]);
    assert!(ok, "{out}");
}
