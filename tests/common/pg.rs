//! A fresh PostgreSQL database per test, on the server that
//! `TANDEM_TEST_DATABASE_URL` names. Without the variable, a test that needs
//! one fails in CI (`CI=true`) and elsewhere passes without running, after
//! writing one line to stderr:
//!
//! ```text
//! SKIPPED(postgres): <test binary>::<test name> (TANDEM_TEST_DATABASE_URL not set)
//! ```
//!
//! `scripts/test` collects those lines and names the skipped tests in its
//! final `SKIPPED:` summary. A helper for another service (Redis) should
//! print `SKIPPED(redis): ...` the same way.

use std::io::Write;

use super::{WAIT, within};

/// A fresh PostgreSQL database on the server that `TANDEM_TEST_DATABASE_URL`
/// names, dropped (with any connections still open to it) when this is
/// dropped, also when the test panics.
pub struct TestDatabase {
    /// The server's URL, for creating and dropping the test database.
    pub admin_url: String,
    /// The test database's name.
    pub name: String,
    /// The test database's URL.
    pub url: String,
}

impl TestDatabase {
    /// `None` (after saying so on stderr) when no server is configured
    /// outside CI; panics when none is configured in CI.
    pub async fn new() -> Option<Self> {
        let admin_url = match std::env::var("TANDEM_TEST_DATABASE_URL") {
            Ok(url) if !url.is_empty() => url,
            _ => {
                if std::env::var("CI").as_deref() == Ok("true") {
                    panic!("TANDEM_TEST_DATABASE_URL must be set in CI");
                }
                // Straight to stderr, past the test harness's capture of
                // `eprintln!`, so the skip shows in every run; one write, so
                // that the line is not interleaved with a server's logging.
                let line = format!(
                    "SKIPPED(postgres): {} (TANDEM_TEST_DATABASE_URL not set)\n",
                    test_name()
                );
                let _ = std::io::stderr().write_all(line.as_bytes());
                return None;
            }
        };
        let name = format!("tandem_test_{:016x}", rand::random::<u64>());
        let admin = admin_client(&admin_url).await;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create test database");
        let url = database_url(&admin_url, &name);
        Some(Self {
            admin_url,
            name,
            url,
        })
    }
}

/// The running test as `<test binary>::<path in it>`, e.g.
/// `store::postgres::append_fence`: the harness names each test's thread
/// after the test, and a `#[tokio::test]` body runs on that thread.
pub(crate) fn test_name() -> String {
    let binary = env!("CARGO_CRATE_NAME");
    match std::thread::current().name() {
        Some(name) if name != "main" => format!("{binary}::{name}"),
        _ => format!("{binary}::<unnamed test>"),
    }
}

/// `url` with its database (the path) replaced by `name`.
fn database_url(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let base = match base[after_scheme..].find('/') {
        Some(slash) => &base[..after_scheme + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

pub async fn admin_client(url: &str) -> tokio_postgres::Client {
    let connect = tokio_postgres::connect(url, tokio_postgres::NoTls);
    let (client, connection) = within(WAIT, "a connection to PostgreSQL", connect)
        .await
        .expect("connect to TANDEM_TEST_DATABASE_URL");
    tokio::spawn(connection);
    client
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime, where blocking on another
        // future is not allowed: drop the database from a thread of its own.
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                admin_client(&url)
                    .await
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) && !std::thread::panicking() {
            panic!("dropping test database {}: {dropped:?}", self.name);
        }
    }
}
