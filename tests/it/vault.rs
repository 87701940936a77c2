//! The Vault KV v2 dialect (`/v1/`), driven by hvac — the real Python Vault client, through
//! `tests/python/vault_hvac.py` — and by raw HTTP for the envelope and error shapes, on a
//! TLS cluster.
//!
//! Invariants checked: hvac's create, read (latest and a version), check-and-set, patch,
//! list, metadata, delete, undelete, destroy, the version cap, removing a path and
//! permission errors behave as against Vault, writing through one
//! node and reading through another; it is the same store as `/api/v1` (same versions, same
//! tokens and scopes); responses carry Vault's envelope and errors Vault's `{"errors": []}`;
//! bad input writes nothing.

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
    let out = python::run(
        "vault_hvac.py",
        &[&url(f1), &url(f2), ROOT_TOKEN, ca.to_str().unwrap()],
        b"",
    );
    assert!(
        out.status.success(),
        "hvac run failed:\n{}",
        python::failure(&out)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
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
