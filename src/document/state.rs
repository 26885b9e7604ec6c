//! The sequencer's state, free of I/O: the authoritative text, the revision,
//! the window of recent ops, `(client, seq)` dedupe and peers' cursors.
//!
//! Two revisions matter. `head` is what has been sequenced and applied in
//! memory; `published` is what the store has made durable and clients have
//! been told. Clients only ever see published revisions, so a joining client
//! gets the published text, presence is kept at the published revision, and
//! ops in `(published, head]` wait for the store before anyone hears of them.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use ropey::Rope;

use crate::ids::{ClientId, Revision, Seq};
use crate::ot::{OtError, Selection, TextOp};
use crate::protocol::ErrorCode;
use crate::store::OpRecord;

/// A refused request: the code and message sent to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Stable error code.
    pub code: ErrorCode,
    /// Why.
    pub message: String,
}

impl Refusal {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl From<OtError> for Refusal {
    fn from(e: OtError) -> Self {
        let code = match e {
            OtError::DocumentTooLarge { .. } | OtError::InsertTooLarge { .. } => {
                ErrorCode::TooLarge
            }
            _ => ErrorCode::BadOp,
        };
        Self::new(code, e.to_string())
    }
}

/// What the dedupe table says of an incoming `(client, seq)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dedupe {
    /// Never seen: sequence it.
    New,
    /// Committed as this revision; it may not be durable yet.
    Seen(Revision),
    /// Older than the client's latest op and not in memory: ask the store.
    Older,
    /// A client not in memory whose op is based before what the dedupe
    /// memory still covers: it may have been forgotten (see
    /// [`StateLimits::max_dedupe_clients`]), so ask the store; if the store
    /// has no such op, it is new.
    Unknown,
}

/// Limits the state enforces.
#[derive(Debug, Clone, Copy)]
pub struct StateLimits {
    /// Ops kept in memory once published.
    pub history_window: usize,
    /// Bytes of published ops kept in memory (whichever of this and
    /// `history_window` is reached first); older ones are read back from
    /// the store when needed.
    pub history_window_bytes: usize,
    /// Largest document.
    pub max_document_chars: usize,
    /// How far behind a base revision may be.
    pub max_catchup_revisions: u64,
    /// Clients whose latest `(seq, rev)` is remembered; past this, those
    /// whose latest op is older than the window are forgotten.
    pub max_dedupe_clients: usize,
}

/// An op to sequence.
#[derive(Debug, Clone)]
pub struct Submission {
    /// Sender.
    pub client: ClientId,
    /// Sender's counter.
    pub seq: Seq,
    /// Author recorded in history.
    pub author: String,
    /// Base revision.
    pub base: Revision,
    /// The op, parsed but not yet checked against the document.
    pub op: TextOp,
    /// Sender's cursors after the op, at the base revision plus the op.
    pub selection: Option<Selection>,
    /// Commit time, Unix ms.
    pub time_ms: i64,
}

/// An op (and the cursor sent with it) moved through `past`, ops committed
/// after its base that the caller read from the store, in order: what
/// [`DocumentState::submit`] does with the window, for history beyond it,
/// one page at a time so that no more than a page is held.
///
/// # Errors
///
/// `bad_op` when the op does not apply where `past` starts.
pub fn rebase_through(
    mut op: TextOp,
    mut selection: Option<Selection>,
    past: &[OpRecord],
) -> Result<(TextOp, Option<Selection>), Refusal> {
    for p in past {
        let (own, theirs) = op.transform(&p.op)?;
        selection = selection.map(|s| s.transform(&theirs));
        op = own;
    }
    Ok((op, selection))
}

/// The sequencer state of one document.
pub struct DocumentState {
    text: Rope,
    head: Revision,
    published_text: Rope,
    published: Revision,
    /// Ops in `(head - history.len(), head]`, oldest first. Ops after
    /// `published` are never evicted.
    history: VecDeque<Arc<OpRecord>>,
    /// [`OpRecord::approx_bytes`] of everything in `history`.
    history_bytes: usize,
    /// Each client's latest committed seq and the revision it became.
    dedupe: HashMap<ClientId, (Seq, Revision)>,
    /// Every client forgotten by the dedupe memory had its latest op before
    /// this revision, so an unknown client's op based at or after it is
    /// new, and one based before it is looked up in the store.
    dedupe_floor: Revision,
    /// Cursors of peers, valid at `published`.
    presence: HashMap<ClientId, Selection>,
    /// Cursors sent with unpublished ops, valid at that op's revision.
    op_selections: HashMap<Revision, (ClientId, Selection)>,
    limits: StateLimits,
}

