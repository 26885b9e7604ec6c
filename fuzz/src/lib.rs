//! Checks shared by the fuzz targets: what must hold for every client
//! message and every op the server accepts. A failed assertion here is a
//! finding, as is any panic or hang inside Tandem.
//!
//! The oracles are independent of the code under test where they can be:
//! an op's expected validity and its effect are computed from the JSON
//! (`serde_json::Value`) by [`expect_parse`] and [`naive_apply`], not from
//! `TextOp`'s own components.

use std::sync::LazyLock;

use ropey::Rope;
use serde_json::Value;
use tandem::config::{self, Limits};
use tandem::ids::ClientId;
use tandem::net::session::valid_language;
use tandem::ot::{Component, OpLimits, OtError, Selection, TextOp};
use tandem::protocol::ClientMsg;

/// The limits the server parses ops with, from its default settings
/// (`net::session` does `OpLimits::from(&settings.limits)`).
pub fn server_limits() -> OpLimits {
    OpLimits::from(&Limits::default())
}

/// Characters of the test text: one-, two-, three- and four-byte UTF-8,
/// CR and LF (ropey treats CRLF as one line break), combining marks.
const ALPHABET: &[char] = &[
    'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', 'p', 'q', 'r',
    's', 't', 'u', 'v', 'w', 'x', 'y', 'z', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9',
    ' ', '\t', '\r', '\n', '{', '}', '"', '\\', 'é', 'ß', 'Ω', 'Ж', 'א', 'ع', '漢', '字', '日',
    '本', '😀', '👍', '🏽', '\u{200d}', '\u{301}', '\u{feff}', '\u{2028}', '\r', '\n', '\n',
];

/// Longest text the targets build: the largest document the server allows.
pub const BIG_LEN: usize = config::MAX_DOCUMENT_CHARS;

/// Texts up to this many characters are compared character by character
/// with the reference apply; longer ones only by length (the rope work is
/// still done, at the op's real positions).
pub const REF_CAP: usize = 1 << 14;

fn char_at(i: usize) -> char {
    // A period that is not a multiple of the alphabet's length, so that a
    // shifted text is unlikely to look unchanged.
    ALPHABET[(i * 7 + i / ALPHABET.len()) % ALPHABET.len()]
}

static BIG: LazyLock<Rope> = LazyLock::new(|| {
    let s: String = (0..BIG_LEN).map(char_at).collect();
    Rope::from_str(&s)
});

static REF: LazyLock<Vec<char>> = LazyLock::new(|| (0..REF_CAP).map(char_at).collect());

/// A rope of `len` characters, in O(log n): a clone of a shared big rope,
/// cut to length.
pub fn rope_of(len: usize) -> Rope {
    assert!(len <= BIG_LEN, "no document is longer than {BIG_LEN}");
    let mut r = BIG.clone();
    let _ = r.split_off(len);
    r
}

/// The same text as [`rope_of`], as characters, for `len <= REF_CAP`.
pub fn chars_of(len: usize) -> &'static [char] {
    &REF[..len]
}

/// One component as the protocol defines it, read from `serde_json::Value`.
#[derive(Debug, Clone, PartialEq)]
pub enum Model {
    /// An integer within i64: retain when positive, delete when negative.
    Int(i64),
    /// A string: insert.
    Str(String),
}

/// The components of a parsed JSON value when it has the shape of an op (an
/// array of i64 integers and strings); `None` for any other shape.
pub fn model_of(v: &Value) -> Option<Vec<Model>> {
    v.as_array()?
        .iter()
        .map(|c| match c {
            // `as_i64` is None for floats (`1.0`, `1e3`, `-0`) and for
            // integers above i64::MAX.
            Value::Number(n) => n.as_i64().map(Model::Int),
            Value::String(s) => Some(Model::Str(s.clone())),
            _ => None,
        })
        .collect()
}

