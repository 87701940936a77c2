//! Logins and their roles: AppRole (role id + secret id) and JWT (a workload's signed token),
//! each turning a credential into a short-lived, renewable token scoped by its role.
//!
//! Invariants:
//! - The credential is verified here, on the node that received it, against the role (and
//!   JWT keys) this node has; a credential this node cannot place (an unknown role id or
//!   secret id, created moments ago elsewhere) gets the read-index round and a second look.
//!   The login then commits only if that role and configuration are still current and the
//!   secret id still has a use left where it applies (`secret::login`).
//! - A login's token gets its role's scopes and paths and the grants of the ACL policies the
//!   role names, as they are at the login (read after the role; a policy change raises the
//!   role's generation, so a login that read the policy before it is refused where it
//!   applies). Like every token's, its authority is fixed from then on.
//! - A failed login proposes nothing: refusing a bad credential costs no log entry.
//! - The issued token is shown once, in the answer; like every token only its hash is kept.
//! - Neither the secret id nor the JWT is logged, stored or echoed.

use ring::rand::{SecureRandom, SystemRandom};
use subtle::ConstantTimeEq;

use super::{refused, Linearized, Origin, Service, ServiceError, View};
use crate::secret::keyring::MacPurpose;
use crate::secret::login::{
    Binding, JwtConfig, Lease, Login, Method, Role, SecretId, StoredJwtConfig, StoredRole,
    INVALID_APPROLE,
};
use crate::secret::token::{Token, TokenRecord};
use crate::secret::{Caller, Command, CommandResult, Op};
use crate::time::now_ms;

/// A token a login issued.
#[derive(Debug)]
pub struct Issued {
    pub token: Token,
    pub record: TokenRecord,
    pub lease: Lease,
    pub method: Method,
    pub role: String,
    /// What the login showed about the workload (`role_name`, the JWT's user claim).
    pub metadata: Vec<(String, String)>,
}

/// How a login ended.
#[derive(Debug)]
pub enum LoginOutcome {
    Issued(Box<Issued>),
    /// The credential was refused (here or where the login applied): the detail says why.
    Refused(String),
}

/// How a write of a role ended.
#[derive(Debug)]
pub enum RoleChange {
    Written { generation: u64 },
    Refused(String),
}

/// A new secret id: shown once, with what is stored of it.
#[derive(Debug)]
pub struct NewSecretId {
    pub secret_id: String,
    pub record: SecretId,
}

/// How adding a secret id ended.
#[derive(Debug)]
pub enum SecretIdOutcome {
    Created(NewSecretId),
    /// No AppRole role of that name.
    NoRole,
    /// A chosen secret id that the role already has.
    Taken,
}

/// 16 random bytes as a UUID (version 4) string, the form Vault gives role and secret ids.
pub fn random_uuid() -> Result<String, ServiceError> {
    let mut b = [0u8; 16];
    SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| ServiceError::Internal("the system random generator failed".into()))?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

/// The longest credential looked at (a JWT of Kubernetes' is ~1 KB).
pub const MAX_CREDENTIAL_BYTES: usize = 16 * 1024;

impl Service {
    pub fn role(
        &self,
        view: &impl View,
        method: Method,
        name: &str,
    ) -> Result<Option<StoredRole>, ServiceError> {
        Ok(view.state().role(method, name)?)
    }

    pub fn roles(
        &self,
        at: &Linearized,
        method: Method,
    ) -> Result<Vec<(String, StoredRole)>, ServiceError> {
        Ok(at.state().roles(method)?)
    }

