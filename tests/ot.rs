//! The OT core through its public API (`tandem::ot`), without a network.
//!
//! - Properties (proptest, fixed seed, no persistence file): apply agrees with
//!   a naive `Vec<char>` model; base and target lengths agree with apply;
//!   transform satisfies TP1; compose equals sequential apply; selections stay
//!   inside the document and move as ot.js `transformIndex` does; ops
//!   round-trip through their JSON; parsing arbitrary component lists accepts
//!   exactly what an independent model of the limits accepts.
//! - Adversarial JSON: every malformed or oversized op is refused, each within
//!   a deadline, so a hang (such as the crate's with
//!   `[-9223372036854775808, 9223372036854775809]`) fails instead of stalling.
//! - Apply refuses an op whose length does not match the document, leaving
//!   the text as it was.
//! - The shared vectors in `tests/vectors/ot.json`, which the TypeScript
//!   client's suite reads too. A missing file fails the test.
//!
//! Documents mix ASCII, newlines (LF and CRLF), astral emoji (😀, 👍🏽 which
//! is two code points), CJK and combining marks: lengths are in Unicode
//! scalar values.

use std::sync::mpsc;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, RngAlgorithm, RngSeed};
use ropey::Rope;
use serde_json::Value;
use tandem::ot::{Component, OpLimits, OtError, Range, RawOp, Selection, TextOp};

// ---------------------------------------------------------------- helpers

/// Deterministic runs: a fixed seed, and no regression file written.
fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        rng_algorithm: RngAlgorithm::ChaCha,
        rng_seed: RngSeed::Fixed(0x7a4d_0e5e_ed01),
        ..ProptestConfig::default()
    }
}

/// An op component as generated, before `TextOp` merges anything.
#[derive(Debug, Clone)]
enum Step {
    Retain(usize),
    Insert(String),
    Delete(usize),
}

fn components(steps: &[Step]) -> Vec<Component<'_>> {
    steps
        .iter()
        .map(|s| match s {
            Step::Retain(n) => Component::Retain(*n),
            Step::Insert(t) => Component::Insert(t),
            Step::Delete(n) => Component::Delete(*n),
        })
        .collect()
}

fn op_of(steps: &[Step]) -> TextOp {
    TextOp::from_components(components(steps))
}

/// Parses ot.js JSON as a client's op is parsed: deserialise, then validate.
fn parse_with(json: &str, limits: &OpLimits) -> Result<TextOp, String> {
    let raw: RawOp = serde_json::from_str(json).map_err(|e| format!("json: {e}"))?;
    TextOp::parse(&raw, limits).map_err(|e| format!("parse: {e}"))
}

fn parse(json: &str) -> Result<TextOp, String> {
    parse_with(json, &OpLimits::default())
}

/// The naive model: walk the components over a `Vec<char>`. `None` when the
/// components do not span the document exactly.
fn naive_apply<'a>(doc: &str, comps: impl IntoIterator<Item = Component<'a>>) -> Option<String> {
    let chars: Vec<char> = doc.chars().collect();
    let mut out = String::new();
    let mut pos: usize = 0;
    for c in comps {
        match c {
            Component::Retain(n) => {
                out.extend(chars.get(pos..pos.checked_add(n)?)?);
                pos += n;
            }
            Component::Insert(s) => out.push_str(s),
            Component::Delete(n) => {
                chars.get(pos..pos.checked_add(n)?)?;
                pos += n;
            }
        }
    }
    (pos == chars.len()).then_some(out)
}

/// ot.js `transformIndex`, written from its definition: text inserted exactly
/// at the index goes before it; a deletion spanning it pulls it to its start.
fn model_index(index: usize, op: &TextOp) -> usize {
    let (mut old, mut new) = (0, 0);
    for c in op.components() {
        match c {
            Component::Retain(n) if old + n > index => return new + (index - old),
            Component::Retain(n) => (old, new) = (old + n, new + n),
            Component::Insert(s) => new += s.chars().count(),
            Component::Delete(n) if old + n > index => return new,
            Component::Delete(n) => old += n,
        }
    }
    new + (index - old)
}

