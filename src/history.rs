//! Reading a document's history: the text at a revision, edits grouped the
//! way a person sees them, line blame, diffs, and the op that restores an
//! old text. Pure: the callers read snapshots and ops from the store and
//! pass them in; nothing here does I/O.
//!
//! Costs, with `n` the document length in characters:
//!
//! - [`text_at`]: O(n + k log n) for `k` ops replayed after the snapshot
//!   (the caller bounds `k` by the snapshot interval).
//! - [`Blame`]: attribution is kept as runs `(length, revision)` in chunks,
//!   so applying one op costs O(chunks + chunk size): a 1,000,000-op
//!   history of single keystrokes is blamed in seconds, not hours.
//! - [`diff_op`] and [`line_diff`]: Myers' diff with a deadline, so the
//!   worst case is bounded in time; past the deadline the result is still
//!   correct, only less minimal.

use std::time::{Duration, Instant};

use ropey::Rope;
use serde::Serialize;
use similar::{Algorithm, ChangeTag, DiffOp, TextDiff};

use crate::ids::Revision;
use crate::ot::{Component, OtError, TextOp};
use crate::store::OpRecord;

/// Longest a diff may search for a minimal answer.
pub const DIFF_DEADLINE: Duration = Duration::from_millis(200);

/// Ops of one author closer together than this make one revision.
pub const GROUP_GAP_MS: i64 = 60_000;

/// The text after applying `ops` (in order, consecutive) to `base`.
///
/// # Errors
///
/// When an op does not apply (the stored history is inconsistent).
pub fn text_at<'a>(
    base: &str,
    ops: impl IntoIterator<Item = &'a TextOp>,
) -> Result<String, OtError> {
    let mut rope = Rope::from_str(base);
    for op in ops {
        op.apply(&mut rope, usize::MAX)?;
    }
    Ok(rope.to_string())
}

/// Characters an op inserts and deletes.
pub fn op_counts(op: &TextOp) -> (usize, usize) {
    op.components().fold((0, 0), |(i, d), c| match c {
        Component::Retain(_) => (i, d),
        Component::Insert(s) => (i + s.chars().count(), d),
        Component::Delete(n) => (i, d + n),
    })
}

/// A run of one author's consecutive ops: what a person calls "an edit".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RevisionGroup {
    /// The revision before the first op (its base).
    pub from: u64,
    /// The revision the last op produced.
    pub to: u64,
    /// Who wrote them.
    pub author: String,
    /// Time of the first op, Unix ms.
    pub start: i64,
    /// Time of the last op, Unix ms.
    pub end: i64,
    /// Characters inserted.
    pub inserted: usize,
    /// Characters deleted.
    pub deleted: usize,
}

/// Groups ops (consecutive revisions, in order) into revisions: a new group
/// starts when the author changes or more than `gap_ms` passed since the
/// previous op. Feed ops page by page: `groups` is extended in place, and
/// the last group may grow with the next page.
pub fn group_ops(groups: &mut Vec<RevisionGroup>, ops: &[OpRecord], gap_ms: i64) {
    for op in ops {
        let (inserted, deleted) = op_counts(&op.op);
        if let Some(last) = groups.last_mut()
            && last.author == op.author
            && last.to + 1 == op.rev.0
            && op.time_ms.saturating_sub(last.end) < gap_ms
        {
            last.to = op.rev.0;
            last.end = last.end.max(op.time_ms);
            last.inserted += inserted;
            last.deleted += deleted;
            continue;
        }
        groups.push(RevisionGroup {
            from: op.rev.0 - 1,
            to: op.rev.0,
            author: op.author.clone(),
            start: op.time_ms,
            end: op.time_ms,
            inserted,
            deleted,
        });
    }
}

/// Runs per chunk of a [`Blame`]; a chunk with twice as many is split.
const CHUNK_RUNS: usize = 256;

