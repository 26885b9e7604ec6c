//! The embedded store: one SQLite file, no server.
//!
//! Writes go to one writer thread that owns the only writing connection and
//! group-commits: every job that is waiting when a transaction starts goes
//! into it, each under its own savepoint so one job's conflict does not undo
//! the others. Flushing is pipelined, as a database's WAL writer does: the
//! writer commits into the WAL without waiting for the disk
//! (`synchronous=NORMAL`) and hands the commit to a syncer thread, which
//! `fdatasync`s the WAL once for every commit written while the previous
//! flush ran, and only then replies. So a reply of `Ok` (for an append: its
//! [`Durable`]) still means the write survives `kill -9` and power loss,
//! while the next transaction is written during the flush instead of after
//! it. When nothing else is under way (no job waiting, no flush running),
//! the writer flushes its own commit instead, which saves two thread
//! hand-offs per commit at light load. SQLite itself syncs the WAL before every checkpoint, so a commit that
//! a checkpoint moved into the main file is durable there. Reads use a small
//! pool of separate connections, which WAL lets run beside the writer.
//!
//! The flush itself goes through [`WalSync`], so that a test can watch it:
//! a kill test cannot tell a missing `fdatasync` (the page cache outlives the
//! process), but a recorder in its place sees every flush, what had been
//! written when it began, and whether a reply came before it returned
//! (`tests/store_conformance/sync_seam.rs`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc as std_mpsc};

use async_trait::async_trait;
use ropey::Rope;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::oneshot;

use super::checkpoint;
use super::job::{Done, Job, Reply, reply};
use super::{
    AppendBatch, CommitStats, DocumentMeta, Durable, OpRecord, ShareLink, Snapshot, Store,
    StoreError, check_epoch, check_link, decode_op, now_ms, sort_grants, sort_links, storable,
    stored_permission,
};
use crate::auth::Permission;
use crate::ids::{ClientId, DocId, LeaseEpoch, Revision, Seq};

/// Most jobs in one transaction: bounds how long one commit holds replies.
const MAX_JOBS_PER_COMMIT: usize = 4_096;
/// Idle reader connections kept open.
const READER_POOL: usize = 8;
/// Reads running at once. Each holds a connection with its own page cache
/// and a blocking thread: unbounded, a crowd of documents opening together
/// (a server restart with thousands of clients reconnecting) opened
/// hundreds of connections at once, and the memory stayed with the process.
const READERS_AT_ONCE: usize = 2 * READER_POOL;
/// How long a connection waits on a lock held by another process.
const BUSY_TIMEOUT_MS: u64 = 5_000;

/// The snapshots table: in [`SCHEMA`], and again where an older file's
/// table is rebuilt for deltas ([`upgrade_snapshots`]), so the two agree.
macro_rules! snapshots_table {
    () => {
        "CREATE TABLE IF NOT EXISTS snapshots (
    document    TEXT NOT NULL REFERENCES documents(id),
    rev         INTEGER NOT NULL,
    text        TEXT NOT NULL,
    time_ms     INTEGER NOT NULL,
    base        INTEGER CHECK (base < rev),
    chain_cost  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (document, rev)
);
"
    };
}

