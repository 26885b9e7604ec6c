//! Deleting a document: everything of it goes (ops, snapshots, grants,
//! share links), nothing of any other document does, and the id can be
//! created again from revision 0.

use tandem::auth::Permission::{Admin, Read, Write};
use tandem::store::Store;

use super::*;

/// A document with a log, a later snapshot, grants and links, and a
/// bystander with the same; deleting the first removes all of it and only
/// it, once; the id is then new again.
pub async fn delete_document(store: &dyn Store) {
    let (gone, kept) = (doc("doomed"), doc("bystander"));
    let alice = client("alice");
    for (n, id) in [(1, &gone), (11, &kept)] {
        store.create_document(id, "rust", "").await.expect("create");
        store
            .append(batch(id, records(1..=5, &alice)))
            .await
            .expect("append");
        store
            .put_snapshot(
                id,
                Revision(5),
                ropey::Rope::from_str(&text_at(5)),
                LeaseEpoch::ZERO,
            )
            .await
            .expect("snapshot");
        store.grant(id, "alice", Admin).await.expect("grant");
        store.grant(id, "bob", Write).await.expect("grant");
        for k in [n, n + 1] {
            store
                .create_link(&link(id, k, Read))
                .await
                .expect("create link");
        }
    }
    let gone_links = store.links(&gone).await.expect("links");
    assert_eq!(gone_links.len(), 2);

    assert!(
        store.delete_document(&gone).await.expect("delete"),
        "the document existed"
    );

    assert_eq!(store.document(&gone).await.expect("read"), None);
    assert!(
        store
            .ops(&gone, Revision(0), Revision(10), 10)
            .await
            .expect("ops")
            .is_empty(),
        "no ops left"
    );
    assert_eq!(
        store
            .snapshot_at_or_before(&gone, Revision(10))
            .await
            .expect("snapshot"),
        None,
        "no snapshot left"
    );
    assert!(
        store
            .snapshot_revisions(&gone)
            .await
            .expect("snapshots")
            .is_empty()
    );
    assert!(store.grants(&gone).await.expect("grants").is_empty());
    assert_eq!(store.permission(&gone, "alice").await.expect("read"), None);
    assert!(store.links(&gone).await.expect("links").is_empty());
    for l in &gone_links {
        assert_eq!(
            store
                .link_by_token_hash(&l.token_hash)
                .await
                .expect("lookup"),
            None,
            "a deleted document's link opens nothing"
        );
    }
    assert_eq!(
        store.find_op(&gone, &alice, Seq(3)).await.expect("find"),
        None
    );
    assert_eq!(store.last_seq(&gone, &alice).await.expect("last"), None);
    let listed = store.list_documents(100).await.expect("list");
    assert!(
        listed.iter().all(|d| d.id != gone),
        "listed after delete: {listed:?}"
    );
    assert_not_found(
        store.append(batch(&gone, records(6..=6, &alice))).await,
        "append to a deleted document",
    );

    // The bystander is untouched.
    let meta = store.document(&kept).await.expect("read").expect("kept");
    assert_eq!(meta.rev, Revision(5));
    assert_eq!(
        store
            .ops(&kept, Revision(0), Revision(10), 10)
            .await
            .expect("ops"),
        owned(&records(1..=5, &alice))
    );
    assert_eq!(
        store.snapshot_revisions(&kept).await.expect("snapshots"),
        vec![Revision(0), Revision(5)]
    );
    assert_eq!(store.grants(&kept).await.expect("grants").len(), 2);
    assert_eq!(store.links(&kept).await.expect("links").len(), 2);

    // A second delete finds nothing; a missing id is not an error either.
    assert!(!store.delete_document(&gone).await.expect("delete again"));
    assert!(
        !store
            .delete_document(&doc("never-was"))
            .await
            .expect("delete missing")
    );

    // The id is new again: revision 0, its own text, no memory of the old
    // client's seqs.
    let meta = store
        .create_document(&gone, "python", "fresh")
        .await
        .expect("create again");
    assert_eq!(meta.rev, Revision(0));
    let snap = store
        .snapshot_at_or_before(&gone, Revision(10))
        .await
        .expect("snapshot")
        .expect("snapshot 0");
    assert_eq!((snap.rev, snap.text.as_str()), (Revision(0), "fresh"));
    assert_eq!(store.last_seq(&gone, &alice).await.expect("last"), None);
    assert!(store.grants(&gone).await.expect("grants").is_empty());
}