/// Per-character attribution of a text to the revision that inserted each
/// character, kept as runs `(length, revision)` in chunks of at most
/// `2 × CHUNK_RUNS` runs. An op edits only the chunks it touches; finding a
/// position skips whole chunks by their length. Typing one character per
/// revision makes one run per character, so a flat list of runs would cost
/// O(text) per op and never finish a long history.
#[derive(Debug, Clone, Default)]
pub struct Blame {
    chunks: Vec<Chunk>,
    len: usize,
}

#[derive(Debug, Clone)]
struct Chunk {
    runs: Vec<(usize, u64)>,
    len: usize,
}

impl Chunk {
    /// Inserts `n` characters of `rev` at `offset` (at most `self.len`).
    fn insert(&mut self, offset: usize, n: usize, rev: u64) {
        let mut at = 0;
        let mut i = 0;
        while i < self.runs.len() && at + self.runs[i].0 <= offset {
            at += self.runs[i].0;
            i += 1;
        }
        self.len += n;
        if offset > at {
            // Inside run `i`: split it around the insert.
            let (rl, rr) = self.runs[i];
            if rr == rev {
                self.runs[i].0 += n;
                return;
            }
            self.runs[i].0 = offset - at;
            self.runs
                .splice(i + 1..i + 1, [(n, rev), (rl - (offset - at), rr)]);
            return;
        }
        if i > 0 && self.runs[i - 1].1 == rev {
            self.runs[i - 1].0 += n;
        } else if i < self.runs.len() && self.runs[i].1 == rev {
            self.runs[i].0 += n;
        } else {
            self.runs.insert(i, (n, rev));
        }
    }

    /// Deletes up to `n` characters from `offset` (below `self.len`);
    /// returns how many it deleted (what the chunk had from there on).
    fn delete(&mut self, offset: usize, mut n: usize) -> usize {
        let mut at = 0;
        let mut i = 0;
        while i < self.runs.len() && at + self.runs[i].0 <= offset {
            at += self.runs[i].0;
            i += 1;
        }
        let mut removed = 0;
        if offset > at && i < self.runs.len() {
            let take = (self.runs[i].0 - (offset - at)).min(n);
            self.runs[i].0 -= take;
            removed += take;
            n -= take;
            i += 1;
        }
        let mut j = i;
        while j < self.runs.len() && n >= self.runs[j].0 && n > 0 {
            n -= self.runs[j].0;
            removed += self.runs[j].0;
            j += 1;
        }
        self.runs.drain(i..j);
        if n > 0 && i < self.runs.len() {
            self.runs[i].0 -= n;
            removed += n;
        }
        self.len -= removed;
        removed
    }
}

impl Blame {
    /// A text of `len` characters, all from revision `rev`.
    pub fn new(len: usize, rev: Revision) -> Self {
        let chunks = if len == 0 {
            Vec::new()
        } else {
            vec![Chunk {
                runs: vec![(len, rev.0)],
                len,
            }]
        };
        Self { chunks, len }
    }

    /// Characters attributed.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there are no characters.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// From chunk `ci` starting at `start`, the chunk holding `pos` (with
    /// `at_end`, one that ends at `pos` will do) and its start.
    fn seek(&self, mut ci: usize, mut start: usize, pos: usize, at_end: bool) -> (usize, usize) {
        while let Some(c) = self.chunks.get(ci) {
            let end = start + c.len;
            if pos < end || (at_end && pos == end) {
                break;
            }
            start = end;
            ci += 1;
        }
        (ci, start)
    }

