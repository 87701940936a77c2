//! Workload logins (AppRole, JWT) on a TLS cluster: hvac's login helpers with credentials
//! made in the run (`tests/python/vault_login.py`: secret ids, JWTs signed with freshly
//! generated RSA and EC keys, the refusal matrix), the `bao` CLI, raftsafe's own
//! `/api/v1/auth/*/login` through the typed client, and the rules around them.
//!
//! Invariants checked: a login's token reads exactly what its role allows (403 elsewhere);
//! refused credentials issue nothing; a role may grant nothing beyond its writer's policy;
//! a token dies at its lease's end and renewal never passes its max; a login leaves an audit
//! line naming the token it issued and never the credential.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::cluster::{Cluster, Opts, ROOT_TOKEN};
use crate::harness::nodes::Nodes;
use crate::harness::python;
use crate::vault::Bao;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workloads_log_in_with_approle_and_jwt_against_a_tls_cluster() {
    let c = Cluster::start(Opts::default()).await;
    let leader = c.leader(Duration::from_secs(30)).await;
    let others: Vec<u64> = c.nodes.keys().copied().filter(|id| *id != leader).collect();
    let (f1, f2) = (others[0], others[1]);
    let url = |id: u64| format!("https://{}", c.api(id));
    let ca = c.dir.path().join("certs/ca.pem");

    // hvac: administers through one follower, logs in through the other.
    let report = python::client_steps("vault_login.py", &url(f1), &url(f2), ROOT_TOKEN, &ca);
    assert_eq!(
        report["steps"],
        json!([
            "sys/auth",
            "approle role",
            "role-id secret-id",
            "approle login",
            "renew_self",
            "approle refusals",
            "approle token_policies",
            "jwt config and role",
            "jwt login",
            "jwt refusals",
            "key rotation and role deletion stop logins",
        ]),
        "every hvac step ran"
    );

    // The bao CLI, as an operator and then a workload types it.
    let bao = Bao::new(&c);
    let (a1, a2) = (url(f1), url(f2));
    bao.ok(&a1, &["auth", "enable", "approle"]);
    let methods = bao.json(&a2, &["auth", "list", "-format=json"]);
    assert_eq!(methods["approle/"]["type"], "approle", "{methods}");
    bao.ok(
        &a1,
        &[
            "write",
            "auth/approle/role/deployer",
            "token_scopes=read:secret,write:secret",
            "token_paths=deploy/*",
            "token_ttl=5m",
            "secret_id_num_uses=2",
        ],
    );
    let role_id = bao.json(
        &a2,
        &["read", "-format=json", "auth/approle/role/deployer/role-id"],
    )["data"]["role_id"]
        .as_str()
        .unwrap()
        .to_string();
    let secret = bao.json(
        &a1,
        &[
            "write",
            "-f",
            "-format=json",
            "auth/approle/role/deployer/secret-id",
        ],
    );
    assert_eq!(secret["data"]["secret_id_num_uses"], 2, "{secret}");
    let secret_id = secret["data"]["secret_id"].as_str().unwrap().to_string();
    let login = bao.json(
        &a2,
        &[
            "write",
            "-format=json",
            "auth/approle/login",
            &format!("role_id={role_id}"),
            &format!("secret_id={secret_id}"),
        ],
    );
    let workload_token = login["auth"]["client_token"].as_str().unwrap().to_string();
    let workload = bao.as_token(&workload_token);
    workload.ok(&a1, &["kv", "put", "-mount=secret", "deploy/app", "v=1"]);
    let got = workload.json(
        &a2,
        &["kv", "get", "-format=json", "-mount=secret", "deploy/app"],
    );
    assert_eq!(got["data"]["data"], json!({"v": "1"}));
    workload.refused(
        &a2,
        &["kv", "get", "-mount=secret", "other/app"],
        "permission denied",
    );
    // Renewal moves the 5-minute lease to 10 minutes from now (within the 24 h max).
    let renewed = workload.json(&a1, &["token", "renew", "-format=json", "-increment=10m"]);
    let lease = renewed["auth"]["lease_duration"].as_u64().unwrap();
    assert!((590..=600).contains(&lease), "{renewed}");
    // The secret id allowed two logins: the typed client takes the second, then none.
    let client = c.client(f2).with_token(None);
    let r = client.login_approle(&role_id, &secret_id).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.detail());
    assert_eq!(r.body["method"], "approle");
    assert_eq!(r.body["role"], "deployer");
    assert_eq!(r.body["scopes"], json!(["read:secret", "write:secret"]));
    let second = r.body["token"].as_str().unwrap().to_string();
    let r = client.login_approle(&role_id, &secret_id).await.unwrap();
    assert_eq!(r.status, 400, "a third login on a two-use secret id");
    assert!(
        r.detail().contains("invalid role or secret ID"),
        "{}",
        r.detail()
    );
    bao.refused(
        &a1,
        &[
            "write",
            "auth/approle/login",
            &format!("role_id={role_id}"),
            &format!("secret_id={secret_id}"),
        ],
        "invalid role or secret ID",
    );

    // raftsafe's own API: the login token renews itself; an administrator's does not.
    let as_second = c.client(f1).with_token(Some(&second));
    let r = as_second.renew_self(Some(60)).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.detail());
    assert!(r.body["expiresAt"].as_str().unwrap() <= r.body["maxExpiresAt"].as_str().unwrap());
    let r = c.client(f1).renew_self(None).await.unwrap();
    assert_eq!(r.status, 400);
    assert!(r.detail().contains("not renewable"), "{}", r.detail());

    // No escalation through a role: an admin of team-a/* cannot make a role for '*'.
    let root = c.client(leader);
    let r = root
        .create_token(
            "team-a-admin",
            &["admin", "read:secret"],
            &["team-a/*"],
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.detail());
    let team_admin = bao.as_token(r.body["token"].as_str().unwrap());
    team_admin.refused(
        &a1,
        &[
            "write",
            "auth/approle/role/wide",
            "token_scopes=read:secret",
            "token_paths=*",
        ],
        "within its own",
    );
    team_admin.ok(
        &a1,
        &[
            "write",
            "auth/approle/role/team-a-app",
            "token_scopes=read:secret",
            "token_paths=team-a/app/*",
        ],
    );
    // ...nor see or change roles outside its policy.
    team_admin.refused(
        &a2,
        &["read", "auth/approle/role/deployer/role-id"],
        "within its own",
    );
    // The JWT keys are cluster-wide: only an unrestricted admin writes them.
    team_admin.refused(
        &a1,
        &["write", "auth/jwt/config", "jwks={\"keys\":[]}"],
        "every path",
    );
    // `bao write auth/jwt/login` with a JWT signed here by a fresh P-256 key (the hvac run
    // above replaced the keys; these replace them again).
    let (key, jwks) = p256();
    let jwt = es256(&key, "ci-runner", "raftsafe");
    bao.ok(
        &a1,
        &[
            "write",
            "auth/jwt/config",
            &format!("jwks={jwks}"),
            "jwt_supported_algs=ES256",
        ],
    );
    bao.ok(
        &a1,
        &[
            "write",
            "auth/jwt/role/runner",
            "bound_audiences=raftsafe",
            "user_claim=sub",
            "token_scopes=read:secret",
            "token_paths=deploy/*",
        ],
    );
    let login = bao.json(
        &a2,
        &[
            "write",
            "-format=json",
            "auth/jwt/login",
            "role=runner",
            &format!("jwt={jwt}"),
        ],
    );
    assert_eq!(login["auth"]["metadata"]["sub"], "ci-runner", "{login}");
    let runner = bao.as_token(login["auth"]["client_token"].as_str().unwrap());
    let got = runner.json(
        &a1,
        &["kv", "get", "-format=json", "-mount=secret", "deploy/app"],
    );
    assert_eq!(got["data"]["data"], json!({"v": "1"}));
    let other_audience = es256(&key, "ci-runner", "someone-else");
    bao.refused(
        &a2,
        &[
            "write",
            "auth/jwt/login",
            "role=runner",
            &format!("jwt={other_audience}"),
        ],
        "audience",
    );
    let (stranger, _) = p256();
    let forged = es256(&stranger, "ci-runner", "raftsafe");
    bao.refused(
        &a2,
        &[
            "write",
            "auth/jwt/login",
            "role=runner",
            &format!("jwt={forged}"),
        ],
        "signature",
    );

    // A JWT configuration that names a URL is refused: nodes fetch nothing.
    bao.refused(
        &a1,
        &[
            "write",
            "auth/jwt/config",
            "jwks_url=https://example.invalid/jwks",
        ],
        "fetch nothing",
    );
}

