//! Benchmarks of the OT core: parse, transform, apply, and a real editing
//! trace (automerge-paper, from josephg/editing-traces, CC BY 4.0) replayed
//! through `TextOp` onto a `Rope`.

use std::hint::black_box;
use std::io::Read;
use std::path::PathBuf;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use rand::Rng;
use ropey::Rope;
use tandem::ot::{Component, OpLimits, RawOp, TextOp};

/// A typical op as a client sends it: retain, insert a word, retain.
const TYPICAL_OP_JSON: &str = r#"[1234, "hello ", 8765]"#;

fn bench_parse(c: &mut Criterion) {
    let limits = OpLimits::default();
    c.bench_function("parse typical op (JSON -> TextOp)", |b| {
        b.iter(|| {
            let raw: RawOp = serde_json::from_str(black_box(TYPICAL_OP_JSON)).unwrap();
            TextOp::parse(&raw, &limits).unwrap()
        });
    });
}

fn insert_at(len: usize, pos: usize, s: &str) -> TextOp {
    TextOp::from_components(
        [
            Component::Retain(pos),
            Component::Insert(s),
            Component::Retain(len - pos),
        ]
        .into_iter()
        .filter(|c| !matches!(c, Component::Retain(0))),
    )
}

fn bench_transform(c: &mut Criterion) {
    let a = insert_at(10_000, 100, "a");
    let b2 = insert_at(10_000, 5_000, "b");
    c.bench_function("transform two concurrent single inserts", |b| {
        b.iter(|| black_box(&a).transform(black_box(&b2)).unwrap());
    });
}

fn bench_apply(c: &mut Criterion) {
    let mut group = c.benchmark_group("apply single-char insert at random position");
    for (name, size) in [("1KB", 1_000), ("1MB", 1_000_000), ("10MB", 10_000_000)] {
        let text: String = "abcdefghij\n".chars().cycle().take(size).collect();
        let rope = Rope::from_str(&text);
        let mut rng = rand::rng();
        group.throughput(Throughput::Elements(1));
        group.bench_function(name, |b| {
            b.iter_batched(
                || {
                    let pos = rng.random_range(0..=size);
                    (rope.clone(), insert_at(size, pos, "x"))
                },
                |(mut r, op)| {
                    op.apply(&mut r, usize::MAX).unwrap();
                    r
                },
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

/// One patch of the trace: position, characters deleted, text inserted.
type Patch = (usize, usize, String);

fn load_trace() -> (Vec<Patch>, String) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/traces/sequential/automerge-paper.json.gz");
    let file = std::fs::File::open(&path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    let mut json = String::new();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut json)
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let mut patches = Vec::new();
    for txn in v["txns"].as_array().unwrap() {
        for p in txn["patches"].as_array().unwrap() {
            patches.push((
                p[0].as_u64().unwrap() as usize,
                p[1].as_u64().unwrap() as usize,
                p[2].as_str().unwrap().to_owned(),
            ));
        }
    }
    let end = v["endContent"].as_str().unwrap().to_owned();
    (patches, end)
}

/// Builds each patch as a `TextOp` and applies it to a `Rope`.
fn replay(patches: &[Patch]) -> Rope {
    let mut rope = Rope::new();
    for (pos, del, ins) in patches {
        let len = rope.len_chars();
        let rest = len - pos - del;
        let op = TextOp::from_components(
            [
                Component::Retain(*pos),
                Component::Delete(*del),
                Component::Insert(ins),
                Component::Retain(rest),
            ]
            .into_iter()
            .filter(|c| {
                !matches!(
                    c,
                    Component::Retain(0) | Component::Delete(0) | Component::Insert("")
                )
            }),
        );
        op.apply(&mut rope, usize::MAX).unwrap();
    }
    rope
}

fn bench_trace(c: &mut Criterion) {
    let (patches, end) = load_trace();
    assert_eq!(replay(&patches).to_string(), end, "trace replay diverged");
    let mut group = c.benchmark_group("trace");
    group.sample_size(10);
    group.throughput(Throughput::Elements(patches.len() as u64));
    group.bench_function("automerge-paper replay (patches)", |b| {
        b.iter(|| replay(black_box(&patches)));
    });
    group.finish();
}

criterion_group!(
    benches,
    bench_parse,
    bench_transform,
    bench_apply,
    bench_trace
);
criterion_main!(benches);