    /// Applies `op`, which produced revision `rev`: its inserts are
    /// attributed to `rev`.
    ///
    /// # Errors
    ///
    /// [`OtError::LengthMismatch`] when the op does not span the text.
    pub fn apply(&mut self, op: &TextOp, rev: Revision) -> Result<(), OtError> {
        let mismatch = OtError::LengthMismatch {
            op_len: op.base_len(),
            doc_len: self.len,
        };
        if op.base_len() != self.len {
            return Err(mismatch);
        }
        // Positions only grow along an op, so the chunk search resumes.
        let (mut ci, mut start, mut pos) = (0, 0, 0);
        for c in op.components() {
            match c {
                Component::Retain(n) => pos += n,
                Component::Insert(s) => {
                    let n = s.chars().count();
                    if n == 0 {
                        continue;
                    }
                    (ci, start) = self.seek(ci, start, pos, true);
                    match self.chunks.get_mut(ci) {
                        Some(chunk) => {
                            chunk.insert(pos - start, n, rev.0);
                            if chunk.runs.len() > 2 * CHUNK_RUNS {
                                let runs = chunk.runs.split_off(CHUNK_RUNS);
                                let len: usize = runs.iter().map(|r| r.0).sum();
                                chunk.len -= len;
                                self.chunks.insert(ci + 1, Chunk { runs, len });
                            }
                        }
                        None => self.chunks.push(Chunk {
                            runs: vec![(n, rev.0)],
                            len: n,
                        }),
                    }
                    self.len += n;
                    pos += n;
                }
                Component::Delete(mut n) => {
                    while n > 0 {
                        (ci, start) = self.seek(ci, start, pos, false);
                        let chunk = self.chunks.get_mut(ci).ok_or(mismatch.clone())?;
                        let removed = chunk.delete(pos - start, n);
                        if chunk.len == 0 {
                            self.chunks.remove(ci);
                        }
                        if removed == 0 {
                            return Err(mismatch);
                        }
                        self.len -= removed;
                        n -= removed;
                    }
                }
            }
        }
        Ok(())
    }

    /// For each line of `text` (which must be the attributed text), the
    /// newest revision among its characters and its line break. Lines are
    /// split on `\n`; a final line break does not start another line, and
    /// the empty text has no lines.
    pub fn lines(&self, text: &str) -> Vec<u64> {
        let mut out = Vec::new();
        let mut runs = self.chunks.iter().flat_map(|c| c.runs.iter().copied());
        let mut cur: Option<(usize, u64)> = None;
        let mut line_rev: Option<u64> = None;
        for ch in text.chars() {
            let (rl, rr) = match cur.take() {
                Some(r) => r,
                None => runs.next().unwrap_or((usize::MAX, 0)),
            };
            if rl > 1 {
                cur = Some((rl - 1, rr));
            }
            line_rev = Some(line_rev.map_or(rr, |r| r.max(rr)));
            if ch == '\n' {
                out.push(line_rev.take().unwrap_or(rr));
            }
        }
        if let Some(r) = line_rev {
            out.push(r);
        }
        out
    }
}

/// The op that turns `current` into `target`, from a character diff
/// (counted in characters, like every op).
pub fn diff_op(current: &str, target: &str) -> TextOp {
    let diff = TextDiff::configure()
        .algorithm(Algorithm::Myers)
        .deadline(Instant::now() + DIFF_DEADLINE)
        .diff_chars(current, target);
    let new = diff.new_slices();
    let mut comps: Vec<Component<'_>> = Vec::new();
    let mut inserted: Vec<String> = Vec::new();
    // First collect the inserted strings, so components can borrow them.
    for op in diff.ops() {
        if let DiffOp::Insert {
            new_index, new_len, ..
        }
        | DiffOp::Replace {
            new_index, new_len, ..
        } = *op
        {
            inserted.push(new[new_index..new_index + new_len].concat());
        }
    }
    let mut ins = inserted.iter();
    for op in diff.ops() {
        match *op {
            DiffOp::Equal { len, .. } => comps.push(Component::Retain(len)),
            DiffOp::Delete { old_len, .. } => comps.push(Component::Delete(old_len)),
            DiffOp::Insert { .. } => {
                if let Some(s) = ins.next() {
                    comps.push(Component::Insert(s));
                }
            }
            DiffOp::Replace { old_len, .. } => {
                if let Some(s) = ins.next() {
                    comps.push(Component::Insert(s));
                }
                comps.push(Component::Delete(old_len));
            }
        }
    }
    TextOp::from_components(comps)
}

/// One line of a hunk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HunkLine {
    /// `equal`, `insert` or `delete`.
    pub tag: &'static str,
    /// The line, with its line break if it has one.
    pub text: String,
}

