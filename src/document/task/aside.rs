//! Work the document task hands off so that its loop never waits on I/O
//! that other clients do not need: store reads for one client (catch-up, an
//! op based far behind, the answer to an old resend, a resumed client's
//! last seq), the language write, and the diff of a restore. Each runs in a
//! task of its own and comes back to the loop as a [`Done`]; the loop stays
//! the only writer of the document's state and re-checks what may have
//! moved meanwhile when a result arrives.
//!
//! A session with work outstanding is *parked*: its later commands wait,
//! in order, until the result is in, so one client's messages are still
//! handled in the order it sent them, while every other session goes on.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::{RestoreReply, Task};
use crate::document::state::rebase_through;
use crate::document::{Command, JoinRequest, Joined, Refusal, SessionId};
use crate::ids::{ClientId, DocId, Revision, Seq};
use crate::ot::{Selection, TextOp};
use crate::protocol::ErrorCode;
use crate::store::{OpRecord, SharedStore, StoreError};

/// A result of work done beside the loop.
pub(super) enum Done {
    /// What a resuming join needed from the store.
    Join {
        req: JoinRequest,
        reply: oneshot::Sender<Result<Joined, Refusal>>,
        /// The client's latest committed `(seq, rev)`, if it was asked for.
        last_seq: Option<Result<Option<(Seq, Revision)>, StoreError>>,
        /// The author of that op: who the client id belongs to.
        owner: Option<String>,
        /// Ops `(after, upto]` read from the store for the catch-up, or
        /// `None` when they cannot be served (too many bytes, a gap): then
        /// the client gets the text.
        older: Option<(Revision, Vec<Arc<OpRecord>>)>,
    },
    /// An op based before the window, moved through the store's ops up to
    /// `upto` (where the window began when the read started).
    Rebased {
        session: SessionId,
        client: ClientId,
        seq: Seq,
        result: Result<(Revision, TextOp, Option<Selection>), Refusal>,
    },
    /// The answer to a resend older than the dedupe memory, with the op to
    /// sequence when it turns out new (a client the memory had forgotten).
    Found {
        session: SessionId,
        client: ClientId,
        seq: Seq,
        result: Result<Option<Revision>, StoreError>,
        if_new: Option<(Revision, TextOp, Option<Selection>)>,
    },
    /// The language is written (or not).
    Language {
        session: SessionId,
        client: ClientId,
        language: String,
        result: Result<(), StoreError>,
    },
    /// The op that turns the text at `base` into a restore's target.
    Restore {
        base: Revision,
        op: TextOp,
        author: String,
        reply: RestoreReply,
    },
}

impl Done {
    /// The session parked while this was done, if one was.
    pub(super) fn session(&self) -> Option<SessionId> {
        match self {
            Self::Join { req, .. } => Some(req.session),
            Self::Rebased { session, .. }
            | Self::Found { session, .. }
            | Self::Language { session, .. } => Some(*session),
            Self::Restore { .. } => None,
        }
    }
}

/// Reads `(after, upto]` in pages, keeping at most `budget` bytes of ops.
/// `None` when that is not enough or the log has a gap.
pub(super) async fn read_ops(
    store: &SharedStore,
    id: &DocId,
    after: Revision,
    upto: Revision,
    budget: usize,
) -> Result<Option<Vec<Arc<OpRecord>>>, StoreError> {
    let mut out = Vec::new();
    let mut bytes = 0usize;
    let mut at = after;
    while at < upto {
        let page = store
            .ops(id, at, upto, crate::config::STORE_PAGE_OPS)
            .await?;
        if page.is_empty() {
            return Ok(None);
        }
        for op in page {
            bytes = bytes.saturating_add(op.approx_bytes());
            if op.rev != at.next() || bytes > budget {
                return Ok(None);
            }
            at = op.rev;
            out.push(Arc::new(op));
        }
    }
    Ok(Some(out))
}

