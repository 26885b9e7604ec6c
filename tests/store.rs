//! The `Store` conformance suite (`tests/store_conformance/`), instantiated
//! once per backend.
//!
//! Each backend gets a module of `#[tokio::test]`s, one per conformance
//! check, each on fresh storage: creating documents, appending and reading
//! the op log, the append fence, `NotFound` for missing documents, the
//! `(client, seq)` dedupe lookups, snapshots, languages, listing, many
//! concurrent writers, durability across a reopen, access rights
//! (grants, the creator as admin, share links by token hash), the
//! lease-epoch fence between owners, and group commit (a failing append
//! queued with others fails alone). SQLite alone also
//! gets `sync_seam`: no write is answered before a flush that covers it.
//!
//! Adding a backend is one line: implement [`Backend`] (its `open` must
//! return the same storage on every call) and add
//! `conformance_tests!(name => constructor expression);`. The expression is
//! evaluated inside the async test, so it may `.await`; it yields an
//! `Option`, `None` when the backend's service is not configured.
//!
//! PostgreSQL runs when `TANDEM_TEST_DATABASE_URL` names a server
//! (e.g. `postgres://postgres@127.0.0.1:5432/postgres`); each test gets a
//! fresh database `tandem_test_<random>`, dropped when the test ends. Without
//! the variable the PostgreSQL tests fail in CI (`CI=true`) and elsewhere
//! print `SKIPPED: PostgreSQL conformance ...` to stderr and pass, so a
//! backend is never skipped silently.

mod common;
mod store_conformance;
#[path = "store_conformance/sync_seam.rs"]
mod sync_seam;

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use common::pg::{TestDatabase, admin_client};
use store_conformance::Backend;
use tandem::store::SharedStore;
use tandem::store::postgres::{PostgresStore, migrate};
use tandem::store::sqlite::SqliteStore;

/// Instantiates every conformance check for one backend.
macro_rules! conformance_tests {
    ($backend:ident => $make:expr) => {
        mod $backend {
            use super::*;

            conformance_tests!(@each $make;
                store: create_document, append_and_read_back, append_fence,
                    append_to_missing_document, dedupe_lookups, snapshots,
                    set_language, list_documents,
                    access_grants, access_odd_user_ids, access_creator_is_admin,
                    access_writes_grouped, share_links, share_link_fields,
                    lease_epoch_fence, delete_document, group_commit_isolates_failures,
                    pipelined_appends_keep_order, snapshot_deltas_random;
                backend: concurrent_appends, reopen_keeps_data, access_survives_reopen,
                    snapshot_deltas_survive_reopen;
            );
        }
    };
    (@each $make:expr;
        store: $($store_test:ident),* ;
        backend: $($backend_test:ident),* ;
    ) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $store_test() {
                let Some(backend) = $make else { return };
                let store = store_conformance::Backend::open(&backend).await;
                store_conformance::$store_test(&*store).await;
            }
        )*
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $backend_test() {
                let Some(backend) = $make else { return };
                store_conformance::$backend_test(&backend).await;
            }
        )*
    };
}

/// SQLite in a fresh temporary directory, removed when the test ends.
struct Sqlite {
    dir: tempfile::TempDir,
}

impl Sqlite {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temporary directory"),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("tandem.db")
    }
}

#[async_trait]
impl Backend for Sqlite {
    async fn open(&self) -> SharedStore {
        Arc::new(SqliteStore::open(self.path()).expect("open SQLite store"))
    }
}

conformance_tests!(sqlite => Some(Sqlite::new()));

#[async_trait]
impl Backend for TestDatabase {
    async fn open(&self) -> SharedStore {
        migrate(&self.url).await.expect("migrate");
        Arc::new(
            PostgresStore::connect(&self.url)
                .await
                .expect("connect PostgreSQL store"),
        )
    }
}

conformance_tests!(postgres => TestDatabase::new().await);

