//! The PostgreSQL store, for several nodes sharing one database.
//!
//! Writes go to one writer task (`writer`) that owns a dedicated
//! connection and group-commits, as the SQLite store does: every job
//! waiting when a transaction starts goes into it, and no write is durable
//! before `COMMIT` has returned. Appends take a fast path
//! (`fast_append`): one prepared statement each, sent with `BEGIN` and
//! `COMMIT` in one round trip, and the next group may be sent while one
//! `COMMIT` is under way. Whatever the fast path leaves runs each job under
//! its own savepoint, so that one job's conflict does not undo the others.
//! One writer means one commit (one WAL flush) for many documents' appends
//! instead of one per append, and no contention between this node's own
//! writers. Reads go through a `bb8` pool.
//!
//! The fence between nodes is the primary key on `ops (document, rev)`: a
//! node that has lost a document's lease and still appends gets
//! [`StoreError::Conflict`] instead of forking history.
//!
//! All of this runs on a small runtime of its own, on its own thread, so the
//! connections do not depend on whichever runtime (an actix worker, a test)
//! happened to call first; callers only await replies. The thread ends when
//! the store is dropped.
//!
//! Every connection (pool, writer, migrations) is made with the TLS
//! connector of the URL's `sslmode` ([`super::pg_tls`]).
//!
//! The schema lives in `sql/` as numbered plain-SQL migrations, embedded in
//! the binary and applied by [`migrate`].

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bb8::Pool;
use bb8_postgres::PostgresConnectionManager;
use ropey::Rope;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, GenericClient, Row};
use tokio_postgres_rustls::MakeRustlsConnect;

mod fast_append;
mod writer;

use super::checkpoint;
use super::job::{Done, Job, Reply};
pub use super::pg_tls::ConnectOptions;
use super::pg_tls::Target;
use super::{
    AppendBatch, CommitStats, DocumentMeta, Durable, OpRecord, ShareLink, Snapshot, Store,
    StoreError, check_epoch, check_link, decode_op, now_ms, sort_grants, sort_links, storable,
    stored_permission,
};
use crate::auth::Permission;
use crate::ids::{ClientId, DocId, LeaseEpoch, Revision, Seq};

/// The migrations, in order: `(version, SQL)`. Each runs once, in its own
/// transaction, and is recorded in `schema_migrations`.
pub const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../sql/0001_init.sql")),
    (2, include_str!("../../sql/0002_share_links.sql")),
    (3, include_str!("../../sql/0003_lease_epoch.sql")),
    (4, include_str!("../../sql/0004_snapshot_deltas.sql")),
];

/// Key of the advisory lock that serialises migrations between nodes that
/// start at once (any constant; this one is "tandem" in ASCII).
const MIGRATION_LOCK: i64 = 0x74_61_6e_64_65_6d;
/// Most jobs in one transaction: bounds how long one commit holds replies.
const MAX_JOBS_PER_COMMIT: usize = 4_096;
/// Jobs queued for the writer before `write` waits for room.
const WRITER_QUEUE: usize = 8_192;
/// Most pooled read connections.
const READER_POOL: u32 = 8;
/// How long a read waits for a pooled connection.
const POOL_TIMEOUT: Duration = Duration::from_secs(5);

type PgPool = Pool<PostgresConnectionManager<MakeRustlsConnect>>;
type Pooled = bb8::PooledConnection<'static, PostgresConnectionManager<MakeRustlsConnect>>;
/// Maps a driver error to what a caller acts on. A unique violation is
/// another writer's revision or an existing id (`Conflict`); a foreign-key
/// violation is a missing document (`NotFound`); a value PostgreSQL refuses
/// (SQLSTATE class 22) would be refused again, so it is not `Unavailable`;
/// everything else (a closed connection, I/O, the server shutting down, a
/// serialisation failure) may succeed when retried.
fn pg_error(e: tokio_postgres::Error) -> StoreError {
    match e.code() {
        Some(c) if *c == SqlState::UNIQUE_VIOLATION => StoreError::Conflict(e.to_string()),
        Some(c) if *c == SqlState::FOREIGN_KEY_VIOLATION => StoreError::NotFound,
        Some(c) if c.code().starts_with("22") => StoreError::Invalid(e.to_string()),
        _ => StoreError::Unavailable(e.to_string()),
    }
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn to_sql(n: u64) -> Result<i64, StoreError> {
    i64::try_from(n).map_err(|_| StoreError::Invalid(format!("{n} is out of range")))
}

fn from_sql(n: i64) -> Result<u64, StoreError> {
    u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("negative count {n}")))
}

fn parse_config(url: &str, options: &ConnectOptions) -> Result<Target, StoreError> {
    // The URL may hold a password: the error names neither.
    Target::parse(url, options).map_err(|e| StoreError::Unavailable(e.to_string()))
}