/// Moves `op` (based on `after`) through the store's ops `(after, upto]`,
/// a page at a time, checking first that it applies at `after`.
async fn rebase_from_store(
    store: &SharedStore,
    id: &DocId,
    after: Revision,
    upto: Revision,
    mut op: TextOp,
    mut selection: Option<Selection>,
) -> Result<(Revision, TextOp, Option<Selection>), Refusal> {
    let unavailable = |e: StoreError| {
        tracing::warn!(document = %id, error = %e, "store error");
        Refusal::new(ErrorCode::Unavailable, e.public_message())
    };
    let gap = || {
        Refusal::new(
            ErrorCode::UnknownRev,
            format!("history before revision {after} is not available"),
        )
    };
    let mut at = after;
    while at < upto {
        let page = store
            .ops(id, at, upto, crate::config::STORE_PAGE_OPS)
            .await
            .map_err(unavailable)?;
        let first = page.first().ok_or_else(gap)?;
        if first.rev != at.next() {
            return Err(gap());
        }
        if at == after && first.op.base_len() != op.base_len() {
            return Err(crate::ot::OtError::LengthMismatch {
                op_len: op.base_len(),
                doc_len: first.op.base_len(),
            }
            .into());
        }
        if page.windows(2).any(|w| w[1].rev != w[0].rev.next()) {
            return Err(gap());
        }
        (op, selection) = rebase_through(op, selection, &page)?;
        at = page.last().map_or(at, |o| o.rev);
    }
    Ok((at, op, selection))
}

impl Task {
    /// The channel results come back on, for a new piece of work.
    fn done_tx(&self) -> mpsc::UnboundedSender<Box<Done>> {
        self.done_tx.clone()
    }

    /// Parks `session` until its work is done.
    fn park(&mut self, session: SessionId) {
        self.parked.entry(session).or_default();
    }

    /// True (and `cmd` queued) when its session waits for work.
    pub(super) fn queue_if_parked(&mut self, cmd: Command) -> Option<Command> {
        let session = match &cmd {
            Command::Join { req, .. } => Some(req.session),
            Command::Op { session, .. }
            | Command::Presence { session, .. }
            | Command::Language { session, .. }
            | Command::Leave { session, .. } => Some(*session),
            _ => None,
        };
        match session.and_then(|s| self.parked.get_mut(&s)) {
            Some(queue) => {
                queue.push_back(cmd);
                None
            }
            None => Some(cmd),
        }
    }

    /// Starts the store reads a resuming join needs.
    pub(super) fn read_for_join(
        &mut self,
        req: JoinRequest,
        reply: oneshot::Sender<Result<Joined, Refusal>>,
        client: ClientId,
        need_last_seq: bool,
        older: Option<(Revision, Revision)>,
    ) {
        self.park(req.session);
        let (store, id, tx) = (Arc::clone(&self.store), self.id.clone(), self.done_tx());
        let budget = self.settings.limits.max_catchup_bytes;
        tokio::spawn(async move {
            let last_seq = if need_last_seq {
                Some(store.last_seq(&id, &client).await)
            } else {
                None
            };
            let owner = match &last_seq {
                Some(Ok(Some((_, rev)))) if rev.0 > 0 => store
                    .ops(&id, Revision(rev.0 - 1), *rev, 1)
                    .await
                    .ok()
                    .and_then(|ops| ops.into_iter().next())
                    .map(|op| op.author),
                _ => None,
            };
            let older = match older {
                Some((after, upto)) => match read_ops(&store, &id, after, upto, budget).await {
                    Ok(Some(ops)) => Some((upto, ops)),
                    Ok(None) => None,
                    Err(e) => {
                        tracing::warn!(document = %id, error = %e, "catch-up read failed; sending the text");
                        None
                    }
                },
                None => None,
            };
            let _ = tx.send(Box::new(Done::Join {
                req,
                reply,
                last_seq,
                owner,
                older,
            }));
        });
    }

