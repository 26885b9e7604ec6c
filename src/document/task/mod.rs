//! The document task: the loop that owns one [`DocumentState`], talks to the
//! store, and fans out to sessions. See the module doc of `document` for the
//! order of an op's life.

mod aside;
mod commit;

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytestring::ByteString;
use ropey::Rope;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, sleep_until};
use tracing::{debug, info, warn};

use self::aside::Done;
use self::commit::{Flushing, InFlight};
use super::fanout::{Fanout, SessionEntry};
use super::state::{Dedupe, DocumentState, Refusal, StateLimits, Submission};
use super::{
    Command, DocumentHandle, Greeting, GreetingBody, JoinRequest, Joined, Owner, SessionId,
};
use crate::auth::Permission;
use crate::cluster::{ClusterError, Lease, SharedCluster};
use crate::config::{DOCUMENT_QUEUE, Settings};
use crate::ids::{ClientId, DocId, LeaseEpoch, Revision, Seq};
use crate::ot::{Selection, TextOp};
use crate::protocol::{CloseCode, ErrorCode, ServerMsg, User, WireLimits, error_frame};
use crate::store::{Durable, OpRecord, SharedStore, StoreError, now_ms};

/// Language of a document created by opening it.
pub const DEFAULT_LANGUAGE: &str = "plaintext";

/// The published state of a document, for the REST API.
#[derive(Debug, Clone)]
pub struct DocumentInfo {
    /// Published revision.
    pub rev: Revision,
    /// Language.
    pub language: String,
    /// Text at `rev` (a rope shares the document's: the caller, not the
    /// task, pays for turning it into a string).
    pub text: Rope,
}

/// How soon a renewal that failed (the coordinator did not answer) is
/// tried again, while the lease is still valid.
const RENEW_RETRY: Duration = Duration::from_millis(250);

type Renewal = Pin<Box<dyn Future<Output = Result<Option<Instant>, ClusterError>> + Send>>;

enum Event {
    Renewed(Result<Option<Instant>, ClusterError>),
    RenewDue,
    LeaseExpired,
    Written(Result<Durable, StoreError>),
    Flushed(Result<(), StoreError>),
    Command(Command),
    Done(Box<Done>),
    Shutdown,
    Idle,
    Burst,
    Stop,
    Nothing,
}

/// Spawns the task for the document `owner` holds the lease of, on the
/// current runtime. `on_exit` runs when it
/// stops, before its queue is dropped, so the registry can forget it; it
/// also runs if the task panics (from the guard's drop while the task's
/// future is torn down), so a crashed document never stays counted as open
/// or holds up shutdown. Its sessions then see their kick dropped without a
/// code and close with 1011; the next join reopens it from the store.
pub fn spawn(
    owner: Owner,
    generation: u64,
    store: SharedStore,
    settings: Arc<Settings>,
    shutdown: watch::Receiver<bool>,
    on_exit: impl FnOnce() + Send + 'static,
) -> DocumentHandle {
    let id = owner.lease.doc.clone();
    let (tx, rx) = mpsc::channel(DOCUMENT_QUEUE);
    let handle = DocumentHandle {
        id: id.clone(),
        generation,
        tx,
    };
    tokio::spawn(async move {
        let mut rx = rx;
        let mut exit = ExitGuard(Some(Box::new(on_exit)));
        let (cluster, lease) = (Arc::clone(&owner.cluster), owner.lease.clone());
        match Task::load(owner, store, settings, shutdown).await {
            Ok(task) => task.run(&mut rx).await,
            Err(e) => {
                warn!(document = %id, error = %e, "could not open document");
                cluster.release(&lease).await;
                exit.run();
                refuse_all(
                    &mut rx,
                    ErrorCode::Unavailable,
                    "the document could not be loaded",
                );
                return;
            }
        }
        exit.run();
        // Commands that raced with the exit: joiners retry and reopen.
        refuse_all(&mut rx, ErrorCode::Unavailable, "document closed; retry");
    });
    handle
}

/// Runs the registry's exit hook once: when the task ends, or when its
/// future is dropped half-way because it panicked.
struct ExitGuard(Option<Box<dyn FnOnce() + Send>>);

impl ExitGuard {
    fn run(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

impl Drop for ExitGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            tracing::error!("a document task panicked; its sessions are closed with 1011");
        }
        self.run();
    }
}

fn refuse_all(rx: &mut mpsc::Receiver<Command>, code: ErrorCode, message: &str) {
    rx.close();
    while let Ok(cmd) = rx.try_recv() {
        if let Command::Join { reply, .. } = cmd {
            let _ = reply.send(Err(Refusal::new(code, message)));
        }
    }
}

