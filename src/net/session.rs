//! One WebSocket session: reads client messages, validates them, and
//! forwards them to the document task. What the task sends back goes to the
//! socket without passing through here: once joined, the connection reads
//! the document's queue itself ([`super::outgoing`]).
//!
//! Every refusal is an `error` message and changes nothing; only a broken
//! transport, a frame over the size limit, or a client that gets nothing but
//! errors is closed. Presence is coalesced (latest wins, at most one per
//! [`PRESENCE_INTERVAL`](crate::config::PRESENCE_INTERVAL)), so a chatty
//! client costs its peers little and is never disconnected for it.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseReason};
use bytestring::ByteString;
use tokio::sync::{oneshot, watch};
use tokio::time::{Instant, interval, sleep_until, timeout};
use tracing::debug;

use super::limits::{IpKey, Limiters};
use super::outgoing::Outgoing;
use crate::auth::{Auth, AuthError, Identity, Permission};
use crate::cluster::NodeInfo;
use crate::config::{self, MAX_CONSECUTIVE_ERRORS};
use crate::document::{
    Command, DocumentHandle, JoinRequest, Joined, Outbound, SessionId, outbound,
};
use crate::document::{SessionOrigin, SessionRights};
use crate::ids::{ClientId, DocId, Revision, Seq};
use crate::ot::{OpLimits, Selection, TextOp};
use crate::protocol::{ClientMsg, CloseCode, ErrorCode, MAX_COUNTER, UserIn, error_frame};
use crate::registry::{OpenError, Registry};
use crate::store::StoreError;

static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

/// Attempts to reach a document whose task is closing under us.
const OPEN_ATTEMPTS: usize = 3;
/// How long a closing session may spend delivering its last frames.
const CLOSE_FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A token bucket: `rate` tokens a second, at most `burst` saved.
struct RateLimit {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
}

impl RateLimit {
    fn new(rate: u32, burst: u32) -> Self {
        Self {
            tokens: f64::from(burst),
            rate: f64::from(rate),
            burst: f64::from(burst),
            last: Instant::now(),
        }
    }

    fn allow(&mut self) -> bool {
        let now = Instant::now();
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            crate::metrics::rate_limited("messages on this connection");
            false
        }
    }
}

struct Attached {
    handle: DocumentHandle,
    joined: Joined,
    /// The client reads batched frames (it said so at `join`).
    batch: bool,
    /// The document tells the session to close through this.
    kick: oneshot::Receiver<CloseCode>,
}

enum Event {
    Incoming(Option<Result<AggregatedMessage, actix_ws::ProtocolError>>),
    Kicked(CloseCode),
    Tick,
    Shutdown,
    FlushPresence,
}

