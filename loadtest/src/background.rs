//! `--background-joins N`: while the writers type, N joiner tasks loop on
//! the documents (joiner `j` on document `j % docs`), each alternately
//!
//! * a **fresh** join (`client: null, rev: null`): the server answers with
//!   the whole text; and
//! * a **resume** under the client id that fresh join was given, from
//!   `--resume-behind` revisions (default 20,000) before the revision it
//!   saw: the server answers with that many catch-up ops, which it has to
//!   read from its store (they are older than its in-memory window).
//!
//! Each joiner reads its `joined` completely, checks it, closes the
//! connection and starts the next one, so that the document task is asked
//! for a full text or a long catch-up over and over while the writers'
//! acks are measured. The hardening issue's benchmark: the writers' ack
//! p99 must stay within 2× of the same run without the joiners.
//!
//! The joiners run on a runtime and OS thread of their own: parsing a
//! megabyte of `joined` must not hold up the writers' tasks inside the load
//! generator (that would be head-of-line blocking of our own, measured as
//! the server's).
//!
//! Checks (an error each, with a sample): a fresh join must carry `text`,
//! its revision must not go backwards, and its length must be consistent
//! with what the writers did since the run started (each writer op inserts
//! a multiple of `--chars` characters, nothing deletes); a resume must
//! carry `ops` (not the text), exactly `rev − base` of them with the
//! revisions `base+1 ..= rev` in order, each op's base length the previous
//! op's target length, the op at the fresh join's revision ending at that
//! join's text length, and the ops after it applying to that text. A resume
//! the server answers with the whole text instead (which the protocol
//! allows, for instance when the catch-up is too big) is not an error: it is
//! checked like a fresh join and counted apart (`resume_as_text`).
//!
//! Measured per join, for joins started inside the measured window: connect
//! start → `joined` received (`connect_join_ms`) and `join` sent → `joined`
//! received (`join_ms`); the frame's size; for resumes the number of ops.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use ropey::Rope;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{ServerMsg, connect, parse_op};
use crate::stats::{new_hist, record, summary};

/// Longest wait for one background join (connect to `joined`).
const JOIN_TIMEOUT: Duration = Duration::from_secs(30);

/// What the load's clients tell the joiners about one document: its
/// revision and length when the first client joined, before anyone typed.
pub struct DocProgress {
    /// `u64::MAX` until a client has joined.
    start_rev: AtomicU64,
    start_chars: AtomicU64,
}

impl Default for DocProgress {
    fn default() -> Self {
        DocProgress {
            start_rev: AtomicU64::new(u64::MAX),
            start_chars: AtomicU64::new(0),
        }
    }
}

impl DocProgress {
    /// A client joined before the load started: the document's start.
    pub fn started(&self, rev: u64, chars: u64) {
        if self
            .start_rev
            .compare_exchange(u64::MAX, rev, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.start_chars.store(chars, Ordering::Release);
        }
    }

    fn start(&self) -> Option<(u64, u64)> {
        match self.start_rev.load(Ordering::Acquire) {
            u64::MAX => None,
            r => Some((r, self.start_chars.load(Ordering::Acquire))),
        }
    }
}

/// What the joiners are told.
#[derive(Clone)]
pub struct BackgroundConfig {
    pub joiners: usize,
    /// A resume starts this many revisions before the fresh join's.
    pub resume_behind: u64,
    /// Pause between one join's close and the next connect.
    pub pause: Duration,
    /// Each writer op inserts a multiple of this many characters.
    pub chars: usize,
    /// `ws://…/ws` of each document.
    pub ws_urls: Vec<String>,
    pub progress: Vec<Arc<DocProgress>>,
}

/// Latency and size of one kind of join.
struct Kind {
    join: Histogram<u64>,
    connect_join: Histogram<u64>,
    /// Joins started in the window / completed and checked.
    measured: u64,
    total: u64,
    frame_max: usize,
    frame_min: usize,
    /// Resume: catch-up ops per join, min and max; fresh: text chars.
    size_min: u64,
    size_max: u64,
}

impl Default for Kind {
    fn default() -> Self {
        Kind {
            join: new_hist(),
            connect_join: new_hist(),
            measured: 0,
            total: 0,
            frame_max: 0,
            frame_min: usize::MAX,
            size_min: u64::MAX,
            size_max: 0,
        }
    }
}

