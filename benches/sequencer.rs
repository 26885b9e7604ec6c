//! Throughput of the pure sequencer (`DocumentState`, no I/O): simulated
//! clients submit appends based on a slightly stale (published) revision, so
//! each op is transformed over the ops sequenced since, and the state is
//! published every 10 ops, as the store's group commit would.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ropey::Rope;
use tandem::document::{DocumentState, StateLimits, Submission};
use tandem::ids::{ClientId, Revision, Seq};
use tandem::ot::{Component, TextOp};

const CLIENTS: usize = 10;
const PUBLISH_EVERY: usize = 10;

fn bench_sequencer(c: &mut Criterion) {
    let limits = StateLimits {
        history_window: 1_000,
        history_window_bytes: tandem::config::HISTORY_WINDOW_BYTES,
        max_document_chars: usize::MAX / 2,
        max_catchup_revisions: 10_000,
        max_dedupe_clients: tandem::config::MAX_DEDUPE_CLIENTS,
    };
    let initial: String = "fn main() {}\n".chars().cycle().take(100_000).collect();
    let mut state = DocumentState::new(Rope::from_str(&initial), Revision(0), vec![], limits);
    let clients: Vec<ClientId> = (0..CLIENTS)
        .map(|i| ClientId::parse(&format!("client{i}")).unwrap())
        .collect();
    let mut seqs = [0u64; CLIENTS];

    let mut group = c.benchmark_group("sequencer");
    group.throughput(Throughput::Elements(PUBLISH_EVERY as u64));
    group.bench_function(
        format!("{CLIENTS} clients, stale-base appends, publish every {PUBLISH_EVERY} ops (100K-char doc)"),
        |b| {
            b.iter(|| {
                // Every op in this round is based on the same published
                // revision, so the k-th is transformed over k-1 ops.
                let base = state.published();
                let base_len = state.published_text().len_chars();
                for (i, client) in clients.iter().enumerate().take(PUBLISH_EVERY) {
                    seqs[i] += 1;
                    let op = TextOp::from_components([
                        Component::Retain(base_len),
                        Component::Insert("x"),
                    ]);
                    let sub = Submission {
                        client: client.clone(),
                        seq: Seq(seqs[i]),
                        author: "bench".to_owned(),
                        base,
                        op,
                        selection: None,
                        time_ms: 0,
                    };
                    black_box(state.submit(sub, &[]).unwrap());
                }
                let head = state.head();
                let text = state.head_text().clone();
                black_box(state.publish(head, text));
            });
        },
    );
    group.finish();
}

criterion_group!(benches, bench_sequencer);
criterion_main!(benches);
