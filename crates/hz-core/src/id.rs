//! Content addressing: every gym, version and artifact is named by the SHA-256 of its
//! canonical JSON (RFC 8785, JSON Canonicalization Scheme).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

/// Errors from building or parsing content ids.
#[derive(Debug, thiserror::Error)]
pub enum IdError {
    #[error("value cannot be canonicalised as JSON: {0}")]
    Canonical(String),
    #[error("content id must be 64 lowercase hex characters (SHA-256), got {0:?}")]
    BadHex(String),
}

/// A SHA-256 digest naming a piece of content.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentId([u8; 32]);

impl ContentId {
    /// Hash raw bytes.
    pub fn of_bytes(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// Hash the canonical JSON form of a serialisable value.
    pub fn of_json<T: Serialize + ?Sized>(value: &T) -> Result<Self, IdError> {
        Ok(Self::of_bytes(canonical_json(value)?.as_bytes()))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first 12 hex characters, for display.
    pub fn short(&self) -> String {
        self.to_hex()[..12].to_string()
    }
}

impl fmt::Display for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentId({})", self.to_hex())
    }
}

impl FromStr for ContentId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.strip_prefix("sha256:").unwrap_or(s);
        if s.len() != 64 || s.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(IdError::BadHex(s.to_string()));
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| IdError::BadHex(s.to_string()))?;
        Ok(Self(out))
    }
}

impl Serialize for ContentId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for ContentId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The RFC 8785 canonical JSON text of a value: sorted keys, no insignificant whitespace,
/// ECMAScript number formatting. Two values that are equal as JSON give the same text.
pub fn canonical_json<T: Serialize + ?Sized>(value: &T) -> Result<String, IdError> {
    serde_jcs::to_string(value).map_err(|e| IdError::Canonical(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_order_and_whitespace_do_not_change_the_id() {
        let a: serde_json::Value = serde_json::from_str(r#"{"b": 1, "a": [1, 2.0, "x"]}"#).unwrap();
        let b: serde_json::Value = serde_json::from_str(r#"{"a":[1,2,"x"],"b":1}"#).unwrap();
        assert_eq!(ContentId::of_json(&a).unwrap(), ContentId::of_json(&b).unwrap());
        assert_eq!(canonical_json(&a).unwrap(), r#"{"a":[1,2,"x"],"b":1}"#);
    }

    #[test]
    fn different_content_gives_different_ids() {
        let a = ContentId::of_json(&json!({"a": 1})).unwrap();
        let b = ContentId::of_json(&json!({"a": 2})).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn known_sha256_vector() {
        // SHA-256("abc") from FIPS 180-2.
        assert_eq!(
            ContentId::of_bytes(b"abc").to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn parse_round_trip_and_rejects_garbage() {
        let id = ContentId::of_bytes(b"x");
        assert_eq!(id.to_hex().parse::<ContentId>().unwrap(), id);
        assert_eq!(format!("sha256:{id}").parse::<ContentId>().unwrap(), id);
        assert!("abc".parse::<ContentId>().is_err());
        assert!(id.to_hex().to_uppercase().parse::<ContentId>().is_err());
    }

    proptest::proptest! {
        #[test]
        fn canonical_json_is_stable_under_reparse(s in "\\PC{0,40}", n in proptest::num::i64::ANY) {
            let v = json!({"s": s, "n": n, "list": [n, s]});
            let text = canonical_json(&v).unwrap();
            let back: serde_json::Value = serde_json::from_str(&text).unwrap();
            proptest::prop_assert_eq!(canonical_json(&back).unwrap(), text);
        }
    }
}
