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
