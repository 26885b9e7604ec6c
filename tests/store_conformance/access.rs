//! Access rights: per-document grants (`read`, `write`, `admin`), the
//! creator as admin, and share links stored by the hash of their token.

use futures_util::future::join_all;
use tandem::auth::Permission::{self, Admin, Read, Write};
use tandem::store::{ShareLink, Store, StoreError};

use super::*;

/// User ids a store must keep exactly: any text but U+0000 (a JWT `sub` is
/// any string). Quotes and backslashes, SQL-looking text, astral
/// characters, a combining mark, whitespace, 200 characters, and case
/// (`Alice` is not `alice`).
pub fn odd_users() -> Vec<String> {
    vec![
        "alice".to_owned(),
        "Alice".to_owned(),
        "o'brien \"the\" \\ `user`".to_owned(),
        "'); DROP TABLE document_access; --".to_owned(),
        "Zoë 🙂 漢字 e\u{301}".to_owned(),
        " padded\tand\nnewlined ".to_owned(),
        "%_*?".to_owned(),
        "ü".repeat(200),
        "x".repeat(200),
    ]
}

/// Fails unless `r` is an `Invalid`.
#[track_caller]
fn assert_invalid<T: std::fmt::Debug>(r: Result<T, StoreError>, what: &str) {
    match r {
        Err(StoreError::Invalid(_)) => {}
        other => panic!("{what}: expected Invalid, got {other:?}"),
    }
}

/// Grants: upserted (raised and lowered), listed sorted by user, looked up,
/// revoked once; a right on one document gives nothing on another; a
/// missing document is `NotFound` to write and empty to read.
pub async fn access_grants(store: &dyn Store) {
    let (one, other) = (doc("guarded"), doc("guarded-other"));
    for id in [&one, &other] {
        store.create_document(id, "rust", "").await.expect("create");
    }
    assert!(store.grants(&one).await.expect("grants").is_empty());
    assert_eq!(store.permission(&one, "alice").await.expect("read"), None);

    store.grant(&one, "carol", Read).await.expect("grant");
    store.grant(&one, "alice", Write).await.expect("grant");
    store.grant(&one, "bob", Admin).await.expect("grant");
    let expect = |list: &[(&str, Permission)]| {
        list.iter()
            .map(|(u, p)| ((*u).to_owned(), *p))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        store.grants(&one).await.expect("grants"),
        expect(&[("alice", Write), ("bob", Admin), ("carol", Read)]),
        "sorted by user"
    );
    for (user, p) in [("alice", Write), ("bob", Admin), ("carol", Read)] {
        assert_eq!(
            store.permission(&one, user).await.expect("read"),
            Some(p),
            "{user}"
        );
    }

    // Upsert: a second grant replaces the first, up or down.
    store.grant(&one, "alice", Admin).await.expect("raise");
    store.grant(&one, "bob", Read).await.expect("lower");
    store.grant(&one, "carol", Read).await.expect("same again");
    assert_eq!(
        store.grants(&one).await.expect("grants"),
        expect(&[("alice", Admin), ("bob", Read), ("carol", Read)])
    );

    // Nothing leaks to the other document.
    assert!(store.grants(&other).await.expect("grants").is_empty());
    for user in ["alice", "bob", "carol"] {
        assert_eq!(store.permission(&other, user).await.expect("read"), None);
    }
    store
        .grant(&other, "bob", Write)
        .await
        .expect("grant other");
    assert_eq!(
        store.permission(&one, "bob").await.expect("read"),
        Some(Read)
    );
    assert_eq!(
        store.permission(&other, "bob").await.expect("read"),
        Some(Write)
    );
    // Revoking on one document leaves the other's grant.
    assert!(store.revoke(&other, "bob").await.expect("revoke"));
    assert_eq!(
        store.permission(&one, "bob").await.expect("read"),
        Some(Read)
    );

    // Revoke: once true, then false; others untouched.
    assert!(store.revoke(&one, "carol").await.expect("revoke"));
    assert!(!store.revoke(&one, "carol").await.expect("revoke again"));
    assert!(!store.revoke(&one, "nobody").await.expect("revoke unknown"));
    assert_eq!(store.permission(&one, "carol").await.expect("read"), None);
    assert_eq!(
        store.grants(&one).await.expect("grants"),
        expect(&[("alice", Admin), ("bob", Read)])
    );
    // A revoked user can be granted again.
    store
        .grant(&one, "carol", Write)
        .await
        .expect("grant again");
    assert_eq!(
        store.permission(&one, "carol").await.expect("read"),
        Some(Write)
    );

    // A missing document.
    let missing = doc("missing");
    assert_not_found(store.grant(&missing, "alice", Read).await, "grant");
    assert_eq!(store.document(&missing).await.expect("read"), None);
    assert!(store.grants(&missing).await.expect("grants").is_empty());
    assert_eq!(
        store.permission(&missing, "alice").await.expect("read"),
        None
    );
    assert!(!store.revoke(&missing, "alice").await.expect("revoke"));
}

