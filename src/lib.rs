//! raftsafe: a replicated secrets store on openraft and RocksDB.
//!
//! The layers, top to bottom:
//! - [`api`]: the client HTTP API (`/api/v1`): routing, auth, input validation, errors.
//! - [`raft`]: openraft's type configuration, the internal transport, and the node that
//!   turns API calls into linearizable reads and replicated writes.
//! - [`store`]: RocksDB storage for the Raft log, the state machine and snapshots.
//! - [`secret`]: the domain — paths, commands, versions, sealing — with no knowledge of
//!   HTTP, Raft or RocksDB.
//!
//! [`server`] wires them together for `raftsafe serve`; [`config`] resolves settings.

pub mod api;
pub mod barrier;
pub mod client;
pub mod codec;
pub mod config;
pub mod raft;
pub mod secret;
pub mod server;
pub mod store;
pub mod tls;
