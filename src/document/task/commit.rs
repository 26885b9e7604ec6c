//! The write pipeline of a document: sequenced ops go to the store one
//! batch at a time, wait in order for the store's flush, and are published
//! (acks and fan-out) once durable. A failure to write is retried with
//! backoff up to the store retry limit; a conflict or a failed flush closes
//! the document so that it is reloaded from the store.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use ropey::Rope;
use tokio::time::{Instant, sleep};
use tracing::{debug, warn};

use super::Task;
use crate::document::Refusal;
use crate::ids::Revision;
use crate::protocol::{CloseCode, ErrorCode, ServerMsg, error_frame};
use crate::store::{AppendBatch, Durable, OpRecord, StoreError};

/// First delay before retrying a failed append; doubles up to the maximum.
const RETRY_BASE: Duration = Duration::from_millis(50);
/// Longest delay between append retries.
const RETRY_MAX: Duration = Duration::from_secs(2);

pub(super) type AppendFuture = Pin<Box<dyn Future<Output = Result<Durable, StoreError>> + Send>>;

/// Ops handed to the store and not yet written (at most one batch: the
/// next starts only once this one's place in the log is settled).
pub(super) struct InFlight {
    pub(super) ops: Vec<Arc<OpRecord>>,
    pub(super) end: Revision,
    pub(super) text: Rope,
    pub(super) snapshot: bool,
    pub(super) future: AppendFuture,
    pub(super) first_failure: Option<Instant>,
    pub(super) attempt: u32,
}

/// A written batch waiting for the store's flush; then it is published.
pub(super) struct Flushing {
    pub(super) ops: Vec<Arc<OpRecord>>,
    pub(super) end: Revision,
    pub(super) text: Rope,
    pub(super) durable: Durable,
}

impl Task {
    /// Sends everything sequenced but not yet written, if no write is in
    /// flight. Batches waiting for a flush do not hold it back: that is how
    /// one flush comes to cover several batches.
    pub(super) fn start_commit(&mut self) {
        if self.in_flight.is_some() {
            return;
        }
        let written = self
            .flushing
            .back()
            .map_or(self.state.published(), |f| f.end);
        let ops = self.state.unpublished_after(written);
        let Some(last) = ops.last() else {
            return;
        };
        let end = last.rev;
        let text = self.state.head_text().clone();
        let interval = self.settings.timing.snapshot_interval.max(1);
        let snapshot = end.0 / interval > self.last_snapshot.0 / interval;
        let future = self.append_future(&ops, end, &text, snapshot, Duration::ZERO);
        self.in_flight = Some(InFlight {
            ops,
            end,
            text,
            snapshot,
            future,
            first_failure: None,
            attempt: 0,
        });
    }

    fn append_future(
        &self,
        ops: &[Arc<OpRecord>],
        end: Revision,
        text: &Rope,
        snapshot: bool,
        delay: Duration,
    ) -> AppendFuture {
        let batch = AppendBatch {
            doc: self.id.clone(),
            ops: ops.to_vec(),
            snapshot: snapshot.then(|| (end, text.clone())),
            epoch: self.epoch,
        };
        let store = Arc::clone(&self.store);
        Box::pin(async move {
            if !delay.is_zero() {
                sleep(delay).await;
            }
            store.append_ordered(batch).await
        })
    }

    /// Handles the store's answer to a write. Returns false when the task
    /// must stop.
    pub(super) fn on_written(&mut self, result: Result<Durable, StoreError>) -> bool {
        let Some(mut flight) = self.in_flight.take() else {
            return true;
        };
        match result {
            Ok(durable) => {
                if flight.snapshot {
                    self.last_snapshot = flight.end;
                }
                self.flushing.push_back(Flushing {
                    ops: flight.ops,
                    end: flight.end,
                    text: flight.text,
                    durable,
                });
                true
            }
            Err(StoreError::Unavailable(e)) => {
                let first = *flight.first_failure.get_or_insert_with(Instant::now);
                if first.elapsed() > self.settings.timing.store_retry_limit {
                    warn!(document = %self.id, error = %e, "store unavailable for too long; closing");
                    self.give_up(ErrorCode::Unavailable, CloseCode::TryAgainLater);
                    return false;
                }
                flight.attempt += 1;
                let delay = RETRY_BASE
                    .saturating_mul(1 << flight.attempt.min(6))
                    .min(RETRY_MAX);
                debug!(document = %self.id, error = %e, ?delay, "append failed; retrying");
                flight.future = self.append_future(
                    &flight.ops,
                    flight.end,
                    &flight.text,
                    flight.snapshot,
                    delay,
                );
                self.in_flight = Some(flight);
                true
            }
            Err(e @ StoreError::Conflict(_)) => {
                // Another node owns the document now: never fork; clients
                // reconnect and find the owner.
                warn!(document = %self.id, error = %e, "append refused; closing document");
                self.give_up(ErrorCode::Unavailable, CloseCode::Moved);
                self.lease_lost = true;
                false
            }
            Err(e) => {
                // The store refused the data itself: the same ops would be
                // refused again, so their senders are told not to resend
                // them (`bad_op`), and the document closes with 1011 to be
                // reloaded from what is durable.
                tracing::error!(document = %self.id, error = %e, "the store refused a batch; closing document");
                for op in &flight.ops {
                    let r = Refusal::new(ErrorCode::BadOp, "the store refused this edit");
                    self.refuse(&op.client, &r, Some(op.seq));
                }
                self.give_up(ErrorCode::Unavailable, CloseCode::InternalError);
                false
            }
        }
    }

