//! The op parser and the OT core behind it: `RawOp` deserialisation,
//! `TextOp::parse`, apply, transform (both ways, TP1), compose, selections.
//!
//! Two input modes:
//!
//! - an input starting with `[` is raw JSON, one line per item: op `a`,
//!   optionally op `b`, optionally a selection (`{"ranges":[...]}`), parsed
//!   with the server's limits. The seed corpus is written this way.
//! - anything else is decoded with `arbitrary` into a structured input that
//!   renders op JSON with hostile numbers (i64::MIN, u64::MAX, 2^53, 2^64,
//!   floats, `-0`), deep nesting, long strings, `\u` escapes (lone
//!   surrogates), junk tokens, and wraps op `a` in a client message. Both ops
//!   can be padded to the same base length, so TP1 is checked often, and the
//!   limits can be small, so every limit's edge is cheap to reach.
#![no_main]

use std::fmt::Write;

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use tandem::ot::{OpLimits, RawOp, Selection, TextOp};
use tandem::protocol::ClientMsg;
use tandem_fuzz::{check_pair, check_selection, parse_and_check, server_limits};

/// Numbers that sit on an edge: of i64, u64, f64's exact integers (2^53),
/// the server's limits, and JSON's grammar.
const SPECIALS: &[&str] = &[
    "0",
    "-0",
    "1",
    "-1",
    "9223372036854775807",
    "-9223372036854775807",
    "-9223372036854775808",
    "9223372036854775808",
    "-9223372036854775809",
    "18446744073709551615",
    "-18446744073709551615",
    "18446744073709551616",
    "36893488147419103232",
    "9007199254740991",
    "9007199254740992",
    "9007199254740993",
    "-9007199254740992",
    "8388608",
    "8388609",
    "-8388608",
    "-8388609",
    "4194304",
    "1048576",
    "1048577",
    "20000",
    "2147483648",
    "-2147483649",
    "4294967296",
    "1000000000000000000000000000000000000000",
    "-1000000000000000000000000000000000000000",
    "1e3",
    "1E400",
    "-1e-400",
    "1.0",
    "-0.0",
    "0.5",
    "1e19",
    "01",
    "+1",
    "-",
    "1.",
    ".5",
    "NaN",
    "Infinity",
    "0x10",
];

/// Tokens that are not components, or not JSON.
const JUNK: &[&str] = &[
    "null", "true", "false", "{}", "[]", "[1]", "{\"a\":1}", "", ",", "]", "[", "\"", "1 2", "\"a\" \"b\"",
    "\u{0}", "/*x*/", "'a'", "\"\\x41\"", "\"\\u12\"", "\"\\ud800\"", "\"\\udc00\\ud800\"",
];

#[derive(Arbitrary, Debug)]
enum Num {
    Small(i8),
    Mid(i32),
    I64(i64),
    U64(u64),
    Special(u8),
    Float(f64),
}

#[derive(Arbitrary, Debug)]
enum Text {
    /// Any string, escaped as JSON.
    Plain(String),
    /// A string between quotes as is: quotes, backslashes and control
    /// characters can break the JSON.
    Raw(String),
    /// UTF-16 code units as `\uXXXX`: surrogate pairs, lone surrogates.
    Escapes(Vec<u16>),
    /// One character repeated up to 8,191 times, or, when `huge` is 255,
    /// within 128 of the server's 1M-character insert limit (rarely, since
    /// such an input costs milliseconds).
    Long { unit: char, count: u16, huge: u8 },
}

#[derive(Arbitrary, Debug)]
enum Comp {
    Num(Num),
    Text(Text),
    /// Levels of `[`...`]` or `{"k":`...`}` around a component: up to 300
    /// (serde_json stops at 128), or rarely (`depth >= 0xff00`) 4 × `depth`,
    /// about 260,000.
    Nested { depth: u16, object: bool, inner: Box<Comp> },
    Junk(u8),
}

#[derive(Arbitrary, Debug)]
enum Pos {
    Small(u16),
    Num(Num),
}

#[derive(Arbitrary, Debug)]
enum LimitsSpec {
    Server,
    Small { components: u8, insert: u8, document: u16 },
}

#[derive(Arbitrary, Debug)]
struct Message {
    rev: Num,
    seq: Num,
    type_last: bool,
    duplicate_type: bool,
    extra: Option<Comp>,
}

#[derive(Arbitrary, Debug)]
struct Input {
    limits: LimitsSpec,
    a: Vec<Comp>,
    b: Vec<Comp>,
    /// Pad the op with the shorter base with a retain, so both span the same text.
    balance: bool,
    selection: Option<Vec<(Pos, Pos)>>,
    /// Whitespace between tokens.
    ws: u8,
    message: Option<Message>,
}

