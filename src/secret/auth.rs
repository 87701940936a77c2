//! What a login is made of: the roles, AppRole secret ids, JWT keys and token leases that
//! commands carry and the state stores. The logic that applies them is
//! [`super::login`]; these types live apart so that [`super::command`] can carry them without
//! importing the apply logic (which imports `command`).
//!
//! Invariant: these are stored with bincode, so a field is never added to, removed from or
//! reordered in a stored type; a new need is a new type or key.

use serde::{Deserialize, Serialize};

use super::crypto::Sealed;
use super::token::Policy;

/// A login method, as Vault names its mount (`auth/approle`, `auth/jwt`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Method {
    AppRole,
    Jwt,
}

impl Method {
    pub const ALL: [Method; 2] = [Method::AppRole, Method::Jwt];

    pub fn as_str(self) -> &'static str {
        match self {
            Method::AppRole => "approle",
            Method::Jwt => "jwt",
        }
    }

    /// The byte that keys this method's roles.
    pub(super) fn byte(self) -> u8 {
        match self {
            Method::AppRole => b'a',
            Method::Jwt => b'j',
        }
    }
}

/// What a role grants the tokens its logins issue, and what a credential must show.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    pub policy: Policy,
    /// Seconds a token lives, and what one renewal adds at most.
    pub token_ttl_s: u64,
    /// Seconds after the login past which no renewal extends the token.
    pub token_max_ttl_s: u64,
    pub binding: Binding,
}

impl Role {
    pub fn method(&self) -> Method {
        match self.binding {
            Binding::AppRole(_) => Method::AppRole,
            Binding::Jwt(_) => Method::Jwt,
        }
    }
}

/// The method-specific part of a role.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Binding {
    AppRole(AppRoleBinding),
    Jwt(JwtBinding),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppRoleBinding {
    /// The role's public identifier (a UUID unless an administrator set one).
    pub role_id: String,
    /// Seconds a new secret id lives (0: until destroyed).
    pub secret_id_ttl_s: u64,
    /// Logins a new secret id allows (0: unlimited).
    pub secret_id_num_uses: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwtBinding {
    /// The token's `aud` must contain one of these (the API requires at least one, so a
    /// token minted for another service is refused).
    pub bound_audiences: Vec<String>,
    /// When not empty, `sub` must equal it.
    pub bound_subject: String,
    /// Each claim (a name) must equal one of its values (a list claim: contain one).
    pub bound_claims: Vec<(String, Vec<String>)>,
    /// The claim that names the workload in the token's display name and the audit log.
    pub user_claim: String,
    /// Seconds of clock skew allowed on `exp`, `nbf` and `iat`.
    pub clock_skew_leeway_s: u64,
}

/// A role as stored (`u<method byte><name>`), read and written with [`StoredRole::decode`]
/// and [`StoredRole::encode`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRole {
    /// Raised by every write of the role, and by every write or delete of an ACL policy it
    /// names (1 at creation): a login checked against an older generation is refused.
    pub generation: u64,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
    pub role: Role,
    /// The ACL policies (Vault's `token_policies`) whose grants a login's token gets, on top
    /// of the role's own [`Role::policy`]. Compiled at each login, from the policies as they
    /// are then (`super::acl`).
    pub token_policies: Vec<String>,
}

/// The first stored layout of a role, still the one written for a role without
/// `token_policies`, so that a node of an earlier release reads it during a rolling upgrade.
#[derive(Serialize, Deserialize)]
struct StoredRoleV1 {
    generation: u64,
    created_at_ms: u64,
    updated_at_ms: u64,
    role: Role,
}

/// The layout of a role with `token_policies`: V1's fields, then the names. An earlier
/// release cannot decode it (trailing bytes are refused), so it fails such a login instead
/// of issuing a token without the policies' grants.
#[derive(Serialize, Deserialize)]
struct StoredRoleV2 {
    v1: StoredRoleV1,
    token_policies: Vec<String>,
}

impl StoredRole {
    /// The bytes to store: [`StoredRoleV1`] without `token_policies`, else [`StoredRoleV2`].
    pub fn encode(&self) -> Vec<u8> {
        let v1 = StoredRoleV1 {
            generation: self.generation,
            created_at_ms: self.created_at_ms,
            updated_at_ms: self.updated_at_ms,
            role: self.role.clone(),
        };
        if self.token_policies.is_empty() {
            crate::codec::encode(&v1)
        } else {
            crate::codec::encode(&StoredRoleV2 {
                v1,
                token_policies: self.token_policies.clone(),
            })
        }
    }

