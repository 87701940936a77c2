//! API tokens: what a token may do, and how a presented token is recognised.
//!
//! Invariants:
//! - A token is shown once, when created; only its SHA-256 hash is kept, inside a record
//!   that is itself sealed at rest. The record is found by the token's *accessor* (the first
//!   8 bytes of the hash, hex), which identifies a token in listings and revocation without
//!   revealing anything that would let one use it.
//! - The full hash is compared in constant time.
//! - A policy grants scopes on path patterns: `*` (everything), `prefix/*` (everything
//!   under `prefix`, segment-aware) or an exact path. Scopes do not imply each other:
//!   `admin` manages tokens, keys and the cluster but reads no secret by itself; `metrics`
//!   only scrapes `/metrics` (which `admin` may also do).
//! - Authority cannot be widened: a token may create (and revoke, and list) only tokens whose
//!   policy lies within its own ([`Policy::contains`]: every scope it holds, every path
//!   pattern covered by one of its own), Vault's rule for child tokens. Cluster-wide
//!   operations (keys, membership, snapshots, backup, restore) need an *unrestricted*
//!   `admin`: one whose patterns include `*` ([`Policy::unrestricted`]).

use std::fmt;

use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::path::SecretPath;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Scope {
    ReadSecret,
    WriteSecret,
    Admin,
    /// Scrape `/metrics` (and nothing else).
    Metrics,
}

impl Scope {
    /// Every scope, in the order documents list them.
    pub const ALL: [Scope; 4] = [
        Scope::ReadSecret,
        Scope::WriteSecret,
        Scope::Admin,
        Scope::Metrics,
    ];

    pub fn parse(s: &str) -> Option<Scope> {
        match s {
            "read:secret" => Some(Scope::ReadSecret),
            "write:secret" => Some(Scope::WriteSecret),
            "admin" => Some(Scope::Admin),
            "metrics" => Some(Scope::Metrics),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::ReadSecret => "read:secret",
            Scope::WriteSecret => "write:secret",
            Scope::Admin => "admin",
            Scope::Metrics => "metrics",
        }
    }
}

/// A path pattern: `*`, `prefix/*`, or an exact path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathPattern(String);

impl PathPattern {
    pub fn parse(s: &str) -> Result<PathPattern, String> {
        if s == "*" {
            return Ok(PathPattern(s.into()));
        }
        let base = s.strip_suffix("/*").unwrap_or(s);
        SecretPath::parse_decoded(base).map_err(|e| format!("path pattern '{s}': {e}"))?;
        Ok(PathPattern(s.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn matches(&self, path: &SecretPath) -> bool {
        if self.0 == "*" {
            return true;
        }
        match self.0.strip_suffix("/*") {
            Some(prefix) => path.has_prefix(prefix) && path.as_str() != prefix,
            None => path.as_str() == self.0,
        }
    }

    /// Whether every path this pattern matches is also matched by `self`.
    pub fn covers(&self, other: &PathPattern) -> bool {
        if self.0 == "*" {
            return true;
        }
        if other.0 == "*" {
            return false;
        }
        match (self.0.strip_suffix("/*"), other.0.strip_suffix("/*")) {
            // `a/*` covers `a/*`, `a/b/*`, and the exact paths strictly under `a`.
            (Some(mine), Some(theirs)) => theirs == mine || theirs.starts_with(&format!("{mine}/")),
            (Some(mine), None) => other.0.starts_with(&format!("{mine}/")),
            // An exact path covers only itself.
            (None, Some(_)) => false,
            (None, None) => self.0 == other.0,
        }
    }

    /// True when every path under `prefix` could match (used to filter listings).
    pub fn covers_prefix(&self, prefix: &str) -> bool {
        if self.0 == "*" {
            return true;
        }
        match self.0.strip_suffix("/*") {
            Some(p) => {
                let prefix = prefix.trim_end_matches('/');
                prefix == p || prefix.starts_with(&format!("{p}/"))
            }
            None => false,
        }
    }
}

/// What a token grants.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub scopes: Vec<Scope>,
    pub paths: Vec<PathPattern>,
}

impl Policy {
    pub fn root() -> Policy {
        Policy {
            scopes: vec![Scope::ReadSecret, Scope::WriteSecret, Scope::Admin],
            paths: vec![PathPattern("*".into())],
        }
    }

    pub fn has_scope(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }

    /// Whether `scope` is held or implied (`admin` may also scrape metrics, so it may grant
    /// `metrics`).
    pub fn grants(&self, scope: Scope) -> bool {
        self.has_scope(scope) || (scope == Scope::Metrics && self.has_scope(Scope::Admin))
    }

    /// Whether this policy reaches every path (`*` among its patterns).
    pub fn unrestricted(&self) -> bool {
        self.paths.iter().any(|p| p.as_str() == "*")
    }

    /// Whether `other` grants nothing this policy does not: each of its scopes is held (or
    /// implied) here, and each of its path patterns is covered by one of ours.
    pub fn contains(&self, other: &Policy) -> bool {
        other.scopes.iter().all(|s| self.grants(*s))
            && other
                .paths
                .iter()
                .all(|theirs| self.paths.iter().any(|mine| mine.covers(theirs)))
    }

    pub fn allows(&self, scope: Scope, path: &SecretPath) -> bool {
        self.has_scope(scope) && self.paths.iter().any(|p| p.matches(path))
    }
}

/// What one token may do: its own policy and, for a token made from named ACL policies
/// (Vault's `auth/token/create -policy=…`), the grants those policies compiled to when the
/// token was created. A scope on a path is allowed when any grant allows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authority {
    grants: Vec<Policy>,
}

impl Authority {
    pub fn new(policy: Policy, more: &[Policy]) -> Authority {
        let mut grants = vec![policy];
        grants.extend(more.iter().cloned());
        Authority { grants }
    }

