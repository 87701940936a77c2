//! The ondemand engine and the rest of the secret lifecycle, with real processes on a TLS
//! cluster: mounts, encrypt / decrypt / rewrap, key rotation, config and trim; ETags with
//! `If-Match` / `If-None-Match`; undelete, destroy, the metadata view, the version cap and
//! removing a path; bad input on every new call.
//!
//! Invariants checked: every call answers the same through a follower as through the leader
//! (scopes included: 401 without a token, 403 outside the token's scope); a ciphertext
//! decrypts on every node, after two rotations and after a restart of the whole cluster, and
//! is refused (400, with a detail that says why) once below `minDecryptionVersion`, at
//! another path, with any bit flipped, or after its mount was deleted; of many concurrent
//! `If-Match` writers exactly one wins each version and the history has no gap; pruning,
//! undelete, destroy and mounts reach a node that catches up by snapshot (the digest of every
//! node agrees); rejected input changes nothing (same applied index and digest).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use base64::Engine;
use raftsafe::client::{Client, Method, Response};
use serde_json::json;

use crate::harness::cluster::{Cluster, Opts};
use crate::harness::golden::{self, expect, BadInput};
use crate::harness::nodes::Nodes;
use crate::harness::wait;

/// The deadline of the single requests below.
const T: Duration = Duration::from_secs(15);

fn followers(c: &Cluster, leader: u64) -> Vec<u64> {
    c.nodes.keys().copied().filter(|id| *id != leader).collect()
}

/// Creates a token with `scopes` on `paths`; returns the token.
async fn token(c: &Cluster, node: u64, name: &str, scopes: &[&str], paths: &[&str]) -> String {
    let r = c
        .client(node)
        .create_token(name, scopes, paths, None)
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.body["token"].as_str().unwrap().to_string()
}

fn ciphertext(r: &Response) -> String {
    assert_eq!(r.status, 200, "encrypt: {:?}", r.body);
    r.body["data"]["ciphertext"].as_str().unwrap().to_string()
}

/// The ciphertext with bit `bit` of its decoded body flipped.
fn flip(ct: &str, bit: usize) -> String {
    let (head, body) = ct.rsplit_once(':').unwrap();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut bytes = b64.decode(body).unwrap();
    bytes[bit / 8] ^= 1 << (bit % 8);
    format!("{head}:{}", b64.encode(bytes))
}

/// Bad input on the engine's calls and the lifecycle's, one case a line
/// ([`crate::harness::golden`]). Sent through a follower; each must get its status and
/// error body and change nothing.
const BAD_INPUT: &str = r#"
POST /api/v1/mounts | {"path":"x","type":"ondemand","extra":1} | 400 | unknownField | extra
POST /api/v1/mounts | {"path":7,"type":"ondemand"} | 400 | invalidField | 'path'
POST /api/v1/mounts | {"path":"x","type":"kv"} | 400 | invalidField | ondemand
POST /api/v1/mounts | {"path":"a//b","type":"ondemand"} | 400 | invalidPath | empty segment
POST /api/v1/mounts | not json | 400 | - | not valid JSON
GET /api/v1/mounts/nope | - | 404 | notFound | no mount at 'nope'
POST /api/v1/mounts/nope/rotate | - | 404 | notFound | no mount at 'nope'
POST /api/v1/mounts/pay/spin | - | 404 | notFound | rotate, trim
DELETE /api/v1/mounts/pay | - | 400 | - | ?confirm=pay
DELETE /api/v1/mounts/pay?confirm=pax | - | 400 | - | does not name
PUT /api/v1/mounts/pay/config | {"minDecryptionVersion":"2"} | 400 | invalidField | minDecryptionVersion
PUT /api/v1/mounts/pay/config | {"minDecryption":2} | 400 | unknownField | minDecryption
PUT /api/v1/mounts/pay/config | {} | 400 | - | nothing to change
POST /api/v1/mounts/pay/trim | {"minAvailableVersion":-1} | 400 | invalidField | minAvailableVersion
PUT /api/v1/secrets/pay/card | {"data":{},"options":{"cas":1}} | 400 | unknownField | options.cas
PUT /api/v1/secrets/pay/card | {"data":"x"} | 400 | invalidData | JSON object
PUT /api/v1/secrets/pay/card | {"data":{},"x":1} | 400 | unknownField | 'x'
PUT /api/v1/secrets/pay | {"data":{}} | 400 | - | mount itself
POST /api/v1/rewrap/pay/card | {"ciphertext":5} | 400 | invalidField | ciphertext
POST /api/v1/rewrap/pay/card | {"ciphertext":"raftsafe:v1:AAAA","x":1} | 400 | unknownField | 'x'
POST /api/v1/rewrap/pay/card | {"ciphertext":"raftsafe:v1:%%"} | 400 | malformedCiphertext | base64url
PUT /api/v1/metadata/kv/a | {"maxVersions":0} | 400 | invalidField | maxVersions
PUT /api/v1/metadata/kv/a | {"maxVersions":"3"} | 400 | invalidField | maxVersions
PUT /api/v1/metadata/kv/a | {"max_versions":3} | 400 | unknownField | max_versions
PUT /api/v1/metadata/pay/card | {"maxVersions":3} | 400 | - | keeps no versions
GET /api/v1/metadata/kv/zzz | - | 404 | notFound | not found
POST /api/v1/undelete/kv/a | {"versions":[]} | 400 | invalidField | non-empty
POST /api/v1/undelete/kv/a | {"versions":[0]} | 400 | invalidField | versions
POST /api/v1/destroy/kv/a | {"versions":"1"} | 400 | invalidField | versions
POST /api/v1/destroy/kv/a | {"versions":[1],"all":true} | 400 | unknownField | 'all'
"#;