fn chars(s: &str) -> usize {
    s.chars().count()
}

/// Runs `f` on its own thread and fails the test if it has not finished
/// within the deadline (a hang) or if it panicked.
fn within_deadline<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(v) => v,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: still running after 10 s"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{what}: panicked"),
    }
}

// ------------------------------------------------------------- strategies

/// Text mixing the cases where characters, UTF-16 units and bytes differ.
fn text(max_fragments: usize) -> impl Strategy<Value = String> {
    let fragment = prop::sample::select(vec![
        "a", "b", "Z", " ", "\t", "\n", "\r\n", "😀", "👍🏽", "🇫🇷", "漢", "字", "e\u{301}",
        "\u{301}", "é", "ß",
    ]);
    prop::collection::vec(fragment, 0..max_fragments).prop_map(|v| v.concat())
}

/// Components spanning exactly `len` characters, with unmerged neighbours and
/// empty inserts left in, as a careless client might send them.
fn steps(len: usize) -> impl Strategy<Value = Vec<Step>> {
    (
        prop::collection::vec((0..3u8, 1..6usize, text(3)), 0..8),
        any::<bool>(),
    )
        .prop_map(move |(raw, delete_tail)| {
            let mut left = len;
            let mut out = Vec::new();
            for (kind, n, s) in raw {
                let n = n.min(left);
                match kind {
                    0 if n > 0 => out.push(Step::Retain(n)),
                    1 if n > 0 => out.push(Step::Delete(n)),
                    _ => {
                        out.push(Step::Insert(s));
                        continue;
                    }
                }
                left -= n;
            }
            if left > 0 {
                out.push(if delete_tail {
                    Step::Delete(left)
                } else {
                    Step::Retain(left)
                });
            }
            out
        })
}

fn doc_and_op() -> impl Strategy<Value = (String, Vec<Step>)> {
    text(24).prop_flat_map(|doc| {
        let n = chars(&doc);
        (Just(doc), steps(n))
    })
}

fn doc_and_two_ops() -> impl Strategy<Value = (String, Vec<Step>, Vec<Step>)> {
    text(24).prop_flat_map(|doc| {
        let n = chars(&doc);
        (Just(doc), steps(n), steps(n))
    })
}

/// A document, an op on it, and an op on that op's result.
fn doc_and_sequential_ops() -> impl Strategy<Value = (String, Vec<Step>, Vec<Step>)> {
    doc_and_op().prop_flat_map(|(doc, a)| {
        let after = op_of(&a).target_len();
        (Just(doc), Just(a), steps(after))
    })
}

// ------------------------------------------------------------- properties