    /// Starts moving an op based before the window through the store's ops.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn rebase_aside(
        &mut self,
        session: SessionId,
        client: ClientId,
        seq: Seq,
        (after, upto): (Revision, Revision),
        op: TextOp,
        selection: Option<Selection>,
    ) {
        self.park(session);
        let (store, id, tx) = (Arc::clone(&self.store), self.id.clone(), self.done_tx());
        tokio::spawn(async move {
            let result = rebase_from_store(&store, &id, after, upto, op, selection).await;
            let _ = tx.send(Box::new(Done::Rebased {
                session,
                client,
                seq,
                result,
            }));
        });
    }

    /// Starts looking up an old `(client, seq)` in the store; `if_new` is
    /// the op to sequence if it is not there.
    pub(super) fn find_aside(
        &mut self,
        session: SessionId,
        client: ClientId,
        seq: Seq,
        if_new: Option<(Revision, TextOp, Option<Selection>)>,
    ) {
        self.park(session);
        let (store, id, tx) = (Arc::clone(&self.store), self.id.clone(), self.done_tx());
        tokio::spawn(async move {
            let result = store.find_op(&id, &client, seq).await;
            let _ = tx.send(Box::new(Done::Found {
                session,
                client,
                seq,
                result,
                if_new,
            }));
        });
    }

    /// Starts writing a language change. Writes are made one at a time, in
    /// the order asked, so the store and the document agree on the last.
    pub(super) fn language_aside(
        &mut self,
        session: SessionId,
        client: ClientId,
        language: String,
    ) {
        self.park(session);
        let (store, id, tx) = (Arc::clone(&self.store), self.id.clone(), self.done_tx());
        let order = Arc::clone(&self.language_writes);
        let epoch = self.epoch;
        tokio::spawn(async move {
            let _turn = order.lock().await;
            let result = store.set_language(&id, &language, epoch).await;
            let _ = tx.send(Box::new(Done::Language {
                session,
                client,
                language,
                result,
            }));
        });
    }

    /// Starts the diff of a restore against the published text, on the
    /// blocking pool (it is bounded by `history::DIFF_DEADLINE`).
    pub(super) fn restore_aside(&mut self, target: String, author: String, reply: RestoreReply) {
        let base = self.state.published();
        let text = self.state.published_text().clone();
        let tx = self.done_tx();
        tokio::task::spawn_blocking(move || {
            let current = text.to_string();
            let op = crate::history::diff_op(&current, &target);
            let _ = tx.send(Box::new(Done::Restore {
                base,
                op,
                author,
                reply,
            }));
        });
    }

    /// Takes a result in, then the commands its session sent meanwhile.
    pub(super) fn on_done(&mut self, done: Done) {
        self.arrived = None;
        let session = done.session();
        match done {
            Done::Join {
                req,
                reply,
                last_seq,
                owner,
                older,
            } => {
                let result = self.finish_join(req, last_seq, older, owner);
                let _ = reply.send(result);
            }
            Done::Rebased {
                session,
                client,
                seq,
                result,
            } => match result {
                Ok((base, op, selection)) => self.op(session, client, base, seq, op, selection),
                Err(r) => self.refuse(&client, &r, Some(seq)),
            },
            Done::Found {
                session,
                client,
                seq,
                result: Ok(None),
                if_new: Some((rev, op, selection)),
            } => {
                // Not in the store: new, unless this client's memory came
                // back meanwhile (then `op` answers it as it would now).
                let connected = self
                    .fanout
                    .get(&client)
                    .is_some_and(|s| s.session == session);
                let now = self.state.dedupe(&client, seq, Revision(u64::MAX));
                if connected && now == crate::document::Dedupe::New {
                    self.sequence(session, client, rev, seq, op, selection);
                } else {
                    self.op(session, client, rev, seq, op, selection);
                }
            }
            Done::Found {
                client,
                seq,
                result,
                ..
            } => match result {
                Ok(Some(committed)) => {
                    if !self.ack(&client, seq, committed) {
                        self.drop_slow(vec![client]);
                    }
                }
                Ok(None) => self.refuse(
                    &client,
                    &Refusal::new(ErrorCode::BadMessage, "seq is lower than one already used"),
                    Some(seq),
                ),
                Err(e) => {
                    let r = self.store_refusal(&e);
                    self.refuse(&client, &r, Some(seq));
                }
            },
            Done::Language {
                session,
                client,
                language,
                result,
            } => self.language_written(session, &client, language, result),
            Done::Restore {
                base,
                op,
                author,
                reply,
            } => self.sequence_restore(base, op, author, reply),
        }
        if let Some(session) = session {
            self.unpark(session);
        }
    }

    /// Handles what `session` sent while parked, until it parks again.
    fn unpark(&mut self, session: SessionId) {
        let Some(mut queue) = self.parked.remove(&session) else {
            return;
        };
        while let Some(cmd) = queue.pop_front() {
            if let Some(waiting) = self.parked.get_mut(&session) {
                waiting.push_back(cmd);
                waiting.extend(queue);
                return;
            }
            self.handle(cmd);
        }
    }
}