/// A P-256 key made now (PKCS#8) and its JWKS document (`kid` k1).
fn p256() -> (Vec<u8>, String) {
    use base64::Engine;
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let point = pair.public_key().as_ref();
    let jwks = json!({"keys": [{
        "kty": "EC", "crv": "P-256", "kid": "k1", "use": "sig", "alg": "ES256",
        "x": b64.encode(&point[1..33]), "y": b64.encode(&point[33..65]),
    }]});
    (pkcs8.as_ref().to_vec(), jwks.to_string())
}

/// A JWT for `sub` and `aud`, valid for 5 minutes, signed ES256 by `pkcs8`.
fn es256(pkcs8: &[u8], sub: &str, aud: &str) -> String {
    let now = jsonwebtoken::get_current_timestamp();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some("k1".into());
    let claims = json!({"sub": sub, "aud": aud, "iat": now, "exp": now + 300});
    let key = jsonwebtoken::EncodingKey::from_ec_der(pkcs8);
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_login_token_dies_at_its_lease_and_its_login_is_audited() {
    let logs = tempfile::tempdir().unwrap();
    let audit = logs.path().join("audit.log");
    let audit_arg = audit.display().to_string();
    let c = Cluster::start(Opts {
        nodes: 1,
        ..Opts::with_flags(&[("--audit-log", &audit_arg)])
    })
    .await;
    c.leader(Duration::from_secs(30)).await;
    let bao = Bao::new(&c);
    let addr = format!("https://{}", c.api(1));
    bao.ok(
        &addr,
        &[
            "write",
            "auth/approle/role/brief",
            "token_scopes=read:secret",
            "token_paths=brief/*",
            "token_ttl=2s",
            "token_max_ttl=4s",
        ],
    );
    let root = c.client(1);
    assert_eq!(
        root.put("brief/x", &json!({"k": "v"}), None)
            .await
            .unwrap()
            .status,
        200
    );
    let role_id = bao.json(
        &addr,
        &["read", "-format=json", "auth/approle/role/brief/role-id"],
    )["data"]["role_id"]
        .as_str()
        .unwrap()
        .to_string();
    let secret_id = bao.json(
        &addr,
        &[
            "write",
            "-f",
            "-format=json",
            "auth/approle/role/brief/secret-id",
        ],
    )["data"]["secret_id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = root
        .with_token(None)
        .login_approle(&role_id, &secret_id)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.detail());
    let accessor = r.body["accessor"].as_str().unwrap().to_string();
    let token = r.body["token"].as_str().unwrap().to_string();
    let workload = root.with_token(Some(&token));
    assert_eq!(workload.get("brief/x", None).await.unwrap().status, 200);
    // Renewals keep it alive up to its max (4 s after the login), and not past it.
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_millis(3_000) {
        let r = workload.renew_self(Some(2)).await.unwrap();
        assert_eq!(r.status, 200, "{}", r.detail());
        assert_eq!(workload.get("brief/x", None).await.unwrap().status, 200);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let r = workload.get("brief/x", None).await.unwrap();
    assert_eq!(
        r.status,
        401,
        "the token outlived its max TTL: {}",
        r.detail()
    );
    assert!(r.detail().contains("expired"), "{}", r.detail());

    // The audit line of the login names the issued token, never the secret id.
    let log = std::fs::read_to_string(&audit).unwrap();
    let line: Value = log
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|l| l["path"] == "/api/v1/auth/approle/login" && l["status"] == 200)
        .expect("the login is audited");
    assert_eq!(line["accessor"], json!(accessor), "{line}");
    assert!(
        !log.contains(&secret_id),
        "a secret id reached the audit log"
    );
    assert!(!log.contains(&token), "a token reached the audit log");
    assert!(
        !c.logs().contains(&secret_id),
        "a secret id reached a node's log"
    );
}