    /// Creates or replaces role `name`; `token_policies` names the ACL policies whose grants
    /// its logins' tokens get too.
    pub async fn put_role(
        &self,
        origin: Origin,
        name: &str,
        role: Role,
        token_policies: Vec<String>,
    ) -> Result<RoleChange, ServiceError> {
        // A role without policies is written as the entry an earlier release applies too.
        let command = if token_policies.is_empty() {
            Command::PutRole {
                name: name.to_string(),
                role: Box::new(role),
            }
        } else {
            Command::PutRoleWithPolicies {
                name: name.to_string(),
                role: Box::new(role),
                token_policies,
            }
        };
        match self.propose(origin, command).await? {
            CommandResult::RoleWritten { generation } => Ok(RoleChange::Written { generation }),
            CommandResult::RoleRefused(why) => Ok(RoleChange::Refused(why)),
            other => Err(refused("writing a role", other)),
        }
    }

    /// Deletes a role and its secret ids; `false` if there was none.
    pub async fn delete_role(
        &self,
        origin: Origin,
        method: Method,
        name: &str,
    ) -> Result<bool, ServiceError> {
        let command = Command::DeleteRole {
            method,
            name: name.to_string(),
        };
        match self.propose(origin, command).await? {
            CommandResult::RoleDeleted => Ok(true),
            CommandResult::NotFound => Ok(false),
            other => Err(refused("deleting a role", other)),
        }
    }

    pub fn jwt_config(&self, view: &impl View) -> Result<Option<StoredJwtConfig>, ServiceError> {
        Ok(view.state().jwt_config()?)
    }

    /// Replaces the JWT keys and issuer (checked by the caller, `jwt::check_config`).
    pub async fn put_jwt_config(
        &self,
        origin: Origin,
        config: JwtConfig,
    ) -> Result<u64, ServiceError> {
        match self
            .propose(
                origin,
                Command::PutJwtConfig {
                    config: Box::new(config),
                },
            )
            .await?
        {
            CommandResult::RoleWritten { generation } => Ok(generation),
            other => Err(refused("writing the JWT configuration", other)),
        }
    }

    fn secret_id_mac(&self, secret_id: &str) -> [u8; 32] {
        self.barrier.mac(MacPurpose::SecretId, secret_id.as_bytes())
    }

    /// Generates a secret id for AppRole role `role` (`None`: no such role). `ttl_s` and
    /// `num_uses`: 0 means the role's defaults.
    /// Adds a secret id to AppRole role `role`: `chosen` (Vault's custom secret id), or a
    /// random UUID.
    pub async fn create_secret_id(
        &self,
        origin: Origin,
        role: &str,
        chosen: Option<String>,
        ttl_s: u64,
        num_uses: u64,
        metadata: Vec<(String, String)>,
    ) -> Result<SecretIdOutcome, ServiceError> {
        let custom = chosen.is_some();
        let secret_id = match chosen {
            Some(s) => s,
            None => random_uuid()?,
        };
        let mac = self.secret_id_mac(&secret_id);
        let now = now_ms();
        let record = SecretId {
            accessor: hex8(&mac),
            mac,
            created_at_ms: now,
            expires_at_ms: (ttl_s > 0).then(|| now.saturating_add(ttl_s.saturating_mul(1000))),
            uses_left: (num_uses > 0).then_some(num_uses),
            metadata,
        };
        let command = Command::AddSecretId {
            role: role.to_string(),
            secret_id: Box::new(record.clone()),
        };
        match self.propose(origin, command).await? {
            CommandResult::SecretIdAdded => {
                Ok(SecretIdOutcome::Created(NewSecretId { secret_id, record }))
            }
            CommandResult::NotFound => Ok(SecretIdOutcome::NoRole),
            // The accessor is the MAC's first 8 bytes: a chosen id already added has it.
            CommandResult::RoleRefused(_) if custom => Ok(SecretIdOutcome::Taken),
            CommandResult::RoleRefused(why) => Err(ServiceError::Unavailable(why)),
            other => Err(refused("adding a secret id", other)),
        }
    }

