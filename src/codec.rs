//! The one binary encoding used on disk and between nodes: a format byte, then bincode
//! (1.3, varint integers, trailing bytes rejected, a size limit on decode).
//!
//! Keeping it in one module means a later move away from bincode touches one file, and the
//! format byte lets a future layout be told apart from this one.

use bincode::Options;
use serde::{de::DeserializeOwned, Serialize};

/// Bumped when a stored or wire type changes incompatibly.
const FORMAT: u8 = 1;

/// Upper bound for any single decoded value (a log entry, an RPC body, a snapshot).
pub const MAX_DECODE_BYTES: u64 = 1 << 30;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("empty buffer")]
    Empty,
    #[error("unknown format byte {0} (expected {FORMAT})")]
    Format(u8),
    #[error("bincode: {0}")]
    Bincode(#[from] bincode::Error),
}

fn options() -> impl Options {
    bincode::DefaultOptions::new().with_limit(MAX_DECODE_BYTES)
}

pub fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = vec![FORMAT];
    // Serializing our own in-memory types into a Vec cannot fail except past the size limit,
    // which no value we build reaches (bodies are capped far below it at the API).
    options()
        .serialize_into(&mut out, value)
        .expect("bincode serialization of an in-memory value into a Vec");
    out
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    match bytes.first() {
        None => Err(CodecError::Empty),
        Some(&FORMAT) => Ok(options().deserialize(&bytes[1..])?),
        Some(&other) => Err(CodecError::Format(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let v = (7u64, String::from("x"), vec![1u8, 2, 3]);
        let bytes = encode(&v);
        assert_eq!(decode::<(u64, String, Vec<u8>)>(&bytes).unwrap(), v);
        assert!(matches!(decode::<u64>(&[]), Err(CodecError::Empty)));
        assert!(matches!(decode::<u64>(&[9, 1]), Err(CodecError::Format(9))));
        let mut trailing = encode(&5u64);
        trailing.push(0);
        assert!(decode::<u64>(&trailing).is_err());
    }
}
