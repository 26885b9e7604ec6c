//! The queue of frames from a document to one session, bounded twice: by
//! a message count (the channel's capacity) and by bytes.
//!
//! The bytes counted are those of every frame sent and not yet handed to
//! the connection: in the channel, and taken off it but not yet encoded
//! (`net::outgoing`). A [`Queued`] frame gives its bytes back when it is
//! dropped, whichever way the session ends, so the count cannot leak.
//!
//! A frame that would take the count over the cap is refused exactly as a
//! full channel is ([`TrySendError::Full`]), so the document drops that
//! session with 1013 as it drops any slow reader. A frame into an empty
//! queue is always taken, however big, so no frame is refused because of
//! its own size (one op near the message limit, to a session whose cap is
//! smaller). The `joined`, which can hold a whole document, does not come
//! through here: the session writes it before the connection reads this
//! queue.

use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytestring::ByteString;
use tokio::sync::mpsc;
pub use tokio::sync::mpsc::error::{TryRecvError, TrySendError};

/// The byte count shared by the two ends.
#[derive(Debug)]
struct Budget {
    /// Bytes sent and not yet written.
    queued: AtomicUsize,
    /// The cap.
    max: usize,
}

impl Budget {
    /// Reserves `len` bytes: false when that would go over the cap and the
    /// queue is not empty.
    fn reserve(&self, len: usize) -> bool {
        self.queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                let total = queued.saturating_add(len);
                (queued == 0 || total <= self.max).then_some(total)
            })
            .is_ok()
    }

    fn release(&self, len: usize) {
        self.queued.fetch_sub(len, Ordering::AcqRel);
    }
}

/// What a session is sent by its document: frames, in order, through a
/// queue bounded in messages and in bytes. Cloning it shares the bounds.
#[derive(Debug, Clone)]
pub struct Outbound {
    tx: mpsc::Sender<ByteString>,
    budget: Arc<Budget>,
}

/// The session's end of its [`Outbound`] queue.
#[derive(Debug)]
pub struct OutboundReceiver {
    rx: mpsc::Receiver<ByteString>,
    budget: Arc<Budget>,
}

/// A frame taken off the queue. Its bytes count against the queue's cap
/// until it is dropped, so keep it until the frame is written.
#[derive(Debug)]
pub struct Queued {
    frame: ByteString,
    budget: Option<Arc<Budget>>,
}

/// A queue to one session: at most `messages` frames (at least 1) and,
/// unless it is empty, at most `bytes` bytes of frames not yet written.
pub fn outbound(messages: usize, bytes: usize) -> (Outbound, OutboundReceiver) {
    let (tx, rx) = mpsc::channel(messages.max(1));
    let budget = Arc::new(Budget {
        queued: AtomicUsize::new(0),
        max: bytes,
    });
    (
        Outbound {
            tx,
            budget: Arc::clone(&budget),
        },
        OutboundReceiver { rx, budget },
    )
}

impl Outbound {
    /// Queues `frame` without waiting. [`TrySendError::Full`] when the queue
    /// holds its count of messages or the frame would take it over its
    /// bytes (the session cannot keep up); [`TrySendError::Closed`] when
    /// the session has gone.
    ///
    /// # Errors
    ///
    /// As above; the frame is given back.
    pub fn try_send(&self, frame: ByteString) -> Result<(), TrySendError<ByteString>> {
        let len = frame.len();
        if !self.budget.reserve(len) {
            return Err(TrySendError::Full(frame));
        }
        self.tx.try_send(frame).inspect_err(|_| {
            self.budget.release(len);
        })
    }

    /// Bytes sent and not yet written.
    pub fn queued_bytes(&self) -> usize {
        self.budget.queued.load(Ordering::Acquire)
    }

    /// True when the session has gone.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

impl OutboundReceiver {
    /// The next frame, waiting for one; `None` when every sender is gone
    /// and the queue is empty.
    pub async fn recv(&mut self) -> Option<Queued> {
        let frame = self.rx.recv().await?;
        Some(self.queued(frame))
    }