    /// The stored record of `secret_id` under `role`, if it is one of the role's.
    pub fn find_secret_id(
        &self,
        view: &impl View,
        role: &str,
        secret_id: &str,
    ) -> Result<Option<SecretId>, ServiceError> {
        let mac = self.secret_id_mac(secret_id);
        Ok(view
            .state()
            .secret_id(role, &hex8(&mac))?
            .filter(|s| bool::from(s.mac.ct_eq(&mac))))
    }

    pub fn secret_ids(&self, at: &Linearized, role: &str) -> Result<Vec<SecretId>, ServiceError> {
        Ok(at.state().secret_ids(role)?)
    }

    pub fn secret_id_by_accessor(
        &self,
        at: &Linearized,
        role: &str,
        accessor: &str,
    ) -> Result<Option<SecretId>, ServiceError> {
        Ok(at.state().secret_id(role, accessor)?)
    }

    /// Destroys a secret id by accessor; `false` if there was none.
    pub async fn destroy_secret_id(
        &self,
        origin: Origin,
        role: &str,
        accessor: &str,
    ) -> Result<bool, ServiceError> {
        let command = Command::DestroySecretId {
            role: role.to_string(),
            accessor: accessor.to_string(),
        };
        match self.propose(origin, command).await? {
            CommandResult::SecretIdDestroyed => Ok(true),
            CommandResult::NotFound => Ok(false),
            other => Err(refused("destroying a secret id", other)),
        }
    }

    /// AppRole login: `role_id` names the role, `secret_id` must be one of its secret ids.
    pub async fn login_approle(
        &self,
        role_id: &str,
        secret_id: &str,
    ) -> Result<LoginOutcome, ServiceError> {
        let mut hit = self.approle_lookup(&self.local(), role_id, secret_id)?;
        if hit.is_none() {
            let at = self.linearize().await?;
            hit = self.approle_lookup(&at, role_id, secret_id)?;
        }
        let Some((name, role, sid)) = hit else {
            return Ok(LoginOutcome::Refused(INVALID_APPROLE.into()));
        };
        if sid.expired(now_ms()) {
            return Ok(LoginOutcome::Refused(INVALID_APPROLE.into()));
        }
        let metadata = vec![("role_name".to_string(), name.clone())];
        let display = format!("approle-{name}");
        self.issue(name, role, None, Some(sid.accessor), display, metadata)
            .await
    }

    /// The role `role_id` names and its secret id `secret_id`, if both exist in `view`.
    fn approle_lookup(
        &self,
        view: &impl View,
        role_id: &str,
        secret_id: &str,
    ) -> Result<Option<(String, StoredRole, SecretId)>, ServiceError> {
        let state = view.state();
        let Some(name) = state.role_named_by_id(role_id)? else {
            return Ok(None);
        };
        let Some(role) = state.role(Method::AppRole, &name)? else {
            return Ok(None);
        };
        let mac = self.secret_id_mac(secret_id);
        let sid = state
            .secret_id(&name, &hex8(&mac))?
            .filter(|s| bool::from(s.mac.ct_eq(&mac)));
        Ok(sid.map(|sid| (name, role, sid)))
    }

    /// JWT login against role `role`.
    pub async fn login_jwt(&self, role: &str, jwt: &str) -> Result<LoginOutcome, ServiceError> {
        let local = self.local();
        let mut found = (
            local.state().role(Method::Jwt, role)?,
            local.state().jwt_config()?,
        );
        if found.0.is_none() || found.1.is_none() {
            let at = self.linearize().await?;
            found = (
                at.state().role(Method::Jwt, role)?,
                at.state().jwt_config()?,
            );
        }
        let (Some(stored), Some(config)) = found else {
            return Ok(LoginOutcome::Refused(match found.0 {
                None => format!("role \"{role}\" could not be found"),
                Some(_) => "the JWT method is not configured: write auth/jwt/config first".into(),
            }));
        };
        let Binding::Jwt(binding) = &stored.role.binding else {
            return Ok(LoginOutcome::Refused(format!(
                "role \"{role}\" is not a JWT role"
            )));
        };
        let claims = match super::jwt::verify(&config.config, binding, jwt) {
            Ok(c) => c,
            Err(why) => return Ok(LoginOutcome::Refused(why)),
        };
        let user = super::jwt::user(binding, &claims).unwrap_or_default();
        let metadata = vec![
            ("role".to_string(), role.to_string()),
            (binding.user_claim.clone(), user.clone()),
        ];
        let display = format!("jwt-{user}");
        self.issue(
            role.to_string(),
            stored,
            Some(config.generation),
            None,
            display,
            metadata,
        )
        .await
    }

