//! Request bodies of the `/api/v1` dialect, parsed once, by serde, into their wire types
//! ([`super::wire`]). The types the OpenAPI document describes are the types the handlers
//! read, so what is documented and what is accepted cannot drift apart.
//!
//! Invariants:
//! - A body is one JSON object. Empty, or anything else, is a 400 saying what was expected
//!   ([`Body::EXPECTED`]); text that is not JSON is a 400 saying so.
//! - Nothing is ignored: an unknown field, at any depth, is a 400 `unknownField` naming it,
//!   with its JSON pointer and the fields allowed there; a field given twice is a 400 too.
//! - A refused field's 400 names it (`field 'options.cas' …`), carries its JSON pointer in
//!   `validation`, and has the `type` the wire type gives that field ([`Body::kind`]).
//! - The rules of single fields (integers written `3` or `3.0`, no `null` where the document
//!   says not nullable) are [`super::fields`]' deserializers, which the wire types name.
//!
//! Why serde_path_to_error: it reports the path of the field serde refused, which becomes
//! the refusal's JSON pointer. Without it, a derive-based parser can only say *what* was
//! wrong, not *where*, and every body had its own hand-written validator instead.

use serde::de::IgnoredAny;
use serde_path_to_error::Segment;

use super::error::ApiError;
use super::fields::Body;
use super::input::{dotted, pointer, unknown_field};

