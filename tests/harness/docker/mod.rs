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
//! Invariants: node `n` is container `<project>-n`, its API on
//! `https://127.0.0.1:<prefix>n`; the Raft port is never published. The project (default
//! `raftsafe`), image (`raftsafe:dev`) and port prefix (`1870`) come from
//! `RAFTSAFE_COMPOSE_PROJECT`, `RAFTSAFE_IMAGE` and `RAFTSAFE_API_PORT_PREFIX`, the same
//! variables `cluster/compose.sh` and docker-compose.yml read, so two copies of the suite
//! (with different values, and `RAFTSAFE_SUBNET_PREFIX`) can run at once.

pub mod compose;
pub mod iptables;
pub mod runner;

use std::path::PathBuf;

/// Node ids; node `n` is container `<project>-n`, API on 127.0.0.1:<prefix>n.
pub const IDS: [u64; 3] = [1, 2, 3];
/// The Raft port inside the compose network (never published).
pub const RAFT_PORT: u16 = 8701;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_string())
}

/// The compose project (`RAFTSAFE_COMPOSE_PROJECT`, default `raftsafe`).
pub fn project() -> String {
    env_or("RAFTSAFE_COMPOSE_PROJECT", "raftsafe")
}

/// The node image (`RAFTSAFE_IMAGE`, default `raftsafe:dev`).
pub fn image() -> String {
    env_or("RAFTSAFE_IMAGE", "raftsafe:dev")
}

/// docker-compose.yml's network, as compose names it for the project.
pub fn network() -> String {
    format!("{}_raft", project())
}

/// Node `id`'s data volume, as compose names it for the project.
pub fn volume(id: u64) -> String {
    format!("{}_data-{id}", project())
}

pub fn container(id: u64) -> String {
    format!("{}-{id}", project())
}

/// The API address node `id` publishes on the host.
pub fn api_addr(id: u64) -> String {
    let prefix = env_or("RAFTSAFE_API_PORT_PREFIX", "1870");
    format!("https://127.0.0.1:{prefix}{id}")
}

/// The repository root (scripts, compose file and `cluster/secrets/` are relative to it).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}