/// The components of a validated op, in the same form.
pub fn model_of_op(op: &TextOp) -> Vec<Model> {
    op.components()
        .map(|c| match c {
            Component::Retain(n) => Model::Int(i64::try_from(n).expect("retain fits i64")),
            Component::Delete(n) => Model::Int(-i64::try_from(n).expect("delete fits i64")),
            Component::Insert(s) => Model::Str(s.to_owned()),
        })
        .collect()
}

/// `(base_len, target_len)` when the protocol accepts the op under
/// `limits`, computed without overflow; `None` when it must be refused.
pub fn expect_parse(m: &[Model], limits: &OpLimits) -> Option<(usize, usize)> {
    if m.len() > limits.max_components {
        return None;
    }
    let (mut base, mut kept, mut inserted) = (0u128, 0u128, 0u128);
    for c in m {
        match c {
            Model::Int(0) => return None,
            Model::Int(n) => {
                base += u128::from(n.unsigned_abs());
                if *n > 0 {
                    kept += u128::from(n.unsigned_abs());
                }
                if base > limits.max_document_chars as u128 {
                    return None;
                }
            }
            Model::Str(s) => {
                inserted += s.chars().count() as u128;
                if inserted > limits.max_insert_chars as u128 {
                    return None;
                }
            }
        }
    }
    Some((base as usize, (kept + inserted) as usize))
}

/// The op applied to `text` the obvious way, component by component.
pub fn naive_apply(m: &[Model], text: &[char]) -> Vec<char> {
    let mut out = Vec::with_capacity(text.len());
    let mut pos = 0;
    for c in m {
        match c {
            Model::Int(n) if *n > 0 => {
                let n = *n as usize;
                out.extend_from_slice(&text[pos..pos + n]);
                pos += n;
            }
            Model::Int(n) => pos += n.unsigned_abs() as usize,
            Model::Str(s) => out.extend(s.chars()),
        }
    }
    assert_eq!(pos, text.len(), "reference apply: op does not span the text");
    out
}

fn same_text(rope: &Rope, chars: &[char]) -> bool {
    rope.len_chars() == chars.len() && rope.chars().eq(chars.iter().copied())
}

/// Applies `op` to a copy of `text` with no size limit.
fn applied(op: &TextOp, text: &Rope) -> Rope {
    let mut r = text.clone();
    op.apply(&mut r, usize::MAX)
        .unwrap_or_else(|e| panic!("op on {} chars does not apply: {e}", text.len_chars()));
    r
}

/// Parses `json` as the op of a message, the way the server reads it, and
/// checks the result against the protocol's definition. Returns the op when
/// it is valid.
pub fn parse_and_check(json: &str, limits: &OpLimits) -> Option<TextOp> {
    let raw = serde_json::from_str::<tandem::ot::RawOp>(json);
    let value = serde_json::from_str::<Value>(json);
    let model = value.as_ref().ok().and_then(model_of);
    match (&raw, &model) {
        (Ok(_), None) => panic!("RawOp accepted JSON that is not an array of i64s and strings"),
        (Err(e), Some(_)) => panic!("RawOp refused an array of i64s and strings: {e}"),
        _ => {}
    }
    let raw = raw.ok()?;
    let model = model.expect("checked above");
    let expected = expect_parse(&model, limits);
    let parsed = TextOp::parse(&raw, limits);
    let op = match (parsed, expected) {
        (Ok(op), Some((base, target))) => {
            assert_eq!(op.base_len(), base, "base_len");
            assert_eq!(op.target_len(), target, "target_len");
            op
        }
        (Err(_), None) => return None,
        (Ok(op), None) => panic!("accepted an op the limits refuse: {op:?}"),
        (Err(e), Some(_)) => panic!("refused a valid op: {e}"),
    };
    check_op(&op, limits, Some(&model));
    Some(op)
}

