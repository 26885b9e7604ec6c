//! Workload shapes: writers (open loop at `--rate`, or closed loop), lurkers
//! and presence, spread round-robin over `--docs` documents; the measured
//! window after a warmup; then stop, quiescence and the convergence check.
//! With several `--url`s (nodes of a cluster) the clients of each document
//! are spread over them, and a client whose node fails reconnects to the
//! next one (see [`crate::cluster`]).

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio::time::{MissedTickBehavior, interval_at, sleep, sleep_until, timeout};
use tokio_tungstenite::tungstenite::Message;

use crate::background::{Background, BackgroundConfig, DocProgress};
use crate::client::{Rng, ServerMsg, Ws, connect};
use crate::cluster::{Outage, hold, node_for, resume_report, ws_url};
use crate::delivery::{DocTrack, Window};
use crate::http::{addr_of, create_document, fetch_document};
use crate::model::{Acked, EndState, Event, Model};
use crate::plot::{Series, note_in_report, write_svg};
use crate::stats::{ClientStats, cpu_seconds, peak_rss_mb, record, summary};

/// Everything `tandem-loadtest` (without `--trace`) is told.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// `http://HOST:PORT`, one per node; clients are spread over them
    /// ([`node_for`]). REST calls go to the first that answers.
    pub urls: Vec<String>,
    /// Open each document on this node first (a join held until the end),
    /// so that it owns them; documents are created there too.
    pub owner_url: Option<String>,
    pub docs: usize,
    pub clients: usize,
    /// Ops per second per writer (open loop).
    pub rate: f64,
    /// Characters each edit inserts.
    pub chars: usize,
    pub closed_loop: bool,
    pub duration: Duration,
    pub warmup: Duration,
    pub lurkers: usize,
    /// Presence (cursor) updates per second per client, 0 for none.
    pub presence_hz: f64,
    /// Create each document first with this many characters.
    pub doc_size: usize,
    pub seed: u64,
    /// The servers' pids, for CPU and memory (summed over them).
    pub pids: Vec<u32>,
    /// How long to wait for quiescence after the stop.
    pub quiesce_timeout: Duration,
    /// Write the latency plot (SVG) here.
    pub plot: Option<std::path::PathBuf>,
    /// Run on this existing document (one) instead of creating new ones.
    pub load_doc: Option<String>,
    /// Joiner tasks looping beside the load (fresh join, far resume, …),
    /// see [`crate::background`]; 0 for none.
    pub background_joins: usize,
    /// A background resume starts this many revisions behind.
    pub resume_behind: u64,
    /// Pause between one background join and the next.
    pub background_pause: Duration,
    /// How many clients (the first ones: writers, then lurkers) keep the
    /// text; the others are lean ([`crate::lean`]). `None`: all.
    pub full_clients: Option<usize>,
    /// Ask the server for batched frames (`"batch": true` in `join`).
    pub batch: bool,
}

