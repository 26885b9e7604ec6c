//! Delivery latency: from the instant an op's sender sent it to each other
//! client's receipt of it. The send instant is known once the sender has
//! its ack (which names the revision); a receipt that comes before that
//! waits in the revision's entry.
//!
//! A thousand clients on one document make millions of receipts a second,
//! so the bookkeeping is a ring indexed by revision (revisions are dense),
//! and clients hand in their receipts in batches, one lock per batch.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Instant;

use hdrhistogram::Histogram;

use crate::stats::record;

/// The measured window: ops sent inside it are measured.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub start: Instant,
    pub end: Instant,
}

impl Window {
    pub fn contains(&self, t: Instant) -> bool {
        t >= self.start && t < self.end
    }
}

/// One document's revisions in flight between a sender and its receivers.
pub struct DocTrack {
    revs: Mutex<Revs>,
    /// How many clients besides the sender receive each op.
    receivers: usize,
}

#[derive(Default)]
struct Revs {
    /// The revision of `entries[0]`.
    base: u64,
    entries: VecDeque<RevEntry>,
}

#[derive(Default)]
struct RevEntry {
    sent: Option<Instant>,
    waiting: Vec<Instant>,
    seen: usize,
}

impl Revs {
    /// The entry of `rev`; `None` for one already done with (forgotten).
    fn entry(&mut self, rev: u64) -> Option<&mut RevEntry> {
        if self.entries.is_empty() {
            self.base = rev;
        }
        let ix = usize::try_from(rev.checked_sub(self.base)?).ok()?;
        if ix >= self.entries.len() {
            self.entries.resize_with(ix + 1, RevEntry::default);
        }
        self.entries.get_mut(ix)
    }

    /// Forgets the oldest revisions that every receiver has seen. One whose
    /// receiver went away (and resumed past it) stays, and so do the ones
    /// after it: a few bytes each for the length of a run.
    fn trim(&mut self, receivers: usize) {
        while let Some(e) = self.entries.front() {
            if e.sent.is_none() || e.seen < receivers {
                break;
            }
            self.entries.pop_front();
            self.base += 1;
        }
    }
}

impl DocTrack {
    pub fn new(receivers: usize) -> DocTrack {
        DocTrack {
            revs: Mutex::new(Revs::default()),
            receivers,
        }
    }

    /// The sender's ack of `rev`, sent at `sent`: the receipts that came
    /// first are measured now, into the sender's `hist`.
    pub fn on_ack(&self, rev: u64, sent: Instant, win: Option<Window>, hist: &mut Histogram<u64>) {
        if self.receivers == 0 {
            return;
        }
        let mut revs = self.revs.lock().expect("lock");
        let Some(e) = revs.entry(rev) else {
            return;
        };
        e.sent = Some(sent);
        if win.is_some_and(|w| w.contains(sent)) {
            for w in e.waiting.drain(..) {
                record(hist, w.saturating_duration_since(sent));
            }
        }
        e.waiting = Vec::new();
        revs.trim(self.receivers);
    }

    /// Receipts `(rev, when)`, under one lock.
    pub fn on_receive(
        &self,
        got: &[(u64, Instant)],
        win: Option<Window>,
        hist: &mut Histogram<u64>,
    ) {
        let mut revs = self.revs.lock().expect("lock");
        for &(rev, now) in got {
            let Some(e) = revs.entry(rev) else {
                continue;
            };
            e.seen += 1;
            match e.sent {
                Some(s) if win.is_some_and(|w| w.contains(s)) => {
                    record(hist, now.saturating_duration_since(s));
                }
                Some(_) => {}
                None => e.waiting.push(now),
            }
        }
        revs.trim(self.receivers);
    }

    /// Revisions held (for the tests).
    #[cfg(test)]
    fn held(&self) -> usize {
        self.revs.lock().expect("lock").entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::new_hist;
    use std::time::Duration;

    #[test]
    fn receipts_before_and_after_the_ack_are_measured_once() {
        let t0 = Instant::now();
        let win = Some(Window {
            start: t0,
            end: t0 + Duration::from_secs(60),
        });
        let ms = |n| t0 + Duration::from_millis(n);
        let track = DocTrack::new(2);
        let (mut sender, mut a, mut b) = (new_hist(), new_hist(), new_hist());
        // Rev 7: one receiver before the ack, one after.
        track.on_receive(&[(7, ms(30))], win, &mut a);
        track.on_ack(7, ms(10), win, &mut sender);
        assert_eq!(sender.len(), 1, "the early receipt, measured at the ack");
        track.on_receive(&[(7, ms(50)), (8, ms(60))], win, &mut b);
        assert_eq!(b.len(), 1);
        assert_eq!(track.held(), 1, "rev 7 done, rev 8 waits for its ack");
        track.on_ack(8, ms(20), win, &mut sender);
        track.on_receive(&[(8, ms(70))], win, &mut a);
        assert_eq!(track.held(), 0);
        assert_eq!(sender.len() + a.len() + b.len(), 4);
        assert!(b.max() >= 39_000 && b.max() <= 41_000, "{}", b.max());
        // A receipt for a forgotten revision is ignored.
        track.on_receive(&[(7, ms(80))], win, &mut a);
        assert_eq!(a.len(), 1);
    }
}