proptest! {
    #![proptest_config(config())]

    #[test]
    fn apply_agrees_with_naive_model((doc, steps) in doc_and_op()) {
        let op = op_of(&steps);
        let expected = naive_apply(&doc, components(&steps)).expect("generated to span doc");
        prop_assert_eq!(naive_apply(&doc, op.components()), Some(expected.clone()));
        let got = op.apply_str(&doc).expect("applies");
        prop_assert_eq!(&got, &expected);
        prop_assert_eq!(op.base_len(), chars(&doc));
        prop_assert_eq!(op.target_len(), chars(&got));
        let mut rope = Rope::from_str(&doc);
        op.apply(&mut rope, op.target_len()).expect("fits its own target length");
        prop_assert_eq!(rope.to_string(), expected);
    }

    #[test]
    fn transform_satisfies_tp1((doc, a, b) in doc_and_two_ops()) {
        let (a, b) = (op_of(&a), op_of(&b));
        let (a2, b2) = a.transform(&b).expect("same base");
        prop_assert_eq!(a2.base_len(), b.target_len());
        prop_assert_eq!(b2.base_len(), a.target_len());
        let left = b2.apply_str(&a.apply_str(&doc).expect("a")).expect("b'");
        let right = a2.apply_str(&b.apply_str(&doc).expect("b")).expect("a'");
        prop_assert_eq!(&left, &right);
        prop_assert_eq!(a2.target_len(), chars(&left));
        let via_compose = a.compose(&b2).expect("a then b'").apply_str(&doc).expect("a.b'");
        prop_assert_eq!(via_compose, left);
    }

    #[test]
    fn compose_equals_sequential_apply((doc, a, b) in doc_and_sequential_ops()) {
        let (a, b) = (op_of(&a), op_of(&b));
        let ab = a.compose(&b).expect("b is based on a's result");
        prop_assert_eq!(ab.base_len(), a.base_len());
        prop_assert_eq!(ab.target_len(), b.target_len());
        let sequential = b.apply_str(&a.apply_str(&doc).expect("a")).expect("b");
        prop_assert_eq!(ab.apply_str(&doc).expect("a.b"), sequential);
    }

    #[test]
    fn selection_transform_stays_in_document(
        (steps, offsets) in doc_and_op().prop_flat_map(|(doc, steps)| {
            let n = chars(&doc);
            (Just(steps), prop::collection::vec((0..=n, 0..=n), 0..5))
        })
    ) {
        let op = op_of(&steps);
        let ranges = offsets.iter().map(|&(anchor, head)| Range { anchor, head }).collect();
        let sel = Selection { ranges };
        prop_assert!(sel.fits(op.base_len()));
        let moved = sel.transform(&op);
        prop_assert!(moved.fits(op.target_len()), "{:?} -> {:?}", sel, moved);
        prop_assert_eq!(moved.ranges.len(), sel.ranges.len());
        for (before, after) in sel.ranges.iter().zip(&moved.ranges) {
            prop_assert_eq!(after.anchor, model_index(before.anchor, &op));
            prop_assert_eq!(after.head, model_index(before.head, &op));
        }
    }

    #[test]
    fn json_round_trips((_doc, steps) in doc_and_op()) {
        let op = op_of(&steps);
        let json = op.to_json();
        let back = parse(&json).expect("an op's own JSON parses");
        prop_assert_eq!(&back, &op);
        prop_assert_eq!(back.to_json(), json);
    }

    #[test]
    fn apply_refuses_wrong_length(
        (doc, steps) in text(12).prop_flat_map(|doc| {
            let n = chars(&doc);
            let wrong = prop_oneof![(n + 1)..(n + 4), 0..n.max(1)]
                .prop_filter("not the document's length", move |m| *m != n);
            (Just(doc), wrong.prop_flat_map(steps))
        })
    ) {
        let op = op_of(&steps);
        let mut rope = Rope::from_str(&doc);
        let err = op.apply(&mut rope, usize::MAX).expect_err("length differs");
        prop_assert_eq!(err, OtError::LengthMismatch { op_len: op.base_len(), doc_len: chars(&doc) });
        prop_assert_eq!(rope.to_string(), doc.clone());
        prop_assert!(op.apply_str(&doc).is_err());
    }

    #[test]
    fn apply_refuses_growth_past_the_limit((doc, steps) in doc_and_op()) {
        let op = op_of(&steps);
        prop_assume!(op.target_len() > op.base_len());
        let mut rope = Rope::from_str(&doc);
        let err = op.apply(&mut rope, op.target_len() - 1).expect_err("too large");
        prop_assert_eq!(err, OtError::DocumentTooLarge { max: op.target_len() - 1 });
        prop_assert_eq!(rope.to_string(), doc);
    }

    /// Any list of JSON values is accepted exactly when a model of the rules
    /// says so, and what is accepted behaves (spans its length, applies,
    /// transforms and composes without hanging).
    #[test]
    fn parse_accepts_exactly_the_valid(parts in prop::collection::vec(part(), 0..14)) {
        let limits = OpLimits { max_components: 12, max_insert_chars: 16, max_document_chars: 64 };
        let json = format!("[{}]", parts.iter().map(Part::json).collect::<Vec<_>>().join(","));
        let parsed = parse_with(&json, &limits);
        prop_assert_eq!(parsed.is_ok(), model_accepts(&parts, &limits), "{} -> {:?}", json, parsed);
        if let Ok(op) = parsed {
            let span: usize = parts.iter().map(|p| match p {
                Part::Int(n) => n.unsigned_abs() as usize,
                _ => 0,
            }).sum();
            prop_assert_eq!(op.base_len(), span);
            let doc = "x".repeat(span);
            let comps: Vec<Component<'_>> = parts.iter().map(Part::component).collect();
            prop_assert_eq!(op.apply_str(&doc).ok(), naive_apply(&doc, comps));
            let (a2, id2) = op.transform(&TextOp::identity(span)).expect("same base");
            prop_assert_eq!(&a2, &op);
            prop_assert_eq!(id2, TextOp::identity(op.target_len()));
            prop_assert_eq!(op.compose(&TextOp::identity(op.target_len())).expect("composes"), op);
        }
    }
}

