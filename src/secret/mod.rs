//! The secret domain: paths, versions, the commands that change them and the pure logic
//! that applies those commands. Nothing here knows about HTTP, Raft or RocksDB; the state
//! machine in `store` feeds committed commands to [`machine::apply`] and persists the
//! changes it returns.

pub mod acl;
pub mod auth;
pub mod command;
pub mod crypto;
pub mod custom;
pub mod keyring;
pub mod kv_mount;
pub mod login;
pub mod machine;
pub mod mount;
pub mod path;
pub mod restore;
pub mod state;
#[cfg(test)]
pub mod testing;
pub mod token;
pub mod versions;

pub use command::{
    Caller, Command, CommandResult, Metadata, MountKind, MountRecord, Op, Precondition, Request,
    RequestId, StoredPairs,
};
pub use crypto::Sealed;
pub use path::{PathError, SecretPath};