/// Odd user ids round-trip exactly, are sorted in byte order, and are
/// distinct by case; U+0000, which not every backend can hold, is refused
/// on write by all of them and found nowhere on read.
pub async fn access_odd_user_ids(store: &dyn Store) {
    let id = doc("odd-users");
    store
        .create_document(&id, "rust", "")
        .await
        .expect("create");
    let users = odd_users();
    for (i, user) in users.iter().enumerate() {
        let p = Permission::ALL[i % 3];
        store.grant(&id, user, p).await.expect("grant");
    }
    let mut expected: Vec<(String, Permission)> = users
        .iter()
        .enumerate()
        .map(|(i, u)| (u.clone(), Permission::ALL[i % 3]))
        .collect();
    expected.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    assert_eq!(store.grants(&id).await.expect("grants"), expected);
    for (i, user) in users.iter().enumerate() {
        assert_eq!(
            store.permission(&id, user).await.expect("read"),
            Some(Permission::ALL[i % 3]),
            "{user:?}"
        );
    }
    // Exact match only: no case folding, no trimming, no patterns.
    for near in ["ALICE", "alice ", "%", "x", "Zoë 🙂 漢字 é"] {
        assert_eq!(
            store.permission(&id, near).await.expect("read"),
            None,
            "{near:?}"
        );
    }
    assert!(store.revoke(&id, "Alice").await.expect("revoke"));
    assert_eq!(
        store.permission(&id, "alice").await.expect("read"),
        Some(Read),
        "revoking Alice leaves alice"
    );

    assert_invalid(store.grant(&id, "nul\0user", Admin).await, "U+0000");
    assert_eq!(
        store.permission(&id, "nul\0user").await.expect("read"),
        None
    );
    assert!(!store.revoke(&id, "nul\0user").await.expect("revoke"));
    assert_eq!(
        store.grants(&id).await.expect("grants").len(),
        users.len() - 1
    );
}

/// `create_document_as`: the creator is the admin, in the same step as the
/// creation; creating an existing document grants nothing.
pub async fn access_creator_is_admin(store: &dyn Store) {
    let id = doc("owned");
    let meta = store
        .create_document_as(&id, "rust", "fn main() {}", "Zoë")
        .await
        .expect("create");
    assert_eq!(store.document(&id).await.expect("read"), Some(meta));
    assert_eq!(
        store.grants(&id).await.expect("grants"),
        vec![("Zoë".to_owned(), Admin)]
    );
    assert_conflict(
        store.create_document_as(&id, "rust", "", "mallory").await,
        "create again",
    );
    assert_eq!(store.permission(&id, "mallory").await.expect("read"), None);
    assert_eq!(
        store.grants(&id).await.expect("grants"),
        vec![("Zoë".to_owned(), Admin)]
    );

    // A plain create makes no admin.
    let plain = doc("unowned");
    store
        .create_document(&plain, "rust", "")
        .await
        .expect("create");
    assert!(store.grants(&plain).await.expect("grants").is_empty());

    // An owner that cannot be stored creates nothing.
    let refused = doc("refused-owner");
    assert_invalid(
        store.create_document_as(&refused, "rust", "", "a\0b").await,
        "U+0000 owner",
    );
    assert_eq!(store.document(&refused).await.expect("read"), None);
}

