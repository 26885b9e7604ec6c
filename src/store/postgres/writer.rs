//! The writer task: one connection that group-commits, and sends the next
//! group while the last one's `COMMIT` is under way.
//!
//! A group of appends goes out as `BEGIN`, one statement per append and
//! `COMMIT`, all at once ([`fast_append`]). The statements are answered
//! before the `COMMIT` runs: from then on each written append has its place
//! in the log and its conflicts are known, so it is answered as written
//! ([`Store::append_ordered`](crate::store::Store::append_ordered)), with a
//! [`Durable`](crate::store::Durable) that resolves once the `COMMIT` has
//! returned, and not before. Its document may then send its next batch,
//! which goes out behind that `COMMIT` on the same connection (PostgreSQL
//! runs a connection's requests in order), so the round trips of one group
//! overlap the WAL flush of the last.
//!
//! A failed `COMMIT` fails the `Durable` of every append in its group, and
//! their documents reload from the store. A group sent behind it that
//! relied on it meets the fence (`documents.rev` is not where its appends
//! start) and writes nothing.
//!
//! Other jobs, and appends the fast path leaves untouched, run under
//! savepoints in a transaction of their own ([`super::commit_jobs`]), once
//! every earlier commit has been answered, and are answered after it.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures_util::future::poll_fn;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::Client;

use super::fast_append::{self, Commit, Group, Outcome, Statements};
use super::{MAX_JOBS_PER_COMMIT, Target, commit_jobs, connect};
use crate::store::job::{Job, reply};
use crate::store::{CommitStats, StoreError};

/// Most commits sent and not yet answered. Two let one group's statements
/// run while the last group's `COMMIT` flushes; a third lets the next group
/// go out as soon as its document has its answer, which was worth about 4%
/// on the closed loop (7,330–7,370 → 7,630–7,720 ops/s, 2026-12-07). More
/// would only split the waiting jobs into more, smaller transactions, each
/// its own WAL flush.
const MAX_COMMITS_IN_FLIGHT: usize = 3;

/// The writer's connection and the statements prepared on it.
pub(super) struct Writer {
    client: Arc<Client>,
    /// Prepared at the first append, not at connect: a store may be
    /// connected to a database before its tables exist (migrations run
    /// separately), and preparing names them.
    statements: tokio::sync::OnceCell<Statements>,
}

impl Writer {
    /// Connects.
    pub(super) async fn open(config: &Target) -> Result<Self, StoreError> {
        let client = connect(config).await?;
        Ok(Self {
            client: Arc::new(client),
            statements: tokio::sync::OnceCell::new(),
        })
    }
}

/// A group's `COMMIT`, sent, with whom to tell when it is answered.
struct Pending {
    commit: Commit,
    /// The `Durable` of each append written in the group.
    durables: Vec<oneshot::Sender<Result<(), StoreError>>>,
    ops: usize,
    started: Instant,
}

impl Pending {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.commit).poll(cx)
    }

    /// Tells every append of the group how its `COMMIT` went. Call once
    /// [`Pending::poll`] is ready.
    fn settle(mut self, stats: &CommitStats) {
        match fast_append::take(&mut self.commit) {
            Some(Ok(())) => {
                // A group that wrote nothing (rolled back, or every append
                // left to the general path) is not counted as a commit.
                if self.ops > 0 {
                    stats.record(self.ops);
                    crate::metrics::group_commit(self.started, self.ops);
                }
                for durable in self.durables {
                    let _ = durable.send(Ok(()));
                }
            }
            failed => {
                let e = failed.map_or_else(
                    || "the commit was not answered".to_owned(),
                    |r| r.err().map(|e| e.to_string()).unwrap_or_default(),
                );
                crate::metrics::store_error("commit");
                tracing::warn!("PostgreSQL group commit failed: {e}");
                for durable in self.durables {
                    let _ = durable.send(Err(StoreError::Unavailable(e.clone())));
                }
            }
        }
    }
}

/// Commits sent and not yet answered, oldest first.
#[derive(Default)]
struct InFlight(VecDeque<Pending>);

impl InFlight {
    /// Polls every commit (so that the connection can hand each its reply)
    /// and settles those answered, oldest first.
    fn poll_settle(&mut self, cx: &mut Context<'_>, stats: &CommitStats) {
        for pending in &mut self.0 {
            let _ = pending.poll(cx);
        }
        while self
            .0
            .front_mut()
            .is_some_and(|p| matches!(p.commit, futures_util::future::MaybeDone::Done(_)))
        {
            if let Some(done) = self.0.pop_front() {
                done.settle(stats);
            }
        }
    }