impl DocumentState {
    /// A document at `rev` with `text`, and the ops that led to it (the most
    /// recent ones, oldest first) for the history window and dedupe.
    pub fn new(text: Rope, rev: Revision, recent: Vec<OpRecord>, limits: StateLimits) -> Self {
        let mut dedupe = HashMap::new();
        for op in &recent {
            dedupe.insert(op.client.clone(), (op.seq, op.rev));
        }
        let history_bytes = recent.iter().map(OpRecord::approx_bytes).sum();
        Self {
            published_text: text.clone(),
            text,
            head: rev,
            published: rev,
            history_bytes,
            history: recent.into_iter().map(Arc::new).collect(),
            dedupe,
            dedupe_floor: Revision(0),
            presence: HashMap::new(),
            op_selections: HashMap::new(),
            limits,
        }
    }

    /// The latest sequenced revision.
    pub fn head(&self) -> Revision {
        self.head
    }

    /// The latest durable revision, the one clients know.
    pub fn published(&self) -> Revision {
        self.published
    }

    /// The text at the head revision.
    pub fn head_text(&self) -> &Rope {
        &self.text
    }

    /// The text at the published revision.
    pub fn published_text(&self) -> &Rope {
        &self.published_text
    }

    /// Peers' cursors at the published revision.
    pub fn presence(&self, client: &ClientId) -> Option<&Selection> {
        self.presence.get(client)
    }

    /// The revision just before the oldest op held in memory.
    pub fn history_base(&self) -> Revision {
        Revision(self.head.0 - self.history.len() as u64)
    }

    /// Checks a client's `(client, seq)`, sent based on `base`, against
    /// what is committed.
    pub fn dedupe(&self, client: &ClientId, seq: Seq, base: Revision) -> Dedupe {
        match self.dedupe.get(client) {
            None if base < self.dedupe_floor => Dedupe::Unknown,
            None => Dedupe::New,
            Some((last, _)) if seq > *last => Dedupe::New,
            Some((last, rev)) if seq == *last => Dedupe::Seen(*rev),
            Some(_) => self
                .history
                .iter()
                .rev()
                .find(|op| op.client == *client && op.seq == seq)
                .map_or(Dedupe::Older, |op| Dedupe::Seen(op.rev)),
        }
    }

    /// Who wrote the client's latest op held in memory.
    pub fn author_of(&self, client: &ClientId) -> Option<&str> {
        self.history
            .iter()
            .rev()
            .find(|op| op.client == *client)
            .map(|op| op.author.as_str())
    }

    /// True when the client's latest committed op is known in memory.
    pub fn knows(&self, client: &ClientId) -> bool {
        self.dedupe.contains_key(client)
    }

    /// Records a client's latest committed op learned from the store (a
    /// client resuming after the document was reopened).
    pub fn remember(&mut self, client: &ClientId, seq: Seq, rev: Revision) {
        let entry = self.dedupe.entry(client.clone()).or_insert((seq, rev));
        if seq > entry.0 {
            *entry = (seq, rev);
        }
    }

    /// Checks that `base` is a revision a client may work from and says
    /// which older ops, not held in memory, are needed to go from it to the
    /// head: `Some((after, upto))` to read from the store.
    ///
    /// # Errors
    ///
    /// `unknown_rev` when `base` is after the published revision or further
    /// behind than the catch-up limit.
    pub fn older_needed(&self, base: Revision) -> Result<Option<(Revision, Revision)>, Refusal> {
        if base > self.published {
            return Err(Refusal::new(
                ErrorCode::UnknownRev,
                format!(
                    "revision {base} is in the future (latest is {})",
                    self.published
                ),
            ));
        }
        if self.published.0 - base.0 > self.limits.max_catchup_revisions {
            return Err(Refusal::new(
                ErrorCode::UnknownRev,
                format!(
                    "revision {base} is more than {} revisions behind: reload",
                    self.limits.max_catchup_revisions
                ),
            ));
        }
        let oldest = self.history_base();
        Ok((base < oldest).then_some((base, oldest)))
    }

