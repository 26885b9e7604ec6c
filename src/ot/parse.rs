//! Parsing an op from untrusted JSON.
//!
//! Deserialising gives a [`RawOp`]: a list of integers and strings, nothing
//! else (floats, `-0`, objects, nested arrays, booleans and null are refused
//! by the deserialiser itself, so a deep nest is never built). Validation then
//! turns it into a [`TextOp`] with checked arithmetic: no count can wrap, and
//! the known hang of the crate (`[-9223372036854775808, 9223372036854775809]`)
//! is refused before the crate ever sees it.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};

use super::{OtError, TextOp};
use crate::config;

/// One component as sent: an integer or a string, not yet validated.
#[derive(Debug, Clone, PartialEq)]
pub enum RawComponent {
    /// A JSON integer that fits in i64 (larger ones are refused when parsed).
    Int(i64),
    /// A JSON string.
    Str(String),
}

/// An op as sent by a client: validated for shape, not for meaning.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RawOp(pub Vec<RawComponent>);

impl<'de> Deserialize<'de> for RawComponent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawComponent;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a non-zero integer or a string")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawComponent, E> {
                Ok(RawComponent::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawComponent, E> {
                i64::try_from(v)
                    .map(RawComponent::Int)
                    .map_err(|_| E::custom("integer out of range"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawComponent, E> {
                Ok(RawComponent::Str(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<RawComponent, E> {
                Ok(RawComponent::Str(v))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for RawOp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawOp;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array of non-zero integers and strings")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawOp, A::Error> {
                // The message size limit bounds the element count; cap the
                // pre-allocation anyway so a size hint cannot reserve much.
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
                while let Some(c) = seq.next_element()? {
                    out.push(c);
                }
                Ok(RawOp(out))
            }
        }
        d.deserialize_seq(V)
    }
}

/// Caps applied when an op is parsed.
#[derive(Debug, Clone, Copy)]
pub struct OpLimits {
    /// Most components.
    pub max_components: usize,
    /// Most characters inserted.
    pub max_insert_chars: usize,
    /// Largest base or target length: no document is longer.
    pub max_document_chars: usize,
}

impl Default for OpLimits {
    fn default() -> Self {
        Self {
            max_components: config::MAX_OP_COMPONENTS,
            max_insert_chars: config::MAX_INSERT_CHARS,
            max_document_chars: config::MAX_DOCUMENT_CHARS,
        }
    }
}

impl From<&config::Limits> for OpLimits {
    fn from(l: &config::Limits) -> Self {
        Self {
            max_components: l.max_op_components,
            max_insert_chars: l.max_insert_chars,
            max_document_chars: l.max_document_chars,
        }
    }
}

impl TextOp {
    /// Validates a raw op.
    ///
    /// # Errors
    ///
    /// An [`OtError`] when a component is zero, a count or the spanned length
    /// exceeds the limits, or the op is too long. The length against the
    /// document is checked by the caller, which knows the base revision.
    pub fn parse(raw: &RawOp, limits: &OpLimits) -> Result<TextOp, OtError> {
        if raw.0.len() > limits.max_components {
            return Err(OtError::TooManyComponents {
                max: limits.max_components,
            });
        }
        let max_doc = limits.max_document_chars;
        let mut base: usize = 0;
        let mut inserted: usize = 0;
        let mut components = Vec::with_capacity(raw.0.len());
        for (index, c) in raw.0.iter().enumerate() {
            match c {
                RawComponent::Int(0) => return Err(OtError::BadComponent { index }),
                RawComponent::Int(n) => {
                    let count = usize::try_from(n.unsigned_abs())
                        .map_err(|_| OtError::SpanTooLarge { max: max_doc })?;
                    base = base
                        .checked_add(count)
                        .filter(|b| *b <= max_doc)
                        .ok_or(OtError::SpanTooLarge { max: max_doc })?;
                    components.push(if *n > 0 {
                        super::Component::Retain(count)
                    } else {
                        super::Component::Delete(count)
                    });
                }
                RawComponent::Str(s) => {
                    // Count no further than the limit: a huge string costs
                    // no more than an allowed one.
                    let remaining = limits.max_insert_chars - inserted;
                    let chars = s.chars().take(remaining.saturating_add(1)).count();
                    if chars > remaining {
                        return Err(OtError::InsertTooLarge {
                            max: limits.max_insert_chars,
                        });
                    }
                    inserted += chars;
                    components.push(super::Component::Insert(s));
                }
            }
        }
        Ok(TextOp::from_components(components))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<TextOp, String> {
        let raw: RawOp = serde_json::from_str(json).map_err(|e| e.to_string())?;
        TextOp::parse(&raw, &OpLimits::default()).map_err(|e| e.to_string())
    }

    #[test]
    fn refuses_bad_shapes_at_once() {
        for bad in [
            "[1.5]",
            "[-0]",
            "[0]",
            "[{}]",
            "[[1]]",
            "[null]",
            "[true]",
            "{}",
            "\"abc\"",
            "[9223372036854775809]",
            "[18446744073709551616]",
            "[-9223372036854775808, 9223372036854775807]",
            "[9223372036854775807, 9223372036854775807]",
            "[1e3]",
        ] {
            assert!(parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn counts_characters() {
        let op = parse(r#"[1, "😀漢", -2]"#).expect("valid");
        assert_eq!(op.base_len(), 3);
        assert_eq!(op.target_len(), 3);
    }

    #[test]
    fn limits_hold() {
        let limits = OpLimits {
            max_components: 2,
            max_insert_chars: 3,
            max_document_chars: 10,
        };
        let raw = |j: &str| serde_json::from_str::<RawOp>(j).expect("raw");
        assert!(TextOp::parse(&raw("[1,2,3]"), &limits).is_err());
        assert!(TextOp::parse(&raw(r#"["abcd"]"#), &limits).is_err());
        assert!(TextOp::parse(&raw("[11]"), &limits).is_err());
        assert!(TextOp::parse(&raw(r#"[10, "abc"]"#), &limits).is_ok());
    }
}