/// The cluster, the tokens and the data that every step of the engine test uses.
struct OnDemand {
    c: Cluster,
    leader: u64,
    follower: u64,
    admin: String,
    writer: String,
    reader: String,
    other: String,
    data: serde_json::Value,
}

/// The ondemand engine end to end on one cluster, step by step: each step leaves what the
/// next ones build on (a mount, ciphertexts of each key version).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ondemand_engine_through_leader_and_follower() {
    let c = Cluster::start(Opts::default()).await;
    let leader = c.leader(Duration::from_secs(30)).await;
    let follower = followers(&c, leader)[0];
    let e = OnDemand {
        admin: token(&c, leader, "admin", &["admin"], &["*"]).await,
        writer: token(&c, leader, "w", &["write:secret"], &["pay/*"]).await,
        reader: token(&c, leader, "r", &["read:secret"], &["pay/*"]).await,
        other: token(&c, leader, "o", &["read:secret", "write:secret"], &["kv/*"]).await,
        data: json!({"card": "4111-1111", "cvv": 123}),
        c,
        leader,
        follower,
    };
    mounts(&e).await;
    let (cts, ct1) = encrypt_and_decrypt(&e).await;
    let v1 = &cts[&follower];
    refusals(&e, v1).await;
    let (v3, rewrapped) = rotations(&e, v1).await;
    config_and_trim(&e, v1, &rewrapped).await;
    bad_input(&e).await;
    restart_everything(&e, &v3, &rewrapped).await;
    unmount(&e, &v3, &ct1).await;
}

async fn mounts(e: &OnDemand) {
    let (c, leader, follower) = (&e.c, e.leader, e.follower);
    let admin = e.admin.as_str();
    let writer = e.writer.as_str();
    let reader = e.reader.as_str();
    // Mounts: created through a follower, refused without a token, outside the admin scope,
    // twice, nested, or over a KV secret (409 naming the conflict).
    let r = c
        .client(follower)
        .with_token(None)
        .create_mount("pay")
        .await
        .unwrap();
    expect(&r, 401, "unauthorized", "", "create without token");
    let r = c
        .client(follower)
        .with_token(Some(writer))
        .create_mount("pay")
        .await
        .unwrap();
    expect(&r, 403, "forbidden", "admin", "create as writer");
    let r = c
        .client(follower)
        .with_token(Some(admin))
        .create_mount("pay")
        .await
        .unwrap();
    expect(&r, 201, "", "", "create");
    assert_eq!(r.body["latestVersion"], 1, "{:?}", r.body);
    assert_eq!(r.body["type"], "ondemand");
    let r = c.client(leader).create_mount("pay").await.unwrap();
    expect(&r, 409, "mountConflict", "already mounted", "twice");
    let r = c.client(follower).create_mount("pay/eu").await.unwrap();
    expect(
        &r,
        409,
        "mountConflict",
        "inside the mount at 'pay'",
        "nested",
    );
    let r = c.put(leader, "kv/a", json!({"v": 1})).await.unwrap();
    assert_eq!(r.status, 200);
    let r = c.client(follower).create_mount("kv").await.unwrap();
    expect(&r, 409, "mountConflict", "'kv/a'", "over a KV secret");
    let r = c
        .client(leader)
        .with_token(Some(admin))
        .mounts(None)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body["totalResults"], 1, "{:?}", r.body);
    assert_eq!(r.body["Resources"][0]["path"], "pay");
    let r = c
        .client(follower)
        .with_token(Some(reader))
        .mounts(None)
        .await
        .unwrap();
    expect(&r, 403, "forbidden", "admin", "list as reader");
}