    /// Ops in `(after, upto]` held in memory, or `None` when some are not.
    pub fn ops_between(&self, after: Revision, upto: Revision) -> Option<Vec<Arc<OpRecord>>> {
        let base = self.history_base();
        if after < base || upto > self.head || after > upto {
            return None;
        }
        let start = (after.0 - base.0) as usize;
        let end = (upto.0 - base.0) as usize;
        Some(self.history.range(start..end).cloned().collect())
    }

    /// Length of the text at `base`, given the older ops the caller fetched.
    fn len_at(&self, base: Revision, older: &[OpRecord]) -> Option<usize> {
        if base == self.head {
            return Some(self.text.len_chars());
        }
        let next = base.next();
        older
            .iter()
            .find(|op| op.rev == next)
            .map(|op| op.op.base_len())
            .or_else(|| {
                self.ops_between(base, next)
                    .and_then(|ops| ops.first().map(|op| op.op.base_len()))
            })
    }

    /// Transforms `op`, based on `base`, to apply at the head: through
    /// `older` (the fetched ops, `(base, history_base]`) then the window.
    fn rebase(
        &self,
        base: Revision,
        older: &[OpRecord],
        mut op: TextOp,
    ) -> Result<TextOp, Refusal> {
        let oldest = self.history_base();
        for past in older.iter().filter(|o| o.rev > base && o.rev <= oldest) {
            op = op.transform(&past.op)?.0;
        }
        let skip = base.0.saturating_sub(oldest.0) as usize;
        for past in self.history.iter().skip(skip) {
            op = op.transform(&past.op)?.0;
        }
        Ok(op)
    }

    /// Sequences an op: checks it against the document at its base
    /// revision, transforms it to the head, applies it and assigns the next
    /// revision. `older` holds the ops asked for by [`Self::older_needed`].
    ///
    /// # Errors
    ///
    /// `unknown_rev`, `bad_op` or `too_large`; the state is unchanged.
    pub fn submit(
        &mut self,
        sub: Submission,
        older: &[OpRecord],
    ) -> Result<Arc<OpRecord>, Refusal> {
        self.older_needed(sub.base)?;
        let doc_len = self.len_at(sub.base, older).ok_or_else(|| {
            Refusal::new(
                ErrorCode::UnknownRev,
                format!("history before revision {} is not available", sub.base),
            )
        })?;
        if sub.op.base_len() != doc_len {
            return Err(OtError::LengthMismatch {
                op_len: sub.op.base_len(),
                doc_len,
            }
            .into());
        }
        if let Some(sel) = &sub.selection
            && !sel.fits(sub.op.target_len())
        {
            return Err(Refusal::new(
                ErrorCode::BadMessage,
                "selection is outside the document",
            ));
        }
        let op = self.rebase(sub.base, older, sub.op.clone())?;
        // The op's own cursor moves through what was committed since its
        // base: transform it through the same ops, inserted before it. This
        // reads the window as it is before the op joins it.
        let selection = sub
            .selection
            .map(|sel| self.rebase_selection(sub.base, older, &sub.op, sel));
        op.apply(&mut self.text, self.limits.max_document_chars)?;
        crate::metrics::transform_depth(self.head.0.saturating_sub(sub.base.0));
        self.head = self.head.next();
        if let Some(since) = selection {
            self.op_selections
                .insert(self.head, (sub.client.clone(), since));
        }
        let record = Arc::new(OpRecord {
            rev: self.head,
            client: sub.client.clone(),
            seq: sub.seq,
            author: sub.author,
            op,
            time_ms: sub.time_ms,
        });
        self.dedupe.insert(sub.client, (sub.seq, self.head));
        if self.dedupe.len() > self.limits.max_dedupe_clients {
            // A resend is based before the op it resends, so the floor
            // below sends any resend of a forgotten client's op to the store.
            let floor = self.history_base();
            self.dedupe.retain(|_, (_, rev)| *rev >= floor);
            self.dedupe_floor = self.dedupe_floor.max(floor);
        }
        self.history_bytes += record.approx_bytes();
        self.history.push_back(Arc::clone(&record));
        Ok(record)
    }