    /// The next frame, or `Pending` with `cx` woken when one comes: for a
    /// reader that is itself polled (the connection's body).
    pub fn poll_recv(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Queued>> {
        self.rx
            .poll_recv(cx)
            .map(|frame| frame.map(|f| self.queued(f)))
    }

    /// The next frame if one is queued.
    ///
    /// # Errors
    ///
    /// [`TryRecvError::Empty`] or, when every sender is gone,
    /// [`TryRecvError::Disconnected`].
    pub fn try_recv(&mut self) -> Result<Queued, TryRecvError> {
        let frame = self.rx.try_recv()?;
        Ok(self.queued(frame))
    }

    /// Bytes sent and not yet written.
    pub fn queued_bytes(&self) -> usize {
        self.budget.queued.load(Ordering::Acquire)
    }

    fn queued(&self, frame: ByteString) -> Queued {
        Queued {
            frame,
            budget: Some(Arc::clone(&self.budget)),
        }
    }
}

impl Queued {
    /// A frame the session makes itself, counted against no queue (it
    /// goes out in order with the queued ones).
    pub fn local(frame: ByteString) -> Self {
        Self {
            frame,
            budget: None,
        }
    }

    /// The frame's text (a cheap, shared copy).
    pub fn frame(&self) -> ByteString {
        self.frame.clone()
    }
}

impl From<ByteString> for Queued {
    /// See [`Queued::local`].
    fn from(frame: ByteString) -> Self {
        Self::local(frame)
    }
}

impl std::fmt::Display for Queued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.frame)
    }
}

impl Deref for Queued {
    type Target = ByteString;

    fn deref(&self) -> &ByteString {
        &self.frame
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        if let Some(budget) = &self.budget {
            budget.release(self.frame.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(n: usize) -> ByteString {
        "x".repeat(n).into()
    }

    #[test]
    fn bytes_are_counted_until_the_frame_is_written() {
        let (tx, mut rx) = outbound(100, 10);
        assert!(tx.try_send(frame(4)).is_ok());
        assert!(tx.try_send(frame(6)).is_ok());
        assert_eq!(tx.queued_bytes(), 10);
        // One byte more is over the cap: refused like a full queue.
        assert!(matches!(tx.try_send(frame(1)), Err(TrySendError::Full(_))));
        // Taken off the queue but not written: still counted.
        let first = rx.try_recv().expect("frame");
        assert_eq!(first.len(), 4);
        assert_eq!(tx.queued_bytes(), 10);
        assert!(tx.try_send(frame(1)).is_err());
        // Written (dropped): room again.
        drop(first);
        assert_eq!(tx.queued_bytes(), 6);
        assert!(tx.try_send(frame(4)).is_ok());
        assert!(tx.try_send(frame(1)).is_err());
    }

    #[test]
    fn a_frame_into_an_empty_queue_is_always_taken() {
        let (tx, mut rx) = outbound(100, 10);
        // The first frame (a `joined` with a whole document) is over the cap
        // on its own, and is taken.
        assert!(tx.try_send(frame(1_000)).is_ok());
        assert!(tx.try_send(frame(1)).is_err(), "nothing after it fits");
        drop(rx.try_recv().expect("joined"));
        assert_eq!(rx.queued_bytes(), 0);
        assert!(tx.try_send(frame(1)).is_ok());
    }

    #[test]
    fn the_message_count_still_holds() {
        let (tx, rx) = outbound(2, usize::MAX);
        assert!(tx.try_send(frame(1)).is_ok());
        assert!(tx.try_send(frame(1)).is_ok());
        assert!(matches!(tx.try_send(frame(1)), Err(TrySendError::Full(_))));
        assert_eq!(tx.queued_bytes(), 2, "a refused frame is not counted");
        drop(rx);
        assert!(matches!(
            tx.try_send(frame(1)),
            Err(TrySendError::Closed(_))
        ));
        assert_eq!(tx.queued_bytes(), 2);
        assert!(tx.is_closed());
    }

    #[test]
    fn local_frames_count_against_nothing() {
        let (tx, _rx) = outbound(4, 10);
        let own = Queued::local(frame(50));
        assert_eq!(own.frame(), frame(50));
        drop(own);
        assert_eq!(tx.queued_bytes(), 0);
    }
}
