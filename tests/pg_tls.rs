//! TLS to PostgreSQL against the local server (which has `ssl = on`): a
//! store opened with `sslmode=require` works and every one of its sessions
//! is encrypted as the server sees it; `verify-full` takes the server's own
//! certificate and refuses another CA's or another host name, with an error
//! that says so; `disable` stays plain (so the checks can tell).
//!
//! Needs `TANDEM_TEST_DATABASE_URL`, like every PostgreSQL test
//! (tests/common/pg.rs), naming the server by address (127.0.0.1): the
//! host-name checks connect to the same address as `localhost`, the name in
//! the server's certificate.

mod common;

use std::path::{Path, PathBuf};

use common::pg::{TestDatabase, admin_client};
use tandem::ids::DocId;
use tandem::store::Store;
use tandem::store::pg_tls::{ConnectOptions, Target, error_chain};
use tandem::store::postgres::{PostgresStore, migrate_with};

/// A self-signed certificate that signed nothing the server has.
fn wrong_ca() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/wrong-ca.pem")
}

/// `url` with `params` added to its query.
fn with_params(url: &str, params: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{params}")
}

/// `url` naming its host `localhost` (the name in the server's
/// certificate) while connecting to the same address.
fn as_localhost(url: &str) -> String {
    let config: tokio_postgres::Config = url.parse().expect("test URL parses");
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        other => panic!("TANDEM_TEST_DATABASE_URL must name a TCP host, not {other:?}"),
    };
    let url = url.replacen(&format!("@{host}"), "@localhost", 1);
    with_params(&url, &format!("hostaddr={host}"))
}

/// The file of the server's certificate, which is self-signed and so its
/// own CA (`SHOW ssl_cert_file`; the server runs on this machine).
async fn server_certificate(admin_url: &str) -> PathBuf {
    let admin = admin_client(admin_url).await;
    let ssl: String = admin
        .query_one("SHOW ssl", &[])
        .await
        .expect("SHOW ssl")
        .get(0);
    assert_eq!(
        ssl, "on",
        "the PostgreSQL server of TANDEM_TEST_DATABASE_URL must have ssl = on for these tests"
    );
    let file: String = admin
        .query_one("SHOW ssl_cert_file", &[])
        .await
        .expect("SHOW ssl_cert_file")
        .get(0);
    let path = PathBuf::from(file);
    assert!(
        std::fs::read(&path).is_ok(),
        "the server's certificate {} must be readable here",
        path.display()
    );
    path
}

/// Whether the session of a fresh connection made as the store makes them
/// is encrypted, as the server sees it.
async fn session_is_ssl(url: &str, options: &ConnectOptions) -> Result<bool, String> {
    let target = Target::parse(url, options).map_err(|e| e.to_string())?;
    let (client, connection) = target
        .config
        .connect(target.tls.clone())
        .await
        .map_err(|e| error_chain(&e))?;
    tokio::spawn(connection);
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(row.get(0))
}

