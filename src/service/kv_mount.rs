//! Vault KV v2 mounts: names for folders of the one secret tree (`secret::kv_mount` has the
//! rules), registered through the log and read after the read-index round.

use super::{refused, Linearized, Origin, Service, ServiceError, View};
use crate::secret::kv_mount::StoredKvMount;
use crate::secret::{Command, CommandResult, SecretPath};

/// How creating or removing a KV mount ended.
#[derive(Debug, PartialEq, Eq)]
pub enum KvMountChange {
    Created,
    Deleted,
    NotFound,
    /// Refused where it applied: the detail says why (nothing changed).
    Refused(String),
}

impl Service {
    /// Every KV mount, in path order, as of `at`.
    pub fn kv_mounts(&self, at: &Linearized) -> Result<Vec<(String, StoredKvMount)>, ServiceError> {
        Ok(at.state().kv_mounts()?)
    }

    pub async fn create_kv_mount(
        &self,
        origin: Origin,
        path: &SecretPath,
        description: &str,
    ) -> Result<KvMountChange, ServiceError> {
        let command = Command::CreateKvMount {
            path: path.clone(),
            description: description.to_string(),
        };
        match self.propose(origin, command).await? {
            CommandResult::KvMountCreated => Ok(KvMountChange::Created),
            CommandResult::KvMountRefused(why) => Ok(KvMountChange::Refused(why)),
            other => Err(refused("creating a KV mount", other)),
        }
    }

    pub async fn delete_kv_mount(
        &self,
        origin: Origin,
        path: &SecretPath,
    ) -> Result<KvMountChange, ServiceError> {
        let command = Command::DeleteKvMount { path: path.clone() };
        match self.propose(origin, command).await? {
            CommandResult::KvMountDeleted => Ok(KvMountChange::Deleted),
            CommandResult::NotFound => Ok(KvMountChange::NotFound),
            CommandResult::KvMountRefused(why) => Ok(KvMountChange::Refused(why)),
            other => Err(refused("removing a KV mount", other)),
        }
    }
}