struct Task {
    id: DocId,
    /// Renews and releases `lease`.
    cluster: SharedCluster,
    /// This node's lease on the document. Past its `valid_until` the task
    /// serves nothing more: another node may own the document by then.
    lease: Lease,
    /// The epoch this task claimed the document with; every write carries
    /// it, so the store refuses them once another node has claimed it.
    epoch: LeaseEpoch,
    /// The renewal in flight, and when the next is due.
    renewal: Option<Renewal>,
    /// Renewals failed in a row (the coordinator did not answer): only the
    /// first is logged as a warning, so a Redis outage is not one line per
    /// document every 250 ms.
    renew_failures: u32,
    renew_at: Option<Instant>,
    /// The lease was lost: the document is not this node's to write now.
    lease_lost: bool,
    /// This task is counted in `tandem_leases_held` (a Redis lease, until
    /// it is released or lost).
    lease_counted: bool,
    store: SharedStore,
    settings: Arc<Settings>,
    shutdown: watch::Receiver<bool>,
    state: DocumentState,
    language: String,
    fanout: Fanout,
    in_flight: Option<InFlight>,
    /// Written batches in revision order, oldest first.
    flushing: VecDeque<Flushing>,
    last_snapshot: Revision,
    idle_since: Option<Instant>,
    closing: bool,
    /// Restores sequenced and not yet published: their revision and who to
    /// tell once it is durable.
    restores: Vec<(Revision, RestoreReply)>,
    /// Which session to ack each unpublished op to: the one that sent it,
    /// or the one that resent it after a reconnect. An op whose client has
    /// reconnected since is acked only once: to the session that asked, or
    /// by the resend's answer, or through the new session's catch-up.
    acks_due: HashMap<Revision, SessionId>,
    /// Sessions waiting for work done beside the loop, with the commands
    /// they sent meanwhile (see `aside`).
    parked: HashMap<SessionId, VecDeque<Command>>,
    /// Results of that work come back here.
    // Boxed: a channel allocates slots of its biggest message, per document.
    done_tx: mpsc::UnboundedSender<Box<Done>>,
    done_rx: mpsc::UnboundedReceiver<Box<Done>>,
    /// Language writes take turns on this, so they land in the order asked.
    language_writes: Arc<tokio::sync::Mutex<()>>,
    /// Admin deletes waiting for this task to stop (see `Command::Delete`).
    deleting: Vec<oneshot::Sender<Result<bool, StoreError>>>,
    /// When the op being handled reached its session (set per command, so
    /// work finished beside the loop has none).
    arrived: Option<std::time::Instant>,
    /// When each unpublished op reached its session, for the ack latency.
    arrivals: HashMap<Revision, std::time::Instant>,
}

type RestoreReply = oneshot::Sender<Result<Revision, Refusal>>;