/// Why the session ends.
enum End {
    Close(CloseCode, Cow<'static, str>),
    /// Another node owns the document: the client's `join` (this text) and
    /// everything after it go there.
    Forward(NodeInfo, String),
    /// The client closed: its close frame is answered, as RFC 6455 asks.
    ClientClosed(Option<CloseReason>),
    Gone,
}

/// Who is on the other end, for the limits shared by all connections.
pub struct Caller {
    /// The node's shared limits.
    pub limiters: Arc<Limiters>,
    /// The client's address, as the limits key it.
    pub ip: Option<IpKey>,
    /// The client's address itself, for the admin API's listing.
    pub addr: Option<std::net::IpAddr>,
    /// The user (the identity's subject), as the limits key it.
    pub user: Option<Arc<str>>,
    /// How to present this connection to the node that owns the document,
    /// should it be another.
    pub upstream: super::proxy::Upstream,
}

/// Runs a session until the client leaves, is closed, or the server stops.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    registry: Arc<Registry>,
    auth: Arc<Auth>,
    identity: Result<Identity, AuthError>,
    caller: Caller,
    doc: DocId,
    mut ws: Outgoing,
    mut stream: AggregatedMessageStream,
    mut shutdown: watch::Receiver<bool>,
) {
    // For the access log line written when the session ends.
    let started = std::time::Instant::now();
    let mut bytes_in = 0u64;
    let sent = ws.sent_counter();
    // No identity, no document data: the reason, then 4401.
    let identity = match identity {
        Ok(identity) => identity,
        Err(e) => {
            let frame = error_frame(ErrorCode::Unauthenticated, &e.to_string(), None);
            let _ = ws.text(frame).await;
            let bytes_out = ws.sent();
            let reason = CloseReason {
                code: actix_ws::CloseCode::Other(CloseCode::Unauthenticated.code()),
                description: Some("unauthenticated".into()),
            };
            let _ = timeout(CLOSE_FLUSH_TIMEOUT, ws.close(Some(reason))).await;
            let code = Some(CloseCode::Unauthenticated.code());
            super::access_log::session_ended(&doc, None, started, (bytes_in, bytes_out), code);
            return;
        }
    };
    let door = Door {
        auth,
        identity,
        origin: SessionOrigin::now(caller.addr),
    };
    let settings = Arc::clone(registry.settings());
    let limits = &settings.limits;
    let timing = &settings.timing;
    let session: SessionId = NEXT_SESSION.fetch_add(1, Ordering::Relaxed);
    let (out_tx, out_rx) = outbound(limits.outbound_queue, limits.outbound_queue_bytes);
    // Handed to the connection once the session has joined.
    let mut out_rx = Some(out_rx);
    let mut attached: Option<Attached> = None;
    let mut rate = RateLimit::new(limits.rate_limit_per_sec, limits.rate_limit_burst);
    let mut errors: u32 = 0;
    let mut limited_in_row: u32 = 0;
    let mut last_heard = Instant::now();
    let mut ticker = interval(timing.ping_interval);
    ticker.tick().await;
    let mut presence: Option<(Revision, Option<Selection>)> = None;
    let mut presence_sent = Instant::now() - timing.presence_interval;
    let op_limits = OpLimits::from(limits);

    let end = loop {
        let flush_at = presence
            .as_ref()
            .map(|_| presence_sent + timing.presence_interval);
        let kicked = async {
            match attached.as_mut() {
                Some(a) => (&mut a.kick).await.unwrap_or(CloseCode::InternalError),
                None => std::future::pending().await,
            }
        };
        let event = tokio::select! {
            msg = stream.recv() => Event::Incoming(msg),
            code = kicked => Event::Kicked(code),
            _ = ticker.tick() => Event::Tick,
            _ = shutdown.changed() => Event::Shutdown,
            () = sleep_until(flush_at.unwrap_or_else(Instant::now)), if flush_at.is_some() => Event::FlushPresence,
        };
        match event {
            Event::Incoming(None) => break End::Gone,
            Event::Incoming(Some(Err(e))) => {
                debug!(session, error = %e, "websocket protocol error");
                if is_too_big(&e) {
                    // 1009 with the limit, so the client splits its edit
                    // instead of resending the same message forever.
                    let reason = format!(
                        "message too big: the limit is {} bytes",
                        limits.max_message_bytes
                    );
                    let frame = error_frame(ErrorCode::TooLarge, &reason, None);
                    let _ = ws.text(frame).await;
                    break End::Close(CloseCode::MessageTooBig, reason.into());
                }
                break End::Gone;
            }
            Event::Incoming(Some(Ok(msg))) => {
                last_heard = Instant::now();
                bytes_in += match &msg {
                    AggregatedMessage::Text(t) => t.len() as u64,
                    AggregatedMessage::Binary(b) => b.len() as u64,
                    _ => 0,
                };
                let text = match msg {
                    AggregatedMessage::Text(text) => text,
                    AggregatedMessage::Binary(_) => {
                        errors += 1;
                        let f = error_frame(
                            ErrorCode::BadMessage,
                            "binary frames are not part of the protocol",
                            None,
                        );
                        if let Some(end) = answer(&mut ws, &mut attached, timing, f).await {
                            break end;
                        }
                        if errors > MAX_CONSECUTIVE_ERRORS {
                            break End::Close(
                                CloseCode::ProtocolViolation,
                                "too many bad messages".into(),
                            );
                        }
                        continue;
                    }
                    AggregatedMessage::Ping(bytes) => {
                        if ws.pong(&bytes).await.is_err() {
                            break End::Gone;
                        }
                        continue;
                    }
                    AggregatedMessage::Pong(_) => continue,
                    AggregatedMessage::Close(reason) => break End::ClientClosed(reason),
                };
                door.origin.touch();
                let parsed = serde_json::from_str::<ClientMsg>(&text);
                // This connection's own rate first, then the ones it shares
                // with the user's (or the address's) other connections.
                let limited: Option<Cow<'static, str>> = match &parsed {
                    Ok(ClientMsg::Presence { .. }) => None,
                    _ if !rate.allow() => Some("too many messages; slow down".into()),
                    Ok(ClientMsg::Op { .. }) if attached.is_some() => caller
                        .limiters
                        .op(caller.user.as_ref())
                        .err()
                        .map(|l| l.message().into()),
                    Ok(ClientMsg::Join { .. }) if attached.is_none() => caller
                        .limiters
                        .join(caller.ip.as_ref(), caller.user.as_ref())
                        .err()
                        .map(|l| l.message().into()),
                    _ => None,
                };
                if let Some(message) = limited {
                    limited_in_row += 1;
                    let seq = match &parsed {
                        Ok(ClientMsg::Op { seq, .. }) => Some(Seq(*seq)),
                        _ => None,
                    };
                    let f = error_frame(ErrorCode::RateLimited, &message, seq);
                    if let Some(end) = answer(&mut ws, &mut attached, timing, f).await {
                        break end;
                    }
                    if limited_in_row > MAX_CONSECUTIVE_ERRORS {
                        break End::Close(CloseCode::RateLimited, "rate limited".into());
                    }
                    continue;
                }
                limited_in_row = 0;
                let outcome = match parsed {
                    Err(e) => Err((
                        ErrorCode::BadMessage,
                        format!("not a protocol message: {e}"),
                        None,
                    )),
                    // Boxed, like the other rare awaits below: inline,
                    // their states would make every idle connection's
                    // future as big as the biggest of them (17 KB).
                    Ok(msg) => {
                        Box::pin(handle_message(
                            msg,
                            &door,
                            &registry,
                            &doc,
                            session,
                            &mut attached,
                            &out_tx,
                            &op_limits,
                            &mut presence,
                        ))
                        .await
                    }
                };
                let outcome = match outcome {
                    // A node forwards a connection once: one that came
                    // forwarded means the nodes disagree on the owner for
                    // the moment (a lease changing hands).
                    Ok(Some(_)) if caller.upstream.is_forwarded() => Err(refused(
                        ErrorCode::Unavailable,
                        "the document is changing nodes; retry",
                    )),
                    Ok(Some(owner)) => break End::Forward(owner, text.to_string()),
                    Ok(None) => Ok(()),
                    Err(e) => Err(e),
                };
                // A join's answer goes first, before anything the document
                // queued for the session (it is only read from now on).
                let greeting = attached
                    .as_mut()
                    .and_then(|a| a.joined.greeting.take())
                    .map(|g| g.to_frame());
                if let Some(frame) = greeting {
                    if let Some(end) = answer(&mut ws, &mut attached, timing, frame).await {
                        break end;
                    }
                    // Only now: what the document queued goes after it.
                    let batch = attached.as_ref().is_some_and(|a| a.batch);
                    if let Some(queue) = out_rx.take()
                        && ws.attach(queue, batch).await.is_err()
                    {
                        break End::Gone;
                    }
                }
                match outcome {
                    Ok(()) => errors = 0,
                    Err((code, message, seq)) => {
                        errors += 1;
                        let f = error_frame(code, &message, seq);
                        if let Some(end) = answer(&mut ws, &mut attached, timing, f).await {
                            break end;
                        }
                        if code == ErrorCode::Forbidden && attached.is_none() {
                            break End::Close(CloseCode::Forbidden, "forbidden".into());
                        }
                        if code == ErrorCode::Unavailable && attached.is_none() {
                            break End::Close(CloseCode::TryAgainLater, "unavailable".into());
                        }
                        if errors > MAX_CONSECUTIVE_ERRORS {
                            break End::Close(
                                CloseCode::ProtocolViolation,
                                "too many bad messages".into(),
                            );
                        }
                    }
                }
                if attached.as_ref().is_some_and(|a| a.handle.is_closed()) {
                    break End::Close(
                        CloseCode::TryAgainLater,
                        "document closed; reconnect".into(),
                    );
                }
            }
            Event::Kicked(code) => break End::Close(code, "closed by the server".into()),
            Event::Tick => {
                if last_heard.elapsed() > timing.client_idle_timeout {
                    break End::Close(CloseCode::Idle, "idle".into());
                }
                if ws.ping(b"").await.is_err() {
                    break End::Gone;
                }
            }
            Event::Shutdown => {
                break End::Close(CloseCode::GoingAway, "server shutting down".into());
            }
            Event::FlushPresence => {
                if let (Some((rev, selection)), Some(a)) = (presence.take(), &attached) {
                    presence_sent = Instant::now();
                    let cmd = Command::Presence {
                        session,
                        client: a.joined.client.clone(),
                        rev,
                        selection,
                    };
                    if a.handle.send(cmd).await.is_err() {
                        break End::Close(
                            CloseCode::TryAgainLater,
                            "document closed; reconnect".into(),
                        );
                    }
                }
            }
        }
    };

    if let Some(a) = &attached {
        let _ = a
            .handle
            .send(Command::Leave {
                session,
                client: a.joined.client.clone(),
            })
            .await;
    }
    let close_code = match &end {
        End::Close(code, _) => Some(code.code()),
        End::ClientClosed(reason) => reason.as_ref().map(|r| u16::from(r.code)),
        End::Gone | End::Forward(..) => None,
    };
    if let End::Forward(owner, join) = end {
        let settings = Arc::clone(registry.settings());
        if settings.cluster_redirect {
            // Told where to go instead of being carried there.
            let url = owner.url.unwrap_or_default();
            let reason = format!("moved: {url}");
            let code = CloseCode::Moved;
            let _ = timeout(
                CLOSE_FLUSH_TIMEOUT,
                ws.close(Some(CloseReason {
                    code: actix_ws::CloseCode::Other(code.code()),
                    description: Some(reason.chars().take(120).collect()),
                })),
            )
            .await;
            return;
        }
        let mut upstream = caller.upstream;
        upstream.via = registry.cluster().node().id.clone();
        Box::pin(super::proxy::forward(
            owner, join, upstream, &settings, ws, stream, shutdown,
        ))
        .await;
        return;
    }
    if let End::Close(code, mut reason) = end {
        // RFC 6455: a close reason is at most 123 bytes.
        if reason.len() > 123 {
            let mut cut = 123;
            while !reason.is_char_boundary(cut) {
                cut -= 1;
            }
            reason = Cow::Owned(reason[..cut].to_owned());
        }
        // Frames queued before a close are still delivered (a graceful close
        // must not lose acks already on their way: the connection writes the
        // close after them), but a client that does not read gets only a
        // bounded wait.
        let _ = timeout(
            CLOSE_FLUSH_TIMEOUT,
            ws.close(Some(CloseReason {
                code: actix_ws::CloseCode::Other(code.code()),
                description: Some(reason.into_owned()),
            })),
        )
        .await;
    } else if let End::ClientClosed(reason) = end {
        let echo = reason.map(|r| CloseReason {
            code: r.code,
            description: None,
        });
        let _ = timeout(CLOSE_FLUSH_TIMEOUT, ws.close(echo)).await;
    }
    let client = attached.as_ref().map(|a| &a.joined.client);
    let bytes_out = sent.get();
    super::access_log::session_ended(&doc, client, started, (bytes_in, bytes_out), close_code);
}

