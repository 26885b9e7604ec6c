//! Snapshots and document metadata: language, listing.

use ropey::Rope;
use tandem::ids::Revision;
use tandem::store::{AppendBatch, Snapshot, Store};

use super::*;

/// Snapshots: the latest at or before a revision, the first write at a
/// revision kept, written atomically with a batch, listed ascending.
pub async fn snapshots(store: &dyn Store) {
    let id = doc("snapped");
    let alice = client("alice");
    store
        .create_document(&id, "rust", "")
        .await
        .expect("create");
    let at = |rev: u64| store.snapshot_at_or_before(&id, Revision(rev));
    let snap = |rev: u64| {
        Some(Snapshot {
            rev: Revision(rev),
            text: text_at(rev),
        })
    };

    // A batch with a snapshot writes both.
    let with_snapshot = AppendBatch {
        doc: id.clone(),
        ops: records(1..=3, &alice),
        snapshot: Some((Revision(3), Rope::from_str(&text_at(3)))),
        epoch: LeaseEpoch::ZERO,
    };
    store
        .append(with_snapshot.clone())
        .await
        .expect("append with snapshot");
    assert_eq!(at(3).await.expect("snapshot"), snap(3));
    assert_eq!(
        at(2).await.expect("snapshot"),
        snap(0),
        "picks the latest at or before"
    );
    assert_eq!(at(99).await.expect("snapshot"), snap(3));

    store
        .append(batch(&id, records(4..=8, &alice)))
        .await
        .expect("append");
    store
        .put_snapshot(
            &id,
            Revision(8),
            Rope::from_str(&text_at(8)),
            LeaseEpoch::ZERO,
        )
        .await
        .expect("put 8");
    // Out of order, after a later one.
    store
        .put_snapshot(
            &id,
            Revision(5),
            Rope::from_str(&text_at(5)),
            LeaseEpoch::ZERO,
        )
        .await
        .expect("put 5");
    // A second write at a revision keeps the first.
    store
        .put_snapshot(
            &id,
            Revision(3),
            Rope::from_str("something else"),
            LeaseEpoch::ZERO,
        )
        .await
        .expect("put 3 again");
    let revs = [0, 3, 5, 8].map(Revision).to_vec();
    assert_eq!(
        store.snapshot_revisions(&id).await.expect("revisions"),
        revs
    );
    assert_eq!(at(3).await.expect("snapshot"), snap(3));
    assert_eq!(at(4).await.expect("snapshot"), snap(3));
    assert_eq!(at(7).await.expect("snapshot"), snap(5));
    assert_eq!(at(8).await.expect("snapshot"), snap(8));

    // A refused batch writes no snapshot either.
    let refused = AppendBatch {
        doc: id.clone(),
        ops: vec![record(8, &client("bob"), 1)],
        snapshot: Some((Revision(8), Rope::from_str("forked"))),
        epoch: LeaseEpoch::ZERO,
    };
    assert_conflict(store.append(refused).await, "stale batch with snapshot");
    let refused = AppendBatch {
        doc: id.clone(),
        ops: records(10..=10, &alice),
        snapshot: Some((Revision(10), Rope::from_str("gap"))),
        epoch: LeaseEpoch::ZERO,
    };
    assert_conflict(store.append(refused).await, "gapped batch with snapshot");
    assert_eq!(
        store.snapshot_revisions(&id).await.expect("revisions"),
        revs
    );
    assert_eq!(at(8).await.expect("snapshot"), snap(8));

    // Retrying the batch that carried a snapshot is still accepted.
    store.append(with_snapshot).await.expect("retry");
    assert_eq!(
        store.snapshot_revisions(&id).await.expect("revisions"),
        revs
    );

    assert_not_found(
        store
            .put_snapshot(&doc("missing"), Revision(0), Rope::new(), LeaseEpoch::ZERO)
            .await,
        "snapshot of a missing document",
    );
    assert!(
        store
            .snapshot_revisions(&doc("missing"))
            .await
            .expect("revisions")
            .is_empty()
    );
}

/// `set_language` changes the language and nothing else but the change time.
pub async fn set_language(store: &dyn Store) {
    let id = doc("lang");
    let created = store
        .create_document(&id, "plaintext", "x")
        .await
        .expect("create");
    store
        .append(batch(&id, records(1..=2, &client("alice"))))
        .await
        .expect("append");
    let before = store.document(&id).await.expect("read").expect("exists");
    store
        .set_language(&id, "typescript", LeaseEpoch::ZERO)
        .await
        .expect("set");
    let after = store.document(&id).await.expect("read").expect("exists");
    assert_eq!(after.language, "typescript");
    assert_eq!(
        (after.rev, after.created_ms),
        (Revision(2), created.created_ms)
    );
    assert!(after.updated_ms >= before.updated_ms);
    assert_not_found(
        store
            .set_language(&doc("missing"), "rust", LeaseEpoch::ZERO)
            .await,
        "set_language",
    );
    assert_eq!(store.document(&doc("missing")).await.expect("read"), None);
}

/// Most recently changed first; `limit` caps the list; appends and language
/// changes both count as changes.
pub async fn list_documents(store: &dyn Store) {
    assert!(store.list_documents(10).await.expect("list").is_empty());
    let ids = ["first", "second", "third"].map(doc);
    for id in &ids {
        next_millisecond().await;
        store.create_document(id, "rust", "").await.expect("create");
    }
    let listed = |limit| async move {
        let metas = store.list_documents(limit).await.expect("list");
        for m in &metas {
            let stored = store.document(&m.id).await.expect("read");
            assert_eq!(stored.as_ref(), Some(m), "listed meta matches document()");
        }
        metas
            .into_iter()
            .map(|m| m.id.as_str().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(listed(10).await, ["third", "second", "first"]);
    assert_eq!(listed(2).await, ["third", "second"]);
    assert!(listed(0).await.is_empty());

    next_millisecond().await;
    store
        .append(batch(&ids[0], records(1..=1, &client("alice"))))
        .await
        .expect("append");
    assert_eq!(listed(10).await, ["first", "third", "second"]);
    next_millisecond().await;
    store
        .set_language(&ids[1], "go", LeaseEpoch::ZERO)
        .await
        .expect("set");
    assert_eq!(listed(1).await, ["second"]);
    assert_eq!(listed(usize::MAX).await, ["second", "first", "third"]);
}