    pub fn has_scope(&self, scope: Scope) -> bool {
        self.grants.iter().any(|g| g.has_scope(scope))
    }

    /// `scope` on every path (a grant holding it with `*`).
    pub fn unrestricted(&self, scope: Scope) -> bool {
        self.grants
            .iter()
            .any(|g| g.has_scope(scope) && g.unrestricted())
    }

    pub fn allows(&self, scope: Scope, path: &SecretPath) -> bool {
        self.grants.iter().any(|g| g.allows(scope, path))
    }

    /// Whether `other` grants nothing this authority does not: each of its scopes, on each
    /// of its patterns, is held (or implied) by one grant covering that pattern.
    pub fn contains(&self, other: &Policy) -> bool {
        other.scopes.iter().all(|s| {
            other.paths.iter().all(|theirs| {
                self.grants
                    .iter()
                    .any(|g| g.grants(*s) && g.paths.iter().any(|mine| mine.covers(theirs)))
            })
        })
    }

    /// Whether every grant of `other` lies within this authority.
    pub fn covers(&self, other: &Authority) -> bool {
        other.grants.iter().all(|g| self.contains(g))
    }

    /// Every grant, the token's own policy first.
    pub fn grants(&self) -> &[Policy] {
        &self.grants
    }
}

impl From<Policy> for Authority {
    fn from(policy: Policy) -> Authority {
        Authority::new(policy, &[])
    }
}

/// The stored form of a token (sealed before it is proposed).
#[derive(Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub accessor: String,
    pub name: String,
    pub hash: [u8; 32],
    pub policy: Policy,
    pub created_at_ms: u64,
    pub expires_at_ms: Option<u64>,
    /// The named ACL policies the token was created with (empty for a token of
    /// `/api/v1/tokens`, a login or the bootstrap).
    pub acl_policies: Vec<String>,
    /// What those policies compiled to at creation. A token's authority never changes
    /// after it is created (`api::auth` relies on it): a later edit of a policy applies to
    /// tokens created after it.
    pub grants: Vec<Policy>,
}

/// The first stored layout of a token record, still the one written for a token without
/// named policies, so that a node of an earlier release reads it during a rolling upgrade.
#[derive(Serialize, Deserialize)]
struct RecordV1 {
    accessor: String,
    name: String,
    hash: [u8; 32],
    policy: Policy,
    created_at_ms: u64,
    expires_at_ms: Option<u64>,
}

/// The layout of a token with named policies: V1's fields, then the two lists. An earlier
/// release cannot decode it (trailing bytes are refused), so it refuses such a token
/// instead of reading it without its grants' limits.
#[derive(Serialize, Deserialize)]
struct RecordV2 {
    v1: RecordV1,
    acl_policies: Vec<String>,
    grants: Vec<Policy>,
}

