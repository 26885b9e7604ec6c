//! Replays a sequential editing trace (gzipped JSON, such as the ones
//! vendored in the repository's `tests/data/traces/sequential/`): one client
//! per document copy (`--docs D` copies at once, each on a fresh document),
//! each patch its own local edit, then checks every copy's text against
//! `endContent` and against the server's (`GET /api/documents/{id}`).
//!
//! Two paces:
//!
//! * paced (the default): each transaction's patches are made when its
//!   recorded time (`txns[i].time`, relative to the first real timestamp)
//!   has come, pauses capped at `--max-gap` seconds, the whole divided by
//!   `--speed`. Like the browser client, one op is in flight and the edits
//!   made meanwhile are composed into the buffer, sent when the ack comes.
//! * `--max-speed`: each patch is sent as its own op and the next is made
//!   when its ack has come (no composition; a round trip per patch).
//!
//! `--limit N` replays only the first N patches (the expected text is then
//! computed locally from `startContent`).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use ropey::Rope;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Barrier;
use tokio::time::{sleep_until, timeout};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::client::{OtClient, ServerMsg, Ws, connect, parse_op, patch_op};
use crate::http::{addr_of, create_document, fetch_document};
use crate::plot::{Series, write_svg};
use crate::stats::{ClientStats, cpu_seconds, new_hist, peak_rss_mb, record, summary};
use crate::workload::run_prefix;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Trace {
    #[serde(default)]
    pub start_content: String,
    pub end_content: String,
    pub txns: Vec<Txn>,
}

#[derive(Debug, Deserialize)]
pub struct Txn {
    /// ISO 8601, e.g. `2020-09-10T04:23:15.000Z` (absent in hand-made traces).
    #[serde(default)]
    pub time: Option<String>,
    pub patches: Vec<(usize, usize, String)>,
}

impl Trace {
    pub fn load(path: &Path) -> Result<Trace> {
        let file = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
        let mut s = String::new();
        flate2::read::GzDecoder::new(file)
            .read_to_string(&mut s)
            .context("gunzip trace")?;
        serde_json::from_str(&s).context("trace JSON")
    }

    pub fn patches(&self) -> usize {
        self.txns.iter().map(|t| t.patches.len()).sum()
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses the trace timestamps: `YYYY-MM-DDTHH:MM:SS[.fraction]` followed by
/// `Z` or `±HH:MM` (or `±HHMM`), into seconds since the Unix epoch. `None`
/// when it is not of that form.
pub fn parse_time(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(r)?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut frac = 0.0;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
        frac = format!("0.{}", &s[start..i]).parse().ok()?;
    }
    let offset = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) => {
            let rest = &s[i + 1..];
            let (oh, om) = match rest.len() {
                5 if rest.as_bytes()[2] == b':' => (num(i + 1..i + 3)?, num(i + 4..i + 6)?),
                4 => (num(i + 1..i + 3)?, num(i + 3..i + 5)?),
                2 => (num(i + 1..i + 3)?, 0),
                _ => return None,
            };
            if oh > 23 || om > 59 {
                return None;
            }
            let o = oh * 3600 + om * 60;
            if *sign == b'+' { o } else { -o }
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset;
    Some(secs as f64 + frac)
}

/// Times before this (1971-01-01) are placeholders: some traces give their
/// first transaction the epoch.
const FIRST_REAL_TIME: f64 = 365.0 * 86_400.0;

/// When each transaction is due, relative to the start of the replay: the
/// gap since the latest real timestamp so far (never negative; at most
/// `max_gap` seconds), divided by `speed`, added up. Transactions without a
/// real time are due with the one before them.
pub fn schedule(txns: &[Txn], max_gap: f64, speed: f64) -> Result<Vec<Duration>> {
    if !(speed.is_finite() && speed > 0.0) {
        bail!("--speed must be a positive number");
    }
    if !(max_gap.is_finite() && max_gap >= 0.0) {
        bail!("--max-gap must be a number ≥ 0");
    }
    let mut out = Vec::with_capacity(txns.len());
    let mut at = 0.0f64;
    let mut last: Option<f64> = None;
    for (i, t) in txns.iter().enumerate() {
        let time = match &t.time {
            None => None,
            Some(s) => Some(
                parse_time(s).with_context(|| format!("txns[{i}].time {s:?} is not ISO 8601"))?,
            ),
        };
        if let Some(time) = time.filter(|&t| t >= FIRST_REAL_TIME) {
            if let Some(prev) = last {
                at += (time - prev).clamp(0.0, max_gap) / speed;
            }
            last = Some(last.map_or(time, |p| p.max(time)));
        }
        out.push(Duration::from_secs_f64(at));
    }
    Ok(out)
}

/// How the trace is replayed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// Next patch when the last one's ack has come.
    MaxSpeed,
    /// At the recorded pace.
    Paced { speed: f64, max_gap: f64 },
}

