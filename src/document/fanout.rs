//! Who is connected to a document, and what each has been sent.
//!
//! Answers to a client (`ack`, `error`) go out at once. News of other
//! clients (their ops, cursors, arrivals) goes out as soon as the
//! document's budget of socket writes allows ([`WriteBudget`]): at light
//! load that is at once, and only a document whose fan-out would cost more
//! than [`config::DOCUMENT_WRITES_PER_SEC`] holds news, so that it goes to
//! every session in one burst (one wake-up and one socket write per peer
//! per burst instead of one per op). Order is kept per session: before an
//! answer, the session is sent the news queued before it (an `ack` must
//! follow the ops it was transformed over), and a session that joins does
//! not get news from before its `joined`.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use bytestring::ByteString;
use tokio::time::Instant;

use super::{Kick, Outbound, SessionId, batch};
use crate::config;
use crate::ids::{ClientId, Seq};
use crate::protocol::User;

/// One connected session.
pub(super) struct SessionEntry {
    /// Which connection it is (a client id may reconnect).
    pub session: SessionId,
    /// Who it is.
    pub user: User,
    /// What it may do now.
    pub permission: crate::auth::Permission,
    /// Where that comes from.
    pub rights: super::SessionRights,
    /// Closes it; taken when used.
    pub kick: Option<Kick>,
    /// The latest seq this session was acked, so that an op acked to it
    /// when published is not acked again when its resend arrives.
    pub acked: Option<Seq>,
    /// Where it comes from and when it was last heard (admin listing).
    pub origin: super::SessionOrigin,
    outbound: Outbound,
    /// It takes several messages in one frame.
    batch: bool,
    /// How many entries of the pending news it has been sent already.
    news_sent: usize,
    /// A frame could not be queued for it: it is being dropped, and must
    /// get nothing more, or a frame after the lost one would reach it
    /// through the close's flush (a gap in its revisions). Its queue may
    /// have room again before the caller has removed it (several sessions
    /// are dropped one at a time, and each removal broadcasts a `leave`).
    broken: bool,
}

impl SessionEntry {
    pub fn new(
        session: SessionId,
        user: User,
        (permission, rights): (crate::auth::Permission, super::SessionRights),
        (outbound, batch): (Outbound, bool),
        kick: Kick,
        origin: super::SessionOrigin,
    ) -> Self {
        Self {
            session,
            user,
            permission,
            rights,
            kick: Some(kick),
            acked: None,
            origin,
            outbound,
            batch,
            news_sent: 0,
            broken: false,
        }
    }
}

/// The sessions of one document and the news not yet sent to all of them.
pub(super) struct Fanout {
    sessions: HashMap<ClientId, SessionEntry>,
    /// Frames for everyone but their `except`, oldest first.
    news: Vec<(ByteString, Option<ClientId>)>,
    budget: WriteBudget,
}

/// A token bucket of socket writes: it fills at `per_sec` up to `depth`
/// writes and a burst to `n` sessions takes `n`. With `depth` set by the
/// coalescing interval (`per_sec` × interval, 200 writes at 5 ms), news is
/// held only while the document writes faster than `per_sec` on average;
/// a burst to more peers than `depth` waits until the bucket holds that
/// many, which spreads a crowded document's bursts `peers / per_sec` apart
/// (1,000 peers: 25 ms). An interval of zero never holds anything.
#[derive(Debug)]
pub struct WriteBudget {
    per_sec: f64,
    depth: f64,
    tokens: f64,
    at: Instant,
}

impl WriteBudget {
    pub fn new(interval: Duration, per_sec: u32) -> Self {
        let per_sec = f64::from(per_sec.max(1));
        let depth = per_sec * interval.as_secs_f64();
        Self {
            per_sec,
            depth,
            tokens: depth,
            at: Instant::now(),
        }
    }

    fn unlimited(&self) -> bool {
        self.depth <= 0.0
    }

    /// How full the bucket is at `now`, for a burst to `peers` sessions.
    fn refill(&mut self, now: Instant, peers: usize) {
        let cap = self.depth.max(peers as f64);
        let gained = now.saturating_duration_since(self.at).as_secs_f64() * self.per_sec;
        self.tokens = (self.tokens + gained).min(cap);
        self.at = now;
    }

