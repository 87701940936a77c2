//! The Python tools some tests drive (the Prometheus parser, hvac): which interpreter, and
//! running a script of `tests/python/` with a clear failure when the tools are missing.
//!
//! The interpreter: `RAFTSAFE_TEST_PYTHON` (set by `.ci/run` to its venv), else `.venv/bin/python`
//! at the repository root, else `python3`. It needs `tests/python/requirements.txt`.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

pub fn python() -> PathBuf {
    if let Ok(p) = std::env::var("RAFTSAFE_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("python3")
}

/// Runs `tests/python/<script>` with `args`, feeding it `stdin`, and returns its output.
pub fn run(script: &str, args: &[&str], stdin: &[u8]) -> Output {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(script);
    let mut child = Command::new(python())
        .arg(&path)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python().display()));
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(stdin)
        .expect("write the script's input");
    child.wait_with_output().expect("wait for the script")
}

/// What to tell the reader when a script fails: its stderr and how to install the tools.
pub fn failure(out: &Output) -> String {
    format!(
        "{}\n(the Python tools are installed by: python3 -m venv .venv && .venv/bin/pip install \
         -r tests/python/requirements.txt)",
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs a driver script of a real client (`vault_hvac.py`, `vault_login.py`) against a
/// cluster: it takes `write_url read_url token ca`, asserts each of its steps itself, and on
/// success prints `{"steps": [...]}`. Returns that report; a failure panics with the
/// script's stderr.
pub fn client_steps(
    script: &str,
    write_url: &str,
    read_url: &str,
    token: &str,
    ca: &std::path::Path,
) -> serde_json::Value {
    let ca = ca.to_str().expect("a UTF-8 path");
    let out = run(script, &[write_url, read_url, token, ca], b"");
    assert!(out.status.success(), "{script} failed:\n{}", failure(&out));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{script} printed no JSON report ({e})"))
}