/// A hunk of a line diff. Line numbers are 1-based; when a side has no
/// lines, its start is the line after which the change goes (0 at the top),
/// as in unified diffs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hunk {
    /// First old line.
    pub old_start: usize,
    /// Old lines covered.
    pub old_lines: usize,
    /// First new line.
    pub new_start: usize,
    /// New lines covered.
    pub new_lines: usize,
    /// The lines, in order.
    pub lines: Vec<HunkLine>,
}

fn line_text_diff<'a>(old: &'a str, new: &'a str) -> TextDiff<'a, 'a, 'a, str> {
    TextDiff::configure()
        .algorithm(Algorithm::Myers)
        .deadline(Instant::now() + DIFF_DEADLINE)
        .diff_lines(old, new)
}

/// The line diff of `old` and `new` as hunks with `context` lines around
/// each change.
pub fn line_diff(old: &str, new: &str, context: usize) -> Vec<Hunk> {
    let diff = line_text_diff(old, new);
    let mut hunks = Vec::new();
    for group in diff.grouped_ops(context) {
        let (Some(first), Some(last)) = (group.first(), group.last()) else {
            continue;
        };
        let old_range = first.old_range().start..last.old_range().end;
        let new_range = first.new_range().start..last.new_range().end;
        let start = |r: &std::ops::Range<usize>| {
            if r.is_empty() { r.start } else { r.start + 1 }
        };
        let mut lines = Vec::new();
        for op in &group {
            for change in diff.iter_changes(op) {
                let tag = match change.tag() {
                    ChangeTag::Equal => "equal",
                    ChangeTag::Insert => "insert",
                    ChangeTag::Delete => "delete",
                };
                lines.push(HunkLine {
                    tag,
                    text: change.value().to_owned(),
                });
            }
        }
        hunks.push(Hunk {
            old_start: start(&old_range),
            old_lines: old_range.len(),
            new_start: start(&new_range),
            new_lines: new_range.len(),
            lines,
        });
    }
    hunks
}