const SCHEMA: &str = concat!(
    "
CREATE TABLE IF NOT EXISTS documents (
    id          TEXT PRIMARY KEY,
    language    TEXT NOT NULL,
    rev         INTEGER NOT NULL DEFAULT 0,
    created_ms  INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL,
    epoch       INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS ops (
    document    TEXT NOT NULL REFERENCES documents(id),
    rev         INTEGER NOT NULL,
    client      TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    author      TEXT NOT NULL,
    op          TEXT NOT NULL,
    time_ms     INTEGER NOT NULL,
    PRIMARY KEY (document, rev),
    UNIQUE (document, client, seq)
) WITHOUT ROWID;
",
    snapshots_table!(),
    "CREATE TABLE IF NOT EXISTS document_access (
    document    TEXT NOT NULL REFERENCES documents(id),
    user_id     TEXT NOT NULL,
    permission  TEXT NOT NULL CHECK (permission IN ('read', 'write', 'admin')),
    PRIMARY KEY (document, user_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS share_links (
    id          TEXT PRIMARY KEY,
    document    TEXT NOT NULL REFERENCES documents(id),
    token_hash  TEXT NOT NULL,
    permission  TEXT NOT NULL CHECK (permission IN ('read', 'write')),
    expires_ms  INTEGER NOT NULL,
    created_ms  INTEGER NOT NULL,
    created_by  TEXT NOT NULL
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS share_links_token_hash ON share_links (token_hash);
CREATE INDEX IF NOT EXISTS share_links_document ON share_links (document, created_ms DESC);
CREATE INDEX IF NOT EXISTS documents_updated ON documents (updated_ms DESC);
"
);

/// How the syncer makes the WAL durable: everything written to the file
/// before the call must be on disk when it returns `Ok`. The syncer calls it
/// once per flush, with the WAL open, before it answers any commit the flush
/// covers; an `Err` fails every commit of that flush.
///
/// Production uses [`Fdatasync`] (what [`SqliteStore::open`] installs); the
/// seam exists so that a test can wrap the real flush with a recorder (see
/// the module doc). It costs one indirect call per `fdatasync`, and nothing
/// per commit.
///
/// It is SQLite's only: PostgreSQL's commit is its flush (the server has
/// written and synced its WAL when `COMMIT` returns, `synchronous_commit` on),
/// so that store answers with [`super::durable_now`] and there is no step
/// between "written" and "durable" in this process to observe.
pub trait WalSync: Send + Sync + 'static {
    /// Makes everything written to `wal` so far durable.
    ///
    /// # Errors
    ///
    /// The flush failed: what was written may be lost.
    fn sync_wal(&self, wal: &std::fs::File) -> std::io::Result<()>;
}

/// The real flush: one `fdatasync(2)` of the WAL.
#[derive(Debug, Clone, Copy, Default)]
pub struct Fdatasync;

impl WalSync for Fdatasync {
    fn sync_wal(&self, wal: &std::fs::File) -> std::io::Result<()> {
        wal.sync_data()
    }
}

/// The SQLite store.
pub struct SqliteStore {
    path: PathBuf,
    /// To the writer thread. The thread ends when the store is dropped.
    writer: Mutex<std_mpsc::Sender<Job>>,
    /// Idle read connections; a read takes one or opens a new one.
    readers: Arc<Mutex<Vec<Connection>>>,
    /// See [`READERS_AT_ONCE`].
    reading: Arc<tokio::sync::Semaphore>,
    /// Shared with the writer thread.
    stats: Arc<CommitStats>,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(unavailable)?;
    conn.busy_timeout(std::time::Duration::from_millis(BUSY_TIMEOUT_MS))
        .map_err(unavailable)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(unavailable)?;
    // Commits do not wait for the disk: the syncer flushes the WAL before
    // any reply (see the module doc).
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(unavailable)?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(unavailable)?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path` and starts the
    /// writer thread.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the file cannot be opened or the
    /// schema cannot be created.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with_wal_sync(path, Arc::new(Fdatasync))
    }

    /// As [`SqliteStore::open`], flushing the WAL through `sync` instead of
    /// [`Fdatasync`]: for tests that observe (or fail) the flush.
    ///
    /// # Errors
    ///
    /// As [`SqliteStore::open`].
    pub fn open_with_wal_sync(
        path: impl AsRef<Path>,
        sync: Arc<dyn WalSync>,
    ) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let conn = open_connection(&path)?;
        conn.execute_batch(SCHEMA).map_err(unavailable)?;
        add_column(
            &conn,
            "documents",
            "epoch",
            "epoch INTEGER NOT NULL DEFAULT 0",
        )?;
        upgrade_snapshots(&conn)?;
        let (tx, rx) = std_mpsc::channel();
        let (sync_tx, sync_rx) = std_mpsc::channel();
        let stats = Arc::new(CommitStats::default());
        let writer_stats = Arc::clone(&stats);
        let flusher = Arc::new(Flusher::new(wal_path(&path), sync));
        let syncer_flusher = Arc::clone(&flusher);
        std::thread::Builder::new()
            .name("tandem-sqlite-sync".into())
            .spawn(move || syncer_loop(&sync_rx, &syncer_flusher))
            .map_err(unavailable)?;
        std::thread::Builder::new()
            .name("tandem-sqlite-writer".into())
            .spawn(move || writer_loop(conn, &rx, &sync_tx, &flusher, &writer_stats))
            .map_err(unavailable)?;
        Ok(Self {
            path,
            writer: Mutex::new(tx),
            readers: Arc::new(Mutex::new(Vec::new())),
            reading: Arc::new(tokio::sync::Semaphore::new(READERS_AT_ONCE)),
            stats,
        })
    }

    async fn write<T: Send + 'static>(
        &self,
        make: impl FnOnce(Reply<T>) -> Job,
    ) -> Result<T, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.writer
            .lock()
            .map_err(|_| unavailable("writer lock poisoned"))?
            .send(make(reply))
            .map_err(|_| unavailable("writer thread stopped"))?;
        rx.await.map_err(|_| unavailable("writer thread stopped"))?
    }

    /// [`Self::read_uncounted`], with a failure counted in the metrics.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.read_uncounted(f)
            .await
            .inspect_err(|e| crate::metrics::store_failed("read", e))
    }

    /// Runs `f` with a pooled read connection on a blocking thread.
    async fn read_uncounted<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let readers = Arc::clone(&self.readers);
        let path = self.path.clone();
        let permit = Arc::clone(&self.reading)
            .acquire_owned()
            .await
            .map_err(unavailable)?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let pooled = readers.lock().ok().and_then(|mut pool| pool.pop());
            let conn = match pooled {
                Some(c) => c,
                None => open_connection(&path)?,
            };
            let out = f(&conn);
            if let Ok(mut pool) = readers.lock()
                && pool.len() < READER_POOL
            {
                pool.push(conn);
            }
            out
        })
        .await
        .map_err(unavailable)?
    }
}

/// The WAL file SQLite keeps beside the database.
fn wal_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

/// The WAL's flush, shared by the writer and the syncer. Only one of them
/// flushes at a time: the writer flushes its own commit only while the
/// syncer has nothing (see [`writer_loop`]), and only the writer gives the
/// syncer work.
struct Flusher {
    wal: PathBuf,
    sync: Arc<dyn WalSync>,
    /// Opened at the first flush (the WAL exists from the first commit on
    /// and is never removed while the writer's connection is open), and
    /// again after a failed one.
    file: Mutex<Option<std::fs::File>>,
    /// Commits handed to the syncer and not yet answered.
    handed: AtomicUsize,
}

impl Flusher {
    fn new(wal: PathBuf, sync: Arc<dyn WalSync>) -> Self {
        Self {
            wal,
            sync,
            file: Mutex::new(None),
            handed: AtomicUsize::new(0),
        }
    }

    /// Makes everything written to the WAL so far durable.
    fn flush(&self) -> Result<(), String> {
        let mut file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        if file.is_none() {
            *file = std::fs::File::open(&self.wal).ok();
        }
        let flushed = match file.as_ref() {
            Some(f) => self.sync.sync_wal(f).map_err(|e| e.to_string()),
            None => Err(format!("cannot open {}", self.wal.display())),
        };
        if let Err(e) = &flushed {
            crate::metrics::store_error("flush");
            tracing::error!("flushing the SQLite WAL failed: {e}");
            // After a failed flush the kernel may have dropped the pages:
            // nothing written so far can be called durable.
            *file = None;
        }
        flushed
    }
}

/// A job whose transaction committed (or failed), not yet answered.
enum Written {
    /// An append that is in the WAL: told so with a [`Durable`].
    Append(Reply<Durable>),
    /// Any other job, with its outcome.
    Job(Job, Result<Done, StoreError>),
}

/// A commit written to the WAL, waiting for the syncer's flush.
enum Pending {
    /// Answer this job (its outcome is known) once flushed.
    Job(Job, Result<Done, StoreError>),
    /// Resolve an append's [`Durable`] once flushed.
    Durable(oneshot::Sender<Result<(), StoreError>>),
}

/// Commits every job waiting, one transaction at a time. A commit is
/// flushed by the syncer when more is under way (the next transaction is
/// then written during the flush), and by the writer itself when nothing
/// is: at light load that saves two thread hand-offs per commit (to the
/// syncer and back to the document, which is then woken once, not twice).
fn writer_loop(
    mut conn: Connection,
    rx: &std_mpsc::Receiver<Job>,
    sync: &std_mpsc::Sender<Vec<Pending>>,
    flusher: &Flusher,
    stats: &CommitStats,
) {
    let mut next: Option<Job> = None;
    loop {
        let first = match next.take() {
            Some(job) => job,
            None => match rx.recv() {
                Ok(job) => job,
                Err(_) => break,
            },
        };
        let mut jobs = vec![first];
        while jobs.len() < MAX_JOBS_PER_COMMIT {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let written = commit_jobs(&mut conn, jobs, stats);
        if written.is_empty() {
            continue;
        }
        next = rx.try_recv().ok();
        if next.is_none() && flusher.handed.load(Ordering::Acquire) == 0 {
            answer_flushed(written, flusher.flush());
        } else {
            hand_to_syncer(written, sync, flusher);
        }
    }
}

/// Answers commits the writer flushed itself. A failed flush fails them as
/// the syncer's would: an append is told it is written, with a [`Durable`]
/// that fails.
fn answer_flushed(written: Vec<Written>, flushed: Result<(), String>) {
    for w in written {
        match (w, &flushed) {
            (Written::Append(reply), Ok(())) => {
                let _ = reply.send(Ok(super::durable_now()));
            }
            (Written::Append(reply), Err(e)) => {
                let e = unavailable(format!("flushing the WAL failed: {e}"));
                let _ = reply.send(Ok(Box::pin(std::future::ready(Err(e)))));
            }
            (Written::Job(job, outcome), Ok(())) => reply(job, outcome),
            (Written::Job(job, _), Err(e)) => {
                reply(
                    job,
                    Err(unavailable(format!("flushing the WAL failed: {e}"))),
                );
            }
        }
    }
}

/// Tells each append it is written, with a [`Durable`] the syncer resolves,
/// and hands the commit to the syncer.
fn hand_to_syncer(written: Vec<Written>, sync: &std_mpsc::Sender<Vec<Pending>>, flusher: &Flusher) {
    let mut pending = Vec::with_capacity(written.len());
    for w in written {
        match w {
            Written::Append(reply) => {
                let (tx, rx) = oneshot::channel();
                let durable: Durable = Box::pin(async move {
                    rx.await
                        .unwrap_or_else(|_| Err(unavailable("the SQLite syncer stopped")))
                });
                if reply.send(Ok(durable)).is_ok() {
                    pending.push(Pending::Durable(tx));
                }
            }
            Written::Job(job, outcome) => pending.push(Pending::Job(job, outcome)),
        }
    }
    flusher.handed.fetch_add(1, Ordering::AcqRel);
    if let Err(std_mpsc::SendError(lost)) = sync.send(pending) {
        flusher.handed.fetch_sub(1, Ordering::AcqRel);
        for p in lost {
            p.fail("the SQLite syncer stopped");
        }
    }
}

impl Pending {
    fn fail(self, why: &str) {
        match self {
            Pending::Job(job, _) => reply(job, Err(unavailable(why))),
            Pending::Durable(tx) => {
                let _ = tx.send(Err(unavailable(why)));
            }
        }
    }

    fn succeed(self) {
        match self {
            Pending::Job(job, outcome) => reply(job, outcome),
            Pending::Durable(tx) => {
                let _ = tx.send(Ok(()));
            }
        }
    }
}

/// Flushes the WAL for every commit queued while the last flush ran, then
/// answers them. One `fdatasync` covers all writes made before it started.
fn syncer_loop(rx: &std_mpsc::Receiver<Vec<Pending>>, flusher: &Flusher) {
    while let Ok(first) = rx.recv() {
        let mut batch = first;
        let mut commits = 1;
        while let Ok(more) = rx.try_recv() {
            batch.extend(more);
            commits += 1;
        }
        match flusher.flush() {
            Ok(()) => batch.into_iter().for_each(Pending::succeed),
            Err(e) => {
                for p in batch {
                    p.fail(&format!("flushing the WAL failed: {e}"));
                }
            }
        }
        // Only now: the writer flushes by itself once this is zero, and
        // its flush must come after this one's answers.
        flusher.handed.fetch_sub(commits, Ordering::AcqRel);
    }
}

/// Runs each job under its own savepoint in one transaction and commits
/// once. Failures are answered at once; what committed is returned to be
/// answered after the flush.
fn commit_jobs(conn: &mut Connection, jobs: Vec<Job>, stats: &CommitStats) -> Vec<Written> {
    let started = std::time::Instant::now();
    let mut outcomes: Vec<(Job, Result<Done, StoreError>)> = Vec::with_capacity(jobs.len());
    let committed = (|| -> Result<(), StoreError> {
        let mut tx = conn.transaction().map_err(unavailable)?;
        if let [job] = jobs.as_slice() {
            // Alone, a job needs no savepoint: its failure is the
            // transaction's, and nothing else is in it to keep.
            let result = run_job(&tx, job);
            if result.is_err() {
                tx.rollback().map_err(unavailable)?;
            } else {
                tx.commit().map_err(unavailable)?;
            }
            if let Some(job) = jobs.into_iter().next() {
                outcomes.push((job, result));
            }
            return Ok(());
        }
        for job in jobs {
            let result = (|| {
                let sp = tx.savepoint().map_err(unavailable)?;
                let out = run_job(&sp, &job)?;
                sp.commit().map_err(unavailable)?;
                Ok(out)
            })();
            outcomes.push((job, result));
        }
        tx.commit().map_err(unavailable)
    })();
    if committed.is_ok() {
        let ops = appended_ops(outcomes.iter().map(|(job, _)| job));
        stats.record(ops);
        crate::metrics::group_commit(started, ops);
    } else {
        crate::metrics::store_error("commit");
    }
    let mut written = Vec::with_capacity(outcomes.len());
    for (job, result) in outcomes {
        match (&committed, result, job) {
            (Err(e), _, job) => reply(job, Err(StoreError::Unavailable(e.to_string()))),
            (Ok(()), Err(e), job) => reply(job, Err(e)),
            (Ok(()), Ok(_), Job::Append { reply, .. }) => written.push(Written::Append(reply)),
            (Ok(()), Ok(out), job) => written.push(Written::Job(job, Ok(out))),
        }
    }
    written
}

/// Ops carried by the append jobs among `jobs`.
fn appended_ops<'a>(jobs: impl Iterator<Item = &'a Job>) -> usize {
    jobs.map(|j| match j {
        Job::Append { batch, .. } => batch.ops.len(),
        _ => 0,
    })
    .sum()
}

fn run_job(conn: &Connection, job: &Job) -> Result<Done, StoreError> {
    match job {
        Job::Create {
            id,
            language,
            text,
            owner,
            ..
        } => {
            let meta = create(conn, id, language, text)?;
            if let Some(owner) = owner {
                grant(conn, id, owner, Permission::Admin)?;
            }
            Ok(Done::Created(meta))
        }
        Job::Append { batch, .. } => append(conn, batch).map(|()| Done::Written),
        Job::Claim { id, .. } => conn
            .prepare_cached("UPDATE documents SET epoch = epoch + 1 WHERE id = ?1 RETURNING epoch")
            .and_then(|mut stmt| {
                stmt.query_row(params![id.as_str()], |r| r.get::<_, i64>(0))
                    .optional()
            })
            .map_err(unavailable)?
            .ok_or(StoreError::NotFound)
            .and_then(|e| Ok(Done::Claimed(LeaseEpoch(from_sql(e)?)))),
        Job::SetLanguage {
            id,
            language,
            epoch,
            ..
        } => {
            check_epoch(id, stored_epoch(conn, id)?, *epoch)?;
            let n = conn
                .execute(
                    "UPDATE documents SET language = ?2, updated_ms = ?3 WHERE id = ?1",
                    params![id.as_str(), language, now_ms()],
                )
                .map_err(unavailable)?;
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
            check_epoch(id, stored_epoch(conn, id)?, *epoch)?;
            put_snapshot(conn, id, *rev, &text.to_string())?;
            Ok(Done::Written)
        }
        Job::Grant {
            doc,
            user,
            permission,
            ..
        } => grant(conn, doc, user, *permission).map(|()| Done::Written),
        Job::Revoke { doc, user, .. } => conn
            .prepare_cached("DELETE FROM document_access WHERE document = ?1 AND user_id = ?2")
            .and_then(|mut stmt| stmt.execute(params![doc.as_str(), user]))
            .map(|n| Done::Removed(n > 0))
            .map_err(unavailable),
        Job::CreateLink { link, .. } => create_link(conn, link).map(|()| Done::Written),
        Job::RevokeLink { doc, id, .. } => conn
            .prepare_cached("DELETE FROM share_links WHERE document = ?1 AND id = ?2")
            .and_then(|mut stmt| stmt.execute(params![doc.as_str(), id]))
            .map(|n| Done::Removed(n > 0))
            .map_err(unavailable),
        Job::DeleteDocument { id, .. } => delete_document(conn, id).map(Done::Removed),
    }
}

/// Files made before a column existed get it: `documents.epoch` (lease
/// epochs; every document at 0, which no claim has passed yet).
fn add_column(
    conn: &Connection,
    table: &str,
    column: &str,
    definition: &str,
) -> Result<(), StoreError> {
    let has: bool = conn
        .query_row(
            "SELECT count(*) FROM pragma_table_info(?1) WHERE name = ?2",
            params![table, column],
            |r| r.get::<_, i64>(0),
        )
        .map(|n| n > 0)
        .map_err(unavailable)?;
    if !has {
        conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {definition}"))
            .map_err(unavailable)?;
    }
    Ok(())
}

/// Rebuilds the snapshots table of a file made before snapshot deltas: it
/// was `WITHOUT ROWID`, and had neither `base` nor `chain_cost` (every old
/// snapshot is a full text, cost 0).
///
/// Why not `WITHOUT ROWID`: such a table is a b-tree of whole rows, and
/// SQLite compares a key against a row that overflows its page by reading
/// the whole row. A seek through a table of snapshots of a 1 MB text read
/// megabytes; a rowid table keeps the keys in an index of their own. Done
/// once, in one transaction, at open (it copies every snapshot).
fn upgrade_snapshots(conn: &Connection) -> Result<(), StoreError> {
    let sql: String = conn
        .query_row(
            "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = 'snapshots'",
            [],
            |r| r.get(0),
        )
        .map_err(unavailable)?;
    if !sql.contains("WITHOUT ROWID") {
        return Ok(());
    }
    tracing::info!("rebuilding the snapshots table for snapshot deltas (once)");
    conn.execute_batch(concat!(
        "BEGIN IMMEDIATE;
         ALTER TABLE snapshots RENAME TO snapshots_before_deltas;
         ",
        snapshots_table!(),
        "INSERT INTO snapshots (document, rev, text, time_ms)
             SELECT document, rev, text, time_ms FROM snapshots_before_deltas;
         DROP TABLE snapshots_before_deltas;
         COMMIT;",
    ))
    .map_err(|e| {
        let _ = conn.execute_batch("ROLLBACK");
        unavailable(e)
    })
}

/// The document's lease epoch (see [`Store::claim`]).
fn stored_epoch(conn: &Connection, id: &DocId) -> Result<LeaseEpoch, StoreError> {
    let epoch: Option<i64> = conn
        .prepare_cached("SELECT epoch FROM documents WHERE id = ?1")
        .and_then(|mut stmt| {
            stmt.query_row(params![id.as_str()], |r| r.get(0))
                .optional()
        })
        .map_err(unavailable)?;
    Ok(LeaseEpoch(from_sql(epoch.ok_or(StoreError::NotFound)?)?))
}

/// Deletes a document's rows from every table that refers to it, then the
/// document itself (the references are checked, so it goes last).
fn delete_document(conn: &Connection, id: &DocId) -> Result<bool, StoreError> {
    for sql in DELETE_DOCUMENT_ROWS {
        conn.prepare_cached(sql)
            .and_then(|mut stmt| stmt.execute(params![id.as_str()]))
            .map_err(unavailable)?;
    }
    conn.prepare_cached("DELETE FROM documents WHERE id = ?1")
        .and_then(|mut stmt| stmt.execute(params![id.as_str()]))
        .map(|n| n > 0)
        .map_err(unavailable)
}

/// Every table with a `document` column, for [`delete_document`].
const DELETE_DOCUMENT_ROWS: [&str; 4] = [
    "DELETE FROM ops WHERE document = ?1",
    "DELETE FROM snapshots WHERE document = ?1",
    "DELETE FROM document_access WHERE document = ?1",
    "DELETE FROM share_links WHERE document = ?1",
];

fn document_exists(conn: &Connection, id: &DocId) -> Result<bool, StoreError> {
    conn.prepare_cached("SELECT 1 FROM documents WHERE id = ?1")
        .and_then(|mut stmt| stmt.exists(params![id.as_str()]))
        .map_err(unavailable)
}

/// Upserts a grant. The document is checked first, so that a missing one
/// is `NotFound` on every backend, whatever constraint would fire first.
fn grant(
    conn: &Connection,
    doc: &DocId,
    user: &str,
    permission: Permission,
) -> Result<(), StoreError> {
    if !document_exists(conn, doc)? {
        return Err(StoreError::NotFound);
    }
    conn.prepare_cached(
        "INSERT INTO document_access (document, user_id, permission) VALUES (?1, ?2, ?3)
         ON CONFLICT (document, user_id) DO UPDATE SET permission = excluded.permission",
    )
    .and_then(|mut stmt| stmt.execute(params![doc.as_str(), user, permission.as_str()]))
    .map_err(unavailable)?;
    Ok(())
}

fn create_link(conn: &Connection, link: &ShareLink) -> Result<(), StoreError> {
    if !document_exists(conn, &link.document)? {
        return Err(StoreError::NotFound);
    }
    conn.prepare_cached(
        "INSERT INTO share_links
             (id, document, token_hash, permission, expires_ms, created_ms, created_by)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            link.id,
            link.document.as_str(),
            link.token_hash,
            link.permission.as_str(),
            link.expires_ms,
            link.created_ms,
            link.created_by,
        ])
    })
    .map_err(|e| match e.sqlite_error_code() {
        // The document exists (checked above), so this is the id or the
        // token hash.
        Some(rusqlite::ErrorCode::ConstraintViolation) => {
            StoreError::Conflict(format!("share link {}: {e}", link.id))
        }
        _ => unavailable(e),
    })?;
    Ok(())
}

const LINK_COLUMNS: &str =
    "id, document, token_hash, permission, expires_ms, created_ms, created_by";

type LinkRow = (String, String, String, String, i64, i64, String);

fn link_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<LinkRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
    ))
}

fn link(row: LinkRow) -> Result<ShareLink, StoreError> {
    let (id, document, token_hash, permission, expires_ms, created_ms, created_by) = row;
    Ok(ShareLink {
        id,
        document: DocId::parse(&document).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        token_hash,
        permission: stored_permission(&permission)?,
        expires_ms,
        created_ms,
        created_by,
    })
}

fn create(
    conn: &Connection,
    id: &DocId,
    language: &str,
    text: &str,
) -> Result<DocumentMeta, StoreError> {
    let now = now_ms();
    let inserted = conn
        .execute(
            "INSERT INTO documents (id, language, rev, created_ms, updated_ms)
             VALUES (?1, ?2, 0, ?3, ?3) ON CONFLICT (id) DO NOTHING",
            params![id.as_str(), language, now],
        )
        .map_err(unavailable)?;
    if inserted == 0 {
        return Err(StoreError::Conflict(format!("document {id} exists")));
    }
    put_snapshot(conn, id, Revision(0), text)?;
    Ok(DocumentMeta {
        id: id.clone(),
        language: language.to_owned(),
        rev: Revision(0),
        created_ms: now,
        updated_ms: now,
    })
}

/// Stores the snapshot whole or as a delta from the one before it (see
/// [`checkpoint`]); one already stored at `rev` is kept.
fn put_snapshot(
    conn: &Connection,
    id: &DocId,
    rev: Revision,
    text: &str,
) -> Result<(), StoreError> {
    let at = to_sql(rev.0)?;
    let exists = conn
        .prepare_cached("SELECT 1 FROM snapshots WHERE document = ?1 AND rev = ?2")
        .and_then(|mut stmt| stmt.exists(params![id.as_str(), at]))
        .map_err(unavailable)?;
    if exists {
        return Ok(());
    }
    let base = match rev.0.checked_sub(1) {
        Some(before) if checkpoint::may_be_delta(text) => {
            read_snapshot(conn, id, Revision(before))?
        }
        _ => None,
    };
    let plan = checkpoint::plan(rev, text, base.as_ref());
    let (body, base, cost) = plan.stored(text);
    let (base, cost) = (base.map(to_sql).transpose()?, to_sql(cost)?);
    conn.prepare_cached(
        "INSERT INTO snapshots (document, rev, text, time_ms, base, chain_cost)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .and_then(|mut stmt| stmt.execute(params![id.as_str(), at, body, now_ms(), base, cost]))
    .map_err(|e| match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::ConstraintViolation) => StoreError::NotFound,
        _ => unavailable(e),
    })?;
    Ok(())
}

/// The latest snapshot at or before `rev`, rebuilt from its chain: the
/// row and its bases, followed one by one down to a full text.
fn read_snapshot(
    conn: &Connection,
    id: &DocId,
    rev: Revision,
) -> Result<Option<checkpoint::Rebuilt>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "WITH RECURSIVE link (rev, base, chain_cost, text) AS (
                 SELECT rev, base, chain_cost, text FROM snapshots
                 WHERE document = ?1 AND rev = (
                     SELECT max(rev) FROM snapshots WHERE document = ?1 AND rev <= ?2)
                 UNION ALL
                 SELECT s.rev, s.base, s.chain_cost, s.text FROM snapshots s, link
                 WHERE s.document = ?1 AND s.rev = link.base
             )
             SELECT rev, base, chain_cost, text FROM link",
        )
        .map_err(unavailable)?;
    let rows = stmt
        .query_map(params![id.as_str(), to_sql(rev.0)?], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, Option<i64>>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, String>(3)?,
            ))
        })
        .map_err(unavailable)?;
    let rows = rows
        .map(|row| {
            let (rev, base, chain, body) = row.map_err(unavailable)?;
            Ok(checkpoint::Row {
                rev: from_sql(rev)?,
                base: base.map(from_sql).transpose()?,
                chain: from_sql(chain)?,
                body,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    checkpoint::rebuild(rows)
}

fn to_sql(n: u64) -> Result<i64, StoreError> {
    i64::try_from(n).map_err(|_| StoreError::Invalid(format!("{n} is out of range")))
}

fn from_sql(n: i64) -> Result<u64, StoreError> {
    u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("negative count {n}")))
}

/// True when the ops are already stored exactly: a retried append.
fn already_stored(conn: &Connection, batch: &AppendBatch) -> Result<bool, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT client, seq FROM ops WHERE document = ?1 AND rev = ?2")
        .map_err(unavailable)?;
    for op in &batch.ops {
        let row: Option<(String, i64)> = stmt
            .query_row(params![batch.doc.as_str(), to_sql(op.rev.0)?], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
            .map_err(unavailable)?;
        match row {
            Some((client, seq)) if client == op.client.as_str() && seq == to_sql(op.seq.0)? => {}
            _ => return Ok(false),
        }
    }
    Ok(true)
}

fn append(conn: &Connection, batch: &AppendBatch) -> Result<(), StoreError> {
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
    let current: Option<(i64, i64)> = conn
        .prepare_cached("SELECT rev, epoch FROM documents WHERE id = ?1")
        .and_then(|mut stmt| {
            stmt.query_row(params![batch.doc.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
        })
        .map_err(unavailable)?;
    let (current, epoch) = current.ok_or(StoreError::NotFound)?;
    check_epoch(&batch.doc, LeaseEpoch(from_sql(epoch)?), batch.epoch)?;
    let current = from_sql(current)?;
    if current.checked_add(1) != Some(first.rev.0) {
        if already_stored(conn, batch)? {
            return Ok(());
        }
        return Err(StoreError::Conflict(format!(
            "document {} is at revision {current}, append starts at {}",
            batch.doc, first.rev
        )));
    }
    {
        let mut insert = conn
            .prepare_cached(
                "INSERT INTO ops (document, rev, client, seq, author, op, time_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .map_err(unavailable)?;
        for op in &batch.ops {
            insert
                .execute(params![
                    batch.doc.as_str(),
                    to_sql(op.rev.0)?,
                    op.client.as_str(),
                    to_sql(op.seq.0)?,
                    op.author,
                    op.op.to_json(),
                    op.time_ms,
                ])
                .map_err(|e| match e.sqlite_error_code() {
                    Some(rusqlite::ErrorCode::ConstraintViolation) => {
                        StoreError::Conflict(format!("op {} of {}: {e}", op.rev, batch.doc))
                    }
                    _ => unavailable(e),
                })?;
        }
    }
    let last_rev = to_sql(last.rev.0)?;
    conn.prepare_cached("UPDATE documents SET rev = ?2, updated_ms = ?3 WHERE id = ?1")
        .and_then(|mut stmt| stmt.execute(params![batch.doc.as_str(), last_rev, now_ms()]))
        .map_err(unavailable)?;
    if let Some((rev, text)) = &batch.snapshot {
        put_snapshot(conn, &batch.doc, *rev, &text.to_string())?;
    }
    Ok(())
}

fn meta_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, String, i64, i64, i64)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

fn meta(row: (String, String, i64, i64, i64)) -> Result<DocumentMeta, StoreError> {
    Ok(DocumentMeta {
        id: DocId::parse(&row.0).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        language: row.1,
        rev: Revision(from_sql(row.2)?),
        created_ms: row.3,
        updated_ms: row.4,
    })
}

#[async_trait]
impl Store for SqliteStore {
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
        self.read(move |c| {
            c.query_row(
                "SELECT id, language, rev, created_ms, updated_ms FROM documents WHERE id = ?1",
                params![id.as_str()],
                meta_from_row,
            )
            .optional()
            .map_err(unavailable)?
            .map(meta)
            .transpose()
        })
        .await
    }

    async fn list_documents(&self, limit: usize) -> Result<Vec<DocumentMeta>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |c| {
            let mut stmt = c
                .prepare(
                    "SELECT id, language, rev, created_ms, updated_ms FROM documents
                     ORDER BY updated_ms DESC, id LIMIT ?1",
                )
                .map_err(unavailable)?;
            let rows = stmt
                .query_map(params![limit], meta_from_row)
                .map_err(unavailable)?;
            rows.map(|r| r.map_err(unavailable).and_then(meta))
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
        self.read(move |c| {
            Ok(read_snapshot(c, &id, rev)?.map(|s| Snapshot {
                rev: s.rev,
                text: s.text,
            }))
        })
        .await
    }

    async fn snapshot_revisions(&self, id: &DocId) -> Result<Vec<Revision>, StoreError> {
        let id = id.clone();
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached("SELECT rev FROM snapshots WHERE document = ?1 ORDER BY rev")
                .map_err(unavailable)?;
            let rows = stmt
                .query_map(params![id.as_str()], |r| r.get::<_, i64>(0))
                .map_err(unavailable)?;
            rows.map(|r| Ok(Revision(from_sql(r.map_err(unavailable)?)?)))
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
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT rev, client, seq, author, op, time_ms FROM ops
                     WHERE document = ?1 AND rev > ?2 AND rev <= ?3 ORDER BY rev LIMIT ?4",
                )
                .map_err(unavailable)?;
            let rows = stmt
                .query_map(
                    params![id.as_str(), to_sql(after.0)?, to_sql(upto.0)?, limit],
                    |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, i64>(2)?,
                            r.get::<_, String>(3)?,
                            r.get::<_, String>(4)?,
                            r.get::<_, i64>(5)?,
                        ))
                    },
                )
                .map_err(unavailable)?;
            rows.map(|row| {
                let (rev, client, seq, author, op, time_ms) = row.map_err(unavailable)?;
                Ok(OpRecord {
                    rev: Revision(from_sql(rev)?),
                    client: ClientId::parse(&client)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    seq: Seq(from_sql(seq)?),
                    author,
                    op: decode_op(&op)?,
                    time_ms,
                })
            })
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
        self.read(move |c| {
            let rev: Option<i64> = c
                .query_row(
                    "SELECT rev FROM ops WHERE document = ?1 AND client = ?2 AND seq = ?3",
                    params![id.as_str(), client.as_str(), to_sql(seq.0)?],
                    |r| r.get(0),
                )
                .optional()
                .map_err(unavailable)?;
            rev.map(|r| Ok(Revision(from_sql(r)?))).transpose()
        })
        .await
    }

    async fn last_seq(
        &self,
        id: &DocId,
        client: &ClientId,
    ) -> Result<Option<(Seq, Revision)>, StoreError> {
        let (id, client) = (id.clone(), client.clone());
        self.read(move |c| {
            let row: Option<(i64, i64)> = c
                .query_row(
                    "SELECT seq, rev FROM ops WHERE document = ?1 AND client = ?2
                     ORDER BY seq DESC LIMIT 1",
                    params![id.as_str(), client.as_str()],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(unavailable)?;
            row.map(|(s, r)| Ok((Seq(from_sql(s)?), Revision(from_sql(r)?))))
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
        if storable("user id", user).is_err() {
            return Ok(false);
        }
        let (doc, user) = (doc.clone(), user.to_owned());
        self.write(|reply| Job::Revoke { doc, user, reply }).await
    }

    async fn grants(&self, doc: &DocId) -> Result<Vec<(String, Permission)>, StoreError> {
        let doc = doc.clone();
        let mut grants = self
            .read(move |c| {
                let mut stmt = c
                    .prepare_cached(
                        "SELECT user_id, permission FROM document_access WHERE document = ?1",
                    )
                    .map_err(unavailable)?;
                let rows = stmt
                    .query_map(params![doc.as_str()], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                    })
                    .map_err(unavailable)?;
                rows.map(|row| {
                    let (user, permission) = row.map_err(unavailable)?;
                    Ok((user, stored_permission(&permission)?))
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
        self.read(move |c| {
            let stored: Option<String> = c
                .prepare_cached(
                    "SELECT permission FROM document_access WHERE document = ?1 AND user_id = ?2",
                )
                .and_then(|mut stmt| {
                    stmt.query_row(params![doc.as_str(), user], |r| r.get(0))
                        .optional()
                })
                .map_err(unavailable)?;
            stored.as_deref().map(stored_permission).transpose()
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
            .read(move |c| {
                let mut stmt = c
                    .prepare_cached(&format!(
                        "SELECT {LINK_COLUMNS} FROM share_links WHERE document = ?1"
                    ))
                    .map_err(unavailable)?;
                let rows = stmt
                    .query_map(params![doc.as_str()], link_from_row)
                    .map_err(unavailable)?;
                rows.map(|r| r.map_err(unavailable).and_then(link))
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
        self.read(move |c| {
            c.prepare_cached(&format!(
                "SELECT {LINK_COLUMNS} FROM share_links WHERE token_hash = ?1"
            ))
            .and_then(|mut stmt| {
                stmt.query_row(params![token_hash], link_from_row)
                    .optional()
            })
            .map_err(unavailable)?
            .map(link)
            .transpose()
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        // Counted by the caller (`/readyz`), as a ping, not a read.
        self.read_uncounted(|conn| {
            conn.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))
                .map(|_| ())
                .map_err(unavailable)
        })
        .await
    }

    fn commit_stats(&self) -> (u64, u64) {
        self.stats.read()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ot::{Component, TextOp};

    fn typed(rev: u64, len: usize) -> Arc<OpRecord> {
        Arc::new(OpRecord {
            rev: Revision(rev),
            client: ClientId::parse("typist").expect("client id"),
            seq: Seq(rev),
            author: "typist".into(),
            op: TextOp::from_components([Component::Retain(len), Component::Insert("x")]),
            time_ms: 0,
        })
    }

    /// Appends `ops` one-character ops at the end of `doc`'s text (`base`
    /// characters of 'y' to start), a snapshot every 10.
    async fn type_with_snapshots(store: &SqliteStore, doc: &DocId, base: usize, ops: u64) {
        let mut text = "y".repeat(base);
        let start = store
            .document(doc)
            .await
            .expect("read")
            .expect("exists")
            .rev
            .0;
        for rev in start + 1..=start + ops {
            let op = typed(rev, text.chars().count());
            text.push('x');
            let snapshot = (rev % 10 == 0).then(|| (Revision(rev), Rope::from_str(&text)));
            let batch = AppendBatch {
                doc: doc.clone(),
                ops: vec![op],
                snapshot,
                epoch: LeaseEpoch::ZERO,
            };
            store.append(batch).await.expect("append");
        }
    }

    fn stored_kinds(path: &Path) -> (i64, i64, i64) {
        let conn = Connection::open(path).expect("open");
        conn.query_row(
            "SELECT count(*) FILTER (WHERE base IS NULL), count(base), sum(length(text))
             FROM snapshots",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .expect("count")
    }

    #[tokio::test]
    async fn typing_is_kept_as_deltas() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("t.db");
        let store = SqliteStore::open(&path).expect("open");
        let doc = DocId::parse("typed").expect("doc id");
        store
            .create_document(&doc, "rust", &"y".repeat(20_000))
            .await
            .expect("create");
        type_with_snapshots(&store, &doc, 20_000, 500).await;
        let (full, deltas, bytes) = stored_kinds(&path);
        // 50 snapshots of ~20 KB each would be ~1 MB; the deltas are a few
        // dozen bytes each, and the chain cost ends one in ~20.
        assert_eq!(full + deltas, 51);
        assert!(deltas >= 45, "{full} full, {deltas} deltas");
        assert!(bytes < 150_000, "{bytes} bytes of snapshots");
        let snap = store
            .snapshot_at_or_before(&doc, Revision(499))
            .await
            .expect("read")
            .expect("snapshot");
        assert_eq!(snap.rev, Revision(490));
        assert_eq!(
            snap.text,
            format!("{}{}", "y".repeat(20_000), "x".repeat(490))
        );
    }

    /// A file from before deltas (its snapshots table without `base` and
    /// `chain_cost`) gets the columns, keeps its snapshots, and its next
    /// snapshots are deltas on top of them.
    #[tokio::test]
    async fn old_files_get_snapshot_deltas() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("old.db");
        {
            let conn = Connection::open(&path).expect("open");
            let old = SCHEMA
                .replace(
                    "    base        INTEGER CHECK (base < rev),\n    chain_cost  INTEGER NOT NULL DEFAULT 0,\n",
                    "",
                )
                .replace(
                    "PRIMARY KEY (document, rev)\n);",
                    "PRIMARY KEY (document, rev)\n) WITHOUT ROWID;",
                );
            conn.execute_batch(&old).expect("old schema");
            let has: i64 = conn
                .query_row(
                    "SELECT count(*) FROM pragma_table_info('snapshots') WHERE name = 'base'",
                    [],
                    |r| r.get(0),
                )
                .expect("columns");
            assert_eq!(has, 0, "the old schema has no base column");
            let without_rowid: i64 = conn
                .query_row(
                    "SELECT count(*) FROM sqlite_schema
                     WHERE name = 'snapshots' AND sql LIKE '%WITHOUT ROWID%'",
                    [],
                    |r| r.get(0),
                )
                .expect("schema");
            assert_eq!(without_rowid, 1, "the old snapshots table");
            conn.execute(
                "INSERT INTO documents (id, language, rev, created_ms, updated_ms)
                 VALUES ('old', 'rust', 0, 0, 0)",
                [],
            )
            .expect("document");
            conn.execute(
                "INSERT INTO snapshots (document, rev, text, time_ms) VALUES ('old', 0, ?1, 0)",
                params!["y".repeat(20_000)],
            )
            .expect("snapshot 0");
        }
        let store = SqliteStore::open(&path).expect("open old file");
        let doc = DocId::parse("old").expect("doc id");
        type_with_snapshots(&store, &doc, 20_000, 100).await;
        let (full, deltas, _) = stored_kinds(&path);
        assert_eq!((full, deltas), (1, 10));
        let without_rowid: i64 = Connection::open(&path)
            .expect("open")
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE sql LIKE '%WITHOUT ROWID%'
                 AND name = 'snapshots'",
                [],
                |r| r.get(0),
            )
            .expect("schema");
        assert_eq!(without_rowid, 0, "rebuilt as a rowid table");
        let snap = store
            .snapshot_at_or_before(&doc, Revision(100))
            .await
            .expect("read")
            .expect("snapshot");
        assert_eq!(
            snap.text,
            format!("{}{}", "y".repeat(20_000), "x".repeat(100))
        );
    }
}
