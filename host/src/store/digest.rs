//! Canonical example JSON and the per-version content digest.
//!
//! The digest of a version is the sum, modulo 2^256, of
//! `sha256(id ‖ 0x00 ‖ canonical JSON without the id)` over the version's
//! examples. A sum, unlike a hash of the whole export, can be updated by
//! subtracting an example's old hash and adding its new one, so a commit costs
//! O(change) however large the dataset is; and, unlike XOR, it does not cancel
//! out when the same hash appears twice. It identifies content, it is not a
//! signature.

use crate::model::Example;
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

pub(super) const CONTENT_HASH_BYTES: usize = 32;

/// `sha256(id ‖ 0x00 ‖ body)` of one example.
pub(super) type ContentHash = [u8; CONTENT_HASH_BYTES];

/// The running digest of a version's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Digest([u8; CONTENT_HASH_BYTES]);

impl Digest {
    /// Adds one example's hash (big-endian addition with wrap-around).
    pub(super) fn add(&mut self, hash: &ContentHash) {
        let mut carry = 0u16;
        for (sum, byte) in self.0.iter_mut().zip(hash).rev() {
            let total = u16::from(*sum) + u16::from(*byte) + carry;
            *sum = total as u8;
            carry = total >> 8;
        }
    }

    /// Removes one example's hash; the inverse of [`Digest::add`].
    pub(super) fn subtract(&mut self, hash: &ContentHash) {
        let mut borrow = 0i16;
        for (difference, byte) in self.0.iter_mut().zip(hash).rev() {
            let mut total = i16::from(*difference) - i16::from(*byte) - borrow;
            borrow = 0;
            if total < 0 {
                total += 256;
                borrow = 1;
            }
            *difference = total as u8;
        }
    }

    pub(super) fn to_hex(self) -> String {
        hex::encode(self.0)
    }

    /// Reads a digest written by [`Digest::to_hex`]; `None` if it is malformed.
    pub(super) fn from_hex(text: &str) -> Option<Digest> {
        let bytes = hex::decode(text).ok()?;
        Some(Digest(bytes.try_into().ok()?))
    }
}

/// The hash an example contributes to its version's digest.
pub(super) fn content_hash(id: &str, body: &[u8]) -> ContentHash {
    let mut hasher = Sha256::new();
    hasher.update(id.as_bytes());
    hasher.update([0u8]);
    hasher.update(body);
    hasher.finalize().into()
}

/// The canonical JSON of an example without its id: object keys sorted at
/// every depth, no whitespace. This is what is stored and hashed, so two
/// spellings of the same example (key order, `arguments` vs `args`) store
/// and hash alike.
pub(super) fn canonical_body(example: &Example) -> Result<Vec<u8>, serde_json::Error> {
    let mut value = serde_json::to_value(example)?;
    if let Value::Object(object) = &mut value {
        object.remove("id");
    }
    serde_json::to_vec(&sorted(value))
}

/// One export line: the stored body with its id put back, keys sorted.
pub(super) fn canonical_line(id: &str, body: &[u8]) -> Result<String, serde_json::Error> {
    let mut value: Value = serde_json::from_slice(body)?;
    if let Value::Object(object) = &mut value {
        object.insert("id".into(), Value::String(id.into()));
    }
    serde_json::to_string(&sorted(value))
}

/// Sorts object keys recursively. serde_json's map is already sorted unless
/// some crate in the build turns on its `preserve_order` feature; sorting
/// here keeps digests stable whatever the feature set.
pub(super) fn sorted(value: Value) -> Value {
    match value {
        Value::Object(object) => {
            let mut entries: Vec<(String, Value)> = object.into_iter().collect();
            entries.sort_by(|left, right| left.0.cmp(&right.0));
            Value::Object(entries.into_iter().map(|(key, value)| (key, sorted(value))).collect::<Map<_, _>>())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_is_order_independent_and_subtract_inverts_add() {
        let hashes: Vec<ContentHash> = (0..5).map(|index| content_hash(&format!("id-{index}"), b"{}")).collect();
        let mut forward = Digest::default();
        hashes.iter().for_each(|hash| forward.add(hash));
        let mut backward = Digest::default();
        hashes.iter().rev().for_each(|hash| backward.add(hash));
        assert_eq!(forward, backward);
        hashes.iter().for_each(|hash| forward.subtract(hash));
        assert_eq!(forward, Digest::default());
        // Two equal hashes do not cancel out (they would under XOR).
        let mut twice = Digest::default();
        twice.add(&hashes[0]);
        twice.add(&hashes[0]);
        assert_ne!(twice, Digest::default());
    }

    #[test]
    fn digest_wraps_around() {
        let mut digest = Digest([0xff; CONTENT_HASH_BYTES]);
        let mut one = [0u8; CONTENT_HASH_BYTES];
        one[CONTENT_HASH_BYTES - 1] = 1;
        digest.add(&one);
        assert_eq!(digest, Digest::default());
        digest.subtract(&one);
        assert_eq!(digest, Digest([0xff; CONTENT_HASH_BYTES]));
        assert_eq!(Digest::from_hex(&digest.to_hex()), Some(digest));
        assert_eq!(Digest::from_hex("zz"), None);
        assert_eq!(Digest::from_hex("abcd"), None);
    }

    #[test]
    fn canonical_body_ignores_spelling() {
        let one = Example::from_json(
            r#"{"id": "a", "metadata": {"b": 1, "a": 2},
                "inputs": {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}],
                           "tool_calls": [{"name": "t", "arguments": "{\"y\": 1, \"x\": 2}"}]}]}}"#,
        )
        .expect("valid");
        let other = Example::from_json(
            r#"{"inputs": {"messages": [{"content": "hi", "role": "user", "tool_calls": [{"args": {"x": 2, "y": 1}, "name": "t"}]}]},
                "metadata": {"a": 2, "b": 1}}"#,
        )
        .expect("valid");
        let body = canonical_body(&one).expect("encodes");
        assert_eq!(body, canonical_body(&other).expect("encodes"));
        let text = String::from_utf8(body.clone()).expect("utf-8");
        assert!(text.starts_with(r#"{"inputs":"#) && !text.contains("\"id\""), "{text}");
        let line = canonical_line("a", &body).expect("encodes");
        assert!(line.starts_with(r#"{"id":"a","inputs":"#), "{line}");
        let reparsed = Example::from_json(&line).expect("an export line is a valid example");
        assert_eq!(canonical_body(&reparsed).expect("encodes"), body);
    }
}
