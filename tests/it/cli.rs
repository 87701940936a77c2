//! The `raftsafe` command line as a user runs it: the real binary, against a real TLS
//! cluster (and, for the errors that need no server, against nothing at all).
//!
//! Invariants checked: `put` with `key=value`, `key=@file`, `key=-` (stdin), `@file.json`,
//! `-` and an inline JSON object round-trips through `get` (and the API agrees); the default
//! output is aligned tables (metadata block before data block, the written data not echoed by
//! `put`), `--format json` / `RAFTSAFE_FORMAT=json` is the API's JSON, `--field` one value;
//! exit codes are 0 on success, 2 when the API says 404 (or `--field` names no field), 1 on a
//! usage error (clap's included), a server refusal or no connection; without a token nothing
//! is sent and the message says what to set; the address, token and CA resolve flag >
//! `RAFTSAFE_*` > `VAULT_*`; an https address without a CA, or a closed port, gets a hint;
//! no output ever contains the token; `completion bash` is a script for the real
//! subcommands.

use std::io::Write;
use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::cluster::{Cluster, Opts, ROOT_TOKEN};
use crate::harness::nodes::Nodes;

/// Every variable the CLI reads, removed so that the test's own environment cannot leak in.
const VARS: &[&str] = &[
    "RAFTSAFE_ADDR",
    "RAFTSAFE_TOKEN",
    "RAFTSAFE_CA",
    "RAFTSAFE_CACERT",
    "RAFTSAFE_FORMAT",
    "VAULT_ADDR",
    "VAULT_TOKEN",
    "VAULT_CACERT",
];

/// Runs the CLI with exactly `env` of the variables it reads, and `stdin`.
fn run(args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_raftsafe"));
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for v in VARS {
        cmd.env_remove(v);
    }
    cmd.envs(env.iter().copied());
    let mut child = cmd.spawn().expect("run the raftsafe CLI");
    // Write and close stdin (a CLI that does not read it may have exited already).
    let _ = child.stdin.take().unwrap().write_all(stdin);
    child.wait_with_output().unwrap()
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts the exit code, showing both streams when it is wrong.
#[track_caller]
fn code(o: &Output, want: i32) {
    assert_eq!(
        o.status.code(),
        Some(want),
        "stdout:\n{}\nstderr:\n{}",
        out(o),
        err(o)
    );
}

fn json_of(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}\n{}", out(o), err(o)))
}

/// A port nothing listens on (claimed for this process, then released).
fn closed_port() -> u16 {
    crate::harness::cluster::free_addr().port()
}

/// The rows of the `=== title ===` block of a table: the lines after it, up to a blank line.
fn block<'a>(text: &'a str, title: &str) -> Vec<&'a str> {
    text.lines()
        .skip_while(|l| *l != format!("=== {title} ==="))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .collect()
}