#[derive(Debug, Clone)]
pub struct TraceConfig {
    pub url: String,
    pub trace: PathBuf,
    /// Copies replayed at once, one client each, each on its own document.
    pub docs: usize,
    pub max_speed: bool,
    /// Paced replay: the recorded pace multiplied by this.
    pub speed: f64,
    /// Paced replay: longest pause replayed, in recorded seconds.
    pub max_gap: f64,
    /// Replay only the first this many patches.
    pub limit: Option<usize>,
    pub seed: u64,
    pub pid: Option<u32>,
    /// Write the latency plot (SVG) here.
    pub plot: Option<PathBuf>,
}

impl Default for TraceConfig {
    fn default() -> Self {
        TraceConfig {
            url: "http://127.0.0.1:8080".into(),
            trace: PathBuf::new(),
            docs: 1,
            max_speed: false,
            speed: 1.0,
            max_gap: 2.0,
            limit: None,
            seed: 1,
            pid: None,
            plot: None,
        }
    }
}

impl TraceConfig {
    pub fn pace(&self) -> Pace {
        if self.max_speed {
            Pace::MaxSpeed
        } else {
            Pace::Paced {
                speed: self.speed,
                max_gap: self.max_gap,
            }
        }
    }
}

/// One step of the replay: when it is due and which patches (the first `n`
/// of transaction `txn`).
#[derive(Debug, Clone, Copy)]
struct Step {
    due: Duration,
    txn: usize,
    n: usize,
}

impl Step {
    fn patches<'t>(&self, trace: &'t Trace) -> &'t [(usize, usize, String)] {
        &trace.txns[self.txn].patches[..self.n]
    }
}

/// What one copy measured besides [`ClientStats`].
struct CopyEnd {
    result: Result<String>,
    stats: ClientStats,
    /// Local edit (its due time when paced) → ack of the op holding it.
    commit: Histogram<u64>,
    start: Option<Instant>,
    end: Instant,
}

const ACK_TIMEOUT: Duration = Duration::from_secs(30);

async fn join(url: &str) -> Result<(OtClient, Ws)> {
    let mut c = OtClient::new("trace");
    let mut ws = connect(url).await?;
    ws.send(Message::Text(c.join_msg(false))).await?;
    loop {
        let t = match timeout(ACK_TIMEOUT, ws.next())
            .await
            .context("no joined in 30 s")?
        {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(_)) => continue,
            _ => bail!("closed while joining"),
        };
        let m: ServerMsg = serde_json::from_str(&t)?;
        match m.kind.as_str() {
            "joined" => {
                c.on_joined(&m)?;
                return Ok((c, ws));
            }
            "error" => bail!("join refused: {:?} {:?}", m.code, m.message),
            _ => {}
        }
    }
}

/// The client's side of a replay: the OT client, its socket, the due times
/// of the edits in the buffer and in flight.
struct Replayer {
    c: OtClient,
    ws: Ws,
    st: ClientStats,
    commit: Histogram<u64>,
    buffered_at: Vec<Instant>,
    inflight_at: Vec<Instant>,
    ack_deadline: Option<Instant>,
    resend_at: Option<Instant>,
}