/// A JSON value inside a raw op, for [`parse_accepts_exactly_the_valid`].
#[derive(Debug, Clone)]
enum Part {
    Int(i128),
    Str(String),
    Other(&'static str),
}

fn part() -> impl Strategy<Value = Part> {
    let extreme = prop::sample::select(vec![
        i128::from(i64::MIN),
        i128::from(i64::MIN) - 1,
        i128::from(i64::MAX),
        i128::from(i64::MAX) + 1,
        i128::from(u64::MAX),
        i128::from(u64::MAX) + 1,
        1 << 62,
        -(1 << 62),
        (1 << 53) + 1,
        65,
        0,
    ]);
    let other = prop::sample::select(vec![
        "1.5", "-0", "0.0", "1e3", "-1.0", "null", "true", "{}", "[1]", "[]", "\"\"",
    ]);
    prop_oneof![
        5 => (-24i128..24).prop_map(Part::Int),
        1 => extreme.prop_map(Part::Int),
        1 => other.prop_map(Part::Other),
        3 => text(3).prop_map(Part::Str),
    ]
}

impl Part {
    fn json(&self) -> String {
        match self {
            Part::Int(n) => n.to_string(),
            Part::Str(s) => serde_json::to_string(s).expect("string"),
            Part::Other(raw) => (*raw).to_owned(),
        }
    }

    /// Only called on parts of an accepted op.
    fn component(&self) -> Component<'_> {
        match self {
            Part::Int(n) if *n > 0 => Component::Retain(*n as usize),
            Part::Int(n) => Component::Delete(n.unsigned_abs() as usize),
            Part::Str(s) => Component::Insert(s),
            Part::Other("\"\"") => Component::Insert(""),
            Part::Other(raw) => unreachable!("{raw} is never accepted"),
        }
    }
}

/// The rules, stated independently of `parse.rs`.
fn model_accepts(parts: &[Part], limits: &OpLimits) -> bool {
    let (mut span, mut inserted) = (0i128, 0usize);
    for p in parts {
        match p {
            Part::Int(n) if *n == 0 || i64::try_from(*n).is_err() => return false,
            Part::Int(n) => span += n.abs(),
            Part::Str(s) => inserted += chars(s),
            Part::Other(raw) => {
                if *raw != "\"\"" {
                    return false;
                }
            }
        }
    }
    parts.len() <= limits.max_components
        && span <= limits.max_document_chars as i128
        && inserted <= limits.max_insert_chars
}

#[path = "ot/adversarial.rs"]
mod adversarial;
#[path = "ot/vectors.rs"]
mod vectors;
