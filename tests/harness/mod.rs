//! The test harness shared by the integration tests (`tests/it`) and the Docker chaos tests
//! (`tests/chaos_docker.rs`). Every request to a node goes through the library's own API
//! client (`raftsafe::client::Client`); every cluster, process or container, is a
//! [`nodes::Nodes`], so status probes, leader and convergence waits are written once.
//!
//! - [`cluster`]: real `raftsafe` processes on 127.0.0.1 (kill, pause, restart);
//! - [`docker`]: the Docker compose cluster (subprocess runner, compose, iptables partitions);
//! - [`nodes`]: the trait both implement, with the shared waits;
//! - [`proxy`]: a fault-injecting TCP proxy for Raft links;
//! - [`python`]: the Python tools some tests drive (Prometheus parser, hvac);
//! - [`checker`]: a linearizability checker for recorded histories;
//! - [`workload`], [`nemesis`], [`scenario`]: the chaos suite's client workload, faults and
//!   scenario runner, the same code in process and Docker mode.
//! - [`failover`]: repeated leader kills, timed to the first acknowledged write, in either
//!   mode.
//! - [`wait`]: polling for a condition with a deadline, the way a test waits.
//! - [`golden`]: tables of bad requests, one a line, with the error each must get.
//! - [`inproc`]: one node inside the test's own process, for tests of the API that need no
//!   cluster.
//!
//! Each binary uses part of it, so unused items are allowed.
#![allow(dead_code)]

pub mod checker;
pub mod cluster;
pub mod docker;
pub mod failover;
pub mod golden;
pub mod inproc;
pub mod nemesis;
pub mod nodes;
pub mod proxy;
pub mod python;
pub mod scenario;
pub mod wait;
pub mod workload;
