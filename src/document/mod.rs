//! One document's single writer: a task that owns its [`DocumentState`],
//! takes commands from sessions over a bounded channel, persists through the
//! store, and fans committed ops out to the sessions.
//!
//! The order of one op's life, which is what makes "ack means durable" hold:
//!
//! 1. `Command::Op` arrives; the op is sequenced and applied in memory
//!    (`head` moves on). Nobody is told yet.
//! 2. When no write is in flight, every op sequenced but not yet sent to the
//!    store goes out as one batch (group commit sized by what is waiting).
//!    Once the store has written it in order, the next batch may be written
//!    while this one is being flushed to disk.
//! 3. When the store says the batch is durable, it is published: `ack` to
//!    each sender at once, `op` to everyone else (one serialised frame
//!    shared by all, coalesced per interval on a busy document: see
//!    `fanout`), then the cursors that came with the ops.
//!
//! A session whose outbound queue is full (in messages or in bytes, see
//! `outbound`) is dropped with close 1013: a slow reader never slows the
//! task or grows its memory.

pub mod batch;
mod colors;
mod fanout;
mod outbound;
mod state;
mod task;

pub use outbound::{Outbound, OutboundReceiver, Queued, TryRecvError, TrySendError, outbound};
pub use state::{Dedupe, DocumentState, Refusal, StateLimits, Submission};
pub use task::{DEFAULT_LANGUAGE, DocumentInfo, spawn};

use bytestring::ByteString;
use tokio::sync::{mpsc, oneshot};

use crate::auth::Permission;
use crate::ids::{ClientId, DocId, Revision, Seq};
use crate::ot::{Selection, TextOp};
use crate::protocol::{
    CatchUpOp, CloseCode, PROTOCOL_VERSION, PeerInfo, ServerMsg, User, WireLimits,
};

/// Identifies one WebSocket session, so that a late `Leave` from a replaced
/// session does not remove its successor.
pub type SessionId = u64;

/// How the document tells a session to close (its queue may be full, so
/// this goes beside it).
pub type Kick = oneshot::Sender<CloseCode>;

/// A session's request to join.
pub struct JoinRequest {
    /// The session.
    pub session: SessionId,
    /// Client id to resume, if any.
    pub client: Option<ClientId>,
    /// Last revision the client applied, if resuming.
    pub rev: Option<Revision>,
    /// Who the user is (validated by the session).
    pub user_name: String,
    /// Their colour (validated), or empty to pick one from the client id.
    pub user_color: String,
    /// What the session may do.
    pub permission: Permission,
    /// Whose session it is, as the server knows it (`None` in open mode):
    /// the user's id in `user.id`, the author of its ops, the owner of its
    /// client id.
    pub rights: SessionRights,
    /// Frames to the client.
    pub outbound: Outbound,
    /// The client takes several messages in one frame ([`batch`]): news
    /// may come to it as one array, built once for every such session.
    pub batch: bool,
    /// Closes the session.
    pub kick: Kick,
    /// Where and since when it is connected (for the admin API).
    pub origin: SessionOrigin,
}

/// Where a session comes from and how lately it was heard, for the admin
/// API's listing of who is connected. Nothing decides on it.
#[derive(Debug, Clone, Default)]
pub struct SessionOrigin {
    /// The client's address (with `--trust-forwarded-for`, what the proxy
    /// in front said), if known.
    pub ip: Option<std::net::IpAddr>,
    /// When its WebSocket was accepted, Unix milliseconds.
    pub connected_ms: i64,
    /// When the session last received a message from its client (a
    /// protocol message, not a ping or pong), Unix milliseconds. The session
    /// writes it, the document reads it when asked: an atomic, so neither
    /// waits on the other.
    pub last_active_ms: std::sync::Arc<std::sync::atomic::AtomicI64>,
}

impl SessionOrigin {
    /// A session accepted now from `ip`.
    pub fn now(ip: Option<std::net::IpAddr>) -> Self {
        let now = crate::store::now_ms();
        Self {
            ip,
            connected_ms: now,
            last_active_ms: std::sync::Arc::new(std::sync::atomic::AtomicI64::new(now)),
        }
    }

    /// Notes that the client was heard from now.
    pub fn touch(&self) {
        self.last_active_ms
            .store(crate::store::now_ms(), std::sync::atomic::Ordering::Relaxed);
    }
}

