//! Creating documents, and the op log: appends, reads, the fence and the
//! dedupe lookups.

use tandem::ids::{Revision, Seq};
use tandem::store::{Snapshot, Store, StoreError};

use super::*;

/// `create_document` makes revision 0 with snapshot 0; a second create of the
/// same id is a `Conflict` that changes nothing.
pub async fn create_document(store: &dyn Store) {
    let id = doc("created");
    assert_eq!(store.document(&id).await.expect("read"), None);
    let text = "héllo 😀\r\n漢字 e\u{301}\u{0}";
    let meta = store
        .create_document(&id, "rust", text)
        .await
        .expect("create");
    assert_eq!(
        (meta.id.clone(), meta.language.as_str(), meta.rev),
        (id.clone(), "rust", Revision(0))
    );
    assert!(
        meta.created_ms > 0 && meta.created_ms <= meta.updated_ms,
        "{meta:?}"
    );
    assert_eq!(store.document(&id).await.expect("read"), Some(meta.clone()));
    let snap = Snapshot {
        rev: Revision(0),
        text: text.to_owned(),
    };
    assert_eq!(
        store
            .snapshot_at_or_before(&id, Revision(0))
            .await
            .expect("snapshot"),
        Some(snap.clone())
    );
    assert_eq!(
        store
            .snapshot_at_or_before(&id, Revision(9))
            .await
            .expect("snapshot"),
        Some(snap.clone())
    );
    assert_eq!(
        store.snapshot_revisions(&id).await.expect("revisions"),
        vec![Revision(0)]
    );
    assert!(
        store
            .ops(&id, Revision(0), Revision(10), 10)
            .await
            .expect("ops")
            .is_empty()
    );

    let again = store.create_document(&id, "python", "other").await;
    assert_conflict(again, "second create");
    assert_eq!(store.document(&id).await.expect("read"), Some(meta));
    assert_eq!(
        store
            .snapshot_at_or_before(&id, Revision(0))
            .await
            .expect("snapshot"),
        Some(snap)
    );

    let empty = doc("empty");
    store
        .create_document(&empty, "plaintext", "")
        .await
        .expect("create empty");
    let snap = store
        .snapshot_at_or_before(&empty, Revision(0))
        .await
        .expect("snapshot");
    assert_eq!(
        snap,
        Some(Snapshot {
            rev: Revision(0),
            text: String::new()
        })
    );
    assert_eq!(
        store.document(&doc("never-created")).await.expect("read"),
        None
    );
}

/// Appended ops read back exactly, by `(after, upto]` and `limit`.
pub async fn append_and_read_back(store: &dyn Store) {
    let id = doc("log");
    let alice = client("alice");
    let created = store
        .create_document(&id, "rust", "")
        .await
        .expect("create");
    let all = records(1..=12, &alice);
    for chunk in [&all[0..3], &all[3..4], &all[4..12]] {
        store
            .append(batch(&id, chunk.to_vec()))
            .await
            .expect("append");
    }
    let meta = store.document(&id).await.expect("read").expect("exists");
    assert_eq!(meta.rev, Revision(12));
    assert!(meta.updated_ms >= created.updated_ms);
    assert_eq!(meta.created_ms, created.created_ms);

    let read = |after: u64, upto: u64, limit: usize| {
        store.ops(&id, Revision(after), Revision(upto), limit)
    };
    assert_eq!(read(0, 12, usize::MAX).await.expect("ops"), owned(&all));
    assert_eq!(
        read(2, 5, usize::MAX).await.expect("ops"),
        owned(&all[2..5]),
        "(2, 5]"
    );
    assert_eq!(
        read(0, 12, 2).await.expect("ops"),
        owned(&all[0..2]),
        "limit"
    );
    assert_eq!(
        read(8, 100, usize::MAX).await.expect("ops"),
        owned(&all[8..12]),
        "past the head"
    );
    assert_eq!(
        read(9, 12, 100).await.expect("ops"),
        owned(&all[9..12]),
        "numeric order past 9"
    );
    assert!(read(12, 12, 10).await.expect("ops").is_empty(), "(12, 12]");
    assert!(
        read(5, 3, 10).await.expect("ops").is_empty(),
        "upto before after"
    );
    assert!(read(0, 12, 0).await.expect("ops").is_empty(), "limit 0");

    // The stored ops rebuild the text from snapshot 0.
    let mut text = String::new();
    for r in read(0, 12, usize::MAX).await.expect("ops") {
        text = r.op.apply_str(&text).expect("op applies at rev - 1");
    }
    assert_eq!(text, text_at(12));
}