impl fmt::Debug for TokenRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenRecord")
            .field("accessor", &self.accessor)
            .field("name", &self.name)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl TokenRecord {
    /// The bytes to seal: [`RecordV1`] when the token has no named policies, else
    /// [`RecordV2`].
    pub fn encode(&self) -> Vec<u8> {
        let v1 = RecordV1 {
            accessor: self.accessor.clone(),
            name: self.name.clone(),
            hash: self.hash,
            policy: self.policy.clone(),
            created_at_ms: self.created_at_ms,
            expires_at_ms: self.expires_at_ms,
        };
        if self.acl_policies.is_empty() && self.grants.is_empty() {
            crate::codec::encode(&v1)
        } else {
            crate::codec::encode(&RecordV2 {
                v1,
                acl_policies: self.acl_policies.clone(),
                grants: self.grants.clone(),
            })
        }
    }

    /// Reads either layout (each refuses the other's bytes: V1 is a prefix of V2, and
    /// trailing bytes are an error).
    pub fn decode(bytes: &[u8]) -> Result<TokenRecord, crate::codec::CodecError> {
        let (v1, acl_policies, grants) = match crate::codec::decode::<RecordV2>(bytes) {
            Ok(v2) => (v2.v1, v2.acl_policies, v2.grants),
            Err(_) => (crate::codec::decode::<RecordV1>(bytes)?, vec![], vec![]),
        };
        Ok(TokenRecord {
            accessor: v1.accessor,
            name: v1.name,
            hash: v1.hash,
            policy: v1.policy,
            created_at_ms: v1.created_at_ms,
            expires_at_ms: v1.expires_at_ms,
            acl_policies,
            grants,
        })
    }

    /// What the token may do.
    pub fn authority(&self) -> Authority {
        Authority::new(self.policy.clone(), &self.grants)
    }

    /// Whether `presented` is this token, in constant time over the hash.
    pub fn matches(&self, presented: &str) -> bool {
        hash(presented).ct_eq(&self.hash).into()
    }

    pub fn expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_some_and(|t| now_ms >= t)
    }
}

