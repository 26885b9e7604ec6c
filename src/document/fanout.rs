//! Who is connected to a document, and what each has been sent.
//!
//! Answers to a client (`ack`, `error`) go out at once. News of other
//! clients (their ops, cursors, arrivals) is coalesced: when it comes faster
//! than [`coalesce_interval`], it waits and goes to every session in one
//! burst, so a busy document costs one wake-up and one socket write per peer
//! per interval instead of one per op, and a lone typist's peers still see
//! each keystroke at once. Order is kept per session: before an answer, the
//! session is sent the news queued before it (an `ack` must follow the ops
//! it was transformed over), and a session that joins does not get news
//! from before its `joined`.

use std::collections::HashMap;
use std::time::Duration;

use bytestring::ByteString;
use tokio::time::Instant;

use super::{Kick, Outbound, SessionId};
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
        outbound: Outbound,
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
    last_burst: Instant,
    base: Duration,
}

/// How long news may wait for company on a document with `peers` sessions:
/// `base`, stretched on a crowded document so its fan-out stays within
/// [`config::DOCUMENT_WRITES_PER_SEC`], and at most
/// [`config::MAX_OUTBOUND_COALESCE`]. Zero stays zero (never hold).
pub fn coalesce_interval(base: Duration, peers: usize) -> Duration {
    if base.is_zero() {
        return base;
    }
    let spread = Duration::from_secs_f64(peers as f64 / f64::from(config::DOCUMENT_WRITES_PER_SEC));
    base.max(spread)
        .min(config::MAX_OUTBOUND_COALESCE.max(base))
}

impl Fanout {
    pub fn new(base: Duration) -> Self {
        Self {
            sessions: HashMap::new(),
            news: Vec::new(),
            last_burst: Instant::now() - config::MAX_OUTBOUND_COALESCE.max(base),
            base,
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

    /// When the pending news must go out, if there is any.
    pub fn due(&self) -> Option<Instant> {
        (!self.news.is_empty()).then(|| self.last_burst + self.hold())
    }

    fn hold(&self) -> Duration {
        coalesce_interval(self.base, self.sessions.len())
    }

    /// Queues `frame` for every session but `except`'s, sending at once if
    /// the last burst was long enough ago. Returns the sessions whose queue
    /// is full (the caller drops them).
    pub fn news(&mut self, frame: ByteString, except: Option<&ClientId>) -> Vec<ClientId> {
        self.news.push((frame, except.cloned()));
        if self.last_burst.elapsed() >= self.hold() {
            self.burst()
        } else {
            Vec::new()
        }
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
    pub fn burst(&mut self) -> Vec<ClientId> {
        self.last_burst = Instant::now();
        let mut full = Vec::new();
        if self.news.is_empty() {
            return full;
        }
        for (client, s) in &mut self.sessions {
            if !send_news(client, s, &self.news) {
                full.push(client.clone());
            }
            s.news_sent = 0;
        }
        self.news.clear();
        full
    }
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

    #[test]
    fn coalescing_stretches_with_the_crowd() {
        assert_eq!(coalesce_interval(ms(5), 10), ms(5));
        assert_eq!(coalesce_interval(ms(5), 200), ms(5));
        assert_eq!(coalesce_interval(ms(5), 1_000), ms(25));
        assert_eq!(
            coalesce_interval(ms(5), 100_000),
            config::MAX_OUTBOUND_COALESCE
        );
        assert_eq!(coalesce_interval(ms(0), 1_000), ms(0));
    }

    fn user(id: &str) -> User {
        User {
            id: id.into(),
            name: id.into(),
            color: "#000".into(),
        }
    }

    fn join(f: &mut Fanout, id: &str) -> (ClientId, OutboundReceiver) {
        let (tx, rx) = outbound(16, usize::MAX);
        let (kick, _) = oneshot::channel();
        let client = ClientId::parse(id).expect("id");
        let rights = (crate::auth::Permission::Write, Default::default());
        f.insert(
            client.clone(),
            SessionEntry::new(1, user(id), rights, tx, kick, Default::default()),
        );
        (client, rx)
    }

    fn drain(rx: &mut OutboundReceiver) -> Vec<String> {
        std::iter::from_fn(|| rx.try_recv().ok().map(|b| b.to_string())).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn news_is_held_within_an_interval_and_answers_keep_order() {
        let mut f = Fanout::new(ms(5));
        let (a, mut ra) = join(&mut f, "alice");
        let (_b, mut rb) = join(&mut f, "bob");
        // The first news after a quiet spell goes at once.
        assert!(f.news("op1".into(), Some(&a)).is_empty());
        assert_eq!(drain(&mut rb), ["op1"]);
        assert!(drain(&mut ra).is_empty(), "not to its author");
        // The next, within the interval, waits.
        let _ = f.news("op2".into(), None);
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
    async fn a_session_that_missed_a_frame_gets_nothing_more() {
        let mut f = Fanout::new(ms(0));
        let client = ClientId::parse("slow").expect("id");
        let (tx, mut rx) = outbound(2, usize::MAX);
        let (kick, _) = oneshot::channel();
        let rights = (crate::auth::Permission::Write, Default::default());
        f.insert(
            client.clone(),
            SessionEntry::new(1, user("slow"), rights, tx, kick, Default::default()),
        );
        assert!(f.news("op1".into(), None).is_empty());
        assert!(f.news("op2".into(), None).is_empty());
        assert_eq!(
            f.news("op3".into(), None),
            std::slice::from_ref(&client),
            "full"
        );
        // The session reads on before the document has removed it: what
        // comes after the lost frame must not reach it.
        assert_eq!(drain(&mut rx), ["op1", "op2"]);
        assert_eq!(f.news("op4".into(), None), std::slice::from_ref(&client));
        assert!(!f.reply(&client, "ack".into()));
        assert!(drain(&mut rx).is_empty(), "a gap after op2");
    }
}
