//! Lease epochs: a claim fences every earlier owner's writes.

use ropey::Rope;
use tandem::ids::{LeaseEpoch, Revision};
use tandem::store::{AppendBatch, Store};

use super::*;

fn fenced_batch(id: &DocId, ops: Vec<Arc<OpRecord>>, epoch: LeaseEpoch) -> AppendBatch {
    AppendBatch {
        epoch,
        ..batch(id, ops)
    }
}

/// Each claim hands out a larger epoch; appends, language changes and
/// snapshots that carry an older one are refused and change nothing, even
/// where the revisions they would write are free; the current owner's go
/// through; a missing document cannot be claimed.
pub async fn lease_epoch_fence(store: &dyn Store) {
    let id = doc("fenced");
    let alice = client("alice");
    store
        .create_document(&id, "rust", "")
        .await
        .expect("create");
    let first = store.claim(&id).await.expect("first claim");
    let second = store.claim(&id).await.expect("second claim");
    assert!(second > first, "epochs grow: {first} then {second}");
    assert!(
        first > LeaseEpoch::ZERO,
        "a claim is past the unclaimed epoch"
    );

    // The first owner was paused past its lease and wakes up: refused.
    assert_conflict(
        store
            .append(fenced_batch(&id, records(1..=2, &alice), first))
            .await,
        "an append with an older epoch",
    );
    assert_conflict(
        store
            .append(fenced_batch(&id, records(1..=2, &alice), LeaseEpoch::ZERO))
            .await,
        "an append with the unclaimed epoch",
    );
    assert_conflict(
        store.set_language(&id, "python", first).await,
        "a language change with an older epoch",
    );
    assert_conflict(
        store
            .put_snapshot(&id, Revision(0), Rope::from_str("forged"), first)
            .await,
        "a snapshot with an older epoch",
    );
    let meta = store.document(&id).await.expect("read").expect("exists");
    assert_eq!(meta.rev, Revision(0), "nothing was appended");
    assert_eq!(meta.language, "rust", "the language did not change");
    assert!(
        store
            .ops(&id, Revision(0), Revision(10), 10)
            .await
            .expect("ops")
            .is_empty()
    );
    assert_eq!(
        store.snapshot_revisions(&id).await.expect("snapshots"),
        vec![Revision(0)]
    );
    assert_eq!(
        store
            .snapshot_at_or_before(&id, Revision(0))
            .await
            .expect("snapshot")
            .map(|s| s.text),
        Some(String::new()),
        "snapshot 0 is untouched"
    );

    // The current owner writes.
    store
        .append(fenced_batch(&id, records(1..=2, &alice), second))
        .await
        .expect("the owner's append");
    store
        .set_language(&id, "python", second)
        .await
        .expect("the owner's language change");
    store
        .put_snapshot(&id, Revision(2), Rope::from_str(&text_at(2)), second)
        .await
        .expect("the owner's snapshot");
    let meta = store.document(&id).await.expect("read").expect("exists");
    assert_eq!((meta.rev, meta.language.as_str()), (Revision(2), "python"));

    // A third claim fences the second owner too, including an exact retry
    // of what it wrote.
    let third = store.claim(&id).await.expect("third claim");
    assert!(third > second);
    assert_conflict(
        store
            .append(fenced_batch(&id, records(3..=3, &alice), second))
            .await,
        "the second owner after the third claim",
    );
    store
        .append(fenced_batch(&id, records(3..=3, &alice), third))
        .await
        .expect("the third owner's append");
    assert_eq!(
        owned(&records(1..=3, &alice)),
        store
            .ops(&id, Revision(0), Revision(3), 10)
            .await
            .expect("ops"),
        "exactly the owners' ops, once"
    );

    assert_not_found(
        store.claim(&doc("nobody")).await,
        "claiming a missing document",
    );
}