    /// Proposes the login and, if it applies, returns the token.
    async fn issue(
        &self,
        name: String,
        stored: StoredRole,
        config_generation: Option<u64>,
        secret_id: Option<String>,
        display: String,
        metadata: Vec<(String, String)>,
    ) -> Result<LoginOutcome, ServiceError> {
        let role = &stored.role;
        // The policies are read after the role, from this node's latest state: a change to
        // one since the role was read raised the role's generation, so the login below is
        // refused rather than issued with grants older than its generation says. A policy
        // deleted since the role was written grants nothing.
        let (grants, _missing) = self.policy_grants(&self.local(), &stored.token_policies)?;
        let token = Token::generate().map_err(|e| ServiceError::Internal(e.to_string()))?;
        let now = now_ms();
        let ttl_ms = role.token_ttl_s.saturating_mul(1000);
        let record = TokenRecord {
            accessor: token.accessor(),
            name: display.chars().take(128).collect(),
            hash: token.hash(),
            policy: role.policy.clone(),
            created_at_ms: now,
            expires_at_ms: Some(now.saturating_add(ttl_ms)),
            acl_policies: stored.token_policies.clone(),
            grants,
        };
        let login = Login {
            method: role.method(),
            role: name.clone(),
            role_generation: stored.generation,
            config_generation,
            secret_id,
            accessor: record.accessor.clone(),
            sealed: self.barrier.seal_token(&record)?,
            ttl_ms,
            max_ttl_ms: role.token_max_ttl_s.saturating_mul(1000),
        };
        let command = Command::Login(Box::new(login));
        self.room_for(&command)?;
        // No caller: the login is its own authority (checked above and again in apply).
        let result = self.node.write(Op::new(command, None)).await?;
        match result {
            CommandResult::LoggedIn(lease) => {
                tracing::info!(
                    accessor = %record.accessor,
                    role = %name,
                    method = stored.role.method().as_str(),
                    "login issued a token"
                );
                let mut record = record;
                record.expires_at_ms = Some(lease.expires_at_ms);
                Ok(LoginOutcome::Issued(Box::new(Issued {
                    token,
                    record,
                    lease,
                    method: stored.role.method(),
                    role: name,
                    metadata,
                })))
            }
            CommandResult::LoginRefused(why) => Ok(LoginOutcome::Refused(why)),
            other => Err(refused("a login", other)),
        }
    }

    /// Extends the lease of the login token `accessor` by `increment_s` (0: its role's TTL).
    pub async fn renew_token(
        &self,
        caller: Caller,
        accessor: &str,
        increment_s: u64,
    ) -> Result<Result<Lease, String>, ServiceError> {
        let command = Command::RenewToken {
            accessor: accessor.to_string(),
            increment_ms: increment_s.saturating_mul(1000),
        };
        match self.propose(Origin::fresh(caller), command).await? {
            CommandResult::Renewed(lease) => Ok(Ok(lease)),
            CommandResult::LoginRefused(why) => Ok(Err(why)),
            CommandResult::NotFound => Ok(Err(format!("token {accessor} not found"))),
            other => Err(refused("renewing a token", other)),
        }
    }
}

/// The first 8 bytes of `mac`, hex: a secret id's accessor.
fn hex8(mac: &[u8; 32]) -> String {
    hex::encode(&mac[..8])
}
