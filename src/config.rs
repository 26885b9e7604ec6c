//! Server settings: every limit and timeout, as a named default with the
//! reason for its value. `tandem serve` can override each one.

use std::time::Duration;

/// Largest WebSocket message accepted, in bytes. A big paste (a whole source
/// file) must fit; anything larger is refused with `too_large` before it is
/// parsed, so JSON parsing never sees more than this.
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;
/// Largest document, in characters. Keeps one document's memory (rope,
/// snapshots, a full-text `joined`) within a few tens of MB.
pub const MAX_DOCUMENT_CHARS: usize = 8 * 1024 * 1024;
/// Most components in one op. Keystrokes have 1-3; a multi-cursor edit or a
/// restore may have thousands. Bounds the work of transforming one op.
pub const MAX_OP_COMPONENTS: usize = 20_000;
/// Most characters one op may insert.
pub const MAX_INSERT_CHARS: usize = 1024 * 1024;
/// Most sessions on one document at once (a large class or company).
pub const MAX_CLIENTS_PER_DOCUMENT: usize = 5_000;
/// Committed ops each open document keeps in memory. Clients less than this
/// far behind are transformed and resumed without touching the store.
pub const HISTORY_WINDOW: usize = 2_000;
/// Bytes of published ops each open document keeps in memory, whichever of
/// this and [`HISTORY_WINDOW`] comes first. Keystrokes are ~100 bytes, so
/// 2,000 of them take 0.2 MB; a client pasting megabyte after megabyte must
/// not make the window gigabytes. Older ops are read back from the store.
pub const HISTORY_WINDOW_BYTES: usize = 8 * 1024 * 1024;
/// Most bytes of ops a resuming client is sent as catch-up (and a store
/// read for it may hold); past this it gets the text instead, which is then
/// no bigger than the ops would have been.
pub const MAX_CATCHUP_BYTES: usize = 16 * 1024 * 1024;
/// Ops read from the store per page (catch-up, rebasing an old op, opening
/// a document), so a read holds at most this many ops at once.
pub const STORE_PAGE_OPS: usize = 64;
/// Clients each document remembers the latest `(seq, revision)` of, for
/// answering resends without the store: ~150 bytes each, so at most a few
/// MB. Past this, those whose latest op is older than the history window
/// are forgotten, and a resend from one is looked up in the store.
pub const MAX_DEDUPE_CLIENTS: usize = 20_000;
/// How far behind (in revisions) a client may be and still resume or have its
/// op transformed; beyond this it gets `unknown_rev` and reloads, since
/// transforming through more history would cost more than a fresh load.
pub const MAX_CATCHUP_REVISIONS: u64 = 20_000;
/// Messages queued towards one client before it counts as unable to keep up
/// and is disconnected (close 1013), so it can never slow the others or
/// grow memory without bound. It resumes from its last revision.
pub const OUTBOUND_QUEUE: usize = 4_096;
/// Bytes of frames queued towards one client and not yet written to its
/// socket (including frames the session has taken off the queue but is
/// still writing) before it counts as unable to keep up, exactly like a full
/// [`OUTBOUND_QUEUE`] (close 1013; it resumes). The message count alone does
/// not bound memory: 4,096 frames of 1 MiB pastes would be 4 GiB for one
/// reader that stopped. A keystroke frame is ~100 bytes, so 4,096 of them
/// are under 0.5 MiB and typing never comes near this. 16 MiB is twice the
/// largest document (8 Mi characters, mostly one byte each): room for the
/// news that arrives while a `joined` of that size is written (the session
/// writes it before reading its queue), and for a burst of 1 MiB pastes
/// between two writes. A frame into an empty queue is always taken, however
/// big, so no frame is ever refused for its own size.
pub const OUTBOUND_QUEUE_BYTES: usize = 16 * 1024 * 1024;
/// Open documents on this node at once. A join or REST call that would open
/// one more is refused with `unavailable` (close 1013, HTTP 503) until one
/// closes ([`DOCUMENT_IDLE_CLOSE`] after its last client left). Each join
/// of an unknown id creates and opens a document, so without this a client
/// inventing ids could open documents until memory ran out. An open
/// document holds its text, its history window and a task: a typical source
/// file with its window is well under 1 MB, so 10,000 stay within a few GB,
/// and it is enough for the [`MAX_CONNECTIONS`] to work in pairs, each pair
/// on a document of its own.
pub const MAX_OPEN_DOCUMENTS: usize = 10_000;
/// WebSocket connections on this node at once; the next upgrade is answered
/// HTTP 503 `unavailable` with `Retry-After`. A connection costs ~35 KB at
/// rest (2,000 connections over 500 documents ran in 70 MB RSS, see
/// docs/performance.md), so 20,000 are under 1 GB, and they leave room for
/// the store's and the REST API's file descriptors under the usual 65,536
/// limit. A node past this would be better off with another node beside it
/// (each is one core per document anyway).
pub const MAX_CONNECTIONS: usize = 20_000;
/// Commands queued towards one document task; senders wait when it is full,
/// which is the back-pressure that keeps a flooding client from growing memory.
pub const DOCUMENT_QUEUE: usize = 1_024;
/// A snapshot every this many revisions, so opening a document or reading an
/// old revision replays at most this many ops.
pub const SNAPSHOT_INTERVAL: u64 = 1_000;
/// An open document with no session for this long is snapshotted and closed.
pub const DOCUMENT_IDLE_CLOSE: Duration = Duration::from_secs(60);
/// The server pings each client this often.
pub const PING_INTERVAL: Duration = Duration::from_secs(15);
/// A client that sends nothing (not even a pong) for this long is closed
/// with 4408: three missed pings.
pub const CLIENT_IDLE_TIMEOUT: Duration = Duration::from_secs(45);
/// Sustained messages per second one connection may send (presence excluded:
/// it is coalesced instead). High enough for a closed-loop client, low enough
/// that a runaway client is refused early.
pub const RATE_LIMIT_PER_SEC: u32 = 5_000;
/// Burst allowance above the sustained rate.
pub const RATE_LIMIT_BURST: u32 = 1_000;
/// Ops per second one user (a token's subject) may send across all their
/// connections together, in one burst at most [`USER_OPS_BURST_SECS`]
/// worth. The per-connection [`RATE_LIMIT_PER_SEC`] alone lets a user who
/// opens many sockets multiply it; this caps the user, not the socket. A
/// fast typist sends ~10 ops a second and a script replaying a file
/// hundreds, so one connection's worth is plenty for all of a user's tabs
/// and bots. Link guests are the user `link:<id>`: everyone on one share
/// link shares it (a class of 30 typing is ~300 a second). Open mode has
/// no users and leaves it to the per-connection limit.
pub const RATE_LIMIT_USER_OPS: u32 = 5_000;
/// Seconds' worth of [`RATE_LIMIT_USER_OPS`] a user may send at once: a
/// paste of many small ops or a reconnect resending goes through, while a
/// flood is refused within a second.
pub const USER_OPS_BURST_SECS: u32 = 1;
/// New WebSocket connections per second from one IP address (IPv6: one
/// /64). The burst is [`LIMIT_BURST_SECS`] worth, 20,000: as many as
/// [`MAX_CONNECTIONS`], so one address (an office behind one NAT, the load
/// generator on loopback opening 10,000 sockets at once) can fill a node
/// from empty, and a crowd reconnecting after a restart is never refused
/// for its address. What it stops is one address reconnecting in a loop
/// for ever: each upgrade costs a token check and a store read.
pub const RATE_LIMIT_IP_CONNECTIONS: u32 = 1_000;
/// New WebSocket connections per second of one user, with a burst of
/// [`LIMIT_BURST_SECS`] worth (2,000): far more tabs and reconnects than a
/// person has, few enough that one stolen token cannot take a node's
/// connections.
pub const RATE_LIMIT_USER_CONNECTIONS: u32 = 100;
/// `join`s per second from one IP address, burst [`LIMIT_BURST_SECS`]
/// worth. A join opens (and on an unknown id creates) a document, the
/// costliest thing a client can ask for; a connection normally joins once,
/// so this matches [`RATE_LIMIT_IP_CONNECTIONS`].
pub const RATE_LIMIT_IP_JOINS: u32 = 1_000;
/// `join`s per second of one user, burst [`LIMIT_BURST_SECS`] worth; as
/// [`RATE_LIMIT_USER_CONNECTIONS`], and it bounds how fast one user can
/// create documents.
pub const RATE_LIMIT_USER_JOINS: u32 = 100;
/// REST (and static file) requests per second from one IP address, burst
/// [`LIMIT_BURST_SECS`] worth (20,000): the load generator creates and
/// reads back up to 10,000 documents one request after the other, and the
/// web app makes a handful of requests per page. The WebSocket upgrade is
/// not counted here (it has [`RATE_LIMIT_IP_CONNECTIONS`]).
pub const RATE_LIMIT_IP_REQUESTS: u32 = 1_000;
/// Seconds' worth of the connection, join and request rates that may come
/// at once: connections come in crowds (a page load, a node restarting),
/// not evenly.
pub const LIMIT_BURST_SECS: u32 = 20;
/// How often the per-key limiters forget the keys (addresses, users) whose
/// allowance is full again, which are no different from keys never seen:
/// memory holds only the keys active in the last burst window plus this.
pub const LIMITER_SWEEP_INTERVAL: Duration = Duration::from_secs(10);
/// Keys one limiter may hold before it sweeps at once (at most once a
/// second) instead of waiting for [`LIMITER_SWEEP_INTERVAL`]: ~100 bytes
/// each, so a few tens of MB for all limiters even when many addresses
/// come at once.
pub const MAX_LIMITER_KEYS: usize = 100_000;
/// Presence is forwarded at most this often per client; newer cursor
/// positions replace older unsent ones, so a chatty client costs the others
/// at most 20 presence messages a second.
pub const PRESENCE_INTERVAL: Duration = Duration::from_millis(50);
/// The depth of a document's budget of socket writes, in time at
/// [`DOCUMENT_WRITES_PER_SEC`] (5 ms: 200 writes). News of other clients
/// (their ops, cursors, arrivals) goes out at once while the budget allows,
/// and is held and sent to each session in one burst only when the document
/// would write faster; answers to a client (`ack`, `error`) are never held.
/// 50 typists at 10 ops/s each (25,000 writes a second) are never held; a
/// document with hundreds of typists costs one wake-up and socket write per
/// peer per burst instead of one per op, for a few milliseconds of delay
/// well under what a person notices.
pub const OUTBOUND_COALESCE: Duration = Duration::from_millis(5);
/// Socket writes per second a document's fan-out may cost on average: past
/// it, news is held so that bursts go `peers / this` apart (1,000 peers:
/// 25 ms), up to [`MAX_OUTBOUND_COALESCE`]. Writes, not bytes, are what a busy document
/// pays for, and a class of a thousand does not notice 25 ms.
pub const DOCUMENT_WRITES_PER_SEC: u32 = 40_000;
/// The longest a document holds news, however many peers it has.
pub const MAX_OUTBOUND_COALESCE: Duration = Duration::from_millis(50);
/// Consecutive refused messages after which a connection is closed with 4400:
/// a client that gets only errors is broken, and answering it forever is waste.
pub const MAX_CONSECUTIVE_ERRORS: u32 = 100;
/// Longest user name, in characters.
pub const MAX_NAME_CHARS: usize = 64;
/// Longest language id (Monaco ids are short: `typescript`, `cpp`).
pub const MAX_LANGUAGE_LEN: usize = 32;
/// Most ranges in one selection (multi-cursor).
pub const MAX_SELECTION_RANGES: usize = 256;
/// How long a store failure may last before clients are told `unavailable`.
pub const STORE_RETRY_LIMIT: Duration = Duration::from_secs(30);