/// Opens one connection and drives it on the current runtime.
async fn connect(target: &Target) -> Result<Client, StoreError> {
    let (client, connection) =
        target
            .config
            .connect(target.tls.clone())
            .await
            .map_err(|e| match e.code() {
                Some(_) => pg_error(e),
                // Not the server's answer: a refused certificate, I/O; the
                // reason is in the sources.
                None => unavailable(super::pg_tls::error_chain(&e)),
            })?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!("PostgreSQL connection ended: {e}");
        }
    });
    Ok(client)
}

/// Applies every migration in [`MIGRATIONS`] that the database has not
/// recorded yet, holding a session advisory lock so that nodes starting at
/// the same time apply each one exactly once. Returns the versions applied.
///
/// # Errors
///
/// [`StoreError::Unavailable`] when the database cannot be reached or a
/// migration fails (that migration is rolled back).
pub async fn migrate(url: &str) -> Result<Vec<i64>, StoreError> {
    migrate_with(url, &ConnectOptions::default()).await
}

/// [`migrate`] with options the URL does not hold (a CA file).
///
/// # Errors
///
/// As [`migrate`]; also when the URL's TLS settings cannot be used.
pub async fn migrate_with(url: &str, options: &ConnectOptions) -> Result<Vec<i64>, StoreError> {
    let config = parse_config(url, options)?;
    let mut client = connect(&config).await?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg_error)?;
    let applied = apply_migrations(&mut client).await;
    // Closing the session would release the lock too; unlock explicitly so a
    // pooled or long-lived session could not keep it.
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg_error);
    let applied = applied?;
    unlocked?;
    Ok(applied)
}

async fn apply_migrations(client: &mut Client) -> Result<Vec<i64>, StoreError> {
    client
        .batch_execute(
            "SET client_min_messages TO warning;
             CREATE TABLE IF NOT EXISTS schema_migrations (
                 version     bigint PRIMARY KEY,
                 applied_ms  bigint NOT NULL
             )",
        )
        .await
        .map_err(pg_error)?;
    let done: Vec<i64> = client
        .query("SELECT version FROM schema_migrations", &[])
        .await
        .map_err(pg_error)?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()
        .map_err(pg_error)?;
    let mut applied = Vec::new();
    for (version, sql) in MIGRATIONS {
        if done.contains(version) {
            continue;
        }
        let tx = client.transaction().await.map_err(pg_error)?;
        tx.batch_execute(sql)
            .await
            .map_err(|e| unavailable(format!("migration {version}: {e}")))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_ms) VALUES ($1, $2)",
            &[version, &now_ms()],
        )
        .await
        .map_err(pg_error)?;
        tx.commit().await.map_err(pg_error)?;
        tracing::info!("applied migration {version}");
        applied.push(*version);
    }
    Ok(applied)
}

/// The PostgreSQL store. The schema must be migrated first ([`migrate`]).
pub struct PostgresStore {
    /// To the writer task. It ends when the store is dropped.
    writer: mpsc::Sender<Job>,
    /// Pooled read connections.
    pool: PgPool,
    /// The store's own runtime, where reads run.
    runtime: tokio::runtime::Handle,
    /// Shared with the writer task.
    stats: Arc<CommitStats>,
}

impl PostgresStore {
    /// Connects to the database at `url` (a `postgres://` URL), checks it can
    /// be reached, and starts the writer task.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the URL is invalid or the database
    /// cannot be reached.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, &ConnectOptions::default()).await
    }

    /// [`PostgresStore::connect`] with options the URL does not hold (a CA
    /// file for `sslmode=verify-full`).
    ///
    /// # Errors
    ///
    /// As [`PostgresStore::connect`]; also when the URL's TLS settings
    /// cannot be used or the server's certificate is refused.
    pub async fn connect_with(url: &str, options: &ConnectOptions) -> Result<Self, StoreError> {
        let config = parse_config(url, options)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(unavailable)?;
        let handle = runtime.handle().clone();
        let (tx, rx) = mpsc::channel(WRITER_QUEUE);
        let (started_tx, started_rx) = oneshot::channel();
        let stats = Arc::new(CommitStats::default());
        let writer_stats = Arc::clone(&stats);
        std::thread::Builder::new()
            .name("tandem-postgres".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let started = async {
                        let writer = writer::Writer::open(&config).await?;
                        let manager = PostgresConnectionManager::new(
                            config.config.clone(),
                            config.tls.clone(),
                        );
                        let pool = Pool::builder()
                            .max_size(READER_POOL)
                            .connection_timeout(POOL_TIMEOUT)
                            .build(manager)
                            .await
                            .map_err(pg_error)?;
                        drop(
                            pool.get()
                                .await
                                .map_err(|e| unavailable(super::pg_tls::error_chain(&e)))?,
                        );
                        Ok::<_, StoreError>((writer, pool))
                    }
                    .await;
                    match started {
                        Ok((writer, pool)) => {
                            if started_tx.send(Ok(pool)).is_ok() {
                                writer::writer_loop(config, Some(writer), rx, &writer_stats).await;
                            }
                        }
                        Err(e) => {
                            let _ = started_tx.send(Err(e));
                        }
                    }
                });
            })
            .map_err(unavailable)?;
        let pool = started_rx
            .await
            .map_err(|_| unavailable("PostgreSQL thread stopped"))??;
        Ok(Self {
            writer: tx,
            pool,
            runtime: handle,
            stats,
        })
    }

    async fn write<T: Send + 'static>(
        &self,
        make: impl FnOnce(Reply<T>) -> Job,
    ) -> Result<T, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.writer
            .send(make(reply))
            .await
            .map_err(|_| unavailable("writer task stopped"))?;
        rx.await.map_err(|_| unavailable("writer task stopped"))?
    }

    /// [`Self::read_uncounted`], with a failure counted in the metrics.
    async fn read<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(Pooled) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        self.read_uncounted(f)
            .await
            .inspect_err(|e| crate::metrics::store_failed("read", e))
    }

    /// Runs `f` with a pooled connection on the store's runtime.
    async fn read_uncounted<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(Pooled) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        let pool = self.pool.clone();
        self.runtime
            .spawn(async move {
                let conn = pool.get_owned().await.map_err(unavailable)?;
                f(conn).await
            })
            .await
            .map_err(unavailable)?
    }
}