    /// A selection made after `own` (based on `base`) moved to the head,
    /// before `own` is sequenced: the concurrent ops `(base, head]` are
    /// transformed against `own` so they apply after it.
    fn rebase_selection(
        &self,
        base: Revision,
        older: &[OpRecord],
        own: &TextOp,
        sel: Selection,
    ) -> Selection {
        let oldest = self.history_base();
        let mut own = own.clone();
        let mut sel = sel;
        let concurrent = older
            .iter()
            .filter(|o| o.rev > base && o.rev <= oldest)
            .map(|o| &o.op)
            .chain(
                self.history
                    .iter()
                    .skip(base.0.saturating_sub(oldest.0) as usize)
                    .map(|o| &o.op),
            )
            .take((self.head.0 - base.0) as usize);
        for past in concurrent {
            if let Ok((own2, past2)) = own.transform(past) {
                sel = sel.transform(&past2);
                own = own2;
            }
        }
        sel
    }

    /// Sets a client's cursors, sent at revision `base`, moving them to the
    /// published revision.
    ///
    /// # Errors
    ///
    /// `unknown_rev` when the revision is not published or not in memory;
    /// `bad_message` when a range is outside the document.
    pub fn set_presence(
        &mut self,
        client: &ClientId,
        base: Revision,
        selection: Option<Selection>,
    ) -> Result<Option<&Selection>, Refusal> {
        let Some(sel) = selection else {
            self.presence.remove(client);
            return Ok(None);
        };
        if base > self.published {
            return Err(Refusal::new(ErrorCode::UnknownRev, "revision not known"));
        }
        let ops = self
            .ops_between(base, self.published)
            .ok_or_else(|| Refusal::new(ErrorCode::UnknownRev, "revision too old for presence"))?;
        let len = ops
            .first()
            .map_or(self.published_text.len_chars(), |o| o.op.base_len());
        if !sel.fits(len) {
            return Err(Refusal::new(
                ErrorCode::BadMessage,
                "selection is outside the document",
            ));
        }
        let sel = ops.iter().fold(sel, |s, o| s.transform(&o.op));
        self.presence.insert(client.clone(), sel);
        Ok(self.presence.get(client))
    }

    /// Forgets a client's cursors.
    pub fn clear_presence(&mut self, client: &ClientId) {
        self.presence.remove(client);
    }

    /// Ops sequenced after `after`, in order.
    pub fn unpublished_after(&self, after: Revision) -> Vec<Arc<OpRecord>> {
        self.ops_between(after, self.head).unwrap_or_default()
    }