    /// Waits until every commit is answered, and settles them.
    async fn drain(&mut self, stats: &CommitStats) {
        poll_fn(|cx| {
            self.poll_settle(cx, stats);
            if self.0.is_empty() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }
}

/// Takes every job waiting, up to [`MAX_JOBS_PER_COMMIT`], into a group,
/// until the store is dropped; then waits for the commits under way.
pub(super) async fn writer_loop(
    config: Target,
    mut writer: Option<Writer>,
    mut rx: mpsc::Receiver<Job>,
    stats: &CommitStats,
) {
    let mut in_flight = InFlight::default();
    let mut jobs = Vec::new();
    loop {
        let received = poll_fn(|cx| {
            in_flight.poll_settle(cx, stats);
            if in_flight.0.len() >= MAX_COMMITS_IN_FLIGHT {
                return Poll::Pending;
            }
            rx.poll_recv_many(cx, &mut jobs, MAX_JOBS_PER_COMMIT)
        })
        .await;
        if received == 0 {
            break;
        }
        let batch = std::mem::take(&mut jobs);
        // A broken connection is replaced on the next batch, never for
        // good, once what was sent on it has failed.
        if writer.as_ref().is_none_or(|w| w.client.is_closed()) {
            in_flight.drain(stats).await;
            writer = match Writer::open(&config).await {
                Ok(w) => Some(w),
                Err(e) => {
                    crate::metrics::store_error("connect");
                    tracing::warn!("PostgreSQL writer cannot connect: {e}");
                    fail_all(batch, &e);
                    continue;
                }
            };
        }
        if let Some(w) = &writer {
            commit_batch(w, batch, &mut in_flight, stats).await;
        }
    }
    in_flight.drain(stats).await;
}

/// Sends a batch as a group if the fast path takes it, answers each
/// append it wrote, and leaves the group's `COMMIT` in flight; runs the
/// rest on the general path.
async fn commit_batch(w: &Writer, batch: Vec<Job>, in_flight: &mut InFlight, stats: &CommitStats) {
    let started = Instant::now();
    let prepared = w
        .statements
        .get_or_try_init(|| Statements::prepare(&w.client))
        .await;
    let Some(mut group) = prepared
        .ok()
        .and_then(|statements| Group::new(&w.client, statements, &batch))
    else {
        return commit_general(w, batch, in_flight, stats).await;
    };
    poll_fn(|cx| {
        in_flight.poll_settle(cx, stats);
        group.poll_statements(cx)
    })
    .await;
    let (outcome, commit) = group.outcome();
    match outcome {
        Ok(Outcome::Ran(written)) => {
            let mut rest = Vec::new();
            let mut durables = Vec::new();
            let mut ops = 0;
            for (job, written) in batch.into_iter().zip(written) {
                match job {
                    Job::Append { batch, reply } if written => {
                        let (tx, rx) = oneshot::channel();
                        durables.push(tx);
                        ops += batch.ops.len();
                        let _ = reply.send(Ok(Box::pin(async move {
                            rx.await.unwrap_or_else(|_| {
                                Err(StoreError::Unavailable("writer task stopped".into()))
                            })
                        })));
                    }
                    job => rest.push(job),
                }
            }
            in_flight.0.push_back(Pending {
                commit,
                durables,
                ops,
                started,
            });
            if !rest.is_empty() {
                commit_general(w, rest, in_flight, stats).await;
            }
        }
        Ok(Outcome::RolledBack) => {
            // Nothing was written: the general path runs the whole batch,
            // after the rollback.
            in_flight.0.push_back(Pending {
                commit,
                durables: Vec::new(),
                ops: 0,
                started,
            });
            commit_general(w, batch, in_flight, stats).await;
        }
        Err(e) => {
            in_flight.0.push_back(Pending {
                commit,
                durables: Vec::new(),
                ops: 0,
                started,
            });
            in_flight.drain(stats).await;
            crate::metrics::store_error("commit");
            tracing::warn!("PostgreSQL group commit failed: {e}");
            fail_all(batch, &e);
        }
    }
}

/// Runs jobs on the general path, after every commit in flight, and
/// answers each once its transaction has committed.
async fn commit_general(w: &Writer, jobs: Vec<Job>, in_flight: &mut InFlight, stats: &CommitStats) {
    in_flight.drain(stats).await;
    let started = Instant::now();
    match commit_jobs(&w.client, &jobs).await {
        Ok(outcomes) => {
            let ops = jobs.iter().map(job_ops).sum();
            stats.record(ops);
            crate::metrics::group_commit(started, ops);
            for (job, outcome) in jobs.into_iter().zip(outcomes) {
                reply(job, outcome);
            }
        }
        Err(e) => {
            // Nothing of this transaction is known to be committed; the
            // callers retry, and a retried append is idempotent.
            crate::metrics::store_error("commit");
            tracing::warn!("PostgreSQL group commit failed: {e}");
            fail_all(jobs, &e);
        }
    }
}

fn job_ops(job: &Job) -> usize {
    match job {
        Job::Append { batch, .. } => batch.ops.len(),
        _ => 0,
    }
}

fn fail_all(jobs: Vec<Job>, e: &impl std::fmt::Display) {
    for job in jobs {
        reply(job, Err(StoreError::Unavailable(e.to_string())));
    }
}
