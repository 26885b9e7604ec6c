//! The append fast path: one prepared statement per append, and a group of
//! appends sent with its `BEGIN` and `COMMIT` in one round trip.
//!
//! The general path ([`super::commit_jobs`]) runs each job under its own
//! savepoint, one statement per round trip: about ten round trips per
//! append. Here each append is a single statement, prepared once per
//! connection, that moves the fence (`documents.rev`) only if the document
//! is at the revision before the batch and the writer's epoch is current,
//! and inserts the ops and the snapshot only if the fence moved. An append
//! is therefore either fully written or untouched, and an untouched one is
//! handed to the general path, which finds out why (a retry of what is
//! stored, a conflict, a missing document) and answers exactly as before.
//!
//! `BEGIN`, the statements and `COMMIT` are sent at once: tokio-postgres
//! sends a request when its future is first polled, and PostgreSQL answers
//! a connection's requests in order. The statements are answered before the
//! `COMMIT` runs. A statement that fails aborts the transaction, so the
//! `COMMIT` rolls it back and nothing of the group is written.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::{MaybeDone, maybe_done};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Statement};

use super::{Job, to_sql};
use crate::store::{AppendBatch, StoreError, now_ms};

/// Moves the fence and writes the ops and the snapshot, or does nothing.
/// The `UPDATE` takes the document's row lock: a writer of the same
/// document on another connection waits, and then re-checks `rev` against
/// the row that one committed. `snap` and the insert read from `upd`, so
/// they write only when the fence moved. Returns the number of ops
/// inserted: all of them, or none.
const APPEND: &str = "
    WITH upd AS (
        UPDATE documents SET rev = $3, updated_ms = $4
        WHERE id = $1 AND rev = $2 AND epoch <= $5
        RETURNING id
    ), snap AS (
        INSERT INTO snapshots (document, rev, text, time_ms)
        SELECT upd.id, $12::bigint, $13::bytea, $4 FROM upd WHERE $13::bytea IS NOT NULL
        ON CONFLICT (document, rev) DO NOTHING
    )
    INSERT INTO ops (document, rev, client, seq, author, op, time_ms)
    SELECT upd.id, o.* FROM upd, UNNEST($6::bigint[], $7::text[], $8::bigint[],
                                        $9::text[], $10::text[], $11::bigint[]) AS o";

/// The statements of the fast path, prepared on one connection (a prepared
/// statement belongs to the connection that prepared it).
pub(super) struct Statements {
    append: Statement,
}

impl Statements {
    /// Prepares them on `client`.
    pub(super) async fn prepare(client: &Client) -> Result<Self, tokio_postgres::Error> {
        Ok(Self {
            append: client.prepare(APPEND).await?,
        })
    }
}

/// One append's parameters, in the statement's order.
struct Params {
    doc: String,
    before: i64,
    last: i64,
    now: i64,
    epoch: i64,
    revs: Vec<i64>,
    clients: Vec<String>,
    seqs: Vec<i64>,
    authors: Vec<String>,
    ops: Vec<String>,
    times: Vec<i64>,
    snapshot_rev: Option<i64>,
    snapshot_text: Option<Vec<u8>>,
}

impl Params {
    /// `None` when the batch is for the general path to judge: empty, not
    /// contiguous, starting at revision 0, or out of range; or carrying a
    /// snapshot, which the general path may store as a delta from the one
    /// before it (one batch in `--snapshot-interval` revisions).
    fn of(batch: &AppendBatch, now: i64) -> Option<Self> {
        if batch.snapshot.is_some() {
            return None;
        }
        let (first, last) = (batch.ops.first()?, batch.ops.last()?);
        let contiguous = batch
            .ops
            .windows(2)
            .all(|w| w[0].rev.0.checked_add(1) == Some(w[1].rev.0));
        if !contiguous {
            return None;
        }
        let n = batch.ops.len();
        let mut p = Self {
            doc: batch.doc.as_str().to_owned(),
            before: to_sql(first.rev.0.checked_sub(1)?).ok()?,
            last: to_sql(last.rev.0).ok()?,
            now,
            epoch: to_sql(batch.epoch.0).ok()?,
            revs: Vec::with_capacity(n),
            clients: Vec::with_capacity(n),
            seqs: Vec::with_capacity(n),
            authors: Vec::with_capacity(n),
            ops: Vec::with_capacity(n),
            times: Vec::with_capacity(n),
            snapshot_rev: None,
            snapshot_text: None,
        };
        for op in &batch.ops {
            p.revs.push(to_sql(op.rev.0).ok()?);
            p.clients.push(op.client.as_str().to_owned());
            p.seqs.push(to_sql(op.seq.0).ok()?);
            p.authors.push(op.author.clone());
            // JSON escapes U+0000 as \u0000, so an op is always valid `text`.
            p.ops.push(op.op.to_json());
            p.times.push(op.time_ms);
        }
        if let Some((rev, text)) = &batch.snapshot {
            p.snapshot_rev = Some(to_sql(rev.0).ok()?);
            p.snapshot_text = Some(text.to_string().into_bytes());
        }
        Some(p)
    }

