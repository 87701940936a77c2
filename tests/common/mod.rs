//! Test support shared by the integration tests: a harness that runs real `raftsafe`
//! processes, a tiny HTTP client, a fault-injecting TCP proxy for Raft links, and a
//! linearizability checker for recorded histories.
#![allow(dead_code)]

pub mod checker;
pub mod cluster;
pub mod proxy;