/// Runs each job under its own savepoint in one transaction and commits
/// once. The outcomes are only meaningful if this returns `Ok`. Plain
/// statements rather than a `Transaction`, which would need the client
/// mutably while the fast path's commits may still be in flight on it.
async fn commit_jobs(
    conn: &Client,
    jobs: &[Job],
) -> Result<Vec<Result<Done, StoreError>>, tokio_postgres::Error> {
    conn.batch_execute("BEGIN").await?;
    match savepoint_jobs(conn, jobs).await {
        Ok(outcomes) => {
            conn.batch_execute("COMMIT").await?;
            Ok(outcomes)
        }
        Err(e) => {
            // Where this fails too, the connection is broken, and replaced
            // before the next batch.
            let _ = conn.batch_execute("ROLLBACK").await;
            Err(e)
        }
    }
}

async fn savepoint_jobs(
    conn: &Client,
    jobs: &[Job],
) -> Result<Vec<Result<Done, StoreError>>, tokio_postgres::Error> {
    let mut outcomes = Vec::with_capacity(jobs.len());
    for job in jobs {
        conn.batch_execute("SAVEPOINT job").await?;
        let outcome = run_job(conn, job).await;
        conn.batch_execute(if outcome.is_ok() {
            "RELEASE SAVEPOINT job"
        } else {
            "ROLLBACK TO SAVEPOINT job"
        })
        .await?;
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

async fn run_job(conn: &impl GenericClient, job: &Job) -> Result<Done, StoreError> {
    match job {
        Job::Create {
            id,
            language,
            text,
            owner,
            ..
        } => {
            let meta = create(conn, id, language, text).await?;
            if let Some(owner) = owner {
                grant(conn, id, owner, Permission::Admin).await?;
            }
            Ok(Done::Created(meta))
        }
        Job::Append { batch, .. } => append(conn, batch).await.map(|()| Done::Written),
        Job::Claim { id, .. } => {
            let row = conn
                .query_opt(
                    "UPDATE documents SET epoch = epoch + 1 WHERE id = $1 RETURNING epoch",
                    &[&id.as_str()],
                )
                .await
                .map_err(pg_error)?
                .ok_or(StoreError::NotFound)?;
            let epoch: i64 = row.try_get(0).map_err(pg_error)?;
            Ok(Done::Claimed(LeaseEpoch(from_sql(epoch)?)))
        }
        Job::SetLanguage {
            id,
            language,
            epoch,
            ..
        } => {
            check_epoch(id, stored_epoch(conn, id).await?, *epoch)?;
            let n = conn
                .execute(
                    "UPDATE documents SET language = $2, updated_ms = $3 WHERE id = $1",
                    &[&id.as_str(), language, &now_ms()],
                )
                .await
                .map_err(pg_error)?;
            if n == 0 {
                return Err(StoreError::NotFound);
            }
            Ok(Done::Written)
        }
        Job::PutSnapshot {
            id,
            rev,
            text,
            epoch,
            ..
        } => {
            check_epoch(id, stored_epoch(conn, id).await?, *epoch)?;
            put_snapshot(conn, id, *rev, &text.to_string()).await?;
            Ok(Done::Written)
        }
        Job::Grant {
            doc,
            user,
            permission,
            ..
        } => grant(conn, doc, user, *permission)
            .await
            .map(|()| Done::Written),
        Job::Revoke { doc, user, .. } => conn
            .execute(
                "DELETE FROM document_access WHERE document = $1 AND user_id = $2",
                &[&doc.as_str(), user],
            )
            .await
            .map(|n| Done::Removed(n > 0))
            .map_err(pg_error),
        Job::CreateLink { link, .. } => create_link(conn, link).await.map(|()| Done::Written),
        Job::RevokeLink { doc, id, .. } => conn
            .execute(
                "DELETE FROM share_links WHERE document = $1 AND id = $2",
                &[&doc.as_str(), id],
            )
            .await
            .map(|n| Done::Removed(n > 0))
            .map_err(pg_error),
        Job::DeleteDocument { id, .. } => delete_document(conn, id).await.map(Done::Removed),
    }
}

/// The document's lease epoch (see [`Store::claim`]), its row locked until
/// the transaction ends so that a claim cannot pass between the check and
/// the write.
async fn stored_epoch(conn: &impl GenericClient, id: &DocId) -> Result<LeaseEpoch, StoreError> {
    let epoch: i64 = conn
        .query_opt(
            "SELECT epoch FROM documents WHERE id = $1 FOR UPDATE",
            &[&id.as_str()],
        )
        .await
        .map_err(pg_error)?
        .ok_or(StoreError::NotFound)?
        .try_get(0)
        .map_err(pg_error)?;
    Ok(LeaseEpoch(from_sql(epoch)?))
}

/// Deletes a document's rows from every table that refers to it, then the
/// document itself (the foreign keys are checked, so it goes last).
async fn delete_document(conn: &impl GenericClient, id: &DocId) -> Result<bool, StoreError> {
    for sql in [
        "DELETE FROM ops WHERE document = $1",
        "DELETE FROM snapshots WHERE document = $1",
        "DELETE FROM document_access WHERE document = $1",
        "DELETE FROM share_links WHERE document = $1",
    ] {
        conn.execute(sql, &[&id.as_str()]).await.map_err(pg_error)?;
    }
    conn.execute("DELETE FROM documents WHERE id = $1", &[&id.as_str()])
        .await
        .map(|n| n > 0)
        .map_err(pg_error)
}

async fn document_exists(conn: &impl GenericClient, id: &DocId) -> Result<bool, StoreError> {
    conn.query_opt("SELECT 1 FROM documents WHERE id = $1", &[&id.as_str()])
        .await
        .map(|row| row.is_some())
        .map_err(pg_error)
}

/// Upserts a grant. The document is checked first, as in the SQLite store,
/// so that a missing one is `NotFound` whatever constraint would fire first.
async fn grant(
    conn: &impl GenericClient,
    doc: &DocId,
    user: &str,
    permission: Permission,
) -> Result<(), StoreError> {
    if !document_exists(conn, doc).await? {
        return Err(StoreError::NotFound);
    }
    conn.execute(
        "INSERT INTO document_access (document, user_id, permission) VALUES ($1, $2, $3)
         ON CONFLICT (document, user_id) DO UPDATE SET permission = excluded.permission",
        &[&doc.as_str(), &user, &permission.as_str()],
    )
    .await
    .map_err(pg_error)?;
    Ok(())
}

async fn create_link(conn: &impl GenericClient, link: &ShareLink) -> Result<(), StoreError> {
    if !document_exists(conn, &link.document).await? {
        return Err(StoreError::NotFound);
    }
    let params: [&(dyn ToSql + Sync); 7] = [
        &link.id,
        &link.document.as_str(),
        &link.token_hash,
        &link.permission.as_str(),
        &link.expires_ms,
        &link.created_ms,
        &link.created_by,
    ];
    conn.execute(
        "INSERT INTO share_links
             (id, document, token_hash, permission, expires_ms, created_ms, created_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &params,
    )
    .await
    .map_err(|e| match pg_error(e) {
        // The document exists (checked above), so this is the id or the
        // token hash.
        StoreError::Conflict(m) => StoreError::Conflict(format!("share link {}: {m}", link.id)),
        other => other,
    })?;
    Ok(())
}

const LINK_COLUMNS: &str =
    "id, document, token_hash, permission, expires_ms, created_ms, created_by";

fn link(row: &Row) -> Result<ShareLink, StoreError> {
    let document: &str = row.try_get(1).map_err(pg_error)?;
    let permission: &str = row.try_get(3).map_err(pg_error)?;
    Ok(ShareLink {
        id: row.try_get(0).map_err(pg_error)?,
        document: DocId::parse(document).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        token_hash: row.try_get(2).map_err(pg_error)?,
        permission: stored_permission(permission)?,
        expires_ms: row.try_get(4).map_err(pg_error)?,
        created_ms: row.try_get(5).map_err(pg_error)?,
        created_by: row.try_get(6).map_err(pg_error)?,
    })
}

async fn create(
    conn: &impl GenericClient,
    id: &DocId,
    language: &str,
    text: &str,
) -> Result<DocumentMeta, StoreError> {
    let now = now_ms();
    let inserted = conn
        .execute(
            "INSERT INTO documents (id, language, rev, created_ms, updated_ms)
             VALUES ($1, $2, 0, $3, $3) ON CONFLICT (id) DO NOTHING",
            &[&id.as_str(), &language, &now],
        )
        .await
        .map_err(pg_error)?;
    if inserted == 0 {
        return Err(StoreError::Conflict(format!("document {id} exists")));
    }
    put_snapshot(conn, id, Revision(0), text).await?;
    Ok(DocumentMeta {
        id: id.clone(),
        language: language.to_owned(),
        rev: Revision(0),
        created_ms: now,
        updated_ms: now,
    })
}

/// Snapshot text is stored as its UTF-8 bytes (`bytea`): document text may
/// contain U+0000, which a PostgreSQL `text` value cannot hold, and
/// escaping it would need an unescape on every read and a rule for text
/// that already looks escaped.
///
/// It is stored whole or as a delta from the snapshot before it (see
/// [`checkpoint`]); one already stored at `rev` is kept.
async fn put_snapshot(
    conn: &impl GenericClient,
    id: &DocId,
    rev: Revision,
    text: &str,
) -> Result<(), StoreError> {
    let at = to_sql(rev.0)?;
    let exists = conn
        .query_opt(
            "SELECT 1 FROM snapshots WHERE document = $1 AND rev = $2",
            &[&id.as_str(), &at],
        )
        .await
        .map_err(pg_error)?
        .is_some();
    if exists {
        return Ok(());
    }
    let base = match rev.0.checked_sub(1) {
        Some(before) if checkpoint::may_be_delta(text) => {
            read_snapshot(conn, id, Revision(before)).await?
        }
        _ => None,
    };
    let plan = checkpoint::plan(rev, text, base.as_ref());
    let (body, base, cost) = plan.stored(text);
    let (base, cost) = (base.map(to_sql).transpose()?, to_sql(cost)?);
    conn.execute(
        "INSERT INTO snapshots (document, rev, text, time_ms, base, chain_cost)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (document, rev) DO NOTHING",
        &[&id.as_str(), &at, &body.as_bytes(), &now_ms(), &base, &cost],
    )
    .await
    .map_err(pg_error)?;
    Ok(())
}

/// The latest snapshot at or before `rev`, rebuilt from its chain: the
/// row and its bases, followed one by one down to a full text.
async fn read_snapshot(
    conn: &impl GenericClient,
    id: &DocId,
    rev: Revision,
) -> Result<Option<checkpoint::Rebuilt>, StoreError> {
    let rows = conn
        .query(
            "WITH RECURSIVE link (rev, base, chain_cost, text) AS (
                 SELECT rev, base, chain_cost, text FROM snapshots
                 WHERE document = $1 AND rev = (
                     SELECT max(rev) FROM snapshots WHERE document = $1 AND rev <= $2)
                 UNION ALL
                 SELECT s.rev, s.base, s.chain_cost, s.text FROM snapshots s, link
                 WHERE s.document = $1 AND s.rev = link.base
             )
             SELECT rev, base, chain_cost, text FROM link",
            &[&id.as_str(), &to_sql(rev.0)?],
        )
        .await
        .map_err(pg_error)?;
    let rows = rows
        .into_iter()
        .map(|row| {
            let rev: i64 = row.try_get(0).map_err(pg_error)?;
            let base: Option<i64> = row.try_get(1).map_err(pg_error)?;
            let chain: i64 = row.try_get(2).map_err(pg_error)?;
            let body: Vec<u8> = row.try_get(3).map_err(pg_error)?;
            Ok(checkpoint::Row {
                rev: from_sql(rev)?,
                base: base.map(from_sql).transpose()?,
                chain: from_sql(chain)?,
                body: String::from_utf8(body)
                    .map_err(|e| StoreError::Corrupt(format!("snapshot text: {e}")))?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    checkpoint::rebuild(rows)
}

/// True when the ops are already stored exactly: a retried append.
async fn already_stored(
    conn: &impl GenericClient,
    batch: &AppendBatch,
) -> Result<bool, StoreError> {
    let revs = batch
        .ops
        .iter()
        .map(|o| to_sql(o.rev.0))
        .collect::<Result<Vec<_>, _>>()?;
    let rows = conn
        .query(
            "SELECT rev, client, seq FROM ops WHERE document = $1 AND rev = ANY($2)",
            &[&batch.doc.as_str(), &revs],
        )
        .await
        .map_err(pg_error)?;
    if rows.len() != batch.ops.len() {
        return Ok(false);
    }
    for row in rows {
        let rev: i64 = row.try_get(0).map_err(pg_error)?;
        let client: &str = row.try_get(1).map_err(pg_error)?;
        let seq: i64 = row.try_get(2).map_err(pg_error)?;
        let Some(op) = batch.ops.iter().find(|o| to_sql(o.rev.0).ok() == Some(rev)) else {
            return Ok(false);
        };
        if client != op.client.as_str() || to_sql(op.seq.0)? != seq {
            return Ok(false);
        }
    }
    Ok(true)
}

async fn append(conn: &impl GenericClient, batch: &AppendBatch) -> Result<(), StoreError> {
    let (Some(first), Some(last)) = (batch.ops.first(), batch.ops.last()) else {
        return Ok(());
    };
    let contiguous = batch
        .ops
        .windows(2)
        .all(|w| w[0].rev.0.checked_add(1) == Some(w[1].rev.0));
    if !contiguous {
        return Err(StoreError::Conflict(
            "batch revisions are not contiguous".into(),
        ));
    }
    // FOR UPDATE: a concurrent writer of the same document (another node)
    // waits here and then sees the revision this one commits.
    let row = conn
        .query_opt(
            "SELECT rev, epoch FROM documents WHERE id = $1 FOR UPDATE",
            &[&batch.doc.as_str()],
        )
        .await
        .map_err(pg_error)?
        .ok_or(StoreError::NotFound)?;
    let epoch: i64 = row.try_get(1).map_err(pg_error)?;
    check_epoch(&batch.doc, LeaseEpoch(from_sql(epoch)?), batch.epoch)?;
    let current: i64 = row.try_get(0).map_err(pg_error)?;
    let current = from_sql(current)?;
    if current.checked_add(1) != Some(first.rev.0) {
        if already_stored(conn, batch).await? {
            return Ok(());
        }
        return Err(StoreError::Conflict(format!(
            "document {} is at revision {current}, append starts at {}",
            batch.doc, first.rev
        )));
    }
    let n = batch.ops.len();
    let (mut revs, mut clients, mut seqs) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut authors, mut ops, mut times) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for op in &batch.ops {
        revs.push(to_sql(op.rev.0)?);
        clients.push(op.client.as_str());
        seqs.push(to_sql(op.seq.0)?);
        authors.push(op.author.as_str());
        // JSON escapes U+0000 as \u0000, so an op is always valid `text`.
        ops.push(op.op.to_json());
        times.push(op.time_ms);
    }
    // One statement for the whole batch, however many ops it has.
    conn.execute(
        "INSERT INTO ops (document, rev, client, seq, author, op, time_ms)
         SELECT $1, * FROM UNNEST($2::bigint[], $3::text[], $4::bigint[],
                                  $5::text[], $6::text[], $7::bigint[])",
        &[
            &batch.doc.as_str(),
            &revs,
            &clients,
            &seqs,
            &authors,
            &ops,
            &times,
        ],
    )
    .await
    .map_err(|e| match pg_error(e) {
        StoreError::Conflict(m) => StoreError::Conflict(format!("append to {}: {m}", batch.doc)),
        other => other,
    })?;
    conn.execute(
        "UPDATE documents SET rev = $2, updated_ms = $3 WHERE id = $1",
        &[&batch.doc.as_str(), &to_sql(last.rev.0)?, &now_ms()],
    )
    .await
    .map_err(pg_error)?;
    if let Some((rev, text)) = &batch.snapshot {
        put_snapshot(conn, &batch.doc, *rev, &text.to_string()).await?;
    }
    Ok(())
}

fn meta(row: &Row) -> Result<DocumentMeta, StoreError> {
    let id: &str = row.try_get(0).map_err(pg_error)?;
    Ok(DocumentMeta {
        id: DocId::parse(id).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        language: row.try_get(1).map_err(pg_error)?,
        rev: Revision(from_sql(row.try_get(2).map_err(pg_error)?)?),
        created_ms: row.try_get(3).map_err(pg_error)?,
        updated_ms: row.try_get(4).map_err(pg_error)?,
    })
}

fn op_record(row: &Row) -> Result<OpRecord, StoreError> {
    let client: &str = row.try_get(1).map_err(pg_error)?;
    let op: &str = row.try_get(4).map_err(pg_error)?;
    Ok(OpRecord {
        rev: Revision(from_sql(row.try_get(0).map_err(pg_error)?)?),
        client: ClientId::parse(client).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        seq: Seq(from_sql(row.try_get(2).map_err(pg_error)?)?),
        author: row.try_get(3).map_err(pg_error)?,
        op: decode_op(op)?,
        time_ms: row.try_get(5).map_err(pg_error)?,
    })
}

#[async_trait]
impl Store for PostgresStore {
    async fn create_document(
        &self,
        id: &DocId,
        language: &str,
        text: &str,
    ) -> Result<DocumentMeta, StoreError> {
        let (id, language, text) = (id.clone(), language.to_owned(), text.to_owned());
        self.write(|reply| Job::Create {
            id,
            language,
            text,
            owner: None,
            reply,
        })
        .await
    }

    async fn create_document_as(
        &self,
        id: &DocId,
        language: &str,
        text: &str,
        owner: &str,
    ) -> Result<DocumentMeta, StoreError> {
        storable("user id", owner)?;
        let (id, language, text) = (id.clone(), language.to_owned(), text.to_owned());
        let owner = Some(owner.to_owned());
        self.write(|reply| Job::Create {
            id,
            language,
            text,
            owner,
            reply,
        })
        .await
    }

    async fn document(&self, id: &DocId) -> Result<Option<DocumentMeta>, StoreError> {
        let id = id.clone();
        self.read(move |c| async move {
            c.query_opt(
                "SELECT id, language, rev, created_ms, updated_ms FROM documents WHERE id = $1",
                &[&id.as_str()],
            )
            .await
            .map_err(pg_error)?
            .as_ref()
            .map(meta)
            .transpose()
        })
        .await
    }

    async fn list_documents(&self, limit: usize) -> Result<Vec<DocumentMeta>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |c| async move {
            c.query(
                "SELECT id, language, rev, created_ms, updated_ms FROM documents
                 ORDER BY updated_ms DESC, id LIMIT $1",
                &[&limit],
            )
            .await
            .map_err(pg_error)?
            .iter()
            .map(meta)
            .collect()
        })
        .await
    }

    async fn snapshot_at_or_before(
        &self,
        id: &DocId,
        rev: Revision,
    ) -> Result<Option<Snapshot>, StoreError> {
        let id = id.clone();
        self.read(move |c| async move {
            Ok(read_snapshot(&*c, &id, rev).await?.map(|s| Snapshot {
                rev: s.rev,
                text: s.text,
            }))
        })
        .await
    }

    async fn snapshot_revisions(&self, id: &DocId) -> Result<Vec<Revision>, StoreError> {
        let id = id.clone();
        self.read(move |c| async move {
            c.query(
                "SELECT rev FROM snapshots WHERE document = $1 ORDER BY rev",
                &[&id.as_str()],
            )
            .await
            .map_err(pg_error)?
            .iter()
            .map(|r| Ok(Revision(from_sql(r.try_get(0).map_err(pg_error)?)?)))
            .collect()
        })
        .await
    }

    async fn ops(
        &self,
        id: &DocId,
        after: Revision,
        upto: Revision,
        limit: usize,
    ) -> Result<Vec<OpRecord>, StoreError> {
        let id = id.clone();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let (after, upto) = (to_sql(after.0)?, to_sql(upto.0)?);
        self.read(move |c| async move {
            let params: [&(dyn ToSql + Sync); 4] = [&id.as_str(), &after, &upto, &limit];
            c.query(
                "SELECT rev, client, seq, author, op, time_ms FROM ops
                 WHERE document = $1 AND rev > $2 AND rev <= $3 ORDER BY rev LIMIT $4",
                &params,
            )
            .await
            .map_err(pg_error)?
            .iter()
            .map(op_record)
            .collect()
        })
        .await
    }

    async fn append_ordered(&self, batch: AppendBatch) -> Result<Durable, StoreError> {
        self.write(|reply| Job::Append { batch, reply }).await
    }

    async fn find_op(
        &self,
        id: &DocId,
        client: &ClientId,
        seq: Seq,
    ) -> Result<Option<Revision>, StoreError> {
        let (id, client) = (id.clone(), client.clone());
        let seq = to_sql(seq.0)?;
        self.read(move |c| async move {
            c.query_opt(
                "SELECT rev FROM ops WHERE document = $1 AND client = $2 AND seq = $3",
                &[&id.as_str(), &client.as_str(), &seq],
            )
            .await
            .map_err(pg_error)?
            .map(|r| Ok(Revision(from_sql(r.try_get(0).map_err(pg_error)?)?)))
            .transpose()
        })
        .await
    }

    async fn last_seq(
        &self,
        id: &DocId,
        client: &ClientId,
    ) -> Result<Option<(Seq, Revision)>, StoreError> {
        let (id, client) = (id.clone(), client.clone());
        self.read(move |c| async move {
            c.query_opt(
                "SELECT seq, rev FROM ops WHERE document = $1 AND client = $2
                 ORDER BY seq DESC LIMIT 1",
                &[&id.as_str(), &client.as_str()],
            )
            .await
            .map_err(pg_error)?
            .map(|r| {
                let seq: i64 = r.try_get(0).map_err(pg_error)?;
                let rev: i64 = r.try_get(1).map_err(pg_error)?;
                Ok((Seq(from_sql(seq)?), Revision(from_sql(rev)?)))
            })
            .transpose()
        })
        .await
    }

    async fn claim(&self, id: &DocId) -> Result<LeaseEpoch, StoreError> {
        let id = id.clone();
        self.write(|reply| Job::Claim { id, reply }).await
    }

    async fn set_language(
        &self,
        id: &DocId,
        language: &str,
        epoch: LeaseEpoch,
    ) -> Result<(), StoreError> {
        let (id, language) = (id.clone(), language.to_owned());
        self.write(|reply| Job::SetLanguage {
            id,
            language,
            epoch,
            reply,
        })
        .await
    }

    async fn put_snapshot(
        &self,
        id: &DocId,
        rev: Revision,
        text: Rope,
        epoch: LeaseEpoch,
    ) -> Result<(), StoreError> {
        let id = id.clone();
        self.write(|reply| Job::PutSnapshot {
            id,
            rev,
            text,
            epoch,
            reply,
        })
        .await
    }

    async fn grant(
        &self,
        doc: &DocId,
        user: &str,
        permission: Permission,
    ) -> Result<(), StoreError> {
        storable("user id", user)?;
        let (doc, user) = (doc.clone(), user.to_owned());
        self.write(|reply| Job::Grant {
            doc,
            user,
            permission,
            reply,
        })
        .await
    }

    async fn revoke(&self, doc: &DocId, user: &str) -> Result<bool, StoreError> {
        // PostgreSQL would refuse the text; no grant can hold it.
        if storable("user id", user).is_err() {
            return Ok(false);
        }
        let (doc, user) = (doc.clone(), user.to_owned());
        self.write(|reply| Job::Revoke { doc, user, reply }).await
    }

    async fn grants(&self, doc: &DocId) -> Result<Vec<(String, Permission)>, StoreError> {
        let doc = doc.clone();
        let mut grants = self
            .read(move |c| async move {
                c.query(
                    "SELECT user_id, permission FROM document_access WHERE document = $1",
                    &[&doc.as_str()],
                )
                .await
                .map_err(pg_error)?
                .iter()
                .map(|r| {
                    let user: String = r.try_get(0).map_err(pg_error)?;
                    let permission: &str = r.try_get(1).map_err(pg_error)?;
                    Ok((user, stored_permission(permission)?))
                })
                .collect::<Result<Vec<_>, StoreError>>()
            })
            .await?;
        sort_grants(&mut grants);
        Ok(grants)
    }

    async fn permission(&self, doc: &DocId, user: &str) -> Result<Option<Permission>, StoreError> {
        if storable("user id", user).is_err() {
            return Ok(None);
        }
        let (doc, user) = (doc.clone(), user.to_owned());
        self.read(move |c| async move {
            c.query_opt(
                "SELECT permission FROM document_access WHERE document = $1 AND user_id = $2",
                &[&doc.as_str(), &user],
            )
            .await
            .map_err(pg_error)?
            .map(|r| stored_permission(r.try_get(0).map_err(pg_error)?))
            .transpose()
        })
        .await
    }

    async fn create_link(&self, link: &ShareLink) -> Result<(), StoreError> {
        check_link(link)?;
        let link = link.clone();
        self.write(|reply| Job::CreateLink { link, reply }).await
    }

    async fn links(&self, doc: &DocId) -> Result<Vec<ShareLink>, StoreError> {
        let doc = doc.clone();
        let mut links = self
            .read(move |c| async move {
                c.query(
                    &format!("SELECT {LINK_COLUMNS} FROM share_links WHERE document = $1"),
                    &[&doc.as_str()],
                )
                .await
                .map_err(pg_error)?
                .iter()
                .map(link)
                .collect::<Result<Vec<_>, StoreError>>()
            })
            .await?;
        sort_links(&mut links);
        Ok(links)
    }

    async fn revoke_link(&self, doc: &DocId, id: &str) -> Result<bool, StoreError> {
        if storable("link id", id).is_err() {
            return Ok(false);
        }
        let (doc, id) = (doc.clone(), id.to_owned());
        self.write(|reply| Job::RevokeLink { doc, id, reply }).await
    }

    async fn delete_document(&self, id: &DocId) -> Result<bool, StoreError> {
        let id = id.clone();
        self.write(|reply| Job::DeleteDocument { id, reply }).await
    }

    async fn link_by_token_hash(&self, token_hash: &str) -> Result<Option<ShareLink>, StoreError> {
        if storable("link token hash", token_hash).is_err() {
            return Ok(None);
        }
        let token_hash = token_hash.to_owned();
        self.read(move |c| async move {
            c.query_opt(
                &format!("SELECT {LINK_COLUMNS} FROM share_links WHERE token_hash = $1"),
                &[&token_hash],
            )
            .await
            .map_err(pg_error)?
            .as_ref()
            .map(link)
            .transpose()
        })
        .await
    }

    fn commit_stats(&self) -> (u64, u64) {
        self.stats.read()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        // Counted by the caller (`/readyz`), as a ping, not a read.
        self.read_uncounted(|conn| async move {
            conn.simple_query("SELECT 1")
                .await
                .map(|_| ())
                .map_err(pg_error)
        })
        .await
    }
}
