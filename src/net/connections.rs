//! How many WebSocket connections this node serves, against its cap
//! ([`Limits::max_connections`](crate::config::Limits)). A connection holds a
//! [`ConnectionGuard`] from before its upgrade to the end of its session;
//! the count goes down when the guard is dropped, however the session ends
//! (a close, an early return, a panic unwinding its task).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The connection count of one node.
#[derive(Debug)]
pub struct Connections {
    open: AtomicUsize,
    max: usize,
}

/// One counted connection; dropping it gives its place back.
#[derive(Debug)]
pub struct ConnectionGuard {
    connections: Arc<Connections>,
}

impl Connections {
    /// A count with room for `max` connections.
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            open: AtomicUsize::new(0),
            max,
        })
    }

    /// A place for one more connection, or `None` when all `max` are taken.
    pub fn try_acquire(self: &Arc<Self>) -> Option<ConnectionGuard> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()?;
        crate::metrics::connections(1);
        Some(ConnectionGuard {
            connections: Arc::clone(self),
        })
    }

    /// Connections open now.
    pub fn count(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// The cap.
    pub fn max(&self) -> usize {
        self.max
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.connections.open.fetch_sub(1, Ordering::AcqRel);
        crate::metrics::connections(-1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_holds_and_every_guard_gives_its_place_back() {
        let c = Connections::new(2);
        let a = c.try_acquire().expect("first");
        let b = c.try_acquire().expect("second");
        assert!(c.try_acquire().is_none(), "over the cap");
        assert_eq!(c.count(), 2);
        drop(a);
        let again = c.try_acquire().expect("a place was freed");
        // A panicking holder gives its place back as it unwinds.
        let panicked = std::thread::spawn(move || {
            let _held = again;
            panic!("session bug");
        })
        .join();
        assert!(panicked.is_err());
        assert_eq!(c.count(), 1);
        drop(b);
        assert_eq!(c.count(), 0);
    }
}