    /// When a burst to `peers` sessions may go: `now` or later, and never
    /// later than [`config::MAX_OUTBOUND_COALESCE`] from now.
    pub fn ready_at(&mut self, now: Instant, peers: usize) -> Instant {
        if self.unlimited() {
            return now;
        }
        self.refill(now, peers);
        let missing = peers as f64 - self.tokens;
        if missing <= 0.0 {
            return now;
        }
        let wait = Duration::from_secs_f64(missing / self.per_sec);
        now + wait.min(config::MAX_OUTBOUND_COALESCE)
    }

    /// Takes a burst to `peers` sessions. The bucket goes below zero when
    /// [`config::MAX_OUTBOUND_COALESCE`] cut the wait short, by at most one
    /// burst, so a crowd too big for the budget bursts every
    /// `MAX_OUTBOUND_COALESCE` and a quiet spell soon pays the debt back.
    pub fn spend(&mut self, now: Instant, peers: usize) {
        if self.unlimited() {
            return;
        }
        self.refill(now, peers);
        let peers = peers as f64;
        self.tokens = (self.tokens - peers).max(-peers);
    }
}

impl Fanout {
    /// A document whose news may cost `per_sec` socket writes a second,
    /// in bursts of `interval` of that (see [`WriteBudget`]).
    pub fn new(interval: Duration, per_sec: u32) -> Self {
        Self {
            sessions: HashMap::new(),
            news: Vec::new(),
            budget: WriteBudget::new(interval, per_sec),
        }
    }

    pub fn get(&self, client: &ClientId) -> Option<&SessionEntry> {
        self.sessions.get(client)
    }

    pub fn get_mut(&mut self, client: &ClientId) -> Option<&mut SessionEntry> {
        self.sessions.get_mut(client)
    }

    pub fn contains(&self, client: &ClientId) -> bool {
        self.sessions.contains_key(client)
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&ClientId, &SessionEntry)> {
        self.sessions.iter()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&ClientId, &mut SessionEntry)> {
        self.sessions.iter_mut()
    }

    /// Adds a session that has just been sent `joined`; it gets only news
    /// queued from now on. Returns the session it replaces, if any.
    pub fn insert(&mut self, client: ClientId, mut entry: SessionEntry) -> Option<SessionEntry> {
        entry.news_sent = self.news.len();
        self.sessions.insert(client, entry)
    }

    pub fn remove(&mut self, client: &ClientId) -> Option<SessionEntry> {
        self.sessions.remove(client)
    }

    /// Removes every session, after sending them the pending news.
    pub fn take_all(&mut self) -> Vec<SessionEntry> {
        let _ = self.burst();
        self.sessions.drain().map(|(_, s)| s).collect()
    }

    /// When the pending news may go out, if there is any: now, unless the
    /// document's write budget is spent.
    pub fn due(&mut self) -> Option<Instant> {
        if self.news.is_empty() {
            return None;
        }
        let peers = self.sessions.len();
        Some(self.budget.ready_at(Instant::now(), peers))
    }

    /// Queues `frame` for every session but `except`'s. It goes out at the
    /// next [`Fanout::burst`] (the document bursts once it has handled what
    /// it was woken for, so the ops of one commit go in one burst) or before
    /// an answer to a session.
    pub fn news(&mut self, frame: ByteString, except: Option<&ClientId>) {
        self.news.push((frame, except.cloned()));
    }

    /// Sends `frame` to `client` now, after the news queued before it.
    /// False when its queue is full (the caller drops it); true also when
    /// it is not connected.
    pub fn reply(&mut self, client: &ClientId, frame: ByteString) -> bool {
        let Some(s) = self.sessions.get_mut(client) else {
            return true;
        };
        let sent = send_news(client, s, &self.news) && s.outbound.try_send(frame).is_ok();
        s.broken = !sent;
        sent
    }

