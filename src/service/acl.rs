//! Named ACL policies: stored through the log, read after the read-index round, and turned
//! into a token's grants when one is created from them (`secret::acl` has the rules).

use super::{refused, Linearized, Origin, Service, ServiceError, View};
use crate::secret::acl::StoredAclPolicy;
use crate::secret::token::Policy;
use crate::secret::{Command, CommandResult};

/// How a write or delete of a policy ended.
#[derive(Debug, PartialEq, Eq)]
pub enum AclChange {
    Written { generation: u64 },
    Deleted,
    NotFound,
    Refused(String),
}

impl Service {
    pub fn acl_policy(
        &self,
        view: &impl View,
        name: &str,
    ) -> Result<Option<StoredAclPolicy>, ServiceError> {
        Ok(view.state().acl_policy(name)?)
    }

    /// What the ACL policies `names` grant in `view`, with the names of those that do not
    /// exist there. Vault's `default` policy grants nothing here (every token may look up,
    /// renew and revoke itself) and is never missing.
    pub fn policy_grants(
        &self,
        view: &impl View,
        names: &[String],
    ) -> Result<(Vec<Policy>, Vec<String>), ServiceError> {
        let mut grants = Vec::new();
        let mut missing = Vec::new();
        for name in names.iter().filter(|n| *n != "default") {
            match self.acl_policy(view, name)? {
                Some(stored) => grants.extend(stored.grants),
                None => missing.push(name.clone()),
            }
        }
        Ok((grants, missing))
    }

    pub fn acl_policies(
        &self,
        at: &Linearized,
    ) -> Result<Vec<(String, StoredAclPolicy)>, ServiceError> {
        Ok(at.state().acl_policies()?)
    }

    pub async fn put_acl_policy(
        &self,
        origin: Origin,
        name: &str,
        rules: &str,
        grants: Vec<Policy>,
    ) -> Result<AclChange, ServiceError> {
        let command = Command::PutAclPolicy {
            name: name.to_string(),
            rules: rules.to_string(),
            grants,
        };
        match self.propose(origin, command).await? {
            CommandResult::AclPolicyWritten { generation } => Ok(AclChange::Written { generation }),
            CommandResult::AclPolicyRefused(why) => Ok(AclChange::Refused(why)),
            other => Err(refused("writing an ACL policy", other)),
        }
    }

    pub async fn delete_acl_policy(
        &self,
        origin: Origin,
        name: &str,
    ) -> Result<AclChange, ServiceError> {
        let command = Command::DeleteAclPolicy {
            name: name.to_string(),
        };
        match self.propose(origin, command).await? {
            CommandResult::AclPolicyDeleted => Ok(AclChange::Deleted),
            CommandResult::NotFound => Ok(AclChange::NotFound),
            CommandResult::AclPolicyRefused(why) => Ok(AclChange::Refused(why)),
            other => Err(refused("deleting an ACL policy", other)),
        }
    }
}
