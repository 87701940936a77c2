//! Secret paths: the one place that decides what a valid path is.
//!
//! Invariant: a [`SecretPath`] always holds a path that passed [`SecretPath::parse`], so code
//! below the API never re-validates. A path is one or more `/`-separated segments of
//! `[A-Za-z0-9._-]`, none of them `.` or `..`, no empty segment, at most 512 bytes in all.
//! Percent-decoding happens once, here, before the checks.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest accepted path, in bytes, after percent-decoding.
pub const MAX_PATH_BYTES: usize = 512;

/// A validated secret path.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SecretPath(String);

/// Which path rule a request broke; the message names the rule and the offending part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path is empty")]
    Empty,
    #[error("path is {0} bytes, longer than the {MAX_PATH_BYTES}-byte limit")]
    TooLong(usize),
    #[error("path has an invalid percent-encoding")]
    BadPercentEncoding,
    #[error("path has an empty segment (leading, trailing or doubled '/')")]
    EmptySegment,
    #[error("path segment '{0}' is not allowed ('.' and '..' are reserved)")]
    DotSegment(String),
    #[error(
        "path segment '{segment}' contains '{ch}'; segments may only contain A-Z a-z 0-9 . _ -"
    )]
    BadChar { segment: String, ch: char },
}

impl SecretPath {
    /// Validates a path as it arrives in a URL (percent-encoded).
    pub fn parse(raw: &str) -> Result<Self, PathError> {
        let decoded = percent_decode(raw)?;
        Self::parse_decoded(&decoded)
    }

    /// Validates an already-decoded path.
    pub fn parse_decoded(path: &str) -> Result<Self, PathError> {
        if path.is_empty() {
            return Err(PathError::Empty);
        }
        if path.len() > MAX_PATH_BYTES {
            return Err(PathError::TooLong(path.len()));
        }
        for segment in path.split('/') {
            if segment.is_empty() {
                return Err(PathError::EmptySegment);
            }
            if segment == "." || segment == ".." {
                return Err(PathError::DotSegment(segment.to_string()));
            }
            if let Some(ch) = segment.chars().find(|c| !is_segment_char(*c)) {
                // Show at most 64 characters of the segment: it is user input.
                let segment: String = segment.chars().take(64).collect();
                return Err(PathError::BadChar { segment, ch });
            }
        }
        Ok(SecretPath(path.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True when this path lies under `prefix` in the segment sense: `app` covers `app/db`
    /// but not `apple`. The empty prefix covers everything.
    pub fn has_prefix(&self, prefix: &str) -> bool {
        let prefix = prefix.trim_end_matches('/');
        prefix.is_empty()
            || self.0 == prefix
            || (self.0.starts_with(prefix) && self.0.as_bytes().get(prefix.len()) == Some(&b'/'))
    }
}

impl fmt::Display for SecretPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_segment_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-'
}

/// Decodes `%XX` escapes once (with the `percent-encoding` crate). Every `%` must start a
/// valid escape and the result must be UTF-8; the segment rules then apply to the decoded
/// text, so `%2F` becomes a separator and `%00` is rejected as a character, never passed on.
fn percent_decode(raw: &str) -> Result<String, PathError> {
    // The crate passes a malformed escape through as literal text; a path must not be
    // ambiguous, so refuse it instead.
    let b = raw.as_bytes();
    for (i, _) in raw.match_indices('%') {
        let hex = b.get(i + 1..i + 3).ok_or(PathError::BadPercentEncoding)?;
        if !hex.iter().all(u8::is_ascii_hexdigit) {
            return Err(PathError::BadPercentEncoding);
        }
    }
    percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| PathError::BadPercentEncoding)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_nested_paths() {
        for ok in ["a", "app/db", "a.b/c_d/e-f/G9", "x/.hidden", "..a/b.."] {
            assert_eq!(SecretPath::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn rejects_each_rule_with_its_own_error() {
        assert_eq!(SecretPath::parse(""), Err(PathError::Empty));
        assert_eq!(SecretPath::parse("a//b"), Err(PathError::EmptySegment));
        assert_eq!(SecretPath::parse("/a"), Err(PathError::EmptySegment));
        assert_eq!(SecretPath::parse("a/"), Err(PathError::EmptySegment));
        assert_eq!(
            SecretPath::parse("a/../b"),
            Err(PathError::DotSegment("..".into()))
        );
        assert_eq!(
            SecretPath::parse("./b"),
            Err(PathError::DotSegment(".".into()))
        );
        assert!(matches!(
            SecretPath::parse("a b"),
            Err(PathError::BadChar { ch: ' ', .. })
        ));
        assert!(matches!(
            SecretPath::parse("a/ü"),
            Err(PathError::BadChar { ch: 'ü', .. })
        ));
        assert_eq!(
            SecretPath::parse(&"a".repeat(513)),
            Err(PathError::TooLong(513))
        );
        assert!(SecretPath::parse(&"a".repeat(512)).is_ok());
    }

    #[test]
    fn percent_decodes_exactly_once() {
        assert_eq!(SecretPath::parse("a%2Fb").unwrap().as_str(), "a/b");
        assert_eq!(
            SecretPath::parse("%2E%2E/b"),
            Err(PathError::DotSegment("..".into()))
        );
        // %25 decodes to a literal '%', which is then not a valid character: no second decode.
        assert!(matches!(
            SecretPath::parse("a%252F"),
            Err(PathError::BadChar { ch: '%', .. })
        ));
        assert_eq!(SecretPath::parse("a%2"), Err(PathError::BadPercentEncoding));
        assert_eq!(
            SecretPath::parse("a%zz"),
            Err(PathError::BadPercentEncoding)
        );
        assert_eq!(
            SecretPath::parse("a%ff"),
            Err(PathError::BadPercentEncoding)
        );
        assert!(matches!(
            SecretPath::parse("a%00"),
            Err(PathError::BadChar { ch: '\0', .. })
        ));
    }

    #[test]
    fn prefix_is_segment_aware() {
        let p = SecretPath::parse("app/db/main").unwrap();
        assert!(p.has_prefix("app"));
        assert!(p.has_prefix("app/"));
        assert!(p.has_prefix("app/db"));
        assert!(p.has_prefix(""));
        assert!(!p.has_prefix("ap"));
        assert!(!p.has_prefix("app/d"));
    }
}