    /// Publishes the oldest written batch once it is durable. A failed
    /// flush leaves it unknown what is on disk, so the document closes and
    /// is reloaded from the store; clients resend what was not acked, and
    /// the (client, seq) dedupe keeps anything that did land from landing
    /// twice. Returns false when the task must stop.
    pub(super) fn on_flushed(&mut self, mut result: Result<(), StoreError>) -> bool {
        // One flush usually covers several batches: publish every one that
        // is durable now, so each peer gets them in one wake-up and write.
        loop {
            if !self.publish_flushed(result) {
                return false;
            }
            match self
                .flushing
                .front_mut()
                .and_then(|f| (&mut f.durable).now_or_never())
            {
                Some(next) => result = next,
                None => return true,
            }
        }
    }

    fn publish_flushed(&mut self, result: Result<(), StoreError>) -> bool {
        let Some(batch) = self.flushing.pop_front() else {
            return true;
        };
        if let Err(e) = result {
            warn!(document = %self.id, error = %e, "flush failed; closing document");
            self.give_up(ErrorCode::Unavailable, CloseCode::TryAgainLater);
            return false;
        }
        let end = batch.end;
        self.publish(&batch.ops, end, batch.text);
        let (done, waiting) = std::mem::take(&mut self.restores)
            .into_iter()
            .partition(|(rev, _)| *rev <= end);
        self.restores = waiting;
        for (rev, reply) in done {
            let _ = reply.send(Ok(rev));
        }
        true
    }

    pub(super) fn give_up(&mut self, code: ErrorCode, close: CloseCode) {
        let frame = error_frame(code, "the document could not be saved; reconnect", None);
        self.broadcast(&frame, None);
        self.state.discard_unpublished();
        self.acks_due.clear();
        self.arrivals.clear();
        for (_, reply) in self.restores.drain(..) {
            let _ = reply.send(Err(Refusal::new(code, "the document could not be saved")));
        }
        self.kick_all(close);
    }

    /// Tells everyone about a durable batch: acks to the senders, one shared
    /// frame per op to the others, then the cursors that came with the ops.
    fn publish(&mut self, ops: &[Arc<OpRecord>], end: Revision, text: Rope) {
        let announced = self.state.publish(end, text);
        crate::metrics::ops_committed(ops.len());
        let mut full = Vec::new();
        for op in ops {
            let frame = ServerMsg::Op {
                rev: op.rev,
                client: &op.client,
                op: &op.op,
            }
            .to_frame();
            self.fanout.news(frame, Some(&op.client));
            let due = self.acks_due.remove(&op.rev);
            let author = self.fanout.get(&op.client).map(|s| s.session);
            if author.is_some() && author == due && !self.ack(&op.client, op.seq, op.rev) {
                full.push(op.client.clone());
            }
            let arrived = self.arrivals.remove(&op.rev);
            if let Some(at) = arrived.filter(|_| author.is_some() && author == due) {
                crate::metrics::acked(at);
            }
        }
        self.drop_slow(full);
        for (client, sel) in announced {
            let Some(user) = self.fanout.get(&client).map(|s| s.user.clone()) else {
                // It left between sending the op and its commit.
                self.state.clear_presence(&client);
                continue;
            };
            let frame = ServerMsg::Presence {
                client: &client,
                user: &user,
                selection: Some(&sel),
            }
            .to_frame();
            self.broadcast(&frame, Some(&client));
        }
    }
}