async fn encrypt_and_decrypt(e: &OnDemand) -> (BTreeMap<u64, String>, String) {
    let (c, leader, follower) = (&e.c, e.leader, e.follower);
    let writer = e.writer.as_str();
    let reader = e.reader.as_str();
    let other = e.other.as_str();
    let data = e.data.clone();
    // Encrypt (write:secret) and decrypt (read:secret), through each node, each way round.
    let mut cts = BTreeMap::new();
    for (enc, dec) in [(follower, leader), (leader, follower)] {
        let w = c.client(enc).with_token(Some(writer));
        let r = w.encrypt("pay/card", &data).await.unwrap();
        let ct = ciphertext(&r);
        assert!(ct.starts_with("raftsafe:v1:"), "{ct}");
        assert!(r.header("etag").is_none(), "nothing stored, no version");
        let r = c
            .client(enc)
            .with_token(Some(reader))
            .encrypt("pay/card", &data)
            .await
            .unwrap();
        expect(&r, 403, "forbidden", "write:secret", "encrypt as reader");
        let r = c
            .client(enc)
            .with_token(Some(other))
            .encrypt("pay/card", &data)
            .await
            .unwrap();
        expect(
            &r,
            403,
            "forbidden",
            "pay/card",
            "encrypt outside the token's paths",
        );
        let r = c
            .client(enc)
            .with_token(None)
            .encrypt("pay/card", &data)
            .await
            .unwrap();
        expect(&r, 401, "unauthorized", "", "encrypt without token");
        let r = c
            .client(dec)
            .with_token(Some(reader))
            .decrypt("pay/card", &ct)
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(r.body["data"], data);
        let r = c
            .client(dec)
            .with_token(Some(writer))
            .decrypt("pay/card", &ct)
            .await
            .unwrap();
        expect(&r, 403, "forbidden", "read:secret", "decrypt as writer");
        let r = c
            .client(dec)
            .with_token(Some(reader))
            .rewrap("pay/card", &ct)
            .await
            .unwrap();
        assert_eq!(r.status, 200, "rewrap as reader: {:?}", r.body);
        cts.insert(enc, ct);
    }
    // Nothing was stored: no KV secret appeared, and listing shows none under the mount.
    let r = c.client(leader).list("pay").await.unwrap();
    assert_eq!(r.body["totalResults"], 0, "{:?}", r.body);

    // Made on node 1, decrypts on nodes 2 and 3.
    let ct1 = ciphertext(&c.client(1).encrypt("pay/card", &data).await.unwrap());
    for id in [2, 3] {
        let r = c.client(id).decrypt("pay/card", &ct1).await.unwrap();
        assert_eq!(r.status, 200, "node {id}: {:?}", r.body);
        assert_eq!(r.body["data"], data);
    }
    (cts, ct1)
}

async fn refusals(e: &OnDemand, v1: &str) {
    let (c, node) = (&e.c, e.follower);
    // Refusals, each with its own detail.
    let r = c.client(node).decrypt("pay/other", v1).await.unwrap();
    expect(
        &r,
        400,
        "authenticationFailed",
        "another path",
        "moved to another path",
    );
    let r = c.client(node).get("pay/card", None).await.unwrap();
    expect(
        &r,
        400,
        "",
        "?ciphertext=",
        "GET on a mount without ciphertext",
    );
    let r = c
        .client(node)
        .request(
            Method::GET,
            &format!("/api/v1/secrets/pay/card?version=1&ciphertext={v1}"),
            None,
        )
        .await
        .unwrap();
    expect(
        &r,
        400,
        "",
        "'version' does not apply",
        "version on a mount",
    );
    let r = c.client(node).decrypt("kv/a", v1).await.unwrap();
    expect(
        &r,
        400,
        "",
        "only accepted on an ondemand mount",
        "ciphertext on a KV path",
    );
    let r = c.client(node).decrypt("pay", v1).await.unwrap();
    expect(&r, 400, "", "mount itself", "decrypt at the mount path");
    let r = c
        .client(node)
        .decrypt("pay/card", "raftsafe:v1:!!!")
        .await
        .unwrap();
    expect(&r, 400, "malformedCiphertext", "base64url", "bad base64");
    let r = c
        .client(node)
        .decrypt("pay/card", "other:v1:abcd")
        .await
        .unwrap();
    expect(
        &r,
        400,
        "malformedCiphertext",
        "raftsafe:v",
        "foreign prefix",
    );
    // Transit's spelling of the same keys: refused, naming where it decrypts.
    let r = c
        .client(node)
        .decrypt("pay/card", "vault:v1:abcd")
        .await
        .unwrap();
    expect(
        &r,
        400,
        "malformedCiphertext",
        "/v1/transit/decrypt",
        "a Transit ciphertext",
    );
    let r = c
        .client(node)
        .decrypt("pay/card", &v1.replacen("raftsafe:v1:", "raftsafe:v9:", 1))
        .await
        .unwrap();
    expect(
        &r,
        400,
        "unknownKeyVersion",
        "up to 1",
        "unknown key version",
    );
    let r = c.client(node).delete("pay/card").await.unwrap();
    expect(&r, 400, "", "stores nothing", "DELETE under a mount");
    // Longer than the limit but short enough for a URL (HTTP libraries stop at 64 KiB).
    let huge = format!("raftsafe:v1:{}", "A".repeat(56 * 1024));
    let r = c.client(node).decrypt("pay/card", &huge).await.unwrap();
    expect(&r, 413, "tooLarge", "limit", "huge ciphertext");
    let huger = format!("raftsafe:v1:{}", "A".repeat(300 * 1024));
    let r = c.client(node).rewrap("pay/card", &huger).await.unwrap();
    expect(&r, 413, "tooLarge", "limit", "huge rewrap");
    // Data whose ciphertext would pass that limit is refused at encryption.
    let big = json!({"v": "x".repeat(40 * 1024)});
    let r = c.client(node).encrypt("pay/card", &big).await.unwrap();
    expect(
        &r,
        413,
        "tooLarge",
        "would be",
        "data too big to decrypt later",
    );
    // A flipped bit anywhere in the body (nonce, ciphertext, tag) is refused.
    let body_bits = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(v1.rsplit_once(':').unwrap().1)
        .unwrap()
        .len()
        * 8;
    for bit in (0..body_bits).step_by(7) {
        let r = c
            .client(1 + bit as u64 % 3)
            .decrypt("pay/card", &flip(v1, bit))
            .await
            .unwrap();
        expect(
            &r,
            400,
            "authenticationFailed",
            "tampered",
            &format!("bit {bit} flipped"),
        );
    }
}