    /// Sends the pending news to every session. Returns the sessions whose
    /// queue is full.
    ///
    /// A crowded document's burst holds many frames for each of many
    /// peers. A session that batches and gets all of them (none is its
    /// own, and it has had none yet) is sent them as one array, built once
    /// for all such sessions: one queue slot and no copy per session,
    /// where each frame would cost a slot and the session a copy.
    pub fn burst(&mut self) -> Vec<ClientId> {
        let mut full = Vec::new();
        if self.news.is_empty() {
            return full;
        }
        self.budget.spend(Instant::now(), self.sessions.len());
        let news = &self.news;
        // A lone frame goes as it is: no array, and no set to build.
        let authors: HashSet<&ClientId> = if news.len() > 1 {
            news.iter().filter_map(|(_, e)| e.as_ref()).collect()
        } else {
            HashSet::new()
        };
        let mut shared: Option<Vec<ByteString>> = None;
        for (client, s) in &mut self.sessions {
            let whole = news.len() > 1 && s.batch && s.news_sent == 0 && !authors.contains(client);
            let sent = if whole {
                let frames = shared
                    .get_or_insert_with(|| batch::batch_frames(news.iter().map(|(f, _)| &**f)));
                send_frames(s, frames)
            } else {
                send_news(client, s, news)
            };
            if !sent {
                full.push(client.clone());
            }
            s.news_sent = 0;
        }
        self.news.clear();
        full
    }
}

/// Sends `s` frames made for many sessions (shared, not copied). False
/// when its queue is full.
fn send_frames(s: &mut SessionEntry, frames: &[ByteString]) -> bool {
    let sent = !s.broken
        && frames
            .iter()
            .all(|f| s.outbound.try_send(f.clone()).is_ok());
    s.broken = !sent;
    sent
}

