//! How a snapshot is kept: whole, or as a delta from the snapshot before it.
//!
//! A full text every `--snapshot-interval` revisions costs the text's size
//! each time: a document that grows to 1 MB over 1,000,000 ops would keep
//! about 500 MB of snapshots. So a snapshot whose text is close to the one
//! before it is stored as the op that turns that one into it (its *base*).
//! Reading it rebuilds the chain: the full text it ends on, then each delta
//! in order, applied to a rope (O(k log n) per delta of k components).
//!
//! The delta is the common prefix and suffix of the two texts kept, the
//! middle replaced: O(n) to find, and as small as the edit when the edits
//! between two snapshots are near each other (typing). Edits all over the
//! text make a delta about as large as the text, and then the text is
//! stored whole instead.
//!
//! A chain is bounded by its *cost*: the bytes of its deltas plus
//! [`DELTA_ROW_COST`] per delta, summed from the full text it ends on. A
//! snapshot whose chain would cost more than its own text is stored whole,
//! so the full texts take at most about as much room as the deltas, and
//! rebuilding reads at most about twice the text's size, in at most
//! `text bytes / DELTA_ROW_COST` rows.
//!
//! Pure: the backends read the rows and write what [`plan`] says.

use ropey::Rope;

use super::{StoreError, decode_op};
use crate::ids::Revision;
use crate::ot::{Component, TextOp};

/// Texts shorter than this are always stored whole: a delta would save
/// little, and a full text ends every chain that reaches it.
pub(crate) const MIN_DELTA_TEXT_BYTES: usize = 4_096;

/// What one delta adds to its chain's cost besides its bytes: a row to read
/// and an op to parse and apply. Also bounds a chain's length.
pub(crate) const DELTA_ROW_COST: u64 = 1_024;

/// A stored snapshot row as the backends read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Row {
    pub rev: u64,
    /// `None`: `body` is the full text. Otherwise the revision of the
    /// snapshot that `body` (an op, ot.js JSON) applies to.
    pub base: Option<u64>,
    /// The chain's cost up to and including this row (0 for a full text).
    pub chain: u64,
    pub body: String,
}

/// A snapshot's text rebuilt, with what a delta on top of it would extend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rebuilt {
    pub rev: Revision,
    pub text: String,
    /// The chain cost of the row the text was read from.
    pub chain: u64,
}

/// How to store a new snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Plan {
    /// The text itself.
    Full,
    /// An op (JSON) from the snapshot at `base`, and the new chain cost.
    Delta { base: u64, op: String, chain: u64 },
}

impl Plan {
    /// What its row holds: the body (the text, or the delta's op), the
    /// base revision (`None` for a full text) and the chain's cost.
    pub(crate) fn stored<'a>(&'a self, text: &'a str) -> (&'a str, Option<u64>, u64) {
        match self {
            Plan::Full => (text, None, 0),
            Plan::Delta { base, op, chain } => (op.as_str(), Some(*base), *chain),
        }
    }
}

/// False when `text` is stored whole whatever came before it, so a caller
/// need not rebuild the snapshot before it to ask [`plan`].
pub(crate) fn may_be_delta(text: &str) -> bool {
    text.len() >= MIN_DELTA_TEXT_BYTES
}

/// Decides how to store `text` at `rev`, given the latest snapshot before
/// it (rebuilt), if any.
pub(crate) fn plan(rev: Revision, text: &str, base: Option<&Rebuilt>) -> Plan {
    let Some(base) = base.filter(|b| b.rev < rev) else {
        return Plan::Full;
    };
    if !may_be_delta(text) {
        return Plan::Full;
    }
    let op = delta(&base.text, text).to_json();
    let chain = base
        .chain
        .saturating_add(op.len() as u64)
        .saturating_add(DELTA_ROW_COST);
    if chain > text.len() as u64 {
        return Plan::Full;
    }
    Plan::Delta {
        base: base.rev.0,
        op,
        chain,
    }
}