/// Parses `bytes` as the body `T` (see the module's invariants for the refusals).
pub fn parse<T: Body>(bytes: &[u8]) -> Result<T, ApiError> {
    match bytes.trim_ascii_start().first() {
        Some(b'{') => {}
        None => {
            return Err(ApiError::bad_request(format!(
                "request body is empty; expected {}",
                T::EXPECTED
            )))
        }
        // Checked here because serde's derived structs also accept a JSON array, by position.
        Some(_) => {
            return Err(match serde_json::from_slice::<IgnoredAny>(bytes) {
                Ok(_) => ApiError::bad_request(format!("request body must be {}", T::EXPECTED)),
                Err(e) => not_json(&e),
            })
        }
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let body = serde_path_to_error::deserialize(&mut de).map_err(refused::<T>)?;
    de.end().map_err(|e| not_json(&e))?;
    Ok(body)
}

fn not_json(e: &serde_json::Error) -> ApiError {
    ApiError::bad_request(format!("request body is not valid JSON: {e}"))
}

/// The 400 for what serde refused, at the path it names.
fn refused<T: Body>(e: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let inner = e.inner();
    if !inner.is_data() {
        return not_json(inner);
    }
    // serde_json appends where in the text it stopped; the pointer says it better.
    let full = inner.to_string();
    let position = format!(" at line {} column {}", inner.line(), inner.column());
    let message = full.strip_suffix(&position).unwrap_or(&full);
    let mut path: Vec<String> = e
        .path()
        .iter()
        .map(|s| match s {
            Segment::Seq { index } => index.to_string(),
            Segment::Map { key } => key.chars().take(64).collect(),
            Segment::Enum { variant } => variant.clone(),
            Segment::Unknown => "?".to_string(),
        })
        .collect();
    // serde's own wording of these three (serde::de::Error's defaults), pinned by the tests.
    if let Some(name) = quoted_after(message, "missing field ") {
        path.push(name);
        return field_error::<T>(&path, "is required");
    }
    if let Some(name) = quoted_after(message, "duplicate field ") {
        path.push(name);
        return field_error::<T>(&path, "is given more than once");
    }
    if message.starts_with("unknown field ") {
        // The path ends with the unknown name; serde lists the allowed ones after it, each
        // quoted ("expected `a` or `b`", "expected one of `a`, `b`, `c`").
        let allowed: Vec<&str> = match message.rfind(", expected ") {
            Some(i) => message[i..].split('`').skip(1).step_by(2).collect(),
            None => Vec::new(),
        };
        return unknown_field(&path, &allowed);
    }
    field_error::<T>(&path, message)
}

/// The first backquoted name after `prefix` in `message`.
fn quoted_after(message: &str, prefix: &str) -> Option<String> {
    let rest = message.strip_prefix(prefix)?.strip_prefix('`')?;
    Some(rest.split('`').next()?.chars().take(64).collect())
}

/// The 400 for the field at `path`: `field 'a.b' must …` for this module's own rules, and
/// `field 'a.b': …` before serde's wording.
fn field_error<T: Body>(path: &[String], message: &str) -> ApiError {
    let name = dotted(path);
    let detail = if message.starts_with("must ") || message.starts_with("is ") {
        format!("field '{name}' {message}")
    } else {
        format!("field '{name}': {message}")
    };
    let top = path.first().map_or("", String::as_str);
    ApiError::invalid_field(T::kind(top), &pointer(path), detail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::wire::{CreateMount, CreateToken, MountConfig, PutSecret, VersionList};

    /// (type, pointer, detail) of a refusal.
    fn refusal<T: Body>(body: &str) -> (String, String, String) {
        let Err(e) = parse::<T>(body.as_bytes()) else {
            panic!("{body}: accepted")
        };
        let ApiError::BadRequest {
            kind,
            detail,
            pointer,
        } = e
        else {
            panic!("{body}: not a 400: {e}")
        };
        let pointer = pointer.unwrap_or_else(|| "-".into());
        if pointer.starts_with('/') {
            assert!(!detail.contains(" at line "), "{body}: {detail}");
        }
        (kind.unwrap_or("-").to_string(), pointer, detail)
    }

    /// Each refusal of `T`: the body, then its type, pointer and a fragment of its detail.
    fn check<T: Body>(cases: &[(&str, (&str, &str, &str))]) {
        for (body, (kind, pointer, fragment)) in cases {
            let (k, p, detail) = refusal::<T>(body);
            assert_eq!(
                (k.as_str(), p.as_str()),
                (*kind, *pointer),
                "{body}: {detail}"
            );
            assert!(detail.contains(fragment), "{body}: {detail}");
        }
    }

    #[test]
    fn accepts_what_the_types_describe() {
        let s: PutSecret =
            parse(br#" {"data":{"a":[1]},"options":{"cas":3.0,"keyVersion":2}}"#).unwrap();
        assert_eq!(s.data["a"][0], 1);
        let o = s.options.unwrap();
        assert_eq!((o.cas, o.key_version), (Some(3), Some(2)));
        let s: PutSecret = parse(br#"{"data":{}}"#).unwrap();
        assert!(s.options.is_none());
        let v: VersionList = parse(br#"{"versions":[1,2.0]}"#).unwrap();
        assert_eq!(v.versions, vec![1, 2]);
        let t: CreateToken =
            parse(br#"{"name":"n","scopes":["admin"],"paths":["*"],"ttlSeconds":null}"#).unwrap();
        assert_eq!(t.ttl_seconds, None);
        let c: MountConfig = parse(br#"{"minEncryptionVersion":0}"#).unwrap();
        assert_eq!(
            (c.min_decryption_version, c.min_encryption_version),
            (None, Some(0))
        );
    }

    #[test]
    fn every_refusal_names_its_field_and_pointer() {
        check::<PutSecret>(&[
            (
                "",
                (
                    "-",
                    "-",
                    "request body is empty; expected a JSON object with a \"data\" object",
                ),
            ),
            ("[1]", ("-", "-", "request body must be a JSON object with")),
            (
                "null",
                ("-", "-", "request body must be a JSON object with"),
            ),
            ("nope", ("-", "-", "request body is not valid JSON")),
            (
                r#"{"data":{}} x"#,
                ("-", "-", "request body is not valid JSON"),
            ),
            (
                r#"{"data":{}"#,
                ("-", "-", "request body is not valid JSON"),
            ),
            ("{}", ("invalidData", "/data", "field 'data' is required")),
            (
                r#"{"data":1}"#,
                ("invalidData", "/data", "field 'data' must be a JSON object"),
            ),
            (
                r#"{"data":{},"data":{}}"#,
                (
                    "invalidData",
                    "/data",
                    "field 'data' is given more than once",
                ),
            ),
            (
                r#"{"data":{},"x":1}"#,
                (
                    "unknownField",
                    "/x",
                    "unknown field 'x' (allowed: data, options)",
                ),
            ),
            (
                r#"{"data":{},"options":{"ttl":1}}"#,
                (
                    "unknownField",
                    "/options/ttl",
                    "unknown field 'options.ttl' (allowed: cas, keyVersion)",
                ),
            ),
            (
                r#"{"data":{},"options":{"a/b":1}}"#,
                ("unknownField", "/options/a~1b", "'options.a/b'"),
            ),
            (
                r#"{"data":{},"options":null}"#,
                (
                    "invalidOptions",
                    "/options",
                    "field 'options': invalid type: null",
                ),
            ),
            (
                r#"{"data":{},"options":[]}"#,
                (
                    "invalidOptions",
                    "/options",
                    "field 'options': invalid type",
                ),
            ),
            (
                r#"{"data":{},"options":{"cas":-1}}"#,
                (
                    "invalidOptions",
                    "/options/cas",
                    "field 'options.cas' must be an integer >= 0",
                ),
            ),
            (
                r#"{"data":{},"options":{"cas":null}}"#,
                (
                    "invalidOptions",
                    "/options/cas",
                    "field 'options.cas' must be an integer >= 0",
                ),
            ),
            (
                r#"{"data":{},"options":{"cas":1.5}}"#,
                ("invalidOptions", "/options/cas", "must be an integer"),
            ),
            (
                r#"{"data":{},"options":{"cas":9223372036854775808}}"#,
                ("invalidOptions", "/options/cas", "must be an integer >= 0"),
            ),
            (
                r#"{"data":{},"options":{"keyVersion":4294967296}}"#,
                (
                    "invalidOptions",
                    "/options/keyVersion",
                    "field 'options.keyVersion' must be an integer from 1 to 4294967295",
                ),
            ),
        ]);
        check::<VersionList>(&[
            (
                r#"{"versions":[]}"#,
                (
                    "invalidField",
                    "/versions",
                    "field 'versions' must be a non-empty array of at most 1000 integers >= 1",
                ),
            ),
            (
                r#"{"versions":[0]}"#,
                ("invalidField", "/versions", "integers >= 1"),
            ),
            (
                r#"{"versions":"1"}"#,
                ("invalidField", "/versions", "non-empty array"),
            ),
            (
                r#"{}"#,
                ("invalidField", "/versions", "field 'versions' is required"),
            ),
        ]);
        check::<CreateMount>(&[
            (
                r#"{"path":7,"type":"ondemand"}"#,
                (
                    "invalidField",
                    "/path",
                    "field 'path': invalid type: integer `7`, expected a string",
                ),
            ),
            (
                r#"{"path":"x","type":"kv"}"#,
                ("invalidField", "/type", "expected `ondemand`"),
            ),
        ]);
        check::<CreateToken>(&[
            (
                r#"{"name":"n","scopes":[],"paths":[],"ttlSeconds":0}"#,
                (
                    "invalidToken",
                    "/ttlSeconds",
                    "field 'ttlSeconds' must be an integer from 1 to 3155760000",
                ),
            ),
            (
                r#"{"name":"n","scopes":[1],"paths":[]}"#,
                (
                    "invalidToken",
                    "/scopes/0",
                    "field 'scopes[0]': invalid type",
                ),
            ),
        ]);
        check::<MountConfig>(&[(
            r#"{"minDecryptionVersion":0}"#,
            (
                "invalidField",
                "/minDecryptionVersion",
                "must be an integer from 1 to 4294967295",
            ),
        )]);
    }
}
