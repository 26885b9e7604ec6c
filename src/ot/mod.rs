//! The OT core: the text operation type, parsed from untrusted JSON, applied
//! to a rope, transformed against concurrent operations, and the selections
//! that move with them. Pure: no network, no storage, no clock.
//!
//! Operations are the ot.js TextOperation JSON array counted in characters
//! (Unicode scalar values):
//!
//! ```text
//! [5, "abc", -3, 2]   retain 5, insert "abc", delete 3, retain 2
//! ```
//!
//! The `operational-transform` crate (=0.6.1) does transform and compose
//! behind [`TextOp`], but only on ops this module has validated: its sums are
//! unchecked and its `apply` rebuilds a `String` per op, so parsing and
//! applying are ours.

mod apply;
mod parse;
mod selection;

pub use parse::{OpLimits, RawOp};
pub use selection::{Range, Selection};

use operational_transform::{Operation, OperationSeq};
use serde::Serialize;
use thiserror::Error;

/// Why an operation was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum OtError {
    /// A component is not a non-zero integer or a string.
    #[error("op component {index} is not a non-zero integer or a string")]
    BadComponent {
        /// Position of the component in the op.
        index: usize,
    },
    /// The op has more components than allowed.
    #[error("op has more than {max} components")]
    TooManyComponents {
        /// The limit.
        max: usize,
    },
    /// The op inserts more characters than allowed.
    #[error("op inserts more than {max} characters")]
    InsertTooLarge {
        /// The limit.
        max: usize,
    },
    /// The op spans more characters than any document may hold.
    #[error("op spans more than {max} characters")]
    SpanTooLarge {
        /// The limit.
        max: usize,
    },
    /// The op does not span the document it is applied to.
    #[error("op spans {op_len} characters but the document has {doc_len}")]
    LengthMismatch {
        /// Characters the op retains and deletes.
        op_len: usize,
        /// Characters in the document.
        doc_len: usize,
    },
    /// Applying the op would make the document larger than allowed.
    #[error("the document would exceed {max} characters")]
    DocumentTooLarge {
        /// The limit.
        max: usize,
    },
}

/// A validated text operation.
///
/// # Invariants
///
/// Every count is non-zero and the base and target lengths are at most
/// [`OpLimits::max_document_chars`], so no sum over its components can
/// overflow, and the crate's transform and compose are safe to call on it.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(transparent)]
pub struct TextOp(OperationSeq);

/// One component of a [`TextOp`], borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component<'a> {
    /// Keep this many characters.
    Retain(usize),
    /// Insert this text.
    Insert(&'a str),
    /// Delete this many characters.
    Delete(usize),
}

impl TextOp {
    /// An op that keeps all `len` characters: the identity.
    pub fn identity(len: usize) -> Self {
        let mut seq = OperationSeq::default();
        seq.retain(len as u64);
        Self(seq)
    }