impl Default for LoadConfig {
    fn default() -> Self {
        LoadConfig {
            urls: vec!["http://127.0.0.1:8080".into()],
            owner_url: None,
            docs: 1,
            clients: 10,
            rate: 2.0,
            chars: 4,
            closed_loop: false,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            lurkers: 0,
            presence_hz: 0.0,
            doc_size: 0,
            seed: 1,
            pids: Vec::new(),
            quiesce_timeout: Duration::from_secs(60),
            plot: None,
            load_doc: None,
            background_joins: 0,
            resume_behind: 20_000,
            background_pause: Duration::ZERO,
            full_clients: None,
            batch: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Phase {
    Connecting,
    Running,
    /// No new edits; flush what is pending.
    Stopping,
    /// Read until each document's revision (by index) is reached, then end.
    Drain(Arc<Vec<u64>>),
}

struct Shared {
    window: OnceLock<Window>,
    docs: Vec<DocTrack>,
    /// Each document's start, for the background joiners' checks.
    progress: Vec<Arc<DocProgress>>,
}

struct Spec {
    ix: usize,
    doc: usize,
    writer: bool,
    /// The document's WebSocket URL on each node.
    urls: Vec<String>,
    /// Which of them this client uses now.
    at: usize,
}

impl Spec {
    fn url(&self) -> &str {
        &self.urls[self.at]
    }
}

/// How a client ended.
struct ClientEnd {
    ix: usize,
    doc: usize,
    end: EndState,
    stats: ClientStats,
    fatal: Option<String>,
    outages: Vec<Outage>,
    url_switches: u64,
}

/// A client's state besides its socket.
struct Ctx {
    c: Model,
    /// Ops received and not yet given to the document's delivery tracking
    /// (they carry their receipt time, so they can wait).
    receipts: Vec<(u64, Instant)>,
    st: ClientStats,
    rng: Rng,
    spec: Spec,
    cfg: Arc<LoadConfig>,
    shared: Arc<Shared>,
    resend_at: Option<Instant>,
    /// Lost connections, the last possibly still being repaired.
    outages: Vec<Outage>,
    /// How often a failed connect moved this client to the next node.
    url_switches: u64,
}

enum Next {
    Nothing,
    Flush,
    Reload,
}

/// What a (re)join found: the in-flight op's ack, edits dropped.
type Rejoined = (Option<Acked>, u64);

async fn open(c: &mut Model, url: &str, reload: bool, batch: bool) -> Result<(Ws, Rejoined)> {
    let ws = connect(url).await?;
    join_on(c, ws, reload, batch).await
}

/// Sends `join` on a new connection and reads up to `joined` (which the
/// server always sends alone, never in a batch).
async fn join_on(c: &mut Model, mut ws: Ws, reload: bool, batch: bool) -> Result<(Ws, Rejoined)> {
    ws.send(Message::Text(c.join_msg(reload, batch))).await?;
    loop {
        match timeout(Duration::from_secs(30), ws.next())
            .await
            .context("timed out waiting for joined")?
        {
            Some(Ok(Message::Text(t))) => {
                let m: ServerMsg = serde_json::from_str(&t)?;
                match m.kind.as_str() {
                    "joined" => {
                        let out = c.on_joined(&m)?;
                        return Ok((ws, out));
                    }
                    "error" => bail!("join refused: {:?} {:?}", m.code, m.message),
                    _ => {}
                }
            }
            Some(Ok(Message::Close(f))) => bail!("closed while joining: {f:?}"),
            Some(Err(e)) => bail!("while joining: {e}"),
            None => bail!("closed while joining"),
            Some(Ok(_)) => {}
        }
    }
}

impl Ctx {
    fn window(&self) -> Option<Window> {
        self.shared.window.get().copied()
    }

    fn acked(&mut self, a: Acked) {
        let Acked {
            rev,
            sent_at,
            edits,
        } = a;
        let now = Instant::now();
        let win = self.window();
        self.st.acked_total += 1;
        if let Some(o) = self.outages.last_mut()
            && o.acked.is_none()
        {
            o.acked = Some(now);
        }
        if win.is_some_and(|w| w.contains(sent_at)) {
            self.st.acked += 1;
            self.st.edits_acked += edits;
            record(&mut self.st.ack, now.saturating_duration_since(sent_at));
        }
        self.shared.docs[self.spec.doc].on_ack(rev, sent_at, win, &mut self.st.delivery);
    }

    /// Hands the receipts kept so far to the delivery tracking; `all`
    /// even when few.
    fn flush_receipts(&mut self, all: bool) {
        const KEEP: usize = 64;
        if self.receipts.is_empty() || (!all && self.receipts.len() < KEEP) {
            return;
        }
        let win = self.window();
        self.shared.docs[self.spec.doc].on_receive(&self.receipts, win, &mut self.st.delivery);
        self.receipts.clear();
    }

    /// Takes in a frame: one message, or a batch of them.
    fn handle(&mut self, t: &str) -> Result<Next> {
        let mut events = Vec::new();
        self.c.take_frame(t, &mut events)?;
        let mut next = Next::Nothing;
        let now = Instant::now();
        for e in events {
            match e {
                Event::Ack(a) => {
                    self.acked(a);
                    next = Next::Flush;
                }
                Event::StrayAck(seq) => self.st.error(format!("ack for seq {seq:?} not in flight")),
                Event::Op(rev) => self.receipts.push((rev, now)),
                Event::Error { code, message, seq } => {
                    if code == "rate_limited" {
                        self.st.rate_limited += 1;
                        if seq.is_some() {
                            self.resend_at = Some(Instant::now() + Duration::from_millis(50));
                        }
                        continue;
                    }
                    self.st.error(format!("{code}: {message}"));
                    // A refused op will never be accepted as it stands: reload.
                    if seq.is_some() {
                        self.flush_receipts(true);
                        return Ok(Next::Reload);
                    }
                }
            }
        }
        self.flush_receipts(false);
        Ok(next)
    }

    /// After (re)joining: take the catch-up ack, then resend or flush.
    async fn after_join(&mut self, ws: &mut Ws, (acked, dropped): Rejoined) -> Result<()> {
        self.st.dropped_edits += dropped;
        if let Some(a) = acked {
            self.acked(a);
        }
        let msg = if self.c.has_inflight() {
            self.c.resend_msg()
        } else {
            self.c.take_send(Instant::now(), &mut self.rng)
        };
        if let Some(m) = msg {
            ws.send(Message::Text(m)).await?;
        }
        Ok(())
    }

    /// The connection broke: counts it, starts an outage, reconnects.
    async fn lost(&mut self) -> Result<Ws> {
        self.st.disconnects += 1;
        self.outages.push(Outage::new(Instant::now()));
        self.reconnect(false).await
    }

    /// Reconnects with backoff (50 ms doubling to 2 s, each wait between
    /// half and all of that) and resumes (or reloads). A node that refuses
    /// the connection itself is taken for gone: the next `--url` is tried.
    async fn reconnect(&mut self, reload: bool) -> Result<Ws> {
        let mut delay = Duration::from_millis(50);
        let mut last = String::new();
        for _ in 0..30 {
            sleep(delay / 2 + delay.mul_f64(self.rng.unit() / 2.0)).await;
            delay = (delay * 2).min(Duration::from_secs(2));
            let ws = match connect(self.spec.url()).await {
                Ok(ws) => ws,
                Err(e) => {
                    last = format!("{e:#}");
                    if self.spec.urls.len() > 1 {
                        self.spec.at = (self.spec.at + 1) % self.spec.urls.len();
                        self.url_switches += 1;
                    }
                    continue;
                }
            };
            match join_on(&mut self.c, ws, reload, self.cfg.batch).await {
                Ok((mut ws, out)) => {
                    if let Some(o) = self.outages.last_mut()
                        && o.rejoined.is_none()
                    {
                        o.rejoined = Some(Instant::now());
                    }
                    if self.after_join(&mut ws, out).await.is_ok() {
                        return Ok(ws);
                    }
                }
                Err(e) => last = format!("{e:#}"),
            }
        }
        bail!("could not reconnect: {last}")
    }

    fn make_edit(&mut self) -> Result<()> {
        self.c.edit(&mut self.rng, self.cfg.chars)?;
        self.st.edits += 1;
        Ok(())
    }

    fn presence_msg(&mut self) -> String {
        let p = self.rng.below(self.c.server_len() as u64 + 1);
        format!(
            r#"{{"type":"presence","rev":{},"selection":{{"ranges":[{{"anchor":{p},"head":{p}}}]}}}}"#,
            self.c.rev()
        )
    }
}

async fn send_or_reconnect(ctx: &mut Ctx, ws: &mut Ws, msg: Option<String>) -> Result<()> {
    if let Some(m) = msg
        && ws.send(Message::Text(m)).await.is_err()
    {
        *ws = ctx.lost().await?;
    }
    Ok(())
}

async fn drive(
    ctx: &mut Ctx,
    mut ws: Ws,
    mut phase_rx: watch::Receiver<Phase>,
    idle_tx: &mpsc::UnboundedSender<usize>,
) -> Result<()> {
    let cfg = ctx.cfg.clone();
    let far = Duration::from_secs(86_400 * 365);
    let op_period = if cfg.rate > 0.0 {
        Duration::from_secs_f64(1.0 / cfg.rate)
    } else {
        far
    };
    let pres_period = if cfg.presence_hz > 0.0 {
        Duration::from_secs_f64(1.0 / cfg.presence_hz)
    } else {
        far
    };
    let mut op_timer = interval_at(tokio::time::Instant::now() + far, op_period);
    let mut pres_timer = interval_at(tokio::time::Instant::now() + far, pres_period);
    op_timer.set_missed_tick_behavior(MissedTickBehavior::Burst);
    pres_timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut started = false;
    let mut idle_sent = false;
    loop {
        let phase = phase_rx.borrow_and_update().clone();
        let running = phase == Phase::Running;
        if running && !started {
            started = true;
            let now = tokio::time::Instant::now();
            let o = op_period.mul_f64(ctx.rng.unit());
            op_timer = interval_at(now + o, op_period);
            op_timer.set_missed_tick_behavior(MissedTickBehavior::Burst);
            let p = pres_period.mul_f64(ctx.rng.unit());
            pres_timer = interval_at(now + p, pres_period);
            pres_timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
        }
        let typing = running && ctx.spec.writer;
        if typing && cfg.closed_loop && !ctx.c.pending() {
            ctx.make_edit()?;
            let m = ctx.c.take_send(Instant::now(), &mut ctx.rng);
            send_or_reconnect(ctx, &mut ws, m).await?;
            continue;
        }
        let stopped = matches!(phase, Phase::Stopping | Phase::Drain(_));
        if stopped && !ctx.c.pending() && !idle_sent {
            idle_sent = true;
            ctx.flush_receipts(true);
            let _ = idle_tx.send(ctx.spec.ix);
        }
        if let Phase::Drain(t) = &phase
            && !ctx.c.pending()
            && ctx.c.rev() >= t[ctx.spec.doc]
        {
            ctx.flush_receipts(true);
            let _ = ws.close(None).await;
            return Ok(());
        }
        let ticking = typing && !cfg.closed_loop && cfg.rate > 0.0;
        let presencing = running && cfg.presence_hz > 0.0;
        let resend_at = ctx.resend_at;
        tokio::select! {
            r = phase_rx.changed() => {
                if r.is_err() {
                    bail!("coordinator gone");
                }
            }
            m = ws.next() => match m {
                Some(Ok(Message::Text(t))) => match ctx.handle(&t)? {
                    Next::Nothing => {}
                    Next::Flush => {
                        let m = ctx.c.take_send(Instant::now(), &mut ctx.rng);
                        send_or_reconnect(ctx, &mut ws, m).await?;
                    }
                    Next::Reload => {
                        ws = ctx.reconnect(true).await?;
                    }
                },
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    ws = ctx.lost().await?;
                }
                Some(Ok(_)) => {}
            },
            _ = op_timer.tick(), if ticking => {
                ctx.make_edit()?;
                let m = ctx.c.take_send(Instant::now(), &mut ctx.rng);
                send_or_reconnect(ctx, &mut ws, m).await?;
            }
            _ = pres_timer.tick(), if presencing => {
                let m = ctx.presence_msg();
                ctx.st.presence_sent += 1;
                send_or_reconnect(ctx, &mut ws, Some(m)).await?;
            }
            _ = sleep_until(resend_at.unwrap_or_else(|| Instant::now() + far).into()), if resend_at.is_some() => {
                ctx.resend_at = None;
                let m = ctx.c.resend_msg();
                send_or_reconnect(ctx, &mut ws, m).await?;
            }
        }
    }
}

async fn run_client(
    spec: Spec,
    cfg: Arc<LoadConfig>,
    shared: Arc<Shared>,
    phase_rx: watch::Receiver<Phase>,
    ready_tx: mpsc::UnboundedSender<usize>,
    idle_tx: mpsc::UnboundedSender<usize>,
) -> ClientEnd {
    let ix = spec.ix;
    let name = format!("{}-{ix}", if spec.writer { "writer" } else { "lurker" });
    let lean = cfg.full_clients.is_some_and(|n| ix >= n);
    let mut ctx = Ctx {
        c: Model::new(lean, &name),
        receipts: Vec::new(),
        st: ClientStats::default(),
        rng: Rng::new(cfg.seed.wrapping_mul(1_000_003).wrapping_add(ix as u64)),
        spec,
        cfg,
        shared,
        resend_at: None,
        outages: Vec::new(),
        url_switches: 0,
    };
    // A node that cannot be reached at the start: try the others in turn.
    let batch = ctx.cfg.batch;
    let mut first = open(&mut ctx.c, ctx.spec.url(), false, batch).await;
    for _ in 1..ctx.spec.urls.len() {
        if first.is_ok() {
            break;
        }
        ctx.spec.at = (ctx.spec.at + 1) % ctx.spec.urls.len();
        ctx.url_switches += 1;
        first = open(&mut ctx.c, ctx.spec.url(), false, batch).await;
    }
    if first.is_ok() {
        ctx.shared.progress[ctx.spec.doc].started(ctx.c.rev(), ctx.c.doc_len() as u64);
    }
    let _ = ready_tx.send(ix);
    let fatal = match first {
        Err(e) => Some(format!("client {ix}: {e:#}")),
        Ok((ws, _)) => drive(&mut ctx, ws, phase_rx, &idle_tx)
            .await
            .err()
            .map(|e| format!("client {ix}: {e:#}")),
    };
    if fatal.is_some() {
        let _ = idle_tx.send(ix);
    }
    ctx.flush_receipts(true);
    ClientEnd {
        ix,
        doc: ctx.spec.doc,
        end: ctx.c.end_state(),
        stats: ctx.st,
        fatal,
        outages: ctx.outages,
        url_switches: ctx.url_switches,
    }
}

/// Text for `--doc-size`: prose-like ASCII lines, `n` characters.
pub fn filler_text(n: usize) -> String {
    const LINE: &str = "The quick brown fox jumps over the lazy dog; tandem load test line.\n";
    LINE.chars().cycle().take(n).collect()
}

/// A unique-enough prefix for this run's document ids.
pub fn run_prefix(kind: &str, seed: u64) -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("lt-{kind}-{seed}-{}-{ms}", std::process::id())
}

/// Runs the load and returns the JSON report.
pub async fn run_load(cfg: LoadConfig) -> Result<Value> {
    if cfg.docs == 0 {
        bail!("--docs must be at least 1");
    }
    if cfg.urls.is_empty() {
        bail!("no --url");
    }
    // REST calls: the owner node first, then each node in turn.
    let rest_addrs: Vec<String> = cfg
        .owner_url
        .iter()
        .chain(&cfg.urls)
        .map(|u| addr_of(u))
        .collect();
    let addr = rest_addrs[0].clone();
    let prefix = run_prefix("load", cfg.seed);
    let doc_ids: Vec<String> = match &cfg.load_doc {
        Some(id) => {
            if cfg.docs != 1 || cfg.doc_size > 0 {
                bail!(
                    "an existing document (--load-doc) is one document, not created: no --docs or --doc-size"
                );
            }
            if tandem::ids::DocId::parse(id).is_err() {
                bail!("bad document id {id:?}");
            }
            vec![id.clone()]
        }
        None => (0..cfg.docs).map(|i| format!("{prefix}-{i}")).collect(),
    };
    if cfg.doc_size > 0 {
        let text = filler_text(cfg.doc_size);
        for id in &doc_ids {
            create_anywhere(&rest_addrs, id, &text).await?;
        }
    }
    let holders = match &cfg.owner_url {
        Some(owner) => Some(
            hold(
                &doc_ids
                    .iter()
                    .map(|id| ws_url(owner, id))
                    .collect::<Vec<_>>(),
            )
            .await?,
        ),
        None => None,
    };
    let total = cfg.clients + cfg.lurkers;
    let specs: Vec<Spec> = (0..total)
        .map(|ix| {
            let doc = ix % cfg.docs;
            Spec {
                ix,
                doc,
                writer: ix < cfg.clients,
                urls: cfg.urls.iter().map(|u| ws_url(u, &doc_ids[doc])).collect(),
                at: node_for(ix, cfg.docs, cfg.urls.len()),
            }
        })
        .collect();
    let mut members = vec![0usize; cfg.docs];
    for s in &specs {
        members[s.doc] += 1;
    }
    let shared = Arc::new(Shared {
        window: OnceLock::new(),
        docs: members
            .iter()
            .map(|&m| DocTrack::new(m.saturating_sub(1)))
            .collect(),
        progress: (0..cfg.docs).map(|_| Arc::default()).collect(),
    });
    let cfg = Arc::new(cfg);
    let (phase_tx, phase_rx) = watch::channel(Phase::Connecting);
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let (idle_tx, mut idle_rx) = mpsc::unbounded_channel();
    let mut handles = Vec::with_capacity(total);
    for spec in specs {
        handles.push(tokio::spawn(run_client(
            spec,
            cfg.clone(),
            shared.clone(),
            phase_rx.clone(),
            ready_tx.clone(),
            idle_tx.clone(),
        )));
    }
    drop((ready_tx, idle_tx, phase_rx));
    let mut ready = 0;
    while ready < total {
        match timeout(Duration::from_secs(60), ready_rx.recv()).await {
            Ok(Some(_)) => ready += 1,
            _ => bail!("only {ready} of {total} clients connected"),
        }
    }

    let pids: Vec<String> = cfg.pids.iter().map(u32::to_string).collect();
    let t0 = Instant::now();
    let win = Window {
        start: t0 + cfg.warmup,
        end: t0 + cfg.warmup + cfg.duration,
    };
    let _ = shared.window.set(win);
    let background = if cfg.background_joins > 0 {
        let bg = Background::start(BackgroundConfig {
            joiners: cfg.background_joins,
            resume_behind: cfg.resume_behind,
            pause: cfg.background_pause,
            chars: cfg.chars,
            ws_urls: doc_ids
                .iter()
                .map(|id| format!("ws://{addr}/api/documents/{id}/ws"))
                .collect(),
            progress: shared.progress.clone(),
        })?;
        bg.set_window(win.start, win.end);
        Some(bg)
    } else {
        None
    };
    let _ = phase_tx.send(Phase::Running);
    sleep_until(win.start.into()).await;
    let server_cpu0 = servers_cpu(&pids);
    let self_cpu0 = cpu_seconds("self");
    sleep_until(win.end.into()).await;
    let server_cpu1 = servers_cpu(&pids);
    let self_cpu1 = cpu_seconds("self");
    let measured = win.end.saturating_duration_since(win.start).as_secs_f64();
    let _ = phase_tx.send(Phase::Stopping);
    let background = match background {
        Some(bg) => Some(bg.finish(measured).await),
        None => None,
    };

    // Quiescence: every client has nothing pending.
    let quiesce_deadline = Instant::now() + cfg.quiesce_timeout;
    let mut idle = std::collections::HashSet::new();
    while idle.len() < total {
        match tokio::time::timeout_at(quiesce_deadline.into(), idle_rx.recv()).await {
            Ok(Some(ix)) => {
                idle.insert(ix);
            }
            _ => break,
        }
    }
    let quiesced = idle.len() == total;
    let mut server_docs = Vec::with_capacity(cfg.docs);
    for id in &doc_ids {
        server_docs.push(fetch_anywhere(&rest_addrs, id).await?);
    }
    let targets = Arc::new(server_docs.iter().map(|d| d.0).collect::<Vec<_>>());
    let _ = phase_tx.send(Phase::Drain(targets));

    let mut total_stats = ClientStats::default();
    let mut converged = quiesced;
    let mut fatal = Vec::new();
    let mut mismatched = 0usize;
    let mut outages = Vec::new();
    let mut url_switches = 0u64;
    let drain_deadline = Instant::now() + cfg.quiesce_timeout;
    for h in handles {
        let abort = h.abort_handle();
        match tokio::time::timeout_at(drain_deadline.into(), h).await {
            Ok(Ok(end)) => {
                total_stats.merge(&end.stats);
                outages.extend(end.outages.iter().map(|o| (end.ix, *o)));
                url_switches += end.url_switches;
                if let Some(f) = end.fatal {
                    converged = false;
                    fatal.push(f);
                } else if !matches_server(&end.end, &server_docs[end.doc].1) {
                    converged = false;
                    mismatched += 1;
                }
            }
            Ok(Err(e)) => {
                converged = false;
                fatal.push(format!("client task: {e}"));
            }
            Err(_) => {
                abort.abort();
                converged = false;
                fatal.push("client did not reach the server's revision in time".into());
            }
        }
    }
    for f in fatal.iter().take(5) {
        eprintln!("fatal: {f}");
    }
    drop(holders);
    let diff = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| b - a);
    let server_cpu = server_cpu0
        .iter()
        .zip(&server_cpu1)
        .filter_map(|(a, b)| diff(*a, *b))
        .reduce(|a, b| a + b);
    let s = &total_stats;
    let mut errors: Vec<Value> = s.error_samples.iter().map(|e| json!(e)).collect();
    errors.extend(fatal.iter().take(5).map(|f| json!(f)));
    let mut report = json!({
        "mode": "load",
        "url": cfg.urls[0],
        "urls": cfg.urls,
        "owner_url": cfg.owner_url,
        "clients": cfg.clients,
        "lurkers": cfg.lurkers,
        "docs": cfg.docs,
        "rate": cfg.rate,
        "closed_loop": cfg.closed_loop,
        "chars": cfg.chars,
        "presence_hz": cfg.presence_hz,
        "doc_size": cfg.doc_size,
        "seed": cfg.seed,
        "duration_s": cfg.duration.as_secs_f64(),
        "warmup_s": cfg.warmup.as_secs_f64(),
        "ops_per_sec": s.acked as f64 / measured,
        "edits_per_sec": s.edits_acked as f64 / measured,
        "ops_acked": s.acked,
        "edits_acked": s.edits_acked,
        "ops_acked_total": s.acked_total,
        "edits": s.edits,
        "presence_sent": s.presence_sent,
        "ack_ms": summary(&s.ack),
        "delivery_ms": summary(&s.delivery),
        "converged": converged,
        "quiesced": quiesced,
        "mismatched_clients": mismatched,
        "fatal_clients": fatal.len(),
        "errors": s.errors + fatal.len() as u64,
        "rate_limited": s.rate_limited,
        "disconnects": s.disconnects,
        "dropped_edits": s.dropped_edits,
        "error_samples": errors,
        "server_cpu_s": server_cpu,
        "server_cpu_pct": server_cpu.map(|c| 100.0 * c / measured),
        "server_peak_rss_mb": pids
            .iter()
            .filter_map(|p| peak_rss_mb(p))
            .reduce(|a, b| a + b),
        "server_cpu_s_each": server_cpu0
            .iter()
            .zip(&server_cpu1)
            .map(|(a, b)| diff(*a, *b))
            .collect::<Vec<_>>(),
        "resume": resume_report(&outages, url_switches),
        "loadgen_cpu_s": diff(self_cpu0, self_cpu1),
        "final_revs": server_docs.iter().map(|d| d.0).collect::<Vec<_>>(),
    });
    report["full_clients"] = cfg.full_clients.map_or(total, |n| n.min(total)).into();
    report["batch"] = cfg.batch.into();
    if let Some(id) = &cfg.load_doc {
        report["load_doc"] = id.as_str().into();
    }
    if let Some(bg) = background {
        report["background_joins"] = bg;
    }
    if let Some(path) = &cfg.plot {
        let series = [
            Series {
                name: "ack (op sent → own ack)",
                hist: &s.ack,
            },
            Series {
                name: "delivery (op sent → received by another client)",
                hist: &s.delivery,
            },
        ];
        note_in_report(
            &mut report,
            path,
            write_svg(path, &plot_title(&cfg), &series),
        );
    }
    Ok(report)
}