/// Limits applied to what clients send and to each document.
#[derive(Debug, Clone)]
pub struct Limits {
    /// See [`MAX_MESSAGE_BYTES`].
    pub max_message_bytes: usize,
    /// See [`MAX_DOCUMENT_CHARS`].
    pub max_document_chars: usize,
    /// See [`MAX_OP_COMPONENTS`].
    pub max_op_components: usize,
    /// See [`MAX_INSERT_CHARS`].
    pub max_insert_chars: usize,
    /// See [`MAX_CLIENTS_PER_DOCUMENT`].
    pub max_clients_per_document: usize,
    /// See [`HISTORY_WINDOW`].
    pub history_window: usize,
    /// See [`HISTORY_WINDOW_BYTES`].
    pub history_window_bytes: usize,
    /// See [`MAX_CATCHUP_BYTES`].
    pub max_catchup_bytes: usize,
    /// See [`MAX_CATCHUP_REVISIONS`].
    pub max_catchup_revisions: u64,
    /// See [`OUTBOUND_QUEUE`].
    pub outbound_queue: usize,
    /// See [`OUTBOUND_QUEUE_BYTES`].
    pub outbound_queue_bytes: usize,
    /// See [`MAX_OPEN_DOCUMENTS`].
    pub max_open_documents: usize,
    /// See [`MAX_CONNECTIONS`].
    pub max_connections: usize,
    /// See [`RATE_LIMIT_PER_SEC`].
    pub rate_limit_per_sec: u32,
    /// See [`RATE_LIMIT_BURST`].
    pub rate_limit_burst: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: MAX_MESSAGE_BYTES,
            max_document_chars: MAX_DOCUMENT_CHARS,
            max_op_components: MAX_OP_COMPONENTS,
            max_insert_chars: MAX_INSERT_CHARS,
            max_clients_per_document: MAX_CLIENTS_PER_DOCUMENT,
            history_window: HISTORY_WINDOW,
            history_window_bytes: HISTORY_WINDOW_BYTES,
            max_catchup_bytes: MAX_CATCHUP_BYTES,
            max_catchup_revisions: MAX_CATCHUP_REVISIONS,
            outbound_queue: OUTBOUND_QUEUE,
            outbound_queue_bytes: OUTBOUND_QUEUE_BYTES,
            max_open_documents: MAX_OPEN_DOCUMENTS,
            max_connections: MAX_CONNECTIONS,
            rate_limit_per_sec: RATE_LIMIT_PER_SEC,
            rate_limit_burst: RATE_LIMIT_BURST,
        }
    }
}