/// The op turning `old` into `new`: their common prefix and suffix kept,
/// what lies between replaced.
pub(crate) fn delta(old: &str, new: &str) -> TextOp {
    let prefix = common_prefix(old.as_bytes(), new.as_bytes());
    let prefix = floor_boundary(old, prefix);
    let room = old.len().min(new.len()) - prefix;
    let suffix = common_suffix(&old.as_bytes()[prefix..], &new.as_bytes()[prefix..]).min(room);
    // The suffix starts on a boundary of `old` iff it does of `new`: the
    // bytes from there on are the same.
    let suffix = old.len() - ceil_boundary(old, old.len() - suffix);
    let removed = &old[prefix..old.len() - suffix];
    let inserted = &new[prefix..new.len() - suffix];
    TextOp::from_components([
        Component::Retain(old[..prefix].chars().count()),
        Component::Delete(removed.chars().count()),
        Component::Insert(inserted),
        Component::Retain(old[old.len() - suffix..].chars().count()),
    ])
}

/// Rebuilds the text of the newest of `rows`: a chain read from the store,
/// in any order, whose oldest row is a full text and where every other
/// row's base is the row before it.
///
/// # Errors
///
/// [`StoreError::Corrupt`] when the chain is broken (a base missing, no
/// full text at its start) or a delta does not parse or apply.
pub(crate) fn rebuild(mut rows: Vec<Row>) -> Result<Option<Rebuilt>, StoreError> {
    rows.sort_unstable_by_key(|r| r.rev);
    let mut rows = rows.into_iter();
    let Some(first) = rows.next() else {
        return Ok(None);
    };
    if first.base.is_some() {
        return Err(StoreError::Corrupt(format!(
            "snapshot {} is a delta whose base {} is missing",
            first.rev,
            first.base.unwrap_or_default()
        )));
    }
    let (mut rev, mut chain) = (first.rev, first.chain);
    let Some(second) = rows.next() else {
        return Ok(Some(Rebuilt {
            rev: Revision(rev),
            text: first.body,
            chain,
        }));
    };
    let mut rope = Rope::from_str(&first.body);
    drop(first.body);
    for row in std::iter::once(second).chain(rows) {
        if row.base != Some(rev) {
            return Err(StoreError::Corrupt(format!(
                "snapshot {} is based on {:?}, not on the snapshot {rev} before it",
                row.rev, row.base
            )));
        }
        let op = decode_op(&row.body)?;
        op.apply(&mut rope, usize::MAX).map_err(|e| {
            StoreError::Corrupt(format!("snapshot delta {} does not apply: {e}", row.rev))
        })?;
        (rev, chain) = (row.rev, row.chain);
    }
    Ok(Some(Rebuilt {
        rev: Revision(rev),
        text: rope.to_string(),
        chain,
    }))
}

/// Length of the common prefix of `a` and `b`, in bytes.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    // Whole blocks first: a slice comparison is a memcmp.
    const BLOCK: usize = 64;
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + BLOCK <= n && a[i..i + BLOCK] == b[i..i + BLOCK] {
        i += BLOCK;
    }
    i + a[i..n]
        .iter()
        .zip(&b[i..n])
        .take_while(|(x, y)| x == y)
        .count()
}

