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
//! A `COMMIT` that fails leaves its group's outcome unknown when the
//! connection died on the way (the commit may have landed). Its appends are
//! kept, and settled before anything else once the writer has a working
//! connection again: each is run once more on the general path, which finds
//! it already stored (a commit that landed) or writes it (one that rolled
//! back); only then is its `Durable` answered. A document therefore rides
//! out a cut connection without closing. A group sent behind the failed one
//! that relied on it meets the fence (`documents.rev` is not where its
//! appends start), writes nothing, and goes to the general path, which runs
//! after the settling.
//!
//! Other jobs, and appends the fast path leaves untouched, run under
//! savepoints in a transaction of their own ([`super::commit_jobs`]), once
//! every earlier commit has been answered, and are answered after it.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::future::poll_fn;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::Client;

use super::fast_append::{self, Commit, Group, Outcome, Statements};
use super::{MAX_JOBS_PER_COMMIT, Target, commit_jobs, connect};
use crate::store::job::{Done, Job, reply};
use crate::store::{AppendBatch, CommitStats, StoreError};

/// Most commits sent and not yet answered. Two let one group's statements
/// run while the last group's `COMMIT` flushes; a third lets the next group
/// go out as soon as its document has its answer, which was worth about 4%
/// on the closed loop (7,330–7,370 → 7,630–7,720 ops/s, 2026-12-07). More
/// would only split the waiting jobs into more, smaller transactions, each
/// its own WAL flush.
const MAX_COMMITS_IN_FLIGHT: usize = 3;

/// How long appends whose commit failed are tried again while the writer
/// can connect but not commit, before their `Durable`s fail (and their
/// documents close). When it cannot connect at all they fail at once, as
/// every other write does.
const UNSETTLED_LIMIT: Duration = Duration::from_secs(10);

/// The pause before trying to settle them again.
const RETRY_PAUSE: Duration = Duration::from_millis(20);

/// An append answered as written whose commit has not been seen to land,
/// and whom to tell when it is settled.
type Written = (AppendBatch, oneshot::Sender<Result<(), StoreError>>);

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
    /// Each append written in the group, with its `Durable`'s sender.
    appends: Vec<Written>,
    ops: usize,
    started: Instant,
}

impl Pending {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.commit).poll(cx)
    }

    /// Tells every append of the group that its `COMMIT` landed, or, when
    /// it failed, returns them to be settled. Call once [`Pending::poll`]
    /// is ready.
    fn settle(mut self, stats: &CommitStats) -> Vec<Written> {
        match fast_append::take(&mut self.commit) {
            Some(Ok(())) => {
                // A group that wrote nothing (rolled back, or every append
                // left to the general path) is not counted as a commit.
                if self.ops > 0 {
                    stats.record(self.ops);
                    crate::metrics::group_commit(self.started, self.ops);
                }
                for (_, durable) in self.appends {
                    let _ = durable.send(Ok(()));
                }
                Vec::new()
            }
            failed => {
                let e = failed.map_or_else(
                    || "the commit was not answered".to_owned(),
                    |r| r.err().map(|e| e.to_string()).unwrap_or_default(),
                );
                crate::metrics::store_error("commit");
                if self.appends.is_empty() {
                    tracing::warn!("PostgreSQL group commit failed: {e}");
                } else {
                    tracing::warn!(
                        appends = self.appends.len(),
                        "PostgreSQL group commit failed: {e}; settling its appends"
                    );
                }
                self.appends
            }
        }
    }
}

/// Commits sent and not yet answered, oldest first, and the appends of
/// those that failed.
#[derive(Default)]
struct InFlight {
    pending: VecDeque<Pending>,
    /// Appends of failed commits, oldest first, to settle before any other
    /// write ([`InFlight::settle_failed`]).
    unsettled: Vec<Written>,
    /// When the oldest of them was first tried again and failed.
    retrying_since: Option<Instant>,
}

impl InFlight {
    /// Polls every commit (so that the connection can hand each its reply)
    /// and settles those answered, oldest first.
    fn poll_settle(&mut self, cx: &mut Context<'_>, stats: &CommitStats) {
        for pending in &mut self.pending {
            let _ = pending.poll(cx);
        }
        while self
            .pending
            .front_mut()
            .is_some_and(|p| matches!(p.commit, futures_util::future::MaybeDone::Done(_)))
        {
            if let Some(done) = self.pending.pop_front() {
                let failed = done.settle(stats);
                self.unsettled.extend(failed);
            }
        }
    }

