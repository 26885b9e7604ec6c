//! What needs a whole backend rather than one handle: many writers at once,
//! and data surviving a reopen.

use ropey::Rope;
use tandem::ids::{LeaseEpoch, Revision, Seq};
use tandem::store::{AppendBatch, Snapshot};
use tokio::task::JoinSet;

use super::*;

const DOCUMENTS: usize = 16;
const OPS_PER_DOCUMENT: u64 = 24;

/// Many tasks append to their own documents at once (the writes are grouped
/// into shared commits); every append succeeds and every op is there after.
pub async fn concurrent_appends(backend: &dyn Backend) {
    let store = backend.open().await;
    let mut tasks = JoinSet::new();
    for d in 0..DOCUMENTS {
        let store = Arc::clone(&store);
        tasks.spawn(async move {
            let id = doc(&format!("busy-{d}"));
            let who = client(&format!("writer-{d}"));
            store
                .create_document(&id, "rust", "")
                .await
                .expect("create");
            // Alternate single ops and pairs, each awaited before the next.
            let mut rev = 1;
            while rev <= OPS_PER_DOCUMENT {
                let last = (rev + (rev % 2)).min(OPS_PER_DOCUMENT);
                store
                    .append(batch(&id, records(rev..=last, &who)))
                    .await
                    .expect("append");
                rev = last + 1;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("writer task");
    }
    for d in 0..DOCUMENTS {
        let id = doc(&format!("busy-{d}"));
        let who = client(&format!("writer-{d}"));
        let meta = store.document(&id).await.expect("read").expect("exists");
        assert_eq!(meta.rev, Revision(OPS_PER_DOCUMENT));
        let ops = store
            .ops(&id, Revision(0), meta.rev, usize::MAX)
            .await
            .expect("ops");
        assert_eq!(ops, owned(&records(1..=OPS_PER_DOCUMENT, &who)), "{id}");
    }
    assert_eq!(
        store.list_documents(usize::MAX).await.expect("list").len(),
        DOCUMENTS
    );
}

/// Everything acknowledged is there after the store is dropped and opened
/// again, including where the fence stands.
pub async fn reopen_keeps_data(backend: &dyn Backend) {
    let id = doc("durable");
    let alice = client("alice");
    let ops = records(1..=5, &alice);
    let (meta, snapshots) = {
        let store = backend.open().await;
        store
            .create_document(&id, "rust", "")
            .await
            .expect("create");
        store
            .append(AppendBatch {
                doc: id.clone(),
                ops: ops[..3].to_vec(),
                snapshot: Some((Revision(3), Rope::from_str(&text_at(3)))),
                epoch: LeaseEpoch::ZERO,
            })
            .await
            .expect("append with snapshot");
        store
            .append(batch(&id, ops[3..].to_vec()))
            .await
            .expect("append");
        store
            .put_snapshot(
                &id,
                Revision(5),
                Rope::from_str(&text_at(5)),
                LeaseEpoch::ZERO,
            )
            .await
            .expect("put");
        store
            .set_language(&id, "markdown", LeaseEpoch::ZERO)
            .await
            .expect("set");
        let meta = store.document(&id).await.expect("read").expect("exists");
        let snapshots = store.snapshot_revisions(&id).await.expect("revisions");
        (meta, snapshots)
        // The store is dropped here.
    };
    assert_eq!(snapshots, [0, 3, 5].map(Revision).to_vec());

    let store = backend.open().await;
    assert_eq!(store.document(&id).await.expect("read"), Some(meta));
    assert_eq!(
        store
            .ops(&id, Revision(0), Revision(5), usize::MAX)
            .await
            .expect("ops"),
        owned(&ops)
    );
    assert_eq!(
        store.snapshot_revisions(&id).await.expect("revisions"),
        snapshots
    );
    let latest = store
        .snapshot_at_or_before(&id, Revision(4))
        .await
        .expect("snapshot");
    assert_eq!(
        latest,
        Some(Snapshot {
            rev: Revision(3),
            text: text_at(3)
        })
    );
    assert_eq!(
        store.find_op(&id, &alice, Seq(4)).await.expect("find"),
        Some(Revision(4))
    );
    assert_eq!(
        store.last_seq(&id, &alice).await.expect("last"),
        Some((Seq(5), Revision(5)))
    );

    // The fence survived too.
    assert_conflict(
        store
            .append(batch(&id, vec![record(5, &client("bob"), 1)]))
            .await,
        "stale",
    );
    store
        .append(batch(&id, ops[4..].to_vec()))
        .await
        .expect("retry of rev 5");
    store
        .append(batch(&id, records(6..=6, &alice)))
        .await
        .expect("next revision");
    assert_conflict(
        store.create_document(&id, "rust", "").await,
        "create after reopen",
    );
}