async fn rotations(e: &OnDemand, v1: &str) -> (String, String) {
    let (c, leader, follower) = (&e.c, e.leader, e.follower);
    let admin = e.admin.as_str();
    let writer = e.writer.as_str();
    let data = e.data.clone();
    // Two rotations (through a follower, then the leader): the old ciphertext still decrypts,
    // new ones use the new version, rewrap moves an old one to it.
    let r = c
        .client(follower)
        .with_token(Some(admin))
        .rotate_mount("pay")
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["latestVersion"], 2);
    let r = c
        .client(follower)
        .with_token(Some(writer))
        .rotate_mount("pay")
        .await
        .unwrap();
    expect(&r, 403, "forbidden", "admin", "rotate as writer");
    let r = c.client(leader).rotate_mount("pay").await.unwrap();
    assert_eq!(r.body["latestVersion"], 3, "{:?}", r.body);
    for id in [1, 2, 3] {
        let r = c.client(id).decrypt("pay/card", v1).await.unwrap();
        assert_eq!(
            r.status, 200,
            "v1 after two rotations on node {id}: {:?}",
            r.body
        );
        assert_eq!(r.body["data"], data);
    }
    // Encryption right after a rotation acknowledged elsewhere uses the new version.
    let v3 = ciphertext(&c.client(follower).encrypt("pay/card", &data).await.unwrap());
    assert!(v3.starts_with("raftsafe:v3:"), "{v3}");
    let r = c.client(leader).rewrap("pay/card", v1).await.unwrap();
    let rewrapped = ciphertext(&r);
    assert!(rewrapped.starts_with("raftsafe:v3:"), "{rewrapped}");
    assert!(
        r.body["data"].get("card").is_none(),
        "rewrap never shows plaintext"
    );
    let r = c.client(follower).rewrap("kv/a", v1).await.unwrap();
    expect(
        &r,
        400,
        "",
        "not under an ondemand mount",
        "rewrap on a KV path",
    );
    // Only the latest version encrypts unless minEncryptionVersion allows older ones.
    let r = c
        .client(leader)
        .request(
            Method::PUT,
            "/api/v1/secrets/pay/card",
            Some(&json!({"data": data, "options": {"keyVersion": 1}})),
        )
        .await
        .unwrap();
    expect(
        &r,
        400,
        "invalidOptions",
        "keyVersion",
        "old key version to encrypt",
    );
    (v3, rewrapped)
}