/// Writes to access rights that land in one group commit stay apart: one
/// refused (a missing document) undoes none of the others.
pub async fn access_writes_grouped(store: &dyn Store) {
    let id = doc("crowded");
    store
        .create_document(&id, "rust", "")
        .await
        .expect("create");
    let users: Vec<String> = (0..24).map(|i| format!("user-{i:02}")).collect();
    let missing = doc("missing");
    let grants = users
        .iter()
        .map(|u| store.grant(&id, u, Write))
        .chain([store.grant(&missing, "user-00", Write)]);
    let results = join_all(grants).await;
    let (last, rest) = results.split_last().expect("results");
    assert!(matches!(last, Err(StoreError::NotFound)), "{last:?}");
    assert!(rest.iter().all(Result::is_ok), "{rest:?}");
    assert_eq!(
        store.grants(&id).await.expect("grants"),
        users.iter().map(|u| (u.clone(), Write)).collect::<Vec<_>>()
    );
    let revokes = users.iter().step_by(2).map(|u| store.revoke(&id, u));
    assert!(
        join_all(revokes)
            .await
            .into_iter()
            .all(|r| r.expect("revoke"))
    );
    assert_eq!(
        store.grants(&id).await.expect("grants"),
        users
            .iter()
            .skip(1)
            .step_by(2)
            .map(|u| (u.clone(), Write))
            .collect::<Vec<_>>()
    );
}

/// A test share link: `n` picks its id, token hash and time.
pub fn link(id: &DocId, n: u32, permission: Permission) -> ShareLink {
    ShareLink {
        id: format!("link-{n:04}"),
        document: id.clone(),
        token_hash: format!("{:064x}", u128::from(n) * 0x9e37_79b9_7f4a_7c15),
        permission,
        expires_ms: 1_800_000_000_000 + i64::from(n),
        created_ms: 1_700_000_000_000 + i64::from(n) * 1_000,
        created_by: "alice".to_owned(),
    }
}

/// Share links: created, listed newest first (expired ones too), looked up
/// by token hash, revoked per document; duplicate ids and token hashes are
/// `Conflict`, a missing document `NotFound`, an admin link `Invalid`.
pub async fn share_links(store: &dyn Store) {
    let (id, other) = (doc("shared"), doc("shared-other"));
    for d in [&id, &other] {
        store.create_document(d, "rust", "").await.expect("create");
    }
    assert!(store.links(&id).await.expect("links").is_empty());

    let first = link(&id, 1, Read);
    let second = link(&id, 2, Write);
    let mut expired = link(&id, 3, Read);
    expired.expires_ms = 1;
    // Made in the same millisecond as `second`: ties go by id.
    let mut twin = link(&id, 4, Write);
    twin.created_ms = second.created_ms;
    let foreign = link(&other, 5, Write);
    for l in [&first, &second, &expired, &twin, &foreign] {
        store.create_link(l).await.expect("create link");
    }
    assert_eq!(
        store.links(&id).await.expect("links"),
        vec![expired.clone(), second.clone(), twin.clone(), first.clone()],
        "newest first, ties by id, expired included"
    );
    assert_eq!(
        store.links(&other).await.expect("links"),
        vec![foreign.clone()]
    );

    // Lookup by token hash finds the link, whichever document it opens.
    for l in [&first, &second, &expired, &twin, &foreign] {
        assert_eq!(
            store
                .link_by_token_hash(&l.token_hash)
                .await
                .expect("lookup")
                .as_ref(),
            Some(l)
        );
    }
    assert_eq!(
        store
            .link_by_token_hash("0".repeat(64).as_str())
            .await
            .expect("lookup"),
        None
    );
    assert_eq!(
        store
            .link_by_token_hash(&first.token_hash.to_uppercase().replace('0', "O"))
            .await
            .expect("lookup"),
        None
    );
    assert_eq!(store.link_by_token_hash("").await.expect("lookup"), None);
    // Looking up by id is not looking up by token.
    assert_eq!(
        store.link_by_token_hash(&first.id).await.expect("lookup"),
        None
    );

    // Duplicates: the id across documents, the token hash across links.
    let mut same_id = link(&other, 6, Read);
    same_id.id.clone_from(&first.id);
    assert_conflict(store.create_link(&same_id).await, "duplicate id");
    let mut same_hash = link(&other, 7, Read);
    same_hash.token_hash.clone_from(&second.token_hash);
    assert_conflict(store.create_link(&same_hash).await, "duplicate hash");
    assert_conflict(store.create_link(&first).await, "the same link again");
    assert_eq!(
        store
            .link_by_token_hash(&second.token_hash)
            .await
            .expect("lookup"),
        Some(second.clone()),
        "the refused link changed nothing"
    );

    // A missing document, an admin link, text a backend cannot hold.
    let missing = doc("missing");
    assert_not_found(
        store.create_link(&link(&missing, 8, Read)).await,
        "link to a missing document",
    );
    assert!(store.links(&missing).await.expect("links").is_empty());
    assert_invalid(store.create_link(&link(&id, 9, Admin)).await, "admin link");
    let mut nul = link(&id, 10, Read);
    nul.created_by = "a\0b".to_owned();
    assert_invalid(store.create_link(&nul).await, "U+0000 creator");
    assert_eq!(
        store
            .link_by_token_hash(&nul.token_hash)
            .await
            .expect("lookup"),
        None
    );
    assert_eq!(store.links(&id).await.expect("links").len(), 4);

    // Revoke: only the link's own document; once.
    assert!(
        !store.revoke_link(&other, &first.id).await.expect("revoke"),
        "another document's link"
    );
    assert_eq!(
        store
            .link_by_token_hash(&first.token_hash)
            .await
            .expect("lookup"),
        Some(first.clone())
    );
    assert!(store.revoke_link(&id, &first.id).await.expect("revoke"));
    assert!(!store.revoke_link(&id, &first.id).await.expect("again"));
    assert!(
        !store
            .revoke_link(&id, "no-such-link")
            .await
            .expect("unknown")
    );
    assert!(
        !store
            .revoke_link(&missing, "link-0001")
            .await
            .expect("missing")
    );
    assert!(!store.revoke_link(&id, "nul\0id").await.expect("U+0000"));
    assert_eq!(
        store
            .link_by_token_hash(&first.token_hash)
            .await
            .expect("lookup"),
        None
    );
    assert_eq!(
        store.links(&id).await.expect("links"),
        vec![expired.clone(), second.clone(), twin.clone()]
    );
    // The id of a revoked link may be used again.
    store.create_link(&first).await.expect("re-create");
    assert_eq!(store.links(&id).await.expect("links").len(), 4);

    // Links are no grants, and grants no links.
    assert!(store.grants(&id).await.expect("grants").is_empty());
    store.grant(&id, "alice", Admin).await.expect("grant");
    assert_eq!(store.links(&id).await.expect("links").len(), 4);
}