/// `ssl` of every session connected to `database` but the asker's.
async fn sessions_ssl(admin_url: &str, database: &str) -> Vec<bool> {
    admin_client(admin_url)
        .await
        .query(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE a.datname = $1 AND a.pid <> pg_backend_pid()",
            &[&database],
        )
        .await
        .expect("pg_stat_ssl")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_encrypts_every_connection_of_the_store() {
    let Some(db) = TestDatabase::new().await else {
        return;
    };
    let url = with_params(&db.url, "sslmode=require");
    let options = ConnectOptions::default();
    assert_eq!(session_is_ssl(&url, &options).await, Ok(true));

    let applied = migrate_with(&url, &options)
        .await
        .expect("migrate over TLS");
    assert!(!applied.is_empty());
    let store = PostgresStore::connect_with(&url, &options)
        .await
        .expect("store over TLS");
    let id = DocId::parse("tls-doc").expect("id");
    store
        .create_document(&id, "rust", "fn main() {}")
        .await
        .expect("create (the writer's connection)");
    let meta = store
        .document(&id)
        .await
        .expect("read (a pooled connection)")
        .expect("the document");
    assert_eq!(meta.language, "rust");

    // The writer and the pooled readers: all encrypted.
    let sessions = sessions_ssl(&db.admin_url, &db.name).await;
    assert!(sessions.len() >= 2, "writer and pool: {sessions:?}");
    assert!(sessions.iter().all(|&ssl| ssl), "{sessions:?}");
    drop(store);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_stays_plain() {
    let Some(db) = TestDatabase::new().await else {
        return;
    };
    let url = with_params(&db.url, "sslmode=disable");
    let options = ConnectOptions::default();
    assert_eq!(session_is_ssl(&url, &options).await, Ok(false));
    let _store = PostgresStore::connect_with(&url, &options)
        .await
        .expect("plain store");
    let sessions = sessions_ssl(&db.admin_url, &db.name).await;
    assert!(!sessions.is_empty());
    assert!(sessions.iter().all(|&ssl| !ssl), "{sessions:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_takes_the_servers_certificate_and_name() {
    let Some(db) = TestDatabase::new().await else {
        return;
    };
    let cert = server_certificate(&db.admin_url).await;
    let options = ConnectOptions {
        ca_file: Some(cert.clone()),
    };
    let url = with_params(&as_localhost(&db.url), "sslmode=verify-full");
    assert_eq!(session_is_ssl(&url, &options).await, Ok(true));
    migrate_with(&url, &options)
        .await
        .expect("migrate, verified");
    let store = PostgresStore::connect_with(&url, &options)
        .await
        .expect("store, verified");
    let id = DocId::parse("verified").expect("id");
    store
        .create_document(&id, "text", "")
        .await
        .expect("create");

    // The CA file may come in the URL instead, percent-encoded.
    let in_url = with_params(
        &as_localhost(&db.url),
        &format!(
            "sslmode=verify-full&sslrootcert={}",
            cert.display().to_string().replace('/', "%2F")
        ),
    );
    assert_eq!(
        session_is_ssl(&in_url, &ConnectOptions::default()).await,
        Ok(true)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_refuses_another_ca_and_another_name() {
    let Some(db) = TestDatabase::new().await else {
        return;
    };
    let cert = server_certificate(&db.admin_url).await;

    // Another CA: refused, by the store and by migrations, saying why.
    let wrong = ConnectOptions {
        ca_file: Some(wrong_ca()),
    };
    let url = with_params(&as_localhost(&db.url), "sslmode=verify-full");
    let err = session_is_ssl(&url, &wrong).await.expect_err("wrong CA");
    assert!(err.contains("invalid peer certificate"), "{err}");
    assert!(err.contains("UnknownIssuer"), "{err}");
    let err = PostgresStore::connect_with(&url, &wrong)
        .await
        .err()
        .expect("store refused")
        .to_string();
    assert!(
        err.contains("invalid peer certificate: UnknownIssuer"),
        "{err}"
    );
    let err = migrate_with(&url, &wrong)
        .await
        .expect_err("migrations refused")
        .to_string();
    assert!(err.contains("invalid peer certificate"), "{err}");

    // The right CA, but the address is not the certificate's name.
    let right = ConnectOptions {
        ca_file: Some(cert),
    };
    let by_address = with_params(&db.url, "sslmode=verify-full");
    let err = session_is_ssl(&by_address, &right)
        .await
        .expect_err("wrong name");
    assert!(err.contains("invalid peer certificate"), "{err}");
    assert!(err.contains("certificate not valid for name"), "{err}");
    // verify-ca checks the chain only, so the address is fine there, and
    // require with a CA file is verify-ca.
    for mode in ["verify-ca", "require"] {
        let url = with_params(&db.url, &format!("sslmode={mode}"));
        assert_eq!(session_is_ssl(&url, &right).await, Ok(true), "{mode}");
        let url = with_params(&as_localhost(&db.url), &format!("sslmode={mode}"));
        let err = session_is_ssl(&url, &wrong).await.expect_err(mode);
        assert!(err.contains("UnknownIssuer"), "{mode}: {err}");
    }
}