/// A full client's text equals the server's; a lean client's length does.
fn matches_server(end: &EndState, text: &str) -> bool {
    match end {
        EndState::Text(t) => t == text,
        EndState::Len(n) => *n == text.chars().count(),
    }
}

/// Each server's CPU seconds (`None` for one that is gone).
fn servers_cpu(pids: &[String]) -> Vec<Option<f64>> {
    pids.iter().map(|p| cpu_seconds(p)).collect()
}

/// `POST /api/documents` to the first node that answers.
async fn create_anywhere(addrs: &[String], id: &str, text: &str) -> Result<()> {
    let mut last = None;
    for a in addrs {
        match create_document(a, id, text).await {
            Ok(()) => return Ok(()),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("no node to ask")))
}

/// `GET /api/documents/{id}` from the first node that answers.
async fn fetch_anywhere(addrs: &[String], id: &str) -> Result<(u64, String)> {
    let mut last = None;
    for a in addrs {
        match fetch_document(a, id).await {
            Ok(d) => return Ok(d),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("no node to ask")))
}

/// The plot's title: the workload's shape.
fn plot_title(cfg: &LoadConfig) -> String {
    let plural =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let pace = if cfg.closed_loop {
        "closed loop".to_owned()
    } else {
        format!("{} ops/s per writer (open loop)", cfg.rate)
    };
    let mut second = format!(
        "{} + {} on {}, {pace}, {} per op, doc size {}",
        plural(cfg.clients, "writer", "writers"),
        plural(cfg.lurkers, "lurker", "lurkers"),
        plural(cfg.docs, "doc", "docs"),
        plural(cfg.chars, "char", "chars"),
        cfg.doc_size
    );
    if cfg.presence_hz > 0.0 {
        second.push_str(&format!(", presence {} Hz", cfg.presence_hz));
    }
    if cfg.background_joins > 0 {
        second.push_str(&format!(
            ", {} background joiners (fresh / resume {} behind)",
            cfg.background_joins, cfg.resume_behind
        ));
    }
    format!(
        "tandem-loadtest: latency by percentile ({} s measured after {} s warmup)\n{second}",
        cfg.duration.as_secs_f64(),
        cfg.warmup.as_secs_f64()
    )
}
