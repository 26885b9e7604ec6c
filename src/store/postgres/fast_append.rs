//! The append fast path: one prepared statement per append, and a group
//! commit of many appends sent in one round trip.
//!
//! The general path ([`super::commit_jobs`]) runs each job under its own
//! savepoint, one statement per round trip: about ten round trips per
//! append. Here each append is a single statement, prepared once per
//! connection, that moves the fence (`documents.rev`) only if the document
//! is at the revision before the batch and the writer's epoch is current,
//! and inserts the ops and the snapshot only if the fence moved. A job is
//! therefore either fully written or untouched, and an untouched job is
//! handed to the general path, which finds out why (a retry of what is
//! stored, a conflict, a missing document) and answers exactly as before.
//!
//! Every statement of a group, with `BEGIN` before and `COMMIT` after, is
//! sent at once (tokio-postgres pipelines requests made on one connection):
//! one round trip and one WAL flush for the lot. A statement that fails
//! aborts the transaction, so nothing of the group is committed and the
//! whole group goes to the general path. A lone append needs no `BEGIN`: a
//! single statement is its own transaction, and its reply comes after
//! `ReadyForQuery`, that is after the commit.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use futures_util::future::{MaybeDone, maybe_done, poll_fn};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Statement};

use super::{Job, to_sql};
use crate::store::{AppendBatch, now_ms};

/// Moves the fence and writes the ops and the snapshot, or does nothing.
/// The `UPDATE` takes the document's row lock: a writer of the same
/// document on another connection waits, and then re-checks `rev` against
/// the row this one committed. `ins` and `snap` read from `upd`, so they
/// write only when the fence moved. Returns the number of ops inserted:
/// all of them, or none.
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
    /// contiguous, starting at revision 0, or out of range.
    fn of(batch: &AppendBatch, now: i64) -> Option<Self> {
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

/// What the fast path did with a group of jobs.
pub(super) enum Outcome {
    /// Committed. `true` for each job that was written; the others were
    /// left untouched, for the general path to run.
    Committed(Vec<bool>),
    /// Nothing was committed (a statement failed and the transaction was
    /// rolled back): the general path runs every job.
    RolledBack,
    /// The group does not qualify (a job other than an append, or an
    /// append the general path must judge): nothing was sent.
    NotTried,
}

/// Runs `jobs` on the fast path if every one is an append it can take.
///
/// # Errors
///
/// When it is unknown whether the group committed (the connection failed,
/// or `COMMIT` did): the jobs must be answered `Unavailable`, and retried.
pub(super) async fn run(
    conn: &Client,
    statements: &Statements,
    jobs: &[Job],
) -> Result<Outcome, tokio_postgres::Error> {
    let now = now_ms();
    let Some(params) = jobs
        .iter()
        .map(|job| match job {
            Job::Append { batch, .. } => Params::of(batch, now),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()
    else {
        return Ok(Outcome::NotTried);
    };
    let sql: Vec<_> = params.iter().map(Params::as_sql).collect();
    let results = if let [only] = sql.as_slice() {
        vec![conn.execute(&statements.append, only).await]
    } else {
        let appends = sql.iter().map(|p| conn.execute(&statements.append, p));
        let begin = conn.batch_execute("BEGIN");
        let commit = conn.batch_execute("COMMIT");
        let (begun, results, committed) = send_in_order(begin, appends, commit).await;
        // Without BEGIN, each append would have committed on its own.
        begun?;
        // After a failed statement, COMMIT rolls back; an error from COMMIT
        // itself leaves the outcome unknown.
        committed?;
        results
    };
    let mut written = Vec::with_capacity(results.len());
    for (result, p) in results.into_iter().zip(&params) {
        match result {
            Ok(n) => written.push(n == p.revs.len() as u64),
            // The server refused a statement: the transaction was aborted.
            Err(e) if e.as_db_error().is_some() => return Ok(Outcome::RolledBack),
            Err(e) => return Err(e),
        }
    }
    Ok(Outcome::Committed(written))
}

type Pinned<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// Awaits `first`, then `middle`, then `last`, polling each for the first
/// time in that order, so their requests go out in that order on one
/// connection and are answered in one round trip.
async fn send_in_order<'a, A, B, C>(
    first: impl Future<Output = A> + 'a,
    middle: impl Iterator<Item = impl Future<Output = B> + 'a>,
    last: impl Future<Output = C> + 'a,
) -> (A, Vec<B>, C) {
    let mut first: MaybeDone<Pinned<'a, A>> = maybe_done(Box::pin(first));
    let mut middle: Vec<MaybeDone<Pinned<'a, B>>> = middle
        .map(|f| maybe_done(Box::pin(f) as Pinned<'a, B>))
        .collect();
    let mut last: MaybeDone<Pinned<'a, C>> = maybe_done(Box::pin(last));
    poll_fn(|cx| {
        // Every one is polled, in order, on every wake-up (`&=` does not
        // short-circuit); a finished one keeps its output and is ready at
        // once after that.
        let mut ready = Pin::new(&mut first).poll(cx).is_ready();
        for f in &mut middle {
            ready &= Pin::new(f).poll(cx).is_ready();
        }
        ready &= Pin::new(&mut last).poll(cx).is_ready();
        if ready {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    let outputs = (
        take(&mut first),
        middle.iter_mut().map(take).collect::<Option<Vec<_>>>(),
        take(&mut last),
    );
    match outputs {
        (Some(a), Some(b), Some(c)) => (a, b, c),
        _ => unreachable!("poll_fn returns only once every future is done"),
    }
}

fn take<T>(f: &mut MaybeDone<Pinned<'_, T>>) -> Option<T> {
    Pin::new(f).take_output()
}
