//! The field rules of `/api/v1` request bodies: the [`Body`] trait every request type of
//! [`super::wire`] implements, and the deserializers its fields name in
//! `#[serde(deserialize_with = …)]` for what serde's derive does not check by itself.
//! [`super::body::parse`] runs them and words their refusals.
//!
//! Invariants:
//! - Integers are JSON numbers from 0 to [`MAX_INT`], written `3` or `3.0`: JSON has one
//!   number type, and JSON Schema (so the OpenAPI document) counts `3.0` as the integer 3.
//! - An optional field is absent or holds a value, never `null`, as the document says
//!   (`nullable: false`); the few that document `null` as "none" say so ([`null_or_int`]).
//! - A refusal here starts with "must", so that [`super::body::parse`] can put
//!   `field 'name' ` before it.
//! - This module is a leaf: it imports nothing of the API, so the wire types can use it
//!   without an import cycle.

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// A request body: a wire type that the handlers parse with [`super::body::parse`].
pub trait Body: DeserializeOwned {
    /// What the body should have been, for the 400 when it is empty or not an object.
    const EXPECTED: &'static str = "a JSON object";

    /// The error `type` of a refusal of the top-level field `field` (or of one inside it).
    fn kind(_field: &str) -> &'static str {
        "invalidField"
    }
}

/// The largest integer the API accepts anywhere: 2^63 - 1, the `int64` of the OpenAPI
/// document. (Larger ones were accepted where the document promised a refusal.)
pub const MAX_INT: u64 = i64::MAX as u64;

/// A JSON integer from 0 to [`MAX_INT`], written as `3` or `3.0`: JSON has one number type,
/// and JSON Schema (so the OpenAPI document) counts `3.0` as the integer 3.
pub fn json_int(v: &serde_json::Value) -> Option<u64> {
    if let Some(n) = v.as_u64() {
        return (n <= MAX_INT).then_some(n);
    }
    // Beyond 2^53 a float is not an exact integer any more: refused.
    let f = v.as_f64()?;
    (f.fract() == 0.0 && (0.0..=9_007_199_254_740_992.0).contains(&f)).then_some(f as u64)
}

/// An integer from `MIN` to `MAX` (at most 2^63 - 1), written `3` or `3.0`.
pub fn int<'de, D: Deserializer<'de>, const MIN: u64, const MAX: u64>(
    d: D,
) -> Result<u64, D::Error> {
    let max = MAX.min(MAX_INT);
    match json_int(&Value::deserialize(d)?) {
        Some(n) if (MIN..=max).contains(&n) => Ok(n),
        _ if max == MAX_INT => Err(D::Error::custom(format!("must be an integer >= {MIN}"))),
        _ => Err(D::Error::custom(format!(
            "must be an integer from {MIN} to {max}"
        ))),
    }
}

/// [`int`] for a field that is optional (with `#[serde(default)]`): present means a value.
pub fn some_int<'de, D: Deserializer<'de>, const MIN: u64, const MAX: u64>(
    d: D,
) -> Result<Option<u64>, D::Error> {
    int::<D, MIN, MAX>(d).map(Some)
}

/// [`int`] for an optional field (with `#[serde(default)]`) where `null` means absent.
pub fn null_or_int<'de, D: Deserializer<'de>, const MIN: u64, const MAX: u64>(
    d: D,
) -> Result<Option<u64>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None => Ok(None),
        Some(v) => int::<Value, MIN, MAX>(v)
            .map(Some)
            .map_err(D::Error::custom),
    }
}

/// A key version from `MIN` up, for an optional field (with `#[serde(default)]`).
pub fn some_key_version<'de, D: Deserializer<'de>, const MIN: u64>(
    d: D,
) -> Result<Option<u32>, D::Error> {
    let n = int::<D, MIN, { u32::MAX as u64 }>(d)?;
    Ok(Some(n as u32))
}

/// A key version from `MIN` up.
pub fn key_version<'de, D: Deserializer<'de>, const MIN: u64>(d: D) -> Result<u32, D::Error> {
    let n = int::<D, MIN, { u32::MAX as u64 }>(d)?;
    Ok(n as u32)
}

/// An optional field (with `#[serde(default)]`) whose value, when present, must be a `T`:
/// `null` is refused, as the document says (`nullable: false`).
pub fn some<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// An optional object field (with `#[serde(default)]`) parsed as the struct `T`. Only a
/// JSON object is taken: serde's derived structs also accept an array, by position, which
/// would read `"options": [3]` as `cas` 3. The fields inside keep their paths (the map is
/// handed on as it is), so a refusal in there still names `options.cas`.
pub fn some_map<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    struct Map<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Map<T> {
        type Value = T;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
        }
    }
    d.deserialize_map(Map(std::marker::PhantomData)).map(Some)
}

/// A JSON object, kept as it is.
pub fn object<'de, D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
    match Value::deserialize(d)? {
        v @ Value::Object(_) => Ok(v),
        _ => Err(D::Error::custom("must be a JSON object")),
    }
}

/// The versions an undelete or a destroy names: 1 to `MAX` integers >= 1.
pub fn version_list<'de, D: Deserializer<'de>, const MAX: usize>(
    d: D,
) -> Result<Vec<u64>, D::Error> {
    let refuse = || {
        D::Error::custom(format!(
            "must be a non-empty array of at most {MAX} integers >= 1"
        ))
    };
    match Value::deserialize(d)? {
        Value::Array(a) if !a.is_empty() && a.len() <= MAX => a
            .iter()
            .map(|v| json_int(v).filter(|n| *n >= 1).ok_or_else(refuse))
            .collect(),
        _ => Err(refuse()),
    }
}
