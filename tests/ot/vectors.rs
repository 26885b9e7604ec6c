//! The shared OT vectors (`tests/vectors/ot.json`), which the TypeScript
//! client's suite reads too, checked against the Rust implementation. The
//! file is part of the repository: if it is missing, empty or has a section
//! this test does not know, the test fails rather than passing vacuously.

use serde::Deserialize;

use super::*;

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/ot.json");

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Vectors {
    apply: Vec<ApplyCase>,
    transform: Vec<TransformCase>,
    compose: Vec<ComposeCase>,
    invalid: Vec<InvalidCase>,
}

#[derive(Deserialize)]
struct ApplyCase {
    name: String,
    doc: String,
    op: Value,
    result: String,
}

#[derive(Deserialize)]
struct TransformCase {
    name: String,
    a: Value,
    b: Value,
    a_prime: Value,
    b_prime: Value,
}

#[derive(Deserialize)]
struct ComposeCase {
    name: String,
    doc: String,
    a: Value,
    b: Value,
    result: Value,
}

#[derive(Deserialize)]
struct InvalidCase {
    name: String,
    doc_len: usize,
    op: Value,
}

/// Parses a vector's op as the server parses a client's.
fn op(v: &Value) -> Result<TextOp, String> {
    let raw: RawOp = serde_json::from_value(v.clone()).map_err(|e| format!("json: {e}"))?;
    TextOp::parse(&raw, &OpLimits::default()).map_err(|e| format!("parse: {e}"))
}

fn json(op: &TextOp) -> Value {
    serde_json::from_str(&op.to_json()).expect("to_json is JSON")
}

/// A document of `len` distinct characters, so TP1 can see misplacements.
fn distinct_doc(len: usize) -> String {
    (0..len)
        .map(|i| char::from_u32(0x4e00 + i as u32).expect("CJK range"))
        .collect()
}

fn load() -> Vectors {
    let text = std::fs::read_to_string(PATH)
        .unwrap_or_else(|e| panic!("{PATH} must exist (shared with the TS suite): {e}"));
    let v: Vectors = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{PATH}: {e}"));
    assert!(
        !v.apply.is_empty()
            && !v.transform.is_empty()
            && !v.compose.is_empty()
            && !v.invalid.is_empty(),
        "{PATH}: every section must have cases"
    );
    v
}

fn check_apply(c: &ApplyCase) -> Result<(), String> {
    let op = op(&c.op)?;
    let got = op.apply_str(&c.doc).map_err(|e| format!("apply: {e}"))?;
    if got != c.result {
        return Err(format!("gives {got:?}, vector says {:?}", c.result));
    }
    if naive_apply(&c.doc, op.components()).as_ref() != Some(&got) {
        return Err("the naive model disagrees".into());
    }
    Ok(())
}

fn check_transform(c: &TransformCase) -> Result<(), String> {
    let (a, b) = (op(&c.a)?, op(&c.b)?);
    let (a2, b2) = a.transform(&b).map_err(|e| format!("transform: {e}"))?;
    if json(&a2) != c.a_prime || json(&b2) != c.b_prime {
        return Err(format!(
            "gives a'={} b'={}, vector says a'={} b'={}",
            a2.to_json(),
            b2.to_json(),
            c.a_prime,
            c.b_prime
        ));
    }
    let doc = distinct_doc(a.base_len());
    let left = a.apply_str(&doc).and_then(|s| b2.apply_str(&s));
    let right = b.apply_str(&doc).and_then(|s| a2.apply_str(&s));
    if left.is_err() || left != right {
        return Err(format!("TP1 fails on {doc:?}: {left:?} vs {right:?}"));
    }
    Ok(())
}

fn check_compose(c: &ComposeCase) -> Result<(), String> {
    let (a, b) = (op(&c.a)?, op(&c.b)?);
    let ab = a.compose(&b).map_err(|e| format!("compose: {e}"))?;
    if json(&ab) != c.result {
        return Err(format!("gives {}, vector says {}", ab.to_json(), c.result));
    }
    let sequential = a.apply_str(&c.doc).and_then(|s| b.apply_str(&s));
    let composed = ab.apply_str(&c.doc);
    if sequential.is_err() || composed != sequential {
        return Err(format!("on {:?}: {composed:?} vs {sequential:?}", c.doc));
    }
    Ok(())
}

fn check_invalid(c: &InvalidCase) -> Result<(), String> {
    match op(&c.op) {
        Err(_) => Ok(()),
        Ok(op) if op.base_len() != c.doc_len => Ok(()),
        Ok(op) => Err(format!(
            "accepted as {} on {} characters",
            op.to_json(),
            c.doc_len
        )),
    }
}

#[test]
fn shared_vectors_agree_with_rust() {
    let v = load();
    let mut failures = Vec::new();
    let mut record = |section: &str, name: &str, r: Result<(), String>| {
        if let Err(e) = r {
            failures.push(format!("{section} {name:?}: {e}"));
        }
    };
    for c in &v.apply {
        record("apply", &c.name, check_apply(c));
    }
    for c in &v.transform {
        record("transform", &c.name, check_transform(c));
    }
    for c in &v.compose {
        record("compose", &c.name, check_compose(c));
    }
    for c in &v.invalid {
        record("invalid", &c.name, check_invalid(c));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