/// Rendered JSON is cut off past this (the server refuses frames over 1 MiB
/// before parsing; the structured mode goes a little beyond, to reach the
/// 1M-character insert limit).
const MAX_RENDER: usize = 3 << 20;

struct Out {
    s: String,
    ws: &'static str,
    /// Whether `Text::Long` may be huge: only under the server's limits
    /// (small limits refuse far shorter strings).
    huge: bool,
}

impl Out {
    fn num(&mut self, n: &Num) {
        let _ = match n {
            Num::Small(v) => write!(self.s, "{v}"),
            Num::Mid(v) => write!(self.s, "{v}"),
            Num::I64(v) => write!(self.s, "{v}"),
            Num::U64(v) => write!(self.s, "{v}"),
            Num::Special(i) => write!(self.s, "{}", SPECIALS[*i as usize % SPECIALS.len()]),
            Num::Float(f) => write!(self.s, "{f:?}"),
        };
    }

    fn text(&mut self, t: &Text) {
        match t {
            Text::Plain(s) => self.s.push_str(&serde_json::to_string(s).expect("a string")),
            Text::Raw(s) => {
                self.s.push('"');
                self.s.push_str(s);
                self.s.push('"');
            }
            Text::Escapes(units) => {
                self.s.push('"');
                for u in units {
                    let _ = write!(self.s, "\\u{u:04x}");
                }
                self.s.push('"');
            }
            Text::Long { unit, count, huge } => {
                let n = if self.huge && *huge == u8::MAX {
                    tandem::config::MAX_INSERT_CHARS - 128 + usize::from(*count % 256)
                } else {
                    usize::from(*count % 8192)
                };
                let n = n.min((MAX_RENDER - self.s.len().min(MAX_RENDER)) / unit.len_utf8());
                let s: String = std::iter::repeat_n(*unit, n).collect();
                self.s.push_str(&serde_json::to_string(&s).expect("a string"));
            }
        }
    }

    fn comp(&mut self, c: &Comp) {
        match c {
            Comp::Num(n) => self.num(n),
            Comp::Text(t) => self.text(t),
            Comp::Nested {
                depth,
                object,
                inner,
            } => {
                let depth = if *depth >= 0xff00 {
                    4 * usize::from(*depth)
                } else {
                    usize::from(*depth % 300)
                };
                if self.s.len() + 10 * depth > MAX_RENDER {
                    return;
                }
                let (open, close) = if *object { ("{\"k\":", "}") } else { ("[", "]") };
                for _ in 0..depth {
                    self.s.push_str(open);
                }
                self.comp(inner);
                for _ in 0..depth {
                    self.s.push_str(close);
                }
            }
            Comp::Junk(i) => self.s.push_str(JUNK[*i as usize % JUNK.len()]),
        }
    }

    fn op(&mut self, comps: &[Comp], pad: Option<usize>) {
        self.s.push('[');
        self.s.push_str(self.ws);
        let mut first = true;
        for c in comps {
            if self.s.len() > MAX_RENDER {
                break;
            }
            if !first {
                self.s.push(',');
                self.s.push_str(self.ws);
            }
            first = false;
            self.comp(c);
        }
        if let Some(n) = pad {
            if !first {
                self.s.push(',');
            }
            let _ = write!(self.s, "{n}");
        }
        self.s.push_str(self.ws);
        self.s.push(']');
    }

    fn pos(&mut self, p: &Pos) {
        match p {
            Pos::Small(v) => {
                let _ = write!(self.s, "{v}");
            }
            Pos::Num(n) => self.num(n),
        }
    }

    fn selection(&mut self, ranges: &[(Pos, Pos)]) {
        self.s.push_str("{\"ranges\":[");
        for (i, (anchor, head)) in ranges.iter().enumerate() {
            if i > 0 {
                self.s.push(',');
            }
            self.s.push_str("{\"anchor\":");
            self.pos(anchor);
            self.s.push_str(",\"head\":");
            self.pos(head);
            self.s.push('}');
        }
        self.s.push_str("]}");
    }
}

const WS: &[&str] = &["", " ", "\n", "\t \r\n"];

fn render_op(comps: &[Comp], ws: &'static str, huge: bool, pad: Option<usize>) -> String {
    let mut out = Out {
        s: String::new(),
        ws,
        huge,
    };
    out.op(comps, pad);
    out.s
}

fn build_limits(spec: &LimitsSpec) -> OpLimits {
    match spec {
        LimitsSpec::Server => server_limits(),
        LimitsSpec::Small {
            components,
            insert,
            document,
        } => OpLimits {
            max_components: usize::from(*components % 33),
            max_insert_chars: usize::from(*insert % 64),
            max_document_chars: usize::from(*document % 1024),
        },
    }
}