/// Link fields round-trip exactly: odd ids and creators, extreme times.
pub async fn share_link_fields(store: &dyn Store) {
    let id = doc("shared-odd");
    store
        .create_document(&id, "rust", "")
        .await
        .expect("create");
    let mut made = Vec::new();
    for (n, creator) in (100..).zip(odd_users()) {
        let mut l = link(&id, n, if n % 2 == 0 { Read } else { Write });
        l.id = format!("{creator}#{n}");
        l.token_hash = format!("sha256:{creator}:{n}");
        l.created_by = creator;
        l.created_ms = 1_700_000_000_000;
        l.expires_ms = match n % 3 {
            0 => i64::MAX,
            1 => i64::MIN,
            _ => 0,
        };
        store.create_link(&l).await.expect("create link");
        made.push(l);
    }
    for l in &made {
        assert_eq!(
            store
                .link_by_token_hash(&l.token_hash)
                .await
                .expect("lookup")
                .as_ref(),
            Some(l),
            "{:?}",
            l.id
        );
    }
    // All in one millisecond: ordered by id, in byte order.
    made.sort_by(|a, b| a.id.as_bytes().cmp(b.id.as_bytes()));
    assert_eq!(store.links(&id).await.expect("links"), made);
    for l in &made {
        assert!(store.revoke_link(&id, &l.id).await.expect("revoke"));
    }
    assert!(store.links(&id).await.expect("links").is_empty());
}

/// Grants and links survive a reopen (and, for PostgreSQL, migrating an
/// already migrated database again).
pub async fn access_survives_reopen(backend: &dyn Backend) {
    let id = doc("kept-rights");
    let shared = link(&id, 1, Write);
    {
        let store = backend.open().await;
        store
            .create_document_as(&id, "rust", "", "owner")
            .await
            .expect("create");
        store.grant(&id, "reader", Read).await.expect("grant");
        store.create_link(&shared).await.expect("link");
    }
    let store = backend.open().await;
    assert_eq!(
        store.grants(&id).await.expect("grants"),
        vec![("owner".to_owned(), Admin), ("reader".to_owned(), Read)]
    );
    assert_eq!(
        store
            .link_by_token_hash(&shared.token_hash)
            .await
            .expect("lookup"),
        Some(shared.clone())
    );
    assert_conflict(store.create_link(&shared).await, "link after reopen");
}