/// What must hold for every validated op.
pub fn check_op(op: &TextOp, limits: &OpLimits, raw: Option<&[Model]>) {
    let base = op.base_len();
    let target = op.target_len();
    assert!(base <= limits.max_document_chars);
    assert!(target <= base + limits.max_insert_chars);

    // Its components are normalised and add up.
    let comps = model_of_op(op);
    assert_eq!(comps.len(), op.len());
    assert_eq!(op.is_empty(), comps.is_empty());
    assert!(
        comps
            .iter()
            .all(|c| !matches!(c, Model::Int(0)) && *c != Model::Str(String::new())),
        "zero count or empty insert in {op:?}"
    );
    assert_eq!(
        expect_parse(&comps, &OpLimits {
            max_components: usize::MAX,
            max_insert_chars: usize::MAX,
            max_document_chars: usize::MAX,
        }),
        Some((base, target)),
        "components do not add up to base_len/target_len"
    );

    // Its JSON parses back to the same op.
    let json = op.to_json();
    let raw_again: tandem::ot::RawOp =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("own JSON {json:?}: {e}"));
    let again = TextOp::parse(&raw_again, limits).unwrap_or_else(|e| panic!("own JSON: {e}"));
    assert_eq!(again, *op, "JSON round trip");

    // Applied to a text of the wrong length, it is refused and leaves the text.
    if base < BIG_LEN {
        let mut wrong = rope_of(base + 1);
        assert!(matches!(
            op.apply(&mut wrong, usize::MAX),
            Err(OtError::LengthMismatch { .. })
        ));
        assert_eq!(wrong.len_chars(), base + 1);
    }

    // Applied to a text of its base length, with the server's size limit.
    let text = rope_of(base);
    let mut rope = text.clone();
    let max = limits.max_document_chars;
    match op.apply(&mut rope, max) {
        Err(OtError::DocumentTooLarge { .. }) if target > max && target > base => {
            assert_eq!(rope.len_chars(), base, "a refused op changed the text");
            return;
        }
        Err(e) => panic!("valid op on {base} chars refused: {e}"),
        Ok(()) if target > max && target > base => panic!("grew the document past {max}"),
        Ok(()) => {}
    }
    assert_eq!(rope.len_chars(), target, "applied length != target_len");
    if base <= REF_CAP {
        let text_chars = chars_of(base);
        let expected = naive_apply(&comps, text_chars);
        assert!(same_text(&rope, &expected), "rope apply != reference apply");
        if let Some(raw) = raw {
            assert_eq!(naive_apply(raw, text_chars), expected, "normalising changed the op's effect");
        }
        if op.is_noop() {
            assert!(same_text(&rope, text_chars), "a no-op changed the text");
        }
    }

    // Identity transforms and compositions change nothing.
    let id = TextOp::identity(base);
    let (op2, id2) = op.transform(&id).expect("transform against identity");
    assert_eq!((op2.base_len(), op2.target_len()), (base, target));
    assert_eq!((id2.base_len(), id2.target_len()), (target, target));
    let after = op.compose(&TextOp::identity(target)).expect("compose with identity");
    let before = id.compose(op).expect("identity then op");
    assert_eq!((after.base_len(), after.target_len()), (base, target));
    assert_eq!((before.base_len(), before.target_len()), (base, target));
    if base <= REF_CAP {
        assert_eq!(applied(&op2, &text), rope);
        assert_eq!(applied(&after, &text), rope);
        assert_eq!(applied(&before, &text), rope);
    }
}