/// One session of a document as the admin API lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SessionSummary {
    /// Its client id.
    pub client: ClientId,
    /// The user as peers see it (`id` is the token's `sub`, or the client
    /// id in open mode).
    pub user: User,
    /// Whose session it is as the server knows it: a token's `sub`, or
    /// `link:<id>` for a guest with only a share link; `None` in open mode.
    pub subject: Option<String>,
    /// What it may do now: `read`, `write` or `admin`.
    pub permission: &'static str,
    /// The client's address, if known.
    pub ip: Option<std::net::IpAddr>,
    /// When its WebSocket was accepted, Unix milliseconds.
    pub connected_ms: i64,
    /// When the server last received a message from it, Unix milliseconds.
    pub last_active_ms: i64,
}

/// What a joined session learns.
#[derive(Debug, Clone)]
pub struct Joined {
    /// Its client id.
    pub client: ClientId,
    /// The user as the server knows it.
    pub user: User,
    /// The `joined` message, for the session to render and write before
    /// anything the document queues for it; taken once written.
    pub greeting: Option<Greeting>,
}

/// The parts of a `joined` message. The session serialises it on its own
/// thread, so the document task never copies the text (a rope clone shares
/// it) or serialises a long catch-up while other clients wait.
#[derive(Debug, Clone)]
pub struct Greeting {
    /// The client's id.
    pub client: ClientId,
    /// The published revision the client is at after this message.
    pub rev: Revision,
    /// The document's language.
    pub language: String,
    /// `read`, `write` or `admin`.
    pub permission: Permission,
    /// The other sessions, with their cursors at `rev`.
    pub peers: Vec<(ClientId, User, Option<Selection>)>,
    /// The text at `rev`, or the ops that bring the client to it.
    pub body: GreetingBody,
    /// What the client must keep to.
    pub limits: WireLimits,
}

/// The state part of a greeting.
#[derive(Debug, Clone)]
pub enum GreetingBody {
    /// The whole text.
    Text(ropey::Rope),
    /// Catch-up ops, in order.
    Ops(Vec<std::sync::Arc<crate::store::OpRecord>>),
}

impl Greeting {
    /// The `joined` frame.
    pub fn to_frame(&self) -> ByteString {
        let peers = self
            .peers
            .iter()
            .map(|(client, user, selection)| PeerInfo {
                client,
                user,
                selection: selection.as_ref(),
            })
            .collect();
        let (text, ops) = match &self.body {
            GreetingBody::Text(rope) => (Some(rope.to_string()), None),
            GreetingBody::Ops(ops) => (
                None,
                Some(
                    ops.iter()
                        .map(|o| CatchUpOp {
                            rev: o.rev,
                            client: &o.client,
                            op: &o.op,
                        })
                        .collect(),
                ),
            ),
        };
        ServerMsg::Joined {
            client: &self.client,
            rev: self.rev,
            language: &self.language,
            permission: self.permission.as_str(),
            peers,
            text,
            ops,
            protocol: PROTOCOL_VERSION,
            limits: self.limits,
        }
        .to_frame()
    }
}

