//! The integration tests, in one binary (one link of RocksDB instead of one per file):
//! - [`cluster`]: the replicated core with real processes (writes anywhere, reads everywhere,
//!   leader SIGKILL, catch-up by snapshot, full restart, isolation, bad input);
//! - [`security`]: the 401/403 matrix, no plaintext on disk or in logs, mutual TLS, the wrong
//!   master key, key rotation;
//! - [`storage`]: the RocksDB stores against openraft's conformance suite, durability and
//!   snapshots;
//! - [`audit`]: the hash-chained audit log, tampering caught, fail-closed;
//! - [`backup`]: backup from a follower under writes, restore into a new cluster, damaged
//!   files refused;
//! - [`membership`]: members replaced the way an operator does, under load, losing the leader
//!   right after each change: the survivors elect a leader and acknowledge writes again;
//! - [`rolling`]: a rolling restart of every node under load (SIGTERM, restart, ready, next;
//!   the leader last): no failed write outside the leader's failover window, none lost;
//! - [`metrics`]: `/metrics` read by the reference Prometheus parser as traffic, refusals and
//!   an election happen;
//! - [`nospace`]: a follower's disk filled below the NOSPACE threshold: 507 from every node
//!   in both dialects, reads and deletes on, the alarm in metrics, cluster status and
//!   readiness, and writes again once it has room;
//! - [`ondemand`]: the ondemand engine (mounts, encrypt/decrypt/rewrap, rotation, config,
//!   trim) and the rest of the lifecycle (ETags and preconditions, undelete, destroy, the
//!   metadata view, the version cap), through followers and the leader on a TLS cluster;
//! - [`login`]: workload logins (AppRole, JWT with keys generated in the run), renewal,
//!   expiry, the refusal matrix, no escalation through a role, the login's audit line;
//! - [`vault`]: the Vault KV v2 dialect (custom metadata too), driven by hvac and the `bao`
//!   CLI (the real clients) and raw HTTP (External Secrets' PushSecret requests among them);
//! - [`cli`]: the `raftsafe` binary as a user runs it (put forms, tables and JSON, exit
//!   codes, the environment and its precedence, error hints, completion scripts);
//! - [`openapi`]: the OpenAPI document, validated, then schemathesis fuzzing every operation it
//!   describes through a follower of a TLS cluster (no 5xx, every answer as documented);
//! - [`chaos`]: the chaos suite in process mode (workload, nemeses, linearizability);
//! - [`harness`]: the shared harness (also used by the Docker chaos tests,
//!   `tests/chaos_docker.rs`), with its own unit tests (checker, proxy).
//!
//! Every test that starts nodes runs alone (`.config/nextest.toml`, test group `nodes`).

#[path = "../harness/mod.rs"]
mod harness;

mod attacks;
mod audit;
mod backup;
mod chaos;
mod cli;
mod cluster;
mod connections;
mod login;
mod membership;
mod metrics;
mod nospace;
mod ondemand;
mod openapi;
mod rolling;
mod security;
mod storage;
mod vault;