    fn as_sql(&self) -> [&(dyn ToSql + Sync); 13] {
        [
            &self.doc,
            &self.before,
            &self.last,
            &self.now,
            &self.epoch,
            &self.revs,
            &self.clients,
            &self.seqs,
            &self.authors,
            &self.ops,
            &self.times,
            &self.snapshot_rev,
            &self.snapshot_text,
        ]
    }
}

type Pinned<T> = Pin<Box<dyn Future<Output = T>>>;
type Request<T> = MaybeDone<Pinned<Result<T, tokio_postgres::Error>>>;

/// A request's reply once it has come, kept until taken.
pub(super) type Commit = Request<()>;

/// A group of appends on its way: `BEGIN`, a statement per append, and
/// `COMMIT`. Poll it ([`Group::poll_statements`]) to send it.
pub(super) struct Group {
    begin: Request<()>,
    appends: Vec<Request<u64>>,
    sizes: Vec<u64>,
    commit: Commit,
}

/// What the statements of a group did.
pub(super) enum Outcome {
    /// Every statement ran: `true` for each append written, `false` for
    /// each one left untouched. The group's `COMMIT` decides whether the
    /// written ones are durable.
    Ran(Vec<bool>),
    /// A statement was refused: the transaction was aborted and its
    /// `COMMIT` rolls it back. Nothing of the group is written.
    RolledBack,
}

impl Group {
    /// `None` unless every job is an append the fast path can take.
    pub(super) fn new(client: &Arc<Client>, statements: &Statements, jobs: &[Job]) -> Option<Self> {
        let now = now_ms();
        let params = jobs
            .iter()
            .map(|job| match job {
                Job::Append { batch, .. } => Params::of(batch, now),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()?;
        let sizes = params.iter().map(|p| p.revs.len() as u64).collect();
        let simple = |sql: &'static str| -> Request<()> {
            let client = Arc::clone(client);
            maybe_done(Box::pin(async move { client.batch_execute(sql).await }))
        };
        let appends = params
            .into_iter()
            .map(|p| {
                let (client, statement) = (Arc::clone(client), statements.append.clone());
                maybe_done(
                    Box::pin(async move { client.execute(&statement, &p.as_sql()).await })
                        as Pinned<_>,
                )
            })
            .collect();
        Some(Self {
            begin: simple("BEGIN"),
            appends,
            sizes,
            commit: simple("COMMIT"),
        })
    }

    /// Polls every request, in order, so that the first poll sends them in
    /// order; ready once `BEGIN` and every statement are answered.
    pub(super) fn poll_statements(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        // `&=` does not short-circuit: every request is polled.
        let mut ready = Pin::new(&mut self.begin).poll(cx).is_ready();
        for append in &mut self.appends {
            ready &= Pin::new(append).poll(cx).is_ready();
        }
        let _ = Pin::new(&mut self.commit).poll(cx);
        if ready {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// What the statements did, and the `COMMIT` still under way (or
    /// answered). Call once [`Group::poll_statements`] is ready.
    ///
    /// # Errors
    ///
    /// When it is unknown what the group wrote: `BEGIN` failed (each
    /// statement may have committed on its own) or the connection did.
    pub(super) fn outcome(mut self) -> (Result<Outcome, StoreError>, Commit) {
        let outcome = (|| {
            let begun = take(&mut self.begin).ok_or_else(not_answered)?;
            begun.map_err(unknown)?;
            let mut written = Vec::with_capacity(self.appends.len());
            for (append, size) in self.appends.iter_mut().zip(&self.sizes) {
                match take(append).ok_or_else(not_answered)? {
                    Ok(n) => written.push(n == *size),
                    // The server refused it: the transaction is aborted.
                    Err(e) if e.as_db_error().is_some() => return Ok(Outcome::RolledBack),
                    Err(e) => return Err(unknown(e)),
                }
            }
            Ok(Outcome::Ran(written))
        })();
        (outcome, self.commit)
    }
}

/// A reply, if it has come.
pub(super) fn take<T>(request: &mut Request<T>) -> Option<Result<T, tokio_postgres::Error>> {
    Pin::new(request).take_output()
}

fn not_answered() -> StoreError {
    // Not reachable once `poll_statements` was ready.
    StoreError::Unavailable("a statement of the group was not answered".into())
}

fn unknown(e: tokio_postgres::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}