/// Rates per user and per IP address, shared by all of a node's
/// connections (see [`RATE_LIMIT_USER_OPS`] and the others); 0 turns one
/// off.
#[derive(Debug, Clone)]
pub struct RateLimits {
    /// See [`RATE_LIMIT_USER_OPS`].
    pub user_ops: u32,
    /// See [`RATE_LIMIT_IP_CONNECTIONS`].
    pub ip_connections: u32,
    /// See [`RATE_LIMIT_USER_CONNECTIONS`].
    pub user_connections: u32,
    /// See [`RATE_LIMIT_IP_JOINS`].
    pub ip_joins: u32,
    /// See [`RATE_LIMIT_USER_JOINS`].
    pub user_joins: u32,
    /// See [`RATE_LIMIT_IP_REQUESTS`].
    pub ip_requests: u32,
    /// Take the client's address from the last `X-Forwarded-For` entry
    /// (set by a reverse proxy in front) instead of the TCP peer.
    pub trust_forwarded_for: bool,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            user_ops: RATE_LIMIT_USER_OPS,
            ip_connections: RATE_LIMIT_IP_CONNECTIONS,
            user_connections: RATE_LIMIT_USER_CONNECTIONS,
            ip_joins: RATE_LIMIT_IP_JOINS,
            user_joins: RATE_LIMIT_USER_JOINS,
            ip_requests: RATE_LIMIT_IP_REQUESTS,
            trust_forwarded_for: false,
        }
    }
}

