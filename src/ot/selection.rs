//! Cursors and selections, and how they move when an op is applied.

use serde::{Deserialize, Serialize};

use super::{Component, TextOp};

/// One cursor or selected range, in characters. `anchor == head` is a caret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Range {
    /// Where the selection started.
    pub anchor: usize,
    /// Where the caret is.
    pub head: usize,
}

/// All of one client's cursors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Selection {
    /// The ranges, in the client's order.
    pub ranges: Vec<Range>,
}

/// Where `index` goes when `op` is applied: ot.js `transformIndex`. An insert
/// exactly at the index pushes it to the end of the inserted text; a delete
/// spanning it pulls it to the start of the deletion.
pub fn transform_index(index: usize, op: &TextOp) -> usize {
    let mut remaining = index;
    let mut moved = index;
    for c in op.components() {
        match c {
            Component::Retain(n) => {
                if n > remaining {
                    break;
                }
                remaining -= n;
            }
            Component::Insert(s) => moved += s.chars().count(),
            Component::Delete(n) => {
                moved -= n.min(remaining);
                if n > remaining {
                    break;
                }
                remaining -= n;
            }
        }
    }
    moved
}

impl Selection {
    /// True when every offset is within a document of `len` characters.
    pub fn fits(&self, len: usize) -> bool {
        self.ranges.iter().all(|r| r.anchor <= len && r.head <= len)
    }

    /// The selection after `op` is applied.
    pub fn transform(&self, op: &TextOp) -> Selection {
        Selection {
            ranges: self
                .ranges
                .iter()
                .map(|r| Range {
                    anchor: transform_index(r.anchor, op),
                    head: transform_index(r.head, op),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_op as op;
    use super::*;

    #[test]
    fn indexes_follow_ot_js() {
        let ins = op(r#"[2, "xy", 2]"#);
        assert_eq!(transform_index(1, &ins), 1);
        assert_eq!(transform_index(2, &ins), 4);
        assert_eq!(transform_index(4, &ins), 6);
        let del = op("[1, -2, 1]");
        assert_eq!(transform_index(0, &del), 0);
        assert_eq!(transform_index(2, &del), 1);
        assert_eq!(transform_index(3, &del), 1);
        assert_eq!(transform_index(4, &del), 2);
    }
}
