//! Custom metadata of a KV path (Vault KV v2's `custom_metadata`): a map of strings that
//! describes a path whatever its versions, kept beside them. Applying its command
//! ([`Command::SetMetadata`](super::command::Command::SetMetadata)) is called from
//! [`super::machine::apply`], so [`set_metadata`] is pure like the rest of apply; the limits
//! ([`validate`]), the JSON shapes both API dialects accept ([`from_json`]) and the merge of
//! a patch ([`merge`]) live here too, so that both dialects refuse the same input the same way.
//!
//! Invariants:
//! - The map is sealed before it is proposed (by the barrier, with associated data of its own
//!   domain, `custom_metadata\0<path>`, so a sealed map never opens as a value or a token,
//!   nor the reverse, nor at another path): the log, the state machine, snapshots and backups
//!   hold it sealed only, and apply never sees a key or a value of it.
//! - Each path's record (`C<path>`, [`CustomMetadataRecord`]) carries a generation in
//!   plaintext: 1 at its first write, one more at each write (0 means "no record"). A write
//!   may name the generation it was computed from; if that is not the current one nothing
//!   changes and the answer is `CustomMetadataConflict` with the current generation. A PATCH
//!   is a read, a merge and such a conditional write (retried a bounded number of times by
//!   the service), so two concurrent patches never lose each other's keys.
//! - A path may have custom metadata and no version (Vault allows metadata before data);
//!   removing a path (`DeleteMetadata`) removes its record with everything else. A write
//!   under an ondemand mount is refused where it applies (`UnderMount`), as a KV write is.
//! - The limits are Vault's ([`validate`]): checked before sealing, by the service, because
//!   apply cannot read the map. Bad input is refused whole: nothing is proposed.
//! - The version cap and the custom metadata change in one command, so one request that
//!   sets both is applied all or nothing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::command::CommandResult;
use super::crypto::Sealed;
use super::path::SecretPath;
use super::state::{keys, ApplyError, Changes, StateRead};

/// Most keys one path's custom metadata may hold (Vault's `maxCustomMetadataKeys`).
pub const MAX_KEYS: usize = 64;
/// Longest key, in bytes (Vault's `maxCustomMetadataKeyLength`); keys are not empty.
pub const MAX_KEY_BYTES: usize = 128;
/// Longest value, in bytes (Vault's `maxCustomMetadataValueLength`); values are not empty.
pub const MAX_VALUE_BYTES: usize = 512;
/// How every refusal of custom metadata begins, as in Vault.
pub const INVALID: &str = "custom_metadata validation failed";

/// A path's custom metadata, opened.
pub type CustomMetadata = BTreeMap<String, String>;

/// A patch of custom metadata: `None` removes the key (a JSON `null` in a merge patch).
pub type CustomMetadataPatch = BTreeMap<String, Option<String>>;

/// A path's custom metadata as stored (`C<path>`). A new struct: its bincode layout is its
/// own, and never changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomMetadataRecord {
    /// 1 at the first write, +1 per write (see the module doc).
    pub generation: u64,
    /// The map, sealed by the barrier for this path (never empty: a header and a tag).
    pub sealed: Sealed,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
}

/// A key as a refusal names it: quoted and escaped, at most 64 characters of it.
fn named(key: &str) -> String {
    let short: String = key.chars().take(64).collect();
    if short.len() < key.len() {
        format!("{short:?}…")
    } else {
        format!("{short:?}")
    }
}

/// Printable as Go's `strutil.Printable` means it (letters, marks, numbers, punctuation,
/// symbols and the ASCII space): no control character, no other white space, and none of the
/// invisible format characters (zero widths, bidirectional controls, the BOM). Without the
/// Unicode tables this is close to Go's `unicode.IsPrint`, not equal: a few rarer format
/// characters pass.
fn printable(s: &str) -> bool {
    s.chars()
        .all(|c| !(c.is_control() || (c.is_whitespace() && c != ' ') || invisible(c)))
}

/// The invisible format characters [`printable`] refuses: soft hyphen, zero widths,
/// bidirectional controls, word joiners, the BOM and the interlinear annotations.
fn invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00ad}'
            | '\u{200b}'..='\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206f}'
            | '\u{feff}'
            | '\u{fff9}'..='\u{fffb}'
    )
}

