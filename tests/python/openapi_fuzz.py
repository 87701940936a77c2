"""The OpenAPI test's Python half (tests/it/openapi.rs): fetch the document a node serves,
validate it, and fuzz the API it describes with schemathesis.

Usage: openapi_fuzz.py BASE_URL TOKEN CA_FILE REPORT_DIR MAX_EXAMPLES MAX_SECONDS [SEED]

1. GET BASE_URL/api/v1/openapi.json without a token (TLS verified against CA_FILE);
2. validate it with openapi-spec-validator (against the OpenAPI 3.1 meta-schema);
3. run the schemathesis CLI on that URL with the bearer token, every check, all four phases
   (examples, coverage, fuzzing, stateful) and tests/python/schemathesis.toml, bounded by
   MAX_EXAMPLES per operation and MAX_SECONDS in all;
4. print one JSON object on stdout: the validator's verdict, schemathesis's exit code and the
   numbers of its JSON report (operations, test cases, failures), for the Rust test to judge.

The token is passed to schemathesis on its command line (a test cluster's root token) and is
never printed: schemathesis's output sanitization masks the Authorization header.
"""

import json
import os
import ssl
import subprocess
import sys
import urllib.request

from openapi_spec_validator import validate

HERE = os.path.dirname(os.path.abspath(__file__))


def fetch(url, ca):
    ctx = ssl.create_default_context(cafile=ca)
    req = urllib.request.Request(url, headers={"Accept": "application/json"})
    with urllib.request.urlopen(req, context=ctx, timeout=30) as r:
        return r.status, r.headers.get("Content-Type", ""), r.read()


def main():
    base, token, ca, report_dir, max_examples, max_seconds = sys.argv[1:7]
    seed = sys.argv[7] if len(sys.argv) > 7 else None
    url = base.rstrip("/") + "/api/v1/openapi.json"
    out = {"url": url}

    status, content_type, body = fetch(url, ca)
    out["fetch"] = {"status": status, "content_type": content_type, "bytes": len(body)}
    doc = json.loads(body)
    out["openapi"] = doc.get("openapi")
    out["operations_in_document"] = sum(
        1
        for item in doc.get("paths", {}).values()
        for method in item
        if method in ("get", "put", "post", "delete", "patch", "head", "options")
    )
    try:
        validate(doc)
        out["validator"] = "valid"
    except Exception as e:  # the validator's own error types; report, do not crash
        out["validator"] = f"invalid: {type(e).__name__}: {str(e)[:2000]}"
        print(json.dumps(out))
        return

    os.makedirs(report_dir, exist_ok=True)
    report = os.path.join(report_dir, "report.json")
    cmd = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        os.path.join(HERE, "schemathesis.toml"),
        "run",
        url,
        "--header",
        f"Authorization: Bearer {token}",
        "--tls-verify",
        ca,
        "--checks",
        "all",
        # See schemathesis.toml: their probes of undocumented methods escape per-operation
        # settings, and the command line's `all` would turn them back on over the file's.
        "--exclude-checks",
        "allow_header_conformance,unsupported_method",
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--max-examples",
        max_examples,
        "--max-time",
        max_seconds,
        "--request-timeout",
        "20",
        "--workers",
        "1",
        "--report",
        "json",
        "--report-dir",
        report_dir,
        "--report-json-path",
        report,
        "--output-truncate",
        "false",
        "--no-color",
    ]
    if seed is not None:
        cmd += ["--seed", seed]
    # In the report directory: schemathesis keeps its cache (.schemathesis/) in its working
    # directory, which would otherwise be the repository.
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=report_dir)
    out["schemathesis_exit"] = run.returncode
    # The human-readable log goes to stderr (and a file), for the test's failure message.
    with open(os.path.join(report_dir, "schemathesis.log"), "w") as f:
        f.write(run.stdout)
        f.write(run.stderr)
    sys.stderr.write(run.stdout[-20000:])
    sys.stderr.write(run.stderr[-5000:])
    try:
        with open(report) as f:
            r = json.load(f)
        out["report"] = {
            # A string: the seed is a 128-bit integer, beyond what a JSON reader keeps exact.
            "seed": str(r.get("seed")),
            "running_time": r.get("running_time"),
            "stop_reason": r.get("stop_reason"),
            "operations": r.get("operations"),
            "phases": r.get("phases"),
            "test_cases": r.get("test_cases"),
            "failures": r.get("failures"),
            "errors": r.get("errors"),
            "warnings": r.get("warnings"),
        }
    except (OSError, ValueError) as e:
        out["report"] = None
        out["report_error"] = str(e)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