    /// Waits until every commit is answered, and settles them.
    async fn drain(&mut self, stats: &CommitStats) {
        poll_fn(|cx| {
            self.poll_settle(cx, stats);
            if self.pending.is_empty() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }

    /// If a commit failed, waits for every commit under way, then settles
    /// the appends of those that failed, in one transaction on the general
    /// path: an append the log already has (its commit landed) is found
    /// there, one it has not is written. Each `Durable` is then answered
    /// with that outcome. When the connection is broken they wait for the
    /// next one, up to [`UNSETTLED_LIMIT`]. Without a failure it returns at
    /// once: the commits under way stay in flight.
    async fn settle_failed(&mut self, w: &Writer, stats: &CommitStats) {
        if self.unsettled.is_empty() {
            return;
        }
        self.drain(stats).await;
        if w.client.is_closed() {
            return;
        }
        let (jobs, durables): (Vec<Job>, Vec<_>) = std::mem::take(&mut self.unsettled)
            .into_iter()
            .map(|(batch, durable)| {
                // Answered through `durable`; this reply goes nowhere.
                let (reply, _) = oneshot::channel();
                (Job::Append { batch, reply }, durable)
            })
            .unzip();
        match commit_counted(&w.client, &jobs, stats).await {
            Ok(outcomes) => {
                tracing::info!(appends = jobs.len(), "appends of a failed commit settled");
                for (durable, outcome) in durables.into_iter().zip(outcomes) {
                    let _ = durable.send(outcome.map(|_| ()));
                }
                self.retrying_since = None;
            }
            Err(e) => {
                tracing::warn!("settling the appends of a failed commit failed: {e}");
                self.unsettled = jobs
                    .into_iter()
                    .zip(durables)
                    .filter_map(|(job, durable)| match job {
                        Job::Append { batch, .. } => Some((batch, durable)),
                        _ => None,
                    })
                    .collect();
                let since = *self.retrying_since.get_or_insert_with(Instant::now);
                if since.elapsed() > UNSETTLED_LIMIT {
                    self.fail_unsettled(&e);
                } else {
                    // Not at once again: the connection may not yet show
                    // that it is broken.
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
            }
        }
    }

    /// Fails the `Durable` of every append waiting to be settled: their
    /// documents close and reload from the store.
    fn fail_unsettled(&mut self, e: &impl std::fmt::Display) {
        for (_, durable) in self.unsettled.drain(..) {
            let _ = durable.send(Err(StoreError::Unavailable(e.to_string())));
        }
        self.retrying_since = None;
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
        // Appends of a failed commit wake the writer: they are settled
        // even when nothing else comes.
        let received = poll_fn(|cx| {
            in_flight.poll_settle(cx, stats);
            if !in_flight.unsettled.is_empty() {
                return Poll::Ready(None);
            }
            if in_flight.pending.len() >= MAX_COMMITS_IN_FLIGHT {
                return Poll::Pending;
            }
            rx.poll_recv_many(cx, &mut jobs, MAX_JOBS_PER_COMMIT)
                .map(Some)
        })
        .await;
        if received == Some(0) {
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
                    in_flight.fail_unsettled(&e);
                    fail_all(batch, &e);
                    continue;
                }
            };
        }
        if let Some(w) = &writer {
            in_flight.settle_failed(w, stats).await;
            if !batch.is_empty() {
                commit_batch(w, batch, &mut in_flight, stats).await;
            }
        }
    }
    in_flight.drain(stats).await;
    in_flight.fail_unsettled(&"the store is closing");
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
            let mut appends = Vec::new();
            let mut ops = 0;
            for (job, written) in batch.into_iter().zip(written) {
                match job {
                    Job::Append { batch, reply } if written => {
                        let (tx, rx) = oneshot::channel();
                        ops += batch.ops.len();
                        appends.push((batch, tx));
                        let _ = reply.send(Ok(Box::pin(async move {
                            rx.await.unwrap_or_else(|_| {
                                Err(StoreError::Unavailable("writer task stopped".into()))
                            })
                        })));
                    }
                    job => rest.push(job),
                }
            }
            in_flight.pending.push_back(Pending {
                commit,
                appends,
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
            in_flight.pending.push_back(Pending {
                commit,
                appends: Vec::new(),
                ops: 0,
                started,
            });
            commit_general(w, batch, in_flight, stats).await;
        }
        Err(e) => {
            in_flight.pending.push_back(Pending {
                commit,
                appends: Vec::new(),
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

/// Runs jobs on the general path, after every commit in flight and the
/// settling of any that failed, and answers each once its transaction has
/// committed.
async fn commit_general(w: &Writer, jobs: Vec<Job>, in_flight: &mut InFlight, stats: &CommitStats) {
    in_flight.drain(stats).await;
    in_flight.settle_failed(w, stats).await;
    match commit_counted(&w.client, &jobs, stats).await {
        Ok(outcomes) => {
            for (job, outcome) in jobs.into_iter().zip(outcomes) {
                reply(job, outcome);
            }
        }
        Err(e) => {
            // Nothing of this transaction is known to be committed; the
            // callers retry, and a retried append is idempotent.
            tracing::warn!("PostgreSQL group commit failed: {e}");
            fail_all(jobs, &e);
        }
    }
}

/// [`commit_jobs`], counted in the commit statistics and the metrics.
async fn commit_counted(
    client: &Client,
    jobs: &[Job],
    stats: &CommitStats,
) -> Result<Vec<Result<Done, StoreError>>, tokio_postgres::Error> {
    let started = Instant::now();
    let outcomes = commit_jobs(client, jobs)
        .await
        .inspect_err(|_| crate::metrics::store_error("commit"))?;
    let ops = jobs.iter().map(job_ops).sum();
    stats.record(ops);
    crate::metrics::group_commit(started, ops);
    Ok(outcomes)
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
