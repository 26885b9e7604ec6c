//! The `Store` conformance suite (`tests/store_conformance/`), instantiated
//! once per backend.
//!
//! Each backend gets a module of `#[tokio::test]`s, one per conformance
//! check, each on fresh storage: creating documents, appending and reading
//! the op log, the append fence, `NotFound` for missing documents, the
//! `(client, seq)` dedupe lookups, snapshots, languages, listing, many
//! concurrent writers, and durability across a reopen.
//!
//! Adding a backend is one line: implement [`Backend`] (its `open` must
//! return the same storage on every call) and add
//! `conformance_tests!(name => constructor expression);`. The expression is
//! evaluated inside the async test, so it may `.await`. A backend that needs
//! a service must fail when the service is missing, not skip.

mod store_conformance;

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use store_conformance::Backend;
use tandem::store::SharedStore;
use tandem::store::sqlite::SqliteStore;

/// Instantiates every conformance check for one backend.
macro_rules! conformance_tests {
    ($backend:ident => $make:expr) => {
        mod $backend {
            use super::*;

            conformance_tests!(@each $make;
                store: create_document, append_and_read_back, append_fence,
                    append_to_missing_document, dedupe_lookups, snapshots,
                    set_language, list_documents;
                backend: concurrent_appends, reopen_keeps_data;
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
                let backend = $make;
                let store = store_conformance::Backend::open(&backend).await;
                store_conformance::$store_test(&*store).await;
            }
        )*
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $backend_test() {
                let backend = $make;
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

conformance_tests!(sqlite => Sqlite::new());