/// A secret token string. Its `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Token {
    pub const PREFIX: &'static str = "rs.";

    /// A new random token: `rs.` plus 32 random bytes, base64url.
    pub fn generate() -> Result<Token, super::crypto::CryptoError> {
        use base64::Engine;
        let mut b = [0u8; 32];
        SystemRandom::new()
            .fill(&mut b)
            .map_err(|_| super::crypto::CryptoError::Random)?;
        Ok(Token(format!(
            "{}{}",
            Self::PREFIX,
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
        )))
    }

    /// Wraps a token given by an operator (root token file or environment).
    pub fn from_operator(s: &str) -> Result<Token, String> {
        let s = s.trim();
        if s.len() < 16 || s.len() > 256 || !s.chars().all(|c| c.is_ascii_graphic()) {
            return Err("a token must be 16-256 printable ASCII characters".into());
        }
        Ok(Token(s.to_string()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn accessor(&self) -> String {
        accessor(&self.0)
    }

    pub fn hash(&self) -> [u8; 32] {
        hash(&self.0)
    }
}

pub fn hash(token: &str) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// The accessor of a presented token string.
pub fn accessor(token: &str) -> String {
    hex::encode(&hash(token)[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> SecretPath {
        SecretPath::parse(s).unwrap()
    }

    #[test]
    fn patterns() {
        let under = PathPattern::parse("app/*").unwrap();
        assert!(under.matches(&p("app/db")));
        assert!(under.matches(&p("app/db/x")));
        assert!(!under.matches(&p("app")));
        assert!(!under.matches(&p("apple/x")));
        let exact = PathPattern::parse("shared/db").unwrap();
        assert!(exact.matches(&p("shared/db")));
        assert!(!exact.matches(&p("shared/db/x")));
        assert!(PathPattern::parse("*").unwrap().matches(&p("x")));
        assert!(PathPattern::parse("a//b").is_err());
        assert!(under.covers_prefix("app/db"));
        assert!(!under.covers_prefix("ap"));
    }

    #[test]
    fn policy_needs_scope_and_path() {
        let pol = Policy {
            scopes: vec![Scope::ReadSecret],
            paths: vec![PathPattern::parse("app/*").unwrap()],
        };
        assert!(pol.allows(Scope::ReadSecret, &p("app/x")));
        assert!(!pol.allows(Scope::WriteSecret, &p("app/x")));
        assert!(!pol.allows(Scope::ReadSecret, &p("other/x")));
        assert!(!Policy {
            scopes: vec![Scope::Admin],
            paths: vec![]
        }
        .allows(Scope::Admin, &p("a")));
    }

    fn policy(scopes: &[Scope], paths: &[&str]) -> Policy {
        Policy {
            scopes: scopes.to_vec(),
            paths: paths
                .iter()
                .map(|p| PathPattern::parse(p).unwrap())
                .collect(),
        }
    }

    #[test]
    fn pattern_coverage() {
        let pat = |s| PathPattern::parse(s).unwrap();
        assert!(pat("*").covers(&pat("*")));
        assert!(pat("*").covers(&pat("a/b")));
        assert!(!pat("a/*").covers(&pat("*")));
        assert!(pat("a/*").covers(&pat("a/*")));
        assert!(pat("a/*").covers(&pat("a/b/*")));
        assert!(pat("a/*").covers(&pat("a/b")));
        assert!(
            !pat("a/*").covers(&pat("a")),
            "a/* matches nothing at 'a' itself"
        );
        assert!(!pat("a/*").covers(&pat("ab/*")));
        assert!(!pat("a/*").covers(&pat("ab")));
        assert!(!pat("a").covers(&pat("a/*")));
        assert!(pat("a").covers(&pat("a")));
        assert!(!pat("a").covers(&pat("b")));
    }

    #[test]
    fn a_policy_contains_only_what_it_grants() {
        let team_admin = policy(&[Scope::Admin], &["team-a/*"]);
        // The reproduced escalation: a path-limited admin minting a wider token.
        assert!(!team_admin.contains(&policy(&[Scope::ReadSecret], &["*"])));
        assert!(!team_admin.contains(&policy(&[Scope::ReadSecret], &["team-a/*"])));
        assert!(!team_admin.contains(&policy(&[Scope::Admin], &["team-b/*"])));
        assert!(team_admin.contains(&policy(&[Scope::Admin], &["team-a/x/*"])));
        assert!(team_admin.contains(&policy(&[Scope::Metrics], &["team-a/*"])));
        assert!(!team_admin.unrestricted());
        let root = Policy::root();
        assert!(root.unrestricted());
        assert!(root.contains(&policy(&[Scope::Metrics], &["*"])));
        assert!(root.contains(&root));
        assert!(!policy(&[Scope::ReadSecret], &["*"]).contains(&root));
    }

    #[test]
    fn records_without_policies_keep_the_first_layout() {
        // The layout releases before ACL policies wrote: the six fields in order.
        #[derive(Serialize)]
        struct Old<'a> {
            accessor: &'a str,
            name: &'a str,
            hash: [u8; 32],
            policy: &'a Policy,
            created_at_ms: u64,
            expires_at_ms: Option<u64>,
        }
        let rec = TokenRecord {
            accessor: "0123456789abcdef".into(),
            name: "n".into(),
            hash: [7; 32],
            policy: policy(&[Scope::ReadSecret], &["app/*"]),
            created_at_ms: 5,
            expires_at_ms: Some(9),
            acl_policies: vec![],
            grants: vec![],
        };
        let old = crate::codec::encode(&Old {
            accessor: &rec.accessor,
            name: &rec.name,
            hash: rec.hash,
            policy: &rec.policy,
            created_at_ms: 5,
            expires_at_ms: Some(9),
        });
        assert_eq!(rec.encode(), old);
        assert!(TokenRecord::decode(&old).unwrap() == rec);
        let mut with = rec.clone();
        with.acl_policies = vec!["app".into()];
        with.grants = vec![policy(&[Scope::WriteSecret], &["app/*"])];
        let bytes = with.encode();
        assert!(TokenRecord::decode(&bytes).unwrap() == with);
        // A release that knows only the first layout refuses the second instead of reading
        // it without its grants.
        assert!(crate::codec::decode::<RecordV1>(&bytes).is_err());
        assert!(TokenRecord::decode(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn an_authority_is_the_union_of_its_grants() {
        let a = Authority::new(
            policy(&[], &[]),
            &[
                policy(&[Scope::ReadSecret], &["app/*", "shared/db"]),
                policy(&[Scope::WriteSecret], &["app/*"]),
            ],
        );
        assert!(a.allows(Scope::ReadSecret, &p("shared/db")));
        assert!(!a.allows(Scope::WriteSecret, &p("shared/db")));
        assert!(a.allows(Scope::WriteSecret, &p("app/x")));
        assert!(!a.has_scope(Scope::Admin) && !a.unrestricted(Scope::ReadSecret));
        // Each scope on each pattern must come from one grant covering it.
        assert!(a.contains(&policy(
            &[Scope::ReadSecret, Scope::WriteSecret],
            &["app/x/*"]
        )));
        assert!(!a.contains(&policy(&[Scope::WriteSecret], &["shared/db"])));
        assert!(a.covers(&Authority::from(policy(
            &[Scope::ReadSecret],
            &["shared/db"]
        ))));
        let root = Authority::from(Policy::root());
        assert!(root.covers(&a) && !a.covers(&root));
        assert!(root.unrestricted(Scope::Admin));
    }

    #[test]
    fn tokens_hash_and_hide() {
        let t = Token::generate().unwrap();
        assert!(t.expose().starts_with("rs."));
        assert_eq!(format!("{t:?}"), "Token(<redacted>)");
        let rec = TokenRecord {
            accessor: t.accessor(),
            name: "n".into(),
            hash: t.hash(),
            policy: Policy::root(),
            created_at_ms: 0,
            expires_at_ms: Some(10),
            acl_policies: vec![],
            grants: vec![],
        };
        assert!(rec.matches(t.expose()));
        assert!(!rec.matches("rs.other"));
        assert!(rec.expired(10) && !rec.expired(9));
        assert!(!format!("{rec:?}").contains(&format!("{:?}", rec.hash)));
        assert_eq!(t.accessor().len(), 16);
    }
}