/// True for the transport's "message over the limit" errors: one frame too
/// big (`Overflow`), or continuation frames adding up to too much (actix-ws
/// reports that only as an I/O error with this text). Browsers fragment big
/// messages, so the second is what a big paste hits.
pub(super) fn is_too_big(e: &actix_ws::ProtocolError) -> bool {
    match e {
        actix_ws::ProtocolError::Overflow => true,
        actix_ws::ProtocolError::Io(io) => io.to_string().contains("continuation size"),
        _ => false,
    }
}

/// Writes a frame the session makes itself (a refusal, the `joined`). The
/// connection writes it after everything the document queued before it, so
/// a refusal cannot overtake an ack. A send that waits (the client stopped
/// reading) must not hide a kick from the document, so the two race.
/// Returns why the session must end, if it must.
async fn answer(
    ws: &mut Outgoing,
    attached: &mut Option<Attached>,
    timing: &config::Timing,
    frame: ByteString,
) -> Option<End> {
    let kicked = async {
        match attached.as_mut() {
            Some(a) => (&mut a.kick).await.unwrap_or(CloseCode::InternalError),
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        biased;
        r = timeout(timing.client_idle_timeout, ws.text(frame)) => {
            (!matches!(r, Ok(Ok(())))).then_some(End::Gone)
        }
        code = kicked => Some(End::Close(code, "closed by the server".into())),
    }
}

type Refused = (ErrorCode, String, Option<Seq>);

/// Who is behind the session, proven at the upgrade, and the rules.
struct Door {
    auth: Arc<Auth>,
    identity: Identity,
    /// Where the connection comes from, for the admin API.
    origin: SessionOrigin,
}

/// What the session may do to `doc`, creating the document (with its
/// creator as admin) when it does not exist and may be created.
async fn admit(
    door: &Door,
    registry: &Arc<Registry>,
    doc: &DocId,
) -> Result<(Permission, SessionRights), Refused> {
    let store = registry.store();
    let unavailable = |e: StoreError| {
        tracing::warn!(document = %doc, error = %e, "store error");
        refused(ErrorCode::Unavailable, e.public_message())
    };
    let id = &door.identity;
    let rights = SessionRights {
        subject: id.subject.clone(),
        admin: id.admin,
        link: id
            .link
            .as_ref()
            .filter(|l| l.document == *doc)
            .map(|l| (l.id.clone(), l.permission)),
        signed_in: id.signed_in(),
    };
    // Twice at most: a document someone else created meanwhile is theirs.
    for _ in 0..2 {
        let access = door
            .auth
            .access(store.as_ref(), id, doc)
            .await
            .map_err(|e| match e {
                AuthError::Store(e) => unavailable(e),
                e => refused(ErrorCode::Forbidden, e.to_string()),
            })?;
        let Some(permission) = access.permission else {
            return Err(refused(
                ErrorCode::Forbidden,
                "you have no access to this document",
            ));
        };
        if access.create && !door.auth.is_open() {
            let language = crate::document::DEFAULT_LANGUAGE;
            let created = match id.subject() {
                Some(sub) => store.create_document_as(doc, language, "", sub).await,
                None => store.create_document(doc, language, "").await,
            };
            match created {
                Ok(_) => {}
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(unavailable(e)),
            }
        }
        return Ok((permission, rights));
    }
    Err(refused(
        ErrorCode::Unavailable,
        "document unavailable; retry",
    ))
}

fn refused(code: ErrorCode, message: impl Into<String>) -> Refused {
    (code, message.into(), None)
}

#[allow(clippy::too_many_arguments)]
async fn handle_message(
    msg: ClientMsg,
    door: &Door,
    registry: &Arc<Registry>,
    doc: &DocId,
    session: SessionId,
    attached: &mut Option<Attached>,
    out_tx: &Outbound,
    op_limits: &OpLimits,
    presence: &mut Option<(Revision, Option<Selection>)>,
) -> Result<Option<NodeInfo>, Refused> {
    match msg {
        ClientMsg::Join {
            client,
            rev,
            user,
            batch,
        } => {
            if attached.is_some() {
                return Err(refused(ErrorCode::BadMessage, "already joined"));
            }
            if rev.is_some_and(|r| r > MAX_COUNTER) {
                return Err(refused(ErrorCode::BadMessage, "rev must be below 2^53"));
            }
            let client = client
                .map(|c| ClientId::parse(&c))
                .transpose()
                .map_err(|e| refused(ErrorCode::BadMessage, e.to_string()))?;
            let (name, color) = validate_user(user.unwrap_or_default(), client.as_ref())?;
            let name = match (&door.identity.name, name.as_str()) {
                (Some(known), "Anonymous") => known.chars().take(config::MAX_NAME_CHARS).collect(),
                _ => name,
            };
            let (permission, rights) = admit(door, registry, doc).await?;
            let mut last = refused(ErrorCode::Unavailable, "document unavailable");
            for _ in 0..OPEN_ATTEMPTS {
                // A node at its cap of open documents refuses at once (the
                // session then closes 1013); an open document is served.
                let handle = match registry.open(doc).await {
                    Ok(handle) => handle,
                    Err(OpenError::Elsewhere(owner)) if owner.url.is_some() => {
                        return Ok(Some(owner));
                    }
                    Err(OpenError::Elsewhere(owner)) => {
                        // Its owner stopped announcing itself: its lease
                        // runs out soon, and a retry opens it somewhere.
                        return Err(refused(
                            ErrorCode::Unavailable,
                            format!(
                                "node {} that serves this document is not answering; retry",
                                owner.id
                            ),
                        ));
                    }
                    Err(e) => return Err(refused(ErrorCode::Unavailable, e.to_string())),
                };
                let (kick_tx, kick_rx) = oneshot::channel();
                let (reply_tx, reply_rx) = oneshot::channel();
                let req = JoinRequest {
                    session,
                    client: client.clone(),
                    rev: rev.map(Revision),
                    user_name: name.clone(),
                    user_color: color.clone(),
                    permission,
                    rights: rights.clone(),
                    outbound: out_tx.clone(),
                    batch,
                    kick: kick_tx,
                    origin: door.origin.clone(),
                };
                if handle
                    .send(Command::Join {
                        req: Box::new(req),
                        reply: reply_tx,
                    })
                    .await
                    .is_err()
                {
                    continue; // closed under us: the next open spawns a new task
                }
                match reply_rx.await {
                    Ok(Ok(joined)) => {
                        *attached = Some(Attached {
                            handle,
                            joined,
                            batch,
                            kick: kick_rx,
                        });
                        return Ok(None);
                    }
                    Ok(Err(r)) if !handle.is_closed() => return Err(refused(r.code, r.message)),
                    Ok(Err(r)) => last = refused(r.code, r.message),
                    Err(_) => {}
                }
            }
            Err(last)
        }
        _ if attached.is_none() => Err(refused(ErrorCode::BadMessage, "send join first")),
        ClientMsg::Op {
            rev,
            seq,
            op,
            selection,
        } => {
            let received = std::time::Instant::now();
            let a = attached
                .as_ref()
                .ok_or_else(|| refused(ErrorCode::BadMessage, "send join first"))?;
            if seq > MAX_COUNTER || rev > MAX_COUNTER {
                return Err(refused(
                    ErrorCode::BadMessage,
                    "rev and seq must be below 2^53",
                ));
            }
            let op = TextOp::parse(&op, op_limits).map_err(|e| {
                let r = crate::document::Refusal::from(e);
                (r.code, r.message, Some(Seq(seq)))
            })?;
            if let Some(sel) = &selection {
                check_selection(sel).map_err(|(c, m, _)| (c, m, Some(Seq(seq))))?;
            }
            // A cursor move still held back belongs before this op, or the
            // peers would see it after the op's own (newer) selection.
            if let Some((prev, sel)) = presence.take() {
                let cmd = Command::Presence {
                    session,
                    client: a.joined.client.clone(),
                    rev: prev,
                    selection: sel,
                };
                let _ = a.handle.send(cmd).await;
            }
            let cmd = Command::Op {
                session,
                client: a.joined.client.clone(),
                rev: Revision(rev),
                seq: Seq(seq),
                op: Box::new(op),
                selection: selection.map(Box::new),
                received,
            };
            a.handle.send(cmd).await.map(|()| None).map_err(|_| {
                (
                    ErrorCode::Unavailable,
                    "document closed; reconnect".into(),
                    Some(Seq(seq)),
                )
            })
        }
        ClientMsg::Presence { rev, selection } => {
            if let Some(sel) = &selection {
                check_selection(sel)?;
            }
            *presence = Some((Revision(rev), selection));
            Ok(None)
        }
        ClientMsg::Language { language } => {
            let a = attached
                .as_ref()
                .ok_or_else(|| refused(ErrorCode::BadMessage, "send join first"))?;
            if !valid_language(&language) {
                return Err(refused(
                    ErrorCode::BadMessage,
                    format!(
                        "language must be 1-{} characters of [A-Za-z0-9_+#.-]",
                        config::MAX_LANGUAGE_LEN
                    ),
                ));
            }
            let cmd = Command::Language {
                session,
                client: a.joined.client.clone(),
                language,
            };
            a.handle
                .send(cmd)
                .await
                .map(|()| None)
                .map_err(|_| refused(ErrorCode::Unavailable, "document closed; reconnect"))
        }
    }
}

fn check_selection(sel: &Selection) -> Result<(), Refused> {
    if sel.ranges.len() > config::MAX_SELECTION_RANGES {
        return Err(refused(
            ErrorCode::BadMessage,
            format!("at most {} selection ranges", config::MAX_SELECTION_RANGES),
        ));
    }
    Ok(())
}

/// True for a plausible language id (Monaco's are short ASCII names).
pub fn valid_language(language: &str) -> bool {
    !language.is_empty()
        && language.len() <= config::MAX_LANGUAGE_LEN
        && language
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'#' | b'.' | b'-'))
}

