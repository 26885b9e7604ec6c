//! The `Store` conformance suite, written once over the trait and run against
//! every backend by `tests/store.rs`.
//!
//! Most checks take a fresh, empty `&dyn Store`. The few that must open the
//! same storage twice (durability) or share it between tasks (group commit)
//! take a [`Backend`] instead.

mod access;
mod checkpoints;
mod delete;
mod durability;
mod fence;
mod group;
mod log;
mod meta;

use std::sync::Arc;

use async_trait::async_trait;
use tandem::ids::{ClientId, DocId, LeaseEpoch, Revision, Seq};
use tandem::ot::{Component, TextOp};
use tandem::store::{AppendBatch, OpRecord, SharedStore, StoreError};

pub use access::*;
pub use checkpoints::*;
pub use delete::*;
pub use durability::*;
pub use fence::*;
pub use group::*;
pub use log::*;
pub use meta::*;

/// A backend under test.
#[async_trait]
pub trait Backend: Send + Sync {
    /// Opens the backend's storage: the same storage on every call, so that
    /// what one handle wrote is there for the next.
    async fn open(&self) -> SharedStore;
}

/// What revision `rev` of a test document inserts at its end. The mix covers
/// astral characters, a two-code-point emoji, CJK, a combining mark, CRLF and
/// U+0000, which every backend must store as text.
const PIECES: [&str; 8] = ["a", "😀", "漢字", "e\u{301}", "\n", "\r\n", "\u{0}", "👍🏽"];

/// A test document id.
pub fn doc(name: &str) -> DocId {
    DocId::parse(name).expect("valid document id")
}

/// A test client id.
pub fn client(name: &str) -> ClientId {
    ClientId::parse(name).expect("valid client id")
}

/// The text of a test document created empty, after revision `rev`.
pub fn text_at(rev: u64) -> String {
    (1..=rev).map(piece).collect()
}

fn piece(rev: u64) -> &'static str {
    PIECES[(rev % PIECES.len() as u64) as usize]
}

/// The op that makes revision `rev` of a test document created empty.
pub fn record(rev: u64, client: &ClientId, seq: u64) -> Arc<OpRecord> {
    let before = text_at(rev - 1).chars().count();
    Arc::new(OpRecord {
        rev: Revision(rev),
        client: client.clone(),
        seq: Seq(seq),
        author: "Zoë 🙂".to_owned(),
        op: TextOp::from_components([Component::Retain(before), Component::Insert(piece(rev))]),
        time_ms: 1_700_000_000_000 + rev as i64,
    })
}

/// Records for revisions `revs`, all by `client` with seq equal to the rev.
pub fn records(revs: std::ops::RangeInclusive<u64>, client: &ClientId) -> Vec<Arc<OpRecord>> {
    revs.map(|r| record(r, client, r)).collect()
}

/// A batch without a snapshot.
pub fn batch(id: &DocId, ops: Vec<Arc<OpRecord>>) -> AppendBatch {
    AppendBatch {
        doc: id.clone(),
        ops,
        snapshot: None,
        epoch: LeaseEpoch::ZERO,
    }
}

/// Owned copies, to compare with what `ops()` returns.
pub fn owned(ops: &[Arc<OpRecord>]) -> Vec<OpRecord> {
    ops.iter().map(|o| (**o).clone()).collect()
}

/// Fails unless `r` is a `Conflict`.
#[track_caller]
pub fn assert_conflict<T: std::fmt::Debug>(r: Result<T, StoreError>, what: &str) {
    match r {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("{what}: expected Conflict, got {other:?}"),
    }
}

/// Fails unless `r` is a `NotFound`.
#[track_caller]
pub fn assert_not_found<T: std::fmt::Debug>(r: Result<T, StoreError>, what: &str) {
    match r {
        Err(StoreError::NotFound) => {}
        other => panic!("{what}: expected NotFound, got {other:?}"),
    }
}

/// Waits until the millisecond clock that stamps `updated_ms` has moved on,
/// so that the next write is strictly later than the last one. This waits
/// for a condition (one clock tick), it asserts nothing about durations.
///
/// # Panics
///
/// When the clock has not moved in a second (a broken clock, not a slow
/// machine).
pub async fn next_millisecond() {
    let start = tandem::store::now_ms();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    while tandem::store::now_ms() <= start {
        assert!(
            std::time::Instant::now() < deadline,
            "the millisecond clock did not move on from {start} in 1 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
}
