//! raftsafe: a replicated secrets store on openraft and RocksDB.
//!
//! The layers, top to bottom (each imports only the ones below it):
//! - [`api`]: the HTTP dialects (`/api/v1`, Vault's `/v1`): routing, auth, input
//!   validation, wire shapes, errors; each a translation of HTTP into [`service`] calls.
//! - [`service`]: what every dialect asks of the store, once: read (after the read-index round,
//!   by type), write (sealed, proposed, a typed outcome), list, mounts, tokens, keys, backups.
//! - [`bootstrap`]: creating a new cluster's first data key and root token through Raft.
//! - [`barrier`]: sealing and opening values and token records with the replicated keyring.
//! - [`raft`]: openraft's type configuration, the internal transport, and the node that
//!   turns API calls into linearizable reads and replicated writes.
//! - [`store`]: RocksDB storage for the Raft log, the state machine and snapshots.
//! - [`secret`]: the domain — paths, commands, versions, sealing — with no knowledge of
//!   HTTP, Raft or RocksDB.
//!
//! Beside them: [`server`] wires the layers together for `raftsafe serve`; [`cli`] is the
//! command line and [`client`] the API client it (and every test harness) uses; [`config`]
//! resolves settings; [`metrics`] names every exported series; [`audit`] writes the
//! hash-chained audit log; [`tls`], [`codec`] and [`time`] are small leaf helpers.
//!
//! What a user of the library needs is `pub`: the client, the CLI, configuration, TLS
//! helpers, the storage, Raft and domain types the integration tests drive directly, and
//! [`run`]: a node on listeners the caller bound (a test's in-process store), the function
//! `raftsafe serve` runs after binding its configured addresses ([`serve`]).
//! The service, the encryption barrier, bootstrap, metrics names, the server's wiring and
//! the small helpers are `pub(crate)`: internals, free to change.
//!
//! `docs/design.md` follows a PUT and a GET from the socket to the disk.

pub mod api;
pub mod audit;
pub(crate) mod barrier;
pub(crate) mod bootstrap;
pub mod cli;
pub mod client;
pub(crate) mod codec;
pub mod config;
pub(crate) mod metrics;
pub mod raft;
pub mod secret;
pub(crate) mod server;
pub use server::{run, serve, Listeners, ServeError};
pub(crate) mod service;
pub mod store;
pub(crate) mod time;
pub mod tls;