/// The unified diff of `old` and `new` (3 lines of context), with the
/// given file names in its header.
pub fn unified_diff(old: &str, new: &str, old_name: &str, new_name: &str) -> String {
    line_text_diff(old, new)
        .unified_diff()
        .context_radius(3)
        .header(old_name, new_name)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{ClientId, Seq};

    fn ins(pos: usize, s: &str, len: usize) -> TextOp {
        TextOp::from_components([
            Component::Retain(pos),
            Component::Insert(s),
            Component::Retain(len - pos),
        ])
    }

    fn record(rev: u64, author: &str, time_ms: i64, op: TextOp) -> OpRecord {
        OpRecord {
            rev: Revision(rev),
            client: ClientId::random(),
            seq: Seq(rev),
            author: author.to_owned(),
            op,
            time_ms,
        }
    }

    #[test]
    fn diff_op_turns_one_text_into_the_other() {
        let cases = [
            ("", ""),
            ("", "abc"),
            ("abc", ""),
            ("héllo 😀 world", "hello world 😀!"),
            ("a\nb\nc\n", "a\nx\nc"),
        ];
        for (a, b) in cases {
            let op = diff_op(a, b);
            assert_eq!(op.apply_str(a).expect("applies"), b, "{a:?} -> {b:?}");
        }
    }

    #[test]
    fn blame_attributes_lines_to_the_newest_change() {
        let mut text = "one\ntwo\n".to_owned();
        let mut blame = Blame::new(text.chars().count(), Revision(0));
        let op = ins(4, "2", 8); // one\n2two\n
        text = op.apply_str(&text).expect("op");
        blame.apply(&op, Revision(1)).expect("blame");
        let op = ins(9, "three", 9);
        text = op.apply_str(&text).expect("op");
        blame.apply(&op, Revision(2)).expect("blame");
        assert_eq!(text, "one\n2two\nthree");
        assert_eq!(blame.lines(&text), vec![0, 1, 2]);
        let del = TextOp::from_components([Component::Delete(4), Component::Retain(10)]);
        text = del.apply_str(&text).expect("op");
        blame.apply(&del, Revision(3)).expect("blame");
        assert_eq!(blame.lines(&text), vec![1, 2]);
        assert_eq!(blame.len(), text.chars().count());
    }

    /// Per-character model of blame: the revision of each character.
    fn naive_lines(revs: &[u64], text: &str) -> Vec<u64> {
        let mut out = Vec::new();
        let mut line: Option<u64> = None;
        for (ch, &r) in text.chars().zip(revs) {
            line = Some(line.map_or(r, |l| l.max(r)));
            if ch == '\n' {
                out.extend(line.take());
            }
        }
        out.extend(line);
        out
    }

    #[test]
    fn chunked_blame_matches_a_per_character_model() {
        let mut seed: u64 = 0x5eed;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            if n == 0 {
                0
            } else {
                (seed % n as u64) as usize
            }
        };
        let mut text = String::new();
        let mut revs: Vec<u64> = Vec::new();
        let mut blame = Blame::new(0, Revision(0));
        // Enough single-character revisions to split chunks many times,
        // with deletes across chunk boundaries and multi-component ops.
        for rev in 1..=6_000u64 {
            let len = revs.len();
            let mut comps: Vec<Component<'_>> = Vec::new();
            let inserted: Vec<String> = (0..3)
                .map(|k| ["a", "\n", "xyz", "é😀"][(next(4) + k) % 4].to_owned())
                .collect();
            let mut pos = 0;
            let mut model: Vec<u64> = Vec::new();
            for s in &inserted {
                if pos > len {
                    break;
                }
                let skip = next((len - pos).min(40) + 1);
                comps.push(Component::Retain(skip));
                model.extend_from_slice(&revs[pos..pos + skip]);
                pos += skip;
                if next(8) == 0 && pos < len {
                    // Mostly small deletes, now and then one across chunks.
                    let most = if rev % 500 == 0 { 700 } else { 8 };
                    let del = next((len - pos).min(most)) + 1;
                    comps.push(Component::Delete(del));
                    pos += del;
                } else {
                    comps.push(Component::Insert(s));
                    model.extend(std::iter::repeat_n(rev, s.chars().count()));
                }
            }
            comps.push(Component::Retain(len - pos));
            model.extend_from_slice(&revs[pos..]);
            let op = TextOp::from_components(comps);
            text = op.apply_str(&text).expect("op applies");
            blame.apply(&op, Revision(rev)).expect("blame applies");
            revs = model;
            assert_eq!(blame.len(), text.chars().count(), "rev {rev}");
            if rev % 500 == 0 {
                assert_eq!(blame.lines(&text), naive_lines(&revs, &text), "rev {rev}");
            }
        }
        assert!(
            blame.chunks.len() > 4,
            "the test must split chunks: {} chunks, {} chars",
            blame.chunks.len(),
            blame.len()
        );
        let wrong = TextOp::from_components([Component::Retain(text.chars().count() + 1)]);
        assert!(blame.apply(&wrong, Revision(0)).is_err());
    }

    #[test]
    fn groups_split_on_author_and_gap() {
        let ops = [
            record(1, "a", 0, ins(0, "x", 0)),
            record(2, "a", 1_000, ins(0, "y", 1)),
            record(3, "b", 2_000, ins(0, "z", 2)),
            record(4, "b", 100_000, ins(0, "w", 3)),
        ];
        let mut groups = Vec::new();
        group_ops(&mut groups, &ops[..3], GROUP_GAP_MS);
        group_ops(&mut groups, &ops[3..], GROUP_GAP_MS);
        let spans: Vec<_> = groups.iter().map(|g| (g.from, g.to, g.inserted)).collect();
        assert_eq!(spans, vec![(0, 2, 2), (2, 3, 1), (3, 4, 1)]);
    }

    #[test]
    fn hunks_rebuild_the_new_text() {
        let old = "a\nb\nc\nd\ne\nf\ng\nh\n";
        let new = "a\nB\nc\nd\ne\nf\ng\nh\ni";
        let hunks = line_diff(old, new, 1);
        assert_eq!(hunks.len(), 2);
        assert_eq!((hunks[0].old_start, hunks[0].old_lines), (1, 3));
        assert!(unified_diff(old, new, "a", "b").starts_with("--- a\n+++ b\n"));
    }
}