/// Sends `s` the news it has not had. False when its queue is full (in
/// messages or in bytes).
fn send_news(
    client: &ClientId,
    s: &mut SessionEntry,
    news: &[(ByteString, Option<ClientId>)],
) -> bool {
    let unsent = news.get(s.news_sent..).unwrap_or_default();
    s.news_sent = news.len();
    let sent = !s.broken
        && unsent
            .iter()
            .filter(|(_, except)| except.as_ref() != Some(client))
            .all(|(frame, _)| s.outbound.try_send(frame.clone()).is_ok());
    s.broken = !sent;
    sent
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::{OutboundReceiver, outbound};
    use tokio::sync::oneshot;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[tokio::test(start_paused = true)]
    async fn light_load_never_waits() {
        // 50 peers at 500 ops/s is 25,000 writes/s: inside 40,000.
        let mut b = WriteBudget::new(ms(5), 40_000);
        for _ in 0..1_000 {
            let now = Instant::now();
            assert_eq!(b.ready_at(now, 50), now);
            b.spend(now, 50);
            tokio::time::advance(ms(2)).await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_document_is_held_to_its_budget() {
        let mut b = WriteBudget::new(ms(5), 40_000);
        // 200 peers: the bucket holds one burst; the next waits 5 ms.
        let now = Instant::now();
        assert_eq!(b.ready_at(now, 200), now);
        b.spend(now, 200);
        assert_eq!(b.ready_at(now, 200), now + ms(5));
        // 1,000 peers wait for 1,000 writes: 25 ms apart.
        tokio::time::advance(ms(5)).await;
        let now = Instant::now();
        assert_eq!(b.ready_at(now, 1_000), now + ms(20));
        // A crowd past the budget is never held more than the maximum.
        let mut b = WriteBudget::new(ms(5), 40_000);
        let now = Instant::now();
        b.spend(now, 100_000);
        assert_eq!(
            b.ready_at(now, 100_000),
            now + config::MAX_OUTBOUND_COALESCE
        );
        // Zero never holds.
        let mut b = WriteBudget::new(ms(0), 40_000);
        b.spend(now, 1_000_000);
        assert_eq!(b.ready_at(now, 1_000_000), now);
    }

    fn user(id: &str) -> User {
        User {
            id: id.into(),
            name: id.into(),
            color: "#000".into(),
        }
    }

    fn join(f: &mut Fanout, id: &str) -> (ClientId, OutboundReceiver) {
        join_as(f, id, false)
    }

    fn join_as(f: &mut Fanout, id: &str, batched: bool) -> (ClientId, OutboundReceiver) {
        let (tx, rx) = outbound(16, usize::MAX);
        let (kick, _) = oneshot::channel();
        let client = ClientId::parse(id).expect("id");
        let rights = (crate::auth::Permission::Write, Default::default());
        f.insert(
            client.clone(),
            SessionEntry::new(1, user(id), rights, (tx, batched), kick, Default::default()),
        );
        (client, rx)
    }

    fn drain(rx: &mut OutboundReceiver) -> Vec<String> {
        std::iter::from_fn(|| rx.try_recv().ok().map(|b| b.to_string())).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn news_waits_for_the_burst_and_answers_keep_order() {
        let mut f = Fanout::new(ms(5), config::DOCUMENT_WRITES_PER_SEC);
        let (a, mut ra) = join(&mut f, "alice");
        let (_b, mut rb) = join(&mut f, "bob");
        // News is due at once at light load, and goes at the burst.
        f.news("op1".into(), Some(&a));
        assert_eq!(f.due(), Some(Instant::now()));
        assert!(f.burst().is_empty());
        assert_eq!(drain(&mut rb), ["op1"]);
        assert!(drain(&mut ra).is_empty(), "not to its author");
        // Queued news waits for the burst.
        f.news("op2".into(), None);
        assert!(drain(&mut rb).is_empty());
        assert!(f.due().is_some());
        // An answer to alice brings her the news queued before it, first.
        assert!(f.reply(&a, "ack".into()));
        assert_eq!(drain(&mut ra), ["op2", "ack"]);
        // A late joiner gets nothing from before it joined.
        let (_c, mut rc) = join(&mut f, "carol");
        let _ = f.burst();
        assert_eq!(drain(&mut rb), ["op2"]);
        assert!(drain(&mut ra).is_empty(), "alice had it already");
        assert!(drain(&mut rc).is_empty());
        assert!(f.due().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn batching_sessions_share_one_array_per_burst() {
        let mut f = Fanout::new(ms(0), config::DOCUMENT_WRITES_PER_SEC);
        let (a, mut ra) = join_as(&mut f, "alice", true);
        let (_b, mut rb) = join_as(&mut f, "bob", true);
        let (carol, mut rc) = join_as(&mut f, "carol", true);
        let (_d, mut rd) = join_as(&mut f, "dave", false);
        f.news("op1".into(), Some(&a));
        f.news("op2".into(), None);
        f.news("op3".into(), None);
        // Carol is answered in the middle: she gets op1 to op4 before it.
        f.news("op4".into(), None);
        assert!(f.reply(&carol, "ack".into()));
        f.news("op5".into(), None);
        assert!(f.burst().is_empty());
        assert_eq!(drain(&mut rb), ["[op1,op2,op3,op4,op5]"], "one array");
        assert_eq!(
            drain(&mut ra),
            ["op2", "op3", "op4", "op5"],
            "an author gets the others' frames, not its own"
        );
        assert_eq!(drain(&mut rc), ["op1", "op2", "op3", "op4", "ack", "op5"]);
        assert_eq!(
            drain(&mut rd),
            ["op1", "op2", "op3", "op4", "op5"],
            "not batching"
        );
        // A lone frame goes as it is.
        f.news("op6".into(), None);
        assert!(f.burst().is_empty());
        assert_eq!(drain(&mut rb), ["op6"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_that_missed_a_frame_gets_nothing_more() {
        let mut f = Fanout::new(ms(0), config::DOCUMENT_WRITES_PER_SEC);
        let client = ClientId::parse("slow").expect("id");
        let (tx, mut rx) = outbound(2, usize::MAX);
        let (kick, _) = oneshot::channel();
        let rights = (crate::auth::Permission::Write, Default::default());
        f.insert(
            client.clone(),
            SessionEntry::new(
                1,
                user("slow"),
                rights,
                (tx, false),
                kick,
                Default::default(),
            ),
        );
        for op in ["op1", "op2", "op3"] {
            f.news(op.into(), None);
        }
        assert_eq!(f.burst(), std::slice::from_ref(&client), "full");
        // The session reads on before the document has removed it: what
        // comes after the lost frame must not reach it.
        assert_eq!(drain(&mut rx), ["op1", "op2"]);
        f.news("op4".into(), None);
        assert_eq!(f.burst(), std::slice::from_ref(&client));
        assert!(!f.reply(&client, "ack".into()));
        assert!(drain(&mut rx).is_empty(), "a gap after op2");
    }
}
