//! Group commit: appends that wait together for the writer share one
//! transaction, and each is answered as if it had run alone; appends sent
//! before the last one is durable keep their order.

use futures_util::future::join_all;
use ropey::Rope;
use tandem::ids::{LeaseEpoch, Revision};
use tandem::store::{AppendBatch, Store};

use super::*;

/// Appends queued together, some of which fail (a reused `(client, seq)`,
/// which the database itself refuses; a taken revision; an older epoch; a
/// missing document), are answered one by one: the failures with their own
/// error and no effect, the others written and durable, an exact retry
/// accepted. A large append goes first so that the writer is busy while
/// the others queue behind it and are taken as one group.
pub async fn group_commit_isolates_failures(store: &dyn Store) {
    let (alice, bob) = (client("alice"), client("bob"));
    let names = [
        "busy", "good", "pair", "reused", "taken", "retried", "fenced",
    ];
    for name in names {
        store
            .create_document(&doc(name), "rust", "")
            .await
            .expect("create");
    }
    for name in &names[1..] {
        store
            .append(batch(&doc(name), records(1..=1, &alice)))
            .await
            .expect("rev 1");
    }
    let owner = store.claim(&doc("fenced")).await.expect("claim");
    assert!(owner > LeaseEpoch::ZERO);

    let with_snapshot = AppendBatch {
        snapshot: Some((Revision(2), Rope::from_str(&text_at(2)))),
        ..batch(&doc("good"), vec![record(2, &alice, 2)])
    };
    let appends = vec![
        batch(&doc("busy"), records(1..=2_000, &alice)),
        with_snapshot,
        batch(&doc("reused"), vec![record(2, &alice, 1)]),
        batch(&doc("pair"), records(2..=3, &alice)),
        batch(&doc("taken"), vec![record(1, &bob, 1)]),
        batch(&doc("retried"), records(1..=1, &alice)),
        batch(&doc("fenced"), vec![record(2, &alice, 2)]),
        batch(&doc("missing"), records(1..=1, &alice)),
    ];
    let mut results = join_all(appends.into_iter().map(|b| store.append(b)))
        .await
        .into_iter();
    let mut next = || results.next().expect("one result per append");
    next().expect("the large append");
    next().expect("an append with a snapshot");
    assert_conflict(next(), "a reused (client, seq)");
    next().expect("a two-op append");
    assert_conflict(next(), "a different op at a taken revision");
    next().expect("an exact retry");
    assert_conflict(next(), "an append with an older epoch");
    assert_not_found(next(), "an append to a missing document");

    let expect = [
        ("busy", records(1..=2_000, &alice)),
        ("good", records(1..=2, &alice)),
        ("pair", records(1..=3, &alice)),
        ("reused", records(1..=1, &alice)),
        ("taken", records(1..=1, &alice)),
        ("retried", records(1..=1, &alice)),
        ("fenced", records(1..=1, &alice)),
    ];
    for (name, ops) in expect {
        let id = doc(name);
        let meta = store.document(&id).await.expect("read").expect("exists");
        assert_eq!(meta.rev.0, ops.len() as u64, "{name}: the revision");
        let stored = store
            .ops(&id, Revision(0), Revision(5_000), usize::MAX)
            .await
            .expect("ops");
        assert_eq!(stored, owned(&ops), "{name}: the log");
    }
    assert_eq!(
        store
            .snapshot_at_or_before(&doc("good"), Revision(2))
            .await
            .expect("snapshot")
            .map(|s| (s.rev, s.text)),
        Some((Revision(2), text_at(2))),
        "the snapshot written with its append"
    );
    assert_eq!(store.document(&doc("missing")).await.expect("read"), None);
}

/// A writer that starts each append as soon as the last one is in order
/// ([`Store::append_ordered`]), without waiting for it to be durable, gets
/// every append into the log in revision order, on each of several
/// documents at once; every `Durable` resolves `Ok`, and then the ops are
/// there.
pub async fn pipelined_appends_keep_order(store: &dyn Store) {
    const DOCUMENTS: usize = 3;
    const OPS: u64 = 150;
    let alice = client("alice");
    let ids: Vec<_> = (0..DOCUMENTS).map(|d| doc(&format!("piped-{d}"))).collect();
    for id in &ids {
        store.create_document(id, "rust", "").await.expect("create");
    }
    let mut durables = Vec::new();
    let mut rev = 1;
    while rev <= OPS {
        // One op, then two, then three: groups of several sizes.
        let last = (rev + rev % 3).min(OPS);
        for id in &ids {
            let written = store
                .append_ordered(batch(id, records(rev..=last, &alice)))
                .await
                .expect("in order");
            durables.push(written);
        }
        rev = last + 1;
    }
    for durable in join_all(durables).await {
        durable.expect("durable");
    }
    for id in &ids {
        let meta = store.document(id).await.expect("read").expect("exists");
        assert_eq!(meta.rev, Revision(OPS), "{id}");
        let stored = store
            .ops(id, Revision(0), Revision(OPS), usize::MAX)
            .await
            .expect("ops");
        assert_eq!(stored, owned(&records(1..=OPS, &alice)), "{id}");
    }
}