/// Commands to a document task.
pub enum Command {
    /// Join or resume; `joined` is sent on the outbound queue.
    Join {
        /// The request (boxed: it is the biggest command by far, and every
        /// document's queue allocates slots of the biggest).
        req: Box<JoinRequest>,
        /// The outcome.
        reply: oneshot::Sender<Result<Joined, Refusal>>,
    },
    /// Submit an op.
    Op {
        /// The session.
        session: SessionId,
        /// Its client.
        client: ClientId,
        /// Base revision.
        rev: Revision,
        /// Client counter.
        seq: Seq,
        /// The parsed op (boxed, with the cursors: every document's queue
        /// allocates its slots at the size of the biggest command).
        op: Box<TextOp>,
        /// Cursors after it.
        selection: Option<Box<Selection>>,
        /// When the session received it (for the ack latency metric).
        received: std::time::Instant,
    },
    /// Move cursors.
    Presence {
        /// The session.
        session: SessionId,
        /// Its client.
        client: ClientId,
        /// The revision they are at.
        rev: Revision,
        /// The cursors, or none.
        selection: Option<Selection>,
    },
    /// Change the language.
    Language {
        /// The session.
        session: SessionId,
        /// Its client.
        client: ClientId,
        /// Validated language id.
        language: String,
    },
    /// The session ended.
    Leave {
        /// The session.
        session: SessionId,
        /// Its client.
        client: ClientId,
    },
    /// Read the published state (REST).
    Info {
        /// The answer.
        reply: oneshot::Sender<DocumentInfo>,
    },
    /// Make the text equal to `target` again with one new op, diffed
    /// against the head text and sequenced like a client's op; answered
    /// with its revision once it is published (durable).
    Restore {
        /// The text to restore (read from history by the caller).
        target: String,
        /// Recorded as the op's author.
        author: String,
        /// The revision of the restoring op, or why it was refused.
        reply: oneshot::Sender<Result<Revision, Refusal>>,
    },
    /// A user's grant changed: their sessions get `permission` (with what
    /// a share link gives them on top), or are closed with 4403 for none.
    Permission {
        /// The user id.
        user: String,
        /// Their right now, from grants and the default.
        permission: Option<Permission>,
    },
    /// A share link was revoked: the sessions that came through it close
    /// with 4403.
    RevokeLink {
        /// The link's id.
        link: String,
    },
    /// Admin: the sessions connected now.
    Sessions {
        /// The answer.
        reply: oneshot::Sender<Vec<SessionSummary>>,
    },
    /// Admin: closes one client's session with `code`; answered whether it
    /// was connected.
    Disconnect {
        /// The client.
        client: ClientId,
        /// The close code it gets.
        code: CloseCode,
        /// Whether it was connected.
        reply: oneshot::Sender<bool>,
    },
    /// Admin: closes every session with `code` and stops the task once its
    /// pending commits are durable (with its final snapshot, as when idle).
    /// Joins meanwhile are refused `unavailable`; the next one after the
    /// task ended reopens the document from the store.
    Close {
        /// The close code every session gets.
        code: CloseCode,
    },
    /// Admin: the document is deleted. Every session gets `error not_found`
    /// and close 4404, joins are refused, the commits already under way
    /// finish, no final snapshot is written; then the task deletes the
    /// document from the store (while it still holds the id, so no other
    /// task can open it meanwhile), answers, and stops.
    Delete {
        /// What [`crate::store::Store::delete_document`] answered.
        reply: oneshot::Sender<Result<bool, crate::store::StoreError>>,
    },
    /// Test hook: the task panics, as a bug would make it.
    #[cfg(test)]
    Crash,
}

/// Where a session's rights come from, so that a change to a grant or a
/// link reaches exactly the sessions it concerns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionRights {
    /// The user id (`None` in open mode: no users).
    pub subject: Option<String>,
    /// A server admin: grants do not change what it may do.
    pub admin: bool,
    /// The id of the share link it came with, and what that gives.
    pub link: Option<(String, Permission)>,
    /// Whether grants apply (a signed-in user, not a link guest).
    pub signed_in: bool,
}

/// What a document task needs to own its document: the lease this node
/// took, and the cluster to renew and release it with.
pub struct Owner {
    /// Renews and releases the lease.
    pub cluster: crate::cluster::SharedCluster,
    /// This node's lease on the document.
    pub lease: crate::cluster::Lease,
}

/// A handle to a running document task.
#[derive(Clone)]
pub struct DocumentHandle {
    /// The document.
    pub id: DocId,
    /// Which incarnation of the task: the registry removes a closed task's
    /// entry only if it is still this one.
    pub generation: u64,
    tx: mpsc::Sender<Command>,
}

/// The task has stopped (closed for idleness or failure); open it again.
#[derive(Debug, thiserror::Error)]
#[error("document task stopped")]
pub struct Stopped;

impl DocumentHandle {
    /// Sends a command, waiting for room in the queue (back-pressure).
    ///
    /// # Errors
    ///
    /// [`Stopped`] when the task has ended.
    pub async fn send(&self, cmd: Command) -> Result<(), Stopped> {
        self.tx.send(cmd).await.map_err(|_| Stopped)
    }

    /// True when the task has ended.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Waits until the task has ended (at once if it has).
    pub async fn closed(&self) {
        self.tx.closed().await;
    }
}
