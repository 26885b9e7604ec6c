//! Applying an op to a rope, in place, by walking its components: the cost is
//! that of the edits (O(k log n)), never a rebuild of the whole text.

use ropey::Rope;

use super::{Component, OtError, TextOp};

impl TextOp {
    /// Applies the op to `text`.
    ///
    /// # Errors
    ///
    /// [`OtError::LengthMismatch`] when the op does not span `text`, and
    /// [`OtError::DocumentTooLarge`] when the result would be longer than
    /// `max_chars`. In both cases `text` is left as it was.
    pub fn apply(&self, text: &mut Rope, max_chars: usize) -> Result<(), OtError> {
        let doc_len = text.len_chars();
        if self.base_len() != doc_len {
            return Err(OtError::LengthMismatch {
                op_len: self.base_len(),
                doc_len,
            });
        }
        if self.target_len() > max_chars && self.target_len() > doc_len {
            return Err(OtError::DocumentTooLarge { max: max_chars });
        }
        let mut pos = 0;
        for c in self.components() {
            match c {
                Component::Retain(n) => pos += n,
                Component::Insert(s) => {
                    text.insert(pos, s);
                    pos += s.chars().count();
                }
                Component::Delete(n) => text.remove(pos..pos + n),
            }
        }
        Ok(())
    }

    /// Applies the op to a string: for tests and tools, not the server's path.
    ///
    /// # Errors
    ///
    /// As [`TextOp::apply`].
    pub fn apply_str(&self, text: &str) -> Result<String, OtError> {
        let mut rope = Rope::from_str(text);
        self.apply(&mut rope, usize::MAX)?;
        Ok(rope.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_op as op;
    use super::*;

    #[test]
    fn applies_in_characters() {
        assert_eq!(
            op(r#"[1, "👍🏽", -1, 1]"#)
                .apply_str("a漢b")
                .expect("applies"),
            "a👍🏽b"
        );
    }

    #[test]
    fn refuses_wrong_length_and_leaves_text() {
        let mut rope = Rope::from_str("abc");
        assert!(op("[2]").apply(&mut rope, 100).is_err());
        assert!(op(r#"[3, "xyz"]"#).apply(&mut rope, 5).is_err());
        assert_eq!(rope.to_string(), "abc");
    }
}