/// Op `a` inside a client `op` message, as the server receives it: the op
/// the message yields must be the one the bare JSON yields.
fn check_message(m: &Message, a_json: &str, sel_json: Option<&str>) {
    let mut out = Out {
        s: String::new(),
        ws: "",
        huge: false,
    };
    out.s.push('{');
    if !m.type_last {
        out.s.push_str("\"type\":\"op\",");
    }
    out.s.push_str("\"rev\":");
    out.num(&m.rev);
    out.s.push_str(",\"seq\":");
    out.num(&m.seq);
    if let Some(extra) = &m.extra {
        out.s.push_str(",\"x\":");
        out.comp(extra);
    }
    out.s.push_str(",\"op\":");
    out.s.push_str(a_json);
    if let Some(sel) = sel_json {
        out.s.push_str(",\"selection\":");
        out.s.push_str(sel);
    }
    if m.duplicate_type {
        out.s.push_str(",\"type\":\"presence\"");
    }
    if m.type_last {
        out.s.push_str(",\"type\":\"op\"");
    }
    out.s.push('}');
    let text = out.s;

    let direct = serde_json::from_str::<RawOp>(a_json);
    let msg = serde_json::from_str::<ClientMsg>(&text);
    if let Ok(ClientMsg::Op { op, .. }) = &msg {
        assert_eq!(
            direct.as_ref().ok(),
            Some(op),
            "the op inside a message parses differently from the bare op"
        );
    }
    let plain_u64 = |n: &Num| {
        let mut o = Out {
            s: String::new(),
            ws: "",
            huge: false,
        };
        o.num(n);
        serde_json::from_str::<u64>(&o.s).is_ok()
    };
    let sel_ok = sel_json.is_none_or(|s| serde_json::from_str::<Option<Selection>>(s).is_ok());
    if direct.is_ok()
        && plain_u64(&m.rev)
        && plain_u64(&m.seq)
        && sel_ok
        && m.extra.is_none()
        && !m.duplicate_type
    {
        assert!(
            matches!(msg, Ok(ClientMsg::Op { .. })),
            "a well-formed op message was refused: {:?}",
            msg.err()
        );
    }
    tandem_fuzz::check_client_text(&text);
}

fn run(a_json: &str, b_json: Option<&str>, sel_json: Option<&str>, limits: &OpLimits) {
    let a = parse_and_check(a_json, limits);
    let b = b_json.and_then(|j| parse_and_check(j, limits));
    let sel = sel_json.and_then(|j| serde_json::from_str::<Selection>(j).ok());
    let Some(a) = a else { return };
    if let Some(sel) = &sel {
        check_selection(sel, &a);
    }
    let Some(b) = b else { return };
    if let Some((_, b1)) = check_pair(&a, &b)
        && let Some(sel) = &sel
    {
        // As the document does for an op's own selection (after `a`),
        // moved through a concurrent op transformed past `a`.
        check_selection(sel, &b1);
    }
}

fuzz_target!(|data: &[u8]| {
    if data.first() == Some(&b'[') {
        // Raw JSON lines. Bytes that are not UTF-8 never reach the parser
        // as text (actix-ws refuses such text frames); the byte parser must
        // not panic on them either.
        let Ok(text) = std::str::from_utf8(data) else {
            let _ = serde_json::from_slice::<RawOp>(data);
            return;
        };
        let mut lines = text.splitn(3, '\n');
        let a = lines.next().unwrap_or("");
        run(a, lines.next(), lines.next(), &server_limits());
        return;
    }
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let limits = build_limits(&input.limits);
    let ws = WS[usize::from(input.ws) % WS.len()];
    let huge = matches!(input.limits, LimitsSpec::Server);
    let mut a_json = render_op(&input.a, ws, huge, None);
    let mut b_json = render_op(&input.b, ws, huge, None);
    if input.balance {
        // Pad the op with the shorter base with a retain of the difference.
        let base = |j: &str| {
            serde_json::from_str::<RawOp>(j)
                .ok()
                .and_then(|r| TextOp::parse(&r, &limits).ok())
                .map(|o| o.base_len())
        };
        if let (Some(x), Some(y)) = (base(&a_json), base(&b_json)) {
            if x < y {
                a_json = render_op(&input.a, ws, huge, Some(y - x));
            } else if y < x {
                b_json = render_op(&input.b, ws, huge, Some(x - y));
            }
        }
    }
    let sel_json = input.selection.as_ref().map(|r| {
        let mut out = Out {
            s: String::new(),
            ws,
            huge: false,
        };
        out.selection(r);
        out.s
    });
    if let Some(m) = &input.message {
        check_message(m, &a_json, sel_json.as_deref());
    }
    run(&a_json, Some(&b_json), sel_json.as_deref(), &limits);
});