    /// Marks everything up to `upto` durable: `text` is the text at `upto`.
    /// Moves peers' cursors through the newly published ops and returns the
    /// cursors that came with those ops (to broadcast, valid at `upto`).
    pub fn publish(&mut self, upto: Revision, text: Rope) -> Vec<(ClientId, Selection)> {
        let ops = self.ops_between(self.published, upto).unwrap_or_default();
        for sel in self.presence.values_mut() {
            for op in &ops {
                *sel = sel.transform(&op.op);
            }
        }
        let mut announced = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            if let Some((client, sel)) = self.op_selections.remove(&op.rev) {
                let sel = ops[i + 1..].iter().fold(sel, |s, o| s.transform(&o.op));
                self.presence.insert(client.clone(), sel.clone());
                announced.push((client, sel));
            }
        }
        self.published = upto;
        self.published_text = text;
        let unpublished = (self.head.0 - self.published.0) as usize;
        let keep = self.limits.history_window + unpublished;
        while self.history.len() > keep
            || (self.history_bytes > self.limits.history_window_bytes
                && self.history.len() > unpublished)
        {
            if let Some(op) = self.history.pop_front() {
                self.history_bytes -= op.approx_bytes();
            }
        }
        announced
    }

    /// Drops everything sequenced after the published revision (the store
    /// refused it for good): the state is as it was at `published`.
    pub fn discard_unpublished(&mut self) {
        let n = (self.head.0 - self.published.0) as usize;
        for _ in 0..n {
            if let Some(op) = self.history.pop_back() {
                self.history_bytes -= op.approx_bytes();
                self.op_selections.remove(&op.rev);
            }
        }
        self.head = self.published;
        self.text = self.published_text.clone();
        self.dedupe.clear();
        for op in &self.history {
            self.dedupe.insert(op.client.clone(), (op.seq, op.rev));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ot::{Component, Range};

    fn limits() -> StateLimits {
        StateLimits {
            history_window: 4,
            history_window_bytes: 1 << 20,
            max_dedupe_clients: 1_000,
            max_document_chars: 1_000,
            max_catchup_revisions: 10,
        }
    }

    fn client(n: &str) -> ClientId {
        ClientId::parse(n).expect("id")
    }

    fn insert(len: usize, at: usize, s: &str) -> TextOp {
        TextOp::from_components([
            Component::Retain(at),
            Component::Insert(s),
            Component::Retain(len - at),
        ])
    }

    fn sub(who: &str, seq: u64, base: u64, op: TextOp) -> Submission {
        Submission {
            client: client(who),
            seq: Seq(seq),
            author: who.into(),
            base: Revision(base),
            op,
            selection: None,
            time_ms: 0,
        }
    }

    fn publish_all(s: &mut DocumentState) {
        let head = s.head();
        let text = s.head_text().clone();
        s.publish(head, text);
    }

    #[test]
    fn concurrent_ops_are_transformed_in_order() {
        let mut s = DocumentState::new(Rope::from_str("ac"), Revision(0), vec![], limits());
        s.submit(sub("a", 1, 0, insert(2, 1, "b")), &[]).expect("a");
        publish_all(&mut s);
        // b was made on revision 0 too: inserts at the same place as a's.
        let r = s.submit(sub("b", 1, 0, insert(2, 1, "X")), &[]).expect("b");
        assert_eq!(r.rev, Revision(2));
        assert_eq!(s.head_text().to_string(), "aXbc");
        assert_eq!(s.published(), Revision(1));
        assert_eq!(s.published_text().to_string(), "abc");
    }

    #[test]
    fn refusals_change_nothing() {
        let mut s = DocumentState::new(Rope::from_str("abc"), Revision(0), vec![], limits());
        let bad_len = s.submit(sub("a", 1, 0, insert(2, 0, "x")), &[]);
        assert_eq!(bad_len.map(|_| ()).unwrap_err().code, ErrorCode::BadOp);
        let future = s.submit(sub("a", 1, 5, insert(3, 0, "x")), &[]);
        assert_eq!(future.map(|_| ()).unwrap_err().code, ErrorCode::UnknownRev);
        let huge = s.submit(sub("a", 1, 0, insert(3, 0, &"x".repeat(1_000))), &[]);
        assert_eq!(huge.map(|_| ()).unwrap_err().code, ErrorCode::TooLarge);
        assert_eq!(
            (s.head(), s.head_text().to_string()),
            (Revision(0), "abc".into())
        );
        assert_eq!(s.dedupe(&client("a"), Seq(1), Revision(0)), Dedupe::New);
    }

    #[test]
    fn dedupe_knows_committed_seqs() {
        let mut s = DocumentState::new(Rope::new(), Revision(0), vec![], limits());
        s.submit(sub("a", 1, 0, insert(0, 0, "x")), &[]).expect("1");
        publish_all(&mut s);
        s.submit(sub("a", 2, 1, insert(1, 1, "y")), &[]).expect("2");
        assert_eq!(
            s.dedupe(&client("a"), Seq(2), Revision(0)),
            Dedupe::Seen(Revision(2))
        );
        assert_eq!(
            s.dedupe(&client("a"), Seq(1), Revision(0)),
            Dedupe::Seen(Revision(1))
        );
        assert_eq!(s.dedupe(&client("a"), Seq(3), Revision(0)), Dedupe::New);
        assert_eq!(s.dedupe(&client("b"), Seq(1), Revision(0)), Dedupe::New);
    }

    #[test]
    fn forgotten_clients_are_looked_up_not_taken_for_new() {
        let mut lim = limits();
        lim.max_dedupe_clients = 3;
        let mut s = DocumentState::new(Rope::new(), Revision(0), vec![], lim);
        for i in 0..10u64 {
            let who = format!("c{i}");
            s.submit(sub(&who, 1, i, insert(i as usize, 0, "z")), &[])
                .expect("op");
            publish_all(&mut s);
        }
        // The window holds revisions 7..=10; c0 (revision 1) is forgotten.
        assert!(!s.knows(&client("c0")));
        // A resend of its op is based before it: the store must answer.
        assert_eq!(
            s.dedupe(&client("c0"), Seq(1), Revision(0)),
            Dedupe::Unknown
        );
        // A client never seen, working from a recent revision, is new.
        assert_eq!(s.dedupe(&client("zz"), Seq(1), Revision(10)), Dedupe::New);
        // Those in the window are still remembered.
        assert_eq!(
            s.dedupe(&client("c9"), Seq(1), Revision(9)),
            Dedupe::Seen(Revision(10))
        );
    }

    #[test]
    fn old_bases_need_the_store_and_too_old_ones_are_refused() {
        let mut s = DocumentState::new(Rope::new(), Revision(0), vec![], limits());
        for i in 0..8 {
            s.submit(sub("a", i + 1, i, insert(i as usize, i as usize, "z")), &[])
                .expect("op");
            publish_all(&mut s);
        }
        // The window keeps 4 ops: revisions 5..=8.
        assert_eq!(s.older_needed(Revision(6)), Ok(None));
        assert_eq!(
            s.older_needed(Revision(2)),
            Ok(Some((Revision(2), Revision(4))))
        );
        assert!(s.ops_between(Revision(2), Revision(8)).is_none());
        let mut far = DocumentState::new(Rope::new(), Revision(50), vec![], limits());
        assert!(far.older_needed(Revision(1)).is_err());
        assert!(far.set_presence(&client("a"), Revision(51), None).is_ok());
    }

    #[test]
    fn presence_moves_with_published_ops_and_op_selections_are_announced() {
        let mut s = DocumentState::new(Rope::from_str("hello"), Revision(0), vec![], limits());
        let caret = |at| Selection {
            ranges: vec![Range {
                anchor: at,
                head: at,
            }],
        };
        s.set_presence(&client("b"), Revision(0), Some(caret(5)))
            .expect("presence");
        let mut op = sub("a", 1, 0, insert(5, 0, ">> "));
        op.selection = Some(caret(3));
        s.submit(op, &[]).expect("op");
        // Not published yet: b's cursor is still at the published revision.
        assert_eq!(s.presence(&client("b")), Some(&caret(5)));
        let text = s.head_text().clone();
        let announced = s.publish(Revision(1), text);
        assert_eq!(s.presence(&client("b")), Some(&caret(8)));
        assert_eq!(announced, vec![(client("a"), caret(3))]);
        let outside = s.set_presence(&client("b"), Revision(1), Some(caret(99)));
        assert_eq!(outside.map(|_| ()).unwrap_err().code, ErrorCode::BadMessage);
    }

    #[test]
    fn an_ops_cursor_moves_through_exactly_the_concurrent_ops() {
        let caret = |at| Selection {
            ranges: vec![Range {
                anchor: at,
                head: at,
            }],
        };
        let mut s = DocumentState::new(Rope::from_str("abcd"), Revision(0), vec![], limits());
        // Revision 1 (known to b) moves "a" to the end as "Q", keeping the
        // length; revision 2, concurrent with b's op, appends "Z".
        let move_a = TextOp::from_components([
            Component::Delete(1),
            Component::Retain(3),
            Component::Insert("Q"),
        ]);
        s.submit(sub("a", 1, 0, move_a), &[]).expect("1");
        publish_all(&mut s);
        s.submit(sub("a", 2, 1, insert(4, 4, "Z")), &[]).expect("2");
        publish_all(&mut s);
        // b, at revision 1 ("bcdQ"), types "Y" at 1 with its caret after it;
        // the concurrent append does not move it, and revision 1 must not
        // be applied to it a second time (that would pull it back to 1).
        let mut op = sub("b", 1, 1, insert(4, 1, "Y"));
        op.selection = Some(caret(2));
        s.submit(op, &[]).expect("b");
        let text = s.head_text().clone();
        let announced = s.publish(Revision(3), text);
        assert_eq!(s.published_text().to_string(), "bYcdQZ");
        assert_eq!(announced, vec![(client("b"), caret(2))]);
    }

    #[test]
    fn discarding_returns_to_the_published_state() {
        let mut s = DocumentState::new(Rope::from_str("a"), Revision(0), vec![], limits());
        s.submit(sub("a", 1, 0, insert(1, 1, "b")), &[])
            .expect("op");
        s.discard_unpublished();
        assert_eq!(
            (s.head(), s.head_text().to_string()),
            (Revision(0), "a".into())
        );
        assert_eq!(s.dedupe(&client("a"), Seq(1), Revision(0)), Dedupe::New);
    }
}