/// Vault's limits on custom metadata (`validateCustomMetadata`): at most [`MAX_KEYS`] keys;
/// each key 1 to [`MAX_KEY_BYTES`] bytes, each value 1 to [`MAX_VALUE_BYTES`] bytes, both
/// printable. Every problem is named (the count alone when there are too many keys, as in
/// Vault), never a value.
pub fn validate(map: &CustomMetadata) -> Result<(), String> {
    if map.len() > MAX_KEYS {
        return Err(format!(
            "{INVALID}: payload must contain at most {MAX_KEYS} keys, provided {}",
            map.len()
        ));
    }
    let mut problems = Vec::new();
    for (k, v) in map {
        if k.is_empty() || k.len() > MAX_KEY_BYTES {
            problems.push(format!(
                "length of key {} is {} but must be 0 < len(key) <= {MAX_KEY_BYTES}",
                named(k),
                k.len()
            ));
        }
        if v.is_empty() || v.len() > MAX_VALUE_BYTES {
            problems.push(format!(
                "length of value for key {} is {} but must be 0 < len(value) <= {MAX_VALUE_BYTES}",
                named(k),
                v.len()
            ));
        }
        if !printable(k) {
            problems.push(format!("key {} contains unprintable characters", named(k)));
        }
        if !printable(v) {
            problems.push(format!(
                "value for key {} contains unprintable characters",
                named(k)
            ));
        }
    }
    match problems.is_empty() {
        true => Ok(()),
        false => Err(format!("{INVALID}: {}", problems.join("; "))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The custom metadata (or, `patch`, the patch) a request body gives as `field`: a JSON
/// object of strings, or in a patch of strings and `null`s. Anything else is refused, naming
/// the key and what it was instead; [`validate`] is not run here (a patch is validated once
/// merged).
pub fn from_json(field: &str, v: &Value, patch: bool) -> Result<CustomMetadataPatch, String> {
    let Value::Object(o) = v else {
        return Err(format!(
            "{INVALID}: '{field}' must be an object of string values, not {}",
            kind(v)
        ));
    };
    if o.len() > MAX_KEYS && !patch {
        return Err(format!(
            "{INVALID}: payload must contain at most {MAX_KEYS} keys, provided {}",
            o.len()
        ));
    }
    let mut out = CustomMetadataPatch::new();
    let mut problems = Vec::new();
    for (k, v) in o {
        match v {
            Value::String(s) => {
                out.insert(k.clone(), Some(s.clone()));
            }
            Value::Null if patch => {
                out.insert(k.clone(), None);
            }
            other => problems.push(format!(
                "value for key {} must be a string{}, not {}",
                named(k),
                if patch { " (or null to remove it)" } else { "" },
                kind(other)
            )),
        }
    }
    match problems.is_empty() {
        true => Ok(out),
        false => Err(format!("{INVALID}: {}", problems.join("; "))),
    }
}

/// `current` with `patch` applied: a `None` removes its key, a string sets it.
pub fn merge(mut current: CustomMetadata, patch: &CustomMetadataPatch) -> CustomMetadata {
    for (k, v) in patch {
        match v {
            Some(v) => current.insert(k.clone(), v.clone()),
            None => current.remove(k),
        };
    }
    current
}

/// The replacement map of a request that sets the whole map (no `None` in it).
pub fn replacement(patch: CustomMetadataPatch) -> CustomMetadata {
    patch
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect()
}

/// Applies `SetMetadata`: checks the generation (if named) before changing anything, then
/// stores the sealed map as the next generation and sets the version cap, each when given.
pub fn set_metadata<S: StateRead>(
    state: &S,
    changes: &mut Changes,
    at_ms: u64,
    path: &SecretPath,
    max_versions: Option<u64>,
    sealed: Option<&Sealed>,
    generation: Option<u64>,
) -> Result<CommandResult, ApplyError<S::Error>> {
    if let Some(mount) = super::mount::covering(state, changes, path.as_str())? {
        return Ok(CommandResult::UnderMount { mount });
    }
    let key = keys::custom_metadata(path);
    let record: Option<CustomMetadataRecord> = changes.get_decoded(state, &key)?;
    let current = record.as_ref().map_or(0, |r| r.generation);
    if generation.is_some_and(|g| g != current) {
        return Ok(CommandResult::CustomMetadataConflict { current });
    }
    let mut now = current;
    if let Some(sealed) = sealed {
        now = current + 1;
        let record = CustomMetadataRecord {
            generation: now,
            sealed: sealed.clone(),
            created_at_ms: record.as_ref().map_or(at_ms, |r| r.created_at_ms),
            updated_at_ms: record
                .as_ref()
                .map_or(at_ms, |r| at_ms.max(r.updated_at_ms)),
        };
        changes.put(key, &record);
    }
    let pruned = match max_versions {
        Some(max) => match super::versions::set_max_versions(state, changes, path, max)? {
            CommandResult::MaxVersionsSet { pruned } => pruned,
            _ => 0,
        },
        None => 0,
    };
    Ok(CommandResult::MetadataSet {
        pruned,
        generation: now,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn map(pairs: &[(&str, &str)]) -> CustomMetadata {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn limits_are_vaults() {
        assert!(validate(&CustomMetadata::new()).is_ok());
        let full: CustomMetadata = (0..MAX_KEYS)
            .map(|i| (format!("{i:0>128}"), "v".repeat(MAX_VALUE_BYTES)))
            .collect();
        assert!(validate(&full).is_ok(), "{:?}", validate(&full));
        let mut over = full.clone();
        over.insert("one-more".into(), "v".into());
        let why = validate(&over).unwrap_err();
        assert_eq!(
            why,
            "custom_metadata validation failed: payload must contain at most 64 keys, provided 65"
        );
        let why = validate(&map(&[("", "v")])).unwrap_err();
        assert!(
            why.contains("length of key \"\" is 0 but must be 0 < len(key) <= 128"),
            "{why}"
        );
        let long = "k".repeat(129);
        let why = validate(&map(&[(&long, "v")])).unwrap_err();
        assert!(
            why.contains("is 129 but must be 0 < len(key) <= 128"),
            "{why}"
        );
        // Bytes, not characters: 43 three-byte characters are 129 bytes.
        let wide = "€".repeat(43);
        assert!(validate(&map(&[(&wide, "v")])).is_err());
        assert!(validate(&map(&[(&"€".repeat(42), "v")])).is_ok());
        let secret = format!("S3CRET{}", "x".repeat(507));
        let why = validate(&map(&[("team", &secret)])).unwrap_err();
        assert!(
            why.contains(
                "length of value for key \"team\" is 513 but must be 0 < len(value) <= 512"
            ),
            "{why}"
        );
        assert!(
            !why.contains("S3CRET"),
            "a refusal never shows a value: {why}"
        );
        let why = validate(&map(&[("team", "")])).unwrap_err();
        assert!(
            why.contains("length of value for key \"team\" is 0"),
            "{why}"
        );
        let why = validate(&map(&[("a\tb", "ok"), ("c", "x\u{0}y")])).unwrap_err();
        assert!(
            why.contains("key \"a\\tb\" contains unprintable characters"),
            "{why}"
        );
        assert!(
            why.contains("value for key \"c\" contains unprintable characters"),
            "{why}"
        );
        assert!(validate(&map(&[("owner team", "Zoë 🚀 (prod)")])).is_ok());
        assert!(validate(&map(&[("k", "zero\u{200b}width")])).is_err());
    }

    #[test]
    fn json_shapes_name_the_key() {
        let ok = from_json("custom_metadata", &json!({"a": "1", "b": "2"}), false).unwrap();
        assert_eq!(replacement(ok), map(&[("a", "1"), ("b", "2")]));
        let why = from_json("custom_metadata", &json!({"a": 1, "b": "x"}), false).unwrap_err();
        assert_eq!(
            why,
            "custom_metadata validation failed: value for key \"a\" must be a string, not a number"
        );
        let why = from_json("custom_metadata", &json!({"a": null}), false).unwrap_err();
        assert!(
            why.contains("key \"a\" must be a string, not null"),
            "{why}"
        );
        let why = from_json("customMetadata", &json!(["a"]), false).unwrap_err();
        assert!(why.contains("'customMetadata' must be an object"), "{why}");
        let patch = from_json("custom_metadata", &json!({"a": null, "b": "2"}), true).unwrap();
        assert_eq!(patch.get("a"), Some(&None));
        let why = from_json("custom_metadata", &json!({"a": {"x": 1}}), true).unwrap_err();
        assert!(
            why.contains("(or null to remove it), not an object"),
            "{why}"
        );
    }

    #[test]
    fn merge_sets_and_removes() {
        let current = map(&[("a", "1"), ("b", "2")]);
        let patch: CustomMetadataPatch = [
            ("a".to_string(), None),
            ("c".to_string(), Some("3".to_string())),
            ("gone".to_string(), None),
        ]
        .into_iter()
        .collect();
        assert_eq!(merge(current, &patch), map(&[("b", "2"), ("c", "3")]));
    }
}