#[test]
fn cli_errors_help_and_completion_without_a_server() {
    // No token: refused before any request (the listener never sees a connection).
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let o = run(&["get", "app/db", "--addr", &addr], &[], b"");
    code(&o, 1);
    assert!(
        err(&o).contains("no token: set RAFTSAFE_TOKEN or pass --token"),
        "{}",
        err(&o)
    );
    assert_eq!(
        listener.accept().map(|_| ()).unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock,
        "a request went out without a token"
    );

    // Nothing listening: the message names the address and what to do.
    let closed = format!("http://127.0.0.1:{}", closed_port());
    let o = run(
        &["get", "app/db"],
        &[("RAFTSAFE_ADDR", &closed), ("RAFTSAFE_TOKEN", "rs.x")],
        b"",
    );
    code(&o, 1);
    let e = err(&o);
    assert!(
        e.contains(&format!("cannot connect to {closed}")) && e.contains("raftsafe serve"),
        "{e}"
    );
    assert!(e.contains("RAFTSAFE_ADDR"), "{e}");

    // Usage errors exit 1, clap's as well as ours (clap alone would exit 2, "not found").
    for args in [
        &["get"][..],
        &["put", "app/db"],
        &["get", "app/db", "--format", "yaml"],
        &["no-such-command"],
    ] {
        let o = run(args, &[("RAFTSAFE_TOKEN", "rs.x")], b"");
        code(&o, 1);
        assert!(err(&o).contains("error"), "{args:?}: {}", err(&o));
    }
    let o = run(
        &[
            "put",
            "app/db",
            "user=app",
            "s3cret-typo",
            "--addr",
            &closed,
        ],
        &[("RAFTSAFE_TOKEN", "rs.x")],
        b"",
    );
    code(&o, 1);
    assert!(
        err(&o).contains("DATA argument 2 has no '='"),
        "{}",
        err(&o)
    );
    assert!(!err(&o).contains("s3cret-typo"), "the value was echoed");
    let o = run(
        &["get", "a"],
        &[("RAFTSAFE_TOKEN", "rs.x"), ("RAFTSAFE_FORMAT", "yaml")],
        b"",
    );
    code(&o, 1);
    assert!(err(&o).contains("RAFTSAFE_FORMAT"), "{}", err(&o));

    // --help documents the exit codes and the environment, and never shows the token.
    let o = run(&["--help"], &[], b"");
    code(&o, 0);
    assert!(out(&o).contains("Exit codes:") && out(&o).contains("2  not found"));
    let o = run(&["get", "--help"], &[("RAFTSAFE_TOKEN", ROOT_TOKEN)], b"");
    code(&o, 0);
    let help = out(&o);
    assert!(
        help.contains("VAULT_TOKEN") && help.contains("RAFTSAFE_CACERT"),
        "{help}"
    );
    assert!(!help.contains(ROOT_TOKEN), "the token is in --help");

    // Completion scripts for the real subcommands.
    let o = run(&["completion", "bash"], &[], b"");
    code(&o, 0);
    let script = out(&o);
    assert!(script.contains("complete") && script.contains("raftsafe"));
    for sub in [
        "get",
        "put",
        "list",
        "metadata",
        "cluster",
        "backup",
        "completion",
    ] {
        assert!(script.contains(sub), "bash completion lacks {sub}");
    }
    assert!(script.contains("--cacert") && script.contains("--format"));
    for shell in ["zsh", "fish"] {
        let o = run(&["completion", shell], &[], b"");
        code(&o, 0);
        assert!(out(&o).contains("metadata"), "{shell}: {}", out(&o));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_against_a_tls_cluster() {
    let c = Cluster::start(Opts::default()).await;
    let leader = c.leader(Duration::from_secs(30)).await;
    let node = c.nodes.keys().copied().find(|id| *id != leader).unwrap();
    let addr = format!("https://{}", c.api(node));
    let ca = c.dir.path().join("certs/ca.pem");
    let ca = ca.to_str().unwrap();
    let env = [
        ("RAFTSAFE_ADDR", addr.as_str()),
        ("RAFTSAFE_CACERT", ca),
        ("RAFTSAFE_TOKEN", ROOT_TOKEN),
    ];
    let files = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let p = files.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    // Every output, to check at the end that the token was never printed.
    let mut seen = String::new();
    let mut cli = |args: &[&str], env: &[(&str, &str)], stdin: &[u8]| {
        let o = run(args, env, stdin);
        seen += &out(&o);
        seen += &err(&o);
        o
    };

    // key=value: the table shows the new version's metadata, not the data written.
    let o = cli(&["put", "app/db", "user=app", "password=s3cret"], &env, b"");
    code(&o, 0);
    let put = out(&o);
    assert!(put.starts_with("== Secret Path ==\napp/db\n"), "{put}");
    assert!(
        block(&put, "Metadata")
            .iter()
            .any(|l| l.starts_with("version ")),
        "{put}"
    );
    assert!(!put.contains("s3cret"), "put echoed the data: {put}");

    // key=@file (exactly, newlines kept) and key=- (stdin), round-tripped as JSON.
    let cert = file(
        "cert.pem",
        "-----BEGIN CERT-----\nAAAA\n-----END CERT-----\n",
    );
    let o = cli(
        &["put", "app/tls", &format!("cert=@{cert}"), "key=-"],
        &env,
        b"k3y from stdin\n",
    );
    code(&o, 0);
    let o = cli(&["get", "app/tls", "--format", "json"], &env, b"");
    code(&o, 0);
    let got = json_of(&o);
    assert_eq!(
        got["data"],
        json!({"cert": "-----BEGIN CERT-----\nAAAA\n-----END CERT-----\n", "key": "k3y from stdin\n"})
    );
    assert_eq!(got["metadata"]["version"], 1);
    // The API agrees (the CLI did not just print what it sent).
    let api = c.get(leader, "app/tls").await.unwrap();
    assert_eq!(api.body["data"], got["data"]);

    // Whole objects: @file.json, stdin, inline (the form that worked before).
    let obj = format!(
        "@{}",
        file("obj.json", r#"{"n": 1, "nested": {"a": [true]}}"#)
    );
    for (data, stdin) in [
        (obj.as_str(), &b""[..]),
        ("-", br#"{"from": "stdin"}"#),
        (r#"{"inline": "yes"}"#, b""),
    ] {
        let o = cli(&["put", "app/obj", data], &env, stdin);
        code(&o, 0);
    }
    let o = cli(
        &["get", "app/obj", "--version", "1", "--format", "json"],
        &env,
        b"",
    );
    code(&o, 0);
    assert_eq!(
        json_of(&o)["data"],
        json!({"n": 1, "nested": {"a": [true]}})
    );
    let o = cli(
        &["get", "app/obj", "--version", "2", "--format", "json"],
        &env,
        b"",
    );
    assert_eq!(json_of(&o)["data"], json!({"from": "stdin"}));
    let o = cli(&["get", "app/obj", "--format", "json"], &env, b"");
    assert_eq!(json_of(&o)["data"], json!({"inline": "yes"}));
    assert_eq!(json_of(&o)["metadata"]["version"], 3);

    // The table: a metadata block, then a data block, values in one aligned column.
    let o = cli(&["get", "app/db"], &env, b"");
    code(&o, 0);
    let table = out(&o);
    let (meta, data) = (
        table.find("=== Metadata ===").expect("metadata block"),
        table.find("=== Data ===").expect("data block"),
    );
    assert!(meta < data, "{table}");
    let rows = block(&table, "Data");
    assert_eq!(rows.len(), 4, "{table}"); // header, dashes, two keys
    let col = rows[0].find("Value").unwrap();
    for (row, value) in [(2, "s3cret"), (3, "app")] {
        assert_eq!(rows[row].find(value), Some(col), "misaligned:\n{table}");
    }
    assert!(
        rows[2].starts_with("password ") && rows[3].starts_with("user "),
        "{table}"
    );

    // --field, and RAFTSAFE_FORMAT=json.
    let o = cli(&["get", "app/db", "--field", "password"], &env, b"");
    code(&o, 0);
    assert_eq!(out(&o), "s3cret\n");
    let mut json_env = env.to_vec();
    json_env.push(("RAFTSAFE_FORMAT", "json"));
    let o = cli(&["get", "app/db"], &json_env, b"");
    code(&o, 0);
    assert_eq!(json_of(&o)["data"]["user"], "app");

    // list, metadata, cluster status, token list: tables and JSON.
    let o = cli(&["list", "app"], &env, b"");
    code(&o, 0);
    let list = out(&o);
    assert!(list.starts_with("Path "), "{list}");
    for p in ["app/db", "app/obj", "app/tls"] {
        assert!(
            list.lines().any(|l| l.starts_with(p)),
            "{p} missing:\n{list}"
        );
    }
    let o = cli(&["list", "app", "--format", "json"], &env, b"");
    let paths: Vec<Value> = json_of(&o)["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["path"].clone())
        .collect();
    assert_eq!(paths, ["app/db", "app/obj", "app/tls"]);
    let o = cli(&["metadata", "get", "app/obj"], &env, b"");
    code(&o, 0);
    let meta = out(&o);
    let versions = block(&meta, "Versions");
    assert!(versions[0].starts_with("Version "), "{meta}");
    assert_eq!(versions.len(), 2 + 3, "{meta}");
    // Custom metadata: set replaces, patch merges and removes, get shows it.
    let o = cli(
        &[
            "metadata",
            "set",
            "app/obj",
            "--custom",
            "owner=team-a",
            "--custom",
            "env=prod",
        ],
        &env,
        b"",
    );
    code(&o, 0);
    let o = cli(
        &[
            "metadata",
            "patch",
            "app/obj",
            "--custom",
            "tier=gold",
            "--remove",
            "env",
        ],
        &env,
        b"",
    );
    code(&o, 0);
    let o = cli(
        &["metadata", "get", "app/obj", "--format", "json"],
        &env,
        b"",
    );
    code(&o, 0);
    assert_eq!(
        json_of(&o)["data"]["customMetadata"],
        serde_json::json!({"owner": "team-a", "tier": "gold"})
    );
    let o = cli(&["metadata", "set", "app/obj"], &env, b"");
    assert_ne!(o.status.code(), Some(0), "set needs something to set");
    assert!(
        err(&o).contains("--max-versions N and/or --custom"),
        "{}",
        err(&o)
    );
    let o = cli(
        &[
            "metadata",
            "set",
            "app/obj",
            "--custom",
            &format!("{}=v", "k".repeat(129)),
        ],
        &env,
        b"",
    );
    assert_ne!(o.status.code(), Some(0));
    assert!(
        err(&o).contains("custom_metadata validation failed"),
        "{}",
        err(&o)
    );
    let o = cli(&["cluster", "status"], &env, b"");
    code(&o, 0);
    let status = out(&o);
    let members: Vec<&str> = status
        .lines()
        .skip_while(|l| !l.starts_with("ID "))
        .skip(2)
        .collect();
    assert_eq!(members.len(), 3, "{status}");
    let leader_row = status
        .lines()
        .find(|l| l.starts_with("leader "))
        .unwrap_or("");
    assert!(leader_row.ends_with(&format!(" {leader}")), "{status}");
    let o = cli(&["cluster", "status", "--format", "json"], &env, b"");
    assert_eq!(json_of(&o)["members"].as_array().unwrap().len(), 3);
    // keys: the status, a rotation, and the status after it (the API agrees).
    let o = cli(&["keys", "status", "--format", "json"], &env, b"");
    code(&o, 0);
    let before = json_of(&o)["currentKeyId"].as_u64().unwrap();
    let o = cli(&["keys", "rotate", "--format", "json"], &env, b"");
    code(&o, 0);
    assert_eq!(json_of(&o)["currentKeyId"], before + 1, "{}", out(&o));
    let o = cli(&["keys", "status"], &env, b"");
    code(&o, 0);
    let row = out(&o)
        .lines()
        .find(|l| l.starts_with("currentKeyId "))
        .map(str::to_string);
    assert!(
        row.is_some_and(|r| r.ends_with(&format!(" {}", before + 1))),
        "{}",
        out(&o)
    );
    let api = c.client(leader).keys().await.unwrap();
    assert_eq!(api.body["currentKeyId"], before + 1);
    // token create: the token printed once; it works, within its scope and paths only;
    // list shows its accessor, revoke ends it.
    let o = cli(
        &[
            "token",
            "create",
            "ci-reader",
            "--scope",
            "read:secret",
            "--path",
            "app/*",
            "--ttl",
            "3600",
            "--format",
            "json",
        ],
        &env,
        b"",
    );
    code(&o, 0);
    let created = json_of(&o);
    let (token, accessor) = (
        created["token"].as_str().unwrap().to_string(),
        created["accessor"].as_str().unwrap().to_string(),
    );
    let as_reader = [env[0], env[1], ("RAFTSAFE_TOKEN", token.as_str())];
    code(
        &cli(&["get", "app/db", "--field", "user"], &as_reader, b""),
        0,
    );
    let o = cli(&["put", "app/db", "user=y"], &as_reader, b"");
    code(&o, 1);
    assert!(err(&o).contains("403"), "{}", err(&o));
    let o = cli(&["token", "list"], &env, b"");
    code(&o, 0);
    assert!(out(&o).starts_with("Accessor "), "{}", out(&o));
    assert!(out(&o).contains(&accessor), "{}", out(&o));
    let o = cli(
        &["token", "create", "bad", "--scope", "nope", "--path", "*"],
        &env,
        b"",
    );
    code(&o, 1);
    assert!(err(&o).contains("scope"), "{}", err(&o));
    code(&cli(&["token", "revoke", &accessor], &env, b""), 0);
    let o = cli(&["get", "app/db"], &as_reader, b"");
    code(&o, 1);
    assert!(err(&o).contains("401"), "{}", err(&o));

    // Exit codes: 2 for not found, 1 for refusals and usage errors.
    let o = cli(&["get", "app/missing"], &env, b"");
    code(&o, 2);
    assert!(err(&o).contains("404"), "{}", err(&o));
    let o = cli(&["metadata", "get", "app/missing"], &env, b"");
    code(&o, 2);
    let o = cli(&["get", "app/db", "--field", "nope"], &env, b"");
    code(&o, 2);
    let o = cli(&["put", "app/db", "user=x", "--cas", "0"], &env, b"");
    code(&o, 1);
    assert!(err(&o).contains("409"), "{}", err(&o));
    let o = cli(&["get", "a//b"], &env, b"");
    code(&o, 1);
    let o = cli(&["put", "app/x", "a=1", "a=2"], &env, b"");
    code(&o, 1);
    assert!(err(&o).contains("key 'a'"), "{}", err(&o));
    // health needs no token.
    let o = cli(&["health"], &[env[0], env[1]], b"");
    code(&o, 0);

    // VAULT_* when RAFTSAFE_* are unset.
    let vault = [
        ("VAULT_ADDR", addr.as_str()),
        ("VAULT_CACERT", ca),
        ("VAULT_TOKEN", ROOT_TOKEN),
    ];
    let o = cli(&["get", "app/db", "--field", "user"], &vault, b"");
    code(&o, 0);
    assert_eq!(out(&o), "app\n");
    // RAFTSAFE_* win over VAULT_*: a dead RAFTSAFE_ADDR is used (and named)…
    let dead = format!("https://127.0.0.1:{}", closed_port());
    let mut both = vault.to_vec();
    both.push(("RAFTSAFE_ADDR", &dead));
    let o = cli(&["get", "app/db"], &both, b"");
    code(&o, 1);
    assert!(err(&o).contains(&dead), "{}", err(&o));
    // …and a wrong RAFTSAFE_TOKEN is sent instead of the right VAULT_TOKEN.
    let mut both = vault.to_vec();
    both.push(("RAFTSAFE_TOKEN", "rs.wrong-token-0123456789abcdef0123"));
    let o = cli(&["get", "app/db"], &both, b"");
    code(&o, 1);
    assert!(err(&o).contains("401"), "{}", err(&o));
    // Flags win over both.
    let o = cli(
        &[
            "get", "app/db", "--addr", &addr, "--token", ROOT_TOKEN, "--field", "user",
        ],
        &both
            .iter()
            .copied()
            .chain([("RAFTSAFE_ADDR", dead.as_str())])
            .collect::<Vec<_>>(),
        b"",
    );
    code(&o, 0);
    // The old name of the CA variable still works.
    let o = cli(
        &["get", "app/db", "--field", "user"],
        &[
            ("RAFTSAFE_ADDR", &addr),
            ("RAFTSAFE_CA", ca),
            ("RAFTSAFE_TOKEN", ROOT_TOKEN),
        ],
        b"",
    );
    code(&o, 0);

    // https without a CA: the hint names the flag and the variable.
    let o = cli(
        &["get", "app/db"],
        &[("RAFTSAFE_ADDR", &addr), ("RAFTSAFE_TOKEN", ROOT_TOKEN)],
        b"",
    );
    code(&o, 1);
    assert!(
        err(&o).contains("--cacert") && err(&o).contains("RAFTSAFE_CACERT"),
        "{}",
        err(&o)
    );

    assert!(!seen.contains(ROOT_TOKEN), "the token was printed");
}