impl Kind {
    /// One join completed and checked: `size` chars or ops; `counted` when
    /// it started in the measured window.
    fn note(&mut self, g: &Got, size: u64, counted: bool) {
        self.total += 1;
        self.frame_max = self.frame_max.max(g.frame_bytes);
        self.frame_min = self.frame_min.min(g.frame_bytes);
        self.size_min = self.size_min.min(size);
        self.size_max = self.size_max.max(size);
        if counted {
            self.measured += 1;
            record(&mut self.join, g.join);
            record(&mut self.connect_join, g.connect_join);
        }
    }

    fn merge(&mut self, o: &Kind) {
        self.join.add(&o.join).expect("same bounds");
        self.connect_join.add(&o.connect_join).expect("same bounds");
        self.measured += o.measured;
        self.total += o.total;
        self.frame_max = self.frame_max.max(o.frame_max);
        self.frame_min = self.frame_min.min(o.frame_min);
        self.size_min = self.size_min.min(o.size_min);
        self.size_max = self.size_max.max(o.size_max);
    }

    fn report(&self, size_key: &str) -> Value {
        let opt = |v: u64, none: u64| (v != none).then_some(v);
        json!({
            "count": self.measured,
            "count_all": self.total,
            "join_ms": summary(&self.join),
            "connect_join_ms": summary(&self.connect_join),
            "frame_bytes_max": (self.total > 0).then_some(self.frame_max),
            "frame_bytes_min": (self.total > 0).then_some(self.frame_min),
            format!("{size_key}_min"): opt(self.size_min, u64::MAX),
            format!("{size_key}_max"): (self.total > 0).then_some(self.size_max),
        })
    }
}

/// One joiner's (or all joiners') findings.
#[derive(Default)]
pub struct BackgroundStats {
    fresh: Kind,
    resume: Kind,
    /// Resumes the server answered with the whole text.
    resume_text: Kind,
    errors: u64,
    error_samples: Vec<String>,
    /// Joiners that gave up.
    fatal: Vec<String>,
}

impl BackgroundStats {
    fn error(&mut self, e: String) {
        self.errors += 1;
        if self.error_samples.len() < 5 {
            self.error_samples.push(e);
        }
    }

    fn merge(&mut self, o: &BackgroundStats) {
        self.fresh.merge(&o.fresh);
        self.resume.merge(&o.resume);
        self.resume_text.merge(&o.resume_text);
        self.errors += o.errors;
        for e in &o.error_samples {
            if self.error_samples.len() < 5 {
                self.error_samples.push(e.clone());
            }
        }
        self.fatal.extend(o.fatal.iter().cloned());
    }

    /// The `background_joins` object of the report.
    pub fn report(&self, cfg: &BackgroundConfig, measured_s: f64) -> Value {
        let per_s = |n: u64| n as f64 / measured_s.max(1e-9);
        json!({
            "joiners": cfg.joiners,
            "resume_behind": cfg.resume_behind,
            "pause_ms": cfg.pause.as_secs_f64() * 1000.0,
            "fresh": self.fresh.report("text_chars"),
            "resume": self.resume.report("ops"),
            "resume_as_text": self.resume_text.report("text_chars"),
            "fresh_per_sec": per_s(self.fresh.measured),
            "resume_per_sec": per_s(self.resume.measured),
            "errors": self.errors + self.fatal.len() as u64,
            "error_samples": self
                .error_samples
                .iter()
                .chain(self.fatal.iter())
                .take(5)
                .collect::<Vec<_>>(),
        })
    }
}

/// What one join got back.
struct Got {
    connect_join: Duration,
    join: Duration,
    frame_bytes: usize,
    msg: ServerMsg,
}

/// Connects, sends `join_msg`, reads until the first text frame (the
/// `joined`, or an `error`), parses it and closes without waiting.
async fn join_once(ws_url: &str, join_msg: String) -> Result<Got> {
    let t0 = Instant::now();
    let mut ws = connect(ws_url).await?;
    let sent = Instant::now();
    ws.send(Message::Text(join_msg))
        .await
        .context("send join")?;
    let frame = loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => break t,
            Some(Ok(Message::Close(c))) => bail!("closed before joined: {c:?}"),
            Some(Ok(Message::Binary(_))) => bail!("binary frame before joined"),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(anyhow!(e).context("read joined")),
            None => bail!("connection ended before joined"),
        }
    };
    let done = Instant::now();
    // The server ends the session when the close frame (or, failing that,
    // the end of the connection) comes: nothing to wait for.
    let _ = ws.close(None).await;
    drop(ws);
    let msg: ServerMsg = serde_json::from_str(&frame).context("joined is not JSON")?;
    match msg.kind.as_str() {
        "joined" => {}
        "error" => bail!("join refused: {:?} {:?}", msg.code, msg.message),
        k => bail!("expected joined, got {k}"),
    }
    Ok(Got {
        connect_join: done - t0,
        join: done - sent,
        frame_bytes: frame.len(),
        msg,
    })
}