/// Appends are the fence: one writer per revision, no gaps, no forks, and an
/// exact retry is accepted.
pub async fn append_fence(store: &dyn Store) {
    let id = doc("fenced");
    let (alice, bob) = (client("alice"), client("bob"));
    store
        .create_document(&id, "rust", "")
        .await
        .expect("create");
    let first = vec![record(1, &alice, 1)];
    store
        .append(batch(&id, first.clone()))
        .await
        .expect("rev 1");

    // Two nodes race for revision 2: exactly one wins.
    let from_alice = vec![record(2, &alice, 2)];
    let from_bob = vec![record(2, &bob, 1)];
    let (a, b) = tokio::join!(
        store.append(batch(&id, from_alice.clone())),
        store.append(batch(&id, from_bob.clone()))
    );
    let winner = match (a, b) {
        (Ok(()), Err(StoreError::Conflict(_))) => from_alice,
        (Err(StoreError::Conflict(_)), Ok(())) => from_bob.clone(),
        other => panic!("expected one Ok and one Conflict, got {other:?}"),
    };
    let head = [first.clone(), winner.clone()].concat();
    let stored = || store.ops(&id, Revision(0), Revision(100), usize::MAX);
    assert_eq!(stored().await.expect("ops"), owned(&head));

    // Neither a gap, a stale revision, revision 0 nor a batch with a hole.
    let carol = client("carol");
    assert_conflict(
        store.append(batch(&id, vec![record(4, &carol, 1)])).await,
        "gap",
    );
    assert_conflict(
        store.append(batch(&id, vec![record(2, &carol, 1)])).await,
        "stale",
    );
    let zero = record(1, &carol, 1);
    let zero = Arc::new(OpRecord {
        rev: Revision(0),
        ..(*zero).clone()
    });
    assert_conflict(store.append(batch(&id, vec![zero])).await, "revision 0");
    let holed = vec![record(3, &carol, 1), record(5, &carol, 2)];
    assert_conflict(
        store.append(batch(&id, holed)).await,
        "non-contiguous batch",
    );
    // A stored op followed by a new one is not a retry.
    let overlap = [winner.clone(), vec![record(3, &carol, 1)]].concat();
    assert_conflict(store.append(batch(&id, overlap)).await, "overlapping batch");
    // `(client, seq)` is unique per document, even at a new revision.
    let reused = vec![record(3, &alice, 1)];
    assert_conflict(
        store.append(batch(&id, reused)).await,
        "reused (client, seq)",
    );
    assert_eq!(
        stored().await.expect("ops"),
        owned(&head),
        "refused appends wrote nothing"
    );
    assert_eq!(
        store
            .document(&id)
            .await
            .expect("read")
            .expect("exists")
            .rev,
        Revision(2)
    );

    // Retrying exactly what was stored is accepted and changes nothing.
    store
        .append(batch(&id, first.clone()))
        .await
        .expect("retry rev 1");
    store
        .append(batch(&id, winner.clone()))
        .await
        .expect("retry rev 2");
    store
        .append(batch(&id, head.clone()))
        .await
        .expect("retry both");
    assert_eq!(stored().await.expect("ops"), owned(&head));
    assert_eq!(
        store
            .document(&id)
            .await
            .expect("read")
            .expect("exists")
            .rev,
        Revision(2)
    );

    // The loser carries on at the next revision.
    let next = vec![Arc::new(OpRecord {
        rev: Revision(3),
        ..(*record(3, &bob, 7)).clone()
    })];
    store.append(batch(&id, next)).await.expect("rev 3");
    assert_eq!(
        store
            .document(&id)
            .await
            .expect("read")
            .expect("exists")
            .rev,
        Revision(3)
    );
}

/// Appending to a document that does not exist is `NotFound` and creates
/// nothing.
pub async fn append_to_missing_document(store: &dyn Store) {
    let id = doc("missing");
    let r = store
        .append(batch(&id, records(1..=2, &client("alice"))))
        .await;
    assert_not_found(r, "append");
    assert_eq!(store.document(&id).await.expect("read"), None);
    assert!(
        store
            .ops(&id, Revision(0), Revision(10), 10)
            .await
            .expect("ops")
            .is_empty()
    );
}

/// `find_op` and `last_seq` answer from what is committed, per document and
/// client.
pub async fn dedupe_lookups(store: &dyn Store) {
    let (one, two) = (doc("one"), doc("two"));
    let (alice, bob) = (client("alice"), client("bob"));
    for id in [&one, &two] {
        store.create_document(id, "rust", "").await.expect("create");
    }
    assert_eq!(store.last_seq(&one, &alice).await.expect("last"), None);
    let largest = i64::MAX as u64;
    let ops = vec![
        record(1, &alice, 1),
        record(2, &bob, 2),
        record(3, &alice, 5),
        record(4, &bob, largest),
    ];
    store.append(batch(&one, ops)).await.expect("append");
    store
        .append(batch(&two, vec![record(1, &alice, 9)]))
        .await
        .expect("append");

    let (carol, nowhere) = (client("carol"), doc("nowhere"));
    let find = |id, c, s| store.find_op(id, c, Seq(s));
    assert_eq!(
        find(&one, &alice, 1).await.expect("find"),
        Some(Revision(1))
    );
    assert_eq!(
        find(&one, &alice, 5).await.expect("find"),
        Some(Revision(3))
    );
    assert_eq!(find(&one, &bob, 2).await.expect("find"), Some(Revision(2)));
    assert_eq!(
        find(&one, &bob, largest).await.expect("find"),
        Some(Revision(4))
    );
    assert_eq!(
        find(&one, &alice, 2).await.expect("find"),
        None,
        "bob's seq"
    );
    assert_eq!(
        find(&one, &alice, 9).await.expect("find"),
        None,
        "other document"
    );
    assert_eq!(
        find(&two, &alice, 9).await.expect("find"),
        Some(Revision(1))
    );
    assert_eq!(find(&one, &carol, 1).await.expect("find"), None);
    assert_eq!(find(&nowhere, &alice, 1).await.expect("find"), None);

    let last = |id, c| store.last_seq(id, c);
    assert_eq!(
        last(&one, &alice).await.expect("last"),
        Some((Seq(5), Revision(3)))
    );
    assert_eq!(
        last(&one, &bob).await.expect("last"),
        Some((Seq(largest), Revision(4)))
    );
    assert_eq!(
        last(&two, &alice).await.expect("last"),
        Some((Seq(9), Revision(1)))
    );
    assert_eq!(last(&two, &bob).await.expect("last"), None);
    let read = store
        .ops(&one, Revision(3), Revision(4), 1)
        .await
        .expect("ops");
    assert_eq!(read[0].seq, Seq(largest), "seq up to i64::MAX round-trips");
}
