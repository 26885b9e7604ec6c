//! Identifier newtypes: every id that crosses a module boundary has its own type,
//! and the ones that come from clients are validated when they are made.

use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Longest document id accepted, in bytes (ids are ASCII).
pub const MAX_DOC_ID_LEN: usize = 128;
/// Longest client id accepted. Server-made ids are 16 characters; a client may
/// bring its own on resume, but never a long one.
pub const MAX_CLIENT_ID_LEN: usize = 64;

/// An id that a client sent was not of the allowed shape.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{what} must be 1-{max} characters of [A-Za-z0-9._-]")]
pub struct InvalidId {
    what: &'static str,
    max: usize,
}

fn valid_id_chars(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A document id: 1-128 characters of `[A-Za-z0-9._-]`, so that it is safe in a
/// URL path, a file name and a Redis key without escaping.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct DocId(String);

impl DocId {
    /// Validates `s` as a document id.
    ///
    /// # Errors
    ///
    /// [`InvalidId`] when `s` is empty, too long, or has any other character.
    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        if valid_id_chars(s, MAX_DOC_ID_LEN) && s != "." && s != ".." {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidId {
                what: "document id",
                max: MAX_DOC_ID_LEN,
            })
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Read back only as a valid id (from another node's message, say).
impl<'de> Deserialize<'de> for DocId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for DocId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One client session's id, chosen by the server on a fresh join and brought
/// back by the client when it resumes. Dedupe of resent ops is keyed on it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ClientId(String);

impl ClientId {
    /// Validates an id a client sent.
    ///
    /// # Errors
    ///
    /// [`InvalidId`] when `s` is empty, too long, or has any other character.
    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        if valid_id_chars(s, MAX_CLIENT_ID_LEN) {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidId {
                what: "client id",
                max: MAX_CLIENT_ID_LEN,
            })
        }
    }

    /// A new random id (64 bits, hex): collisions within one document are
    /// negligible, and a collision would only merge two clients' dedupe keys.
    pub fn random() -> Self {
        Self(format!("{:016x}", rand::random::<u64>()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A document revision: the number of ops applied since the document was
/// created. The op that makes revision n+1 is based on revision n.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(transparent)]
pub struct Revision(pub u64);

impl Revision {
    /// The revision after this one.
    pub fn next(self) -> Self {
        Self(self.0 + 1)
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A client's own counter for its ops: fixed per op, kept when the op is
/// resent, never reused for other content.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(transparent)]
pub struct Seq(pub u64);

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The epoch of a document's ownership: the store hands out a larger one
/// each time a node takes the document ([`Store::claim`]), and refuses a
/// write that carries an older one, so a node that lost its lease cannot
/// change the document after the next owner took it.
///
/// [`Store::claim`]: crate::store::Store::claim
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(transparent)]
pub struct LeaseEpoch(pub u64);

impl LeaseEpoch {
    /// The epoch of a document nobody has claimed yet: what offline tools
    /// (import, replay into a new document) write new documents with.
    pub const ZERO: Self = Self(0);
}

impl fmt::Display for LeaseEpoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doc_ids() {
        for ok in ["a", "A-b_c.9", &"x".repeat(128)] {
            assert!(DocId::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a/b",
            "a b",
            "é",
            "..",
            ".",
            "a%2F",
            &"x".repeat(129),
            "a\0",
        ] {
            assert!(DocId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn client_ids() {
        assert!(ClientId::parse(ClientId::random().as_str()).is_ok());
        assert!(ClientId::parse(&"c".repeat(65)).is_err());
        assert!(ClientId::parse("a\"b").is_err());
    }
}