fn valid_color(color: &str) -> bool {
    let hex = color.strip_prefix('#').unwrap_or("");
    (hex.len() == 3 || hex.len() == 6) && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

fn validate_user(user: UserIn, _client: Option<&ClientId>) -> Result<(String, String), Refused> {
    let name = match user.name.map(|n| n.trim().to_owned()) {
        None => "Anonymous".to_owned(),
        Some(n) if n.is_empty() => "Anonymous".to_owned(),
        Some(n) => {
            if n.chars().count() > config::MAX_NAME_CHARS || n.chars().any(char::is_control) {
                return Err(refused(
                    ErrorCode::BadMessage,
                    format!(
                        "user name must be at most {} characters, without control characters",
                        config::MAX_NAME_CHARS
                    ),
                ));
            }
            n
        }
    };
    let color = match user.color {
        // The document assigns the least-used colour (document/colors.rs).
        None => String::new(),
        Some(c) if valid_color(&c) => c,
        Some(_) => {
            return Err(refused(
                ErrorCode::BadMessage,
                "color must be a CSS hex colour such as #3cb44b",
            ));
        }
    };
    Ok((name, color))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colors_and_languages() {
        assert!(valid_color("#abc") && valid_color("#A1B2C3"));
        assert!(!valid_color("red") && !valid_color("#abcd") && !valid_color("#ggg"));
        assert!(valid_language("typescript") && valid_language("c++"));
        assert!(!valid_language("") && !valid_language("a b") && !valid_language(&"x".repeat(33)));
    }
}