    /// Reads either layout (each refuses the other's bytes: V1 is a prefix of V2, and
    /// trailing bytes are an error).
    pub fn decode(bytes: &[u8]) -> Result<StoredRole, crate::codec::CodecError> {
        let (v1, token_policies) = match crate::codec::decode::<StoredRoleV2>(bytes) {
            Ok(v2) => (v2.v1, v2.token_policies),
            Err(_) => (crate::codec::decode::<StoredRoleV1>(bytes)?, Vec::new()),
        };
        Ok(StoredRole {
            generation: v1.generation,
            created_at_ms: v1.created_at_ms,
            updated_at_ms: v1.updated_at_ms,
            role: v1.role,
            token_policies,
        })
    }
}

/// Where the JWT method finds the keys that sign tokens, and the issuer it trusts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwtConfig {
    /// When not empty, `iss` must equal it.
    pub bound_issuer: String,
    /// PEM public keys (RSA, EC P-256/P-384 or Ed25519).
    pub pem_keys: Vec<String>,
    /// A JWKS document (JSON text), as a Kubernetes API server publishes at
    /// `/openid/v1/jwks`.
    pub jwks: Option<String>,
    /// Algorithms accepted (Vault's `jwt_supported_algs`; empty: RS256).
    pub supported_algs: Vec<String>,
}

/// The JWT configuration as stored (`Ujwt`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredJwtConfig {
    pub generation: u64,
    pub updated_at_ms: u64,
    pub config: JwtConfig,
}

/// An AppRole secret id as stored (`w<role>\0<accessor>`): its MAC, never the secret id.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretId {
    /// Hex of the MAC's first 8 bytes: names the secret id in listings and destruction.
    pub accessor: String,
    /// HMAC-SHA256 of the secret id under the master-derived key for secret ids.
    pub mac: [u8; 32],
    pub created_at_ms: u64,
    pub expires_at_ms: Option<u64>,
    /// Logins left (`None`: unlimited).
    pub uses_left: Option<u64>,
    /// Vault's `metadata` (shown on lookup, never secret).
    pub metadata: Vec<(String, String)>,
}

impl std::fmt::Debug for SecretId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretId")
            .field("accessor", &self.accessor)
            .field("expires_at_ms", &self.expires_at_ms)
            .field("uses_left", &self.uses_left)
            .finish_non_exhaustive()
    }
}

impl SecretId {
    pub fn expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_some_and(|t| now_ms >= t)
    }
}

/// A login token's lease (`e<token accessor>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub expires_at_ms: u64,
    /// No renewal moves the expiry past this.
    pub max_expires_at_ms: u64,
    /// What a renewal without an increment adds (the role's TTL at login).
    pub ttl_ms: u64,
}

/// A login as proposed: what the receiving node checked, for apply to check again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Login {
    pub method: Method,
    pub role: String,
    /// The role's generation the credential was checked against.
    pub role_generation: u64,
    /// The JWT configuration's generation the signature was checked against.
    pub config_generation: Option<u64>,
    /// The AppRole secret id's accessor, consumed by this login.
    pub secret_id: Option<String>,
    /// The new token's accessor and its record, sealed.
    pub accessor: String,
    pub sealed: Sealed,
    pub ttl_ms: u64,
    pub max_ttl_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::testing::approle;

    fn stored(token_policies: &[&str]) -> StoredRole {
        StoredRole {
            generation: 3,
            created_at_ms: 1,
            updated_at_ms: 2,
            role: approle("id"),
            token_policies: token_policies.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn a_role_without_policies_keeps_the_layout_an_earlier_release_reads() {
        let plain = stored(&[]);
        let bytes = plain.encode();
        // The first layout, field for field: what a node of an earlier release decodes.
        let v1: StoredRoleV1 = crate::codec::decode(&bytes).unwrap();
        assert_eq!((v1.generation, v1.role), (3, plain.role.clone()));
        assert_eq!(StoredRole::decode(&bytes).unwrap(), plain);

        let named = stored(&["deploy", "default"]);
        let bytes = named.encode();
        assert!(
            crate::codec::decode::<StoredRoleV1>(&bytes).is_err(),
            "an earlier release refuses a role with policies instead of dropping them"
        );
        assert_eq!(StoredRole::decode(&bytes).unwrap(), named);
    }
}
