//! The outgoing half of a WebSocket: the response body the connection
//! writes, and the handle ([`Outgoing`]) a session or the forwarding proxy
//! sends through.
//!
//! Once a session has joined, the body reads the document's queue to it
//! ([`OutboundReceiver`]) itself. A frame then goes from the document's task
//! to the socket with one wake-up, the connection's, where it used to take
//! two: the session's task, then the connection's, through actix-ws's own
//! channel. At light load that hop was one task switch per op per peer.
//!
//! What the session makes itself (refusals, the `joined`, pings, the close)
//! comes through a small channel of its own. Before the join it is the only
//! source. After it, a frame the session makes is written only once the
//! body has taken everything the document had queued, so a refusal cannot
//! overtake an ack; a close is written once the queue is empty, so a kick's
//! explanation is not lost.
//!
//! A close waits for the connection to take what is queued, as long as the
//! session lets it (five seconds). A client that has stopped reading never
//! lets the connection ask for more, so when the session ends its handle
//! takes the document's queue away and drops it: frames queued for a
//! client that is gone are not kept for as long as its socket stays open.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use actix_codec::Encoder;
use actix_http::ws::{Codec, Message};
use actix_web::body::{BodyStream, MessageBody};
use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{CloseReason, Closed, MessageStream};
use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use futures_util::Stream;
use tokio::sync::{mpsc, oneshot};

use crate::document::{OutboundReceiver, Queued};

/// Frames the session may have on their way before its sends wait (as
/// actix-ws's own channel).
const CONTROL_QUEUE: usize = 32;
/// Frames taken off the document's queue per chunk handed to the
/// connection: it writes a chunk and asks for the next.
const WRITE_BATCH: usize = 64;
/// The same for a session that batches: its burst is a frame or a few
/// ([`crate::document::batch::BATCH_BYTES`] each), not one per message.
const WRITE_BATCH_BATCHED: usize = 256;
/// Bytes of frames taken per chunk, about what the connection buffers
/// before it writes (actix-http's write buffer is 32 KiB). Frames wait in
/// the document's queue, shared by every session a burst went to, until
/// the connection asks for them; taken, each session has its own copy.
const CHUNK_BYTES: usize = 32 * 1024;
/// A write buffer up to this size is kept for the next chunk.
const KEEP_BUFFER: usize = 4 * 1024;

/// What the session asks of the body.
enum Control {
    Text(ByteString),
    Ping(Bytes),
    Pong(Bytes),
    /// Read the document's queue from now on (it has been put in the
    /// shared slot).
    Attach,
    Close(Option<CloseReason>),
}

/// The document's queue to the session and whether its frames are batched:
/// read by the body, taken away by the handle when the session ends.
type QueueSlot = Arc<Mutex<Option<(OutboundReceiver, bool)>>>;

fn lock(slot: &QueueSlot) -> std::sync::MutexGuard<'_, Option<(OutboundReceiver, bool)>> {
    slot.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Accepts a WebSocket upgrade: the response to return, the handle to send