impl Replayer {
    /// One patch as a local edit made at `at`.
    fn edit(&mut self, (pos, del, ins): &(usize, usize, String), at: Instant) -> Result<()> {
        let len = self.c.text.len_chars();
        if pos + del > len {
            bail!("patch ({pos}, {del}) past the end ({len})");
        }
        self.c.edit(patch_op(len, *pos, *del, ins))?;
        self.st.edits += 1;
        self.buffered_at.push(at);
        Ok(())
    }

    /// Sends the buffer when nothing is in flight.
    async fn flush(&mut self) -> Result<()> {
        let now = Instant::now();
        if let Some(msg) = self.c.take_send(now) {
            self.inflight_at = std::mem::take(&mut self.buffered_at);
            self.ack_deadline = Some(now + ACK_TIMEOUT);
            self.send(msg).await?;
        }
        Ok(())
    }

    async fn send(&mut self, msg: String) -> Result<()> {
        if let Err(e) = self.ws.send(Message::Text(msg)).await {
            self.st.disconnects += 1;
            bail!("send: {e}");
        }
        Ok(())
    }

    /// Reads one message; true when it was the ack of the op in flight.
    async fn on_message(&mut self, msg: Option<Result<Message, WsError>>) -> Result<bool> {
        let t = match msg {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(f))) => {
                self.st.disconnects += 1;
                bail!("closed by the server: {f:?}");
            }
            Some(Err(e)) => {
                self.st.disconnects += 1;
                bail!("socket: {e}");
            }
            None => {
                self.st.disconnects += 1;
                bail!("closed");
            }
            Some(Ok(_)) => return Ok(false),
        };
        let m: ServerMsg = serde_json::from_str(&t).context("server sent bad JSON")?;
        match m.kind.as_str() {
            "ack" => {
                if self.c.inflight.as_ref().map(|i| i.seq) != m.seq {
                    bail!("ack for seq {:?} not in flight", m.seq);
                }
                let inf = self.c.on_ack(m.rev.context("ack without rev")?)?;
                let now = Instant::now();
                self.st.acked += 1;
                self.st.acked_total += 1;
                self.st.edits_acked += inf.edits;
                record(&mut self.st.ack, now.saturating_duration_since(inf.sent_at));
                for at in self.inflight_at.drain(..) {
                    record(&mut self.commit, now.saturating_duration_since(at));
                }
                self.ack_deadline = None;
                Ok(true)
            }
            "op" => {
                // Nobody else is on the document; taken in all the same.
                let op = parse_op(m.op.as_ref().context("op without op")?)?;
                self.c.on_remote(m.rev.context("op without rev")?, &op)?;
                Ok(false)
            }
            "error" => {
                let code = m.code.unwrap_or_default();
                if code == "rate_limited" && m.seq.is_some() {
                    self.st.rate_limited += 1;
                    self.resend_at = Some(Instant::now() + Duration::from_millis(50));
                    return Ok(false);
                }
                self.st
                    .error(format!("{code}: {}", m.message.clone().unwrap_or_default()));
                bail!("error {code}: {}", m.message.unwrap_or_default())
            }
            _ => Ok(false),
        }
    }

    /// Waits for the in-flight op's ack (resending after a rate limit).
    async fn wait_ack(&mut self) -> Result<()> {
        while self.c.inflight.is_some() {
            let deadline = self
                .ack_deadline
                .unwrap_or_else(|| Instant::now() + ACK_TIMEOUT);
            let resend = self.resend_at;
            tokio::select! {
                m = self.ws.next() => {
                    self.on_message(m).await?;
                }
                _ = sleep_until(deadline.into()) => bail!("no ack in 30 s"),
                _ = sleep_until(resend.unwrap_or(deadline).into()), if resend.is_some() => {
                    self.resend_at = None;
                    if let Some(m) = self.c.resend_msg() {
                        self.send(m).await?;
                    }
                }
            }
        }
        Ok(())
    }

    /// `--max-speed`: each patch its own op, the next when it is acked.
    async fn max_speed(&mut self, trace: &Trace, steps: &[Step]) -> Result<()> {
        for step in steps {
            for p in step.patches(trace) {
                self.edit(p, Instant::now())?;
                self.flush().await?;
                self.wait_ack().await?;
            }
        }
        Ok(())
    }

    /// The recorded pace: edits when due, one op in flight, the rest buffered.
    async fn paced(&mut self, trace: &Trace, steps: &[Step], start: Instant) -> Result<()> {
        let mut next = 0;
        loop {
            if next == steps.len() {
                // Everything typed: flush the buffer until nothing is pending.
                while self.c.pending() {
                    self.flush().await?;
                    self.wait_ack().await?;
                }
                return Ok(());
            }
            let due = start + steps[next].due;
            let ack_deadline = self.ack_deadline;
            let resend = self.resend_at;
            let far = start + Duration::from_secs(86_400 * 365);
            tokio::select! {
                biased;
                m = self.ws.next() => {
                    if self.on_message(m).await? {
                        self.flush().await?;
                    }
                }
                _ = sleep_until(ack_deadline.unwrap_or(far).into()), if ack_deadline.is_some() => {
                    bail!("no ack in 30 s");
                }
                _ = sleep_until(resend.unwrap_or(far).into()), if resend.is_some() => {
                    self.resend_at = None;
                    if let Some(m) = self.c.resend_msg() {
                        self.send(m).await?;
                    }
                }
                _ = sleep_until(due.into()) => {
                    // One transaction per turn, so that an ack that came
                    // meanwhile is taken first (as in the browser's event
                    // loop) even when the replay runs behind its schedule.
                    for p in steps[next].patches(trace) {
                        // Each patch is its own edit: sent alone when
                        // nothing is in flight, else composed into the
                        // buffer.
                        self.edit(p, due)?;
                        self.flush().await?;
                    }
                    next += 1;
                }
            }
        }
    }
}

