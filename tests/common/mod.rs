//! Test support shared by the integration tests: a harness that runs real `raftsafe`
//! processes, a tiny HTTP client, a fault-injecting TCP proxy for Raft links, a
//! linearizability checker for recorded histories, and the chaos suite's workload, nemeses
//! and scenario runner, with a driver for the Docker compose cluster (`docker`).
#![allow(dead_code)]

pub mod checker;
pub mod cluster;
pub mod docker;
pub mod nemesis;
pub mod proxy;
pub mod scenario;
pub mod workload;