async fn config_and_trim(e: &OnDemand, v1: &str, rewrapped: &str) {
    let (c, leader, follower) = (&e.c, e.leader, e.follower);
    let admin = e.admin.as_str();
    let writer = e.writer.as_str();
    let data = e.data.clone();
    // Config: minDecryptionVersion 2 refuses the v1 ciphertext, with a detail that says so.
    let r = c
        .client(follower)
        .with_token(Some(writer))
        .configure_mount("pay", Some(2), None)
        .await
        .unwrap();
    expect(&r, 403, "forbidden", "admin", "config as writer");
    let r = c
        .client(follower)
        .configure_mount("pay", Some(2), Some(2))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["minDecryptionVersion"], 2);
    for id in [leader, follower] {
        let r = c.client(id).decrypt("pay/card", v1).await.unwrap();
        expect(
            &r,
            400,
            "keyVersionTooOld",
            "minDecryptionVersion 2",
            "v1 below the minimum",
        );
        let r = c.client(id).decrypt("pay/card", rewrapped).await.unwrap();
        assert_eq!(r.body["data"], data, "the rewrapped one still decrypts");
    }
    let r = c
        .client(leader)
        .request(
            Method::PUT,
            "/api/v1/secrets/pay/card",
            Some(&json!({"data": data, "options": {"keyVersion": 2}})),
        )
        .await
        .unwrap();
    assert!(
        ciphertext(&r).starts_with("raftsafe:v2:"),
        "minEncryptionVersion 2 allows v2"
    );
    let r = c
        .client(leader)
        .configure_mount("pay", Some(5), None)
        .await
        .unwrap();
    expect(
        &r,
        400,
        "invalidVersion",
        "above the latest key version 3",
        "config too high",
    );
    // Trim: only up to minDecryptionVersion, never back.
    let r = c.client(follower).trim_mount("pay", 3).await.unwrap();
    expect(
        &r,
        400,
        "invalidVersion",
        "minDecryptionVersion",
        "trim above the minimum",
    );
    let r = c.client(follower).trim_mount("pay", 2).await.unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["minAvailableVersion"], 2);
    let r = c
        .client(leader)
        .configure_mount("pay", Some(1), None)
        .await
        .unwrap();
    expect(&r, 400, "invalidVersion", "trimmed", "below a trim");
    let r = c
        .client(leader)
        .with_token(Some(admin))
        .mounts(Some("pay"))
        .await
        .unwrap();
    assert_eq!(r.body["minAvailableVersion"], 2, "{:?}", r.body);
}