/// One copy: join, wait for the others, replay, close.
async fn replay_copy(
    trace: Arc<Trace>,
    steps: Arc<Vec<Step>>,
    url: String,
    pace: Pace,
    barrier: Arc<Barrier>,
) -> CopyEnd {
    let joined = join(&url).await;
    barrier.wait().await;
    let mut stats = ClientStats::default();
    let (c, ws) = match joined {
        Ok(x) => x,
        Err(e) => {
            stats.error(format!("{e:#}"));
            return CopyEnd {
                result: Err(e),
                stats,
                commit: new_hist(),
                start: None,
                end: Instant::now(),
            };
        }
    };
    let start = Instant::now();
    let mut r = Replayer {
        c,
        ws,
        st: stats,
        commit: new_hist(),
        buffered_at: Vec::new(),
        inflight_at: Vec::new(),
        ack_deadline: None,
        resend_at: None,
    };
    let result = async {
        if r.c.text != trace.start_content.as_str() {
            bail!("the new document does not hold startContent");
        }
        match pace {
            Pace::MaxSpeed => r.max_speed(&trace, &steps).await?,
            Pace::Paced { .. } => r.paced(&trace, &steps, start).await?,
        }
        Ok(r.c.text.to_string())
    }
    .await;
    let end = Instant::now();
    let _ = r.ws.close(None).await;
    CopyEnd {
        result,
        stats: r.st,
        commit: r.commit,
        start: Some(start),
        end,
    }
}

/// `startContent` with the first `limit` patches applied.
fn text_after(trace: &Trace, limit: usize) -> Result<String> {
    let mut rope = Rope::from_str(&trace.start_content);
    for (pos, del, ins) in trace.txns.iter().flat_map(|t| &t.patches).take(limit) {
        let len = rope.len_chars();
        if pos + del > len {
            bail!("patch ({pos}, {del}) past the end ({len})");
        }
        rope.remove(*pos..pos + del);
        rope.insert(*pos, ins);
    }
    Ok(rope.to_string())
}