    /// Builds an op from trusted components (made by the server itself, such as
    /// a restore diff). Adjacent components of one kind are merged.
    pub fn from_components<'a>(components: impl IntoIterator<Item = Component<'a>>) -> Self {
        let mut seq = OperationSeq::default();
        for c in components {
            match c {
                Component::Retain(n) => seq.retain(n as u64),
                Component::Insert(s) => seq.insert(s),
                Component::Delete(n) => seq.delete(n as u64),
            }
        }
        Self(seq)
    }

    /// Characters the op must be applied to.
    pub fn base_len(&self) -> usize {
        self.0.base_len()
    }

    /// Characters after the op is applied.
    pub fn target_len(&self) -> usize {
        self.0.target_len()
    }

    /// True when the op changes nothing.
    pub fn is_noop(&self) -> bool {
        self.0.is_noop()
    }

    /// The op's components in order.
    pub fn components(&self) -> impl Iterator<Item = Component<'_>> {
        self.0.ops().iter().map(|op| match op {
            Operation::Retain(n) => Component::Retain(*n as usize),
            Operation::Insert(s) => Component::Insert(s),
            Operation::Delete(n) => Component::Delete(*n as usize),
        })
    }

    /// About how many bytes the op takes in memory: its inserted text plus
    /// a word or two per component. What byte limits count.
    pub fn approx_bytes(&self) -> usize {
        let inserted: usize = self
            .0
            .ops()
            .iter()
            .map(|op| match op {
                Operation::Insert(s) => s.len(),
                _ => 0,
            })
            .sum();
        inserted + 24 * self.0.ops().len() + 48
    }

    /// Number of components.
    pub fn len(&self) -> usize {
        self.0.ops().len()
    }

    /// True for the empty op `[]`.
    pub fn is_empty(&self) -> bool {
        self.0.ops().is_empty()
    }

    /// Transforms two concurrent ops based on the same text, giving
    /// `(self', other')` with `apply(apply(s, self), other') ==
    /// apply(apply(s, other), self')`. At the same position, `self`'s insert
    /// goes first (ot.js tie-breaking).
    ///
    /// # Errors
    ///
    /// [`OtError::LengthMismatch`] when the two are not based on the same length.
    pub fn transform(&self, other: &Self) -> Result<(Self, Self), OtError> {
        if self.base_len() != other.base_len() {
            return Err(OtError::LengthMismatch {
                op_len: self.base_len(),
                doc_len: other.base_len(),
            });
        }
        self.0
            .transform(&other.0)
            .map(|(a, b)| (Self(a), Self(b)))
            .map_err(|_| OtError::LengthMismatch {
                op_len: self.base_len(),
                doc_len: other.base_len(),
            })
    }

    /// Composes `self` then `next` into one op.
    ///
    /// # Errors
    ///
    /// [`OtError::LengthMismatch`] when `next` is not based on `self`'s result.
    pub fn compose(&self, next: &Self) -> Result<Self, OtError> {
        if self.target_len() != next.base_len() {
            return Err(OtError::LengthMismatch {
                op_len: next.base_len(),
                doc_len: self.target_len(),
            });
        }
        self.0
            .compose(&next.0)
            .map(Self)
            .map_err(|_| OtError::LengthMismatch {
                op_len: next.base_len(),
                doc_len: self.target_len(),
            })
    }

    /// The op as ot.js JSON.
    pub fn to_json(&self) -> String {
        // Serialising integers and strings cannot fail.
        serde_json::to_string(&self.0).unwrap_or_else(|_| "[]".to_owned())
    }
}

/// Parses a valid op from JSON, for this module's unit tests.
#[cfg(test)]
fn test_op(json: &str) -> TextOp {
    let raw: RawOp = serde_json::from_str(json).expect("raw op");
    TextOp::parse(&raw, &OpLimits::default()).expect("valid op")
}

#[cfg(test)]
mod tests {
    use super::test_op as op;
    use ropey::Rope;

    #[test]
    fn transform_ties_favour_the_first() {
        let a = op(r#"[1, "a", 1]"#);
        let b = op(r#"[1, "b", 1]"#);
        let (a2, b2) = a.transform(&b).expect("same base");
        let mut left = Rope::from_str("xy");
        a.apply(&mut left, usize::MAX).expect("a");
        b2.apply(&mut left, usize::MAX).expect("b'");
        let mut right = Rope::from_str("xy");
        b.apply(&mut right, usize::MAX).expect("b");
        a2.apply(&mut right, usize::MAX).expect("a'");
        assert_eq!(left.to_string(), "xaby");
        assert_eq!(right.to_string(), "xaby");
    }

    #[test]
    fn json_round_trip() {
        assert_eq!(op(r#"[5,"abc",-3,2]"#).to_json(), r#"[5,"abc",-3,2]"#);
        assert_eq!(op("[]").to_json(), "[]");
    }
}