/// Timing of documents and sessions.
#[derive(Debug, Clone)]
pub struct Timing {
    /// See [`SNAPSHOT_INTERVAL`].
    pub snapshot_interval: u64,
    /// See [`DOCUMENT_IDLE_CLOSE`].
    pub document_idle_close: Duration,
    /// See [`PING_INTERVAL`].
    pub ping_interval: Duration,
    /// See [`CLIENT_IDLE_TIMEOUT`].
    pub client_idle_timeout: Duration,
    /// See [`PRESENCE_INTERVAL`].
    pub presence_interval: Duration,
    /// See [`OUTBOUND_COALESCE`].
    pub outbound_coalesce: Duration,
    /// See [`DOCUMENT_WRITES_PER_SEC`].
    pub outbound_writes_per_sec: u32,
    /// See [`STORE_RETRY_LIMIT`].
    pub store_retry_limit: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            snapshot_interval: SNAPSHOT_INTERVAL,
            document_idle_close: DOCUMENT_IDLE_CLOSE,
            ping_interval: PING_INTERVAL,
            client_idle_timeout: CLIENT_IDLE_TIMEOUT,
            presence_interval: PRESENCE_INTERVAL,
            outbound_coalesce: OUTBOUND_COALESCE,
            outbound_writes_per_sec: DOCUMENT_WRITES_PER_SEC,
            store_retry_limit: STORE_RETRY_LIMIT,
        }
    }
}

/// Everything the server core needs to know, apart from where it listens and
/// which store it uses.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Limits on input and on each document.
    pub limits: Limits,
    /// Snapshot, idle and heartbeat timing.
    pub timing: Timing,
    /// Rates per user and per IP address.
    pub rate: RateLimits,
    /// With several nodes: a connection for a document another node owns
    /// is closed with 4409 and the owner's URL instead of being forwarded.
    pub cluster_redirect: bool,
}