/// Length of the common suffix of `a` and `b`, in bytes.
fn common_suffix(a: &[u8], b: &[u8]) -> usize {
    const BLOCK: usize = 64;
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + BLOCK <= n
        && a[a.len() - i - BLOCK..a.len() - i] == b[b.len() - i - BLOCK..b.len() - i]
    {
        i += BLOCK;
    }
    i + a[..a.len() - i]
        .iter()
        .rev()
        .zip(b[..b.len() - i].iter().rev())
        .take_while(|(x, y)| x == y)
        .count()
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(rev: u64, text: &str) -> Row {
        Row {
            rev,
            base: None,
            chain: 0,
            body: text.to_owned(),
        }
    }

    fn rebuilt(rev: u64, text: &str, chain: u64) -> Rebuilt {
        Rebuilt {
            rev: Revision(rev),
            text: text.to_owned(),
            chain,
        }
    }

    #[test]
    fn delta_turns_old_into_new() {
        let cases = [
            ("", ""),
            ("", "abc"),
            ("abc", ""),
            ("abc", "abc"),
            ("abcdef", "abXYef"),
            ("aaaa", "aaaaaa"),
            ("aaaaaa", "aaaa"),
            ("héllo wörld", "héllo, wörld"),
            ("a漢b", "a字b"),
            ("x👍🏽y", "x👍🏾y"),
            ("👍", "👎"),
            ("é", "è"),
        ];
        for (old, new) in cases {
            let op = delta(old, new);
            assert_eq!(
                op.apply_str(old).expect("applies"),
                new,
                "{old:?} -> {new:?}"
            );
        }
    }

    #[test]
    fn delta_of_typing_is_the_typing() {
        let old = "x".repeat(100_000);
        let new = format!("{old}hello");
        assert_eq!(delta(&old, &new).to_json(), r#"[100000,"hello"]"#);
        let new = format!("{}hello{}", &old[..500], &old[500..]);
        // Runs of one letter: the prefix takes all it can.
        assert_eq!(delta(&old, &new).to_json(), r#"[500,"hello",99500]"#);
    }

    #[test]
    fn small_texts_and_first_snapshots_are_full() {
        let text = "y".repeat(MIN_DELTA_TEXT_BYTES - 1);
        let base = rebuilt(0, &text[1..], 0);
        assert_eq!(plan(Revision(5), &text, Some(&base)), Plan::Full);
        assert_eq!(plan(Revision(5), &"y".repeat(10_000), None), Plan::Full);
    }

    #[test]
    fn a_small_edit_is_a_delta_until_the_chain_costs_the_text() {
        let text = "y".repeat(10_000);
        let base = rebuilt(3, &text[1..], 0);
        let Plan::Delta { base, op, chain } = plan(Revision(4), &text, Some(&base)) else {
            panic!("expected a delta");
        };
        assert_eq!((base, op.as_str()), (3, r#"[9999,"y"]"#));
        assert_eq!(chain, op.len() as u64 + DELTA_ROW_COST);
        let long = rebuilt(3, &text[1..], 10_000 - chain + 1);
        assert_eq!(plan(Revision(4), &text, Some(&long)), Plan::Full);
    }

    #[test]
    fn a_base_at_or_after_the_revision_is_not_used() {
        let text = "y".repeat(10_000);
        let base = rebuilt(4, &text, 0);
        assert_eq!(plan(Revision(4), &text, Some(&base)), Plan::Full);
    }

    #[test]
    fn rebuild_applies_the_chain_in_order() {
        let rows = vec![
            Row {
                rev: 9,
                base: Some(5),
                chain: 20,
                body: r#"[3,"!"]"#.into(),
            },
            full(2, "ab"),
            Row {
                rev: 5,
                base: Some(2),
                chain: 10,
                body: r#"[2,"c"]"#.into(),
            },
        ];
        assert_eq!(
            rebuild(rows).expect("rebuilds"),
            Some(rebuilt(9, "abc!", 20))
        );
        assert_eq!(rebuild(vec![]).expect("empty"), None);
    }

    #[test]
    fn rebuild_refuses_a_broken_chain() {
        let orphan = Row {
            rev: 9,
            base: Some(5),
            chain: 20,
            body: r#"[3,"!"]"#.into(),
        };
        assert!(matches!(
            rebuild(vec![orphan.clone()]),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(
            rebuild(vec![full(2, "abc"), orphan.clone()]),
            Err(StoreError::Corrupt(_))
        ));
        let misfit = Row {
            base: Some(2),
            ..orphan
        };
        assert!(matches!(
            rebuild(vec![full(2, "ab"), misfit]),
            Err(StoreError::Corrupt(_))
        ));
    }
}