/// The plot's title: the trace, copies and pace.
fn plot_title(cfg: &TraceConfig, patches: usize, schedule_s: f64) -> String {
    let name = cfg.trace.file_name().map_or_else(
        || cfg.trace.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let pace = match cfg.pace() {
        Pace::MaxSpeed => "max speed (next patch on ack)".to_owned(),
        Pace::Paced { speed, max_gap } => format!(
            "recorded pace ×{speed}, pauses capped at {max_gap} s ({schedule_s:.1} s schedule)"
        ),
    };
    format!(
        "tandem-loadtest trace replay: {name}\n{} cop{}, one client each, {patches} patches per copy, {pace}",
        cfg.docs.max(1),
        if cfg.docs.max(1) == 1 { "y" } else { "ies" }
    )
}

/// Runs the replay and returns the JSON report.
pub async fn run_trace(cfg: TraceConfig) -> Result<Value> {
    let trace = Trace::load(&cfg.trace)?;
    let pace = cfg.pace();
    let offsets = match pace {
        Pace::MaxSpeed => vec![Duration::ZERO; trace.txns.len()],
        Pace::Paced { speed, max_gap } => schedule(&trace.txns, max_gap, speed)?,
    };
    let limit = cfg.limit.unwrap_or(usize::MAX);
    let mut steps = Vec::new();
    let mut left = limit;
    for (txn, (t, due)) in trace.txns.iter().zip(&offsets).enumerate() {
        if left == 0 {
            break;
        }
        let n = t.patches.len().min(left);
        left -= n;
        steps.push(Step { due: *due, txn, n });
    }
    let patches_per_copy: usize = steps.iter().map(|s| s.n).sum();
    let schedule_s = steps.last().map_or(0.0, |s| s.due.as_secs_f64());
    let limited = patches_per_copy < trace.patches();
    let expected = if limited {
        text_after(&trace, patches_per_copy)?
    } else {
        trace.end_content.clone()
    };
    if let Pace::Paced { .. } = pace {
        eprintln!(
            "tandem-loadtest: paced replay, {patches_per_copy} patches over {schedule_s:.1} s per copy"
        );
    }
    let steps = Arc::new(steps);
    let trace = Arc::new(trace);
    let addr = addr_of(&cfg.url);
    let prefix = run_prefix("trace", cfg.seed);
    let ids: Vec<String> = (0..cfg.docs.max(1))
        .map(|i| format!("{prefix}-{i}"))
        .collect();
    if !trace.start_content.is_empty() {
        for id in &ids {
            create_document(&addr, id, &trace.start_content).await?;
        }
    }
    let pid = cfg.pid.map(|p| p.to_string());
    let server_cpu0 = pid.as_deref().and_then(cpu_seconds);
    let self_cpu0 = cpu_seconds("self");
    let barrier = Arc::new(Barrier::new(ids.len()));
    let handles: Vec<_> = ids
        .iter()
        .map(|id| {
            tokio::spawn(replay_copy(
                trace.clone(),
                steps.clone(),
                format!("ws://{addr}/api/documents/{id}/ws"),
                pace,
                barrier.clone(),
            ))
        })
        .collect();
    let mut total = ClientStats::default();
    let mut commit = new_hist();
    let mut ends = Vec::new();
    for h in handles {
        let end = h.await?;
        total.merge(&end.stats);
        commit.add(&end.commit).expect("same bounds");
        ends.push(end);
    }
    let server_cpu1 = pid.as_deref().and_then(cpu_seconds);
    let self_cpu1 = cpu_seconds("self");
    let first = ends.iter().filter_map(|e| e.start).min();
    let last = ends.iter().map(|e| e.end).max();
    let elapsed = first
        .zip(last)
        .map_or(0.0, |(a, b)| b.saturating_duration_since(a).as_secs_f64());
    let mut matches_expected = true;
    let mut converged = true;
    let mut errors = Vec::new();
    let mut final_revs = Vec::new();
    for (id, end) in ids.iter().zip(&ends) {
        match &end.result {
            Ok(text) => {
                if *text != expected {
                    matches_expected = false;
                    errors.push(format!(
                        "{id}: the client's text differs from the expected text"
                    ));
                }
                match fetch_document(&addr, id).await {
                    Ok((rev, server)) => {
                        final_revs.push(Some(rev));
                        if server != *text {
                            converged = false;
                            errors
                                .push(format!("{id}: the server's text differs from the client's"));
                        }
                        if rev != end.stats.acked_total {
                            converged = false;
                            errors.push(format!(
                                "{id}: server at rev {rev} but {} ops acked",
                                end.stats.acked_total
                            ));
                        }
                    }
                    Err(e) => {
                        final_revs.push(None);
                        converged = false;
                        errors.push(format!("{id}: {e:#}"));
                    }
                }
            }
            Err(e) => {
                final_revs.push(None);
                matches_expected = false;
                converged = false;
                errors.push(format!("{id}: {e:#}"));
            }
        }
    }
    for e in &errors {
        eprintln!("error: {e}");
    }
    let diff = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| b - a);
    let server_cpu = diff(server_cpu0, server_cpu1);
    let per_sec = |n: u64| {
        if elapsed > 0.0 {
            n as f64 / elapsed
        } else {
            0.0
        }
    };
    let mut report = json!({
        "mode": "trace",
        "url": cfg.url,
        "trace": cfg.trace.display().to_string(),
        "pace": match pace { Pace::MaxSpeed => "max_speed", Pace::Paced { .. } => "paced" },
        "speed": match pace { Pace::MaxSpeed => None, Pace::Paced { speed, .. } => Some(speed) },
        "max_gap_s": match pace { Pace::MaxSpeed => None, Pace::Paced { max_gap, .. } => Some(max_gap) },
        "schedule_s": schedule_s,
        // How long after the schedule's end the last copy was done (its
        // last acks; large when the server or this process falls behind).
        "lag_s": match pace { Pace::MaxSpeed => None, Pace::Paced { .. } => Some(elapsed - schedule_s) },
        "limit": cfg.limit,
        "docs": ids.len(),
        "clients": ids.len(),
        "lurkers": 0,
        "patches_per_copy": patches_per_copy,
        "elapsed_s": elapsed,
        "ops_per_sec": per_sec(total.acked),
        "edits_per_sec": per_sec(total.edits_acked),
        "ops_acked": total.acked,
        "edits_acked": total.edits_acked,
        "edits": total.edits,
        "ack_ms": summary(&total.ack),
        "commit_ms": summary(&commit),
        "delivery_ms": summary(&total.delivery),
        "delivery_note": "one client per document: no other client receives its ops, so no delivery latency",
        "expected": if limited { format!("startContent + first {patches_per_copy} patches") } else { "endContent".to_owned() },
        "matches_end_content": if limited { Value::Null } else { json!(matches_expected) },
        "matches_expected": matches_expected,
        "converged": converged && matches_expected,
        "errors": errors.len(),
        "error_samples": errors.iter().take(5).collect::<Vec<_>>(),
        "rate_limited": total.rate_limited,
        "disconnects": total.disconnects,
        "dropped_edits": 0,
        "server_cpu_s": server_cpu,
        "server_cpu_pct": server_cpu.map(|c| if elapsed > 0.0 { 100.0 * c / elapsed } else { 0.0 }),
        "server_peak_rss_mb": pid.as_deref().and_then(peak_rss_mb),
        "loadgen_cpu_s": diff(self_cpu0, self_cpu1),
        "final_revs": final_revs,
    });
    if let Some(path) = &cfg.plot {
        let series = [
            Series {
                name: "ack (op sent → ack)",
                hist: &total.ack,
            },
            Series {
                name: "commit (edit made → ack)",
                hist: &commit,
            },
            Series {
                name: "delivery (one client per doc)",
                hist: &total.delivery,
            },
        ];
        crate::plot::note_in_report(
            &mut report,
            path,
            write_svg(
                path,
                &plot_title(&cfg, patches_per_copy, schedule_s),
                &series,
            ),
        );
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_trace_times() {
        assert_eq!(parse_time("1970-01-01T00:00:00.000Z"), Some(0.0));
        assert_eq!(
            parse_time("2020-09-10T04:23:15.000Z"),
            Some(1_599_711_795.0)
        );
        assert_eq!(parse_time("2020-09-10T04:23:15Z"), Some(1_599_711_795.0));
        assert_eq!(
            parse_time("2023-11-22T03:57:32+00:00"),
            Some(1_700_625_452.0)
        );
        assert_eq!(
            parse_time("2023-11-22T05:57:32+02:00"),
            Some(1_700_625_452.0)
        );
        assert_eq!(
            parse_time("2023-11-21T22:57:32-0500"),
            Some(1_700_625_452.0)
        );
        assert_eq!(parse_time("2000-02-29T00:00:00Z"), Some(951_782_400.0));
        let ms = parse_time("2021-04-19T06:06:58.219Z").unwrap();
        assert!((ms - 1_618_812_418.219).abs() < 1e-6, "{ms}");
        for bad in [
            "",
            "2020-09-10",
            "2020-09-10T04:23:15",
            "2020-13-10T04:23:15Z",
            "2020-09-10T04:23:15.Z",
            "2020-09-10T04:23:15.000Zx",
            "2020-09-10T04:2a:15Z",
            "2020-09-10T04:23:15+2:00",
        ] {
            assert_eq!(parse_time(bad), None, "{bad:?}");
        }
    }

    fn txn(time: Option<&str>) -> Txn {
        Txn {
            time: time.map(str::to_owned),
            patches: vec![(0, 0, "x".into())],
        }
    }

    #[test]
    fn schedule_caps_gaps_and_skips_the_epoch() {
        let txns = [
            txn(Some("1970-01-01T00:00:00.000Z")),
            txn(Some("2020-09-10T04:23:15.000Z")),
            txn(Some("2020-09-10T04:23:15.000Z")),
            txn(Some("2020-09-10T04:23:16.500Z")),
            txn(Some("2020-09-10T05:23:16.500Z")), // an hour: capped at 2 s
            txn(Some("2020-09-10T05:23:16.000Z")), // backwards: no wait
            txn(None),
            txn(Some("2020-09-10T05:23:17.000Z")), // 0.5 s after the latest
        ];
        let s: Vec<f64> = schedule(&txns, 2.0, 1.0)
            .unwrap()
            .iter()
            .map(Duration::as_secs_f64)
            .collect();
        assert_eq!(s, [0.0, 0.0, 0.0, 1.5, 3.5, 3.5, 3.5, 4.0]);
        let fast: Vec<f64> = schedule(&txns, 2.0, 10.0)
            .unwrap()
            .iter()
            .map(Duration::as_secs_f64)
            .collect();
        assert!((fast[7] - 0.4).abs() < 1e-9, "{fast:?}");
        assert!(schedule(&txns, 2.0, 0.0).is_err());
        assert!(schedule(&[txn(Some("yesterday"))], 2.0, 1.0).is_err());
    }

    #[test]
    fn text_after_applies_a_prefix() {
        let trace = Trace {
            start_content: "ab".into(),
            end_content: "xaYb".into(),
            txns: vec![
                Txn {
                    time: None,
                    patches: vec![(1, 0, "Y".into()), (0, 0, "x".into())],
                },
                Txn {
                    time: None,
                    patches: vec![(0, 4, "".into())],
                },
            ],
        };
        assert_eq!(text_after(&trace, 1).unwrap(), "aYb");
        assert_eq!(text_after(&trace, 2).unwrap(), "xaYb");
        assert_eq!(text_after(&trace, 3).unwrap(), "");
    }
}