/// PostgreSQL only: when the server closes the writer's connection, appends
/// fail as `Unavailable` (which the document task retries) until the writer
/// reconnects on a later batch, and then succeed: it never stays down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_writer_reconnects() {
    use tandem::ids::Revision;
    use tandem::store::StoreError;

    let Some(backend) = TestDatabase::new().await else {
        return;
    };
    let store = backend.open().await;
    let id = store_conformance::doc("reconnect");
    let who = store_conformance::client("alice");
    store
        .create_document(&id, "rust", "")
        .await
        .expect("create");
    let admin = admin_client(&backend.admin_url).await;
    let terminated = admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
            &[&backend.name],
        )
        .await
        .expect("terminate the store's connections");
    assert!(terminated >= 2, "the writer's and a reader's connections");
    let ops = store_conformance::records(1..=1, &who);
    let mut attempts = 0;
    loop {
        attempts += 1;
        match store
            .append(store_conformance::batch(&id, ops.clone()))
            .await
        {
            Ok(()) => break,
            Err(StoreError::Unavailable(_)) if attempts < 5 => {}
            other => panic!("attempt {attempts}: expected Ok or Unavailable, got {other:?}"),
        }
    }
    // Reads recover too (the pool replaces its broken connections).
    let mut meta = store.document(&id).await;
    if matches!(meta, Err(StoreError::Unavailable(_))) {
        meta = store.document(&id).await;
    }
    assert_eq!(meta.expect("read").expect("exists").rev, Revision(1));
}

/// PostgreSQL only: a connection cut while a group's `COMMIT` is under way
/// (its appends already answered as written) leaves the outcome unknown.
/// The writer finds out after it reconnects (the append is stored, or it
/// writes it again) instead of failing its `Durable`, so a document keeps
/// going without closing. Several documents append pipelined, as document
/// tasks do (retrying an append that fails `Unavailable`), while every
/// connection of the store is cut again and again; every `Durable` must
/// resolve `Ok`, and each log must hold each op exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_commit_cut_midway_is_settled_not_failed() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use futures_util::future::join_all;
    use tandem::ids::Revision;
    use tandem::store::StoreError;

    const DOCUMENTS: usize = 4;
    const OPS: u64 = 400;
    let Some(backend) = TestDatabase::new().await else {
        return;
    };
    let store = backend.open().await;
    let who = store_conformance::client("alice");
    let ids: Vec<_> = (0..DOCUMENTS)
        .map(|d| store_conformance::doc(&format!("cut-{d}")))
        .collect();
    for id in &ids {
        store.create_document(id, "rust", "").await.expect("create");
    }
    let done = Arc::new(AtomicBool::new(false));
    let cutter = {
        let (admin, name, done) = (
            admin_client(&backend.admin_url).await,
            backend.name.clone(),
            Arc::clone(&done),
        );
        tokio::spawn(async move {
            let mut cuts = 0u32;
            while !done.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(3 + u64::from(cuts % 7))).await;
                admin
                    .execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                         WHERE datname = $1 AND pid <> pg_backend_pid()",
                        &[&name],
                    )
                    .await
                    .expect("terminate the store's connections");
                cuts += 1;
            }
            cuts
        })
    };
    let writers = ids.iter().map(|id| {
        let (store, who) = (Arc::clone(&store), who.clone());
        async move {
            let mut durables = Vec::new();
            let mut retries = 0u32;
            let mut rev = 1;
            while rev <= OPS {
                let last = (rev + rev % 2).min(OPS);
                let ops = store_conformance::records(rev..=last, &who);
                match store
                    .append_ordered(store_conformance::batch(id, ops))
                    .await
                {
                    Ok(durable) => {
                        durables.push((rev, durable));
                        rev = last + 1;
                    }
                    Err(StoreError::Unavailable(_)) if retries < 10_000 => {
                        retries += 1;
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    Err(e) => panic!("{id}: append at {rev}: {e:?}"),
                }
            }
            let (revs, durables): (Vec<_>, Vec<_>) = durables.into_iter().unzip();
            let failed: Vec<_> = revs
                .into_iter()
                .zip(join_all(durables).await)
                .filter_map(|(rev, r)| r.err().map(|e| format!("{rev}: {e}")))
                .collect();
            (retries, failed)
        }
    });
    let results = join_all(writers).await;
    done.store(true, Ordering::Relaxed);
    let cuts = cutter.await.expect("cutter");
    let retries: u32 = results.iter().map(|(r, _)| r).sum();
    eprintln!("{cuts} cuts, {retries} appends retried");
    assert!(cuts >= 10, "the connections were cut while appending");
    for (id, (_, failed)) in ids.iter().zip(&results) {
        assert!(failed.is_empty(), "{id}: durables failed: {failed:?}");
    }
    for id in &ids {
        let stored = loop {
            match store.ops(id, Revision(0), Revision(OPS), usize::MAX).await {
                Err(StoreError::Unavailable(_)) => continue,
                other => break other.expect("ops"),
            }
        };
        let expected = store_conformance::owned(&store_conformance::records(1..=OPS, &who));
        assert_eq!(stored, expected, "{id}");
    }
}