impl Task {
    async fn load(
        owner: Owner,
        store: SharedStore,
        settings: Arc<Settings>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Self, StoreError> {
        let Owner { cluster, lease } = owner;
        let id = lease.doc.clone();
        if store.document(&id).await?.is_none() {
            match store.create_document(&id, DEFAULT_LANGUAGE, "").await {
                Ok(_) | Err(StoreError::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
        }
        // Claimed before anything is read: whatever an earlier owner wrote
        // is in the store by now, and it can write nothing more.
        let epoch = store.claim(&id).await?;
        let meta = store.document(&id).await?.ok_or(StoreError::NotFound)?;
        let snapshot = store
            .snapshot_at_or_before(&id, meta.rev)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("document {id} has no snapshot")))?;
        // Replayed a page at a time, keeping only the tail that fits the
        // window, so a log of huge ops is never all in memory at once.
        let limits = &settings.limits;
        let mut text = Rope::from_str(&snapshot.text);
        let mut recent: VecDeque<OpRecord> = VecDeque::new();
        let mut recent_bytes = 0usize;
        let mut at = snapshot.rev;
        while at < meta.rev {
            let page = store
                .ops(&id, at, meta.rev, crate::config::STORE_PAGE_OPS)
                .await?;
            if page.is_empty() {
                return Err(StoreError::Corrupt(format!("{id} has no op {}", at.next())));
            }
            for op in page {
                if op.rev != at.next() {
                    return Err(StoreError::Corrupt(format!("{id} has no op {}", at.next())));
                }
                op.op
                    .apply(&mut text, usize::MAX)
                    .map_err(|e| StoreError::Corrupt(format!("op {} of {id}: {e}", op.rev)))?;
                at = op.rev;
                recent_bytes += op.approx_bytes();
                recent.push_back(op);
                while recent.len() > limits.history_window
                    || (recent_bytes > limits.history_window_bytes && !recent.is_empty())
                {
                    if let Some(old) = recent.pop_front() {
                        recent_bytes -= old.approx_bytes();
                    }
                }
            }
        }
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let state = DocumentState::new(
            text,
            meta.rev,
            recent.into(),
            StateLimits {
                history_window: limits.history_window,
                history_window_bytes: limits.history_window_bytes,
                max_dedupe_clients: crate::config::MAX_DEDUPE_CLIENTS,
                max_document_chars: limits.max_document_chars,
                max_catchup_revisions: limits.max_catchup_revisions,
            },
        );
        debug!(document = %id, rev = %meta.rev, %epoch, "opened");
        let renew_at = lease
            .valid_until
            .map(|_| Instant::now() + cluster.lease_time() / 3);
        Ok(Self {
            id,
            cluster,
            lease,
            epoch,
            renewal: None,
            renew_failures: 0,
            renew_at,
            lease_lost: false,
            lease_counted: false,
            store,
            shutdown,
            state,
            language: meta.language,
            fanout: Fanout::new(
                settings.timing.outbound_coalesce,
                settings.timing.outbound_writes_per_sec,
            ),
            settings,
            in_flight: None,
            flushing: VecDeque::new(),
            last_snapshot: snapshot.rev,
            idle_since: Some(Instant::now()),
            closing: false,
            restores: Vec::new(),
            acks_due: HashMap::new(),
            parked: HashMap::new(),
            done_tx,
            done_rx,
            language_writes: Arc::new(tokio::sync::Mutex::new(())),
            deleting: Vec::new(),
            arrived: None,
            arrivals: HashMap::new(),
        })
    }

    async fn run(mut self, rx: &mut mpsc::Receiver<Command>) {
        if self.lease.valid_until.is_some() {
            self.lease_counted = true;
            crate::metrics::lease_held(1);
            crate::metrics::lease_changed("acquired");
        }
        if *self.shutdown.borrow() {
            self.closing = true;
        }
        loop {
            if self.lease_expired() {
                self.lose_lease("its lease expired before it could be renewed");
                break;
            }
            self.start_commit();
            let settled = self.in_flight.is_none()
                && self.flushing.is_empty()
                && self.state.head() == self.state.published();
            if self.closing && settled {
                break;
            }
            let idle_at = self
                .idle_since
                .filter(|_| settled && self.parked.is_empty())
                .map(|t| t + self.settings.timing.document_idle_close);
            // News goes out once the document has handled what woke it (so
            // the ops of one commit share a burst), unless its write budget
            // says wait.
            let mut burst_at = self.fanout.due();
            if burst_at.is_some_and(|at| at <= Instant::now()) {
                self.burst();
                burst_at = None;
            }
            let flight = &mut self.in_flight;
            let written = async move {
                match flight {
                    Some(f) => (&mut f.future).await,
                    None => std::future::pending().await,
                }
            };
            let oldest = self.flushing.front_mut();
            let flushed = async move {
                match oldest {
                    Some(f) => (&mut f.durable).await,
                    None => std::future::pending().await,
                }
            };
            let renew_at = self.renew_at.filter(|_| self.renewal.is_none());
            let renewal = &mut self.renewal;
            let renewed = async move {
                match renewal {
                    Some(r) => r.await,
                    None => std::future::pending().await,
                }
            };
            let expires_at = self.lease.valid_until;
            let done_rx = &mut self.done_rx;
            let shutdown = &mut self.shutdown;
            let closing = self.closing;
            let event = tokio::select! {
                // Publishing first frees clients to send their next op.
                biased;
                () = sleep_until(expires_at.unwrap_or_else(Instant::now)), if expires_at.is_some() => Event::LeaseExpired,
                result = renewed => Event::Renewed(result),
                () = sleep_until(renew_at.unwrap_or_else(Instant::now)), if renew_at.is_some() => Event::RenewDue,
                result = flushed => Event::Flushed(result),
                result = written => Event::Written(result),
                // Held news must not wait behind a busy command queue.
                () = sleep_until(burst_at.unwrap_or_else(Instant::now)), if burst_at.is_some() => Event::Burst,
                Some(done) = done_rx.recv() => Event::Done(done),
                cmd = rx.recv() => match cmd {
                    Some(cmd) => Event::Command(cmd),
                    None => Event::Stop,
                },
                changed = shutdown.changed(), if !closing => {
                    if changed.is_err() || *shutdown.borrow() { Event::Shutdown } else { Event::Nothing }
                }
                () = sleep_until(idle_at.unwrap_or_else(Instant::now)), if idle_at.is_some() => Event::Idle,
            };
            match event {
                Event::LeaseExpired => {}
                Event::RenewDue => {
                    let (cluster, lease) = (Arc::clone(&self.cluster), self.lease.clone());
                    self.renewal = Some(Box::pin(async move { cluster.renew(&lease).await }));
                }
                Event::Renewed(result) => {
                    self.renewal = None;
                    if !self.on_renewed(result) {
                        break;
                    }
                }
                Event::Written(result) => {
                    if !self.on_written(result) {
                        break;
                    }
                }
                Event::Flushed(result) => {
                    if !self.on_flushed(result) {
                        break;
                    }
                }
                Event::Command(cmd) => {
                    // Woken after a pause (SIGSTOP, a stalled VM): nothing
                    // is served on a lease that may be another's now.
                    if self.lease_expired() {
                        continue;
                    }
                    self.handle(cmd);
                }
                Event::Done(done) => self.on_done(*done),
                Event::Shutdown => {
                    self.closing = true;
                    self.kick_all(CloseCode::GoingAway);
                }
                Event::Burst => self.burst(),
                Event::Idle | Event::Stop => break,
                Event::Nothing => {}
            }
        }
        // Boxed: it runs once, and inline its state (4 KB) would be in
        // every open document's future for its whole life.
        Box::pin(self.stop()).await;
    }

    /// Final snapshot before the task ends, so reopening replays nothing,
    /// then the lease goes back so another node may take the document at
    /// once (for a deleted document, the delete instead). A task that lost
    /// its lease writes nothing more.
    async fn stop(mut self) {
        self.kick_all(CloseCode::GoingAway);
        if !self.deleting.is_empty() {
            return self.delete().await;
        }
        let rev = self.state.published();
        if self.lease_lost {
            self.uncount_lease("lost");
            debug!(document = %self.id, rev = %rev, "closed without its lease");
            return;
        }
        if rev > self.last_snapshot && self.state.head() == rev {
            let text = self.state.published_text().clone();
            match self
                .store
                .put_snapshot(&self.id, rev, text, self.epoch)
                .await
            {
                Ok(()) => self.last_snapshot = rev,
                Err(e) => warn!(document = %self.id, error = %e, "final snapshot failed"),
            }
        }
        self.release_lease().await;
        debug!(document = %self.id, rev = %rev, "closed");
    }

    /// Gives the lease back (a Redis lease; one node has nothing to give).
    async fn release_lease(&mut self) {
        if self.lease.valid_until.is_some() {
            self.cluster.release(&self.lease).await;
            self.uncount_lease("released");
        }
    }

    fn uncount_lease(&mut self, kind: &'static str) {
        if std::mem::take(&mut self.lease_counted) {
            crate::metrics::lease_held(-1);
            crate::metrics::lease_changed(kind);
        }
    }

    fn lease_expired(&self) -> bool {
        self.lease
            .valid_until
            .is_some_and(|until| Instant::now() >= until)
    }

    /// A renewal came back. False when the lease is lost (the task stops).
    fn on_renewed(&mut self, result: Result<Option<Instant>, ClusterError>) -> bool {
        match result {
            Ok(Some(until)) => {
                if std::mem::take(&mut self.renew_failures) > 0 {
                    info!(document = %self.id, "lease renewed again");
                }
                self.lease.valid_until = Some(until);
                self.renew_at = Some(Instant::now() + self.cluster.lease_time() / 3);
                true
            }
            Ok(None) => {
                self.lose_lease("another node holds its lease");
                false
            }
            Err(e) => {
                // Still ours until `valid_until`: try again soon.
                self.renew_failures += 1;
                if self.renew_failures == 1 {
                    warn!(document = %self.id, error = %e, "lease renewal failed; retrying until it expires");
                } else {
                    debug!(document = %self.id, error = %e, "lease renewal failed again");
                }
                self.renew_at = Some(Instant::now() + RENEW_RETRY);
                true
            }
        }
    }

    /// Stops serving a document this node may no longer own: nothing
    /// unpublished is written or acked (its senders resend it to the next
    /// owner, which dedupes whatever did land), and every session is told
    /// to reconnect (4409), which finds the owner.
    fn lose_lease(&mut self, why: &str) {
        warn!(document = %self.id, "{why}; closing its sessions (4409)");
        self.lease_lost = true;
        self.in_flight = None;
        self.flushing.clear();
        self.state.discard_unpublished();
        self.acks_due.clear();
        for (_, reply) in self.restores.drain(..) {
            let _ = reply.send(Err(Refusal::new(
                ErrorCode::Unavailable,
                "the document moved to another node; retry",
            )));
        }
        self.kick_all(CloseCode::Moved);
    }

    /// Deletes the document from the store, now that nothing of it is
    /// being written, and tells whoever asked. The registry still maps the
    /// id to this task until it returns, so no other task loads the
    /// document while it goes.
    async fn delete(mut self) {
        let result = self.store.delete_document(&self.id).await;
        match &result {
            Ok(_) => info!(document = %self.id, "deleted"),
            Err(e) => warn!(document = %self.id, error = %e, "delete failed"),
        }
        for reply in self.deleting.drain(..) {
            let answer = match &result {
                Ok(existed) => Ok(*existed),
                Err(e) => Err(StoreError::Unavailable(e.to_string())),
            };
            let _ = reply.send(answer);
        }
        self.release_lease().await;
    }

    fn handle(&mut self, cmd: Command) {
        let Some(cmd) = self.queue_if_parked(cmd) else {
            return;
        };
        self.arrived = match &cmd {
            Command::Op { received, .. } => Some(*received),
            _ => None,
        };
        match cmd {
            Command::Join { req, reply } => self.join(*req, reply),
            Command::Op {
                session,
                client,
                rev,
                seq,
                op,
                selection,
                ..
            } => self.op(session, client, rev, seq, *op, selection.map(|s| *s)),
            Command::Presence {
                session,
                client,
                rev,
                selection,
            } => self.presence(session, &client, rev, selection),
            Command::Language {
                session,
                client,
                language,
            } => self.set_language(session, client, language),
            Command::Leave { session, client } => self.leave(session, &client),
            Command::Info { reply } => {
                let _ = reply.send(super::DocumentInfo {
                    rev: self.state.published(),
                    language: self.language.clone(),
                    text: self.state.published_text().clone(),
                });
            }
            Command::Restore {
                target,
                author,
                reply,
            } => {
                if self.closing {
                    let _ = reply.send(Err(Refusal::new(
                        ErrorCode::Unavailable,
                        "document closing; retry",
                    )));
                    return;
                }
                self.restore_aside(target, author, reply);
            }
            Command::Permission { user, permission } => self.regrant(&user, permission),
            Command::RevokeLink { link } => {
                let gone: Vec<ClientId> = self
                    .fanout
                    .iter()
                    .filter(|(_, s)| s.rights.link.as_ref().is_some_and(|(id, _)| *id == link))
                    .map(|(c, _)| c.clone())
                    .collect();
                self.forbid(gone, "the share link was revoked");
            }
            Command::Sessions { reply } => {
                let _ = reply.send(self.sessions());
            }
            Command::Disconnect {
                client,
                code,
                reply,
            } => {
                let there = self.fanout.contains(&client);
                if there {
                    self.drop_sessions(vec![client], code);
                }
                let _ = reply.send(there);
            }
            Command::Close { code } => {
                self.closing = true;
                self.kick_all(code);
            }
            Command::Delete { reply } => {
                self.closing = true;
                self.deleting.push(reply);
                let gone: Vec<ClientId> = self.fanout.iter().map(|(c, _)| c.clone()).collect();
                let why = Refusal::new(ErrorCode::NotFound, "this document was deleted");
                for client in &gone {
                    self.refuse(client, &why, None);
                }
                self.kick_all(CloseCode::NotFound);
            }
            #[cfg(test)]
            Command::Crash => panic!("test hook: document task crash"),
        }
    }

    /// The sessions connected now, for the admin API.
    fn sessions(&self) -> Vec<super::SessionSummary> {
        self.fanout
            .iter()
            .map(|(client, s)| super::SessionSummary {
                client: client.clone(),
                user: s.user.clone(),
                subject: s.rights.subject.clone(),
                permission: s.permission.as_str(),
                ip: s.origin.ip,
                connected_ms: s.origin.connected_ms,
                last_active_ms: s
                    .origin
                    .last_active_ms
                    .load(std::sync::atomic::Ordering::Relaxed),
            })
            .collect()
    }

    /// Sequences the op a restore's diff made (against the text at `base`),
    /// as a client's op from a one-off client; `reply` is answered when it
    /// is published. Ops sequenced since `base` are concurrent with it and
    /// are transformed like any client's (they stay); with none, the result
    /// is exactly the restored text.
    fn sequence_restore(
        &mut self,
        base: Revision,
        op: TextOp,
        author: String,
        reply: RestoreReply,
    ) {
        if self.closing {
            let _ = reply.send(Err(Refusal::new(
                ErrorCode::Unavailable,
                "document closing; retry",
            )));
            return;
        }
        if !matches!(self.state.older_needed(base), Ok(None)) {
            let _ = reply.send(Err(Refusal::new(
                ErrorCode::Unavailable,
                "the document changed too much during the restore; retry",
            )));
            return;
        }
        let sub = Submission {
            client: ClientId::random(),
            seq: Seq(1),
            author,
            base,
            op,
            selection: None,
            time_ms: now_ms(),
        };
        match self.state.submit(sub, &[]) {
            Ok(record) => self.restores.push((record.rev, reply)),
            Err(r) => {
                let _ = reply.send(Err(r));
            }
        }
    }

    /// A join: at once when everything it needs is in memory, otherwise
    /// after the store reads it needs, made beside the loop.
    fn join(&mut self, req: JoinRequest, reply: oneshot::Sender<Result<Joined, Refusal>>) {
        if let Err(r) = self.may_join(req.client.as_ref()) {
            let _ = reply.send(Err(r));
            return;
        }
        if let Some(client) = req.client.clone() {
            // With users, a client id belongs to whoever wrote with it; if
            // that is not in memory, the store says.
            let need_owner = req.rights.subject.is_some() && self.owner_of(&client).is_none();
            let need_last_seq = !self.state.knows(&client) || need_owner;
            let older = req
                .rev
                .and_then(|rev| self.state.older_needed(rev).ok().flatten());
            if need_last_seq || older.is_some() {
                self.read_for_join(req, reply, client, need_last_seq, older);
                return;
            }
        }
        let result = self.finish_join(req, None, None, None);
        let _ = reply.send(result);
    }

    /// The user a client id belongs to, as far as memory knows: its
    /// session's, or the author of its latest op in the window.
    fn owner_of(&self, client: &ClientId) -> Option<String> {
        self.fanout
            .get(client)
            .and_then(|s| s.rights.subject.clone())
            .or_else(|| self.state.author_of(client).map(str::to_owned))
    }

    fn may_join(&self, client: Option<&ClientId>) -> Result<(), Refusal> {
        if self.closing {
            return Err(Refusal::new(
                ErrorCode::Unavailable,
                "server is shutting down",
            ));
        }
        if client.is_none_or(|c| !self.fanout.contains(c))
            && self.fanout.len() >= self.settings.limits.max_clients_per_document
        {
            return Err(Refusal::new(
                ErrorCode::Unavailable,
                "document has too many clients",
            ));
        }
        Ok(())
    }

    /// Completes a join with what the store said (`last_seq`: the resuming
    /// client's latest committed op, if it was read; `older`: catch-up ops
    /// read from the store). The greeting it returns is rendered by the
    /// session, so the text is never copied here.
    fn finish_join(
        &mut self,
        req: JoinRequest,
        last_seq: Option<Result<Option<(Seq, Revision)>, StoreError>>,
        older: Option<(Revision, Vec<Arc<OpRecord>>)>,
        stored_owner: Option<String>,
    ) -> Result<Joined, Refusal> {
        self.may_join(req.client.as_ref())?;
        if let (Some(client), Some(subject)) = (&req.client, &req.rights.subject) {
            let owner = self.owner_of(client).or(stored_owner);
            if owner.is_some_and(|o| o != *subject) {
                // The owner's session (if any) goes on untouched.
                return Err(Refusal::new(
                    ErrorCode::Forbidden,
                    "this client id belongs to another user",
                ));
            }
        }
        let resuming = req.client.is_some();
        let client = req.client.unwrap_or_else(ClientId::random);
        match last_seq {
            Some(Ok(Some((seq, rev)))) => self.state.remember(&client, seq, rev),
            Some(Err(e)) => return Err(self.store_refusal(&e)),
            Some(Ok(None)) | None => {}
        }
        let catch_up = match req.rev {
            Some(rev) if resuming => self.catch_up(rev, older),
            _ => None,
        };
        let color = if req.user_color.is_empty() {
            // The least-used colour among the others (a rejoin replaces its old entry).
            let others = self.fanout.iter().filter(|(c, _)| **c != client);
            super::colors::assign(others.map(|(_, s)| s.user.color.as_str()))
        } else {
            req.user_color
        };
        let user = User {
            id: req
                .rights
                .subject
                .clone()
                .unwrap_or_else(|| client.as_str().to_owned()),
            name: req.user_name,
            color,
        };
        let published = self.state.published();
        let greeting = Greeting {
            client: client.clone(),
            rev: published,
            language: self.language.clone(),
            permission: req.permission,
            peers: self
                .fanout
                .iter()
                .filter(|(c, _)| **c != client)
                .map(|(c, s)| (c.clone(), s.user.clone(), self.state.presence(c).cloned()))
                .collect(),
            body: match catch_up {
                Some(ops) => GreetingBody::Ops(ops),
                None => GreetingBody::Text(self.state.published_text().clone()),
            },
            limits: WireLimits::from(&self.settings.limits),
        };
        if req.outbound.is_closed() {
            return Err(Refusal::new(ErrorCode::Unavailable, "session closed"));
        }
        if resuming {
            // Its ops sequenced but not yet durable are not in the catch-up:
            // ack them to this session when they are published, in their
            // place in the stream, not when the resend comes (by then later
            // ops and cursors would have overtaken the ack).
            for op in self.state.unpublished_after(published) {
                if op.client == client {
                    self.acks_due.insert(op.rev, req.session);
                }
            }
        }
        let entry = SessionEntry::new(
            req.session,
            user.clone(),
            (req.permission, req.rights),
            (req.outbound, req.batch),
            req.kick,
            req.origin,
        );
        match self.fanout.insert(client.clone(), entry) {
            Some(mut old) => {
                if let Some(kick) = old.kick.take() {
                    let _ = kick.send(CloseCode::Normal);
                }
                // A client rejoins to change its name or colour.
                if old.user != user {
                    let frame = ServerMsg::Peer {
                        client: &client,
                        user: &user,
                    }
                    .to_frame();
                    self.broadcast(&frame, Some(&client));
                }
            }
            None => {
                let frame = ServerMsg::Peer {
                    client: &client,
                    user: &user,
                }
                .to_frame();
                self.broadcast(&frame, Some(&client));
            }
        }
        self.idle_since = None;
        Ok(Joined {
            client,
            user,
            greeting: Some(greeting),
        })
    }

    /// The ops from `rev` to the published revision, or `None` when they
    /// cannot be served (then the client gets the full text): from memory,
    /// after `older` (read from the store up to its revision) if given.
    fn catch_up(
        &self,
        rev: Revision,
        older: Option<(Revision, Vec<Arc<OpRecord>>)>,
    ) -> Option<Vec<Arc<OpRecord>>> {
        let published = self.state.published();
        match older {
            Some((upto, mut ops)) => {
                // The window may have moved on while the store was read.
                ops.extend(self.state.ops_between(upto, published)?);
                Some(ops)
            }
            None => match self.state.older_needed(rev) {
                Ok(None) => self.state.ops_between(rev, published),
                _ => None,
            },
        }
    }

    /// Acks `seq` as `rev` to the client's session, after the news queued
    /// before it, and remembers it was acked. False when its queue is full.
    fn ack(&mut self, client: &ClientId, seq: Seq, rev: Revision) -> bool {
        if let Some(s) = self.fanout.get_mut(client) {
            s.acked = s.acked.max(Some(seq));
        }
        self.fanout
            .reply(client, ServerMsg::Ack { seq, rev }.to_frame())
    }

    /// The refusal a client gets when the store failed it: the store's
    /// own text goes to the log, the client gets a stable message.
    fn store_refusal(&self, e: &StoreError) -> Refusal {
        match e {
            StoreError::Corrupt(_) | StoreError::Invalid(_) => {
                tracing::error!(document = %self.id, error = %e, "store error");
            }
            _ => warn!(document = %self.id, error = %e, "store error"),
        }
        Refusal::new(ErrorCode::Unavailable, e.public_message())
    }

    fn send_to(&mut self, client: &ClientId, frame: ByteString) {
        if !self.fanout.reply(client, frame) {
            self.drop_slow(vec![client.clone()]);
        }
    }

    fn refuse(&mut self, client: &ClientId, refusal: &Refusal, seq: Option<Seq>) {
        self.send_to(client, error_frame(refusal.code, &refusal.message, seq));
    }

    /// An op from a session: answered at once when it is a resend, else
    /// sequenced (see [`Self::sequence`]).
    fn op(
        &mut self,
        session: SessionId,
        client: ClientId,
        rev: Revision,
        seq: Seq,
        op: TextOp,
        selection: Option<Selection>,
    ) {
        let Some(entry) = self.fanout.get(&client).filter(|s| s.session == session) else {
            return;
        };
        if !entry.permission.allows(Permission::Write) {
            let r = Refusal::new(ErrorCode::Forbidden, "read-only access");
            return self.refuse(&client, &r, Some(seq));
        }
        match self.state.dedupe(&client, seq, rev) {
            Dedupe::Seen(committed) => {
                // Resent: ack now if durable, else the publish will ack it
                // (to this session, not the one that first sent it). A
                // resumed session may have been acked at the publish already
                // (see `finish_join`): then the resend needs no answer.
                let acked = self
                    .fanout
                    .get(&client)
                    .and_then(|s| s.acked)
                    .is_some_and(|a| a >= seq);
                if committed > self.state.published() {
                    self.acks_due.insert(committed, session);
                } else if !acked && !self.ack(&client, seq, committed) {
                    self.drop_slow(vec![client.clone()]);
                }
            }
            // Older than what is in memory: the store knows.
            Dedupe::Older => self.find_aside(session, client, seq, None),
            Dedupe::Unknown => {
                self.find_aside(session, client, seq, Some((rev, op, selection)));
            }
            Dedupe::New => self.sequence(session, client, rev, seq, op, selection),
        }
    }

    /// Transforms a new op to the head, applies it and gives it the next
    /// revision; its ack waits for the store. An op based before the window
    /// is first moved through the store's ops beside the loop, then comes
    /// back here through `op` (its dedupe checked again).
    fn sequence(
        &mut self,
        session: SessionId,
        client: ClientId,
        rev: Revision,
        seq: Seq,
        op: TextOp,
        selection: Option<Selection>,
    ) {
        match self.state.older_needed(rev) {
            Ok(None) => {}
            Ok(Some(range)) => {
                if let Some(sel) = &selection
                    && !sel.fits(op.target_len())
                {
                    let r =
                        Refusal::new(ErrorCode::BadMessage, "selection is outside the document");
                    return self.refuse(&client, &r, Some(seq));
                }
                return self.rebase_aside(session, client, seq, range, op, selection);
            }
            Err(r) => return self.refuse(&client, &r, Some(seq)),
        }
        // The author is the user as the server knows them: their id with
        // identities, else the display name they chose.
        let author = self
            .fanout
            .get(&client)
            .map(|s| {
                s.rights
                    .subject
                    .clone()
                    .unwrap_or_else(|| s.user.name.clone())
            })
            .unwrap_or_default();
        let sub = Submission {
            client: client.clone(),
            seq,
            author,
            base: rev,
            op,
            selection,
            time_ms: now_ms(),
        };
        match self.state.submit(sub, &[]) {
            Ok(record) => {
                self.acks_due.insert(record.rev, session);
                if let Some(at) = self.arrived.take() {
                    self.arrivals.insert(record.rev, at);
                }
            }
            Err(r) => self.refuse(&client, &r, Some(seq)),
        }
    }

    fn presence(
        &mut self,
        session: SessionId,
        client: &ClientId,
        rev: Revision,
        selection: Option<Selection>,
    ) {
        let Some(entry) = self.fanout.get(client).filter(|s| s.session == session) else {
            return;
        };
        let user = entry.user.clone();
        match self.state.set_presence(client, rev, selection) {
            Ok(sel) => {
                let frame = ServerMsg::Presence {
                    client,
                    user: &user,
                    selection: sel,
                }
                .to_frame();
                self.broadcast(&frame, Some(client));
            }
            Err(r) => self.refuse(client, &r, None),
        }
    }

    fn set_language(&mut self, session: SessionId, client: ClientId, language: String) {
        let Some(entry) = self.fanout.get(&client).filter(|s| s.session == session) else {
            return;
        };
        if !entry.permission.allows(Permission::Write) {
            let r = Refusal::new(ErrorCode::Forbidden, "read-only access");
            return self.refuse(&client, &r, None);
        }
        self.language_aside(session, client, language);
    }

    /// A language write came back: on success everyone else is told.
    fn language_written(
        &mut self,
        _session: SessionId,
        client: &ClientId,
        language: String,
        result: Result<(), StoreError>,
    ) {
        if let Err(e) = result {
            let r = self.store_refusal(&e);
            return self.refuse(client, &r, None);
        }
        self.language = language;
        let frame = ServerMsg::Language {
            language: &self.language,
            client,
        }
        .to_frame();
        self.broadcast(&frame, Some(client));
    }

    /// A user's grant is now `granted`: each of their signed-in sessions
    /// gets that (or what its link gives, if more), or is closed.
    fn regrant(&mut self, user: &str, granted: Option<Permission>) {
        let mut gone = Vec::new();
        for (client, s) in self.fanout.iter_mut() {
            let r = &s.rights;
            if !r.signed_in || r.admin || r.subject.as_deref() != Some(user) {
                continue;
            }
            match granted.max(r.link.as_ref().map(|(_, p)| *p)) {
                Some(p) => s.permission = p,
                None => gone.push(client.clone()),
            }
        }
        self.forbid(gone, "your access to this document was revoked");
    }

    /// Closes sessions that lost their right: `error forbidden`, then 4403.
    fn forbid(&mut self, gone: Vec<ClientId>, why: &str) {
        for client in &gone {
            self.refuse(client, &Refusal::new(ErrorCode::Forbidden, why), None);
        }
        if !gone.is_empty() {
            self.drop_sessions(gone, CloseCode::Forbidden);
        }
    }

    fn leave(&mut self, session: SessionId, client: &ClientId) {
        if self
            .fanout
            .get(client)
            .is_some_and(|s| s.session == session)
        {
            self.drop_sessions(vec![client.clone()], CloseCode::Normal);
        }
    }

    /// Removes sessions, tells them to close, and tells the rest they left
    /// (at the next burst, which drops in turn anyone who cannot take it).
    fn drop_sessions(&mut self, gone: Vec<ClientId>, code: CloseCode) {
        for client in gone {
            if let Some(mut s) = self.fanout.remove(&client) {
                if let Some(kick) = s.kick.take() {
                    let _ = kick.send(code);
                }
                self.state.clear_presence(&client);
                let frame = ServerMsg::Leave { client: &client }.to_frame();
                self.fanout.news(frame, None);
            }
        }
        if self.fanout.is_empty() && self.idle_since.is_none() {
            self.idle_since = Some(Instant::now());
        }
    }

    /// Queues one frame for every session but `except` (see [`Fanout`]);
    /// drops the ones that cannot take it.
    fn broadcast(&mut self, frame: &ByteString, except: Option<&ClientId>) {
        self.fanout.news(frame.clone(), except);
    }

    /// Sends the news held back for coalescing.
    fn burst(&mut self) {
        let full = self.fanout.burst();
        self.drop_slow(full);
    }

    /// Drops the sessions whose queue is full (close 1013): a slow reader
    /// never slows the document or grows its memory.
    fn drop_slow(&mut self, mut full: Vec<ClientId>) {
        if full.is_empty() {
            return;
        }
        full.sort();
        full.dedup();
        crate::metrics::outbound_dropped(full.len());
        info!(document = %self.id, clients = full.len(), "dropping clients that cannot keep up");
        self.drop_sessions(full, CloseCode::TryAgainLater);
    }

    /// Closes every session, after the news queued for it.
    fn kick_all(&mut self, code: CloseCode) {
        for mut s in self.fanout.take_all() {
            if let Some(kick) = s.kick.take() {
                let _ = kick.send(code);
            }
        }
    }
}
