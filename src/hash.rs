//! Content hashes: the keys under which every stage stores what it produced.
//!
//! A [`ContentHash`] is BLAKE3 over the exact bytes of a text (or of several length-prefixed parts),
//! so the same text always gets the same key and an edited text a new one.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A 256-bit BLAKE3 hash of some content.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentHash(pub [u8; 32]);

impl ContentHash {
    /// Hash one text.
    pub fn of(text: &str) -> Self {
        ContentHash(*blake3::hash(text.as_bytes()).as_bytes())
    }

    /// Hash several parts; each is length-prefixed so that ("ab","c") and ("a","bc") differ.
    pub fn of_parts(parts: &[&[u8]]) -> Self {
        let mut h = blake3::Hasher::new();
        for p in parts {
            h.update(&(p.len() as u64).to_le_bytes());
            h.update(p);
        }
        ContentHash(*h.finalize().as_bytes())
    }

    /// Full lowercase hex.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first 16 hex digits, for derived ids.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..8])
    }

    /// A stable 64-bit value (the first 8 bytes), for seeding.
    pub fn as_u64(&self) -> u64 {
        u64::from_le_bytes(self.0[..8].try_into().expect("8 bytes"))
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentHash({})", self.short())
    }
}

impl Serialize for ContentHash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.hex())
    }
}

impl<'de> Deserialize<'de> for ContentHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(&s, &mut out).map_err(|e| serde::de::Error::custom(format!("content hash {s:?}: {e}")))?;
        Ok(ContentHash(out))
    }
}

/// SHA-256 of a file, hex; used to verify fetched artifacts and to identify models.
pub fn sha256_file(path: &std::path::Path) -> std::io::Result<String> {
    use sha2::Digest;
    let mut f = std::fs::File::open(path)?;
    let mut h = sha2::Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(hex::encode(h.finalize()))
}

/// Normalised form used for "same text" checks.
pub fn text_key(text: &str, normalize: bool) -> ContentHash {
    if normalize {
        let folded: String = text.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase();
        ContentHash::of(&folded)
    } else {
        ContentHash::of(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_unambiguous() {
        assert_ne!(ContentHash::of_parts(&[b"ab", b"c"]), ContentHash::of_parts(&[b"a", b"bc"]));
        assert_eq!(ContentHash::of("x"), ContentHash::of("x"));
        assert_eq!(ContentHash::of("x").short().len(), 16);
    }
}