/// Two concurrent ops: transform both ways (TP1) and compose.
pub fn check_pair(a: &TextOp, b: &TextOp) -> Option<(TextOp, TextOp)> {
    if a.base_len() != b.base_len() {
        assert!(a.transform(b).is_err(), "transformed ops of different bases");
        assert!(b.transform(a).is_err(), "transformed ops of different bases");
        return None;
    }
    let base = a.base_len();
    let text = rope_of(base);
    let (a1, b1) = a.transform(b).expect("transform a b");
    let (b2, a2) = b.transform(a).expect("transform b a");
    for (x, y, x1, y1) in [(a, b, &a1, &b1), (b, a, &b2, &a2)] {
        // x1 applies after y, y1 after x, and both reach the same length.
        assert_eq!(x1.base_len(), y.target_len());
        assert_eq!(y1.base_len(), x.target_len());
        assert_eq!(x1.target_len(), y1.target_len());
        let xy = x.compose(y1).expect("compose x y'");
        let yx = y.compose(x1).expect("compose y x'");
        assert_eq!((xy.base_len(), xy.target_len()), (base, y1.target_len()));
        assert_eq!((yx.base_len(), yx.target_len()), (base, x1.target_len()));
        let left = applied(y1, &applied(x, &text));
        let right = applied(x1, &applied(y, &text));
        assert_eq!(left.len_chars(), right.len_chars());
        if base <= REF_CAP && left.len_chars() <= 4 * REF_CAP {
            assert_eq!(left, right, "TP1: x then y' != y then x'");
            assert_eq!(applied(&xy, &text), left, "compose(x, y') != x then y'");
            assert_eq!(applied(&yx, &text), left, "compose(y, x') != y then x'");
        }
    }
    Some((a1, b1))
}

/// A selection against an op: `fits`, and `transform` when it fits (the
/// server transforms only selections it has checked with `fits`).
pub fn check_selection(sel: &Selection, op: &TextOp) {
    let fits = |len: usize| sel.ranges.iter().all(|r| r.anchor <= len && r.head <= len);
    for len in [0, op.base_len(), op.target_len(), usize::MAX] {
        assert_eq!(sel.fits(len), fits(len));
    }
    if !sel.fits(op.base_len()) {
        return;
    }
    let moved = sel.transform(op);
    assert_eq!(moved.ranges.len(), sel.ranges.len());
    assert!(moved.fits(op.target_len()), "transformed selection outside the result");
    for (r, m) in sel.ranges.iter().zip(&moved.ranges) {
        // transformIndex is monotone: the order of anchor and head holds.
        if r.anchor <= r.head {
            assert!(m.anchor <= m.head, "{r:?} -> {m:?}");
        }
        if r.head <= r.anchor {
            assert!(m.head <= m.anchor, "{r:?} -> {m:?}");
        }
    }
    if op.is_noop() {
        assert_eq!(moved, *sel, "a no-op moved the selection");
    }
}

/// One text frame's content, handled the way `net::session` handles it:
/// parsed as a [`ClientMsg`], then the op validated against the server's
/// limits and applied, the selection checked and moved.
pub fn check_client_text(text: &str) {
    let Ok(msg) = serde_json::from_str::<ClientMsg>(text) else {
        return;
    };
    let limits = server_limits();
    match msg {
        ClientMsg::Op {
            op, selection, ..
        } => {
            let Ok(op) = TextOp::parse(&op, &limits) else {
                return;
            };
            check_op(&op, &limits, None);
            if let Some(sel) = selection {
                check_selection(&sel, &op);
                // The selection comes after the op: the server checks it
                // against the op's result.
                check_selection(&sel, &TextOp::identity(op.target_len()));
            }
        }
        ClientMsg::Presence { selection, .. } => {
            if let Some(sel) = selection {
                let end = sel
                    .ranges
                    .iter()
                    .map(|r| r.anchor.max(r.head))
                    .max()
                    .unwrap_or(0);
                check_selection(&sel, &TextOp::identity(end.min(BIG_LEN)));
            }
        }
        ClientMsg::Join { client, .. } => {
            if let Some(c) = client {
                let _ = ClientId::parse(&c);
            }
        }
        ClientMsg::Language { language } => {
            if valid_language(&language) {
                assert!(!language.is_empty() && language.len() <= config::MAX_LANGUAGE_LEN);
            }
        }
    }
}