fn join_msg(client: Option<&str>, rev: Option<u64>, name: &str) -> String {
    json!({"type": "join", "client": client, "rev": rev, "user": {"name": name}}).to_string()
}

/// A fresh join's text length at `rev` is consistent with the run's start:
/// the writers only insert, `chars` (or a multiple, composed) per op.
fn check_fresh_len(start: Option<(u64, u64)>, chars: usize, rev: u64, len: u64) -> Result<()> {
    let Some((r0, l0)) = start else {
        return Ok(());
    };
    if rev < r0 {
        bail!("fresh join at rev {rev}, before the run's start {r0}");
    }
    let ops = rev - r0;
    let chars = chars.max(1) as u64;
    let grown = len.checked_sub(l0).with_context(|| {
        format!("fresh join at rev {rev}: {len} chars, fewer than the {l0} at the start")
    })?;
    if grown < ops * chars || grown % chars != 0 {
        bail!(
            "fresh join at rev {rev}: {len} chars, not {l0} + a multiple of {chars} ≥ {} ({ops} ops since rev {r0})",
            ops * chars
        );
    }
    Ok(())
}

/// Checks a resume's catch-up: `ops` from `base` to `rev`, in order, each
/// applying where the previous one ends, consistent with the fresh join's
/// text (`fresh_rev`, `fresh`), and the ops after it applying to it.
fn check_resume(base: u64, fresh_rev: u64, fresh: &mut Rope, m: &ServerMsg) -> Result<u64> {
    let rev = m.rev.context("joined without rev")?;
    let ops = m
        .ops
        .as_ref()
        .with_context(|| format!("resume from {base} got the text, not ops (at rev {rev})"))?;
    if ops.len() as u64 != rev - base.min(rev) {
        bail!(
            "resume from {base} to rev {rev}: {} ops, expected {}",
            ops.len(),
            rev - base.min(rev)
        );
    }
    let mut prev_len: Option<usize> = None;
    for (i, e) in ops.iter().enumerate() {
        let want = base + 1 + i as u64;
        if e.rev != want {
            bail!(
                "resume from {base}: op {i} has rev {}, expected {want}",
                e.rev
            );
        }
        let op = parse_op(&e.op)?;
        if let Some(p) = prev_len
            && op.base_len() != p
        {
            bail!(
                "resume from {base}: op at rev {} applies to {} chars, the previous op left {p}",
                e.rev,
                op.base_len()
            );
        }
        prev_len = Some(op.target_len());
        if e.rev == fresh_rev && op.target_len() != fresh.len_chars() {
            bail!(
                "resume from {base}: op at rev {} leaves {} chars, the fresh join had {} at that rev",
                e.rev,
                op.target_len(),
                fresh.len_chars()
            );
        }
        if e.rev > fresh_rev {
            op.apply(fresh, usize::MAX)
                .map_err(|err| anyhow!("op at rev {} on the fresh join's text: {err}", e.rev))?;
        }
    }
    Ok(ops.len() as u64)
}

/// Whether a join started at `t` counts.
fn in_window(win: Option<(Instant, Instant)>, t: Instant) -> bool {
    win.is_some_and(|(s, e)| t >= s && t < e)
}