/// Bad input on every new call ([`BAD_INPUT`], and the bodies too big to write there): 4xx
/// with an error body, and nothing applied.
async fn bad_input(e: &OnDemand) {
    let (c, leader, follower) = (&e.c, e.leader, e.follower);
    let before = c.converged(Duration::from_secs(20)).await;
    let mut cases = golden::table(BAD_INPUT);
    // Bodies too big to write out.
    let big =
        |method, path, body| BadInput::new(method, path, Some(body), 413, "tooLarge", "limit");
    cases.extend([
        big(
            Method::POST,
            "/api/v1/mounts",
            format!(r#"{{"path":"{}"}}"#, "x".repeat(20_000)),
        ),
        big(
            Method::PUT,
            "/api/v1/secrets/pay/card",
            format!(r#"{{"data":{{"v":"{}"}}}}"#, "x".repeat(600_000)),
        ),
        big(
            Method::POST,
            "/api/v1/destroy/kv/a",
            format!(r#"{{"versions":[{}1]}}"#, "1,".repeat(40_000)),
        ),
    ]);
    for case in &cases {
        case.check(&c.client(follower), T).await;
    }
    // Bad preconditions on KV writes.
    for (h, v, fragment) in [
        ("if-match", "3", "strong ETag"),
        ("if-match", "W/\"1\"", "strong ETag"),
        ("if-none-match", "\"1\"", "only '*'"),
    ] {
        let r = c
            .client(leader)
            .send(
                Method::PUT,
                "/api/v1/secrets/kv/a",
                Some(br#"{"data":{}}"#.to_vec()),
                &[(h, v)],
                Some(T),
            )
            .await
            .unwrap();
        expect(&r, 400, "", fragment, &format!("{h}: {v}"));
    }
    let after = c.converged(Duration::from_secs(20)).await;
    assert_eq!(before, after, "nothing was applied by rejected requests");
}

async fn restart_everything(e: &OnDemand, v3: &str, rewrapped: &str) {
    let c = &e.c;
    let data = e.data.clone();
    // The whole cluster restarts: ciphertexts (one made on node 1) still decrypt everywhere.
    let on_node_1 = ciphertext(&c.client(1).encrypt("pay/card", &data).await.unwrap());
    for id in [1, 2, 3] {
        c.kill(id);
    }
    for id in [1, 2, 3] {
        c.restart(id);
    }
    c.leader(Duration::from_secs(30)).await;
    // Every node up and caught up (a node still starting would refuse the connection).
    c.converged(Duration::from_secs(30)).await;
    for id in [1, 2, 3] {
        for ct in [on_node_1.as_str(), v3, rewrapped] {
            let r = c.client(id).decrypt("pay/card", ct).await.unwrap();
            assert_eq!(r.status, 200, "node {id} after restart: {:?}", r.body);
            assert_eq!(r.body["data"], data);
        }
    }
}

async fn unmount(e: &OnDemand, v3: &str, ct1: &str) {
    let (c, leader, follower) = (&e.c, e.leader, e.follower);
    let writer = e.writer.as_str();
    // Deleting the mount destroys its keys: mounted again, the old ciphertexts are refused.
    let r = c
        .client(follower)
        .with_token(Some(writer))
        .delete_mount("pay", "pay")
        .await
        .unwrap();
    expect(&r, 403, "forbidden", "admin", "delete as writer");
    let r = c.client(follower).delete_mount("pay", "pay").await.unwrap();
    assert_eq!(r.status, 204, "{:?}", r.body);
    let r = c.client(leader).decrypt("pay/card", v3).await.unwrap();
    expect(&r, 400, "", "not under one", "after unmount");
    let r = c.client(leader).create_mount("pay").await.unwrap();
    assert_eq!(r.status, 201, "{:?}", r.body);
    let r = c.client(follower).decrypt("pay/card", ct1).await.unwrap();
    expect(
        &r,
        400,
        "authenticationFailed",
        "deleted since",
        "old ciphertext, new mount",
    );
    let r = c.client(leader).delete_mount("nope", "nope").await.unwrap();
    expect(&r, 404, "notFound", "no mount", "delete unknown mount");
    c.converged(Duration::from_secs(20)).await;
}

/// One `If-Match` writer: reads the ETag, writes with it, until it has won `wins` times or
/// made `attempts` attempts. Returns (version won, value written) for each win.
async fn if_match_writer(api: Client, name: String, attempts: usize) -> Vec<(u64, String)> {
    let mut won = Vec::new();
    for i in 0..attempts {
        let r = api.get("race/x", None).await.unwrap();
        assert_eq!(r.status, 200, "{name}: {:?}", r.body);
        let etag: u64 = r
            .header("etag")
            .and_then(|e| e.trim_matches('"').parse().ok())
            .unwrap_or_else(|| panic!("{name}: no ETag in {:?}", r.headers));
        assert_eq!(
            r.body["metadata"]["version"], etag,
            "the ETag is the version served"
        );
        let value = format!("{name}-{i}");
        let r = api
            .put_if("race/x", &json!({"v": value}), Some(etag))
            .await
            .unwrap();
        match r.status {
            200 => {
                let v = r.body["metadata"]["version"].as_u64().unwrap();
                assert_eq!(v, etag + 1, "{name}: a win writes the next version");
                assert_eq!(r.header("etag"), Some(format!("\"{v}\"").as_str()));
                won.push((v, value));
            }
            412 => assert_eq!(r.body["type"], "preconditionFailed", "{:?}", r.body),
            s => panic!("{name}: unexpected {s} {:?}", r.body),
        }
    }
    won
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lifecycle_etags_race_and_snapshot_install() {
    let flags = [("--snapshot-every", "20"), ("--keep-logs", "5")];
    let c = Cluster::start(Opts::with_flags(&flags)).await;
    let leader = c.leader(Duration::from_secs(30)).await;
    let follower = followers(&c, leader)[0];
    let lagging = followers(&c, leader)[1];
    let reader = token(&c, leader, "r", &["read:secret"], &["*"]).await;
    let writer = token(&c, leader, "w", &["write:secret"], &["*"]).await;

    // ETags and preconditions, through a follower and the leader.
    let r = c.put(follower, "e/x", json!({"v": 1})).await.unwrap();
    assert_eq!(r.header("etag"), Some("\"1\""));
    let r = c.get(leader, "e/x").await.unwrap();
    assert_eq!(r.header("etag"), Some("\"1\""));
    for (node, expect_version) in [(follower, 2), (leader, 3)] {
        let api = c.client(node);
        let r = api
            .put_if(
                "e/x",
                &json!({"v": expect_version}),
                Some(expect_version - 1),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(r.body["metadata"]["version"], expect_version);
        let r = api
            .put_if("e/x", &json!({"v": 0}), Some(expect_version - 1))
            .await
            .unwrap();
        expect(
            &r,
            412,
            "preconditionFailed",
            &format!("latest version is {expect_version}"),
            "stale If-Match",
        );
        let r = api.put_if("e/x", &json!({"v": 0}), None).await.unwrap();
        expect(
            &r,
            412,
            "preconditionFailed",
            "If-None-Match",
            "If-None-Match on a live path",
        );
        let r = api.delete_if("e/x", 1).await.unwrap();
        expect(
            &r,
            412,
            "preconditionFailed",
            "If-Match \"1\"",
            "stale delete",
        );
    }
    let r = c
        .client(follower)
        .put_if(&format!("e/new{follower}"), &json!({"v": 1}), None)
        .await
        .unwrap();
    assert_eq!(
        r.status, 200,
        "If-None-Match on an absent path: {:?}",
        r.body
    );
    let r = c.client(leader).delete_if("e/x", 3).await.unwrap();
    assert_eq!(r.status, 204, "{:?}", r.body);
    let r = c
        .client(follower)
        .send(
            Method::PUT,
            "/api/v1/secrets/e/x",
            Some(br#"{"data":{}}"#.to_vec()),
            &[("if-match", "*")],
            None,
        )
        .await
        .unwrap();
    expect(
        &r,
        412,
        "preconditionFailed",
        "deleted",
        "If-Match * on a deleted path",
    );
    let r = c
        .client(leader)
        .put_if("e/x", &json!({"v": 4}), None)
        .await
        .unwrap();
    assert_eq!(
        r.status, 200,
        "If-None-Match * on a deleted path: {:?}",
        r.body
    );
    let r = c
        .client(follower)
        .send(
            Method::PUT,
            "/api/v1/secrets/e/x",
            Some(br#"{"data":{},"options":{"cas":4}}"#.to_vec()),
            &[("if-match", "\"4\"")],
            None,
        )
        .await
        .unwrap();
    expect(&r, 400, "", "not both", "cas and If-Match");
    let r = c
        .client(follower)
        .with_token(Some(&reader))
        .put_if("e/x", &json!({}), Some(4))
        .await
        .unwrap();
    expect(
        &r,
        403,
        "forbidden",
        "write:secret",
        "conditional write as reader",
    );

    // The race: writers on every node, each holding an ETag; exactly one wins each version.
    let r = c
        .put(leader, "race/x", json!({"v": "start"}))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let r = c
        .client(leader)
        .set_max_versions("race/x", 1000)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for node in [1, 2, 3] {
        for w in 0..4 {
            let api = c.client(node);
            tasks.push(tokio::spawn(if_match_writer(
                api,
                format!("n{node}w{w}"),
                6,
            )));
        }
    }
    let mut wins: BTreeMap<u64, String> = BTreeMap::new();
    for t in tasks {
        for (v, value) in t.await.unwrap() {
            assert!(wins.insert(v, value).is_none(), "version {v} won twice");
        }
    }
    let last = *wins.keys().last().expect("some writer won");
    assert_eq!(
        wins.keys().copied().collect::<Vec<_>>(),
        (2..=last).collect::<Vec<_>>(),
        "every version after the first was won by exactly one writer, no gap"
    );
    for (v, value) in &wins {
        let r = c.client(1 + v % 3).get("race/x", Some(*v)).await.unwrap();
        assert_eq!(
            r.body["data"]["v"],
            value.as_str(),
            "version {v} holds its winner's value"
        );
    }
    eprintln!(
        "race: 12 writers x 6 attempts, {} wins in {} ms",
        wins.len(),
        started.elapsed().as_millis()
    );

    // From here on the lagging node is down; what follows reaches it only by snapshot.
    let (down_at, _) = c.converged(Duration::from_secs(20)).await;
    c.kill(lagging);

    // The version cap: 12 writes keep 10; lowered to 4 prunes 6 at once.
    for i in 1..=12usize {
        let r = c
            .put([leader, follower][i % 2], "life/x", json!({"i": i}))
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    let r = c.client(follower).metadata("life/x").await.unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["data"]["maxVersions"], 10);
    assert_eq!(r.body["data"]["currentVersion"], 12);
    assert_eq!(r.body["data"]["oldestVersion"], 3);
    assert_eq!(r.body["data"]["versions"].as_array().unwrap().len(), 10);
    assert!(
        !r.bytes.windows(3).any(|w| w == b"\"i\""),
        "the view shows no value"
    );
    let r = c.client(follower).get("life/x", Some(2)).await.unwrap();
    expect(&r, 404, "notFound", "version 2", "a pruned version");
    let r = c
        .client(leader)
        .with_token(Some(&reader))
        .set_max_versions("life/x", 4)
        .await
        .unwrap();
    expect(
        &r,
        403,
        "forbidden",
        "write:secret",
        "set maxVersions as reader",
    );
    let r = c
        .client(follower)
        .with_token(Some(&writer))
        .metadata("life/x")
        .await
        .unwrap();
    expect(&r, 403, "forbidden", "read:secret", "metadata as writer");
    let r = c
        .client(follower)
        .set_max_versions("life/x", 4)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["data"]["pruned"], 6);
    // Delete the latest, undelete it; destroy version 10.
    let r = c.client(leader).delete("life/x").await.unwrap();
    assert_eq!(r.status, 204);
    let r = c.client(follower).get("life/x", None).await.unwrap();
    assert_eq!(r.status, 404);
    let r = c
        .client(follower)
        .undelete("life/x", &[12, 1])
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        r.body["data"]["versions"],
        json!([12]),
        "absent versions are skipped"
    );
    let r = c.client(leader).get("life/x", None).await.unwrap();
    assert_eq!(r.body["data"], json!({"i": 12}), "undeleted");
    let r = c.client(leader).destroy("life/x", &[10]).await.unwrap();
    assert_eq!(r.body["data"]["versions"], json!([10]), "{:?}", r.body);
    let r = c.client(follower).get("life/x", Some(10)).await.unwrap();
    assert_eq!(r.status, 404, "a destroyed version is gone");
    let r = c.client(follower).undelete("life/x", &[10]).await.unwrap();
    assert_eq!(
        r.body["data"]["versions"],
        json!([]),
        "destroyed stays destroyed"
    );
    let r = c.client(leader).undelete("life/nope", &[1]).await.unwrap();
    expect(
        &r,
        404,
        "notFound",
        "life/nope",
        "undelete of an unknown path",
    );
    let r = c
        .client(leader)
        .with_token(Some(&reader))
        .destroy("life/x", &[9])
        .await
        .unwrap();
    expect(&r, 403, "forbidden", "write:secret", "destroy as reader");
    let view_before = c.client(leader).metadata("life/x").await.unwrap();
    let versions = &view_before.body["data"]["versions"];
    assert_eq!(versions.as_array().unwrap().len(), 4, "{view_before:?}");
    assert_eq!(versions[1]["version"], 10);
    assert_eq!(versions[1]["destroyed"], true);
    assert_eq!(versions[3]["destroyed"], false);
    // DELETE of the metadata removes the path.
    c.put(leader, "gone/x", json!({"v": 1})).await.unwrap();
    c.put(leader, "gone/x", json!({"v": 2})).await.unwrap();
    let r = c.client(follower).delete_metadata("gone/x").await.unwrap();
    assert_eq!(r.status, 204, "{:?}", r.body);
    for (r, what) in [
        (c.client(leader).get("gone/x", None).await.unwrap(), "GET"),
        (
            c.client(leader).get("gone/x", Some(1)).await.unwrap(),
            "GET v1",
        ),
        (
            c.client(leader).metadata("gone/x").await.unwrap(),
            "metadata",
        ),
        (
            c.client(leader).delete_metadata("gone/x").await.unwrap(),
            "DELETE again",
        ),
    ] {
        assert_eq!(r.status, 404, "{what}: {:?}", r.body);
    }
    // A mount with two rotations and a ciphertext of each version.
    c.client(leader).create_mount("snap").await.unwrap();
    let data = json!({"k": "v"});
    let mut cts = vec![ciphertext(
        &c.client(follower).encrypt("snap/a", &data).await.unwrap(),
    )];
    for _ in 0..2 {
        let r = c.client(follower).rotate_mount("snap").await.unwrap();
        assert_eq!(r.status, 200, "{:?}", r.body);
        cts.push(ciphertext(
            &c.client(leader).encrypt("snap/a", &data).await.unwrap(),
        ));
    }

    // Enough writes for snapshots and a purge past everything above.
    for i in 0..40 {
        let r = c
            .put(leader, &format!("filler/{}", i % 8), json!({"i": i}))
            .await
            .unwrap();
        assert_eq!(r.status, 200);
    }
    let r = c.client(leader).snapshot().await.unwrap();
    assert_eq!(r.status, 202);
    let t = Instant::now();
    while c.status(leader).await.unwrap()["purgedIndex"]
        .as_u64()
        .unwrap_or(0)
        <= down_at
    {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the leader never purged its log"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    c.restart(lagging);
    c.converged(Duration::from_secs(60)).await;
    // The node logs the install just after its state is in place, which `converged` can
    // see first (CI, 2026-12-06: converged, then no line yet): wait for the line.
    wait::until(
        Duration::from_secs(10),
        &format!("node {lagging} logs that it installed a snapshot"),
        async || match c.node_log(lagging).contains("installed snapshot") {
            true => Ok(()),
            false => Err("no 'installed snapshot' line in its log".to_string()),
        },
    )
    .await;
    let view = c.client(lagging).metadata("life/x").await.unwrap();
    assert_eq!(
        view.body, view_before.body,
        "pruning, undelete and destroy arrived by snapshot"
    );
    let r = c.client(lagging).metadata("gone/x").await.unwrap();
    assert_eq!(r.status, 404, "the removed path stays removed");
    let r = c
        .client(lagging)
        .with_token(None)
        .get("life/x", Some(10))
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    let r = c.client(lagging).mounts(Some("snap")).await.unwrap();
    assert_eq!(r.body["latestVersion"], 3, "{:?}", r.body);
    for ct in &cts {
        let r = c.client(lagging).decrypt("snap/a", ct).await.unwrap();
        assert_eq!(
            r.status, 200,
            "{ct} on the node that installed the snapshot: {:?}",
            r.body
        );
        assert_eq!(r.body["data"], data);
    }
    let versions: BTreeSet<u64> = view.body["data"]["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, BTreeSet::from([9, 10, 11, 12]));
}
