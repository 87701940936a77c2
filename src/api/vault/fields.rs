//! The fields of Vault request bodies as both of Vault's clients send them: JSON values from
//! hvac and the HTTP API, strings from the CLI (`bao write path k=v` sends every value as a
//! string, and lists as comma-separated strings).
//!
//! Invariant: a field of the wrong type is a 400 naming the field; absent and `null` are the
//! same (`None`).

use axum::http::StatusCode;
use serde_json::{Map, Value};

use super::VaultError;
use crate::api::fields::json_int;
use crate::api::input::json_object;

/// The fields of `sys/mounts/{path}` and `sys/auth/{path}` bodies (`bao secrets enable`,
/// `bao auth enable`).
pub(super) const ENABLE_FIELDS: [&str; 9] = [
    "type",
    "description",
    "config",
    "local",
    "seal_wrap",
    "external_entropy_access",
    "options",
    "plugin_name",
    "plugin_version",
];

pub(super) fn bad(message: impl Into<String>) -> VaultError {
    VaultError::new(StatusCode::BAD_REQUEST, message)
}

/// A body as a JSON object with only `allowed` fields; an empty body or `null` is `{}`
/// (what `bao write -f` sends).
pub(super) fn object(bytes: &[u8], allowed: &[&str]) -> Result<Map<String, Value>, VaultError> {
    let trimmed = bytes.trim_ascii();
    if trimmed.is_empty() || trimmed == b"null" {
        return Ok(Map::new());
    }
    Ok(json_object(bytes, allowed, "a JSON object")?)
}

/// An integer field: a JSON number, or a numeric string (the CLI sends `k=v` as strings).
pub(super) fn int(body: &Map<String, Value>, name: &str) -> Result<Option<u64>, VaultError> {
    let value = match body.get(name) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
        Some(v) => json_int(v),
    };
    value
        .map(Some)
        .ok_or_else(|| bad(format!("field '{name}' must be a non-negative integer")))
}

/// A key version field: an integer that fits a key version.
pub(super) fn version(body: &Map<String, Value>, name: &str) -> Result<Option<u32>, VaultError> {
    int(body, name)?
        .map(|v| u32::try_from(v).map_err(|_| bad(format!("field '{name}' is not a key version"))))
        .transpose()
}

/// A boolean field: `true`/`false`, or the strings the CLI sends.
pub(super) fn boolean(body: &Map<String, Value>, name: &str) -> Result<Option<bool>, VaultError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) if s == "true" || s == "1" => Ok(Some(true)),
        Some(Value::String(s)) if s == "false" || s == "0" => Ok(Some(false)),
        Some(_) => Err(bad(format!("field '{name}' must be true or false"))),
    }
}

/// A string field.
pub(super) fn string<'a>(
    body: &'a Map<String, Value>,
    name: &str,
) -> Result<Option<&'a str>, VaultError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(bad(format!("field '{name}' must be a string"))),
    }
}

/// A list of strings: a JSON array of strings, or a comma-separated string (the CLI's form).
pub(super) fn strings(
    body: &Map<String, Value>,
    name: &str,
) -> Result<Option<Vec<String>>, VaultError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(
            s.split(',')
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .map(String::from)
                .collect(),
        )),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.trim().to_string()),
                _ => Err(bad(format!("field '{name}' must be a list of strings"))),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(bad(format!("field '{name}' must be a list of strings"))),
    }
}

/// A duration in seconds: an integer, or Vault's duration string (`90s`, `15m`, `1h`, `2h30m`).
pub(super) fn seconds(body: &Map<String, Value>, name: &str) -> Result<Option<u64>, VaultError> {
    let bad_duration = || {
        bad(format!(
            "field '{name}' must be a duration: seconds, or a number with a unit (s, m, h, d), e.g. 90s, 15m, 1h"
        ))
    };
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => parse_duration(s.trim()).map(Some).ok_or_else(bad_duration),
        Some(v) => json_int(v).map(Some).ok_or_else(bad_duration),
    }
}

/// `"3600"`, `"90s"`, `"15m"`, `"1h"`, `"2h30m"`, `"1d"` as seconds.
fn parse_duration(s: &str) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    if let Ok(n) = s.parse::<u64>() {
        return Some(n);
    }
    let mut total: u64 = 0;
    let mut number = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return None,
        };
        let n: u64 = number.parse().ok()?;
        total = total.checked_add(n.checked_mul(unit)?)?;
        number.clear();
    }
    number.is_empty().then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn durations_as_vault_writes_them() {
        assert_eq!(parse_duration("3600"), Some(3600));
        assert_eq!(parse_duration("90s"), Some(90));
        assert_eq!(parse_duration("15m"), Some(900));
        assert_eq!(parse_duration("2h30m"), Some(9000));
        assert_eq!(parse_duration("1d"), Some(86_400));
        assert_eq!(parse_duration("1h5"), None);
        assert_eq!(parse_duration("1w"), None);
        assert_eq!(parse_duration(""), None);
    }

    #[test]
    fn lists_from_json_or_the_cli() {
        let body = json!({"a": "x, y,,z", "b": ["p", "q"], "c": [1]});
        let body = body.as_object().unwrap();
        assert_eq!(
            strings(body, "a").unwrap(),
            Some(vec!["x".into(), "y".into(), "z".into()])
        );
        assert_eq!(
            strings(body, "b").unwrap(),
            Some(vec!["p".into(), "q".into()])
        );
        assert!(strings(body, "c").is_err());
        assert_eq!(strings(body, "d").unwrap(), None);
    }
}