/// through, and the client's messages.
///
/// # Errors
///
/// The request is not a WebSocket handshake.
pub fn handle(
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<(HttpResponse, Outgoing, MessageStream), actix_web::Error> {
    // actix-ws does the handshake and owns the incoming side; its outgoing
    // side is replaced with the body below.
    let (response, _, stream) = actix_ws::handle(req, payload)?;
    let (outgoing, body) = pair();
    let response = response
        .set_body(BodyStream::new(body).boxed())
        .map_into_boxed_body();
    Ok((response, outgoing, stream))
}

fn pair() -> (Outgoing, Body) {
    let (tx, rx) = mpsc::channel(CONTROL_QUEUE);
    let (done_tx, done_rx) = oneshot::channel();
    let sent = Arc::new(AtomicU64::new(0));
    let slot = QueueSlot::default();
    let body = Body {
        control: rx,
        slot: Arc::clone(&slot),
        attached: false,
        codec: Codec::new(),
        buf: BytesMut::new(),
        closing: None,
        finished: false,
        done: Some(done_tx),
        sent: Arc::clone(&sent),
    };
    let outgoing = Outgoing {
        control: Some(tx),
        slot,
        done: Some(done_rx),
        sent,
    };
    (outgoing, body)
}

/// Sends to one WebSocket client (see the module's documentation).
pub struct Outgoing {
    /// `None` once closed.
    control: Option<mpsc::Sender<Control>>,
    slot: QueueSlot,
    /// Resolves when the body has handed over its last frame (the close)
    /// or is gone.
    done: Option<oneshot::Receiver<()>>,
    sent: Arc<AtomicU64>,
}

impl Outgoing {
    async fn send(&mut self, c: Control) -> Result<(), Closed> {
        match &self.control {
            Some(tx) => tx.send(c).await.map_err(|_| Closed),
            None => Err(Closed),
        }
    }

    /// Sends a frame the session made, after everything queued for it.
    ///
    /// # Errors
    ///
    /// The connection has gone.
    pub async fn text(&mut self, frame: impl Into<ByteString>) -> Result<(), Closed> {
        self.send(Control::Text(frame.into())).await
    }

    /// Sends a ping.
    ///
    /// # Errors
    ///
    /// The connection has gone.
    pub async fn ping(&mut self, bytes: &[u8]) -> Result<(), Closed> {
        self.send(Control::Ping(Bytes::copy_from_slice(bytes)))
            .await
    }

    /// Answers a ping.
    ///
    /// # Errors
    ///
    /// The connection has gone.
    pub async fn pong(&mut self, bytes: &[u8]) -> Result<(), Closed> {
        self.send(Control::Pong(Bytes::copy_from_slice(bytes)))
            .await
    }

    /// From now on the connection writes what the document queues for the
    /// session, as batched frames if `batch`.
    ///
    /// # Errors
    ///
    /// The connection has gone.
    pub async fn attach(&mut self, queue: OutboundReceiver, batch: bool) -> Result<(), Closed> {
        *lock(&self.slot) = Some((queue, batch));
        self.send(Control::Attach).await
    }

    /// Closes the WebSocket once everything queued is handed to the
    /// connection, and waits for that (bound it with a timeout: a client
    /// that does not read never lets it happen).
    ///
    /// # Errors
    ///
    /// The connection has gone.
    pub async fn close(mut self, reason: Option<CloseReason>) -> Result<(), Closed> {
        self.send(Control::Close(reason)).await?;
        self.control = None;
        if let Some(done) = self.done.take() {
            let _ = done.await;
        }
        Ok(())
    }

    /// Bytes of text frames handed to the connection so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// The same count, to read after the handle is gone.
    pub fn sent_counter(&self) -> SentBytes {
        SentBytes(Arc::clone(&self.sent))
    }
}

impl Drop for Outgoing {
    fn drop(&mut self) {
        // Whatever the connection has not taken by now, it never will
        // while its client does not read.
        let queue = lock(&self.slot).take();
        drop(queue);
    }
}

/// Bytes of text frames a connection has been handed (see
/// [`Outgoing::sent_counter`]).
pub struct SentBytes(Arc<AtomicU64>);

impl SentBytes {
    /// The count so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The response body: the frames, encoded, for the connection to write.
struct Body {
    control: mpsc::Receiver<Control>,
    slot: QueueSlot,
    /// The session has joined: the slot is read.
    attached: bool,
    codec: Codec,
    buf: BytesMut,
    /// A close was asked for, with this reason: written once the queue is
    /// empty.
    closing: Option<Option<CloseReason>>,
    finished: bool,
    /// Dropped when finished (see [`Outgoing::close`]).
    done: Option<oneshot::Sender<()>>,
    sent: Arc<AtomicU64>,
}

impl Body {
    fn encode(&mut self, msg: Message) -> Result<(), actix_web::Error> {
        if let Message::Text(t) = &msg {
            self.sent.fetch_add(t.len() as u64, Ordering::Relaxed);
        }
        self.codec
            .encode(msg, &mut self.buf)
            .map_err(actix_web::Error::from)
    }

    /// Encodes what the document has queued, up to a chunk's worth, and
    /// registers for more when the queue runs dry. Returns whether the
    /// chunk filled (more may be waiting).
    fn take_queued(&mut self, cx: &mut Context<'_>) -> Result<bool, actix_web::Error> {
        if !self.attached {
            return Ok(false);
        }
        let mut frames: Vec<Queued> = Vec::new();
        let mut bytes = 0;
        let (batch, full) = {
            let mut slot = lock(&self.slot);
            let Some((queue, batch)) = slot.as_mut() else {
                return Ok(false);
            };
            let batch = *batch;
            let most = if batch {
                WRITE_BATCH_BATCHED
            } else {
                WRITE_BATCH
            };
            while frames.len() < most && bytes < CHUNK_BYTES {
                match queue.poll_recv(cx) {
                    Poll::Ready(Some(f)) => {
                        bytes += f.len();
                        frames.push(f);
                    }
                    Poll::Ready(None) => {
                        *slot = None;
                        break;
                    }
                    Poll::Pending => break,
                }
            }
            (batch, frames.len() == most || bytes >= CHUNK_BYTES)
        };
        // Room for the frames and their headers at once, not by doubling.
        self.buf.reserve(bytes + frames.len() * 14 + 2);
        // Each frame's bytes count against the session's queue until it is
        // encoded here (the frames are dropped at the end of this call).
        if batch && frames.len() > 1 {
            let batches = crate::document::batch::batch_frames(frames.iter().map(|f| &***f));
            for b in batches {
                self.encode(Message::Text(b))?;
            }
        } else {
            for f in &frames {
                self.encode(Message::Text(f.frame()))?;
            }
        }
        Ok(full)
    }

    /// Everything the document has queued so far.
    fn drain_queued(&mut self, cx: &mut Context<'_>) -> Result<(), actix_web::Error> {
        while self.take_queued(cx)? {}
        Ok(())
    }

    /// Nothing more to write: the queue goes, and a waiting close returns.
    fn finish(&mut self) {
        self.finished = true;
        self.attached = false;
        let queue = lock(&self.slot).take();
        drop(queue);
        self.done = None;
    }

    fn step(&mut self, cx: &mut Context<'_>) -> Result<(), actix_web::Error> {
        while self.closing.is_none() {
            match self.control.poll_recv(cx) {
                Poll::Ready(Some(Control::Text(t))) => {
                    self.drain_queued(cx)?;
                    self.encode(Message::Text(t))?;
                }
                Poll::Ready(Some(Control::Ping(b))) => self.encode(Message::Ping(b))?,
                Poll::Ready(Some(Control::Pong(b))) => self.encode(Message::Pong(b))?,
                Poll::Ready(Some(Control::Attach)) => self.attached = true,
                Poll::Ready(Some(Control::Close(reason))) => self.closing = Some(reason),
                // The session ended without a close (the client went):
                // nothing more to write.
                Poll::Ready(None) => {
                    self.finish();
                    return Ok(());
                }
                Poll::Pending => break,
            }
        }
        if let Some(reason) = self.closing.take() {
            self.drain_queued(cx)?;
            self.encode(Message::Close(reason))?;
            self.finish();
            return Ok(());
        }
        self.take_queued(cx).map(drop)
    }
}

impl Stream for Body {
    type Item = Result<Bytes, actix_web::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if !this.finished
            && let Err(e) = this.step(cx)
        {
            this.finish();
            return Poll::Ready(Some(Err(e)));
        }
        if !this.buf.is_empty() {
            // A big buffer goes whole, not split: a split leaves the
            // allocation behind for the next chunk, so every connection
            // that once wrote a big chunk kept a buffer that size for good
            // (with 1,000 connections, 97 of the server's 239 MB in
            // heaptrack). A small one is split and reused, which saves an
            // allocation per frame at light load.
            let chunk = if this.buf.capacity() > KEEP_BUFFER {
                std::mem::take(&mut this.buf)
            } else {
                this.buf.split()
            };
            return Poll::Ready(Some(Ok(chunk.freeze())));
        }
        if this.finished {
            return Poll::Ready(None);
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use actix_codec::Decoder;
    use actix_http::ws::Frame;

    use super::*;
    use crate::document::outbound;

    /// What the client reads: each frame as text, or `close` / `ping`.
    fn decode(bytes: &[u8]) -> Vec<String> {
        let mut codec = Codec::new().client_mode();
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(frame) = codec.decode(&mut buf).expect("a valid frame") {
            out.push(match frame {
                Frame::Text(t) => String::from_utf8(t.to_vec()).expect("utf-8"),
                Frame::Close(r) => format!("close {}", r.map_or(0, |r| u16::from(r.code))),
                Frame::Ping(_) => "ping".to_owned(),
                other => format!("{other:?}"),
            });
        }
        out
    }

    /// Everything the body has to write now (it would wait for more), and
    /// `end` when it has ended.
    fn written(body: &mut Body) -> Vec<String> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut bytes = Vec::new();
        loop {
            match Pin::new(&mut *body).poll_next(&mut cx) {
                Poll::Ready(Some(chunk)) => bytes.extend_from_slice(&chunk.expect("a chunk")),
                Poll::Ready(None) => {
                    let mut out = decode(&bytes);
                    out.push("end".to_owned());
                    return out;
                }
                Poll::Pending => return decode(&bytes),
            }
        }
    }

    fn frame(s: &str) -> ByteString {
        ByteString::from(s.to_owned())
    }

    #[tokio::test]
    async fn the_queue_is_read_only_after_the_greeting() {
        let (mut out, mut body) = pair();
        let (tx, rx) = outbound(16, 1 << 20);
        tx.try_send(frame(r#"{"n":1}"#)).expect("queued");
        out.text(frame("joined")).await.expect("sent");
        assert_eq!(written(&mut body), ["joined"]);
        out.attach(rx, false).await.expect("attached");
        tx.try_send(frame(r#"{"n":2}"#)).expect("queued");
        assert_eq!(written(&mut body), [r#"{"n":1}"#, r#"{"n":2}"#]);
        assert_eq!(out.sent(), 6 + 7 + 7);
        assert_eq!(tx.queued_bytes(), 0, "written frames give their bytes back");
    }

    #[tokio::test]
    async fn a_refusal_goes_after_what_the_document_queued_before_it() {
        let (mut out, mut body) = pair();
        let (tx, rx) = outbound(16, 1 << 20);
        out.attach(rx, false).await.expect("attached");
        assert!(written(&mut body).is_empty());
        tx.try_send(frame("ack")).expect("queued");
        out.text(frame("error")).await.expect("sent");
        out.ping(b"").await.expect("sent");
        assert_eq!(written(&mut body), ["ack", "error", "ping"]);
    }

    #[tokio::test]
    async fn a_close_waits_for_the_queue_and_ends_the_body() {
        let (mut out, mut body) = pair();
        let (tx, rx) = outbound(16, 1 << 20);
        out.attach(rx, false).await.expect("attached");
        assert!(written(&mut body).is_empty());
        tx.try_send(frame("explains the kick")).expect("queued");
        let reason = CloseReason {
            code: actix_ws::CloseCode::Other(1013),
            description: None,
        };
        let closing = tokio::spawn(out.close(Some(reason)));
        // The close is sent, and waits for the connection to take it.
        while body.control.is_empty() {
            tokio::task::yield_now().await;
        }
        assert!(!closing.is_finished());
        assert_eq!(
            written(&mut body),
            ["explains the kick", "close 1013", "end"]
        );
        closing.await.expect("joined").expect("closed");
    }

    #[tokio::test]
    async fn what_a_gone_session_never_took_is_dropped() {
        let (mut out, mut body) = pair();
        let (tx, rx) = outbound(16, 1 << 20);
        out.attach(rx, false).await.expect("attached");
        assert!(written(&mut body).is_empty());
        // The client stopped reading: the connection asks for nothing more.
        tx.try_send(frame("never read")).expect("queued");
        assert!(!tx.is_closed());
        drop(out);
        // The queue's receiving end is dropped, and with it what it held.
        assert!(tx.is_closed(), "the document sees the session gone");
        assert_eq!(written(&mut body), ["end"]);
    }

    #[tokio::test]
    async fn a_batching_session_gets_its_burst_as_one_array() {
        let (mut out, mut body) = pair();
        let (tx, rx) = outbound(16, 1 << 20);
        out.attach(rx, true).await.expect("attached");
        tx.try_send(frame(r#"{"n":1}"#)).expect("queued");
        tx.try_send(frame(r#"[{"n":2},{"n":3}]"#)).expect("queued");
        assert_eq!(written(&mut body), [r#"[{"n":1},{"n":2},{"n":3}]"#]);
        tx.try_send(frame(r#"{"n":4}"#)).expect("queued");
        assert_eq!(written(&mut body), [r#"{"n":4}"#], "one alone");
    }

    #[tokio::test]
    async fn a_session_that_ends_without_a_close_ends_the_body() {
        let (out, mut body) = pair();
        drop(out);
        assert_eq!(written(&mut body), ["end"]);
    }
}