/// One joiner: fresh, resume, fresh, resume… until told to stop.
async fn joiner(
    ix: usize,
    cfg: Arc<BackgroundConfig>,
    window: watch::Receiver<Option<(Instant, Instant)>>,
    mut stop: watch::Receiver<bool>,
) -> BackgroundStats {
    let mut st = BackgroundStats::default();
    let doc = ix % cfg.ws_urls.len();
    let url = &cfg.ws_urls[doc];
    let progress = &cfg.progress[doc];
    let name = format!("background-{ix}");
    let mut last_rev = 0u64;
    let mut iter = 0u64;
    let mut failures_in_a_row = 0;
    while !*stop.borrow() {
        iter += 1;
        // Fresh.
        let started = Instant::now();
        let fresh = timeout(JOIN_TIMEOUT, join_once(url, join_msg(None, None, &name)))
            .await
            .unwrap_or_else(|_| Err(anyhow!("no joined within {JOIN_TIMEOUT:?}")));
        let counted = in_window(*window.borrow(), started);
        let checked = fresh.and_then(|g| {
            let rev = g.msg.rev.context("joined without rev")?;
            let client = g.msg.client.clone().context("joined without client")?;
            let text = g.msg.text.as_deref().context("fresh join without text")?;
            let len = text.chars().count() as u64;
            if rev < last_rev {
                bail!("fresh join at rev {rev}, an earlier join saw {last_rev}");
            }
            check_fresh_len(progress.start(), cfg.chars, rev, len)?;
            Ok((g, rev, client, len))
        });
        let (rev, client, text) = match checked {
            Ok((g, rev, client, len)) => {
                failures_in_a_row = 0;
                last_rev = rev;
                st.fresh.note(&g, len, counted);
                let text = Rope::from_str(g.msg.text.as_deref().unwrap_or_default());
                (rev, client, text)
            }
            Err(e) => {
                st.error(format!("joiner {ix} fresh join {iter}: {e:#}"));
                failures_in_a_row += 1;
                if failures_in_a_row >= 20 {
                    st.fatal
                        .push(format!("joiner {ix}: 20 failures in a row, gave up"));
                    return st;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        pause(&cfg, &mut stop).await;
        if *stop.borrow() {
            break;
        }
        // Resume, as the client the fresh join made, from far behind.
        let base = rev.saturating_sub(cfg.resume_behind);
        let started = Instant::now();
        let resumed = timeout(
            JOIN_TIMEOUT,
            join_once(url, join_msg(Some(&client), Some(base), &name)),
        )
        .await
        .unwrap_or_else(|_| Err(anyhow!("no joined within {JOIN_TIMEOUT:?}")));
        let counted = in_window(*window.borrow(), started);
        let mut text = text;
        let checked = resumed.and_then(|g| {
            if g.msg.client.as_deref() != Some(client.as_str()) {
                bail!("resume as {client} answered as {:?}", g.msg.client);
            }
            // The server may answer a resume with the whole text instead
            // (the protocol allows it): counted apart, checked as a fresh
            // join's.
            if g.msg.ops.is_none()
                && let Some(t) = g.msg.text.as_deref()
            {
                let r = g.msg.rev.context("joined without rev")?;
                let len = t.chars().count() as u64;
                check_fresh_len(progress.start(), cfg.chars, r, len)?;
                return Ok((g, len, true));
            }
            let n = check_resume(base, rev, &mut text, &g.msg)?;
            Ok((g, n, false))
        });
        match checked {
            Ok((g, n, as_text)) => {
                failures_in_a_row = 0;
                if let Some(r) = g.msg.rev {
                    last_rev = last_rev.max(r);
                }
                let k = if as_text {
                    &mut st.resume_text
                } else {
                    &mut st.resume
                };
                k.note(&g, n, counted);
            }
            Err(e) => {
                st.error(format!("joiner {ix} resume {iter} from {base}: {e:#}"));
                failures_in_a_row += 1;
                if failures_in_a_row >= 20 {
                    st.fatal
                        .push(format!("joiner {ix}: 20 failures in a row, gave up"));
                    return st;
                }
            }
        }
        pause(&cfg, &mut stop).await;
    }
    st
}

async fn pause(cfg: &BackgroundConfig, stop: &mut watch::Receiver<bool>) {
    if cfg.pause.is_zero() {
        return;
    }
    let _ = timeout(cfg.pause, stop.wait_for(|s| *s)).await;
}

/// The joiners, running on a thread and runtime of their own.
pub struct Background {
    cfg: Arc<BackgroundConfig>,
    window: watch::Sender<Option<(Instant, Instant)>>,
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<BackgroundStats>>,
}

impl Background {
    /// Starts the joiners (they begin at once; the measured window is set
    /// with [`Background::set_window`]).
    pub fn start(cfg: BackgroundConfig) -> Result<Background> {
        if cfg.ws_urls.is_empty() || cfg.ws_urls.len() != cfg.progress.len() {
            bail!("background joins need a document");
        }
        let cfg = Arc::new(cfg);
        let (window, window_rx) = watch::channel(None);
        let (stop, stop_rx) = watch::channel(false);
        let c = cfg.clone();
        let thread = std::thread::Builder::new()
            .name("background-joins".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("background runtime");
                rt.block_on(async move {
                    let tasks: Vec<_> = (0..c.joiners)
                        .map(|ix| {
                            tokio::spawn(joiner(ix, c.clone(), window_rx.clone(), stop_rx.clone()))
                        })
                        .collect();
                    let mut all = BackgroundStats::default();
                    for t in tasks {
                        match t.await {
                            Ok(s) => all.merge(&s),
                            Err(e) => all.fatal.push(format!("joiner task: {e}")),
                        }
                    }
                    all
                })
            })
            .context("spawn the background-joins thread")?;
        Ok(Background {
            cfg,
            window,
            stop,
            thread: Some(thread),
        })
    }

    pub fn set_window(&self, start: Instant, end: Instant) {
        let _ = self.window.send(Some((start, end)));
    }

    /// Stops the joiners (each finishes the join it is in, within its
    /// timeout) and returns the report's `background_joins`.
    pub async fn finish(mut self, measured_s: f64) -> Value {
        let _ = self.stop.send(true);
        let thread = self.thread.take().expect("started");
        let stats = tokio::task::spawn_blocking(move || thread.join())
            .await
            .ok()
            .and_then(|r| r.ok());
        match stats {
            Some(s) => s.report(&self.cfg, measured_s),
            None => json!({
                "joiners": self.cfg.joiners,
                "errors": 1,
                "error_samples": ["the background-joins thread panicked"],
            }),
        }
    }
}

impl Drop for Background {
    /// Not finished (the load run failed): the joiners stop by themselves.
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_length_follows_the_writers() {
        assert!(check_fresh_len(None, 4, 10, 3).is_ok());
        assert!(check_fresh_len(Some((100, 1000)), 4, 100, 1000).is_ok());
        assert!(check_fresh_len(Some((100, 1000)), 4, 102, 1008).is_ok());
        assert!(check_fresh_len(Some((100, 1000)), 4, 102, 1012).is_ok()); // composed
        assert!(check_fresh_len(Some((100, 1000)), 4, 102, 1004).is_err());
        assert!(check_fresh_len(Some((100, 1000)), 4, 102, 1009).is_err());
        assert!(check_fresh_len(Some((100, 1000)), 4, 99, 1000).is_err());
    }

    fn msg(v: Value) -> ServerMsg {
        serde_json::from_value(v).expect("msg")
    }

    #[test]
    fn resume_is_checked_against_the_fresh_text() {
        // Text "ab" at rev 2 (rev 1: "a", rev 2: "ab"); rev 3 types "c".
        let joined = msg(json!({"type": "joined", "client": "c1", "rev": 3, "ops": [
            {"rev": 1, "client": "x", "op": ["a"]},
            {"rev": 2, "client": "x", "op": [1, "b"]},
            {"rev": 3, "client": "x", "op": [2, "c"]},
        ]}));
        let mut text = Rope::from_str("ab");
        assert_eq!(check_resume(0, 2, &mut text, &joined).unwrap(), 3);
        assert_eq!(text.to_string(), "abc");
        // The fresh join had another length at rev 2.
        let mut text = Rope::from_str("abz");
        assert!(check_resume(0, 2, &mut text, &joined).is_err());
        // Base 1 needs 2 ops, not 3.
        let mut text = Rope::from_str("ab");
        assert!(check_resume(1, 2, &mut text, &joined).is_err());
        // The text instead of ops.
        let t = msg(json!({"type": "joined", "client": "c1", "rev": 3, "text": "abc"}));
        assert!(check_resume(0, 2, &mut Rope::from_str("ab"), &t).is_err());
        // A gap in the chain.
        let gap = msg(json!({"type": "joined", "client": "c1", "rev": 2, "ops": [
            {"rev": 1, "client": "x", "op": ["a"]},
            {"rev": 2, "client": "x", "op": [5, "b"]},
        ]}));
        assert!(check_resume(0, 1, &mut Rope::from_str("a"), &gap).is_err());
    }
}
