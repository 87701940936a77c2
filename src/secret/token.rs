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
    fn grants(&self, scope: Scope) -> bool {
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

/// The stored form of a token (sealed before it is proposed).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub accessor: String,
    pub name: String,
    pub hash: [u8; 32],
    pub policy: Policy,
    pub created_at_ms: u64,
    pub expires_at_ms: Option<u64>,
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
        };
        assert!(rec.matches(t.expose()));
        assert!(!rec.matches("rs.other"));
        assert!(rec.expired(10) && !rec.expired(9));
        assert!(!format!("{rec:?}").contains(&format!("{:?}", rec.hash)));
        assert_eq!(t.accessor().len(), 16);
    }
}
