//! Docker mode of the chaos suite: the three-node compose cluster of `docker-compose.yml`
//! (containers `raftsafe-1..3`, project `raftsafe`) as [`super::nodes::Nodes`] and
//! [`super::nemesis::Faults`], in three parts:
//! - [`runner`]: host commands with deadlines and captured output, and the log of every
//!   command a scenario ran;
//! - [`compose`]: the cluster itself (`cluster/up.sh`, `cluster/down.sh --wipe`), reached only
//!   through the API ports published on loopback, and process faults from the host
//!   (`docker kill`/`start`, `docker pause`/`unpause`);
//! - [`iptables`]: partitions, as rules inside the containers' own network namespaces.
//!
//! Invariants: node `n` is container `raftsafe-n`, its API on `https://127.0.0.1:1870n`; the
//! Raft port is never published.

pub mod compose;
pub mod iptables;
pub mod runner;

use std::path::PathBuf;

/// Node ids; node `n` is container `raftsafe-n`, API on 127.0.0.1:1870n.
pub const IDS: [u64; 3] = [1, 2, 3];
/// The Raft port inside the compose network (never published).
pub const RAFT_PORT: u16 = 8701;
/// docker-compose.yml's network, as compose names it for project `raftsafe`.
pub const NETWORK: &str = "raftsafe_raft";

pub fn container(id: u64) -> String {
    format!("raftsafe-{id}")
}

/// The API address node `id` publishes on the host.
pub fn api_addr(id: u64) -> String {
    format!("https://127.0.0.1:{}", 18700 + id)
}

/// The repository root (scripts, compose file and `cluster/secrets/` are relative to it).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}
